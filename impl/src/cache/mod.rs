//! One cache interface, two stores: in-process (default, one instance) and Redis
//! (`REDIS_URL`, shared by every instance). Holds the WeChat access token, locks that
//! make one instance do a job at a time, and other short-lived keys.
//!
//! An enum rather than a trait object: two known stores, and async fns need no boxing.

mod memory;
mod redis_store;

use std::time::Duration;

pub use memory::MemoryCache;
pub use redis_store::{RedisCache, Taken};

#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    #[error("cache unavailable: {0}")]
    Unavailable(String),
}

#[derive(Clone)]
pub enum Cache {
    Memory(MemoryCache),
    Redis(RedisCache),
}

impl Cache {
    pub async fn connect(redis_url: Option<&str>) -> Result<Self, CacheError> {
        match redis_url {
            None => Ok(Cache::Memory(MemoryCache::default())),
            Some(url) => Ok(Cache::Redis(RedisCache::connect(url).await?)),
        }
    }

    /// Shared between instances (Redis) or private to this process.
    pub fn is_shared(&self) -> bool {
        matches!(self, Cache::Redis(_))
    }

    pub async fn get(&self, key: &str) -> Result<Option<String>, CacheError> {
        match self {
            Cache::Memory(m) => Ok(m.get(key)),
            Cache::Redis(r) => r.get(key).await,
        }
    }

    pub async fn set_ex(&self, key: &str, value: &str, ttl: Duration) -> Result<(), CacheError> {
        match self {
            Cache::Memory(m) => {
                m.set_ex(key, value, ttl);
                Ok(())
            }
            Cache::Redis(r) => r.set_ex(key, value, ttl).await,
        }
    }

    /// Sets `key` only if absent: a lock or a claim. True when this caller got it, or
    /// already holds it: `value` must be an owner token unique to the caller, so a retried
    /// attempt whose first try landed is recognised as its own.
    pub async fn set_nx_ex(
        &self,
        key: &str,
        value: &str,
        ttl: Duration,
    ) -> Result<bool, CacheError> {
        match self {
            Cache::Memory(m) => Ok(m.set_nx_ex(key, value, ttl)),
            Cache::Redis(r) => r.set_nx_ex(key, value, ttl).await,
        }
    }

    /// Adds one to the counter at `key`, atomically across instances; a new counter starts
    /// at 1 and lives `ttl` (the window does not slide). Returns the new count. A retried
    /// command may count one attempt twice: limits err on the strict side.
    pub async fn incr_ex(&self, key: &str, ttl: Duration) -> Result<i64, CacheError> {
        match self {
            Cache::Memory(m) => Ok(m.incr_ex(key, ttl)),
            Cache::Redis(r) => r.incr_ex(key, ttl).await,
        }
    }

    /// Takes back one count of [`Cache::incr_ex`] (what it counted did not happen), unless
    /// the counter's window is over.
    pub async fn uncount(&self, key: &str) -> Result<(), CacheError> {
        match self {
            Cache::Memory(m) => {
                m.uncount(key);
                Ok(())
            }
            Cache::Redis(r) => r.uncount(key).await,
        }
    }

    /// Deletes `key` only while it still holds `value` (release my lock, drop the token I used).
    pub async fn delete_if_equals(&self, key: &str, value: &str) -> Result<bool, CacheError> {
        match self {
            Cache::Memory(m) => Ok(m.delete_if_equals(key, value)),
            Cache::Redis(r) => r.delete_if_equals(key, value).await,
        }
    }

    pub async fn ping(&self) -> Result<(), CacheError> {
        match self {
            Cache::Memory(_) => Ok(()),
            Cache::Redis(r) => r.ping().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn memory_semantics() {
        let c = Cache::connect(None).await.expect("memory");
        assert!(c.get("a").await.expect("get").is_none());
        assert!(
            c.set_nx_ex("a", "1", Duration::from_secs(5))
                .await
                .expect("nx")
        );
        assert!(
            !c.set_nx_ex("a", "2", Duration::from_secs(5))
                .await
                .expect("nx")
        );
        assert!(
            c.set_nx_ex("a", "1", Duration::from_secs(5))
                .await
                .expect("nx"),
            "the owner's retry is its own"
        );
        // Live values get TTLs no machine outlives during the test; expiries are checked
        // after sleeping at least the TTL, so a slow machine cannot fail either side.
        assert_eq!(
            c.incr_ex("n", Duration::from_secs(60)).await.expect("incr"),
            1
        );
        assert_eq!(
            c.incr_ex("n", Duration::from_secs(60)).await.expect("incr"),
            2
        );
        assert_eq!(
            c.incr_ex("m", Duration::from_millis(1))
                .await
                .expect("incr"),
            1
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            c.incr_ex("m", Duration::from_secs(60)).await.expect("incr"),
            1,
            "expired"
        );
        c.uncount("n").await.expect("uncount");
        assert_eq!(
            c.incr_ex("n", Duration::from_secs(60)).await.expect("incr"),
            2,
            "one taken back"
        );
        c.uncount("absent").await.expect("uncount");
        assert!(
            c.get("absent").await.expect("get").is_none(),
            "no counter made"
        );
        assert!(!c.delete_if_equals("a", "2").await.expect("del"));
        assert!(c.delete_if_equals("a", "1").await.expect("del"));
        c.set_ex("b", "x", Duration::from_secs(60))
            .await
            .expect("set");
        assert_eq!(c.get("b").await.expect("get").as_deref(), Some("x"));
        c.set_ex("c", "x", Duration::from_millis(1))
            .await
            .expect("set");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(c.get("c").await.expect("get").is_none(), "expired");
    }
}
