//! The pod provider: what a kubelet does for pods bound to its node, minus containers.
//!
//! One watch on pods with `spec.nodeName!=` (a field selector cannot name a set of
//! nodes), filtered to ours. The watch loop alone does IP bookkeeping (assign on first
//! sight, adopt what a pod's status already says after a restart, free on deletion or a
//! terminal phase, and drop what a relist no longer shows), so allocation never races;
//! the work queue then runs `sync` on a bounded number of workers:
//!
//! - a pod not yet Running gets a Running status through `pods/status` (strategic merge,
//!   UID in the patch as a precondition): conditions, podIP, hostIP, startTime and
//!   running, ready container statuses. Ready follows readiness gates; probes are not
//!   simulated.
//! - a pod with `deletionTimestamp` is finished at once (virtual containers stop
//!   immediately): deleted with grace 0 and a UID precondition. A pod with finalizers
//!   is first given a terminal status (Failed, exit 137), as the kubelet does, so
//!   whoever holds the finalizer sees how it ended.
//! - a pod annotated [`EXIT_CODE_ANNOTATION`] terminates [`RUN_SECONDS_ANNOTATION`]
//!   seconds after it started: Succeeded for 0 unless `restartPolicy: Always`, Failed
//!   otherwise (restarts are not simulated); containers terminated Completed / Error.

use std::collections::{BTreeMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Container, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::runtime::events::{Event, EventType};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Resource};
use parking_lot::Mutex;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::queue::WorkQueue;
use crate::{api_code, NodeState, Shared};

/// Exit code the pod's containers terminate with.
pub const EXIT_CODE_ANNOTATION: &str = "virtual-kubelet.rkube.io/exit-code";
/// Seconds the containers run before they exit (default 0).
pub const RUN_SECONDS_ANNOTATION: &str = "virtual-kubelet.rkube.io/run-seconds";
/// Exit code of a container killed because its pod was deleted.
const KILLED_EXIT_CODE: i32 = 137;
const RETRY_ON_GET: Duration = Duration::from_secs(1);

/// When and how a pod's containers finish on demand.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exit {
    pub code: i32,
    pub after: Duration,
}

/// Reads the exit annotations; `Err` names a malformed one.
pub fn exit_on_demand(pod: &Pod) -> Result<Option<Exit>, String> {
    let annotations = pod.metadata.annotations.as_ref();
    let get = |k: &str| {
        annotations
            .and_then(|a| a.get(k))
            .map(|v| v.trim().to_string())
    };
    let Some(code) = get(EXIT_CODE_ANNOTATION) else {
        return Ok(None);
    };
    let code = code
        .parse::<i32>()
        .map_err(|_| format!("{EXIT_CODE_ANNOTATION}: {code:?} is not an integer"))?;
    let after = match get(RUN_SECONDS_ANNOTATION) {
        None => Duration::ZERO,
        Some(s) => s
            .parse::<f64>()
            .ok()
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(Duration::from_secs_f64)
            .ok_or_else(|| {
                format!("{RUN_SECONDS_ANNOTATION}: {s:?} is not a non-negative number")
            })?,
    };
    Ok(Some(Exit { code, after }))
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

fn is_terminal(pod: &Pod) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

fn restart_policy(pod: &Pod) -> &str {
    pod.spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always")
}

fn uid(pod: &Pod) -> &str {
    pod.metadata.uid.as_deref().unwrap_or("")
}

fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

fn containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .map(|s| s.containers.as_slice())
        .unwrap_or(&[])
}

fn init_containers(pod: &Pod) -> &[Container] {
    pod.spec
        .as_ref()
        .and_then(|s| s.init_containers.as_deref())
        .unwrap_or(&[])
}

/// Init containers with `restartPolicy: Always` keep running next to the main ones.
fn is_sidecar(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn start_time(pod: &Pod) -> Option<Timestamp> {
    pod.status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map(|t| t.0)
}

/// Whether a deleting pod still needs something from us.
fn deletion_pending(pod: &Pod) -> bool {
    let has_finalizers = pod
        .metadata
        .finalizers
        .as_ref()
        .is_some_and(|f| !f.is_empty());
    // With finalizers the pod outlives our delete; once it is terminal and asked to go
    // with grace 0, the rest is up to the finalizers' owners.
    !(has_finalizers && is_terminal(pod) && pod.metadata.deletion_grace_period_seconds == Some(0))
}

/// What the Ready condition should say: readiness gates must all be True.
fn readiness(pod: &Pod) -> (bool, Option<String>) {
    let gates = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_deref())
        .unwrap_or(&[]);
    let conditions = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .unwrap_or(&[]);
    for gate in gates {
        match conditions.iter().find(|c| c.type_ == gate.condition_type) {
            None => {
                return (
                    false,
                    Some(format!(
                        "corresponding condition of pod readiness gate {:?} does not exist.",
                        gate.condition_type
                    )),
                )
            }
            Some(c) if c.status != "True" => {
                return (
                    false,
                    Some(format!(
                        "the status of pod readiness gate {:?} is not \"True\", but {}",
                        gate.condition_type, c.status
                    )),
                )
            }
            Some(_) => {}
        }
    }
    (true, None)
}

/// Whether the pod already shows the Running status we would post.
pub fn running_as_desired(pod: &Pod, pod_ip: Ipv4Addr) -> bool {
    let Some(status) = pod.status.as_ref() else {
        return false;
    };
    let cond = |t: &str| {
        status
            .conditions
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| c.status.as_str())
    };
    let statuses = status.container_statuses.as_deref().unwrap_or(&[]);
    let init_statuses = status.init_container_statuses.as_deref().unwrap_or(&[]);
    let want_ready = if readiness(pod).0 { "True" } else { "False" };
    status.phase.as_deref() == Some("Running")
        && status.pod_ip.as_deref() == Some(pod_ip.to_string().as_str())
        && status.host_ip.is_some()
        && status.start_time.is_some()
        && statuses.len() == containers(pod).len()
        && statuses
            .iter()
            .all(|s| s.ready && s.state.as_ref().is_some_and(|st| st.running.is_some()))
        && init_statuses.len() == init_containers(pod).len()
        && cond("Ready") == Some(want_ready)
        && cond("ContainersReady") == Some("True")
}

/// A pod condition, keeping `lastTransitionTime` when the status did not change.
fn condition(
    pod: &Pod,
    type_: &str,
    ok: bool,
    reason: Option<&str>,
    message: Option<String>,
    now: Timestamp,
) -> PodCondition {
    let status = if ok { "True" } else { "False" };
    let since = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_deref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == type_ && c.status == status))
        .and_then(|c| c.last_transition_time.clone())
        .unwrap_or(Time(now));
    PodCondition {
        type_: type_.to_string(),
        status: status.to_string(),
        reason: reason.map(str::to_string),
        message,
        last_transition_time: Some(since),
        last_probe_time: None,
        observed_generation: None,
    }
}

fn container_id(pod: &Pod, c: &Container) -> String {
    format!("virtual://{}-{}", uid(pod), c.name)
}

fn image(c: &Container) -> String {
    c.image.clone().unwrap_or_default()
}

fn running_container(pod: &Pod, c: &Container, started: Timestamp) -> Value {
    json!({
        "name": c.name,
        "image": image(c),
        "imageID": format!("virtual://{}", image(c)),
        "containerID": container_id(pod, c),
        "ready": true,
        "started": true,
        "restartCount": 0,
        "state": {"running": {"startedAt": Time(started)}},
    })
}

fn terminated_container(
    pod: &Pod,
    c: &Container,
    code: i32,
    started: Timestamp,
    finished: Timestamp,
) -> Value {
    json!({
        "name": c.name,
        "image": image(c),
        "imageID": format!("virtual://{}", image(c)),
        "containerID": container_id(pod, c),
        "ready": false,
        "started": false,
        "restartCount": 0,
        "state": {"terminated": {
            "exitCode": code,
            "reason": if code == 0 { "Completed" } else { "Error" },
            "startedAt": Time(started),
            "finishedAt": Time(finished),
            "containerID": container_id(pod, c),
        }},
    })
}

fn ips(host_ip: Ipv4Addr, pod_ip: Ipv4Addr) -> Value {
    json!({
        "hostIP": host_ip.to_string(),
        "hostIPs": [{"ip": host_ip.to_string()}],
        "podIP": pod_ip.to_string(),
        "podIPs": [{"ip": pod_ip.to_string()}],
    })
}

fn patch_body(pod: &Pod, status: Value) -> Value {
    // The UID makes the patch fail on a same-named successor instead of writing its status.
    json!({"metadata": {"uid": uid(pod)}, "status": status})
}

/// The `pods/status` patch that makes `pod` Running and Ready.
pub fn running_patch(pod: &Pod, host_ip: Ipv4Addr, pod_ip: Ipv4Addr, now: Timestamp) -> Value {
    let started = start_time(pod).unwrap_or(now);
    let (ready, gate_message) = readiness(pod);
    let conditions = vec![
        condition(pod, "PodReadyToStartContainers", true, None, None, now),
        condition(pod, "Initialized", true, None, None, now),
        condition(
            pod,
            "Ready",
            ready,
            (!ready).then_some("ReadinessGatesNotReady"),
            gate_message,
            now,
        ),
        condition(pod, "ContainersReady", true, None, None, now),
        condition(pod, "PodScheduled", true, None, None, now),
    ];
    let mut status = ips(host_ip, pod_ip);
    status["phase"] = json!("Running");
    status["startTime"] = json!(Time(started));
    status["conditions"] = json!(conditions);
    status["containerStatuses"] = containers(pod)
        .iter()
        .map(|c| running_container(pod, c, started))
        .collect();
    let inits = init_containers(pod);
    if !inits.is_empty() {
        status["initContainerStatuses"] = inits
            .iter()
            .map(|c| {
                if is_sidecar(c) {
                    running_container(pod, c, started)
                } else {
                    terminated_container(pod, c, 0, started, started)
                }
            })
            .collect();
    }
    patch_body(pod, status)
}

/// The phase a pod ends in when its containers exit with `code`.
pub fn terminal_phase(restart_policy: &str, code: i32) -> &'static str {
    if code == 0 && restart_policy != "Always" {
        "Succeeded"
    } else {
        "Failed"
    }
}

/// The `pods/status` patch that ends `pod` with every container exiting `code`.
pub fn terminal_patch(
    pod: &Pod,
    host_ip: Ipv4Addr,
    pod_ip: Ipv4Addr,
    code: i32,
    now: Timestamp,
) -> Value {
    let started = start_time(pod).unwrap_or(now);
    let done = Some("PodCompleted");
    let conditions = vec![
        condition(pod, "PodReadyToStartContainers", false, None, None, now),
        condition(pod, "Initialized", true, done, None, now),
        condition(pod, "Ready", false, done, None, now),
        condition(pod, "ContainersReady", false, done, None, now),
        condition(pod, "PodScheduled", true, None, None, now),
    ];
    let mut status = ips(host_ip, pod_ip);
    status["phase"] = json!(terminal_phase(restart_policy(pod), code));
    status["startTime"] = json!(Time(started));
    status["conditions"] = json!(conditions);
    status["containerStatuses"] = containers(pod)
        .iter()
        .map(|c| terminated_container(pod, c, code, started, now))
        .collect();
    let inits = init_containers(pod);
    if !inits.is_empty() {
        status["initContainerStatuses"] = inits
            .iter()
            .map(|c| {
                terminated_container(
                    pod,
                    c,
                    0,
                    started,
                    if is_sidecar(c) { now } else { started },
                )
            })
            .collect();
    }
    patch_body(pod, status)
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

struct Provider {
    client: Client,
    shared: Arc<Shared>,
    queue: WorkQueue<Arc<Pod>>,
    /// UIDs of pods waiting for their on-demand exit.
    timers: Mutex<HashSet<String>>,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

/// Provides the pods of every virtual node until `cancel`; `resync` names nodes whose
/// pods to look at again (after a pause).
pub(crate) async fn run(
    client: Client,
    shared: Arc<Shared>,
    mut resync: mpsc::UnboundedReceiver<usize>,
    cancel: CancellationToken,
) {
    let provider = Arc::new(Provider {
        client: client.clone(),
        shared: shared.clone(),
        queue: WorkQueue::default(),
        timers: Mutex::new(HashSet::new()),
        tasks: TaskTracker::new(),
        cancel: cancel.clone(),
    });
    for _ in 0..shared.config.pod_workers {
        provider.tasks.spawn(worker(provider.clone()));
    }
    let api: Api<Pod> = Api::all(client);
    let stream =
        watcher(api, watcher::Config::default().fields("spec.nodeName!=")).default_backoff();
    futures::pin_mut!(stream);
    // UIDs seen since the current (re)list began; IPs of pods not among them are freed.
    let mut relisting: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(index) = resync.recv() => provider.resync_node(index).await,
            event = stream.next() => match event {
                Some(Ok(watcher::Event::Init)) => relisting = Some(HashSet::new()),
                Some(Ok(watcher::Event::InitApply(pod))) => {
                    if let Some(seen) = relisting.as_mut() {
                        seen.insert(uid(&pod).to_string());
                    }
                    provider.observe(pod);
                }
                Some(Ok(watcher::Event::InitDone)) => {
                    if let Some(seen) = relisting.take() {
                        provider.forget_unseen(&seen);
                    }
                }
                Some(Ok(watcher::Event::Apply(pod))) => provider.observe(pod),
                Some(Ok(watcher::Event::Delete(pod))) => provider.deleted(&pod),
                Some(Err(e)) => tracing::debug!(error = %e, "pod watch error; retrying"),
                None => break,
            },
        }
    }
    provider.tasks.close();
    provider.tasks.wait().await;
}

async fn worker(p: Arc<Provider>) {
    while let Some((key, pod)) = p.queue.next(&p.cancel).await {
        let span = tracing::debug_span!("sync_pod", pod = %key);
        let result = tracing::Instrument::instrument(p.sync(&pod), span).await;
        match result {
            Ok(()) => p.queue.done(&key, true),
            Err(e) => {
                let delay = p.queue.retry_delay(&key);
                p.queue.done(&key, false);
                tracing::warn!(pod = %key, error = %e, ?delay, "syncing pod failed; retrying");
                let p2 = p.clone();
                p.tasks.spawn(async move {
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => p2.queue.add_if_idle(key, pod),
                        _ = p2.cancel.cancelled() => {}
                    }
                });
            }
        }
    }
}

impl Provider {
    fn node_of(&self, pod: &Pod) -> Option<&NodeState> {
        let name = pod.spec.as_ref().and_then(|s| s.node_name.as_deref())?;
        self.shared.node(name).map(|(_, n)| n)
    }

    /// Watch-loop bookkeeping for a pod that exists; queues it if it needs work.
    fn observe(&self, pod: Pod) {
        let Some(node) = self.node_of(&pod) else {
            return;
        };
        crate::stats::observe(&self.shared.config, node, &pod);
        let Some(ipam) = node.pod_ips.get() else {
            return;
        };
        if is_terminal(&pod) {
            ipam.lock().release(uid(&pod));
        }
        let needs_work = if pod.metadata.deletion_timestamp.is_some() {
            deletion_pending(&pod)
        } else if is_terminal(&pod) {
            false
        } else {
            let preferred = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| ip.parse().ok());
            let Some(ip) = ipam.lock().assign(uid(&pod), preferred) else {
                tracing::warn!(pod = %key(&pod), node = %node.name, "no free pod IP in the node's podCIDR");
                return;
            };
            matches!(exit_on_demand(&pod), Ok(Some(_))) || !running_as_desired(&pod, ip)
        };
        if needs_work && !node.is_paused() {
            self.queue.add(key(&pod), Arc::new(pod));
        }
    }

    fn deleted(&self, pod: &Pod) {
        if let Some(node) = self.node_of(pod) {
            node.running_pods.lock().remove(uid(pod));
        }
        if let Some(ipam) = self.node_of(pod).and_then(|n| n.pod_ips.get()) {
            ipam.lock().release(uid(pod));
            self.queue.forget(&key(pod));
        }
    }

    fn forget_unseen(&self, seen: &HashSet<String>) {
        crate::stats::retain(&self.shared.nodes, seen);
        for node in &self.shared.nodes {
            if let Some(ipam) = node.pod_ips.get() {
                ipam.lock().retain(|uid| seen.contains(uid));
            }
        }
    }

    /// Looks at every pod of node `index` again (after its heartbeat resumed).
    async fn resync_node(&self, index: usize) {
        let name = &self.shared.nodes[index].name;
        let api: Api<Pod> = Api::all(self.client.clone());
        match api
            .list(&ListParams::default().fields(&format!("spec.nodeName={name}")))
            .await
        {
            Ok(list) => list.items.into_iter().for_each(|pod| self.observe(pod)),
            Err(e) => tracing::warn!(node = %name, error = %e, "listing pods to resync failed"),
        }
    }

    async fn sync(self: &Arc<Self>, pod: &Arc<Pod>) -> Result<(), SyncError> {
        let Some(node) = self.node_of(pod) else {
            return Ok(());
        };
        if node.is_paused() {
            return Ok(());
        }
        let host_ip = node
            .internal_ip
            .get()
            .copied()
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let pod_ip = node.pod_ips.get().and_then(|p| p.lock().get(uid(pod)));
        if pod.metadata.deletion_timestamp.is_some() {
            return self.finish_deletion(node, pod, host_ip, pod_ip).await;
        }
        // No IP: the podCIDR was full, or the pod is gone or terminal already.
        let Some(pod_ip) = pod_ip.filter(|_| !is_terminal(pod)) else {
            return Ok(());
        };
        let now = Timestamp::now();
        let exit = exit_on_demand(pod).unwrap_or_else(|why| {
            tracing::warn!(pod = %key(pod), "ignoring exit annotation: {why}");
            None
        });
        if let Some(exit) = exit {
            let started = start_time(pod).unwrap_or(now);
            let due = SignedDuration::try_from(exit.after)
                .ok()
                .and_then(|d| started.checked_add(d).ok())
                .unwrap_or(started);
            if now >= due {
                self.patch_status(pod, terminal_patch(pod, host_ip, pod_ip, exit.code, now))
                    .await?;
                return Ok(());
            }
            let left = Duration::try_from(due.duration_since(now)).unwrap_or(Duration::ZERO);
            self.schedule_exit(pod, left);
        }
        if !running_as_desired(pod, pod_ip) {
            let first_start = start_time(pod).is_none();
            self.patch_status(pod, running_patch(pod, host_ip, pod_ip, now))
                .await?;
            if first_start && self.shared.config.record_pod_events {
                for c in containers(pod) {
                    self.record(
                        node,
                        pod,
                        "Started",
                        format!("Started container {}", c.name),
                    )
                    .await;
                }
            }
        }
        Ok(())
    }

    async fn finish_deletion(
        &self,
        node: &NodeState,
        pod: &Pod,
        host_ip: Ipv4Addr,
        pod_ip: Option<Ipv4Addr>,
    ) -> Result<(), SyncError> {
        if !deletion_pending(pod) {
            return Ok(());
        }
        if self.shared.config.record_pod_events && !is_terminal(pod) {
            for c in containers(pod) {
                self.record(
                    node,
                    pod,
                    "Killing",
                    format!("Stopping container {}", c.name),
                )
                .await;
            }
        }
        let has_finalizers = pod
            .metadata
            .finalizers
            .as_ref()
            .is_some_and(|f| !f.is_empty());
        if has_finalizers && !is_terminal(pod) {
            let ip = pod_ip.unwrap_or(Ipv4Addr::UNSPECIFIED);
            let patch = terminal_patch(pod, host_ip, ip, KILLED_EXIT_CODE, Timestamp::now());
            self.patch_status(pod, patch).await?;
        }
        let (namespace, name) = (
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or(""),
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        let params = DeleteParams {
            grace_period_seconds: Some(0),
            preconditions: Some(Preconditions {
                uid: Some(uid(pod).to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(name, &params).await {
            Ok(_) => Ok(()),
            // Gone already, or a successor with the same name.
            Err(e) if matches!(api_code(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    async fn patch_status(&self, pod: &Pod, patch: Value) -> Result<(), SyncError> {
        let (namespace, name) = (
            pod.metadata.namespace.as_deref().unwrap_or(""),
            pod.metadata.name.as_deref().unwrap_or(""),
        );
        let api: Api<Pod> = Api::namespaced(self.client.clone(), namespace);
        match api
            .patch_status(name, &PatchParams::default(), &Patch::Strategic(&patch))
            .await
        {
            Ok(_) => Ok(()),
            // Deleted meanwhile, or replaced by a same-named pod (UID precondition): the
            // watch brings whatever is there now.
            Err(e) if matches!(api_code(&e), Some(404 | 409)) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Re-queues the pod (read fresh) once its on-demand exit is due.
    fn schedule_exit(self: &Arc<Self>, pod: &Pod, after: Duration) {
        let pod_uid = uid(pod).to_string();
        if !self.timers.lock().insert(pod_uid.clone()) {
            return;
        }
        let p = self.clone();
        let (namespace, name) = (
            pod.metadata.namespace.clone().unwrap_or_default(),
            pod.metadata.name.clone().unwrap_or_default(),
        );
        self.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(after) => {}
                _ = p.cancel.cancelled() => return,
            }
            p.timers.lock().remove(&pod_uid);
            let api: Api<Pod> = Api::namespaced(p.client.clone(), &namespace);
            loop {
                match api.get_opt(&name).await {
                    Ok(Some(fresh)) if uid(&fresh) == pod_uid => {
                        p.queue.add(key(&fresh), Arc::new(fresh));
                        return;
                    }
                    Ok(_) => return,
                    Err(e) => tracing::debug!(pod = %name, error = %e, "reading pod for its exit failed; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(RETRY_ON_GET) => {}
                    _ = p.cancel.cancelled() => return,
                }
            }
        });
    }

    async fn record(&self, node: &NodeState, pod: &Pod, reason: &str, note: String) {
        let event = Event {
            type_: EventType::Normal,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = node.recorder.publish(&event, &pod.object_ref(&())).await {
            tracing::debug!(pod = %key(pod), error = %e, "recording event failed");
        }
    }
}

/// Annotations that make a pod exit with `code` after `seconds` (for tests and fixtures).
pub fn exit_annotations(code: i32, seconds: u64) -> BTreeMap<String, String> {
    BTreeMap::from([
        (EXIT_CODE_ANNOTATION.to_string(), code.to_string()),
        (RUN_SECONDS_ANNOTATION.to_string(), seconds.to_string()),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{PodReadinessGate, PodSpec, PodStatus};

    fn pod(annotations: &[(&str, &str)], restart_policy: &str) -> Pod {
        let mut p = Pod::default();
        p.metadata.name = Some("p".to_string());
        p.metadata.namespace = Some("default".to_string());
        p.metadata.uid = Some("u1".to_string());
        p.metadata.annotations = Some(
            annotations
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        p.spec = Some(PodSpec {
            node_name: Some("n0".to_string()),
            restart_policy: Some(restart_policy.to_string()),
            containers: vec![Container {
                name: "c".to_string(),
                image: Some("nginx".to_string()),
                ..Default::default()
            }],
            ..Default::default()
        });
        p.status = Some(PodStatus {
            phase: Some("Pending".to_string()),
            ..Default::default()
        });
        p
    }

    /// Applies a status patch the way the server would for our fields (no list merging
    /// needed: a fresh pod has no conditions).
    fn apply(p: &Pod, patch: &Value) -> Pod {
        let mut v = serde_json::to_value(p).expect("to json");
        v["status"] = patch["status"].clone();
        serde_json::from_value(v).expect("from json")
    }

    fn ts(s: i64) -> Timestamp {
        Timestamp::from_second(s).expect("ts")
    }

    #[test]
    fn exit_annotations_parse() {
        type Case<'a> = (&'a [(&'a str, &'a str)], Result<Option<Exit>, ()>);
        let cases: &[Case] = &[
            (&[], Ok(None)),
            (
                &[(EXIT_CODE_ANNOTATION, "0")],
                Ok(Some(Exit {
                    code: 0,
                    after: Duration::ZERO,
                })),
            ),
            (
                &[(EXIT_CODE_ANNOTATION, "3"), (RUN_SECONDS_ANNOTATION, "2")],
                Ok(Some(Exit {
                    code: 3,
                    after: Duration::from_secs(2),
                })),
            ),
            (
                &[(EXIT_CODE_ANNOTATION, "1"), (RUN_SECONDS_ANNOTATION, "0.5")],
                Ok(Some(Exit {
                    code: 1,
                    after: Duration::from_millis(500),
                })),
            ),
            (&[(EXIT_CODE_ANNOTATION, "x")], Err(())),
            (
                &[(EXIT_CODE_ANNOTATION, "1"), (RUN_SECONDS_ANNOTATION, "-1")],
                Err(()),
            ),
        ];
        for (annotations, want) in cases {
            let got = exit_on_demand(&pod(annotations, "Never")).map_err(|_| ());
            assert_eq!(&got, want, "{annotations:?}");
        }
    }

    #[test]
    fn terminal_phases_follow_restart_policy() {
        let cases = [
            ("Never", 0, "Succeeded"),
            ("OnFailure", 0, "Succeeded"),
            ("Always", 0, "Failed"),
            ("Never", 1, "Failed"),
            ("OnFailure", 2, "Failed"),
        ];
        for (policy, code, want) in cases {
            assert_eq!(terminal_phase(policy, code), want, "{policy} {code}");
        }
    }

    #[test]
    fn running_patch_makes_the_pod_ready() {
        let p = pod(&[], "Always");
        let ip = Ipv4Addr::new(10, 42, 0, 2);
        assert!(!running_as_desired(&p, ip));
        let patch = running_patch(&p, Ipv4Addr::new(100, 64, 0, 1), ip, ts(1_700_000_000));
        assert_eq!(patch["metadata"]["uid"], "u1");
        let s = &patch["status"];
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.42.0.2");
        assert_eq!(s["podIPs"], json!([{"ip": "10.42.0.2"}]));
        assert_eq!(s["hostIP"], "100.64.0.1");
        let types: Vec<(&str, &str)> = s["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .map(|c| {
                (
                    c["type"].as_str().unwrap_or(""),
                    c["status"].as_str().unwrap_or(""),
                )
            })
            .collect();
        assert_eq!(
            types,
            vec![
                ("PodReadyToStartContainers", "True"),
                ("Initialized", "True"),
                ("Ready", "True"),
                ("ContainersReady", "True"),
                ("PodScheduled", "True"),
            ]
        );
        let c = &s["containerStatuses"][0];
        assert_eq!(c["containerID"], "virtual://u1-c");
        assert_eq!(c["imageID"], "virtual://nginx");
        assert_eq!(
            (c["ready"].as_bool(), c["started"].as_bool()),
            (Some(true), Some(true))
        );
        assert!(c["state"]["running"]["startedAt"].is_string());
        let after = apply(&p, &patch);
        assert!(running_as_desired(&after, ip));
        assert!(
            !running_as_desired(&after, Ipv4Addr::new(10, 42, 0, 3)),
            "another IP"
        );
        // Posting again keeps startTime and transition times.
        let again = running_patch(&after, Ipv4Addr::new(100, 64, 0, 1), ip, ts(1_700_000_100));
        assert_eq!(again["status"]["startTime"], s["startTime"]);
        assert_eq!(
            again["status"]["conditions"][2]["lastTransitionTime"],
            s["conditions"][2]["lastTransitionTime"]
        );
    }

    #[test]
    fn readiness_gates_hold_ready_back() {
        let mut p = pod(&[], "Always");
        p.spec.as_mut().expect("spec").readiness_gates = Some(vec![PodReadinessGate {
            condition_type: "example.com/feature".to_string(),
        }]);
        let ip = Ipv4Addr::new(10, 42, 0, 2);
        let patch = running_patch(&p, Ipv4Addr::new(100, 64, 0, 1), ip, ts(1_700_000_000));
        let ready = &patch["status"]["conditions"][2];
        assert_eq!(
            (ready["status"].as_str(), ready["reason"].as_str()),
            (Some("False"), Some("ReadinessGatesNotReady"))
        );
        let after = apply(&p, &patch);
        assert!(
            running_as_desired(&after, ip),
            "not ready is what we want while the gate is missing"
        );
    }

    #[test]
    fn terminal_patch_ends_containers() {
        let p = pod(&[(EXIT_CODE_ANNOTATION, "3")], "Never");
        let patch = terminal_patch(
            &p,
            Ipv4Addr::new(100, 64, 0, 1),
            Ipv4Addr::new(10, 42, 0, 2),
            3,
            ts(1_700_000_000),
        );
        let s = &patch["status"];
        assert_eq!(s["phase"], "Failed");
        let t = &s["containerStatuses"][0]["state"]["terminated"];
        assert_eq!(
            (t["exitCode"].as_i64(), t["reason"].as_str()),
            (Some(3), Some("Error"))
        );
        assert_eq!(s["conditions"][2]["reason"], "PodCompleted");
        let ok = terminal_patch(
            &p,
            Ipv4Addr::new(100, 64, 0, 1),
            Ipv4Addr::new(10, 42, 0, 2),
            0,
            ts(1_700_000_000),
        );
        assert_eq!(ok["status"]["phase"], "Succeeded");
        assert_eq!(
            ok["status"]["containerStatuses"][0]["state"]["terminated"]["reason"],
            "Completed"
        );
    }

    #[test]
    fn init_containers_complete_and_sidecars_run() {
        let mut p = pod(&[], "Always");
        p.spec.as_mut().expect("spec").init_containers = Some(vec![
            Container {
                name: "init".to_string(),
                image: Some("busybox".to_string()),
                ..Default::default()
            },
            Container {
                name: "sidecar".to_string(),
                image: Some("envoy".to_string()),
                restart_policy: Some("Always".to_string()),
                ..Default::default()
            },
        ]);
        let patch = running_patch(
            &p,
            Ipv4Addr::new(100, 64, 0, 1),
            Ipv4Addr::new(10, 42, 0, 2),
            ts(1_700_000_000),
        );
        let inits = &patch["status"]["initContainerStatuses"];
        assert_eq!(inits[0]["state"]["terminated"]["reason"], "Completed");
        assert!(inits[1]["state"]["running"].is_object());
    }

    #[test]
    fn deleting_pods_with_finalizers_are_left_once_terminal_and_forced() {
        let mut p = pod(&[], "Never");
        p.metadata.deletion_timestamp = Some(Time(ts(1_700_000_000)));
        assert!(deletion_pending(&p));
        p.metadata.finalizers = Some(vec!["batch.kubernetes.io/job-tracking".to_string()]);
        p.metadata.deletion_grace_period_seconds = Some(0);
        assert!(deletion_pending(&p), "still running");
        p.status.as_mut().expect("status").phase = Some("Failed".to_string());
        assert!(!deletion_pending(&p));
    }
}
