//! Strategic merge patch, as upstream's `pkg/util/strategicpatch` applies it on the
//! server (`MergeParallelList` and `IgnoreUnmatchedNulls` on).
//!
//! It is a JSON merge patch that knows the schema: lists whose field is tagged
//! `patchStrategy:"merge"` are merged element by element (objects matched on the
//! `patchMergeKey`, primitives unioned) instead of replaced. Directives in the patch:
//!
//! - `$patch: replace` in an object replaces it; `$patch: delete` empties it. As a list
//!   element, `{"$patch": "replace"}` replaces the list with the other elements and
//!   `{"$patch": "delete", <key>: v}` removes the element whose merge key is `v`.
//! - `$setElementOrder/<list>: [...]` gives the final order of the patched items; items
//!   only the server has keep their place relative to them (order precedence:
//!   `$setElementOrder` > patch list > live list).
//! - `$deleteFromPrimitiveList/<list>: [...]` removes those values from a primitive list.
//! - `$retainKeys: [...]` clears every field of the live object not listed (union types,
//!   e.g. a Deployment's `strategy`, a volume's source).
//! - `null` deletes a field.
//!
//! Merged lists put patch items in patch order and interleave server-only items where the
//! live order puts them; new items come before server-only items they cannot be ordered
//! against, which is why `kubectl patch` adding a container puts it first.

use serde_json::{Map, Value};

use super::{go_fmt, go_json_kind, merge_patch, PatchError};
use crate::schema::{ListInfo, Node};

const DIRECTIVE: &str = "$patch";
const SET_ELEMENT_ORDER: &str = "$setElementOrder/";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList/";
const RETAIN_KEYS: &str = "$retainKeys";

/// Applies a strategic merge patch. `root` is the kind's schema ([`crate::schema::root`]);
/// without one (custom resources) this is a JSON merge patch.
pub fn strategic_merge_patch(
    doc: &Value,
    patch: &Value,
    root: Option<Node>,
) -> Result<Value, PatchError> {
    let Some(root) = root else {
        return merge_patch(doc, patch);
    };
    let patch = match patch {
        Value::Object(p) => p.clone(),
        // Go decodes `null` into a nil map: nothing to do.
        Value::Null => return Ok(doc.clone()),
        other => {
            return Err(PatchError::BadRequest(format!(
                "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                go_json_kind(other)
            )))
        }
    };
    let original = match doc {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    merge_map(original, patch, Some(root)).map(Value::Object)
}

/// [`strategic_merge_patch`] on a raw request body (invalid JSON is a 400).
pub fn strategic_merge_patch_bytes(
    doc: &Value,
    patch: &[u8],
    root: Option<Node>,
) -> Result<Value, PatchError> {
    let patch: Value =
        serde_json::from_slice(patch).map_err(|e| PatchError::BadRequest(e.to_string()))?;
    strategic_merge_patch(doc, &patch, root)
}

fn internal(msg: impl Into<String>) -> PatchError {
    PatchError::Internal(msg.into())
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    internal(format!(
        "map: {} does not contain declared merge key: {}",
        go_fmt(&Value::Object(m.clone())),
        key
    ))
}

fn bad_patch_type(t: &Value, m: &Map<String, Value>) -> PatchError {
    internal(format!(
        "unknown patch type: {} in map: {}",
        go_fmt(t),
        go_fmt(&Value::Object(m.clone()))
    ))
}

fn list_info(node: Option<Node>) -> ListInfo {
    node.and_then(|n| n.list())
        .unwrap_or_else(ListInfo::unmarked)
}

fn merge_map(
    mut original: Map<String, Value>,
    mut patch: Map<String, Value>,
    schema: Option<Node>,
) -> Result<Map<String, Value>, PatchError> {
    if let Some(directive) = patch.get(DIRECTIVE) {
        return match directive.as_str() {
            Some("replace") => {
                patch.shift_remove(DIRECTIVE);
                // The patch becomes the value; clean it of nulls and nested directives.
                merge_map(Map::new(), patch, schema)
            }
            Some("delete") => Ok(Map::new()),
            _ => Err(bad_patch_type(directive, &patch)),
        };
    }
    apply_retain_keys(&mut original, &mut patch)?;
    merge_ordered_lists(&mut original, &mut patch, schema)?;

    for (key, patch_value) in patch {
        if key.starts_with(SET_ELEMENT_ORDER) {
            continue;
        }
        if let Some(field) = key.strip_prefix(DELETE_FROM_PRIMITIVE_LIST) {
            let Value::Array(delete) = patch_value else {
                return Err(PatchError::BadRequest(
                    "invalid patch format of primitive list".to_string(),
                ));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|v| !delete.contains(v));
            }
            continue;
        }
        if patch_value.is_null() {
            original.shift_remove(&key);
            continue;
        }
        let child = schema.and_then(|s| s.child(&key));
        let merged = match (original.get_mut(&key), patch_value) {
            (Some(Value::Object(live)), Value::Object(p)) => {
                Value::Object(merge_map(std::mem::take(live), p, child)?)
            }
            (Some(Value::Array(live)), Value::Array(p)) => {
                Value::Array(merge_list(std::mem::take(live), p, child)?)
            }
            // Absent, or a different JSON type: the patch value wins, cleaned.
            (_, p) => fresh(p, child)?,
        };
        // Replacing an existing key keeps its position.
        original.insert(key, merged);
    }
    Ok(original)
}

/// A patch value with no live counterpart: merged into nothing, which drops `null`s and
/// directives the way the live object would never have seen them.
fn fresh(value: Value, node: Option<Node>) -> Result<Value, PatchError> {
    Ok(match value {
        Value::Object(p) => Value::Object(merge_map(Map::new(), p, node)?),
        Value::Array(p) => Value::Array(merge_list(Vec::new(), p, node)?),
        other => other,
    })
}

fn apply_retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(retain) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::BadRequest("invalid patch format of retainKeys".to_string());
    let Value::Array(retain) = retain else {
        return Err(bad());
    };
    let keep = |k: &str| retain.iter().any(|r| r.as_str() == Some(k));
    for (k, v) in patch.iter() {
        if v.is_null()
            || k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            || k.starts_with(SET_ELEMENT_ORDER)
        {
            continue;
        }
        if !keep(k) {
            return Err(bad());
        }
    }
    original.retain(|k, _| keep(k));
    Ok(())
}

/// Handles every `$setElementOrder/<field>` with its patch list: merges the list, then
/// orders it. The patch list is removed from `patch` so the main loop skips it.
fn merge_ordered_lists(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
    schema: Option<Node>,
) -> Result<(), PatchError> {
    let directives: Vec<String> = patch
        .keys()
        .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
        .cloned()
        .collect();
    for directive in directives {
        let field = directive[SET_ELEMENT_ORDER.len()..].to_string();
        let Some(Value::Array(order)) = patch.get(&directive).cloned() else {
            return Err(PatchError::BadRequest(
                "invalid patch format of setElementOrder list".to_string(),
            ));
        };
        let live = match original.get(&field) {
            None => Vec::new(),
            Some(Value::Array(a)) => a.clone(),
            Some(_) => {
                return Err(internal(format!(
                    "invalid type for original list of {field}"
                )))
            }
        };
        let patch_list = match patch.shift_remove(&field) {
            None => Vec::new(),
            Some(Value::Array(a)) => a,
            Some(_) => return Err(internal(format!("invalid type for patch list of {field}"))),
        };
        let child = schema.and_then(|s| s.child(&field));
        let merge_key = list_info(child).merge_key;
        let key = merge_key.as_deref();
        validate_patch_with_set_order_list(&patch_list, &order, key)?;
        let had_field = original.contains_key(&field);
        let merged = merge_list(live.clone(), patch_list, child)?;
        let (patch_items, server_only): (Vec<Value>, Vec<Value>) = merged
            .into_iter()
            .partition(|item| index_of(&order, item, key).is_some());
        let all = normalize_element_order(patch_items, server_only, &order, &live, key);
        if had_field || !all.is_empty() {
            original.insert(field, Value::Array(all));
        }
    }
    Ok(())
}

/// Every non-directive item of the patch list must appear in `$setElementOrder`, in the
/// same relative order.
fn validate_patch_with_set_order_list(
    patch: &[Value],
    order: &[Value],
    key: Option<&str>,
) -> Result<(), PatchError> {
    let non_delete: Vec<&Value> = patch
        .iter()
        .filter(|v| directive_of(v) != Some("delete"))
        .collect();
    let (mut pi, mut oi) = (0, 0);
    while pi < non_delete.len() && oi < order.len() {
        if directive_of(non_delete[pi]).is_some() {
            pi += 1;
            continue;
        }
        if identity(non_delete[pi], key).is_some()
            && identity(non_delete[pi], key) == identity(&order[oi], key)
        {
            pi += 1;
        }
        oi += 1;
    }
    if pi < non_delete.len() && oi >= order.len() {
        return Err(internal(format!(
            "The order in patch list:\n{}\n doesn't match {} list:\n{}\n",
            go_fmt(&Value::Array(patch.to_vec())),
            SET_ELEMENT_ORDER,
            go_fmt(&Value::Array(order.to_vec()))
        )));
    }
    Ok(())
}

fn directive_of(v: &Value) -> Option<&str> {
    v.as_object()
        .and_then(|m| m.get(DIRECTIVE))
        .and_then(Value::as_str)
}

/// What identifies a list item: its merge key value for objects, itself for primitives.
fn identity<'a>(v: &'a Value, key: Option<&str>) -> Option<&'a Value> {
    match (v, key) {
        (Value::Object(m), Some(k)) => m.get(k),
        (Value::Object(_), None) => None,
        (other, _) => Some(other),
    }
}

fn index_of(list: &[Value], item: &Value, key: Option<&str>) -> Option<usize> {
    let id = identity(item, key)?;
    list.iter().position(|x| identity(x, key) == Some(id))
}

fn merge_list(
    live: Vec<Value>,
    patch: Vec<Value>,
    node: Option<Node>,
) -> Result<Vec<Value>, PatchError> {
    let info = list_info(node);
    let items = node.and_then(|n| n.items());
    if !info.strategy.merges_lists() || live.is_empty() {
        return replace_list(patch, items);
    }
    if patch.is_empty() {
        return Ok(live);
    }
    if live.iter().chain(&patch).any(Value::is_array) {
        return Err(PatchError::Invalid(
            "lists of lists are not supported".to_string(),
        ));
    }
    let objects = live.iter().chain(&patch).filter(|v| v.is_object()).count();
    if objects != 0 && objects != live.len() + patch.len() {
        return Err(internal(
            "mismatched element types in list: objects and primitives",
        ));
    }
    if objects == 0 {
        // Primitives: union, keeping first occurrences.
        let mut merged: Vec<Value> = Vec::with_capacity(live.len() + patch.len());
        for v in live.iter().chain(&patch) {
            if !merged.contains(v) {
                merged.push(v.clone());
            }
        }
        let (patch_items, server_only) = merged.into_iter().partition(|v| patch.contains(v));
        return Ok(normalize_element_order(
            patch_items,
            server_only,
            &patch,
            &live,
            None,
        ));
    }
    let Some(key) = info.merge_key.as_deref() else {
        let name = node
            .and_then(|n| n.parent_field())
            .map(|(t, f)| format!("{t}.{f}"))
            .unwrap_or_default();
        return Err(internal(format!(
            "cannot merge lists without merge key for {name}"
        )));
    };

    // Directive elements first: deletions apply to the live list, a replace wins outright.
    let mut live = live;
    let mut plain = Vec::with_capacity(patch.len());
    let mut replace = false;
    for v in patch {
        let Value::Object(m) = &v else {
            plain.push(v);
            continue;
        };
        match m.get(DIRECTIVE) {
            None => plain.push(v),
            Some(d) if d == "delete" => {
                let id = m.get(key).ok_or_else(|| no_merge_key(m, key))?;
                live.retain(|x| x.get(key) != Some(id));
            }
            Some(d) if d == "replace" => replace = true,
            Some(d) if d == "merge" => {
                return Err(internal(
                    "merging lists cannot yet be specified in the patch",
                ))
            }
            Some(d) => return Err(bad_patch_type(d, m)),
        }
    }
    if replace {
        return replace_list(plain, items);
    }

    let mut merged = live.clone();
    for v in &plain {
        let Value::Object(p) = v else { continue };
        let id = p.get(key).ok_or_else(|| no_merge_key(p, key))?;
        match merged.iter_mut().find(|x| x.get(key) == Some(id)) {
            Some(Value::Object(existing)) => {
                let current = std::mem::take(existing);
                *existing = merge_map(current, p.clone(), items)?;
            }
            _ => merged.push(Value::Object(merge_map(Map::new(), p.clone(), items)?)),
        }
    }
    let (patch_items, server_only) = merged
        .into_iter()
        .partition(|v| index_of(&plain, v, Some(key)).is_some());
    Ok(normalize_element_order(
        patch_items,
        server_only,
        &plain,
        &live,
        Some(key),
    ))
}

/// A list the patch replaces: its items, minus directive elements, cleaned.
fn replace_list(patch: Vec<Value>, items: Option<Node>) -> Result<Vec<Value>, PatchError> {
    patch
        .into_iter()
        .filter(|v| directive_of(v).is_none())
        .map(|v| fresh(v, items))
        .collect()
}

/// Sorts patch items by `patch_order` and server-only items by `server_order`, then
/// interleaves them: a server-only item goes first only while the live order puts it
/// before the next patch item.
fn normalize_element_order(
    mut patch_items: Vec<Value>,
    mut server_only: Vec<Value>,
    patch_order: &[Value],
    server_order: &[Value],
    key: Option<&str>,
) -> Vec<Value> {
    let rank = |order: &[Value], v: &Value| index_of(order, v, key).unwrap_or(usize::MAX);
    patch_items.sort_by_key(|v| rank(patch_order, v));
    server_only.sort_by_key(|v| rank(server_order, v));

    let mut out = Vec::with_capacity(patch_items.len() + server_only.len());
    let mut left = server_only.into_iter().peekable();
    let mut right = patch_items.into_iter().peekable();
    loop {
        let take_left = match (left.peek(), right.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(l), Some(r)) => match (
                index_of(server_order, l, key),
                index_of(server_order, r, key),
            ) {
                (Some(li), Some(ri)) => li < ri,
                _ => false,
            },
        };
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::root;
    use serde_json::json;

    fn deployment() -> Value {
        json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "labels": {"app": "web", "tier": "front"}, "finalizers": ["a", "b"]},
            "spec": {
                "replicas": 2,
                "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
                "template": {"spec": {
                    "containers": [
                        {"name": "nginx", "image": "nginx:1.14", "ports": [
                            {"containerPort": 80, "protocol": "TCP"},
                            {"containerPort": 8080, "protocol": "TCP"}
                        ], "env": [{"name": "A", "value": "1"}], "args": ["--x"]},
                        {"name": "sidecar", "image": "busybox"}
                    ],
                    "volumes": [{"name": "data", "emptyDir": {}}],
                    "tolerations": [{"key": "k", "operator": "Exists"}]
                }}
            }
        })
    }

    fn apply(patch: Value) -> Result<Value, PatchError> {
        strategic_merge_patch(&deployment(), &patch, root("apps", "v1", "Deployment"))
    }

    fn names(v: &Value) -> Vec<String> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|c| c["name"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn kubectl_apply_patches() {
        // (description, patch, pointer into the result, expected value there)
        let cases: Vec<(&str, Value, &str, Value)> = vec![
            (
                "image change from kubectl apply",
                json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"sidecar"}],"containers":[{"image":"nginx:1.16","name":"nginx"}]}}}}),
                "/spec/template/spec/containers",
                json!([
                    {"name": "nginx", "image": "nginx:1.16", "ports": [
                        {"containerPort": 80, "protocol": "TCP"}, {"containerPort": 8080, "protocol": "TCP"}
                    ], "env": [{"name": "A", "value": "1"}], "args": ["--x"]},
                    {"name": "sidecar", "image": "busybox"}
                ]),
            ),
            (
                "container port removed by kubectl apply",
                json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"},{"name":"sidecar"}],"containers":[{"$setElementOrder/ports":[{"containerPort":80}],"name":"nginx","ports":[{"$patch":"delete","containerPort":8080}]}]}}}}),
                "/spec/template/spec/containers/0/ports",
                json!([{"containerPort": 80, "protocol": "TCP"}]),
            ),
            (
                "container removed by kubectl apply",
                json!({"spec":{"template":{"spec":{"$setElementOrder/containers":[{"name":"nginx"}],"containers":[{"$patch":"delete","name":"sidecar"}]}}}}),
                "/spec/template/spec/containers/1",
                Value::Null,
            ),
            (
                "label removed with null",
                json!({"metadata":{"labels":{"tier":null}}}),
                "/metadata/labels",
                json!({"app": "web"}),
            ),
            (
                "primitive merge list is unioned",
                json!({"metadata":{"finalizers":["c","a"]}}),
                "/metadata/finalizers",
                json!(["c", "a", "b"]),
            ),
            (
                "finalizer removed by kubectl apply",
                json!({"metadata":{"$deleteFromPrimitiveList/finalizers":["b"],"$setElementOrder/finalizers":["a"]}}),
                "/metadata/finalizers",
                json!(["a"]),
            ),
            (
                "strategy type switched with retainKeys",
                json!({"spec":{"strategy":{"$retainKeys":["type"],"type":"Recreate","rollingUpdate":null}}}),
                "/spec/strategy",
                json!({"type": "Recreate"}),
            ),
            (
                "volume source switched with retainKeys",
                json!({"spec":{"template":{"spec":{"$setElementOrder/volumes":[{"name":"data"}],"volumes":[{"$retainKeys":["configMap","name"],"configMap":{"name":"cm"},"emptyDir":null,"name":"data"}]}}}}),
                "/spec/template/spec/volumes",
                json!([{"name": "data", "configMap": {"name": "cm"}}]),
            ),
            (
                "unmarked list is replaced",
                json!({"spec":{"template":{"spec":{"tolerations":[{"key":"other","operator":"Exists"}]}}}}),
                "/spec/template/spec/tolerations",
                json!([{"key": "other", "operator": "Exists"}]),
            ),
            (
                "atomic primitive list is replaced",
                json!({"spec":{"template":{"spec":{"containers":[{"name":"nginx","args":["--y"]}]}}}}),
                "/spec/template/spec/containers/0/args",
                json!(["--y"]),
            ),
            (
                "env entry added merges by name",
                json!({"spec":{"template":{"spec":{"containers":[{"name":"nginx","env":[{"name":"B","value":"2"}]}]}}}}),
                "/spec/template/spec/containers/0/env",
                json!([{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]),
            ),
            (
                "list replaced with $patch: replace",
                json!({"spec":{"template":{"spec":{"containers":[{"$patch":"replace"},{"name":"only","image":"x"}]}}}}),
                "/spec/template/spec/containers",
                json!([{"name": "only", "image": "x"}]),
            ),
            (
                "map replaced with $patch: replace",
                json!({"metadata":{"labels":{"$patch":"replace","new":"yes"}}}),
                "/metadata/labels",
                json!({"new": "yes"}),
            ),
            (
                "map emptied with $patch: delete",
                json!({"spec":{"strategy":{"$patch":"delete"}}}),
                "/spec/strategy",
                json!({}),
            ),
            (
                "new field with nulls and directives is cleaned",
                json!({"spec":{"template":{"spec":{"nodeSelector":{"disk":"ssd","gone":null}}}}}),
                "/spec/template/spec/nodeSelector",
                json!({"disk": "ssd"}),
            ),
            (
                "scalar replaced",
                json!({"spec":{"replicas":5}}),
                "/spec/replicas",
                json!(5),
            ),
        ];
        for (name, patch, pointer, want) in cases {
            let out = apply(patch).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(
                out.pointer(pointer).cloned().unwrap_or(Value::Null),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn new_containers_go_first_without_set_element_order() {
        // Matches upstream (and the Kubernetes docs' `kubectl patch` example).
        let out = apply(
            json!({"spec":{"template":{"spec":{"containers":[{"name":"log","image":"fluentd"}]}}}}),
        )
        .expect("patch");
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["log", "nginx", "sidecar"]
        );
    }

    #[test]
    fn set_element_order_orders_patch_items_and_keeps_server_only_items() {
        let out = apply(json!({"spec":{"template":{"spec":{
            "$setElementOrder/containers":[{"name":"sidecar"},{"name":"log"},{"name":"nginx"}],
            "containers":[{"name":"log","image":"fluentd"}]
        }}}}))
        .expect("patch");
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["sidecar", "log", "nginx"]
        );

        // An item only the server has (e.g. injected) keeps its live position.
        let out = apply(json!({"spec":{"template":{"spec":{
            "$setElementOrder/containers":[{"name":"nginx"},{"name":"new"}],
            "containers":[{"name":"new","image":"x"}]
        }}}}))
        .expect("patch");
        assert_eq!(
            names(&out["spec"]["template"]["spec"]["containers"]),
            ["nginx", "new", "sidecar"]
        );
    }

    #[test]
    fn errors_match_upstream() {
        let cases: Vec<(Value, u16, &str)> = vec![
            (
                json!({"spec":{"strategy":{"$patch":"bogus"}}}),
                500,
                "unknown patch type: bogus in map: map[$patch:bogus]",
            ),
            (
                json!({"spec":{"template":{"spec":{"containers":[{"image":"x"}]}}}}),
                500,
                "map: map[image:x] does not contain declared merge key: name",
            ),
            (
                json!({"spec":{"template":{"spec":{"containers":[{"$patch":"merge","name":"x"}]}}}}),
                500,
                "merging lists cannot yet be specified in the patch",
            ),
            (
                json!({"spec":{"strategy":{"$retainKeys":"type"}}}),
                400,
                "invalid patch format of retainKeys",
            ),
            (
                json!({"spec":{"strategy":{"$retainKeys":["type"],"rollingUpdate":{}}}}),
                400,
                "invalid patch format of retainKeys",
            ),
            (
                json!({"metadata":{"$setElementOrder/finalizers":"a"}}),
                400,
                "invalid patch format of setElementOrder list",
            ),
            (
                json!({"metadata":{"$deleteFromPrimitiveList/finalizers":"a"}}),
                400,
                "invalid patch format of primitive list",
            ),
            (
                json!(["not", "a", "map"]),
                400,
                "json: cannot unmarshal array into Go value of type map[string]interface {}",
            ),
        ];
        for (patch, code, msg) in cases {
            let err = apply(patch.clone()).expect_err(&patch.to_string());
            assert_eq!(
                (err.code(), err.to_string().as_str()),
                (code, msg),
                "{patch}"
            );
        }
        let order = apply(json!({"spec":{"template":{"spec":{
            "$setElementOrder/containers":[{"name":"nginx"}],
            "containers":[{"name":"other","image":"x"}]
        }}}}))
        .expect_err("order mismatch");
        assert!(
            order.to_string().starts_with("The order in patch list:"),
            "{order}"
        );
    }

    #[test]
    fn services_pods_and_untyped_roots() {
        let svc = json!({"spec": {"ports": [{"port": 80, "protocol": "TCP", "targetPort": 8080}], "selector": {"app": "a"}}});
        let out = strategic_merge_patch(
            &svc,
            &json!({"spec": {"ports": [{"port": 443, "protocol": "TCP"}, {"port": 80, "targetPort": 9090}]}}),
            root("", "v1", "Service"),
        )
        .expect("service");
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 443, "protocol": "TCP"}, {"port": 80, "protocol": "TCP", "targetPort": 9090}])
        );

        let pod = json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}});
        let out = strategic_merge_patch(
            &pod,
            &json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            root("", "v1", "Pod"),
        )
        .expect("pod status");
        assert_eq!(
            out["status"]["conditions"],
            json!([{"type": "Ready", "status": "True"}, {"type": "PodScheduled", "status": "True"}])
        );

        // Custom resources: plain JSON merge patch, lists replaced and directives kept as data.
        let cr = json!({"spec": {"items": [1, 2], "keep": true}});
        let out = strategic_merge_patch(&cr, &json!({"spec": {"items": [3]}}), None).expect("cr");
        assert_eq!(out, json!({"spec": {"items": [3], "keep": true}}));

        // Unknown fields of a built-in kind merge like a merge patch.
        let out = apply(json!({"spec": {"extra": {"a": [1]}}})).expect("unknown field");
        assert_eq!(out["spec"]["extra"], json!({"a": [1]}));
        assert_eq!(
            strategic_merge_patch(
                &deployment(),
                &Value::Null,
                root("apps", "v1", "Deployment")
            ),
            Ok(deployment())
        );
        assert_eq!(
            strategic_merge_patch_bytes(&deployment(), b"{bad", root("apps", "v1", "Deployment"))
                .map_err(|e| e.code()),
            Err(400)
        );
    }
}
