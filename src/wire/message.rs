//! Messages between peers: the Double Ratchet message and the initial message that also
//! carries the X3DH setup.
//!
//! Wire object: `version || protobuf Message`, where `Message` is a oneof of `RatchetMessage`
//! and `InitialMessage`, and `version` says how the session was set up: `0x01` classical
//! X3DH, `0x02` PQXDH. The version byte is authenticated (it is the first byte of the header
//! that AES-GCM authenticates), and an initial message's version must agree with whether it
//! carries the KEM part of the setup. Outgoing messages are assembled in a single buffer with prost's
//! encoding primitives, and the plaintext is encrypted straight into the place where its
//! ciphertext belongs (one allocation per message); a test checks the bytes equal prost's
//! own encoding of the same values.
//!
//! Incoming messages are decoded without copying: a canonical, valid message (what every
//! ratchetbox peer sends) is read field by field with prost's varint primitives, and its
//! ciphertext is borrowed from the input. Anything else falls back to the prost-generated
//! decoder, which stays the reference: it decides every error and every unusual-but-accepted
//! encoding, so the result is always exactly the reference decoder's (property-tested below).

use alloc::borrow::Cow;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use prost::encoding::{
    WireType, decode_varint, encode_key, encode_varint, encoded_len_varint, key_len,
};

use alloc::boxed::Box;

use super::bundle::{KemPreKeyId, OneTimePreKeyId, SignedPreKeyId};
use super::generated as pb;
use crate::aead::{NONCE_LEN, TAG_LEN};
use crate::error::DecodeError;
use crate::kem::{KEM_CIPHERTEXT_LEN, KemCiphertext};
use crate::keys::{IdentityKey, KEY_LEN, X25519PublicKey};

use super::PQXDH_MESSAGE_VERSION;

/// The header of a ratchet message: the values the Double Ratchet needs before decrypting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RatchetHeader {
    /// The message's version byte: [`VERSION`](super::VERSION) in a classical session,
    /// [`PQXDH_MESSAGE_VERSION`] in a post-quantum one.
    pub(crate) version: u8,
    pub(crate) ratchet_key: X25519PublicKey,
    pub(crate) counter: u32,
    pub(crate) previous_counter: u32,
    pub(crate) nonce: [u8; NONCE_LEN],
}

impl RatchetHeader {
    /// Length of [`RatchetHeader::authenticated_bytes`].
    pub(crate) const AUTHENTICATED_LEN: usize = 1 + KEY_LEN + 4 + 4 + NONCE_LEN;

    /// The fixed-layout encoding of the header that AES-GCM authenticates:
    /// `version || ratchet_key || counter (u32 BE) || previous_counter (u32 BE) || nonce`.
    pub(crate) fn authenticated_bytes(&self) -> [u8; Self::AUTHENTICATED_LEN] {
        let mut out = [0u8; Self::AUTHENTICATED_LEN];
        out[0] = self.version;
        out[1..33].copy_from_slice(self.ratchet_key.as_bytes());
        out[33..37].copy_from_slice(&self.counter.to_be_bytes());
        out[37..41].copy_from_slice(&self.previous_counter.to_be_bytes());
        out[41..].copy_from_slice(&self.nonce);
        out
    }
}

/// A decoded ratchet message: header and `ciphertext || tag` (at least 16 bytes), borrowed
/// from the received bytes when possible.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RatchetMessage<'a> {
    pub(crate) header: RatchetHeader,
    pub(crate) ciphertext: Cow<'a, [u8]>,
}

impl RatchetMessage<'_> {
    fn into_owned(self) -> RatchetMessage<'static> {
        RatchetMessage {
            header: self.header,
            ciphertext: Cow::Owned(self.ciphertext.into_owned()),
        }
    }
}

/// The X3DH values an initiator repeats in every message until it hears back.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct InitialSetup {
    pub(crate) identity_key: IdentityKey,
    pub(crate) base_key: X25519PublicKey,
    pub(crate) signed_prekey_id: SignedPreKeyId,
    pub(crate) one_time_prekey_id: Option<OneTimePreKeyId>,
    /// Present iff the setup is post-quantum (PQXDH).
    pub(crate) kem: Option<KemSetup>,
}

/// The post-quantum part of a setup: which KEM prekey, and the ML-KEM ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct KemSetup {
    pub(crate) prekey_id: KemPreKeyId,
    pub(crate) ciphertext: KemCiphertext,
}

impl fmt::Debug for KemSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemSetup")
            .field("prekey_id", &self.prekey_id.0)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

#[derive(Clone, PartialEq, Eq)]
#[allow(
    clippy::large_enum_variant,
    reason = "a decoded message lives briefly on the stack; boxing would add an allocation"
)]
pub(crate) enum Body<'a> {
    Ratchet(RatchetMessage<'a>),
    Initial(InitialSetup, RatchetMessage<'a>),
}

impl<'a> Body<'a> {
    /// Decodes and validates `version || protobuf Message`, borrowing the ciphertext from
    /// `bytes` when the encoding is canonical. Same result as [`Message::decode_reference`].
    pub(crate) fn parse(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        match parse_canonical(bytes) {
            Some(body) => Ok(body),
            None => Message::decode_reference(bytes).map(|m| m.0),
        }
    }

    pub(crate) fn ratchet(&self) -> &RatchetMessage<'a> {
        match self {
            Body::Ratchet(r) | Body::Initial(_, r) => r,
        }
    }

    fn into_owned(self) -> Body<'static> {
        match self {
            Body::Ratchet(r) => Body::Ratchet(r.into_owned()),
            Body::Initial(setup, r) => Body::Initial(setup, r.into_owned()),
        }
    }
}

/// A message between two peers, decoded and validated: either a Double Ratchet message or an
/// initial message that also carries the X3DH setup.
///
/// Apps usually pass message bytes straight to
/// [`SessionRecord::decrypt`](crate::SessionRecord::decrypt); this type is for inspecting a
/// message first (for example, to see which identity an initial message claims).
#[derive(Clone, PartialEq, Eq)]
pub struct Message(pub(crate) Body<'static>);

impl Message {
    const OBJECT: &'static str = "Message";

    /// Decodes `version || protobuf Message`, validating every field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Body::parse(bytes).map(|body| Self(body.into_owned()))
    }

    /// The reference decoder: prost's generated code, then the canonical-length rule and the
    /// field checks. [`Body::parse`] returns exactly what this returns.
    pub(crate) fn decode_reference(bytes: &[u8]) -> Result<Self, DecodeError> {
        let (version, p): (u8, pb::Message) =
            super::decode_versioned(bytes, Self::OBJECT, PQXDH_MESSAGE_VERSION)?;
        match p.body {
            Some(pb::message::Body::Ratchet(r)) => {
                Ok(Self(Body::Ratchet(ratchet_from_proto(r, version)?)))
            }
            Some(pb::message::Body::Initial(i)) => {
                const OBJECT: &str = "InitialMessage";
                let kem = i
                    .kem
                    .as_ref()
                    .map(|k| {
                        let ciphertext: [u8; KEM_CIPHERTEXT_LEN] =
                            super::fixed(&k.ciphertext, "KemSetup", "ciphertext")?;
                        Ok::<_, DecodeError>(KemSetup {
                            prekey_id: KemPreKeyId(k.prekey_id),
                            ciphertext: Box::new(ciphertext),
                        })
                    })
                    .transpose()?;
                check_setup_version(version, kem.is_some())?;
                let setup = InitialSetup {
                    identity_key: super::identity_key(&i.identity_key, OBJECT, "identity_key")?,
                    base_key: super::x25519_key(&i.base_key, OBJECT, "base_key")?,
                    signed_prekey_id: SignedPreKeyId(i.signed_prekey_id),
                    one_time_prekey_id: i.one_time_prekey_id.map(OneTimePreKeyId),
                    kem,
                };
                let inner = super::required(i.message, OBJECT, "message")?;
                Ok(Self(Body::Initial(
                    setup,
                    ratchet_from_proto(inner, version)?,
                )))
            }
            None => Err(DecodeError::MissingField {
                object: Self::OBJECT,
                field: "body",
            }),
        }
    }

    /// Encodes the message: `version || protobuf Message`.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::encode_versioned(self.version(), &self.to_proto())
    }

    pub(crate) fn to_proto(&self) -> pb::Message {
        let body = match &self.0 {
            Body::Ratchet(r) => pb::message::Body::Ratchet(ratchet_to_proto(r)),
            Body::Initial(setup, r) => pb::message::Body::Initial(pb::InitialMessage {
                identity_key: setup.identity_key.to_bytes().to_vec(),
                base_key: setup.base_key.to_bytes().to_vec(),
                signed_prekey_id: setup.signed_prekey_id.0,
                one_time_prekey_id: setup.one_time_prekey_id.map(|id| id.0),
                kem: setup.kem.as_ref().map(|k| pb::KemSetup {
                    prekey_id: k.prekey_id.0,
                    ciphertext: k.ciphertext.to_vec(),
                }),
                message: Some(ratchet_to_proto(r)),
            }),
        };
        pb::Message { body: Some(body) }
    }

    /// Whether this is an initial message (it carries the sender's X3DH setup).
    pub fn is_initial(&self) -> bool {
        matches!(self.0, Body::Initial(..))
    }

    /// The message's version byte, which says how its session was set up:
    /// [`VERSION`](crate::VERSION) (1) for classical X3DH,
    /// [`PQXDH_MESSAGE_VERSION`](crate::PQXDH_MESSAGE_VERSION) (2) for PQXDH. It is
    /// authenticated when the message decrypts.
    pub fn version(&self) -> u8 {
        self.ratchet().header.version
    }

    /// Whether the message belongs to a session set up with PQXDH (its version byte is
    /// [`PQXDH_MESSAGE_VERSION`](crate::PQXDH_MESSAGE_VERSION)). An initial message of such
    /// a session always carries the KEM part of the setup.
    pub fn is_post_quantum(&self) -> bool {
        self.version() == PQXDH_MESSAGE_VERSION
    }

    /// For an initial message, the identity key the sender claims (it is authenticated only
    /// once the message decrypts).
    pub fn sender_identity(&self) -> Option<IdentityKey> {
        match &self.0 {
            Body::Initial(setup, _) => Some(setup.identity_key),
            Body::Ratchet(_) => None,
        }
    }

    /// The message number within its sending chain.
    pub fn counter(&self) -> u32 {
        self.ratchet().header.counter
    }

    /// The length of the ciphertext including the 16-byte tag.
    pub fn ciphertext_len(&self) -> usize {
        self.ratchet().ciphertext.len()
    }

    pub(crate) fn ratchet(&self) -> &RatchetMessage<'static> {
        self.0.ratchet()
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let r = self.ratchet();
        let mut s = f.debug_struct("Message");
        if let Body::Initial(setup, _) = &self.0 {
            s.field("setup", setup);
        }
        s.field("header", &r.header)
            .field("ciphertext_len", &r.ciphertext.len())
            .finish()
    }
}

/// An initial message's version must say what its setup is: [`PQXDH_MESSAGE_VERSION`] with
/// the KEM part, [`VERSION`](super::VERSION) without.
fn check_setup_version(version: u8, has_kem: bool) -> Result<(), DecodeError> {
    match (version == PQXDH_MESSAGE_VERSION, has_kem) {
        (true, false) => Err(DecodeError::InvalidValue {
            object: "InitialMessage",
            field: "kem",
            reason: "a version 2 (PQXDH) initial message must carry the KEM part of the setup",
        }),
        (false, true) => Err(DecodeError::InvalidValue {
            object: "InitialMessage",
            field: "kem",
            reason: "a version 1 (classical X3DH) initial message must not carry a KEM part",
        }),
        _ => Ok(()),
    }
}

fn ratchet_from_proto(
    p: pb::RatchetMessage,
    version: u8,
) -> Result<RatchetMessage<'static>, DecodeError> {
    const OBJECT: &str = "RatchetMessage";
    if p.ciphertext.len() < TAG_LEN {
        return Err(DecodeError::InvalidValue {
            object: OBJECT,
            field: "ciphertext",
            reason: "shorter than the 16-byte authentication tag",
        });
    }
    Ok(RatchetMessage {
        header: RatchetHeader {
            version,
            ratchet_key: super::x25519_key(&p.ratchet_key, OBJECT, "ratchet_key")?,
            counter: p.counter,
            previous_counter: p.previous_counter,
            nonce: super::fixed(&p.nonce, OBJECT, "nonce")?,
        },
        ciphertext: Cow::Owned(p.ciphertext),
    })
}

fn ratchet_to_proto(r: &RatchetMessage<'_>) -> pb::RatchetMessage {
    pb::RatchetMessage {
        ratchet_key: r.header.ratchet_key.to_bytes().to_vec(),
        counter: r.header.counter,
        previous_counter: r.header.previous_counter,
        nonce: r.header.nonce.to_vec(),
        ciphertext: r.ciphertext.to_vec(),
    }
}

/// The key byte of field `tag` (below 16) with `wire_type`.
const fn key_byte(tag: u8, wire_type: WireType) -> u8 {
    (tag << 3) | wire_type as u8
}

/// Reads a canonical protobuf encoding: fields in ascending order, each at most once, no
/// default values, minimal varints, no unknown fields. Each method returns `None` when the
/// input is not exactly that (the caller then falls back to the reference decoder).
struct Canonical<'a>(&'a [u8]);

impl<'a> Canonical<'a> {
    /// Consumes the key of (`tag`, `wire_type`) if it is next.
    fn key(&mut self, tag: u8, wire_type: WireType) -> bool {
        match self.0.split_first() {
            Some((&key, rest)) if key == key_byte(tag, wire_type) => {
                self.0 = rest;
                true
            }
            _ => false,
        }
    }

    fn varint(&mut self) -> Option<u64> {
        let before = self.0.len();
        let value = decode_varint(&mut self.0).ok()?;
        (before - self.0.len() == encoded_len_varint(value)).then_some(value)
    }

    /// A proto3 `uint32` field: absent means 0, present must be non-zero and fit 32 bits.
    fn uint32(&mut self, tag: u8) -> Option<u32> {
        if !self.key(tag, WireType::Varint) {
            return Some(0);
        }
        u32::try_from(self.varint()?).ok().filter(|&v| v != 0)
    }

    /// An `optional uint32` field: written whenever it is set, even to 0.
    fn optional_uint32(&mut self, tag: u8) -> Option<Option<u32>> {
        if !self.key(tag, WireType::Varint) {
            return Some(None);
        }
        u32::try_from(self.varint()?).ok().map(Some)
    }

    /// A nested message that may be absent: `Some(None)` when absent, `None` when invalid.
    fn optional_delimited(&mut self, tag: u8) -> Option<Option<&'a [u8]>> {
        if self.0.first() != Some(&key_byte(tag, WireType::LengthDelimited)) {
            return Some(None);
        }
        self.delimited(tag).map(Some)
    }

    /// A length-delimited field (bytes or a nested message) that must be present.
    fn delimited(&mut self, tag: u8) -> Option<&'a [u8]> {
        if !self.key(tag, WireType::LengthDelimited) {
            return None;
        }
        let len = usize::try_from(self.varint()?).ok()?;
        if len > self.0.len() {
            return None;
        }
        let (field, rest) = self.0.split_at(len);
        self.0 = rest;
        Some(field)
    }

    fn fixed<const N: usize>(&mut self, tag: u8) -> Option<[u8; N]> {
        self.delimited(tag)?.try_into().ok()
    }

    fn is_done(&self) -> bool {
        self.0.is_empty()
    }
}

fn canonical_ratchet(bytes: &[u8], version: u8) -> Option<RatchetMessage<'_>> {
    let mut r = Canonical(bytes);
    let ratchet_key = X25519PublicKey::from_bytes(r.fixed::<KEY_LEN>(1)?)?;
    let counter = r.uint32(2)?;
    let previous_counter = r.uint32(3)?;
    let nonce = r.fixed::<NONCE_LEN>(4)?;
    let ciphertext = r.delimited(5)?;
    if ciphertext.len() < TAG_LEN || !r.is_done() {
        return None;
    }
    Some(RatchetMessage {
        header: RatchetHeader {
            version,
            ratchet_key,
            counter,
            previous_counter,
            nonce,
        },
        ciphertext: Cow::Borrowed(ciphertext),
    })
}

fn canonical_kem(bytes: &[u8]) -> Option<KemSetup> {
    let mut r = Canonical(bytes);
    let prekey_id = KemPreKeyId(r.uint32(1)?);
    let ciphertext = r.fixed::<KEM_CIPHERTEXT_LEN>(2)?;
    r.is_done().then(|| KemSetup {
        prekey_id,
        ciphertext: Box::new(ciphertext),
    })
}

/// The fast path of [`Body::parse`]: a canonically encoded, valid message, or `None`.
pub(crate) fn parse_canonical(bytes: &[u8]) -> Option<Body<'_>> {
    let (&version, body) = bytes.split_first()?;
    if !(super::VERSION..=PQXDH_MESSAGE_VERSION).contains(&version) {
        return None;
    }
    let mut r = Canonical(body);
    if let Some(ratchet) = r.delimited(1) {
        return r
            .is_done()
            .then(|| canonical_ratchet(ratchet, version).map(Body::Ratchet))
            .flatten();
    }
    let initial = r.delimited(2)?;
    if !r.is_done() {
        return None;
    }
    let mut r = Canonical(initial);
    let identity_key = IdentityKey::from_bytes(&r.fixed::<KEY_LEN>(1)?)?;
    let base_key = X25519PublicKey::from_bytes(r.fixed::<KEY_LEN>(2)?)?;
    let signed_prekey_id = SignedPreKeyId(r.uint32(3)?);
    let one_time_prekey_id = r.optional_uint32(4)?.map(OneTimePreKeyId);
    let kem = match r.optional_delimited(5)? {
        Some(kem) => Some(canonical_kem(kem)?),
        None => None,
    };
    let ratchet = canonical_ratchet(r.delimited(6)?, version)?;
    if !r.is_done() || check_setup_version(version, kem.is_some()).is_err() {
        return None;
    }
    let setup = InitialSetup {
        identity_key,
        base_key,
        signed_prekey_id,
        one_time_prekey_id,
        kem,
    };
    Some(Body::Initial(setup, ratchet))
}

/// Length of a length-delimited field with `len` bytes of content.
fn delimited_len(tag: u32, len: usize) -> usize {
    key_len(tag) + encoded_len_varint(len as u64) + len
}

/// Length of a proto3 uint32 field (omitted when zero).
fn uint32_len(tag: u32, value: u32) -> usize {
    if value == 0 {
        0
    } else {
        key_len(tag) + encoded_len_varint(u64::from(value))
    }
}

fn put_delimited_header(buf: &mut &mut [u8], tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn put_bytes(buf: &mut &mut [u8], tag: u32, bytes: &[u8]) {
    put_delimited_header(buf, tag, bytes.len());
    let (field, rest) = core::mem::take(buf).split_at_mut(bytes.len());
    field.copy_from_slice(bytes);
    *buf = rest;
}

fn put_uint32(buf: &mut &mut [u8], tag: u32, value: u32) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(u64::from(value), buf);
    }
}

/// The sizes of an outgoing message's fields, computed once for [`MessageWriter`].
struct WriterLayout {
    /// Length of the `RatchetMessage` field's contents.
    ratchet_len: usize,
    /// Length of the `InitialMessage` field's contents, for a message with a setup.
    initial_len: Option<usize>,
    /// Length of `ciphertext || tag`.
    ciphertext_len: usize,
    /// Where the payload starts: the length of everything before it.
    payload_start: usize,
    /// The whole message's length.
    total: usize,
}

impl WriterLayout {
    fn new(setup: Option<&InitialSetup>, header: &RatchetHeader, plaintext_len: usize) -> Self {
        let ciphertext_len = plaintext_len + TAG_LEN;
        let ratchet_len = delimited_len(1, KEY_LEN)
            + uint32_len(2, header.counter)
            + uint32_len(3, header.previous_counter)
            + delimited_len(4, NONCE_LEN)
            + delimited_len(5, ciphertext_len);
        let initial_len = setup.map(|s| {
            delimited_len(1, KEY_LEN)
                + delimited_len(2, KEY_LEN)
                + uint32_len(3, s.signed_prekey_id.0)
                + s.one_time_prekey_id
                    .map_or(0, |id| key_len(4) + encoded_len_varint(u64::from(id.0)))
                + s.kem.as_ref().map_or(0, |k| delimited_len(5, kem_len(k)))
                + delimited_len(6, ratchet_len)
        });
        let total = 1 + match initial_len {
            Some(len) => delimited_len(2, len),
            None => delimited_len(1, ratchet_len),
        };
        Self {
            ratchet_len,
            initial_len,
            ciphertext_len,
            payload_start: total - ciphertext_len,
            total,
        }
    }

    /// Writes the version byte and every field up to the payload into `out`, exactly
    /// `payload_start` bytes.
    fn write_fields(&self, setup: Option<&InitialSetup>, header: &RatchetHeader, out: &mut [u8]) {
        debug_assert_eq!(out.len(), self.payload_start);
        let Some((version, mut out)) = out.split_first_mut() else {
            return;
        };
        *version = header.version;
        let w = &mut out;
        match (setup, self.initial_len) {
            (Some(s), Some(len)) => {
                put_delimited_header(w, 2, len);
                put_bytes(w, 1, s.identity_key.as_bytes());
                put_bytes(w, 2, s.base_key.as_bytes());
                put_uint32(w, 3, s.signed_prekey_id.0);
                if let Some(id) = s.one_time_prekey_id {
                    // `optional` fields are written even when zero.
                    encode_key(4, WireType::Varint, w);
                    encode_varint(u64::from(id.0), w);
                }
                if let Some(k) = &s.kem {
                    put_delimited_header(w, 5, kem_len(k));
                    put_uint32(w, 1, k.prekey_id.0);
                    put_bytes(w, 2, &k.ciphertext[..]);
                }
                put_delimited_header(w, 6, self.ratchet_len);
            }
            _ => put_delimited_header(w, 1, self.ratchet_len),
        }
        put_bytes(w, 1, header.ratchet_key.as_bytes());
        put_uint32(w, 2, header.counter);
        put_uint32(w, 3, header.previous_counter);
        put_bytes(w, 4, &header.nonce);
        put_delimited_header(w, 5, self.ciphertext_len);
        debug_assert!(out.is_empty());
    }
}

/// Length of a `KemSetup` field's contents.
fn kem_len(k: &KemSetup) -> usize {
    uint32_len(1, k.prekey_id.0) + delimited_len(2, KEM_CIPHERTEXT_LEN)
}

/// An outgoing message being assembled in one buffer of exactly its final size: every field
/// is written, and the payload and tag are left for the encryption to fill in.
pub(crate) struct MessageWriter {
    buf: Vec<u8>,
    payload: Range<usize>,
}

impl MessageWriter {
    /// Lays out a message whose plaintext is `plaintext_len` bytes long; the places of the
    /// payload and the tag are zeroed, for the encryption to write into.
    pub(crate) fn new(
        setup: Option<&InitialSetup>,
        header: &RatchetHeader,
        plaintext_len: usize,
    ) -> Self {
        let layout = WriterLayout::new(setup, header, plaintext_len);
        // Zeroed rather than filled with a copy of the plaintext: the encryption reads the
        // plaintext from the caller's buffer and writes the ciphertext here (and a large
        // zeroed allocation can come straight from the OS without a pass over it).
        let mut buf = vec![0u8; layout.total];
        layout.write_fields(setup, header, &mut buf[..layout.payload_start]);
        Self {
            buf,
            payload: layout.payload_start..layout.payload_start + plaintext_len,
        }
    }

    /// Lays out a message whose plaintext is `prefix || body`, copied into the payload's
    /// place for the encryption to run in place (the tag's place is zeroed). The plaintext
    /// is written once: the payload is not zeroed first.
    pub(crate) fn with_plaintext(
        setup: Option<&InitialSetup>,
        header: &RatchetHeader,
        prefix: &[u8],
        body: &[u8],
    ) -> Self {
        let plaintext_len = prefix.len() + body.len();
        let layout = WriterLayout::new(setup, header, plaintext_len);
        let mut buf = Vec::with_capacity(layout.total);
        buf.resize(layout.payload_start, 0);
        layout.write_fields(setup, header, &mut buf);
        buf.extend_from_slice(prefix);
        buf.extend_from_slice(body);
        buf.resize(layout.total, 0);
        Self {
            buf,
            payload: layout.payload_start..layout.payload_start + plaintext_len,
        }
    }

    /// The places for the ciphertext (as long as the plaintext) and for the tag.
    pub(crate) fn payload_and_tag_mut(&mut self) -> (&mut [u8], &mut [u8]) {
        self.buf[self.payload.start..].split_at_mut(self.payload.len())
    }

    /// The finished message bytes.
    pub(crate) fn finish(self) -> Vec<u8> {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::VERSION;
    use proptest::prelude::*;
    use proptest::test_runner::TestCaseError;

    /// A canonical X25519 key from arbitrary bytes: below 2^254, so below p.
    fn canonical_key(mut bytes: [u8; 32]) -> X25519PublicKey {
        bytes[31] &= 0x3f;
        X25519PublicKey::from_bytes(bytes).expect("below p")
    }

    fn identity(seed: u8) -> IdentityKey {
        let mut rng =
            <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(u64::from(seed));
        crate::keys::IdentityKeyPair::generate(&mut rng).public_key()
    }

    /// The version byte an initial message with `setup` must have.
    fn setup_version(setup: &InitialSetup) -> u8 {
        if setup.kem.is_some() {
            PQXDH_MESSAGE_VERSION
        } else {
            VERSION
        }
    }

    /// Message bytes as ratchetbox writes them.
    fn encode(
        setup: Option<&InitialSetup>,
        header: &RatchetHeader,
        payload: &[u8],
        tag: &[u8; 16],
    ) -> Vec<u8> {
        let mut writer = MessageWriter::new(setup, header, payload.len());
        let (payload_out, tag_out) = writer.payload_and_tag_mut();
        payload_out.copy_from_slice(payload);
        tag_out.copy_from_slice(tag);
        writer.finish()
    }

    fn header_strategy() -> impl Strategy<Value = RatchetHeader> {
        (
            any::<[u8; 32]>(),
            prop_oneof![Just(0u32), 1..200u32, any::<u32>()],
            prop_oneof![Just(0u32), 1..200u32, any::<u32>()],
            any::<[u8; 12]>(),
            prop_oneof![Just(VERSION), Just(PQXDH_MESSAGE_VERSION)],
        )
            .prop_map(
                |(key, counter, previous_counter, nonce, version)| RatchetHeader {
                    version,
                    ratchet_key: canonical_key(key),
                    counter,
                    previous_counter,
                    nonce,
                },
            )
    }

    fn id_strategy() -> impl Strategy<Value = u32> {
        prop_oneof![Just(0u32), 1..200u32, any::<u32>()]
    }

    fn setup_strategy() -> impl Strategy<Value = Option<InitialSetup>> {
        proptest::option::of((
            any::<u8>(),
            any::<[u8; 32]>(),
            id_strategy(),
            proptest::option::of(id_strategy()),
            proptest::option::of((id_strategy(), any::<u8>())),
        ))
        .prop_map(|initial| {
            initial.map(|(seed, base, spk, opk, kem)| InitialSetup {
                identity_key: identity(seed % 8),
                base_key: canonical_key(base),
                signed_prekey_id: SignedPreKeyId(spk),
                one_time_prekey_id: opk.map(OneTimePreKeyId),
                kem: kem.map(|(id, fill)| KemSetup {
                    prekey_id: KemPreKeyId(id),
                    ciphertext: Box::new([fill; KEM_CIPHERTEXT_LEN]),
                }),
            })
        })
    }

    /// Valid message bytes, as a peer sends them.
    fn valid_message() -> impl Strategy<Value = Vec<u8>> {
        (
            setup_strategy(),
            header_strategy(),
            proptest::collection::vec(any::<u8>(), 0..64),
            any::<[u8; 16]>(),
        )
            .prop_map(|(setup, mut header, payload, tag)| {
                if let Some(s) = &setup {
                    header.version = setup_version(s);
                }
                encode(setup.as_ref(), &header, &payload, &tag)
            })
    }

    /// One edit of a byte string; positions are taken modulo its length.
    #[derive(Clone, Debug)]
    enum Edit {
        Set(usize, u8),
        Insert(usize, u8),
        Remove(usize),
        Truncate(usize),
        /// Append a copy of `len` bytes starting at a position.
        Repeat(usize, usize),
        /// Move a range to the end (reorders fields when it hits field boundaries).
        Rotate(usize, usize),
    }

    fn edit_strategy() -> impl Strategy<Value = Edit> {
        prop_oneof![
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
            (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::Insert(i, b)),
            any::<usize>().prop_map(Edit::Remove),
            any::<usize>().prop_map(Edit::Truncate),
            (any::<usize>(), 1..40usize).prop_map(|(i, n)| Edit::Repeat(i, n)),
            (any::<usize>(), 1..60usize).prop_map(|(i, n)| Edit::Rotate(i, n)),
        ]
    }

    fn apply(bytes: &mut Vec<u8>, edit: &Edit) {
        let len = bytes.len();
        if len == 0 {
            return;
        }
        match *edit {
            Edit::Set(i, b) => bytes[i % len] = b,
            Edit::Insert(i, b) => bytes.insert(i % (len + 1), b),
            Edit::Remove(i) => {
                bytes.remove(i % len);
            }
            Edit::Truncate(i) => bytes.truncate(i % len),
            Edit::Repeat(i, n) => {
                let start = i % len;
                let end = (start + n).min(len);
                let copy = bytes[start..end].to_vec();
                bytes.extend_from_slice(&copy);
            }
            Edit::Rotate(i, n) => {
                let start = 1 + i % len.saturating_sub(1).max(1);
                let end = (start + n).min(len);
                if start < end {
                    let moved: Vec<u8> = bytes.drain(start..end).collect();
                    bytes.extend_from_slice(&moved);
                }
            }
        }
    }

    /// A protobuf-shaped byte string: random fields (tags 0..8, every wire type, nested
    /// messages, padded varints, plausible key and nonce lengths).
    fn protobuf_fields(depth: u32) -> BoxedStrategy<Vec<u8>> {
        let leaf = prop_oneof![
            // varint field, sometimes with a padded (non-minimal) varint
            (
                0..8u32,
                prop_oneof![Just(0u64), 1..300u64, any::<u64>()],
                any::<bool>()
            )
                .prop_map(|(tag, value, padded)| {
                    let mut out = Vec::new();
                    encode_key(tag.max(1), WireType::Varint, &mut out);
                    encode_varint(value, &mut out);
                    if padded {
                        if let Some(last) = out.last_mut() {
                            *last |= 0x80;
                        }
                        out.push(0);
                    }
                    out
                }),
            // bytes field of a plausible or random length
            (
                1..8u32,
                prop_oneof![
                    Just(0usize),
                    Just(12),
                    Just(16),
                    Just(32),
                    Just(33),
                    0..40usize
                ],
                any::<u8>()
            )
                .prop_map(|(tag, len, fill)| {
                    let mut out = Vec::new();
                    encode_key(tag, WireType::LengthDelimited, &mut out);
                    encode_varint(len as u64, &mut out);
                    out.extend((0..len).map(|i| fill.wrapping_add(i as u8)));
                    out
                }),
            // fixed-width fields
            (1..8u32, any::<u64>(), any::<bool>()).prop_map(|(tag, value, wide)| {
                let mut out = Vec::new();
                if wide {
                    encode_key(tag, WireType::SixtyFourBit, &mut out);
                    out.extend_from_slice(&value.to_le_bytes());
                } else {
                    encode_key(tag, WireType::ThirtyTwoBit, &mut out);
                    out.extend_from_slice(&(value as u32).to_le_bytes());
                }
                out
            }),
            // raw garbage
            proptest::collection::vec(any::<u8>(), 0..4),
        ];
        let field = if depth == 0 {
            leaf.boxed()
        } else {
            prop_oneof![
                3 => leaf,
                1 => (1..6u32, protobuf_fields(depth - 1)).prop_map(|(tag, inner)| {
                    let mut out = Vec::new();
                    encode_key(tag, WireType::LengthDelimited, &mut out);
                    encode_varint(inner.len() as u64, &mut out);
                    out.extend_from_slice(&inner);
                    out
                }),
            ]
            .boxed()
        };
        proptest::collection::vec(field, 0..7)
            .prop_map(|fields| fields.concat())
            .boxed()
    }

    /// How one field of a near-canonical message is written.
    #[derive(Clone, Copy, Debug)]
    enum Shape {
        Canonical,
        Omitted,
        /// Varint value or length prefix padded with a redundant 0x80 byte.
        Padded,
        Twice,
        /// Written although it holds the default value (0 or empty).
        Default,
        /// One byte longer or shorter (bytes), or above 32 bits (uint32: protobuf truncates).
        Off(bool),
        WrongWireType,
    }

    fn shape_strategy() -> impl Strategy<Value = Shape> {
        prop_oneof![
            20 => Just(Shape::Canonical),
            1 => Just(Shape::Omitted),
            1 => Just(Shape::Padded),
            1 => Just(Shape::Twice),
            1 => Just(Shape::Default),
            2 => any::<bool>().prop_map(Shape::Off),
            1 => Just(Shape::WrongWireType),
        ]
    }

    fn padded_varint(value: u64, out: &mut Vec<u8>) {
        encode_varint(value, out);
        if let Some(last) = out.last_mut() {
            *last |= 0x80;
        }
        out.push(0);
    }

    /// A uint32 field; `optional` fields are written even when zero.
    fn varint_field(tag: u32, value: u32, optional: bool, shape: Shape, out: &mut Vec<u8>) {
        let canonical = |out: &mut Vec<u8>| {
            if value != 0 || optional {
                encode_key(tag, WireType::Varint, out);
                encode_varint(u64::from(value), out);
            }
        };
        match shape {
            Shape::Canonical => canonical(out),
            Shape::Omitted => {}
            Shape::Padded => {
                encode_key(tag, WireType::Varint, out);
                padded_varint(u64::from(value), out);
            }
            Shape::Twice => {
                canonical(out);
                canonical(out);
            }
            Shape::Default => {
                encode_key(tag, WireType::Varint, out);
                encode_varint(0, out);
            }
            Shape::Off(high) => {
                // Bits above 32: a 5-byte varint stays 5 bytes when truncated if the value
                // itself needs 5 bytes, which the canonical-length rule lets through.
                let extra = if high { 7u64 << 32 } else { 1u64 << 32 };
                encode_key(tag, WireType::Varint, out);
                encode_varint(u64::from(value) | extra, out);
            }
            Shape::WrongWireType => {
                encode_key(tag, WireType::ThirtyTwoBit, out);
                out.extend_from_slice(&value.to_le_bytes());
            }
        }
    }

    fn bytes_field(tag: u32, value: &[u8], shape: Shape, out: &mut Vec<u8>) {
        let write = |bytes: &[u8], out: &mut Vec<u8>| {
            encode_key(tag, WireType::LengthDelimited, out);
            encode_varint(bytes.len() as u64, out);
            out.extend_from_slice(bytes);
        };
        match shape {
            Shape::Canonical if value.is_empty() => {}
            Shape::Canonical => write(value, out),
            Shape::Omitted => {}
            Shape::Padded => {
                encode_key(tag, WireType::LengthDelimited, out);
                padded_varint(value.len() as u64, out);
                out.extend_from_slice(value);
            }
            Shape::Twice => {
                write(value, out);
                write(value, out);
            }
            Shape::Default => write(&[], out),
            Shape::Off(longer) => {
                let mut changed = value.to_vec();
                if longer {
                    changed.push(0xAA);
                } else {
                    changed.pop();
                }
                write(&changed, out);
            }
            Shape::WrongWireType => {
                encode_key(tag, WireType::Varint, out);
                encode_varint(value.len() as u64, out);
            }
        }
    }

    /// Fields written one by one, then optionally swapped and followed by an unknown field.
    fn assemble(mut fields: Vec<Vec<u8>>, swap: Option<(usize, usize)>, unknown: bool) -> Vec<u8> {
        if let Some((a, b)) = swap {
            let n = fields.len();
            fields.swap(a % n, b % n);
        }
        let mut out = fields.concat();
        if unknown {
            encode_key(9, WireType::Varint, &mut out);
            encode_varint(1, &mut out);
        }
        out
    }

    #[derive(Clone, Debug)]
    struct Variation {
        shapes: [Shape; 5],
        swap: Option<(usize, usize)>,
        unknown: bool,
    }

    fn variation_strategy() -> impl Strategy<Value = Variation> {
        (
            [
                shape_strategy(),
                shape_strategy(),
                shape_strategy(),
                shape_strategy(),
                shape_strategy(),
            ],
            prop_oneof![8 => Just(None), 1 => any::<(usize, usize)>().prop_map(Some)],
            prop_oneof![12 => Just(false), 1 => Just(true)],
        )
            .prop_map(|(shapes, swap, unknown)| Variation {
                shapes,
                swap,
                unknown,
            })
    }

    fn ratchet_fields(header: &RatchetHeader, ciphertext: &[u8], v: &Variation) -> Vec<u8> {
        let mut fields = vec![Vec::new(); 5];
        bytes_field(
            1,
            header.ratchet_key.as_bytes(),
            v.shapes[0],
            &mut fields[0],
        );
        varint_field(2, header.counter, false, v.shapes[1], &mut fields[1]);
        varint_field(
            3,
            header.previous_counter,
            false,
            v.shapes[2],
            &mut fields[2],
        );
        bytes_field(4, &header.nonce, v.shapes[3], &mut fields[3]);
        bytes_field(5, ciphertext, v.shapes[4], &mut fields[4]);
        assemble(fields, v.swap, v.unknown)
    }

    /// Messages that are canonical and valid except, now and then, for one or two fields
    /// written in another shape, fields swapped, or an unknown field: the inputs on which a
    /// hand-written decoder and prost could disagree.
    fn near_canonical_message() -> impl Strategy<Value = Vec<u8>> {
        (
            setup_strategy(),
            header_strategy(),
            proptest::collection::vec(any::<u8>(), 0..40),
            variation_strategy(),
            variation_strategy(),
            shape_strategy(),
        )
            .prop_map(|(setup, header, ciphertext, inner, outer, body_shape)| {
                let ratchet = ratchet_fields(&header, &ciphertext, &inner);
                let mut out = vec![VERSION];
                match setup {
                    None => bytes_field(1, &ratchet, body_shape, &mut out),
                    Some(s) => {
                        let mut fields = vec![Vec::new(); 5];
                        bytes_field(
                            1,
                            s.identity_key.as_bytes(),
                            outer.shapes[0],
                            &mut fields[0],
                        );
                        bytes_field(2, s.base_key.as_bytes(), outer.shapes[1], &mut fields[1]);
                        varint_field(
                            3,
                            s.signed_prekey_id.0,
                            false,
                            outer.shapes[2],
                            &mut fields[2],
                        );
                        if let Some(id) = s.one_time_prekey_id {
                            varint_field(4, id.0, true, outer.shapes[3], &mut fields[3]);
                        }
                        bytes_field(5, &ratchet, outer.shapes[4], &mut fields[4]);
                        let initial = assemble(fields, outer.swap, outer.unknown);
                        bytes_field(2, &initial, body_shape, &mut out);
                    }
                }
                out
            })
    }

    /// The decoder gives exactly the reference decoder's result, and its fast path accepts
    /// only inputs the reference accepts, with the same value, and only canonical bytes.
    fn check_against_reference(bytes: &[u8]) -> Result<(), TestCaseError> {
        let reference = Message::decode_reference(bytes);
        prop_assert_eq!(&Message::from_bytes(bytes), &reference);
        prop_assert_eq!(
            Body::parse(bytes).map(|b| Message(b.into_owned())),
            reference.clone()
        );
        if let Some(fast) = parse_canonical(bytes) {
            let fast = Message(fast.into_owned());
            prop_assert_eq!(fast.to_bytes(), bytes.to_vec());
            prop_assert_eq!(Some(fast), reference.ok());
        }
        Ok(())
    }

    #[test]
    fn reordered_fields_are_not_canonical_on_either_path() {
        let header = RatchetHeader {
            version: VERSION,
            ratchet_key: canonical_key([5; 32]),
            counter: 7,
            previous_counter: 3,
            nonce: [9; 12],
        };
        let bytes = encode(None, &header, b"payload", &[1; 16]);
        // Move the ratchet key field (key byte, length byte, 32 bytes) after the ciphertext.
        let inner_start = 3;
        let mut reordered = bytes[..inner_start].to_vec();
        reordered.extend_from_slice(&bytes[inner_start + 34..]);
        reordered.extend_from_slice(&bytes[inner_start..inner_start + 34]);
        assert!(parse_canonical(&reordered).is_none());
        // prost decodes it to the very same header...
        let prost_view = <pb::Message as prost::Message>::decode(&reordered[1..]).expect("prost");
        let Some(pb::message::Body::Ratchet(r)) = prost_view.body else {
            panic!("ratchet body")
        };
        assert_eq!((r.counter, r.ratchet_key.as_slice()), (7, &[5u8; 32][..]));
        // ...and ratchetbox refuses it: one value, one encoding.
        let non_canonical = Err(DecodeError::NonCanonical { object: "Message" });
        assert_eq!(Message::from_bytes(&reordered), non_canonical);
        assert_eq!(Message::decode_reference(&reordered), non_canonical);
    }

    #[test]
    fn a_counter_varint_with_bits_above_32_is_not_canonical() {
        // 2^28 takes five varint bytes, and so does 2^32 + 2^28, which prost truncates to
        // 2^28: same length, same decoded value, other bytes.
        let header = RatchetHeader {
            version: VERSION,
            ratchet_key: canonical_key([5; 32]),
            counter: 1 << 28,
            previous_counter: 3,
            nonce: [9; 12],
        };
        let bytes = encode(None, &header, b"payload", &[1; 16]);
        let varint = [0x80, 0x80, 0x80, 0x80, 0x01];
        let at = bytes
            .windows(6)
            .position(|w| w == [0x10, 0x80, 0x80, 0x80, 0x80, 0x01])
            .expect("counter field")
            + 1;
        assert_eq!(bytes[at..at + 5], varint);
        let mut wider = bytes.clone();
        wider[at + 4] = 0x11; // bit 32 set as well
        let prost_view = <pb::Message as prost::Message>::decode(&wider[1..]).expect("prost");
        let Some(pb::message::Body::Ratchet(r)) = prost_view.body else {
            panic!("ratchet body")
        };
        assert_eq!(r.counter, 1 << 28, "prost truncates");
        assert_eq!(
            Message::from_bytes(&bytes).map(|m| m.ratchet().header),
            Ok(header)
        );
        let non_canonical = Err(DecodeError::NonCanonical { object: "Message" });
        assert_eq!(Message::from_bytes(&wider), non_canonical);
        assert_eq!(Message::decode_reference(&wider), non_canonical);
    }

    proptest! {
        // Each case decodes twice; a deviation that matters may hit one field in a few
        // hundred cases, so this runs many.
        #![proptest_config(ProptestConfig::with_cases(3000))]
        #[test]
        fn near_canonical_messages_decode_exactly_like_the_reference(
            bytes in near_canonical_message(),
        ) {
            check_against_reference(&bytes)?;
        }
    }

    proptest! {
        #[test]
        fn valid_messages_take_the_fast_path(bytes in valid_message()) {
            prop_assert!(parse_canonical(&bytes).is_some());
            check_against_reference(&bytes)?;
        }

        #[test]
        fn edited_messages_decode_exactly_like_the_reference(
            bytes in valid_message(),
            edits in proptest::collection::vec(edit_strategy(), 1..4),
        ) {
            let mut bytes = bytes;
            for edit in &edits {
                apply(&mut bytes, edit);
            }
            check_against_reference(&bytes)?;
        }

        #[test]
        fn protobuf_shaped_inputs_decode_exactly_like_the_reference(
            version in prop_oneof![
                5 => Just(VERSION),
                4 => Just(PQXDH_MESSAGE_VERSION),
                1 => any::<u8>()
            ],
            body in protobuf_fields(2),
        ) {
            let mut bytes = vec![version];
            bytes.extend_from_slice(&body);
            check_against_reference(&bytes)?;
        }

        #[test]
        fn arbitrary_bytes_decode_exactly_like_the_reference(
            bytes in proptest::collection::vec(any::<u8>(), 0..200),
        ) {
            check_against_reference(&bytes)?;
        }

        #[test]
        fn writer_matches_prost_encoding(
            key in any::<[u8; 32]>(),
            counter in prop_oneof![Just(0u32), any::<u32>()],
            previous in prop_oneof![Just(0u32), any::<u32>()],
            nonce in any::<[u8; 12]>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            tag in any::<[u8; 16]>(),
            initial in any::<Option<(u8, [u8; 32], u32, Option<u32>, Option<(u32, u8)>)>>(),
            post_quantum in any::<bool>(),
            split in any::<proptest::sample::Index>(),
        ) {
            let mut header = RatchetHeader {
                version: if post_quantum { PQXDH_MESSAGE_VERSION } else { VERSION },
                ratchet_key: canonical_key(key),
                counter,
                previous_counter: previous,
                nonce,
            };
            let setup = initial.map(|(seed, base, spk, opk, kem)| InitialSetup {
                identity_key: identity(seed),
                base_key: canonical_key(base),
                signed_prekey_id: SignedPreKeyId(spk),
                one_time_prekey_id: opk.map(OneTimePreKeyId),
                kem: kem.map(|(id, fill)| KemSetup {
                    prekey_id: KemPreKeyId(id),
                    ciphertext: Box::new([fill; KEM_CIPHERTEXT_LEN]),
                }),
            });
            if let Some(s) = &setup {
                header.version = setup_version(s);
            }
            let mut writer = MessageWriter::new(setup.as_ref(), &header, payload.len());
            let (payload_out, tag_out) = writer.payload_and_tag_mut();
            payload_out.copy_from_slice(&payload);
            tag_out.copy_from_slice(&tag);
            let bytes = writer.finish();

            // The writer that copies the plaintext in (as prefix || body, split anywhere)
            // lays out the same bytes, with the plaintext in the payload's place.
            let k = split.index(payload.len() + 1);
            let mut copied =
                MessageWriter::with_plaintext(setup.as_ref(), &header, &payload[..k], &payload[k..]);
            let (copied_payload, copied_tag) = copied.payload_and_tag_mut();
            prop_assert_eq!(&*copied_payload, &payload[..]);
            prop_assert_eq!(&*copied_tag, &[0u8; 16][..]);
            copied_tag.copy_from_slice(&tag);
            prop_assert_eq!(&copied.finish(), &bytes);

            let mut ciphertext = payload.clone();
            ciphertext.extend_from_slice(&tag);
            let ratchet = RatchetMessage { header, ciphertext: Cow::Owned(ciphertext) };
            let message = Message(match setup {
                Some(s) => Body::Initial(s, ratchet),
                None => Body::Ratchet(ratchet),
            });
            prop_assert_eq!(&bytes, &message.to_bytes());
            prop_assert_eq!(Message::from_bytes(&bytes).ok(), Some(message));
        }
    }
}
