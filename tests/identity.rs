//! Identity-change detection and the trust API: a different identity key for the same peer
//! is never installed silently, on either side, and a verified contact whose key changes
//! drops to unverified.

mod common;

use common::{Pair, Peer, Side, T0};
use ratchetbox::{
    Account, DecryptError, IdentityChange, IdentityKey, SafetyNumber, SessionConfig, SessionRecord,
    SetupError, Trust, TrustError,
};

#[test]
fn the_first_key_is_trusted_on_first_use_on_both_sides() {
    let mut pair = Pair::new(1);
    let alices_view = pair.alice.record.peer().expect("set by initiate");
    assert_eq!(alices_view.key(), pair.bob.account.identity_key());
    assert_eq!(alices_view.trust(), Trust::FirstUse);
    // The current session's peer is the same key.
    assert_eq!(
        pair.alice.record.remote_identity(),
        Some(pair.bob.account.identity_key())
    );
    assert!(pair.bob.record.peer().is_none());
    assert_eq!(pair.bob.record.remote_identity(), None);
    pair.exchange(Side::Alice, b"hi");
    let bobs_view = pair.bob.record.peer().expect("set by the first message");
    assert_eq!(bobs_view.key(), pair.alice.account.identity_key());
    assert_eq!(bobs_view.trust(), Trust::FirstUse);
    assert_eq!(
        pair.bob.record.remote_identity(),
        Some(pair.alice.account.identity_key())
    );
}

#[test]
fn responder_side_a_new_identity_is_reported_not_installed() {
    let mut pair = Pair::established(2);
    pair.bob
        .record
        .mark_verified(&pair.alice.account.identity_key())
        .unwrap();
    assert_eq!(pair.bob.record.peer().unwrap().trust(), Trust::Verified);

    // "Alice" comes back with a new identity key (reinstall, or an attacker via the server).
    let new_alice = Account::new(&mut pair.rng, T0);
    let mut new_record = SessionRecord::new();
    let bundle = pair.bundle(Some(2));
    new_record
        .initiate(&mut pair.rng, &new_alice, &bundle)
        .unwrap();
    let wire = new_record
        .encrypt(&mut pair.rng, b"it's me, new phone")
        .unwrap();

    let change = match pair.bob.reject(&wire) {
        DecryptError::IdentityChanged(change) => change,
        other => panic!("expected an identity change, got {other:?}"),
    };
    assert_eq!(change.previous().key(), pair.alice.account.identity_key());
    assert_eq!(change.previous().trust(), Trust::Verified);
    assert_eq!(change.new_key(), new_alice.identity_key());
    // Nothing was consumed: one-time prekey 2 is still there.
    assert!(pair.bob.account.one_time_prekeys().any(|k| k.id().0 == 2));

    // The old and new safety numbers, for the warning screen.
    check_safety_numbers(
        &change,
        (b"bob", pair.bob.account.identity_key()),
        b"alice",
        pair.alice.account.identity_key(),
        new_alice.identity_key(),
    );

    // The user accepts: the key is replaced, trust drops to Changed, old sessions are gone.
    pair.bob.record.accept_identity_change(&change).unwrap();
    let peer = pair.bob.record.peer().unwrap();
    assert_eq!(
        (peer.key(), peer.trust()),
        (new_alice.identity_key(), Trust::Changed)
    );
    assert_eq!(
        pair.bob.receive_now(&wire),
        Ok(b"it's me, new phone".to_vec())
    );
    assert_eq!(pair.bob.record.previous_sessions().count(), 0);
    // Messages from the old identity's session no longer decrypt: that session is gone, and
    // the message fails authentication under the new one, changing nothing.
    let old_session_message = pair.send(Side::Alice, b"old phone");
    assert_eq!(
        pair.bob.reject(&old_session_message),
        DecryptError::AuthenticationFailed
    );
}

#[test]
fn initiator_side_a_bundle_with_a_new_identity_is_reported() {
    let mut pair = Pair::established(3);
    pair.alice
        .record
        .mark_verified(&pair.bob.account.identity_key())
        .unwrap();
    let mut new_bob = Peer::new(&mut pair.rng, SessionConfig::default());
    let bundle = new_bob.account.prekey_bundle(None, None).unwrap();
    let before = pair.alice.record.to_bytes();
    let change = match pair
        .alice
        .record
        .initiate(&mut pair.rng, &pair.alice.account, &bundle)
    {
        Err(SetupError::IdentityChanged(change)) => change,
        other => panic!("expected an identity change, got {other:?}"),
    };
    assert_eq!(before, pair.alice.record.to_bytes(), "nothing changed");
    assert_eq!(change.previous().trust(), Trust::Verified);
    assert_eq!(change.previous().key(), pair.bob.account.identity_key());
    assert_eq!(change.new_key(), new_bob.account.identity_key());

    // The old and new safety numbers, for the warning screen (from Alice's point of view).
    check_safety_numbers(
        &change,
        (b"alice", pair.alice.account.identity_key()),
        b"bob",
        pair.bob.account.identity_key(),
        new_bob.account.identity_key(),
    );

    pair.alice.record.accept_identity_change(&change).unwrap();
    assert_eq!(pair.alice.record.peer().unwrap().trust(), Trust::Changed);
    pair.alice
        .record
        .initiate(&mut pair.rng, &pair.alice.account, &bundle)
        .unwrap();
    let wire = pair
        .alice
        .record
        .encrypt(&mut pair.rng, b"hello new Bob")
        .unwrap();
    assert_eq!(new_bob.decrypt(&wire, T0).unwrap(), b"hello new Bob");
    // Verifying the new key again restores full trust.
    pair.alice
        .record
        .mark_verified(&new_bob.account.identity_key())
        .unwrap();
    assert_eq!(pair.alice.record.peer().unwrap().trust(), Trust::Verified);
}

#[test]
fn trust_decisions_must_name_the_current_key() {
    let mut pair = Pair::established(4);
    let stranger = Account::new(&mut pair.rng, T0).identity_key();
    assert_eq!(
        pair.alice.record.mark_verified(&stranger),
        Err(TrustError::NotCurrentKey)
    );
    assert_eq!(
        SessionRecord::new().mark_verified(&stranger),
        Err(TrustError::NoPeer)
    );

    // Produce a change, accept it, then try to accept it again: it is stale.
    let new_bob = Account::new(&mut pair.rng, T0);
    let bundle = new_bob.prekey_bundle(None, None).unwrap();
    let Err(SetupError::IdentityChanged(change)) =
        pair.alice
            .record
            .initiate(&mut pair.rng, &pair.alice.account, &bundle)
    else {
        panic!("expected an identity change");
    };
    pair.alice.record.accept_identity_change(&change).unwrap();
    assert_eq!(
        pair.alice.record.accept_identity_change(&change),
        Err(TrustError::StaleChange)
    );
}

#[test]
fn trust_survives_persistence() {
    let mut pair = Pair::established(5);
    pair.bob
        .record
        .mark_verified(&pair.alice.account.identity_key())
        .unwrap();
    pair.bob.persist_and_restore();
    assert_eq!(pair.bob.record.peer().unwrap().trust(), Trust::Verified);
    pair.exchange(Side::Alice, b"still works");
}

#[test]
fn first_use_trust_survives_persistence() {
    let mut pair = Pair::established(6);
    pair.alice.persist_and_restore();
    pair.bob.persist_and_restore();
    for (peer, key) in [
        (&pair.alice, pair.bob.account.identity_key()),
        (&pair.bob, pair.alice.account.identity_key()),
    ] {
        let view = peer.record.peer().expect("restored with the peer");
        assert_eq!((view.key(), view.trust()), (key, Trust::FirstUse));
    }
    pair.exchange(Side::Bob, b"still works");
}

#[test]
fn changed_trust_survives_persistence() {
    let mut pair = Pair::established(7);
    pair.alice
        .record
        .mark_verified(&pair.bob.account.identity_key())
        .unwrap();
    let mut new_bob = Peer::new(&mut pair.rng, SessionConfig::default());
    let bundle = new_bob.account.prekey_bundle(None, None).unwrap();
    let Err(SetupError::IdentityChanged(change)) =
        pair.alice
            .record
            .initiate(&mut pair.rng, &pair.alice.account, &bundle)
    else {
        panic!("expected an identity change");
    };
    pair.alice.record.accept_identity_change(&change).unwrap();

    pair.alice.persist_and_restore();
    let view = pair.alice.record.peer().expect("restored with the peer");
    assert_eq!(
        (view.key(), view.trust()),
        (new_bob.account.identity_key(), Trust::Changed)
    );
    // The restored record works with the new key: Alice starts a session and Bob decrypts.
    pair.alice
        .record
        .initiate(&mut pair.rng, &pair.alice.account, &bundle)
        .unwrap();
    let wire = pair
        .alice
        .record
        .encrypt(&mut pair.rng, b"after restore")
        .unwrap();
    assert_eq!(new_bob.decrypt(&wire, T0).unwrap(), b"after restore");
}

/// The old and new safety numbers an identity change reports (for the warning screen) are
/// the ones computed from scratch for the old and the new key, and they differ.
fn check_safety_numbers(
    change: &IdentityChange,
    (local_id, local_key): (&[u8], IdentityKey),
    remote_id: &[u8],
    old_key: IdentityKey,
    new_key: IdentityKey,
) {
    let (old, new) = change
        .safety_numbers(local_id, &local_key, remote_id)
        .unwrap();
    let expected = |key: &IdentityKey| {
        SafetyNumber::new(local_id, &local_key, remote_id, key)
            .unwrap()
            .display()
    };
    assert_eq!(old.display(), expected(&old_key));
    assert_eq!(new.display(), expected(&new_key));
    assert_ne!(old.display(), new.display());
}

/// Identity keys key maps of contacts: equal keys (one decoded from the other's bytes) hash
/// alike, and two accounts' keys hash apart, so such a map does not degenerate into one
/// bucket.
#[test]
fn identity_keys_hash_by_their_bytes() {
    use std::hash::{BuildHasher, RandomState};

    let pair = Pair::new(41);
    let alice = pair.alice.account.identity_key();
    let bob = pair.bob.account.identity_key();
    let decoded = IdentityKey::from_bytes(alice.as_bytes()).expect("a valid key");
    let state = RandomState::new();
    assert_eq!(state.hash_one(decoded), state.hash_one(alice));
    assert_ne!(state.hash_one(bob), state.hash_one(alice));
}

/// `Debug` shows public keys in full and a key pair's public half only.
#[test]
fn key_debug_shows_public_bytes_only() {
    let pair = ratchetbox::IdentityKeyPair::generate(&mut common::rng(42));
    let public = hex::encode(pair.public_key().as_bytes());
    assert_eq!(
        format!("{pair:?}"),
        format!("IdentityKeyPair {{ public: IdentityKey({public}), .. }}")
    );
    // RFC 7748's base point, u = 9.
    let mut base = [0u8; 32];
    base[0] = 9;
    let key = ratchetbox::X25519PublicKey::from_bytes(base).expect("the base point");
    assert_eq!(
        format!("{key:?}"),
        format!("X25519PublicKey(09{})", "00".repeat(31))
    );
}
