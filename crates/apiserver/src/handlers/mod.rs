//! Resource request handlers: one function per verb and subresource, all funnelling
//! errors into [`ApiError`] so the Status mapping stays in one place.

mod componentstatus;
mod managed;
mod metrics;
mod output;
mod patch;
mod read;
mod reviews;
pub(crate) mod streaming;
mod subresources;
mod token;
mod watch;
mod write;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use pki::UserInfo;
use registry::{ListOptions, Served};
use serde_json::Value;

use crate::body::Body;
use crate::negotiate;
use crate::request::{Query, RequestInfo};
use crate::status::ApiError;
use crate::{ApiServer, MAX_BODY_BYTES};

pub use output::{object_response, Output};

/// Everything a handler needs about the request.
pub struct Ctx<'a> {
    pub server: &'a ApiServer,
    pub info: &'a RequestInfo,
    pub query: Query,
    pub headers: http::HeaderMap,
    pub user: UserInfo,
    pub served: Served,
    pub output: Output,
}

impl Ctx<'_> {
    pub fn dry_run(&self) -> Result<bool, ApiError> {
        match self.query.get("dryRun") {
            None | Some("") => Ok(false),
            Some("All") => Ok(true),
            Some(other) => Err(ApiError::Registry(registry::RegistryError::Invalid {
                group: String::new(),
                kind: "DryRun".into(),
                name: String::new(),
                errors: vec![apis::FieldError::not_supported("dryRun", other, &["All"])],
            })),
        }
    }

    pub fn field_manager(&self) -> String {
        self.query
            .non_empty("fieldManager")
            .map(str::to_string)
            .unwrap_or_else(|| {
                let ua = self
                    .headers
                    .get(http::header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("unknown");
                apis::managedfields::default_manager_from_user_agent(ua)
            })
    }
}

pub async fn handle(
    server: &ApiServer,
    req: Request<Incoming>,
    info: &RequestInfo,
    query: Query,
    user: UserInfo,
) -> Result<Response<Body>, ApiError> {
    if info.group == crate::metrics_server::GROUP {
        return metrics::handle(server, req, info, query, user).await;
    }
    if streaming::is_streaming(info) {
        route_resource(server, info)?;
        return streaming::handle(server, req, info).await;
    }
    let (parts, body) = req.into_parts();
    let served = match route_resource(server, info) {
        Ok(s) => s,
        Err(e) => {
            // Read (and drop) the body first: answering HTTP/2 before the request is
            // complete resets the stream, and curl reports that instead of our Status.
            let _ = read_body(body).await;
            return Err(e);
        }
    };
    let is_componentstatus = info.group.is_empty() && info.resource == "componentstatuses";
    let ctx = Ctx {
        server,
        info,
        query,
        output: output::negotiate(&parts.headers),
        headers: parts.headers,
        user,
        served,
    };
    if matches!(
        info.group.as_str(),
        "authentication.k8s.io" | "authorization.k8s.io"
    ) && info.verb == "create"
    {
        return reviews::create(&ctx, read_body(body).await?).await;
    }
    if is_componentstatus {
        return componentstatus::handle(&ctx).await;
    }
    match (info.subresource.as_str(), info.verb.as_str()) {
        ("", "get") => read::get(&ctx).await,
        ("", "list") => read::list(&ctx).await,
        ("", "watch") => watch::watch(&ctx).await,
        ("", "create") => write::create(&ctx, read_body(body).await?).await,
        ("", "update") => write::update(&ctx, read_body(body).await?).await,
        ("", "patch") => patch::patch(&ctx, read_body(body).await?).await,
        ("", "delete") => write::delete(&ctx, read_body(body).await?).await,
        ("", "deletecollection") => write::delete_collection(&ctx, read_body(body).await?).await,
        ("status", "get") => read::get(&ctx).await,
        ("status", "update") => write::update(&ctx, read_body(body).await?).await,
        ("status", "patch") => patch::patch(&ctx, read_body(body).await?).await,
        ("scale", "get") => subresources::get_scale(&ctx).await,
        ("scale", "update") => subresources::update_scale(&ctx, read_body(body).await?).await,
        ("scale", "patch") => subresources::patch_scale(&ctx, read_body(body).await?).await,
        ("binding", "create") => subresources::bind(&ctx, read_body(body).await?).await,
        ("eviction", "create") => subresources::evict(&ctx, read_body(body).await?).await,
        ("finalize", "update") => subresources::finalize(&ctx, read_body(body).await?).await,
        ("token", "create") => token::create(&ctx, read_body(body).await?).await,
        _ => Err(ApiError::MethodNotSupported(format!(
            "the server does not allow this method on the requested resource"
        ))),
    }
}

/// The served resource a request addresses, or why it cannot be served (404/405).
fn route_resource(server: &ApiServer, info: &RequestInfo) -> Result<Served, ApiError> {
    let served = server
        .registry
        .lookup(&info.group, &info.version, &info.resource)
        .ok_or(ApiError::NotFoundPath)?;
    if !served.info.namespaced && !info.namespace.is_empty() && info.resource != "namespaces" {
        return Err(ApiError::NotFoundPath);
    }
    if !info.subresource.is_empty() && !served.info.has_subresource(&info.subresource) {
        return Err(ApiError::NotFoundPath);
    }
    // Upstream registers POST only on collections and PUT/PATCH only on named objects,
    // so the wrong shape is a 405 before the body is looked at.
    let wrong_shape = info.subresource.is_empty()
        && match info.verb.as_str() {
            "create" => !info.name.is_empty(),
            "update" | "patch" => info.name.is_empty(),
            _ => false,
        };
    if wrong_shape || (info.subresource.is_empty() && !served.info.has_verb(&info.verb)) {
        return Err(ApiError::MethodNotSupported(
            "the server does not allow this method on the requested resource".to_string(),
        ));
    }
    Ok(served)
}

/// How much of an oversized body is still read (and discarded) before answering 413.
/// Dropping an HTTP/2 request body that is still streaming resets the stream (CANCEL),
/// and clients then report a framing error instead of our Status.
const DRAIN_LIMIT: usize = 4 * MAX_BODY_BYTES;

pub(crate) async fn read_body(mut body: Incoming) -> Result<Bytes, ApiError> {
    let mut buf = bytes::BytesMut::new();
    let mut total = 0usize;
    while let Some(frame) = body.frame().await {
        let frame =
            frame.map_err(|e| ApiError::BadRequest(format!("unable to read request body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        total += data.len();
        if total > DRAIN_LIMIT {
            break;
        }
        if total <= MAX_BODY_BYTES {
            buf.extend_from_slice(&data);
        }
    }
    if total > MAX_BODY_BYTES {
        return Err(ApiError::TooLarge(MAX_BODY_BYTES));
    }
    Ok(buf.freeze())
}

/// Decodes a create/update body (JSON or YAML) into an object.
pub fn decode_object(headers: &http::HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let ct = negotiate::content_type(headers);
    let value: Value = match ct.as_str() {
        "" | "application/json" => serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("couldn't get version/kind; json parse error: {e}")))?,
        "application/yaml" => serde_yaml::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("error converting YAML to JSON: yaml: {e}")))?,
        // kubectl's typed clients send protobuf; we translate it to the JSON form.
        apis::protobuf::MEDIA_TYPE => apis::protobuf::decode(body).map_err(|e| ApiError::BadRequest(e.to_string()))?,
        _ => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf"
            )))
        }
    };
    if !value.is_object() {
        return Err(ApiError::BadRequest(format!(
            "the object provided is unrecognized (must be of type {})",
            "object"
        )));
    }
    Ok(value)
}

/// List options from the query: selectors, paging and resourceVersion semantics.
pub fn list_options(ctx: &Ctx<'_>) -> Result<ListOptions, ApiError> {
    let q = &ctx.query;
    let filter = output::selector_filter(ctx)?;
    let has_selector =
        q.non_empty("labelSelector").is_some() || q.non_empty("fieldSelector").is_some();
    let limit = match q.non_empty("limit") {
        Some(l) => l
            .parse::<i64>()
            .map_err(|_| ApiError::BadRequest(format!("invalid limit: {l}")))?
            .max(0) as usize,
        None => 0,
    };
    let rv_match = q.non_empty("resourceVersionMatch").map(str::to_string);
    if let Some(m) = &rv_match {
        if !matches!(m.as_str(), "NotOlderThan" | "Exact") {
            return Err(invalid_options(vec![apis::FieldError::not_supported(
                "resourceVersionMatch",
                m,
                &["Exact", "NotOlderThan", ""],
            )]));
        }
        if q.non_empty("resourceVersion").is_none() {
            return Err(invalid_options(vec![apis::FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            )]));
        }
    }
    Ok(ListOptions {
        filter,
        has_selector,
        limit,
        continue_token: q.non_empty("continue").map(str::to_string),
        resource_version: q.non_empty("resourceVersion").map(str::to_string),
        resource_version_match: rv_match,
    })
}

pub fn invalid_options(errors: apis::FieldErrors) -> ApiError {
    ApiError::Registry(registry::RegistryError::Invalid {
        group: "meta.k8s.io".into(),
        kind: "ListOptions".into(),
        name: String::new(),
        errors,
    })
}
