//! Benchmarks of rkube, printed as JSON lines:
//! `{"bench":"api","metric":"…","value":…,"unit":"…",…}`. See BENCHMARKS.md.
//!
//! `rkube-bench api` runs the whole API suite; `rkube-bench api list_10k_pods
//! rss_idle` runs only the named metrics. The server under test runs as a child
//! process (see [`process`]).

mod api;
mod client;
mod process;
mod stats;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Parser;

#[derive(Parser, Debug)]
#[command(name = "rkube-bench", about = "rkube benchmarks (JSON lines on stdout)")]
struct Cli {
    /// Suite to run (`api`).
    suite: String,
    /// Run only these metrics of the suite (default: all).
    metrics: Vec<String>,
    /// Run this `rkube` binary as the server instead of re-executing this one.
    #[arg(long)]
    server_bin: Option<PathBuf>,
    /// HTTP version of the load clients: `h1` (one connection per client) or `h2`.
    #[arg(long, default_value = "h1")]
    proto: client::Proto,
    /// Concurrent clients of the throughput and latency runs.
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// With `--proto h2`: connections the clients are spread over.
    #[arg(long, default_value_t = 1)]
    h2_connections: usize,
    /// Measured seconds of the throughput and latency runs.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// Before each metric, wait up to this many seconds for the machine to be idle
    /// (other builds and tests share the cores); 0 to start at once.
    #[arg(long, default_value_t = 60)]
    quiet_wait: u64,
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("__server") {
        return process::run_server_child(&args[2..]);
    }
    let cli = Cli::parse();
    if cli.suite != "api" {
        bail!("unknown suite {:?} (known: api)", cli.suite);
    }
    let metrics: Vec<String> =
        if cli.metrics.is_empty() { api::METRICS.iter().map(|m| m.to_string()).collect() } else { cli.metrics.clone() };
    for m in &metrics {
        if !api::METRICS.contains(&m.as_str()) {
            bail!("unknown metric {m:?}; known: {}", api::METRICS.join(", "));
        }
    }
    let opts = api::Options {
        launch: process::Launch { server_bin: cli.server_bin.clone(), datastore_endpoint: None },
        proto: cli.proto,
        clients: cli.clients.max(1),
        h2_connections: cli.h2_connections.max(1),
        duration: Duration::from_secs(cli.seconds.max(1)),
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let mut failed = Vec::new();
    for metric in &metrics {
        if cli.quiet_wait > 0 {
            let busy = runtime.block_on(process::wait_quiet(Duration::from_secs(cli.quiet_wait)))?;
            if busy >= 0.10 {
                eprintln!("{metric}: the machine is still {:.0}% busy with other work; measuring anyway", busy * 100.0);
            }
        }
        match runtime.block_on(api::run(metric, &opts)) {
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
