//! NodeResourcesBalancedAllocation: prefers nodes whose cpu and memory would be used in
//! equal proportion after placing the pod (score = (1 - std deviation of the fractions)
//! × 100). Pods that request nothing are not scored (upstream skips best-effort pods so
//! they do not pile onto one node).

use crate::framework::{
    CycleState, NodeInfo, Plugin, PodInfo, PreScorePlugin, ScorePlugin, Snapshot, Status,
    MAX_NODE_SCORE,
};

pub const NAME: &str = "NodeResourcesBalancedAllocation";

#[derive(Debug, Default)]
pub struct BalancedAllocation;

impl BalancedAllocation {
    pub fn new() -> BalancedAllocation {
        BalancedAllocation
    }
}

impl Plugin for BalancedAllocation {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreScorePlugin for BalancedAllocation {
    fn pre_score(
        &self,
        _state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
            return Status::skip();
        }
        Status::success()
    }
}

/// Upstream `balancedResourceScorer` over (requested, allocatable) pairs.
pub fn balanced_score(pairs: &[(i64, i64)]) -> i64 {
    let fractions: Vec<f64> = pairs
        .iter()
        .filter(|(_, a)| *a != 0)
        .map(|(r, a)| (*r as f64 / *a as f64).min(1.0))
        .collect();
    let std = match fractions.len() {
        2 => ((fractions[0] - fractions[1]) / 2.0).abs(),
        n if n > 2 => {
            let mean = fractions.iter().sum::<f64>() / n as f64;
            (fractions
                .iter()
                .map(|f| (f - mean) * (f - mean))
                .sum::<f64>()
                / n as f64)
                .sqrt()
        }
        _ => 0.0,
    };
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

impl ScorePlugin for BalancedAllocation {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        balanced_score(&[
            (
                node.requested.milli_cpu + pod.requests.milli_cpu,
                node.allocatable.milli_cpu,
            ),
            (
                node.requested.memory + pod.requests.memory,
                node.allocatable.memory,
            ),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::testing::{node, pod, pod_req, score_all};
    use serde_json::json;

    #[test]
    fn balanced_nodes_score_higher() {
        let snapshot = Snapshot::from_parts(
            vec![
                node("balanced", json!({}), "4", "4Gi"),
                node("skewed", json!({}), "4", "4Gi"),
            ],
            vec![pod_req("existing", "3", "0", Some("skewed"))],
        );
        assert_eq!(
            score_all(
                &BalancedAllocation,
                &pod_req("p", "1", "1Gi", None),
                &snapshot
            ),
            vec![100, 62]
        );
        assert_eq!(
            score_all(
                &BalancedAllocation,
                &pod("p", json!({}), json!({})),
                &snapshot
            ),
            vec![0, 0]
        );
    }

    #[test]
    fn fractions_are_capped_and_zero_capacity_ignored() {
        let cases = [
            (vec![(2, 4), (2, 4)], 100),
            (vec![(4, 4), (0, 4)], 50),
            (vec![(8, 4), (0, 4)], 50),
            (vec![(1, 0), (2, 4)], 100),
            (vec![(1, 4), (2, 4), (3, 4)], 79),
        ];
        for (pairs, want) in cases {
            assert_eq!(balanced_score(&pairs), want, "{pairs:?}");
        }
    }
}
