//! DaemonSet history and rolling updates (upstream `pkg/controller/daemon/update.go`).
//!
//! History: every template the DaemonSet has had is a ControllerRevision
//! `<ds>-<hash>` (the hash as for Deployments' `pod-template-hash`), labelled
//! `controller-revision-hash=<hash>`; the one whose data matches the current template
//! is current and gets the highest revision number; pods carry the hash of the
//! revision they were made from. Old revisions no pod uses are trimmed to
//! `revisionHistoryLimit`.
//!
//! Rolling update, one step per sync (the main loop then creates what is missing):
//! * `maxSurge = 0`: delete old pods so that no more than `maxUnavailable` nodes are
//!   without an available pod; old pods that are not available anyway go first.
//! * `maxSurge > 0`: start a new pod next to an available old one on up to `maxSurge`
//!   nodes (immediately where the old one is unavailable), and delete the old pod once
//!   the new one is available.

use std::collections::HashSet;
use std::sync::Arc;

use apis::selectors::LabelSelector;
use k8s_openapi::api::apps::v1::{ControllerRevision, DaemonSet, DaemonSetStatus};
use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::runtime::RawExtension;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;

use super::util::{self, REVISION_HASH_LABEL};
use super::{Error, NodePods, Syncer};
use crate::controller_ref_manager::{claim, recheck_deletion_timestamp, ClaimError};
use crate::controller_utils::{controller_ref, is_already_exists, is_not_found, is_pod_available};
use crate::deployment::util::compute_hash;
use crate::history;

fn revision_hash(r: &ControllerRevision) -> Option<&str> {
    r.metadata
        .labels
        .as_ref()?
        .get(REVISION_HASH_LABEL)
        .map(String::as_str)
}

impl Syncer<'_> {
    fn revision_api(&self) -> Api<ControllerRevision> {
        Api::namespaced(self.ctx.client.clone(), self.namespace())
    }

    fn template_data(&self) -> serde_json::Value {
        let template = self
            .ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        history::template_patch(&template)
    }

    /// Upstream `constructHistory`: `(current, old)` revisions, making the current one
    /// if no revision matches the template.
    pub(super) async fn construct_history(
        &self,
        selector: &LabelSelector,
        node_pods: &NodePods,
    ) -> Result<(ControllerRevision, Vec<ControllerRevision>), Error> {
        let data = self.template_data();
        let mut current = Vec::new();
        let mut old = Vec::new();
        for mut r in self.claimed_revisions(selector).await? {
            if revision_hash(&r).is_none() {
                // Older revisions were named by hash but not labelled with it.
                let name = r.metadata.name.clone().unwrap_or_default();
                let patch = json!({"metadata": {"labels": {REVISION_HASH_LABEL: name}}});
                r = self
                    .revision_api()
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
            }
            if r.data.as_ref().map(|d| &d.0) == Some(&data) {
                current.push(r);
            } else {
                old.push(r);
            }
        }
        let next = old.iter().map(|r| r.revision).max().unwrap_or(0) + 1;
        let cur = if current.is_empty() {
            self.snapshot(next).await?
        } else {
            let cur = self.dedup_current(current, node_pods).await?;
            if cur.revision < next {
                history::set_revision_number(&self.ctx.client, &cur, next).await?
            } else {
                cur
            }
        };
        Ok((cur, old))
    }

    async fn claimed_revisions(
        &self,
        selector: &LabelSelector,
    ) -> Result<Vec<ControllerRevision>, Error> {
        let uid = self.ds.metadata.uid.clone().unwrap_or_default();
        let mut candidates = self.ctx.revisions.controlled_by(&uid);
        candidates.extend(self.ctx.revisions.orphans_in(self.namespace()));
        let owner_ref = controller_ref(&self.ds.metadata, "apps/v1", "DaemonSet");
        let (client, cached) = (self.ctx.client.clone(), self.ds.metadata.clone());
        let fresh = || async move {
            let api: Api<DaemonSet> =
                Api::namespaced(client, cached.namespace.as_deref().unwrap_or(""));
            let fresh = api
                .get(cached.name.as_deref().unwrap_or(""))
                .await
                .map_err(ClaimError::Api)?;
            recheck_deletion_timestamp(&cached, &fresh.metadata, "DaemonSet")
        };
        let claimed = claim(
            &self.ctx.client,
            &self.ds.metadata,
            &owner_ref,
            selector,
            candidates,
            fresh,
        )
        .await?;
        Ok(claimed.iter().map(|r| (**r).clone()).collect())
    }

    /// Upstream `dedupCurHistories`: several revisions hold the current template; keep
    /// the newest, move pods labelled with the others' hashes onto it, delete the rest.
    async fn dedup_current(
        &self,
        mut current: Vec<ControllerRevision>,
        node_pods: &NodePods,
    ) -> Result<ControllerRevision, Error> {
        current.sort_by(history::compare_revisions);
        let Some(keep) = current.pop() else {
            return Err(Error::Pods("no current revision".to_string()));
        };
        let keep_hash = revision_hash(&keep).unwrap_or("").to_string();
        let pods: Api<Pod> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        for dup in &current {
            let dup_hash = revision_hash(dup).unwrap_or("");
            for pod in node_pods.values().flatten() {
                let labels = pod.metadata.labels.as_ref();
                if labels
                    .and_then(|l| l.get(REVISION_HASH_LABEL))
                    .map(String::as_str)
                    == Some(dup_hash)
                {
                    let patch = json!({"metadata": {"labels": {REVISION_HASH_LABEL: keep_hash}}});
                    let name = pod.metadata.name.as_deref().unwrap_or("");
                    match pods
                        .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                        .await
                    {
                        Ok(_) => {}
                        Err(e) if is_not_found(&e) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            match self
                .revision_api()
                .delete(
                    dup.metadata.name.as_deref().unwrap_or(""),
                    &Default::default(),
                )
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(keep)
    }

    /// Upstream `snapshot`: the revision of the current template. A name clash with a
    /// different template bumps the DaemonSet's `collisionCount` and fails the sync, so
    /// the next one hashes with the new count.
    async fn snapshot(&self, revision: i64) -> Result<ControllerRevision, Error> {
        let template = self
            .ds
            .spec
            .as_ref()
            .map(|s| s.template.clone())
            .unwrap_or_default();
        let collision_count = self.ds.status.as_ref().and_then(|s| s.collision_count);
        let hash = compute_hash(&template, collision_count);
        let name = format!("{}-{hash}", self.name());
        let mut labels = template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        labels.insert(REVISION_HASH_LABEL.to_string(), hash.clone());
        let data = self.template_data();
        let wanted = ControllerRevision {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: self.ds.metadata.namespace.clone(),
                labels: Some(labels),
                annotations: self.ds.metadata.annotations.clone(),
                owner_references: Some(vec![controller_ref(
                    &self.ds.metadata,
                    "apps/v1",
                    "DaemonSet",
                )]),
                ..Default::default()
            },
            data: Some(RawExtension(data.clone())),
            revision,
        };
        let api = self.revision_api();
        let outer = match api.create(&PostParams::default(), &wanted).await {
            Ok(created) => return Ok(created),
            Err(e) if is_already_exists(&e) => e,
            Err(e) => return Err(e.into()),
        };
        let existing = api.get(&name).await?;
        if existing.data.as_ref().map(|d| &d.0) == Some(&data) {
            return Ok(existing);
        }
        let sets: Api<DaemonSet> = Api::namespaced(self.ctx.client.clone(), self.namespace());
        let mut fresh = sets.get(self.name()).await?;
        let fresh_count = fresh.status.as_ref().and_then(|s| s.collision_count);
        if fresh_count != collision_count {
            return Err(Error::StaleCollisionCount(format!(
                "found a stale collision count ({collision_count:?}, expected {fresh_count:?}) of DaemonSet {:?} while processing; will retry until it is updated",
                self.name()
            )));
        }
        let status = fresh.status.get_or_insert_with(DaemonSetStatus::default);
        status.collision_count = Some(fresh_count.unwrap_or(0) + 1);
        sets.replace_status(self.name(), &PostParams::default(), &fresh)
            .await?;
        tracing::info!(object = %self.key, "found a hash collision; bumped collisionCount");
        Err(outer.into())
    }

    /// Upstream `cleanupHistory`: delete old revisions no pod uses, oldest first, until
    /// `revisionHistoryLimit` remain.
    pub(super) async fn cleanup_history(
        &self,
        mut old: Vec<ControllerRevision>,
        node_pods: &NodePods,
    ) -> Result<(), Error> {
        let limit = self
            .ds
            .spec
            .as_ref()
            .and_then(|s| s.revision_history_limit)
            .unwrap_or(10);
        let mut to_kill = old
            .len()
            .saturating_sub(usize::try_from(limit.max(0)).unwrap_or(0));
        if to_kill == 0 {
            return Ok(());
        }
        let live: HashSet<&str> = node_pods
            .values()
            .flatten()
            .filter_map(|p| p.metadata.labels.as_ref()?.get(REVISION_HASH_LABEL))
            .map(String::as_str)
            .collect();
        old.sort_by(history::compare_revisions);
        let api = self.revision_api();
        for r in &old {
            if to_kill == 0 {
                break;
            }
            if revision_hash(r).is_some_and(|h| live.contains(h)) {
                continue;
            }
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
            to_kill -= 1;
        }
        Ok(())
    }

    /// The new and old pod of a node, or `None` when it has more than one of either
    /// (the main loop prunes those first).
    fn updated_pods_on_node<'p>(
        &self,
        pods: &'p [Arc<Pod>],
        hash: &str,
    ) -> Option<(Option<&'p Pod>, Option<&'p Pod>)> {
        let generation = util::template_generation(self.ds);
        let (mut new, mut old) = (None, None);
        for pod in pods
            .iter()
            .filter(|p| p.metadata.deletion_timestamp.is_none())
        {
            let slot = if util::is_pod_updated(pod, hash, generation) {
                &mut new
            } else {
                &mut old
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(pod.as_ref());
        }
        Some((new, old))
    }

    /// One rolling-update step (upstream `rollingUpdate`).
    pub(super) async fn rolling_update(
        &self,
        nodes: &[Arc<Node>],
        node_pods: &NodePods,
        hash: &str,
    ) -> Result<(), Error> {
        // Every node that should run a pod counts, with or without one.
        let mut by_node: Vec<(&str, &[Arc<Pod>])> = node_pods
            .iter()
            .map(|(n, p)| (n.as_str(), p.as_slice()))
            .collect();
        let mut desired = 0;
        for node in nodes {
            if !util::should_run(node, self.ds).0 {
                continue;
            }
            desired += 1;
            let name = node.metadata.name.as_deref().unwrap_or("");
            if !node_pods.contains_key(name) {
                by_node.push((name, &[]));
            }
        }
        by_node.sort_by_key(|(n, _)| *n);
        let mut max_unavailable = util::max_unavailable(self.ds, desired);
        let max_surge = util::max_surge(self.ds, desired);
        if desired > 0 && max_unavailable == 0 && max_surge == 0 {
            // An impossible configuration: accept one unavailable node, as upstream.
            max_unavailable = 1;
        }
        let now = Timestamp::now();
        let min_ready = self.min_ready_seconds();
        let available = |p: &Pod| is_pod_available(p, min_ready, now);
        let pod_key = |p: &Pod| p.metadata.name.clone().unwrap_or_default();

        if max_surge == 0 {
            let mut unavailable = 0;
            let mut replace_now: Vec<&Pod> = Vec::new();
            let mut candidates: Vec<&Pod> = Vec::new();
            for (node, pods) in &by_node {
                let Some((new, old)) = self.updated_pods_on_node(pods, hash) else {
                    tracing::debug!(
                        node,
                        "excess daemon pods on node; the main loop prunes them first"
                    );
                    unavailable += 1;
                    continue;
                };
                match (new, old) {
                    (None, None) | (Some(_), Some(_)) => unavailable += 1,
                    (Some(new), None) => {
                        if !available(new) {
                            unavailable += 1;
                        }
                    }
                    (None, Some(old)) => {
                        if !available(old) {
                            replace_now.push(old);
                            unavailable += 1;
                        } else if unavailable < max_unavailable {
                            candidates.push(old);
                        }
                    }
                }
            }
            let room = usize::try_from((max_unavailable - unavailable).max(0)).unwrap_or(0);
            replace_now.extend(candidates.into_iter().take(room));
            let victims: Vec<Arc<Pod>> = replace_now
                .into_iter()
                .map(|p| Arc::new(p.clone()))
                .collect();
            tracing::debug!(object = %self.key, replacing = victims.len(), max_unavailable, unavailable, "rolling update");
            return self.sync_nodes(&victims, &[], hash).await;
        }

        let mut to_delete: Vec<&Pod> = Vec::new();
        let mut should_not_run: Vec<&Pod> = Vec::new();
        let mut candidate_nodes: Vec<String> = Vec::new();
        let mut allowed_nodes: Vec<String> = Vec::new();
        let (mut surging, mut available_count) = (0, 0);
        for (node_name, pods) in &by_node {
            let Some((new, old)) = self.updated_pods_on_node(pods, hash) else {
                surging += 1;
                continue;
            };
            match (old, new) {
                (Some(o), _) if available(o) => available_count += 1,
                (None, Some(n)) if available(n) => available_count += 1,
                _ => {}
            }
            let node = nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(*node_name));
            let runs_here = node.is_some_and(|n| util::should_run(n, self.ds).0);
            match (old, new) {
                (None, _) => {}
                (Some(old), None) => {
                    if !available(old) {
                        if runs_here {
                            allowed_nodes.push((*node_name).to_string());
                        } else {
                            to_delete.push(old);
                        }
                    } else if !runs_here {
                        should_not_run.push(old);
                    } else if surging < max_surge {
                        candidate_nodes.push((*node_name).to_string());
                    }
                }
                (Some(old), Some(new)) => {
                    if available(new) {
                        to_delete.push(old);
                    } else {
                        surging += 1;
                    }
                }
            }
        }
        // Pods on nodes that no longer qualify go only once others are available.
        let deletable = usize::try_from((available_count - desired).max(0)).unwrap_or(0);
        to_delete.extend(should_not_run.into_iter().take(deletable));
        let room = usize::try_from((max_surge - surging).max(0)).unwrap_or(0);
        allowed_nodes.extend(candidate_nodes.into_iter().take(room));
        let victims: Vec<Arc<Pod>> = to_delete.into_iter().map(|p| Arc::new(p.clone())).collect();
        tracing::debug!(
            object = %self.key,
            surge = allowed_nodes.len(),
            delete = ?victims.iter().map(|p| pod_key(p)).collect::<Vec<_>>(),
            "rolling update with surge"
        );
        self.sync_nodes(&victims, &allowed_nodes, hash).await
    }
}
