//! X3DH session setup: bundles, signatures, one-time prekey consumption, repeated and
//! replayed initial messages, low-order keys.

mod common;

use common::{Pair, Peer, Side, T0, pb, rng};
use ratchetbox::{
    Account, DecryptError, IdentityKey, MAX_USED_SETUPS, OneTimePreKey, OneTimePreKeyId,
    PreKeyBundle, Session, SessionConfig, SessionRecord, SetupError, SignedPreKey, X25519PublicKey,
};

#[test]
fn a_session_starts_from_a_published_bundle_in_bytes() {
    let mut pair = Pair::new(1);
    let bytes = pair.bundle(Some(2)).to_bytes();
    let bundle = PreKeyBundle::from_bytes(&bytes).expect("decodes");
    assert_eq!(bundle, pair.bundle(Some(2)));
    assert_eq!(bundle.identity_key(), pair.bob.account.identity_key());

    let mut record = SessionRecord::new();
    record
        .initiate(&mut pair.rng, &pair.alice.account, &bundle)
        .expect("initiate");
    let wire = record
        .encrypt(&mut pair.rng, b"from bytes")
        .expect("encrypt");
    assert_eq!(
        pair.receive(Side::Bob, &wire).expect("decrypts"),
        b"from bytes"
    );
    let session = pair.bob.record.session().expect("session");
    assert_eq!(session.remote_identity(), pair.alice.account.identity_key());
    assert_eq!(Some(session.id()), record.session_id());
    assert!(!session.is_initiator());
    assert!(record.session().expect("Alice's session").is_initiator());
}

#[test]
fn one_time_prekey_is_consumed_only_when_the_initial_message_decrypts() {
    let mut pair = Pair::new(2);
    let wire = pair.send(Side::Alice, b"first");
    let tampered = pb::edit_message(&wire, |m| {
        let c = &mut m.ratchet_mut().ciphertext;
        c[0] ^= 1;
    });

    // `reject` checks that the account (with its prekeys) and the record are unchanged.
    assert_eq!(
        pair.bob.reject(&tampered),
        DecryptError::AuthenticationFailed
    );
    assert!(
        pair.bob
            .account
            .one_time_prekeys()
            .any(|k| k.id() == OneTimePreKeyId(1))
    );
    assert!(pair.bob.record.session().is_none());

    assert_eq!(pair.receive(Side::Bob, &wire).expect("decrypts"), b"first");
    assert!(
        !pair
            .bob
            .account
            .one_time_prekeys()
            .any(|k| k.id() == OneTimePreKeyId(1))
    );
    assert_eq!(pair.bob.account.one_time_prekeys().count(), 9);
}

#[test]
fn repeated_initial_messages_land_in_one_session_in_any_order() {
    for seed in 0..20 {
        let _seed = common::SeedGuard(seed);
        let mut pair = Pair::new(100 + seed);
        let messages: Vec<(Vec<u8>, Vec<u8>)> = (0..6u8)
            .map(|i| {
                let text = vec![b'a' + i; 1 + i as usize];
                (pair.send(Side::Alice, &text), text)
            })
            .collect();
        for (wire, _) in &messages {
            assert!(
                ratchetbox::Message::from_bytes(wire)
                    .expect("decodes")
                    .is_initial()
            );
        }
        // Deliver in a seed-dependent order.
        let mut order: Vec<usize> = (0..messages.len()).collect();
        let mut r = rng(seed);
        for i in (1..order.len()).rev() {
            let j = (rand_core::Rng::next_u32(&mut r) as usize) % (i + 1);
            order.swap(i, j);
        }
        for &i in &order {
            let (wire, text) = &messages[i];
            assert_eq!(&pair.receive(Side::Bob, wire).expect("decrypts"), text);
        }
        assert_eq!(pair.bob.record.previous_sessions().count(), 0);
        assert_eq!(pair.bob.record.session_id(), pair.alice.record.session_id());
        assert_eq!(
            pair.bob
                .record
                .session()
                .expect("session")
                .skipped_key_count(),
            0
        );
    }
}

#[test]
fn initiator_stops_repeating_the_setup_once_it_hears_back() {
    let mut pair = Pair::new(3);
    pair.exchange(Side::Alice, b"one");
    assert!(
        pair.alice
            .record
            .session()
            .expect("session")
            .awaiting_reply()
    );
    pair.exchange(Side::Bob, b"two");
    assert!(
        !pair
            .alice
            .record
            .session()
            .expect("session")
            .awaiting_reply()
    );
    let wire = pair.send(Side::Alice, b"three");
    assert!(
        !ratchetbox::Message::from_bytes(&wire)
            .expect("decodes")
            .is_initial()
    );
    assert_eq!(pair.receive(Side::Bob, &wire).expect("decrypts"), b"three");
}

#[test]
fn another_setup_naming_a_used_one_time_prekey_fails() {
    let mut pair = Pair::new(4);
    let bundle = pair.bundle(Some(1));
    pair.exchange(Side::Alice, b"accepted");

    // Carol got the same bundle (a misbehaving or racing server).
    let mut carol = Peer::new(&mut pair.rng, SessionConfig::default());
    carol
        .record
        .initiate(&mut pair.rng, &carol.account, &bundle)
        .expect("initiate");
    let wire = carol
        .record
        .encrypt(&mut pair.rng, b"me too")
        .expect("encrypt");
    let mut bobs_record_for_carol = SessionRecord::new();
    let before = pair.bob.account.to_bytes().to_vec();
    assert_eq!(
        bobs_record_for_carol.decrypt(&mut pair.bob.account, &wire, T0),
        Err(DecryptError::OneTimePreKeyUsed { id: 1 })
    );
    assert_eq!(before, pair.bob.account.to_bytes().to_vec());
    assert!(bobs_record_for_carol.session().is_none());

    // Alice herself starting again from the same bundle (a new ephemeral key) fails too.
    let mut again = SessionRecord::new();
    again
        .initiate(&mut pair.rng, &pair.alice.account, &bundle)
        .expect("initiate");
    let wire = again.encrypt(&mut pair.rng, b"again").expect("encrypt");
    assert_eq!(
        pair.bob.reject(&wire),
        DecryptError::OneTimePreKeyUsed { id: 1 }
    );
}

#[test]
fn unknown_prekey_ids_are_reported() {
    let mut pair = Pair::new(5);
    let wire = pair.send(Side::Alice, b"x");
    // Bob issued one-time prekeys 1..=10 (all still held): 0 is never issued, 11 is the
    // next id, and neither may be reported as used.
    for id in [0, 11, 999, u32::MAX] {
        let unknown_otk = pb::edit_message(&wire, |m| {
            m.initial_mut().expect("initial").one_time_prekey_id = Some(id);
        });
        assert_eq!(
            pair.bob.reject(&unknown_otk),
            DecryptError::UnknownOneTimePreKey { id }
        );
    }
    let unknown_spk = pb::edit_message(&wire, |m| {
        m.initial_mut().expect("initial").signed_prekey_id = 7;
    });
    assert_eq!(
        pair.bob.reject(&unknown_spk),
        DecryptError::UnknownSignedPreKey { id: 7 }
    );
}

#[test]
fn replay_of_an_initial_message_never_creates_a_second_session() {
    let mut pair = Pair::new(6);
    let first = pair.send(Side::Alice, b"first");
    assert_eq!(pair.receive(Side::Bob, &first).expect("decrypts"), b"first");
    assert_eq!(
        pair.bob.reject(&first),
        DecryptError::Duplicate { counter: 0 }
    );
    // Even after the conversation has moved on for several turns.
    for i in 0..5 {
        pair.exchange(Side::Bob, format!("b{i}").as_bytes());
        pair.exchange(Side::Alice, format!("a{i}").as_bytes());
    }
    assert_eq!(
        pair.bob.reject(&first),
        DecryptError::Duplicate { counter: 0 }
    );
    assert_eq!(pair.bob.record.previous_sessions().count(), 0);

    // Into a fresh record (say the app deleted the conversation): the one-time prekey is gone.
    let mut fresh = SessionRecord::new();
    assert_eq!(
        fresh.decrypt(&mut pair.bob.account, &first, T0),
        Err(DecryptError::OneTimePreKeyUsed { id: 1 })
    );
    assert!(fresh.session().is_none());
}

#[test]
fn replay_of_a_setup_without_one_time_prekey_is_rejected_too() {
    let mut pair = Pair::new(7);
    let bundle = pair.bundle(None);
    let mut record = SessionRecord::new();
    record
        .initiate(&mut pair.rng, &pair.alice.account, &bundle)
        .expect("initiate");
    let wire = record.encrypt(&mut pair.rng, b"no otk").expect("encrypt");
    let mut bobs = SessionRecord::new();
    assert_eq!(
        bobs.decrypt(&mut pair.bob.account, &wire, T0).expect("ok"),
        b"no otk"
    );
    assert_eq!(
        bobs.decrypt(&mut pair.bob.account, &wire, T0),
        Err(DecryptError::Duplicate { counter: 0 })
    );
    let mut fresh = SessionRecord::new();
    let before = pair.bob.account.to_bytes().to_vec();
    assert_eq!(
        fresh.decrypt(&mut pair.bob.account, &wire, T0),
        Err(DecryptError::SetupAlreadyUsed)
    );
    assert_eq!(before, pair.bob.account.to_bytes().to_vec());
    // The memory survives persistence of the account.
    let mut restored = Account::from_bytes(&pair.bob.account.to_bytes()).expect("restores");
    assert_eq!(
        SessionRecord::new().decrypt(&mut restored, &wire, T0),
        Err(DecryptError::SetupAlreadyUsed)
    );
}

#[test]
fn the_replay_memory_of_a_signed_prekey_never_forgets_a_setup_and_refuses_new_ones_when_full() {
    let mut pair = Pair::new(30);
    let no_one_time_keys = pair.bundle(None);
    let day = 24 * 60 * 60;
    // A new conversation from Alice's account, set up without one-time keys of either kind.
    let start = |pair: &mut Pair, bundle: &PreKeyBundle, text: &[u8]| {
        let mut record = SessionRecord::new();
        record
            .initiate(&mut pair.rng, &pair.alice.account, bundle)
            .expect("initiate");
        let wire = record.encrypt(&mut pair.rng, text).expect("encrypt");
        (record, wire)
    };

    let (mut alice_first, first) = start(&mut pair, &no_one_time_keys, b"setup 0");
    let mut bob_first = SessionRecord::new();
    assert_eq!(
        bob_first.decrypt(&mut pair.bob.account, &first, T0),
        Ok(b"setup 0".to_vec())
    );
    for i in 1..MAX_USED_SETUPS {
        let text = format!("setup {i}");
        let (_, wire) = start(&mut pair, &no_one_time_keys, text.as_bytes());
        assert_eq!(
            SessionRecord::new().decrypt(&mut pair.bob.account, &wire, T0),
            Ok(text.into_bytes()),
            "setup {i} of {MAX_USED_SETUPS}"
        );
    }

    // The memory is full: setup number MAX_USED_SETUPS + 1 is refused and changes nothing.
    let (_, extra) = start(&mut pair, &no_one_time_keys, b"one too many");
    let account_before = pair.bob.account.to_bytes().to_vec();
    let mut bob_extra = SessionRecord::new();
    assert_eq!(
        bob_extra.decrypt(&mut pair.bob.account, &extra, T0),
        Err(DecryptError::ReplayMemoryFull {
            signed_prekey_id: 1,
            max: MAX_USED_SETUPS
        })
    );
    assert_eq!(account_before, pair.bob.account.to_bytes().to_vec());
    assert_eq!(
        bob_extra.to_bytes().to_vec(),
        SessionRecord::new().to_bytes().to_vec()
    );

    // The first setup is still remembered, MAX_USED_SETUPS + 1 setups later: its replay
    // creates nothing, also after the account was persisted.
    let mut fresh = SessionRecord::new();
    assert_eq!(
        fresh.decrypt(&mut pair.bob.account, &first, T0),
        Err(DecryptError::SetupAlreadyUsed)
    );
    assert!(fresh.session().is_none());
    let mut restored = Account::from_bytes(&pair.bob.account.to_bytes()).expect("restores");
    assert_eq!(
        SessionRecord::new().decrypt(&mut restored, &first, T0),
        Err(DecryptError::SetupAlreadyUsed)
    );
    assert_eq!(
        SessionRecord::new().decrypt(&mut restored, &extra, T0),
        Err(DecryptError::ReplayMemoryFull {
            signed_prekey_id: 1,
            max: MAX_USED_SETUPS
        })
    );
    assert_eq!(account_before, pair.bob.account.to_bytes().to_vec());

    // Sessions that exist go on: Alice's next initial message of setup 0 lands in its session.
    let again = alice_first
        .encrypt(&mut pair.rng, b"again")
        .expect("encrypt");
    assert_eq!(
        bob_first.decrypt(&mut pair.bob.account, &again, T0),
        Ok(b"again".to_vec())
    );
    assert_eq!(bob_first.previous_sessions().count(), 0);
    // A setup with a one-time prekey is not limited.
    let with_otk_bundle = pair.bundle(Some(2));
    let (_, with_otk) = start(&mut pair, &with_otk_bundle, b"with a one-time prekey");
    assert_eq!(
        SessionRecord::new().decrypt(&mut pair.bob.account, &with_otk, T0),
        Ok(b"with a one-time prekey".to_vec())
    );

    // The new signed prekey after a rotation has a memory of its own, and the old one keeps
    // its memory.
    pair.bob
        .account
        .rotate_signed_prekey(&mut pair.rng, T0.saturating_add_secs(day))
        .expect("rotate");
    let rotated = pair.bundle(None);
    let (_, on_new_prekey) = start(&mut pair, &rotated, b"on the new signed prekey");
    let mut bob_new = SessionRecord::new();
    assert_eq!(
        bob_new.decrypt(&mut pair.bob.account, &on_new_prekey, T0),
        Ok(b"on the new signed prekey".to_vec())
    );
    assert_eq!(
        SessionRecord::new().decrypt(&mut pair.bob.account, &first, T0),
        Err(DecryptError::SetupAlreadyUsed)
    );
    // Deleting the old signed prekey forgets its setups: their replays now name an unknown
    // prekey.
    assert_eq!(
        pair.bob
            .account
            .remove_replaced_prekeys(T0.saturating_add_secs(2 * day), 0),
        1
    );
    for replay in [&first, &extra] {
        assert_eq!(
            SessionRecord::new().decrypt(&mut pair.bob.account, replay, T0),
            Err(DecryptError::UnknownSignedPreKey { id: 1 })
        );
    }
    assert_eq!(
        SessionRecord::new().decrypt(&mut pair.bob.account, &on_new_prekey, T0),
        Err(DecryptError::SetupAlreadyUsed)
    );
}

#[test]
fn a_bad_signed_prekey_signature_aborts_the_setup() {
    let mut pair = Pair::new(8);
    let good = pair.bundle(Some(1)).to_bytes();
    let edits: Vec<pb::Edit<pb::PreKeyBundle>> = vec![
        (
            "signature bit",
            Box::new(|b| b.signed_prekey.as_mut().unwrap().signature[10] ^= 0x20),
        ),
        (
            "prekey id",
            Box::new(|b| b.signed_prekey.as_mut().unwrap().id += 1),
        ),
        (
            "created_at",
            Box::new(|b| b.signed_prekey.as_mut().unwrap().created_at += 1),
        ),
        (
            "prekey bit",
            Box::new(|b| b.signed_prekey.as_mut().unwrap().public_key[3] ^= 1),
        ),
    ];
    for (what, edit) in edits {
        let mut bundle: pb::PreKeyBundle = pb::decode(&good);
        edit(&mut bundle);
        let bundle = PreKeyBundle::from_bytes(&pb::encode(&bundle)).expect("still well-formed");
        let result = Session::initiate(
            &mut pair.rng,
            &pair.alice.account,
            &bundle,
            SessionConfig::default(),
        );
        assert_eq!(result.err(), Some(SetupError::BadSignature), "{what}");
    }

    // A signed prekey genuinely signed, but by someone else than the bundle's identity.
    let carol = Account::new(&mut pair.rng, T0);
    let forged = PreKeyBundle::new(
        pair.bob.account.identity_key(),
        carol.signed_prekey().clone(),
        None,
        Some(pair.bob.account.last_resort_kem_prekey().clone()),
    );
    let result = Session::initiate(
        &mut pair.rng,
        &pair.alice.account,
        &forged,
        SessionConfig::default(),
    );
    assert_eq!(result.err(), Some(SetupError::BadSignature));
}

/// Signed prekeys are checked with `verify_strict`, not with plain Ed25519 `verify`: this
/// signature is accepted by the second and must be refused.
///
/// The vector is the "neutral R" construction. The identity is the key of seed `[7; 32]`:
/// `a` the clamped scalar from SHA-512 of the seed, `A = [a]B`. The message `M` is the
/// prekey's signed encoding (id 1, created at 1764000000, public key `00 01 .. 1f`).
/// `R = 01 00 .. 00` encodes the neutral point (0, 1), of small order. `k = SHA-512(R || A ||
/// M) mod L` and `s = k * a mod L`, so `[s]B = [k]A = R + [k]A`. Cofactorless `verify`
/// recomputes `[s]B - [k]A`, the neutral point, and compares its encoding with `R`: equal.
/// `verify_strict` also rejects a small-order `R`. (Recomputed with an independent Python
/// Ed25519 model during the audit of issue 2.)
#[test]
fn a_signature_only_plain_ed25519_verify_accepts_is_refused() {
    use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};

    let identity_bytes =
        hex_array("ea4a6c63e29c520abef5507b132ec5f9954776aebebe7b92421eea691446d22c");
    let prekey_bytes: [u8; 32] = core::array::from_fn(|i| i as u8);
    let mut signature = [0u8; 64];
    signature[0] = 1;
    signature[32..].copy_from_slice(&hex_array(
        "2e80c563cffb2255e6cfb8099d77eaeec11840a393efb75a7b5c1b4f27e2e00c",
    ));
    let created_at = ratchetbox::Timestamp::from_unix_secs(1_764_000_000);
    assert_eq!(
        SigningKey::from_bytes(&[7; 32]).verifying_key().to_bytes(),
        identity_bytes,
        "the identity is the key of seed [7; 32]"
    );

    // Plain verification accepts it, strict verification does not: the vector tells the two
    // apart.
    let mut message = b"ratchetbox v1 signed prekey".to_vec();
    message.extend_from_slice(&1u32.to_be_bytes());
    message.extend_from_slice(&1_764_000_000u64.to_be_bytes());
    message.extend_from_slice(&prekey_bytes);
    let verifying = VerifyingKey::from_bytes(&identity_bytes).expect("a valid point");
    let dalek_signature = Signature::from_bytes(&signature);
    assert!(verifying.verify(&message, &dalek_signature).is_ok());
    assert!(verifying.verify_strict(&message, &dalek_signature).is_err());

    // ratchetbox refuses it.
    let identity = IdentityKey::from_bytes(&identity_bytes).expect("identity key");
    let prekey = SignedPreKey::new(
        ratchetbox::SignedPreKeyId(1),
        created_at,
        X25519PublicKey::from_bytes(prekey_bytes).expect("canonical"),
        signature,
    );
    assert!(!prekey.verify(&identity));
    // The same prekey with an honest signature by that identity would be accepted, so the
    // refusal above is about the signature alone.
    let honest = SignedPreKey::new(
        ratchetbox::SignedPreKeyId(1),
        created_at,
        X25519PublicKey::from_bytes(prekey_bytes).expect("canonical"),
        ed25519_dalek::Signer::sign(&SigningKey::from_bytes(&[7; 32]), &message).to_bytes(),
    );
    assert!(honest.verify(&identity));

    // A bundle carrying it, after a trip through bytes, aborts the setup.
    let mut r = rng(40);
    let alice = Account::new(&mut r, T0);
    let bundle = PreKeyBundle::new(identity, prekey, None, None);
    let bundle = PreKeyBundle::from_bytes(&bundle.to_bytes()).expect("well-formed");
    for config in [
        SessionConfig::default(),
        SessionConfig::default().with_classical_setup_allowed(true),
    ] {
        assert_eq!(
            Session::initiate(&mut r, &alice, &bundle, config).err(),
            Some(SetupError::BadSignature)
        );
    }
}

#[test]
fn bundle_with_own_identity_is_refused() {
    let mut pair = Pair::new(9);
    let own = pair
        .alice
        .account
        .prekey_bundle(None, None)
        .expect("bundle");
    let result = Session::initiate(
        &mut pair.rng,
        &pair.alice.account,
        &own,
        SessionConfig::default(),
    );
    assert_eq!(result.err(), Some(SetupError::OwnBundle));
}

/// Points of small order on Curve25519 (u-coordinates), from RFC 7748 section 7 and the
/// X25519 Wycheproof vectors: 0, 1 and a point of order 8.
fn low_order_points() -> Vec<[u8; 32]> {
    let mut one = [0u8; 32];
    one[0] = 1;
    let order8 = hex_array("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800");
    vec![[0u8; 32], one, order8]
}

fn hex_array(s: &str) -> [u8; 32] {
    let bytes: Vec<u8> = (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect();
    bytes.try_into().expect("32 bytes")
}

#[test]
fn low_order_one_time_prekey_in_a_bundle_is_rejected() {
    let mut pair = Pair::new(10);
    for point in low_order_points() {
        let bundle = PreKeyBundle::new(
            pair.bob.account.identity_key(),
            pair.bob.account.signed_prekey().clone(),
            Some(OneTimePreKey::new(
                OneTimePreKeyId(1),
                X25519PublicKey::from_bytes(point).expect("canonical"),
            )),
            Some(pair.bob.account.last_resort_kem_prekey().clone()),
        );
        let result = Session::initiate(
            &mut pair.rng,
            &pair.alice.account,
            &bundle,
            SessionConfig::default(),
        );
        assert_eq!(result.err(), Some(SetupError::LowOrderKey));
    }
}

#[test]
fn low_order_signed_prekey_is_rejected_even_with_a_valid_signature() {
    // Build an identity whose secret key we know, and sign a low-order prekey with it.
    let seed = [42u8; 32];
    let signing = ed25519_dalek::SigningKey::from_bytes(&seed);
    let identity =
        IdentityKey::from_bytes(&signing.verifying_key().to_bytes()).expect("valid identity");
    let mut pair = Pair::new(11);
    for point in low_order_points() {
        let mut message = b"ratchetbox v1 signed prekey".to_vec();
        message.extend_from_slice(&1u32.to_be_bytes());
        message.extend_from_slice(&T0.as_unix_secs().to_be_bytes());
        message.extend_from_slice(&point);
        let signature = ed25519_dalek::Signer::sign(&signing, &message).to_bytes();
        let prekey = SignedPreKey::new(
            ratchetbox::SignedPreKeyId(1),
            T0,
            X25519PublicKey::from_bytes(point).expect("canonical"),
            signature,
        );
        assert!(
            prekey.verify(&identity),
            "the test's signature must be valid"
        );
        // A classical bundle (the test has no KEM key signed by this identity).
        let bundle = PreKeyBundle::new(identity, prekey, None, None);
        let result = Session::initiate(
            &mut pair.rng,
            &pair.alice.account,
            &bundle,
            SessionConfig::default().with_classical_setup_allowed(true),
        );
        assert_eq!(result.err(), Some(SetupError::LowOrderKey));
    }
}

#[test]
fn low_order_base_key_in_an_initial_message_is_rejected() {
    let mut pair = Pair::new(12);
    let wire = pair.send(Side::Alice, b"x");
    for point in low_order_points() {
        let tampered = pb::edit_message(&wire, |m| {
            m.initial_mut().expect("initial").base_key = point.to_vec();
        });
        assert_eq!(pair.bob.reject(&tampered), DecryptError::LowOrderKey);
    }
}

#[test]
fn every_field_of_an_initial_message_is_bound() {
    let mut pair = Pair::new(13);
    let wire = pair.send(Side::Alice, b"bound");
    let other_identity = Account::new(&mut pair.rng, T0).identity_key();
    // Alice's identity with the sign bit of x flipped: the negated Edwards point, which has
    // the same Montgomery u, so every DH value is unchanged and only the associated data
    // (which holds the Ed25519 encoding) differs.
    let alice = pair.alice.account.identity_key();
    let mut negated = alice.to_bytes();
    negated[31] ^= 0x80;
    let negated = IdentityKey::from_bytes(&negated).expect("-A is a valid identity key");
    assert_ne!(negated, alice);
    assert_eq!(negated.to_x25519(), alice.to_x25519());
    let edits: Vec<pb::Edit<pb::Message>> = vec![
        (
            "identity sign bit (same DH values, other associated data)",
            Box::new(move |m| m.initial_mut().unwrap().identity_key = negated.to_bytes().to_vec()),
        ),
        (
            "identity",
            Box::new(move |m| {
                m.initial_mut().unwrap().identity_key = other_identity.to_bytes().to_vec()
            }),
        ),
        (
            "base key",
            Box::new(|m| m.initial_mut().unwrap().base_key[5] ^= 4),
        ),
        (
            "one-time prekey id",
            Box::new(|m| m.initial_mut().unwrap().one_time_prekey_id = Some(2)),
        ),
        (
            "no one-time prekey",
            Box::new(|m| m.initial_mut().unwrap().one_time_prekey_id = None),
        ),
        (
            "ratchet key",
            Box::new(|m| m.ratchet_mut().ratchet_key[0] ^= 0x80),
        ),
        ("counter", Box::new(|m| m.ratchet_mut().counter = 1)),
        (
            "previous counter",
            Box::new(|m| m.ratchet_mut().previous_counter = 3),
        ),
        ("nonce", Box::new(|m| m.ratchet_mut().nonce[11] ^= 1)),
        (
            "ciphertext",
            Box::new(|m| *m.ratchet_mut().ciphertext.first_mut().unwrap() ^= 1),
        ),
        (
            "tag",
            Box::new(|m| *m.ratchet_mut().ciphertext.last_mut().unwrap() ^= 1),
        ),
    ];
    for (what, edit) in edits {
        let tampered = pb::edit_message(&wire, edit);
        assert_eq!(
            pair.bob.reject(&tampered),
            DecryptError::AuthenticationFailed,
            "{what}"
        );
    }
    // Nothing was consumed: the genuine message still works.
    assert_eq!(pair.receive(Side::Bob, &wire).expect("decrypts"), b"bound");
}
