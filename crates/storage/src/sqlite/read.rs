//! The read side of the SQLite store: a small pool of read connections and the
//! queries that reconstruct keys (now or at a past revision) from the log.

use std::path::PathBuf;
use std::sync::Arc;

use parking_lot::Mutex;
use rusqlite::Connection;

use super::schema::{self, backend, KeyRange, LogRow, ROW_COLUMNS};
use crate::{KeyValue, ListResult, Result, StorageError, WatchEvent};

/// Idle read connections kept for reuse; more are opened on demand under load.
const MAX_IDLE_READERS: usize = 8;

/// Read connections. Reads run on the blocking pool and never wait for the writer:
/// in WAL mode a reader sees the last committed snapshot.
pub(crate) struct ReadPool {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
}

impl ReadPool {
    pub fn new(path: PathBuf) -> Self {
        ReadPool {
            path,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `f` on a read connection, on the blocking thread pool.
    pub async fn run<T, F>(self: &Arc<Self>, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let pool = Arc::clone(self);
        tokio::task::spawn_blocking(move || pool.run_blocking(f))
            .await
            .map_err(|e| StorageError::Backend(format!("sqlite read task failed: {e}")))?
    }

    fn run_blocking<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let conn = self.idle.lock().pop();
        let mut conn = match conn {
            Some(conn) => conn,
            None => schema::open_reader(&self.path).map_err(backend)?,
        };
        let result = f(&mut conn);
        // A connection left inside a transaction (after an error) is not reused.
        if conn.is_autocommit() {
            let mut idle = self.idle.lock();
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
        }
        result
    }
}

pub(crate) fn get(conn: &Connection, key: &str) -> Result<Option<KeyValue>> {
    let row = schema::latest_row(conn, key).map_err(backend)?;
    Ok(row.filter(|r| !r.deleted).map(|r| r.kv()))
}

/// Keys under `prefix` as of `revision` (0 = latest), read from one snapshot.
pub(crate) fn list(
    conn: &mut Connection,
    prefix: &str,
    revision: i64,
    start_after: Option<&str>,
    limit: usize,
) -> Result<ListResult> {
    let tx = conn.transaction().map_err(backend)?;
    let meta = schema::read_meta(&tx).map_err(backend)?;
    let at = if revision <= 0 {
        meta.current
    } else {
        revision
    };
    if at > meta.current {
        return Err(StorageError::FutureRevision {
            requested: revision,
            current: meta.current,
        });
    }
    let compacted = meta.compacted_for(prefix);
    if at < compacted {
        return Err(StorageError::Compacted {
            requested: revision,
            compacted,
        });
    }
    let range = KeyRange::prefix_after(prefix, start_after);
    let n = range.params().len();
    // For each key the newest row at or below `at`; keys whose newest row is a
    // deletion marker did not exist at `at`. Walking the (name, id) index in order
    // with a correlated MAX lets LIMIT stop early instead of grouping and sorting the
    // whole prefix first (10x faster for 500-item pages of a 20k-key prefix).
    let sql = format!(
        "SELECT l.id, l.name, l.create_revision, l.value FROM log l \
         WHERE {range} AND l.id <= ?{at} AND l.deleted = 0 \
         AND l.id = (SELECT MAX(i.id) FROM log i WHERE i.name = l.name AND i.id <= ?{at}) \
         ORDER BY l.name LIMIT ?{limit}",
        range = range.sql("l.name", 1),
        at = n + 1,
        limit = n + 2
    );
    let sql_limit: i64 = if limit == 0 {
        -1
    } else {
        i64::try_from(limit).unwrap_or(i64::MAX - 1) + 1
    };
    let mut params = range.params();
    params.push(at.into());
    params.push(sql_limit.into());
    let mut items = {
        let mut stmt = tx.prepare_cached(&sql).map_err(backend)?;
        let rows = stmt
            .query_map(rusqlite::params_from_iter(params), |row| {
                Ok(KeyValue {
                    mod_revision: row.get(0)?,
                    key: row.get(1)?,
                    create_revision: row.get(2)?,
                    value: row.get::<_, Vec<u8>>(3)?.into(),
                })
            })
            .map_err(backend)?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .map_err(backend)?
    };
    let more = limit > 0 && items.len() > limit;
    items.truncate(if limit > 0 { limit } else { items.len() });
    Ok(ListResult {
        items,
        revision: at,
        more,
    })
}

pub(crate) fn count(conn: &Connection, prefix: &str) -> Result<u64> {
    let range = KeyRange::prefix(prefix);
    let sql = format!(
        "SELECT COUNT(*) FROM (SELECT MAX(id) AS id FROM log WHERE {} GROUP BY name) m \
         JOIN log l ON l.id = m.id WHERE l.deleted = 0",
        range.sql("name", 1)
    );
    let n: i64 = conn
        .prepare_cached(&sql)
        .and_then(|mut s| s.query_row(rusqlite::params_from_iter(range.params()), |r| r.get(0)))
        .map_err(backend)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Number of rows in the log (current values plus retained history).
pub(crate) fn log_rows(conn: &Connection) -> Result<u64> {
    let n: i64 = conn
        .query_row("SELECT COUNT(*) FROM log", [], |r| r.get(0))
        .map_err(backend)?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// One page of history under `prefix` with revisions in `(after, upto]`, as watch
/// events with their previous values. Returns the events and the revision up to which
/// the range has been covered. Fails with `Compacted` if part of the range is gone.
pub(crate) fn history_page(
    conn: &mut Connection,
    prefix: &str,
    after: i64,
    upto: i64,
    page: usize,
) -> Result<(Vec<WatchEvent>, i64)> {
    let tx = conn.transaction().map_err(backend)?;
    let meta = schema::read_meta(&tx).map_err(backend)?;
    let compacted = meta.compacted_for(prefix);
    if after < compacted {
        return Err(StorageError::Compacted {
            requested: after,
            compacted,
        });
    }
    let range = KeyRange::prefix(prefix);
    let n = range.params().len();
    let columns = ROW_COLUMNS
        .split(", ")
        .map(|c| format!("l.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {columns}, p.value FROM log l LEFT JOIN log p ON p.id = l.prev_revision \
         WHERE l.id > ?{} AND l.id <= ?{} AND {} ORDER BY l.id LIMIT ?{}",
        n + 1,
        n + 2,
        range.sql("l.name", 1),
        n + 3
    );
    let mut params = range.params();
    params.push(after.into());
    params.push(upto.into());
    params.push(i64::try_from(page).unwrap_or(i64::MAX).into());
    let mut stmt = tx.prepare_cached(&sql).map_err(backend)?;
    let rows = stmt
        .query_map(rusqlite::params_from_iter(params), |row| {
            let prev_value: Option<Vec<u8>> = row.get(7)?;
            Ok((LogRow::from_row(row)?, prev_value))
        })
        .map_err(backend)?;
    let mut events = Vec::new();
    for row in rows {
        let (row, prev_value) = row.map_err(backend)?;
        events.push(event_from_row(&row, prev_value));
    }
    let covered = if events.len() < page {
        upto
    } else {
        events.last().map_or(upto, WatchEvent::revision)
    };
    Ok((events, covered))
}

fn event_from_row(row: &LogRow, prev_value: Option<Vec<u8>>) -> WatchEvent {
    if row.deleted {
        return WatchEvent::Delete {
            prev: row.deleted_kv(),
            revision: row.id,
        };
    }
    let prev = match prev_value {
        Some(value) if !row.created => Some(KeyValue {
            key: row.name.clone(),
            value: value.into(),
            create_revision: row.create_revision,
            mod_revision: row.prev_revision,
        }),
        _ => None,
    };
    WatchEvent::Put { kv: row.kv(), prev }
}
