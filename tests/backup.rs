//! Backup and restore through the high-level layer and the SQLite store (docs/PROTOCOL.md,
//! "Backup"): an older backup restored mid-conversation keeps talking, reuses no key, and
//! reads the late messages the design says it reads.

mod common;
#[path = "common/server.rs"]
mod server;

use std::collections::HashSet;
use std::path::PathBuf;

use common::{T0, pb, rng};
use rand_chacha::ChaCha20Rng;
use ratchetbox::backup::{BackupError, RecoveryKey};
use ratchetbox::{
    Address, Content, DecryptError, Device, Error, MemoryStore, PreKeyBundle, PreKeyUpload,
    RESTORE_ID_GAP, SqliteStore, StorageKey, Store, Table, Timestamp,
};
use server::Published;

fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).unwrap()
}

fn at(secs: u64) -> Timestamp {
    T0.saturating_add_secs(secs)
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("ratchetbox-backup-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
    fn db(&self, name: &str) -> Box<SqliteStore> {
        Box::new(SqliteStore::open(self.0.join(name)).unwrap())
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// What a message's header says about the keys that sealed it: (ratchet public key,
/// counter), and its nonce.
fn header(wire: &[u8]) -> (Vec<u8>, u32, Vec<u8>) {
    let message: pb::Message = pb::decode(wire);
    let ratchet = match message.body.expect("a body") {
        pb::Body::Ratchet(r) => r,
        pb::Body::Initial(i) => i.message.expect("a ratchet message"),
    };
    (ratchet.ratchet_key, ratchet.counter, ratchet.nonce)
}

/// Every key a sender used, to check that none repeats.
#[derive(Default)]
struct Used {
    chains: HashSet<(Vec<u8>, u32)>,
    nonces: HashSet<Vec<u8>>,
    ratchet_keys: HashSet<Vec<u8>>,
}

impl Used {
    fn record(&mut self, wire: &[u8]) {
        let (key, counter, nonce) = header(wire);
        assert!(
            self.chains.insert((key.clone(), counter)),
            "a message key (ratchet key, counter) was used twice"
        );
        assert!(self.nonces.insert(nonce), "a nonce was used twice");
        self.ratchet_keys.insert(key);
    }
}

fn send(
    rng: &mut ChaCha20Rng,
    from: &mut Device,
    to: &Address,
    body: &str,
    now: Timestamp,
) -> Result<Vec<u8>, Error> {
    let sent = from.send(
        rng,
        to.user_id(),
        &[to.device_id()],
        &[],
        &Content::new(body),
        now,
    )?;
    assert_eq!(sent.messages.len(), 1);
    Ok(sent.messages.into_iter().next().unwrap().message)
}

fn read(
    rng: &mut ChaCha20Rng,
    at_device: &mut Device,
    from: &Address,
    wire: &[u8],
    now: Timestamp,
) -> Vec<u8> {
    at_device
        .receive(rng, from, wire, now)
        .unwrap()
        .content()
        .body()
        .to_vec()
}

/// The server's side of a restored device's upload: its new keys, as a bundle.
fn bundle_from_upload(upload: &[u8]) -> (PreKeyUpload, Vec<u8>) {
    let upload = PreKeyUpload::from_bytes(upload).unwrap();
    let bundle = PreKeyBundle::assemble(
        upload.identity_key(),
        upload.signed_prekey().expect("a new signed prekey"),
        upload.one_time_prekeys().first().copied(),
        Some(
            upload
                .one_time_kem_prekeys()
                .first()
                .expect("new one-time KEM prekeys"),
        ),
    )
    .unwrap()
    .to_bytes();
    (upload, bundle)
}

#[test]
fn an_older_backup_restored_mid_conversation_keeps_talking_without_key_reuse() {
    let mut rng = rng(20);
    let dir = TempDir::new("mid");
    let alice_addr = addr("alice", 1);
    let bob_addr = addr("bob", 1);
    let mut alice = Device::create(
        dir.db("phone.db"),
        StorageKey::from_bytes([1; 32]),
        alice_addr.clone(),
        &mut rng,
        T0,
    )
    .unwrap();
    let mut alice_published = Published::publish(&mut alice, &mut rng, T0);
    let mut bob = Device::create(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([2; 32]),
        bob_addr.clone(),
        &mut rng,
        T0,
    )
    .unwrap();
    let mut bob_published = Published::publish(&mut bob, &mut rng, T0);
    let mut alice_used = Used::default();

    // Before the backup: a few turns.
    alice
        .process_bundle(&mut rng, &bob_addr, &bob_published.bundle())
        .unwrap();
    for turn in 0..3u64 {
        let m = send(
            &mut rng,
            &mut alice,
            &bob_addr,
            &format!("a{turn}"),
            at(turn),
        )
        .unwrap();
        alice_used.record(&m);
        assert_eq!(
            read(&mut rng, &mut bob, &alice_addr, &m, at(turn)),
            format!("a{turn}").as_bytes()
        );
        let m = send(
            &mut rng,
            &mut bob,
            &alice_addr,
            &format!("b{turn}"),
            at(turn),
        )
        .unwrap();
        assert_eq!(
            read(&mut rng, &mut alice, &bob_addr, &m, at(turn)),
            format!("b{turn}").as_bytes()
        );
    }

    // The backup is made while Alice's sending chain is open, and the phone sends on it
    // once more afterwards: a restored device that sent on it would reuse that message key.
    let m = send(&mut rng, &mut alice, &bob_addr, "a3", at(9)).unwrap();
    alice_used.record(&m);
    assert_eq!(read(&mut rng, &mut bob, &alice_addr, &m, at(9)), b"a3");
    let recovery_key = RecoveryKey::generate(&mut rng);
    let code = recovery_key.to_code();
    let blob = alice.backup(&mut rng, &recovery_key, at(10)).unwrap();
    let m = send(&mut rng, &mut alice, &bob_addr, "same chain", at(10)).unwrap();
    alice_used.record(&m);
    assert_eq!(
        read(&mut rng, &mut bob, &alice_addr, &m, at(10)),
        b"same chain"
    );

    // After the backup, the phone keeps going: Bob sends two on his current chain (the phone
    // reads the first), the phone answers on a new chain, Bob answers that.
    let late_same_chain_read = send(&mut rng, &mut bob, &alice_addr, "late 1", at(11)).unwrap();
    let late_same_chain = send(&mut rng, &mut bob, &alice_addr, "late 2", at(11)).unwrap();
    assert_eq!(
        read(
            &mut rng,
            &mut alice,
            &bob_addr,
            &late_same_chain_read,
            at(11)
        ),
        b"late 1"
    );
    for turn in 0..2u64 {
        let m = send(
            &mut rng,
            &mut alice,
            &bob_addr,
            &format!("after {turn}"),
            at(12),
        )
        .unwrap();
        alice_used.record(&m);
        assert_eq!(
            read(&mut rng, &mut bob, &alice_addr, &m, at(12)),
            format!("after {turn}").as_bytes()
        );
    }
    let answers_lost_key = send(&mut rng, &mut bob, &alice_addr, "late 3", at(13)).unwrap();
    // A new contact took one of the phone's one-time prekeys after the backup.
    let carol_addr = addr("carol", 1);
    let mut carol = Device::create(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([3; 32]),
        carol_addr.clone(),
        &mut rng,
        T0,
    )
    .unwrap();
    carol
        .process_bundle(&mut rng, &alice_addr, &alice_published.bundle())
        .unwrap();
    let carol_first = send(&mut rng, &mut carol, &alice_addr, "hi from carol", at(13)).unwrap();
    assert_eq!(
        read(&mut rng, &mut alice, &carol_addr, &carol_first, at(13)),
        b"hi from carol"
    );
    drop(alice); // The phone is lost.

    // The new phone: a new database, a new storage key, the code typed back.
    let typed = RecoveryKey::from_code(&code.to_lowercase()).unwrap();
    let restored = Device::restore(
        dir.db("new-phone.db"),
        StorageKey::from_bytes([4; 32]),
        &blob,
        &typed,
        &mut rng,
        at(20),
    )
    .unwrap();
    let mut alice = restored.device;
    assert_eq!(restored.info.created_at, at(10));
    assert_eq!(alice.address(), &alice_addr);
    // Same identity: Bob sees no safety-number change.
    assert_eq!(
        Some(alice.identity_key()),
        bob.peer(&alice_addr).unwrap().map(|p| p.key())
    );

    // The upload: new signed and last-resort prekeys, one-time keys all past the gap, so
    // the server replaces its pools.
    let (upload, alice_bundle) = bundle_from_upload(&restored.prekey_upload);
    assert!(upload.last_resort_kem_prekey().is_some());
    assert_eq!(upload.one_time_prekeys().len(), 100);
    // Every id counter moved exactly 2^20 (the gap the docs give) past what the backed-up
    // account had issued: one-time prekeys 1..=100, signed prekey 1, last-resort KEM
    // prekey 1 and one-time KEM prekeys 2..=101. The rotations and the new batches take the
    // next ids.
    const GAP: u32 = 1 << 20;
    assert_eq!(RESTORE_ID_GAP, GAP);
    assert_eq!(
        upload
            .one_time_prekeys()
            .iter()
            .map(|k| k.id().0)
            .collect::<Vec<_>>(),
        (GAP + 101..=GAP + 200).collect::<Vec<_>>()
    );
    assert_eq!(upload.signed_prekey().unwrap().id().0, GAP + 2);
    assert_eq!(upload.last_resort_kem_prekey().unwrap().id().0, GAP + 102);
    assert_eq!(
        upload
            .one_time_kem_prekeys()
            .iter()
            .map(|k| k.id().0)
            .collect::<Vec<_>>(),
        (GAP + 103..=GAP + 202).collect::<Vec<_>>()
    );

    // A replay of Carol's initial message (its one-time prekey was used after the backup,
    // and the restored account no longer holds any one-time prekey of then) is refused.
    match alice.receive(&mut rng, &carol_addr, &carol_first, at(21)) {
        Err(Error::Decrypt {
            source: DecryptError::OneTimePreKeyUsed { id: 1 },
            ..
        }) => {}
        other => panic!("expected a used one-time prekey, got {other:?}"),
    }

    // Late messages: one on a chain the backup knows reads; one answering a ratchet key the
    // lost phone made after the backup cannot be read by anyone any more.
    assert_eq!(
        read(&mut rng, &mut alice, &bob_addr, &late_same_chain, at(21)),
        b"late 2"
    );
    match alice.receive(&mut rng, &bob_addr, &answers_lost_key, at(21)) {
        Err(Error::Decrypt {
            source: DecryptError::AuthenticationFailed,
            ..
        }) => {}
        other => panic!("expected an authentication failure, got {other:?}"),
    }

    // The restored session never sends: the app fetches Bob's bundle and starts anew.
    match send(&mut rng, &mut alice, &bob_addr, "back", at(22)) {
        Err(Error::MissingSessions { addresses }) => assert_eq!(addresses, vec![bob_addr.clone()]),
        other => panic!("expected MissingSessions, got {other:?}"),
    }
    alice
        .process_bundle(&mut rng, &bob_addr, &bob_published.bundle())
        .unwrap();

    // From here both sides keep talking; nothing is lost, no key repeats.
    let before_restore_keys = alice_used.ratchet_keys.clone();
    for turn in 0..4u64 {
        let m = send(
            &mut rng,
            &mut alice,
            &bob_addr,
            &format!("new a{turn}"),
            at(30 + turn),
        )
        .unwrap();
        assert!(!before_restore_keys.contains(&header(&m).0));
        alice_used.record(&m);
        assert_eq!(
            read(&mut rng, &mut bob, &alice_addr, &m, at(30 + turn)),
            format!("new a{turn}").as_bytes()
        );
        let m = send(
            &mut rng,
            &mut bob,
            &alice_addr,
            &format!("new b{turn}"),
            at(30 + turn),
        )
        .unwrap();
        assert_eq!(
            read(&mut rng, &mut alice, &bob_addr, &m, at(30 + turn)),
            format!("new b{turn}").as_bytes()
        );
    }

    // A new contact uses the restored device's new bundle.
    let dave_addr = addr("dave", 1);
    let mut dave = Device::create(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([5; 32]),
        dave_addr.clone(),
        &mut rng,
        T0,
    )
    .unwrap();
    dave.process_bundle(&mut rng, &alice_addr, &alice_bundle)
        .unwrap();
    let m = send(&mut rng, &mut dave, &alice_addr, "hi from dave", at(40)).unwrap();
    assert_eq!(
        read(&mut rng, &mut alice, &dave_addr, &m, at(40)),
        b"hi from dave"
    );

    // The new database opens again with its own storage key, and keeps talking.
    let generation = alice.generation();
    drop(alice);
    let mut alice = Device::open(dir.db("new-phone.db"), StorageKey::from_bytes([4; 32])).unwrap();
    assert_eq!(alice.generation(), generation);
    let m = send(&mut rng, &mut alice, &bob_addr, "reopened", at(50)).unwrap();
    alice_used.record(&m);
    assert_eq!(
        read(&mut rng, &mut bob, &alice_addr, &m, at(50)),
        b"reopened"
    );
    let m = send(&mut rng, &mut bob, &alice_addr, "still here", at(50)).unwrap();
    assert_eq!(
        read(&mut rng, &mut alice, &bob_addr, &m, at(50)),
        b"still here"
    );
}

/// Every row of every table.
fn snapshot(store: &mut dyn Store) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
    let mut tx = store.transaction().unwrap();
    let mut rows = Vec::new();
    for table in Table::ALL {
        for (k, v) in tx.scan(table, &[]).unwrap() {
            rows.push((table, k, v));
        }
    }
    rows
}

fn device(rng: &mut ChaCha20Rng) -> Device {
    let mut d = Device::create(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([7; 32]),
        addr("alice", 1),
        rng,
        T0,
    )
    .unwrap();
    Published::publish(&mut d, rng, T0);
    d
}

#[test]
fn a_failed_restore_writes_nothing_and_says_why() {
    let mut rng = rng(21);
    let mut alice = device(&mut rng);
    let key = RecoveryKey::generate(&mut rng);
    let blob = alice.backup(&mut rng, &key, T0).unwrap();
    let target = MemoryStore::new();
    let restore = |blob: &[u8], key: &RecoveryKey, rng: &mut ChaCha20Rng| {
        Device::restore(
            Box::new(target.clone()),
            StorageKey::from_bytes([8; 32]),
            blob,
            key,
            rng,
            T0,
        )
        .map(|r| r.info)
    };
    let wrong = RecoveryKey::generate(&mut rng);
    assert!(matches!(
        restore(&blob, &wrong, &mut rng),
        Err(Error::Backup(BackupError::WrongKey))
    ));
    let mut flipped = blob.clone();
    *flipped.last_mut().unwrap() ^= 1;
    assert!(matches!(
        restore(&flipped, &key, &mut rng),
        Err(Error::Backup(BackupError::Tampered))
    ));
    assert!(matches!(
        restore(&blob[..40], &key, &mut rng),
        Err(Error::Backup(BackupError::Truncated { len: 40, .. }))
    ));
    assert!(matches!(
        restore(b"SQLite format 3\0", &key, &mut rng),
        Err(Error::Backup(BackupError::NotABackup))
    ));
    assert_eq!(
        Error::Backup(BackupError::WrongKey).action(),
        ratchetbox::Action::ShowToPerson
    );
    assert!(snapshot(&mut target.clone()).is_empty());

    // A store that already holds a device is not overwritten.
    let other = Device::create(
        Box::new(target.clone()),
        StorageKey::from_bytes([8; 32]),
        addr("bob", 1),
        &mut rng,
        T0,
    )
    .unwrap();
    let before = snapshot(&mut target.clone());
    match restore(&blob, &key, &mut rng) {
        Err(Error::DeviceExists(a)) => assert_eq!(a, addr("bob", 1)),
        other => panic!("expected DeviceExists, got {other:?}"),
    }
    assert_eq!(snapshot(&mut target.clone()), before);
    let _ = other.generation();
}

#[test]
fn a_backup_only_reads_and_a_restored_store_starts_one_generation_later() {
    let mut rng = rng(22);
    let store = MemoryStore::new();
    let mut alice = Device::create(
        Box::new(store.clone()),
        StorageKey::from_bytes([7; 32]),
        addr("alice", 1),
        &mut rng,
        T0,
    )
    .unwrap();
    Published::publish(&mut alice, &mut rng, T0);
    let before = snapshot(&mut store.clone());
    let key = RecoveryKey::generate(&mut rng);
    let blob = alice.backup(&mut rng, &key, at(5)).unwrap();
    assert_eq!(snapshot(&mut store.clone()), before);
    let restored = Device::restore(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([9; 32]),
        &blob,
        &key,
        &mut rng,
        at(6),
    )
    .unwrap();
    assert_eq!(restored.info.generation, alice.generation());
    assert_eq!(restored.device.generation(), alice.generation() + 1);
}

#[test]
fn a_device_restored_twice_still_refuses_its_first_restored_sessions() {
    let mut rng = rng(23);
    let mut alice = device(&mut rng);
    let mut bob = Device::create(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([2; 32]),
        addr("bob", 1),
        &mut rng,
        T0,
    )
    .unwrap();
    let mut bob_published = Published::publish(&mut bob, &mut rng, T0);
    alice
        .process_bundle(&mut rng, &addr("bob", 1), &bob_published.bundle())
        .unwrap();
    send(&mut rng, &mut alice, &addr("bob", 1), "hi", T0).unwrap();
    let key = RecoveryKey::generate(&mut rng);
    let blob = alice.backup(&mut rng, &key, T0).unwrap();
    let mut once = Device::restore(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([9; 32]),
        &blob,
        &key,
        &mut rng,
        T0,
    )
    .unwrap()
    .device;
    let blob = once.backup(&mut rng, &key, T0).unwrap();
    let mut twice = Device::restore(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([10; 32]),
        &blob,
        &key,
        &mut rng,
        T0,
    )
    .unwrap()
    .device;
    for device in [&mut once, &mut twice] {
        assert!(matches!(
            send(&mut rng, device, &addr("bob", 1), "again", T0),
            Err(Error::MissingSessions { .. })
        ));
    }
}

#[test]
fn a_passphrase_backup_restores_and_a_pin_is_refused() {
    let mut rng = rng(24);
    let mut alice = device(&mut rng);
    match alice.backup_with_passphrase(&mut rng, "123456", T0) {
        Err(Error::Backup(BackupError::WeakPassphrase(_))) => {}
        other => panic!("expected a weak passphrase, got {other:?}"),
    }
    // The device layer seals with the default parameters (64 MiB, 3 passes, 4 lanes): the
    // header says so, and opening runs them once.
    let blob = alice
        .backup_with_passphrase(&mut rng, "correct horse battery staple", T0)
        .unwrap();
    assert_eq!(&blob[28..40], [0, 1, 0, 0, 0, 0, 0, 3, 0, 0, 0, 4]);
    let restored = Device::restore_with_passphrase(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([9; 32]),
        &blob,
        "correct horse battery staple",
        &mut rng,
        T0,
    )
    .unwrap();
    assert_eq!(restored.device.identity_key(), alice.identity_key());
    // A wrong passphrase (one more Argon2id run at the default parameters).
    match Device::restore_with_passphrase(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([9; 32]),
        &blob,
        "correct horse battery stapler",
        &mut rng,
        T0,
    ) {
        Err(Error::Backup(BackupError::WrongKey)) => {}
        other => panic!("expected a wrong key, got {:?}", other.map(|r| r.info)),
    }
}

#[test]
fn after_the_peer_starts_a_session_the_restored_device_answers_never_on_a_restored_one() {
    let mut rng = rng(25);
    let alice_addr = addr("alice", 1);
    let bob_addr = addr("bob", 1);
    let mut alice = device(&mut rng);
    let mut bob = Device::create(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([2; 32]),
        bob_addr.clone(),
        &mut rng,
        T0,
    )
    .unwrap();
    let mut bob_published = Published::publish(&mut bob, &mut rng, T0);
    alice
        .process_bundle(&mut rng, &bob_addr, &bob_published.bundle())
        .unwrap();
    let m = send(&mut rng, &mut alice, &bob_addr, "hi", T0).unwrap();
    read(&mut rng, &mut bob, &alice_addr, &m, T0);
    let key = RecoveryKey::generate(&mut rng);
    let blob = alice.backup(&mut rng, &key, T0).unwrap();
    let restored = Device::restore(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([9; 32]),
        &blob,
        &key,
        &mut rng,
        at(1),
    )
    .unwrap();
    let mut alice = restored.device;
    // Bob starts a new session from the restored device's new bundle.
    let (_, bundle) = bundle_from_upload(&restored.prekey_upload);
    bob.process_bundle(&mut rng, &alice_addr, &bundle).unwrap();
    let m = send(&mut rng, &mut bob, &alice_addr, "new session", at(2)).unwrap();
    assert_eq!(
        read(&mut rng, &mut alice, &bob_addr, &m, at(2)),
        b"new session"
    );
    // Which session is current now follows the record's rules (PROTOCOL 6.7): here the
    // restored one, which Alice started and Bob never answered, precedes Bob's new one and
    // stays current (simultaneous initiation). So Alice's send asks for a bundle rather
    // than send on it; with a fresh session she answers, and Bob reads it.
    match send(&mut rng, &mut alice, &bob_addr, "answer", at(3)) {
        Err(Error::MissingSessions { addresses }) => assert_eq!(addresses, vec![bob_addr.clone()]),
        other => panic!("expected MissingSessions, got {other:?}"),
    }
    alice
        .process_bundle(&mut rng, &bob_addr, &bob_published.bundle())
        .unwrap();
    let m = send(&mut rng, &mut alice, &bob_addr, "answer", at(3)).unwrap();
    assert_eq!(read(&mut rng, &mut bob, &alice_addr, &m, at(3)), b"answer");
    let m = send(&mut rng, &mut bob, &alice_addr, "and back", at(4)).unwrap();
    assert_eq!(
        read(&mut rng, &mut alice, &bob_addr, &m, at(4)),
        b"and back"
    );
}
