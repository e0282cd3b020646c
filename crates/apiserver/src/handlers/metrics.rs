//! `metrics.k8s.io/v1beta1`: `NodeMetrics` and `PodMetrics`, read-only (get, list),
//! answered from [`crate::metrics_server::Provider`] as metrics-server answers them.
//!
//! Which objects exist is decided by the Nodes and Pods themselves: a list selects Nodes
//! (or Pods, in a namespace or across all) with the request's label and field selectors
//! and returns metrics for those that have readings, with the object's labels copied,
//! sorted by namespace and name; pods not `Running` are left out. A get of an object
//! without readings is a NotFound for `nodemetrics`/`podmetrics.metrics.k8s.io`.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use hyper::body::Incoming;
use pki::UserInfo;
use registry::{RegistryError, Served};
use serde_json::{json, Value};

use super::{list_options, output, Ctx};
use crate::body::{full, Body};
use crate::metrics_server::{cpu_quantity, go_duration, memory_quantity, Snapshot, GROUP};
use crate::negotiate::Output;
use crate::request::{Query, RequestInfo};
use crate::status::ApiError;
use crate::ApiServer;

pub async fn handle(
    server: &ApiServer,
    req: http::Request<Incoming>,
    info: &RequestInfo,
    query: Query,
    user: UserInfo,
) -> Result<Response<Body>, ApiError> {
    let (parts, body) = req.into_parts();
    let _ = super::read_body(body).await;
    let pods = match (info.version.as_str(), info.resource.as_str()) {
        ("v1beta1", "nodes") if info.namespace.is_empty() => false,
        ("v1beta1", "pods") => true,
        _ => return Err(ApiError::NotFoundPath),
    };
    if !info.subresource.is_empty() {
        return Err(ApiError::NotFoundPath);
    }
    if !matches!(info.verb.as_str(), "get" | "list") {
        return Err(ApiError::MethodNotSupported(
            "the server does not allow this method on the requested resource".to_string(),
        ));
    }
    let source = if pods { "pods" } else { "nodes" };
    let served: Served = server
        .registry
        .lookup("", "v1", source)
        .ok_or_else(|| ApiError::internal(format!("{source} not served")))?;
    let ctx = Ctx {
        server,
        info,
        query,
        output: output::negotiate(&parts.headers),
        headers: parts.headers,
        user,
        served,
    };
    let kind = if pods { "PodMetrics" } else { "NodeMetrics" };
    if info.verb == "get" {
        let obj = ctx.served.store.get(&info.namespace, &info.name).await?;
        let snapshot = server.metrics_provider.snapshot(&server.registry).await;
        let window = go_duration(server.metrics_provider.resolution());
        let metrics = metrics_of(&obj, pods, &snapshot, &window).ok_or_else(|| {
            let name = if pods {
                format!("{}/{}", info.namespace, info.name)
            } else {
                info.name.clone()
            };
            ApiError::Registry(RegistryError::NotFound {
                group: GROUP.to_string(),
                resource: kind.to_lowercase(),
                name,
            })
        })?;
        return respond(&ctx, kind, &[metrics], false);
    }
    let mut opts = list_options(&ctx)?;
    // Metrics are computed, not stored: no paging, always the latest state.
    opts.limit = 0;
    opts.continue_token = None;
    opts.resource_version = None;
    opts.resource_version_match = None;
    let list = ctx.served.store.list(&info.namespace, &opts).await?;
    let mut objects: Vec<Value> = list
        .items
        .iter()
        .filter_map(|b| serde_json::from_slice(b).ok())
        .collect();
    let mut items = Vec::new();
    if !objects.is_empty() {
        objects.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)));
        let snapshot = server.metrics_provider.snapshot(&server.registry).await;
        let window = go_duration(server.metrics_provider.resolution());
        items = objects
            .iter()
            .filter_map(|o| metrics_of(o, pods, &snapshot, &window))
            .collect();
    }
    respond(&ctx, kind, &items, true)
}

fn sort_key(obj: &Value) -> (String, String) {
    let s = |p: &str| {
        obj.pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    (s("/metadata/namespace"), s("/metadata/name"))
}

/// The NodeMetrics/PodMetrics of a Node/Pod, if it has readings.
fn metrics_of(obj: &Value, pod: bool, snapshot: &Snapshot, window: &str) -> Option<Value> {
    let (namespace, name) = sort_key(obj);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut metadata = json!({"name": name, "creationTimestamp": now});
    if let Some(labels) = obj.pointer("/metadata/labels").filter(|l| l.is_object()) {
        metadata["labels"] = labels.clone();
    }
    if !pod {
        let u = snapshot.nodes.get(&name)?;
        return Some(json!({
            "kind": "NodeMetrics",
            "apiVersion": format!("{GROUP}/v1beta1"),
            "metadata": metadata,
            "timestamp": u.timestamp,
            "window": window,
            "usage": {"cpu": cpu_quantity(u.cpu_nano_cores), "memory": memory_quantity(u.memory_bytes)},
        }));
    }
    if obj.pointer("/status/phase").and_then(Value::as_str) != Some("Running") {
        return None;
    }
    let containers = snapshot.pods.get(&(namespace.clone(), name))?;
    metadata["namespace"] = json!(namespace);
    let timestamp = containers
        .iter()
        .map(|c| c.usage.timestamp.as_str())
        .max()
        .unwrap_or_default();
    Some(json!({
        "kind": "PodMetrics",
        "apiVersion": format!("{GROUP}/v1beta1"),
        "metadata": metadata,
        "timestamp": timestamp,
        "window": window,
        "containers": containers.iter().map(|c| json!({
            "name": c.name,
            "usage": {"cpu": cpu_quantity(c.usage.cpu_nano_cores), "memory": memory_quantity(c.usage.memory_bytes)},
        })).collect::<Vec<_>>(),
    }))
}

fn respond(
    ctx: &Ctx<'_>,
    kind: &str,
    items: &[Value],
    list: bool,
) -> Result<Response<Body>, ApiError> {
    let body = match ctx.output {
        Output::Table => table(items),
        Output::Metadata => {
            let meta = |m: &Value| {
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": m.get("metadata").cloned().unwrap_or(json!({})),
                })
            };
            if list {
                json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": {},
                    "items": items.iter().map(meta).collect::<Vec<_>>(),
                })
            } else {
                meta(&items[0])
            }
        }
        Output::Json | Output::Yaml if list => json!({
            "kind": format!("{kind}List"),
            "apiVersion": format!("{GROUP}/v1beta1"),
            "metadata": {},
            "items": items,
        }),
        Output::Json | Output::Yaml => items[0].clone(),
    };
    let (content_type, bytes) = if ctx.output == Output::Yaml {
        (
            "application/yaml",
            Bytes::from(serde_yaml::to_string(&body).map_err(ApiError::internal)?),
        )
    } else {
        (
            "application/json",
            Bytes::from(serde_json::to_vec(&body).map_err(ApiError::internal)?),
        )
    };
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, content_type)
        .body(full(bytes))
        .map_err(ApiError::internal)
}

/// metrics-server's Table: name, one column per resource (summed over containers), window.
fn table(items: &[Value]) -> Value {
    let rows: Vec<Value> = items
        .iter()
        .map(|m| {
            let (cpu, memory) = match m.get("usage") {
                Some(u) => (
                    u["cpu"].as_str().unwrap_or("0").to_string(),
                    u["memory"].as_str().unwrap_or("0").to_string(),
                ),
                None => {
                    let sum = |r: &str| {
                        m["containers"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(|c| c["usage"][r].as_str())
                            .filter_map(|q| apis::resource::Quantity::parse(q).ok())
                            .fold(None::<apis::resource::Quantity>, |acc, q| {
                                Some(match acc {
                                    Some(a) => a.add(&q),
                                    None => q,
                                })
                            })
                            .map(|q| q.canonical())
                            .unwrap_or_else(|| "0".to_string())
                    };
                    (sum("cpu"), sum("memory"))
                }
            };
            json!({
                "cells": [m["metadata"]["name"], cpu, memory, m["window"]],
                "object": {
                    "kind": "PartialObjectMetadata",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": m["metadata"],
                },
            })
        })
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {},
        "columnDefinitions": [
            {"name": "Name", "type": "string", "format": "name", "description": "Name of the resource", "priority": 0},
            {"name": "cpu", "type": "string", "format": "quantity", "description": "", "priority": 0},
            {"name": "memory", "type": "string", "format": "quantity", "description": "", "priority": 0},
            {"name": "Window", "type": "string", "format": "duration", "description": "", "priority": 0},
        ],
        "rows": rows,
    })
}
