//! DefaultPreemption (PostFilter): when a pod fits nowhere, find a node where evicting
//! lower-priority pods would make it fit, evicting as few and as unimportant pods as
//! possible. The plugin only decides (victims and nominated node); the scheduler does
//! the API calls.
//!
//! Per candidate node (those rejected as plain Unschedulable): remove every pod of lower
//! priority, check the pod fits, then add victims back most-important-first while it
//! still fits; whatever could not be added back is evicted. Among candidates the node
//! with the lowest highest-victim priority wins, then the smallest priority sum, the
//! fewest victims, the latest start. Failures are reported in upstream's words, e.g.
//! `preemption: 0/3 nodes are available: 3 No preemption victims found for incoming pod.`

use std::cmp::Ordering;
use std::sync::Arc;

use rand::Rng;

use crate::framework::{
    Code, CycleState, Diagnosis, FitError, NodeInfo, NodeToStatus, Plugin, PodInfo,
    PostFilterContext, PostFilterPlugin, PostFilterResult, Status,
};

pub const NAME: &str = "DefaultPreemption";
/// Dry-run at least this share of the candidate nodes…
const MIN_CANDIDATE_NODES_PERCENTAGE: usize = 10;
/// …and at least this many.
const MIN_CANDIDATE_NODES_ABSOLUTE: usize = 100;

#[derive(Debug, Default)]
pub struct DefaultPreemption;

impl DefaultPreemption {
    pub fn new() -> DefaultPreemption {
        DefaultPreemption
    }
}

/// A node where preemption would work, with its victims (most important first).
#[derive(Clone, Debug)]
pub struct Candidate {
    pub node: String,
    pub victims: Vec<Arc<PodInfo>>,
}

/// Upstream `MoreImportantPod`: higher priority, then earlier start.
fn more_important(a: &PodInfo, b: &PodInfo) -> Ordering {
    b.priority
        .cmp(&a.priority)
        .then_with(|| match (a.start_time, b.start_time) {
            (Some(x), Some(y)) => x.cmp(&y),
            (Some(_), None) => Ordering::Less,
            (None, Some(_)) => Ordering::Greater,
            (None, None) => Ordering::Equal,
        })
}

/// How many candidates to collect from `nodes` potential nodes.
fn num_candidates(nodes: usize) -> usize {
    (nodes * MIN_CANDIDATE_NODES_PERCENTAGE / 100)
        .max(MIN_CANDIDATE_NODES_ABSOLUTE)
        .min(nodes)
}

/// The fewest, least important pods on `node` whose removal lets `pod` fit.
pub fn select_victims_on_node(
    ctx: &PostFilterContext<'_>,
    state: &CycleState,
    pod: &PodInfo,
    node: &NodeInfo,
) -> Result<Vec<Arc<PodInfo>>, Status> {
    let fw = ctx.framework;
    let mut potential: Vec<Arc<PodInfo>> = node
        .pods
        .iter()
        .filter(|p| p.priority < pod.priority)
        .cloned()
        .collect();
    if potential.is_empty() {
        return Err(Status::unresolvable(
            "No preemption victims found for incoming pod",
        ));
    }
    // Dry runs work on copies; the snapshot stays as it is.
    let mut node = node.clone();
    let mut state = state.clone();
    for p in &potential {
        node.remove_pod(&p.uid);
        let s = fw.run_pre_filter_extension_remove_pod(&mut state, pod, p, &node, ctx.snapshot);
        if !s.is_success() {
            return Err(s);
        }
    }
    let runner = fw.filter_runner(&state);
    let fits = |state: &CycleState, node: &NodeInfo| {
        fw.run_filter_plugins_with_nominated_pods(
            &runner,
            state,
            pod,
            node,
            ctx.nominator,
            ctx.snapshot,
        )
    };
    let s = fits(&state, &node);
    if !s.is_success() {
        return Err(s);
    }
    potential.sort_by(|a, b| more_important(a, b));
    let mut victims = Vec::new();
    for p in potential {
        node.add_pod(p.clone());
        let s = fw.run_pre_filter_extension_add_pod(&mut state, pod, &p, &node, ctx.snapshot);
        if !s.is_success() {
            return Err(s);
        }
        if !fits(&state, &node).is_success() {
            node.remove_pod(&p.uid);
            let s =
                fw.run_pre_filter_extension_remove_pod(&mut state, pod, &p, &node, ctx.snapshot);
            if !s.is_success() {
                return Err(s);
            }
            victims.push(p);
        }
    }
    if victims.is_empty() {
        return Err(Status::error(format!(
            "expected at least one victim pod on node {:?}",
            node.name()
        )));
    }
    Ok(victims)
}

/// Upstream `pickOneNodeForPreemption` without PDBs: each criterion narrows the tie.
pub fn pick_one_node_for_preemption(candidates: &[Candidate]) -> Option<&Candidate> {
    type Criterion = fn(&Candidate) -> i128;
    let criteria: [Criterion; 4] = [
        // Lowest highest-priority victim.
        |c| -i128::from(c.victims.first().map_or(i32::MIN, |p| p.priority)),
        // Smallest sum of priorities (shifted to be non-negative).
        |c| {
            -c.victims
                .iter()
                .map(|p| i128::from(p.priority) + i128::from(i32::MAX) + 1)
                .sum::<i128>()
        },
        // Fewest victims.
        |c| -(c.victims.len() as i128),
        // Latest start among the highest-priority victims.
        |c| {
            let top = c.victims.first().map_or(i32::MIN, |p| p.priority);
            c.victims
                .iter()
                .filter(|p| p.priority == top)
                .filter_map(|p| p.start_time)
                .min()
                .map_or(i128::MIN, |t| t.as_nanosecond())
        },
    ];
    let mut remaining: Vec<&Candidate> = candidates.iter().collect();
    for f in criteria {
        if remaining.len() <= 1 {
            break;
        }
        let best = remaining.iter().map(|c| f(c)).max()?;
        remaining.retain(|c| f(c) == best);
    }
    remaining.first().copied()
}

fn failure(num_nodes: usize, statuses: NodeToStatus) -> (Option<PostFilterResult>, Status) {
    let mut statuses = statuses;
    statuses.set_absent(Status::unresolvable(
        "Preemption is not helpful for scheduling",
    ));
    let err = FitError {
        num_all_nodes: num_nodes,
        diagnosis: Diagnosis {
            node_to_status: statuses,
            ..Diagnosis::default()
        },
    };
    (
        Some(PostFilterResult::default()),
        Status::unschedulable(format!("preemption: {err}")),
    )
}

impl Plugin for DefaultPreemption {
    fn name(&self) -> &'static str {
        NAME
    }
}

impl PostFilterPlugin for DefaultPreemption {
    fn post_filter(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status) {
        if pod.preempt_never {
            return (
                None,
                Status::unschedulable("preemption: not eligible due to preemptionPolicy=Never."),
            );
        }
        let nominated = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        if let Some(nominated) = nominated {
            if statuses.get(nominated).code() != Code::UnschedulableAndUnresolvable {
                let terminating = ctx.snapshot.get(nominated).is_some_and(|n| {
                    n.pods
                        .iter()
                        .any(|p| p.terminating && p.priority < pod.priority)
                });
                if terminating {
                    return (None, Status::unschedulable("preemption: not eligible due to a terminating pod on the nominated node."));
                }
            }
        }
        let all = ctx.snapshot.num_nodes();
        if all == 0 {
            return (None, Status::error("no nodes available"));
        }
        let potential = statuses.nodes_for_code(ctx.snapshot, Code::Unschedulable);
        if potential.is_empty() {
            return failure(all, NodeToStatus::new());
        }
        let wanted = num_candidates(potential.len());
        let offset = rand::thread_rng().gen_range(0..potential.len());
        let mut candidates = Vec::new();
        let mut failed = NodeToStatus::new();
        for i in 0..potential.len() {
            let node = potential[(offset + i) % potential.len()];
            match select_victims_on_node(ctx, state, pod, node) {
                Ok(victims) => {
                    candidates.push(Candidate {
                        node: node.name().to_string(),
                        victims,
                    });
                    if candidates.len() >= wanted {
                        break;
                    }
                }
                Err(s) => failed.set(node.name(), s),
            }
        }
        let Some(best) = pick_one_node_for_preemption(&candidates) else {
            return failure(all, failed);
        };
        (
            Some(PostFilterResult {
                nominated_node_name: Some(best.node.clone()),
                victims: best.victims.clone(),
            }),
            Status::success(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::{Nominator, Snapshot};
    use crate::plugins::testing::{node, pod};
    use serde_json::json;

    fn prio(name: &str, priority: i32, cpu: &str, node: Option<&str>) -> PodInfo {
        let mut spec = json!({"priority": priority, "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]});
        if let Some(n) = node {
            spec["nodeName"] = json!(n);
        }
        pod(name, json!({}), spec)
    }

    /// Runs the default filters, then preemption, like a scheduling cycle would.
    fn preempt(snapshot: &Snapshot, p: &PodInfo) -> (Option<PostFilterResult>, Status) {
        let fw = crate::plugins::default_framework();
        let mut state = CycleState::new();
        let (_, s) = fw.run_pre_filter_plugins(&mut state, p, snapshot);
        assert!(s.is_success(), "{s}");
        let runner = fw.filter_runner(&state);
        let mut statuses = NodeToStatus::new();
        for n in snapshot.nodes() {
            statuses.set(n.name(), runner.run(&state, p, n));
        }
        let nominator = Nominator::new();
        let ctx = PostFilterContext {
            framework: &fw,
            snapshot,
            nominator: &nominator,
        };
        DefaultPreemption.post_filter(&ctx, &state, p, &statuses)
    }

    fn names(victims: &[Arc<PodInfo>]) -> Vec<&str> {
        victims.iter().map(|v| v.name.as_str()).collect()
    }

    #[test]
    fn evicts_the_fewest_lowest_priority_pods() {
        let snapshot = Snapshot::from_parts(
            vec![node("n1", json!({}), "3", "4Gi")],
            vec![
                prio("low-a", 1, "1", Some("n1")),
                prio("low-b", 2, "1", Some("n1")),
                prio("high", 100, "1", Some("n1")),
            ],
        );
        let (r, s) = preempt(&snapshot, &prio("p", 50, "1", None));
        assert!(s.is_success(), "{s}");
        let r = r.expect("result");
        assert_eq!(r.nominated_node_name.as_deref(), Some("n1"));
        assert_eq!(names(&r.victims), vec!["low-a"]);
    }

    #[test]
    fn prefers_the_node_with_lower_priority_victims() {
        let snapshot = Snapshot::from_parts(
            vec![
                node("n1", json!({}), "1", "4Gi"),
                node("n2", json!({}), "1", "4Gi"),
            ],
            vec![
                prio("mid", 10, "1", Some("n1")),
                prio("low", 1, "1", Some("n2")),
            ],
        );
        let (r, _) = preempt(&snapshot, &prio("p", 50, "1", None));
        assert_eq!(r.and_then(|r| r.nominated_node_name).as_deref(), Some("n2"));
    }

    #[test]
    fn failures_are_worded_like_upstream() {
        let equal = Snapshot::from_parts(
            vec![node("n1", json!({}), "1", "4Gi")],
            vec![prio("same", 50, "1", Some("n1"))],
        );
        let (_, s) = preempt(&equal, &prio("p", 50, "1", None));
        assert_eq!(
            s.message(),
            "preemption: 0/1 nodes are available: 1 No preemption victims found for incoming pod."
        );

        let too_big = Snapshot::from_parts(
            vec![node("n1", json!({}), "1", "4Gi")],
            vec![prio("low", 1, "500m", Some("n1"))],
        );
        let (_, s) = preempt(&too_big, &prio("p", 50, "2", None));
        assert_eq!(
            s.message(),
            "preemption: 0/1 nodes are available: 1 Insufficient cpu."
        );

        let mut tainted = node("n1", json!({}), "1", "4Gi");
        tainted.spec = Some(
            serde_json::from_value(json!({"taints": [{"key": "k", "effect": "NoSchedule"}]}))
                .expect("spec"),
        );
        let unhelpful = Snapshot::from_parts(vec![tainted], vec![]);
        let (_, s) = preempt(&unhelpful, &prio("p", 50, "2", None));
        assert_eq!(
            s.message(),
            "preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
        );

        let never = pod(
            "p",
            json!({}),
            json!({"priority": 50, "preemptionPolicy": "Never"}),
        );
        let (_, s) = preempt(&equal, &never);
        assert_eq!(
            s.message(),
            "preemption: not eligible due to preemptionPolicy=Never."
        );
    }

    #[test]
    fn pick_breaks_ties_by_sum_then_count() {
        let v = |p| Arc::new(prio("v", p, "1", None));
        let candidates = vec![
            Candidate {
                node: "a".into(),
                victims: vec![v(5), v(5)],
            },
            Candidate {
                node: "b".into(),
                victims: vec![v(5), v(1)],
            },
            Candidate {
                node: "c".into(),
                victims: vec![v(5)],
            },
        ];
        assert_eq!(
            pick_one_node_for_preemption(&candidates).map(|c| c.node.as_str()),
            Some("c")
        );
        assert!(pick_one_node_for_preemption(&[]).is_none());
    }
}
