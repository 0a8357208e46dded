//! Random access: decrypt any byte range by fetching and verifying only the chunks it
//! touches and the few hashes that prove them (seeking in a video).

use alloc::vec::Vec;
use core::ops::Range;

use zeroize::Zeroize;

use crate::error::AttachmentError;

use super::format::{Layout, PREFIX_LEN, PayloadCipher};
use super::open::{leaf_in, open_prefix_sized, open_slot};
use super::pointer::{AttachmentPointer, ROOT_LEN};
use super::tree::{HASH_LEN, WindowProof};

/// Reads arbitrary plaintext ranges of a sealed file whose length is known, verifying only
/// the chunks each range touches.
///
/// This is the sans-IO core: [`plan`](Self::plan) says which sealed bytes a range needs
/// (its chunks, and the hashes from the stored tree that prove them), the app fetches them
/// however it likes (HTTP range requests, file reads), and [`decrypt`](Self::decrypt)
/// verifies and decrypts them in place. With the `std` feature,
/// [`read_range`](Self::read_range) does the same through a read-at callback, and
/// [`SeekableOpener`] through `Read + Seek`.
///
/// Every returned byte comes from a chunk whose hash the pointer's root commits to at its
/// position (checked before the chunk is decrypted), and that authenticated there. What a
/// range returns is therefore what every holder of the pointer gets for that range, even
/// if someone holding the file key re-encrypted chunks. The exact sealed length is checked
/// up front.
///
/// ```
/// use ratchetbox::attachment::{self, AttachmentMetadata, RandomAccess, PREFIX_LEN};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let movie: Vec<u8> = (0..1_000_000u32).map(|i| i as u8).collect();
/// let (pointer, sealed) = attachment::seal(&mut rng, &movie, AttachmentMetadata::default())?;
///
/// // The app knows the sealed length (e.g. Content-Length) and fetches the 70-byte prefix.
/// let access = RandomAccess::new(&pointer, &sealed[..PREFIX_LEN], sealed.len() as u64)?;
/// let plan = access.plan(700_000..700_100)?;
/// // Fetch exactly those sealed bytes (here: from memory) and decrypt them.
/// let start = plan.sealed_offset() as usize;
/// let mut fetched = sealed[start..start + plan.sealed_len() as usize].to_vec();
/// let hashes: Vec<u8> = plan
///     .hash_ranges()
///     .iter()
///     .flat_map(|r| sealed[r.start as usize..r.end as usize].iter().copied())
///     .collect();
/// assert_eq!(access.decrypt(&plan, &mut fetched, &hashes)?, &movie[700_000..700_100]);
/// # Ok::<(), ratchetbox::AttachmentError>(())
/// ```
pub struct RandomAccess {
    cipher: PayloadCipher,
    layout: Layout,
    prefix: [u8; PREFIX_LEN],
    root: [u8; ROOT_LEN],
}

impl core::fmt::Debug for RandomAccess {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RandomAccess")
            .field("layout", &self.layout)
            .finish_non_exhaustive()
    }
}

/// The sealed bytes a plaintext range needs: one contiguous run of whole chunks, and the
/// hashes of the stored tree that prove them (a few short runs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchPlan {
    range: Range<u64>,
    chunks: Range<u64>,
    sealed_offset: u64,
    sealed_len: u64,
    hash_ranges: Vec<Range<u64>>,
}

impl FetchPlan {
    /// The plaintext range this plan serves.
    pub fn plaintext_range(&self) -> Range<u64> {
        self.range.clone()
    }

    /// The indexes of the chunks to fetch.
    pub fn chunks(&self) -> Range<u64> {
        self.chunks.clone()
    }

    /// Offset in the sealed file of the first chunk byte to fetch.
    pub fn sealed_offset(&self) -> u64 {
        self.sealed_offset
    }

    /// Number of chunk bytes to fetch from [`sealed_offset`](Self::sealed_offset) (0 for an
    /// empty range).
    pub fn sealed_len(&self) -> u64 {
        self.sealed_len
    }

    /// The ranges of the sealed file that hold the hashes proving the chunks, in the order
    /// [`RandomAccess::decrypt`] expects them concatenated (empty for an empty range): the
    /// chunks' leaf hashes with their neighbours, then at most two 32-byte nodes for each
    /// level of the tree above.
    pub fn hash_ranges(&self) -> &[Range<u64>] {
        &self.hash_ranges
    }

    /// Total length of the [`hash_ranges`](Self::hash_ranges).
    pub fn hashes_len(&self) -> u64 {
        self.hash_ranges.iter().map(|r| r.end - r.start).sum()
    }

    /// Every sealed byte the plan fetches: chunks and hashes.
    pub fn fetched_len(&self) -> u64 {
        self.sealed_len + self.hashes_len()
    }

    /// The part of the plaintext range inside the chunk whose plaintext starts at offset
    /// `chunk_start` and holds `n` bytes, as offsets into that chunk; `None` if they do not
    /// overlap.
    pub(crate) fn range_in_chunk(&self, chunk_start: u64, n: usize) -> Option<Range<usize>> {
        let lo = self.range.start.max(chunk_start) - chunk_start;
        let hi = self
            .range
            .end
            .min(chunk_start + n as u64)
            .saturating_sub(chunk_start);
        // Both are at most `n`, below the chunk size: they fit in usize.
        (hi > lo).then_some(lo as usize..hi as usize)
    }

    /// The proof of the plan's chunks (for a non-empty plan).
    pub(crate) fn proof(&self, layout: &Layout) -> WindowProof {
        WindowProof::new(
            layout.chunk_count(),
            self.chunks.start,
            self.chunks.end.saturating_sub(1),
        )
    }
}

impl Layout {
    /// Which sealed bytes the plaintext `range` needs: the chunks it touches and the hashes
    /// that prove them. This depends only on the layout, so the cost of a read can be known
    /// before anything is fetched.
    ///
    /// ```
    /// use ratchetbox::attachment::{ChunkSize, Layout};
    ///
    /// // One 64 KiB range, aligned on a chunk, in a 1 GiB file: its chunk and tag, its leaf
    /// // hash and its neighbour's, and one node on each of the 13 levels above.
    /// let layout = Layout::new(1 << 30, ChunkSize::DEFAULT)?;
    /// let plan = layout.plan(65_536 * 1000..65_536 * 1001)?;
    /// assert_eq!(plan.sealed_len(), 65_536 + 16);
    /// assert_eq!(plan.hashes_len(), 2 * 32 + 13 * 32);
    /// # Ok::<(), ratchetbox::AttachmentError>(())
    /// ```
    ///
    /// # Errors
    /// [`AttachmentError::InvalidRange`] if the range is reversed or ends past the plaintext.
    pub fn plan(&self, range: Range<u64>) -> Result<FetchPlan, AttachmentError> {
        if range.start > range.end {
            return Err(AttachmentError::InvalidRange {
                reason: "the range starts after it ends",
            });
        }
        if range.end > self.plaintext_len() {
            return Err(AttachmentError::InvalidRange {
                reason: "the range ends past the end of the plaintext",
            });
        }
        if range.is_empty() {
            return Ok(FetchPlan {
                range,
                chunks: 0..0,
                sealed_offset: PREFIX_LEN as u64,
                sealed_len: 0,
                hash_ranges: Vec::new(),
            });
        }
        let chunk = self.chunk_size().bytes_u64();
        let first = range.start / chunk;
        let last = (range.end - 1) / chunk;
        let sealed_offset = self.chunk_offset(first);
        let sealed_end = self.chunk_offset(last) + self.chunk_sealed_len(last) as u64;
        let hash_ranges = WindowProof::new(self.chunk_count(), first, last)
            .runs()
            .into_iter()
            .map(|(level, start, count)| {
                let offset = self.node_offset(level, start);
                offset..offset + count * HASH_LEN as u64
            })
            .collect();
        Ok(FetchPlan {
            range,
            chunks: first..last + 1,
            sealed_offset,
            sealed_len: sealed_end - sealed_offset,
            hash_ranges,
        })
    }
}

impl RandomAccess {
    /// Checks the prefix (the first [`PREFIX_LEN`] bytes of the sealed file; more are
    /// ignored) against the pointer, and the sealed file's total length against the one the
    /// pointer implies. Nothing is decrypted.
    pub fn new(
        pointer: &AttachmentPointer,
        prefix: &[u8],
        sealed_len: u64,
    ) -> Result<Self, AttachmentError> {
        let (cipher, layout) = open_prefix_sized(pointer, prefix, sealed_len)?;
        let mut own_prefix = [0u8; PREFIX_LEN];
        // open_prefix_sized checked that `prefix` holds at least PREFIX_LEN bytes.
        own_prefix.copy_from_slice(prefix.get(..PREFIX_LEN).unwrap_or(&[0u8; PREFIX_LEN]));
        Ok(Self {
            cipher,
            layout,
            prefix: own_prefix,
            root: *pointer.root(),
        })
    }

    #[cfg(feature = "parallel")]
    pub(crate) fn cipher(&self) -> &PayloadCipher {
        &self.cipher
    }

    /// The file's layout.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The plaintext length.
    pub fn plaintext_len(&self) -> u64 {
        self.layout.plaintext_len()
    }

    /// Which sealed bytes the plaintext `range` needs (see [`Layout::plan`]).
    ///
    /// # Errors
    /// [`AttachmentError::InvalidRange`] if the range is reversed or ends past the plaintext.
    pub fn plan(&self, range: Range<u64>) -> Result<FetchPlan, AttachmentError> {
        self.layout.plan(range)
    }

    /// Checks the fetched hashes of `plan` against the pointer's root and returns the
    /// verified leaf hashes of its chunks.
    pub(crate) fn verify_hashes<'h>(
        &self,
        plan: &FetchPlan,
        hashes: &'h [u8],
    ) -> Result<&'h [u8], AttachmentError> {
        let proof = plan.proof(&self.layout);
        proof.verify(hashes, &self.prefix, &self.root)?;
        hashes
            .get(proof.window_in_proof())
            .ok_or(AttachmentError::RootMismatch)
    }

    /// Verifies and decrypts the fetched bytes of `plan` in place, and returns the requested
    /// plaintext (at the start of `sealed`). `sealed` holds the plan's chunks
    /// ([`FetchPlan::sealed_offset`], [`FetchPlan::sealed_len`]) and `hashes` the
    /// concatenated [`FetchPlan::hash_ranges`]. The hashes are checked against the
    /// pointer's root first, then each chunk against its hash, before it is decrypted. If
    /// anything fails, the error names it and no plaintext is returned, nor left behind in
    /// `sealed`.
    ///
    /// # Contents of `sealed` afterwards
    /// - On success, it starts with the returned plaintext; the bytes after it are
    ///   unspecified (they may hold other plaintext of the same chunks, and tags).
    /// - If `plan` or the length of `sealed` or `hashes` is rejected ([`InvalidRange`]),
    ///   `sealed` is untouched: nothing was decrypted.
    /// - After any other error ([`RootMismatch`], [`ChunkNotCommitted`],
    ///   [`ChunkAuthentication`], [`BadPadding`]), every byte of `sealed` is zero,
    ///   including where the chunks before the failing one, which had verified, were
    ///   decrypted: a failed call releases no plaintext.
    ///
    /// # Errors
    /// [`InvalidRange`] if `plan` is not one of this file's plans or `sealed` or `hashes`
    /// is not as long as the plan says; [`RootMismatch`] if the hashes do not lead to the
    /// pointer's root; [`ChunkNotCommitted`], [`ChunkAuthentication`] or [`BadPadding`] for
    /// a chunk that does not verify.
    ///
    /// [`InvalidRange`]: AttachmentError::InvalidRange
    /// [`RootMismatch`]: AttachmentError::RootMismatch
    /// [`ChunkNotCommitted`]: AttachmentError::ChunkNotCommitted
    /// [`ChunkAuthentication`]: AttachmentError::ChunkAuthentication
    /// [`BadPadding`]: AttachmentError::BadPadding
    pub fn decrypt<'b>(
        &self,
        plan: &FetchPlan,
        sealed: &'b mut [u8],
        hashes: &[u8],
    ) -> Result<&'b [u8], AttachmentError> {
        match self.plan(plan.plaintext_range()) {
            Ok(expected) if expected == *plan => {}
            _ => {
                return Err(AttachmentError::InvalidRange {
                    reason: "the fetch plan does not belong to this file",
                });
            }
        }
        if sealed.len() as u64 != plan.sealed_len() {
            return Err(AttachmentError::InvalidRange {
                reason: "the fetched bytes are not as long as the fetch plan says",
            });
        }
        if hashes.len() as u64 != plan.hashes_len() {
            return Err(AttachmentError::InvalidRange {
                reason: "the fetched hashes are not as long as the fetch plan says",
            });
        }
        if plan.chunks().is_empty() {
            return Ok(&[]);
        }
        match self.decrypt_chunks(plan, sealed, hashes) {
            Ok(written) => Ok(sealed.get(..written).unwrap_or_default()),
            Err(error) => {
                // Earlier chunks of the plan were decrypted in place (and compacted towards
                // the front) before this one failed: wipe them all.
                sealed.zeroize();
                Err(error)
            }
        }
    }

    /// Decrypts the chunks of a checked `plan` in `sealed` and compacts the requested
    /// plaintext at its start; returns its length. On error, `sealed` may hold plaintext:
    /// the caller wipes it.
    fn decrypt_chunks(
        &self,
        plan: &FetchPlan,
        sealed: &mut [u8],
        hashes: &[u8],
    ) -> Result<usize, AttachmentError> {
        let leaves = self.verify_hashes(plan, hashes)?;
        let mut read = 0usize;
        let mut written = 0usize;
        for index in plan.chunks() {
            let len = self.layout.chunk_sealed_len(index);
            let sealed_chunk = sealed
                .get_mut(read..read + len)
                .ok_or(AttachmentError::Truncated { missing: 0 })?;
            let leaf = leaf_in(leaves, plan.chunks().start, index);
            let n = open_slot(&self.cipher, &self.layout, index, sealed_chunk, leaf)?;
            // The part of the requested range inside this chunk's plaintext.
            if let Some(Range { start: lo, end: hi }) =
                plan.range_in_chunk(self.layout.payload_offset(index), n)
            {
                // Within this chunk by construction; checked anyway so that no arithmetic
                // slip can reach a panicking copy.
                if read + hi > sealed.len() || written > read + lo {
                    return Err(AttachmentError::InvalidRange {
                        reason: "the fetched bytes do not match the fetch plan",
                    });
                }
                // written <= read + lo: plaintext is compacted towards the front.
                sealed.copy_within(read + lo..read + hi, written);
                written += hi - lo;
            }
            read += len;
        }
        Ok(written)
    }
}

#[cfg(feature = "std")]
pub use self::std_adapters::SeekableOpener;

#[cfg(feature = "std")]
mod std_adapters {
    use alloc::vec;
    use alloc::vec::Vec;
    use std::io::{self, Read, Seek, SeekFrom};

    use zeroize::Zeroizing;

    use super::*;
    use crate::attachment::format::CHUNK_TAG_LEN;

    impl RandomAccess {
        /// Fetches the hashes of `plan` through `read_at` and returns the verified leaf
        /// hashes of its chunks.
        pub(crate) fn fetch_leaves<F>(
            &self,
            plan: &FetchPlan,
            mut read_at: F,
        ) -> Result<Vec<u8>, AttachmentError>
        where
            F: FnMut(u64, &mut [u8]) -> io::Result<()>,
        {
            crate::attachment::open::fetch_window(
                &self.layout,
                &self.prefix,
                &self.root,
                plan.chunks().start,
                plan.chunks().end.saturating_sub(1),
                |offset, buf| read_at(offset, buf).map_err(AttachmentError::from),
            )
        }

        /// Reads the plaintext `range` through a read-at callback: `read_at(offset, buf)`
        /// must fill `buf` with the sealed bytes starting at `offset` (for a file,
        /// `std::os::unix::fs::FileExt::read_exact_at`). Fetches the hashes of the range's
        /// chunks first and checks them against the pointer's root, then fetches and
        /// verifies one chunk at a time, so memory is the range plus one chunk (and 32 bytes
        /// of hash a chunk).
        ///
        /// ```
        /// use ratchetbox::attachment::{self, AttachmentMetadata, RandomAccess, PREFIX_LEN};
        ///
        /// let mut rng = ratchetbox::OsRng::new();
        /// let data = vec![42u8; 200_000];
        /// let (pointer, sealed) = attachment::seal(&mut rng, &data, AttachmentMetadata::default())?;
        /// let access = RandomAccess::new(&pointer, &sealed[..PREFIX_LEN], sealed.len() as u64)?;
        /// let read_at = |offset: u64, buf: &mut [u8]| -> std::io::Result<()> {
        ///     let start = offset as usize;
        ///     buf.copy_from_slice(&sealed[start..start + buf.len()]);
        ///     Ok(())
        /// };
        /// assert_eq!(access.read_range(65_000..131_100, read_at)?, &data[65_000..131_100]);
        /// # Ok::<(), ratchetbox::AttachmentError>(())
        /// ```
        pub fn read_range<F>(
            &self,
            range: Range<u64>,
            mut read_at: F,
        ) -> Result<Vec<u8>, AttachmentError>
        where
            F: FnMut(u64, &mut [u8]) -> io::Result<()>,
        {
            let plan = self.plan(range)?;
            let range_len = usize::try_from(plan.range.end - plan.range.start).map_err(|_| {
                AttachmentError::InvalidRange {
                    reason: "the range does not fit in memory",
                }
            })?;
            if plan.chunks().is_empty() {
                return Ok(Vec::new());
            }
            // Both buffers hold plaintext and are wiped when dropped, on every path (the
            // plaintext returned on success is moved out first). `out` never grows past the
            // capacity reserved here.
            let leaves = self.fetch_leaves(&plan, &mut read_at)?;
            let mut out = Zeroizing::new(Vec::with_capacity(range_len));
            let mut buf =
                Zeroizing::new(vec![0u8; self.layout.chunk_size().bytes() + CHUNK_TAG_LEN]);
            for index in plan.chunks() {
                let len = self.layout.chunk_sealed_len(index);
                let sealed_chunk = buf
                    .get_mut(..len)
                    .ok_or(AttachmentError::ChunkAuthentication { index })?;
                read_at(self.layout.chunk_offset(index), sealed_chunk)?;
                let leaf = leaf_in(&leaves, plan.chunks().start, index);
                let n = open_slot(&self.cipher, &self.layout, index, sealed_chunk, leaf)?;
                if let Some(part) = plan.range_in_chunk(self.layout.payload_offset(index), n) {
                    out.extend_from_slice(sealed_chunk.get(part).unwrap_or_default());
                }
            }
            Ok(core::mem::take(&mut *out))
        }
    }

    /// Random access to a sealed file through `Read + Seek` (a `File`, a `Cursor`).
    ///
    /// ```
    /// use std::io::Cursor;
    /// use ratchetbox::attachment::{self, AttachmentMetadata, SeekableOpener};
    ///
    /// let mut rng = ratchetbox::OsRng::new();
    /// let data: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    /// let (pointer, sealed) = attachment::seal(&mut rng, &data, AttachmentMetadata::default())?;
    /// let mut opener = SeekableOpener::new(&pointer, Cursor::new(sealed))?;
    /// assert_eq!(opener.read_range(250_000..250_010)?, &data[250_000..250_010]);
    /// # Ok::<(), ratchetbox::AttachmentError>(())
    /// ```
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    #[derive(Debug)]
    pub struct SeekableOpener<R> {
        source: R,
        access: RandomAccess,
    }

    impl<R: Read + Seek> SeekableOpener<R> {
        /// Reads the prefix, finds the length by seeking to the end, and checks both against
        /// the pointer. Nothing is decrypted.
        pub fn new(pointer: &AttachmentPointer, mut source: R) -> Result<Self, AttachmentError> {
            let len = source.seek(SeekFrom::End(0))?;
            source.seek(SeekFrom::Start(0))?;
            let mut prefix = [0u8; PREFIX_LEN];
            let got = crate::attachment::seal::read_full(&mut source, &mut prefix)?;
            let access = RandomAccess::new(pointer, prefix.get(..got).unwrap_or_default(), len)?;
            Ok(Self { source, access })
        }

        /// Reads and verifies the plaintext `range`.
        pub fn read_range(&mut self, range: Range<u64>) -> Result<Vec<u8>, AttachmentError> {
            let source = &mut self.source;
            self.access.read_range(range, |offset, buf| {
                source.seek(SeekFrom::Start(offset))?;
                source.read_exact(buf)
            })
        }

        /// The random-access core (layout, plans).
        pub fn access(&self) -> &RandomAccess {
            &self.access
        }

        /// The source.
        pub fn into_inner(self) -> R {
            self.source
        }
    }
}
