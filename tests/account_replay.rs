//! New contacts under a flood of setups without one-time keys: the replay memory is kept per
//! signed prekey, the account says when the signed prekey should be rotated, and after the
//! rotation new contacts set up sessions again, while every remembered setup stays refused.

mod common;

use common::{Peer, T0, rng};
use rand_chacha::ChaCha20Rng;
use ratchetbox::{
    Account, DecryptError, MAX_LAST_RESORT_KEM_PREKEYS, MAX_SIGNED_PREKEYS, MAX_USED_SETUPS,
    PreKeyBundle, SessionConfig, SessionRecord,
};

/// The documented sizes (docs/PROTOCOL.md, sections 5 and 8.1), written out rather than
/// taken from the crate.
const MEMORY: usize = 2_000;
const ROTATION_DUE_AT: usize = 1_000;

#[test]
fn the_limits_are_the_documented_ones() {
    assert_eq!(MAX_USED_SETUPS, MEMORY);
    assert_eq!(MAX_SIGNED_PREKEYS, 16);
    assert_eq!(MAX_LAST_RESORT_KEM_PREKEYS, 16);
}

/// A setup without one-time keys (the bundle has none) from a fresh record of `from`'s
/// account: the record and its first (initial) message.
fn start(
    r: &mut ChaCha20Rng,
    from: &Account,
    bundle: &PreKeyBundle,
    text: &[u8],
) -> (SessionRecord, Vec<u8>) {
    let mut record = SessionRecord::new();
    record.initiate(r, from, bundle).expect("initiate");
    let wire = record.encrypt(r, text).expect("encrypt");
    (record, wire)
}

/// Delivers each of `setups` again into a fresh record: each is refused as a replay, and
/// the account does not change.
fn assert_replays_refused(bob: &mut Account, setups: &[Vec<u8>], stage: &str) {
    let before = bob.to_bytes().to_vec();
    for (i, wire) in setups.iter().enumerate() {
        let mut fresh = SessionRecord::new();
        assert_eq!(
            fresh.decrypt(bob, wire, T0),
            Err(DecryptError::SetupAlreadyUsed),
            "{stage}: replay of setup {i}"
        );
        assert!(fresh.session().is_none());
    }
    assert_eq!(
        before,
        bob.to_bytes().to_vec(),
        "{stage}: replays changed the account"
    );
}

/// Mallory makes setups on `bundle` until the memory of its signed prekey is full (it holds
/// `already` setups), checking when the account reports that a rotation is due.
fn flood(
    r: &mut ChaCha20Rng,
    bob: &mut Account,
    mallory: &Account,
    bundle: &PreKeyBundle,
    already: usize,
    remembered: &mut Vec<Vec<u8>>,
) {
    for held in already..MEMORY {
        assert_eq!(
            bob.signed_prekey_rotation_due(),
            held >= ROTATION_DUE_AT,
            "with {held} setups remembered"
        );
        let (_, wire) = start(r, mallory, bundle, b"flood");
        assert_eq!(
            SessionRecord::new().decrypt(bob, &wire, T0),
            Ok(b"flood".to_vec()),
            "flood setup {held}"
        );
        remembered.push(wire);
    }
    assert!(bob.signed_prekey_rotation_due());
}

#[test]
fn an_attacker_who_fills_the_replay_memory_cannot_lock_out_new_contacts() {
    let r = &mut rng(40);
    let day = 24 * 60 * 60;
    // Bob's server has run out of one-time keys of both kinds: every bundle carries the
    // signed prekey and the last-resort KEM prekey only.
    let mut bob = Account::new(r, T0);
    let mallory = Peer::new(r, SessionConfig::default());
    let carol = Peer::new(r, SessionConfig::default());
    let dave = Peer::new(r, SessionConfig::default());
    let mut remembered = Vec::new();

    // Mallory fills the memory of signed prekey 1 from fresh records.
    let bundle_1 = bob.prekey_bundle(None, None).expect("bundle");
    flood(r, &mut bob, &mallory.account, &bundle_1, 0, &mut remembered);
    assert_replays_refused(&mut bob, &remembered, "memory of prekey 1 full");

    // Carol fetched the bundle before the app reacted: refused, with nothing changed.
    let (_, carol_early) = start(r, &carol.account, &bundle_1, b"hi bob");
    let before = bob.to_bytes().to_vec();
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &carol_early, T0),
        Err(DecryptError::ReplayMemoryFull {
            signed_prekey_id: 1,
            max: MEMORY
        })
    );
    assert_eq!(before, bob.to_bytes().to_vec());

    // A setup that uses a one-time key of either kind cannot be replayed (the key is deleted
    // when it is accepted), so it needs no room in the memory: on the same full prekey, one
    // with a one-time prekey and the last-resort KEM prekey, and one with a one-time KEM
    // prekey alone, both get through.
    let one_time = bob.generate_one_time_prekeys(r, 1, T0).expect("one-time")[0].id();
    let kem_one_time = bob
        .generate_one_time_kem_prekeys(r, 1, T0)
        .expect("one-time KEM")[0]
        .id();
    for (what, bundle) in [
        ("one-time prekey", bob.prekey_bundle(Some(one_time), None)),
        (
            "one-time KEM prekey",
            bob.prekey_bundle(None, Some(kem_one_time)),
        ),
    ] {
        let bundle = bundle.expect("bundle");
        assert_eq!(bundle.signed_prekey().id().0, 1);
        let (_, wire) = start(r, &carol.account, &bundle, b"with a one-time key");
        assert_eq!(
            SessionRecord::new().decrypt(&mut bob, &wire, T0),
            Ok(b"with a one-time key".to_vec()),
            "a setup with a {what} on a full memory"
        );
    }

    // The app, told that a rotation is due, rotates the signed prekey and publishes it. The
    // new prekey's memory is empty; the old one's is kept.
    bob.rotate_signed_prekey(r, T0.saturating_add_secs(day))
        .expect("rotate");
    let bundle_2 = bob.prekey_bundle(None, None).expect("bundle");
    assert!(!bob.signed_prekey_rotation_due());
    assert_replays_refused(&mut bob, &remembered, "after the rotation");
    // Carol's message on the old prekey is still refused: its memory is still full.
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &carol_early, T0),
        Err(DecryptError::ReplayMemoryFull {
            signed_prekey_id: 1,
            max: MEMORY
        })
    );

    // Carol fetches the new bundle: her session starts, and the conversation goes on.
    let (mut carol_record, carol_first) = start(r, &carol.account, &bundle_2, b"hi bob");
    let mut bob_carol = SessionRecord::new();
    assert_eq!(
        bob_carol.decrypt(&mut bob, &carol_first, T0),
        Ok(b"hi bob".to_vec())
    );
    let reply = bob_carol.encrypt(r, b"hi carol").expect("encrypt");
    let mut carol_account = Account::from_bytes(&carol.account.to_bytes()).expect("restores");
    assert_eq!(
        carol_record.decrypt(&mut carol_account, &reply, T0),
        Ok(b"hi carol".to_vec())
    );
    remembered.push(carol_first);
    assert_replays_refused(&mut bob, &remembered, "after Carol's setup");

    // The memory survives persistence.
    let mut bob = Account::from_bytes(&bob.to_bytes()).expect("restores");
    assert_replays_refused(&mut bob, &remembered, "after persistence");

    // Mallory floods the new prekey too; the app rotates again, and Dave gets through.
    flood(r, &mut bob, &mallory.account, &bundle_2, 1, &mut remembered);
    assert_replays_refused(&mut bob, &remembered, "memory of prekey 2 full");
    let (_, dave_early) = start(r, &dave.account, &bundle_2, b"hello");
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &dave_early, T0),
        Err(DecryptError::ReplayMemoryFull {
            signed_prekey_id: 2,
            max: MEMORY
        })
    );
    bob.rotate_signed_prekey(r, T0.saturating_add_secs(2 * day))
        .expect("rotate");
    let bundle_3 = bob.prekey_bundle(None, None).expect("bundle");
    let (_, dave_first) = start(r, &dave.account, &bundle_3, b"hello");
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &dave_first, T0),
        Ok(b"hello".to_vec())
    );
    remembered.push(dave_first);
    assert_replays_refused(&mut bob, &remembered, "after Dave's setup");

    // When the grace period of the replaced prekeys ends, they are deleted with their
    // memories: the replays now name an unknown signed prekey, and only prekey 3's setup is
    // remembered.
    assert_eq!(
        bob.remove_replaced_prekeys(T0.saturating_add_secs(40 * day), 30 * day),
        2
    );
    let (on_1, rest) = remembered.split_at(MEMORY);
    let (on_2, on_3) = rest.split_at(MEMORY);
    for (wire, id) in on_1
        .iter()
        .map(|w| (w, 1))
        .chain(on_2.iter().map(|w| (w, 2)))
    {
        assert_eq!(
            SessionRecord::new().decrypt(&mut bob, wire, T0),
            Err(DecryptError::UnknownSignedPreKey { id })
        );
    }
    assert_replays_refused(&mut bob, on_3, "after the old prekeys were deleted");
}

/// However often the memory fills and the app rotates, the account holds at most
/// `MAX_SIGNED_PREKEYS` signed prekeys, so the memory stays bounded: a rotation beyond that
/// deletes the oldest prekey with its memory, and the replays of its setups then name an
/// unknown prekey (never start a session).
#[test]
fn the_replay_memory_stays_bounded_under_repeated_rotations() {
    let r = &mut rng(41);
    let mut bob = Account::new(r, T0);
    let mallory = Peer::new(r, SessionConfig::default());
    // A few setups on each of 17 signed prekeys (one more than the account holds).
    let mut on_prekey: Vec<Vec<Vec<u8>>> = Vec::new();
    for round in 0..17u64 {
        let bundle = bob.prekey_bundle(None, None).expect("bundle");
        let mut setups = Vec::new();
        for _ in 0..3 {
            let (_, wire) = start(r, &mallory.account, &bundle, b"flood");
            assert_eq!(
                SessionRecord::new().decrypt(&mut bob, &wire, T0),
                Ok(b"flood".to_vec())
            );
            setups.push(wire);
        }
        on_prekey.push(setups);
        bob.rotate_signed_prekey(r, T0.saturating_add_secs(round + 1))
            .expect("rotate");
    }
    // Prekeys 1 and 2 were deleted by the 16th and 17th rotations, with their setups.
    for (index, setups) in on_prekey.iter().enumerate() {
        let id = index as u32 + 1;
        for wire in setups {
            let expected = if id <= 2 {
                DecryptError::UnknownSignedPreKey { id }
            } else {
                DecryptError::SetupAlreadyUsed
            };
            assert_eq!(
                SessionRecord::new().decrypt(&mut bob, wire, T0),
                Err(expected),
                "setup on prekey {id}"
            );
        }
    }
    let restored = Account::from_bytes(&bob.to_bytes()).expect("restores");
    assert_eq!(restored.to_bytes(), bob.to_bytes());
}
