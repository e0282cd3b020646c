//! The rkube binary: `rkube server` runs the control plane (and, later, a node);
//! flags follow k3s's names so users can carry their habits over.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "rkube", version, about = "Kubernetes in one Rust binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server, store, controllers).
    Server(ServerArgs),
    /// Run the controllers alone against an API server, under leader election.
    ControllerManager(ControllerManagerArgs),
    /// Register virtual nodes that run pods without containers (for tests and benchmarks).
    VirtualNodes(VirtualNodesArgs),
    /// Run the scheduler alone against an API server, under leader election.
    Scheduler(SchedulerArgs),
    /// Run the node agent (kubelet) against an API server.
    Agent(AgentArgs),
    /// Manage the images of this node's container runtime.
    Images(ImagesArgs),
}

/// Node flags shared by `rkube server` and `rkube agent`.
#[derive(clap::Args)]
struct NodeArgs {
    /// This node's name (the host name if unset).
    #[arg(long)]
    node_name: Option<String>,
    /// This node's IP (the first non-loopback address if unset; loopback is refused).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// `unix:///…` of an existing CRI runtime; by default a containerd child is started.
    #[arg(long)]
    container_runtime_endpoint: Option<String>,
    /// Linux bridge of the pod network.
    #[arg(long, default_value = "cni0")]
    cni_bridge: String,
    /// Registry mirrors, credentials and TLS settings (k3s's registries.yaml format).
    #[arg(long)]
    registry_config: Option<PathBuf>,
    /// Do not fall back to a mirrored registry itself when its mirrors fail.
    #[arg(long)]
    disable_default_registry_endpoint: bool,
    /// A kubelet flag for the agent as `KEY=VALUE` (repeatable, as k3s), e.g.
    /// `image-gc-high-threshold=90`, `eviction-hard=imagefs.available<10%`.
    #[arg(long = "kubelet-arg", value_name = "KEY=VALUE")]
    kubelet_arg: Vec<String>,
}

#[derive(clap::Args)]
struct AgentArgs {
    /// Folder for the agent's state (`<data-dir>/agent/`).
    #[arg(
        long,
        short = 'd',
        default_value = "/var/lib/rkube",
        env = "RKUBE_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// URL of the API server (with `--token`), e.g. `https://10.0.0.1:6443`.
    #[arg(long, env = "RKUBE_URL")]
    server: Option<String>,
    /// Bearer token for `--server`.
    #[arg(long, env = "RKUBE_TOKEN")]
    token: Option<String>,
    /// CA certificate (PEM) of `--server`; without it the server certificate is not checked.
    #[arg(long)]
    server_ca: Option<PathBuf>,
    /// Kubeconfig of the API server (instead of `--server`/`--token`).
    #[arg(long, env = "KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Port of the agent's HTTPS endpoint (logs, exec, …).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
    #[command(flatten)]
    node: NodeArgs,
}

#[derive(clap::Args)]
struct ImagesArgs {
    #[command(subcommand)]
    command: ImagesCommand,
    /// The agent's data dir (its containerd socket is `<data-dir>/agent/containerd/containerd.sock`).
    #[arg(
        long,
        short = 'd',
        default_value = "/var/lib/rkube",
        env = "RKUBE_DATA_DIR",
        global = true
    )]
    data_dir: PathBuf,
    /// `unix:///…` of the CRI runtime (instead of the agent's managed containerd).
    #[arg(long, global = true)]
    container_runtime_endpoint: Option<String>,
}

#[derive(Subcommand)]
enum ImagesCommand {
    /// Import OCI-layout or docker-archive tarballs.
    Import {
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// List the runtime's images (through CRI).
    List,
}

#[derive(clap::Args)]
struct SchedulerArgs {
    /// Kubeconfig of the API server.
    #[arg(long, default_value = "/etc/rkube/rkube.yaml", env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Pods with this `spec.schedulerName` are scheduled.
    #[arg(long, default_value = scheduler::DEFAULT_SCHEDULER_NAME)]
    scheduler_name: String,
    /// Share of nodes to find feasible before scoring (0: adaptive, as upstream).
    #[arg(long, default_value_t = 0)]
    percentage_of_nodes_to_score: u32,
    /// Leader election lease name (in kube-system).
    #[arg(long, default_value = "kube-scheduler")]
    leader_elect_resource_name: String,
    /// HTTPS port for /metrics and /healthz (0: do not serve).
    #[arg(long, default_value_t = 10259)]
    secure_port: u16,
    /// Address the /metrics and /healthz port listens on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    #[command(flatten)]
    leader_election: LeaderElectionArgs,
}

/// Leader election timing, with kube-controller-manager's flag names and defaults.
#[derive(clap::Args)]
struct LeaderElectionArgs {
    /// How long a standby waits after the last renewal before taking over (e.g. `15s`).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: std::time::Duration,
    /// How long the leader keeps trying to renew before it steps down.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: std::time::Duration,
    /// Time between attempts to acquire or renew.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: std::time::Duration,
}

impl LeaderElectionArgs {
    fn config(&self, name: &str, identity: &str) -> leaderelection::LeaderElectionConfig {
        let mut config = leaderelection::LeaderElectionConfig::new("kube-system", name, identity);
        config.lease_duration = self.leader_elect_lease_duration;
        config.renew_deadline = self.leader_elect_renew_deadline;
        config.retry_period = self.leader_elect_retry_period;
        config
    }
}

/// Go-style durations as upstream flags take them: `500ms`, `15s`, `2m`, `1h`.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let split = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .ok_or_else(|| format!("missing unit in duration {s:?}"))?;
    let (number, unit) = s.split_at(split);
    let value: f64 = number
        .parse()
        .map_err(|_| format!("invalid duration {s:?}"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("unknown unit {unit:?} in duration {s:?}")),
    };
    Ok(std::time::Duration::from_secs_f64(seconds))
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Folder for state, certificates and the embedded datastore.
    #[arg(
        long,
        short = 'd',
        default_value = "/var/lib/rkube",
        env = "RKUBE_DATA_DIR"
    )]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Where to write the admin kubeconfig.
    #[arg(
        long,
        short = 'o',
        default_value = "/etc/rkube/rkube.yaml",
        env = "RKUBE_KUBECONFIG_OUTPUT"
    )]
    write_kubeconfig: PathBuf,
    /// File mode of the kubeconfig (octal).
    #[arg(long, default_value = "0600")]
    write_kubeconfig_mode: String,
    /// etcd endpoints (`http://127.0.0.1:2379[,…]`); the embedded SQLite store if unset.
    #[arg(long, env = "RKUBE_DATASTORE_ENDPOINT")]
    datastore_endpoint: Option<String>,
    /// Service cluster IP range.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: ipnet::Ipv4Net,
    /// Pod IP range.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    /// Static bearer tokens (`token,user,uid,"group1,group2"` per line).
    #[arg(long)]
    token_auth_file: Option<PathBuf>,
    /// Extra names or IPs for the serving certificate.
    #[arg(long)]
    tls_san: Vec<String>,
    /// Run without the node agent.
    #[arg(long)]
    disable_agent: bool,
    #[command(flatten)]
    node: NodeArgs,
    /// Run without the in-process controller manager.
    #[arg(long)]
    disable_controller_manager: bool,
    /// Run without the in-process scheduler.
    #[arg(long)]
    disable_scheduler: bool,
    /// How long the metrics API (`kubectl top`, the HPA) reuses node agents' readings.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    metric_resolution: std::time::Duration,
}

#[derive(clap::Args)]
struct ControllerManagerArgs {
    /// Kubeconfig of the API server to manage.
    #[arg(long, default_value = "/etc/rkube/rkube.yaml", env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Leader election lease name (in kube-system).
    #[arg(long, default_value = "kube-controller-manager")]
    leader_elect_resource_name: String,
    /// HTTPS port for /metrics and /healthz (0: do not serve).
    #[arg(long, default_value_t = 10257)]
    secure_port: u16,
    /// Address the /metrics and /healthz port listens on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    #[command(flatten)]
    leader_election: LeaderElectionArgs,
    /// Give nodes without one a pod CIDR from --cluster-cidr (node IPAM).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    allocate_node_cidrs: bool,
    /// Pod IP range node IPAM carves node pod CIDRs from.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: ipnet::Ipv4Net,
    /// Prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    node_cidr_mask_size: u8,
    /// Cluster CA (PEM) published to every namespace as the kube-root-ca.crt ConfigMap.
    #[arg(long)]
    root_ca_file: Option<PathBuf>,
    /// How long a node may go without renewing its Lease or posting status before its
    /// conditions become Unknown.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// How often each HorizontalPodAutoscaler is evaluated.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    horizontal_pod_autoscaler_sync_period: std::time::Duration,
    /// How far back scale-down looks for a higher recommendation (HPAs without their own window).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    horizontal_pod_autoscaler_downscale_stabilization: std::time::Duration,
    /// Usage ratios this close to 1 do not scale.
    #[arg(long, default_value_t = 0.1)]
    horizontal_pod_autoscaler_tolerance: f64,
}

#[derive(clap::Args)]
struct VirtualNodesArgs {
    /// How many nodes to register.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Nodes are named `<prefix>-<index>`.
    #[arg(long, default_value = "rkube-virtual")]
    prefix: String,
    /// CPU capacity of each node.
    #[arg(long, default_value = "8")]
    cpu: String,
    /// Memory capacity of each node.
    #[arg(long, default_value = "32Gi")]
    memory: String,
    /// Pod capacity of each node.
    #[arg(long, default_value_t = 110)]
    pods: u32,
    /// Extra node labels (`k=v,…`).
    #[arg(long, default_value = "")]
    labels: String,
    /// Taints instead of `virtual-kubelet.io/provider=rkube:NoSchedule` (`k=v:Effect,…`; "" for none).
    #[arg(long)]
    taints: Option<String>,
    /// Pod CIDRs for nodes that have none are carved from here.
    #[arg(long, default_value = "10.42.0.0/16")]
    pod_cidr: ipnet::Ipv4Net,
    /// Prefix length of each node's pod CIDR.
    #[arg(long, default_value_t = 24)]
    pod_cidr_mask_size: u8,
    /// Seconds between Lease renewals.
    #[arg(long, default_value_t = 10)]
    lease_interval: u64,
    /// Record a `Started` event per container (turn off for thousands of pods).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pod_events: bool,
    /// Where the nodes' fake InternalIPs come from (a 127.x range with --kubelet-port).
    #[arg(long, default_value = "100.64.0.0/10")]
    node_ip_base: ipnet::Ipv4Net,
    /// Serve `/stats/summary` (usage from pod annotations) per node on this port of its
    /// InternalIP, 0 for a free one, so `kubectl top` and the HPA see virtual nodes.
    #[arg(long)]
    kubelet_port: Option<u16>,
    /// Kubeconfig of the API server.
    #[arg(long, default_value = "/etc/rkube/rkube.yaml", env = "KUBECONFIG")]
    kubeconfig: PathBuf,
}

/// mimalloc instead of glibc's malloc: the API server's request path allocates heavily
/// (JSON values, typed objects), and glibc's malloc took a quarter of its CPU. Built
/// without transparent huge pages (feature `no_thp`), which made idle RSS 2.6x.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RKUBE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Server(args) => runtime.block_on(run_server(args)),
        Command::ControllerManager(args) => runtime.block_on(run_controller_manager(args)),
        Command::VirtualNodes(args) => runtime.block_on(run_virtual_nodes(args)),
        Command::Scheduler(args) => runtime.block_on(run_scheduler(args)),
        Command::Agent(args) => runtime.block_on(run_agent(args)),
        Command::Images(args) => runtime.block_on(run_images(args)),
    }
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let mode = u32::from_str_radix(args.write_kubeconfig_mode.trim_start_matches("0o"), 8)
        .with_context(|| {
            format!(
                "invalid --write-kubeconfig-mode {}",
                args.write_kubeconfig_mode
            )
        })?;
    let config = server::ServerConfig {
        data_dir: args.data_dir,
        bind_address: args.bind_address,
        https_listen_port: args.https_listen_port,
        write_kubeconfig: args.write_kubeconfig,
        write_kubeconfig_mode: mode,
        datastore_endpoint: args.datastore_endpoint,
        service_cidr: args.service_cidr,
        cluster_cidr: args.cluster_cidr,
        token_auth_file: args.token_auth_file,
        tls_san: args.tls_san,
        disable_agent: args.disable_agent,
        node_name: args.node.node_name,
        node_ip: args.node.node_ip,
        container_runtime_endpoint: args.node.container_runtime_endpoint,
        cni_bridge: Some(args.node.cni_bridge),
        registry_config: args.node.registry_config,
        disable_default_registry_endpoint: args.node.disable_default_registry_endpoint,
        kubelet_args: args.node.kubelet_arg,
        disable_controller_manager: args.disable_controller_manager,
        disable_scheduler: args.disable_scheduler,
        metric_resolution: args.metric_resolution,
    };
    let running = server::start(config).await?;
    tracing::info!(address = %running.address, kubeconfig = %running.kubeconfig.display(), "rkube server ready");
    println!("Wrote kubeconfig {}", running.kubeconfig.display());
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

/// A component's own `/metrics` and `/healthz` port (`--secure-port 0` turns it off).
async fn serve_component_endpoint(
    bind: IpAddr,
    port: u16,
    component: &str,
    cancel: &tokio_util::sync::CancellationToken,
) -> anyhow::Result<()> {
    if port != 0 {
        let addr = std::net::SocketAddr::new(bind, port);
        component_base::serve(addr, component, cancel.clone()).await?;
    }
    Ok(())
}

async fn client_from(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn run_controller_manager(args: ControllerManagerArgs) -> anyhow::Result<()> {
    const COMPONENT: &str = "kube-controller-manager";
    let client = client_from(&args.kubeconfig).await?;
    let identity = leaderelection::default_identity();
    let cancel = tokio_util::sync::CancellationToken::new();
    serve_component_endpoint(args.bind_address, args.secure_port, COMPONENT, &cancel).await?;
    let elector = leaderelection::LeaderElector::new(
        client.clone(),
        args.leader_election
            .config(&args.leader_elect_resource_name, &identity),
    );
    let root_ca = match &args.root_ca_file {
        Some(p) => {
            Some(std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?)
        }
        None => None,
    };
    let options = controllers::options::ControllerOptions {
        allocate_node_cidrs: args.allocate_node_cidrs,
        cluster_cidr: args.cluster_cidr,
        node_cidr_mask_size: args.node_cidr_mask_size,
        root_ca,
        node_monitor_grace_period: args.node_monitor_grace_period,
        hpa_sync_period: args.horizontal_pod_autoscaler_sync_period,
        hpa_downscale_stabilization: args.horizontal_pod_autoscaler_downscale_stabilization,
        hpa_tolerance: args.horizontal_pod_autoscaler_tolerance,
        ..Default::default()
    };
    tracing::info!(%identity, "controller-manager started; campaigning for leadership");
    let task = tokio::spawn(elector.run(cancel.clone(), move |token| {
        let client = client.clone();
        let options = options.clone();
        async move { controllers::run_all_with(client, token, options).await }
    }));
    shutdown_signal().await;
    cancel.cancel();
    let _ = task.await;
    Ok(())
}

async fn run_scheduler(args: SchedulerArgs) -> anyhow::Result<()> {
    const COMPONENT: &str = "kube-scheduler";
    let client = client_from(&args.kubeconfig).await?;
    let identity = leaderelection::default_identity();
    let cancel = tokio_util::sync::CancellationToken::new();
    serve_component_endpoint(args.bind_address, args.secure_port, COMPONENT, &cancel).await?;
    let elector = leaderelection::LeaderElector::new(
        client.clone(),
        args.leader_election
            .config(&args.leader_elect_resource_name, &identity),
    );
    let config = scheduler::SchedulerConfig {
        scheduler_name: args.scheduler_name,
        percentage_of_nodes_to_score: args.percentage_of_nodes_to_score,
        ..Default::default()
    };
    tracing::info!(%identity, "scheduler started; campaigning for leadership");
    let task = tokio::spawn(elector.run(cancel.clone(), move |token| {
        let scheduler = scheduler::Scheduler::new(client.clone(), config.clone());
        async move { scheduler.run(token).await }
    }));
    shutdown_signal().await;
    cancel.cancel();
    let _ = task.await;
    Ok(())
}

async fn run_virtual_nodes(args: VirtualNodesArgs) -> anyhow::Result<()> {
    let client = client_from(&args.kubeconfig).await?;
    let mut config = virtual_nodes::VirtualNodeConfig {
        count: args.count,
        prefix: args.prefix,
        cpu: args.cpu,
        memory: args.memory,
        pods: args.pods,
        labels: virtual_nodes::parse_labels(&args.labels)?,
        pod_cidr_base: args.pod_cidr,
        pod_cidr_mask_size: args.pod_cidr_mask_size,
        lease_interval: std::time::Duration::from_secs(args.lease_interval),
        record_pod_events: args.pod_events,
        node_ip_base: args.node_ip_base,
        kubelet_port: args.kubelet_port,
        ..Default::default()
    };
    if let Some(taints) = &args.taints {
        config.taints = virtual_nodes::parse_taints(taints)?;
    }
    let count = config.count;
    let nodes = virtual_nodes::VirtualNodes::new(client, config)?;
    let handle = nodes.handle();
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut task = tokio::spawn(nodes.run(cancel.clone()));
    tokio::spawn(async move {
        if handle.wait_registered().await.is_ok() {
            tracing::info!(count, "virtual nodes ready");
        }
    });
    tokio::select! {
        _ = shutdown_signal() => {}
        r = &mut task => return Ok(r.context("virtual nodes task")??),
    }
    cancel.cancel();
    task.await.context("virtual nodes task")??;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

async fn agent_client(args: &AgentArgs) -> anyhow::Result<kube::Client> {
    if let Some(kubeconfig) = &args.kubeconfig {
        return client_from(kubeconfig).await;
    }
    let (Some(server), Some(token)) = (&args.server, &args.token) else {
        anyhow::bail!("pass --server and --token, or --kubeconfig");
    };
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("invalid --server {server}"))?;
    let mut config = kube::Config::new(url);
    config.auth_info.token = Some(token.clone().into());
    match &args.server_ca {
        Some(ca) => {
            let pem = std::fs::read(ca).with_context(|| format!("reading {}", ca.display()))?;
            let certs = rustls_pemfile::certs(&mut pem.as_slice())
                .collect::<Result<Vec<_>, _>>()
                .with_context(|| format!("parsing {}", ca.display()))?;
            config.root_cert = Some(certs.into_iter().map(|c| c.to_vec()).collect());
        }
        None => {
            tracing::warn!("no --server-ca: the API server's certificate is not verified");
            config.accept_invalid_certs = true;
        }
    }
    Ok(kube::Client::try_from(config)?)
}

async fn run_agent(args: AgentArgs) -> anyhow::Result<()> {
    let client = agent_client(&args).await?;
    let node_ip = match args.node.node_ip {
        Some(ip) => ip,
        None => agent::default_node_ip()
            .context("no non-loopback address to use as the node IP; pass --node-ip")?,
    };
    let node_name = args
        .node
        .node_name
        .clone()
        .unwrap_or_else(agent::default_node_name);
    let mut config = agent::AgentConfig::new(&node_name, node_ip, args.data_dir.clone());
    config.container_runtime_endpoint = args.node.container_runtime_endpoint.clone();
    config.kubelet_port = args.kubelet_port;
    config.cni_bridge = args.node.cni_bridge.clone();
    config.registry_config = args.node.registry_config.clone();
    config.disable_default_registry_endpoint = args.node.disable_default_registry_endpoint;
    agent::kubelet_args::apply(&mut config, &args.node.kubelet_arg)?;
    let ca = args.data_dir.join("server").join("tls").join("ca.crt");
    config.client_ca_pem = std::fs::read_to_string(&ca).ok();
    if config.client_ca_pem.is_none() {
        tracing::warn!(path = %ca.display(), "no cluster CA; the agent's HTTPS port accepts any client");
    }
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut task = tokio::spawn(agent::run(client, config, cancel.clone()));
    tokio::select! {
        _ = shutdown_signal() => {
            tracing::info!("shutting down");
            cancel.cancel();
            task.await??;
        }
        res = &mut task => res??,
    }
    Ok(())
}

async fn run_images(args: ImagesArgs) -> anyhow::Result<()> {
    let socket = match &args.container_runtime_endpoint {
        Some(ep) => cri::socket_path(ep)?,
        None => agent::containerd::ContainerdPaths::new(&args.data_dir.join("agent")).socket,
    };
    match args.command {
        ImagesCommand::Import { files } => {
            agent::images::import(&socket, &files).await?;
            for f in &files {
                println!("imported {}", f.display());
            }
        }
        ImagesCommand::List => {
            let mut cri = cri::connect(&socket).await?;
            let images = cri
                .images
                .list_images(cri::v1::ListImagesRequest::default())
                .await
                .context("listing images")?
                .into_inner()
                .images;
            for image in images {
                for tag in &image.repo_tags {
                    println!("{tag}\t{}", image.id);
                }
            }
        }
    }
    Ok(())
}
