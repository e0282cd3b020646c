//! Validation and defaulting of CustomResourceDefinition objects (upstream
//! `apiextensions-apiserver/pkg/apis/apiextensions/validation` and `v1/defaults.go`).
//!
//! Upstream validates the *internal* CRD type, into which v1 is converted first.
//! That conversion hoists per-version fields that are identical in every version
//! to the top level: a shared `schema` becomes `spec.validation`, shared
//! `subresources` become `spec.subresources`, shared printer columns become
//! `spec.additionalPrinterColumns`. Error paths name those internal fields (e.g.
//! `spec.validation.openAPIV3Schema.properties[spec].type`, or `….JSONPath` for a
//! printer column's `jsonPath`), and we reproduce them so that messages match
//! kube-apiserver's.
//!
//! Not modelled: CEL rule compilation and cost checks, `selectableFields`, and the
//! update-time relaxations that only exist for CRDs persisted by old servers
//! (except "schemas are required", which is relaxed as upstream does).

use once_cell::sync::Lazy;
use regex::Regex;
use serde_json::{json, Value};

use super::gofmt::{go_bad_value, go_string_slice};
use super::structural::{schema_has, validate_validation};
use super::{condition_is_true, storage_version, str_at, versions};
use crate::field_error::{FieldError, FieldErrorType, Path};

static DNS1123_SUBDOMAIN: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
        .expect("invariant: static regex compiles")
});
static DNS1035_LABEL: Lazy<Regex> = Lazy::new(|| {
    Regex::new(r"^[a-z]([-a-z0-9]*[a-z0-9])?$").expect("invariant: static regex compiles")
});

const PRINTER_COLUMN_TYPES: &[&str] = &["boolean", "date", "integer", "number", "string"];
const PRINTER_COLUMN_FORMATS: &[&str] = &[
    "byte",
    "date",
    "date-time",
    "double",
    "float",
    "int32",
    "int64",
    "password",
];
const API_APPROVAL_ANNOTATION: &str = "api-approved.kubernetes.io";

/// apimachinery's `RegexError`, including its double space before "or".
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    let mut out = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            out.push_str(" or ");
        }
        out.push_str(&format!("'{e}', "));
    }
    out.push_str(&format!("regex used for validation is '{fmt}')"));
    out
}

/// `IsDNS1123Subdomain`.
pub(super) fn dns1123_subdomain_errors(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    if !DNS1123_SUBDOMAIN.is_match(v) {
        errs.push(regex_error(
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character",
            r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*",
            &["example.com"],
        ));
    }
    errs
}

/// `IsDNS1035Label`.
pub(super) fn dns1035_label_errors(v: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if v.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !DNS1035_LABEL.is_match(v) {
        errs.push(regex_error(
            "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character",
            "[a-z]([-a-z0-9]*[a-z0-9])?",
            &["my-name", "abc-123"],
        ));
    }
    errs
}

fn invalid_str(p: &Path, value: &str, detail: impl Into<String>) -> FieldError {
    FieldError::invalid(p, value, detail)
}

fn invalid_raw(p: &Path, shown: String, detail: impl Into<String>) -> FieldError {
    FieldError {
        kind: FieldErrorType::Invalid,
        field: p.to_string(),
        bad_value: Some(shown),
        detail: detail.into(),
    }
}

fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn strings(v: &Value, key: &str) -> Vec<String> {
    v.get(key)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Sets what upstream's v1 defaulting and `PrepareForCreate`/`PrepareForUpdate` set:
/// `names.singular` (lower-case kind), `names.listKind` (kind + `List`),
/// `conversion.strategy: None`, the webhook service port 443, and the storage
/// version recorded in `status.storedVersions`.
pub fn default_crd(obj: &mut Value) {
    let storage = storage_version(obj);
    if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
        if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
            let kind = names
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            if names
                .get("singular")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
            {
                names.insert("singular".to_string(), Value::String(kind.to_lowercase()));
            }
            if names
                .get("listKind")
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
                && !kind.is_empty()
            {
                names.insert("listKind".to_string(), Value::String(format!("{kind}List")));
            }
        }
        if spec.get("conversion").is_none_or(Value::is_null) {
            spec.insert("conversion".to_string(), json!({"strategy": "None"}));
        }
        if let Some(service) = spec
            .get_mut("conversion")
            .and_then(|c| c.pointer_mut("/webhook/clientConfig/service"))
            .and_then(Value::as_object_mut)
        {
            if service.get("port").is_none_or(Value::is_null) {
                service.insert("port".to_string(), json!(443));
            }
        }
    }
    let (Some(storage), Some(root)) = (storage, obj.as_object_mut()) else {
        return;
    };
    let status = root.entry("status").or_insert_with(|| json!({}));
    if !status.is_object() {
        *status = json!({});
    }
    let Some(status) = status.as_object_mut() else {
        return;
    };
    let stored = status.entry("storedVersions").or_insert_with(|| json!([]));
    if !stored.is_array() {
        *stored = json!([]);
    }
    if let Some(stored) = stored.as_array_mut() {
        if !stored.iter().any(|v| v.as_str() == Some(storage.as_str())) {
            stored.push(Value::String(storage));
        }
    }
}

/// Options that differ between create and update.
struct Opts {
    /// Every version must carry an `openAPIV3Schema` (relaxed on update when the
    /// old object did not have them all).
    require_openapi_schema: bool,
}

/// Validates a CRD for create. Call [`default_crd`] first: like upstream, this
/// expects defaulted names and the storage version in `status.storedVersions`.
pub fn validate_crd(obj: &Value) -> Vec<FieldError> {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let mut errs = validate_metadata_name(obj);
    errs.extend(validate_spec(
        spec,
        &Opts {
            require_openapi_schema: true,
        },
    ));
    errs.extend(validate_status(obj));
    errs.extend(validate_api_approval(obj, None));
    errs.extend(validate_preserve_unknown_fields(obj, None));
    errs
}

/// Validates a CRD update: everything [`validate_crd`] checks on the spec, plus
/// immutability of `spec.group` and `spec.names.plural`, and — once the old CRD is
/// Established — of `spec.scope` and `spec.names.kind`.
pub fn validate_crd_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let spec = new.get("spec").unwrap_or(&Value::Null);
    let old_spec = old.get("spec").unwrap_or(&Value::Null);
    let opts = Opts {
        require_openapi_schema: all_versions_have_schema(old_spec),
    };
    let mut errs = validate_spec(spec, &opts);

    let p = Path::new("spec");
    let mut immutable = |path: Path, new_v: &str, old_v: &str| {
        if new_v != old_v {
            errs.push(invalid_str(&path, new_v, "field is immutable"));
        }
    };
    if condition_is_true(old, "Established") {
        immutable(p.child("scope"), s(spec, "scope"), s(old_spec, "scope"));
        immutable(
            p.child("names").child("kind"),
            str_at(spec, &["names", "kind"]),
            str_at(old_spec, &["names", "kind"]),
        );
    }
    immutable(p.child("group"), s(spec, "group"), s(old_spec, "group"));
    immutable(
        p.child("names").child("plural"),
        str_at(spec, &["names", "plural"]),
        str_at(old_spec, &["names", "plural"]),
    );

    errs.extend(validate_status(new));
    errs.extend(validate_api_approval(new, Some(old)));
    errs.extend(validate_preserve_unknown_fields(new, Some(old)));
    errs
}

fn all_versions_have_schema(spec: &Value) -> bool {
    spec.get("versions")
        .and_then(Value::as_array)
        .is_some_and(|vs| {
            vs.iter().all(|v| {
                v.pointer("/schema/openAPIV3Schema")
                    .is_some_and(|s| !s.is_null())
            })
        })
}

/// The name must be a DNS subdomain equal to `<plural>.<group>`.
fn validate_metadata_name(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let required_name = format!(
        "{}.{}",
        str_at(obj, &["spec", "names", "plural"]),
        str_at(obj, &["spec", "group"])
    );
    let check = |value: &str, prefix: bool| {
        // A generateName prefix may end in a dash.
        let masked = match value.strip_suffix('-') {
            Some(head) if prefix && !head.is_empty() => format!("{head}a"),
            _ => value.to_string(),
        };
        let mut msgs = dns1123_subdomain_errors(&masked);
        if value != required_name {
            msgs.push(r#"must be spec.names.plural+"."+spec.group"#.to_string());
        }
        msgs
    };
    let meta = Path::new("metadata");
    let generate_name = str_at(obj, &["metadata", "generateName"]);
    if !generate_name.is_empty() {
        for msg in check(generate_name, true) {
            errs.push(invalid_str(&meta.child("generateName"), generate_name, msg));
        }
    }
    let name = str_at(obj, &["metadata", "name"]);
    if name.is_empty() {
        errs.push(FieldError::required(
            meta.child("name"),
            "name or generateName is required",
        ));
    } else {
        for msg in check(name, false) {
            errs.push(invalid_str(&meta.child("name"), name, msg));
        }
    }
    errs
}

fn validate_enum_string(
    p: &Path,
    value: &str,
    accepted: &[&str],
    required: bool,
) -> Option<FieldError> {
    if value.is_empty() {
        return required.then(|| FieldError::required(p, ""));
    }
    (!accepted.contains(&value)).then(|| FieldError::not_supported(p, value, accepted))
}

/// Whether every version has the same value at `key` (absent counts as `null`, and
/// for lists as empty), i.e. whether the v1 → internal conversion hoists it.
fn all_identical(versions: &[Value], key: &str, empty_list_is_absent: bool) -> bool {
    let norm = |v: &Value| -> Value {
        match v.get(key) {
            None | Some(Value::Null) => Value::Null,
            Some(Value::Array(a)) if empty_list_is_absent && a.is_empty() => Value::Null,
            Some(x) => x.clone(),
        }
    };
    let Some(first) = versions.first().map(norm) else {
        return true;
    };
    versions.iter().all(|v| norm(v) == first)
}

fn has_status(subresources: Option<&Value>) -> bool {
    subresources.and_then(|s| get(s, "status")).is_some()
}

fn validate_spec(spec: &Value, opts: &Opts) -> Vec<FieldError> {
    let p = Path::new("spec");
    let mut errs = Vec::new();

    let group = s(spec, "group");
    if group.is_empty() {
        errs.push(FieldError::required(p.child("group"), ""));
    } else {
        let msgs = dns1123_subdomain_errors(group);
        if !msgs.is_empty() {
            errs.push(invalid_str(&p.child("group"), group, msgs.join(",")));
        } else if group.split('.').count() < 2 {
            errs.push(invalid_str(
                &p.child("group"),
                group,
                "should be a domain with at least one dot",
            ));
        }
    }
    errs.extend(validate_enum_string(
        &p.child("scope"),
        s(spec, "scope"),
        &["Cluster", "Namespaced"],
        true,
    ));

    let preserve_unknown = spec
        .get("preserveUnknownFields")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    // Pruning needs structural schemas, and so do defaults and the x-kubernetes markers.
    let schemas: Vec<&Value> = versions(spec)
        .iter()
        .filter_map(|v| v.pointer("/schema/openAPIV3Schema"))
        .collect();
    let has_defaults = schemas
        .iter()
        .any(|s| schema_has(s, &|x| get(x, "default").is_some()));
    let has_extensions = schemas.iter().any(|s| {
        schema_has(s, &|x| {
            x.as_object().is_some_and(|m| {
                [
                    "x-kubernetes-embedded-resource",
                    "x-kubernetes-int-or-string",
                ]
                .iter()
                .any(|k| m.get(*k) == Some(&Value::Bool(true)))
                    || [
                        "x-kubernetes-preserve-unknown-fields",
                        "x-kubernetes-list-type",
                    ]
                    .iter()
                    .any(|k| m.get(*k).is_some_and(|v| !v.is_null()))
                    || ["x-kubernetes-list-map-keys", "x-kubernetes-validations"]
                        .iter()
                        .any(|k| {
                            m.get(*k)
                                .and_then(Value::as_array)
                                .is_some_and(|a| !a.is_empty())
                        })
            })
        })
    });
    let require_structural = !preserve_unknown || has_defaults || has_extensions;

    let versions = versions(spec);
    let schema_hoisted = !versions.is_empty() && all_identical(versions, "schema", false);
    let subresources_hoisted =
        !versions.is_empty() && all_identical(versions, "subresources", false);
    let columns_hoisted =
        !versions.is_empty() && all_identical(versions, "additionalPrinterColumns", true);
    let top_schema = if schema_hoisted {
        versions.first().and_then(|v| get(v, "schema"))
    } else {
        None
    };
    let top_subresources = if subresources_hoisted {
        versions.first().and_then(|v| get(v, "subresources"))
    } else {
        None
    };
    fn per_version(v: &Value, hoisted: bool) -> Option<&Value> {
        if hoisted {
            None
        } else {
            get(v, "schema")
        }
    }
    let per_version_schema = |v| per_version(v, schema_hoisted);
    let vp = |i: usize| p.child("versions").index(i);

    let top_has_schema = top_schema.and_then(|s| get(s, "openAPIV3Schema")).is_some();
    if opts.require_openapi_schema {
        if !top_has_schema {
            for (i, v) in versions.iter().enumerate() {
                if per_version_schema(v)
                    .and_then(|s| get(s, "openAPIV3Schema"))
                    .is_none()
                {
                    errs.push(FieldError::required(
                        vp(i).child("schema").child("openAPIV3Schema"),
                        "schemas are required",
                    ));
                }
            }
        }
    } else if !preserve_unknown && !top_has_schema {
        for (i, v) in versions.iter().enumerate() {
            let served = v.get("served").and_then(Value::as_bool).unwrap_or(false);
            if served
                && per_version_schema(v)
                    .and_then(|s| get(s, "openAPIV3Schema"))
                    .is_none()
            {
                errs.push(FieldError::required(
                    vp(i).child("schema").child("openAPIV3Schema"),
                    "because otherwise all fields are pruned",
                ));
            }
        }
    }
    if has_defaults && preserve_unknown {
        errs.push(invalid_raw(
            &p.child("preserveUnknownFields"),
            "true".to_string(),
            "must be false in order to use defaults in the schema",
        ));
    }

    let mut storage_count = 0;
    let mut seen = Vec::new();
    let mut unique = true;
    for (i, v) in versions.iter().enumerate() {
        if v.get("storage").and_then(Value::as_bool).unwrap_or(false) {
            storage_count += 1;
        }
        let name = s(v, "name");
        if seen.contains(&name) {
            unique = false;
        } else {
            seen.push(name);
        }
        let msgs = dns1035_label_errors(name);
        if !msgs.is_empty() {
            errs.push(invalid_str(&vp(i).child("name"), name, msgs.join(",")));
        }
        let subresources = if subresources_hoisted {
            top_subresources
        } else {
            get(v, "subresources")
        };
        errs.extend(validate_deprecation_warning(v, &vp(i)));
        if !schema_hoisted {
            errs.extend(validate_validation(
                get(v, "schema"),
                has_status(subresources),
                require_structural,
                &vp(i).child("schema"),
            ));
        }
        if !subresources_hoisted {
            errs.extend(validate_subresources(
                get(v, "subresources"),
                &vp(i).child("subresources"),
            ));
        }
        if !columns_hoisted {
            errs.extend(validate_columns(
                v,
                &vp(i).child("additionalPrinterColumns"),
            ));
        }
    }
    let versions_json = || {
        spec.get("versions")
            .map(|v| v.to_string())
            .unwrap_or_else(|| "null".to_string())
    };
    if !unique {
        errs.push(invalid_raw(
            &p.child("versions"),
            versions_json(),
            "must contain unique version names",
        ));
    }
    if storage_count != 1 {
        errs.push(invalid_raw(
            &p.child("versions"),
            versions_json(),
            "must have exactly one version marked as storage version",
        ));
    }

    let names = spec.get("names").unwrap_or(&Value::Null);
    for key in ["plural", "singular", "kind", "listKind"] {
        if s(names, key).is_empty() {
            errs.push(FieldError::required(p.child("names").child(key), ""));
        }
    }
    errs.extend(validate_names(names, &p.child("names")));

    if schema_hoisted {
        let any_status = versions.iter().any(|v| has_status(get(v, "subresources")));
        errs.extend(validate_validation(
            top_schema,
            any_status,
            require_structural,
            &p.child("validation"),
        ));
    }
    if subresources_hoisted {
        errs.extend(validate_subresources(
            top_subresources,
            &p.child("subresources"),
        ));
    }
    if columns_hoisted {
        if let Some(first) = versions.first() {
            errs.extend(validate_columns(
                first,
                &p.child("additionalPrinterColumns"),
            ));
        }
    }
    errs.extend(validate_conversion(
        get(spec, "conversion"),
        &p.child("conversion"),
    ));
    errs
}

/// `ValidateCustomResourceDefinitionNames`.
fn validate_names(names: &Value, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    for key in ["plural", "singular"] {
        let v = s(names, key);
        let msgs = dns1035_label_errors(v);
        if !v.is_empty() && !msgs.is_empty() {
            errs.push(invalid_str(&p.child(key), v, msgs.join(",")));
        }
    }
    for key in ["kind", "listKind"] {
        let v = s(names, key);
        let msgs = dns1035_label_errors(&v.to_lowercase());
        if !v.is_empty() && !msgs.is_empty() {
            errs.push(invalid_str(
                &p.child(key),
                v,
                format!(
                    "may have mixed case, but should otherwise match: {}",
                    msgs.join(",")
                ),
            ));
        }
    }
    for (i, short) in strings(names, "shortNames").iter().enumerate() {
        let msgs = dns1035_label_errors(short);
        if !msgs.is_empty() {
            errs.push(invalid_str(
                &p.child("shortNames").index(i),
                short,
                msgs.join(","),
            ));
        }
    }
    let kind = s(names, "kind");
    if !kind.is_empty() && kind == s(names, "listKind") {
        errs.push(invalid_str(
            &p.child("listKind"),
            kind,
            "kind and listKind may not be the same",
        ));
    }
    for (i, category) in strings(names, "categories").iter().enumerate() {
        let msgs = dns1035_label_errors(category);
        if !msgs.is_empty() {
            errs.push(invalid_str(
                &p.child("categories").index(i),
                category,
                msgs.join(","),
            ));
        }
    }
    errs
}

fn validate_deprecation_warning(v: &Value, p: &Path) -> Vec<FieldError> {
    let Some(warning) = v.get("deprecationWarning").and_then(Value::as_str) else {
        return Vec::new();
    };
    let deprecated = v
        .get("deprecated")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let mut msgs = Vec::new();
    if !deprecated {
        msgs.push("can only be set for deprecated versions".to_string());
    } else {
        if warning.len() > 256 {
            msgs.push("must be <= 256 characters long".to_string());
        }
        if warning.is_empty() {
            msgs.push("must not be an empty string".to_string());
        }
        if let Some((i, _)) = warning.char_indices().find(|(_, c)| c.is_control()) {
            msgs.push(format!("must only contain printable UTF-8 characters; control character found at index {i}"));
        }
    }
    msgs.into_iter()
        .map(|m| invalid_str(&p.child("deprecationWarning"), warning, m))
        .collect()
}

fn validate_simple_json_path(value: &str, p: &Path) -> Option<FieldError> {
    if value.is_empty() {
        Some(invalid_str(p, value, "must not be empty"))
    } else if !value.starts_with('.') {
        Some(invalid_str(
            p,
            value,
            "must be a simple json path starting with .",
        ))
    } else {
        None
    }
}

fn validate_subresources(subresources: Option<&Value>, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(scale) = subresources.and_then(|s| get(s, "scale")) else {
        return errs;
    };
    for (key, prefix, detail) in [
        (
            "specReplicasPath",
            ".spec.",
            "should be a json path under .spec",
        ),
        (
            "statusReplicasPath",
            ".status.",
            "should be a json path under .status",
        ),
    ] {
        let path = p.child(&format!("scale.{key}"));
        let value = s(scale, key);
        if value.is_empty() {
            errs.push(FieldError::required(path, ""));
        } else if let Some(e) = validate_simple_json_path(value, &path) {
            errs.push(e);
        } else if !value.starts_with(prefix) {
            errs.push(invalid_str(&path, value, detail));
        }
    }
    let selector = s(scale, "labelSelectorPath");
    if !selector.is_empty() {
        let path = p.child("scale.labelSelectorPath");
        if let Some(e) = validate_simple_json_path(selector, &path) {
            errs.push(e);
        } else if !selector.starts_with(".spec.") && !selector.starts_with(".status.") {
            errs.push(invalid_str(
                &path,
                selector,
                "should be a json path under either .spec or .status",
            ));
        }
    }
    errs
}

fn validate_columns(version: &Value, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let columns = version
        .get("additionalPrinterColumns")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    for (i, col) in columns.iter().enumerate() {
        let cp = p.index(i);
        if s(col, "name").is_empty() {
            errs.push(FieldError::required(cp.child("name"), ""));
        }
        let types = format!("must be one of {}", PRINTER_COLUMN_TYPES.join(","));
        let ty = s(col, "type");
        if ty.is_empty() {
            errs.push(FieldError::required(cp.child("type"), types));
        } else if !PRINTER_COLUMN_TYPES.contains(&ty) {
            errs.push(invalid_str(&cp.child("type"), ty, types));
        }
        let format = s(col, "format");
        if !format.is_empty() && !PRINTER_COLUMN_FORMATS.contains(&format) {
            errs.push(invalid_str(
                &cp.child("format"),
                format,
                format!("must be one of {}", PRINTER_COLUMN_FORMATS.join(",")),
            ));
        }
        // The internal type calls the field JSONPath, and so do upstream's errors.
        let json_path = s(col, "jsonPath");
        if json_path.is_empty() {
            errs.push(FieldError::required(cp.child("JSONPath"), ""));
        } else {
            errs.extend(validate_simple_json_path(json_path, &cp.child("JSONPath")));
        }
    }
    errs
}

/// The internal type flattens `webhook.clientConfig` and
/// `webhook.conversionReviewVersions`; errors use those internal names.
fn validate_conversion(conversion: Option<&Value>, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let Some(conversion) = conversion else {
        return errs;
    };
    let strategy = s(conversion, "strategy");
    errs.extend(validate_enum_string(
        &p.child("strategy"),
        strategy,
        &["None", "Webhook"],
        true,
    ));
    let webhook = get(conversion, "webhook");
    let client_config = webhook.and_then(|w| get(w, "clientConfig"));
    let review_versions = webhook
        .map(|w| strings(w, "conversionReviewVersions"))
        .unwrap_or_default();
    let cc_path = p.child("webhookClientConfig");
    if strategy == "Webhook" {
        match client_config {
            None => errs.push(FieldError::required(
                &cc_path,
                "required when strategy is set to Webhook",
            )),
            Some(cc) => {
                let url = get(cc, "url").and_then(Value::as_str);
                let service = get(cc, "service");
                match (url, service) {
                    (Some(url), None) => {
                        errs.extend(validate_webhook_url(url, &cc_path.child("url")))
                    }
                    (None, Some(svc)) => {
                        errs.extend(validate_webhook_service(svc, &cc_path.child("service")))
                    }
                    _ => errs.push(FieldError::required(
                        &cc_path,
                        "exactly one of url or service is required",
                    )),
                }
            }
        }
        errs.extend(validate_conversion_review_versions(
            &review_versions,
            &p.child("conversionReviewVersions"),
        ));
    } else {
        if client_config.is_some() {
            errs.push(FieldError::forbidden(
                &cc_path,
                "should not be set when strategy is not set to Webhook",
            ));
        }
        if !review_versions.is_empty() {
            errs.push(FieldError::forbidden(
                p.child("conversionReviewVersions"),
                "should not be set when strategy is not set to Webhook",
            ));
        }
    }
    errs
}

fn validate_webhook_url(url: &str, p: &Path) -> Vec<FieldError> {
    const FORM: &str = "; desired format: https://host[/path]";
    let mut errs = Vec::new();
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let (rest, fragment) = rest.split_once('#').unwrap_or((rest, ""));
    let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
    let authority = rest.split('/').next().unwrap_or("");
    let (user, host) = authority
        .rsplit_once('@')
        .map_or((None, authority), |(u, h)| (Some(u), h));
    if scheme != "https" {
        errs.push(invalid_str(
            p,
            scheme,
            format!("'https' is the only allowed URL scheme{FORM}"),
        ));
    }
    if host.is_empty() {
        errs.push(invalid_str(
            p,
            host,
            format!("host must be specified{FORM}"),
        ));
    }
    if let Some(user) = user {
        errs.push(invalid_str(
            p,
            user,
            "user information is not permitted in the URL",
        ));
    }
    if !fragment.is_empty() {
        errs.push(invalid_str(
            p,
            fragment,
            "fragments are not permitted in the URL",
        ));
    }
    if !query.is_empty() {
        errs.push(invalid_str(
            p,
            query,
            "query parameters are not permitted in the URL",
        ));
    }
    errs
}

fn validate_webhook_service(service: &Value, p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if s(service, "name").is_empty() {
        errs.push(FieldError::required(
            p.child("name"),
            "service name is required",
        ));
    }
    if s(service, "namespace").is_empty() {
        errs.push(FieldError::required(
            p.child("namespace"),
            "service namespace is required",
        ));
    }
    if let Some(port) = get(service, "port") {
        if !port.as_i64().is_some_and(|n| (1..=65535).contains(&n)) {
            errs.push(invalid_raw(
                &p.child("port"),
                go_bad_value(port),
                "port is not valid: must be between 1 and 65535, inclusive",
            ));
        }
    }
    errs
}

fn validate_conversion_review_versions(versions: &[String], p: &Path) -> Vec<FieldError> {
    let mut errs = Vec::new();
    if versions.is_empty() {
        errs.push(FieldError::required(p, ""));
        return errs;
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, v) in versions.iter().enumerate() {
        if seen.contains(&v.as_str()) {
            errs.push(invalid_str(&p.index(i), v, "duplicate version"));
            continue;
        }
        seen.push(v);
        for msg in dns1035_label_errors(v) {
            errs.push(invalid_str(&p.index(i), v, msg));
        }
    }
    if !versions.iter().any(|v| v == "v1" || v == "v1beta1") {
        errs.push(invalid_raw(
            p,
            go_string_slice(Some(versions)),
            "must include at least one of v1, v1beta1",
        ));
    }
    errs
}

/// `status.acceptedNames` and `status.storedVersions`.
fn validate_status(obj: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let status = obj.get("status").unwrap_or(&Value::Null);
    if let Some(accepted) = get(status, "acceptedNames") {
        errs.extend(validate_names(
            accepted,
            &Path::new("status").child("acceptedNames"),
        ));
    }
    let p = Path::new("status").child("storedVersions");
    let stored = status
        .get("storedVersions")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect::<Vec<_>>()
        });
    let stored_list = stored.clone().unwrap_or_default();
    if stored_list.is_empty() {
        errs.push(invalid_raw(
            &p,
            go_string_slice(stored.as_deref()),
            "must have at least one stored version",
        ));
        return errs;
    }
    let spec_versions = versions(obj.get("spec").unwrap_or(&Value::Null));
    for v in spec_versions {
        let name = s(v, "name");
        if v.get("storage").and_then(Value::as_bool).unwrap_or(false)
            && !stored_list.iter().any(|x| x == name)
        {
            errs.push(invalid_raw(
                &p,
                go_string_slice(Some(&stored_list)),
                format!("must have the storage version {name}"),
            ));
        }
    }
    for (i, sv) in stored_list.iter().enumerate() {
        if !spec_versions.iter().any(|v| s(v, "name") == sv) {
            errs.push(invalid_str(
                &p.index(i),
                sv,
                format!(
                    "missing from spec.versions; {sv} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {sv} and removes {sv} from status.storedVersions"
                ),
            ));
        }
    }
    errs
}

#[derive(PartialEq, Eq, Clone, Copy)]
enum Approval {
    Missing,
    Invalid,
    Approved,
    Bypassed,
}

fn approval_state(obj: &Value) -> Approval {
    match obj
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(API_APPROVAL_ANNOTATION))
        .and_then(Value::as_str)
    {
        None | Some("") => Approval::Missing,
        Some(v) if v.starts_with("unapproved") => Approval::Bypassed,
        Some(v)
            if v.starts_with('/')
                || v.split_once("://")
                    .is_some_and(|(scheme, _)| !scheme.is_empty()) =>
        {
            Approval::Approved
        }
        Some(_) => Approval::Invalid,
    }
}

/// Groups under `k8s.io` and `kubernetes.io` need an `api-approved.kubernetes.io`
/// annotation; an update that does not change the approval state is let through.
fn validate_api_approval(new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let group = str_at(new, &["spec", "group"]);
    let protected = group == "k8s.io"
        || group.ends_with(".k8s.io")
        || group == "kubernetes.io"
        || group.ends_with(".kubernetes.io");
    if !protected {
        return Vec::new();
    }
    let state = approval_state(new);
    if old.map(approval_state) == Some(state) {
        return Vec::new();
    }
    let p = Path::new("metadata")
        .child("annotations")
        .key(API_APPROVAL_ANNOTATION);
    match state {
        Approval::Missing => vec![FieldError::required(
            p,
            format!("protected groups must have approval annotation \"{API_APPROVAL_ANNOTATION}\", see https://github.com/kubernetes/enhancements/pull/1111"),
        )],
        Approval::Invalid => {
            let value = str_at(new, &["metadata", "annotations", API_APPROVAL_ANNOTATION]);
            vec![invalid_str(
                &p,
                value,
                format!("protected groups must have approval annotation \"{API_APPROVAL_ANNOTATION}\" with either a URL or a reason starting with \"unapproved\", see https://github.com/kubernetes/enhancements/pull/1111"),
            )]
        }
        Approval::Approved | Approval::Bypassed => Vec::new(),
    }
}

/// v1 forbids turning `spec.preserveUnknownFields` on (old CRDs may keep it).
fn validate_preserve_unknown_fields(new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let on = |v: &Value| {
        v.pointer("/spec/preserveUnknownFields")
            .and_then(Value::as_bool)
            .unwrap_or(false)
    };
    if old.is_some_and(on) || !on(new) {
        return Vec::new();
    }
    vec![invalid_raw(
        &Path::new("spec").child("preserveUnknownFields"),
        "true".to_string(),
        "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
    )]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::crontab_crd;

    fn defaulted(mut crd: Value) -> Value {
        default_crd(&mut crd);
        crd
    }

    fn texts(errs: Vec<FieldError>) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn defaulting_fills_names_conversion_and_stored_versions() {
        let mut crd = crontab_crd();
        crd["spec"]["names"] = json!({"plural": "crontabs", "kind": "CronTab"});
        let crd = defaulted(crd);
        assert_eq!(crd["spec"]["names"]["singular"], "crontab");
        assert_eq!(crd["spec"]["names"]["listKind"], "CronTabList");
        assert_eq!(crd["spec"]["conversion"], json!({"strategy": "None"}));
        assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
        assert!(validate_crd(&crd).is_empty(), "{:?}", validate_crd(&crd));
    }

    #[test]
    fn create_validation_errors_match_upstream_texts() {
        type Mutate = fn(&mut Value);
        type Expect = fn(&Value) -> Vec<String>;
        let cases: Vec<(&str, Mutate, Expect)> = vec![
            ("valid", |_| {}, |_| vec![]),
            (
                "name mismatch",
                |c| c["metadata"]["name"] = json!("crontab.stable.example.com"),
                |_| {
                    vec![r#"metadata.name: Invalid value: "crontab.stable.example.com": must be spec.names.plural+"."+spec.group"#.to_string()]
                },
            ),
            (
                "group without dot",
                |c| {
                    c["spec"]["group"] = json!("example");
                    c["metadata"]["name"] = json!("crontabs.example");
                },
                |_| {
                    vec![r#"spec.group: Invalid value: "example": should be a domain with at least one dot"#.to_string()]
                },
            ),
            (
                "bad scope",
                |c| c["spec"]["scope"] = json!("Global"),
                |_| {
                    vec![r#"spec.scope: Unsupported value: "Global": supported values: "Cluster", "Namespaced""#.to_string()]
                },
            ),
            (
                "bad plural",
                |c| {
                    c["spec"]["names"]["plural"] = json!("CronTabs");
                    c["metadata"]["name"] = json!("CronTabs.stable.example.com");
                },
                |_| {
                    vec![
                        r#"metadata.name: Invalid value: "CronTabs.stable.example.com": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#.to_string(),
                        r#"spec.names.plural: Invalid value: "CronTabs": a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#.to_string(),
                    ]
                },
            ),
            (
                "no storage version",
                |c| c["spec"]["versions"][0]["storage"] = json!(false),
                |c| {
                    vec![
                        format!("spec.versions: Invalid value: {}: must have exactly one version marked as storage version", c["spec"]["versions"]),
                        "status.storedVersions: Invalid value: []string(nil): must have at least one stored version".to_string(),
                    ]
                },
            ),
            (
                "missing schema",
                |c| {
                    c["spec"]["versions"][0]
                        .as_object_mut()
                        .map(|v| v.remove("schema"));
                },
                |_| {
                    vec!["spec.versions[0].schema.openAPIV3Schema: Required value: schemas are required".to_string()]
                },
            ),
            (
                "non-structural schema",
                |c| {
                    c["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
                        ["properties"]["image"] = json!({})
                },
                |_| {
                    vec![
                        "spec.validation.openAPIV3Schema.properties[spec].properties[image].type: Required value: must not be empty for specified object fields".to_string(),
                    ]
                },
            ),
            (
                "bad scale path and printer column",
                |c| {
                    c["spec"]["versions"][0]["subresources"]["scale"]["specReplicasPath"] =
                        json!(".status.replicas");
                    c["spec"]["versions"][0]["additionalPrinterColumns"][0]["jsonPath"] =
                        json!("spec.cronSpec");
                },
                |_| {
                    vec![
                        r#"spec.subresources.scale.specReplicasPath: Invalid value: ".status.replicas": should be a json path under .spec"#.to_string(),
                        r#"spec.additionalPrinterColumns[0].JSONPath: Invalid value: "spec.cronSpec": must be a simple json path starting with ."#.to_string(),
                    ]
                },
            ),
            (
                "protected group",
                |c| {
                    c["spec"]["group"] = json!("stable.k8s.io");
                    c["metadata"]["name"] = json!("crontabs.stable.k8s.io");
                },
                |_| {
                    vec![r#"metadata.annotations[api-approved.kubernetes.io]: Required value: protected groups must have approval annotation "api-approved.kubernetes.io", see https://github.com/kubernetes/enhancements/pull/1111"#.to_string()]
                },
            ),
        ];
        for (name, mutate, want) in cases {
            let mut crd = crontab_crd();
            mutate(&mut crd);
            let crd = defaulted(crd);
            assert_eq!(texts(validate_crd(&crd)), want(&crd), "case {name}");
        }
    }

    #[test]
    fn per_version_schemas_keep_version_paths() {
        let mut crd = crontab_crd();
        let mut v2 = crd["spec"]["versions"][0].clone();
        v2["name"] = json!("v2");
        v2["storage"] = json!(false);
        v2["schema"]["openAPIV3Schema"]["properties"]["spec"]["properties"]["extra"] =
            json!({"type": "bogus"});
        crd["spec"]["versions"]
            .as_array_mut()
            .expect("versions")
            .push(v2);
        let crd = defaulted(crd);
        assert_eq!(
            texts(validate_crd(&crd)),
            vec![
                r#"spec.versions[1].schema.openAPIV3Schema.properties[spec].properties[extra].type: Unsupported value: "bogus": supported values: "array", "boolean", "integer", "number", "object", "string""#
            ]
        );
    }

    #[test]
    fn update_keeps_identity_fields_immutable() {
        let mut old = defaulted(crontab_crd());
        old["status"]["conditions"] = json!([{"type": "Established", "status": "True"}]);
        let mut new = old.clone();
        new["spec"]["scope"] = json!("Cluster");
        new["spec"]["group"] = json!("other.example.com");
        new["metadata"]["name"] = json!("crontabs.other.example.com");
        assert_eq!(
            texts(validate_crd_update(&new, &old)),
            vec![
                r#"spec.scope: Invalid value: "Cluster": field is immutable"#,
                r#"spec.group: Invalid value: "other.example.com": field is immutable"#,
            ]
        );
        // Before the CRD is established the scope may still change.
        old["status"]["conditions"] = json!([]);
        let mut new = old.clone();
        new["spec"]["scope"] = json!("Cluster");
        assert!(validate_crd_update(&new, &old).is_empty());
    }

    #[test]
    fn removing_a_stored_version_is_rejected() {
        let mut crd = defaulted(crontab_crd());
        crd["status"]["storedVersions"] = json!(["v1beta1", "v1"]);
        assert_eq!(
            texts(validate_crd_update(&crd, &crd.clone())),
            vec![
                r#"status.storedVersions[0]: Invalid value: "v1beta1": missing from spec.versions; v1beta1 was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in v1beta1 and removes v1beta1 from status.storedVersions"#
            ]
        );
    }
}
