//! On-disk layout of the SQLite store: the revision log, the meta table, connection setup
//! and the row type shared by the writer and the readers.

use std::path::Path;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags, OptionalExtension};

use crate::{KeyValue, StorageError};

/// Keys whose superseded history is compacted on a short horizon of its own (see the
/// module documentation of `sqlite`).
pub const LEASE_PREFIX: &str = "/registry/leases/";

/// The log: one row per write; `id` is the revision. A key's current value is its
/// highest-id row unless that row is a deletion marker. Deletion markers carry the
/// deleted value so a replayed Delete event is self-contained.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    created INTEGER NOT NULL,
    deleted INTEGER NOT NULL,
    create_revision INTEGER NOT NULL,
    prev_revision INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS log_name_id ON log(name, id);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
INSERT OR IGNORE INTO meta(name, value) VALUES
    ('current_revision', 0),
    ('compacted_revision', 0),
    ('lease_compacted_revision', 0);
";

pub(crate) const META_CURRENT: &str = "current_revision";
pub(crate) const META_COMPACTED: &str = "compacted_revision";
pub(crate) const META_LEASE_COMPACTED: &str = "lease_compacted_revision";

/// Columns selected for a [`LogRow`], in [`LogRow::from_row`] order.
pub(crate) const ROW_COLUMNS: &str =
    "id, name, created, deleted, create_revision, prev_revision, value";

pub(crate) fn backend(e: rusqlite::Error) -> StorageError {
    StorageError::Backend(format!("sqlite: {e}"))
}

/// Opens the single write connection: WAL, `synchronous=FULL` (a commit is fsynced
/// before it returns, so an acknowledged write survives a crash), schema created.
pub(crate) fn open_writer(path: &Path) -> crate::Result<Connection> {
    let (conn, mode) = open_writer_inner(path).map_err(backend)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(StorageError::Backend(format!(
            "sqlite: could not switch {} to WAL mode (got {mode})",
            path.display()
        )));
    }
    Ok(conn)
}

fn open_writer_inner(path: &Path) -> rusqlite::Result<(Connection, String)> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    // After a checkpoint the WAL file is truncated back to this size instead of
    // staying as large as its largest burst.
    conn.pragma_update(None, "journal_size_limit", 64 * 1024 * 1024)?;
    conn.execute_batch(SCHEMA)?;
    Ok((conn, mode))
}

/// Opens a read connection. WAL lets it read a consistent snapshot while the writer
/// commits; `query_only` guards against accidental writes.
pub(crate) fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.pragma_update(None, "busy_timeout", 5000)?;
    conn.pragma_update(None, "query_only", true)?;
    Ok(conn)
}

/// The store-wide counters kept in the meta table.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Meta {
    pub current: i64,
    pub compacted: i64,
    pub lease_compacted: i64,
}

impl Meta {
    /// The revision at or below which history under `prefix` may be gone.
    pub fn compacted_for(&self, prefix: &str) -> i64 {
        if touches_leases(prefix) {
            self.compacted.max(self.lease_compacted)
        } else {
            self.compacted
        }
    }
}

pub(crate) fn read_meta(conn: &Connection) -> rusqlite::Result<Meta> {
    let mut stmt = conn.prepare_cached("SELECT name, value FROM meta")?;
    let mut rows = stmt.query([])?;
    let mut meta = Meta::default();
    while let Some(row) = rows.next()? {
        let name: String = row.get(0)?;
        let value: i64 = row.get(1)?;
        match name.as_str() {
            META_CURRENT => meta.current = value,
            META_COMPACTED => meta.compacted = value,
            META_LEASE_COMPACTED => meta.lease_compacted = value,
            _ => {}
        }
    }
    // Belt and braces: a revision must never be handed out twice, even if the meta
    // row were somehow behind the log.
    let max_id: Option<i64> = conn
        .query_row("SELECT MAX(id) FROM log", [], |r| r.get(0))
        .optional()?
        .flatten();
    meta.current = meta.current.max(max_id.unwrap_or(0));
    Ok(meta)
}

pub(crate) fn write_meta(conn: &Connection, name: &str, value: i64) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE meta SET value = ?2 WHERE name = ?1")?
        .execute(rusqlite::params![name, value])?;
    Ok(())
}

/// One row of the log.
#[derive(Clone, Debug)]
pub(crate) struct LogRow {
    pub id: i64,
    pub name: String,
    pub created: bool,
    pub deleted: bool,
    pub create_revision: i64,
    pub prev_revision: i64,
    pub value: Bytes,
}

impl LogRow {
    pub fn from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
        Ok(LogRow {
            id: row.get(0)?,
            name: row.get(1)?,
            created: row.get(2)?,
            deleted: row.get(3)?,
            create_revision: row.get(4)?,
            prev_revision: row.get(5)?,
            value: Bytes::from(row.get::<_, Vec<u8>>(6)?),
        })
    }

    /// The key as this row wrote it (for a live row: its current value).
    pub fn kv(&self) -> KeyValue {
        KeyValue {
            key: self.name.clone(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.id,
        }
    }

    /// For a deletion marker: the value that was deleted.
    pub fn deleted_kv(&self) -> KeyValue {
        KeyValue {
            key: self.name.clone(),
            value: self.value.clone(),
            create_revision: self.create_revision,
            mod_revision: self.prev_revision,
        }
    }
}

/// The newest row of `key` (which may be a deletion marker).
pub(crate) fn latest_row(conn: &Connection, key: &str) -> rusqlite::Result<Option<LogRow>> {
    conn.prepare_cached(&format!(
        "SELECT {ROW_COLUMNS} FROM log WHERE name = ?1 ORDER BY id DESC LIMIT 1"
    ))?
    .query_row([key], LogRow::from_row)
    .optional()
}

/// The smallest string greater than every string starting with `prefix`, or `None`
/// when no such bound exists (empty prefix, or only `char::MAX`s).
pub(crate) fn prefix_end(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        // Skip the surrogate gap; char::from_u32 rejects it.
        let mut next = last as u32 + 1;
        if (0xD800..=0xDFFF).contains(&next) {
            next = 0xE000;
        }
        if let Some(c) = char::from_u32(next) {
            chars.push(c);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

/// Whether a range under `prefix` can contain lease keys.
pub(crate) fn touches_leases(prefix: &str) -> bool {
    prefix.starts_with(LEASE_PREFIX) || LEASE_PREFIX.starts_with(prefix)
}

/// A half-open key range `[lower, upper)` (or `(lower, upper)` when `lower_exclusive`)
/// rendered as a SQL condition on `column` with positional parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct KeyRange {
    pub lower: String,
    pub lower_exclusive: bool,
    pub upper: Option<String>,
}

impl KeyRange {
    pub fn prefix(prefix: &str) -> Self {
        KeyRange {
            lower: prefix.to_string(),
            lower_exclusive: false,
            upper: prefix_end(prefix),
        }
    }

    /// Keys under `prefix` strictly after `start_after` (continue tokens).
    pub fn prefix_after(prefix: &str, start_after: Option<&str>) -> Self {
        let mut range = KeyRange::prefix(prefix);
        if let Some(after) = start_after {
            if after >= prefix {
                range.lower = after.to_string();
                range.lower_exclusive = true;
            }
        }
        range
    }

    /// `column >= ?a [AND column < ?b]`, numbering parameters from `first`.
    pub fn sql(&self, column: &str, first: usize) -> String {
        let op = if self.lower_exclusive { ">" } else { ">=" };
        match self.upper {
            Some(_) => format!("{column} {op} ?{first} AND {column} < ?{}", first + 1),
            None => format!("{column} {op} ?{first}"),
        }
    }

    /// The parameter values for [`KeyRange::sql`], in order.
    pub fn params(&self) -> Vec<rusqlite::types::Value> {
        let mut params = vec![rusqlite::types::Value::Text(self.lower.clone())];
        if let Some(upper) = &self.upper {
            params.push(rusqlite::types::Value::Text(upper.clone()));
        }
        params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_increments_last_char() {
        let cases = [
            ("/registry/pods/", Some("/registry/pods0")),
            ("a", Some("b")),
            ("", None),
            ("a\u{10FFFF}", Some("b")),
            ("\u{D7FF}", Some("\u{E000}")),
        ];
        for (prefix, want) in cases {
            assert_eq!(prefix_end(prefix).as_deref(), want, "prefix {prefix:?}");
        }
    }

    #[test]
    fn lease_ranges() {
        let cases = [
            ("/registry/leases/", true),
            ("/registry/leases/kube-node-lease/", true),
            ("/registry/", true),
            ("", true),
            ("/registry/pods/", false),
            ("/registry/leasesx/", false),
        ];
        for (prefix, want) in cases {
            assert_eq!(touches_leases(prefix), want, "prefix {prefix:?}");
        }
    }

    #[test]
    fn range_after_start_after() {
        let r = KeyRange::prefix_after("/a/", Some("/a/x"));
        assert_eq!(r.lower, "/a/x");
        assert!(r.lower_exclusive);
        assert_eq!(r.sql("name", 1), "name > ?1 AND name < ?2");
        // A start_after before the prefix does not widen the range.
        let r = KeyRange::prefix_after("/b/", Some("/a/z"));
        assert_eq!(r, KeyRange::prefix("/b/"));
        assert_eq!(KeyRange::prefix("").sql("name", 3), "name >= ?3");
    }

    #[test]
    fn meta_survives_reopen_and_tracks_max_id() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("db");
        {
            let conn = open_writer(&path).expect("open");
            write_meta(&conn, META_CURRENT, 7).expect("meta");
            write_meta(&conn, META_COMPACTED, 3).expect("meta");
        }
        let conn = open_writer(&path).expect("reopen");
        let meta = read_meta(&conn).expect("meta");
        assert_eq!(
            (meta.current, meta.compacted, meta.lease_compacted),
            (7, 3, 0)
        );
        conn.execute("INSERT INTO log VALUES (9, 'k', 1, 0, 9, 0, x'00')", [])
            .expect("insert");
        assert_eq!(read_meta(&conn).expect("meta").current, 9);
    }
}
