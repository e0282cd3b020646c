//! What server-side apply needs to know about a type: whether a list is atomic, a set
//! or a map keyed by some fields (`x-kubernetes-list-type`), and whether an object is a
//! struct with named fields, a granular map, or atomic (`x-kubernetes-map-type`).
//!
//! Lookups are by path from the object root; list items appear as `Key`/`Value`/`Index`
//! elements and stand for "the item type".

use serde_json::Value;

use super::path::PathElement;
use crate::schema::{self, ListType, Node, NodeKind};

/// How a list merges and is owned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// Replaced as a whole and owned as one leaf (the default for unknown lists).
    Atomic,
    /// A set of scalars; items are owned one by one as `v:<value>`.
    Set,
    /// A list of objects keyed by `keys`; items are owned one by one as `k:{..}`.
    Map { keys: Vec<String> },
}

/// How an object merges and is owned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapKind {
    /// A struct: its fields are named in the schema and are not owned themselves,
    /// only what is below them.
    Struct,
    /// A granular map (`additionalProperties`): every entry is owned.
    Map,
    /// Replaced as a whole and owned as one leaf.
    Atomic,
}

/// Type information for one kind, looked up by path.
pub trait TypeInfo {
    /// The kind of the list at `path`.
    fn list_kind(&self, path: &[PathElement]) -> ListKind;

    /// The kind of the object at `path` (the empty path is the object itself).
    fn map_kind(&self, path: &[PathElement]) -> MapKind;

    /// The value a list-map key field takes when an item omits it. Upstream reads the
    /// schema's `default`; among built-in keys only `protocol` (container, service and
    /// endpoint ports) has one, so that is the fallback for every implementation.
    fn key_default(&self, _list_path: &[PathElement], key: &str) -> Option<Value> {
        (key == "protocol").then(|| Value::String("TCP".into()))
    }
}

/// Type information for kinds without a schema (custom resources): objects are structs,
/// lists are atomic; object metadata is typed as upstream's `ObjectMeta`.
#[derive(Clone, Copy, Debug, Default)]
pub struct UnknownType;

impl TypeInfo for UnknownType {
    fn list_kind(&self, path: &[PathElement]) -> ListKind {
        match metadata_field(path) {
            Some("ownerReferences") => ListKind::Map {
                keys: vec!["uid".into()],
            },
            Some("finalizers") => ListKind::Set,
            _ => ListKind::Atomic,
        }
    }

    fn map_kind(&self, path: &[PathElement]) -> MapKind {
        match metadata_field(path) {
            Some("labels" | "annotations") => MapKind::Map,
            _ => MapKind::Struct,
        }
    }
}

/// Type information from a built-in kind's schema ([`crate::schema`]). Paths the schema
/// does not describe (free-form fields) fall back to [`UnknownType`].
#[derive(Clone, Copy, Debug)]
pub struct SchemaType {
    root: Node,
}

impl SchemaType {
    pub fn new(root: Node) -> Self {
        SchemaType { root }
    }

    /// The schema of a built-in kind, `None` for custom resources.
    pub fn for_kind(group: &str, version: &str, kind: &str) -> Option<Self> {
        schema::root(group, version, kind).map(SchemaType::new)
    }

    fn node_at(&self, path: &[PathElement]) -> Option<Node> {
        path.iter().try_fold(self.root, |node, pe| match pe {
            PathElement::Field(name) => node.child(name),
            _ => node.items(),
        })
    }
}

impl TypeInfo for SchemaType {
    fn list_kind(&self, path: &[PathElement]) -> ListKind {
        match self.node_at(path).and_then(|n| n.list()) {
            Some(info) => match info.list_type {
                ListType::Atomic => ListKind::Atomic,
                ListType::Set => ListKind::Set,
                ListType::Map { keys } => ListKind::Map { keys },
            },
            None => UnknownType.list_kind(path),
        }
    }

    fn map_kind(&self, path: &[PathElement]) -> MapKind {
        let Some(node) = self.node_at(path) else {
            return UnknownType.map_kind(path);
        };
        if node.is_map_atomic() {
            return MapKind::Atomic;
        }
        match node.kind() {
            NodeKind::Map => MapKind::Map,
            // Free-form JSON is walked like upstream's deduced type: every entry owned.
            NodeKind::Any => MapKind::Map,
            _ => MapKind::Struct,
        }
    }
}

/// The type information for a kind: its schema when built in, else [`UnknownType`].
pub fn type_info_for(group: &str, version: &str, kind: &str) -> Box<dyn TypeInfo + Send + Sync> {
    match SchemaType::for_kind(group, version, kind) {
        Some(t) => Box::new(t),
        None => Box::new(UnknownType),
    }
}

/// `Some(field)` when `path` is `…metadata.<field>`.
fn metadata_field(path: &[PathElement]) -> Option<&str> {
    match path {
        [.., PathElement::Field(meta), PathElement::Field(field)] if meta == "metadata" => {
            Some(field)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::managedfields::path::FieldPath;

    #[test]
    fn unknown_type_table() {
        let t = UnknownType;
        let cases: [(&[&str], ListKind, MapKind); 4] = [
            (&["metadata", "finalizers"], ListKind::Set, MapKind::Struct),
            (
                &["metadata", "ownerReferences"],
                ListKind::Map {
                    keys: vec!["uid".into()],
                },
                MapKind::Struct,
            ),
            (
                &["spec", "template", "metadata", "labels"],
                ListKind::Atomic,
                MapKind::Map,
            ),
            (&["spec", "items"], ListKind::Atomic, MapKind::Struct),
        ];
        for (p, list, map) in cases {
            let p = FieldPath::fields(p);
            assert_eq!(t.list_kind(p.elements()), list, "{p}");
            assert_eq!(t.map_kind(p.elements()), map, "{p}");
        }
        assert_eq!(
            t.key_default(&[], "protocol"),
            Some(Value::String("TCP".into()))
        );
        assert_eq!(t.key_default(&[], "name"), None);
    }

    #[test]
    fn schema_type_table() {
        let t = SchemaType::for_kind("apps", "v1", "Deployment").expect("built in");
        let name_key = PathElement::key([("name".to_string(), Value::String("nginx".into()))]);
        let mut containers = FieldPath::fields(&["spec", "template", "spec", "containers"]).0;
        assert_eq!(
            t.list_kind(&containers),
            ListKind::Map {
                keys: vec!["name".into()]
            }
        );
        containers.push(name_key);
        assert_eq!(t.map_kind(&containers), MapKind::Struct);
        containers.push(PathElement::field("ports"));
        let port_keys = vec!["containerPort".into(), "protocol".into()];
        assert_eq!(t.list_kind(&containers), ListKind::Map { keys: port_keys });
        let cases: [(&[&str], MapKind); 5] = [
            (&[], MapKind::Struct),
            (&["spec", "selector"], MapKind::Atomic),
            (&["metadata", "labels"], MapKind::Map),
            (
                &["spec", "template", "metadata", "annotations"],
                MapKind::Map,
            ),
            (&["spec", "strategy"], MapKind::Struct),
        ];
        for (p, want) in cases {
            assert_eq!(t.map_kind(FieldPath::fields(p).elements()), want, "{p:?}");
        }
        let finalizers = FieldPath::fields(&["metadata", "finalizers"]);
        assert_eq!(t.list_kind(finalizers.elements()), ListKind::Set);
        let unknown = FieldPath::fields(&["spec", "template", "spec", "nope"]);
        assert_eq!(t.list_kind(unknown.elements()), ListKind::Atomic);
        assert!(SchemaType::for_kind("example.com", "v1", "Widget").is_none());
    }
}
