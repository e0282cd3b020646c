//! The embedded store: a log of revisions in SQLite (after kine's log-structured design).
//!
//! # Layout
//! One table, `log`, holds one row per write; its `id` is the revision. A row records
//! the key, whether it created the key or is a deletion marker, the key's
//! `create_revision`, the id of the key's previous row (`prev_revision`) and the value
//! (for a deletion marker: the deleted value). A key's current value is its highest-id
//! row unless that row is a deletion marker; its value at revision R is its highest row
//! with id <= R. An index on `(name, id)` makes both lookups index seeks. A `meta`
//! table records the current, compacted and lease-compacted revisions, so revisions are
//! never reused after compaction or restart.
//!
//! # Writes: one writer, group commit
//! A std thread owns the only write connection (WAL, `synchronous=FULL`). Callers
//! enqueue operations and await a oneshot. The writer drains whatever is queued (up to
//! 256 writes), applies each in order inside one transaction (its own revision, its own
//! precondition check, failed preconditions consume no revision), commits once (one
//! fsync), then publishes `current`, broadcasts the batch's events and answers every
//! caller. A write is therefore acknowledged only after it is durable. Reads use a
//! small pool of read connections on the blocking thread pool and, thanks to WAL,
//! never wait for the writer.
//!
//! # Watch
//! Events are pushed from the writer through a `tokio::sync::broadcast`; nothing polls
//! the table. The `watch` submodule documents how history replay and live events are
//! joined without gap or duplicate and how an overrun watcher recovers from the log.
//!
//! # Compaction
//! `compact(rev)` runs as bounded steps (1,000 log rows each) through the writer queue,
//! so writers and compaction take turns. Each step deletes the rows superseded by the
//! rows it covers plus deletion markers, then records the revision reached in `meta`.
//! After each compaction run by [`SqliteStorage::start_compactor`] the WAL is
//! checkpointed with `TRUNCATE` (SQLite's automatic checkpoints also run on commit).
//! Reads and watches below the compacted revision fail with `Compacted`; reading *at*
//! it still works, since every key's newest row at or below it is kept.
//!
//! # Lease heartbeats
//! Every node renews its Lease (`/registry/leases/…`) every 10 s. With a 5-minute
//! compaction interval those renewals would dominate the log. The compactor therefore
//! keeps a separate, short **lease horizon**: every `interval / 10` (at most 30 s) it
//! compacts lease keys alone up to the revision it saw on its previous tick, so lease
//! history is kept for one or two lease ticks instead of a whole interval. Superseded
//! lease rows are dropped by the same log-driven step as ordinary compaction, so other
//! keys' history is untouched. Effect on readers: for a prefix that can contain lease
//! keys (`/registry/leases/…`, or a parent such as `/registry/`) the effective
//! compacted revision is the max of both horizons, so a watch or paginated list of
//! leases resuming from an older revision gets `Compacted` (410 Gone, clients
//! re-list) sooner than other resources do. Live lease watchers are unaffected: their
//! events, with previous values, come from memory. `compacted_revision()` reports the
//! store-wide horizon only. (Deleting the superseded lease row at write time was
//! rejected: a list at a slightly older revision, e.g. the second page of a paginated
//! list, would silently miss that lease instead of failing cleanly.)

mod read;
mod schema;
mod watch;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use self::read::ReadPool;
use self::schema::backend;
use self::writer::{CompactScope, EventSender, Op, Shared};
use crate::{KeyValue, ListResult, Result, Storage, StorageError, WatchStream};

pub use self::schema::LEASE_PREFIX;

/// Committed batches buffered for watchers; a watcher further behind than this
/// catches up from the log.
const WATCH_BUFFER_BATCHES: usize = 256;

/// The embedded SQLite backend. Cheap to share behind an `Arc`.
pub struct SqliteStorage {
    path: PathBuf,
    ops: mpsc::UnboundedSender<Op>,
    shared: Arc<Shared>,
    events: EventSender,
    pool: Arc<ReadPool>,
    writer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl SqliteStorage {
    /// Opens (creating if needed) the store at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|e| StorageError::Backend(format!("creating {}: {e}", dir.display())))?;
        }
        let conn = schema::open_writer(path)?;
        let meta = schema::read_meta(&conn).map_err(backend)?;
        let shared = Arc::new(Shared::new(meta));
        let (events, _) = broadcast::channel(WATCH_BUFFER_BATCHES);
        let (ops, rx) = mpsc::unbounded_channel();
        let writer = {
            let shared = Arc::clone(&shared);
            let events = events.clone();
            std::thread::Builder::new()
                .name("sqlite-writer".into())
                .spawn(move || writer::run(conn, shared, events, rx))
                .map_err(|e| StorageError::Backend(format!("spawn sqlite writer: {e}")))?
        };
        tracing::info!(
            path = %path.display(),
            revision = meta.current,
            compacted = meta.compacted,
            "opened sqlite store"
        );
        Ok(SqliteStorage {
            path: path.to_path_buf(),
            ops,
            shared,
            events,
            pool: Arc::new(ReadPool::new(path.to_path_buf())),
            writer: Mutex::new(Some(writer)),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn submit<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T>>) -> Op) -> Result<T> {
        let (reply, answer) = oneshot::channel();
        self.ops
            .send(op(reply))
            .map_err(|_| StorageError::Backend("sqlite writer stopped".into()))?;
        answer
            .await
            .map_err(|_| StorageError::Backend("sqlite writer stopped".into()))?
    }

    async fn compact_scope(&self, revision: i64, scope: CompactScope) -> Result<()> {
        loop {
            let reached = self
                .submit(|reply| Op::Compact {
                    target: revision,
                    scope,
                    reply,
                })
                .await?;
            if reached >= revision {
                return Ok(());
            }
        }
    }

    /// Forgets superseded history of lease keys at or below `revision` (the lease
    /// horizon; see the module documentation).
    pub async fn compact_leases(&self, revision: i64) -> Result<()> {
        self.compact_scope(revision, CompactScope::Leases).await
    }

    /// The revision at or below which lease history may be gone.
    pub fn lease_compacted_revision(&self) -> i64 {
        self.shared.meta().compacted_for(LEASE_PREFIX)
    }

    /// Checkpoints the WAL into the database and truncates it. Returns false when
    /// readers kept it from completing (it is retried on the next call).
    pub async fn checkpoint(&self) -> Result<bool> {
        self.submit(|reply| Op::Checkpoint { reply }).await
    }

    /// Rows in the log: current values plus retained history.
    pub async fn log_rows(&self) -> Result<u64> {
        self.pool.run(|conn| read::log_rows(conn)).await
    }

    /// Runs compaction in the background until `cancel` fires: every `interval` the
    /// store is compacted to `current - keep_revisions` and the WAL checkpointed;
    /// every `interval / 10` (at most 30 s) lease keys are compacted to the revision
    /// seen on the previous lease tick. k3s uses 5 minutes and 1,000 revisions. The
    /// task holds only a weak reference and stops when the store is dropped.
    pub fn start_compactor(
        self: &Arc<Self>,
        interval: Duration,
        keep_revisions: i64,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let store = Arc::downgrade(self);
        // tokio intervals must not be zero.
        let interval = interval.max(Duration::from_millis(1));
        let lease_every = (interval / 10).clamp(Duration::from_millis(1), Duration::from_secs(30));
        tokio::spawn(async move {
            let start = tokio::time::Instant::now();
            let mut full = tokio::time::interval_at(start + interval, interval);
            let mut leases = tokio::time::interval_at(start + lease_every, lease_every);
            full.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            leases.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut lease_mark = store
                .upgrade()
                .map_or(0, |s| s.shared.current.load(Ordering::Acquire));
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = full.tick() => {
                        let Some(store) = store.upgrade() else { break };
                        store.compact_tick(keep_revisions).await;
                    }
                    _ = leases.tick() => {
                        let Some(store) = store.upgrade() else { break };
                        if let Err(e) = store.compact_leases(lease_mark).await {
                            tracing::warn!(error = %e, "lease compaction failed");
                        }
                        lease_mark = store.shared.current.load(Ordering::Acquire);
                    }
                }
            }
            tracing::debug!("sqlite compactor stopped");
        })
    }

    async fn compact_tick(&self, keep_revisions: i64) {
        let meta = self.shared.meta();
        let target = meta.current - keep_revisions.max(0);
        if target <= meta.compacted {
            return;
        }
        let started = std::time::Instant::now();
        if let Err(e) = self.compact(target).await {
            tracing::warn!(error = %e, target, "compaction failed");
            return;
        }
        match self.checkpoint().await {
            Ok(true) => {}
            Ok(false) => tracing::debug!("wal checkpoint incomplete (readers active)"),
            Err(e) => tracing::warn!(error = %e, "wal checkpoint failed"),
        }
        tracing::debug!(target, elapsed = ?started.elapsed(), "compacted sqlite store");
    }
}

impl Drop for SqliteStorage {
    fn drop(&mut self) {
        // Let the writer finish the batch in hand and close the database, so a
        // reopen in the same process starts from a closed file.
        let _ = self.ops.send(Op::Shutdown);
        if let Some(handle) = self.writer.lock().take() {
            if handle.join().is_err() {
                tracing::error!("sqlite writer thread panicked");
            }
        }
    }
}

#[async_trait]
impl Storage for SqliteStorage {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_string();
        self.pool.run(move |conn| read::get(conn, &key)).await
    }

    async fn list(
        &self,
        prefix: &str,
        revision: i64,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult> {
        let prefix = prefix.to_string();
        let start_after = start_after.map(str::to_string);
        self.pool
            .run(move |conn| read::list(conn, &prefix, revision, start_after.as_deref(), limit))
            .await
    }

    async fn count(&self, prefix: &str) -> Result<u64> {
        let prefix = prefix.to_string();
        self.pool.run(move |conn| read::count(conn, &prefix)).await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue> {
        let key = key.to_string();
        self.submit(|reply| Op::Create { key, value, reply }).await
    }

    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<KeyValue> {
        let key = key.to_string();
        self.submit(|reply| Op::Update {
            key,
            value,
            expected: expected_revision,
            reply,
        })
        .await
    }

    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)> {
        let key = key.to_string();
        self.submit(|reply| Op::Delete {
            key,
            expected: expected_revision,
            reply,
        })
        .await
    }

    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream> {
        watch::start(
            Arc::clone(&self.pool),
            Arc::clone(&self.shared),
            &self.events,
            prefix,
            from_revision,
        )
    }

    /// Compacting at or below the compacted revision is a no-op; above the current
    /// revision it fails with `FutureRevision`.
    async fn compact(&self, revision: i64) -> Result<()> {
        self.compact_scope(revision, CompactScope::All).await
    }

    async fn current_revision(&self) -> Result<i64> {
        Ok(self.shared.current.load(Ordering::Acquire))
    }

    async fn compacted_revision(&self) -> Result<i64> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }
}
