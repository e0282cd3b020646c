//! Why a pod fit nowhere, and upstream's exact wording of it (`framework.FitError`):
//! `0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient
//! cpu. preemption: …` — each reason counted over nodes, the "count reason" strings
//! sorted as strings (so "10 …" sorts before "2 …", as upstream), then the PostFilter
//! (preemption) message.

use std::collections::{BTreeSet, HashMap};
use std::fmt;

use super::{Code, NodeInfo, Snapshot, Status};

/// Node name → the status that ruled it out; nodes not listed share one "absent" status.
#[derive(Clone, Debug)]
pub struct NodeToStatus {
    statuses: HashMap<String, Status>,
    absent: Status,
}

impl Default for NodeToStatus {
    fn default() -> Self {
        NodeToStatus {
            statuses: HashMap::new(),
            absent: Status::with_reasons(Code::UnschedulableAndUnresolvable, Vec::new()),
        }
    }
}

impl NodeToStatus {
    pub fn new() -> NodeToStatus {
        NodeToStatus::default()
    }

    pub fn set(&mut self, node: &str, status: Status) {
        self.statuses.insert(node.to_string(), status);
    }

    pub fn get(&self, node: &str) -> &Status {
        self.statuses.get(node).unwrap_or(&self.absent)
    }

    pub fn len(&self) -> usize {
        self.statuses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty()
    }

    pub fn absent(&self) -> &Status {
        &self.absent
    }

    pub fn set_absent(&mut self, status: Status) {
        self.absent = status;
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Status)> {
        self.statuses.iter()
    }

    /// Nodes whose status has `code` (absent nodes included when the absent status has it).
    pub fn nodes_for_code<'a>(&self, snapshot: &'a Snapshot, code: Code) -> Vec<&'a NodeInfo> {
        snapshot
            .nodes()
            .iter()
            .filter(|n| self.get(n.name()).code() == code)
            .collect()
    }
}

/// Everything the failed cycle learnt.
#[derive(Clone, Debug, Default)]
pub struct Diagnosis {
    pub node_to_status: NodeToStatus,
    /// Plugins that rejected the pod somewhere (to requeue it on relevant events only).
    pub unschedulable_plugins: BTreeSet<&'static str>,
    /// Set when PreFilter rejected the pod outright.
    pub pre_filter_msg: String,
    pub post_filter_msg: String,
}

/// The pod fits on none of `num_all_nodes`.
#[derive(Clone, Debug, Default)]
pub struct FitError {
    pub num_all_nodes: usize,
    pub diagnosis: Diagnosis,
}

impl fmt::Display for FitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0/{} nodes are available:", self.num_all_nodes)?;
        let d = &self.diagnosis;
        if !d.pre_filter_msg.is_empty() {
            write!(f, " {}.", d.pre_filter_msg)?;
        } else {
            let mut counts: HashMap<&str, usize> = HashMap::new();
            for (_, status) in d.node_to_status.iter() {
                for r in status.reasons() {
                    *counts.entry(r.as_ref()).or_default() += 1;
                }
            }
            let absent_nodes = self.num_all_nodes.saturating_sub(d.node_to_status.len());
            if absent_nodes > 0 {
                for r in d.node_to_status.absent().reasons() {
                    *counts.entry(r.as_ref()).or_default() += absent_nodes;
                }
            }
            let mut parts: Vec<String> = counts
                .into_iter()
                .map(|(r, n)| format!("{n} {r}"))
                .collect();
            parts.sort();
            if !parts.is_empty() {
                write!(f, " {}.", parts.join(", "))?;
            }
        }
        if !d.post_filter_msg.is_empty() {
            write!(f, " {}.", d.post_filter_msg)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fit_error(n: usize, statuses: &[(&str, Status)]) -> FitError {
        let mut m = NodeToStatus::new();
        for (name, s) in statuses {
            m.set(name, s.clone());
        }
        FitError {
            num_all_nodes: n,
            diagnosis: Diagnosis {
                node_to_status: m,
                ..Diagnosis::default()
            },
        }
    }

    #[test]
    fn messages_count_and_sort_reasons_like_upstream() {
        let cpu = Status::unschedulable("Insufficient cpu");
        let taint = Status::unresolvable(
            "node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }",
        );
        let both = Status::with_reasons(
            Code::Unschedulable,
            vec!["Insufficient cpu".into(), "Insufficient memory".into()],
        );
        let cases = [
            (fit_error(3, &[("a", cpu.clone()), ("b", cpu.clone()), ("c", cpu.clone())]), "0/3 nodes are available: 3 Insufficient cpu."),
            (
                fit_error(3, &[("a", taint), ("b", cpu.clone()), ("c", cpu.clone())]),
                "0/3 nodes are available: 1 node(s) had untolerated taint {node-role.kubernetes.io/control-plane: }, 2 Insufficient cpu.",
            ),
            (
                fit_error(2, &[("a", both), ("b", cpu)]),
                "0/2 nodes are available: 1 Insufficient memory, 2 Insufficient cpu.",
            ),
            (fit_error(0, &[]), "0/0 nodes are available:"),
        ];
        for (err, want) in cases {
            assert_eq!(err.to_string(), want);
        }
    }

    #[test]
    fn absent_nodes_share_the_absent_status_and_post_filter_message_follows() {
        let mut err = fit_error(
            3,
            &[(
                "a",
                Status::unresolvable("No preemption victims found for incoming pod"),
            )],
        );
        err.diagnosis
            .node_to_status
            .set_absent(Status::unresolvable(
                "Preemption is not helpful for scheduling",
            ));
        assert_eq!(
            err.to_string(),
            "0/3 nodes are available: 1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling."
        );
        let mut outer = fit_error(3, &[]);
        outer.diagnosis.pre_filter_msg = "node(s) didn't match pod affinity rules".into();
        outer.diagnosis.post_filter_msg = format!("preemption: {err}");
        assert_eq!(
            outer.to_string(),
            "0/3 nodes are available: node(s) didn't match pod affinity rules. preemption: 0/3 nodes are available: \
             1 No preemption victims found for incoming pod, 2 Preemption is not helpful for scheduling.."
        );
    }
}
