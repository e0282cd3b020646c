//! The `controllers` suite: the declarative loop end to end — server child with its
//! in-process scheduler and controller manager (as `rkube server`), virtual nodes in a
//! child of their own.
//!
//! `deployment_1000_ready`: 100 virtual nodes; a Deployment of 1,000 replicas tolerating
//! their taint; seconds from its create until a watch sees `status.availableReplicas`
//! at 1,000.
//!
//! `rss_5000_nodes_50000_pods`: 5,000 virtual nodes (Leases every 10 s) and 50,000
//! running pods (50 Deployments of 1,000). Once all are available, the cluster is
//! watched for one more Lease interval, then the settled RSS of the server and the
//! virtual-nodes process is reported (their sum is the value). "Heartbeats on time": a
//! watch on the node Leases records the longest gap between two renewals of any node
//! over the whole run (`lease_max_gap_s`), the oldest renewTime at the end
//! (`lease_max_age_s`) and whether every node stayed Ready.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Node;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::watcher;
use parking_lot::Mutex;
use serde_json::{json, Value};

use crate::cluster::{self, progress, virtual_pod_spec};
use crate::load::{create_namespace, merge};
use crate::meter::CpuMeter;
use crate::process::{ChildProcess, Launch, ServerProcess, VirtualNodesArgs};
use crate::stats::{line, Target};

const SUITE: &str = "controllers";

/// Every metric of the suite, in the order `controllers` runs them.
pub const METRICS: &[&str] = &["deployment_1000_ready", "rss_5000_nodes_50000_pods"];

const NAMESPACE: &str = "deploy-bench";
const LEASE_INTERVAL: Duration = Duration::from_secs(10);
/// Replicas per Deployment of the RSS run.
const REPLICAS_PER_DEPLOYMENT: usize = 1000;
/// Prefix of the virtual nodes' names (see `crate::children`).
const NODE_PREFIX: &str = "vn-";

/// Knobs of the suite.
#[derive(Clone, Debug)]
pub struct Options {
    pub launch: Launch,
    /// Overrides the node count of every metric (for quick validation runs).
    pub nodes: Option<usize>,
    /// Overrides the pod count (replicas) of every metric.
    pub pods: Option<usize>,
}

/// Runs one metric; returns its result lines.
pub async fn run(metric: &str, opts: &Options) -> anyhow::Result<Vec<Value>> {
    match metric {
        "deployment_1000_ready" => deployment_ready(opts).await,
        "rss_5000_nodes_50000_pods" => rss(opts).await,
        other => bail!("unknown metric {other:?}; known: {}", METRICS.join(", ")),
    }
}

fn deployment(name: &str, replicas: usize) -> anyhow::Result<Deployment> {
    Ok(serde_json::from_value(json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": virtual_pod_spec()},
        },
    }))?)
}

/// Server (scheduler and controller manager in-process) and virtual nodes, both leading
/// components at work: the clock of a metric starts on a cluster that is ready.
async fn start_cluster(
    opts: &Options,
    metric: &str,
    nodes: usize,
) -> anyhow::Result<(ServerProcess, ChildProcess, kube::Client, f64)> {
    let setup = Instant::now();
    let server = ServerProcess::start(&opts.launch)?;
    progress(
        metric,
        format_args!("server up; registering {nodes} virtual nodes"),
    );
    let fleet = server.start_virtual_nodes(&VirtualNodesArgs {
        count: nodes,
        lease_interval: LEASE_INTERVAL,
    })?;
    let register_s = setup.elapsed().as_secs_f64();
    progress(
        metric,
        format_args!("{nodes} nodes registered after {register_s:.1} s"),
    );
    let client = cluster::client(&server.kubeconfig).await?;
    if !opts.launch.disable_controller_manager {
        cluster::wait_for_leader(&client, "kube-controller-manager", Duration::from_secs(60))
            .await?;
    }
    if !opts.launch.disable_scheduler {
        cluster::wait_for_leader(&client, "kube-scheduler", Duration::from_secs(60)).await?;
    }
    create_namespace(&server.endpoint, NAMESPACE).await?;
    Ok((server, fleet, client, register_s))
}

async fn deployment_ready(opts: &Options) -> anyhow::Result<Vec<Value>> {
    let metric = "deployment_1000_ready";
    let nodes = opts.nodes.unwrap_or(100);
    let replicas = opts.pods.unwrap_or(1000);
    let (server, mut fleet, client, register_s) = start_cluster(opts, metric, nodes).await?;
    let api: Api<Deployment> = Api::namespaced(client, NAMESPACE);
    let rv = api
        .list(&ListParams::default())
        .await?
        .metadata
        .resource_version
        .context("list without resourceVersion")?;
    let mut events = api.watch(&WatchParams::default(), &rv).await?.boxed();

    let cpu = CpuMeter::start(&[("server", server.pid()), ("virtual_nodes", fleet.pid())])?;
    let start = Instant::now();
    api.create(&PostParams::default(), &deployment("web", replicas)?)
        .await
        .context("creating the Deployment")?;
    let deadline = start + Duration::from_secs(120);
    let (mut all_created, mut all_ready, mut available) = (None, None, 0);
    let done = loop {
        let event = tokio::select! {
            e = events.try_next() => e.context("deployment watch")?,
            _ = tokio::time::sleep_until(deadline.into()) => {
                fleet.check_running()?;
                bail!("{available} of {replicas} replicas available after {:.0} s", start.elapsed().as_secs_f64());
            }
        };
        let d = match event {
            Some(WatchEvent::Added(d) | WatchEvent::Modified(d)) => d,
            Some(WatchEvent::Error(e)) => bail!("deployment watch: {e}"),
            Some(WatchEvent::Deleted(_) | WatchEvent::Bookmark(_)) => continue,
            None => bail!("the deployment watch ended early"),
        };
        let status = d.status.unwrap_or_default();
        let at = start.elapsed().as_secs_f64();
        if status.replicas.unwrap_or(0) as usize >= replicas {
            all_created.get_or_insert(at);
        }
        if status.ready_replicas.unwrap_or(0) as usize >= replicas {
            all_ready.get_or_insert(at);
        }
        available = status.available_replicas.unwrap_or(0) as usize;
        if available >= replicas {
            break at;
        }
    };
    let cpu = cpu.read()?;
    progress(
        metric,
        format_args!("{replicas} replicas available after {done:.2} s"),
    );
    let extra = merge(
        json!({
            "nodes": nodes,
            "replicas": replicas,
            "all_created_s": all_created,
            "all_ready_s": all_ready,
            "upstream": 4.3,
            "register_s": register_s,
            "server_rss_mib": server.rss_mib()?,
            "virtual_nodes_rss_mib": fleet.rss_mib()?,
        }),
        cpu,
    );
    Ok(vec![line(
        SUITE,
        metric,
        done,
        "s",
        Some(Target::Below(1.5)),
        extra,
    )])
}

/// What the heartbeat watches saw.
#[derive(Default)]
struct Heartbeats {
    /// Latest renewTime per node Lease.
    renewed: HashMap<String, Timestamp>,
    renewals: u64,
    max_gap_s: f64,
    max_gap_node: String,
    /// Latest Ready status per node, and nodes ever seen not Ready.
    ready: HashMap<String, bool>,
    ever_not_ready: HashSet<String>,
}

impl Heartbeats {
    fn lease(&mut self, lease: &Lease) {
        let Some(name) = lease
            .metadata
            .name
            .as_deref()
            .filter(|n| n.starts_with(NODE_PREFIX))
        else {
            return;
        };
        let Some(t) = lease
            .spec
            .as_ref()
            .and_then(|s| s.renew_time.as_ref())
            .map(|t| t.0)
        else {
            return;
        };
        match self.renewed.insert(name.to_string(), t) {
            Some(prev) if t > prev => {
                self.renewals += 1;
                let gap = t.duration_since(prev).as_secs_f64();
                if gap > self.max_gap_s {
                    self.max_gap_s = gap;
                    self.max_gap_node = name.to_string();
                }
            }
            _ => {}
        }
    }

    fn node(&mut self, node: &Node) {
        let Some(name) = node
            .metadata
            .name
            .as_deref()
            .filter(|n| n.starts_with(NODE_PREFIX))
        else {
            return;
        };
        let ready = node
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .is_some_and(|c| c.status == "True");
        if !ready {
            self.ever_not_ready.insert(name.to_string());
        }
        self.ready.insert(name.to_string(), ready);
    }

    /// The oldest renewTime among the nodes' Leases, as an age now.
    fn max_age_s(&self, now: Timestamp) -> f64 {
        self.renewed
            .values()
            .map(|t| now.duration_since(*t).as_secs_f64())
            .fold(0.0, f64::max)
    }
}

/// Watches the node Leases and Nodes in the background until dropped.
struct HeartbeatMonitor {
    state: Arc<Mutex<Heartbeats>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl HeartbeatMonitor {
    fn start(client: &kube::Client) -> HeartbeatMonitor {
        let state = Arc::new(Mutex::new(Heartbeats::default()));
        let leases: Api<Lease> =
            Api::namespaced(client.clone(), virtual_nodes::lease::LEASE_NAMESPACE);
        let nodes: Api<Node> = Api::all(client.clone());
        let s = state.clone();
        let lease_task = tokio::spawn(async move {
            let mut stream = watcher(leases, watcher::Config::default()).boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Apply(l) | watcher::Event::InitApply(l)) => {
                        s.lock().lease(&l)
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("lease watch: {e}; retrying"),
                }
            }
        });
        let s = state.clone();
        let node_task = tokio::spawn(async move {
            let config = watcher::Config::default().labels("type=virtual-kubelet");
            let mut stream = watcher(nodes, config).boxed();
            while let Some(ev) = stream.next().await {
                match ev {
                    Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n)) => {
                        s.lock().node(&n)
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("node watch: {e}; retrying"),
                }
            }
        });
        HeartbeatMonitor {
            state,
            tasks: vec![lease_task, node_task],
        }
    }
}

impl Drop for HeartbeatMonitor {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

async fn rss(opts: &Options) -> anyhow::Result<Vec<Value>> {
    let metric = "rss_5000_nodes_50000_pods";
    let nodes = opts.nodes.unwrap_or(5000);
    let pods = opts.pods.unwrap_or(50_000);
    let (mut server, mut fleet, client, register_s) = start_cluster(opts, metric, nodes).await?;
    let monitor = HeartbeatMonitor::start(&client);
    let cpu = CpuMeter::start(&[("server", server.pid()), ("virtual_nodes", fleet.pid())])?;
    let start = Instant::now();
    let api: Api<Deployment> = Api::namespaced(client.clone(), NAMESPACE);
    let count = pods.div_ceil(REPLICAS_PER_DEPLOYMENT);
    for i in 0..count {
        let replicas = REPLICAS_PER_DEPLOYMENT.min(pods - i * REPLICAS_PER_DEPLOYMENT);
        api.create(
            &PostParams::default(),
            &deployment(&format!("d-{i}"), replicas)?,
        )
        .await
        .context("creating a Deployment")?;
    }
    progress(
        metric,
        format_args!("created {count} Deployments ({pods} replicas)"),
    );

    // Each pod is a handful of writes (create, bind, Event, Running status); allow a
    // slow machine 5 ms a pod on top of a minute.
    let deadline = start + Duration::from_secs(60) + Duration::from_millis(5) * pods as u32;
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    let mut last_report = Instant::now();
    let ready_s = loop {
        ticker.tick().await;
        server.check_running()?;
        fleet.check_running()?;
        let list = api.list(&ListParams::default()).await?;
        let (mut created, mut available) = (0, 0);
        for d in &list.items {
            let s = d.status.clone().unwrap_or_default();
            created += s.replicas.unwrap_or(0);
            available += s.available_replicas.unwrap_or(0);
        }
        if available as usize >= pods {
            break start.elapsed().as_secs_f64();
        }
        if last_report.elapsed() >= Duration::from_secs(10) {
            last_report = Instant::now();
            let lease_gap = monitor.state.lock().max_gap_s;
            progress(
                metric,
                format_args!(
                    "{:.0} s: {created} pods created, {available} available; server {:.0} MiB, nodes {:.0} MiB; longest lease gap {lease_gap:.1} s",
                    start.elapsed().as_secs_f64(),
                    server.rss_mib()?,
                    fleet.rss_mib()?
                ),
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{available} of {pods} pods available after {:.0} s",
                start.elapsed().as_secs_f64()
            );
        }
    };
    progress(
        metric,
        format_args!("{pods} pods available after {ready_s:.1} s; holding for one lease interval"),
    );
    // Steady state: every node renews at least once more while we watch.
    tokio::time::sleep(LEASE_INTERVAL + Duration::from_secs(5)).await;
    let cpu = cpu.read()?;
    let server_rss = server.settled_rss_mib(Duration::from_secs(10)).await?;
    let fleet_rss = fleet.settled_rss_mib(Duration::from_secs(10)).await?;
    let total = server_rss + fleet_rss;

    // The Leases as the server has them now, not as the watch last delivered them.
    let leases: Api<Lease> = Api::namespaced(client.clone(), virtual_nodes::lease::LEASE_NAMESPACE);
    let now = Timestamp::now();
    let mut lease_max_age_s: f64 = 0.0;
    let mut node_leases = 0;
    for l in leases.list(&ListParams::default()).await?.items {
        if l.metadata
            .name
            .as_deref()
            .is_some_and(|n| n.starts_with(NODE_PREFIX))
        {
            node_leases += 1;
            if let Some(t) = l.spec.and_then(|s| s.renew_time) {
                lease_max_age_s = lease_max_age_s.max(now.duration_since(t.0).as_secs_f64());
            }
        }
    }
    let beats = monitor.state.lock();
    ensure!(
        node_leases == nodes,
        "{node_leases} node Leases for {nodes} nodes"
    );
    let ready_now = beats.ready.values().filter(|r| **r).count();
    progress(
        metric,
        format_args!(
            "RSS server {server_rss:.0} + nodes {fleet_rss:.0} = {total:.0} MiB; lease max age {lease_max_age_s:.1} s, max gap {:.1} s; {ready_now}/{nodes} Ready",
            beats.max_gap_s
        ),
    );
    let extra = merge(
        json!({
            "nodes": nodes,
            "pods": pods,
            "deployments": count,
            "server_rss_mib": server_rss,
            "virtual_nodes_rss_mib": fleet_rss,
            "server_hwm_mib": server.memory_detail()?["vm_hwm_mib"],
            "virtual_nodes_hwm_mib": fleet.memory_detail()?["vm_hwm_mib"],
            "lease_interval_s": LEASE_INTERVAL.as_secs_f64(),
            "lease_max_age_s": lease_max_age_s,
            "lease_max_age_watched_s": beats.max_age_s(now),
            "lease_max_gap_s": beats.max_gap_s,
            "lease_max_gap_node": beats.max_gap_node,
            "lease_renewals_seen": beats.renewals,
            "nodes_ready": ready_now,
            "nodes_all_stayed_ready": beats.ever_not_ready.is_empty() && ready_now == nodes,
            "nodes_ever_not_ready": beats.ever_not_ready.len(),
            "pods_available_s": ready_s,
            "register_s": register_s,
            "upstream_mib": 3300.0 / 1.048576,
            "upstream_note": "5,000 nodes + 10,000 pods, all processes",
        }),
        cpu,
    );
    Ok(vec![line(
        SUITE,
        metric,
        total,
        "MiB",
        Some(Target::Below(2048.0)),
        extra,
    )])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::coordination::v1::LeaseSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;

    fn lease(name: &str, second: i64) -> Lease {
        Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                renew_time: Some(MicroTime(
                    Timestamp::from_second(1_700_000_000 + second).expect("ts"),
                )),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn heartbeat_gaps_and_ages() {
        let mut h = Heartbeats::default();
        h.lease(&lease("vn-0", 0));
        h.lease(&lease("vn-1", 3));
        h.lease(&lease("vn-0", 10));
        h.lease(&lease("vn-1", 16));
        // A repeat of the same renewal is not a new one.
        h.lease(&lease("vn-1", 16));
        h.lease(&lease("other", 100));
        assert_eq!(h.renewals, 2);
        assert_eq!((h.max_gap_s, h.max_gap_node.as_str()), (13.0, "vn-1"));
        let now = Timestamp::from_second(1_700_000_020).expect("ts");
        assert_eq!(h.max_age_s(now), 10.0);
    }

    #[test]
    fn readiness_is_tracked_per_node() {
        let node = |name: &str, status: &str| -> Node {
            serde_json::from_value(json!({
                "metadata": {"name": name},
                "status": {"conditions": [{"type": "Ready", "status": status}]},
            }))
            .expect("node")
        };
        let mut h = Heartbeats::default();
        h.node(&node("vn-0", "True"));
        h.node(&node("vn-1", "Unknown"));
        h.node(&node("vn-1", "True"));
        assert!(h.ready.values().all(|r| *r));
        assert_eq!(h.ever_not_ready.len(), 1);
    }

    #[test]
    fn deployments_tolerate_virtual_nodes() {
        let d = deployment("web", 1000).expect("deployment");
        let spec = d.spec.expect("spec");
        assert_eq!(spec.replicas, Some(1000));
        let pod = spec.template.spec.expect("pod spec");
        assert_eq!(
            pod.tolerations.expect("tolerations")[0].operator.as_deref(),
            Some("Exists")
        );
    }
}
