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
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Folder for state, certificates and the embedded datastore.
    #[arg(long, short = 'd', default_value = "/var/lib/rkube", env = "RKUBE_DATA_DIR")]
    data_dir: PathBuf,
    /// Address the API server listens on.
    #[arg(long, default_value = "0.0.0.0")]
    bind_address: IpAddr,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Where to write the admin kubeconfig.
    #[arg(long, short = 'o', default_value = "/etc/rkube/rkube.yaml", env = "RKUBE_KUBECONFIG_OUTPUT")]
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
    /// Run without the in-process controller manager.
    #[arg(long)]
    disable_controller_manager: bool,
}

#[derive(clap::Args)]
struct ControllerManagerArgs {
    /// Kubeconfig of the API server to manage.
    #[arg(long, default_value = "/etc/rkube/rkube.yaml", env = "KUBECONFIG")]
    kubeconfig: PathBuf,
    /// Leader election lease name (in kube-system).
    #[arg(long, default_value = "kube-controller-manager")]
    leader_elect_resource_name: String,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("RKUBE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    match cli.command {
        Command::Server(args) => runtime.block_on(run_server(args)),
        Command::ControllerManager(args) => runtime.block_on(run_controller_manager(args)),
    }
}

async fn run_server(args: ServerArgs) -> anyhow::Result<()> {
    let mode = u32::from_str_radix(args.write_kubeconfig_mode.trim_start_matches("0o"), 8)
        .with_context(|| format!("invalid --write-kubeconfig-mode {}", args.write_kubeconfig_mode))?;
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
        disable_controller_manager: args.disable_controller_manager,
    };
    let running = server::start(config).await?;
    tracing::info!(address = %running.address, kubeconfig = %running.kubeconfig.display(), "rkube server ready");
    println!("Wrote kubeconfig {}", running.kubeconfig.display());
    shutdown_signal().await;
    tracing::info!("shutting down");
    running.shutdown().await;
    Ok(())
}

async fn client_from(kubeconfig: &std::path::Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

async fn run_controller_manager(args: ControllerManagerArgs) -> anyhow::Result<()> {
    let client = client_from(&args.kubeconfig).await?;
    let identity = leaderelection::default_identity();
    let cancel = tokio_util::sync::CancellationToken::new();
    let elector = leaderelection::LeaderElector::new(
        client.clone(),
        leaderelection::LeaderElectionConfig::new("kube-system", &args.leader_elect_resource_name, &identity),
    );
    tracing::info!(%identity, "controller-manager started; campaigning for leadership");
    let task = tokio::spawn(elector.run(cancel.clone(), move |token| {
        let client = client.clone();
        async move { controllers::run_all(client, token).await }
    }));
    shutdown_signal().await;
    cancel.cancel();
    let _ = task.await;
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
