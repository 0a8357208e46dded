//! The high-level `Device`: routing by address, device lists, persistence across reopening,
//! several handles on one store, and nothing stored when a call fails.

mod common;
#[path = "common/server.rs"]
mod server;

use common::{T0, rng};
use rand_chacha::ChaCha20Rng;
use ratchetbox::{
    Action, Address, Content, DecryptError, Device, Error, MemoryStore, StorageKey, Store, Table,
};
use server::Published;

type Snapshot = Vec<(Table, Vec<u8>, Vec<u8>)>;

/// Every row of every table, read through the `Store` trait.
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

struct User {
    store: MemoryStore,
    key: [u8; 32],
    device: Device,
    /// What the server holds of the device's prekeys.
    published: Published,
}

fn user(rng: &mut ChaCha20Rng, user_id: &str, device: u32) -> User {
    let store = MemoryStore::new();
    let key = [device as u8 + user_id.len() as u8; 32];
    let mut device = Device::create(
        Box::new(store.clone()),
        StorageKey::from_bytes(key),
        addr(user_id, device),
        rng,
        T0,
    )
    .unwrap();
    let published = Published::publish(&mut device, rng, T0);
    User {
        store,
        key,
        device,
        published,
    }
}

/// `a` starts a session with `b` from a bundle of `b`.
fn connect(rng: &mut ChaCha20Rng, a: &mut User, b: &mut User) {
    let bundle = b.published.bundle();
    let to = b.device.address().clone();
    a.device.process_bundle(rng, &to, &bundle).unwrap();
}

#[test]
fn a_message_reaches_every_device_of_the_peer_and_the_senders_other_devices() {
    let mut rng = rng(1);
    let mut alice1 = user(&mut rng, "alice", 1);
    let mut alice2 = user(&mut rng, "alice", 2);
    let mut bob1 = user(&mut rng, "bob", 1);
    let mut bob2 = user(&mut rng, "bob", 2);
    connect(&mut rng, &mut alice1, &mut bob1);
    connect(&mut rng, &mut alice1, &mut bob2);
    connect(&mut rng, &mut alice1, &mut alice2);

    let sent = alice1
        .device
        .send(
            &mut rng,
            "bob",
            &[1, 2],
            &[1, 2],
            &Content::new("hello"),
            T0,
        )
        .unwrap();
    let to: Vec<String> = sent.messages.iter().map(|m| m.to.to_string()).collect();
    assert_eq!(to, ["bob.1", "bob.2", "alice.2"]);
    for (out, receiver) in sent
        .messages
        .iter()
        .zip([&mut bob1, &mut bob2, &mut alice2])
    {
        let got = receiver
            .device
            .receive(&mut rng, &addr("alice", 1), &out.message, T0)
            .unwrap();
        assert_eq!(got.content().body(), b"hello");
    }
    // Each message is for its device only: bob.2's initial message names bob.2's one-time
    // prekey (id 1, which bob.1's own id 1 was already used up by bob.1's message).
    let err = bob1
        .device
        .receive(&mut rng, &addr("alice", 1), &sent.messages[1].message, T0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decrypt {
                source: DecryptError::OneTimePreKeyUsed { .. },
                ..
            }
        ),
        "{err:?}"
    );
    // Once the sessions run (both Bob devices replied), a message routed to the wrong device
    // does not authenticate.
    for bob in [&mut bob1, &mut bob2] {
        let reply = bob
            .device
            .send(&mut rng, "alice", &[1], &[], &Content::new("ok"), T0)
            .unwrap();
        let from = bob.device.address().clone();
        alice1
            .device
            .receive(&mut rng, &from, &reply.messages[0].message, T0)
            .unwrap();
    }
    let sent = alice1
        .device
        .send(&mut rng, "bob", &[1, 2], &[], &Content::new("again"), T0)
        .unwrap();
    let err = bob1
        .device
        .receive(&mut rng, &addr("alice", 1), &sent.messages[1].message, T0)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Decrypt {
                source: DecryptError::AuthenticationFailed,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(err.action(), Action::DropForged);
}

#[test]
fn a_listed_device_without_session_is_reported_and_nothing_is_stored() {
    let mut rng = rng(2);
    let mut alice = user(&mut rng, "alice", 1);
    let mut bob1 = user(&mut rng, "bob", 1);
    connect(&mut rng, &mut alice, &mut bob1);
    let before = snapshot(&mut alice.store);
    let generation = alice.device.generation();

    let err = alice
        .device
        .send(&mut rng, "bob", &[1, 2, 3], &[7], &Content::new("x"), T0)
        .unwrap_err();
    match &err {
        Error::MissingSessions { addresses } => {
            let names: Vec<String> = addresses.iter().map(ToString::to_string).collect();
            assert_eq!(names, ["bob.2", "bob.3", "alice.7"]);
        }
        other => panic!("expected MissingSessions, got {other:?}"),
    }
    assert_eq!(err.action(), Action::RepairSession);
    assert_eq!(snapshot(&mut alice.store), before);
    assert_eq!(alice.device.generation(), generation);
}

#[test]
fn a_device_missing_from_the_list_loses_its_session() {
    let mut rng = rng(3);
    let mut alice = user(&mut rng, "alice", 1);
    let mut bob1 = user(&mut rng, "bob", 1);
    let mut bob2 = user(&mut rng, "bob", 2);
    connect(&mut rng, &mut alice, &mut bob1);
    connect(&mut rng, &mut alice, &mut bob2);
    assert_eq!(
        alice.device.sessions().unwrap(),
        [addr("bob", 1), addr("bob", 2)]
    );

    // The server now lists only bob.2: bob.1 was removed.
    let sent = alice
        .device
        .send(&mut rng, "bob", &[2], &[], &Content::new("x"), T0)
        .unwrap();
    assert_eq!(sent.messages.len(), 1);
    assert_eq!(sent.messages[0].to, addr("bob", 2));
    assert_eq!(alice.device.sessions().unwrap(), [addr("bob", 2)]);
    // And it stays gone after reopening the store.
    let mut reopened = Device::open(
        Box::new(alice.store.clone()),
        StorageKey::from_bytes(alice.key),
    )
    .unwrap();
    assert_eq!(reopened.sessions().unwrap(), [addr("bob", 2)]);
}

#[test]
fn a_conversation_continues_after_reopening_both_stores() {
    let mut rng = rng(4);
    let mut alice = user(&mut rng, "alice", 1);
    let mut bob = user(&mut rng, "bob", 1);
    connect(&mut rng, &mut alice, &mut bob);
    let first = alice
        .device
        .send(&mut rng, "bob", &[1], &[], &Content::new("one"), T0)
        .unwrap();
    bob.device
        .receive(&mut rng, &addr("alice", 1), &first.messages[0].message, T0)
        .unwrap();

    // Both apps restart.
    let mut alice2 = Device::open(
        Box::new(alice.store.clone()),
        StorageKey::from_bytes(alice.key),
    )
    .unwrap();
    let mut bob2 =
        Device::open(Box::new(bob.store.clone()), StorageKey::from_bytes(bob.key)).unwrap();
    assert_eq!(alice2.identity_key(), alice.device.identity_key());
    let reply = bob2
        .send(&mut rng, "alice", &[1], &[], &Content::new("two"), T0)
        .unwrap();
    let got = alice2
        .receive(&mut rng, &addr("bob", 1), &reply.messages[0].message, T0)
        .unwrap();
    assert_eq!(got.content().body(), b"two");

    // The initial message, replayed after the restart, is refused: the account (its
    // one-time prekey consumed) was stored with the record.
    let err = bob2
        .receive(&mut rng, &addr("alice", 1), &first.messages[0].message, T0)
        .unwrap_err();
    assert_eq!(err.action(), Action::Ignore, "{err:?}");
}

#[test]
fn a_wrong_storage_key_is_refused() {
    let mut rng = rng(5);
    let alice = user(&mut rng, "alice", 1);
    let err = Device::open(
        Box::new(alice.store.clone()),
        StorageKey::from_bytes([9; 32]),
    )
    .unwrap_err();
    assert!(matches!(err, Error::StoredState { .. }), "{err:?}");
    assert_eq!(err.action(), Action::ShowToPerson);
}

#[test]
fn two_handles_on_one_store_never_fork() {
    let mut rng = rng(6);
    let mut alice = user(&mut rng, "alice", 1);
    let mut bob = user(&mut rng, "bob", 1);
    connect(&mut rng, &mut alice, &mut bob);
    // The app and its notification extension: two handles on Bob's store.
    let mut ext =
        Device::open(Box::new(bob.store.clone()), StorageKey::from_bytes(bob.key)).unwrap();
    let mut messages = Vec::new();
    for i in 0..6 {
        let sent = alice
            .device
            .send(
                &mut rng,
                "bob",
                &[1],
                &[],
                &Content::new(format!("m{i}")),
                T0,
            )
            .unwrap();
        messages.push(sent.messages[0].message.clone());
    }
    // Alternate the handles: each sees what the other stored.
    for (i, m) in messages.iter().enumerate() {
        let handle = if i % 2 == 0 {
            &mut bob.device
        } else {
            &mut ext
        };
        let got = handle.receive(&mut rng, &addr("alice", 1), m, T0).unwrap();
        assert_eq!(got.content().body(), format!("m{i}").as_bytes());
    }
    // Every message decrypted exactly once: a redelivery is a duplicate on either handle.
    for handle in [&mut bob.device, &mut ext] {
        let err = handle
            .receive(&mut rng, &addr("alice", 1), &messages[3], T0)
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::Decrypt {
                    source: DecryptError::Duplicate { .. },
                    ..
                }
            ),
            "{err:?}"
        );
    }
    // Both handles send on the same session without forking it.
    let a = bob
        .device
        .send(&mut rng, "alice", &[1], &[], &Content::new("from app"), T0)
        .unwrap();
    let b = ext
        .send(&mut rng, "alice", &[1], &[], &Content::new("from ext"), T0)
        .unwrap();
    for (sent, body) in [(&a, "from app"), (&b, "from ext")] {
        let got = alice
            .device
            .receive(&mut rng, &addr("bob", 1), &sent.messages[0].message, T0)
            .unwrap();
        assert_eq!(got.content().body(), body.as_bytes());
    }
}

#[test]
fn a_store_rolled_back_under_an_open_handle_is_refused() {
    let mut rng = rng(7);
    let mut alice = user(&mut rng, "alice", 1);
    let mut bob = user(&mut rng, "bob", 1);
    connect(&mut rng, &mut alice, &mut bob);
    let old = snapshot(&mut alice.store);
    alice
        .device
        .send(&mut rng, "bob", &[1], &[], &Content::new("x"), T0)
        .unwrap();
    let seen = alice.device.generation();
    // Someone puts the old rows back.
    {
        let mut tx = alice.store.transaction().unwrap();
        for table in Table::ALL {
            tx.delete_prefix(table, &[]).unwrap();
        }
        for (t, k, v) in &old {
            tx.put(*t, k, v).unwrap();
        }
        tx.commit().unwrap();
    }
    let err = alice
        .device
        .send(&mut rng, "bob", &[1], &[], &Content::new("y"), T0)
        .unwrap_err();
    match err {
        Error::RolledBack { found, seen: s } => {
            assert_eq!((found, s), (seen - 1, seen));
        }
        other => panic!("expected RolledBack, got {other:?}"),
    }
    // A new handle cannot know, unless the app kept the generation elsewhere.
    let mut fresh = Device::open(
        Box::new(alice.store.clone()),
        StorageKey::from_bytes(alice.key),
    )
    .unwrap();
    let err = fresh.check_generation(seen).unwrap_err();
    assert!(matches!(err, Error::RolledBack { .. }), "{err:?}");
    assert_eq!(err.action(), Action::ShowToPerson);
}

#[test]
fn own_address_is_refused() {
    let mut rng = rng(8);
    let mut alice = user(&mut rng, "alice", 1);
    let err = alice
        .device
        .receive(&mut rng, &addr("alice", 1), b"\x01", T0)
        .unwrap_err();
    assert!(matches!(err, Error::OwnAddress(_)), "{err:?}");
    assert_eq!(err.action(), Action::CallerBug);
}

#[test]
fn a_timer_set_by_one_device_of_the_peer_applies_to_all_of_its_devices() {
    let mut rng = rng(9);
    let mut alice = user(&mut rng, "alice", 1);
    let mut alice2 = user(&mut rng, "alice", 2);
    let mut bob1 = user(&mut rng, "bob", 1);
    let mut bob2 = user(&mut rng, "bob", 2);
    connect(&mut rng, &mut alice, &mut bob1);
    connect(&mut rng, &mut alice, &mut bob2);
    connect(&mut rng, &mut alice, &mut alice2);
    connect(&mut rng, &mut bob1, &mut alice);

    // bob.1 turns on a one-hour timer in its conversation with alice.1.
    let update = bob1
        .device
        .set_expiry_timer(&mut rng, "alice", &[1], &[], 3600, T0)
        .unwrap();
    assert_eq!(update.expires_at, Some(T0.saturating_add_secs(3600)));
    let got = alice
        .device
        .receive(&mut rng, &addr("bob", 1), &update.messages[0].message, T0)
        .unwrap();
    assert_eq!(got.timer().seconds(), 3600);
    assert_eq!(alice.device.expiry_timer("bob").unwrap().seconds(), 3600);

    // Alice's next message goes to both Bob devices and her own other device, all under the
    // conversation's timer, although bob.2's session never saw the change.
    let sent = alice
        .device
        .send(&mut rng, "bob", &[1, 2], &[2], &Content::new("hi"), T0)
        .unwrap();
    assert_eq!(sent.expires_at, Some(T0.saturating_add_secs(3600)));
    for (out, receiver) in sent
        .messages
        .iter()
        .zip([&mut bob1, &mut bob2, &mut alice2])
    {
        let got = receiver
            .device
            .receive(&mut rng, &addr("alice", 1), &out.message, T0)
            .unwrap();
        assert_eq!(got.timer().seconds(), 3600, "to {}", out.to);
        assert_eq!(got.timer().version(), 1, "to {}", out.to);
    }
    assert_eq!(bob2.device.expiry_timer("alice").unwrap().seconds(), 3600);

    // Turning it off is a change (version 2) that every device adopts.
    let off = alice
        .device
        .set_expiry_timer(&mut rng, "bob", &[1, 2], &[], 0, T0)
        .unwrap();
    assert_eq!(off.expires_at, None);
    for (out, receiver) in off.messages.iter().zip([&mut bob1, &mut bob2]) {
        let got = receiver
            .device
            .receive(&mut rng, &addr("alice", 1), &out.message, T0)
            .unwrap();
        assert_eq!((got.timer().seconds(), got.timer().version()), (0, 2));
        assert!(got.content().body().is_empty());
    }
    // An out-of-range timer is the caller's bug, and nothing is stored.
    let before = snapshot(&mut alice.store);
    let err = alice
        .device
        .set_expiry_timer(&mut rng, "bob", &[1, 2], &[], u32::MAX, T0)
        .unwrap_err();
    assert!(matches!(err, Error::Timer(_)), "{err:?}");
    assert_eq!(err.action(), Action::CallerBug);
    assert_eq!(snapshot(&mut alice.store), before);
}
