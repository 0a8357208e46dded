//! The server's prekey workflow (docs/PROTOCOL.md sections 3.3 to 3.5): the byte forms of
//! every public prekey and of uploads, bundles a server assembles from what it stored, and
//! the prekey maintenance policy, each expectation written from the documented policy.

mod common;
#[path = "common/state.rs"]
mod state;

use std::collections::BTreeMap;

use common::{T0, pb, rng};
use rand_chacha::ChaCha20Rng;
use ratchetbox::{
    Account, AssembleError, DecodeError, DecryptError, IdentityKey, KemPreKey, KemPreKeyId,
    MAX_ONE_TIME_KEM_PREKEYS, MAX_ONE_TIME_PREKEYS, MAX_UPLOAD_ONE_TIME_PREKEYS,
    ONE_TIME_PREKEY_LOW_WATER, ONE_TIME_PREKEY_TARGET, OneTimePreKey, OneTimePreKeyId,
    PREKEY_ROTATION_PERIOD_SECS, PreKeyBundle, PreKeyError, PreKeyKind, PreKeyMaintenance,
    PreKeyUpload, REPLACED_PREKEY_GRACE_SECS, ServerPreKeyStatus, SessionRecord, SignedPreKey,
    SignedPreKeyId, Timestamp, UploadError,
};

const DAY: u64 = 86_400;

fn at(secs_after_t0: u64) -> Timestamp {
    T0.saturating_add_secs(secs_after_t0)
}

fn flip(bytes: &[u8], bit: usize) -> Vec<u8> {
    let mut out = bytes.to_vec();
    out[bit / 8] ^= 1 << (bit % 8);
    out
}

/// The variant name of an error, without its fields, for tallies.
fn kind(error: &impl std::fmt::Debug) -> String {
    let debug = format!("{error:?}");
    let end = debug.find([' ', '(', '{']).unwrap_or(debug.len());
    debug[..end].to_string()
}

fn upload_kind(error: &UploadError) -> String {
    match error {
        UploadError::Decode(decode) => format!("Decode({})", kind(decode)),
        UploadError::BadSignature { kind, .. } => format!("BadSignature({kind:?})"),
        other => kind(other),
    }
}

fn ids_of_one_time(upload: &PreKeyUpload) -> Vec<u32> {
    upload.one_time_prekeys().iter().map(|k| k.id().0).collect()
}

fn ids_of_one_time_kem(upload: &PreKeyUpload) -> Vec<u32> {
    upload
        .one_time_kem_prekeys()
        .iter()
        .map(|k| k.id().0)
        .collect()
}

/// A toy server (docs/PROTOCOL.md section 3.4): it keeps the byte forms of what it accepted,
/// hands out one-time keys in increasing id order, and reports its state.
#[derive(Default)]
struct Server {
    identity: Option<IdentityKey>,
    signed: Option<Vec<u8>>,
    last_resort: Option<Vec<u8>>,
    one_time: BTreeMap<u32, Vec<u8>>,
    newest_one_time: Option<u32>,
    one_time_kem: BTreeMap<u32, Vec<u8>>,
    newest_one_time_kem: Option<u32>,
}

impl Server {
    fn receive(&mut self, bytes: &[u8]) -> Result<(), UploadError> {
        let upload = PreKeyUpload::from_bytes(bytes)?;
        if let Some(identity) = self.identity {
            assert_eq!(identity, upload.identity_key(), "the same device");
        }
        self.identity = Some(upload.identity_key());
        if let Some(signed) = upload.signed_prekey() {
            self.signed = Some(signed.to_bytes());
        }
        if let Some(last_resort) = upload.last_resort_kem_prekey() {
            self.last_resort = Some(last_resort.to_bytes());
        }
        if let Some(last) = upload.one_time_prekeys().last() {
            self.one_time = upload
                .one_time_prekeys()
                .iter()
                .map(|k| (k.id().0, k.to_bytes()))
                .collect();
            self.newest_one_time = Some(last.id().0);
        }
        if let Some(last) = upload.one_time_kem_prekeys().last() {
            self.one_time_kem = upload
                .one_time_kem_prekeys()
                .iter()
                .map(|k| (k.id().0, k.to_bytes()))
                .collect();
            self.newest_one_time_kem = Some(last.id().0);
        }
        Ok(())
    }

    fn status(&self) -> ServerPreKeyStatus {
        ServerPreKeyStatus {
            signed_prekey_id: self
                .signed
                .as_ref()
                .map(|b| SignedPreKey::from_bytes(b).unwrap().id()),
            last_resort_kem_prekey_id: self
                .last_resort
                .as_ref()
                .map(|b| KemPreKey::from_bytes(b).unwrap().id()),
            one_time_prekeys: self.one_time.len() as u32,
            newest_one_time_prekey_id: self.newest_one_time.map(OneTimePreKeyId),
            one_time_kem_prekeys: self.one_time_kem.len() as u32,
            newest_one_time_kem_prekey_id: self.newest_one_time_kem.map(KemPreKeyId),
        }
    }

    /// A bundle, taking one key out of each one-time pool (the last-resort KEM prekey when
    /// the KEM pool is empty).
    fn bundle(&mut self) -> PreKeyBundle {
        let one_time = self
            .one_time
            .pop_first()
            .map(|(_, b)| OneTimePreKey::from_bytes(&b).unwrap());
        let kem = match self.one_time_kem.pop_first() {
            Some((_, b)) => KemPreKey::from_bytes(&b).unwrap(),
            None => KemPreKey::from_bytes(self.last_resort.as_ref().unwrap()).unwrap(),
        };
        let signed = SignedPreKey::from_bytes(self.signed.as_ref().unwrap()).unwrap();
        PreKeyBundle::assemble(self.identity.unwrap(), &signed, one_time, Some(&kem))
            .expect("the server's keys are signed")
    }
}

/// Runs maintenance and delivers its upload to `server`.
fn maintain(
    r: &mut ChaCha20Rng,
    account: &mut Account,
    server: &mut Server,
    now: Timestamp,
) -> Option<PreKeyUpload> {
    let upload = account
        .prekey_maintenance(r, now, server.status())
        .expect("maintenance");
    if let Some(upload) = &upload {
        server.receive(&upload.to_bytes()).expect("a valid upload");
    }
    upload
}

/// Alice starts a session from `bundle` and sends a message; `owner` must accept it.
fn first_message(r: &mut ChaCha20Rng, bundle: &PreKeyBundle) -> Vec<u8> {
    let alice = Account::new(r, T0);
    let mut record = SessionRecord::new();
    record.initiate(r, &alice, bundle).expect("initiate");
    record.encrypt(r, b"hello from a bundle").expect("encrypt")
}

fn accept(owner: &mut Account, wire: &[u8]) -> Result<Vec<u8>, DecryptError> {
    SessionRecord::new().decrypt(owner, wire, T0)
}

// ---------------------------------------------------------------------------------------
// Byte forms
// ---------------------------------------------------------------------------------------

/// An account whose first maintenance made one upload, with the signed prekey rotated once.
fn sample() -> (ChaCha20Rng, Account, PreKeyUpload) {
    let mut r = rng(11);
    let mut account = Account::new(&mut r, T0);
    let upload = account
        .prekey_maintenance(&mut r, T0, ServerPreKeyStatus::default())
        .unwrap()
        .unwrap();
    (r, account, upload)
}

#[test]
fn every_byte_form_round_trips() {
    let (_, account, upload) = sample();
    let signed = account.signed_prekey();
    assert_eq!(
        &SignedPreKey::from_bytes(&signed.to_bytes()).unwrap(),
        signed
    );
    let last_resort = account.last_resort_kem_prekey();
    assert_eq!(
        &KemPreKey::from_bytes(&last_resort.to_bytes()).unwrap(),
        last_resort
    );
    for key in upload.one_time_prekeys() {
        assert_eq!(&OneTimePreKey::from_bytes(&key.to_bytes()).unwrap(), key);
    }
    for key in upload.one_time_kem_prekeys() {
        assert_eq!(&KemPreKey::from_bytes(&key.to_bytes()).unwrap(), key);
    }
    let bytes = upload.to_bytes();
    let decoded = PreKeyUpload::from_bytes(&bytes).unwrap();
    assert_eq!(decoded, upload);
    assert_eq!(decoded.to_bytes(), bytes);

    // An upload without one-time keys (no field 5) and one with only one-time prekeys.
    let only_signed = account.prekey_upload(true, false, &[], &[]).unwrap();
    assert_eq!(
        PreKeyUpload::from_bytes(&only_signed.to_bytes()).unwrap(),
        only_signed
    );
    let only_one_time = account
        .prekey_upload(false, false, &[OneTimePreKeyId(7), OneTimePreKeyId(3)], &[])
        .unwrap();
    assert_eq!(ids_of_one_time(&only_one_time), [3, 7]);
    assert_eq!(
        PreKeyUpload::from_bytes(&only_one_time.to_bytes()).unwrap(),
        only_one_time
    );
    // The documented longest upload.
    assert_eq!(PreKeyUpload::MAX_LEN, 171_777);
}

#[test]
fn the_byte_forms_match_the_independent_implementation() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/vectors.json");
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let hex = |value: &serde_json::Value| hex::decode(value.as_str().unwrap()).unwrap();
    let bob = Account::from_bytes(&hex(&v["account_plain"])).unwrap();

    let forms = &v["prekeys"];
    assert_eq!(bob.signed_prekey().to_bytes(), hex(&forms["signed_prekey"]));
    assert_eq!(
        bob.last_resort_kem_prekey().to_bytes(),
        hex(&forms["last_resort_kem_prekey"])
    );
    let one_time: Vec<_> = bob.one_time_prekeys().collect();
    assert_eq!(one_time[0].to_bytes(), hex(&forms["one_time_prekey"]));
    let kem: Vec<_> = bob.one_time_kem_prekeys().collect();
    assert_eq!(kem[0].to_bytes(), hex(&forms["one_time_kem_prekey"]));

    let expected = hex(&v["upload"]["bytes"]);
    let upload = bob
        .prekey_upload(true, true, &[OneTimePreKeyId(1)], &[KemPreKeyId(2)])
        .unwrap();
    assert_eq!(upload.to_bytes(), expected);
    let decoded = PreKeyUpload::from_bytes(&expected).unwrap();
    assert_eq!(decoded.identity_key(), bob.identity_key());
    assert_eq!(decoded.signed_prekey(), Some(bob.signed_prekey()));
    assert_eq!(ids_of_one_time(&decoded), [1]);
    assert_eq!(ids_of_one_time_kem(&decoded), [2]);
    // The one-time prekeys' signature is over the message the vectors give.
    let signature = pb::decode::<pb::PreKeyUpload>(&expected).one_time_prekeys_signature;
    let message = hex(&v["upload"]["one_time_prekeys_message"]);
    let key = ed25519_dalek::VerifyingKey::from_bytes(bob.identity_key().as_bytes()).unwrap();
    key.verify_strict(&message, &signature.as_slice().try_into().unwrap())
        .expect("field 5 signs the documented message");
}

/// Every single-bit change of a signed prekey's bytes is refused, or decodes to another
/// value whose signature does not verify.
#[test]
fn every_bit_flip_of_a_signed_prekey_is_refused_or_fails_verification() {
    let (_, account, _) = sample();
    let original = account.signed_prekey().clone();
    let identity = account.identity_key();
    let bytes = original.to_bytes();
    let mut tally = BTreeMap::<String, usize>::new();
    for bit in 0..bytes.len() * 8 {
        match SignedPreKey::from_bytes(&flip(&bytes, bit)) {
            Err(error) => *tally.entry(kind(&error)).or_default() += 1,
            Ok(other) => {
                assert_ne!(other, original, "bit {bit}: two encodings of one value");
                assert!(!other.verify(&identity), "bit {bit}: still verifies");
                *tally.entry("decoded, signature fails".into()).or_default() += 1;
            }
        }
    }
    assert_eq!(tally.values().sum::<usize>(), bytes.len() * 8);
    for expected in [
        "UnsupportedVersion",
        "NonCanonicalKey",
        "NonCanonical",
        "decoded, signature fails",
    ] {
        assert!(
            tally.contains_key(expected),
            "{expected} missing: {tally:?}"
        );
    }
}

#[test]
fn every_bit_flip_of_a_kem_prekey_is_refused_or_fails_verification() {
    let (_, account, _) = sample();
    let identity = account.identity_key();
    // One key: one-time and last-resort KEM prekeys have the same byte form (and each kind is
    // flipped bit by bit inside an upload below).
    for original in [account.last_resort_kem_prekey().clone()] {
        let bytes = original.to_bytes();
        let mut tally = BTreeMap::<String, usize>::new();
        for bit in 0..bytes.len() * 8 {
            match KemPreKey::from_bytes(&flip(&bytes, bit)) {
                Err(error) => *tally.entry(kind(&error)).or_default() += 1,
                Ok(other) => {
                    assert_ne!(other, original, "bit {bit}: two encodings of one value");
                    assert!(!other.verify(&identity), "bit {bit}: still verifies");
                    *tally.entry("decoded, signature fails".into()).or_default() += 1;
                }
            }
        }
        for expected in [
            "UnsupportedVersion",
            "InvalidValue",
            "decoded, signature fails",
        ] {
            assert!(
                tally.contains_key(expected),
                "{expected} missing: {tally:?}"
            );
        }
    }
}

/// One-time prekeys are unsigned on their own (as in Signal; an upload signs them as a
/// batch): a flipped bit is refused or names another key, never the same one.
#[test]
fn every_bit_flip_of_a_one_time_prekey_is_refused_or_is_another_key() {
    let (_, _, upload) = sample();
    let original = upload.one_time_prekeys()[0];
    let bytes = original.to_bytes();
    let mut refused = 0;
    for bit in 0..bytes.len() * 8 {
        match OneTimePreKey::from_bytes(&flip(&bytes, bit)) {
            Err(_) => refused += 1,
            Ok(other) => assert_ne!(other, original, "bit {bit}: two encodings of one value"),
        }
    }
    assert!(refused > 0);
}

/// Everything in an upload is signed, and `from_bytes` checks every signature: no single-bit
/// change of a valid upload is accepted. Two uploads cover every kind of field (one carries
/// the last-resort KEM prekey alone, so that each flip parses one ML-KEM key, not two).
#[test]
fn every_bit_flip_of_an_upload_is_refused() {
    let (_, account, _) = sample();
    let uploads = [
        account
            .prekey_upload(
                true,
                false,
                &[OneTimePreKeyId(1), OneTimePreKeyId(2)],
                &[KemPreKeyId(2)],
            )
            .unwrap(),
        account.prekey_upload(false, true, &[], &[]).unwrap(),
    ];
    let mut tally = BTreeMap::<String, usize>::new();
    for upload in uploads {
        let bytes = upload.to_bytes();
        for bit in 0..bytes.len() * 8 {
            let error = PreKeyUpload::from_bytes(&flip(&bytes, bit))
                .expect_err("a bit-flipped upload was accepted");
            *tally.entry(upload_kind(&error)).or_default() += 1;
        }
    }
    for expected in [
        "Decode(UnsupportedVersion)",
        "Decode(InvalidIdentityKey)",
        "Decode(NonCanonicalKey)",
        "Decode(InvalidValue)",
        "BadSignature(Signed)",
        "BadSignature(LastResortKem)",
        "BadSignature(OneTimeKem)",
        "BadOneTimePreKeysSignature",
        "IdsNotIncreasing",
    ] {
        assert!(
            tally.contains_key(expected),
            "{expected} missing: {tally:?}"
        );
    }
}

/// Bit 255 of an X25519 key (which X25519 itself ignores) is refused wherever a prekey is
/// decoded, naming the object and field.
#[test]
fn non_canonical_keys_are_refused() {
    let (_, account, upload) = sample();
    let top = |bytes: &[u8], key: &[u8]| {
        let start = bytes.windows(32).position(|w| w == key).unwrap();
        flip(bytes, (start + 31) * 8 + 7)
    };
    let signed = account.signed_prekey();
    assert_eq!(
        SignedPreKey::from_bytes(&top(&signed.to_bytes(), signed.public_key().as_bytes())),
        Err(DecodeError::NonCanonicalKey {
            object: "SignedPreKey",
            field: "public_key"
        })
    );
    let one_time = upload.one_time_prekeys()[0];
    assert_eq!(
        OneTimePreKey::from_bytes(&top(&one_time.to_bytes(), one_time.public_key().as_bytes())),
        Err(DecodeError::NonCanonicalKey {
            object: "OneTimePreKey",
            field: "public_key"
        })
    );
    let bytes = upload.to_bytes();
    assert_eq!(
        PreKeyUpload::from_bytes(&top(&bytes, one_time.public_key().as_bytes())),
        Err(UploadError::Decode(DecodeError::NonCanonicalKey {
            object: "OneTimePreKey",
            field: "public_key"
        }))
    );
    assert_eq!(
        PreKeyUpload::from_bytes(&top(&bytes, signed.public_key().as_bytes())),
        Err(UploadError::Decode(DecodeError::NonCanonicalKey {
            object: "SignedPreKey",
            field: "public_key"
        }))
    );
}

fn edit(upload: &PreKeyUpload, change: impl FnOnce(&mut pb::PreKeyUpload)) -> Vec<u8> {
    let mut p: pb::PreKeyUpload = pb::decode(&upload.to_bytes());
    change(&mut p);
    pb::encode(&p)
}

#[test]
fn uploads_with_a_bad_signature_are_refused_with_the_exact_variant() {
    let (_, account, _) = sample();
    let full = account
        .prekey_upload(
            true,
            true,
            &[OneTimePreKeyId(1), OneTimePreKeyId(2)],
            &[KemPreKeyId(2), KemPreKeyId(3)],
        )
        .unwrap();
    let bad_signature = |s: &mut Vec<u8>| s[0] ^= 1;
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| bad_signature(
            &mut p.signed_prekey.as_mut().unwrap().signature
        ))),
        Err(UploadError::BadSignature {
            kind: PreKeyKind::Signed,
            id: 1
        })
    );
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| bad_signature(
            &mut p.last_resort_kem_prekey.as_mut().unwrap().signature
        ))),
        Err(UploadError::BadSignature {
            kind: PreKeyKind::LastResortKem,
            id: 1
        })
    );
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| bad_signature(
            &mut p.one_time_prekeys_signature
        ))),
        Err(UploadError::BadOneTimePreKeysSignature)
    );
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| bad_signature(
            &mut p.one_time_kem_prekeys[1].signature
        ))),
        Err(UploadError::BadSignature {
            kind: PreKeyKind::OneTimeKem,
            id: 3
        })
    );
    // The messages name each kind in words.
    for (kind, words) in [
        (PreKeyKind::Signed, "signed prekey"),
        (PreKeyKind::OneTime, "one-time prekey"),
        (PreKeyKind::LastResortKem, "last-resort KEM prekey"),
        (PreKeyKind::OneTimeKem, "one-time KEM prekey"),
    ] {
        assert_eq!(
            UploadError::BadSignature { kind, id: 3 }.to_string(),
            format!("the {words} with id 3 is not signed by the upload's identity key")
        );
    }
    // A one-time prekey swapped for another valid key: the batch signature no longer holds.
    let other = account.one_time_prekeys().nth(5).unwrap();
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| p.one_time_prekeys[1].public_key =
            other.public_key().as_bytes().to_vec())),
        Err(UploadError::BadOneTimePreKeysSignature)
    );
    // One key dropped from the signed batch.
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| {
            p.one_time_prekeys.pop();
        })),
        Err(UploadError::BadOneTimePreKeysSignature)
    );
    // Another device's identity key: the first signature checked fails.
    let mut r = rng(12);
    let stranger = Account::new(&mut r, T0);
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| p.identity_key =
            stranger.identity_key().as_bytes().to_vec())),
        Err(UploadError::BadSignature {
            kind: PreKeyKind::Signed,
            id: 1
        })
    );
    // Nothing but one-time KEM prekeys, of another device: refused too.
    let kem_only = account
        .prekey_upload(false, false, &[], &[KemPreKeyId(5)])
        .unwrap();
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&kem_only, |p| p.identity_key =
            stranger.identity_key().as_bytes().to_vec())),
        Err(UploadError::BadSignature {
            kind: PreKeyKind::OneTimeKem,
            id: 5
        })
    );
}

#[test]
fn malformed_uploads_are_refused_with_the_exact_variant() {
    let (_, account, first) = sample();
    let full = account
        .prekey_upload(
            true,
            true,
            &[OneTimePreKeyId(1), OneTimePreKeyId(2)],
            &[KemPreKeyId(2), KemPreKeyId(3)],
        )
        .unwrap();
    assert_eq!(
        PreKeyUpload::from_bytes(&[]),
        Err(UploadError::Decode(DecodeError::Empty {
            object: "PreKeyUpload"
        }))
    );
    // Repeated and descending ids, checked before any signature.
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| p.one_time_prekeys[1] =
            p.one_time_prekeys[0].clone())),
        Err(UploadError::IdsNotIncreasing {
            kind: PreKeyKind::OneTime,
            id: 1
        })
    );
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| p.one_time_kem_prekeys.swap(0, 1))),
        Err(UploadError::IdsNotIncreasing {
            kind: PreKeyKind::OneTimeKem,
            id: 2
        })
    );
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| p
            .last_resort_kem_prekey
            .as_mut()
            .unwrap()
            .id = 3)),
        Err(UploadError::SharedKemPreKeyId { id: 3 })
    );
    // The signature of the one-time prekeys: missing, present without them, too short.
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| p.one_time_prekeys_signature.clear())),
        Err(UploadError::Decode(DecodeError::MissingField {
            object: "PreKeyUpload",
            field: "one_time_prekeys_signature"
        }))
    );
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| p.one_time_prekeys.clear())),
        Err(UploadError::Decode(DecodeError::InvalidValue {
            object: "PreKeyUpload",
            field: "one_time_prekeys_signature",
            reason: "present without one-time prekeys"
        }))
    );
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&full, |p| {
            p.one_time_prekeys_signature.pop();
        })),
        Err(UploadError::Decode(DecodeError::InvalidLength {
            object: "PreKeyUpload",
            field: "one_time_prekeys_signature",
            expected: 64,
            found: 63
        }))
    );
    // Counts, checked before the keys are read: 101 one-time prekeys (all copies of one,
    // which would fail later), and 101 one-time KEM prekeys.
    let max = MAX_UPLOAD_ONE_TIME_PREKEYS;
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&first, |p| p
            .one_time_prekeys
            .push(p.one_time_prekeys[0].clone()))),
        Err(UploadError::TooManyPreKeys {
            kind: PreKeyKind::OneTime,
            count: max + 1,
            max
        })
    );
    assert_eq!(
        PreKeyUpload::from_bytes(&edit(&first, |p| {
            p.one_time_prekeys.clear();
            p.one_time_prekeys_signature.clear();
            p.one_time_kem_prekeys
                .push(p.one_time_kem_prekeys[0].clone());
        })),
        Err(UploadError::TooManyPreKeys {
            kind: PreKeyKind::OneTimeKem,
            count: max + 1,
            max
        })
    );
    // Input beyond the longest valid upload is refused before decoding.
    let long = vec![1u8; PreKeyUpload::MAX_LEN + 1];
    assert_eq!(
        PreKeyUpload::from_bytes(&long),
        Err(UploadError::TooLarge {
            len: PreKeyUpload::MAX_LEN + 1,
            max: PreKeyUpload::MAX_LEN
        })
    );
    // An unknown field (a newer format) is non-canonical.
    let mut extra = full.to_bytes();
    extra.extend_from_slice(&[0x38, 0x01]);
    assert_eq!(
        PreKeyUpload::from_bytes(&extra),
        Err(UploadError::Decode(DecodeError::NonCanonical {
            object: "PreKeyUpload"
        }))
    );
}

#[test]
fn prekey_upload_refuses_unknown_ids_and_too_many() {
    let (_, account, _) = sample();
    assert_eq!(
        account
            .prekey_upload(false, false, &[OneTimePreKeyId(101)], &[])
            .err(),
        Some(PreKeyError::UnknownOneTimePreKey { id: 101 })
    );
    // Id 1 is the last-resort KEM prekey, not a one-time one.
    assert_eq!(
        account
            .prekey_upload(false, false, &[], &[KemPreKeyId(1)])
            .err(),
        Some(PreKeyError::UnknownKemPreKey { id: 1 })
    );
    let many: Vec<_> = (1..=101).map(OneTimePreKeyId).collect();
    assert_eq!(
        account.prekey_upload(false, false, &many, &[]).err(),
        Some(PreKeyError::TooManyForUpload { max: 100 })
    );
    // Exactly 100 is allowed.
    let full = account
        .prekey_upload(false, false, &many[..100], &[])
        .unwrap();
    assert_eq!(ids_of_one_time(&full), (1..=100).collect::<Vec<_>>());
    // Repeats collapse.
    let twice = account
        .prekey_upload(false, false, &[OneTimePreKeyId(4), OneTimePreKeyId(4)], &[])
        .unwrap();
    assert_eq!(ids_of_one_time(&twice), [4]);
}

// ---------------------------------------------------------------------------------------
// Bundles assembled by a server
// ---------------------------------------------------------------------------------------

#[test]
fn assemble_gives_the_bytes_of_prekey_bundle() {
    let (_, account, upload) = sample();
    let identity = account.identity_key();
    let signed = account.signed_prekey();
    let one_time = upload.one_time_prekeys()[3];
    let kem = &upload.one_time_kem_prekeys()[7];
    let last_resort = account.last_resort_kem_prekey();
    let cases = [
        (
            PreKeyBundle::assemble(identity, signed, Some(one_time), Some(kem)),
            account.prekey_bundle(Some(one_time.id()), Some(kem.id())),
        ),
        (
            PreKeyBundle::assemble(identity, signed, None, Some(kem)),
            account.prekey_bundle(None, Some(kem.id())),
        ),
        (
            PreKeyBundle::assemble(identity, signed, Some(one_time), Some(last_resort)),
            account.prekey_bundle(Some(one_time.id()), None),
        ),
        (
            PreKeyBundle::assemble(identity, signed, None, None),
            account.classical_prekey_bundle(None),
        ),
    ];
    for (assembled, owned) in cases {
        assert_eq!(assembled.unwrap().to_bytes(), owned.unwrap().to_bytes());
    }
}

#[test]
fn assemble_refuses_keys_the_identity_did_not_sign() {
    let (_, account, _) = sample();
    let mut r = rng(13);
    let mut other = Account::new(&mut r, T0);
    other.rotate_signed_prekey(&mut r, at(1)).unwrap();
    other.rotate_last_resort_kem_prekey(&mut r, at(1)).unwrap();
    assert_eq!(
        PreKeyBundle::assemble(
            account.identity_key(),
            other.signed_prekey(),
            None,
            Some(account.last_resort_kem_prekey())
        ),
        Err(AssembleError::BadSignedPreKeySignature { id: 2 })
    );
    assert_eq!(
        PreKeyBundle::assemble(
            account.identity_key(),
            account.signed_prekey(),
            None,
            Some(other.last_resort_kem_prekey())
        ),
        Err(AssembleError::BadKemPreKeySignature { id: 2 })
    );
}

/// The whole workflow: the device uploads through maintenance, the server stores the byte
/// forms and assembles bundles, and the owner accepts the sessions they start, down to the
/// last-resort KEM prekey once the server ran out of one-time ones.
#[test]
fn bundles_a_server_assembles_start_sessions_the_owner_accepts() {
    let mut r = rng(14);
    let mut bob = Account::new(&mut r, T0);
    let mut server = Server::default();
    maintain(&mut r, &mut bob, &mut server, T0).unwrap();
    assert_eq!(server.one_time.len(), 100);
    assert_eq!(server.one_time_kem.len(), 100);

    // Three sessions with one-time keys of both kinds.
    for expected in 1..=3u32 {
        let bundle = server.bundle();
        assert_eq!(bundle.one_time_prekey().unwrap().id().0, expected);
        assert_eq!(bundle.kem_prekey().unwrap().id().0, expected + 1);
        let wire = first_message(&mut r, &bundle);
        assert_eq!(accept(&mut bob, &wire).unwrap(), b"hello from a bundle");
    }
    // The server runs out of one-time KEM prekeys: the last-resort one (id 1) is used.
    server.one_time_kem.clear();
    let bundle = server.bundle();
    assert_eq!(bundle.kem_prekey().unwrap().id(), KemPreKeyId(1));
    let wire = first_message(&mut r, &bundle);
    assert_eq!(accept(&mut bob, &wire).unwrap(), b"hello from a bundle");
    // And out of one-time prekeys.
    server.one_time.clear();
    let bundle = server.bundle();
    assert!(bundle.one_time_prekey().is_none());
    let wire = first_message(&mut r, &bundle);
    assert_eq!(accept(&mut bob, &wire).unwrap(), b"hello from a bundle");
}

// ---------------------------------------------------------------------------------------
// Maintenance policy (docs/PROTOCOL.md section 3.5)
// ---------------------------------------------------------------------------------------

#[test]
fn the_policy_constants_are_the_documented_ones() {
    assert_eq!(ONE_TIME_PREKEY_LOW_WATER, 10);
    assert_eq!(ONE_TIME_PREKEY_TARGET, 100);
    assert_eq!(PREKEY_ROTATION_PERIOD_SECS, 2 * DAY);
    assert_eq!(REPLACED_PREKEY_GRACE_SECS, 30 * DAY);
}

#[test]
fn a_new_device_uploads_everything() {
    let mut r = rng(20);
    let mut account = Account::new(&mut r, T0);
    let plan = account.prekey_maintenance_plan(T0, ServerPreKeyStatus::default());
    assert_eq!(
        plan,
        PreKeyMaintenance {
            replaced_prekeys_to_delete: 0,
            rotate_signed_prekey: false,
            upload_signed_prekey: true,
            rotate_last_resort_kem_prekey: false,
            upload_last_resort_kem_prekey: true,
            resend_one_time_prekeys: 0,
            new_one_time_prekeys: 100,
            one_time_prekeys_capped: false,
            resend_one_time_kem_prekeys: 0,
            new_one_time_kem_prekeys: 100,
            one_time_kem_prekeys_capped: false,
        }
    );
    assert!(plan.needs_upload());
    let upload = account
        .prekey_maintenance(&mut r, T0, ServerPreKeyStatus::default())
        .unwrap()
        .unwrap();
    assert_eq!(upload.identity_key(), account.identity_key());
    assert_eq!(upload.signed_prekey().unwrap().id(), SignedPreKeyId(1));
    assert_eq!(
        upload.last_resort_kem_prekey().unwrap().id(),
        KemPreKeyId(1)
    );
    assert_eq!(ids_of_one_time(&upload), (1..=100).collect::<Vec<_>>());
    // One-time KEM prekeys continue the KEM sequence after the last-resort id 1.
    assert_eq!(ids_of_one_time_kem(&upload), (2..=101).collect::<Vec<_>>());
    assert!(
        upload
            .one_time_kem_prekeys()
            .iter()
            .all(|k| k.created_at() == T0)
    );
}

#[test]
fn a_server_with_the_current_keys_needs_nothing_and_nothing_changes() {
    let mut r = rng(21);
    let mut account = Account::new(&mut r, T0);
    let mut server = Server::default();
    maintain(&mut r, &mut account, &mut server, T0).unwrap();
    let before = account.to_bytes();
    // Just below the rotation period, a full server.
    let now = at(PREKEY_ROTATION_PERIOD_SECS - 1);
    assert_eq!(
        account.prekey_maintenance_plan(now, server.status()),
        PreKeyMaintenance::default()
    );
    assert!(!PreKeyMaintenance::default().needs_upload());
    assert_eq!(maintain(&mut r, &mut account, &mut server, now), None);
    assert_eq!(account.to_bytes(), before);
}

/// Hands out `n` bundles from the server and has `owner` accept a session from each, so that
/// the owner consumes the one-time keys the server handed out.
fn consume(r: &mut ChaCha20Rng, owner: &mut Account, server: &mut Server, n: usize) {
    for _ in 0..n {
        let bundle = server.bundle();
        let wire = first_message(r, &bundle);
        accept(owner, &wire).expect("the owner accepts the session");
    }
}

#[test]
fn one_time_keys_are_refilled_just_below_the_low_water_mark() {
    let mut r = rng(22);
    let mut account = Account::new(&mut r, T0);
    let mut server = Server::default();
    maintain(&mut r, &mut account, &mut server, T0).unwrap();
    // 90 sessions: the server keeps 10 of each kind, exactly the low-water mark.
    consume(&mut r, &mut account, &mut server, 90);
    assert_eq!(server.status().one_time_prekeys, 10);
    assert_eq!(server.status().one_time_kem_prekeys, 10);
    let now = at(3600);
    assert_eq!(maintain(&mut r, &mut account, &mut server, now), None);

    // One more: 9 left of each kind, below the mark.
    consume(&mut r, &mut account, &mut server, 1);
    let plan = account.prekey_maintenance_plan(now, server.status());
    // One-time prekeys: a full batch. One-time KEM prekeys: the account holds the 9 the
    // server still has, so the room left under 100 is 91: a capped batch of 91.
    assert_eq!(
        (
            plan.new_one_time_prekeys,
            plan.one_time_prekeys_capped,
            plan.new_one_time_kem_prekeys,
            plan.one_time_kem_prekeys_capped,
        ),
        (100, false, 91, true)
    );
    let upload = maintain(&mut r, &mut account, &mut server, now).unwrap();
    assert!(upload.signed_prekey().is_none());
    assert!(upload.last_resort_kem_prekey().is_none());
    assert_eq!(ids_of_one_time(&upload), (101..=200).collect::<Vec<_>>());
    assert_eq!(
        ids_of_one_time_kem(&upload),
        (102..=192).collect::<Vec<_>>()
    );
    // The server replaced its pools; the 9 keys of the old batches stay usable on the
    // account during their grace: a bundle handed out before the upload still works.
    assert_eq!(server.one_time.len(), 100);
    assert_eq!(server.one_time_kem.len(), 91);
    assert_eq!(account.one_time_prekeys().count(), 109);
    assert_eq!(account.one_time_kem_prekeys().count(), 100);
}

#[test]
fn rotation_happens_exactly_at_the_period() {
    let mut r = rng(23);
    let mut account = Account::new(&mut r, T0);
    let mut server = Server::default();
    maintain(&mut r, &mut account, &mut server, T0).unwrap();
    let before = at(PREKEY_ROTATION_PERIOD_SECS - 1);
    let plan = account.prekey_maintenance_plan(before, server.status());
    assert!(!plan.rotate_signed_prekey && !plan.rotate_last_resort_kem_prekey);

    let now = at(PREKEY_ROTATION_PERIOD_SECS);
    let upload = maintain(&mut r, &mut account, &mut server, now).unwrap();
    let signed = upload.signed_prekey().unwrap();
    assert_eq!((signed.id(), signed.created_at()), (SignedPreKeyId(2), now));
    // KEM ids 1 (last resort) and 2..=101 (one-time) are taken: the new last resort is 102.
    let last_resort = upload.last_resort_kem_prekey().unwrap();
    assert_eq!(
        (last_resort.id(), last_resort.created_at()),
        (KemPreKeyId(102), now)
    );
    assert!(upload.one_time_prekeys().is_empty() && upload.one_time_kem_prekeys().is_empty());
    assert_eq!(account.signed_prekey(), signed);
}

#[test]
fn the_replay_memory_filling_up_rotates_the_signed_prekey() {
    let mut r = rng(24);
    let mut account = Account::new(&mut r, T0);
    let mut server = Server::default();
    maintain(&mut r, &mut account, &mut server, T0).unwrap();
    // Setups without any one-time key, until the replay memory of signed prekey 1 is half
    // full (ratchetbox::MAX_USED_SETUPS / 2).
    let bundle = account.classical_prekey_bundle(None).unwrap();
    let config = ratchetbox::SessionConfig::default().with_classical_setup_allowed(true);
    let initiator = Account::new(&mut r, T0);
    for _ in 0..ratchetbox::MAX_USED_SETUPS / 2 {
        let mut record = SessionRecord::with_config(config);
        record.initiate(&mut r, &initiator, &bundle).unwrap();
        let wire = record.encrypt(&mut r, b"x").unwrap();
        SessionRecord::with_config(config)
            .decrypt(&mut account, &wire, T0)
            .unwrap();
    }
    assert!(account.signed_prekey_rotation_due());
    let upload = maintain(&mut r, &mut account, &mut server, at(60)).unwrap();
    assert_eq!(upload.signed_prekey().unwrap().id(), SignedPreKeyId(2));
    assert!(upload.last_resort_kem_prekey().is_none());
    assert!(!account.signed_prekey_rotation_due());

    // Deleting signed prekey 1 deletes its 1,000 remembered setups with it: the state shrinks
    // by at least their 32-byte base keys, and it still loads (a persisted account whose replay
    // memory names a signed prekey it does not hold is refused as corrupt).
    let before = account.to_bytes().len();
    assert_eq!(account.remove_replaced_prekeys(at(60), 0), 1);
    let after = account.to_bytes();
    assert!(
        after.len() + 32 * ratchetbox::MAX_USED_SETUPS / 2 <= before,
        "{before} -> {}",
        after.len()
    );
    let reloaded = Account::from_bytes(&after).expect("the account loads");
    assert_eq!(reloaded.to_bytes(), after);
}

#[test]
fn a_clock_going_backwards_causes_no_rotation_storm_and_no_early_deletion() {
    let mut r = rng(25);
    let mut account = Account::new(&mut r, T0);
    let mut server = Server::default();
    maintain(&mut r, &mut account, &mut server, T0).unwrap();
    // A step back of less than a period rotates nothing.
    let plan = account.prekey_maintenance_plan(
        T0.saturating_sub_secs(PREKEY_ROTATION_PERIOD_SECS - 1),
        server.status(),
    );
    assert!(!plan.rotate_signed_prekey && !plan.rotate_last_resort_kem_prekey);

    // The clock walks back an hour per call for 10 days: a rotation each time it is a whole
    // period (48 hours) before the current keys' creation, that is at calls 48, 96, 144, 192
    // and 240, five in all, and nothing is ever deleted.
    let mut rotations = 0;
    for hour in 1..=240u64 {
        let now = T0.saturating_sub_secs(hour * 3600);
        let plan = account.prekey_maintenance_plan(now, server.status());
        assert_eq!(plan.replaced_prekeys_to_delete, 0, "hour {hour}");
        assert_eq!(
            plan.rotate_signed_prekey,
            hour % 48 == 0,
            "hour {hour}: signed prekey"
        );
        assert_eq!(plan.rotate_last_resort_kem_prekey, hour % 48 == 0);
        if maintain(&mut r, &mut account, &mut server, now)
            .is_some_and(|u| u.signed_prekey().is_some())
        {
            rotations += 1;
        }
    }
    assert_eq!(rotations, 5);
    assert_eq!(account.signed_prekey().id(), SignedPreKeyId(6));
    assert_eq!(
        state::decode_account(&account.to_bytes())
            .signed_prekeys
            .len(),
        6,
        "nothing was deleted"
    );
    // The clock comes back. Each replaced key was last current at its own creation (its
    // successor was stamped earlier): signed prekey 1 and last-resort KEM prekey 1 at T0, the
    // others 48, 96, 144 and 192 hours before. One second before T0 + 30 days, the eight
    // older ones have outlived their grace; at T0 + 30 days all ten.
    let status = server.status();
    let plan = account.prekey_maintenance_plan(at(REPLACED_PREKEY_GRACE_SECS - 1), status);
    assert_eq!(plan.replaced_prekeys_to_delete, 8);
    let plan = account.prekey_maintenance_plan(at(REPLACED_PREKEY_GRACE_SECS), status);
    assert_eq!(plan.replaced_prekeys_to_delete, 10);
}

#[test]
fn replaced_prekeys_are_deleted_exactly_when_their_grace_ends() {
    let mut r = rng(26);
    let mut bob = Account::new(&mut r, T0);
    let mut server = Server::default();
    maintain(&mut r, &mut bob, &mut server, T0).unwrap();
    // A bundle handed out (one-time prekey 1, one-time KEM prekey 2, signed prekey 1) whose
    // message is still on its way.
    let early = first_message(&mut r, &server.bundle());

    // An hour later the server reports 9 one-time prekeys of the current batch: a new batch
    // replaces the first one (ids 1..=100). The KEM pool (99 left) is not touched, and
    // nothing is rotated.
    let replaced_at = at(3600);
    let status = ServerPreKeyStatus {
        one_time_prekeys: 9,
        ..server.status()
    };
    let upload = bob
        .prekey_maintenance(&mut r, replaced_at, status)
        .unwrap()
        .unwrap();
    assert_eq!(ids_of_one_time(&upload), (101..=200).collect::<Vec<_>>());
    assert!(upload.one_time_kem_prekeys().is_empty() && upload.signed_prekey().is_none());
    server.receive(&upload.to_bytes()).unwrap();

    // The 100 replaced one-time prekeys outlive their grace 30 days after the replacement.
    let end = replaced_at.saturating_add_secs(REPLACED_PREKEY_GRACE_SECS);
    let status = server.status();
    let just_before = end.saturating_sub_secs(1);
    assert_eq!(
        bob.prekey_maintenance_plan(just_before, status)
            .replaced_prekeys_to_delete,
        0
    );
    assert_eq!(
        bob.remove_replaced_prekeys(just_before, REPLACED_PREKEY_GRACE_SECS),
        0
    );
    // The message on the old batch still decrypts (on a copy of the account).
    let mut copy = bob.clone();
    assert_eq!(accept(&mut copy, &early).unwrap(), b"hello from a bundle");
    assert_eq!(
        bob.prekey_maintenance_plan(end, status)
            .replaced_prekeys_to_delete,
        100
    );
    // At the end they go, and only they.
    assert_eq!(
        bob.clone()
            .remove_replaced_prekeys(end, REPLACED_PREKEY_GRACE_SECS),
        100
    );
    // Maintenance at the end deletes them (and rotates both prekeys, 30 days old).
    let upload = maintain(&mut r, &mut bob, &mut server, end).unwrap();
    assert_eq!(upload.signed_prekey().unwrap().id(), SignedPreKeyId(2));
    assert_eq!(
        bob.one_time_prekeys().next().unwrap().id(),
        OneTimePreKeyId(101)
    );
    // The message now names a deleted one-time prekey: refused as a used one (the account
    // does not tell used from expired one-time keys). Signed prekey 1 is still held.
    assert_eq!(
        accept(&mut bob.clone(), &early),
        Err(DecryptError::OneTimePreKeyUsed { id: 1 })
    );

    // Signed prekey 1 and last-resort KEM prekey 1, replaced at `end`, go 30 days later.
    let gone = end.saturating_add_secs(REPLACED_PREKEY_GRACE_SECS);
    let status = server.status();
    assert_eq!(
        bob.prekey_maintenance_plan(gone.saturating_sub_secs(1), status)
            .replaced_prekeys_to_delete,
        0
    );
    assert_eq!(
        bob.prekey_maintenance_plan(gone, status)
            .replaced_prekeys_to_delete,
        2
    );
    assert_eq!(
        bob.remove_replaced_prekeys(gone, REPLACED_PREKEY_GRACE_SECS),
        2
    );
    assert_eq!(
        accept(&mut bob, &early),
        Err(DecryptError::UnknownSignedPreKey { id: 1 })
    );
}

#[test]
fn a_full_account_caps_the_refill() {
    let mut r = rng(27);
    let mut account = Account::new(&mut r, T0);
    let mut server = Server::default();
    maintain(&mut r, &mut account, &mut server, T0).unwrap();
    // The server handed out 95 keys of each kind whose initial messages never came: the
    // account still holds all 100 one-time KEM prekeys, the limit.
    for _ in 0..95 {
        server.bundle();
    }
    let now = at(3600);
    let plan = account.prekey_maintenance_plan(now, server.status());
    assert_eq!(
        (
            plan.new_one_time_kem_prekeys,
            plan.one_time_kem_prekeys_capped
        ),
        (0, true)
    );
    assert_eq!(
        (plan.new_one_time_prekeys, plan.one_time_prekeys_capped),
        (100, false)
    );
    let upload = maintain(&mut r, &mut account, &mut server, now).unwrap();
    assert!(upload.one_time_kem_prekeys().is_empty());
    assert_eq!(
        account.one_time_kem_prekeys().count(),
        MAX_ONE_TIME_KEM_PREKEYS
    );
    // The server runs out and hands out the last-resort KEM prekey, which works.
    server.one_time_kem.clear();
    let bundle = server.bundle();
    assert_eq!(bundle.kem_prekey().unwrap().id(), KemPreKeyId(1));
    let wire = first_message(&mut r, &bundle);
    accept(&mut account, &wire).unwrap();

    // One-time prekeys near their limit of 10,000: 9,850 more (9,950 held in all, 100 of them
    // the current batch on the server) leave room for a batch of 50.
    let mut r = rng(28);
    let mut account = Account::new(&mut r, T0);
    account
        .generate_one_time_prekeys(&mut r, MAX_ONE_TIME_PREKEYS - 50, T0)
        .unwrap();
    let status = ServerPreKeyStatus {
        signed_prekey_id: Some(SignedPreKeyId(1)),
        last_resort_kem_prekey_id: Some(KemPreKeyId(1)),
        one_time_prekeys: 0,
        newest_one_time_prekey_id: Some(OneTimePreKeyId(9_950)),
        ..ServerPreKeyStatus::default()
    };
    let plan = account.prekey_maintenance_plan(now, status);
    assert_eq!(
        (plan.new_one_time_prekeys, plan.one_time_prekeys_capped),
        (50, true)
    );
    let upload = account
        .prekey_maintenance(&mut r, now, status)
        .unwrap()
        .unwrap();
    assert_eq!(
        ids_of_one_time(&upload),
        (9_951..=10_000).collect::<Vec<_>>()
    );
    // Full: the next refill is none at all, until replaced keys expire 30 days later.
    let status = ServerPreKeyStatus {
        newest_one_time_prekey_id: Some(OneTimePreKeyId(10_000)),
        ..status
    };
    let plan = account.prekey_maintenance_plan(now, status);
    assert_eq!(
        (plan.new_one_time_prekeys, plan.one_time_prekeys_capped),
        (0, true)
    );
    let later = now.saturating_add_secs(REPLACED_PREKEY_GRACE_SECS);
    let plan = account.prekey_maintenance_plan(later, status);
    assert_eq!(plan.replaced_prekeys_to_delete, 9_950);
    assert_eq!(
        (plan.new_one_time_prekeys, plan.one_time_prekeys_capped),
        (100, false)
    );
}

/// The one-time KEM prekeys a refill replaced count against the limit of 100 until their
/// grace ends; then they make room for the next refill.
#[test]
fn replaced_one_time_kem_prekeys_make_room_when_they_expire() {
    let mut r = rng(34);
    let mut account = Account::new(&mut r, T0);
    let mut server = Server::default();
    maintain(&mut r, &mut account, &mut server, T0).unwrap();
    consume(&mut r, &mut account, &mut server, 91);
    // 9 of each kind left: refills of 100 one-time prekeys (101..=200) and of 91 one-time
    // KEM prekeys (102..=192); the 9 left of each kind are marked replaced.
    let refilled_at = at(60);
    let upload = maintain(&mut r, &mut account, &mut server, refilled_at).unwrap();
    assert_eq!(
        (
            upload.one_time_prekeys().len(),
            upload.one_time_kem_prekeys().len()
        ),
        (100, 91)
    );
    assert_eq!(
        account.one_time_kem_prekeys().count(),
        MAX_ONE_TIME_KEM_PREKEYS
    );
    // 85 bundles whose messages never come: the server keeps 15 one-time prekeys and 6
    // one-time KEM prekeys, the account still holds 100 one-time KEM prekeys.
    for _ in 0..85 {
        server.bundle();
    }
    let end = refilled_at.saturating_add_secs(REPLACED_PREKEY_GRACE_SECS);
    // Before the grace ends: no room, no refill.
    let plan = account.prekey_maintenance_plan(end.saturating_sub_secs(1), server.status());
    assert_eq!(plan.replaced_prekeys_to_delete, 0);
    assert_eq!(
        (
            plan.new_one_time_kem_prekeys,
            plan.one_time_kem_prekeys_capped
        ),
        (0, true)
    );
    // At its end the 9 replaced keys of each kind go (18 in all; no signed or last-resort
    // prekey was replaced yet), leaving room for 9 one-time KEM prekeys: more than the 6 the
    // server has, so a capped batch of 9. 15 one-time prekeys are enough: none.
    let plan = account.prekey_maintenance_plan(end, server.status());
    assert_eq!(plan.replaced_prekeys_to_delete, 18);
    assert_eq!(
        (
            plan.new_one_time_kem_prekeys,
            plan.one_time_kem_prekeys_capped
        ),
        (9, true)
    );
    assert_eq!(plan.new_one_time_prekeys, 0);
    let upload = maintain(&mut r, &mut account, &mut server, end).unwrap();
    // The last-resort KEM prekey rotates first (30 days old) and takes KEM id 193; the batch
    // is 194..=202.
    assert_eq!(
        upload.last_resort_kem_prekey().unwrap().id(),
        KemPreKeyId(193)
    );
    assert_eq!(
        ids_of_one_time_kem(&upload),
        (194..=202).collect::<Vec<_>>()
    );
}

#[test]
fn a_lost_upload_is_sent_again() {
    let mut r = rng(29);
    let mut account = Account::new(&mut r, T0);
    let first = account
        .prekey_maintenance(&mut r, T0, ServerPreKeyStatus::default())
        .unwrap()
        .unwrap();
    // The upload never arrived: the same keys are uploaded again, nothing new is created.
    let before = account.to_bytes();
    let plan = account.prekey_maintenance_plan(at(60), ServerPreKeyStatus::default());
    assert_eq!(
        (
            plan.resend_one_time_prekeys,
            plan.resend_one_time_kem_prekeys
        ),
        (100, 100)
    );
    assert_eq!(
        (plan.new_one_time_prekeys, plan.new_one_time_kem_prekeys),
        (0, 0)
    );
    let again = account
        .prekey_maintenance(&mut r, at(60), ServerPreKeyStatus::default())
        .unwrap()
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(account.to_bytes(), before);

    // It arrived after all, twice: the server is as after one copy, and needs nothing.
    let mut server = Server::default();
    server.receive(&first.to_bytes()).unwrap();
    server.receive(&again.to_bytes()).unwrap();
    assert_eq!(maintain(&mut r, &mut account, &mut server, at(120)), None);
}

#[test]
fn a_late_copy_of_an_old_upload_is_corrected() {
    let mut r = rng(30);
    let mut account = Account::new(&mut r, T0);
    let mut server = Server::default();
    let first = maintain(&mut r, &mut account, &mut server, T0).unwrap();
    consume(&mut r, &mut account, &mut server, 91);
    let second = maintain(&mut r, &mut account, &mut server, at(60)).unwrap();
    assert_eq!(ids_of_one_time(&second), (101..=200).collect::<Vec<_>>());
    // A delayed copy of the first upload reaches the server and puts batch 1..=100 back.
    server.receive(&first.to_bytes()).unwrap();
    let plan = account.prekey_maintenance_plan(at(120), server.status());
    // The server's last batch ends (100) below the current batch (101): sent again.
    assert_eq!(
        (plan.resend_one_time_prekeys, plan.new_one_time_prekeys),
        (100, 0)
    );
    let third = maintain(&mut r, &mut account, &mut server, at(120)).unwrap();
    assert_eq!(ids_of_one_time(&third), ids_of_one_time(&second));
    assert_eq!(
        server.status().newest_one_time_prekey_id,
        Some(OneTimePreKeyId(200))
    );
}

#[test]
fn a_server_batch_the_account_never_issued_is_replaced() {
    let mut r = rng(31);
    let mut account = Account::new(&mut r, T0);
    let mut server = Server::default();
    maintain(&mut r, &mut account, &mut server, T0).unwrap();
    // The server claims a batch ending at id 500, which the account never issued (for
    // example an account restored from an old copy): nothing there is usable.
    let status = ServerPreKeyStatus {
        newest_one_time_prekey_id: Some(OneTimePreKeyId(500)),
        ..server.status()
    };
    let plan = account.prekey_maintenance_plan(at(60), status);
    assert_eq!(
        (plan.new_one_time_prekeys, plan.resend_one_time_prekeys),
        (100, 0)
    );
}

#[test]
fn maintenance_that_runs_out_of_ids_changes_nothing() {
    let mut r = rng(32);
    let account = Account::new(&mut r, T0);
    let mut state = state::decode_account(&account.to_bytes());
    state.next_one_time_prekey_id = u32::MAX - 50;
    let mut account = Account::from_bytes(&state::encode_account(&state)).unwrap();
    let before = account.to_bytes();
    assert_eq!(
        account
            .prekey_maintenance(&mut r, at(3 * DAY), ServerPreKeyStatus::default())
            .err(),
        Some(PreKeyError::IdsExhausted)
    );
    assert_eq!(
        account.to_bytes(),
        before,
        "the rotations were not made either"
    );
}

/// A maintenance every day for 60 days keeps at most 15 replaced signed prekeys: the
/// account's limit of 16 never deletes one before its 30 days of grace.
#[test]
fn a_daily_schedule_stays_within_the_account_limits() {
    let mut r = rng(33);
    let mut account = Account::new(&mut r, T0);
    let mut server = Server::default();
    for day in 0..=60u64 {
        maintain(&mut r, &mut account, &mut server, at(day * DAY));
        let state = state::decode_account(&account.to_bytes());
        // Rotations on days 2, 4, ...: key k (id k + 1) is created on day 2k, replaced on
        // day 2k + 2 and deleted on day 2k + 32, so on day d the account holds keys
        // (d - 32) / 2 + 1 (from day 32 on) to d / 2.
        let current = day / 2;
        let oldest_kept = if day >= 32 { (day - 32) / 2 + 1 } else { 0 };
        let ids: Vec<u32> = state.signed_prekeys.iter().map(|s| s.id).collect();
        let expected: Vec<u32> = (oldest_kept..=current).map(|k| k as u32 + 1).collect();
        assert_eq!(ids, expected, "day {day}");
        assert!(ids.len() <= 16);
        assert_eq!(state.last_resort_kem_prekeys.len(), ids.len(), "day {day}");
    }
}

// ---------------------------------------------------------------------------------------
// Untrusted input
// ---------------------------------------------------------------------------------------

/// Every prefix of a valid upload is refused without a panic, or, where it ends between two
/// fields, is a valid upload carrying fewer of the keys (each key is signed on its own, the
/// one-time prekeys as a batch; docs/PROTOCOL.md section 3.4), never the whole upload.
#[test]
fn every_truncation_of_an_upload_is_refused_or_carries_fewer_keys() {
    let (_, account, _) = sample();
    let upload = account
        .prekey_upload(true, true, &[OneTimePreKeyId(1)], &[KemPreKeyId(2)])
        .unwrap();
    let bytes = upload.to_bytes();
    let mut valid = Vec::new();
    for len in 0..bytes.len() {
        if let Ok(shorter) = PreKeyUpload::from_bytes(&bytes[..len]) {
            assert_eq!(shorter.to_bytes(), &bytes[..len]);
            assert_ne!(shorter, upload);
            valid.push((
                shorter.signed_prekey().is_some(),
                shorter.last_resort_kem_prekey().is_some(),
                shorter.one_time_prekeys().len(),
                shorter.one_time_kem_prekeys().len(),
            ));
        }
    }
    // The field boundaries: after the identity key, the signed prekey, the last-resort KEM
    // prekey, and the one-time prekey's signature (a prefix ending after the one-time
    // prekey but before its signature is refused).
    assert_eq!(
        valid,
        [
            (false, false, 0, 0),
            (true, false, 0, 0),
            (true, true, 0, 0),
            (true, true, 1, 0)
        ]
    );
    assert_eq!(PreKeyUpload::from_bytes(&bytes), Ok(upload));
}

/// The Debug output names ids and counts, not key material or signatures.
#[test]
fn an_upload_shows_ids_and_counts_in_debug_output() {
    let (_, account, upload) = sample();
    let shown = format!("{upload:?}");
    assert!(
        shown.starts_with("PreKeyUpload { identity_key: "),
        "{shown}"
    );
    assert!(
        shown.ends_with(
            "signed_prekey: Some(1), last_resort_kem_prekey: Some(1), one_time_prekeys: 100, one_time_kem_prekeys: 100 }"
        ),
        "{shown}"
    );
    let signature = hex::encode(account.signed_prekey().signature());
    assert!(!shown.contains(&signature[..16]));
}

/// A small valid upload (signed prekey, one one-time prekey, one one-time KEM prekey), made
/// once.
fn small_upload() -> &'static [u8] {
    static UPLOAD: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    UPLOAD.get_or_init(|| {
        let (_, account, _) = sample();
        account
            .prekey_upload(true, false, &[OneTimePreKeyId(1)], &[KemPreKeyId(2)])
            .unwrap()
            .to_bytes()
    })
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(256))]

    /// Arbitrary bytes, and a valid upload with up to 8 bytes overwritten somewhere: refused
    /// or decoded without a panic, and whatever decodes re-encodes to exactly its input.
    #[test]
    fn arbitrary_bytes_never_panic(
        noise in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2_000),
        at in proptest::prelude::any::<proptest::sample::Index>(),
        prefix_version in proptest::prelude::any::<bool>(),
    ) {
        let mut input = noise.clone();
        if prefix_version {
            input.insert(0, 1);
        }
        if let Ok(decoded) = PreKeyUpload::from_bytes(&input) {
            proptest::prop_assert_eq!(decoded.to_bytes(), input.clone());
        }
        let _ = SignedPreKey::from_bytes(&input);
        let _ = OneTimePreKey::from_bytes(&input);
        let _ = KemPreKey::from_bytes(&input);

        let mut bytes = small_upload().to_vec();
        let start = at.index(bytes.len());
        for (i, b) in noise.iter().take(8).enumerate() {
            if let Some(slot) = bytes.get_mut(start + i) {
                *slot = *b;
            }
        }
        if let Ok(decoded) = PreKeyUpload::from_bytes(&bytes) {
            proptest::prop_assert_eq!(decoded.to_bytes(), bytes);
        }
    }
}

/// Each public prekey type's `Debug` names the type and its id (a log line must say which
/// key it is about); the bundle's shows the prekeys it carries.
#[test]
fn prekey_debug_output_names_the_type_and_the_id() {
    let (_, account, upload) = sample();
    let signed = account.signed_prekey();
    let one_time = upload.one_time_prekeys()[3];
    let kem = &upload.one_time_kem_prekeys()[7];
    let shown = [
        (format!("{signed:?}"), "SignedPreKey", signed.id().0),
        (format!("{one_time:?}"), "OneTimePreKey", one_time.id().0),
        (format!("{kem:?}"), "KemPreKey", kem.id().0),
    ];
    for (text, name, id) in &shown {
        assert!(text.starts_with(&format!("{name} {{")), "{text}");
        assert!(text.contains(&format!("id: {id}")), "{text}");
    }
    let bundle = PreKeyBundle::assemble(account.identity_key(), signed, Some(one_time), Some(kem))
        .expect("a bundle");
    let text = format!("{bundle:?}");
    assert!(text.starts_with("PreKeyBundle {"), "{text}");
    for (inner, _, _) in &shown {
        assert!(text.contains(inner.as_str()), "{text} lacks {inner}");
    }
}
