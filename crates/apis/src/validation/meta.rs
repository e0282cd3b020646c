//! Object metadata, labels, annotations and label selectors
//! (`apimachinery/pkg/api/validation/objectmeta.go`, `apis/meta/v1/validation`), plus the
//! helpers every kind's validation shares: typed decoding, immutability checks and
//! rendering bad values the way Go's `%#v` does in upstream messages.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
    LabelSelector, LabelSelectorRequirement, ObjectMeta,
};
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::names;
use crate::field_error::{FieldError, FieldErrorType, FieldErrors, Path};

/// A name rule: `(name, is_generate_name_prefix) -> problems`.
pub type NameFn = fn(&str, bool) -> Vec<String>;

pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
pub const FIELD_IMMUTABLE: &str = "field is immutable";

/// Decodes `obj` into its k8s-openapi type, ignoring `apiVersion`/`kind` (the caller
/// already routed on them). A decode failure becomes one `FieldValueTypeInvalid` error;
/// the API server normally rejects such bodies earlier with `decode::type_check`.
pub fn decode<T: DeserializeOwned>(obj: &Value) -> Result<T, FieldErrors> {
    let mut v = obj.clone();
    if let Some(o) = v.as_object_mut() {
        o.remove("apiVersion");
        o.remove("kind");
    }
    serde_path_to_error::deserialize(v).map_err(|e| {
        let field = e.path().to_string();
        let field = if field == "." { String::new() } else { field };
        vec![FieldError {
            kind: FieldErrorType::TypeInvalid,
            field,
            bad_value: None,
            detail: e.into_inner().to_string(),
        }]
    })
}

/// Upstream `ValidateObjectMeta` for create.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_fn: NameFn,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let generate_name = meta.generate_name.as_deref().unwrap_or("");
    if !generate_name.is_empty() {
        for msg in name_fn(generate_name, true) {
            errs.push(FieldError::invalid(
                path.child("generateName"),
                generate_name,
                msg,
            ));
        }
    }
    let name = meta.name.as_deref().unwrap_or("");
    if name.is_empty() {
        errs.push(FieldError::required(
            path.child("name"),
            "name or generateName is required",
        ));
    } else {
        for msg in name_fn(name, false) {
            errs.push(FieldError::invalid(path.child("name"), name, msg));
        }
    }
    let namespace = meta.namespace.as_deref().unwrap_or("");
    if namespaced {
        if namespace.is_empty() {
            errs.push(FieldError::required(path.child("namespace"), ""));
        } else {
            for msg in names::name_is_dns_label(namespace, false) {
                errs.push(FieldError::invalid(path.child("namespace"), namespace, msg));
            }
        }
    } else if !namespace.is_empty() {
        errs.push(FieldError::forbidden(
            path.child("namespace"),
            "not allowed on this type",
        ));
    }
    errs.extend(meta_common(meta, path));
    errs
}

fn meta_common(meta: &ObjectMeta, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if let Some(g) = meta.generation {
        errs.extend(nonnegative(g, &path.child("generation")));
    }
    errs.extend(validate_labels(meta.labels.as_ref(), &path.child("labels")));
    errs.extend(validate_annotations(
        meta.annotations.as_ref(),
        &path.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        meta,
        &path.child("ownerReferences"),
    ));
    errs.extend(validate_finalizers(
        meta.finalizers.as_deref().unwrap_or(&[]),
        &path.child("finalizers"),
    ));
    errs
}

/// Upstream `ValidateObjectMetaUpdate`.
pub fn validate_object_meta_update(new: &ObjectMeta, old: &ObjectMeta, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    if old.deletion_timestamp.is_some() {
        let old_f = old.finalizers.as_deref().unwrap_or(&[]);
        let mut extra: Vec<&String> = new
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !old_f.contains(f))
            .collect();
        extra.sort();
        extra.dedup();
        if !extra.is_empty() {
            let list = extra
                .iter()
                .map(|f| format!("{f:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            errs.push(FieldError::forbidden(
                path.child("finalizers"),
                format!("no new finalizers can be added if the object is being deleted, found new finalizers []string{{{list}}}"),
            ));
        }
    }
    if new.resource_version.as_deref().unwrap_or("").is_empty() {
        errs.push(FieldError::invalid(
            path.child("resourceVersion"),
            "",
            "must be specified for an update",
        ));
    }
    if new.generation.unwrap_or(0) < old.generation.unwrap_or(0) {
        errs.push(FieldError::invalid_raw(
            path.child("generation"),
            new.generation.unwrap_or(0),
            "must not be decremented",
        ));
    }
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    errs.extend(immutable_str(
        &s(&new.name),
        &s(&old.name),
        &path.child("name"),
    ));
    errs.extend(immutable_str(
        &s(&new.namespace),
        &s(&old.namespace),
        &path.child("namespace"),
    ));
    errs.extend(immutable_str(
        &s(&new.uid),
        &s(&old.uid),
        &path.child("uid"),
    ));
    if new.creation_timestamp != old.creation_timestamp {
        let shown = new
            .creation_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_default();
        errs.push(FieldError::invalid(
            path.child("creationTimestamp"),
            shown,
            FIELD_IMMUTABLE,
        ));
    }
    if new.deletion_timestamp != old.deletion_timestamp {
        let shown = new
            .deletion_timestamp
            .as_ref()
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| "null".to_string());
        errs.push(FieldError::invalid_raw(
            path.child("deletionTimestamp"),
            shown,
            FIELD_IMMUTABLE,
        ));
    }
    if new.deletion_grace_period_seconds != old.deletion_grace_period_seconds {
        let shown = new
            .deletion_grace_period_seconds
            .map(|g| g.to_string())
            .unwrap_or_else(|| "null".to_string());
        errs.push(FieldError::invalid_raw(
            path.child("deletionGracePeriodSeconds"),
            shown,
            FIELD_IMMUTABLE,
        ));
    }
    errs.extend(validate_labels(new.labels.as_ref(), &path.child("labels")));
    errs.extend(validate_annotations(
        new.annotations.as_ref(),
        &path.child("annotations"),
    ));
    errs.extend(validate_owner_references(
        new,
        &path.child("ownerReferences"),
    ));
    errs.extend(validate_finalizers(
        new.finalizers.as_deref().unwrap_or(&[]),
        &path.child("finalizers"),
    ));
    errs
}

/// `ValidateImmutableField` for strings.
pub fn immutable_str(new: &str, old: &str, path: &Path) -> FieldErrors {
    if new == old {
        Vec::new()
    } else {
        vec![FieldError::invalid(path, new, FIELD_IMMUTABLE)]
    }
}

/// `ValidateImmutableField` for any comparable value, with its Go rendering given.
pub fn immutable<T: PartialEq>(
    new: &T,
    old: &T,
    shown: impl FnOnce() -> String,
    path: &Path,
) -> FieldErrors {
    if new == old {
        Vec::new()
    } else {
        vec![FieldError::invalid_raw(path, shown(), FIELD_IMMUTABLE)]
    }
}

/// `ValidateNonnegativeField`.
pub fn nonnegative(value: i64, path: &Path) -> FieldErrors {
    if value < 0 {
        vec![FieldError::invalid_raw(
            path,
            value,
            "must be greater than or equal to 0",
        )]
    } else {
        Vec::new()
    }
}

/// `ValidateLabelName`: a qualified name, reported against `path` with the key as value.
pub fn validate_label_name(key: &str, path: &Path) -> FieldErrors {
    names::is_qualified_name(key)
        .into_iter()
        .map(|m| FieldError::invalid(path, key, m))
        .collect()
}

/// `ValidateLabels`: every key a qualified name, every value a label value.
pub fn validate_labels(labels: Option<&BTreeMap<String, String>>, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for (k, v) in labels.into_iter().flatten() {
        errs.extend(validate_label_name(k, path));
        for msg in names::is_valid_label_value(v) {
            errs.push(FieldError::invalid(path, v, msg));
        }
    }
    errs
}

/// `ValidateAnnotations`: case-insensitive qualified-name keys, 256 KiB in total.
pub fn validate_annotations(
    annotations: Option<&BTreeMap<String, String>>,
    path: &Path,
) -> FieldErrors {
    let mut errs = Vec::new();
    let mut total = 0usize;
    for (k, v) in annotations.into_iter().flatten() {
        for msg in names::is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, msg));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
    errs
}

fn validate_owner_references(meta: &ObjectMeta, path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    let mut first_controller: Option<String> = None;
    for r in meta.owner_references.iter().flatten() {
        let version = r.api_version.rsplit('/').next().unwrap_or("");
        if version.is_empty() {
            errs.push(FieldError::invalid(
                path.child("apiVersion"),
                &r.api_version,
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            errs.push(FieldError::invalid(
                path.child("kind"),
                &r.kind,
                "must not be empty",
            ));
        }
        if r.name.is_empty() {
            errs.push(FieldError::invalid(
                path.child("name"),
                &r.name,
                "must not be empty",
            ));
        }
        if r.uid.is_empty() {
            errs.push(FieldError::invalid(
                path.child("uid"),
                &r.uid,
                "must not be empty",
            ));
        }
        if r.api_version == "v1" && r.kind == "Event" {
            errs.push(FieldError::invalid_raw(
                path,
                format!("{r:?}"),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.controller == Some(true) {
            let current = format!("{}/{}", r.kind, r.name);
            match &first_controller {
                Some(first) => errs.push(FieldError::invalid_raw(
                    path,
                    "[]v1.OwnerReference{...}",
                    format!("Only one reference can have Controller set to true. Found \"true\" in references for {first} and {current}"),
                )),
                None => first_controller = Some(current),
            }
        }
    }
    errs
}

/// `ValidateFinalizers` plus the built-in rule that an unqualified finalizer must be one
/// of the standard ones (`validateKubeFinalizerName`).
pub fn validate_finalizers(finalizers: &[String], path: &Path) -> FieldErrors {
    let mut errs = Vec::new();
    for f in finalizers {
        let msgs = names::is_qualified_name(f);
        if msgs.is_empty()
            && !f.contains('/')
            && !matches!(f.as_str(), "kubernetes" | "orphan" | "foregroundDeletion")
        {
            errs.push(FieldError::invalid(
                path,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
        errs.extend(msgs.into_iter().map(|m| FieldError::invalid(path, f, m)));
    }
    if finalizers.iter().any(|f| f == "orphan")
        && finalizers.iter().any(|f| f == "foregroundDeletion")
    {
        errs.push(FieldError::invalid_raw(
            path,
            go_string_slice(finalizers),
            "finalizer orphan and foregroundDeletion cannot be both set",
        ));
    }
    errs
}

/// `ValidateLabelSelector`.
pub fn validate_label_selector(selector: Option<&LabelSelector>, path: &Path) -> FieldErrors {
    let Some(sel) = selector else {
        return Vec::new();
    };
    let mut errs = validate_labels(sel.match_labels.as_ref(), &path.child("matchLabels"));
    for (i, expr) in sel.match_expressions.iter().flatten().enumerate() {
        let p = path.child("matchExpressions").index(i);
        let values = expr.values.as_deref().unwrap_or(&[]);
        match expr.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                p.child("values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                p.child("values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                p.child("operator"),
                other,
                "not a valid selector operator",
            )),
        }
        errs.extend(validate_label_name(&expr.key, &p.child("key")));
        for (j, v) in values.iter().enumerate() {
            for msg in names::is_valid_label_value(v) {
                errs.push(FieldError::invalid(p.child("values").index(j), v, msg));
            }
        }
    }
    errs
}

/// Whether `labels` satisfy `selector`, as `LabelSelectorAsSelector(...).Matches`.
/// A missing selector matches nothing; an empty one matches everything. `None` when
/// the selector cannot be converted (bad operator).
pub fn selector_matches(
    selector: Option<&LabelSelector>,
    labels: Option<&BTreeMap<String, String>>,
) -> Option<bool> {
    let Some(sel) = selector else {
        return Some(false);
    };
    let empty = BTreeMap::new();
    let labels = labels.unwrap_or(&empty);
    for (k, v) in sel.match_labels.iter().flatten() {
        if labels.get(k) != Some(v) {
            return Some(false);
        }
    }
    for expr in sel.match_expressions.iter().flatten() {
        let values = expr.values.as_deref().unwrap_or(&[]);
        let got = labels.get(&expr.key);
        let ok = match expr.operator.as_str() {
            "In" => got.is_some_and(|g| values.contains(g)),
            "NotIn" => got.is_none_or(|g| !values.contains(g)),
            "Exists" => got.is_some(),
            "DoesNotExist" => got.is_none(),
            _ => return None,
        };
        if !ok {
            return Some(false);
        }
    }
    Some(true)
}

/// Is the selector present but without any requirement?
pub fn selector_is_empty(sel: &LabelSelector) -> bool {
    sel.match_labels.as_ref().is_none_or(|m| m.is_empty())
        && sel.match_expressions.as_ref().is_none_or(|e| e.is_empty())
}

/// `map[string]string{"a":"b", "c":"d"}` as Go's `%#v` prints it.
pub fn go_string_map(m: Option<&BTreeMap<String, String>>) -> String {
    match m {
        None => "map[string]string(nil)".to_string(),
        Some(m) => {
            let items: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
                .collect();
            format!("map[string]string{{{}}}", items.join(", "))
        }
    }
}

/// `[]string{"a", "b"}`.
pub fn go_string_slice(s: &[String]) -> String {
    format!(
        "[]string{{{}}}",
        s.iter().map(|v| go_quote(v)).collect::<Vec<_>>().join(", ")
    )
}

/// A Go double-quoted string literal (close enough to `%q` for API values).
pub fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// `v1.LabelSelector{MatchLabels:..., MatchExpressions:...}` as upstream prints it.
pub fn go_label_selector(sel: Option<&LabelSelector>) -> String {
    let Some(sel) = sel else {
        return "(*v1.LabelSelector)(nil)".to_string();
    };
    let exprs = match &sel.match_expressions {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(e) => format!(
            "[]v1.LabelSelectorRequirement{{{}}}",
            e.iter().map(go_requirement).collect::<Vec<_>>().join(", ")
        ),
    };
    format!(
        "v1.LabelSelector{{MatchLabels:{}, MatchExpressions:{}}}",
        go_string_map(sel.match_labels.as_ref()),
        exprs
    )
}

fn go_requirement(r: &LabelSelectorRequirement) -> String {
    let values = match &r.values {
        None => "[]string(nil)".to_string(),
        Some(v) => go_string_slice(v),
    };
    format!(
        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
        go_quote(&r.key),
        go_quote(&r.operator),
        values
    )
}

/// A compact JSON rendering for struct-valued bad values (upstream prints Go structs;
/// clients only show the text, so an unambiguous rendering is enough).
pub fn json_value<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta(v: Value) -> ObjectMeta {
        serde_json::from_value(v).expect("meta")
    }

    #[test]
    fn object_meta_create_errors() {
        let cases: Vec<(Value, bool, Vec<&str>)> = vec![
            (
                json!({"namespace": "default"}),
                true,
                vec!["metadata.name: Required value: name or generateName is required"],
            ),
            (json!({"name": "ok", "namespace": "default"}), true, vec![]),
            (
                json!({"name": "ok"}),
                true,
                vec!["metadata.namespace: Required value"],
            ),
            (
                json!({"name": "ok", "namespace": "x"}),
                false,
                vec!["metadata.namespace: Forbidden: not allowed on this type"],
            ),
            (
                json!({"name": "Bad_Name", "namespace": "d"}),
                true,
                vec![
                    r#"metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#,
                ],
            ),
            (
                json!({"name": "a", "namespace": "d", "labels": {"app": "-bad"}}),
                true,
                vec![
                    r#"metadata.labels: Invalid value: "-bad": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"#,
                ],
            ),
            (
                json!({"name": "a", "namespace": "d", "finalizers": ["custom"]}),
                true,
                vec![
                    r#"metadata.finalizers: Invalid value: "custom": name is neither a standard finalizer name nor is it fully qualified"#,
                ],
            ),
            (
                json!({"name": "a", "namespace": "d", "annotations": {"a": "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT)}}),
                true,
                vec!["metadata.annotations: Too long: must have at most 262144 bytes"],
            ),
        ];
        for (m, namespaced, want) in cases {
            let got: Vec<String> = validate_object_meta(
                &meta(m.clone()),
                namespaced,
                names::name_is_dns_subdomain,
                &Path::new("metadata"),
            )
            .iter()
            .map(|e| e.to_string())
            .collect();
            assert_eq!(got, want, "{m}");
        }
    }

    #[test]
    fn object_meta_update_errors() {
        let old = meta(json!({"name": "a", "namespace": "d", "uid": "1", "resourceVersion": "5"}));
        let new = meta(json!({"name": "b", "namespace": "d", "uid": "1", "resourceVersion": "5"}));
        let got: Vec<String> = validate_object_meta_update(&new, &old, &Path::new("metadata"))
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![r#"metadata.name: Invalid value: "b": field is immutable"#]
        );
        let new = meta(json!({"name": "a", "namespace": "d", "uid": "1"}));
        let got: Vec<String> = validate_object_meta_update(&new, &old, &Path::new("metadata"))
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            got,
            vec![r#"metadata.resourceVersion: Invalid value: "": must be specified for an update"#]
        );
    }

    #[test]
    fn selectors_validate_match_and_render() {
        let sel: LabelSelector = serde_json::from_value(json!({"matchLabels": {"app": "x"}, "matchExpressions": [{"key": "t", "operator": "In"}]})).expect("sel");
        let got: Vec<String> = validate_label_selector(Some(&sel), &Path::new("spec.selector"))
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(got, vec!["spec.selector.matchExpressions[0].values: Required value: must be specified when `operator` is 'In' or 'NotIn'"]);
        let labels: BTreeMap<String, String> = [("app".to_string(), "x".to_string())].into();
        let sel: LabelSelector =
            serde_json::from_value(json!({"matchLabels": {"app": "x"}})).expect("sel");
        assert_eq!(selector_matches(Some(&sel), Some(&labels)), Some(true));
        assert_eq!(selector_matches(None, Some(&labels)), Some(false));
        assert_eq!(
            go_label_selector(Some(&sel)),
            r#"v1.LabelSelector{MatchLabels:map[string]string{"app":"x"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}"#
        );
    }
}
