//! Pods nominated to a node by preemption (upstream `nominator`): until their victims are
//! gone and they bind, filters count them on that node against pods of lower or equal
//! priority, so the room preemption made is not taken by someone else.

use std::collections::HashMap;
use std::sync::Arc;

use super::PodInfo;

#[derive(Debug, Default)]
pub struct Nominator {
    by_node: HashMap<String, Vec<Arc<PodInfo>>>,
    node_of: HashMap<String, String>,
}

impl Nominator {
    pub fn new() -> Nominator {
        Nominator::default()
    }

    /// Nominates `pod` to `node`, replacing an earlier nomination.
    pub fn add(&mut self, pod: Arc<PodInfo>, node: &str) {
        self.remove(&pod.uid);
        self.node_of.insert(pod.uid.clone(), node.to_string());
        self.by_node.entry(node.to_string()).or_default().push(pod);
    }

    pub fn remove(&mut self, uid: &str) {
        let Some(node) = self.node_of.remove(uid) else {
            return;
        };
        if let Some(pods) = self.by_node.get_mut(&node) {
            pods.retain(|p| p.uid != uid);
            if pods.is_empty() {
                self.by_node.remove(&node);
            }
        }
    }

    /// Pods nominated to `node`.
    pub fn nominated_pods(&self, node: &str) -> &[Arc<PodInfo>] {
        self.by_node.get(node).map_or(&[], Vec::as_slice)
    }

    pub fn nominated_node(&self, uid: &str) -> Option<&str> {
        self.node_of.get(uid).map(String::as_str)
    }

    pub fn is_empty(&self) -> bool {
        self.node_of.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(uid: &str) -> Arc<PodInfo> {
        Arc::new(PodInfo::from_pod(
            serde_json::from_value(json!({"metadata": {"uid": uid}})).expect("pod"),
        ))
    }

    #[test]
    fn renominating_moves_the_pod() {
        let mut n = Nominator::new();
        n.add(pod("a"), "n1");
        n.add(pod("b"), "n1");
        n.add(pod("a"), "n2");
        assert_eq!(n.nominated_pods("n1").len(), 1);
        assert_eq!(n.nominated_node("a"), Some("n2"));
        n.remove("a");
        n.remove("b");
        assert!(n.is_empty());
        assert!(n.nominated_pods("n1").is_empty());
    }
}
