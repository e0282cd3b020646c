//! Process wiring for `rkube server`: opens the store, loads the registry, bootstraps
//! the cluster's own objects, issues TLS material, serves the API, writes the admin
//! kubeconfig, and shuts everything down in order on cancellation.

pub mod bootstrap;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use ipnet::Ipv4Net;
use registry::{Registry, RegistryConfig};
use storage::Storage;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

#[derive(Clone, Debug)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub bind_address: IpAddr,
    pub https_listen_port: u16,
    pub write_kubeconfig: PathBuf,
    pub write_kubeconfig_mode: u32,
    pub datastore_endpoint: Option<String>,
    pub service_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
    pub token_auth_file: Option<PathBuf>,
    pub tls_san: Vec<String>,
    pub disable_agent: bool,
    /// The in-process agent's node name (the host name if unset).
    pub node_name: Option<String>,
    /// The in-process agent's node IP (the first non-loopback address if unset).
    pub node_ip: Option<IpAddr>,
    /// `unix:///…` of an existing CRI runtime for the agent (a managed containerd if unset).
    pub container_runtime_endpoint: Option<String>,
    /// The pod network's Linux bridge (`cni0` if unset).
    pub cni_bridge: Option<String>,
    /// `--registry-config`: the agent's registries.yaml (mirrors, credentials, TLS).
    pub registry_config: Option<PathBuf>,
    /// `--disable-default-registry-endpoint`: mirrored registries are not tried themselves.
    pub disable_default_registry_endpoint: bool,
    /// `--kubelet-arg`: kubelet flags (`KEY=VALUE`) for the in-process agent.
    pub kubelet_args: Vec<String>,
    /// Run without the in-process controller manager (`rkube controller-manager` elsewhere).
    pub disable_controller_manager: bool,
    /// Run without the in-process scheduler (`rkube scheduler` elsewhere).
    pub disable_scheduler: bool,
    /// How long the metrics API reuses node agents' readings (`--metric-resolution`).
    pub metric_resolution: std::time::Duration,
}

impl ServerConfig {
    pub fn with_data_dir(data_dir: PathBuf) -> Self {
        ServerConfig {
            write_kubeconfig: data_dir.join("kubeconfig.yaml"),
            data_dir,
            bind_address: IpAddr::from([0, 0, 0, 0]),
            https_listen_port: 6443,
            write_kubeconfig_mode: 0o600,
            datastore_endpoint: None,
            service_cidr: "10.43.0.0/16".parse().expect("invariant: literal CIDR"),
            cluster_cidr: "10.42.0.0/16".parse().expect("invariant: literal CIDR"),
            token_auth_file: None,
            tls_san: Vec::new(),
            disable_agent: true,
            node_name: None,
            node_ip: None,
            container_runtime_endpoint: None,
            cni_bridge: None,
            registry_config: None,
            disable_default_registry_endpoint: false,
            kubelet_args: Vec::new(),
            disable_controller_manager: false,
            disable_scheduler: false,
            metric_resolution: apiserver::metrics_server::DEFAULT_RESOLUTION,
        }
    }
}

/// How long [`RunningServer::shutdown`] waits for components to stop.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(10);

/// A started server.
pub struct RunningServer {
    pub address: SocketAddr,
    pub kubeconfig: PathBuf,
    pub registry: Arc<Registry>,
    pub ca_pem: String,
    cancel: CancellationToken,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl RunningServer {
    /// Stops every component and waits for them, at most [`SHUTDOWN_GRACE`]: a
    /// component stuck on cancellation must not keep the process (or a test) alive.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        let deadline = tokio::time::Instant::now() + SHUTDOWN_GRACE;
        for (i, mut t) in self.tasks.into_iter().enumerate() {
            if tokio::time::timeout_at(deadline, &mut t).await.is_err() {
                tracing::warn!(
                    task = i,
                    "component did not stop within the shutdown grace period; aborting it"
                );
                t.abort();
            }
        }
    }

    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

async fn open_storage(
    config: &ServerConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<Arc<dyn Storage>> {
    match &config.datastore_endpoint {
        Some(ep) => {
            let endpoints: Vec<String> = ep
                .split(',')
                .map(|e| e.trim().trim_start_matches("etcd://").to_string())
                .filter(|e| !e.is_empty())
                .collect();
            let etcd = storage::etcd::EtcdStorage::connect(&endpoints)
                .await
                .with_context(|| format!("connecting to etcd at {ep}"))?;
            tracing::info!(endpoints = ?endpoints, "using etcd datastore");
            Ok(Arc::new(etcd))
        }
        None => {
            let dir = config.data_dir.join("server").join("db");
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            let path = dir.join("state.db");
            let db = Arc::new(
                storage::sqlite::SqliteStorage::open(&path)
                    .with_context(|| format!("opening {}", path.display()))?,
            );
            db.start_compactor(std::time::Duration::from_secs(300), 1000, cancel.clone());
            tracing::info!(path = %path.display(), "using embedded SQLite datastore");
            Ok(db)
        }
    }
}

/// A client of our own API for the in-process components (they use the API like any
/// other client, so each can also run as its own process).
async fn loopback_client(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

fn host_ips() -> Vec<IpAddr> {
    // Addresses of local interfaces, without asking anything on the network.
    let mut out = Vec::new();
    if let Ok(text) = std::fs::read_to_string("/proc/net/fib_trie") {
        let mut last: Option<IpAddr> = None;
        for line in text.lines() {
            let t = line.trim();
            if let Some(rest) = t.strip_prefix("|-- ") {
                last = rest.parse().ok();
            } else if t.contains("/32 host LOCAL") {
                if let Some(ip) = last {
                    if !out.contains(&ip) && !ip.is_loopback() {
                        out.push(ip);
                    }
                }
            }
        }
    }
    out
}

/// The in-process agent's settings: a control-plane node on this host.
fn agent_config(config: &ServerConfig, ca_pem: &str) -> anyhow::Result<agent::AgentConfig> {
    let node_ip = match config.node_ip {
        Some(ip) => ip,
        None => agent::default_node_ip()
            .context("no non-loopback address to use as the node IP; pass --node-ip")?,
    };
    let node_name = config
        .node_name
        .clone()
        .unwrap_or_else(agent::default_node_name);
    let mut agent = agent::AgentConfig::new(&node_name, node_ip, config.data_dir.clone());
    agent.control_plane = true;
    agent.container_runtime_endpoint = config.container_runtime_endpoint.clone();
    agent.cluster_cidr = Some(config.cluster_cidr);
    agent.client_ca_pem = Some(ca_pem.to_string());
    agent.registry_config = config.registry_config.clone();
    agent.disable_default_registry_endpoint = config.disable_default_registry_endpoint;
    if let Some(bridge) = &config.cni_bridge {
        agent.cni_bridge = bridge.clone();
    }
    agent::kubelet_args::apply(&mut agent, &config.kubelet_args)?;
    Ok(agent)
}

/// Starts the control plane and returns once it serves requests.
pub async fn start(config: ServerConfig) -> anyhow::Result<RunningServer> {
    let cancel = CancellationToken::new();
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating {}", config.data_dir.display()))?;
    let storage = open_storage(&config, &cancel).await?;
    let registry = Registry::new(
        storage,
        RegistryConfig {
            service_cidr: config.service_cidr,
            node_port_range: (30000, 32767),
        },
        cancel.clone(),
    )
    .await
    .context("loading the registry")?;
    bootstrap::ensure_system_objects(&registry)
        .await
        .context("creating system objects")?;
    bootstrap::ensure_local_storage(&registry, &config.data_dir.join("storage"))
        .await
        .context("creating the local-path StorageClass")?;

    let hostname = hostname::get()
        .ok()
        .and_then(|h| h.into_string().ok())
        .unwrap_or_else(|| "localhost".into());
    let ips = host_ips();
    let first_service_ip = IpAddr::V4(registry.service_ips.nth(1));
    let sans = pki::default_sans(&hostname, &ips, first_service_ip, &config.tls_san);
    let tls_dir = config.data_dir.join("server").join("tls");
    let pki =
        pki::ClusterPki::load_or_create(&tls_dir, &sans).context("preparing TLS certificates")?;
    let tls = apiserver::tls::server_config(
        &pki.serving_cert_pem,
        &pki.serving_key_pem,
        &pki.ca_cert_pem,
    )?;
    // The API server's identity towards node agents (upstream's kubelet client cert).
    let (kubelet_cert, kubelet_key) = pki
        .issue_client_cert("kube-apiserver-kubelet-client", &[pki::MASTERS_GROUP])
        .context("issuing the kubelet client certificate")?;
    let kubelet_client = apiserver::tls::kubelet_client_config(&kubelet_cert, &kubelet_key)?;
    let service_accounts = std::sync::Arc::new(
        pki::ServiceAccountKey::load_or_create(&tls_dir)
            .context("preparing the service-account key")?,
    );
    let tokens = match &config.token_auth_file {
        Some(p) => Some(
            pki::TokenFile::load(p)
                .with_context(|| format!("reading token file {}", p.display()))?,
        ),
        None => None,
    };

    let listener = TcpListener::bind(SocketAddr::new(
        config.bind_address,
        config.https_listen_port,
    ))
    .await
    .with_context(|| {
        format!(
            "binding {}:{}",
            config.bind_address, config.https_listen_port
        )
    })?;
    let address = listener.local_addr()?;
    let advertise = match ips.first() {
        Some(ip) if config.bind_address.is_unspecified() => {
            SocketAddr::new(*ip, address.port()).to_string()
        }
        _ => address.to_string(),
    };
    let advertise_ip = match ips.first() {
        Some(ip) if config.bind_address.is_unspecified() => *ip,
        _ => address.ip(),
    };
    bootstrap::ensure_kubernetes_endpoints(&registry, advertise_ip, address.port())
        .await
        .context("writing the kubernetes service's endpoints")?;
    let api = apiserver::ApiServer::new(apiserver::Config {
        registry: registry.clone(),
        tls,
        authenticator: apiserver::authn::Authenticator::new(tokens, Some(service_accounts)),
        advertise_address: advertise,
        kubelet_client: Some(kubelet_client),
        metric_resolution: config.metric_resolution,
    });
    api.health.register("etcd", true);
    api.health
        .register("poststarthook/bootstrap-controller", true);
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(api.clone().serve(listener, cancel.clone())));

    let local = if config.bind_address.is_unspecified() {
        SocketAddr::new(IpAddr::from([127, 0, 0, 1]), address.port())
    } else {
        address
    };
    let server_url = format!("https://{local}");
    pki::write_kubeconfig(
        &config.write_kubeconfig,
        config.write_kubeconfig_mode,
        "default",
        &server_url,
        &pki.ca_cert_pem,
        &pki.admin_cert_pem,
        &pki.admin_key_pem,
    )
    .with_context(|| format!("writing kubeconfig {}", config.write_kubeconfig.display()))?;
    tracing::info!(kubeconfig = %config.write_kubeconfig.display(), "wrote kubeconfig");

    let client = loopback_client(&config.write_kubeconfig)
        .await
        .context("building the loopback client")?;
    if !config.disable_controller_manager {
        let elector = leaderelection::LeaderElector::new(
            client.clone(),
            leaderelection::LeaderElectionConfig::new(
                "kube-system",
                "kube-controller-manager",
                &leaderelection::default_identity(),
            ),
        );
        let controller_client = client.clone();
        // Node IPAM carves pod CIDRs from the server's --cluster-cidr (as k3s does);
        // every namespace gets the cluster CA as kube-root-ca.crt.
        let options = controllers::options::ControllerOptions {
            cluster_cidr: config.cluster_cidr,
            root_ca: Some(pki.ca_cert_pem.clone()),
            ..Default::default()
        };
        tasks.push(tokio::spawn(elector.run(cancel.clone(), move |token| {
            let client = controller_client.clone();
            let options = options.clone();
            async move { controllers::run_all_with(client, token, options).await }
        })));
        api.components.write().controller_manager = true;
    }
    // The scheduler, under its own Lease as upstream's kube-scheduler.
    if !config.disable_scheduler {
        let elector = leaderelection::LeaderElector::new(
            client.clone(),
            leaderelection::LeaderElectionConfig::new(
                "kube-system",
                "kube-scheduler",
                &leaderelection::default_identity(),
            ),
        );
        let scheduler_client = client.clone();
        tasks.push(tokio::spawn(elector.run(cancel.clone(), move |token| {
            let scheduler = scheduler::Scheduler::new(
                scheduler_client.clone(),
                scheduler::SchedulerConfig::default(),
            );
            async move { scheduler.run(token).await }
        })));
        api.components.write().scheduler = true;
    }
    // The node agent, as a client of the API like any other (upstream: the kubelet).
    if !config.disable_agent {
        let agent_config = agent_config(&config, &pki.ca_cert_pem)?;
        let agent_client = client.clone();
        let agent_cancel = cancel.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = agent::run(agent_client, agent_config, agent_cancel).await {
                tracing::error!(error = format!("{e:#}"), "node agent failed");
            }
        }));
    }
    Ok(RunningServer {
        address: local,
        kubeconfig: config.write_kubeconfig.clone(),
        registry,
        ca_pem: pki.ca_cert_pem.clone(),
        cancel,
        tasks,
    })
}
