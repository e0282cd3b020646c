//! The CronJob controller (upstream `pkg/controller/cronjob`, the v2 controller):
//! creates a Job named `<cronjob>-<minutes since epoch>` for each activation of the
//! schedule ([`schedule`]), honouring `suspend`, `timeZone`, `concurrencyPolicy`
//! (Allow/Forbid/Replace) and `startingDeadlineSeconds` ([`utils::decide`]), keeps
//! `status.active`, `lastScheduleTime` and `lastSuccessfulTime`, and deletes finished
//! Jobs beyond `successfulJobsHistoryLimit`/`failedJobsHistoryLimit`.
//!
//! There is no polling: every sync ends by queueing the CronJob again for just after
//! its next activation; Job changes and CronJob edits queue it at once. Time comes from
//! the controller's [`Clock`], so tests can run a schedule faster than real time.

pub mod schedule;
pub mod utils;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, PostParams, PropagationPolicy};
use kube::runtime::events::EventType;
use kube::{Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::clock::Clock;
use crate::controller_utils::{
    is_already_exists, is_namespace_terminating, is_not_found, meta_key, EventRecorder,
};
use crate::informer::{controller_of, Cache, Change, InformerFactory};
use crate::options::ControllerOptions;
use crate::replicaset::group_of;
use crate::workqueue::WorkQueue;
use schedule::{load_location, parse_standard, Schedule};
use utils::{
    decide, finished_type, job_from_template, next_schedule_time_duration, oldest_beyond_limit,
    rfc1123z, Decision,
};

const CONTROLLER_NAME: &str = "cronjob-controller";
/// Concurrent syncs (upstream `--concurrent-cron-job-syncs` default).
const WORKERS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("{0}")]
    Replace(String),
}

struct Ctx {
    client: Client,
    cronjobs: Cache<CronJob>,
    jobs: Cache<Job>,
    queue: Arc<WorkQueue<String>>,
    recorder: EventRecorder,
    clock: Clock,
    /// When each CronJob's pending timed requeue fires, so every sync asking for the
    /// same next activation does not start another timer.
    wakeups: Mutex<HashMap<String, Instant>>,
}

impl Ctx {
    fn requeue_after(&self, key: String, d: Duration) {
        let real = self.clock.real_duration(d);
        let now = Instant::now();
        let at = now + real;
        {
            let mut wakeups = self
                .wakeups
                .lock()
                .expect("invariant: wakeups lock is never poisoned");
            if wakeups.get(&key).is_some_and(|w| *w > now && *w <= at) {
                // An earlier wakeup is pending; its sync asks again.
                return;
            }
            wakeups.insert(key.clone(), at);
        }
        self.queue.add_after(key, real);
    }

    fn resolve(&self, ns: &str, job: &Job) -> Option<Arc<CronJob>> {
        let r = controller_of(&job.metadata)?;
        if r.kind != "CronJob" || group_of(&r.api_version) != "batch" {
            return None;
        }
        let cj = self.cronjobs.get(ns, &r.name)?;
        (cj.metadata.uid.as_deref() == Some(r.uid.as_str())).then_some(cj)
    }

    async fn event(&self, cj: &CronJob, type_: EventType, reason: &str, note: String) {
        self.recorder
            .publish(&cj.object_ref(&()), type_, reason, "Sync", note)
            .await;
    }
}

/// The schedule as the controller reads it: `TZ=<timeZone>` in front when the
/// CronJob names a zone that loads (upstream `formatSchedule`).
fn format_schedule(cj: &CronJob) -> String {
    let spec = cj.spec.clone().unwrap_or_default();
    if spec.schedule.contains("TZ") {
        return spec.schedule;
    }
    match spec.time_zone {
        Some(tz) if load_location(&tz).is_ok() => format!("TZ={tz} {}", spec.schedule),
        _ => spec.schedule,
    }
}

/// The CronJob controller, wired to shared informers.
pub struct CronJobController {
    ctx: Arc<Ctx>,
}

impl CronJobController {
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        options: &ControllerOptions,
        cancel: &CancellationToken,
    ) -> Self {
        let ctx = Arc::new(Ctx {
            recorder: EventRecorder::new(client.clone(), CONTROLLER_NAME),
            client,
            cronjobs: informers.informer::<CronJob>().cache(),
            jobs: informers.informer::<Job>().cache(),
            queue: WorkQueue::new(cancel.clone()),
            clock: options.clock.clone(),
            wakeups: Mutex::new(HashMap::new()),
        });
        {
            let ctx = ctx.clone();
            informers
                .informer::<CronJob>()
                .add_handler(move |change| cronjob_changed(&ctx, change));
        }
        {
            let ctx = ctx.clone();
            informers.informer::<Job>().add_handler(move |change| {
                let (job, old) = match change {
                    Change::Added(j) | Change::Deleted(j) => (*j, None),
                    Change::Updated { old, new } => {
                        if old.metadata.resource_version == new.metadata.resource_version {
                            return;
                        }
                        (*new, Some(*old))
                    }
                };
                let ns = job.metadata.namespace.as_deref().unwrap_or("");
                for j in std::iter::once(job).chain(old) {
                    if let Some(cj) = ctx.resolve(ns, j) {
                        ctx.queue.add(meta_key(&cj.metadata));
                    }
                }
            });
        }
        CronJobController { ctx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async { ctx.cronjobs.wait_until_ready().await; ctx.jobs.wait_until_ready().await } => {}
        }
        tracing::info!(controller = CONTROLLER_NAME, "starting");
        let workers: Vec<_> = (0..WORKERS)
            .map(|_| tokio::spawn(worker(ctx.clone())))
            .collect();
        for w in workers {
            let _ = w.await;
        }
    }
}

fn cronjob_changed(ctx: &Arc<Ctx>, change: &Change<'_, CronJob>) {
    match change {
        Change::Added(cj) => ctx.queue.add(meta_key(&cj.metadata)),
        Change::Deleted(cj) => {
            let key = meta_key(&cj.metadata);
            ctx.wakeups
                .lock()
                .expect("invariant: wakeups lock is never poisoned")
                .remove(&key);
            ctx.queue.add(key);
        }
        Change::Updated { old, new } => {
            let (os, ns) = (
                old.spec.clone().unwrap_or_default(),
                new.spec.clone().unwrap_or_default(),
            );
            if os.schedule == ns.schedule && os.time_zone == ns.time_zone {
                ctx.queue.add(meta_key(&new.metadata));
                return;
            }
            // A new schedule takes effect at its next activation, not at once.
            match parse_standard(&format_schedule(new)) {
                Ok(s) => {
                    let d = next_schedule_time_duration(new, ctx.clock.now(), &s);
                    ctx.requeue_after(meta_key(&new.metadata), d);
                }
                Err(e) => {
                    tracing::debug!(cronjob = %meta_key(&new.metadata), error = %e, "unparseable schedule");
                    let (ctx, cj) = (ctx.clone(), (*new).clone());
                    tokio::spawn(async move {
                        let note = format!("unparseable schedule for cronjob: {}", ns.schedule);
                        ctx.event(&cj, EventType::Warning, "UnParseableCronJobSchedule", note)
                            .await;
                    });
                }
            }
        }
    }
}

async fn worker(ctx: Arc<Ctx>) {
    while let Some(key) = ctx.queue.get().await {
        let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %key);
        match sync(&ctx, &key).instrument(span).await {
            Ok(requeue) => {
                ctx.queue.forget(&key);
                if let Some(d) = requeue {
                    tracing::trace!(cronjob = %key, ?d, "requeue");
                    ctx.requeue_after(key.clone(), d);
                }
            }
            Err(e) => {
                tracing::debug!(controller = CONTROLLER_NAME, object = %key, error = %e, "sync failed; requeued");
                ctx.queue.add_rate_limited(key.clone());
            }
        }
        ctx.queue.done(&key);
    }
}

fn in_active(cj: &CronJob, uid: &str) -> bool {
    cj.status
        .as_ref()
        .and_then(|s| s.active.as_ref())
        .is_some_and(|a| a.iter().any(|r| r.uid.as_deref() == Some(uid)))
}

fn remove_from_active(cj: &mut CronJob, uid: &str) {
    if let Some(active) = cj.status.as_mut().and_then(|s| s.active.as_mut()) {
        active.retain(|r| r.uid.as_deref() != Some(uid));
    }
}

fn job_ref(job: &Job) -> ObjectReference {
    ObjectReference {
        api_version: Some("batch/v1".into()),
        kind: Some("Job".into()),
        name: job.metadata.name.clone(),
        namespace: job.metadata.namespace.clone(),
        uid: job.metadata.uid.clone(),
        resource_version: job.metadata.resource_version.clone(),
        field_path: None,
    }
}

/// One sync; returns when to look again (`None`: only on a change).
async fn sync(ctx: &Ctx, key: &str) -> Result<Option<Duration>, Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let Some(shared) = ctx.cronjobs.get(ns, name) else {
        tracing::debug!(cronjob = %key, "cronjob not found; it may have been deleted");
        return Ok(None);
    };
    let uid = shared.metadata.uid.clone().unwrap_or_default();
    let jobs: Vec<Arc<Job>> = ctx.jobs.controlled_by(&uid);
    let mut cj: CronJob = (*shared).clone();
    let mut update = cleanup_finished_jobs(ctx, &mut cj, &jobs).await;
    let (requeue, changed, sync_err) = sync_cronjob(ctx, &mut cj, &jobs).await;
    update |= changed;
    if let Some(e) = &sync_err {
        tracing::debug!(cronjob = %key, error = %e, "error reconciling cronjob");
    }
    if update {
        let api: Api<CronJob> = Api::namespaced(ctx.client.clone(), ns);
        api.replace_status(name, &PostParams::default(), &cj)
            .await?;
    }
    match (requeue, sync_err) {
        (Some(d), _) => Ok(Some(d)),
        (None, Some(e)) => Err(e),
        (None, None) => Ok(None),
    }
}

/// Reconciles the active list with the Jobs, then starts the due activation.
/// Returns (requeue, status changed, error).
async fn sync_cronjob(
    ctx: &Ctx,
    cj: &mut CronJob,
    jobs: &[Arc<Job>],
) -> (Option<Duration>, bool, Option<Error>) {
    let now = ctx.clock.now();
    let mut update = false;
    let ns = cj.namespace().unwrap_or_default();
    let api_cj: Api<CronJob> = Api::namespaced(ctx.client.clone(), &ns);
    let api_jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);

    for j in jobs {
        let juid = j.metadata.uid.clone().unwrap_or_default();
        let found = in_active(cj, &juid);
        let finished = finished_type(j);
        if !found && finished.is_none() {
            // Maybe our own status write is not in the cache yet: ask the API.
            match api_cj.get(&cj.name_any()).await {
                Ok(fresh) if in_active(&fresh, &juid) => {
                    *cj = fresh;
                    continue;
                }
                Ok(_) => {}
                Err(e) => return (None, update, Some(e.into())),
            }
            let note = format!(
                "Saw a job that the controller did not create or forgot: {}",
                j.name_any()
            );
            ctx.event(cj, EventType::Warning, "UnexpectedJob", note)
                .await;
        } else if let Some(cond) = finished {
            if found {
                remove_from_active(cj, &juid);
                let note = format!("Saw completed job: {}, condition: {cond}", j.name_any());
                ctx.event(cj, EventType::Normal, "SawCompletedJob", note)
                    .await;
                update = true;
            }
            if cond == "Complete" {
                let completed = j.status.as_ref().and_then(|s| s.completion_time.clone());
                let status = cj.status.get_or_insert_with(Default::default);
                let newer = match (&status.last_successful_time, &completed) {
                    (None, _) => true,
                    (Some(last), Some(c)) => c.0 > last.0,
                    (Some(_), None) => false,
                };
                if newer {
                    status.last_successful_time = completed;
                    update = true;
                }
            }
        }
    }

    // Active Jobs that are gone (checked against the API, the cache may lag).
    let children: std::collections::HashSet<String> =
        jobs.iter().filter_map(|j| j.metadata.uid.clone()).collect();
    let active = cj
        .status
        .as_ref()
        .and_then(|s| s.active.clone())
        .unwrap_or_default();
    for r in active {
        if r.uid.as_ref().is_some_and(|u| children.contains(u)) {
            continue;
        }
        match api_jobs.get(r.name.as_deref().unwrap_or("")).await {
            Err(e) if is_not_found(&e) => {
                let note = format!(
                    "Active job went missing: {}",
                    r.name.clone().unwrap_or_default()
                );
                ctx.event(cj, EventType::Normal, "MissingJob", note).await;
                remove_from_active(cj, r.uid.as_deref().unwrap_or(""));
                update = true;
            }
            Err(e) => return (None, update, Some(e.into())),
            Ok(_) => {}
        }
    }

    if cj.metadata.deletion_timestamp.is_some() {
        return (None, update, None);
    }
    let spec = cj.spec.clone().unwrap_or_default();
    if let Some(tz) = &spec.time_zone {
        if let Err(e) = load_location(tz) {
            tracing::debug!(cronjob = %meta_key(&cj.metadata), time_zone = %tz, "not starting job: invalid timeZone");
            ctx.event(
                cj,
                EventType::Warning,
                "UnknownTimeZone",
                format!("invalid timeZone: {tz:?}: {e}"),
            )
            .await;
            return (None, update, None);
        }
    }
    if spec.suspend == Some(true) {
        tracing::debug!(cronjob = %meta_key(&cj.metadata), "not starting job: suspended");
        return (None, update, None);
    }
    if spec.schedule.contains("TZ") {
        let note = format!(
            "CRON_TZ or TZ used in schedule {:?} is not officially supported, see https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/ for more details",
            spec.schedule
        );
        ctx.event(cj, EventType::Warning, "UnsupportedSchedule", note)
            .await;
    }
    let sched: Schedule = match parse_standard(&format_schedule(cj)) {
        Ok(s) => s,
        Err(e) => {
            let note = format!("unparseable schedule: {:?} : {e}", spec.schedule);
            ctx.event(cj, EventType::Warning, "UnparseableSchedule", note)
                .await;
            return (None, update, None);
        }
    };
    let (decision, many_missed) = decide(cj, now, &sched);
    if many_missed {
        let note = "too many missed start times. Set or decrease .spec.startingDeadlineSeconds or check clock skew".to_string();
        ctx.event(cj, EventType::Warning, "TooManyMissedTimes", note)
            .await;
    }
    let decision = match decision {
        Ok(d) => d,
        Err(e) => {
            let note = format!("invalid schedule: {} : {e}", spec.schedule);
            ctx.event(cj, EventType::Warning, "InvalidSchedule", note)
                .await;
            return (None, update, None);
        }
    };
    let (scheduled, replace, requeue) = match decision {
        Decision::Wait(d) | Decision::AlreadyStarted(d) => return (Some(d), update, None),
        Decision::TooLate { scheduled, requeue } => {
            let note = format!(
                "Missed scheduled time to start a job: {}",
                rfc1123z(scheduled)
            );
            ctx.event(cj, EventType::Warning, "MissSchedule", note)
                .await;
            return (Some(requeue), update, None);
        }
        Decision::ForbiddenByActive(d) => {
            let note = "Not starting job because prior execution is running and concurrency policy is Forbid".to_string();
            ctx.event(cj, EventType::Normal, "JobAlreadyActive", note)
                .await;
            return (Some(d), update, None);
        }
        Decision::Start {
            scheduled,
            replace,
            requeue,
        } => (scheduled, replace, requeue),
    };
    if replace {
        let active = cj
            .status
            .as_ref()
            .and_then(|s| s.active.clone())
            .unwrap_or_default();
        for r in active {
            let job = match api_jobs.get(r.name.as_deref().unwrap_or("")).await {
                Ok(j) => j,
                Err(e) => {
                    ctx.event(cj, EventType::Warning, "FailedGet", format!("Get job: {e}"))
                        .await;
                    return (None, update, Some(e.into()));
                }
            };
            if !delete_job(ctx, cj, &job).await {
                let msg = format!("could not replace job {}/{}", ns, job.name_any());
                return (None, update, Some(Error::Replace(msg)));
            }
            update = true;
        }
    }

    let request = job_from_template(cj, scheduled, &sched);
    let created = match api_jobs.create(&PostParams::default(), &request).await {
        Ok(j) => {
            tracing::info!(cronjob = %meta_key(&cj.metadata), job = %j.name_any(), "created job");
            ctx.event(
                cj,
                EventType::Normal,
                "SuccessfulCreate",
                format!("Created job {}", j.name_any()),
            )
            .await;
            j
        }
        // The namespace is going away: any creation will fail.
        Err(e) if is_namespace_terminating(&e) => return (None, update, Some(e.into())),
        Err(e) if is_already_exists(&e) => {
            let existing = match api_jobs.get(&request.name_any()).await {
                Ok(j) => j,
                Err(e) => return (None, update, Some(e.into())),
            };
            // Someone else's Job of that name: assume its owner keeps the status.
            let ours = controller_of(&existing.metadata)
                .is_some_and(|r| Some(&r.uid) == cj.metadata.uid.as_ref());
            let juid = existing.metadata.uid.clone().unwrap_or_default();
            if !ours || in_active(cj, &juid) {
                return (None, update, None);
            }
            tracing::info!(cronjob = %meta_key(&cj.metadata), job = %existing.name_any(), "job already exists");
            existing
        }
        Err(e) => {
            ctx.event(
                cj,
                EventType::Warning,
                "FailedCreate",
                format!("Error creating job: {e}"),
            )
            .await;
            return (None, update, Some(e.into()));
        }
    };
    let status = cj.status.get_or_insert_with(Default::default);
    status
        .active
        .get_or_insert_with(Vec::new)
        .push(job_ref(&created));
    status.last_schedule_time = Some(Time(scheduled));
    (Some(requeue), true, None)
}

/// Deletes a Job and its pods (background) and drops it from the active list.
async fn delete_job(ctx: &Ctx, cj: &mut CronJob, job: &Job) -> bool {
    let api: Api<Job> = Api::namespaced(
        ctx.client.clone(),
        job.metadata.namespace.as_deref().unwrap_or(""),
    );
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Background),
        ..Default::default()
    };
    match api.delete(&job.name_any(), &params).await {
        Ok(_) => {}
        Err(e) => {
            ctx.event(
                cj,
                EventType::Warning,
                "FailedDelete",
                format!("Deleted job: {e}"),
            )
            .await;
            tracing::warn!(cronjob = %meta_key(&cj.metadata), job = %job.name_any(), error = %e, "error deleting job");
            return false;
        }
    }
    remove_from_active(cj, job.metadata.uid.as_deref().unwrap_or(""));
    ctx.event(
        cj,
        EventType::Normal,
        "SuccessfulDelete",
        format!("Deleted job {}", job.name_any()),
    )
    .await;
    true
}

/// Deletes finished Jobs beyond the history limits. Returns whether status changed.
async fn cleanup_finished_jobs(ctx: &Ctx, cj: &mut CronJob, jobs: &[Arc<Job>]) -> bool {
    let spec = cj.spec.clone().unwrap_or_default();
    if spec.successful_jobs_history_limit.is_none() && spec.failed_jobs_history_limit.is_none() {
        return false;
    }
    let succeeded: Vec<&Job> = jobs
        .iter()
        .map(|j| j.as_ref())
        .filter(|j| finished_type(j) == Some("Complete"))
        .collect();
    let failed: Vec<&Job> = jobs
        .iter()
        .map(|j| j.as_ref())
        .filter(|j| finished_type(j) == Some("Failed"))
        .collect();
    let mut update = false;
    let mut victims = Vec::new();
    if let Some(limit) = spec.successful_jobs_history_limit {
        victims.extend(oldest_beyond_limit(succeeded, limit));
    }
    if let Some(limit) = spec.failed_jobs_history_limit {
        victims.extend(oldest_beyond_limit(failed, limit));
    }
    for job in victims {
        tracing::debug!(cronjob = %meta_key(&cj.metadata), job = %job.name_any(), "removing job beyond history limit");
        if delete_job(ctx, cj, job).await {
            update = true;
        }
    }
    update
}
