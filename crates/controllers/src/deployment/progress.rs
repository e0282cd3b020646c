//! Deployment status and conditions (upstream `progress.go` and `sync.go`'s
//! `calculateStatus`): replica counts summed over the ReplicaSets, `Available` from
//! the minimum availability, `Progressing` from progress against
//! `progressDeadlineSeconds`, and `ReplicaFailure` copied from the ReplicaSets.

use std::time::Duration;

use k8s_openapi::api::apps::v1::{DeploymentCondition, DeploymentStatus};
use k8s_openapi::jiff::Timestamp;
use kube::runtime::controller::Action;

use super::util::*;
use super::{Error, Syncer};

/// Upstream leaves zero counts out of the JSON (`omitempty`).
fn nz(v: i32) -> Option<i32> {
    (v != 0).then_some(v)
}

impl Syncer<'_> {
    pub(super) fn calculate_status(&self, new: Option<usize>, now: Timestamp) -> DeploymentStatus {
        let available: i32 = self.rss.iter().map(rs_available).sum();
        let total: i32 = self.rss.iter().map(rs_replicas).sum();
        let old = self.d.status.clone().unwrap_or_default();
        let mut status = DeploymentStatus {
            observed_generation: self.d.metadata.generation,
            replicas: nz(self.rss.iter().map(rs_status_replicas).sum()),
            updated_replicas: nz(new.map(|i| rs_status_replicas(&self.rss[i])).unwrap_or(0)),
            ready_replicas: nz(self.rss.iter().map(rs_ready).sum()),
            available_replicas: nz(available),
            unavailable_replicas: nz((total - available).max(0)),
            collision_count: old.collision_count,
            conditions: old.conditions.clone(),
            terminating_replicas: None,
        };
        let c = if available >= replicas(&self.d) - max_unavailable(&self.d) {
            new_condition(
                AVAILABLE,
                "True",
                MIN_AVAILABLE_REASON,
                "Deployment has minimum availability.".into(),
                now,
            )
        } else {
            new_condition(
                AVAILABLE,
                "False",
                MIN_UNAVAILABLE_REASON,
                "Deployment does not have minimum availability.".into(),
                now,
            )
        };
        set_condition(&mut status, c);
        status
    }

    /// Writes the status if it changed (upstream `syncDeploymentStatus`).
    pub(super) async fn sync_deployment_status(&mut self, new: Option<usize>) -> Result<(), Error> {
        let status = self.calculate_status(new, Timestamp::now());
        if Some(&status) != self.d.status.as_ref() {
            self.update_status(status).await?;
        }
        Ok(())
    }

    /// Status plus the Progressing condition (upstream `syncRolloutStatus`). Returns
    /// when to look again for a progress deadline.
    pub(super) async fn sync_rollout_status(mut self, new: Option<usize>) -> Result<Action, Error> {
        let now = Timestamp::now();
        let mut status = self.calculate_status(new, now);
        let deadline = progress_deadline(&self.d);
        if deadline.is_none() {
            remove_condition(&mut status, PROGRESSING);
        }
        let old = self.d.status.clone().unwrap_or_default();
        let current = condition(&old, PROGRESSING).cloned();
        let complete_before = status.replicas == status.updated_replicas
            && current
                .as_ref()
                .is_some_and(|c| c.reason.as_deref() == Some(NEW_RS_AVAILABLE_REASON));
        let subject = match new {
            Some(i) => format!(
                "ReplicaSet {:?}",
                self.rss[i].metadata.name.clone().unwrap_or_default()
            ),
            None => format!("Deployment {:?}", self.name()),
        };
        if deadline.is_some() && !complete_before {
            if deployment_complete(&self.d, &status) {
                let msg = format!("{subject} has successfully progressed.");
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE_REASON, msg, now),
                );
            } else if deployment_progressing(&self.d, &status) {
                // Progress refreshes lastUpdateTime even with the same reason, which the
                // generic setter would skip.
                let mut c = new_condition(
                    PROGRESSING,
                    "True",
                    RS_UPDATED_REASON,
                    format!("{subject} is progressing."),
                    now,
                );
                if let Some(cur) = &current {
                    if cur.status == "True" {
                        c.last_transition_time = cur.last_transition_time.clone();
                    }
                    remove_condition(&mut status, PROGRESSING);
                }
                set_condition(&mut status, c);
            } else if deployment_timed_out(&self.d, &status, now) {
                let msg = format!("{subject} has timed out progressing.");
                set_condition(
                    &mut status,
                    new_condition(PROGRESSING, "False", TIMED_OUT_REASON, msg, now),
                );
            }
        }
        match self.replica_failure(new) {
            Some(c) => set_condition(&mut status, c),
            None => remove_condition(&mut status, REPLICA_FAILURE),
        }
        let action = self.requeue_stuck(&status, now);
        if Some(&status) != self.d.status.as_ref() {
            self.update_status(status).await?;
        }
        Ok(action)
    }

    /// The new ReplicaSet's ReplicaFailure condition, else any old one's.
    fn replica_failure(&self, new: Option<usize>) -> Option<DeploymentCondition> {
        let from = |i: usize| {
            self.rss[i]
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .and_then(|cs| {
                    cs.iter()
                        .find(|c| c.type_ == REPLICA_FAILURE)
                        .map(|c| DeploymentCondition {
                            type_: c.type_.clone(),
                            status: c.status.clone(),
                            reason: c.reason.clone(),
                            message: c.message.clone(),
                            last_transition_time: c.last_transition_time.clone(),
                            last_update_time: c.last_transition_time.clone(),
                        })
                })
        };
        new.and_then(from)
            .or_else(|| (0..self.rss.len()).find_map(from))
    }

    /// Upstream `requeueStuckDeployment`: a rollout making no progress must be looked
    /// at again when its deadline passes, even if nothing else happens.
    fn requeue_stuck(&self, new_status: &DeploymentStatus, now: Timestamp) -> Action {
        let Some(deadline) = progress_deadline(&self.d) else {
            return Action::await_change();
        };
        let old = self.d.status.clone().unwrap_or_default();
        let Some(current) = condition(&old, PROGRESSING) else {
            return Action::await_change();
        };
        if deployment_complete(&self.d, new_status)
            || current.reason.as_deref() == Some(TIMED_OUT_REASON)
        {
            return Action::await_change();
        }
        let Some(updated) = &current.last_update_time else {
            return Action::await_change();
        };
        let due = updated.0 + Duration::from_secs(u64::try_from(deadline).unwrap_or(0));
        if due <= now {
            return Action::requeue(Duration::from_millis(500));
        }
        let after = Duration::try_from(due.duration_since(now)).unwrap_or(Duration::ZERO);
        if after < Duration::from_secs(1) {
            return Action::requeue(Duration::from_millis(500));
        }
        // A second more, so the deadline has surely passed when the sync runs.
        Action::requeue(after + Duration::from_secs(1))
    }
}
