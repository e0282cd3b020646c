//! The scheduler's view of the cluster (upstream `backend/cache`): nodes and the pods
//! on them, fed by watches of Nodes and of pods with `spec.nodeName` set, plus pods the
//! scheduler has *assumed* onto a node while their binding is in flight — so the next
//! cycle already counts their resources. When the assigned-pods watch delivers the
//! bound pod, the assumption is confirmed; a failed binding forgets it.
//!
//! It also resolves pod priorities (`spec.priority`, else the PriorityClass named by
//! `priorityClassName`, else the global default class) since no admission plugin
//! fills `spec.priority` in.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::scheduling::v1::PriorityClass;

use crate::framework::{PodInfo, Snapshot};

/// Built-in classes the API server would create; used if their objects are not seen.
const SYSTEM_CLASSES: &[(&str, i32)] = &[
    ("system-node-critical", 2_000_001_000),
    ("system-cluster-critical", 2_000_000_000),
];

#[derive(Clone, Debug)]
struct CachedPod {
    node: String,
    /// Placed by this scheduler, not yet seen bound through the watch.
    assumed: bool,
}

#[derive(Clone, Copy, Debug)]
struct Class {
    value: i32,
    preempt_never: bool,
    global_default: bool,
}

/// What a Node update changed, as far as scheduling is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeChange {
    Added,
    /// `relevant`: labels, taints, cordon, allocatable, images or conditions changed.
    Updated {
        relevant: bool,
    },
}

#[derive(Debug, Default)]
pub struct Cache {
    snapshot: Snapshot,
    pods: HashMap<String, CachedPod>,
    classes: HashMap<String, Class>,
}

fn conditions(node: &Node) -> Vec<(&str, &str)> {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .into_iter()
        .flatten()
        .map(|c| (c.type_.as_str(), c.status.as_str()))
        .collect()
}

/// Whether the update could change where pods fit (heartbeats and the like do not).
fn relevant_node_change(old: &Node, new: &Node) -> bool {
    let spec = |n: &Node| n.spec.as_ref().map(|s| (s.taints.clone(), s.unschedulable));
    let status = |n: &Node| {
        n.status
            .as_ref()
            .map(|s| (s.allocatable.clone(), s.images.clone()))
    };
    old.metadata.labels != new.metadata.labels
        || spec(old) != spec(new)
        || status(old) != status(new)
        || conditions(old) != conditions(new)
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// `(priority, preemptionPolicy is Never)` for `pod`.
    pub fn resolve_priority(&self, pod: &Pod) -> (i32, bool) {
        let spec = pod.spec.as_ref();
        let class_name = spec
            .and_then(|s| s.priority_class_name.as_deref())
            .filter(|n| !n.is_empty());
        let class = match class_name {
            Some(name) => self.classes.get(name).copied().or_else(|| {
                SYSTEM_CLASSES
                    .iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| Class {
                        value: *v,
                        preempt_never: false,
                        global_default: false,
                    })
            }),
            None => self.classes.values().find(|c| c.global_default).copied(),
        };
        let priority = spec
            .and_then(|s| s.priority)
            .or(class.map(|c| c.value))
            .unwrap_or(0);
        let never = match spec.and_then(|s| s.preemption_policy.as_deref()) {
            Some(p) => p == "Never",
            None => class.is_some_and(|c| c.preempt_never),
        };
        (priority, never)
    }

    /// Precomputes `pod` with its resolved priority.
    pub fn pod_info(&self, pod: Arc<Pod>) -> Arc<PodInfo> {
        let (priority, never) = self.resolve_priority(&pod);
        Arc::new(PodInfo::new(pod, priority, never))
    }

    pub fn upsert_priority_class(&mut self, pc: &PriorityClass) {
        let Some(name) = pc.metadata.name.clone() else {
            return;
        };
        let class = Class {
            value: pc.value,
            preempt_never: pc.preemption_policy.as_deref() == Some("Never"),
            global_default: pc.global_default.unwrap_or(false),
        };
        self.classes.insert(name, class);
    }

    pub fn remove_priority_class(&mut self, name: &str) {
        self.classes.remove(name);
    }

    pub fn priority_class_names(&self) -> Vec<String> {
        self.classes.keys().cloned().collect()
    }

    pub fn upsert_node(&mut self, node: Arc<Node>) -> NodeChange {
        let name = node.metadata.name.as_deref().unwrap_or("");
        let change = match self.snapshot.get(name).and_then(|n| n.node()) {
            None => NodeChange::Added,
            Some(old) => NodeChange::Updated {
                relevant: relevant_node_change(old, &node),
            },
        };
        self.snapshot.upsert_node(node);
        change
    }

    pub fn remove_node(&mut self, name: &str) {
        self.snapshot.remove_node(name);
    }

    pub fn node_names(&self) -> Vec<String> {
        self.snapshot
            .nodes()
            .iter()
            .map(|n| n.name().to_string())
            .collect()
    }

    pub fn set_namespace_labels(&mut self, namespace: &str, labels: BTreeMap<String, String>) {
        self.snapshot.set_namespace_labels(namespace, labels);
    }

    pub fn remove_namespace(&mut self, namespace: &str) {
        self.snapshot.remove_namespace(namespace);
    }

    /// Places `pod` on `node` ahead of its binding.
    pub fn assume_pod(&mut self, pod: Arc<PodInfo>, node: &str) {
        let uid = pod.uid.clone();
        if let Some(old) = self.pods.remove(&uid) {
            self.snapshot.remove_pod(&old.node, &uid);
        }
        self.snapshot.add_pod(node, pod);
        self.pods.insert(
            uid,
            CachedPod {
                node: node.to_string(),
                assumed: true,
            },
        );
    }

    /// Drops an assumed pod whose binding failed; returns whether it was assumed.
    pub fn forget_pod(&mut self, uid: &str) -> bool {
        if !self.is_assumed(uid) {
            return false;
        }
        self.remove_pod(uid)
    }

    /// A bound pod from the watch: confirms an assumption or records the pod.
    pub fn add_or_update_pod(&mut self, pod: Arc<PodInfo>) {
        let Some(node) = pod.node_name().map(str::to_string) else {
            return;
        };
        let uid = pod.uid.clone();
        if let Some(old) = self.pods.remove(&uid) {
            self.snapshot.remove_pod(&old.node, &uid);
        }
        self.snapshot.add_pod(&node, pod);
        self.pods.insert(
            uid,
            CachedPod {
                node,
                assumed: false,
            },
        );
    }

    /// Removes a pod; returns whether it was known.
    pub fn remove_pod(&mut self, uid: &str) -> bool {
        match self.pods.remove(uid) {
            Some(old) => {
                self.snapshot.remove_pod(&old.node, uid);
                true
            }
            None => false,
        }
    }

    pub fn contains_pod(&self, uid: &str) -> bool {
        self.pods.contains_key(uid)
    }

    pub fn is_assumed(&self, uid: &str) -> bool {
        self.pods.get(uid).is_some_and(|p| p.assumed)
    }

    /// The node a known pod is on (or assumed on).
    pub fn pod_node(&self, uid: &str) -> Option<&str> {
        self.pods.get(uid).map(|p| p.node.as_str())
    }

    /// After a relist of bound pods: drops confirmed pods that were not listed.
    pub fn retain_listed_pods(&mut self, listed: &HashSet<String>) {
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(uid, p)| !p.assumed && !listed.contains(*uid))
            .map(|(u, _)| u.clone())
            .collect();
        for uid in gone {
            self.remove_pod(&uid);
        }
    }

    /// Number of pods known (bound or assumed).
    pub fn num_pods(&self) -> usize {
        self.pods.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, v: serde_json::Value) -> Arc<Node> {
        let mut obj = json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "2", "pods": "10"}}});
        if let (Some(o), Some(extra)) = (obj.as_object_mut(), v.as_object()) {
            for (k, val) in extra {
                o.insert(k.clone(), val.clone());
            }
        }
        Arc::new(serde_json::from_value(obj).expect("node"))
    }

    fn pod(v: serde_json::Value) -> Arc<Pod> {
        Arc::new(serde_json::from_value(v).expect("pod"))
    }

    fn bound(uid: &str, node: &str) -> Arc<Pod> {
        pod(
            json!({"metadata": {"name": uid, "namespace": "default", "uid": uid},
            "spec": {"nodeName": node, "containers": [{"name": "c", "resources": {"requests": {"cpu": "500m"}}}]}}),
        )
    }

    #[test]
    fn assumed_pods_count_until_confirmed_or_forgotten() {
        let mut c = Cache::new();
        c.upsert_node(node("n1", json!({})));
        let p = c.pod_info(bound("a", "n1"));
        c.assume_pod(p.clone(), "n1");
        assert_eq!(
            c.snapshot().get("n1").map(|n| n.requested.milli_cpu),
            Some(500)
        );
        assert!(c.is_assumed("a"));
        c.add_or_update_pod(p);
        assert!(!c.is_assumed("a"));
        assert!(!c.forget_pod("a"), "confirmed pods are not forgotten");
        assert_eq!(
            c.snapshot().get("n1").map(|n| n.requested.milli_cpu),
            Some(500)
        );

        let b = c.pod_info(bound("b", "n1"));
        c.assume_pod(b, "n1");
        assert!(c.forget_pod("b"));
        assert_eq!(
            c.snapshot().get("n1").map(|n| n.requested.milli_cpu),
            Some(500)
        );
        assert!(c.remove_pod("a"));
        assert_eq!(c.snapshot().get("n1").map(|n| n.pods.len()), Some(0));
    }

    #[test]
    fn relist_keeps_assumed_pods() {
        let mut c = Cache::new();
        c.upsert_node(node("n1", json!({})));
        let a = c.pod_info(bound("a", "n1"));
        c.add_or_update_pod(a);
        let b = c.pod_info(bound("b", "n1"));
        c.assume_pod(b, "n1");
        c.retain_listed_pods(&HashSet::new());
        assert!(!c.contains_pod("a"));
        assert!(c.contains_pod("b"));
    }

    #[test]
    fn node_changes_are_classified() {
        let mut c = Cache::new();
        assert_eq!(c.upsert_node(node("n1", json!({}))), NodeChange::Added);
        assert_eq!(
            c.upsert_node(node("n1", json!({}))),
            NodeChange::Updated { relevant: false }
        );
        assert_eq!(
            c.upsert_node(node(
                "n1",
                json!({"metadata": {"name": "n1", "labels": {"a": "b"}}})
            )),
            NodeChange::Updated { relevant: true }
        );
        assert_eq!(
            c.upsert_node(node("n1", json!({"metadata": {"name": "n1", "labels": {"a": "b"}}, "spec": {"unschedulable": true}}))),
            NodeChange::Updated { relevant: true }
        );
    }

    #[test]
    fn priorities_resolve_from_spec_class_or_default() {
        let mut c = Cache::new();
        let class = |name: &str, value: i32, default: bool, policy: &str| -> PriorityClass {
            serde_json::from_value(json!({"metadata": {"name": name}, "value": value, "globalDefault": default, "preemptionPolicy": policy}))
                .expect("pc")
        };
        c.upsert_priority_class(&class("high", 1000, false, "PreemptLowerPriority"));
        c.upsert_priority_class(&class("polite", 500, false, "Never"));
        let p = |spec: serde_json::Value| pod(json!({"metadata": {"name": "p"}, "spec": spec}));
        let cases = [
            (
                "explicit priority",
                json!({"containers": [], "priority": 7}),
                (7, false),
            ),
            (
                "class",
                json!({"containers": [], "priorityClassName": "high"}),
                (1000, false),
            ),
            (
                "class with Never",
                json!({"containers": [], "priorityClassName": "polite"}),
                (500, true),
            ),
            (
                "builtin class",
                json!({"containers": [], "priorityClassName": "system-node-critical"}),
                (2_000_001_000, false),
            ),
            (
                "unknown class",
                json!({"containers": [], "priorityClassName": "nope"}),
                (0, false),
            ),
            ("nothing", json!({"containers": []}), (0, false)),
        ];
        for (name, spec, want) in cases {
            assert_eq!(c.resolve_priority(&p(spec)), want, "{name}");
        }
        c.upsert_priority_class(&class("default", 42, true, "PreemptLowerPriority"));
        assert_eq!(
            c.resolve_priority(&p(json!({"containers": []}))),
            (42, false)
        );
    }
}
