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
        let s = self.clone();
        handles.push(every(
            "credit_expiry_sweep",
            Duration::from_secs(3600),
            move || {
                let s = s.clone();
                async move { s.sweep_credits().await }
            },
        ));
        let s = self.clone();
        handles.push(every(
            "daily_reminder",
            Duration::from_secs(300),
            move || {
                let s = s.clone();
                async move { s.daily_reminder_tick().await }
            },
        ));
        Jobs { handles }
    }

    /// Runs the reminder once a day at `REMINDER_HOUR_BEIJING`, on one instance: the
    /// cache key for the day is the claim.
    async fn daily_reminder_tick(&self) -> Result<usize, String> {
        if self.settings.wechat_template_reminder.is_none() {
            return Ok(0);
        }
        let beijing = chrono::Utc::now() + chrono::Duration::hours(8);
        if chrono::Timelike::hour(&beijing) != self.settings.reminder_hour_beijing {
            return Ok(0);
        }
        let key = format!("job:reminder:{}", beijing.format("%Y-%m-%d"));
        let claimed = self
            .cache
            .set_nx_ex(&key, "1", Duration::from_secs(26 * 3600))
            .await
            .map_err(|e| e.to_string())?;
        if !claimed {
            return Ok(0);
        }
        self.send_reminders().await.map_err(|e| e.to_string())
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
