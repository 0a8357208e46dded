//! The AES-256-GCM calls. Messages, sealed state and attachment chunks all go through here.

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};

/// AES-256-GCM key length.
pub(crate) const KEY_LEN: usize = 32;
/// AES-256-GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;
/// AES-256-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;

/// The tag did not verify (or the input exceeds what GCM can process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AeadError;

/// A keyed AES-256-GCM instance; its key schedule is zeroized on drop.
pub(crate) struct Cipher(Aes256Gcm);

impl Cipher {
    pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
        Self(Aes256Gcm::new(key.into()))
    }

    /// Encrypts `buf` in place and returns the tag.
    pub(crate) fn seal_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        associated_data: &[u8],
        buf: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        self.0
            .encrypt_inout_detached(nonce.into(), associated_data, InOutBuf::from(buf))
            .map(Into::into)
            .map_err(|_| AeadError)
    }

    /// Encrypts `plaintext` into `out` (of the same length) and returns the tag. Reading from
    /// one buffer and writing to another saves copying the plaintext first.
    pub(crate) fn seal_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        associated_data: &[u8],
        plaintext: &[u8],
        out: &mut [u8],
    ) -> Result<[u8; TAG_LEN], AeadError> {
        let buf = InOutBuf::new(plaintext, out).map_err(|_| AeadError)?;
        self.0
            .encrypt_inout_detached(nonce.into(), associated_data, buf)
            .map(Into::into)
            .map_err(|_| AeadError)
    }

    /// Verifies `tag` and decrypts `ciphertext` into `out` (of the same length). The tag is
    /// verified before anything is decrypted: on failure `out` is left as it was.
    pub(crate) fn open_into(
        &self,
        nonce: &[u8; NONCE_LEN],
        associated_data: &[u8],
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<(), AeadError> {
        let buf = InOutBuf::new(ciphertext, out).map_err(|_| AeadError)?;
        self.0
            .decrypt_inout_detached(nonce.into(), associated_data, buf, tag.into())
            .map_err(|_| AeadError)
    }

    /// Verifies `tag` and decrypts `buf` in place. On failure `buf` holds no plaintext: it is
    /// left as the ciphertext it was.
    pub(crate) fn open_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        associated_data: &[u8],
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AeadError> {
        self.0
            .decrypt_inout_detached(
                nonce.into(),
                associated_data,
                InOutBuf::from(buf),
                tag.into(),
            )
            .map_err(|_| AeadError)
    }
}

/// Splits `ciphertext || tag` into its parts.
pub(crate) fn split_tag(data: &[u8]) -> Option<(&[u8], &[u8; TAG_LEN])> {
    let split = data.len().checked_sub(TAG_LEN)?;
    let (ciphertext, tag) = data.split_at(split);
    Some((ciphertext, tag.try_into().ok()?))
}
