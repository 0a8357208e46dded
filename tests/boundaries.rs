//! Boundaries no ordinary conversation reaches: a chain counter at `u32::MAX` (through a
//! crafted persisted state), the clock going backwards around prekey rotation, two copies of
//! one state that both keep sending, and an account restored from an older copy.
//! docs/TESTING.md says what each test pins down; docs/PROTOCOL.md sections 3.2 and 6.3 say
//! what the code does at each boundary.

mod common;
#[path = "common/session_state.rs"]
mod session_state;

use common::pb::{self, Body};
use common::{Pair, Peer, Side, T0, rng};
use ratchetbox::{
    Account, DecryptError, EncryptError, SessionConfig, SessionRecord, SignedPreKeyId, Timestamp,
};
use session_state::{decode_record, edit_current_ratchet};

const DAY: u64 = 86_400;

/// The header fields of a message: (ratchet key, counter, previous counter, nonce).
fn header(wire: &[u8]) -> (Vec<u8>, u32, u32, Vec<u8>) {
    let mut message: pb::Message = pb::decode(wire);
    let r = message.ratchet_mut();
    (
        r.ratchet_key.clone(),
        r.counter,
        r.previous_counter,
        r.nonce.clone(),
    )
}

/// The ciphertext (with its tag) of a message.
fn ciphertext(wire: &[u8]) -> Vec<u8> {
    let mut message: pb::Message = pb::decode(wire);
    message.ratchet_mut().ciphertext.clone()
}

/// Replaces a peer's record by `bytes`, which must restore.
fn restore_record(peer: &mut Peer, bytes: &[u8]) {
    peer.record = SessionRecord::from_bytes(bytes).expect("the crafted record restores");
}

/// The persisted sending and receiving counters of a peer's current session.
fn counters(peer: &Peer) -> (Option<u32>, Option<u32>) {
    let state = decode_record(&peer.record.to_bytes());
    let ratchet = state.current.unwrap().ratchet.unwrap();
    (
        ratchet.sending.map(|s| s.counter),
        ratchet.receiving.map(|r| r.counter),
    )
}

/// An established pair in which Alice's sending chain and Bob's matching receiving chain
/// have been moved, by editing their persisted state, to counter `at`: both keep their chain
/// keys, so the next message Alice sends carries counter `at` and Bob decrypts it.
fn pair_with_chain_at(seed: u64, at: u32) -> Pair {
    let mut pair = Pair::established(seed);
    pair.exchange(Side::Alice, b"opens Alice's second sending chain");
    assert_eq!(counters(&pair.alice).0, Some(1));
    assert_eq!(counters(&pair.bob).1, Some(1));
    let alice = edit_current_ratchet(&pair.alice.record.to_bytes(), |r| {
        r.sending.as_mut().expect("a sending chain").counter = at;
    });
    let bob = edit_current_ratchet(&pair.bob.record.to_bytes(), |r| {
        r.receiving.as_mut().expect("a receiving chain").counter = at;
    });
    restore_record(&mut pair.alice, &alice);
    restore_record(&mut pair.bob, &bob);
    pair
}

// ---------------------------------------------------------------------------------------
// Counters at 2^32 - 1
// ---------------------------------------------------------------------------------------

/// The last message of a chain carries counter 2^32 - 2; the sender's counter then stands at
/// 2^32 - 1 and every further `encrypt` fails with `ChainExhausted`, leaving the record
/// byte for byte as it was, until the peer's reply starts a new chain.
#[test]
fn a_sending_chain_ends_at_counter_2_pow_32_minus_2_then_is_exhausted() {
    let mut pair = pair_with_chain_at(1, u32::MAX - 1);

    let last = pair.send(Side::Alice, b"the last message of the chain");
    assert_eq!(header(&last).1, u32::MAX - 1);
    assert_eq!(counters(&pair.alice).0, Some(u32::MAX));
    assert_eq!(
        pair.receive(Side::Bob, &last).unwrap(),
        b"the last message of the chain"
    );
    assert_eq!(counters(&pair.bob).1, Some(u32::MAX));

    for _ in 0..2 {
        let before = pair.alice.record.to_bytes().to_vec();
        assert_eq!(
            pair.alice.record.encrypt(&mut pair.rng, b"one too many"),
            Err(EncryptError::ChainExhausted)
        );
        assert_eq!(
            before,
            pair.alice.record.to_bytes().to_vec(),
            "a refused encrypt changed the record"
        );
    }
    // Persisting does not reset the counter.
    pair.alice.persist_and_restore();
    assert_eq!(
        pair.alice.record.encrypt(&mut pair.rng, b"one too many"),
        Err(EncryptError::ChainExhausted)
    );

    // Bob's reply lets Alice start a new chain, whose first message says the previous
    // chain had 2^32 - 1 messages.
    pair.exchange(Side::Bob, b"a reply");
    let next = pair.send(Side::Alice, b"a new chain");
    let (_, counter, previous_counter, _) = header(&next);
    assert_eq!((counter, previous_counter), (0, u32::MAX));
    assert_eq!(pair.receive(Side::Bob, &next).unwrap(), b"a new chain");
    pair.exchange(Side::Alice, b"and the conversation goes on");
}

/// A receiving chain at 2^32 - 1 has received the last message a genuine sender can send:
/// a message claiming counter 2^32 - 1 is refused as `AuthenticationFailed` (no sender ever
/// sends it) without any key derivation, a replay of the last message is a `Duplicate`,
/// and the state is unchanged either way.
#[test]
fn a_receiving_chain_at_2_pow_32_minus_1_refuses_a_higher_counter() {
    let mut pair = pair_with_chain_at(2, u32::MAX - 1);
    let last = pair.send(Side::Alice, b"last");
    pair.receive(Side::Bob, &last).unwrap();
    assert_eq!(counters(&pair.bob).1, Some(u32::MAX));

    let beyond = pb::edit_message(&last, |m| m.ratchet_mut().counter = u32::MAX);
    assert_eq!(pair.bob.reject(&beyond), DecryptError::AuthenticationFailed);
    assert_eq!(
        pair.bob.reject(&last),
        DecryptError::Duplicate {
            counter: u32::MAX - 1
        }
    );
    // Also on a receiving chain one below the top: counter 2^32 - 1 would leave the chain's
    // next counter past u32::MAX, so it is refused before any key is derived.
    let mut pair = pair_with_chain_at(3, u32::MAX - 1);
    let last = pair.send(Side::Alice, b"last");
    let beyond = pb::edit_message(&last, |m| m.ratchet_mut().counter = u32::MAX);
    assert_eq!(pair.bob.reject(&beyond), DecryptError::AuthenticationFailed);
    assert_eq!(pair.receive(Side::Bob, &last).unwrap(), b"last");
}

/// Skipped keys at the top of the counter range: messages 2^32 - 4 .. 2^32 - 2 delivered
/// out of order, the last one only after the chain was finished by a new chain whose
/// previous counter is 2^32 - 1.
#[test]
fn skipped_keys_at_the_top_of_the_counter_range_are_stored_and_used() {
    let mut pair = pair_with_chain_at(4, u32::MAX - 3);
    let a = pair.send(Side::Alice, b"a");
    let b = pair.send(Side::Alice, b"b");
    let c = pair.send(Side::Alice, b"c");
    assert_eq!(header(&c).1, u32::MAX - 1);
    assert_eq!(
        pair.alice.record.encrypt(&mut pair.rng, b"d"),
        Err(EncryptError::ChainExhausted)
    );
    // b first: the key of a is stored.
    assert_eq!(pair.receive(Side::Bob, &b).unwrap(), b"b");
    assert_eq!(pair.receive(Side::Bob, &a).unwrap(), b"a");
    assert_eq!(
        pair.bob.reject(&a),
        DecryptError::Duplicate {
            counter: u32::MAX - 3
        }
    );
    // c is held back; the new chain's first message makes Bob store c's key.
    pair.exchange(Side::Bob, b"reply");
    pair.exchange(Side::Alice, b"new chain");
    assert_eq!(pair.receive(Side::Bob, &c).unwrap(), b"c");
    assert_eq!(
        pair.bob.reject(&c),
        DecryptError::Duplicate {
            counter: u32::MAX - 1
        }
    );
}

// ---------------------------------------------------------------------------------------
// The clock going backwards around prekey rotation
// ---------------------------------------------------------------------------------------

/// Bob's clock jumps back a year just as he rotates: the new prekeys are stamped a year
/// before the ones they replace. When the clock is right again an hour later, the replaced
/// prekeys must still be there for the whole grace period, counted from when they were
/// last known current (their own creation time), not deleted at once because their
/// successors look a year old.
#[test]
fn a_rotation_stamped_in_the_past_does_not_cut_the_grace_period_short() {
    let mut r = rng(10);
    let mut alice = Peer::new(&mut r, SessionConfig::default());
    let mut bob = Account::new(&mut r, T0);
    // Alice fetched the bundle before the rotation; her first message is in flight.
    let bundle = bob.prekey_bundle(None, None).unwrap();
    alice
        .record
        .initiate(&mut r, &alice.account, &bundle)
        .unwrap();
    let in_flight = alice
        .record
        .encrypt(&mut r, b"sent before the rotation")
        .unwrap();

    let a_year_ago = T0.saturating_sub_secs(365 * DAY);
    let spk = bob
        .rotate_signed_prekey(&mut r, a_year_ago)
        .unwrap()
        .clone();
    assert_eq!(
        spk.created_at(),
        a_year_ago,
        "stamped with the clock as given"
    );
    let kem = bob
        .rotate_last_resort_kem_prekey(&mut r, a_year_ago)
        .unwrap()
        .clone();
    assert_eq!(kem.created_at(), a_year_ago);

    let grace = 7 * DAY;
    let an_hour_later = T0.saturating_add_secs(3_600);
    assert_eq!(bob.remove_replaced_prekeys(an_hour_later, grace), 0);
    let mut copy = Account::from_bytes(&bob.to_bytes()).unwrap();
    assert_eq!(
        SessionRecord::new()
            .decrypt(&mut copy, &in_flight, an_hour_later)
            .unwrap(),
        b"sent before the rotation"
    );
    // One second before the end of the grace period (counted from T0) they are kept ...
    let end = T0.saturating_add_secs(grace);
    assert_eq!(
        bob.remove_replaced_prekeys(end.saturating_sub_secs(1), grace),
        0
    );
    // ... and at its end both are deleted; the message then names an unknown prekey.
    assert_eq!(bob.remove_replaced_prekeys(end, grace), 2);
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &in_flight, end),
        Err(DecryptError::UnknownSignedPreKey { id: 1 })
    );
    assert_eq!(bob.signed_prekey(), &spk);
    assert_eq!(bob.last_resort_kem_prekey(), &kem);
}

/// A clock that reads earlier than every prekey (even the epoch) deletes nothing, with any
/// grace period, and extreme values neither panic nor wrap around.
#[test]
fn removal_with_a_clock_behind_every_prekey_deletes_nothing() {
    let mut r = rng(11);
    let mut bob = Account::new(&mut r, T0);
    bob.rotate_signed_prekey(&mut r, T0.saturating_add_secs(DAY))
        .unwrap();
    bob.rotate_last_resort_kem_prekey(&mut r, T0.saturating_add_secs(DAY))
        .unwrap();
    let before = bob.to_bytes().to_vec();
    for now in [Timestamp::EPOCH, T0, T0.saturating_add_secs(DAY - 1)] {
        for grace in [0, 1, DAY, u64::MAX] {
            assert_eq!(
                bob.remove_replaced_prekeys(now, grace),
                0,
                "{now:?} {grace}"
            );
        }
    }
    // A grace period so long that the deadline saturates at Timestamp::MAX keeps them even
    // then.
    assert_eq!(bob.remove_replaced_prekeys(Timestamp::MAX, u64::MAX), 0);
    assert_eq!(before, bob.to_bytes().to_vec(), "nothing was deleted");
    // With the clock right again, grace 0 deletes both replaced prekeys.
    assert_eq!(
        bob.remove_replaced_prekeys(T0.saturating_add_secs(DAY), 0),
        2
    );
}

/// Rotations at the epoch, at `Timestamp::MAX` and back again: no panic, every prekey is
/// stamped with the clock as given, and a bundle of each verifies and starts a session.
#[test]
fn rotations_at_extreme_and_decreasing_times_work() {
    let mut r = rng(12);
    let mut bob = Account::new(&mut r, T0);
    for now in [Timestamp::EPOCH, Timestamp::MAX, T0, Timestamp::EPOCH] {
        assert_eq!(
            bob.rotate_signed_prekey(&mut r, now).unwrap().created_at(),
            now
        );
        assert_eq!(
            bob.rotate_last_resort_kem_prekey(&mut r, now)
                .unwrap()
                .created_at(),
            now
        );
        let mut alice = Peer::new(&mut r, SessionConfig::default());
        let bundle = bob.prekey_bundle(None, None).unwrap();
        alice
            .record
            .initiate(&mut r, &alice.account, &bundle)
            .unwrap();
        let wire = alice.record.encrypt(&mut r, b"hi").unwrap();
        assert_eq!(
            SessionRecord::new().decrypt(&mut bob, &wire, T0).unwrap(),
            b"hi"
        );
    }
    // Replaced prekeys, oldest first, as (created, replaced by one created): (T0, EPOCH),
    // (EPOCH, MAX), (MAX, T0), (T0, EPOCH). Each was last known current at the later of the
    // two: T0, MAX, MAX, T0. At Timestamp::MAX with grace 1, the two last known current at
    // T0 go (of each kind: 4) and the two last known current at MAX stay; grace 0 takes
    // those too.
    assert_eq!(bob.remove_replaced_prekeys(Timestamp::MAX, 1), 4);
    assert_eq!(bob.remove_replaced_prekeys(Timestamp::MAX, 1), 0);
    assert_eq!(bob.remove_replaced_prekeys(Timestamp::MAX, 0), 4);
}

// ---------------------------------------------------------------------------------------
// Two copies of one state
// ---------------------------------------------------------------------------------------

/// Two copies of Alice's record (a restored backup, or two processes) in the middle of a
/// sending chain both send the same message number: the same message key, but each with
/// its own random nonce, so no key and nonce pair encrypts two plaintexts. Bob decrypts
/// whichever arrives first; the other is a `Duplicate` and changes nothing.
#[test]
fn two_copies_in_one_chain_reuse_a_message_key_with_different_nonces() {
    let mut pair = Pair::established(20);
    pair.exchange(Side::Alice, b"starts a sending chain");
    let copy_bytes = pair.alice.record.to_bytes().to_vec();
    let mut copy = SessionRecord::from_bytes(&copy_bytes).unwrap();

    let first = pair.send(Side::Alice, b"from the original");
    let second = copy.encrypt(&mut rng(21), b"from the copy!!!!").unwrap();
    let (key1, n1, pn1, nonce1) = header(&first);
    let (key2, n2, pn2, nonce2) = header(&second);
    assert_eq!(
        (&key1, n1, pn1),
        (&key2, n2, pn2),
        "the same chain position"
    );
    assert_ne!(nonce1, nonce2, "each message has its own nonce");
    assert_ne!(ciphertext(&first), ciphertext(&second));

    assert_eq!(
        pair.receive(Side::Bob, &second).unwrap(),
        b"from the copy!!!!"
    );
    assert_eq!(
        pair.bob.reject(&first),
        DecryptError::Duplicate { counter: n1 }
    );
}

/// Two copies of Alice's record that are due to start a new sending chain both send: each
/// draws its own ratchet key pair, so the two chains (and their message keys) differ. The
/// first to reach Bob is decrypted and Bob erases the ratchet private key the other one
/// needs: every message of the other copy then fails with `AuthenticationFailed`, and so
/// does Bob's reply at the other copy; both leave the state unchanged. The conversation
/// goes on with the copy that arrived first.
#[test]
fn two_copies_starting_new_chains_one_wins_the_other_is_locked_out() {
    for winner_first in [true, false] {
        let mut pair = Pair::established(22);
        let alice_bytes = pair.alice.record.to_bytes().to_vec();
        assert_eq!(counters(&pair.alice).0, None, "a new sending chain is due");
        let mut other = Peer {
            account: Account::from_bytes(&pair.alice.account.to_bytes()).unwrap(),
            record: SessionRecord::from_bytes(&alice_bytes).unwrap(),
        };
        let mut other_rng = rng(23);

        let mine = pair.send(Side::Alice, b"from the original");
        let theirs = other
            .record
            .encrypt(&mut other_rng, b"from the copy")
            .unwrap();
        let (key1, n1, pn1, nonce1) = header(&mine);
        let (key2, n2, pn2, nonce2) = header(&theirs);
        assert_ne!(key1, key2, "each copy starts its own chain");
        assert_eq!((n1, pn1), (n2, pn2));
        assert_ne!(nonce1, nonce2);

        let (winner, loser) = if winner_first {
            (mine, theirs)
        } else {
            (theirs, mine)
        };
        let winner_text = pair.receive(Side::Bob, &winner).unwrap();
        assert_eq!(pair.bob.reject(&loser), DecryptError::AuthenticationFailed);

        let reply = pair.send(Side::Bob, b"reply");
        // The winning copy reads the reply; the losing copy cannot, and stays as it was.
        let (winning_peer, losing_peer) = if winner_first {
            (&mut pair.alice, &mut other)
        } else {
            (&mut other, &mut pair.alice)
        };
        assert_eq!(
            losing_peer.reject(&reply),
            DecryptError::AuthenticationFailed
        );
        assert_eq!(winning_peer.decrypt(&reply, T0).unwrap(), b"reply");
        assert_eq!(
            winner_text,
            if winner_first {
                b"from the original".to_vec()
            } else {
                b"from the copy".to_vec()
            }
        );
        // The losing copy's next message on its chain is refused too.
        let again = losing_peer
            .record
            .encrypt(&mut other_rng, b"still the loser")
            .unwrap();
        assert_eq!(pair.bob.reject(&again), DecryptError::AuthenticationFailed);
    }
}

// ---------------------------------------------------------------------------------------
// An account restored from an older copy
// ---------------------------------------------------------------------------------------

/// Bob's account and records restored from a backup taken before an initial message was
/// decrypted: the one-time prekey it used is back, so a replay of that initial message is
/// accepted again and starts a second session (the same plaintext is delivered twice). No
/// local-state design can tell; the app must not restore an older account, or must retire
/// every prekey the copy holds (next test).
#[test]
fn a_restored_account_accepts_a_replayed_initial_message_again() {
    let mut pair = Pair::new(30);
    let backup = pair.bob.snapshot();
    let initial = pair.send(Side::Alice, b"hello");
    assert!(matches!(
        pb::decode::<pb::Message>(&initial).body,
        Some(Body::Initial(_))
    ));
    assert_eq!(pair.receive(Side::Bob, &initial).unwrap(), b"hello");
    // Without a restore, the replay is refused.
    assert_eq!(
        pair.bob.reject(&initial),
        DecryptError::Duplicate { counter: 0 }
    );
    assert_eq!(
        SessionRecord::new().decrypt(&mut pair.bob.account, &initial, T0),
        Err(DecryptError::OneTimePreKeyUsed { id: 1 })
    );

    // Account and record restored from the backup: the replay decrypts a second time.
    let mut restored = Peer {
        account: Account::from_bytes(&backup.0).unwrap(),
        record: SessionRecord::from_bytes(&backup.1).unwrap(),
    };
    assert_eq!(restored.decrypt(&initial, T0).unwrap(), b"hello");
    // Only the account restored, the record kept: the record still knows the session.
    let mut account_only = Peer {
        account: Account::from_bytes(&backup.0).unwrap(),
        record: SessionRecord::from_bytes(&pair.bob.snapshot().1).unwrap(),
    };
    assert_eq!(
        account_only.reject(&initial),
        DecryptError::Duplicate { counter: 0 }
    );
}

/// The same for a setup without any one-time key, which only the replay memory refuses: a
/// restored account has forgotten it and accepts the replay.
#[test]
fn a_restored_account_has_forgotten_its_replay_memory() {
    let mut r = rng(31);
    let mut alice = Peer::new(&mut r, SessionConfig::default());
    let mut bob = Account::new(&mut r, T0);
    let backup = bob.to_bytes().to_vec();
    let bundle = bob.prekey_bundle(None, None).unwrap();
    alice
        .record
        .initiate(&mut r, &alice.account, &bundle)
        .unwrap();
    let initial = alice.record.encrypt(&mut r, b"no one-time key").unwrap();
    assert_eq!(
        SessionRecord::new()
            .decrypt(&mut bob, &initial, T0)
            .unwrap(),
        b"no one-time key"
    );
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &initial, T0),
        Err(DecryptError::SetupAlreadyUsed)
    );
    let mut restored = Account::from_bytes(&backup).unwrap();
    assert_eq!(
        SessionRecord::new()
            .decrypt(&mut restored, &initial, T0)
            .unwrap(),
        b"no one-time key"
    );
}

/// What the app can do after restoring an older account: rotate the signed prekey and the
/// last-resort KEM prekey and delete the replaced ones at once (grace 0). Every setup names
/// a signed prekey, so every initial message made from a bundle of the restored copy, a
/// replay included, is then refused as naming an unknown signed prekey.
#[test]
fn retiring_every_prekey_after_a_restore_refuses_replays() {
    for with_one_time_key in [true, false] {
        let mut pair = Pair::new(32);
        let backup = pair.bob.snapshot();
        let initial = if with_one_time_key {
            pair.send(Side::Alice, b"hello")
        } else {
            let bundle = pair.bundle(None);
            let mut record = SessionRecord::new();
            record
                .initiate(&mut pair.rng, &pair.alice.account, &bundle)
                .unwrap();
            record.encrypt(&mut pair.rng, b"hello").unwrap()
        };
        assert_eq!(
            SessionRecord::new()
                .decrypt(&mut pair.bob.account, &initial, T0)
                .unwrap(),
            b"hello"
        );

        let mut restored = Account::from_bytes(&backup.0).unwrap();
        let now = T0.saturating_add_secs(DAY);
        restored.rotate_signed_prekey(&mut pair.rng, now).unwrap();
        restored
            .rotate_last_resort_kem_prekey(&mut pair.rng, now)
            .unwrap();
        assert_eq!(restored.remove_replaced_prekeys(now, 0), 2);
        assert_eq!(restored.signed_prekey().id(), SignedPreKeyId(2));
        let before = restored.to_bytes().to_vec();
        assert_eq!(
            SessionRecord::new().decrypt(&mut restored, &initial, now),
            Err(DecryptError::UnknownSignedPreKey { id: 1 })
        );
        assert_eq!(before, restored.to_bytes().to_vec());
    }
}
