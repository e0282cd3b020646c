//! CustomResourceDefinition support (upstream apiextensions-apiserver): validation
//! and defaulting of CRDs ([`validate_crd`], [`default_crd`]), what a CRD serves
//! ([`resource_infos`], [`established_status`], [`printer_columns`], the scale
//! subresource paths), and schema-driven validation, pruning and defaulting of
//! custom objects ([`SchemaValidator`]).
//!
//! CRDs and custom objects are handled as `serde_json::Value` so that unknown
//! fields survive until the schema decides about them.

mod gofmt;
mod schema;
mod served;
mod structural;
mod validation;

pub use schema::{SchemaValidator, OBJECT_META_FIELDS};
pub use served::{
    accepted_names, compare_kube_aware_versions, established_status, get_path, printer_columns,
    read_replicas, read_selector, resource_infos, scale_for, scale_paths, served_printer_columns,
    served_versions, set_path, sort_versions, ScaleError, ScalePaths,
};
pub use validation::{default_crd, validate_crd, validate_crd_update};

use serde_json::Value;

/// The string at `path` (object keys), or `""`.
fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |cur, k| cur.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// `spec.versions` of a CRD spec.
fn versions(spec: &Value) -> &[Value] {
    spec.get("versions")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The version entry named `name`.
fn version_entry<'a>(crd: &'a Value, name: &str) -> Option<&'a Value> {
    versions(crd.get("spec")?)
        .iter()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(name))
}

/// The name of the (first) version marked `storage: true`.
pub fn storage_version(crd: &Value) -> Option<String> {
    let spec = crd.get("spec")?;
    versions(spec)
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool).unwrap_or(false))
        .and_then(|v| v.get("name").and_then(Value::as_str))
        .map(str::to_string)
}

/// Whether `status.conditions` has `type` with status `True`.
fn condition_is_true(crd: &Value, ty: &str) -> bool {
    crd.pointer("/status/conditions")
        .and_then(Value::as_array)
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                c.get("type").and_then(Value::as_str) == Some(ty)
                    && c.get("status").and_then(Value::as_str) == Some("True")
            })
        })
}

/// The CronTab CRD from the Kubernetes docs, with status and scale subresources.
#[cfg(test)]
fn crontab_crd() -> Value {
    serde_json::json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.stable.example.com"},
        "spec": {
            "group": "stable.example.com",
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "properties": {
                        "spec": {"type": "object", "properties": {
                            "cronSpec": {"type": "string"},
                            "image": {"type": "string"},
                            "replicas": {"type": "integer", "minimum": 1, "maximum": 10}
                        }},
                        "status": {"type": "object", "properties": {
                            "replicas": {"type": "integer"},
                            "labelSelector": {"type": "string"}
                        }}
                    }
                }},
                "subresources": {
                    "status": {},
                    "scale": {
                        "specReplicasPath": ".spec.replicas",
                        "statusReplicasPath": ".status.replicas",
                        "labelSelectorPath": ".status.labelSelector"
                    }
                },
                "additionalPrinterColumns": [
                    {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                    {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"}
                ]
            }],
            "scope": "Namespaced",
            "names": {"plural": "crontabs", "singular": "crontab", "kind": "CronTab", "shortNames": ["ct"]}
        }
    })
}
