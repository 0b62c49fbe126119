//! Redis store. `ConnectionManager` reconnects by itself, but the first command after a
//! dropped connection fails, so each command is tried twice before the cache is
//! reported unavailable (which the API turns into a 503).

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Script};

use super::CacheError;

const DELETE_IF_EQUALS: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"#;

/// SET NX that also answers yes to the key's owner: a retry after a first attempt that
/// landed (but whose reply was lost) must not read as "taken by someone else".
const SET_NX_OR_MINE: &str = r#"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
    return 1
end
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return 1
end
return 0
"#;

/// INCR with an expiry set when the counter is created, in one step.
const INCR_EX: &str = r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return n
"#;

/// One GCRA step (the algorithm `governor` runs in process), on Redis's clock so every
/// instance agrees: the key holds the bucket's "theoretical arrival time" in ms. A request
/// is allowed when, after it, the bucket is at most `burst` intervals ahead of now;
/// otherwise nothing is stored and the reply is how long until it would be allowed.
const THROTTLE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then
    tat = now
end
local new_tat = tat + interval
local ahead = new_tat - now
if ahead > burst * interval then
    return ahead - burst * interval
end
redis.call('SET', KEYS[1], new_tat, 'PX', ahead)
return 0
"#;

/// Takes one from a stock counter: 1 taken, 0 none left, -1 no counter (seed it first).
const TAKE_ONE: &str = r#"
local v = redis.call('GET', KEYS[1])
if not v then
    return -1
end
if tonumber(v) <= 0 then
    return 0
end
redis.call('DECR', KEYS[1])
return 1
"#;

/// Gives one back to a stock counter, unless it has expired meanwhile: a new counter is
/// seeded from the database, which already knows the taking failed.
const GIVE_BACK: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('INCR', KEYS[1])
end
return 0
"#;

/// Takes one back from a counter of [`INCR_EX`], unless it has expired meanwhile (then its
/// window is over and there is nothing to take back).
const UNCOUNT: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then
    return redis.call('DECR', KEYS[1])
end
return 0
"#;

/// What [`RedisCache::take_one`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    One,
    NoneLeft,
    NoCounter,
}

#[derive(Clone)]
pub struct RedisCache {
    conn: ConnectionManager,
    /// Shared: a clone of the cache is a connection handle, not a copy of every script.
    scripts: Arc<Scripts>,
}

struct Scripts {
    delete_if_equals: Script,
    set_nx_or_mine: Script,
    incr_ex: Script,
    throttle: Script,
    take_one: Script,
    give_back: Script,
    uncount: Script,
}

fn unavailable(e: redis::RedisError) -> CacheError {
    CacheError::Unavailable(e.to_string())
}

impl RedisCache {
    pub async fn connect(url: &str) -> Result<Self, CacheError> {
        let client = redis::Client::open(url).map_err(unavailable)?;
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client, config)
            .await
            .map_err(unavailable)?;
        Ok(Self {
            conn,
            scripts: Arc::new(Scripts {
                delete_if_equals: Script::new(DELETE_IF_EQUALS),
                set_nx_or_mine: Script::new(SET_NX_OR_MINE),
                incr_ex: Script::new(INCR_EX),
                throttle: Script::new(THROTTLE),
                take_one: Script::new(TAKE_ONE),
                give_back: Script::new(GIVE_BACK),
                uncount: Script::new(UNCOUNT),
            }),
        })
    }

    async fn twice<T, F, Fut>(&self, op: F) -> Result<T, CacheError>
    where
        F: Fn(ConnectionManager) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        match op(self.conn.clone()).await {
            Ok(v) => Ok(v),
            Err(_) => op(self.conn.clone()).await.map_err(unavailable),
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        self.twice(|mut c| async move { c.get::<_, Option<String>>(key).await })
            .await
    }

    pub async fn set_ex(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        let ms = ttl.as_millis().max(1) as u64;
        self.twice(|mut c| async move { c.pset_ex::<_, _, ()>(key, value, ms).await })
            .await
    }

    pub async fn set_nx_ex(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        let ms = ttl.as_millis().max(1) as u64;
        self.twice(|mut c| {
            let script = self.scripts.set_nx_or_mine.clone();
            async move {
                let n: i64 = script
                    .key(key)
                    .arg(value)
                    .arg(ms)
                    .invoke_async(&mut c)
                    .await?;
                Ok(n == 1)
            }
        })
        .await
    }

    pub async fn incr_ex(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        let ms = ttl.as_millis().max(1) as u64;
        self.twice(|mut c| {
            let script = self.scripts.incr_ex.clone();
            async move { script.key(key).arg(ms).invoke_async(&mut c).await }
        })
        .await
    }

    /// Spends one token of the bucket at `key` (a burst of `burst`, one token back every
    /// `interval`): `None` when allowed, else how long until a token is back. Not retried:
    /// a lost reply would spend a second token.
    pub async fn throttle(
        &self,
        key: &str,
        interval: Duration,
        burst: u32,
    ) -> Result<Option<Duration>, CacheError> {
        let ms = interval.as_millis().max(1) as u64;
        let wait_ms: u64 = self
            .scripts
            .throttle
            .key(key)
            .arg(ms)
            .arg(burst)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok((wait_ms > 0).then(|| Duration::from_millis(wait_ms)))
    }

    /// Creates the stock counter at `key` holding `left` for `ttl`, unless one exists.
    pub async fn seed_counter(
        &self,
        key: &str,
        left: i64,
        ttl: Duration,
    ) -> Result<(), CacheError> {
        let ms = ttl.as_millis().max(1) as u64;
        self.twice(|mut c| async move {
            redis::cmd("SET")
                .arg(key)
                .arg(left)
                .arg("NX")
                .arg("PX")
                .arg(ms)
                .query_async::<Option<String>>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    /// Takes one from the stock counter at `key`. Not retried: a lost reply would take a
    /// second one (which only makes the counter stricter until it expires).
    pub async fn take_one(&self, key: &str) -> Result<Taken, CacheError> {
        let n: i64 = self
            .scripts
            .take_one
            .key(key)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(unavailable)?;
        Ok(match n {
            1 => Taken::One,
            0 => Taken::NoneLeft,
            _ => Taken::NoCounter,
        })
    }

    /// Gives back what [`Self::take_one`] took. Not retried: a lost reply leaves the
    /// counter stricter until it expires.
    pub async fn give_back(&self, key: &str) -> Result<(), CacheError> {
        self.scripts
            .give_back
            .key(key)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    pub async fn uncount(&self, key: &str) -> Result<(), CacheError> {
        self.scripts
            .uncount
            .key(key)
            .invoke_async::<i64>(&mut self.conn.clone())
            .await
            .map(|_| ())
            .map_err(unavailable)
    }

    pub async fn delete(&self, key: &str) -> Result<(), CacheError> {
        self.twice(|mut c| async move { c.del::<_, ()>(key).await })
            .await
    }

    pub async fn delete_if_equals(&self, key: &str, value: &str) -> Result<bool, CacheError> {
        self.twice(|mut c| {
            let script = self.scripts.delete_if_equals.clone();
            async move {
                let n: i64 = script.key(key).arg(value).invoke_async(&mut c).await?;
                Ok(n > 0)
            }
        })
        .await
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        self.twice(|mut c| async move { redis::cmd("PING").query_async::<String>(&mut c).await })
            .await
            .map(|_| ())
    }
}
