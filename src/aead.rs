//! The AES-256-GCM calls. Messages, sealed state, store rows, backups and attachment chunks
//! all go through [`Cipher`].
//!
//! Two implementations sit behind the one type, chosen at build time: RustCrypto's `aes-gcm`
//! (the default: pure Rust, `no_std`, builds for WebAssembly) and, with the `fast-aes`
//! feature, AWS-LC's assembly AES-GCM (`aws-lc-rs`), chosen over `ring` by measurement
//! (docs/BENCHMARKS.md, "AES-GCM backends"). Both produce the same bytes (the tests seal with one and
//! open with the other, and run the Wycheproof vectors through each). They differ only in what
//! a failed open leaves in the output buffer, and in both it holds no plaintext: the
//! default checks the tag before decrypting and leaves the buffer as it was, AWS-LC decrypts
//! and authenticates in one pass, and the buffer is zeroed.

/// AES-256-GCM key length.
pub(crate) const KEY_LEN: usize = 32;
/// AES-256-GCM nonce length.
pub(crate) const NONCE_LEN: usize = 12;
/// AES-256-GCM tag length.
pub(crate) const TAG_LEN: usize = 16;

/// The tag did not verify (or the input exceeds what GCM can process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AeadError;

/// The build's AES-256-GCM implementation.
#[cfg(feature = "fast-aes")]
pub(crate) use aws_lc::Cipher;
/// The build's AES-256-GCM implementation.
#[cfg(not(feature = "fast-aes"))]
pub(crate) use rust_crypto::Cipher;

/// RustCrypto's `aes-gcm`: the default backend, compiled with `fast-aes` only for the tests
/// that compare the two.
#[cfg(any(not(feature = "fast-aes"), test))]
pub(crate) mod rust_crypto {
    use aes_gcm::aead::inout::InOutBuf;
    use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};

    use super::{AeadError, KEY_LEN, NONCE_LEN, TAG_LEN};

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

        /// Encrypts `plaintext` into `out` (of the same length) and returns the tag. Reading
        /// from one buffer and writing to another saves copying the plaintext first.
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

        /// Verifies `tag` and decrypts `ciphertext` into `out` (of the same length). The tag
        /// is verified before anything is decrypted: on failure `out` is left as it was.
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

        /// Verifies `tag` and decrypts `buf` in place. On failure `buf` holds no plaintext:
        /// it is left as the ciphertext it was.
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
}

/// AWS-LC's assembly AES-256-GCM through `aws-lc-rs` (the `fast-aes` feature).
///
/// Key material: we keep no copy of the key. The expanded key lives in an AWS-LC
/// `EVP_AEAD_CTX` that `aws-lc-rs` frees on drop, and AWS-LC's `OPENSSL_free` wipes every
/// allocation it frees (`OPENSSL_cleanse`, aws-lc crypto/mem.c).
#[cfg(feature = "fast-aes")]
pub(crate) mod aws_lc {
    use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
    use zeroize::Zeroize;

    use super::{AeadError, KEY_LEN, NONCE_LEN, TAG_LEN};

    /// A keyed AES-256-GCM instance (AWS-LC); its key schedule is wiped when dropped.
    pub(crate) struct Cipher(Option<LessSafeKey>);

    impl Cipher {
        pub(crate) fn new(key: &[u8; KEY_LEN]) -> Self {
            // AWS-LC refuses a key of the wrong length, which the type rules out, or fails to
            // allocate; then every operation fails with `AeadError` instead of panicking.
            Self(
                UnboundKey::new(&AES_256_GCM, key)
                    .ok()
                    .map(LessSafeKey::new),
            )
        }

        fn key(&self) -> Result<&LessSafeKey, AeadError> {
            self.0.as_ref().ok_or(AeadError)
        }

        /// Encrypts `buf` in place and returns the tag. On failure (an input over GCM's
        /// limit) `buf` is zeroed.
        pub(crate) fn seal_in_place(
            &self,
            nonce: &[u8; NONCE_LEN],
            associated_data: &[u8],
            buf: &mut [u8],
        ) -> Result<[u8; TAG_LEN], AeadError> {
            self.key()
                .and_then(|key| {
                    key.seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(*nonce),
                        Aad::from(associated_data),
                        buf,
                    )
                    .map_err(|_| AeadError)
                })
                .and_then(|tag| tag.as_ref().try_into().map_err(|_| AeadError))
                .inspect_err(|_| buf.zeroize())
        }

        /// Encrypts `plaintext` into `out` (of the same length) and returns the tag, in one
        /// pass: AWS-LC reads the plaintext and writes the ciphertext (no copy of the
        /// plaintext is made first). On failure `out` is zeroed (or, for a length mismatch,
        /// left as it was).
        pub(crate) fn seal_into(
            &self,
            nonce: &[u8; NONCE_LEN],
            associated_data: &[u8],
            plaintext: &[u8],
            out: &mut [u8],
        ) -> Result<[u8; TAG_LEN], AeadError> {
            if plaintext.len() != out.len() {
                return Err(AeadError);
            }
            let mut tag = [0u8; TAG_LEN];
            self.key()
                .and_then(|key| {
                    key.seal_out_of_place_scatter(
                        Nonce::assume_unique_for_key(*nonce),
                        Aad::from(associated_data),
                        plaintext,
                        out,
                        &[],
                        &mut tag,
                    )
                    .map_err(|_| AeadError)
                })
                .map(|()| tag)
                .inspect_err(|_| out.zeroize())
        }

        /// Verifies `tag` and decrypts `ciphertext` into `out` (of the same length). On
        /// failure `out` holds no plaintext: it is zeroed (or, for a length mismatch, left as
        /// it was).
        pub(crate) fn open_into(
            &self,
            nonce: &[u8; NONCE_LEN],
            associated_data: &[u8],
            ciphertext: &[u8],
            tag: &[u8; TAG_LEN],
            out: &mut [u8],
        ) -> Result<(), AeadError> {
            if ciphertext.len() != out.len() {
                return Err(AeadError);
            }
            self.key()
                .and_then(|key| {
                    key.open_separate_gather(
                        Nonce::assume_unique_for_key(*nonce),
                        Aad::from(associated_data),
                        ciphertext,
                        tag,
                        out,
                    )
                    .map_err(|_| AeadError)
                })
                // AWS-LC decrypts while it authenticates: a failure may leave plaintext.
                .inspect_err(|_| out.zeroize())
        }

        /// Verifies `tag` and decrypts `buf` in place. On failure `buf` holds no plaintext:
        /// AWS-LC decrypts while it authenticates, so `buf` is zeroed.
        pub(crate) fn open_in_place(
            &self,
            nonce: &[u8; NONCE_LEN],
            associated_data: &[u8],
            buf: &mut [u8],
            tag: &[u8; TAG_LEN],
        ) -> Result<(), AeadError> {
            self.key()
                .and_then(|key| {
                    key.open_in_place_separate_tag(
                        Nonce::assume_unique_for_key(*nonce),
                        Aad::from(associated_data),
                        tag,
                        buf,
                    )
                    .map(|_| ())
                    .map_err(|_| AeadError)
                })
                .inspect_err(|_| buf.zeroize())
        }
    }
}

/// Splits `ciphertext || tag` into its parts.
pub(crate) fn split_tag(data: &[u8]) -> Option<(&[u8], &[u8; TAG_LEN])> {
    let split = data.len().checked_sub(TAG_LEN)?;
    let (ciphertext, tag) = data.split_at(split);
    Some((ciphertext, tag.try_into().ok()?))
}

#[cfg(all(test, feature = "fast-aes"))]
mod backends_tests;
