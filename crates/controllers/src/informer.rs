//! Shared informers (client-go's `SharedIndexInformer`): one watch per resource type
//! feeds a reflector cache, an index of objects by their controller's uid, and event
//! handlers that several controllers register on the same watch.
//!
//! Order matters for expectations: an event is first applied to the cache and the
//! index, then handed to the handlers. A handler that lowers an expectation therefore
//! never lets a reconcile run against a cache that does not yet show the change.
//!
//! kube-runtime's own shared streams only fan out `Apply` events (deletions are lost),
//! which is why the fan-out lives here: handlers see `Added`, `Updated` (with the old
//! object) and `Deleted`, and a relist turns into the same three kinds of events.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::Api;
use kube::runtime::reflector::{store::Writer, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

/// One change seen by an informer, after its cache has been updated.
#[derive(Debug)]
pub enum Change<'a, K> {
    Added(&'a K),
    Updated { old: &'a K, new: &'a K },
    Deleted(&'a K),
}

type Handler<K> = Box<dyn Fn(&Change<'_, K>) + Send + Sync>;

/// `namespace/name` of an object, the key controllers queue and index by.
pub type Key = (String, String);

/// The controller owner reference of `meta` (upstream `metav1.GetControllerOf`).
pub fn controller_of(
    meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta,
) -> Option<&OwnerReference> {
    meta.owner_references
        .iter()
        .flatten()
        .find(|r| r.controller == Some(true))
}

#[derive(Default)]
struct ControllerIndex {
    /// Controller uid → objects it controls.
    by_controller: HashMap<String, HashSet<Key>>,
    /// Namespace → objects without a controller.
    orphans: HashMap<String, HashSet<String>>,
}

impl ControllerIndex {
    fn insert<K: Resource>(&mut self, obj: &K) {
        let key = key_of(obj);
        match controller_of(obj.meta()) {
            Some(r) => {
                self.by_controller
                    .entry(r.uid.clone())
                    .or_default()
                    .insert(key);
            }
            None => {
                self.orphans.entry(key.0).or_default().insert(key.1);
            }
        }
    }

    fn remove<K: Resource>(&mut self, obj: &K) {
        let key = key_of(obj);
        match controller_of(obj.meta()) {
            Some(r) => {
                if let Some(set) = self.by_controller.get_mut(&r.uid) {
                    set.remove(&key);
                    if set.is_empty() {
                        self.by_controller.remove(&r.uid);
                    }
                }
            }
            None => {
                if let Some(set) = self.orphans.get_mut(&key.0) {
                    set.remove(&key.1);
                    if set.is_empty() {
                        self.orphans.remove(&key.0);
                    }
                }
            }
        }
    }
}

/// `(namespace, name)` of an object; cluster-scoped objects have an empty namespace.
pub fn key_of<K: Resource>(obj: &K) -> Key {
    let m = obj.meta();
    (
        m.namespace.clone().unwrap_or_default(),
        m.name.clone().unwrap_or_default(),
    )
}

/// A read handle on an informer's cache. Cheap to clone.
pub struct Cache<K: Resource<DynamicType = ()> + 'static> {
    store: Store<K>,
    index: Arc<RwLock<ControllerIndex>>,
    synced: tokio::sync::watch::Receiver<bool>,
}

impl<K: Resource<DynamicType = ()> + 'static> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Cache {
            store: self.store.clone(),
            index: self.index.clone(),
            synced: self.synced.clone(),
        }
    }
}

impl<K> Cache<K>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    /// The kube-runtime store, e.g. for `controller::applier`.
    pub fn store(&self) -> Store<K> {
        self.store.clone()
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        self.store.get(&obj_ref(namespace, name))
    }

    /// Objects whose controller reference has `uid`.
    pub fn controlled_by(&self, uid: &str) -> Vec<Arc<K>> {
        let keys: Vec<Key> = {
            let index = self
                .index
                .read()
                .expect("invariant: informer index lock is never poisoned");
            index
                .by_controller
                .get(uid)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        keys.iter()
            .filter_map(|(ns, name)| self.get(ns, name))
            .collect()
    }

    /// Objects in `namespace` that have no controller.
    pub fn orphans_in(&self, namespace: &str) -> Vec<Arc<K>> {
        let names: Vec<String> = {
            let index = self
                .index
                .read()
                .expect("invariant: informer index lock is never poisoned");
            index
                .orphans
                .get(namespace)
                .map(|s| s.iter().cloned().collect())
                .unwrap_or_default()
        };
        names
            .iter()
            .filter_map(|name| self.get(namespace, name))
            .collect()
    }

    /// Every object in `namespace` (a scan of the whole cache).
    pub fn in_namespace(&self, namespace: &str) -> Vec<Arc<K>> {
        self.store
            .state_filter(|o| o.meta().namespace.as_deref().unwrap_or("") == namespace)
    }

    /// Waits for the first complete list. (kube-runtime's `Store::wait_until_ready`
    /// wakes only the last of several concurrent waiters, so readiness has its own
    /// channel here.)
    pub async fn wait_until_ready(&self) {
        let mut synced = self.synced.clone();
        // A closed channel means the informer is gone, and with it the controller.
        let _ = synced.wait_for(|s| *s).await;
    }
}

fn obj_ref<K: Resource<DynamicType = ()>>(namespace: &str, name: &str) -> ObjectRef<K> {
    let r = ObjectRef::new(name);
    if namespace.is_empty() {
        r
    } else {
        r.within(namespace)
    }
}

/// A watch on one resource type with its cache and handlers. Register handlers, hand
/// out [`Cache`]s, then [`Informer::run`] it.
pub struct Informer<K: Resource<DynamicType = ()> + Clone + 'static> {
    api: Api<K>,
    config: watcher::Config,
    writer: Writer<K>,
    index: Arc<RwLock<ControllerIndex>>,
    handlers: Vec<Handler<K>>,
    synced: tokio::sync::watch::Sender<bool>,
}

impl<K> Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    pub fn new(api: Api<K>, config: watcher::Config) -> Self {
        let (synced, _) = tokio::sync::watch::channel(false);
        Informer {
            api,
            config,
            writer: Writer::default(),
            index: Arc::default(),
            handlers: Vec::new(),
            synced,
        }
    }

    pub fn cache(&self) -> Cache<K> {
        Cache {
            store: self.writer.as_reader(),
            index: self.index.clone(),
            synced: self.synced.subscribe(),
        }
    }

    /// Adds a handler. Handlers run on the informer's task: keep them short (enqueue keys,
    /// lower expectations).
    pub fn add_handler(&mut self, handler: impl Fn(&Change<'_, K>) + Send + Sync + 'static) {
        self.handlers.push(Box::new(handler));
    }

    /// Watches until `cancel` fires; watch errors are retried with backoff.
    pub async fn run(mut self, cancel: CancellationToken) {
        let stream = watcher(self.api.clone(), self.config.clone()).default_backoff();
        futures::pin_mut!(stream);
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return,
                next = stream.next() => next,
            };
            match next {
                Some(Ok(event)) => self.apply(event),
                Some(Err(e)) => {
                    tracing::warn!(error = %e, resource = %K::plural(&()), "watch error; retrying")
                }
                None => return,
            }
        }
    }

    fn apply(&mut self, event: watcher::Event<K>) {
        match &event {
            watcher::Event::Apply(obj) => {
                let old = self.writer.as_reader().get(&ObjectRef::from_obj(obj));
                self.writer.apply_watcher_event(&event);
                {
                    let mut index = self
                        .index
                        .write()
                        .expect("invariant: informer index lock is never poisoned");
                    if let Some(old) = &old {
                        index.remove(old.as_ref());
                    }
                    index.insert(obj);
                }
                match &old {
                    Some(old) => self.dispatch(&Change::Updated { old, new: obj }),
                    None => self.dispatch(&Change::Added(obj)),
                }
            }
            watcher::Event::Delete(obj) => {
                let old = self.writer.as_reader().get(&ObjectRef::from_obj(obj));
                self.writer.apply_watcher_event(&event);
                {
                    let mut index = self
                        .index
                        .write()
                        .expect("invariant: informer index lock is never poisoned");
                    if let Some(old) = &old {
                        index.remove(old.as_ref());
                    }
                    index.remove(obj);
                }
                self.dispatch(&Change::Deleted(obj));
            }
            watcher::Event::Init | watcher::Event::InitApply(_) => {
                self.writer.apply_watcher_event(&event)
            }
            watcher::Event::InitDone => {
                tracing::debug!(resource = %K::plural(&()), "informer listed");
                let reader = self.writer.as_reader();
                let before: HashMap<ObjectRef<K>, Arc<K>> = reader
                    .state()
                    .into_iter()
                    .map(|o| (ObjectRef::from_obj(o.as_ref()), o))
                    .collect();
                self.writer.apply_watcher_event(&event);
                let after = reader.state();
                {
                    let mut index = self
                        .index
                        .write()
                        .expect("invariant: informer index lock is never poisoned");
                    *index = ControllerIndex::default();
                    for o in &after {
                        index.insert(o.as_ref());
                    }
                }
                self.synced.send_replace(true);
                let mut seen = HashSet::new();
                for new in &after {
                    let r = ObjectRef::from_obj(new.as_ref());
                    match before.get(&r) {
                        Some(old) => self.dispatch(&Change::Updated { old, new }),
                        None => self.dispatch(&Change::Added(new)),
                    }
                    seen.insert(r);
                }
                for (r, old) in &before {
                    if !seen.contains(r) {
                        self.dispatch(&Change::Deleted(old));
                    }
                }
            }
        }
    }

    fn dispatch(&self, change: &Change<'_, K>) {
        for h in &self.handlers {
            h(change);
        }
    }
}

/// Type-erased informer, so one factory can hold informers of every kind.
trait AnyInformer: Send {
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any;
    fn spawn(self: Box<Self>, cancel: CancellationToken) -> tokio::task::JoinHandle<()>;
}

impl<K> AnyInformer for Informer<K>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    fn as_any_mut(&mut self) -> &mut dyn std::any::Any {
        self
    }

    fn spawn(self: Box<Self>, cancel: CancellationToken) -> tokio::task::JoinHandle<()> {
        tokio::spawn(self.run(cancel))
    }
}

/// One informer per resource type, shared by every controller that asks for it
/// (client-go's `SharedInformerFactory`): controllers register handlers while being
/// built, then [`InformerFactory::start`] runs the watches.
pub struct InformerFactory {
    client: kube::Client,
    informers: HashMap<std::any::TypeId, Box<dyn AnyInformer>>,
}

impl InformerFactory {
    pub fn new(client: kube::Client) -> Self {
        InformerFactory {
            client,
            informers: HashMap::new(),
        }
    }

    /// The informer for `K` over all namespaces, created on first use.
    pub fn informer<K>(&mut self) -> &mut Informer<K>
    where
        K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    {
        let client = self.client.clone();
        let entry = self
            .informers
            .entry(std::any::TypeId::of::<K>())
            .or_insert_with(|| {
                Box::new(Informer::<K>::new(
                    Api::all_with(client, &()),
                    watcher::Config::default(),
                ))
            });
        entry
            .as_any_mut()
            .downcast_mut::<Informer<K>>()
            .expect("invariant: informers are keyed by their own TypeId")
    }

    /// Starts every informer; each stops when `cancel` fires.
    pub fn start(self, cancel: &CancellationToken) -> Vec<tokio::task::JoinHandle<()>> {
        self.informers
            .into_values()
            .map(|i| i.spawn(cancel.clone()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use std::sync::Mutex;

    fn pod(name: &str, rv: &str, owner: Option<&str>) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                resource_version: Some(rv.into()),
                owner_references: owner.map(|uid| {
                    vec![OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "rs".into(),
                        uid: uid.into(),
                        controller: Some(true),
                        block_owner_deletion: Some(true),
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn informer_with_log() -> (Informer<Pod>, Arc<Mutex<Vec<String>>>) {
        // An Api is needed only by `run`; a client that never connects is enough here.
        let config = kube::Config::new("http://127.0.0.1:9".parse().expect("literal url"));
        let client = kube::Client::try_from(config).expect("client");
        let mut inf = Informer::new(Api::<Pod>::all(client), watcher::Config::default());
        let log = Arc::new(Mutex::new(Vec::new()));
        let l = log.clone();
        inf.add_handler(move |c| {
            let s = match c {
                Change::Added(p) => format!("add {}", p.metadata.name.clone().unwrap_or_default()),
                Change::Updated { old, new } => format!(
                    "update {} {}->{}",
                    new.metadata.name.clone().unwrap_or_default(),
                    old.metadata.resource_version.clone().unwrap_or_default(),
                    new.metadata.resource_version.clone().unwrap_or_default()
                ),
                Change::Deleted(p) => {
                    format!("delete {}", p.metadata.name.clone().unwrap_or_default())
                }
            };
            l.lock().expect("lock").push(s);
        });
        (inf, log)
    }

    #[tokio::test]
    async fn events_update_cache_and_index_before_handlers_and_relists_diff() {
        let (mut inf, log) = informer_with_log();
        let cache = inf.cache();
        inf.apply(watcher::Event::Init);
        inf.apply(watcher::Event::InitApply(pod("a", "1", Some("u1"))));
        inf.apply(watcher::Event::InitApply(pod("b", "1", None)));
        inf.apply(watcher::Event::InitDone);
        assert_eq!(cache.controlled_by("u1").len(), 1);
        assert_eq!(cache.orphans_in("ns").len(), 1);

        // Adoption moves b from the orphan set to its controller.
        inf.apply(watcher::Event::Apply(pod("b", "2", Some("u1"))));
        assert_eq!(cache.controlled_by("u1").len(), 2);
        assert!(cache.orphans_in("ns").is_empty());

        inf.apply(watcher::Event::Delete(pod("a", "3", Some("u1"))));
        assert_eq!(cache.controlled_by("u1").len(), 1);

        // A relist that misses b and finds c reports both.
        inf.apply(watcher::Event::Init);
        inf.apply(watcher::Event::InitApply(pod("c", "5", None)));
        inf.apply(watcher::Event::InitDone);
        assert!(cache.controlled_by("u1").is_empty());
        assert_eq!(cache.orphans_in("ns").len(), 1);
        let mut got = log.lock().expect("lock").clone();
        // The first list's order is the cache's (a hash map).
        got[..2].sort();
        assert_eq!(
            got,
            vec![
                "add a",
                "add b",
                "update b 1->2",
                "delete a",
                "add c",
                "delete b"
            ]
        );
    }
}
