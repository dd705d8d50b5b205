//! Expectations against a lagging cache, as Kubernetes' controllers keep them: after a
//! controller creates or deletes pods it expects to see those changes in its watch before it
//! trusts its cache again, so it never creates twice for the same gap. Expectations that are
//! not met within [`EXPECTATION_TTL`] are dropped (a watch event can be missed).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const EXPECTATION_TTL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy)]
struct Pending {
    adds: i64,
    dels: i64,
    since: Instant,
}

/// Pending creations and deletions per controller key (`namespace/name`).
#[derive(Debug, Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    /// True when the cache can be trusted for `key`: nothing is pending, or what is pending
    /// has expired.
    pub fn satisfied(&self, key: &str) -> bool {
        let map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        match map.get(key) {
            None => true,
            Some(p) => (p.adds <= 0 && p.dels <= 0) || p.since.elapsed() > EXPECTATION_TTL,
        }
    }

    /// Expect `adds` creations and `dels` deletions for `key` (replacing what was expected).
    pub fn expect(&self, key: &str, adds: i64, dels: i64) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(key.to_string(), Pending { adds, dels, since: Instant::now() });
    }

    /// A creation for `key` was seen (or will never happen: the create failed).
    pub fn creation_observed(&self, key: &str) {
        self.lower(key, 1, 0);
    }

    /// A deletion for `key` was seen (or will never happen: the delete failed).
    pub fn deletion_observed(&self, key: &str) {
        self.lower(key, 0, 1);
    }

    fn lower(&self, key: &str, adds: i64, dels: i64) {
        let mut map = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(p) = map.get_mut(key) {
            p.adds -= adds;
            p.dels -= dels;
        }
    }

    /// Forget `key` (its controller object is gone).
    pub fn forget(&self, key: &str) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expectations_should_be_satisfied_once_every_change_is_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/a"));
        e.expect("ns/a", 2, 1);
        assert!(!e.satisfied("ns/a"));
        e.creation_observed("ns/a");
        e.deletion_observed("ns/a");
        assert!(!e.satisfied("ns/a"), "one creation is still pending");
        e.creation_observed("ns/a");
        assert!(e.satisfied("ns/a"));
        assert!(e.satisfied("ns/b"), "other keys are unaffected");
        e.expect("ns/b", 1, 0);
        e.forget("ns/b");
        assert!(e.satisfied("ns/b"));
    }
}
