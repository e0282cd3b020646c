//! Kubernetes API types and the pure logic around them: the resource table,
//! label/field selectors, patches, defaulting and validation. No IO here.

pub use k8s_openapi;

pub mod conversion;
pub mod crd;
pub mod decode;
pub mod defaults;
pub mod field_error;
pub mod managedfields;
pub mod patch;
pub mod protobuf;
pub mod quota;
pub mod resource;
pub mod resources;
pub mod schema;
pub mod selectors;
pub mod validation;
pub mod volume;

pub use field_error::{FieldError, FieldErrorType, FieldErrors, Path};
pub use resources::{builtin_resources, ResourceInfo, Subresource};
