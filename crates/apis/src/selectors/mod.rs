//! Label and field selectors (`?labelSelector=`, `?fieldSelector=`, `metav1.LabelSelector`)
//! and the label syntax checks validation shares with them.

pub mod field;
pub mod label;

pub use field::{
    field_value, supported_fields, FieldOperator, FieldRequirement, FieldSelector,
    FieldSelectorError,
};
pub use label::{
    is_dns1123_subdomain, is_qualified_name, is_valid_label_value, validate_label_name,
    validate_label_selector, validate_labels, LabelSelector, LabelSelectorError, Labels, Operator,
    Requirement,
};
