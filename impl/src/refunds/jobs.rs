//! The refund job: retry queued refunds and ask WeChat about accepted ones
//! (`refundquery`).

use std::time::Duration;

use campus_dal::refunds as rq;
use campus_dal::{LedgerSource, RefundStatus, time};

use super::{RefundError, Refunds, Settlement};
use crate::jobs::{Job, every};
use crate::telemetry::Metrics;
use crate::wechat::pay::RefundStatus as WechatRefundStatus;

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
                self.process_refund_by_no(&r.out_refund_no).await;
                continue;
            }
            match self.pay.refund_query(&r.out_refund_no).await {
                Ok(q) => {
                    let outcome = match q.status {
                        WechatRefundStatus::Success => Settlement::Success(q.refund_id),
                        WechatRefundStatus::Processing => continue,
                        other => Settlement::Failed(format!("{other:?}")),
                    };
                    if self
                        .settle_refund(&r.out_refund_no, outcome, LedgerSource::RefundQuery)
                        .await?
                    {
                        n += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(out_refund_no = %r.out_refund_no, error = %e, "refundquery failed")
                }
            }
        }
        Ok(n)
    }
}
