//! RollingUpdate (upstream `rolling.go`): each sync either grows the new ReplicaSet
//! as far as `replicas + maxSurge` allows, or shrinks old ones as far as
//! `replicas - maxUnavailable` available pods allow — never both in one sync, so every
//! decision sees the effect of the previous one.

use kube::runtime::controller::Action;

use super::util::*;
use super::{Error, Syncer};

impl Syncer<'_> {
    pub(super) async fn rollout_rolling(mut self) -> Result<Action, Error> {
        let (new, old) = self.get_all_and_sync_revision(true).await?;
        let Some(new) = new else {
            // create=true always yields a new ReplicaSet or an error.
            return Ok(Action::await_change());
        };
        if self.reconcile_new_replica_set(new).await? {
            return self.sync_rollout_status(Some(new)).await;
        }
        let active_old: Vec<usize> = old
            .iter()
            .copied()
            .filter(|i| rs_replicas(&self.rss[*i]) > 0)
            .collect();
        if self.reconcile_old_replica_sets(&active_old, new).await? {
            return self.sync_rollout_status(Some(new)).await;
        }
        if deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_rollout_status(Some(new)).await
    }

    async fn reconcile_new_replica_set(&mut self, new: usize) -> Result<bool, Error> {
        let want = replicas(&self.d);
        let current = rs_replicas(&self.rss[new]);
        if current == want {
            return Ok(false);
        }
        if current > want {
            return self.scale_and_record(new, want).await;
        }
        let all: Vec<&_> = self.rss.iter().collect();
        let count = new_rs_new_replicas(&self.d, &all, &self.rss[new]);
        self.scale_and_record(new, count).await
    }

    async fn reconcile_old_replica_sets(
        &mut self,
        old: &[usize],
        new: usize,
    ) -> Result<bool, Error> {
        let old_pods: i32 = old.iter().map(|i| rs_replicas(&self.rss[*i])).sum();
        if old_pods == 0 {
            return Ok(false);
        }
        let all_pods: i32 = self.rss.iter().map(rs_replicas).sum();
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        let new_unavailable = rs_replicas(&self.rss[new]) - rs_available(&self.rss[new]);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy old replicas go first: removing them costs no availability.
        let cleaned = self
            .cleanup_unhealthy_replicas(old, max_scaled_down)
            .await?;
        // Available counts come from ReplicaSet statuses, which may still show pods a
        // previous step already removed; the spec-based budget caps that (upstream does not).
        let scaled = self
            .scale_down_old_for_rolling(old, max_scaled_down - cleaned)
            .await?;
        Ok(cleaned + scaled > 0)
    }

    async fn cleanup_unhealthy_replicas(
        &mut self,
        old: &[usize],
        max_cleanup: i32,
    ) -> Result<i32, Error> {
        let mut sorted = old.to_vec();
        sorted.sort_by(|a, b| by_creation(&self.rss[*a], &self.rss[*b]));
        let mut total = 0;
        for i in sorted {
            if total >= max_cleanup {
                break;
            }
            let (spec, available) = (rs_replicas(&self.rss[i]), rs_available(&self.rss[i]));
            if spec == 0 || spec <= available {
                continue;
            }
            let down = (max_cleanup - total).min(spec - available);
            self.scale_and_record(i, spec - down).await?;
            total += down;
        }
        Ok(total)
    }

    async fn scale_down_old_for_rolling(
        &mut self,
        old: &[usize],
        budget: i32,
    ) -> Result<i32, Error> {
        let available: i32 = self.rss.iter().map(rs_available).sum();
        let min_available = replicas(&self.d) - max_unavailable(&self.d);
        if available <= min_available || budget <= 0 {
            return Ok(0);
        }
        let total_down = (available - min_available).min(budget);
        let mut sorted = old.to_vec();
        sorted.sort_by(|a, b| by_creation(&self.rss[*a], &self.rss[*b]));
        let mut total = 0;
        for i in sorted {
            if total >= total_down {
                break;
            }
            let spec = rs_replicas(&self.rss[i]);
            if spec == 0 {
                continue;
            }
            let down = spec.min(total_down - total);
            self.scale_and_record(i, spec - down).await?;
            total += down;
        }
        Ok(total)
    }
}
