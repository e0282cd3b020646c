//! Registry errors: each variant is one upstream `StatusReason`; the API server
//! renders them as `metav1.Status` in exactly one place.

use apis::FieldErrors;
use storage::StorageError;

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{} \"{name}\" not found", qualified(group, resource))]
    NotFound {
        group: String,
        resource: String,
        name: String,
    },
    #[error("{} \"{name}\" already exists", qualified(group, resource))]
    AlreadyExists {
        group: String,
        resource: String,
        name: String,
    },
    #[error(
        "Operation cannot be fulfilled on {} \"{name}\": {message}",
        qualified(group, resource)
    )]
    Conflict {
        group: String,
        resource: String,
        name: String,
        message: String,
    },
    /// 422 with one cause per field error.
    #[error("{}", invalid_message(kind, name, errors))]
    Invalid {
        group: String,
        kind: String,
        name: String,
        errors: FieldErrors,
    },
    #[error("{0}")]
    BadRequest(String),
    /// 422 without field causes (e.g. a JSON patch whose `test` failed).
    #[error("{0}")]
    Unprocessable(String),
    /// 410: a watch or list asked for history that is gone.
    #[error("{0}")]
    Gone(String),
    /// 410 with reason `Expired` (stale continue tokens).
    #[error("{0}")]
    Expired(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    /// 409 from server-side apply, with one cause per conflicting field.
    #[error("{message}")]
    ApplyConflict {
        message: String,
        causes: Vec<(String, String)>,
    },
    #[error("{0}")]
    Timeout(String),
    /// 429: try again later (e.g. an eviction a disruption budget does not allow yet),
    /// with `(reason, message)` causes.
    #[error("{message}")]
    TooManyRequests {
        message: String,
        retry_after_seconds: u32,
        causes: Vec<(String, String)>,
    },
    #[error("{0}")]
    Internal(String),
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

pub fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn invalid_message(kind: &str, name: &str, errors: &FieldErrors) -> String {
    let list: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    let body = if list.len() == 1 {
        list[0].clone()
    } else {
        format!("[{}]", list.join(", "))
    };
    format!("{kind} \"{name}\" is invalid: {body}")
}

impl RegistryError {
    pub fn internal(e: impl std::fmt::Display) -> Self {
        RegistryError::Internal(e.to_string())
    }

    pub fn from_storage(e: StorageError, group: &str, resource: &str, name: &str) -> Self {
        match e {
            StorageError::NotFound(_) => RegistryError::NotFound {
                group: group.to_string(),
                resource: resource.to_string(),
                name: name.to_string(),
            },
            StorageError::AlreadyExists(_) => RegistryError::AlreadyExists {
                group: group.to_string(),
                resource: resource.to_string(),
                name: name.to_string(),
            },
            StorageError::Conflict { .. } => RegistryError::Conflict {
                group: group.to_string(),
                resource: resource.to_string(),
                name: name.to_string(),
                message: OBJECT_MODIFIED.to_string(),
            },
            StorageError::Compacted {
                requested,
                compacted,
            } => RegistryError::Gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StorageError::FutureRevision { requested, current } => RegistryError::Timeout(format!(
                "Too large resource version: {requested}, current: {current}"
            )),
            StorageError::Backend(m) => RegistryError::Internal(m),
        }
    }
}

pub const OBJECT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";
