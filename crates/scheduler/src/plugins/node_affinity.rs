//! NodeAffinity: Filter enforces `spec.nodeSelector` and required node affinity; Score
//! sums the weights of the preferred terms a node matches.

use std::collections::HashSet;

use super::helper::{normalize, PreferredNodeAffinity, RequiredNodeAffinity};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterPlugin, PreFilterResult,
    PreScorePlugin, ScoreExtensions, ScorePlugin, Snapshot, Status,
};

pub const NAME: &str = "NodeAffinity";
pub const ERR_REASON_POD: &str = "node(s) didn't match Pod's node affinity/selector";

#[derive(Debug, Default)]
pub struct NodeAffinity;

impl NodeAffinity {
    pub fn new() -> NodeAffinity {
        NodeAffinity
    }
}

#[derive(Clone, Debug)]
struct PreFilterState(RequiredNodeAffinity);

#[derive(Clone, Debug)]
struct PreScoreState(PreferredNodeAffinity);

impl Plugin for NodeAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodeAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let required = RequiredNodeAffinity::from_pod(pod);
        if required.is_empty() {
            return (None, Status::skip());
        }
        let result = required.pinned_node_names().map(|names| PreFilterResult {
            node_names: Some(names.iter().cloned().collect::<HashSet<_>>()),
        });
        state.write(PreFilterState(required));
        (result, Status::success())
    }
}

impl FilterPlugin for NodeAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let matches = match state.read::<PreFilterState>() {
            Some(s) => s.0.matches(node),
            None => RequiredNodeAffinity::from_pod(pod).matches(node),
        };
        if matches {
            Status::success()
        } else {
            Status::unresolvable(ERR_REASON_POD)
        }
    }
}

impl PreScorePlugin for NodeAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        let preferred = PreferredNodeAffinity::from_pod(pod);
        if preferred.is_empty() {
            return Status::skip();
        }
        state.write(PreScoreState(preferred));
        Status::success()
    }
}

impl ScorePlugin for NodeAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        state.read::<PreScoreState>().map_or(0, |s| s.0.score(node))
    }

    fn score_extensions(&self) -> Option<&dyn ScoreExtensions> {
        Some(self)
    }
}

impl ScoreExtensions for NodeAffinity {
    fn normalize_score(
        &self,
        _state: &CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        scores: &mut [i64],
    ) -> Status {
        normalize(false, scores);
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{filter_all, node, pod, score_all};
    use serde_json::json;

    fn snapshot() -> Snapshot {
        Snapshot::from_parts(
            vec![
                node("a", json!({"zone": "a", "disk": "ssd"}), "1", "1Gi"),
                node("b", json!({"zone": "b"}), "1", "1Gi"),
            ],
            vec![],
        )
    }

    #[test]
    fn filter_honours_node_selector_and_required_affinity() {
        let s = snapshot();
        let cases = [
            (
                "nothing required",
                json!({}),
                [Code::Success, Code::Success],
            ),
            (
                "selector",
                json!({"nodeSelector": {"disk": "ssd"}}),
                [Code::Success, Code::UnschedulableAndUnresolvable],
            ),
            (
                "required affinity",
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}}}),
                [Code::UnschedulableAndUnresolvable, Code::Success],
            ),
            (
                "selector and affinity both apply",
                json!({"nodeSelector": {"disk": "ssd"}, "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}]}}}}),
                [
                    Code::UnschedulableAndUnresolvable,
                    Code::UnschedulableAndUnresolvable,
                ],
            ),
        ];
        for (name, spec, want) in cases {
            let got: Vec<Code> = filter_all(&NodeAffinity, &pod("p", json!({}), spec), &s)
                .iter()
                .map(|s| s.code())
                .collect();
            assert_eq!(got, want, "{name}");
        }
        let rejected = filter_all(
            &NodeAffinity,
            &pod("p", json!({}), json!({"nodeSelector": {"zone": "x"}})),
            &s,
        );
        assert_eq!(rejected[0].message(), ERR_REASON_POD);
    }

    #[test]
    fn score_sums_matching_preferred_weights() {
        let spec = json!({"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 2, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 6, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}}]}}});
        assert_eq!(
            score_all(&NodeAffinity, &pod("p", json!({}), spec), &snapshot()),
            vec![33, 100]
        );
        assert_eq!(
            score_all(&NodeAffinity, &pod("p", json!({}), json!({})), &snapshot()),
            vec![0, 0]
        );
    }
}
