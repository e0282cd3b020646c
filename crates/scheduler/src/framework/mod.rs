//! The scheduling framework (upstream `pkg/scheduler/framework`): the extension points a
//! plugin can implement, the [`Status`] they return, the per-cycle [`CycleState`], and
//! the types plugins reason about ([`PodInfo`], [`NodeInfo`], [`Snapshot`]).
//!
//! A cycle runs PreFilter once, Filter per node, PostFilter (preemption) when no node
//! passes, PreScore once, Score per feasible node then NormalizeScore, Reserve, and
//! finally Bind asynchronously. Every extension point but Bind is a pure function of
//! the snapshot, which is what makes plugins table-testable.

pub mod cycle_state;
pub mod diagnosis;
pub mod nominator;
pub mod quantity;
pub mod runtime;
pub mod snapshot;
pub mod types;

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

pub use cycle_state::{CycleState, StateData};
pub use diagnosis::{Diagnosis, FitError, NodeToStatus};
pub use nominator::Nominator;
pub use runtime::Framework;
pub use snapshot::Snapshot;
pub use types::{NodeInfo, PodInfo, Resource};

/// The highest score a Score plugin gives after normalisation.
pub const MAX_NODE_SCORE: i64 = 100;

/// Outcome class of an extension point (upstream `framework.Code`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Code {
    Success,
    /// An internal error; the pod is retried after backoff.
    Error,
    /// Does not fit now; preemption may help.
    Unschedulable,
    /// Does not fit, and evicting pods would not change that.
    UnschedulableAndUnresolvable,
    /// PreFilter/PreScore: this plugin has nothing to do for the pod.
    Skip,
}

/// What an extension point returns: a code, human-readable reasons (joined with ", "
/// into the message), and the plugin that produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Status {
    code: Code,
    reasons: Vec<Cow<'static, str>>,
    plugin: &'static str,
}

impl Default for Status {
    fn default() -> Self {
        Status::success()
    }
}

impl Status {
    pub fn success() -> Status {
        Status {
            code: Code::Success,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    pub fn new(code: Code, reason: impl Into<Cow<'static, str>>) -> Status {
        Status {
            code,
            reasons: vec![reason.into()],
            plugin: "",
        }
    }

    pub fn with_reasons(code: Code, reasons: Vec<Cow<'static, str>>) -> Status {
        Status {
            code,
            reasons,
            plugin: "",
        }
    }

    pub fn unschedulable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Unschedulable, reason)
    }

    pub fn unresolvable(reason: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::UnschedulableAndUnresolvable, reason)
    }

    pub fn error(message: impl Into<Cow<'static, str>>) -> Status {
        Status::new(Code::Error, message)
    }

    pub fn skip() -> Status {
        Status {
            code: Code::Skip,
            reasons: Vec::new(),
            plugin: "",
        }
    }

    pub fn code(&self) -> Code {
        self.code
    }

    pub fn reasons(&self) -> &[Cow<'static, str>] {
        &self.reasons
    }

    pub fn plugin(&self) -> &'static str {
        self.plugin
    }

    pub fn set_plugin(&mut self, plugin: &'static str) {
        self.plugin = plugin;
    }

    pub fn with_plugin(mut self, plugin: &'static str) -> Status {
        self.plugin = plugin;
        self
    }

    pub fn is_success(&self) -> bool {
        self.code == Code::Success
    }

    pub fn is_skip(&self) -> bool {
        self.code == Code::Skip
    }

    /// Unschedulable or UnschedulableAndUnresolvable.
    pub fn is_rejected(&self) -> bool {
        matches!(
            self.code,
            Code::Unschedulable | Code::UnschedulableAndUnresolvable
        )
    }

    /// The reasons joined with ", " (upstream `Status.Message`).
    pub fn message(&self) -> String {
        self.reasons.join(", ")
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.code, self.message())
    }
}

/// PreFilter may narrow the nodes worth filtering (e.g. node affinity on `metadata.name`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PreFilterResult {
    /// `None` means all nodes.
    pub node_names: Option<HashSet<String>>,
}

impl PreFilterResult {
    pub fn all_nodes(&self) -> bool {
        self.node_names.is_none()
    }

    /// Intersection of two results.
    pub fn merge(self, other: PreFilterResult) -> PreFilterResult {
        match (self.node_names, other.node_names) {
            (None, n) | (n, None) => PreFilterResult { node_names: n },
            (Some(a), Some(b)) => PreFilterResult {
                node_names: Some(a.intersection(&b).cloned().collect()),
            },
        }
    }
}

/// What PostFilter (preemption) decided: the node to nominate and the pods to evict.
#[derive(Clone, Debug, Default)]
pub struct PostFilterResult {
    pub nominated_node_name: Option<String>,
    pub victims: Vec<Arc<PodInfo>>,
}

/// Everything PostFilter plugins may consult besides the cycle state.
pub struct PostFilterContext<'a> {
    pub framework: &'a Framework,
    pub snapshot: &'a Snapshot,
    pub nominator: &'a Nominator,
}

/// Common to all plugins.
pub trait Plugin: Send + Sync {
    fn name(&self) -> &'static str;
}

/// Runs once per cycle before filtering; may precompute state or rule the pod out.
pub trait PreFilterPlugin: Plugin {
    fn pre_filter(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (Option<PreFilterResult>, Status);

    /// Incremental updates of the precomputed state, for preemption's what-ifs.
    fn pre_filter_extensions(&self) -> Option<&dyn PreFilterExtensions> {
        None
    }
}

/// Keeps PreFilter state right when preemption adds or removes pods on a node copy.
pub trait PreFilterExtensions: Send + Sync {
    fn add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        to_add: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Status;
    fn remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        to_remove: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Status;
}

/// Decides, per node, whether the pod can run there.
pub trait FilterPlugin: Plugin {
    fn filter(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status;
}

/// Runs when no node passes the filters (preemption).
pub trait PostFilterPlugin: Plugin {
    fn post_filter(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status);
}

/// Runs once before scoring, over the feasible nodes.
pub trait PreScorePlugin: Plugin {
    fn pre_score(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status;
}

/// Ranks feasible nodes; scores are normalised to 0..=[`MAX_NODE_SCORE`] then weighted.
pub trait ScorePlugin: Plugin {
    fn score(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> i64;

    fn score_extensions(&self) -> Option<&dyn ScoreExtensions> {
        None
    }
}

/// NormalizeScore: rescales one plugin's raw scores across all feasible nodes.
pub trait ScoreExtensions: Send + Sync {
    fn normalize_score(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        scores: &mut [i64],
    ) -> Status;
}

/// Reserve/Unreserve: claim (and give back) per-node resources a plugin manages itself.
pub trait ReservePlugin: Plugin {
    fn reserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status;
    fn unreserve(&self, state: &mut CycleState, pod: &PodInfo, node: &str);
}

/// PreBind: API work that must be done before the pod is bound (e.g. binding its
/// volumes), off the scheduling loop. A failure sends the pod back to the queue.
#[async_trait::async_trait]
pub trait PreBindPlugin: Plugin {
    async fn pre_bind(&self, client: &kube::Client, pod: &PodInfo, node: &str) -> Status;
}

/// A plugin that keeps its own caches of other resources (upstream plugins get listers
/// from the shared informer factory). The scheduler starts its watches with its own
/// client; `changed` is called when something it watches changes, so that the pods it
/// turned away are tried again.
pub trait InformedPlugin: Plugin {
    fn start(
        &self,
        client: kube::Client,
        cancel: tokio_util::sync::CancellationToken,
        changed: Arc<dyn Fn() + Send + Sync>,
    ) -> Vec<tokio::task::JoinHandle<()>>;
}

/// Writes the decision to the API (asynchronously, off the scheduling loop).
#[async_trait::async_trait]
pub trait BindPlugin: Plugin {
    /// Returns Skip to let the next binder handle the pod.
    async fn bind(
        &self,
        client: &kube::Client,
        pod: &PodInfo,
        node: &str,
    ) -> Result<Status, kube::Error>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_message_joins_reasons() {
        let s = Status::with_reasons(
            Code::Unschedulable,
            vec!["Insufficient cpu".into(), "Insufficient memory".into()],
        );
        assert_eq!(s.message(), "Insufficient cpu, Insufficient memory");
        assert!(s.is_rejected());
        assert!(Status::success().is_success());
        assert!(!Status::error("x").is_rejected());
    }

    #[test]
    fn prefilter_results_intersect() {
        let set = |v: &[&str]| PreFilterResult {
            node_names: Some(v.iter().map(|s| s.to_string()).collect()),
        };
        assert_eq!(PreFilterResult::default().merge(set(&["a"])), set(&["a"]));
        assert_eq!(set(&["a", "b"]).merge(set(&["b", "c"])), set(&["b"]));
        assert!(PreFilterResult::default()
            .merge(PreFilterResult::default())
            .all_nodes());
    }
}
