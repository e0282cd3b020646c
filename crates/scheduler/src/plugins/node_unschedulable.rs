//! NodeUnschedulable: cordoned nodes (`spec.unschedulable`) take only pods tolerating
//! the `node.kubernetes.io/unschedulable:NoSchedule` taint.

use k8s_openapi::api::core::v1::Taint;

use super::helper::{pod_tolerations, tolerations_tolerate_taint};
use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Status};

pub const NAME: &str = "NodeUnschedulable";
pub const ERR_REASON_UNSCHEDULABLE: &str = "node(s) were unschedulable";
pub const TAINT_NODE_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

#[derive(Debug, Default)]
pub struct NodeUnschedulable;

impl NodeUnschedulable {
    pub fn new() -> NodeUnschedulable {
        NodeUnschedulable
    }
}

impl Plugin for NodeUnschedulable {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeUnschedulable {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        if !node.unschedulable() {
            return Status::success();
        }
        let taint = Taint {
            key: TAINT_NODE_UNSCHEDULABLE.into(),
            effect: "NoSchedule".into(),
            value: None,
            time_added: None,
        };
        if tolerations_tolerate_taint(pod_tolerations(pod), &taint) {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_UNSCHEDULABLE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node_info, node_json, pod};
    use serde_json::json;

    #[test]
    fn cordoned_nodes_need_a_toleration() {
        let cordoned = node_info(
            node_json(json!({"metadata": {"name": "n"}, "spec": {"unschedulable": true}})),
            vec![],
        );
        let open = node_info(node_json(json!({"metadata": {"name": "n"}})), vec![]);
        let tolerating = json!({"tolerations": [{"key": TAINT_NODE_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]});
        let cases = [
            ("open node", &open, json!({}), Code::Success),
            (
                "cordoned",
                &cordoned,
                json!({}),
                Code::UnschedulableAndUnresolvable,
            ),
            (
                "cordoned but tolerated",
                &cordoned,
                tolerating,
                Code::Success,
            ),
        ];
        for (name, n, spec, want) in cases {
            let s = NodeUnschedulable.filter(&CycleState::new(), &pod("p", json!({}), spec), n);
            assert_eq!(s.code(), want, "{name}");
        }
    }
}
