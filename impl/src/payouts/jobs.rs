//! The payout job: processing withdrawals (an unclear answer, a crash mid-transfer, a
//! transfer not yet sent) are claimed with a lease, so several instances are safe, and
//! moved on by one more attempt.

use std::time::Duration;

use campus_dal::time;
use campus_dal::withdrawals as wq;

use super::{PayoutError, Payouts};
use crate::jobs::{Job, every};
use crate::telemetry::Metrics;

impl Payouts {
    pub(crate) fn jobs(&self, metrics: &Metrics, period: Duration) -> Vec<Job> {
        let s = self.clone();
        vec![every(metrics, "settle_withdrawals", period, move || {
            let s = s.clone();
            async move { s.settle_due().await }
        })]
    }

    async fn settle_due(&self) -> Result<usize, PayoutError> {
        let due = self
            .db
            .read(|c| wq::processing_due(c, time::now(), 50).map_err(PayoutError::from))
            .await?;
        let mut n = 0;
        for id in due {
            let lease = self.lease;
            let claimed = self
                .db
                .write(move |c| {
                    let now = time::now();
                    wq::claim(c, id, now, now + lease).map_err(PayoutError::from)
                })
                .await?;
            if claimed {
                self.attempt(id).await;
                n += 1;
            }
        }
        Ok(n)
    }
}
