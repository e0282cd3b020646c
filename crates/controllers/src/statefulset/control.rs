//! The StatefulSet update loop (upstream `stateful_set_control.go`).
//!
//! Pods split into `replicas` (ordinals in `[start, start+replicas)`, one slot each,
//! empty slots filled with planned pods at the right revision) and `condemned` (valid
//! ordinals outside the range, highest first). Then:
//!
//! 1. each replica in ordinal order: delete it if it finished (the next sync recreates
//!    it), create it if planned, create missing claims of a pending pod; with
//!    `OrderedReady`, stop at the first pod that was just created, is terminating, or is
//!    not Running+Ready (and available for `minReadySeconds`); fix identity/storage.
//! 2. condemned pods, highest ordinal first, one at a time with `OrderedReady` (and only
//!    once every replica is healthy), all at once with `Parallel`.
//! 3. `RollingUpdate` only: from the highest ordinal down to the partition, delete the
//!    first pod not at the update revision, or stop at the first unhealthy one. Step 1
//!    of a later sync recreates it from the update revision.
//!
//! Status counts what the pods are; when every replica is updated and ready, the update
//! revision becomes the current one.

use k8s_openapi::api::apps::v1::{ControllerRevision, StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

use super::utils::{self, ordinal, pod_revision};
use super::{Ctx, Error};
use crate::controller_utils::{is_not_found, slow_start_batch};
use crate::history;

/// Pod counts of a status (upstream `replicaStatus`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i32,
    pub ready: i32,
    pub available: i32,
    pub current: i32,
    pub updated: i32,
}

/// Upstream `computeReplicaStatus` over several lists.
pub fn count_pods<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    min_ready_seconds: i32,
    current_revision: &str,
    update_revision: &str,
    now: Timestamp,
) -> Counts {
    let mut c = Counts::default();
    for pod in pods {
        if utils::is_created(pod) {
            c.replicas += 1;
        }
        if utils::is_running_and_ready(pod) {
            c.ready += 1;
            if utils::is_running_and_available(pod, min_ready_seconds, now) {
                c.available += 1;
            }
        }
        if utils::is_created(pod) && !utils::is_terminating(pod) {
            let rev = pod_revision(pod);
            if rev == current_revision {
                c.current += 1;
            }
            if rev == update_revision {
                c.updated += 1;
            }
        }
    }
    c
}

/// The status a set should carry (zero counts left out, as upstream's `omitempty`).
pub fn status_for(
    set: &StatefulSet,
    counts: Counts,
    current_revision: &str,
    update_revision: &str,
    collision_count: i32,
) -> StatefulSetStatus {
    let nz = |n: i32| (n != 0).then_some(n);
    let mut status = StatefulSetStatus {
        observed_generation: set.metadata.generation,
        replicas: counts.replicas,
        ready_replicas: nz(counts.ready),
        available_replicas: Some(counts.available),
        current_replicas: nz(counts.current),
        updated_replicas: nz(counts.updated),
        current_revision: Some(current_revision.to_string()),
        update_revision: Some(update_revision.to_string()),
        collision_count: Some(collision_count),
        conditions: set.status.as_ref().and_then(|s| s.conditions.clone()),
    };
    complete_rolling_update(set, &mut status);
    status
}

/// Upstream `completeRollingUpdate`: every replica updated and ready ends the rollout.
pub fn complete_rolling_update(set: &StatefulSet, status: &mut StatefulSetStatus) {
    let want = utils::replicas(set);
    if utils::update_strategy_type(set) == "RollingUpdate"
        && status.updated_replicas.unwrap_or(0) == want
        && status.ready_replicas.unwrap_or(0) == want
        && status.replicas == want
    {
        status.current_replicas = status.updated_replicas;
        status.current_revision = status.update_revision.clone();
    }
}

impl Ctx {
    /// Upstream `getStatefulSetRevisions`: the revision of the set's template (found,
    /// rolled back to by renumbering, or created) and the revision its status names as
    /// current (the update revision when there is none).
    async fn revisions_of(
        &self,
        set: &StatefulSet,
        revisions: &[ControllerRevision],
    ) -> Result<(ControllerRevision, ControllerRevision, i32), Error> {
        let mut collision_count = set
            .status
            .as_ref()
            .and_then(|s| s.collision_count)
            .unwrap_or(0);
        let template = set
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
        let mut wanted = history::new_revision(
            &set.metadata,
            "StatefulSet",
            labels.as_ref(),
            history::template_patch(&template),
            history::next_revision(revisions),
            Some(collision_count),
        );
        if let Some(a) = set.metadata.annotations.clone() {
            wanted.metadata.annotations = Some(a);
        }
        let equal = history::find_equal_revisions(revisions, &wanted);
        let update = match (equal.last(), revisions.last()) {
            (Some(eq), Some(latest)) if history::equal_revision(latest, eq) => latest.clone(),
            (Some(eq), _) => {
                history::set_revision_number(&self.client, eq, wanted.revision).await?
            }
            (None, _) => {
                history::create_revision(&self.client, &set.metadata, &wanted, &mut collision_count)
                    .await?
            }
        };
        let current_name = set
            .status
            .as_ref()
            .and_then(|s| s.current_revision.as_deref());
        let current = revisions
            .iter()
            .find(|r| {
                r.metadata
                    .name
                    .as_deref()
                    .is_some_and(|n| Some(n) == current_name)
            })
            .cloned()
            .unwrap_or_else(|| update.clone());
        Ok((current, update, collision_count))
    }

    /// One pass of the update loop; writes status and trims history whatever happens.
    /// Returns the status written, if it got that far.
    pub(super) async fn update_stateful_set(
        &self,
        set: &StatefulSet,
        key: &str,
        mut revisions: Vec<ControllerRevision>,
        pods: &[Pod],
    ) -> Result<Option<StatefulSetStatus>, Error> {
        history::sort_revisions(&mut revisions);
        let (current, update, collision_count) = match self.revisions_of(set, &revisions).await {
            Ok(r) => r,
            Err(e) => {
                let _ = self
                    .truncate_history(set, pods, &revisions, None, None)
                    .await;
                return Err(e);
            }
        };
        let cur_name = current.metadata.name.clone().unwrap_or_default();
        let upd_name = update.metadata.name.clone().unwrap_or_default();
        let (result, lists) = self.update_pods(set, key, &current, &update, pods).await;
        let counts = count_pods(
            lists.iter().flatten(),
            utils::min_ready_seconds(set),
            &cur_name,
            &upd_name,
            Timestamp::now(),
        );
        let status = status_for(set, counts, &cur_name, &upd_name, collision_count);
        let status_result = self.write_status(set, &status).await;
        let history_result = self
            .truncate_history(set, pods, &revisions, Some(&current), Some(&update))
            .await;
        result?;
        status_result?;
        history_result?;
        tracing::debug!(
            replicas = status.replicas,
            ready = status.ready_replicas.unwrap_or(0),
            current = status.current_replicas.unwrap_or(0),
            updated = status.updated_replicas.unwrap_or(0),
            current_revision = %cur_name,
            update_revision = %upd_name,
            "statefulset synced"
        );
        Ok(Some(status))
    }

    /// Steps 1–3 of the module comment. Returns the outcome and the pods as they now
    /// are meant to be (replicas, then condemned), for the status.
    async fn update_pods(
        &self,
        set: &StatefulSet,
        key: &str,
        current: &ControllerRevision,
        update: &ControllerRevision,
        pods: &[Pod],
    ) -> (Result<(), Error>, [Vec<Pod>; 2]) {
        let current_set = utils::apply_revision(set, current);
        let update_set = utils::apply_revision(set, update);
        let cur_name = current.metadata.name.as_deref().unwrap_or("");
        let upd_name = update.metadata.name.as_deref().unwrap_or("");
        let start = utils::start_ordinal(set);
        let count = usize::try_from(utils::replicas(set)).unwrap_or(0);
        let mut slots: Vec<Option<Pod>> = vec![None; count];
        let mut condemned: Vec<Pod> = Vec::new();
        for pod in pods {
            let o = ordinal(pod);
            if utils::in_ordinal_range(pod, set) {
                if let Some(slot) = usize::try_from(o - start)
                    .ok()
                    .and_then(|i| slots.get_mut(i))
                {
                    *slot = Some(pod.clone());
                }
            } else if o >= 0 {
                condemned.push(pod.clone());
            }
        }
        let replicas: Vec<Pod> = slots
            .into_iter()
            .enumerate()
            .map(|(i, slot)| {
                slot.unwrap_or_else(|| {
                    let o = start + i32::try_from(i).unwrap_or(i32::MAX);
                    utils::new_versioned_pod(&current_set, &update_set, cur_name, upd_name, o)
                })
            })
            .collect();
        condemned.sort_by_key(|p| std::cmp::Reverse(ordinal(p)));
        let first_unhealthy = replicas
            .iter()
            .chain(condemned.iter().rev())
            .find(|p| !utils::is_healthy(p))
            .and_then(|p| p.metadata.name.clone());

        if set.metadata.deletion_timestamp.is_some() {
            return (Ok(()), [replicas, condemned]);
        }
        let monotonic = !utils::allows_burst(set);
        let result = self
            .run_steps(
                set,
                key,
                &update_set,
                monotonic,
                &replicas,
                &condemned,
                first_unhealthy.as_deref(),
                upd_name,
            )
            .await;
        (result, [replicas, condemned])
    }

    #[allow(clippy::too_many_arguments)]
    async fn run_steps(
        &self,
        set: &StatefulSet,
        key: &str,
        update_set: &StatefulSet,
        monotonic: bool,
        replicas: &[Pod],
        condemned: &[Pod],
        first_unhealthy: Option<&str>,
        update_revision: &str,
    ) -> Result<(), Error> {
        let now = Timestamp::now();
        if self
            .run_for_all(replicas.len(), monotonic, |i| {
                self.process_replica(set, key, update_set, monotonic, &replicas[i], now)
            })
            .await?
        {
            return Ok(());
        }
        if self
            .run_for_all(condemned.len(), monotonic, |i| {
                self.process_condemned(set, key, first_unhealthy, monotonic, &condemned[i], now)
            })
            .await?
        {
            return Ok(());
        }
        if utils::update_strategy_type(set) == "OnDelete" {
            return Ok(());
        }
        let update_min = usize::try_from(utils::partition(set).unwrap_or(0).max(0)).unwrap_or(0);
        for target in (update_min..replicas.len()).rev() {
            let pod = &replicas[target];
            if pod_revision(pod) != update_revision && !utils::is_terminating(pod) {
                tracing::debug!(pod = ?pod.metadata.name, "terminating pod for update");
                return self.delete_pod(set, key, pod).await;
            }
            if !utils::is_healthy(pod) {
                tracing::debug!(pod = ?pod.metadata.name, "waiting for pod to update");
                return Ok(());
            }
        }
        Ok(())
    }

    /// Upstream `runForAll`: in order, stopping at the first step that says so, when
    /// monotonic; otherwise every step, in slow-start batches. True when it stopped.
    async fn run_for_all<'a, F, Fut>(
        &'a self,
        n: usize,
        monotonic: bool,
        step: F,
    ) -> Result<bool, Error>
    where
        F: Fn(usize) -> Fut,
        Fut: std::future::Future<Output = Result<bool, Error>> + 'a,
    {
        if monotonic {
            for i in 0..n {
                if step(i).await? {
                    return Ok(true);
                }
            }
            return Ok(false);
        }
        let (_, err) = slow_start_batch(n, 1, |i| {
            let fut = step(i);
            async move { fut.await.map(|_| ()) }
        })
        .await;
        match err {
            Some(e) => Err(e),
            None => Ok(false),
        }
    }

    /// Upstream `processReplica`; true when the loop must stop here.
    async fn process_replica(
        &self,
        set: &StatefulSet,
        key: &str,
        update_set: &StatefulSet,
        monotonic: bool,
        pod: &Pod,
        now: Timestamp,
    ) -> Result<bool, Error> {
        if utils::is_failed(pod) || utils::is_succeeded(pod) {
            // Finished pods are replaced, whatever their exit code; the next sync
            // creates the new one once this one is gone.
            if !utils::is_terminating(pod) {
                self.delete_pod(set, key, pod).await?;
            }
            return Ok(true);
        }
        if !utils::is_created(pod) {
            self.create_pod(set, key, pod).await?;
            if monotonic {
                return Ok(true);
            }
            // Parallel: nothing more to check on a pod that was only just asked for.
            return Ok(false);
        }
        if utils::is_pending(pod) {
            self.create_missing_claims(set, pod).await?;
        }
        if monotonic
            && (utils::is_terminating(pod)
                || !utils::is_running_and_ready(pod)
                || !utils::is_running_and_available(pod, utils::min_ready_seconds(set), now))
        {
            tracing::debug!(pod = ?pod.metadata.name, "waiting for pod to be running, ready and available");
            return Ok(true);
        }
        let retention_ok = self.claims_match_retention(update_set, pod);
        if utils::identity_matches(set, pod) && utils::storage_matches(set, pod) && retention_ok {
            return Ok(false);
        }
        self.update_pod(update_set, pod).await?;
        Ok(false)
    }

    /// Upstream `processCondemned`; true when the loop must stop here.
    async fn process_condemned(
        &self,
        set: &StatefulSet,
        key: &str,
        first_unhealthy: Option<&str>,
        monotonic: bool,
        pod: &Pod,
        now: Timestamp,
    ) -> Result<bool, Error> {
        if utils::is_terminating(pod) {
            return Ok(monotonic);
        }
        let is_first_unhealthy = pod.metadata.name.as_deref() == first_unhealthy;
        if monotonic
            && !is_first_unhealthy
            && (!utils::is_running_and_ready(pod)
                || !utils::is_running_and_available(pod, utils::min_ready_seconds(set), now))
        {
            tracing::debug!(pod = ?first_unhealthy, "waiting for pod before scaling down");
            return Ok(true);
        }
        // Scaled-away claims may now belong to the pod (whenScaled: Delete).
        if !self.claims_match_retention(set, pod) {
            self.update_claims_for_retention(set, pod).await?;
        }
        tracing::debug!(pod = ?pod.metadata.name, "terminating pod for scale down");
        self.delete_pod(set, key, pod).await?;
        Ok(true)
    }

    /// Writes status unless it is already what the set shows, retrying once against a
    /// fresh read on conflict.
    async fn write_status(
        &self,
        set: &StatefulSet,
        status: &StatefulSetStatus,
    ) -> Result<(), Error> {
        if set.status.as_ref() == Some(status) {
            return Ok(());
        }
        let api: Api<StatefulSet> = Api::namespaced(self.client.clone(), utils::set_namespace(set));
        let name = utils::set_name(set);
        let mut target = StatefulSet {
            status: Some(status.clone()),
            ..set.clone()
        };
        for attempt in 0..2 {
            match api
                .replace_status(name, &PostParams::default(), &target)
                .await
            {
                Ok(_) => return Ok(()),
                Err(e) if attempt == 0 && !is_not_found(&e) => {
                    let fresh = api.get(name).await?;
                    target = StatefulSet {
                        status: Some(status.clone()),
                        ..fresh
                    };
                }
                Err(e) if is_not_found(&e) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Upstream `truncateHistory`: revisions no pod uses and that are neither current
    /// nor update are deleted, oldest first, down to `revisionHistoryLimit`.
    async fn truncate_history(
        &self,
        set: &StatefulSet,
        pods: &[Pod],
        sorted: &[ControllerRevision],
        current: Option<&ControllerRevision>,
        update: Option<&ControllerRevision>,
    ) -> Result<(), Error> {
        let mut live: Vec<&str> = pods.iter().map(pod_revision).collect();
        live.extend(current.and_then(|r| r.metadata.name.as_deref()));
        live.extend(update.and_then(|r| r.metadata.name.as_deref()));
        let old: Vec<&ControllerRevision> = sorted
            .iter()
            .filter(|r| !live.contains(&r.metadata.name.as_deref().unwrap_or("")))
            .collect();
        let limit = set
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let excess = old
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        let api: Api<ControllerRevision> =
            Api::namespaced(self.client.clone(), utils::set_namespace(set));
        for r in old.into_iter().take(excess) {
            match api
                .delete(
                    r.metadata.name.as_deref().unwrap_or(""),
                    &Default::default(),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::StatefulSetSpec;
    use k8s_openapi::api::core::v1::{PodCondition, PodStatus};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn pod(name: &str, rev: &str, phase: &str, ready: bool) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: Some([(utils::REVISION_LABEL.to_string(), rev.to_string())].into()),
                ..Default::default()
            },
            spec: None,
            status: Some(PodStatus {
                phase: (!phase.is_empty()).then(|| phase.to_string()),
                conditions: Some(vec![PodCondition {
                    type_: "Ready".into(),
                    status: if ready { "True" } else { "False" }.into(),
                    last_transition_time: Some(Time(Timestamp::UNIX_EPOCH)),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn counts_and_rollout_completion() {
        let pods = [
            pod("web-0", "r1", "Running", true),
            pod("web-1", "r2", "Running", true),
            pod("web-2", "r2", "Pending", false),
            pod("web-3", "r2", "", false),
        ];
        let c = count_pods(pods.iter(), 0, "r1", "r2", Timestamp::now());
        assert_eq!(
            c,
            Counts {
                replicas: 3,
                ready: 2,
                available: 2,
                current: 1,
                updated: 2
            }
        );
        let set = StatefulSet {
            metadata: ObjectMeta {
                generation: Some(4),
                ..Default::default()
            },
            spec: Some(StatefulSetSpec {
                replicas: Some(2),
                ..Default::default()
            }),
            status: None,
        };
        let all_new = Counts {
            replicas: 2,
            ready: 2,
            available: 2,
            current: 0,
            updated: 2,
        };
        let s = status_for(&set, all_new, "r1", "r2", 0);
        assert_eq!(s.current_revision.as_deref(), Some("r2"));
        assert_eq!(s.current_replicas, Some(2));
        assert_eq!(s.observed_generation, Some(4));
        let half = Counts {
            updated: 1,
            current: 1,
            ..all_new
        };
        let s = status_for(&set, half, "r1", "r2", 0);
        assert_eq!(s.current_revision.as_deref(), Some("r1"));
    }
}
