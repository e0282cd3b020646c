//! CREATE, UPDATE (PUT), DELETE and DELETECOLLECTION.

use http::{HeaderValue, Response, StatusCode};
use registry::{meta, DeleteOptions, RegistryError, UpdateMode, WriteOptions};
use serde_json::{json, Value};

use super::output::{list_response_values, object_response};
use super::{decode_object, list_options, managed, Ctx};
use crate::body::Body;
use crate::status::ApiError;

/// Checks `apiVersion`/`kind` of a body against the endpoint (filling them in if absent
/// is not upstream behaviour: kubectl always sends them).
pub fn check_type_meta(
    ctx: &Ctx<'_>,
    obj: &Value,
    expect_kind: &str,
    expect_api_version: &str,
) -> Result<(), ApiError> {
    let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
    let api_version = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
    if kind.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "Object 'Kind' is missing in '{}'",
            truncate(&obj.to_string())
        )));
    }
    if api_version.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "Object 'apiVersion' is missing in '{}'",
            truncate(&obj.to_string())
        )));
    }
    if api_version != expect_api_version {
        return Err(ApiError::BadRequest(format!(
            "the API version in the data ({api_version}) does not match the expected API version ({expect_api_version})"
        )));
    }
    if kind != expect_kind {
        let _ = ctx;
        return Err(ApiError::BadRequest(format!(
            "the kind in the data ({kind}) does not match the expected kind ({expect_kind})"
        )));
    }
    Ok(())
}

fn truncate(s: &str) -> String {
    if s.len() > 200 {
        let mut end = 200;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}...", &s[..end])
    } else {
        s.to_string()
    }
}

/// Applies `fieldValidation` (Strict / Warn (default) / Ignore); returns warnings.
pub fn field_validation(
    ctx: &Ctx<'_>,
    obj: &Value,
    raw: Option<&[u8]>,
) -> Result<Vec<String>, ApiError> {
    let info = &ctx.served.info;
    apis::decode::type_check(&info.group, &info.version, &info.kind, obj)
        .map_err(ApiError::BadRequest)?;
    let mode = ctx.query.non_empty("fieldValidation").unwrap_or("Warn");
    if !matches!(mode, "Strict" | "Warn" | "Ignore") {
        return Err(ApiError::BadRequest(format!(
            "fieldValidation parameter unsupported: {mode}, valid values are Strict, Warn, Ignore"
        )));
    }
    if mode == "Ignore" {
        return Ok(Vec::new());
    }
    let mut problems: Vec<String> = ctx
        .served
        .store
        .strategy
        .unknown_fields(obj)
        .into_iter()
        .map(|f| format!("unknown field \"{f}\""))
        .collect();
    if let Some(raw) = raw {
        problems.extend(
            apis::decode::duplicate_fields(raw)
                .into_iter()
                .map(|f| format!("duplicate field \"{f}\"")),
        );
    }
    if problems.is_empty() {
        return Ok(Vec::new());
    }
    if mode == "Strict" {
        return Err(ApiError::BadRequest(format!(
            "strict decoding error: {}",
            problems.join(", ")
        )));
    }
    Ok(problems)
}

pub fn with_warnings(mut resp: Response<Body>, warnings: &[String]) -> Response<Body> {
    for w in warnings {
        let v = format!("299 - {}", serde_json::to_string(w).unwrap_or_default());
        if let Ok(h) = HeaderValue::from_str(&v) {
            resp.headers_mut().append("Warning", h);
        }
    }
    resp
}

pub async fn create(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let mut obj = decode_object(&ctx.headers, &body)?;
    let info = &ctx.served.info;
    check_type_meta(ctx, &obj, &info.kind, &info.api_version())?;
    let warnings = field_validation(ctx, &obj, Some(&body))?;
    let ns = ctx.info.namespace.clone();
    managed::record_update(ctx, None, &mut obj);
    let opts = WriteOptions {
        dry_run: ctx.dry_run()?,
    };
    let created = ctx
        .server
        .registry
        .create(&ctx.served, &ns, obj, &opts)
        .await?;
    Ok(with_warnings(
        object_response(ctx, StatusCode::CREATED, &created)?,
        &warnings,
    ))
}

pub async fn update(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let obj = decode_object(&ctx.headers, &body)?;
    let info = &ctx.served.info;
    check_type_meta(ctx, &obj, &info.kind, &info.api_version())?;
    let warnings = field_validation(ctx, &obj, Some(&body))?;
    let mode = if ctx.info.subresource == "status" {
        UpdateMode::Status
    } else {
        UpdateMode::Main
    };
    let opts = WriteOptions {
        dry_run: ctx.dry_run()?,
    };
    let precondition = meta::resource_version(&obj).to_string();
    let name = ctx.info.name.clone();
    let body_name = meta::name(&obj).to_string();
    if !body_name.is_empty() && body_name != name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({name})"
        )));
    }
    let mut template = Some(obj);
    let (updated, created) = ctx
        .served
        .store
        .update_with_precondition(
            &ctx.info.namespace,
            &name,
            mode,
            &opts,
            Some(precondition).filter(|p| !p.is_empty()),
            &mut |old| {
                let mut new = template
                    .clone()
                    .ok_or_else(|| RegistryError::internal("no update body"))?;
                managed::record_update(ctx, old, &mut new);
                Ok(new)
            },
        )
        .await?;
    template.take();
    let code = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(with_warnings(
        object_response(ctx, code, &updated)?,
        &warnings,
    ))
}

fn delete_options(ctx: &Ctx<'_>, body: &[u8]) -> Result<DeleteOptions, ApiError> {
    let q = &ctx.query;
    let parsed: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        decode_object(&ctx.headers, body)?
    };
    let grace = match q.non_empty("gracePeriodSeconds") {
        Some(g) => Some(
            g.parse::<i64>()
                .map_err(|_| ApiError::BadRequest(format!("invalid gracePeriodSeconds: {g}")))?,
        ),
        None => parsed.get("gracePeriodSeconds").and_then(Value::as_i64),
    };
    let mut propagation = q
        .non_empty("propagationPolicy")
        .map(str::to_string)
        .or_else(|| {
            parsed
                .get("propagationPolicy")
                .and_then(Value::as_str)
                .map(str::to_string)
        });
    let orphan = q
        .get("orphanDependents")
        .map(|v| v == "true")
        .or_else(|| parsed.get("orphanDependents").and_then(Value::as_bool));
    if propagation.is_none() {
        if let Some(o) = orphan {
            propagation = Some(if o { "Orphan" } else { "Background" }.to_string());
        }
    }
    if let Some(p) = &propagation {
        if !matches!(p.as_str(), "Orphan" | "Background" | "Foreground") {
            return Err(ApiError::Registry(RegistryError::Invalid {
                group: "meta.k8s.io".into(),
                kind: "DeleteOptions".into(),
                name: String::new(),
                errors: vec![apis::FieldError::not_supported(
                    "propagationPolicy",
                    p,
                    &["Foreground", "Background", "Orphan", "nil"],
                )],
            }));
        }
    }
    let dry_run = ctx.dry_run()?
        || parsed
            .get("dryRun")
            .and_then(Value::as_array)
            .is_some_and(|a| a.iter().any(|v| v == "All"));
    Ok(DeleteOptions {
        dry_run,
        grace_period_seconds: grace,
        propagation_policy: propagation,
        precondition_uid: parsed
            .pointer("/preconditions/uid")
            .and_then(Value::as_str)
            .map(str::to_string),
        precondition_resource_version: parsed
            .pointer("/preconditions/resourceVersion")
            .and_then(Value::as_str)
            .map(str::to_string),
    })
}

pub async fn delete(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx, &body)?;
    let outcome = ctx
        .server
        .registry
        .delete(&ctx.served, &ctx.info.namespace, &ctx.info.name, &opts)
        .await?;
    let code = if outcome.deleted {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    object_response(ctx, code, &outcome.object)
}

pub async fn delete_collection(
    ctx: &Ctx<'_>,
    body: bytes::Bytes,
) -> Result<Response<Body>, ApiError> {
    let opts = delete_options(ctx, &body)?;
    let list_opts = list_options(ctx)?;
    let deleted = ctx
        .served
        .store
        .delete_collection(&ctx.info.namespace, &list_opts, &opts)
        .await?;
    list_response_values(ctx, deleted)
}
