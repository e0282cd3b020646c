//! Objects every cluster has: the system namespaces and the `kubernetes` service,
//! created (idempotently) before the server reports ready.

use registry::{Registry, RegistryError, WriteOptions};
use serde_json::json;

pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];

pub async fn ensure_system_objects(registry: &Registry) -> Result<(), RegistryError> {
    let ns = registry
        .lookup("", "v1", "namespaces")
        .ok_or_else(|| RegistryError::internal("namespaces not served"))?;
    for name in SYSTEM_NAMESPACES {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        match registry
            .create(&ns, "", obj, &WriteOptions::default())
            .await
        {
            Ok(_) | Err(RegistryError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let svc = registry
        .lookup("", "v1", "services")
        .ok_or_else(|| RegistryError::internal("services not served"))?;
    if svc.store.get("default", "kubernetes").await.is_ok() {
        return Ok(());
    }
    let ip = registry.service_ips.nth(1).to_string();
    let kubernetes = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "kubernetes", "namespace": "default", "labels": {"component": "apiserver", "provider": "kubernetes"}},
        "spec": {
            "type": "ClusterIP",
            "clusterIP": ip,
            "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}],
            "sessionAffinity": "None",
        }
    });
    match registry
        .create(&svc, "default", kubernetes, &WriteOptions::default())
        .await
    {
        Ok(_) | Err(RegistryError::AlreadyExists { .. }) => {}
        Err(e) => return Err(e),
    }
    Ok(())
}
