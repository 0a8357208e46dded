//! The group message wire object: `0x01 || GroupMessage` (docs/PROTOCOL.md 16.3).

use alloc::vec::Vec;

use crate::aead::TAG_LEN;
use crate::error::DecodeError;
use crate::keys::SIGNATURE_LEN;
use crate::wire::{self, generated};

use super::GroupId;

const OBJECT: &str = "group message";

/// The encoded signature field at the end of every canonical group message: its tag byte
/// (field 5, length-delimited: 0x2a), its length (0x40) and the 64 signature bytes.
const SIGNATURE_FIELD_LEN: usize = 2 + SIGNATURE_LEN;

/// A decoded group message: which group, sender key and iteration it claims, before any
/// signature check. Decoding checks only its form;
/// [`GroupReceiver::decrypt`](super::GroupReceiver::decrypt) checks the rest.
#[derive(Clone, PartialEq, Eq)]
pub struct GroupMessage {
    group_id: GroupId,
    key_id: u32,
    iteration: u32,
    ciphertext: Vec<u8>,
    signature: [u8; SIGNATURE_LEN],
    /// The whole wire object; its signed part is all but the last `SIGNATURE_FIELD_LEN` bytes.
    bytes: Vec<u8>,
}

impl GroupMessage {
    /// Decodes `0x01 || GroupMessage`, checking the version, the canonical encoding, the
    /// 32-byte group id, the 64-byte signature, a ciphertext at least as long as its tag and
    /// an iteration below 2^32 - 1.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto: generated::GroupMessage = wire::decode(bytes, OBJECT)?;
        let group_id = GroupId(wire::fixed::<32>(&proto.group_id, OBJECT, "group_id")?);
        let signature = wire::fixed::<SIGNATURE_LEN>(&proto.signature, OBJECT, "signature")?;
        if proto.ciphertext.len() < TAG_LEN {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "ciphertext",
                reason: "shorter than the 16-byte AES-GCM tag",
            });
        }
        if proto.iteration == u32::MAX {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "iteration",
                reason: "2^32 - 1 is never used",
            });
        }
        Ok(Self {
            group_id,
            key_id: proto.key_id,
            iteration: proto.iteration,
            ciphertext: proto.ciphertext,
            signature,
            bytes: bytes.to_vec(),
        })
    }

    /// The encoded wire object.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.bytes.clone()
    }

    /// The group the message claims to belong to (route it to that group's state).
    pub fn group_id(&self) -> &GroupId {
        &self.group_id
    }

    /// The id of the sender key that encrypted it.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The message's position in its sender key's chain.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    pub(crate) fn ciphertext(&self) -> &[u8] {
        &self.ciphertext
    }

    pub(crate) fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// What the signature covers (after the label): the wire object without its signature
    /// field, which canonical encoding puts last.
    pub(crate) fn signed_part(&self) -> &[u8] {
        &self.bytes[..self.bytes.len() - SIGNATURE_FIELD_LEN]
    }

    /// Encodes a message and signs it with `sign` (given the bytes to sign after the label).
    pub(crate) fn seal(
        group_id: &GroupId,
        key_id: u32,
        iteration: u32,
        ciphertext: Vec<u8>,
        sign: impl FnOnce(&[u8]) -> [u8; SIGNATURE_LEN],
    ) -> Self {
        let mut proto = generated::GroupMessage {
            group_id: group_id.0.to_vec(),
            key_id,
            iteration,
            ciphertext,
            signature: Vec::new(),
        };
        let unsigned = wire::encode(&proto);
        let signature = sign(&unsigned);
        proto.signature = signature.to_vec();
        let bytes = wire::encode(&proto);
        debug_assert_eq!(&bytes[..unsigned.len()], unsigned.as_slice());
        Self {
            group_id: *group_id,
            key_id,
            iteration,
            ciphertext: proto.ciphertext,
            signature,
            bytes,
        }
    }
}

impl core::fmt::Debug for GroupMessage {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupMessage")
            .field("group_id", &self.group_id)
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("ciphertext_len", &self.ciphertext.len())
            .finish_non_exhaustive()
    }
}
