//! Per-user daily message caps (`MESSAGES_PER_USER_DAY`), counted in the cache (Redis
//! across instances) by Beijing day. A message is counted before it is sent and given back
//! when WeChat did not take it, so the count is of messages WeChat accepted.

use std::time::Duration;

use campus_dal::UserId;

use crate::cache::Cache;

/// How long a day's count is kept: past the Beijing day it counts, whatever the clock skew
/// between instances.
const WINDOW: Duration = Duration::from_secs(26 * 3600);

/// A counter users are capped on, one per kind of message; its name is part of the
/// cache key, so renaming one restarts that day's counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapChannel {
    /// The mini-program's order messages (paid, accepted, delivered, refunded, reassigned).
    Order,
    /// The daily reminder to come back.
    Reminder,
    /// Order messages through the official account.
    MpOrder,
}

impl CapChannel {
    fn name(self) -> &'static str {
        match self {
            Self::Order => "order",
            Self::Reminder => "reminder",
            Self::MpOrder => "mp_order",
        }
    }
}

/// Why a message may not go out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapRefusal {
    /// The user had their day's messages on this channel.
    Over,
    /// The count could not be read: nothing is sent, since the cap is a promise to the user.
    Unreadable,
}

/// A place taken under a cap: give it back if WeChat does not accept the message.
#[derive(Debug)]
pub struct Taken(String);

#[derive(Clone)]
pub struct DailyCaps {
    cache: Cache,
    /// Tells deployments sharing one Redis apart (user ids repeat across them).
    scope: String,
}

impl DailyCaps {
    pub fn new(cache: Cache, scope: &str) -> Self {
        Self {
            cache,
            scope: scope.to_string(),
        }
    }

    /// Counts one message on `channel` against `cap` for the user's today.
    pub async fn take(
        &self,
        channel: CapChannel,
        user: UserId,
        cap: i64,
    ) -> Result<Taken, CapRefusal> {
        let day = (chrono::Utc::now() + chrono::Duration::hours(8)).format("%Y-%m-%d");
        let channel = channel.name();
        let key = format!("msgcap:{}:{channel}:{user}:{day}", self.scope);
        match self.cache.incr_ex(&key, WINDOW).await {
            Ok(n) if n > cap => {
                // What is not sent is not counted, so a later failed send frees a place.
                self.give_back(Taken(key)).await;
                Err(CapRefusal::Over)
            }
            Ok(_) => Ok(Taken(key)),
            Err(e) => {
                tracing::warn!(error = %e, channel, "message cap unreadable; not sent");
                Err(CapRefusal::Unreadable)
            }
        }
    }

    /// Frees the place of a message WeChat did not accept.
    pub async fn give_back(&self, taken: Taken) {
        if let Err(e) = self.cache.uncount(&taken.0).await {
            tracing::warn!(error = %e, "could not give back a message's place under its cap");
        }
    }
}
