//! DaemonSet helpers (upstream `pkg/controller/daemon/util` and the scheduling
//! predicates the controller applies itself): which nodes a DaemonSet's pod belongs on,
//! the tolerations every daemon pod gets, pinning a pod to its node through required
//! node affinity, and the rolling-update counts.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use apis::selectors::{LabelSelector, Operator, Requirement};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{
    Affinity, Node, NodeAffinity, NodeSelector, NodeSelectorRequirement, NodeSelectorTerm, Pod,
    PodSpec, PodTemplateSpec, Taint, Toleration,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// The server's count of template changes, kept on the DaemonSet as an annotation.
pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";
/// The template generation a pod was made from (upstream `DaemonSetTemplateGenerationKey`).
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";
/// The revision hash a pod was made from (upstream `DefaultDaemonSetUniqueLabelKey`).
pub const REVISION_HASH_LABEL: &str = "controller-revision-hash";

/// Taints the node lifecycle controller and kubelet set; daemon pods tolerate them all.
const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

fn exists(key: &str, effect: &str) -> Toleration {
    Toleration {
        key: Some(key.to_string()),
        operator: Some("Exists".to_string()),
        effect: Some(effect.to_string()),
        ..Default::default()
    }
}

/// Upstream `Toleration.MatchToleration`: same key, operator, value and effect.
fn same_toleration(a: &Toleration, b: &Toleration) -> bool {
    a.key == b.key && a.operator == b.operator && a.value == b.value && a.effect == b.effect
}

/// Upstream `AddOrUpdateTolerationInPodSpec`.
fn add_or_update_toleration(spec: &mut PodSpec, toleration: Toleration) {
    let tolerations = spec.tolerations.get_or_insert_with(Vec::new);
    match tolerations
        .iter_mut()
        .find(|t| same_toleration(t, &toleration))
    {
        Some(t) => *t = toleration,
        None => tolerations.push(toleration),
    }
}

/// Upstream `AddOrUpdateDaemonPodTolerations`: daemon pods survive node problems (no
/// eviction when not-ready or unreachable) and land on pressured or cordoned nodes.
pub fn add_daemon_tolerations(spec: &mut PodSpec) {
    add_or_update_toleration(spec, exists(TAINT_NOT_READY, "NoExecute"));
    add_or_update_toleration(spec, exists(TAINT_UNREACHABLE, "NoExecute"));
    add_or_update_toleration(spec, exists(TAINT_DISK_PRESSURE, "NoSchedule"));
    add_or_update_toleration(spec, exists(TAINT_MEMORY_PRESSURE, "NoSchedule"));
    add_or_update_toleration(spec, exists(TAINT_PID_PRESSURE, "NoSchedule"));
    add_or_update_toleration(spec, exists(TAINT_UNSCHEDULABLE, "NoSchedule"));
    if spec.host_network == Some(true) {
        add_or_update_toleration(spec, exists(TAINT_NETWORK_UNAVAILABLE, "NoSchedule"));
    }
}

/// Whether `t` tolerates `taint` (upstream `Toleration.ToleratesTaint`).
pub fn tolerates(t: &Toleration, taint: &Taint) -> bool {
    if t.effect
        .as_deref()
        .is_some_and(|e| !e.is_empty() && e != taint.effect)
    {
        return false;
    }
    if t.key
        .as_deref()
        .is_some_and(|k| !k.is_empty() && k != taint.key)
    {
        return false;
    }
    match t.operator.as_deref().unwrap_or("") {
        "" | "Equal" => t.value.as_deref().unwrap_or("") == taint.value.as_deref().unwrap_or(""),
        "Exists" => true,
        _ => false,
    }
}

/// The first taint with an effect `effect_filter` accepts that no toleration tolerates.
pub fn untolerated_taint<'a>(
    taints: &'a [Taint],
    tolerations: &[Toleration],
    effect_filter: impl Fn(&str) -> bool,
) -> Option<&'a Taint> {
    taints
        .iter()
        .filter(|t| effect_filter(&t.effect))
        .find(|taint| !tolerations.iter().any(|t| tolerates(t, taint)))
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

/// One node selector term: its label expressions and `metadata.name` fields all hold.
/// An empty or unparsable term matches nothing.
fn term_matches(term: &NodeSelectorTerm, node: &Node) -> bool {
    let exprs = term.match_expressions.as_deref().unwrap_or(&[]);
    let fields = term.match_fields.as_deref().unwrap_or(&[]);
    if exprs.is_empty() && fields.is_empty() {
        return false;
    }
    let Some(reqs) = exprs
        .iter()
        .map(label_requirement)
        .collect::<Option<Vec<_>>>()
    else {
        return false;
    };
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if !LabelSelector::from_requirements(reqs).matches(&labels) {
        return false;
    }
    let name = node.metadata.name.as_deref().unwrap_or("");
    fields.iter().all(|f| {
        let values = f.values.as_deref().unwrap_or(&[]);
        match (f.key.as_str(), f.operator.as_str()) {
            ("metadata.name", "In") => values.iter().any(|v| v == name),
            ("metadata.name", "NotIn") => !values.iter().any(|v| v == name),
            _ => false,
        }
    })
}

/// `spec.nodeSelector` and required node affinity (upstream `GetRequiredNodeAffinity().Match`).
pub fn node_matches_pod(spec: &PodSpec, node: &Node) -> bool {
    if let Some(selector) = spec.node_selector.as_ref().filter(|s| !s.is_empty()) {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        if !selector.iter().all(|(k, v)| labels.get(k) == Some(v)) {
            return false;
        }
    }
    let required = spec
        .affinity
        .as_ref()
        .and_then(|a| a.node_affinity.as_ref())
        .and_then(|na| {
            na.required_during_scheduling_ignored_during_execution
                .as_ref()
        });
    match required {
        None => true,
        Some(sel) => sel
            .node_selector_terms
            .iter()
            .any(|t| term_matches(t, node)),
    }
}

/// The pod spec the DaemonSet would give a pod on `node_name` (upstream `NewPod`).
fn daemon_pod_spec(ds: &DaemonSet, node_name: &str) -> PodSpec {
    let mut spec = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.clone())
        .unwrap_or_default();
    spec.node_name = Some(node_name.to_string());
    add_daemon_tolerations(&mut spec);
    spec
}

/// Upstream `NodeShouldRunDaemonPod`: `(should run, should keep running)`. A node that
/// fails the node name or affinity checks gets no pod; one with an untolerated
/// NoSchedule taint gets no new pod but keeps a running one unless a NoExecute taint
/// is untolerated too.
pub fn should_run(node: &Node, ds: &DaemonSet) -> (bool, bool) {
    let name = node.metadata.name.as_deref().unwrap_or("");
    let wanted_name = ds
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_name.as_deref())
        .unwrap_or("");
    if !wanted_name.is_empty() && wanted_name != name {
        return (false, false);
    }
    let spec = daemon_pod_spec(ds, name);
    if !node_matches_pod(&spec, node) {
        return (false, false);
    }
    let taints = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.as_deref())
        .unwrap_or(&[]);
    let tolerations = spec.tolerations.as_deref().unwrap_or(&[]);
    if untolerated_taint(taints, tolerations, |e| {
        e == "NoSchedule" || e == "NoExecute"
    })
    .is_some()
    {
        let no_execute = untolerated_taint(taints, tolerations, |e| e == "NoExecute").is_some();
        return (false, !no_execute);
    }
    (true, true)
}

/// Required node affinity pinning a pod to `node` (upstream
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`): other required terms are dropped, since
/// the controller already checked them against this node.
pub fn pin_to_node(affinity: Option<Affinity>, node: &str) -> Affinity {
    let selector = NodeSelector {
        node_selector_terms: vec![NodeSelectorTerm {
            match_expressions: None,
            match_fields: Some(vec![NodeSelectorRequirement {
                key: "metadata.name".to_string(),
                operator: "In".to_string(),
                values: Some(vec![node.to_string()]),
            }]),
        }],
    };
    let mut affinity = affinity.unwrap_or_default();
    let na = affinity
        .node_affinity
        .get_or_insert_with(NodeAffinity::default);
    na.required_during_scheduling_ignored_during_execution = Some(selector);
    affinity
}

/// The node a daemon pod is for (upstream `GetTargetNodeName`): its `nodeName`, or the
/// single node its required affinity pins it to.
pub fn target_node(pod: &Pod) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if let Some(n) = spec.node_name.as_ref().filter(|n| !n.is_empty()) {
        return Some(n.clone());
    }
    let terms = &spec
        .affinity
        .as_ref()?
        .node_affinity
        .as_ref()?
        .required_during_scheduling_ignored_during_execution
        .as_ref()?
        .node_selector_terms;
    terms.iter().find_map(|t| {
        t.match_fields.as_deref()?.iter().find_map(|f| {
            let values = f.values.as_deref().unwrap_or(&[]);
            (f.key == "metadata.name" && f.operator == "In" && values.len() == 1)
                .then(|| values[0].clone())
        })
    })
}

/// The template generation the server recorded on the DaemonSet.
pub fn template_generation(ds: &DaemonSet) -> Option<i64> {
    ds.metadata
        .annotations
        .as_ref()?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .parse()
        .ok()
}

fn pod_label<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

/// Upstream `IsPodUpdated`: made from the current revision hash or template generation.
pub fn is_pod_updated(pod: &Pod, hash: &str, generation: Option<i64>) -> bool {
    let by_generation = generation
        .is_some_and(|g| pod_label(pod, TEMPLATE_GENERATION_LABEL) == Some(g.to_string().as_str()));
    let by_hash = !hash.is_empty() && pod_label(pod, REVISION_HASH_LABEL) == Some(hash);
    by_hash || by_generation
}

/// The template pods are made from (upstream `CreatePodTemplate`): daemon tolerations,
/// the generation and revision hash labels.
pub fn pod_template(ds: &DaemonSet, hash: &str) -> PodTemplateSpec {
    let mut t = ds
        .spec
        .as_ref()
        .map(|s| s.template.clone())
        .unwrap_or_default();
    add_daemon_tolerations(t.spec.get_or_insert_with(PodSpec::default));
    let labels = t
        .metadata
        .get_or_insert_with(ObjectMeta::default)
        .labels
        .get_or_insert_with(BTreeMap::new);
    if let Some(g) = template_generation(ds) {
        labels.insert(TEMPLATE_GENERATION_LABEL.to_string(), g.to_string());
    }
    if !hash.is_empty() {
        labels.insert(REVISION_HASH_LABEL.to_string(), hash.to_string());
    }
    t
}

/// Upstream `GetScaledValueFromIntOrPercent`.
pub fn scaled_value(v: Option<&IntOrString>, total: i32, round_up: bool) -> i32 {
    match v {
        None => 0,
        Some(IntOrString::Int(i)) => *i,
        Some(IntOrString::String(s)) => {
            let Some(p) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return 0;
            };
            let scaled = p * i64::from(total);
            let value = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(value).unwrap_or(i32::MAX)
        }
    }
}

fn rolling(ds: &DaemonSet) -> Option<&k8s_openapi::api::apps::v1::RollingUpdateDaemonSet> {
    let s = ds.spec.as_ref()?.update_strategy.as_ref()?;
    if s.type_.as_deref().unwrap_or("RollingUpdate") != "RollingUpdate" {
        return None;
    }
    s.rolling_update.as_ref()
}

pub fn is_rolling_update(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .and_then(|u| u.type_.as_deref())
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// Upstream `UnavailableCount` (rounded up).
pub fn max_unavailable(ds: &DaemonSet, desired: i32) -> i32 {
    rolling(ds).map_or(0, |r| {
        scaled_value(r.max_unavailable.as_ref(), desired, true)
    })
}

/// Upstream `SurgeCount` (rounded up).
pub fn max_surge(ds: &DaemonSet, desired: i32) -> i32 {
    rolling(ds).map_or(0, |r| scaled_value(r.max_surge.as_ref(), desired, true))
}

/// Whether the DaemonSet may run a new pod next to an old one (upstream `AllowsSurge`).
pub fn allows_surge(ds: &DaemonSet) -> bool {
    max_surge(ds, 1) > 0
}

/// Upstream `podByCreationTimestampAndPhase`: scheduled pods first, then oldest, then name.
pub fn sort_oldest_first(pods: &mut [Arc<Pod>]) {
    pods.sort_by(|a, b| {
        let bound = |p: &Pod| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| !n.is_empty())
        };
        let ts = |p: &Pod| p.metadata.creation_timestamp.as_ref().map(|t| t.0);
        bound(b)
            .cmp(&bound(a))
            .then_with(|| ts(a).cmp(&ts(b)))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
}

/// Per-(DaemonSet, node) backoff for replacing failed pods, so the controller does not
/// fight a kubelet that keeps rejecting them (upstream `failedPodsBackoff`: 1 s doubling
/// to 15 min).
#[derive(Debug, Default)]
pub struct FailedPodsBackoff {
    entries: Mutex<HashMap<String, (Duration, Instant)>>,
}

impl FailedPodsBackoff {
    const INITIAL: Duration = Duration::from_secs(1);
    const MAX: Duration = Duration::from_secs(15 * 60);

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Duration, Instant)>> {
        self.entries
            .lock()
            .expect("invariant: backoff lock is never poisoned")
    }

    /// Still waiting since the last failure; `Some(remaining)` if so.
    pub fn in_backoff(&self, key: &str, now: Instant) -> Option<Duration> {
        let entries = self.lock();
        let (delay, since) = entries.get(key)?;
        let elapsed = now.saturating_duration_since(*since);
        (elapsed < *delay).then(|| *delay - elapsed)
    }

    /// Records a failure: the next one waits twice as long (reset after a long quiet).
    pub fn next(&self, key: &str, now: Instant) {
        let mut entries = self.lock();
        let delay = match entries.get(key) {
            Some((d, since)) if now.saturating_duration_since(*since) < 2 * Self::MAX => {
                (*d * 2).min(Self::MAX)
            }
            _ => Self::INITIAL,
        };
        entries.insert(key.to_string(), (delay, now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::DaemonSetSpec;
    use serde_json::json;

    fn node(name: &str, labels: serde_json::Value, taints: serde_json::Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints}}),
        )
        .expect("node")
    }

    fn ds(pod_spec: serde_json::Value) -> DaemonSet {
        serde_json::from_value(json!({
            "metadata": {"name": "agent", "namespace": "ns", "annotations": {TEMPLATE_GENERATION_ANNOTATION: "3"}},
            "spec": {"selector": {"matchLabels": {"app": "a"}},
                     "template": {"metadata": {"labels": {"app": "a"}}, "spec": pod_spec}},
        }))
        .expect("ds")
    }

    #[test]
    fn nodes_are_chosen_by_selector_affinity_and_taints() {
        let plain = json!({"containers": [{"name": "c"}]});
        let cases = [
            (
                "no constraints",
                plain.clone(),
                node("n", json!({}), json!([])),
                (true, true),
            ),
            (
                "selector miss",
                json!({"nodeSelector": {"disk": "ssd"}, "containers": []}),
                node("n", json!({}), json!([])),
                (false, false),
            ),
            (
                "selector hit",
                json!({"nodeSelector": {"disk": "ssd"}, "containers": []}),
                node("n", json!({"disk": "ssd"}), json!([])),
                (true, true),
            ),
            (
                "affinity miss",
                json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}]}}}, "containers": []}),
                node("n", json!({"zone": "b"}), json!([])),
                (false, false),
            ),
            (
                "untolerated NoSchedule keeps running pods",
                plain.clone(),
                node(
                    "n",
                    json!({}),
                    json!([{"key": "gpu", "effect": "NoSchedule"}]),
                ),
                (false, true),
            ),
            (
                "untolerated NoExecute evicts",
                plain.clone(),
                node(
                    "n",
                    json!({}),
                    json!([{"key": "gpu", "effect": "NoExecute"}]),
                ),
                (false, false),
            ),
            (
                "PreferNoSchedule is ignored",
                plain.clone(),
                node(
                    "n",
                    json!({}),
                    json!([{"key": "gpu", "effect": "PreferNoSchedule"}]),
                ),
                (true, true),
            ),
            (
                "tolerated",
                json!({"tolerations": [{"key": "gpu", "operator": "Exists"}], "containers": []}),
                node(
                    "n",
                    json!({}),
                    json!([{"key": "gpu", "value": "x", "effect": "NoSchedule"}]),
                ),
                (true, true),
            ),
            (
                "cordoned nodes still get daemons",
                plain.clone(),
                node(
                    "n",
                    json!({}),
                    json!([{"key": TAINT_UNSCHEDULABLE, "effect": "NoSchedule"}]),
                ),
                (true, true),
            ),
            (
                "not-ready nodes keep them",
                plain.clone(),
                node(
                    "n",
                    json!({}),
                    json!([{"key": TAINT_NOT_READY, "effect": "NoExecute"}]),
                ),
                (true, true),
            ),
            (
                "other node name",
                json!({"nodeName": "m", "containers": []}),
                node("n", json!({}), json!([])),
                (false, false),
            ),
        ];
        for (name, spec, node, want) in cases {
            assert_eq!(should_run(&node, &ds(spec)), want, "{name}");
        }
    }

    #[test]
    fn tolerations_are_added_once() {
        let mut spec = PodSpec {
            host_network: Some(true),
            tolerations: Some(vec![exists(TAINT_NOT_READY, "NoExecute")]),
            ..Default::default()
        };
        add_daemon_tolerations(&mut spec);
        add_daemon_tolerations(&mut spec);
        let keys: Vec<String> = spec
            .tolerations
            .unwrap_or_default()
            .into_iter()
            .filter_map(|t| t.key)
            .collect();
        assert_eq!(
            keys,
            [
                TAINT_NOT_READY,
                TAINT_UNREACHABLE,
                TAINT_DISK_PRESSURE,
                TAINT_MEMORY_PRESSURE,
                TAINT_PID_PRESSURE,
                TAINT_UNSCHEDULABLE,
                TAINT_NETWORK_UNAVAILABLE
            ]
        );
    }

    #[test]
    fn pods_are_pinned_to_their_node_by_affinity() {
        let a = pin_to_node(None, "n1");
        let pod = Pod {
            spec: Some(PodSpec {
                affinity: Some(a.clone()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(target_node(&pod).as_deref(), Some("n1"));
        let spec = PodSpec {
            affinity: Some(a),
            ..Default::default()
        };
        assert!(node_matches_pod(&spec, &node("n1", json!({}), json!([]))));
        assert!(!node_matches_pod(&spec, &node("n2", json!({}), json!([]))));
        let bound = Pod {
            spec: Some(PodSpec {
                node_name: Some("n3".into()),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(target_node(&bound).as_deref(), Some("n3"));
        assert_eq!(target_node(&Pod::default()), None);
    }

    #[test]
    fn templates_counts_and_updates() {
        let d = ds(json!({"containers": []}));
        let t = pod_template(&d, "h1");
        let labels = t.metadata.and_then(|m| m.labels).expect("labels");
        assert_eq!(labels[TEMPLATE_GENERATION_LABEL], "3");
        assert_eq!(labels[REVISION_HASH_LABEL], "h1");
        let pod = |labels: serde_json::Value| -> Pod {
            serde_json::from_value(json!({"metadata": {"labels": labels}})).expect("pod")
        };
        assert!(is_pod_updated(
            &pod(json!({REVISION_HASH_LABEL: "h1"})),
            "h1",
            None
        ));
        assert!(is_pod_updated(
            &pod(json!({TEMPLATE_GENERATION_LABEL: "3"})),
            "h2",
            Some(3)
        ));
        assert!(!is_pod_updated(
            &pod(json!({REVISION_HASH_LABEL: "h0"})),
            "h1",
            Some(3)
        ));
        assert_eq!(
            scaled_value(Some(&IntOrString::String("25%".into())), 5, true),
            2
        );
        assert_eq!(
            scaled_value(Some(&IntOrString::String("25%".into())), 5, false),
            1
        );
        assert_eq!(scaled_value(Some(&IntOrString::Int(2)), 5, true), 2);
        let mut d = d;
        d.spec = Some(DaemonSetSpec {
            update_strategy: Some(serde_json::from_value(json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": "50%"}})).expect("strategy")),
            ..d.spec.clone().unwrap_or_default()
        });
        assert_eq!((max_unavailable(&d, 3), max_surge(&d, 3)), (0, 2));
        assert!(allows_surge(&d));
    }

    #[test]
    fn failed_pod_backoff_doubles() {
        let b = FailedPodsBackoff::default();
        let t0 = Instant::now();
        assert_eq!(b.in_backoff("k", t0), None);
        b.next("k", t0);
        assert!(b.in_backoff("k", t0).is_some());
        assert_eq!(b.in_backoff("k", t0 + Duration::from_secs(2)), None);
        b.next("k", t0 + Duration::from_secs(2));
        assert!(b.in_backoff("k", t0 + Duration::from_secs(3)).is_some());
    }
}
