//! The scheduling queue (upstream `backend/queue`): pending pods waiting for a cycle.
//!
//! - **active**: ready now, ordered by priority (higher first), then by when they
//!   entered the queue (PrioritySort);
//! - **backoff**: failed recently; each pod waits 1 s after its first failure, doubling
//!   per attempt up to 10 s, then moves to active;
//! - **unschedulable**: found no node; they stay until a cluster event that could help
//!   (node added or changed, assigned pod deleted, …) moves them back — to backoff if
//!   their backoff has not expired yet — or until they have waited 5 minutes;
//! - **gated**: `spec.schedulingGates` not empty; they wait for the gates to be removed.
//!
//! A popped pod is "in flight" until the cycle reports success ([`SchedulingQueue::done`])
//! or failure. If a move event arrived while it was in flight, a failure sends it to
//! backoff rather than to the unschedulable pool, so the event is not lost.
//! Heaps use lazy deletion: entries carry a generation and stale ones are skipped.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::framework::PodInfo;

pub const DEFAULT_POD_INITIAL_BACKOFF: Duration = Duration::from_secs(1);
pub const DEFAULT_POD_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often even without events.
pub const MAX_IN_UNSCHEDULABLE: Duration = Duration::from_secs(5 * 60);

/// Where a pod currently is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Active,
    Backoff,
    Unschedulable,
    Gated,
    InFlight,
}

/// A pod in the queue with its scheduling history.
#[derive(Clone, Debug)]
pub struct QueuedPodInfo {
    pub pod: Arc<PodInfo>,
    /// Scheduling attempts so far (incremented on pop).
    pub attempts: u32,
    /// When the pod first entered the queue.
    pub initial_attempt: Instant,
    /// When the last attempt failed; backoff counts from here.
    pub last_failure: Option<Instant>,
    /// Plugins that rejected the pod in its last attempt.
    pub unschedulable_plugins: BTreeSet<&'static str>,
}

#[derive(Debug)]
struct Entry {
    info: QueuedPodInfo,
    location: Location,
    /// Bumped whenever the entry moves, invalidating older heap entries.
    generation: u64,
    /// Arrival order among pods of equal priority.
    seq: u64,
    /// When it entered the unschedulable pool.
    unschedulable_since: Option<Instant>,
    /// Scheduling cycle in which it was popped.
    popped_cycle: u64,
}

#[derive(Debug, PartialEq, Eq)]
struct ActiveKey {
    priority: i32,
    seq: u64,
    uid: String,
    generation: u64,
}

impl Ord for ActiveKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.priority
            .cmp(&other.priority)
            .then_with(|| other.seq.cmp(&self.seq))
    }
}

impl PartialOrd for ActiveKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

fn backoff(initial: Duration, max: Duration, attempts: u32) -> Duration {
    let mut d = initial;
    for _ in 1..attempts {
        d = d.saturating_mul(2);
        if d >= max {
            return max;
        }
    }
    d.min(max)
}

fn gated(pod: &PodInfo) -> bool {
    pod.spec()
        .and_then(|s| s.scheduling_gates.as_ref())
        .is_some_and(|g| !g.is_empty())
}

/// Whether an update to a pending pod could change where it fits.
fn changed_for_scheduling(old: &PodInfo, new: &PodInfo) -> bool {
    old.pod.spec != new.pod.spec
        || old.pod.metadata.labels != new.pod.metadata.labels
        || old.priority != new.priority
}

pub struct SchedulingQueue {
    entries: HashMap<String, Entry>,
    active: BinaryHeap<ActiveKey>,
    backoff: BinaryHeap<Reverse<(Instant, u64, String, u64)>>,
    /// Uids in the unschedulable pool, so move events touch only those.
    unschedulable: HashSet<String>,
    next_seq: u64,
    next_generation: u64,
    initial_backoff: Duration,
    max_backoff: Duration,
    scheduling_cycle: u64,
    move_request_cycle: u64,
}

impl Default for SchedulingQueue {
    fn default() -> Self {
        SchedulingQueue::new(DEFAULT_POD_INITIAL_BACKOFF, DEFAULT_POD_MAX_BACKOFF)
    }
}

impl SchedulingQueue {
    pub fn new(initial_backoff: Duration, max_backoff: Duration) -> SchedulingQueue {
        SchedulingQueue {
            entries: HashMap::new(),
            active: BinaryHeap::new(),
            backoff: BinaryHeap::new(),
            unschedulable: HashSet::new(),
            next_seq: 0,
            next_generation: 0,
            initial_backoff,
            max_backoff,
            scheduling_cycle: 0,
            move_request_cycle: 0,
        }
    }

    /// Backoff after `attempts` failed attempts: initial × 2^(attempts−1), capped.
    pub fn backoff_duration(&self, attempts: u32) -> Duration {
        backoff(self.initial_backoff, self.max_backoff, attempts)
    }

    fn backoff_expiry(&self, info: &QueuedPodInfo) -> Option<Instant> {
        info.last_failure
            .map(|t| t + self.backoff_duration(info.attempts))
    }

    fn place(&mut self, uid: &str, location: Location, now: Instant) {
        self.next_generation += 1;
        let generation = self.next_generation;
        let (initial, max) = (self.initial_backoff, self.max_backoff);
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        e.location = location;
        e.generation = generation;
        e.unschedulable_since = (location == Location::Unschedulable).then_some(now);
        if location == Location::Unschedulable {
            self.unschedulable.insert(uid.to_string());
        } else {
            self.unschedulable.remove(uid);
        }
        match location {
            Location::Active => self.active.push(ActiveKey {
                priority: e.info.pod.priority,
                seq: e.seq,
                uid: uid.to_string(),
                generation,
            }),
            Location::Backoff => {
                let expiry = e
                    .info
                    .last_failure
                    .map_or(now, |t| t + backoff(initial, max, e.info.attempts));
                self.backoff
                    .push(Reverse((expiry, e.seq, uid.to_string(), generation)));
            }
            _ => {}
        }
    }

    /// Active, or backoff while the pod's backoff has not expired.
    fn place_active_or_backoff(&mut self, uid: &str, now: Instant) {
        let backing_off = self
            .entries
            .get(uid)
            .and_then(|e| self.backoff_expiry(&e.info))
            .is_some_and(|t| t > now);
        self.place(
            uid,
            if backing_off {
                Location::Backoff
            } else {
                Location::Active
            },
            now,
        );
    }

    /// Adds a new pending pod, or updates it if already queued.
    pub fn add(&mut self, pod: Arc<PodInfo>, now: Instant) {
        if self.entries.contains_key(&pod.uid) {
            self.update(pod, now);
            return;
        }
        let uid = pod.uid.clone();
        let is_gated = gated(&pod);
        self.next_seq += 1;
        let info = QueuedPodInfo {
            pod,
            attempts: 0,
            initial_attempt: now,
            last_failure: None,
            unschedulable_plugins: BTreeSet::new(),
        };
        self.entries.insert(
            uid.clone(),
            Entry {
                info,
                location: Location::Gated,
                generation: 0,
                seq: self.next_seq,
                unschedulable_since: None,
                popped_cycle: 0,
            },
        );
        self.place(
            &uid,
            if is_gated {
                Location::Gated
            } else {
                Location::Active
            },
            now,
        );
    }

    /// A newer version of a queued pod: unschedulable pods whose spec or labels changed
    /// get another chance; gated pods whose gates are gone become active.
    pub fn update(&mut self, pod: Arc<PodInfo>, now: Instant) {
        let uid = pod.uid.clone();
        let Some(e) = self.entries.get_mut(&uid) else {
            self.add(pod, now);
            return;
        };
        let changed = changed_for_scheduling(&e.info.pod, &pod);
        let priority_changed = e.info.pod.priority != pod.priority;
        let now_gated = gated(&pod);
        e.info.pod = pod;
        match e.location {
            Location::Gated if !now_gated => self.place(&uid, Location::Active, now),
            Location::Unschedulable if changed => self.place_active_or_backoff(&uid, now),
            Location::Active if priority_changed => self.place(&uid, Location::Active, now),
            _ => {}
        }
    }

    pub fn delete(&mut self, uid: &str) {
        self.entries.remove(uid);
        self.unschedulable.remove(uid);
    }

    /// Pods in the unschedulable pool.
    pub fn num_unschedulable(&self) -> usize {
        self.unschedulable.len()
    }

    pub fn contains(&self, uid: &str) -> bool {
        self.entries.contains_key(uid)
    }

    pub fn location(&self, uid: &str) -> Option<Location> {
        self.entries.get(uid).map(|e| e.location)
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Uids of queued pods that are not in flight.
    pub fn queued_uids(&self) -> Vec<String> {
        self.entries
            .iter()
            .filter(|(_, e)| e.location != Location::InFlight)
            .map(|(u, _)| u.clone())
            .collect()
    }

    /// Moves pods whose backoff expired to active.
    pub fn flush_backoff_completed(&mut self, now: Instant) {
        while let Some(Reverse((expiry, _, _, _))) = self.backoff.peek() {
            if *expiry > now {
                break;
            }
            let Some(Reverse((_, _, uid, generation))) = self.backoff.pop() else {
                break;
            };
            if self
                .entries
                .get(&uid)
                .is_some_and(|e| e.generation == generation && e.location == Location::Backoff)
            {
                self.place(&uid, Location::Active, now);
            }
        }
    }

    /// When the earliest backoff expires (possibly a stale entry: an early wake-up).
    pub fn next_backoff_expiry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((t, _, _, _))| *t)
    }

    /// The most important active pod, now in flight.
    pub fn pop(&mut self, now: Instant) -> Option<QueuedPodInfo> {
        self.flush_backoff_completed(now);
        while let Some(key) = self.active.pop() {
            let Some(e) = self.entries.get_mut(&key.uid) else {
                continue;
            };
            if e.generation != key.generation || e.location != Location::Active {
                continue;
            }
            self.scheduling_cycle += 1;
            e.location = Location::InFlight;
            e.popped_cycle = self.scheduling_cycle;
            e.info.attempts += 1;
            return Some(e.info.clone());
        }
        None
    }

    /// The in-flight pod was assumed on a node: it leaves the queue.
    pub fn done(&mut self, uid: &str) {
        if self.location(uid) == Some(Location::InFlight) {
            self.entries.remove(uid);
        }
    }

    /// The in-flight pod fit nowhere: park it until an event may help (or back off, if
    /// such an event already came during its cycle).
    pub fn add_unschedulable(&mut self, uid: &str, plugins: BTreeSet<&'static str>, now: Instant) {
        let move_requested = self.move_request_cycle;
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        if e.location != Location::InFlight {
            return;
        }
        e.info.last_failure = Some(now);
        e.info.unschedulable_plugins = plugins;
        if move_requested >= e.popped_cycle {
            self.place_active_or_backoff(uid, now);
        } else {
            self.place(uid, Location::Unschedulable, now);
        }
    }

    /// The in-flight pod hit an error: retry after backoff.
    pub fn add_backoff(&mut self, uid: &str, now: Instant) {
        let Some(e) = self.entries.get_mut(uid) else {
            return;
        };
        if e.location != Location::InFlight {
            return;
        }
        e.info.last_failure = Some(now);
        self.place(uid, Location::Backoff, now);
    }

    /// A pod that had left the queue (its binding failed) comes back with its history.
    pub fn requeue_after_error(&mut self, mut info: QueuedPodInfo, now: Instant) {
        let uid = info.pod.uid.clone();
        if self.entries.contains_key(&uid) {
            return;
        }
        info.last_failure = Some(now);
        self.next_seq += 1;
        self.entries.insert(
            uid.clone(),
            Entry {
                info,
                location: Location::Backoff,
                generation: 0,
                seq: self.next_seq,
                unschedulable_since: None,
                popped_cycle: 0,
            },
        );
        self.place(&uid, Location::Backoff, now);
    }

    /// A cluster event that may make unschedulable pods fit: moves those `pred` selects.
    pub fn move_all_to_active_or_backoff(
        &mut self,
        now: Instant,
        pred: impl Fn(&QueuedPodInfo) -> bool,
    ) {
        self.move_request_cycle = self.scheduling_cycle;
        let uids: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|u| self.entries.get(*u).is_some_and(|e| pred(&e.info)))
            .cloned()
            .collect();
        for uid in uids {
            self.place_active_or_backoff(&uid, now);
        }
    }

    /// Retries pods that have been unschedulable for [`MAX_IN_UNSCHEDULABLE`].
    pub fn flush_unschedulable_left_over(&mut self, now: Instant) {
        let uids: Vec<String> = self
            .unschedulable
            .iter()
            .filter(|u| {
                self.entries
                    .get(*u)
                    .and_then(|e| e.unschedulable_since)
                    .is_some_and(|t| now.saturating_duration_since(t) >= MAX_IN_UNSCHEDULABLE)
            })
            .cloned()
            .collect();
        for uid in uids {
            self.place_active_or_backoff(&uid, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i32) -> Arc<PodInfo> {
        Arc::new(PodInfo::from_pod(
            serde_json::from_value(json!({"metadata": {"name": name, "uid": name}, "spec": {"priority": priority, "containers": []}}))
                .expect("pod"),
        ))
    }

    fn pop_names(q: &mut SchedulingQueue, now: Instant) -> Vec<String> {
        std::iter::from_fn(|| q.pop(now))
            .map(|p| p.pod.name.clone())
            .collect()
    }

    #[test]
    fn pops_by_priority_then_arrival() {
        let mut q = SchedulingQueue::default();
        let now = Instant::now();
        for (name, prio) in [("low-1", 0), ("high", 100), ("low-2", 0), ("mid", 10)] {
            q.add(pod(name, prio), now);
        }
        assert_eq!(
            pop_names(&mut q, now),
            vec!["high", "mid", "low-1", "low-2"]
        );
        assert!(q.pop(now).is_none());
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let q = SchedulingQueue::default();
        let got: Vec<u64> = (1..=6).map(|a| q.backoff_duration(a).as_secs()).collect();
        assert_eq!(got, vec![1, 2, 4, 8, 10, 10]);
    }

    #[test]
    fn unschedulable_pods_wait_for_an_event_then_respect_backoff() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add(pod("p", 0), t0);
        let p = q.pop(t0).expect("pop");
        q.add_unschedulable(&p.pod.uid, BTreeSet::new(), t0);
        assert_eq!(q.location("p"), Some(Location::Unschedulable));
        assert!(
            q.pop(t0 + Duration::from_secs(60)).is_none(),
            "no event, no retry"
        );

        // An event within the backoff window parks it in backoff…
        q.move_all_to_active_or_backoff(t0 + Duration::from_millis(500), |_| true);
        assert_eq!(q.location("p"), Some(Location::Backoff));
        assert!(q.pop(t0 + Duration::from_millis(900)).is_none());
        // …until the backoff expires.
        assert_eq!(
            q.pop(t0 + Duration::from_millis(1000)).map(|p| p.attempts),
            Some(2)
        );
    }

    #[test]
    fn an_event_after_backoff_makes_the_pod_active_at_once() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add(pod("p", 0), t0);
        q.pop(t0).expect("pop");
        q.add_unschedulable("p", BTreeSet::new(), t0);
        q.move_all_to_active_or_backoff(t0 + Duration::from_secs(5), |_| true);
        assert_eq!(q.location("p"), Some(Location::Active));
    }

    #[test]
    fn an_event_during_the_cycle_is_not_lost() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add(pod("p", 0), t0);
        q.pop(t0).expect("pop");
        q.move_all_to_active_or_backoff(t0, |_| true);
        q.add_unschedulable("p", BTreeSet::new(), t0);
        assert_eq!(q.location("p"), Some(Location::Backoff));
    }

    #[test]
    fn gated_pods_wait_for_their_gates() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        let gated_pod: PodInfo = PodInfo::from_pod(
            serde_json::from_value(json!({"metadata": {"name": "g", "uid": "g"}, "spec": {"containers": [], "schedulingGates": [{"name": "x"}]}}))
                .expect("pod"),
        );
        q.add(Arc::new(gated_pod), t0);
        assert!(q.pop(t0).is_none());
        q.update(pod("g", 0), t0);
        assert_eq!(q.pop(t0).map(|p| p.pod.name.clone()).as_deref(), Some("g"));
    }

    #[test]
    fn deleted_and_done_pods_leave() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add(pod("a", 0), t0);
        q.add(pod("b", 0), t0);
        q.delete("a");
        let b = q.pop(t0).expect("b");
        assert_eq!(b.pod.name, "b");
        q.done("b");
        assert!(q.is_empty());
        q.requeue_after_error(b, t0);
        assert_eq!(q.location("b"), Some(Location::Backoff));
        assert_eq!(q.next_backoff_expiry(), Some(t0 + Duration::from_secs(1)));
    }

    #[test]
    fn left_over_unschedulable_pods_are_retried_after_five_minutes() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add(pod("p", 0), t0);
        q.pop(t0).expect("pop");
        q.add_unschedulable("p", BTreeSet::new(), t0);
        q.flush_unschedulable_left_over(t0 + Duration::from_secs(60));
        assert_eq!(q.location("p"), Some(Location::Unschedulable));
        q.flush_unschedulable_left_over(t0 + MAX_IN_UNSCHEDULABLE);
        assert_eq!(q.location("p"), Some(Location::Active));
    }

    #[test]
    fn spec_changes_requeue_unschedulable_pods_but_status_changes_do_not() {
        let mut q = SchedulingQueue::default();
        let t0 = Instant::now();
        q.add(pod("p", 0), t0);
        q.pop(t0).expect("pop");
        q.add_unschedulable("p", BTreeSet::new(), t0);
        let mut status_only = (*pod("p", 0).pod).clone();
        status_only.status = Some(Default::default());
        q.update(Arc::new(PodInfo::from_pod(status_only)), t0);
        assert_eq!(q.location("p"), Some(Location::Unschedulable));
        let mut relabelled = (*pod("p", 0).pod).clone();
        relabelled.metadata.labels = Some([("a".to_string(), "b".to_string())].into());
        q.update(
            Arc::new(PodInfo::from_pod(relabelled)),
            t0 + Duration::from_secs(2),
        );
        assert_eq!(q.location("p"), Some(Location::Active));
    }
}
