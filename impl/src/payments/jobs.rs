//! The payment jobs: close orders past their pay deadline, and ask WeChat
//! (`orderquery`) about orders that have a prepay id and no notify yet.

use std::time::Duration;

use campus_dal::orders as q;
use campus_dal::{OrderId, time};

use super::{PaymentError, Payments};
use crate::jobs::{Job, every};
use crate::telemetry::Metrics;

impl Payments {
    pub(crate) fn jobs(&self, metrics: &Metrics, reconcile: Duration) -> Vec<Job> {
        let (a, b) = (self.clone(), self.clone());
        vec![
            every(
                metrics,
                "close_expired_orders",
                reconcile.min(Duration::from_secs(30)),
                move || {
                    let s = a.clone();
                    async move { s.close_expired().await }
                },
            ),
            every(metrics, "reconcile_payments", reconcile, move || {
                let s = b.clone();
                async move { s.reconcile_unpaid().await }
            }),
        ]
    }

    /// Job: close orders past their pay deadline.
    async fn close_expired(&self) -> Result<usize, PaymentError> {
        let rows = self
            .db
            .read(|c| q::unpaid(c, Some(time::now()), None, 50).map_err(PaymentError::from))
            .await?;
        let mut n = 0;
        for o in rows {
            if !self.claim_order(o.id).await? {
                continue;
            }
            match self.close_unpaid(&o, "pay timeout").await {
                Ok(()) => n += 1,
                Err(PaymentError::InvalidTransition(_)) => {}
                Err(e) => {
                    tracing::warn!(order = %o.id, error = %e, "could not close expired order")
                }
            }
        }
        Ok(n)
    }

    /// Job: `orderquery` for orders that have a prepay id and no notify yet.
    async fn reconcile_unpaid(&self) -> Result<usize, PaymentError> {
        let before = time::now() - chrono::Duration::seconds(5);
        let rows = self
            .db
            .read(move |c| q::unpaid(c, None, Some(before), 100).map_err(PaymentError::from))
            .await?;
        let mut n = 0;
        for o in rows {
            if !self.claim_order(o.id).await? {
                continue;
            }
            match self.reconcile_order(&o).await {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(order = %o.id, error = %e, "orderquery failed"),
            }
        }
        Ok(n)
    }

    /// One instance at a time works on an order (a lease that expires by itself).
    async fn claim_order(&self, id: OrderId) -> Result<bool, PaymentError> {
        self.db
            .write(move |c| {
                let now = time::now();
                q::claim(c, id, now, now + chrono::Duration::seconds(30))
                    .map_err(PaymentError::from)
            })
            .await
    }
}
