//! Container probes (upstream `pkg/kubelet/prober` and `pkg/probe`): liveness, readiness
//! and startup probes of kind exec, httpGet, tcpSocket and grpc, and the handlers the
//! lifecycle hooks share with them.
//!
//! Design. One probe worker task runs per (container instance, probe kind). The pod
//! worker owns a [`PodProbes`] and calls [`PodProbes::sync`] on every sync: workers are
//! started for a container instance (a CRI container ID) once it is running in the
//! pod's ready sandbox, and stopped (their [`CancellationToken`] cancelled) once that
//! instance no longer runs or the pod goes. Keying workers by container ID means a
//! restarted container starts over with fresh results, as upstream does when it sees a
//! new container ID.
//!
//! The workers of one container share a `watch` channel holding its [`ProbeStatus`]
//! (started, ready, and which probe failed, if one did). A worker probes on a ticker of
//! `periodSeconds`, each attempt bounded by `timeoutSeconds`, and only changes the status
//! once `successThreshold` / `failureThreshold` consecutive attempts agree. When the status
//! changes it wakes the pod worker (the pod's `Notify`), which then writes the pod status
//! (readiness → `containerStatuses[].ready`, ContainersReady and Ready; startup →
//! `started`) or, for a failed liveness or startup probe, kills the container so that the
//! restart policy brings it back. Nothing polls the status.
//!
//! Timing as upstream: `initialDelaySeconds` counts from the container's start; liveness
//! and readiness wait until the startup probe (if any) succeeded; the startup worker ends
//! on success; a liveness or startup worker ends once it reported failure (the instance
//! is about to be killed). Initial results: not ready, not started (true without the
//! respective probe), live. Prober errors (a named port that does not exist, a runtime
//! call that failed) are reported as an event and do not count towards a threshold.
//! Every failed attempt records a Warning `Unhealthy` event with upstream's text
//! (`Liveness probe failed: HTTP probe failed with statuscode: 500`).
//!
//! Deliberately simple: HTTP redirects are not followed (a 3xx is a success with a
//! `ProbeWarning` event, as upstream reports a redirect it does not follow); HTTPS does
//! not verify the certificate (neither does upstream).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use cri::v1 as c;
use cri::CriClient;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::{Container, HTTPGetAction, ObjectReference, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::kuberuntime::{ContainerInfo, PodRuntime, SandboxInfo};
use crate::worker::Ctx;

/// How much of a probe's output (command output, response body) is kept.
const MAX_OUTPUT: usize = 10 * 1024;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProbeKind {
    Liveness,
    Readiness,
    Startup,
}

impl ProbeKind {
    /// As upstream prints it in events ("Liveness probe failed: …").
    pub fn name(self) -> &'static str {
        match self {
            ProbeKind::Liveness => "Liveness",
            ProbeKind::Readiness => "Readiness",
            ProbeKind::Startup => "Startup",
        }
    }

    /// The probe of this kind in a container spec.
    pub fn of(self, ctr: &Container) -> Option<&Probe> {
        match self {
            ProbeKind::Liveness => ctr.liveness_probe.as_ref(),
            ProbeKind::Readiness => ctr.readiness_probe.as_ref(),
            ProbeKind::Startup => ctr.startup_probe.as_ref(),
        }
    }
}

/// The result of one probe attempt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Success,
    /// Counts as success; the message is reported (a redirect that was not followed).
    Warning(String),
    Failure(String),
    /// The probe could not be run; the attempt does not count.
    Unknown(String),
}

/// What the probes of one container instance say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeStatus {
    /// The startup probe succeeded (true without one).
    pub started: bool,
    /// The readiness probe's result (true without one); the container is ready when it is
    /// also started.
    pub ready: bool,
    /// A liveness or startup probe reached its failure threshold: kill the container.
    pub failed: Option<ProbeKind>,
}

impl ProbeStatus {
    /// Before any probe ran (also what a running container without a worker reports).
    pub fn initial(ctr: &Container) -> Self {
        ProbeStatus {
            started: ctr.startup_probe.is_none(),
            ready: ctr.readiness_probe.is_none(),
            failed: None,
        }
    }

    pub fn is_ready(&self) -> bool {
        self.started && self.ready
    }
}

/// Timing and thresholds of one probe, with upstream's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    pub kind: ProbeKind,
    /// What is left of `initialDelaySeconds` when the worker starts.
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub success_threshold: u32,
    pub failure_threshold: u32,
}

impl ProbeConfig {
    /// `running_for`: how long the container has been running when the worker starts.
    pub fn new(kind: ProbeKind, p: &Probe, running_for: Duration) -> Self {
        let secs = |v: Option<i32>, default: i32| {
            Duration::from_secs(v.filter(|v| *v > 0).unwrap_or(default) as u64)
        };
        let initial = Duration::from_secs(p.initial_delay_seconds.unwrap_or(0).max(0) as u64);
        ProbeConfig {
            kind,
            initial_delay: initial.saturating_sub(running_for),
            period: secs(p.period_seconds, 10),
            timeout: secs(p.timeout_seconds, 1),
            // Liveness and startup probes must use 1 (validation enforces it).
            success_threshold: match kind {
                ProbeKind::Readiness => p.success_threshold.filter(|v| *v > 0).unwrap_or(1) as u32,
                _ => 1,
            },
            failure_threshold: p.failure_threshold.filter(|v| *v > 0).unwrap_or(3) as u32,
        }
    }
}

/// Consecutive results of one probe (upstream worker's `lastResult`/`resultRun`).
#[derive(Clone, Debug)]
pub struct Thresholds {
    success: u32,
    failure: u32,
    last: Option<bool>,
    run: u32,
}

impl Thresholds {
    pub fn new(success: u32, failure: u32) -> Self {
        Thresholds {
            success: success.max(1),
            failure: failure.max(1),
            last: None,
            run: 0,
        }
    }

    /// Records one attempt; returns the result once enough consecutive attempts agree.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        if self.last == Some(ok) {
            self.run = self.run.saturating_add(1);
        } else {
            self.last = Some(ok);
            self.run = 1;
        }
        let needed = if ok { self.success } else { self.failure };
        (self.run >= needed).then_some(ok)
    }
}

/// Applies a result that passed its threshold; true if the status changed.
fn apply(kind: ProbeKind, ok: bool, s: &mut ProbeStatus) -> bool {
    let before = *s;
    match (kind, ok) {
        (ProbeKind::Readiness, ok) => s.ready = ok,
        (ProbeKind::Startup, true) => s.started = true,
        (ProbeKind::Liveness, true) => {}
        (k, false) => s.failed = Some(k),
    }
    *s != before
}

/// One probe worker: waits for the initial delay (and, for liveness and readiness, for
/// the container to have started), then probes every period until cancelled or done.
/// `probe` runs one attempt (bounded by the probe's timeout itself).
pub async fn run_worker<F, Fut>(
    cfg: ProbeConfig,
    mut probe: F,
    status: Arc<watch::Sender<ProbeStatus>>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = Outcome>,
{
    let first = tokio::time::Instant::now() + cfg.initial_delay;
    if cfg.kind != ProbeKind::Startup {
        let mut rx = status.subscribe();
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = rx.wait_for(|s| s.started) => if r.is_err() { return },
        }
    }
    tokio::select! {
        _ = cancel.cancelled() => return,
        _ = tokio::time::sleep_until(first) => {}
    }
    let mut ticker = tokio::time::interval(cfg.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut run = Thresholds::new(cfg.success_threshold, cfg.failure_threshold);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let outcome = tokio::select! {
            _ = cancel.cancelled() => return,
            o = probe() => o,
        };
        let ok = match outcome {
            Outcome::Success | Outcome::Warning(_) => true,
            Outcome::Failure(_) => false,
            Outcome::Unknown(_) => continue,
        };
        let Some(result) = run.observe(ok) else {
            continue;
        };
        if status.send_if_modified(|s| apply(cfg.kind, result, s)) {
            wake.notify_one();
        }
        match (cfg.kind, result) {
            // Started: liveness and readiness take over.
            (ProbeKind::Startup, true) => return,
            // The instance is about to be killed; its successor gets new workers.
            (ProbeKind::Liveness | ProbeKind::Startup, false) => return,
            _ => {}
        }
    }
}

/// The probe workers of one container instance.
struct ContainerProbes {
    status: Arc<watch::Sender<ProbeStatus>>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

/// The probe workers of one pod, owned by its pod worker.
pub struct PodProbes {
    wake: Arc<Notify>,
    cancel: CancellationToken,
    /// By container ID.
    containers: HashMap<String, ContainerProbes>,
    /// Workers told to stop, joined later.
    stopping: Vec<JoinHandle<()>>,
}

impl PodProbes {
    /// `wake` is the pod worker's; workers stop when `parent` is cancelled.
    pub fn new(wake: Arc<Notify>, parent: &CancellationToken) -> Self {
        PodProbes {
            wake,
            cancel: parent.child_token(),
            containers: HashMap::new(),
            stopping: Vec::new(),
        }
    }

    /// Starts workers for the pod's running containers that have probes and none yet, and
    /// stops the workers of instances that no longer run.
    pub fn sync(
        &mut self,
        ctx: &Arc<Ctx>,
        pod: &Pod,
        rt: &PodRuntime,
        sandbox: Option<&SandboxInfo>,
    ) {
        let spec = pod.spec.clone().unwrap_or_default();
        let pod_ip = pod_ip(ctx, pod, sandbox);
        let mut running: Vec<(&Container, &ContainerInfo)> = Vec::new();
        if let Some(sb) = sandbox {
            for ctr in &spec.containers {
                if let Some(info) = rt
                    .latest(&ctr.name)
                    .filter(|c| c.running() && c.sandbox_id == sb.id)
                {
                    running.push((ctr, info));
                }
            }
        }
        let keep: Vec<&str> = running.iter().map(|(_, i)| i.id.as_str()).collect();
        let gone: Vec<String> = self
            .containers
            .keys()
            .filter(|id| !keep.contains(&id.as_str()))
            .cloned()
            .collect();
        for id in gone {
            self.stop(&id);
        }
        self.stopping.retain(|h| !h.is_finished());
        let now_ns = k8s_openapi::jiff::Timestamp::now().as_nanosecond();
        for (ctr, info) in running {
            if self.containers.contains_key(&info.id) {
                continue;
            }
            let kinds: Vec<ProbeKind> = [
                ProbeKind::Startup,
                ProbeKind::Liveness,
                ProbeKind::Readiness,
            ]
            .into_iter()
            .filter(|k| k.of(ctr).is_some())
            .collect();
            if kinds.is_empty() {
                continue;
            }
            let running_for = Duration::from_nanos(
                u64::try_from(now_ns - i128::from(info.started_at)).unwrap_or(0),
            );
            let status = Arc::new(watch::channel(ProbeStatus::initial(ctr)).0);
            let cancel = self.cancel.child_token();
            let reference = crate::worker::object_ref(pod, Some(&ctr.name), false);
            let mut tasks = Vec::new();
            for kind in kinds {
                let Some(p) = kind.of(ctr) else { continue };
                let cfg = ProbeConfig::new(kind, p, running_for);
                let target = Target {
                    ctx: ctx.clone(),
                    probe: p.clone(),
                    container: ctr.clone(),
                    container_id: info.id.clone(),
                    pod_ip: pod_ip.clone(),
                    reference: reference.clone(),
                    kind,
                    timeout: cfg.timeout,
                };
                let target = Arc::new(target);
                let probe = move || {
                    let t = target.clone();
                    async move { t.probe_and_report().await }
                };
                tracing::debug!(container = %ctr.name, id = %info.id, probe = kind.name(), "starting probe worker");
                tasks.push(tokio::spawn(run_worker(
                    cfg,
                    probe,
                    status.clone(),
                    self.wake.clone(),
                    cancel.clone(),
                )));
            }
            self.containers.insert(
                info.id.clone(),
                ContainerProbes {
                    status,
                    cancel,
                    tasks,
                },
            );
        }
    }

    fn stop(&mut self, id: &str) {
        if let Some(c) = self.containers.remove(id) {
            c.cancel.cancel();
            self.stopping.extend(c.tasks);
        }
    }

    /// The status of container instance `id`, if it has probe workers.
    pub fn status(&self, id: &str) -> Option<ProbeStatus> {
        self.containers.get(id).map(|c| *c.status.borrow())
    }

    /// Statuses of every container instance with probe workers, by container ID.
    pub fn snapshot(&self) -> HashMap<String, ProbeStatus> {
        self.containers
            .iter()
            .map(|(id, c)| (id.clone(), *c.status.borrow()))
            .collect()
    }

    /// Stops every worker (the pod terminates).
    pub fn stop_all(&mut self) {
        let ids: Vec<String> = self.containers.keys().cloned().collect();
        for id in ids {
            self.stop(&id);
        }
    }

    /// Stops every worker and waits for them to end.
    pub async fn shutdown(&mut self) {
        self.stop_all();
        self.cancel.cancel();
        for h in self.stopping.drain(..) {
            let _ = h.await;
        }
    }
}

impl Drop for PodProbes {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

/// The IP probes and HTTP hooks reach by default: the node's for host-network pods, else
/// the sandbox's.
pub fn pod_ip(ctx: &Ctx, pod: &Pod, sandbox: Option<&SandboxInfo>) -> Option<String> {
    if crate::kuberuntime::host_network(pod) {
        Some(ctx.config.node_ip.to_string())
    } else {
        sandbox.and_then(|s| s.ip.clone())
    }
}

/// Everything one probe attempt needs.
struct Target {
    ctx: Arc<Ctx>,
    probe: Probe,
    container: Container,
    container_id: String,
    pod_ip: Option<String>,
    reference: ObjectReference,
    kind: ProbeKind,
    timeout: Duration,
}

impl Target {
    async fn probe_and_report(&self) -> Outcome {
        let outcome = self.run().await;
        let kind = self.kind.name();
        match &outcome {
            Outcome::Success => {}
            Outcome::Warning(msg) => {
                self.ctx
                    .warn(
                        &self.reference,
                        "ProbeWarning",
                        format!("{kind} probe warning: {msg}"),
                    )
                    .await
            }
            Outcome::Failure(msg) => {
                tracing::debug!(container = %self.container.name, probe = kind, output = %msg, "probe failed");
                self.ctx
                    .warn(
                        &self.reference,
                        "Unhealthy",
                        format!("{kind} probe failed: {msg}"),
                    )
                    .await
            }
            Outcome::Unknown(msg) => {
                tracing::debug!(container = %self.container.name, probe = kind, error = %msg, "probe errored");
                self.ctx
                    .warn(
                        &self.reference,
                        "Unhealthy",
                        format!("{kind} probe errored and resulted in unknown state: {msg}"),
                    )
                    .await
            }
        }
        outcome
    }

    async fn run(&self) -> Outcome {
        let p = &self.probe;
        if let Some(e) = &p.exec {
            let cmd = e.command.clone().unwrap_or_default();
            let mut cri = self.ctx.cri.clone();
            return exec_probe(&mut cri, &self.container_id, &cmd, self.timeout).await;
        }
        if let Some(h) = &p.http_get {
            return match HttpTarget::new(h, &self.container, self.pod_ip.as_deref()) {
                Ok(t) => http_probe(&t, self.timeout).await,
                Err(e) => Outcome::Unknown(e),
            };
        }
        if let Some(t) = &p.tcp_socket {
            let host = t
                .host
                .clone()
                .filter(|h| !h.is_empty())
                .or_else(|| self.pod_ip.clone());
            let Some(host) = host else {
                return Outcome::Unknown("the pod has no IP yet".into());
            };
            return match resolve_port(&t.port, &self.container) {
                Ok(port) => tcp_probe(&host, port, self.timeout).await,
                Err(e) => Outcome::Unknown(e),
            };
        }
        if let Some(g) = &p.grpc {
            let Some(host) = self.pod_ip.clone() else {
                return Outcome::Unknown("the pod has no IP yet".into());
            };
            let Ok(port) = u16::try_from(g.port) else {
                return Outcome::Unknown(format!("invalid port number: {}", g.port));
            };
            return grpc_probe(
                &host,
                port,
                g.service.as_deref().unwrap_or(""),
                self.timeout,
            )
            .await;
        }
        Outcome::Unknown("missing probe handler".into())
    }
}

/// `host:port`, bracketing IPv6 literals.
pub fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// A probe's or hook's port: a number, or the name of one of the container's ports.
pub fn resolve_port(port: &IntOrString, ctr: &Container) -> Result<u16, String> {
    let n = match port {
        IntOrString::Int(n) => i64::from(*n),
        IntOrString::String(name) => match ctr
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
        {
            Some(p) => i64::from(p.container_port),
            // Upstream's last ditch: a number stored as a string.
            None => name
                .parse::<i64>()
                .map_err(|_| format!("port {name} not found"))?,
        },
    };
    u16::try_from(n)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("invalid port number: {n}"))
}

/// `kube-probe/1.33`-style user agents from the version the node reports.
pub fn user_agent(component: &str) -> String {
    let v = crate::node::KUBELET_VERSION.trim_start_matches('v');
    let minor: Vec<&str> = v.split(['.', '+', '-']).take(2).collect();
    format!("{component}/{}", minor.join("."))
}

fn io_message(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".into(),
        std::io::ErrorKind::TimedOut => "i/o timeout".into(),
        _ => e.to_string(),
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_OUTPUT {
        let mut end = MAX_OUTPUT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Why a command run in a container did not finish.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("command {0:?} timed out")]
    TimedOut(String),
    #[error("{0}")]
    Runtime(String),
}

/// Runs `cmd` in the container through CRI ExecSync; returns the exit code and the
/// combined output. `timeout` zero: no limit.
pub async fn exec_sync(
    cri: &mut CriClient,
    container_id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Result<(i32, String), ExecError> {
    let req = c::ExecSyncRequest {
        container_id: container_id.to_string(),
        cmd: cmd.to_vec(),
        timeout: if timeout.is_zero() {
            0
        } else {
            timeout.as_secs().max(1) as i64
        },
    };
    let joined = cmd.join(" ");
    let call = cri.runtime.exec_sync(req);
    let res = if timeout.is_zero() {
        call.await
    } else {
        // The runtime enforces the timeout; ours only guards against a runtime that hangs.
        match tokio::time::timeout(timeout + Duration::from_secs(5), call).await {
            Ok(r) => r,
            Err(_) => return Err(ExecError::TimedOut(joined)),
        }
    };
    match res {
        Ok(r) => {
            let r = r.into_inner();
            let mut out = r.stdout;
            out.extend_from_slice(&r.stderr);
            Ok((
                r.exit_code,
                truncate(String::from_utf8_lossy(&out).into_owned()),
            ))
        }
        Err(s) if s.code() == tonic::Code::DeadlineExceeded => Err(ExecError::TimedOut(joined)),
        Err(s) => Err(ExecError::Runtime(format!("{}: {}", s.code(), s.message()))),
    }
}

/// An exec probe: exit code 0 is success, else failure with the command's output.
pub async fn exec_probe(
    cri: &mut CriClient,
    container_id: &str,
    cmd: &[String],
    timeout: Duration,
) -> Outcome {
    match exec_sync(cri, container_id, cmd, timeout).await {
        Ok((0, _)) => Outcome::Success,
        Ok((_, out)) => Outcome::Failure(out.trim_end().to_string()),
        Err(e @ ExecError::TimedOut(_)) => Outcome::Failure(e.to_string()),
        Err(ExecError::Runtime(e)) => Outcome::Unknown(e),
    }
}

/// Where an httpGet probe or hook goes.
#[derive(Clone, Debug, PartialEq)]
pub struct HttpTarget {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl HttpTarget {
    pub fn new(a: &HTTPGetAction, ctr: &Container, pod_ip: Option<&str>) -> Result<Self, String> {
        let host = a
            .host
            .clone()
            .filter(|h| !h.is_empty())
            .or_else(|| pod_ip.map(str::to_string))
            .ok_or("the pod has no IP yet")?;
        let port = resolve_port(&a.port, ctr)?;
        let https = match a.scheme.as_deref().map(str::to_ascii_uppercase).as_deref() {
            None | Some("") | Some("HTTP") => false,
            Some("HTTPS") => true,
            Some(other) => return Err(format!("unsupported scheme {other:?}")),
        };
        let mut path = a.path.clone().unwrap_or_default();
        if !path.starts_with('/') {
            path.insert(0, '/');
        }
        let headers = a
            .http_headers
            .iter()
            .flatten()
            .map(|h| (h.name.clone(), h.value.clone()))
            .collect();
        Ok(HttpTarget {
            https,
            host,
            port,
            path,
            headers,
        })
    }

    pub fn url(&self) -> String {
        let scheme = if self.https { "https" } else { "http" };
        format!(
            "{scheme}://{}{}",
            join_host_port(&self.host, self.port),
            self.path
        )
    }
}

/// One GET; the status code and (the start of) the body. Errors read like Go's.
pub async fn http_get(
    t: &HttpTarget,
    user_agent: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let url = t.url();
    let work = async {
        let addr = join_host_port(&t.host, t.port);
        let tcp = tokio::net::TcpStream::connect(&addr)
            .await
            .map_err(|e| format!("dial tcp {addr}: {}", io_message(&e)))?;
        let _ = tcp.set_nodelay(true);
        if t.https {
            let tls =
                tokio_rustls::TlsConnector::from(insecure_tls_config().map_err(|e| e.to_string())?);
            let name = match t.host.parse::<std::net::IpAddr>() {
                Ok(ip) => rustls::pki_types::ServerName::IpAddress(ip.into()),
                Err(_) => rustls::pki_types::ServerName::try_from(t.host.clone())
                    .map_err(|e| e.to_string())?,
            };
            let stream = tls
                .connect(name, tcp)
                .await
                .map_err(|e| format!("tls: {e}"))?;
            request(stream, t, user_agent).await
        } else {
            request(tcp, t, user_agent).await
        }
    };
    match tokio::time::timeout(timeout, work).await {
        Ok(Ok(r)) => Ok(r),
        Ok(Err(e)) => Err(format!("Get {url:?}: {e}")),
        Err(_) => Err(format!("Get {url:?}: context deadline exceeded (Client.Timeout exceeded while awaiting headers)")),
    }
}

async fn request<S>(io: S, t: &HttpTarget, user_agent: &str) -> Result<(u16, String), String>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(io))
            .await
            .map_err(|e| e.to_string())?;
    let mut req = http::Request::get(t.path.as_str())
        .header(http::header::HOST, join_host_port(&t.host, t.port))
        .header(http::header::USER_AGENT, user_agent)
        .header(http::header::ACCEPT, "*/*")
        .header(http::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    for (name, value) in &t.headers {
        let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.as_bytes()),
            http::HeaderValue::from_str(value),
        ) else {
            return Err(format!("invalid header {name:?}"));
        };
        // Given headers replace the defaults (Host, User-Agent, Accept included).
        req.headers_mut().insert(n, v);
    }
    let exchange = async {
        let resp = sender.send_request(req).await.map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        let mut body = resp.into_body();
        let mut data = Vec::new();
        while data.len() < MAX_OUTPUT {
            match body.frame().await {
                Some(Ok(f)) => {
                    if let Some(d) = f.data_ref() {
                        data.extend_from_slice(d);
                    }
                }
                Some(Err(e)) => return Err(e.to_string()),
                None => break,
            }
        }
        Ok((
            status,
            truncate(String::from_utf8_lossy(&data).into_owned()),
        ))
    };
    tokio::pin!(exchange);
    tokio::pin!(conn);
    let mut conn_done = false;
    loop {
        tokio::select! {
            r = &mut exchange => return r,
            c = &mut conn, if !conn_done => match c {
                Ok(()) => conn_done = true,
                Err(e) => return Err(e.to_string()),
            },
        }
    }
}

/// An httpGet probe: 200..400 is success (3xx with a warning, redirects are not followed).
pub async fn http_probe(t: &HttpTarget, timeout: Duration) -> Outcome {
    match http_get(t, &user_agent("kube-probe"), timeout).await {
        Ok((code, _)) if (200..300).contains(&code) => Outcome::Success,
        Ok((code, body)) if (300..400).contains(&code) => {
            Outcome::Warning(format!("Probe terminated redirects, Response body: {body}"))
        }
        Ok((code, _)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Err(e) => Outcome::Failure(e),
    }
}

/// A tcpSocket probe: the connection is opened and closed at once.
pub async fn tcp_probe(host: &str, port: u16, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(&addr)).await {
        Ok(Ok(_)) => Outcome::Success,
        Ok(Err(e)) => Outcome::Failure(format!("dial tcp {addr}: {}", io_message(&e))),
        Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
    }
}

/// `grpc.health.v1.HealthCheckRequest`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckRequest {
    #[prost(string, tag = "1")]
    pub service: String,
}

/// `grpc.health.v1.HealthCheckResponse`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct HealthCheckResponse {
    /// `ServingStatus`: 0 UNKNOWN, 1 SERVING, 2 NOT_SERVING, 3 SERVICE_UNKNOWN.
    #[prost(int32, tag = "1")]
    pub status: i32,
}

pub const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

fn serving_status_name(s: i32) -> String {
    match s {
        0 => "UNKNOWN".into(),
        1 => "SERVING".into(),
        2 => "NOT_SERVING".into(),
        3 => "SERVICE_UNKNOWN".into(),
        n => n.to_string(),
    }
}

/// `e` and its sources, joined as Go wraps errors.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        s.push_str(": ");
        s.push_str(&src.to_string());
        cur = src.source();
    }
    s
}

/// A grpc probe: the standard health service's Check over plain HTTP/2 must answer SERVING.
pub async fn grpc_probe(host: &str, port: u16, service: &str, timeout: Duration) -> Outcome {
    let addr = join_host_port(host, port);
    let secs = timeout.as_secs();
    let endpoint = match tonic::transport::Endpoint::from_shared(format!("http://{addr}")) {
        Ok(e) => e.connect_timeout(timeout).timeout(timeout),
        Err(e) => return Outcome::Unknown(e.to_string()),
    };
    let endpoint = match endpoint.user_agent(user_agent("kube-probe")) {
        Ok(e) => e,
        Err(e) => return Outcome::Unknown(e.to_string()),
    };
    let channel = match tokio::time::timeout(timeout, endpoint.connect()).await {
        Ok(Ok(ch)) => ch,
        Ok(Err(e)) => {
            return Outcome::Failure(format!(
                "error: failed to connect service at {addr:?}: {}",
                error_chain(&e)
            ))
        }
        Err(_) => {
            return Outcome::Failure(format!(
            "timeout: failed to connect service {addr:?} within {secs}s: context deadline exceeded"
        ))
        }
    };
    let mut grpc = tonic::client::Grpc::new(channel);
    let call = async {
        grpc.ready()
            .await
            .map_err(|e| tonic::Status::unavailable(error_chain(&e)))?;
        let codec = tonic_prost::ProstCodec::<HealthCheckRequest, HealthCheckResponse>::default();
        let path = http::uri::PathAndQuery::from_static(HEALTH_CHECK_PATH);
        grpc.unary(
            tonic::Request::new(HealthCheckRequest {
                service: service.to_string(),
            }),
            path,
            codec,
        )
        .await
    };
    match tokio::time::timeout(timeout, call).await {
        Err(_) => Outcome::Failure(format!("timeout: health rpc did not complete within {secs}s")),
        Ok(Err(s)) if s.code() == tonic::Code::Unimplemented => Outcome::Failure(format!(
            "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): {}",
            s.message()
        )),
        Ok(Err(s)) if s.code() == tonic::Code::DeadlineExceeded || s.code() == tonic::Code::Cancelled => {
            Outcome::Failure(format!("timeout: health rpc did not complete within {secs}s"))
        }
        Ok(Err(s)) => Outcome::Failure(format!("error: health rpc probe failed: rpc error: code = {:?} desc = {}", s.code(), s.message())),
        Ok(Ok(resp)) => match resp.into_inner().status {
            1 => Outcome::Success,
            other => Outcome::Failure(format!("service unhealthy (responded with {:?})", serving_status_name(other))),
        },
    }
}

/// Probes and hooks skip certificate verification, as upstream's do.
fn insecure_tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(NoVerification(provider.clone()));
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    Ok(Arc::new(cfg))
}

#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;

    use k8s_openapi::api::core::v1::ContainerPort;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::time::Instant;

    fn cfg(kind: ProbeKind, initial: u64, period: u64, success: u32, failure: u32) -> ProbeConfig {
        ProbeConfig {
            kind,
            initial_delay: Duration::from_secs(initial),
            period: Duration::from_secs(period),
            timeout: Duration::from_secs(1),
            success_threshold: success,
            failure_threshold: failure,
        }
    }

    /// A probe answering from a script (the last answer repeats), logging when it ran.
    fn scripted(
        answers: Vec<Outcome>,
    ) -> (
        impl FnMut() -> std::future::Ready<Outcome>,
        Arc<Mutex<Vec<Duration>>>,
    ) {
        let start = Instant::now();
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut answers: VecDeque<Outcome> = answers.into();
        let l = log.clone();
        let probe = move || {
            l.lock().expect("log").push(start.elapsed());
            let a = if answers.len() > 1 {
                answers.pop_front()
            } else {
                answers.front().cloned()
            };
            std::future::ready(a.unwrap_or(Outcome::Success))
        };
        (probe, log)
    }

    fn fail() -> Outcome {
        Outcome::Failure("nope".into())
    }

    fn status(started: bool, ready: bool) -> Arc<watch::Sender<ProbeStatus>> {
        Arc::new(
            watch::channel(ProbeStatus {
                started,
                ready,
                failed: None,
            })
            .0,
        )
    }

    /// Counts the wake-ups a probe worker gives the pod worker.
    fn count_wakes(wake: &Arc<Notify>) -> Arc<AtomicUsize> {
        let n = Arc::new(AtomicUsize::new(0));
        let (w, m) = (wake.clone(), n.clone());
        tokio::spawn(async move {
            loop {
                w.notified().await;
                m.fetch_add(1, Ordering::SeqCst);
            }
        });
        n
    }

    async fn at(start: Instant, secs: f64) {
        tokio::time::sleep_until(start + Duration::from_secs_f64(secs)).await;
    }

    fn secs(log: &Arc<Mutex<Vec<Duration>>>) -> Vec<u64> {
        log.lock()
            .expect("log")
            .iter()
            .map(|d| d.as_secs())
            .collect()
    }

    #[test]
    fn thresholds_need_consecutive_agreeing_results() {
        let mut t = Thresholds::new(2, 3);
        let seen: Vec<Option<bool>> = [
            false, true, true, true, false, false, true, false, false, false,
        ]
        .into_iter()
        .map(|ok| t.observe(ok))
        .collect();
        assert_eq!(
            seen,
            vec![
                None,
                None,
                Some(true),
                Some(true),
                None,
                None,
                None,
                None,
                None,
                Some(false)
            ]
        );
        let mut once = Thresholds::new(0, 1);
        assert_eq!(once.observe(false), Some(false));
        assert_eq!(once.observe(true), Some(true));
    }

    #[test]
    fn probe_config_defaults_as_upstream() {
        let p = Probe::default();
        let c = ProbeConfig::new(ProbeKind::Liveness, &p, Duration::ZERO);
        assert_eq!(c, cfg(ProbeKind::Liveness, 0, 10, 1, 3));
        let p = Probe {
            initial_delay_seconds: Some(30),
            success_threshold: Some(4),
            timeout_seconds: Some(5),
            ..Default::default()
        };
        let c = ProbeConfig::new(ProbeKind::Readiness, &p, Duration::from_secs(12));
        assert_eq!(c.initial_delay, Duration::from_secs(18));
        assert_eq!(c.success_threshold, 4);
        assert_eq!(c.timeout, Duration::from_secs(5));
        // A container that has run longer than the delay is probed at once.
        assert_eq!(
            ProbeConfig::new(ProbeKind::Readiness, &p, Duration::from_secs(99)).initial_delay,
            Duration::ZERO
        );
        assert_eq!(
            ProbeConfig::new(ProbeKind::Startup, &p, Duration::ZERO).success_threshold,
            1
        );
    }

    #[tokio::test(start_paused = true)]
    async fn readiness_follows_thresholds_on_the_period_and_wakes_the_pod_worker() {
        let start = Instant::now();
        let (probe, log) = scripted(vec![
            fail(),
            Outcome::Success,
            Outcome::Success,
            fail(),
            fail(),
            fail(),
            Outcome::Success,
        ]);
        let st = status(true, false);
        let wake = Arc::new(Notify::new());
        let wakes = count_wakes(&wake);
        let cancel = CancellationToken::new();
        let task = tokio::spawn(run_worker(
            cfg(ProbeKind::Readiness, 5, 10, 2, 3),
            probe,
            st.clone(),
            wake,
            cancel.clone(),
        ));
        at(start, 24.5).await;
        assert!(!st.borrow().ready, "one success is below the threshold");
        at(start, 25.5).await;
        assert!(st.borrow().ready);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
        at(start, 54.5).await;
        assert!(st.borrow().ready, "two failures are below the threshold");
        at(start, 55.5).await;
        assert!(!st.borrow().ready);
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        assert_eq!(secs(&log), vec![5, 15, 25, 35, 45, 55]);
        cancel.cancel();
        task.await.expect("worker");
    }

    #[tokio::test(start_paused = true)]
    async fn startup_gates_liveness_and_liveness_failure_is_reported_once() {
        let start = Instant::now();
        let st = status(false, true);
        let wake = Arc::new(Notify::new());
        let wakes = count_wakes(&wake);
        let cancel = CancellationToken::new();
        let (startup, startup_log) = scripted(vec![fail(), fail(), Outcome::Success]);
        let (live, live_log) = scripted(vec![fail(), fail(), fail()]);
        let s = tokio::spawn(run_worker(
            cfg(ProbeKind::Startup, 0, 1, 1, 3),
            startup,
            st.clone(),
            wake.clone(),
            cancel.clone(),
        ));
        let l = tokio::spawn(run_worker(
            cfg(ProbeKind::Liveness, 0, 1, 1, 2),
            live,
            st.clone(),
            wake,
            cancel.clone(),
        ));
        at(start, 1.5).await;
        assert!(
            live_log.lock().expect("log").is_empty(),
            "liveness waits for the startup probe"
        );
        at(start, 2.5).await;
        assert!(st.borrow().started);
        assert!(s.is_finished(), "the startup worker ends once started");
        at(start, 3.5).await;
        assert_eq!(st.borrow().failed, Some(ProbeKind::Liveness));
        assert_eq!(secs(&startup_log), vec![0, 1, 2]);
        assert_eq!(secs(&live_log), vec![2, 3]);
        // Started, then failed: two changes, two wake-ups; the liveness worker stopped.
        assert_eq!(wakes.load(Ordering::SeqCst), 2);
        at(start, 10.0).await;
        assert!(l.is_finished());
        assert_eq!(secs(&live_log).len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn startup_failure_fails_and_readiness_never_runs() {
        let start = Instant::now();
        let st = status(false, false);
        let wake = Arc::new(Notify::new());
        let cancel = CancellationToken::new();
        let (startup, _) = scripted(vec![fail()]);
        let (ready, ready_log) = scripted(vec![Outcome::Success]);
        let s = tokio::spawn(run_worker(
            cfg(ProbeKind::Startup, 0, 2, 1, 3),
            startup,
            st.clone(),
            wake.clone(),
            cancel.clone(),
        ));
        let r = tokio::spawn(run_worker(
            cfg(ProbeKind::Readiness, 0, 1, 1, 3),
            ready,
            st.clone(),
            wake,
            cancel.clone(),
        ));
        at(start, 3.5).await;
        assert_eq!(st.borrow().failed, None);
        at(start, 4.5).await;
        assert_eq!(
            *st.borrow(),
            ProbeStatus {
                started: false,
                ready: false,
                failed: Some(ProbeKind::Startup)
            }
        );
        assert!(s.is_finished());
        assert!(ready_log.lock().expect("log").is_empty());
        // The container's workers are stopped with its token.
        cancel.cancel();
        r.await.expect("readiness worker");
    }

    #[tokio::test(start_paused = true)]
    async fn probe_errors_do_not_count() {
        let start = Instant::now();
        let st = status(true, true);
        let wake = Arc::new(Notify::new());
        let (live, _) = scripted(vec![
            fail(),
            Outcome::Unknown("no such port".into()),
            fail(),
        ]);
        let cancel = CancellationToken::new();
        let _w = tokio::spawn(run_worker(
            cfg(ProbeKind::Liveness, 0, 1, 1, 2),
            live,
            st.clone(),
            wake,
            cancel.clone(),
        ));
        at(start, 1.5).await;
        assert_eq!(
            st.borrow().failed,
            None,
            "an error does not count as the second failure"
        );
        at(start, 2.5).await;
        assert_eq!(st.borrow().failed, Some(ProbeKind::Liveness));
        // A warning counts as success.
        let st = status(true, false);
        let (ready, _) = scripted(vec![Outcome::Warning("redirect".into())]);
        let _r = tokio::spawn(run_worker(
            cfg(ProbeKind::Readiness, 0, 1, 1, 1),
            ready,
            st.clone(),
            Arc::new(Notify::new()),
            cancel.clone(),
        ));
        at(start, 3.0).await;
        assert!(st.borrow().ready);
        cancel.cancel();
    }

    #[test]
    fn ports_resolve_by_number_or_name() {
        let ctr = Container {
            name: "c".into(),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: 8080,
                ..Default::default()
            }]),
            ..Default::default()
        };
        assert_eq!(resolve_port(&IntOrString::Int(80), &ctr), Ok(80));
        assert_eq!(
            resolve_port(&IntOrString::String("http".into()), &ctr),
            Ok(8080)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("9090".into()), &ctr),
            Ok(9090)
        );
        assert_eq!(
            resolve_port(&IntOrString::String("grpc".into()), &ctr),
            Err("port grpc not found".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(0), &ctr),
            Err("invalid port number: 0".into())
        );
        assert_eq!(
            resolve_port(&IntOrString::Int(70000), &ctr),
            Err("invalid port number: 70000".into())
        );
    }

    #[test]
    fn http_targets_default_to_the_pod_ip() {
        let ctr = Container::default();
        let a = HTTPGetAction {
            port: IntOrString::Int(8080),
            ..Default::default()
        };
        let t = HttpTarget::new(&a, &ctr, Some("10.1.2.3")).expect("target");
        assert_eq!(t.url(), "http://10.1.2.3:8080/");
        let a = HTTPGetAction {
            host: Some("::1".into()),
            scheme: Some("HTTPS".into()),
            path: Some("healthz?x=1".into()),
            port: IntOrString::Int(443),
            ..Default::default()
        };
        assert_eq!(
            HttpTarget::new(&a, &ctr, None).expect("target").url(),
            "https://[::1]:443/healthz?x=1"
        );
        assert!(HttpTarget::new(&HTTPGetAction::default(), &ctr, None).is_err());
        assert_eq!(user_agent("kube-probe"), "kube-probe/1.33");
    }

    /// An HTTP/1.1 server on loopback answering every request with `status`; the
    /// requests it got come out of the channel.
    async fn http_server(
        status: &'static str,
    ) -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    let _ = tx.send(String::from_utf8_lossy(&buf).into_owned());
                    let resp = format!(
                        "HTTP/1.1 {status}\r\nContent-Length: 4\r\nConnection: close\r\n\r\nbody"
                    );
                    let _ = s.write_all(resp.as_bytes()).await;
                });
            }
        });
        (port, rx)
    }

    fn target(port: u16) -> HttpTarget {
        HttpTarget {
            https: false,
            host: "127.0.0.1".into(),
            port,
            path: "/healthz".into(),
            headers: vec![],
        }
    }

    #[tokio::test]
    async fn http_probe_success_failure_and_redirect() {
        let t = Duration::from_secs(5);
        let (port, mut reqs) = http_server("200 OK").await;
        let mut ok = target(port);
        ok.headers = vec![
            ("X-Custom".into(), "yes".into()),
            ("Host".into(), "example.test".into()),
        ];
        assert_eq!(http_probe(&ok, t).await, Outcome::Success);
        let req = reqs.recv().await.expect("request").to_ascii_lowercase();
        assert!(req.starts_with("get /healthz http/1.1\r\n"), "{req}");
        assert!(req.contains("user-agent: kube-probe/1.33\r\n"), "{req}");
        assert!(req.contains("x-custom: yes\r\n"), "{req}");
        assert!(req.contains("host: example.test\r\n"), "{req}");
        assert!(!req.contains(&format!("host: 127.0.0.1:{port}")), "{req}");

        let (port, _reqs) = http_server("500 Internal Server Error").await;
        assert_eq!(
            http_probe(&target(port), t).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let (port, _reqs) = http_server("302 Found").await;
        assert_eq!(
            http_probe(&target(port), t).await,
            Outcome::Warning("Probe terminated redirects, Response body: body".into())
        );
        let (port, _reqs) = http_server("399 Odd").await;
        assert!(matches!(
            http_probe(&target(port), t).await,
            Outcome::Warning(_)
        ));
        let (port, _reqs) = http_server("400 Bad Request").await;
        assert_eq!(
            http_probe(&target(port), t).await,
            Outcome::Failure("HTTP probe failed with statuscode: 400".into())
        );
    }

    #[tokio::test]
    async fn http_probe_reports_refused_connections_and_timeouts() {
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr").port()
        };
        let got = http_probe(&target(closed), Duration::from_secs(5)).await;
        assert_eq!(
            got,
            Outcome::Failure(format!("Get \"http://127.0.0.1:{closed}/healthz\": dial tcp 127.0.0.1:{closed}: connect: connection refused"))
        );
        // Accepts, never answers.
        let silent = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let got = http_probe(&target(port), Duration::from_millis(200)).await;
        assert_eq!(
            got,
            Outcome::Failure(format!(
                "Get \"http://127.0.0.1:{port}/healthz\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            ))
        );
        drop(silent);
    }

    #[tokio::test]
    async fn https_probe_does_not_verify_the_certificate() {
        let tls = crate::server::tls_config("probe-test", "127.0.0.1".parse().expect("ip"), None)
            .expect("tls config");
        let acceptor = tokio_rustls::TlsAcceptor::from(tls);
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut s) = acceptor.accept(s).await else {
                        return;
                    };
                    let mut buf = [0u8; 4096];
                    let _ = s.read(&mut buf).await;
                    let _ = s
                        .write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
                        .await;
                    let _ = s.shutdown().await;
                });
            }
        });
        let mut t = target(port);
        t.https = true;
        assert_eq!(
            http_probe(&t, Duration::from_secs(5)).await,
            Outcome::Success
        );
    }

    #[tokio::test]
    async fn http_get_for_hooks_ignores_the_status_code() {
        let (port, _reqs) = http_server("503 Service Unavailable").await;
        let got = http_get(&target(port), &user_agent("kube-lifecycle"), Duration::MAX).await;
        assert_eq!(got, Ok((503, "body".into())));
    }

    #[tokio::test]
    async fn tcp_probe_connects_or_fails() {
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        assert_eq!(
            tcp_probe("127.0.0.1", port, Duration::from_secs(1)).await,
            Outcome::Success
        );
        drop(l);
        assert_eq!(
            tcp_probe("127.0.0.1", port, Duration::from_secs(1)).await,
            Outcome::Failure(format!(
                "dial tcp 127.0.0.1:{port}: connect: connection refused"
            ))
        );
    }

    /// A gRPC health server (HTTP/2 by hand): service "" is SERVING, "down" NOT_SERVING,
    /// "unimplemented" answers grpc-status 12.
    async fn grpc_server() -> u16 {
        use http_body_util::StreamBody;
        use hyper::body::Frame;
        use prost::Message;
        let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = l.local_addr().expect("addr").port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: http::Request<hyper::body::Incoming>| async move {
                            assert_eq!(req.uri().path(), HEALTH_CHECK_PATH);
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .expect("request body")
                                .to_bytes();
                            let msg =
                                HealthCheckRequest::decode(&body[5..]).expect("HealthCheckRequest");
                            let mut frames = Vec::new();
                            let mut trailers = http::HeaderMap::new();
                            let (grpc_status, serving) = match msg.service.as_str() {
                                "" => (0, 1),
                                "down" => (0, 2),
                                _ => (12, 0),
                            };
                            if grpc_status == 0 {
                                let out = HealthCheckResponse { status: serving }.encode_to_vec();
                                let mut data = vec![0u8];
                                data.extend_from_slice(&(out.len() as u32).to_be_bytes());
                                data.extend_from_slice(&out);
                                frames.push(Frame::data(Bytes::from(data)));
                            } else {
                                trailers.insert(
                                    "grpc-message",
                                    http::HeaderValue::from_static(
                                        "unknown service grpc.health.v1.Health",
                                    ),
                                );
                            }
                            trailers.insert("grpc-status", http::HeaderValue::from(grpc_status));
                            frames.push(Frame::trailers(trailers));
                            let body = StreamBody::new(futures::stream::iter(
                                frames.into_iter().map(Ok::<_, std::convert::Infallible>),
                            ));
                            let resp = http::Response::builder()
                                .header("content-type", "application/grpc")
                                .body(body)
                                .expect("response");
                            Ok::<_, std::convert::Infallible>(resp)
                        },
                    );
                    let _ = hyper::server::conn::http2::Builder::new(
                        hyper_util::rt::TokioExecutor::new(),
                    )
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
                });
            }
        });
        port
    }

    #[tokio::test]
    async fn grpc_probe_speaks_the_health_protocol() {
        let port = grpc_server().await;
        let t = Duration::from_secs(5);
        assert_eq!(grpc_probe("127.0.0.1", port, "", t).await, Outcome::Success);
        assert_eq!(
            grpc_probe("127.0.0.1", port, "down", t).await,
            Outcome::Failure("service unhealthy (responded with \"NOT_SERVING\")".into())
        );
        assert_eq!(
            grpc_probe("127.0.0.1", port, "unimplemented", t).await,
            Outcome::Failure(
                "error: this server does not implement the grpc health protocol (grpc.health.v1.Health): unknown service grpc.health.v1.Health"
                    .into()
            )
        );
        let closed = {
            let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            l.local_addr().expect("addr").port()
        };
        match grpc_probe("127.0.0.1", closed, "", t).await {
            Outcome::Failure(m) => assert!(
                m.starts_with(&format!(
                    "error: failed to connect service at \"127.0.0.1:{closed}\""
                )),
                "{m}"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn initial_status_without_probes_is_started_and_ready() {
        let plain = Container::default();
        assert!(ProbeStatus::initial(&plain).is_ready());
        let gated = Container {
            startup_probe: Some(Probe::default()),
            ..Default::default()
        };
        let s = ProbeStatus::initial(&gated);
        assert!(!s.started && !s.is_ready());
        let with_readiness = Container {
            readiness_probe: Some(Probe::default()),
            ..Default::default()
        };
        let s = ProbeStatus::initial(&with_readiness);
        assert!(s.started && !s.is_ready());
    }
}
