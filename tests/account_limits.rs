//! Decoding limits for persisted accounts: how many signed prekeys and last-resort KEM
//! prekeys an account holds (in a blob and after rotations), unique and ordered prekey ids,
//! a bounded replay memory, and prekeys the account signed and issued itself. Blobs are
//! crafted field by field with an independent mirror of `proto/state.proto`.

mod common;
#[path = "common/state.rs"]
mod state;

use common::{Peer, T0, rng};
use rand_chacha::ChaCha20Rng;
use ratchetbox::{
    Account, DecodeError, DecryptError, KemPreKeyId, PreKeyBundle, SessionConfig, SessionRecord,
    StateError,
};
use state::{AccountState, KemPreKeyState, SignedPreKeyState, UsedSetup};

/// The documented caps (docs/PROTOCOL.md, section 8.1), written out rather than taken from
/// the crate.
const SIGNED_PREKEY_CAP: usize = 16;
const LAST_RESORT_KEM_PREKEY_CAP: usize = 16;
const SETUPS_PER_SIGNED_PREKEY: usize = 2_000;

/// An account, and validly signed signed prekeys with ids 1..=n+1 and last-resort KEM
/// prekeys with ids 1..=n+1 of its identity, harvested from its state after each of `n`
/// rotations (so they are genuine whatever the account keeps).
struct Harvest {
    base: AccountState,
    signed: Vec<SignedPreKeyState>,
    kem: Vec<KemPreKeyState>,
}

fn harvest(r: &mut ChaCha20Rng, n: u64) -> Harvest {
    let mut account = Account::new(r, T0);
    let base = state::decode_account(&account.to_bytes());
    let mut signed = vec![base.signed_prekeys[0].clone()];
    let mut kem = vec![base.last_resort_kem_prekeys[0].clone()];
    for i in 1..=n {
        account
            .rotate_signed_prekey(r, T0.saturating_add_secs(i))
            .expect("rotate");
        account
            .rotate_last_resort_kem_prekey(r, T0.saturating_add_secs(i))
            .expect("rotate");
        let now = state::decode_account(&account.to_bytes());
        signed.push(now.signed_prekeys.last().expect("current").clone());
        kem.push(now.last_resort_kem_prekeys.last().expect("current").clone());
    }
    Harvest { base, signed, kem }
}

impl Harvest {
    /// The base account with these signed prekeys (by id, in this order) and last-resort KEM
    /// prekeys, and next ids past all harvested ones.
    fn account(&self, signed: &[u32], kem: &[u32]) -> AccountState {
        let pick_signed = |id: &u32| self.signed[*id as usize - 1].clone();
        let pick_kem = |id: &u32| self.kem[*id as usize - 1].clone();
        let mut a = self.base.clone();
        a.signed_prekeys = signed.iter().map(pick_signed).collect();
        a.last_resort_kem_prekeys = kem.iter().map(pick_kem).collect();
        a.next_signed_prekey_id = self.signed.len() as u32 + 1;
        a.next_kem_prekey_id = self.kem.len() as u32 + 1;
        a
    }
}

fn decode(a: &AccountState) -> Result<Account, StateError> {
    Account::from_bytes(&state::encode_account(a))
}

fn invalid(object: &'static str, field: &'static str, reason: &'static str) -> StateError {
    StateError::Decode(DecodeError::InvalidValue {
        object,
        field,
        reason,
    })
}

fn ids(n: usize) -> Vec<u32> {
    (1..=n as u32).collect()
}

#[test]
fn an_account_with_more_signed_prekeys_than_the_cap_is_refused() {
    let h = harvest(&mut rng(1), 20);
    let full = decode(&h.account(&ids(SIGNED_PREKEY_CAP), &[1])).expect("at the cap");
    assert_eq!(full.signed_prekey().id().0, SIGNED_PREKEY_CAP as u32);
    assert_eq!(
        decode(&h.account(&ids(SIGNED_PREKEY_CAP + 1), &[1])).err(),
        Some(invalid(
            "AccountState",
            "signed_prekeys",
            "more entries than an account keeps"
        ))
    );
    // A list far beyond the cap (the review's blob) is refused just the same.
    let mut huge = h.account(&[1], &[1]);
    huge.signed_prekeys = vec![h.signed[0].clone(); 20_000];
    assert_eq!(
        decode(&huge).err(),
        Some(invalid(
            "AccountState",
            "signed_prekeys",
            "more entries than an account keeps"
        ))
    );
}

#[test]
fn repeated_or_unordered_signed_prekey_ids_are_refused() {
    let h = harvest(&mut rng(2), 3);
    decode(&h.account(&[1, 2, 4], &[1])).expect("increasing ids, gaps allowed");
    for list in [&[1, 1][..], &[1, 2, 2], &[2, 1], &[1, 3, 2, 4]] {
        assert_eq!(
            decode(&h.account(list, &[1])).err(),
            Some(invalid(
                "SignedPreKeyState",
                "id",
                "repeated, or not in increasing order (oldest first)"
            )),
            "{list:?}"
        );
    }
}

#[test]
fn an_account_with_more_last_resort_kem_prekeys_than_the_cap_is_refused() {
    let h = harvest(&mut rng(3), 20);
    let full = decode(&h.account(&[1], &ids(LAST_RESORT_KEM_PREKEY_CAP))).expect("at the cap");
    assert_eq!(
        full.last_resort_kem_prekey().id(),
        KemPreKeyId(LAST_RESORT_KEM_PREKEY_CAP as u32)
    );
    assert_eq!(
        decode(&h.account(&[1], &ids(LAST_RESORT_KEM_PREKEY_CAP + 1))).err(),
        Some(invalid(
            "AccountState",
            "last_resort_kem_prekeys",
            "more entries than an account keeps"
        ))
    );
    let mut huge = h.account(&[1], &[1]);
    huge.last_resort_kem_prekeys = vec![h.kem[0].clone(); 2_000];
    assert_eq!(
        decode(&huge).err(),
        Some(invalid(
            "AccountState",
            "last_resort_kem_prekeys",
            "more entries than an account keeps"
        ))
    );
}

#[test]
fn repeated_or_unordered_kem_prekey_ids_are_refused() {
    let h = harvest(&mut rng(4), 3);
    decode(&h.account(&[1], &[1, 3, 4])).expect("increasing ids, gaps allowed");
    for list in [&[1, 1][..], &[1, 2, 2], &[3, 2]] {
        assert_eq!(
            decode(&h.account(&[1], list)).err(),
            Some(invalid(
                "KemPreKeyState",
                "id",
                "repeated, or not in increasing order (oldest first)"
            )),
            "{list:?}"
        );
    }
    // One-time and last-resort KEM prekeys share one id sequence: an id cannot be both.
    let mut both = h.account(&[1], &[1, 2]);
    both.one_time_kem_prekeys = vec![h.kem[1].clone()];
    assert_eq!(
        decode(&both).err(),
        Some(invalid(
            "KemPreKeyState",
            "id",
            "the id of a one-time KEM prekey and of a last-resort one"
        ))
    );
}

/// Replay memory entries: `(signed prekey id, base key)`.
fn used(entries: impl IntoIterator<Item = (u32, u32)>) -> Vec<UsedSetup> {
    entries
        .into_iter()
        .map(|(id, n)| {
            // Distinct canonical X25519 encodings (below 2^255 - 19).
            let mut base_key = vec![0u8; 32];
            base_key[..4].copy_from_slice(&n.to_le_bytes());
            base_key[4] = 9;
            UsedSetup {
                signed_prekey_id: id,
                base_key,
            }
        })
        .collect()
}

#[test]
fn the_replay_memory_is_bounded_per_signed_prekey_and_names_held_prekeys() {
    let h = harvest(&mut rng(5), 2);
    let per_prekey = SETUPS_PER_SIGNED_PREKEY as u32;
    // A full memory for each of two signed prekeys decodes and round-trips.
    let mut a = h.account(&[1, 2], &[1]);
    a.used_setups = used((0..per_prekey).flat_map(|n| [(1, n), (2, n)]));
    let full = decode(&a).expect("two full memories");
    assert_eq!(
        state::decode_account(&full.to_bytes()).used_setups.len(),
        2 * SETUPS_PER_SIGNED_PREKEY
    );

    // The largest replay memory: full memories for all 16 signed prekeys.
    let h16 = harvest(&mut rng(7), SIGNED_PREKEY_CAP as u64 - 1);
    let mut largest = h16.account(&ids(SIGNED_PREKEY_CAP), &[1]);
    largest.used_setups =
        used((0..per_prekey).flat_map(|n| (1..=SIGNED_PREKEY_CAP as u32).map(move |id| (id, n))));
    let blob = state::encode_account(&largest);
    let restored = Account::from_bytes(&blob).expect("the largest replay memory");
    assert_eq!(restored.to_bytes().to_vec(), blob);

    // One more for one signed prekey is refused.
    a.used_setups = used((0..=per_prekey).map(|n| (1, n)));
    assert_eq!(
        decode(&a).err(),
        Some(invalid(
            "UsedSetup",
            "signed_prekey_id",
            "more setups for one signed prekey than an account remembers"
        ))
    );
    // An entry for a signed prekey the account does not hold (deleting a prekey forgets its
    // setups, so such an entry would never be dropped).
    a.used_setups = used([(1, 0), (3, 1)]);
    assert_eq!(
        decode(&a).err(),
        Some(invalid(
            "UsedSetup",
            "signed_prekey_id",
            "names a signed prekey the account does not hold"
        ))
    );
    // The same setup twice.
    a.used_setups = used([(1, 0), (2, 0), (1, 0)]);
    assert_eq!(
        decode(&a).err(),
        Some(invalid("UsedSetup", "base_key", "the same setup twice"))
    );
    // A list far beyond what the account can hold is refused before it is read.
    a.used_setups = used((0..per_prekey * SIGNED_PREKEY_CAP as u32 + 1).map(|n| (1, n)));
    assert_eq!(
        decode(&a).err(),
        Some(invalid(
            "AccountState",
            "used_setups",
            "more entries than an account keeps"
        ))
    );
}

/// A PQXDH setup on `bundle` from a fresh record of `from`: the first message.
fn first_message(r: &mut ChaCha20Rng, from: &Peer, bundle: &PreKeyBundle) -> Vec<u8> {
    let mut record = SessionRecord::new();
    record.initiate(r, &from.account, bundle).expect("initiate");
    record.encrypt(r, b"hello").expect("encrypt")
}

#[test]
fn rotations_keep_at_most_the_cap_and_delete_the_oldest_prekeys() {
    let r = &mut rng(6);
    let alice = Peer::new(r, SessionConfig::default());
    let mut bob = Account::new(r, T0);
    // Bundle n - 1 holds prekey n; 20 rotations create ids up to 21, and ids 6 to 21 are kept.
    let oldest_kept = 22 - SIGNED_PREKEY_CAP as u32;
    let mut bundles = vec![bob.prekey_bundle(None, None).expect("bundle")];
    for i in 1..=20 {
        bob.rotate_signed_prekey(r, T0.saturating_add_secs(i))
            .expect("rotate");
        bundles.push(bob.prekey_bundle(None, None).expect("bundle"));
    }
    let held = state::decode_account(&bob.to_bytes());
    let ids: Vec<u32> = held.signed_prekeys.iter().map(|s| s.id).collect();
    assert_eq!(ids, (oldest_kept..=21).collect::<Vec<u32>>());
    // An initial message on a deleted prekey is refused and changes nothing; one on the
    // oldest kept prekey still starts a session.
    let before = bob.to_bytes().to_vec();
    let on_deleted = first_message(r, &alice, &bundles[oldest_kept as usize - 2]);
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &on_deleted, T0),
        Err(DecryptError::UnknownSignedPreKey {
            id: oldest_kept - 1
        })
    );
    assert_eq!(before, bob.to_bytes().to_vec());
    let on_kept = first_message(r, &alice, &bundles[oldest_kept as usize - 1]);
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &on_kept, T0),
        Ok(b"hello".to_vec())
    );

    // The same for last-resort KEM prekeys.
    let oldest_kept = 22 - LAST_RESORT_KEM_PREKEY_CAP as u32;
    let mut bundles = vec![bob.prekey_bundle(None, None).expect("bundle")];
    for i in 1..=20 {
        bob.rotate_last_resort_kem_prekey(r, T0.saturating_add_secs(i))
            .expect("rotate");
        bundles.push(bob.prekey_bundle(None, None).expect("bundle"));
    }
    let held = state::decode_account(&bob.to_bytes());
    let ids: Vec<u32> = held.last_resort_kem_prekeys.iter().map(|k| k.id).collect();
    assert_eq!(ids, (oldest_kept..=21).collect::<Vec<u32>>());
    let before = bob.to_bytes().to_vec();
    let on_deleted = first_message(r, &alice, &bundles[oldest_kept as usize - 2]);
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &on_deleted, T0),
        Err(DecryptError::UnknownKemPreKey {
            id: oldest_kept - 1
        })
    );
    assert_eq!(before, bob.to_bytes().to_vec());
    let on_kept = first_message(r, &alice, &bundles[oldest_kept as usize - 1]);
    assert_eq!(
        SessionRecord::new().decrypt(&mut bob, &on_kept, T0),
        Ok(b"hello".to_vec())
    );
}

/// Only one-time KEM prekeys are replaced in batches: a last-resort KEM prekey that carries a
/// replacement time is refused, while a one-time one that carries it round-trips.
#[test]
fn a_replacement_time_is_refused_on_a_last_resort_kem_prekey() {
    let mut r = rng(40);
    let h = harvest(&mut r, 0);
    let mut a = h.account(&[1], &[1]);
    a.last_resort_kem_prekeys[0].replaced_at = Some(0);
    assert_eq!(
        decode(&a).err(),
        Some(invalid(
            "KemPreKeyState",
            "replaced_at",
            "set on a last-resort KEM prekey (only one-time ones are replaced in batches)"
        ))
    );

    let mut account = Account::new(&mut r, T0);
    account
        .generate_one_time_kem_prekeys(&mut r, 1, T0)
        .unwrap();
    let mut a = state::decode_account(&account.to_bytes());
    // `optional`: replaced at the epoch (0) is written, and read back as set.
    a.one_time_kem_prekeys[0].replaced_at = Some(0);
    let bytes = state::encode_account(&a);
    let restored = Account::from_bytes(&bytes).unwrap();
    assert_eq!(restored.to_bytes().to_vec(), bytes);
    assert_eq!(
        state::decode_account(&restored.to_bytes()).one_time_kem_prekeys[0].replaced_at,
        Some(0)
    );
}

/// A persisted account's prekeys must be its own: each signed and KEM prekey verifies under
/// the account's identity key and has an id the account has issued (below the next id, not
/// 0), and one-time prekey ids are issued and unique. Each bit of each signature is flipped.
#[test]
fn persisted_prekeys_must_be_signed_by_the_account_and_issued_by_it() {
    let mut r = rng(41);
    let mut account = Account::new(&mut r, T0);
    account.generate_one_time_prekeys(&mut r, 3, T0).unwrap();
    account
        .generate_one_time_kem_prekeys(&mut r, 2, T0)
        .unwrap();
    let good = state::decode_account(&account.to_bytes());
    // Ids: signed prekey 1, one-time prekeys 1..=3, last-resort KEM prekey 1, one-time KEM
    // prekeys 2 and 3.
    assert_eq!(
        (
            good.next_signed_prekey_id,
            good.next_one_time_prekey_id,
            good.next_kem_prekey_id
        ),
        (2, 4, 4)
    );
    decode(&good).expect("the account as persisted");
    let signed = || {
        Some(invalid(
            "SignedPreKeyState",
            "signature",
            "not a signed prekey issued by this account's identity key",
        ))
    };
    let kem = || {
        Some(invalid(
            "KemPreKeyState",
            "signature",
            "not a KEM prekey issued by this account's identity key",
        ))
    };
    let one_time = || {
        Some(invalid(
            "OneTimePreKeyState",
            "id",
            "duplicate id, or an id the account has not issued yet",
        ))
    };
    let edited = |change: &dyn Fn(&mut AccountState)| {
        let mut a = good.clone();
        change(&mut a);
        decode(&a).err()
    };

    for bit in 0..64 * 8 {
        let flip = |sig: &mut Vec<u8>| sig[bit / 8] ^= 1 << (bit % 8);
        assert_eq!(
            edited(&|a| flip(&mut a.signed_prekeys[0].signature)),
            signed()
        );
        assert_eq!(
            edited(&|a| flip(&mut a.last_resort_kem_prekeys[0].signature)),
            kem()
        );
        assert_eq!(
            edited(&|a| flip(&mut a.one_time_kem_prekeys[1].signature)),
            kem()
        );
    }
    // Genuine keys with ids the account has not issued yet.
    assert_eq!(edited(&|a| a.next_signed_prekey_id = 1), signed());
    assert_eq!(edited(&|a| a.next_kem_prekey_id = 3), kem());
    assert_eq!(edited(&|a| a.next_one_time_prekey_id = 3), one_time());
    assert_eq!(
        edited(&|a| a.one_time_prekeys[2].id = 2),
        one_time(),
        "a repeated id"
    );
    // A genuine key under another id: the signature covers the id.
    assert_eq!(
        edited(&|a| a.one_time_kem_prekeys[1].id = 2),
        kem(),
        "one-time KEM prekey 3 as 2"
    );
    assert_eq!(edited(&|a| a.one_time_kem_prekeys[0].id = 0), kem());
    // Another identity's keys.
    let other = state::decode_account(&Account::new(&mut r, T0).to_bytes());
    assert_eq!(
        edited(&|a| a.signed_prekeys = other.signed_prekeys.clone()),
        signed()
    );
    assert_eq!(
        edited(&|a| a.last_resort_kem_prekeys = other.last_resort_kem_prekeys.clone()),
        kem()
    );
}
