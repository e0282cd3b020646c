//! Virtual nodes against a real in-process server: registration, Leases, the pod
//! provider (Running with an IP from the podCIDR, deletion, exit on demand) and pausing.

use std::future::Future;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::events::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;
use test_support::server::TestServer;
use tokio_util::sync::CancellationToken;
use virtual_nodes::provider::{EXIT_CODE_ANNOTATION, RUN_SECONDS_ANNOTATION};
use virtual_nodes::{VirtualNodeConfig, VirtualNodes, VirtualNodesHandle};

const DEADLINE: Duration = Duration::from_secs(20);

struct Cluster {
    server: TestServer,
    handle: VirtualNodesHandle,
    cancel: CancellationToken,
    run: tokio::task::JoinHandle<Result<(), virtual_nodes::Error>>,
}

impl Cluster {
    async fn start() -> anyhow::Result<Self> {
        let server = TestServer::start().await?;
        let config = VirtualNodeConfig {
            count: 3,
            lease_interval: Duration::from_secs(1),
            status_update_interval: Duration::from_secs(2),
            ..Default::default()
        };
        let nodes = VirtualNodes::new(server.client(), config)?;
        let handle = nodes.handle();
        let cancel = CancellationToken::new();
        let run = tokio::spawn(nodes.run(cancel.clone()));
        tokio::time::timeout(DEADLINE, handle.wait_registered())
            .await
            .context("registration timed out")??;
        Ok(Cluster {
            server,
            handle,
            cancel,
            run,
        })
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.cancel.cancel();
        self.run.await.context("join")??;
        self.server.shutdown().await;
        Ok(())
    }
}

/// Polls `check` until it yields `Some`, failing after [`DEADLINE`] with the last state.
async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<Result<T, String>>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = match check().await? {
            Ok(v) => return Ok(v),
            Err(state) => state,
        };
        if Instant::now() > deadline {
            bail!("timed out waiting for {what}; last state: {last}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn pod_manifest(
    name: &str,
    node: &str,
    restart_policy: &str,
    annotations: serde_json::Value,
) -> Pod {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations},
        "spec": {
            "nodeName": node,
            "restartPolicy": restart_policy,
            "containers": [{"name": "nginx", "image": "nginx:1.27"}],
            "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
        },
    }))
    .expect("pod manifest")
}

fn phase(p: &Pod) -> String {
    p.status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default()
}

fn renew_time(l: &Lease) -> Option<Timestamp> {
    l.spec
        .as_ref()
        .and_then(|s| s.renew_time.as_ref())
        .map(|t| t.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_register_ready_with_labels_taint_and_renewed_leases() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let names = cluster.handle.node_names();
    assert_eq!(
        names,
        vec!["rkube-virtual-0", "rkube-virtual-1", "rkube-virtual-2"]
    );
    let mut cidrs = Vec::new();
    for name in &names {
        let node = nodes.get(name).await?;
        let labels = node.metadata.labels.clone().unwrap_or_default();
        for (k, v) in [
            ("type", "virtual-kubelet"),
            ("kubernetes.io/role", "agent"),
            ("kubernetes.io/hostname", name.as_str()),
        ] {
            assert_eq!(
                labels.get(k).map(String::as_str),
                Some(v),
                "{name} label {k}"
            );
        }
        let spec = node.spec.clone().unwrap_or_default();
        let taint = &spec.taints.clone().unwrap_or_default()[0];
        assert_eq!(
            (
                taint.key.as_str(),
                taint.value.as_deref(),
                taint.effect.as_str()
            ),
            ("virtual-kubelet.io/provider", Some("rkube"), "NoSchedule")
        );
        let status = node.status.clone().unwrap_or_default();
        let ready = status
            .conditions
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .context("Ready")?;
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_deref()),
            ("True", Some("KubeletReady"))
        );
        assert_eq!(
            status
                .capacity
                .unwrap_or_default()
                .get("pods")
                .map(|q| q.0.as_str()),
            Some("110")
        );
        let cidr = spec.pod_cidr.context("podCIDR")?;
        assert_eq!(Some(cidr.parse()?), cluster.handle.pod_cidr(name));
        cidrs.push(cidr);
    }
    cidrs.sort();
    cidrs.dedup();
    assert_eq!(cidrs.len(), 3, "distinct podCIDRs: {cidrs:?}");

    let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-node-lease");
    let first = leases.get("rkube-virtual-1").await?;
    let spec = first.spec.clone().context("lease spec")?;
    assert_eq!(spec.holder_identity.as_deref(), Some("rkube-virtual-1"));
    assert_eq!(spec.lease_duration_seconds, Some(40));
    let t0 = renew_time(&first).context("renewTime")?;
    wait_for("lease renewal", || async {
        let t = renew_time(&leases.get("rkube-virtual-1").await?);
        Ok(if t.is_some_and(|t| t > t0) {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        })
    })
    .await?;

    // A paused node stops renewing while the others go on; resuming renews again.
    cluster.handle.pause_heartbeat("rkube-virtual-2")?;
    assert_eq!(
        cluster.handle.is_heartbeat_paused("rkube-virtual-2"),
        Some(true)
    );
    let other_renewed_after = |since: Timestamp| {
        let leases = leases.clone();
        async move {
            wait_for("renewals of a running node", || async {
                let t = renew_time(&leases.get("rkube-virtual-0").await?);
                Ok(
                    if t.is_some_and(|t| t.duration_since(since).as_secs_f64() >= 1.5) {
                        Ok(())
                    } else {
                        Err(format!("{t:?}"))
                    },
                )
            })
            .await
        }
    };
    // A renewal in flight when pausing may still land; one and a half intervals later none is.
    other_renewed_after(Timestamp::now()).await?;
    let paused_at = renew_time(&leases.get("rkube-virtual-2").await?);
    other_renewed_after(Timestamp::now()).await?;
    assert_eq!(
        renew_time(&leases.get("rkube-virtual-2").await?),
        paused_at,
        "paused node renewed its lease"
    );
    cluster.handle.resume_heartbeat("rkube-virtual-2")?;
    wait_for("renewal after resume", || async {
        let t = renew_time(&leases.get("rkube-virtual-2").await?);
        Ok(if t > paused_at {
            Ok(())
        } else {
            Err(format!("{t:?}"))
        })
    })
    .await?;
    assert!(cluster.handle.pause_heartbeat("no-such-node").is_err());
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bound_pods_run_with_an_ip_from_the_pod_cidr_and_deletion_finishes() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let pods: Api<Pod> = Api::namespaced(cluster.server.client(), "default");
    let node = "rkube-virtual-1";
    let cidr = cluster.handle.pod_cidr(node).context("podCIDR")?;
    pods.create(
        &PostParams::default(),
        &pod_manifest("web", node, "Always", json!({})),
    )
    .await?;
    let running = wait_for("pod Running", || async {
        let p = pods.get("web").await?;
        Ok(if phase(&p) == "Running" {
            Ok(p)
        } else {
            Err(phase(&p))
        })
    })
    .await?;
    let status = running.status.clone().context("status")?;
    let ip: Ipv4Addr = status.pod_ip.clone().context("podIP")?.parse()?;
    assert!(cidr.contains(&ip), "{ip} not in {cidr}");
    assert_eq!(status.pod_ips.unwrap_or_default()[0].ip, ip.to_string());
    assert!(
        status.host_ip.is_some_and(|h| h.starts_with("100.")),
        "hostIP from 100.64.0.0/10"
    );
    let conditions = status.conditions.unwrap_or_default();
    for t in [
        "PodReadyToStartContainers",
        "Initialized",
        "ContainersReady",
        "Ready",
        "PodScheduled",
    ] {
        assert!(
            conditions
                .iter()
                .any(|c| c.type_ == t && c.status == "True"),
            "{t} True: {conditions:?}"
        );
    }
    let cs = &status.container_statuses.unwrap_or_default()[0];
    assert!(cs.ready && cs.started == Some(true) && cs.restart_count == 0);
    assert_eq!(cs.image_id, "virtual://nginx:1.27");
    assert!(cs.state.as_ref().and_then(|s| s.running.as_ref()).is_some());

    // A second pod on the node gets another address.
    pods.create(
        &PostParams::default(),
        &pod_manifest("web2", node, "Always", json!({})),
    )
    .await?;
    let ip2 = wait_for("second pod IP", || async {
        let p = pods.get("web2").await?;
        let ip = p.status.and_then(|s| s.pod_ip);
        Ok(ip.ok_or_else(|| "no IP yet".to_string()))
    })
    .await?;
    assert_ne!(ip2, ip.to_string());

    // The kubelet-like `Started` event is on record.
    let events: Api<Event> = Api::namespaced(cluster.server.client(), "default");
    wait_for("Started event", || async {
        let list = events.list(&ListParams::default()).await?;
        let reasons: Vec<String> = list
            .items
            .iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("web"))
            .filter_map(|e| e.reason.clone())
            .collect();
        Ok(if reasons.iter().any(|r| r == "Started") {
            Ok(())
        } else {
            Err(format!("{reasons:?}"))
        })
    })
    .await?;

    pods.delete("web", &DeleteParams::default()).await?;
    wait_for("pod gone", || async {
        Ok(match pods.get_opt("web").await? {
            None => Ok(()),
            Some(p) => Err(format!(
                "still there, deleting since {:?}",
                p.metadata.deletion_timestamp
            )),
        })
    })
    .await?;

    // A pod held by a finalizer ends Failed before its deletion waits on the finalizer.
    let mut held = pod_manifest("held", node, "Never", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".to_string()]);
    pods.create(&PostParams::default(), &held).await?;
    wait_for("held pod Running", || async {
        let p = pods.get("held").await?;
        Ok(if phase(&p) == "Running" {
            Ok(())
        } else {
            Err(phase(&p))
        })
    })
    .await?;
    pods.delete("held", &DeleteParams::default()).await?;
    wait_for("held pod Failed", || async {
        let p = pods.get("held").await?;
        Ok(if phase(&p) == "Failed" {
            Ok(())
        } else {
            Err(phase(&p))
        })
    })
    .await?;
    let release = json!({"metadata": {"finalizers": null}});
    pods.patch("held", &PatchParams::default(), &Patch::Merge(&release))
        .await?;
    wait_for("held pod gone", || async {
        Ok(if pods.get_opt("held").await?.is_none() {
            Ok(())
        } else {
            Err("still there".to_string())
        })
    })
    .await?;
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_nodes_leave_pods_alone_until_resumed_and_repost_foreign_conditions(
) -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let client = cluster.server.client();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    cluster.handle.pause_heartbeat("rkube-virtual-2")?;
    pods.create(
        &PostParams::default(),
        &pod_manifest("waits", "rkube-virtual-2", "Always", json!({})),
    )
    .await?;
    pods.create(
        &PostParams::default(),
        &pod_manifest("runs", "rkube-virtual-1", "Always", json!({})),
    )
    .await?;
    wait_for("pod on a live node Running", || async {
        let p = pods.get("runs").await?;
        Ok(if phase(&p) == "Running" {
            Ok(())
        } else {
            Err(phase(&p))
        })
    })
    .await?;
    assert_eq!(
        phase(&pods.get("waits").await?),
        "Pending",
        "a paused node started a pod"
    );
    cluster.handle.resume_heartbeat("rkube-virtual-2")?;
    wait_for("pod on the resumed node Running", || async {
        let p = pods.get("waits").await?;
        Ok(if phase(&p) == "Running" {
            Ok(())
        } else {
            Err(phase(&p))
        })
    })
    .await?;

    // The node lifecycle controller marks a node Unknown; a live virtual node answers.
    let nodes: Api<Node> = Api::all(client.clone());
    let unknown = json!({"status": {"conditions": [{
        "type": "Ready", "status": "Unknown", "reason": "NodeStatusUnknown",
        "message": "Kubelet stopped posting node status.",
    }]}});
    nodes
        .patch_status(
            "rkube-virtual-0",
            &PatchParams::default(),
            &Patch::Strategic(&unknown),
        )
        .await?;
    wait_for("Ready True again", || async {
        let n = nodes.get("rkube-virtual-0").await?;
        let ready = n
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .find(|c| c.type_ == "Ready")
            .map(|c| c.status)
            .unwrap_or_default();
        Ok(if ready == "True" { Ok(()) } else { Err(ready) })
    })
    .await?;
    cluster.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exit_code_annotation_finishes_never_pods() -> anyhow::Result<()> {
    let cluster = Cluster::start().await?;
    let pods: Api<Pod> = Api::namespaced(cluster.server.client(), "default");
    let node = "rkube-virtual-0";
    let cases = [
        (
            "ok",
            json!({EXIT_CODE_ANNOTATION: "0"}),
            "Succeeded",
            0,
            "Completed",
        ),
        (
            "fails",
            json!({EXIT_CODE_ANNOTATION: "3"}),
            "Failed",
            3,
            "Error",
        ),
        (
            "later",
            json!({EXIT_CODE_ANNOTATION: "0", RUN_SECONDS_ANNOTATION: "1"}),
            "Succeeded",
            0,
            "Completed",
        ),
    ];
    for (name, annotations, ..) in &cases {
        pods.create(
            &PostParams::default(),
            &pod_manifest(name, node, "Never", annotations.clone()),
        )
        .await?;
    }
    let later_running = wait_for("delayed pod Running", || async {
        let p = pods.get("later").await?;
        Ok(match phase(&p).as_str() {
            "Running" => Ok(true),
            "Succeeded" => Ok(false),
            other => Err(other.to_string()),
        })
    })
    .await?;
    assert!(
        later_running,
        "a pod with run-seconds 1 was never seen Running"
    );
    for (name, _, want_phase, want_code, want_reason) in cases {
        let p = wait_for(&format!("{name} terminal"), || async {
            let p = pods.get(name).await?;
            Ok(if matches!(phase(&p).as_str(), "Succeeded" | "Failed") {
                Ok(p)
            } else {
                Err(phase(&p))
            })
        })
        .await?;
        assert_eq!(phase(&p), want_phase, "{name}");
        let cs = &p
            .status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()[0];
        let t = cs
            .state
            .as_ref()
            .and_then(|s| s.terminated.clone())
            .context("terminated state")?;
        assert_eq!(
            (t.exit_code, t.reason.as_deref()),
            (want_code, Some(want_reason)),
            "{name}"
        );
        assert!(!cs.ready);
    }
    cluster.stop().await
}
