//! Validation, pruning and defaulting of custom objects against a version's
//! `openAPIV3Schema`.
//!
//! Validation follows kube-openapi's `validate` package as apiextensions-apiserver
//! wraps it (`kubeOpenAPIResultToFieldErrors`): each schema keyword produces the
//! kube-openapi message (`spec.replicas in body must be of type integer: "string"`),
//! which is then turned into a field error whose type depends on the keyword
//! (required → `Required value`, enum → `Unsupported value`, maxLength → `Too long`,
//! maxItems → `Too many`, type/format → `Invalid value` with the JSON type as value,
//! anything else → `Invalid value` with the offending value). After that come the
//! structural checks upstream runs separately: `x-kubernetes-list-type` set/map
//! uniqueness and `apiVersion`/`kind` of embedded resources.
//!
//! Pruning and defaulting use only the *structural* part of the schema
//! (`properties`, `additionalProperties`, `items` and the `x-kubernetes-*` markers),
//! never the value validations under `allOf`/`anyOf`/`oneOf`/`not`, exactly as the
//! upstream `pruning` and `defaulting` packages do.
//!
//! Deliberately absent: CEL rules (`x-kubernetes-validations` are accepted but not
//! evaluated), validation ratcheting on update, and full ObjectMeta validation of
//! embedded resources (only their unknown metadata fields are dropped).

use std::collections::{HashMap, HashSet};

use regex::Regex;
use serde_json::{Map, Value};

use super::gofmt::{canonical_json, go_bad_value, go_float, go_quote, go_sharp_v};
use crate::field_error::{FieldError, FieldErrorType, Path};

/// Fields of ObjectMeta; anything else under `metadata` is dropped (upstream
/// round-trips metadata through the ObjectMeta type).
pub const OBJECT_META_FIELDS: &[&str] = &[
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// TypeMeta and ObjectMeta keys, never pruned at a resource root.
const META_FIELDS: &[&str] = &["apiVersion", "kind", "metadata"];

/// String formats apiextensions-apiserver keeps (`StripUnsupportedFormatsPostProcess`);
/// all others, including `int32`/`int64`, are ignored for validation. Names are
/// compared with dashes and underscores removed, as strfmt does.
const SUPPORTED_FORMATS: &[&str] = &[
    "bsonobjectid",
    "uri",
    "email",
    "hostname",
    "ipv4",
    "ipv6",
    "cidr",
    "mac",
    "uuid",
    "uuid3",
    "uuid4",
    "uuid5",
    "isbn",
    "isbn10",
    "isbn13",
    "creditcard",
    "ssn",
    "hexcolor",
    "rgbcolor",
    "byte",
    "password",
    "date",
    "duration",
    "datetime",
];

/// A compiled `openAPIV3Schema`.
#[derive(Debug, Clone)]
pub struct SchemaValidator {
    root: Node,
}

#[derive(Debug, Clone)]
enum Additional {
    Allows(bool),
    Schema(Box<Node>),
}

#[derive(Debug, Clone, Default)]
struct Node {
    types: Vec<String>,
    nullable: bool,
    format: Option<String>,
    properties: Vec<(String, Node)>,
    index: HashMap<String, usize>,
    required: Vec<String>,
    additional: Option<Additional>,
    items: Option<Box<Node>>,
    enum_values: Option<Vec<Value>>,
    minimum: Option<f64>,
    exclusive_minimum: bool,
    maximum: Option<f64>,
    exclusive_maximum: bool,
    multiple_of: Option<f64>,
    min_length: Option<u64>,
    max_length: Option<u64>,
    pattern: Option<(String, Regex)>,
    min_items: Option<u64>,
    max_items: Option<u64>,
    unique_items: bool,
    min_properties: Option<u64>,
    max_properties: Option<u64>,
    preserve_unknown: bool,
    embedded: bool,
    list_type: Option<String>,
    list_map_keys: Vec<String>,
    default: Option<Value>,
    all_of: Vec<Node>,
    any_of: Vec<Node>,
    one_of: Vec<Node>,
    not: Option<Box<Node>>,
}

impl Node {
    fn prop(&self, name: &str) -> Option<&Node> {
        self.index.get(name).map(|&i| &self.properties[i].1)
    }

    /// The structural schema for a map key: a declared property, else the
    /// `additionalProperties` schema.
    fn field_schema(&self, name: &str) -> Option<&Node> {
        self.prop(name).or(match &self.additional {
            Some(Additional::Schema(n)) => Some(n),
            _ => None,
        })
    }

    fn items(&self) -> Option<&Node> {
        self.items.as_deref()
    }
}

fn compile(v: &Value, at: &str) -> Result<Node, String> {
    let m = v
        .as_object()
        .ok_or_else(|| format!("{at}: a schema must be an object"))?;
    let mut n = Node::default();
    let bad = |key: &str, want: &str| format!("{at}.{key}: must be {want}");
    let get_str = |key: &str| -> Result<Option<String>, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(key, "a string")),
        }
    };
    let get_bool = |key: &str| -> Result<bool, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(_) => Err(bad(key, "a boolean")),
        }
    };
    let get_f64 = |key: &str| -> Result<Option<f64>, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(x)) => Ok(x.as_f64()),
            Some(_) => Err(bad(key, "a number")),
        }
    };
    let get_u64 = |key: &str| -> Result<Option<u64>, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(x)) => x
                .as_u64()
                .map(Some)
                .ok_or_else(|| bad(key, "a non-negative integer")),
            Some(_) => Err(bad(key, "a non-negative integer")),
        }
    };
    let get_strings = |key: &str| -> Result<Vec<String>, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| {
                    x.as_str()
                        .map(str::to_string)
                        .ok_or_else(|| bad(key, "a list of strings"))
                })
                .collect(),
            Some(_) => Err(bad(key, "a list of strings")),
        }
    };
    let get_list = |key: &str| -> Result<Vec<Node>, String> {
        match m.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(a)) => a
                .iter()
                .enumerate()
                .map(|(i, x)| compile(x, &format!("{at}.{key}[{i}]")))
                .collect(),
            Some(_) => Err(bad(key, "a list of schemas")),
        }
    };

    if let Some(t) = get_str("type")? {
        if !t.is_empty() {
            n.types.push(t);
        }
    }
    if get_bool("x-kubernetes-int-or-string")? {
        n.types = vec!["integer".to_string(), "string".to_string()];
    }
    n.nullable = get_bool("nullable")?;
    if let Some(f) = get_str("format")? {
        let normalized = f.replace(['-', '_'], "");
        if SUPPORTED_FORMATS.contains(&normalized.as_str()) {
            n.format = Some(f);
        }
    }
    match m.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(props)) => {
            for (k, pv) in props {
                let child = compile(pv, &format!("{at}.properties[{k}]"))?;
                n.index.insert(k.clone(), n.properties.len());
                n.properties.push((k.clone(), child));
            }
        }
        Some(_) => return Err(bad("properties", "an object")),
    }
    n.required = get_strings("required")?;
    n.additional = match m.get("additionalProperties") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(Additional::Allows(*b)),
        Some(s @ Value::Object(_)) => Some(Additional::Schema(Box::new(compile(
            s,
            &format!("{at}.additionalProperties"),
        )?))),
        Some(_) => return Err(bad("additionalProperties", "a boolean or a schema")),
    };
    n.items = match m.get("items") {
        None | Some(Value::Null) => None,
        Some(s @ Value::Object(_)) => Some(Box::new(compile(s, &format!("{at}.items"))?)),
        Some(_) => {
            return Err(format!(
                "{at}.items: must be a schema object and not an array"
            ))
        }
    };
    n.enum_values = match m.get("enum") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(a.clone()),
        Some(_) => return Err(bad("enum", "a list")),
    };
    n.minimum = get_f64("minimum")?;
    n.exclusive_minimum = get_bool("exclusiveMinimum")?;
    n.maximum = get_f64("maximum")?;
    n.exclusive_maximum = get_bool("exclusiveMaximum")?;
    n.multiple_of = get_f64("multipleOf")?;
    n.min_length = get_u64("minLength")?;
    n.max_length = get_u64("maxLength")?;
    if let Some(p) = get_str("pattern")? {
        let re =
            Regex::new(&p).map_err(|e| format!("{at}.pattern: invalid regular expression: {e}"))?;
        n.pattern = Some((p, re));
    }
    n.min_items = get_u64("minItems")?;
    n.max_items = get_u64("maxItems")?;
    n.unique_items = get_bool("uniqueItems")?;
    n.min_properties = get_u64("minProperties")?;
    n.max_properties = get_u64("maxProperties")?;
    n.preserve_unknown = get_bool("x-kubernetes-preserve-unknown-fields")?;
    n.embedded = get_bool("x-kubernetes-embedded-resource")?;
    n.list_type = get_str("x-kubernetes-list-type")?;
    n.list_map_keys = get_strings("x-kubernetes-list-map-keys")?;
    n.default = match m.get("default") {
        None | Some(Value::Null) => None,
        Some(d) => Some(d.clone()),
    };
    n.all_of = get_list("allOf")?;
    n.any_of = get_list("anyOf")?;
    n.one_of = get_list("oneOf")?;
    n.not = match m.get("not") {
        None | Some(Value::Null) => None,
        Some(s) => Some(Box::new(compile(s, &format!("{at}.not"))?)),
    };
    Ok(n)
}

/// One kube-openapi result error before it becomes a field error.
#[derive(Debug, Clone)]
struct OErr {
    /// kube-openapi's `Name` (the data path), or `None` for composite
    /// (anyOf/oneOf/allOf/not) errors that carry no name.
    name: Option<String>,
    kind: FieldErrorType,
    value: Option<String>,
    detail: String,
}

impl OErr {
    fn named(name: &str, kind: FieldErrorType, value: Option<String>, detail: String) -> Self {
        OErr {
            name: Some(name.to_string()),
            kind,
            value,
            detail,
        }
    }
    fn invalid(name: &str, value: String, detail: String) -> Self {
        Self::named(name, FieldErrorType::Invalid, Some(value), detail)
    }
    fn type_invalid(name: &str, type_name: &str, found: &str) -> Self {
        let detail = format!(
            "{name} in body must be of type {type_name}: {}",
            go_quote(found)
        );
        Self::named(
            name,
            FieldErrorType::TypeInvalid,
            Some(go_quote(found)),
            detail,
        )
    }
    fn composite(detail: String) -> Self {
        OErr {
            name: None,
            kind: FieldErrorType::Invalid,
            value: Some("\"\"".to_string()),
            detail,
        }
    }

    /// `kubeOpenAPIResultToFieldErrors`: the field is `base` joined with the name
    /// (leading dot trimmed); with no base and no name upstream prints a nil path.
    fn into_field_error(self, base: Option<&str>) -> FieldError {
        let name = self
            .name
            .as_deref()
            .map(|n| n.strip_prefix('.').unwrap_or(n))
            .unwrap_or("");
        let field = match (base, name) {
            (None, "") => "<nil>".to_string(),
            (None, n) => n.to_string(),
            (Some(b), "") => b.to_string(),
            (Some(b), n) => format!("{b}.{n}"),
        };
        FieldError {
            kind: self.kind,
            field,
            bad_value: self.value,
            detail: self.detail,
        }
    }
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// kube-openapi's `%v` of a bound: an int when the data is an integer (the bound is
/// truncated to int64 first), a float otherwise.
fn bound_text(bound: f64, int_data: bool) -> String {
    if int_data {
        (bound as i64).to_string()
    } else {
        go_float(bound)
    }
}

/// JSON equality where numbers compare by value (Go decodes both sides the same way).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn is_json_integer(f: f64) -> bool {
    f.is_finite() && f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0
}

fn check_format(format: &str, s: &str) -> bool {
    static_regexes::check(&format.replace(['-', '_'], ""), s)
}

/// Loose checks for the string formats upstream validates; formats we do not
/// model precisely accept everything rather than reject valid input.
mod static_regexes {
    use once_cell::sync::Lazy;
    use regex::Regex;

    fn re(p: &str) -> Regex {
        Regex::new(p).expect("invariant: static format regex compiles")
    }

    static DATE_TIME: Lazy<Regex> = Lazy::new(|| {
        re(r"^\d{4}-\d{2}-\d{2}([Tt ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?([Zz]|[+-]\d{2}:?\d{2})?)?$")
    });
    static DATE: Lazy<Regex> = Lazy::new(|| re(r"^\d{4}-\d{2}-\d{2}$"));
    static UUID: Lazy<Regex> =
        Lazy::new(|| re(r"^(?i)[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}$"));
    static HOSTNAME: Lazy<Regex> = Lazy::new(|| {
        re(
            r"^([a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)(\.[a-zA-Z0-9]([-a-zA-Z0-9]{0,61}[a-zA-Z0-9])?)*\.?$",
        )
    });
    static MAC: Lazy<Regex> = Lazy::new(|| re(r"^([0-9A-Fa-f]{2}[:-]){5}[0-9A-Fa-f]{2}$"));
    static EMAIL: Lazy<Regex> = Lazy::new(|| re(r"^[^@\s]+@[^@\s]+$"));
    static HEX_COLOR: Lazy<Regex> = Lazy::new(|| re(r"^#([0-9A-Fa-f]{3}|[0-9A-Fa-f]{6})$"));
    static BASE64: Lazy<Regex> = Lazy::new(|| re(r"^[A-Za-z0-9+/]*={0,2}$"));
    static DURATION: Lazy<Regex> =
        Lazy::new(|| re(r"^[-+]?(\d+(\.\d*)?\s*(ns|us|µs|ms|s|m|h|d|w|[a-z]+)\s*)+$"));

    // `usize::is_multiple_of` needs a newer toolchain than the workspace MSRV.
    #[allow(clippy::manual_is_multiple_of)]
    pub(super) fn check(format: &str, s: &str) -> bool {
        match format {
            "datetime" => DATE_TIME.is_match(s) && s.len() > 10,
            "date" => DATE.is_match(s),
            "uuid" | "uuid3" | "uuid4" | "uuid5" => UUID.is_match(s),
            "hostname" => s.len() <= 255 && HOSTNAME.is_match(s),
            "ipv4" => s.parse::<std::net::Ipv4Addr>().is_ok(),
            "ipv6" => s.parse::<std::net::Ipv6Addr>().is_ok(),
            "cidr" => s.parse::<ipnet::IpNet>().is_ok(),
            "mac" => MAC.is_match(s),
            "email" => EMAIL.is_match(s),
            "hexcolor" => HEX_COLOR.is_match(s),
            "byte" => s.len() % 4 == 0 && BASE64.is_match(s),
            "duration" => DURATION.is_match(s),
            _ => true,
        }
    }
}

impl SchemaValidator {
    /// Compiles a version's `openAPIV3Schema`. Fails on malformed schemas (wrong JSON
    /// types, bad `pattern` regular expressions).
    pub fn new(schema: &Value) -> Result<Self, String> {
        Ok(SchemaValidator {
            root: compile(schema, "openAPIV3Schema")?,
        })
    }

    /// Every error in `obj`: schema keywords first, then list-type uniqueness, then
    /// `apiVersion`/`kind` of embedded resources.
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errs = self.validate_openapi(obj, None);
        validate_list_types(&self.root, &Path::default(), obj, &mut errs);
        validate_embedded(&self.root, &Path::default(), obj, &mut errs);
        errs
    }

    /// Only the kube-openapi part; `base` prefixes every field (used to validate
    /// schema defaults at `….default`).
    pub(super) fn validate_openapi(&self, obj: &Value, base: Option<&str>) -> Vec<FieldError> {
        validate_node(&self.root, "", obj)
            .into_iter()
            .map(|e| e.into_field_error(base))
            .collect()
    }

    /// Removes fields the schema does not specify and returns their paths
    /// (`spec.foo`, `spec.items[0].bar`): unknown `metadata` fields first, then the
    /// pruned fields sorted, as upstream reports them for `fieldValidation=Strict|Warn`.
    /// `apiVersion`, `kind` and `metadata` at the root are never pruned by the schema.
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        self.prune_as(obj, true)
    }

    pub(super) fn prune_as(&self, obj: &mut Value, resource_root: bool) -> Vec<String> {
        let mut meta_unknown = Vec::new();
        if resource_root {
            if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
                prune_object_meta(meta, "metadata", &mut meta_unknown);
            }
        }
        let mut pruned = Vec::new();
        prune(obj, Some(&self.root), resource_root, "", &mut pruned);
        pruned.sort();
        meta_unknown.extend(pruned);
        meta_unknown
    }

    /// Applies `default:` values as upstream does on read and on write: first drops
    /// `null`s of non-nullable fields that have no default, then fills missing (or
    /// non-nullable `null`) fields with deep copies of their defaults, top-down, so
    /// defaults nested inside a defaulted object apply too.
    pub fn apply_defaults(&self, obj: &mut Value) {
        prune_non_nullable_nulls(obj, Some(&self.root));
        apply_defaults(obj, &self.root);
    }

    /// Whether any node of the structural part carries a `default`.
    pub fn has_defaults(&self) -> bool {
        fn walk(n: &Node) -> bool {
            n.default.is_some()
                || n.properties.iter().any(|(_, p)| walk(p))
                || n.items().is_some_and(walk)
                || matches!(&n.additional, Some(Additional::Schema(a)) if walk(a))
        }
        walk(&self.root)
    }
}

fn join_name(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// kube-openapi `SchemaValidator.Validate` for one node: type, junctors, string,
/// format, number, slice, enum, object — all that apply to the data's kind.
fn validate_node(n: &Node, path: &str, data: &Value) -> Vec<OErr> {
    let mut out = Vec::new();
    let types = n.types.join(",");
    if data.is_null() {
        if !n.types.is_empty() && !n.nullable {
            out.push(OErr::type_invalid(path, &types, "null"));
        }
        validate_enum(n, path, data, &mut out);
        return out;
    }
    let kind = json_type(data);

    // Type (kube-openapi's typeValidator, including its handling of formats).
    if !n.types.is_empty() || n.format.is_some() {
        let has = |t: &str| n.types.iter().any(|x| x == t);
        let numeric_type = has("number") || has("integer");
        let float_int =
            kind == "number" && has("integer") && data.as_f64().is_some_and(is_json_integer);
        let int_float = kind == "integer" && has("number");
        let data_format = match kind {
            "integer" => "int64",
            "number" => "float64",
            _ => "",
        };
        let string_like = kind == "string" || kind == "array";
        let type_ok = has(kind) || float_int || int_float;
        match &n.format {
            Some(f) if !string_like && !type_ok && data_format != f => {
                out.push(OErr::type_invalid(path, f, data_format));
            }
            Some(_) if string_like && !numeric_type => {}
            _ if !type_ok => {
                out.push(OErr::type_invalid(path, &types, kind));
            }
            _ => {}
        }
    }

    validate_junctors(n, path, data, &mut out);

    // String.
    if let Value::String(s) = data {
        let len = s.chars().count() as u64;
        if let Some(max) = n.max_length.filter(|&m| len > m) {
            let unit = if max == 1 { "byte" } else { "bytes" };
            out.push(OErr::named(
                path,
                FieldErrorType::TooLong,
                None,
                format!("may not be more than {max} {unit}"),
            ));
        } else if let Some(min) = n.min_length.filter(|&m| len < m) {
            out.push(OErr::invalid(
                path,
                go_quote(s),
                format!("{path} in body should be at least {min} chars long"),
            ));
        } else if let Some((p, _)) = n.pattern.as_ref().filter(|(_, re)| !re.is_match(s)) {
            out.push(OErr::invalid(
                path,
                go_quote(s),
                format!("{path} in body should match '{p}'"),
            ));
        }
        if let Some(f) = &n.format {
            if !check_format(f, s) {
                out.push(OErr::type_invalid(path, f, s));
            }
        }
    }

    // Number.
    if let Value::Number(num) = data {
        validate_number(n, path, num, &mut out);
    }

    // Slice.
    if let Value::Array(items) = data {
        if let Some(item_schema) = n.items() {
            for (i, item) in items.iter().enumerate() {
                out.extend(validate_node(item_schema, &format!("{path}[{i}]"), item));
            }
        }
        let size = items.len() as u64;
        if let Some(min) = n.min_items.filter(|&m| size < m) {
            out.push(OErr::invalid(
                path,
                size.to_string(),
                format!("{path} in body should have at least {min} items"),
            ));
        }
        if let Some(max) = n.max_items.filter(|&m| size > m) {
            let unit = if max == 1 { "item" } else { "items" };
            out.push(OErr::named(
                path,
                FieldErrorType::TooMany,
                Some(size.to_string()),
                format!("must have at most {max} {unit}"),
            ));
        }
        if n.unique_items {
            let mut seen = HashSet::new();
            if !items.iter().all(|v| seen.insert(canonical_json(v))) {
                out.push(OErr::invalid(
                    path,
                    "\"\"".to_string(),
                    format!("{path} in body shouldn't contain duplicates"),
                ));
            }
        }
    }

    validate_enum(n, path, data, &mut out);

    // Object.
    if let Value::Object(map) = data {
        validate_object(n, path, map, &mut out);
    }
    out
}

fn validate_enum(n: &Node, path: &str, data: &Value, out: &mut Vec<OErr>) {
    let Some(values) = &n.enum_values else { return };
    if !data.is_null() && values.iter().any(|v| json_equal(v, data)) {
        return;
    }
    let detail = if values.is_empty() {
        String::new()
    } else {
        let quoted: Vec<String> = values
            .iter()
            .map(|v| match v {
                Value::String(s) => go_quote(s),
                other => go_quote(&canonical_json(other)),
            })
            .collect();
        format!("supported values: {}", quoted.join(", "))
    };
    out.push(OErr::named(
        path,
        FieldErrorType::NotSupported,
        Some(go_bad_value(data)),
        detail,
    ));
}

fn validate_number(n: &Node, path: &str, num: &serde_json::Number, out: &mut Vec<OErr>) {
    let int_data = num.as_i64();
    let f = num.as_f64().unwrap_or(0.0);
    let shown = go_bad_value(&Value::Number(num.clone()));
    if let Some(factor) = n.multiple_of {
        if factor < 0.0 {
            out.push(OErr::invalid(
                path,
                shown.clone(),
                format!(
                    "factor MultipleOf declared for {path} must be positive: {}",
                    go_float(factor)
                ),
            ));
        } else if factor > 0.0 {
            let ok = match int_data {
                Some(i) if factor as i64 != 0 => i % (factor as i64) == 0,
                _ => is_json_integer(if factor < 1.0 {
                    1.0 / factor * f
                } else {
                    f / factor
                }),
            };
            if !ok {
                let bound = bound_text(factor, int_data.is_some() && factor as i64 != 0);
                out.push(OErr::invalid(
                    path,
                    shown.clone(),
                    format!("{path} in body should be a multiple of {bound}"),
                ));
            }
        }
    }
    if let Some(min) = n.minimum {
        let fails = match int_data {
            Some(i) => i < min as i64 || (n.exclusive_minimum && i == min as i64),
            None => f < min || (n.exclusive_minimum && f == min),
        };
        if fails {
            let rel = if n.exclusive_minimum {
                "greater than"
            } else {
                "greater than or equal to"
            };
            let bound = bound_text(min, int_data.is_some());
            out.push(OErr::invalid(
                path,
                shown.clone(),
                format!("{path} in body should be {rel} {bound}"),
            ));
        }
    }
    if let Some(max) = n.maximum {
        let fails = match int_data {
            Some(i) => i > max as i64 || (n.exclusive_maximum && i == max as i64),
            None => f > max || (n.exclusive_maximum && f == max),
        };
        if fails {
            let rel = if n.exclusive_maximum {
                "less than"
            } else {
                "less than or equal to"
            };
            let bound = bound_text(max, int_data.is_some());
            out.push(OErr::invalid(
                path,
                shown,
                format!("{path} in body should be {rel} {bound}"),
            ));
        }
    }
}

/// allOf / anyOf / oneOf / not. Of a failed anyOf (or a oneOf nothing matched) the
/// branch with the fewest errors explains the failure, approximating kube-openapi's
/// "best failure" by match count.
fn validate_junctors(n: &Node, path: &str, data: &Value, out: &mut Vec<OErr>) {
    let quoted = go_quote(path);
    if !n.any_of.is_empty() {
        let results: Vec<Vec<OErr>> = n
            .any_of
            .iter()
            .map(|s| validate_node(s, path, data))
            .collect();
        if !results.iter().any(Vec::is_empty) {
            out.push(OErr::composite(format!(
                "{quoted} must validate at least one schema (anyOf)"
            )));
            if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                out.extend(best);
            }
        }
    }
    if !n.one_of.is_empty() {
        let results: Vec<Vec<OErr>> = n
            .one_of
            .iter()
            .map(|s| validate_node(s, path, data))
            .collect();
        let valid = results.iter().filter(|r| r.is_empty()).count();
        if valid != 1 {
            let more = if valid == 0 {
                "Found none valid".to_string()
            } else {
                format!("Found {valid} valid alternatives")
            };
            out.push(OErr::composite(format!(
                "{quoted} must validate one and only one schema (oneOf). {more}"
            )));
            if valid == 0 {
                if let Some(best) = results.into_iter().min_by_key(Vec::len) {
                    out.extend(best);
                }
            }
        }
    }
    if !n.all_of.is_empty() {
        let mut validated = 0;
        for s in &n.all_of {
            let r = validate_node(s, path, data);
            if r.is_empty() {
                validated += 1;
            }
            out.extend(r);
        }
        if validated != n.all_of.len() {
            let more = if validated == 0 {
                ". None validated"
            } else {
                ""
            };
            out.push(OErr::composite(format!(
                "{quoted} must validate all the schemas (allOf){more}"
            )));
        }
    }
    if let Some(not) = &n.not {
        if validate_node(not, path, data).is_empty() {
            out.push(OErr::composite(format!(
                "{quoted} must not validate the schema (not)"
            )));
        }
    }
}

fn validate_object(n: &Node, path: &str, map: &Map<String, Value>, out: &mut Vec<OErr>) {
    let count = map.len() as u64;
    if let Some(min) = n.min_properties.filter(|&m| count < m) {
        out.push(OErr::invalid(
            path,
            count.to_string(),
            format!("{path} in body should have at least {min} properties"),
        ));
        return;
    }
    if let Some(max) = n.max_properties.filter(|&m| count > m) {
        let unit = if max == 1 { "item" } else { "items" };
        out.push(OErr::named(
            path,
            FieldErrorType::TooMany,
            Some(count.to_string()),
            format!("must have at most {max} {unit}"),
        ));
        return;
    }
    match &n.additional {
        Some(Additional::Allows(false)) => {
            for k in map.keys().filter(|k| n.prop(k).is_none()) {
                out.push(OErr::invalid(
                    path,
                    go_quote(k),
                    format!("{path}.{k} in body is a forbidden property"),
                ));
            }
        }
        Some(Additional::Schema(ap)) => {
            for (k, v) in map.iter().filter(|(k, _)| n.prop(k).is_none()) {
                out.extend(validate_node(ap, &format!("{path}.{k}"), v));
            }
        }
        _ => {}
    }
    for (name, schema) in &n.properties {
        if let Some(v) = map.get(name) {
            out.extend(validate_node(schema, &join_name(path, name), v));
        }
    }
    for k in n.required.iter().filter(|k| !map.contains_key(k.as_str())) {
        out.push(OErr::named(
            &format!("{path}.{k}"),
            FieldErrorType::Required,
            None,
            String::new(),
        ));
    }
}

/// `x-kubernetes-list-type: set|map` uniqueness (upstream `listtype` package).
fn validate_list_types(n: &Node, p: &Path, data: &Value, errs: &mut Vec<FieldError>) {
    match data {
        Value::Object(map) => {
            for (k, v) in map {
                if let Some(prop) = n.prop(k) {
                    validate_list_types(prop, &p.child(k), v, errs);
                } else if let Some(Additional::Schema(ap)) = &n.additional {
                    validate_list_types(ap, &p.key(k), v, errs);
                }
            }
        }
        Value::Array(items) => {
            match n.list_type.as_deref() {
                Some("set") => {
                    for i in
                        duplicate_indices(items.iter().map(|v| Some(canonical_keyed(v))).collect())
                    {
                        errs.push(FieldError {
                            kind: FieldErrorType::Duplicate,
                            field: p.index(i).to_string(),
                            bad_value: Some(go_bad_value(&items[i])),
                            detail: String::new(),
                        });
                    }
                }
                Some("map") => validate_list_map(n, p, items, errs),
                _ => {}
            }
            if let Some(item_schema) = n.items() {
                for (i, v) in items.iter().enumerate() {
                    validate_list_types(item_schema, &p.index(i), v, errs);
                }
            }
        }
        _ => {}
    }
}

/// A set key: the type tag keeps `1` and `"1"` apart, as Go's map keys do.
fn canonical_keyed(v: &Value) -> String {
    format!("{}:{}", json_type(v), canonical_json(v))
}

/// Indices of the second occurrence of each repeated key, in order.
fn duplicate_indices(keys: Vec<Option<String>>) -> Vec<usize> {
    let mut counts: HashMap<Option<String>, usize> = HashMap::new();
    let mut out = Vec::new();
    for (i, k) in keys.into_iter().enumerate() {
        let c = counts.entry(k).or_insert(0);
        *c += 1;
        if *c == 2 {
            out.push(i);
        }
    }
    out
}

fn validate_list_map(n: &Node, p: &Path, items: &[Value], errs: &mut Vec<FieldError>) {
    for (i, x) in items.iter().enumerate() {
        if !x.is_null() && !x.is_object() {
            errs.push(FieldError {
                kind: FieldErrorType::Invalid,
                field: p.index(i).to_string(),
                bad_value: Some(go_bad_value(x)),
                detail: "must be an object for an array of list-type map".to_string(),
            });
            return;
        }
    }
    if items.len() <= 1 {
        return;
    }
    // The key of each entry: the map-key fields it sets (an unset key in the
    // single-key case is its own value, shown as an empty map).
    let key_maps: Vec<Map<String, Value>> = items
        .iter()
        .map(|x| {
            let mut key = Map::new();
            if let Some(obj) = x.as_object() {
                for k in &n.list_map_keys {
                    if let Some(v) = obj.get(k) {
                        key.insert(k.clone(), v.clone());
                    }
                }
            }
            key
        })
        .collect();
    let keys = key_maps
        .iter()
        .map(|m| {
            if n.list_map_keys.len() == 1 {
                m.values().next().map(canonical_keyed)
            } else {
                Some(canonical_keyed(&Value::Object(m.clone())))
            }
        })
        .collect();
    for i in duplicate_indices(keys) {
        errs.push(FieldError {
            kind: FieldErrorType::Duplicate,
            field: p.index(i).to_string(),
            bad_value: Some(go_sharp_v(&Value::Object(key_maps[i].clone()))),
            detail: String::new(),
        });
    }
}

/// `apiVersion` and `kind` of `x-kubernetes-embedded-resource` objects.
fn validate_embedded(n: &Node, p: &Path, data: &Value, errs: &mut Vec<FieldError>) {
    match data {
        Value::Object(map) => {
            if n.embedded {
                validate_embedded_type_meta(p, map, errs);
            }
            for (k, v) in map {
                if let Some(prop) = n.prop(k) {
                    validate_embedded(prop, &p.child(k), v, errs);
                } else if let Some(Additional::Schema(ap)) = &n.additional {
                    validate_embedded(ap, &p.key(k), v, errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = n.items() {
                for (i, v) in items.iter().enumerate() {
                    validate_embedded(item_schema, &p.index(i), v, errs);
                }
            }
        }
        _ => {}
    }
}

fn validate_embedded_type_meta(p: &Path, map: &Map<String, Value>, errs: &mut Vec<FieldError>) {
    for key in ["apiVersion", "kind"] {
        if !map.contains_key(key) {
            errs.push(FieldError::required(p.child(key), ""));
        }
    }
    for (k, v) in map {
        let field = p.child(k);
        let invalid = |detail: String| FieldError {
            kind: FieldErrorType::Invalid,
            field: field.to_string(),
            bad_value: Some(go_bad_value(v)),
            detail,
        };
        match (k.as_str(), v) {
            ("apiVersion" | "kind", Value::String(s)) if s.is_empty() => {
                errs.push(FieldError::required(&field, ""))
            }
            ("apiVersion", Value::String(s)) if s.matches('/').count() > 1 => {
                errs.push(invalid(format!("unexpected GroupVersion string: {s}")));
            }
            ("apiVersion", Value::String(_)) => {}
            ("kind", Value::String(s)) => {
                let msgs = super::validation::dns1035_label_errors(&s.to_lowercase());
                if !msgs.is_empty() {
                    errs.push(invalid(format!(
                        "may have mixed case, but should otherwise match: {}",
                        msgs.join(",")
                    )));
                }
            }
            ("apiVersion" | "kind", _) => errs.push(invalid("must be a string".to_string())),
            _ => {}
        }
    }
}

fn record(parent: &str, key: &str, out: &mut Vec<String>) {
    out.push(join_name(parent, key));
}

/// Drops keys that are not ObjectMeta fields.
fn prune_object_meta(meta: &mut Map<String, Value>, at: &str, out: &mut Vec<String>) {
    let unknown: Vec<String> = meta
        .keys()
        .filter(|k| !OBJECT_META_FIELDS.contains(&k.as_str()))
        .cloned()
        .collect();
    for k in &unknown {
        record(at, k, out);
    }
    meta.retain(|k, _| !unknown.contains(k));
}

/// Metadata of an embedded resource is kept by pruning but, like the root's, cut
/// down to ObjectMeta fields (upstream's objectmeta coercion).
fn coerce_embedded_meta(
    key: &str,
    v: &mut Value,
    embedded_root: bool,
    parent: &str,
    out: &mut Vec<String>,
) {
    if key == "metadata" && !embedded_root {
        if let Some(meta) = v.as_object_mut() {
            prune_object_meta(meta, &join_name(parent, "metadata"), out);
        }
    }
}

/// Upstream `pruning.prune`: `embedded_root` treats this object as a resource root
/// (TypeMeta/ObjectMeta kept).
fn prune(
    x: &mut Value,
    s: Option<&Node>,
    embedded_root: bool,
    parent: &str,
    out: &mut Vec<String>,
) {
    if let Some(n) = s.filter(|n| n.preserve_unknown) {
        skip_prune(x, n, embedded_root, parent, out);
        return;
    }
    match x {
        Value::Object(map) => {
            let Some(n) = s else {
                for k in map.keys() {
                    record(parent, k, out);
                }
                map.clear();
                return;
            };
            let embedded = n.embedded || embedded_root;
            let mut unknown = Vec::new();
            for (k, v) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    coerce_embedded_meta(k, v, embedded_root, parent, out);
                    continue;
                }
                let child = join_name(parent, k);
                if let Some(prop) = n.prop(k) {
                    prune(v, Some(prop), false, &child, out);
                } else if let Some(ap) = &n.additional {
                    let ap = match ap {
                        Additional::Schema(a) => Some(a.as_ref()),
                        Additional::Allows(_) => None,
                    };
                    prune(v, ap, false, &child, out);
                } else {
                    if !META_FIELDS.contains(&k.as_str()) || !parent.is_empty() {
                        out.push(child);
                    }
                    unknown.push(k.clone());
                }
            }
            map.retain(|k, _| !unknown.contains(k));
        }
        Value::Array(items) => {
            let item_schema = s.and_then(Node::items);
            for (i, v) in items.iter_mut().enumerate() {
                prune(v, item_schema, false, &format!("{parent}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn skip_prune(x: &mut Value, n: &Node, embedded_root: bool, parent: &str, out: &mut Vec<String>) {
    match x {
        Value::Object(map) => {
            let embedded = n.embedded || embedded_root;
            for (k, v) in map.iter_mut() {
                if embedded && META_FIELDS.contains(&k.as_str()) {
                    coerce_embedded_meta(k, v, embedded_root, parent, out);
                    continue;
                }
                let child = join_name(parent, k);
                if let Some(prop) = n.prop(k) {
                    prune(v, Some(prop), false, &child, out);
                } else if let Some(ap) = &n.additional {
                    let ap = match ap {
                        Additional::Schema(a) => Some(a.as_ref()),
                        Additional::Allows(_) => None,
                    };
                    prune(v, ap, false, &child, out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = n.items() {
                for (i, v) in items.iter_mut().enumerate() {
                    skip_prune(v, item_schema, false, &format!("{parent}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

fn prune_non_nullable_nulls(x: &mut Value, s: Option<&Node>) {
    match x {
        Value::Object(map) => {
            let mut drop = Vec::new();
            for (k, v) in map.iter_mut() {
                let sub = s.and_then(|n| n.field_schema(k));
                if v.is_null() && sub.is_some_and(|n| !n.nullable && n.default.is_none()) {
                    drop.push(k.clone());
                } else {
                    prune_non_nullable_nulls(v, sub);
                }
            }
            map.retain(|k, _| !drop.contains(k));
        }
        Value::Array(items) => {
            let item_schema = s.and_then(Node::items);
            for v in items.iter_mut() {
                prune_non_nullable_nulls(v, item_schema);
            }
        }
        _ => {}
    }
}

fn apply_defaults(x: &mut Value, n: &Node) {
    match x {
        Value::Object(map) => {
            for (k, prop) in &n.properties {
                if let Some(d) = &prop.default {
                    let missing = match map.get(k) {
                        None => true,
                        Some(Value::Null) => !prop.nullable,
                        Some(_) => false,
                    };
                    if missing {
                        map.insert(k.clone(), d.clone());
                    }
                }
            }
            for (k, v) in map.iter_mut() {
                if let Some(prop) = n.prop(k) {
                    apply_defaults(v, prop);
                } else if let Some(Additional::Schema(ap)) = &n.additional {
                    if v.is_null() && !ap.nullable {
                        if let Some(d) = &ap.default {
                            *v = d.clone();
                        }
                    }
                    apply_defaults(v, ap);
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = n.items() {
                for v in items.iter_mut() {
                    if v.is_null() && !item_schema.nullable {
                        if let Some(d) = &item_schema.default {
                            *v = d.clone();
                        }
                    }
                    apply_defaults(v, item_schema);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The CronTab schema from the Kubernetes docs, plus a few fields exercising
    /// the other keywords.
    fn crontab_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "required": ["cronSpec"],
                    "properties": {
                        "cronSpec": {"type": "string", "pattern": "^(\\d+|\\*)(/\\d+)?(\\s+(\\d+|\\*)(/\\d+)?){4}$"},
                        "image": {"type": "string", "maxLength": 20, "minLength": 2},
                        "replicas": {"type": "integer", "minimum": 1, "maximum": 10, "default": 1},
                        "mode": {"type": "string", "enum": ["fast", "slow"], "default": "slow"},
                        "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0.5, "multipleOf": 0.25},
                        "port": {"x-kubernetes-int-or-string": true},
                        "nick": {"type": "string", "nullable": true},
                        "schedule": {"type": "string", "format": "date-time"},
                        "tags": {
                            "type": "array", "maxItems": 3, "x-kubernetes-list-type": "set",
                            "items": {"type": "string"}
                        },
                        "ports": {
                            "type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                            "items": {
                                "type": "object", "required": ["name"],
                                "properties": {"name": {"type": "string"}, "port": {"type": "integer", "default": 80}}
                            }
                        },
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
                        "raw": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
                        "template": {
                            "type": "object", "x-kubernetes-embedded-resource": true,
                            "x-kubernetes-preserve-unknown-fields": true
                        },
                        "choice": {"anyOf": [{"type": "integer"}, {"type": "string"}], "x-kubernetes-int-or-string": true},
                        "settings": {
                            "type": "object", "default": {},
                            "properties": {"verbose": {"type": "boolean", "default": false}}
                        }
                    }
                },
                "status": {"type": "object", "properties": {"replicas": {"type": "integer"}}}
            }
        })
    }

    fn validator() -> SchemaValidator {
        SchemaValidator::new(&crontab_schema()).expect("schema compiles")
    }

    fn crontab(spec: Value) -> Value {
        json!({
            "apiVersion": "stable.example.com/v1",
            "kind": "CronTab",
            "metadata": {"name": "my-new-cron-object", "namespace": "default"},
            "spec": spec
        })
    }

    #[test]
    fn validation_errors_match_upstream_texts() {
        let base = json!({"cronSpec": "* * * * */5", "image": "my-awesome-cron-image"});
        let cases: Vec<(&str, Value, Vec<&str>)> = vec![
            ("valid", json!({"cronSpec": "* * * * */5", "image": "cron", "replicas": 3}), vec![]),
            (
                "wrong type",
                json!({"cronSpec": "* * * * */5", "replicas": "three"}),
                vec![r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#],
            ),
            (
                "below minimum",
                json!({"cronSpec": "* * * * */5", "replicas": 0}),
                vec!["spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1"],
            ),
            (
                "above maximum",
                json!({"cronSpec": "* * * * */5", "replicas": 11}),
                vec!["spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10"],
            ),
            (
                "pattern",
                json!({"cronSpec": "every minute"}),
                vec![
                    r#"spec.cronSpec: Invalid value: "every minute": spec.cronSpec in body should match '^(\d+|\*)(/\d+)?(\s+(\d+|\*)(/\d+)?){4}$'"#,
                ],
            ),
            ("required", json!({"image": "cron"}), vec!["spec.cronSpec: Required value"]),
            (
                "enum",
                json!({"cronSpec": "* * * * */5", "mode": "medium"}),
                vec![r#"spec.mode: Unsupported value: "medium": supported values: "fast", "slow""#],
            ),
            (
                "max length",
                base.clone(),
                vec!["spec.image: Too long: may not be more than 20 bytes"],
            ),
            (
                "min length",
                json!({"cronSpec": "* * * * */5", "image": "x"}),
                vec![r#"spec.image: Invalid value: "x": spec.image in body should be at least 2 chars long"#],
            ),
            (
                "exclusive minimum and multipleOf",
                json!({"cronSpec": "* * * * */5", "ratio": 0.3}),
                vec![
                    "spec.ratio: Invalid value: 0.3: spec.ratio in body should be a multiple of 0.25",
                    "spec.ratio: Invalid value: 0.3: spec.ratio in body should be greater than 0.5",
                ],
            ),
            (
                "max items and set duplicates",
                json!({"cronSpec": "* * * * */5", "tags": ["a", "b", "a", "c"]}),
                vec!["spec.tags: Too many: 4: must have at most 3 items", r#"spec.tags[2]: Duplicate value: "a""#],
            ),
            (
                "map list duplicates",
                json!({"cronSpec": "* * * * */5", "ports": [{"name": "http"}, {"name": "http", "port": 81}]}),
                vec![r#"spec.ports[1]: Duplicate value: map[string]interface {}{"name":"http"}"#],
            ),
            ("int or string accepts both", json!({"cronSpec": "* * * * */5", "port": "http", "choice": 5}), vec![]),
            (
                "int or string rejects bool",
                json!({"cronSpec": "* * * * */5", "port": true}),
                vec![r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#],
            ),
            ("nullable null", json!({"cronSpec": "* * * * */5", "nick": null}), vec![]),
            (
                "non-nullable null",
                json!({"cronSpec": "* * * * */5", "image": null}),
                vec![r#"spec.image: Invalid value: "null": spec.image in body must be of type string: "null""#],
            ),
            (
                "format",
                json!({"cronSpec": "* * * * */5", "schedule": "tomorrow"}),
                vec![r#"spec.schedule: Invalid value: "tomorrow": spec.schedule in body must be of type date-time: "tomorrow""#],
            ),
            ("format ok", json!({"cronSpec": "* * * * */5", "schedule": "2024-01-02T03:04:05Z"}), vec![]),
            (
                "format with non-string data",
                json!({"cronSpec": "* * * * */5", "schedule": 5}),
                vec![r#"spec.schedule: Invalid value: "int64": spec.schedule in body must be of type date-time: "int64""#],
            ),
            (
                "additionalProperties schema",
                json!({"cronSpec": "* * * * */5", "labels": {"a": 1}}),
                vec![r#"spec.labels.a: Invalid value: "integer": spec.labels.a in body must be of type string: "integer""#],
            ),
            (
                "anyOf",
                json!({"cronSpec": "* * * * */5", "choice": 1.5}),
                vec![
                    r#"spec.choice: Invalid value: "number": spec.choice in body must be of type integer,string: "number""#,
                    r#"<nil>: Invalid value: "": "spec.choice" must validate at least one schema (anyOf)"#,
                    r#"spec.choice: Invalid value: "number": spec.choice in body must be of type integer: "number""#,
                ],
            ),
            (
                "embedded resource needs apiVersion and kind",
                json!({"cronSpec": "* * * * */5", "template": {"metadata": {"name": "x"}}}),
                vec!["spec.template.apiVersion: Required value", "spec.template.kind: Required value"],
            ),
        ];
        let v = validator();
        for (name, spec, want) in cases {
            let got: Vec<String> = v
                .validate(&crontab(spec))
                .iter()
                .map(ToString::to_string)
                .collect();
            assert_eq!(got, want, "case {name}");
        }
    }

    #[test]
    fn validate_openapi_with_base_prefixes_fields() {
        let v = SchemaValidator::new(&json!({"type": "integer"})).expect("compiles");
        let got: Vec<String> = v
            .validate_openapi(&json!("x"), Some("spec.default"))
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            got,
            vec![
                r#"spec.default: Invalid value: "string":  in body must be of type integer: "string""#
            ]
        );
    }

    #[test]
    fn malformed_schemas_are_rejected() {
        for bad in [
            json!({"type": 5}),
            json!({"pattern": "("}),
            json!({"items": [{"type": "string"}]}),
        ] {
            assert!(SchemaValidator::new(&bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn prune_removes_unknown_fields_and_reports_paths() {
        let mut obj = crontab(json!({
            "cronSpec": "* * * * */5",
            "foo": 1,
            "raw": {"anything": {"goes": true}},
            "ports": [{"name": "http", "extra": 1}],
            "labels": {"a": "b"},
            "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "junk": 1}, "spec": {}}
        }));
        obj["metadata"]["bogus"] = json!(true);
        obj["top"] = json!("level");
        obj["status"] = json!({"replicas": 1, "phase": "x"});
        let pruned = validator().prune(&mut obj);
        assert_eq!(
            pruned,
            vec![
                "metadata.bogus",
                "spec.foo",
                "spec.ports[0].extra",
                "spec.template.metadata.junk",
                "status.phase",
                "top",
            ]
        );
        assert_eq!(obj["apiVersion"], "stable.example.com/v1");
        assert_eq!(
            obj["metadata"],
            json!({"name": "my-new-cron-object", "namespace": "default"})
        );
        assert_eq!(obj["spec"]["raw"], json!({"anything": {"goes": true}}));
        assert_eq!(obj["spec"]["ports"], json!([{"name": "http"}]));
        assert_eq!(obj["spec"]["template"]["spec"], json!({}));
        assert_eq!(obj["status"], json!({"replicas": 1}));
    }

    #[test]
    fn defaults_apply_top_down_and_drop_non_nullable_nulls() {
        let mut obj = crontab(json!({
            "cronSpec": "* * * * */5",
            "image": null,
            "nick": null,
            "replicas": null,
            "ports": [{"name": "http"}, {"name": "https", "port": 443}]
        }));
        validator().apply_defaults(&mut obj);
        assert_eq!(
            obj["spec"],
            json!({
                "cronSpec": "* * * * */5",
                "nick": null,
                "replicas": 1,
                "ports": [{"name": "http", "port": 80}, {"name": "https", "port": 443}],
                "mode": "slow",
                "settings": {"verbose": false}
            })
        );
        assert!(validator().has_defaults());
    }
}
