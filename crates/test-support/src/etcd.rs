//! A throwaway single-member etcd for tests: `/usr/bin/etcd` on free loopback ports
//! with its data in a temp dir, killed when the handle drops.

use std::fs::File;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::free_port;

/// Where the etcd binary is expected (Debian's `etcd-server`); `RKUBE_ETCD_BIN`
/// overrides it.
pub const DEFAULT_ETCD_BIN: &str = "/usr/bin/etcd";

/// Set to `1` to let etcd tests skip when the binary is missing. Without it a missing
/// etcd is a test failure, so CI cannot silently skip the etcd suite.
pub const SKIP_ENV: &str = "RKUBE_SKIP_ETCD";

/// How long etcd gets to become healthy.
const START_DEADLINE: Duration = Duration::from_secs(20);
/// Port collisions with other tests are retried this many times.
const START_ATTEMPTS: usize = 3;

/// A running etcd; killed (by PID) and its data deleted on drop.
pub struct EtcdServer {
    /// Client URL, e.g. `http://127.0.0.1:41234`.
    pub endpoint: String,
    child: Child,
    dir: tempfile::TempDir,
}

/// The etcd binary to run.
pub fn etcd_binary() -> PathBuf {
    std::env::var_os("RKUBE_ETCD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ETCD_BIN))
}

impl EtcdServer {
    /// Starts etcd and waits until `/health` reports healthy.
    pub fn start() -> anyhow::Result<Self> {
        let binary = etcd_binary();
        if !binary.exists() {
            bail!(
                "etcd binary not found at {} (install Debian's etcd-server, point \
                 RKUBE_ETCD_BIN at an etcd, or set {SKIP_ENV}=1 to skip etcd tests)",
                binary.display()
            );
        }
        let mut last_error = None;
        for _ in 0..START_ATTEMPTS {
            match Self::start_once(&binary) {
                Ok(server) => return Ok(server),
                Err(e) => last_error = Some(e),
            }
        }
        Err(last_error.unwrap_or_else(|| anyhow::anyhow!("etcd did not start")))
    }

    /// Like [`EtcdServer::start`], but `Ok(None)` when etcd is missing and
    /// `RKUBE_SKIP_ETCD=1` is set (the caller then skips its test).
    pub fn start_or_skip() -> anyhow::Result<Option<Self>> {
        if !etcd_binary().exists() && std::env::var(SKIP_ENV).is_ok_and(|v| v == "1") {
            eprintln!("etcd not installed and {SKIP_ENV}=1: skipping etcd test");
            return Ok(None);
        }
        Self::start().map(Some)
    }

    fn start_once(binary: &Path) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("rkube-etcd-")
            .tempdir()
            .context("creating etcd temp dir")?;
        let client_url = format!("http://127.0.0.1:{}", free_port());
        let peer_url = format!("http://127.0.0.1:{}", free_port());
        let log_path = dir.path().join("etcd.log");
        let log = File::create(&log_path).context("creating etcd log")?;
        let child = Command::new(binary)
            .arg("--name=default")
            .arg(format!("--data-dir={}", dir.path().join("data").display()))
            .arg(format!("--listen-client-urls={client_url}"))
            .arg(format!("--advertise-client-urls={client_url}"))
            .arg(format!("--listen-peer-urls={peer_url}"))
            .arg(format!("--initial-advertise-peer-urls={peer_url}"))
            .arg(format!("--initial-cluster=default={peer_url}"))
            .arg("--initial-cluster-state=new")
            .arg("--initial-cluster-token=rkube-test")
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("etcd log handle")?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("spawning {}", binary.display()))?;
        let mut server = EtcdServer {
            endpoint: client_url,
            child,
            dir,
        };
        server.wait_healthy()?;
        Ok(server)
    }

    /// Polls `/health` until it answers healthy, the process dies, or the deadline.
    fn wait_healthy(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + START_DEADLINE;
        let addr = self.endpoint.trim_start_matches("http://").to_string();
        loop {
            if let Some(status) = self.child.try_wait().context("checking etcd process")? {
                bail!(
                    "etcd exited with {status} during startup:\n{}",
                    self.log_tail()
                );
            }
            if health_ok(&addr) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "etcd at {} not healthy after {:?}:\n{}",
                    self.endpoint,
                    START_DEADLINE,
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The last lines of etcd's log, for error messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.dir.path().join("etcd.log")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// The process id of etcd.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// One `GET /health` over a fresh connection; true on `"health":"true"`.
fn health_ok(addr: &str) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let timeout = Some(Duration::from_secs(1));
    if stream.set_read_timeout(timeout).is_err() || stream.set_write_timeout(timeout).is_err() {
        return false;
    }
    let request = format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    if stream.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response.starts_with("HTTP/1.")
        && response.contains(" 200 ")
        && response.contains("\"health\":\"true\"")
}

impl Drop for EtcdServer {
    fn drop(&mut self) {
        // SIGKILL by PID: the data dir is thrown away, so no graceful stop is needed.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_dies_on_drop() {
        let server = match EtcdServer::start_or_skip() {
            Ok(Some(server)) => server,
            Ok(None) => return,
            Err(e) => panic!("{e:#}"),
        };
        let addr = server.endpoint.trim_start_matches("http://").to_string();
        assert!(health_ok(&addr));
        let pid = server.pid();
        drop(server);
        // Drop kills and reaps the child, so its /proc entry is gone.
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "etcd {pid} still running after drop"
        );
        assert!(!health_ok(&addr));
    }
}
