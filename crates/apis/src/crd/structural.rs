//! Static checks of a CRD version's `openAPIV3Schema`, as
//! `validateCustomResourceDefinitionValidation` runs them upstream:
//!
//! 1. with the status subresource on, only a few keywords may sit at the root;
//! 2. the schema must be *structural* (`pkg/apiserver/schema` `ValidateStructural`):
//!    every field and array item has a `type` (or int-or-string / preserve-unknown),
//!    `allOf`/`anyOf`/`oneOf`/`not` only add value validations, root `metadata` only
//!    restricts `name`/`generateName`; these errors are sorted by their text;
//! 3. if it is, every `default` must be pruned and valid against its own schema;
//! 4. the OpenAPI restrictions (no `$ref`, `uniqueItems`, `patternProperties`, …)
//!    and the `x-kubernetes-list-type`/`map-type` rules.
//!
//! The checks read the raw JSON so that they can name the offending keywords.

use serde_json::Value;

use super::gofmt::{go_bad_value, go_string_slice};
use super::schema::SchemaValidator;
use crate::field_error::{FieldError, FieldErrorType, Path};

const OPENAPI_V3_TYPES: &[&str] = &["array", "boolean", "integer", "number", "object", "string"];
const META_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// JSON names of the keywords allowed at the root with the status subresource on.
const ALLOWED_AT_ROOT: &[&str] = &[
    "description",
    "type",
    "format",
    "title",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
];

/// The same list as upstream prints it (Go field names, `%v` of a slice).
const ALLOWED_AT_ROOT_GO: &str = "[Description Type Format Title Maximum ExclusiveMaximum Minimum ExclusiveMinimum \
MaxLength MinLength Pattern MaxItems MinItems UniqueItems MultipleOf Required Items Properties ExternalDocs Example \
XPreserveUnknownFields XValidations]";

fn get<'a>(s: &'a Value, key: &str) -> Option<&'a Value> {
    s.get(key).filter(|v| !v.is_null())
}

fn get_str<'a>(s: &'a Value, key: &str) -> &'a str {
    s.get(key).and_then(Value::as_str).unwrap_or("")
}

fn get_bool(s: &Value, key: &str) -> bool {
    s.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn properties(s: &Value) -> impl Iterator<Item = (&String, &Value)> {
    s.get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
}

fn has_property(s: &Value, key: &str) -> bool {
    s.get("properties")
        .and_then(Value::as_object)
        .is_some_and(|m| m.contains_key(key))
}

fn list<'a>(s: &'a Value, key: &str) -> &'a [Value] {
    s.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn strings(s: &Value, key: &str) -> Vec<String> {
    list(s, key)
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect()
}

/// Go's zero value test for a decoded field.
fn is_zero(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
    }
}

fn invalid(p: &Path, value: &Value, detail: impl Into<String>) -> FieldError {
    FieldError {
        kind: FieldErrorType::Invalid,
        field: p.to_string(),
        bad_value: Some(go_bad_value(value)),
        detail: detail.into(),
    }
}

fn invalid_str(p: &Path, value: &str, detail: impl Into<String>) -> FieldError {
    invalid(p, &Value::String(value.to_string()), detail)
}

/// Recursively tests every (sub)schema, value validations included.
pub(super) fn schema_has(s: &Value, pred: &dyn Fn(&Value) -> bool) -> bool {
    if !s.is_object() {
        return false;
    }
    if pred(s) {
        return true;
    }
    let one = |k: &str| get(s, k).is_some_and(|x| schema_has(x, pred));
    let many = |k: &str| list(s, k).iter().any(|x| schema_has(x, pred));
    let map = |k: &str| {
        s.get(k)
            .and_then(Value::as_object)
            .is_some_and(|m| m.values().any(|x| schema_has(x, pred)))
    };
    one("items")
        || many("items")
        || many("allOf")
        || many("anyOf")
        || many("oneOf")
        || one("not")
        || map("properties")
        || one("additionalProperties")
        || map("patternProperties")
        || one("additionalItems")
        || map("definitions")
        || map("dependencies")
}

/// Checks the `schema` object of a version (or the hoisted `spec.validation`) at `p`.
pub(super) fn validate_validation(
    holder: Option<&Value>,
    status_enabled: bool,
    require_structural: bool,
    p: &Path,
) -> Vec<FieldError> {
    let Some(schema) = holder.and_then(|h| get(h, "openAPIV3Schema")) else {
        return Vec::new();
    };
    let sp = p.child("openAPIV3Schema");
    let mut errs = Vec::new();
    if !schema.is_object() {
        errs.push(invalid_str(&sp, "", "must be an object"));
        return errs;
    }

    if status_enabled {
        let ty = get_str(schema, "type");
        if !ty.is_empty() && ty != "object" {
            errs.push(invalid_str(
                &p.child("openAPIV3Schema.type"),
                ty,
                r#"only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#,
            ));
        } else if schema.as_object().is_some_and(|m| {
            m.iter()
                .any(|(k, v)| !is_zero(v) && !ALLOWED_AT_ROOT.contains(&k.as_str()))
        }) {
            errs.push(FieldError {
                kind: FieldErrorType::Invalid,
                field: sp.to_string(),
                bad_value: Some(schema.to_string()),
                detail: format!(
                    "only {ALLOWED_AT_ROOT_GO} fields are allowed at the root of the schema if the status subresource is enabled"
                ),
            });
        }
    }
    if get_bool(schema, "nullable") {
        errs.push(FieldError::forbidden(
            p.child("openAPIV3Schema.nullable"),
            "nullable cannot be true at the root",
        ));
    }

    let compiled = SchemaValidator::new(schema);
    let mut init_errs = Vec::new();
    if require_structural {
        let mut st = Vec::new();
        structural_invariants(schema, Level::Root, &sp, &mut st);
        value_validation_completeness(schema, schema, &sp, &sp, &mut st);
        st.sort_by_key(ToString::to_string);
        if !st.is_empty() {
            errs.extend(st);
        } else if let Err(e) = &compiled {
            init_errs.push(invalid_str(&sp, "", e.clone()));
        } else {
            validate_defaults(schema, &sp, true, false, &mut errs);
        }
    }
    let ssv = Ssv {
        allow_defaults: true,
        disallow_reason: String::new(),
        inside_meta: false,
    };
    openapi_checks(schema, &sp, &ssv, true, &mut errs);
    if errs.is_empty() {
        errs.extend(init_errs);
    }
    if errs.is_empty() {
        if let Err(e) = compiled {
            errs.push(invalid_str(p, "", format!("error building validator: {e}")));
        }
    }
    errs
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Level {
    Root,
    Item,
    Field,
}

fn structural_invariants(s: &Value, lvl: Level, p: &Path, errs: &mut Vec<FieldError>) {
    let ty = get_str(s, "type");
    let items = get(s, "items").filter(|i| i.is_object());
    if ty == "array" && items.is_none() {
        errs.push(FieldError::required(p.child("items"), "must be specified"));
    }
    if let Some(items) = items {
        structural_invariants(items, Level::Item, &p.child("items"), errs);
    }
    for (k, v) in properties(s) {
        structural_invariants(v, Level::Field, &p.child("properties").key(k), errs);
    }
    if let Some(ap) = get(s, "additionalProperties") {
        if lvl == Level::Root {
            errs.push(FieldError::forbidden(
                p.child("additionalProperties"),
                "must not be used at the root",
            ));
        }
        if ap.is_object() {
            structural_invariants(ap, Level::Field, &p.child("additionalProperties"), errs);
        }
    }

    let int_or_string = get_bool(s, "x-kubernetes-int-or-string");
    let preserve = get_bool(s, "x-kubernetes-preserve-unknown-fields");
    let embedded = get_bool(s, "x-kubernetes-embedded-resource");
    if int_or_string && preserve {
        errs.push(invalid(
            &p.child("x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }
    if int_or_string && embedded {
        errs.push(invalid(
            &p.child("x-kubernetes-embedded-resource"),
            &Value::Bool(true),
            "must be false if x-kubernetes-int-or-string is true",
        ));
    }

    let skip_any_of = is_int_or_string_any_of(list(s, "anyOf"));
    let skip_first_all_of_any_of = list(s, "allOf")
        .first()
        .is_some_and(|a| is_int_or_string_any_of(list(a, "anyOf")));
    value_validation(s, skip_any_of, skip_first_all_of_any_of, lvl, p, errs);

    let check_metadata = lvl == Level::Root || embedded;
    if embedded && ty != "object" {
        let detail = "must be object if x-kubernetes-embedded-resource is true";
        if ty.is_empty() {
            errs.push(FieldError::required(p.child("type"), detail));
        } else {
            errs.push(invalid_str(&p.child("type"), ty, detail));
        }
    } else if ty.is_empty() && !int_or_string && !preserve {
        let detail = match lvl {
            Level::Root => "must not be empty at the root",
            Level::Item => "must not be empty for specified array items",
            Level::Field => "must not be empty for specified object fields",
        };
        errs.push(FieldError::required(p.child("type"), detail));
    }
    if embedded && get(s, "additionalProperties").is_some() {
        errs.push(FieldError::forbidden(
            p.child("additionalProperties"),
            "must not be used if x-kubernetes-embedded-resource is set",
        ));
    }
    if lvl == Level::Root && !ty.is_empty() && ty != "object" {
        errs.push(invalid_str(
            &p.child("type"),
            ty,
            "must be object at the root",
        ));
    }
    for key in ["kind", "apiVersion"] {
        if let Some(sub) = s.get("properties").and_then(|m| m.get(key)) {
            if check_metadata && get_str(sub, "type") != "string" {
                errs.push(invalid_str(
                    &p.child("properties").key(key).child("type"),
                    get_str(sub, "type"),
                    "must be string",
                ));
            }
        }
    }
    if let Some(meta) = s.get("properties").and_then(|m| m.get("metadata")) {
        metadata_invariants(
            meta,
            check_metadata,
            lvl,
            &p.child("properties").key("metadata"),
            errs,
        );
    }
    if embedded && !preserve && properties(s).next().is_none() {
        errs.push(FieldError::required(
            p.child("properties"),
            "must not be empty if x-kubernetes-embedded-resource is true without x-kubernetes-preserve-unknown-fields",
        ));
    }
}

fn metadata_invariants(
    m: &Value,
    check_metadata: bool,
    lvl: Level,
    p: &Path,
    errs: &mut Vec<FieldError>,
) {
    if check_metadata && get_str(m, "type") != "object" {
        errs.push(invalid_str(
            &p.child("type"),
            get_str(m, "type"),
            "must be object",
        ));
    }
    if lvl != Level::Root {
        return;
    }
    // Only name/generateName may be restricted; type and default are tolerated.
    let names_only = {
        let keys: Vec<&String> = properties(m).map(|(k, _)| k).collect();
        keys.iter().all(|k| *k == "name" || *k == "generateName")
    };
    let restricted = m.as_object().is_some_and(|o| {
        o.iter().any(|(k, v)| match k.as_str() {
            "type" | "default" => false,
            "properties" => !names_only,
            _ => !is_zero(v),
        })
    });
    if restricted {
        errs.push(FieldError::forbidden(
            p,
            "must not specify anything other than name and generateName, but metadata is implicitly specified",
        ));
    }
}

/// `anyOf: [{type: integer}, {type: string}]`, the int-or-string exception.
fn is_int_or_string_any_of(any_of: &[Value]) -> bool {
    let only_type = |s: &Value, t: &str| {
        get_str(s, "type") == t
            && s.as_object()
                .is_some_and(|o| o.iter().all(|(k, v)| k == "type" || is_zero(v)))
    };
    any_of.len() == 2 && only_type(&any_of[0], "integer") && only_type(&any_of[1], "string")
}

fn value_validation(
    s: &Value,
    skip_any_of: bool,
    skip_first_all_of_any_of: bool,
    lvl: Level,
    p: &Path,
    errs: &mut Vec<FieldError>,
) {
    if !skip_any_of {
        for (i, x) in list(s, "anyOf").iter().enumerate() {
            nested_value_validation(x, false, false, lvl, &p.child("anyOf").index(i), errs);
        }
    }
    for (i, x) in list(s, "allOf").iter().enumerate() {
        nested_value_validation(
            x,
            skip_first_all_of_any_of && i == 0,
            false,
            lvl,
            &p.child("allOf").index(i),
            errs,
        );
    }
    for (i, x) in list(s, "oneOf").iter().enumerate() {
        nested_value_validation(x, false, false, lvl, &p.child("oneOf").index(i), errs);
    }
    if let Some(not) = get(s, "not") {
        nested_value_validation(not, false, false, lvl, &p.child("not"), errs);
    }
    let pattern = get_str(s, "pattern");
    if !pattern.is_empty() {
        if let Err(e) = regex::Regex::new(pattern) {
            errs.push(invalid_str(
                &p.child("pattern"),
                pattern,
                format!("must be a valid regular expression, but isn't: {e}"),
            ));
        }
    }
}

/// Inside a junctor only value validations are allowed.
fn nested_value_validation(
    v: &Value,
    skip_any_of: bool,
    skip_all_of_any_of: bool,
    lvl: Level,
    p: &Path,
    errs: &mut Vec<FieldError>,
) {
    if !v.is_object() {
        return;
    }
    value_validation(v, skip_any_of, skip_all_of_any_of, lvl, p, errs);
    if let Some(items) = get(v, "items") {
        nested_value_validation(items, false, false, lvl, &p.child("items"), errs);
    }
    for (k, f) in properties(v) {
        nested_value_validation(
            f,
            false,
            false,
            Level::Field,
            &p.child("properties").key(k),
            errs,
        );
    }
    let forbid = |errs: &mut Vec<FieldError>, key: &str, detail: &str| {
        errs.push(FieldError::forbidden(p.child(key), detail))
    };
    if !get_str(v, "type").is_empty() {
        forbid(errs, "type", "must be empty to be structural");
    }
    if get(v, "additionalProperties").is_some() {
        forbid(
            errs,
            "additionalProperties",
            "must be undefined to be structural",
        );
    }
    if get(v, "default").is_some() {
        forbid(errs, "default", "must be undefined to be structural");
    }
    for key in ["title", "description"] {
        if !get_str(v, key).is_empty() {
            forbid(errs, key, "must be empty to be structural");
        }
    }
    if get_bool(v, "nullable") {
        forbid(errs, "nullable", "must be false to be structural");
    }
    if get(v, "externalDocs").is_some() {
        forbid(errs, "externalDocs", "must be undefined to be structural");
    }
    for key in [
        "x-kubernetes-preserve-unknown-fields",
        "x-kubernetes-embedded-resource",
        "x-kubernetes-int-or-string",
    ] {
        if get_bool(v, key) {
            forbid(errs, key, "must be false to be structural");
        }
    }
    if !list(v, "x-kubernetes-list-map-keys").is_empty() {
        forbid(
            errs,
            "x-kubernetes-list-map-keys",
            "must be empty to be structural",
        );
    }
    for key in ["x-kubernetes-list-type", "x-kubernetes-map-type"] {
        if get(v, key).is_some() {
            forbid(errs, key, "must be undefined to be structural");
        }
    }
    if !list(v, "x-kubernetes-validations").is_empty() {
        forbid(
            errs,
            "x-kubernetes-validations",
            "must be empty to be structural",
        );
    }
    if has_property(v, "metadata") {
        errs.push(FieldError::forbidden(
            p.child("properties").key("metadata"),
            "must not be specified in a nested context",
        ));
    }
}

/// Fields and items named in the root's junctors must exist in the structural part.
fn value_validation_completeness(
    v: &Value,
    s: &Value,
    sp: &Path,
    vp: &Path,
    errs: &mut Vec<FieldError>,
) {
    if let Some(not) = get(v, "not") {
        nested_completeness(not, Some(s), sp, &vp.child("not"), errs);
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        for (i, x) in list(v, key).iter().enumerate() {
            nested_completeness(x, Some(s), sp, &vp.child(key).index(i), errs);
        }
    }
}

fn nested_completeness(
    v: &Value,
    s: Option<&Value>,
    sp: &Path,
    vp: &Path,
    errs: &mut Vec<FieldError>,
) {
    let Some(s) = s else {
        errs.push(FieldError::required(
            sp,
            format!("because it is defined in {vp}"),
        ));
        return;
    };
    value_validation_completeness(v, s, sp, vp, errs);
    if let Some(items) = get(v, "items") {
        nested_completeness(
            items,
            get(s, "items"),
            &sp.child("items"),
            &vp.child("items"),
            errs,
        );
    }
    for (k, vf) in properties(v) {
        let sfp = sp.child("properties").key(k);
        let vfp = vp.child("properties").key(k);
        match s.get("properties").and_then(|m| m.get(k)) {
            Some(sf) => nested_completeness(vf, Some(sf), &sfp, &vfp, errs),
            None => errs.push(FieldError::required(
                sfp,
                format!("because it is defined in {vfp}"),
            )),
        }
    }
}

/// Each `default` of the structural part must survive pruning unchanged and
/// validate against its own schema. Defaults inside resource metadata are left to
/// the OpenAPI checks, which forbid them at the root.
fn validate_defaults(
    s: &Value,
    p: &Path,
    is_root: bool,
    inside_meta: bool,
    errs: &mut Vec<FieldError>,
) {
    let embedded = is_root || get_bool(s, "x-kubernetes-embedded-resource");
    if let Some(d) = get(s, "default").filter(|_| !inside_meta) {
        if let Ok(v) = SchemaValidator::new(s) {
            let dp = p.child("default");
            let mut pruned = d.clone();
            v.prune_as(&mut pruned, embedded);
            if &pruned != d {
                errs.push(invalid(&dp, d, "must not have unknown fields"));
            } else {
                errs.extend(v.validate_openapi(d, Some(dp.as_str())));
            }
        }
    }
    if let Some(items) = get(s, "items").filter(|i| i.is_object()) {
        validate_defaults(items, &p.child("items"), false, false, errs);
    }
    for (k, sub) in properties(s) {
        let sub_meta = inside_meta || (embedded && META_FIELDS.contains(&k.as_str()));
        validate_defaults(sub, &p.child("properties").key(k), false, sub_meta, errs);
    }
}

/// `specStandardValidator` state while walking the schema.
#[derive(Clone)]
struct Ssv {
    allow_defaults: bool,
    disallow_reason: String,
    inside_meta: bool,
}

impl Ssv {
    fn forbid_defaults(&self, reason: &str) -> Ssv {
        Ssv {
            allow_defaults: false,
            disallow_reason: reason.to_string(),
            inside_meta: self.inside_meta,
        }
    }
}

fn ssv_validate(s: &Value, p: &Path, ssv: &Ssv, errs: &mut Vec<FieldError>) {
    let ty = get_str(s, "type");
    if !ty.is_empty() && !OPENAPI_V3_TYPES.contains(&ty) {
        errs.push(FieldError::not_supported(
            p.child("type"),
            ty,
            OPENAPI_V3_TYPES,
        ));
    }
    if get(s, "default").is_some() && !ssv.allow_defaults {
        let mut detail = "must not be set".to_string();
        if !ssv.disallow_reason.is_empty() {
            detail.push(' ');
            detail.push_str(&ssv.disallow_reason);
        }
        errs.push(FieldError::forbidden(p.child("default"), detail));
    }
    // `id` and the two maps count when non-empty, the others whenever present.
    let unsupported = [
        ("id", true, "id is not supported"),
        ("additionalItems", false, "additionalItems is not supported"),
        (
            "patternProperties",
            true,
            "patternProperties is not supported",
        ),
        ("definitions", true, "definitions is not supported"),
        ("dependencies", false, "dependencies is not supported"),
        ("$ref", false, "$ref is not supported"),
    ];
    for (key, when_non_empty, detail) in unsupported {
        if get(s, key).is_some_and(|v| !when_non_empty || !is_zero(v)) {
            errs.push(FieldError::forbidden(p.child(key), detail));
        }
    }
    if ty == "null" {
        errs.push(FieldError::forbidden(
            p.child("type"),
            "type cannot be set to null, use nullable as an alternative",
        ));
    }
    if get(s, "items").is_some_and(|i| i.as_array().is_some_and(|a| !a.is_empty())) {
        errs.push(FieldError::forbidden(
            p.child("items"),
            "items must be a schema object and not an array",
        ));
    }
    if ssv.inside_meta && get_bool(s, "x-kubernetes-embedded-resource") {
        errs.push(FieldError::forbidden(
            p.child("x-kubernetes-embedded-resource"),
            "must not be used inside of resource meta",
        ));
    }
}

/// `ValidateCustomResourceDefinitionOpenAPISchema`.
fn openapi_checks(s: &Value, p: &Path, ssv: &Ssv, is_root: bool, errs: &mut Vec<FieldError>) {
    if !s.is_object() {
        return;
    }
    ssv_validate(s, p, ssv, errs);
    if get_bool(s, "uniqueItems") {
        errs.push(FieldError::forbidden(
            p.child("uniqueItems"),
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    let has_props = properties(s).next().is_some();
    if let Some(ap) = get(s, "additionalProperties") {
        if has_props && (ap == &Value::Bool(false) || ap.is_object()) {
            errs.push(FieldError::forbidden(
                p.child("additionalProperties"),
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        let sub = if ssv.inside_meta {
            ssv.forbid_defaults("inside additionalProperties applying to object metadata")
        } else {
            ssv.clone()
        };
        openapi_checks(ap, &p.child("additionalProperties"), &sub, false, errs);
    }
    let embedded = get_bool(s, "x-kubernetes-embedded-resource");
    for (k, v) in properties(s) {
        let mut sub = ssv.clone();
        if (is_root || embedded) && META_FIELDS.contains(&k.as_str()) {
            sub.inside_meta = true;
            if is_root {
                sub = sub.forbid_defaults(&format!("in top-level {k}"));
            }
        }
        openapi_checks(v, &p.child("properties").key(k), &sub, false, errs);
    }
    if let Some(not) = get(s, "not") {
        openapi_checks(not, &p.child("not"), ssv, false, errs);
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for (i, x) in list(s, key).iter().enumerate() {
            openapi_checks(x, &p.child(key).index(i), ssv, false, errs);
        }
    }
    if let Some(defs) = s.get("definitions").and_then(Value::as_object) {
        for (k, x) in defs {
            openapi_checks(x, &p.child("definitions").key(k), ssv, false, errs);
        }
    }
    match get(s, "items") {
        Some(items @ Value::Object(_)) => {
            openapi_checks(items, &p.child("items"), ssv, false, errs)
        }
        Some(Value::Array(items)) => {
            for (i, x) in items.iter().enumerate() {
                openapi_checks(x, &p.child("items").index(i), ssv, false, errs);
            }
        }
        _ => {}
    }
    if let Some(deps) = s.get("dependencies").and_then(Value::as_object) {
        for (k, x) in deps {
            openapi_checks(x, &p.child("dependencies").key(k), ssv, false, errs);
        }
    }
    if s.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errs.push(invalid(
            &p.child("x-kubernetes-preserve-unknown-fields"),
            &Value::Bool(false),
            "must be true or undefined",
        ));
    }
    list_and_map_type_checks(s, p, errs);
    for (i, rule) in list(s, "x-kubernetes-validations").iter().enumerate() {
        if get_str(rule, "rule").trim().is_empty() {
            errs.push(FieldError::required(
                p.child("x-kubernetes-validations").index(i).child("rule"),
                "rule is not specified",
            ));
        }
    }
}

fn list_and_map_type_checks(s: &Value, p: &Path, errs: &mut Vec<FieldError>) {
    let ty = get_str(s, "type");
    let map_type = get(s, "x-kubernetes-map-type").map(|v| v.as_str().unwrap_or(""));
    let list_type = get(s, "x-kubernetes-list-type").map(|v| v.as_str().unwrap_or(""));
    let keys = strings(s, "x-kubernetes-list-map-keys");
    let items = get(s, "items");
    let item_schema = items.filter(|i| i.is_object());

    if map_type.is_some() && ty != "object" {
        let detail = "must be object if x-kubernetes-map-type is specified";
        if ty.is_empty() {
            errs.push(FieldError::required(p.child("type"), detail));
        } else {
            errs.push(invalid_str(&p.child("type"), ty, detail));
        }
    }
    if let Some(mt) = map_type.filter(|mt| *mt != "atomic" && *mt != "granular") {
        errs.push(FieldError::not_supported(
            p.child("x-kubernetes-map-type"),
            mt,
            &["atomic", "granular"],
        ));
    }
    if list_type.is_some() && ty != "array" {
        let detail = "must be array if x-kubernetes-list-type is specified";
        if ty.is_empty() {
            errs.push(FieldError::required(p.child("type"), detail));
        } else {
            errs.push(invalid_str(&p.child("type"), ty, detail));
        }
    } else if let (Some("set"), Some(is)) = (list_type, item_schema) {
        let detail = "must be atomic as item of a list with x-kubernetes-list-type=set";
        // Upstream reports the items' list type as the bad value in both cases.
        let item_list_type = get(is, "x-kubernetes-list-type");
        let shown = item_list_type
            .map(go_bad_value)
            .unwrap_or_else(|| "null".to_string());
        let bad = |key: &str| FieldError {
            kind: FieldErrorType::Invalid,
            field: p.child("items").child(key).to_string(),
            bad_value: Some(shown.clone()),
            detail: detail.to_string(),
        };
        match get_str(is, "type") {
            "array" if item_list_type.is_some_and(|t| t.as_str() != Some("atomic")) => {
                errs.push(bad("x-kubernetes-list-type"))
            }
            "object" if get_str(is, "x-kubernetes-map-type") != "atomic" => {
                errs.push(bad("x-kubernetes-map-type"))
            }
            _ => {}
        }
    }
    if let Some(lt) = list_type.filter(|lt| !["atomic", "set", "map"].contains(lt)) {
        errs.push(FieldError::not_supported(
            p.child("x-kubernetes-list-type"),
            lt,
            &["atomic", "set", "map"],
        ));
    }
    if !keys.is_empty() {
        let detail = "must be map if x-kubernetes-list-map-keys is non-empty";
        match list_type {
            None => errs.push(FieldError::required(
                p.child("x-kubernetes-list-type"),
                detail,
            )),
            Some(lt) if lt != "map" => {
                errs.push(invalid_str(&p.child("x-kubernetes-list-type"), lt, detail))
            }
            _ => {}
        }
    }
    let keys_value = || go_string_slice(Some(&keys));
    if list_type == Some("map") {
        if keys.is_empty() {
            errs.push(FieldError::required(
                p.child("x-kubernetes-list-map-keys"),
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match items {
            None => errs.push(FieldError::required(
                p.child("items"),
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(i) if !i.is_object() => errs.push(invalid(
                &p.child("items"),
                i,
                "must only have a single schema if x-kubernetes-list-type is map",
            )),
            _ => {}
        }
        if let Some(is) = item_schema {
            let item_type = get_str(is, "type");
            if item_type != "object" {
                errs.push(invalid_str(
                    &p.child("items").child("type"),
                    item_type,
                    "must be object if parent array's x-kubernetes-list-type is map",
                ));
            } else {
                let mut seen = Vec::new();
                for k in &keys {
                    match is.get("properties").and_then(|m| m.get(k)) {
                        Some(prop) => {
                            if matches!(get_str(prop, "type"), "array" | "object") {
                                errs.push(invalid_str(
                                    &p.child("items").child("properties").key(k).child("type"),
                                    item_type,
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                        }
                        None => errs.push(FieldError {
                            kind: FieldErrorType::Invalid,
                            field: p.child("x-kubernetes-list-map-keys").to_string(),
                            bad_value: Some(keys_value()),
                            detail: "entries must all be names of item properties".to_string(),
                        }),
                    }
                    if seen.contains(&k) {
                        errs.push(FieldError {
                            kind: FieldErrorType::Invalid,
                            field: p.child("x-kubernetes-list-map-keys").to_string(),
                            bad_value: Some(keys_value()),
                            detail: "must not contain duplicate entries".to_string(),
                        });
                    }
                    seen.push(k);
                }
            }
        }
    }
    // Set and map items may not be null, and map keys must always be present.
    if let (Some(lt @ ("set" | "map")), Some(is)) = (list_type, item_schema) {
        if get_bool(is, "nullable") {
            errs.push(FieldError::forbidden(
                p.child("items").child("nullable"),
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required = strings(is, "required");
            for k in &keys {
                let Some(prop) = is.get("properties").and_then(|m| m.get(k)) else {
                    continue;
                };
                let kp = p.child("items").child("properties").key(k);
                if !required.contains(k) && get(prop, "default").is_none() {
                    errs.push(FieldError::required(
                        kp.child("default"),
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if get_bool(prop, "nullable") {
                    errs.push(FieldError::forbidden(
                        kp.child("nullable"),
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Value, status: bool) -> Vec<String> {
        let holder = json!({ "openAPIV3Schema": schema });
        validate_validation(
            Some(&holder),
            status,
            true,
            &Path::new("spec").child("validation"),
        )
        .iter()
        .map(ToString::to_string)
        .collect()
    }

    #[test]
    fn schema_checks_match_upstream_texts() {
        let p = "spec.validation.openAPIV3Schema";
        let cases: Vec<(&str, Value, bool, Vec<String>)> = vec![
            (
                "structural crontab",
                json!({"type": "object", "properties": {"spec": {"type": "object", "properties": {
                    "replicas": {"type": "integer", "minimum": 1, "default": 1}}}}}),
                true,
                vec![],
            ),
            (
                "missing field type",
                json!({"type": "object", "properties": {"spec": {"properties": {"a": {"type": "string"}}}}}),
                false,
                vec![format!("{p}.properties[spec].type: Required value: must not be empty for specified object fields")],
            ),
            (
                "missing root type and array items",
                json!({"properties": {"list": {"type": "array"}}}),
                false,
                vec![
                    format!("{p}.properties[list].items: Required value: must be specified"),
                    format!("{p}.type: Required value: must not be empty at the root"),
                ],
            ),
            (
                "root must be object",
                json!({"type": "array", "items": {"type": "string"}}),
                false,
                vec![format!(r#"{p}.type: Invalid value: "array": must be object at the root"#)],
            ),
            (
                "status subresource restricts root",
                json!({"type": "array", "items": {"type": "string"}}),
                true,
                vec![
                    format!(
                        r#"spec.validation.openAPIV3Schema.type: Invalid value: "array": only "object" is allowed as the type at the root of the schema if the status subresource is enabled"#
                    ),
                    format!(r#"{p}.type: Invalid value: "array": must be object at the root"#),
                ],
            ),
            (
                "metadata restricted to name",
                json!({"type": "object", "properties": {"metadata": {"type": "object", "properties": {
                    "labels": {"type": "object"}}}}}),
                false,
                vec![format!(
                    "{p}.properties[metadata]: Forbidden: must not specify anything other than name and generateName, but metadata is implicitly specified"
                )],
            ),
            (
                "type in junctor",
                json!({"type": "object", "properties": {"a": {"type": "string", "anyOf": [{"type": "string"}]}}}),
                false,
                vec![format!("{p}.properties[a].anyOf[0].type: Forbidden: must be empty to be structural")],
            ),
            (
                "int-or-string anyOf is allowed",
                json!({"type": "object", "properties": {"a": {"x-kubernetes-int-or-string": true,
                    "anyOf": [{"type": "integer"}, {"type": "string"}]}}}),
                false,
                vec![],
            ),
            (
                "uniqueItems and $ref",
                json!({"type": "object", "properties": {"a": {"type": "array", "uniqueItems": true, "items": {"type": "string"}},
                    "b": {"type": "string", "$ref": "#/x"}}}),
                false,
                vec![
                    format!("{p}.properties[a].uniqueItems: Forbidden: uniqueItems cannot be set to true since the runtime complexity becomes quadratic"),
                    format!("{p}.properties[b].$ref: Forbidden: $ref is not supported"),
                ],
            ),
            (
                "bad default",
                json!({"type": "object", "properties": {"n": {"type": "integer", "default": "x"},
                    "o": {"type": "object", "default": {"extra": 1}}}}),
                false,
                vec![
                    format!(r#"{p}.properties[n].default: Invalid value: "string":  in body must be of type integer: "string""#),
                    format!(r#"{p}.properties[o].default: Invalid value: map[string]interface {{}}{{"extra":1}}: must not have unknown fields"#),
                ],
            ),
            (
                "default in metadata",
                json!({"type": "object", "properties": {"metadata": {"type": "object", "default": {}}}}),
                false,
                vec![format!("{p}.properties[metadata].default: Forbidden: must not be set in top-level metadata")],
            ),
            (
                "list map keys",
                json!({"type": "object", "properties": {"ports": {"type": "array", "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["name"], "items": {"type": "object", "properties": {"name": {"type": "string"}}}}}}),
                false,
                vec![format!(
                    "{p}.properties[ports].items.properties[name].default: Required value: this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property"
                )],
            ),
        ];
        for (name, schema, status, want) in cases {
            assert_eq!(check(schema, status), want, "case {name}");
        }
    }
}
