//! The SQLite backend: one file, one table, a write-ahead log.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::time::Duration;
use std::path::Path;

use rusqlite::{Connection, OpenFlags, TransactionBehavior, ffi, params};

use super::{KeyValue, Store, StoreError, Table, Transaction};

/// The schema version this code writes and reads, kept in SQLite's `user_version`.
const SCHEMA_VERSION: i32 = 1;

/// Marks a file as a ratchetbox store, in SQLite's `application_id` ("RBOX").
const APPLICATION_ID: i32 = 0x5242_4f58;

/// The one table. `STRICT` makes SQLite refuse a value of another type (so a key or value is
/// always a BLOB, compared bytewise); `WITHOUT ROWID` keeps rows in the primary key's
/// b-tree, so a prefix scan is one range of it. Compared with the stored schema on open.
const CREATE_ITEMS: &str = "CREATE TABLE items (\
    tbl INTEGER NOT NULL, \
    key BLOB NOT NULL, \
    value BLOB NOT NULL, \
    PRIMARY KEY (tbl, key)\
    ) WITHOUT ROWID, STRICT";

const GET: &str = "SELECT value FROM items WHERE tbl = ?1 AND key = ?2";
const PUT: &str = "INSERT INTO items (tbl, key, value) VALUES (?1, ?2, ?3) \
    ON CONFLICT (tbl, key) DO UPDATE SET value = excluded.value";
const DELETE: &str = "DELETE FROM items WHERE tbl = ?1 AND key = ?2";
/// Keys from the prefix (included) to its successor (excluded): a range of the primary key.
const SCAN_RANGE: &str =
    "SELECT key, value FROM items WHERE tbl = ?1 AND key >= ?2 AND key < ?3 ORDER BY key";
/// For a prefix without a successor (empty, or all 0xff bytes): every key from it on.
const SCAN_FROM: &str = "SELECT key, value FROM items WHERE tbl = ?1 AND key >= ?2 ORDER BY key";
const DELETE_RANGE: &str = "DELETE FROM items WHERE tbl = ?1 AND key >= ?2 AND key < ?3";
const DELETE_FROM: &str = "DELETE FROM items WHERE tbl = ?1 AND key >= ?2";

/// How a [`SqliteStore`] opens its file.
///
/// ```
/// use core::time::Duration;
/// use ratchetbox::SqliteOptions;
///
/// let options = SqliteOptions::new().busy_timeout(Duration::from_secs(2));
/// assert_eq!(options.get_busy_timeout(), Duration::from_secs(2));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub struct SqliteOptions {
    busy_timeout: Duration,
}

impl SqliteOptions {
    /// How long a transaction waits by default for another handle's transaction to end:
    /// 10 seconds.
    pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

    /// The longest busy timeout SQLite takes (`i32::MAX` milliseconds, about 24 days); a
    /// longer one is cut to this.
    pub const MAX_BUSY_TIMEOUT: Duration = Duration::from_millis(i32::MAX as u64);

    /// The defaults: a busy timeout of [`DEFAULT_BUSY_TIMEOUT`](Self::DEFAULT_BUSY_TIMEOUT).
    pub fn new() -> Self {
        Self {
            busy_timeout: Self::DEFAULT_BUSY_TIMEOUT,
        }
    }

    /// How long [`Store::transaction`] waits for another handle's transaction to end
    /// before it returns [`StoreError::Busy`] (at most
    /// [`MAX_BUSY_TIMEOUT`](Self::MAX_BUSY_TIMEOUT); zero does not wait). Whole
    /// milliseconds: a finer part is dropped.
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        let millis = timeout.as_millis().min(Self::MAX_BUSY_TIMEOUT.as_millis());
        self.busy_timeout = Duration::from_millis(millis as u64);
        self
    }

    /// The busy timeout these options set.
    pub fn get_busy_timeout(&self) -> Duration {
        self.busy_timeout
    }
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self::new()
    }
}

/// A [`Store`] in one SQLite file (feature `sqlite`; SQLite is compiled into the crate).
///
/// Each `SqliteStore` is one connection. Several, in one process or in several, can share a
/// file: every transaction is `BEGIN IMMEDIATE`, so they run one after the other; one
/// waits for another for at most the busy timeout ([`SqliteOptions::busy_timeout`], 10
/// seconds by default), then returns [`StoreError::Busy`]. SQLite's lock is not a queue:
/// a handle that starts transactions back to back can keep another waiting for the whole
/// timeout.
///
/// - **Durability:** the file uses a write-ahead log (`journal_mode=WAL`) with
///   `synchronous=FULL` (and `fullfsync` on Apple systems): a commit that returned `Ok`
///   survives a crash of the process and a power loss.
/// - **Schema:** one table `items(tbl, key, value)` keyed by `(tbl, key)`, where `tbl` is
///   [`Table::id`]; the file is marked with SQLite's `application_id` and its schema
///   version with `user_version`. A file without the mark, of a newer or unknown version,
///   or that is not an SQLite database, is refused with [`StoreError::Corrupt`] (and left
///   as it is).
/// - **Deleted data:** `secure_delete` is on, so removed values are overwritten in the
///   database file; their previous copies can stay in the `-wal` file beside it until a
///   checkpoint (SQLite runs one every 1,000 pages written, and when the last connection
///   closes) lets the log be overwritten.
///
/// ```
/// use ratchetbox::{SqliteStore, Store, Table};
///
/// let dir = std::env::temp_dir().join(format!("ratchetbox-doc-{}", std::process::id()));
/// std::fs::create_dir_all(&dir).map_err(|e| ratchetbox::StoreError::Io(e.to_string()))?;
/// let path = dir.join("device.sqlite");
///
/// let mut store = SqliteStore::open(&path)?;
/// let mut tx = store.transaction()?;
/// tx.put(Table::Account, b"", b"sealed account")?;
/// tx.commit()?;
/// drop(store);
///
/// // After a restart.
/// let mut store = SqliteStore::open(&path)?;
/// let mut tx = store.transaction()?;
/// assert_eq!(tx.get(Table::Account, b"")?, Some(b"sealed account".to_vec()));
/// # drop(tx);
/// # drop(store);
/// # let _ = std::fs::remove_dir_all(&dir);
/// # Ok::<(), ratchetbox::StoreError>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
pub struct SqliteStore {
    conn: Connection,
    /// The busy timeout in milliseconds, reported in [`StoreError::Busy`].
    waited_ms: u64,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("busy_timeout_ms", &self.waited_ms)
            .finish_non_exhaustive()
    }
}

impl SqliteStore {
    /// Opens the store in the file at `path`, creating it if it does not exist, with the
    /// default [`SqliteOptions`].
    ///
    /// # Errors
    /// [`StoreError::Io`] if the file cannot be opened or created (a missing directory, no
    /// permission); [`StoreError::Corrupt`] if it is not a ratchetbox store of this
    /// version; [`StoreError::Busy`] if another handle kept it locked for the whole busy
    /// timeout.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, SqliteOptions::new())
    }

    /// Opens the store in the file at `path` with `options`; see [`open`](Self::open).
    ///
    /// # Errors
    /// As [`open`](Self::open).
    pub fn open_with(path: impl AsRef<Path>, options: SqliteOptions) -> Result<Self, StoreError> {
        let waited_ms = options.busy_timeout.as_millis() as u64;
        // Not SQLITE_OPEN_URI: a path is a path, never a `file:` URI with options.
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags)
            .map_err(|e| store_error("opening the database", e, waited_ms))?;
        Self::set_up(conn, options, true)
    }

    /// A store in memory, private to this handle and gone when it drops (for tests; share
    /// data between handles with a [`MemoryStore`](super::MemoryStore) instead).
    ///
    /// # Errors
    /// [`StoreError::Io`] if SQLite cannot allocate it.
    pub fn open_in_memory() -> Result<Self, StoreError> {
        let options = SqliteOptions::new();
        let conn = Connection::open_in_memory().map_err(|e| {
            store_error(
                "opening an in-memory database",
                e,
                options.busy_timeout.as_millis() as u64,
            )
        })?;
        Self::set_up(conn, options, false)
    }

    /// Configures the connection, then checks (or creates) the schema, then turns on the
    /// write-ahead log: a file that is not ours is refused before anything is written to it.
    fn set_up(
        mut conn: Connection,
        options: SqliteOptions,
        file: bool,
    ) -> Result<Self, StoreError> {
        let waited_ms = options.busy_timeout.as_millis() as u64;
        let err = |what: &'static str| move |e| store_error(what, e, waited_ms);
        conn.busy_timeout(options.busy_timeout)
            .map_err(err("setting the busy timeout"))?;
        conn.execute_batch(
            "PRAGMA synchronous = FULL; PRAGMA fullfsync = ON; PRAGMA secure_delete = ON;",
        )
        .map_err(err("configuring the connection"))?;
        check_schema(&mut conn, waited_ms)?;
        if file {
            let mode: String = conn
                .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
                .map_err(err("turning on the write-ahead log"))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Io(format!(
                    "turning on the write-ahead log: the file stays in journal mode {mode}"
                )));
            }
        }
        Ok(Self { conn, waited_ms })
    }
}

/// What [`inspect`] found in a file.
#[derive(PartialEq, Eq)]
enum Found {
    /// A new, empty database.
    Empty,
    /// A ratchetbox store of this schema version.
    Ours,
}

/// Creates the schema in an empty file, or checks that the file holds this version's.
///
/// The check runs in a read transaction, which does not wait for another handle's write
/// transaction (in WAL mode); only an empty file takes the write lock, and is checked again
/// under it (another process may have created the schema in between).
fn check_schema(conn: &mut Connection, waited_ms: u64) -> Result<(), StoreError> {
    let err = |what: &'static str| move |e| store_error(what, e, waited_ms);
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Deferred)
        .map_err(err("reading the schema"))?;
    let found = inspect(&tx, waited_ms)?;
    drop(tx);
    if found == Found::Ours {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(err("creating the schema"))?;
    if inspect(&tx, waited_ms)? == Found::Ours {
        return Ok(());
    }
    tx.execute_batch(&format!(
        "{CREATE_ITEMS}; PRAGMA application_id = {APPLICATION_ID}; \
         PRAGMA user_version = {SCHEMA_VERSION};"
    ))
    .map_err(err("creating the schema"))?;
    tx.commit().map_err(err("creating the schema"))
}

/// Reads the file's mark, schema version and tables.
fn inspect(conn: &Connection, waited_ms: u64) -> Result<Found, StoreError> {
    let err = move |e| store_error("reading the schema", e, waited_ms);
    let application_id: i32 = conn
        .query_row("PRAGMA application_id", [], |row| row.get(0))
        .map_err(err)?;
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .map_err(err)?;
    let objects: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_schema", [], |row| row.get(0))
        .map_err(err)?;
    match (application_id, version) {
        (0, 0) if objects == 0 => Ok(Found::Empty),
        (0, _) => Err(StoreError::Corrupt(
            "the file is an SQLite database of another application (it has no ratchetbox mark)"
                .to_string(),
        )),
        (APPLICATION_ID, SCHEMA_VERSION) => {
            let sql: Option<String> = conn
                .query_row(
                    "SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'items'",
                    [],
                    |row| row.get(0),
                )
                .map(Some)
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(None),
                    e => Err(e),
                })
                .map_err(err)?;
            if sql.as_deref() != Some(CREATE_ITEMS) || objects != 1 {
                return Err(StoreError::Corrupt(format!(
                    "the tables of schema version {SCHEMA_VERSION} are missing or altered"
                )));
            }
            Ok(Found::Ours)
        }
        (APPLICATION_ID, newer) if newer > SCHEMA_VERSION => Err(StoreError::Corrupt(format!(
            "the store has schema version {newer}, newer than this version of ratchetbox \
             reads ({SCHEMA_VERSION}): open it with a newer ratchetbox"
        ))),
        (APPLICATION_ID, unknown) => Err(StoreError::Corrupt(format!(
            "the store has an unknown schema version {unknown}"
        ))),
        (other, _) => Err(StoreError::Corrupt(format!(
            "the file is an SQLite database of another application (application id {other:#010x})"
        ))),
    }
}

/// The smallest byte string greater than every string that starts with `prefix`, or `None`
/// if there is none (`prefix` is empty or all 0xff bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if let Some(next) = last.checked_add(1) {
            end.push(next);
            return Some(end);
        }
    }
    None
}

/// A typed error for a failed SQLite call: what was being done, and SQLite's own message
/// (which names no bound value, so no key and no value).
fn store_error(what: &str, error: rusqlite::Error, waited_ms: u64) -> StoreError {
    use rusqlite::ffi::ErrorCode;
    match error {
        rusqlite::Error::SqliteFailure(e, message) => {
            let detail = message.unwrap_or_else(|| e.to_string());
            match e.code {
                // A read transaction that tried to become a write transaction after another
                // handle committed (not reachable with BEGIN IMMEDIATE, mapped all the same).
                ErrorCode::DatabaseBusy if e.extended_code == ffi::SQLITE_BUSY_SNAPSHOT => {
                    StoreError::Conflict
                }
                ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                    StoreError::Busy { waited_ms }
                }
                ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                    StoreError::Corrupt(format!("{what}: {detail}"))
                }
                _ => StoreError::Io(format!("{what}: {detail}")),
            }
        }
        rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::Utf8Error(..) => {
            StoreError::Corrupt(format!("{what}: a stored value has the wrong type"))
        }
        rusqlite::Error::NulError(_) => {
            StoreError::Io(format!("{what}: the path contains a NUL character"))
        }
        rusqlite::Error::InvalidPath(_) => StoreError::Io(format!("{what}: the path is not valid")),
        other => StoreError::Io(format!("{what}: {other}")),
    }
}

impl Store for SqliteStore {
    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        let waited_ms = self.waited_ms;
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| store_error("starting a transaction", e, waited_ms))?;
        Ok(Box::new(SqliteTransaction { tx, waited_ms }))
    }
}

/// A `BEGIN IMMEDIATE` transaction; rusqlite rolls it back when it drops uncommitted.
struct SqliteTransaction<'a> {
    tx: rusqlite::Transaction<'a>,
    waited_ms: u64,
}

impl SqliteTransaction<'_> {
    fn err(&self, what: &'static str) -> impl Fn(rusqlite::Error) -> StoreError + use<> {
        let waited_ms = self.waited_ms;
        move |e| store_error(what, e, waited_ms)
    }

    /// Runs `query` (with a table and a key range) and collects the keys and values.
    fn rows(
        &self,
        query: &str,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<KeyValue>, rusqlite::Error> {
        let mut statement = self.tx.prepare_cached(query)?;
        let map = |row: &rusqlite::Row<'_>| Ok((row.get(0)?, row.get(1)?));
        let rows = match end {
            Some(end) => statement.query_map(params![table.id(), start, end], map)?,
            None => statement.query_map(params![table.id(), start], map)?,
        };
        rows.collect()
    }
}

impl Transaction for SqliteTransaction<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let err = self.err("reading a value");
        let mut statement = self.tx.prepare_cached(GET).map_err(&err)?;
        let mut rows = statement.query(params![table.id(), key]).map_err(&err)?;
        match rows.next().map_err(&err)? {
            Some(row) => Ok(Some(row.get(0).map_err(&err)?)),
            None => Ok(None),
        }
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        let err = self.err("writing a value");
        let mut statement = self.tx.prepare_cached(PUT).map_err(&err)?;
        statement
            .execute(params![table.id(), key, value])
            .map_err(&err)?;
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        let err = self.err("deleting a value");
        let mut statement = self.tx.prepare_cached(DELETE).map_err(&err)?;
        statement.execute(params![table.id(), key]).map_err(&err)?;
        Ok(())
    }

    fn scan(&mut self, table: Table, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        let end = prefix_end(prefix);
        let query = if end.is_some() { SCAN_RANGE } else { SCAN_FROM };
        self.rows(query, table, prefix, end.as_deref())
            .map_err(self.err("reading values"))
    }

    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<u64, StoreError> {
        let err = self.err("deleting values");
        let removed = match prefix_end(prefix) {
            Some(end) => {
                let mut statement = self.tx.prepare_cached(DELETE_RANGE).map_err(&err)?;
                statement
                    .execute(params![table.id(), prefix, end])
                    .map_err(&err)?
            }
            None => {
                let mut statement = self.tx.prepare_cached(DELETE_FROM).map_err(&err)?;
                statement
                    .execute(params![table.id(), prefix])
                    .map_err(&err)?
            }
        };
        Ok(removed as u64)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let err = self.err("committing");
        // On an error, dropping rusqlite's transaction rolls it back.
        self.tx.commit().map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_successor() {
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(&[0xff]), None);
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
        assert_eq!(prefix_end(&[0x00]), Some(alloc::vec![0x01]));
        assert_eq!(prefix_end(&[0x01, 0xff]), Some(alloc::vec![0x02]));
        assert_eq!(
            prefix_end(&[0x01, 0xfe, 0xff, 0xff]),
            Some(alloc::vec![0x01, 0xff])
        );
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
    }

    /// What SQLite plans for `query`, one line per step.
    fn plan(conn: &Connection, query: &str, params: &[&dyn rusqlite::ToSql]) -> Vec<String> {
        let mut statement = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {query}"))
            .expect("prepare");
        statement
            .query_map(params, |row| row.get::<_, String>(3))
            .expect("query")
            .collect::<Result<_, _>>()
            .expect("rows")
    }

    /// Every scan and prefix delete is a search of the primary key's b-tree on the table and
    /// a key range, never a scan of the whole table (nor a LIKE, which cannot use it for
    /// BLOBs).
    #[test]
    fn prefix_queries_search_the_primary_key() {
        let store = SqliteStore::open_in_memory().expect("open");
        let (t, start, end) = (Table::Session.id(), b"a".as_slice(), b"b".as_slice());
        for (query, expected) in [
            (
                SCAN_RANGE,
                "SEARCH items USING PRIMARY KEY (tbl=? AND key>? AND key<?)",
            ),
            (
                DELETE_RANGE,
                "SEARCH items USING PRIMARY KEY (tbl=? AND key>? AND key<?)",
            ),
            (
                SCAN_FROM,
                "SEARCH items USING PRIMARY KEY (tbl=? AND key>?)",
            ),
            (
                DELETE_FROM,
                "SEARCH items USING PRIMARY KEY (tbl=? AND key>?)",
            ),
            (GET, "SEARCH items USING PRIMARY KEY (tbl=? AND key=?)"),
            (DELETE, "SEARCH items USING PRIMARY KEY (tbl=? AND key=?)"),
        ] {
            let params: Vec<&dyn rusqlite::ToSql> = match query.matches('?').count() {
                3 => alloc::vec![&t, &start, &end],
                _ => alloc::vec![&t, &start],
            };
            assert_eq!(plan(&store.conn, query, &params), [expected], "{query}");
        }
    }

    /// A file of another application (tables, no mark) is refused and left as it was.
    #[test]
    fn another_applications_database_is_refused_and_untouched() {
        let dir = std::env::temp_dir().join(format!(
            "ratchetbox-sqlite-unit-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("other.sqlite");
        let _ = std::fs::remove_file(&path);
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(
                "CREATE TABLE contacts (name TEXT); INSERT INTO contacts VALUES ('x');",
            )
            .expect("create");
        }
        let before = std::fs::read(&path).expect("read");
        let error = SqliteStore::open(&path).expect_err("must refuse");
        assert_eq!(
            error,
            StoreError::Corrupt(
                "the file is an SQLite database of another application (it has no ratchetbox mark)"
                    .to_string()
            )
        );
        assert_eq!(std::fs::read(&path).expect("read"), before);
        let conn = Connection::open(&path).expect("open");
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .expect("mode");
        assert_eq!(mode, "delete");
        drop(conn);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
