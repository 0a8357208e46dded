//! Messages between peers: the Double Ratchet message and the initial message that also
//! carries the X3DH setup.
//!
//! Wire object: `0x01 || protobuf Message`, where `Message` is a oneof of `RatchetMessage`
//! and `InitialMessage`. Outgoing messages are assembled in a single buffer with prost's
//! encoding primitives so that the plaintext is encrypted in place where its ciphertext
//! belongs (one allocation per message); a test checks the bytes equal prost's own encoding
//! of the same values.

use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use alloc::boxed::Box;

use super::bundle::{KemPreKeyId, OneTimePreKeyId, SignedPreKeyId};
use super::generated as pb;
use crate::aead::{NONCE_LEN, TAG_LEN};
use crate::error::DecodeError;
use crate::kem::{KEM_CIPHERTEXT_LEN, KemCiphertext};
use crate::keys::{IdentityKey, KEY_LEN, X25519PublicKey};

/// The header of a ratchet message: the values the Double Ratchet needs before decrypting.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) struct RatchetHeader {
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
        out[0] = super::VERSION;
        out[1..33].copy_from_slice(self.ratchet_key.as_bytes());
        out[33..37].copy_from_slice(&self.counter.to_be_bytes());
        out[37..41].copy_from_slice(&self.previous_counter.to_be_bytes());
        out[41..].copy_from_slice(&self.nonce);
        out
    }
}

/// A decoded ratchet message: header and `ciphertext || tag` (at least 16 bytes).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct RatchetMessage {
    pub(crate) header: RatchetHeader,
    pub(crate) ciphertext: Vec<u8>,
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
pub(crate) enum Body {
    Ratchet(RatchetMessage),
    Initial(InitialSetup, RatchetMessage),
}

/// A message between two peers, decoded and validated: either a Double Ratchet message or an
/// initial message that also carries the X3DH setup.
///
/// Apps usually pass message bytes straight to
/// [`SessionRecord::decrypt`](crate::SessionRecord::decrypt); this type is for inspecting a
/// message first (for example, to see which identity an initial message claims).
#[derive(Clone, PartialEq, Eq)]
pub struct Message(pub(crate) Body);

impl Message {
    const OBJECT: &'static str = "Message";

    /// Decodes `0x01 || protobuf Message`, validating every field.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let p: pb::Message = super::decode(bytes, Self::OBJECT)?;
        match p.body {
            Some(pb::message::Body::Ratchet(r)) => Ok(Self(Body::Ratchet(ratchet_from_proto(r)?))),
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
                let setup = InitialSetup {
                    identity_key: super::identity_key(&i.identity_key, OBJECT, "identity_key")?,
                    base_key: super::x25519_key(&i.base_key, OBJECT, "base_key")?,
                    signed_prekey_id: SignedPreKeyId(i.signed_prekey_id),
                    one_time_prekey_id: i.one_time_prekey_id.map(OneTimePreKeyId),
                    kem,
                };
                let inner = super::required(i.message, OBJECT, "message")?;
                Ok(Self(Body::Initial(setup, ratchet_from_proto(inner)?)))
            }
            None => Err(DecodeError::MissingField {
                object: Self::OBJECT,
                field: "body",
            }),
        }
    }

    /// Encodes the message: `0x01 || protobuf Message`.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::encode(&self.to_proto())
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

    /// For an initial message, whether its setup is post-quantum (PQXDH).
    pub fn is_post_quantum(&self) -> bool {
        matches!(&self.0, Body::Initial(setup, _) if setup.kem.is_some())
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

    pub(crate) fn ratchet(&self) -> &RatchetMessage {
        match &self.0 {
            Body::Ratchet(r) | Body::Initial(_, r) => r,
        }
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

fn ratchet_from_proto(p: pb::RatchetMessage) -> Result<RatchetMessage, DecodeError> {
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
            ratchet_key: super::x25519_key(&p.ratchet_key, OBJECT, "ratchet_key")?,
            counter: p.counter,
            previous_counter: p.previous_counter,
            nonce: super::fixed(&p.nonce, OBJECT, "nonce")?,
        },
        ciphertext: p.ciphertext,
    })
}

fn ratchet_to_proto(r: &RatchetMessage) -> pb::RatchetMessage {
    pb::RatchetMessage {
        ratchet_key: r.header.ratchet_key.to_bytes().to_vec(),
        counter: r.header.counter,
        previous_counter: r.header.previous_counter,
        nonce: r.header.nonce.to_vec(),
        ciphertext: r.ciphertext.clone(),
    }
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

fn put_delimited_header(buf: &mut Vec<u8>, tag: u32, len: usize) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
}

fn put_bytes(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    put_delimited_header(buf, tag, bytes.len());
    buf.extend_from_slice(bytes);
}

fn put_uint32(buf: &mut Vec<u8>, tag: u32, value: u32) {
    if value != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(u64::from(value), buf);
    }
}

/// An outgoing message being assembled: every field is written, and the plaintext sits where
/// the ciphertext goes, waiting to be encrypted in place.
pub(crate) struct MessageWriter {
    buf: Vec<u8>,
    payload: Range<usize>,
}

impl MessageWriter {
    pub(crate) fn new(
        setup: Option<&InitialSetup>,
        header: &RatchetHeader,
        plaintext: &[u8],
    ) -> Self {
        let ciphertext_len = plaintext.len() + TAG_LEN;
        let ratchet_len = delimited_len(1, KEY_LEN)
            + uint32_len(2, header.counter)
            + uint32_len(3, header.previous_counter)
            + delimited_len(4, NONCE_LEN)
            + delimited_len(5, ciphertext_len);
        let kem_len =
            |k: &KemSetup| uint32_len(1, k.prekey_id.0) + delimited_len(2, KEM_CIPHERTEXT_LEN);
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

        let mut buf = Vec::with_capacity(total);
        buf.push(super::VERSION);
        match (setup, initial_len) {
            (Some(s), Some(len)) => {
                put_delimited_header(&mut buf, 2, len);
                put_bytes(&mut buf, 1, s.identity_key.as_bytes());
                put_bytes(&mut buf, 2, s.base_key.as_bytes());
                put_uint32(&mut buf, 3, s.signed_prekey_id.0);
                if let Some(id) = s.one_time_prekey_id {
                    // `optional` fields are written even when zero.
                    encode_key(4, WireType::Varint, &mut buf);
                    encode_varint(u64::from(id.0), &mut buf);
                }
                if let Some(k) = &s.kem {
                    put_delimited_header(&mut buf, 5, kem_len(k));
                    put_uint32(&mut buf, 1, k.prekey_id.0);
                    put_bytes(&mut buf, 2, &k.ciphertext[..]);
                }
                put_delimited_header(&mut buf, 6, ratchet_len);
            }
            _ => put_delimited_header(&mut buf, 1, ratchet_len),
        }
        put_bytes(&mut buf, 1, header.ratchet_key.as_bytes());
        put_uint32(&mut buf, 2, header.counter);
        put_uint32(&mut buf, 3, header.previous_counter);
        put_bytes(&mut buf, 4, &header.nonce);
        put_delimited_header(&mut buf, 5, ciphertext_len);
        let start = buf.len();
        buf.extend_from_slice(plaintext);
        let payload = start..buf.len();
        Self { buf, payload }
    }

    /// The plaintext, to be encrypted in place.
    pub(crate) fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buf[self.payload.clone()]
    }

    /// Appends the tag and returns the finished message bytes.
    pub(crate) fn finish(mut self, tag: &[u8; TAG_LEN]) -> Vec<u8> {
        self.buf.extend_from_slice(tag);
        debug_assert_eq!(self.buf.len(), self.buf.capacity());
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn identity(seed: u8) -> IdentityKey {
        let mut rng =
            <rand_chacha::ChaCha20Rng as rand_core::SeedableRng>::seed_from_u64(u64::from(seed));
        crate::keys::IdentityKeyPair::generate(&mut rng).public_key()
    }

    proptest! {
        #[test]
        fn writer_matches_prost_encoding(
            key in any::<[u8; 32]>(),
            counter in prop_oneof![Just(0u32), any::<u32>()],
            previous in prop_oneof![Just(0u32), any::<u32>()],
            nonce in any::<[u8; 12]>(),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            tag in any::<[u8; 16]>(),
            initial in any::<Option<(u8, [u8; 32], u32, Option<u32>, Option<(u32, u8)>)>>(),
        ) {
            let header = RatchetHeader {
                ratchet_key: X25519PublicKey::from_bytes(key),
                counter,
                previous_counter: previous,
                nonce,
            };
            let setup = initial.map(|(seed, base, spk, opk, kem)| InitialSetup {
                identity_key: identity(seed),
                base_key: X25519PublicKey::from_bytes(base),
                signed_prekey_id: SignedPreKeyId(spk),
                one_time_prekey_id: opk.map(OneTimePreKeyId),
                kem: kem.map(|(id, fill)| KemSetup {
                    prekey_id: KemPreKeyId(id),
                    ciphertext: Box::new([fill; KEM_CIPHERTEXT_LEN]),
                }),
            });
            let mut writer = MessageWriter::new(setup.as_ref(), &header, &payload);
            prop_assert_eq!(&*writer.payload_mut(), payload.as_slice());
            let bytes = writer.finish(&tag);

            let mut ciphertext = payload.clone();
            ciphertext.extend_from_slice(&tag);
            let ratchet = RatchetMessage { header, ciphertext };
            let message = Message(match setup {
                Some(s) => Body::Initial(s, ratchet),
                None => Body::Ratchet(ratchet),
            });
            prop_assert_eq!(&bytes, &message.to_bytes());
            prop_assert_eq!(Message::from_bytes(&bytes).ok(), Some(message));
        }
    }
}
