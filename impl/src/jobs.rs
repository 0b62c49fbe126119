//! Background jobs (tokio tasks). Each concern defines its own (`orders::jobs`,
//! `payments::jobs`, …); [`crate::AppContext::start_jobs`] starts them. Every job is safe
//! with several instances running: work is claimed with a row update or a cache lock
//! before it is done.

use std::panic::AssertUnwindSafe;
use std::time::Duration;

use futures::FutureExt;
use tokio::task::JoinHandle;

use crate::telemetry::Metrics;

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
/// A tick that panics is caught, logged and counted as a failure, and the job goes on: one
/// bad row must not stop a job for the life of the process. Every tick is counted in
/// `campus_job_runs_total` and `campus_job_failures_total` by job name.
pub(crate) fn every<F, Fut, E>(
    metrics: &Metrics,
    name: &'static str,
    period: Duration,
    tick: F,
) -> Job
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Result<usize, E>> + Send,
    E: std::fmt::Display,
{
    let metrics = metrics.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(period);
        interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            interval.tick().await;
            // Making the future may panic as well as running it.
            let outcome = match std::panic::catch_unwind(AssertUnwindSafe(&tick)) {
                Ok(fut) => AssertUnwindSafe(fut).catch_unwind().await,
                Err(panic) => Err(panic),
            };
            metrics.job_run(name, matches!(outcome, Ok(Ok(_))));
            match outcome {
                Ok(Ok(0)) => {}
                Ok(Ok(n)) => tracing::info!(job = name, handled = n, "job tick"),
                Ok(Err(e)) => tracing::warn!(job = name, error = %e, "job tick failed"),
                Err(panic) => tracing::error!(
                    job = name,
                    panic = panic_message(panic.as_ref()),
                    "job tick panicked; the job goes on"
                ),
            }
        }
    })
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(not a string)")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A job whose first tick panics and whose second fails keeps running, and the
    /// metrics count every tick and both failures.
    #[tokio::test]
    async fn a_panicking_tick_is_counted_and_the_job_goes_on() {
        let metrics = Metrics::new();
        let ticks = Arc::new(AtomicUsize::new(0));
        let (done, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let counter = ticks.clone();
        let job = every(&metrics, "flaky", Duration::from_millis(1), move || {
            let n = counter.fetch_add(1, Ordering::SeqCst) + 1;
            let done = done.clone();
            async move {
                let _ = done.send(n);
                match n {
                    1 => panic!("first tick panics"),
                    2 => Err("second tick fails".to_string()),
                    _ => Ok(1),
                }
            }
        });
        // Waits for the fourth tick (the loop survived the panic); the timeout only
        // keeps a broken job from hanging the test run.
        tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(n) = seen.recv().await {
                if n >= 4 {
                    break;
                }
            }
        })
        .await
        .expect("the job kept ticking after its panic");
        job.abort();
        let _ = job.await;
        let runs = metrics.job_runs.with_label_values(&["flaky"]).get();
        let failures = metrics.job_failures.with_label_values(&["flaky"]).get();
        assert!(runs >= 3, "runs {runs}");
        assert_eq!(failures, 2);
        let text = metrics.render();
        assert!(
            text.contains("campus_job_failures_total{job=\"flaky\"} 2"),
            "{text}"
        );
    }
}
