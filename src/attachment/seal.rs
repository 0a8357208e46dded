//! Sealing: from a slice into a vector, or from any reader to any writer chunk by chunk.

use alloc::vec::Vec;

use rand_core::CryptoRng;

use crate::error::AttachmentError;

use super::format::{CHUNK_TAG_LEN, Layout, PREFIX_LEN, PayloadCipher, SealKeys};
use super::pointer::{AttachmentMetadata, AttachmentPointer};
use super::tree::{self, Hash};

/// What every in-memory sealer starts from: the layout of a `plaintext_len`-byte file, its
/// sealed length as a `usize`, and fresh keys (drawn only once the size is known to be
/// valid, so that a refused size draws nothing).
pub(crate) struct SealSetup {
    pub(crate) layout: Layout,
    pub(crate) sealed_len: usize,
    pub(crate) keys: SealKeys,
}

impl SealSetup {
    pub(crate) fn new<R: CryptoRng + ?Sized>(
        rng: &mut R,
        plaintext_len: usize,
        metadata: &AttachmentMetadata,
    ) -> Result<Self, AttachmentError> {
        let len = u64::try_from(plaintext_len)
            .map_err(|_| AttachmentError::TooLarge { len: u64::MAX })?;
        let layout = Layout::new(len, metadata.chunk_size())?;
        let sealed_len =
            usize::try_from(layout.sealed_len()).map_err(|_| AttachmentError::TooLarge { len })?;
        let keys = SealKeys::generate(rng, metadata.chunk_size());
        Ok(Self {
            layout,
            sealed_len,
            keys,
        })
    }
}

/// Seals one chunk in place and returns its leaf hash: `slot` is its payload (plaintext and
/// zero padding) followed by 16 bytes of room for the tag.
pub(crate) fn seal_slot(cipher: &PayloadCipher, index: u64, last: bool, slot: &mut [u8]) -> Hash {
    if let Some((payload, tag)) = slot.split_last_chunk_mut::<CHUNK_TAG_LEN>() {
        *tag = cipher.seal_chunk(index, last, payload);
    }
    // Hashed right after encryption, while the chunk is still in cache.
    tree::leaf_hash(index, last, slot)
}

/// Seals chunk `index` of `plaintext` into its zero-initialised sealed place `slot` (payload
/// and tag) and returns its leaf hash. A chunk of plaintext only is encrypted straight from
/// `plaintext` into `slot`, with no copy first.
pub(crate) fn seal_from(
    cipher: &PayloadCipher,
    layout: &Layout,
    plaintext: &[u8],
    index: u64,
    slot: &mut [u8],
) -> Hash {
    let last = layout.is_last(index);
    let start = layout.payload_offset(index) as usize;
    let piece = plaintext
        .get(start..start + layout.chunk_plaintext_len(index))
        .unwrap_or_default();
    let payload_len = layout.chunk_payload_len(index);
    match slot.split_at_mut_checked(payload_len) {
        Some((payload, tag)) if piece.len() == payload_len => {
            if let Some(tag) = tag.first_chunk_mut::<CHUNK_TAG_LEN>() {
                *tag = cipher.seal_chunk_into(index, last, piece, payload);
            }
            tree::leaf_hash(index, last, slot)
        }
        _ => {
            // Plaintext, then the zero padding already there.
            if let Some(head) = slot.get_mut(..piece.len()) {
                head.copy_from_slice(piece);
            }
            seal_slot(cipher, index, last, slot)
        }
    }
}

/// Seals `plaintext` under a fresh file key.
///
/// Returns the pointer (to send inside the conversation, after setting its locator) and the
/// sealed bytes (to upload anywhere). The random number generator supplies the file key
/// (first 32 bytes drawn) and the header salt (next 32 bytes).
///
/// The sealed bytes are a new allocation: for a large file, the kernel's work to provide its
/// fresh pages costs about as much as the encryption. [`seal_in_place`](super::seal_in_place)
/// seals in the caller's buffer instead, and is the faster choice when the plaintext is in a
/// `Vec` already.
///
/// ```
/// use ratchetbox::attachment::{self, AttachmentMetadata};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let photo = vec![0xAB; 100_000];
/// let (pointer, sealed) = attachment::seal(&mut rng, &photo, AttachmentMetadata::default())?;
/// assert_eq!(pointer.plaintext_len(), 100_000);
/// // Padded with PADME to 100_352 bytes, in two chunks with a 16-byte tag each, after the
/// // 70-byte header and commitment, followed by the hash tree (two leaves and their root).
/// assert_eq!(sealed.len(), 70 + 100_352 + 2 * 16 + 3 * 32);
/// assert_eq!(attachment::open(&pointer, &sealed)?, photo);
/// # Ok::<(), ratchetbox::AttachmentError>(())
/// ```
///
/// # Errors
/// [`AttachmentError::TooLarge`] if the plaintext exceeds the format's 2^50-byte limit (or
/// the sealed file would not fit in memory).
pub fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    plaintext: &[u8],
    metadata: AttachmentMetadata,
) -> Result<(AttachmentPointer, Vec<u8>), AttachmentError> {
    let SealSetup {
        layout,
        sealed_len,
        keys,
    } = SealSetup::new(rng, plaintext.len(), &metadata)?;
    // Allocated zeroed (fresh pages, no pass over them): every chunk is encrypted straight
    // from the plaintext into its place, and the padding is already zero.
    let mut out = alloc::vec![0u8; sealed_len];
    let (body, stored_tree) = out.split_at_mut(layout.tree_offset() as usize);
    let (prefix, chunks) = body.split_at_mut(PREFIX_LEN);
    prefix.copy_from_slice(&keys.prefix);
    let stride = layout.chunk_size().bytes() + CHUNK_TAG_LEN;
    let leaves = chunks
        .chunks_mut(stride)
        .enumerate()
        .map(|(i, slot)| seal_from(&keys.cipher, &layout, plaintext, i as u64, slot))
        .collect();
    let tree_root = tree::store_tree(leaves, stored_tree);
    Ok((
        keys.into_pointer(layout.plaintext_len(), &tree_root, metadata),
        out,
    ))
}

#[cfg(feature = "std")]
pub use self::streaming::seal_stream;

#[cfg(feature = "std")]
mod streaming {
    use alloc::vec;
    use std::io::{self, Read, Write};

    use super::*;
    use crate::attachment::format::MAX_PLAINTEXT_LEN;

    /// Reads until `buf` is full or the reader ends; returns the number of bytes read.
    pub(crate) fn read_full<R: Read + ?Sized>(reader: &mut R, buf: &mut [u8]) -> io::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(filled)
    }

    /// Reads a plaintext stream one chunk at a time and tells whether it ended, keeping the
    /// running length. A full chunk is known not to be the last only once one more byte was
    /// read; that byte is kept for the next chunk.
    #[derive(Default)]
    pub(crate) struct ChunkReader {
        lookahead: Option<u8>,
        /// Plaintext bytes read so far.
        pub(crate) total: u64,
    }

    impl ChunkReader {
        /// Fills `buf` (one chunk) with the next plaintext bytes; returns how many, and
        /// whether the input ended with them.
        pub(crate) fn read_chunk<R: Read + ?Sized>(
            &mut self,
            input: &mut R,
            buf: &mut [u8],
        ) -> Result<(usize, bool), AttachmentError> {
            let mut filled = 0;
            if let (Some(byte), Some(first)) = (self.lookahead.take(), buf.first_mut()) {
                *first = byte;
                filled = 1;
            }
            filled += read_full(input, buf.get_mut(filled..).unwrap_or_default())?;
            self.total += filled as u64;
            if self.total > MAX_PLAINTEXT_LEN {
                return Err(AttachmentError::TooLarge { len: self.total });
            }
            if filled < buf.len() {
                return Ok((filled, true));
            }
            let mut next = [0u8; 1];
            if read_full(input, &mut next)? == 0 {
                return Ok((filled, true));
            }
            self.lookahead = Some(next[0]);
            Ok((filled, false))
        }
    }

    /// Seals everything `input` yields into `output`, chunk by chunk; the length need not be
    /// known in advance.
    ///
    /// Memory is one chunk buffer plus the 32-byte leaf hash of every chunk, kept until the
    /// hash tree is written after the last chunk (`output` is not seekable, so the tree
    /// cannot go first): 512 KiB for 1 GiB at the default 64 KiB chunk size.
    ///
    /// Returns the pointer once the last byte is written. A read or write error aborts with
    /// [`AttachmentError::Io`]; what was written so far is then useless.
    ///
    /// ```
    /// use ratchetbox::attachment::{self, AttachmentMetadata};
    ///
    /// let mut rng = ratchetbox::OsRng::new();
    /// let video = vec![7u8; 300_000];
    /// let mut sealed = Vec::new();
    /// let pointer = attachment::seal_stream(
    ///     &mut rng,
    ///     &mut video.as_slice(),
    ///     &mut sealed,
    ///     AttachmentMetadata::new("video/mp4", "clip.mp4")?,
    /// )?;
    /// let mut opened = Vec::new();
    /// attachment::open_stream(&pointer, &mut std::io::Cursor::new(&sealed), &mut opened)?;
    /// assert_eq!(opened, video);
    /// # Ok::<(), ratchetbox::AttachmentError>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn seal_stream<G, R, W>(
        rng: &mut G,
        input: &mut R,
        output: &mut W,
        metadata: AttachmentMetadata,
    ) -> Result<AttachmentPointer, AttachmentError>
    where
        G: CryptoRng + ?Sized,
        R: Read + ?Sized,
        W: Write + ?Sized,
    {
        let chunk_size = metadata.chunk_size();
        let chunk = chunk_size.bytes();
        let keys = SealKeys::generate(rng, chunk_size);
        let mut leaves = Vec::new();
        output.write_all(&keys.prefix)?;

        // One chunk buffer, reused: plaintext is read into it, encrypted in place, the tag
        // appended, and the whole written out.
        // It holds plaintext until encrypted, so it is wiped when dropped (a read error, or
        // an input too long, leaves plaintext in it).
        let mut buf = zeroize::Zeroizing::new(vec![0u8; chunk + CHUNK_TAG_LEN]);
        let mut index = 0u64;
        let mut reader = ChunkReader::default();
        // Read full chunks while more input follows them. Whether a chunk is the last can
        // only be known once the input has ended and the padded length is known, so a full
        // chunk is sealed only after one more byte was seen.
        let filled = loop {
            let (filled, ended) = reader.read_chunk(input, &mut buf[..chunk])?;
            if ended {
                break filled;
            }
            // More follows, so this full chunk is not the last: the padded length is at
            // least the plaintext length.
            leaves.push(seal_slot(&keys.cipher, index, false, &mut buf));
            output.write_all(&buf)?;
            index += 1;
        };

        // The input has ended: `total` is the plaintext length and the buffer holds the
        // plaintext of chunk `index` (0 to chunk bytes). Pad and seal the remaining chunks.
        let total = reader.total;
        let layout = Layout::new(total, chunk_size)?;
        let mut plaintext_in_buf = filled;
        while index < layout.chunk_count() {
            let payload_len = layout.chunk_payload_len(index);
            // The plaintext (if any) is followed by zero padding up to the payload length;
            // after the first of these chunks the payload is all padding.
            buf[plaintext_in_buf..payload_len].fill(0);
            plaintext_in_buf = 0;
            let sealed = &mut buf[..payload_len + CHUNK_TAG_LEN];
            leaves.push(seal_slot(
                &keys.cipher,
                index,
                layout.is_last(index),
                sealed,
            ));
            output.write_all(sealed)?;
            index += 1;
        }
        let tree_root = tree::write_tree(leaves, |node| output.write_all(node))?;
        output.flush()?;
        Ok(keys.into_pointer(total, &tree_root, metadata))
    }
}

#[cfg(feature = "parallel")]
pub(crate) use self::streaming::ChunkReader;
#[cfg(feature = "std")]
pub(crate) use self::streaming::read_full;
