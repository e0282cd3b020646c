//! Pod and claim writes of the StatefulSet controller (upstream `stateful_pod_control.go`):
//! claims are made before their pod and never deleted here, pods are created, brought
//! back to their identity and storage, and deleted — each write recorded as an Event
//! worded as upstream (`create Pod web-0 in StatefulSet web successful`).

use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::EventType;
use kube::Resource;
use serde_json::json;

use super::utils::{self, set_name, set_namespace};
use super::{Ctx, Error};
use crate::controller_utils::{is_already_exists, is_conflict, is_not_found, meta_key};

/// Pod updates retried on conflicts before giving up (upstream `retry.DefaultBackoff`).
const MAX_UPDATE_ATTEMPTS: usize = 5;

fn title(verb: &str) -> String {
    let mut c = verb.chars();
    c.next()
        .map(|f| f.to_uppercase().chain(c).collect())
        .unwrap_or_default()
}

impl Ctx {
    fn pod_api(&self, set: &StatefulSet) -> Api<Pod> {
        Api::namespaced(self.client.clone(), set_namespace(set))
    }

    /// `Successful<Verb>` / `Failed<Verb>` for a pod (upstream `recordPodEvent`).
    async fn record_pod_event(&self, verb: &str, set: &StatefulSet, pod: &Pod, err: Option<&str>) {
        let pod_name = pod.metadata.name.as_deref().unwrap_or("");
        let (type_, reason, note) = match err {
            None => (
                EventType::Normal,
                format!("Successful{}", title(verb)),
                format!(
                    "{verb} Pod {pod_name} in StatefulSet {} successful",
                    set_name(set)
                ),
            ),
            Some(e) => (
                EventType::Warning,
                format!("Failed{}", title(verb)),
                format!(
                    "{verb} Pod {pod_name} in StatefulSet {} failed error: {e}",
                    set_name(set)
                ),
            ),
        };
        self.recorder
            .publish(&set.object_ref(&()), type_, &reason, &title(verb), note)
            .await;
    }

    /// The same for a claim (upstream `recordClaimEvent`).
    async fn record_claim_event(
        &self,
        verb: &str,
        set: &StatefulSet,
        pod: &Pod,
        claim: &str,
        err: Option<&str>,
    ) {
        let pod_name = pod.metadata.name.as_deref().unwrap_or("");
        let (type_, reason, note) = match err {
            None => (
                EventType::Normal,
                format!("Successful{}", title(verb)),
                format!(
                    "{verb} Claim {claim} Pod {pod_name} in StatefulSet {} success",
                    set_name(set)
                ),
            ),
            Some(e) => (
                EventType::Warning,
                format!("Failed{}", title(verb)),
                format!(
                    "{verb} Claim {claim} for Pod {pod_name} in StatefulSet {} failed error: {e}",
                    set_name(set)
                ),
            ),
        };
        self.recorder
            .publish(&set.object_ref(&()), type_, &reason, &title(verb), note)
            .await;
    }

    /// Creates the claims `pod` needs that do not exist yet (upstream
    /// `createPersistentVolumeClaims`). A claim being deleted is an error: the pod must
    /// not start on storage that is going away.
    pub(super) async fn create_claims(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let mut errs = Vec::new();
        for (_, claim) in utils::claims_for(set, pod) {
            let name = claim.metadata.name.clone().unwrap_or_default();
            match self.claims.get(set_namespace(set), &name) {
                Some(existing) => {
                    if existing.metadata.deletion_timestamp.is_some() {
                        errs.push(format!("pvc {name} is being deleted"));
                    }
                }
                None => {
                    let api: Api<PersistentVolumeClaim> =
                        Api::namespaced(self.client.clone(), set_namespace(set));
                    match api.create(&PostParams::default(), &claim).await {
                        Ok(_) => {
                            self.record_claim_event("create", set, pod, &name, None)
                                .await
                        }
                        // A cache that has not caught up: the claim is there, as wanted.
                        Err(e) if is_already_exists(&e) => {}
                        Err(e) => {
                            let msg = e.to_string();
                            self.record_claim_event("create", set, pod, &name, Some(&msg))
                                .await;
                            errs.push(format!("failed to create PVC {name}: {msg}"));
                        }
                    }
                }
            }
        }
        if errs.is_empty() {
            Ok(())
        } else {
            Err(Error::Pods(errs.join(", ")))
        }
    }

    /// Claims first, then the pod (upstream `CreateStatefulPod`).
    pub(super) async fn create_pod(
        &self,
        set: &StatefulSet,
        key: &str,
        pod: &Pod,
    ) -> Result<(), Error> {
        if let Err(e) = self.create_claims(set, pod).await {
            self.record_pod_event("create", set, pod, Some(&e.to_string()))
                .await;
            return Err(e);
        }
        self.expectations.raise(key, 1, []);
        match self.pod_api(set).create(&PostParams::default(), pod).await {
            Ok(created) => {
                if let Err(e) = self.update_claims_for_retention(set, &created).await {
                    self.record_pod_event("update", set, pod, Some(&e.to_string()))
                        .await;
                    return Err(e);
                }
                self.record_pod_event("create", set, pod, None).await;
                Ok(())
            }
            Err(e) => {
                self.expectations.creation_observed(key);
                if !is_already_exists(&e) {
                    self.record_pod_event("create", set, pod, Some(&e.to_string()))
                        .await;
                }
                Err(e.into())
            }
        }
    }

    /// Deletes a pod; its claims stay (upstream `DeleteStatefulPod`).
    pub(super) async fn delete_pod(
        &self,
        set: &StatefulSet,
        key: &str,
        pod: &Pod,
    ) -> Result<(), Error> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        self.expectations.raise(key, 0, [meta_key(&pod.metadata)]);
        match self.pod_api(set).delete(&name, &Default::default()).await {
            Ok(_) => {
                self.record_pod_event("delete", set, pod, None).await;
                Ok(())
            }
            Err(e) => {
                self.expectations
                    .deletion_observed(key, &meta_key(&pod.metadata));
                if is_not_found(&e) {
                    return Ok(());
                }
                self.record_pod_event("delete", set, pod, Some(&e.to_string()))
                    .await;
                Err(e.into())
            }
        }
    }

    /// Brings a pod back to its identity, storage and claim ownership (upstream
    /// `UpdateStatefulPod`), re-reading it on conflicts.
    pub(super) async fn update_pod(&self, set: &StatefulSet, pod: &Pod) -> Result<(), Error> {
        let api = self.pod_api(set);
        let mut pod = pod.clone();
        let mut attempted = false;
        let mut result = Ok(());
        for _ in 0..MAX_UPDATE_ATTEMPTS {
            let mut consistent = true;
            if !utils::identity_matches(set, &pod) {
                utils::update_identity(set, &mut pod);
                consistent = false;
            }
            if !utils::storage_matches(set, &pod) {
                utils::update_storage(set, &mut pod);
                consistent = false;
                if let Err(e) = self.create_claims(set, &pod).await {
                    self.record_pod_event("update", set, &pod, Some(&e.to_string()))
                        .await;
                    return Err(e);
                }
            }
            if !self.claims_match_retention(set, &pod) {
                if let Err(e) = self.update_claims_for_retention(set, &pod).await {
                    self.record_pod_event("update", set, &pod, Some(&e.to_string()))
                        .await;
                    return Err(e);
                }
            }
            if consistent {
                result = Ok(());
                break;
            }
            attempted = true;
            let name = pod.metadata.name.clone().unwrap_or_default();
            match api.replace(&name, &PostParams::default(), &pod).await {
                Ok(_) => {
                    result = Ok(());
                    break;
                }
                Err(e) if is_conflict(&e) => {
                    result = Err(Error::from(e));
                    match api.get(&name).await {
                        Ok(fresh) => pod = fresh,
                        Err(e) => {
                            result = Err(e.into());
                            break;
                        }
                    }
                }
                Err(e) => {
                    result = Err(e.into());
                    break;
                }
            }
        }
        if attempted {
            let err = result.as_ref().err().map(ToString::to_string);
            self.record_pod_event("update", set, &pod, err.as_deref())
                .await;
        }
        result
    }

    /// Creates missing claims of a pending pod (upstream `createMissingPersistentVolumeClaims`).
    pub(super) async fn create_missing_claims(
        &self,
        set: &StatefulSet,
        pod: &Pod,
    ) -> Result<(), Error> {
        self.create_claims(set, pod).await?;
        if let Err(e) = self.update_claims_for_retention(set, pod).await {
            self.record_pod_event("update", set, pod, Some(&e.to_string()))
                .await;
            return Err(e);
        }
        Ok(())
    }

    /// Whether every existing claim of the pod is owned as the retention policy says.
    pub(super) fn claims_match_retention(&self, set: &StatefulSet, pod: &Pod) -> bool {
        utils::claims_for(set, pod).iter().all(|(_, want)| {
            let name = want.metadata.name.as_deref().unwrap_or("");
            self.claims
                .get(set_namespace(set), name)
                .is_none_or(|c| utils::claim_owner_refs_for_policy(&c, set, pod).is_none())
        })
    }

    /// Sets the owner references of the pod's claims for the retention policy (upstream
    /// `UpdatePodClaimForRetentionPolicy`): the set owns them when `whenDeleted: Delete`,
    /// a pod scaled away owns them when `whenScaled: Delete`, so the garbage collector
    /// removes them with their owner.
    pub(super) async fn update_claims_for_retention(
        &self,
        set: &StatefulSet,
        pod: &Pod,
    ) -> Result<(), Error> {
        let api: Api<PersistentVolumeClaim> =
            Api::namespaced(self.client.clone(), set_namespace(set));
        for (_, want) in utils::claims_for(set, pod) {
            let name = want.metadata.name.clone().unwrap_or_default();
            let Some(claim) = self.claims.get(set_namespace(set), &name) else {
                // Not in the cache yet: the next sync looks again.
                continue;
            };
            let Some(refs) = utils::claim_owner_refs_for_policy(&claim, set, pod) else {
                continue;
            };
            let patch = json!({"metadata": {
                "ownerReferences": refs,
                "resourceVersion": claim.metadata.resource_version,
            }});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(_) => {}
                Err(e) if is_not_found(&e) => {}
                Err(e) => {
                    return Err(Error::Pods(format!(
                        "Could not update claim {name} for delete policy ownerRefs: {e}"
                    )))
                }
            }
        }
        Ok(())
    }
}
