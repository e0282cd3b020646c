//! Pod workers: one task per pod, level-triggered. Each sync compares the pod's spec with
//! what the runtime reports (read back through the CRI labels, so nothing is lost across
//! agent restarts) and fixes the difference: a ready sandbox, init containers in order,
//! then the containers, restarted per `restartPolicy` with CrashLoopBackOff (10 s doubling
//! to 5 min, reset after 10 min of running). The status is written through `pods/status`
//! when it changes.
//!
//! Graceful termination: when the pod has a deletionTimestamp, every container is stopped
//! with the pod's deletion grace period (SIGTERM, SIGKILL after the grace), the sandbox is
//! stopped, the final status written, and the agent then deletes the pod with grace 0 as
//! the kubelet does. A pod gone from the API has its runtime objects removed.
//!
//! Probes and hooks: the worker owns the pod's probe workers (`prober::PodProbes`),
//! started for each container instance that runs and stopped when it exits or the pod
//! goes. A liveness or startup probe that failed makes the sync kill that instance
//! (`Killing`: "Container main failed liveness probe, will be restarted"), after which
//! the restart policy applies as for any exit. preStop hooks run in the kill (see
//! `container::kill`), postStart hooks in `container::start`.
//!
//! A worker wakes on a new version of its pod (from the pod watch), on a runtime event for
//! one of its containers (see `pleg`), on a change of a probe result, or when a back-off
//! it waits for expires.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use controllers::controller_utils::EventRecorder;
use cri::v1 as c;
use cri::{CallExt, CriClient};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::EventType;
use kube::Client;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;

use crate::kuberuntime::{self, PodRuntime};
use crate::prober::{PodProbes, ProbeKind};
use crate::status::{StatusInputs, Waiting};
use crate::AgentConfig;

const BACKOFF_INITIAL: Duration = Duration::from_secs(10);
const BACKOFF_MAX: Duration = Duration::from_secs(300);
const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);
/// Periodic resync of a pod with nothing else happening (configMap/secret volume updates).
const RESYNC: Duration = Duration::from_secs(60);

/// What every worker shares.
pub struct Ctx {
    pub client: Client,
    pub cri: CriClient,
    pub config: AgentConfig,
    pub recorder: EventRecorder,
    pub machine_memory: i64,
    /// Container and sandbox IDs → pod UID, for routing runtime events.
    pub owners: parking_lot::Mutex<HashMap<String, String>>,
    /// Previous cpu readings, for the usage rates of `/stats/summary`.
    pub cpu_history: crate::stats::CpuHistory,
}

impl Ctx {
    pub async fn normal(&self, r: &ObjectReference, reason: &str, msg: String) {
        self.recorder
            .publish(r, EventType::Normal, reason, reason, msg)
            .await;
    }
    pub async fn warn(&self, r: &ObjectReference, reason: &str, msg: String) {
        self.recorder
            .publish(r, EventType::Warning, reason, reason, msg)
            .await;
    }
    fn agent_dir(&self) -> PathBuf {
        self.config.data_dir.join("agent")
    }
}

/// A reference to the pod (or one of its containers, via fieldPath) for Events.
pub fn object_ref(pod: &Pod, container: Option<&str>, init: bool) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        name: pod.metadata.name.clone(),
        namespace: pod.metadata.namespace.clone(),
        uid: pod.metadata.uid.clone(),
        resource_version: pod.metadata.resource_version.clone(),
        field_path: container.map(|c| {
            if init {
                format!("spec.initContainers{{{c}}}")
            } else {
                format!("spec.containers{{{c}}}")
            }
        }),
    }
}

/// The handle the pod watch and the event stream use to reach one worker.
pub struct WorkerHandle {
    pub pod: watch::Sender<Option<Arc<Pod>>>,
    pub wake: Arc<Notify>,
    pub done: CancellationToken,
}

/// All pod workers.
#[derive(Default)]
pub struct PodWorkers {
    workers: parking_lot::Mutex<HashMap<String, WorkerHandle>>,
}

impl PodWorkers {
    /// Delivers the latest version of a pod (`None`: gone from the API), starting a worker
    /// if there is none.
    pub fn update(
        self: &Arc<Self>,
        ctx: &Arc<Ctx>,
        uid: &str,
        pod: Option<Arc<Pod>>,
        cancel: &CancellationToken,
    ) {
        let mut workers = self.workers.lock();
        if let Some(h) = workers.get(uid) {
            if !h.done.is_cancelled() {
                let _ = h.pod.send(pod);
                return;
            }
        }
        let (tx, rx) = watch::channel(pod);
        let wake = Arc::new(Notify::new());
        let done = CancellationToken::new();
        workers.insert(
            uid.to_string(),
            WorkerHandle {
                pod: tx,
                wake: wake.clone(),
                done: done.clone(),
            },
        );
        let ctx = ctx.clone();
        let uid = uid.to_string();
        let cancel = cancel.clone();
        let me = self.clone();
        tokio::spawn(async move {
            run_worker(ctx, uid.clone(), rx, wake, cancel).await;
            done.cancel();
            let mut workers = me.workers.lock();
            if workers.get(&uid).is_some_and(|h| h.done.is_cancelled()) {
                workers.remove(&uid);
            }
        });
    }

    /// Wakes the worker of `uid` (a runtime event concerns it).
    pub fn wake(&self, uid: &str) {
        if let Some(h) = self.workers.lock().get(uid) {
            h.wake.notify_one();
        }
    }

    pub fn uids(&self) -> Vec<String> {
        self.workers.lock().keys().cloned().collect()
    }

    /// Wakes the workers whose current pod matches; returns how many.
    pub fn wake_matching(&self, matches: impl Fn(&Pod) -> bool) -> usize {
        let workers = self.workers.lock();
        let mut n = 0;
        for h in workers.values() {
            if h.pod.borrow().as_deref().is_some_and(&matches) {
                h.wake.notify_one();
                n += 1;
            }
        }
        n
    }
}

struct WorkerState {
    /// Per container: current back-off and when the container may start again.
    backoff: HashMap<String, (Duration, Instant)>,
    waiting: HashMap<String, Waiting>,
    last_status: Option<serde_json::Value>,
    start_time: Option<Time>,
    finalized: bool,
    probes: PodProbes,
    /// Container instances killed because a probe failed: restarted whatever their exit code.
    probe_killed: HashSet<String>,
}

async fn run_worker(
    ctx: Arc<Ctx>,
    uid: String,
    pod_rx: watch::Receiver<Option<Arc<Pod>>>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
) {
    let mut state = WorkerState {
        backoff: HashMap::new(),
        waiting: HashMap::new(),
        last_status: None,
        start_time: None,
        finalized: false,
        probes: PodProbes::new(wake.clone(), &cancel),
        probe_killed: HashSet::new(),
    };
    worker_loop(&ctx, &uid, pod_rx, &wake, &cancel, &mut state).await;
    state.probes.shutdown().await;
}

async fn worker_loop(
    ctx: &Arc<Ctx>,
    uid: &str,
    mut pod_rx: watch::Receiver<Option<Arc<Pod>>>,
    wake: &Notify,
    cancel: &CancellationToken,
    state: &mut WorkerState,
) {
    loop {
        let pod = pod_rx.borrow_and_update().clone();
        let span = tracing::debug_span!("sync_pod", uid = %uid);
        let _g = span.enter();
        drop(_g);
        let next = match pod {
            Some(p) => match sync_pod(ctx, &p, state).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(pod = %pod_key(&p), error = %e, "sync failed; retrying");
                    Some(Duration::from_secs(2))
                }
            },
            None => {
                state.probes.stop_all();
                match remove_pod(ctx, uid).await {
                    Ok(()) => {
                        tracing::info!(%uid, "pod removed from the runtime");
                        return;
                    }
                    Err(e) => {
                        tracing::warn!(%uid, error = %e, "cleaning up a deleted pod failed; retrying");
                        Some(Duration::from_secs(2))
                    }
                }
            }
        };
        let sleep = next.unwrap_or(RESYNC);
        tokio::select! {
            _ = cancel.cancelled() => return,
            r = pod_rx.changed() => if r.is_err() { return },
            _ = wake.notified() => {}
            _ = tokio::time::sleep(sleep) => {}
        }
    }
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn log_dir(ctx: &Ctx, pod: &Pod) -> PathBuf {
    ctx.agent_dir().join("logs").join("pods").join(format!(
        "{}_{}_{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or(""),
        pod.metadata.uid.as_deref().unwrap_or("")
    ))
}

/// DNS for the sandbox: the cluster DNS for ClusterFirst when one is configured, else the
/// host's resolver settings.
fn dns_config(ctx: &Ctx, pod: &Pod) -> Option<c::DnsConfig> {
    let spec = pod.spec.as_ref()?;
    let policy = spec
        .dns_policy
        .clone()
        .unwrap_or_else(|| "ClusterFirst".into());
    let host_net = spec.host_network.unwrap_or(false);
    let mut cfg = c::DnsConfig::default();
    // ClusterFirst on the host network falls back to the host's resolver, as upstream.
    let cluster_first =
        (policy == "ClusterFirst" && !host_net) || policy == "ClusterFirstWithHostNet";
    match (&ctx.config.cluster_dns, cluster_first) {
        (Some(dns), true) => {
            let ns = pod.metadata.namespace.clone().unwrap_or_default();
            let d = &ctx.config.cluster_domain;
            cfg.servers = vec![dns.to_string()];
            cfg.searches = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
            cfg.options = vec!["ndots:5".into()];
        }
        _ if policy == "None" => {}
        _ => {
            let text = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            for line in text.lines() {
                let mut words = line.split_whitespace();
                match words.next() {
                    Some("nameserver") => cfg.servers.extend(words.next().map(str::to_string)),
                    Some("search") => cfg.searches.extend(words.map(str::to_string)),
                    Some("options") => cfg.options.extend(words.map(str::to_string)),
                    _ => {}
                }
            }
        }
    }
    if let Some(pc) = &spec.dns_config {
        cfg.servers
            .extend(pc.nameservers.clone().unwrap_or_default());
        cfg.searches.extend(pc.searches.clone().unwrap_or_default());
        for o in pc.options.iter().flatten() {
            if let Some(n) = &o.name {
                cfg.options.push(match &o.value {
                    Some(v) => format!("{n}:{v}"),
                    None => n.clone(),
                });
            }
        }
    }
    Some(cfg)
}

fn grace_seconds(pod: &Pod) -> i64 {
    pod.metadata
        .deletion_grace_period_seconds
        .or_else(|| {
            pod.spec
                .as_ref()
                .and_then(|s| s.termination_grace_period_seconds)
        })
        .unwrap_or(30)
        .max(0)
}

fn remember(ctx: &Ctx, uid: &str, rt: &PodRuntime) {
    let mut owners = ctx.owners.lock();
    for s in &rt.sandboxes {
        owners.insert(s.id.clone(), uid.to_string());
    }
    for c in &rt.containers {
        owners.insert(c.id.clone(), uid.to_string());
    }
}

/// One sync of a pod; returns when it wants to run again without another trigger.
async fn sync_pod(
    ctx: &Arc<Ctx>,
    pod: &Pod,
    st: &mut WorkerState,
) -> anyhow::Result<Option<Duration>> {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let mut cri = ctx.cri.clone();
    let mut rt = kuberuntime::pod_runtime(&mut cri, &uid).await?;
    remember(ctx, &uid, &rt);
    if st.start_time.is_none() {
        st.start_time = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    }

    if pod.metadata.deletion_timestamp.is_some() {
        // No liveness kills while the pod terminates.
        st.probes.stop_all();
        if !st.finalized {
            kill_pod(ctx, pod, &rt, grace_seconds(pod)).await?;
            let rt = kuberuntime::pod_runtime(&mut cri, &uid).await?;
            st.waiting.clear();
            write_status(ctx, pod, &rt, st, true).await?;
            let api: Api<Pod> = Api::namespaced(
                ctx.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..Default::default()
            };
            match api
                .delete(pod.metadata.name.as_deref().unwrap_or(""), &dp)
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
            st.finalized = true;
            tracing::info!(pod = %pod_key(pod), "pod terminated and deleted");
        }
        return Ok(None);
    }

    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase == "Succeeded" || phase == "Failed" {
        // Terminal: stop whatever still runs and free the sandbox's network.
        st.probes.stop_all();
        let running: Vec<_> = rt
            .containers
            .iter()
            .filter(|c| c.running())
            .cloned()
            .collect();
        for ctr in running {
            let _ = cri
                .runtime
                .stop_container(c::StopContainerRequest {
                    container_id: ctr.id.clone(),
                    timeout: grace_seconds(pod),
                })
                .await;
        }
        for s in rt.sandboxes.iter().filter(|s| s.ready) {
            let _ = cri
                .runtime
                .stop_pod_sandbox(c::StopPodSandboxRequest {
                    pod_sandbox_id: s.id.clone(),
                })
                .await;
        }
        return Ok(None);
    }

    let spec = pod.spec.clone().unwrap_or_default();
    let restart_policy = spec
        .restart_policy
        .clone()
        .unwrap_or_else(|| "Always".into());
    let agent_dir = ctx.agent_dir();

    // Volumes first: a missing configMap keeps the pod from starting.
    let volumes = match crate::volumes::setup(&ctx.client, &agent_dir, pod).await {
        Ok(v) => v,
        Err(e) => {
            let r = object_ref(pod, None, false);
            ctx.warn(&r, "FailedMount", format!("MountVolume.SetUp failed: {e}"))
                .await;
            write_status(ctx, pod, &rt, st, false).await?;
            return Ok(Some(Duration::from_secs(5)));
        }
    };

    // The sandbox: reuse a ready one, else (re)create it.
    let sandbox_attempt = rt.sandboxes.first().map(|s| s.attempt + 1).unwrap_or(0);
    let dns = dns_config(ctx, pod);
    let logs = log_dir(ctx, pod);
    let sandbox = match rt.ready_sandbox().cloned() {
        Some(s) => s,
        None => {
            // Nothing runs without a sandbox: nothing to probe.
            st.probes.stop_all();
            let had_sandbox = !rt.sandboxes.is_empty();
            // All containers ran in the dead sandbox: a pod whose containers all
            // finished and that won't restart needs no new sandbox.
            if had_sandbox {
                let all_done = spec.containers.iter().all(|ctr| {
                    rt.latest(&ctr.name).is_some_and(|c| {
                        c.exited()
                            && (restart_policy == "Never"
                                || (restart_policy == "OnFailure" && c.exit_code == 0))
                    })
                });
                if all_done {
                    write_status(ctx, pod, &rt, st, false).await?;
                    return Ok(None);
                }
                let r = object_ref(pod, None, false);
                ctx.normal(
                    &r,
                    "SandboxChanged",
                    "Pod sandbox changed, it will be killed and re-created.".into(),
                )
                .await;
                for ctr in rt.containers.iter().filter(|c| c.running()) {
                    let _ = cri
                        .runtime
                        .stop_container(c::StopContainerRequest {
                            container_id: ctr.id.clone(),
                            timeout: 0,
                        })
                        .await;
                }
                for s in &rt.sandboxes {
                    let _ = cri
                        .runtime
                        .stop_pod_sandbox(c::StopPodSandboxRequest {
                            pod_sandbox_id: s.id.clone(),
                        })
                        .await;
                }
            }
            std::fs::create_dir_all(&logs)?;
            let cfg = kuberuntime::sandbox_config(
                pod,
                sandbox_attempt,
                &logs.display().to_string(),
                dns.clone(),
            );
            let res = cri
                .runtime
                .run_pod_sandbox(c::RunPodSandboxRequest {
                    config: Some(cfg),
                    runtime_handler: String::new(),
                })
                .await
                .call("RunPodSandbox");
            if let Err(e) = res {
                let msg = e
                    .status()
                    .map(|s| s.message().to_string())
                    .unwrap_or_else(|| e.to_string());
                let r = object_ref(pod, None, false);
                ctx.warn(
                    &r,
                    "FailedCreatePodSandBox",
                    format!("Failed to create pod sandbox: {msg}"),
                )
                .await;
                write_status(ctx, pod, &rt, st, false).await?;
                return Ok(Some(Duration::from_secs(5)));
            }
            rt = kuberuntime::pod_runtime(&mut cri, &uid).await?;
            remember(ctx, &uid, &rt);
            match rt.ready_sandbox().cloned() {
                Some(s) => s,
                None => return Ok(Some(Duration::from_secs(1))),
            }
        }
    };
    let sandbox_cfg =
        kuberuntime::sandbox_config(pod, sandbox.attempt, &logs.display().to_string(), dns);
    let etc_hosts = if kuberuntime::host_network(pod) {
        None
    } else {
        Some(crate::volumes::write_etc_hosts(
            &agent_dir,
            pod,
            sandbox.ip.as_deref(),
        )?)
    };
    let pod_ip = crate::prober::pod_ip(ctx, pod, Some(&sandbox));
    // Containers of older sandboxes count for restarts but are not "current".
    let current: PodRuntime = PodRuntime {
        sandboxes: rt.sandboxes.clone(),
        containers: rt.containers.clone(),
    };

    let mut next: Option<Duration> = None;
    let mut changed = false;
    let now = Instant::now();

    // Init containers, in order; each must exit 0 before the next starts.
    let mut init_blocked = false;
    for ctr in spec.init_containers.iter().flatten() {
        let latest = current
            .latest(&ctr.name)
            .filter(|c| c.sandbox_id == sandbox.id)
            .cloned();
        match latest {
            Some(c) if c.exited() && c.exit_code == 0 => {
                st.waiting.remove(&ctr.name);
                continue;
            }
            Some(c) if c.running() || c.state == c::ContainerState::ContainerCreated => {
                init_blocked = true;
                break;
            }
            Some(c) => {
                // Failed init container.
                if restart_policy == "Never" {
                    init_blocked = true;
                    break;
                }
                match start_with_backoff(
                    ctx,
                    pod,
                    ctr,
                    true,
                    &sandbox.id,
                    &sandbox_cfg,
                    c.restart_count + 1,
                    Some(&c),
                    &volumes,
                    etc_hosts.as_deref(),
                    pod_ip.as_deref(),
                    st,
                    now,
                )
                .await
                {
                    Some(d) => next = min_opt(next, d),
                    None => changed = true,
                }
                init_blocked = true;
                break;
            }
            None => {
                let restarts = current
                    .latest(&ctr.name)
                    .map(|c| c.restart_count + 1)
                    .unwrap_or(0);
                match start_with_backoff(
                    ctx,
                    pod,
                    ctr,
                    true,
                    &sandbox.id,
                    &sandbox_cfg,
                    restarts,
                    None,
                    &volumes,
                    etc_hosts.as_deref(),
                    pod_ip.as_deref(),
                    st,
                    now,
                )
                .await
                {
                    Some(d) => next = min_opt(next, d),
                    None => changed = true,
                }
                init_blocked = true;
                break;
            }
        }
    }

    if !init_blocked {
        for ctr in &spec.containers {
            let latest = current.latest(&ctr.name).cloned();
            let in_sandbox = latest.as_ref().filter(|c| c.sandbox_id == sandbox.id);
            match in_sandbox {
                Some(c) if c.running() => {
                    if let Some(kind) = st.probes.status(&c.id).and_then(|p| p.failed) {
                        kill_for_probe(ctx, pod, ctr, c, kind, pod_ip.as_deref(), &restart_policy)
                            .await;
                        st.probe_killed.insert(c.id.clone());
                        changed = true;
                        // Restart it (or report it) in the next sync, at once.
                        next = min_opt(next, Duration::ZERO);
                        continue;
                    }
                    st.waiting.remove(&ctr.name);
                    // Reset the back-off after a long enough run.
                    if let Some((_, _)) = st.backoff.get(&ctr.name) {
                        let started = c.started_at / 1_000_000_000;
                        let now_s = k8s_openapi::jiff::Timestamp::now().as_second();
                        if now_s - started > BACKOFF_RESET_AFTER.as_secs() as i64 {
                            st.backoff.remove(&ctr.name);
                        }
                    }
                }
                Some(c) if c.state == c::ContainerState::ContainerCreated => {
                    // Created but never started (agent crashed in between): start it.
                    let _ = cri
                        .runtime
                        .start_container(c::StartContainerRequest {
                            container_id: c.id.clone(),
                        })
                        .await;
                    changed = true;
                }
                Some(c) => {
                    let restart = match restart_policy.as_str() {
                        "Always" => true,
                        "OnFailure" => c.exit_code != 0 || st.probe_killed.contains(&c.id),
                        _ => false,
                    };
                    if !restart {
                        st.waiting.remove(&ctr.name);
                        continue;
                    }
                    let c = c.clone();
                    match start_with_backoff(
                        ctx,
                        pod,
                        ctr,
                        false,
                        &sandbox.id,
                        &sandbox_cfg,
                        c.restart_count + 1,
                        Some(&c),
                        &volumes,
                        etc_hosts.as_deref(),
                        pod_ip.as_deref(),
                        st,
                        now,
                    )
                    .await
                    {
                        Some(d) => next = min_opt(next, d),
                        None => changed = true,
                    }
                }
                None => {
                    let restarts = latest.as_ref().map(|c| c.restart_count + 1).unwrap_or(0);
                    match start_with_backoff(
                        ctx,
                        pod,
                        ctr,
                        false,
                        &sandbox.id,
                        &sandbox_cfg,
                        restarts,
                        None,
                        &volumes,
                        etc_hosts.as_deref(),
                        pod_ip.as_deref(),
                        st,
                        now,
                    )
                    .await
                    {
                        Some(d) => next = min_opt(next, d),
                        None => changed = true,
                    }
                }
            }
        }
    }

    if changed {
        rt = kuberuntime::pod_runtime(&mut cri, &uid).await?;
        remember(ctx, &uid, &rt);
        prune_dead(&mut cri, &rt).await;
    }
    st.probes.sync(ctx, pod, &rt, rt.ready_sandbox());
    let live: HashSet<&str> = rt.containers.iter().map(|c| c.id.as_str()).collect();
    st.probe_killed.retain(|id| live.contains(id.as_str()));
    write_status(ctx, pod, &rt, st, false).await?;
    Ok(next)
}

/// Kills a running container whose liveness or startup probe failed (upstream's
/// computePodActions → killContainer); the restart policy then applies.
async fn kill_for_probe(
    ctx: &Ctx,
    pod: &Pod,
    ctr: &k8s_openapi::api::core::v1::Container,
    info: &kuberuntime::ContainerInfo,
    kind: ProbeKind,
    pod_ip: Option<&str>,
    restart_policy: &str,
) {
    let what = match kind {
        ProbeKind::Startup => "startup",
        _ => "liveness",
    };
    let mut message = format!("Container {} failed {what} probe", ctr.name);
    if restart_policy != "Never" {
        message.push_str(", will be restarted");
    }
    // A probe's own terminationGracePeriodSeconds wins over the pod's.
    let grace = kind
        .of(ctr)
        .and_then(|p| p.termination_grace_period_seconds)
        .unwrap_or_else(|| crate::container::spec_grace(pod));
    tracing::info!(pod = %pod_key(pod), container = %ctr.name, probe = what, "probe failed; killing the container");
    let k = crate::container::Kill {
        container: ctr,
        init: false,
        container_id: &info.id,
        pod_ip,
        grace,
        message,
    };
    if let Err(e) = crate::container::kill(ctx, pod, k).await {
        if !e.is_not_found() {
            tracing::warn!(pod = %pod_key(pod), container = %ctr.name, error = %e, "killing the container failed");
        }
    }
}

fn min_opt(a: Option<Duration>, b: Duration) -> Option<Duration> {
    Some(a.map_or(b, |a| a.min(b)))
}

/// Starts a container unless it is in back-off; returns how long to wait if it was not
/// started (back-off or error), `None` if it was started.
#[allow(clippy::too_many_arguments)]
async fn start_with_backoff(
    ctx: &Arc<Ctx>,
    pod: &Pod,
    ctr: &k8s_openapi::api::core::v1::Container,
    init: bool,
    sandbox_id: &str,
    sandbox_cfg: &c::PodSandboxConfig,
    restart_count: i32,
    previous: Option<&kuberuntime::ContainerInfo>,
    volumes: &crate::volumes::VolumePaths,
    etc_hosts: Option<&std::path::Path>,
    pod_ip: Option<&str>,
    st: &mut WorkerState,
    now: Instant,
) -> Option<Duration> {
    if let Some(prev) = previous {
        // A restart after an exit: subject to CrashLoopBackOff.
        if let Some((delay, until)) = st.backoff.get(&ctr.name).cloned() {
            if now < until {
                let msg = format!(
                    "back-off {} restarting failed container={} pod={}_{}({})",
                    humanize(delay),
                    ctr.name,
                    pod.metadata.name.as_deref().unwrap_or(""),
                    pod.metadata.namespace.as_deref().unwrap_or(""),
                    pod.metadata.uid.as_deref().unwrap_or("")
                );
                if st.waiting.get(&ctr.name).map(|w| w.reason.as_str()) != Some("CrashLoopBackOff")
                {
                    let r = object_ref(pod, Some(&ctr.name), init);
                    ctx.warn(
                        &r,
                        "BackOff",
                        format!(
                            "Back-off restarting failed container {} in pod {}",
                            ctr.name,
                            pod_key(pod).replace('/', "_")
                        ),
                    )
                    .await;
                }
                st.waiting.insert(
                    ctr.name.clone(),
                    Waiting {
                        reason: "CrashLoopBackOff".into(),
                        message: msg,
                    },
                );
                return Some(until - now);
            }
        }
        let _ = prev;
    }
    let res = crate::container::start(
        ctx,
        crate::container::StartRequest {
            pod,
            container: ctr,
            init,
            sandbox_id,
            sandbox_config: sandbox_cfg,
            restart_count,
            volumes,
            etc_hosts,
            pod_ip,
        },
    )
    .await;
    match res {
        Ok(_) => {
            st.waiting.remove(&ctr.name);
            if previous.is_some() {
                let delay = st
                    .backoff
                    .get(&ctr.name)
                    .map(|(d, _)| (*d * 2).min(BACKOFF_MAX))
                    .unwrap_or(BACKOFF_INITIAL);
                st.backoff
                    .insert(ctr.name.clone(), (delay, Instant::now() + delay));
            }
            None
        }
        Err(e) => {
            let (delay, _) = st
                .backoff
                .get(&ctr.name)
                .cloned()
                .unwrap_or((BACKOFF_INITIAL / 2, now));
            let delay = (delay * 2).min(BACKOFF_MAX);
            st.backoff
                .insert(ctr.name.clone(), (delay, Instant::now() + delay));
            let reason = if e.reason == "ErrImagePull"
                && st
                    .waiting
                    .get(&ctr.name)
                    .is_some_and(|w| w.reason == "ErrImagePull" || w.reason == "ImagePullBackOff")
            {
                "ImagePullBackOff"
            } else {
                e.reason
            };
            st.waiting.insert(
                ctr.name.clone(),
                Waiting {
                    reason: reason.into(),
                    message: e.message,
                },
            );
            Some(delay)
        }
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 60 && s % 60 == 0 {
        format!("{}m0s", s / 60)
    } else if s >= 60 {
        format!("{}m{}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// Removes exited instances older than the latest two per container name.
async fn prune_dead(cri: &mut CriClient, rt: &PodRuntime) {
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for ctr in &rt.containers {
        let n = seen.entry(ctr.name.as_str()).or_default();
        *n += 1;
        if *n > 2 && ctr.exited() {
            let _ = cri
                .runtime
                .remove_container(c::RemoveContainerRequest {
                    container_id: ctr.id.clone(),
                })
                .await;
        }
    }
}

/// Stops every container (preStop hook, SIGTERM, SIGKILL once `grace` seconds are over)
/// and the sandbox.
async fn kill_pod(ctx: &Ctx, pod: &Pod, rt: &PodRuntime, grace: i64) -> anyhow::Result<()> {
    let spec = pod.spec.clone().unwrap_or_default();
    let pod_ip = crate::prober::pod_ip(ctx, pod, rt.ready_sandbox());
    let mut stops = Vec::new();
    for ctr in rt
        .containers
        .iter()
        .filter(|c| c.running() || c.state == c::ContainerState::ContainerCreated)
    {
        let init_spec = spec
            .init_containers
            .iter()
            .flatten()
            .find(|i| i.name == ctr.name);
        let mut ctr_spec = spec
            .containers
            .iter()
            .find(|c| c.name == ctr.name)
            .or(init_spec)
            .cloned()
            .unwrap_or_else(|| {
                // Not in the spec (cannot happen for a pod's own containers): no hooks.
                k8s_openapi::api::core::v1::Container {
                    name: ctr.name.clone(),
                    ..Default::default()
                }
            });
        if !ctr.running() {
            // Created, never started: nothing for a preStop hook to run in.
            ctr_spec.lifecycle = None;
        }
        let init = init_spec.is_some();
        let id = ctr.id.clone();
        let pod_ip = pod_ip.clone();
        stops.push(async move {
            let k = crate::container::Kill {
                container: &ctr_spec,
                init,
                container_id: &id,
                pod_ip: pod_ip.as_deref(),
                grace,
                message: format!("Stopping container {}", ctr_spec.name),
            };
            crate::container::kill(ctx, pod, k).await
        });
    }
    for r in futures::future::join_all(stops).await {
        if let Err(e) = r {
            if !e.is_not_found() {
                return Err(e.into());
            }
        }
    }
    let mut cri = ctx.cri.clone();
    for s in &rt.sandboxes {
        if let Err(e) = cri
            .runtime
            .stop_pod_sandbox(c::StopPodSandboxRequest {
                pod_sandbox_id: s.id.clone(),
            })
            .await
            .call("StopPodSandbox")
        {
            if !e.is_not_found() {
                return Err(e.into());
            }
        }
    }
    Ok(())
}

/// Removes everything the runtime has for a pod that is gone from the API.
async fn remove_pod(ctx: &Ctx, uid: &str) -> anyhow::Result<()> {
    let mut cri = ctx.cri.clone();
    let rt = kuberuntime::pod_runtime(&mut cri, uid).await?;
    for ctr in rt.containers.iter().filter(|c| c.running()) {
        let grace = 2;
        let _ = cri
            .runtime
            .stop_container(c::StopContainerRequest {
                container_id: ctr.id.clone(),
                timeout: grace,
            })
            .await;
    }
    for s in &rt.sandboxes {
        let _ = cri
            .runtime
            .stop_pod_sandbox(c::StopPodSandboxRequest {
                pod_sandbox_id: s.id.clone(),
            })
            .await;
        if let Err(e) = cri
            .runtime
            .remove_pod_sandbox(c::RemovePodSandboxRequest {
                pod_sandbox_id: s.id.clone(),
            })
            .await
            .call("RemovePodSandbox")
        {
            if !e.is_not_found() {
                return Err(e.into());
            }
        }
    }
    {
        let mut owners = ctx.owners.lock();
        owners.retain(|_, v| v != uid);
    }
    crate::volumes::forget_tokens(uid);
    let dir = crate::volumes::pod_dir(&ctx.agent_dir(), uid);
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

async fn write_status(
    ctx: &Ctx,
    pod: &Pod,
    rt: &PodRuntime,
    st: &mut WorkerState,
    terminated: bool,
) -> anyhow::Result<()> {
    let node_ip = ctx.config.node_ip.to_string();
    let probes = st.probes.snapshot();
    let status = crate::status::compute(
        pod,
        rt,
        &StatusInputs {
            node_ip: &node_ip,
            waiting: &st.waiting,
            start_time: st.start_time.clone(),
            terminated,
            probes: &probes,
        },
    );
    let value = serde_json::to_value(&status)?;
    // Compare without timestamps that change on every computation.
    let current = pod.status.as_ref().map(serde_json::to_value).transpose()?;
    if st.last_status.as_ref() == Some(&value) && current.as_ref() == Some(&value) {
        return Ok(());
    }
    if current.as_ref() == Some(&value) {
        st.last_status = Some(value);
        return Ok(());
    }
    let api: Api<Pod> = Api::namespaced(
        ctx.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let patch = serde_json::json!({"metadata": {"uid": pod.metadata.uid}, "status": value});
    match api
        .patch_status(
            pod.metadata.name.as_deref().unwrap_or(""),
            &PatchParams::default(),
            &Patch::Merge(&patch),
        )
        .await
    {
        Ok(_) => {
            st.last_status = Some(value);
            Ok(())
        }
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(()),
        Err(e) => Err(e.into()),
    }
}
