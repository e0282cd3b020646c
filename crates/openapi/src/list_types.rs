//! Adds the merge markers k8s-openapi's schemas lack: `x-kubernetes-patch-strategy`,
//! `x-kubernetes-patch-merge-key`, `x-kubernetes-list-type`,
//! `x-kubernetes-list-map-keys` and `x-kubernetes-map-type`.
//!
//! kubectl's client-side `apply` builds strategic merge patches from these (via the
//! OpenAPI v3 document), so without them it would replace whole container lists.
//! The markers come from the table in `apis::schema` (upstream's `types.go` tags).

use serde_json::{json, Value};

/// Annotates the properties of one named schema in place.
pub(crate) fn annotate_list_types(type_name: &str, schema: &mut Value) {
    if apis::schema::is_struct_atomic(type_name) {
        schema["x-kubernetes-map-type"] = json!("atomic");
    }
    let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) else {
        return;
    };
    for (field, prop) in props.iter_mut() {
        let Some(markers) = apis::schema::field_markers(type_name, field) else {
            continue;
        };
        if let Some(strategy) = markers.strategy.extension_value() {
            prop["x-kubernetes-patch-strategy"] = json!(strategy);
        }
        if let Some(key) = markers.merge_key {
            prop["x-kubernetes-patch-merge-key"] = json!(key);
        }
        if let Some(list_type) = &markers.list_type {
            prop["x-kubernetes-list-type"] = json!(list_type.as_str());
            if !list_type.map_keys().is_empty() {
                prop["x-kubernetes-list-map-keys"] = json!(list_type.map_keys());
            }
        }
        if markers.map_atomic {
            prop["x-kubernetes-map-type"] = json!("atomic");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn containers_get_merge_markers() {
        let mut schema = json!({"properties": {"containers": {"type": "array"}, "hostname": {"type": "string"}}});
        annotate_list_types("io.k8s.api.core.v1.PodSpec", &mut schema);
        let c = &schema["properties"]["containers"];
        assert_eq!(c["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(c["x-kubernetes-patch-merge-key"], "name");
        assert_eq!(c["x-kubernetes-list-type"], "map");
        assert_eq!(c["x-kubernetes-list-map-keys"], json!(["name"]));
        assert!(schema["properties"]["hostname"]
            .get("x-kubernetes-list-type")
            .is_none());
    }
}
