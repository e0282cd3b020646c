//! Benchmarks of rkube, printed as JSON lines:
//! `{"bench":"<suite>","metric":"…","value":…,"unit":"…",…}`. See BENCHMARKS.md.
//!
//! `rkube-bench api` runs the whole API suite; `rkube-bench api list_10k_pods
//! rss_idle` runs only the named metrics. Suites: `api` ([`api`]), `scheduler`
//! ([`scheduling`]), `controllers` ([`workloads`]) and `pods` ([`pods`], real
//! containers through the node agent; its metrics share one cluster). The processes under test
//! (server, virtual nodes, scheduler) run as children (see [`process`], [`children`]).
//! Progress goes to stderr, results to stdout.

mod api;
mod children;
mod client;
mod cluster;
mod load;
mod meter;
mod pods;
mod process;
mod scheduling;
mod stats;
mod workloads;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;
use serde_json::Value;

#[derive(Parser, Debug)]
#[command(
    name = "rkube-bench",
    about = "rkube benchmarks (JSON lines on stdout)"
)]
struct Cli {
    /// Suite to run: `api`, `scheduler`, `controllers` or `pods`.
    suite: String,
    /// Run only these metrics of the suite (default: all).
    metrics: Vec<String>,
    /// Run this `rkube` binary as the server instead of re-executing this one.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// HTTP version of the load clients (`api`): `h1` (one connection per client) or `h2`.
    #[arg(long, default_value = "h1")]
    proto: client::Proto,
    /// Concurrent clients of the throughput and latency runs (`api`).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// With `--proto h2`: connections the clients are spread over (`api`).
    #[arg(long, default_value_t = 1)]
    h2_connections: usize,
    /// Measured seconds of the throughput and latency runs (`api`).
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Virtual nodes instead of each metric's own count (`scheduler`, `controllers`;
    /// for quick validation runs).
    #[arg(long)]
    nodes: Option<usize>,
    /// Pods (replicas) instead of each metric's own count (`scheduler`, `controllers`).
    #[arg(long)]
    pods: Option<usize>,
    /// Before each metric, wait up to this many seconds for the machine to be idle
    /// (other builds and tests share the cores); 0 to start at once.
    #[arg(long, default_value_t = 60)]
    quiet_wait: u64,
    /// OCI runtime of the node agent's containerd (`pods`): `runc` or `crun`.
    #[arg(long)]
    runtime: Option<String>,
}

/// One suite's metrics and how to run one of them.
enum Suite {
    Api(api::Options),
    Scheduler(scheduling::Options),
    Controllers(workloads::Options),
    Pods(pods::Options),
}

impl Suite {
    fn from_cli(cli: &Cli) -> anyhow::Result<Suite> {
        let launch = process::Launch {
            server_bin: cli.server_bin.clone(),
            ..Default::default()
        };
        Ok(match cli.suite.as_str() {
            "api" => Suite::Api(api::Options {
                launch,
                proto: cli.proto,
                clients: cli.clients.max(1),
                h2_connections: cli.h2_connections.max(1),
                duration: Duration::from_secs(cli.seconds.max(1)),
            }),
            "scheduler" => Suite::Scheduler(scheduling::Options {
                launch,
                nodes: cli.nodes,
                pods: cli.pods,
            }),
            "controllers" => Suite::Controllers(workloads::Options {
                launch,
                nodes: cli.nodes,
                pods: cli.pods,
            }),
            "pods" => Suite::Pods(pods::Options {
                launch,
                runtime: cli.runtime.clone(),
                pods: cli.pods,
            }),
            other => bail!("unknown suite {other:?} (known: api, scheduler, controllers, pods)"),
        })
    }

    fn metrics(&self) -> &'static [&'static str] {
        match self {
            Suite::Api(_) => api::METRICS,
            Suite::Scheduler(_) => scheduling::METRICS,
            Suite::Controllers(_) => workloads::METRICS,
            Suite::Pods(_) => pods::METRICS,
        }
    }

    async fn run(&self, metric: &str) -> anyhow::Result<Vec<Value>> {
        match self {
            Suite::Api(o) => api::run(metric, o).await,
            Suite::Scheduler(o) => scheduling::run(metric, o).await,
            Suite::Controllers(o) => workloads::run(metric, o).await,
            Suite::Pods(o) => pods::run_all(&[metric.to_string()], o).await,
        }
    }
}

/// mimalloc instead of glibc's malloc: the API server's request path allocates heavily
/// (JSON values, typed objects), and glibc's malloc took a quarter of its CPU. Built
/// without transparent huge pages (feature `no_thp`), which made idle RSS 2.6x.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if let Some(result) = children::run(&args) {
        return result;
    }
    let cli = Cli::parse();
    let suite = Suite::from_cli(&cli)?;
    let known = suite.metrics();
    let metrics: Vec<String> = if cli.metrics.is_empty() {
        known.iter().map(|m| m.to_string()).collect()
    } else {
        cli.metrics.clone()
    };
    for m in &metrics {
        if !known.contains(&m.as_str()) {
            bail!(
                "unknown metric {m:?} of suite {}; known: {}",
                cli.suite,
                known.join(", ")
            );
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    if let Suite::Pods(o) = &suite {
        // One cluster for all of them: a node with real containers is slow to set up.
        if cli.quiet_wait > 0 {
            runtime.block_on(process::wait_quiet(Duration::from_secs(cli.quiet_wait)))?;
        }
        let lines = runtime.block_on(pods::run_all(&metrics, o))?;
        let mut out = std::io::stdout().lock();
        for l in lines {
            writeln!(out, "{l}")?;
        }
        return Ok(());
    }
    let mut failed = Vec::new();
    for metric in &metrics {
        if cli.quiet_wait > 0 {
            let busy =
                runtime.block_on(process::wait_quiet(Duration::from_secs(cli.quiet_wait)))?;
            if busy >= 0.10 {
                eprintln!(
                    "{metric}: the machine is still {:.0}% busy with other work; measuring anyway",
                    busy * 100.0
                );
            }
        }
        match runtime.block_on(suite.run(metric)) {
            Ok(lines) => {
                let mut out = std::io::stdout().lock();
                for l in lines {
                    writeln!(out, "{l}")?;
                }
                out.flush()?;
            }
            Err(e) => {
                eprintln!("{metric}: {e:#}");
                failed.push(metric.clone());
            }
        }
    }
    if !failed.is_empty() {
        bail!("metrics failed: {}", failed.join(", "));
    }
    Ok(())
}
