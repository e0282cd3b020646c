//! Apply errors and their rendering as a Kubernetes `Status`, as upstream's
//! `managedfields/internal/conflict.go`: a 409 `Conflict` whose message lists the
//! conflicting fields by manager and whose causes carry one `FieldManagerConflict` each.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::StatusCause;

use super::managers::{ManagerId, Operation};
use super::path::FieldPath;

/// The cause reason upstream uses for apply conflicts (`metav1.CauseTypeFieldManagerConflict`).
pub const FIELD_MANAGER_CONFLICT: &str = "FieldManagerConflict";

/// A field the applier would change that another manager owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    /// The other manager's name, e.g. `kubectl-client-side-apply`.
    pub manager: String,
    pub operation: Operation,
    /// The version the other manager wrote at; empty for appliers (not part of their identity).
    pub api_version: String,
    /// The subresource the other manager wrote through, empty for the main resource.
    pub subresource: String,
    /// The field as upstream prints it: `.spec.template.spec.containers[name="nginx"].image`.
    pub field_path: String,
}

impl Conflict {
    pub(crate) fn new(id: &ManagerId, path: &FieldPath) -> Self {
        Conflict {
            manager: id.manager.clone(),
            operation: id.operation,
            api_version: id.api_version.clone(),
            subresource: id.subresource.clone(),
            field_path: path.to_string(),
        }
    }

    fn id(&self) -> ManagerId {
        ManagerId::new(
            &self.manager,
            self.operation,
            &self.api_version,
            &self.subresource,
        )
    }

    /// The manager as conflicts name it: `"kubectl-client-side-apply" using apps/v1`.
    pub fn describe_manager(&self) -> String {
        self.id().describe()
    }

    /// The per-cause message: `conflict with "kubectl-client-side-apply" using apps/v1`.
    pub fn message(&self) -> String {
        format!("conflict with {}", self.describe_manager())
    }
}

/// Why an apply was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    /// 409 Conflict, unless the client forces.
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    /// 400 Bad Request: the configuration is malformed (wrong version, managedFields
    /// set, unkeyable or duplicate list items).
    #[error("{0}")]
    BadRequest(String),
    /// 500: stored managedFields could not be read.
    #[error("{0}")]
    Internal(String),
}

impl ApplyError {
    /// The HTTP status code upstream answers with.
    pub fn code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::BadRequest(_) => 400,
            ApplyError::Internal(_) => 500,
        }
    }

    /// The `Status.reason`.
    pub fn reason(&self) -> &'static str {
        match self {
            ApplyError::Conflicts(_) => "Conflict",
            ApplyError::BadRequest(_) => "BadRequest",
            ApplyError::Internal(_) => "InternalError",
        }
    }

    /// The `Status.message`, e.g.
    /// `Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas`.
    pub fn status_message(&self) -> String {
        self.to_string()
    }

    /// The `Status.details.causes`: one `FieldManagerConflict` per conflicting field.
    pub fn causes(&self) -> Vec<StatusCause> {
        match self {
            ApplyError::Conflicts(conflicts) => conflicts
                .iter()
                .map(|c| StatusCause {
                    reason: Some(FIELD_MANAGER_CONFLICT.into()),
                    message: Some(c.message()),
                    field: Some(c.field_path.clone()),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [only] = conflicts {
        return format!(
            "Apply failed with 1 conflict: {}: {}",
            only.message(),
            only.field_path
        );
    }
    let mut by_manager: BTreeMap<ManagerId, Vec<&str>> = BTreeMap::new();
    for c in conflicts {
        by_manager.entry(c.id()).or_default().push(&c.field_path);
    }
    let mut lines = Vec::new();
    for (id, paths) in by_manager {
        lines.push(format!("conflicts with {}:", id.describe()));
        lines.extend(paths.into_iter().map(|p| format!("- {p}")));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        lines.join("\n")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(manager: &str, operation: Operation, path: &str) -> Conflict {
        Conflict {
            manager: manager.into(),
            operation,
            api_version: if operation == Operation::Update {
                "apps/v1".into()
            } else {
                String::new()
            },
            subresource: String::new(),
            field_path: path.into(),
        }
    }

    #[test]
    fn messages_match_upstream() {
        let one = ApplyError::Conflicts(vec![conflict(
            "kubectl-client-side-apply",
            Operation::Update,
            ".spec.replicas",
        )]);
        assert_eq!(
            one.status_message(),
            r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
        );
        assert_eq!(
            one.causes(),
            vec![StatusCause {
                reason: Some("FieldManagerConflict".into()),
                message: Some(r#"conflict with "kubectl-client-side-apply" using apps/v1"#.into()),
                field: Some(".spec.replicas".into()),
            }]
        );
        assert_eq!((one.code(), one.reason()), (409, "Conflict"));

        let many = ApplyError::Conflicts(vec![
            conflict("b", Operation::Apply, ".spec.paused"),
            conflict("a", Operation::Update, ".spec.replicas"),
            conflict(
                "a",
                Operation::Update,
                ".spec.template.spec.containers[name=\"nginx\"].image",
            ),
        ]);
        assert_eq!(
            many.status_message(),
            "Apply failed with 3 conflicts: conflicts with \"a\" using apps/v1:\n- .spec.replicas\n\
             - .spec.template.spec.containers[name=\"nginx\"].image\nconflicts with \"b\":\n- .spec.paused"
        );
        assert_eq!(many.causes().len(), 3);
        assert!(ApplyError::BadRequest("x".into()).causes().is_empty());
    }
}
