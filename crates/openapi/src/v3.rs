//! OpenAPI 3.0 documents, one per group version (`/openapi/v3/apis/apps/v1`), plus
//! the small discovery documents (`api`, `apis`, `apis/<group>`) and the index at
//! `/openapi/v3` that lists them with content hashes.

use std::collections::BTreeSet;
use std::sync::Arc;

use apis::ResourceInfo;
use serde_json::{json, Map, Value};

use crate::operations::{self, Body, Operation, Param, PathItem, Payload};
use crate::schemas::{Schemas, Style};
use crate::{canonicalize, document_hash};

const OBJECT_TYPES: &[&str] = &[
    "application/json",
    "application/vnd.kubernetes.protobuf",
    "application/yaml",
];
const WATCH_TYPES: &[&str] = &[
    "application/json",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf",
    "application/vnd.kubernetes.protobuf;stream=watch",
    "application/yaml",
];
const TEXT_TYPES: &[&str] = &["*/*"];

fn param(p: &Param) -> Value {
    let mut v = json!({
        "name": p.name,
        "in": p.location,
        "description": p.description,
        "schema": {"type": p.ty, "uniqueItems": true},
    });
    if p.required {
        v["required"] = json!(true);
    }
    v
}

fn content(types: &[&str], schema: &Value) -> Value {
    Value::Object(
        types
            .iter()
            .map(|t| (t.to_string(), json!({"schema": schema})))
            .collect(),
    )
}

fn operation(op: &Operation, schemas: &Schemas) -> Value {
    let mut v = json!({
        "tags": [op.tag],
        "description": op.description,
        "operationId": op.id,
    });
    if !op.params.is_empty() {
        v["parameters"] = Value::Array(op.params.iter().map(param).collect());
    }
    match &op.body {
        Body::None => {}
        Body::Object(name) => {
            let required = op.method != "delete";
            let mut body = json!({"content": content(&["*/*"], &schemas.reference(name))});
            if required {
                body["required"] = json!(true);
            }
            v["requestBody"] = body;
        }
        Body::Patch(strategic) => {
            v["requestBody"] = json!({"content": content(&operations::patch_types(*strategic), &schemas.reference(operations::PATCH)), "required": true});
        }
    }
    let mut responses = Map::new();
    for r in &op.responses {
        let body = match &r.payload {
            Payload::Object(name) => content(OBJECT_TYPES, &schemas.reference(name)),
            Payload::Stream(name) => content(WATCH_TYPES, &schemas.reference(name)),
            Payload::Text => content(TEXT_TYPES, &json!({"type": "string"})),
        };
        responses.insert(
            r.code.to_string(),
            json!({"description": r.description, "content": body}),
        );
    }
    responses.insert("401".to_string(), json!({"description": "Unauthorized"}));
    v["responses"] = Value::Object(responses);
    if !op.action.is_empty() {
        v["x-kubernetes-action"] = json!(op.action);
    }
    if let Some(gvk) = &op.gvk {
        v["x-kubernetes-group-version-kind"] = gvk.to_json();
    }
    v
}

/// Renders path items into an OpenAPI `paths` object (later items win on clashes).
pub(crate) fn render_paths(items: &[PathItem], schemas: &Schemas, out: &mut Map<String, Value>) {
    for item in items {
        let mut v = Map::new();
        for op in &item.ops {
            v.insert(op.method.to_string(), operation(op, schemas));
        }
        if !item.params.is_empty() {
            v.insert(
                "parameters".to_string(),
                Value::Array(item.params.iter().map(param).collect()),
            );
        }
        out.insert(item.path.clone(), Value::Object(v));
    }
}

/// Assembles a document from rendered paths and finished schemas.
pub(crate) fn assemble(paths: Map<String, Value>, schemas: Schemas) -> Value {
    let mut doc = json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "components": {
            "schemas": schemas.finish(),
            "securitySchemes": {
                "BearerToken": {"type": "apiKey", "description": "Bearer Token authentication", "name": "authorization", "in": "header"}
            }
        },
        "security": [{"BearerToken": []}],
    });
    canonicalize(&mut doc);
    doc
}

/// The OpenAPI 3.0 document of one group version: schemas of every kind served there
/// (and all they reference), and the operations of each resource. Custom resources
/// take their schema from the matching stored CRD object in `crds`.
pub fn v3_document(
    group: &str,
    version: &str,
    resources: &[Arc<ResourceInfo>],
    crds: &[Value],
) -> Value {
    let mut schemas = Schemas::new(Style::V3);
    let in_gv = || {
        resources
            .iter()
            .filter(|r| r.group == group && r.version == version)
    };
    crate::crd::add_crd_kinds(&mut schemas, in_gv().map(|r| r.as_ref()), crds);
    let mut items = vec![operations::discovery_path(group, version, &mut schemas)];
    for r in in_gv() {
        items.extend(operations::resource_paths(r, &mut schemas));
    }
    let mut paths = Map::new();
    render_paths(&items, &schemas, &mut paths);
    assemble(paths, schemas)
}

const VERSIONS_DOC: &str = "get available API versions";
const GROUP_DOC: &str = "get information of a group";

/// A discovery-only document: one GET returning a meta type.
fn discovery_document(
    path: &str,
    id: &str,
    tag: &str,
    description: &str,
    add: fn(&mut Schemas) -> String,
) -> Value {
    let mut schemas = Schemas::new(Style::V3);
    let name = add(&mut schemas);
    let op = Operation {
        method: "get",
        id: id.to_string(),
        description: description.to_string(),
        action: "",
        gvk: None,
        params: Vec::new(),
        body: Body::None,
        responses: vec![operations::Response {
            code: "200",
            description: "OK",
            payload: Payload::Object(name),
        }],
        tag: tag.to_string(),
    };
    let mut paths = Map::new();
    render_paths(
        &[PathItem {
            path: path.to_string(),
            params: Vec::new(),
            ops: vec![op],
        }],
        &schemas,
        &mut paths,
    );
    assemble(paths, schemas)
}

/// The document served at `/openapi/v3/<path>` for any path [`v3_index_paths`]
/// lists (`api`, `api/v1`, `apis`, `apis/apps`, `apis/apps/v1`, …); `None` otherwise.
pub fn v3_document_for_path(
    path: &str,
    resources: &[Arc<ResourceInfo>],
    crds: &[Value],
) -> Option<Value> {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        ["api"] => Some(discovery_document(
            "/api/",
            "getCoreAPIVersions",
            "core",
            VERSIONS_DOC,
            |s| s.add::<meta::APIVersions>(),
        )),
        ["apis"] => Some(discovery_document(
            "/apis/",
            "getAPIVersions",
            "apis",
            VERSIONS_DOC,
            |s| s.add::<meta::APIGroupList>(),
        )),
        ["api", version] => {
            served(resources, "", version).then(|| v3_document("", version, resources, crds))
        }
        ["apis", group] => resources.iter().any(|r| r.group == *group).then(|| {
            let camel = operations::group_camel(group);
            let tag = operations::tag(group, "").trim_end_matches('_').to_string();
            discovery_document(
                &format!("/apis/{group}/"),
                &format!("get{camel}APIGroup"),
                &tag,
                GROUP_DOC,
                |s| s.add::<meta::APIGroup>(),
            )
        }),
        ["apis", group, version] => {
            served(resources, group, version).then(|| v3_document(group, version, resources, crds))
        }
        _ => None,
    }
}

fn served(resources: &[Arc<ResourceInfo>], group: &str, version: &str) -> bool {
    resources
        .iter()
        .any(|r| r.group == group && r.version == version)
}

/// Every path the `/openapi/v3` index lists for these resources, sorted.
pub fn v3_index_paths(resources: &[Arc<ResourceInfo>]) -> Vec<String> {
    let mut paths = BTreeSet::new();
    for r in resources {
        if r.group.is_empty() {
            paths.insert("api".to_string());
            paths.insert(format!("api/{}", r.version));
        } else {
            paths.insert("apis".to_string());
            paths.insert(format!("apis/{}", r.group));
            paths.insert(format!("apis/{}/{}", r.group, r.version));
        }
    }
    paths.into_iter().collect()
}

/// The `/openapi/v3` index from `(path, hash)` pairs, for callers that cache documents.
pub fn v3_index_from_hashes<I, P, H>(entries: I) -> Value
where
    I: IntoIterator<Item = (P, H)>,
    P: AsRef<str>,
    H: AsRef<str>,
{
    let mut paths = Map::new();
    for (path, hash) in entries {
        let path = path.as_ref();
        paths.insert(
            path.to_string(),
            json!({"serverRelativeURL": format!("/openapi/v3/{path}?hash={}", hash.as_ref())}),
        );
    }
    let mut index = json!({"paths": paths});
    canonicalize(&mut index);
    index
}

/// The `/openapi/v3` index, generating every document to hash it. Callers that cache
/// documents should hash their copies and use [`v3_index_from_hashes`].
pub fn v3_index(resources: &[Arc<ResourceInfo>], crds: &[Value]) -> Value {
    let entries: Vec<(String, String)> = v3_index_paths(resources)
        .into_iter()
        .filter_map(|p| {
            v3_document_for_path(&p, resources, crds).map(|doc| (p, document_hash(&doc)))
        })
        .collect();
    v3_index_from_hashes(entries)
}
