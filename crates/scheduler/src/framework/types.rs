//! What plugins reason about, precomputed once per object (upstream `framework/types.go`):
//! a pod's effective requests, host ports and affinity terms ([`PodInfo`]); a node's
//! allocatable and requested resources, pods and used ports ([`NodeInfo`]).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use apis::selectors::label::LabelSelector;
use k8s_openapi::api::core::v1::{Container, Node, Pod, PodAffinityTerm, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::jiff::Timestamp;

use super::quantity;

/// The cpu a container without a cpu request is counted as using when scoring (100m).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory a container without a memory request is counted as using when scoring (200Mi).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// Amounts of the resources the scheduler accounts for (upstream `framework.Resource`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resource {
    pub milli_cpu: i64,
    pub memory: i64,
    pub ephemeral_storage: i64,
    pub allowed_pod_number: i64,
    /// Extended, hugepage and other prefixed resources, sorted by name.
    pub scalar: Vec<(String, i64)>,
}

/// Whether a resource name is accounted as a scalar (extended resources such as
/// `example.com/gpu`, `hugepages-*`, `attachable-volumes-*`).
pub fn is_scalar_resource_name(name: &str) -> bool {
    (name.contains('/') && !name.starts_with("requests."))
        || name.starts_with("hugepages-")
        || name.starts_with("attachable-volumes-")
}

impl Resource {
    /// Reads a resource list (requests, allocatable, overhead).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Resource {
        let mut r = Resource::default();
        for (name, q) in list {
            r.add_named(name, q);
        }
        r
    }

    fn add_named(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => {
                self.milli_cpu = self
                    .milli_cpu
                    .saturating_add(quantity::milli_value(q).unwrap_or(0))
            }
            "memory" => self.memory = self.memory.saturating_add(quantity::value(q).unwrap_or(0)),
            "ephemeral-storage" => {
                self.ephemeral_storage = self
                    .ephemeral_storage
                    .saturating_add(quantity::value(q).unwrap_or(0))
            }
            "pods" => {
                self.allowed_pod_number = self
                    .allowed_pod_number
                    .saturating_add(quantity::value(q).unwrap_or(0))
            }
            other if is_scalar_resource_name(other) => {
                self.add_scalar(other, quantity::value(q).unwrap_or(0))
            }
            _ => {}
        }
    }

    /// The amount of scalar resource `name` (0 if absent).
    pub fn scalar(&self, name: &str) -> i64 {
        self.scalar
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, v)| *v)
    }

    fn add_scalar(&mut self, name: &str, v: i64) {
        match self.scalar.binary_search_by(|(n, _)| n.as_str().cmp(name)) {
            Ok(i) => self.scalar[i].1 = self.scalar[i].1.saturating_add(v),
            Err(i) => self.scalar.insert(i, (name.to_string(), v)),
        }
    }

    pub fn add(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_add(other.milli_cpu);
        self.memory = self.memory.saturating_add(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_add(other.ephemeral_storage);
        self.allowed_pod_number = self
            .allowed_pod_number
            .saturating_add(other.allowed_pod_number);
        for (n, v) in &other.scalar {
            self.add_scalar(n, *v);
        }
    }

    pub fn sub(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.saturating_sub(other.milli_cpu);
        self.memory = self.memory.saturating_sub(other.memory);
        self.ephemeral_storage = self
            .ephemeral_storage
            .saturating_sub(other.ephemeral_storage);
        self.allowed_pod_number = self
            .allowed_pod_number
            .saturating_sub(other.allowed_pod_number);
        for (n, v) in &other.scalar {
            self.add_scalar(n, v.saturating_neg());
        }
    }

    /// Raises every amount to at least `other`'s.
    pub fn set_max(&mut self, other: &Resource) {
        self.milli_cpu = self.milli_cpu.max(other.milli_cpu);
        self.memory = self.memory.max(other.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(other.ephemeral_storage);
        self.allowed_pod_number = self.allowed_pod_number.max(other.allowed_pod_number);
        for (n, v) in &other.scalar {
            let have = self.scalar(n);
            if *v > have {
                self.add_scalar(n, v - have);
            }
        }
    }

    /// Whether nothing is requested (pod count aside).
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.iter().all(|(_, v)| *v == 0)
    }
}

/// One `hostPort` a pod binds on its node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub protocol: String,
    pub ip: String,
    pub port: i32,
}

impl HostPort {
    /// Two bindings clash on the same protocol and port unless both name different
    /// specific addresses.
    pub fn conflicts(&self, other: &HostPort) -> bool {
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == "0.0.0.0" || other.ip == "0.0.0.0")
    }
}

/// A parsed required pod (anti-)affinity term (upstream `framework.AffinityTerm`).
#[derive(Clone, Debug)]
pub struct AffinityTerm {
    pub namespaces: Vec<String>,
    pub namespace_selector: LabelSelector,
    pub selector: LabelSelector,
    pub topology_key: String,
}

/// A preferred term with its weight.
#[derive(Clone, Debug)]
pub struct WeightedAffinityTerm {
    pub term: AffinityTerm,
    pub weight: i32,
}

impl AffinityTerm {
    /// Parses `term` as written in a pod of namespace `pod_namespace`: no namespaces and
    /// no namespace selector mean the pod's own namespace. Bad selectors match nothing.
    pub fn parse(term: &PodAffinityTerm, pod_namespace: &str) -> AffinityTerm {
        let selector = LabelSelector::from_metav1_opt(term.label_selector.as_ref())
            .unwrap_or_else(|_| LabelSelector::nothing());
        let namespace_selector = LabelSelector::from_metav1_opt(term.namespace_selector.as_ref())
            .unwrap_or_else(|_| LabelSelector::nothing());
        let mut namespaces = term.namespaces.clone().unwrap_or_default();
        if namespaces.is_empty() && term.namespace_selector.is_none() {
            namespaces.push(pod_namespace.to_string());
        }
        AffinityTerm {
            namespaces,
            namespace_selector,
            selector,
            topology_key: term.topology_key.clone(),
        }
    }

    /// Whether `pod` is selected by the term; `ns_labels` are the labels of `pod`'s namespace.
    pub fn matches(&self, pod: &PodInfo, ns_labels: Option<&BTreeMap<String, String>>) -> bool {
        (self.namespaces.iter().any(|n| *n == pod.namespace)
            || (!self.namespace_selector.matches_nothing()
                && self.namespace_selector.matches(&ns_labels)))
            && self.selector.matches(&pod.labels())
    }
}

/// A pod with everything the plugins need precomputed.
#[derive(Clone, Debug)]
pub struct PodInfo {
    pub pod: Arc<Pod>,
    pub uid: String,
    pub namespace: String,
    pub name: String,
    /// `spec.priority`, or the value of its PriorityClass.
    pub priority: i32,
    /// `preemptionPolicy: Never`.
    pub preempt_never: bool,
    /// Effective requests: containers summed, init containers as a max, plus overhead.
    pub requests: Resource,
    /// Requests with the scoring defaults for containers that request no cpu/memory.
    pub non_zero_requests: Resource,
    pub host_ports: Vec<HostPort>,
    pub required_affinity_terms: Vec<AffinityTerm>,
    pub required_anti_affinity_terms: Vec<AffinityTerm>,
    pub preferred_affinity_terms: Vec<WeightedAffinityTerm>,
    pub preferred_anti_affinity_terms: Vec<WeightedAffinityTerm>,
    /// `metadata.deletionTimestamp` is set.
    pub terminating: bool,
    /// When the pod started (or was created), for preemption tie-breaks.
    pub start_time: Option<Timestamp>,
}

fn container_requests(c: &Container) -> Option<&BTreeMap<String, Quantity>> {
    c.resources.as_ref().and_then(|r| r.requests.as_ref())
}

/// Requests of a pod per upstream `resourcehelper.PodRequests`: sidecar (restartable)
/// init containers add up with the app containers; each regular init container needs
/// its own request plus the sidecars started before it; the pod needs the max of both;
/// overhead comes on top. `defaults` fills in missing cpu/memory per container.
fn pod_requests(pod: &Pod, defaults: bool) -> Resource {
    let Some(spec) = pod.spec.as_ref() else {
        return Resource::default();
    };
    let container = |c: &Container| {
        let mut r = container_requests(c)
            .map(Resource::from_list)
            .unwrap_or_default();
        if defaults {
            let list = container_requests(c);
            if !list.is_some_and(|l| l.contains_key("cpu")) {
                r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
            }
            if !list.is_some_and(|l| l.contains_key("memory")) {
                r.memory = DEFAULT_MEMORY_REQUEST;
            }
        }
        r
    };
    let mut reqs = Resource::default();
    for c in &spec.containers {
        reqs.add(&container(c));
    }
    let mut restartable = Resource::default();
    let mut init_max = Resource::default();
    for c in spec.init_containers.iter().flatten() {
        let r = container(c);
        if c.restart_policy.as_deref() == Some("Always") {
            reqs.add(&r);
            restartable.add(&r);
            init_max.set_max(&restartable);
        } else {
            let mut with_sidecars = r;
            with_sidecars.add(&restartable);
            init_max.set_max(&with_sidecars);
        }
    }
    reqs.set_max(&init_max);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resource::from_list(overhead));
    }
    reqs
}

fn host_ports(pod: &Pod) -> Vec<HostPort> {
    let Some(spec) = pod.spec.as_ref() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for c in &spec.containers {
        for p in c.ports.iter().flatten() {
            if let Some(port) = p.host_port.filter(|p| *p > 0) {
                out.push(HostPort {
                    protocol: p
                        .protocol
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "TCP".into()),
                    ip: p
                        .host_ip
                        .clone()
                        .filter(|s| !s.is_empty())
                        .unwrap_or_else(|| "0.0.0.0".into()),
                    port,
                });
            }
        }
    }
    out
}

impl PodInfo {
    /// Precomputes `pod`; `priority` and `preempt_never` are resolved by the caller
    /// (from `spec.priority` or the pod's PriorityClass).
    pub fn new(pod: Arc<Pod>, priority: i32, preempt_never: bool) -> PodInfo {
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let affinity = pod.spec.as_ref().and_then(|s| s.affinity.as_ref());
        let parse = |terms: Option<&Vec<PodAffinityTerm>>| -> Vec<AffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|t| AffinityTerm::parse(t, &namespace))
                .collect()
        };
        let pa = affinity.and_then(|a| a.pod_affinity.as_ref());
        let paa = affinity.and_then(|a| a.pod_anti_affinity.as_ref());
        let weighted = |terms: Option<
            &Vec<k8s_openapi::api::core::v1::WeightedPodAffinityTerm>,
        >|
         -> Vec<WeightedAffinityTerm> {
            terms
                .into_iter()
                .flatten()
                .map(|w| WeightedAffinityTerm {
                    term: AffinityTerm::parse(&w.pod_affinity_term, &namespace),
                    weight: w.weight,
                })
                .collect()
        };
        let start_time = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .or(pod.metadata.creation_timestamp.as_ref())
            .map(|t| t.0);
        PodInfo {
            uid: pod.metadata.uid.clone().unwrap_or_default(),
            name: pod.metadata.name.clone().unwrap_or_default(),
            priority,
            preempt_never,
            requests: pod_requests(&pod, false),
            non_zero_requests: pod_requests(&pod, true),
            host_ports: host_ports(&pod),
            required_affinity_terms: parse(pa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            required_anti_affinity_terms: parse(paa.and_then(|a| {
                a.required_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_affinity_terms: weighted(pa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            preferred_anti_affinity_terms: weighted(paa.and_then(|a| {
                a.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })),
            terminating: pod.metadata.deletion_timestamp.is_some(),
            start_time,
            namespace,
            pod,
        }
    }

    /// A pod whose priority is `spec.priority` (0 if unset); handy in tests.
    pub fn from_pod(pod: Pod) -> PodInfo {
        let priority = pod.spec.as_ref().and_then(|s| s.priority).unwrap_or(0);
        let never = pod
            .spec
            .as_ref()
            .and_then(|s| s.preemption_policy.as_deref())
            == Some("Never");
        PodInfo::new(Arc::new(pod), priority, never)
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.pod.metadata.labels.as_ref()
    }

    /// `namespace/name`.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn spec(&self) -> Option<&k8s_openapi::api::core::v1::PodSpec> {
        self.pod.spec.as_ref()
    }

    pub fn has_affinity(&self) -> bool {
        !self.required_affinity_terms.is_empty()
            || !self.required_anti_affinity_terms.is_empty()
            || !self.preferred_affinity_terms.is_empty()
            || !self.preferred_anti_affinity_terms.is_empty()
    }

    /// `spec.nodeName`, if bound.
    pub fn node_name(&self) -> Option<&str> {
        self.spec()
            .and_then(|s| s.node_name.as_deref())
            .filter(|n| !n.is_empty())
    }
}

/// Upstream's image name normalisation: a reference without a tag gets `:latest`.
pub fn normalized_image_name(name: &str) -> String {
    let colon = name.rfind(':');
    let slash = name.rfind('/');
    match (colon, slash) {
        (Some(c), Some(s)) if c > s => name.to_string(),
        (Some(_), None) => name.to_string(),
        _ => format!("{name}:latest"),
    }
}

/// A node with the pods on it and their summed requests (upstream `framework.NodeInfo`).
#[derive(Clone, Debug, Default)]
pub struct NodeInfo {
    name: String,
    node: Option<Arc<Node>>,
    pub allocatable: Resource,
    pub requested: Resource,
    pub non_zero_requested: Resource,
    pub pods: Vec<Arc<PodInfo>>,
    /// Pods with any (anti-)affinity term.
    pub pods_with_affinity: usize,
    /// Pods with a required anti-affinity term.
    pub pods_with_required_anti_affinity: usize,
    pub used_ports: Vec<HostPort>,
    /// Normalised image name → size in bytes, from `status.images`.
    pub images: HashMap<String, i64>,
    /// Bumped on every change.
    pub generation: u64,
    /// Copied from the Node so per-node filters stay within this struct.
    taints: Vec<Taint>,
    unschedulable: bool,
}

impl NodeInfo {
    /// A node entry known only from pods bound to it.
    pub fn named(name: &str) -> NodeInfo {
        NodeInfo {
            name: name.to_string(),
            ..NodeInfo::default()
        }
    }

    pub fn from_node(node: Arc<Node>) -> NodeInfo {
        let mut n = NodeInfo::named(node.metadata.name.as_deref().unwrap_or(""));
        n.set_node(node);
        n
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn node(&self) -> Option<&Arc<Node>> {
        self.node.as_ref()
    }

    pub fn labels(&self) -> Option<&BTreeMap<String, String>> {
        self.node.as_ref().and_then(|n| n.metadata.labels.as_ref())
    }

    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels().and_then(|l| l.get(key)).map(String::as_str)
    }

    pub fn taints(&self) -> &[Taint] {
        &self.taints
    }

    pub fn unschedulable(&self) -> bool {
        self.unschedulable
    }

    /// Replaces the Node object (allocatable and images are re-read).
    pub fn set_node(&mut self, node: Arc<Node>) {
        let status = node.status.as_ref();
        self.allocatable = status
            .and_then(|s| s.allocatable.as_ref())
            .map(Resource::from_list)
            .unwrap_or_default();
        self.images.clear();
        for image in status.and_then(|s| s.images.as_ref()).into_iter().flatten() {
            for name in image.names.iter().flatten() {
                self.images
                    .insert(normalized_image_name(name), image.size_bytes.unwrap_or(0));
            }
        }
        let spec = node.spec.as_ref();
        self.taints = spec.and_then(|s| s.taints.clone()).unwrap_or_default();
        self.unschedulable = spec.and_then(|s| s.unschedulable).unwrap_or(false);
        self.node = Some(node);
        self.generation += 1;
    }

    /// Forgets the Node object, keeping the pods (they may still be on it).
    pub fn clear_node(&mut self) {
        self.node = None;
        self.taints.clear();
        self.unschedulable = false;
        self.allocatable = Resource::default();
        self.images.clear();
        self.generation += 1;
    }

    pub fn add_pod(&mut self, pod: Arc<PodInfo>) {
        self.requested.add(&pod.requests);
        self.non_zero_requested.add(&pod.non_zero_requests);
        if pod.has_affinity() {
            self.pods_with_affinity += 1;
        }
        if !pod.required_anti_affinity_terms.is_empty() {
            self.pods_with_required_anti_affinity += 1;
        }
        self.used_ports.extend(pod.host_ports.iter().cloned());
        self.pods.push(pod);
        self.generation += 1;
    }

    /// Removes the pod with `uid`, returning it.
    pub fn remove_pod(&mut self, uid: &str) -> Option<Arc<PodInfo>> {
        let i = self.pods.iter().position(|p| p.uid == uid)?;
        let pod = self.pods.swap_remove(i);
        self.requested.sub(&pod.requests);
        self.non_zero_requested.sub(&pod.non_zero_requests);
        if pod.has_affinity() {
            self.pods_with_affinity -= 1;
        }
        if !pod.required_anti_affinity_terms.is_empty() {
            self.pods_with_required_anti_affinity -= 1;
        }
        for hp in &pod.host_ports {
            if let Some(j) = self.used_ports.iter().position(|u| u == hp) {
                self.used_ports.swap_remove(j);
            }
        }
        self.generation += 1;
        Some(pod)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    #[test]
    fn requests_sum_containers_max_init_and_add_overhead() {
        let cases = [
            (
                "two containers",
                json!({"spec": {"containers": [
                    {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}}},
                    {"name": "b", "resources": {"requests": {"cpu": "200m", "example.com/gpu": "1"}}}]}}),
                (300, 1 << 30, 1),
            ),
            (
                "init container larger than the sum",
                json!({"spec": {"initContainers": [{"name": "i", "resources": {"requests": {"cpu": "2"}}}],
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m", "memory": "1Mi"}}}]}}),
                (2000, 1 << 20, 0),
            ),
            (
                "sidecar adds up",
                json!({"spec": {"initContainers": [{"name": "s", "restartPolicy": "Always", "resources": {"requests": {"cpu": "100m"}}}],
                    "containers": [{"name": "a", "resources": {"requests": {"cpu": "500m"}}}]}}),
                (600, 0, 0),
            ),
            (
                "overhead",
                json!({"spec": {"overhead": {"cpu": "250m"}, "containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}),
                (1250, 0, 0),
            ),
        ];
        for (name, p, (cpu, mem, gpu)) in cases {
            let info = PodInfo::from_pod(pod(p));
            assert_eq!(info.requests.milli_cpu, cpu, "{name}");
            assert_eq!(info.requests.memory, mem, "{name}");
            assert_eq!(info.requests.scalar("example.com/gpu"), gpu, "{name}");
        }
    }

    #[test]
    fn non_zero_requests_default_missing_cpu_and_memory() {
        let info = PodInfo::from_pod(pod(
            json!({"spec": {"containers": [{"name": "a"}, {"name": "b", "resources": {"requests": {"cpu": "0"}}}]}}),
        ));
        assert_eq!(info.requests.milli_cpu, 0);
        assert_eq!(info.non_zero_requests.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(info.non_zero_requests.memory, 2 * DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn node_info_tracks_pods_requests_and_ports() {
        let node: Node = serde_json::from_value(json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"}}}))
            .expect("node");
        let mut ni = NodeInfo::from_node(Arc::new(node));
        assert_eq!(ni.allocatable.milli_cpu, 4000);
        assert_eq!(ni.allocatable.allowed_pod_number, 110);
        let p = PodInfo::from_pod(pod(
            json!({"metadata": {"uid": "u1"}, "spec": {"containers": [
            {"name": "a", "ports": [{"containerPort": 80, "hostPort": 8080}], "resources": {"requests": {"cpu": "1"}}}]}}),
        ));
        ni.add_pod(Arc::new(p));
        assert_eq!(ni.requested.milli_cpu, 1000);
        assert_eq!(ni.used_ports.len(), 1);
        assert!(ni.remove_pod("u1").is_some());
        assert_eq!(ni.requested.milli_cpu, 0);
        assert!(ni.used_ports.is_empty());
        assert!(ni.remove_pod("u1").is_none());
    }

    #[test]
    fn image_names_are_normalised() {
        for (input, want) in [
            ("nginx", "nginx:latest"),
            ("nginx:1.25", "nginx:1.25"),
            ("registry:5000/app", "registry:5000/app:latest"),
            ("registry:5000/app:v1", "registry:5000/app:v1"),
        ] {
            assert_eq!(normalized_image_name(input), want);
        }
    }

    #[test]
    fn host_ports_conflict_on_wildcard_or_same_ip() {
        let hp = |ip: &str, port| HostPort {
            protocol: "TCP".into(),
            ip: ip.into(),
            port,
        };
        assert!(hp("0.0.0.0", 80).conflicts(&hp("10.0.0.1", 80)));
        assert!(hp("10.0.0.1", 80).conflicts(&hp("10.0.0.1", 80)));
        assert!(!hp("10.0.0.1", 80).conflicts(&hp("10.0.0.2", 80)));
        assert!(!hp("0.0.0.0", 80).conflicts(&hp("0.0.0.0", 81)));
    }
}
