//! The garbage collector (upstream `pkg/controller/garbagecollector`): deletes objects
//! whose owners are gone, and carries out foreground and orphan deletions.
//!
//! * Background (the default): the API server deletes the owner at once. Its
//!   dependents now name an owner uid that no longer exists, and are deleted here
//!   (each with the propagation its own finalizers ask for), level by level.
//! * Foreground: the owner keeps a `foregroundDeletion` finalizer and a deletion
//!   timestamp. Its dependents are deleted (those with dependents of their own in the
//!   foreground too); once no dependent with `blockOwnerDeletion` is left, the
//!   finalizer is removed and the API server finishes the deletion.
//! * Orphan: the owner keeps an `orphan` finalizer; references to it are removed from
//!   its dependents, then the finalizer.
//!
//! Every listable, watchable, deletable resource found through discovery is watched
//! metadata-only (`metadata_watcher`) into a [`graph::Graph`]. Deciding that an owner
//! is gone is never left to the graph alone: an owner missing from it is looked up
//! live, since watches of different resources arrive in no particular order.

pub mod graph;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, ApiResource, DeleteParams, DynamicObject, PropagationPolicy};
use kube::core::params::Preconditions;
use kube::core::PartialObjectMeta;
use kube::discovery::{verbs, Discovery, Scope};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Client;
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::controller_utils::{is_conflict, is_not_found, json_patch};
use crate::replicaset::group_of;
use crate::workqueue::WorkQueue;
use graph::{Graph, Node, Work, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};

/// Workers processing the collector's queue.
const WORKERS: usize = 4;
/// How often discovery runs again to pick up new resources (CRDs).
const REDISCOVERY_PERIOD: Duration = Duration::from_secs(30);
/// How long the workers wait for the first list of every resource before starting anyway.
const SYNC_TIMEOUT: Duration = Duration::from_secs(30);
/// Owner uids known to be gone (uids are never reused); bounded, cleared when full.
const ABSENT_OWNER_CACHE: usize = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

/// A watched resource.
#[derive(Clone, Debug)]
struct Resource {
    api: ApiResource,
    namespaced: bool,
}

#[derive(Default)]
struct Resources {
    list: Vec<Resource>,
    /// (group, kind) → index into `list`.
    by_kind: HashMap<(String, String), usize>,
    /// (group, plural) → index, to skip resources already watched.
    by_plural: HashMap<(String, String), usize>,
}

enum GraphEvent {
    Upsert(Node),
    Delete(String),
    /// A (re)list of a resource finished; these uids are all it has.
    Listed(usize, HashSet<String>),
}

struct Collector {
    client: Client,
    graph: Mutex<Graph>,
    resources: Mutex<Resources>,
    queue: Arc<WorkQueue<WorkItem>>,
    absent_owners: Mutex<HashSet<String>>,
    /// Resources not yet listed once.
    unsynced: tokio::sync::watch::Sender<usize>,
}

/// Queue items: what to do and to which uid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct WorkItem(Work);

impl std::fmt::Display for WorkItem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.0 {
            Work::AttemptToDelete(u) => write!(f, "delete/{u}"),
            Work::AttemptToOrphan(u) => write!(f, "orphan/{u}"),
        }
    }
}

/// Owner state as seen from one dependent.
enum OwnerState {
    /// Exists and is not being deleted in the foreground.
    Solid,
    /// Gone (or replaced by an object with another uid).
    Dangling,
    /// Being deleted in the foreground: waits for its dependents.
    Waiting,
}

/// Runs the garbage collector until `cancel` fires.
pub async fn run(client: Client, cancel: CancellationToken) {
    // usize::MAX until the first discovery says how many resources there are.
    let (unsynced, _) = tokio::sync::watch::channel(usize::MAX);
    let gc = Arc::new(Collector {
        client,
        graph: Mutex::new(Graph::default()),
        resources: Mutex::new(Resources::default()),
        queue: WorkQueue::new(cancel.clone()),
        absent_owners: Mutex::new(HashSet::new()),
        unsynced,
    });
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    tasks.push(tokio::spawn(gc.clone().build_graph(rx, cancel.clone())));
    tasks.push(tokio::spawn(
        gc.clone().discover_forever(tx, cancel.clone()),
    ));
    {
        let (gc, cancel) = (gc.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            gc.wait_for_sync(&cancel).await;
            let workers: Vec<_> = (0..WORKERS)
                .map(|_| tokio::spawn(gc.clone().worker()))
                .collect();
            for w in workers {
                let _ = w.await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
}

impl Collector {
    fn lock_graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph
            .lock()
            .expect("invariant: graph lock is never poisoned")
    }

    fn lock_resources(&self) -> std::sync::MutexGuard<'_, Resources> {
        self.resources
            .lock()
            .expect("invariant: resource table lock is never poisoned")
    }

    /// Waits until every resource found by the first discovery has been listed (or
    /// [`SYNC_TIMEOUT`]), so workers start from a full graph.
    async fn wait_for_sync(&self, cancel: &CancellationToken) {
        let mut rx = self.unsynced.subscribe();
        let synced = async {
            let _ = rx.wait_for(|n| *n == 0).await;
        };
        tokio::select! {
            _ = cancel.cancelled() => {}
            r = tokio::time::timeout(SYNC_TIMEOUT, synced) => {
                if r.is_err() {
                    tracing::warn!("garbage collector: not every resource listed in time; starting anyway");
                }
            }
        }
    }

    /// Discovers resources now and every [`REDISCOVERY_PERIOD`], watching new ones.
    async fn discover_forever(
        self: Arc<Self>,
        tx: mpsc::UnboundedSender<GraphEvent>,
        cancel: CancellationToken,
    ) {
        let mut first = true;
        loop {
            match Discovery::new(self.client.clone()).run().await {
                Ok(discovery) => {
                    let new = self.register(&discovery);
                    if first {
                        self.unsynced.send_replace(new.len());
                        first = false;
                    }
                    for idx in new {
                        let res = self.lock_resources().list[idx].clone();
                        tokio::spawn(self.clone().monitor(idx, res, tx.clone(), cancel.clone()));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "garbage collector: discovery failed"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(if first { Duration::from_secs(1) } else { REDISCOVERY_PERIOD }) => {}
            }
        }
    }

    /// Adds resources the collector can manage (list, watch, delete); returns the new ones.
    fn register(&self, discovery: &Discovery) -> Vec<usize> {
        let mut res = self.lock_resources();
        let mut new = Vec::new();
        for group in discovery.groups() {
            for (ar, caps) in group.recommended_resources() {
                let ops = [verbs::LIST, verbs::WATCH, verbs::DELETE];
                if !ops.iter().all(|v| caps.supports_operation(v)) {
                    continue;
                }
                // Upstream ignores events: nothing owns them, and there are many.
                if ar.plural == "events" && (ar.group.is_empty() || ar.group == "events.k8s.io") {
                    continue;
                }
                let plural_key = (ar.group.clone(), ar.plural.clone());
                if res.by_plural.contains_key(&plural_key) {
                    continue;
                }
                let idx = res.list.len();
                res.by_kind.insert((ar.group.clone(), ar.kind.clone()), idx);
                res.by_plural.insert(plural_key, idx);
                res.list.push(Resource {
                    api: ar,
                    namespaced: caps.scope == Scope::Namespaced,
                });
                new.push(idx);
            }
        }
        new
    }

    /// Feeds one resource's metadata watch into the graph.
    async fn monitor(
        self: Arc<Self>,
        idx: usize,
        res: Resource,
        tx: mpsc::UnboundedSender<GraphEvent>,
        cancel: CancellationToken,
    ) {
        // `PartialObjectMeta` makes the watch metadata-only: no specs or statuses held.
        let api: Api<PartialObjectMeta<DynamicObject>> =
            Api::all_with(self.client.clone(), &res.api);
        let stream = watcher(api, watcher::Config::default()).default_backoff();
        futures::pin_mut!(stream);
        let mut listing: Option<HashSet<String>> = None;
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = stream.next() => next,
            };
            let event = match next {
                None => return,
                Some(Err(e)) => {
                    tracing::debug!(resource = %res.api.plural, error = %e, "garbage collector: watch error");
                    continue;
                }
                Some(Ok(e)) => e,
            };
            let out = match event {
                watcher::Event::Init => {
                    listing = Some(HashSet::new());
                    continue;
                }
                watcher::Event::InitApply(o) => {
                    if let Some(seen) = listing.as_mut() {
                        seen.insert(o.metadata.uid.clone().unwrap_or_default());
                    }
                    GraphEvent::Upsert(Node::from_meta(idx, &o.metadata))
                }
                watcher::Event::InitDone => {
                    GraphEvent::Listed(idx, listing.take().unwrap_or_default())
                }
                watcher::Event::Apply(o) => GraphEvent::Upsert(Node::from_meta(idx, &o.metadata)),
                watcher::Event::Delete(o) => {
                    GraphEvent::Delete(o.metadata.uid.clone().unwrap_or_default())
                }
            };
            if tx.send(out).is_err() {
                return;
            }
        }
    }

    /// The single writer of the graph (upstream `processGraphChanges`).
    async fn build_graph(
        self: Arc<Self>,
        mut rx: mpsc::UnboundedReceiver<GraphEvent>,
        cancel: CancellationToken,
    ) {
        let mut listed_once = HashSet::new();
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => return,
                e = rx.recv() => match e { Some(e) => e, None => return },
            };
            let mut out = Vec::new();
            {
                let mut graph = self.lock_graph();
                match event {
                    GraphEvent::Upsert(node) => graph.upsert(node, &mut out),
                    GraphEvent::Delete(uid) => graph.remove(&uid, &mut out),
                    GraphEvent::Listed(idx, seen) => {
                        // Objects missed while the watch was down were deleted meanwhile.
                        for uid in graph.uids_of_resource(idx) {
                            if !seen.contains(&uid) {
                                graph.remove(&uid, &mut out);
                            }
                        }
                        if listed_once.insert(idx) {
                            self.unsynced.send_modify(|n| *n = n.saturating_sub(1));
                        }
                    }
                }
            }
            for w in out {
                self.queue.add(WorkItem(w));
            }
        }
    }

    async fn worker(self: Arc<Self>) {
        while let Some(item) = self.queue.get().await {
            let result = match &item.0 {
                Work::AttemptToDelete(uid) => self.attempt_to_delete(uid).await,
                Work::AttemptToOrphan(uid) => self.attempt_to_orphan(uid).await,
            };
            match result {
                Ok(()) => self.queue.forget(&item),
                Err(e) => {
                    tracing::debug!(item = %item, error = %e, "garbage collector: retrying");
                    self.queue.add_rate_limited(item.clone());
                }
            }
            self.queue.done(&item);
        }
    }

    fn resource(&self, idx: usize) -> Option<Resource> {
        self.lock_resources().list.get(idx).cloned()
    }

    fn api_for(&self, res: &Resource, namespace: &str) -> Api<DynamicObject> {
        if res.namespaced {
            Api::namespaced_with(self.client.clone(), namespace, &res.api)
        } else {
            Api::all_with(self.client.clone(), &res.api)
        }
    }

    /// Upstream `attemptToDeleteItem`.
    async fn attempt_to_delete(&self, uid: &str) -> Result<(), Error> {
        let Some(node) = self.lock_graph().node(uid).cloned() else {
            return Ok(());
        };
        if node.deleting_dependents() {
            return self.process_deleting_dependents(&node).await;
        }
        if node.being_deleted || node.owners.is_empty() {
            return Ok(());
        }
        let Some(res) = self.resource(node.resource) else {
            return Ok(());
        };
        let api = self.api_for(&res, &node.namespace);
        // Decide from the object as it is now, not as the graph last saw it.
        let Some(latest) = api.get_metadata_opt(&node.name).await? else {
            return Ok(());
        };
        if latest.metadata.uid.as_deref() != Some(uid)
            || latest.metadata.deletion_timestamp.is_some()
        {
            return Ok(());
        }
        let owners = latest.metadata.owner_references.clone().unwrap_or_default();
        if owners.is_empty() {
            return Ok(());
        }
        let (mut solid, mut dangling, mut waiting) = (Vec::new(), Vec::new(), Vec::new());
        for r in &owners {
            match self.owner_state(&node, &res, r).await? {
                OwnerState::Solid => solid.push(r.clone()),
                OwnerState::Dangling => dangling.push(r.clone()),
                OwnerState::Waiting => waiting.push(r.clone()),
            }
        }
        let rv = latest.metadata.resource_version.clone().unwrap_or_default();
        if !solid.is_empty() {
            if dangling.is_empty() && waiting.is_empty() {
                return Ok(());
            }
            // Still owned: only drop the references to owners that are gone or going.
            let drop: HashSet<&str> = dangling
                .iter()
                .chain(&waiting)
                .map(|r| r.uid.as_str())
                .collect();
            let keep: Vec<&OwnerReference> = owners
                .iter()
                .filter(|r| !drop.contains(r.uid.as_str()))
                .collect();
            tracing::debug!(object = %node.name, "garbage collector: removing references to deleted owners");
            return self
                .patch_owner_refs(&res, &node, uid, &rv, json!(keep))
                .await;
        }
        let has_dependents = !self.lock_graph().dependents(uid).is_empty();
        let policy = if !waiting.is_empty() && has_dependents {
            // The owner waits for this object, and this object has dependents of its
            // own: delete it in the foreground too. If one of them is itself waiting
            // for dependents, unblock the owner first, or both would wait forever.
            let cycle = self
                .lock_graph()
                .dependents(uid)
                .iter()
                .any(Node::deleting_dependents);
            if cycle {
                let waiting_uids: HashSet<&str> = waiting.iter().map(|r| r.uid.as_str()).collect();
                let unblocked: Vec<OwnerReference> = owners
                    .iter()
                    .cloned()
                    .map(|mut r| {
                        if waiting_uids.contains(r.uid.as_str()) {
                            r.block_owner_deletion = Some(false);
                        }
                        r
                    })
                    .collect();
                self.patch_owner_refs(&res, &node, uid, &rv, json!(unblocked))
                    .await?;
            }
            PropagationPolicy::Foreground
        } else {
            let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
            if finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
                PropagationPolicy::Orphan
            } else if finalizers.iter().any(|f| f == FOREGROUND_FINALIZER) {
                PropagationPolicy::Foreground
            } else {
                PropagationPolicy::Background
            }
        };
        tracing::debug!(object = %node.name, ?policy, "garbage collector: deleting object whose owners are gone");
        let dp = DeleteParams {
            propagation_policy: Some(policy),
            preconditions: Some(Preconditions {
                uid: Some(uid.to_string()),
                resource_version: None,
            }),
            ..Default::default()
        };
        match api.delete(&node.name, &dp).await {
            Ok(_) => Ok(()),
            // Gone already, or replaced by another object of the same name.
            Err(e) if is_not_found(&e) || is_conflict(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the owner `r` of `dependent` still exists.
    async fn owner_state(
        &self,
        dependent: &Node,
        dep_res: &Resource,
        r: &OwnerReference,
    ) -> Result<OwnerState, Error> {
        if let Some(owner) = self.lock_graph().node(&r.uid) {
            return Ok(if owner.deleting_dependents() {
                OwnerState::Waiting
            } else {
                OwnerState::Solid
            });
        }
        if self
            .absent_owners
            .lock()
            .expect("invariant: cache lock is never poisoned")
            .contains(&r.uid)
        {
            return Ok(OwnerState::Dangling);
        }
        let owner_res = {
            let res = self.lock_resources();
            res.by_kind
                .get(&(group_of(&r.api_version).to_string(), r.kind.clone()))
                .map(|i| res.list[*i].clone())
        };
        // A kind this server does not serve (yet): never delete on a guess.
        let Some(owner_res) = owner_res else {
            return Ok(OwnerState::Solid);
        };
        if owner_res.namespaced && !dep_res.namespaced {
            // A cluster-scoped object cannot be owned by a namespaced one.
            return Ok(OwnerState::Dangling);
        }
        let api = self.api_for(&owner_res, &dependent.namespace);
        let state = match api.get_metadata_opt(&r.name).await? {
            Some(o) if o.metadata.uid.as_deref() == Some(r.uid.as_str()) => {
                let fg = o
                    .metadata
                    .finalizers
                    .iter()
                    .flatten()
                    .any(|f| f == FOREGROUND_FINALIZER);
                if o.metadata.deletion_timestamp.is_some() && fg {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Dangling,
        };
        if matches!(state, OwnerState::Dangling) {
            let mut absent = self
                .absent_owners
                .lock()
                .expect("invariant: cache lock is never poisoned");
            if absent.len() >= ABSENT_OWNER_CACHE {
                absent.clear();
            }
            absent.insert(r.uid.clone());
        }
        Ok(state)
    }

    /// Replaces an object's owner references, guarded by its uid and resourceVersion.
    async fn patch_owner_refs(
        &self,
        res: &Resource,
        node: &Node,
        uid: &str,
        rv: &str,
        refs: serde_json::Value,
    ) -> Result<(), Error> {
        let empty = refs.as_array().is_some_and(Vec::is_empty);
        let mut ops = vec![
            json!({"op": "test", "path": "/metadata/uid", "value": uid}),
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
        ];
        ops.push(if empty {
            json!({"op": "remove", "path": "/metadata/ownerReferences"})
        } else {
            json!({"op": "replace", "path": "/metadata/ownerReferences", "value": refs})
        });
        let api = self.api_for(res, &node.namespace);
        match json_patch::<DynamicObject>(&self.client, &api, &node.name, &json!(ops)).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes `finalizer` from a live object (read fresh, written with a guard).
    async fn remove_finalizer(&self, node: &Node, finalizer: &str) -> Result<(), Error> {
        let Some(res) = self.resource(node.resource) else {
            return Ok(());
        };
        let api = self.api_for(&res, &node.namespace);
        let Some(latest) = api.get_metadata_opt(&node.name).await? else {
            return Ok(());
        };
        if latest.metadata.uid.as_deref() != Some(node.uid.as_str()) {
            return Ok(());
        }
        let finalizers = latest.metadata.finalizers.clone().unwrap_or_default();
        if !finalizers.iter().any(|f| f == finalizer) {
            return Ok(());
        }
        let rest: Vec<&String> = finalizers.iter().filter(|f| *f != finalizer).collect();
        let rv = latest.metadata.resource_version.clone().unwrap_or_default();
        let mut ops = vec![
            json!({"op": "test", "path": "/metadata/uid", "value": node.uid}),
            json!({"op": "test", "path": "/metadata/resourceVersion", "value": rv}),
        ];
        ops.push(if rest.is_empty() {
            json!({"op": "remove", "path": "/metadata/finalizers"})
        } else {
            json!({"op": "replace", "path": "/metadata/finalizers", "value": rest})
        });
        // A failed test op (422: the object changed) is retried from a fresh read.
        match json_patch::<DynamicObject>(&self.client, &api, &node.name, &json!(ops)).await {
            Ok(_) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// A foreground deletion: delete dependents, and once none with
    /// `blockOwnerDeletion` is left, let the owner go (upstream `processDeletingDependentsItem`).
    async fn process_deleting_dependents(&self, owner: &Node) -> Result<(), Error> {
        let dependents = self.lock_graph().dependents(&owner.uid);
        let blocking: Vec<&Node> = dependents
            .iter()
            .filter(|d| {
                d.owners
                    .iter()
                    .any(|r| r.uid == owner.uid && r.block_owner_deletion == Some(true))
            })
            .collect();
        if blocking.is_empty() {
            tracing::debug!(object = %owner.name, "garbage collector: dependents gone; removing foregroundDeletion");
            return self.remove_finalizer(owner, FOREGROUND_FINALIZER).await;
        }
        for d in &dependents {
            if !d.being_deleted || d.deleting_dependents() {
                self.queue
                    .add(WorkItem(Work::AttemptToDelete(d.uid.clone())));
            }
        }
        Ok(())
    }

    /// Upstream `attemptToOrphanWorker`.
    async fn attempt_to_orphan(&self, uid: &str) -> Result<(), Error> {
        let Some(owner) = self.lock_graph().node(uid).cloned() else {
            return Ok(());
        };
        if !owner.orphaning() {
            return Ok(());
        }
        let dependents = self.lock_graph().dependents(uid);
        for d in dependents {
            let Some(res) = self.resource(d.resource) else {
                continue;
            };
            let api = self.api_for(&res, &d.namespace);
            let Some(latest) = api.get_metadata_opt(&d.name).await? else {
                continue;
            };
            if latest.metadata.uid.as_deref() != Some(d.uid.as_str()) {
                continue;
            }
            let refs = latest.metadata.owner_references.clone().unwrap_or_default();
            if !refs.iter().any(|r| r.uid == uid) {
                continue;
            }
            let keep: Vec<&OwnerReference> = refs.iter().filter(|r| r.uid != uid).collect();
            let rv = latest.metadata.resource_version.clone().unwrap_or_default();
            self.patch_owner_refs(&res, &d, &d.uid, &rv, json!(keep))
                .await?;
        }
        tracing::debug!(object = %owner.name, "garbage collector: dependents orphaned; removing orphan finalizer");
        self.remove_finalizer(&owner, ORPHAN_FINALIZER).await
    }
}
