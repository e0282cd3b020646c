//! Collects the component schemas of one document: the served kinds (from
//! k8s-openapi's schemars impls), hand-built list and placeholder schemas, and the
//! meta types every document references, then post-processes them into upstream's
//! shape (GVK extensions, no `required: [metadata]`, v3 `allOf` references).

use std::collections::BTreeMap;

use schemars::{generate::SchemaSettings, JsonSchema, SchemaGenerator};
use serde_json::{json, Map, Value};

use crate::kinds;

/// Which OpenAPI dialect the schemas are rendered for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Style {
    /// OpenAPI 3.0: `#/components/schemas/…`, `$ref` siblings moved into `allOf`.
    V3,
    /// Swagger 2.0: `#/definitions/…`, `$ref` with sibling descriptions.
    V2,
}

/// A group/version/kind as the `x-kubernetes-group-version-kind` extension spells it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Gvk {
    pub group: String,
    pub version: String,
    pub kind: String,
}

impl Gvk {
    pub fn new(group: &str, version: &str, kind: &str) -> Self {
        Self {
            group: group.to_string(),
            version: version.to_string(),
            kind: kind.to_string(),
        }
    }

    pub fn to_json(&self) -> Value {
        json!({"group": self.group, "kind": self.kind, "version": self.version})
    }
}

pub(crate) const OBJECT_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";
pub(crate) const LIST_META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ListMeta";

const API_VERSION_DOC: &str = "APIVersion defines the versioned schema of this representation of an object. Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#resources";
const KIND_DOC: &str = "Kind is a string value representing the REST resource this object represents. Servers may infer this from the endpoint the client submits requests to. Cannot be updated. In CamelCase. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#types-kinds";
const OBJECT_METADATA_DOC: &str = "Standard object's metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const LIST_METADATA_DOC: &str = "Standard list metadata. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";

/// The schema name upstream gives a kind without a Go type: reversed group, version, kind
/// (`stable.example.com/v1 CronTab` → `com.example.stable.v1.CronTab`).
pub(crate) fn reversed_group_name(group: &str, version: &str, kind: &str) -> String {
    let mut parts: Vec<&str> = group.split('.').filter(|p| !p.is_empty()).collect();
    parts.reverse();
    if parts.is_empty() {
        format!("{version}.{kind}")
    } else {
        format!("{}.{version}.{kind}", parts.join("."))
    }
}

/// Builder of one document's schemas.
pub(crate) struct Schemas {
    gen: SchemaGenerator,
    style: Style,
    gvks: BTreeMap<String, Vec<Gvk>>,
}

impl Schemas {
    pub fn new(style: Style) -> Self {
        let settings = match style {
            Style::V3 => SchemaSettings::openapi3().with(|s| s.meta_schema = None),
            Style::V2 => SchemaSettings::draft07().with(|s| {
                s.definitions_path = "/definitions".into();
                s.meta_schema = None;
                // Swagger 2.0 (and upstream's v2 document) keeps descriptions beside `$ref`.
                s.transforms = Vec::new();
            }),
        };
        Self {
            gen: settings.into_generator(),
            style,
            gvks: BTreeMap::new(),
        }
    }

    /// `#/components/schemas/<name>` or `#/definitions/<name>`.
    pub fn ref_path(&self, name: &str) -> String {
        match self.style {
            Style::V3 => format!("#/components/schemas/{name}"),
            Style::V2 => format!("#/definitions/{name}"),
        }
    }

    /// A bare reference, usable in operations.
    pub fn reference(&self, name: &str) -> Value {
        json!({"$ref": self.ref_path(name)})
    }

    /// Adds a k8s-openapi type; returns its schema name.
    pub fn add<T: JsonSchema>(&mut self) -> String {
        self.gen.subschema_for::<T>();
        T::schema_name().into_owned()
    }

    /// Inserts a hand-built schema written in canonical form (`$ref` with siblings).
    pub fn insert(&mut self, name: &str, schema: Value) {
        self.gen.definitions_mut().insert(name.to_string(), schema);
    }

    pub fn contains(&self, name: &str) -> bool {
        self.gen.definitions().contains_key(name)
    }

    /// Records an `x-kubernetes-group-version-kind` entry for a schema.
    pub fn add_gvk(&mut self, name: &str, gvk: Gvk) {
        let list = self.gvks.entry(name.to_string()).or_default();
        if !list.contains(&gvk) {
            list.push(gvk);
            list.sort();
        }
    }

    /// Adds the schema of a served kind (a permissive placeholder when k8s-openapi has no
    /// type for it) with its GVK; returns the schema name.
    pub fn kind(&mut self, group: &str, version: &str, kind: &str) -> String {
        let name = match kinds::add_kind(&mut self.gen, group, version, kind) {
            Some(name) => name,
            None => {
                let name = reversed_group_name(group, version, kind);
                if !self.contains(&name) {
                    self.insert(
                        &name,
                        object_schema(
                            &format!(
                                "{kind} is served by this API server; its schema is not published."
                            ),
                            Map::new(),
                            true,
                        ),
                    );
                }
                name
            }
        };
        self.add_gvk(&name, Gvk::new(group, version, kind));
        name
    }

    /// Adds `<Kind>List` for a kind schema; returns the list schema name.
    pub fn list(
        &mut self,
        group: &str,
        version: &str,
        kind: &str,
        list_kind: &str,
        item: &str,
    ) -> String {
        let name = match item.strip_suffix(kind) {
            Some(prefix) => format!("{prefix}{list_kind}"),
            None => format!("{item}List"),
        };
        if !self.contains(&name) {
            self.add::<k8s_openapi::apimachinery::pkg::apis::meta::v1::ListMeta>();
            let mut props = Map::new();
            props.insert(
                "items".into(),
                json!({"description": format!("Items is the list of {kind}."), "type": "array", "items": self.reference(item)}),
            );
            props.insert("metadata".into(), {
                let mut m = self.reference(LIST_META);
                m["description"] = json!(LIST_METADATA_DOC);
                m
            });
            let mut schema =
                object_schema(&format!("{list_kind} is a list of {kind}."), props, false);
            schema["required"] = json!(["items"]);
            self.insert(&name, schema);
        }
        self.add_gvk(&name, Gvk::new(group, version, list_kind));
        name
    }

    /// Finishes the document's schemas: post-processed and sorted by name.
    pub fn finish(mut self) -> Map<String, Value> {
        for schema in self.gen.definitions_mut().values_mut() {
            drop_metadata_requirement(schema);
        }
        let apply_transforms = self.style == Style::V3;
        let defs = self.gen.take_definitions(apply_transforms);
        let mut out = Map::new();
        let mut names: Vec<&String> = defs.keys().collect();
        names.sort();
        for name in names {
            let mut schema = defs[name].clone();
            if let Some(gvks) = self.gvks.get(name) {
                schema["x-kubernetes-group-version-kind"] =
                    Value::Array(gvks.iter().map(Gvk::to_json).collect());
            }
            fix_scalar_types(name, self.style, &mut schema);
            crate::list_types::annotate_list_types(name, &mut schema);
            out.insert(name.clone(), schema);
        }
        out
    }
}

/// IntOrString and Quantity carry upstream's types instead of k8s-openapi's
/// `x-kubernetes-int-or-string` marker (v3 uses `oneOf`, v2 a string format).
fn fix_scalar_types(name: &str, style: Style, schema: &mut Value) {
    let types: &[&str] = match name {
        "io.k8s.apimachinery.pkg.util.intstr.IntOrString" => &["integer", "string"],
        "io.k8s.apimachinery.pkg.api.resource.Quantity" => &["string", "number"],
        _ => return,
    };
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    obj.remove("x-kubernetes-int-or-string");
    if types[0] == "integer" {
        obj.insert("format".into(), json!("int-or-string"));
    }
    match style {
        Style::V3 => {
            obj.insert(
                "oneOf".into(),
                Value::Array(types.iter().map(|t| json!({"type": t})).collect()),
            );
        }
        Style::V2 => {
            obj.insert("type".into(), json!("string"));
        }
    }
}

/// `apiVersion`, `kind` and the given properties on an object schema.
pub(crate) fn object_schema(
    description: &str,
    mut props: Map<String, Value>,
    preserve_unknown: bool,
) -> Value {
    props.insert(
        "apiVersion".into(),
        json!({"description": API_VERSION_DOC, "type": "string"}),
    );
    props.insert(
        "kind".into(),
        json!({"description": KIND_DOC, "type": "string"}),
    );
    let mut schema = json!({"description": description, "type": "object", "properties": props});
    if preserve_unknown {
        schema["x-kubernetes-preserve-unknown-fields"] = json!(true);
    }
    schema
}

/// The canonical-form `metadata` property of a top-level kind.
pub(crate) fn object_metadata_property(schemas: &Schemas) -> Value {
    let mut m = schemas.reference(OBJECT_META);
    m["description"] = json!(OBJECT_METADATA_DOC);
    m
}

/// The description of `field` in a meta type's schema (DeleteOptions, for parameter docs).
pub(crate) fn field_doc(schema_name: &str, field: &str) -> String {
    static META: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    let defs = META.get_or_init(|| {
        let mut gen = SchemaSettings::draft07().into_generator();
        gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions>();
        gen.take_definitions(false)
    });
    defs.get(schema_name)
        .and_then(|s| s.pointer(&format!("/properties/{field}/description")))
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string()
}

/// k8s-openapi marks `metadata` required because it is not an `Option` in Rust;
/// upstream's schemas never require it.
fn drop_metadata_requirement(schema: &mut Value) {
    let is_meta_ref = schema
        .pointer("/properties/metadata/$ref")
        .and_then(Value::as_str)
        .is_some_and(|r| r.ends_with(OBJECT_META) || r.ends_with(LIST_META));
    if !is_meta_ref {
        return;
    }
    if let Some(required) = schema.get_mut("required").and_then(Value::as_array_mut) {
        required.retain(|r| r != "metadata");
        if required.is_empty() {
            if let Some(obj) = schema.as_object_mut() {
                obj.remove("required");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reversed_group_names() {
        assert_eq!(
            reversed_group_name("stable.example.com", "v1", "CronTab"),
            "com.example.stable.v1.CronTab"
        );
    }

    #[test]
    fn v3_style_moves_ref_siblings_into_all_of() {
        let mut s = Schemas::new(Style::V3);
        let name = s.kind("apps", "v1", "Deployment");
        let defs = s.finish();
        let deploy = &defs[&name];
        assert_eq!(
            deploy["properties"]["spec"]["allOf"][0]["$ref"],
            "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"
        );
        assert!(deploy["properties"]["spec"]["description"].is_string());
        assert!(
            deploy.get("required").is_none(),
            "metadata is not required upstream"
        );
        assert_eq!(
            deploy["x-kubernetes-group-version-kind"],
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
    }

    #[test]
    fn int_or_string_has_upstream_types() {
        let mut s = Schemas::new(Style::V3);
        s.add::<k8s_openapi::apimachinery::pkg::util::intstr::IntOrString>();
        let defs = s.finish();
        let ios = &defs["io.k8s.apimachinery.pkg.util.intstr.IntOrString"];
        assert_eq!(
            ios["oneOf"],
            json!([{"type": "integer"}, {"type": "string"}])
        );
        assert_eq!(ios["format"], "int-or-string");
        assert!(ios.get("x-kubernetes-int-or-string").is_none());
    }

    #[test]
    fn v2_style_keeps_ref_siblings() {
        let mut s = Schemas::new(Style::V2);
        let name = s.kind("", "v1", "Pod");
        let defs = s.finish();
        assert_eq!(
            defs[&name]["properties"]["spec"]["$ref"],
            "#/definitions/io.k8s.api.core.v1.PodSpec"
        );
        assert!(defs[&name]["properties"]["spec"]["description"].is_string());
    }
}
