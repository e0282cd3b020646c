//! The Deployment controller (upstream `pkg/controller/deployment`): a Deployment owns
//! ReplicaSets named `<deployment>-<pod-template-hash>`, one per pod template it has
//! had, and moves replicas from the old ones to the new one.
//!
//! One sync claims the Deployment's ReplicaSets (adoption/release as for pods), then:
//! deleting → status only; paused or only `replicas` changed → proportional scaling;
//! otherwise a step of the strategy — RollingUpdate ([`rolling`]) never lets the
//! ReplicaSets' pods exceed `replicas + maxSurge` nor the available pods drop below
//! `replicas - maxUnavailable`; Recreate ([`recreate`]) scales the old ReplicaSets to
//! zero and waits for their pods to be gone before scaling up the new one. Status and
//! the Available/Progressing conditions come from [`progress`].
//!
//! A sync reads ReplicaSets from a cache that lags the controller's own writes. Every
//! ReplicaSet write is recorded in [`ResourceVersionExpectations`]; until the cache
//! shows all of them, the next sync waits instead of deciding from stale replicas.

mod progress;
mod recreate;
mod rolling;
pub mod util;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use apis::selectors::LabelSelector;
use k8s_openapi::api::apps::v1::{Deployment, DeploymentStatus, ReplicaSet, ReplicaSetSpec};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use kube::{Client, Resource};
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_ref_manager::{claim, recheck_deletion_timestamp, ClaimError};
use crate::controller_utils::{
    controller_ref, is_already_exists, is_namespace_terminating, is_not_found, meta_key,
    ErrorBackoff, EventRecorder,
};
use crate::expectations::{rv_at_least, ResourceVersionExpectations};
use crate::informer::{controller_of, Cache, Change, InformerFactory};
use crate::queue::{self, Queue};
use crate::replicaset::group_of;
use util::*;

const CONTROLLER_NAME: &str = "deployment-controller";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Claim(#[from] ClaimError),
}

struct Ctx {
    client: Client,
    deployments: Cache<Deployment>,
    replica_sets: Cache<ReplicaSet>,
    pods: Cache<Pod>,
    writes: Arc<ResourceVersionExpectations>,
    recorder: EventRecorder,
    backoff: ErrorBackoff,
}

/// The Deployment controller, wired to shared informers.
pub struct DeploymentController {
    ctx: Arc<Ctx>,
    rx: futures::channel::mpsc::UnboundedReceiver<kube::runtime::reflector::ObjectRef<Deployment>>,
}

fn is_deployment_ref(r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference) -> bool {
    r.kind == "Deployment" && group_of(&r.api_version) == "apps"
}

impl DeploymentController {
    /// Registers handlers on `informers`; run with [`Self::run`] after `informers.start`.
    pub fn new(client: Client, informers: &mut InformerFactory) -> Self {
        let (queue, rx) = Queue::<Deployment>::new();
        let writes = Arc::new(ResourceVersionExpectations::new());

        let d_informer = informers.informer::<Deployment>();
        let deployments = d_informer.cache();
        {
            let (queue, writes) = (queue.clone(), writes.clone());
            d_informer.add_handler(move |change| match change {
                Change::Added(d) | Change::Updated { new: d, .. } => queue.enqueue_obj(*d),
                Change::Deleted(d) => writes.delete(&meta_key(&d.metadata)),
            });
        }

        let rs_informer = informers.informer::<ReplicaSet>();
        let replica_sets = rs_informer.cache();
        {
            let handler = RsHandler {
                queue: queue.clone(),
                deployments: deployments.clone(),
                writes: writes.clone(),
            };
            rs_informer.add_handler(move |change| handler.handle(change));
        }

        let pod_informer = informers.informer::<Pod>();
        let pods = pod_informer.cache();
        {
            // Recreate waits for old pods to be gone; their deletion is the signal to go on.
            let (queue, deployments, replica_sets) =
                (queue, deployments.clone(), replica_sets.clone());
            pod_informer.add_handler(move |change| {
                let Change::Deleted(pod) = change else { return };
                let ns = pod.metadata.namespace.as_deref().unwrap_or("");
                let Some(r) = controller_of(&pod.metadata).filter(|r| r.kind == "ReplicaSet")
                else {
                    return;
                };
                let Some(rs) = replica_sets.get(ns, &r.name) else {
                    return;
                };
                let Some(dr) = controller_of(&rs.metadata).filter(|r| is_deployment_ref(r)) else {
                    return;
                };
                if let Some(d) = deployments.get(ns, &dr.name) {
                    if d.metadata.uid.as_deref() == Some(dr.uid.as_str())
                        && strategy_type(&d) == "Recreate"
                    {
                        queue.enqueue_obj(&d);
                    }
                }
            });
        }

        let recorder = EventRecorder::new(client.clone(), CONTROLLER_NAME);
        let ctx = Arc::new(Ctx {
            client,
            deployments,
            replica_sets,
            pods,
            writes,
            recorder,
            backoff: ErrorBackoff::default(),
        });
        DeploymentController { ctx, rx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        let (d, rs, p) = (
            ctx.deployments.clone(),
            ctx.replica_sets.clone(),
            ctx.pods.clone(),
        );
        let ready = async move {
            d.wait_until_ready().await;
            rs.wait_until_ready().await;
            p.wait_until_ready().await;
        };
        queue::run(
            CONTROLLER_NAME,
            ctx.deployments.store(),
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

/// ReplicaSet events → Deployments to sync (upstream `addReplicaSet`/`updateReplicaSet`/`deleteReplicaSet`).
struct RsHandler {
    queue: Queue<Deployment>,
    deployments: Cache<Deployment>,
    writes: Arc<ResourceVersionExpectations>,
}

impl RsHandler {
    fn handle(&self, change: &Change<'_, ReplicaSet>) {
        match change {
            Change::Added(rs) => {
                if let Some(d) = self.owner(rs) {
                    self.observe(&d, rs);
                    self.queue.enqueue_obj(&d);
                } else if controller_of(&rs.metadata).is_none() {
                    self.enqueue_matching(rs);
                }
            }
            Change::Updated { old, new } => {
                if old.metadata.resource_version == new.metadata.resource_version {
                    return;
                }
                let (cur_ref, old_ref) =
                    (controller_of(&new.metadata), controller_of(&old.metadata));
                if cur_ref != old_ref {
                    if let Some(d) = self.owner(old) {
                        self.queue.enqueue_obj(&d);
                    }
                }
                if let Some(d) = self.owner(new) {
                    self.observe(&d, new);
                    self.queue.enqueue_obj(&d);
                    return;
                }
                if cur_ref.is_none()
                    && (old.metadata.labels != new.metadata.labels || cur_ref != old_ref)
                {
                    self.enqueue_matching(new);
                }
            }
            Change::Deleted(rs) => {
                if let Some(d) = self.owner(rs) {
                    self.writes
                        .observe_deleted(&meta_key(&d.metadata), &meta_key(&rs.metadata));
                    self.queue.enqueue_obj(&d);
                }
            }
        }
    }

    fn observe(&self, d: &Deployment, rs: &ReplicaSet) {
        let rv = rs.metadata.resource_version.as_deref().unwrap_or("");
        self.writes
            .observe(&meta_key(&d.metadata), &meta_key(&rs.metadata), rv);
    }

    fn owner(&self, rs: &ReplicaSet) -> Option<Arc<Deployment>> {
        let r = controller_of(&rs.metadata).filter(|r| is_deployment_ref(r))?;
        let d = self
            .deployments
            .get(rs.metadata.namespace.as_deref().unwrap_or(""), &r.name)?;
        (d.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(d)
    }

    fn enqueue_matching(&self, rs: &ReplicaSet) {
        let labels = rs.metadata.labels.clone().unwrap_or_default();
        for d in self
            .deployments
            .in_namespace(rs.metadata.namespace.as_deref().unwrap_or(""))
        {
            let Some(spec) = d.spec.as_ref() else {
                continue;
            };
            if let Ok(sel) = LabelSelector::from_metav1(&spec.selector) {
                if !sel.is_empty() && sel.matches(&labels) {
                    self.queue.enqueue_obj(&d);
                }
            }
        }
    }
}

fn error_policy(d: Arc<Deployment>, err: &Error, ctx: Arc<Ctx>) -> Action {
    let key = meta_key(&d.metadata);
    let delay = ctx.backoff.next_delay(&key);
    tracing::debug!(controller = CONTROLLER_NAME, object = %key, error = %err, ?delay, "sync failed");
    Action::requeue(delay)
}

async fn reconcile(d: Arc<Deployment>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let key = meta_key(&d.metadata);
    let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %key);
    let syncer = Syncer {
        ctx: &ctx,
        key: key.clone(),
        d: (*d).clone(),
        rss: Vec::new(),
    };
    let result = syncer.sync().instrument(span).await;
    if result.is_ok() {
        ctx.backoff.reset(&key);
    }
    result
}

/// The state of one sync: the Deployment as last written and its ReplicaSets.
struct Syncer<'a> {
    ctx: &'a Ctx,
    key: String,
    d: Deployment,
    rss: Vec<ReplicaSet>,
}

impl Syncer<'_> {
    async fn sync(mut self) -> Result<Action, Error> {
        if !self.ctx.writes.satisfied(&self.key) {
            // The cache has not caught up with this controller's last ReplicaSet writes;
            // their events will bring the Deployment back (the requeue only guards
            // against a lost event).
            return Ok(Action::requeue(Duration::from_secs(30)));
        }
        let Some(spec) = self.d.spec.clone() else {
            return Ok(Action::await_change());
        };
        let selects_all = spec
            .selector
            .match_labels
            .as_ref()
            .is_none_or(BTreeMap::is_empty)
            && spec
                .selector
                .match_expressions
                .as_ref()
                .is_none_or(Vec::is_empty);
        if selects_all {
            let note = "This deployment is selecting all pods. A non-empty selector is required."
                .to_string();
            self.event(EventType::Warning, "SelectingAll", note).await;
            let status = self.d.status.clone().unwrap_or_default();
            if status.observed_generation < self.d.metadata.generation {
                self.update_status(DeploymentStatus {
                    observed_generation: self.d.metadata.generation,
                    ..status
                })
                .await?;
            }
            return Ok(Action::await_change());
        }
        let selector = match LabelSelector::from_metav1(&spec.selector) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(object = %self.key, error = %e, "invalid selector");
                return Ok(Action::await_change());
            }
        };
        self.claim_replica_sets(&selector).await?;

        if self.d.metadata.deletion_timestamp.is_some() {
            return self.sync_status_only().await;
        }
        self.check_paused_conditions().await?;
        if is_paused(&self.d) {
            return self.sync_scale().await;
        }
        if self.is_scaling_event().await? {
            return self.sync_scale().await;
        }
        if strategy_type(&self.d) == "Recreate" {
            self.rollout_recreate().await
        } else {
            self.rollout_rolling().await
        }
    }

    async fn claim_replica_sets(&mut self, selector: &LabelSelector) -> Result<(), Error> {
        let meta = self.d.metadata.clone();
        let uid = meta.uid.clone().unwrap_or_default();
        let ns = meta.namespace.clone().unwrap_or_default();
        let mut candidates = self.ctx.replica_sets.controlled_by(&uid);
        candidates.extend(self.ctx.replica_sets.orphans_in(&ns));
        let owner_ref = controller_ref(&meta, "apps/v1", "Deployment");
        let client = self.ctx.client.clone();
        let cached = meta.clone();
        let fresh = || async move {
            let api: Api<Deployment> =
                Api::namespaced(client, cached.namespace.as_deref().unwrap_or(""));
            let fresh = api
                .get(cached.name.as_deref().unwrap_or(""))
                .await
                .map_err(ClaimError::Api)?;
            recheck_deletion_timestamp(&cached, &fresh.metadata, "Deployment")
        };
        let claimed = claim(
            &self.ctx.client,
            &meta,
            &owner_ref,
            selector,
            candidates,
            fresh,
        )
        .await?;
        self.rss = claimed.iter().map(|rs| (**rs).clone()).collect();
        Ok(())
    }

    fn rs_api(&self) -> Api<ReplicaSet> {
        Api::namespaced(
            self.ctx.client.clone(),
            self.d.metadata.namespace.as_deref().unwrap_or(""),
        )
    }

    fn name(&self) -> String {
        self.d.metadata.name.clone().unwrap_or_default()
    }

    async fn event(&self, type_: EventType, reason: &str, note: String) {
        let regarding = self.d.object_ref(&());
        self.ctx
            .recorder
            .publish(&regarding, type_, reason, "Sync", note)
            .await;
    }

    /// Records a ReplicaSet write so the next sync waits for the cache to show it.
    fn expect_write(&self, rs: &ReplicaSet) {
        let rv = rs.metadata.resource_version.clone().unwrap_or_default();
        let (ns, name) = (
            rs.metadata.namespace.clone().unwrap_or_default(),
            rs.metadata.name.clone().unwrap_or_default(),
        );
        let cache = &self.ctx.replica_sets;
        self.ctx
            .writes
            .expect_unless(&self.key, &meta_key(&rs.metadata), &rv, || {
                cache.get(&ns, &name).is_some_and(|c| {
                    rv_at_least(c.metadata.resource_version.as_deref().unwrap_or(""), &rv)
                })
            });
    }

    /// PUTs `rs` (optimistic concurrency on its resourceVersion) and keeps the reply.
    async fn replace_rs(&mut self, idx: usize, rs: ReplicaSet) -> Result<(), Error> {
        let name = rs.metadata.name.clone().unwrap_or_default();
        let updated = self
            .rs_api()
            .replace(&name, &PostParams::default(), &rs)
            .await?;
        self.expect_write(&updated);
        self.rss[idx] = updated;
        Ok(())
    }

    async fn update_status(&mut self, status: DeploymentStatus) -> Result<(), Error> {
        let api: Api<Deployment> = Api::namespaced(
            self.ctx.client.clone(),
            self.d.metadata.namespace.as_deref().unwrap_or(""),
        );
        let obj = Deployment {
            status: Some(status),
            ..self.d.clone()
        };
        self.d = api
            .replace_status(&self.name(), &PostParams::default(), &obj)
            .await?;
        Ok(())
    }

    /// Sets the Deployment's revision annotation. The status subresource cannot change
    /// annotations here, so this is its own (merge) patch of the main resource.
    async fn set_deployment_revision(&mut self, revision: &str) -> Result<(), Error> {
        let current = self
            .d
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(REVISION_ANNOTATION));
        if current.map(String::as_str) == Some(revision) {
            return Ok(());
        }
        let api: Api<Deployment> = Api::namespaced(
            self.ctx.client.clone(),
            self.d.metadata.namespace.as_deref().unwrap_or(""),
        );
        let patch = json!({"metadata": {"annotations": {REVISION_ANNOTATION: revision}}});
        self.d = api
            .patch(&self.name(), &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Indices of the new ReplicaSet (oldest whose template matches) and of the others.
    fn split(&self) -> (Option<usize>, Vec<usize>) {
        let mut idx: Vec<usize> = (0..self.rss.len()).collect();
        idx.sort_by(|a, b| by_creation(&self.rss[*a], &self.rss[*b]));
        let template = self
            .d
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let new = idx
            .iter()
            .copied()
            .find(|i| equal_ignore_hash(&rs_template(&self.rss[*i]), &template));
        let old = idx.into_iter().filter(|i| Some(*i) != new).collect();
        (new, old)
    }

    /// Upstream `getAllReplicaSetsAndSyncRevision`: finds (or, with `create`, makes) the
    /// new ReplicaSet and brings its revision to max(old) + 1.
    async fn get_all_and_sync_revision(
        &mut self,
        create: bool,
    ) -> Result<(Option<usize>, Vec<usize>), Error> {
        let (existing, old) = self.split();
        let new_revision = max_revision(old.iter().map(|i| &self.rss[*i])) + 1;
        if let Some(i) = existing {
            let mut copy = self.rss[i].clone();
            let annotations_updated =
                set_new_replica_set_annotations(&self.d, &mut copy, new_revision, true);
            let min_ready = min_ready_seconds(&self.d);
            let spec = copy.spec.get_or_insert_with(ReplicaSetSpec::default);
            let min_ready_update = spec.min_ready_seconds.unwrap_or(0) != min_ready;
            if annotations_updated || min_ready_update {
                spec.min_ready_seconds = Some(min_ready);
                self.replace_rs(i, copy).await?;
                return Ok((Some(i), old));
            }
            let revision = self.rss[i]
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(REVISION_ANNOTATION))
                .cloned()
                .unwrap_or_default();
            self.set_deployment_revision(&revision).await?;
            let mut status = self.d.status.clone().unwrap_or_default();
            if progress_deadline(&self.d).is_some() && condition(&status, PROGRESSING).is_none() {
                let msg = format!(
                    "Found new replica set {:?}",
                    self.rss[i].metadata.name.clone().unwrap_or_default()
                );
                set_condition(
                    &mut status,
                    new_condition(
                        PROGRESSING,
                        "True",
                        FOUND_NEW_RS_REASON,
                        msg,
                        Timestamp::now(),
                    ),
                );
                self.update_status(status).await?;
            }
            return Ok((Some(i), old));
        }
        if !create {
            return Ok((None, old));
        }
        let idx = self.create_new_replica_set(&old, new_revision).await?;
        Ok((Some(idx), old))
    }

    async fn create_new_replica_set(
        &mut self,
        old: &[usize],
        new_revision: i64,
    ) -> Result<usize, Error> {
        let spec = self.d.spec.clone().unwrap_or_default();
        let mut template = spec.template.clone();
        let collision_count = self.d.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&template, collision_count);
        template
            .metadata
            .get_or_insert_with(ObjectMeta::default)
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.clone());
        let mut selector = spec.selector.clone();
        selector
            .match_labels
            .get_or_insert_with(BTreeMap::new)
            .insert(POD_TEMPLATE_HASH_LABEL.to_string(), hash.clone());
        let name = format!("{}-{hash}", self.name());
        let mut rs = ReplicaSet {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.d.metadata.namespace.clone(),
                owner_references: Some(vec![controller_ref(
                    &self.d.metadata,
                    "apps/v1",
                    "Deployment",
                )]),
                labels: template.metadata.as_ref().and_then(|m| m.labels.clone()),
                ..Default::default()
            },
            spec: Some(ReplicaSetSpec {
                replicas: Some(0),
                min_ready_seconds: spec.min_ready_seconds,
                selector,
                template: Some(template),
            }),
            status: None,
        };
        let all: Vec<&ReplicaSet> = old
            .iter()
            .map(|i| &self.rss[*i])
            .chain(std::iter::once(&rs))
            .collect();
        let new_replicas = new_rs_new_replicas(&self.d, &all, &rs);
        if let Some(s) = rs.spec.as_mut() {
            s.replicas = Some(new_replicas);
        }
        set_new_replica_set_annotations(&self.d, &mut rs, new_revision, false);

        let api = self.rs_api();
        let (created, already_exists) = match api.create(&PostParams::default(), &rs).await {
            Ok(created) => (created, false),
            Err(e) if is_already_exists(&e) => {
                // A slow cache, or a hash collision with a ReplicaSet that is not ours.
                let existing = api.get(&name).await?;
                let ours = controller_of(&existing.metadata)
                    .is_some_and(|r| Some(r.uid.as_str()) == self.d.metadata.uid.as_deref());
                if ours && equal_ignore_hash(&spec.template, &rs_template(&existing)) {
                    (existing, true)
                } else {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    status.collision_count = Some(status.collision_count.unwrap_or(0) + 1);
                    if self.update_status(status).await.is_ok() {
                        tracing::info!(object = %self.key, "hash collision; bumped collisionCount");
                    }
                    return Err(e.into());
                }
            }
            Err(e) if is_namespace_terminating(&e) => return Err(e.into()),
            Err(e) => {
                let msg = format!("Failed to create new replica set {name:?}: {e}");
                if progress_deadline(&self.d).is_some() {
                    let mut status = self.d.status.clone().unwrap_or_default();
                    set_condition(
                        &mut status,
                        new_condition(
                            PROGRESSING,
                            "False",
                            FAILED_RS_CREATE_REASON,
                            msg.clone(),
                            Timestamp::now(),
                        ),
                    );
                    // The create error is the one worth returning.
                    let _ = self.update_status(status).await;
                }
                self.event(EventType::Warning, FAILED_RS_CREATE_REASON, msg)
                    .await;
                return Err(e.into());
            }
        };
        self.expect_write(&created);
        if !already_exists && new_replicas > 0 {
            let note = format!("Scaled up replica set {name} from 0 to {new_replicas}");
            self.event(EventType::Normal, "ScalingReplicaSet", note)
                .await;
        }
        let idx = match self
            .rss
            .iter()
            .position(|r| r.metadata.name == created.metadata.name)
        {
            Some(i) => {
                self.rss[i] = created;
                i
            }
            None => {
                self.rss.push(created);
                self.rss.len() - 1
            }
        };
        self.set_deployment_revision(&new_revision.to_string())
            .await?;
        if !already_exists && progress_deadline(&self.d).is_some() {
            let mut status = self.d.status.clone().unwrap_or_default();
            let msg = format!("Created new replica set {name:?}");
            set_condition(
                &mut status,
                new_condition(PROGRESSING, "True", NEW_RS_REASON, msg, Timestamp::now()),
            );
            self.update_status(status).await?;
        }
        Ok(idx)
    }

    /// Scales `idx` to `new_scale` (and refreshes its replicas annotations); true if
    /// its size changed.
    async fn scale_replica_set(&mut self, idx: usize, new_scale: i32) -> Result<bool, Error> {
        let rs = &self.rss[idx];
        let old_scale = rs_replicas(rs);
        let want = replicas(&self.d);
        let max = want + max_surge(&self.d);
        let size_changes = old_scale != new_scale;
        if !size_changes && !replicas_annotations_need_update(rs, want, max) {
            return Ok(false);
        }
        let mut copy = rs.clone();
        copy.spec
            .get_or_insert_with(ReplicaSetSpec::default)
            .replicas = Some(new_scale);
        set_replicas_annotations(&mut copy, want, max);
        self.replace_rs(idx, copy).await?;
        if size_changes {
            let direction = if old_scale < new_scale { "up" } else { "down" };
            let name = self.rss[idx].metadata.name.clone().unwrap_or_default();
            let note =
                format!("Scaled {direction} replica set {name} from {old_scale} to {new_scale}");
            self.event(EventType::Normal, "ScalingReplicaSet", note)
                .await;
        }
        Ok(size_changes)
    }

    /// Upstream `scaleReplicaSetAndRecordEvent`: nothing to do if the size is right.
    async fn scale_and_record(&mut self, idx: usize, new_scale: i32) -> Result<bool, Error> {
        if rs_replicas(&self.rss[idx]) == new_scale {
            return Ok(false);
        }
        self.scale_replica_set(idx, new_scale).await
    }

    /// Records pausing and resuming in the Progressing condition, so the time spent
    /// paused never counts against the progress deadline (upstream `checkPausedConditions`).
    async fn check_paused_conditions(&mut self) -> Result<(), Error> {
        if progress_deadline(&self.d).is_none() {
            return Ok(());
        }
        let mut status = self.d.status.clone().unwrap_or_default();
        let reason = condition(&status, PROGRESSING).and_then(|c| c.reason.clone());
        if reason.as_deref() == Some(TIMED_OUT_REASON) {
            return Ok(());
        }
        let paused_recorded = reason.as_deref() == Some(PAUSED_REASON);
        let c = match (is_paused(&self.d), paused_recorded) {
            (true, false) => new_condition(
                PROGRESSING,
                "Unknown",
                PAUSED_REASON,
                "Deployment is paused".into(),
                Timestamp::now(),
            ),
            (false, true) => new_condition(
                PROGRESSING,
                "Unknown",
                RESUMED_REASON,
                "Deployment is resumed".into(),
                Timestamp::now(),
            ),
            _ => return Ok(()),
        };
        set_condition(&mut status, c);
        self.update_status(status).await
    }

    /// Upstream `isScalingEvent`: an active ReplicaSet was sized for another `replicas`.
    async fn is_scaling_event(&mut self) -> Result<bool, Error> {
        let (_new, _old) = self.get_all_and_sync_revision(false).await?;
        let want = replicas(&self.d);
        Ok(self
            .rss
            .iter()
            .filter(|r| rs_replicas(r) > 0)
            .any(|r| desired_replicas_annotation(r).is_some_and(|v| v != want)))
    }

    /// Upstream `sync`: proportional scaling for paused Deployments and scaling events.
    async fn sync_scale(mut self) -> Result<Action, Error> {
        let (new, old) = self.get_all_and_sync_revision(false).await?;
        self.scale(new, &old).await?;
        if is_paused(&self.d) {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_deployment_status(new).await?;
        Ok(Action::await_change())
    }

    async fn sync_status_only(mut self) -> Result<Action, Error> {
        let (new, _old) = self.get_all_and_sync_revision(false).await?;
        self.sync_deployment_status(new).await?;
        Ok(Action::await_change())
    }

    /// Upstream `scale`.
    async fn scale(&mut self, new: Option<usize>, old: &[usize]) -> Result<(), Error> {
        let want = replicas(&self.d);
        let target = {
            let old_refs: Vec<&ReplicaSet> = old.iter().map(|i| &self.rss[*i]).collect();
            find_active_or_latest(new.map(|i| &self.rss[i]), &old_refs)
                .map(|r| r.metadata.name.clone())
        };
        if let Some(name) = target {
            let idx = self
                .rss
                .iter()
                .position(|r| r.metadata.name == name)
                .unwrap_or(0);
            if rs_replicas(&self.rss[idx]) != want {
                self.scale_and_record(idx, want).await?;
            }
            return Ok(());
        }
        if is_saturated(&self.d, new.map(|i| &self.rss[i])) {
            for &i in old {
                if rs_replicas(&self.rss[i]) > 0 {
                    self.scale_and_record(i, 0).await?;
                }
            }
            return Ok(());
        }
        if !is_rolling_update(&self.d) {
            return Ok(());
        }
        let mut active: Vec<usize> = old
            .iter()
            .copied()
            .chain(new)
            .filter(|i| rs_replicas(&self.rss[*i]) > 0)
            .collect();
        let total: i32 = active.iter().map(|i| rs_replicas(&self.rss[*i])).sum();
        let allowed = if want > 0 {
            want + max_surge(&self.d)
        } else {
            0
        };
        let to_add = allowed - total;
        if to_add > 0 {
            active.sort_by(|a, b| by_size_newer(&self.rss[*a], &self.rss[*b]));
        } else if to_add < 0 {
            active.sort_by(|a, b| by_size_older(&self.rss[*a], &self.rss[*b]));
        }
        let mut added = 0;
        let mut sizes = Vec::with_capacity(active.len());
        for &i in &active {
            let rs = &self.rss[i];
            let p = if to_add != 0 {
                proportion(rs, &self.d, to_add, added)
            } else {
                0
            };
            added += p;
            sizes.push(rs_replicas(rs) + p);
        }
        if let Some(first) = sizes.first_mut() {
            if to_add != 0 {
                *first = (*first + to_add - added).max(0);
            }
        }
        for (k, &i) in active.iter().enumerate() {
            self.scale_replica_set(i, sizes[k]).await?;
        }
        Ok(())
    }

    /// Deletes old, empty ReplicaSets beyond `revisionHistoryLimit`, lowest revision first.
    async fn cleanup_deployment(&mut self, old: &[usize]) -> Result<(), Error> {
        let Some(limit) = self.d.spec.as_ref().and_then(|s| s.revision_history_limit) else {
            return Ok(());
        };
        let mut cleanable: Vec<usize> = old
            .iter()
            .copied()
            .filter(|i| self.rss[*i].metadata.deletion_timestamp.is_none())
            .collect();
        let diff = i64::try_from(cleanable.len()).unwrap_or(0) - i64::from(limit);
        if diff <= 0 {
            return Ok(());
        }
        cleanable.sort_by(|a, b| by_revision(&self.rss[*a], &self.rss[*b]));
        let api = self.rs_api();
        for &i in cleanable.iter().take(usize::try_from(diff).unwrap_or(0)) {
            let rs = &self.rss[i];
            let observed = rs
                .status
                .as_ref()
                .and_then(|s| s.observed_generation)
                .unwrap_or(0);
            if rs_status_replicas(rs) != 0
                || rs_replicas(rs) != 0
                || rs.metadata.generation.unwrap_or(0) > observed
            {
                continue;
            }
            let name = rs.metadata.name.clone().unwrap_or_default();
            tracing::debug!(object = %self.key, replica_set = %name, "deleting old replica set");
            match api.delete(&name, &Default::default()).await {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
