//! The taint eviction controller (upstream `pkg/controller/tainteviction`, formerly the
//! node lifecycle controller's NoExecuteTaintManager): deletes pods from nodes with
//! `NoExecute` taints they do not tolerate.
//!
//! A pod that does not tolerate every NoExecute taint of its node is deleted at once;
//! one that tolerates them all, some with `tolerationSeconds`, is deleted when the
//! shortest of those runs out, counted from when this controller saw the taint; one
//! that tolerates them forever stays. The scheduled deletion ([`timed_workers`]) is
//! cancelled when the taints go away or the pod does. Before deleting, the pod gets
//! the `DisruptionTarget` condition (`DeletionByTaintManager`), as upstream.

pub mod timed_workers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::{Node, ObjectReference, Pod, Taint, Toleration};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::Client;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::controller_utils::{is_not_found, now_time, EventRecorder};
use crate::informer::{Cache, Change, InformerFactory};
use crate::nodelifecycle::taints::{matching_tolerations, min_toleration, node_taints, NO_EXECUTE};
use crate::workqueue::WorkQueue;
use timed_workers::TimedWorkers;

const CONTROLLER_NAME: &str = "taint-eviction-controller";
/// Workers per queue (upstream `UpdateWorkerSize`).
const WORKERS: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

fn no_execute_taints(node: &Node) -> Vec<Taint> {
    node_taints(node)
        .iter()
        .filter(|t| t.effect == NO_EXECUTE)
        .cloned()
        .collect()
}

fn pod_node(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

fn pod_key(p: &Pod) -> String {
    format!(
        "{}/{}",
        p.metadata.namespace.as_deref().unwrap_or(""),
        p.metadata.name.as_deref().unwrap_or("")
    )
}

struct Ctx {
    client: Client,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    /// NoExecute taints of every tainted node, as last processed.
    tainted: Mutex<HashMap<String, Vec<Taint>>>,
    timers: TimedWorkers,
    node_queue: Arc<WorkQueue<String>>,
    pod_queue: Arc<WorkQueue<String>>,
    evict_queue: Arc<WorkQueue<String>>,
    recorder: EventRecorder,
}

pub struct TaintEvictionController {
    ctx: Arc<Ctx>,
}

impl TaintEvictionController {
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        cancel: &CancellationToken,
    ) -> Self {
        let ctx = Arc::new(Ctx {
            recorder: EventRecorder::new(client.clone(), CONTROLLER_NAME),
            client,
            pods: informers.informer::<Pod>().cache(),
            nodes: informers.informer::<Node>().cache(),
            tainted: Mutex::new(HashMap::new()),
            timers: TimedWorkers::default(),
            node_queue: WorkQueue::new(cancel.clone()),
            pod_queue: WorkQueue::new(cancel.clone()),
            evict_queue: WorkQueue::new(cancel.clone()),
        });
        let queue = ctx.node_queue.clone();
        informers.informer::<Node>().add_handler(move |change| {
            let (node, changed) = match change {
                Change::Added(n) => (*n, !no_execute_taints(n).is_empty()),
                Change::Updated { old, new } => {
                    (*new, no_execute_taints(old) != no_execute_taints(new))
                }
                Change::Deleted(n) => (*n, true),
            };
            if changed {
                queue.add(node.metadata.name.clone().unwrap_or_default());
            }
        });
        let queue = ctx.pod_queue.clone();
        informers.informer::<Pod>().add_handler(move |change| {
            let pod = match change {
                Change::Added(p) | Change::Deleted(p) => *p,
                Change::Updated { old, new } => {
                    if pod_node(old) == pod_node(new)
                        && old.spec.as_ref().map(|s| &s.tolerations)
                            == new.spec.as_ref().map(|s| &s.tolerations)
                        && old.metadata.deletion_timestamp == new.metadata.deletion_timestamp
                    {
                        return;
                    }
                    *new
                }
            };
            if !pod_node(pod).is_empty() {
                queue.add(pod_key(pod));
            }
        });
        TaintEvictionController { ctx }
    }

    pub async fn run(self, cancel: CancellationToken) {
        let ctx = self.ctx;
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async { ctx.pods.wait_until_ready().await; ctx.nodes.wait_until_ready().await } => {}
        }
        tracing::info!(controller = CONTROLLER_NAME, "starting");
        let mut tasks = Vec::new();
        {
            let ctx = ctx.clone();
            let cancel = cancel.clone();
            tasks.push(tokio::spawn(async move {
                let evict = ctx.evict_queue.clone();
                ctx.timers.run(cancel, move |key| evict.add(key)).await
            }));
        }
        for _ in 0..WORKERS {
            tasks.push(tokio::spawn(node_worker(ctx.clone())));
            tasks.push(tokio::spawn(pod_worker(ctx.clone())));
            tasks.push(tokio::spawn(evict_worker(ctx.clone())));
        }
        for t in tasks {
            let _ = t.await;
        }
    }
}

fn pod_event_ref(key: &str, uid: Option<String>) -> ObjectReference {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: Some(name.to_string()),
        namespace: Some(ns.to_string()),
        uid,
        ..Default::default()
    }
}

impl Ctx {
    fn lock_tainted(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Taint>>> {
        self.tainted
            .lock()
            .expect("invariant: tainted nodes lock is never poisoned")
    }

    fn pod_uid(&self, key: &str) -> Option<String> {
        let (ns, name) = key.split_once('/').unwrap_or(("", key));
        self.pods.get(ns, name).and_then(|p| p.metadata.uid.clone())
    }

    async fn cancel_with_event(&self, key: &str) {
        if self.timers.cancel(key) {
            tracing::debug!(pod = key, "cancelling scheduled deletion");
            self.recorder
                .publish(
                    &pod_event_ref(key, self.pod_uid(key)),
                    EventType::Normal,
                    "TaintManagerEviction",
                    "Cancelling",
                    format!("Cancelling deletion of Pod {key}"),
                )
                .await;
        }
    }

    /// Upstream `processPodOnNode`.
    async fn process_pod_on_node(
        &self,
        key: &str,
        tolerations: &[Toleration],
        taints: &[Taint],
        now: Instant,
    ) {
        if taints.is_empty() {
            self.cancel_with_event(key).await;
            return;
        }
        let (all, used) = matching_tolerations(taints, tolerations);
        if !all {
            tracing::debug!(
                pod = key,
                "not all taints are tolerated; deleting the pod at once"
            );
            self.cancel_with_event(key).await;
            self.timers.add(key, now, now);
            return;
        }
        let Some(min) = min_toleration(&used) else {
            self.cancel_with_event(key).await;
            return;
        };
        let trigger = now + min;
        let mut start = now;
        if let Some(scheduled) = self.timers.pending(key) {
            start = scheduled.created_at;
            if start + min < trigger {
                return;
            }
            self.cancel_with_event(key).await;
        }
        self.timers.add(key, start, trigger);
    }
}

async fn node_worker(ctx: Arc<Ctx>) {
    while let Some(name) = ctx.node_queue.get().await {
        let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %name);
        handle_node_update(&ctx, &name).instrument(span).await;
        ctx.node_queue.done(&name);
    }
}

/// Upstream `handleNodeUpdate`.
async fn handle_node_update(ctx: &Ctx, name: &str) {
    let Some(node) = ctx.nodes.get("", name) else {
        ctx.lock_tainted().remove(name);
        return;
    };
    let taints = no_execute_taints(&node);
    {
        let mut tainted = ctx.lock_tainted();
        if taints.is_empty() {
            tainted.remove(name);
        } else {
            tainted.insert(name.to_string(), taints.clone());
        }
    }
    // The map is updated first: pods changing from here on see the new taints.
    let pods = ctx.pods.store().state_filter(|p| pod_node(p) == name);
    let now = Instant::now();
    for pod in pods {
        let key = pod_key(&pod);
        if taints.is_empty() {
            ctx.cancel_with_event(&key).await;
            continue;
        }
        let tolerations = pod
            .spec
            .as_ref()
            .and_then(|s| s.tolerations.clone())
            .unwrap_or_default();
        ctx.process_pod_on_node(&key, &tolerations, &taints, now)
            .await;
    }
}

async fn pod_worker(ctx: Arc<Ctx>) {
    while let Some(key) = ctx.pod_queue.get().await {
        let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %key);
        handle_pod_update(&ctx, &key).instrument(span).await;
        ctx.pod_queue.done(&key);
    }
}

/// Upstream `handlePodUpdate`.
async fn handle_pod_update(ctx: &Ctx, key: &str) {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let Some(pod) = ctx.pods.get(ns, name) else {
        ctx.cancel_with_event(key).await;
        return;
    };
    let node = pod_node(&pod);
    if node.is_empty() {
        return;
    }
    let Some(taints) = ctx.lock_tainted().get(node).cloned() else {
        return;
    };
    let tolerations = pod
        .spec
        .as_ref()
        .and_then(|s| s.tolerations.clone())
        .unwrap_or_default();
    ctx.process_pod_on_node(key, &tolerations, &taints, Instant::now())
        .await;
}

async fn evict_worker(ctx: Arc<Ctx>) {
    while let Some(key) = ctx.evict_queue.get().await {
        let span = tracing::debug_span!("reconcile", controller = CONTROLLER_NAME, object = %key);
        // Cancelled since it fired (taint removed, pod gone): nothing to do.
        if ctx.timers.is_fired(&key) {
            match delete_pod(&ctx, &key).instrument(span).await {
                Ok(()) => ctx.evict_queue.forget(&key),
                Err(e) => {
                    tracing::warn!(pod = %key, error = %e, "could not delete pod; will retry");
                    ctx.evict_queue.add_rate_limited(key.clone());
                }
            }
        }
        ctx.evict_queue.done(&key);
    }
}

/// Upstream `deletePodHandler` + `addConditionAndDeletePod`.
async fn delete_pod(ctx: &Ctx, key: &str) -> Result<(), Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    tracing::info!(controller = CONTROLLER_NAME, pod = key, "deleting pod");
    ctx.recorder
        .publish(
            &pod_event_ref(key, ctx.pod_uid(key)),
            EventType::Normal,
            "TaintManagerEviction",
            "Deleting",
            format!("Marking for deletion Pod {key}"),
        )
        .await;
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), ns);
    let pod = match api.get(name).await {
        Ok(p) => p,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let has_condition = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.type_ == "DisruptionTarget"
                    && c.status == "True"
                    && c.reason.as_deref() == Some("DeletionByTaintManager")
            })
        });
    if !has_condition {
        let patch = serde_json::json!({
            "metadata": {"uid": pod.metadata.uid},
            "status": {"conditions": [{
                "type": "DisruptionTarget",
                "status": "True",
                "reason": "DeletionByTaintManager",
                "message": "Taint manager: deleting due to NoExecute taint",
                "lastTransitionTime": now_time(),
            }]},
        });
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e.into()),
        }
    }
    let params = DeleteParams {
        preconditions: Some(Preconditions {
            uid: pod.metadata.uid.clone(),
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
    use crate::nodelifecycle::taints::{taint, unreachable_no_execute};
    use std::time::Duration;

    fn ctx() -> Ctx {
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("literal url"));
        let client = kube::Client::try_from(config).expect("client");
        let mut informers = InformerFactory::new(client.clone());
        let cancel = CancellationToken::new();
        Ctx {
            recorder: EventRecorder::new(client.clone(), CONTROLLER_NAME),
            pods: informers.informer::<Pod>().cache(),
            nodes: informers.informer::<Node>().cache(),
            client,
            tainted: Mutex::new(HashMap::new()),
            timers: TimedWorkers::default(),
            node_queue: WorkQueue::new(cancel.clone()),
            pod_queue: WorkQueue::new(cancel.clone()),
            evict_queue: WorkQueue::new(cancel),
        }
    }

    fn tol(key: &str, secs: Option<i64>) -> Toleration {
        Toleration {
            key: Some(key.into()),
            operator: Some("Exists".into()),
            effect: Some(NO_EXECUTE.into()),
            toleration_seconds: secs,
            value: None,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn deletions_are_scheduled_by_the_shortest_toleration() {
        let c = ctx();
        let taints = vec![unreachable_no_execute()];
        let now = Instant::now();
        // Untolerated: due now.
        c.process_pod_on_node("ns/a", &[], &taints, now).await;
        assert_eq!(c.timers.pending("ns/a").map(|s| s.fire_at), Some(now));
        // Tolerated for 3 s.
        let tols = vec![tol("node.kubernetes.io/unreachable", Some(3))];
        c.process_pod_on_node("ns/b", &tols, &taints, now).await;
        assert_eq!(
            c.timers.pending("ns/b").map(|s| s.fire_at),
            Some(now + Duration::from_secs(3))
        );
        // A later update keeps the earlier schedule.
        let later = now + Duration::from_secs(1);
        c.process_pod_on_node("ns/b", &tols, &taints, later).await;
        assert_eq!(
            c.timers.pending("ns/b").map(|s| s.fire_at),
            Some(now + Duration::from_secs(3))
        );
        // Tolerated forever: nothing scheduled, an earlier schedule cancelled.
        c.process_pod_on_node(
            "ns/b",
            &[tol("node.kubernetes.io/unreachable", None)],
            &taints,
            later,
        )
        .await;
        assert!(c.timers.pending("ns/b").is_none());
        // A second taint that is not tolerated: at once.
        let two = vec![unreachable_no_execute(), taint("dedicated", NO_EXECUTE)];
        c.process_pod_on_node("ns/c", &tols, &two, now).await;
        assert_eq!(c.timers.pending("ns/c").map(|s| s.fire_at), Some(now));
        // No taints: cancelled.
        c.process_pod_on_node("ns/c", &tols, &[], now).await;
        assert!(c.timers.pending("ns/c").is_none());
    }
}
