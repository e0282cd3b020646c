//! The single writer of the SQLite store: a std thread owning the write connection
//! that drains a queue of operations and applies them with group commit.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{params, Connection, Transaction};
use tokio::sync::{broadcast, mpsc, oneshot};

use super::schema::{self, backend, LogRow, LEASE_PREFIX};
use crate::{KeyValue, Result, StorageError, WatchEvent};

/// Most writes applied (and fsynced) in one transaction.
const MAX_BATCH: usize = 256;
/// Log rows examined per compaction transaction, so compaction and writers take turns.
pub(crate) const COMPACT_STEP_ROWS: i64 = 1000;

/// State the writer publishes after each commit; read lock-free by everyone else.
pub(crate) struct Shared {
    pub current: AtomicI64,
    pub compacted: AtomicI64,
    pub lease_compacted: AtomicI64,
}

/// One message per committed batch, in revision order.
pub(crate) type EventSender = broadcast::Sender<Arc<Vec<WatchEvent>>>;

impl Shared {
    pub fn new(meta: schema::Meta) -> Self {
        Shared {
            current: AtomicI64::new(meta.current),
            compacted: AtomicI64::new(meta.compacted),
            lease_compacted: AtomicI64::new(meta.lease_compacted),
        }
    }

    pub fn meta(&self) -> schema::Meta {
        schema::Meta {
            current: self.current.load(Ordering::Acquire),
            compacted: self.compacted.load(Ordering::Acquire),
            lease_compacted: self.lease_compacted.load(Ordering::Acquire),
        }
    }
}

/// Which history a compaction step removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CompactScope {
    /// Everything (the store's compacted revision).
    All,
    /// Only keys under `/registry/leases/` (the lease horizon).
    Leases,
}

pub(crate) enum Op {
    Create {
        key: String,
        value: Bytes,
        reply: oneshot::Sender<Result<KeyValue>>,
    },
    Update {
        key: String,
        value: Bytes,
        expected: i64,
        reply: oneshot::Sender<Result<KeyValue>>,
    },
    Delete {
        key: String,
        expected: Option<i64>,
        reply: oneshot::Sender<Result<(KeyValue, i64)>>,
    },
    /// One bounded step towards `target`; replies with the revision reached.
    Compact {
        target: i64,
        scope: CompactScope,
        reply: oneshot::Sender<Result<i64>>,
    },
    /// `PRAGMA wal_checkpoint(TRUNCATE)`; replies whether it completed (not busy).
    Checkpoint {
        reply: oneshot::Sender<Result<bool>>,
    },
    Shutdown,
}

impl Op {
    fn is_write(&self) -> bool {
        matches!(
            self,
            Op::Create { .. } | Op::Update { .. } | Op::Delete { .. }
        )
    }

    fn fail(self, err: impl Fn() -> StorageError) {
        // A dropped receiver means the caller gave up; nothing to tell it.
        match self {
            Op::Create { reply, .. } | Op::Update { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Op::Delete { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Op::Compact { reply, .. } => {
                let _ = reply.send(Err(err()));
            }
            Op::Checkpoint { reply } => {
                let _ = reply.send(Err(err()));
            }
            Op::Shutdown => {}
        }
    }
}

/// Runs the writer loop until the queue closes or `Shutdown` arrives.
pub(crate) fn run(
    mut conn: Connection,
    shared: Arc<Shared>,
    events: EventSender,
    mut ops: mpsc::UnboundedReceiver<Op>,
) {
    while let Some(first) = ops.blocking_recv() {
        let mut writes = Vec::new();
        let mut control = Vec::new();
        let mut shutdown = false;
        let mut next = Some(first);
        while let Some(op) = next.take() {
            match op {
                Op::Shutdown => shutdown = true,
                op if op.is_write() => writes.push(op),
                op => control.push(op),
            }
            if writes.len() < MAX_BATCH && !shutdown {
                next = ops.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            apply_writes(&mut conn, &shared, &events, writes);
        }
        for op in control {
            apply_control(&mut conn, &shared, op);
        }
        if shutdown {
            break;
        }
    }
    tracing::debug!("sqlite writer stopped");
}

/// Applies a batch of writes in one transaction: each gets its own revision and its
/// own precondition check; one commit (one fsync) acknowledges them all.
fn apply_writes(conn: &mut Connection, shared: &Shared, events_tx: &EventSender, writes: Vec<Op>) {
    let start = shared.current.load(Ordering::Acquire);
    let outcome = (|| -> rusqlite::Result<(i64, Vec<Result<WatchEvent>>)> {
        let tx = conn.transaction()?;
        let mut rev = start;
        let mut results = Vec::with_capacity(writes.len());
        for op in &writes {
            let result = apply_one(&tx, rev + 1, op)?;
            if result.is_ok() {
                rev += 1;
            }
            results.push(result);
        }
        if rev > start {
            schema::write_meta(&tx, schema::META_CURRENT, rev)?;
        }
        tx.commit()?;
        Ok((rev, results))
    })();
    let (rev, results) = match outcome {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(error = %e, ops = writes.len(), "sqlite write batch failed");
            let msg = format!("sqlite: {e}");
            for op in writes {
                op.fail(|| StorageError::Backend(msg.clone()));
            }
            return;
        }
    };
    shared.current.store(rev, Ordering::Release);
    let events: Vec<WatchEvent> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().cloned())
        .collect();
    if !events.is_empty() {
        // No receivers is fine: nobody is watching.
        let _ = events_tx.send(Arc::new(events));
    }
    for (op, result) in writes.into_iter().zip(results) {
        match op {
            Op::Create { reply, .. } | Op::Update { reply, .. } => {
                let _ = reply.send(result.map(|ev| match ev {
                    WatchEvent::Put { kv, .. } => kv,
                    WatchEvent::Delete { prev, .. } => prev,
                }));
            }
            Op::Delete { reply, .. } => {
                let _ = reply.send(result.map(|ev| match ev {
                    WatchEvent::Delete { prev, revision } => (prev, revision),
                    WatchEvent::Put { kv, .. } => {
                        let rev = kv.mod_revision;
                        (kv, rev)
                    }
                }));
            }
            _ => {}
        }
    }
}

/// Checks one write's precondition and appends its row at `rev`. The outer error
/// aborts the batch (SQL failure); the inner one is this write's own answer.
fn apply_one(tx: &Transaction<'_>, rev: i64, op: &Op) -> rusqlite::Result<Result<WatchEvent>> {
    let (key, latest) = match op {
        Op::Create { key, .. } | Op::Update { key, .. } | Op::Delete { key, .. } => {
            (key, schema::latest_row(tx, key)?)
        }
        _ => return Ok(Err(StorageError::Backend("not a write".into()))),
    };
    let live = latest.as_ref().filter(|r| !r.deleted);
    let event = match (op, live) {
        (Op::Create { .. }, Some(_)) => return Ok(Err(StorageError::AlreadyExists(key.clone()))),
        (Op::Create { value, .. }, None) => {
            let prev_id = latest.as_ref().map_or(0, |r| r.id);
            let row = insert(tx, rev, key, true, false, rev, prev_id, value)?;
            WatchEvent::Put {
                kv: row.kv(),
                prev: None,
            }
        }
        (Op::Update { .. } | Op::Delete { .. }, None) => {
            return Ok(Err(StorageError::NotFound(key.clone())))
        }
        (
            Op::Update {
                value, expected, ..
            },
            Some(cur),
        ) => {
            if cur.id != *expected {
                return Ok(Err(conflict(key, *expected, cur)));
            }
            let row = insert(
                tx,
                rev,
                key,
                false,
                false,
                cur.create_revision,
                cur.id,
                value,
            )?;
            WatchEvent::Put {
                kv: row.kv(),
                prev: Some(cur.kv()),
            }
        }
        (Op::Delete { expected, .. }, Some(cur)) => {
            if let Some(expected) = expected.filter(|e| *e != cur.id) {
                return Ok(Err(conflict(key, expected, cur)));
            }
            insert(
                tx,
                rev,
                key,
                false,
                true,
                cur.create_revision,
                cur.id,
                &cur.value,
            )?;
            WatchEvent::Delete {
                prev: cur.kv(),
                revision: rev,
            }
        }
        _ => return Ok(Err(StorageError::Backend("not a write".into()))),
    };
    Ok(Ok(event))
}

fn conflict(key: &str, expected: i64, current: &LogRow) -> StorageError {
    StorageError::Conflict {
        key: key.to_string(),
        expected,
        current: Some(current.kv()),
    }
}

#[allow(clippy::too_many_arguments)]
fn insert(
    tx: &Transaction<'_>,
    rev: i64,
    key: &str,
    created: bool,
    deleted: bool,
    create_revision: i64,
    prev_revision: i64,
    value: &Bytes,
) -> rusqlite::Result<LogRow> {
    tx.prepare_cached(
        "INSERT INTO log (id, name, created, deleted, create_revision, prev_revision, value) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?
    .execute(params![
        rev,
        key,
        created,
        deleted,
        create_revision,
        prev_revision,
        value.as_ref()
    ])?;
    Ok(LogRow {
        id: rev,
        name: key.to_string(),
        created,
        deleted,
        create_revision,
        prev_revision,
        value: value.clone(),
    })
}

fn apply_control(conn: &mut Connection, shared: &Shared, op: Op) {
    match op {
        Op::Compact {
            target,
            scope,
            reply,
        } => {
            let _ = reply.send(compact_step(conn, shared, target, scope));
        }
        Op::Checkpoint { reply } => {
            let result = conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
                    r.get::<_, i64>(0)
                })
                .map(|busy| busy == 0)
                .map_err(backend);
            let _ = reply.send(result);
        }
        other => other.fail(|| StorageError::Backend("not a control operation".into())),
    }
}

/// Compacts at most [`COMPACT_STEP_ROWS`] log rows past the current compacted
/// revision towards `target`, in one transaction, and records the revision reached.
///
/// Every row in `(from, reached]` supersedes its `prev_revision` row, which is
/// deleted; deletion markers are deleted themselves. That is exactly the history at
/// or below `reached`: a row superseded at or below an earlier compacted revision was
/// removed by the step that covered its successor.
fn compact_step(
    conn: &mut Connection,
    shared: &Shared,
    target: i64,
    scope: CompactScope,
) -> Result<i64> {
    let meta = shared.meta();
    let (from, meta_name, counter) = match scope {
        CompactScope::All => (meta.compacted, schema::META_COMPACTED, &shared.compacted),
        CompactScope::Leases => (
            meta.compacted.max(meta.lease_compacted),
            schema::META_LEASE_COMPACTED,
            &shared.lease_compacted,
        ),
    };
    if target > meta.current {
        return Err(StorageError::FutureRevision {
            requested: target,
            current: meta.current,
        });
    }
    if target <= from {
        return Ok(from);
    }
    let mut run = || -> rusqlite::Result<i64> {
        let tx = conn.transaction()?;
        let rows: Vec<(i64, bool, i64)> = {
            let sql = match scope {
                CompactScope::All => "SELECT id, deleted, prev_revision FROM log \
                     WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3"
                    .to_string(),
                CompactScope::Leases => format!(
                    "SELECT id, deleted, prev_revision FROM log \
                     WHERE id > ?1 AND id <= ?2 AND name >= '{LEASE_PREFIX}' AND name < '{}' \
                     ORDER BY id LIMIT ?3",
                    schema::prefix_end(LEASE_PREFIX).unwrap_or_default()
                ),
            };
            let mut stmt = tx.prepare_cached(&sql)?;
            let rows = stmt.query_map(params![from, target, COMPACT_STEP_ROWS], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        {
            let mut delete = tx.prepare_cached("DELETE FROM log WHERE id = ?1")?;
            for (id, deleted, prev) in &rows {
                if *prev > 0 {
                    delete.execute([prev])?;
                }
                if *deleted {
                    delete.execute([id])?;
                }
            }
        }
        let reached = if (rows.len() as i64) < COMPACT_STEP_ROWS {
            target
        } else {
            rows.last().map_or(target, |r| r.0)
        };
        schema::write_meta(&tx, meta_name, reached)?;
        tx.commit()?;
        Ok(reached)
    };
    let reached = run().map_err(backend)?;
    counter.store(reached, Ordering::Release);
    Ok(reached)
}
