//! Field errors, as upstream's `k8s.io/apimachinery/pkg/util/validation/field`.
//!
//! Every validation function returns *all* errors it finds; the API server turns
//! them into one 422 `Invalid` Status whose message lists them and whose
//! `details.causes` carry each `reason`/`message`/`field`.

use std::fmt;

/// The kind of a field error; `reason()` is the Status cause reason upstream uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
    TypeInvalid,
}

impl FieldErrorType {
    /// The `details.causes[].reason` value.
    pub fn reason(self) -> &'static str {
        match self {
            FieldErrorType::NotFound => "FieldValueNotFound",
            FieldErrorType::Required => "FieldValueRequired",
            FieldErrorType::Duplicate => "FieldValueDuplicate",
            FieldErrorType::Invalid => "FieldValueInvalid",
            FieldErrorType::NotSupported => "FieldValueNotSupported",
            FieldErrorType::Forbidden => "FieldValueForbidden",
            FieldErrorType::TooLong => "FieldValueTooLong",
            FieldErrorType::TooMany => "FieldValueTooMany",
            FieldErrorType::Internal => "InternalError",
            FieldErrorType::TypeInvalid => "FieldValueTypeInvalid",
        }
    }

    /// The human-readable prefix upstream prints ("Required value", "Invalid value", …).
    pub fn text(self) -> &'static str {
        match self {
            FieldErrorType::NotFound => "Not found",
            FieldErrorType::Required => "Required value",
            FieldErrorType::Duplicate => "Duplicate value",
            FieldErrorType::Invalid => "Invalid value",
            FieldErrorType::NotSupported => "Unsupported value",
            FieldErrorType::Forbidden => "Forbidden",
            FieldErrorType::TooLong => "Too long",
            FieldErrorType::TooMany => "Too many",
            FieldErrorType::Internal => "Internal error",
            FieldErrorType::TypeInvalid => "Invalid value",
        }
    }
}

/// One problem with one field.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: FieldErrorType,
    /// Path as upstream prints it: `spec.containers[0].image`, `metadata.labels[app]`.
    pub field: String,
    /// The offending value, rendered as upstream does (`"abc"`, `-1`), if any.
    pub bad_value: Option<String>,
    /// Extra detail (e.g. the regex a name must match).
    pub detail: String,
}

impl FieldError {
    fn new(
        kind: FieldErrorType,
        field: impl Into<String>,
        bad_value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind,
            field: field.into(),
            bad_value,
            detail: detail.into(),
        }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Required, field, None, detail)
    }
    pub fn invalid(
        field: impl Into<String>,
        value: impl fmt::Display,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(
            FieldErrorType::Invalid,
            field,
            Some(quote_value(&value.to_string())),
            detail,
        )
    }
    /// An invalid non-string value (printed without quotes, e.g. `-1`).
    pub fn invalid_raw(
        field: impl Into<String>,
        value: impl fmt::Display,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(
            FieldErrorType::Invalid,
            field,
            Some(value.to_string()),
            detail,
        )
    }
    pub fn not_supported(
        field: impl Into<String>,
        value: impl fmt::Display,
        valid: &[&str],
    ) -> Self {
        let detail = if valid.is_empty() {
            String::new()
        } else {
            format!(
                "supported values: {}",
                valid
                    .iter()
                    .map(|v| format!("\"{v}\""))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        Self::new(
            FieldErrorType::NotSupported,
            field,
            Some(quote_value(&value.to_string())),
            detail,
        )
    }
    pub fn duplicate(field: impl Into<String>, value: impl fmt::Display) -> Self {
        Self::new(
            FieldErrorType::Duplicate,
            field,
            Some(quote_value(&value.to_string())),
            "",
        )
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(FieldErrorType::Forbidden, field, None, detail)
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(
            FieldErrorType::TooLong,
            field,
            None,
            format!("must have at most {max} bytes"),
        )
    }
    pub fn not_found(field: impl Into<String>, value: impl fmt::Display) -> Self {
        Self::new(
            FieldErrorType::NotFound,
            field,
            Some(quote_value(&value.to_string())),
            "",
        )
    }

    /// The cause message without the field: `Invalid value: "x": detail`.
    pub fn message(&self) -> String {
        let mut s = self.kind.text().to_string();
        if let Some(v) = &self.bad_value {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message())
        } else {
            write!(f, "{}: {}", self.field, self.message())
        }
    }
}

fn quote_value(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| format!("\"{v}\""))
}

/// A list of field errors; upstream's `ErrorList`.
pub type FieldErrors = Vec<FieldError>;

/// Builds paths like `spec.containers[0].image`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Path(String);

impl Path {
    pub fn new(root: &str) -> Self {
        Path(root.to_string())
    }
    pub fn child(&self, name: &str) -> Self {
        if self.0.is_empty() {
            Path(name.to_string())
        } else {
            Path(format!("{}.{}", self.0, name))
        }
    }
    pub fn index(&self, i: usize) -> Self {
        Path(format!("{}[{}]", self.0, i))
    }
    pub fn key(&self, k: &str) -> Self {
        Path(format!("{}[{}]", self.0, k))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<Path> for String {
    fn from(p: Path) -> String {
        p.0
    }
}

impl From<&Path> for String {
    fn from(p: &Path) -> String {
        p.0.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_match_upstream_shape() {
        let p = Path::new("spec")
            .child("containers")
            .index(0)
            .child("image");
        let e = FieldError::required(&p, "");
        assert_eq!(e.to_string(), "spec.containers[0].image: Required value");
        let e = FieldError::invalid("metadata.name", "A_b", "a lowercase RFC 1123 subdomain");
        assert_eq!(
            e.to_string(),
            "metadata.name: Invalid value: \"A_b\": a lowercase RFC 1123 subdomain"
        );
        let e = FieldError::not_supported(
            "spec.restartPolicy",
            "Sometimes",
            &["Always", "Never", "OnFailure"],
        );
        assert_eq!(
            e.to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"Never\", \"OnFailure\""
        );
    }
}
