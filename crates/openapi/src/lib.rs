//! OpenAPI v2/v3 documents for the served resources.
//!
//! kubectl reads these: `kubectl explain` walks the v3 schemas (descriptions,
//! `x-kubernetes-group-version-kind`), `kubectl apply/create/edit` look for the
//! `fieldValidation` parameter on a kind's PATCH operation to hand validation to the
//! server, and client-side apply takes strategic-merge markers from the schemas.
//!
//! Schemas come from k8s-openapi's schemars impls, generated with
//! `#/components/schemas/` (v3) or `#/definitions/` (v2) references and named as
//! upstream names them (`io.k8s.api.apps.v1.Deployment`). Operations are derived
//! from the resource table. Output is deterministic: every object's keys are sorted,
//! so [`document_hash`] is stable and can serve as the index's `?hash=` and an ETag.
//!
//! Documents are large (core/v1 is ~1 MB); generate them once per resource set and
//! cache them.

mod crd;
mod kinds;
mod list_types;
mod operations;
mod schemas;
mod v2;
mod v2_protobuf;
mod v3;

use serde_json::Value;
use sha2::{Digest, Sha512};

pub use crd::{crd_schema_document, merge_documents, CustomResourceSchema};
pub use v2::v2_document;
pub use v2_protobuf::v2_protobuf;
pub use v3::{v3_document, v3_document_for_path, v3_index, v3_index_from_hashes, v3_index_paths};

/// The bytes a document is served as (compact JSON); [`document_hash`] hashes exactly these.
pub fn document_bytes(doc: &Value) -> Vec<u8> {
    // Serializing a `Value` cannot fail: keys are strings and numbers are finite.
    serde_json::to_vec(doc).unwrap_or_default()
}

/// Upstream's document hash: upper-case hex SHA-512 of the served bytes.
pub fn document_hash(doc: &Value) -> String {
    Sha512::digest(document_bytes(doc))
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect()
}

/// Sorts every object's keys, recursively, so equal documents serialize equally.
pub(crate) fn canonicalize(value: &mut Value) {
    match value {
        Value::Object(map) => {
            map.sort_keys();
            for v in map.values_mut() {
                canonicalize(v);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(canonicalize),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Arc;

    use apis::{builtin_resources, ResourceInfo, Subresource};
    use serde_json::json;

    /// Every `$ref` in `doc`, as the schema name it points at.
    fn refs(doc: &Value, prefix: &str, out: &mut BTreeSet<String>) {
        match doc {
            Value::Object(map) => {
                for (k, v) in map {
                    if k == "properties" {
                        // Property names are data (JSONSchemaProps has a field named `$ref`).
                        v.as_object()
                            .into_iter()
                            .flat_map(|p| p.values())
                            .for_each(|p| refs(p, prefix, out));
                    } else if k == "$ref" {
                        let r = v.as_str().unwrap_or_default();
                        assert!(r.starts_with(prefix), "foreign ref {r}");
                        out.insert(r.trim_start_matches(prefix).to_string());
                    } else {
                        refs(v, prefix, out);
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, prefix, out)),
            _ => {}
        }
    }

    fn assert_refs_resolve(doc: &Value, prefix: &str, pointer: &str) {
        let mut names = BTreeSet::new();
        refs(doc, prefix, &mut names);
        let defs = doc
            .pointer(pointer)
            .and_then(Value::as_object)
            .expect("schemas");
        for name in names {
            assert!(defs.contains_key(&name), "unresolved ref {name}");
        }
    }

    fn operation<'a>(doc: &'a Value, path: &str, method: &str) -> &'a Value {
        doc.pointer(&format!(
            "/paths/{}/{method}",
            path.replace('~', "~0").replace('/', "~1")
        ))
        .unwrap_or_else(|| panic!("no {method} {path}"))
    }

    fn has_param(op: &Value, name: &str) -> bool {
        op["parameters"]
            .as_array()
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "query"))
    }

    #[test]
    fn apps_v1_document_has_deployment_and_field_validation() {
        let doc = v3_document("apps", "v1", &builtin_resources(), &[]);
        assert_eq!(doc["openapi"], "3.0.0");
        let deploy = &doc["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"];
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(deploy["description"]
            .as_str()
            .is_some_and(|d| d.contains("declarative updates")));
        assert!(doc["components"]["schemas"]["io.k8s.api.apps.v1.DeploymentList"].is_object());
        assert!(doc["components"]["schemas"]["io.k8s.api.autoscaling.v1.Scale"].is_object());

        let create = operation(
            &doc,
            "/apis/apps/v1/namespaces/{namespace}/deployments",
            "post",
        );
        assert_eq!(create["operationId"], "createAppsV1NamespacedDeployment");
        assert_eq!(create["x-kubernetes-action"], "post");
        assert_eq!(
            create["x-kubernetes-group-version-kind"],
            json!({"group": "apps", "kind": "Deployment", "version": "v1"})
        );
        for p in ["fieldValidation", "dryRun", "fieldManager"] {
            assert!(has_param(create, p), "create lacks {p}");
        }
        let patch = operation(
            &doc,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            "patch",
        );
        assert_eq!(patch["operationId"], "patchAppsV1NamespacedDeployment");
        assert!(has_param(patch, "fieldValidation") && has_param(patch, "force"));
        assert!(
            patch["requestBody"]["content"]["application/strategic-merge-patch+json"].is_object()
        );
        let put = operation(
            &doc,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}",
            "put",
        );
        assert!(has_param(put, "fieldValidation"));
        let pretty = doc
            .pointer("/paths/~1apis~1apps~1v1~1namespaces~1{namespace}~1deployments/parameters")
            .and_then(Value::as_array)
            .is_some_and(|ps| ps.iter().any(|p| p["name"] == "pretty"));
        assert!(pretty);
        let scale = operation(
            &doc,
            "/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale",
            "patch",
        );
        assert_eq!(scale["x-kubernetes-group-version-kind"]["kind"], "Scale");
        assert!(has_param(scale, "fieldValidation"));
        assert_eq!(
            operation(
                &doc,
                "/apis/apps/v1/namespaces/{namespace}/deployments",
                "delete"
            )["operationId"],
            "deleteAppsV1CollectionNamespacedDeployment"
        );
        assert_eq!(
            operation(&doc, "/apis/apps/v1/deployments", "get")["operationId"],
            "listAppsV1DeploymentForAllNamespaces"
        );
        // Strategic-merge markers reach the published schemas.
        let containers =
            &doc["components"]["schemas"]["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"];
        assert_eq!(containers["x-kubernetes-patch-merge-key"], "name");
    }

    #[test]
    fn core_v1_document_covers_core_kinds() {
        let doc = v3_document("", "v1", &builtin_resources(), &[]);
        let schemas = &doc["components"]["schemas"];
        let pod = &schemas["io.k8s.api.core.v1.Pod"];
        assert_eq!(pod["x-kubernetes-group-version-kind"][0]["kind"], "Pod");
        assert_eq!(
            pod["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(
            schemas["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["name"]
                ["description"]
                .is_string()
        );
        assert_eq!(
            operation(&doc, "/api/v1/namespaces", "post")["operationId"],
            "createCoreV1Namespace"
        );
        assert_eq!(
            operation(
                &doc,
                "/api/v1/namespaces/{namespace}/pods/{name}/log",
                "get"
            )["operationId"],
            "readCoreV1NamespacedPodLog"
        );
        assert_eq!(
            operation(
                &doc,
                "/api/v1/namespaces/{namespace}/pods/{name}/exec",
                "post"
            )["operationId"],
            "connectCoreV1PostNamespacedPodExec"
        );
        assert_eq!(
            operation(
                &doc,
                "/api/v1/namespaces/{namespace}/pods/{name}/eviction",
                "post"
            )["x-kubernetes-group-version-kind"]["group"],
            "policy"
        );
        assert!(schemas["io.k8s.api.authentication.v1.TokenRequest"].is_object());
        assert_eq!(
            operation(&doc, "/api/v1/", "get")["operationId"],
            "getCoreV1APIResources"
        );
    }

    #[test]
    fn every_ref_resolves_in_every_document() {
        let resources = builtin_resources();
        for path in v3_index_paths(&resources) {
            let doc = v3_document_for_path(&path, &resources, &[])
                .unwrap_or_else(|| panic!("no document for {path}"));
            assert_refs_resolve(&doc, "#/components/schemas/", "/components/schemas");
        }
        let v2 = v2_document(&resources, &[]);
        assert_eq!(v2["swagger"], "2.0");
        assert_refs_resolve(&v2, "#/definitions/", "/definitions");
        assert!(has_param(
            operation(
                &v2,
                "/apis/apps/v1/namespaces/{namespace}/deployments",
                "post"
            ),
            "fieldValidation"
        ));
    }

    #[test]
    fn documents_and_index_are_deterministic() {
        let resources = builtin_resources();
        let a = v3_document("batch", "v1", &resources, &[]);
        let b = v3_document("batch", "v1", &resources, &[]);
        assert_eq!(document_bytes(&a), document_bytes(&b));
        assert_eq!(document_hash(&a).len(), 128);
        let index = v3_index(&resources, &[]);
        let entry = &index["paths"]["apis/batch/v1"]["serverRelativeURL"];
        assert_eq!(
            entry,
            &json!(format!(
                "/openapi/v3/apis/batch/v1?hash={}",
                document_hash(&a)
            ))
        );
        for key in [
            "api",
            "api/v1",
            "apis",
            "apis/apps",
            "apis/apps/v1",
            "apis/autoscaling/v2",
        ] {
            assert!(index["paths"].get(key).is_some(), "index lacks {key}");
        }
    }

    #[test]
    fn every_builtin_kind_has_a_real_schema() {
        for r in builtin_resources() {
            assert!(
                kinds::KNOWN_KINDS.contains(&(
                    r.group.as_str(),
                    r.version.as_str(),
                    r.kind.as_str()
                )),
                "no k8s-openapi type for {}/{} {}",
                r.group,
                r.version,
                r.kind
            );
        }
    }

    fn crontab_resource() -> ResourceInfo {
        ResourceInfo {
            group: "stable.example.com".into(),
            version: "v1".into(),
            resource: "crontabs".into(),
            singular: "crontab".into(),
            kind: "CronTab".into(),
            list_kind: "CronTabList".into(),
            namespaced: true,
            verbs: apis::resources::ALL_VERBS
                .iter()
                .map(|v| v.to_string())
                .collect(),
            short_names: vec!["ct".into()],
            categories: Vec::new(),
            subresources: vec![Subresource {
                name: "status".into(),
                kind: "CronTab".into(),
                group: String::new(),
                version: String::new(),
                verbs: vec!["get".into(), "patch".into(), "update".into()],
            }],
            storage_group: "stable.example.com".into(),
            storage_resource: "crontabs".into(),
        }
    }

    #[test]
    fn crd_documents_publish_the_schema_with_gvk() {
        let r = crontab_resource();
        let schema = json!({"type": "object", "properties": {
            "spec": {"type": "object", "description": "The spec.", "properties": {"cronSpec": {"type": "string"}, "replicas": {"type": "integer"}}},
            "metadata": {"type": "object"},
        }});
        let doc = crd_schema_document(&[CustomResourceSchema {
            resource: &r,
            schema: Some(&schema),
        }]);
        let s = &doc["components"]["schemas"]["com.example.stable.v1.CronTab"];
        assert_eq!(
            s["x-kubernetes-group-version-kind"],
            json!([{"group": "stable.example.com", "kind": "CronTab", "version": "v1"}])
        );
        assert_eq!(
            s["properties"]["spec"]["properties"]["cronSpec"]["type"],
            "string"
        );
        assert_eq!(
            s["properties"]["metadata"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(doc["components"]["schemas"]["com.example.stable.v1.CronTabList"].is_object());
        let patch = operation(
            &doc,
            "/apis/stable.example.com/v1/namespaces/{namespace}/crontabs/{name}",
            "patch",
        );
        assert_eq!(
            patch["operationId"],
            "patchStableExampleComV1NamespacedCronTab"
        );
        assert!(has_param(patch, "fieldValidation"));
        assert_refs_resolve(&doc, "#/components/schemas/", "/components/schemas");

        let merged = merge_documents(&[v3_document("", "v1", &builtin_resources(), &[]), doc]);
        assert!(merged["components"]["schemas"]["com.example.stable.v1.CronTab"].is_object());
        assert!(merged["components"]["schemas"]["io.k8s.api.core.v1.Pod"].is_object());

        // The server-facing entry points take stored CRD objects.
        let crd = json!({"spec": {"group": "stable.example.com", "names": {"plural": "crontabs", "kind": "CronTab"},
                                  "versions": [{"name": "v1", "schema": {"openAPIV3Schema": schema}}]}});
        let mut resources = builtin_resources();
        resources.push(Arc::new(r.clone()));
        let v3 = v3_document(
            "stable.example.com",
            "v1",
            &resources,
            std::slice::from_ref(&crd),
        );
        let cron = &v3["components"]["schemas"]["com.example.stable.v1.CronTab"];
        assert_eq!(cron["properties"]["spec"]["description"], "The spec.");
        let v2 = v2_document(&resources, std::slice::from_ref(&crd));
        assert_eq!(
            v2["definitions"]["com.example.stable.v1.CronTab"]["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert_refs_resolve(&v2, "#/definitions/", "/definitions");
    }

    #[test]
    fn unknown_kinds_get_placeholders() {
        let mut r = crontab_resource();
        r.group = "example.com".into();
        let doc = v3_document("example.com", "v1", &[Arc::new(r)], &[]);
        let s = &doc["components"]["schemas"]["com.example.v1.CronTab"];
        assert_eq!(s["x-kubernetes-preserve-unknown-fields"], true);
        assert_refs_resolve(&doc, "#/components/schemas/", "/components/schemas");
    }
}
