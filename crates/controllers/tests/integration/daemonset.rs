//! DaemonSet controller against a real in-process server with virtual nodes as the
//! kubelets (acceptance 4 of the controllers issue): one pod per eligible node,
//! including a node that joins later, none on a node whose taint is not tolerated;
//! pods pinned by node affinity and placed by the scheduler; rolling updates that
//! respect maxUnavailable / maxSurge, proven from a single pod watch; OnDelete.

use crate::common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use anyhow::Context;
use common::*;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Event, Node, Pod, Taint};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use virtual_nodes::{default_taint, VirtualNodeConfig, VirtualNodes};

/// A set of virtual nodes running until dropped.
struct Nodes {
    cancel: CancellationToken,
    run: tokio::task::JoinHandle<Result<(), virtual_nodes::Error>>,
    names: Vec<String>,
}

impl Nodes {
    async fn start(
        client: &Client,
        prefix: &str,
        count: usize,
        taints: Vec<Taint>,
    ) -> anyhow::Result<Self> {
        let config = VirtualNodeConfig {
            count,
            prefix: prefix.to_string(),
            taints,
            lease_interval: Duration::from_secs(1),
            record_node_events: false,
            record_pod_events: false,
            ..Default::default()
        };
        let nodes = VirtualNodes::new(client.clone(), config)?;
        let handle = nodes.handle();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(nodes.run(cancel.clone()));
        tokio::time::timeout(DEADLINE, handle.wait_registered())
            .await
            .context("virtual nodes did not register")??;
        Ok(Nodes {
            cancel,
            run,
            names: handle.node_names(),
        })
    }

    async fn stop(self) {
        self.cancel.cancel();
        let _ = self.run.await;
    }
}

/// A DaemonSet that tolerates the virtual-node taint (the scenario's pod fragment).
fn agent(name: &str, strategy: serde_json::Value) -> DaemonSet {
    serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "DaemonSet",
        "metadata": {"name": name},
        "spec": {
            "selector": {"matchLabels": {"app": name}},
            "updateStrategy": strategy,
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "containers": [{"name": "agent", "image": "busybox:1.36"}],
                    "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                },
            },
        },
    }))
    .expect("daemonset manifest")
}

/// Node → names of the running, ready, not terminating pods there.
async fn pods_by_node(
    client: &Client,
    ns: &str,
    app: &str,
) -> anyhow::Result<BTreeMap<String, Vec<String>>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for p in active_pods(client, ns, &format!("app={app}")).await? {
        let node = p
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .unwrap_or_default();
        out.entry(node)
            .or_default()
            .push(p.metadata.name.clone().unwrap_or_default());
    }
    Ok(out)
}

async fn wait_status(
    sets: &Api<DaemonSet>,
    name: &str,
    what: &str,
    ok: impl Fn(&DaemonSetStatus) -> bool,
) -> anyhow::Result<DaemonSetStatus> {
    wait_for(what, || async {
        let ds = sets.get(name).await?;
        let status = ds.status.clone().unwrap_or_default();
        Ok((status.observed_generation == ds.metadata.generation && ok(&status)).then_some(status))
    })
    .await
}

/// `(desired, current, ready, updated, available, misscheduled)`.
fn counts(s: &DaemonSetStatus) -> (i32, i32, i32, i32, i32, i32) {
    (
        s.desired_number_scheduled,
        s.current_number_scheduled,
        s.number_ready,
        s.updated_number_scheduled.unwrap_or(0),
        s.number_available.unwrap_or(0),
        s.number_misscheduled,
    )
}

fn all_at(n: i32) -> (i32, i32, i32, i32, i32, i32) {
    (n, n, n, n, n, 0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_runs_one_pod_per_eligible_node() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "ds-place";
    namespace(&client, ns).await?;
    let nodes = Nodes::start(&client, "vn", 3, vec![default_taint()]).await?;
    let gpu = Taint {
        key: "dedicated".into(),
        value: Some("gpu".into()),
        effect: "NoSchedule".into(),
        time_added: None,
    };
    let tainted = Nodes::start(&client, "gpu", 1, vec![default_taint(), gpu]).await?;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    sets.create(&PostParams::default(), &agent("agent", json!({})))
        .await?;

    let status = wait_status(&sets, "agent", "3 daemons ready", |s| {
        counts(s) == all_at(3)
    })
    .await?;
    assert_eq!(status.number_unavailable, None);
    let placed = pods_by_node(&client, ns, "agent").await?;
    assert_eq!(
        placed.keys().cloned().collect::<Vec<_>>(),
        nodes.names,
        "{placed:?}"
    );
    assert!(placed.values().all(|p| p.len() == 1), "{placed:?}");

    // Each pod is pinned to its node by affinity (the scheduler bound it) and carries
    // the daemon tolerations and the revision hash.
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);
    let revs = revisions.list(&ListParams::default()).await?.items;
    assert_eq!(revs.len(), 1);
    let hash = revs[0]
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get("controller-revision-hash"))
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        revs[0].metadata.name.as_deref(),
        Some(format!("agent-{hash}").as_str())
    );
    for (node, names) in &placed {
        let p = pods.get(&names[0]).await?;
        let spec = p.spec.clone().unwrap_or_default();
        let pinned = spec
            .affinity
            .and_then(|a| a.node_affinity)
            .and_then(|na| na.required_during_scheduling_ignored_during_execution)
            .map(|s| s.node_selector_terms)
            .unwrap_or_default();
        let fields = pinned[0].match_fields.clone().unwrap_or_default();
        assert_eq!(
            (
                fields[0].key.as_str(),
                fields[0].operator.as_str(),
                fields[0].values.clone()
            ),
            ("metadata.name", "In", Some(vec![node.clone()]))
        );
        let tolerated: HashSet<String> = spec
            .tolerations
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.key)
            .collect();
        for key in [
            "node.kubernetes.io/not-ready",
            "node.kubernetes.io/unreachable",
            "node.kubernetes.io/disk-pressure",
            "node.kubernetes.io/memory-pressure",
            "node.kubernetes.io/pid-pressure",
            "node.kubernetes.io/unschedulable",
            "virtual-kubelet.io/provider",
        ] {
            assert!(tolerated.contains(key), "{key} missing on {node}");
        }
        let labels = p.metadata.labels.clone().unwrap_or_default();
        assert_eq!(labels.get("controller-revision-hash"), Some(&hash));
        assert_eq!(
            labels.get("pod-template-generation").map(String::as_str),
            Some("1")
        );
    }
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    let created = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|e| {
            e.reason.as_deref() == Some("SuccessfulCreate")
                && e.message
                    .as_deref()
                    .is_some_and(|m| m.starts_with("Created pod: agent-"))
        })
        .count();
    assert_eq!(created, 3);

    // A node that joins later gets a pod.
    let late = Nodes::start(&client, "late", 1, vec![default_taint()]).await?;
    wait_status(&sets, "agent", "4 daemons ready", |s| {
        counts(s) == all_at(4)
    })
    .await?;
    let placed = pods_by_node(&client, ns, "agent").await?;
    assert!(placed.contains_key(&late.names[0]), "{placed:?}");
    assert!(!placed.contains_key(&tainted.names[0]), "{placed:?}");

    // A node that stops qualifying (an untolerated NoExecute taint) loses its pod.
    let node_api: Api<Node> = Api::all(client.clone());
    let evict = json!({"spec": {"taints": [
        {"key": "virtual-kubelet.io/provider", "value": "rkube", "effect": "NoSchedule"},
        {"key": "maintenance", "value": "yes", "effect": "NoExecute"},
    ]}});
    node_api
        .patch(
            &nodes.names[0],
            &PatchParams::default(),
            &Patch::Merge(&evict),
        )
        .await?;
    wait_status(&sets, "agent", "back to 3 nodes", |s| {
        counts(s) == all_at(3)
    })
    .await?;
    wait_for("pod gone from the tainted node", || async {
        let placed = pods_by_node(&client, ns, "agent").await?;
        Ok((!placed.contains_key(&nodes.names[0]) && placed.len() == 3).then_some(()))
    })
    .await?;

    late.stop().await;
    tainted.stop().await;
    nodes.stop().await;
    Ok(())
}

/// Replays a pod log: the fewest ready pods and the most pods seen at once.
fn replay(changes: &[PodChange], start_ready: &HashSet<String>) -> (usize, usize) {
    let mut ready = start_ready.clone();
    let mut alive = start_ready.clone();
    let (mut min_ready, mut max_alive) = (ready.len(), alive.len());
    for c in changes {
        match c {
            PodChange::Created(n) => {
                alive.insert(n.clone());
            }
            PodChange::Ready(n) => {
                ready.insert(n.clone());
            }
            PodChange::Deleted(n) => {
                ready.remove(n);
                alive.remove(n);
            }
        }
        min_ready = min_ready.min(ready.len());
        max_alive = max_alive.max(alive.len());
    }
    (min_ready, max_alive)
}

async fn set_image(sets: &Api<DaemonSet>, name: &str, image: &str) -> anyhow::Result<()> {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "agent", "image": image}]}}}});
    sets.patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await?;
    Ok(())
}

async fn ready_pod_names(client: &Client, ns: &str, app: &str) -> anyhow::Result<HashSet<String>> {
    Ok(active_pods(client, ns, &format!("app={app}"))
        .await?
        .into_iter()
        .filter(is_ready)
        .filter_map(|p| p.metadata.name)
        .collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonset_rolling_updates_respect_max_unavailable_and_max_surge() -> anyhow::Result<()> {
    let server = TestServer::start().await?;
    let client = server.client();
    let ns = "ds-update";
    namespace(&client, ns).await?;
    let nodes = Nodes::start(&client, "vn", 3, vec![default_taint()]).await?;
    let sets: Api<DaemonSet> = Api::namespaced(client.clone(), ns);
    let revisions: Api<ControllerRevision> = Api::namespaced(client.clone(), ns);

    // maxUnavailable 1: never fewer than 2 ready pods while the image changes.
    let strategy = json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1}});
    sets.create(&PostParams::default(), &agent("slow", strategy))
        .await?;
    wait_status(&sets, "slow", "3 ready", |s| counts(s) == all_at(3)).await?;
    let before = ready_pod_names(&client, ns, "slow").await?;
    let log = PodLog::start(&client, ns).await?;
    set_image(&sets, "slow", "busybox:1.37").await?;
    wait_status(&sets, "slow", "rolled out", |s| counts(s) == all_at(3)).await?;
    let changes = log.changes();
    let (min_ready, max_alive) = replay(&changes, &before);
    assert!(
        min_ready >= 2,
        "more than one node unavailable: {changes:?}"
    );
    assert!(max_alive <= 3, "surged without maxSurge: {changes:?}");
    assert_eq!(
        changes
            .iter()
            .filter(|c| matches!(c, PodChange::Deleted(_)))
            .count(),
        3
    );
    let mut numbers: Vec<i64> = revisions
        .list(&ListParams::default().labels("app=slow"))
        .await?
        .items
        .iter()
        .map(|r| r.revision)
        .collect();
    numbers.sort();
    assert_eq!(numbers, [1, 2]);
    let generations: HashSet<String> = active_pods(&client, ns, "app=slow")
        .await?
        .iter()
        .filter_map(|p| {
            p.metadata
                .labels
                .as_ref()?
                .get("pod-template-generation")
                .cloned()
        })
        .collect();
    assert_eq!(generations, HashSet::from(["2".to_string()]));
    drop(log);

    // maxSurge 1: a new pod starts beside the old one; all 3 stay ready throughout.
    let strategy =
        json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}});
    sets.create(&PostParams::default(), &agent("surge", strategy))
        .await?;
    wait_status(&sets, "surge", "3 ready", |s| counts(s) == all_at(3)).await?;
    let before = ready_pod_names(&client, ns, "surge").await?;
    let log = PodLog::start(&client, ns).await?;
    set_image(&sets, "surge", "busybox:1.37").await?;
    wait_status(&sets, "surge", "rolled out", |s| counts(s) == all_at(3)).await?;
    wait_for("old pods gone", || async {
        let placed = pods_by_node(&client, ns, "surge").await?;
        Ok((placed.len() == 3 && placed.values().all(|p| p.len() == 1)).then_some(()))
    })
    .await?;
    let surge_changes: Vec<PodChange> = log
        .changes()
        .into_iter()
        .filter(|c| match c {
            PodChange::Created(n) | PodChange::Ready(n) | PodChange::Deleted(n) => {
                n.starts_with("surge-")
            }
        })
        .collect();
    let (min_ready, max_alive) = replay(&surge_changes, &before);
    assert!(
        min_ready >= 3,
        "a node went without a ready pod: {surge_changes:?}"
    );
    assert!(
        max_alive <= 4,
        "more than one surge pod at once: {surge_changes:?}"
    );

    // OnDelete: a new template replaces a pod only when the pod is deleted.
    let patch = json!({"spec": {"updateStrategy": {"type": "OnDelete", "rollingUpdate": null}}});
    sets.patch("slow", &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    set_image(&sets, "slow", "busybox:1.38").await?;
    let status = wait_status(&sets, "slow", "new template seen", |s| {
        s.updated_number_scheduled.is_none() && s.number_ready == 3
    })
    .await?;
    assert_eq!(status.current_number_scheduled, 3);
    let pod_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let victim = active_pods(&client, ns, "app=slow").await?[0]
        .metadata
        .name
        .clone()
        .unwrap_or_default();
    pod_api.delete(&victim, &Default::default()).await?;
    wait_status(&sets, "slow", "one pod replaced", |s| {
        s.updated_number_scheduled == Some(1) && s.number_ready == 3
    })
    .await?;
    let images: Vec<String> = active_pods(&client, ns, "app=slow")
        .await?
        .iter()
        .filter_map(|p| p.spec.as_ref()?.containers[0].image.clone())
        .collect();
    assert_eq!(
        images.iter().filter(|i| *i == "busybox:1.38").count(),
        1,
        "{images:?}"
    );
    nodes.stop().await;
    Ok(())
}
