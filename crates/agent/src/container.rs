//! Starting one container of a pod: image (by pull policy), environment, mounts, resources
//! and security context → a CRI `ContainerConfig`, then create and start. Failures carry
//! the waiting reason the pod status shows (ErrImagePull, CreateContainerConfigError, …).
//!
//! Also the container lifecycle hooks (upstream `pkg/kubelet/lifecycle`): postStart runs
//! right after StartContainer and a failure kills the container (`PostStartHookError`);
//! preStop runs in [`kill`] before StopContainer, within the grace period, and what is
//! left of the grace (at least 2 s, as upstream) is the stop timeout. Hook events do not
//! carry the handler's output (it may hold secrets); the log does.

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use cri::v1 as c;
use cri::{CallExt, CriError};
use k8s_openapi::api::core::v1::{Container, LifecycleHandler, Pod};

use crate::kuberuntime::{
    self, CONTAINER_NAME_LABEL, GRACE_ANNOTATION, INIT_ANNOTATION, RESTART_COUNT_ANNOTATION,
};
use crate::volumes::VolumePaths;
use crate::worker::Ctx;

/// Why a container could not be started, with the waiting reason it shows.
#[derive(Debug)]
pub struct StartError {
    pub reason: &'static str,
    pub message: String,
}

impl StartError {
    fn new(reason: &'static str, message: impl Into<String>) -> Self {
        StartError {
            reason,
            message: message.into(),
        }
    }
}

pub struct StartRequest<'a> {
    pub pod: &'a Pod,
    pub container: &'a Container,
    pub init: bool,
    pub sandbox_id: &'a str,
    pub sandbox_config: &'a c::PodSandboxConfig,
    pub restart_count: i32,
    pub volumes: &'a VolumePaths,
    pub etc_hosts: Option<&'a Path>,
    /// Where an httpGet postStart hook goes by default.
    pub pod_ip: Option<&'a str>,
}

/// Credentials from the pod's imagePullSecrets for `image` (missing secrets are skipped,
/// as the kubelet does, and the pull is tried without them).
async fn pull_secrets_auth(ctx: &Ctx, pod: &Pod, image: &str) -> Option<c::AuthConfig> {
    let names: Vec<String> = pod
        .spec
        .iter()
        .flat_map(|s| s.image_pull_secrets.iter().flatten())
        .map(|r| r.name.clone())
        .collect();
    if names.is_empty() {
        return None;
    }
    let api: kube::Api<k8s_openapi::api::core::v1::Secret> = kube::Api::namespaced(
        ctx.client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let mut secrets = Vec::new();
    for name in names {
        match api.get_opt(&name).await {
            Ok(Some(s)) => secrets.push(s),
            Ok(None) => {
                tracing::warn!(secret = %name, "image pull secret not found; pulling without it")
            }
            Err(e) => {
                tracing::warn!(secret = %name, error = %e, "reading an image pull secret failed")
            }
        }
    }
    crate::images::pull_auth(image, &secrets)
}

/// Creates and starts the container; returns its ID.
pub async fn start(ctx: &Ctx, req: StartRequest<'_>) -> Result<String, StartError> {
    let mut cri = ctx.cri.clone();
    let ctr = req.container;
    let pod = req.pod;
    let image = ctr.image.as_deref().unwrap_or_default();
    let policy = crate::images::pull_policy(image, ctr.image_pull_policy.as_deref());
    let reference = crate::worker::object_ref(pod, Some(&ctr.name), req.init);
    let started = std::time::Instant::now();
    let auth = pull_secrets_auth(ctx, pod, image).await;
    let (image_ref, pulled) = match crate::images::ensure_image(&mut cri, image, &policy, auth)
        .await
    {
        Ok(r) => r,
        Err(crate::images::PullError::NeverPull(img)) => {
            let msg = format!("Container image \"{img}\" is not present with pull policy of Never");
            ctx.warn(&reference, "ErrImageNeverPull", msg.clone()).await;
            return Err(StartError::new("ErrImageNeverPull", msg));
        }
        Err(crate::images::PullError::Pull(msg)) => {
            ctx.warn(
                &reference,
                "Failed",
                format!("Failed to pull image \"{}\": {msg}", image),
            )
            .await;
            ctx.warn(&reference, "Failed", "Error: ErrImagePull".to_string())
                .await;
            return Err(StartError::new("ErrImagePull", msg));
        }
    };
    if pulled {
        let secs = started.elapsed().as_secs_f64();
        ctx.normal(
            &reference,
            "Pulling",
            format!("Pulling image \"{}\"", image),
        )
        .await;
        ctx.normal(
            &reference,
            "Pulled",
            format!("Successfully pulled image \"{}\" in {secs:.3}s", image),
        )
        .await;
    } else {
        ctx.normal(
            &reference,
            "Pulled",
            format!("Container image \"{}\" already present on machine", image),
        )
        .await;
    }

    let env = match crate::envvars::container_env(&ctx.client, pod, ctr).await {
        Ok(e) => e,
        Err(e) => {
            ctx.warn(&reference, "Failed", format!("Error: {e}")).await;
            return Err(StartError::new("CreateContainerConfigError", e.to_string()));
        }
    };
    let vars: std::collections::BTreeMap<String, String> = env.iter().cloned().collect();
    let command: Vec<String> = ctr
        .command
        .iter()
        .flatten()
        .map(|s| crate::envvars::expand(s, &vars))
        .collect();
    let args: Vec<String> = ctr
        .args
        .iter()
        .flatten()
        .map(|s| crate::envvars::expand(s, &vars))
        .collect();

    let mut mounts = Vec::new();
    for m in ctr.volume_mounts.iter().flatten() {
        let Some(host) = req.volumes.get(&m.name) else {
            let msg = format!(
                "cannot find volume \"{}\" to mount into container \"{}\"",
                m.name, ctr.name
            );
            ctx.warn(&reference, "Failed", format!("Error: {msg}"))
                .await;
            return Err(StartError::new("CreateContainerConfigError", msg));
        };
        let mut host_path = host.clone();
        if let Some(sub) = m.sub_path.as_deref().filter(|s| !s.is_empty()) {
            if sub.split('/').any(|c| c == "..") {
                return Err(StartError::new(
                    "CreateContainerConfigError",
                    format!("invalid subPath {sub:?}"),
                ));
            }
            host_path = host_path.join(sub);
            if !host_path.exists() {
                let _ = std::fs::create_dir_all(&host_path);
            }
        }
        mounts.push(c::Mount {
            container_path: m.mount_path.clone(),
            host_path: host_path.display().to_string(),
            readonly: m.read_only.unwrap_or(false),
            propagation: match m.mount_propagation.as_deref() {
                Some("HostToContainer") => c::MountPropagation::PropagationHostToContainer as i32,
                Some("Bidirectional") => c::MountPropagation::PropagationBidirectional as i32,
                _ => c::MountPropagation::PropagationPrivate as i32,
            },
            ..Default::default()
        });
    }
    if let Some(hosts) = req.etc_hosts {
        if !mounts.iter().any(|m| m.container_path == "/etc/hosts") {
            mounts.push(c::Mount {
                container_path: "/etc/hosts".into(),
                host_path: hosts.display().to_string(),
                ..Default::default()
            });
        }
    }

    let mut labels: HashMap<String, String> = kuberuntime::pod_labels(pod);
    labels.insert(CONTAINER_NAME_LABEL.to_string(), ctr.name.clone());
    let grace = pod
        .spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30);
    let mut annotations = HashMap::from([
        (
            RESTART_COUNT_ANNOTATION.to_string(),
            req.restart_count.to_string(),
        ),
        (GRACE_ANNOTATION.to_string(), grace.to_string()),
        (
            "io.kubernetes.container.terminationMessagePath".to_string(),
            ctr.termination_message_path
                .clone()
                .unwrap_or_else(|| "/dev/termination-log".into()),
        ),
    ]);
    if req.init {
        annotations.insert(INIT_ANNOTATION.to_string(), "true".to_string());
    }
    let image_user = crate::images::image_user(&mut cri, &image_ref).await;
    if let Err(msg) = crate::security_context::verify_run_as_non_root(pod, ctr, &image_user) {
        ctx.warn(&reference, "Failed", format!("Error: {msg}"))
            .await;
        return Err(StartError::new("CreateContainerConfigError", msg));
    }
    let security_context =
        crate::security_context::container_security_context(pod, ctr, &image_user);
    let config = c::ContainerConfig {
        metadata: Some(c::ContainerMetadata {
            name: ctr.name.clone(),
            attempt: req.restart_count as u32,
        }),
        image: Some(c::ImageSpec {
            image: image_ref,
            user_specified_image: ctr.image.clone().unwrap_or_default(),
            ..Default::default()
        }),
        command,
        args,
        working_dir: ctr.working_dir.clone().unwrap_or_default(),
        envs: env
            .into_iter()
            .map(|(key, value)| c::KeyValue { key, value })
            .collect(),
        mounts,
        labels,
        annotations,
        log_path: format!("{}/{}.log", ctr.name, req.restart_count),
        stdin: ctr.stdin.unwrap_or(false),
        stdin_once: ctr.stdin_once.unwrap_or(false),
        tty: ctr.tty.unwrap_or(false),
        linux: Some(c::LinuxContainerConfig {
            resources: Some(crate::resources::linux_resources(
                pod,
                ctr,
                ctx.machine_memory,
            )),
            security_context: Some(security_context),
        }),
        ..Default::default()
    };
    let created = cri
        .runtime
        .create_container(c::CreateContainerRequest {
            pod_sandbox_id: req.sandbox_id.to_string(),
            config: Some(config),
            sandbox_config: Some(req.sandbox_config.clone()),
        })
        .await
        .call("CreateContainer");
    let id = match created {
        Ok(r) => r.container_id,
        Err(e) => {
            let msg = e
                .status()
                .map(|s| s.message().to_string())
                .unwrap_or_else(|| e.to_string());
            ctx.warn(&reference, "Failed", format!("Error: {msg}"))
                .await;
            return Err(StartError::new("CreateContainerError", msg));
        }
    };
    ctx.normal(
        &reference,
        "Created",
        format!("Created container: {}", ctr.name),
    )
    .await;
    if let Err(e) = cri
        .runtime
        .start_container(c::StartContainerRequest {
            container_id: id.clone(),
        })
        .await
        .call("StartContainer")
    {
        let msg = e
            .status()
            .map(|s| s.message().to_string())
            .unwrap_or_else(|| e.to_string());
        ctx.warn(&reference, "Failed", format!("Error: {msg}"))
            .await;
        return Err(StartError::new("RunContainerError", msg));
    }
    ctx.normal(
        &reference,
        "Started",
        format!("Started container {}", ctr.name),
    )
    .await;

    if let Some(hook) = ctr.lifecycle.as_ref().and_then(|l| l.post_start.as_ref()) {
        if let Err(msg) = run_hook(ctx, pod, ctr, &id, hook, req.pod_ip).await {
            tracing::warn!(pod = %pod_key(pod), container = %ctr.name, error = %msg, "postStart hook failed");
            ctx.warn(
                &reference,
                "FailedPostStartHook",
                "PostStartHook failed".into(),
            )
            .await;
            let k = Kill {
                container: ctr,
                init: req.init,
                container_id: &id,
                pod_ip: req.pod_ip,
                grace: spec_grace(pod),
                message: "FailedPostStartHook".into(),
            };
            if let Err(e) = kill(ctx, pod, k).await {
                tracing::warn!(pod = %pod_key(pod), container = %ctr.name, error = %e, "killing the container failed");
            }
            return Err(StartError::new("PostStartHookError", msg));
        }
    }
    Ok(id)
}

fn pod_key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// The pod's terminationGracePeriodSeconds (30 unless set).
pub fn spec_grace(pod: &Pod) -> i64 {
    pod.spec
        .as_ref()
        .and_then(|s| s.termination_grace_period_seconds)
        .unwrap_or(30)
        .max(0)
}

/// Upstream never gives a container less than this to stop.
const MIN_GRACE_SECONDS: i64 = 2;

/// Runs a lifecycle hook handler (exec, httpGet, sleep) to completion; `Err` carries
/// upstream's description of the failure. httpGet fails only if no response arrives (the
/// status code is not looked at, as upstream).
pub async fn run_hook(
    ctx: &Ctx,
    pod: &Pod,
    ctr: &Container,
    container_id: &str,
    hook: &LifecycleHandler,
    pod_ip: Option<&str>,
) -> Result<(), String> {
    let key = pod_key(pod);
    if let Some(e) = &hook.exec {
        let cmd = e.command.clone().unwrap_or_default();
        let mut cri = ctx.cri.clone();
        let fail = |error: String, out: &str| {
            format!("Exec lifecycle hook ({cmd:?}) for Container {:?} in Pod {key:?} failed - error: {error}, message: {out:?}", ctr.name)
        };
        return match crate::prober::exec_sync(&mut cri, container_id, &cmd, Duration::ZERO).await {
            Ok((0, _)) => Ok(()),
            Ok((code, out)) => Err(fail(
                format!("command '{}' exited with {code}: {out}", cmd.join(" ")),
                &out,
            )),
            Err(e) => Err(fail(e.to_string(), "")),
        };
    }
    if let Some(h) = &hook.http_get {
        let path = h.path.clone().unwrap_or_default();
        let fail = |error: String| {
            format!("HTTP lifecycle hook ({path}) for Container {:?} in Pod {key:?} failed - error: {error}", ctr.name)
        };
        let target = crate::prober::HttpTarget::new(h, ctr, pod_ip).map_err(fail)?;
        return crate::prober::http_get(
            &target,
            &crate::prober::user_agent("kube-lifecycle"),
            Duration::MAX,
        )
        .await
        .map(|_| ())
        .map_err(fail);
    }
    if let Some(s) = &hook.sleep {
        tokio::time::sleep(Duration::from_secs(s.seconds.max(0) as u64)).await;
        return Ok(());
    }
    if hook.tcp_socket.is_some() {
        // Deprecated and never implemented upstream: a no-op.
        return Ok(());
    }
    Err(format!(
        "Cannot run handler: invalid handler for Container {:?} in Pod {key:?}",
        ctr.name
    ))
}

/// One container to stop, and why.
pub struct Kill<'a> {
    pub container: &'a Container,
    pub init: bool,
    pub container_id: &'a str,
    pub pod_ip: Option<&'a str>,
    /// Seconds from the start of the kill (preStop included) to SIGKILL.
    pub grace: i64,
    /// The `Killing` event's message.
    pub message: String,
}

/// Stops a container as upstream's killContainer: a `Killing` event, the preStop hook (if
/// any) bounded by the grace period, then StopContainer with the rest of it.
pub async fn kill(ctx: &Ctx, pod: &Pod, k: Kill<'_>) -> Result<(), CriError> {
    let ctr = k.container;
    let reference = crate::worker::object_ref(pod, Some(&ctr.name), k.init);
    ctx.normal(&reference, "Killing", k.message.clone()).await;
    let mut grace = k.grace.max(0);
    if let Some(hook) = ctr
        .lifecycle
        .as_ref()
        .and_then(|l| l.pre_stop.as_ref())
        .filter(|_| grace > 0)
    {
        let started = Instant::now();
        match tokio::time::timeout(
            Duration::from_secs(grace as u64),
            run_hook(ctx, pod, ctr, k.container_id, hook, k.pod_ip),
        )
        .await
        {
            Ok(Ok(())) => {}
            Ok(Err(msg)) => {
                tracing::warn!(pod = %pod_key(pod), container = %ctr.name, error = %msg, "preStop hook failed");
                ctx.warn(&reference, "FailedPreStopHook", "PreStopHook failed".into())
                    .await;
            }
            Err(_) => {
                tracing::info!(pod = %pod_key(pod), container = %ctr.name, grace, "preStop hook not completed in the grace period")
            }
        }
        grace -= started.elapsed().as_secs() as i64;
    }
    let timeout = grace.max(MIN_GRACE_SECONDS);
    let mut cri = ctx.cri.clone();
    cri.runtime
        .stop_container(c::StopContainerRequest {
            container_id: k.container_id.to_string(),
            timeout,
        })
        .await
        .call("StopContainer")?;
    Ok(())
}
