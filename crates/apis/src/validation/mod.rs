//! Validation of built-in kinds on create and update, returning every field error with
//! upstream's paths and texts (`pkg/apis/*/validation`). The API server turns a
//! non-empty list into one 422 `Invalid` Status.
//!
//! Objects arrive as `serde_json::Value` after defaulting (validation assumes defaults
//! were applied, as upstream does) and after the registry's `PrepareForCreate` /
//! `PrepareForUpdate` (generated job selectors, status reset, `resourceVersion` copied
//! in for unconditional updates). Each kind is decoded into its k8s-openapi type and
//! checked; kinds without rules here get metadata checks only, and kinds this crate does
//! not know (custom resources) get none.

pub mod apps;
pub mod batch;
pub mod containers;
pub mod core;
pub mod meta;
pub mod names;
pub mod networking;
pub mod other;
pub mod pod;
pub mod quantity;
pub mod storage;
pub mod volumes;

use std::collections::HashMap;

use k8s_openapi::api::apps::v1 as apps_v1;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use once_cell::sync::Lazy;
use serde::de::DeserializeOwned;
use serde_json::Value;

use self::meta::{decode, NameFn};
use crate::field_error::{FieldErrors, Path};

/// `(group, kind) -> namespaced` for every built-in kind.
static BUILTIN_KINDS: Lazy<HashMap<(String, String), bool>> = Lazy::new(|| {
    crate::resources::builtin_resources()
        .iter()
        .map(|r| ((r.group.clone(), r.kind.clone()), r.namespaced))
        .collect()
});

/// Kinds that are never stored, so have no object metadata to check.
fn is_virtual(group: &str, kind: &str) -> bool {
    matches!(group, "authentication.k8s.io" | "authorization.k8s.io")
        || (group.is_empty() && matches!(kind, "Binding" | "ComponentStatus"))
}

/// The name rule upstream applies to kinds that only get metadata checks here.
fn name_fn_for(group: &str, kind: &str) -> NameFn {
    match (group, kind) {
        ("rbac.authorization.k8s.io", _)
        | ("autoscaling", _)
        | ("flowcontrol.apiserver.k8s.io", _)
        | ("certificates.k8s.io", "CertificateSigningRequest")
        | ("apiregistration.k8s.io", _) => names::is_path_segment_name,
        _ => names::name_is_dns_subdomain,
    }
}

fn run<T: DeserializeOwned>(obj: &Value, f: impl FnOnce(&T) -> FieldErrors) -> FieldErrors {
    match decode::<T>(obj) {
        Ok(t) => f(&t),
        Err(e) => e,
    }
}

fn run2<T: DeserializeOwned>(
    new: &Value,
    old: &Value,
    f: impl FnOnce(&T, &T) -> FieldErrors,
) -> FieldErrors {
    match (decode::<T>(new), decode::<T>(old)) {
        (Ok(n), Ok(o)) => f(&n, &o),
        (Err(e), _) | (_, Err(e)) => e,
    }
}

fn selector_given(obj: &Value) -> bool {
    obj.pointer("/spec/selector").is_some_and(|s| !s.is_null())
}

fn object_meta_of(obj: &Value) -> Result<ObjectMeta, FieldErrors> {
    match obj.get("metadata") {
        None | Some(Value::Null) => Ok(ObjectMeta::default()),
        Some(m) => decode::<ObjectMeta>(m).map_err(|errs| {
            errs.into_iter()
                .map(|mut e| {
                    e.field = if e.field.is_empty() {
                        "metadata".to_string()
                    } else {
                        format!("metadata.{}", e.field)
                    };
                    e
                })
                .collect()
        }),
    }
}

/// Drops repeated identical errors, as upstream's `ToAggregate` does.
fn dedup(errs: FieldErrors) -> FieldErrors {
    let mut seen = std::collections::HashSet::new();
    errs.into_iter()
        .filter(|e| seen.insert(e.to_string()))
        .collect()
}

/// Validates a new object of `group/version, Kind=kind`.
pub fn validate_create(group: &str, version: &str, kind: &str, obj: &Value) -> FieldErrors {
    let errs = match (group, kind) {
        ("", "Pod") => run(obj, pod::validate_pod_create),
        ("", "PodTemplate") => run(obj, core::validate_pod_template),
        ("", "Service") => run(obj, core::validate_service),
        ("", "ConfigMap") => run(obj, core::validate_config_map),
        ("", "Secret") => run(obj, core::validate_secret),
        ("", "Namespace") => run(obj, core::validate_namespace),
        ("", "Node") => run(obj, core::validate_node),
        ("", "PersistentVolumeClaim") => run(obj, storage::validate_pvc),
        ("", "PersistentVolume") => run(obj, storage::validate_pv),
        ("", "Endpoints") => run(obj, core::validate_endpoints),
        ("", "ReplicationController") => run(obj, core::validate_replication_controller),
        ("apps", "Deployment") => run(obj, |d: &apps_v1::Deployment| {
            apps::validate_deployment(d, selector_given(obj))
        }),
        ("apps", "ReplicaSet") => run(obj, |r: &apps_v1::ReplicaSet| {
            apps::validate_replica_set(r, selector_given(obj))
        }),
        ("apps", "StatefulSet") => run(obj, |s: &apps_v1::StatefulSet| {
            apps::validate_stateful_set(s, selector_given(obj))
        }),
        ("apps", "DaemonSet") => run(obj, |d: &apps_v1::DaemonSet| {
            apps::validate_daemon_set(d, selector_given(obj))
        }),
        ("apps", "ControllerRevision") => run(obj, apps::validate_controller_revision),
        ("batch", "Job") => run(obj, batch::validate_job),
        ("batch", "CronJob") => run(obj, batch::validate_cron_job),
        ("networking.k8s.io", "Ingress") => run(obj, networking::validate_ingress),
        ("networking.k8s.io", "NetworkPolicy") => run(obj, networking::validate_network_policy),
        ("rbac.authorization.k8s.io", "Role") => {
            run(obj, |r: &k8s_openapi::api::rbac::v1::Role| {
                other::validate_role(&r.metadata, r.rules.as_deref(), true)
            })
        }
        ("rbac.authorization.k8s.io", "ClusterRole") => {
            run(obj, |r: &k8s_openapi::api::rbac::v1::ClusterRole| {
                other::validate_role(&r.metadata, r.rules.as_deref(), false)
            })
        }
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            run(obj, |r: &k8s_openapi::api::rbac::v1::RoleBinding| {
                other::validate_role_binding(&r.metadata, &r.role_ref, r.subjects.as_deref(), true)
            })
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            run(obj, |r: &k8s_openapi::api::rbac::v1::ClusterRoleBinding| {
                other::validate_role_binding(&r.metadata, &r.role_ref, r.subjects.as_deref(), false)
            })
        }
        ("storage.k8s.io", "StorageClass") => run(obj, storage::validate_storage_class),
        ("scheduling.k8s.io", "PriorityClass") => run(obj, other::validate_priority_class),
        ("coordination.k8s.io", "Lease") => run(obj, other::validate_lease),
        ("policy", "PodDisruptionBudget") => run(obj, other::validate_pdb),
        ("autoscaling", "HorizontalPodAutoscaler") if version == "v1" => {
            run(obj, other::validate_hpa_v1)
        }
        ("autoscaling", "HorizontalPodAutoscaler") => run(obj, other::validate_hpa),
        ("discovery.k8s.io", "EndpointSlice") => run(obj, other::validate_endpoint_slice),
        // CRDs have their own module (schemas, names, versions).
        ("apiextensions.k8s.io", "CustomResourceDefinition") => crate::crd::validate_crd(obj),
        _ => meta_only_create(group, kind, obj),
    };
    dedup(errs)
}

fn meta_only_create(group: &str, kind: &str, obj: &Value) -> FieldErrors {
    let Some(namespaced) = BUILTIN_KINDS.get(&(group.to_string(), kind.to_string())) else {
        return Vec::new();
    };
    if is_virtual(group, kind) {
        return Vec::new();
    }
    match object_meta_of(obj) {
        Ok(m) => meta::validate_object_meta(
            &m,
            *namespaced,
            name_fn_for(group, kind),
            &Path::new("metadata"),
        ),
        Err(e) => e,
    }
}

/// Metadata update rules plus the kind's create rules, minus create-only metadata checks.
fn update_as_create(
    group: &str,
    version: &str,
    kind: &str,
    new: &Value,
    old: &Value,
) -> FieldErrors {
    let mut errs = match (object_meta_of(new), object_meta_of(old)) {
        (Ok(n), Ok(o)) => meta::validate_object_meta_update(&n, &o, &Path::new("metadata")),
        (Err(e), _) | (_, Err(e)) => return e,
    };
    let spec_errs = validate_create(group, version, kind, new);
    errs.extend(
        spec_errs
            .into_iter()
            .filter(|e| e.field != "metadata" && !e.field.starts_with("metadata.")),
    );
    errs
}

/// Validates an update of `old` to `new` (both after defaulting and `PrepareForUpdate`).
pub fn validate_update(
    group: &str,
    version: &str,
    kind: &str,
    new: &Value,
    old: &Value,
) -> FieldErrors {
    let known = BUILTIN_KINDS.contains_key(&(group.to_string(), kind.to_string()));
    if !known || is_virtual(group, kind) {
        return Vec::new();
    }
    let errs = match (group, kind) {
        ("", "Pod") => run2(new, old, pod::validate_pod_update),
        ("", "Service") => run2(new, old, core::validate_service_update),
        ("", "ConfigMap") => run2(new, old, core::validate_config_map_update),
        ("", "Secret") => run2(new, old, core::validate_secret_update),
        ("", "Node") => run2(new, old, core::validate_node_update),
        ("", "PersistentVolumeClaim") => run2(new, old, storage::validate_pvc_update),
        ("", "PersistentVolume") => run2(new, old, storage::validate_pv_update),
        ("", "Namespace") => {
            // Spec and status of a namespace change only through finalize/status.
            let mut errs = update_as_create(group, version, kind, new, old);
            errs.retain(|e| !e.field.starts_with("spec."));
            errs
        }
        ("apps", "Deployment") => run2(new, old, |n: &apps_v1::Deployment, o| {
            apps::validate_deployment_update(n, o, selector_given(new))
        }),
        ("apps", "ReplicaSet") => run2(new, old, |n: &apps_v1::ReplicaSet, o| {
            apps::validate_replica_set_update(n, o, selector_given(new))
        }),
        ("apps", "StatefulSet") => run2(new, old, |n: &apps_v1::StatefulSet, o| {
            apps::validate_stateful_set_update(n, o, selector_given(new))
        }),
        ("apps", "DaemonSet") => run2(new, old, |n: &apps_v1::DaemonSet, o| {
            apps::validate_daemon_set_update(n, o, selector_given(new))
        }),
        ("apps", "ControllerRevision") => run2(new, old, apps::validate_controller_revision_update),
        ("batch", "Job") => run2(new, old, batch::validate_job_update),
        ("batch", "CronJob") => run2(new, old, batch::validate_cron_job_update),
        ("rbac.authorization.k8s.io", "RoleBinding") => {
            let mut errs = update_as_create(group, version, kind, new, old);
            errs.extend(run2(
                new,
                old,
                |n: &k8s_openapi::api::rbac::v1::RoleBinding, o| {
                    other::validate_role_ref_update(&n.role_ref, &o.role_ref)
                },
            ));
            errs
        }
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => {
            let mut errs = update_as_create(group, version, kind, new, old);
            errs.extend(run2(
                new,
                old,
                |n: &k8s_openapi::api::rbac::v1::ClusterRoleBinding, o| {
                    other::validate_role_ref_update(&n.role_ref, &o.role_ref)
                },
            ));
            errs
        }
        ("storage.k8s.io", "StorageClass") => {
            run2(new, old, storage::validate_storage_class_update)
        }
        ("scheduling.k8s.io", "PriorityClass") => {
            run2(new, old, other::validate_priority_class_update)
        }
        ("discovery.k8s.io", "EndpointSlice") => {
            run2(new, old, other::validate_endpoint_slice_update)
        }
        ("apiextensions.k8s.io", "CustomResourceDefinition") => {
            crate::crd::validate_crd_update(new, old)
        }
        _ => update_as_create(group, version, kind, new, old),
    };
    dedup(errs)
}

#[cfg(test)]
mod tests;
