//! The order jobs: close unpaid orders at their deadline, reconcile payments and
//! refunds with WeChat, auto-complete delivered orders.

use std::time::Duration;

use campus_dal::orders as q;
use campus_dal::time;

use super::{OrderError, status};
use crate::Services;
use crate::jobs::every;

impl Services {
    pub(crate) fn order_jobs(&self) -> Vec<tokio::task::JoinHandle<()>> {
        let reconcile = Duration::from_secs(self.settings.pay_reconcile_secs.max(1));
        let timeout_period = reconcile.min(Duration::from_secs(30));
        // Auto-completion is due hours after delivery: once a minute is plenty, and a short
        // reconcile period (tests, CAMPUS_ENV=test) shortens it too.
        let complete_period = reconcile.min(Duration::from_secs(60));
        let (a, b, c, d) = (self.clone(), self.clone(), self.clone(), self.clone());
        vec![
            every("close_expired_orders", timeout_period, move || {
                let s = a.clone();
                async move { s.close_expired().await }
            }),
            every("reconcile_payments", reconcile, move || {
                let s = b.clone();
                async move { s.reconcile_unpaid().await }
            }),
            every("settle_refunds", reconcile, move || {
                let s = c.clone();
                async move { s.settle_refunds().await }
            }),
            every("auto_complete_orders", complete_period, move || {
                let s = d.clone();
                async move { s.auto_complete().await }
            }),
        ]
    }

    async fn auto_complete(&self) -> Result<usize, OrderError> {
        let before =
            time::now() - chrono::Duration::seconds(self.settings.order_auto_complete_secs);
        self.db
            .write(move |c| -> Result<usize, OrderError> {
                let mut n = 0;
                for o in q::delivered_before(c, before, 100)? {
                    n += q::transition(
                        c,
                        o.order_id(),
                        &[status::DELIVERED],
                        status::COMPLETED,
                        time::now(),
                    )?;
                }
                Ok(n)
            })
            .await
    }
}
