//! The watch cache: an in-memory copy of every resource, fed by one store watch.
//!
//! Upstream's cacher keeps one etcd watch per resource and needs etcd progress
//! notifications to know how current it is. We instead run **one** storage watch over
//! `/registry/` ([`CacheHub`]) and route each event to the [`Cacher`] of the resource
//! whose key prefix matches. Because every write anywhere passes through that single
//! stream, the hub's revision is the store revision it has caught up to, for every
//! resource at once. That gives three properties the API relies on:
//!
//! - **Consistent LIST from memory**: a LIST without `resourceVersion` reads the store's
//!   current revision, waits until the hub has applied it, then serves from the cache.
//!   Read-your-writes holds without touching the store for the data.
//! - **Watch resume**: each cacher keeps a bounded history of its recent events. A watch
//!   from revision `rv` replays history after `rv` and then follows live events. It is
//!   gapless because the replay snapshot and the live subscription are taken under the
//!   same lock the dispatcher holds while it applies and publishes an event. A watch from
//!   before the history window gets `410 Gone` (`too old resource version`), as upstream.
//! - **Resume across restarts**: a new hub starts [`STARTUP_REPLAY_REVISIONS`] behind the
//!   store (never below its compaction horizon) and paused ([`CacheHub::start_paused`]).
//!   Caches registered before [`CacheHub::follow`] are loaded at that past revision, and
//!   following replays the store's history since then into them, so a client that saw
//!   revision `rv` before the restart resumes from `rv` instead of getting 410 and
//!   re-listing. (Upstream's cache starts at the current revision and answers 410.)
//! - **Fan-out**: watchers share one `Arc<CacheEvent>` per change (with the object's JSON
//!   already serialised), so 100 watchers cost 100 filter checks, not 100 decodes.
//!   Live events are read from the same bounded history that serves resumption
//!   ([`LiveEvents`]): a watcher is a position in it, woken when it grows, and one that
//!   falls out of the window is cut off. There is no per-resource channel preallocating
//!   its slots (a `tokio::sync::broadcast` of 16k slots for each of the ~40 watched
//!   resources was half of an idle server's heap).
//!
//! Objects are kept as serialised JSON plus their labels and selectable fields; the
//! parsed tree is not kept, which keeps memory close to the size of the data.

use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use parking_lot::RwLock;
use serde_json::Value;
use storage::{KeyValue, Storage, StorageError, WatchEvent};
use tokio::sync::{watch, Mutex as AsyncMutex, Notify};
use tokio_util::sync::CancellationToken;

use crate::error::{RegistryError, Result};

/// Recent events kept per resource, for watch resumption and as the live feed: a
/// watcher further behind than this is cut off.
const HISTORY_CAPACITY: usize = 10_000;
/// Most events a live watcher takes from the history under one lock.
const LIVE_BATCH: usize = 256;
/// Store revisions replayed into the caches when the server starts, so watchers can
/// resume across a restart (bounded by the store's compaction).
pub const STARTUP_REPLAY_REVISIONS: i64 = HISTORY_CAPACITY as i64;

/// Labels and selectable fields of an object, extracted once when it enters the cache.
#[derive(Clone, Debug, Default)]
pub struct ObjectAttrs {
    pub labels: BTreeMap<String, String>,
    pub fields: Vec<(String, String)>,
}

impl ObjectAttrs {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

pub type AttrsFn = Arc<dyn Fn(&Value) -> ObjectAttrs + Send + Sync>;

/// One object as the cache holds it.
#[derive(Debug)]
pub struct CachedObject {
    pub key: String,
    pub namespace: String,
    pub name: String,
    pub revision: i64,
    /// The object's JSON with `metadata.resourceVersion` set.
    pub json: Bytes,
    pub attrs: ObjectAttrs,
}

impl CachedObject {
    pub fn value(&self) -> Result<Value> {
        serde_json::from_slice(&self.json).map_err(RegistryError::internal)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change to one object. For `Deleted`, `object` is the last state with the
/// deletion's revision as its resourceVersion.
#[derive(Debug)]
pub struct CacheEvent {
    pub kind: EventType,
    pub object: Arc<CachedObject>,
    pub prev: Option<Arc<CachedObject>>,
    pub revision: i64,
}

struct State {
    objects: BTreeMap<String, Arc<CachedObject>>,
    history: VecDeque<Arc<CacheEvent>>,
    /// Every event with a revision greater than this is in `history`.
    oldest: i64,
    /// Sequence number of `history[0]`; events are numbered in the order applied.
    first_seq: u64,
}

impl State {
    /// Sequence number the next applied event gets.
    fn next_seq(&self) -> u64 {
        self.first_seq + self.history.len() as u64
    }
}

/// The cache of one resource (one storage prefix).
pub struct Cacher {
    prefix: String,
    attrs: AttrsFn,
    state: RwLock<State>,
    /// [`State::next_seq`] after each applied event; wakes [`LiveEvents`].
    published: watch::Sender<u64>,
}

/// Where a watch starts.
pub enum WatchStart {
    /// Send every current object as ADDED, then follow (`resourceVersion` unset or "0",
    /// or `sendInitialEvents=true`).
    InitialEvents,
    /// Changes after this revision.
    After(i64),
}

/// A new watch: events to send first, then the live ones.
pub struct WatchSubscription {
    pub initial: Vec<Arc<CacheEvent>>,
    pub live: LiveEvents,
    /// Revision the initial events are consistent with.
    pub revision: i64,
}

/// Why [`LiveEvents::recv`] ends a watch.
#[derive(Debug, PartialEq, Eq)]
pub enum LiveError {
    /// The watcher fell this many events behind the history window.
    Lagged(u64),
    /// The cache is gone.
    Closed,
}

/// A watcher's position in its cacher's history: every event applied after the
/// subscription, in order.
pub struct LiveEvents {
    cacher: Arc<Cacher>,
    next: u64,
    published: watch::Receiver<u64>,
    ready: VecDeque<Arc<CacheEvent>>,
}

impl LiveEvents {
    /// The next event, waiting for one if the watcher is caught up.
    pub async fn recv(&mut self) -> std::result::Result<Arc<CacheEvent>, LiveError> {
        loop {
            if let Some(e) = self.ready.pop_front() {
                return Ok(e);
            }
            // Marked seen before reading the history, so an event applied after the read
            // still wakes `changed` below.
            self.published.borrow_and_update();
            {
                let state = self.cacher.state.read();
                if self.next < state.first_seq {
                    return Err(LiveError::Lagged(state.first_seq - self.next));
                }
                let start = (self.next - state.first_seq) as usize;
                self.ready
                    .extend(state.history.range(start..).take(LIVE_BATCH).cloned());
                self.next += self.ready.len() as u64;
            }
            if self.ready.is_empty() && self.published.changed().await.is_err() {
                return Err(LiveError::Closed);
            }
        }
    }
}

impl Cacher {
    fn new(prefix: String, attrs: AttrsFn, revision: i64, kvs: Vec<KeyValue>) -> Self {
        let mut objects = BTreeMap::new();
        for kv in kvs {
            if let Some(obj) = decode(&kv.key, &kv.value, kv.mod_revision, &attrs) {
                objects.insert(kv.key.clone(), Arc::new(obj));
            }
        }
        Cacher {
            prefix,
            attrs,
            state: RwLock::new(State {
                objects,
                history: VecDeque::new(),
                oldest: revision,
                first_seq: 0,
            }),
            published: watch::Sender::new(0),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Current objects under `sub_prefix` (a namespace's keys, or all), in key order.
    pub fn list(
        &self,
        sub_prefix: &str,
        filter: impl Fn(&CachedObject) -> bool,
    ) -> Vec<Arc<CachedObject>> {
        let state = self.state.read();
        state
            .objects
            .range(sub_prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(sub_prefix))
            .filter(|(_, o)| filter(o))
            .map(|(_, o)| o.clone())
            .collect()
    }

    pub fn get(&self, key: &str) -> Option<Arc<CachedObject>> {
        self.state.read().objects.get(key).cloned()
    }

    pub fn len(&self) -> usize {
        self.state.read().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Subscribes a watcher; `hub_revision` is the revision the hub has applied.
    pub fn watch(
        self: &Arc<Self>,
        sub_prefix: &str,
        start: WatchStart,
        hub_revision: i64,
    ) -> Result<WatchSubscription> {
        let state = self.state.read();
        let live = LiveEvents {
            cacher: self.clone(),
            next: state.next_seq(),
            published: self.published.subscribe(),
            ready: VecDeque::new(),
        };
        match start {
            WatchStart::InitialEvents => {
                let initial = state
                    .objects
                    .range(sub_prefix.to_string()..)
                    .take_while(|(k, _)| k.starts_with(sub_prefix))
                    .map(|(_, o)| {
                        Arc::new(CacheEvent {
                            kind: EventType::Added,
                            object: o.clone(),
                            prev: None,
                            revision: o.revision,
                        })
                    })
                    .collect();
                Ok(WatchSubscription {
                    initial,
                    live,
                    revision: hub_revision,
                })
            }
            WatchStart::After(rv) => {
                if rv < state.oldest {
                    return Err(RegistryError::Gone(format!(
                        "too old resource version: {rv} ({})",
                        state.oldest + 1
                    )));
                }
                let initial = state
                    .history
                    .iter()
                    .filter(|e| e.revision > rv && e.object.key.starts_with(sub_prefix))
                    .cloned()
                    .collect();
                Ok(WatchSubscription {
                    initial,
                    live,
                    revision: hub_revision.max(rv),
                })
            }
        }
    }

    fn apply(&self, event: WatchEvent) {
        let mut state = self.state.write();
        // A cache loaded later than the hub's revision (see `CacheHub::register`) already
        // reflects these.
        if event.revision() <= state.oldest {
            return;
        }
        let cache_event = match event {
            WatchEvent::Put { kv, .. } => {
                let Some(obj) = decode(&kv.key, &kv.value, kv.mod_revision, &self.attrs) else {
                    return;
                };
                let obj = Arc::new(obj);
                let prev = state.objects.insert(kv.key.clone(), obj.clone());
                let kind = if prev.is_some() {
                    EventType::Modified
                } else {
                    EventType::Added
                };
                CacheEvent {
                    kind,
                    object: obj,
                    prev,
                    revision: kv.mod_revision,
                }
            }
            WatchEvent::Delete { prev, revision } => {
                let old = state.objects.remove(&prev.key);
                let Some(last) = decode(&prev.key, &prev.value, revision, &self.attrs)
                    .map(Arc::new)
                    .or_else(|| old.clone())
                else {
                    return;
                };
                CacheEvent {
                    kind: EventType::Deleted,
                    object: last,
                    prev: old,
                    revision,
                }
            }
        };
        state.history.push_back(Arc::new(cache_event));
        while state.history.len() > HISTORY_CAPACITY {
            if let Some(e) = state.history.pop_front() {
                state.oldest = e.revision;
                state.first_seq += 1;
            }
        }
        let next = state.next_seq();
        drop(state);
        self.published.send_replace(next);
    }
}

fn decode(key: &str, value: &[u8], revision: i64, attrs: &AttrsFn) -> Option<CachedObject> {
    let mut obj: Value = match serde_json::from_slice(value) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(key, error = %e, "undecodable object in store; skipped");
            return None;
        }
    };
    crate::meta::set_meta(
        &mut obj,
        "resourceVersion",
        Value::String(revision.to_string()),
    );
    let a = attrs(&obj);
    // Sized from the stored form (the object plus its resourceVersion): a buffer grown
    // by doubling keeps up to twice the object's size for as long as it is cached.
    let mut json = Vec::with_capacity(value.len() + 32);
    serde_json::to_writer(&mut json, &obj).ok()?;
    json.shrink_to_fit();
    let json = Bytes::from(json);
    Some(CachedObject {
        key: key.to_string(),
        namespace: crate::meta::namespace(&obj).to_string(),
        name: crate::meta::name(&obj).to_string(),
        revision,
        json,
        attrs: a,
    })
}

/// Where a hub replaying up to `replay` revisions starts: not below the store's
/// compaction horizon, and not at 0, which a store watch reads as "from now on".
async fn replay_start(storage: &dyn Storage, current: i64, replay: i64) -> i64 {
    if replay <= 0 || current <= 1 {
        return current;
    }
    let compacted = storage.compacted_revision().await.unwrap_or(current);
    let mut from = (current - replay).max(compacted).max(1);
    // A prefix can have a later horizon than the store's (SQLite compacts lease history
    // sooner); a watch of the root reports the one that applies.
    for _ in 0..3 {
        match storage.watch(ROOT_PREFIX, from).await {
            Ok(_) => return from,
            Err(StorageError::Compacted { compacted, .. })
                if compacted > from && compacted <= current =>
            {
                from = compacted
            }
            Err(_) => return current,
        }
    }
    current
}

/// One store watch feeding every resource's cache; see the module docs.
pub struct CacheHub {
    storage: Arc<dyn Storage>,
    cachers: RwLock<Vec<Arc<Cacher>>>,
    /// Serialises dispatch against registering a new cacher.
    dispatch: AsyncMutex<()>,
    revision: AtomicI64,
    advanced: Notify,
    /// Released by [`CacheHub::follow`]; the store watch starts only then.
    gate: Notify,
}

pub const ROOT_PREFIX: &str = "/registry/";

impl CacheHub {
    /// Starts the hub: watches the whole store from its current revision.
    pub async fn start(
        storage: Arc<dyn Storage>,
        cancel: CancellationToken,
    ) -> Result<Arc<CacheHub>> {
        let hub = Self::start_paused(storage, cancel, 0).await?;
        hub.gate.notify_one();
        Ok(hub)
    }

    /// Starts the hub up to `replay` revisions behind the store, paused: caches
    /// registered before [`CacheHub::follow`] are loaded at that past revision and get
    /// the history since then as watch history (see the module docs).
    pub async fn start_paused(
        storage: Arc<dyn Storage>,
        cancel: CancellationToken,
        replay: i64,
    ) -> Result<Arc<CacheHub>> {
        let current = storage
            .current_revision()
            .await
            .map_err(RegistryError::internal)?;
        let revision = replay_start(&*storage, current, replay).await;
        let hub = Arc::new(CacheHub {
            storage: storage.clone(),
            cachers: RwLock::new(Vec::new()),
            dispatch: AsyncMutex::new(()),
            revision: AtomicI64::new(revision),
            advanced: Notify::new(),
            gate: Notify::new(),
        });
        let runner = hub.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = runner.gate.notified() => {}
            }
            runner.run(cancel).await
        });
        Ok(hub)
    }

    /// Starts following the store (a no-op after the first call) and waits until the
    /// hub has caught up with the store's current revision.
    pub async fn follow(&self, deadline: Duration) -> Result<i64> {
        self.gate.notify_one();
        let current = self
            .storage
            .current_revision()
            .await
            .map_err(RegistryError::internal)?;
        self.wait_for(current, deadline).await?;
        Ok(self.revision())
    }

    async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            let from = self.revision.load(Ordering::Acquire);
            let stream = match self.storage.watch(ROOT_PREFIX, from).await {
                Ok(s) => s,
                Err(StorageError::Compacted { .. }) => {
                    tracing::error!("watch cache is behind compaction; rebuilding caches");
                    self.rebuild().await;
                    continue;
                }
                Err(e) => {
                    tracing::error!(error = %e, "watch cache cannot watch the store; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            let mut stream = stream;
            loop {
                let next = tokio::select! {
                    _ = cancel.cancelled() => return,
                    n = stream.next() => n,
                };
                match next {
                    Some(Ok(event)) => self.dispatch_event(event).await,
                    Some(Err(StorageError::Compacted { .. })) => {
                        tracing::error!("watch cache fell behind compaction; rebuilding caches");
                        self.rebuild().await;
                        break;
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "store watch failed; resuming");
                        break;
                    }
                    None => break,
                }
            }
        }
    }

    async fn dispatch_event(&self, event: WatchEvent) {
        let _guard = self.dispatch.lock().await;
        let revision = event.revision();
        if revision <= self.revision.load(Ordering::Acquire) {
            return;
        }
        if let Some(c) = self.cacher_for(event.key()) {
            c.apply(event);
        }
        self.revision.store(revision, Ordering::Release);
        self.advanced.notify_waiters();
    }

    async fn rebuild(&self) {
        let _guard = self.dispatch.lock().await;
        let Ok(rev) = self.storage.current_revision().await else {
            return;
        };
        let cachers = self.cachers.read().clone();
        for c in cachers {
            if let Ok(list) = self.storage.list(&c.prefix, rev, None, 0).await {
                let fresh = Cacher::new(c.prefix.clone(), c.attrs.clone(), rev, list.items);
                let fresh_state = fresh.state.into_inner();
                *c.state.write() = fresh_state;
            }
        }
        self.revision.store(rev, Ordering::Release);
        self.advanced.notify_waiters();
    }

    fn cacher_for(&self, key: &str) -> Option<Arc<Cacher>> {
        let cachers = self.cachers.read();
        cachers
            .iter()
            .filter(|c| key.starts_with(&c.prefix))
            .max_by_key(|c| c.prefix.len())
            .cloned()
    }

    /// Creates (or returns) the cacher for `prefix`, loaded consistently with the hub.
    pub async fn register(&self, prefix: &str, attrs: AttrsFn) -> Result<Arc<Cacher>> {
        let _guard = self.dispatch.lock().await;
        if let Some(c) = self.cachers.read().iter().find(|c| c.prefix == prefix) {
            return Ok(c.clone());
        }
        let rev = self.revision.load(Ordering::Acquire);
        let (rev, list) = match self.storage.list(prefix, rev, None, 0).await {
            // Compaction overtook a paused (replaying) hub: load the latest state; the
            // cacher then ignores the replayed events it already reflects.
            Err(StorageError::Compacted { .. }) => {
                let latest = self.storage.list(prefix, 0, None, 0).await;
                (latest.as_ref().map_or(rev, |l| l.revision), latest)
            }
            other => (rev, other),
        };
        let list = list.map_err(|e| RegistryError::from_storage(e, "", prefix, ""))?;
        let cacher = Arc::new(Cacher::new(prefix.to_string(), attrs, rev, list.items));
        self.cachers.write().push(cacher.clone());
        Ok(cacher)
    }

    pub fn unregister(&self, prefix: &str) {
        self.cachers.write().retain(|c| c.prefix != prefix);
    }

    /// The store revision every cache has applied.
    pub fn revision(&self) -> i64 {
        self.revision.load(Ordering::Acquire)
    }

    /// Waits until the hub has applied `revision` (or the deadline passes).
    pub async fn wait_for(&self, revision: i64, deadline: Duration) -> Result<()> {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.advanced.notified();
            if self.revision() >= revision {
                return Ok(());
            }
            if tokio::time::timeout_at(until, notified).await.is_err() {
                return Err(RegistryError::Timeout(format!(
                    "Too large resource version: {revision}, current: {}",
                    self.revision()
                )));
            }
        }
    }

    /// Waits until the hub has caught up with the store's current revision.
    pub async fn sync(&self) -> Result<i64> {
        let current = self
            .storage
            .current_revision()
            .await
            .map_err(RegistryError::internal)?;
        self.wait_for(current, Duration::from_secs(3)).await?;
        Ok(self.revision())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CM: &str = "/registry/configmaps/";

    fn attrs() -> AttrsFn {
        Arc::new(|_: &Value| ObjectAttrs::default())
    }

    /// A store with configmaps at revisions 1..=5 and a secret at 6.
    async fn store(dir: &std::path::Path) -> Arc<dyn Storage> {
        let db = storage::sqlite::SqliteStorage::open(&dir.join("state.db")).expect("open sqlite");
        for i in 1..=5 {
            let obj = serde_json::json!({"metadata": {"name": format!("c{i}"), "namespace": "ns"}});
            db.create(&format!("{CM}ns/c{i}"), Bytes::from(obj.to_string()))
                .await
                .expect("create");
        }
        let secret = serde_json::json!({"metadata": {"name": "s", "namespace": "ns"}});
        db.create("/registry/secrets/ns/s", Bytes::from(secret.to_string()))
            .await
            .expect("create");
        Arc::new(db)
    }

    fn revisions(sub: &WatchSubscription) -> Vec<i64> {
        sub.initial.iter().map(|e| e.revision).collect()
    }

    fn put(cacher: &Cacher, name: &str, revision: i64) {
        let obj = serde_json::json!({"metadata": {"name": name, "namespace": "ns"}});
        cacher.apply(WatchEvent::Put {
            kv: KeyValue {
                key: format!("{CM}ns/{name}"),
                value: Bytes::from(obj.to_string()),
                create_revision: revision,
                mod_revision: revision,
            },
            prev: None,
        });
    }

    #[tokio::test]
    async fn live_events_arrive_in_order_and_a_watcher_behind_the_window_is_cut_off() {
        let cacher = Arc::new(Cacher::new(CM.to_string(), attrs(), 0, Vec::new()));
        let mut caught_up = cacher.watch(CM, WatchStart::After(0), 0).expect("watch");
        let mut behind = cacher.watch(CM, WatchStart::After(0), 0).expect("watch");

        // A waiting watcher is woken by the next event.
        let waiter = tokio::spawn(async move {
            let e = caught_up.live.recv().await.expect("event");
            (caught_up, e.revision)
        });
        put(&cacher, "c1", 1);
        let (mut caught_up, first) = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("woken")
            .expect("join");
        assert_eq!(first, 1);

        // More than the window: the watcher reading along sees every one, in order.
        let total = HISTORY_CAPACITY as i64 + 10;
        let mut seen = 1;
        for rev in 2..=total {
            put(&cacher, &format!("c{rev}"), rev);
            if rev % 1000 == 0 || rev == total {
                for want in seen + 1..=rev {
                    assert_eq!(caught_up.live.recv().await.expect("event").revision, want);
                }
                seen = rev;
            }
        }
        // The one that never read lost its place.
        assert_eq!(behind.live.recv().await.err(), Some(LiveError::Lagged(10)));
        // A new watcher starts at the end.
        let later = cacher
            .watch(CM, WatchStart::After(total), total)
            .expect("watch");
        assert!(later.initial.is_empty());
        assert_eq!(later.live.next, cacher.state.read().next_seq());
    }

    #[tokio::test]
    async fn a_paused_hub_replays_recent_history_so_watches_resume_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = store(dir.path()).await;
        let cancel = CancellationToken::new();

        // Without replay (upstream's behaviour) the window starts now.
        let fresh = CacheHub::start(storage.clone(), cancel.clone())
            .await
            .expect("start");
        let cacher = fresh.register(CM, attrs()).await.expect("register");
        assert!(matches!(
            cacher.watch(CM, WatchStart::After(2), fresh.revision()),
            Err(RegistryError::Gone(_))
        ));

        let hub = CacheHub::start_paused(storage.clone(), cancel.clone(), 100)
            .await
            .expect("start");
        let cacher = hub.register(CM, attrs()).await.expect("register");
        assert_eq!(hub.follow(Duration::from_secs(5)).await.expect("follow"), 6);
        assert_eq!(cacher.len(), 5);
        let sub = cacher
            .watch(CM, WatchStart::After(2), hub.revision())
            .expect("resume from 2");
        assert_eq!(revisions(&sub), vec![3, 4, 5]);
        cancel.cancel();
    }

    #[tokio::test]
    async fn replay_stops_at_the_compaction_horizon() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = store(dir.path()).await;
        storage.compact(4).await.expect("compact");
        let cancel = CancellationToken::new();
        let hub = CacheHub::start_paused(storage, cancel.clone(), 100)
            .await
            .expect("start");
        let cacher = hub.register(CM, attrs()).await.expect("register");
        hub.follow(Duration::from_secs(5)).await.expect("follow");
        assert!(matches!(
            cacher.watch(CM, WatchStart::After(3), hub.revision()),
            Err(RegistryError::Gone(_))
        ));
        let sub = cacher
            .watch(CM, WatchStart::After(4), hub.revision())
            .expect("resume from 4");
        assert_eq!(revisions(&sub), vec![5]);
        cancel.cancel();
    }
}
