//! The account: prekey generation, bundles, signed prekey rotation and its grace period.

mod common;

use common::{Peer, T0, rng};
use ratchetbox::{
    Account, DecryptError, MAX_ONE_TIME_PREKEYS, OneTimePreKeyId, PreKeyError, SessionConfig,
    SessionRecord, SignedPreKeyId,
};

#[test]
fn one_time_prekeys_get_increasing_ids_and_are_listed_until_used() {
    let mut r = rng(1);
    let mut account = Account::new(&mut r, T0);
    let first = account.generate_one_time_prekeys(&mut r, 3, T0).unwrap();
    let second = account.generate_one_time_prekeys(&mut r, 2, T0).unwrap();
    let ids: Vec<u32> = first.iter().chain(&second).map(|k| k.id().0).collect();
    assert_eq!(ids, [1, 2, 3, 4, 5]);
    let listed: Vec<_> = account.one_time_prekeys().collect();
    assert_eq!(listed, [first, second].concat());
    assert_eq!(
        account.prekey_bundle(Some(OneTimePreKeyId(9)), None).err(),
        Some(PreKeyError::UnknownOneTimePreKey { id: 9 })
    );
    assert_eq!(
        account
            .generate_one_time_prekeys(&mut r, MAX_ONE_TIME_PREKEYS, T0)
            .err(),
        Some(PreKeyError::TooManyOneTimePreKeys {
            max: MAX_ONE_TIME_PREKEYS
        })
    );
    assert_eq!(
        account.one_time_prekeys().count(),
        5,
        "a refused request creates nothing"
    );
}

#[test]
fn rotated_signed_prekeys_stay_usable_for_the_grace_period() {
    let mut r = rng(2);
    let alice = Peer::new(&mut r, SessionConfig::default());
    let mut bob = Account::new(&mut r, T0);
    let old_bundle = bob.prekey_bundle(None, None).unwrap();
    assert_eq!(old_bundle.signed_prekey().id(), SignedPreKeyId(1));

    let day = 86_400;
    let rotated_at = T0.saturating_add_secs(7 * day);
    let new = bob
        .rotate_signed_prekey(&mut r, rotated_at)
        .unwrap()
        .clone();
    assert_eq!(new.id(), SignedPreKeyId(2));
    assert_eq!(new.created_at(), rotated_at);
    assert!(new.verify(&bob.identity_key()));
    assert_eq!(bob.signed_prekey(), &new);

    // An initial message built on the old prekey, still in flight.
    let mut record = SessionRecord::new();
    record
        .initiate(&mut r, &alice.account, &old_bundle)
        .unwrap();
    let late = record.encrypt(&mut r, b"sent before the rotation").unwrap();

    // Within the grace period nothing is removed.
    assert_eq!(
        bob.remove_replaced_prekeys(rotated_at.saturating_add_secs(day), 30 * day),
        0
    );
    let mut check = Account::from_bytes(&bob.to_bytes()).unwrap();
    assert_eq!(
        SessionRecord::new().decrypt(&mut check, &late, T0).unwrap(),
        b"sent before the rotation"
    );
    // After it, the old prekey is deleted and the message names an unknown prekey.
    assert_eq!(
        bob.remove_replaced_prekeys(rotated_at.saturating_add_secs(31 * day), 30 * day),
        1
    );
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &late, T0),
        Err(DecryptError::UnknownSignedPreKey { id: 1 })
    );
    // The current one is never removed.
    assert_eq!(
        bob.remove_replaced_prekeys(ratchetbox::Timestamp::MAX, 0),
        0
    );
    assert_eq!(bob.signed_prekey(), &new);
}

#[test]
fn accounts_round_trip_with_all_their_prekeys() {
    let mut r = rng(3);
    let mut account = Account::new(&mut r, T0);
    account.generate_one_time_prekeys(&mut r, 50, T0).unwrap();
    account
        .rotate_signed_prekey(&mut r, T0.saturating_add_secs(10))
        .unwrap();
    let bytes = account.to_bytes();
    let restored = Account::from_bytes(&bytes).unwrap();
    assert_eq!(restored.to_bytes(), bytes);
    assert_eq!(restored.identity_key(), account.identity_key());
    assert_eq!(restored.signed_prekey(), account.signed_prekey());
    assert_eq!(
        restored.one_time_prekeys().collect::<Vec<_>>(),
        account.one_time_prekeys().collect::<Vec<_>>()
    );
}
