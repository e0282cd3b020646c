//! The metrics API and the HorizontalPodAutoscaler on virtual nodes whose pods report
//! the usage their annotations ask for: stock kubectl's `top node` / `top pod` output,
//! and an HPA that scales a Deployment up while usage is above target and back down
//! once it falls below (skipped when kubectl is not installed).

use crate::common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::*;
use controllers::options::ControllerOptions;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::autoscaling::{v1 as autoscaling_v1, v2 as autoscaling_v2};
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use virtual_nodes::stats::{CPU_USAGE_ANNOTATION, MEMORY_USAGE_ANNOTATION};
use virtual_nodes::{VirtualNodeConfig, VirtualNodes};

const KUBECTL: &str = "/usr/bin/kubectl";
/// How often kubectl is re-run while waiting for its output to change.
const KUBECTL_POLL: Duration = Duration::from_millis(250);

/// A server with a 1 s metric resolution, the controllers with a 1 s HPA sync, and two
/// virtual nodes serving stats on loopback.
struct Cluster {
    server: TestServer,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Cluster {
    async fn start(prefix: &str, node_ips: &str) -> anyhow::Result<Cluster> {
        init_tracing();
        let server = TestServer::start_with(|c| {
            c.disable_controller_manager = true;
            c.metric_resolution = Duration::from_secs(1);
        })
        .await?;
        let client = server.client();
        let cancel = CancellationToken::new();
        let options = ControllerOptions {
            hpa_sync_period: Duration::from_secs(1),
            ..Default::default()
        };
        let mut tasks = vec![tokio::spawn(controllers::run_all_with(
            client.clone(),
            cancel.clone(),
            options,
        ))];
        let nodes = VirtualNodes::new(
            client.clone(),
            VirtualNodeConfig {
                count: 2,
                prefix: prefix.to_string(),
                taints: Vec::new(),
                node_ip_base: node_ips.parse()?,
                kubelet_port: Some(0),
                record_node_events: false,
                ..Default::default()
            },
        )?;
        let handle = nodes.handle();
        let c = cancel.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = nodes.run(c).await {
                eprintln!("virtual nodes stopped: {e}");
            }
        }));
        tokio::time::timeout(Duration::from_secs(20), handle.wait_registered())
            .await
            .context("virtual nodes did not register")??;
        Ok(Cluster {
            server,
            cancel,
            tasks,
        })
    }

    fn client(&self) -> Client {
        self.server.client()
    }

    async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
        self.server.shutdown().await;
    }
}

/// Runs kubectl; `Err` carries its output when it fails.
async fn kubectl(kubeconfig: &Path, args: &[&str]) -> anyhow::Result<String> {
    let kubeconfig: PathBuf = kubeconfig.to_path_buf();
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(KUBECTL)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(&args)
            .output()?;
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        if !out.status.success() {
            bail!("kubectl {args:?} failed: {stdout}{stderr}");
        }
        Ok(stdout)
    })
    .await?
}

/// Re-runs kubectl until its output satisfies `done`, failing after [`DEADLINE`].
async fn kubectl_until(
    kubeconfig: &Path,
    args: &[&str],
    done: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let last = kubectl(kubeconfig, args).await;
        if let Ok(out) = &last {
            if done(out) {
                return Ok(out.clone());
            }
        }
        if Instant::now() > deadline {
            bail!("timed out waiting for kubectl {args:?}; last: {last:?}");
        }
        tokio::time::sleep(KUBECTL_POLL).await;
    }
}

fn deployment(name: &str, replicas: i32, cpu_usage: &str, cpu_request: &str) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name},
                    "annotations": {CPU_USAGE_ANNOTATION: cpu_usage, MEMORY_USAGE_ANNOTATION: "64Mi"},
                },
                "spec": {"containers": [{
                    "name": "main",
                    "image": "registry.k8s.io/pause:3.10",
                    "resources": {"requests": {"cpu": cpu_request, "memory": "128Mi"}},
                }]},
            },
        },
    }))
    .expect("invariant: valid Deployment")
}

async fn running_pods(client: &Client, ns: &str, selector: &str) -> anyhow::Result<Vec<Pod>> {
    Ok(active_pods(client, ns, selector)
        .await?
        .into_iter()
        .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
        .collect())
}

/// Data rows of kubectl's table output (the header dropped), split on whitespace.
fn rows(out: &str) -> Vec<Vec<String>> {
    out.lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubectl_top_shows_usage_of_virtual_nodes_and_pods() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let cluster = Cluster::start("top", "127.77.1.0/24").await?;
    let result = top_scenario(&cluster).await;
    cluster.stop().await;
    result
}

async fn top_scenario(cluster: &Cluster) -> anyhow::Result<()> {
    let client = cluster.client();
    let kc = cluster.server.kubeconfig().to_path_buf();
    let ns = "top";
    namespace(&client, ns).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    deployments
        .create(
            &PostParams::default(),
            &deployment("web", 2, "250m", "500m"),
        )
        .await?;
    let pods = wait_for("two running pods", || async {
        let pods = running_pods(&client, ns, "app=web").await?;
        Ok((pods.len() == 2).then_some(pods))
    })
    .await?;
    let mut names: Vec<String> = pods
        .iter()
        .filter_map(|p| p.metadata.name.clone())
        .collect();
    names.sort();

    // Discovery lists the group, as it would with metrics-server installed.
    let resources = kubectl(&kc, &["api-resources", "--api-group=metrics.k8s.io"]).await?;
    assert!(
        resources.contains("NodeMetrics") && resources.contains("PodMetrics"),
        "{resources}"
    );

    let out = kubectl_until(&kc, &["top", "pod", "-n", ns], |o| rows(o).len() == 2).await?;
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(header, ["NAME", "CPU(cores)", "MEMORY(bytes)"], "{out}");
    for (row, name) in rows(&out).iter().zip(&names) {
        assert_eq!(row, &[name.as_str(), "250m", "64Mi"], "{out}");
    }

    let out = kubectl(&kc, &["top", "pod", "-n", ns, "--containers"]).await?;
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["POD", "NAME", "CPU(cores)", "MEMORY(bytes)"],
        "{out}"
    );
    assert_eq!(
        rows(&out)[0],
        [names[0].as_str(), "main", "250m", "64Mi"],
        "{out}"
    );

    let out = kubectl(&kc, &["top", "pod", "-A", "-l", "app=web"]).await?;
    assert!(out.starts_with("NAMESPACE"), "{out}");
    assert_eq!(rows(&out).len(), 2, "{out}");
    assert!(rows(&out).iter().all(|r| r[0] == ns), "{out}");

    let out = kubectl(&kc, &["top", "pod", "-n", ns, &names[1]]).await?;
    assert_eq!(rows(&out), [[names[1].as_str(), "250m", "64Mi"]], "{out}");
    let err = kubectl(&kc, &["top", "pod", "-n", ns, "missing"])
        .await
        .expect_err("a missing pod has no metrics");
    assert!(
        err.to_string().contains("pods \"missing\" not found"),
        "{err}"
    );
    let out = kubectl(&kc, &["top", "pod", "-n", ns, "-l", "app=none"]).await;
    assert!(out.is_ok(), "{out:?}");

    // Nodes: each runs what its pods use, 2 × 250m in all, out of 8 cores each.
    let out = kubectl_until(&kc, &["top", "node"], |o| rows(o).len() == 2).await?;
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"],
        "{out}"
    );
    let millicores: u32 = rows(&out)
        .iter()
        .map(|r| r[1].trim_end_matches('m').parse::<u32>().unwrap_or(9999))
        .sum();
    assert_eq!(millicores, 500, "{out}");
    assert!(rows(&out).iter().all(|r| r[0].starts_with("top-")), "{out}");
    let busy = rows(&out)
        .into_iter()
        .find(|r| r[1] != "0")
        .context("a node with usage")?;
    if busy[1] == "500m" {
        assert_eq!(
            (busy[2].as_str(), busy[3].as_str()),
            ("6%", "128Mi"),
            "{out}"
        );
    } else {
        assert_eq!(
            (busy[2].as_str(), busy[3].as_str()),
            ("3%", "64Mi"),
            "{out}"
        );
    }

    // The raw objects carry metrics-server's fields.
    let raw = kubectl(
        &kc,
        &[
            "get",
            "--raw",
            &format!(
                "/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{}",
                names[0]
            ),
        ],
    )
    .await?;
    let obj: serde_json::Value = serde_json::from_str(&raw)?;
    assert_eq!(obj["kind"], "PodMetrics");
    assert_eq!(obj["window"], "1s");
    assert_eq!(obj["metadata"]["labels"]["app"], "web");
    assert_eq!(obj["containers"][0]["usage"]["cpu"], "250m");

    // Usage follows the annotation.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {CPU_USAGE_ANNOTATION: "1500m"}}});
    pods_api
        .patch(&names[0], &PatchParams::default(), &Patch::Merge(&patch))
        .await?;
    kubectl_until(&kc, &["top", "pod", "-n", ns, &names[0]], |o| {
        rows(o).first().is_some_and(|r| r[1] == "1500m")
    })
    .await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpa_scales_a_deployment_up_above_target_and_down_below_it() -> anyhow::Result<()> {
    if !Path::new(KUBECTL).exists() {
        eprintln!("skipping: {KUBECTL} not found");
        return Ok(());
    }
    let cluster = Cluster::start("hpa", "127.77.2.0/24").await?;
    let result = hpa_scenario(&cluster).await;
    cluster.stop().await;
    result
}

async fn replicas(deployments: &Api<Deployment>, name: &str) -> anyhow::Result<i32> {
    Ok(deployments
        .get(name)
        .await?
        .spec
        .and_then(|s| s.replicas)
        .unwrap_or(0))
}

async fn has_event(client: &Client, ns: &str, reason: &str, message: &str) -> anyhow::Result<bool> {
    let events: Api<Event> = Api::namespaced(client.clone(), ns);
    Ok(events
        .list(&ListParams::default())
        .await?
        .items
        .iter()
        .any(|e| e.reason.as_deref() == Some(reason) && e.message.as_deref() == Some(message)))
}

async fn hpa_scenario(cluster: &Cluster) -> anyhow::Result<()> {
    let client = cluster.client();
    let kc = cluster.server.kubeconfig().to_path_buf();
    let ns = "autoscale";
    namespace(&client, ns).await?;
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), ns);
    // Each pod uses 80% of its CPU request.
    deployments
        .create(&PostParams::default(), &deployment("app", 1, "80m", "100m"))
        .await?;
    let hpas: Api<autoscaling_v2::HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    let hpa: autoscaling_v2::HorizontalPodAutoscaler = serde_json::from_value(json!({
        "metadata": {"name": "app"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "app"},
            "minReplicas": 1,
            "maxReplicas": 3,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 2}},
        },
    }))?;
    hpas.create(&PostParams::default(), &hpa).await?;

    // 80% against 50%: 1 → 2, then 2 → 4, held at maxReplicas 3.
    wait_for("the HPA to scale up to maxReplicas", || async {
        Ok((replicas(&deployments, "app").await? == 3).then_some(()))
    })
    .await?;
    wait_for("the SuccessfulRescale event", || async {
        let found = has_event(
            &client,
            ns,
            "SuccessfulRescale",
            "New size: 2; reason: cpu resource utilization (percentage of request) above target",
        )
        .await?;
        Ok(found.then_some(()))
    })
    .await?;
    let status = wait_for("the HPA status at 3 replicas", || async {
        let status = hpas.get("app").await?.status.unwrap_or_default();
        let limited = status.conditions.iter().flatten().any(|c| {
            c.type_ == "ScalingLimited"
                && c.status == "True"
                && c.reason.as_deref() == Some("TooManyReplicas")
        });
        Ok((status.current_replicas == Some(3) && limited).then_some(status))
    })
    .await?;
    assert_eq!(status.desired_replicas, 3);
    assert!(status.last_scale_time.is_some());
    let current = status.current_metrics.clone().unwrap_or_default();
    let cpu = current[0]
        .resource
        .as_ref()
        .context("a resource metric status")?;
    assert_eq!(
        (cpu.name.as_str(), cpu.current.average_utilization),
        ("cpu", Some(80))
    );
    assert_eq!(
        cpu.current.average_value.as_ref().map(|q| q.0.as_str()),
        Some("80m")
    );
    let conditions = status.conditions.unwrap_or_default();
    let active = conditions
        .iter()
        .find(|c| c.type_ == "ScalingActive")
        .context("ScalingActive")?;
    assert_eq!(
        (active.status.as_str(), active.reason.as_deref()),
        ("True", Some("ValidMetricFound"))
    );

    // kubectl shows TARGETS as upstream does.
    let out = kubectl(&kc, &["get", "hpa", "-n", ns]).await?;
    let header: Vec<&str> = out
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ],
        "{out}"
    );
    let row = &rows(&out)[0];
    assert_eq!(
        &row[..6],
        ["app", "Deployment/app", "cpu:", "80%/50%", "1", "3"],
        "{out}"
    );

    // Usage falls to 10%: down to minReplicas once the 2 s window has passed.
    let pods_api: Api<Pod> = Api::namespaced(client.clone(), ns);
    let patch = json!({"metadata": {"annotations": {CPU_USAGE_ANNOTATION: "10m"}}});
    for p in running_pods(&client, ns, "app=app").await? {
        pods_api
            .patch(
                p.metadata.name.as_deref().unwrap_or_default(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
    }
    wait_for("the HPA to scale down to minReplicas", || async {
        Ok((replicas(&deployments, "app").await? == 1).then_some(()))
    })
    .await?;
    wait_for("the scale-down event", || async {
        let found = has_event(
            &client,
            ns,
            "SuccessfulRescale",
            "New size: 1; reason: All metrics below target",
        )
        .await?;
        Ok(found.then_some(()))
    })
    .await?;

    // The autoscaling/v1 view of the same object.
    let v1: Api<autoscaling_v1::HorizontalPodAutoscaler> = Api::namespaced(client.clone(), ns);
    wait_for("the v1 status at 10%", || async {
        let status = v1.get("app").await?.status.unwrap_or_default();
        Ok((status.current_cpu_utilization_percentage == Some(10)).then_some(()))
    })
    .await?;
    Ok(())
}
