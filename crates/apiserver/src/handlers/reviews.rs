//! Create-only review resources: `SelfSubjectReview` (`kubectl auth whoami`) and the
//! access reviews (`kubectl auth can-i`). Authorization is "authenticated" for now, so
//! every access review of an authenticated user is allowed.

use http::{Response, StatusCode};
use serde_json::{json, Value};

use super::{decode_object, Ctx};
use crate::body::Body;
use crate::status::ApiError;

pub async fn create(ctx: &Ctx<'_>, body: bytes::Bytes) -> Result<Response<Body>, ApiError> {
    let mut obj = decode_object(&ctx.headers, &body)?;
    let info = &ctx.served.info;
    let user = &ctx.user;
    let status = match info.resource.as_str() {
        "selfsubjectreviews" => {
            json!({"userInfo": {"username": user.name, "uid": user.uid, "groups": user.groups}})
        }
        "tokenreviews" => {
            let token = obj
                .pointer("/spec/token")
                .and_then(Value::as_str)
                .unwrap_or("");
            let credential = ctx.server.authenticator.authenticate_token(token);
            match crate::authn::resolve(&ctx.server.registry, credential).await {
                Some(u) => {
                    json!({"authenticated": true, "user": {"username": u.name, "uid": u.uid, "groups": u.groups}})
                }
                None => json!({"authenticated": false}),
            }
        }
        "selfsubjectrulesreviews" => json!({
            "resourceRules": [{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}],
            "nonResourceRules": [{"verbs": ["*"], "nonResourceURLs": ["*"]}],
            "incomplete": false,
        }),
        _ => json!({"allowed": true, "reason": "rkube authorizes every authenticated user"}),
    };
    if let Some(m) = obj.as_object_mut() {
        m.insert("apiVersion".into(), json!(info.api_version()));
        m.insert("kind".into(), json!(info.kind));
        let meta = m.entry("metadata").or_insert_with(|| json!({}));
        if let Some(mm) = meta.as_object_mut() {
            mm.insert(
                "creationTimestamp".into(),
                json!(registry::meta::now_rfc3339()),
            );
        }
        m.insert("status".into(), status);
    }
    Ok(crate::json_response(StatusCode::CREATED, &obj))
}
