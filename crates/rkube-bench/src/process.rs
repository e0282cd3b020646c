//! The server under test as a child process (so its RSS and CPU time are its own), and
//! readings from `/proc`.
//!
//! By default the child is this very binary re-executed as `rkube-bench __server`, which
//! runs `server::start` exactly as `rkube server` does; that way `cargo run --release -p
//! rkube-bench` always measures the current code. `--server-bin target/release/rkube`
//! runs the real binary instead.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::client::Endpoint;

/// The line both `rkube server` and `rkube-bench __server` print once they serve.
const READY_PREFIX: &str = "Wrote kubeconfig";
/// How long a server gets to start (generous: it may run under a profiler).
const START_DEADLINE: Duration = Duration::from_secs(120);
/// Environment variable with a command prefix for the server (a profiler).
pub const WRAPPER_ENV: &str = "RKUBE_BENCH_SERVER_WRAPPER";
/// Linux reports CPU times in `/proc` in USER_HZ units, which is 100 on every
/// architecture we run on (it is part of the kernel ABI, not the configured HZ).
const USER_HZ: f64 = 100.0;

/// How to start a server.
#[derive(Clone, Debug)]
pub struct Launch {
    /// `None`: re-execute this binary as `__server`; otherwise an `rkube` binary.
    pub server_bin: Option<PathBuf>,
    /// etcd client URL; the embedded SQLite store when unset.
    pub datastore_endpoint: Option<String>,
}

/// A running server child; killed (by PID) on drop.
pub struct ServerProcess {
    child: Child,
    pub endpoint: Endpoint,
    _dir: tempfile::TempDir,
}

impl ServerProcess {
    pub fn start(launch: &Launch) -> anyhow::Result<ServerProcess> {
        let dir = tempfile::Builder::new().prefix("rkube-bench-").tempdir().context("creating data dir")?;
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        // A profiler prefix, e.g. `valgrind --tool=massif --massif-out-file=/tmp/m.out`.
        let wrapper: Vec<String> =
            std::env::var(WRAPPER_ENV).map(|w| w.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
        let command = |program: &Path| match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        let mut cmd = match &launch.server_bin {
            Some(bin) => {
                let mut c = command(bin);
                c.arg("server")
                    .arg("--bind-address=127.0.0.1")
                    .arg("--https-listen-port=0")
                    .arg("--disable-agent")
                    .arg(format!("--data-dir={}", dir.path().display()))
                    .arg(format!("--write-kubeconfig={}", kubeconfig.display()));
                if let Some(ep) = &launch.datastore_endpoint {
                    c.arg(format!("--datastore-endpoint={ep}"));
                }
                c
            }
            None => {
                let me = std::env::current_exe().context("locating this binary")?;
                let mut c = command(&me);
                c.arg("__server").arg(dir.path());
                if let Some(ep) = &launch.datastore_endpoint {
                    c.arg(ep);
                }
                c
            }
        };
        let log = std::fs::File::create(dir.path().join("server.log")).context("creating server log")?;
        // stdin stays a pipe: the `__server` child exits when it closes (we died).
        let mut child = cmd
            .env("RKUBE_LOG", std::env::var("RKUBE_LOG").unwrap_or_else(|_| "warn".into()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .context("spawning the server")?;
        let stdout = child.stdout.take().context("invariant: piped stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(false);
                        return;
                    }
                    Ok(_) if line.starts_with(READY_PREFIX) => {
                        let _ = tx.send(true);
                        // Keep draining so the child never blocks on a full pipe.
                        let _ = std::io::copy(&mut reader, &mut std::io::sink());
                        return;
                    }
                    Ok(_) => {}
                }
            }
        });
        let ready = rx.recv_timeout(START_DEADLINE).unwrap_or(false);
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap_or_default();
            bail!("server did not become ready; its log:\n{}", tail(&log, 40));
        }
        let endpoint = Endpoint::from_kubeconfig(&kubeconfig)?;
        Ok(ServerProcess { child, endpoint, _dir: dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident set size in MiB.
    pub fn rss_mib(&self) -> anyhow::Result<f64> {
        status_kib(self.pid(), "VmRSS").map(kib_to_mib)
    }

    /// `{"vm_hwm_mib", "rss_anon_mib", "rss_file_mib"}`: peak RSS, and RSS split into heap
    /// and stacks versus mapped files (mostly the binary's code).
    pub fn memory_detail(&self) -> anyhow::Result<serde_json::Value> {
        let pid = self.pid();
        Ok(serde_json::json!({
            "vm_hwm_mib": kib_to_mib(status_kib(pid, "VmHWM")?),
            "rss_anon_mib": kib_to_mib(status_kib(pid, "RssAnon")?),
            "rss_file_mib": kib_to_mib(status_kib(pid, "RssFile")?),
        }))
    }

    /// User + system CPU seconds used so far.
    pub fn cpu_seconds(&self) -> anyhow::Result<f64> {
        cpu_seconds(&format!("/proc/{}/stat", self.pid()))
    }

    /// Waits until RSS changes by less than 1% between samples (or `deadline`), returns it.
    pub async fn settled_rss_mib(&self, deadline: Duration) -> anyhow::Result<f64> {
        let until = Instant::now() + deadline;
        let mut last = self.rss_mib()?;
        loop {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let now = self.rss_mib()?;
            if (now - last).abs() <= last * 0.01 || Instant::now() >= until {
                return Ok(now);
            }
            last = now;
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn kib_to_mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// A `kB` field of `/proc/<pid>/status`.
fn status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc status")?;
    parse_status_kib(&text, field).with_context(|| format!("no {field} in /proc/{pid}/status"))
}

fn parse_status_kib(text: &str, field: &str) -> Option<u64> {
    text.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

/// CPU seconds the whole machine has spent busy (not idle, not waiting for IO).
pub fn machine_busy_seconds() -> anyhow::Result<f64> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    parse_machine_busy(&text).context("parsing /proc/stat")
}

/// From the aggregate `cpu` line: everything but idle (4th) and iowait (5th) counts as busy.
/// Guest time is already included in user time, so only the first 8 fields are summed.
fn parse_machine_busy(text: &str) -> Option<f64> {
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let fields: Vec<u64> = line.split_whitespace().skip(1).take(8).map(|f| f.parse().ok()).collect::<Option<_>>()?;
    let busy: u64 = fields.iter().enumerate().filter(|(i, _)| *i != 3 && *i != 4).map(|(_, v)| v).sum();
    Some(busy as f64 / USER_HZ)
}

/// Waits until the machine (other processes: builds, tests) has been nearly idle for a
/// second, so the measurement is not shared with them; gives up after `deadline`.
/// Returns the busy fraction of the last second.
pub async fn wait_quiet(deadline: Duration) -> anyhow::Result<f64> {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let until = Instant::now() + deadline;
    loop {
        let b0 = machine_busy_seconds()?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let busy = (machine_busy_seconds()? - b0) / cores;
        if busy < 0.10 || Instant::now() >= until {
            return Ok(busy);
        }
    }
}

/// User + system CPU seconds of this process.
pub fn own_cpu_seconds() -> anyhow::Result<f64> {
    cpu_seconds("/proc/self/stat")
}

fn cpu_seconds(path: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    parse_stat_cpu(&text).with_context(|| format!("parsing {path}"))
}

/// utime + stime (fields 14 and 15) of a `/proc/<pid>/stat` line, in seconds. The
/// command name (field 2) may contain spaces, so fields are counted after its `)`.
fn parse_stat_cpu(text: &str) -> Option<f64> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state), so field n is at index n - 3.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / USER_HZ)
}

/// Runs the server in this process (the `__server` mode): `args` are the data dir and
/// optionally an etcd endpoint.
pub fn run_server_child(args: &[String]) -> anyhow::Result<()> {
    let data_dir = PathBuf::from(args.first().context("usage: __server <data-dir> [etcd-endpoint]")?);
    let filter = std::env::var("RKUBE_LOG").unwrap_or_else(|_| "warn".into());
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_ansi(false)
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    runtime.block_on(async move {
        let mut config = server::ServerConfig::with_data_dir(data_dir.clone());
        config.bind_address = std::net::IpAddr::from([127, 0, 0, 1]);
        config.https_listen_port = 0;
        config.write_kubeconfig = kubeconfig_path(&data_dir);
        config.datastore_endpoint = args.get(1).cloned();
        let running = server::start(config).await?;
        println!("{READY_PREFIX} {}", running.kubeconfig.display());
        // Exit when the parent goes away (our stdin closes).
        let mut stdin = tokio::io::stdin();
        let _ = tokio::io::copy(&mut stdin, &mut tokio::io::sink()).await;
        running.shutdown().await;
        anyhow::Ok(())
    })
}

fn kubeconfig_path(data_dir: &Path) -> PathBuf {
    data_dir.join("kubeconfig.yaml")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_fields_parse() {
        let text = "Name:\trkube\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\n";
        assert_eq!(parse_status_kib(text, "VmRSS"), Some(40960));
        assert_eq!(parse_status_kib(text, "VmHWM"), Some(51200));
        assert_eq!(parse_status_kib(text, "VmSwap"), None);
    }

    #[test]
    fn stat_cpu_skips_command_with_spaces() {
        let text = "123 (a b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 4 0 100 0 0";
        assert_eq!(parse_stat_cpu(text), Some(3.0));
    }

    #[test]
    fn machine_busy_excludes_idle_and_iowait() {
        let text = "cpu  100 5 50 1000 30 1 2 3 7 0\ncpu0 50 2 25 500 15 0 1 1 0 0\n";
        assert_eq!(parse_machine_busy(text), Some(1.61));
    }

    #[test]
    fn own_cpu_reads() {
        assert!(own_cpu_seconds().expect("reads /proc/self/stat") >= 0.0);
    }
}
