//! ServiceAccount admission (upstream `plugin/pkg/admission/serviceaccount`), for pods
//! being created:
//!
//! - `spec.serviceAccountName` defaults to `default`, and the account must exist. The
//!   `default` account is made by the ServiceAccount controller moments after its
//!   namespace, so it is looked up a few times before the pod is refused, as upstream.
//! - Unless the pod or its account opts out (`automountServiceAccountToken: false`),
//!   or a container already mounts something at the token path, the pod gets the
//!   projected `kube-api-access-<suffix>` volume: a bound service-account token
//!   (`token`, 3607 s), the cluster CA from the `kube-root-ca.crt` ConfigMap (`ca.crt`)
//!   and the pod's namespace (`namespace`), mounted read-only at
//!   `/var/run/secrets/kubernetes.io/serviceaccount` in every container.
//! - A pod without `imagePullSecrets` inherits its account's.
//!
//! Mirror pods (static pods shown by a node) are left alone.

use std::time::Duration;

use serde_json::{json, Value};

use crate::error::{RegistryError, Result};
use crate::{meta, Registry, Served};

pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The token's lifetime: an hour and a few seconds, so clients can tell it is bound.
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Lookups of the `default` account before giving up (upstream `MaxRetry`).
const DEFAULT_LOOKUPS: usize = 10;

/// The account, from the watch cache or, when it is not there yet, the store.
async fn service_account(
    registry: &Registry,
    namespace: &str,
    name: &str,
) -> Result<Option<Value>> {
    let Some(accounts) = registry.lookup("", "v1", "serviceaccounts") else {
        return Ok(None);
    };
    let key = accounts.store.key(namespace, name);
    if let Some(o) = accounts.store.cacher().get(&key) {
        if let Ok(v) = serde_json::from_slice(&o.json) {
            return Ok(Some(v));
        }
    }
    let attempts = if name == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_LOOKUPS
    } else {
        1
    };
    for attempt in 0..attempts {
        if attempt > 0 {
            let jitter = rand::random::<u64>() % 100;
            tokio::time::sleep(Duration::from_millis(100 + jitter)).await;
        }
        match accounts.store.get(namespace, name).await {
            Ok(v) => return Ok(Some(v)),
            Err(RegistryError::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}

/// The projected volume that gives a pod its API credentials.
pub fn api_access_volume(name: &str) -> Value {
    json!({
        "name": name,
        "projected": {
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        },
    })
}

fn mounts_token_path(container: &Value) -> bool {
    container
        .get("volumeMounts")
        .and_then(Value::as_array)
        .is_some_and(|ms| {
            ms.iter()
                .any(|m| m.get("mountPath").and_then(Value::as_str) == Some(TOKEN_MOUNT_PATH))
        })
}

pub async fn admit(
    registry: &Registry,
    served: &Served,
    namespace: &str,
    obj: &mut Value,
) -> Result<()> {
    let mirror = meta::metadata(obj)
        .and_then(|m| m.get("annotations"))
        .and_then(|a| a.get(MIRROR_ANNOTATION))
        .is_some();
    if mirror {
        return Ok(());
    }
    let name = super::display_name(obj);
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return Ok(());
    };
    let account = spec
        .get("serviceAccountName")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .or_else(|| {
            spec.get("serviceAccount")
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        })
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
        .to_string();
    spec.insert("serviceAccountName".into(), json!(account));
    spec.insert("serviceAccount".into(), json!(account));
    let Some(sa) = service_account(registry, namespace, &account).await? else {
        return Err(super::forbidden(
            served,
            &name,
            format!(
                "error looking up service account {namespace}/{account}: serviceaccount \"{account}\" not found"
            ),
        ));
    };
    let automount = spec
        .get("automountServiceAccountToken")
        .and_then(Value::as_bool)
        .or_else(|| {
            sa.get("automountServiceAccountToken")
                .and_then(Value::as_bool)
        })
        .unwrap_or(true);
    let has_pull_secrets = spec
        .get("imagePullSecrets")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    if !has_pull_secrets {
        if let Some(secrets) = sa
            .get("imagePullSecrets")
            .and_then(Value::as_array)
            .filter(|a| !a.is_empty())
        {
            spec.insert("imagePullSecrets".into(), Value::Array(secrets.clone()));
        }
    }
    if !automount {
        return Ok(());
    }
    let already_mounted = ["initContainers", "containers"].iter().any(|f| {
        spec.get(*f)
            .and_then(Value::as_array)
            .is_some_and(|cs| cs.iter().any(mounts_token_path))
    });
    if already_mounted {
        return Ok(());
    }
    let volume = crate::store::generate_name_from("kube-api-access-");
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(Vec::new()));
    if let Some(vs) = volumes.as_array_mut() {
        vs.push(api_access_volume(&volume));
    }
    for field in ["initContainers", "containers"] {
        let Some(Value::Array(cs)) = spec.get_mut(field) else {
            continue;
        };
        for c in cs.iter_mut().filter_map(Value::as_object_mut) {
            let mounts = c
                .entry("volumeMounts")
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Some(ms) = mounts.as_array_mut() {
                ms.push(json!({"name": volume, "mountPath": TOKEN_MOUNT_PATH, "readOnly": true}));
            }
        }
    }
    Ok(())
}
