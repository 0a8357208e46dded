//! Seed inputs for every target: valid objects made by the crate, deterministically.
//! `tests/fuzz_corpus.rs` writes them to `fuzz/corpus/<target>/seed-*` (run it with
//! `cargo test --test fuzz_corpus -- --ignored`).

use alloc::string::{String, ToString};
use alloc::vec::Vec;

use prost::Message as _;
use rand_core::Rng;

use super::{T0, rng};
use crate::attachment::{AttachmentMetadata, PREFIX_LEN};
use crate::content::encode_padded;
use crate::wire::generated as pb;
use crate::wire::message::Message;
use crate::{Content, ExpiryTimer, OneTimePreKeyId};

/// `(target, seed name, bytes)` for every seed.
pub fn seeds() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, name.to_string(), bytes));
    };
    let conversation = super::decrypt::fixture();
    let (alice, alice_record) = &conversation.alice;
    let (bob, bob_record) = &conversation.bob;
    let key = super::decode::storage_key();
    let mut rng = rng(0x5eed);

    // Bundles: PQXDH with both one-time prekeys, PQXDH with the last-resort KEM prekey
    // only, and classical.
    let kem_id = bob
        .one_time_kem_prekeys()
        .last()
        .expect("a KEM prekey")
        .id();
    let with_otk = bob
        .prekey_bundle(Some(OneTimePreKeyId(2)), Some(kem_id))
        .expect("bundle");
    add("prekey_bundle", "one-time", with_otk.to_bytes());
    add(
        "prekey_bundle",
        "classical",
        bob.classical_prekey_bundle(Some(OneTimePreKeyId(3)))
            .expect("bundle")
            .to_bytes(),
    );
    add(
        "prekey_bundle",
        "signed-only",
        alice.prekey_bundle(None, None).expect("bundle").to_bytes(),
    );

    // Messages: the bodies of initial and ratchet messages, and whole messages.
    for (i, wire) in conversation.messages.iter().enumerate() {
        let message = Message::from_bytes(wire).expect("a message of the fixture");
        let (target, body) = match message.to_proto().body.expect("body") {
            pb::message::Body::Initial(m) => ("initial_message", m.encode_to_vec()),
            pb::message::Body::Ratchet(m) => ("ratchet_message", m.encode_to_vec()),
        };
        add(target, &alloc::format!("body-{i}"), body);
        add(
            "session_decrypt",
            &alloc::format!("message-{i}"),
            wire.clone(),
        );
    }

    // Content: short, with a timer and an attachment, and long enough for PADME buckets.
    let attachment = super::attachment::fixture();
    let timer = ExpiryTimer::new(3600, 2).expect("timer");
    let mut with_attachment = Content::new("see attached");
    let pointer =
        crate::AttachmentPointer::from_bytes(&attachment.pointer.to_bytes()).expect("pointer");
    with_attachment.add_attachment(pointer).expect("attachment");
    let contents = [
        ("short", Content::new("hello"), ExpiryTimer::OFF),
        ("attachment", with_attachment, timer),
        ("long", Content::new(alloc::vec![b'x'; 300]), timer),
    ];
    for (name, content, timer) in contents {
        let padded = encode_padded(&content, timer, T0).expect("content");
        add("content", name, padded.to_vec());
    }

    // Attachments: the pointer, the prefix (with a length), the sealed file, round trips.
    let mut pointer =
        crate::AttachmentPointer::from_bytes(&attachment.pointer.to_bytes()).expect("pointer");
    add(
        "attachment_pointer",
        "no-locator",
        pointer.to_bytes().to_vec(),
    );
    pointer.set_locator(b"blob/7f3a".to_vec()).expect("locator");
    add("attachment_pointer", "locator", pointer.to_bytes().to_vec());
    let mut prefix = attachment.sealed[..PREFIX_LEN].to_vec();
    prefix.extend_from_slice(&3000u64.to_le_bytes());
    add("attachment_header", "fixture", prefix);
    let _ = AttachmentMetadata::default();
    let mut sealed = alloc::vec![0u8];
    sealed.extend_from_slice(&attachment.sealed);
    add("attachment", "open-fixture", sealed);
    for (i, len) in [40usize, 200, 600].into_iter().enumerate() {
        let mut bytes = alloc::vec![1u8; len + 1];
        rng.fill_bytes(&mut bytes[1..]);
        add("attachment", &alloc::format!("round-trip-{i}"), bytes);
    }

    // Persisted state, plain and sealed.
    let session = bob_record.session().expect("a session").clone();
    add("state_session", "bob", session.to_bytes().to_vec());
    add(
        "state_session",
        "alice",
        alice_record
            .session()
            .expect("a session")
            .to_bytes()
            .to_vec(),
    );
    add("state_record", "alice", alice_record.to_bytes().to_vec());
    add("state_record", "bob", bob_record.to_bytes().to_vec());
    add(
        "state_record",
        "empty",
        crate::SessionRecord::new().to_bytes().to_vec(),
    );
    add("state_account", "alice", alice.to_bytes().to_vec());
    add("state_account", "bob", bob.to_bytes().to_vec());
    add("sealed_state", "account", bob.seal(&key, &mut rng));
    add("sealed_state", "session", session.seal(&key, &mut rng));
    add("sealed_state", "record", alice_record.seal(&key, &mut rng));

    // Conversations: random op sequences (every byte string is a valid scenario).
    for (i, len) in [64usize, 160, 320, 640, 1200].into_iter().enumerate() {
        let mut bytes = alloc::vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        add("conversation", &alloc::format!("random-{i}"), bytes);
    }
    // The high-level layer: random scenarios, and one that connects everyone first (ops
    // 0-3 are `Connect`; see `device.rs`), then sends and delivers.
    for (i, len) in [96usize, 256, 512].into_iter().enumerate() {
        let mut bytes = alloc::vec![0u8; len];
        rng.fill_bytes(&mut bytes);
        add("device", &alloc::format!("random-{i}"), bytes);
    }
    for (name, bytes) in super::backup::seeds() {
        add("backup", name, bytes);
    }
    out.extend(super::group::seeds());
    out
}
