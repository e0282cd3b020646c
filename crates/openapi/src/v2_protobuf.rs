//! The Swagger 2.0 document encoded as gnostic's `openapi.v2.Document` protobuf
//! message, served at `/openapi/v2` for
//! `Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf`.
//!
//! kubectl up to 1.28 fetches only this form for client-side apply (it finds a kind's
//! model through `x-kubernetes-group-version-kind` and reads the strategic-merge
//! markers from schema vendor extensions), and falls back to a long-gone endpoint
//! when the server refuses it.
//!
//! The encoding follows gnostic's compiler: every JSON object becomes its message,
//! maps become repeated `Named*` pairs in document order, `x-*` keys become
//! `NamedAny` vendor extensions whose `Any.yaml` holds the value rendered as YAML
//! (we use JSON flow style with spaced separators, which YAML parsers read as is),
//! and `default`/`example`/`enum` values are `Any`s the same way. Field numbers are
//! those of `openapiv2/OpenAPIv2.proto` (github.com/google/gnostic-models). Scalars
//! equal to their proto3 default are omitted; message fields and oneof members are
//! written whenever the JSON key is present, so presence survives the round trip.

use serde_json::{Map, Value};

/// Encodes a Swagger 2.0 JSON document (as built by [`crate::v2_document`]) as an
/// `openapi.v2.Document` message. Keys the message has no field for (`oneOf` in a
/// schema, say) are dropped, as gnostic drops them.
pub fn v2_protobuf(doc: &Value) -> Vec<u8> {
    let mut m = Message::default();
    let doc = object(doc);
    m.string(1, doc, "swagger");
    m.object(2, doc, "info", info);
    m.string(3, doc, "host");
    m.string(4, doc, "basePath");
    m.strings(5, doc, "schemes");
    m.strings(6, doc, "consumes");
    m.strings(7, doc, "produces");
    m.object(8, doc, "paths", paths);
    m.object(9, doc, "definitions", |m, defs| {
        m.named(1, defs, schema);
    });
    m.object(10, doc, "parameters", |m, params| {
        m.named(1, params, parameter)
    });
    m.object(11, doc, "responses", |m, rs| m.named(1, rs, response));
    m.each(12, doc, "security", security_requirement);
    m.object(13, doc, "securityDefinitions", |m, defs| {
        m.named(1, defs, security_definition);
    });
    m.each(14, doc, "tags", tag);
    m.object(15, doc, "externalDocs", external_docs);
    m.extensions(16, doc);
    m.buf
}

type Object = Map<String, Value>;

/// A JSON value's object, or an empty one (a document of the wrong shape encodes to
/// a message with the corresponding fields missing rather than failing).
fn object(v: &Value) -> &Object {
    static EMPTY: std::sync::OnceLock<Object> = std::sync::OnceLock::new();
    v.as_object()
        .unwrap_or_else(|| EMPTY.get_or_init(Object::new))
}

/// Protobuf wire types used here.
const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// One message being written: fields are appended in field-number order by the
/// callers (gnostic does the same; decoders accept any order).
#[derive(Default)]
struct Message {
    buf: Vec<u8>,
}

impl Message {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.buf.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.buf.push(v as u8);
    }

    fn key(&mut self, field: u32, wire: u32) {
        self.varint(u64::from(field << 3 | wire));
    }

    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, LEN);
        self.varint(b.len() as u64);
        self.buf.extend_from_slice(b);
    }

    /// A string field; empty strings are the proto3 default and are omitted.
    fn str(&mut self, field: u32, s: &str) {
        if !s.is_empty() {
            self.bytes(field, s.as_bytes());
        }
    }

    /// An embedded message, always written (its presence is meaningful).
    fn message(&mut self, field: u32, build: impl FnOnce(&mut Message)) {
        let mut sub = Message::default();
        build(&mut sub);
        self.bytes(field, &sub.buf);
    }

    fn string(&mut self, field: u32, o: &Object, key: &str) {
        if let Some(s) = o.get(key).and_then(Value::as_str) {
            self.str(field, s);
        }
    }

    /// A repeated string; a lone string counts as a one-element list.
    fn strings(&mut self, field: u32, o: &Object, key: &str) {
        match o.get(key) {
            Some(Value::String(s)) => self.bytes(field, s.as_bytes()),
            Some(Value::Array(items)) => {
                for s in items.iter().filter_map(Value::as_str) {
                    self.bytes(field, s.as_bytes());
                }
            }
            _ => {}
        }
    }

    fn bool(&mut self, field: u32, o: &Object, key: &str) {
        if o.get(key).and_then(Value::as_bool) == Some(true) {
            self.key(field, VARINT);
            self.varint(1);
        }
    }

    fn double(&mut self, field: u32, o: &Object, key: &str) {
        if let Some(x) = o.get(key).and_then(Value::as_f64).filter(|x| *x != 0.0) {
            self.key(field, FIXED64);
            self.buf.extend_from_slice(&x.to_le_bytes());
        }
    }

    fn int64(&mut self, field: u32, o: &Object, key: &str) {
        if let Some(x) = o.get(key).and_then(Value::as_i64).filter(|x| *x != 0) {
            self.key(field, VARINT);
            // Negative int64s are ten-byte two's-complement varints.
            self.varint(x as u64);
        }
    }

    /// An embedded message built from the object at `key`, if there is one.
    fn object(
        &mut self,
        field: u32,
        o: &Object,
        key: &str,
        build: impl FnOnce(&mut Message, &Object),
    ) {
        if let Some(Value::Object(sub)) = o.get(key) {
            self.message(field, |m| build(m, sub));
        }
    }

    /// A repeated message, one per element of the array at `key`.
    fn each(&mut self, field: u32, o: &Object, key: &str, build: impl Fn(&mut Message, &Object)) {
        if let Some(Value::Array(items)) = o.get(key) {
            for item in items {
                self.message(field, |m| build(m, object(item)));
            }
        }
    }

    /// `Named*` pairs (`name = 1`, `value = 2`) for every entry of `map`.
    fn named(&mut self, field: u32, map: &Object, value: impl Fn(&mut Message, &Object)) {
        for (name, v) in map {
            self.message(field, |m| {
                m.str(1, name);
                m.message(2, |m| value(m, object(v)));
            });
        }
    }

    /// An `Any` message carrying the value as YAML.
    fn any(&mut self, field: u32, v: &Value) {
        self.message(field, |m| m.str(2, &yaml(v)));
    }

    fn any_at(&mut self, field: u32, o: &Object, key: &str) {
        if let Some(v) = o.get(key) {
            self.any(field, v);
        }
    }

    fn anys(&mut self, field: u32, o: &Object, key: &str) {
        if let Some(Value::Array(items)) = o.get(key) {
            for v in items {
                self.any(field, v);
            }
        }
    }

    /// Every `x-*` key of `o` as a `NamedAny`.
    fn extensions(&mut self, field: u32, o: &Object) {
        for (name, v) in o.iter().filter(|(k, _)| k.starts_with("x-")) {
            self.message(field, |m| {
                m.str(1, name);
                m.any(2, v);
            });
        }
    }
}

/// The YAML gnostic would put in `Any.yaml`: JSON in flow style, with a space after
/// every `:` and `,` so that no YAML 1.1 parser misreads `"a":"b"`.
fn yaml(v: &Value) -> String {
    let mut out = String::new();
    write_yaml(v, &mut out);
    out
}

fn write_yaml(v: &Value, out: &mut String) {
    match v {
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_yaml(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, item)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(&Value::String(k.clone()).to_string());
                out.push_str(": ");
                write_yaml(item, out);
            }
            out.push('}');
        }
        // JSON scalars (and JSON string escapes) are valid YAML scalars.
        scalar => out.push_str(&scalar.to_string()),
    }
}

fn info(m: &mut Message, o: &Object) {
    m.string(1, o, "title");
    m.string(2, o, "version");
    m.string(3, o, "description");
    m.string(4, o, "termsOfService");
    m.object(5, o, "contact", |m, c| {
        m.string(1, c, "name");
        m.string(2, c, "url");
        m.string(3, c, "email");
        m.extensions(4, c);
    });
    m.object(6, o, "license", |m, l| {
        m.string(1, l, "name");
        m.string(2, l, "url");
        m.extensions(3, l);
    });
    m.extensions(7, o);
}

fn external_docs(m: &mut Message, o: &Object) {
    m.string(1, o, "description");
    m.string(2, o, "url");
    m.extensions(3, o);
}

fn tag(m: &mut Message, o: &Object) {
    m.string(1, o, "name");
    m.string(2, o, "description");
    m.object(3, o, "externalDocs", external_docs);
    m.extensions(4, o);
}

fn paths(m: &mut Message, o: &Object) {
    m.extensions(1, o);
    for (path, item) in o.iter().filter(|(k, _)| !k.starts_with("x-")) {
        m.message(2, |m| {
            m.str(1, path);
            m.message(2, |m| path_item(m, object(item)));
        });
    }
}

fn path_item(m: &mut Message, o: &Object) {
    m.string(1, o, "$ref");
    for (field, method) in [
        (2, "get"),
        (3, "put"),
        (4, "post"),
        (5, "delete"),
        (6, "options"),
        (7, "head"),
        (8, "patch"),
    ] {
        m.object(field, o, method, operation);
    }
    m.each(9, o, "parameters", parameters_item);
    m.extensions(10, o);
}

fn operation(m: &mut Message, o: &Object) {
    m.strings(1, o, "tags");
    m.string(2, o, "summary");
    m.string(3, o, "description");
    m.object(4, o, "externalDocs", external_docs);
    m.string(5, o, "operationId");
    m.strings(6, o, "produces");
    m.strings(7, o, "consumes");
    m.each(8, o, "parameters", parameters_item);
    m.object(9, o, "responses", |m, rs| {
        for (code, r) in rs.iter().filter(|(k, _)| !k.starts_with("x-")) {
            m.message(1, |m| {
                m.str(1, code);
                m.message(2, |m| response_value(m, object(r)));
            });
        }
        m.extensions(2, rs);
    });
    m.strings(10, o, "schemes");
    m.bool(11, o, "deprecated");
    m.each(12, o, "security", security_requirement);
    m.extensions(13, o);
}

/// `JsonReference { _ref = 1; description = 2; }`.
fn json_reference(m: &mut Message, o: &Object) {
    m.string(1, o, "$ref");
    m.string(2, o, "description");
}

/// `ParametersItem`: oneof `parameter = 1` | `json_reference = 2`.
fn parameters_item(m: &mut Message, o: &Object) {
    if o.contains_key("$ref") {
        m.message(2, |m| json_reference(m, o));
    } else {
        m.message(1, |m| parameter(m, o));
    }
}

/// `Parameter`: oneof `body_parameter = 1` | `non_body_parameter = 2`, the latter a
/// oneof over the four locations.
fn parameter(m: &mut Message, o: &Object) {
    let location = o.get("in").and_then(Value::as_str).unwrap_or("");
    if location == "body" {
        m.message(1, |m| {
            m.string(1, o, "description");
            m.string(2, o, "name");
            m.string(3, o, "in");
            m.bool(4, o, "required");
            m.object(5, o, "schema", schema);
            m.extensions(6, o);
        });
        return;
    }
    // (oneof member, whether the sub-schema has `allow_empty_value = 5`)
    let (member, allows_empty) = match location {
        "header" => (1, false),
        "formData" => (2, true),
        "path" => (4, false),
        _ => (3, true),
    };
    m.message(2, |m| {
        m.message(member, |m| {
            m.bool(1, o, "required");
            m.string(2, o, "in");
            m.string(3, o, "description");
            m.string(4, o, "name");
            let first = if allows_empty {
                m.bool(5, o, "allowEmptyValue");
                6
            } else {
                5
            };
            primitive_fields(m, o, first);
            m.extensions(first + 17, o);
        });
    });
}

/// The run of validation fields shared by the non-body parameters,
/// `PrimitivesItems` and `Header`, numbered consecutively from `first` (`type`)
/// to `first + 16` (`multiple_of`).
fn primitive_fields(m: &mut Message, o: &Object, first: u32) {
    m.string(first, o, "type");
    m.string(first + 1, o, "format");
    m.object(first + 2, o, "items", primitives_items);
    m.string(first + 3, o, "collectionFormat");
    m.any_at(first + 4, o, "default");
    m.double(first + 5, o, "maximum");
    m.bool(first + 6, o, "exclusiveMaximum");
    m.double(first + 7, o, "minimum");
    m.bool(first + 8, o, "exclusiveMinimum");
    m.int64(first + 9, o, "maxLength");
    m.int64(first + 10, o, "minLength");
    m.string(first + 11, o, "pattern");
    m.int64(first + 12, o, "maxItems");
    m.int64(first + 13, o, "minItems");
    m.bool(first + 14, o, "uniqueItems");
    m.anys(first + 15, o, "enum");
    m.double(first + 16, o, "multipleOf");
}

fn primitives_items(m: &mut Message, o: &Object) {
    primitive_fields(m, o, 1);
    m.extensions(18, o);
}

fn header(m: &mut Message, o: &Object) {
    primitive_fields(m, o, 1);
    m.string(18, o, "description");
    m.extensions(19, o);
}

/// `ResponseValue`: oneof `response = 1` | `json_reference = 2`.
fn response_value(m: &mut Message, o: &Object) {
    if o.contains_key("$ref") {
        m.message(2, |m| json_reference(m, o));
    } else {
        m.message(1, |m| response(m, o));
    }
}

fn response(m: &mut Message, o: &Object) {
    m.string(1, o, "description");
    // `SchemaItem`: oneof `schema = 1` | `file_schema = 2`.
    m.object(2, o, "schema", |m, s| {
        if s.get("type").and_then(Value::as_str) == Some("file") {
            m.message(2, |m| file_schema(m, s));
        } else {
            m.message(1, |m| schema(m, s));
        }
    });
    m.object(3, o, "headers", |m, hs| m.named(1, hs, header));
    m.object(4, o, "examples", |m, ex| {
        for (name, v) in ex {
            m.message(1, |m| {
                m.str(1, name);
                m.any(2, v);
            });
        }
    });
    m.extensions(5, o);
}

fn file_schema(m: &mut Message, o: &Object) {
    m.string(1, o, "format");
    m.string(2, o, "title");
    m.string(3, o, "description");
    m.any_at(4, o, "default");
    m.strings(5, o, "required");
    m.string(6, o, "type");
    m.bool(7, o, "readOnly");
    m.object(8, o, "externalDocs", external_docs);
    m.any_at(9, o, "example");
    m.extensions(10, o);
}

/// A JSON Schema as gnostic's `Schema` message.
fn schema(m: &mut Message, o: &Object) {
    m.string(1, o, "$ref");
    m.string(2, o, "format");
    m.string(3, o, "title");
    m.string(4, o, "description");
    m.any_at(5, o, "default");
    m.double(6, o, "multipleOf");
    m.double(7, o, "maximum");
    m.bool(8, o, "exclusiveMaximum");
    m.double(9, o, "minimum");
    m.bool(10, o, "exclusiveMinimum");
    m.int64(11, o, "maxLength");
    m.int64(12, o, "minLength");
    m.string(13, o, "pattern");
    m.int64(14, o, "maxItems");
    m.int64(15, o, "minItems");
    m.bool(16, o, "uniqueItems");
    m.int64(17, o, "maxProperties");
    m.int64(18, o, "minProperties");
    m.strings(19, o, "required");
    m.anys(20, o, "enum");
    // `AdditionalPropertiesItem`: oneof `schema = 1` | `boolean = 2`; a oneof
    // member is written even when it holds the default `false`.
    match o.get("additionalProperties") {
        Some(Value::Object(sub)) => m.message(21, |m| m.message(1, |m| schema(m, sub))),
        Some(Value::Bool(b)) => m.message(21, |m| {
            m.key(2, VARINT);
            m.varint(u64::from(*b));
        }),
        _ => {}
    }
    if o.contains_key("type") {
        m.message(22, |m| m.strings(1, o, "type"));
    }
    // `ItemsItem { repeated Schema schema = 1; }`: one schema, or a tuple of them.
    match o.get("items") {
        Some(Value::Object(sub)) => m.message(23, |m| m.message(1, |m| schema(m, sub))),
        Some(Value::Array(subs)) => m.message(23, |m| {
            for sub in subs {
                m.message(1, |m| schema(m, object(sub)));
            }
        }),
        _ => {}
    }
    m.each(24, o, "allOf", schema);
    m.object(25, o, "properties", |m, props| m.named(1, props, schema));
    m.string(26, o, "discriminator");
    m.bool(27, o, "readOnly");
    m.object(28, o, "xml", |m, x| {
        m.string(1, x, "name");
        m.string(2, x, "namespace");
        m.string(3, x, "prefix");
        m.bool(4, x, "attribute");
        m.bool(5, x, "wrapped");
        m.extensions(6, x);
    });
    m.object(29, o, "externalDocs", external_docs);
    m.any_at(30, o, "example");
    m.extensions(31, o);
}

/// `SecurityRequirement { repeated NamedStringArray additional_properties = 1; }`
/// where `StringArray { repeated string value = 1; }`.
fn security_requirement(m: &mut Message, o: &Object) {
    for (name, scopes) in o {
        m.message(1, |m| {
            m.str(1, name);
            m.message(2, |m| {
                for s in scopes
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                {
                    m.bytes(1, s.as_bytes());
                }
            });
        });
    }
}

/// `SecurityDefinitionsItem`: a oneof chosen by `type` (and `flow` for OAuth 2).
fn security_definition(m: &mut Message, o: &Object) {
    let scopes = |m: &mut Message| {
        m.object(3, o, "scopes", |m, s| {
            for (name, v) in s {
                m.message(1, |m| {
                    m.str(1, name);
                    m.str(2, v.as_str().unwrap_or(""));
                });
            }
        });
    };
    let ty = o.get("type").and_then(Value::as_str).unwrap_or("");
    let flow = o.get("flow").and_then(Value::as_str).unwrap_or("");
    match (ty, flow) {
        ("basic", _) => m.message(1, |m| {
            m.string(1, o, "type");
            m.string(2, o, "description");
            m.extensions(3, o);
        }),
        ("oauth2", "implicit") => m.message(3, |m| {
            m.string(1, o, "type");
            m.string(2, o, "flow");
            scopes(m);
            m.string(4, o, "authorizationUrl");
            m.string(5, o, "description");
            m.extensions(6, o);
        }),
        ("oauth2", "password") | ("oauth2", "application") => {
            m.message(if flow == "password" { 4 } else { 5 }, |m| {
                m.string(1, o, "type");
                m.string(2, o, "flow");
                scopes(m);
                m.string(4, o, "tokenUrl");
                m.string(5, o, "description");
                m.extensions(6, o);
            })
        }
        ("oauth2", _) => m.message(6, |m| {
            m.string(1, o, "type");
            m.string(2, o, "flow");
            scopes(m);
            m.string(4, o, "authorizationUrl");
            m.string(5, o, "tokenUrl");
            m.string(6, o, "description");
            m.extensions(7, o);
        }),
        _ => m.message(2, |m| {
            m.string(1, o, "type");
            m.string(2, o, "name");
            m.string(3, o, "in");
            m.string(4, o, "description");
            m.extensions(5, o);
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use apis::builtin_resources;
    use serde_json::json;

    /// A decoded field: varints and fixed64s as numbers, everything
    /// length-delimited as bytes (decoded further on demand).
    #[derive(Debug, Clone, PartialEq)]
    enum Field {
        Varint(u64),
        Fixed64(u64),
        Bytes(Vec<u8>),
    }

    fn read_varint(buf: &[u8], pos: &mut usize) -> u64 {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = buf[*pos];
            *pos += 1;
            v |= u64::from(b & 0x7f) << shift;
            if b < 0x80 {
                return v;
            }
        }
        panic!("varint too long")
    }

    /// Decodes one message level into (field number, value) pairs, in order.
    fn decode(buf: &[u8]) -> Vec<(u32, Field)> {
        let mut pos = 0;
        let mut out = Vec::new();
        while pos < buf.len() {
            let key = read_varint(buf, &mut pos);
            let field = (key >> 3) as u32;
            let value = match (key & 7) as u32 {
                VARINT => Field::Varint(read_varint(buf, &mut pos)),
                FIXED64 => {
                    let v = u64::from_le_bytes(buf[pos..pos + 8].try_into().expect("eight bytes"));
                    pos += 8;
                    Field::Fixed64(v)
                }
                LEN => {
                    let len = read_varint(buf, &mut pos) as usize;
                    let v = buf[pos..pos + len].to_vec();
                    pos += len;
                    Field::Bytes(v)
                }
                w => panic!("unexpected wire type {w}"),
            };
            out.push((field, value));
        }
        assert_eq!(pos, buf.len(), "trailing bytes");
        out
    }

    fn all(msg: &[u8], field: u32) -> Vec<Vec<u8>> {
        decode(msg)
            .into_iter()
            .filter(|(f, _)| *f == field)
            .map(|(_, v)| match v {
                Field::Bytes(b) => b,
                other => panic!("field {field} is not length-delimited: {other:?}"),
            })
            .collect()
    }

    fn one(msg: &[u8], field: u32) -> Vec<u8> {
        let mut v = all(msg, field);
        assert_eq!(v.len(), 1, "field {field} occurs {} times", v.len());
        v.remove(0)
    }

    fn text(msg: &[u8], field: u32) -> String {
        String::from_utf8(one(msg, field)).expect("UTF-8 string field")
    }

    /// The value of the `Named*` entry called `name` in repeated field `field`.
    fn named(msg: &[u8], field: u32, name: &str) -> Vec<u8> {
        all(msg, field)
            .into_iter()
            .find(|pair| text(pair, 1) == name)
            .map(|pair| one(&pair, 2))
            .unwrap_or_else(|| panic!("no entry {name}"))
    }

    /// A schema's vendor extension, parsed back from its `Any.yaml` (JSON here).
    fn extension(schema: &[u8], name: &str) -> Value {
        let any = named(schema, 31, name);
        serde_json::from_str(&text(&any, 2)).expect("extension YAML is JSON")
    }

    #[test]
    fn varints_are_little_endian_base_128() {
        for (v, want) in [
            (0u64, vec![0x00]),
            (1, vec![0x01]),
            (127, vec![0x7f]),
            (128, vec![0x80, 0x01]),
            (300, vec![0xac, 0x02]),
            (
                u64::MAX,
                vec![0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
            ),
        ] {
            let mut m = Message::default();
            m.varint(v);
            assert_eq!(m.buf, want, "varint {v}");
        }
    }

    #[test]
    fn small_document_encodes_to_the_expected_bytes() {
        let doc = json!({
            "swagger": "2.0",
            "info": {"title": "K", "version": "v"},
            "definitions": {"A": {"type": "string", "x-e": "m"}},
        });
        let want: Vec<u8> = [
            &[0x0a, 3][..],
            b"2.0",
            // info: title = 1, version = 2
            &[0x12, 6, 0x0a, 1, b'K', 0x12, 1, b'v'],
            // definitions { NamedSchema { name "A", Schema { type { "string" }, ext } } }
            &[0x4a, 33, 0x0a, 31, 0x0a, 1, b'A', 0x12, 26],
            &[0xb2, 0x01, 8, 0x0a, 6],
            b"string",
            // vendor_extension = 31: NamedAny { "x-e", Any { yaml "\"m\"" } }
            &[0xfa, 0x01, 12, 0x0a, 3],
            b"x-e",
            &[0x12, 5, 0x12, 3],
            b"\"m\"",
        ]
        .concat();
        assert_eq!(v2_protobuf(&doc), want);
    }

    #[test]
    fn scalars_and_oneofs_follow_proto3_presence() {
        let s = json!({
            "additionalProperties": false,
            "maximum": 2.5,
            "minLength": -1,
            "uniqueItems": false,
            "items": [{"type": "string"}, {"type": "integer"}],
            "enum": ["a", 1],
        });
        let mut m = Message::default();
        schema(&mut m, object(&s));
        let fields = decode(&m.buf);
        assert!(!fields.iter().any(|(f, _)| *f == 16), "false bool omitted");
        assert!(fields.contains(&(7, Field::Fixed64(2.5f64.to_bits()))));
        assert!(fields.contains(&(12, Field::Varint(u64::MAX))));
        assert_eq!(decode(&one(&m.buf, 21)), vec![(2, Field::Varint(0))]);
        assert_eq!(all(&one(&m.buf, 23), 1).len(), 2);
        let enums: Vec<String> = all(&m.buf, 20).iter().map(|a| text(a, 2)).collect();
        assert_eq!(enums, ["\"a\"", "1"]);
    }

    #[test]
    fn yaml_is_spaced_flow_style_json() {
        let v = json!([{"group": "", "kind": "Pod", "version": "v1"}, "a\"b", null, 1.5]);
        let y = yaml(&v);
        assert_eq!(
            y,
            r#"[{"group": "", "kind": "Pod", "version": "v1"}, "a\"b", null, 1.5]"#
        );
        assert_eq!(serde_json::from_str::<Value>(&y).expect("JSON"), v);
    }

    #[test]
    fn builtin_document_decodes_with_definitions_and_extensions() {
        let doc = crate::v2_document(&builtin_resources(), &[]);
        let bytes = v2_protobuf(&doc);
        assert_eq!(text(&bytes, 1), "2.0");
        let info = one(&bytes, 2);
        assert_eq!(text(&info, 1), "Kubernetes");
        assert_eq!(text(&info, 2), "unversioned");

        let definitions = one(&bytes, 9);
        assert_eq!(
            all(&definitions, 1).len(),
            doc["definitions"].as_object().expect("definitions").len()
        );
        let deployment = named(&definitions, 1, "io.k8s.api.apps.v1.Deployment");
        assert_eq!(
            extension(&deployment, "x-kubernetes-group-version-kind"),
            json!([{"group": "apps", "kind": "Deployment", "version": "v1"}])
        );
        assert!(text(&deployment, 4).contains("declarative updates"));
        assert_eq!(text(&one(&deployment, 22), 1), "object");
        let props = one(&deployment, 25);
        assert_eq!(
            text(&named(&props, 1, "spec"), 1),
            "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
        );

        let pod_spec = named(&definitions, 1, "io.k8s.api.core.v1.PodSpec");
        let containers = named(&one(&pod_spec, 25), 1, "containers");
        assert_eq!(text(&one(&containers, 22), 1), "array");
        assert_eq!(
            extension(&containers, "x-kubernetes-patch-merge-key"),
            json!("name")
        );
        assert_eq!(
            extension(&containers, "x-kubernetes-patch-strategy"),
            json!("merge")
        );
        let item = one(&one(&containers, 23), 1);
        assert_eq!(text(&item, 1), "#/definitions/io.k8s.api.core.v1.Container");
        assert!(all(&pod_spec, 19).iter().any(|r| r == b"containers"));

        let labels = named(
            &one(
                &named(
                    &definitions,
                    1,
                    "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta",
                ),
                25,
            ),
            1,
            "labels",
        );
        let values = one(&one(&labels, 21), 1);
        assert_eq!(text(&one(&values, 22), 1), "string");

        // Paths: the Deployment collection's POST, with its body and query parameters.
        let paths = one(&bytes, 8);
        let item = named(
            &paths,
            2,
            "/apis/apps/v1/namespaces/{namespace}/deployments",
        );
        let post = one(&item, 4);
        assert_eq!(text(&post, 5), "createAppsV1NamespacedDeployment");
        let params = all(&post, 8);
        let body = one(&one(&params[0], 1), 1);
        assert_eq!(text(&body, 3), "body");
        assert!(params.iter().skip(1).any(|p| {
            let query = one(&one(&one(p, 1), 2), 3);
            text(&query, 4) == "fieldValidation"
        }));
        let responses = one(&post, 9);
        let created = named(&responses, 1, "201");
        let schema = one(&one(&one(&created, 1), 2), 1);
        assert_eq!(
            text(&schema, 1),
            "#/definitions/io.k8s.api.apps.v1.Deployment"
        );

        let security = one(&one(&bytes, 13), 1);
        assert_eq!(text(&security, 1), "BearerToken");
        let api_key = one(&one(&security, 2), 2);
        assert_eq!(text(&api_key, 3), "header");
    }
}
