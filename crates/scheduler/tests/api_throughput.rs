//! End-to-end scheduling throughput against an in-process server: 5,000 Nodes and
//! 10,000 pending pods created through the API, then a scheduler started and timed
//! until every pod is bound. Ignored by default (it takes a minute to set up); run with
//! `cargo test --release -p scheduler --test api_throughput -- --ignored --nocapture`.
//! The pods name their own scheduler so the server's in-process one leaves them alone.

use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use scheduler::{Scheduler, SchedulerConfig};
use serde_json::json;
use test_support::server::TestServer;
use tokio_util::sync::CancellationToken;

const NODES: usize = 5000;
const PODS: usize = 10_000;
const SCHEDULER: &str = "bench-scheduler";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore]
async fn ten_thousand_pods_onto_five_thousand_nodes_through_the_api() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).with_test_writer().try_init();
    let server = TestServer::start().await?;
    let client = server.client();
    let nodes: Api<Node> = Api::all(client.clone());
    let t = Instant::now();
    futures::stream::iter(0..NODES)
        .map(|i| {
            let nodes = nodes.clone();
            async move {
                let node: Node = serde_json::from_value(json!({
                    "metadata": {"name": format!("vn-{i}"), "labels": {"kubernetes.io/hostname": format!("vn-{i}"), "type": "virtual-kubelet"}},
                    "spec": {"taints": [{"key": "virtual-kubelet.io/provider", "value": "rkube", "effect": "NoSchedule"}]},
                    "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}, "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"},
                        "conditions": [{"type": "Ready", "status": "True"}]},
                }))?;
                nodes.create(&PostParams::default(), &node).await?;
                // Status is not taken on create; set it as a kubelet would.
                let status = json!({"status": node.status});
                nodes.patch_status(&format!("vn-{i}"), &PatchParams::default(), &Patch::Merge(status)).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    futures::stream::iter(0..PODS)
        .map(|i| {
            let pods = pods.clone();
            async move {
                let pod: Pod = serde_json::from_value(json!({
                    "metadata": {"name": format!("p-{i}"), "labels": {"app": "bench"}},
                    "spec": {
                        "schedulerName": SCHEDULER,
                        "containers": [{"name": "c", "image": "nginx", "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}}}],
                        "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}],
                    },
                }))?;
                pods.create(&PostParams::default(), &pod).await?;
                anyhow::Ok(())
            }
        })
        .buffer_unordered(32)
        .try_collect::<Vec<_>>()
        .await?;
    println!("created {NODES} nodes and {PODS} pods in {:.1} s", t.elapsed().as_secs_f64());

    let cancel = CancellationToken::new();
    let config = SchedulerConfig { scheduler_name: SCHEDULER.into(), ..SchedulerConfig::default() };
    let start = Instant::now();
    let task = tokio::spawn(Scheduler::new(client.clone(), config).run(cancel.clone()));
    let pending = ListParams::default().fields(&format!("spec.nodeName=,spec.schedulerName={SCHEDULER}")).limit(1);
    let mut next_report = Instant::now() + Duration::from_secs(5);
    loop {
        if pods.list(&pending).await?.items.is_empty() {
            break;
        }
        if Instant::now() >= next_report {
            let left = pods.list(&ListParams::default().fields(&format!("spec.nodeName=,spec.schedulerName={SCHEDULER}"))).await?.items.len();
            println!("{:.0} s: {left} pods pending", start.elapsed().as_secs_f64());
            next_report += Duration::from_secs(5);
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(120), "pods still pending after 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let secs = start.elapsed().as_secs_f64();
    println!("scheduler start → all {PODS} bound: {secs:.2} s = {:.0} pods/s", PODS as f64 / secs);
    cancel.cancel();
    task.await?;
    server.shutdown().await;
    Ok(())
}
