//! Counting finished pods without losing or double-counting any (upstream
//! `trackJobStatusAndRemoveFinalizers` and `flushUncountedAndRemoveFinalizers`):
//!
//! 1. finished pods that still carry the tracking finalizer go into
//!    `status.uncountedTerminatedPods` (Indexed Jobs record `completedIndexes`
//!    instead), and that status is written;
//! 2. their finalizers are removed;
//! 3. pods whose finalizer is gone move from the uncounted lists into
//!    `succeeded`/`failed`, and that status is written.
//!
//! The interim `SuccessCriteriaMet`/`FailureTarget` condition is written with step 1;
//! `Complete`/`Failed` only once nothing is uncounted and no pod is terminating.
//! Finalizer removals the cache has not shown yet are remembered per Job
//! ([`UidTrackingExpectations`]) so a stale cache does not count a pod twice.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use futures::future::join_all;
use k8s_openapi::api::batch::v1::{Job, JobStatus, UncountedTerminatedPods};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::indexed;
use super::pod_failure_policy::match_pod_failure_policy;
use super::sync::{count, ensure_condition, is_pod_failed, new_condition, publish, JobCtx};
use super::{has_tracking_finalizer, remove_tracking_finalizer, Ctx, Error};

/// Most pods recorded in `uncountedTerminatedPods` at once (upstream `MaxUncountedPods`),
/// keeping the status small and letting other Jobs have a turn.
const MAX_UNCOUNTED_PODS: usize = 500;

/// Pod UIDs whose finalizer removal a Job is waiting to see, by Job key.
#[derive(Debug, Default)]
pub struct UidTrackingExpectations {
    inner: Mutex<HashMap<String, HashSet<String>>>,
}

impl UidTrackingExpectations {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashSet<String>>> {
        self.inner
            .lock()
            .expect("invariant: finalizer expectations lock is never poisoned")
    }

    pub fn expect_removed(&self, key: &str, uids: impl IntoIterator<Item = String>) {
        self.lock().entry(key.to_string()).or_default().extend(uids);
    }

    pub fn observed(&self, key: &str, uid: &str) {
        let mut inner = self.lock();
        if let Some(set) = inner.get_mut(key) {
            set.remove(uid);
            if set.is_empty() {
                inner.remove(key);
            }
        }
    }

    pub fn expected(&self, key: &str) -> HashSet<String> {
        self.lock().get(key).cloned().unwrap_or_default()
    }

    pub fn delete(&self, key: &str) {
        self.lock().remove(key);
    }
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn uid(p: &Pod) -> String {
    p.metadata.uid.clone().unwrap_or_default()
}

fn uncounted_mut(status: &mut JobStatus) -> &mut UncountedTerminatedPods {
    status
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default)
}

/// Moves pods whose finalizer is gone from the uncounted lists into the counters.
/// Returns whether anything changed.
fn clean_uncounted(status: &mut JobStatus, with_finalizer: &HashSet<String>) -> bool {
    let mut changed = false;
    let uncounted = uncounted_mut(status);
    let mut moved_succeeded = 0;
    if let Some(list) = uncounted.succeeded.as_mut() {
        let before = list.len();
        list.retain(|u| with_finalizer.contains(u));
        moved_succeeded = before - list.len();
    }
    let mut moved_failed = 0;
    if let Some(list) = uncounted.failed.as_mut() {
        let before = list.len();
        list.retain(|u| with_finalizer.contains(u));
        moved_failed = before - list.len();
    }
    if moved_succeeded > 0 {
        changed = true;
        status.succeeded = Some(status.succeeded.unwrap_or(0) + count(moved_succeeded));
    }
    if moved_failed > 0 {
        changed = true;
        status.failed = Some(status.failed.unwrap_or(0) + count(moved_failed));
    }
    changed
}

fn uncounted_total(status: &JobStatus) -> usize {
    status.uncounted_terminated_pods.as_ref().map_or(0, |u| {
        u.succeeded.as_ref().map_or(0, Vec::len) + u.failed.as_ref().map_or(0, Vec::len)
    })
}

/// Whether the finalizer of `pod` may go: the Job is deleted or finishing, or the pod
/// is done.
fn can_remove_finalizer(jc: &JobCtx, pod: &Pod, considered_failed: bool) -> bool {
    jc.job.metadata.deletion_timestamp.is_some()
        || jc.finished_condition.is_some()
        || phase(pod) == "Succeeded"
        || considered_failed
}

fn is_success_criteria_met(jc: &JobCtx) -> bool {
    jc.finished_condition
        .as_ref()
        .is_some_and(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True")
}

pub(super) async fn track_job_status_and_remove_finalizers(
    ctx: &Ctx,
    jc: &mut JobCtx,
    mut needs_flush: bool,
    now: Timestamp,
) -> Result<(), Error> {
    let is_indexed = indexed::is_indexed(&jc.job);
    let completions = jc
        .job
        .spec
        .as_ref()
        .and_then(|s| s.completions)
        .unwrap_or(0)
        .max(0);
    let completions = usize::try_from(completions).unwrap_or(0);
    if is_indexed {
        // Completed indexes are recorded in order.
        jc.pods.sort_by_key(|p| indexed::completion_index(p));
    }
    let mut with_finalizer: HashSet<String> = jc
        .pods
        .iter()
        .filter(|p| has_tracking_finalizer(p) && !jc.expected_rm_finalizers.contains(&uid(p)))
        .map(|p| uid(p))
        .collect();
    let status = jc.job.status.get_or_insert_with(Default::default);
    let old_counters = (status.succeeded, status.failed);
    if clean_uncounted(status, &with_finalizer) {
        needs_flush = true;
    }
    let policy = jc
        .job
        .spec
        .as_ref()
        .and_then(|s| s.pod_failure_policy.clone());
    let mut to_remove: Vec<Arc<Pod>> = Vec::new();
    let mut new_indexes: Vec<usize> = Vec::new();
    let mut reached_max = false;
    for pod in jc.pods.clone() {
        let pod_uid = uid(&pod);
        if !has_tracking_finalizer(&pod) || jc.expected_rm_finalizers.contains(&pod_uid) {
            // Counted in an earlier sync.
            continue;
        }
        let considered_failed = is_pod_failed(&pod, &jc.job);
        if !can_remove_finalizer(jc, &pod, considered_failed) {
            continue;
        }
        to_remove.push(pod.clone());
        let failing = jc.finished_condition.is_some() && !is_success_criteria_met(jc);
        let status = jc.job.status.get_or_insert_with(Default::default);
        if phase(&pod) == "Succeeded" && !jc.uncounted_failed.contains(&pod_uid) {
            if is_indexed {
                if let Some(ix) = indexed::completion_index(&pod) {
                    if ix < completions && !jc.prev_succeeded_indexes.has(ix) {
                        new_indexes.push(ix);
                        needs_flush = true;
                    }
                }
            } else if !jc.uncounted_succeeded.contains(&pod_uid) {
                needs_flush = true;
                uncounted_mut(status)
                    .succeeded
                    .get_or_insert_with(Vec::new)
                    .push(pod_uid.clone());
            }
        } else if considered_failed || failing {
            // A Job that is failing counts every pod it stops as failed.
            let index_ok =
                !is_indexed || indexed::completion_index(&pod).is_some_and(|ix| ix < completions);
            if !jc.uncounted_failed.contains(&pod_uid) && index_ok {
                let counts = match_pod_failure_policy(policy.as_ref(), &pod).counts();
                if counts {
                    needs_flush = true;
                    uncounted_mut(status)
                        .failed
                        .get_or_insert_with(Vec::new)
                        .push(pod_uid.clone());
                }
            }
        }
        let status = jc.job.status.get_or_insert_with(Default::default);
        if new_indexes.len() + uncounted_total(status) >= MAX_UNCOUNTED_PODS {
            // The rest waits for the next sync (status and pod updates requeue the Job).
            reached_max = true;
            break;
        }
    }
    if is_indexed {
        new_indexes.sort_unstable();
        new_indexes.dedup();
        jc.succeeded_indexes = jc.succeeded_indexes.with_ordered_indexes(&new_indexes);
        let done = jc.succeeded_indexes.to_string();
        let status = jc.job.status.get_or_insert_with(Default::default);
        if done != status.completed_indexes.clone().unwrap_or_default() {
            needs_flush = true;
        }
        status.succeeded = Some(count(jc.succeeded_indexes.total()));
        status.completed_indexes = Some(done);
    }
    if let Some(cond) = jc.finished_condition.clone() {
        let conditions = jc
            .job
            .status
            .get_or_insert_with(Default::default)
            .conditions
            .get_or_insert_with(Vec::new);
        if cond.type_ == "FailureTarget" {
            // Recorded before any finalizer goes, so the reason survives a crash.
            conditions.push(cond.clone());
            needs_flush = true;
            jc.finished_condition = Some(new_condition(
                "Failed",
                "True",
                cond.reason.as_deref().unwrap_or(""),
                cond.message.as_deref().unwrap_or(""),
                now,
            ));
        } else if cond.type_ == "SuccessCriteriaMet" {
            if !conditions
                .iter()
                .any(|c| c.type_ == "SuccessCriteriaMet" && c.status == "True")
            {
                conditions.push(cond.clone());
                needs_flush = true;
            }
            jc.finished_condition = Some(new_condition(
                "Complete",
                "True",
                cond.reason.as_deref().unwrap_or(""),
                cond.message.as_deref().unwrap_or(""),
                now,
            ));
        }
    }
    needs_flush = flush_uncounted_and_remove_finalizers(
        ctx,
        jc,
        &to_remove,
        &mut with_finalizer,
        needs_flush,
    )
    .await?;
    let finished = !reached_max && enact_job_finished(jc, now);
    if finished {
        needs_flush = true;
    }
    if needs_flush {
        let updated = update_job_status(ctx, &jc.job).await?;
        jc.job = updated;
        if finished {
            record_job_finished(ctx, jc).await;
        }
    }
    let status = jc.job.status.clone().unwrap_or_default();
    if (status.succeeded, status.failed) != old_counters {
        tracing::debug!(job = %jc.key, succeeded = status.succeeded.unwrap_or(0), failed = status.failed.unwrap_or(0), "counted finished pods");
    }
    Ok(())
}

/// Steps 1–3 of the module doc. Returns whether status changes are still unwritten.
async fn flush_uncounted_and_remove_finalizers(
    ctx: &Ctx,
    jc: &mut JobCtx,
    to_remove: &[Arc<Pod>],
    with_finalizer: &mut HashSet<String>,
    mut needs_flush: bool,
) -> Result<bool, Error> {
    if needs_flush {
        jc.job = update_job_status(ctx, &jc.job).await?;
        ctx.backoff.update(&jc.key, jc.new_backoff_record.clone());
        needs_flush = false;
    }
    let mut rm_err = None;
    if !to_remove.is_empty() {
        ctx.finalizer_expectations
            .expect_removed(&jc.key, to_remove.iter().map(|p| uid(p)));
        let results = join_all(
            to_remove
                .iter()
                .map(|p| remove_tracking_finalizer(&ctx.client, p)),
        )
        .await;
        for (p, r) in to_remove.iter().zip(results) {
            match r {
                Ok(()) => {
                    with_finalizer.remove(&uid(p));
                }
                Err(e) => {
                    // No update will show this removal.
                    ctx.finalizer_expectations.observed(&jc.key, &uid(p));
                    if rm_err.is_none() {
                        rm_err = Some(Error::Api(e));
                    }
                }
            }
        }
    }
    let status = jc.job.status.get_or_insert_with(Default::default);
    if clean_uncounted(status, with_finalizer) {
        needs_flush = true;
    }
    if let Some(e) = rm_err {
        if needs_flush {
            jc.job = update_job_status(ctx, &jc.job).await?;
        }
        return Err(e);
    }
    Ok(needs_flush)
}

/// Adds `Complete`/`Failed` once nothing is uncounted or terminating.
fn enact_job_finished(jc: &mut JobCtx, now: Timestamp) -> bool {
    let Some(cond) = jc.finished_condition.clone() else {
        return false;
    };
    let status = jc.job.status.get_or_insert_with(Default::default);
    let pending = uncounted_total(status);
    if pending > 0 {
        tracing::debug!(job = %jc.key, condition = %cond.type_, count = pending, "delaying finish: uncounted pods");
        return false;
    }
    if jc.terminating > 0 {
        tracing::debug!(job = %jc.key, condition = %cond.type_, count = jc.terminating, "delaying finish: terminating pods");
        return false;
    }
    let conditions = status.conditions.get_or_insert_with(Vec::new);
    ensure_condition(
        conditions,
        &cond.type_,
        &cond.status,
        cond.reason.as_deref().unwrap_or(""),
        cond.message.as_deref().unwrap_or(""),
        now,
    );
    if cond.type_ == "Complete" {
        status.completion_time = cond.last_transition_time.clone();
    }
    true
}

async fn record_job_finished(ctx: &Ctx, jc: &JobCtx) {
    let Some(cond) = &jc.finished_condition else {
        return;
    };
    if cond.type_ == "Complete" {
        let completions = jc.job.spec.as_ref().and_then(|s| s.completions);
        let succeeded = jc
            .job
            .status
            .as_ref()
            .and_then(|s| s.succeeded)
            .unwrap_or(0);
        if completions.is_some_and(|c| succeeded > c) {
            publish(
                ctx,
                &jc.job,
                EventType::Warning,
                "TooManySucceededPods",
                "Too many succeeded pods running after completion count reached".into(),
            )
            .await;
        }
        publish(
            ctx,
            &jc.job,
            EventType::Normal,
            "Completed",
            "Job completed".into(),
        )
        .await;
        tracing::info!(job = %jc.key, "job completed");
    } else {
        let reason = cond.reason.as_deref().unwrap_or("");
        let message = cond.message.clone().unwrap_or_default();
        tracing::info!(job = %jc.key, reason, "job failed");
        publish(ctx, &jc.job, EventType::Warning, reason, message).await;
    }
}

/// Writes the Job's status (as upstream serializes it: zero counters and empty lists
/// left out, `ready`/`terminating` always present) and returns the stored Job.
async fn update_job_status(ctx: &Ctx, job: &Job) -> Result<Job, Error> {
    let mut job = job.clone();
    if let Some(s) = job.status.as_mut() {
        normalize_status(s);
    }
    let api: Api<Job> = Api::namespaced(
        ctx.client.clone(),
        job.metadata.namespace.as_deref().unwrap_or(""),
    );
    let updated = api
        .replace_status(&job.name_any(), &PostParams::default(), &job)
        .await?;
    Ok(updated)
}

pub(super) fn normalize_status(s: &mut JobStatus) {
    let nz = |v: Option<i32>| v.filter(|n| *n != 0);
    s.active = nz(s.active);
    s.succeeded = nz(s.succeeded);
    s.failed = nz(s.failed);
    if s.completed_indexes.as_deref() == Some("") {
        s.completed_indexes = None;
    }
    let u = s
        .uncounted_terminated_pods
        .get_or_insert_with(Default::default);
    if u.succeeded.as_ref().is_some_and(Vec::is_empty) {
        u.succeeded = None;
    }
    if u.failed.as_ref().is_some_and(Vec::is_empty) {
        u.failed = None;
    }
    if s.conditions.as_ref().is_some_and(Vec::is_empty) {
        s.conditions = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::job::OrderedIntervals;

    #[test]
    fn cleaning_moves_pods_without_finalizer_into_counters() {
        let mut status = JobStatus {
            succeeded: Some(2),
            uncounted_terminated_pods: Some(UncountedTerminatedPods {
                succeeded: Some(vec!["a".into(), "b".into()]),
                failed: Some(vec!["c".into()]),
            }),
            ..Default::default()
        };
        let with: HashSet<String> = ["b".to_string()].into();
        assert!(clean_uncounted(&mut status, &with));
        assert_eq!(status.succeeded, Some(3));
        assert_eq!(status.failed, Some(1));
        let u = status.uncounted_terminated_pods.clone().unwrap_or_default();
        assert_eq!(u.succeeded, Some(vec!["b".to_string()]));
        assert_eq!(u.failed, Some(vec![]));
        assert!(!clean_uncounted(&mut status, &with));
        normalize_status(&mut status);
        let v = serde_json::to_value(&status).expect("json");
        assert_eq!(
            v["uncountedTerminatedPods"],
            serde_json::json!({"succeeded": ["b"]})
        );
        assert!(v.get("active").is_none());
    }

    #[test]
    fn finalizer_expectations_track_uids_per_job() {
        let e = UidTrackingExpectations::default();
        e.expect_removed("ns/j", ["a".to_string(), "b".to_string()]);
        assert_eq!(e.expected("ns/j").len(), 2);
        e.observed("ns/j", "a");
        e.observed("ns/other", "b");
        assert_eq!(e.expected("ns/j"), ["b".to_string()].into());
        e.delete("ns/j");
        assert!(e.expected("ns/j").is_empty());
    }

    #[test]
    fn intervals_reexported_for_status() {
        let iv = OrderedIntervals::default().with_ordered_indexes(&[0, 1, 2]);
        assert_eq!(iv.to_string(), "0-2");
    }
}
