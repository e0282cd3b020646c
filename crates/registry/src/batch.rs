//! Jobs: the server generates the selector and the labels that tie pods to their Job
//! (they need the Job's uid, so defaulting cannot do it).

use std::sync::Arc;

use apis::{FieldErrors, ResourceInfo};
use serde_json::{json, Value};

use crate::cacher::ObjectAttrs;
use crate::meta;
use crate::strategy::{BuiltinStrategy, Strategy};

pub struct JobStrategy {
    inner: BuiltinStrategy,
}

impl JobStrategy {
    pub fn new(info: Arc<ResourceInfo>) -> Self {
        JobStrategy {
            inner: BuiltinStrategy::new(info),
        }
    }
}

/// Adds `controller-uid`/`job-name` labels (both spellings, as upstream) to the pod
/// template and selects on the uid, unless the user manages the selector.
pub fn generate_selector(obj: &mut Value) {
    if obj.pointer("/spec/manualSelector").and_then(Value::as_bool) == Some(true) {
        return;
    }
    let uid = meta::uid(obj).to_string();
    let name = meta::name(obj).to_string();
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let template = spec.entry("template").or_insert_with(|| json!({}));
    if let Some(t) = template.as_object_mut() {
        let tmeta = t.entry("metadata").or_insert_with(|| json!({}));
        if let Some(m) = tmeta.as_object_mut() {
            let labels = m.entry("labels").or_insert_with(|| json!({}));
            if let Some(l) = labels.as_object_mut() {
                l.insert("batch.kubernetes.io/controller-uid".into(), json!(uid));
                l.insert("batch.kubernetes.io/job-name".into(), json!(name));
                l.insert("controller-uid".into(), json!(uid));
                l.insert("job-name".into(), json!(name));
            }
        }
    }
    if spec.get("selector").is_none() {
        spec.insert(
            "selector".into(),
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}),
        );
    }
}

impl Strategy for JobStrategy {
    fn info(&self) -> &Arc<ResourceInfo> {
        &self.inner.info
    }
    fn default(&self, obj: &mut Value) {
        self.inner.default(obj);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        self.inner.prepare_for_create(obj);
        generate_selector(obj);
    }
    fn validate(&self, obj: &Value) -> FieldErrors {
        self.inner.validate(obj)
    }
    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        self.inner.validate_update(new, old)
    }
    fn has_generation(&self) -> bool {
        true
    }
    fn attrs(&self, obj: &Value) -> ObjectAttrs {
        self.inner.attrs(obj)
    }
}
