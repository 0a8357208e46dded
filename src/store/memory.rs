//! TEMPORARY local stand-in (replaced by the store branch).
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use std::sync::{Arc, Mutex, MutexGuard};
use super::{Store, StoreError, Table, Transaction};
type Map = BTreeMap<(Table, Vec<u8>), Vec<u8>>;
/// Memory store.
#[derive(Clone, Default)]
pub struct MemoryStore(Arc<Mutex<Map>>);
impl MemoryStore {
    /// New.
    pub fn new() -> Self { Self::default() }
}
struct Tx<'a> { guard: MutexGuard<'a, Map>, overlay: BTreeMap<(Table, Vec<u8>), Option<Vec<u8>>> }
impl Store for MemoryStore {
    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        let guard = self.0.lock().unwrap_or_else(|e| e.into_inner());
        Ok(Box::new(Tx { guard, overlay: BTreeMap::new() }))
    }
}
impl Transaction for Tx<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let k = (table, key.to_vec());
        if let Some(v) = self.overlay.get(&k) { return Ok(v.clone()); }
        Ok(self.guard.get(&k).cloned())
    }
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.overlay.insert((table, key.to_vec()), Some(value.to_vec())); Ok(())
    }
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.overlay.insert((table, key.to_vec()), None); Ok(())
    }
    fn scan(&mut self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        let mut m: BTreeMap<Vec<u8>, Option<Vec<u8>>> = BTreeMap::new();
        for ((t, k), v) in self.guard.iter() { if *t == table && k.starts_with(prefix) { m.insert(k.clone(), Some(v.clone())); } }
        for ((t, k), v) in self.overlay.iter() { if *t == table && k.starts_with(prefix) { m.insert(k.clone(), v.clone()); } }
        Ok(m.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect())
    }
    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<u64, StoreError> {
        let keys: Vec<Vec<u8>> = self.scan(table, prefix)?.into_iter().map(|(k, _)| k).collect();
        let n = keys.len() as u64;
        for k in keys { self.overlay.insert((table, k), None); }
        Ok(n)
    }
    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        let overlay = core::mem::take(&mut self.overlay);
        for (k, v) in overlay { match v { Some(v) => { self.guard.insert(k, v); } None => { self.guard.remove(&k); } } }
        Ok(())
    }
}
