//! The hidden modes this binary runs in as a child of a benchmark (see
//! [`crate::process`]), each doing what the matching `rkube` subcommand does:
//!
//! - `__server <data-dir> [--etcd EP] [--disable-scheduler] [--disable-controller-manager]`
//!   — `rkube server`;
//! - `__virtual_nodes <kubeconfig> <count> [--lease-interval-ms N]` — `rkube
//!   virtual-nodes` with pod and node Events off (thousands of them would only measure
//!   Event writes);
//! - `__scheduler <kubeconfig>` — `rkube scheduler`, under leader election;
//! - `__agent <kubeconfig> <data-dir> <node-name> <node-ip> [--runtime BIN]` — `rkube
//!   agent` with a managed containerd (whose OCI runtime is `BIN`, runc by default).
//!
//! Each prints a ready line on stdout and runs until its stdin closes (the benchmark
//! went away).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};
use tokio_util::sync::CancellationToken;

use crate::process::{NODES_READY_PREFIX, READY_PREFIX};

/// Pod CIDRs of the virtual nodes: a /24 each out of a /10 fits 16,384 nodes (the
/// server's default /16 would fit only 256).
const VIRTUAL_POD_CIDR: &str = "10.64.0.0/10";

/// Runs a hidden mode if `args[1]` names one; `None` when it does not.
pub fn run(args: &[String]) -> Option<anyhow::Result<()>> {
    let rest = args.get(2..).unwrap_or_default();
    let run: fn(&[String]) -> anyhow::Result<()> = match args.get(1).map(String::as_str) {
        Some("__server") => server,
        Some("__virtual_nodes") => virtual_nodes,
        Some("__scheduler") => scheduler,
        Some("__agent") => node_agent,
        _ => return None,
    };
    init_tracing();
    Some(run(rest))
}

fn init_tracing() {
    let filter = std::env::var("RKUBE_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

/// Resolves when our stdin closes: the benchmark that started us is gone.
async fn parent_gone() {
    let mut stdin = tokio::io::stdin();
    let _ = tokio::io::copy(&mut stdin, &mut tokio::io::sink()).await;
}

/// Positional arguments, and the flags among `args` (`--name` or `--name value`).
struct Args {
    positional: Vec<String>,
    flags: Vec<(String, Option<String>)>,
}

impl Args {
    /// `with_value` names the flags that take a value.
    fn parse(args: &[String], with_value: &[&str]) -> anyhow::Result<Args> {
        let mut out = Args {
            positional: Vec::new(),
            flags: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            match a.strip_prefix("--") {
                Some(name) if with_value.contains(&name) => {
                    let value = it
                        .next()
                        .with_context(|| format!("--{name} needs a value"))?;
                    out.flags.push((name.to_string(), Some(value.clone())));
                }
                Some(name) => out.flags.push((name.to_string(), None)),
                None => out.positional.push(a.clone()),
            }
        }
        Ok(out)
    }

    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| n == name)
    }

    fn value(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .rev()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    fn only(&self, known: &[&str]) -> anyhow::Result<()> {
        for (n, _) in &self.flags {
            if !known.contains(&n.as_str()) {
                bail!("unknown flag --{n}");
            }
        }
        Ok(())
    }
}

/// `__server <data-dir> [--etcd EP] [--disable-scheduler] [--disable-controller-manager]`.
fn server(args: &[String]) -> anyhow::Result<()> {
    const USAGE: &str = "usage: __server <data-dir> [--etcd EP] [--disable-scheduler] [--disable-controller-manager]";
    let args = Args::parse(args, &["etcd"])?;
    args.only(&["etcd", "disable-scheduler", "disable-controller-manager"])
        .context(USAGE)?;
    let data_dir = PathBuf::from(args.positional.first().context(USAGE)?);
    runtime()?.block_on(async move {
        let mut config = server::ServerConfig::with_data_dir(data_dir.clone());
        config.bind_address = std::net::IpAddr::from([127, 0, 0, 1]);
        config.https_listen_port = 0;
        config.write_kubeconfig = data_dir.join("kubeconfig.yaml");
        config.datastore_endpoint = args.value("etcd").map(str::to_string);
        config.disable_scheduler = args.has("disable-scheduler");
        config.disable_controller_manager = args.has("disable-controller-manager");
        let running = server::start(config).await?;
        println!("{READY_PREFIX} {}", running.kubeconfig.display());
        parent_gone().await;
        running.shutdown().await;
        anyhow::Ok(())
    })
}

async fn client_from(kubeconfig: &Path) -> anyhow::Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)
        .with_context(|| format!("reading kubeconfig {}", kubeconfig.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// `__virtual_nodes <kubeconfig> <count> [--lease-interval-ms N]`.
fn virtual_nodes(args: &[String]) -> anyhow::Result<()> {
    const USAGE: &str = "usage: __virtual_nodes <kubeconfig> <count> [--lease-interval-ms N]";
    let args = Args::parse(args, &["lease-interval-ms"])?;
    args.only(&["lease-interval-ms"]).context(USAGE)?;
    let [kubeconfig, count] = args.positional.as_slice() else {
        bail!(USAGE)
    };
    let count: usize = count.parse().context(USAGE)?;
    let lease_ms: u64 = args
        .value("lease-interval-ms")
        .unwrap_or("10000")
        .parse()
        .context(USAGE)?;
    let kubeconfig = PathBuf::from(kubeconfig);
    runtime()?.block_on(async move {
        let client = client_from(&kubeconfig).await?;
        let config = virtual_nodes::VirtualNodeConfig {
            count,
            prefix: "vn".to_string(),
            pod_cidr_base: VIRTUAL_POD_CIDR.parse().context("invariant: literal CIDR")?,
            lease_interval: Duration::from_millis(lease_ms),
            record_node_events: false,
            record_pod_events: false,
            ..Default::default()
        };
        let nodes = virtual_nodes::VirtualNodes::new(client, config)?;
        let handle = nodes.handle();
        let cancel = CancellationToken::new();
        let mut task = tokio::spawn(nodes.run(cancel.clone()));
        tokio::select! {
            r = handle.wait_registered() => r?,
            r = &mut task => bail!("virtual nodes stopped before registering: {:?}", r.context("virtual nodes task")?),
        }
        println!("{NODES_READY_PREFIX}: {count}");
        tokio::select! {
            _ = parent_gone() => {}
            r = &mut task => bail!("virtual nodes stopped: {:?}", r.context("virtual nodes task")?),
        }
        cancel.cancel();
        task.await.context("virtual nodes task")??;
        anyhow::Ok(())
    })
}

/// `__scheduler <kubeconfig>`: the default scheduler under leader election on the
/// `kube-system/kube-scheduler` Lease, as `rkube scheduler` runs it.
fn scheduler(args: &[String]) -> anyhow::Result<()> {
    const USAGE: &str = "usage: __scheduler <kubeconfig>";
    let args = Args::parse(args, &[])?;
    args.only(&[]).context(USAGE)?;
    let [kubeconfig] = args.positional.as_slice() else {
        bail!(USAGE)
    };
    let kubeconfig = PathBuf::from(kubeconfig);
    runtime()?.block_on(async move {
        let client = client_from(&kubeconfig).await?;
        let identity = leaderelection::default_identity();
        let elector = leaderelection::LeaderElector::new(
            client.clone(),
            leaderelection::LeaderElectionConfig::new("kube-system", "kube-scheduler", &identity),
        );
        let cancel = CancellationToken::new();
        let config = scheduler::SchedulerConfig::default();
        let task = tokio::spawn(elector.run(cancel.clone(), move |token| {
            let scheduler = scheduler::Scheduler::new(client.clone(), config.clone());
            async move { scheduler.run(token).await }
        }));
        println!("Scheduler started");
        parent_gone().await;
        cancel.cancel();
        let _ = task.await;
        anyhow::Ok(())
    })
}

/// `__agent <kubeconfig> <data-dir> <node-name> <node-ip> [--runtime BIN]`.
fn node_agent(args: &[String]) -> anyhow::Result<()> {
    const USAGE: &str =
        "usage: __agent <kubeconfig> <data-dir> <node-name> <node-ip> [--runtime BIN]";
    let args = Args::parse(args, &["runtime"])?;
    args.only(&["runtime"]).context(USAGE)?;
    let [kubeconfig, data_dir, node_name, node_ip] = args.positional.as_slice() else {
        bail!(USAGE)
    };
    let node_ip: std::net::IpAddr = node_ip.parse().context(USAGE)?;
    let mut config = agent::AgentConfig::new(node_name, node_ip, PathBuf::from(data_dir));
    config.runtime_binary = args.value("runtime").map(PathBuf::from);
    // The bench host's disk may be nearly full: neither DiskPressure nor image GC.
    config.eviction_hard = "memory.available<100Mi".parse()?;
    config.image_gc.high_threshold_percent = 100;
    let kubeconfig = PathBuf::from(kubeconfig);
    runtime()?.block_on(async move {
        let client = client_from(&kubeconfig).await?;
        let cancel = CancellationToken::new();
        let mut task = tokio::spawn(agent::run(client, config, cancel.clone()));
        println!("Agent started");
        tokio::select! {
            _ = parent_gone() => {}
            r = &mut task => bail!("agent stopped: {:?}", r.context("agent task")?),
        }
        cancel.cancel();
        task.await.context("agent task")??;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn args_split_positional_and_flags() {
        let a = Args::parse(
            &strings(&["/d", "--etcd", "http://x", "--disable-scheduler"]),
            &["etcd"],
        )
        .expect("parses");
        assert_eq!(a.positional, vec!["/d"]);
        assert_eq!(a.value("etcd"), Some("http://x"));
        assert!(a.has("disable-scheduler"));
        assert!(!a.has("disable-controller-manager"));
        assert!(a.only(&["etcd", "disable-scheduler"]).is_ok());
        assert!(a.only(&["etcd"]).is_err());
        assert!(Args::parse(&strings(&["--etcd"]), &["etcd"]).is_err());
    }

    #[test]
    fn unknown_modes_are_not_ours() {
        assert!(run(&strings(&["rkube-bench", "api"])).is_none());
        assert!(run(&strings(&["rkube-bench"])).is_none());
    }
}
