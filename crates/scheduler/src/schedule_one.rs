//! One scheduling cycle (upstream `schedule_one.go`), as a pure function of the
//! snapshot: PreFilter, Filter over nodes until enough feasible ones are found,
//! PreScore/Score/NormalizeScore, pick the best (random among ties), Reserve; or, when
//! nothing fits, PostFilter (preemption) and the upstream-worded [`FitError`].
//!
//! Large clusters are sampled as upstream does: with N nodes the search stops after
//! `max(100, N × p%)` feasible nodes, `p` defaulting to `50 − N/125` (at least 5), and
//! the next search starts where this one stopped so every node gets its turn. Filtering
//! spreads over threads when there are many nodes to look at.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use rand::Rng;

use crate::framework::{
    Code, CycleState, Diagnosis, FitError, Framework, NodeInfo, Nominator, PodInfo,
    PostFilterContext, Snapshot, Status,
};

/// Below this many nodes every node is evaluated.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;
/// The adaptive percentage never drops below this.
pub const MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND: usize = 5;
/// Filtering goes parallel only for this many nodes still to look at, after a serial
/// pass has covered twice the nodes wanted (threads cost more than they save when
/// nodes fit readily, and this machine's other cores are busy serving the API).
const PARALLEL_MIN_NODES: usize = 1000;
/// Nodes per unit of parallel work.
const CHUNK: usize = 128;

/// How a failed cycle leaves the pod's `status.nominatedNodeName`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Nomination {
    Unchanged,
    Clear,
    Set(String),
}

/// The outcome of one cycle.
#[derive(Debug)]
pub enum CycleOutcome {
    /// Assume and bind the pod to `node`.
    Scheduled {
        node: String,
        evaluated_nodes: usize,
        feasible_nodes: usize,
    },
    /// No node fits; `victims` are to be evicted for the nominated node (if any).
    Unschedulable {
        error: FitError,
        nomination: Nomination,
        victims: Vec<Arc<PodInfo>>,
    },
    /// Something went wrong; retry after backoff.
    Error(Status),
}

enum ScheduleError {
    Fit(FitError),
    Internal(Status),
}

/// The scheduling algorithm with the little state it keeps between cycles.
pub struct Algorithm {
    /// 0 = adaptive.
    pub percentage_of_nodes_to_score: u32,
    /// Threads for filtering (1 = serial).
    pub parallelism: usize,
    next_start_node_index: usize,
}

impl Algorithm {
    pub fn new(percentage_of_nodes_to_score: u32, parallelism: usize) -> Algorithm {
        Algorithm {
            percentage_of_nodes_to_score,
            parallelism: parallelism.max(1),
            next_start_node_index: 0,
        }
    }

    /// How many feasible nodes to look for among `num_all_nodes`.
    pub fn num_feasible_nodes_to_find(&self, num_all_nodes: usize) -> usize {
        if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND {
            return num_all_nodes;
        }
        let mut percentage = self.percentage_of_nodes_to_score as usize;
        if percentage == 0 {
            percentage = 50usize
                .saturating_sub(num_all_nodes / 125)
                .max(MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND);
        }
        let n = num_all_nodes * percentage.min(100) / 100;
        n.max(MIN_FEASIBLE_NODES_TO_FIND)
    }

    /// Runs a whole cycle for `pod`.
    pub fn run_cycle(
        &mut self,
        fw: &Framework,
        snapshot: &Snapshot,
        nominator: &Nominator,
        pod: &PodInfo,
    ) -> CycleOutcome {
        let mut state = CycleState::new();
        match self.schedule_pod(fw, &mut state, snapshot, nominator, pod) {
            Ok((node, evaluated_nodes, feasible_nodes)) => {
                let s = fw.run_reserve_plugins(&mut state, pod, &node);
                if !s.is_success() {
                    return CycleOutcome::Error(s);
                }
                CycleOutcome::Scheduled {
                    node,
                    evaluated_nodes,
                    feasible_nodes,
                }
            }
            Err(ScheduleError::Internal(s)) => CycleOutcome::Error(s),
            Err(ScheduleError::Fit(mut error)) => {
                let mut nomination = Nomination::Unchanged;
                let mut victims = Vec::new();
                if fw.has_post_filter_plugins() {
                    let ctx = PostFilterContext {
                        framework: fw,
                        snapshot,
                        nominator,
                    };
                    let (result, s) = fw.run_post_filter_plugins(
                        &ctx,
                        &state,
                        pod,
                        &error.diagnosis.node_to_status,
                    );
                    if s.code() == Code::Error {
                        tracing::warn!(pod = %pod.key(), error = %s.message(), "preemption failed");
                    }
                    error.diagnosis.post_filter_msg = s.message();
                    if let Some(r) = result {
                        nomination = match r.nominated_node_name {
                            Some(n) if !n.is_empty() => Nomination::Set(n),
                            _ => Nomination::Clear,
                        };
                        victims = r.victims;
                    }
                }
                CycleOutcome::Unschedulable {
                    error,
                    nomination,
                    victims,
                }
            }
        }
    }

    /// Returns the chosen node, how many nodes were evaluated and how many fit.
    fn schedule_pod(
        &mut self,
        fw: &Framework,
        state: &mut CycleState,
        snapshot: &Snapshot,
        nominator: &Nominator,
        pod: &PodInfo,
    ) -> Result<(String, usize, usize), ScheduleError> {
        if snapshot.num_nodes() == 0 {
            return Err(ScheduleError::Internal(Status::error(
                "no nodes available to schedule pods",
            )));
        }
        let (feasible, diagnosis) =
            self.find_nodes_that_fit(fw, state, snapshot, nominator, pod)?;
        if feasible.is_empty() {
            return Err(ScheduleError::Fit(FitError {
                num_all_nodes: snapshot.num_nodes(),
                diagnosis,
            }));
        }
        let evaluated = feasible.len() + diagnosis.node_to_status.len();
        if feasible.len() == 1 {
            return Ok((feasible[0].name().to_string(), evaluated, 1));
        }
        let s = fw.run_pre_score_plugins(state, pod, &feasible, snapshot);
        if !s.is_success() {
            return Err(ScheduleError::Internal(s));
        }
        let scores = if fw.has_score_plugins() {
            fw.run_score_plugins(state, pod, &feasible)
                .map_err(ScheduleError::Internal)?
        } else {
            vec![1; feasible.len()]
        };
        let chosen = select_host(&scores, &mut rand::thread_rng());
        Ok((
            feasible[chosen].name().to_string(),
            evaluated,
            feasible.len(),
        ))
    }

    fn find_nodes_that_fit<'s>(
        &mut self,
        fw: &Framework,
        state: &mut CycleState,
        snapshot: &'s Snapshot,
        nominator: &Nominator,
        pod: &PodInfo,
    ) -> Result<(Vec<&'s NodeInfo>, Diagnosis), ScheduleError> {
        let mut diagnosis = Diagnosis::default();
        let (pre_result, s) = fw.run_pre_filter_plugins(state, pod, snapshot);
        if !s.is_success() {
            if !s.is_rejected() {
                return Err(ScheduleError::Internal(s));
            }
            diagnosis.pre_filter_msg = s.message();
            if !s.plugin().is_empty() {
                diagnosis.unschedulable_plugins.insert(s.plugin());
            }
            diagnosis.node_to_status.set_absent(s);
            return Ok((Vec::new(), diagnosis));
        }
        let runner = fw.filter_runner(state);

        // A pod nominated by an earlier preemption tries its node first.
        let nominated = pod
            .pod
            .status
            .as_ref()
            .and_then(|s| s.nominated_node_name.as_deref())
            .filter(|n| !n.is_empty());
        if let Some(node) = nominated.and_then(|n| snapshot.get(n)) {
            if fw
                .run_filter_plugins_with_nominated_pods(
                    &runner, state, pod, node, nominator, snapshot,
                )
                .is_success()
            {
                return Ok((vec![node], diagnosis));
            }
        }

        let all = match &pre_result.node_names {
            None => NodeList::All(snapshot.nodes()),
            Some(names) => {
                diagnosis.node_to_status.set_absent(Status::unresolvable(
                    "node(s) didn't satisfy plugin(s) [NodeAffinity]",
                ));
                NodeList::Some(
                    snapshot
                        .nodes()
                        .iter()
                        .filter(|n| names.contains(n.name()))
                        .collect(),
                )
            }
        };
        if all.is_empty() {
            return Ok((Vec::new(), diagnosis));
        }
        let wanted = self.num_feasible_nodes_to_find(all.len());
        let start = self.next_start_node_index % all.len();
        let check = |node: &NodeInfo| {
            if nominator.is_empty() {
                runner.run(state, pod, node)
            } else {
                fw.run_filter_plugins_with_nominated_pods(
                    &runner, state, pod, node, nominator, snapshot,
                )
            }
        };
        let serial_budget = (2 * wanted).max(PARALLEL_MIN_NODES).min(all.len());
        let (mut feasible, mut failed) = filter_serial(&all, start, serial_budget, wanted, &check);
        let remaining = all.len() - serial_budget;
        if feasible.len() < wanted && remaining > 0 {
            let still_wanted = wanted - feasible.len();
            let (f, x) = if self.parallelism > 1 && remaining >= PARALLEL_MIN_NODES {
                filter_parallel(
                    &all,
                    start + serial_budget,
                    remaining,
                    still_wanted,
                    self.parallelism,
                    &check,
                )
            } else {
                filter_serial(&all, start + serial_budget, remaining, still_wanted, &check)
            };
            feasible.extend(f);
            failed.extend(x);
        }
        for (i, status) in failed {
            if status.code() == Code::Error {
                return Err(ScheduleError::Internal(status));
            }
            if !status.plugin().is_empty() {
                diagnosis.unschedulable_plugins.insert(status.plugin());
            }
            diagnosis.node_to_status.set(all.get(i).name(), status);
        }
        let processed = feasible.len() + diagnosis.node_to_status.len();
        self.next_start_node_index = (start + processed) % all.len();
        Ok((
            feasible.into_iter().map(|i| all.get(i)).collect(),
            diagnosis,
        ))
    }
}

type FilterResults = (Vec<usize>, Vec<(usize, Status)>);

/// The nodes a cycle filters: all of the snapshot's, or those PreFilter narrowed to
/// (no per-cycle list of 5,000 references in the common case).
enum NodeList<'a> {
    All(&'a [NodeInfo]),
    Some(Vec<&'a NodeInfo>),
}

impl<'a> NodeList<'a> {
    fn len(&self) -> usize {
        match self {
            NodeList::All(n) => n.len(),
            NodeList::Some(n) => n.len(),
        }
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn get(&self, i: usize) -> &'a NodeInfo {
        match self {
            NodeList::All(n) => &n[i],
            NodeList::Some(n) => n[i],
        }
    }
}

/// Evaluates `count` nodes in rotation from `start`, stopping once `wanted` fit.
fn filter_serial(
    nodes: &NodeList<'_>,
    start: usize,
    count: usize,
    wanted: usize,
    check: &dyn Fn(&NodeInfo) -> Status,
) -> FilterResults {
    let mut feasible = Vec::new();
    let mut failed = Vec::new();
    if wanted == 0 {
        return (feasible, failed);
    }
    for k in 0..count.min(nodes.len()) {
        let i = (start + k) % nodes.len();
        let s = check(nodes.get(i));
        if s.is_success() {
            feasible.push(i);
            if feasible.len() >= wanted {
                break;
            }
        } else {
            failed.push((i, s));
        }
    }
    (feasible, failed)
}

/// Like [`filter_serial`], with chunks of the rotation handed out to `threads` threads;
/// stops handing out chunks once enough nodes fit, then keeps the results in rotation
/// order so the outcome matches a serial run over the chunks evaluated.
fn filter_parallel(
    nodes: &NodeList<'_>,
    start: usize,
    count: usize,
    wanted: usize,
    threads: usize,
    check: &(dyn Fn(&NodeInfo) -> Status + Sync),
) -> FilterResults {
    let count = count.min(nodes.len());
    let chunks = count.div_ceil(CHUNK);
    let next = AtomicUsize::new(0);
    let found = AtomicUsize::new(0);
    let work = || {
        let mut out: Vec<(usize, FilterResults)> = Vec::new();
        loop {
            if found.load(Ordering::Relaxed) >= wanted {
                break;
            }
            let c = next.fetch_add(1, Ordering::Relaxed);
            if c >= chunks {
                break;
            }
            let mut feasible = Vec::new();
            let mut failed = Vec::new();
            for k in c * CHUNK..((c + 1) * CHUNK).min(count) {
                let i = (start + k) % nodes.len();
                let s = check(nodes.get(i));
                if s.is_success() {
                    feasible.push(i);
                } else {
                    failed.push((i, s));
                }
            }
            found.fetch_add(feasible.len(), Ordering::Relaxed);
            out.push((c, (feasible, failed)));
        }
        out
    };
    let mut results: Vec<(usize, FilterResults)> = std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(chunks))
            .map(|_| scope.spawn(work))
            .collect();
        let mut all = work();
        for h in helpers {
            match h.join() {
                Ok(r) => all.extend(r),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    });
    results.sort_by_key(|(c, _)| *c);
    let mut feasible = Vec::new();
    let mut failed = Vec::new();
    for (_, (f, x)) in results {
        if feasible.len() >= wanted {
            break;
        }
        feasible.extend(f);
        failed.extend(x);
    }
    feasible.truncate(wanted);
    (feasible, failed)
}

/// Index of the highest score, chosen uniformly among ties (reservoir sampling).
pub fn select_host(scores: &[i64], rng: &mut impl Rng) -> usize {
    let mut best = 0;
    let mut ties = 1u32;
    for (i, s) in scores.iter().enumerate().skip(1) {
        if *s > scores[best] {
            best = i;
            ties = 1;
        } else if *s == scores[best] {
            ties += 1;
            if rng.gen_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plugins::default_framework;
    use crate::plugins::testing::{node, pod, pod_req};
    use serde_json::json;

    #[test]
    fn adaptive_percentage_follows_upstream() {
        let a = Algorithm::new(0, 1);
        let cases = [
            (50, 50),
            (100, 100),
            (1000, 420),
            (5000, 500),
            (6000, 300),
            (10_000, 500),
            (100_000, 5000),
        ];
        for (nodes, want) in cases {
            assert_eq!(a.num_feasible_nodes_to_find(nodes), want, "{nodes} nodes");
        }
        assert_eq!(Algorithm::new(20, 1).num_feasible_nodes_to_find(1000), 200);
        assert_eq!(Algorithm::new(1, 1).num_feasible_nodes_to_find(1000), 100);
    }

    #[test]
    fn select_host_picks_the_max_and_spreads_ties() {
        let mut rng = rand::thread_rng();
        assert_eq!(select_host(&[1, 5, 3], &mut rng), 1);
        let mut seen = [false; 3];
        for _ in 0..200 {
            seen[select_host(&[7, 7, 7], &mut rng)] = true;
        }
        assert_eq!(seen, [true, true, true]);
    }

    fn cluster(n: usize) -> Snapshot {
        Snapshot::from_parts(
            (0..n)
                .map(|i| node(&format!("n{i}"), json!({}), "4", "8Gi"))
                .collect(),
            vec![],
        )
    }

    #[test]
    fn picks_the_node_that_fits_and_reports_the_rest() {
        let snapshot = Snapshot::from_parts(
            vec![
                node("small", json!({}), "1", "1Gi"),
                node("big", json!({}), "8", "16Gi"),
            ],
            vec![],
        );
        let fw = default_framework();
        let mut algo = Algorithm::new(0, 1);
        match algo.run_cycle(
            &fw,
            &snapshot,
            &Nominator::new(),
            &pod_req("p", "2", "1Gi", None),
        ) {
            CycleOutcome::Scheduled {
                node,
                feasible_nodes,
                ..
            } => assert_eq!((node.as_str(), feasible_nodes), ("big", 1)),
            other => panic!("unexpected {other:?}"),
        }
        match algo.run_cycle(
            &fw,
            &snapshot,
            &Nominator::new(),
            &pod_req("p", "16", "1Gi", None),
        ) {
            CycleOutcome::Unschedulable {
                error,
                nomination,
                victims,
            } => {
                assert_eq!(
                    error.to_string(),
                    "0/2 nodes are available: 2 Insufficient cpu. preemption: 0/2 nodes are available: \
                     2 No preemption victims found for incoming pod.."
                );
                assert_eq!(nomination, Nomination::Clear);
                assert!(victims.is_empty());
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn an_empty_cluster_is_an_error() {
        let mut algo = Algorithm::new(0, 1);
        let out = algo.run_cycle(
            &default_framework(),
            &Snapshot::new(),
            &Nominator::new(),
            &pod("p", json!({}), json!({})),
        );
        assert!(
            matches!(out, CycleOutcome::Error(s) if s.message() == "no nodes available to schedule pods")
        );
    }

    #[test]
    fn sampling_rotates_through_large_clusters() {
        let snapshot = cluster(1000);
        let fw = default_framework();
        let mut algo = Algorithm::new(0, 1);
        let p = pod_req("p", "100m", "1Mi", None);
        match algo.run_cycle(&fw, &snapshot, &Nominator::new(), &p) {
            CycleOutcome::Scheduled {
                evaluated_nodes,
                feasible_nodes,
                ..
            } => assert_eq!((evaluated_nodes, feasible_nodes), (420, 420)),
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(algo.next_start_node_index, 420);
    }

    #[test]
    fn parallel_and_serial_filtering_agree() {
        let snapshot = Snapshot::from_parts(
            (0..3000)
                .map(|i| {
                    node(
                        &format!("n{i}"),
                        json!({}),
                        if i % 3 == 0 { "4" } else { "1" },
                        "8Gi",
                    )
                })
                .collect(),
            vec![],
        );
        let nodes = NodeList::All(snapshot.nodes());
        let p = pod_req("p", "2", "1Mi", None);
        let fw = default_framework();
        let state = CycleState::new();
        let runner = fw.filter_runner(&state);
        let check = |n: &NodeInfo| runner.run(&state, &p, n);
        for (start, wanted) in [(0, 100), (17, 1000), (2999, 500), (5, 3000)] {
            let serial = filter_serial(&nodes, start, nodes.len(), wanted, &check);
            let parallel = filter_parallel(&nodes, start, nodes.len(), wanted, 4, &check);
            assert_eq!(serial.0, parallel.0, "start {start} wanted {wanted}");
            assert!(parallel.1.len() >= serial.1.len());
        }
    }

    #[test]
    fn unschedulable_everywhere_evaluates_every_node_in_parallel() {
        let snapshot = cluster(2500);
        let fw = default_framework();
        let mut algo = Algorithm::new(0, 2);
        match algo.run_cycle(
            &fw,
            &snapshot,
            &Nominator::new(),
            &pod_req("p", "64", "1Mi", None),
        ) {
            CycleOutcome::Unschedulable { error, .. } => {
                assert!(
                    error
                        .to_string()
                        .starts_with("0/2500 nodes are available: 2500 Insufficient cpu."),
                    "{error}"
                );
            }
            other => panic!("unexpected {other:?}"),
        }
    }
}
