//! A keyed work queue (client-go's workqueue, reduced): adding a key that is already
//! waiting only replaces its value, a key is never handed to two workers at once, and a
//! key added while a worker holds it comes back once that worker is done.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

/// First retry delay after a failed sync; doubles per consecutive failure.
const RETRY_BASE: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

pub struct WorkQueue<V> {
    inner: Mutex<Inner<V>>,
    notify: Notify,
}

struct Inner<V> {
    order: VecDeque<String>,
    waiting: HashMap<String, V>,
    processing: HashSet<String>,
    /// Values added while their key was being processed.
    deferred: HashMap<String, V>,
    failures: HashMap<String, u32>,
}

impl<V> Default for WorkQueue<V> {
    fn default() -> Self {
        WorkQueue {
            inner: Mutex::new(Inner {
                order: VecDeque::new(),
                waiting: HashMap::new(),
                processing: HashSet::new(),
                deferred: HashMap::new(),
                failures: HashMap::new(),
            }),
            notify: Notify::new(),
        }
    }
}

impl<V> WorkQueue<V> {
    /// Queues `key` with `value`, replacing the value if the key is already waiting.
    pub fn add(&self, key: String, value: V) {
        let mut inner = self.inner.lock();
        if inner.processing.contains(&key) {
            inner.deferred.insert(key, value);
            return;
        }
        if inner.waiting.insert(key.clone(), value).is_none() {
            inner.order.push_back(key);
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Queues `key` only if it is not waiting or in flight already (retries must not
    /// replace a newer value with their older one).
    pub fn add_if_idle(&self, key: String, value: V) {
        {
            let inner = self.inner.lock();
            if inner.waiting.contains_key(&key) || inner.processing.contains(&key) {
                return;
            }
        }
        self.add(key, value);
    }

    /// Drops `key` if it is waiting (e.g. its object was deleted).
    pub fn forget(&self, key: &str) {
        let mut inner = self.inner.lock();
        inner.waiting.remove(key);
        inner.deferred.remove(key);
        inner.failures.remove(key);
    }

    /// The next key and value; `None` once `cancel` fires. Call [`WorkQueue::done`] after.
    pub async fn next(&self, cancel: &CancellationToken) -> Option<(String, V)> {
        loop {
            {
                let mut inner = self.inner.lock();
                while let Some(key) = inner.order.pop_front() {
                    // Forgotten keys stay in `order` until they come up here.
                    if let Some(value) = inner.waiting.remove(&key) {
                        inner.processing.insert(key.clone());
                        return Some((key, value));
                    }
                }
            }
            tokio::select! {
                _ = self.notify.notified() => {}
                _ = cancel.cancelled() => return None,
            }
        }
    }

    /// Releases `key`; if it was added meanwhile it is queued again. `ok` resets its
    /// failure count.
    pub fn done(&self, key: &str, ok: bool) {
        let deferred = {
            let mut inner = self.inner.lock();
            inner.processing.remove(key);
            if ok {
                inner.failures.remove(key);
            }
            inner.deferred.remove(key)
        };
        if let Some(value) = deferred {
            self.add(key.to_string(), value);
        }
    }

    /// How long to wait before retrying `key` after a failure (exponential per key).
    pub fn retry_delay(&self, key: &str) -> Duration {
        let mut inner = self.inner.lock();
        let n = inner.failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        RETRY_BASE
            .saturating_mul(1u32 << (*n - 1).min(10))
            .min(RETRY_MAX)
    }

    pub fn len(&self) -> usize {
        self.inner.lock().waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedupes_waiting_keys_and_defers_keys_in_flight() {
        let q = WorkQueue::default();
        let cancel = CancellationToken::new();
        q.add("a".to_string(), 1);
        q.add("b".to_string(), 1);
        q.add("a".to_string(), 2);
        assert_eq!(q.len(), 2);
        assert_eq!(q.next(&cancel).await, Some(("a".to_string(), 2)));
        // `a` is in flight: a new value waits until it is done.
        q.add("a".to_string(), 3);
        assert_eq!(q.next(&cancel).await, Some(("b".to_string(), 1)));
        q.done("b", true);
        assert!(q.is_empty());
        q.done("a", true);
        assert_eq!(q.next(&cancel).await, Some(("a".to_string(), 3)));
    }

    #[tokio::test]
    async fn retries_do_not_replace_newer_values() {
        let q = WorkQueue::default();
        let cancel = CancellationToken::new();
        q.add("a".to_string(), 2);
        q.add_if_idle("a".to_string(), 1);
        assert_eq!(q.next(&cancel).await, Some(("a".to_string(), 2)));
        q.add_if_idle("a".to_string(), 1);
        q.done("a", false);
        assert!(q.is_empty());
        q.add_if_idle("a".to_string(), 1);
        assert_eq!(q.next(&cancel).await, Some(("a".to_string(), 1)));
    }

    #[tokio::test]
    async fn forgotten_keys_are_skipped_and_cancel_ends_waiting() {
        let q = WorkQueue::default();
        let cancel = CancellationToken::new();
        q.add("a".to_string(), 1);
        q.forget("a");
        cancel.cancel();
        assert_eq!(q.next(&cancel).await, None);
    }

    #[tokio::test]
    async fn wakes_a_waiting_worker() {
        let q = std::sync::Arc::new(WorkQueue::default());
        let cancel = CancellationToken::new();
        let worker = tokio::spawn({
            let (q, cancel) = (q.clone(), cancel.clone());
            async move { q.next(&cancel).await }
        });
        tokio::task::yield_now().await;
        q.add("x".to_string(), 7);
        assert_eq!(worker.await.expect("join"), Some(("x".to_string(), 7)));
    }

    #[test]
    fn retry_delays_grow_and_reset() {
        let q: WorkQueue<()> = WorkQueue::default();
        assert_eq!(q.retry_delay("a"), RETRY_BASE);
        assert_eq!(q.retry_delay("a"), RETRY_BASE * 2);
        for _ in 0..20 {
            q.retry_delay("a");
        }
        assert_eq!(q.retry_delay("a"), RETRY_MAX);
        q.done("a", true);
        assert_eq!(q.retry_delay("a"), RETRY_BASE);
    }
}
