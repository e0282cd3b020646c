//! The dependency graph (upstream `graph.go` / `graph_builder.go`): every watched
//! object by uid, with its owner references, its deletion state, and an index from
//! owner uid to dependents. Applying a change returns the work it creates: objects
//! whose owners may be gone (attempt to delete), owners waiting for their dependents
//! (foreground), owners whose dependents must be orphaned.

use std::collections::{HashMap, HashSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
pub const ORPHAN_FINALIZER: &str = "orphan";

/// One object as the collector sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Index into the collector's resource table.
    pub resource: usize,
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub owners: Vec<OwnerReference>,
    pub being_deleted: bool,
    pub finalizers: Vec<String>,
}

impl Node {
    pub fn from_meta(resource: usize, meta: &ObjectMeta) -> Self {
        Node {
            resource,
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
            uid: meta.uid.clone().unwrap_or_default(),
            owners: meta.owner_references.clone().unwrap_or_default(),
            being_deleted: meta.deletion_timestamp.is_some(),
            finalizers: meta.finalizers.clone().unwrap_or_default(),
        }
    }

    /// Deleted in the foreground: waits for its blocking dependents to go.
    pub fn deleting_dependents(&self) -> bool {
        self.being_deleted && self.finalizers.iter().any(|f| f == FOREGROUND_FINALIZER)
    }

    /// Deleted with `orphan`: its dependents lose their references to it first.
    pub fn orphaning(&self) -> bool {
        self.being_deleted && self.finalizers.iter().any(|f| f == ORPHAN_FINALIZER)
    }
}

/// Work the graph asks for, by object uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Work {
    /// Check the object's owners; delete it if none is left, or finish a
    /// foreground deletion.
    AttemptToDelete(String),
    /// Remove references to this owner from its dependents, then its finalizer.
    AttemptToOrphan(String),
}

#[derive(Default)]
pub struct Graph {
    nodes: HashMap<String, Node>,
    dependents: HashMap<String, HashSet<String>>,
    by_resource: HashMap<usize, HashSet<String>>,
}

impl Graph {
    pub fn node(&self, uid: &str) -> Option<&Node> {
        self.nodes.get(uid)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Objects whose owner references name `uid`.
    pub fn dependents(&self, uid: &str) -> Vec<Node> {
        self.dependents
            .get(uid)
            .into_iter()
            .flatten()
            .filter_map(|d| self.nodes.get(d))
            .cloned()
            .collect()
    }

    pub fn uids_of_resource(&self, resource: usize) -> Vec<String> {
        self.by_resource
            .get(&resource)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Adds or updates an object.
    pub fn upsert(&mut self, node: Node, out: &mut Vec<Work>) {
        let uid = node.uid.clone();
        let old_owners: HashSet<String> = self
            .nodes
            .get(&uid)
            .map(|n| n.owners.iter().map(|r| r.uid.clone()).collect())
            .unwrap_or_default();
        let new_owners: HashSet<String> = node.owners.iter().map(|r| r.uid.clone()).collect();
        for gone in old_owners.difference(&new_owners) {
            self.unlink(gone, &uid);
            // A foreground-deleting owner may have just lost a blocking dependent.
            if self.nodes.get(gone).is_some_and(Node::deleting_dependents) {
                out.push(Work::AttemptToDelete(gone.clone()));
            }
        }
        for owner in &new_owners {
            self.dependents
                .entry(owner.clone())
                .or_default()
                .insert(uid.clone());
        }
        let mut check_self = false;
        for r in &node.owners {
            match self.nodes.get(&r.uid) {
                // Unknown owner: maybe not watched yet, maybe gone. The worker finds out.
                None => check_self = true,
                Some(owner) if owner.deleting_dependents() => {
                    check_self = true;
                    out.push(Work::AttemptToDelete(r.uid.clone()));
                }
                Some(_) => {}
            }
        }
        if check_self || node.deleting_dependents() {
            out.push(Work::AttemptToDelete(uid.clone()));
        }
        if node.orphaning() {
            out.push(Work::AttemptToOrphan(uid.clone()));
        }
        self.by_resource
            .entry(node.resource)
            .or_default()
            .insert(uid.clone());
        self.nodes.insert(uid, node);
    }

    /// Removes a deleted object; its dependents are checked, since their owner is gone.
    pub fn remove(&mut self, uid: &str, out: &mut Vec<Work>) {
        if let Some(node) = self.nodes.remove(uid) {
            for r in &node.owners {
                self.unlink(&r.uid, uid);
                if self
                    .nodes
                    .get(&r.uid)
                    .is_some_and(Node::deleting_dependents)
                {
                    out.push(Work::AttemptToDelete(r.uid.clone()));
                }
            }
            if let Some(set) = self.by_resource.get_mut(&node.resource) {
                set.remove(uid);
            }
        }
        for d in self.dependents.get(uid).into_iter().flatten() {
            out.push(Work::AttemptToDelete(d.clone()));
        }
    }

    fn unlink(&mut self, owner: &str, dependent: &str) {
        if let Some(set) = self.dependents.get_mut(owner) {
            set.remove(dependent);
            if set.is_empty() {
                self.dependents.remove(owner);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(uid: &str, owners: &[(&str, bool)], deleting: bool, finalizers: &[&str]) -> Node {
        Node {
            resource: 0,
            namespace: "ns".into(),
            name: uid.into(),
            uid: uid.into(),
            owners: owners
                .iter()
                .map(|(o, block)| OwnerReference {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    name: (*o).into(),
                    uid: (*o).into(),
                    controller: None,
                    block_owner_deletion: Some(*block),
                })
                .collect(),
            being_deleted: deleting,
            finalizers: finalizers.iter().map(|f| f.to_string()).collect(),
        }
    }

    #[test]
    fn owners_going_away_queue_their_dependents() {
        let mut g = Graph::default();
        let mut out = Vec::new();
        g.upsert(node("owner", &[], false, &[]), &mut out);
        g.upsert(node("dep", &[("owner", true)], false, &[]), &mut out);
        assert!(out.is_empty(), "owner present: nothing to do, got {out:?}");
        g.remove("owner", &mut out);
        assert_eq!(out, vec![Work::AttemptToDelete("dep".into())]);
        out.clear();
        // A dependent whose owner was never seen is checked.
        g.upsert(node("stray", &[("nobody", true)], false, &[]), &mut out);
        assert_eq!(out, vec![Work::AttemptToDelete("stray".into())]);
    }

    #[test]
    fn foreground_and_orphan_deletions_queue_the_owner() {
        let mut g = Graph::default();
        let mut out = Vec::new();
        g.upsert(node("owner", &[], false, &[]), &mut out);
        g.upsert(node("dep", &[("owner", true)], false, &[]), &mut out);
        g.upsert(node("owner", &[], true, &[FOREGROUND_FINALIZER]), &mut out);
        assert_eq!(out, vec![Work::AttemptToDelete("owner".into())]);
        out.clear();
        g.remove("dep", &mut out);
        assert_eq!(out, vec![Work::AttemptToDelete("owner".into())]);
        assert!(g.dependents("owner").is_empty());
        out.clear();
        g.upsert(node("o2", &[], true, &[ORPHAN_FINALIZER]), &mut out);
        assert_eq!(out, vec![Work::AttemptToOrphan("o2".into())]);
    }
}
