//! Runs the configured plugins at each extension point (upstream `framework/runtime`):
//! skips what PreFilter/PreScore marked Skip, stops Filter at the first rejection,
//! normalises and weights scores, and tags every status with its plugin.

use std::sync::Arc;

use super::{
    BindPlugin, Code, CycleState, FilterPlugin, InformedPlugin, NodeInfo, NodeToStatus, Nominator,
    PodInfo, PostFilterContext, PostFilterPlugin, PostFilterResult, PreBindPlugin, PreFilterPlugin,
    PreFilterResult, PreScorePlugin, ReservePlugin, ScorePlugin, Snapshot, Status,
};

/// The plugins of one scheduling profile, per extension point, in running order.
#[derive(Default)]
pub struct Framework {
    pre_filter: Vec<Arc<dyn PreFilterPlugin>>,
    filter: Vec<Arc<dyn FilterPlugin>>,
    post_filter: Vec<Arc<dyn PostFilterPlugin>>,
    pre_score: Vec<Arc<dyn PreScorePlugin>>,
    score: Vec<(Arc<dyn ScorePlugin>, i64)>,
    reserve: Vec<Arc<dyn ReservePlugin>>,
    pre_bind: Vec<Arc<dyn PreBindPlugin>>,
    bind: Vec<Arc<dyn BindPlugin>>,
    informed: Vec<Arc<dyn InformedPlugin>>,
}

/// The Filter plugins not skipped in one cycle, resolved once so the per-node loop does
/// no lookups.
pub struct FilterRunner<'a> {
    plugins: Vec<&'a dyn FilterPlugin>,
}

impl FilterRunner<'_> {
    /// Runs the filters on one node; the first rejection wins (upstream `RunFilterPlugins`).
    pub fn run(&self, state: &CycleState, pod: &PodInfo, node: &NodeInfo) -> Status {
        for pl in &self.plugins {
            let mut s = pl.filter(state, pod, node);
            if !s.is_success() {
                if !s.is_rejected() {
                    s = Status::error(format!(
                        "running {:?} filter plugin: {}",
                        pl.name(),
                        s.message()
                    ));
                }
                s.set_plugin(pl.name());
                return s;
            }
        }
        Status::success()
    }

    pub fn is_empty(&self) -> bool {
        self.plugins.is_empty()
    }
}

impl Framework {
    pub fn new() -> Framework {
        Framework::default()
    }

    pub fn add_pre_filter(&mut self, p: Arc<dyn PreFilterPlugin>) {
        self.pre_filter.push(p);
    }
    pub fn add_filter(&mut self, p: Arc<dyn FilterPlugin>) {
        self.filter.push(p);
    }
    pub fn add_post_filter(&mut self, p: Arc<dyn PostFilterPlugin>) {
        self.post_filter.push(p);
    }
    pub fn add_pre_score(&mut self, p: Arc<dyn PreScorePlugin>) {
        self.pre_score.push(p);
    }
    pub fn add_score(&mut self, p: Arc<dyn ScorePlugin>, weight: i64) {
        self.score.push((p, weight));
    }
    pub fn add_reserve(&mut self, p: Arc<dyn ReservePlugin>) {
        self.reserve.push(p);
    }
    pub fn add_pre_bind(&mut self, p: Arc<dyn PreBindPlugin>) {
        self.pre_bind.push(p);
    }
    pub fn add_bind(&mut self, p: Arc<dyn BindPlugin>) {
        self.bind.push(p);
    }
    pub fn add_informed(&mut self, p: Arc<dyn InformedPlugin>) {
        self.informed.push(p);
    }

    /// Plugins with caches of their own, for the scheduler to start.
    pub fn informed_plugins(&self) -> &[Arc<dyn InformedPlugin>] {
        &self.informed
    }

    /// Names of the Filter plugins, in order.
    pub fn filter_plugin_names(&self) -> Vec<&'static str> {
        self.filter.iter().map(|p| p.name()).collect()
    }

    /// Names and weights of the Score plugins, in order.
    pub fn score_plugin_weights(&self) -> Vec<(&'static str, i64)> {
        self.score.iter().map(|(p, w)| (p.name(), *w)).collect()
    }

    pub fn has_post_filter_plugins(&self) -> bool {
        !self.post_filter.is_empty()
    }

    pub fn has_score_plugins(&self) -> bool {
        !self.score.is_empty()
    }

    /// PreFilter: a rejection that preemption cannot fix stops at once; a plain
    /// Unschedulable is remembered while the rest still run (they may prepare state
    /// preemption needs). Node sets returned by plugins are intersected.
    pub fn run_pre_filter_plugins(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        snapshot: &Snapshot,
    ) -> (PreFilterResult, Status) {
        let mut result = PreFilterResult::default();
        let mut narrowed_by: Vec<&'static str> = Vec::new();
        let mut returned = Status::success();
        for pl in &self.pre_filter {
            let (r, mut s) = pl.pre_filter(state, pod, snapshot);
            if s.is_skip() {
                state.skip_filter_plugins.insert(pl.name());
                continue;
            }
            if !s.is_success() {
                s.set_plugin(pl.name());
                match s.code() {
                    Code::UnschedulableAndUnresolvable => return (result, s),
                    Code::Unschedulable => {
                        returned = s;
                        continue;
                    }
                    _ => {
                        let msg =
                            format!("running PreFilter plugin {:?}: {}", pl.name(), s.message());
                        return (result, Status::error(msg).with_plugin(pl.name()));
                    }
                }
            }
            if let Some(r) = r.filter(|r| !r.all_nodes()) {
                narrowed_by.push(pl.name());
                result = result.merge(r);
                if result.node_names.as_ref().is_some_and(|n| n.is_empty()) {
                    let msg = if narrowed_by.len() == 1 {
                        format!("node(s) didn't satisfy plugin {}", narrowed_by[0])
                    } else {
                        format!("node(s) didn't satisfy plugin(s) {narrowed_by:?} simultaneously")
                    };
                    return (result, Status::unresolvable(msg).with_plugin(pl.name()));
                }
            }
        }
        (result, returned)
    }

    /// The Filter plugins to run this cycle.
    pub fn filter_runner(&self, state: &CycleState) -> FilterRunner<'_> {
        FilterRunner {
            plugins: self
                .filter
                .iter()
                .filter(|p| !state.skip_filter_plugins.contains(p.name()))
                .map(|p| p.as_ref() as &dyn FilterPlugin)
                .collect(),
        }
    }

    /// Filter, with pods nominated to `node` of at least `pod`'s priority counted as if
    /// they ran there; then again without them (either way must pass, as upstream).
    pub fn run_filter_plugins_with_nominated_pods(
        &self,
        runner: &FilterRunner<'_>,
        state: &CycleState,
        pod: &PodInfo,
        node: &NodeInfo,
        nominator: &Nominator,
        snapshot: &Snapshot,
    ) -> Status {
        let nominated: Vec<&Arc<PodInfo>> = nominator
            .nominated_pods(node.name())
            .iter()
            .filter(|p| p.uid != pod.uid && p.priority >= pod.priority)
            .collect();
        if nominated.is_empty() {
            return runner.run(state, pod, node);
        }
        let mut with = node.clone();
        let mut with_state = state.clone();
        for p in nominated {
            with.add_pod(p.clone());
            let s = self.run_pre_filter_extension_add_pod(&mut with_state, pod, p, &with, snapshot);
            if !s.is_success() {
                return s;
            }
        }
        let s = runner.run(&with_state, pod, &with);
        if !s.is_success() {
            return s;
        }
        runner.run(state, pod, node)
    }

    /// Tells every (non-skipped) PreFilter plugin that `to_add` now runs on `node`.
    pub fn run_pre_filter_extension_add_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        to_add: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Status {
        for pl in &self.pre_filter {
            if state.skip_filter_plugins.contains(pl.name()) {
                continue;
            }
            if let Some(ext) = pl.pre_filter_extensions() {
                let s = ext.add_pod(state, pod, to_add, node, snapshot);
                if !s.is_success() {
                    return Status::error(format!(
                        "running AddPod on PreFilter plugin {:?}: {}",
                        pl.name(),
                        s.message()
                    ));
                }
            }
        }
        Status::success()
    }

    /// Tells every (non-skipped) PreFilter plugin that `to_remove` left `node`.
    pub fn run_pre_filter_extension_remove_pod(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        to_remove: &PodInfo,
        node: &NodeInfo,
        snapshot: &Snapshot,
    ) -> Status {
        for pl in &self.pre_filter {
            if state.skip_filter_plugins.contains(pl.name()) {
                continue;
            }
            if let Some(ext) = pl.pre_filter_extensions() {
                let s = ext.remove_pod(state, pod, to_remove, node, snapshot);
                if !s.is_success() {
                    return Status::error(format!(
                        "running RemovePod on PreFilter plugin {:?}: {}",
                        pl.name(),
                        s.message()
                    ));
                }
            }
        }
        Status::success()
    }

    /// PostFilter: the first plugin that succeeds wins; otherwise the last rejection.
    pub fn run_post_filter_plugins(
        &self,
        ctx: &PostFilterContext<'_>,
        state: &CycleState,
        pod: &PodInfo,
        statuses: &NodeToStatus,
    ) -> (Option<PostFilterResult>, Status) {
        let mut result = None;
        let mut reasons = Vec::new();
        for pl in &self.post_filter {
            let (r, s) = pl.post_filter(ctx, state, pod, statuses);
            if s.is_success() {
                return (r, s.with_plugin(pl.name()));
            }
            if !s.is_rejected() {
                return (None, Status::error(s.message()).with_plugin(pl.name()));
            }
            reasons.extend(s.reasons().iter().cloned());
            if r.is_some() {
                result = r;
            }
        }
        (result, Status::with_reasons(Code::Unschedulable, reasons))
    }

    pub fn run_pre_score_plugins(
        &self,
        state: &mut CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
        snapshot: &Snapshot,
    ) -> Status {
        for pl in &self.pre_score {
            let s = pl.pre_score(state, pod, nodes, snapshot);
            if s.is_skip() {
                state.skip_score_plugins.insert(pl.name());
            } else if !s.is_success() {
                return Status::error(format!(
                    "running PreScore plugin {:?}: {}",
                    pl.name(),
                    s.message()
                ))
                .with_plugin(pl.name());
            }
        }
        Status::success()
    }

    /// Score, NormalizeScore and weighting: the total score of each of `nodes`.
    pub fn run_score_plugins(
        &self,
        state: &CycleState,
        pod: &PodInfo,
        nodes: &[&NodeInfo],
    ) -> Result<Vec<i64>, Status> {
        let mut totals = vec![0i64; nodes.len()];
        let mut scores = vec![0i64; nodes.len()];
        for (pl, weight) in &self.score {
            if state.skip_score_plugins.contains(pl.name()) {
                continue;
            }
            for (slot, node) in scores.iter_mut().zip(nodes) {
                *slot = pl.score(state, pod, node);
            }
            if let Some(ext) = pl.score_extensions() {
                let s = ext.normalize_score(state, pod, nodes, &mut scores);
                if !s.is_success() {
                    return Err(Status::error(format!(
                        "running NormalizeScore of {:?}: {}",
                        pl.name(),
                        s.message()
                    )));
                }
            }
            for (t, s) in totals.iter_mut().zip(&scores) {
                *t += s * weight;
            }
        }
        Ok(totals)
    }

    /// Reserve on every plugin; on failure the ones already reserved are unreserved.
    pub fn run_reserve_plugins(&self, state: &mut CycleState, pod: &PodInfo, node: &str) -> Status {
        for (i, pl) in self.reserve.iter().enumerate() {
            let s = pl.reserve(state, pod, node);
            if !s.is_success() {
                for done in self.reserve[..i].iter().rev() {
                    done.unreserve(state, pod, node);
                }
                return Status::error(format!(
                    "running Reserve plugin {:?}: {}",
                    pl.name(),
                    s.message()
                ))
                .with_plugin(pl.name());
            }
        }
        Status::success()
    }

    pub fn run_unreserve_plugins(&self, state: &mut CycleState, pod: &PodInfo, node: &str) {
        for pl in self.reserve.iter().rev() {
            pl.unreserve(state, pod, node);
        }
    }

    /// PreBind: every plugin in order; the first failure stops the binding.
    pub async fn run_pre_bind_plugins(
        &self,
        client: &kube::Client,
        pod: &PodInfo,
        node: &str,
    ) -> Status {
        for pl in &self.pre_bind {
            let s = pl.pre_bind(client, pod, node).await;
            if !s.is_success() && !s.is_skip() {
                return s.with_plugin(pl.name());
            }
        }
        Status::success()
    }

    /// Bind: the first binder that does not Skip decides.
    pub async fn run_bind_plugins(
        &self,
        client: &kube::Client,
        pod: &PodInfo,
        node: &str,
    ) -> Result<Status, kube::Error> {
        for pl in &self.bind {
            let s = pl.bind(client, pod, node).await?;
            if !s.is_skip() {
                return Ok(s.with_plugin(pl.name()));
            }
        }
        Ok(Status::error("no bind plugin bound the pod"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::Plugin;

    struct Reject(&'static str, Code);
    impl Plugin for Reject {
        fn name(&self) -> &'static str {
            self.0
        }
    }
    impl FilterPlugin for Reject {
        fn filter(&self, _: &CycleState, _: &PodInfo, _: &NodeInfo) -> Status {
            Status::new(self.1, self.0)
        }
    }
    impl PreFilterPlugin for Reject {
        fn pre_filter(
            &self,
            _: &mut CycleState,
            _: &PodInfo,
            _: &Snapshot,
        ) -> (Option<PreFilterResult>, Status) {
            (
                None,
                if self.1 == Code::Success {
                    Status::skip()
                } else {
                    Status::new(self.1, self.0)
                },
            )
        }
    }

    fn pod() -> PodInfo {
        PodInfo::from_pod(Default::default())
    }

    #[test]
    fn filters_stop_at_the_first_rejection_and_skip_what_prefilter_skipped() {
        let mut fw = Framework::new();
        let skipped = Arc::new(Reject("Skipped", Code::Success));
        fw.add_pre_filter(skipped.clone());
        fw.add_filter(skipped);
        fw.add_filter(Arc::new(Reject("First", Code::Unschedulable)));
        fw.add_filter(Arc::new(Reject(
            "Second",
            Code::UnschedulableAndUnresolvable,
        )));
        let mut state = CycleState::new();
        let (_, s) = fw.run_pre_filter_plugins(&mut state, &pod(), &Snapshot::new());
        assert!(s.is_success());
        let runner = fw.filter_runner(&state);
        let s = runner.run(&state, &pod(), &NodeInfo::named("n"));
        assert_eq!(s.plugin(), "First");
        assert_eq!(s.code(), Code::Unschedulable);
    }

    #[test]
    fn unresolvable_prefilter_stops_but_unschedulable_continues() {
        let mut fw = Framework::new();
        fw.add_pre_filter(Arc::new(Reject("A", Code::Unschedulable)));
        fw.add_pre_filter(Arc::new(Reject("B", Code::UnschedulableAndUnresolvable)));
        let (_, s) = fw.run_pre_filter_plugins(&mut CycleState::new(), &pod(), &Snapshot::new());
        assert_eq!(s.plugin(), "B");
        let mut fw = Framework::new();
        fw.add_pre_filter(Arc::new(Reject("A", Code::Unschedulable)));
        let (_, s) = fw.run_pre_filter_plugins(&mut CycleState::new(), &pod(), &Snapshot::new());
        assert_eq!((s.plugin(), s.code()), ("A", Code::Unschedulable));
    }
}
