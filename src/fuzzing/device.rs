//! The `device` target: the high-level layer ([`Device`] over [`MemoryStore`]) driven by a
//! scenario of sends, deliveries (in any order, repeated, or with one bit flipped),
//! restarts, device-list changes and storage failures.
//!
//! Invariants checked:
//! - a delivered message decrypts at most once, to exactly the body that was sent to that
//!   device; a second delivery fails with an error whose action is [`Action::Ignore`];
//! - a message with one bit flipped never decrypts;
//! - every failed call, including one whose store fails at a write or at commit, leaves
//!   every row of the store exactly as it was;
//! - a device reopened from its store carries on (no message is lost to a restart);
//! - nothing panics.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::{Arbitrary, Unstructured};

use super::{T0, rng};
use crate::store::{MemoryStore, Store, StoreError, Table, Transaction};
use crate::{
    Action, Address, Content, Device, Error, PreKeyBundle, PreKeyUpload, ServerPreKeyStatus,
    StorageKey,
};
use rand_chacha::ChaCha20Rng;

/// Devices of the scenario: alice.1, alice.2, bob.1, bob.2.
const DEVICES: [(&str, u32); 4] = [("alice", 1), ("alice", 2), ("bob", 1), ("bob", 2)];

#[derive(Arbitrary, Debug)]
enum Op {
    /// `from` fetches a bundle of `to` and starts a session.
    Connect { from: u8, to: u8 },
    /// `from` sends to the other user: `mask` selects the listed devices of the peer (bits
    /// 0-1) and of the sender's own user (bits 2-3).
    Send { from: u8, mask: u8 },
    /// Delivers pending message `index` (modulo the queue).
    Deliver { index: u16 },
    /// Delivers pending message `index` with bit `bit` (modulo its length) flipped.
    DeliverFlipped { index: u16, bit: u32 },
    /// Delivers an already delivered message again.
    Redeliver { index: u16 },
    /// Drops the device's handle and opens its store again.
    Restart { device: u8 },
    /// The next call of `device` fails at its `at`-th write (or its commit).
    FailNextWrite { device: u8, at: u8 },
}

#[derive(Debug)]
struct Scenario {
    ops: Vec<Op>,
}

impl<'a> Arbitrary<'a> for Scenario {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let mut ops = Vec::new();
        while !u.is_empty() && ops.len() < 64 {
            ops.push(Op::arbitrary(u)?);
        }
        Ok(Self { ops })
    }
}

/// A store that can be told to fail at its n-th write or commit, shared with the harness.
#[derive(Clone)]
struct Flaky {
    inner: MemoryStore,
    fail_at: Arc<Mutex<Option<u8>>>,
}

struct FlakyTx<'a> {
    inner: Box<dyn Transaction + 'a>,
    fail_at: Arc<Mutex<Option<u8>>>,
}

impl FlakyTx<'_> {
    fn write_point(&mut self) -> Result<(), StoreError> {
        let mut fail = self.fail_at.lock().unwrap_or_else(|e| e.into_inner());
        match *fail {
            Some(0) => {
                *fail = None;
                Err(StoreError::Io("injected failure".into()))
            }
            Some(n) => {
                *fail = Some(n - 1);
                Ok(())
            }
            None => Ok(()),
        }
    }
}

impl Store for Flaky {
    fn transaction(&mut self) -> Result<Box<dyn Transaction + '_>, StoreError> {
        Ok(Box::new(FlakyTx {
            inner: self.inner.transaction()?,
            fail_at: self.fail_at.clone(),
        }))
    }
}

impl Transaction for FlakyTx<'_> {
    fn get(&mut self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(table, key)
    }
    fn put(&mut self, table: Table, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.write_point()?;
        self.inner.put(table, key, value)
    }
    fn delete(&mut self, table: Table, key: &[u8]) -> Result<(), StoreError> {
        self.write_point()?;
        self.inner.delete(table, key)
    }
    fn scan(&mut self, table: Table, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>, StoreError> {
        self.inner.scan(table, prefix)
    }
    fn delete_prefix(&mut self, table: Table, prefix: &[u8]) -> Result<u64, StoreError> {
        self.write_point()?;
        self.inner.delete_prefix(table, prefix)
    }
    fn commit(mut self: Box<Self>) -> Result<(), StoreError> {
        self.write_point()?;
        self.inner.commit()
    }
}

type Rows = Vec<(Table, Vec<u8>, Vec<u8>)>;

fn rows(store: &mut MemoryStore) -> Rows {
    let mut tx = store.transaction().expect("memory transaction");
    let mut out = Vec::new();
    for table in Table::ALL {
        for (k, v) in tx.scan(table, &[]).expect("memory scan") {
            out.push((table, k, v));
        }
    }
    out
}

struct Node {
    store: Flaky,
    key: [u8; 32],
    device: Device,
    published: Published,
}

/// What the server keeps of a device's prekeys (its first upload), handing out one-time
/// keys once each.
struct Published {
    upload: PreKeyUpload,
    next_one_time: usize,
    next_kem: usize,
}

impl Published {
    fn new(device: &mut Device, rng: &mut ChaCha20Rng) -> Self {
        let bytes = device
            .prekey_maintenance(rng, T0, ServerPreKeyStatus::default())
            .expect("a first maintenance")
            .expect("a first upload");
        Self {
            upload: PreKeyUpload::from_bytes(&bytes).expect("a valid upload"),
            next_one_time: 0,
            next_kem: 0,
        }
    }

    /// The next bundle; `None` once the one-time prekeys are used up.
    fn bundle(&mut self) -> Option<Vec<u8>> {
        let one_time = *self.upload.one_time_prekeys().get(self.next_one_time)?;
        let kem = self.upload.one_time_kem_prekeys().get(self.next_kem)?;
        self.next_one_time += 1;
        self.next_kem += 1;
        let bundle = PreKeyBundle::assemble(
            self.upload.identity_key(),
            self.upload.signed_prekey()?,
            Some(one_time),
            Some(kem),
        )
        .expect("uploaded keys are signed");
        Some(bundle.to_bytes())
    }
}

struct Pending {
    from: Address,
    to: usize,
    message: Vec<u8>,
    body: Vec<u8>,
}

/// The `device` target.
pub fn device(data: &[u8]) {
    let Ok(scenario) = Scenario::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    run(&scenario);
}

/// Each device's store rows, storage key and first upload, made once.
fn fixture() -> &'static [(Rows, [u8; 32], PreKeyUpload)] {
    static FIXTURE: OnceLock<Vec<(Rows, [u8; 32], PreKeyUpload)>> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let mut rng = rng(0xf1c5);
        (0..DEVICES.len())
            .map(|i| {
                let mut store = MemoryStore::new();
                let key = [i as u8 + 1; 32];
                let mut device = Device::create(
                    Box::new(store.clone()),
                    StorageKey::from_bytes(key),
                    address(i),
                    &mut rng,
                    T0,
                )
                .expect("create a device");
                let published = Published::new(&mut device, &mut rng);
                (rows(&mut store), key, published.upload)
            })
            .collect()
    })
}

fn address(i: usize) -> Address {
    let (user, device) = DEVICES[i];
    Address::new(user, device).expect("valid address")
}

fn run(scenario: &Scenario) {
    let mut rng = rng(0xde71ce);
    // Creating the four devices and their first uploads (200 prekeys each) costs more than
    // most scenarios: it is done once, and every scenario starts from a copy of the stores.
    let mut nodes: Vec<Node> = fixture()
        .iter()
        .map(|(rows, key, upload)| {
            let mut inner = MemoryStore::new();
            {
                let mut tx = inner.transaction().expect("memory transaction");
                for (table, k, v) in rows {
                    tx.put(*table, k, v).expect("memory put");
                }
                tx.commit().expect("memory commit");
            }
            let store = Flaky {
                inner,
                fail_at: Arc::new(Mutex::new(None)),
            };
            let device = Device::open(Box::new(store.clone()), StorageKey::from_bytes(*key))
                .expect("open a device");
            Node {
                store,
                key: *key,
                device,
                published: Published {
                    upload: upload.clone(),
                    next_one_time: 0,
                    next_kem: 0,
                },
            }
        })
        .collect();
    let mut pending: Vec<Pending> = Vec::new();
    let mut delivered: Vec<Pending> = Vec::new();
    let mut sent = 0u32;
    let index_of: BTreeMap<Address, usize> = (0..DEVICES.len()).map(|i| (address(i), i)).collect();

    for op in &scenario.ops {
        match *op {
            Op::Connect { from, to } => {
                let (from, to) = (usize::from(from) % 4, usize::from(to) % 4);
                if from == to {
                    continue;
                }
                let Some(bundle) = nodes[to].published.bundle() else {
                    continue;
                };
                let target = address(to);
                let node = &mut nodes[from];
                let before = rows(&mut node.store.inner);
                if let Err(e) = node.device.process_bundle(&mut rng, &target, &bundle) {
                    assert_eq!(
                        rows(&mut node.store.inner),
                        before,
                        "failed call changed the store: {e}"
                    );
                }
            }
            Op::Send { from, mask } => {
                let from = usize::from(from) % 4;
                let (own_user, _) = DEVICES[from];
                let peer_user = if own_user == "alice" { "bob" } else { "alice" };
                let peer_devices: Vec<u32> = [1u32, 2]
                    .into_iter()
                    .filter(|d| mask & (1 << (d - 1)) != 0)
                    .collect();
                let own_devices: Vec<u32> = [1u32, 2]
                    .into_iter()
                    .filter(|d| mask & (1 << (d + 1)) != 0)
                    .collect();
                sent += 1;
                let body = format!("message {sent}").into_bytes();
                let node = &mut nodes[from];
                let before = rows(&mut node.store.inner);
                match node.device.send(
                    &mut rng,
                    peer_user,
                    &peer_devices,
                    &own_devices,
                    &Content::new(body.clone()),
                    T0,
                ) {
                    Ok(out) => {
                        for o in out.messages {
                            let to = index_of[&o.to];
                            pending.push(Pending {
                                from: address(from),
                                to,
                                message: o.message,
                                body: body.clone(),
                            });
                        }
                    }
                    Err(e) => {
                        assert_eq!(
                            rows(&mut node.store.inner),
                            before,
                            "failed send changed the store: {e}"
                        );
                        if let Error::MissingSessions { addresses } = &e {
                            assert!(!addresses.is_empty());
                            assert_eq!(e.action(), Action::RepairSession);
                        }
                    }
                }
            }
            Op::Deliver { index } | Op::DeliverFlipped { index, .. } => {
                if pending.is_empty() {
                    continue;
                }
                let i = usize::from(index) % pending.len();
                let flip = match *op {
                    Op::DeliverFlipped { bit, .. } => Some(bit),
                    _ => None,
                };
                let p = &pending[i];
                let mut message = p.message.clone();
                if let Some(bit) = flip {
                    let bit = bit as usize % (message.len() * 8);
                    message[bit / 8] ^= 1 << (bit % 8);
                }
                let node = &mut nodes[p.to];
                let before = rows(&mut node.store.inner);
                match node.device.receive(&mut rng, &p.from, &message, T0) {
                    Ok(got) => {
                        assert!(flip.is_none(), "a message with a flipped bit decrypted");
                        assert_eq!(got.content().body(), &p.body[..], "wrong plaintext");
                        delivered.push(pending.remove(i));
                    }
                    Err(e) => {
                        assert_eq!(
                            rows(&mut node.store.inner),
                            before,
                            "failed receive changed the store: {e}"
                        );
                    }
                }
            }
            Op::Redeliver { index } => {
                if delivered.is_empty() {
                    continue;
                }
                let p = &delivered[usize::from(index) % delivered.len()];
                let node = &mut nodes[p.to];
                let before = rows(&mut node.store.inner);
                match node.device.receive(&mut rng, &p.from, &p.message, T0) {
                    Ok(_) => panic!("a message decrypted twice"),
                    Err(e) => {
                        assert_eq!(
                            rows(&mut node.store.inner),
                            before,
                            "failed receive changed the store: {e}"
                        );
                    }
                }
            }
            Op::Restart { device } => {
                let i = usize::from(device) % 4;
                let node = &mut nodes[i];
                *node.store.fail_at.lock().unwrap_or_else(|e| e.into_inner()) = None;
                node.device = Device::open(
                    Box::new(node.store.clone()),
                    StorageKey::from_bytes(node.key),
                )
                .expect("reopen a device");
            }
            Op::FailNextWrite { device, at } => {
                let node = &nodes[usize::from(device) % 4];
                *node.store.fail_at.lock().unwrap_or_else(|e| e.into_inner()) = Some(at % 8);
            }
        }
    }
}
