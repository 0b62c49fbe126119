//! Background jobs (tokio tasks). Each concern defines its own (`orders::jobs`,
//! `payments::jobs`, …); [`crate::AppContext::start_jobs`] starts them. Every job is safe
//! with several instances running: work is claimed with a row update or a cache lock
//! before it is done.

use std::time::Duration;

use tokio::task::JoinHandle;

/// One running job.
pub type Job = JoinHandle<()>;

/// The running jobs; dropping it does not stop them, `abort` does.
pub struct Jobs {
    handles: Vec<Job>,
}

impl Jobs {
    pub(crate) fn new(handles: Vec<Job>) -> Self {
        Self { handles }
    }

    pub fn abort(&self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// Runs `tick` every `period` until aborted; a failed tick is logged and retried next period.
pub(crate) fn every<F, Fut, E>(name: &'static str, period: Duration, tick: F) -> Job
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<usize, E>> + Send,
    E: std::fmt::Display,
{
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            match tick().await {
                Ok(0) => {}
                Ok(n) => tracing::info!(job = name, handled = n, "job tick"),
                Err(e) => tracing::warn!(job = name, error = %e, "job tick failed"),
            }
        }
    })
}
