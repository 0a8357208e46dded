//! A [`MemoryStore`]'s whole contents as bytes, and back: for apps that keep the state
//! somewhere the library cannot reach (a browser's IndexedDB, a platform file API).
//!
//! The values are what the device wrote: sealed under its storage key, under keys derived
//! from it. The snapshot adds no protection and needs none; it also removes none: without
//! the storage key it names no contact and opens nothing.
//!
//! The format, all integers big-endian:
//!
//! ```text
//! snapshot = version:u8 (1) entry*
//! entry    = table:u8 key_len:u32 key value_len:u32 value
//! ```
//!
//! `table` is [`Table::id`]. Entries are in strictly increasing `(table, key)` order (keys
//! compared bytewise), so a store has exactly one snapshot and a duplicate key is refused.
//! [`MemoryStore::import`] refuses anything else (an unknown version or table, a length past
//! the end, entries out of order, trailing bytes) with [`StoreError::Corrupt`].

use alloc::format;
use alloc::vec::Vec;

use super::{MemoryStore, Store, StoreError, Table};

/// The snapshot format's version byte.
const SNAPSHOT_VERSION: u8 = 1;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("the store snapshot is invalid: {what}"))
}

fn table_of(id: u8) -> Option<Table> {
    Table::ALL.into_iter().find(|t| t.id() == id)
}

/// Reads a length-prefixed field; the length is checked against what is left before
/// anything is allocated.
fn field<'a>(input: &mut &'a [u8], what: &str) -> Result<&'a [u8], StoreError> {
    let (len, rest) = input
        .split_first_chunk::<4>()
        .ok_or_else(|| corrupt(&format!("a {what} length is cut short")))?;
    let len = u32::from_be_bytes(*len) as usize;
    if len > rest.len() {
        return Err(corrupt(&format!(
            "a {what} of {len} bytes runs past the end ({} bytes left)",
            rest.len()
        )));
    }
    let (bytes, rest) = rest.split_at(len);
    *input = rest;
    Ok(bytes)
}

fn put_field(out: &mut Vec<u8>, bytes: &[u8]) -> Result<(), StoreError> {
    let len = u32::try_from(bytes.len()).map_err(|_| {
        StoreError::Io(format!(
            "a stored entry of {} bytes is too large for a snapshot",
            bytes.len()
        ))
    })?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes);
    Ok(())
}

impl MemoryStore {
    /// The committed contents, as bytes that [`import`](Self::import) turns back into a
    /// store (the format is in the module docs of `store::snapshot`). Taken in one
    /// transaction, so it is a consistent state even while other handles write.
    ///
    /// ```
    /// use ratchetbox::{MemoryStore, Store, Table};
    ///
    /// let mut store = MemoryStore::new();
    /// let mut tx = store.transaction()?;
    /// tx.put(Table::Session, b"k", b"sealed")?;
    /// tx.commit()?;
    ///
    /// let bytes = store.export()?; // keep them in IndexedDB, a file...
    /// let mut restored = MemoryStore::import(&bytes)?;
    /// assert_eq!(restored.transaction()?.get(Table::Session, b"k")?, Some(b"sealed".to_vec()));
    /// # Ok::<(), ratchetbox::StoreError>(())
    /// ```
    ///
    /// # Errors
    /// [`StoreError::Busy`] if a transaction of a handle on this store is open on this
    /// thread.
    pub fn export(&self) -> Result<Vec<u8>, StoreError> {
        let mut handle = self.clone();
        let mut tx = handle.transaction()?;
        let mut out = alloc::vec![SNAPSHOT_VERSION];
        let mut tables = Table::ALL;
        tables.sort_by_key(|t| t.id());
        for table in tables {
            for (key, value) in tx.scan(table, b"")? {
                out.push(table.id());
                put_field(&mut out, &key)?;
                put_field(&mut out, &value)?;
            }
        }
        Ok(out)
    }

    /// A new store holding what [`export`](Self::export) wrote.
    ///
    /// # Errors
    /// [`StoreError::Corrupt`] if `bytes` are not a snapshot exactly as `export` writes it;
    /// nothing is created then.
    pub fn import(bytes: &[u8]) -> Result<Self, StoreError> {
        let (&version, mut input) = bytes.split_first().ok_or_else(|| corrupt("it is empty"))?;
        if version != SNAPSHOT_VERSION {
            return Err(corrupt(&format!(
                "version {version} (this version of ratchetbox reads {SNAPSHOT_VERSION})"
            )));
        }
        let mut store = Self::new();
        let mut tx = store.transaction()?;
        let mut previous: Option<(u8, &[u8])> = None;
        while let Some((&id, rest)) = input.split_first() {
            input = rest;
            let table = table_of(id).ok_or_else(|| corrupt(&format!("unknown table {id}")))?;
            let key = field(&mut input, "key")?;
            let value = field(&mut input, "value")?;
            if previous.is_some_and(|p| p >= (id, key)) {
                return Err(corrupt("entries are out of order or repeated"));
            }
            previous = Some((id, key));
            tx.put(table, key, value)?;
        }
        tx.commit()?;
        Ok(store)
    }
}
