//! Message content through the high-level API: body, attachments, send time, padding,
//! and rejection of invalid content with the state unchanged.

mod common;

use common::{Pair, Side, T0, pb};
use ratchetbox::attachment::{self, AttachmentMetadata};
use ratchetbox::{Content, ContentError, DecodeError, DecryptError, ExpiryTimer, Timestamp};

#[test]
fn content_with_attachments_round_trips() {
    let mut pair = Pair::established(1);
    let photo = vec![7u8; 100_000];
    let (mut pointer, sealed) = attachment::seal(
        &mut pair.rng,
        &photo,
        AttachmentMetadata::new("image/jpeg", "cat.jpg").unwrap(),
    )
    .unwrap();
    pointer.set_locator(b"blob://42".to_vec()).unwrap();
    let mut content = Content::new("look at this");
    content.add_attachment(pointer).unwrap();

    let sent_at = T0.saturating_add_secs(5);
    let sent = pair
        .alice
        .record
        .send(&mut pair.rng, &content, sent_at)
        .unwrap();
    assert_eq!(sent.sent_at(), sent_at);
    assert_eq!(sent.expires_at(), None, "disappearing messages are off");

    let received_at = T0.saturating_add_secs(9);
    let received = pair
        .bob
        .record
        .receive(&mut pair.bob.account, sent.wire(), received_at)
        .unwrap();
    assert_eq!(received.content().body(), b"look at this");
    assert_eq!(received.sent_at(), sent_at);
    assert_eq!(received.received_at(), received_at);
    let pointer = &received.content().attachments()[0];
    assert_eq!(pointer.file_name(), "cat.jpg");
    assert_eq!(pointer.locator(), b"blob://42");
    assert_eq!(attachment::open(pointer, &sealed).unwrap(), photo);
}

#[test]
fn message_lengths_are_padded_to_buckets() {
    let mut pair = Pair::established(2);
    let lengths: Vec<usize> = [
        "",
        "ok",
        "a somewhat longer message of about eighty characters, give or take a few..",
    ]
    .iter()
    .map(|text| {
        let sent = pair
            .alice
            .record
            .send(&mut pair.rng, &Content::new(*text), T0)
            .unwrap();
        // The header (counters) is visible anyway; what padding hides is the ciphertext length.
        ratchetbox::Message::from_bytes(sent.wire())
            .unwrap()
            .ciphertext_len()
    })
    .collect();
    assert_eq!(lengths[0], 256 + 16);
    assert_eq!(lengths[0], lengths[1]);
    assert_eq!(lengths[1], lengths[2]);
}

/// Bodies of every length across the first padding buckets (256, 272, 288, 304, 320 bytes
/// of padded content): each crosses a bucket edge at some length, where the content and its
/// marker byte fill a bucket exactly or overflow it by one byte. Each must round-trip, and
/// the padded lengths must step through the buckets in order, 16 bytes at a time.
#[test]
fn every_body_length_across_bucket_edges_round_trips() {
    let mut pair = Pair::established(4);
    let mut padded = Vec::new();
    for n in 200..=320 {
        let body = "x".repeat(n);
        let sent = pair
            .alice
            .record
            .send(&mut pair.rng, &Content::new(body.as_str()), T0)
            .unwrap();
        let len = ratchetbox::Message::from_bytes(sent.wire())
            .unwrap()
            .ciphertext_len()
            - 16;
        if padded.last() != Some(&len) {
            padded.push(len);
        }
        let received = pair
            .bob
            .record
            .receive(&mut pair.bob.account, sent.wire(), T0)
            .unwrap_or_else(|e| panic!("a {n}-byte body: {e}"));
        assert_eq!(received.content().body(), body.as_bytes(), "{n}");
    }
    assert_eq!(padded, [256, 272, 288, 304, 320, 336]);
}

#[test]
fn a_send_time_from_the_future_is_clamped() {
    let mut pair = Pair::established(3);
    let sent = pair
        .alice
        .record
        .send(&mut pair.rng, &Content::new("x"), Timestamp::MAX)
        .unwrap();
    let received = pair
        .bob
        .record
        .receive(&mut pair.bob.account, sent.wire(), T0)
        .unwrap();
    assert_eq!(received.sent_at(), T0);
}

/// Sends crafted content bytes (the whole ratchet plaintext, as a modified client could);
/// Bob must reject them with state unchanged.
fn reject_crafted(pair: &mut Pair, plaintext: &[u8]) -> DecryptError {
    let wire = pair.send_crafted(Side::Alice, plaintext);
    let before = pair.bob.snapshot();
    let error = pair
        .bob
        .record
        .receive(&mut pair.bob.account, &wire, T0)
        .unwrap_err();
    assert_eq!(before, pair.bob.snapshot(), "{error} changed the state");
    // The message's key is still there: the message authenticates again, and is refused
    // again for what it carries (content, for the raw-bytes API).
    assert_eq!(
        pair.bob.reject(&wire),
        match plaintext[0] {
            0x01 => DecryptError::ContentMessage,
            kind => DecryptError::UnknownPlaintextKind { kind },
        }
    );
    error
}

/// A varint as protobuf writes it.
fn varint(mut value: u64, out: &mut Vec<u8>) {
    while value >= 0x80 {
        out.push((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// `valid_content()` with a timer of `seconds` whose version is written as the varint
/// `version`, which may not fit in the field's 32 bits; padded.
fn content_with_raw_timer(seconds: u32, version: u64) -> Vec<u8> {
    let mut timer = vec![0x08]; // field 1, varint
    varint(u64::from(seconds), &mut timer);
    timer.push(0x10); // field 2, varint
    varint(version, &mut timer);
    let mut out = vec![0x01, 0x0a, 0x02, b'h', b'i', 0x1a]; // version, body "hi", field 3
    varint(timer.len() as u64, &mut out);
    out.extend_from_slice(&timer);
    out.extend_from_slice(&[0x20, 0x01]); // sent_at 1
    let target = pb::padme((out.len() as u64 + 1).max(256)) as usize;
    out.push(0x80);
    out.resize(target, 0);
    out
}

#[test]
fn a_version_varint_above_32_bits_is_not_canonical_even_at_the_same_length() {
    let mut pair = Pair::established(7);
    // The hand encoding agrees with the crate's for a version that fits.
    let mut c = valid_content();
    c.timer = Some(pb::DisappearingTimer {
        seconds: 60,
        version: 5,
    });
    assert_eq!(content_with_raw_timer(60, 5), pb::padded_content(&c));

    // 2^32 + 2^31 is five varint bytes, as is 2^31: protobuf reads both as 2^31, and a length
    // comparison cannot tell them apart. Re-encoding can: the content is refused.
    assert_eq!(
        reject_crafted(
            &mut pair,
            &content_with_raw_timer(60, (1 << 32) + (1 << 31))
        ),
        DecryptError::InvalidContent(ContentError::Decode(DecodeError::NonCanonical {
            object: "Content"
        }))
    );
    // The canonical spelling of the same value is accepted.
    let wire = pair.send_crafted(Side::Alice, &content_with_raw_timer(60, 1 << 31));
    let received = pair
        .bob
        .record
        .receive(&mut pair.bob.account, &wire, T0)
        .unwrap();
    assert_eq!(received.timer(), ExpiryTimer::new(60, 1 << 31).unwrap());
}

fn valid_content() -> pb::Content {
    pb::Content {
        body: b"hi".to_vec(),
        attachments: vec![],
        timer: Some(pb::DisappearingTimer {
            seconds: 0,
            version: 0,
        }),
        sent_at: 1,
    }
}

#[test]
fn the_independent_encoding_is_accepted() {
    // The test's own encoder (written from docs/PROTOCOL.md) produces what the crate reads.
    let mut pair = Pair::established(4);
    let plaintext = pb::padded_content(&valid_content());
    let wire = pair.send_crafted(Side::Alice, &plaintext);
    let received = pair
        .bob
        .record
        .receive(&mut pair.bob.account, &wire, T0)
        .unwrap();
    assert_eq!(received.content().body(), b"hi");
    // And the crate's encoder produces exactly those bytes for the same content.
    let sent = pair
        .alice
        .record
        .send(
            &mut pair.rng,
            &Content::new("hi"),
            Timestamp::from_unix_secs(1),
        )
        .unwrap();
    let decrypted = ratchetbox::fuzzing::decrypt_plaintext(
        &mut pair.bob.record,
        &mut pair.bob.account,
        sent.wire(),
        T0,
    )
    .unwrap();
    assert_eq!(decrypted, plaintext);
}

#[test]
fn invalid_content_is_rejected_with_state_unchanged() {
    let mut pair = Pair::established(5);
    let invalid = |e| DecryptError::InvalidContent(e);

    let mut c = valid_content();
    c.timer = Some(pb::DisappearingTimer {
        seconds: 60,
        version: 0,
    });
    assert_eq!(
        reject_crafted(&mut pair, &pb::padded_content(&c)),
        invalid(ContentError::Expiry(
            ratchetbox::ExpiryError::TimerWithoutVersion { seconds: 60 }
        ))
    );

    c.timer = Some(pb::DisappearingTimer {
        seconds: ratchetbox::MAX_TIMER_SECS + 1,
        version: 1,
    });
    assert_eq!(
        reject_crafted(&mut pair, &pb::padded_content(&c)),
        invalid(ContentError::Expiry(
            ratchetbox::ExpiryError::TimerOutOfRange {
                seconds: ratchetbox::MAX_TIMER_SECS + 1,
                max: ratchetbox::MAX_TIMER_SECS
            }
        ))
    );

    // Version 2^32 - 1, whether the timer is on or off.
    for seconds in [60, 0] {
        c.timer = Some(pb::DisappearingTimer {
            seconds,
            version: u32::MAX,
        });
        assert_eq!(
            reject_crafted(&mut pair, &pb::padded_content(&c)),
            invalid(ContentError::Expiry(
                ratchetbox::ExpiryError::VersionOverflow {
                    version: u32::MAX,
                    max: ExpiryTimer::MAX_VERSION
                }
            ))
        );
    }

    // A version varint of 2^32 or more: protobuf keeps the low 32 bits, which re-encode to
    // other bytes, so the canonical-encoding rule rejects the content (section 2), whether
    // they encode shorter or just as long.
    for version in [
        1 << 32,
        (1 << 32) + 1,
        (1 << 32) + 300,
        (1 << 33) - 1,
        u64::MAX,
    ] {
        assert_eq!(
            reject_crafted(&mut pair, &content_with_raw_timer(60, version)),
            invalid(ContentError::Decode(DecodeError::NonCanonical {
                object: "Content"
            })),
            "version {version:#x}"
        );
    }

    c.timer = None;
    assert_eq!(
        reject_crafted(&mut pair, &pb::padded_content(&c)),
        invalid(ContentError::Decode(DecodeError::MissingField {
            object: "Content",
            field: "timer"
        }))
    );

    // Padding: one zero byte too many, and a missing marker.
    let mut padded = pb::padded_content(&valid_content());
    padded.push(0);
    assert_eq!(
        reject_crafted(&mut pair, &padded),
        invalid(ContentError::BadPadding)
    );
    let raw = pb::encode(&valid_content());
    assert_eq!(
        reject_crafted(&mut pair, &raw),
        invalid(ContentError::BadPadding)
    );

    // An unknown field (a newer content format): rejected, per the documented rule.
    let mut with_unknown = pb::encode(&valid_content());
    with_unknown.extend_from_slice(&[0x78, 0x01]); // field 15, varint 1
    with_unknown.push(0x80);
    with_unknown.resize(256, 0);
    assert_eq!(
        reject_crafted(&mut pair, &with_unknown),
        invalid(ContentError::Decode(DecodeError::NonCanonical {
            object: "Content"
        }))
    );

    // A group sender key (field 5) that is not a valid distribution message.
    let mut bad_distribution = pb::encode(&valid_content());
    bad_distribution.extend_from_slice(&[0x2a, 0x01, 0x00]); // field 5, one byte: version 0
    bad_distribution.push(0x80);
    bad_distribution.resize(256, 0);
    assert_eq!(
        reject_crafted(&mut pair, &bad_distribution),
        invalid(ContentError::Decode(DecodeError::UnsupportedVersion {
            object: "group distribution",
            found: 0,
            supported: 1
        }))
    );

    // A content version this build does not read: its version byte is the plaintext's kind
    // byte, and 0x02 is not a kind this build knows.
    let mut v2 = pb::padded_content(&valid_content());
    v2[0] = 2;
    assert_eq!(
        reject_crafted(&mut pair, &v2),
        DecryptError::UnknownPlaintextKind { kind: 2 }
    );

    // A malformed attachment pointer.
    let mut c = valid_content();
    c.attachments = vec![vec![1, 0xff]];
    assert!(matches!(
        reject_crafted(&mut pair, &pb::padded_content(&c)),
        DecryptError::InvalidContent(ContentError::Decode(_))
    ));

    // Too many attachments.
    let mut content = Content::new("many");
    for _ in 0..ratchetbox::MAX_ATTACHMENTS {
        let (p, _) = attachment::seal(
            &mut pair.rng,
            b"x",
            AttachmentMetadata::new("", "").unwrap(),
        )
        .unwrap();
        content.add_attachment(p).unwrap();
    }
    let (p, _) = attachment::seal(
        &mut pair.rng,
        b"x",
        AttachmentMetadata::new("", "").unwrap(),
    )
    .unwrap();
    assert_eq!(
        content.add_attachment(p),
        Err(ContentError::TooManyAttachments { count: 33, max: 32 })
    );
    assert_eq!(content.attachments().len(), 32);

    // After all that, the conversation goes on.
    let sent = pair
        .alice
        .record
        .send(&mut pair.rng, &Content::new("still here"), T0)
        .unwrap();
    let received = pair
        .bob
        .record
        .receive(&mut pair.bob.account, sent.wire(), T0)
        .unwrap();
    assert_eq!(received.content().body(), b"still here");
    assert_eq!(received.timer(), ExpiryTimer::OFF);
    assert_eq!(received.into_content().body(), b"still here");
}

#[test]
fn low_level_and_high_level_apis_coexist() {
    let mut pair = Pair::established(6);
    pair.exchange(Side::Alice, b"raw bytes");
    let sent = pair
        .alice
        .record
        .send(&mut pair.rng, &Content::new("content"), T0)
        .unwrap();
    let received = pair
        .bob
        .record
        .receive(&mut pair.bob.account, sent.wire(), T0)
        .unwrap();
    assert_eq!(received.content().body(), b"content");
}

/// Decrypts `wire` at Bob with `decrypt` (`receive` if `content`), which must fail with
/// `expected` and leave his account and record byte for byte as they were.
fn refused(pair: &mut Pair, wire: &[u8], content: bool, expected: DecryptError) {
    let before = pair.bob.snapshot();
    let error = if content {
        pair.bob
            .record
            .receive(&mut pair.bob.account, wire, T0)
            .map(drop)
            .unwrap_err()
    } else {
        pair.bob.decrypt(wire, T0).unwrap_err()
    };
    assert_eq!(error, expected);
    assert_eq!(before, pair.bob.snapshot(), "{error} changed the state");
}

#[test]
fn mixing_the_raw_and_content_apis_is_a_typed_error_in_both_directions() {
    // From the very first message: an initial message refused this way consumes nothing
    // (Bob's one-time prekey is still there for the right call).
    let mut pair = Pair::new(8);
    let sent = pair
        .alice
        .record
        .send(&mut pair.rng, &Content::new("content first"), T0)
        .unwrap();
    assert!(
        ratchetbox::Message::from_bytes(sent.wire())
            .unwrap()
            .is_initial()
    );
    refused(&mut pair, sent.wire(), false, DecryptError::ContentMessage);
    let received = pair
        .bob
        .record
        .receive(&mut pair.bob.account, sent.wire(), T0)
        .unwrap();
    assert_eq!(received.content().body(), b"content first");

    // Raw bytes to `receive`, and back the other way, mid-conversation.
    let raw = pair.send(Side::Alice, b"raw bytes");
    refused(&mut pair, &raw, true, DecryptError::RawMessage);
    assert_eq!(pair.bob.decrypt(&raw, T0).unwrap(), b"raw bytes");
    let timer = pair
        .alice
        .record
        .set_expiry_timer(&mut pair.rng, 60, T0)
        .unwrap();
    refused(&mut pair, timer.wire(), false, DecryptError::ContentMessage);
    let received = pair
        .bob
        .record
        .receive(&mut pair.bob.account, timer.wire(), T0)
        .unwrap();
    assert_eq!(received.timer(), ExpiryTimer::new(60, 1).unwrap());

    // The messages tell the developer which function to call instead.
    assert!(
        DecryptError::ContentMessage
            .to_string()
            .contains("SessionRecord::receive")
    );
    assert!(
        DecryptError::RawMessage
            .to_string()
            .contains("SessionRecord::decrypt")
    );
}

#[test]
fn every_first_byte_of_the_plaintext_has_one_outcome_on_each_path() {
    let mut pair = Pair::established(9);
    let content = pb::padded_content(&valid_content());
    for first in 0..=u8::MAX {
        // A plaintext whose first byte is `first`, followed by the rest of valid content.
        let mut plaintext = content.clone();
        plaintext[0] = first;
        let wire = pair.send_crafted(Side::Alice, &plaintext);
        match first {
            0x00 => {
                refused(&mut pair, &wire, true, DecryptError::RawMessage);
                assert_eq!(pair.bob.decrypt(&wire, T0).unwrap(), &plaintext[1..]);
            }
            0x01 => {
                refused(&mut pair, &wire, false, DecryptError::ContentMessage);
                let received = pair
                    .bob
                    .record
                    .receive(&mut pair.bob.account, &wire, T0)
                    .unwrap();
                assert_eq!(received.content().body(), b"hi");
            }
            kind => {
                for content in [false, true] {
                    refused(
                        &mut pair,
                        &wire,
                        content,
                        DecryptError::UnknownPlaintextKind { kind },
                    );
                }
            }
        }
    }
    // No byte at all: neither kind.
    let wire = pair.send_crafted(Side::Alice, b"");
    for content in [false, true] {
        refused(&mut pair, &wire, content, DecryptError::EmptyPlaintext);
    }
    // Raw bytes whose first byte is the content kind byte are still raw bytes.
    let wire = pair.send(Side::Alice, &content);
    refused(&mut pair, &wire, true, DecryptError::RawMessage);
    assert_eq!(pair.bob.decrypt(&wire, T0).unwrap(), content);
}

/// A content carries at most 32 attachment pointers: a crafted one with 32 is read, one with
/// 33 is refused with the count, the state untouched.
#[test]
fn a_crafted_content_may_carry_32_attachments_but_not_33() {
    let mut pair = Pair::established(44);
    let (pointer, _) = attachment::seal(
        &mut pair.rng,
        b"x",
        AttachmentMetadata::new("", "").unwrap(),
    )
    .unwrap();
    let pointer = pointer.to_bytes().to_vec();
    let mut content = valid_content();
    content.attachments = vec![pointer.clone(); 32];
    let wire = pair.send_crafted(Side::Alice, &pb::padded_content(&content));
    let received = pair
        .bob
        .record
        .receive(&mut pair.bob.account, &wire, T0)
        .unwrap();
    assert_eq!(received.content().attachments().len(), 32);
    content.attachments.push(pointer);
    assert_eq!(
        reject_crafted(&mut pair, &pb::padded_content(&content)),
        DecryptError::InvalidContent(ContentError::TooManyAttachments { count: 33, max: 32 })
    );
}

/// `Debug` shows a content's shape, never its body.
#[test]
fn content_debug_shows_the_body_length_only() {
    assert_eq!(
        format!("{:?}", Content::new("secret words")),
        "Content { body_len: 12, attachments: [], group_distribution: None }"
    );
}
