//! The running scheduler: watches in, decisions out, all through the Kubernetes API.
//!
//! Five watches (kube-runtime watchers, relisting on 410 Gone) feed one channel:
//! Nodes; pods with `spec.nodeName=` for this scheduler (the pending pods, via field
//! selector); pods with `spec.nodeName!=` (the bound pods the cache accounts for);
//! PriorityClasses; Namespaces (labels, for namespace selectors in affinity terms).
//! Terminated pods are excluded (`status.phase!=Succeeded,status.phase!=Failed`).
//!
//! A dedicated thread owns the queue, the cache and the algorithm. It applies every
//! pending event, then runs one cycle, and so on — cycles never race with the cache
//! and need no locks or snapshot copies. Everything that talks to the API server runs
//! on the Tokio runtime: bindings (at most `bind_concurrency` in flight, the pipeline
//! that sets throughput), status patches for unschedulable pods, evictions for
//! preemption, and Events (`Scheduled`, `FailedScheduling`, `Preempted`) as the
//! `default-scheduler` component. Binding results come back on the same channel.

use std::collections::{HashMap, HashSet};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, ObjectReference, Pod, PodCondition};
use k8s_openapi::api::scheduling::v1::PriorityClass;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Client;
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::cache::{Cache, NodeChange};
use crate::framework::{Framework, Nominator, PodInfo};
use crate::plugins::{inter_pod_affinity, pod_topology_spread};
use crate::queue::{
    QueuedPodInfo, SchedulingQueue, DEFAULT_POD_INITIAL_BACKOFF, DEFAULT_POD_MAX_BACKOFF,
};
use crate::schedule_one::{Algorithm, CycleOutcome, Nomination};

/// The scheduler name pods get by default.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// How often unschedulable pods are checked for the 5-minute retry.
const FLUSH_INTERVAL: Duration = Duration::from_secs(30);
/// Longest the loop sleeps without looking at the queue.
const MAX_IDLE_WAIT: Duration = Duration::from_secs(1);

#[derive(Clone, Debug)]
pub struct SchedulerConfig {
    /// Pods with this `spec.schedulerName` are ours.
    pub scheduler_name: String,
    /// Share of nodes to find feasible before scoring; 0 = upstream's adaptive default.
    pub percentage_of_nodes_to_score: u32,
    /// Threads for filtering large clusters (capped by the CPUs available).
    pub parallelism: usize,
    /// Bindings in flight at once.
    pub bind_concurrency: usize,
    /// Events being written at once.
    pub event_concurrency: usize,
    pub pod_initial_backoff: Duration,
    pub pod_max_backoff: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: DEFAULT_SCHEDULER_NAME.to_string(),
            percentage_of_nodes_to_score: 0,
            parallelism: 16,
            bind_concurrency: 64,
            event_concurrency: 16,
            pod_initial_backoff: DEFAULT_POD_INITIAL_BACKOFF,
            pod_max_backoff: DEFAULT_POD_MAX_BACKOFF,
        }
    }
}

/// Why a binding did not happen.
#[derive(Clone, Debug, thiserror::Error)]
pub enum BindError {
    /// The pod is gone or already bound elsewhere: nothing to retry.
    #[error("{0}")]
    Obsolete(String),
    #[error("{0}")]
    Failed(String),
}

/// What the loop thread is told.
enum Msg {
    Node(Event<Node>),
    PendingPod(Event<Pod>),
    AssignedPod(Event<Pod>),
    PriorityClass(Event<PriorityClass>),
    Namespace(Event<Namespace>),
    /// Something a plugin watches itself changed.
    PluginEvent(&'static str),
    Bound {
        uid: String,
        result: Result<(), BindError>,
    },
    Shutdown,
}

pub struct Scheduler {
    client: Client,
    config: SchedulerConfig,
    framework: Arc<Framework>,
}

impl Scheduler {
    /// A scheduler with the default plugins.
    pub fn new(client: Client, config: SchedulerConfig) -> Scheduler {
        Scheduler::with_framework(client, config, crate::plugins::default_framework())
    }

    /// A scheduler with a custom plugin set.
    pub fn with_framework(
        client: Client,
        config: SchedulerConfig,
        framework: Framework,
    ) -> Scheduler {
        Scheduler {
            client,
            config,
            framework: Arc::new(framework),
        }
    }

    /// Schedules pods until `cancel` fires, then waits for its API calls to finish.
    pub async fn run(self, cancel: CancellationToken) {
        let (tx, rx) = mpsc::channel::<Msg>();
        let name = self.config.scheduler_name.clone();
        let pending_fields = format!(
            "spec.nodeName=,spec.schedulerName={name},status.phase!=Succeeded,status.phase!=Failed"
        );
        let assigned_fields = "spec.nodeName!=,status.phase!=Succeeded,status.phase!=Failed";
        let c = &self.client;
        let watchers = vec![
            tokio::spawn(watch(
                Api::<Node>::all(c.clone()),
                watcher::Config::default(),
                tx.clone(),
                Msg::Node,
                cancel.clone(),
            )),
            tokio::spawn(watch(
                Api::<Pod>::all(c.clone()),
                watcher::Config::default().fields(&pending_fields),
                tx.clone(),
                Msg::PendingPod,
                cancel.clone(),
            )),
            tokio::spawn(watch(
                Api::<Pod>::all(c.clone()),
                watcher::Config::default().fields(assigned_fields),
                tx.clone(),
                Msg::AssignedPod,
                cancel.clone(),
            )),
            tokio::spawn(watch(
                Api::<PriorityClass>::all(c.clone()),
                watcher::Config::default(),
                tx.clone(),
                Msg::PriorityClass,
                cancel.clone(),
            )),
            tokio::spawn(watch(
                Api::<Namespace>::all(c.clone()),
                watcher::Config::default(),
                tx.clone(),
                Msg::Namespace,
                cancel.clone(),
            )),
        ];

        let mut watchers = watchers;
        for plugin in self.framework.informed_plugins() {
            let tx = tx.clone();
            let plugin_name = plugin.name();
            let changed: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
                let _ = tx.send(Msg::PluginEvent(plugin_name));
            });
            watchers.extend(plugin.start(c.clone(), cancel.clone(), changed));
        }

        let mut reporter = Reporter::from(name.as_str());
        reporter.instance = reporter.instance.map(|host| format!("{name}-{host}"));
        let tracker = TaskTracker::new();
        let writer = ApiWriter {
            handle: tokio::runtime::Handle::current(),
            client: self.client.clone(),
            framework: self.framework.clone(),
            reporter,
            failure_recorders: HashMap::new(),
            bind_slots: Arc::new(Semaphore::new(self.config.bind_concurrency.max(1))),
            event_slots: Arc::new(Semaphore::new(self.config.event_concurrency.max(1))),
            tracker: tracker.clone(),
            cancel: cancel.clone(),
            results: tx.clone(),
            scheduler_name: name.clone(),
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut lp = Loop {
            framework: self.framework.clone(),
            cache: Cache::new(),
            queue: SchedulingQueue::new(
                self.config.pod_initial_backoff,
                self.config.pod_max_backoff,
            ),
            nominator: Nominator::new(),
            algorithm: Algorithm::new(
                self.config.percentage_of_nodes_to_score,
                self.config.parallelism.min(cpus),
            ),
            writer,
            scheduler_name: name.clone(),
            binding: HashMap::new(),
            synced: Synced::default(),
            relists: Relists::default(),
            next_flush: Instant::now() + FLUSH_INTERVAL,
        };
        let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
        let spawned = std::thread::Builder::new()
            .name("scheduler".into())
            .spawn(move || {
                lp.run(rx);
                let _ = done_tx.send(());
            });
        let thread = match spawned {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!(error = %e, "cannot start the scheduling thread");
                None
            }
        };
        tracing::info!(scheduler = %name, "scheduler started");
        tokio::select! {
            _ = cancel.cancelled() => {}
            _ = done_rx => {
                if !cancel.is_cancelled() {
                    tracing::error!("scheduling loop stopped unexpectedly");
                }
            }
        }
        let _ = tx.send(Msg::Shutdown);
        drop(tx);
        if let Some(t) = thread {
            let _ = tokio::task::spawn_blocking(move || t.join()).await;
        }
        for w in watchers {
            w.abort();
            let _ = w.await;
        }
        tracker.close();
        tracker.wait().await;
        tracing::info!(scheduler = %name, "scheduler stopped");
    }
}

/// Forwards one watcher's events to the loop until cancelled.
async fn watch<K>(
    api: Api<K>,
    config: watcher::Config,
    tx: Sender<Msg>,
    wrap: fn(Event<K>) -> Msg,
    cancel: CancellationToken,
) where
    K: kube::Resource
        + Clone
        + k8s_openapi::serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            ev = stream.next() => match ev {
                Some(Ok(e)) => {
                    if tx.send(wrap(e)).is_err() {
                        return;
                    }
                }
                Some(Err(e)) => tracing::debug!(error = %e, "scheduler watch error; retrying"),
                None => return,
            },
        }
    }
}

#[derive(Debug, Default)]
struct Synced {
    nodes: bool,
    assigned: bool,
    classes: bool,
    namespaces: bool,
}

/// Keys seen during an in-progress relist, per watch.
#[derive(Debug, Default)]
struct Relists {
    nodes: Option<HashSet<String>>,
    pending: Option<HashSet<String>>,
    assigned: Option<HashSet<String>>,
    classes: Option<HashSet<String>>,
}

struct Loop {
    framework: Arc<Framework>,
    cache: Cache,
    queue: SchedulingQueue,
    nominator: Nominator,
    algorithm: Algorithm,
    writer: ApiWriter,
    scheduler_name: String,
    /// Pods whose binding is in flight, with their queue history for a retry.
    binding: HashMap<String, QueuedPodInfo>,
    synced: Synced,
    relists: Relists,
    next_flush: Instant,
}

fn uid_of<K: kube::Resource>(o: &K) -> String {
    o.meta().uid.clone().unwrap_or_default()
}

fn name_of<K: kube::Resource>(o: &K) -> String {
    o.meta().name.clone().unwrap_or_default()
}

impl Loop {
    fn ready(&self) -> bool {
        self.synced.nodes && self.synced.assigned && self.synced.classes && self.synced.namespaces
    }

    fn run(&mut self, rx: Receiver<Msg>) {
        loop {
            loop {
                match rx.try_recv() {
                    Ok(m) => {
                        if !self.handle(m) {
                            return;
                        }
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => return,
                }
            }
            let now = Instant::now();
            if self.ready() {
                if now >= self.next_flush {
                    self.queue.flush_unschedulable_left_over(now);
                    self.next_flush = now + FLUSH_INTERVAL;
                }
                if let Some(pod) = self.queue.pop(now) {
                    self.schedule_one(pod);
                    continue;
                }
            }
            let wake = self
                .queue
                .next_backoff_expiry()
                .map_or(MAX_IDLE_WAIT, |t| t.saturating_duration_since(now));
            match rx.recv_timeout(wake.min(MAX_IDLE_WAIT)) {
                Ok(m) => {
                    if !self.handle(m) {
                        return;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Applies one message; false to stop.
    fn handle(&mut self, msg: Msg) -> bool {
        let now = Instant::now();
        match msg {
            Msg::Shutdown => return false,
            Msg::Node(ev) => self.on_node(ev, now),
            Msg::PendingPod(ev) => self.on_pending_pod(ev, now),
            Msg::AssignedPod(ev) => self.on_assigned_pod(ev, now),
            Msg::PriorityClass(ev) => self.on_priority_class(ev),
            Msg::Namespace(ev) => match ev {
                Event::Apply(ns) | Event::InitApply(ns) => {
                    self.cache.set_namespace_labels(
                        &name_of(&ns),
                        ns.metadata.labels.clone().unwrap_or_default(),
                    );
                }
                Event::Delete(ns) => self.cache.remove_namespace(&name_of(&ns)),
                Event::Init => {}
                Event::InitDone => self.synced.namespaces = true,
            },
            Msg::PluginEvent(plugin) => self
                .queue
                .move_all_to_active_or_backoff(now, |q| q.unschedulable_plugins.contains(plugin)),
            Msg::Bound { uid, result } => self.on_bound(uid, result, now),
        }
        true
    }

    fn on_node(&mut self, ev: Event<Node>, now: Instant) {
        match ev {
            Event::Init => self.relists.nodes = Some(HashSet::new()),
            Event::InitApply(n) | Event::Apply(n) => {
                if let Some(seen) = self.relists.nodes.as_mut() {
                    seen.insert(name_of(&n));
                }
                match self.cache.upsert_node(Arc::new(n)) {
                    NodeChange::Added | NodeChange::Updated { relevant: true } => {
                        self.queue.move_all_to_active_or_backoff(now, |_| true)
                    }
                    NodeChange::Updated { relevant: false } => {}
                }
            }
            Event::Delete(n) => self.cache.remove_node(&name_of(&n)),
            Event::InitDone => {
                if let Some(seen) = self.relists.nodes.take() {
                    for name in self.cache.node_names() {
                        if !seen.contains(&name) {
                            self.cache.remove_node(&name);
                        }
                    }
                }
                self.synced.nodes = true;
            }
        }
    }

    fn on_pending_pod(&mut self, ev: Event<Pod>, now: Instant) {
        match ev {
            Event::Init => self.relists.pending = Some(HashSet::new()),
            Event::InitApply(p) | Event::Apply(p) => {
                let uid = uid_of(&p);
                if let Some(seen) = self.relists.pending.as_mut() {
                    seen.insert(uid.clone());
                }
                let ours = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.scheduler_name.as_deref())
                    .unwrap_or(crate::DEFAULT_SCHEDULER_NAME)
                    == self.scheduler_name;
                let bound = p
                    .spec
                    .as_ref()
                    .and_then(|s| s.node_name.as_deref())
                    .is_some_and(|n| !n.is_empty());
                if !ours || bound || self.cache.contains_pod(&uid) {
                    return;
                }
                if p.metadata.deletion_timestamp.is_some() {
                    self.queue.delete(&uid);
                    self.nominator.remove(&uid);
                    return;
                }
                let info = self.cache.pod_info(Arc::new(p));
                match info
                    .pod
                    .status
                    .as_ref()
                    .and_then(|s| s.nominated_node_name.as_deref())
                    .filter(|n| !n.is_empty())
                {
                    Some(node) => self.nominator.add(info.clone(), node),
                    None => self.nominator.remove(&uid),
                }
                self.queue.add(info, now);
            }
            Event::Delete(p) => {
                let uid = uid_of(&p);
                self.writer.forget(&uid);
                self.queue.delete(&uid);
                if !self.cache.contains_pod(&uid) {
                    self.nominator.remove(&uid);
                }
            }
            Event::InitDone => {
                if let Some(seen) = self.relists.pending.take() {
                    for uid in self.queue.queued_uids() {
                        if !seen.contains(&uid) {
                            self.queue.delete(&uid);
                            self.nominator.remove(&uid);
                        }
                    }
                }
            }
        }
    }

    fn on_assigned_pod(&mut self, ev: Event<Pod>, now: Instant) {
        match ev {
            Event::Init => self.relists.assigned = Some(HashSet::new()),
            Event::InitApply(p) | Event::Apply(p) => {
                let uid = uid_of(&p);
                if let Some(seen) = self.relists.assigned.as_mut() {
                    seen.insert(uid.clone());
                }
                // Pods this scheduler assumed are already accounted for.
                let known = self.cache.contains_pod(&uid);
                let info = self.cache.pod_info(Arc::new(p));
                self.cache.add_or_update_pod(info);
                self.queue.delete(&uid);
                self.nominator.remove(&uid);
                if !known && self.synced.assigned && self.queue.num_unschedulable() > 0 {
                    // A new pod may satisfy affinity or spreading that blocked others.
                    self.queue.move_all_to_active_or_backoff(now, |q| {
                        q.unschedulable_plugins.contains(inter_pod_affinity::NAME)
                            || q.unschedulable_plugins.contains(pod_topology_spread::NAME)
                    });
                }
            }
            Event::Delete(p) => {
                if self.cache.remove_pod(&uid_of(&p)) {
                    self.queue.move_all_to_active_or_backoff(now, |_| true);
                }
            }
            Event::InitDone => {
                if let Some(seen) = self.relists.assigned.take() {
                    self.cache.retain_listed_pods(&seen);
                }
                self.synced.assigned = true;
            }
        }
    }

    fn on_priority_class(&mut self, ev: Event<PriorityClass>) {
        match ev {
            Event::Init => self.relists.classes = Some(HashSet::new()),
            Event::InitApply(pc) | Event::Apply(pc) => {
                if let Some(seen) = self.relists.classes.as_mut() {
                    seen.insert(name_of(&pc));
                }
                self.cache.upsert_priority_class(&pc);
            }
            Event::Delete(pc) => self.cache.remove_priority_class(&name_of(&pc)),
            Event::InitDone => {
                if let Some(seen) = self.relists.classes.take() {
                    for name in self.cache.priority_class_names() {
                        if !seen.contains(&name) {
                            self.cache.remove_priority_class(&name);
                        }
                    }
                }
                self.synced.classes = true;
            }
        }
    }

    fn on_bound(&mut self, uid: String, result: Result<(), BindError>, now: Instant) {
        let queued = self.binding.remove(&uid);
        let err = match result {
            Ok(()) => return,
            Err(e) => e,
        };
        let forgotten = self.cache.forget_pod(&uid);
        if forgotten {
            self.queue.move_all_to_active_or_backoff(now, |_| true);
        }
        match (err, queued) {
            (BindError::Obsolete(msg), _) => tracing::debug!(uid, %msg, "binding no longer needed"),
            (BindError::Failed(msg), Some(q)) => {
                tracing::warn!(pod = %q.pod.key(), error = %msg, "binding failed; retrying after backoff");
                self.writer.record_failure(
                    q.pod.clone(),
                    "SchedulerError",
                    format!("binding rejected: {msg}"),
                    Nomination::Unchanged,
                );
                if forgotten {
                    self.queue.requeue_after_error(q, now);
                }
            }
            (BindError::Failed(msg), None) => tracing::warn!(uid, error = %msg, "binding failed"),
        }
    }

    fn schedule_one(&mut self, queued: QueuedPodInfo) {
        let pod = queued.pod.clone();
        let span = tracing::debug_span!("schedule_one", pod = %pod.key());
        let _enter = span.enter();
        let now = Instant::now();
        if pod.terminating || self.cache.contains_pod(&pod.uid) {
            self.queue.done(&pod.uid);
            return;
        }
        let outcome = self.algorithm.run_cycle(
            &self.framework,
            self.cache.snapshot(),
            &self.nominator,
            &pod,
        );
        crate::metrics::record_attempt(&outcome, now.elapsed());
        match outcome {
            CycleOutcome::Scheduled {
                node,
                evaluated_nodes,
                feasible_nodes,
            } => {
                tracing::debug!(%node, evaluated_nodes, feasible_nodes, "assumed");
                self.cache.assume_pod(pod.clone(), &node);
                self.nominator.remove(&pod.uid);
                self.queue.done(&pod.uid);
                self.binding.insert(pod.uid.clone(), queued);
                self.writer.bind(pod, node);
            }
            CycleOutcome::Unschedulable {
                error,
                nomination,
                victims,
            } => {
                let message = error.to_string();
                tracing::debug!(%message, "unschedulable");
                match &nomination {
                    Nomination::Set(node) => {
                        self.nominator.add(pod.clone(), node);
                        if !victims.is_empty() {
                            self.writer.preempt(pod.clone(), node.clone(), victims);
                        }
                    }
                    Nomination::Clear => self.nominator.remove(&pod.uid),
                    Nomination::Unchanged => {}
                }
                self.queue.add_unschedulable(
                    &pod.uid,
                    error.diagnosis.unschedulable_plugins.clone(),
                    now,
                );
                self.writer
                    .record_failure(pod, "Unschedulable", message, nomination);
            }
            CycleOutcome::Error(s) => {
                tracing::debug!(error = %s.message(), "scheduling error");
                self.queue.add_backoff(&pod.uid, now);
                self.writer.record_failure(
                    pod,
                    "SchedulerError",
                    s.message(),
                    Nomination::Unchanged,
                );
            }
        }
    }
}

/// Issues the scheduler's API writes on the Tokio runtime.
struct ApiWriter {
    handle: tokio::runtime::Handle,
    client: Client,
    framework: Arc<Framework>,
    bind_slots: Arc<Semaphore>,
    event_slots: Arc<Semaphore>,
    tracker: TaskTracker,
    cancel: CancellationToken,
    results: Sender<Msg>,
    scheduler_name: String,
    reporter: Reporter,
    /// Per pod, its latest FailedScheduling message and the recorder that folds repeats
    /// of it into one Event series (a new message is a new Event, as upstream).
    failure_recorders: HashMap<String, (String, Recorder)>,
}

/// Failure recorders kept at most (cleared wholesale beyond, repeats then start anew).
const MAX_FAILURE_RECORDERS: usize = 10_000;

fn pod_ref(pod: &PodInfo) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(pod.name.clone()),
        namespace: Some(pod.namespace.clone()),
        uid: Some(pod.uid.clone()),
        ..ObjectReference::default()
    }
}

fn classify(e: kube::Error) -> BindError {
    match &e {
        kube::Error::Api(s) if s.is_not_found() || s.is_conflict() => {
            BindError::Obsolete(s.message.clone())
        }
        _ => BindError::Failed(e.to_string()),
    }
}

/// The pod's current PodScheduled condition.
fn scheduled_condition(pod: &Pod) -> Option<&PodCondition> {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
}

impl ApiWriter {
    fn spawn<F: std::future::Future<Output = ()> + Send + 'static>(&self, f: F) {
        let cancel = self.cancel.clone();
        self.tracker.spawn_on(
            async move {
                tokio::select! {
                    _ = cancel.cancelled() => {}
                    _ = f => {}
                }
            },
            &self.handle,
        );
    }

    fn event(
        &self,
        recorder: Recorder,
        regarding: ObjectReference,
        type_: EventType,
        reason: &str,
        action: &str,
        note: String,
        related: Option<ObjectReference>,
    ) {
        let slots = self.event_slots.clone();
        let ev = KubeEvent {
            type_,
            reason: reason.into(),
            note: Some(note),
            action: action.into(),
            secondary: related,
        };
        self.spawn(async move {
            let Ok(_permit) = slots.acquire_owned().await else {
                return;
            };
            if let Err(e) = recorder.publish(&ev, &regarding).await {
                tracing::debug!(error = %e, reason = %ev.reason, "cannot record event");
            }
        });
    }

    /// The pod no longer needs its failure recorder.
    fn forget(&mut self, uid: &str) {
        self.failure_recorders.remove(uid);
    }

    /// Binds in the background; the outcome comes back as [`Msg::Bound`].
    fn bind(&mut self, pod: Arc<PodInfo>, node: String) {
        self.forget(&pod.uid);
        let client = self.client.clone();
        let fw = self.framework.clone();
        let slots = self.bind_slots.clone();
        let results = self.results.clone();
        // Each binding is a distinct event: a fresh recorder, no series bookkeeping.
        let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
        let event_slots = self.event_slots.clone();
        self.spawn(async move {
            let result = {
                let Ok(_permit) = slots.acquire_owned().await else {
                    return;
                };
                let pre = fw.run_pre_bind_plugins(&client, &pod, &node).await;
                if !pre.is_success() {
                    Err(BindError::Failed(pre.message()))
                } else {
                    match fw.run_bind_plugins(&client, &pod, &node).await {
                        Ok(s) if s.is_success() => Ok(()),
                        Ok(s) => Err(BindError::Failed(s.message())),
                        Err(e) => Err(classify(e)),
                    }
                }
            };
            let ok = result.is_ok();
            let _ = results.send(Msg::Bound {
                uid: pod.uid.clone(),
                result,
            });
            if ok {
                let note = format!(
                    "Successfully assigned {}/{} to {}",
                    pod.namespace, pod.name, node
                );
                let ev = KubeEvent {
                    type_: EventType::Normal,
                    reason: "Scheduled".into(),
                    note: Some(note),
                    action: "Binding".into(),
                    secondary: None,
                };
                let Ok(_permit) = event_slots.acquire_owned().await else {
                    return;
                };
                if let Err(e) = recorder.publish(&ev, &pod_ref(&pod)).await {
                    tracing::debug!(error = %e, "cannot record Scheduled event");
                }
            }
        });
    }

    /// Sets `PodScheduled=False` (when it changed) and records `FailedScheduling`.
    fn record_failure(
        &mut self,
        pod: Arc<PodInfo>,
        reason: &'static str,
        message: String,
        nomination: Nomination,
    ) {
        let current = scheduled_condition(&pod.pod);
        let condition_changed = current.is_none_or(|c| {
            c.status != "False"
                || c.reason.as_deref() != Some(reason)
                || c.message.as_deref() != Some(message.as_str())
        });
        let current_nominated = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        let nominated_patch = match &nomination {
            Nomination::Set(n) if current_nominated != Some(n.as_str()) => Some(json!(n)),
            Nomination::Clear if current_nominated.is_some() => Some(serde_json::Value::Null),
            _ => None,
        };
        if condition_changed || nominated_patch.is_some() {
            let since = match current {
                Some(c) if c.status == "False" => c.last_transition_time.clone(),
                _ => None,
            };
            let condition = PodCondition {
                type_: "PodScheduled".into(),
                status: "False".into(),
                reason: Some(reason.into()),
                message: Some(message.clone()),
                last_transition_time: Some(since.unwrap_or_else(|| Time(Timestamp::now()))),
                ..PodCondition::default()
            };
            let mut status = json!({"conditions": [condition]});
            status["conditions"][0]["lastProbeTime"] = serde_json::Value::Null;
            if let Some(n) = nominated_patch {
                status["nominatedNodeName"] = n;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &pod.namespace);
            let name = pod.name.clone();
            self.spawn(async move {
                let patch = Patch::Strategic(json!({ "status": status }));
                if let Err(e) = api.patch_status(&name, &PatchParams::default(), &patch).await {
                    tracing::debug!(pod = %name, error = %e, "cannot update PodScheduled condition");
                }
            });
        }
        if self.failure_recorders.len() >= MAX_FAILURE_RECORDERS {
            self.failure_recorders.clear();
        }
        let recorder = match self.failure_recorders.get(&pod.uid) {
            Some((last, r)) if *last == message => r.clone(),
            _ => {
                let r = Recorder::new(self.client.clone(), self.reporter.clone());
                self.failure_recorders
                    .insert(pod.uid.clone(), (message.clone(), r.clone()));
                r
            }
        };
        self.event(
            recorder,
            pod_ref(&pod),
            EventType::Warning,
            "FailedScheduling",
            "Scheduling",
            message,
            None,
        );
    }

    /// Evicts preemption victims: marks each `DisruptionTarget`, deletes it, and records
    /// `Preempted` on it.
    fn preempt(&self, preemptor: Arc<PodInfo>, node: String, victims: Vec<Arc<PodInfo>>) {
        for victim in victims {
            if victim.terminating {
                continue;
            }
            let api: Api<Pod> = Api::namespaced(self.client.clone(), &victim.namespace);
            let message = format!(
                "{}: preempting to accommodate a higher priority pod",
                self.scheduler_name
            );
            let v = victim.clone();
            self.spawn(async move {
                let condition = PodCondition {
                    type_: "DisruptionTarget".into(),
                    status: "True".into(),
                    reason: Some("PreemptionByScheduler".into()),
                    message: Some(message),
                    last_transition_time: Some(Time(Timestamp::now())),
                    ..PodCondition::default()
                };
                let patch = Patch::Strategic(json!({"status": {"conditions": [condition]}}));
                if let Err(e) = api.patch_status(&v.name, &PatchParams::default(), &patch).await {
                    tracing::debug!(pod = %v.key(), error = %e, "cannot mark preemption victim");
                }
                let dp = DeleteParams {
                    preconditions: Some(Preconditions { uid: Some(v.uid.clone()), resource_version: None }),
                    ..DeleteParams::default()
                };
                match api.delete(&v.name, &dp).await {
                    Ok(_) => tracing::info!(victim = %v.key(), "preempted"),
                    Err(e) => tracing::debug!(victim = %v.key(), error = %e, "cannot delete preemption victim"),
                }
            });
            let note = format!("Preempted by pod {} on node {}", preemptor.uid, node);
            let recorder = Recorder::new(self.client.clone(), self.reporter.clone());
            self.event(
                recorder,
                pod_ref(&victim),
                EventType::Normal,
                "Preempted",
                "Preempting",
                note,
                Some(pod_ref(&preemptor)),
            );
        }
    }
}
