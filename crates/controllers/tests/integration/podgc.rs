//! Pod garbage collection against a real in-process server, with a short period,
//! quarantine and terminated-pod threshold: orphaned pods (bound to a node that does
//! not exist), terminated pods beyond the threshold (oldest first) and unscheduled
//! terminating pods are force-deleted after being marked Failed.

use crate::batch_support;
use crate::common;

use std::time::Duration;

use batch_support::*;
use common::*;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

const HOLD: &str = "test.rkube.io/hold";

fn pod(name: &str, node: Option<&str>, hold: bool) -> Pod {
    let mut spec = json!({
        "containers": [{"name": "main", "image": "busybox:1.36"}],
        // No scheduler acts on these: the test decides where they are.
        "schedulerName": "test-none",
    });
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    let finalizers = if hold { json!([HOLD]) } else { json!([]) };
    serde_json::from_value(json!({
        "metadata": {"name": name, "finalizers": finalizers},
        "spec": spec,
    }))
    .expect("pod manifest")
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

async fn release(pods: &Api<Pod>, name: &str) -> anyhow::Result<()> {
    pods.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
    )
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podgc_deletes_orphaned_terminated_and_unscheduled_terminating_pods() -> anyhow::Result<()>
{
    let options = controllers::options::ControllerOptions {
        terminated_pod_gc_threshold: 2,
        pod_gc_period: Duration::from_millis(100),
        pod_gc_quarantine: Duration::from_millis(300),
        ..fast_options()
    };
    let cluster = Cluster::start(options, 0).await?;
    let client = cluster.client();
    let ns = "podgc";
    namespace(&client, ns).await?;
    let nodes: Api<Node> = Api::all(client.clone());
    let node: Node = serde_json::from_value(json!({"metadata": {"name": "real-node"}}))?;
    nodes.create(&PostParams::default(), &node).await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);

    // Orphaned: bound to a node that does not exist. The finalizer keeps it visible.
    pods.create(
        &PostParams::default(),
        &pod("orphan", Some("ghost-node"), true),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod("homed", Some("real-node"), false),
    )
    .await?;
    let orphan = wait_for("orphan marked failed and deleted", || async {
        let p = pods.get("orphan").await?;
        Ok((p.metadata.deletion_timestamp.is_some() && phase(&p) == "Failed").then_some(p))
    })
    .await?;
    let cond = orphan
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"))
        .cloned()
        .expect("DisruptionTarget condition");
    assert_eq!(cond.status, "True");
    assert_eq!(cond.reason.as_deref(), Some("DeletionByPodGC"));
    assert_eq!(
        cond.message.as_deref(),
        Some("PodGC: node no longer exists")
    );
    release(&pods, "orphan").await?;
    assert!(
        pods.get("homed")
            .await?
            .metadata
            .deletion_timestamp
            .is_none(),
        "a pod on a live node stays"
    );

    // Unscheduled and terminating: no kubelet will ever finish it.
    pods.create(&PostParams::default(), &pod("limbo", None, true))
        .await?;
    pods.delete("limbo", &DeleteParams::default()).await?;
    wait_for("unscheduled terminating pod marked failed", || async {
        Ok((phase(&pods.get("limbo").await?) == "Failed").then_some(()))
    })
    .await?;
    release(&pods, "limbo").await?;

    // Terminated beyond the threshold of 2: the oldest go first.
    for name in ["t-a", "t-b", "t-c", "t-d"] {
        pods.create(&PostParams::default(), &pod(name, Some("real-node"), false))
            .await?;
    }
    for name in ["t-a", "t-b", "t-c", "t-d"] {
        let status = json!({"status": {"phase": "Succeeded"}});
        pods.patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await?;
    }
    wait_for("two oldest terminated pods deleted", || async {
        let left: Vec<String> = pods
            .list(&Default::default())
            .await?
            .items
            .iter()
            .filter(|p| phase(p) == "Succeeded")
            .filter_map(|p| p.metadata.name.clone())
            .collect();
        Ok((left == ["t-c", "t-d"]).then_some(()))
    })
    .await?;
    // The running pod was never counted.
    assert!(pods
        .get("homed")
        .await?
        .metadata
        .deletion_timestamp
        .is_none());
    cluster.stop().await;
    Ok(())
}
