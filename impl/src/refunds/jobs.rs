//! The refund job: retry queued refunds (same `out_refund_no`) and ask WeChat about
//! accepted ones (`refundquery`).

use std::time::Duration;

use campus_dal::refunds as rq;
use campus_dal::{RefundStatus, time};

use super::{RefundError, Refunds};
use crate::jobs::{Job, every};
use crate::telemetry::Metrics;
use crate::wechat::pay::PayError;

impl Refunds {
    pub(crate) fn jobs(&self, metrics: &Metrics, reconcile: Duration) -> Vec<Job> {
        let s = self.clone();
        vec![every(metrics, "settle_refunds", reconcile, move || {
            let s = s.clone();
            async move { s.settle_refunds().await }
        })]
    }

    /// Job: retry queued refunds and ask WeChat about accepted ones (`refundquery`).
    async fn settle_refunds(&self) -> Result<usize, RefundError> {
        let before = time::now() - chrono::Duration::seconds(2);
        let rows = self
            .db
            .read(move |c| rq::unsettled(c, before, 50).map_err(RefundError::from))
            .await?;
        let mut n = 0;
        for r in rows {
            let rid = r.id;
            let claimed = self
                .db
                .write(move |c| {
                    let now = time::now();
                    rq::claim(c, rid, now, now + chrono::Duration::seconds(30))
                        .map_err(RefundError::from)
                })
                .await?;
            if !claimed {
                continue;
            }
            if r.status == RefundStatus::Requested {
                // Calling again with the same number is safe: WeChat pays it once.
                self.process_refund_by_no(&r.out_refund_no).await;
                continue;
            }
            match self.pay.refund_query(&r.out_refund_no).await {
                Ok(q) => {
                    if self.apply_query(&r, q.status, q.refund_id).await? {
                        n += 1;
                    }
                }
                Err(PayError::RefundNotExist) => tracing::error!(
                    out_refund_no = %r.out_refund_no,
                    "WeChat knows no refund it once accepted; kept processing"
                ),
                Err(e) => {
                    tracing::warn!(out_refund_no = %r.out_refund_no, error = %e, "refundquery failed")
                }
            }
        }
        Ok(n)
    }
}
