//! Every single-bit change of a message that was already delivered is refused, with the
//! account and the record byte-identical, and the conversation then goes on.
//!
//! A review found that flipping bit 255 of a delivered initial message's base key (a bit
//! X25519 ignores, RFC 7748 section 5) replayed the setup: same keys, other bytes, so the
//! replay memory and the session matching did not recognise it. These tests change every bit
//! of initial messages (with one-time keys, without any, and classical) and of a ratchet
//! message, and deliver each variant both into the record that read the original and into a
//! fresh record (an app that deleted the conversation).

mod common;

use std::collections::BTreeMap;

use common::{Pair, Peer, Side, T0, pb};
use ratchetbox::{
    DecodeError, DecryptError, KemPreKeyId, OneTimePreKeyId, SessionConfig, SessionRecord,
};

fn flip(wire: &[u8], bit: usize) -> Vec<u8> {
    let mut variant = wire.to_vec();
    variant[bit / 8] ^= 1 << (bit % 8);
    variant
}

/// The kind of an error, without its fields, for a tally.
fn kind(error: &DecryptError) -> String {
    let debug = format!("{error:?}");
    let end = debug.find([' ', '(', '{']).unwrap_or(debug.len());
    match error {
        DecryptError::Decode(decode) => {
            let inner = format!("{decode:?}");
            let inner_end = inner.find([' ', '(', '{']).unwrap_or(inner.len());
            format!("Decode({})", &inner[..inner_end])
        }
        _ => debug[..end].to_string(),
    }
}

/// Delivers every single-bit variant of `wire` to `peer` (which has read `wire`) and to a
/// fresh record over `peer`'s account. Each must be refused with everything unchanged.
/// Returns how often each kind of error was seen.
fn refuse_every_bit_flip(peer: &mut Peer, wire: &[u8]) -> BTreeMap<String, usize> {
    let mut tally = BTreeMap::new();
    for bit in 0..wire.len() * 8 {
        let variant = flip(wire, bit);
        // Into the record that read the original (`reject` compares the serialized account
        // and record before and after).
        let error = peer.reject(&variant);
        *tally.entry(kind(&error)).or_insert(0) += 1;

        // Into a fresh record: the account is what remembers the setup.
        let account_before = peer.account.to_bytes().to_vec();
        let mut fresh = SessionRecord::with_config(peer.record.config());
        let outcome = fresh.decrypt(&mut peer.account, &variant, T0);
        let error = outcome.expect_err("a bit-flipped copy of a delivered message was accepted");
        assert_eq!(
            account_before,
            peer.account.to_bytes().to_vec(),
            "bit {bit}: a refused message ({error}) changed the account"
        );
        assert!(
            fresh.session().is_none(),
            "bit {bit}: a session was created"
        );
        *tally.entry(format!("fresh {}", kind(&error))).or_insert(0) += 1;
    }
    tally
}

/// The bit index of bit 255 (the top bit) of the 32-byte key `key` inside `wire`.
fn top_bit_of(wire: &[u8], key: &[u8]) -> usize {
    let start = wire
        .windows(key.len())
        .position(|w| w == key)
        .expect("key inside the message");
    (start + 31) * 8 + 7
}

fn base_key_of(wire: &[u8]) -> Vec<u8> {
    let mut message: pb::Message = pb::decode(wire);
    message.initial_mut().expect("initial").base_key.clone()
}

fn ratchet_key_of(wire: &[u8]) -> Vec<u8> {
    let mut message: pb::Message = pb::decode(wire);
    message.ratchet_mut().ratchet_key.clone()
}

/// The variant with bit 255 of `key` flipped gets the canonical-key decoding error, in the
/// record that read the original and in a fresh one.
fn top_bit_is_a_decode_error(peer: &mut Peer, wire: &[u8], key: &[u8], field: &str) {
    let variant = flip(wire, top_bit_of(wire, key));
    let expected_object = if field == "base_key" {
        "InitialMessage"
    } else {
        "RatchetMessage"
    };
    let check = |error: DecryptError| match error {
        DecryptError::Decode(DecodeError::NonCanonicalKey { object, field: f }) => {
            assert_eq!((object, f), (expected_object, field));
        }
        other => panic!("bit 255 of {field}: expected NonCanonicalKey, got {other:?}"),
    };
    check(peer.reject(&variant));
    let mut fresh = SessionRecord::with_config(peer.record.config());
    check(fresh.decrypt(&mut peer.account, &variant, T0).unwrap_err());
}

/// After all that, both sides still talk, in both directions, several turns.
fn conversation_goes_on(pair: &mut Pair) {
    for turn in 0..3 {
        pair.exchange(Side::Bob, format!("bob {turn}").as_bytes());
        pair.exchange(Side::Alice, format!("alice {turn}").as_bytes());
    }
}

/// Starts Alice's record afresh from a bundle Bob makes with the given one-time keys.
fn restart_alice(pair: &mut Pair, one_time: Option<u32>, kem_one_time: Option<KemPreKeyId>) {
    let bundle = pair
        .bob
        .account
        .prekey_bundle(one_time.map(OneTimePreKeyId), kem_one_time)
        .expect("bundle");
    let config = pair.alice.record.config();
    pair.alice.record = SessionRecord::with_config(config);
    pair.alice
        .record
        .initiate(&mut pair.rng, &pair.alice.account, &bundle)
        .expect("initiate");
}

fn initial_message_case(pair: &mut Pair) {
    let wire = pair.send(Side::Alice, b"pay 100");
    assert_eq!(
        pair.receive(Side::Bob, &wire).expect("decrypts"),
        b"pay 100"
    );
    let base_key = base_key_of(&wire);
    let ratchet_key = ratchet_key_of(&wire);
    top_bit_is_a_decode_error(&mut pair.bob, &wire, &base_key, "base_key");
    top_bit_is_a_decode_error(&mut pair.bob, &wire, &ratchet_key, "ratchet_key");
    let tally = refuse_every_bit_flip(&mut pair.bob, &wire);
    println!("initial message, {} bits: {tally:?}", wire.len() * 8);
    // Flips inside the ciphertext fail authentication in both records.
    assert!(tally["AuthenticationFailed"] >= 8 * 16, "{tally:?}");
    assert_eq!(pair.bob.record.previous_sessions().count(), 0);
    conversation_goes_on(pair);
}

#[test]
fn every_bit_flip_of_a_delivered_initial_message_with_one_time_keys_is_refused() {
    let mut pair = Pair::new(101);
    pair.bob
        .account
        .generate_one_time_kem_prekeys(&mut pair.rng, 1, T0)
        .expect("kem prekeys");
    let kem_id = pair
        .bob
        .account
        .one_time_kem_prekeys()
        .next()
        .expect("one")
        .id();
    restart_alice(&mut pair, Some(2), Some(kem_id));
    initial_message_case(&mut pair);
}

#[test]
fn every_bit_flip_of_a_delivered_initial_message_without_one_time_keys_is_refused() {
    let mut pair = Pair::new(102);
    restart_alice(&mut pair, None, None);
    initial_message_case(&mut pair);
}

#[test]
fn every_bit_flip_of_a_delivered_classical_initial_message_is_refused() {
    let config = SessionConfig::default().with_classical_setup_allowed(true);
    let mut pair = Pair::with_config(102, config);
    // A bundle without a KEM prekey makes a classical (X3DH) setup.
    let bundle = pair.bob.account.prekey_bundle(None, None).expect("bundle");
    let classical = ratchetbox::PreKeyBundle::new(
        bundle.identity_key(),
        bundle.signed_prekey().clone(),
        None,
        None,
    );
    pair.alice.record = SessionRecord::with_config(config);
    pair.alice
        .record
        .initiate(&mut pair.rng, &pair.alice.account, &classical)
        .expect("initiate");
    assert!(
        !pair
            .alice
            .record
            .session()
            .expect("session")
            .is_post_quantum()
    );
    initial_message_case(&mut pair);
}

#[test]
fn every_bit_flip_of_a_delivered_ratchet_message_is_refused() {
    let mut pair = Pair::established(103);
    // A message that starts a new chain (a ratchet step) and one later in the chain.
    let first = pair.send(Side::Alice, b"new chain");
    let second = pair.send(Side::Alice, b"same chain");
    for wire in [first, second] {
        assert!(pair.receive(Side::Bob, &wire).is_ok());
        let ratchet_key = ratchet_key_of(&wire);
        top_bit_is_a_decode_error(&mut pair.bob, &wire, &ratchet_key, "ratchet_key");
        let tally = refuse_every_bit_flip(&mut pair.bob, &wire);
        println!("ratchet message, {} bits: {tally:?}", wire.len() * 8);
        assert!(tally["AuthenticationFailed"] >= 8 * 16, "{tally:?}");
    }
    conversation_goes_on(&mut pair);
}
