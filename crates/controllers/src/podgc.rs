//! Pod garbage collection (upstream `pkg/controller/podgc`). Every period it looks at
//! all pods and force-deletes (grace 0, after marking them `Failed`):
//!
//! * terminated pods beyond `--terminated-pod-gc-threshold`, evicted ones first, then
//!   the oldest;
//! * terminating pods on a `NotReady` node tainted `node.kubernetes.io/out-of-service`;
//! * orphaned pods, bound to a node that no longer exists. A node missing from the
//!   cache is quarantined first and must still be missing — checked with a live GET —
//!   after the quarantine, since watches of nodes and pods arrive in no set order.
//!   Those pods get the condition `DisruptionTarget` (`DeletionByPodGC`);
//! * terminating pods never scheduled to a node (no kubelet will finish them).

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Client, ResourceExt};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::controller_utils::is_not_found;
use crate::informer::{Cache, InformerFactory};
use crate::options::ControllerOptions;

/// Taint that lets PodGC delete terminating pods of a node that is known to be down.
pub const OUT_OF_SERVICE_TAINT: &str = "node.kubernetes.io/out-of-service";

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn node_name(p: &Pod) -> &str {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
}

/// Neither pending, running nor unknown.
pub fn is_terminated(p: &Pod) -> bool {
    !matches!(phase(p), "Pending" | "Running" | "Unknown")
}

fn is_evicted(p: &Pod) -> bool {
    phase(p) == "Failed" && p.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("Evicted")
}

/// The first `count` terminated pods to delete: evicted first, then by creation time,
/// then name.
pub fn terminated_to_delete(pods: &[Arc<Pod>], threshold: usize) -> Vec<Arc<Pod>> {
    let mut terminated: Vec<Arc<Pod>> = pods.iter().filter(|p| is_terminated(p)).cloned().collect();
    if terminated.len() <= threshold {
        return Vec::new();
    }
    let n = terminated.len() - threshold;
    let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
    terminated.sort_by(|a, b| {
        is_evicted(b)
            .cmp(&is_evicted(a))
            .then_with(|| created(a).cmp(&created(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    terminated.truncate(n);
    terminated
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn out_of_service(n: &Node) -> bool {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .is_some_and(|ts| ts.iter().any(|t| t.key == OUT_OF_SERVICE_TAINT))
}

pub struct PodGcController {
    client: Client,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    threshold: usize,
    period: Duration,
    quarantine: Duration,
    /// Nodes seen missing, and since when.
    missing_since: Mutex<HashMap<String, Instant>>,
}

impl PodGcController {
    pub fn new(
        client: Client,
        informers: &mut InformerFactory,
        options: &ControllerOptions,
    ) -> Self {
        PodGcController {
            client,
            pods: informers.informer::<Pod>().cache(),
            nodes: informers.informer::<Node>().cache(),
            threshold: options.terminated_pod_gc_threshold,
            period: options.pod_gc_period,
            quarantine: options.pod_gc_quarantine,
            missing_since: Mutex::new(HashMap::new()),
        }
    }

    pub async fn run(self, cancel: CancellationToken) {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = async { self.pods.wait_until_ready().await; self.nodes.wait_until_ready().await } => {}
        }
        tracing::info!(controller = "pod-garbage-collector", "starting");
        loop {
            self.gc().await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(self.period) => {}
            }
        }
    }

    async fn gc(&self) {
        let pods = self.pods.store().state();
        let nodes = self.nodes.store().state();
        if self.threshold > 0 {
            let victims = terminated_to_delete(&pods, self.threshold);
            if !victims.is_empty() {
                tracing::info!(count = victims.len(), "garbage collecting terminated pods");
                self.delete_all(&victims, None).await;
            }
        }
        self.gc_terminating(&pods, &nodes).await;
        self.gc_orphaned(&pods, &nodes).await;
        let unscheduled: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && node_name(p).is_empty())
            .cloned()
            .collect();
        for p in &unscheduled {
            tracing::debug!(pod = %pod_key(p), "found unscheduled terminating pod not assigned to any node, deleting");
        }
        self.delete_all(&unscheduled, None).await;
    }

    async fn gc_terminating(&self, pods: &[Arc<Pod>], nodes: &[Arc<Node>]) {
        let down: HashSet<&str> = nodes
            .iter()
            .filter(|n| !node_ready(n) && out_of_service(n))
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        if down.is_empty() {
            return;
        }
        let mut victims: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_some() && down.contains(node_name(p)))
            .cloned()
            .collect();
        if victims.is_empty() {
            return;
        }
        let created = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        victims.sort_by_key(|p| created(p));
        tracing::info!(
            count = victims.len(),
            "garbage collecting terminating pods on out-of-service nodes"
        );
        self.delete_all(&victims, None).await;
    }

    async fn gc_orphaned(&self, pods: &[Arc<Pod>], nodes: &[Arc<Node>]) {
        let existing: HashSet<&str> = nodes
            .iter()
            .filter_map(|n| n.metadata.name.as_deref())
            .collect();
        let now = Instant::now();
        let due: Vec<String> = {
            let mut missing = self
                .missing_since
                .lock()
                .expect("invariant: podgc lock is never poisoned");
            for p in pods {
                let node = node_name(p);
                if !node.is_empty() && !existing.contains(node) {
                    missing.entry(node.to_string()).or_insert(now);
                }
            }
            let due: Vec<String> = missing
                .iter()
                .filter(|(_, since)| now.duration_since(**since) >= self.quarantine)
                .map(|(n, _)| n.clone())
                .collect();
            for n in &due {
                missing.remove(n);
            }
            due
        };
        let api: Api<Node> = Api::all(self.client.clone());
        let mut deleted_nodes = HashSet::new();
        for node in due {
            if existing.contains(node.as_str()) {
                continue;
            }
            match api.get(&node).await {
                Err(e) if is_not_found(&e) => {
                    deleted_nodes.insert(node);
                }
                // Back in quarantine on the next pass if still missing.
                Err(e) => tracing::warn!(node = %node, error = %e, "error while getting node"),
                Ok(_) => {}
            }
        }
        if deleted_nodes.is_empty() {
            return;
        }
        let orphans: Vec<Arc<Pod>> = pods
            .iter()
            .filter(|p| deleted_nodes.contains(node_name(p)))
            .cloned()
            .collect();
        for p in &orphans {
            tracing::info!(pod = %pod_key(p), node = node_name(p), "found orphaned pod assigned to a deleted node, deleting");
        }
        let condition = json!({
            "type": "DisruptionTarget",
            "status": "True",
            "reason": "DeletionByPodGC",
            "message": "PodGC: node no longer exists",
            "lastTransitionTime": Time(Timestamp::now()),
        });
        self.delete_all(&orphans, Some(condition)).await;
    }

    async fn delete_all(&self, pods: &[Arc<Pod>], condition: Option<serde_json::Value>) {
        join_all(pods.iter().map(|p| {
            let condition = condition.clone();
            async move {
                match mark_failed_and_delete(&self.client, p, condition).await {
                    Ok(()) => tracing::info!(pod = %pod_key(p), "podgc force-deleted pod"),
                    Err(e) => {
                        tracing::warn!(pod = %pod_key(p), error = %e, "podgc could not delete pod")
                    }
                }
            }
        }))
        .await;
    }
}

fn pod_key(p: &Pod) -> String {
    format!("{}/{}", p.namespace().unwrap_or_default(), p.name_any())
}

/// Marks a pod `Failed` (no kubelet may ever do it) with `condition`, then deletes it
/// with grace period 0.
async fn mark_failed_and_delete(
    client: &Client,
    pod: &Pod,
    condition: Option<serde_json::Value>,
) -> Result<(), kube::Error> {
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or(""),
    );
    let name = pod.name_any();
    if !matches!(phase(pod), "Succeeded" | "Failed") {
        let mut status = json!({"phase": "Failed"});
        if let Some(c) = condition {
            status["conditions"] = json!([c]);
        }
        let patch = json!({"metadata": {"uid": pod.metadata.uid}, "status": status});
        match api
            .patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    match api
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn pod(name: &str, phase: &str, created: i64, reason: Option<&str>) -> Arc<Pod> {
        Arc::new(Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                creation_timestamp: Some(Time(Timestamp::from_second(created).expect("ts"))),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: Some(phase.into()),
                reason: reason.map(str::to_string),
                ..Default::default()
            }),
        })
    }

    #[test]
    fn oldest_terminated_pods_beyond_the_threshold_go_evicted_first() {
        let pods = vec![
            pod("running", "Running", 1, None),
            pod("old-done", "Succeeded", 10, None),
            pod("new-done", "Succeeded", 30, None),
            pod("mid-failed", "Failed", 20, None),
            pod("evicted", "Failed", 40, Some("Evicted")),
            pod("pending", "Pending", 2, None),
        ];
        let names = |v: Vec<Arc<Pod>>| -> Vec<String> { v.iter().map(|p| p.name_any()).collect() };
        assert_eq!(
            names(terminated_to_delete(&pods, 2)),
            ["evicted", "old-done"]
        );
        assert_eq!(
            names(terminated_to_delete(&pods, 0)),
            ["evicted", "old-done", "mid-failed", "new-done"]
        );
        assert!(terminated_to_delete(&pods, 4).is_empty());
        assert!(!is_terminated(&pods[0]) && is_terminated(&pods[1]));
    }
}
