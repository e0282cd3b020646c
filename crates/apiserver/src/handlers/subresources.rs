//! Subresources: scale (autoscaling/v1 Scale over `spec.replicas`), pod binding and
//! eviction, namespace finalize.

use http::{Response, StatusCode};
use registry::{meta, RegistryError, UpdateMode, WriteOptions};
use serde_json::{json, Value};

use super::output::object_response;
use super::{decode_object, Ctx};
use crate::body::Body;
use crate::negotiate;
use crate::status::ApiError;

/// Where a resource keeps its replica counts and selector.
struct ScalePaths {
    spec_replicas: String,
    status_replicas: String,
    selector: Option<String>,
}

fn scale_paths(ctx: &Ctx<'_>) -> ScalePaths {
    let info = &ctx.served.info;
    if let Some(p) =
        ctx.server
            .registry
            .custom_scale_paths(&info.group, &info.version, &info.resource)
    {
        return p_to(p);
    }
    ScalePaths {
        spec_replicas: "/spec/replicas".to_string(),
        status_replicas: "/status/replicas".to_string(),
        selector: Some("/spec/selector".to_string()),
    }
}

fn p_to(p: apis::crd::ScalePaths) -> ScalePaths {
    let ptr = |s: &str| {
        s.trim_start_matches('.')
            .split('.')
            .map(|x| format!("/{x}"))
            .collect::<String>()
    };
    ScalePaths {
        spec_replicas: ptr(&p.spec_replicas),
        status_replicas: ptr(&p.status_replicas),
        selector: p.label_selector.as_deref().map(ptr),
    }
}

fn selector_string(v: Option<&Value>) -> String {
    match v {
        Some(Value::String(s)) => s.clone(),
        Some(sel @ Value::Object(m))
            if m.contains_key("matchLabels") || m.contains_key("matchExpressions") =>
        {
            let parsed = serde_json::from_value::<
                apis::k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector,
            >(sel.clone());
            parsed
                .ok()
                .and_then(|s| apis::selectors::LabelSelector::from_metav1(&s).ok())
                .map(|s| s.to_string())
                .unwrap_or_default()
        }
        // RC selectors are plain maps.
        Some(Value::Object(m)) => {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        _ => String::new(),
    }
}

fn to_scale(obj: &Value, paths: &ScalePaths) -> Value {
    let m = obj.get("metadata").cloned().unwrap_or(json!({}));
    let mut metadata = json!({});
    for f in [
        "name",
        "namespace",
        "uid",
        "resourceVersion",
        "creationTimestamp",
    ] {
        if let Some(v) = m.get(f) {
            metadata[f] = v.clone();
        }
    }
    json!({
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": metadata,
        "spec": {"replicas": obj.pointer(&paths.spec_replicas).and_then(Value::as_i64).unwrap_or(0)},
        "status": {
            "replicas": obj.pointer(&paths.status_replicas).and_then(Value::as_i64).unwrap_or(0),
            "selector": selector_string(paths.selector.as_deref().and_then(|p| obj.pointer(p))),
        },
    })
}

fn set_pointer(obj: &mut Value, pointer: &str, v: Value) {
    let mut cur = obj;
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    for (i, p) in parts.iter().enumerate() {
        if !cur.is_object() {
            *cur = json!({});
        }
        let Some(m) = cur.as_object_mut() else { return };
        if i == parts.len() - 1 {
            m.insert(p.to_string(), v);
            return;
        }
        cur = m.entry(p.to_string()).or_insert_with(|| json!({}));
    }
}

pub async fn get_scale(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let obj = ctx
        .served
        .store
        .get(&ctx.info.namespace, &ctx.info.name)
        .await?;
    object_json(StatusCode::OK, &to_scale(&obj, &scale_paths(ctx)))
}

fn object_json(code: StatusCode, v: &Value) -> Result<Response<Body>, ApiError> {
    Ok(crate::json_response(code, v))
}

async fn write_scale(
    ctx: &Ctx<'_>,
    compute: &mut (dyn FnMut(&Value) -> Result<Value, RegistryError> + Send),
) -> Result<Response<Body>, ApiError> {
    let paths = scale_paths(ctx);
    let opts = WriteOptions {
        dry_run: ctx.dry_run()?,
    };
    let (obj, _) = ctx
        .served
        .store
        .guaranteed_update(
            &ctx.info.namespace,
            &ctx.info.name,
            UpdateMode::Main,
            &opts,
            &mut |old| {
                let Some(old) = old else {
                    return Err(RegistryError::NotFound {
                        group: ctx.served.info.group.clone(),
                        resource: ctx.served.info.resource.clone(),
                        name: ctx.info.name.clone(),
                    });
                };
                let scale = compute(&to_scale(old, &paths))?;
                let replicas = scale
                    .pointer("/spec/replicas")
                    .and_then(Value::as_i64)
                    .unwrap_or(0);
                if replicas < 0 {
                    return Err(RegistryError::Invalid {
                        group: "autoscaling".into(),
                        kind: "Scale".into(),
                        name: ctx.info.name.clone(),
                        errors: vec![apis::FieldError::invalid_raw(
                            "spec.replicas",
                            replicas,
                            "must be greater than or equal to 0",
                        )],
                    });
                }
                let want_rv = meta::resource_version(&scale);
                if !want_rv.is_empty() && want_rv != meta::resource_version(old) {
                    return Err(RegistryError::Conflict {
                        group: ctx.served.info.group.clone(),
                        resource: ctx.served.info.resource.clone(),
                        name: ctx.info.name.clone(),
                        message: registry::error::OBJECT_MODIFIED.to_string(),
                    });
                }
                let mut new = old.clone();
                set_pointer(&mut new, &paths.spec_replicas, json!(replicas));
                super::managed::record_update(ctx, Some(old), &mut new);
                Ok(new)
            },
        )
        .await?;
    object_json(StatusCode::OK, &to_scale(&obj, &paths))
}

pub async fn update_scale(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let scale = decode_object(&ctx.headers, &body)?;
    write_scale(ctx, &mut |_| Ok(scale.clone())).await
}

pub async fn patch_scale(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let ct = negotiate::content_type(&ctx.headers);
    let patch: Option<Value> = if ct == "application/json-patch+json" {
        None
    } else {
        Some(
            serde_json::from_slice(&body)
                .map_err(|e| ApiError::BadRequest(format!("error decoding patch: {e}")))?,
        )
    };
    write_scale(ctx, &mut |current| {
        let r = match (&patch, ct.as_str()) {
            (None, _) => apis::patch::json_patch(current, &body),
            (Some(p), "application/merge-patch+json") => apis::patch::merge_patch(current, p),
            (Some(p), "application/strategic-merge-patch+json") => {
                apis::patch::merge_patch(current, p)
            }
            (Some(p), "application/apply-patch+yaml") => apis::patch::merge_patch(current, p),
            _ => {
                return Err(RegistryError::BadRequest(
                    "unsupported patch type".to_string(),
                ))
            }
        };
        r.map_err(|e| RegistryError::BadRequest(e.to_string()))
    })
    .await
}

/// POST pods/{name}/binding: assigns the pod to a node once.
pub async fn bind(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let binding = decode_object(&ctx.headers, &body)?;
    let node = binding
        .pointer("/target/name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    if node.is_empty() {
        return Err(ApiError::Registry(RegistryError::Invalid {
            group: String::new(),
            kind: "Binding".into(),
            name: ctx.info.name.clone(),
            errors: vec![apis::FieldError::required("target.name", "")],
        }));
    }
    let opts = WriteOptions {
        dry_run: ctx.dry_run()?,
    };
    let name = ctx.info.name.clone();
    ctx.served
        .store
        .guaranteed_update(&ctx.info.namespace, &name, UpdateMode::Internal, &opts, &mut |old| {
            let Some(old) = old else {
                return Err(RegistryError::NotFound { group: String::new(), resource: "pods".into(), name: name.clone() });
            };
            if meta::deletion_timestamp(old).is_some() {
                return Err(RegistryError::Conflict {
                    group: String::new(),
                    resource: "pods".into(),
                    name: name.clone(),
                    message: format!("pod {name} is being deleted, cannot be assigned to a host"),
                });
            }
            if let Some(current) = old.pointer("/spec/nodeName").and_then(Value::as_str).filter(|n| !n.is_empty()) {
                return Err(RegistryError::Conflict {
                    group: String::new(),
                    resource: "pods".into(),
                    name: name.clone(),
                    message: format!("pod {name} is already assigned to node \"{current}\""),
                });
            }
            let mut new = old.clone();
            set_pointer(&mut new, "/spec/nodeName", json!(node));
            let mut conditions: Vec<Value> =
                new.pointer("/status/conditions").and_then(Value::as_array).cloned().unwrap_or_default();
            conditions.retain(|c| c.get("type").and_then(Value::as_str) != Some("PodScheduled"));
            conditions.push(json!({"type": "PodScheduled", "status": "True", "lastProbeTime": null, "lastTransitionTime": meta::now_rfc3339()}));
            set_pointer(&mut new, "/status/conditions", json!(conditions));
            Ok(new)
        })
        .await?;
    Ok(crate::json_response(
        StatusCode::CREATED,
        &crate::status::success_status(json!({"name": ctx.info.name, "kind": "pods"})),
    ))
}

/// POST pods/{name}/eviction: deletes the pod unless a PodDisruptionBudget forbids it
/// (429 with a `DisruptionTarget` cause; see `registry::core::eviction`).
pub async fn evict(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let eviction = decode_object(&ctx.headers, &body)?;
    let body_name = meta::name(&eviction);
    if !body_name.is_empty() && body_name != ctx.info.name {
        return Err(ApiError::BadRequest(
            "name in URL does not match name in Eviction object".to_string(),
        ));
    }
    let opts = registry::core::eviction::delete_options(&eviction, ctx.dry_run()?);
    registry::core::eviction::evict(
        &ctx.server.registry,
        &ctx.served,
        &ctx.info.namespace,
        &ctx.info.name,
        opts,
    )
    .await?;
    Ok(crate::json_response(
        StatusCode::CREATED,
        &crate::status::success_status(json!({})),
    ))
}

pub async fn finalize(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let obj = decode_object(&ctx.headers, &body)?;
    let updated = ctx
        .server
        .registry
        .finalize_namespace(&ctx.info.name, obj)
        .await?;
    object_response(ctx, StatusCode::OK, &updated)
}
