//! PATCH: JSON patch, merge patch, strategic merge patch, and server-side apply.

use http::{Response, StatusCode};
use registry::{RegistryError, UpdateMode, WriteOptions};
use serde_json::Value;

use super::output::object_response;
use super::write::{check_type_meta, field_validation, with_warnings};
use super::{managed, Ctx};
use crate::body::Body;
use crate::negotiate;
use crate::status::ApiError;

#[derive(Clone, Copy, PartialEq, Eq)]
enum PatchType {
    Json,
    Merge,
    Strategic,
    Apply,
}

fn patch_type(ctx: &Ctx<'_>) -> Result<PatchType, ApiError> {
    let custom = ctx
        .server
        .registry
        .is_custom(&ctx.served.info.group, &ctx.served.info.resource);
    let t = match negotiate::content_type(&ctx.headers).as_str() {
        "application/json-patch+json" => PatchType::Json,
        "application/merge-patch+json" => PatchType::Merge,
        "application/strategic-merge-patch+json" if !custom => PatchType::Strategic,
        "application/apply-patch+yaml" => PatchType::Apply,
        _ => {
            let accepted = if custom {
                "application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml"
            } else {
                "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml"
            };
            return Err(ApiError::UnsupportedMediaType(format!(
                "the body of the request was in an unknown format - accepted media types include: {accepted}"
            )));
        }
    };
    Ok(t)
}

fn mode(ctx: &Ctx<'_>) -> UpdateMode {
    if ctx.info.subresource == "status" {
        UpdateMode::Status
    } else {
        UpdateMode::Main
    }
}

pub async fn patch(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let kind = patch_type(ctx)?;
    if kind == PatchType::Apply {
        return apply(ctx, body).await;
    }
    let patch_value: Option<Value> = match kind {
        PatchType::Json => None,
        _ => Some(
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?,
        ),
    };
    if let Some(p) = &patch_value {
        if !p.is_object() {
            return Err(ApiError::BadRequest(
                "json: cannot unmarshal array into Go value of type map[string]interface {}"
                    .to_string(),
            ));
        }
    }
    let opts = WriteOptions {
        dry_run: ctx.dry_run()?,
    };
    let info = ctx.served.info.clone();
    let root = apis::schema::root(&info.group, &info.version, &info.kind);
    let mut warnings = Vec::new();
    let (obj, _) = ctx
        .served
        .store
        .guaranteed_update(
            &ctx.info.namespace,
            &ctx.info.name,
            mode(ctx),
            &opts,
            &mut |old| {
                let Some(old) = old else {
                    return Err(RegistryError::NotFound {
                        group: info.group.clone(),
                        resource: info.resource.clone(),
                        name: ctx.info.name.clone(),
                    });
                };
                let mut new = match kind {
                    PatchType::Json => apis::patch::json_patch(old, &body),
                    PatchType::Merge => {
                        apis::patch::merge_patch(old, patch_value.as_ref().unwrap_or(&Value::Null))
                    }
                    PatchType::Strategic => apis::patch::strategic_merge_patch(
                        old,
                        patch_value.as_ref().unwrap_or(&Value::Null),
                        root.clone(),
                    ),
                    PatchType::Apply => unreachable_apply(),
                }
                .map_err(patch_error)?;
                // A resourceVersion the patch sets is a precondition, as upstream.
                let wanted = registry::meta::resource_version(&new);
                if !wanted.is_empty() && wanted != registry::meta::resource_version(old) {
                    return Err(RegistryError::Conflict {
                        group: info.group.clone(),
                        resource: info.resource.clone(),
                        name: ctx.info.name.clone(),
                        message: registry::error::OBJECT_MODIFIED.to_string(),
                    });
                }
                warnings = field_validation(ctx, &new, None).map_err(to_registry)?;
                managed::record_update(ctx, Some(old), &mut new);
                Ok(new)
            },
        )
        .await?;
    Ok(with_warnings(
        object_response(ctx, StatusCode::OK, &obj)?,
        &warnings,
    ))
}

fn unreachable_apply() -> Result<Value, apis::patch::PatchError> {
    Err(apis::patch::PatchError::Invalid(
        "apply is handled separately".to_string(),
    ))
}

fn patch_error(e: apis::patch::PatchError) -> RegistryError {
    match e.code() {
        422 => RegistryError::Unprocessable(e.to_string()),
        500 => RegistryError::Internal(e.to_string()),
        _ => RegistryError::BadRequest(e.to_string()),
    }
}

/// Carries an HTTP-level error through the registry's update closure.
fn to_registry(e: ApiError) -> RegistryError {
    match e {
        ApiError::Registry(r) => r,
        other => RegistryError::BadRequest(other.to_string()),
    }
}

async fn apply(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let applied: Value = serde_yaml::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("error decoding YAML: {e}")))?;
    if !applied.is_object() {
        return Err(ApiError::BadRequest(
            "apply patch must be an object".to_string(),
        ));
    }
    let info = ctx.served.info.clone();
    if ctx.info.subresource.is_empty() {
        check_type_meta(ctx, &applied, &info.kind, &info.api_version())?;
    }
    if ctx.query.non_empty("fieldManager").is_none() {
        return Err(ApiError::BadRequest(
            "fieldManager is required for apply requests".to_string(),
        ));
    }
    let body_name = registry::meta::name(&applied);
    if !body_name.is_empty() && body_name != ctx.info.name {
        return Err(ApiError::BadRequest(format!(
            "the name of the object ({body_name}) does not match the name on the URL ({})",
            ctx.info.name
        )));
    }
    let warnings = field_validation(ctx, &applied, Some(&body))?;
    let force = ctx.query.flag("force");
    let opts = WriteOptions {
        dry_run: ctx.dry_run()?,
    };
    let result = ctx
        .served
        .store
        .guaranteed_update(
            &ctx.info.namespace,
            &ctx.info.name,
            mode(ctx),
            &opts,
            &mut |old| {
                let Some(old) = old else {
                    return Err(RegistryError::NotFound {
                        group: info.group.clone(),
                        resource: info.resource.clone(),
                        name: ctx.info.name.clone(),
                    });
                };
                managed::apply(ctx, Some(old), &applied, force)
            },
        )
        .await;
    let obj = match result {
        Ok((obj, _)) => obj,
        Err(RegistryError::NotFound { .. }) if ctx.info.subresource.is_empty() => {
            // Apply creates what does not exist yet.
            let mut new = managed::apply(ctx, None, &applied, force)?;
            if registry::meta::name(&new).is_empty() {
                registry::meta::set_meta(&mut new, "name", Value::String(ctx.info.name.clone()));
            }
            let created = ctx
                .server
                .registry
                .create(&ctx.served, &ctx.info.namespace, new, &opts)
                .await?;
            return Ok(with_warnings(
                object_response(ctx, StatusCode::CREATED, &created)?,
                &warnings,
            ));
        }
        Err(e) => return Err(e.into()),
    };
    Ok(with_warnings(
        object_response(ctx, StatusCode::OK, &obj)?,
        &warnings,
    ))
}
