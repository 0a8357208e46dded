//! Groups in the high-level `Device` layer (docs/PROTOCOL.md 16.7): the fan-out of sender
//! keys over pairwise sessions, membership changes in both directions, the group timer, and
//! nothing stored when a call fails.

mod common;
#[path = "common/server.rs"]
mod server;

use common::{T0, rng};
use rand_chacha::ChaCha20Rng;
use ratchetbox::group::{GroupError, GroupId};
use ratchetbox::{
    Action, Address, Content, Device, Error, GroupSent, MemoryStore, StorageKey, Store, Table,
    TimerChange, Timestamp,
};
use server::Published;

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

struct User {
    store: MemoryStore,
    key: [u8; 32],
    device: Device,
    published: Published,
}

impl User {
    fn address(&self) -> Address {
        self.device.address().clone()
    }
}

fn user(rng: &mut ChaCha20Rng, user_id: &str, device: u32) -> User {
    let store = MemoryStore::new();
    let key = [device as u8 + user_id.len() as u8 + 40; 32];
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

/// Sessions both ways between `a` and `b` (each starts one from the other's bundle).
fn connect(rng: &mut ChaCha20Rng, a: &mut User, b: &mut User) {
    let bundle = b.published.bundle();
    a.device.process_bundle(rng, &b.address(), &bundle).unwrap();
    let bundle = a.published.bundle();
    b.device.process_bundle(rng, &a.address(), &bundle).unwrap();
}

/// Delivers to `to` the pairwise distributions meant for it, then the group message.
fn deliver(
    rng: &mut ChaCha20Rng,
    to: &mut User,
    from: &Address,
    sent: &GroupSent,
) -> Result<Vec<u8>, Error> {
    let me = to.address();
    for d in sent.distributions.iter().filter(|d| d.to == me) {
        let carrier = to.device.receive(rng, from, &d.message, T0)?;
        assert!(carrier.content().group_distribution().is_some());
        assert!(carrier.content().body().is_empty());
    }
    let received = to.device.receive_group(rng, from, &sent.message, T0)?;
    Ok(received.content().body().to_vec())
}

fn recipients(sent: &GroupSent) -> Vec<Address> {
    sent.distributions.iter().map(|d| d.to.clone()).collect()
}

/// Alice, Bob and Carol, connected pairwise, in one group on every device.
fn three(rng: &mut ChaCha20Rng) -> (User, User, User, GroupId) {
    let mut alice = user(rng, "alice", 1);
    let mut bob = user(rng, "bob", 1);
    let mut carol = user(rng, "carol", 1);
    connect(rng, &mut alice, &mut bob);
    connect(rng, &mut alice, &mut carol);
    connect(rng, &mut bob, &mut carol);
    let all = [alice.address(), bob.address(), carol.address()];
    let group = alice.device.create_group(rng, &all).unwrap();
    bob.device.set_group_members(rng, &group, &all).unwrap();
    carol.device.set_group_members(rng, &group, &all).unwrap();
    (alice, bob, carol, group)
}

fn text(s: &str) -> Content {
    Content::new(s)
}

#[test]
fn one_group_message_for_all_and_each_sender_key_distributed_once() {
    let mut rng = rng(1);
    let (mut alice, mut bob, mut carol, group) = three(&mut rng);
    assert_eq!(
        alice.device.group_members(&group).unwrap(),
        vec![bob.address(), carol.address()]
    );
    let a = alice.address();
    let sent = alice
        .device
        .send_group(&mut rng, &group, &text("hello all"), T0)
        .unwrap();
    assert_eq!(recipients(&sent), vec![bob.address(), carol.address()]);
    assert_eq!(
        deliver(&mut rng, &mut bob, &a, &sent).unwrap(),
        b"hello all"
    );
    assert_eq!(
        deliver(&mut rng, &mut carol, &a, &sent).unwrap(),
        b"hello all"
    );
    // The key is owed to nobody now: the next message is the group message alone.
    let again = alice
        .device
        .send_group(&mut rng, &group, &text("second"), T0)
        .unwrap();
    assert!(again.distributions.is_empty());
    assert_eq!(
        deliver(&mut rng, &mut carol, &a, &again).unwrap(),
        b"second"
    );
    assert_eq!(deliver(&mut rng, &mut bob, &a, &again).unwrap(), b"second");
    // Bob's own key goes to Alice and Carol with his first message.
    let b = bob.address();
    let from_bob = bob
        .device
        .send_group(&mut rng, &group, &text("bob here"), T0)
        .unwrap();
    assert_eq!(
        recipients(&from_bob),
        vec![alice.address(), carol.address()]
    );
    assert_eq!(
        deliver(&mut rng, &mut alice, &b, &from_bob).unwrap(),
        b"bob here"
    );
    assert_eq!(
        deliver(&mut rng, &mut carol, &b, &from_bob).unwrap(),
        b"bob here"
    );
}

#[test]
fn a_removed_member_cannot_read_anything_sent_after_removal() {
    let mut rng = rng(2);
    let (mut alice, mut bob, mut carol, group) = three(&mut rng);
    let (a, b, c) = (alice.address(), bob.address(), carol.address());
    let before = alice
        .device
        .send_group(&mut rng, &group, &text("before"), T0)
        .unwrap();
    let from_bob = bob
        .device
        .send_group(&mut rng, &group, &text("bob before"), T0)
        .unwrap();
    deliver(&mut rng, &mut carol, &a, &before).unwrap();
    deliver(&mut rng, &mut bob, &a, &before).unwrap();
    deliver(&mut rng, &mut carol, &b, &from_bob).unwrap();
    deliver(&mut rng, &mut alice, &b, &from_bob).unwrap();
    // Carol is removed on the remaining devices.
    let remaining = [a.clone(), b.clone()];
    alice
        .device
        .set_group_members(&mut rng, &group, &remaining)
        .unwrap();
    bob.device
        .set_group_members(&mut rng, &group, &remaining)
        .unwrap();

    // Both rotate: a new key, sent to Bob (who had the old one) and not to Carol.
    let after = alice
        .device
        .send_group(&mut rng, &group, &text("after"), T0)
        .unwrap();
    assert_eq!(recipients(&after), vec![b.clone()]);
    let bob_after = bob
        .device
        .send_group(&mut rng, &group, &text("bob after"), T0)
        .unwrap();
    assert_eq!(recipients(&bob_after), vec![a.clone()]);
    assert_eq!(deliver(&mut rng, &mut bob, &a, &after).unwrap(), b"after");
    assert_eq!(
        deliver(&mut rng, &mut alice, &b, &bob_after).unwrap(),
        b"bob after"
    );

    // Carol holds only the old keys: the new messages name keys she never received.
    for (from, sent) in [(&a, &after), (&b, &bob_after)] {
        let snapshot_before = snapshot(&mut carol.store);
        match carol
            .device
            .receive_group(&mut rng, from, &sent.message, T0)
        {
            Err(
                e @ Error::Group {
                    source: GroupError::UnknownSenderKey { .. },
                    ..
                },
            ) => assert_eq!(e.action(), Action::RetryLater),
            other => panic!("{other:?}"),
        }
        assert_eq!(snapshot(&mut carol.store), snapshot_before);
    }
    // And what Carol still sends is refused by the members.
    let from_carol = carol
        .device
        .send_group(&mut rng, &group, &text("still here?"), T0)
        .unwrap();
    match alice
        .device
        .receive_group(&mut rng, &c, &from_carol.message, T0)
    {
        Err(e @ Error::NotGroupMember { .. }) => assert_eq!(e.action(), Action::DropForged),
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_added_member_cannot_read_earlier_messages() {
    let mut rng = rng(3);
    let (mut alice, mut bob, _carol, group) = three(&mut rng);
    let a = alice.address();
    let early = alice
        .device
        .send_group(&mut rng, &group, &text("early"), T0)
        .unwrap();
    deliver(&mut rng, &mut bob, &a, &early).unwrap();

    // Dave (a new user, or a member's new device: the same change) joins.
    let mut dave = user(&mut rng, "bob", 2);
    connect(&mut rng, &mut alice, &mut dave);
    let mut members = alice.device.group_members(&group).unwrap();
    members.push(dave.address());
    alice
        .device
        .set_group_members(&mut rng, &group, &members)
        .unwrap();
    members.push(a.clone());
    dave.device
        .set_group_members(&mut rng, &group, &members)
        .unwrap();

    let late = alice
        .device
        .send_group(&mut rng, &group, &text("late"), T0)
        .unwrap();
    // Only Dave lacked the key: no rotation for an addition.
    assert_eq!(recipients(&late), vec![dave.address()]);
    assert_eq!(deliver(&mut rng, &mut dave, &a, &late).unwrap(), b"late");
    match dave.device.receive_group(&mut rng, &a, &early.message, T0) {
        Err(
            e @ Error::Group {
                source:
                    GroupError::BeforeDistribution {
                        iteration: 0,
                        first: 1,
                        ..
                    },
                ..
            },
        ) => assert_eq!(e.action(), Action::Ignore),
        other => panic!("{other:?}"),
    }
    assert_eq!(deliver(&mut rng, &mut bob, &a, &late).unwrap(), b"late");
}

#[test]
fn group_timers_converge_whatever_the_order() {
    let mut rng = rng(4);
    let (mut alice, mut bob, mut carol, group) = three(&mut rng);
    let (a, c) = (alice.address(), carol.address());
    // Alice and Carol change the timer at the same time (both to version 1).
    let from_alice = alice
        .device
        .set_group_timer(&mut rng, &group, 3600, T0)
        .unwrap();
    let from_carol = carol
        .device
        .set_group_timer(&mut rng, &group, 60, T0)
        .unwrap();
    assert_eq!(
        from_alice.expires_at,
        Some(Timestamp::from_unix_secs(T0.as_unix_secs() + 3600))
    );
    // Bob hears Alice first, Alice hears Carol, Carol hears Alice.
    deliver(&mut rng, &mut bob, &a, &from_alice).unwrap();
    let received = bob
        .device
        .receive_group(&mut rng, &c, &from_carol.message, T0);
    assert!(
        matches!(
            received,
            Err(Error::Group {
                source: GroupError::UnknownSenderKey { .. },
                ..
            })
        ),
        "Carol's key has not reached Bob yet: {received:?}"
    );
    deliver(&mut rng, &mut bob, &c, &from_carol).unwrap();
    deliver(&mut rng, &mut alice, &c, &from_carol).unwrap();
    for d in from_alice.distributions.iter().filter(|d| d.to == c) {
        carol.device.receive(&mut rng, &a, &d.message, T0).unwrap();
    }
    let received = carol
        .device
        .receive_group(&mut rng, &a, &from_alice.message, T0)
        .unwrap();
    assert_eq!(received.timer_change(), TimerChange::Unchanged);
    // Equal versions: the shorter timer wins everywhere.
    for u in [&mut alice, &mut bob, &mut carol] {
        let timer = u.device.group_timer(&group).unwrap();
        assert_eq!((timer.seconds(), timer.version()), (60, 1));
    }
    // The next message carries it.
    let next = alice
        .device
        .send_group(&mut rng, &group, &text("t"), T0)
        .unwrap();
    assert_eq!(
        next.expires_at,
        Some(Timestamp::from_unix_secs(T0.as_unix_secs() + 60))
    );
}

#[test]
fn failed_group_calls_store_nothing() {
    let mut rng = rng(5);
    let (mut alice, mut bob, _carol, group) = three(&mut rng);
    let a = alice.address();
    let sent = alice
        .device
        .send_group(&mut rng, &group, &text("once"), T0)
        .unwrap();
    deliver(&mut rng, &mut bob, &a, &sent).unwrap();
    let before = snapshot(&mut bob.store);
    // A duplicate.
    match bob.device.receive_group(&mut rng, &a, &sent.message, T0) {
        Err(
            e @ Error::Group {
                source: GroupError::Duplicate { iteration: 0, .. },
                ..
            },
        ) => assert_eq!(e.action(), Action::Ignore),
        other => panic!("{other:?}"),
    }
    // A forged one (a byte of the ciphertext changed).
    let mut forged = alice
        .device
        .send_group(&mut rng, &group, &text("forge me"), T0)
        .unwrap()
        .message;
    let at = forged.len() - 70;
    forged[at] ^= 1;
    match bob.device.receive_group(&mut rng, &a, &forged, T0) {
        Err(
            e @ Error::Group {
                source: GroupError::ForgedSignature,
                ..
            },
        ) => assert_eq!(e.action(), Action::DropForged),
        other => panic!("{other:?}"),
    }
    // A truncated one.
    match bob
        .device
        .receive_group(&mut rng, &a, &sent.message[..10], T0)
    {
        Err(e @ Error::Decode(_)) => assert_eq!(e.action(), Action::DropForged),
        other => panic!("{other:?}"),
    }
    // An unknown group.
    let mut other = sent.message.clone();
    other[3] ^= 1; // inside the group id
    match bob.device.receive_group(&mut rng, &a, &other, T0) {
        Err(Error::UnknownGroup(_)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(snapshot(&mut bob.store), before);

    // A send that lacks a session stores nothing either.
    let mut erin = user(&mut rng, "erin", 1);
    let mut members = alice.device.group_members(&group).unwrap();
    members.push(erin.address());
    alice
        .device
        .set_group_members(&mut rng, &group, &members)
        .unwrap();
    let before = snapshot(&mut alice.store);
    match alice.device.send_group(&mut rng, &group, &text("x"), T0) {
        Err(Error::MissingSessions { addresses }) => assert_eq!(addresses, vec![erin.address()]),
        other => panic!("{other:?}"),
    }
    assert_eq!(snapshot(&mut alice.store), before);
    connect(&mut rng, &mut alice, &mut erin);
    let sent = alice
        .device
        .send_group(&mut rng, &group, &text("x"), T0)
        .unwrap();
    assert_eq!(recipients(&sent), vec![erin.address()]);
}

#[test]
fn group_state_survives_reopening_the_store() {
    let mut rng = rng(6);
    let (mut alice, mut bob, _carol, group) = three(&mut rng);
    let a = alice.address();
    let first = alice
        .device
        .send_group(&mut rng, &group, &text("1"), T0)
        .unwrap();
    let second = alice
        .device
        .send_group(&mut rng, &group, &text("2"), T0)
        .unwrap();
    deliver(&mut rng, &mut bob, &a, &second).unwrap_err();
    // The key came with the first message: deliver its distribution, then read out of order.
    let bob_address = bob.address();
    for d in first.distributions.iter().filter(|d| d.to == bob_address) {
        bob.device.receive(&mut rng, &a, &d.message, T0).unwrap();
    }
    assert_eq!(
        bob.device
            .receive_group(&mut rng, &a, &second.message, T0)
            .unwrap()
            .content()
            .body(),
        b"2"
    );
    let mut bob =
        Device::open(Box::new(bob.store.clone()), StorageKey::from_bytes(bob.key)).unwrap();
    let mut alice_again = Device::open(
        Box::new(alice.store.clone()),
        StorageKey::from_bytes(alice.key),
    )
    .unwrap();
    assert_eq!(
        bob.receive_group(&mut rng, &a, &first.message, T0)
            .unwrap()
            .content()
            .body(),
        b"1"
    );
    let third = alice_again
        .send_group(&mut rng, &group, &text("3"), T0)
        .unwrap();
    assert!(third.distributions.is_empty());
    assert_eq!(
        bob.receive_group(&mut rng, &a, &third.message, T0)
            .unwrap()
            .content()
            .body(),
        b"3"
    );
}
