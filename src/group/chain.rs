//! The sender-key chain and the per-message keys (docs/PROTOCOL.md 16.2).
//!
//! The chain is the Double Ratchet's symmetric-key chain (section 6.2): from chain key
//! `CK_i`, the message-key seed is `HMAC(CK_i, 0x01)` and `CK_{i+1} = HMAC(CK_i, 0x02)`.
//! Each message's AES-256-GCM key and nonce are expanded from its seed with HKDF, bound to
//! the group id, the sender-key id and the iteration.

use alloc::vec;
use alloc::vec::Vec;

use zeroize::Zeroizing;

use crate::aead::{self, Cipher, TAG_LEN};
use crate::kdf;
use crate::keys::SecretBytes;

use super::GroupId;

/// A chain key and the iteration it belongs to.
#[derive(Clone)]
pub(crate) struct SenderChain {
    pub(crate) iteration: u32,
    pub(crate) key: SecretBytes,
}

impl SenderChain {
    /// The seed of the message at `self.iteration`; the chain moves one step forward.
    /// The caller has checked that `iteration < u32::MAX`.
    pub(crate) fn step(&mut self) -> SecretBytes {
        let (next, seed) = kdf::chain_step(&self.key.0);
        self.key = next.into();
        self.iteration += 1;
        seed.into()
    }

    /// Moves one step forward without deriving that step's seed.
    pub(crate) fn skip(&mut self) {
        self.key = kdf::next_chain_key(&self.key.0).into();
        self.iteration += 1;
    }
}

/// Encrypts `plaintext` under the message key of `seed`: ciphertext || tag.
pub(crate) fn seal(
    seed: &SecretBytes,
    group_id: &GroupId,
    key_id: u32,
    iteration: u32,
    plaintext: &[u8],
) -> Result<Vec<u8>, aead::AeadError> {
    let (key, nonce) = kdf::group_message_key(&seed.0, &group_id.0, key_id, iteration);
    let mut out = vec![0u8; plaintext.len() + TAG_LEN];
    let (body, tag_out) = out.split_at_mut(plaintext.len());
    let tag = Cipher::new(&key).seal_into(&nonce, &[], plaintext, body)?;
    tag_out.copy_from_slice(&tag);
    Ok(out)
}

/// Decrypts ciphertext || tag under the message key of `seed`.
pub(crate) fn open(
    seed: &SecretBytes,
    group_id: &GroupId,
    key_id: u32,
    iteration: u32,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, aead::AeadError> {
    let (body, tag) = aead::split_tag(ciphertext).ok_or(aead::AeadError)?;
    let (key, nonce) = kdf::group_message_key(&seed.0, &group_id.0, key_id, iteration);
    let mut out = Zeroizing::new(vec![0u8; body.len()]);
    Cipher::new(&key).open_into(&nonce, &[], body, tag, &mut out)?;
    Ok(out)
}
