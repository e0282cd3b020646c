//! One sync of one Job (upstream `syncJob`): count newly finished pods, decide whether
//! the Job has met its success criteria or must fail, otherwise let [`super::manage`]
//! create or delete pods, then hand over to [`super::tracking`] to write status and
//! remove finalizers.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::runtime::events::EventType;
use kube::Resource;

use super::backoff::BackoffRecord;
use super::indexed::{self, OrderedIntervals};
use super::manage::{delete_active_pods, manage_job};
use super::pod_failure_policy::{match_pod_failure_policy, Outcome};
use super::tracking::track_job_status_and_remove_finalizers;
use super::{has_tracking_finalizer, is_finished, managed_externally, pods_for_job, Ctx, Error};
use crate::controller_utils::{is_pod_active, is_pod_ready};

/// Everything one sync works with; `job` is a private copy whose status is rewritten.
pub(super) struct JobCtx {
    pub key: String,
    pub job: Job,
    pub pods: Vec<Arc<Pod>>,
    pub active_pods: Vec<Arc<Pod>>,
    pub finished_condition: Option<JobCondition>,
    pub succeeded: i32,
    pub failed: i32,
    pub prev_succeeded_indexes: OrderedIntervals,
    pub succeeded_indexes: OrderedIntervals,
    pub new_backoff_record: BackoffRecord,
    pub expected_rm_finalizers: HashSet<String>,
    pub uncounted_succeeded: HashSet<String>,
    pub uncounted_failed: HashSet<String>,
    pub terminating: i32,
    pub ready: i32,
}

pub(super) fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn uid(p: &Pod) -> &str {
    p.metadata.uid.as_deref().unwrap_or("")
}

pub(super) fn is_suspended(job: &Job) -> bool {
    job.spec.as_ref().and_then(|s| s.suspend) == Some(true)
}

fn completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

/// Only `Failed` pods are replaced (not terminating ones): `podReplacementPolicy:
/// Failed`, implied by a pod failure policy.
pub(super) fn only_replace_failed_pods(job: &Job) -> bool {
    let spec = job.spec.as_ref();
    spec.and_then(|s| s.pod_replacement_policy.as_deref()) == Some("Failed")
        || spec.is_some_and(|s| s.pod_failure_policy.is_some())
}

/// A failed pod, or (unless only failed pods are replaced) one deleted before it
/// succeeded — orphans that never reach a terminal phase count this way.
pub(super) fn is_pod_failed(p: &Pod, job: &Job) -> bool {
    if phase(p) == "Failed" {
        return true;
    }
    if only_replace_failed_pods(job) {
        return false;
    }
    p.metadata.deletion_timestamp.is_some() && phase(p) != "Succeeded"
}

/// Being deleted and not yet in a terminal phase (upstream `CountTerminatingPods`).
fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some() && !matches!(phase(p), "Succeeded" | "Failed")
}

pub(super) fn new_condition(
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> JobCondition {
    JobCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: (!reason.is_empty()).then(|| reason.to_string()),
        message: (!message.is_empty()).then(|| message.to_string()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(Time(now)),
    }
}

fn find_condition<'a>(job: &'a Job, type_: &str) -> Option<&'a JobCondition> {
    job.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Sets a condition's status, reason and message, appending it unless it would be
/// appended as `False` (upstream `ensureJobConditionStatus`). Returns whether it changed.
pub(super) fn ensure_condition(
    conditions: &mut Vec<JobCondition>,
    type_: &str,
    status: &str,
    reason: &str,
    message: &str,
    now: Timestamp,
) -> bool {
    if let Some(c) = conditions.iter_mut().find(|c| c.type_ == type_) {
        let same = c.status == status
            && c.reason.as_deref().unwrap_or("") == reason
            && c.message.as_deref().unwrap_or("") == message;
        if same {
            return false;
        }
        *c = new_condition(type_, status, reason, message, now);
        return true;
    }
    if status == "False" {
        return false;
    }
    conditions.push(new_condition(type_, status, reason, message, now));
    true
}

/// Restarts of containers in live pods, for `restartPolicy: OnFailure` (upstream
/// `pastBackoffLimitOnFailure`).
fn past_backoff_limit_on_failure(job: &Job, pods: &[Arc<Pod>]) -> bool {
    let spec = job.spec.clone().unwrap_or_default();
    let restart = spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref());
    if restart != Some("OnFailure") {
        return false;
    }
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(phase(p), "Running" | "Pending"))
        .filter_map(|p| p.status.as_ref())
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .map(|c| i64::from(c.restart_count))
        .sum();
    let limit = i64::from(spec.backoff_limit.unwrap_or(6));
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

/// Time left before `activeDeadlineSeconds` runs out; `None` without a deadline, while
/// suspended, or before the Job started.
pub(super) fn active_deadline_left(job: &Job, now: Timestamp) -> Option<Duration> {
    let ads = job.spec.as_ref()?.active_deadline_seconds?;
    if is_suspended(job) {
        return None;
    }
    let start = job.status.as_ref()?.start_time.as_ref()?.0;
    let allowed = Duration::from_secs(u64::try_from(ads).unwrap_or(0));
    let elapsed = if now > start {
        Duration::try_from(now.duration_since(start)).unwrap_or(Duration::ZERO)
    } else {
        Duration::ZERO
    };
    Some(allowed.saturating_sub(elapsed))
}

/// Newly finished pods not yet in the status counters nor in the uncounted lists.
fn new_finished_pods(jc: &JobCtx) -> (Vec<Arc<Pod>>, Vec<Arc<Pod>>) {
    let indexed = indexed::is_indexed(&jc.job);
    let completions = completions(&jc.job).unwrap_or(0);
    let valid = |p: &Pod, uncounted: &HashSet<String>| {
        if !has_tracking_finalizer(p)
            || uncounted.contains(uid(p))
            || jc.expected_rm_finalizers.contains(uid(p))
        {
            return false;
        }
        !indexed
            || indexed::completion_index(p).is_some_and(|ix| (ix as i64) < i64::from(completions))
    };
    let succeeded = jc
        .pods
        .iter()
        .filter(|p| valid(p, &jc.uncounted_succeeded) && phase(p) == "Succeeded")
        .cloned()
        .collect();
    let failed = jc
        .pods
        .iter()
        .filter(|p| valid(p, &jc.uncounted_failed) && is_pod_failed(p, &jc.job))
        .cloned()
        .collect();
    (succeeded, failed)
}

pub(super) async fn sync_job(ctx: &Ctx, key: &str) -> Result<(), Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let Some(shared) = ctx.jobs.get(ns, name) else {
        tracing::debug!(job = %key, "job has been deleted");
        ctx.expectations.delete(key);
        ctx.finalizer_expectations.delete(key);
        ctx.backoff.remove(key);
        return Ok(());
    };
    if let Some(by) = managed_externally(&shared) {
        tracing::debug!(job = %key, managed_by = by, "skipping job managed by another controller");
        return Ok(());
    }
    if is_finished(&shared) {
        ctx.backoff.remove(key);
        return Ok(());
    }
    let job: Job = (*shared).clone();
    let mode = job.spec.as_ref().and_then(|s| s.completion_mode.as_deref());
    if mode.is_some_and(|m| m != "NonIndexed" && m != "Indexed") {
        ctx.recorder
            .publish(
                &job.object_ref(&()),
                EventType::Warning,
                "UnknownCompletionMode",
                "Sync",
                "Skipped Job sync because completion mode is unknown".to_string(),
            )
            .await;
        return Ok(());
    }
    let now = Timestamp::now();

    // Expectations first: a pod that shows up after this check waits for the next sync.
    let satisfied = ctx.expectations.satisfied(key);
    let pods = pods_for_job(ctx, &job).await?;
    let active_pods: Vec<Arc<Pod>> = pods.iter().filter(|p| is_pod_active(p)).cloned().collect();
    let uncounted = job
        .status
        .as_ref()
        .and_then(|s| s.uncounted_terminated_pods.clone())
        .unwrap_or_default();
    let mut jc = JobCtx {
        key: key.to_string(),
        ready: count(active_pods.iter().filter(|p| is_pod_ready(p)).count()),
        terminating: count(pods.iter().filter(|p| is_terminating(p)).count()),
        uncounted_succeeded: uncounted
            .succeeded
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        uncounted_failed: uncounted
            .failed
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
        expected_rm_finalizers: ctx.finalizer_expectations.expected(key),
        pods,
        active_pods,
        job,
        finished_condition: None,
        succeeded: 0,
        failed: 0,
        prev_succeeded_indexes: OrderedIntervals::default(),
        succeeded_indexes: OrderedIntervals::default(),
        new_backoff_record: BackoffRecord::default(),
    };
    let status = jc.job.status.get_or_insert_with(Default::default);
    if status.uncounted_terminated_pods.is_none() {
        status.uncounted_terminated_pods = Some(UncountedTerminatedPods::default());
    }
    let (prev_succeeded, prev_failed) = (status.succeeded.unwrap_or(0), status.failed.unwrap_or(0));
    let mut active = count(jc.active_pods.len());
    let (new_succeeded, new_failed) = new_finished_pods(&jc);
    let policy = jc
        .job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.clone());
    let counted_failures = new_failed
        .iter()
        .filter(|p| match_pod_failure_policy(policy.as_ref(), p).counts())
        .count();
    jc.succeeded =
        prev_succeeded + count(new_succeeded.len()) + count(jc.uncounted_succeeded.len());
    jc.failed = prev_failed + count(counted_failures) + count(jc.uncounted_failed.len());

    // First start; a Job created suspended starts when resumed.
    if !is_suspended(&jc.job) {
        let status = jc.job.status.get_or_insert_with(Default::default);
        if status.start_time.is_none() {
            status.start_time = Some(Time(now));
        }
    }
    jc.new_backoff_record = ctx.backoff.next_record(key, &new_succeeded, &new_failed);

    let spec = jc.job.spec.clone().unwrap_or_default();
    let backoff_limit = spec.backoff_limit.unwrap_or(6);
    jc.finished_condition = find_condition(&jc.job, "SuccessCriteriaMet")
        .filter(|c| c.status == "True")
        .cloned();
    if jc.finished_condition.is_none() {
        if let Some(target) =
            find_condition(&jc.job, "FailureTarget").filter(|c| c.status == "True")
        {
            jc.finished_condition = Some(new_condition(
                "Failed",
                "True",
                target.reason.as_deref().unwrap_or(""),
                target.message.as_deref().unwrap_or(""),
                now,
            ));
        } else if let Some(msg) = fail_job_message(&jc.job, &jc.pods) {
            jc.finished_condition = Some(new_condition(
                "FailureTarget",
                "True",
                "PodFailurePolicy",
                &msg,
                now,
            ));
        }
    }
    if jc.finished_condition.is_none() {
        if jc.failed > backoff_limit || past_backoff_limit_on_failure(&jc.job, &jc.pods) {
            jc.finished_condition = Some(new_condition(
                "FailureTarget",
                "True",
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
                now,
            ));
        } else if let Some(left) = active_deadline_left(&jc.job, now) {
            if left.is_zero() {
                jc.finished_condition = Some(new_condition(
                    "FailureTarget",
                    "True",
                    "DeadlineExceeded",
                    "Job was active longer than specified deadline",
                    now,
                ));
            } else {
                tracing::debug!(job = %key, next_sync_in = ?left, "job has activeDeadlineSeconds; will sync again");
                ctx.queue.add_after(key.to_string(), left);
            }
        }
    }

    if indexed::is_indexed(&jc.job) {
        let completions = usize::try_from(spec.completions.unwrap_or(0).max(0)).unwrap_or(0);
        let done = jc
            .job
            .status
            .as_ref()
            .and_then(|s| s.completed_indexes.clone())
            .unwrap_or_default();
        let (prev, all) = indexed::calculate_succeeded_indexes(&done, completions, &jc.pods);
        jc.succeeded = count(all.total());
        jc.prev_succeeded_indexes = prev;
        jc.succeeded_indexes = all;
        if jc.finished_condition.is_none() {
            if let Some(msg) = match_success_policy(&spec, completions, &jc.succeeded_indexes) {
                jc.finished_condition = Some(new_condition(
                    "SuccessCriteriaMet",
                    "True",
                    "SuccessPolicy",
                    &msg,
                    now,
                ));
            }
        }
    }

    let mut manage_err = None;
    let mut suspend_changed = false;
    if jc.finished_condition.is_some() {
        let active_pods = jc.active_pods.clone();
        let (deleted_ready, deleted, err) = delete_active_pods(ctx, &jc.job, &active_pods).await;
        if deleted != active || !satisfied {
            // Pods left, or some not yet in the cache: finish on a later sync.
            jc.finished_condition = None;
        }
        active -= deleted;
        jc.terminating += deleted;
        jc.ready -= deleted_ready;
        manage_err = err;
    } else {
        let mut managed = false;
        if satisfied && jc.job.metadata.deletion_timestamp.is_none() {
            let (a, err) = manage_job(ctx, &mut jc, now).await;
            active = a;
            manage_err = err;
            managed = true;
        }
        let complete = match spec.completions {
            // Any success finishes the Job once the rest have stopped.
            None => jc.succeeded > 0 && active == 0,
            Some(c) => jc.succeeded >= c && active == 0,
        };
        if complete {
            jc.finished_condition = Some(new_condition(
                "SuccessCriteriaMet",
                "True",
                "CompletionsReached",
                "Reached expected number of succeeded pods",
                now,
            ));
        } else if managed {
            suspend_changed = update_suspended_condition(ctx, &mut jc.job, now).await;
        }
    }

    let status = jc.job.status.get_or_insert_with(Default::default);
    let needs_update = suspend_changed
        || status.active.unwrap_or(0) != active
        || status.ready != Some(jc.ready)
        || status.terminating != Some(jc.terminating);
    status.active = Some(active);
    status.ready = Some(jc.ready);
    status.terminating = Some(jc.terminating);
    track_job_status_and_remove_finalizers(ctx, &mut jc, needs_update, now).await?;
    match manage_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// The `Suspended` condition and its events; resuming restarts the deadline clock.
async fn update_suspended_condition(ctx: &Ctx, job: &mut Job, now: Timestamp) -> bool {
    let suspended = is_suspended(job);
    let status = job.status.get_or_insert_with(Default::default);
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    let changed = if suspended {
        ensure_condition(
            conditions,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        )
    } else {
        ensure_condition(
            conditions,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        )
    };
    if conditions.is_empty() {
        status.conditions = None;
    }
    if !changed {
        return false;
    }
    if suspended {
        publish(
            ctx,
            job,
            EventType::Normal,
            "Suspended",
            "Job suspended".into(),
        )
        .await;
    } else {
        // activeDeadlineSeconds counts continuous activity.
        job.status.get_or_insert_with(Default::default).start_time = Some(Time(now));
        publish(ctx, job, EventType::Normal, "Resumed", "Job resumed".into()).await;
    }
    true
}

pub(super) async fn publish(ctx: &Ctx, job: &Job, type_: EventType, reason: &str, note: String) {
    ctx.recorder
        .publish(&job.object_ref(&()), type_, reason, "Sync", note)
        .await;
}

/// The message of the first failed pod that matches a `FailJob` rule.
fn fail_job_message(job: &Job, pods: &[Arc<Pod>]) -> Option<String> {
    let policy = job.spec.as_ref()?.pod_failure_policy.as_ref()?;
    pods.iter().filter(|p| is_pod_failed(p, job)).find_map(|p| {
        match match_pod_failure_policy(Some(policy), p) {
            Outcome::FailJob(msg) => Some(msg),
            _ => None,
        }
    })
}

/// `spec.successPolicy` (Indexed Jobs): the message naming the first rule met.
fn match_success_policy(
    spec: &k8s_openapi::api::batch::v1::JobSpec,
    completions: usize,
    succeeded: &OrderedIntervals,
) -> Option<String> {
    let policy = spec.success_policy.as_ref()?;
    if succeeded.total() == 0 {
        return None;
    }
    let at_least =
        |c: Option<i32>, n: usize| c.is_some_and(|c| n >= usize::try_from(c.max(0)).unwrap_or(0));
    for (index, rule) in policy.rules.iter().enumerate() {
        let met = match &rule.succeeded_indexes {
            Some(ixs) => {
                let wanted = OrderedIntervals::parse(ixs, completions);
                if wanted.total() == 0 {
                    continue;
                }
                let hit = wanted
                    .0
                    .iter()
                    .flat_map(|iv| iv.first..=iv.last)
                    .filter(|ix| succeeded.has(*ix))
                    .count();
                hit == wanted.total() || at_least(rule.succeeded_count, hit)
            }
            None => at_least(rule.succeeded_count, succeeded.total()),
        };
        if met {
            return Some(format!("Matched rules at index {index}"));
        }
    }
    None
}
