//! The Node side of a virtual node: what its object and status look like, planning its
//! podCIDR and InternalIP, registering it, posting status, and watching for conditions
//! someone else wrote (the node lifecycle controller's `Ready=Unknown`).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::{
    DaemonEndpoint, Node, NodeAddress, NodeCondition, NodeDaemonEndpoints, NodeSpec, NodeStatus,
    NodeSystemInfo, ObjectReference,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use parking_lot::Mutex;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::config::VirtualNodeConfig;
use crate::ipam::{BlockAllocator, PodIpAllocator};
use crate::{api_code, Error, NodeState, Shared};

pub const KUBELET_VERSION: &str = "v1.33.0-rkube-virtual";
pub const CONTAINER_RUNTIME_VERSION: &str = "virtual://1.0";
/// Conditions a kubelet owns, in upstream order, with their healthy values.
const CONDITIONS: [(&str, &str, &str, &str); 4] = [
    (
        "MemoryPressure",
        "False",
        "KubeletHasSufficientMemory",
        "kubelet has sufficient memory available",
    ),
    (
        "DiskPressure",
        "False",
        "KubeletHasNoDiskPressure",
        "kubelet has no disk pressure",
    ),
    (
        "PIDPressure",
        "False",
        "KubeletHasSufficientPID",
        "kubelet has sufficient PID available",
    ),
    (
        "Ready",
        "True",
        "KubeletReady",
        "kubelet is posting ready status",
    ),
];
const LIST_PAGE: u32 = 500;

/// Labels of node `name`: the built-in ones, then the configured extras over them.
pub fn node_labels(config: &VirtualNodeConfig, name: &str) -> BTreeMap<String, String> {
    let mut labels: BTreeMap<String, String> = [
        ("type", "virtual-kubelet"),
        ("kubernetes.io/role", "agent"),
        ("kubernetes.io/hostname", name),
        ("kubernetes.io/os", "linux"),
        ("beta.kubernetes.io/os", "linux"),
        ("kubernetes.io/arch", "amd64"),
        ("beta.kubernetes.io/arch", "amd64"),
        ("node.kubernetes.io/instance-type", "virtual"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    labels.extend(config.labels.clone());
    labels
}

/// The Node as registered (status is posted separately, through `nodes/status`).
pub fn build_node(config: &VirtualNodeConfig, name: &str, pod_cidr: Ipv4Net) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(node_labels(config, name)),
            ..Default::default()
        },
        spec: Some(NodeSpec {
            pod_cidr: Some(pod_cidr.to_string()),
            pod_cidrs: Some(vec![pod_cidr.to_string()]),
            taints: (!config.taints.is_empty()).then(|| config.taints.clone()),
            ..Default::default()
        }),
        status: None,
    }
}

/// The status a healthy virtual node reports. `observed` (the conditions on the server)
/// keeps `lastTransitionTime` of conditions whose status did not change.
pub fn desired_status(
    config: &VirtualNodeConfig,
    name: &str,
    internal_ip: Ipv4Addr,
    observed: &[NodeCondition],
    now: Timestamp,
) -> NodeStatus {
    let resources: BTreeMap<String, Quantity> = [
        ("cpu", config.cpu.clone()),
        ("memory", config.memory.clone()),
        ("ephemeral-storage", config.ephemeral_storage.clone()),
        ("pods", config.pods.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), Quantity(v)))
    .collect();
    let conditions = CONDITIONS
        .iter()
        .map(|(type_, status, reason, message)| {
            let since = observed
                .iter()
                .find(|c| c.type_ == *type_ && c.status == *status)
                .and_then(|c| c.last_transition_time.clone())
                .unwrap_or(Time(now));
            NodeCondition {
                type_: type_.to_string(),
                status: status.to_string(),
                reason: Some(reason.to_string()),
                message: Some(message.to_string()),
                last_heartbeat_time: Some(Time(now)),
                last_transition_time: Some(since),
            }
        })
        .collect();
    let id = fake_id(name);
    NodeStatus {
        capacity: Some(resources.clone()),
        allocatable: Some(resources),
        conditions: Some(conditions),
        addresses: Some(vec![
            NodeAddress {
                type_: "InternalIP".to_string(),
                address: internal_ip.to_string(),
            },
            NodeAddress {
                type_: "Hostname".to_string(),
                address: name.to_string(),
            },
        ]),
        node_info: Some(NodeSystemInfo {
            machine_id: id.replace('-', ""),
            system_uuid: id.clone(),
            boot_id: id,
            kernel_version: "virtual".to_string(),
            os_image: "rkube virtual node".to_string(),
            container_runtime_version: CONTAINER_RUNTIME_VERSION.to_string(),
            kubelet_version: KUBELET_VERSION.to_string(),
            kube_proxy_version: String::new(),
            operating_system: "linux".to_string(),
            architecture: "amd64".to_string(),
            swap: None,
        }),
        ..Default::default()
    }
}

/// Whether the server's conditions are the ones a healthy virtual node reports.
pub fn conditions_match(observed: &[NodeCondition]) -> bool {
    CONDITIONS.iter().all(|(type_, status, ..)| {
        observed
            .iter()
            .any(|c| c.type_ == *type_ && c.status == *status)
    })
}

/// A stable UUID-shaped id from the node name (FNV-1a, two seeds), so re-registering
/// reports the same machine.
fn fake_id(name: &str) -> String {
    let fnv = |seed: u64| {
        name.bytes().fold(seed, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        })
    };
    let hex = format!(
        "{:016x}{:016x}",
        fnv(0xcbf2_9ce4_8422_2325),
        fnv(0x8422_2325_cbf2_9ce4)
    );
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Where node `i` of the config gets its pod CIDR and InternalIP.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PlannedNode {
    pub pod_cidr: Ipv4Net,
    pub internal_ip: Ipv4Addr,
}

/// What an existing Node already has.
#[derive(Clone, Debug, Default)]
pub struct ExistingNode {
    pub name: String,
    pub pod_cidr: Option<Ipv4Net>,
    pub internal_ip: Option<Ipv4Addr>,
}

impl ExistingNode {
    fn from_node(node: &Node) -> Self {
        ExistingNode {
            name: node.metadata.name.clone().unwrap_or_default(),
            pod_cidr: node
                .spec
                .as_ref()
                .and_then(|s| s.pod_cidr.as_deref())
                .and_then(|c| c.parse().ok()),
            internal_ip: node
                .status
                .as_ref()
                .and_then(|s| s.addresses.as_ref())
                .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
                .and_then(|a| a.address.parse().ok()),
        }
    }
}

/// Assigns pod CIDRs and InternalIPs: a node that exists keeps what it has; the others
/// get free blocks, skipping every other node's.
pub fn plan_addresses(
    config: &VirtualNodeConfig,
    existing: &[ExistingNode],
) -> Result<Vec<PlannedNode>, Error> {
    let mut cidrs = BlockAllocator::new(config.pod_cidr_base, config.pod_cidr_mask_size);
    let mut ips = BlockAllocator::new(config.node_ip_base, 32);
    // The base's network address looks like no host's.
    ips.reserve(
        Ipv4Net::new(config.node_ip_base.network(), 32).expect("invariant: /32 is a valid prefix"),
    );
    let mut by_name = BTreeMap::new();
    for e in existing {
        if let Some(c) = e.pod_cidr {
            cidrs.reserve(c);
        }
        if let Some(ip) = e.internal_ip {
            ips.reserve(Ipv4Net::new(ip, 32).expect("invariant: /32 is a valid prefix"));
        }
        by_name.insert(e.name.as_str(), e);
    }
    (0..config.count)
        .map(|i| {
            let name = config.node_name(i);
            let found = by_name.get(name.as_str());
            let pod_cidr = match found.and_then(|e| e.pod_cidr) {
                Some(c) => c,
                None => cidrs.allocate().ok_or_else(|| Error::PodCidrExhausted {
                    base: config.pod_cidr_base,
                    mask: config.pod_cidr_mask_size,
                    node: name.clone(),
                })?,
            };
            let internal_ip = match found
                .and_then(|e| e.internal_ip)
                .filter(|ip| config.node_ip_base.contains(ip))
            {
                Some(ip) => ip,
                None => ips
                    .allocate()
                    .map(|n| n.addr())
                    .ok_or_else(|| Error::NodeIpExhausted {
                        base: config.node_ip_base,
                        node: name.clone(),
                    })?,
            };
            Ok(PlannedNode {
                pod_cidr,
                internal_ip,
            })
        })
        .collect()
}

/// Lists the cluster's Nodes (paged) and plans our nodes' addresses.
pub(crate) async fn plan(
    client: &Client,
    config: &VirtualNodeConfig,
) -> Result<Vec<PlannedNode>, Error> {
    let api: Api<Node> = Api::all(client.clone());
    let mut existing = Vec::new();
    let mut params = ListParams::default().limit(LIST_PAGE);
    loop {
        let page = api.list(&params).await?;
        existing.extend(page.items.iter().map(ExistingNode::from_node));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    plan_addresses(config, &existing)
}

/// Creates (or adopts) the Node, posts its status, creates its Lease. Safe to repeat.
pub(crate) async fn register(
    client: &Client,
    config: &VirtualNodeConfig,
    node: &NodeState,
    pod_cidr: Ipv4Net,
) -> Result<(), Error> {
    let api: Api<Node> = Api::all(client.clone());
    let (registered, created) = match api
        .create(
            &PostParams::default(),
            &build_node(config, &node.name, pod_cidr),
        )
        .await
    {
        Ok(n) => (n, true),
        Err(e) if api_code(&e) == Some(409) => {
            (adopt(&api, config, &node.name, pod_cidr).await?, false)
        }
        Err(e) => return Err(e.into()),
    };
    let uid = registered.metadata.uid.clone().unwrap_or_default();
    let _ = node.uid.set(uid.clone());
    // Node IPAM may have set the podCIDR first; the server's value wins.
    let cidr = ExistingNode::from_node(&registered)
        .pod_cidr
        .unwrap_or(pod_cidr);
    let _ = node.pod_ips.set(Mutex::new(PodIpAllocator::new(cidr)));
    *node.observed_conditions.lock() = registered
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    post_status(client, config, node).await?;
    crate::lease::ensure(client, config, node).await?;
    if created && config.record_node_events {
        record_registration_events(node, &uid).await;
    }
    tracing::debug!(node = %node.name, %cidr, "registered");
    Ok(())
}

/// An existing Node: our labels over its labels, and our podCIDR if it has none.
async fn adopt(
    api: &Api<Node>,
    config: &VirtualNodeConfig,
    name: &str,
    pod_cidr: Ipv4Net,
) -> Result<Node, Error> {
    let current = api.get(name).await?;
    let mut patch = json!({"metadata": {"labels": node_labels(config, name)}});
    if ExistingNode::from_node(&current).pod_cidr.is_none() {
        patch["spec"] =
            json!({"podCIDR": pod_cidr.to_string(), "podCIDRs": [pod_cidr.to_string()]});
    }
    Ok(api
        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await?)
}

async fn record_registration_events(node: &NodeState, uid: &str) {
    let reference = ObjectReference {
        api_version: Some("v1".to_string()),
        kind: Some("Node".to_string()),
        name: Some(node.name.clone()),
        uid: Some(uid.to_string()),
        ..Default::default()
    };
    for (reason, note) in [
        ("Starting", "Starting kubelet.".to_string()),
        (
            "NodeReady",
            format!("Node {} status is now: NodeReady", node.name),
        ),
    ] {
        let event = Event {
            type_: EventType::Normal,
            reason: reason.to_string(),
            note: Some(note),
            action: reason.to_string(),
            secondary: None,
        };
        if let Err(e) = node.recorder.publish(&event, &reference).await {
            tracing::debug!(node = %node.name, error = %e, "recording event failed");
        }
    }
}

/// Posts the node's status through `nodes/status` (strategic merge: conditions merge
/// by type, so conditions others own survive).
pub(crate) async fn post_status(
    client: &Client,
    config: &VirtualNodeConfig,
    node: &NodeState,
) -> Result<(), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    let ip = node
        .internal_ip
        .get()
        .copied()
        .unwrap_or(Ipv4Addr::UNSPECIFIED);
    let observed = node.observed_conditions.lock().clone();
    let mut status = desired_status(config, &node.name, ip, &observed, Timestamp::now());
    if let Some(port) = node.kubelet_port.get() {
        status.daemon_endpoints = Some(NodeDaemonEndpoints {
            kubelet_endpoint: Some(DaemonEndpoint {
                port: i32::from(*port),
            }),
        });
    }
    let patch = json!({ "status": status });
    let updated = api
        .patch_status(
            &node.name,
            &PatchParams::default(),
            &Patch::Strategic(&patch),
        )
        .await?;
    *node.observed_conditions.lock() = updated
        .status
        .and_then(|s| s.conditions)
        .unwrap_or_default();
    *node.last_status.lock() = Some(Instant::now());
    Ok(())
}

/// Watches Nodes; when one of ours shows conditions we did not post (and it is not
/// paused), asks the heartbeat to post status now, as a kubelet does on its next sync.
pub(crate) async fn watch_nodes(client: Client, shared: Arc<Shared>, cancel: CancellationToken) {
    let api: Api<Node> = Api::all(client);
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    futures::pin_mut!(stream);
    loop {
        let event = tokio::select! {
            _ = cancel.cancelled() => return,
            e = stream.next() => e,
        };
        match event {
            Some(Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n))) => {
                on_node(&shared, n)
            }
            Some(Ok(watcher::Event::Delete(n))) => {
                if let Some((_, st)) = n
                    .metadata
                    .name
                    .as_deref()
                    .and_then(|name| shared.node(name))
                {
                    // As a kubelet: it registers once and does not fight a deletion.
                    tracing::warn!(node = %st.name, "virtual node deleted from the API; not re-registering");
                }
            }
            Some(Ok(_)) => {}
            Some(Err(e)) => tracing::debug!(error = %e, "node watch error; retrying"),
            None => return,
        }
    }
}

fn on_node(shared: &Shared, node: Node) {
    let Some((index, st)) = node
        .metadata
        .name
        .as_deref()
        .and_then(|name| shared.node(name))
    else {
        return;
    };
    if st.is_paused() {
        return;
    }
    let conditions = node.status.and_then(|s| s.conditions).unwrap_or_default();
    let healthy = conditions_match(&conditions);
    *st.observed_conditions.lock() = conditions;
    if !healthy {
        st.force_status.store(true, Ordering::Release);
        let _ = shared.heartbeat_wake.send(index);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> VirtualNodeConfig {
        VirtualNodeConfig {
            count: 3,
            ..Default::default()
        }
    }

    #[test]
    fn node_carries_virtual_kubelet_labels_taint_and_pod_cidr() {
        let mut c = cfg();
        c.labels.insert("zone".to_string(), "z1".to_string());
        c.labels.insert("type".to_string(), "special".to_string());
        let n = build_node(&c, "rkube-virtual-0", "10.42.0.0/24".parse().expect("cidr"));
        let labels = n.metadata.labels.expect("labels");
        for (k, v) in [
            ("type", "special"),
            ("kubernetes.io/role", "agent"),
            ("kubernetes.io/hostname", "rkube-virtual-0"),
            ("kubernetes.io/os", "linux"),
            ("beta.kubernetes.io/os", "linux"),
            ("node.kubernetes.io/instance-type", "virtual"),
            ("zone", "z1"),
        ] {
            assert_eq!(labels.get(k).map(String::as_str), Some(v), "{k}");
        }
        let spec = n.spec.expect("spec");
        assert_eq!(spec.pod_cidr.as_deref(), Some("10.42.0.0/24"));
        let taints = spec.taints.expect("taints");
        assert_eq!(taints[0].key, "virtual-kubelet.io/provider");
        assert_eq!(taints[0].effect, "NoSchedule");
        let bare = build_node(
            &VirtualNodeConfig {
                taints: vec![],
                ..cfg()
            },
            "n",
            "10.42.0.0/24".parse().expect("cidr"),
        );
        assert_eq!(bare.spec.expect("spec").taints, None);
    }

    #[test]
    fn status_is_ready_and_keeps_transition_times() {
        let t0 = Timestamp::from_second(1_700_000_000).expect("ts");
        let t1 = Timestamp::from_second(1_700_000_060).expect("ts");
        let first = desired_status(&cfg(), "n0", Ipv4Addr::new(100, 64, 0, 1), &[], t0);
        let conds = first.conditions.clone().expect("conditions");
        assert_eq!(
            conds
                .iter()
                .map(|c| (c.type_.as_str(), c.status.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("MemoryPressure", "False"),
                ("DiskPressure", "False"),
                ("PIDPressure", "False"),
                ("Ready", "True")
            ]
        );
        assert!(conditions_match(&conds));
        let ready = &conds[3];
        assert_eq!(ready.reason.as_deref(), Some("KubeletReady"));
        assert_eq!(
            ready.message.as_deref(),
            Some("kubelet is posting ready status")
        );
        let cap = first.capacity.expect("capacity");
        assert_eq!(cap.get("cpu"), Some(&Quantity("8".to_string())));
        assert_eq!(cap.get("memory"), Some(&Quantity("32Gi".to_string())));
        assert_eq!(cap.get("pods"), Some(&Quantity("110".to_string())));
        let info = first.node_info.expect("nodeInfo");
        assert_eq!(info.kubelet_version, "v1.33.0-rkube-virtual");
        assert_eq!(info.container_runtime_version, "virtual://1.0");
        let addrs = first.addresses.expect("addresses");
        assert_eq!(
            (addrs[0].type_.as_str(), addrs[0].address.as_str()),
            ("InternalIP", "100.64.0.1")
        );
        assert_eq!(
            (addrs[1].type_.as_str(), addrs[1].address.as_str()),
            ("Hostname", "n0")
        );

        // Unchanged conditions keep t0; a Ready that was Unknown transitions at t1.
        let mut observed = conds.clone();
        observed[3].status = "Unknown".to_string();
        assert!(!conditions_match(&observed));
        let second = desired_status(&cfg(), "n0", Ipv4Addr::new(100, 64, 0, 1), &observed, t1);
        let conds = second.conditions.expect("conditions");
        assert_eq!(conds[0].last_transition_time, Some(Time(t0)));
        assert_eq!(conds[0].last_heartbeat_time, Some(Time(t1)));
        assert_eq!(conds[3].last_transition_time, Some(Time(t1)));
    }

    #[test]
    fn plan_reuses_existing_and_skips_others() {
        let existing = vec![
            ExistingNode {
                name: "rkube-virtual-1".to_string(),
                pod_cidr: Some("10.42.7.0/24".parse().expect("cidr")),
                internal_ip: Some(Ipv4Addr::new(100, 64, 0, 9)),
            },
            ExistingNode {
                name: "real-node".to_string(),
                pod_cidr: Some("10.42.0.0/24".parse().expect("cidr")),
                internal_ip: Some(Ipv4Addr::new(100, 64, 0, 1)),
            },
        ];
        let plan = plan_addresses(&cfg(), &existing).expect("plan");
        let got: Vec<(String, String)> = plan
            .iter()
            .map(|p| (p.pod_cidr.to_string(), p.internal_ip.to_string()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("10.42.1.0/24".to_string(), "100.64.0.2".to_string()),
                ("10.42.7.0/24".to_string(), "100.64.0.9".to_string()),
                ("10.42.2.0/24".to_string(), "100.64.0.3".to_string()),
            ]
        );
    }

    #[test]
    fn plan_fails_when_pod_cidrs_run_out() {
        let c = VirtualNodeConfig {
            count: 300,
            ..Default::default()
        };
        let err = plan_addresses(&c, &[]).expect_err("256 /24s in a /16");
        assert!(
            matches!(err, Error::PodCidrExhausted { ref node, .. } if node == "rkube-virtual-256"),
            "{err}"
        );
    }

    #[test]
    fn fake_ids_are_stable_and_distinct() {
        assert_eq!(fake_id("a"), fake_id("a"));
        assert_ne!(fake_id("a"), fake_id("b"));
        assert_eq!(fake_id("a").len(), 36);
    }
}
