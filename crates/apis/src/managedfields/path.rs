//! Path elements and field paths, as structured-merge-diff's `fieldpath.PathElement`/`Path`:
//! their total order, their `fieldsV1` key form (`f:name`, `k:{..}`, `v:..`, `i:N`) and
//! the dotted form conflicts print (`.spec.containers[name="nginx"].image`).

use std::cmp::Ordering;
use std::fmt;

use serde_json::{Map, Value};

/// One step into an object: a field, a list-map item by key, a set item by value, or a
/// list index (indices never appear in apply field sets; kept for completeness).
#[derive(Clone, Debug)]
pub enum PathElement {
    /// `f:<name>`: a struct field or a map entry.
    Field(String),
    /// `k:{"name":"nginx"}`: a list-map item by its key fields, sorted by field name.
    Key(Vec<(String, Value)>),
    /// `v:"a"`: a set item by its (scalar) value.
    Value(Value),
    /// `i:0`: a list item by position.
    Index(usize),
}

/// Why a `fieldsV1` key could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PathElementError {
    /// A prefix this version does not know; upstream skips such keys.
    #[error("unknown path element type in {0:?}")]
    UnknownType(String),
    #[error("invalid path element {key:?}: {reason}")]
    Invalid { key: String, reason: String },
}

impl PathElement {
    /// A field element.
    pub fn field(name: impl Into<String>) -> Self {
        PathElement::Field(name.into())
    }

    /// A key element; the fields are sorted by name as upstream keeps them.
    pub fn key(fields: impl IntoIterator<Item = (String, Value)>) -> Self {
        let mut fields: Vec<(String, Value)> = fields.into_iter().collect();
        fields.sort_by(|a, b| a.0.cmp(&b.0));
        PathElement::Key(fields)
    }

    /// The `fieldsV1` object key for this element.
    pub fn to_key_string(&self) -> String {
        match self {
            PathElement::Field(name) => format!("f:{name}"),
            PathElement::Key(fields) => {
                let mut m = Map::new();
                for (k, v) in fields {
                    m.insert(k.clone(), v.clone());
                }
                format!("k:{}", Value::Object(m))
            }
            PathElement::Value(v) => format!("v:{v}"),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `fieldsV1` object key (not `"."`, which the caller handles).
    pub fn parse_key_string(s: &str) -> Result<Self, PathElementError> {
        let invalid = |reason: String| PathElementError::Invalid {
            key: s.to_string(),
            reason,
        };
        let (prefix, rest) = match (s.get(..2), s.get(2..)) {
            (Some(p), Some(r)) => (p, r),
            _ => return Err(PathElementError::UnknownType(s.to_string())),
        };
        match prefix {
            "f:" => Ok(PathElement::Field(rest.to_string())),
            "v:" => serde_json::from_str(rest)
                .map(PathElement::Value)
                .map_err(|e| invalid(e.to_string())),
            "i:" => rest
                .parse()
                .map(PathElement::Index)
                .map_err(|e| invalid(e.to_string())),
            "k:" => {
                match serde_json::from_str::<Value>(rest).map_err(|e| invalid(e.to_string()))? {
                    Value::Object(m) if !m.is_empty() => Ok(PathElement::key(m)),
                    _ => Err(invalid("key must be a non-empty JSON object".into())),
                }
            }
            _ => Err(PathElementError::UnknownType(s.to_string())),
        }
    }

    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => a.len().cmp(&b.len()).then_with(|| {
                a.iter()
                    .zip(b)
                    .map(|((an, av), (bn, bv))| an.cmp(bn).then_with(|| value_cmp(av, bv)))
                    .find(|o| o.is_ne())
                    .unwrap_or(Ordering::Equal)
            }),
            (PathElement::Value(a), PathElement::Value(b)) => value_cmp(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other).is_eq()
    }
}

impl Eq for PathElement {}

impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(name) => write!(f, ".{name}"),
            PathElement::Key(fields) => {
                let parts: Vec<String> = fields
                    .iter()
                    .map(|(k, v)| format!("{k}={}", value_to_string(v)))
                    .collect();
                write!(f, "[{}]", parts.join(","))
            }
            PathElement::Value(v) => write!(f, "[={}]", value_to_string(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path from the object root, printed as upstream does: `.spec.containers[name="nginx"].image`.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct FieldPath(pub Vec<PathElement>);

impl FieldPath {
    /// A path made only of field names, e.g. `FieldPath::fields(&["spec", "replicas"])`.
    pub fn fields(names: &[&str]) -> Self {
        FieldPath(names.iter().map(|n| PathElement::field(*n)).collect())
    }

    pub fn elements(&self) -> &[PathElement] {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|pe| write!(f, "{pe}"))
    }
}

/// Renders a value the way structured-merge-diff's `value.ToString` does (strings quoted).
fn value_to_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => serde_json::to_string(s).unwrap_or_else(|_| format!("{s:?}")),
        Value::Array(items) => format!(
            "[{}]",
            items
                .iter()
                .map(value_to_string)
                .collect::<Vec<_>>()
                .join(",")
        ),
        Value::Object(m) => {
            let mut parts: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", value_to_string(v)))
                .collect();
            parts.sort();
            format!("{{{}}}", parts.join(""))
        }
        other => other.to_string(),
    }
}

/// Deep equality where `1` and `1.0` are equal and object key order does not matter,
/// as upstream's `value.Equals`.
pub(crate) fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => number_cmp(a, b).is_eq(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| value_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| value_eq(v, w)))
        }
        _ => a == b,
    }
}

/// The total order upstream's `value.Compare` defines: numbers < strings < bools < lists
/// < maps < null.
pub(crate) fn value_cmp(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => number_cmp(a, b),
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => x
            .iter()
            .zip(y)
            .map(|(p, q)| value_cmp(p, q))
            .find(|o| o.is_ne())
            .unwrap_or_else(|| x.len().cmp(&y.len())),
        (Value::Object(x), Value::Object(y)) => {
            let mut xs: Vec<(&String, &Value)> = x.iter().collect();
            let mut ys: Vec<(&String, &Value)> = y.iter().collect();
            xs.sort_by(|p, q| p.0.cmp(q.0));
            ys.sort_by(|p, q| p.0.cmp(q.0));
            xs.iter()
                .zip(&ys)
                .map(|((xk, xv), (yk, yv))| xk.cmp(yk).then_with(|| value_cmp(xv, yv)))
                .find(|o| o.is_ne())
                .unwrap_or_else(|| xs.len().cmp(&ys.len()))
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

fn number_cmp(a: &Value, b: &Value) -> Ordering {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        return x.cmp(&y);
    }
    if let (Some(x), Some(y)) = (a.as_u64(), b.as_u64()) {
        return x.cmp(&y);
    }
    let x = a.as_f64().unwrap_or(f64::NAN);
    let y = b.as_f64().unwrap_or(f64::NAN);
    x.partial_cmp(&y).unwrap_or(Ordering::Equal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn key_strings_round_trip() {
        let cases = [
            (PathElement::field("spec"), "f:spec"),
            (
                PathElement::key([("name".to_string(), json!("nginx"))]),
                r#"k:{"name":"nginx"}"#,
            ),
            (
                PathElement::key([
                    ("protocol".to_string(), json!("TCP")),
                    ("containerPort".to_string(), json!(80)),
                ]),
                r#"k:{"containerPort":80,"protocol":"TCP"}"#,
            ),
            (
                PathElement::Value(json!("foregroundDeletion")),
                r#"v:"foregroundDeletion""#,
            ),
            (PathElement::Index(3), "i:3"),
        ];
        for (pe, s) in cases {
            assert_eq!(pe.to_key_string(), s);
            assert_eq!(PathElement::parse_key_string(s).expect("parses"), pe, "{s}");
        }
    }

    #[test]
    fn bad_keys_are_rejected() {
        assert!(matches!(
            PathElement::parse_key_string("x:foo"),
            Err(PathElementError::UnknownType(_))
        ));
        assert!(matches!(
            PathElement::parse_key_string("k:[1]"),
            Err(PathElementError::Invalid { .. })
        ));
        assert!(matches!(
            PathElement::parse_key_string("i:-1"),
            Err(PathElementError::Invalid { .. })
        ));
        assert!(matches!(
            PathElement::parse_key_string("v:{"),
            Err(PathElementError::Invalid { .. })
        ));
    }

    #[test]
    fn paths_print_like_upstream() {
        let mut p = FieldPath::fields(&["spec", "template", "spec", "containers"]);
        p.0.push(PathElement::key([("name".to_string(), json!("nginx"))]));
        p.0.push(PathElement::field("image"));
        assert_eq!(
            p.to_string(),
            r#".spec.template.spec.containers[name="nginx"].image"#
        );
        let ports = FieldPath(vec![
            PathElement::field("ports"),
            PathElement::key([
                ("port".to_string(), json!(80)),
                ("protocol".to_string(), json!("TCP")),
            ]),
        ]);
        assert_eq!(ports.to_string(), r#".ports[port=80,protocol="TCP"]"#);
        assert_eq!(
            FieldPath(vec![PathElement::Value(json!("a"))]).to_string(),
            r#"[="a"]"#
        );
    }

    #[test]
    fn order_and_equality() {
        assert!(PathElement::field("z") < PathElement::key([("a".to_string(), json!(1))]));
        assert!(PathElement::Value(json!(1)) < PathElement::Value(json!("a")));
        assert_eq!(PathElement::Value(json!(1)), PathElement::Value(json!(1.0)));
        assert!(value_eq(
            &json!({"a": 1, "b": [1, 2]}),
            &json!({"b": [1.0, 2], "a": 1})
        ));
        assert!(!value_eq(&json!({"a": 1}), &json!({"a": 1, "b": null})));
    }
}
