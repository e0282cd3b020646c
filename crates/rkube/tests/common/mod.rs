//! End-to-end harness: starts the real `rkube` binary on a free loopback port in a temp
//! dir and drives it with stock kubectl. Processes are stopped by PID on drop.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const KUBECTL: &str = "/usr/bin/kubectl";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// A running `rkube server`.
pub struct Rkube {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub kubeconfig: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
}

impl Rkube {
    pub fn start() -> Rkube {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Rkube {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let mut r = Rkube { dir, port, kubeconfig, child: None, extra_args: extra.iter().map(|s| s.to_string()).collect() };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rkube"));
        cmd.arg("server")
            .arg("--data-dir")
            .arg(self.dir.path().join("data"))
            .arg("--bind-address")
            .arg("127.0.0.1")
            .arg("--https-listen-port")
            .arg(self.port.to_string())
            .arg("--write-kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--disable-agent")
            .args(&self.extra_args)
            .env("RKUBE_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn rkube");
        let stderr = child.stderr.take().expect("stderr");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let log_path = self.dir.path().join("rkube.log");
        let tx2 = tx.clone();
        let log2 = log_path.clone();
        std::thread::spawn(move || pump(stderr, tx, &log_path));
        std::thread::spawn(move || pump(stdout, tx2, &log2));
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) if line.contains("rkube server ready") => break,
                Ok(_) => continue,
                Err(_) => {
                    let _ = child.kill();
                    panic!("rkube did not become ready; log:\n{}", self.log());
                }
            }
        }
        self.child = Some(child);
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("rkube.log")).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    /// Stops the server with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe_kill(child.id(), libc::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGKILL, as a crash.
    pub fn crash(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }

    pub fn restart_after_crash(&mut self) {
        self.crash();
        self.spawn();
    }

    pub fn kubectl_with(&self, bin: &str, args: &[&str]) -> Output {
        Command::new(bin)
            .args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .env("HOME", self.dir.path())
            .output()
            .expect("run kubectl")
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        self.kubectl_with(KUBECTL, args)
    }

    /// Runs kubectl and returns stdout; panics with stderr on failure.
    pub fn k(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        if !out.status.success() {
            panic!(
                "kubectl {} failed ({}):\nstdout: {}\nstderr: {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn k_err(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(!out.status.success(), "kubectl {} unexpectedly succeeded: {}", args.join(" "), String::from_utf8_lossy(&out.stdout));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn write(&self, rel: &str, content: &str) -> PathBuf {
        let p = self.path(rel);
        std::fs::write(&p, content).expect("write file");
        p
    }
}

impl Drop for Rkube {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pump(r: impl std::io::Read, tx: mpsc::Sender<String>, log: &Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().create(true).append(true).open(log).ok();
    for line in BufReader::new(r).lines().map_while(Result::ok) {
        if let Some(f) = f.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        let _ = tx.send(line);
    }
}

#[allow(unsafe_code)]
fn unsafe_kill(pid: u32, sig: i32) {
    // SAFETY: sending a signal to a child process we own.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// Polls `f` until it returns Some or the deadline passes.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Path of a fixture under `tests/fixtures`.
pub fn fixture(name: &str) -> String {
    format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}
