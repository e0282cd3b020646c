//! Matching rules several plugins share (upstream `plugins/helper` and
//! `component-helpers/scheduling/corev1`): taints vs tolerations, node selectors and
//! required/preferred node affinity, and the default score normalisation.

use apis::selectors::label::{LabelSelector, Operator, Requirement};
use k8s_openapi::api::core::v1::{NodeSelectorRequirement, NodeSelectorTerm, Taint, Toleration};

use crate::framework::{NodeInfo, PodInfo, MAX_NODE_SCORE};

/// Whether `toleration` tolerates `taint` (upstream `Toleration.ToleratesTaint`).
pub fn tolerates(toleration: &Toleration, taint: &Taint) -> bool {
    if let Some(effect) = toleration.effect.as_deref().filter(|e| !e.is_empty()) {
        if effect != taint.effect {
            return false;
        }
    }
    if let Some(key) = toleration.key.as_deref().filter(|k| !k.is_empty()) {
        if key != taint.key {
            return false;
        }
    }
    match toleration.operator.as_deref().unwrap_or("") {
        "" | "Equal" => {
            toleration.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or("")
        }
        "Exists" => true,
        _ => false,
    }
}

pub fn tolerations_tolerate_taint(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| tolerates(t, taint))
}

/// The pod's tolerations.
pub fn pod_tolerations(pod: &PodInfo) -> &[Toleration] {
    pod.spec()
        .and_then(|s| s.tolerations.as_deref())
        .unwrap_or(&[])
}

/// The first NoSchedule/NoExecute taint of `taints` not tolerated.
pub fn find_untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
        .find(|t| !tolerations_tolerate_taint(tolerations, t))
}

/// A `metadata.name` field requirement of a node selector term.
#[derive(Clone, Debug)]
struct FieldRequirement {
    name: String,
    negate: bool,
}

/// One parsed NodeSelectorTerm: labels AND fields; an invalid or empty term matches nothing.
#[derive(Clone, Debug)]
struct TermMatcher {
    labels: LabelSelector,
    fields: Vec<FieldRequirement>,
}

fn label_requirement(r: &NodeSelectorRequirement) -> Option<Requirement> {
    let op = match r.operator.as_str() {
        "In" => Operator::In,
        "NotIn" => Operator::NotIn,
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        "Gt" => Operator::GreaterThan,
        "Lt" => Operator::LessThan,
        _ => return None,
    };
    Requirement::new(&r.key, op, r.values.clone().unwrap_or_default()).ok()
}

impl TermMatcher {
    fn parse(term: &NodeSelectorTerm) -> Option<TermMatcher> {
        let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
        let fields = term.match_fields.as_deref().unwrap_or(&[]);
        if exprs.is_empty() && fields.is_empty() {
            return None;
        }
        let labels = exprs
            .iter()
            .map(label_requirement)
            .collect::<Option<Vec<_>>>()?;
        let fields = fields
            .iter()
            .map(|f| {
                let values = f.values.as_deref().unwrap_or(&[]);
                match (f.key.as_str(), f.operator.as_str(), values) {
                    ("metadata.name", "In", [v]) => Some(FieldRequirement {
                        name: v.clone(),
                        negate: false,
                    }),
                    ("metadata.name", "NotIn", [v]) => Some(FieldRequirement {
                        name: v.clone(),
                        negate: true,
                    }),
                    _ => None,
                }
            })
            .collect::<Option<Vec<_>>>()?;
        Some(TermMatcher {
            labels: LabelSelector::from_requirements(labels),
            fields,
        })
    }

    fn matches(&self, node: &NodeInfo) -> bool {
        self.labels.matches(&node.labels())
            && self
                .fields
                .iter()
                .all(|f| (f.name == node.name()) != f.negate)
    }
}

/// `spec.nodeSelector` plus required node affinity (upstream `RequiredNodeAffinity`).
#[derive(Clone, Debug, Default)]
pub struct RequiredNodeAffinity {
    node_selector: Option<LabelSelector>,
    /// ORed terms; `Some(empty)` when every term was empty/invalid: matches nothing.
    terms: Option<Vec<TermMatcher>>,
    /// Node names when every term pins `metadata.name In [x]`.
    pinned_names: Option<Vec<String>>,
}

impl RequiredNodeAffinity {
    pub fn from_pod(pod: &PodInfo) -> RequiredNodeAffinity {
        let spec = pod.spec();
        let node_selector = spec
            .and_then(|s| s.node_selector.as_ref())
            .filter(|m| !m.is_empty())
            .map(LabelSelector::from_set);
        let required = spec
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.required_during_scheduling_ignored_during_execution
                    .as_ref()
            });
        let (terms, pinned_names) = match required {
            None => (None, None),
            Some(sel) => {
                let terms: Vec<TermMatcher> = sel
                    .node_selector_terms
                    .iter()
                    .filter_map(TermMatcher::parse)
                    .collect();
                let pinned: Option<Vec<String>> = if terms.is_empty() {
                    None
                } else {
                    terms
                        .iter()
                        .map(|t| t.fields.iter().find(|f| !f.negate).map(|f| f.name.clone()))
                        .collect::<Option<Vec<_>>>()
                };
                (Some(terms), pinned)
            }
        };
        RequiredNodeAffinity {
            node_selector,
            terms,
            pinned_names,
        }
    }

    /// Whether there is anything to check.
    pub fn is_empty(&self) -> bool {
        self.node_selector.is_none() && self.terms.is_none()
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        if let Some(sel) = &self.node_selector {
            if !sel.matches(&node.labels()) {
                return false;
            }
        }
        match &self.terms {
            None => true,
            Some(terms) => terms.iter().any(|t| t.matches(node)),
        }
    }

    /// The only node names that can match, when the affinity pins them.
    pub fn pinned_node_names(&self) -> Option<&[String]> {
        self.pinned_names.as_deref()
    }
}

/// Preferred node affinity terms with their weights.
#[derive(Clone, Debug, Default)]
pub struct PreferredNodeAffinity {
    terms: Vec<(i32, TermMatcher)>,
}

impl PreferredNodeAffinity {
    pub fn from_pod(pod: &PodInfo) -> PreferredNodeAffinity {
        let terms = pod
            .spec()
            .and_then(|s| s.affinity.as_ref())
            .and_then(|a| a.node_affinity.as_ref())
            .and_then(|na| {
                na.preferred_during_scheduling_ignored_during_execution
                    .as_ref()
            })
            .into_iter()
            .flatten()
            .filter(|t| t.weight != 0)
            .filter_map(|t| TermMatcher::parse(&t.preference).map(|m| (t.weight, m)))
            .collect();
        PreferredNodeAffinity { terms }
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// Sum of the weights of the terms `node` matches.
    pub fn score(&self, node: &NodeInfo) -> i64 {
        self.terms
            .iter()
            .filter(|(_, t)| t.matches(node))
            .map(|(w, _)| i64::from(*w))
            .sum()
    }
}

/// Upstream `helper.DefaultNormalizeScore`: scales to 0..=`max` by the highest score,
/// reversed (higher raw score → lower final) when `reverse`.
pub fn default_normalize_score(max: i64, reverse: bool, scores: &mut [i64]) {
    let highest = scores.iter().copied().max().unwrap_or(0).max(0);
    if highest == 0 {
        if reverse {
            scores.iter_mut().for_each(|s| *s = max);
        }
        return;
    }
    for s in scores.iter_mut() {
        let v = max * *s / highest;
        *s = if reverse { max - v } else { v };
    }
}

/// [`default_normalize_score`] with [`MAX_NODE_SCORE`].
pub fn normalize(reverse: bool, scores: &mut [i64]) {
    default_normalize_score(MAX_NODE_SCORE, reverse, scores);
}

/// Min-max scaling to 0..=[`MAX_NODE_SCORE`] (InterPodAffinity's normalisation); all
/// equal scores become 0.
pub fn normalize_min_max(scores: &mut [i64]) {
    let (Some(min), Some(max)) = (scores.iter().copied().min(), scores.iter().copied().max())
    else {
        return;
    };
    let diff = max - min;
    for s in scores.iter_mut() {
        *s = if diff > 0 {
            (MAX_NODE_SCORE as f64 * ((*s - min) as f64 / diff as f64)) as i64
        } else {
            0
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::sync::Arc;

    fn toleration(v: serde_json::Value) -> Toleration {
        serde_json::from_value(v).expect("toleration")
    }

    fn taint(key: &str, value: &str, effect: &str) -> Taint {
        Taint {
            key: key.into(),
            value: Some(value.into()),
            effect: effect.into(),
            time_added: None,
        }
    }

    #[test]
    fn toleration_rules_follow_upstream() {
        let t = taint("k", "v", "NoSchedule");
        let cases = [
            (
                json!({"key": "k", "operator": "Equal", "value": "v", "effect": "NoSchedule"}),
                true,
            ),
            (json!({"key": "k", "value": "v"}), true),
            (json!({"key": "k", "value": "other"}), false),
            (json!({"key": "k", "operator": "Exists"}), true),
            (json!({"operator": "Exists"}), true),
            (json!({"operator": "Exists", "effect": "NoExecute"}), false),
            (json!({"key": "other", "operator": "Exists"}), false),
            (json!({"key": "k", "operator": "Bogus"}), false),
        ];
        for (tol, want) in cases {
            assert_eq!(tolerates(&toleration(tol.clone()), &t), want, "{tol}");
        }
    }

    fn node(name: &str, labels: serde_json::Value) -> NodeInfo {
        NodeInfo::from_node(Arc::new(
            serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}}))
                .expect("node"),
        ))
    }

    fn pod(spec: serde_json::Value) -> PodInfo {
        PodInfo::from_pod(
            serde_json::from_value(json!({"metadata": {"name": "p"}, "spec": spec})).expect("pod"),
        )
    }

    #[test]
    fn required_node_affinity_ands_selector_and_ors_terms() {
        let n = node("n1", json!({"zone": "a", "size": "10"}));
        let term = |exprs: serde_json::Value| json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": exprs}}}});
        let cases = [
            ("no constraints", json!({"containers": []}), true),
            (
                "selector match",
                json!({"containers": [], "nodeSelector": {"zone": "a"}}),
                true,
            ),
            (
                "selector miss",
                json!({"containers": [], "nodeSelector": {"zone": "b"}}),
                false,
            ),
            (
                "In",
                term(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a", "b"]}]}]),
                ),
                true,
            ),
            (
                "NotIn",
                term(
                    json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}]),
                ),
                false,
            ),
            (
                "Gt",
                term(
                    json!([{"matchExpressions": [{"key": "size", "operator": "Gt", "values": ["5"]}]}]),
                ),
                true,
            ),
            (
                "Lt",
                term(
                    json!([{"matchExpressions": [{"key": "size", "operator": "Lt", "values": ["5"]}]}]),
                ),
                false,
            ),
            (
                "DoesNotExist",
                term(json!([{"matchExpressions": [{"key": "gpu", "operator": "DoesNotExist"}]}])),
                true,
            ),
            (
                "terms are ORed",
                term(json!([
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]},
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}])),
                true,
            ),
            ("empty term matches nothing", term(json!([{}])), false),
            (
                "field",
                term(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]),
                ),
                true,
            ),
            (
                "field miss",
                term(
                    json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]),
                ),
                false,
            ),
        ];
        for (name, spec, want) in cases {
            let aff = RequiredNodeAffinity::from_pod(&pod(spec));
            assert_eq!(aff.matches(&n), want, "{name}");
        }
    }

    #[test]
    fn pinned_names_come_from_metadata_name_fields() {
        let p = pod(
            json!({"containers": [], "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n1"]}]}]}}}}),
        );
        assert_eq!(
            RequiredNodeAffinity::from_pod(&p).pinned_node_names(),
            Some(&["n1".to_string()][..])
        );
        assert_eq!(
            RequiredNodeAffinity::from_pod(&pod(json!({"containers": []}))).pinned_node_names(),
            None
        );
    }

    #[test]
    fn default_normalisation_scales_and_reverses() {
        let cases = [
            (vec![0, 5, 10], false, vec![0, 50, 100]),
            (vec![0, 5, 10], true, vec![100, 50, 0]),
            (vec![0, 0], true, vec![100, 100]),
            (vec![0, 0], false, vec![0, 0]),
        ];
        for (mut input, reverse, want) in cases {
            normalize(reverse, &mut input);
            assert_eq!(input, want);
        }
        let mut scores = vec![-10, 0, 10];
        normalize_min_max(&mut scores);
        assert_eq!(scores, vec![0, 50, 100]);
        let mut same = vec![3, 3];
        normalize_min_max(&mut same);
        assert_eq!(same, vec![0, 0]);
    }
}
