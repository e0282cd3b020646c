//! The node lifecycle controller (upstream `pkg/controller/nodelifecycle`).
//!
//! Every `--node-monitor-period` it looks at each Node and its Lease ([`health`]): a
//! node silent for longer than the grace period gets its conditions set to `Unknown`
//! through `nodes/status`, a `NodeNotReady` event, and its pods marked not ready.
//! Nodes whose `Ready` is `False` or `Unknown` are queued, per zone and rate-limited
//! ([`zones`]), for the NoExecute taints `node.kubernetes.io/not-ready` /
//! `node.kubernetes.io/unreachable`; a ready node loses them at once. Acting on those
//! taints (deleting pods) is the taint eviction controller's job
//! ([`crate::tainteviction`]). Independently, every node change is queued for the
//! NoSchedule taints that mirror its conditions and `spec.unschedulable`
//! (TaintNodesByCondition, [`taints::no_schedule_diff`]).
//!
//! Decisions on NoExecute taints use `Ready` as it was *before* this pass's update, as
//! upstream does: a node that just went `Unknown` is tainted one period later.

pub mod health;
pub mod taints;
pub mod zones;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, NodeCondition, NodeStatus, ObjectReference, Pod, Taint};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::Client;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{is_not_found, EventRecorder};
use crate::informer::{Cache, Change, InformerFactory};
use crate::options::ControllerOptions;
use crate::workqueue::WorkQueue;
use health::NodeHealth;
use zones::{DisruptionPlan, EvictionRates, ZoneState, ZoneTainter};

const CONTROLLER_NAME: &str = "node-lifecycle-controller";
/// The event source upstream's node lifecycle controller records as.
const EVENT_COMPONENT: &str = "node-controller";
/// Where node Leases live.
pub const LEASE_NAMESPACE: &str = "kube-node-lease";
/// How often the NoExecute taint queues are drained (upstream `nodeEvictionPeriod`).
const EVICTION_PERIOD: Duration = Duration::from_millis(100);
/// Upstream `NodeHealthUpdateRetry`.
const HEALTH_UPDATE_RETRIES: usize = 5;
/// Workers applying NoSchedule taints (upstream `scheduler.UpdateWorkerSize`).
const NO_SCHEDULE_WORKERS: usize = 4;
/// Events waiting to be written; more are dropped, as upstream's broadcaster does.
const EVENT_BACKLOG: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

struct PendingEvent {
    regarding: ObjectReference,
    type_: EventType,
    reason: &'static str,
    message: String,
}

/// State of the monitor pass, owned by it.
#[derive(Default)]
struct Monitor {
    health: HashMap<String, NodeHealth>,
    known: HashSet<String>,
    zone_states: HashMap<String, ZoneState>,
    /// Nodes whose pods could not all be marked not ready.
    pods_to_retry: HashSet<String>,
}

struct Ctx {
    client: Client,
    nodes: Cache<Node>,
    leases: Cache<Lease>,
    pods: Cache<Pod>,
    grace_period: Duration,
    startup_grace_period: Duration,
    monitor_period: Duration,
    unhealthy_zone_threshold: f64,
    rates: EvictionRates,
    tainters: Mutex<HashMap<String, ZoneTainter>>,
    no_schedule: Arc<WorkQueue<String>>,
    events: mpsc::Sender<PendingEvent>,
}

pub struct NodeLifecycleController {
    ctx: Arc<Ctx>,
    events: mpsc::Receiver<PendingEvent>,
}

impl NodeLifecycleController {
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        options: &ControllerOptions,
        cancel: &CancellationToken,
    ) -> Self {
        let (events, events_rx) = mpsc::channel(EVENT_BACKLOG);
        let ctx = Arc::new(Ctx {
            client,
            nodes: informers.informer::<Node>().cache(),
            leases: informers.informer::<Lease>().cache(),
            pods: informers.informer::<Pod>().cache(),
            grace_period: options.node_monitor_grace_period,
            startup_grace_period: options.node_startup_grace_period,
            monitor_period: options.node_monitor_period,
            unhealthy_zone_threshold: options.unhealthy_zone_threshold,
            rates: EvictionRates {
                normal: options.node_eviction_rate,
                secondary: options.secondary_node_eviction_rate,
                large_cluster_size_threshold: options.large_cluster_size_threshold,
            },
            tainters: Mutex::new(HashMap::new()),
            no_schedule: WorkQueue::new(cancel.clone()),
            events,
        });
        let queue = ctx.no_schedule.clone();
        informers
            .informer::<Node>()
            .add_handler(move |change| match change {
                Change::Added(n) | Change::Updated { new: n, .. } => {
                    queue.add(n.metadata.name.clone().unwrap_or_default())
                }
                Change::Deleted(_) => {}
            });
        NodeLifecycleController {
            ctx,
            events: events_rx,
        }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async {
                ctx.nodes.wait_until_ready().await;
                ctx.leases.wait_until_ready().await;
                ctx.pods.wait_until_ready().await;
            } => {}
        }
        tracing::info!(controller = CONTROLLER_NAME, "starting");
        let mut tasks = vec![
            tokio::spawn(write_events(
                ctx.client.clone(),
                self.events,
                cancel.clone(),
            )),
            tokio::spawn(monitor_loop(ctx.clone(), cancel.clone())),
            tokio::spawn(no_execute_loop(ctx.clone(), cancel.clone())),
        ];
        for _ in 0..NO_SCHEDULE_WORKERS {
            tasks.push(tokio::spawn(no_schedule_worker(ctx.clone())));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

async fn write_events(
    client: Client,
    mut events: mpsc::Receiver<PendingEvent>,
    cancel: CancellationToken,
) {
    let recorder = EventRecorder::new(client, EVENT_COMPONENT);
    loop {
        let e = tokio::select! {
            _ = cancel.cancelled() => return,
            e = events.recv() => match e { Some(e) => e, None => return },
        };
        recorder
            .publish(&e.regarding, e.type_, e.reason, e.reason, e.message)
            .await;
    }
}

fn node_ref(node: &Node) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: node.metadata.name.clone(),
        uid: node.metadata.uid.clone(),
        ..Default::default()
    }
}

fn pod_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        ..Default::default()
    }
}

fn name_of(node: &Node) -> &str {
    node.metadata.name.as_deref().unwrap_or("")
}

impl Ctx {
    fn event(
        &self,
        regarding: ObjectReference,
        type_: EventType,
        reason: &'static str,
        message: String,
    ) {
        if self
            .events
            .try_send(PendingEvent {
                regarding,
                type_,
                reason,
                message,
            })
            .is_err()
        {
            tracing::debug!(reason, "event backlog full; dropping event");
        }
    }

    /// Upstream `RecordNodeStatusChange`.
    fn node_status_event(&self, node: &Node, status: &'static str) {
        self.event(
            node_ref(node),
            EventType::Normal,
            status,
            format!("Node {} status is now: {status}", name_of(node)),
        );
    }

    fn ensure_zone(&self, zone: &str) {
        let mut tainters = self.lock_tainters();
        if !tainters.contains_key(zone) {
            tainters.insert(
                zone.to_string(),
                ZoneTainter::new(self.rates.normal, Instant::now()),
            );
        }
    }

    fn lock_tainters(&self) -> std::sync::MutexGuard<'_, HashMap<String, ZoneTainter>> {
        self.tainters
            .lock()
            .expect("invariant: zone tainter lock is never poisoned")
    }
}

async fn monitor_loop(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let mut monitor = Monitor::default();
    let mut tick = tokio::time::interval(ctx.monitor_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let span = tracing::debug_span!("monitor_node_health", controller = CONTROLLER_NAME);
        monitor_node_health(&ctx, &mut monitor)
            .instrument(span)
            .await;
    }
}

/// One pass (upstream `monitorNodeHealth`).
async fn monitor_node_health(ctx: &Ctx, m: &mut Monitor) {
    let nodes = ctx.nodes.store().state();
    let names: HashSet<String> = nodes.iter().map(|n| name_of(n).to_string()).collect();
    for node in &nodes {
        let name = name_of(node);
        if m.known.insert(name.to_string()) {
            tracing::debug!(node = name, "controller observed a new Node");
            ctx.event(
                node_ref(node),
                EventType::Normal,
                "RegisteredNode",
                format!("Registered Node {name} in Controller"),
            );
            ctx.ensure_zone(&zones::zone_key(node));
            // NoExecute taints are re-derived from health from here on.
            if let Err(e) = mark_reachable(ctx, node).await {
                tracing::warn!(node = name, error = %e, "could not remove NoExecute taints");
            }
        }
    }
    let gone: Vec<String> = m.known.difference(&names).cloned().collect();
    for name in gone {
        tracing::debug!(node = %name, "controller observed a Node deletion");
        let regarding = ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Node".into()),
            name: Some(name.clone()),
            ..Default::default()
        };
        ctx.event(
            regarding,
            EventType::Normal,
            "RemovingNode",
            format!("Removing Node {name} from Controller"),
        );
        m.known.remove(&name);
        m.health.remove(&name);
        m.pods_to_retry.remove(&name);
        for tainter in ctx.lock_tainters().values_mut() {
            tainter.remove(&name);
        }
    }

    let mut zone_ready: HashMap<String, Vec<String>> = HashMap::new();
    let mut pods_by_node: Option<HashMap<String, Vec<Arc<Pod>>>> = None;
    for node in &nodes {
        let name = name_of(node).to_string();
        let (node, observed, current) = match update_health(ctx, m, node.as_ref().clone()).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "could not update node health; skipping it this pass");
                continue;
            }
        };
        if !zones::excluded_from_disruption_checks(&node) {
            zone_ready.entry(zones::zone_key(&node)).or_default().push(
                current
                    .as_ref()
                    .map(|c| c.status.clone())
                    .unwrap_or_default(),
            );
        }
        let Some(current) = current else {
            m.pods_to_retry.remove(&name);
            continue;
        };
        process_taint_based_eviction(ctx, &node, &observed).await;
        let became_not_ready = current.status != "True" && observed.status == "True";
        let retry = m.pods_to_retry.contains(&name) && observed.status != "True";
        if became_not_ready {
            ctx.node_status_event(&node, "NodeNotReady");
        }
        if became_not_ready || retry {
            let by_node = pods_by_node.get_or_insert_with(|| pods_by_node_name(&ctx.pods));
            let pods = by_node.get(&name).cloned().unwrap_or_default();
            if let Err(e) = mark_pods_not_ready(ctx, &pods, &name).await {
                tracing::warn!(node = %name, error = %e, "unable to mark all pods NotReady; queuing for retry");
                m.pods_to_retry.insert(name);
                continue;
            }
        }
        m.pods_to_retry.remove(&name);
    }
    handle_disruption(ctx, m, &zone_ready, &nodes).await;
}

fn pods_by_node_name(pods: &Cache<Pod>) -> HashMap<String, Vec<Arc<Pod>>> {
    let mut out: HashMap<String, Vec<Arc<Pod>>> = HashMap::new();
    for p in pods.store().state() {
        if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.clone()) {
            out.entry(n).or_default().push(p);
        }
    }
    out
}

/// Assesses one node and writes `Unknown` conditions if it went silent, retrying
/// with a fresh read on conflict. Returns the node as last read, `Ready` before this
/// pass and `Ready` after it.
async fn update_health(
    ctx: &Ctx,
    m: &mut Monitor,
    mut node: Node,
) -> Result<(Node, NodeCondition, Option<NodeCondition>), Error> {
    let name = name_of(&node).to_string();
    let api: Api<Node> = Api::all(ctx.client.clone());
    let mut attempt = 0;
    loop {
        let lease = ctx.leases.get(LEASE_NAMESPACE, &name);
        let now = Instant::now();
        let (mut health, a) = health::assess(
            m.health.get(&name),
            &node,
            lease.as_deref(),
            now,
            Timestamp::now(),
            ctx.grace_period,
            ctx.startup_grace_period,
        );
        let Some(conditions) = a.silent_conditions else {
            m.health.insert(name, health);
            let current = health::ready_condition(&node).cloned();
            return Ok((node, a.observed_ready, current));
        };
        tracing::info!(node = %name, grace_period = ?a.grace_period, "node hasn't been updated within the grace period; marking its conditions Unknown");
        let mut updated = node.clone();
        updated
            .status
            .get_or_insert_with(NodeStatus::default)
            .conditions = Some(conditions);
        match api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            Ok(written) => {
                let ready = health::ready_condition(&written).cloned();
                health.after_update(ready.clone(), now);
                m.health.insert(name, health);
                return Ok((written, a.observed_ready, ready));
            }
            Err(e) if attempt + 1 < HEALTH_UPDATE_RETRIES && !is_not_found(&e) => {
                m.health.insert(name.clone(), health);
                attempt += 1;
                tracing::debug!(node = %name, error = %e, "updating node status failed; reading it again");
                node = api.get(&name).await?;
            }
            Err(e) => {
                m.health.insert(name, health);
                return Err(e.into());
            }
        }
    }
}

/// Upstream `processTaintBaseEviction`.
async fn process_taint_based_eviction(ctx: &Ctx, node: &Node, observed: &NodeCondition) {
    let name = name_of(node);
    let result = match observed.status.as_str() {
        "False" if taints::has_taint(node, &taints::unreachable_no_execute()) => {
            swap(
                ctx,
                name,
                taints::not_ready_no_execute(),
                taints::unreachable_no_execute(),
            )
            .await
        }
        "Unknown" if taints::has_taint(node, &taints::not_ready_no_execute()) => {
            swap(
                ctx,
                name,
                taints::unreachable_no_execute(),
                taints::not_ready_no_execute(),
            )
            .await
        }
        "False" => {
            mark_for_tainting(ctx, node, &taints::not_ready_no_execute());
            Ok(())
        }
        "Unknown" => {
            mark_for_tainting(ctx, node, &taints::unreachable_no_execute());
            Ok(())
        }
        "True" => mark_reachable(ctx, node).await,
        _ => Ok(()),
    };
    if let Err(e) = result {
        tracing::warn!(node = name, error = %e, "could not update NoExecute taints; will try again next pass");
    }
}

async fn swap(ctx: &Ctx, node: &str, add: Taint, remove: Taint) -> Result<(), Error> {
    taints::swap_node_taints(&ctx.client, node, &[add], &[remove]).await?;
    Ok(())
}

/// Queues `node` for `want` unless it has it already.
fn mark_for_tainting(ctx: &Ctx, node: &Node, want: &Taint) {
    if taints::has_taint(node, want) {
        return;
    }
    let zone = zones::zone_key(node);
    let mut tainters = ctx.lock_tainters();
    let tainter = tainters
        .entry(zone)
        .or_insert_with(|| ZoneTainter::new(ctx.rates.normal, Instant::now()));
    if tainter.add(name_of(node), Instant::now()) {
        tracing::debug!(
            node = name_of(node),
            "node is not ready; adding it to the taint queue"
        );
    }
}

/// Upstream `markNodeAsReachable`: drops both NoExecute taints and any queued tainting.
async fn mark_reachable(ctx: &Ctx, node: &Node) -> Result<(), Error> {
    let name = name_of(node);
    if let Some(t) = ctx.lock_tainters().get_mut(&zones::zone_key(node)) {
        t.remove(name);
    }
    let both = [
        taints::unreachable_no_execute(),
        taints::not_ready_no_execute(),
    ];
    if both.iter().any(|t| taints::has_taint(node, t))
        && taints::swap_node_taints(&ctx.client, name, &[], &both).await?
    {
        tracing::info!(
            node = name,
            "node is healthy again, removing NoExecute taints"
        );
    }
    Ok(())
}

/// Upstream `MarkPodsNotReady`: `Ready=False` on every pod of the node, each with a
/// `NodeNotReady` event.
async fn mark_pods_not_ready(ctx: &Ctx, pods: &[Arc<Pod>], node: &str) -> Result<(), Error> {
    let mut first_error = None;
    for pod in pods {
        if pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) != Some(node) {
            continue;
        }
        let ready = pod
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
        let Some(ready) = ready else { continue };
        if ready.status == "False" {
            continue;
        }
        let api: Api<Pod> = Api::namespaced(
            ctx.client.clone(),
            pod.metadata.namespace.as_deref().unwrap_or(""),
        );
        let patch = serde_json::json!({
            "metadata": {"uid": pod.metadata.uid},
            "status": {"conditions": [{
                "type": "Ready",
                "status": "False",
                "lastTransitionTime": crate::controller_utils::now_time(),
            }]},
        });
        let name = pod.metadata.name.as_deref().unwrap_or("");
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {
                tracing::debug!(pod = name, "updating ready status of pod to false");
                ctx.event(
                    pod_ref(pod),
                    EventType::Warning,
                    "NodeNotReady",
                    "Node is not ready".into(),
                );
            }
            Err(e) if is_not_found(&e) => {}
            Err(e) => {
                tracing::info!(pod = name, error = %e, "failed to update status for pod");
                first_error.get_or_insert(e);
            }
        }
    }
    match first_error {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Upstream `handleDisruption`.
async fn handle_disruption(
    ctx: &Ctx,
    m: &mut Monitor,
    zone_ready: &HashMap<String, Vec<String>>,
    nodes: &[Arc<Node>],
) {
    let new: HashMap<String, ZoneState> = zone_ready
        .iter()
        .map(|(z, statuses)| {
            (
                z.clone(),
                zones::compute_zone_state(statuses, ctx.unhealthy_zone_threshold),
            )
        })
        .collect();
    for zone in new.keys() {
        ctx.ensure_zone(zone);
    }
    let size = |zone: &str| zone_ready.get(zone).map_or(0, Vec::len);
    match zones::plan_disruption(&mut m.zone_states, &new) {
        DisruptionPlan::Unchanged => {}
        DisruptionPlan::EnterMasterDisruption => {
            tracing::info!(
                "controller detected that all Nodes are not-Ready; entering master disruption mode"
            );
            for node in nodes {
                if let Err(e) = mark_reachable(ctx, node).await {
                    tracing::warn!(node = name_of(node), error = %e, "could not remove NoExecute taints");
                }
            }
            let now = Instant::now();
            for t in ctx.lock_tainters().values_mut() {
                t.swap_limiter(0.0, now);
            }
        }
        DisruptionPlan::ExitMasterDisruption => {
            tracing::info!(
                "controller detected that some Nodes are Ready; exiting master disruption mode"
            );
            let now = Instant::now();
            for h in m.health.values_mut() {
                h.reset_probe(now);
            }
            let mut tainters = ctx.lock_tainters();
            for (zone, state) in &m.zone_states {
                if let Some(t) = tainters.get_mut(zone) {
                    t.swap_limiter(ctx.rates.qps(*state, size(zone)), now);
                }
            }
        }
        DisruptionPlan::Changed(changed) => {
            let now = Instant::now();
            let mut tainters = ctx.lock_tainters();
            for zone in changed {
                let state = m.zone_states[&zone];
                tracing::info!(zone = %zone.replace('\0', ""), ?state, "controller detected that zone changed state");
                if let Some(t) = tainters.get_mut(&zone) {
                    t.swap_limiter(ctx.rates.qps(state, size(&zone)), now);
                }
            }
        }
    }
}

async fn no_execute_loop(ctx: Arc<Ctx>, cancel: CancellationToken) {
    let mut tick = tokio::time::interval(EVICTION_PERIOD);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        no_execute_tainting_pass(&ctx).await;
    }
}

/// Upstream `doNoExecuteTaintingPass`: taints the nodes each zone's rate lets through.
async fn no_execute_tainting_pass(ctx: &Ctx) {
    let now = Instant::now();
    let due: Vec<(String, String)> = ctx
        .lock_tainters()
        .iter_mut()
        .flat_map(|(zone, t)| t.take_due(now).into_iter().map(move |n| (zone.clone(), n)))
        .collect();
    for (zone, name) in due {
        let Some(node) = ctx.nodes.get("", &name) else {
            continue;
        };
        let (add, remove) = match health::ready_condition(&node).map(|c| c.status.as_str()) {
            Some("False") => (
                taints::not_ready_no_execute(),
                taints::unreachable_no_execute(),
            ),
            Some("Unknown") => (
                taints::unreachable_no_execute(),
                taints::not_ready_no_execute(),
            ),
            _ => continue,
        };
        match taints::swap_node_taints(&ctx.client, &name, std::slice::from_ref(&add), &[remove])
            .await
        {
            Ok(changed) => {
                if changed {
                    tracing::info!(node = %name, taint = %add.key, "tainted node NoExecute");
                }
            }
            Err(e) => {
                tracing::warn!(node = %name, error = %e, "could not taint node; retrying");
                if let Some(t) = ctx.lock_tainters().get_mut(&zone) {
                    t.retry(&name, Instant::now(), Duration::from_millis(50));
                }
            }
        }
    }
}

async fn no_schedule_worker(ctx: Arc<Ctx>) {
    while let Some(name) = ctx.no_schedule.get().await {
        let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %name);
        match no_schedule_tainting_pass(&ctx, &name)
            .instrument(span)
            .await
        {
            Ok(()) => ctx.no_schedule.forget(&name),
            Err(e) => {
                tracing::debug!(node = %name, error = %e, "failed to update NoSchedule taints; will retry");
                ctx.no_schedule.add_rate_limited(name.clone());
            }
        }
        ctx.no_schedule.done(&name);
    }
}

/// Upstream `doNoScheduleTaintingPass`.
async fn no_schedule_tainting_pass(ctx: &Ctx, name: &str) -> Result<(), Error> {
    let Some(node) = ctx.nodes.get("", name) else {
        return Ok(());
    };
    let (add, remove) = taints::no_schedule_diff(&node);
    if add.is_empty() && remove.is_empty() {
        return Ok(());
    }
    taints::swap_node_taints(&ctx.client, name, &add, &remove).await?;
    Ok(())
}
