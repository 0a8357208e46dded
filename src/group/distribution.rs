//! The distribution message: a sender key handed to another device, `0x01 ||
//! GroupDistribution` (docs/PROTOCOL.md 16.4). It is secret (it holds a chain key) and only
//! ever travels inside pairwise-encrypted content, which also authenticates its sender.

use alloc::vec::Vec;

use crate::error::DecodeError;
use crate::keys::{IdentityKey, SecretBytes};
use crate::wire::{self, generated};

use super::GroupId;

const OBJECT: &str = "group distribution";

/// A sender key as another device receives it: the group, the key id, the chain key at an
/// iteration and the public signing key. Its chain key is wiped on drop and never shown by
/// `Debug`.
#[derive(Clone)]
pub struct GroupDistribution {
    pub(crate) group_id: GroupId,
    pub(crate) key_id: u32,
    pub(crate) iteration: u32,
    pub(crate) chain_key: SecretBytes,
    pub(crate) signing_key: IdentityKey,
}

impl GroupDistribution {
    /// Decodes `0x01 || GroupDistribution`, checking the version, the canonical encoding,
    /// the field lengths, an iteration below 2^32 - 1 and the signing key (a canonical
    /// Ed25519 point of large order).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let proto: generated::GroupDistribution = wire::decode(bytes, OBJECT)?;
        let group_id = GroupId(wire::fixed::<32>(&proto.group_id, OBJECT, "group_id")?);
        let chain_key = SecretBytes(wire::fixed::<32>(&proto.chain_key, OBJECT, "chain_key")?);
        let signing_key = wire::identity_key(&proto.signing_key, OBJECT, "signing_key")?;
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
            chain_key,
            signing_key,
        })
    }

    /// Encodes `0x01 || GroupDistribution`. The bytes hold the chain key: send them only
    /// inside pairwise-encrypted content, and wipe them after.
    pub fn to_bytes(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let proto = generated::GroupDistribution {
            group_id: self.group_id.0.to_vec(),
            key_id: self.key_id,
            iteration: self.iteration,
            chain_key: self.chain_key.0.to_vec(),
            signing_key: self.signing_key.to_bytes().to_vec(),
        };
        zeroize::Zeroizing::new(wire::encode(&proto))
    }

    /// The group.
    pub fn group_id(&self) -> &GroupId {
        &self.group_id
    }

    /// The sender key's id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// The first iteration this distribution lets its receiver read.
    pub fn iteration(&self) -> u32 {
        self.iteration
    }

    /// The public key that signs this sender key's messages.
    pub fn signing_key(&self) -> &IdentityKey {
        &self.signing_key
    }
}

impl core::fmt::Debug for GroupDistribution {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GroupDistribution")
            .field("group_id", &self.group_id)
            .field("key_id", &self.key_id)
            .field("iteration", &self.iteration)
            .field("signing_key", &self.signing_key)
            .finish_non_exhaustive()
    }
}
