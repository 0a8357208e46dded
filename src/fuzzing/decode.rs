//! One decode target per wire and state type. Each decodes arbitrary bytes; whatever
//! decodes must re-encode to bytes of the input's length (decoding is canonical), and those
//! bytes must decode to the same value and re-encode to the same bytes. Nothing may panic.

use alloc::vec::Vec;
use core::fmt::Debug;
use std::sync::OnceLock;

use prost::encoding::{WireType, encode_key, encode_varint};

use super::{T0, snapshot};
use crate::attachment::format::{HEADER_LEN, Header, Layout, PREFIX_LEN};
use crate::attachment::{AttachmentPointer, RandomAccess};
use crate::content::{decode_padded, encode_padded};
use crate::wire::message::Message;
use crate::{
    Account, PQXDH_MESSAGE_VERSION, PreKeyBundle, Session, SessionConfig, SessionRecord,
    SetupError, StorageKey, Trust, VERSION,
};

/// The round-trip property for a type with equality: `decode(data) = v`,
/// `encode(v) = b` with `b = data` (decoding accepts only the canonical encoding),
/// `decode(b) = v`, `encode(v) = b`.
fn round_trip_eq<T: PartialEq + Debug, E>(
    data: &[u8],
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> Option<T> {
    let value = decode(data).ok()?;
    let bytes = encode(&value);
    assert_eq!(bytes, data, "a decoded value re-encodes to other bytes");
    let again = decode(&bytes)
        .ok()
        .expect("the re-encoding of a decoded value must decode");
    assert_eq!(again, value, "decode(encode(v)) != v");
    assert_eq!(encode(&again), bytes, "encoding is not deterministic");
    Some(value)
}

/// The round-trip property for a type without equality, compared by its encoding:
/// `decode(data) = v`, `encode(v) = b`, `decode(b) = v'`, `encode(v') == b`. With
/// `canonical`, also `b = data`.
///
/// State objects are not canonical in that sense: a record persisted before the
/// disappearing-message timer existed has no `timer` field and decodes with the timer off,
/// which is then written out explicitly.
fn round_trip_bytes<T, E>(
    data: &[u8],
    canonical: bool,
    decode: impl Fn(&[u8]) -> Result<T, E>,
    encode: impl Fn(&T) -> Vec<u8>,
) -> Option<T> {
    let value = decode(data).ok()?;
    let bytes = encode(&value);
    if canonical {
        assert_eq!(bytes, data, "a decoded value re-encodes to other bytes");
    }
    let again = decode(&bytes)
        .ok()
        .expect("the re-encoding of a decoded value must decode");
    assert_eq!(
        encode(&again),
        bytes,
        "encode(decode(encode(v))) != encode(v)"
    );
    Some(value)
}

/// The account that starts sessions from the fuzzed bundles: fixed, created once.
fn bundle_initiator() -> &'static Account {
    static INITIATOR: OnceLock<Account> = OnceLock::new();
    INITIATOR.get_or_init(|| Account::new(&mut super::rng(0x0b0d_1e00), super::T0))
}

/// `PreKeyBundle::from_bytes` on arbitrary bytes. Whatever decodes has its signed prekey's
/// and KEM prekey's signatures checked (neither may panic, whatever the key and signature
/// bytes), and a fixed account starts a session from it (`SessionRecord::initiate`), once
/// with classical setups refused (the default) and once allowed:
///
/// - a session is created only from a bundle that is not the account's own, whose signed
///   prekey verifies, and whose KEM prekey verifies or, with classical setups allowed, is
///   absent (so a classical bundle is refused by default);
/// - a bundle with a KEM prekey is always used for PQXDH: the session is post-quantum and its
///   first message is an initial message with a post-quantum setup, from the account; the
///   classical setting makes no difference to such a bundle (same outcome, same bytes);
/// - a refusal is an error that the bundle explains (`LowOrderKey` only once the signatures
///   have passed), and leaves the record empty.
pub fn prekey_bundle(data: &[u8]) {
    let Some(bundle) = round_trip_eq(data, PreKeyBundle::from_bytes, PreKeyBundle::to_bytes) else {
        return;
    };
    let identity = bundle.identity_key();
    let signed_ok = bundle.signed_prekey().verify(&identity);
    let kem_ok = bundle.kem_prekey().map(|kem| kem.verify(&identity));
    let account = bundle_initiator();
    let own = identity == account.identity_key();

    let mut outcomes = Vec::with_capacity(2);
    for allow_classical in [false, true] {
        let acceptable = !own
            && signed_ok
            && match kem_ok {
                Some(verified) => verified,
                None => allow_classical,
            };
        let config = SessionConfig::default().with_classical_setup_allowed(allow_classical);
        let mut record = SessionRecord::with_config(config);
        let empty = record.to_bytes();
        // The same randomness for both settings.
        let mut rng = super::rng(data.len() as u64);
        let outcome = match record.initiate(&mut rng, account, &bundle) {
            Ok(()) => {
                assert!(
                    acceptable,
                    "a session from a bundle that must be refused (own: {own}, signed prekey \
                     verifies: {signed_ok}, KEM prekey verifies: {kem_ok:?}, classical allowed: \
                     {allow_classical})"
                );
                let session = record.session().expect("initiate installs a session");
                assert_eq!(
                    session.is_post_quantum(),
                    kem_ok.is_some(),
                    "PQXDH exactly when the bundle has a KEM prekey"
                );
                let peer = record.peer().expect("initiate records the peer");
                assert_eq!((peer.key(), peer.trust()), (identity, Trust::FirstUse));
                let wire = record
                    .encrypt(&mut rng, b"first")
                    .expect("a new session encrypts");
                let message = Message::from_bytes(&wire).expect("a sent message decodes");
                assert!(message.is_initial());
                assert_eq!(message.is_post_quantum(), kem_ok.is_some());
                assert_eq!(message.sender_identity(), Some(account.identity_key()));
                Ok(wire)
            }
            Err(error) => {
                assert_eq!(
                    record.to_bytes(),
                    empty,
                    "a refused setup ({error:?}) changed the record"
                );
                let explained = match &error {
                    SetupError::OwnBundle => own,
                    SetupError::BadSignature => !signed_ok,
                    SetupError::BadKemSignature => kem_ok == Some(false),
                    SetupError::ClassicalSetupRefused => kem_ok.is_none() && !allow_classical,
                    // Possible with valid signatures: the one-time prekey is not signed.
                    SetupError::LowOrderKey => acceptable,
                    // The record is new: there is no previous identity.
                    SetupError::IdentityChanged(_) => false,
                };
                assert!(
                    explained,
                    "{error:?} for a bundle with own: {own}, signed prekey verifies: \
                     {signed_ok}, KEM prekey verifies: {kem_ok:?}, classical allowed: \
                     {allow_classical}"
                );
                Err(error)
            }
        };
        outcomes.push(outcome);
    }
    if kem_ok.is_some() {
        assert_eq!(
            outcomes[0], outcomes[1],
            "allowing classical setups changed the outcome for a bundle with a KEM prekey"
        );
    }
}

/// `version || key(field, LEN) || varint(len) || body`: a `Message` whose oneof `body` is
/// `field` (1 = ratchet message, 2 = initial message) holding `body`.
fn frame_message(version: u8, field: u32, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 12);
    out.push(version);
    encode_key(field, WireType::LengthDelimited, &mut out);
    encode_varint(body.len() as u64, &mut out);
    out.extend_from_slice(body);
    out
}

fn message(data: &[u8], field: u32) {
    // The input is the body of one kind of message (seeds are bodies of real messages), so
    // that each target concentrates on its type, framed as a classical (1) and as a PQXDH
    // (2) message; the raw form is tried too.
    for bytes in [
        frame_message(VERSION, field, data),
        frame_message(PQXDH_MESSAGE_VERSION, field, data),
        data.to_vec(),
    ] {
        if let Some(m) = round_trip_eq(&bytes, Message::from_bytes, Message::to_bytes) {
            assert_eq!(m.is_initial(), m.sender_identity().is_some());
            assert_eq!(m.version(), bytes[0]);
            assert_eq!(m.is_post_quantum(), bytes[0] == PQXDH_MESSAGE_VERSION);
            assert!(m.ciphertext_len() >= crate::aead::TAG_LEN);
            let _ = m.counter();
            let _ = alloc::format!("{m:?}");
        }
    }
}

/// `Message::from_bytes` on `version || Message { initial: <data> }` (versions 1 and 2)
/// and on the raw input.
pub fn initial_message(data: &[u8]) {
    message(data, 2);
}

/// `Message::from_bytes` on `version || Message { ratchet: <data> }` (versions 1 and 2)
/// and on the raw input.
pub fn ratchet_message(data: &[u8]) {
    message(data, 1);
}

/// Padded message content (`decode_padded`), on the raw input (padding checks) and on the
/// input with valid padding appended (content decoding). Whatever decodes must re-encode
/// and re-pad to the same length and decode to the same content.
pub fn content(data: &[u8]) {
    content_round_trip(data);
    let mut padded = data.to_vec();
    padded.push(0x80);
    if let Some(len) = crate::padding::padded_len(padded.len() as u64, 256)
        && len <= 1 << 20
    {
        padded.resize(len as usize, 0);
        content_round_trip(&padded);
    }
}

fn content_round_trip(data: &[u8]) {
    let Ok(envelope) = decode_padded(data) else {
        return;
    };
    let encoded = encode_padded(&envelope.content, envelope.timer, envelope.sent_at)
        .expect("decoded content must encode");
    assert_eq!(*encoded, *data, "decoded content re-encodes to other bytes");
    let again = decode_padded(&encoded).expect("re-encoded content must decode");
    assert_eq!(again.content.body(), envelope.content.body());
    assert_eq!(again.timer, envelope.timer);
    assert_eq!(again.sent_at, envelope.sent_at);
    assert_eq!(
        again.content.attachments().len(),
        envelope.content.attachments().len()
    );
    for (a, b) in again
        .content
        .attachments()
        .iter()
        .zip(envelope.content.attachments())
    {
        assert_eq!(*a.to_bytes(), *b.to_bytes());
    }
    let encoded_again = encode_padded(&again.content, again.timer, again.sent_at)
        .expect("decoded content must encode");
    assert_eq!(*encoded_again, *encoded);
}

/// `AttachmentPointer::from_bytes`; the decoded pointer also computes its sealed length for
/// every chunk size (checked arithmetic), and its content type and file name pass
/// `AttachmentMetadata::new` (decoding accepts no name a sender could not have given).
pub fn attachment_pointer(data: &[u8]) {
    let Some(pointer) = round_trip_bytes(data, true, AttachmentPointer::from_bytes, |p| {
        p.to_bytes().to_vec()
    }) else {
        return;
    };
    for log2 in crate::attachment::ChunkSize::MIN_LOG2..=crate::attachment::ChunkSize::MAX_LOG2 {
        let chunk = crate::attachment::ChunkSize::from_log2(log2).expect("valid chunk size");
        let sealed = pointer
            .sealed_len(chunk)
            .expect("a decoded pointer's size is within the format's limit");
        assert!(sealed > pointer.plaintext_len());
    }
    // Decoding accepts only metadata that a sender could have built.
    assert!(
        crate::attachment::AttachmentMetadata::new(pointer.content_type(), pointer.file_name())
            .is_ok(),
        "a decoded pointer's metadata is refused on construction"
    );
    let _ = alloc::format!("{pointer:?}");
}

/// The sealed attachment header (`Header::parse` on the first 38 bytes, which must
/// re-encode to exactly those bytes), the layout arithmetic for the chunk size it names and
/// a plaintext length taken from the next 8 bytes, and the key commitment: a prefix that
/// `RandomAccess::new` accepts under the fixture's pointer must be the fixture's prefix.
pub fn attachment_header(data: &[u8]) {
    let fixture = super::attachment::fixture();
    let sealed_len = fixture.sealed.len() as u64;
    if RandomAccess::new(&fixture.pointer, data, sealed_len).is_ok() {
        assert_eq!(
            data.get(..PREFIX_LEN),
            fixture.sealed.get(..PREFIX_LEN),
            "a forged prefix passed the key commitment"
        );
    }
    let Some(header_bytes) = data.get(..HEADER_LEN) else {
        return;
    };
    let header_bytes: &[u8; HEADER_LEN] = header_bytes.try_into().expect("HEADER_LEN bytes");
    let Ok(header) = Header::parse(header_bytes) else {
        return;
    };
    assert_eq!(&header.to_bytes(), header_bytes, "header round trip");
    assert_eq!(Header::parse(&header.to_bytes()).ok(), Some(header));

    let mut len = [0u8; 8];
    for (dst, src) in len.iter_mut().zip(&data[HEADER_LEN..]) {
        *dst = *src;
    }
    let plaintext_len = u64::from_le_bytes(len) >> (len[7] & 63);
    check_layout(plaintext_len, header.chunk_size);
}

/// The layout's arithmetic agrees with itself at the first and last chunks.
fn check_layout(plaintext_len: u64, chunk_size: crate::attachment::ChunkSize) {
    let Ok(layout) = Layout::new(plaintext_len, chunk_size) else {
        assert!(plaintext_len > crate::attachment::MAX_PLAINTEXT_LEN);
        return;
    };
    let chunk = chunk_size.bytes_u64();
    let count = layout.chunk_count();
    assert!(count >= 1);
    assert!(layout.padded_len() >= plaintext_len.max(256));
    assert!((count - 1) * chunk < layout.padded_len() && layout.padded_len() <= count * chunk);
    assert_eq!(
        layout.tree_offset(),
        PREFIX_LEN as u64 + layout.padded_len() + count * crate::aead::TAG_LEN as u64
    );
    // The stored tree: every level, from `count` leaves halving (rounded up) to one node.
    let mut nodes = 0u64;
    let mut level = count;
    loop {
        nodes += level;
        if level == 1 {
            break;
        }
        level = level.div_ceil(2);
    }
    assert_eq!(layout.tree_len(), 32 * nodes);
    assert_eq!(
        layout.sealed_len(),
        layout.tree_offset() + layout.tree_len()
    );
    let last = count - 1;
    assert!(layout.is_last(last));
    assert!(count == 1 || !layout.is_last(0));
    let last_payload = layout.chunk_payload_len(last) as u64;
    assert!(last_payload >= 1 && last_payload <= chunk);
    assert_eq!(
        layout.payload_offset(last) + last_payload,
        layout.padded_len()
    );
    assert_eq!(
        layout.chunk_offset(last) + layout.chunk_sealed_len(last) as u64,
        layout.tree_offset()
    );
    // A range in one chunk fetches that chunk and the hashes that prove it: its leaf and
    // at most one more on level 0, at most two on each level above; all in the tree.
    let levels = u64::from(64 - (count - 1).leading_zeros()) + 1;
    for index in [0, last] {
        let start = layout.payload_offset(index);
        if start >= plaintext_len {
            continue;
        }
        let plan = layout
            .plan(start..start + 1)
            .expect("a range of the plaintext");
        assert_eq!(plan.chunks(), index..index + 1);
        assert_eq!(plan.sealed_offset(), layout.chunk_offset(index));
        assert!(plan.hashes_len() <= 32 * (2 + 2 * levels));
        for range in plan.hash_ranges() {
            assert!(range.start >= layout.tree_offset() && range.end <= layout.sealed_len());
        }
    }
    assert_eq!(layout.chunk_payload_len(count), 0);
    for index in [0, last] {
        assert!(layout.chunk_plaintext_len(index) <= layout.chunk_payload_len(index));
    }
    if plaintext_len > 0 {
        let i = (plaintext_len - 1) / chunk;
        assert_eq!(
            layout.payload_offset(i) + layout.chunk_plaintext_len(i) as u64,
            plaintext_len
        );
        assert_eq!(layout.chunk_plaintext_len(i + 1), 0);
    }
}

/// `Session::from_bytes`.
///
/// A decoded session then continues the fixture's conversation (the seeds are Alice's and
/// Bob's sessions; the input may be a rolled-back or corrupted one): it decrypts every
/// message of the fixture, then encrypts a message that the peer's session (the other side
/// of the fixture) decrypts.
///
/// - A message that decrypts must decrypt to something the fixture encrypted, and not a
///   second time; every failure leaves the session byte for byte unchanged.
/// - A session whose bytes are exactly a seed's (a side's session as the fixture left it)
///   decrypts exactly the raw messages in flight to that side, each once, with exactly the
///   plaintext sent, and its next message decrypts in the peer's session to exactly what it
///   encrypted.
/// - Whatever the decoded session, the peer's session decrypts its message to exactly what
///   it encrypted or refuses it with nothing changed.
pub fn state_session(data: &[u8]) {
    let Some(session) =
        round_trip_bytes(data, false, Session::from_bytes, |s| s.to_bytes().to_vec())
    else {
        return;
    };
    continue_session(session, data);
}

/// The fixture's conversation continued by `session` (decoded from `data`): see
/// [`state_session`].
fn continue_session(mut session: Session, data: &[u8]) {
    let fixture = super::decrypt::fixture();
    // (own account, own record, peer's record, raw messages in flight to this side)
    let sides = [
        (&fixture.alice, &fixture.bob.1, &fixture.pending_to_alice),
        (&fixture.bob, &fixture.alice.1, &fixture.pending_to_bob),
    ];
    // The side whose session this is exactly (a seed), if any.
    let exact = sides.iter().find(|((_, own), _, _)| {
        own.session()
            .is_some_and(|s| s.to_bytes().as_slice() == data)
    });
    let mut decrypted = Vec::new();
    for wire in &fixture.messages {
        let before = session.to_bytes();
        match session.decrypt(wire, T0) {
            Ok(plaintext) => {
                assert!(
                    fixture.plaintexts.contains(&plaintext),
                    "a decoded session decrypted a message to something never sent"
                );
                let after = session.to_bytes();
                assert!(
                    session.decrypt(wire, T0).is_err(),
                    "a decoded session decrypted a message twice"
                );
                assert_eq!(session.to_bytes(), after, "a replay changed the session");
                decrypted.push(plaintext);
            }
            Err(e) => assert_eq!(
                session.to_bytes(),
                before,
                "a rejected message ({e}) changed the session"
            ),
        }
    }
    if let Some((_, _, pending)) = exact {
        let mut got = decrypted.clone();
        got.sort();
        let mut expected = (*pending).clone();
        expected.sort();
        assert_eq!(
            got, expected,
            "a seed's session did not decrypt exactly the messages in flight to it"
        );
    }
    let mut rng = super::rng(13);
    let wire = match session.encrypt(&mut rng, b"continued") {
        Ok(wire) => wire,
        Err(e) => {
            assert!(exact.is_none(), "a seed's session could not encrypt: {e}");
            return;
        }
    };
    // The peer: the other side of the fixture, if this session is one side's (its local
    // identity) and the peer's current session has its id.
    let Some((_, peer, _)) = sides.iter().find(|((own, _), peer, _)| {
        session.local_identity() == own.identity_key() && peer.session_id() == Some(session.id())
    }) else {
        return;
    };
    let mut peer = peer.session().expect("the fixture's session").clone();
    let before = peer.to_bytes();
    match peer.decrypt(&wire, T0) {
        Ok(plaintext) => assert_eq!(
            plaintext, b"continued",
            "the peer decrypted a continued session's message to another plaintext"
        ),
        Err(e) => {
            assert!(
                exact.is_none(),
                "the peer refused ({e}) the next message of a seed's session"
            );
            assert_eq!(
                peer.to_bytes(),
                before,
                "a refused message ({e}) changed the peer's session"
            );
        }
    }
}

/// `SessionRecord::from_bytes`.
///
/// A decoded record then continues the fixture's conversation (the seeds are its records;
/// the input may be a rolled-back or corrupted one): it receives every message of the
/// fixture with each side's account, encrypts, prunes and round-trips again. A message that
/// decrypts must decrypt to something the fixture encrypted and must not decrypt a second
/// time; every failure leaves the account and the record byte for byte unchanged.
pub fn state_record(data: &[u8]) {
    let Some(record) = round_trip_bytes(data, false, SessionRecord::from_bytes, |r| {
        r.to_bytes().to_vec()
    }) else {
        return;
    };
    let fixture = super::decrypt::fixture();
    for (account, _) in [&fixture.alice, &fixture.bob] {
        let mut account = Account::from_bytes(&account.to_bytes()).expect("fixture account");
        let mut record = SessionRecord::from_bytes(&record.to_bytes()).expect("round-tripped");
        for wire in &fixture.messages {
            let before = snapshot(&account, &record);
            match record.decrypt(&mut account, wire, T0) {
                Ok(plaintext) => {
                    assert!(
                        fixture.plaintexts.contains(&plaintext),
                        "a decoded record decrypted a message to something never sent"
                    );
                    // Exactly once: the same message again is refused, nothing changed.
                    let after = snapshot(&account, &record);
                    assert!(
                        record.decrypt(&mut account, wire, T0).is_err(),
                        "a decoded record decrypted a message twice"
                    );
                    assert_eq!(snapshot(&account, &record), after, "a replay changed state");
                }
                Err(e) => assert_eq!(
                    snapshot(&account, &record),
                    before,
                    "a rejected message ({e}) changed state"
                ),
            }
        }
        let before = snapshot(&account, &record);
        let mut rng = super::rng(7);
        match record.encrypt(&mut rng, b"continued") {
            Ok(wire) => {
                assert!(
                    Message::from_bytes(&wire).is_ok(),
                    "sent an invalid message"
                );
            }
            Err(e) => assert_eq!(
                snapshot(&account, &record),
                before,
                "a failed encryption ({e}) changed state"
            ),
        }
        record.prune(T0.saturating_add_secs(48 * 3600));
        round_trip_bytes(&record.to_bytes(), false, SessionRecord::from_bytes, |r| {
            r.to_bytes().to_vec()
        })
        .expect("a continued record decodes");
    }
}

/// `Account::from_bytes` (identity, signed and one-time prekeys: the prekey store). A
/// restored account must also be able to publish a bundle whose signature verifies.
pub fn state_account(data: &[u8]) {
    if let Some(account) =
        round_trip_bytes(data, false, Account::from_bytes, |a| a.to_bytes().to_vec())
    {
        let bundle = account
            .prekey_bundle(None, None)
            .expect("a bundle without one-time prekeys");
        let _ = bundle.signed_prekey().verify(&bundle.identity_key());
        continue_account(account);
    }
}

/// A decoded account (the seeds are the `session_decrypt` fixture's; the input may be a
/// rolled-back or corrupted one) receives every message of the fixture in a fresh record: a
/// message that decrypts must decrypt to something the fixture encrypted and must then be
/// refused by another fresh record (the account remembers the setup); every failure leaves
/// the account unchanged. Then it rotates and publishes prekeys and must round-trip again.
fn continue_account(mut account: Account) {
    let fixture = super::decrypt::fixture();
    for wire in &fixture.messages {
        let before = account.to_bytes().to_vec();
        let mut record = SessionRecord::new();
        match record.decrypt(&mut account, wire, T0) {
            Ok(plaintext) => {
                assert!(
                    fixture.plaintexts.contains(&plaintext),
                    "a decoded account decrypted a message to something never sent"
                );
                let after = account.to_bytes().to_vec();
                assert!(
                    SessionRecord::new()
                        .decrypt(&mut account, wire, T0)
                        .is_err(),
                    "a decoded account accepted a setup twice"
                );
                assert_eq!(
                    account.to_bytes().to_vec(),
                    after,
                    "a replay changed the account"
                );
            }
            Err(e) => assert_eq!(
                account.to_bytes().to_vec(),
                before,
                "a rejected message ({e}) changed the account"
            ),
        }
    }
    let mut rng = super::rng(11);
    let _ = account.rotate_signed_prekey(&mut rng, T0);
    let _ = account.generate_one_time_prekeys(&mut rng, 2, T0);
    round_trip_bytes(&account.to_bytes(), false, Account::from_bytes, |a| {
        a.to_bytes().to_vec()
    })
    .expect("a continued account decodes");
}

/// The fuzz targets' storage key.
pub(crate) fn storage_key() -> StorageKey {
    StorageKey::from_bytes([0x5e; 32])
}

/// `unseal` of all three state types under a fixed storage key. Whatever unseals must
/// re-seal and unseal to the same state, and must not unseal any more once any single byte
/// is changed (the input chooses which).
pub fn sealed_state(data: &[u8]) {
    let key = storage_key();
    sealed_one(
        data,
        &key,
        Account::unseal,
        |a, k, r| a.seal(k, r),
        |a| a.to_bytes().to_vec(),
    );
    sealed_one(
        data,
        &key,
        Session::unseal,
        |s, k, r| s.seal(k, r),
        |s| s.to_bytes().to_vec(),
    );
    sealed_one(
        data,
        &key,
        SessionRecord::unseal,
        |s, k, r| s.seal(k, r),
        |s| s.to_bytes().to_vec(),
    );
}

fn sealed_one<T, E: Debug>(
    data: &[u8],
    key: &StorageKey,
    unseal: impl Fn(&[u8], &StorageKey) -> Result<T, E>,
    seal: impl Fn(&T, &StorageKey, &mut rand_chacha::ChaCha20Rng) -> Vec<u8>,
    plain: impl Fn(&T) -> Vec<u8>,
) {
    let Ok(value) = unseal(data, key) else {
        return;
    };
    let mut rng = super::rng(data.len() as u64);
    let resealed = seal(&value, key, &mut rng);
    let again = unseal(&resealed, key).expect("a re-sealed state must unseal");
    assert_eq!(plain(&again), plain(&value));
    let other_key = StorageKey::from_bytes([0xa1; 32]);
    assert!(
        unseal(data, &other_key).is_err(),
        "unsealed under a wrong key"
    );
    // Any one changed byte must be caught (the position and the change come from the input).
    let position = data.iter().fold(0usize, |acc, &b| {
        acc.wrapping_mul(31).wrapping_add(usize::from(b))
    }) % data.len();
    let mut tampered = data.to_vec();
    tampered[position] ^= 1 << (data.len() % 8);
    assert!(
        unseal(&tampered, key).is_err(),
        "a sealed state with byte {position} changed still unsealed"
    );
}
