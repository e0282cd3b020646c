//! PodTopologySpread: `whenUnsatisfiable: DoNotSchedule` constraints are hard (Filter:
//! matching pods in the node's domain + the pod itself − the global minimum must not
//! exceed `maxSkew`); `ScheduleAnyway` constraints only steer scoring toward domains
//! with fewer matching pods. Domains are counted over nodes that carry every
//! constraint's topology key and pass the node inclusion policies (node affinity
//! honoured, taints ignored, by default). Cluster-level default constraints are not
//! applied.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use apis::selectors::label::{LabelSelector, Operator, Requirement};

use super::helper::{find_untolerated_taint, pod_tolerations, RequiredNodeAffinity};
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterExtensions, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, ScoreExtensions, ScorePlugin, Snapshot, Status,
    MAX_NODE_SCORE,
};

pub const NAME: &str = "PodTopologySpread";
pub const ERR_REASON_CONSTRAINTS_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints";
pub const ERR_REASON_NODE_LABEL_NOT_MATCH: &str =
    "node(s) didn't match pod topology spread constraints (missing required label)";
const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";

#[derive(Clone, Debug)]
struct Constraint {
    max_skew: i64,
    topology_key: String,
    selector: LabelSelector,
    min_domains: i64,
    honor_node_affinity: bool,
    honor_taints: bool,
}

fn constraints(pod: &PodInfo, action: &str) -> Vec<Constraint> {
    let Some(list) = pod
        .spec()
        .and_then(|s| s.topology_spread_constraints.as_ref())
    else {
        return Vec::new();
    };
    list.iter()
        .filter(|c| c.when_unsatisfiable == action)
        .map(|c| {
            let mut selector = LabelSelector::from_metav1_opt(c.label_selector.as_ref())
                .unwrap_or_else(|_| LabelSelector::nothing());
            if !selector.matches_nothing() {
                let mut reqs = selector.requirements().to_vec();
                for key in c.match_label_keys.iter().flatten() {
                    if let Some(v) = pod.labels().and_then(|l| l.get(key)) {
                        if let Ok(r) = Requirement::new(key, Operator::In, vec![v.clone()]) {
                            reqs.push(r);
                        }
                    }
                }
                selector = LabelSelector::from_requirements(reqs);
            }
            Constraint {
                max_skew: i64::from(c.max_skew),
                topology_key: c.topology_key.clone(),
                selector,
                min_domains: i64::from(c.min_domains.unwrap_or(1)),
                honor_node_affinity: c.node_affinity_policy.as_deref() != Some("Ignore"),
                honor_taints: c.node_taints_policy.as_deref() == Some("Honor"),
            }
        })
        .collect()
}

fn has_all_keys(node: &NodeInfo, constraints: &[Constraint]) -> bool {
    constraints
        .iter()
        .all(|c| node.label(&c.topology_key).is_some())
}

fn included(
    c: &Constraint,
    pod: &PodInfo,
    node: &NodeInfo,
    required: &RequiredNodeAffinity,
) -> bool {
    (!c.honor_node_affinity || required.matches(node))
        && (!c.honor_taints
            || find_untolerated_taint(node.taints(), pod_tolerations(pod)).is_none())
}

fn count_matching(pods: &[Arc<PodInfo>], selector: &LabelSelector, namespace: &str) -> i64 {
    pods.iter()
        .filter(|p| !p.terminating && p.namespace == namespace && selector.matches(&p.labels()))
        .count() as i64
}

#[derive(Clone, Debug)]
struct PreFilterState {
    constraints: Vec<Constraint>,
    /// Per constraint: topology value → matching pods.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: the smallest count over its domains.
    min: Vec<i64>,
    required: RequiredNodeAffinity,
}

impl PreFilterState {
    fn min_match(&self, i: usize) -> i64 {
        if (self.counts[i].len() as i64) < self.constraints[i].min_domains {
            0
        } else {
            self.min[i]
        }
    }

    fn recompute_min(&mut self, i: usize) {
        self.min[i] = self.counts[i].values().copied().min().unwrap_or(0);
    }

    fn update_with_pod(&mut self, pod: &PodInfo, existing: &PodInfo, node: &NodeInfo, delta: i64) {
        if existing.namespace != pod.namespace
            || existing.terminating
            || !has_all_keys(node, &self.constraints)
        {
            return;
        }
        for i in 0..self.constraints.len() {
            let c = &self.constraints[i];
            if !included(c, pod, node, &self.required) || !c.selector.matches(&existing.labels()) {
                continue;
            }
            let Some(v) = node.label(&c.topology_key) else {
                continue;
            };
            *self.counts[i].entry(v.to_string()).or_insert(0) += delta;
            self.recompute_min(i);
        }
    }
}

#[derive(Debug, Default)]
pub struct PodTopologySpread;

impl PodTopologySpread {
    pub fn new() -> PodTopologySpread {
        PodTopologySpread
    }
}

impl Plugin for PodTopologySpread {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for PodTopologySpread {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let constraints = constraints(pod, "DoNotSchedule");
        if constraints.is_empty() {
            return (None, Status::skip());
        }
        let required = RequiredNodeAffinity::from_pod(pod);
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for node in snapshot.nodes() {
            if !has_all_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if !included(c, pod, node, &required) {
                    continue;
                }
                let Some(v) = node.label(&c.topology_key) else {
                    continue;
                };
                let n = count_matching(&node.pods, &c.selector, &pod.namespace);
                *counts[i].entry(v.to_string()).or_insert(0) += n;
            }
        }
        let mut s = PreFilterState {
            min: vec![0; constraints.len()],
            constraints,
            counts,
            required,
        };
        for i in 0..s.constraints.len() {
            s.recompute_min(i);
        }
        state.write(s);
        (None, Status::success())
    }

    fn pre_filter_extensions(&self) -> Option<&dyn PreFilterExtensions> {
        Some(self)
    }
}

impl PreFilterExtensions for PodTopologySpread {
    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        to_add: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>() {
            s.update_with_pod(pod, to_add, node, 1);
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        to_remove: &PodInfo,
        node: &NodeInfo,
        _snapshot: &Snapshot,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>() {
            s.update_with_pod(pod, to_remove, node, -1);
        }
        Status::success()
    }
}

impl FilterPlugin for PodTopologySpread {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>() else {
            return Status::success();
        };
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = node.label(&c.topology_key) else {
                return Status::unresolvable(ERR_REASON_NODE_LABEL_NOT_MATCH);
            };
            let self_match = i64::from(c.selector.matches(&pod.labels()));
            let matching = s.counts[i].get(v).copied().unwrap_or(0);
            if matching + self_match - s.min_match(i) > c.max_skew {
                return Status::unschedulable(ERR_REASON_CONSTRAINTS_NOT_MATCH);
            }
        }
        Status::success()
    }
}

#[derive(Clone, Debug)]
struct PreScoreState {
    constraints: Vec<Constraint>,
    /// Feasible nodes lacking a topology key; they score 0.
    ignored: HashSet<String>,
    /// Per constraint (hostname constraints excluded): value → matching pods.
    counts: Vec<HashMap<String, i64>>,
    /// Per constraint: ln(number of domains + 2), so wide topologies weigh less per pod.
    weights: Vec<f64>,
    namespace: String,
}

impl PreScorePlugin for PodTopologySpread {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        let constraints = constraints(pod, "ScheduleAnyway");
        if constraints.is_empty() {
            return Status::skip();
        }
        let required = RequiredNodeAffinity::from_pod(pod);
        let mut ignored = HashSet::new();
        let mut counts: Vec<HashMap<String, i64>> = vec![HashMap::new(); constraints.len()];
        for node in nodes {
            if !has_all_keys(node, &constraints) {
                ignored.insert(node.name().to_string());
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key != LABEL_HOSTNAME {
                    if let Some(v) = node.label(&c.topology_key) {
                        counts[i].entry(v.to_string()).or_insert(0);
                    }
                }
            }
        }
        let weights = constraints
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let size = if c.topology_key == LABEL_HOSTNAME {
                    nodes.len() - ignored.len()
                } else {
                    counts[i].len()
                };
                ((size + 2) as f64).ln()
            })
            .collect();
        for node in snapshot.nodes() {
            if !has_all_keys(node, &constraints) {
                continue;
            }
            for (i, c) in constraints.iter().enumerate() {
                if c.topology_key == LABEL_HOSTNAME || !included(c, pod, node, &required) {
                    continue;
                }
                let Some(v) = node.label(&c.topology_key) else {
                    continue;
                };
                if let Some(slot) = counts[i].get_mut(v) {
                    *slot += count_matching(&node.pods, &c.selector, &pod.namespace);
                }
            }
        }
        state.write(PreScoreState {
            constraints,
            ignored,
            counts,
            weights,
            namespace: pod.namespace.clone(),
        });
        Status::success()
    }
}

impl ScorePlugin for PodTopologySpread {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<PreScoreState>() else {
            return 0;
        };
        if s.ignored.contains(node.name()) {
            return 0;
        }
        let mut score = 0.0;
        for (i, c) in s.constraints.iter().enumerate() {
            let Some(v) = node.label(&c.topology_key) else {
                continue;
            };
            let count = if c.topology_key == LABEL_HOSTNAME {
                count_matching(&node.pods, &c.selector, &s.namespace)
            } else {
                s.counts[i].get(v).copied().unwrap_or(0)
            };
            score += count as f64 * s.weights[i] + (c.max_skew - 1) as f64;
        }
        score.round() as i64
    }

    fn score_extensions(&self) -> Option<&dyn ScoreExtensions> {
        Some(self)
    }
}

impl ScoreExtensions for PodTopologySpread {
    /// Fewer matching pods → higher score: `100 × (max + min − score) / max`.
    fn normalize_score(
        &self,
        state: &CycleState,
        _pod: &PodInfo,
        nodes: &[&NodeInfo],
        scores: &mut [i64],
    ) -> Status {
        let Some(s) = state.read::<PreScoreState>() else {
            return Status::success();
        };
        let considered = || {
            nodes
                .iter()
                .zip(scores.iter())
                .filter(|(n, _)| !s.ignored.contains(n.name()))
                .map(|(_, v)| *v)
        };
        let min = considered().min().unwrap_or(0);
        let max = considered().max().unwrap_or(0);
        for (n, v) in nodes.iter().zip(scores.iter_mut()) {
            *v = if s.ignored.contains(n.name()) {
                0
            } else if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - *v) / max
            };
        }
        Status::success()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{filter_all, node, pod, score_all};
    use serde_json::{json, Value};

    fn spread(key: &str, skew: i32, when: &str) -> Value {
        json!({"topologySpreadConstraints": [{"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
            "labelSelector": {"matchLabels": {"app": "web"}}}]})
    }

    fn web(name: &str, node: &str) -> PodInfo {
        pod(name, json!({"app": "web"}), json!({"nodeName": node}))
    }

    fn snapshot(pods: Vec<PodInfo>) -> Snapshot {
        Snapshot::from_parts(
            vec![
                node("n1", json!({"zone": "a"}), "4", "4Gi"),
                node("n2", json!({"zone": "a"}), "4", "4Gi"),
                node("n3", json!({"zone": "b"}), "4", "4Gi"),
                node("bare", json!({}), "4", "4Gi"),
            ],
            pods,
        )
    }

    #[test]
    fn hard_constraints_bound_the_skew() {
        const OK: Code = Code::Success;
        const NO: Code = Code::Unschedulable;
        const NEVER: Code = Code::UnschedulableAndUnresolvable;
        let cases = [
            (
                "zone skew 1, zone a has one more",
                vec![web("w1", "n1")],
                spread("zone", 1, "DoNotSchedule"),
                vec![NO, NO, OK, NEVER],
            ),
            (
                "zone skew 2 allows it",
                vec![web("w1", "n1")],
                spread("zone", 2, "DoNotSchedule"),
                vec![OK, OK, OK, NEVER],
            ),
            (
                "hostname skew 1",
                vec![web("w1", "n1"), web("w2", "n2")],
                spread("kubernetes.io/hostname", 1, "DoNotSchedule"),
                vec![NO, NO, OK, OK],
            ),
            (
                "soft constraints do not filter",
                vec![web("w1", "n1")],
                spread("zone", 1, "ScheduleAnyway"),
                vec![OK, OK, OK, OK],
            ),
        ];
        for (name, pods, spec, want) in cases {
            let got: Vec<Code> = filter_all(
                &PodTopologySpread,
                &pod("p", json!({"app": "web"}), spec),
                &snapshot(pods),
            )
            .iter()
            .map(|s| s.code())
            .collect();
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn min_domains_counts_missing_domains_as_zero() {
        let mut spec = spread("zone", 1, "DoNotSchedule");
        spec["topologySpreadConstraints"][0]["minDomains"] = json!(3);
        let pods = vec![web("w1", "n1"), web("w2", "n3")];
        let got: Vec<Code> = filter_all(
            &PodTopologySpread,
            &pod("p", json!({"app": "web"}), spec),
            &snapshot(pods),
        )
        .iter()
        .map(|s| s.code())
        .collect();
        assert_eq!(
            got,
            vec![
                Code::Unschedulable,
                Code::Unschedulable,
                Code::Unschedulable,
                Code::UnschedulableAndUnresolvable
            ]
        );
    }

    #[test]
    fn soft_constraints_prefer_emptier_domains() {
        let s = snapshot(vec![web("w1", "n1"), web("w2", "n2")]);
        let scores = score_all(
            &PodTopologySpread,
            &pod(
                "p",
                json!({"app": "web"}),
                spread("zone", 1, "ScheduleAnyway"),
            ),
            &s,
        );
        assert!(
            scores[2] > scores[0] && scores[0] == scores[1],
            "{scores:?}"
        );
        assert_eq!(scores[3], 0);
        let host = score_all(
            &PodTopologySpread,
            &pod(
                "p",
                json!({"app": "web"}),
                spread("kubernetes.io/hostname", 1, "ScheduleAnyway"),
            ),
            &s,
        );
        assert!(host[2] > host[0] && host[3] > host[0], "{host:?}");
    }
}
