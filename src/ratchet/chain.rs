//! The keys of the Double Ratchet: the root key, chain keys and message keys.

use crate::aead::Cipher;
use crate::kdf;
use crate::keys::{SecretBytes, SharedSecret};

/// The root key RK. Each DH ratchet step mixes a DH output into it.
#[derive(Clone)]
pub(crate) struct RootKey(SecretBytes);

impl RootKey {
    pub(crate) fn new(bytes: SecretBytes) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0.0
    }

    /// KDF_RK: the next root key and a new chain key.
    pub(crate) fn advance(&self, dh_output: &SharedSecret) -> (RootKey, ChainKey) {
        let (root, chain) = kdf::root_step(&self.0.0, dh_output.as_bytes());
        (Self(root.into()), ChainKey(chain.into()))
    }
}

/// A sending or receiving chain key CK.
#[derive(Clone)]
pub(crate) struct ChainKey(SecretBytes);

impl ChainKey {
    pub(crate) fn new(bytes: SecretBytes) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0.0
    }

    /// KDF_CK: returns this step's message key and moves the chain forward; the old chain key
    /// is overwritten.
    pub(crate) fn next_message_key(&mut self) -> MessageKey {
        let (next, message_key) = kdf::chain_step(&self.0.0);
        self.0.0 = *next;
        MessageKey(message_key.into())
    }

    /// Moves the chain forward one step without deriving that step's message key (the same
    /// chain key [`next_message_key`](Self::next_message_key) leaves behind).
    pub(crate) fn skip_one(&mut self) {
        let next = kdf::next_chain_key(&self.0.0);
        self.0.0 = *next;
    }
}

/// A message key: the AES-256-GCM key of exactly one message. It is dropped (and zeroized)
/// as soon as that message is encrypted or decrypted.
#[derive(Clone)]
pub(crate) struct MessageKey(SecretBytes);

impl MessageKey {
    pub(crate) fn from_bytes(bytes: SecretBytes) -> Self {
        Self(bytes)
    }

    pub(crate) fn as_bytes(&self) -> &[u8; 32] {
        &self.0.0
    }

    pub(crate) fn cipher(&self) -> Cipher {
        Cipher::new(&self.0.0)
    }
}
