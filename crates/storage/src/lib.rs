//! The cluster store: one contract ([`Storage`]) and the backends that implement it.
//!
//! The contract mirrors etcd v3's data model, which is what Kubernetes' own
//! `storage.Interface` is built on:
//!
//! - The store is a flat, ordered key space (`/registry/<resource>/<namespace>/<name>`).
//! - Every successful write (create, update, delete) gets the next value of one
//!   cluster-wide, strictly increasing **revision** (an `i64`, starting at 1).
//!   A key's `mod_revision` is the revision of its last write; `create_revision`
//!   the revision that created it. The API server exposes `mod_revision` as the
//!   object's `resourceVersion` and the store revision as a list's `resourceVersion`.
//! - Writes are atomic and durable before they are acknowledged.
//! - `update` and `delete` take the `mod_revision` the caller last saw and fail
//!   with [`StorageError::Conflict`] if the key has moved on (optimistic concurrency).
//! - `watch(prefix, from)` delivers every change to keys under `prefix` with a
//!   revision **greater than** `from`, in revision order, with no gaps, and then
//!   follows new changes. If `from` is older than the compacted revision the watch
//!   fails with [`StorageError::Compacted`] (surfaced to clients as 410 Gone).
//! - `compact(rev)` forgets history (superseded values and deletion records) at or
//!   below `rev`; current values are never lost.
//!
//! Backends: [`sqlite::SqliteStorage`] (embedded, the default) and
//! [`etcd::EtcdStorage`]. Both run the same conformance suite in [`testing`].

use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;

pub mod etcd;
pub mod sqlite;
pub mod testing;

/// A key with its current value and revisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Bytes,
    pub create_revision: i64,
    pub mod_revision: i64,
}

/// The result of [`Storage::list`].
#[derive(Clone, Debug, Default)]
pub struct ListResult {
    /// Matching keys in ascending key order.
    pub items: Vec<KeyValue>,
    /// The store revision the list was read at.
    pub revision: i64,
    /// True when `limit` cut the result short and more keys follow.
    pub more: bool,
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    /// `kv` was created (`prev` is `None`) or updated (`prev` is the value before).
    /// `kv.mod_revision` is the revision of this change.
    Put {
        kv: KeyValue,
        prev: Option<KeyValue>,
    },
    /// `prev` was deleted at `revision`.
    Delete { prev: KeyValue, revision: i64 },
}

impl WatchEvent {
    pub fn revision(&self) -> i64 {
        match self {
            WatchEvent::Put { kv, .. } => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }

    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put { kv, .. } => &kv.key,
            WatchEvent::Delete { prev, .. } => &prev.key,
        }
    }
}

/// A stream of watch events. It ends (or yields an error) only when the backend
/// fails or the watcher falls too far behind; callers then re-list.
pub type WatchStream = Pin<Box<dyn Stream<Item = Result<WatchEvent, StorageError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("key {0} already exists")]
    AlreadyExists(String),
    #[error("key {0} not found")]
    NotFound(String),
    /// The precondition revision did not match; `current` is the key's current
    /// value (if it still exists) so callers can retry without another read.
    #[error("key {key} was modified (expected revision {expected})")]
    Conflict {
        key: String,
        expected: i64,
        current: Option<KeyValue>,
    },
    /// The requested revision has been compacted away.
    #[error("required revision {requested} has been compacted (compacted revision {compacted})")]
    Compacted { requested: i64, compacted: i64 },
    /// The requested revision is in the future.
    #[error("required revision {requested} is a future revision (current {current})")]
    FutureRevision { requested: i64, current: i64 },
    #[error("storage backend: {0}")]
    Backend(String),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

/// The cluster store contract. See the module documentation for the semantics.
#[async_trait]
pub trait Storage: Send + Sync + 'static {
    /// The current value of `key`, if any.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Keys starting with `prefix`, in key order, as of `revision` (0 = latest).
    /// `start_after` skips keys `<=` it (continue tokens); `limit` 0 = unlimited.
    /// Reading at an old revision fails with `Compacted` if history is gone.
    async fn list(
        &self,
        prefix: &str,
        revision: i64,
        start_after: Option<&str>,
        limit: usize,
    ) -> Result<ListResult>;

    /// Number of keys under `prefix` now.
    async fn count(&self, prefix: &str) -> Result<u64>;

    /// Creates `key`; fails with `AlreadyExists` if it exists. Returns the new KeyValue.
    async fn create(&self, key: &str, value: Bytes) -> Result<KeyValue>;

    /// Replaces `key` if its `mod_revision` equals `expected_revision`.
    /// `NotFound` if absent, `Conflict` if it moved on.
    async fn update(&self, key: &str, value: Bytes, expected_revision: i64) -> Result<KeyValue>;

    /// Deletes `key`, if `expected_revision` is `None` or matches its `mod_revision`.
    /// Returns the deleted value and the revision of the deletion.
    async fn delete(&self, key: &str, expected_revision: Option<i64>) -> Result<(KeyValue, i64)>;

    /// Changes under `prefix` with revision `> from_revision` (0 = from now on).
    async fn watch(&self, prefix: &str, from_revision: i64) -> Result<WatchStream>;

    /// Forgets history at or below `revision`.
    async fn compact(&self, revision: i64) -> Result<()>;

    /// The latest store revision.
    async fn current_revision(&self) -> Result<i64>;

    /// The revision at or below which history is gone (0 = none compacted).
    async fn compacted_revision(&self) -> Result<i64>;
}
