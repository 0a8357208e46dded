//! `MemoryStore::export` / `MemoryStore::import` (docs/PROTOCOL.md 15.5): a device carries on
//! from an imported snapshot, every snapshot has one encoding, and every malformed one is
//! refused with `StoreError::Corrupt` before anything is created.

use ratchetbox::{
    Address, Content, Device, MemoryStore, OsRng, PreKeyBundle, PreKeyUpload, ServerPreKeyStatus,
    StorageKey, Store, StoreError, Table, Timestamp,
};

const NOW: Timestamp = Timestamp::from_unix_secs(1_764_000_000);

fn small_store() -> MemoryStore {
    let mut store = MemoryStore::new();
    let mut tx = store.transaction().unwrap();
    tx.put(Table::Session, b"k2", b"v2").unwrap();
    tx.put(Table::Meta, b"m", b"").unwrap();
    tx.put(Table::Session, b"k1", b"value 1").unwrap();
    tx.commit().unwrap();
    store
}

/// The snapshot of `small_store`, written by hand from the format.
fn small_snapshot() -> Vec<u8> {
    let mut s = vec![1u8];
    for (table, key, value) in [
        (0u8, &b"m"[..], &b""[..]),
        (2, b"k1", b"value 1"),
        (2, b"k2", b"v2"),
    ] {
        s.push(table);
        s.extend_from_slice(&(key.len() as u32).to_be_bytes());
        s.extend_from_slice(key);
        s.extend_from_slice(&(value.len() as u32).to_be_bytes());
        s.extend_from_slice(value);
    }
    s
}

fn corrupt_message(bytes: &[u8]) -> String {
    match MemoryStore::import(bytes) {
        Err(StoreError::Corrupt(message)) => message,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

#[test]
fn export_writes_the_documented_format() {
    assert_eq!(small_store().export().unwrap(), small_snapshot());
    assert_eq!(MemoryStore::new().export().unwrap(), vec![1]);
}

#[test]
fn import_restores_every_entry() {
    let mut restored = MemoryStore::import(&small_snapshot()).unwrap();
    let mut tx = restored.transaction().unwrap();
    assert_eq!(tx.get(Table::Meta, b"m").unwrap(), Some(Vec::new()));
    assert_eq!(
        tx.scan(Table::Session, b"").unwrap(),
        vec![
            (b"k1".to_vec(), b"value 1".to_vec()),
            (b"k2".to_vec(), b"v2".to_vec())
        ]
    );
    assert_eq!(tx.scan(Table::Account, b"").unwrap(), Vec::new());
}

#[test]
fn a_device_carries_on_from_an_imported_snapshot() {
    let mut rng = OsRng::new();
    let alice_key = [3u8; 32];
    let store = MemoryStore::new();
    let mut alice = Device::create(
        Box::new(store.clone()),
        StorageKey::from_bytes(alice_key),
        Address::new("alice", 1).unwrap(),
        &mut rng,
        NOW,
    )
    .unwrap();
    let mut bob = Device::create(
        Box::new(MemoryStore::new()),
        StorageKey::generate(&mut rng),
        Address::new("bob", 1).unwrap(),
        &mut rng,
        NOW,
    )
    .unwrap();
    let upload = bob
        .prekey_maintenance(&mut rng, NOW, ServerPreKeyStatus::default())
        .unwrap()
        .unwrap();
    let upload = PreKeyUpload::from_bytes(&upload).unwrap();
    let bundle = PreKeyBundle::assemble(
        upload.identity_key(),
        upload.signed_prekey().unwrap(),
        upload.one_time_prekeys().first().copied(),
        upload.one_time_kem_prekeys().first(),
    )
    .unwrap();
    let bob_address = Address::new("bob", 1).unwrap();
    alice
        .process_bundle(&mut rng, &bob_address, &bundle.to_bytes())
        .unwrap();
    let first = alice
        .send(&mut rng, "bob", &[1], &[], &Content::new("one"), NOW)
        .unwrap();
    let generation = alice.generation();
    drop(alice);

    let snapshot = store.export().unwrap();
    let restored = MemoryStore::import(&snapshot).unwrap();
    assert_eq!(restored.export().unwrap(), snapshot);
    let mut alice = Device::open(Box::new(restored), StorageKey::from_bytes(alice_key)).unwrap();
    alice.check_generation(generation).unwrap();
    assert_eq!(alice.sessions().unwrap(), vec![bob_address]);
    let second = alice
        .send(&mut rng, "bob", &[1], &[], &Content::new("two"), NOW)
        .unwrap();
    let alice_address = Address::new("alice", 1).unwrap();
    for (sent, body) in [(first, b"one"), (second, b"two")] {
        let received = bob
            .receive(&mut rng, &alice_address, &sent.messages[0].message, NOW)
            .unwrap();
        assert_eq!(received.content().body(), body);
    }
}

#[test]
fn malformed_snapshots_are_refused() {
    let good = small_snapshot();
    assert_eq!(
        corrupt_message(&[]),
        "the store snapshot is invalid: it is empty"
    );
    let mut v2 = good.clone();
    v2[0] = 2;
    assert_eq!(
        corrupt_message(&v2),
        "the store snapshot is invalid: version 2 (this version of ratchetbox reads 1)"
    );
    let mut table = good.clone();
    table[1] = 6;
    assert_eq!(
        corrupt_message(&table),
        "the store snapshot is invalid: unknown table 6"
    );
    // The first key's length claims more than is left.
    let mut long = good.clone();
    long[2..6].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(
        corrupt_message(&long),
        format!(
            "the store snapshot is invalid: a key of {} bytes runs past the end ({} bytes left)",
            u32::MAX,
            good.len() - 6
        )
    );
    assert_eq!(
        corrupt_message(&good[..good.len() - 1]),
        "the store snapshot is invalid: a value of 2 bytes runs past the end (1 bytes left)"
    );
    assert_eq!(
        corrupt_message(&good[..good.len() - 10]),
        "the store snapshot is invalid: a key length is cut short"
    );
    // Trailing bytes: a table id and nothing more.
    let mut trailing = good.clone();
    trailing.push(2);
    assert_eq!(
        corrupt_message(&trailing),
        "the store snapshot is invalid: a key length is cut short"
    );
    // The same entries in another order, and an entry repeated.
    let mut swapped = vec![1u8];
    let first_len = 1 + 4 + 1 + 4; // (meta, "m", "")
    let second_len = 1 + 4 + 2 + 4 + 7;
    swapped.extend_from_slice(&good[1 + first_len..1 + first_len + second_len]);
    swapped.extend_from_slice(&good[1..1 + first_len]);
    assert_eq!(
        corrupt_message(&swapped),
        "the store snapshot is invalid: entries are out of order or repeated"
    );
    let mut repeated = good.clone();
    repeated.extend_from_slice(&good[1 + first_len + second_len..]);
    assert_eq!(
        corrupt_message(&repeated),
        "the store snapshot is invalid: entries are out of order or repeated"
    );
}

/// One encoding per state: every bit flip of a snapshot is refused, or imports as a store
/// whose snapshot is exactly the flipped bytes (so a different state from the original).
#[test]
fn every_bit_flip_is_refused_or_a_different_store() {
    let good = small_snapshot();
    let mut accepted = 0;
    for i in 0..good.len() * 8 {
        let mut flipped = good.clone();
        flipped[i / 8] ^= 1 << (i % 8);
        match MemoryStore::import(&flipped) {
            Ok(store) => {
                accepted += 1;
                assert_eq!(store.export().unwrap(), flipped, "bit {i}");
            }
            Err(StoreError::Corrupt(_)) => {}
            Err(other) => panic!("bit {i}: {other:?}"),
        }
    }
    // Flips inside keys and values give other valid stores; length, version and table
    // flips do not.
    assert!(accepted > 0 && accepted < good.len() * 8, "{accepted}");
}

#[test]
fn export_refuses_while_this_thread_holds_a_transaction() {
    let mut store = small_store();
    let other = store.clone();
    let tx = store.transaction().unwrap();
    assert_eq!(other.export(), Err(StoreError::Busy { waited_ms: 0 }));
    drop(tx);
    assert_eq!(other.export().unwrap(), small_snapshot());
}
