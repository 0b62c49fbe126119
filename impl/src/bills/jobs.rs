//! The daily bill job: at `BILL_HOUR_BEIJING`, the bill of the day before, on one
//! instance (the cache key for the day is the claim; given back when the run fails, so
//! a later tick of the hour tries again).

use std::time::Duration;

use super::{BillError, Bills};
use crate::jobs::{Job, every};
use crate::telemetry::Metrics;

impl Bills {
    pub(crate) fn jobs(&self, metrics: &Metrics) -> Vec<Job> {
        let s = self.clone();
        vec![every(
            metrics,
            "daily_bill",
            Duration::from_secs(300),
            move || {
                let s = s.clone();
                async move { s.daily_tick().await }
            },
        )]
    }

    async fn daily_tick(&self) -> Result<usize, BillError> {
        let beijing = chrono::Utc::now() + chrono::Duration::hours(8);
        if chrono::Timelike::hour(&beijing) != self.hour_beijing {
            return Ok(0);
        }
        let day = beijing.date_naive() - chrono::Duration::days(1);
        let key = format!("job:bill:{}", day.format("%Y-%m-%d"));
        let token = crate::crypto::random_alnum(16);
        if !self
            .cache
            .set_nx_ex(&key, &token, Duration::from_secs(26 * 3600))
            .await?
        {
            return Ok(0);
        }
        match self.reconcile(day).await {
            Ok(report) => {
                tracing::info!(date = %report.date, status = %report.status, mismatches = report.mismatches.len(), "daily bill reconciled");
                Ok(1)
            }
            Err(e) => {
                let _ = self.cache.delete_if_equals(&key, &token).await;
                Err(e)
            }
        }
    }
}
