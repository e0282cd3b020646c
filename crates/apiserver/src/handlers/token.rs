//! POST serviceaccounts/{name}/token: the TokenRequest API (`kubectl create token`, and
//! the node agent's projected service-account token volumes). Tokens are JWTs signed
//! with the cluster's service-account key, optionally bound to a Pod, Secret or Node so
//! they stop working when that object is deleted.

use http::{Response, StatusCode};
use pki::{BoundRef, Claims};
use registry::RegistryError;
use serde_json::{json, Value};

use super::output::object_response;
use super::{decode_object, Ctx};
use crate::body::Body;
use crate::status::ApiError;

/// Default token lifetime when the request names none (upstream: one hour).
const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// Shortest lifetime a client may ask for.
const MIN_EXPIRATION_SECONDS: i64 = 600;
/// Longest lifetime a client may ask for.
const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

pub async fn create(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let request = decode_object(&ctx.headers, &body)?;
    let key = ctx
        .server
        .authenticator
        .service_accounts
        .clone()
        .ok_or_else(|| {
            ApiError::MethodNotSupported("service-account tokens are disabled".to_string())
        })?;
    let (namespace, name) = (ctx.info.namespace.as_str(), ctx.info.name.as_str());
    let invalid = |errors: Vec<apis::FieldError>| {
        ApiError::Registry(RegistryError::Invalid {
            group: "authentication.k8s.io".into(),
            kind: "TokenRequest".into(),
            name: name.to_string(),
            errors: errors.into(),
        })
    };

    let seconds = request
        .pointer("/spec/expirationSeconds")
        .and_then(Value::as_i64)
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    if seconds < MIN_EXPIRATION_SECONDS {
        return Err(invalid(vec![apis::FieldError::invalid_raw(
            "spec.expirationSeconds",
            seconds,
            "may not specify a duration less than 10 minutes",
        )]));
    }
    if seconds > MAX_EXPIRATION_SECONDS {
        return Err(invalid(vec![apis::FieldError::invalid_raw(
            "spec.expirationSeconds",
            seconds,
            "may not specify a duration larger than 2^32 seconds",
        )]));
    }
    let mut audiences: Vec<String> = request
        .pointer("/spec/audiences")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    if audiences.is_empty() {
        audiences = ctx.server.authenticator.audiences.clone();
    }

    let account = get_object(ctx, "serviceaccounts", namespace, name).await?;
    let uid = account
        .pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let now = crate::authn::now_unix();
    let mut claims = Claims::new(namespace, name, uid, audiences.clone(), now, seconds);

    let bound = request
        .pointer("/spec/boundObjectRef")
        .filter(|v| !v.is_null());
    if let Some(bound) = bound {
        let kind = bound
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let bound_name = bound
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (resource, bound_ns) = match kind {
            "Pod" => ("pods", namespace),
            "Secret" => ("secrets", namespace),
            "Node" => ("nodes", ""),
            other => {
                return Err(invalid(vec![apis::FieldError::not_supported(
                    "spec.boundObjectRef.kind",
                    other,
                    &["Node", "Pod", "Secret"],
                )]))
            }
        };
        if bound_name.is_empty() {
            return Err(invalid(vec![apis::FieldError::required(
                "spec.boundObjectRef.name",
                "",
            )]));
        }
        let obj = get_object(ctx, resource, bound_ns, bound_name).await?;
        let actual_uid = obj
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if let Some(wanted) = bound
            .get("uid")
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
        {
            if wanted != actual_uid {
                return Err(ApiError::Registry(RegistryError::Conflict {
                    group: String::new(),
                    resource: resource.to_string(),
                    name: bound_name.to_string(),
                    message: format!(
                        "the UID in the bound object reference ({wanted}) does not match the UID in record. The object might have been deleted and then recreated"
                    ),
                }));
            }
        }
        let bound_ref = Some(BoundRef {
            name: bound_name.to_string(),
            uid: actual_uid.to_string(),
        });
        match kind {
            "Pod" => claims.kubernetes.pod = bound_ref,
            "Secret" => claims.kubernetes.secret = bound_ref,
            _ => claims.kubernetes.node = bound_ref,
        }
    }

    let token = key.sign(&claims).map_err(ApiError::internal)?;
    let expiration = jiff_rfc3339(claims.exp);
    let mut spec =
        json!({"audiences": audiences, "expirationSeconds": seconds, "boundObjectRef": null});
    if let Some(bound) = bound {
        let mut bound = bound.clone();
        if let (Some(m), Some(b)) = (
            bound.as_object_mut(),
            claims
                .kubernetes
                .pod
                .as_ref()
                .or(claims.kubernetes.secret.as_ref())
                .or(claims.kubernetes.node.as_ref()),
        ) {
            m.insert("uid".into(), json!(b.uid));
        }
        spec["boundObjectRef"] = bound;
    }
    let response = json!({
        "kind": "TokenRequest",
        "apiVersion": "authentication.k8s.io/v1",
        "metadata": {"name": name, "namespace": namespace, "creationTimestamp": registry::meta::now_rfc3339()},
        "spec": spec,
        "status": {"token": token, "expirationTimestamp": expiration},
    });
    object_response(ctx, StatusCode::CREATED, &response)
}

async fn get_object(
    ctx: &Ctx<'_>,
    resource: &str,
    namespace: &str,
    name: &str,
) -> Result<Value, ApiError> {
    let served = ctx
        .server
        .registry
        .lookup("", "v1", resource)
        .ok_or_else(|| ApiError::internal(format!("{resource} not served")))?;
    Ok(served.store.get(namespace, name).await?)
}

fn jiff_rfc3339(unix: i64) -> String {
    apis::k8s_openapi::jiff::Timestamp::from_second(unix)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}
