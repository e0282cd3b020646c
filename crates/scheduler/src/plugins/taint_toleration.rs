//! TaintToleration: Filter rejects nodes with a NoSchedule/NoExecute taint the pod does
//! not tolerate; Score prefers nodes with fewer untolerated PreferNoSchedule taints.

use k8s_openapi::api::core::v1::Toleration;

use super::helper::{
    find_untolerated_taint, normalize, pod_tolerations, tolerations_tolerate_taint,
};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreScorePlugin, ScoreExtensions,
    ScorePlugin, Snapshot, Status,
};

pub const NAME: &str = "TaintToleration";

#[derive(Debug, Default)]
pub struct TaintToleration;

impl TaintToleration {
    pub fn new() -> TaintToleration {
        TaintToleration
    }
}

/// Untolerated-taint reason, worded as upstream.
pub fn untolerated_reason(key: &str, value: &str) -> String {
    format!("node(s) had untolerated taint {{{key}: {value}}}")
}

impl Plugin for TaintToleration {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl FilterPlugin for TaintToleration {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        match find_untolerated_taint(node.taints(), pod_tolerations(pod)) {
            None => Status::success(),
            Some(t) => {
                Status::unresolvable(untolerated_reason(&t.key, t.value.as_deref().unwrap_or("")))
            }
        }
    }
}

/// The pod's tolerations that can tolerate PreferNoSchedule taints.
#[derive(Clone, Debug)]
struct PreScoreState(Vec<Toleration>);

impl PreScorePlugin for TaintToleration {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        let tolerations = pod_tolerations(pod)
            .iter()
            .filter(|t| {
                matches!(
                    t.effect.as_deref(),
                    None | Some("") | Some("PreferNoSchedule")
                )
            })
            .cloned()
            .collect();
        state.write(PreScoreState(tolerations));
        Status::success()
    }
}

impl ScorePlugin for TaintToleration {
    /// The number of PreferNoSchedule taints the pod does not tolerate.
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let tolerations = state
            .read::<PreScoreState>()
            .map_or(&[][..], |s| s.0.as_slice());
        node.taints()
            .iter()
            .filter(|t| {
                t.effect == "PreferNoSchedule" && !tolerations_tolerate_taint(tolerations, t)
            })
            .count() as i64
    }

    fn score_extensions(&self) -> Option<&dyn ScoreExtensions> {
        Some(self)
    }
}

impl ScoreExtensions for TaintToleration {
    fn normalize_score(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        scores: &mut [i64],
    ) -> Status {
        normalize(true, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{node_info, node_json, pod, score_all};
    use serde_json::json;

    fn tainted(name: &str, taints: serde_json::Value) -> k8s_openapi::api::core::v1::Node {
        node_json(json!({"metadata": {"name": name}, "spec": {"taints": taints}}))
    }

    #[test]
    fn filter_rejects_untolerated_hard_taints() {
        let cp = node_info(
            tainted(
                "cp",
                json!([{"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"}]),
            ),
            vec![],
        );
        let vk = node_info(
            tainted(
                "vk",
                json!([{"key": "virtual-kubelet.io/provider", "value": "rkube", "effect": "NoSchedule"}]),
            ),
            vec![],
        );
        let soft = node_info(
            tainted(
                "soft",
                json!([{"key": "k", "value": "v", "effect": "PreferNoSchedule"}]),
            ),
            vec![],
        );
        let tolerate_vk = json!({"tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}]});
        let cases = [
            (
                "control plane",
                &cp,
                json!({}),
                Some("node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }"),
            ),
            (
                "virtual",
                &vk,
                json!({}),
                Some("node(s) had untolerated taint {virtual-kubelet.io/provider: rkube}"),
            ),
            ("virtual tolerated", &vk, tolerate_vk, None),
            ("prefer only", &soft, json!({}), None),
        ];
        for (name, n, spec, want) in cases {
            let s = TaintToleration.filter(&CycleState::new(), &pod("p", json!({}), spec), n);
            match want {
                None => assert!(s.is_success(), "{name}: {s}"),
                Some(msg) => {
                    assert_eq!(s.code(), Code::UnschedulableAndUnresolvable, "{name}");
                    assert_eq!(s.message(), msg, "{name}");
                }
            }
        }
    }

    #[test]
    fn score_prefers_fewer_untolerated_prefer_no_schedule_taints() {
        let snapshot = Snapshot::from_parts(
            vec![
                tainted("clean", json!([])),
                tainted("one", json!([{"key": "a", "effect": "PreferNoSchedule"}])),
                tainted(
                    "two",
                    json!([{"key": "a", "effect": "PreferNoSchedule"}, {"key": "b", "effect": "PreferNoSchedule"}]),
                ),
            ],
            vec![],
        );
        let p = pod("p", json!({}), json!({}));
        assert_eq!(score_all(&TaintToleration, &p, &snapshot), vec![100, 50, 0]);
        let tolerates_a = pod(
            "p",
            json!({}),
            json!({"tolerations": [{"key": "a", "operator": "Exists", "effect": "PreferNoSchedule"}]}),
        );
        assert_eq!(
            score_all(&TaintToleration, &tolerates_a, &snapshot),
            vec![100, 100, 0]
        );
    }
}
