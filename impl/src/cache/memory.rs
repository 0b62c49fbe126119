//! In-process store. A mutex over a map: the keys are few (tokens, locks) and short-lived,
//! so a cache crate's eviction machinery would buy nothing here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Default)]
pub struct MemoryCache {
    inner: Arc<Mutex<HashMap<String, (String, Instant)>>>,
}

impl MemoryCache {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Instant)>> {
        // A panic while holding this lock cannot leave the map half-updated.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<String> {
        let mut m = self.map();
        match m.get(key) {
            Some((v, exp)) if *exp > Instant::now() => Some(v.clone()),
            Some(_) => {
                m.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn set_ex(&self, key: &str, value: &str, ttl: Duration) {
        let mut m = self.map();
        if m.len() > 10_000 {
            let now = Instant::now();
            m.retain(|_, (_, exp)| *exp > now);
        }
        m.insert(key.to_string(), (value.to_string(), Instant::now() + ttl));
    }

    pub fn set_nx_ex(&self, key: &str, value: &str, ttl: Duration) -> bool {
        let mut m = self.map();
        let now = Instant::now();
        if let Some((v, exp)) = m.get(key)
            && *exp > now
        {
            return v == value;
        }
        m.insert(key.to_string(), (value.to_string(), now + ttl));
        true
    }

    pub fn incr_ex(&self, key: &str, ttl: Duration) -> i64 {
        let mut m = self.map();
        let now = Instant::now();
        match m.get_mut(key) {
            Some((v, exp)) if *exp > now => {
                let n = v.parse::<i64>().unwrap_or(0).saturating_add(1);
                *v = n.to_string();
                n
            }
            _ => {
                m.insert(key.to_string(), ("1".to_string(), now + ttl));
                1
            }
        }
    }

    pub fn uncount(&self, key: &str) {
        let mut m = self.map();
        if let Some((v, exp)) = m.get_mut(key)
            && *exp > Instant::now()
        {
            *v = v.parse::<i64>().unwrap_or(0).saturating_sub(1).to_string();
        }
    }

    pub fn delete_if_equals(&self, key: &str, value: &str) -> bool {
        let mut m = self.map();
        if m.get(key).is_some_and(|(v, _)| v == value) {
            m.remove(key);
            true
        } else {
            false
        }
    }
}
