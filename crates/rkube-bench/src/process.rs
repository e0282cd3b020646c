//! The processes of a run, each a child of the benchmark (so RSS and CPU time are
//! their own), and readings from `/proc`.
//!
//! By default every child is this very binary re-executed in a hidden mode (see
//! [`crate::children`]): `__server` runs `server::start` exactly as `rkube server` does,
//! `__virtual_nodes` a fleet of virtual nodes as `rkube virtual-nodes` does, and
//! `__scheduler` the scheduler as `rkube scheduler` does; that way `cargo run --release
//! -p rkube-bench` always measures the current code. `--server-bin target/release/rkube`
//! runs the real binary as the server instead. Children exit when their stdin (a pipe
//! from us) closes, and are killed by PID when their handle is dropped.

use std::io::{BufRead, BufReader};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::client::Endpoint;

/// The line both `rkube server` and `rkube-bench __server` print once they serve.
pub const READY_PREFIX: &str = "Wrote kubeconfig";
/// The line `__virtual_nodes` prints once every node is registered.
pub const NODES_READY_PREFIX: &str = "Virtual nodes ready";
/// How long a server gets to start (generous: it may run under a profiler).
const START_DEADLINE: Duration = Duration::from_secs(120);
/// Environment variable with a command prefix for the server (a profiler).
pub const WRAPPER_ENV: &str = "RKUBE_BENCH_SERVER_WRAPPER";
/// Linux reports CPU times in `/proc` in USER_HZ units, which is 100 on every
/// architecture we run on (it is part of the kernel ABI, not the configured HZ).
const USER_HZ: f64 = 100.0;

/// How to start a server.
#[derive(Clone, Debug, Default)]
pub struct Launch {
    /// `None`: re-execute this binary as `__server`; otherwise an `rkube` binary.
    pub server_bin: Option<PathBuf>,
    /// etcd client URL; the embedded SQLite store when unset.
    pub datastore_endpoint: Option<String>,
    /// Run the server without its in-process scheduler.
    pub disable_scheduler: bool,
    /// Run the server without its in-process controller manager.
    pub disable_controller_manager: bool,
}

/// A child process of the benchmark; killed (by PID) on drop.
pub struct ChildProcess {
    child: Child,
    name: &'static str,
    log: PathBuf,
}

impl ChildProcess {
    /// Spawns `cmd` with its stderr in `log`; with `ready`, waits up to `deadline` for
    /// a stdout line starting with it and returns that line.
    fn spawn(
        name: &'static str,
        mut cmd: Command,
        log: &Path,
        ready: Option<&'static str>,
        deadline: Duration,
    ) -> anyhow::Result<(ChildProcess, String)> {
        let log_file =
            std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
        // stdin stays a pipe: our children exit when it closes (we died).
        let mut child = cmd
            .env(
                "RKUBE_LOG",
                std::env::var("RKUBE_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("spawning the {name}"))?;
        let stdout = child.stdout.take().context("invariant: piped stdout")?;
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let mut sent = ready.is_none();
            loop {
                line.clear();
                match reader.read_line(&mut line) {
                    Ok(0) | Err(_) => {
                        let _ = tx.send(None);
                        return;
                    }
                    Ok(_) if !sent && ready.is_some_and(|r| line.starts_with(r)) => {
                        let _ = tx.send(Some(line.trim_end().to_string()));
                        sent = true;
                    }
                    // Keep draining so the child never blocks on a full pipe.
                    Ok(_) => {}
                }
            }
        });
        let process = ChildProcess {
            child,
            name,
            log: log.to_path_buf(),
        };
        if ready.is_none() {
            return Ok((process, String::new()));
        }
        match rx.recv_timeout(deadline) {
            Ok(Some(line)) => Ok((process, line)),
            _ => bail!(
                "the {name} did not become ready; its log:\n{}",
                process.log_tail(40)
            ),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The last `lines` of the child's log (its stderr).
    pub fn log_tail(&self, lines: usize) -> String {
        tail(
            &std::fs::read_to_string(&self.log).unwrap_or_default(),
            lines,
        )
    }

    /// Fails, with the end of its log, if the child has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait().context("checking a child")? {
            bail!(
                "the {} exited ({status}); its log:\n{}",
                self.name,
                self.log_tail(40)
            );
        }
        Ok(())
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

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running server child with its data dir (also home of the other children's logs).
pub struct ServerProcess {
    process: ChildProcess,
    pub endpoint: Endpoint,
    pub kubeconfig: PathBuf,
    // Dropped after `process`: the server is gone before its data dir is removed.
    dir: tempfile::TempDir,
}

impl Deref for ServerProcess {
    type Target = ChildProcess;
    fn deref(&self) -> &ChildProcess {
        &self.process
    }
}

impl DerefMut for ServerProcess {
    fn deref_mut(&mut self) -> &mut ChildProcess {
        &mut self.process
    }
}

impl ServerProcess {
    pub fn start(launch: &Launch) -> anyhow::Result<ServerProcess> {
        let dir = tempfile::Builder::new()
            .prefix("rkube-bench-")
            .tempdir()
            .context("creating data dir")?;
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        // A profiler prefix, e.g. `valgrind --tool=massif --massif-out-file=/tmp/m.out`.
        let wrapper: Vec<String> = std::env::var(WRAPPER_ENV)
            .map(|w| w.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default();
        let command = |program: &Path| match wrapper.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(program);
                c
            }
            None => Command::new(program),
        };
        let cmd = match &launch.server_bin {
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
                if launch.disable_scheduler {
                    c.arg("--disable-scheduler");
                }
                if launch.disable_controller_manager {
                    c.arg("--disable-controller-manager");
                }
                c
            }
            None => {
                let me = std::env::current_exe().context("locating this binary")?;
                let mut c = command(&me);
                c.arg("__server").arg(dir.path());
                if let Some(ep) = &launch.datastore_endpoint {
                    c.arg("--etcd").arg(ep);
                }
                if launch.disable_scheduler {
                    c.arg("--disable-scheduler");
                }
                if launch.disable_controller_manager {
                    c.arg("--disable-controller-manager");
                }
                c
            }
        };
        let log = dir.path().join("server.log");
        let (process, _) =
            ChildProcess::spawn("server", cmd, &log, Some(READY_PREFIX), START_DEADLINE)?;
        let endpoint = Endpoint::from_kubeconfig(&kubeconfig)?;
        Ok(ServerProcess {
            process,
            endpoint,
            kubeconfig,
            dir,
        })
    }

    /// Starts `count` virtual nodes against this server in their own process and waits
    /// until every one is registered (Node, status and Lease written).
    pub fn start_virtual_nodes(&self, nodes: &VirtualNodesArgs) -> anyhow::Result<ChildProcess> {
        let me = std::env::current_exe().context("locating this binary")?;
        let mut cmd = Command::new(me);
        cmd.arg("__virtual_nodes")
            .arg(&self.kubeconfig)
            .arg(nodes.count.to_string())
            .arg("--lease-interval-ms")
            .arg(nodes.lease_interval.as_millis().to_string());
        // Registration is a few writes per node; leave room for a busy machine.
        let deadline = START_DEADLINE + Duration::from_millis(50) * nodes.count as u32;
        let log = self.dir.path().join("virtual-nodes.log");
        let (process, _) = ChildProcess::spawn(
            "virtual nodes",
            cmd,
            &log,
            Some(NODES_READY_PREFIX),
            deadline,
        )?;
        Ok(process)
    }

    /// Starts a node agent (real containerd) against this server in its own process;
    /// returns at once. `args` follow `__agent <kubeconfig> <data-dir>` (see
    /// `crate::children`).
    pub fn start_agent(&self, args: &[String]) -> anyhow::Result<ChildProcess> {
        let me = std::env::current_exe().context("locating this binary")?;
        let mut cmd = Command::new(me);
        cmd.arg("__agent")
            .arg(&self.kubeconfig)
            .arg(self.dir.path().join("node"))
            .args(args);
        let log = self.dir.path().join("agent.log");
        let (process, _) = ChildProcess::spawn("agent", cmd, &log, None, START_DEADLINE)?;
        Ok(process)
    }

    /// The agent's data dir under this server's (see [`ServerProcess::start_agent`]).
    pub fn agent_data_dir(&self) -> PathBuf {
        self.dir.path().join("node")
    }

    /// Starts the scheduler against this server in its own process; returns at once.
    pub fn start_scheduler(&self) -> anyhow::Result<ChildProcess> {
        let me = std::env::current_exe().context("locating this binary")?;
        let mut cmd = Command::new(me);
        cmd.arg("__scheduler").arg(&self.kubeconfig);
        let log = self.dir.path().join("scheduler.log");
        let (process, _) = ChildProcess::spawn("scheduler", cmd, &log, None, START_DEADLINE)?;
        Ok(process)
    }
}

/// What the `__virtual_nodes` child is asked to run.
#[derive(Clone, Debug)]
pub struct VirtualNodesArgs {
    pub count: usize,
    /// How often each node renews its Lease.
    pub lease_interval: Duration,
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
    let text =
        std::fs::read_to_string(format!("/proc/{pid}/status")).context("reading /proc status")?;
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
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|f| f.parse().ok())
        .collect::<Option<_>>()?;
    let busy: u64 = fields
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum();
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

/// User + system CPU seconds of process `pid`.
pub fn pid_cpu_seconds(pid: u32) -> anyhow::Result<f64> {
    cpu_seconds(&format!("/proc/{pid}/stat"))
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
