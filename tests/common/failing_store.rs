//! A store that fails on purpose, for atomicity tests: "a store that fails at each write
//! point leaves the state unchanged, and a retry succeeds".
//!
//! Include it with `#[path = "common/failing_store.rs"] mod failing_store;`.
//!
//! ```ignore
//! let mut n = 1;
//! loop {
//!     let mut store = FailingStore::failing_at(fresh_store(), n);
//!     match operation(&mut store) {
//!         Err(e) => { /* expect injected_failure(n), state unchanged; retry succeeds */ }
//!         Ok(_) => break, // n is past the operation's last write point
//!     }
//!     n += 1;
//! }
//! ```

#![allow(dead_code)]

use ratchetbox::store::KeyValue;
use ratchetbox::{Store, StoreError, Table, Transaction};

/// Wraps a [`Store`] and fails (with [`StoreError::Io`]) at the N-th write point, counted
/// from 1 across all its transactions. The write points are the calls of
/// [`Transaction::put`], [`Transaction::delete`], [`Transaction::delete_prefix`] and
/// [`Transaction::commit`]. A failing call does nothing (the inner store never sees it; a
/// failed commit drops, and so rolls back, the inner transaction). It fails once: the
/// calls after it go through, so a retry succeeds.
pub struct FailingStore<S> {
    inner: S,
    counter: Counter,
}

/// The state shared by a [`FailingStore`] and its transactions.
struct Counter {
    /// Write points passed so far (including a failed one).
    calls: u64,
    /// The write point that fails, if it has not failed yet.
    fail_at: Option<u64>,
    /// The write point that failed, if one did.
    failed_at: Option<u64>,
}

impl Counter {
    /// Counts a write point; fails if it is the planned one.
    fn write_point(&mut self) -> Result<(), StoreError> {
        self.calls += 1;
        if self.fail_at == Some(self.calls) {
            self.fail_at = None;
            self.failed_at = Some(self.calls);
            return Err(injected_failure(self.calls));
        }
        Ok(())
    }
}

/// The error the `n`-th write point of a [`FailingStore`] returns when it fails.
pub fn injected_failure(n: u64) -> StoreError {
    StoreError::Io(format!("injected failure at write point {n}"))
}

impl<S: Store> FailingStore<S> {
    /// A wrapper that never fails (it only counts write points); see [`fail_after`].
    ///
    /// [`fail_after`]: FailingStore::fail_after
    pub fn new(inner: S) -> Self {
        Self::with_failure(inner, None)
    }

    /// A wrapper whose `n`-th write point (from 1) fails.
    pub fn failing_at(inner: S, n: u64) -> Self {
        Self::with_failure(inner, Some(n))
    }

    fn with_failure(inner: S, fail_at: Option<u64>) -> Self {
        Self {
            inner,
            counter: Counter {
                calls: 0,
                fail_at,
                failed_at: None,
            },
        }
    }

    /// Makes the `n`-th write point from now (from 1) fail, replacing any pending failure.
    pub fn fail_after(&mut self, n: u64) {
        self.counter.fail_at = Some(self.counter.calls + n);
    }

    /// How many write points were passed, including a failed one.
    pub fn write_points(&self) -> u64 {
        self.counter.calls
    }

    /// The write point that failed, if one did.
    pub fn failed_at(&self) -> Option<u64> {
        self.counter.failed_at
    }

    /// The wrapped store, to look at its state without counting.
    pub fn inner_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped store.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: Store> Store for FailingStore<S> {
    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        let FailingStore { inner, counter } = self;
        Ok(Box::new(FailingTransaction {
            inner: inner.transaction()?,
            counter,
        }))
    }
}

struct FailingTransaction<'a> {
    inner: Box<dyn Transaction + 'a>,
    counter: &'a mut Counter,
}

impl Transaction for FailingTransaction<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }

    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.counter.write_point()?;
        self.inner.put(table, key, value)
    }

    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.counter.write_point()?;
        self.inner.delete(table, key)
    }

    fn scan(&mut self, table: Table, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.scan(table, prefix)
    }

    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<u64, StoreError> {
        self.counter.write_point()?;
        self.inner.delete_prefix(table, prefix)
    }

    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.counter.write_point()?;
        self.inner.commit()
    }
}
