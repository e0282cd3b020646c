//! Builders for plugin tests: nodes and pods from compact JSON.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Node, Pod};
use serde_json::{json, Value};

use crate::framework::{CycleState, NodeInfo, PodInfo, Snapshot, Status};

/// A Node named `name` with `labels` and allocatable `cpu` (cores, as a string) and
/// memory; `extra` is merged into the top level (spec, status fields).
pub fn node(name: &str, labels: Value, cpu: &str, memory: &str) -> Node {
    let mut labels = labels;
    if let Some(m) = labels.as_object_mut() {
        m.entry("kubernetes.io/hostname").or_insert(json!(name));
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "status": {"allocatable": {"cpu": cpu, "memory": memory, "pods": "110"}, "capacity": {"cpu": cpu, "memory": memory, "pods": "110"}},
    }))
    .expect("node")
}

/// A Node from full JSON.
pub fn node_json(v: Value) -> Node {
    serde_json::from_value(v).expect("node")
}

/// A pod in `default` named `name` with `spec` (containers default to one empty one).
pub fn pod(name: &str, labels: Value, spec: Value) -> PodInfo {
    PodInfo::from_pod(pod_obj(name, labels, spec))
}

pub fn pod_obj(name: &str, labels: Value, spec: Value) -> Pod {
    let mut spec = spec;
    if let Some(m) = spec.as_object_mut() {
        m.entry("containers").or_insert(json!([{"name": "c"}]));
    }
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": labels},
        "spec": spec,
    }))
    .expect("pod")
}

/// A pod requesting `cpu` and `memory` (strings), optionally bound to `node`.
pub fn pod_req(name: &str, cpu: &str, memory: &str, node: Option<&str>) -> PodInfo {
    let mut spec = json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]});
    if let Some(n) = node {
        spec["nodeName"] = json!(n);
    }
    pod(name, json!({}), spec)
}

pub fn node_info(n: Node, pods: Vec<PodInfo>) -> NodeInfo {
    let mut ni = NodeInfo::from_node(Arc::new(n));
    for p in pods {
        ni.add_pod(Arc::new(p));
    }
    ni
}

/// Runs PreFilter of `pl` (if it has one) and Filter on every node of `snapshot`.
pub fn filter_all<P>(pl: &P, pod: &PodInfo, snapshot: &Snapshot) -> Vec<Status>
where
    P: crate::framework::FilterPlugin + crate::framework::PreFilterPlugin,
{
    let mut state = CycleState::new();
    let (_, s) = pl.pre_filter(&mut state, pod, snapshot);
    if s.is_skip() {
        return snapshot.nodes().iter().map(|_| Status::success()).collect();
    }
    if !s.is_success() {
        return snapshot.nodes().iter().map(|_| s.clone()).collect();
    }
    snapshot
        .nodes()
        .iter()
        .map(|n| pl.filter(&state, pod, n))
        .collect()
}

/// Runs PreScore, Score and NormalizeScore of `pl` over every node of `snapshot`.
pub fn score_all<P>(pl: &P, pod: &PodInfo, snapshot: &Snapshot) -> Vec<i64>
where
    P: crate::framework::ScorePlugin + crate::framework::PreScorePlugin,
{
    let mut state = CycleState::new();
    let nodes: Vec<&NodeInfo> = snapshot.nodes().iter().collect();
    let s = pl.pre_score(&mut state, pod, &nodes, snapshot);
    if s.is_skip() {
        return vec![0; nodes.len()];
    }
    let mut scores: Vec<i64> = nodes.iter().map(|n| pl.score(&state, pod, n)).collect();
    if let Some(ext) = pl.score_extensions() {
        ext.normalize_score(&state, pod, &nodes, &mut scores);
    }
    scores
}
