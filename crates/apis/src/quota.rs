//! Resource quota evaluation (upstream `pkg/quota/v1` and its `evaluator/core`): what a
//! pod, service, claim or any other namespaced object consumes, which quota resource
//! names each kind answers to, quota scopes, and the arithmetic over resource lists.
//!
//! Shared by the API server's ResourceQuota admission (which charges a new object's usage
//! before it is stored) and the resource quota controller (which recomputes `status.used`
//! from what exists), so both always agree on what an object costs.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{
    Container, PersistentVolumeClaim, Pod, ResourceQuota, ScopedResourceSelectorRequirement,
    Service,
};
use k8s_openapi::jiff::Timestamp;

use crate::resource::Quantity;

/// Resource name → quantity, sorted (upstream `ResourceList`).
pub type ResourceList = BTreeMap<String, Quantity>;

/// Suffix of per-StorageClass claim resources (`gold.storageclass.storage.k8s.io/requests.storage`).
pub const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// The object-count resource name of `group/resource` (`count/pods`, `count/deployments.apps`).
pub fn object_count_name(group: &str, resource: &str) -> String {
    if group.is_empty() {
        format!("count/{resource}")
    } else {
        format!("count/{resource}.{group}")
    }
}

/// Core resources whose bare name is also an object count (upstream's legacy names).
const LEGACY_COUNTS: &[&str] = &[
    "configmaps",
    "secrets",
    "resourcequotas",
    "replicationcontrollers",
];

const POD_RESOURCES: &[&str] = &[
    "count/pods",
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
];

/// Quota resources that require every container to state the matching request or limit
/// (upstream keeps this for compatibility; no other resource behaves so).
const POD_VALIDATION_SET: &[&str] = &[
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

const SERVICE_RESOURCES: &[&str] = &[
    "count/services",
    "services",
    "services.nodeports",
    "services.loadbalancers",
];

const PVC_RESOURCES: &[&str] = &[
    "count/persistentvolumeclaims",
    "persistentvolumeclaims",
    "requests.storage",
];

/// What a kind of object is measured as.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Evaluator {
    Pods,
    Services,
    PersistentVolumeClaims,
    /// Any other resource: one object counts once.
    Count {
        group: String,
        resource: String,
    },
}

impl Evaluator {
    pub fn for_resource(group: &str, resource: &str) -> Evaluator {
        match (group, resource) {
            ("", "pods") => Evaluator::Pods,
            ("", "services") => Evaluator::Services,
            ("", "persistentvolumeclaims") => Evaluator::PersistentVolumeClaims,
            _ => Evaluator::Count {
                group: group.to_string(),
                resource: resource.to_string(),
            },
        }
    }

    /// The quota resource names among `input` this kind answers to (upstream `MatchingResources`).
    pub fn matching_resources<'a>(
        &self,
        input: impl IntoIterator<Item = &'a String>,
    ) -> Vec<String> {
        input
            .into_iter()
            .filter(|name| match self {
                Evaluator::Pods => {
                    POD_RESOURCES.contains(&name.as_str())
                        || name.starts_with("hugepages-")
                        || name.starts_with("requests.hugepages-")
                        || is_extended_request(name)
                }
                Evaluator::Services => SERVICE_RESOURCES.contains(&name.as_str()),
                Evaluator::PersistentVolumeClaims => {
                    PVC_RESOURCES.contains(&name.as_str())
                        || name.split_once(STORAGE_CLASS_SUFFIX).is_some_and(|(_, r)| {
                            r == "requests.storage" || r == "persistentvolumeclaims"
                        })
                }
                Evaluator::Count { group, resource } => {
                    **name == object_count_name(group, resource)
                        || (group.is_empty()
                            && LEGACY_COUNTS.contains(&resource.as_str())
                            && *name == resource)
                }
            })
            .cloned()
            .collect()
    }
}

/// `requests.example.com/gpu`: an extended resource request (not a native `kubernetes.io` one).
fn is_extended_request(name: &str) -> bool {
    name.strip_prefix("requests.").is_some_and(|r| {
        r.contains('/')
            && !r.starts_with("kubernetes.io/")
            && !r.contains(".kubernetes.io/")
            && !r.starts_with("hugepages-")
    })
}

fn one() -> Quantity {
    Quantity::from_int(1)
}

fn quantities(
    list: Option<&BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity>>,
) -> ResourceList {
    list.into_iter()
        .flatten()
        .filter_map(|(k, v)| Quantity::parse(&v.0).ok().map(|q| (k.clone(), q)))
        .collect()
}

fn container_requests(c: &Container) -> ResourceList {
    quantities(c.resources.as_ref().and_then(|r| r.requests.as_ref()))
}

fn container_limits(c: &Container) -> ResourceList {
    quantities(c.resources.as_ref().and_then(|r| r.limits.as_ref()))
}

/// Upstream `podComputeUsageHelper`: one pod plus its compute requests and limits.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("pods".into(), one());
    for res in ["cpu", "memory", "ephemeral-storage"] {
        if let Some(r) = requests.get(res) {
            out.insert(res.into(), *r);
            out.insert(format!("requests.{res}"), *r);
        }
        if let Some(l) = limits.get(res) {
            out.insert(format!("limits.{res}"), *l);
        }
    }
    for (name, q) in requests {
        if name.starts_with("hugepages-") {
            out.insert(name.clone(), *q);
            out.insert(format!("requests.{name}"), *q);
        } else if name.contains('/') && !name.starts_with("kubernetes.io/") {
            out.insert(format!("requests.{name}"), *q);
        }
    }
    out
}

fn max_into(acc: &mut ResourceList, other: &ResourceList) {
    for (k, v) in other {
        let e = acc.entry(k.clone()).or_insert(*v);
        if *v > *e {
            *e = *v;
        }
    }
}

/// The pod's effective requests or limits (upstream `PodRequests`/`PodLimits`): the sum
/// over containers (and sidecars), at least the largest init container, plus overhead.
fn pod_total(pod: &Pod, pick: fn(&Container) -> ResourceList) -> ResourceList {
    let Some(spec) = pod.spec.as_ref() else {
        return ResourceList::new();
    };
    let mut total = ResourceList::new();
    for c in &spec.containers {
        total = add(&total, &pick(c));
    }
    let mut sidecars = ResourceList::new();
    let mut init_max = ResourceList::new();
    for c in spec.init_containers.iter().flatten() {
        let own = pick(c);
        if c.restart_policy.as_deref() == Some("Always") {
            total = add(&total, &own);
            sidecars = add(&sidecars, &own);
            max_into(&mut init_max, &sidecars);
        } else {
            max_into(&mut init_max, &add(&own, &sidecars));
        }
    }
    max_into(&mut total, &init_max);
    add(&total, &quantities(spec.overhead.as_ref()))
}

pub fn pod_requests(pod: &Pod) -> ResourceList {
    pod_total(pod, container_requests)
}

pub fn pod_limits(pod: &Pod) -> ResourceList {
    pod_total(pod, container_limits)
}

fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Whether the pod's compute resources are charged (upstream `QuotaV1Pod`): not finished,
/// and not stuck terminating past its grace period.
pub fn pod_is_charged(pod: &Pod, now: Timestamp) -> bool {
    if matches!(phase(pod), "Succeeded" | "Failed") {
        return false;
    }
    if let (Some(ts), Some(grace)) = (
        &pod.metadata.deletion_timestamp,
        pod.metadata.deletion_grace_period_seconds,
    ) {
        let grace = std::time::Duration::from_secs(u64::try_from(grace.max(0)).unwrap_or(0));
        if ts.0.checked_add(grace).is_ok_and(|end| now > end) {
            return false;
        }
    }
    true
}

/// Upstream `PodUsageFunc`.
pub fn pod_usage(pod: &Pod, now: Timestamp) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("count/pods".into(), one());
    if !pod_is_charged(pod, now) {
        return out;
    }
    add(&out, &compute_usage(&pod_requests(pod), &pod_limits(pod)))
}

pub fn service_usage(svc: &Service) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("count/services".into(), one());
    out.insert("services".into(), one());
    out.insert("services.loadbalancers".into(), Quantity::ZERO);
    out.insert("services.nodeports".into(), Quantity::ZERO);
    let spec = svc.spec.clone().unwrap_or_default();
    let ports = spec.ports.as_ref().map_or(0, Vec::len);
    let ports = i64::try_from(ports).unwrap_or(i64::MAX);
    match spec.type_.as_deref() {
        Some("NodePort") => {
            out.insert("services.nodeports".into(), Quantity::from_int(ports));
        }
        Some("LoadBalancer") => {
            let node_ports = if spec.allocate_load_balancer_node_ports == Some(false) {
                let n = spec
                    .ports
                    .iter()
                    .flatten()
                    .filter(|p| p.node_port.is_some_and(|n| n != 0))
                    .count();
                i64::try_from(n).unwrap_or(i64::MAX)
            } else {
                ports
            };
            out.insert("services.nodeports".into(), Quantity::from_int(node_ports));
            out.insert("services.loadbalancers".into(), one());
        }
        _ => {}
    }
    out
}

pub fn pvc_usage(pvc: &PersistentVolumeClaim) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert("persistentvolumeclaims".into(), one());
    out.insert("count/persistentvolumeclaims".into(), one());
    let class = pvc
        .spec
        .as_ref()
        .and_then(|s| s.storage_class_name.clone())
        .filter(|c| !c.is_empty());
    if let Some(class) = &class {
        out.insert(
            format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
            one(),
        );
    }
    let requested = quantities(
        pvc.spec
            .as_ref()
            .and_then(|s| s.resources.as_ref())
            .and_then(|r| r.requests.as_ref()),
    )
    .remove("storage");
    let allocated = quantities(
        pvc.status
            .as_ref()
            .and_then(|s| s.allocated_resources.as_ref()),
    )
    .remove("storage");
    let storage = match (requested, allocated) {
        (Some(r), Some(a)) => Some(if a > r { a } else { r }),
        (r, a) => r.or(a),
    };
    if let Some(s) = storage {
        out.insert("requests.storage".into(), s);
        if let Some(class) = &class {
            out.insert(format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"), s);
        }
    }
    out
}

/// Usage of any other object: it counts once under its object-count name (and its legacy name).
pub fn count_usage(group: &str, resource: &str) -> ResourceList {
    let mut out = ResourceList::new();
    out.insert(object_count_name(group, resource), one());
    if group.is_empty() && LEGACY_COUNTS.contains(&resource) {
        out.insert(resource.to_string(), one());
    }
    out
}

/// Usage of a JSON object of `group/resource` (for admission, which holds JSON).
pub fn usage_of(
    group: &str,
    resource: &str,
    obj: &serde_json::Value,
    now: Timestamp,
) -> Result<ResourceList, serde_json::Error> {
    Ok(match Evaluator::for_resource(group, resource) {
        Evaluator::Pods => pod_usage(&serde_json::from_value(obj.clone())?, now),
        Evaluator::Services => service_usage(&serde_json::from_value(obj.clone())?),
        Evaluator::PersistentVolumeClaims => pvc_usage(&serde_json::from_value(obj.clone())?),
        Evaluator::Count { group, resource } => count_usage(&group, &resource),
    })
}

/// The quota's scopes as selector requirements (upstream `getScopeSelectorsFromQuota`).
pub fn scope_selectors(quota: &ResourceQuota) -> Vec<ScopedResourceSelectorRequirement> {
    let spec = quota.spec.clone().unwrap_or_default();
    let mut out: Vec<ScopedResourceSelectorRequirement> = spec
        .scopes
        .iter()
        .flatten()
        .map(|s| ScopedResourceSelectorRequirement {
            scope_name: s.clone(),
            operator: "Exists".into(),
            values: None,
        })
        .collect();
    out.extend(
        spec.scope_selector
            .and_then(|s| s.match_expressions)
            .into_iter()
            .flatten(),
    );
    out
}

/// `activeDeadlineSeconds` set: the pod is meant to end on its own.
pub fn is_terminating(pod: &Pod) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.active_deadline_seconds)
        .is_some_and(|d| d >= 0)
}

/// QoS BestEffort: no container (init or not) states any cpu or memory request or limit.
pub fn is_best_effort(pod: &Pod) -> bool {
    let Some(spec) = pod.spec.as_ref() else {
        return true;
    };
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .all(|c| {
            let r = container_requests(c);
            let l = container_limits(c);
            ["cpu", "memory"]
                .iter()
                .all(|k| !r.contains_key(*k) && !l.contains_key(*k))
        })
}

fn pod_matches_scope(pod: &Pod, sel: &ScopedResourceSelectorRequirement) -> bool {
    match sel.scope_name.as_str() {
        "Terminating" => is_terminating(pod),
        "NotTerminating" => !is_terminating(pod),
        "BestEffort" => is_best_effort(pod),
        "NotBestEffort" => !is_best_effort(pod),
        "PriorityClass" => {
            let class = pod
                .spec
                .as_ref()
                .and_then(|s| s.priority_class_name.as_deref())
                .unwrap_or("");
            let values = sel.values.clone().unwrap_or_default();
            match sel.operator.as_str() {
                "Exists" => !class.is_empty(),
                "DoesNotExist" => class.is_empty(),
                "In" => values.iter().any(|v| v == class),
                "NotIn" => !values.iter().any(|v| v == class),
                _ => false,
            }
        }
        "CrossNamespacePodAffinity" => uses_cross_namespace_affinity(pod),
        _ => false,
    }
}

fn uses_cross_namespace_affinity(pod: &Pod) -> bool {
    let Some(aff) = pod.spec.as_ref().and_then(|s| s.affinity.as_ref()) else {
        return false;
    };
    let terms = |a: Option<&k8s_openapi::api::core::v1::PodAffinity>| {
        let a = a.cloned().unwrap_or_default();
        a.required_during_scheduling_ignored_during_execution
            .unwrap_or_default()
            .into_iter()
            .chain(
                a.preferred_during_scheduling_ignored_during_execution
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| w.pod_affinity_term),
            )
            .any(|t| t.namespace_selector.is_some() || t.namespaces.is_some_and(|n| !n.is_empty()))
    };
    let anti = aff
        .pod_anti_affinity
        .as_ref()
        .map(|a| k8s_openapi::api::core::v1::PodAffinity {
            required_during_scheduling_ignored_during_execution: a
                .required_during_scheduling_ignored_during_execution
                .clone(),
            preferred_during_scheduling_ignored_during_execution: a
                .preferred_during_scheduling_ignored_during_execution
                .clone(),
        });
    terms(aff.pod_affinity.as_ref()) || terms(anti.as_ref())
}

/// Whether an object of this kind falls under the quota's scopes. `pod` is the object
/// when it is a pod; other kinds match only unscoped quotas.
pub fn matches_scopes(quota: &ResourceQuota, pod: Option<&Pod>) -> bool {
    scope_selectors(quota)
        .iter()
        .all(|s| pod.is_some_and(|p| pod_matches_scope(p, s)))
}

/// Names in `status.hard` (or `spec.hard` when status is not written yet).
pub fn hard(quota: &ResourceQuota, from_status: bool) -> ResourceList {
    if from_status {
        quantities(quota.status.as_ref().and_then(|s| s.hard.as_ref()))
    } else {
        quantities(quota.spec.as_ref().and_then(|s| s.hard.as_ref()))
    }
}

pub fn used(quota: &ResourceQuota) -> ResourceList {
    quantities(quota.status.as_ref().and_then(|s| s.used.as_ref()))
}

/// Upstream `podEvaluator.Constraints`: a pod must state, in every container, each cpu/memory
/// resource the quota tracks. The error reads `must specify limits.cpu for: a,b; …`.
pub fn pod_constraints(required: &[String], pod: &Pod) -> Result<(), String> {
    let required: BTreeSet<&str> = required
        .iter()
        .map(String::as_str)
        .filter(|r| POD_VALIDATION_SET.contains(r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let Some(spec) = pod.spec.as_ref() else {
        return Ok(());
    };
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let usage = compute_usage(&container_requests(c), &container_limits(c));
        for r in &required {
            if !usage.contains_key(*r) {
                missing.entry(r).or_default().insert(c.name.clone());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        let e = out.entry(k.clone()).or_insert(Quantity::ZERO);
        *e = e.add(v);
    }
    out
}

/// `a - b` for the keys of `a`.
pub fn subtract(a: &ResourceList, b: &ResourceList) -> ResourceList {
    a.iter()
        .map(|(k, v)| (k.clone(), b.get(k).map_or(*v, |o| v.sub(o))))
        .collect()
}

/// The entries of `list` named in `names`.
pub fn mask(list: &ResourceList, names: &[String]) -> ResourceList {
    list.iter()
        .filter(|(k, _)| names.contains(k))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

pub fn remove_zeros(list: &ResourceList) -> ResourceList {
    list.iter()
        .filter(|(_, v)| !v.is_zero())
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

/// Whether every entry of `a` is at most its entry in `b` (missing in `b` = unbounded), and
/// the names that exceed.
pub fn less_than_or_equal(a: &ResourceList, b: &ResourceList) -> (bool, Vec<String>) {
    let exceeded: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k).is_some_and(|limit| *v > limit))
        .map(|(k, _)| k.clone())
        .collect();
    (exceeded.is_empty(), exceeded)
}

/// `a=1,b=2Gi` in name order (upstream `prettyPrint`).
pub fn pretty_print(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A resource list as the API's map of quantity strings.
pub fn to_api(
    list: &ResourceList,
) -> BTreeMap<String, k8s_openapi::apimachinery::pkg::api::resource::Quantity> {
    list.iter().map(|(k, v)| (k.clone(), (*v).into())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(v: serde_json::Value) -> Pod {
        serde_json::from_value(v).expect("pod")
    }

    fn q(s: &str) -> Quantity {
        Quantity::parse(s).expect("quantity")
    }

    #[test]
    fn pod_usage_counts_requests_limits_and_init_containers() {
        let p = pod(json!({"metadata": {"name": "p"}, "spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "300m", "memory": "64Mi"}}}],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}]}}));
        let u = pod_usage(&p, Timestamp::from_second(1_700_000_000).expect("ts"));
        assert_eq!(u["pods"], one());
        assert_eq!(u["count/pods"], one());
        assert_eq!(u["requests.cpu"].to_string(), "1");
        assert_eq!(u["cpu"].to_string(), "1");
        assert_eq!(u["requests.memory"].to_string(), "128Mi");
        assert_eq!(u["limits.cpu"].to_string(), "200m");
        assert!(!u.contains_key("limits.memory"));
    }

    #[test]
    fn finished_pods_only_count_as_objects() {
        let p =
            pod(json!({"spec": {"containers": [{"name": "a"}]}, "status": {"phase": "Succeeded"}}));
        let u = pod_usage(&p, Timestamp::from_second(1_700_000_000).expect("ts"));
        assert_eq!(u.keys().collect::<Vec<_>>(), vec!["count/pods"]);
    }

    #[test]
    fn constraints_name_the_containers_missing_each_resource() {
        let p = pod(json!({"spec": {"containers": [
            {"name": "nginx", "resources": {"requests": {"cpu": "1"}}},
            {"name": "sidecar"}]}}));
        let required: Vec<String> = ["limits.cpu", "limits.memory", "requests.cpu", "pods"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            pod_constraints(&required, &p),
            Err("must specify limits.cpu for: nginx,sidecar; limits.memory for: nginx,sidecar; requests.cpu for: sidecar".into())
        );
        assert_eq!(pod_constraints(&["pods".to_string()], &p), Ok(()));
    }

    #[test]
    fn evaluators_match_their_resource_names() {
        let names: Vec<String> = [
            "pods",
            "requests.cpu",
            "services",
            "configmaps",
            "count/deployments.apps",
            "requests.storage",
            "gold.storageclass.storage.k8s.io/requests.storage",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            Evaluator::Pods.matching_resources(&names),
            vec!["pods", "requests.cpu"]
        );
        assert_eq!(
            Evaluator::for_resource("", "configmaps").matching_resources(&names),
            vec!["configmaps"]
        );
        assert_eq!(
            Evaluator::for_resource("apps", "deployments").matching_resources(&names),
            vec!["count/deployments.apps"]
        );
        assert_eq!(
            Evaluator::PersistentVolumeClaims.matching_resources(&names),
            vec![
                "requests.storage",
                "gold.storageclass.storage.k8s.io/requests.storage"
            ]
        );
    }

    #[test]
    fn pvc_and_service_usage() {
        let pvc: PersistentVolumeClaim = serde_json::from_value(json!({"spec": {
            "storageClassName": "gold", "resources": {"requests": {"storage": "1Gi"}}}}))
        .expect("pvc");
        let u = pvc_usage(&pvc);
        assert_eq!(u["requests.storage"].to_string(), "1Gi");
        assert_eq!(
            u["gold.storageclass.storage.k8s.io/persistentvolumeclaims"],
            one()
        );
        let svc: Service = serde_json::from_value(
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80}, {"port": 443}]}}),
        )
        .expect("svc");
        let u = service_usage(&svc);
        assert_eq!(u["services.nodeports"].to_string(), "2");
        assert_eq!(u["services.loadbalancers"].to_string(), "0");
    }

    #[test]
    fn list_arithmetic_and_printing() {
        let used: ResourceList = [
            ("pods".to_string(), q("2")),
            ("requests.cpu".to_string(), q("500m")),
        ]
        .into();
        let req: ResourceList = [
            ("pods".to_string(), q("1")),
            ("requests.cpu".to_string(), q("600m")),
        ]
        .into();
        let hard: ResourceList = [
            ("pods".to_string(), q("2")),
            ("requests.cpu".to_string(), q("2")),
        ]
        .into();
        let total = add(&used, &req);
        assert_eq!(pretty_print(&total), "pods=3,requests.cpu=1100m");
        let (ok, exceeded) = less_than_or_equal(&total, &hard);
        assert!(!ok);
        assert_eq!(exceeded, vec!["pods"]);
        assert_eq!(pretty_print(&mask(&req, &exceeded)), "pods=1");
    }

    #[test]
    fn scopes_select_pods() {
        let quota: ResourceQuota = serde_json::from_value(
            json!({"spec": {"scopes": ["BestEffort"], "hard": {"pods": "1"}}}),
        )
        .expect("quota");
        let be = pod(json!({"spec": {"containers": [{"name": "a"}]}}));
        let burst = pod(
            json!({"spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1"}}}]}}),
        );
        assert!(matches_scopes(&quota, Some(&be)));
        assert!(!matches_scopes(&quota, Some(&burst)));
        assert!(!matches_scopes(&quota, None));
    }
}
