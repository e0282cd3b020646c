//! Strategies: the per-resource rules the generic [`crate::store::Store`] applies.
//!
//! Like upstream's `RESTCreateStrategy`/`RESTUpdateStrategy`, a strategy decides how a
//! resource is prepared, defaulted and validated on create and update, whether it has
//! a generation, and how its status subresource splits from its spec. The store does the
//! generic metadata work (names, uid, timestamps, resourceVersion, finalizers).

use std::sync::Arc;

use apis::{FieldErrors, ResourceInfo};
use serde_json::Value;

use crate::cacher::ObjectAttrs;
use crate::error::Result;
use crate::meta;

pub trait Strategy: Send + Sync {
    fn info(&self) -> &Arc<ResourceInfo>;

    /// Upstream defaulting for the served version.
    fn default(&self, _obj: &mut Value) {}

    /// Resets fields a client may not set on create (e.g. status).
    fn prepare_for_create(&self, _obj: &mut Value) {}

    /// Carries over fields a client may not change on update (e.g. status on the main resource).
    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        if self.info().has_subresource("status") {
            copy_field(new, old, "status");
        }
    }

    /// For the status subresource: everything but status comes from the old object.
    fn prepare_for_status_update(&self, new: &mut Value, old: &Value) {
        let status = new.get("status").cloned();
        let mut merged = old.clone();
        match status {
            Some(s) => {
                if let Some(m) = merged.as_object_mut() {
                    m.insert("status".to_string(), s);
                }
            }
            None => {
                if let Some(m) = merged.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        // Keep the caller's resourceVersion for the precondition.
        let rv = meta::resource_version(new).to_string();
        meta::set_meta(&mut merged, "resourceVersion", Value::String(rv));
        *new = merged;
    }

    fn validate(&self, _obj: &Value) -> FieldErrors {
        Vec::new()
    }

    /// Paths of fields the type does not declare (for `fieldValidation`).
    fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        let info = self.info();
        apis::decode::strict_unknown_fields(&info.group, &info.version, &info.kind, obj)
    }

    fn validate_update(&self, _new: &Value, _old: &Value) -> FieldErrors {
        Vec::new()
    }

    /// Whether `metadata.generation` is tracked (bumped on spec changes).
    fn has_generation(&self) -> bool {
        false
    }

    /// Labels and selectable fields, for selectors and the watch cache.
    fn attrs(&self, obj: &Value) -> ObjectAttrs {
        default_attrs(obj, &self.info().group, &self.info().resource)
    }

    /// PUT on a missing object creates it (upstream: most resources say no; a few yes).
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Grace period for a graceful deletion, or `None` to delete at once.
    fn graceful_delete_period(&self, _obj: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// Whether a delete without a propagation policy orphans dependents. Upstream keeps
    /// this for `v1` ReplicationControllers and `batch/v1` Jobs, for compatibility with
    /// clients from before garbage collection; everything else deletes in the background.
    fn orphans_dependents_by_default(&self) -> bool {
        let info = self.info();
        matches!(
            (info.group.as_str(), info.resource.as_str()),
            ("", "replicationcontrollers") | ("batch", "jobs")
        )
    }

    /// Whether deletion must wait for something other than finalizers (namespaces
    /// wait for `spec.finalizers`).
    fn deletion_pending(&self, _obj: &Value) -> bool {
        false
    }

    /// Changes made when an object is marked for deletion (e.g. phase Terminating).
    fn prepare_for_delete(&self, _obj: &mut Value) {}

    /// Whether the served version differs from the stored form.
    fn converts(&self) -> bool {
        false
    }

    /// Stored form → served version.
    fn to_served(&self, _obj: &mut Value) {}

    /// Served version → stored form.
    fn to_storage(&self, _obj: &mut Value) {}

    /// Reserve resources (cluster IPs, node ports) for a new object.
    fn allocate(&self, _obj: &mut Value) -> Result<()> {
        Ok(())
    }

    /// Adjust reservations when an object changes.
    fn reallocate(&self, _new: &mut Value, _old: &Value) -> Result<()> {
        Ok(())
    }

    /// Release what `allocate` reserved (after deletion, or a failed create).
    fn release(&self, _obj: &Value) {}
}

fn copy_field(new: &mut Value, old: &Value, field: &str) {
    let Some(map) = new.as_object_mut() else {
        return;
    };
    match old.get(field) {
        Some(v) => {
            map.insert(field.to_string(), v.clone());
        }
        None => {
            map.remove(field);
        }
    }
}

/// Labels and every field selector the resource supports (`apis::selectors`).
pub fn default_attrs(obj: &Value, group: &str, resource: &str) -> ObjectAttrs {
    let labels = meta::labels(obj)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default();
    let mut fields: Vec<(String, String)> = apis::selectors::supported_fields(group, resource)
        .iter()
        .map(|f| {
            (
                f.to_string(),
                apis::selectors::field_value(group, resource, obj, f).unwrap_or_default(),
            )
        })
        .collect();
    for (name, getter) in [
        ("metadata.name", meta::name as fn(&Value) -> &str),
        ("metadata.namespace", meta::namespace),
    ] {
        if !fields.iter().any(|(k, _)| k == name) {
            fields.push((name.to_string(), getter(obj).to_string()));
        }
    }
    ObjectAttrs { labels, fields }
}

/// The strategy of built-in kinds without special rules: upstream defaulting and
/// validation from `apis`, generation tracking where upstream tracks it.
pub struct BuiltinStrategy {
    pub info: Arc<ResourceInfo>,
    pub generation: bool,
    pub create_on_update: bool,
}

impl BuiltinStrategy {
    pub fn new(info: Arc<ResourceInfo>) -> Self {
        let generation = matches!(
            (info.group.as_str(), info.resource.as_str()),
            ("apps", _)
                | ("batch", _)
                | ("", "replicationcontrollers")
                | ("autoscaling", _)
                | ("policy", "poddisruptionbudgets")
                | ("networking.k8s.io", "ingresses" | "networkpolicies")
                | ("apiextensions.k8s.io", _)
        );
        let create_on_update = matches!(
            (info.group.as_str(), info.resource.as_str()),
            ("", "endpoints" | "nodes" | "events")
                | ("coordination.k8s.io", "leases")
                | ("discovery.k8s.io", _)
                | ("rbac.authorization.k8s.io", _)
                | ("", "limitranges" | "podtemplates")
        );
        BuiltinStrategy {
            info,
            generation,
            create_on_update,
        }
    }
}

impl Strategy for BuiltinStrategy {
    fn info(&self) -> &Arc<ResourceInfo> {
        &self.info
    }

    fn default(&self, obj: &mut Value) {
        apis::defaults::apply(&self.info.group, &self.info.version, &self.info.kind, obj);
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        // Nodes register with their status (upstream's node strategy keeps it).
        if self.info.has_subresource("status")
            && !matches!(self.info.resource.as_str(), "namespaces" | "nodes")
        {
            if let Some(m) = obj.as_object_mut() {
                m.remove("status");
            }
        }
    }

    fn validate(&self, obj: &Value) -> FieldErrors {
        apis::validation::validate_create(
            &self.info.group,
            &self.info.version,
            &self.info.kind,
            obj,
        )
    }

    fn validate_update(&self, new: &Value, old: &Value) -> FieldErrors {
        apis::validation::validate_update(
            &self.info.group,
            &self.info.version,
            &self.info.kind,
            new,
            old,
        )
    }

    fn has_generation(&self) -> bool {
        self.generation
    }

    fn attrs(&self, obj: &Value) -> ObjectAttrs {
        default_attrs(obj, &self.info.storage_group, &self.info.storage_resource)
    }

    fn allow_create_on_update(&self) -> bool {
        self.create_on_update
    }
}

/// `events.k8s.io/v1` Events, stored in core `v1` form (shared with core Events).
pub struct EventsV1Strategy {
    pub inner: BuiltinStrategy,
}

impl Strategy for EventsV1Strategy {
    fn info(&self) -> &Arc<ResourceInfo> {
        &self.inner.info
    }
    fn validate(&self, obj: &Value) -> FieldErrors {
        apis::validation::validate_create("events.k8s.io", "v1", "Event", obj)
    }
    fn attrs(&self, obj: &Value) -> ObjectAttrs {
        default_attrs(obj, "", "events")
    }
    fn allow_create_on_update(&self) -> bool {
        true
    }
    fn unknown_fields(&self, obj: &Value) -> Vec<String> {
        apis::decode::strict_unknown_fields("events.k8s.io", "v1", "Event", obj)
    }
    fn converts(&self) -> bool {
        true
    }
    fn to_served(&self, obj: &mut Value) {
        apis::conversion::event_from_core(obj);
    }
    fn to_storage(&self, obj: &mut Value) {
        apis::conversion::event_to_core(obj);
    }
}
