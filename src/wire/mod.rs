//! The wire format: one version byte followed by a protobuf message (schemas in `proto/`).
//!
//! This layer turns bytes into validated, typed values and back. The wire objects (prekeys
//! and prekey bundles in `bundle`, prekey uploads in `upload`, messages in `message`) are
//! decoded here into typed values, and the protocol code that uses them never sees their
//! protobuf types. The other encoded objects
//! (persisted state, message content, attachment pointers, scannable safety-number codes)
//! are converted by the modules that own them, in their `to_proto`/`from_proto` functions,
//! with this layer's `decode`/`encode` and field checks. Nothing in this layer knows about
//! protocol state.
//!
//! Validation happens at this boundary: `decode` checks the version byte and canonical
//! encoding (the decoded value must re-encode to exactly the input bytes, which rejects
//! unknown, duplicated, default-valued, padded and reordered fields and every other spelling
//! protobuf would fold into the same value), and the field checks here
//! (`fixed`, `x25519_key`, `identity_key`, `kem_public_key`, `required`) enforce the presence
//! of required fields and the exact length of every key, nonce and signature. (Messages
//! also have a zero-copy fast path, whose result is always the reference decoder's; see
//! `message`.)
//! prost checks every length prefix against the remaining input before it allocates, so no
//! allocation is sized by an unchecked length.

pub(crate) mod bundle;
pub(crate) mod message;
pub(crate) mod upload;

#[rustfmt::skip]
#[allow(clippy::all, clippy::pedantic, missing_docs)]
// Without `std` the device layer is absent, and with it the only users of the backup and
// group-record messages.
#[cfg_attr(not(feature = "std"), allow(dead_code))]
pub(crate) mod generated;

use alloc::vec::Vec;

use crate::error::DecodeError;
use crate::keys::{IdentityKey, KEY_LEN, X25519PublicKey};

/// The version byte that starts every wire and state object of this format, and every
/// message of a session set up with classical X3DH.
pub const VERSION: u8 = 1;

/// The version byte of every message of a session set up with PQXDH (X3DH plus ML-KEM-1024).
/// It is authenticated: it is part of the associated data of every message's AES-GCM.
pub const PQXDH_MESSAGE_VERSION: u8 = 2;

/// Decodes `VERSION || protobuf(M)`, rejecting other versions and non-canonical encodings.
pub(crate) fn decode<M: prost::Message + Default>(
    bytes: &[u8],
    object: &'static str,
) -> Result<M, DecodeError> {
    decode_versioned(bytes, object, VERSION).map(|(_, message)| message)
}

/// Decodes `version || protobuf(M)` for a version from 1 to `newest`, returning both.
pub(crate) fn decode_versioned<M: prost::Message + Default>(
    bytes: &[u8],
    object: &'static str,
    newest: u8,
) -> Result<(u8, M), DecodeError> {
    let (&version, body) = bytes.split_first().ok_or(DecodeError::Empty { object })?;
    if !(VERSION..=newest).contains(&version) {
        return Err(DecodeError::UnsupportedVersion {
            object,
            found: version,
            supported: newest,
        });
    }
    let message = M::decode(body).map_err(|_| DecodeError::Malformed { object })?;
    check_canonical(&message, body, object)?;
    Ok((version, message))
}

/// The canonical-encoding rule: `message` (decoded from `body`) must re-encode to exactly
/// `body`. Comparing lengths first rejects unknown, repeated, default-valued and padded
/// fields cheaply; comparing the bytes then also rejects what protobuf decoding folds
/// together without changing the length: fields out of order, a `bool` spelled as a varint
/// other than 1, a `uint32` varint with bits above bit 31 (which prost truncates). So every
/// decoded value has exactly one encoding. The re-encoded copy may hold secrets (persisted
/// state) and is wiped.
pub(crate) fn check_canonical<M: prost::Message>(
    message: &M,
    body: &[u8],
    object: &'static str,
) -> Result<(), DecodeError> {
    if message.encoded_len() != body.len() {
        return Err(DecodeError::NonCanonical { object });
    }
    let mut again = zeroize::Zeroizing::new(Vec::with_capacity(body.len()));
    message.encode_raw(&mut *again);
    if again.as_slice() != body {
        return Err(DecodeError::NonCanonical { object });
    }
    Ok(())
}

/// Encodes `VERSION || protobuf(M)`.
pub(crate) fn encode<M: prost::Message>(message: &M) -> Vec<u8> {
    encode_versioned(VERSION, message)
}

/// Encodes `version || protobuf(M)`.
pub(crate) fn encode_versioned<M: prost::Message>(version: u8, message: &M) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + message.encoded_len());
    out.push(version);
    message.encode_raw(&mut out);
    out
}

/// A fixed-length byte field.
pub(crate) fn fixed<const N: usize>(
    bytes: &[u8],
    object: &'static str,
    field: &'static str,
) -> Result<[u8; N], DecodeError> {
    bytes.try_into().map_err(|_| DecodeError::InvalidLength {
        object,
        field,
        expected: N,
        found: bytes.len(),
    })
}

/// An Ed25519 identity key field.
pub(crate) fn identity_key(
    bytes: &[u8],
    object: &'static str,
    field: &'static str,
) -> Result<IdentityKey, DecodeError> {
    let raw = fixed::<KEY_LEN>(bytes, object, field)?;
    IdentityKey::from_bytes(&raw).ok_or(DecodeError::InvalidIdentityKey { object, field })
}

/// An Ed25519 identity key field of persisted state: 32 bytes with a reduced y-coordinate,
/// decoded as a point only when first used in arithmetic ([`IdentityKey`]'s documentation).
pub(crate) fn stored_identity_key(
    bytes: &[u8],
    object: &'static str,
    field: &'static str,
) -> Result<IdentityKey, DecodeError> {
    let raw = fixed::<KEY_LEN>(bytes, object, field)?;
    IdentityKey::from_stored(&raw).ok_or(DecodeError::InvalidIdentityKey { object, field })
}

/// An X25519 public key field.
pub(crate) fn x25519_key(
    bytes: &[u8],
    object: &'static str,
    field: &'static str,
) -> Result<X25519PublicKey, DecodeError> {
    let raw = fixed::<KEY_LEN>(bytes, object, field)?;
    X25519PublicKey::from_bytes(raw).ok_or(DecodeError::NonCanonicalKey { object, field })
}

/// An ML-KEM-1024 public key field (validated with the FIPS 203 modulus check).
pub(crate) fn kem_public_key(
    bytes: &[u8],
    object: &'static str,
    field: &'static str,
) -> Result<crate::kem::KemPublicKey, DecodeError> {
    let raw = fixed::<{ crate::kem::KEM_PUBLIC_KEY_LEN }>(bytes, object, field)?;
    crate::kem::KemPublicKey::from_bytes(&raw).ok_or(DecodeError::InvalidValue {
        object,
        field,
        reason: "not a valid ML-KEM-1024 public key (coefficients not reduced mod q)",
    })
}

/// A required nested message.
pub(crate) fn required<T>(
    value: Option<T>,
    object: &'static str,
    field: &'static str,
) -> Result<T, DecodeError> {
    value.ok_or(DecodeError::MissingField { object, field })
}
