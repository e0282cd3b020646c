//! Kubernetes API types and the pure logic around them: the resource table,
//! label/field selectors, patches, defaulting and validation. No IO here.

pub use k8s_openapi;

pub mod field_error;
pub mod resources;

pub use field_error::{FieldError, FieldErrorType, FieldErrors, Path};
pub use resources::{builtin_resources, ResourceInfo, Subresource};
