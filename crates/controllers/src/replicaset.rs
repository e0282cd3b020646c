//! The ReplicaSet controller (upstream `pkg/controller/replicaset`), which also runs
//! ReplicationControllers: an RC is an RS with a map selector, so both go through the
//! same sync over a [`ReplicaSetLike`] view.
//!
//! One sync: claim pods (adopt matching orphans, release owned pods that stopped
//! matching, never touch another controller's pods), then — unless expectations say
//! the cache has not caught up with this controller's own creates/deletes — create
//! missing pods in slow-start batches or delete surplus ones (least useful first),
//! then write status. Events are worded as upstream (`SuccessfulCreate` "Created pod:
//! x", `SuccessfulDelete` "Deleted pod: x").

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use apis::selectors::LabelSelector;
use futures::future::join_all;
use k8s_openapi::api::apps::v1::{
    ReplicaSet, ReplicaSetCondition, ReplicaSetSpec, ReplicaSetStatus,
};
use k8s_openapi::api::core::v1::{
    Pod, ReplicationController, ReplicationControllerCondition, ReplicationControllerStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1 as metav1;
use k8s_openapi::jiff::Timestamp;
use k8s_openapi::NamespaceResourceScope;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_ref_manager::{claim, recheck_deletion_timestamp, ClaimError};
use crate::controller_utils::{
    controller_ref, is_namespace_terminating, is_not_found, is_pod_active, is_pod_available,
    is_pod_ready, meta_key, pod_from_template, pods_prefix, pods_to_delete, slow_start_batch,
    time_until_available, ErrorBackoff, EventRecorder, BURST_REPLICAS,
    SLOW_START_INITIAL_BATCH_SIZE,
};
use crate::expectations::ControllerExpectations;
use crate::informer::{controller_of, Cache, Change, InformerFactory};
use crate::queue::{self, Queue};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    /// Creating or deleting pods failed; status carries a ReplicaFailure condition.
    #[error("{0}")]
    Manage(String),
}

/// What the controller needs from a ReplicaSet or a ReplicationController.
pub trait ReplicaSetLike:
    Resource<DynamicType = (), Scope = NamespaceResourceScope>
    + Clone
    + DeserializeOwned
    + Serialize
    + Debug
    + Send
    + Sync
    + 'static
{
    /// Upstream's controller name, the events' reporting controller.
    const CONTROLLER_NAME: &'static str;

    /// The object as a ReplicaSet (same metadata; an RC's map selector becomes matchLabels).
    fn to_replica_set(&self) -> ReplicaSet;

    /// A copy of this object carrying `status`.
    fn with_status(&self, status: ReplicaSetStatus) -> Self;
}

impl ReplicaSetLike for ReplicaSet {
    const CONTROLLER_NAME: &'static str = "replicaset-controller";

    fn to_replica_set(&self) -> ReplicaSet {
        self.clone()
    }

    fn with_status(&self, status: ReplicaSetStatus) -> Self {
        ReplicaSet {
            status: Some(status),
            ..self.clone()
        }
    }
}

impl ReplicaSetLike for ReplicationController {
    const CONTROLLER_NAME: &'static str = "replication-controller";

    fn to_replica_set(&self) -> ReplicaSet {
        let spec = self.spec.clone().unwrap_or_default();
        let status = self.status.clone().map(|s| ReplicaSetStatus {
            available_replicas: s.available_replicas,
            conditions: s.conditions.map(|cs| {
                cs.into_iter()
                    .map(|c| ReplicaSetCondition {
                        last_transition_time: c.last_transition_time,
                        message: c.message,
                        reason: c.reason,
                        status: c.status,
                        type_: c.type_,
                    })
                    .collect()
            }),
            fully_labeled_replicas: s.fully_labeled_replicas,
            observed_generation: s.observed_generation,
            ready_replicas: s.ready_replicas,
            replicas: s.replicas,
            terminating_replicas: None,
        });
        ReplicaSet {
            metadata: self.metadata.clone(),
            spec: Some(ReplicaSetSpec {
                min_ready_seconds: spec.min_ready_seconds,
                replicas: spec.replicas,
                selector: metav1::LabelSelector {
                    match_labels: spec.selector,
                    match_expressions: None,
                },
                template: spec.template,
            }),
            status,
        }
    }

    fn with_status(&self, s: ReplicaSetStatus) -> Self {
        let status = ReplicationControllerStatus {
            available_replicas: s.available_replicas,
            conditions: s.conditions.map(|cs| {
                cs.into_iter()
                    .map(|c| ReplicationControllerCondition {
                        last_transition_time: c.last_transition_time,
                        message: c.message,
                        reason: c.reason,
                        status: c.status,
                        type_: c.type_,
                    })
                    .collect()
            }),
            fully_labeled_replicas: s.fully_labeled_replicas,
            observed_generation: s.observed_generation,
            ready_replicas: s.ready_replicas,
            replicas: s.replicas,
        };
        ReplicationController {
            status: Some(status),
            ..self.clone()
        }
    }
}

/// `apps` out of `apps/v1`, `""` out of `v1`.
pub(crate) fn group_of(api_version: &str) -> &str {
    api_version.rsplit_once('/').map(|(g, _)| g).unwrap_or("")
}

/// Whether an owner reference points at a `K`.
fn refers_to<K: Resource<DynamicType = ()>>(r: &metav1::OwnerReference) -> bool {
    r.kind == K::kind(&()) && group_of(&r.api_version) == K::group(&())
}

struct Ctx<K: ReplicaSetLike> {
    client: Client,
    owners: Cache<K>,
    /// ReplicaSets, to find pods of sibling ReplicaSets (same Deployment) when ranking
    /// pods for deletion.
    replica_sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    expectations: Arc<ControllerExpectations>,
    recorder: EventRecorder,
    backoff: ErrorBackoff,
}

/// A ReplicaSet (or ReplicationController) controller, wired to shared informers.
pub struct ReplicaSetController<K: ReplicaSetLike> {
    ctx: Arc<Ctx<K>>,
    rx: futures::channel::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<K>>,
}

impl<K: ReplicaSetLike> ReplicaSetController<K> {
    /// Registers the controller's handlers on `informers`; run it with [`Self::run`]
    /// after `informers.start`.
    pub fn new(client: Client, informers: &mut InformerFactory) -> Self {
        let (queue, rx) = Queue::<K>::new();
        let expectations = Arc::new(ControllerExpectations::new());
        let replica_sets = informers.informer::<ReplicaSet>().cache();

        let owners_informer = informers.informer::<K>();
        let owners = owners_informer.cache();
        {
            let queue = queue.clone();
            let expectations = expectations.clone();
            owners_informer.add_handler(move |change| match change {
                Change::Added(o) | Change::Updated { new: o, .. } => queue.enqueue_obj(*o),
                Change::Deleted(o) => expectations.delete(&meta_key(o.meta())),
            });
        }

        let pods_informer = informers.informer::<Pod>();
        let pods = pods_informer.cache();
        {
            let handler = PodHandler {
                queue,
                owners: owners.clone(),
                expectations: expectations.clone(),
            };
            pods_informer.add_handler(move |change| handler.handle(change));
        }

        let recorder = EventRecorder::new(client.clone(), K::CONTROLLER_NAME);
        let ctx = Arc::new(Ctx {
            client,
            owners,
            replica_sets,
            pods,
            expectations,
            recorder,
            backoff: ErrorBackoff::default(),
        });
        ReplicaSetController { ctx, rx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        let (pods, owners) = (ctx.pods.clone(), ctx.owners.clone());
        let ready = async move {
            pods.wait_until_ready().await;
            owners.wait_until_ready().await;
        };
        queue::run(
            K::CONTROLLER_NAME,
            ctx.owners.store(),
            ready,
            self.rx,
            |o, ctx| Box::pin(reconcile(o, ctx)),
            error_policy,
            ctx.clone(),
            cancel,
        )
        .await;
    }
}

/// Maps pod events to the controllers that care (upstream `addPod`/`updatePod`/`deletePod`).
struct PodHandler<K: ReplicaSetLike> {
    queue: Queue<K>,
    owners: Cache<K>,
    expectations: Arc<ControllerExpectations>,
}

impl<K: ReplicaSetLike> PodHandler<K> {
    fn handle(&self, change: &Change<'_, Pod>) {
        match change {
            Change::Added(pod) => {
                if pod.metadata.deletion_timestamp.is_some() {
                    // Restarted informers can see a pod already being deleted.
                    self.pod_deleted(pod);
                    return;
                }
                if let Some(r) = controller_of(&pod.metadata) {
                    if let Some(owner) = self.resolve(pod, r) {
                        self.expectations.creation_observed(&meta_key(owner.meta()));
                        self.queue.enqueue_obj(&owner);
                    }
                    return;
                }
                self.enqueue_matching(pod);
            }
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let labels_changed = old.metadata.labels != new.metadata.labels;
                if new.metadata.deletion_timestamp.is_some() {
                    // Graceful deletion started: replace the pod now, not when it is gone.
                    self.pod_deleted(new);
                    if labels_changed {
                        self.pod_deleted(old);
                    }
                    return;
                }
                let (cur_ref, old_ref) =
                    (controller_of(&new.metadata), controller_of(&old.metadata));
                if cur_ref != old_ref {
                    if let Some(owner) = old_ref.and_then(|r| self.resolve(old, r)) {
                        self.queue.enqueue_obj(&owner);
                    }
                }
                if let Some(r) = cur_ref {
                    if let Some(owner) = self.resolve(new, r) {
                        self.queue.enqueue_obj(&owner);
                    }
                    return;
                }
                if labels_changed || cur_ref != old_ref {
                    self.enqueue_matching(new);
                }
            }
            Change::Deleted(pod) => self.pod_deleted(pod),
        }
    }

    fn pod_deleted(&self, pod: &Pod) {
        let Some(r) = controller_of(&pod.metadata) else {
            return;
        };
        if let Some(owner) = self.resolve(pod, r) {
            self.expectations
                .deletion_observed(&meta_key(owner.meta()), &meta_key(&pod.metadata));
            self.queue.enqueue_obj(&owner);
        }
    }

    /// The controller `r` names, if it is a `K` in the cache with the same uid.
    fn resolve(&self, pod: &Pod, r: &metav1::OwnerReference) -> Option<Arc<K>> {
        if !refers_to::<K>(r) {
            return None;
        }
        let owner = self
            .owners
            .get(pod.metadata.namespace.as_deref().unwrap_or(""), &r.name)?;
        (owner.meta().uid.as_deref() == Some(r.uid.as_str())).then_some(owner)
    }

    /// An orphan changed: every controller whose selector matches may want it.
    fn enqueue_matching(&self, pod: &Pod) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        for owner in self.owners.in_namespace(ns) {
            let rs = owner.to_replica_set();
            let selector = rs.spec.as_ref().map(|s| &s.selector);
            if let Ok(sel) = LabelSelector::from_metav1_opt(selector) {
                if !sel.is_empty() && sel.matches(&labels) {
                    self.queue.enqueue_obj(&owner);
                }
            }
        }
    }
}

fn error_policy<K: ReplicaSetLike>(owner: Arc<K>, err: &Error, ctx: Arc<Ctx<K>>) -> Action {
    let key = meta_key(owner.meta());
    let delay = ctx.backoff.next_delay(&key);
    tracing::debug!(controller = K::CONTROLLER_NAME, object = %key, error = %err, ?delay, "sync failed");
    Action::requeue(delay)
}

async fn reconcile<K: ReplicaSetLike>(owner: Arc<K>, ctx: Arc<Ctx<K>>) -> Result<Action, Error> {
    let key = meta_key(owner.meta());
    let span = tracing::debug_span!("reconcile", controller = K::CONTROLLER_NAME, object = %key);
    let result = sync(&owner, &ctx, &key).instrument(span).await;
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

async fn sync<K: ReplicaSetLike>(owner: &Arc<K>, ctx: &Ctx<K>, key: &str) -> Result<Action, Error> {
    tracing::trace!(object = %key, "sync");
    let rs = owner.to_replica_set();
    let spec = rs.spec.clone().unwrap_or_default();
    let needs_sync = ctx.expectations.satisfied(key);
    let selector = match LabelSelector::from_metav1(&spec.selector) {
        Ok(s) => s,
        Err(e) => {
            // A selector validation let through cannot be fixed by retrying.
            tracing::warn!(object = %key, error = %e, "invalid selector");
            return Ok(Action::await_change());
        }
    };
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let uid = rs.metadata.uid.clone().unwrap_or_default();

    let mut candidates = ctx.pods.controlled_by(&uid);
    candidates.extend(ctx.pods.orphans_in(&ns));
    candidates.retain(|p| is_pod_active(p));
    let owner_ref = controller_ref(&rs.metadata, &K::api_version(&()), &K::kind(&()));
    let client = ctx.client.clone();
    let cached_meta = rs.metadata.clone();
    let fresh = || async move {
        let api: Api<K> = Api::namespaced(client, cached_meta.namespace.as_deref().unwrap_or(""));
        let fresh = api
            .get(cached_meta.name.as_deref().unwrap_or(""))
            .await
            .map_err(ClaimError::Api)?;
        recheck_deletion_timestamp(&cached_meta, fresh.meta(), &K::kind(&()))
    };
    let pods = claim(
        &ctx.client,
        &rs.metadata,
        &owner_ref,
        &selector,
        candidates,
        fresh,
    )
    .await?;

    let mut manage_err = None;
    if needs_sync && rs.metadata.deletion_timestamp.is_none() {
        if let Err(e) = manage_replicas(owner, &rs, &pods, ctx, key).await {
            manage_err = Some(e);
        }
    }

    let now = Timestamp::now();
    let status = calculate_status(&rs, &pods, manage_err.as_ref(), now);
    update_status(owner, &rs, status, ctx).await?;
    if let Some(e) = manage_err {
        return Err(e);
    }
    // Pods that are ready but not yet available for minReadySeconds need another look.
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let wake = pods
        .iter()
        .filter_map(|p| time_until_available(p, min_ready, now))
        .min();
    if let Some(d) = wake {
        return Ok(Action::requeue(d + Duration::from_millis(100)));
    }
    Ok(Action::await_change())
}

async fn manage_replicas<K: ReplicaSetLike>(
    owner: &Arc<K>,
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    ctx: &Ctx<K>,
    key: &str,
) -> Result<(), Error> {
    let spec = rs.spec.clone().unwrap_or_default();
    let want = usize::try_from(spec.replicas.unwrap_or(1).max(0)).unwrap_or(0);
    let ns = rs.metadata.namespace.clone().unwrap_or_default();
    let name = rs.metadata.name.clone().unwrap_or_default();
    let regarding = owner.object_ref(&());
    if pods.len() < want {
        let diff = (want - pods.len()).min(BURST_REPLICAS);
        let Some(template) = spec.template.as_ref() else {
            return Err(Error::Manage("spec.template is missing".to_string()));
        };
        ctx.expectations.expect_creations(key, diff);
        let owner_ref = controller_ref(&rs.metadata, &K::api_version(&()), &K::kind(&()));
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let prefix = pods_prefix(&name);
        tracing::debug!(object = %key, want, have = pods.len(), creating = diff, "too few replicas");
        let failures = Mutex::new(Vec::new());
        let (created, err) = slow_start_batch(diff, SLOW_START_INITIAL_BATCH_SIZE, |_| {
            let pod = pod_from_template(template, &ns, &prefix, owner_ref.clone());
            let (api, regarding, failures) = (&api, &regarding, &failures);
            async move {
                match api.create(&PostParams::default(), &pod).await {
                    Ok(p) => {
                        let note = format!("Created pod: {}", p.name_any());
                        ctx.recorder
                            .publish(
                                regarding,
                                EventType::Normal,
                                "SuccessfulCreate",
                                "Create",
                                note,
                            )
                            .await;
                        Ok(())
                    }
                    // The namespace is going away: nothing to create, nothing to retry.
                    Err(e) if is_namespace_terminating(&e) => Ok(()),
                    Err(e) => {
                        let note = format!("Error creating: {e}");
                        ctx.recorder
                            .publish(
                                regarding,
                                EventType::Warning,
                                "FailedCreate",
                                "Create",
                                note,
                            )
                            .await;
                        failures
                            .lock()
                            .expect("invariant: lock is never poisoned")
                            .push(e.to_string());
                        Err(e)
                    }
                }
            }
        })
        .await;
        // Creations that failed or never started will not show up in the cache.
        for _ in created..diff {
            ctx.expectations.creation_observed(key);
        }
        if let Some(e) = err {
            return Err(Error::Manage(e.to_string()));
        }
    } else if pods.len() > want {
        let diff = (pods.len() - want).min(BURST_REPLICAS);
        let related = related_pods(rs, ctx);
        let victims = pods_to_delete(pods, &related, diff);
        ctx.expectations
            .expect_deletions(key, victims.iter().map(|p| meta_key(&p.metadata)));
        tracing::debug!(object = %key, want, have = pods.len(), deleting = diff, "too many replicas");
        let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
        let results = join_all(victims.iter().map(|p| {
            let (api, regarding) = (&api, &regarding);
            async move {
                let pod_name = p.metadata.name.clone().unwrap_or_default();
                match api.delete(&pod_name, &Default::default()).await {
                    Ok(_) => {
                        let note = format!("Deleted pod: {pod_name}");
                        ctx.recorder
                            .publish(
                                regarding,
                                EventType::Normal,
                                "SuccessfulDelete",
                                "Delete",
                                note,
                            )
                            .await;
                        Ok(())
                    }
                    Err(e) => {
                        ctx.expectations
                            .deletion_observed(key, &meta_key(&p.metadata));
                        if is_not_found(&e) {
                            return Ok(());
                        }
                        let note = format!("Error deleting: {e}");
                        ctx.recorder
                            .publish(
                                regarding,
                                EventType::Warning,
                                "FailedDelete",
                                "Delete",
                                note,
                            )
                            .await;
                        Err(e)
                    }
                }
            }
        }))
        .await;
        if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
            return Err(Error::Manage(e.to_string()));
        }
    }
    Ok(())
}

/// Pods of every ReplicaSet controlled by the same owner as `rs` (upstream
/// `getIndirectlyRelatedPods`), so a scale-down spreads over nodes across a rollout.
fn related_pods<K: ReplicaSetLike>(rs: &ReplicaSet, ctx: &Ctx<K>) -> Vec<Arc<Pod>> {
    let Some(parent) = controller_of(&rs.metadata) else {
        return ctx
            .pods
            .controlled_by(rs.metadata.uid.as_deref().unwrap_or(""));
    };
    ctx.replica_sets
        .controlled_by(&parent.uid)
        .iter()
        .flat_map(|sibling| {
            ctx.pods
                .controlled_by(sibling.metadata.uid.as_deref().unwrap_or(""))
        })
        .collect()
}

/// Upstream `calculateStatus`.
pub fn calculate_status(
    rs: &ReplicaSet,
    pods: &[Arc<Pod>],
    manage_err: Option<&Error>,
    now: Timestamp,
) -> ReplicaSetStatus {
    let spec = rs.spec.clone().unwrap_or_default();
    let mut status = rs.status.clone().unwrap_or_default();
    let template_labels: BTreeMap<String, String> = spec
        .template
        .as_ref()
        .and_then(|t| t.metadata.as_ref())
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    let min_ready = spec.min_ready_seconds.unwrap_or(0);
    let (mut fully_labeled, mut ready, mut available) = (0, 0, 0);
    for p in pods {
        let labels = p.metadata.labels.clone().unwrap_or_default();
        if template_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
        {
            fully_labeled += 1;
        }
        if is_pod_ready(p) {
            ready += 1;
            if is_pod_available(p, min_ready, now) {
                available += 1;
            }
        }
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let has_failure = conditions.iter().any(|c| c.type_ == "ReplicaFailure");
    match manage_err {
        Some(e) if !has_failure => {
            let want = i64::from(spec.replicas.unwrap_or(1));
            let have = i64::try_from(pods.len()).unwrap_or(i64::MAX);
            let reason = if have < want {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(ReplicaSetCondition {
                type_: "ReplicaFailure".to_string(),
                status: "True".to_string(),
                reason: Some(reason.to_string()),
                message: Some(e.to_string()),
                last_transition_time: Some(metav1::Time(now)),
            });
        }
        None if has_failure => conditions.retain(|c| c.type_ != "ReplicaFailure"),
        _ => {}
    }
    if status.conditions.as_ref().is_some_and(Vec::is_empty) {
        status.conditions = None;
    }
    let count = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    status.replicas = count(pods.len());
    // Upstream leaves these out of the JSON when zero (`omitempty`); `replicas` stays.
    let nz = |n: usize| (n > 0).then(|| count(n));
    status.fully_labeled_replicas = nz(fully_labeled);
    status.ready_replicas = nz(ready);
    status.available_replicas = nz(available);
    status
}

/// Writes `status` unless nothing changed (upstream `updateReplicaSetStatus`: one
/// retry against a fresh read on conflict).
async fn update_status<K: ReplicaSetLike>(
    owner: &Arc<K>,
    rs: &ReplicaSet,
    mut status: ReplicaSetStatus,
    ctx: &Ctx<K>,
) -> Result<(), Error> {
    let generation = rs.metadata.generation;
    let old = rs.status.clone().unwrap_or_default();
    if normalized(&old) == normalized(&status) && old.observed_generation == generation {
        return Ok(());
    }
    status.observed_generation = generation;
    let name = rs.metadata.name.clone().unwrap_or_default();
    let api: Api<K> = Api::namespaced(
        ctx.client.clone(),
        rs.metadata.namespace.as_deref().unwrap_or(""),
    );
    let mut target = owner.with_status(status.clone());
    for attempt in 0..2 {
        match api
            .replace_status(&name, &PostParams::default(), &target)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if attempt == 0 && !is_not_found(&e) => {
                let fresh = api.get(&name).await?;
                target = fresh.with_status(status.clone());
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Status with an empty condition list and a missing one treated alike.
fn normalized(s: &ReplicaSetStatus) -> ReplicaSetStatus {
    let mut s = s.clone();
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
    s.observed_generation = None;
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus, PodTemplateSpec};

    fn rs(replicas: i32, min_ready: i32) -> ReplicaSet {
        ReplicaSet {
            metadata: metav1::ObjectMeta {
                name: Some("rs".into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(replicas),
                min_ready_seconds: Some(min_ready),
                selector: metav1::LabelSelector {
                    match_labels: Some([("app".to_string(), "a".to_string())].into()),
                    ..Default::default()
                },
                template: Some(PodTemplateSpec {
                    metadata: Some(metav1::ObjectMeta {
                        labels: Some(
                            [
                                ("app".to_string(), "a".to_string()),
                                ("tier".to_string(), "x".to_string()),
                            ]
                            .into(),
                        ),
                        ..Default::default()
                    }),
                    spec: None,
                }),
            }),
            status: None,
        }
    }

    fn pod(labels: &[(&str, &str)], ready_since: Option<i64>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: metav1::ObjectMeta {
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                conditions: ready_since.map(|t| {
                    vec![PodCondition {
                        type_: "Ready".into(),
                        status: "True".into(),
                        last_transition_time: Some(metav1::Time(
                            Timestamp::from_second(t).expect("ts"),
                        )),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn status_counts_labels_readiness_and_availability() {
        let now = Timestamp::from_second(1000).expect("ts");
        let pods = vec![
            pod(&[("app", "a"), ("tier", "x")], Some(100)),
            pod(&[("app", "a"), ("tier", "x")], Some(995)),
            pod(&[("app", "a")], None),
        ];
        let s = calculate_status(&rs(3, 10), &pods, None, now);
        assert_eq!(s.replicas, 3);
        assert_eq!(s.fully_labeled_replicas, Some(2));
        assert_eq!(s.ready_replicas, Some(2));
        assert_eq!(s.available_replicas, Some(1));
        assert!(s.conditions.is_none());
    }

    #[test]
    fn failures_set_and_clear_replica_failure() {
        let now = Timestamp::from_second(1000).expect("ts");
        let err = Error::Manage("pods \"x\" is forbidden: exceeded quota".into());
        let mut r = rs(3, 0);
        let s = calculate_status(&r, &[], Some(&err), now);
        let c = &s.conditions.clone().expect("condition")[0];
        assert_eq!(
            (c.type_.as_str(), c.reason.as_deref()),
            ("ReplicaFailure", Some("FailedCreate"))
        );
        assert_eq!(
            c.message.as_deref(),
            Some("pods \"x\" is forbidden: exceeded quota")
        );
        r.status = Some(s);
        assert!(calculate_status(&r, &[], None, now).conditions.is_none());
    }

    #[test]
    fn replication_controllers_read_as_replica_sets() {
        let rc = ReplicationController {
            metadata: metav1::ObjectMeta {
                name: Some("rc".into()),
                ..Default::default()
            },
            spec: Some(k8s_openapi::api::core::v1::ReplicationControllerSpec {
                replicas: Some(2),
                selector: Some([("app".to_string(), "a".to_string())].into()),
                ..Default::default()
            }),
            status: None,
        };
        let rs = rc.to_replica_set();
        let spec = rs.spec.expect("spec");
        assert_eq!(spec.replicas, Some(2));
        assert_eq!(
            spec.selector.match_labels,
            Some([("app".to_string(), "a".to_string())].into())
        );
        let back = rc.with_status(ReplicaSetStatus {
            replicas: 2,
            ready_replicas: Some(1),
            ..Default::default()
        });
        assert_eq!(back.status.expect("status").ready_replicas, Some(1));
        assert_eq!(group_of("apps/v1"), "apps");
        assert_eq!(group_of("v1"), "");
    }
}
