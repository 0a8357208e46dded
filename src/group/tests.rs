use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use alloc::vec::Vec;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::*;
use crate::error::DecodeError;
use crate::wire::{self, generated};

fn rng() -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(19)
}

/// A sender and a receiver that has processed its distribution.
fn pair(rng: &mut ChaCha20Rng) -> (GroupSender, GroupReceiver) {
    let group = GroupId::random(rng);
    let sender = GroupSender::new(rng, group);
    let mut receiver = GroupReceiver::new(group);
    let distribution = GroupDistribution::from_bytes(&sender.distribution().to_bytes()).unwrap();
    assert_eq!(
        receiver.process_distribution(&distribution, &GroupLimits::default()),
        Ok(true)
    );
    (sender, receiver)
}

fn send(sender: &mut GroupSender, text: &[u8]) -> GroupMessage {
    GroupMessage::from_bytes(&sender.encrypt(text).unwrap().to_bytes()).unwrap()
}

fn limits(keys: usize, jumps: u32) -> GroupLimits {
    GroupLimits {
        max_generations: DEFAULT_MAX_GENERATIONS,
        max_message_keys: keys,
        max_forward_jumps: jumps,
    }
}

#[test]
fn in_order_out_of_order_and_lost_messages_decrypt() {
    let mut rng = rng();
    let (mut alice, mut bob) = pair(&mut rng);
    let l = GroupLimits::default();
    let messages: Vec<GroupMessage> = (0..6u8).map(|i| send(&mut alice, &[i; 5])).collect();
    for (i, m) in messages.iter().enumerate() {
        assert_eq!(m.iteration(), u32::try_from(i).unwrap());
    }
    assert_eq!(bob.decrypt(&messages[0], &l).unwrap().as_slice(), &[0u8; 5]);
    assert_eq!(bob.decrypt(&messages[4], &l).unwrap().as_slice(), &[4u8; 5]);
    assert_eq!(bob.decrypt(&messages[2], &l).unwrap().as_slice(), &[2u8; 5]);
    assert_eq!(bob.decrypt(&messages[5], &l).unwrap().as_slice(), &[5u8; 5]);
    // Message 1 and 3 still readable later; message 4 no longer.
    assert_eq!(bob.decrypt(&messages[1], &l).unwrap().as_slice(), &[1u8; 5]);
    assert_eq!(
        bob.decrypt(&messages[4], &l),
        Err(GroupError::Duplicate {
            key_id: alice.key_id(),
            iteration: 4
        })
    );
    assert_eq!(bob.decrypt(&messages[3], &l).unwrap().as_slice(), &[3u8; 5]);
}

#[test]
fn duplicate_of_the_newest_message_is_refused_and_changes_nothing() {
    let mut rng = rng();
    let (mut alice, mut bob) = pair(&mut rng);
    let l = GroupLimits::default();
    let m = send(&mut alice, b"once");
    bob.decrypt(&m, &l).unwrap();
    let before = bob.to_bytes();
    assert_eq!(
        bob.decrypt(&m, &l),
        Err(GroupError::Duplicate {
            key_id: alice.key_id(),
            iteration: 0
        })
    );
    assert_eq!(bob.to_bytes(), before);
}

#[test]
fn a_member_who_knows_the_chain_cannot_forge_the_senders_messages() {
    let mut rng = rng();
    let (alice, mut bob) = pair(&mut rng);
    // Carol holds Alice's distribution too: she can derive Alice's message keys, but not sign.
    let mut forger = GroupSender::from_bytes(&alice.to_bytes()).unwrap();
    forger.signing = crate::keys::IdentityKeyPair::generate(&mut rng);
    let forged = send(&mut forger, b"I am Alice");
    let before = bob.to_bytes();
    assert_eq!(
        bob.decrypt(&forged, &GroupLimits::default()),
        Err(GroupError::ForgedSignature)
    );
    assert_eq!(bob.to_bytes(), before);
}

#[test]
fn signed_but_undecryptable_message_is_an_authentication_failure() {
    let mut rng = rng();
    let (alice, mut bob) = pair(&mut rng);
    let bad = GroupMessage::seal(alice.group_id(), alice.key_id(), 3, vec![7u8; 40], |m| {
        super::state::sign_for_tests(&alice, m)
    });
    let bad = GroupMessage::from_bytes(&bad.to_bytes()).unwrap();
    let before = bob.to_bytes();
    assert_eq!(
        bob.decrypt(&bad, &GroupLimits::default()),
        Err(GroupError::AuthenticationFailed)
    );
    assert_eq!(bob.to_bytes(), before);
}

#[test]
fn message_of_another_group_is_refused() {
    let mut rng = rng();
    let (mut alice, _) = pair(&mut rng);
    let (_, mut other) = pair(&mut rng);
    let m = send(&mut alice, b"hi");
    assert_eq!(
        other.decrypt(&m, &GroupLimits::default()),
        Err(GroupError::WrongGroup)
    );
    let mut wrong = GroupReceiver::new(GroupId::from_bytes([9; 32]));
    assert_eq!(
        wrong.process_distribution(&alice.distribution(), &GroupLimits::default()),
        Err(GroupError::WrongGroup)
    );
}

#[test]
fn message_of_another_sender_is_refused() {
    let mut rng = rng();
    let group = GroupId::random(&mut rng);
    let alice = GroupSender::new(&mut rng, group);
    let mut carol = GroupSender::new(&mut rng, group);
    let mut bob_from_alice = GroupReceiver::new(group);
    bob_from_alice
        .process_distribution(&alice.distribution(), &GroupLimits::default())
        .unwrap();
    let m = send(&mut carol, b"hi");
    assert_eq!(
        bob_from_alice.decrypt(&m, &GroupLimits::default()),
        Err(GroupError::UnknownSenderKey {
            key_id: carol.key_id()
        })
    );
    // Even under the same key id, Carol's signature does not verify as Alice's.
    let mut carol_same_id = GroupSender::fresh(&mut rng, group, alice.key_id());
    let m = send(&mut carol_same_id, b"hi");
    assert_eq!(
        bob_from_alice.decrypt(&m, &GroupLimits::default()),
        Err(GroupError::ForgedSignature)
    );
    // And her distribution under Alice's key id is refused.
    assert_eq!(
        bob_from_alice.process_distribution(&carol_same_id.distribution(), &GroupLimits::default()),
        Err(GroupError::ConflictingSenderKey {
            key_id: alice.key_id()
        })
    );
    // The same distribution again changes nothing.
    assert_eq!(
        bob_from_alice.process_distribution(&alice.distribution(), &GroupLimits::default()),
        Ok(false)
    );
}

#[test]
fn every_truncation_of_a_group_message_is_a_decode_error() {
    let mut rng = rng();
    let (mut alice, _) = pair(&mut rng);
    let wire = alice.encrypt(b"truncate me").unwrap().to_bytes();
    assert_eq!(
        GroupMessage::from_bytes(&[]),
        Err(DecodeError::Empty {
            object: "group message"
        })
    );
    for len in 1..wire.len() {
        match GroupMessage::from_bytes(&wire[..len]) {
            Err(
                DecodeError::Malformed { .. }
                | DecodeError::InvalidLength { .. }
                | DecodeError::InvalidValue { .. },
            ) => {}
            other => panic!("truncated to {len}: {other:?}"),
        }
    }
    // Cut exactly before the signature field: the signature is missing (length 0).
    assert_eq!(
        GroupMessage::from_bytes(&wire[..wire.len() - 66]),
        Err(DecodeError::InvalidLength {
            object: "group message",
            field: "signature",
            expected: 64,
            found: 0
        })
    );
}

#[test]
fn every_bit_flip_of_a_group_message_is_refused_and_changes_nothing() {
    let mut rng = rng();
    let (mut alice, mut bob) = pair(&mut rng);
    let l = GroupLimits::default();
    // A message at iteration 1 (the key id and iteration are both non-zero fields).
    let first = send(&mut alice, b"first");
    bob.decrypt(&first, &l).unwrap();
    let wire = alice.encrypt(b"flip every bit").unwrap().to_bytes();
    let before = bob.to_bytes();
    let mut counts = [0usize; 4];
    for bit in 0..wire.len() * 8 {
        let mut flipped = wire.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        match GroupMessage::from_bytes(&flipped) {
            Err(_) => counts[0] += 1,
            Ok(m) => match bob.decrypt(&m, &l) {
                Err(GroupError::ForgedSignature) => counts[1] += 1,
                Err(GroupError::UnknownSenderKey { .. }) => counts[2] += 1,
                Err(GroupError::WrongGroup) => counts[3] += 1,
                other => panic!("bit {bit}: {other:?}"),
            },
        }
        assert_eq!(bob.to_bytes(), before, "bit {bit}");
    }
    // Each kind of rejection happened: decoding, signature, key id, group id.
    assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
    assert_eq!(
        bob.decrypt(&GroupMessage::from_bytes(&wire).unwrap(), &l)
            .unwrap()
            .as_slice(),
        b"flip every bit"
    );
}

#[test]
fn every_bit_flip_of_a_distribution_is_refused_or_means_another_distribution() {
    let mut rng = rng();
    let (mut alice, _) = pair(&mut rng);
    alice.encrypt(b"move to iteration 1").unwrap();
    let wire = alice.distribution().to_bytes();
    let mut refused = 0;
    for bit in 0..wire.len() * 8 {
        let mut flipped = wire.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        match GroupDistribution::from_bytes(&flipped) {
            // Accepted: then it is the one encoding of a different value.
            Ok(d) => {
                assert_eq!(d.to_bytes().as_slice(), flipped.as_slice(), "bit {bit}");
                assert_ne!(flipped.as_slice(), wire.as_slice());
            }
            Err(_) => refused += 1,
        }
    }
    assert!(refused > 0);
    // The signing key is the last 32 bytes: every flip there yields an invalid key or a
    // different valid one, never the same key.
    let key_start = wire.len() - 32;
    for bit in key_start * 8..wire.len() * 8 {
        let mut flipped = wire.to_vec();
        flipped[bit / 8] ^= 1 << (bit % 8);
        match GroupDistribution::from_bytes(&flipped) {
            Ok(d) => assert_ne!(d.signing_key(), alice.distribution().signing_key()),
            Err(e) => assert_eq!(
                e,
                DecodeError::InvalidIdentityKey {
                    object: "group distribution",
                    field: "signing_key"
                }
            ),
        }
    }
}

fn distribution_with_signing_key(key: [u8; 32]) -> Vec<u8> {
    wire::encode(&generated::GroupDistribution {
        group_id: vec![1; 32],
        key_id: 7,
        iteration: 0,
        chain_key: vec![2; 32],
        signing_key: key.to_vec(),
    })
}

#[test]
fn distribution_refuses_non_canonical_and_small_order_signing_keys() {
    let expected = Err(DecodeError::InvalidIdentityKey {
        object: "group distribution",
        field: "signing_key",
    });
    // The neutral point (y = 1) has small order.
    let mut neutral = [0u8; 32];
    neutral[0] = 1;
    assert_eq!(
        GroupDistribution::from_bytes(&distribution_with_signing_key(neutral)).map(|d| d.key_id()),
        expected
    );
    // y = 1 + p: a non-canonical alias of the same point.
    let mut alias = [0xffu8; 32];
    alias[0] = 0xee;
    alias[31] = 0x7f;
    assert_eq!(
        GroupDistribution::from_bytes(&distribution_with_signing_key(alias)).map(|d| d.key_id()),
        expected
    );
    // The sign bit set on x = 0 (the neutral point again, non-canonically).
    let mut signed_zero = neutral;
    signed_zero[31] |= 0x80;
    assert_eq!(
        GroupDistribution::from_bytes(&distribution_with_signing_key(signed_zero))
            .map(|d| d.key_id()),
        expected
    );
}

#[test]
fn too_far_ahead_is_refused_within_the_limit_accepted() {
    let mut rng = rng();
    let (mut alice, mut bob) = pair(&mut rng);
    let l = limits(2_000, 10);
    for _ in 0..11 {
        alice.encrypt(b"lost").unwrap();
    }
    let far = send(&mut alice, b"iteration 11");
    let before = bob.to_bytes();
    assert_eq!(
        bob.decrypt(&far, &l),
        Err(GroupError::TooFarAhead {
            iteration: 11,
            expected: 0,
            jump: 11,
            max: 10
        })
    );
    assert_eq!(bob.to_bytes(), before);
    let mut rng2 = ChaCha20Rng::seed_from_u64(19);
    let (mut alice, mut bob) = pair(&mut rng2);
    for _ in 0..10 {
        alice.encrypt(b"lost").unwrap();
    }
    let edge = send(&mut alice, b"iteration 10");
    assert_eq!(bob.decrypt(&edge, &l).unwrap().as_slice(), b"iteration 10");
}

#[test]
fn stored_keys_are_bounded_and_the_oldest_evicted() {
    let mut rng = rng();
    let (mut alice, mut bob) = pair(&mut rng);
    let l = limits(3, 100);
    let messages: Vec<GroupMessage> = (0..8u8).map(|i| send(&mut alice, &[i])).collect();
    // Receiving 7 skips 0..=6; only 4, 5, 6 are kept.
    assert_eq!(bob.decrypt(&messages[7], &l).unwrap().as_slice(), &[7]);
    for i in 0..4u32 {
        assert_eq!(
            bob.decrypt(&messages[i as usize], &l),
            Err(GroupError::KeyEvicted {
                key_id: alice.key_id(),
                iteration: i,
                max: 3
            })
        );
    }
    for i in 4..7u8 {
        assert_eq!(
            bob.decrypt(&messages[i as usize], &l).unwrap().as_slice(),
            &[i]
        );
    }
    // Stored keys evicted one at a time as later gaps add more.
    let (mut alice, mut bob) = pair(&mut rng);
    let messages: Vec<GroupMessage> = (0..6u8).map(|i| send(&mut alice, &[i])).collect();
    bob.decrypt(&messages[2], &l).unwrap(); // keeps 0, 1
    bob.decrypt(&messages[5], &l).unwrap(); // keeps 0, 1, 3, 4 -> evicts 0
    assert_eq!(
        bob.decrypt(&messages[0], &l),
        Err(GroupError::KeyEvicted {
            key_id: alice.key_id(),
            iteration: 0,
            max: 3
        })
    );
    assert_eq!(bob.decrypt(&messages[1], &l).unwrap().as_slice(), &[1]);
    assert_eq!(
        bob.decrypt(&messages[2], &l),
        Err(GroupError::Duplicate {
            key_id: alice.key_id(),
            iteration: 2
        })
    );
}

#[test]
fn a_late_receiver_cannot_read_messages_before_its_distribution() {
    let mut rng = rng();
    let group = GroupId::random(&mut rng);
    let mut alice = GroupSender::new(&mut rng, group);
    let early = send(&mut alice, b"before you joined");
    let mut dave = GroupReceiver::new(group);
    dave.process_distribution(&alice.distribution(), &GroupLimits::default())
        .unwrap();
    let late = send(&mut alice, b"welcome");
    assert_eq!(
        dave.decrypt(&early, &GroupLimits::default()),
        Err(GroupError::BeforeDistribution {
            key_id: alice.key_id(),
            iteration: 0,
            first: 1
        })
    );
    assert_eq!(
        dave.decrypt(&late, &GroupLimits::default())
            .unwrap()
            .as_slice(),
        b"welcome"
    );
}

#[test]
fn rotation_needs_a_new_distribution_and_generations_are_bounded() {
    let mut rng = rng();
    let (mut alice, mut bob) = pair(&mut rng);
    let l = limits(2_000, 25_000);
    let l2 = GroupLimits {
        max_generations: 2,
        ..l
    };
    let old = send(&mut alice, b"old key");
    let first_id = alice.key_id();
    let mut rotated = alice.rotate(&mut rng);
    assert_eq!(rotated.key_id(), first_id.wrapping_add(1));
    let rotated_distribution = rotated.distribution();
    let new = send(&mut rotated, b"new key");
    assert_eq!(
        bob.decrypt(&new, &l),
        Err(GroupError::UnknownSenderKey {
            key_id: rotated.key_id()
        })
    );
    bob.process_distribution(&rotated_distribution, &l2)
        .unwrap();
    assert_eq!(bob.decrypt(&new, &l2).unwrap().as_slice(), b"new key");
    // The old key is still held (2 generations): a late message under it still reads.
    assert_eq!(bob.decrypt(&old, &l2).unwrap().as_slice(), b"old key");
    let third = rotated.rotate(&mut rng);
    bob.process_distribution(&third.distribution(), &l2)
        .unwrap();
    assert_eq!(bob.key_ids(), vec![third.key_id(), rotated.key_id()]);
    let mut alice_again = alice;
    let older = send(&mut alice_again, b"oldest key, evicted");
    assert_eq!(
        bob.decrypt(&older, &l2),
        Err(GroupError::UnknownSenderKey { key_id: first_id })
    );
}

#[test]
fn state_round_trips_through_its_persisted_form() {
    let mut rng = rng();
    let (mut alice, mut bob) = pair(&mut rng);
    let l = GroupLimits::default();
    let messages: Vec<GroupMessage> = (0..4u8).map(|i| send(&mut alice, &[i])).collect();
    bob.decrypt(&messages[3], &l).unwrap();
    let mut bob = GroupReceiver::from_bytes(&bob.to_bytes()).unwrap();
    let mut alice = GroupSender::from_bytes(&alice.to_bytes()).unwrap();
    assert_eq!(bob.decrypt(&messages[1], &l).unwrap().as_slice(), &[1]);
    let next = send(&mut alice, b"after restore");
    assert_eq!(next.iteration(), 4);
    assert_eq!(bob.decrypt(&next, &l).unwrap().as_slice(), b"after restore");
    assert_eq!(
        GroupReceiver::from_bytes(&bob.to_bytes())
            .unwrap()
            .to_bytes(),
        bob.to_bytes()
    );
}

#[test]
fn receiver_state_decoding_checks_its_invariants() {
    let mut rng = rng();
    let (mut alice, mut bob) = pair(&mut rng);
    let messages: Vec<GroupMessage> = (0..3u8).map(|i| send(&mut alice, &[i])).collect();
    bob.decrypt(&messages[2], &GroupLimits::default()).unwrap();
    let good: generated::GroupReceiverState =
        wire::decode(&bob.to_bytes(), "group receiver state").unwrap();
    let check = |state: &generated::GroupReceiverState, field: &'static str| {
        assert!(matches!(
            GroupReceiver::from_bytes(&wire::encode(state)),
            Err(DecodeError::InvalidValue { field: f, .. }) if f == field
        ));
    };
    let mut s = good.clone();
    s.generations[0].skipped.swap(0, 1);
    check(&s, "skipped");
    let mut s = good.clone();
    s.generations[0].skipped[1].iteration = 3;
    check(&s, "skipped");
    let mut s = good.clone();
    s.generations[0].evicted_below = 4;
    check(&s, "evicted_below");
    let mut s = good.clone();
    s.generations.push(s.generations[0].clone());
    check(&s, "generations");
}

#[test]
fn exhausted_chain_refuses_to_send_and_changes_nothing() {
    let mut rng = rng();
    let (alice, _) = pair(&mut rng);
    let mut state: generated::GroupSenderState =
        wire::decode(&alice.to_bytes(), "group sender state").unwrap();
    state.iteration = u32::MAX - 1;
    let mut alice = GroupSender::from_bytes(&wire::encode(&state)).unwrap();
    assert_eq!(send(&mut alice, b"last").iteration(), u32::MAX - 1);
    let before = alice.to_bytes();
    assert_eq!(
        alice.encrypt(b"one too many").map(|m| m.iteration()),
        Err(GroupError::ChainExhausted)
    );
    assert_eq!(alice.to_bytes(), before);
}

#[test]
fn debug_output_shows_no_secret() {
    let mut rng = rng();
    let (alice, bob) = pair(&mut rng);
    let chain = alice.chain.key.0;
    let seed = *alice.signing.seed();
    let texts = [
        alloc::format!("{alice:?}"),
        alloc::format!("{bob:?}"),
        alloc::format!("{:?}", alice.distribution()),
    ];
    for text in texts {
        for secret in [chain, seed] {
            for window in secret.windows(4) {
                let hex: alloc::string::String =
                    window.iter().map(|b| alloc::format!("{b:02x}")).collect();
                assert!(!text.contains(&hex), "{text}");
                assert!(
                    !text.contains(&alloc::format!("{window:?}")[1..6]),
                    "{text}"
                );
            }
        }
    }
}

#[test]
fn a_group_id_shows_as_hex_to_people_and_tagged_in_debug() {
    let mut bytes = [0u8; 32];
    bytes[0] = 0xab;
    bytes[31] = 0x01;
    let id = GroupId::from_bytes(bytes);
    let hex = format!("ab{}01", "00".repeat(30));
    assert_eq!(id.to_string(), hex);
    assert_eq!(format!("{id:?}"), format!("GroupId({hex})"));
}

/// `0x01 || GroupMessage` written out by hand: group id `[3; 32]` (field 1), key id 7
/// (field 2), `iteration` as the varint bytes given (field 3, omitted when empty),
/// `ciphertext_len` bytes of 5 (field 4, omitted when 0) and the signature `[6; 64]`
/// (field 5).
fn hand_encoded_message(iteration_varint: &[u8], ciphertext_len: u8) -> Vec<u8> {
    let mut out = vec![0x01, 0x0a, 0x20];
    out.extend_from_slice(&[3; 32]);
    out.extend_from_slice(&[0x10, 7]);
    if !iteration_varint.is_empty() {
        out.push(0x18);
        out.extend_from_slice(iteration_varint);
    }
    // An empty field is left out, as canonical encoding does.
    if ciphertext_len > 0 {
        out.extend_from_slice(&[0x22, ciphertext_len]);
        out.extend(core::iter::repeat_n(5, usize::from(ciphertext_len)));
    }
    out.extend_from_slice(&[0x2a, 0x40]);
    out.extend_from_slice(&[6; 64]);
    out
}

#[test]
fn a_hand_encoded_group_message_decodes_to_its_fields() {
    let wire = hand_encoded_message(&[0x03], 16);
    let m = GroupMessage::from_bytes(&wire).unwrap();
    assert_eq!(m.group_id(), &GroupId::from_bytes([3; 32]));
    assert_eq!(m.key_id(), 7);
    assert_eq!(m.iteration(), 3);
    assert_eq!(m.ciphertext(), &[5u8; 16]);
    assert_eq!(m.signature(), &[6u8; 64]);
    assert_eq!(m.to_bytes(), wire);
    // The signed part is everything before the 66-byte signature field `2a 40 || sig`.
    let signed_len = 1 + 2 + 32 + 2 + 2 + 2 + 16;
    assert_eq!(wire.len(), signed_len + 66);
    assert_eq!(m.signed_part(), &wire[..signed_len]);
}

#[test]
fn a_group_message_ciphertext_may_be_exactly_a_tag_but_not_shorter() {
    // 16 bytes: an empty plaintext's tag alone.
    let m = GroupMessage::from_bytes(&hand_encoded_message(&[], 16)).unwrap();
    assert_eq!(m.ciphertext(), &[5u8; 16]);
    assert_eq!(m.iteration(), 0);
    for short in [0, 1, 15] {
        assert_eq!(
            GroupMessage::from_bytes(&hand_encoded_message(&[], short)),
            Err(DecodeError::InvalidValue {
                object: "group message",
                field: "ciphertext",
                reason: "shorter than the 16-byte AES-GCM tag",
            }),
            "{short}"
        );
    }
}

#[test]
fn a_group_message_iteration_may_be_2_32_minus_2_but_not_2_32_minus_1() {
    // 2^32 - 2 and 2^32 - 1 as protobuf varints.
    let last = GroupMessage::from_bytes(&hand_encoded_message(&[0xfe, 0xff, 0xff, 0xff, 0x0f], 16))
        .unwrap();
    assert_eq!(last.iteration(), 4_294_967_294);
    assert_eq!(
        GroupMessage::from_bytes(&hand_encoded_message(&[0xff, 0xff, 0xff, 0xff, 0x0f], 16)),
        Err(DecodeError::InvalidValue {
            object: "group message",
            field: "iteration",
            reason: "2^32 - 1 is never used",
        })
    );
}

#[test]
fn an_empty_group_message_round_trips() {
    let mut rng = rng();
    let (mut alice, mut bob) = pair(&mut rng);
    let m = send(&mut alice, b"");
    // An empty plaintext seals to the 16-byte tag alone.
    assert_eq!(m.ciphertext().len(), 16);
    assert_eq!(
        bob.decrypt(&m, &GroupLimits::default()).unwrap().as_slice(),
        b""
    );
}

#[test]
fn a_group_message_debug_shows_its_routing_fields_and_ciphertext_length() {
    let m = GroupMessage::from_bytes(&hand_encoded_message(&[0x03], 17)).unwrap();
    assert_eq!(
        format!("{m:?}"),
        format!(
            "GroupMessage {{ group_id: GroupId({}), key_id: 7, iteration: 3, ciphertext_len: 17, .. }}",
            "03".repeat(32)
        )
    );
}

/// The second negative distribution of tests/data/group_vectors.json (written by
/// tests/data/group_vectors.py): group id 00..1f, key id 0x01020304, iteration 300, chain
/// key db57..78, signing key 2543..9d.
const PYTHON_DISTRIBUTION: &str = "010a20000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f108486880818ac022220db57dbfc1144edb3a150ade2635440ac4a03fb44a6561f9b3ce495e616b00d782a202543b92ff1095511476adc8369db6ddc933665a11978dda1404ee1066ca9559d";
const PYTHON_SIGNING_KEY: &str = "2543b92ff1095511476adc8369db6ddc933665a11978dda1404ee1066ca9559d";

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).unwrap()
}

#[test]
fn a_python_distribution_decodes_to_its_fields_and_re_encodes_the_same() {
    let wire = unhex(PYTHON_DISTRIBUTION);
    let d = GroupDistribution::from_bytes(&wire).unwrap();
    let group: [u8; 32] = core::array::from_fn(|i| u8::try_from(i).unwrap());
    assert_eq!(d.group_id(), &GroupId::from_bytes(group));
    assert_eq!(d.key_id(), 0x0102_0304);
    assert_eq!(d.iteration(), 300);
    assert_eq!(
        d.chain_key.0.as_slice(),
        unhex("db57dbfc1144edb3a150ade2635440ac4a03fb44a6561f9b3ce495e616b00d78")
    );
    assert_eq!(
        d.signing_key().to_bytes().as_slice(),
        unhex(PYTHON_SIGNING_KEY)
    );
    assert_eq!(d.to_bytes().as_slice(), wire.as_slice());
}

#[test]
fn a_distribution_iteration_may_be_2_32_minus_2_but_not_2_32_minus_1() {
    // The Python distribution with its iteration varint (18 ac 02 = 300) replaced.
    let wire = unhex(PYTHON_DISTRIBUTION);
    let at = wire
        .windows(3)
        .position(|w| w == [0x18, 0xac, 0x02])
        .unwrap();
    let with_iteration = |varint: &[u8]| {
        let mut out = wire[..=at].to_vec();
        out.extend_from_slice(varint);
        out.extend_from_slice(&wire[at + 3..]);
        out
    };
    let last = GroupDistribution::from_bytes(&with_iteration(&[0xfe, 0xff, 0xff, 0xff, 0x0f]));
    assert_eq!(last.map(|d| d.iteration()), Ok(4_294_967_294));
    assert_eq!(
        GroupDistribution::from_bytes(&with_iteration(&[0xff, 0xff, 0xff, 0xff, 0x0f]))
            .map(|d| d.iteration()),
        Err(DecodeError::InvalidValue {
            object: "group distribution",
            field: "iteration",
            reason: "2^32 - 1 is never used",
        })
    );
}

#[test]
fn a_distribution_debug_shows_its_public_fields_only() {
    let d = GroupDistribution::from_bytes(&unhex(PYTHON_DISTRIBUTION)).unwrap();
    let group: alloc::string::String = (0..32u8).map(|b| format!("{b:02x}")).collect();
    assert_eq!(
        format!("{d:?}"),
        format!(
            "GroupDistribution {{ group_id: GroupId({group}), key_id: 16909060, iteration: 300, signing_key: IdentityKey({PYTHON_SIGNING_KEY}), .. }}"
        )
    );
}
