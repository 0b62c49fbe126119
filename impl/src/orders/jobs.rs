//! The order jobs: delivered orders complete by themselves after a while, and
//! remembered `Idempotency-Key` answers are dropped after their time.

use std::time::Duration;

use campus_dal::orders as q;
use campus_dal::{OrderMove, time};

use super::{OrderError, Orders};
use crate::jobs::{Job, every};
use crate::telemetry::Metrics;

impl Orders {
    /// Auto-completion is due hours after delivery: once a minute is plenty, and a short
    /// reconcile period (tests) shortens it too.
    pub(crate) fn jobs(
        &self,
        metrics: &Metrics,
        period: Duration,
        idempotency_ttl: chrono::Duration,
    ) -> Vec<Job> {
        let (a, b) = (self.clone(), self.clone());
        vec![
            every(
                metrics,
                "auto_complete_orders",
                period.min(Duration::from_secs(60)),
                move || {
                    let s = a.clone();
                    async move { s.auto_complete().await }
                },
            ),
            every(
                metrics,
                "idempotency_sweep",
                Duration::from_secs(3600),
                move || {
                    let s = b.clone();
                    async move { s.sweep_idempotency_keys(idempotency_ttl).await }
                },
            ),
        ]
    }

    async fn sweep_idempotency_keys(&self, ttl: chrono::Duration) -> Result<usize, OrderError> {
        let cutoff = time::now() - ttl;
        self.db
            .write(move |c| {
                campus_dal::idempotency::delete_older_than(c, cutoff).map_err(OrderError::from)
            })
            .await
    }

    async fn auto_complete(&self) -> Result<usize, OrderError> {
        let before = time::now() - self.auto_complete_after;
        let earnings = self.earnings;
        self.db
            .write(move |c| -> Result<usize, OrderError> {
                let mut n = 0;
                for o in q::delivered_before(c, before, 100)? {
                    // One transaction per order: its move and the runner's credit.
                    n += campus_dal::transaction(c, |c| -> Result<usize, OrderError> {
                        if q::transition(c, o.id, OrderMove::Complete, time::now())? != 1 {
                            return Ok(0);
                        }
                        if let Some(done) = q::find(c, o.id)? {
                            earnings.credit_completion(c, &done)?;
                        }
                        Ok(1)
                    })?;
                }
                Ok(n)
            })
            .await
    }
}
