//! apps/v1 rules beyond the generic strategy: a DaemonSet's template generation
//! (upstream `daemonSetStrategy`), served in apps/v1 as the annotation
//! `deprecated.daemonset.template.generation`. It starts at 1 and goes up by one with
//! every change to `spec.template`; clients cannot set it. The DaemonSet controller
//! labels pods with it (`pod-template-generation`).

use std::sync::Arc;

use apis::{FieldErrors, ResourceInfo};
use serde_json::{json, Value};

use crate::cacher::ObjectAttrs;
use crate::strategy::{BuiltinStrategy, Strategy};

pub const TEMPLATE_GENERATION_ANNOTATION: &str = "deprecated.daemonset.template.generation";

pub struct DaemonSetStrategy {
    inner: BuiltinStrategy,
}

impl DaemonSetStrategy {
    pub fn new(info: Arc<ResourceInfo>) -> Self {
        DaemonSetStrategy {
            inner: BuiltinStrategy::new(info),
        }
    }
}

fn template_generation(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/annotations")?
        .get(TEMPLATE_GENERATION_ANNOTATION)?
        .as_str()?
        .parse()
        .ok()
}

fn set_template_generation(obj: &mut Value, generation: i64) {
    let Some(meta) = obj
        .as_object_mut()
        .map(|m| m.entry("metadata").or_insert_with(|| json!({})))
    else {
        return;
    };
    let Some(meta) = meta.as_object_mut() else {
        return;
    };
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    if let Some(a) = annotations.as_object_mut() {
        a.insert(
            TEMPLATE_GENERATION_ANNOTATION.to_string(),
            json!(generation.to_string()),
        );
    }
}

impl Strategy for DaemonSetStrategy {
    fn info(&self) -> &Arc<ResourceInfo> {
        &self.inner.info
    }
    fn default(&self, obj: &mut Value) {
        self.inner.default(obj);
    }
    fn prepare_for_create(&self, obj: &mut Value) {
        self.inner.prepare_for_create(obj);
        let generation = template_generation(obj).filter(|g| *g >= 1).unwrap_or(1);
        set_template_generation(obj, generation);
    }
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        self.inner.prepare_for_update(new, old);
        // Compared after defaulting, as the stored object is.
        let mut defaulted = new.clone();
        self.inner.default(&mut defaulted);
        let old_generation = template_generation(old).unwrap_or(1);
        let changed = defaulted.pointer("/spec/template") != old.pointer("/spec/template");
        set_template_generation(
            new,
            if changed {
                old_generation + 1
            } else {
                old_generation
            },
        );
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

#[cfg(test)]
mod tests {
    use super::*;

    fn strategy() -> DaemonSetStrategy {
        let info = apis::builtin_resources()
            .into_iter()
            .find(|r| r.group == "apps" && r.resource == "daemonsets")
            .expect("daemonsets are served");
        DaemonSetStrategy::new(info)
    }

    fn ds(image: &str) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "a"},
               "spec": {"selector": {"matchLabels": {"app": "a"}},
                        "template": {"metadata": {"labels": {"app": "a"}},
                                     "spec": {"containers": [{"name": "c", "image": image}]}}}})
    }

    #[test]
    fn template_generation_starts_at_one_and_follows_template_changes() {
        let s = strategy();
        let mut created = ds("a:1");
        s.prepare_for_create(&mut created);
        s.default(&mut created);
        assert_eq!(template_generation(&created), Some(1));

        // Other changes (and a client's own value) leave it alone.
        let mut relabelled = created.clone();
        relabelled["metadata"]["labels"] = json!({"x": "y"});
        relabelled["metadata"]["annotations"][TEMPLATE_GENERATION_ANNOTATION] = json!("7");
        s.prepare_for_update(&mut relabelled, &created);
        assert_eq!(template_generation(&relabelled), Some(1));

        // An undefaulted but otherwise equal template is no change.
        let mut same = ds("a:1");
        s.prepare_for_update(&mut same, &created);
        assert_eq!(template_generation(&same), Some(1));

        let mut new_image = ds("a:2");
        s.prepare_for_update(&mut new_image, &created);
        assert_eq!(template_generation(&new_image), Some(2));
    }
}
