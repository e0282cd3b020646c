//! Claiming objects for a controller (upstream `controller_ref_manager.go`): objects
//! that match the selector and have no controller are adopted, objects the controller
//! owns that stopped matching are released, and objects another controller owns are
//! never touched.
//!
//! Both writes are JSON patches guarded by `test` operations on the object's uid and
//! resourceVersion, so a claim based on a stale cache fails (and is retried) instead
//! of overwriting an owner reference someone else just set.

use std::fmt::Debug;
use std::sync::Arc;

use apis::selectors::LabelSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::NamespaceResourceScope;
use kube::api::Api;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::controller_utils::{is_not_found, json_patch};
use crate::informer::controller_of;

#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
    /// The controller changed under us (re-created or being deleted): adopting now
    /// could hand objects to a dying owner.
    #[error("{0}")]
    CannotAdopt(String),
}

/// Upstream `RecheckDeletionTimestamp`: a fresh read of the controller must show the
/// same uid and no deletion timestamp before anything is adopted.
pub fn recheck_deletion_timestamp(
    cached: &ObjectMeta,
    fresh: &ObjectMeta,
    kind: &str,
) -> Result<(), ClaimError> {
    let name = cached.name.as_deref().unwrap_or("");
    let want = cached.uid.as_deref().unwrap_or("");
    let got = fresh.uid.as_deref().unwrap_or("");
    if got != want {
        return Err(ClaimError::CannotAdopt(format!(
            "original {kind} {name} is gone: got uid {got}, wanted {want}"
        )));
    }
    if let Some(ts) = &fresh.deletion_timestamp {
        return Err(ClaimError::CannotAdopt(format!(
            "{kind} {name} has just been deleted at {}",
            ts.0
        )));
    }
    Ok(())
}

/// Claims `candidates` (all objects in the controller's namespace that it owns or that
/// have no controller) for the controller `owner`. `fresh_owner` reads the controller
/// from the API; it is called at most once, before the first adoption.
pub async fn claim<K, F, Fut>(
    client: &Client,
    owner: &ObjectMeta,
    owner_ref: &OwnerReference,
    selector: &LabelSelector,
    candidates: Vec<Arc<K>>,
    fresh_owner: F,
) -> Result<Vec<Arc<K>>, ClaimError>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Result<(), ClaimError>>,
{
    let owner_uid = owner.uid.as_deref().unwrap_or("");
    let owner_ns = owner.namespace.as_deref().unwrap_or("");
    let owner_deleting = owner.deletion_timestamp.is_some();
    let mut fresh_owner = Some(fresh_owner);
    let mut claimed = Vec::new();
    for obj in candidates {
        let meta = obj.meta();
        let matches = selector.matches(&meta.labels.clone().unwrap_or_default());
        match controller_of(meta) {
            Some(r) if r.uid != owner_uid => continue,
            Some(_) => {
                if matches {
                    claimed.push(obj);
                    continue;
                }
                if owner_deleting {
                    continue;
                }
                match release::<K>(client, meta, owner_uid).await {
                    Ok(_) => {}
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
            None => {
                if owner_deleting || !matches || meta.deletion_timestamp.is_some() {
                    continue;
                }
                if meta.namespace.as_deref().unwrap_or("") != owner_ns {
                    continue;
                }
                if let Some(check) = fresh_owner.take() {
                    check().await?;
                }
                match adopt::<K>(client, meta, owner_ref).await {
                    Ok(adopted) => claimed.push(Arc::new(adopted)),
                    Err(e) if is_not_found(&e) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    Ok(claimed)
}

fn guard_ops(meta: &ObjectMeta) -> Vec<serde_json::Value> {
    vec![
        json!({"op": "test", "path": "/metadata/uid", "value": meta.uid.clone().unwrap_or_default()}),
        json!({"op": "test", "path": "/metadata/resourceVersion", "value": meta.resource_version.clone().unwrap_or_default()}),
    ]
}

/// Adds `owner_ref` to the object's owner references.
pub async fn adopt<K>(
    client: &Client,
    meta: &ObjectMeta,
    owner_ref: &OwnerReference,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let mut refs = meta.owner_references.clone().unwrap_or_default();
    refs.retain(|r| r.uid != owner_ref.uid);
    refs.push(owner_ref.clone());
    let mut ops = guard_ops(meta);
    ops.push(json!({"op": "add", "path": "/metadata/ownerReferences", "value": refs}));
    let api: Api<K> = Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or(""));
    json_patch(
        client,
        &api,
        meta.name.as_deref().unwrap_or(""),
        &serde_json::Value::Array(ops),
    )
    .await
}

/// Removes the owner reference with `owner_uid`.
pub async fn release<K>(
    client: &Client,
    meta: &ObjectMeta,
    owner_uid: &str,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = (), Scope = NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug,
{
    let refs: Vec<OwnerReference> = meta
        .owner_references
        .clone()
        .unwrap_or_default()
        .into_iter()
        .filter(|r| r.uid != owner_uid)
        .collect();
    let mut ops = guard_ops(meta);
    if refs.is_empty() {
        ops.push(json!({"op": "remove", "path": "/metadata/ownerReferences"}));
    } else {
        ops.push(json!({"op": "replace", "path": "/metadata/ownerReferences", "value": refs}));
    }
    let api: Api<K> = Api::namespaced(client.clone(), meta.namespace.as_deref().unwrap_or(""));
    json_patch(
        client,
        &api,
        meta.name.as_deref().unwrap_or(""),
        &serde_json::Value::Array(ops),
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn recheck_rejects_recreated_or_deleting_owners() {
        let cached = ObjectMeta {
            name: Some("rs".into()),
            uid: Some("u1".into()),
            ..Default::default()
        };
        assert!(recheck_deletion_timestamp(&cached, &cached, "ReplicaSet").is_ok());
        let recreated = ObjectMeta {
            uid: Some("u2".into()),
            ..cached.clone()
        };
        let err =
            recheck_deletion_timestamp(&cached, &recreated, "ReplicaSet").expect_err("uid changed");
        assert_eq!(
            err.to_string(),
            "original ReplicaSet rs is gone: got uid u2, wanted u1"
        );
        let deleting = ObjectMeta {
            deletion_timestamp: Some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..cached.clone()
        };
        assert!(recheck_deletion_timestamp(&cached, &deleting, "ReplicaSet").is_err());
    }
}
