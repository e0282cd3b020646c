//! Response encoding: JSON, YAML, server-side Table, PartialObjectMetadata; and the
//! selector filter used by list and watch.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, Response, StatusCode};
use registry::{Filter, ObjectAttrs, ObjectList};
use serde_json::{json, Value};

use super::Ctx;
use crate::body::{full, Body};
use crate::negotiate;
use crate::status::ApiError;

pub use crate::negotiate::Output;

pub fn negotiate(headers: &http::HeaderMap) -> Output {
    negotiate::accept(headers)
}

fn respond(code: StatusCode, content_type: &str, body: Bytes) -> Response<Body> {
    Response::builder()
        .status(code)
        .header(header::CONTENT_TYPE, content_type)
        .body(full(body))
        .unwrap_or_else(|_| Response::new(full(Bytes::new())))
}

fn include_object(ctx: &Ctx<'_>) -> printers::IncludeObject {
    match ctx.query.get("includeObject") {
        Some("None") => printers::IncludeObject::None,
        Some("Object") => printers::IncludeObject::Object,
        _ => printers::IncludeObject::Metadata,
    }
}

/// Table of `objs` for this resource (built-in printers or a CRD's printer columns).
pub fn table(
    ctx: &Ctx<'_>,
    objs: &[Value],
    resource_version: &str,
    continue_token: Option<&str>,
) -> Value {
    let info = &ctx.served.info;
    let now = chrono::Utc::now();
    let columns = ctx
        .server
        .registry
        .printer_columns(&info.group, &info.version, &info.resource);
    let mut t = match columns {
        Some(cols) => printers::custom_table(&cols, objs, include_object(ctx), now),
        None => printers::table(&info.group, &info.resource, objs, include_object(ctx), now),
    };
    let mut meta = json!({"resourceVersion": resource_version});
    if let Some(c) = continue_token {
        meta["continue"] = json!(c);
    }
    t["metadata"] = meta;
    t
}

fn partial_metadata(obj: &Value) -> Value {
    json!({
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata").cloned().unwrap_or(json!({})),
    })
}

/// One object in the negotiated representation.
pub fn object_response(
    ctx: &Ctx<'_>,
    code: StatusCode,
    obj: &Value,
) -> Result<Response<Body>, ApiError> {
    match ctx.output {
        Output::Json => Ok(respond(
            code,
            "application/json",
            Bytes::from(serde_json::to_vec(obj).map_err(ApiError::internal)?),
        )),
        Output::Yaml => Ok(respond(
            code,
            "application/yaml",
            Bytes::from(serde_yaml::to_string(obj).map_err(ApiError::internal)?),
        )),
        Output::Table => {
            let rv = registry::meta::resource_version(obj).to_string();
            let t = table(ctx, std::slice::from_ref(obj), &rv, None);
            Ok(respond(
                code,
                "application/json",
                Bytes::from(serde_json::to_vec(&t).map_err(ApiError::internal)?),
            ))
        }
        Output::Metadata => {
            let m = partial_metadata(obj);
            Ok(respond(
                code,
                "application/json",
                Bytes::from(serde_json::to_vec(&m).map_err(ApiError::internal)?),
            ))
        }
    }
}

/// A list in the negotiated representation. JSON lists are assembled from the cached
/// object bytes without re-encoding them.
pub fn list_response(ctx: &Ctx<'_>, mut list: ObjectList) -> Result<Response<Body>, ApiError> {
    let rv = list.resource_version.to_string();
    let strategy = &ctx.served.store.strategy;
    if strategy.converts() {
        for item in list.items.iter_mut() {
            *item = convert_bytes(&**strategy, item)?;
        }
    }
    match ctx.output {
        Output::Json => {
            let info = &ctx.served.info;
            let mut meta = json!({"resourceVersion": rv});
            if let Some(c) = &list.continue_token {
                meta["continue"] = json!(c);
            }
            if let Some(n) = list.remaining_item_count {
                meta["remainingItemCount"] = json!(n);
            }
            let size: usize = list.items.iter().map(|i| i.len() + 1).sum();
            let mut buf = BytesMut::with_capacity(size + 256);
            buf.put_slice(b"{\"kind\":");
            buf.put_slice(
                serde_json::to_string(&info.list_kind)
                    .map_err(ApiError::internal)?
                    .as_bytes(),
            );
            buf.put_slice(b",\"apiVersion\":");
            buf.put_slice(
                serde_json::to_string(&info.api_version())
                    .map_err(ApiError::internal)?
                    .as_bytes(),
            );
            buf.put_slice(b",\"metadata\":");
            buf.put_slice(meta.to_string().as_bytes());
            buf.put_slice(b",\"items\":[");
            for (i, item) in list.items.iter().enumerate() {
                if i > 0 {
                    buf.put_u8(b',');
                }
                buf.put_slice(item);
            }
            buf.put_slice(b"]}");
            Ok(respond(StatusCode::OK, "application/json", buf.freeze()))
        }
        Output::Yaml | Output::Table | Output::Metadata => {
            let items: Vec<Value> = list
                .items
                .iter()
                .map(|b| serde_json::from_slice(b).map_err(ApiError::internal))
                .collect::<Result<_, _>>()?;
            let body = match ctx.output {
                Output::Table => table(ctx, &items, &rv, list.continue_token.as_deref()),
                Output::Metadata => json!({
                    "kind": "PartialObjectMetadataList",
                    "apiVersion": "meta.k8s.io/v1",
                    "metadata": {"resourceVersion": rv, "continue": list.continue_token},
                    "items": items.iter().map(partial_metadata).collect::<Vec<_>>(),
                }),
                _ => json!({
                    "kind": ctx.served.info.list_kind,
                    "apiVersion": ctx.served.info.api_version(),
                    "metadata": {"resourceVersion": rv},
                    "items": items,
                }),
            };
            if ctx.output == Output::Yaml {
                return Ok(respond(
                    StatusCode::OK,
                    "application/yaml",
                    Bytes::from(serde_yaml::to_string(&body).map_err(ApiError::internal)?),
                ));
            }
            Ok(respond(
                StatusCode::OK,
                "application/json",
                Bytes::from(serde_json::to_vec(&body).map_err(ApiError::internal)?),
            ))
        }
    }
}

/// Builds the label/field selector filter from `labelSelector` / `fieldSelector`.
pub fn selector_filter(ctx: &Ctx<'_>) -> Result<Filter, ApiError> {
    let label = match ctx.query.non_empty("labelSelector") {
        Some(s) => Some(
            apis::selectors::LabelSelector::parse(s)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?,
        ),
        None => None,
    };
    let field = match ctx.query.non_empty("fieldSelector") {
        Some(s) => {
            let sel = apis::selectors::FieldSelector::parse(s)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            let info = &ctx.served.info;
            let sel = sel
                .convert_for(&info.storage_group, &info.storage_resource)
                .map_err(|e| ApiError::BadRequest(e.to_string()))?;
            Some(sel)
        }
        None => None,
    };
    if label.is_none() && field.is_none() {
        return Ok(registry::store::match_all());
    }
    let label = label.map(Arc::new);
    let field = field.map(Arc::new);
    Ok(Arc::new(move |attrs: &ObjectAttrs| {
        if let Some(l) = &label {
            if !l.matches(&attrs.labels) {
                return false;
            }
        }
        if let Some(f) = &field {
            if !f.matches(|name| attrs.field(name).map(str::to_string)) {
                return false;
            }
        }
        true
    }))
}

#[allow(dead_code)]
fn labels_map(v: &Value) -> BTreeMap<String, String> {
    registry::meta::labels(v)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// A list of already-decoded objects (deletecollection's answer).
pub fn list_response_values(ctx: &Ctx<'_>, items: Vec<Value>) -> Result<Response<Body>, ApiError> {
    let bytes: Vec<Bytes> = items
        .iter()
        .map(|v| {
            serde_json::to_vec(v)
                .map(Bytes::from)
                .map_err(ApiError::internal)
        })
        .collect::<Result<_, _>>()?;
    let rv = ctx.server.registry.hub().revision();
    list_response(
        ctx,
        ObjectList {
            items: bytes,
            resource_version: rv,
            continue_token: None,
            remaining_item_count: None,
        },
    )
}

/// Re-encodes a cached (stored-form) object in the served version.
pub fn convert_bytes(strategy: &dyn registry::Strategy, json: &Bytes) -> Result<Bytes, ApiError> {
    let mut obj: Value = serde_json::from_slice(json).map_err(ApiError::internal)?;
    strategy.to_served(&mut obj);
    Ok(Bytes::from(
        serde_json::to_vec(&obj).map_err(ApiError::internal)?,
    ))
}
