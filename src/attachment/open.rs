//! Opening: a whole sealed file in memory, or a stream chunk by chunk (progressive).

use alloc::vec::Vec;

use sha2::{Digest, Sha256};
use zeroize::Zeroize;

use crate::aead::split_tag;
use crate::error::AttachmentError;
use crate::padding;

use super::format::{Layout, PREFIX_LEN, PayloadCipher, check_digest, finish_digest};
use super::pointer::AttachmentPointer;

/// Verifies the prefix (header and commitment) of a sealed file against the pointer and
/// returns the file's cipher and layout. Nothing is decrypted.
pub(crate) fn open_prefix(
    pointer: &AttachmentPointer,
    prefix: &[u8; PREFIX_LEN],
) -> Result<(PayloadCipher, Layout), AttachmentError> {
    let (cipher, header) = PayloadCipher::open_prefix(pointer.file_key(), prefix)?;
    let layout = Layout::new(pointer.plaintext_len(), header.chunk_size)?;
    Ok((cipher, layout))
}

/// Verifies the prefix at the start of `sealed` (more bytes are ignored) against the pointer,
/// then the sealed file's total length, `sealed_len`, against the one the pointer implies.
/// Nothing is decrypted.
pub(crate) fn open_prefix_sized(
    pointer: &AttachmentPointer,
    sealed: &[u8],
    sealed_len: u64,
) -> Result<(PayloadCipher, Layout), AttachmentError> {
    let (cipher, layout) = open_prefix(pointer, prefix_of(sealed)?)?;
    if sealed_len != layout.sealed_len() {
        return Err(AttachmentError::LengthMismatch {
            expected: layout.sealed_len(),
            found: sealed_len,
        });
    }
    Ok((cipher, layout))
}

/// The first [`PREFIX_LEN`] bytes, or `Truncated` if there are fewer.
fn prefix_of(sealed: &[u8]) -> Result<&[u8; PREFIX_LEN], AttachmentError> {
    sealed
        .get(..PREFIX_LEN)
        .and_then(|p| p.try_into().ok())
        .ok_or(AttachmentError::Truncated {
            missing: (PREFIX_LEN - sealed.len().min(PREFIX_LEN)) as u64,
        })
}

/// Opens one sealed chunk (`ciphertext || tag`, in place) at position `index` and checks its
/// padding. Returns the number of plaintext bytes at the start of `chunk`.
///
/// On failure `chunk` holds no plaintext: an authentication failure leaves the ciphertext
/// (the tag is checked before anything is decrypted), and a padding failure, found after
/// decryption, zeroizes the whole chunk before returning.
pub(crate) fn open_chunk_in_place(
    cipher: &PayloadCipher,
    layout: &Layout,
    index: u64,
    chunk: &mut [u8],
) -> Result<usize, AttachmentError> {
    let (payload, tag) = chunk
        .split_last_chunk_mut::<{ crate::aead::TAG_LEN }>()
        .ok_or(AttachmentError::ChunkAuthentication { index })?;
    cipher.open_chunk(index, layout.is_last(index), payload, tag)?;
    let plaintext_len = layout.chunk_plaintext_len(index);
    let padding_bytes = payload.get(plaintext_len..).unwrap_or_default();
    if !padding::is_zero(padding_bytes) {
        // The chunk authenticated but its plaintext is not released: wipe it.
        chunk.zeroize();
        return Err(AttachmentError::BadPadding { index });
    }
    Ok(plaintext_len)
}

/// Opens a whole sealed file held in memory.
///
/// Checks, in this order: the header (magic, version, chunk size), the key commitment, the
/// exact sealed length implied by the pointer (before decrypting anything), every chunk with
/// its position and last-chunk flag, the padding, and finally the SHA-256 digest.
///
/// ```
/// use ratchetbox::AttachmentError;
/// use ratchetbox::attachment::{self, AttachmentMetadata};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let (pointer, mut sealed) = attachment::seal(&mut rng, b"voice note", AttachmentMetadata::default())?;
/// assert_eq!(attachment::open(&pointer, &sealed)?, b"voice note");
///
/// // A flipped bit in the first chunk is caught by its tag.
/// sealed[attachment::PREFIX_LEN] ^= 1;
/// assert!(matches!(
///     attachment::open(&pointer, &sealed),
///     Err(AttachmentError::ChunkAuthentication { index: 0 })
/// ));
/// # Ok::<(), AttachmentError>(())
/// ```
pub fn open(pointer: &AttachmentPointer, sealed: &[u8]) -> Result<Vec<u8>, AttachmentError> {
    let (cipher, layout) = open_prefix_sized(pointer, sealed, sealed.len() as u64)?;
    // The plaintext is shorter than the sealed input, which is in memory already.
    let plaintext_len =
        usize::try_from(layout.plaintext_len()).map_err(|_| AttachmentError::TooLarge {
            len: layout.plaintext_len(),
        })?;
    let mut out = Vec::with_capacity(plaintext_len);
    let mut scratch = Vec::new();
    let mut hasher = Sha256::new();
    // The length check above ensured that `sealed` holds the prefix.
    let (prefix, mut rest) = sealed.split_at_checked(PREFIX_LEN).unwrap_or_default();
    hasher.update(prefix);
    for index in 0..layout.chunk_count() {
        let sealed_chunk_len = layout.chunk_sealed_len(index);
        let (chunk, tail) = rest
            .split_at_checked(sealed_chunk_len)
            .ok_or(AttachmentError::Truncated { missing: 0 })?;
        rest = tail;
        hasher.update(chunk);
        if layout.chunk_plaintext_len(index) == layout.chunk_payload_len(index) {
            // All plaintext: decrypt straight into the output.
            let (ciphertext, tag) =
                split_tag(chunk).ok_or(AttachmentError::ChunkAuthentication { index })?;
            let start = out.len();
            out.extend_from_slice(ciphertext);
            let target = out.get_mut(start..).unwrap_or_default();
            cipher.open_chunk(index, layout.is_last(index), target, tag)?;
        } else {
            // Holds padding: decrypt aside, check the padding, keep the plaintext.
            scratch.clear();
            scratch.extend_from_slice(chunk);
            let n = open_chunk_in_place(&cipher, &layout, index, &mut scratch)?;
            out.extend_from_slice(scratch.get(..n).unwrap_or_default());
        }
    }
    check_digest(&finish_digest(hasher), pointer.digest())?;
    Ok(out)
}

#[cfg(feature = "parallel")]
pub(crate) use self::streaming::read_prefix;
#[cfg(feature = "std")]
pub use self::streaming::{StreamOpener, open_stream};

#[cfg(feature = "std")]
mod streaming {
    use alloc::vec;
    use std::io::{Read, Write};

    use super::*;
    use crate::attachment::format::CHUNK_TAG_LEN;
    use crate::attachment::seal::read_full;

    /// Where a [`StreamOpener`] is.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum State {
        /// The next chunk to read.
        Reading(u64),
        /// Everything verified.
        Done,
        /// An error was returned; the opener releases nothing more.
        Failed,
    }

    /// Reads the first [`PREFIX_LEN`] bytes of a stream, or `Truncated` if it ends before.
    pub(crate) fn read_prefix<R: Read + ?Sized>(
        reader: &mut R,
    ) -> Result<[u8; PREFIX_LEN], AttachmentError> {
        let mut prefix = [0u8; PREFIX_LEN];
        let got = read_full(reader, &mut prefix)?;
        if got < PREFIX_LEN {
            return Err(AttachmentError::Truncated {
                missing: (PREFIX_LEN - got) as u64,
            });
        }
        Ok(prefix)
    }

    /// Opens a sealed stream progressively: each call to [`next_chunk`](Self::next_chunk)
    /// reads one chunk, verifies its tag, position and padding, and only then releases its
    /// plaintext. Memory stays at one chunk buffer whatever the file size.
    ///
    /// # What a released chunk proves, and what only the end proves
    /// A released chunk is authentic and in its place: it is exactly what the sender sealed
    /// at that position. It does not prove that the rest will arrive. Only when
    /// `next_chunk` returns `Ok(None)` has the stream been verified complete: the final chunk
    /// (sealed with the last-chunk flag) opened, nothing follows it, and the SHA-256 of the
    /// whole sealed stream matches the pointer. An error after some chunks were released
    /// does not retract them: an app that plays media progressively must treat what it
    /// showed as possibly incomplete until then.
    ///
    /// After an error, every later call returns an error too.
    ///
    /// ```
    /// use ratchetbox::attachment::{self, AttachmentMetadata, ChunkSize, StreamOpener};
    ///
    /// let mut rng = ratchetbox::OsRng::new();
    /// let meta = AttachmentMetadata::default().with_chunk_size(ChunkSize::from_log2(10).unwrap());
    /// let (pointer, sealed) = attachment::seal(&mut rng, &[5u8; 3000], meta)?;
    ///
    /// let mut opener = StreamOpener::new(&pointer, sealed.as_slice())?;
    /// let mut received = Vec::new();
    /// while let Some(plaintext) = opener.next_chunk()? {
    ///     received.extend_from_slice(plaintext); // play it, it verified
    /// }
    /// // Only now is the attachment known to be complete.
    /// assert_eq!(received, [5u8; 3000]);
    /// # Ok::<(), ratchetbox::AttachmentError>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub struct StreamOpener<R> {
        reader: R,
        cipher: PayloadCipher,
        layout: Layout,
        digest: [u8; 32],
        hasher: Sha256,
        buf: Vec<u8>,
        consumed: u64,
        state: State,
    }

    impl<R> core::fmt::Debug for StreamOpener<R> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("StreamOpener")
                .field("layout", &self.layout)
                .field("state", &self.state)
                .field("consumed", &self.consumed)
                .finish_non_exhaustive()
        }
    }

    impl<R: Read> StreamOpener<R> {
        /// Reads the header and the key commitment and checks them against the pointer.
        /// Nothing is decrypted yet.
        pub fn new(pointer: &AttachmentPointer, mut reader: R) -> Result<Self, AttachmentError> {
            let prefix = read_prefix(&mut reader)?;
            let (cipher, layout) = open_prefix(pointer, &prefix)?;
            let mut hasher = Sha256::new();
            hasher.update(prefix);
            // The chunk size was validated (at most 1 MiB) before this allocation.
            let buf = vec![0u8; layout.chunk_size().bytes() + CHUNK_TAG_LEN];
            Ok(Self {
                reader,
                cipher,
                layout,
                digest: *pointer.digest(),
                hasher,
                buf,
                consumed: PREFIX_LEN as u64,
                state: State::Reading(0),
            })
        }

        /// The layout implied by the pointer and the header.
        pub fn layout(&self) -> &Layout {
            &self.layout
        }

        /// The plaintext of the next chunk that holds any, after it verified; `Ok(None)` once
        /// the whole stream verified (see the type's documentation for what that proves).
        pub fn next_chunk(&mut self) -> Result<Option<&[u8]>, AttachmentError> {
            match self.advance() {
                Ok(Some(n)) => Ok(Some(self.buf.get(..n).unwrap_or_default())),
                Ok(None) => Ok(None),
                Err(e) => {
                    self.state = State::Failed;
                    Err(e)
                }
            }
        }

        /// Reads and verifies chunks until one holds plaintext (returns its length) or the
        /// stream ends.
        fn advance(&mut self) -> Result<Option<usize>, AttachmentError> {
            loop {
                let index = match self.state {
                    State::Reading(index) => index,
                    State::Done => return Ok(None),
                    State::Failed => {
                        return Err(AttachmentError::StreamFailed);
                    }
                };
                if index == self.layout.chunk_count() {
                    return self.finish().map(|()| None);
                }
                let sealed_len = self.layout.chunk_sealed_len(index);
                let chunk = self
                    .buf
                    .get_mut(..sealed_len)
                    .ok_or(AttachmentError::ChunkAuthentication { index })?;
                let got = read_full(&mut self.reader, chunk)?;
                self.consumed += got as u64;
                if got < sealed_len {
                    return Err(AttachmentError::Truncated {
                        missing: self.layout.sealed_len() - self.consumed,
                    });
                }
                self.hasher.update(&*chunk);
                let n = open_chunk_in_place(&self.cipher, &self.layout, index, chunk)?;
                self.state = State::Reading(index + 1);
                if n > 0 {
                    return Ok(Some(n));
                }
            }
        }

        fn finish(&mut self) -> Result<(), AttachmentError> {
            let mut probe = [0u8; 1];
            if read_full(&mut self.reader, &mut probe)? != 0 {
                return Err(AttachmentError::TrailingData);
            }
            let hasher = core::mem::take(&mut self.hasher);
            check_digest(&finish_digest(hasher), &self.digest)?;
            self.state = State::Done;
            Ok(())
        }

        /// The reader, for example to reuse a connection after the stream ended.
        pub fn into_inner(self) -> R {
            self.reader
        }
    }

    /// Opens a sealed stream from `input` into `output`, progressively: each chunk is
    /// written as soon as it verified, in constant memory. Returns the plaintext length.
    ///
    /// Only `Ok` proves that `output` received the complete attachment (see
    /// [`StreamOpener`]); on an error, what was already written is authentic but may be
    /// incomplete, and the app should discard it or mark it so.
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn open_stream<R, W>(
        pointer: &AttachmentPointer,
        input: &mut R,
        output: &mut W,
    ) -> Result<u64, AttachmentError>
    where
        R: Read + ?Sized,
        W: Write + ?Sized,
    {
        let mut opener = StreamOpener::new(pointer, input)?;
        let mut written = 0u64;
        while let Some(plaintext) = opener.next_chunk()? {
            output.write_all(plaintext)?;
            written += plaintext.len() as u64;
        }
        output.flush()?;
        Ok(written)
    }
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::attachment::format::{CHUNK_TAG_LEN, ChunkSize, SealKeys};

    /// Seals one final chunk of `layout` whose payload is `payload` (any bytes, so that the
    /// padding can be non-zero).
    fn sealed_chunk(keys: &SealKeys, layout: &Layout, payload: &[u8]) -> Vec<u8> {
        let mut chunk = payload.to_vec();
        let tag = keys.cipher.seal_chunk(0, layout.is_last(0), &mut chunk);
        chunk.extend_from_slice(&tag);
        chunk
    }

    #[test]
    fn attachment_chunk_with_bad_padding_is_wiped() {
        let chunk_size = ChunkSize::from_log2(10).expect("1 KiB is allowed");
        let keys = SealKeys::generate(&mut ChaCha20Rng::seed_from_u64(7), chunk_size);
        // 100 plaintext bytes pad to one 256-byte chunk.
        let layout = Layout::new(100, chunk_size).expect("layout");
        assert_eq!(layout.chunk_payload_len(0), 256);
        let mut payload = [0u8; 256];
        payload[..100].fill(0xA5);

        let mut good = sealed_chunk(&keys, &layout, &payload);
        let n = open_chunk_in_place(&keys.cipher, &layout, 0, &mut good).expect("opens");
        assert_eq!(&good[..n], &[0xA5; 100]);

        // One non-zero padding byte: the chunk authenticates, then fails its padding check
        // with its plaintext decrypted in the buffer. Nothing of it may remain.
        payload[255] = 1;
        let mut bad = sealed_chunk(&keys, &layout, &payload);
        assert_eq!(bad.len(), 256 + CHUNK_TAG_LEN);
        assert!(matches!(
            open_chunk_in_place(&keys.cipher, &layout, 0, &mut bad),
            Err(AttachmentError::BadPadding { index: 0 })
        ));
        assert!(bad.iter().all(|&b| b == 0), "plaintext left: {bad:02x?}");

        // A tag failure leaves the ciphertext as it was.
        let mut flipped = sealed_chunk(&keys, &layout, &payload);
        flipped[0] ^= 1;
        let before = flipped.clone();
        assert!(matches!(
            open_chunk_in_place(&keys.cipher, &layout, 0, &mut flipped),
            Err(AttachmentError::ChunkAuthentication { index: 0 })
        ));
        assert_eq!(flipped, before);
    }
}
