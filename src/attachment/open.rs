//! Opening: a whole sealed file in memory, or a seekable stream chunk by chunk (progressive).

use alloc::vec;
use alloc::vec::Vec;

use zeroize::{Zeroize, Zeroizing};

use crate::aead::split_tag;
use crate::error::AttachmentError;
use crate::padding;

use super::format::{CHUNK_TAG_LEN, Layout, PREFIX_LEN, PayloadCipher};
use super::pointer::AttachmentPointer;
#[cfg(feature = "std")]
use super::pointer::ROOT_LEN;
#[cfg(feature = "std")]
use super::tree::WindowProof;
use super::tree::{self, HASH_LEN};

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
/// (the default backend checks the tag before decrypting) or zeros in its place (`fast-aes`:
/// AWS-LC decrypts while it authenticates, and the payload is zeroed), and a padding
/// failure, found after decryption, zeroizes the whole chunk before returning.
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

/// The verified stored leaves of chunks `first..=last`: fetches the window's proof (its
/// leaves, their neighbours, at most two nodes a level above) through `read_at` and checks
/// it against the pointer's root ([`AttachmentError::RootMismatch`] if it does not lead
/// there). Returns the window's leaves, 32 bytes each.
#[cfg(feature = "std")]
pub(crate) fn fetch_window<F>(
    layout: &Layout,
    prefix: &[u8],
    root: &[u8; ROOT_LEN],
    first: u64,
    last: u64,
    mut read_at: F,
) -> Result<Vec<u8>, AttachmentError>
where
    F: FnMut(u64, &mut [u8]) -> Result<(), AttachmentError>,
{
    let proof = WindowProof::new(layout.chunk_count(), first, last);
    let len = usize::try_from(proof.len_bytes()).map_err(|_| AttachmentError::TooLarge {
        len: layout.plaintext_len(),
    })?;
    let mut bytes = vec![0u8; len];
    let mut at = 0usize;
    for (level, start, count) in proof.runs() {
        let run_len = count as usize * HASH_LEN;
        let run = bytes
            .get_mut(at..at + run_len)
            .ok_or(AttachmentError::RootMismatch)?;
        read_at(layout.node_offset(level, start), run)?;
        at += run_len;
    }
    proof.verify(&bytes, prefix, root)?;
    // Keep only the window's leaves, in place (no second buffer).
    let window = proof.window_in_proof();
    if window.end > bytes.len() {
        return Err(AttachmentError::RootMismatch);
    }
    bytes.truncate(window.end);
    bytes.drain(..window.start);
    Ok(bytes)
}

/// Checks sealed chunk `index` against its verified leaf hash (the 32 bytes `verified`).
pub(crate) fn check_chunk(
    layout: &Layout,
    index: u64,
    sealed_chunk: &[u8],
    verified: &[u8],
) -> Result<(), AttachmentError> {
    let leaf = tree::leaf_hash(index, layout.is_last(index), sealed_chunk);
    tree::check_leaf(index, &leaf, verified)
}

/// Opens sealed chunk `index` (`ciphertext || tag`) in place, after checking it against its
/// verified leaf hash `verified`; returns the number of plaintext bytes at its start. On
/// failure `slot` holds no plaintext (see [`open_chunk_in_place`]).
pub(crate) fn open_slot(
    cipher: &PayloadCipher,
    layout: &Layout,
    index: u64,
    slot: &mut [u8],
    verified: &[u8],
) -> Result<usize, AttachmentError> {
    check_chunk(layout, index, slot, verified)?;
    open_chunk_in_place(cipher, layout, index, slot)
}

/// The 32 verified leaf bytes of chunk `index` in a window of leaves starting at `first`.
pub(crate) fn leaf_in(window: &[u8], first: u64, index: u64) -> &[u8] {
    let at = (index - first) as usize * HASH_LEN;
    window.get(at..at + HASH_LEN).unwrap_or_default()
}

/// The checks of a whole sealed file in memory that come before its tree: the prefix
/// against the pointer and the exact length. Returns the cipher, the layout and the
/// plaintext length (shorter than `sealed`, so it fits in memory).
pub(crate) fn whole_file(
    pointer: &AttachmentPointer,
    sealed: &[u8],
) -> Result<(PayloadCipher, Layout, usize), AttachmentError> {
    let (cipher, layout) = open_prefix_sized(pointer, sealed, sealed.len() as u64)?;
    let plaintext_len =
        usize::try_from(layout.plaintext_len()).map_err(|_| AttachmentError::TooLarge {
            len: layout.plaintext_len(),
        })?;
    Ok((cipher, layout, plaintext_len))
}

/// Checks the whole stored tree of a file that passed [`whole_file`] against the pointer's
/// root and returns its verified leaves. `body` is the file up to the tree (it starts with
/// the prefix), `stored_tree` the rest.
pub(crate) fn verified_leaves<'t>(
    pointer: &AttachmentPointer,
    layout: &Layout,
    body: &[u8],
    stored_tree: &'t [u8],
) -> Result<&'t [u8], AttachmentError> {
    let prefix = body.get(..PREFIX_LEN).unwrap_or_default();
    tree::verify_stored_tree(layout.chunk_count(), stored_tree, prefix, pointer.root())
}

/// Opens a whole sealed file held in memory.
///
/// Checks, in this order: the header (magic, version, chunk size), the key commitment, the
/// exact sealed length implied by the pointer, the stored hash tree against the pointer's
/// root (all before decrypting anything), then for every chunk its leaf hash against the
/// verified tree, its tag with its position and last-chunk flag, and the padding.
///
/// The plaintext is returned in a new allocation: for a large file, the kernel's work to
/// provide its fresh pages costs about as much as the decryption.
/// [`open_in_place`](super::open_in_place) opens in the sealed file's own buffer instead.
///
/// ```
/// use ratchetbox::AttachmentError;
/// use ratchetbox::attachment::{self, AttachmentMetadata};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let (pointer, mut sealed) = attachment::seal(&mut rng, b"voice note", AttachmentMetadata::default())?;
/// assert_eq!(attachment::open(&pointer, &sealed)?, b"voice note");
///
/// // A flipped bit in the first chunk is caught by its hash before it is decrypted.
/// sealed[attachment::PREFIX_LEN] ^= 1;
/// assert!(matches!(
///     attachment::open(&pointer, &sealed),
///     Err(AttachmentError::ChunkNotCommitted { index: 0 })
/// ));
/// # Ok::<(), AttachmentError>(())
/// ```
pub fn open(pointer: &AttachmentPointer, sealed: &[u8]) -> Result<Vec<u8>, AttachmentError> {
    let (cipher, layout, plaintext_len) = whole_file(pointer, sealed)?;
    // The length check ensured that `sealed` holds the prefix and the tree.
    let (body, stored_tree) = sealed.split_at(layout.tree_offset() as usize);
    let leaves = verified_leaves(pointer, &layout, body, stored_tree)?;
    // Both buffers hold plaintext: they are wiped when dropped, on every path out of here
    // (the plaintext returned on success is moved out first and is the caller's). Neither
    // grows past its allocation, so no unwiped copy is left by a reallocation. The output
    // is allocated zeroed (fresh pages, no pass over it) and each chunk decrypts straight
    // into its place: one write of every plaintext byte.
    let mut out = Zeroizing::new(vec![0u8; plaintext_len]);
    let mut scratch = Zeroizing::new(Vec::with_capacity(layout.chunk_sealed_len(0)));
    let stride = layout.chunk_size().bytes();
    let chunks = body.get(PREFIX_LEN..).unwrap_or_default();
    for (index, chunk) in (0..).zip(chunks.chunks(stride + CHUNK_TAG_LEN)) {
        let start = layout.payload_offset(index) as usize;
        let slot = out
            .get_mut(start..start + layout.chunk_plaintext_len(index))
            .unwrap_or_default();
        open_from(
            &cipher,
            &layout,
            index,
            chunk,
            leaf_in(leaves, 0, index),
            slot,
            &mut scratch,
        )?;
    }
    Ok(core::mem::take(&mut *out))
}

/// Checks sealed chunk `index` (`sealed_chunk`, not modified) against its verified leaf,
/// then opens it into `slot`, its plaintext bytes (empty for a chunk of padding only). A
/// chunk of plaintext only decrypts straight into `slot`; one that holds padding decrypts in
/// `scratch` (wiped by the caller), where its padding is checked.
pub(crate) fn open_from(
    cipher: &PayloadCipher,
    layout: &Layout,
    index: u64,
    sealed_chunk: &[u8],
    verified: &[u8],
    slot: &mut [u8],
    scratch: &mut Vec<u8>,
) -> Result<(), AttachmentError> {
    check_chunk(layout, index, sealed_chunk, verified)?;
    if slot.len() == layout.chunk_payload_len(index) {
        let (ciphertext, tag) =
            split_tag(sealed_chunk).ok_or(AttachmentError::ChunkAuthentication { index })?;
        cipher.open_chunk_into(index, layout.is_last(index), ciphertext, tag, slot)
    } else {
        // `scratch` never grows past one chunk, reserved by the caller or on first use.
        scratch.clear();
        scratch.extend_from_slice(sealed_chunk);
        let n = open_chunk_in_place(cipher, layout, index, scratch)?;
        let plaintext = scratch
            .get(..n)
            .filter(|p| p.len() == slot.len())
            .ok_or(AttachmentError::ChunkAuthentication { index })?;
        slot.copy_from_slice(plaintext);
        Ok(())
    }
}

#[cfg(feature = "parallel")]
pub(crate) use self::streaming::SeekSource;
#[cfg(feature = "std")]
pub use self::streaming::{StreamOpener, open_stream};

#[cfg(feature = "std")]
mod streaming {
    use std::io::{Read, Seek, SeekFrom, Write};

    use super::*;
    use crate::attachment::seal::read_full;

    /// Leaves verified at a time by the streaming openers: 1024 (32 KiB of hashes, covering
    /// 64 MiB at the default chunk size).
    const STREAM_WINDOW: u64 = 1024;

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

    /// A sealed file behind `Read + Seek`, read sequentially, with detours to its hash tree.
    pub(crate) struct SeekSource<R> {
        pub(crate) reader: R,
        /// Where the reader is, as far as this type knows.
        position: u64,
        pub(crate) layout: Layout,
        pub(crate) prefix: [u8; PREFIX_LEN],
        root: [u8; ROOT_LEN],
        /// Verified leaves of chunks `window_first..`, 32 bytes each.
        window: Vec<u8>,
        window_first: u64,
    }

    impl<R: Read + Seek> SeekSource<R> {
        /// Finds the length, reads and checks the prefix and the length against the
        /// pointer. Leaves the reader at the first chunk.
        pub(crate) fn new(
            pointer: &AttachmentPointer,
            mut reader: R,
        ) -> Result<(Self, PayloadCipher), AttachmentError> {
            let len = reader.seek(SeekFrom::End(0))?;
            reader.seek(SeekFrom::Start(0))?;
            let mut prefix = [0u8; PREFIX_LEN];
            let got = read_full(&mut reader, &mut prefix)?;
            let (cipher, layout) =
                open_prefix_sized(pointer, prefix.get(..got).unwrap_or_default(), len)?;
            Ok((
                Self {
                    reader,
                    position: PREFIX_LEN as u64,
                    layout,
                    prefix,
                    root: *pointer.root(),
                    window: Vec::new(),
                    window_first: 0,
                },
                cipher,
            ))
        }

        /// Reads exactly `buf.len()` bytes at `offset`; `Truncated` if the source ends.
        fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), AttachmentError> {
            if offset != self.position {
                self.reader.seek(SeekFrom::Start(offset))?;
            }
            let got = read_full(&mut self.reader, buf)?;
            self.position = offset + got as u64;
            if got < buf.len() {
                return Err(AttachmentError::Truncated {
                    missing: (buf.len() - got) as u64,
                });
            }
            Ok(())
        }

        /// The verified leaf of chunk `index`, fetching and verifying its window first if
        /// needed.
        pub(crate) fn leaf(&mut self, index: u64) -> Result<&[u8], AttachmentError> {
            let in_window = index >= self.window_first
                && index - self.window_first < (self.window.len() / HASH_LEN) as u64;
            if !in_window {
                let first = index / STREAM_WINDOW * STREAM_WINDOW;
                let last = (first + STREAM_WINDOW).min(self.layout.chunk_count()) - 1;
                let (layout, prefix, root) = (self.layout, self.prefix, self.root);
                // Freed before the next window is fetched: one window in memory at a time.
                self.window = Vec::new();
                self.window = fetch_window(&layout, &prefix, &root, first, last, |at, buf| {
                    self.read_at(at, buf)
                })?;
                self.window_first = first;
            }
            Ok(leaf_in(&self.window, self.window_first, index))
        }

        /// Reads sealed chunk `index` into `buf` (exactly its sealed length).
        pub(crate) fn read_chunk(
            &mut self,
            index: u64,
            buf: &mut [u8],
        ) -> Result<(), AttachmentError> {
            self.read_at(self.layout.chunk_offset(index), buf)
        }
    }

    /// Opens a sealed file progressively from a `Read + Seek` source (a file, or a download
    /// that can fetch ranges): each call to [`next_chunk`](Self::next_chunk) reads one
    /// chunk, checks it against the pointer's root, verifies its tag, position and padding,
    /// and only then releases its plaintext. Memory stays at one chunk buffer and 32 KiB of
    /// hashes whatever the file size.
    ///
    /// The source must be seekable because the hash tree that proves each chunk is stored
    /// after the chunks (so that sealing can stream): the opener reads the hashes of 1024
    /// chunks at a time from there, verifies them against the root, then reads those chunks
    /// in order.
    ///
    /// # What a released chunk proves, and what only the end proves
    /// A released chunk is committed by the pointer's root at its position: it is exactly
    /// what every holder of this pointer gets there, and nobody, not even someone holding
    /// the file key, can make the opener release anything else. It does not prove that the
    /// rest will arrive. Only when `next_chunk` returns `Ok(None)` has every chunk been read
    /// and verified. An error after some chunks were released does not retract them: an app
    /// that plays media progressively must treat what it showed as possibly incomplete until
    /// then.
    ///
    /// After an error, every later call returns an error too. The opener's chunk buffer is
    /// wiped after an error and when the opener is dropped.
    ///
    /// ```
    /// use std::io::Cursor;
    /// use ratchetbox::attachment::{self, AttachmentMetadata, ChunkSize, StreamOpener};
    ///
    /// let mut rng = ratchetbox::OsRng::new();
    /// let meta = AttachmentMetadata::default().with_chunk_size(ChunkSize::from_log2(10).unwrap());
    /// let (pointer, sealed) = attachment::seal(&mut rng, &[5u8; 3000], meta)?;
    ///
    /// let mut opener = StreamOpener::new(&pointer, Cursor::new(sealed))?;
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
        source: SeekSource<R>,
        cipher: PayloadCipher,
        /// The current chunk: its plaintext once it verified. Wiped on error and on drop.
        buf: Zeroizing<Vec<u8>>,
        state: State,
    }

    impl<R> core::fmt::Debug for StreamOpener<R> {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("StreamOpener")
                .field("layout", &self.source.layout)
                .field("state", &self.state)
                .finish_non_exhaustive()
        }
    }

    impl<R: Read + Seek> StreamOpener<R> {
        /// Finds the source's length, reads the header and the key commitment, and checks
        /// them and the length against the pointer. Nothing is decrypted yet.
        pub fn new(pointer: &AttachmentPointer, reader: R) -> Result<Self, AttachmentError> {
            let (source, cipher) = SeekSource::new(pointer, reader)?;
            // The chunk size was validated (at most 1 MiB) before this allocation.
            let buf = Zeroizing::new(vec![
                0u8;
                source.layout.chunk_size().bytes() + CHUNK_TAG_LEN
            ]);
            Ok(Self {
                source,
                cipher,
                buf,
                state: State::Reading(0),
            })
        }

        /// The layout implied by the pointer and the header.
        pub fn layout(&self) -> &Layout {
            &self.source.layout
        }

        /// The plaintext of the next chunk that holds any, after it verified; `Ok(None)` once
        /// every chunk verified (see the type's documentation for what that proves).
        pub fn next_chunk(&mut self) -> Result<Option<&[u8]>, AttachmentError> {
            match self.advance() {
                Ok(Some(n)) => Ok(Some(self.buf.get(..n).unwrap_or_default())),
                Ok(None) => Ok(None),
                Err(e) => {
                    // Nothing more is released: wipe the last released chunk now rather
                    // than when the opener is dropped.
                    self.buf.as_mut_slice().zeroize();
                    self.state = State::Failed;
                    Err(e)
                }
            }
        }

        /// Reads and verifies chunks until one holds plaintext (returns its length) or the
        /// file ends.
        fn advance(&mut self) -> Result<Option<usize>, AttachmentError> {
            loop {
                let index = match self.state {
                    State::Reading(index) => index,
                    State::Done => return Ok(None),
                    State::Failed => {
                        return Err(AttachmentError::StreamFailed);
                    }
                };
                let layout = self.source.layout;
                if index == layout.chunk_count() {
                    self.state = State::Done;
                    return Ok(None);
                }
                let sealed_len = layout.chunk_sealed_len(index);
                let chunk = self
                    .buf
                    .get_mut(..sealed_len)
                    .ok_or(AttachmentError::ChunkAuthentication { index })?;
                let leaf: [u8; HASH_LEN] = self
                    .source
                    .leaf(index)?
                    .try_into()
                    .map_err(|_| AttachmentError::RootMismatch)?;
                self.source.read_chunk(index, chunk)?;
                let n = open_slot(&self.cipher, &layout, index, chunk, &leaf)?;
                self.state = State::Reading(index + 1);
                if n > 0 {
                    return Ok(Some(n));
                }
            }
        }

        /// The reader, for example to reuse a connection after the stream ended.
        pub fn into_inner(self) -> R {
            self.source.reader
        }
    }

    /// Opens a sealed file from a `Read + Seek` `input` into `output`, progressively: each
    /// chunk is written as soon as it verified against the pointer's root, in constant
    /// memory. Returns the plaintext length.
    ///
    /// Only `Ok` proves that `output` received the complete attachment (see
    /// [`StreamOpener`]); on an error, what was already written is what the pointer commits
    /// to but may be incomplete, and the app should discard it or mark it so.
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    pub fn open_stream<R, W>(
        pointer: &AttachmentPointer,
        input: &mut R,
        output: &mut W,
    ) -> Result<u64, AttachmentError>
    where
        R: Read + Seek + ?Sized,
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

        // A tag failure leaves no plaintext: the default backend checks the tag first and
        // leaves the ciphertext as it was; AWS-LC (`fast-aes`) decrypts while it
        // authenticates and zeroes the payload (the tag is left).
        let mut flipped = sealed_chunk(&keys, &layout, &payload);
        flipped[0] ^= 1;
        let mut expected = flipped.clone();
        if cfg!(feature = "fast-aes") {
            expected[..256].fill(0);
        }
        assert!(matches!(
            open_chunk_in_place(&keys.cipher, &layout, 0, &mut flipped),
            Err(AttachmentError::ChunkAuthentication { index: 0 })
        ));
        assert_eq!(flipped, expected);
    }
}
