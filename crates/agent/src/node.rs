//! The Node object: registration with labels, addresses, capacity and nodeInfo; the
//! status loop (conditions Ready / MemoryPressure / DiskPressure / PIDPressure, posted when
//! they change and at least every `node_status_report_frequency`); the Lease in
//! `kube-node-lease` renewed every `node_lease_renew_interval`; and waiting for the
//! node's podCIDR.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeStatus,
    NodeSystemInfo,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta, OwnerReference, Time};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::host::HostInfo;
use crate::AgentConfig;

/// The version this agent reports as `kubeletVersion`.
pub const KUBELET_VERSION: &str = "v1.33.0+rkube";

pub const LEASE_NAMESPACE: &str = "kube-node-lease";

fn now() -> k8s_openapi::jiff::Timestamp {
    k8s_openapi::jiff::Timestamp::now()
}

pub fn node_labels(config: &AgentConfig) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    l.insert(
        "kubernetes.io/hostname".to_string(),
        config.node_name.clone(),
    );
    l.insert("kubernetes.io/os".to_string(), "linux".to_string());
    l.insert(
        "kubernetes.io/arch".to_string(),
        crate::oci::host_architecture().to_string(),
    );
    l.insert("beta.kubernetes.io/os".to_string(), "linux".to_string());
    l.insert(
        "beta.kubernetes.io/arch".to_string(),
        crate::oci::host_architecture().to_string(),
    );
    if config.control_plane {
        l.insert(
            "node-role.kubernetes.io/control-plane".to_string(),
            "true".to_string(),
        );
    }
    for (k, v) in &config.node_labels {
        l.insert(k.clone(), v.clone());
    }
    l
}

fn capacity(host: &HostInfo, max_pods: u32) -> BTreeMap<String, Quantity> {
    let mut c = BTreeMap::new();
    c.insert("cpu".to_string(), Quantity(host.cpus.to_string()));
    c.insert(
        "memory".to_string(),
        Quantity(format!("{}Ki", host.memory_bytes / 1024)),
    );
    c.insert(
        "ephemeral-storage".to_string(),
        Quantity(format!("{}Ki", host.ephemeral_storage_bytes / 1024)),
    );
    c.insert("pods".to_string(), Quantity(max_pods.to_string()));
    c.insert("hugepages-2Mi".to_string(), Quantity("0".to_string()));
    c
}

/// Allocatable: capacity less the default hard eviction thresholds (memory.available
/// 100Mi, nodefs.available 10%), as upstream's node allocatable without reservations.
fn allocatable(host: &HostInfo, max_pods: u32) -> BTreeMap<String, Quantity> {
    let mut a = capacity(host, max_pods);
    let mem = host.memory_bytes.saturating_sub(100 * 1024 * 1024);
    a.insert("memory".to_string(), Quantity(format!("{}Ki", mem / 1024)));
    let disk = host.ephemeral_storage_bytes - host.ephemeral_storage_bytes / 10;
    a.insert("ephemeral-storage".to_string(), Quantity(disk.to_string()));
    a
}

/// MemoryPressure/DiskPressure now: memory, the agent directory's filesystem (nodefs) and
/// the runtime's image filesystem against `--eviction-hard`.
pub async fn observe_pressure(
    config: &AgentConfig,
    host: &HostInfo,
    cri: &mut cri::CriClient,
) -> crate::eviction::Pressure {
    let imagefs = match crate::image_gc::image_fs_path(cri).await {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(error = %e, "no image filesystem info from the runtime");
            None
        }
    };
    let obs = crate::eviction::observe(&config.agent_dir(), imagefs.as_deref(), host.memory_bytes);
    let crossed = crate::eviction::crossed(&config.eviction_hard, &obs);
    if !crossed.is_empty() {
        tracing::debug!(thresholds = ?crossed, "eviction thresholds crossed");
    }
    crate::eviction::pressure(&config.eviction_hard, &obs)
}

/// The conditions as observed now (with transition times carried over from `previous`).
pub fn conditions(
    previous: &[NodeCondition],
    runtime_ready: bool,
    pressure: crate::eviction::Pressure,
) -> Vec<NodeCondition> {
    let mem_pressure = pressure.memory;
    let disk_pressure = pressure.disk;
    let t = Time(now());
    let mk = |type_: &str, status: bool, reason: &str, message: String| {
        let status = if status { "True" } else { "False" }.to_string();
        let prev = previous.iter().find(|c| c.type_ == type_);
        let transition = match prev {
            Some(p) if p.status == status => p.last_transition_time.clone(),
            _ => Some(t.clone()),
        };
        NodeCondition {
            type_: type_.to_string(),
            status,
            reason: Some(reason.to_string()),
            message: Some(message),
            last_heartbeat_time: Some(t.clone()),
            last_transition_time: transition,
        }
    };
    vec![
        if mem_pressure {
            mk(
                "MemoryPressure",
                true,
                "KubeletHasInsufficientMemory",
                "kubelet has insufficient memory available".into(),
            )
        } else {
            mk(
                "MemoryPressure",
                false,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available".into(),
            )
        },
        if disk_pressure {
            mk(
                "DiskPressure",
                true,
                "KubeletHasDiskPressure",
                "kubelet has disk pressure".into(),
            )
        } else {
            mk(
                "DiskPressure",
                false,
                "KubeletHasNoDiskPressure",
                "kubelet has no disk pressure".into(),
            )
        },
        mk(
            "PIDPressure",
            false,
            "KubeletHasSufficientPID",
            "kubelet has sufficient PID available".into(),
        ),
        if runtime_ready {
            mk(
                "Ready",
                true,
                "KubeletReady",
                "kubelet is posting ready status".into(),
            )
        } else {
            mk(
                "Ready",
                false,
                "KubeletNotReady",
                "container runtime is down".into(),
            )
        },
    ]
}

pub fn desired_status(
    config: &AgentConfig,
    host: &HostInfo,
    runtime_version: &str,
    previous: &[NodeCondition],
    runtime_ready: bool,
    pressure: crate::eviction::Pressure,
) -> NodeStatus {
    NodeStatus {
        capacity: Some(capacity(host, config.max_pods)),
        allocatable: Some(allocatable(host, config.max_pods)),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".into(),
                address: config.node_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".into(),
                address: config.node_name.clone(),
            },
        ]),
        conditions: Some(conditions(previous, runtime_ready, pressure)),
        daemon_endpoints: Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(config.kubelet_port),
            }),
        }),
        node_info: Some(NodeSystemInfo {
            architecture: crate::oci::host_architecture().to_string(),
            boot_id: host.boot_id.clone(),
            container_runtime_version: runtime_version.to_string(),
            kernel_version: host.kernel_version.clone(),
            kube_proxy_version: KUBELET_VERSION.to_string(),
            kubelet_version: KUBELET_VERSION.to_string(),
            machine_id: host.machine_id.clone(),
            operating_system: "linux".to_string(),
            os_image: host.os_image.clone(),
            system_uuid: host.system_uuid.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Creates the Node, or adopts an existing one (our labels win).
pub async fn register(
    client: &Client,
    config: &AgentConfig,
    status: &NodeStatus,
) -> kube::Result<Node> {
    let api: Api<Node> = Api::all(client.clone());
    let labels = node_labels(config);
    let node = Node {
        metadata: ObjectMeta {
            name: Some(config.node_name.clone()),
            labels: Some(labels.clone()),
            annotations: Some(BTreeMap::from([(
                "node.alpha.kubernetes.io/ttl".to_string(),
                "0".to_string(),
            )])),
            ..Default::default()
        },
        status: Some(status.clone()),
        ..Default::default()
    };
    let created = match api.create(&PostParams::default(), &node).await {
        Ok(n) => n,
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let patch = json!({"metadata": {"labels": labels}});
            api.patch(
                &config.node_name,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?
        }
        Err(e) => return Err(e),
    };
    let patch = json!({"status": status});
    api.patch_status(
        &config.node_name,
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    tracing::info!(node = %config.node_name, "node registered");
    Ok(created)
}

/// Waits for the node's `spec.podCIDR` (set by the node IPAM controller from
/// `--cluster-cidr`).
///
/// FALLBACK (until the node IPAM controller runs everywhere): if none is assigned within
/// `fallback_after`, the agent carves the first free /24 of `cluster_cidr` itself.
pub async fn wait_for_pod_cidr(
    client: &Client,
    config: &AgentConfig,
    cancel: &CancellationToken,
) -> anyhow::Result<ipnet::Ipv4Net> {
    let api: Api<Node> = Api::all(client.clone());
    let deadline = tokio::time::Instant::now() + config.pod_cidr_fallback_after;
    loop {
        let node = api.get(&config.node_name).await?;
        if let Some(c) = node.spec.as_ref().and_then(|s| s.pod_cidr.as_deref()) {
            if let Ok(net) = c.parse::<ipnet::Ipv4Net>() {
                return Ok(net);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            if let Some(cluster) = config.cluster_cidr {
                return carve_pod_cidr(&api, &config.node_name, cluster).await;
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => anyhow::bail!("cancelled while waiting for a podCIDR"),
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
}

/// FALLBACK podCIDR allocation (see [`wait_for_pod_cidr`]): the first /24 of
/// `cluster` no other node uses.
async fn carve_pod_cidr(
    api: &Api<Node>,
    name: &str,
    cluster: ipnet::Ipv4Net,
) -> anyhow::Result<ipnet::Ipv4Net> {
    let nodes = api.list(&Default::default()).await?;
    let used: Vec<ipnet::Ipv4Net> = nodes
        .items
        .iter()
        .filter_map(|n| n.spec.as_ref()?.pod_cidr.as_deref()?.parse().ok())
        .collect();
    let prefix = cluster.prefix_len().max(24);
    let subnets = cluster.subnets(prefix)?;
    for net in subnets {
        if !used
            .iter()
            .any(|u| u.contains(&net.network()) || net.contains(&u.network()))
        {
            let patch =
                json!({"spec": {"podCIDR": net.to_string(), "podCIDRs": [net.to_string()]}});
            api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await?;
            tracing::warn!(pod_cidr = %net, "no podCIDR assigned by node IPAM; the agent carved one itself");
            return Ok(net);
        }
    }
    anyhow::bail!("no free podCIDR left in {cluster}")
}

/// Posts status when conditions change and at least every report period; renews the Lease.
pub async fn run_status_and_lease(
    client: Client,
    config: AgentConfig,
    host: HostInfo,
    runtime_version: String,
    mut cri: cri::CriClient,
    cancel: CancellationToken,
) {
    let nodes: Api<Node> = Api::all(client.clone());
    let leases: Api<Lease> = Api::namespaced(client.clone(), LEASE_NAMESPACE);
    let mut last_post = tokio::time::Instant::now() - config.node_status_report_frequency;
    let mut last_conditions: Vec<(String, String)> = Vec::new();
    let mut node_uid: Option<String> = None;
    loop {
        // Lease first: it is what the node lifecycle controller watches.
        if node_uid.is_none() {
            node_uid = nodes
                .get(&config.node_name)
                .await
                .ok()
                .and_then(|n| n.metadata.uid);
        }
        if let Err(e) = renew_lease(&leases, &config, node_uid.as_deref()).await {
            tracing::warn!(error = %e, "could not renew node lease");
        }
        let runtime_ready = cri
            .runtime
            .version(cri::v1::VersionRequest {
                version: "v1".into(),
            })
            .await
            .is_ok();
        let pressure = observe_pressure(&config, &host, &mut cri).await;
        match nodes.get_status(&config.node_name).await {
            Ok(current) => {
                let previous = current
                    .status
                    .as_ref()
                    .and_then(|s| s.conditions.clone())
                    .unwrap_or_default();
                let status = desired_status(
                    &config,
                    &host,
                    &runtime_version,
                    &previous,
                    runtime_ready,
                    pressure,
                );
                let summary: Vec<(String, String)> = status
                    .conditions
                    .iter()
                    .flatten()
                    .map(|c| (c.type_.clone(), c.status.clone()))
                    .collect();
                if summary != last_conditions
                    || last_post.elapsed() >= config.node_status_report_frequency
                {
                    let patch = json!({"status": status});
                    match nodes
                        .patch_status(
                            &config.node_name,
                            &PatchParams::default(),
                            &Patch::Merge(&patch),
                        )
                        .await
                    {
                        Ok(_) => {
                            last_post = tokio::time::Instant::now();
                            last_conditions = summary;
                        }
                        Err(e) => tracing::warn!(error = %e, "could not update node status"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not read node"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(config.node_lease_renew_interval) => {}
        }
    }
}

async fn renew_lease(
    leases: &Api<Lease>,
    config: &AgentConfig,
    node_uid: Option<&str>,
) -> kube::Result<()> {
    let now = MicroTime(now());
    let owner = node_uid.map(|uid| {
        vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Node".into(),
            name: config.node_name.clone(),
            uid: uid.to_string(),
            ..Default::default()
        }]
    });
    match leases.get_opt(&config.node_name).await? {
        Some(_) => {
            let patch = json!({"spec": {"holderIdentity": config.node_name, "renewTime": now, "leaseDurationSeconds": 40}});
            leases
                .patch(
                    &config.node_name,
                    &PatchParams::default(),
                    &Patch::Merge(&patch),
                )
                .await?;
        }
        None => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(config.node_name.clone()),
                    namespace: Some(LEASE_NAMESPACE.to_string()),
                    owner_references: owner,
                    ..Default::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(config.node_name.clone()),
                    lease_duration_seconds: Some(40),
                    renew_time: Some(now),
                    ..Default::default()
                }),
            };
            leases.create(&PostParams::default(), &lease).await?;
        }
    }
    Ok(())
}

/// Refuses node IPs the kubelet refuses (loopback, unspecified).
pub fn validate_node_ip(ip: IpAddr) -> Result<(), String> {
    if ip.is_loopback() {
        return Err(format!("nodeIP can't be loopback address: {ip}"));
    }
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!("nodeIP must be a valid unicast address: {ip}"));
    }
    Ok(())
}
