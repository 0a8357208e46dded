//! The Double Ratchet: long conversations, out-of-order delivery, loss, duplicates, the
//! bounds, tampering, nonce freshness, forward secrecy and post-compromise security.

mod common;

use common::{Pair, Side, T0, pb, rng};
use rand_core::Rng;
use ratchetbox::{DecodeError, DecryptError, Session, SessionConfig, SessionRecord};

fn text(side: Side, i: usize) -> Vec<u8> {
    format!("{side:?} message {i}").into_bytes()
}

#[test]
fn long_conversation_with_random_interleavings() {
    for seed in 0..4 {
        let _seed = common::SeedGuard(seed);
        let mut pair = Pair::new(1000 + seed);
        let mut r = rng(seed);
        // In flight, per direction: (wire, plaintext).
        let mut to_bob: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut to_alice: Vec<(Vec<u8>, Vec<u8>)> = Vec::new();
        let mut delivered = 0;
        let mut bob_can_send = false;
        for i in 0..1500 {
            match r.next_u32() % 4 {
                0 => {
                    let t = text(Side::Alice, i);
                    to_bob.push((pair.send(Side::Alice, &t), t));
                }
                1 if bob_can_send => {
                    let t = text(Side::Bob, i);
                    to_alice.push((pair.send(Side::Bob, &t), t));
                }
                _ => {
                    // Deliver a random in-flight message, in either direction.
                    let (queue, to) = if r.next_u32().is_multiple_of(2) {
                        (&mut to_bob, Side::Bob)
                    } else {
                        (&mut to_alice, Side::Alice)
                    };
                    if queue.is_empty() {
                        continue;
                    }
                    let index = r.next_u32() as usize % queue.len();
                    let (wire, plaintext) = queue.swap_remove(index);
                    assert_eq!(pair.receive(to, &wire).expect("decrypts"), plaintext);
                    delivered += 1;
                    bob_can_send |= to == Side::Bob;
                }
            }
        }
        for (wire, plaintext) in to_bob.drain(..) {
            assert_eq!(pair.receive(Side::Bob, &wire).expect("decrypts"), plaintext);
        }
        for (wire, plaintext) in to_alice.drain(..) {
            assert_eq!(
                pair.receive(Side::Alice, &wire).expect("decrypts"),
                plaintext
            );
        }
        assert!(delivered > 300);
        // Everything arrived: no skipped key is left behind.
        assert_eq!(pair.alice.record.session().unwrap().skipped_key_count(), 0);
        assert_eq!(pair.bob.record.session().unwrap().skipped_key_count(), 0);
    }
}

#[test]
fn out_of_order_delivery_within_one_chain() {
    let mut pair = Pair::established(1);
    let messages: Vec<_> = (0..50)
        .map(|i| (pair.send(Side::Alice, &text(Side::Alice, i)), i))
        .collect();
    // Deliver the last first: 49 keys are skipped and stored.
    let (last, i) = messages.last().unwrap();
    assert_eq!(
        pair.receive(Side::Bob, last).unwrap(),
        text(Side::Alice, *i)
    );
    assert_eq!(pair.bob.record.session().unwrap().skipped_key_count(), 49);
    for (wire, i) in messages[..49].iter().rev() {
        assert_eq!(
            pair.receive(Side::Bob, wire).unwrap(),
            text(Side::Alice, *i)
        );
    }
    assert_eq!(pair.bob.record.session().unwrap().skipped_key_count(), 0);
}

#[test]
fn a_late_message_from_any_earlier_chain_decrypts() {
    // libsignal and vodozemac keep only the last 5 receiving chains; ratchetbox keeps keys
    // in one bounded store, whatever chain they belong to.
    let mut pair = Pair::established(2);
    let mut late = Vec::new();
    for turn in 0..60 {
        // Each of Alice's chains loses its first message, which arrives at the very end.
        late.push((pair.send(Side::Alice, &text(Side::Alice, turn)), turn));
        pair.exchange(Side::Alice, b"delivered");
        pair.exchange(Side::Bob, b"turn");
    }
    assert_eq!(pair.bob.record.session().unwrap().skipped_key_count(), 60);
    for (wire, turn) in late {
        assert_eq!(
            pair.receive(Side::Bob, &wire).unwrap(),
            text(Side::Alice, turn)
        );
    }
    assert_eq!(pair.bob.record.session().unwrap().skipped_key_count(), 0);
}

#[test]
fn lost_messages_do_not_stop_the_conversation() {
    let mut pair = Pair::established(3);
    for round in 0..20 {
        for i in 0..5 {
            let wire = pair.send(Side::Alice, b"lost");
            if i == 4 {
                assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"lost");
            }
        }
        let wire = pair.send(Side::Bob, b"reply");
        if round % 2 == 0 {
            assert_eq!(pair.receive(Side::Alice, &wire).unwrap(), b"reply");
        } else {
            drop(wire);
            // Bob sends again on the same chain; Alice still catches up.
            pair.exchange(Side::Bob, b"again");
        }
    }
    assert_eq!(pair.bob.record.session().unwrap().skipped_key_count(), 80);
}

#[test]
fn duplicates_are_rejected_with_state_unchanged() {
    let mut pair = Pair::established(4);
    let first = pair.send(Side::Alice, b"one");
    let second = pair.send(Side::Alice, b"two");
    assert_eq!(pair.receive(Side::Bob, &second).unwrap(), b"two");
    assert_eq!(
        pair.bob.reject(&second),
        DecryptError::Duplicate { counter: 1 }
    );
    assert_eq!(pair.receive(Side::Bob, &first).unwrap(), b"one");
    assert_eq!(
        pair.bob.reject(&first),
        DecryptError::Duplicate { counter: 0 }
    );
    // After the conversation has turned, the same messages are still recognized.
    pair.exchange(Side::Bob, b"turn");
    pair.exchange(Side::Alice, b"turn");
    assert_eq!(
        pair.bob.reject(&first),
        DecryptError::Duplicate { counter: 0 }
    );
    assert_eq!(
        pair.bob.reject(&second),
        DecryptError::Duplicate { counter: 1 }
    );
}

/// The bound documented on `DecryptError::Duplicate` and in PROTOCOL.md section 6.4: a
/// duplicate is reported as such while its chain is the current receiving chain or one of the
/// 32 before it. Older, it cannot be told from a message on an unknown chain and fails
/// authentication. Either way nothing changes.
#[test]
fn a_duplicate_older_than_the_remembered_chains_fails_authentication() {
    const REMEMBERED_CHAINS: usize = 32;
    let mut pair = Pair::established(41);
    let read = pair.send(Side::Alice, b"read once");
    let late = pair.send(Side::Alice, b"late");
    assert_eq!(pair.receive(Side::Bob, &read).unwrap(), b"read once");
    // Every round trip gives Bob a new receiving chain.
    for _ in 0..REMEMBERED_CHAINS {
        pair.exchange(Side::Bob, b"b");
        pair.exchange(Side::Alice, b"a");
    }
    // 32 newer chains: still a duplicate, with Bob idle and with Bob holding a sending key.
    assert_eq!(
        pair.bob.reject(&read),
        DecryptError::Duplicate { counter: 0 }
    );
    let sent = pair.send(Side::Bob, b"b");
    assert_eq!(
        pair.bob.reject(&read),
        DecryptError::Duplicate { counter: 0 }
    );
    // One more chain, and the chain of `read` is forgotten.
    assert_eq!(pair.receive(Side::Alice, &sent).unwrap(), b"b");
    pair.exchange(Side::Alice, b"a");
    assert_eq!(pair.bob.reject(&read), DecryptError::AuthenticationFailed);
    pair.send(Side::Bob, b"b");
    assert_eq!(pair.bob.reject(&read), DecryptError::AuthenticationFailed);
    // The chain's stored key does not depend on that memory: the unread message still
    // decrypts, once.
    assert_eq!(pair.receive(Side::Bob, &late).unwrap(), b"late");
    assert_eq!(pair.bob.reject(&late), DecryptError::AuthenticationFailed);
}

#[test]
fn the_gap_bound_within_a_chain() {
    let config = SessionConfig::default().with_max_skip(10);
    let mut pair = Pair::with_config(5, config);
    pair.exchange(Side::Alice, b"hello");
    pair.exchange(Side::Bob, b"hi");
    let messages: Vec<_> = (0..12).map(|_| pair.send(Side::Alice, b"m")).collect();
    // Message 11 would skip 11 keys.
    assert_eq!(
        pair.bob.reject(&messages[11]),
        DecryptError::TooFarAhead {
            counter: 11,
            skip: 11,
            max_skip: 10
        }
    );
    // Message 10 skips exactly 10: allowed.
    assert_eq!(pair.receive(Side::Bob, &messages[10]).unwrap(), b"m");
    assert_eq!(pair.receive(Side::Bob, &messages[11]).unwrap(), b"m");
    for wire in &messages[..10] {
        assert_eq!(pair.receive(Side::Bob, wire).unwrap(), b"m");
    }
}

#[test]
fn the_gap_bound_across_a_ratchet_step() {
    let config = SessionConfig::default().with_max_skip(10);
    let mut pair = Pair::with_config(6, config);
    pair.exchange(Side::Alice, b"hello");
    pair.exchange(Side::Bob, b"hi");
    // Alice sends 12 messages Bob never gets, then the first of a new chain after a turn.
    let lost: Vec<_> = (0..12).map(|_| pair.send(Side::Alice, b"lost")).collect();
    pair.exchange(Side::Bob, b"turn");
    let next_chain = pair.send(Side::Alice, b"new chain");
    // Finishing the old chain would skip 12 keys.
    assert_eq!(
        pair.bob.reject(&next_chain),
        DecryptError::TooFarAhead {
            counter: 12,
            skip: 12,
            max_skip: 10
        }
    );
    // Once two of them arrived, the remaining gap is 10.
    pair.receive(Side::Bob, &lost[1]).unwrap();
    assert_eq!(pair.receive(Side::Bob, &next_chain).unwrap(), b"new chain");
    assert_eq!(pair.receive(Side::Bob, &lost[0]).unwrap(), b"lost");
    assert_eq!(pair.receive(Side::Bob, &lost[11]).unwrap(), b"lost");
}

#[test]
fn the_store_is_bounded_and_evicts_the_oldest_keys() {
    let config = SessionConfig::default().with_max_skipped_keys(20);
    let mut pair = Pair::with_config(7, config);
    pair.exchange(Side::Alice, b"hello");
    pair.exchange(Side::Bob, b"hi");
    let mut lost = Vec::new();
    for _ in 0..3 {
        let chain: Vec<_> = (0..10).map(|_| pair.send(Side::Alice, b"late")).collect();
        pair.exchange(Side::Alice, b"delivered");
        pair.exchange(Side::Bob, b"turn");
        lost.push(chain);
    }
    let session = pair.bob.record.session().unwrap();
    assert_eq!(session.skipped_key_count(), 20);
    // The first chain's keys were evicted: its messages are reported expired.
    for (counter, wire) in lost[0].iter().enumerate() {
        assert_eq!(
            pair.bob.reject(wire),
            DecryptError::Expired {
                counter: counter as u32
            }
        );
    }
    for wire in lost[1].iter().chain(&lost[2]) {
        assert_eq!(pair.receive(Side::Bob, wire).unwrap(), b"late");
    }
}

#[test]
fn tampering_with_any_field_of_a_ratchet_message_is_rejected() {
    let mut pair = Pair::established(8);
    // One message in the current chain and one that starts a new chain.
    let same_chain = pair.send(Side::Bob, b"same chain");
    pair.exchange(Side::Alice, b"turn");
    let new_chain = pair.send(Side::Bob, b"new chain");
    for wire in [&same_chain, &new_chain] {
        let edits: Vec<pb::Edit<pb::Message>> = vec![
            (
                "ratchet key",
                Box::new(|m| m.ratchet_mut().ratchet_key[7] ^= 1),
            ),
            ("counter up", Box::new(|m| m.ratchet_mut().counter += 1)),
            (
                "previous counter",
                Box::new(|m| m.ratchet_mut().previous_counter += 1),
            ),
            ("nonce", Box::new(|m| m.ratchet_mut().nonce[0] ^= 0x40)),
            (
                "ciphertext",
                Box::new(|m| m.ratchet_mut().ciphertext[3] ^= 2),
            ),
            (
                "tag",
                Box::new(|m| *m.ratchet_mut().ciphertext.last_mut().unwrap() ^= 0x80),
            ),
            (
                "truncated ciphertext",
                Box::new(|m| {
                    m.ratchet_mut().ciphertext.pop();
                }),
            ),
            (
                "extended ciphertext",
                Box::new(|m| m.ratchet_mut().ciphertext.push(0)),
            ),
        ];
        for (what, edit) in edits {
            let tampered = pb::edit_message(wire, edit);
            assert_eq!(
                pair.alice.reject(&tampered),
                DecryptError::AuthenticationFailed,
                "{what}"
            );
        }
        // The version byte says how the session was set up (2: PQXDH) and is authenticated:
        // the other known version does not decrypt.
        assert_eq!(wire[0], ratchetbox::PQXDH_MESSAGE_VERSION);
        let classical = pb::edit_message_version(wire, ratchetbox::VERSION, |_| {});
        assert_eq!(
            pair.alice.reject(&classical),
            DecryptError::AuthenticationFailed,
            "version byte"
        );
    }
    // Structural damage is caught while decoding.
    let cases: Vec<(&str, Vec<u8>, DecodeError)> = vec![
        ("empty", vec![], DecodeError::Empty { object: "Message" }),
        (
            "version",
            [&[3u8][..], &same_chain[1..]].concat(),
            DecodeError::UnsupportedVersion {
                object: "Message",
                found: 3,
                supported: 2,
            },
        ),
        (
            "truncated",
            same_chain[..same_chain.len() - 1].to_vec(),
            DecodeError::Malformed { object: "Message" },
        ),
        (
            "appended unknown field",
            [&same_chain[..], &[0x78, 0x01]].concat(),
            DecodeError::NonCanonical { object: "Message" },
        ),
        (
            "short nonce",
            pb::edit_message(&same_chain, |m| {
                m.ratchet_mut().nonce.pop();
            }),
            DecodeError::InvalidLength {
                object: "RatchetMessage",
                field: "nonce",
                expected: 12,
                found: 11,
            },
        ),
        (
            "short ratchet key",
            pb::edit_message(&same_chain, |m| m.ratchet_mut().ratchet_key.truncate(31)),
            DecodeError::InvalidLength {
                object: "RatchetMessage",
                field: "ratchet_key",
                expected: 32,
                found: 31,
            },
        ),
        (
            "no tag",
            pb::edit_message(&same_chain, |m| m.ratchet_mut().ciphertext.truncate(15)),
            DecodeError::InvalidValue {
                object: "RatchetMessage",
                field: "ciphertext",
                reason: "shorter than the 16-byte authentication tag",
            },
        ),
    ];
    for (what, bytes, expected) in cases {
        assert_eq!(
            pair.alice.reject(&bytes),
            DecryptError::Decode(expected),
            "{what}"
        );
    }
    assert_eq!(
        pair.receive(Side::Alice, &same_chain).unwrap(),
        b"same chain"
    );
    assert_eq!(pair.receive(Side::Alice, &new_chain).unwrap(), b"new chain");
}

#[test]
fn a_low_order_ratchet_key_is_rejected() {
    let mut pair = Pair::established(9);
    // Alice has sent since Bob's last ratchet key, so she holds a key pair and will try the
    // DH ratchet step for a new key.
    pair.exchange(Side::Alice, b"turn");
    let wire = pair.send(Side::Bob, b"x");
    let tampered = pb::edit_message(&wire, |m| m.ratchet_mut().ratchet_key = vec![0; 32]);
    assert_eq!(pair.alice.reject(&tampered), DecryptError::LowOrderKey);
}

#[test]
fn a_restored_snapshot_never_reuses_a_key_and_nonce() {
    let mut pair = Pair::established(10);
    pair.exchange(Side::Alice, b"mid-chain");
    let snapshot = pair.alice.record.to_bytes();
    let p1 = b"attack at dawn!!".to_vec();
    let p2 = b"retreat at nine!".to_vec();
    let w1 = pair.send(Side::Alice, &p1);
    pair.alice.record = SessionRecord::from_bytes(&snapshot).unwrap();
    let w2 = pair.send(Side::Alice, &p2);

    let (mut m1, mut m2): (pb::Message, pb::Message) = (pb::decode(&w1), pb::decode(&w2));
    let (r1, r2) = (m1.ratchet_mut().clone(), m2.ratchet_mut().clone());
    // Same chain, same counter: the same message key...
    assert_eq!(
        (r1.ratchet_key.clone(), r1.counter),
        (r2.ratchet_key.clone(), r2.counter)
    );
    // ...but a fresh nonce, so the keystreams differ.
    assert_ne!(r1.nonce, r2.nonce);
    let xor_c: Vec<u8> = r1
        .ciphertext
        .iter()
        .zip(&r2.ciphertext)
        .map(|(a, b)| a ^ b)
        .take(16)
        .collect();
    let xor_p: Vec<u8> = p1.iter().zip(&p2).map(|(a, b)| a ^ b).collect();
    assert_ne!(xor_c, xor_p, "keystream reuse: c1 ^ c2 == p1 ^ p2");
    // Both decrypt for Bob (the second as a duplicate of the same counter is refused).
    assert_eq!(pair.receive(Side::Bob, &w2).unwrap(), p2);
}

#[test]
fn forward_secrecy_a_read_message_cannot_be_decrypted_from_later_state() {
    let mut pair = Pair::established(11);
    let early = pair.send(Side::Alice, b"early");
    let later = pair.send(Side::Alice, b"later");
    assert_eq!(pair.receive(Side::Bob, &later).unwrap(), b"later");
    assert_eq!(pair.receive(Side::Bob, &early).unwrap(), b"early");
    // A copy of Bob's state taken now holds nothing that decrypts them again.
    let stolen = pair.bob.record.to_bytes();
    for wire in [&early, &later] {
        let mut copy = SessionRecord::from_bytes(&stolen).unwrap();
        let mut account = ratchetbox::Account::from_bytes(&pair.bob.account.to_bytes()).unwrap();
        assert!(matches!(
            copy.decrypt(&mut account, wire, T0),
            Err(DecryptError::Duplicate { .. })
        ));
    }
    // Not even the message keys of the whole old chain: after a few turns the state no
    // longer contains the chain at all, and the message fails authentication or is refused.
    for _ in 0..3 {
        pair.exchange(Side::Bob, b"turn");
        pair.exchange(Side::Alice, b"turn");
    }
    let mut copy = Session::from_bytes(&pair.bob.record.session().unwrap().to_bytes()).unwrap();
    // Refused as a message of a chain the session finished, without decrypting.
    assert_eq!(
        copy.decrypt(&early, T0),
        Err(DecryptError::Duplicate { counter: 0 })
    );
}

#[test]
fn post_compromise_a_stolen_state_is_locked_out_after_one_round_trip() {
    let mut pair = Pair::established(12);
    pair.exchange(Side::Alice, b"before");
    // Eve copies Bob's whole state.
    let mut eve = Session::from_bytes(&pair.bob.record.session().unwrap().to_bytes()).unwrap();
    // While the chain continues, Eve reads along (the compromise is real).
    let wire = pair.send(Side::Alice, b"still readable");
    assert_eq!(eve.decrypt(&wire, T0).unwrap(), b"still readable");
    assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"still readable");
    // One round trip: Bob sends (fresh ratchet key Eve never saw), Alice answers.
    pair.exchange(Side::Bob, b"bob turns");
    let wire = pair.send(Side::Alice, b"secret again");
    assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"secret again");
    assert_eq!(
        eve.decrypt(&wire, T0),
        Err(DecryptError::AuthenticationFailed)
    );
    // And for good: later messages are out of reach too.
    for _ in 0..3 {
        pair.exchange(Side::Bob, b"x");
        let wire = pair.send(Side::Alice, b"y");
        assert_eq!(
            eve.decrypt(&wire, T0),
            Err(DecryptError::AuthenticationFailed)
        );
        assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"y");
    }
}

#[test]
fn a_message_reflected_back_to_its_sender_is_rejected() {
    let mut pair = Pair::established(13);
    let wire = pair.send(Side::Alice, b"to bob");
    assert_eq!(pair.alice.reject(&wire), DecryptError::AuthenticationFailed);
    assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"to bob");
}

#[test]
fn a_message_for_another_session_is_rejected() {
    let mut pair = Pair::established(14);
    let mut other = Pair::established(15);
    let foreign = other.send(Side::Alice, b"elsewhere");
    assert_eq!(
        pair.bob.reject(&foreign),
        DecryptError::AuthenticationFailed
    );
}

#[test]
fn empty_and_large_plaintexts() {
    let mut pair = Pair::established(16);
    pair.exchange(Side::Alice, b"");
    let large = vec![0xA5u8; 1 << 20];
    pair.exchange(Side::Bob, &large);
    let wire = pair.send(Side::Alice, &large);
    // The kind byte of raw bytes, the plaintext, the tag.
    assert_eq!(
        ratchetbox::Message::from_bytes(&wire)
            .unwrap()
            .ciphertext_len(),
        1 + large.len() + 16
    );
}

#[test]
fn a_message_claiming_to_be_past_the_end_of_a_finished_chain_is_rejected() {
    let mut pair = Pair::established(20);
    let first = pair.send(Side::Alice, b"0");
    let second = pair.send(Side::Alice, b"1");
    pair.receive(Side::Bob, &first).unwrap();
    pair.receive(Side::Bob, &second).unwrap();
    pair.exchange(Side::Bob, b"turn");
    pair.exchange(Side::Alice, b"new chain");
    // Alice's previous chain had messages 0, 1 (its first chain after the setup had one
    // more): a message numbered at its length cannot be genuine.
    let past_end = pb::edit_message(&second, |m| m.ratchet_mut().counter += 1);
    assert_eq!(
        pair.bob.reject(&past_end),
        DecryptError::AuthenticationFailed
    );
    // Within the chain it is a duplicate.
    assert_eq!(
        pair.bob.reject(&second),
        DecryptError::Duplicate { counter: 1 }
    );
}

#[test]
fn the_gap_bound_for_the_first_message_of_a_new_chain() {
    let config = SessionConfig::default().with_max_skip(5);
    let mut pair = Pair::with_config(21, config);
    pair.exchange(Side::Alice, b"hello");
    pair.exchange(Side::Bob, b"hi");
    // Bob's next chain: its first 6 messages are lost; message 5 skips exactly 5.
    pair.exchange(Side::Alice, b"turn");
    let chain: Vec<_> = (0..7).map(|_| pair.send(Side::Bob, b"m")).collect();
    assert_eq!(
        pair.alice.reject(&chain[6]),
        DecryptError::TooFarAhead {
            counter: 6,
            skip: 6,
            max_skip: 5
        }
    );
    assert_eq!(pair.receive(Side::Alice, &chain[5]).unwrap(), b"m");
    assert_eq!(pair.receive(Side::Alice, &chain[6]).unwrap(), b"m");
}

#[test]
fn expired_and_duplicate_stay_distinguished_after_a_restore() {
    let config = SessionConfig::default().with_max_skipped_keys(3);
    let mut pair = Pair::with_config(22, config);
    pair.exchange(Side::Alice, b"hello");
    pair.exchange(Side::Bob, b"hi");
    let lost: Vec<_> = (0..6).map(|_| pair.send(Side::Alice, b"late")).collect();
    let delivered = pair.send(Side::Alice, b"now");
    pair.receive(Side::Bob, &delivered).unwrap();
    // Six keys skipped, three kept: 0..3 evicted, within the current chain.
    pair.bob.persist_and_restore();
    assert_eq!(
        pair.bob.reject(&lost[1]),
        DecryptError::Expired { counter: 1 }
    );
    assert_eq!(pair.receive(Side::Bob, &lost[4]).unwrap(), b"late");
    pair.bob.persist_and_restore();
    assert_eq!(
        pair.bob.reject(&lost[4]),
        DecryptError::Duplicate { counter: 4 }
    );
    assert_eq!(
        pair.bob.reject(&lost[2]),
        DecryptError::Expired { counter: 2 }
    );
}

/// Bob sent on the session, then started a new one (the old one is previous now, holding
/// Bob's ratchet key pair). Alice, who has not seen the new session yet, answers in the old
/// one with a new chain whose first messages are lost.
fn answer_in_a_previous_session(
    seed: u64,
    config: SessionConfig,
    lost: usize,
) -> (Pair, Vec<Vec<u8>>) {
    let mut pair = Pair::with_config(seed, config);
    pair.exchange(Side::Alice, b"hello");
    pair.exchange(Side::Bob, b"hi");
    pair.exchange(Side::Alice, b"turn");
    pair.exchange(Side::Bob, b"turn");
    let old = pair.bob.record.session_id();
    let bundle = pair.alice.account.prekey_bundle(None, None).unwrap();
    pair.bob
        .record
        .initiate(&mut pair.rng, &pair.bob.account, &bundle)
        .unwrap();
    assert_eq!(
        pair.bob.record.previous_sessions().next().unwrap().id(),
        old.unwrap()
    );
    let chain: Vec<_> = (0..=lost)
        .map(|_| pair.send(Side::Alice, b"old session"))
        .collect();
    (pair, chain)
}

/// A message that starts a new chain in a previous session may skip at most
/// `max_skip_previous` = `max_skip / (2 * max_previous_sessions)` keys (PROTOCOL.md section
/// 6.7);
/// further ahead it fails with `TooFarAhead` naming that bound and changes nothing. In its
/// current chain, a previous session keeps the full `max_skip`.
#[test]
fn the_gap_bound_for_a_new_chain_in_a_previous_session() {
    let config = SessionConfig::default();
    let bound = config.max_skip_previous();
    assert_eq!(bound, 2_000 / 16);
    // A seed where Bob's new session precedes the old one (the smaller id), so that the old
    // one stays previous whatever arrives (PROTOCOL.md section 6.7).
    let (mut pair, chain) = (22..64)
        .map(|seed| answer_in_a_previous_session(seed, config, bound as usize + 1))
        .find(|(pair, _)| {
            let old = pair.bob.record.previous_sessions().next().unwrap().id();
            pair.bob.record.session_id().unwrap() < old
        })
        .expect("a seed where the new session precedes");
    let last = chain.len() - 1;
    assert_eq!(
        pair.bob.reject(&chain[last]),
        DecryptError::TooFarAhead {
            counter: last as u32,
            skip: last as u64,
            max_skip: bound
        }
    );
    // Exactly the bound: allowed; then the rest of the chain arrives in any order.
    assert_eq!(
        pair.receive(Side::Bob, &chain[last - 1]).unwrap(),
        b"old session"
    );
    assert_eq!(
        pair.receive(Side::Bob, &chain[last]).unwrap(),
        b"old session"
    );
    for wire in chain[..last - 1].iter().rev() {
        assert_eq!(pair.receive(Side::Bob, wire).unwrap(), b"old session");
    }
    // Bob's new session stays current (it precedes; it awaits Alice's answer).
    assert!(pair.bob.record.session().unwrap().awaiting_reply());

    // In the previous session's current chain, the full MAX_SKIP applies.
    let max_skip = config.max_skip() as usize;
    let more: Vec<_> = (0..=max_skip)
        .map(|_| pair.send(Side::Alice, b"more"))
        .collect();
    assert_eq!(
        pair.receive(Side::Bob, &more[max_skip - 1]).unwrap(),
        b"more"
    );
    assert_eq!(pair.receive(Side::Bob, &more[0]).unwrap(), b"more");
    assert!(pair.bob.record.session().unwrap().awaiting_reply());
}
