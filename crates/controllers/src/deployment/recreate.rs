//! Recreate (upstream `recreate.go`): scale every old ReplicaSet to zero, wait until
//! none of their pods is left running, then create and scale up the new one — the two
//! templates never run side by side.

use k8s_openapi::api::core::v1::Pod;
use kube::runtime::controller::Action;

use super::util::*;
use super::{Error, Syncer};

impl Syncer<'_> {
    pub(super) async fn rollout_recreate(mut self) -> Result<Action, Error> {
        // No new ReplicaSet yet: creating it now would scale up before scaling down.
        let (new, old) = self.get_all_and_sync_revision(false).await?;
        let mut scaled_down = false;
        for &i in &old {
            if rs_replicas(&self.rss[i]) > 0 && self.scale_and_record(i, 0).await? {
                scaled_down = true;
            }
        }
        if scaled_down || self.old_pods_running(new, &old) {
            return self.sync_rollout_status(new).await;
        }
        let (new, old) = match new {
            Some(n) => (n, old),
            None => match self.get_all_and_sync_revision(true).await? {
                (Some(n), old) => (n, old),
                (None, _) => return Ok(Action::await_change()),
            },
        };
        self.scale_and_record(new, replicas(&self.d)).await?;
        if deployment_complete(&self.d, &self.d.status.clone().unwrap_or_default()) {
            self.cleanup_deployment(&old).await?;
        }
        self.sync_rollout_status(Some(new)).await
    }

    /// Whether any pod of an old ReplicaSet may still run (upstream `oldPodsRunning`).
    fn old_pods_running(&self, new: Option<usize>, old: &[usize]) -> bool {
        if old
            .iter()
            .map(|i| rs_status_replicas(&self.rss[*i]))
            .sum::<i32>()
            > 0
        {
            return true;
        }
        let new_uid = new.and_then(|i| self.rss[i].metadata.uid.clone());
        self.rss
            .iter()
            .filter(|rs| rs.metadata.uid != new_uid)
            .any(|rs| {
                let uid = rs.metadata.uid.as_deref().unwrap_or("");
                self.ctx
                    .pods
                    .controlled_by(uid)
                    .iter()
                    .any(|p| !is_terminal(p))
            })
    }
}

fn is_terminal(p: &Pod) -> bool {
    matches!(
        p.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Succeeded" | "Failed")
    )
}
