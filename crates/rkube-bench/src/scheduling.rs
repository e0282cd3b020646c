//! The `scheduler` suite: how fast pending pods get bound.
//!
//! `schedule_throughput`: a server child without its in-process scheduler, 5,000
//! virtual nodes in a child of their own (Leases renewed every 10 s), and 10,000
//! pending pods tolerating the virtual nodes' taint, created through the API. Then the
//! scheduler starts in its own child (`__scheduler`, as `rkube scheduler`) and the
//! clock runs from its spawn until a watch in this process has seen every pod with a
//! `spec.nodeName` — so it includes the scheduler's start, leader election and initial
//! LISTs, as starting kube-scheduler would. The virtual nodes meanwhile make bound pods
//! Running, as a fleet of kubelets would. `schedule_throughput_1000_nodes` is the same
//! at 1,000 nodes.
//!
//! `schedule_algorithm_throughput`: the scheduling cycle alone, in this process, without
//! the API: the same pods onto the same nodes through the scheduler's cache, queue and
//! default plugins, as its loop runs them. The gap to `schedule_throughput` is what the
//! API (watches, bindings, Events) costs.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::client::{connect_many, Conn, Endpoint, Proto};
use crate::cluster::{progress, virtual_pod_spec};
use crate::load::{closed_loop, create_namespace, merge, MakeRequest, Until};
use crate::meter::CpuMeter;
use crate::process::{Launch, ServerProcess, VirtualNodesArgs};
use crate::stats::{line, Target};

const SUITE: &str = "scheduler";

/// Every metric of the suite, in the order `scheduler` runs them.
pub const METRICS: &[&str] = &[
    "schedule_throughput",
    "schedule_throughput_1000_nodes",
    "schedule_algorithm_throughput",
];

const NAMESPACE: &str = "sched-bench";
/// Pending pods are named `<POD_PREFIX><index>`.
const POD_PREFIX: &str = "sp-";
const DEFAULT_PODS: usize = 10_000;
const LEASE_INTERVAL: Duration = Duration::from_secs(10);

/// Knobs of the suite.
#[derive(Clone, Debug)]
pub struct Options {
    pub launch: Launch,
    /// Overrides the node count of every metric (for quick validation runs).
    pub nodes: Option<usize>,
    /// Overrides the pod count of every metric.
    pub pods: Option<usize>,
}

/// Runs one metric; returns its result lines.
pub async fn run(metric: &str, opts: &Options) -> anyhow::Result<Vec<Value>> {
    match metric {
        // Upstream: kube-scheduler on the same machine, 360 pods/s at 5,000 nodes and
        // 483 pods/s at 1,000.
        "schedule_throughput" => throughput(opts, metric, opts.nodes.unwrap_or(5000), 360.0).await,
        "schedule_throughput_1000_nodes" => {
            throughput(opts, metric, opts.nodes.unwrap_or(1000), 483.0).await
        }
        "schedule_algorithm_throughput" => algorithm(opts).await,
        other => bail!("unknown metric {other:?}; known: {}", METRICS.join(", ")),
    }
}

fn pod_body(index: u64, spec: &str) -> Bytes {
    Bytes::from(format!(
        r#"{{"apiVersion":"v1","kind":"Pod","metadata":{{"name":"{POD_PREFIX}{index}","labels":{{"app":"sched-bench"}}}},"spec":{spec}}}"#
    ))
}

async fn throughput(
    opts: &Options,
    metric: &str,
    nodes: usize,
    upstream: f64,
) -> anyhow::Result<Vec<Value>> {
    let pods = opts.pods.unwrap_or(DEFAULT_PODS);
    ensure!(nodes > 0 && pods > 0, "need at least one node and one pod");
    let mut launch = opts.launch.clone();
    launch.disable_scheduler = true;
    let setup = Instant::now();
    let server = ServerProcess::start(&launch)?;
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
        format_args!(
            "{nodes} nodes registered after {register_s:.1} s; creating {pods} pending pods"
        ),
    );

    create_namespace(&server.endpoint, NAMESPACE).await?;
    let conns = connect_many(&server.endpoint, Proto::H1, 32, 1).await?;
    let spec: Arc<str> = Arc::from(virtual_pod_spec().to_string());
    let make: MakeRequest = Arc::new(move |seq| {
        (
            format!("/api/v1/namespaces/{NAMESPACE}/pods"),
            pod_body(seq, &spec),
        )
    });
    let created = closed_loop(conns, Until::Count(pods as u64), make).await?;
    if created.ok != pods as u64 {
        bail!(
            "created {} of {pods} pods: {}",
            created.ok,
            created.first_error.unwrap_or_default()
        );
    }
    let (pending, rv) = list_pending(&server.endpoint).await?;
    ensure!(
        pending.len() == pods,
        "{} of {pods} pods are pending before the scheduler starts",
        pending.len()
    );
    progress(
        metric,
        format_args!(
            "{pods} pods pending after {:.1} s; starting the scheduler",
            setup.elapsed().as_secs_f64()
        ),
    );

    // Subscribed before the scheduler exists, so no binding can be missed.
    let bound = Arc::new(AtomicUsize::new(0));
    let watch = BindWatch::subscribe(&server.endpoint, pending, rv, bound.clone()).await?;
    let mut cpu = CpuMeter::start(&[("server", server.pid()), ("virtual_nodes", fleet.pid())])?;
    let start = Instant::now();
    let mut scheduler = server.start_scheduler()?;
    cpu.add_new("scheduler", scheduler.pid());
    let mut task = tokio::spawn(watch.run());

    let deadline = start + Duration::from_secs(120).max(Duration::from_millis(20) * pods as u32);
    let mut ticker = tokio::time::interval(Duration::from_secs(5));
    ticker.tick().await;
    let outcome = loop {
        tokio::select! {
            r = &mut task => break r.context("binding watch panicked")??,
            _ = ticker.tick() => {
                scheduler.check_running()?;
                let n = bound.load(Ordering::Relaxed);
                progress(metric, format_args!("{:.0} s: {n} of {pods} bound", start.elapsed().as_secs_f64()));
                if Instant::now() >= deadline {
                    task.abort();
                    bail!("{n} of {pods} pods bound after {:.0} s; scheduler log:\n{}", start.elapsed().as_secs_f64(), scheduler.log_tail(20));
                }
            }
        }
    };
    let cpu = cpu.read()?;
    let secs = outcome.done.duration_since(start).as_secs_f64();
    let first_bind_s = outcome
        .first
        .map_or(secs, |f| f.duration_since(start).as_secs_f64());
    // Check the watch's count against the server's own answer.
    let (left, _) = list_pending(&server.endpoint).await?;
    ensure!(
        left.is_empty(),
        "the watch saw every pod bound but {} are still pending",
        left.len()
    );
    let rate = pods as f64 / secs;
    progress(
        metric,
        format_args!("all {pods} bound in {secs:.2} s = {rate:.0} pods/s"),
    );
    let extra = merge(
        json!({
            "nodes": nodes,
            "pods": pods,
            "seconds": secs,
            "first_bind_s": first_bind_s,
            "rate_after_first_bind": pods as f64 / (secs - first_bind_s).max(1e-3),
            "watch_reconnects": outcome.reconnects,
            "upstream": upstream,
            "register_s": register_s,
            "create_rate": created.rate(Until::Count(pods as u64)),
            "server_rss_mib": server.rss_mib()?,
            "virtual_nodes_rss_mib": fleet.rss_mib()?,
            "scheduler_rss_mib": scheduler.rss_mib()?,
        }),
        cpu,
    );
    Ok(vec![line(
        SUITE,
        metric,
        rate,
        "pods/s",
        Some(Target::AtLeast(2000.0)),
        extra,
    )])
}

/// Indexes of our pods without a node, and the resourceVersion of that answer.
async fn list_pending(endpoint: &Endpoint) -> anyhow::Result<(HashSet<u32>, String)> {
    let mut conn = endpoint.connect(Proto::H1).await?;
    let reply = conn
        .get(&format!(
            "/api/v1/namespaces/{NAMESPACE}/pods?fieldSelector=spec.nodeName%3D"
        ))
        .await?;
    if reply.status != StatusCode::OK {
        bail!(
            "listing pending pods: {} {}",
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
    }
    let list: Value = serde_json::from_slice(&reply.body).context("decoding the pod list")?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("pod list without resourceVersion")?
        .to_string();
    let pending = list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|p| {
                    p["metadata"]["name"]
                        .as_str()?
                        .strip_prefix(POD_PREFIX)?
                        .parse()
                        .ok()
                })
                .collect()
        })
        .unwrap_or_default();
    Ok((pending, rv))
}

/// The index of our pod in a watch event line if the event shows it bound to a node.
/// The server writes compact JSON, so plain byte searches suffice and keep this
/// process's CPU (which the server shares the cores with) low.
fn bound_pod_index(line: &[u8]) -> Option<u32> {
    const NAME: &[u8] = b"\"name\":\"sp-";
    const NODE: &[u8] = b"\"nodeName\":\"";
    if line.starts_with(b"{\"type\":\"DELETED\"") || find(line, NODE).is_none() {
        return None;
    }
    let at = find(line, NAME)? + NAME.len();
    let digits = &line[at..];
    let end = digits.iter().position(|b| !b.is_ascii_digit())?;
    std::str::from_utf8(&digits[..end]).ok()?.parse().ok()
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// What the binding watch saw.
struct BindOutcome {
    first: Option<Instant>,
    done: Instant,
    reconnects: u32,
}

/// A watch on the benchmark's pods that counts each pod once, when it shows a node.
/// If the stream ends early (the server ends watches that fall behind), it lists the
/// still pending pods and watches again from there.
struct BindWatch {
    endpoint: Endpoint,
    pending: HashSet<u32>,
    total: usize,
    bound: Arc<AtomicUsize>,
    watch: (Conn, hyper::body::Incoming),
}

impl BindWatch {
    /// Opens the watch; returns once the server has subscribed it (headers arrived).
    async fn subscribe(
        endpoint: &Endpoint,
        pending: HashSet<u32>,
        rv: String,
        bound: Arc<AtomicUsize>,
    ) -> anyhow::Result<BindWatch> {
        let watch = open_watch(endpoint, &rv).await?;
        let total = pending.len();
        Ok(BindWatch {
            endpoint: endpoint.clone(),
            pending,
            total,
            bound,
            watch,
        })
    }

    async fn run(mut self) -> anyhow::Result<BindOutcome> {
        let mut first = None;
        let mut reconnects = 0;
        let mut buf: Vec<u8> = Vec::new();
        loop {
            while let Some(Ok(frame)) = self.watch.1.frame().await {
                let at = Instant::now();
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                buf.extend_from_slice(&data);
                let mut consumed = 0;
                let mut gone = false;
                while let Some(nl) = buf[consumed..].iter().position(|b| *b == b'\n') {
                    let line = &buf[consumed..consumed + nl];
                    consumed += nl + 1;
                    if line.starts_with(b"{\"type\":\"ERROR\"") {
                        gone = true;
                        break;
                    }
                    if let Some(i) = bound_pod_index(line) {
                        if self.pending.remove(&i) {
                            first.get_or_insert(at);
                            self.bound
                                .store(self.total - self.pending.len(), Ordering::Relaxed);
                            if self.pending.is_empty() {
                                return Ok(BindOutcome {
                                    first,
                                    done: at,
                                    reconnects,
                                });
                            }
                        }
                    }
                }
                buf.drain(..consumed);
                if gone {
                    break;
                }
            }
            // The stream ended (or said 410 Gone): catch up with a LIST, watch again.
            reconnects += 1;
            buf.clear();
            let (still, rv) = list_pending(&self.endpoint).await?;
            self.pending.retain(|i| still.contains(i));
            self.bound
                .store(self.total - self.pending.len(), Ordering::Relaxed);
            if self.pending.is_empty() {
                return Ok(BindOutcome {
                    first: first.or(Some(Instant::now())),
                    done: Instant::now(),
                    reconnects,
                });
            }
            self.watch = open_watch(&self.endpoint, &rv).await?;
        }
    }
}

/// The connection is returned with the body: it must live while the body streams.
async fn open_watch(
    endpoint: &Endpoint,
    rv: &str,
) -> anyhow::Result<(Conn, hyper::body::Incoming)> {
    let mut conn = endpoint.connect(Proto::H1).await?;
    let path = format!("/api/v1/namespaces/{NAMESPACE}/pods?watch=true&resourceVersion={rv}");
    let resp = conn.send(http::Method::GET, &path, Bytes::new()).await?;
    if resp.status() != StatusCode::OK {
        bail!("watch answered {}", resp.status());
    }
    Ok((conn, resp.into_body()))
}

fn virtual_node(i: usize) -> anyhow::Result<Node> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("vn-{i}"), "labels": {"kubernetes.io/hostname": format!("vn-{i}"), "type": "virtual-kubelet"}},
        "spec": {"taints": [{"key": virtual_nodes::config::PROVIDER_TAINT_KEY, "value": virtual_nodes::config::PROVIDER_TAINT_VALUE, "effect": "NoSchedule"}]},
        "status": {"allocatable": {"cpu": "8", "memory": "32Gi", "pods": "110"}, "capacity": {"cpu": "8", "memory": "32Gi", "pods": "110"}},
    }))?)
}

fn pending_pod(i: usize) -> anyhow::Result<Pod> {
    Ok(serde_json::from_value(json!({
        "metadata": {"name": format!("{POD_PREFIX}{i}"), "namespace": NAMESPACE, "uid": format!("uid-{i}"), "labels": {"app": "sched-bench"}},
        "spec": virtual_pod_spec(),
    }))?)
}

/// The scheduling loop without the API: every pod through one cycle (filter, score,
/// select) and into the cache as assumed, as the scheduler's thread does it.
fn algorithm_run(nodes: usize, pods: usize, parallelism: usize) -> anyhow::Result<(f64, usize)> {
    use scheduler::cache::Cache;
    use scheduler::framework::Nominator;
    use scheduler::queue::SchedulingQueue;
    use scheduler::schedule_one::{Algorithm, CycleOutcome};

    let mut cache = Cache::new();
    for i in 0..nodes {
        cache.upsert_node(Arc::new(virtual_node(i)?));
    }
    let mut queue = SchedulingQueue::default();
    let now = Instant::now();
    for i in 0..pods {
        queue.add(cache.pod_info(Arc::new(pending_pod(i)?)), now);
    }
    let framework = scheduler::plugins::default_framework();
    let nominator = Nominator::new();
    let mut algo = Algorithm::new(0, parallelism);
    let start = Instant::now();
    let mut bound = 0;
    while let Some(q) = queue.pop(now) {
        match algo.run_cycle(&framework, cache.snapshot(), &nominator, &q.pod) {
            CycleOutcome::Scheduled { node, .. } => {
                cache.assume_pod(q.pod.clone(), &node);
                queue.done(&q.pod.uid);
                bound += 1;
            }
            other => bail!("pod {} was not scheduled: {other:?}", q.pod.key()),
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let max_pods = cache
        .snapshot()
        .nodes()
        .iter()
        .map(|n| n.pods.len())
        .max()
        .unwrap_or(0);
    ensure!(bound == pods, "scheduled {bound} of {pods} pods");
    Ok((bound as f64 / secs, max_pods))
}

async fn algorithm(opts: &Options) -> anyhow::Result<Vec<Value>> {
    let metric = "schedule_algorithm_throughput";
    let nodes = opts.nodes.unwrap_or(5000);
    let pods = opts.pods.unwrap_or(DEFAULT_PODS);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The scheduler filters with min(16, CPUs) threads; also show one thread.
    let parallelism = cpus.min(16);
    let cpu = CpuMeter::start(&[])?;
    let (one, _) = tokio::task::spawn_blocking(move || algorithm_run(nodes, pods, 1))
        .await
        .context("algorithm run panicked")??;
    progress(metric, format_args!("parallelism 1: {one:.0} pods/s"));
    let (rate, max_pods) =
        tokio::task::spawn_blocking(move || algorithm_run(nodes, pods, parallelism))
            .await
            .context("algorithm run panicked")??;
    progress(
        metric,
        format_args!("parallelism {parallelism}: {rate:.0} pods/s"),
    );
    let extra = merge(
        json!({
            "nodes": nodes,
            "pods": pods,
            "parallelism": parallelism,
            "rate_parallelism_1": one,
            "max_pods_per_node": max_pods,
        }),
        cpu.read()?,
    );
    Ok(vec![line(SUITE, metric, rate, "pods/s", None, extra)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bound_pods_are_recognised() {
        let cases: &[(&[u8], Option<u32>)] = &[
            (br#"{"type":"MODIFIED","object":{"metadata":{"name":"sp-42"},"spec":{"nodeName":"vn-1"}}}"#, Some(42)),
            (br#"{"type":"ADDED","object":{"metadata":{"name":"sp-7"},"spec":{"containers":[{"name":"c"}]}}}"#, None),
            (br#"{"type":"DELETED","object":{"metadata":{"name":"sp-3"},"spec":{"nodeName":"vn-1"}}}"#, None),
            (br#"{"type":"MODIFIED","object":{"metadata":{"name":"other"},"spec":{"nodeName":"vn-1"}}}"#, None),
        ];
        for (text, want) in cases {
            assert_eq!(
                bound_pod_index(text),
                *want,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn pod_bodies_are_pods_tolerating_virtual_nodes() {
        let pod: Pod = serde_json::from_slice(&pod_body(9, &virtual_pod_spec().to_string()))
            .expect("pod JSON");
        assert_eq!(pod.metadata.name.as_deref(), Some("sp-9"));
        let spec = pod.spec.expect("spec");
        assert_eq!(
            spec.tolerations.expect("tolerations")[0].key.as_deref(),
            Some("virtual-kubelet.io/provider")
        );
    }

    #[test]
    fn algorithm_schedules_every_pod() {
        let (rate, max_pods) = algorithm_run(20, 50, 1).expect("runs");
        assert!(rate > 0.0);
        assert!((3..=50).contains(&max_pods), "{max_pods}");
    }
}
