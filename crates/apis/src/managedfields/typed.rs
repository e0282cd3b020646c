//! Type-aware walks over JSON objects, as structured-merge-diff's `typed` package:
//! the field set an object sets, the comparison of two objects, the apply merge, and
//! removal of owned items. Atomic lists and maps are leaves; granular lists are walked
//! item by item under their key (`k:{..}`) or value (`v:..`).
//!
//! Objects from storage are handled leniently: a list whose items cannot be keyed is
//! treated as atomic. Applied configurations are checked strictly by [`validate`] first.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::fieldset::FieldSet;
use super::path::{value_eq, FieldPath, PathElement};
use super::typeinfo::{ListKind, MapKind, TypeInfo};

/// What changed between two objects, as upstream's `typed.Comparison`. Containers that
/// appear or disappear as a whole are recorded themselves as well as their contents.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Comparison {
    pub added: FieldSet,
    pub modified: FieldSet,
    pub removed: FieldSet,
}

impl Comparison {
    #[cfg(test)]
    pub fn is_same(&self) -> bool {
        self.added.is_empty() && self.modified.is_empty() && self.removed.is_empty()
    }

    /// Drops `fields` and everything below them (upstream `ExcludeFields`).
    pub fn exclude(self, fields: &FieldSet) -> Comparison {
        if fields.is_empty() {
            return self;
        }
        Comparison {
            added: self.added.recursive_difference(fields),
            modified: self.modified.recursive_difference(fields),
            removed: self.removed.recursive_difference(fields),
        }
    }
}

/// See [`FieldSet::from_object`].
pub(crate) fn to_field_set(v: &Value, ti: &dyn TypeInfo) -> FieldSet {
    let mut out = FieldSet::new();
    to_set(ti, v, &mut Vec::new(), &mut out);
    out
}

fn to_set(ti: &dyn TypeInfo, v: &Value, path: &mut Vec<PathElement>, out: &mut FieldSet) {
    match v {
        Value::Object(m) => match ti.map_kind(path) {
            MapKind::Atomic => out.insert(path),
            kind => {
                for (k, child) in m {
                    path.push(PathElement::Field(k.clone()));
                    to_set(ti, child, path, out);
                    if kind == MapKind::Map {
                        out.insert(path);
                    }
                    path.pop();
                }
            }
        },
        Value::Array(items) => match granular_items(ti, path, items) {
            None => out.insert(path),
            Some(indexed) => {
                for (pe, item) in indexed {
                    path.push(pe);
                    to_set(ti, item, path, out);
                    out.insert(path);
                    path.pop();
                }
            }
        },
        _ => out.insert(path),
    }
}

/// Checks that every associative list in an applied configuration can be keyed and has
/// no duplicate keys; the error reads like upstream's
/// `.spec.containers: element 0: associative list with keys has an element that omits key field "name" …`.
pub(crate) fn validate(v: &Value, ti: &dyn TypeInfo) -> Result<(), String> {
    validate_at(ti, v, &mut Vec::new())
}

fn validate_at(ti: &dyn TypeInfo, v: &Value, path: &mut Vec<PathElement>) -> Result<(), String> {
    match v {
        Value::Object(m) if ti.map_kind(path) != MapKind::Atomic => {
            for (k, child) in m {
                path.push(PathElement::Field(k.clone()));
                validate_at(ti, child, path)?;
                path.pop();
            }
        }
        Value::Array(items) => {
            let kind = ti.list_kind(path);
            if kind == ListKind::Atomic {
                return Ok(());
            }
            let indexed = index_items(ti, path, &kind, items, true)
                .map_err(|e| format!("{}: {e}", FieldPath(path.clone())))?;
            for (pe, item) in indexed {
                path.push(pe);
                validate_at(ti, item, path)?;
                path.pop();
            }
        }
        _ => {}
    }
    Ok(())
}

/// The path element of one item of a granular list.
fn item_pe(
    ti: &dyn TypeInfo,
    path: &[PathElement],
    kind: &ListKind,
    item: &Value,
) -> Result<PathElement, String> {
    match kind {
        ListKind::Atomic => Err("atomic lists have no item paths".into()),
        ListKind::Set => match item {
            Value::Null => {
                Err("associative list without keys has an element that's a null type".into())
            }
            Value::Object(_) | Value::Array(_) => {
                Err("associative list without keys has an element that's not a scalar".into())
            }
            scalar => Ok(PathElement::Value(scalar.clone())),
        },
        ListKind::Map { keys } => {
            let Value::Object(m) = item else {
                return Err(
                    "associative list with keys has an element that's not a map type".into(),
                );
            };
            let mut fields = Vec::with_capacity(keys.len());
            for key in keys {
                let value = match m.get(key) {
                    Some(v) => v.clone(),
                    None => ti.key_default(path, key).ok_or_else(|| {
                        format!("associative list with keys has an element that omits key field {key:?} (and doesn't have default value)")
                    })?,
                };
                fields.push((key.clone(), value));
            }
            Ok(PathElement::key(fields))
        }
    }
}

/// Items with their path elements, first occurrence of a key winning (or, when
/// `strict`, duplicates being an error).
fn index_items<'v>(
    ti: &dyn TypeInfo,
    path: &[PathElement],
    kind: &ListKind,
    items: &'v [Value],
    strict: bool,
) -> Result<Vec<(PathElement, &'v Value)>, String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let pe = item_pe(ti, path, kind, item).map_err(|e| format!("element {i}: {e}"))?;
        if !seen.insert(pe.clone()) {
            if strict {
                return Err(format!("duplicate entries for key {pe}"));
            }
            continue;
        }
        out.push((pe, item));
    }
    Ok(out)
}

/// The keyed items of the list at `path`, or `None` when it is atomic or unkeyable.
fn granular_items<'v>(
    ti: &dyn TypeInfo,
    path: &[PathElement],
    items: &'v [Value],
) -> Option<Vec<(PathElement, &'v Value)>> {
    let kind = ti.list_kind(path);
    if kind == ListKind::Atomic {
        return None;
    }
    index_items(ti, path, &kind, items, false).ok()
}

fn list_items(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn is_empty_or_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Compares `lhs` (before) with `rhs` (after).
pub(crate) fn compare(lhs: &Value, rhs: &Value, ti: &dyn TypeInfo) -> Comparison {
    let mut c = Comparer {
        ti,
        out: Comparison::default(),
    };
    c.node(Some(lhs), Some(rhs), &mut Vec::new());
    c.out
}

struct Comparer<'a> {
    ti: &'a dyn TypeInfo,
    out: Comparison,
}

impl Comparer<'_> {
    fn node(&mut self, lhs: Option<&Value>, rhs: Option<&Value>, path: &mut Vec<PathElement>) {
        match (lhs, rhs) {
            (None, None) => {}
            (None, Some(_)) => {
                self.children(None, rhs, path);
                self.out.added.insert(path);
            }
            (Some(_), None) => {
                self.children(lhs, None, path);
                self.out.removed.insert(path);
            }
            (Some(l), Some(r)) => self.both(l, r, path),
        }
    }

    fn both(&mut self, l: &Value, r: &Value, path: &mut Vec<PathElement>) {
        let same_shape = matches!(
            (l, r),
            (Value::Object(_), Value::Object(_) | Value::Null)
                | (Value::Null, Value::Object(_) | Value::Array(_))
                | (Value::Array(_), Value::Array(_) | Value::Null)
        );
        if !same_shape {
            // Scalars, or a container turned into something else.
            if !value_eq(l, r) {
                self.out.modified.insert(path);
            }
            if l.is_object() || l.is_array() || r.is_object() || r.is_array() {
                self.children(Some(l), None, path);
                self.children(None, Some(r), path);
            }
            return;
        }
        if (is_empty_or_null(l) && is_empty_or_null(r)) || !self.granular(l, r, path) {
            if !value_eq(l, r) {
                self.out.modified.insert(path);
            }
            return;
        }
        // A null container has no entries: only its contents change.
        let l = (!l.is_null()).then_some(l);
        let r = (!r.is_null()).then_some(r);
        self.children(l, r, path);
    }

    /// Whether the container(s) at `path` are walked entry by entry.
    fn granular(&self, l: &Value, r: &Value, path: &[PathElement]) -> bool {
        let keyable = |v: &Value| match v {
            Value::Array(items) => granular_items(self.ti, path, items).is_some(),
            _ => true,
        };
        if l.is_object() || r.is_object() {
            self.ti.map_kind(path) != MapKind::Atomic
        } else {
            keyable(l) && keyable(r)
        }
    }

    /// Walks the entries of the container(s) at `path`; `None` is an absent side.
    fn children(&mut self, l: Option<&Value>, r: Option<&Value>, path: &mut Vec<PathElement>) {
        let (lo, ro) = (l.and_then(Value::as_object), r.and_then(Value::as_object));
        if lo.is_some() || ro.is_some() {
            if self.ti.map_kind(path) == MapKind::Atomic {
                return;
            }
            let empty = Map::new();
            let (lo, ro) = (lo.unwrap_or(&empty), ro.unwrap_or(&empty));
            let keys: Vec<&String> = lo
                .keys()
                .chain(ro.keys().filter(|k| !lo.contains_key(*k)))
                .collect();
            for k in keys {
                path.push(PathElement::Field(k.clone()));
                self.node(lo.get(k), ro.get(k), path);
                path.pop();
            }
            return;
        }
        let (Some(li), Some(ri)) = (
            granular_items(self.ti, path, list_items(l)),
            granular_items(self.ti, path, list_items(r)),
        ) else {
            return;
        };
        let lmap: BTreeMap<PathElement, &Value> = li.iter().cloned().collect();
        let rmap: BTreeMap<PathElement, &Value> = ri.iter().cloned().collect();
        let pes: Vec<PathElement> = li
            .into_iter()
            .map(|(pe, _)| pe)
            .chain(ri.into_iter().map(|(pe, _)| pe))
            .collect();
        let mut done = BTreeSet::new();
        for pe in pes {
            if !done.insert(pe.clone()) {
                continue;
            }
            let (lv, rv) = (lmap.get(&pe).copied(), rmap.get(&pe).copied());
            path.push(pe);
            self.node(lv, rv, path);
            path.pop();
        }
    }
}

/// Merges an applied configuration into a live object (upstream `TypedValue.Merge`):
/// the configuration's values win, granular maps and lists are merged entry by entry,
/// atomic ones are replaced. List order follows the configuration for the items it
/// names, with live-only items kept in place.
pub(crate) fn merge(lhs: &Value, rhs: &Value, ti: &dyn TypeInfo) -> Value {
    merge_both(ti, lhs, rhs, &mut Vec::new())
}

fn merge_opt(
    ti: &dyn TypeInfo,
    l: Option<&Value>,
    r: Option<&Value>,
    path: &mut Vec<PathElement>,
) -> Option<Value> {
    match (l, r) {
        (None, None) => None,
        (Some(l), None) => Some(l.clone()),
        (None, Some(r)) => Some(r.clone()),
        (Some(l), Some(r)) => Some(merge_both(ti, l, r, path)),
    }
}

fn merge_both(ti: &dyn TypeInfo, l: &Value, r: &Value, path: &mut Vec<PathElement>) -> Value {
    match (l, r) {
        (Value::Object(lm), Value::Object(rm)) => {
            if ti.map_kind(path) == MapKind::Atomic || (lm.is_empty() && rm.is_empty()) {
                return r.clone();
            }
            let mut out = Map::new();
            for (k, lv) in lm {
                path.push(PathElement::Field(k.clone()));
                if let Some(v) = merge_opt(ti, Some(lv), rm.get(k), path) {
                    out.insert(k.clone(), v);
                }
                path.pop();
            }
            for (k, rv) in rm.iter().filter(|(k, _)| !lm.contains_key(*k)) {
                out.insert(k.clone(), rv.clone());
            }
            Value::Object(out)
        }
        // A null over a granular container adds no entries, so the live ones stay.
        (Value::Object(lm), Value::Null)
            if !lm.is_empty() && ti.map_kind(path) != MapKind::Atomic =>
        {
            l.clone()
        }
        (Value::Array(la), Value::Null)
            if !la.is_empty() && granular_items(ti, path, la).is_some() =>
        {
            l.clone()
        }
        (Value::Array(la), Value::Array(ra)) => {
            if la.is_empty() && ra.is_empty() {
                return r.clone();
            }
            match (granular_items(ti, path, la), granular_items(ti, path, ra)) {
                (Some(li), Some(ri)) => Value::Array(merge_list(ti, &li, &ri, path)),
                _ => r.clone(),
            }
        }
        _ => r.clone(),
    }
}

fn merge_list(
    ti: &dyn TypeInfo,
    l: &[(PathElement, &Value)],
    r: &[(PathElement, &Value)],
    path: &mut Vec<PathElement>,
) -> Vec<Value> {
    let lmap: BTreeMap<&PathElement, &Value> = l.iter().map(|(pe, v)| (pe, *v)).collect();
    let rmap: BTreeMap<&PathElement, &Value> = r.iter().map(|(pe, v)| (pe, *v)).collect();
    // Items in both lists, in the configuration's order: each is emitted at the
    // configuration's position, live-only items keep their place around them.
    let shared: Vec<&PathElement> = r
        .iter()
        .map(|(pe, _)| pe)
        .filter(|pe| lmap.contains_key(pe))
        .collect();
    let mut next_shared = 0;
    let mut emitted: BTreeSet<&PathElement> = BTreeSet::new();
    let mut out = Vec::with_capacity(l.len().max(r.len()));
    let (mut li, mut ri) = (0, 0);
    let mut emit =
        |pe: &PathElement, lv: Option<&Value>, rv: Option<&Value>, out: &mut Vec<Value>| {
            path.push(pe.clone());
            if let Some(v) = merge_opt(ti, lv, rv, path) {
                out.push(v);
            }
            path.pop();
        };
    while li < l.len() || ri < r.len() {
        if li < l.len() {
            let pe = &l[li].0;
            if ri < r.len() && *pe == r[ri].0 {
                emit(pe, Some(l[li].1), Some(r[ri].1), &mut out);
                emitted.insert(pe);
                li += 1;
                ri += 1;
            } else if !rmap.contains_key(pe) {
                emit(pe, Some(l[li].1), None, &mut out);
                li += 1;
                continue;
            } else if emitted.contains(pe) || ri >= r.len() || shared.get(next_shared) != Some(&pe)
            {
                // A shared item that is emitted at the configuration's position instead.
                li += 1;
                continue;
            } else {
                let (rpe, rv) = &r[ri];
                emit(rpe, lmap.get(rpe).copied(), Some(rv), &mut out);
                emitted.insert(rpe);
                ri += 1;
            }
        } else {
            let (rpe, rv) = &r[ri];
            emit(rpe, lmap.get(rpe).copied(), Some(rv), &mut out);
            emitted.insert(rpe);
            ri += 1;
        }
        while shared
            .get(next_shared)
            .is_some_and(|pe| emitted.contains(*pe))
        {
            next_shared += 1;
        }
    }
    out
}

/// Removes every path in `set` from `v` (upstream `RemoveItems`): a member removes the
/// field or item with everything below it. Containers emptied by the removal disappear,
/// as they would after a round trip through upstream's typed objects.
pub(crate) fn remove_items(v: &Value, set: &FieldSet, ti: &dyn TypeInfo) -> Value {
    if set.is_empty() {
        return v.clone();
    }
    remove_at(ti, v, set, &mut Vec::new()).unwrap_or_else(|| Value::Object(Map::new()))
}

fn remove_at(
    ti: &dyn TypeInfo,
    v: &Value,
    set: &FieldSet,
    path: &mut Vec<PathElement>,
) -> Option<Value> {
    match v {
        Value::Object(m) if !m.is_empty() && ti.map_kind(path) != MapKind::Atomic => {
            let mut out = Map::new();
            for (k, child) in m {
                let pe = PathElement::Field(k.clone());
                if set.has_member(&pe) {
                    continue;
                }
                let kept = match set.with_prefix(&pe) {
                    Some(sub) => {
                        path.push(pe);
                        let kept = remove_at(ti, child, sub, path);
                        path.pop();
                        kept
                    }
                    None => Some(child.clone()),
                };
                if let Some(kept) = kept {
                    out.insert(k.clone(), kept);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        Value::Array(items) if !items.is_empty() => {
            let kind = ti.list_kind(path);
            let pes: Option<Vec<PathElement>> = match kind {
                ListKind::Atomic => None,
                _ => items
                    .iter()
                    .map(|item| item_pe(ti, path, &kind, item).ok())
                    .collect(),
            };
            let Some(pes) = pes else {
                return Some(v.clone());
            };
            let mut out = Vec::with_capacity(items.len());
            for (pe, item) in pes.into_iter().zip(items) {
                if set.has_member(&pe) {
                    continue;
                }
                let kept = match set.with_prefix(&pe) {
                    Some(sub) => {
                        path.push(pe);
                        let kept = remove_at(ti, item, sub, path);
                        path.pop();
                        kept
                    }
                    None => Some(item.clone()),
                };
                out.extend(kept);
            }
            (!out.is_empty()).then_some(Value::Array(out))
        }
        _ => Some(v.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managedfields::typeinfo::UnknownType;
    use serde_json::json;

    /// Containers keyed by name, like a pod spec; everything else unknown.
    struct Containers;
    impl TypeInfo for Containers {
        fn list_kind(&self, path: &[PathElement]) -> ListKind {
            match path.last() {
                Some(PathElement::Field(f)) if f == "containers" => ListKind::Map {
                    keys: vec!["name".into()],
                },
                Some(PathElement::Field(f)) if f == "ports" => ListKind::Map {
                    keys: vec!["containerPort".into(), "protocol".into()],
                },
                _ => UnknownType.list_kind(path),
            }
        }
        fn map_kind(&self, path: &[PathElement]) -> MapKind {
            match path.last() {
                Some(PathElement::Field(f)) if f == "selector" => MapKind::Atomic,
                _ => UnknownType.map_kind(path),
            }
        }
    }

    fn fv1(s: &FieldSet) -> Value {
        s.to_fields_v1()
    }

    #[test]
    fn merge_table() {
        let cases = [
            (
                "scalar wins",
                json!({"a": 1, "b": 2}),
                json!({"a": 3}),
                json!({"a": 3, "b": 2}),
            ),
            (
                "atomic list replaced",
                json!({"l": [1, 2]}),
                json!({"l": [3]}),
                json!({"l": [3]}),
            ),
            (
                "atomic map replaced",
                json!({"selector": {"a": 1}}),
                json!({"selector": {"b": 2}}),
                json!({"selector": {"b": 2}}),
            ),
            (
                "list map merged by key",
                json!({"containers": [{"name": "a", "image": "x", "tty": true}, {"name": "b", "image": "y"}]}),
                json!({"containers": [{"name": "a", "image": "z"}]}),
                json!({"containers": [{"name": "a", "image": "z", "tty": true}, {"name": "b", "image": "y"}]}),
            ),
            (
                "applied order wins for shared items",
                json!({"containers": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}),
                json!({"containers": [{"name": "c"}, {"name": "a"}]}),
                json!({"containers": [{"name": "b"}, {"name": "c"}, {"name": "a"}]}),
            ),
            (
                "new items at their applied position",
                json!({"containers": [{"name": "a"}]}),
                json!({"containers": [{"name": "x"}, {"name": "a"}]}),
                json!({"containers": [{"name": "x"}, {"name": "a"}]}),
            ),
            (
                "defaulted key field matches",
                json!({"ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]}),
                json!({"ports": [{"containerPort": 80}]}),
                json!({"ports": [{"containerPort": 80, "protocol": "TCP", "name": "http"}]}),
            ),
            (
                "set merged",
                json!({"metadata": {"finalizers": ["a"]}}),
                json!({"metadata": {"finalizers": ["b"]}}),
                json!({"metadata": {"finalizers": ["a", "b"]}}),
            ),
            (
                "null keeps granular map",
                json!({"m": {"a": 1}}),
                json!({"m": null}),
                json!({"m": {"a": 1}}),
            ),
        ];
        for (name, live, applied, want) in cases {
            assert_eq!(merge(&live, &applied, &Containers), want, "{name}");
        }
    }

    #[test]
    fn compare_table() {
        let cases = [
            (
                "modified leaf",
                json!({"a": 1}),
                json!({"a": 2}),
                json!({}),
                json!({"f:a": {}}),
                json!({}),
            ),
            (
                "int equals float",
                json!({"a": 1}),
                json!({"a": 1.0}),
                json!({}),
                json!({}),
                json!({}),
            ),
            (
                "added struct records itself",
                json!({}),
                json!({"s": {"x": 1}}),
                json!({"f:s": {".": {}, "f:x": {}}}),
                json!({}),
                json!({}),
            ),
            (
                "removed leaf",
                json!({"a": 1, "b": 1}),
                json!({"a": 1}),
                json!({}),
                json!({}),
                json!({"f:b": {}}),
            ),
            (
                "list item changed",
                json!({"containers": [{"name": "a", "image": "x"}]}),
                json!({"containers": [{"name": "a", "image": "y"}, {"name": "b"}]}),
                json!({"f:containers": {"k:{\"name\":\"b\"}": {".": {}, "f:name": {}}}}),
                json!({"f:containers": {"k:{\"name\":\"a\"}": {"f:image": {}}}}),
                json!({}),
            ),
            (
                "atomic list is one leaf",
                json!({"l": [1]}),
                json!({"l": [2]}),
                json!({}),
                json!({"f:l": {}}),
                json!({}),
            ),
            (
                "empty to empty is same",
                json!({"m": {}}),
                json!({"m": {}}),
                json!({}),
                json!({}),
                json!({}),
            ),
        ];
        for (name, l, r, added, modified, removed) in cases {
            let c = compare(&l, &r, &Containers);
            assert_eq!(
                (fv1(&c.added), fv1(&c.modified), fv1(&c.removed)),
                (added, modified, removed),
                "{name}"
            );
        }
        assert!(compare(&json!({"a": [1]}), &json!({"a": [1]}), &Containers).is_same());
    }

    #[test]
    fn remove_table() {
        let obj = json!({
            "metadata": {"labels": {"app": "a", "tier": "b"}},
            "spec": {"containers": [{"name": "a", "image": "x"}, {"name": "b", "image": "y"}]}
        });
        let item_a = PathElement::key([("name".to_string(), json!("a"))]);
        let mut containers_a = FieldPath::fields(&["spec", "containers"]).0;
        containers_a.push(item_a.clone());
        let mut image_b = FieldPath::fields(&["spec", "containers"]).0;
        image_b.push(PathElement::key([("name".to_string(), json!("b"))]));
        image_b.push(PathElement::field("image"));

        let mut one_label = FieldSet::new();
        one_label.insert(FieldPath::fields(&["metadata", "labels", "tier"]).elements());
        let mut all_labels = one_label.clone();
        all_labels.insert(FieldPath::fields(&["metadata", "labels", "app"]).elements());
        let mut items = FieldSet::new();
        items.insert(&containers_a);
        items.insert(&image_b);

        let cases = [
            (
                "one label",
                one_label,
                json!({"metadata": {"labels": {"app": "a"}}, "spec": obj["spec"].clone()}),
            ),
            (
                "emptied map disappears",
                all_labels,
                json!({"spec": obj["spec"].clone()}),
            ),
            (
                "list item and a field of another",
                items,
                json!({"metadata": obj["metadata"].clone(), "spec": {"containers": [{"name": "b"}]}}),
            ),
        ];
        for (name, set, want) in cases {
            assert_eq!(remove_items(&obj, &set, &Containers), want, "{name}");
        }
    }

    #[test]
    fn validation_errors_name_the_list() {
        let missing = json!({"spec": {"containers": [{"image": "x"}]}});
        assert_eq!(
            validate(&missing, &Containers).expect_err("missing key"),
            ".spec.containers: element 0: associative list with keys has an element that omits key field \"name\" (and doesn't have default value)"
        );
        let dup = json!({"spec": {"containers": [{"name": "a"}, {"name": "a"}]}});
        assert_eq!(
            validate(&dup, &Containers).expect_err("duplicate"),
            ".spec.containers: duplicate entries for key [name=\"a\"]"
        );
        assert!(validate(
            &json!({"spec": {"containers": [{"name": "a"}], "l": [1, 1]}}),
            &Containers
        )
        .is_ok());
    }
}
