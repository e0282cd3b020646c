//! Scheduled pod deletions (upstream `tainteviction.TimedWorkerQueue`), keyed by
//! `namespace/name`. A key is *pending* until its time comes, then *fired*: it stays
//! known so the same eviction is not scheduled twice, until cancelled (the taint went
//! away, the pod is gone) or forgotten. One task ([`TimedWorkers::run`]) hands due keys
//! to a callback, so timers need no task each.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A pending deletion.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Scheduled {
    pub created_at: Instant,
    pub fire_at: Instant,
    seq: u64,
}

#[derive(Default)]
struct State {
    /// `None` once fired.
    workers: HashMap<String, Option<Scheduled>>,
    due: BTreeMap<(Instant, u64), String>,
    seq: u64,
}

#[derive(Default)]
pub struct TimedWorkers {
    state: Mutex<State>,
    notify: Notify,
}

impl TimedWorkers {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .expect("invariant: timed workers lock is never poisoned")
    }

    /// Schedules `key` for `fire_at`; false if it is pending or fired already.
    pub fn add(&self, key: &str, created_at: Instant, fire_at: Instant) -> bool {
        let mut s = self.lock();
        if s.workers.contains_key(key) {
            return false;
        }
        s.seq += 1;
        let seq = s.seq;
        s.workers.insert(
            key.to_string(),
            Some(Scheduled {
                created_at,
                fire_at,
                seq,
            }),
        );
        s.due.insert((fire_at, seq), key.to_string());
        drop(s);
        self.notify.notify_one();
        true
    }

    /// Forgets `key`; true if a pending deletion was cancelled.
    pub fn cancel(&self, key: &str) -> bool {
        let mut s = self.lock();
        match s.workers.remove(key) {
            Some(Some(w)) => {
                s.due.remove(&(w.fire_at, w.seq));
                true
            }
            _ => false,
        }
    }

    /// The pending deletion of `key`, if any.
    pub fn pending(&self, key: &str) -> Option<Scheduled> {
        self.lock().workers.get(key).copied().flatten()
    }

    /// Whether `key` has fired and was not cancelled since.
    pub fn is_fired(&self, key: &str) -> bool {
        matches!(self.lock().workers.get(key), Some(None))
    }

    /// Keys due at `now`, marked fired.
    pub fn pop_due(&self, now: Instant) -> Vec<String> {
        let mut s = self.lock();
        let mut out = Vec::new();
        while let Some(entry) = s.due.first_entry() {
            if entry.key().0 > now {
                break;
            }
            let key = entry.remove();
            s.workers.insert(key.clone(), None);
            out.push(key);
        }
        out
    }

    fn next_due(&self) -> Option<Instant> {
        self.lock().due.first_key_value().map(|((at, _), _)| *at)
    }

    /// Hands every key to `fire` when it is due, until `cancel` fires.
    pub async fn run(&self, cancel: CancellationToken, fire: impl Fn(String)) {
        loop {
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            for key in self.pop_due(Instant::now()) {
                fire(key);
            }
            let sleep = async {
                match self.next_due() {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = &mut notified => {}
                _ = sleep => {}
            }
        }
    }

    pub fn len(&self) -> usize {
        self.lock().workers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn deletions_fire_on_time_once_and_cancel() {
        let t0 = Instant::now();
        let w = TimedWorkers::default();
        assert!(w.add("ns/a", t0, t0 + Duration::from_secs(5)));
        assert!(!w.add("ns/a", t0, t0 + Duration::from_secs(1)));
        assert!(w.add("ns/b", t0, t0 + Duration::from_secs(2)));
        assert!(w.pop_due(t0 + Duration::from_secs(1)).is_empty());
        assert_eq!(w.pop_due(t0 + Duration::from_secs(2)), vec!["ns/b"]);
        // Fired: known, not pending, not added again, and cancelling it is silent.
        assert!(w.is_fired("ns/b") && w.pending("ns/b").is_none());
        assert!(!w.add("ns/b", t0, t0));
        assert!(!w.cancel("ns/b"));
        assert!(w.add("ns/b", t0, t0));
        // A cancelled pending one never fires.
        assert!(w.cancel("ns/a"));
        assert_eq!(w.pop_due(t0 + Duration::from_secs(10)), vec!["ns/b"]);
        assert!(!w.is_fired("ns/a"));
    }

    #[tokio::test(start_paused = true)]
    async fn the_runner_wakes_for_new_and_due_work() {
        let w = Arc::new(TimedWorkers::default());
        let fired = Arc::new(Mutex::new(Vec::new()));
        let cancel = CancellationToken::new();
        let runner = {
            let (w, fired, cancel) = (w.clone(), fired.clone(), cancel.clone());
            tokio::spawn(
                async move { w.run(cancel, |k| fired.lock().expect("lock").push(k)).await },
            )
        };
        let t0 = Instant::now();
        w.add("ns/late", t0, t0 + Duration::from_secs(3));
        w.add("ns/soon", t0, t0 + Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert_eq!(*fired.lock().expect("lock"), vec!["ns/soon"]);
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(*fired.lock().expect("lock"), vec!["ns/soon", "ns/late"]);
        cancel.cancel();
        runner.await.expect("join");
    }
}
