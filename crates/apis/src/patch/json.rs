//! JSON patch (RFC 6902) with the behaviour and messages of the library upstream uses
//! (`gopkg.in/evanphx/json-patch.v4`), so `kubectl patch --type=json` sees the same
//! results: negative array indices count from the end, `replace` of a missing object
//! key adds it, numbers compare by value in `test`, and failures read like
//! `testing value /spec/replicas failed: test failed`.

use serde_json::{Map, Value};

use super::{go_json_kind, PatchError};

/// Upstream's cap on operations in one JSON patch (`maxJSONPatchOperations`).
pub const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;

const MISSING: &str = "missing value";
const INVALID_INDEX: &str = "invalid index referenced";
const TEST_FAILED: &str = "test failed";

/// Applies an RFC 6902 patch body to `doc`. A body that is not a JSON array of objects
/// is a 400; an operation that does not apply is a 422 with upstream's message.
pub fn json_patch(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let parsed: Value =
        serde_json::from_slice(patch).map_err(|e| PatchError::BadRequest(e.to_string()))?;
    let ops = match parsed {
        Value::Array(ops) => ops,
        // Go decodes `null` into an empty patch.
        Value::Null => Vec::new(),
        other => {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type jsonpatch.Patch",
                go_json_kind(&other)
            )))
        }
    };
    let mut decoded = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            Value::Object(m) => decoded.push(m),
            other => {
                return Err(PatchError::BadRequest(format!(
                    "json: cannot unmarshal {} into Go value of type jsonpatch.Operation",
                    go_json_kind(&other)
                )))
            }
        }
    }
    if decoded.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations {
            max: MAX_JSON_PATCH_OPERATIONS,
            got: decoded.len(),
        });
    }
    let mut doc = doc.clone();
    for op in &decoded {
        apply_op(&mut doc, op).map_err(PatchError::Invalid)?;
    }
    Ok(doc)
}

fn str_field<'a>(op: &'a Map<String, Value>, name: &str) -> Option<&'a str> {
    op.get(name).and_then(Value::as_str)
}

fn apply_op(doc: &mut Value, op: &Map<String, Value>) -> Result<(), String> {
    let kind = str_field(op, "op").unwrap_or("unknown");
    let path = || {
        str_field(op, "path")
            .ok_or_else(|| format!("{kind} operation failed to decode path: {MISSING}"))
    };
    let from = || {
        str_field(op, "from")
            .ok_or_else(|| format!("{kind} operation failed to decode from: {MISSING}"))
    };
    // A missing "value" behaves like null, as upstream's lazy decoding does.
    let value = || op.get("value").cloned().unwrap_or(Value::Null);
    match kind {
        "add" => {
            let path = path()?;
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                format!("add operation does not apply: doc is missing path: \"{path}\": {MISSING}")
            })?;
            add(con, &key, value()).map_err(|e| format!("error in add for path: '{path}': {e}"))
        }
        "remove" => {
            let path = path()?;
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                format!(
                    "remove operation does not apply: doc is missing path: \"{path}\": {MISSING}"
                )
            })?;
            remove(con, &key)
                .map(|_| ())
                .map_err(|e| format!("error in remove for path: '{path}': {e}"))
        }
        "replace" => {
            let path = path()?;
            if path.is_empty() {
                let v = value();
                if !v.is_object() && !v.is_array() {
                    return Err("replace operation value must be object or array".to_string());
                }
                *doc = v;
                return Ok(());
            }
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                format!("replace operation does not apply: doc is missing path: {path}: {MISSING}")
            })?;
            if get(con, &key).is_err() {
                return Err(format!(
                    "replace operation does not apply: doc is missing key: {path}: {MISSING}"
                ));
            }
            set(con, &key, value()).map_err(|e| format!("error in remove for path: '{path}': {e}"))
        }
        "move" => {
            let from = from()?;
            let (con, key) = find_object(doc, from).ok_or_else(|| {
                format!(
                    "move operation does not apply: doc is missing from path: {from}: {MISSING}"
                )
            })?;
            get(con, &key).map_err(|e| format!("error in move for path: '{key}': {e}"))?;
            let val =
                remove(con, &key).map_err(|e| format!("error in move for path: '{key}': {e}"))?;
            let path = path()?;
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                format!("move operation does not apply: doc is missing destination path: {path}: {MISSING}")
            })?;
            add(con, &key, val).map_err(|e| format!("error in move for path: '{path}': {e}"))
        }
        "copy" => {
            let from = from()?;
            let (con, key) = find_object(doc, from).ok_or_else(|| {
                format!(
                    "copy operation does not apply: doc is missing from path: {from}: {MISSING}"
                )
            })?;
            let val = get(con, &key)
                .map_err(|e| format!("error in copy for from: '{from}': {e}"))?
                .cloned()
                .ok_or_else(|| format!("copy operation does not apply: doc is missing from path: {from}: {MISSING}"))?;
            let path = path()?;
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                format!("copy operation does not apply: doc is missing destination path: {path}: {MISSING}")
            })?;
            add(con, &key, val).map_err(|e| format!("error while adding value during copy: {e}"))
        }
        "test" => {
            let path = path()?;
            let failed = || format!("testing value {path} failed: {TEST_FAILED}");
            if path.is_empty() {
                return if json_equal(doc, &value()) {
                    Ok(())
                } else {
                    Err(failed())
                };
            }
            let (con, key) = find_object(doc, path).ok_or_else(|| {
                format!("test operation does not apply: is missing path: {path}: {MISSING}")
            })?;
            let got =
                get(con, &key).map_err(|e| format!("error in test for path: '{path}': {e}"))?;
            let want = value();
            match got {
                None if want.is_null() => Ok(()),
                Some(v) if json_equal(v, &want) => Ok(()),
                _ => Err(failed()),
            }
        }
        other => Err(format!("Unexpected kind: {other}")),
    }
}

/// JSON pointer token unescaping (`~1` → `/`, then `~0` → `~`).
fn decode_key(k: &str) -> String {
    k.replace("~1", "/").replace("~0", "~")
}

/// Go's `strconv.Atoi` error text.
fn atoi(key: &str) -> Result<i64, String> {
    key.parse::<i64>().map_err(|_| {
        format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            serde_json::to_string(key).unwrap_or_default()
        )
    })
}

fn invalid_index(idx: i64) -> String {
    format!("Unable to access invalid index: {idx}: {INVALID_INDEX}")
}

/// Resolves a possibly negative index against `len`; `None` when out of range below.
fn resolve_index(idx: i64, len: usize) -> Option<usize> {
    let len = len as i64;
    if idx < 0 {
        if idx < -len {
            return None;
        }
        return Some((idx + len) as usize);
    }
    Some(idx as usize)
}

/// The container holding the last path token, and that token. Like upstream, every
/// intermediate token must name an existing object or array.
fn find_object<'a>(doc: &'a mut Value, path: &str) -> Option<(&'a mut Value, String)> {
    let parts: Vec<&str> = path.split('/').collect();
    if parts.len() < 2 {
        return None;
    }
    let mut cur = doc;
    for part in &parts[1..parts.len() - 1] {
        let key = decode_key(part);
        cur = match cur {
            Value::Object(m) => m.get_mut(&key)?,
            Value::Array(a) => {
                let idx = resolve_index(key.parse::<i64>().ok()?, a.len())?;
                a.get_mut(idx)?
            }
            _ => return None,
        };
    }
    if !cur.is_object() && !cur.is_array() {
        return None;
    }
    Some((cur, decode_key(parts[parts.len() - 1])))
}

/// `Ok(None)` is an absent object key (not an error upstream); bad array indices are errors.
fn get<'a>(con: &'a Value, key: &str) -> Result<Option<&'a Value>, String> {
    match con {
        Value::Object(m) => Ok(m.get(key)),
        Value::Array(a) => {
            let raw = atoi(key)?;
            let idx = resolve_index(raw, a.len()).ok_or_else(|| invalid_index(raw))?;
            a.get(idx)
                .map(Some)
                .ok_or_else(|| invalid_index(idx as i64))
        }
        _ => Err(MISSING.to_string()),
    }
}

fn add(con: &mut Value, key: &str, val: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), val);
            Ok(())
        }
        Value::Array(a) => {
            if key == "-" {
                a.push(val);
                return Ok(());
            }
            let raw = key.parse::<i64>().map_err(|_| {
                format!(
                    "value was not a proper array index: '{key}': {}",
                    atoi(key).err().unwrap_or_default()
                )
            })?;
            let idx = resolve_index(raw, a.len() + 1).ok_or_else(|| invalid_index(raw))?;
            if idx > a.len() {
                return Err(invalid_index(raw));
            }
            a.insert(idx, val);
            Ok(())
        }
        _ => Err(MISSING.to_string()),
    }
}

fn remove(con: &mut Value, key: &str) -> Result<Value, String> {
    match con {
        Value::Object(m) => m
            .shift_remove(key)
            .ok_or_else(|| format!("Unable to remove nonexistent key: {key}: {MISSING}")),
        Value::Array(a) => {
            let raw = atoi(key)?;
            let idx = resolve_index(raw, a.len()).ok_or_else(|| invalid_index(raw))?;
            if idx >= a.len() {
                return Err(invalid_index(idx as i64));
            }
            Ok(a.remove(idx))
        }
        _ => Err(MISSING.to_string()),
    }
}

fn set(con: &mut Value, key: &str, val: Value) -> Result<(), String> {
    match con {
        Value::Object(m) => {
            m.insert(key.to_string(), val);
            Ok(())
        }
        Value::Array(a) => {
            let raw = atoi(key)?;
            let idx = resolve_index(raw, a.len()).ok_or_else(|| invalid_index(raw))?;
            let slot = a.get_mut(idx).ok_or_else(|| invalid_index(raw))?;
            *slot = val;
            Ok(())
        }
        _ => Err(MISSING.to_string()),
    }
}

/// Equality of decoded JSON as Go sees it: all numbers are float64.
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deploy() -> Value {
        json!({
            "metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"replicas": 1, "template": {"spec": {"containers": [
                {"name": "a", "image": "nginx"},
                {"name": "b", "image": "redis"}
            ]}}}
        })
    }

    #[test]
    fn applies_operations() {
        let cases: Vec<(&str, Value)> = vec![
            (
                r#"[{"op":"replace","path":"/spec/replicas","value":3}]"#,
                json!(3),
            ),
            (
                r#"[{"op":"add","path":"/metadata/labels/tier","value":"front"}]"#,
                json!({"app": "web", "tier": "front"}),
            ),
            (
                r#"[{"op":"remove","path":"/metadata/labels/app"}]"#,
                json!({}),
            ),
            (
                r#"[{"op":"test","path":"/spec/replicas","value":1.0},{"op":"replace","path":"/spec/replicas","value":2}]"#,
                json!(2),
            ),
            // upstream's v4 library lets replace create a missing object key
            (
                r#"[{"op":"replace","path":"/metadata/labels/new","value":"x"}]"#,
                json!({"app": "web", "new": "x"}),
            ),
        ];
        for (patch, want) in cases {
            let out =
                json_patch(&deploy(), patch.as_bytes()).unwrap_or_else(|e| panic!("{patch}: {e}"));
            let got = if want.is_number() {
                &out["spec"]["replicas"]
            } else {
                &out["metadata"]["labels"]
            };
            assert_eq!(got, &want, "{patch}");
        }
        let out = json_patch(
            &deploy(),
            br#"[{"op":"add","path":"/spec/template/spec/containers/-","value":{"name":"c"}},
                 {"op":"remove","path":"/spec/template/spec/containers/0"},
                 {"op":"move","from":"/spec/template/spec/containers/1","path":"/spec/template/spec/containers/0"},
                 {"op":"copy","from":"/metadata/name","path":"/metadata/labels/name"},
                 {"op":"replace","path":"/spec/template/spec/containers/-1/image","value":"busybox"}]"#,
        )
        .expect("patch");
        let names: Vec<&str> = out["spec"]["template"]["spec"]["containers"]
            .as_array()
            .expect("containers")
            .iter()
            .map(|c| c["name"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(names, ["c", "b"]);
        assert_eq!(
            out["spec"]["template"]["spec"]["containers"][1]["image"],
            "busybox"
        );
        assert_eq!(out["metadata"]["labels"]["name"], "web");
        assert_eq!(json_patch(&deploy(), b"null").expect("empty"), deploy());
        let escaped = json_patch(
            &json!({"a/b": {"~": 1}}),
            br#"[{"op":"replace","path":"/a~1b/~0","value":2}]"#,
        );
        assert_eq!(escaped.expect("escaped"), json!({"a/b": {"~": 2}}));
    }

    #[test]
    fn failures_use_upstream_messages() {
        let cases = [
            (r#"[{"op":"test","path":"/spec/replicas","value":2}]"#, 422, "testing value /spec/replicas failed: test failed"),
            (
                r#"[{"op":"remove","path":"/metadata/labels/missing"}]"#,
                422,
                "error in remove for path: '/metadata/labels/missing': Unable to remove nonexistent key: missing: missing value",
            ),
            (
                r#"[{"op":"add","path":"/nope/x","value":1}]"#,
                422,
                "add operation does not apply: doc is missing path: \"/nope/x\": missing value",
            ),
            (
                r#"[{"op":"replace","path":"/spec/template/spec/containers/5","value":{}}]"#,
                422,
                "replace operation does not apply: doc is missing key: /spec/template/spec/containers/5: missing value",
            ),
            (
                r#"[{"op":"add","path":"/spec/template/spec/containers/9","value":{}}]"#,
                422,
                "error in add for path: '/spec/template/spec/containers/9': Unable to access invalid index: 9: invalid index referenced",
            ),
            (r#"[{"op":"frobnicate","path":"/a"}]"#, 422, "Unexpected kind: frobnicate"),
            (r#"{"op":"add"}"#, 400, "json: cannot unmarshal object into Go value of type jsonpatch.Patch"),
            (r#"["add"]"#, 400, "json: cannot unmarshal string into Go value of type jsonpatch.Operation"),
        ];
        for (patch, code, msg) in cases {
            let err = json_patch(&deploy(), patch.as_bytes()).expect_err(patch);
            assert_eq!(
                (err.code(), err.to_string().as_str()),
                (code, msg),
                "{patch}"
            );
        }
        assert_eq!(json_patch(&deploy(), b"[{").map_err(|e| e.code()), Err(400));
        let many = format!(
            "[{}]",
            vec![r#"{"op":"test","path":"/spec/replicas","value":1}"#; 10_001].join(",")
        );
        assert_eq!(
            json_patch(&deploy(), many.as_bytes()).map_err(|e| (e.code(), e.to_string())),
            Err((
                413,
                "The allowed maximum operations in a JSON patch is 10000, got 10001".to_string()
            ))
        );
    }
}
