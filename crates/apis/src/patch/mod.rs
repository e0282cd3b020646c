//! The three PATCH body types the API server accepts, applied to `serde_json::Value`s:
//! JSON patch (RFC 6902, `application/json-patch+json`), JSON merge patch (RFC 7386,
//! `application/merge-patch+json`) and strategic merge patch
//! (`application/strategic-merge-patch+json`, upstream `pkg/util/strategicpatch`).
//!
//! Errors carry upstream's messages and say which status the API server answers with
//! ([`PatchError::code`]); mapping to a `Status` happens in the apiserver crate.

mod json;
mod merge;
mod strategic;

pub use json::{json_patch, MAX_JSON_PATCH_OPERATIONS};
pub use merge::{merge_patch, merge_patch_bytes};
pub use strategic::{strategic_merge_patch, strategic_merge_patch_bytes};

use serde_json::Value;

/// Why a patch could not be applied.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PatchError {
    /// The patch body is malformed: 400 BadRequest.
    #[error("{0}")]
    BadRequest(String),
    /// The patch is well-formed but does not apply to this object (a JSON patch `test`
    /// failing, a path that does not exist, a list of lists): 422.
    #[error("{0}")]
    Invalid(String),
    /// More JSON patch operations than upstream allows: 413 RequestEntityTooLarge.
    #[error("The allowed maximum operations in a JSON patch is {max}, got {got}")]
    TooManyOperations { max: usize, got: usize },
    /// Any other strategic merge failure (bad directive, missing merge key, order
    /// mismatch); upstream answers these with a 500 carrying the message.
    #[error("{0}")]
    Internal(String),
}

impl PatchError {
    /// The HTTP status upstream answers with.
    pub fn code(&self) -> u16 {
        match self {
            PatchError::BadRequest(_) => 400,
            PatchError::Invalid(_) => 422,
            PatchError::TooManyOperations { .. } => 413,
            PatchError::Internal(_) => 500,
        }
    }
}

/// Go's `%v` rendering of decoded JSON, used where upstream's messages embed values.
fn go_fmt(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!("[{}]", a.iter().map(go_fmt).collect::<Vec<_>>().join(" ")),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .iter()
                .map(|k| format!("{}:{}", k, go_fmt(&m[k.as_str()])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Go's JSON type name for "cannot unmarshal X into …" messages.
fn go_json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
