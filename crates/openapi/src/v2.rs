//! The Swagger 2.0 document at `/openapi/v2`: every served group version in one
//! document with `#/definitions/…` references, for older clients (also served as
//! protobuf, see [`crate::v2_protobuf`]).

use std::sync::Arc;

use apis::ResourceInfo;
use serde_json::{json, Map, Value};

use crate::canonicalize;
use crate::operations::{self, Body, Operation, Param, PathItem, Payload};
use crate::schemas::{Schemas, Style};

const PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
];
const WATCH_PRODUCES: &[&str] = &[
    "application/json",
    "application/yaml",
    "application/vnd.kubernetes.protobuf",
    "application/json;stream=watch",
    "application/vnd.kubernetes.protobuf;stream=watch",
];

fn param(p: &Param) -> Value {
    let mut v = json!({
        "uniqueItems": true,
        "type": p.ty,
        "description": p.description,
        "name": p.name,
        "in": p.location,
    });
    if p.required {
        v["required"] = json!(true);
    }
    v
}

fn operation(op: &Operation, schemas: &Schemas) -> Value {
    let mut params = Vec::new();
    let consumes: Vec<&str> = match &op.body {
        Body::None => vec!["*/*"],
        Body::Object(name) => {
            let mut body = json!({"name": "body", "in": "body", "schema": schemas.reference(name)});
            if op.method != "delete" {
                body["required"] = json!(true);
            }
            params.push(body);
            vec!["*/*"]
        }
        Body::Patch(strategic) => {
            params.push(json!({"name": "body", "in": "body", "required": true, "schema": schemas.reference(operations::PATCH)}));
            operations::patch_types(*strategic)
        }
    };
    params.extend(op.params.iter().map(param));
    let mut produces: &[&str] = PRODUCES;
    let mut responses = Map::new();
    for r in &op.responses {
        let schema = match &r.payload {
            Payload::Object(name) => schemas.reference(name),
            Payload::Stream(name) => {
                produces = WATCH_PRODUCES;
                schemas.reference(name)
            }
            Payload::Text => {
                produces = &["*/*"];
                json!({"type": "string"})
            }
        };
        responses.insert(
            r.code.to_string(),
            json!({"description": r.description, "schema": schema}),
        );
    }
    responses.insert("401".to_string(), json!({"description": "Unauthorized"}));
    let mut v = json!({
        "description": op.description,
        "consumes": consumes,
        "produces": produces,
        "schemes": ["https"],
        "tags": [op.tag],
        "operationId": op.id,
        "responses": responses,
    });
    if !params.is_empty() {
        v["parameters"] = Value::Array(params);
    }
    if !op.action.is_empty() {
        v["x-kubernetes-action"] = json!(op.action);
    }
    if let Some(gvk) = &op.gvk {
        v["x-kubernetes-group-version-kind"] = gvk.to_json();
    }
    v
}

fn render_paths(items: &[PathItem], schemas: &Schemas, out: &mut Map<String, Value>) {
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

/// The Swagger 2.0 document for every resource: built-in kinds from k8s-openapi,
/// custom resources from their stored CRD objects in `crds` (a permissive
/// placeholder for anything else).
pub fn v2_document(resources: &[Arc<ResourceInfo>], crds: &[Value]) -> Value {
    let mut schemas = Schemas::new(Style::V2);
    crate::crd::add_crd_kinds(&mut schemas, resources.iter().map(|r| r.as_ref()), crds);
    let mut items = Vec::new();
    let mut gvs: Vec<(&str, &str)> = resources
        .iter()
        .map(|r| (r.group.as_str(), r.version.as_str()))
        .collect();
    gvs.sort();
    gvs.dedup();
    for (group, version) in gvs {
        items.push(operations::discovery_path(group, version, &mut schemas));
    }
    for r in resources {
        items.extend(operations::resource_paths(r, &mut schemas));
    }
    let mut paths = Map::new();
    render_paths(&items, &schemas, &mut paths);
    let mut doc = json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": "unversioned"},
        "paths": paths,
        "definitions": schemas.finish(),
        "securityDefinitions": {
            "BearerToken": {"description": "Bearer Token authentication", "type": "apiKey", "name": "authorization", "in": "header"}
        },
        "security": [{"BearerToken": []}],
    });
    canonicalize(&mut doc);
    doc
}
