//! End-to-end harness: starts the real `rkube` binary on a free loopback port in a temp
//! dir and drives it with stock kubectl. Processes are stopped by PID on drop.

#![allow(dead_code)]

pub mod node;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const KUBECTL: &str = "/usr/bin/kubectl";

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Kubelet flags of every test agent, before the test's own (later ones win): the
/// machine's disk is shared and may be nearly full, so its free space must neither set
/// DiskPressure (a NoSchedule taint) nor remove a test's images. Tests of those features
/// pass their own thresholds.
pub const AGENT_KUBELET_ARGS: &[&str] = &[
    "--kubelet-arg=eviction-hard=memory.available<100Mi,nodefs.available<1%,imagefs.available<1%",
    "--kubelet-arg=image-gc-high-threshold=100",
];

/// A running `rkube server`.
pub struct Rkube {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub kubeconfig: PathBuf,
    child: Option<Child>,
    extra_args: Vec<String>,
    /// Run the in-process node agent (every other test passes `--disable-agent`).
    agent: bool,
}

impl Rkube {
    pub fn start() -> Rkube {
        Self::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Rkube {
        Self::start_inner(extra, false)
    }

    /// A server with its node agent (real containerd); `extra` should pass `--node-ip`.
    pub fn start_with_agent(extra: &[&str]) -> Rkube {
        Self::start_inner(extra, true)
    }

    fn start_inner(extra: &[&str], agent: bool) -> Rkube {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let kubeconfig = dir.path().join("kubeconfig.yaml");
        let mut r = Rkube {
            dir,
            port,
            kubeconfig,
            child: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            agent,
        };
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
            .args((!self.agent).then_some("--disable-agent"))
            .args(if self.agent { AGENT_KUBELET_ARGS } else { &[] })
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
        if let Some(child) = self.child.take() {
            terminate(child);
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
        self.kubectl_command(bin, args)
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
        assert!(
            !out.status.success(),
            "kubectl {} unexpectedly succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Runs kubectl with extra environment variables (e.g. `KUBE_EDITOR`).
    pub fn kubectl_env(&self, args: &[&str], envs: &[(&str, &str)]) -> Output {
        let mut cmd = self.kubectl_command(KUBECTL, args);
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd.output().expect("run kubectl")
    }

    /// A kubectl command with this server's kubeconfig, not yet started.
    pub fn kubectl_command(&self, bin: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin);
        cmd.args(args)
            .env("KUBECONFIG", &self.kubeconfig)
            .env("KUBECACHEDIR", self.dir.path().join("kube-cache"))
            .env("HOME", self.dir.path());
        cmd
    }

    /// Starts a long-running kubectl (`get -w`, `wait`) whose stdout lines arrive on a
    /// channel; it is killed on drop.
    pub fn spawn_kubectl(&self, args: &[&str]) -> Spawned {
        let mut child = self
            .kubectl_command(KUBECTL, args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        let (tx, lines) = mpsc::channel();
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = child.stderr.take().expect("stderr");
        let (etx, stderr_lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if etx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned {
            child,
            lines,
            stderr_lines,
        }
    }

    /// `https://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Writes the kubeconfig's CA, client certificate and key to PEM files (once) and
    /// returns their paths.
    pub fn client_cert_files(&self) -> (PathBuf, PathBuf, PathBuf) {
        let files = [
            ("certificate-authority-data", "ca.pem"),
            ("client-certificate-data", "client.pem"),
            ("client-key-data", "client-key.pem"),
        ];
        let kubeconfig = std::fs::read_to_string(&self.kubeconfig).expect("read kubeconfig");
        for (field, file) in files {
            let path = self.path(file);
            if path.exists() {
                continue;
            }
            let data = kubeconfig
                .lines()
                .find_map(|l| l.trim().strip_prefix(&format!("{field}:")))
                .unwrap_or_else(|| panic!("{field} missing in kubeconfig"))
                .trim()
                .to_string();
            let mut child = Command::new("base64")
                .arg("-d")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("run base64");
            {
                use std::io::Write;
                let mut stdin = child.stdin.take().expect("stdin");
                stdin
                    .write_all(data.as_bytes())
                    .expect("write base64 input");
            }
            let out = child.wait_with_output().expect("base64 output");
            assert!(out.status.success(), "base64 -d failed for {field}");
            std::fs::write(&path, out.stdout).expect("write pem");
        }
        (
            self.path("ca.pem"),
            self.path("client.pem"),
            self.path("client-key.pem"),
        )
    }

    /// curl against this server as the kubeconfig's admin user; returns (HTTP status, body).
    /// `args` are extra curl arguments (method, headers, data) followed by the path.
    pub fn curl(&self, args: &[&str], path: &str) -> (u16, String) {
        let (ca, cert, key) = self.client_cert_files();
        let creds = [
            "--cacert",
            path_str(&ca),
            "--cert",
            path_str(&cert),
            "--key",
            path_str(&key),
        ];
        let mut all: Vec<&str> = creds.to_vec();
        all.extend_from_slice(args);
        self.curl_raw(&all, path)
    }

    /// curl without any credentials (`-k`, no client certificate).
    pub fn curl_anonymous(&self, args: &[&str], path: &str) -> (u16, String) {
        let mut all = vec!["-k"];
        all.extend_from_slice(args);
        self.curl_raw(&all, path)
    }

    fn curl_raw(&self, args: &[&str], path: &str) -> (u16, String) {
        let url = format!("{}{path}", self.url());
        let out = Command::new("curl")
            .args(["-sS", "--max-time", "30", "-w", "\n%{http_code}"])
            .args(args)
            .arg(&url)
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        let code = code.trim().parse().unwrap_or_else(|_| {
            panic!(
                "curl {url}: no status code in {text:?}; stderr: {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
        (code, body.to_string())
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

impl Rkube {
    /// Starts another rkube component (`virtual-nodes`, `controller-manager`, `scheduler`)
    /// against this server, with `--kubeconfig` appended; its output goes to
    /// `<dir>/<log_name>.log`. Stopped by PID on drop.
    pub fn spawn_component(&self, log_name: &str, args: &[&str]) -> Component {
        let log_path = self.dir.path().join(format!("{log_name}.log"));
        let log = std::fs::File::create(&log_path).expect("component log");
        let child = Command::new(env!("CARGO_BIN_EXE_rkube"))
            .args(args)
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .env("RKUBE_LOG", "info")
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect("spawn rkube component");
        Component {
            child: Some(child),
            log_path,
        }
    }
}

/// A background rkube process other than the server (see [`Rkube::spawn_component`]).
pub struct Component {
    child: Option<Child>,
    log_path: PathBuf,
}

impl Component {
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).expect("running")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within 15 s.
    pub fn stop(&mut self) {
        if let Some(child) = self.child.take() {
            terminate(child);
        }
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.stop();
    }
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// A kubectl running in the background (see [`Rkube::spawn_kubectl`]).
pub struct Spawned {
    child: Child,
    lines: mpsc::Receiver<String>,
    stderr_lines: mpsc::Receiver<String>,
}

impl Spawned {
    /// The next stdout line, or None if none arrives within `timeout` (or stdout closed).
    pub fn next_line(&self, timeout: Duration) -> Option<String> {
        self.lines.recv_timeout(timeout).ok()
    }

    /// Reads stdout lines until one contains `needle`; panics with what was seen otherwise.
    pub fn expect_line(&self, needle: &str, timeout: Duration) -> String {
        self.expect_line_where(needle, timeout, |l| l.contains(needle))
    }

    /// Reads stdout lines until one satisfies `pred` (`what` names it in the panic).
    pub fn expect_line_where(
        &self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> String {
        let deadline = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if pred(&line) => return line,
                Ok(line) => seen.push(line),
                Err(_) => panic!(
                    "no line matching {what:?} within {timeout:?}; saw {seen:#?}; stderr: {:#?}",
                    self.stderr_lines.try_iter().collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Waits for the process to exit; returns its status and all remaining stdout.
    pub fn wait_exit(&mut self, timeout: Duration) -> (std::process::ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // The reader thread ends when stdout closes; give it the same deadline.
                let mut out = Vec::new();
                while let Ok(line) = self
                    .lines
                    .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                {
                    out.push(line);
                }
                return (status, out.join("\n"));
            }
            if Instant::now() > deadline {
                panic!(
                    "kubectl did not exit within {timeout:?}; stderr: {:#?}",
                    self.stderr_lines.try_iter().collect::<Vec<_>>()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr_lines.try_iter().collect::<Vec<_>>().join("\n")
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Rkube {
    fn drop(&mut self) {
        self.stop();
    }
}

fn pump(r: impl std::io::Read, tx: mpsc::Sender<String>, log: &Path) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .ok();
    for line in BufReader::new(r).lines().map_while(Result::ok) {
        if let Some(f) = f.as_mut() {
            let _ = writeln!(f, "{line}");
        }
        let _ = tx.send(line);
    }
}

/// SIGTERM, then SIGKILL if the process has not exited within 15 s.
fn terminate(mut child: Child) {
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
