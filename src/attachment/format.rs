//! The sealed-file format: header, key commitment, STREAM nonces and length arithmetic.
//!
//! ```text
//! sealed   = header || commitment || chunk_0 || ... || chunk_{n-1} || tree
//! header   = magic "RBXA" (4) || version 0x02 (1) || log2(chunk size) (1) || salt (32)
//! commitment = HKDF-SHA256(salt, file key, "ratchetbox v1 attachment key commitment" || header)
//! payload key = HKDF-SHA256(salt, file key, "ratchetbox v1 attachment payload key" || header)
//! payload  = plaintext || zeros, of length padded = PADME(max(plaintext length, 256))
//! chunk_i  = AES-256-GCM(payload key, nonce_i, ad = "", payload[i*C .. min((i+1)*C, padded)])
//!            (ciphertext || 16-byte tag)
//! nonce_i  = i as 11-byte big-endian || (0x01 if i = n-1 else 0x00)
//! tree     = the BLAKE3 hash tree over the sealed chunks (`tree.rs`), whose root, bound
//!            to header and commitment, is in the pointer
//! ```
//!
//! The nonce is the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár ("Online
//! Authenticated-Encryption and its Nonce-Reuse Misuse-Resistance", CRYPTO 2015) with the
//! exact layout of age (C2SP age specification, "Payload": 11-byte big-endian counter ||
//! last-chunk flag); Tink's AES-GCM-HKDF streaming AEAD uses the same idea with a 4-byte
//! segment counter. A chunk opens only at its own position, and only the final chunk opens
//! with the flag set, so chunks cannot be reordered, dropped, duplicated or cut off.
//!
//! Splicing chunks between files fails because the payload key is unique to each file: it
//! derives from a fresh file key, a fresh 32-byte salt and every header byte. The chunks
//! therefore need no associated data. The commitment is there because AES-GCM does not
//! commit to its key (Albertini et al., "How to Abuse and Fix Authenticated Encryption
//! Without Key Commitment", USENIX Security 2022). Without it, one ciphertext could be made to
//! open under two keys.

use subtle::ConstantTimeEq;

use crate::aead::{Cipher, NONCE_LEN, TAG_LEN};
use crate::error::AttachmentError;
use crate::kdf;
use crate::padding;

use super::pointer::{AttachmentMetadata, AttachmentPointer, FileKey};
use super::tree;

/// The first four bytes of every sealed attachment.
pub const MAGIC: [u8; 4] = *b"RBXA";
/// The format version this build writes and reads.
pub const FORMAT_VERSION: u8 = 2;
/// Length of the header: magic, version, chunk-size exponent and salt.
pub const HEADER_LEN: usize = 4 + 1 + 1 + SALT_LEN;
/// Length of the key commitment that follows the header.
pub const COMMITMENT_LEN: usize = 32;
/// Length of header and commitment together: the bytes before the first chunk.
pub const PREFIX_LEN: usize = HEADER_LEN + COMMITMENT_LEN;
/// Length of the AES-256-GCM tag that ends every chunk.
pub const CHUNK_TAG_LEN: usize = TAG_LEN;
/// Every payload is padded to at least this many bytes, so small files all look alike.
pub const MIN_PADDED_LEN: u64 = 256;
/// The largest plaintext the format accepts: 2^50 bytes (1 PiB).
pub const MAX_PLAINTEXT_LEN: u64 = 1 << 50;

/// Length of the random salt in the header.
pub(crate) const SALT_LEN: usize = 32;

/// The plaintext size of a chunk: a power of two from 1 KiB to 1 MiB, 64 KiB by default.
///
/// The sealer chooses it and writes its base-2 logarithm into the header; an opener rejects
/// any other value before allocating a chunk buffer, so a hostile header cannot make it
/// allocate more than 1 MiB + 16 bytes per buffer.
///
/// ```
/// use ratchetbox::attachment::ChunkSize;
///
/// assert_eq!(ChunkSize::DEFAULT.bytes(), 65_536);
/// assert_eq!(ChunkSize::from_log2(12).map(ChunkSize::bytes), Some(4096));
/// assert!(ChunkSize::from_log2(21).is_none());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkSize(u8);

impl ChunkSize {
    /// Smallest allowed exponent: 1 KiB chunks.
    pub const MIN_LOG2: u8 = 10;
    /// Largest allowed exponent: 1 MiB chunks.
    pub const MAX_LOG2: u8 = 20;
    /// 64 KiB, as in age and Tink.
    pub const DEFAULT: Self = Self(16);

    /// The chunk size `2^log2`, if `log2` is between [`MIN_LOG2`](Self::MIN_LOG2) and
    /// [`MAX_LOG2`](Self::MAX_LOG2).
    pub const fn from_log2(log2: u8) -> Option<Self> {
        if log2 >= Self::MIN_LOG2 && log2 <= Self::MAX_LOG2 {
            Some(Self(log2))
        } else {
            None
        }
    }

    /// The base-2 logarithm of the chunk size, as stored in the header.
    pub const fn log2(self) -> u8 {
        self.0
    }

    /// The chunk size in bytes.
    pub const fn bytes(self) -> usize {
        1usize << self.0
    }

    pub(crate) const fn bytes_u64(self) -> u64 {
        1u64 << self.0
    }
}

impl Default for ChunkSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// A parsed header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) chunk_size: ChunkSize,
    pub(crate) salt: [u8; SALT_LEN],
}

impl Header {
    pub(crate) fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..4].copy_from_slice(&MAGIC);
        out[4] = FORMAT_VERSION;
        out[5] = self.chunk_size.log2();
        out[6..].copy_from_slice(&self.salt);
        out
    }

    /// Parses and validates a header: magic, then version, then chunk size.
    pub(crate) fn parse(bytes: &[u8; HEADER_LEN]) -> Result<Self, AttachmentError> {
        // Constant indexes into a fixed-size array: always in bounds.
        if bytes[..4] != MAGIC {
            return Err(AttachmentError::MalformedHeader {
                reason: "it does not start with the magic bytes \"RBXA\"",
            });
        }
        if bytes[4] != FORMAT_VERSION {
            return Err(AttachmentError::UnsupportedVersion {
                found: u32::from(bytes[4]),
            });
        }
        let chunk_size =
            ChunkSize::from_log2(bytes[5]).ok_or(AttachmentError::MalformedHeader {
                reason: "the chunk size is not a power of two from 1 KiB to 1 MiB",
            })?;
        let mut out_salt = [0u8; SALT_LEN];
        out_salt.copy_from_slice(&bytes[6..]);
        Ok(Self {
            chunk_size,
            salt: out_salt,
        })
    }
}

/// The AES-256-GCM instance of one file, keyed once with the payload key (one key schedule
/// per file, not per chunk). The key schedule zeroizes on drop.
pub(crate) struct PayloadCipher(Cipher);

/// The STREAM nonce of chunk `index`: 11-byte big-endian counter || last-chunk flag.
pub(crate) fn chunk_nonce(index: u64, last: bool) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    // The counter is 88 bits; its top 24 bits stay zero because index is a u64.
    nonce[3..11].copy_from_slice(&index.to_be_bytes());
    nonce[11] = u8::from(last);
    nonce
}

impl PayloadCipher {
    /// Derives the payload key and the commitment of a file.
    pub(crate) fn derive(file_key: &FileKey, header: &Header) -> (Self, [u8; COMMITMENT_LEN]) {
        let header_bytes = header.to_bytes();
        let (payload_key, commitment) =
            kdf::attachment_keys(file_key.as_bytes(), &header.salt, &header_bytes);
        (Self(Cipher::new(&payload_key)), commitment)
    }

    /// Parses the prefix (header and commitment), checks the commitment in constant time and
    /// returns the cipher and the header.
    pub(crate) fn open_prefix(
        file_key: &FileKey,
        prefix: &[u8; PREFIX_LEN],
    ) -> Result<(Self, Header), AttachmentError> {
        let (header_bytes, commitment) = prefix.split_at(HEADER_LEN);
        let header_bytes: &[u8; HEADER_LEN] =
            header_bytes
                .try_into()
                .map_err(|_| AttachmentError::MalformedHeader {
                    reason: "the header is incomplete",
                })?;
        let header = Header::parse(header_bytes)?;
        let (cipher, expected) = Self::derive(file_key, &header);
        if bool::from(expected.ct_eq(commitment)) {
            Ok((cipher, header))
        } else {
            Err(AttachmentError::CommitmentMismatch)
        }
    }

    /// Encrypts one chunk's payload in place and returns its tag.
    pub(crate) fn seal_chunk(&self, index: u64, last: bool, buf: &mut [u8]) -> [u8; TAG_LEN] {
        // A chunk is at most 1 MiB, far below the 2^36 - 32 bytes GCM can take, so this
        // cannot fail; a zero tag would not verify anyway.
        self.0
            .seal_in_place(&chunk_nonce(index, last), &[], buf)
            .unwrap_or([0u8; TAG_LEN])
    }

    /// Encrypts one chunk's payload from `payload` into `out` (of the same length) and
    /// returns its tag: no copy of the plaintext first.
    pub(crate) fn seal_chunk_into(
        &self,
        index: u64,
        last: bool,
        payload: &[u8],
        out: &mut [u8],
    ) -> [u8; TAG_LEN] {
        // Equal lengths and at most 1 MiB: cannot fail; a zero tag would not verify anyway.
        self.0
            .seal_into(&chunk_nonce(index, last), &[], payload, out)
            .unwrap_or([0u8; TAG_LEN])
    }

    /// Verifies one chunk and decrypts it from `ciphertext` into `out` (of the same
    /// length). On failure `out` holds no plaintext: it is left as it was (default backend)
    /// or zeroed (`fast-aes`).
    pub(crate) fn open_chunk_into(
        &self,
        index: u64,
        last: bool,
        ciphertext: &[u8],
        tag: &[u8; TAG_LEN],
        out: &mut [u8],
    ) -> Result<(), AttachmentError> {
        self.0
            .open_into(&chunk_nonce(index, last), &[], ciphertext, tag, out)
            .map_err(|_| AttachmentError::ChunkAuthentication { index })
    }

    /// Verifies and decrypts one chunk in place. On failure `buf` holds no plaintext: the
    /// ciphertext (default backend) or zeros (`fast-aes`).
    pub(crate) fn open_chunk(
        &self,
        index: u64,
        last: bool,
        buf: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), AttachmentError> {
        self.0
            .open_in_place(&chunk_nonce(index, last), &[], buf, tag)
            .map_err(|_| AttachmentError::ChunkAuthentication { index })
    }
}

/// Sizes and offsets of a sealed attachment, all derived from the plaintext length and the
/// chunk size with checked arithmetic.
///
/// ```
/// use ratchetbox::attachment::{ChunkSize, Layout, PREFIX_LEN};
///
/// let layout = Layout::new(100_000, ChunkSize::DEFAULT)?;
/// assert_eq!(layout.padded_len(), 100_352); // PADME: E = 16, S = 5, multiple of 2^11
/// assert_eq!(layout.chunk_count(), 2);
/// // Two tags, then the hash tree: two leaves and their root, 32 bytes each.
/// assert_eq!(layout.tree_len(), 3 * 32);
/// assert_eq!(layout.sealed_len(), PREFIX_LEN as u64 + 100_352 + 2 * 16 + 3 * 32);
/// # Ok::<(), ratchetbox::AttachmentError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Layout {
    plaintext_len: u64,
    padded_len: u64,
    chunk_size: ChunkSize,
    chunk_count: u64,
    tree_offset: u64,
    sealed_len: u64,
}

impl Layout {
    /// The layout of a `plaintext_len`-byte attachment sealed with `chunk_size` chunks.
    pub fn new(plaintext_len: u64, chunk_size: ChunkSize) -> Result<Self, AttachmentError> {
        let too_large = AttachmentError::TooLarge { len: plaintext_len };
        if plaintext_len > MAX_PLAINTEXT_LEN {
            return Err(too_large);
        }
        let padded_len = padding::padded_len(plaintext_len, MIN_PADDED_LEN).ok_or(too_large)?;
        // padded_len >= MIN_PADDED_LEN > 0, so there is at least one chunk and the last one
        // is never empty.
        let chunk_count = (padded_len - 1) / chunk_size.bytes_u64() + 1;
        let tree_offset = chunk_count
            .checked_mul(CHUNK_TAG_LEN as u64)
            .and_then(|tags| tags.checked_add(padded_len))
            .and_then(|n| n.checked_add(PREFIX_LEN as u64))
            .ok_or(AttachmentError::TooLarge { len: plaintext_len })?;
        let sealed_len = tree::stored_nodes(chunk_count)
            .checked_mul(tree::HASH_LEN as u64)
            .and_then(|tree_len| tree_len.checked_add(tree_offset))
            .ok_or(AttachmentError::TooLarge { len: plaintext_len })?;
        Ok(Self {
            plaintext_len,
            padded_len,
            chunk_size,
            chunk_count,
            tree_offset,
            sealed_len,
        })
    }

    /// Length of the plaintext.
    pub const fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Length of plaintext plus padding.
    pub const fn padded_len(&self) -> u64 {
        self.padded_len
    }

    /// The chunk size.
    pub const fn chunk_size(&self) -> ChunkSize {
        self.chunk_size
    }

    /// Number of chunks (at least one).
    pub const fn chunk_count(&self) -> u64 {
        self.chunk_count
    }

    /// Length of the whole sealed file.
    pub const fn sealed_len(&self) -> u64 {
        self.sealed_len
    }

    /// Offset of the stored hash tree: the end of the last chunk.
    pub const fn tree_offset(&self) -> u64 {
        self.tree_offset
    }

    /// Length of the stored hash tree: 32 bytes for each node of every level.
    pub const fn tree_len(&self) -> u64 {
        self.sealed_len - self.tree_offset
    }

    /// Offset in the sealed file of node `index` of tree level `level` (0: the leaves).
    pub(crate) fn node_offset(&self, level: u32, index: u64) -> u64 {
        self.tree_offset
            + (tree::level_start(self.chunk_count, level) + index) * tree::HASH_LEN as u64
    }

    /// True for the final chunk, the one sealed with the last-chunk flag.
    pub(crate) const fn is_last(&self, index: u64) -> bool {
        index + 1 == self.chunk_count
    }

    /// Offset of chunk `index` in the sealed file (for `index < chunk_count`).
    pub(crate) const fn chunk_offset(&self, index: u64) -> u64 {
        PREFIX_LEN as u64 + index * (self.chunk_size.bytes_u64() + CHUNK_TAG_LEN as u64)
    }

    /// Offset of chunk `index`'s payload in the padded plaintext.
    pub(crate) const fn payload_offset(&self, index: u64) -> u64 {
        index * self.chunk_size.bytes_u64()
    }

    /// Payload (plaintext and padding) bytes in chunk `index`: the chunk size, except for
    /// the final chunk, which holds 1 to chunk size bytes. 0 past the end.
    pub(crate) fn chunk_payload_len(&self, index: u64) -> usize {
        self.bytes_in_chunk(self.padded_len, index)
    }

    /// Plaintext bytes in chunk `index`; the rest of its payload is padding.
    pub(crate) fn chunk_plaintext_len(&self, index: u64) -> usize {
        self.bytes_in_chunk(self.plaintext_len, index)
    }

    /// How many of the first `total` payload bytes fall in chunk `index`.
    fn bytes_in_chunk(&self, total: u64, index: u64) -> usize {
        let len = total
            .saturating_sub(self.payload_offset(index))
            .min(self.chunk_size.bytes_u64());
        // len <= chunk size <= 1 MiB fits in usize.
        usize::try_from(len).unwrap_or(0)
    }

    /// Sealed bytes of chunk `index`: payload and tag.
    pub(crate) fn chunk_sealed_len(&self, index: u64) -> usize {
        self.chunk_payload_len(index) + CHUNK_TAG_LEN
    }
}

/// The sealing state for one file: a fresh file key and salt, the derived cipher and the
/// prefix to write first.
pub(crate) struct SealKeys {
    pub(crate) file_key: FileKey,
    pub(crate) cipher: PayloadCipher,
    pub(crate) prefix: [u8; PREFIX_LEN],
}

impl SealKeys {
    /// Draws the file key (first 32 bytes from `rng`), then the salt (next 32 bytes).
    pub(crate) fn generate<R: rand_core::CryptoRng + ?Sized>(
        rng: &mut R,
        chunk_size: ChunkSize,
    ) -> Self {
        let file_key = FileKey::generate(rng);
        // The salt is public (it is in the header): it needs no zeroizing.
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let header = Header { chunk_size, salt };
        let (cipher, commitment) = PayloadCipher::derive(&file_key, &header);
        let mut prefix = [0u8; PREFIX_LEN];
        prefix[..HEADER_LEN].copy_from_slice(&header.to_bytes());
        prefix[HEADER_LEN..].copy_from_slice(&commitment);
        Self {
            file_key,
            cipher,
            prefix,
        }
    }

    /// The pointer to a file of `plaintext_len` bytes sealed with these keys, whose stored
    /// tree has the root `tree_root`.
    pub(crate) fn into_pointer(
        self,
        plaintext_len: u64,
        tree_root: &tree::Hash,
        metadata: AttachmentMetadata,
    ) -> AttachmentPointer {
        let root = tree::pointer_root(&self.prefix, tree_root);
        AttachmentPointer::new(self.file_key, plaintext_len, root, metadata)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonce_layout_is_counter_then_flag() {
        let n = chunk_nonce(0x0102_0304_0506_0708, true);
        assert_eq!(n, [0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 1]);
        assert_eq!(chunk_nonce(0, false), [0; 12]);
    }

    #[test]
    fn layout_arithmetic() {
        let small = ChunkSize::from_log2(10).expect("1 KiB is allowed");
        assert_eq!(small.bytes_u64(), 1024);
        // Empty plaintext: one chunk of 256 zero bytes.
        let l = Layout::new(0, small).expect("valid layout");
        assert_eq!((l.padded_len(), l.chunk_count()), (256, 1));
        assert_eq!(l.sealed_len(), 70 + 256 + 16 + 32);
        assert_eq!(l.chunk_payload_len(0), 256);
        assert_eq!(l.chunk_plaintext_len(0), 0);
        // 3000 bytes: PADME(3000) = 3072 (E = 11, S = 4, z = 7), three 1 KiB chunks.
        let l = Layout::new(3000, small).expect("valid layout");
        assert_eq!((l.padded_len(), l.chunk_count()), (3072, 3));
        assert_eq!(l.chunk_payload_len(2), 1024);
        assert_eq!(l.chunk_plaintext_len(2), 3000 - 2048);
        assert_eq!(l.chunk_offset(2), 70 + 2 * 1040);
        assert!(l.is_last(2) && !l.is_last(1));
        // 3100 bytes: PADME = 3200, the last chunk holds 128 bytes.
        let l = Layout::new(3100, small).expect("valid layout");
        assert_eq!((l.padded_len(), l.chunk_count()), (3200, 4));
        assert_eq!(l.chunk_payload_len(3), 128);
        assert_eq!(l.chunk_plaintext_len(3), 28);
        assert_eq!(l.chunk_payload_len(4), 0);
    }

    #[test]
    fn sizes_past_the_limit_are_rejected() {
        assert!(Layout::new(MAX_PLAINTEXT_LEN, ChunkSize::DEFAULT).is_ok());
        assert!(matches!(
            Layout::new(MAX_PLAINTEXT_LEN + 1, ChunkSize::DEFAULT),
            Err(AttachmentError::TooLarge { .. })
        ));
        assert!(matches!(
            Layout::new(u64::MAX, ChunkSize::DEFAULT),
            Err(AttachmentError::TooLarge { .. })
        ));
    }

    #[test]
    fn header_validation_order() {
        let header = Header {
            chunk_size: ChunkSize::DEFAULT,
            salt: [9; 32],
        };
        let good = header.to_bytes();
        assert_eq!(Header::parse(&good).ok(), Some(header));
        let mut bad = good;
        bad[0] ^= 1;
        assert!(matches!(
            Header::parse(&bad),
            Err(AttachmentError::MalformedHeader { .. })
        ));
        let mut bad = good;
        bad[4] = 1;
        assert!(matches!(
            Header::parse(&bad),
            Err(AttachmentError::UnsupportedVersion { found: 1 })
        ));
        for log2 in [0u8, 9, 21, 255] {
            let mut bad = good;
            bad[5] = log2;
            assert!(matches!(
                Header::parse(&bad),
                Err(AttachmentError::MalformedHeader { .. })
            ));
        }
    }
}
