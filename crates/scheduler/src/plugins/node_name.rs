//! NodeName: a pod that names its node (`spec.nodeName`) fits only there.

use crate::framework::{CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, Status};

pub const NAME: &str = "NodeName";
pub const ERR_REASON: &str = "node(s) didn't match the requested node name";

#[derive(Debug, Default)]
pub struct NodeName;

impl NodeName {
    pub fn new() -> NodeName {
        NodeName
    }
}

impl Plugin for NodeName {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for NodeName {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match pod.node_name() {
            Some(want) if want != node.name() => Status::unresolvable(ERR_REASON),
            _ => Status::success(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node, node_info, pod};
    use serde_json::json;

    #[test]
    fn only_the_named_node_fits() {
        let n = node_info(node("n1", json!({}), "1", "1Gi"), vec![]);
        let cases = [
            ("no name", json!({}), Code::Success),
            ("this node", json!({"nodeName": "n1"}), Code::Success),
            (
                "other node",
                json!({"nodeName": "n2"}),
                Code::UnschedulableAndUnresolvable,
            ),
        ];
        for (name, spec, want) in cases {
            let s = NodeName.filter(&CycleState::new(), &pod("p", json!({}), spec), &n);
            assert_eq!(s.code(), want, "{name}");
            if want != Code::Success {
                assert_eq!(s.message(), ERR_REASON);
            }
        }
    }
}
