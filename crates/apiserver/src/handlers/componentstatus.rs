//! `componentstatuses`: the deprecated, read-only health view of the control plane.
//! Upstream computes it on every request by probing each component; so do we.

use http::{HeaderValue, Response, StatusCode};
use serde_json::{json, Value};

use super::output::{list_response_values, object_response};
use super::Ctx;
use crate::body::Body;
use crate::status::ApiError;

const DEPRECATION: &str = "299 - \"v1 ComponentStatus is deprecated in v1.19+\"";

async fn statuses(ctx: &Ctx<'_>) -> Vec<Value> {
    let store_ok = ctx
        .server
        .registry
        .storage()
        .current_revision()
        .await
        .is_ok();
    let component = |name: &str, healthy: bool, message: &str| {
        json!({
            "kind": "ComponentStatus",
            "apiVersion": "v1",
            "metadata": {"name": name},
            "conditions": [{
                "type": "Healthy",
                "status": if healthy { "True" } else { "False" },
                "message": message,
                "error": if healthy { Value::Null } else { json!(message) },
            }],
        })
    };
    let components = ctx.server.components.read().clone();
    let mut out = Vec::new();
    for (name, running) in [
        ("controller-manager", components.controller_manager),
        ("scheduler", components.scheduler),
    ] {
        out.push(if running {
            component(name, true, "ok")
        } else {
            component(name, false, "not running in this server")
        });
    }
    out.push(component(
        "etcd-0",
        store_ok,
        if store_ok {
            "ok"
        } else {
            "datastore unreachable"
        },
    ));
    out
}

pub async fn handle(ctx: &Ctx<'_>) -> Result<Response<Body>, ApiError> {
    let all = statuses(ctx).await;
    let mut resp = match ctx.info.verb.as_str() {
        "list" => list_response_values(ctx, all)?,
        "get" => {
            let obj = all
                .into_iter()
                .find(|c| {
                    c.pointer("/metadata/name").and_then(Value::as_str)
                        == Some(ctx.info.name.as_str())
                })
                .ok_or_else(|| {
                    ApiError::Registry(registry::RegistryError::NotFound {
                        group: String::new(),
                        resource: "componentstatuses".into(),
                        name: ctx.info.name.clone(),
                    })
                })?;
            object_response(ctx, StatusCode::OK, &obj)?
        }
        _ => {
            return Err(ApiError::MethodNotSupported(
                "the server does not allow this method on the requested resource".to_string(),
            ))
        }
    };
    resp.headers_mut()
        .append("Warning", HeaderValue::from_static(DEPRECATION));
    Ok(resp)
}
