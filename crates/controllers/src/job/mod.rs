//! The Job controller (upstream `pkg/controller/job`): runs pods until a Job has
//! `completions` successes (or, without `completions`, until one pod succeeds), at most
//! `parallelism` at a time, and fails it after `backoffLimit` counted failures, past
//! `activeDeadlineSeconds`, or when a `podFailurePolicy` rule says `FailJob`.
//!
//! Pods are tracked with the `batch.kubernetes.io/job-tracking` finalizer: every pod is
//! created with it, so a finished pod cannot disappear before it is counted. A sync
//! first records newly finished pods' UIDs in `status.uncountedTerminatedPods`, then
//! removes their finalizers, then moves them into `succeeded`/`failed` ([`tracking`]).
//! A crash between any two steps repeats work but never counts a pod twice or loses it.
//!
//! Finishing is two-step as in Kubernetes 1.33: an interim `SuccessCriteriaMet` or
//! `FailureTarget` condition is written first; `Complete` or `Failed` follows once no
//! pod of the Job is still terminating.
//!
//! Handlers only enqueue: Job changes sync at once, pod changes are batched over
//! [`crate::ControllerOptions::job_sync_batch_period`]. Expectations keep a sync from
//! acting on a cache that has not yet seen the controller's own creates and deletes.

mod backoff;
mod indexed;
mod manage;
mod pod_failure_policy;
mod sync;
mod tracking;

use std::sync::Arc;
use std::time::Duration;

use apis::selectors::LabelSelector;
use k8s_openapi::api::batch::v1::{Job, JobCondition};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, Patch, PatchParams};
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_ref_manager::{recheck_deletion_timestamp, release, ClaimError};
use crate::controller_utils::{is_not_found, json_patch, meta_key, EventRecorder};
use crate::expectations::ControllerExpectations;
use crate::informer::{controller_of, Cache, Change, InformerFactory};
use crate::options::ControllerOptions;
use crate::replicaset::group_of;
use crate::workqueue::WorkQueue;

pub use backoff::BackoffRecord;
pub use indexed::OrderedIntervals;
pub use pod_failure_policy::{match_pod_failure_policy, Outcome};

/// Finalizer that keeps a Job's pod until the Job has counted it.
pub const JOB_TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation (and label) with an Indexed Job pod's completion index.
pub const COMPLETION_INDEX_ANNOTATION: &str = "batch.kubernetes.io/job-completion-index";
/// `spec.managedBy` value of this controller; other values are left to their owners.
pub const JOB_CONTROLLER_NAME: &str = "kubernetes.io/job-controller";

const CONTROLLER_NAME: &str = "job-controller";
/// Concurrent syncs (upstream `--concurrent-job-syncs` default).
const WORKERS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error(transparent)]
    Claim(#[from] ClaimError),
    #[error("{0}")]
    Manage(String),
}

/// Settings the Job controller takes from [`ControllerOptions`].
#[derive(Clone, Debug)]
pub(crate) struct JobOptions {
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub batch_period: Duration,
}

pub(crate) struct Ctx {
    pub client: Client,
    pub jobs: Cache<Job>,
    pub pods: Cache<Pod>,
    pub queue: Arc<WorkQueue<String>>,
    pub orphan_queue: Arc<WorkQueue<String>>,
    pub expectations: ControllerExpectations,
    pub finalizer_expectations: tracking::UidTrackingExpectations,
    pub backoff: backoff::BackoffStore,
    pub recorder: EventRecorder,
    pub options: JobOptions,
}

impl Ctx {
    /// A sync after the batching period (pod events, status updates).
    fn enqueue_batched(&self, job: &Job) {
        self.queue
            .add_after(meta_key(&job.metadata), self.options.batch_period);
    }

    /// A sync after `delay`, never sooner than the batching period.
    fn enqueue_after(&self, job: &Job, delay: Duration) {
        self.queue.add_after(
            meta_key(&job.metadata),
            delay.max(self.options.batch_period),
        );
    }

    /// The Job a controller reference names, if it is in the cache with that uid.
    fn resolve(&self, namespace: &str, r: &OwnerReference) -> Option<Arc<Job>> {
        if !is_job_ref(r) {
            return None;
        }
        let job = self.jobs.get(namespace, &r.name)?;
        (job.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(job)
    }

    /// Jobs in the pod's namespace whose selector matches it (for orphans).
    fn matching_jobs(&self, pod: &Pod) -> Vec<Arc<Job>> {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let labels = pod.metadata.labels.clone().unwrap_or_default();
        self.jobs
            .in_namespace(ns)
            .into_iter()
            .filter(|j| {
                let sel = j.spec.as_ref().and_then(|s| s.selector.as_ref());
                LabelSelector::from_metav1_opt(sel)
                    .is_ok_and(|s| !s.is_empty() && s.matches(&labels))
            })
            .collect()
    }
}

fn is_job_ref(r: &OwnerReference) -> bool {
    r.kind == "Job" && group_of(&r.api_version) == "batch"
}

pub fn has_tracking_finalizer(pod: &Pod) -> bool {
    pod.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == JOB_TRACKING_FINALIZER)
}

/// The `Complete` or `Failed` condition that is `True`, if the Job has finished.
pub fn finished_condition(job: &Job) -> Option<&JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
}

pub fn is_finished(job: &Job) -> bool {
    finished_condition(job).is_some()
}

/// The controller that manages the Job, when it is not this one.
fn managed_externally(job: &Job) -> Option<&str> {
    job.spec
        .as_ref()
        .and_then(|s| s.managed_by.as_deref())
        .filter(|m| *m != JOB_CONTROLLER_NAME)
}

/// The Job controller, wired to shared informers.
pub struct JobController {
    ctx: Arc<Ctx>,
}

impl JobController {
    /// Registers handlers on `informers`; run with [`Self::run`] after `informers.start`.
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        options: &ControllerOptions,
        cancel: &CancellationToken,
    ) -> Self {
        let jobs = informers.informer::<Job>().cache();
        let pods = informers.informer::<Pod>().cache();
        let ctx = Arc::new(Ctx {
            recorder: EventRecorder::new(client.clone(), CONTROLLER_NAME),
            client,
            jobs,
            pods,
            queue: WorkQueue::new(cancel.clone()),
            orphan_queue: WorkQueue::new(cancel.clone()),
            expectations: ControllerExpectations::new(),
            finalizer_expectations: Default::default(),
            backoff: Default::default(),
            options: JobOptions {
                backoff_base: options.job_pod_failure_backoff,
                backoff_max: options.job_pod_failure_backoff_max,
                batch_period: options.job_sync_batch_period,
            },
        });
        {
            let ctx = ctx.clone();
            informers
                .informer::<Job>()
                .add_handler(move |change| job_changed(&ctx, change));
        }
        {
            let ctx = ctx.clone();
            informers
                .informer::<Pod>()
                .add_handler(move |change| pod_changed(&ctx, change));
        }
        JobController { ctx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async { ctx.jobs.wait_until_ready().await; ctx.pods.wait_until_ready().await } => {}
        }
        tracing::info!(controller = CONTROLLER_NAME, "starting");
        let mut workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(worker(ctx.clone())))
            .collect();
        workers.push(tokio::spawn(orphan_worker(ctx.clone())));
        for w in workers {
            let _ = w.await;
        }
        tracing::debug!(controller = CONTROLLER_NAME, "stopped");
    }
}

async fn worker(ctx: Arc<Ctx>) {
    while let Some(key) = ctx.queue.get().await {
        let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %key);
        match sync::sync_job(&ctx, &key).instrument(span).await {
            Ok(()) => ctx.queue.forget(&key),
            Err(e) => {
                tracing::debug!(controller = CONTROLLER_NAME, object = %key, error = %e, "sync failed; requeued");
                ctx.queue.add_rate_limited(key.clone());
            }
        }
        ctx.queue.done(&key);
    }
}

async fn orphan_worker(ctx: Arc<Ctx>) {
    while let Some(key) = ctx.orphan_queue.get().await {
        match sync_orphan_pod(&ctx, &key).await {
            Ok(()) => ctx.orphan_queue.forget(&key),
            Err(e) => {
                tracing::debug!(controller = CONTROLLER_NAME, pod = %key, error = %e, "removing tracking finalizer failed; requeued");
                ctx.orphan_queue.add_rate_limited(key.clone());
            }
        }
        ctx.orphan_queue.done(&key);
    }
}

fn job_changed(ctx: &Ctx, change: &Change<'_, Job>) {
    match change {
        Change::Added(job) => ctx.queue.add(meta_key(&job.metadata)),
        Change::Updated { old, new } => {
            if old.metadata.generation == new.metadata.generation {
                ctx.enqueue_batched(new);
            } else {
                ctx.queue.add(meta_key(&new.metadata));
            }
            if is_finished(new) {
                // Normally the sync that finished the Job removed them; this is the backup.
                cleanup_pod_finalizers(ctx, new);
            }
            let start = new.status.as_ref().and_then(|s| s.start_time.as_ref());
            let ads = new.spec.as_ref().and_then(|s| s.active_deadline_seconds);
            let old_ads = old.spec.as_ref().and_then(|s| s.active_deadline_seconds);
            if let (Some(start), Some(ads)) = (start, ads) {
                if old_ads != Some(ads) {
                    let total = Duration::from_secs(u64::try_from(ads).unwrap_or(0));
                    let passed = k8s_openapi::jiff::Timestamp::now().duration_since(start.0);
                    let passed = Duration::try_from(passed).unwrap_or(Duration::ZERO);
                    ctx.queue
                        .add_after(meta_key(&new.metadata), total.saturating_sub(passed));
                }
            }
        }
        Change::Deleted(job) => {
            ctx.queue.add(meta_key(&job.metadata));
            cleanup_pod_finalizers(ctx, job);
        }
    }
}

/// Queues the Job's pods that still carry the tracking finalizer for its removal.
fn cleanup_pod_finalizers(ctx: &Ctx, job: &Job) {
    let uid = job.metadata.uid.as_deref().unwrap_or("");
    for pod in ctx.pods.controlled_by(uid) {
        if has_tracking_finalizer(&pod) {
            ctx.orphan_queue.add(meta_key(&pod.metadata));
        }
    }
}

fn pod_changed(ctx: &Ctx, change: &Change<'_, Pod>) {
    match change {
        Change::Added(pod) => {
            if pod.metadata.deletion_timestamp.is_some() {
                // A restarted informer can see a pod already being deleted.
                pod_deleted(ctx, pod, false);
                return;
            }
            let ns = pod.metadata.namespace.as_deref().unwrap_or("");
            if let Some(r) = controller_of(&pod.metadata) {
                if let Some(job) = ctx.resolve(ns, r) {
                    ctx.expectations.creation_observed(&meta_key(&job.metadata));
                    ctx.enqueue_batched(&job);
                }
                return;
            }
            if has_tracking_finalizer(pod) {
                ctx.orphan_queue.add(meta_key(&pod.metadata));
            }
            for job in ctx.matching_jobs(pod) {
                ctx.enqueue_batched(&job);
            }
        }
        Change::Updated { old, new } => {
            if old.metadata.resource_version == new.metadata.resource_version {
                return;
            }
            if new.metadata.deletion_timestamp.is_some() {
                // Replace a pod as soon as its graceful deletion starts.
                pod_deleted(ctx, new, false);
                return;
            }
            let ns = new.metadata.namespace.as_deref().unwrap_or("");
            let uid = new.metadata.uid.as_deref().unwrap_or("");
            let finalizer_removed = !has_tracking_finalizer(new);
            let (cur_ref, old_ref) = (controller_of(&new.metadata), controller_of(&old.metadata));
            if cur_ref != old_ref {
                if let Some(job) = old_ref.and_then(|r| ctx.resolve(ns, r)) {
                    if finalizer_removed {
                        ctx.finalizer_expectations
                            .observed(&meta_key(&job.metadata), uid);
                    }
                    ctx.enqueue_batched(&job);
                }
            }
            if let Some(r) = cur_ref {
                if let Some(job) = ctx.resolve(ns, r) {
                    if finalizer_removed {
                        ctx.finalizer_expectations
                            .observed(&meta_key(&job.metadata), uid);
                    }
                    ctx.enqueue_batched(&job);
                }
                return;
            }
            if has_tracking_finalizer(new) {
                ctx.orphan_queue.add(meta_key(&new.metadata));
            }
            if old.metadata.labels != new.metadata.labels || cur_ref != old_ref {
                for job in ctx.matching_jobs(new) {
                    ctx.enqueue_batched(&job);
                }
            }
        }
        Change::Deleted(pod) => pod_deleted(ctx, pod, true),
    }
}

/// A pod is gone (`last`) or going: lower expectations and wake its Job.
fn pod_deleted(ctx: &Ctx, pod: &Pod, last: bool) {
    let has_finalizer = has_tracking_finalizer(pod);
    let Some(r) = controller_of(&pod.metadata) else {
        if has_finalizer {
            ctx.orphan_queue.add(meta_key(&pod.metadata));
        }
        return;
    };
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let job = ctx.resolve(ns, r).filter(|j| !is_finished(j));
    let Some(job) = job else {
        // No sync will remove this finalizer.
        if has_finalizer {
            ctx.orphan_queue.add(meta_key(&pod.metadata));
        }
        return;
    };
    let key = meta_key(&job.metadata);
    ctx.expectations
        .deletion_observed(&key, &meta_key(&pod.metadata));
    if last || !has_finalizer {
        ctx.finalizer_expectations
            .observed(&key, pod.metadata.uid.as_deref().unwrap_or(""));
    }
    ctx.enqueue_batched(&job);
}

/// Removes the tracking finalizer from a pod no unfinished Job owns (upstream
/// `syncOrphanPod`).
async fn sync_orphan_pod(ctx: &Ctx, key: &str) -> Result<(), Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let Some(pod) = ctx.pods.get(ns, name) else {
        return Ok(());
    };
    if let Some(r) = controller_of(&pod.metadata) {
        if r.kind != "Job" || r.api_version != "batch/v1" {
            return Ok(());
        }
        if let Some(job) = ctx.resolve(ns, r) {
            if managed_externally(&job).is_some() || !is_finished(&job) {
                // Adopted again, or someone else's to clean.
                return Ok(());
            }
        }
    }
    remove_tracking_finalizer(&ctx.client, &pod).await?;
    Ok(())
}

/// Patches the tracking finalizer away; a pod already gone counts as done.
pub(crate) async fn remove_tracking_finalizer(
    client: &Client,
    pod: &Pod,
) -> Result<(), kube::Error> {
    if !has_tracking_finalizer(pod) {
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or(""),
    );
    let patch =
        json!({"metadata": {"$deleteFromPrimitiveList/finalizers": [JOB_TRACKING_FINALIZER]}});
    match api
        .patch(
            pod.metadata.name.as_deref().unwrap_or(""),
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The pods the Job owns, after adopting matching orphans (with the tracking
/// finalizer, as upstream's ref manager does for Jobs) and releasing owned pods that
/// stopped matching.
async fn pods_for_job(ctx: &Ctx, job: &Job) -> Result<Vec<Arc<Pod>>, Error> {
    let meta = &job.metadata;
    let ns = meta.namespace.as_deref().unwrap_or("");
    let uid = meta.uid.as_deref().unwrap_or("");
    let selector =
        match LabelSelector::from_metav1_opt(job.spec.as_ref().and_then(|s| s.selector.as_ref())) {
            Ok(s) => s,
            Err(e) => return Err(Error::Manage(format!("couldn't convert Job selector: {e}"))),
        };
    let mut candidates = ctx.pods.controlled_by(uid);
    candidates.extend(ctx.pods.orphans_in(ns));
    let owner_ref = crate::controller_utils::controller_ref(meta, "batch/v1", "Job");
    let deleting = meta.deletion_timestamp.is_some();
    let mut checked = false;
    let mut claimed = Vec::new();
    for pod in candidates {
        let matches = selector.matches(&pod.metadata.labels.clone().unwrap_or_default());
        match controller_of(&pod.metadata) {
            Some(r) if r.uid != uid => {}
            Some(_) => {
                if matches {
                    claimed.push(pod);
                } else if !deleting {
                    match release::<Pod>(&ctx.client, &pod.metadata, uid).await {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(ClaimError::Api(e).into()),
                    }
                }
            }
            None => {
                if deleting || !matches || pod.metadata.deletion_timestamp.is_some() {
                    continue;
                }
                if !checked {
                    let fresh = Api::<Job>::namespaced(ctx.client.clone(), ns)
                        .get(meta.name.as_deref().unwrap_or(""))
                        .await
                        .map_err(ClaimError::Api)?;
                    recheck_deletion_timestamp(meta, &fresh.metadata, "Job")?;
                    checked = true;
                }
                match adopt_with_finalizer(&ctx.client, &pod.metadata, &owner_ref).await {
                    Ok(p) => claimed.push(Arc::new(p)),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(ClaimError::Api(e).into()),
                }
            }
        }
    }
    Ok(claimed)
}

async fn adopt_with_finalizer(
    client: &Client,
    meta: &ObjectMeta,
    owner_ref: &OwnerReference,
) -> Result<Pod, kube::Error> {
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_ref.uid);
    refs.push(owner_ref.clone());
    let mut finalizers = meta.finalizers.clone().unwrap_or_default();
    if !finalizers.iter().any(|f| f == JOB_TRACKING_FINALIZER) {
        finalizers.push(JOB_TRACKING_FINALIZER.to_string());
    }
    let ops = json!([
        {"op": "test", "path": "/metadata/uid", "value": meta.uid.clone().unwrap_or_default()},
        {"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version.clone().unwrap_or_default()},
        {"op": "add", "path": "/metadata/ownerReferences", "value": refs},
        {"op": "add", "path": "/metadata/finalizers", "value": finalizers},
    ]);
    let api: Api<Pod> = Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or(""));
    json_patch(client, &api, meta.name.as_deref().unwrap_or(""), &ops).await
}
