//! Background jobs (tokio tasks). Each is safe with several instances running: work is
//! claimed with a row update or a cache lock before it is done.

use std::time::Duration;

use tokio::task::JoinHandle;

use crate::Services;

/// The running jobs; dropping it does not stop them, `abort` does.
pub struct Jobs {
    handles: Vec<JoinHandle<()>>,
}

impl Jobs {
    pub fn abort(&self) {
        for h in &self.handles {
            h.abort();
        }
    }
}

/// Runs `tick` every `period` until aborted; a failed tick is logged and retried next period.
pub(crate) fn every<F, Fut, E>(name: &'static str, period: Duration, tick: F) -> JoinHandle<()>
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

impl Services {
    /// Starts every background job this configuration calls for.
    pub fn start_jobs(self) -> Jobs {
        let mut handles = Vec::new();
        let s = self.clone();
        handles.push(every(
            "idempotency_sweep",
            Duration::from_secs(3600),
            move || {
                let s = s.clone();
                async move { s.sweep_idempotency_keys().await }
            },
        ));
        handles.extend(self.order_jobs());
        Jobs { handles }
    }

    async fn sweep_idempotency_keys(&self) -> Result<usize, crate::db::DbError> {
        let cutoff =
            campus_dal::time::now() - chrono::Duration::seconds(self.settings.idempotency_ttl_secs);
        self.db
            .write(move |c| {
                campus_dal::idempotency::delete_older_than(c, cutoff).map_err(Into::into)
            })
            .await
    }
}
