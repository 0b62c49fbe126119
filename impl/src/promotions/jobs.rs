//! The promotions jobs: claimed coupons past their time are marked `expired` (lists
//! already show them so; the job makes the stored status agree); lucky draws are
//! locked at `lock_at` and drawn at `draw_at`.

use std::time::Duration;

use super::Promotions;
use super::draws::Draws;
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

impl Draws {
    /// Every few seconds, so a draw is made soon after `draw_at`; the ticks of several
    /// instances meet at the compare-and-sets and only one of them moves each draw.
    pub(crate) fn jobs(&self, metrics: &Metrics) -> Vec<Job> {
        let s = self.clone();
        vec![every(
            metrics,
            "lucky_draws",
            Duration::from_secs(5),
            move || {
                let s = s.clone();
                async move { s.run_due().await }
            },
        )]
    }
}
