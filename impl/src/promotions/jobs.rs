//! The promotions job: claimed coupons past their time are marked `expired` (lists
//! already show them so; the job makes the stored status agree).

use std::time::Duration;

use super::Promotions;
use crate::jobs::{Job, every};
use crate::telemetry::Metrics;

impl Promotions {
    pub(crate) fn jobs(&self, metrics: &Metrics) -> Vec<Job> {
        let s = self.clone();
        vec![every(
            metrics,
            "expire_coupons",
            Duration::from_secs(3600),
            move || {
                let s = s.clone();
                async move { s.expire_coupons().await }
            },
        )]
    }
}
