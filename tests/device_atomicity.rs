//! A `Device` whose store fails at each write point in turn (every put, delete, prefix delete
//! and the commit of the call): the call fails with the store's error, every row of the store
//! is exactly as before, the handle's cached state is not ahead of the store, and the same
//! call then succeeds, with a result the peer accepts.

mod common;
#[path = "common/failing_store.rs"]
mod failing_store;
#[path = "common/server.rs"]
mod server;

use common::{T0, rng};
use failing_store::{FailingStore, injected_failure};
use rand_chacha::ChaCha20Rng;
use ratchetbox::store::KeyValue;
use ratchetbox::{
    Action, Address, Content, Device, Error, MemoryStore, StorageKey, Store, StoreError, Table,
    Transaction,
};
use server::Published;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

type Snapshot = Vec<(Table, Vec<u8>, Vec<u8>)>;

fn snapshot(store: &mut MemoryStore) -> Snapshot {
    let mut tx = store.transaction().unwrap();
    let mut rows = Vec::new();
    for table in Table::ALL {
        for (k, v) in tx.scan(table, &[]).unwrap() {
            rows.push((table, k, v));
        }
    }
    rows
}

fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).unwrap()
}

const ALICE_KEY: [u8; 32] = [1; 32];
const BOB_KEY: [u8; 32] = [2; 32];

/// Alice (alice.1) and Bob (bob.1, bob.2), each on a memory store; Alice has sessions with
/// both of Bob's devices, and has sent `warmup` messages that Bob's devices received and
/// answered once, so that the sessions run. Deterministic for a given seed.
struct World {
    rng: ChaCha20Rng,
    alice_store: MemoryStore,
    bob1_store: MemoryStore,
    bob1: Device,
    bob2: Device,
    /// A message from Alice that bob.1 has not received yet (an initial one if `fresh`).
    pending_for_bob1: Vec<u8>,
}

fn world(seed: u64, fresh: bool) -> World {
    let mut rng = rng(seed);
    let new = |rng: &mut ChaCha20Rng, store: &MemoryStore, key, a: Address| {
        Device::create(
            Box::new(store.clone()),
            StorageKey::from_bytes(key),
            a,
            rng,
            T0,
        )
        .unwrap()
    };
    let alice_store = MemoryStore::new();
    let bob1_store = MemoryStore::new();
    let bob2_store = MemoryStore::new();
    let mut alice = new(&mut rng, &alice_store, ALICE_KEY, addr("alice", 1));
    let mut bob1 = new(&mut rng, &bob1_store, BOB_KEY, addr("bob", 1));
    let mut bob2 = new(&mut rng, &bob2_store, BOB_KEY, addr("bob", 2));
    for bob in [&mut bob1, &mut bob2] {
        let bundle = Published::publish(bob, &mut rng, T0).bundle();
        let to = bob.address().clone();
        alice.process_bundle(&mut rng, &to, &bundle).unwrap();
    }
    let first = alice
        .send(&mut rng, "bob", &[1, 2], &[], &Content::new("first"), T0)
        .unwrap();
    let pending_for_bob1 = if fresh {
        first.messages[0].message.clone()
    } else {
        for (out, bob) in first.messages.iter().zip([&mut bob1, &mut bob2]) {
            bob.receive(&mut rng, &addr("alice", 1), &out.message, T0)
                .unwrap();
            let reply = bob
                .send(&mut rng, "alice", &[1], &[], &Content::new("reply"), T0)
                .unwrap();
            let from = bob.address().clone();
            alice
                .receive(&mut rng, &from, &reply.messages[0].message, T0)
                .unwrap();
        }
        let next = alice
            .send(&mut rng, "bob", &[1, 2], &[], &Content::new("second"), T0)
            .unwrap();
        next.messages[0].message.clone()
    };
    World {
        rng,
        alice_store,
        bob1_store,
        bob1,
        bob2,
        pending_for_bob1,
    }
}

/// Reopens the device on `store`, wrapped to fail at its `n`-th write point.
fn failing(store: &MemoryStore, key: [u8; 32], n: u64) -> Device {
    Device::open(
        Box::new(FailingStore::failing_at(store.clone(), n)),
        StorageKey::from_bytes(key),
    )
    .unwrap()
}

/// Runs `call` with the store failing at write point 1, 2, ... until it succeeds; checks
/// every failure; returns how many write points the call has.
fn at_every_write_point(
    mut setup: impl FnMut(u64) -> (World, Device, MemoryStore),
    mut call: impl FnMut(&mut World, &mut Device) -> Result<(), Error>,
) -> u64 {
    for n in 1..100 {
        let (mut w, mut device, mut store) = setup(n);
        let before = snapshot(&mut store);
        let generation = device.generation();
        match call(&mut w, &mut device) {
            Ok(()) => {
                assert!(n > 1, "the call never wrote");
                return n - 1;
            }
            Err(err) => {
                match &err {
                    Error::Store(e) => assert_eq!(*e, injected_failure(n), "at write point {n}"),
                    other => {
                        panic!("write point {n}: expected the injected failure, got {other:?}")
                    }
                }
                assert_eq!(err.action(), Action::RetryLater);
                assert_eq!(
                    snapshot(&mut store),
                    before,
                    "write point {n} changed the store"
                );
                assert_eq!(device.generation(), generation);
                // The same handle, the same call again: it succeeds now (the store fails once).
                call(&mut w, &mut device)
                    .unwrap_or_else(|e| panic!("retry after write point {n}: {e}"));
                assert_eq!(device.generation(), generation + 1);
            }
        }
    }
    panic!("the call did not succeed within 99 write points");
}

#[test]
fn send_is_all_or_nothing_at_every_write_point() {
    let points = at_every_write_point(
        |n| {
            let w = world(1, false);
            let device = failing(&w.alice_store, ALICE_KEY, n);
            let store = w.alice_store.clone();
            (w, device, store)
        },
        |w, alice| {
            let sent = alice.send(&mut w.rng, "bob", &[1, 2], &[], &Content::new("x"), T0)?;
            // What was returned is what was stored: both Bob devices decrypt it.
            let got = w
                .bob1
                .receive(&mut w.rng, &addr("alice", 1), &sent.messages[0].message, T0)
                .unwrap();
            assert_eq!(got.content().body(), b"x");
            let got = w
                .bob2
                .receive(&mut w.rng, &addr("alice", 1), &sent.messages[1].message, T0)
                .unwrap();
            assert_eq!(got.content().body(), b"x");
            Ok(())
        },
    );
    // Two session rows, the generation, the commit.
    assert_eq!(points, 4);
}

#[test]
fn receiving_an_initial_message_is_all_or_nothing_at_every_write_point() {
    let points = at_every_write_point(
        |n| {
            let w = world(2, true);
            let device = failing(&w.bob1_store, BOB_KEY, n);
            let store = w.bob1_store.clone();
            (w, device, store)
        },
        |w, bob1| {
            let got = bob1.receive(&mut w.rng, &addr("alice", 1), &w.pending_for_bob1, T0)?;
            assert_eq!(got.content().body(), b"first");
            Ok(())
        },
    );
    // The account (one-time prekey consumed), the session row, the clearing of any stale
    // skipped-key rows of the new session (one prefix delete), the generation, the commit.
    assert_eq!(points, 5);
}

#[test]
fn receiving_a_ratchet_message_is_all_or_nothing_at_every_write_point() {
    let points = at_every_write_point(
        |n| {
            let w = world(3, false);
            let device = failing(&w.bob1_store, BOB_KEY, n);
            let store = w.bob1_store.clone();
            (w, device, store)
        },
        |w, bob1| {
            let got = bob1.receive(&mut w.rng, &addr("alice", 1), &w.pending_for_bob1, T0)?;
            assert_eq!(got.content().body(), b"second");
            Ok(())
        },
    );
    // The session row, the generation, the commit.
    assert_eq!(points, 3);
}

#[test]
fn removing_a_device_is_all_or_nothing_at_every_write_point() {
    let points = at_every_write_point(
        |n| {
            let w = world(4, false);
            let device = failing(&w.alice_store, ALICE_KEY, n);
            let store = w.alice_store.clone();
            (w, device, store)
        },
        |w, alice| {
            // bob.1 is gone from the list: its session is deleted with the send.
            let sent = alice.send(&mut w.rng, "bob", &[2], &[], &Content::new("y"), T0)?;
            assert_eq!(sent.messages.len(), 1);
            assert_eq!(alice.sessions().unwrap(), [addr("bob", 2)]);
            Ok(())
        },
    );
    // The session row and the skipped-key rows of bob.1 (two deletes), bob.2's row, the
    // generation, the commit.
    assert_eq!(points, 5);
}

#[test]
fn a_failed_receive_leaves_the_handle_able_to_receive_the_same_message() {
    // The cached state of a handle is never ahead of its store: after a failure at the
    // commit, the message that failed is still new to the handle (not a duplicate).
    let mut w = world(5, false);
    let mut bob1 = failing(&w.bob1_store, BOB_KEY, 3);
    let err = bob1
        .receive(&mut w.rng, &addr("alice", 1), &w.pending_for_bob1, T0)
        .unwrap_err();
    assert!(matches!(err, Error::Store(_)), "{err:?}");
    let got = bob1
        .receive(&mut w.rng, &addr("alice", 1), &w.pending_for_bob1, T0)
        .unwrap();
    assert_eq!(got.content().body(), b"second");
}

/// Counts the writes (puts, deletes, prefix deletes) of every transaction on a store.
struct Counting {
    inner: MemoryStore,
    writes: Arc<AtomicU64>,
}

struct CountingTx<'a> {
    inner: Box<dyn Transaction + 'a>,
    writes: Arc<AtomicU64>,
}

impl Store for Counting {
    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(CountingTx {
            inner: self.inner.transaction()?,
            writes: self.writes.clone(),
        }))
    }
}

impl Transaction for CountingTx<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.put(table, key, value)
    }
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete(table, key)
    }
    fn scan(&mut self, table: Table, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.scan(table, prefix)
    }
    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<u64, StoreError> {
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.inner.delete_prefix(table, prefix)
    }
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.inner.commit()
    }
}

/// The writes of bob.1 receiving the pending message and then one message of each later
/// position in `positions` (all sent first), with `skipped` stored skipped keys in between.
fn writes_per_receive(skipped: usize) -> Vec<u64> {
    let mut w = world(6, false);
    let mut alice = Device::open(
        Box::new(w.alice_store.clone()),
        StorageKey::from_bytes(ALICE_KEY),
    )
    .unwrap();
    let sent: Vec<Vec<u8>> = (0..skipped + 2)
        .map(|i| {
            let s = alice
                .send(
                    &mut w.rng,
                    "bob",
                    &[1, 2],
                    &[],
                    &Content::new(format!("{i}")),
                    T0,
                )
                .unwrap();
            s.messages[0].message.clone()
        })
        .collect();
    let writes = Arc::new(AtomicU64::new(0));
    let store = Counting {
        inner: w.bob1_store.clone(),
        writes: writes.clone(),
    };
    let mut bob1 = Device::open(Box::new(store), StorageKey::from_bytes(BOB_KEY)).unwrap();
    let mut counts = Vec::new();
    let mut receive = |message: &[u8]| {
        let before = writes.load(Ordering::Relaxed);
        bob1.receive(&mut w.rng, &addr("alice", 1), message, T0)
            .unwrap();
        counts.push(writes.load(Ordering::Relaxed) - before);
    };
    receive(&w.pending_for_bob1);
    // Message `skipped` first: the `skipped` before it are stored as skipped keys.
    receive(&sent[skipped]);
    // One of them, which uses (and deletes) one stored key; then the next in order.
    receive(&sent[0]);
    receive(&sent[skipped + 1]);
    counts
}

#[test]
fn one_message_writes_the_same_rows_with_0_or_1000_stored_skipped_keys() {
    let none = writes_per_receive(1);
    let many = writes_per_receive(1000);
    // In order: the session row and the generation.
    assert_eq!(none[0], 2);
    assert_eq!(many[0], 2);
    // Storing k skipped keys writes k rows (here 1 and 1000), plus the same two.
    assert_eq!(none[1], 2 + 1);
    assert_eq!(many[1], 2 + 1000);
    // Using a stored key deletes its row, whatever else is stored: O(1).
    assert_eq!(none[2], 2 + 1);
    assert_eq!(many[2], 2 + 1);
    assert_eq!(none[3], 2);
    assert_eq!(many[3], 2);
}

/// A store that reports `Conflict` at the commit of its first `conflicts` transactions
/// that write (what an optimistic backend reports when another handle committed first).
struct Conflicting {
    inner: MemoryStore,
    conflicts: Arc<AtomicU64>,
}

struct ConflictingTx<'a> {
    inner: Box<dyn Transaction + 'a>,
    conflicts: Arc<AtomicU64>,
}

impl Store for Conflicting {
    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(ConflictingTx {
            inner: self.inner.transaction()?,
            conflicts: self.conflicts.clone(),
        }))
    }
}

impl Transaction for ConflictingTx<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.inner.put(table, key, value)
    }
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.inner.delete(table, key)
    }
    fn scan(&mut self, table: Table, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.scan(table, prefix)
    }
    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<u64, StoreError> {
        self.inner.delete_prefix(table, prefix)
    }
    fn commit(self: Box<Self>) -> Result<(), StoreError> {
        let left = self.conflicts.load(Ordering::Relaxed);
        if left > 0 {
            self.conflicts.store(left - 1, Ordering::Relaxed);
            return Err(StoreError::Conflict);
        }
        self.inner.commit()
    }
}

#[test]
fn a_conflicting_commit_is_retried_on_fresh_state_up_to_the_limit() {
    for conflicts in [1u64, 7, 8] {
        let mut w = world(7, false);
        let left = Arc::new(AtomicU64::new(conflicts));
        let mut store = w.bob1_store.clone();
        let before = snapshot(&mut store);
        let mut bob1 = Device::open(
            Box::new(Conflicting {
                inner: w.bob1_store.clone(),
                conflicts: left.clone(),
            }),
            StorageKey::from_bytes(BOB_KEY),
        )
        .unwrap();
        let result = bob1.receive(&mut w.rng, &addr("alice", 1), &w.pending_for_bob1, T0);
        if conflicts < u64::from(ratchetbox::MAX_ATTEMPTS) {
            // Ran again after each conflict, and committed once.
            assert_eq!(result.unwrap().content().body(), b"second");
            assert_eq!(left.load(Ordering::Relaxed), 0);
        } else {
            let err = result.unwrap_err();
            assert!(
                matches!(err, Error::TooManyConflicts { attempts: 8 }),
                "{err:?}"
            );
            assert_eq!(err.action(), Action::RetryLater);
            assert_eq!(snapshot(&mut store), before);
        }
    }
}
