//! Node lifecycle and taint eviction against a real in-process server (issue 3, item 7):
//! a virtual node that stops heartbeating becomes `Ready=Unknown`, is tainted
//! `node.kubernetes.io/unreachable`, and once its pods' 2 s toleration runs out they
//! are deleted and their ReplicaSet recreates them on the other nodes; a pod that
//! tolerates the taint forever stays. When the node heartbeats again the taints go.

use crate::common;

use std::time::Duration;

use anyhow::Context;
use common::*;
use controllers::options::ControllerOptions;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use virtual_nodes::{VirtualNodeConfig, VirtualNodes};

const UNREACHABLE: &str = "node.kubernetes.io/unreachable";

fn node_name(p: &Pod) -> String {
    p.spec
        .as_ref()
        .and_then(|s| s.node_name.clone())
        .unwrap_or_default()
}

fn ready(n: &Node) -> Option<(String, String, String)> {
    let c = n
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")?;
    Some((
        c.status.clone(),
        c.reason.clone().unwrap_or_default(),
        c.message.clone().unwrap_or_default(),
    ))
}

fn taint_keys(n: &Node) -> Vec<String> {
    n.spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .into_iter()
        .flatten()
        .map(|t| format!("{}:{}", t.key, t.effect))
        .collect()
}

fn tolerations(seconds: Option<i64>) -> serde_json::Value {
    let mut unreachable = json!({"key": UNREACHABLE, "operator": "Exists", "effect": "NoExecute"});
    if let Some(s) = seconds {
        unreachable["tolerationSeconds"] = json!(s);
    }
    json!([
        {"key": "virtual-kubelet.io/provider", "operator": "Exists"},
        unreachable,
    ])
}

async fn events(client: &Client, ns: &str, reason: &str) -> anyhow::Result<Vec<Event>> {
    let api: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(api
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_node_is_tainted_and_its_pods_move_after_their_toleration() -> anyhow::Result<()> {
    init_tracing();
    let server = TestServer::start_without_controllers().await?;
    let client = server.client();
    let cancel = CancellationToken::new();
    let options = ControllerOptions {
        node_monitor_grace_period: Duration::from_secs(3),
        node_startup_grace_period: Duration::from_secs(10),
        node_monitor_period: Duration::from_millis(500),
        node_eviction_rate: 10.0,
        ..Default::default()
    };
    let controllers = tokio::spawn(controllers::run_all_with(
        client.clone(),
        cancel.clone(),
        options,
    ));
    let vn = VirtualNodes::new(
        client.clone(),
        VirtualNodeConfig {
            count: 3,
            prefix: "lifecycle".into(),
            lease_interval: Duration::from_millis(500),
            record_node_events: false,
            ..Default::default()
        },
    )?;
    let handle = vn.handle();
    let nodes_task = tokio::spawn(vn.run(cancel.clone()));
    tokio::time::timeout(Duration::from_secs(20), handle.wait_registered())
        .await
        .context("virtual nodes did not register")??;

    let result = scenario(&client, &handle).await;

    cancel.cancel();
    let _ = controllers.await;
    let _ = nodes_task.await;
    server.shutdown().await;
    result
}

async fn scenario(
    client: &Client,
    handle: &virtual_nodes::VirtualNodesHandle,
) -> anyhow::Result<()> {
    let ns = "lifecycle";
    namespace(client, ns).await?;
    let rs_api: Api<ReplicaSet> = Api::namespaced(client.clone(), ns);
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let rs: ReplicaSet = serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {
            "replicas": 3,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    // Graceful: the victims stay Terminating on the silent node, to be inspected.
                    "containers": [{"name": "main", "image": "busybox:1.36"}],
                    "tolerations": tolerations(Some(2)),
                },
            },
        },
    }))?;
    rs_api.create(&PostParams::default(), &rs).await?;
    let placed = wait_for("3 running ReplicaSet pods", || async {
        let ps = active_pods(client, ns, "app=web").await?;
        Ok(
            (ps.len() == 3 && ps.iter().all(|p| is_ready(p) && !node_name(p).is_empty()))
                .then_some(ps),
        )
    })
    .await?;
    let victim = node_name(&placed[0]);
    let victims: Vec<String> = placed
        .iter()
        .filter(|p| node_name(p) == victim)
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    // A pod that tolerates the taint forever, bound to the same node.
    let stays: Pod = serde_json::from_value(json!({
        "metadata": {"name": "stays"},
        "spec": {
            "nodeName": victim,
            "containers": [{"name": "main", "image": "busybox:1.36"}],
            "tolerations": tolerations(None),
        },
    }))?;
    pods.create(&PostParams::default(), &stays).await?;
    wait_for("the pinned pod to run", || async {
        Ok(pods.get_opt("stays").await?.filter(is_ready).map(|_| ()))
    })
    .await?;

    handle.pause_heartbeat(&victim)?;
    let nodes: Api<Node> = Api::all(client.clone());
    let node = wait_for("Ready=Unknown and the unreachable taints", || async {
        let n = nodes.get(&victim).await?;
        let keys = taint_keys(&n);
        let unknown = ready(&n).is_some_and(|r| r.0 == "Unknown");
        Ok((unknown
            && keys.contains(&format!("{UNREACHABLE}:NoExecute"))
            && keys.contains(&format!("{UNREACHABLE}:NoSchedule")))
        .then_some(n))
    })
    .await?;
    assert_eq!(
        ready(&node),
        Some((
            "Unknown".into(),
            "NodeStatusUnknown".into(),
            "Kubelet stopped posting node status.".into()
        ))
    );
    let conditions = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.clone())
        .unwrap_or_default();
    for t in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
        let c = conditions
            .iter()
            .find(|c| c.type_ == t)
            .context("condition")?;
        assert_eq!(c.status, "Unknown", "{t}");
    }
    let tainted_at = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_ref())
        .and_then(|ts| {
            ts.iter()
                .find(|t| t.key == UNREACHABLE && t.effect == "NoExecute")
        })
        .and_then(|t| t.time_added.clone())
        .context("NoExecute taint has timeAdded")?;

    // The victims are deleted once their 2 s are up, and replaced elsewhere.
    let moved = wait_for("3 ready pods on the other nodes", || async {
        let ps = active_pods(client, ns, "app=web").await?;
        Ok(
            (ps.len() == 3 && ps.iter().all(|p| is_ready(p) && node_name(p) != victim))
                .then_some(ps),
        )
    })
    .await?;
    assert!(moved
        .iter()
        .all(|p| !victims.contains(p.metadata.name.as_ref().unwrap_or(&String::new()))));
    for name in &victims {
        let p = pods.get(name).await?;
        assert!(
            p.metadata.deletion_timestamp.is_some(),
            "{name} marked for deletion"
        );
        let target = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "DisruptionTarget"))
            .context("DisruptionTarget condition")?;
        assert_eq!(target.reason.as_deref(), Some("DeletionByTaintManager"));
        // Not before the toleration ran out (timestamps have whole seconds).
        let after = target
            .last_transition_time
            .as_ref()
            .context("transition time")?
            .0
            .duration_since(tainted_at.0);
        assert!(
            after.as_secs_f64() >= 1.0,
            "{name} deleted {after:?} after the taint"
        );
    }
    let marked = events(client, ns, "TaintManagerEviction").await?;
    for name in &victims {
        let note = format!("Marking for deletion Pod {ns}/{name}");
        assert!(
            marked
                .iter()
                .any(|e| e.message.as_deref() == Some(note.as_str())),
            "no event {note:?} in {marked:?}"
        );
    }
    let not_ready = events(client, ns, "NodeNotReady").await?;
    assert!(not_ready
        .iter()
        .any(|e| e.involved_object.name.as_deref() == Some("stays")));
    let stays = pods.get("stays").await?;
    assert!(
        stays.metadata.deletion_timestamp.is_none(),
        "a pod tolerating forever stays"
    );

    handle.resume_heartbeat(&victim)?;
    wait_for("Ready again and untainted", || async {
        let n = nodes.get(&victim).await?;
        let keys = taint_keys(&n);
        Ok((ready(&n).is_some_and(|r| r.0 == "True")
            && !keys.iter().any(|k| k.starts_with(UNREACHABLE)))
        .then_some(()))
    })
    .await?;
    let node_events = events(client, "default", "NodeNotReady").await?;
    assert!(
        node_events.iter().any(|e| e.message.as_deref()
            == Some(format!("Node {victim} status is now: NodeNotReady").as_str())),
        "{node_events:?}"
    );
    Ok(())
}
