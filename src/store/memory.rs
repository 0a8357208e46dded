//! The in-memory backend: handles share one map behind a mutex.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Bound;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::{self, ThreadId};

use zeroize::Zeroizing;

use super::{KeyValue, Store, StoreError, Table, Transaction};

/// The committed contents: each table's keys apart, values wiped when replaced or removed.
type Map = BTreeMap<(Table, Vec<u8>), Zeroizing<Vec<u8>>>;

/// A transaction's writes before commit: `Some(value)` to store, `None` to remove.
type Overlay = BTreeMap<(Table, Vec<u8>), Option<Zeroizing<Vec<u8>>>>;

/// A [`Store`] in memory, for tests and for apps that keep their state elsewhere.
///
/// Clones are handles on the same data, like two connections to one database: each can move
/// to its own thread. A transaction holds the store's lock for its whole life, so the
/// transactions of all handles run one after the other (a second one waits); its writes are
/// kept aside and applied at commit, so dropping it leaves the data untouched. Values that
/// are replaced or removed, and writes that are rolled back, are wiped from memory.
///
/// Starting a transaction on a handle while a transaction of another handle is open on the
/// same thread would wait forever; it returns [`StoreError::Busy`] instead.
///
/// ```
/// use ratchetbox::{MemoryStore, Store, Table};
///
/// let mut store = MemoryStore::new();
/// let mut other_handle = store.clone();
///
/// let mut tx = store.transaction()?;
/// tx.put(Table::User, b"alice", b"devices 1, 2")?;
/// tx.put(Table::User, b"bob", b"device 1")?;
/// tx.commit()?;
///
/// // Another handle sees what was committed.
/// let mut tx = other_handle.transaction()?;
/// let users = tx.scan(Table::User, b"")?;
/// assert_eq!(users.len(), 2);
/// assert_eq!(tx.delete_prefix(Table::User, b"al")?, 1);
/// tx.commit()?;
/// # Ok::<(), ratchetbox::StoreError>(())
/// ```
#[derive(Clone, Default)]
pub struct MemoryStore {
    shared: Arc<Shared>,
}

#[derive(Default)]
struct Shared {
    map: Mutex<Map>,
    /// The thread whose transaction holds `map`'s lock, if any. Read before waiting for the
    /// lock: a thread never waits for itself.
    owner: Mutex<Option<ThreadId>>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore").finish_non_exhaustive()
    }
}

/// Locks `mutex`, also when a thread panicked while holding it. Both mutexes only ever hold
/// consistent data: the map changes only in [`MemoryTransaction::commit`], by code that does
/// not panic halfway, and the owner is a single value.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Store for MemoryStore {
    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        let me = thread::current().id();
        if *lock(&self.shared.owner) == Some(me) {
            return Err(StoreError::Busy { waited_ms: 0 });
        }
        let map = lock(&self.shared.map);
        *lock(&self.shared.owner) = Some(me);
        Ok(Box::new(MemoryTransaction {
            shared: &self.shared,
            map,
            overlay: Overlay::new(),
        }))
    }
}

/// A transaction on a [`MemoryStore`]: the map's lock and the writes to apply at commit.
struct MemoryTransaction<'a> {
    shared: &'a Shared,
    map: MutexGuard<'a, Map>,
    overlay: Overlay,
}

impl MemoryTransaction<'_> {
    /// The live entries of `table` whose keys start with `prefix`, in key order: the
    /// committed ones with the overlay applied.
    fn merged(&self, table: Table, prefix: &[u8]) -> BTreeMap<&[u8], &[u8]> {
        let start = Bound::Included((table, prefix.to_vec()));
        let mut out = BTreeMap::new();
        for ((t, key), value) in self.map.range((start.clone(), Bound::Unbounded)) {
            if *t != table || !key.starts_with(prefix) {
                break;
            }
            out.insert(key.as_slice(), value.as_slice());
        }
        for ((t, key), value) in self.overlay.range((start, Bound::Unbounded)) {
            if *t != table || !key.starts_with(prefix) {
                break;
            }
            match value {
                Some(value) => out.insert(key.as_slice(), value.as_slice()),
                None => out.remove(key.as_slice()),
            };
        }
        out
    }
}

impl Transaction for MemoryTransaction<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let entry = (table, key.to_vec());
        Ok(match self.overlay.get(&entry) {
            Some(written) => written.as_ref().map(|value| value.to_vec()),
            None => self.map.get(&entry).map(|value| value.to_vec()),
        })
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.overlay
            .insert((table, key.to_vec()), Some(Zeroizing::new(value.to_vec())));
        Ok(())
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.overlay.insert((table, key.to_vec()), None);
        Ok(())
    }

    fn scan(&mut self, table: Table, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        Ok(self
            .merged(table, prefix)
            .into_iter()
            .map(|(key, value)| (key.to_vec(), value.to_vec()))
            .collect())
    }

    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<u64, StoreError> {
        let keys: Vec<Vec<u8>> = self
            .merged(table, prefix)
            .into_keys()
            .map(<[u8]>::to_vec)
            .collect();
        let removed = keys.len() as u64;
        for key in keys {
            self.overlay.insert((table, key), None);
        }
        Ok(removed)
    }

    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        // Nothing here can panic (allocation failure aborts): the map is never left half
        // updated, which is what makes recovering a poisoned lock safe.
        let overlay = core::mem::take(&mut self.overlay);
        for (entry, written) in overlay {
            match written {
                Some(value) => {
                    self.map.insert(entry, value);
                }
                None => {
                    self.map.remove(&entry);
                }
            }
        }
        Ok(())
    }
}

impl Drop for MemoryTransaction<'_> {
    fn drop(&mut self) {
        // Runs before the map's guard is released (fields drop after this), so no other
        // transaction can have set itself as the owner yet. The overlay's values wipe
        // themselves when it drops.
        *lock(&self.shared.owner) = None;
    }
}
