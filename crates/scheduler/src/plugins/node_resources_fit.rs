//! NodeResourcesFit: Filter checks the pod's effective requests (cpu, memory,
//! ephemeral-storage, extended resources, one pod slot) against what the node has left;
//! Score is the LeastAllocated strategy over cpu and memory (weight 1 each), counting
//! containers without requests at the 100m / 200Mi defaults.

use crate::framework::{
    CycleState, FilterPlugin, NodeInfo, Plugin, PodInfo, PreFilterPlugin, PreFilterResult,
    PreScorePlugin, ScorePlugin, Snapshot, Status, MAX_NODE_SCORE,
};

pub const NAME: &str = "NodeResourcesFit";

/// One resource that does not fit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InsufficientResource {
    pub resource_name: String,
    pub reason: String,
    pub requested: i64,
    pub used: i64,
    pub capacity: i64,
}

#[derive(Debug, Default)]
pub struct NodeResourcesFit;

impl NodeResourcesFit {
    pub fn new() -> NodeResourcesFit {
        NodeResourcesFit
    }
}

fn insufficient(
    name: &str,
    reason: String,
    requested: i64,
    used: i64,
    capacity: i64,
) -> InsufficientResource {
    InsufficientResource {
        resource_name: name.to_string(),
        reason,
        requested,
        used,
        capacity,
    }
}

/// What `pod` lacks on `node` (upstream `fitsRequest`); empty when it fits.
pub fn fits(pod: &PodInfo, node: &NodeInfo) -> Vec<InsufficientResource> {
    let mut out = Vec::new();
    let alloc = &node.allocatable;
    let used = &node.requested;
    if node.pods.len() as i64 + 1 > alloc.allowed_pod_number {
        out.push(insufficient(
            "pods",
            "Too many pods".into(),
            1,
            node.pods.len() as i64,
            alloc.allowed_pod_number,
        ));
    }
    let req = &pod.requests;
    if req.is_zero() {
        return out;
    }
    if req.milli_cpu > 0 && req.milli_cpu > alloc.milli_cpu - used.milli_cpu {
        out.push(insufficient(
            "cpu",
            "Insufficient cpu".into(),
            req.milli_cpu,
            used.milli_cpu,
            alloc.milli_cpu,
        ));
    }
    if req.memory > 0 && req.memory > alloc.memory - used.memory {
        out.push(insufficient(
            "memory",
            "Insufficient memory".into(),
            req.memory,
            used.memory,
            alloc.memory,
        ));
    }
    if req.ephemeral_storage > 0
        && req.ephemeral_storage > alloc.ephemeral_storage - used.ephemeral_storage
    {
        out.push(insufficient(
            "ephemeral-storage",
            "Insufficient ephemeral-storage".into(),
            req.ephemeral_storage,
            used.ephemeral_storage,
            alloc.ephemeral_storage,
        ));
    }
    for (name, want) in &req.scalar {
        if *want == 0 {
            continue;
        }
        let (have, in_use) = (alloc.scalar(name), used.scalar(name));
        if *want > have - in_use {
            out.push(insufficient(
                name,
                format!("Insufficient {name}"),
                *want,
                in_use,
                have,
            ));
        }
    }
    out
}

impl Plugin for NodeResourcesFit {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PreFilterPlugin for NodeResourcesFit {
    /// Requests are precomputed in `PodInfo`; nothing to prepare.
    fn pre_filter(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status) {
        (None, Status::success())
    }
}

impl FilterPlugin for NodeResourcesFit {
    fn filter(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        let missing = fits(pod, node);
        if missing.is_empty() {
            return Status::success();
        }
        Status::with_reasons(
            crate::framework::Code::Unschedulable,
            missing.into_iter().map(|m| m.reason.into()).collect(),
        )
    }
}

/// `(capacity - requested) * 100 / capacity`, 0 when over capacity.
pub fn least_requested_score(requested: i64, capacity: i64) -> i64 {
    if capacity == 0 || requested > capacity {
        return 0;
    }
    (capacity - requested) * MAX_NODE_SCORE / capacity
}

impl PreScorePlugin for NodeResourcesFit {
    fn pre_score(
        &self,
        _state: &mut CycleState,
        _pod: &PodInfo,
        _nodes: &[&NodeInfo],
        _snapshot: &Snapshot,
    ) -> Status {
        Status::success()
    }
}

impl ScorePlugin for NodeResourcesFit {
    fn score(&self, _state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64 {
        let pairs = [
            (
                node.non_zero_requested.milli_cpu + pod.non_zero_requests.milli_cpu,
                node.allocatable.milli_cpu,
            ),
            (
                node.non_zero_requested.memory + pod.non_zero_requests.memory,
                node.allocatable.memory,
            ),
        ];
        let (mut total, mut weights) = (0, 0);
        for (requested, capacity) in pairs {
            if capacity == 0 {
                continue;
            }
            total += least_requested_score(requested, capacity);
            weights += 1;
        }
        if weights == 0 {
            0
        } else {
            total / weights
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Code;
    use crate::plugins::testing::{filter_all, node, node_json, pod, pod_req, score_all};
    use serde_json::json;

    #[test]
    fn filter_reports_every_insufficient_resource() {
        let snapshot = Snapshot::from_parts(
            vec![node_json(
                json!({"metadata": {"name": "n1"}, "status": {"allocatable": {
                "cpu": "2", "memory": "2Gi", "ephemeral-storage": "10Gi", "pods": "2", "example.com/gpu": "1"}}}),
            )],
            vec![pod_req("existing", "1500m", "1Gi", Some("n1"))],
        );
        let cases = [
            ("fits", pod_req("p", "500m", "1Gi", None), vec![]),
            (
                "cpu",
                pod_req("p", "501m", "1Gi", None),
                vec!["Insufficient cpu"],
            ),
            (
                "cpu and memory",
                pod_req("p", "1", "2Gi", None),
                vec!["Insufficient cpu", "Insufficient memory"],
            ),
            ("zero requests", pod("p", json!({}), json!({})), vec![]),
            (
                "extended",
                pod(
                    "p",
                    json!({}),
                    json!({"containers": [{"name": "c", "resources": {"requests": {"example.com/gpu": "2"}}}]}),
                ),
                vec!["Insufficient example.com/gpu"],
            ),
            (
                "ephemeral",
                pod(
                    "p",
                    json!({}),
                    json!({"containers": [{"name": "c", "resources": {"requests": {"ephemeral-storage": "11Gi"}}}]}),
                ),
                vec!["Insufficient ephemeral-storage"],
            ),
        ];
        for (name, p, want) in cases {
            let s = &filter_all(&NodeResourcesFit, &p, &snapshot)[0];
            let got: Vec<&str> = s.reasons().iter().map(|r| r.as_ref()).collect();
            assert_eq!(got, want, "{name}");
            if !want.is_empty() {
                assert_eq!(s.code(), Code::Unschedulable, "{name}");
            }
        }
    }

    #[test]
    fn filter_counts_pod_slots() {
        let snapshot = Snapshot::from_parts(
            vec![node_json(
                json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"cpu": "2", "pods": "1"}}}),
            )],
            vec![pod_req("existing", "100m", "0", Some("n1"))],
        );
        let s = &filter_all(
            &NodeResourcesFit,
            &pod("p", json!({}), json!({})),
            &snapshot,
        )[0];
        assert_eq!(s.message(), "Too many pods");
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let snapshot = Snapshot::from_parts(
            vec![
                node("empty", json!({}), "4", "8Gi"),
                node("busy", json!({}), "4", "8Gi"),
            ],
            vec![pod_req("existing", "3", "6Gi", Some("busy"))],
        );
        let scores = score_all(
            &NodeResourcesFit,
            &pod_req("p", "1", "2Gi", None),
            &snapshot,
        );
        assert_eq!(scores, vec![75, 0]);
        assert_eq!(least_requested_score(1, 4), 75);
        assert_eq!(least_requested_score(5, 4), 0);
    }
}
