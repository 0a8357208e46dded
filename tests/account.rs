//! The account: prekey generation, bundles, signed prekey rotation and its grace period.

mod common;

#[path = "common/state.rs"]
mod state;

use common::{Peer, T0, rng};
use ratchetbox::{
    Account, DecryptError, MAX_ONE_TIME_KEM_PREKEYS, MAX_ONE_TIME_PREKEYS, OneTimePreKeyId,
    PreKeyError, ServerPreKeyStatus, SessionConfig, SessionRecord, SignedPreKeyId, StateError,
    StorageKey, Timestamp,
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

#[test]
fn one_time_prekeys_record_their_creation_time_and_replacement() {
    let mut r = rng(4);
    let mut account = Account::new(&mut r, T0);
    let first = T0.saturating_add_secs(100);
    account.generate_one_time_prekeys(&mut r, 2, first).unwrap();
    let state = state::decode_account(&account.to_bytes());
    let times: Vec<_> = state
        .one_time_prekeys
        .iter()
        .map(|k| (k.id, k.created_at, k.replaced_at))
        .collect();
    assert_eq!(
        times,
        [
            (1, first.as_unix_secs(), None),
            (2, first.as_unix_secs(), None)
        ]
    );
    // Maintenance with a server that never stored them sends them again, unchanged; with one
    // that holds fewer than 10 of them it replaces them by a new batch, stamped then.
    let status = ServerPreKeyStatus {
        signed_prekey_id: Some(SignedPreKeyId(1)),
        last_resort_kem_prekey_id: Some(ratchetbox::KemPreKeyId(1)),
        one_time_prekeys: 2,
        newest_one_time_prekey_id: Some(OneTimePreKeyId(2)),
        ..ServerPreKeyStatus::default()
    };
    let then = T0.saturating_add_secs(200);
    account.prekey_maintenance(&mut r, then, status).unwrap();
    let state = state::decode_account(&account.to_bytes());
    assert_eq!(state.one_time_prekeys.len(), 102);
    assert_eq!(
        (
            state.one_time_prekeys[0].replaced_at,
            state.one_time_prekeys[1].replaced_at
        ),
        (Some(then.as_unix_secs()), Some(then.as_unix_secs()))
    );
    assert!(
        state.one_time_prekeys[2..]
            .iter()
            .all(|k| k.created_at == then.as_unix_secs() && k.replaced_at.is_none())
    );
    // It all survives a round trip.
    let bytes = account.to_bytes();
    assert_eq!(Account::from_bytes(&bytes).unwrap().to_bytes(), bytes);
}

#[test]
fn the_one_time_kem_prekey_limit_is_reported_as_such() {
    let mut r = rng(5);
    let mut account = Account::new(&mut r, T0);
    let error = account
        .generate_one_time_kem_prekeys(&mut r, MAX_ONE_TIME_KEM_PREKEYS + 1, T0)
        .unwrap_err();
    assert_eq!(
        error,
        PreKeyError::TooManyOneTimePreKeys {
            max: MAX_ONE_TIME_KEM_PREKEYS
        }
    );
    assert_eq!(
        error.to_string(),
        "the account can hold at most 100 unused one-time prekeys of this kind; creating that many more would exceed it"
    );
}

#[test]
fn a_cloned_account_is_an_independent_copy() {
    let mut r = rng(6);
    let mut account = Account::new(&mut r, T0);
    account.generate_one_time_prekeys(&mut r, 3, T0).unwrap();
    account
        .generate_one_time_kem_prekeys(&mut r, 2, T0)
        .unwrap();
    let copy = account.clone();
    assert_eq!(copy.to_bytes(), account.to_bytes());
    account
        .rotate_signed_prekey(&mut r, T0.saturating_add_secs(1))
        .unwrap();
    assert_ne!(copy.to_bytes(), account.to_bytes());
    assert_eq!(copy.signed_prekey().id(), SignedPreKeyId(1));
}

#[test]
fn a_sealed_object_of_another_kind_is_named_in_a_sentence() {
    let mut r = rng(7);
    let key = StorageKey::generate(&mut r);
    assert_eq!(
        format!("{key:?}"),
        "StorageKey(..)",
        "no key bytes in Debug"
    );
    let sealed = SessionRecord::new().seal(&key, &mut r);
    let error = Account::unseal(&sealed, &key).unwrap_err();
    assert_eq!(
        error,
        StateError::WrongKind {
            expected: "account",
            found: "session record"
        }
    );
    assert_eq!(
        error.to_string(),
        "the sealed state holds session record state, not the account state that was asked for"
    );
    let sealed = Account::new(&mut r, T0).seal(&key, &mut r);
    assert_eq!(
        SessionRecord::unseal(&sealed, &key)
            .unwrap_err()
            .to_string(),
        "the sealed state holds account state, not the session record state that was asked for"
    );
}

/// The re-exported `rand_core` is the one the API takes: an RNG written against it is
/// accepted.
#[test]
fn rand_core_is_re_exported() {
    fn fresh_account<R: ratchetbox::rand_core::CryptoRng>(rng: &mut R) -> Account {
        Account::new(rng, Timestamp::EPOCH)
    }
    let mut r = rng(8);
    assert_eq!(
        fresh_account(&mut r).signed_prekey().id(),
        SignedPreKeyId(1)
    );
}
