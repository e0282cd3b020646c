//! The TTL-after-finished controller (upstream `pkg/controller/ttlafterfinished`):
//! deletes a Job `spec.ttlSecondsAfterFinished` seconds after its `Complete` or
//! `Failed` condition turned true, with its pods (foreground propagation, as
//! upstream). A Job not yet due is queued again for when it is; before deleting, the
//! Job is read afresh so a TTL just extended is honoured.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Preconditions, PropagationPolicy};
use kube::Client;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{is_not_found, meta_key};
use crate::informer::{Cache, Change, InformerFactory};
use crate::job::finished_condition;
use crate::workqueue::WorkQueue;

const CONTROLLER_NAME: &str = "ttl-after-finished-controller";
const WORKERS: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    #[error("unable to find the time when the Job {0} finished")]
    NoFinishTime(String),
}

/// A finished Job with a TTL.
fn needs_cleanup(job: &Job) -> bool {
    job.spec
        .as_ref()
        .and_then(|s| s.ttl_seconds_after_finished)
        .is_some()
        && finished_condition(job).is_some()
}

/// When the Job's TTL runs out, if it has one and has finished.
pub fn expire_at(job: &Job) -> Result<Option<Timestamp>, Error> {
    if !needs_cleanup(job) {
        return Ok(None);
    }
    let ttl = job
        .spec
        .as_ref()
        .and_then(|s| s.ttl_seconds_after_finished)
        .unwrap_or(0)
        .max(0);
    let finished = finished_condition(job)
        .and_then(|c| c.last_transition_time.as_ref())
        .map(|t| t.0)
        .ok_or_else(|| Error::NoFinishTime(meta_key(&job.metadata)))?;
    let ttl = Duration::from_secs(u64::try_from(ttl).unwrap_or(0));
    Ok(Some(finished.checked_add(ttl).unwrap_or(Timestamp::MAX)))
}

struct Ctx {
    client: Client,
    jobs: Cache<Job>,
    queue: Arc<WorkQueue<String>>,
}

pub struct TtlAfterFinishedController {
    ctx: Arc<Ctx>,
}

impl TtlAfterFinishedController {
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        cancel: &CancellationToken,
    ) -> Self {
        let ctx = Arc::new(Ctx {
            client,
            jobs: informers.informer::<Job>().cache(),
            queue: WorkQueue::new(cancel.clone()),
        });
        let queue = ctx.queue.clone();
        informers.informer::<Job>().add_handler(move |change| {
            let job = match change {
                Change::Added(j) | Change::Updated { new: j, .. } => *j,
                Change::Deleted(_) => return,
            };
            if job.metadata.deletion_timestamp.is_none() && needs_cleanup(job) {
                queue.add(meta_key(&job.metadata));
            }
        });
        TtlAfterFinishedController { ctx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ctx.jobs.wait_until_ready() => {}
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

async fn worker(ctx: Arc<Ctx>) {
    let queue = ctx.queue.clone();
    queue
        .work(CONTROLLER_NAME, |key: String| {
            let ctx = ctx.clone();
            async move {
                let span =
                    tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %key);
                process_job(&ctx, &key).instrument(span).await
            }
        })
        .await
}

/// Whether `job` is due now; if it will be later, queues it for then.
fn due(ctx: &Ctx, job: &Job, key: &str) -> Result<bool, Error> {
    if job.metadata.deletion_timestamp.is_some() {
        return Ok(false);
    }
    let Some(at) = expire_at(job)? else {
        return Ok(false);
    };
    let now = Timestamp::now();
    if at > now {
        let left = Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO);
        ctx.queue.add_after(key.to_string(), left);
        return Ok(false);
    }
    Ok(true)
}

async fn process_job(ctx: &Ctx, key: &str) -> Result<(), Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let Some(job) = ctx.jobs.get(ns, name) else {
        return Ok(());
    };
    if !due(ctx, &job, key)? {
        return Ok(());
    }
    // The cached TTL may be stale: decide again on a fresh read.
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), ns);
    let fresh = match api.get(name).await {
        Ok(j) => j,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if !due(ctx, &fresh, key)? {
        return Ok(());
    }
    tracing::info!(job = %key, "cleaning up finished job after its TTL");
    let params = DeleteParams {
        propagation_policy: Some(PropagationPolicy::Foreground),
        preconditions: Some(Preconditions {
            uid: fresh.metadata.uid.clone(),
            resource_version: None,
        }),
        ..Default::default()
    };
    match api.delete(name, &params).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::batch::v1::{JobCondition, JobSpec, JobStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn job(ttl: Option<i32>, finished: Option<(&str, i64)>) -> Job {
        Job {
            spec: Some(JobSpec {
                ttl_seconds_after_finished: ttl,
                ..Default::default()
            }),
            status: Some(JobStatus {
                conditions: finished.map(|(t, at)| {
                    vec![JobCondition {
                        type_: t.into(),
                        status: "True".into(),
                        last_transition_time: Some(Time(Timestamp::from_second(at).expect("ts"))),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn expiry_counts_from_the_finish_condition() {
        let at = |s| Timestamp::from_second(s).expect("ts");
        assert_eq!(
            expire_at(&job(Some(30), Some(("Complete", 100)))).ok(),
            Some(Some(at(130)))
        );
        assert_eq!(
            expire_at(&job(Some(0), Some(("Failed", 100)))).ok(),
            Some(Some(at(100)))
        );
        // No TTL, or not finished: never.
        assert_eq!(
            expire_at(&job(None, Some(("Complete", 100)))).ok(),
            Some(None)
        );
        assert_eq!(expire_at(&job(Some(30), None)).ok(), Some(None));
        assert_eq!(
            expire_at(&job(Some(30), Some(("Suspended", 100)))).ok(),
            Some(None)
        );
    }
}
