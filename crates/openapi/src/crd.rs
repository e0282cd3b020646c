//! OpenAPI for custom resources: a CRD version's `openAPIV3Schema` published under
//! upstream's reversed-group name (`com.example.stable.v1.CronTab`) with `apiVersion`,
//! `kind` and an `ObjectMeta` reference for `metadata`, a `<Kind>List` schema, the GVK
//! extensions and the same operations built-in resources get.

use apis::ResourceInfo;
use serde_json::{json, Map, Value};

use crate::operations;
use crate::schemas::{
    object_metadata_property, object_schema, reversed_group_name, Gvk, Schemas, Style, OBJECT_META,
};
use crate::v3;

/// One served version of a CRD.
#[derive(Clone, Copy, Debug)]
pub struct CustomResourceSchema<'a> {
    /// The resource-table entry built from the CRD (group, version, kind, list kind,
    /// plural, scope, subresources).
    pub resource: &'a ResourceInfo,
    /// The version's `schema.openAPIV3Schema`; `None` publishes a permissive schema.
    pub schema: Option<&'a Value>,
}

/// Adds the kind's schema (and its dependencies) to a document being built.
pub(crate) fn add_custom_schema(schemas: &mut Schemas, crd: &CustomResourceSchema<'_>) -> String {
    let r = crd.resource;
    let name = reversed_group_name(&r.group, &r.version, &r.kind);
    schemas.add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>();
    let mut schema = match crd.schema {
        Some(s) if s.is_object() => s.clone(),
        _ => object_schema(
            &format!("{} is a custom resource.", r.kind),
            Map::new(),
            true,
        ),
    };
    if schema.get("type").is_none() {
        schema["type"] = json!("object");
    }
    let template = object_schema("", Map::new(), false);
    let props = schema
        .as_object_mut()
        .map(|o| o.entry("properties").or_insert_with(|| json!({})))
        .and_then(Value::as_object_mut);
    if let Some(props) = props {
        for key in ["apiVersion", "kind"] {
            props.insert(key.to_string(), template["properties"][key].clone());
        }
        props.insert("metadata".to_string(), object_metadata_property(schemas));
    }
    schemas.insert(&name, schema);
    schemas.add_gvk(&name, Gvk::new(&r.group, &r.version, &r.kind));
    debug_assert!(schemas.contains(OBJECT_META));
    name
}

/// The `openAPIV3Schema` a stored CRD object declares for `group`/`version`/`plural`:
/// `Some(None)` when the CRD serves the resource without a schema, `None` when no CRD
/// defines it.
pub(crate) fn crd_object_schema<'a>(
    crds: &'a [Value],
    group: &str,
    version: &str,
    plural: &str,
) -> Option<Option<&'a Value>> {
    let crd = crds.iter().find(|c| {
        c.pointer("/spec/group").and_then(Value::as_str) == Some(group)
            && c.pointer("/spec/names/plural").and_then(Value::as_str) == Some(plural)
    })?;
    let versions = crd.pointer("/spec/versions").and_then(Value::as_array);
    let v = versions
        .into_iter()
        .flatten()
        .find(|v| v.get("name").and_then(Value::as_str) == Some(version));
    Some(v.and_then(|v| v.pointer("/schema/openAPIV3Schema")))
}

/// Adds the CRD-declared schema of every custom resource among `resources` (those
/// a CRD in `crds` defines), so operations reuse them instead of placeholders.
pub(crate) fn add_crd_kinds<'r>(
    schemas: &mut Schemas,
    resources: impl Iterator<Item = &'r ResourceInfo>,
    crds: &[Value],
) {
    for r in resources {
        if let Some(schema) = crd_object_schema(crds, &r.group, &r.version, &r.resource) {
            add_custom_schema(
                schemas,
                &CustomResourceSchema {
                    resource: r,
                    schema,
                },
            );
        }
    }
}

/// The OpenAPI 3.0 document of one custom group version, from the CRD versions served
/// there (several CRDs often share a group version).
pub fn crd_schema_document(crds: &[CustomResourceSchema<'_>]) -> Value {
    let mut schemas = Schemas::new(Style::V3);
    let mut paths = Map::new();
    let mut items = Vec::new();
    if let Some(first) = crds.first() {
        items.push(operations::discovery_path(
            &first.resource.group,
            &first.resource.version,
            &mut schemas,
        ));
    }
    for crd in crds {
        add_custom_schema(&mut schemas, crd);
    }
    for crd in crds {
        items.extend(operations::resource_paths(crd.resource, &mut schemas));
    }
    v3::render_paths(&items, &schemas, &mut paths);
    v3::assemble(paths, schemas)
}

/// Merges documents of the same dialect: paths and component schemas are united
/// (later documents win on clashes), everything else comes from the first.
pub fn merge_documents(docs: &[Value]) -> Value {
    let Some(first) = docs.first() else {
        return json!({});
    };
    let mut out = first.clone();
    for doc in &docs[1..] {
        for pointer in ["/paths", "/components/schemas", "/definitions"] {
            let Some(Value::Object(src)) = doc.pointer(pointer) else {
                continue;
            };
            if let Some(Value::Object(dst)) = out.pointer_mut(pointer) {
                for (k, v) in src {
                    dst.insert(k.clone(), v.clone());
                }
            }
        }
    }
    crate::canonicalize(&mut out);
    out
}
