//! InterPodAffinity: required pod affinity / anti-affinity by topology domain (Filter),
//! and preferred terms plus existing pods' terms toward the incoming pod (Score).
//!
//! PreFilter counts, per `(topologyKey, value)` domain, the existing pods that match the
//! incoming pod's terms and the existing pods whose anti-affinity forbids the incoming
//! pod; Filter then only looks up the node's own labels. A pod whose affinity selects
//! itself may start a group alone when nothing else matches yet, as upstream allows.

use std::collections::{BTreeMap, HashMap};

use super::helper::normalize_min_max;
use crate::framework::types::AffinityTerm;
use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterExtensions, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, ScoreExtensions, ScorePlugin, Snapshot, Status,
};

pub const NAME: &str = "InterPodAffinity";
pub const ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't satisfy existing pods anti-affinity rules";
pub const ERR_REASON_AFFINITY_RULES_NOT_MATCH: &str = "node(s) didn't match pod affinity rules";
pub const ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH: &str =
    "node(s) didn't match pod anti-affinity rules";
/// Weight of an existing pod's required affinity toward the incoming pod when scoring.
const HARD_POD_AFFINITY_WEIGHT: i64 = 1;

/// topologyKey → value → count (zero entries are removed).
#[derive(Clone, Debug, Default)]
struct TopologyCounts(HashMap<String, HashMap<String, i64>>);

impl TopologyCounts {
    fn add(&mut self, key: &str, value: &str, delta: i64) {
        let values = self.0.entry(key.to_string()).or_default();
        let slot = values.entry(value.to_string()).or_insert(0);
        *slot += delta;
        if *slot == 0 {
            values.remove(value);
            if values.is_empty() {
                self.0.remove(key);
            }
        }
    }

    fn get(&self, key: &str, value: &str) -> i64 {
        self.0
            .get(key)
            .and_then(|v| v.get(value))
            .copied()
            .unwrap_or(0)
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[derive(Clone, Debug, Default)]
struct PreFilterState {
    /// Domains where an existing pod's required anti-affinity matches the incoming pod.
    existing_anti_affinity_counts: TopologyCounts,
    /// Domains holding pods that match all the incoming pod's required affinity terms.
    affinity_counts: TopologyCounts,
    /// Domains holding pods that match one of the incoming pod's anti-affinity terms.
    anti_affinity_counts: TopologyCounts,
    /// Labels of the incoming pod's namespace.
    namespace_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Default)]
pub struct InterPodAffinity;

impl InterPodAffinity {
    pub fn new() -> InterPodAffinity {
        InterPodAffinity
    }
}

fn matches_all(
    terms: &[AffinityTerm],
    pod: &PodInfo,
    ns_labels: Option<&BTreeMap<String, String>>,
) -> bool {
    !terms.is_empty() && terms.iter().all(|t| t.matches(pod, ns_labels))
}

impl PreFilterState {
    /// Accounts `existing` on `node` into every count, `multiplier` = 1 to add, -1 to remove.
    fn update_with_pod(
        &mut self,
        pod: &PodInfo,
        existing: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
        multiplier: i64,
    ) {
        if node.labels().is_none_or(|l| l.is_empty()) {
            return;
        }
        for t in &existing.required_anti_affinity_terms {
            if let Some(v) = node.label(&t.topology_key) {
                if t.matches(pod, self.namespace_labels.as_ref()) {
                    self.existing_anti_affinity_counts
                        .add(&t.topology_key, v, multiplier);
                }
            }
        }
        let existing_ns = snapshot.namespace_labels(&existing.namespace);
        if matches_all(&pod.required_affinity_terms, existing, existing_ns) {
            for t in &pod.required_affinity_terms {
                if let Some(v) = node.label(&t.topology_key) {
                    self.affinity_counts.add(&t.topology_key, v, multiplier);
                }
            }
        }
        for t in &pod.required_anti_affinity_terms {
            if let Some(v) = node.label(&t.topology_key) {
                if t.matches(existing, existing_ns) {
                    self.anti_affinity_counts
                        .add(&t.topology_key, v, multiplier);
                }
            }
        }
    }

    fn satisfies_pod_affinity(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        let mut pods_exist = true;
        for t in &pod.required_affinity_terms {
            match node.label(&t.topology_key) {
                Some(v) if self.affinity_counts.get(&t.topology_key, v) <= 0 => pods_exist = false,
                Some(_) => {}
                None => return false,
            }
        }
        if pods_exist {
            return true;
        }
        // The first pod of a group whose affinity selects itself.
        self.affinity_counts.is_empty()
            && matches_all(
                &pod.required_affinity_terms,
                pod,
                self.namespace_labels.as_ref(),
            )
    }

    fn satisfies_pod_anti_affinity(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        if self.anti_affinity_counts.is_empty() {
            return true;
        }
        !pod.required_anti_affinity_terms.iter().any(|t| {
            node.label(&t.topology_key)
                .is_some_and(|v| self.anti_affinity_counts.get(&t.topology_key, v) > 0)
        })
    }

    fn satisfies_existing_pods_anti_affinity(&self, node: &NodeInfo) -> bool {
        if self.existing_anti_affinity_counts.is_empty() {
            return true;
        }
        !node
            .labels()
            .into_iter()
            .flatten()
            .any(|(k, v)| self.existing_anti_affinity_counts.get(k, v) > 0)
    }
}

impl Plugin for InterPodAffinity {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for InterPodAffinity {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        let own_terms =
            !pod.required_affinity_terms.is_empty() || !pod.required_anti_affinity_terms.is_empty();
        if !own_terms && snapshot.pods_with_required_anti_affinity() == 0 {
            return (None, Status::skip());
        }
        let mut s = PreFilterState {
            namespace_labels: snapshot.namespace_labels(&pod.namespace).cloned(),
            ..Default::default()
        };
        for node in snapshot.nodes() {
            if node.labels().is_none_or(|l| l.is_empty()) {
                continue;
            }
            if !own_terms && node.pods_with_required_anti_affinity == 0 {
                continue;
            }
            for existing in &node.pods {
                if own_terms {
                    s.update_with_pod(pod, existing, node, snapshot, 1);
                } else {
                    for t in &existing.required_anti_affinity_terms {
                        if let Some(v) = node.label(&t.topology_key) {
                            if t.matches(pod, s.namespace_labels.as_ref()) {
                                s.existing_anti_affinity_counts.add(&t.topology_key, v, 1);
                            }
                        }
                    }
                }
            }
        }
        state.write(s);
        (None, Status::success())
    }

    fn pre_filter_extensions(&self) -> Option<&dyn PreFilterExtensions> {
        Some(self)
    }
}

impl PreFilterExtensions for InterPodAffinity {
    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        to_add: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>() {
            s.update_with_pod(pod, to_add, node, snapshot, 1);
        }
        Status::success()
    }

    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        to_remove: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Status {
        if let Some(s) = state.read_mut::<PreFilterState>() {
            s.update_with_pod(pod, to_remove, node, snapshot, -1);
        }
        Status::success()
    }
}

impl FilterPlugin for InterPodAffinity {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let Some(s) = state.read::<PreFilterState>() else {
            return Status::success();
        };
        if !s.satisfies_pod_affinity(pod, node) {
            return Status::unresolvable(ERR_REASON_AFFINITY_RULES_NOT_MATCH);
        }
        if !s.satisfies_pod_anti_affinity(pod, node) {
            return Status::unschedulable(ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        if !s.satisfies_existing_pods_anti_affinity(node) {
            return Status::unschedulable(ERR_REASON_EXISTING_ANTI_AFFINITY_RULES_NOT_MATCH);
        }
        Status::success()
    }
}

/// topologyKey → value → summed weight.
#[derive(Clone, Debug, Default)]
struct PreScoreState(HashMap<String, HashMap<String, i64>>);

impl PreScoreState {
    fn process_term(
        &mut self,
        term: &AffinityTerm,
        weight: i64,
        pod: &PodInfo,
        ns: Option<&BTreeMap<String, String>>,
        node: &NodeInfo,
    ) {
        if !term.matches(pod, ns) {
            return;
        }
        if let Some(v) = node.label(&term.topology_key) {
            *self
                .0
                .entry(term.topology_key.clone())
                .or_default()
                .entry(v.to_string())
                .or_insert(0) += weight;
        }
    }
}

impl PreScorePlugin for InterPodAffinity {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        _nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        let has_preferred = !pod.preferred_affinity_terms.is_empty()
            || !pod.preferred_anti_affinity_terms.is_empty();
        if !has_preferred && snapshot.pods_with_affinity() == 0 {
            return Status::skip();
        }
        let own_ns = snapshot.namespace_labels(&pod.namespace);
        let mut scores = PreScoreState::default();
        for node in snapshot.nodes() {
            if node.labels().is_none_or(|l| l.is_empty())
                || (!has_preferred && node.pods_with_affinity == 0)
            {
                continue;
            }
            for existing in &node.pods {
                if !has_preferred && !existing.has_affinity() {
                    continue;
                }
                let existing_ns = snapshot.namespace_labels(&existing.namespace);
                for w in &pod.preferred_affinity_terms {
                    scores.process_term(&w.term, i64::from(w.weight), existing, existing_ns, node);
                }
                for w in &pod.preferred_anti_affinity_terms {
                    scores.process_term(&w.term, -i64::from(w.weight), existing, existing_ns, node);
                }
                for t in &existing.required_affinity_terms {
                    scores.process_term(t, HARD_POD_AFFINITY_WEIGHT, pod, own_ns, node);
                }
                for w in &existing.preferred_affinity_terms {
                    scores.process_term(&w.term, i64::from(w.weight), pod, own_ns, node);
                }
                for w in &existing.preferred_anti_affinity_terms {
                    scores.process_term(&w.term, -i64::from(w.weight), pod, own_ns, node);
                }
            }
        }
        if scores.0.is_empty() {
            return Status::skip();
        }
        state.write(scores);
        Status::success()
    }
}

impl ScorePlugin for InterPodAffinity {
    fn score(&self, state: &CycleState, _pod: &PodInfo, node: &NodeInfo) -> i64 {
        let Some(s) = state.read::<PreScoreState>() else {
            return 0;
        };
        s.0.iter()
            .filter_map(|(key, values)| node.label(key).and_then(|v| values.get(v)))
            .sum()
    }

    fn score_extensions(&self) -> Option<&dyn ScoreExtensions> {
        Some(self)
    }
}

impl ScoreExtensions for InterPodAffinity {
    fn normalize_score(
        &self,
        state: &CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        scores: &mut [i64],
    ) -> Status {
        if state.read::<PreScoreState>().is_some() {
            normalize_min_max(scores);
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

    fn anti(app: &str, key: &str) -> Value {
        json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}})
    }

    fn affinity(app: &str, key: &str) -> Value {
        json!({"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": key}]}})
    }

    fn placed(name: &str, app: &str, node: &str, aff: Value) -> PodInfo {
        pod(
            name,
            json!({"app": app}),
            json!({"nodeName": node, "affinity": aff}),
        )
    }

    fn in_namespace(p: PodInfo, ns: &str) -> PodInfo {
        let mut obj = (*p.pod).clone();
        obj.metadata.namespace = Some(ns.to_string());
        PodInfo::from_pod(obj)
    }

    fn nodes() -> Vec<k8s_openapi::api::core::v1::Node> {
        vec![
            node("n1", json!({"zone": "a"}), "4", "4Gi"),
            node("n2", json!({"zone": "a"}), "4", "4Gi"),
            node("n3", json!({"zone": "b"}), "4", "4Gi"),
        ]
    }

    fn codes(statuses: &[Status]) -> Vec<Code> {
        statuses.iter().map(Status::code).collect()
    }

    const OK: Code = Code::Success;
    const NO: Code = Code::Unschedulable;
    const NEVER: Code = Code::UnschedulableAndUnresolvable;

    #[test]
    fn required_terms_by_topology() {
        let web_on_n1 = placed("web-0", "web", "n1", json!({}));
        let cases = [
            (
                "no terms, nothing to check",
                vec![web_on_n1.clone()],
                pod("p", json!({}), json!({})),
                vec![OK, OK, OK],
            ),
            (
                "anti-affinity by hostname avoids the node",
                vec![web_on_n1.clone()],
                pod(
                    "p",
                    json!({"app": "web"}),
                    json!({"affinity": anti("web", "kubernetes.io/hostname")}),
                ),
                vec![NO, OK, OK],
            ),
            (
                "anti-affinity by zone avoids the zone",
                vec![web_on_n1.clone()],
                pod(
                    "p",
                    json!({"app": "web"}),
                    json!({"affinity": anti("web", "zone")}),
                ),
                vec![NO, NO, OK],
            ),
            (
                "affinity by zone requires the zone",
                vec![web_on_n1.clone()],
                pod("p", json!({}), json!({"affinity": affinity("web", "zone")})),
                vec![OK, OK, NEVER],
            ),
            (
                "affinity to nothing fails everywhere",
                vec![],
                pod("p", json!({}), json!({"affinity": affinity("db", "zone")})),
                vec![NEVER, NEVER, NEVER],
            ),
            (
                "first pod of a self-affine group may go anywhere",
                vec![],
                pod(
                    "p",
                    json!({"app": "db"}),
                    json!({"affinity": affinity("db", "zone")}),
                ),
                vec![OK, OK, OK],
            ),
            (
                "existing pod's anti-affinity keeps us away",
                vec![placed(
                    "guard",
                    "guard",
                    "n3",
                    anti("web", "kubernetes.io/hostname"),
                )],
                pod("p", json!({"app": "web"}), json!({})),
                vec![OK, OK, NO],
            ),
            (
                "existing anti-affinity in another namespace does not select us",
                vec![in_namespace(
                    placed(
                        "guard",
                        "guard",
                        "n3",
                        anti("web", "kubernetes.io/hostname"),
                    ),
                    "other",
                )],
                pod("p", json!({"app": "web"}), json!({})),
                vec![OK, OK, OK],
            ),
        ];
        for (name, pods, p, want) in cases {
            let snapshot = Snapshot::from_parts(nodes(), pods);
            assert_eq!(
                codes(&filter_all(&InterPodAffinity, &p, &snapshot)),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn messages_are_upstreams() {
        let snapshot = Snapshot::from_parts(nodes(), vec![placed("web-0", "web", "n1", json!({}))]);
        let p = pod(
            "p",
            json!({"app": "web"}),
            json!({"affinity": anti("web", "kubernetes.io/hostname")}),
        );
        assert_eq!(
            filter_all(&InterPodAffinity, &p, &snapshot)[0].message(),
            ERR_REASON_ANTI_AFFINITY_RULES_NOT_MATCH
        );
    }

    #[test]
    fn extensions_track_added_and_removed_pods() {
        let web = placed("web-0", "web", "n1", json!({}));
        let snapshot = Snapshot::from_parts(nodes(), vec![web.clone()]);
        let p = pod(
            "p",
            json!({"app": "web"}),
            json!({"affinity": anti("web", "kubernetes.io/hostname")}),
        );
        let mut state = CycleState::new();
        let (_, s) = InterPodAffinity.pre_filter(&mut state, &p, &snapshot);
        assert!(s.is_success());
        let n1 = snapshot.get("n1").expect("n1");
        assert_eq!(InterPodAffinity.filter(&state, &p, n1).code(), NO);
        InterPodAffinity.remove_pod(&mut state, &p, &web, n1, &snapshot);
        assert_eq!(InterPodAffinity.filter(&state, &p, n1).code(), OK);
        InterPodAffinity.add_pod(&mut state, &p, &web, n1, &snapshot);
        assert_eq!(InterPodAffinity.filter(&state, &p, n1).code(), NO);
    }

    #[test]
    fn preferred_terms_score_by_domain() {
        let snapshot = Snapshot::from_parts(nodes(), vec![placed("web-0", "web", "n1", json!({}))]);
        let prefer = json!({"podAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "zone"}}]}});
        let p = pod("p", json!({}), json!({"affinity": prefer}));
        assert_eq!(
            score_all(&InterPodAffinity, &p, &snapshot),
            vec![100, 100, 0]
        );
        let avoid = json!({"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 10, "podAffinityTerm": {"labelSelector": {"matchLabels": {"app": "web"}}, "topologyKey": "kubernetes.io/hostname"}}]}});
        let p = pod("p", json!({}), json!({"affinity": avoid}));
        assert_eq!(
            score_all(&InterPodAffinity, &p, &snapshot),
            vec![0, 100, 100]
        );
        assert_eq!(
            score_all(
                &InterPodAffinity,
                &pod("p", json!({}), json!({})),
                &snapshot
            ),
            vec![0, 0, 0]
        );
    }
}
