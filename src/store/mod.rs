//! Where a [`Device`](crate::Device) keeps its state: a synchronous, transactional key-value
//! store of sealed blobs.
//!
//! The device seals every value under its [`StorageKey`](crate::StorageKey) and derives
//! every key from the storage key too (so a stolen database names no contact in clear);
//! a backend stores opaque bytes and never sees a secret. What a backend must provide:
//!
//! - **Transactions.** [`Store::transaction`] starts one; nothing it wrote is visible to
//!   anyone, nor survives a crash, until [`Transaction::commit`] returns `Ok`. Dropping a
//!   transaction without committing rolls it back.
//! - **Isolation.** Transactions of every handle on the same data (other threads, other
//!   processes) are serializable: either the backend excludes them (SQLite's
//!   `BEGIN IMMEDIATE`, the memory store's mutex), or it detects at commit that another
//!   handle committed in between and returns [`StoreError::Conflict`]; the device then
//!   reloads and runs the whole operation again. A backend that excludes makes a second
//!   transaction wait for the first; if it waits too long (or the first one is open on the
//!   same thread, where waiting could never end) it returns [`StoreError::Busy`].
//! - **Durability.** Once `commit` returns `Ok`, the data survives a crash of the process
//!   (and, for the SQLite backend, of the machine): the device hands out a ciphertext or a
//!   plaintext only after that. When `commit` returns an error the transaction is over and
//!   the backend has rolled it back, with one exception no storage engine can rule out: if
//!   the final flush to disk itself fails ([`StoreError::Io`]), the operating system may
//!   still have written some or all of it, and a later open may find either the old state or
//!   the new one (never a mix).
//!
//! Two backends: [`MemoryStore`] (handles share one map, for tests and for apps that keep
//! state elsewhere: [`MemoryStore::export`] and [`MemoryStore::import`] turn its contents
//! into bytes and back) and, with the `sqlite` feature, `SqliteStore` (one file, WAL journal).
//!
//! Keys and values are opaque bytes; keys of one [`Table`] are ordered bytewise (the order
//! of `[u8]`), which is the order [`Transaction::scan`] returns them in.
//!
//! ```
//! use ratchetbox::{MemoryStore, Store, Table};
//!
//! let mut store = MemoryStore::new();
//! let mut tx = store.transaction()?;
//! tx.put(Table::Session, b"bob.1", b"sealed record")?;
//! assert_eq!(tx.get(Table::Session, b"bob.1")?, Some(b"sealed record".to_vec()));
//! tx.commit()?;
//!
//! // Dropping a transaction without committing rolls it back.
//! let mut tx = store.transaction()?;
//! tx.delete(Table::Session, b"bob.1")?;
//! drop(tx);
//! let mut tx = store.transaction()?;
//! assert_eq!(tx.get(Table::Session, b"bob.1")?, Some(b"sealed record".to_vec()));
//! # Ok::<(), ratchetbox::StoreError>(())
//! ```

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

mod memory;
mod snapshot;
#[cfg(feature = "sqlite")]
mod sqlite;

pub use memory::MemoryStore;
#[cfg(feature = "sqlite")]
pub use sqlite::{SqliteOptions, SqliteStore};

/// The tables a device stores its state in. A backend keeps each table's keys apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Table {
    /// Store-wide values: the format version, the state generation.
    Meta,
    /// The device's account (identity and prekeys): one row.
    Account,
    /// One session record per peer address, without its skipped message keys.
    Session,
    /// Skipped message keys, one row each, so that a message writes O(1) of them.
    SkippedKey,
    /// Per-user data: the devices the user is known to have.
    User,
    /// Group state (sender keys), one row per group and sender.
    Group,
}

impl Table {
    /// Every table, in a fixed order.
    pub const ALL: [Table; 6] = [
        Table::Meta,
        Table::Account,
        Table::Session,
        Table::SkippedKey,
        Table::User,
        Table::Group,
    ];

    /// A stable name, for backends that keep tables by name (SQLite).
    pub fn name(self) -> &'static str {
        match self {
            Table::Meta => "meta",
            Table::Account => "account",
            Table::Session => "session",
            Table::SkippedKey => "skipped_key",
            Table::User => "user",
            Table::Group => "group",
        }
    }

    /// A stable number, for backends that keep tables by number.
    pub fn id(self) -> u8 {
        match self {
            Table::Meta => 0,
            Table::Account => 1,
            Table::Session => 2,
            Table::SkippedKey => 3,
            Table::User => 4,
            Table::Group => 5,
        }
    }
}

/// A key and its value, as [`Transaction::scan`] returns them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// A storage backend failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another handle committed a change between this transaction's reads and its commit;
    /// nothing was written. The operation can be run again on fresh state.
    #[error("another handle changed the store during this transaction; nothing was written")]
    Conflict,
    /// The store stayed locked by another handle for longer than the backend waits.
    #[error("the store is locked by another handle (waited {waited_ms} ms); try again later")]
    Busy {
        /// How long the backend waited, in milliseconds.
        waited_ms: u64,
    },
    /// The backend could not read or write (a full disk, a missing or read-only file).
    #[error("storage failed: {0}")]
    Io(String),
    /// The stored data is not what this version of ratchetbox writes.
    #[error("the store is corrupt or from an incompatible version: {0}")]
    Corrupt(String),
}

/// A storage backend: hands out transactions.
///
/// A handle is `Send`, so it can move to another thread; several handles on the same data
/// (clones of one [`MemoryStore`], or `SqliteStore`s opened on one file) can be used from
/// different threads or processes at once.
pub trait Store: Send {
    /// Starts a transaction (for SQLite, `BEGIN IMMEDIATE`: it waits for other writers).
    ///
    /// # Errors
    /// [`StoreError::Busy`] if another handle kept its transaction open for longer than the
    /// backend waits, or if a transaction of another handle on the same data is open on
    /// this thread; [`StoreError::Io`] or [`StoreError::Corrupt`] if the backend cannot
    /// start one.
    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError>;
}

/// A boxed store is a store, so that a device can hold a `Box<dyn Store>` and stay free of
/// generics.
impl<S: Store + ?Sized> Store for Box<S> {
    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        (**self).transaction()
    }
}

/// One transaction on a [`Store`]. All reads see the transaction's own writes.
pub trait Transaction {
    /// The value stored under `key`, if any.
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Stores `value` under `key`, replacing any value there.
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError>;

    /// Removes `key` (nothing happens if it is absent).
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError>;

    /// Every `(key, value)` whose key starts with `prefix`, in increasing key order.
    fn scan(&mut self, table: Table, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError>;

    /// Removes every key that starts with `prefix`; returns how many were removed.
    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<u64, StoreError>;

    /// Makes every write of this transaction durable and visible, all or nothing.
    ///
    /// # Errors
    /// On any error the transaction is over and rolled back (see the module docs for the
    /// one case where a failed flush may still have reached the disk).
    fn commit(self: Box<Self>) -> Result<(), StoreError>;
}
