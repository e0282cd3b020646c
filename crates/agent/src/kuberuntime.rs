//! The bridge between Pods and the CRI: the labels and annotations that tie runtime objects
//! to pods (so all state can be recovered from the runtime after an agent restart), the
//! sandbox config built from a pod, and reading back what the runtime has for a pod.

use std::collections::HashMap;

use cri::v1 as c;
use cri::{CallExt, CriClient, CriError};
use k8s_openapi::api::core::v1::Pod;

pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
/// Marks everything this agent created (CRI runtimes may be shared with other clients).
pub const MANAGED_LABEL: &str = "io.rkube.managed";
pub const RESTART_COUNT_ANNOTATION: &str = "io.kubernetes.container.restartCount";
pub const INIT_ANNOTATION: &str = "io.rkube.container.init";
pub const GRACE_ANNOTATION: &str = "io.kubernetes.pod.terminationGracePeriod";

/// A pod sandbox as the runtime reports it.
#[derive(Clone, Debug)]
pub struct SandboxInfo {
    pub id: String,
    pub ready: bool,
    pub created_at: i64,
    pub attempt: u32,
    pub ip: Option<String>,
}

/// A container as the runtime reports it.
#[derive(Clone, Debug)]
pub struct ContainerInfo {
    pub id: String,
    pub sandbox_id: String,
    pub name: String,
    pub state: c::ContainerState,
    pub created_at: i64,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub image: String,
    pub image_ref: String,
    pub restart_count: i32,
    pub log_path: String,
}

impl ContainerInfo {
    pub fn running(&self) -> bool {
        self.state == c::ContainerState::ContainerRunning
    }
    pub fn exited(&self) -> bool {
        self.state == c::ContainerState::ContainerExited
    }
}

/// Everything the runtime has for one pod (newest first).
#[derive(Clone, Debug, Default)]
pub struct PodRuntime {
    pub sandboxes: Vec<SandboxInfo>,
    pub containers: Vec<ContainerInfo>,
}

impl PodRuntime {
    /// The newest sandbox, if it is ready.
    pub fn ready_sandbox(&self) -> Option<&SandboxInfo> {
        self.sandboxes.first().filter(|s| s.ready)
    }

    /// Instances of container `name` in `sandbox`, newest first.
    pub fn instances<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a ContainerInfo> + 'a {
        self.containers.iter().filter(move |c| c.name == name)
    }

    pub fn latest<'a>(&'a self, name: &'a str) -> Option<&'a ContainerInfo> {
        self.instances(name).next()
    }
}

fn ns_to_time(ns: i64) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    if ns <= 0 {
        return None;
    }
    k8s_openapi::jiff::Timestamp::from_nanosecond(i128::from(ns))
        .ok()
        .map(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time)
}

pub fn time_of(ns: i64) -> Option<k8s_openapi::apimachinery::pkg::apis::meta::v1::Time> {
    ns_to_time(ns)
}

/// Reads the sandboxes and containers of pod `uid`.
pub async fn pod_runtime(cri: &mut CriClient, uid: &str) -> Result<PodRuntime, CriError> {
    let selector: HashMap<String, String> =
        HashMap::from([(POD_UID_LABEL.to_string(), uid.to_string())]);
    let sandboxes = cri
        .runtime
        .list_pod_sandbox(c::ListPodSandboxRequest {
            filter: Some(c::PodSandboxFilter {
                label_selector: selector.clone(),
                ..Default::default()
            }),
        })
        .await
        .call("ListPodSandbox")?
        .items;
    let mut out = PodRuntime::default();
    for s in sandboxes {
        let ready = s.state == c::PodSandboxState::SandboxReady as i32;
        let mut ip = None;
        if ready {
            match cri
                .runtime
                .pod_sandbox_status(c::PodSandboxStatusRequest {
                    pod_sandbox_id: s.id.clone(),
                    verbose: false,
                })
                .await
                .call("PodSandboxStatus")
            {
                Ok(st) => {
                    ip = st
                        .status
                        .and_then(|s| s.network)
                        .map(|n| n.ip)
                        .filter(|ip| !ip.is_empty())
                }
                Err(e) if e.is_not_found() => continue,
                Err(e) => return Err(e),
            }
        }
        out.sandboxes.push(SandboxInfo {
            id: s.id,
            ready,
            created_at: s.created_at,
            attempt: s.metadata.map(|m| m.attempt).unwrap_or(0),
            ip,
        });
    }
    out.sandboxes
        .sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let containers = cri
        .runtime
        .list_containers(c::ListContainersRequest {
            filter: Some(c::ContainerFilter {
                label_selector: selector,
                ..Default::default()
            }),
        })
        .await
        .call("ListContainers")?
        .containers;
    for ctr in containers {
        let st = match cri
            .runtime
            .container_status(c::ContainerStatusRequest {
                container_id: ctr.id.clone(),
                verbose: false,
            })
            .await
            .call("ContainerStatus")
        {
            Ok(r) => match r.status {
                Some(s) => s,
                None => continue,
            },
            Err(e) if e.is_not_found() => continue,
            Err(e) => return Err(e),
        };
        out.containers.push(ContainerInfo {
            id: st.id.clone(),
            sandbox_id: ctr.pod_sandbox_id.clone(),
            name: st
                .metadata
                .as_ref()
                .map(|m| m.name.clone())
                .unwrap_or_default(),
            state: c::ContainerState::try_from(st.state)
                .unwrap_or(c::ContainerState::ContainerUnknown),
            created_at: st.created_at,
            started_at: st.started_at,
            finished_at: st.finished_at,
            exit_code: st.exit_code,
            reason: st.reason.clone(),
            message: st.message.clone(),
            image: st
                .image
                .as_ref()
                .map(|i| i.image.clone())
                .unwrap_or_default(),
            image_ref: st.image_ref.clone(),
            restart_count: st
                .annotations
                .get(RESTART_COUNT_ANNOTATION)
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
            log_path: st.log_path.clone(),
        });
    }
    out.containers
        .sort_by(|a, b| b.created_at.cmp(&a.created_at));
    Ok(out)
}

/// Pod UIDs with anything in the runtime created by rkube.
pub async fn runtime_pod_uids(cri: &mut CriClient) -> Result<Vec<String>, CriError> {
    let sandboxes = cri
        .runtime
        .list_pod_sandbox(c::ListPodSandboxRequest {
            filter: Some(c::PodSandboxFilter {
                label_selector: HashMap::from([(MANAGED_LABEL.to_string(), "true".to_string())]),
                ..Default::default()
            }),
        })
        .await
        .call("ListPodSandbox")?
        .items;
    let mut uids: Vec<String> = sandboxes
        .into_iter()
        .filter_map(|s| s.labels.get(POD_UID_LABEL).cloned())
        .collect();
    uids.sort();
    uids.dedup();
    Ok(uids)
}

/// Identity labels of a pod's runtime objects.
pub fn pod_labels(pod: &Pod) -> HashMap<String, String> {
    HashMap::from([
        (
            POD_NAME_LABEL.to_string(),
            pod.metadata.name.clone().unwrap_or_default(),
        ),
        (
            POD_NAMESPACE_LABEL.to_string(),
            pod.metadata.namespace.clone().unwrap_or_default(),
        ),
        (
            POD_UID_LABEL.to_string(),
            pod.metadata.uid.clone().unwrap_or_default(),
        ),
        (MANAGED_LABEL.to_string(), "true".to_string()),
    ])
}

pub fn host_network(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.host_network)
        .unwrap_or(false)
}

/// The sandbox config for `pod` (the same every time for one pod and attempt).
pub fn sandbox_config(
    pod: &Pod,
    attempt: u32,
    log_dir: &str,
    dns: Option<c::DnsConfig>,
) -> c::PodSandboxConfig {
    let spec = pod.spec.clone().unwrap_or_default();
    let mut labels = pod_labels(pod);
    for (k, v) in pod.metadata.labels.iter().flatten() {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    let annotations: HashMap<String, String> = pod
        .metadata
        .annotations
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    let host_net = spec.host_network.unwrap_or(false);
    // On the host network the pod shares the host's UTS namespace: no hostname is set
    // (as upstream; runc refuses one without a private UTS namespace).
    let hostname = if host_net {
        String::new()
    } else {
        let mut h = spec
            .hostname
            .clone()
            .unwrap_or_else(|| pod.metadata.name.clone().unwrap_or_default());
        h.truncate(63);
        h.trim_end_matches(['-', '.']).to_string()
    };
    let mut port_mappings = Vec::new();
    for ctr in &spec.containers {
        for p in ctr.ports.iter().flatten() {
            if let Some(hp) = p.host_port.filter(|h| *h > 0) {
                port_mappings.push(c::PortMapping {
                    protocol: match p.protocol.as_deref() {
                        Some("UDP") => c::Protocol::Udp as i32,
                        Some("SCTP") => c::Protocol::Sctp as i32,
                        _ => c::Protocol::Tcp as i32,
                    },
                    container_port: p.container_port,
                    host_port: hp,
                    host_ip: p.host_ip.clone().unwrap_or_default(),
                });
            }
        }
    }
    let sc = spec.security_context.clone().unwrap_or_default();
    c::PodSandboxConfig {
        metadata: Some(c::PodSandboxMetadata {
            name: pod.metadata.name.clone().unwrap_or_default(),
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            namespace: pod.metadata.namespace.clone().unwrap_or_default(),
            attempt,
        }),
        hostname,
        log_directory: log_dir.to_string(),
        dns_config: dns,
        port_mappings,
        labels,
        annotations,
        linux: Some(c::LinuxPodSandboxConfig {
            cgroup_parent: String::new(),
            security_context: Some(crate::security_context::sandbox_security_context(pod)),
            sysctls: sc
                .sysctls
                .iter()
                .flatten()
                .map(|s| (s.name.clone(), s.value.clone()))
                .collect(),
            ..Default::default()
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn host_ports_become_port_mappings() {
        let p = pod(serde_json::json!({"containers": [{"name": "c", "ports": [
            {"containerPort": 8080, "hostPort": 30080},
            {"containerPort": 53, "hostPort": 5353, "protocol": "UDP", "hostIP": "10.0.0.1"},
            {"containerPort": 9090},
        ]}]}));
        let cfg = sandbox_config(&p, 0, "/logs", None);
        assert_eq!(cfg.hostname, "web");
        assert_eq!(
            cfg.port_mappings,
            vec![
                c::PortMapping {
                    protocol: c::Protocol::Tcp as i32,
                    container_port: 8080,
                    host_port: 30080,
                    host_ip: String::new(),
                },
                c::PortMapping {
                    protocol: c::Protocol::Udp as i32,
                    container_port: 53,
                    host_port: 5353,
                    host_ip: "10.0.0.1".into(),
                },
            ]
        );
    }

    #[test]
    fn host_network_sandbox_sets_no_hostname() {
        let p = pod(serde_json::json!({"hostNetwork": true, "containers": [{"name": "c"}]}));
        let cfg = sandbox_config(&p, 0, "/logs", None);
        assert_eq!(cfg.hostname, "");
        let ns = cfg
            .linux
            .and_then(|l| l.security_context)
            .and_then(|s| s.namespace_options)
            .unwrap();
        assert_eq!(ns.network, c::NamespaceMode::Node as i32);
    }
}
