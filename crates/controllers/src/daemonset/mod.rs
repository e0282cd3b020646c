//! The DaemonSet controller (upstream `pkg/controller/daemon`): one pod per eligible
//! node.
//!
//! A node is eligible when the pod template's `nodeName`, `nodeSelector` and required
//! node affinity accept it and it has no NoSchedule/NoExecute taint the pod does not
//! tolerate; every daemon pod also tolerates the node-problem taints (not-ready,
//! unreachable, pressure, unschedulable — see [`util::add_daemon_tolerations`]). A node
//! that only gained an untolerated NoSchedule taint keeps its running pod.
//!
//! The controller never binds pods itself: each new pod carries required node affinity
//! `metadata.name In [<node>]` and the scheduler places it, as upstream does.
//!
//! One sync: claim the pods, find or make the ControllerRevision of the current
//! template ([`update`]), then (unless expectations say the cache has not caught up
//! with earlier creates/deletes) create pods on nodes that lack one, delete pods on
//! nodes that should not have one, replace failed pods (with a per-node backoff), and —
//! with nothing pending — take one RollingUpdate step. Status is written last.

mod update;
pub mod util;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apis::selectors::LabelSelector;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_ref_manager::{claim, recheck_deletion_timestamp, ClaimError};
use crate::controller_utils::{
    controller_ref, is_namespace_terminating, is_not_found, is_pod_available, is_pod_ready,
    meta_key, pod_from_template, slow_start_batch, ErrorBackoff, EventRecorder, BURST_REPLICAS,
    SLOW_START_INITIAL_BATCH_SIZE,
};
use crate::expectations::ControllerExpectations;
use crate::informer::{controller_of, Cache, Change, InformerFactory};
use crate::queue::{self, Queue};
use crate::replicaset::group_of;

const CONTROLLER_NAME: &str = "daemonset-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// Creating or deleting pods failed (already recorded as events).
    #[error("{0}")]
    Pods(String),
    /// The DaemonSet's collision count changed under this sync.
    #[error("{0}")]
    StaleCollisionCount(String),
}

struct Ctx {
    client: Client,
    sets: Cache<DaemonSet>,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    revisions: Cache<ControllerRevision>,
    expectations: Arc<ControllerExpectations>,
    recorder: EventRecorder,
    backoff: ErrorBackoff,
    failed_pods: util::FailedPodsBackoff,
}

/// The DaemonSet controller, wired to shared informers.
pub struct DaemonSetController {
    ctx: Arc<Ctx>,
    rx: futures::channel::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<DaemonSet>>,
}

fn is_ds_ref(r: &OwnerReference) -> bool {
    r.kind == "DaemonSet" && group_of(&r.api_version) == "apps"
}

/// Resolves a controller reference to a cached DaemonSet with the same uid.
fn resolve(
    sets: &Cache<DaemonSet>,
    ns: &str,
    r: Option<&OwnerReference>,
) -> Option<Arc<DaemonSet>> {
    let r = r.filter(|r| is_ds_ref(r))?;
    let ds = sets.get(ns, &r.name)?;
    (ds.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(ds)
}

impl DaemonSetController {
    /// Registers handlers on `informers`; run with [`Self::run`] after `informers.start`.
    pub fn new(client: Client, informers: &mut InformerFactory) -> Self {
        let (queue, rx) = Queue::<DaemonSet>::new();
        let expectations = Arc::new(ControllerExpectations::new());

        let ds_informer = informers.informer::<DaemonSet>();
        let sets = ds_informer.cache();
        {
            let (queue, expectations) = (queue.clone(), expectations.clone());
            ds_informer.add_handler(move |change| match change {
                Change::Added(d) | Change::Updated { new: d, .. } => queue.enqueue_obj(*d),
                Change::Deleted(d) => expectations.delete(&meta_key(&d.metadata)),
            });
        }

        let pod_informer = informers.informer::<Pod>();
        let pods = pod_informer.cache();
        {
            let handler = PodHandler {
                queue: queue.clone(),
                sets: sets.clone(),
                expectations: expectations.clone(),
            };
            pod_informer.add_handler(move |change| handler.handle(change));
        }

        let node_informer = informers.informer::<Node>();
        let nodes = node_informer.cache();
        {
            let (queue, sets) = (queue.clone(), sets.clone());
            node_informer.add_handler(move |change| {
                let all = sets.store().state();
                match change {
                    Change::Added(n) => {
                        for ds in all.iter().filter(|ds| util::should_run(n, ds).0) {
                            queue.enqueue_obj(ds);
                        }
                    }
                    Change::Updated { old, new } => {
                        // Only labels and taints decide where daemons run.
                        let taints = |n: &Node| n.spec.as_ref().and_then(|s| s.taints.clone());
                        if old.metadata.labels == new.metadata.labels && taints(old) == taints(new)
                        {
                            return;
                        }
                        for ds in all
                            .iter()
                            .filter(|ds| util::should_run(old, ds) != util::should_run(new, ds))
                        {
                            queue.enqueue_obj(ds);
                        }
                    }
                    Change::Deleted(_) => {
                        for ds in &all {
                            queue.enqueue_obj(ds);
                        }
                    }
                }
            });
        }

        let revision_informer = informers.informer::<ControllerRevision>();
        let revisions = revision_informer.cache();
        {
            let (queue, sets) = (queue, sets.clone());
            revision_informer.add_handler(move |change| {
                let (Change::Added(r) | Change::Updated { new: r, .. } | Change::Deleted(r)) =
                    change;
                let ns = r.metadata.namespace.as_deref().unwrap_or("");
                if let Some(ds) = resolve(&sets, ns, controller_of(&r.metadata)) {
                    queue.enqueue_obj(&ds);
                }
            });
        }

        let recorder = EventRecorder::new(client.clone(), CONTROLLER_NAME);
        let ctx = Arc::new(Ctx {
            client,
            sets,
            pods,
            nodes,
            revisions,
            expectations,
            recorder,
            backoff: ErrorBackoff::default(),
            failed_pods: util::FailedPodsBackoff::default(),
        });
        DaemonSetController { ctx, rx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        let (s, p, n, r) = (
            ctx.sets.clone(),
            ctx.pods.clone(),
            ctx.nodes.clone(),
            ctx.revisions.clone(),
        );
        let ready = async move {
            s.wait_until_ready().await;
            p.wait_until_ready().await;
            n.wait_until_ready().await;
            r.wait_until_ready().await;
        };
        queue::run(
            CONTROLLER_NAME,
            ctx.sets.store(),
            ready,
            self.rx,
            |d, ctx| Box::pin(reconcile(d, ctx)),
            error_policy,
            ctx.clone(),
            cancel,
        )
        .await;
    }
}

/// Pod events → DaemonSets to sync, lowering expectations (upstream `addPod`/`updatePod`/`deletePod`).
struct PodHandler {
    queue: Queue<DaemonSet>,
    sets: Cache<DaemonSet>,
    expectations: Arc<ControllerExpectations>,
}

impl PodHandler {
    fn handle(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    self.deleted(pod);
                    return;
                }
                if let Some(ds) = self.owner(pod) {
                    self.expectations.creation_observed(&meta_key(&ds.metadata));
                    self.queue.enqueue_obj(&ds);
                } else if controller_of(&pod.metadata).is_none() {
                    self.enqueue_matching(pod);
                }
            }
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                if new.metadata.deletion_timestamp.is_some() {
                    if old.metadata.deletion_timestamp.is_none() {
                        self.deleted(new);
                    } else if let Some(ds) = self.owner(new) {
                        self.queue.enqueue_obj(&ds);
                    }
                    return;
                }
                let (cur_ref, old_ref) =
                    (controller_of(&new.metadata), controller_of(&old.metadata));
                if cur_ref != old_ref {
                    if let Some(ds) = self.owner(old) {
                        self.queue.enqueue_obj(&ds);
                    }
                }
                if let Some(ds) = self.owner(new) {
                    self.queue.enqueue_obj(&ds);
                } else if cur_ref.is_none()
                    && (old.metadata.labels != new.metadata.labels || cur_ref != old_ref)
                {
                    self.enqueue_matching(new);
                }
            }
            Change::Deleted(pod) => {
                // A pod already seen terminating was counted then.
                if pod.metadata.deletion_timestamp.is_none() {
                    self.deleted(pod);
                } else if let Some(ds) = self.owner(pod) {
                    self.queue.enqueue_obj(&ds);
                }
            }
        }
    }

    fn deleted(&self, pod: &Pod) {
        if let Some(ds) = self.owner(pod) {
            self.expectations
                .deletion_observed(&meta_key(&ds.metadata), &meta_key(&pod.metadata));
            self.queue.enqueue_obj(&ds);
        }
    }

    fn owner(&self, pod: &Pod) -> Option<Arc<DaemonSet>> {
        resolve(
            &self.sets,
            pod.metadata.namespace.as_deref().unwrap_or(""),
            controller_of(&pod.metadata),
        )
    }

    fn enqueue_matching(&self, pod: &Pod) {
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        for ds in self
            .sets
            .in_namespace(pod.metadata.namespace.as_deref().unwrap_or(""))
        {
            let Some(spec) = ds.spec.as_ref() else {
                continue;
            };
            if let Ok(sel) = LabelSelector::from_metav1(&spec.selector) {
                if !sel.is_empty() && sel.matches(&labels) {
                    self.queue.enqueue_obj(&ds);
                }
            }
        }
    }
}

fn error_policy(ds: Arc<DaemonSet>, err: &Error, ctx: Arc<Ctx>) -> Action {
    let key = meta_key(&ds.metadata);
    let delay = ctx.backoff.next_delay(&key);
    tracing::debug!(controller = CONTROLLER_NAME, object = %key, error = %err, ?delay, "sync failed");
    Action::requeue(delay)
}

async fn reconcile(ds: Arc<DaemonSet>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = meta_key(&ds.metadata);
    let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %key);
    let syncer = Syncer {
        ctx: &ctx,
        key: key.clone(),
        ds: &ds,
        requeue: Mutex::new(None),
    };
    let result = syncer.sync().instrument(span).await;
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

/// Pods of a DaemonSet grouped by the node they are for.
type NodePods = HashMap<String, Vec<Arc<Pod>>>;

/// The state of one sync.
struct Syncer<'a> {
    ctx: &'a Ctx,
    key: String,
    ds: &'a DaemonSet,
    /// The earliest time this DaemonSet needs another look (backoffs, minReadySeconds).
    requeue: Mutex<Option<Duration>>,
}

impl Syncer<'_> {
    fn name(&self) -> &str {
        self.ds.metadata.name.as_deref().unwrap_or("")
    }

    fn namespace(&self) -> &str {
        self.ds.metadata.namespace.as_deref().unwrap_or("")
    }

    fn requeue_after(&self, d: Duration) {
        let mut r = self
            .requeue
            .lock()
            .expect("invariant: requeue lock is never poisoned");
        *r = Some(r.map_or(d, |cur| cur.min(d)));
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        self.ctx
            .recorder
            .publish(&self.ds.object_ref(&()), type_, reason, "Sync", note)
            .await;
    }

    async fn sync(&self) -> Result<Action, Error> {
        let Some(spec) = self.ds.spec.as_ref() else {
            return Ok(Action::await_change());
        };
        let selector = match LabelSelector::from_metav1(&spec.selector) {
            Ok(s) if s.is_empty() => {
                let note =
                    "This daemon set is selecting all pods. A non-empty selector is required.";
                self.event(EventType::Warning, "SelectingAll", note.to_string())
                    .await;
                return Ok(Action::await_change());
            }
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(object = %self.key, error = %e, "invalid selector");
                return Ok(Action::await_change());
            }
        };
        if self.ds.metadata.deletion_timestamp.is_some() {
            return Ok(Action::await_change());
        }
        let mut nodes: Vec<Arc<Node>> = self.ctx.nodes.store().state();
        nodes.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
        let node_pods = self.node_pods(&selector).await?;
        let (cur, old) = self.construct_history(&selector, &node_pods).await?;
        let hash = cur
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(util::REVISION_HASH_LABEL))
            .cloned()
            .unwrap_or_default();
        if !self.ctx.expectations.satisfied(&self.key) {
            // Only status: the cache does not show this controller's last writes yet.
            self.update_status(&nodes, &node_pods, &hash, false).await?;
            return Ok(Action::await_change());
        }
        let mut result = self.manage(&nodes, &node_pods, &hash).await;
        if result.is_ok()
            && self.ctx.expectations.satisfied(&self.key)
            && util::is_rolling_update(self.ds)
        {
            result = self.rolling_update(&nodes, &node_pods, &hash).await;
        }
        let cleanup = self.cleanup_history(old, &node_pods).await;
        let status = self.update_status(&nodes, &node_pods, &hash, true).await;
        result?;
        cleanup?;
        status?;
        let requeue = *self
            .requeue
            .lock()
            .expect("invariant: requeue lock is never poisoned");
        Ok(requeue.map_or_else(Action::await_change, Action::requeue))
    }

    /// Claims the DaemonSet's pods and groups them by target node (upstream
    /// `getNodesToDaemonPods`); finished pods already being deleted are left out.
    async fn node_pods(&self, selector: &LabelSelector) -> Result<NodePods, Error> {
        let uid = self.ds.metadata.uid.clone().unwrap_or_default();
        let mut candidates = self.ctx.pods.controlled_by(&uid);
        candidates.extend(self.ctx.pods.orphans_in(self.namespace()));
        let owner_ref = controller_ref(&self.ds.metadata, "apps/v1", "DaemonSet");
        let (client, cached) = (self.ctx.client.clone(), self.ds.metadata.clone());
        let fresh = || async move {
            let api: Api<DaemonSet> =
                Api::namespaced(client, cached.namespace.as_deref().unwrap_or(""));
            let fresh = api
                .get(cached.name.as_deref().unwrap_or(""))
                .await
                .map_err(ClaimError::Api)?;
            recheck_deletion_timestamp(&cached, &fresh.metadata, "DaemonSet")
        };
        let claimed = claim(
            &self.ctx.client,
            &self.ds.metadata,
            &owner_ref,
            selector,
            candidates,
            fresh,
        )
        .await?;
        let mut out: NodePods = HashMap::new();
        for pod in claimed {
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("");
            let terminal = phase == "Succeeded" || phase == "Failed";
            if terminal && pod.metadata.deletion_timestamp.is_some() {
                continue;
            }
            match util::target_node(&pod) {
                Some(node) => out.entry(node).or_default().push(pod),
                None => tracing::debug!(pod = %pod.name_any(), "daemon pod has no target node"),
            }
        }
        Ok(out)
    }

    /// Upstream `manage` and `podsShouldBeOnNode`.
    async fn manage(
        &self,
        nodes: &[Arc<Node>],
        node_pods: &NodePods,
        hash: &str,
    ) -> Result<(), Error> {
        let mut needing = Vec::new();
        let mut to_delete: Vec<Arc<Pod>> = Vec::new();
        let surge = util::allows_surge(self.ds);
        let uid = self.ds.metadata.uid.clone().unwrap_or_default();
        for node in nodes {
            let node_name = node.metadata.name.clone().unwrap_or_default();
            let (should_run, should_continue) = util::should_run(node, self.ds);
            let pods = node_pods.get(&node_name);
            match pods {
                None if should_run => needing.push(node_name.clone()),
                Some(pods) if should_continue => {
                    let mut running = Vec::new();
                    for pod in pods
                        .iter()
                        .filter(|p| p.metadata.deletion_timestamp.is_none())
                    {
                        let phase = pod
                            .status
                            .as_ref()
                            .and_then(|s| s.phase.as_deref())
                            .unwrap_or("");
                        match phase {
                            "Failed" => {
                                let backoff_key = format!("{uid}/{node_name}");
                                let now = Instant::now();
                                if let Some(wait) =
                                    self.ctx.failed_pods.in_backoff(&backoff_key, now)
                                {
                                    self.requeue_after(wait);
                                    continue;
                                }
                                self.ctx.failed_pods.next(&backoff_key, now);
                                let note = format!(
                                    "Found failed daemon pod {}/{} on node {node_name}, will try to kill it",
                                    self.namespace(),
                                    pod.name_any()
                                );
                                self.event(EventType::Warning, "FailedDaemonPod", note)
                                    .await;
                                to_delete.push(pod.clone());
                            }
                            "Succeeded" => {
                                let note = format!(
                                    "Found succeeded daemon pod {}/{} on node {node_name}, will try to delete it",
                                    self.namespace(),
                                    pod.name_any()
                                );
                                self.event(EventType::Normal, "SucceededDaemonPod", note)
                                    .await;
                                to_delete.push(pod.clone());
                            }
                            _ => running.push(pod.clone()),
                        }
                    }
                    util::sort_oldest_first(&mut running);
                    if !surge {
                        // One pod per node: keep the oldest.
                        to_delete.extend(running.iter().skip(1).cloned());
                        continue;
                    }
                    if running.is_empty() {
                        if should_run {
                            needing.push(node_name.clone());
                        }
                        continue;
                    }
                    if running.len() == 1 {
                        continue;
                    }
                    to_delete.extend(self.surge_excess(&running, hash));
                }
                Some(pods) if !should_continue => {
                    to_delete.extend(
                        pods.iter()
                            .filter(|p| p.metadata.deletion_timestamp.is_none())
                            .cloned(),
                    );
                }
                _ => {}
            }
        }
        // Unscheduled pods for nodes that no longer exist.
        for (node, pods) in node_pods {
            if nodes
                .iter()
                .any(|n| n.metadata.name.as_deref() == Some(node.as_str()))
            {
                continue;
            }
            to_delete.extend(
                pods.iter()
                    .filter(|p| {
                        p.spec
                            .as_ref()
                            .and_then(|s| s.node_name.as_deref())
                            .is_none_or(str::is_empty)
                    })
                    .cloned(),
            );
        }
        self.sync_nodes(&to_delete, &needing, hash).await
    }

    /// With surge, a node keeps the oldest new pod and the oldest old pod only while the
    /// new one is not yet available and the old one is still ready.
    fn surge_excess(&self, running: &[Arc<Pod>], hash: &str) -> Vec<Arc<Pod>> {
        let generation = util::template_generation(self.ds);
        let mut excess = Vec::new();
        let (mut oldest_new, mut oldest_old): (Option<&Arc<Pod>>, Option<&Arc<Pod>>) = (None, None);
        for pod in running {
            let slot = if util::is_pod_updated(pod, hash, generation) {
                &mut oldest_new
            } else {
                &mut oldest_old
            };
            if slot.is_none() {
                *slot = Some(pod);
            } else {
                excess.push(pod.clone());
            }
        }
        if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
            let min_ready = self.min_ready_seconds();
            if !is_pod_ready(old) || is_pod_available(new, min_ready, Timestamp::now()) {
                excess.push(old.clone());
            }
        }
        excess
    }

    fn min_ready_seconds(&self) -> i32 {
        self.ds
            .spec
            .as_ref()
            .and_then(|s| s.min_ready_seconds)
            .unwrap_or(0)
    }

    /// Upstream `syncNodes`: create pods for `needing` nodes (slow start) and delete
    /// `to_delete`, at most [`BURST_REPLICAS`] of each, with expectations set first.
    async fn sync_nodes(
        &self,
        to_delete: &[Arc<Pod>],
        needing: &[String],
        hash: &str,
    ) -> Result<(), Error> {
        let create_diff = needing.len().min(BURST_REPLICAS);
        let to_delete = &to_delete[..to_delete.len().min(BURST_REPLICAS)];
        if create_diff == 0 && to_delete.is_empty() {
            return Ok(());
        }
        self.ctx
            .expectations
            .expect_creations(&self.key, create_diff);
        self.ctx.expectations.raise(
            &self.key,
            0,
            to_delete.iter().map(|p| meta_key(&p.metadata)),
        );
        tracing::debug!(object = %self.key, create = create_diff, delete = to_delete.len(), "syncing nodes");
        let api: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        let template = util::pod_template(self.ds, hash);
        let owner_ref = controller_ref(&self.ds.metadata, "apps/v1", "DaemonSet");
        let prefix = format!("{}-", self.name());
        let mut errors = Vec::new();
        let (created, err) = slow_start_batch(create_diff, SLOW_START_INITIAL_BATCH_SIZE, |i| {
            let mut t = template.clone();
            if let Some(spec) = t.spec.as_mut() {
                spec.affinity = Some(util::pin_to_node(spec.affinity.take(), &needing[i]));
            }
            let pod = pod_from_template(&t, self.namespace(), &prefix, owner_ref.clone());
            let api = &api;
            async move {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        let note = format!("Created pod: {}", p.name_any());
                        self.event(EventType::Normal, "SuccessfulCreate", note)
                            .await;
                        Ok(())
                    }
                    // The namespace is going away: nothing to create, nothing to retry.
                    Err(e) if is_namespace_terminating(&e) => Ok(()),
                    Err(e) => {
                        self.event(
                            EventType::Warning,
                            "FailedCreate",
                            format!("Error creating: {e}"),
                        )
                        .await;
                        Err(e)
                    }
                }
            }
        })
        .await;
        // Creations that failed or never started will not show up in the cache.
        for _ in created..create_diff {
            self.ctx.expectations.creation_observed(&self.key);
        }
        if let Some(e) = err {
            errors.push(e.to_string());
        }
        let results = join_all(to_delete.iter().map(|p| {
            let api = &api;
            async move {
                let name = p.name_any();
                match api.delete(&name, &Default::default()).await {
                    Ok(_) => {
                        self.event(
                            EventType::Normal,
                            "SuccessfulDelete",
                            format!("Deleted pod: {name}"),
                        )
                        .await;
                        Ok(())
                    }
                    Err(e) => {
                        self.ctx
                            .expectations
                            .deletion_observed(&self.key, &meta_key(&p.metadata));
                        if is_not_found(&e) {
                            return Ok(());
                        }
                        self.event(
                            EventType::Warning,
                            "FailedDelete",
                            format!("Error deleting: {e}"),
                        )
                        .await;
                        Err(e)
                    }
                }
            }
        }))
        .await;
        errors.extend(
            results
                .into_iter()
                .filter_map(Result::err)
                .map(|e| e.to_string()),
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Error::Pods(errors.join("; ")))
        }
    }

    /// Upstream `updateDaemonSetStatus`: counts per eligible node, from its oldest pod.
    async fn update_status(
        &self,
        nodes: &[Arc<Node>],
        node_pods: &NodePods,
        hash: &str,
        observe_generation: bool,
    ) -> Result<(), Error> {
        let (mut desired, mut current, mut misscheduled, mut ready, mut updated, mut available) =
            (0, 0, 0, 0, 0, 0);
        let now = Timestamp::now();
        let generation = util::template_generation(self.ds);
        let min_ready = self.min_ready_seconds();
        for node in nodes {
            let (should_run, _) = util::should_run(node, self.ds);
            let mut pods = node_pods
                .get(node.metadata.name.as_deref().unwrap_or(""))
                .cloned()
                .unwrap_or_default();
            if !should_run {
                if !pods.is_empty() {
                    misscheduled += 1;
                }
                continue;
            }
            desired += 1;
            if pods.is_empty() {
                continue;
            }
            current += 1;
            util::sort_oldest_first(&mut pods);
            let pod = &pods[0];
            if is_pod_ready(pod) {
                ready += 1;
                if is_pod_available(pod, min_ready, now) {
                    available += 1;
                }
            }
            if util::is_pod_updated(pod, hash, generation) {
                updated += 1;
            }
        }
        if min_ready > 0 && ready != available {
            self.requeue_after(Duration::from_secs(u64::try_from(min_ready).unwrap_or(0)));
        }
        let old = self.ds.status.clone().unwrap_or_default();
        let nz = |n: i32| (n != 0).then_some(n);
        let status = DaemonSetStatus {
            desired_number_scheduled: desired,
            current_number_scheduled: current,
            number_misscheduled: misscheduled,
            number_ready: ready,
            updated_number_scheduled: nz(updated),
            number_available: nz(available),
            number_unavailable: nz(desired - available),
            observed_generation: if observe_generation {
                self.ds.metadata.generation
            } else {
                old.observed_generation
            },
            collision_count: old.collision_count,
            conditions: old.conditions.clone(),
        };
        if status == old {
            return Ok(());
        }
        let api: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        let mut target = DaemonSet {
            status: Some(status.clone()),
            ..self.ds.clone()
        };
        for attempt in 0..2 {
            match api
                .replace_status(self.name(), &PostParams::default(), &target)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) if attempt == 0 => {
                    tracing::debug!(object = %self.key, error = %e, "status update failed; retrying on a fresh read");
                    let fresh = api.get(self.name()).await?;
                    let collision_count = fresh.status.as_ref().and_then(|s| s.collision_count);
                    target = DaemonSet {
                        status: Some(DaemonSetStatus {
                            collision_count,
                            ..status.clone()
                        }),
                        ..fresh
                    };
                }
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
