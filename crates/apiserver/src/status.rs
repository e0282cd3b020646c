//! The one place errors become `metav1.Status` responses.
//!
//! kubectl prints `Error from server (<reason>): <message>`, so the reason, message,
//! code and details here must match what kube-apiserver sends.

use bytes::Bytes;
use http::{header, Response, StatusCode};
use registry::RegistryError;
use serde_json::{json, Map, Value};

use crate::body::{full, Body};

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error(transparent)]
    Registry(#[from] RegistryError),
    #[error("Unauthorized")]
    Unauthorized,
    #[error("the server could not find the requested resource")]
    NotFoundPath,
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{0}")]
    NotAcceptable(String),
    #[error("{0}")]
    MethodNotSupported(String),
    #[error("Request entity too large: limit is {0}")]
    TooLarge(usize),
    /// Upstream's `NewBadRequest`.
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        ApiError::Internal(e.to_string())
    }

    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::Registry(e) => match e {
                RegistryError::NotFound { .. } => StatusCode::NOT_FOUND,
                RegistryError::AlreadyExists { .. }
                | RegistryError::Conflict { .. }
                | RegistryError::ApplyConflict { .. } => StatusCode::CONFLICT,
                RegistryError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
                RegistryError::BadRequest(_) => StatusCode::BAD_REQUEST,
                RegistryError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
                RegistryError::Gone(_) | RegistryError::Expired(_) => StatusCode::GONE,
                RegistryError::Forbidden(_) => StatusCode::FORBIDDEN,
                RegistryError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
                RegistryError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                RegistryError::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
                RegistryError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            },
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFoundPath => StatusCode::NOT_FOUND,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::NotAcceptable(_) => StatusCode::NOT_ACCEPTABLE,
            ApiError::MethodNotSupported(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::Registry(e) => match e {
                RegistryError::NotFound { .. } => "NotFound",
                RegistryError::AlreadyExists { .. } => "AlreadyExists",
                RegistryError::Conflict { .. } | RegistryError::ApplyConflict { .. } => "Conflict",
                RegistryError::Invalid { .. } => "Invalid",
                RegistryError::BadRequest(_) => "BadRequest",
                RegistryError::Unprocessable(_) => "Invalid",
                RegistryError::Gone(_) => "Expired",
                RegistryError::Expired(_) => "Expired",
                RegistryError::Forbidden(_) => "Forbidden",
                RegistryError::MethodNotAllowed(_) => "MethodNotAllowed",
                RegistryError::Timeout(_) => "Timeout",
                RegistryError::TooManyRequests { .. } => "TooManyRequests",
                RegistryError::Internal(_) => "InternalError",
            },
            ApiError::Unauthorized => "Unauthorized",
            ApiError::NotFoundPath => "NotFound",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::NotAcceptable(_) => "NotAcceptable",
            ApiError::MethodNotSupported(_) => "MethodNotAllowed",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Internal(_) => "InternalError",
        }
    }

    fn details(&self) -> Option<Value> {
        let ApiError::Registry(e) = self else {
            return None;
        };
        let named = |group: &str, kind: &str, name: &str| {
            let mut d = Map::new();
            if !name.is_empty() {
                d.insert("name".into(), json!(name));
            }
            if !group.is_empty() {
                d.insert("group".into(), json!(group));
            }
            d.insert("kind".into(), json!(kind));
            d
        };
        match e {
            RegistryError::NotFound {
                group,
                resource,
                name,
            }
            | RegistryError::AlreadyExists {
                group,
                resource,
                name,
            }
            | RegistryError::Conflict {
                group,
                resource,
                name,
                ..
            } => Some(Value::Object(named(group, resource, name))),
            RegistryError::Invalid {
                group,
                kind,
                name,
                errors,
            } => {
                let mut d = named(group, kind, name);
                let causes: Vec<Value> = errors
                    .iter()
                    .map(|fe| json!({"reason": fe.kind.reason(), "message": fe.message(), "field": fe.field}))
                    .collect();
                d.insert("causes".into(), json!(causes));
                Some(Value::Object(d))
            }
            RegistryError::TooManyRequests {
                retry_after_seconds,
                causes,
                ..
            } => {
                let mut d = Map::new();
                if !causes.is_empty() {
                    let causes: Vec<Value> = causes
                        .iter()
                        .map(|(reason, message)| json!({"reason": reason, "message": message}))
                        .collect();
                    d.insert("causes".into(), json!(causes));
                }
                if *retry_after_seconds > 0 {
                    d.insert("retryAfterSeconds".into(), json!(retry_after_seconds));
                }
                Some(Value::Object(d))
            }
            RegistryError::ApplyConflict { causes, .. } => Some(json!({
                "causes": causes.iter().map(|(field, message)| json!({
                    "reason": "FieldManagerConflict", "message": message, "field": field
                })).collect::<Vec<_>>()
            })),
            _ => None,
        }
    }

    /// The `metav1.Status` body.
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if let Some(d) = self.details() {
            s["details"] = d;
        }
        s
    }

    pub fn into_response(self) -> Response<Body> {
        let code = self.code();
        if code.is_server_error() {
            tracing::error!(error = %self, "request failed");
        }
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        let retry_after = match &self {
            ApiError::Registry(RegistryError::TooManyRequests {
                retry_after_seconds,
                ..
            }) if *retry_after_seconds > 0 => Some(retry_after_seconds.to_string()),
            _ => None,
        };
        let mut builder = Response::builder();
        if let Some(secs) = retry_after {
            builder = builder.header(header::RETRY_AFTER, secs);
        }
        builder
            .status(code)
            .header(header::CONTENT_TYPE, "application/json")
            .body(full(Bytes::from(body)))
            .unwrap_or_else(|_| Response::new(full(Bytes::new())))
    }
}

/// A success `Status` (some deletes answer with one).
pub fn success_status(details: Value) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success", "details": details})
}

#[cfg(test)]
mod tests {
    use super::*;
    use apis::FieldError;

    #[test]
    fn not_found_matches_kubectl_text() {
        let e = ApiError::from(RegistryError::NotFound {
            group: "apps".into(),
            resource: "deployments".into(),
            name: "x".into(),
        });
        let s = e.status();
        assert_eq!(s["message"], "deployments.apps \"x\" not found");
        assert_eq!(s["reason"], "NotFound");
        assert_eq!(s["code"], 404);
        assert_eq!(
            s["details"],
            json!({"name": "x", "group": "apps", "kind": "deployments"})
        );
    }

    #[test]
    fn invalid_lists_causes_with_fields() {
        let e = ApiError::from(RegistryError::Invalid {
            group: String::new(),
            kind: "Pod".into(),
            name: "p".into(),
            errors: vec![FieldError::required("spec.containers[0].image", "")],
        });
        let s = e.status();
        assert_eq!(
            s["message"],
            "Pod \"p\" is invalid: spec.containers[0].image: Required value"
        );
        assert_eq!(s["code"], 422);
        assert_eq!(
            s["details"]["causes"][0]["field"],
            "spec.containers[0].image"
        );
        assert_eq!(s["details"]["causes"][0]["reason"], "FieldValueRequired");
    }
}
