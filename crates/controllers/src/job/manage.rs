//! Creating and deleting a Job's pods (upstream `manageJob`, `deleteJobPods`,
//! `deleteActivePods`): towards `min(parallelism, completions - succeeded)` active
//! pods, none while suspended, none before the failure backoff has passed; at most
//! 500 per sync, created in slow-start batches, surplus pods removed least useful first.

use std::sync::{Arc, Mutex};

use futures::future::join_all;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use kube::runtime::events::EventType;
use kube::ResourceExt;

use super::indexed;
use super::sync::{count, is_suspended, only_replace_failed_pods, publish, JobCtx};
use super::{remove_tracking_finalizer, Ctx, Error, JOB_TRACKING_FINALIZER};
use crate::controller_utils::{
    compare_for_deletion, controller_ref, is_namespace_terminating, is_not_found, is_pod_ready,
    meta_key, pod_from_template, pods_prefix, slow_start_batch, SLOW_START_INITIAL_BATCH_SIZE,
};

/// Most pods one sync creates or deletes (upstream `MaxPodCreateDeletePerSync`).
const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;

fn completions(job: &Job) -> Option<i32> {
    job.spec.as_ref().and_then(|s| s.completions)
}

/// Deletes active pods of a finishing Job, keeping their finalizers so that tracking
/// counts them. Returns (ready deleted, deleted, first error).
pub(super) async fn delete_active_pods(
    ctx: &Ctx,
    job: &Job,
    pods: &[Arc<Pod>],
) -> (i32, i32, Option<Error>) {
    let api: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        job.metadata.namespace.as_deref().unwrap_or(""),
    );
    let results = join_all(pods.iter().map(|p| {
        let api = &api;
        async move {
            let name = p.name_any();
            let r = match api.delete(&name, &Default::default()).await {
                Ok(_) => {
                    publish(
                        ctx,
                        job,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    )
                    .await;
                    Ok(())
                }
                Err(e) if is_not_found(&e) => Ok(()),
                Err(e) => Err(e),
            };
            (is_pod_ready(p), r)
        }
    }))
    .await;
    let mut deleted = 0;
    let mut ready = 0;
    let mut first_err = None;
    for (was_ready, r) in results {
        match r {
            Ok(()) => deleted += 1,
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(Error::Api(e));
                }
            }
        }
        if was_ready {
            ready += 1;
        }
    }
    (ready, deleted, first_err)
}

/// Removes the finalizer, then deletes (pods the Job no longer wants). Expectations for
/// failed deletions are lowered at once.
async fn delete_job_pods(ctx: &Ctx, jc: &JobCtx, pods: &[Arc<Pod>]) -> (i32, i32, Option<Error>) {
    let job = &jc.job;
    let api: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        job.metadata.namespace.as_deref().unwrap_or(""),
    );
    let results = join_all(pods.iter().map(|p| {
        let api = &api;
        async move {
            let name = p.name_any();
            let r = async {
                remove_tracking_finalizer(&ctx.client, p).await?;
                api.delete(&name, &Default::default()).await?;
                Ok::<(), kube::Error>(())
            }
            .await;
            match &r {
                Ok(()) => {
                    publish(
                        ctx,
                        job,
                        EventType::Normal,
                        "SuccessfulDelete",
                        format!("Deleted pod: {name}"),
                    )
                    .await;
                }
                Err(e) => {
                    ctx.expectations
                        .deletion_observed(&jc.key, &meta_key(&p.metadata));
                    if !is_not_found(e) {
                        publish(
                            ctx,
                            job,
                            EventType::Warning,
                            "FailedDelete",
                            format!("Error deleting: {e}"),
                        )
                        .await;
                    }
                }
            }
            (is_pod_ready(p), r)
        }
    }))
    .await;
    let (mut ready, mut deleted, mut first_err) = (0, 0, None);
    for (was_ready, r) in results {
        match r {
            Ok(()) => deleted += 1,
            Err(e) if is_not_found(&e) => deleted += 1,
            Err(e) => {
                if first_err.is_none() {
                    first_err = Some(Error::Api(e));
                }
            }
        }
        if was_ready {
            ready += 1;
        }
    }
    (ready, deleted, first_err)
}

/// Active pods to remove: for Indexed Jobs those with a bad or repeated index first,
/// then the least useful ones until `at_least` are picked.
fn active_pods_for_removal(job: &Job, pods: &[Arc<Pod>], at_least: usize) -> Vec<Arc<Pod>> {
    let (mut rm, mut left) = if indexed::is_indexed(job) {
        let completions = usize::try_from(completions(job).unwrap_or(0).max(0)).unwrap_or(0);
        indexed::duplicated_index_pods(pods, completions)
    } else {
        (Vec::new(), pods.to_vec())
    };
    if rm.len() < at_least {
        left.sort_by(|a, b| compare_for_deletion(a, 0, b, 0));
        let more = at_least - rm.len();
        rm.extend(left.into_iter().take(more));
    }
    rm
}

/// Creates or deletes pods towards the wanted number of active ones (upstream
/// `manageJob`). Returns the number of active pods afterwards.
pub(super) async fn manage_job(ctx: &Ctx, jc: &mut JobCtx, now: Timestamp) -> (i32, Option<Error>) {
    let mut active = count(jc.active_pods.len());
    let spec = jc.job.spec.clone().unwrap_or_default();
    let parallelism = spec.parallelism.unwrap_or(1).max(0);
    let key = jc.key.clone();

    if is_suspended(&jc.job) {
        tracing::debug!(job = %key, active, "deleting all active pods of suspended job");
        let victims = active_pods_for_removal(&jc.job, &jc.active_pods, jc.active_pods.len());
        ctx.expectations
            .expect_deletions(&key, victims.iter().map(|p| meta_key(&p.metadata)));
        let (ready, removed, err) = delete_job_pods(ctx, jc, &victims).await;
        jc.terminating += removed;
        jc.ready -= ready;
        return (active - removed, err);
    }

    let want = match spec.completions {
        // Without completions: parallelism until the first success, then let them finish.
        None if jc.succeeded > 0 => active,
        None => parallelism,
        Some(c) => (c - jc.succeeded).min(parallelism).max(0),
    };
    let rm_at_least = usize::try_from((active - want).max(0)).unwrap_or(0);
    let mut victims = active_pods_for_removal(&jc.job, &jc.active_pods, rm_at_least);
    victims.truncate(MAX_POD_CREATE_DELETE_PER_SYNC);
    if !victims.is_empty() {
        tracing::debug!(job = %key, deleting = victims.len(), target = want, "too many pods running");
        ctx.expectations
            .expect_deletions(&key, victims.iter().map(|p| meta_key(&p.metadata)));
        let (ready, removed, err) = delete_job_pods(ctx, jc, &victims).await;
        jc.terminating += removed;
        jc.ready -= ready;
        // Never create and delete in one sync; deleting wins.
        return (active - removed, err);
    }

    let terminating = if only_replace_failed_pods(&jc.job) {
        jc.terminating
    } else {
        0
    };
    let diff = want - terminating - active;
    if diff <= 0 {
        return (active, None);
    }
    let remaining =
        jc.new_backoff_record
            .remaining(now, ctx.options.backoff_base, ctx.options.backoff_max);
    if !remaining.is_zero() {
        tracing::debug!(job = %key, ?remaining, "delaying pod creation after failures");
        ctx.enqueue_after(&jc.job, remaining);
        return (active, None);
    }
    let mut diff = usize::try_from(diff)
        .unwrap_or(0)
        .min(MAX_POD_CREATE_DELETE_PER_SYNC);
    let job_name = jc.job.name_any();
    let indexes = if indexed::is_indexed(&jc.job) {
        let completions = usize::try_from(spec.completions.unwrap_or(0).max(0)).unwrap_or(0);
        let ixs = indexed::first_pending_indexes(
            &jc.active_pods,
            &jc.succeeded_indexes,
            diff,
            completions,
        );
        diff = ixs.len();
        Some(ixs)
    } else {
        None
    };
    if diff == 0 {
        return (active, None);
    }
    ctx.expectations.expect_creations(&key, diff);
    tracing::debug!(job = %key, need = want, creating = diff, "too few pods running");

    let mut template = spec.template.clone();
    if indexes.is_some() {
        indexed::add_completion_index_env(&mut template);
    }
    let tmeta = template.metadata.get_or_insert_with(Default::default);
    let finalizers = tmeta.finalizers.get_or_insert_with(Vec::new);
    if !finalizers.iter().any(|f| f == JOB_TRACKING_FINALIZER) {
        finalizers.push(JOB_TRACKING_FINALIZER.to_string());
    }
    let ns = jc.job.metadata.namespace.clone().unwrap_or_default();
    let owner = controller_ref(&jc.job.metadata, "batch/v1", "Job");
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let job = &jc.job;
    let failures = Mutex::new(0usize);
    let (created, err) = slow_start_batch(diff, SLOW_START_INITIAL_BATCH_SIZE, |i| {
        let mut t = template.clone();
        let prefix = match indexes.as_ref().and_then(|ixs| ixs.get(i)) {
            Some(&ix) => {
                indexed::set_completion_index(&mut t, &job_name, ix);
                indexed::generate_name_with_index(&job_name, ix)
            }
            None => pods_prefix(&job_name),
        };
        let pod = pod_from_template(&t, &ns, &prefix, owner.clone());
        let (api, failures) = (&api, &failures);
        async move {
            match api.create(&PostParams::default(), &pod).await {
                Ok(p) => {
                    publish(
                        ctx,
                        job,
                        EventType::Normal,
                        "SuccessfulCreate",
                        format!("Created pod: {}", p.name_any()),
                    )
                    .await;
                    Ok(())
                }
                // The namespace is going away: nothing to create, nothing to retry.
                Err(e) if is_namespace_terminating(&e) => Ok(()),
                Err(e) => {
                    publish(
                        ctx,
                        job,
                        EventType::Warning,
                        "FailedCreate",
                        format!("Error creating: {e}"),
                    )
                    .await;
                    *failures.lock().expect("invariant: lock is never poisoned") += 1;
                    Err(e)
                }
            }
        }
    })
    .await;
    // Creations that failed or never started will not show up in the cache.
    for _ in created..diff {
        ctx.expectations.creation_observed(&key);
    }
    active += count(created);
    (active, err.map(Error::Api))
}
