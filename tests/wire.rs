//! Decoding of wire objects: every field is validated at the boundary, and anything that
//! decodes re-encodes to an object that decodes to the same value.

mod common;

use common::{Pair, Side, pb};
use proptest::prelude::*;
use ratchetbox::{DecodeError, Message, PreKeyBundle};

#[test]
fn bundle_fields_are_validated() {
    let pair = Pair::new(1);
    let good = pair.bundle(Some(1)).to_bytes();
    let edit = |f: &dyn Fn(&mut pb::PreKeyBundle)| {
        let mut b: pb::PreKeyBundle = pb::decode(&good);
        f(&mut b);
        PreKeyBundle::from_bytes(&pb::encode(&b))
    };
    const B: &str = "PreKeyBundle";
    assert_eq!(
        edit(&|b| b.identity_key.truncate(31)).err(),
        Some(DecodeError::InvalidLength {
            object: B,
            field: "identity_key",
            expected: 32,
            found: 31
        })
    );
    // The neutral point (small order) and a non-canonical encoding are not identity keys.
    let mut neutral = vec![0u8; 32];
    neutral[0] = 1;
    assert_eq!(
        edit(&|b| b.identity_key = neutral.clone()).err(),
        Some(DecodeError::InvalidIdentityKey {
            object: B,
            field: "identity_key"
        })
    );
    let mut non_canonical = vec![0xffu8; 32];
    non_canonical[0] = 0xed;
    non_canonical[31] = 0x7f;
    assert_eq!(
        edit(&|b| b.identity_key = non_canonical.clone()).err(),
        Some(DecodeError::InvalidIdentityKey {
            object: B,
            field: "identity_key"
        })
    );
    assert_eq!(
        edit(&|b| b.signed_prekey = None).err(),
        Some(DecodeError::MissingField {
            object: B,
            field: "signed_prekey"
        })
    );
    assert_eq!(
        edit(&|b| b.signed_prekey.as_mut().unwrap().signature.push(0)).err(),
        Some(DecodeError::InvalidLength {
            object: "SignedPreKey",
            field: "signature",
            expected: 64,
            found: 65
        })
    );
    assert_eq!(
        edit(&|b| b.one_time_prekey.as_mut().unwrap().public_key.clear()).err(),
        Some(DecodeError::InvalidLength {
            object: "OneTimePreKey",
            field: "public_key",
            expected: 32,
            found: 0
        })
    );
    // Without a one-time prekey is fine.
    let without = edit(&|b| b.one_time_prekey = None).expect("valid");
    assert!(without.one_time_prekey().is_none());
    // Unknown version, empty input, unknown field.
    let mut v2 = good.clone();
    v2[0] = 2;
    assert_eq!(
        PreKeyBundle::from_bytes(&v2).err(),
        Some(DecodeError::UnsupportedVersion {
            object: B,
            found: 2,
            supported: 1
        })
    );
    assert_eq!(
        PreKeyBundle::from_bytes(&[]).err(),
        Some(DecodeError::Empty { object: B })
    );
    let mut extra = good.clone();
    extra.extend_from_slice(&[0x28, 0x05]); // unknown field 5, varint 5
    assert_eq!(
        PreKeyBundle::from_bytes(&extra).err(),
        Some(DecodeError::NonCanonical { object: B })
    );
}

#[test]
fn messages_round_trip_and_expose_public_facts() {
    let mut pair = Pair::new(2);
    let initial = pair.send(Side::Alice, b"one");
    let message = Message::from_bytes(&initial).expect("decodes");
    assert!(message.is_initial());
    assert_eq!(
        message.sender_identity(),
        Some(pair.alice.account.identity_key())
    );
    assert_eq!(message.counter(), 0);
    // The kind byte (raw bytes), the three bytes of plaintext, the tag.
    assert_eq!(message.ciphertext_len(), 1 + 3 + 16);
    assert_eq!(message.to_bytes(), initial);
    let debug = format!("{message:?}");
    assert!(debug.contains("ciphertext_len: 20 }"), "{debug}");
    // The KEM part shows its prekey id and the ciphertext's length, not its 1,568 bytes.
    assert!(
        debug.contains("kem: Some(KemSetup { prekey_id: 1, ciphertext_len: 1568 })"),
        "{debug}"
    );

    pair.receive(Side::Bob, &initial).unwrap();
    let reply = pair.send(Side::Bob, b"two");
    let message = Message::from_bytes(&reply).expect("decodes");
    assert!(!message.is_initial());
    assert_eq!(message.sender_identity(), None);
    assert_eq!(message.to_bytes(), reply);
    // Bob's third message on his chain.
    pair.send(Side::Bob, b"three");
    let third = pair.send(Side::Bob, b"four");
    assert_eq!(Message::from_bytes(&third).expect("decodes").counter(), 2);
}

#[test]
fn initial_message_missing_its_ratchet_message_is_rejected() {
    let mut pair = Pair::new(3);
    let wire = pair.send(Side::Alice, b"x");
    let bad = pb::edit_message(&wire, |m| m.initial_mut().unwrap().message = None);
    assert_eq!(
        Message::from_bytes(&bad).err(),
        Some(DecodeError::MissingField {
            object: "InitialMessage",
            field: "message"
        })
    );
    let empty = pb::encode(&pb::Message { body: None });
    assert_eq!(
        Message::from_bytes(&empty).err(),
        Some(DecodeError::MissingField {
            object: "Message",
            field: "body"
        })
    );
}

proptest! {
    #[test]
    fn whatever_decodes_round_trips(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut with_version = vec![1u8];
        with_version.extend_from_slice(&bytes);
        for input in [&bytes, &with_version] {
            if let Ok(m) = Message::from_bytes(input) {
                let again = Message::from_bytes(&m.to_bytes());
                prop_assert_eq!(again.as_ref(), Ok(&m));
            }
            if let Ok(b) = PreKeyBundle::from_bytes(input) {
                let again = PreKeyBundle::from_bytes(&b.to_bytes());
                prop_assert_eq!(again.as_ref(), Ok(&b));
            }
        }
    }

    #[test]
    fn mutated_valid_messages_never_panic_and_round_trip(seed in any::<u64>(), flips in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4)) {
        let mut pair = Pair::new(seed);
        let mut wire = pair.send(Side::Alice, b"mutate me");
        for (at, value) in flips {
            let i = at % wire.len();
            wire[i] = value;
        }
        if let Ok(m) = Message::from_bytes(&wire) {
            let again = Message::from_bytes(&m.to_bytes());
            prop_assert_eq!(again.as_ref(), Ok(&m));
        }
    }
}
