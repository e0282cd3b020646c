//! JSON merge patch (RFC 7386): objects merge recursively, `null` deletes, anything
//! else (lists included) replaces.

use serde_json::{Map, Value};

use super::PatchError;

/// Upstream's text for a patch that is not JSON (or is `null`).
const BAD_JSON_PATCH: &str = "Invalid JSON Patch";

/// Applies a merge patch. A non-object patch replaces the document; a `null` patch is
/// rejected like upstream (`Invalid JSON Patch`, 400).
pub fn merge_patch(doc: &Value, patch: &Value) -> Result<Value, PatchError> {
    if patch.is_null() {
        return Err(PatchError::BadRequest(BAD_JSON_PATCH.to_string()));
    }
    Ok(merge_value(doc.clone(), patch))
}

/// [`merge_patch`] on a raw request body.
pub fn merge_patch_bytes(doc: &Value, patch: &[u8]) -> Result<Value, PatchError> {
    let patch: Value = serde_json::from_slice(patch)
        .map_err(|_| PatchError::BadRequest(BAD_JSON_PATCH.to_string()))?;
    merge_patch(doc, &patch)
}

fn merge_value(doc: Value, patch: &Value) -> Value {
    let Value::Object(p) = patch else {
        return patch.clone();
    };
    let mut target = match doc {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    for (k, v) in p {
        if v.is_null() {
            // shift_remove keeps the remaining keys in order (preserve_order is on).
            target.shift_remove(k);
        } else if let Some(slot) = target.get_mut(k) {
            let current = std::mem::take(slot);
            *slot = merge_value(current, v);
        } else {
            target.insert(k.clone(), merge_value(Value::Null, v));
        }
    }
    Value::Object(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rfc7386_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (
                json!({"a": "b"}),
                json!({"b": "c"}),
                json!({"a": "b", "b": "c"}),
            ),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (
                json!({"a": "b", "b": "c"}),
                json!({"a": null}),
                json!({"b": "c"}),
            ),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "c"}), json!({"a": ["b"]}), json!({"a": ["b"]})),
            (
                json!({"a": {"b": "c"}}),
                json!({"a": {"b": "d", "c": null}}),
                json!({"a": {"b": "d"}}),
            ),
            (
                json!({"a": [{"b": "c"}]}),
                json!({"a": [1]}),
                json!({"a": [1]}),
            ),
            (
                json!({"e": null}),
                json!({"a": 1}),
                json!({"e": null, "a": 1}),
            ),
            (
                json!({}),
                json!({"a": {"bb": {"ccc": null}}}),
                json!({"a": {"bb": {}}}),
            ),
            (json!({"a": "foo"}), json!("bar"), json!("bar")),
        ];
        for (doc, patch, want) in cases {
            assert_eq!(
                merge_patch(&doc, &patch).expect("merge"),
                want,
                "{doc} + {patch}"
            );
        }
    }

    #[test]
    fn null_and_garbage_patches_are_bad_requests() {
        let doc = json!({"a": 1});
        assert_eq!(
            merge_patch(&doc, &Value::Null),
            Err(PatchError::BadRequest("Invalid JSON Patch".into()))
        );
        assert_eq!(
            merge_patch_bytes(&doc, b"{nope").map_err(|e| e.code()),
            Err(400)
        );
        assert_eq!(
            merge_patch_bytes(&doc, br#"{"metadata":{"labels":{"x":"y"}}}"#).expect("ok")["a"],
            1
        );
    }

    #[test]
    fn keeps_key_order() {
        let doc = json!({"a": 1, "b": {"x": 1}, "c": 3});
        let out = merge_patch(&doc, &json!({"b": {"y": 2}, "a": null})).expect("merge");
        let keys: Vec<&String> = out.as_object().expect("object").keys().collect();
        assert_eq!(keys, ["b", "c"]);
        assert_eq!(out["b"], json!({"x": 1, "y": 2}));
    }
}
