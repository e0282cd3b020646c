//! The cluster as one scheduling cycle sees it: every node with its pods, plus the
//! few cluster-wide facts plugins look up (how many nodes hold an image, namespace
//! labels). The scheduling loop owns it and mutates it between cycles, so cycles read
//! it without locks or copies (upstream takes an incremental snapshot instead).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;

use super::types::{NodeInfo, PodInfo};

#[derive(Debug, Default)]
pub struct Snapshot {
    /// Nodes that exist as Node objects, in a stable order.
    nodes: Vec<NodeInfo>,
    index: HashMap<String, usize>,
    /// Nodes known only from pods bound to them (Node not seen yet, or deleted).
    ghosts: HashMap<String, NodeInfo>,
    /// Normalised image name → number of nodes reporting it.
    image_nodes: HashMap<String, usize>,
    namespace_labels: HashMap<String, BTreeMap<String, String>>,
    /// Pods anywhere with a required anti-affinity term (lets InterPodAffinity skip).
    pods_with_required_anti_affinity: usize,
    /// Pods anywhere with any (anti-)affinity term.
    pods_with_affinity: usize,
}

impl Snapshot {
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// A snapshot of `nodes` with `pods` placed by their `spec.nodeName` (for tests).
    pub fn from_parts(nodes: Vec<Node>, pods: Vec<PodInfo>) -> Snapshot {
        let mut s = Snapshot::new();
        for n in nodes {
            s.upsert_node(Arc::new(n));
        }
        for p in pods {
            let node = p.node_name().unwrap_or_default().to_string();
            s.add_pod(&node, Arc::new(p));
        }
        s
    }

    /// Every node that has a Node object.
    pub fn nodes(&self) -> &[NodeInfo] {
        &self.nodes
    }

    pub fn num_nodes(&self) -> usize {
        self.nodes.len()
    }

    pub fn get(&self, name: &str) -> Option<&NodeInfo> {
        self.index.get(name).map(|i| &self.nodes[*i])
    }

    /// Position of node `name` in [`Snapshot::nodes`].
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// How many nodes report image `normalized` (see `normalized_image_name`).
    pub fn image_num_nodes(&self, normalized: &str) -> usize {
        self.image_nodes.get(normalized).copied().unwrap_or(0)
    }

    /// Whether any node reports any image at all.
    pub fn has_images(&self) -> bool {
        !self.image_nodes.is_empty()
    }

    /// Pods with a required anti-affinity term, over all nodes.
    pub fn pods_with_required_anti_affinity(&self) -> usize {
        self.pods_with_required_anti_affinity
    }

    /// Pods with any (anti-)affinity term, over all nodes.
    pub fn pods_with_affinity(&self) -> usize {
        self.pods_with_affinity
    }

    pub fn namespace_labels(&self, namespace: &str) -> Option<&BTreeMap<String, String>> {
        self.namespace_labels.get(namespace)
    }

    pub fn set_namespace_labels(&mut self, namespace: &str, labels: BTreeMap<String, String>) {
        self.namespace_labels.insert(namespace.to_string(), labels);
    }

    pub fn remove_namespace(&mut self, namespace: &str) {
        self.namespace_labels.remove(namespace);
    }

    fn count_images(&mut self, info: &NodeInfo, delta: isize) {
        for name in info.images.keys() {
            let e = self.image_nodes.entry(name.clone()).or_insert(0);
            *e = e.saturating_add_signed(delta);
            if *e == 0 {
                self.image_nodes.remove(name);
            }
        }
    }

    /// Adds or replaces a Node object.
    pub fn upsert_node(&mut self, node: Arc<Node>) {
        let name = node.metadata.name.clone().unwrap_or_default();
        if let Some(&i) = self.index.get(&name) {
            let old = std::mem::take(&mut self.nodes[i]);
            self.count_images(&old, -1);
            let mut info = old;
            info.set_node(node);
            self.count_images(&info, 1);
            self.nodes[i] = info;
            return;
        }
        let mut info = self
            .ghosts
            .remove(&name)
            .unwrap_or_else(|| NodeInfo::named(&name));
        info.set_node(node);
        self.count_images(&info, 1);
        self.index.insert(name, self.nodes.len());
        self.nodes.push(info);
    }

    /// Removes a Node object; its pods stay accounted until they go.
    pub fn remove_node(&mut self, name: &str) {
        let Some(i) = self.index.remove(name) else {
            return;
        };
        let mut info = self.nodes.swap_remove(i);
        if i < self.nodes.len() {
            let moved = self.nodes[i].name().to_string();
            self.index.insert(moved, i);
        }
        self.count_images(&info, -1);
        if !info.pods.is_empty() {
            info.clear_node();
            self.ghosts.insert(name.to_string(), info);
        }
    }

    fn entry(&mut self, node: &str) -> &mut NodeInfo {
        match self.index.get(node) {
            Some(&i) => &mut self.nodes[i],
            None => self
                .ghosts
                .entry(node.to_string())
                .or_insert_with(|| NodeInfo::named(node)),
        }
    }

    fn count_affinity(&mut self, pod: &PodInfo, add: bool) {
        let step = |n: &mut usize| *n = if add { *n + 1 } else { n.saturating_sub(1) };
        if pod.has_affinity() {
            step(&mut self.pods_with_affinity);
        }
        if !pod.required_anti_affinity_terms.is_empty() {
            step(&mut self.pods_with_required_anti_affinity);
        }
    }

    pub fn add_pod(&mut self, node: &str, pod: Arc<PodInfo>) {
        self.count_affinity(&pod, true);
        self.entry(node).add_pod(pod);
    }

    pub fn remove_pod(&mut self, node: &str, uid: &str) -> Option<Arc<PodInfo>> {
        let pod = if let Some(&i) = self.index.get(node) {
            self.nodes[i].remove_pod(uid)
        } else {
            let ghost = self.ghosts.get_mut(node)?;
            let pod = ghost.remove_pod(uid);
            if ghost.pods.is_empty() {
                self.ghosts.remove(node);
            }
            pod
        };
        if let Some(p) = &pod {
            self.count_affinity(p, false);
        }
        pod
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, images: serde_json::Value) -> Arc<Node> {
        Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name}, "status": {"allocatable": {"cpu": "1"}, "images": images}}))
                .expect("node"),
        )
    }

    fn pod(uid: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::from_pod(
            serde_json::from_value(json!({"metadata": {"uid": uid, "name": uid, "namespace": "default"}, "spec": {"containers": []}}))
                .expect("pod"),
        ))
    }

    #[test]
    fn pods_before_their_node_are_kept_and_joined() {
        let mut s = Snapshot::new();
        s.add_pod("n1", pod("a"));
        assert_eq!(s.num_nodes(), 0);
        s.upsert_node(node("n1", json!([])));
        assert_eq!(s.get("n1").map(|n| n.pods.len()), Some(1));
        s.remove_node("n1");
        assert!(s.get("n1").is_none());
        assert!(s.remove_pod("n1", "a").is_some());
        s.upsert_node(node("n1", json!([])));
        assert_eq!(s.get("n1").map(|n| n.pods.len()), Some(0));
    }

    #[test]
    fn removing_a_node_keeps_the_index_consistent() {
        let mut s = Snapshot::new();
        for n in ["a", "b", "c"] {
            s.upsert_node(node(n, json!([])));
        }
        s.remove_node("a");
        for n in ["b", "c"] {
            assert_eq!(s.get(n).map(NodeInfo::name), Some(n));
        }
    }

    #[test]
    fn image_counts_follow_node_updates() {
        let mut s = Snapshot::new();
        s.upsert_node(node("a", json!([{"names": ["nginx:1"], "sizeBytes": 10}])));
        s.upsert_node(node("b", json!([{"names": ["nginx:1"], "sizeBytes": 10}])));
        assert_eq!(s.image_num_nodes("nginx:1"), 2);
        s.upsert_node(node("b", json!([])));
        assert_eq!(s.image_num_nodes("nginx:1"), 1);
        s.remove_node("a");
        assert!(!s.has_images());
    }
}
