//! Table-driven decoding of one protobuf message into the JSON Kubernetes would show
//! for the same Go object.
//!
//! The generated `table.rs` describes every message as a list of [`Field`]s. Two of its
//! flags carry the Go encoding rules the protobuf schema cannot express:
//! - [`OMIT_ZERO`]: the Go field is a plain (non-pointer) scalar tagged `omitempty`.
//!   Go's protobuf marshaller always writes such fields, zero or not, while its JSON
//!   encoder drops zero ones; we drop them too, so `nodeName: ""` never appears. Pointer
//!   fields (`replicas`, `runAsUser`, …) have no flag: a zero on the wire was set on
//!   purpose and is kept.
//! - [`INLINE`]: the Go field is embedded with `json:",inline"` (a `Volume`'s
//!   `VolumeSource`, a `Probe`'s `ProbeHandler`): its fields join the parent object.
//!
//! Messages with a [`Special`] marker have a custom JSON form (times, quantities,
//! int-or-string, embedded raw JSON, string lists, JSON-schema unions).

use base64::Engine as _;
use serde_json::{Map, Value};

use super::table::MESSAGES;
use super::wire::{Reader, WireValue};
use super::ProtobufError;

/// Drop the field when its value is Go's zero value (`false`, `0`, `""`, empty bytes).
pub(crate) const OMIT_ZERO: u8 = 1;
/// Merge the field's (message) value into the enclosing object.
pub(crate) const INLINE: u8 = 2;

/// Element type of a field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ty {
    Bool,
    I32,
    I64,
    F64,
    Str,
    Bytes,
    /// A message, by index into `MESSAGES`.
    Msg(u16),
}

/// Cardinality: optional single value, repeated, or `map<string, value>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Card {
    One,
    Rep,
    Map(Ty),
}

/// Messages whose JSON form is not an object of their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Special {
    None,
    /// `meta/v1.Time`: RFC 3339, whole seconds.
    Time,
    /// `meta/v1.MicroTime`: RFC 3339 with microseconds.
    MicroTime,
    /// `meta/v1.Duration`: Go's `time.Duration` string. No served kind embeds one
    /// today; the generator marks it whenever one does.
    #[allow(dead_code)]
    Duration,
    /// `resource.Quantity`: its string.
    Quantity,
    /// `intstr.IntOrString`: a number or a string.
    IntOrString,
    /// `RawExtension`, `FieldsV1`, apiextensions `JSON`: the JSON held in field 1.
    RawJson,
    /// `ExtraValue`, `Verbs`: the repeated string in field 1, as an array.
    StringList,
    /// apiextensions `JSONSchemaPropsOrArray`: the array if any, else the schema.
    SchemaOrArray,
    /// apiextensions `JSONSchemaPropsOrBool`: the schema if any, else the bool.
    SchemaOrBool,
    /// apiextensions `JSONSchemaPropsOrStringArray`: the array if any, else the schema.
    SchemaOrStringArray,
}

#[derive(Debug)]
pub(crate) struct Field {
    pub(crate) tag: u32,
    /// JSON name; empty for inline fields.
    pub(crate) json: &'static str,
    /// Element type; for maps, the key type (the value type is in `card`).
    pub(crate) ty: Ty,
    pub(crate) card: Card,
    pub(crate) flags: u8,
}

/// Keeps the generated table to one short line per field.
pub(crate) const fn f(tag: u32, json: &'static str, ty: Ty, card: Card, flags: u8) -> Field {
    Field {
        tag,
        json,
        ty,
        card,
        flags,
    }
}

#[derive(Debug)]
pub(crate) struct Message {
    /// OpenAPI definition name, e.g. `io.k8s.api.core.v1.PodSpec`; read by the tests
    /// and in `Debug` output.
    #[allow(dead_code)]
    pub(crate) name: &'static str,
    pub(crate) special: Special,
    /// Sorted by tag.
    pub(crate) fields: &'static [Field],
}

impl Message {
    fn field(&self, tag: u32) -> Option<&'static Field> {
        self.fields
            .binary_search_by_key(&tag, |f| f.tag)
            .ok()
            .map(|i| &self.fields[i])
    }
}

/// Decodes `buf` as message `index` of the table.
pub(crate) fn decode_message(index: u16, buf: &[u8]) -> Result<Value, ProtobufError> {
    let msg = &MESSAGES[usize::from(index)];
    match msg.special {
        Special::None => Ok(Value::Object(object(msg, buf)?)),
        Special::Time => time(buf, false),
        Special::MicroTime => time(buf, true),
        Special::Duration => {
            let nanos = scalar(buf, 1)?.map(|v| v as i64).unwrap_or(0);
            Ok(Value::String(go_duration(nanos)))
        }
        Special::Quantity => {
            // Go's zero Quantity prints as "0".
            let s = string(buf, 1)?.unwrap_or_default();
            Ok(Value::String(if s.is_empty() {
                "0".to_string()
            } else {
                s
            }))
        }
        Special::IntOrString => {
            let obj = Reader::new(buf)
                .collect::<Result<Vec<_>, _>>()
                .map_err(ProtobufError::wire)?;
            let is_string = obj
                .iter()
                .any(|(tag, v)| *tag == 1 && *v == WireValue::Varint(1));
            if is_string {
                Ok(Value::String(string(buf, 3)?.unwrap_or_default()))
            } else {
                Ok(Value::from(scalar(buf, 2)?.map(|v| v as i32).unwrap_or(0)))
            }
        }
        Special::RawJson => raw_json(buf),
        Special::StringList => {
            let mut items = Vec::new();
            for item in Reader::new(buf) {
                let (tag, value) = item.map_err(ProtobufError::wire)?;
                if tag == 1 {
                    items.push(Value::String(text(expect_bytes(value, "string")?)));
                }
            }
            Ok(Value::Array(items))
        }
        Special::SchemaOrArray | Special::SchemaOrBool | Special::SchemaOrStringArray => {
            schema_union(msg, buf)
        }
    }
}

/// The JSON object of a regular message, following the field table.
fn object(msg: &Message, buf: &[u8]) -> Result<Map<String, Value>, ProtobufError> {
    let mut out = Map::new();
    for item in Reader::new(buf) {
        let (tag, value) = item.map_err(ProtobufError::wire)?;
        // Unknown fields (newer than the table) are skipped, as Go's decoder does.
        let Some(field) = msg.field(tag) else {
            continue;
        };
        match field.card {
            Card::One => {
                let v = element(field.ty, value).map_err(|e| e.within(field.json))?;
                if field.flags & INLINE != 0 {
                    if let Value::Object(inner) = v {
                        out.extend(inner);
                    }
                } else if field.flags & OMIT_ZERO != 0 && is_zero(&v) {
                    out.remove(field.json);
                } else {
                    out.insert(field.json.to_string(), v);
                }
            }
            Card::Rep => {
                let slot = out
                    .entry(field.json)
                    .or_insert_with(|| Value::Array(Vec::new()));
                // Another field (an inlined one) could have claimed the name; Go would
                // not produce such a type, so there is nothing sensible to keep.
                let Value::Array(items) = slot else { continue };
                let at = |i: usize| format!("{}[{i}]", field.json);
                match (field.ty, value) {
                    // Packed encoding of repeated numbers: one payload, many varints.
                    (Ty::Bool | Ty::I32 | Ty::I64, WireValue::Bytes(packed)) => {
                        let mut r = Reader::new(packed);
                        while !r.is_empty() {
                            let v = r
                                .varint()
                                .map_err(|e| ProtobufError::wire(e).within(&at(items.len())))?;
                            items.push(element(field.ty, WireValue::Varint(v))?);
                        }
                    }
                    (Ty::F64, WireValue::Bytes(packed)) => {
                        let mut r = Reader::new(packed);
                        while !r.is_empty() {
                            let v = r
                                .fixed64()
                                .map_err(|e| ProtobufError::wire(e).within(&at(items.len())))?;
                            items.push(element(field.ty, WireValue::Fixed64(v))?);
                        }
                    }
                    (ty, value) => {
                        let v = element(ty, value).map_err(|e| e.within(&at(items.len())))?;
                        items.push(v);
                    }
                }
            }
            Card::Map(value_ty) => {
                let entry = expect_bytes(value, "map entry").map_err(|e| e.within(field.json))?;
                let (k, v) = map_entry(entry, value_ty).map_err(|e| e.within(field.json))?;
                let map = out
                    .entry(field.json)
                    .or_insert_with(|| Value::Object(Map::new()));
                if let Value::Object(map) = map {
                    map.insert(k, v);
                }
            }
        }
    }
    Ok(out)
}

/// A `map<string, V>` entry: key in field 1, value in field 2 (both may be absent).
fn map_entry(buf: &[u8], value_ty: Ty) -> Result<(String, Value), ProtobufError> {
    let mut key = String::new();
    let mut value = None;
    for item in Reader::new(buf) {
        let (tag, v) = item.map_err(ProtobufError::wire)?;
        match tag {
            1 => key = text(expect_bytes(v, "string")?),
            2 => value = Some(v),
            _ => {}
        }
    }
    let value = match value {
        Some(v) => element(value_ty, v).map_err(|e| e.within(&format!("[{key:?}]")))?,
        None => zero(value_ty)?,
    };
    Ok((key, value))
}

/// The JSON of one element of type `ty`.
fn element(ty: Ty, value: WireValue<'_>) -> Result<Value, ProtobufError> {
    Ok(match (ty, value) {
        (Ty::Bool, WireValue::Varint(v)) => Value::Bool(v != 0),
        // int32 arrives sign-extended to 64 bits; the low half is the value.
        (Ty::I32, WireValue::Varint(v)) => Value::from(v as i32),
        (Ty::I64, WireValue::Varint(v)) => Value::from(v as i64),
        (Ty::F64, WireValue::Fixed64(v)) => Value::from(f64::from_bits(v)),
        (Ty::Str, WireValue::Bytes(b)) => Value::String(text(b)),
        (Ty::Bytes, WireValue::Bytes(b)) => {
            Value::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        (Ty::Msg(i), WireValue::Bytes(b)) => decode_message(i, b)?,
        (ty, value) => {
            return Err(ProtobufError::FieldType {
                path: String::new(),
                expected: ty_name(ty),
                got: value.name(),
            })
        }
    })
}

/// The value of an element absent from a map entry (Go's zero value).
fn zero(ty: Ty) -> Result<Value, ProtobufError> {
    Ok(match ty {
        Ty::Bool => Value::Bool(false),
        Ty::I32 | Ty::I64 => Value::from(0),
        Ty::F64 => Value::from(0.0),
        Ty::Str | Ty::Bytes => Value::String(String::new()),
        Ty::Msg(i) => decode_message(i, &[])?,
    })
}

fn ty_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Bool => "bool",
        Ty::I32 => "int32",
        Ty::I64 => "int64",
        Ty::F64 => "double",
        Ty::Str => "string",
        Ty::Bytes => "bytes",
        Ty::Msg(_) => "message",
    }
}

fn is_zero(v: &Value) -> bool {
    match v {
        Value::Bool(b) => !b,
        Value::Number(n) => n.as_f64() == Some(0.0),
        Value::String(s) => s.is_empty(),
        _ => false,
    }
}

/// Go does not validate UTF-8 in protobuf strings; its JSON encoder then writes U+FFFD
/// for invalid bytes, which is what a lossy conversion does too.
fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn expect_bytes<'a>(
    value: WireValue<'a>,
    expected: &'static str,
) -> Result<&'a [u8], ProtobufError> {
    match value {
        WireValue::Bytes(b) => Ok(b),
        other => Err(ProtobufError::FieldType {
            path: String::new(),
            expected,
            got: other.name(),
        }),
    }
}

/// The last varint (or fixed64) in field `tag`, if any.
fn scalar(buf: &[u8], tag: u32) -> Result<Option<u64>, ProtobufError> {
    let mut out = None;
    for item in Reader::new(buf) {
        match item.map_err(ProtobufError::wire)? {
            (t, WireValue::Varint(v) | WireValue::Fixed64(v)) if t == tag => out = Some(v),
            _ => {}
        }
    }
    Ok(out)
}

/// The last length-delimited value in field `tag`, as text, if any.
fn string(buf: &[u8], tag: u32) -> Result<Option<String>, ProtobufError> {
    Ok(bytes(buf, tag)?.map(text))
}

fn bytes(buf: &[u8], tag: u32) -> Result<Option<&[u8]>, ProtobufError> {
    let mut out = None;
    for item in Reader::new(buf) {
        match item.map_err(ProtobufError::wire)? {
            (t, WireValue::Bytes(b)) if t == tag => out = Some(b),
            _ => {}
        }
    }
    Ok(out)
}

/// `Time` keeps whole seconds only (upstream's decoder drops nanos so that protobuf and
/// JSON clients agree); `MicroTime` keeps microseconds. An empty message is Go's zero
/// time, which marshals as `null`.
fn time(buf: &[u8], micro: bool) -> Result<Value, ProtobufError> {
    // The Unix time of Go's zero time.Time, 0001-01-01T00:00:00Z.
    const GO_ZERO_TIME: i64 = -62_135_596_800;
    if buf.is_empty() {
        return Ok(Value::Null);
    }
    let seconds = scalar(buf, 1)?.unwrap_or(0) as i64;
    let nanos = if micro {
        scalar(buf, 2)?.unwrap_or(0) as i32
    } else {
        0
    };
    if seconds == GO_ZERO_TIME && nanos == 0 {
        return Ok(Value::Null);
    }
    let at = u32::try_from(nanos)
        .ok()
        .and_then(|n| chrono::DateTime::from_timestamp(seconds, n / 1000 * 1000))
        .filter(|t| (0..=9999).contains(&chrono::Datelike::year(t)))
        .ok_or(ProtobufError::TimeRange {
            path: String::new(),
            seconds,
        })?;
    let format = if micro {
        "%Y-%m-%dT%H:%M:%S%.6fZ"
    } else {
        "%Y-%m-%dT%H:%M:%SZ"
    };
    Ok(Value::String(at.format(format).to_string()))
}

/// Go's `time.Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
pub(crate) fn go_duration(nanos: i64) -> String {
    /// `v / 10^prec` with the fraction's trailing zeros (and a bare point) trimmed.
    fn decimal(v: u64, prec: u32) -> String {
        let unit = 10u64.pow(prec);
        let frac = format!("{:0width$}", v % unit, width = prec as usize);
        let frac = frac.trim_end_matches('0');
        if frac.is_empty() {
            format!("{}", v / unit)
        } else {
            format!("{}.{frac}", v / unit)
        }
    }
    let u = nanos.unsigned_abs();
    let body = match u {
        0 => return "0s".to_string(),
        1..=999 => format!("{u}ns"),
        1_000..=999_999 => format!("{}µs", decimal(u, 3)),
        1_000_000..=999_999_999 => format!("{}ms", decimal(u, 6)),
        _ => {
            let secs = u / 1_000_000_000;
            let (hours, minutes) = (secs / 3600, secs / 60 % 60);
            let seconds = format!("{}s", decimal(u % 60_000_000_000, 9));
            match (hours, secs / 60) {
                (0, 0) => seconds,
                (0, _) => format!("{minutes}m{seconds}"),
                _ => format!("{hours}h{minutes}m{seconds}"),
            }
        }
    };
    if nanos < 0 {
        format!("-{body}")
    } else {
        body
    }
}

/// Embedded JSON: parsed, or decoded again when it is itself a Kubernetes protobuf
/// envelope (a `RawExtension` may carry an object in the client's wire format).
fn raw_json(buf: &[u8]) -> Result<Value, ProtobufError> {
    match bytes(buf, 1)? {
        None | Some([]) => Ok(Value::Null),
        Some(raw) if raw.starts_with(super::MAGIC) => super::decode(raw),
        Some(raw) => serde_json::from_slice(raw).map_err(|e| ProtobufError::EmbeddedJson {
            path: String::new(),
            reason: e.to_string(),
        }),
    }
}

/// The apiextensions JSON-schema unions, after Go's `MarshalJSON` for each.
fn schema_union(msg: &Message, buf: &[u8]) -> Result<Value, ProtobufError> {
    let mut obj = object(msg, buf)?;
    let mut take = |tag: u32| msg.field(tag).and_then(|f| obj.remove(f.json));
    let non_empty = |v: &Option<Value>| matches!(v, Some(Value::Array(a)) if !a.is_empty());
    Ok(match msg.special {
        // JSONSchemaPropsOrArray: 1 schema, 2 jSONSchemas.
        // JSONSchemaPropsOrStringArray: 1 schema, 2 property.
        Special::SchemaOrArray | Special::SchemaOrStringArray => {
            let (schema, list) = (take(1), take(2));
            if non_empty(&list) {
                list.unwrap_or(Value::Null)
            } else {
                schema.unwrap_or(Value::Null)
            }
        }
        // JSONSchemaPropsOrBool: 1 allows, 2 schema.
        _ => {
            let (allows, schema) = (take(1), take(2));
            schema.unwrap_or(Value::Bool(allows == Some(Value::Bool(true))))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protobuf::table::KINDS;

    #[test]
    fn go_duration_strings() {
        let cases = [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (1_000_000, "1ms"),
            (1_234_000_000, "1.234s"),
            (60_000_000_000, "1m0s"),
            (3_723_000_000_000, "1h2m3s"),
            (3_600_000_000_000, "1h0m0s"),
            (90_500_000_000, "1m30.5s"),
            (-2_000_000_000, "-2s"),
        ];
        for (nanos, want) in cases {
            assert_eq!(go_duration(nanos), want, "{nanos}");
        }
    }

    #[test]
    fn zero_detection_follows_go() {
        for v in [
            Value::Bool(false),
            Value::from(0),
            Value::from(0.0),
            Value::from(""),
        ] {
            assert!(is_zero(&v), "{v}");
        }
        for v in [
            Value::Bool(true),
            Value::from(-1),
            Value::from("x"),
            Value::Null,
        ] {
            assert!(!is_zero(&v), "{v}");
        }
    }

    #[test]
    fn table_is_consistent() {
        for (i, m) in MESSAGES.iter().enumerate() {
            assert!(
                m.fields.windows(2).all(|w| w[0].tag < w[1].tag),
                "{}: tags not sorted",
                m.name
            );
            for f in m.fields {
                for ty in [
                    Some(f.ty),
                    if let Card::Map(t) = f.card {
                        Some(t)
                    } else {
                        None
                    },
                ]
                .into_iter()
                .flatten()
                {
                    if let Ty::Msg(j) = ty {
                        assert!(usize::from(j) < MESSAGES.len(), "{}.{}", m.name, f.json);
                    }
                }
                if f.flags & INLINE != 0 {
                    assert!(
                        matches!(f.ty, Ty::Msg(_)) && f.json.is_empty(),
                        "{}: bad inline field",
                        m.name
                    );
                } else {
                    assert!(
                        !f.json.is_empty(),
                        "{} #{i}: field {} has no JSON name",
                        m.name,
                        f.tag
                    );
                }
            }
        }
        assert!(
            KINDS
                .windows(2)
                .all(|w| (w[0].0, w[0].1) < (w[1].0, w[1].1)),
            "KINDS must be sorted"
        );
    }

    /// Spot checks of names the generator takes from Go struct tags or k8s-openapi,
    /// where a naive camelCase of the snake_case name would be wrong.
    #[test]
    fn json_names_follow_upstream() {
        let field = |ty: &str, tag: u32| {
            let m = MESSAGES
                .iter()
                .find(|m| m.name == ty)
                .unwrap_or_else(|| panic!("{ty} missing"));
            m.field(tag)
                .unwrap_or_else(|| panic!("{ty} #{tag} missing"))
                .json
        };
        let cases = [
            ("io.k8s.api.core.v1.PodStatus", 12, "podIPs"),
            ("io.k8s.api.core.v1.PodStatus", 5, "hostIP"),
            ("io.k8s.api.core.v1.PodSpec", 13, "hostIPC"),
            ("io.k8s.api.core.v1.PodSpec", 10, "nodeName"),
            ("io.k8s.api.core.v1.ServiceSpec", 18, "clusterIPs"),
            ("io.k8s.api.core.v1.ServiceSpec", 3, "clusterIP"),
            (
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps",
                3,
                "$ref",
            ),
            (
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps",
                2,
                "$schema",
            ),
            (
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.JSONSchemaProps",
                38,
                "x-kubernetes-preserve-unknown-fields",
            ),
            (
                "io.k8s.apiextensions-apiserver.pkg.apis.apiextensions.v1.CustomResourceValidation",
                1,
                "openAPIV3Schema",
            ),
        ];
        for (ty, tag, want) in cases {
            assert_eq!(field(ty, tag), want, "{ty} #{tag}");
        }
    }
}
