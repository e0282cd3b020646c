//! The `pods` suite: the node agent with real containers (issue: the node agent).
//!
//! A server child (`--disable-agent`, its scheduler and controller manager in-process)
//! and a node agent child with its own managed containerd, on a node IP of a veth pair
//! the benchmark creates (and removes). A busybox image built from Debian's
//! `busybox-static` is imported first. Every pod sleeps, pulls `IfNotPresent`, gets the
//! projected `kube-api-access` volume (token, cluster CA, namespace) from the
//! ServiceAccount admission as every pod does, and names the node, so the clock measures the agent, not the scheduler.
//!
//! - `pod_startup_single`: one pod at a time, create → Running seen by a watch; the
//!   median of 5 (each deleted before the next);
//! - `pod_startup_p50` / `pod_startup_p99`: 30 pods created at once, each one's create →
//!   Running;
//! - `agent_rss_30_pods`: the agent process's RSS with those 30 pods running (containerd
//!   and the containers are other processes).
//!
//! `--runtime crun` runs the agent's containerd with crun instead of runc.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, PostParams, WatchEvent, WatchParams};
use serde_json::{json, Value};

use crate::cluster::progress;
use crate::process::{ChildProcess, Launch, ServerProcess};
use crate::stats::{line, median, percentile, Target};

const SUITE: &str = "pods";

/// Every metric of the suite, in the order `pods` runs them.
pub const METRICS: &[&str] = &[
    "pod_startup_single",
    "pod_startup_p50",
    "pod_startup_p99",
    "agent_rss_30_pods",
];

const NAMESPACE: &str = "pod-bench";
const NODE: &str = "bench-node";
const VETH: &str = "rkbench0";
const NODE_IP: &str = "10.203.254.1";
const IMAGE: &str = "docker.io/library/busybox:bench";

#[derive(Clone, Debug)]
pub struct Options {
    pub launch: Launch,
    /// OCI runtime binary of the agent's containerd (`runc` if unset).
    pub runtime: Option<String>,
    /// Pods of the concurrent run instead of 30.
    pub pods: Option<usize>,
}

/// Results of the concurrent run, shared by its three metrics.
pub async fn run_all(metrics: &[String], opts: &Options) -> anyhow::Result<Vec<Value>> {
    let bench = Bench::start(opts).await?;
    let mut out = Vec::new();
    let runtime = opts.runtime.clone().unwrap_or_else(|| "runc".into());
    if metrics.iter().any(|m| m == "pod_startup_single") {
        let mut samples = Vec::new();
        for i in 0..5 {
            let ms = bench.start_pods(&format!("single-{i}"), 1).await?[0];
            samples.push(ms);
            bench.delete_all().await?;
        }
        let value = median(&samples).context("no samples")?;
        progress("pod_startup_single", format_args!("{samples:?} ms"));
        out.push(line(
            SUITE,
            "pod_startup_single",
            value,
            "ms",
            Some(Target::Below(400.0)),
            json!({"samples_ms": samples, "runtime": runtime}),
        ));
    }
    let want = ["pod_startup_p50", "pod_startup_p99", "agent_rss_30_pods"];
    if metrics.iter().any(|m| want.contains(&m.as_str())) {
        let n = opts.pods.unwrap_or(30);
        let cpu_before = crate::process::pid_cpu_seconds(bench.agent.pid())?;
        let samples = bench.start_pods("burst", n).await?;
        let agent_cpu = crate::process::pid_cpu_seconds(bench.agent.pid())? - cpu_before;
        let p50 = percentile(&samples, 0.5).context("no samples")?;
        let p99 = percentile(&samples, 0.99).context("no samples")?;
        let extra = json!({"pods": n, "max_ms": samples.iter().cloned().fold(0.0, f64::max), "agent_cpu_s": agent_cpu, "runtime": runtime});
        if metrics.iter().any(|m| m == "pod_startup_p50") {
            out.push(line(
                SUITE,
                "pod_startup_p50",
                p50,
                "ms",
                None,
                extra.clone(),
            ));
        }
        if metrics.iter().any(|m| m == "pod_startup_p99") {
            out.push(line(
                SUITE,
                "pod_startup_p99",
                p99,
                "ms",
                Some(Target::Below(2000.0)),
                extra,
            ));
        }
        if metrics.iter().any(|m| m == "agent_rss_30_pods") {
            // Settled: the pods are running and their status written.
            let rss = bench.agent.settled_rss_mib(Duration::from_secs(20)).await?;
            out.push(line(
                SUITE,
                "agent_rss_30_pods",
                rss,
                "MiB",
                Some(Target::Below(40.0)),
                json!({"pods": n, "detail": bench.agent.memory_detail()?}),
            ));
        }
    }
    bench.delete_all().await?;
    Ok(out)
}

struct Bench {
    // Dropped in order: the agent, what its runtime left, the server (and its data
    // dir), the veth last.
    agent: ChildProcess,
    _leftovers: Leftovers,
    server: ServerProcess,
    client: kube::Client,
    _veth: Veth,
}

/// Container shims (and their containers) and mounts under the agent's data dir, which
/// outlive the agent and its containerd; killed by PID and unmounted on drop.
struct Leftovers(PathBuf);

impl Drop for Leftovers {
    fn drop(&mut self) {
        let needle = self.0.display().to_string();
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            if String::from_utf8_lossy(&cmdline).contains(&needle) {
                let _ = std::process::Command::new("kill")
                    .args(["-9", &pid.to_string()])
                    .status();
            }
        }
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<&str> = mounts
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .filter(|p| p.starts_with(&needle))
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.len()));
        for p in points {
            let _ = std::process::Command::new("umount")
                .args(["-l", p])
                .status();
        }
    }
}

/// The veth pair holding the node IP; removed on drop.
struct Veth;

impl Veth {
    fn create() -> anyhow::Result<Veth> {
        let _ = ip(&["link", "del", VETH]);
        let peer = format!("{VETH}p");
        for args in [
            vec![
                "link",
                "add",
                VETH,
                "type",
                "veth",
                "peer",
                "name",
                peer.as_str(),
            ],
            vec!["addr", "add", "10.203.254.1/24", "dev", VETH],
            vec!["link", "set", VETH, "up"],
            vec!["link", "set", peer.as_str(), "up"],
        ] {
            let out = ip(&args)?;
            if !out.status.success() {
                bail!(
                    "ip {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        Ok(Veth)
    }
}

fn ip(args: &[&str]) -> anyhow::Result<std::process::Output> {
    std::process::Command::new("ip")
        .args(args)
        .output()
        .context("running ip (Debian package iproute2)")
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", VETH]);
        let _ = ip(&["link", "del", "cni0"]);
    }
}

impl Bench {
    async fn start(opts: &Options) -> anyhow::Result<Bench> {
        let veth = Veth::create()?;
        let server = ServerProcess::start(&opts.launch)?;
        let mut args = vec![NODE.to_string(), NODE_IP.to_string()];
        if let Some(rt) = &opts.runtime {
            let bin = agent::containerd::find_binary(rt)
                .with_context(|| format!("OCI runtime {rt} not found (Debian package {rt})"))?;
            args.extend(["--runtime".to_string(), bin.display().to_string()]);
        }
        // Declared before the agent so that, on an early error too, the agent is
        // killed first and then what its runtime left behind.
        let leftovers = Leftovers(server.agent_data_dir());
        let mut agent = server.start_agent(&args)?;
        let client = crate::cluster::client(&server.kubeconfig).await?;
        let nodes: Api<Node> = Api::all(client.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            agent.check_running()?;
            // Ready, and with a podCIDR (the agent writes its CNI config from it).
            let node = nodes.get_opt(NODE).await?;
            let has_cidr = node
                .as_ref()
                .and_then(|n| n.spec.as_ref()?.pod_cidr.as_ref())
                .is_some();
            let ready = has_cidr
                && node
                    .and_then(|n| {
                        n.status?
                            .conditions?
                            .into_iter()
                            .find(|c| c.type_ == "Ready")
                    })
                    .is_some_and(|c| c.status == "True");
            if ready {
                break;
            }
            if Instant::now() > deadline {
                bail!(
                    "the node did not become Ready; agent log:\n{}",
                    agent.log_tail(40)
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        progress(SUITE, format_args!("node Ready; importing the image"));
        let socket =
            agent::containerd::ContainerdPaths::new(&server.agent_data_dir().join("agent")).socket;
        let tar: PathBuf = server.agent_data_dir().join("busybox-bench.tar");
        test_support::images::write_tarball(&test_support::images::busybox(IMAGE)?, &tar)?;
        agent::images::import(&socket, &[tar]).await?;
        let ns: Api<Namespace> = Api::all(client.clone());
        ns.create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": NAMESPACE}}))?,
        )
        .await?;
        // The controller manager makes the namespace's `default` account and publishes
        // the cluster CA there; pods need both.
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), NAMESPACE);
        let cms: Api<k8s_openapi::api::core::v1::ConfigMap> =
            Api::namespaced(client.clone(), NAMESPACE);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while sas.get_opt("default").await?.is_none()
            || cms.get_opt("kube-root-ca.crt").await?.is_none()
        {
            if std::time::Instant::now() > deadline {
                anyhow::bail!("no default ServiceAccount and kube-root-ca.crt in {NAMESPACE}");
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        Ok(Bench {
            agent,
            _leftovers: leftovers,
            server,
            client,
            _veth: veth,
        })
    }

    fn pod(name: &str) -> anyhow::Result<Pod> {
        Ok(serde_json::from_value(json!({
            "metadata": {"name": name, "labels": {"bench": "pods"}},
            "spec": {
                "nodeName": NODE,
                "serviceAccountName": "default",
                "terminationGracePeriodSeconds": 0,
                "containers": [{
                    "name": "main",
                    "image": IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["sleep", "3600"],
                }],
            },
        }))?)
    }

    /// Creates `n` pods at once; returns each one's create → Running in ms.
    async fn start_pods(&self, prefix: &str, n: usize) -> anyhow::Result<Vec<f64>> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        let rv = api
            .list(&ListParams::default())
            .await?
            .metadata
            .resource_version
            .context("list without resourceVersion")?;
        let mut events = api
            .watch(&WatchParams::default().labels("bench=pods"), &rv)
            .await?
            .boxed();
        let mut sent: HashMap<String, Instant> = HashMap::new();
        let mut creates = Vec::new();
        for i in 0..n {
            let name = format!("{prefix}-{i}");
            let pod = Self::pod(&name)?;
            sent.insert(name, Instant::now());
            let api = api.clone();
            creates.push(tokio::spawn(async move {
                api.create(&PostParams::default(), &pod).await
            }));
        }
        for c in creates {
            c.await.context("create task")??;
        }
        let mut done: HashMap<String, f64> = HashMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while done.len() < n {
            let ev = tokio::time::timeout_at(deadline, events.next())
                .await
                .map_err(|_| {
                    let containerd = std::fs::read_to_string(self.server.agent_data_dir().join("agent/containerd/containerd.log")).unwrap_or_default();
                    let tail: Vec<&str> = containerd.lines().rev().take(15).collect();
                    anyhow::anyhow!(
                        "{} of {n} pods Running after 120 s; agent log:\n{}\ncontainerd log (newest first):\n{}",
                        done.len(),
                        self.agent.log_tail(30),
                        tail.join("\n")
                    )
                })?;
            let Some(ev) = ev else {
                bail!("pod watch ended")
            };
            if let WatchEvent::Modified(p) | WatchEvent::Added(p) = ev? {
                let name = p.metadata.name.clone().unwrap_or_default();
                let running = p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
                if running && !done.contains_key(&name) {
                    if let Some(t) = sent.get(&name) {
                        done.insert(name, t.elapsed().as_secs_f64() * 1000.0);
                    }
                }
            }
        }
        Ok(done.into_values().collect())
    }

    async fn delete_all(&self) -> anyhow::Result<()> {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), NAMESPACE);
        api.delete_collection(
            &DeleteParams::default(),
            &ListParams::default().labels("bench=pods"),
        )
        .await?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !api
            .list(&ListParams::default().labels("bench=pods"))
            .await?
            .items
            .is_empty()
        {
            if Instant::now() > deadline {
                bail!("pods not deleted after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Gone from the API is not yet gone from the node: wait for the agent to
        // remove the sandboxes (and their network namespaces) from the runtime.
        let socket =
            agent::containerd::ContainerdPaths::new(&self.server.agent_data_dir().join("agent"))
                .socket;
        loop {
            let out = std::process::Command::new("ctr")
                .arg("--address")
                .arg(&socket)
                .args(["-n", "k8s.io", "containers", "ls", "-q"])
                .output()
                .context("running ctr")?;
            if out.status.success() && out.stdout.iter().all(u8::is_ascii_whitespace) {
                break;
            }
            if Instant::now() > deadline {
                bail!("the runtime still has the pods' containers after 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }
}
