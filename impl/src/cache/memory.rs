//! In-process store. A mutex over a map of short-lived keys (tokens, locks, counters,
//! remembered checks), each with its own expiry: expired keys are dropped when read, and
//! by a sweep whenever the map has doubled since the last one, so a store of n live keys
//! costs O(1) amortised per write and at most about 2n entries.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// No sweep below this many keys.
const MIN_SWEEP: usize = 10_000;

#[derive(Clone, Default)]
pub struct MemoryCache {
    inner: Arc<Mutex<Store>>,
}

#[derive(Default)]
struct Store {
    map: HashMap<String, (String, Instant)>,
    /// The size at which the next insert sweeps out expired keys first.
    sweep_at: usize,
}

impl Store {
    fn insert(&mut self, key: &str, value: String, expires: Instant) {
        if self.map.len() >= self.sweep_at.max(MIN_SWEEP) {
            let now = Instant::now();
            self.map.retain(|_, (_, exp)| *exp > now);
            self.sweep_at = self.map.len().saturating_mul(2);
        }
        self.map.insert(key.to_string(), (value, expires));
    }
}

impl MemoryCache {
    fn map(&self) -> std::sync::MutexGuard<'_, Store> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let mut m = self.map();
        match m.map.get(key) {
            Some((v, exp)) if *exp > Instant::now() => Some(v.clone()),
            Some(_) => {
                m.map.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn set_ex(&self, key: &str, value: &str, ttl: Duration) {
        self.map()
            .insert(key, value.to_string(), Instant::now() + ttl);
    }

    pub fn set_nx_ex(&self, key: &str, value: &str, ttl: Duration) -> bool {
        let mut m = self.map();
        let now = Instant::now();
        if let Some((v, exp)) = m.map.get(key)
            && *exp > now
        {
            return v == value;
        }
        m.insert(key, value.to_string(), now + ttl);
        true
    }

    pub fn incr_ex(&self, key: &str, ttl: Duration) -> i64 {
        let mut m = self.map();
        let now = Instant::now();
        match m.map.get_mut(key) {
            Some((v, exp)) if *exp > now => {
                let n = v.parse::<i64>().unwrap_or(0).saturating_add(1);
                *v = n.to_string();
                n
            }
            _ => {
                m.insert(key, "1".to_string(), now + ttl);
                1
            }
        }
    }

    pub fn uncount(&self, key: &str) {
        let mut m = self.map();
        if let Some((v, exp)) = m.map.get_mut(key)
            && *exp > Instant::now()
        {
            *v = v.parse::<i64>().unwrap_or(0).saturating_sub(1).to_string();
        }
    }

    pub fn delete_if_equals(&self, key: &str, value: &str) -> bool {
        let mut m = self.map();
        if m.map.get(key).is_some_and(|(v, _)| v == value) {
            m.map.remove(key);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_keys_are_swept_once_the_map_has_doubled() {
        let c = MemoryCache::default();
        for i in 0..MIN_SWEEP {
            c.set_ex(&format!("gone-{i}"), "x", Duration::from_millis(1));
        }
        std::thread::sleep(Duration::from_millis(5));
        // Counters and claims sweep too, not only plain sets.
        c.incr_ex("live", Duration::from_secs(60));
        assert_eq!(c.map().map.len(), 1);
        assert_eq!(c.get("live").as_deref(), Some("1"));
        for i in 0..3 * MIN_SWEEP {
            assert!(c.set_nx_ex(&format!("kept-{i}"), "x", Duration::from_secs(60)));
        }
        // Live keys are never dropped by a sweep.
        assert_eq!(c.map().map.len(), 3 * MIN_SWEEP + 1);
        assert_eq!(c.get("kept-0").as_deref(), Some("x"));
    }
}
