//! Tables for custom resources: a CRD version's `additionalPrinterColumns`
//! evaluated with simple JSONPath, as apiextensions-apiserver's `tableconvertor`.
//!
//! Name always comes first; when a CRD declares no columns, upstream serves a single
//! `Age` date column (`serveDefaultColumnsIfEmpty`), which this reproduces.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::columns::field_doc;
use crate::duration::{human_duration, parse_timestamp};
use crate::ColumnDefinition;

const META: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta";

/// One segment of a parsed JSONPath.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Field(String),
    Index(usize),
    /// `[*]`: every element of an array (or value of an object).
    Wildcard,
}

/// Parses the JSONPath subset CRD columns use: `.a.b`, `.a[0].b`, `.a['x.y']`, `.a[*].b`.
fn parse_path(path: &str) -> Option<Vec<Segment>> {
    let path = path.trim();
    let path = path
        .strip_prefix('{')
        .and_then(|p| p.strip_suffix('}'))
        .unwrap_or(path);
    let path = path.strip_prefix('$').unwrap_or(path);
    let mut out = Vec::new();
    let chars: Vec<char> = path.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '.' => {
                i += 1;
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                let name: String = chars[start..i].iter().collect();
                if !name.is_empty() {
                    out.push(Segment::Field(name));
                }
            }
            '[' => {
                let end = chars[i..].iter().position(|c| *c == ']')? + i;
                let inner: String = chars[i + 1..end].iter().collect();
                let inner = inner.trim();
                if inner == "*" {
                    out.push(Segment::Wildcard);
                } else if let Ok(n) = inner.parse::<usize>() {
                    out.push(Segment::Index(n));
                } else {
                    let quoted = inner
                        .strip_prefix('\'')
                        .and_then(|s| s.strip_suffix('\''))
                        .or_else(|| inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')))?;
                    out.push(Segment::Field(quoted.to_string()));
                }
                i = end + 1;
            }
            _ => {
                // A leading bare name ("spec.replicas") is accepted too.
                let start = i;
                while i < chars.len() && chars[i] != '.' && chars[i] != '[' {
                    i += 1;
                }
                out.push(Segment::Field(chars[start..i].iter().collect()));
            }
        }
    }
    Some(out)
}

/// The first value the path selects, with missing keys yielding nothing.
fn eval<'a>(value: &'a Value, path: &[Segment]) -> Option<&'a Value> {
    let Some((first, rest)) = path.split_first() else {
        return Some(value);
    };
    match first {
        Segment::Field(name) => eval(value.get(name)?, rest),
        Segment::Index(n) => eval(value.get(*n)?, rest),
        Segment::Wildcard => match value {
            Value::Array(items) => items.iter().find_map(|v| eval(v, rest)),
            Value::Object(map) => map.values().find_map(|v| eval(v, rest)),
            _ => None,
        },
    }
}

/// Go's `fmt.Print` of a decoded JSON value, which is what upstream's JSONPath
/// printer emits for string columns.
fn go_print(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".to_string(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(items) => format!(
            "[{}]",
            items.iter().map(go_print).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let inner = keys
                .iter()
                .map(|k| format!("{k}:{}", go_print(&map[*k])))
                .collect::<Vec<_>>()
                .join(" ");
            format!("map[{inner}]")
        }
    }
}

fn field<'a>(col: &'a Value, key: &str) -> &'a str {
    col.get(key).and_then(Value::as_str).unwrap_or("")
}

/// The columns declared by a CRD version (Age when it declares none).
fn effective_columns(additional_printer_columns: &[Value]) -> Vec<Value> {
    if additional_printer_columns.is_empty() {
        return vec![json!({
            "name": "Age",
            "type": "date",
            "description": field_doc(META, "creationTimestamp"),
            "jsonPath": ".metadata.creationTimestamp",
        })];
    }
    additional_printer_columns.to_vec()
}

/// Column definitions for a CRD version's `additionalPrinterColumns`.
pub fn custom_column_definitions(additional_printer_columns: &[Value]) -> Vec<ColumnDefinition> {
    let mut out = vec![ColumnDefinition {
        name: "Name".to_string(),
        column_type: "string".to_string(),
        format: "name".to_string(),
        description: field_doc(META, "name"),
        priority: 0,
    }];
    for col in effective_columns(additional_printer_columns) {
        let path = field(&col, "jsonPath");
        let description = match field(&col, "description") {
            "" => format!("Custom resource definition column (in JSONPath format): {path}"),
            d => d.to_string(),
        };
        out.push(ColumnDefinition {
            name: field(&col, "name").to_string(),
            column_type: field(&col, "type").to_string(),
            format: field(&col, "format").to_string(),
            description,
            priority: col
                .get("priority")
                .and_then(Value::as_i64)
                .and_then(|p| i32::try_from(p).ok())
                .unwrap_or(0),
        });
    }
    out
}

/// Cells of one custom resource: its name, then each column's value (null when the
/// path selects nothing or the value does not fit the column type).
pub fn custom_row_cells(
    additional_printer_columns: &[Value],
    obj: &Value,
    now: DateTime<Utc>,
) -> Vec<Value> {
    let name = obj
        .pointer("/metadata/name")
        .cloned()
        .unwrap_or_else(|| json!(""));
    let mut cells = vec![name];
    for col in effective_columns(additional_printer_columns) {
        let value = parse_path(field(&col, "jsonPath")).and_then(|p| eval(obj, &p).cloned());
        cells.push(match value {
            None => Value::Null,
            Some(v) => cell_for(field(&col, "type"), &v, now),
        });
    }
    cells
}

/// Upstream `cellForJSONValue` (and the JSONPath text printer for strings).
fn cell_for(column_type: &str, v: &Value, now: DateTime<Utc>) -> Value {
    match column_type {
        "string" => json!(go_print(v)),
        "integer" => match v {
            Value::Number(n) => n
                .as_i64()
                .map(Value::from)
                .or_else(|| n.as_f64().map(|f| json!(f as i64)))
                .unwrap_or(Value::Null),
            _ => Value::Null,
        },
        "number" => v.as_f64().map_or(Value::Null, |f| json!(f)),
        "boolean" => v.as_bool().map_or(Value::Null, Value::from),
        "date" => match v.as_str() {
            Some(s) => match parse_timestamp(s) {
                Some(t) => json!(human_duration(t, now)),
                None => json!("<invalid>"),
            },
            None => Value::Null,
        },
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_simple_paths() {
        assert_eq!(
            parse_path(".status.x[0].y"),
            Some(vec![
                Segment::Field("status".into()),
                Segment::Field("x".into()),
                Segment::Index(0),
                Segment::Field("y".into())
            ])
        );
        assert_eq!(
            parse_path(".metadata.labels['app.kubernetes.io/name']"),
            Some(vec![
                Segment::Field("metadata".into()),
                Segment::Field("labels".into()),
                Segment::Field("app.kubernetes.io/name".into())
            ])
        );
    }

    #[test]
    fn go_print_matches_fmt() {
        assert_eq!(
            go_print(&json!({"b": 1, "a": [1, "x"]})),
            "map[a:[1 x] b:1]"
        );
        assert_eq!(go_print(&json!(1.5)), "1.5");
    }
}
