//! A deduplicating work queue (client-go's `workqueue`): an item added while queued
//! is queued once; an item added while being processed is processed again after
//! `done`, never by two workers at once. Retries go through [`WorkQueue::add_rate_limited`]
//! with per-item exponential backoff.

use std::collections::{HashSet, VecDeque};
use std::hash::Hash;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::controller_utils::ErrorBackoff;

struct State<T> {
    queue: VecDeque<T>,
    dirty: HashSet<T>,
    processing: HashSet<T>,
}

pub struct WorkQueue<T> {
    state: Mutex<State<T>>,
    notify: Notify,
    backoff: ErrorBackoff,
    cancel: CancellationToken,
}

impl<T> WorkQueue<T>
where
    T: Clone + Eq + Hash + ToString + Send + 'static,
{
    /// A queue whose delayed adds stop when `cancel` fires.
    pub fn new(cancel: CancellationToken) -> Arc<Self> {
        Arc::new(WorkQueue {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                dirty: HashSet::new(),
                processing: HashSet::new(),
            }),
            notify: Notify::new(),
            backoff: ErrorBackoff::default(),
            cancel,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State<T>> {
        self.state
            .lock()
            .expect("invariant: work queue lock is never poisoned")
    }

    pub fn add(&self, item: T) {
        let mut s = self.lock();
        if !s.dirty.insert(item.clone()) {
            return;
        }
        if s.processing.contains(&item) {
            return;
        }
        s.queue.push_back(item);
        drop(s);
        self.notify.notify_one();
    }

    /// Adds `item` after `delay`.
    pub fn add_after(self: &Arc<Self>, item: T, delay: Duration) {
        let q = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = q.cancel.cancelled() => {}
                _ = tokio::time::sleep(delay) => q.add(item),
            }
        });
    }

    /// Adds `item` after its next backoff delay (5 ms, doubling).
    pub fn add_rate_limited(self: &Arc<Self>, item: T) {
        let delay = self.backoff.next_delay(&item.to_string());
        self.add_after(item, delay);
    }

    /// Resets `item`'s backoff after it was processed successfully.
    pub fn forget(&self, item: &T) {
        self.backoff.reset(&item.to_string());
    }

    /// The next item; `None` once `cancel` fires. Call [`WorkQueue::done`] after processing.
    pub async fn get(&self) -> Option<T> {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            // Register interest before looking, so an add between the look and the
            // wait is not missed.
            notified.as_mut().enable();
            {
                let mut s = self.lock();
                if let Some(item) = s.queue.pop_front() {
                    s.dirty.remove(&item);
                    s.processing.insert(item.clone());
                    let more = !s.queue.is_empty();
                    drop(s);
                    if more {
                        // Another worker may be waiting for the rest.
                        self.notify.notify_one();
                    }
                    return Some(item);
                }
            }
            tokio::select! {
                _ = self.cancel.cancelled() => return None,
                _ = &mut notified => {}
            }
        }
    }

    pub fn done(&self, item: &T) {
        let mut s = self.lock();
        s.processing.remove(item);
        if s.dirty.contains(item) {
            s.queue.push_back(item.clone());
            drop(s);
            self.notify.notify_one();
        }
    }

    /// One worker until the queue is cancelled: each item is handed to `sync`; success
    /// forgets its backoff, an error queues it again after backoff (logged as
    /// `controller`'s); either way it is marked done.
    pub async fn work<E, F, Fut>(self: &Arc<Self>, controller: &str, mut sync: F)
    where
        E: std::fmt::Display,
        F: FnMut(T) -> Fut,
        Fut: std::future::Future<Output = Result<(), E>>,
        T: std::fmt::Debug,
    {
        while let Some(item) = self.get().await {
            match sync(item.clone()).await {
                Ok(()) => self.forget(&item),
                Err(e) => {
                    tracing::debug!(controller, ?item, error = %e, "sync failed; will retry");
                    self.add_rate_limited(item.clone());
                }
            }
            self.done(&item);
        }
    }

    pub fn len(&self) -> usize {
        self.lock().queue.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn dedups_and_requeues_items_added_while_processing() {
        let q = WorkQueue::<String>::new(CancellationToken::new());
        q.add("a".into());
        q.add("a".into());
        q.add("b".into());
        assert_eq!(q.len(), 2);
        let a = q.get().await.expect("item");
        assert_eq!(a, "a");
        // Added again while processing: not handed out twice, queued again on done.
        q.add("a".into());
        assert_eq!(q.get().await.as_deref(), Some("b"));
        assert!(q.is_empty());
        q.done(&a);
        assert_eq!(q.get().await.as_deref(), Some("a"));
    }

    #[tokio::test]
    async fn get_returns_none_on_cancel_and_wakes_on_add() {
        let cancel = CancellationToken::new();
        let q = WorkQueue::<String>::new(cancel.clone());
        let q2 = q.clone();
        let waiter = tokio::spawn(async move { q2.get().await });
        tokio::task::yield_now().await;
        q.add("x".into());
        assert_eq!(waiter.await.expect("join").as_deref(), Some("x"));
        cancel.cancel();
        assert_eq!(q.get().await, None);
    }
}
