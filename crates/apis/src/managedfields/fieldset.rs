//! Field sets: the trie of owned paths a `managedFields` entry records, as
//! structured-merge-diff's `fieldpath.Set`, with its `fieldsV1` JSON form.
//!
//! A node has *members* (paths that end here) and *children* (paths that continue).
//! An element can be both: a list item owned as a whole whose fields are also owned.
//! `fieldsV1` writes a member as `"<pe>": {}` and marks a child that is also a member
//! with `".": {}` inside it.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value};

use super::path::{FieldPath, PathElement, PathElementError};
use super::typed;
use super::typeinfo::{MapKind, TypeInfo};

/// Why a `fieldsV1` value could not be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldSetError {
    #[error("fieldsV1 must be a JSON object, got {0}")]
    NotAnObject(String),
    #[error(transparent)]
    PathElement(#[from] PathElementError),
}

/// A set of field paths. Children are never empty.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSet {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, FieldSet>,
}

impl FieldSet {
    pub fn new() -> Self {
        Self::default()
    }

    /// A set of the given field-name paths, e.g. `[&["status"], &["metadata", "labels"]]`.
    pub fn from_field_paths(paths: &[&[&str]]) -> Self {
        let mut s = FieldSet::new();
        for p in paths {
            s.insert(FieldPath::fields(p).elements());
        }
        s
    }

    /// Every path `obj` sets (upstream `TypedValue.ToFieldSet`): leaves, atomic lists and
    /// maps, items of associative lists, and entries of non-struct maps. Nothing is
    /// excluded here; the field manager strips `apiVersion`, `metadata.name`, … itself.
    pub fn from_object(obj: &Value, type_info: &dyn TypeInfo) -> Self {
        typed::to_field_set(obj, type_info)
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds a path; the empty path (the whole object) is not tracked, as upstream.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [pe] => {
                self.members.insert(pe.clone());
            }
            [pe, rest @ ..] => self.children.entry(pe.clone()).or_default().insert(rest),
        }
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [pe] => self.members.contains(pe),
            [pe, rest @ ..] => self.children.get(pe).is_some_and(|c| c.has(rest)),
        }
    }

    /// The paths under `pe` (with `pe` itself stripped), if any.
    pub fn with_prefix(&self, pe: &PathElement) -> Option<&FieldSet> {
        self.children.get(pe)
    }

    pub(crate) fn has_member(&self, pe: &PathElement) -> bool {
        self.members.contains(pe)
    }

    pub fn union(&self, other: &FieldSet) -> FieldSet {
        let mut out = self.clone();
        out.members.extend(other.members.iter().cloned());
        for (pe, child) in &other.children {
            let merged = match out.children.get(pe) {
                Some(mine) => mine.union(child),
                None => child.clone(),
            };
            out.children.insert(pe.clone(), merged);
        }
        out
    }

    pub fn intersection(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            if let Some(theirs) = other.children.get(pe) {
                out.put_child(pe, child.intersection(theirs));
            }
        }
        out
    }

    /// Paths in `self` that are not in `other` (member by member; a member of `other`
    /// does not remove paths below it).
    pub fn difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            match other.children.get(pe) {
                Some(theirs) => out.put_child(pe, child.difference(theirs)),
                None => out.put_child(pe, child.clone()),
            }
        }
        out
    }

    /// Like [`difference`](Self::difference), but a member of `other` also removes every
    /// path below it (upstream `RecursiveDifference`, used for reset/ignored fields).
    pub fn recursive_difference(&self, other: &FieldSet) -> FieldSet {
        let mut out = FieldSet::new();
        out.members = self.members.difference(&other.members).cloned().collect();
        for (pe, child) in &self.children {
            if other.members.contains(pe) {
                continue;
            }
            match other.children.get(pe) {
                Some(theirs) => out.put_child(pe, child.recursive_difference(theirs)),
                None => out.put_child(pe, child.clone()),
            }
        }
        out
    }

    /// Every path, members before children at each level, in element order (the order
    /// upstream lists conflicts in).
    pub fn paths(&self) -> Vec<FieldPath> {
        let mut out = Vec::new();
        self.collect_paths(&mut Vec::new(), &mut out);
        out
    }

    fn collect_paths(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<FieldPath>) {
        for pe in &self.members {
            prefix.push(pe.clone());
            out.push(FieldPath(prefix.clone()));
            prefix.pop();
        }
        for (pe, child) in &self.children {
            prefix.push(pe.clone());
            child.collect_paths(prefix, out);
            prefix.pop();
        }
    }

    /// Adds every struct field that has owned paths below it as a member itself
    /// (upstream `EnsureNamedFieldsAreMembers`), so pruning can remove emptied structs.
    /// Map entries and list items are left alone.
    pub fn ensure_named_fields_are_members(&self, type_info: &dyn TypeInfo) -> FieldSet {
        let mut path = Vec::new();
        self.ensure_named(type_info, &mut path)
    }

    fn ensure_named(&self, type_info: &dyn TypeInfo, path: &mut Vec<PathElement>) -> FieldSet {
        let mut out = FieldSet {
            members: self.members.clone(),
            children: BTreeMap::new(),
        };
        let parent_is_struct = type_info.map_kind(path) == MapKind::Struct;
        for (pe, child) in &self.children {
            if parent_is_struct && matches!(pe, PathElement::Field(_)) {
                out.members.insert(pe.clone());
            }
            path.push(pe.clone());
            out.put_child(pe, child.ensure_named(type_info, path));
            path.pop();
        }
        out
    }

    fn put_child(&mut self, pe: &PathElement, child: FieldSet) {
        if !child.is_empty() {
            self.children.insert(pe.clone(), child);
        }
    }

    /// The `fieldsV1` JSON object.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.emit(false))
    }

    fn emit(&self, include_self: bool) -> Map<String, Value> {
        let mut out = Map::new();
        if include_self {
            out.insert(".".into(), Value::Object(Map::new()));
        }
        let keys: BTreeSet<&PathElement> =
            self.members.iter().chain(self.children.keys()).collect();
        for pe in keys {
            let body = match self.children.get(pe) {
                Some(child) => child.emit(self.members.contains(pe)),
                None => Map::new(),
            };
            out.insert(pe.to_key_string(), Value::Object(body));
        }
        out
    }

    /// Reads a `fieldsV1` JSON object. Keys with an unknown prefix are skipped, as upstream.
    pub fn from_fields_v1(v: &Value) -> Result<FieldSet, FieldSetError> {
        match v {
            Value::Object(m) => Ok(Self::read(m)?.0),
            Value::Null => Ok(FieldSet::new()),
            other => Err(FieldSetError::NotAnObject(other.to_string())),
        }
    }

    /// Returns the set below this node and whether the node itself is a member
    /// (it is when it is empty or carries `"."`).
    fn read(m: &Map<String, Value>) -> Result<(FieldSet, bool), FieldSetError> {
        let mut out = FieldSet::new();
        let mut is_member = false;
        for (key, body) in m {
            if key == "." {
                is_member = true;
                continue;
            }
            let pe = match PathElement::parse_key_string(key) {
                Ok(pe) => pe,
                Err(PathElementError::UnknownType(_)) => continue,
                Err(e) => return Err(e.into()),
            };
            let (child, child_is_member) = match body {
                Value::Object(inner) => Self::read(inner)?,
                Value::Null => (FieldSet::new(), true),
                other => return Err(FieldSetError::NotAnObject(other.to_string())),
            };
            if child_is_member {
                out.members.insert(pe.clone());
            }
            out.put_child(&pe, child);
        }
        if out.is_empty() {
            is_member = true;
        }
        Ok((out, is_member))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managedfields::typeinfo::UnknownType;
    use serde_json::json;

    fn fp(s: &[&str]) -> FieldPath {
        FieldPath::fields(s)
    }

    fn set(paths: &[&[&str]]) -> FieldSet {
        FieldSet::from_field_paths(paths)
    }

    #[test]
    fn fields_v1_round_trip() {
        let cases = [
            json!({"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}),
            json!({"f:metadata":{"f:annotations":{".":{},"f:kubectl.kubernetes.io/last-applied-configuration":{}}}}),
            json!({"f:metadata":{"f:finalizers":{".":{},"v:\"a\"":{},"v:\"b\"":{}}}}),
            json!({"f:spec":{"f:ports":{"k:{\"port\":80,\"protocol\":\"TCP\"}":{".":{},"f:port":{},"f:protocol":{}}}}}),
            json!({}),
        ];
        for v in cases {
            let s = FieldSet::from_fields_v1(&v).expect("decodes");
            assert_eq!(s.to_fields_v1(), v);
            // Key order in the output is element order, regardless of input order.
            assert_eq!(
                serde_json::to_string(&s.to_fields_v1()).expect("json"),
                serde_json::to_string(&v).expect("json")
            );
        }
    }

    #[test]
    fn fields_v1_members_and_children() {
        let v = json!({"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{}}}, "x:future":{}}});
        let s = FieldSet::from_fields_v1(&v).expect("decodes");
        let item = PathElement::key([("name".to_string(), json!("nginx"))]);
        let mut p = fp(&["spec", "containers"]).0;
        p.push(item);
        assert!(s.has(&p));
        p.push(PathElement::field("image"));
        assert!(s.has(&p));
        assert!(!s.has(fp(&["spec"]).elements()), "spec is only a prefix");
        assert!(!s.has(fp(&["spec", "containers"]).elements()));
        assert_eq!(s.paths().len(), 2);
        assert!(FieldSet::from_fields_v1(&json!([1])).is_err());
        assert!(FieldSet::from_fields_v1(&json!({"k:nope":{}})).is_err());
    }

    #[test]
    fn set_algebra() {
        let a = set(&[
            &["spec", "replicas"],
            &["spec", "paused"],
            &["metadata", "labels", "app"],
        ]);
        let b = set(&[&["spec", "replicas"], &["metadata", "labels", "tier"]]);
        let cases: Vec<(&str, FieldSet, Vec<FieldPath>)> = vec![
            (
                "union",
                a.union(&b),
                vec![
                    fp(&["metadata", "labels", "app"]),
                    fp(&["metadata", "labels", "tier"]),
                    fp(&["spec", "paused"]),
                    fp(&["spec", "replicas"]),
                ],
            ),
            (
                "intersection",
                a.intersection(&b),
                vec![fp(&["spec", "replicas"])],
            ),
            (
                "difference",
                a.difference(&b),
                vec![fp(&["metadata", "labels", "app"]), fp(&["spec", "paused"])],
            ),
            (
                "recursive difference",
                a.recursive_difference(&set(&[&["spec"]])),
                vec![fp(&["metadata", "labels", "app"])],
            ),
            (
                "plain difference keeps children",
                a.difference(&set(&[&["spec"]])),
                a.paths(),
            ),
        ];
        for (name, got, want) in cases {
            assert_eq!(got.paths(), want, "{name}");
        }
        assert!(a.difference(&a).is_empty());
        assert!(a.difference(&a).to_fields_v1() == json!({}));
    }

    #[test]
    fn named_fields_become_members() {
        let s = set(&[
            &["spec", "template", "spec", "replicas"],
            &["metadata", "labels", "app"],
        ]);
        let e = s.ensure_named_fields_are_members(&UnknownType);
        for p in [
            &["spec"][..],
            &["spec", "template"],
            &["metadata"],
            &["metadata", "labels"],
        ] {
            assert!(e.has(fp(p).elements()), "{p:?}");
        }
        // Entries of a granular map (labels) are not named fields; only the leaf is a member.
        assert_eq!(e.paths().len(), 7);
    }

    #[test]
    fn from_object_lists_what_it_sets() {
        let obj = json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "x", "labels": {"app": "a"}, "finalizers": ["f1"]},
            "data": {"k": "v"}, "list": [1, 2], "empty": {}
        });
        let s = FieldSet::from_object(&obj, &UnknownType);
        assert_eq!(
            s.to_fields_v1(),
            json!({"f:apiVersion":{},"f:data":{"f:k":{}},"f:kind":{},"f:list":{},
                   "f:metadata":{"f:finalizers":{"v:\"f1\"":{}},"f:labels":{"f:app":{}},"f:name":{}}})
        );
    }
}
