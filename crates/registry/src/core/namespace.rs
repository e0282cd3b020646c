//! Namespaces: `Active` on create; deletion marks them `Terminating` until the
//! namespace controller has emptied them and cleared `spec.finalizers`.

use std::sync::Arc;

use apis::{FieldErrors, ResourceInfo};
use serde_json::{json, Value};

use crate::cacher::ObjectAttrs;
use crate::strategy::{default_attrs, BuiltinStrategy, Strategy};

/// Namespaces the server keeps for itself.
pub const PROTECTED: &[&str] = &["default", "kube-system", "kube-public"];

pub struct NamespaceStrategy {
    inner: BuiltinStrategy,
}

impl NamespaceStrategy {
    pub fn new(info: Arc<ResourceInfo>) -> Self {
        NamespaceStrategy {
            inner: BuiltinStrategy::new(info),
        }
    }
}

/// `spec.finalizers` of a namespace.
pub fn spec_finalizers(obj: &Value) -> Vec<String> {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

impl Strategy for NamespaceStrategy {
    fn info(&self) -> &Arc<ResourceInfo> {
        &self.inner.info
    }
    fn default(&self, obj: &mut Value) {
        self.inner.default(obj);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        apis::defaults::namespace_prepare_for_create(obj);
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".to_string(), json!({"phase": "Active"}));
        }
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        // Status and spec.finalizers change only through /status and /finalize.
        if let Some(m) = new.as_object_mut() {
            if let Some(s) = old.get("status") {
                m.insert("status".to_string(), s.clone());
            }
            let fins = old
                .pointer("/spec/finalizers")
                .cloned()
                .unwrap_or(json!([]));
            let spec = m.entry("spec").or_insert_with(|| json!({}));
            if let Some(s) = spec.as_object_mut() {
                s.insert("finalizers".to_string(), fins);
            }
        }
    }
    fn validate(&self, obj: &Value) -> FieldErrors {
        self.inner.validate(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        self.inner.validate_update(new, old)
    }
    fn deletion_pending(&self, obj: &Value) -> bool {
        !spec_finalizers(obj).is_empty()
    }
    fn prepare_for_delete(&self, obj: &mut Value) {
        if let Some(m) = obj.as_object_mut() {
            m.insert("status".to_string(), json!({"phase": "Terminating"}));
        }
    }
    fn attrs(&self, obj: &Value) -> ObjectAttrs {
        default_attrs(obj, "", "namespaces")
    }
}
