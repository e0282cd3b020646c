//! DefaultStorageClass admission (upstream `plugin/pkg/admission/storage/storageclass/setdefault`):
//! a claim created without `spec.storageClassName` (absent, not `""`) and without the
//! beta class annotation gets the cluster's default StorageClass, the one annotated
//! `storageclass.kubernetes.io/is-default-class: "true"` (the newest if several are).

use serde_json::Value;

use crate::error::Result;
use crate::{meta, Registry, Served};

/// Marks a StorageClass as the default.
pub const IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
const BETA_IS_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";
const BETA_CLASS_ANNOTATION: &str = "volume.beta.kubernetes.io/storage-class";

fn is_default(class: &Value) -> bool {
    let annotations = meta::metadata(class)
        .and_then(|m| m.get("annotations"))
        .and_then(Value::as_object);
    [
        IS_DEFAULT_CLASS_ANNOTATION,
        BETA_IS_DEFAULT_CLASS_ANNOTATION,
    ]
    .iter()
    .any(|k| annotations.and_then(|a| a.get(*k)).and_then(Value::as_str) == Some("true"))
}

/// The default StorageClass's name: the newest default class, ties broken by name
/// (upstream `GetDefaultClass`).
pub fn default_class(registry: &Registry) -> Option<String> {
    let classes = registry.lookup("storage.k8s.io", "v1", "storageclasses")?;
    let mut defaults: Vec<Value> = classes
        .store
        .cached()
        .iter()
        .filter_map(|o| o.value().ok())
        .filter(is_default)
        .collect();
    defaults.sort_by(|a, b| {
        let ts = |v: &Value| {
            meta::meta_str(v, "creationTimestamp")
                .unwrap_or("")
                .to_string()
        };
        ts(b)
            .cmp(&ts(a))
            .then_with(|| meta::name(a).cmp(meta::name(b)))
    });
    defaults.first().map(|c| meta::name(c).to_string())
}

pub fn admit(registry: &Registry, _served: &Served, obj: &mut Value) -> Result<()> {
    let has_class = obj
        .pointer("/spec/storageClassName")
        .is_some_and(|v| !v.is_null())
        || meta::metadata(obj)
            .and_then(|m| m.get("annotations"))
            .and_then(|a| a.get(BETA_CLASS_ANNOTATION))
            .is_some();
    if has_class {
        return Ok(());
    }
    let Some(class) = default_class(registry) else {
        return Ok(());
    };
    if let Some(spec) = obj.as_object_mut().map(|o| {
        o.entry("spec")
            .or_insert_with(|| Value::Object(Default::default()))
    }) {
        if let Some(spec) = spec.as_object_mut() {
            spec.insert("storageClassName".to_string(), Value::String(class));
        }
    }
    Ok(())
}
