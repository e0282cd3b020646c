//! NodePorts: a pod's `hostPort`s must be free on the node (same protocol and port
//! clash unless both bind different specific addresses).

use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterPlugin, PreFilterResult,
    Snapshot, Status,
};

pub const NAME: &str = "NodePorts";
pub const ERR_REASON: &str = "node(s) didn't have free ports for the requested pod ports";

#[derive(Debug, Default)]
pub struct NodePorts;

impl NodePorts {
    pub fn new() -> NodePorts {
        NodePorts
    }
}

impl Plugin for NodePorts {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodePorts {
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        if pod.host_ports.is_empty() {
            return (None, Status::skip());
        }
        (None, Status::success())
    }
}

impl FilterPlugin for NodePorts {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let clash = pod
            .host_ports
            .iter()
            .any(|want| node.used_ports.iter().any(|used| used.conflicts(want)));
        if clash {
            Status::unschedulable(ERR_REASON)
        } else {
            Status::success()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{filter_all, node, pod};
    use serde_json::json;

    fn with_port(
        name: &str,
        port: i32,
        ip: Option<&str>,
        node: Option<&str>,
    ) -> crate::framework::PodInfo {
        let mut p = json!({"containerPort": 80, "hostPort": port});
        if let Some(ip) = ip {
            p["hostIP"] = json!(ip);
        }
        let mut spec = json!({"containers": [{"name": "c", "ports": [p]}]});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        pod(name, json!({}), spec)
    }

    #[test]
    fn host_ports_must_be_free() {
        let snapshot = Snapshot::from_parts(
            vec![node("n1", json!({}), "1", "1Gi")],
            vec![with_port("existing", 8080, Some("10.0.0.1"), Some("n1"))],
        );
        let cases = [
            ("no ports", pod("p", json!({}), json!({})), Code::Success),
            (
                "same port any ip",
                with_port("p", 8080, None, None),
                Code::Unschedulable,
            ),
            (
                "same port same ip",
                with_port("p", 8080, Some("10.0.0.1"), None),
                Code::Unschedulable,
            ),
            (
                "same port other ip",
                with_port("p", 8080, Some("10.0.0.2"), None),
                Code::Success,
            ),
            (
                "other port",
                with_port("p", 9090, None, None),
                Code::Success,
            ),
        ];
        for (name, p, want) in cases {
            let got = filter_all(&NodePorts, &p, &snapshot);
            assert_eq!(got[0].code(), want, "{name}");
        }
    }
}
