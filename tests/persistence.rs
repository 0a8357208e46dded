//! Persistence: every object round-trips through bytes and sealed bytes at every step, a
//! restored session continues the conversation, sealed state resists tampering and wrong
//! keys, and no Debug output shows secret bytes.

mod common;
#[path = "common/session_state.rs"]
mod session_state;

use common::{Pair, Side, hex, rng};
use proptest::prelude::*;
use rand_core::Rng;
use ratchetbox::{
    Account, DecodeError, DecryptError, IdentityKeyPair, Session, SessionRecord, StateError,
    StorageKey,
};
use session_state::{decode_record, edit_current_ratchet, encode_record};

fn round_trip_record(record: &SessionRecord) -> SessionRecord {
    let bytes = record.to_bytes();
    let restored = SessionRecord::from_bytes(&bytes).expect("record restores");
    assert_eq!(restored.to_bytes(), bytes, "re-serialization is identical");
    restored
}

#[test]
fn round_trips_at_every_step_of_a_conversation() {
    let mut pair = Pair::new(1);
    let storage_key = StorageKey::from_bytes([9; 32]);
    let mut r = rng(77);
    let mut in_flight: Vec<(Side, Vec<u8>, Vec<u8>)> = Vec::new();
    let mut bob_has_session = false;
    for step in 0..400 {
        match r.next_u32() % 3 {
            0 => {
                let t = format!("alice {step}").into_bytes();
                in_flight.push((Side::Bob, pair.send(Side::Alice, &t), t));
            }
            1 if bob_has_session => {
                let t = format!("bob {step}").into_bytes();
                in_flight.push((Side::Alice, pair.send(Side::Bob, &t), t));
            }
            _ if !in_flight.is_empty() => {
                let (to, wire, t) = in_flight.remove(r.next_u32() as usize % in_flight.len());
                assert_eq!(pair.receive(to, &wire).expect("decrypts"), t);
                bob_has_session |= to == Side::Bob;
            }
            _ => {}
        }
        // Persist both sides after every step, alternating plain and sealed forms.
        for side in [Side::Alice, Side::Bob] {
            let peer = pair.peer(side);
            if step % 2 == 0 {
                peer.record = round_trip_record(&peer.record);
                let account = peer.account.to_bytes();
                peer.account = Account::from_bytes(&account).expect("account restores");
            } else {
                let mut seal_rng = rng(step);
                let sealed = peer.record.seal(&storage_key, &mut seal_rng);
                peer.record = SessionRecord::unseal(&sealed, &storage_key).expect("unseals");
                let sealed = peer.account.seal(&storage_key, &mut seal_rng);
                peer.account = Account::unseal(&sealed, &storage_key).expect("unseals");
            }
        }
    }
    for (to, wire, t) in in_flight {
        assert_eq!(pair.receive(to, &wire).expect("decrypts"), t);
    }
}

#[test]
fn a_restored_session_continues_with_skipped_keys_and_history() {
    let mut pair = Pair::established(2);
    let late: Vec<_> = (0..5).map(|i| pair.send(Side::Alice, &[i])).collect();
    pair.exchange(Side::Alice, b"delivered");
    pair.exchange(Side::Bob, b"turn");
    pair.exchange(Side::Alice, b"again");
    assert_eq!(pair.receive(Side::Bob, &late[4]).unwrap(), [4]);
    pair.bob.persist_and_restore();
    assert_eq!(pair.bob.record.session().unwrap().skipped_key_count(), 4);
    // Duplicates in a finished chain are still recognized after a restore.
    assert_eq!(
        pair.bob.reject(&late[4]),
        ratchetbox::DecryptError::Duplicate { counter: 4 }
    );
    for (i, wire) in late[..4].iter().enumerate() {
        assert_eq!(pair.receive(Side::Bob, wire).unwrap(), [i as u8]);
    }
    let session = Session::from_bytes(&pair.bob.record.session().unwrap().to_bytes()).unwrap();
    assert_eq!(session.id(), pair.bob.record.session_id().unwrap());
    assert_eq!(session.skipped_key_count(), 0);
}

#[test]
fn sealed_state_needs_the_right_key_kind_and_bytes() {
    let mut pair = Pair::established(3);
    let key = StorageKey::generate(&mut pair.rng);
    let sealed = pair.alice.record.seal(&key, &mut pair.rng);
    assert!(SessionRecord::unseal(&sealed, &key).is_ok());
    assert_eq!(
        SessionRecord::unseal(&sealed, &StorageKey::from_bytes([0; 32])).err(),
        Some(StateError::UnsealFailed)
    );
    assert_eq!(
        Account::unseal(&sealed, &key).err(),
        Some(StateError::WrongKind {
            expected: "account",
            found: "session record"
        })
    );
    assert_eq!(
        Session::unseal(&sealed, &key).err(),
        Some(StateError::WrongKind {
            expected: "session",
            found: "session record"
        })
    );
    // Every single-bit flip is caught.
    for i in 0..sealed.len() {
        for bit in [0, 3, 7] {
            let mut bad = sealed.clone();
            bad[i] ^= 1 << bit;
            assert!(
                SessionRecord::unseal(&bad, &key).is_err(),
                "flip at byte {i} bit {bit}"
            );
        }
    }
    assert_eq!(
        SessionRecord::unseal(&sealed[..sealed.len() - 1], &key).err(),
        Some(StateError::Decode(DecodeError::Malformed {
            object: "SealedState"
        }))
    );
    // Two seals of the same state differ (fresh salt), and both open.
    let again = pair.alice.record.seal(&key, &mut pair.rng);
    assert_ne!(again, sealed);
    assert_eq!(
        SessionRecord::unseal(&again, &key).unwrap().to_bytes(),
        pair.alice.record.to_bytes()
    );
}

#[test]
fn corrupted_plain_state_is_an_error_never_a_panic() {
    let pair = Pair::established(4);
    let record = pair.alice.record.to_bytes();
    let account = pair.bob.account.to_bytes();
    let session = pair.bob.record.session().unwrap().to_bytes();
    for bytes in [&record, &account, &session] {
        for i in 0..bytes.len() {
            let mut bad = bytes.to_vec();
            bad[i] ^= 0x55;
            let _ = SessionRecord::from_bytes(&bad);
            let _ = Account::from_bytes(&bad);
            let _ = Session::from_bytes(&bad);
            let _ = SessionRecord::from_bytes(&bad[..i]);
        }
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic_state_decoding(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let key = StorageKey::from_bytes([1; 32]);
        let _ = Account::from_bytes(&bytes);
        let _ = Session::from_bytes(&bytes);
        let _ = SessionRecord::from_bytes(&bytes);
        let _ = Account::unseal(&bytes, &key);
        let _ = SessionRecord::unseal(&bytes, &key);
    }
}

/// Fails if `debug` contains the hex of any 16-byte window of `state` that is not part of a
/// listed public value.
fn assert_no_secret_in(what: &str, debug: &str, state: &[u8], public: &[Vec<u8>]) {
    assert!(debug.len() > 10, "{what}: Debug output unexpectedly empty");
    let debug = debug.to_lowercase();
    let public_hex: Vec<String> = public.iter().map(|p| hex(p)).collect();
    for window in state.windows(16) {
        let h = hex(window);
        if debug.contains(&h) {
            assert!(
                public_hex.iter().any(|p| p.contains(&h)),
                "{what}: Debug output shows state bytes {h} that are not public"
            );
        }
    }
}

#[test]
fn debug_output_shows_no_secret_bytes() {
    let mut pair = Pair::established(5);
    // Leave a skipped key in Bob's store, so the state holds every kind of secret.
    let _lost = pair.send(Side::Alice, b"lost");
    pair.exchange(Side::Alice, b"skip one");
    let public = vec![
        pair.alice.account.identity_key().to_bytes().to_vec(),
        pair.bob.account.identity_key().to_bytes().to_vec(),
    ];
    let bob_state = [
        pair.bob.account.to_bytes().to_vec(),
        pair.bob.record.to_bytes().to_vec(),
    ]
    .concat();
    assert!(pair.bob.record.session().unwrap().skipped_key_count() > 0);

    let checks: Vec<(&str, String)> = vec![
        ("account", format!("{:?}", pair.bob.account)),
        ("record", format!("{:?}", pair.bob.record)),
        (
            "session",
            format!("{:?}", pair.bob.record.session().unwrap()),
        ),
        ("bundle", format!("{:?}", pair.bundle(Some(2)))),
        (
            "signed prekey",
            format!("{:?}", pair.bob.account.signed_prekey()),
        ),
        ("pretty account", format!("{:#?}", pair.bob.account)),
        ("pretty record", format!("{:#?}", pair.bob.record)),
    ];
    for (what, debug) in &checks {
        assert_no_secret_in(what, debug, &bob_state, &public);
    }
    // The Debug output is useful: it names the public identity.
    assert!(checks[2].1.contains(&hex(&public[1])) || checks[2].1.contains(&hex(&public[0])));

    // Identity key pair and storage key: known secret bytes.
    let mut r = rng(9);
    let mut seed = [0u8; 32];
    r.fill_bytes(&mut seed);
    let identity = IdentityKeyPair::generate(&mut rng(9));
    let debug = format!("{identity:?}");
    assert!(!debug.to_lowercase().contains(&hex(&seed[..8])), "{debug}");
    assert!(debug.contains(&hex(identity.public_key().as_bytes())));
    let storage = format!("{:?}", StorageKey::from_bytes([0xAB; 32]));
    assert!(!storage.to_lowercase().contains("abab"), "{storage}");
}

/// PROTOCOL.md section 8.1: our ratchet public key is read back, not recomputed. A plain
/// form whose public key is not its private key's only makes the peer refuse the messages
/// sent with it (the DH outputs differ), with its state unchanged.
#[test]
fn a_stored_ratchet_key_that_is_not_its_secrets_only_makes_the_peer_refuse_our_messages() {
    let mut pair = Pair::established(6);
    // Bob holds a sending key pair; Alice starts a new sending chain Bob has not seen.
    let first = pair.send(Side::Alice, b"first");
    let bytes = pair.alice.record.to_bytes();
    let stored = decode_record(&bytes);
    let ratchet = stored.current.as_ref().unwrap().ratchet.as_ref().unwrap();
    assert_eq!(ratchet.our_ratchet_key.len(), 32);
    assert_eq!(ratchet.our_ratchet_secret.len(), 32);
    let other = IdentityKeyPair::generate(&mut pair.rng)
        .public_key()
        .to_x25519()
        .expect("a valid key");
    assert_ne!(ratchet.our_ratchet_key, other.to_bytes());
    let tampered = edit_current_ratchet(&bytes, |r| r.our_ratchet_key = other.to_bytes().to_vec());
    pair.alice.record = SessionRecord::from_bytes(&tampered).expect("decodes");
    assert_eq!(pair.alice.record.to_bytes().to_vec(), tampered);
    let sent_with_other_key = pair.send(Side::Alice, b"second");
    assert_eq!(
        pair.bob.reject(&sent_with_other_key),
        DecryptError::AuthenticationFailed
    );
    // The message sent before the change still decrypts.
    assert_eq!(pair.receive(Side::Bob, &first).unwrap(), b"first");
}

/// PROTOCOL.md section 8.1: a stored identity key is checked for its length and a reduced y
/// while loading, and decoded as a point only when used in arithmetic.
#[test]
fn stored_identity_keys_are_checked_for_a_reduced_y_and_decoded_only_when_used() {
    let mut pair = Pair::established(7);
    let bytes = pair.bob.record.to_bytes();
    let with_local = |identity: [u8; 32]| {
        let mut state = decode_record(&bytes);
        state.current.as_mut().unwrap().local_identity = identity.to_vec();
        encode_record(&state)
    };
    // y = p (bit 255, the sign of x, clear or set): refused while loading.
    let mut y_is_p = [0xff; 32];
    y_is_p[0] = 0xed;
    y_is_p[31] = 0x7f;
    for identity in [y_is_p, {
        let mut signed = y_is_p;
        signed[31] |= 0x80;
        signed
    }] {
        assert_eq!(
            SessionRecord::from_bytes(&with_local(identity)).err(),
            Some(StateError::Decode(DecodeError::InvalidIdentityKey {
                object: "SessionState",
                field: "local_identity",
            }))
        );
    }
    // The neutral point (y = 1, small order): a reduced y, so it loads, and then has no X25519
    // form, and the session's associated data no longer matches the peer's.
    let mut neutral = [0u8; 32];
    neutral[0] = 1;
    assert_eq!(ratchetbox::IdentityKey::from_bytes(&neutral), None);
    let mut bob = SessionRecord::from_bytes(&with_local(neutral)).expect("loads");
    let local = bob.session().unwrap().local_identity();
    assert_eq!(local.to_bytes(), neutral);
    assert_eq!(local.to_x25519(), None);
    let wire = pair.send(Side::Alice, b"to bob");
    assert_eq!(
        bob.decrypt(&mut pair.bob.account, &wire, common::T0).err(),
        Some(DecryptError::AuthenticationFailed)
    );
    // The untouched record decrypts it, and its stored keys are the decoded ones.
    assert_eq!(pair.receive(Side::Bob, &wire).unwrap(), b"to bob");
    let restored = SessionRecord::from_bytes(&bytes).unwrap();
    let session = restored.session().unwrap();
    assert_eq!(session.local_identity(), pair.bob.account.identity_key());
    assert_eq!(
        session.local_identity().to_x25519(),
        pair.bob.account.identity_key().to_x25519()
    );
}
