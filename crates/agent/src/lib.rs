//! The node agent (upstream: the kubelet). It registers this machine as a Node and runs
//! the pods bound to it through a CRI runtime (containerd), reaching cluster state only
//! through the Kubernetes API.
//!
//! Start-up ([`run`]): runtime (a managed containerd child, or an existing endpoint) →
//! images (rkube's pause image, the airgap directory) → Node registration → podCIDR → CNI
//! config → then, concurrently: node status and Lease, the pod watch feeding one worker
//! per pod (`worker`, which owns the pod's container probes, `prober`), runtime events
//! (`pleg`), changed ConfigMaps/Secrets (`configwatch`), image garbage collection
//! (`image_gc`), static pods from
//! `<data-dir>/agent/pod-manifests` (`static_pods`), and the HTTPS endpoint on 10250
//! (`server`). On cancellation everything
//! stops; containers keep running, and the next start picks them up again from the runtime.

pub mod cni;
pub mod configwatch;
pub mod container;
pub mod containerd;
pub mod envvars;
pub mod eviction;
pub mod host;
pub mod image_gc;
pub mod images;
pub mod kubelet_args;
pub mod kuberuntime;
pub mod local_volumes;
pub mod logs;
pub mod masquerade;
pub mod node;
pub mod oci;
pub mod pause;
pub mod pleg;
pub mod prober;
pub mod registries;
pub mod resources;
pub mod security_context;
pub mod server;
pub mod static_pods;
pub mod stats;
pub mod status;
pub mod streaming;
pub mod volumes;
pub mod worker;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::watcher;
use kube::Client;
use tokio_util::sync::CancellationToken;

/// The pod range a podCIDR is carved from when no node IPAM assigns one (k3s's default
/// `--cluster-cidr`).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

/// How the agent runs.
#[derive(Clone, Debug)]
pub struct AgentConfig {
    pub node_name: String,
    pub node_ip: IpAddr,
    /// rkube's data dir; the agent keeps its files under `<data_dir>/agent/`.
    pub data_dir: PathBuf,
    /// `unix:///…` of an existing CRI runtime; `None` starts containerd as a child.
    pub container_runtime_endpoint: Option<String>,
    /// Adds the `node-role.kubernetes.io/control-plane` label (agents inside `rkube server`).
    pub control_plane: bool,
    pub node_labels: BTreeMap<String, String>,
    pub max_pods: u32,
    pub kubelet_port: u16,
    /// Cluster DNS server for `dnsPolicy: ClusterFirst` (host resolver settings if unset).
    pub cluster_dns: Option<IpAddr>,
    pub cluster_domain: String,
    /// The cluster's pod range (for the podCIDR fallback, see `node::wait_for_pod_cidr`).
    pub cluster_cidr: Option<ipnet::Ipv4Net>,
    pub pod_cidr_fallback_after: Duration,
    pub node_status_report_frequency: Duration,
    pub node_lease_renew_interval: Duration,
    pub cni_bin_dir: PathBuf,
    /// Linux bridge of the pod network (`cni0`; another name lets two agents share a host).
    pub cni_bridge: String,
    /// CA whose client certificates may use the HTTPS endpoint (`None`: no client auth).
    pub client_ca_pem: Option<String>,
    /// `--registry-config`: registries.yaml with mirrors, credentials and TLS settings.
    pub registry_config: Option<PathBuf>,
    /// `--disable-default-registry-endpoint`: mirrored registries are not tried themselves.
    pub disable_default_registry_endpoint: bool,
    /// OCI runtime binary of the managed containerd (`runc` unless set, e.g. `crun`).
    pub runtime_binary: Option<PathBuf>,
    /// Image garbage collection (`--image-gc-high-threshold`, …).
    pub image_gc: image_gc::ImageGcPolicy,
    /// `--eviction-hard`: thresholds of the MemoryPressure/DiskPressure conditions.
    pub eviction_hard: eviction::Thresholds,
}

impl AgentConfig {
    pub fn new(node_name: &str, node_ip: IpAddr, data_dir: PathBuf) -> Self {
        AgentConfig {
            node_name: node_name.to_string(),
            node_ip,
            data_dir,
            container_runtime_endpoint: None,
            control_plane: false,
            node_labels: BTreeMap::new(),
            max_pods: 110,
            kubelet_port: 10250,
            cluster_dns: None,
            cluster_domain: "cluster.local".into(),
            cluster_cidr: Some(
                DEFAULT_CLUSTER_CIDR
                    .parse()
                    .expect("invariant: literal CIDR"),
            ),
            pod_cidr_fallback_after: Duration::from_secs(5),
            node_status_report_frequency: Duration::from_secs(60),
            node_lease_renew_interval: Duration::from_secs(10),
            cni_bin_dir: PathBuf::from(containerd::DEFAULT_CNI_BIN_DIR),
            cni_bridge: cni::DEFAULT_BRIDGE.to_string(),
            client_ca_pem: None,
            registry_config: None,
            disable_default_registry_endpoint: false,
            runtime_binary: None,
            image_gc: Default::default(),
            eviction_hard: Default::default(),
        }
    }

    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
}

/// The node's name: the host name, lower-cased, as the kubelet defaults it.
pub fn default_node_name() -> String {
    hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| h.to_lowercase())
        .unwrap_or_else(|| "localhost".into())
}

/// The first non-loopback IPv4 address of this host (from the kernel's FIB; no network
/// traffic), the default `--node-ip`.
pub fn default_node_ip() -> Option<IpAddr> {
    let text = std::fs::read_to_string("/proc/net/fib_trie").ok()?;
    let mut last: Option<IpAddr> = None;
    for line in text.lines() {
        let t = line.trim();
        if let Some(rest) = t.strip_prefix("|-- ") {
            last = rest.parse().ok();
        } else if t.contains("/32 host LOCAL") {
            if let Some(ip) = last.filter(|ip| !ip.is_loopback()) {
                return Some(ip);
            }
        }
    }
    None
}

/// Runs the agent until `cancel` fires.
pub async fn run(
    client: Client,
    config: AgentConfig,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    node::validate_node_ip(config.node_ip).map_err(anyhow::Error::msg)?;
    let agent_dir = config.agent_dir();
    std::fs::create_dir_all(&agent_dir)
        .with_context(|| format!("creating {}", agent_dir.display()))?;
    let cni_conf_dir = agent_dir.join("etc").join("cni").join("net.d");

    let (socket, managed) = match &config.container_runtime_endpoint {
        Some(ep) => (cri::socket_path(ep)?, None),
        None => {
            let paths = containerd::ContainerdPaths::new(&agent_dir);
            let registries = match &config.registry_config {
                Some(p) => registries::Registries::load(p)?,
                None => Default::default(),
            };
            let settings = containerd::ContainerdSettings {
                sandbox_image: pause::PAUSE_IMAGE.to_string(),
                cni_bin_dir: config.cni_bin_dir.clone(),
                cni_conf_dir: cni_conf_dir.clone(),
                runtime_binary: config.runtime_binary.clone(),
                registries,
                default_registry_endpoint: !config.disable_default_registry_endpoint,
            };
            let m = containerd::ManagedContainerd::start(paths, &settings).await?;
            (m.paths.socket.clone(), Some(m))
        }
    };
    let result = run_with_runtime(client, config, socket, cni_conf_dir, cancel).await;
    if let Some(m) = managed {
        m.stop().await;
    }
    result
}

async fn run_with_runtime(
    client: Client,
    config: AgentConfig,
    socket: PathBuf,
    cni_conf_dir: PathBuf,
    cancel: CancellationToken,
) -> anyhow::Result<()> {
    let agent_dir = config.agent_dir();
    let mut cri = cri::connect(&socket).await?;
    let version = cri
        .runtime
        .version(cri::v1::VersionRequest {
            version: "v1".into(),
        })
        .await
        .context("asking the container runtime for its version")?
        .into_inner();
    let runtime_version = format!("{}://{}", version.runtime_name, version.runtime_version);
    tracing::info!(runtime = %runtime_version, socket = %socket.display(), "container runtime ready");

    images::import_pause_image(&socket, &agent_dir.join("images-builtin"))
        .await
        .context("importing the pause image")?;
    let airgap = images::airgap_tarballs(&agent_dir.join("images"));
    if !airgap.is_empty() {
        images::import(&socket, &airgap)
            .await
            .context("importing airgap images")?;
    }

    let host = host::detect(&config.data_dir);
    let pressure = node::observe_pressure(&config, &host, &mut cri).await;
    let status = node::desired_status(&config, &host, &runtime_version, &[], true, pressure);
    node::register(&client, &config, &status)
        .await
        .context("registering the node")?;
    let pod_cidr = node::wait_for_pod_cidr(&client, &config, &cancel).await?;
    cni::write_conflist(
        &cni_conf_dir,
        &config.cni_bridge,
        pod_cidr,
        &agent_dir.join("cni").join("networks"),
    )
    .context("writing the CNI config")?;
    if let Err(e) = masquerade::ensure(&config.cni_bridge, pod_cidr, config.cluster_cidr).await {
        tracing::error!(error = %e, "installing the pod egress masquerade failed; pods cannot reach addresses outside the cluster");
    }

    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(node::run_status_and_lease(
        client.clone(),
        config.clone(),
        host.clone(),
        runtime_version.clone(),
        cri.clone(),
        cancel.clone(),
    )));

    let ctx = Arc::new(worker::Ctx {
        client: client.clone(),
        cri: cri.clone(),
        config: config.clone(),
        recorder: controllers::controller_utils::EventRecorder::new(client.clone(), "kubelet"),
        machine_memory: host.memory_bytes as i64,
        owners: Default::default(),
        cpu_history: Default::default(),
    });
    let workers = Arc::new(worker::PodWorkers::default());

    let tls = server::tls_config(
        &config.node_name,
        config.node_ip,
        config.client_ca_pem.as_deref(),
    )?;
    let listener = tokio::net::TcpListener::bind((config.node_ip, config.kubelet_port))
        .await
        .with_context(|| format!("binding {}:{}", config.node_ip, config.kubelet_port))?;
    tasks.push(tokio::spawn(server::serve(
        ctx.clone(),
        listener,
        tls,
        cancel.clone(),
    )));
    tasks.push(tokio::spawn(pleg::run(
        ctx.clone(),
        workers.clone(),
        cancel.clone(),
    )));
    tasks.push(tokio::spawn(configwatch::run(
        ctx.clone(),
        workers.clone(),
        cancel.clone(),
    )));
    tasks.push(tokio::spawn(image_gc::run(ctx.clone(), cancel.clone())));
    tasks.push(tokio::spawn(local_volumes::run(
        client.clone(),
        config.node_name.clone(),
        cancel.clone(),
    )));
    tasks.push(tokio::spawn(static_pods::run(
        client.clone(),
        agent_dir.join("pod-manifests"),
        config.node_name.clone(),
        cancel.clone(),
    )));
    tracing::info!(node = %config.node_name, "agent ready");

    watch_pods(ctx, workers, &mut cri, cancel.clone()).await;
    for t in tasks {
        let _ = t.await;
    }
    Ok(())
}

/// Feeds the pods bound to this node to their workers; after the first full list, pods
/// the runtime still has but the API no longer knows are cleaned up.
async fn watch_pods(
    ctx: Arc<worker::Ctx>,
    workers: Arc<worker::PodWorkers>,
    cri: &mut cri::CriClient,
    cancel: CancellationToken,
) {
    let api: Api<Pod> = Api::all(ctx.client.clone());
    let cfg = watcher::Config::default().fields(&format!("spec.nodeName={}", ctx.config.node_name));
    let mut stream = watcher::watcher(api, cfg).boxed();
    let mut listing: std::collections::HashSet<String> = Default::default();
    let mut known: std::collections::HashSet<String> = Default::default();
    loop {
        let ev = tokio::select! {
            _ = cancel.cancelled() => return,
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return };
        match ev {
            Ok(watcher::Event::Apply(pod)) | Ok(watcher::Event::InitApply(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                listing.insert(uid.clone());
                known.insert(uid.clone());
                workers.update(&ctx, &uid, Some(Arc::new(pod)), &cancel);
            }
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                known.remove(&uid);
                workers.update(&ctx, &uid, None, &cancel);
            }
            Ok(watcher::Event::Init) => listing.clear(),
            Ok(watcher::Event::InitDone) => {
                // Pods deleted while we were not watching.
                for uid in known.difference(&listing).cloned().collect::<Vec<_>>() {
                    workers.update(&ctx, &uid, None, &cancel);
                }
                known = listing.clone();
                match kuberuntime::runtime_pod_uids(cri).await {
                    Ok(uids) => {
                        for uid in uids.into_iter().filter(|u| !known.contains(u)) {
                            tracing::info!(%uid, "removing a pod the API no longer has");
                            workers.update(&ctx, &uid, None, &cancel);
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "listing runtime sandboxes failed"),
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "pod watch failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
