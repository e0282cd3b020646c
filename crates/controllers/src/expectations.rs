//! Expectations: what a controller has asked the API for and not yet seen in its cache.
//!
//! A controller acts on a cache that lags its own writes. Without a guard, a sync that
//! runs between "created 3 pods" and "the cache shows 3 pods" would create 3 more.
//! Upstream's answer (`pkg/controller/controller_utils.go`) is kept here:
//!
//! * [`ControllerExpectations`]: before creating `n` pods a controller expects `n`
//!   additions; before deleting pods it expects those exact pod keys to go
//!   (`UIDTrackingControllerExpectations`). Informer handlers lower the counts as the
//!   events arrive; until they reach zero (or [`EXPECTATIONS_TIMEOUT`] passes, in case
//!   an event was lost) the controller does not create or delete.
//! * [`ResourceVersionExpectations`]: for controllers that update objects they also read
//!   from a cache (the Deployment controller scaling its ReplicaSets): after a write
//!   returns resourceVersion `r`, the controller waits until the cache holds that
//!   object at `r` or later before deciding anything else from it.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long an unmet expectation blocks a controller (upstream `ExpectationsTimeout`).
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Expectation {
    adds: i64,
    deletes: HashSet<String>,
    since: Instant,
}

/// Pending creations (a count) and deletions (by object key) per controller key.
#[derive(Debug, Default)]
pub struct ControllerExpectations {
    inner: Mutex<HashMap<String, Expectation>>,
}

impl ControllerExpectations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the controller may act: nothing pending, or the record is too old to trust.
    pub fn satisfied(&self, key: &str) -> bool {
        let inner = self.lock();
        match inner.get(key) {
            None => true,
            Some(e) => {
                (e.adds <= 0 && e.deletes.is_empty()) || e.since.elapsed() > EXPECTATIONS_TIMEOUT
            }
        }
    }

    /// Expects `n` creations (replacing whatever was recorded).
    pub fn expect_creations(&self, key: &str, n: usize) {
        self.lock().insert(
            key.to_string(),
            Expectation {
                adds: i64::try_from(n).unwrap_or(i64::MAX),
                deletes: HashSet::new(),
                since: Instant::now(),
            },
        );
    }

    /// Expects these objects to be deleted (replacing whatever was recorded).
    pub fn expect_deletions(&self, key: &str, object_keys: impl IntoIterator<Item = String>) {
        self.lock().insert(
            key.to_string(),
            Expectation {
                adds: 0,
                deletes: object_keys.into_iter().collect(),
                since: Instant::now(),
            },
        );
    }

    /// Adds `adds` creations and these deletions to whatever is already expected
    /// (upstream `RaiseExpectations`), starting a record if there is none.
    pub fn raise(&self, key: &str, adds: usize, object_keys: impl IntoIterator<Item = String>) {
        let mut inner = self.lock();
        let e = inner.entry(key.to_string()).or_insert_with(|| Expectation {
            adds: 0,
            deletes: HashSet::new(),
            since: Instant::now(),
        });
        if e.adds <= 0 && e.deletes.is_empty() {
            // A satisfied record restarts its clock.
            e.adds = 0;
            e.since = Instant::now();
        }
        e.adds = e
            .adds
            .saturating_add(i64::try_from(adds).unwrap_or(i64::MAX));
        e.deletes.extend(object_keys);
    }

    /// One expected creation was seen (or will never happen because the request failed).
    pub fn creation_observed(&self, key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.adds -= 1;
        }
    }

    /// The object `object_key` is gone or going (or its delete request failed).
    pub fn deletion_observed(&self, key: &str, object_key: &str) {
        if let Some(e) = self.lock().get_mut(key) {
            e.deletes.remove(object_key);
        }
    }

    /// Forgets a controller (it was deleted).
    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Expectation>> {
        self.inner
            .lock()
            .expect("invariant: expectations lock is never poisoned")
    }
}

/// Per controller key: object key → resourceVersion awaited, and when last written.
type PendingWrites = HashMap<String, (HashMap<String, String>, Instant)>;

/// Writes a controller made and waits to see in its cache, per controller key.
#[derive(Debug, Default)]
pub struct ResourceVersionExpectations {
    inner: Mutex<PendingWrites>,
}

impl ResourceVersionExpectations {
    pub fn new() -> Self {
        Self::default()
    }

    /// The controller `key` wrote `object_key` and got back `resource_version`, unless
    /// `already_seen` says the cache holds it already. The check runs under the lock, so
    /// an informer that applies the write just after it still finds the expectation.
    pub fn expect_unless(
        &self,
        key: &str,
        object_key: &str,
        resource_version: &str,
        already_seen: impl FnOnce() -> bool,
    ) {
        let mut inner = self.lock();
        if already_seen() {
            return;
        }
        let entry = inner
            .entry(key.to_string())
            .or_insert_with(|| (HashMap::new(), Instant::now()));
        entry
            .0
            .insert(object_key.to_string(), resource_version.to_string());
        entry.1 = Instant::now();
    }

    /// The controller `key` wrote `object_key` and got back `resource_version`.
    pub fn expect(&self, key: &str, object_key: &str, resource_version: &str) {
        let mut inner = self.lock();
        let entry = inner
            .entry(key.to_string())
            .or_insert_with(|| (HashMap::new(), Instant::now()));
        entry
            .0
            .insert(object_key.to_string(), resource_version.to_string());
        entry.1 = Instant::now();
    }

    /// The cache now holds `object_key` at `resource_version`.
    pub fn observe(&self, key: &str, object_key: &str, resource_version: &str) {
        let mut inner = self.lock();
        if let Some((pending, _)) = inner.get_mut(key) {
            if pending
                .get(object_key)
                .is_some_and(|want| rv_at_least(resource_version, want))
            {
                pending.remove(object_key);
            }
            if pending.is_empty() {
                inner.remove(key);
            }
        }
    }

    /// The object is gone: nothing more to wait for.
    pub fn observe_deleted(&self, key: &str, object_key: &str) {
        let mut inner = self.lock();
        if let Some((pending, _)) = inner.get_mut(key) {
            pending.remove(object_key);
            if pending.is_empty() {
                inner.remove(key);
            }
        }
    }

    pub fn satisfied(&self, key: &str) -> bool {
        let inner = self.lock();
        match inner.get(key) {
            None => true,
            Some((pending, since)) => pending.is_empty() || since.elapsed() > EXPECTATIONS_TIMEOUT,
        }
    }

    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PendingWrites> {
        self.inner
            .lock()
            .expect("invariant: expectations lock is never poisoned")
    }
}

/// Whether resourceVersion `seen` is at or after `want`. resourceVersions are opaque to
/// clients, but every store this server uses issues increasing integers; anything else
/// only counts when equal.
pub fn rv_at_least(seen: &str, want: &str) -> bool {
    match (seen.parse::<u64>(), want.parse::<u64>()) {
        (Ok(s), Ok(w)) => s >= w,
        _ => seen == want,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_and_deletions_block_until_observed() {
        let e = ControllerExpectations::new();
        assert!(e.satisfied("ns/rs"));
        e.expect_creations("ns/rs", 2);
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(!e.satisfied("ns/rs"));
        e.creation_observed("ns/rs");
        assert!(e.satisfied("ns/rs"));

        e.expect_deletions("ns/rs", ["ns/a".to_string(), "ns/b".to_string()]);
        e.deletion_observed("ns/rs", "ns/a");
        // Deleting a pod nobody asked about does not count.
        e.deletion_observed("ns/rs", "ns/zzz");
        assert!(!e.satisfied("ns/rs"));
        e.deletion_observed("ns/rs", "ns/b");
        assert!(e.satisfied("ns/rs"));

        e.expect_creations("ns/rs", 1);
        e.delete("ns/rs");
        assert!(e.satisfied("ns/rs"));
    }

    #[test]
    fn raise_adds_to_what_is_expected() {
        let e = ControllerExpectations::new();
        e.raise("ns/s", 1, []);
        e.raise("ns/s", 1, ["ns/p".to_string()]);
        e.creation_observed("ns/s");
        assert!(!e.satisfied("ns/s"));
        e.creation_observed("ns/s");
        assert!(!e.satisfied("ns/s"));
        e.deletion_observed("ns/s", "ns/p");
        assert!(e.satisfied("ns/s"));
        // An extra observation never lets a later raise count short.
        e.creation_observed("ns/s");
        e.raise("ns/s", 1, []);
        assert!(!e.satisfied("ns/s"));
    }

    #[test]
    fn resource_versions_compare_numerically() {
        let cases = [
            ("10", "9", true),
            ("9", "10", false),
            ("10", "10", true),
            ("x", "x", true),
            ("x", "y", false),
        ];
        for (seen, want, ok) in cases {
            assert_eq!(rv_at_least(seen, want), ok, "{seen} vs {want}");
        }
        let e = ResourceVersionExpectations::new();
        e.expect("ns/d", "ns/rs1", "10");
        e.expect("ns/d", "ns/rs2", "12");
        e.observe("ns/d", "ns/rs1", "9");
        assert!(!e.satisfied("ns/d"));
        e.observe("ns/d", "ns/rs1", "11");
        e.observe_deleted("ns/d", "ns/rs2");
        assert!(e.satisfied("ns/d"));
    }
}
