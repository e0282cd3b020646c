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

/// Points the `kubernetes` Service at this API server, as upstream's endpoint reconciler
/// does: Endpoints `default/kubernetes` and the EndpointSlice of the same name, with the
/// advertised address and the HTTPS port (port name `https`). Rewritten at every start,
/// since the address may have changed.
pub async fn ensure_kubernetes_endpoints(
    registry: &Registry,
    ip: std::net::IpAddr,
    port: u16,
) -> Result<(), RegistryError> {
    let address_type = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
    let endpoints = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
        "subsets": [{"addresses": [{"ip": ip.to_string()}], "ports": [{"name": "https", "port": port, "protocol": "TCP"}]}],
    });
    let slice = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "kubernetes", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "kubernetes"}},
        "addressType": address_type,
        "endpoints": [{"addresses": [ip.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "https", "port": port, "protocol": "TCP"}],
    });
    for (group, version, resource, obj) in [
        ("", "v1", "endpoints", endpoints),
        ("discovery.k8s.io", "v1", "endpointslices", slice),
    ] {
        let served = registry
            .lookup(group, version, resource)
            .ok_or_else(|| RegistryError::internal(format!("{resource} not served")))?;
        match registry
            .create(&served, "default", obj.clone(), &WriteOptions::default())
            .await
        {
            Ok(_) => {}
            Err(RegistryError::AlreadyExists { .. }) => {
                served
                    .store
                    .guaranteed_update(
                        "default",
                        "kubernetes",
                        registry::UpdateMode::Main,
                        &WriteOptions::default(),
                        &mut |old| {
                            let mut new = old.cloned().unwrap_or_else(|| obj.clone());
                            for field in ["subsets", "endpoints", "ports", "addressType"] {
                                if let Some(v) = obj.get(field) {
                                    new[field] = v.clone();
                                }
                            }
                            Ok(new)
                        },
                    )
                    .await?;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Name of the built-in StorageClass (as k3s ships it).
pub const LOCAL_PATH_CLASS: &str = "local-path";
/// Provisioner name of [`LOCAL_PATH_CLASS`] (k3s's local-path-provisioner).
pub const LOCAL_PATH_PROVISIONER: &str = controllers::volume::local_path::PROVISIONER;
/// The ConfigMap in `kube-system` that tells the provisioner where volumes live.
pub const LOCAL_PATH_CONFIG: &str = controllers::volume::local_path::CONFIG_MAP;

/// The default `local-path` StorageClass (WaitForFirstConsumer, reclaim Delete) and the
/// provisioner's `local-path-config` ConfigMap pointing at `storage_dir`, created when
/// missing (as k3s applies its local-storage manifest; an edited one is left alone).
pub async fn ensure_local_storage(
    registry: &Registry,
    storage_dir: &std::path::Path,
) -> Result<(), RegistryError> {
    let classes = registry
        .lookup("storage.k8s.io", "v1", "storageclasses")
        .ok_or_else(|| RegistryError::internal("storageclasses not served"))?;
    let class = json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": LOCAL_PATH_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": LOCAL_PATH_PROVISIONER,
        "volumeBindingMode": "WaitForFirstConsumer",
        "reclaimPolicy": "Delete",
    });
    if classes.store.get("", LOCAL_PATH_CLASS).await.is_err() {
        match registry
            .create(&classes, "", class, &WriteOptions::default())
            .await
        {
            Ok(_) | Err(RegistryError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let configmaps = registry
        .lookup("", "v1", "configmaps")
        .ok_or_else(|| RegistryError::internal("configmaps not served"))?;
    if configmaps
        .store
        .get("kube-system", LOCAL_PATH_CONFIG)
        .await
        .is_ok()
    {
        return Ok(());
    }
    let config = json!({"nodePathMap": [{
        "node": controllers::volume::local_path::DEFAULT_NODE,
        "paths": [storage_dir.display().to_string()],
    }]});
    let cm = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": LOCAL_PATH_CONFIG, "namespace": "kube-system"},
        "data": {"config.json": serde_json::to_string_pretty(&config).unwrap_or_default()},
    });
    match registry
        .create(&configmaps, "kube-system", cm, &WriteOptions::default())
        .await
    {
        Ok(_) | Err(RegistryError::AlreadyExists { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}
