//! Post-quantum session setup (PQXDH with ML-KEM-1024): end to end, signatures, the KEM
//! ciphertext, one-time KEM prekey consumption, the last-resort key, and downgrade attempts.

mod common;

use common::{Pair, Peer, Side, T0, pb};
use ratchetbox::{
    Account, DecodeError, DecryptError, KEM_PUBLIC_KEY_LEN, KemPreKeyId, OneTimePreKeyId,
    PreKeyBundle, Session, SessionConfig, SessionRecord, SetupError,
};

fn kem_otk_bundle(pair: &mut Pair) -> PreKeyBundle {
    let kem = pair
        .bob
        .account
        .generate_one_time_kem_prekeys(&mut pair.rng, 1, T0)
        .unwrap();
    pair.bob
        .account
        .prekey_bundle(Some(OneTimePreKeyId(2)), Some(kem[0].id()))
        .unwrap()
}

/// `wire`, a post-quantum initial message, naming KEM prekey `id` instead.
fn naming_kem_prekey(wire: &[u8], id: u32) -> Vec<u8> {
    pb::edit_message(wire, |m| {
        m.initial_mut().unwrap().kem.as_mut().unwrap().prekey_id = id;
    })
}

fn initiate(pair: &mut Pair, bundle: &PreKeyBundle) -> SessionRecord {
    let mut record = SessionRecord::new();
    record
        .initiate(&mut pair.rng, &pair.alice.account, bundle)
        .unwrap();
    record
}

#[test]
fn post_quantum_setup_is_the_default_end_to_end() {
    let mut pair = Pair::new(1);
    let bundle = kem_otk_bundle(&mut pair);
    let kem_id = bundle.kem_prekey().unwrap().id();
    let mut alice = initiate(&mut pair, &bundle);
    assert!(alice.session().unwrap().is_post_quantum());
    let wire = alice.encrypt(&mut pair.rng, b"quantum-safe hello").unwrap();
    let message = ratchetbox::Message::from_bytes(&wire).unwrap();
    assert!(message.is_initial() && message.is_post_quantum());

    let mut bob = SessionRecord::new();
    assert_eq!(
        bob.decrypt(&mut pair.bob.account, &wire, T0).unwrap(),
        b"quantum-safe hello"
    );
    assert!(bob.session().unwrap().is_post_quantum());
    // The one-time KEM prekey is consumed; the last-resort one stays.
    assert!(
        pair.bob
            .account
            .one_time_kem_prekeys()
            .all(|k| k.id() != kem_id)
    );
    let reply = bob.encrypt(&mut pair.rng, b"and back").unwrap();
    assert_eq!(
        alice.decrypt(&mut pair.alice.account, &reply, T0).unwrap(),
        b"and back"
    );
    assert!(!alice.session().unwrap().awaiting_reply());
}

#[test]
fn the_last_resort_kem_prekey_serves_many_initiators() {
    let mut pair = Pair::new(2);
    let bundle = pair.bob.account.prekey_bundle(None, None).unwrap();
    assert_eq!(
        bundle.kem_prekey().unwrap().id(),
        pair.bob.account.last_resort_kem_prekey().id()
    );
    for i in 0..3u8 {
        let initiator = Account::new(&mut pair.rng, T0);
        let mut record = SessionRecord::new();
        record.initiate(&mut pair.rng, &initiator, &bundle).unwrap();
        let wire = record.encrypt(&mut pair.rng, &[i]).unwrap();
        let mut bobs = SessionRecord::new();
        assert_eq!(bobs.decrypt(&mut pair.bob.account, &wire, T0).unwrap(), [i]);
        // A replay of a setup without any one-time key cannot start a second session.
        assert_eq!(
            SessionRecord::new().decrypt(&mut pair.bob.account, &wire, T0),
            Err(DecryptError::SetupAlreadyUsed)
        );
    }
}

#[test]
fn a_bad_kem_prekey_signature_aborts_the_setup() {
    let mut pair = Pair::new(3);
    let good = kem_otk_bundle(&mut pair).to_bytes();
    let edits: Vec<pb::Edit<pb::PreKeyBundle>> = vec![
        (
            "signature",
            Box::new(|b| b.kem_prekey.as_mut().unwrap().signature[0] ^= 1),
        ),
        ("id", Box::new(|b| b.kem_prekey.as_mut().unwrap().id += 1)),
        (
            "created_at",
            Box::new(|b| b.kem_prekey.as_mut().unwrap().created_at -= 1),
        ),
    ];
    for (what, edit) in edits {
        let mut bundle: pb::PreKeyBundle = pb::decode(&good);
        edit(&mut bundle);
        let bundle = PreKeyBundle::from_bytes(&pb::encode(&bundle)).expect("well-formed");
        let result = Session::initiate(
            &mut pair.rng,
            &pair.alice.account,
            &bundle,
            SessionConfig::default(),
        );
        assert_eq!(result.err(), Some(SetupError::BadKemSignature), "{what}");
    }
    // A KEM prekey genuinely signed by someone else.
    let carol = Account::new(&mut pair.rng, T0);
    let forged = PreKeyBundle::new(
        pair.bob.account.identity_key(),
        pair.bob.account.signed_prekey().clone(),
        None,
        Some(carol.last_resort_kem_prekey().clone()),
    );
    let result = Session::initiate(
        &mut pair.rng,
        &pair.alice.account,
        &forged,
        SessionConfig::default(),
    );
    assert_eq!(result.err(), Some(SetupError::BadKemSignature));
}

#[test]
fn a_tampered_kem_public_key_in_a_bundle_is_refused() {
    let mut pair = Pair::new(13);
    let good = kem_otk_bundle(&mut pair).to_bytes();
    fn public_key(b: &mut pb::PreKeyBundle) -> &mut Vec<u8> {
        &mut b.kem_prekey.as_mut().unwrap().public_key
    }
    // The encapsulation key is 4 x 256 coefficients of 12 bits (1,536 bytes), then the
    // 32-byte seed rho. A coefficient of 0xfff is not reduced mod q = 3329.
    let not_reduced = |b: &mut pb::PreKeyBundle| {
        let key = public_key(b);
        key[0] = 0xff;
        key[1] |= 0x0f;
    };
    let reduced_bit = |b: &mut pb::PreKeyBundle| {
        // Bits 4-7 of byte 1 and byte 2 hold the second coefficient. Clearing its top bit
        // keeps it below 2048 < q, and bit 4 of byte 1 (its lowest) is flipped.
        let key = public_key(b);
        key[2] &= 0x7f;
        key[1] ^= 0x10;
    };
    let edits: Vec<(pb::Edit<pb::PreKeyBundle>, Result<SetupError, DecodeError>)> = vec![
        (
            ("a coefficient not reduced mod q", Box::new(not_reduced)),
            Err(DecodeError::InvalidValue {
                object: "KemPreKey",
                field: "public_key",
                reason: "not a valid ML-KEM-1024 public key (coefficients not reduced mod q)",
            }),
        ),
        (
            (
                "one byte short",
                Box::new(|b| public_key(b).truncate(KEM_PUBLIC_KEY_LEN - 1)),
            ),
            Err(DecodeError::InvalidLength {
                object: "KemPreKey",
                field: "public_key",
                expected: KEM_PUBLIC_KEY_LEN,
                found: KEM_PUBLIC_KEY_LEN - 1,
            }),
        ),
        (
            (
                "a bit of a coefficient, still reduced",
                Box::new(reduced_bit),
            ),
            Ok(SetupError::BadKemSignature),
        ),
        (
            (
                "a bit of rho",
                Box::new(|b| public_key(b)[KEM_PUBLIC_KEY_LEN - 1] ^= 0x80),
            ),
            Ok(SetupError::BadKemSignature),
        ),
    ];
    for ((what, edit), expected) in edits {
        let mut bundle: pb::PreKeyBundle = pb::decode(&good);
        edit(&mut bundle);
        let result = PreKeyBundle::from_bytes(&pb::encode(&bundle)).map(|bundle| {
            Session::initiate(
                &mut pair.rng,
                &pair.alice.account,
                &bundle,
                SessionConfig::default(),
            )
            .expect_err("a tampered KEM prekey must not start a session")
        });
        assert_eq!(result, expected, "{what}");
    }
}

/// The one-time prekey in a bundle is not signed (as in Signal): a server or attacker can
/// change it. The setup then goes ahead, but Bob cannot decrypt the first message, and his
/// one-time prekeys (classical and KEM) are not consumed.
#[test]
fn a_tampered_one_time_prekey_in_a_bundle_fails_the_first_message_and_consumes_nothing() {
    let mut pair = Pair::new(14);
    let good = kem_otk_bundle(&mut pair);
    let kem_id = good.kem_prekey().unwrap().id();
    let good_bytes = good.to_bytes();
    let edits: Vec<(pb::Edit<pb::OneTimePreKey>, DecryptError)> = vec![
        (
            (
                "id of another unused one-time prekey",
                Box::new(|k| k.id = 3),
            ),
            DecryptError::AuthenticationFailed,
        ),
        (
            ("id never issued", Box::new(|k| k.id = 999)),
            DecryptError::UnknownOneTimePreKey { id: 999 },
        ),
        (
            ("public key bit", Box::new(|k| k.public_key[5] ^= 0x04)),
            DecryptError::AuthenticationFailed,
        ),
    ];
    for ((what, edit), expected) in edits {
        let mut bundle: pb::PreKeyBundle = pb::decode(&good_bytes);
        edit(bundle.one_time_prekey.as_mut().unwrap());
        let bundle = PreKeyBundle::from_bytes(&pb::encode(&bundle)).expect("well-formed");
        let mut alice = initiate(&mut pair, &bundle);
        let wire = alice.encrypt(&mut pair.rng, b"first").unwrap();
        // `reject` checks that Bob's account and record are unchanged.
        assert_eq!(pair.bob.reject(&wire), expected, "{what}");
        assert!(pair.bob.record.session().is_none(), "{what}");
    }
    let unused = |pair: &Pair| {
        (
            pair.bob
                .account
                .one_time_prekeys()
                .any(|k| k.id() == OneTimePreKeyId(2)),
            pair.bob
                .account
                .one_time_kem_prekeys()
                .any(|k| k.id() == kem_id),
        )
    };
    assert_eq!(unused(&pair), (true, true));
    // The genuine bundle still works, and only then are its one-time prekeys used.
    let mut alice = initiate(&mut pair, &good);
    let wire = alice.encrypt(&mut pair.rng, b"first").unwrap();
    assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"first");
    assert_eq!(unused(&pair), (false, false));
}

#[test]
fn a_tampered_kem_ciphertext_fails_the_first_message_and_creates_nothing() {
    let mut pair = Pair::new(4);
    let bundle = kem_otk_bundle(&mut pair);
    let kem_id = bundle.kem_prekey().unwrap().id();
    let mut alice = initiate(&mut pair, &bundle);
    let wire = alice.encrypt(&mut pair.rng, b"first").unwrap();
    for (byte, bit) in [(0usize, 0u8), (700, 3), (1567, 7)] {
        let tampered = pb::edit_message(&wire, |m| {
            m.initial_mut().unwrap().kem.as_mut().unwrap().ciphertext[byte] ^= 1 << bit;
        });
        // ML-KEM's implicit rejection yields an unrelated secret: the message cannot
        // authenticate, and nothing is created or consumed (`reject` checks the state).
        assert_eq!(
            pair.bob.reject(&tampered),
            DecryptError::AuthenticationFailed
        );
        assert!(pair.bob.record.session().is_none());
        assert!(
            pair.bob
                .account
                .one_time_kem_prekeys()
                .any(|k| k.id() == kem_id)
        );
    }
    assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"first");
    // A tampered ciphertext in a later repetition of the setup does not match the session.
    let second = alice.encrypt(&mut pair.rng, b"second").unwrap();
    let tampered = pb::edit_message(&second, |m| {
        m.initial_mut().unwrap().kem.as_mut().unwrap().ciphertext[9] ^= 1;
    });
    // (It is treated as a new setup, whose one-time prekeys are already used.)
    assert_eq!(
        pair.bob.reject(&tampered),
        DecryptError::OneTimePreKeyUsed { id: 2 }
    );
    assert_eq!(pair.receive(Side::Bob, &second).unwrap(), b"second");
}

#[test]
fn a_one_time_kem_prekey_is_used_once() {
    let mut pair = Pair::new(5);
    let bundle = kem_otk_bundle(&mut pair);
    let kem_id = bundle.kem_prekey().unwrap().id();
    let mut alice = initiate(&mut pair, &bundle);
    let wire = alice.encrypt(&mut pair.rng, b"one").unwrap();
    assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"one");
    // Carol got the same bundle; the classical one-time prekey 2 was used too.
    let mut carol = Peer::new(&mut pair.rng, SessionConfig::default());
    carol
        .record
        .initiate(&mut pair.rng, &carol.account, &bundle)
        .unwrap();
    let wire = carol.record.encrypt(&mut pair.rng, b"two").unwrap();
    let mut fresh = SessionRecord::new();
    assert_eq!(
        fresh.decrypt(&mut pair.bob.account, &wire, T0),
        Err(DecryptError::OneTimePreKeyUsed { id: 2 })
    );
    // With only the KEM prekey reused (fresh classical one-time prekey), the KEM error shows.
    let reuse = PreKeyBundle::new(
        bundle.identity_key(),
        bundle.signed_prekey().clone(),
        Some(pair.bob.account.one_time_prekeys().next().unwrap()),
        bundle.kem_prekey().cloned(),
    );
    let mut record = SessionRecord::new();
    record
        .initiate(&mut pair.rng, &carol.account, &reuse)
        .unwrap();
    let wire = record.encrypt(&mut pair.rng, b"three").unwrap();
    assert_eq!(
        pair.bob.reject(&wire),
        DecryptError::KemPreKeyUsed { id: kem_id.0 }
    );
}

#[test]
fn downgrade_by_stripping_the_kem_prekey_from_a_bundle_is_refused() {
    let mut pair = Pair::new(6);
    let mut stripped: pb::PreKeyBundle = pb::decode(&pair.bundle(Some(2)).to_bytes());
    stripped.kem_prekey = None;
    let bundle = PreKeyBundle::from_bytes(&pb::encode(&stripped)).unwrap();
    let result = Session::initiate(
        &mut pair.rng,
        &pair.alice.account,
        &bundle,
        SessionConfig::default(),
    );
    assert_eq!(result.err(), Some(SetupError::ClassicalSetupRefused));
    // With classical setups allowed explicitly it proceeds, but a responder that requires
    // post-quantum setups refuses the result.
    let classical = SessionConfig::default().with_classical_setup_allowed(true);
    let mut record = SessionRecord::with_config(classical);
    record
        .initiate(&mut pair.rng, &pair.alice.account, &bundle)
        .unwrap();
    assert!(!record.session().unwrap().is_post_quantum());
    let wire = record.encrypt(&mut pair.rng, b"classical").unwrap();
    assert_eq!(pair.bob.reject(&wire), DecryptError::ClassicalSetupRefused);
}

#[test]
fn downgrade_by_stripping_the_kem_part_of_an_initial_message_fails() {
    let mut pair = Pair::new(7);
    let wire = pair.send(Side::Alice, b"pq");
    // The version byte says PQXDH (2); an initial message whose version and KEM part
    // disagree does not even decode.
    assert_eq!(wire[0], ratchetbox::PQXDH_MESSAGE_VERSION);
    let kem_part = DecryptError::Decode(DecodeError::InvalidValue {
        object: "InitialMessage",
        field: "kem",
        reason: "a version 2 (PQXDH) initial message must carry the KEM part of the setup",
    });
    let without_kem = pb::edit_message(&wire, |m| m.initial_mut().unwrap().kem = None);
    assert_eq!(pair.bob.reject(&without_kem), kem_part);
    let version_1 = pb::edit_message_version(&wire, ratchetbox::VERSION, |_| {});
    assert_eq!(
        pair.bob.reject(&version_1),
        DecryptError::Decode(DecodeError::InvalidValue {
            object: "InitialMessage",
            field: "kem",
            reason: "a version 1 (classical X3DH) initial message must not carry a KEM part",
        })
    );
    // A consistent downgrade: the KEM part stripped and the version byte set to 1.
    let stripped = pb::edit_message_version(&wire, ratchetbox::VERSION, |m| {
        m.initial_mut().unwrap().kem = None
    });
    // Refused outright by default...
    assert_eq!(
        pair.bob.reject(&stripped),
        DecryptError::ClassicalSetupRefused
    );
    // ...and even a responder that allows classical setups derives another key: the mode is
    // authenticated.
    let classical = SessionConfig::default().with_classical_setup_allowed(true);
    let mut lenient = SessionRecord::with_config(classical);
    let before = pair.bob.account.to_bytes();
    assert_eq!(
        lenient.decrypt(&mut pair.bob.account, &stripped, T0),
        Err(DecryptError::AuthenticationFailed)
    );
    assert_eq!(before, pair.bob.account.to_bytes());
    // Naming another KEM prekey does not work either. Bob issued only KEM prekey 1 (the
    // last-resort one): 0 is never issued, 2 is the next id, and neither is reported as used.
    for id in [0, 2, 99, u32::MAX] {
        assert_eq!(
            pair.bob.reject(&naming_kem_prekey(&wire, id)),
            DecryptError::UnknownKemPreKey { id }
        );
    }
    assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"pq");
}

#[test]
fn classical_sessions_work_when_both_sides_allow_them() {
    let mut pair = Pair::new(8);
    let classical = SessionConfig::default().with_classical_setup_allowed(true);
    let bundle = pair
        .bob
        .account
        .classical_prekey_bundle(Some(OneTimePreKeyId(3)))
        .unwrap();
    assert!(bundle.kem_prekey().is_none());
    let mut alice = SessionRecord::with_config(classical);
    alice
        .initiate(&mut pair.rng, &pair.alice.account, &bundle)
        .unwrap();
    let wire = alice.encrypt(&mut pair.rng, b"classical").unwrap();
    assert!(
        !ratchetbox::Message::from_bytes(&wire)
            .unwrap()
            .is_post_quantum()
    );
    let mut bob = SessionRecord::with_config(classical);
    assert_eq!(
        bob.decrypt(&mut pair.bob.account, &wire, T0).unwrap(),
        b"classical"
    );
    assert!(!bob.session().unwrap().is_post_quantum());
    // A bundle that does offer a KEM prekey is always used, even when classical is allowed.
    let pq_bundle = pair.bundle(Some(4));
    let mut record = SessionRecord::with_config(classical);
    record
        .initiate(&mut pair.rng, &pair.alice.account, &pq_bundle)
        .unwrap();
    assert!(record.session().unwrap().is_post_quantum());
}

#[test]
fn rotated_last_resort_kem_prekeys_expire_after_the_grace_period() {
    let mut pair = Pair::new(9);
    let old_bundle = pair.bob.account.prekey_bundle(None, None).unwrap();
    let mut alice = initiate(&mut pair, &old_bundle);
    let late = alice.encrypt(&mut pair.rng, b"late").unwrap();
    let day = 86_400;
    let new = pair
        .bob
        .account
        .rotate_last_resort_kem_prekey(&mut pair.rng, T0.saturating_add_secs(day))
        .unwrap()
        .id();
    assert_eq!(new, KemPreKeyId(2));
    let mut check = Account::from_bytes(&pair.bob.account.to_bytes()).unwrap();
    assert_eq!(
        SessionRecord::new().decrypt(&mut check, &late, T0).unwrap(),
        b"late"
    );
    assert_eq!(
        pair.bob
            .account
            .remove_replaced_prekeys(T0.saturating_add_secs(40 * day), 30 * day),
        1
    );
    assert_eq!(
        SessionRecord::new().decrypt(&mut pair.bob.account, &late, T0),
        Err(DecryptError::UnknownKemPreKey { id: 1 })
    );
    // A second rotation and removal: the account remembers both deleted ids (persisted too),
    // not only the last one.
    pair.bob
        .account
        .rotate_last_resort_kem_prekey(&mut pair.rng, T0.saturating_add_secs(41 * day))
        .unwrap();
    assert_eq!(
        pair.bob
            .account
            .remove_replaced_prekeys(T0.saturating_add_secs(80 * day), 30 * day),
        1
    );
    pair.bob.persist_and_restore();
    for id in [1, 2] {
        assert_eq!(
            SessionRecord::new().decrypt(&mut pair.bob.account, &naming_kem_prekey(&late, id), T0),
            Err(DecryptError::UnknownKemPreKey { id })
        );
    }
}

#[test]
fn accounts_keep_their_kem_prekeys_across_persistence() {
    let mut pair = Pair::new(10);
    let bundle = kem_otk_bundle(&mut pair);
    let last_resort = pair.bob.account.last_resort_kem_prekey().clone();
    let one_time: Vec<_> = pair.bob.account.one_time_kem_prekeys().cloned().collect();
    pair.bob.persist_and_restore();
    // The public keys are re-derived from the stored seeds and the signatures still verify.
    assert_eq!(pair.bob.account.last_resort_kem_prekey(), &last_resort);
    assert_eq!(
        pair.bob
            .account
            .one_time_kem_prekeys()
            .cloned()
            .collect::<Vec<_>>(),
        one_time
    );
    let mut alice = initiate(&mut pair, &bundle);
    let wire = alice.encrypt(&mut pair.rng, b"after restore").unwrap();
    assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"after restore");
}
