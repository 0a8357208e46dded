//! Sealing and opening on all cores (feature `parallel`, rayon).
//!
//! Chunks are independent (each has its own nonce and its own leaf hash), so they are
//! encrypted or decrypted and hashed in parallel, each chunk hashed right before (opening)
//! or after (sealing) its AES-GCM pass while it is in cache. Only the hash tree above the
//! leaves is sequential: one 65-byte BLAKE3 call per chunk, a few milliseconds for 1 GiB.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;
use std::io;

use rand_core::CryptoRng;
use rayon::prelude::*;
use zeroize::{Zeroize, Zeroizing};

use crate::aead::split_tag;
use crate::error::AttachmentError;

use super::format::{CHUNK_TAG_LEN, Layout, PREFIX_LEN, PayloadCipher, SealKeys};
use super::open::{
    STREAM_WINDOW, SeekSource, check_chunk, leaf_in, open_chunk_in_place, open_prefix_sized,
};
use super::pointer::{AttachmentMetadata, AttachmentPointer};
use super::random_access::RandomAccess;
use super::seal::ChunkReader;
use super::tree::{self, HASH_LEN, Hash};

/// [`seal`](super::seal) on all cores: same inputs, same output format, same random draws
/// (so a seeded generator gives byte-identical results).
///
/// ```
/// use ratchetbox::attachment::{self, AttachmentMetadata};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let big = vec![1u8; 3 << 20];
/// let (pointer, sealed) = attachment::seal_parallel(&mut rng, &big, AttachmentMetadata::default())?;
/// assert_eq!(attachment::open_parallel(&pointer, &sealed)?, big);
/// # Ok::<(), ratchetbox::AttachmentError>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub fn seal_parallel<R: CryptoRng + ?Sized>(
    rng: &mut R,
    plaintext: &[u8],
    metadata: AttachmentMetadata,
) -> Result<(AttachmentPointer, Vec<u8>), AttachmentError> {
    let len = plaintext.len() as u64;
    let layout = Layout::new(len, metadata.chunk_size())?;
    let sealed_len =
        usize::try_from(layout.sealed_len()).map_err(|_| AttachmentError::TooLarge { len })?;
    let keys = SealKeys::generate(rng, metadata.chunk_size());
    let stride = layout.chunk_size().bytes() + CHUNK_TAG_LEN;

    let mut out = vec![0u8; sealed_len];
    let (prefix, rest) = out.split_at_mut(PREFIX_LEN);
    prefix.copy_from_slice(&keys.prefix);
    let (chunks, stored_tree) = rest.split_at_mut(layout.tree_offset() as usize - PREFIX_LEN);

    let cipher = &keys.cipher;
    let layout_ref = &layout;
    let mut leaves: Vec<Hash> = Vec::new();
    chunks
        .par_chunks_mut(stride)
        .enumerate()
        .map(|(i, slot)| {
            let index = i as u64;
            seal_slot(cipher, layout_ref, plaintext, index, slot);
            tree::leaf_hash(index, layout_ref.is_last(index), slot)
        })
        .collect_into_vec(&mut leaves);
    let mut at = 0usize;
    let tree_root = tree::write_tree::<core::convert::Infallible>(leaves, |node| {
        if let Some(room) = stored_tree.get_mut(at..at + node.len()) {
            room.copy_from_slice(node);
        }
        at += node.len();
        Ok(())
    })
    .unwrap_or_else(|never| match never {});
    let root = tree::pointer_root(&keys.prefix, &tree_root);
    Ok((
        AttachmentPointer::new(keys.file_key, len, root, metadata),
        out,
    ))
}

/// Seals chunk `index` into its zero-initialised slot (`payload || tag`).
fn seal_slot(
    cipher: &PayloadCipher,
    layout: &Layout,
    plaintext: &[u8],
    index: u64,
    slot: &mut [u8],
) {
    let payload_len = layout.chunk_payload_len(index);
    let start = layout.payload_offset(index) as usize;
    let n = layout.chunk_plaintext_len(index);
    let (payload, tag) = slot.split_at_mut(payload_len);
    payload[..n].copy_from_slice(&plaintext[start..start + n]);
    let t = cipher.seal_chunk(index, layout.is_last(index), payload);
    tag[..CHUNK_TAG_LEN].copy_from_slice(&t);
}

/// The lowest-indexed error of a parallel pass, so that the error reported does not depend
/// on scheduling.
fn first_error<I>(results: I) -> Result<(), AttachmentError>
where
    I: ParallelIterator<Item = (u64, Result<(), AttachmentError>)>,
{
    match results
        .filter_map(|(index, result)| result.err().map(|e| (index, e)))
        .min_by_key(|(index, _)| *index)
    {
        Some((_, error)) => Err(error),
        None => Ok(()),
    }
}

/// Opens one sealed chunk into `slot` (its plaintext bytes; empty for all-padding chunks).
fn open_into(
    cipher: &PayloadCipher,
    layout: &Layout,
    index: u64,
    sealed_chunk: &[u8],
    slot: &mut [u8],
) -> Result<(), AttachmentError> {
    if slot.len() == layout.chunk_payload_len(index) {
        let (ciphertext, tag) =
            split_tag(sealed_chunk).ok_or(AttachmentError::ChunkAuthentication { index })?;
        if ciphertext.len() != slot.len() {
            return Err(AttachmentError::ChunkAuthentication { index });
        }
        slot.copy_from_slice(ciphertext);
        cipher.open_chunk(index, layout.is_last(index), slot, tag)
    } else {
        // Holds the chunk's plaintext and padding: wiped when dropped.
        let mut scratch = Zeroizing::new(sealed_chunk.to_vec());
        let n = open_chunk_in_place(cipher, layout, index, &mut scratch)?;
        let plaintext = scratch
            .get(..n)
            .filter(|p| p.len() == slot.len())
            .ok_or(AttachmentError::ChunkAuthentication { index })?;
        slot.copy_from_slice(plaintext);
        Ok(())
    }
}

/// [`open`](super::open) on all cores, with the same checks in the same order and the same
/// errors (a failing chunk is reported by its lowest index).
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub fn open_parallel(
    pointer: &AttachmentPointer,
    sealed: &[u8],
) -> Result<Vec<u8>, AttachmentError> {
    let (cipher, layout) = open_prefix_sized(pointer, sealed, sealed.len() as u64)?;
    let plaintext_len =
        usize::try_from(layout.plaintext_len()).map_err(|_| AttachmentError::TooLarge {
            len: layout.plaintext_len(),
        })?;
    // The length check above ensured that `sealed` holds the prefix and the tree.
    let prefix = sealed.get(..PREFIX_LEN).unwrap_or_default();
    let stored_tree = sealed
        .get(layout.tree_offset() as usize..)
        .unwrap_or_default();
    let leaves =
        tree::verify_stored_tree(layout.chunk_count(), stored_tree, prefix, pointer.root())?;
    // Holds plaintext: wiped when dropped, on every path (the plaintext returned on success
    // is moved out first).
    let mut out = Zeroizing::new(vec![0u8; plaintext_len]);
    let chunk = layout.chunk_size().bytes();
    let data_chunks = plaintext_len.div_ceil(chunk) as u64;
    let cipher = &cipher;
    let layout = &layout;
    // Checks chunk `index` of `sealed` (whose length was checked) against its leaf, then
    // opens it into `slot`.
    let open_chunk = |index: u64, slot: &mut [u8]| {
        let start = layout.chunk_offset(index) as usize;
        let sealed_chunk = sealed
            .get(start..start + layout.chunk_sealed_len(index))
            .unwrap_or_default();
        let result = check_chunk(layout, index, sealed_chunk, leaf_in(leaves, 0, index))
            .and_then(|()| open_into(cipher, layout, index, sealed_chunk, slot));
        (index, result)
    };
    // Chunks holding plaintext decrypt into their place in the output.
    let data = first_error(
        out.par_chunks_mut(chunk)
            .enumerate()
            .map(|(i, slot)| open_chunk(i as u64, slot)),
    );
    // Chunks of padding only are verified and discarded.
    let padding = first_error(
        (data_chunks..layout.chunk_count())
            .into_par_iter()
            .map(|index| open_chunk(index, &mut [])),
    );
    data.and(padding)?;
    Ok(core::mem::take(&mut *out))
}

impl RandomAccess {
    /// [`read_range`](Self::read_range) on all cores: the chunks of the range are fetched
    /// and verified in parallel. `read_at` is called concurrently, so it must be `Sync`
    /// (`std::os::unix::fs::FileExt::read_exact_at` on a shared `File` is).
    ///
    /// The hashes of the range's chunks are fetched and checked against the pointer's root
    /// first; each chunk is checked against its hash before it is decrypted.
    #[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
    pub fn read_range_parallel<F>(
        &self,
        range: Range<u64>,
        read_at: F,
    ) -> Result<Vec<u8>, AttachmentError>
    where
        F: Fn(u64, &mut [u8]) -> io::Result<()> + Sync,
    {
        let plan = self.plan(range)?;
        let range = plan.plaintext_range();
        let range_len = usize::try_from(range.end - range.start).map_err(|_| {
            AttachmentError::InvalidRange {
                reason: "the range does not fit in memory",
            }
        })?;
        if range_len == 0 {
            return Ok(Vec::new());
        }
        let leaves = self.fetch_leaves(&plan, &read_at)?;
        let leaves = &leaves;
        // The output and every worker's chunk buffer hold plaintext: all are wiped when
        // dropped, on every path (the plaintext returned on success is moved out first).
        let mut out = Zeroizing::new(vec![0u8; range_len]);
        let chunk = self.layout().chunk_size().bytes_u64();
        // Split the output at chunk boundaries: the first piece ends at the first boundary.
        let first_len = ((range.start / chunk + 1) * chunk).min(range.end) - range.start;
        let (head, tail) = out.split_at_mut(first_len as usize);
        let first = plan.chunks().start;
        let pieces = rayon::iter::once((first, head)).chain(
            tail.par_chunks_mut(chunk as usize)
                .enumerate()
                .map(|(i, piece)| (first + 1 + i as u64, piece)),
        );
        let layout = self.layout();
        first_error(pieces.map_init(
            || Zeroizing::new(vec![0u8; chunk as usize + CHUNK_TAG_LEN]),
            |buf, (index, piece)| {
                let result = (|| {
                    let len = layout.chunk_sealed_len(index);
                    let sealed_chunk = buf
                        .get_mut(..len)
                        .ok_or(AttachmentError::ChunkAuthentication { index })?;
                    read_at(layout.chunk_offset(index), sealed_chunk)?;
                    let leaf = leaf_in(leaves, first, index);
                    check_chunk(layout, index, sealed_chunk, leaf)?;
                    let n = open_chunk_in_place(self.cipher(), layout, index, sealed_chunk)?;
                    let plaintext = plan
                        .range_in_chunk(layout.payload_offset(index), n)
                        .and_then(|part| sealed_chunk.get(part))
                        .filter(|p| p.len() == piece.len())
                        .ok_or(AttachmentError::ChunkAuthentication { index })?;
                    piece.copy_from_slice(plaintext);
                    Ok(())
                })();
                (index, result)
            },
        ))?;
        Ok(core::mem::take(&mut *out))
    }
}

/// Chunks per batch when streaming in parallel: two batches are in memory at a time.
const STREAM_BATCH_CHUNKS: usize = 16;

/// One chunk of a batch: its index, payload length and last-chunk flag.
#[derive(Clone, Copy)]
struct Slot {
    index: u64,
    payload_len: usize,
    last: bool,
}

/// Reads plaintext into batches of chunk slots (`payload || room for the tag`), learning the
/// plaintext length at the end of the input and padding from there.
struct BatchReader<'r, R: ?Sized> {
    input: &'r mut R,
    chunk_size: super::format::ChunkSize,
    next_index: u64,
    plaintext: ChunkReader,
    /// Known once the input has ended.
    layout: Option<Layout>,
}

impl<R: io::Read + ?Sized> BatchReader<'_, R> {
    /// Fills the chunk slots of `buf` with the next chunks' payloads; returns
    /// their descriptions (empty when every chunk was produced).
    fn fill(&mut self, buf: &mut [u8], slots: &mut Vec<Slot>) -> Result<(), AttachmentError> {
        slots.clear();
        let chunk = self.chunk_size.bytes();
        for slot in buf.chunks_mut(chunk + CHUNK_TAG_LEN) {
            let index = self.next_index;
            if let Some(layout) = self.layout {
                // After the input: padding chunks, if any remain.
                if index >= layout.chunk_count() {
                    break;
                }
                let payload_len = layout.chunk_payload_len(index);
                slot[..payload_len].fill(0);
                slots.push(Slot {
                    index,
                    payload_len,
                    last: layout.is_last(index),
                });
                self.next_index += 1;
                continue;
            }
            let (filled, ended) = self.plaintext.read_chunk(self.input, &mut slot[..chunk])?;
            if ended {
                let layout = Layout::new(self.plaintext.total, self.chunk_size)?;
                let payload_len = layout.chunk_payload_len(index);
                slot[filled..payload_len].fill(0);
                slots.push(Slot {
                    index,
                    payload_len,
                    last: layout.is_last(index),
                });
                self.layout = Some(layout);
            } else {
                slots.push(Slot {
                    index,
                    payload_len: chunk,
                    last: false,
                });
            }
            self.next_index += 1;
        }
        Ok(())
    }
}

fn stride_of(layout_chunk: usize) -> usize {
    layout_chunk + CHUNK_TAG_LEN
}

/// [`seal_stream`](super::seal_stream) on all cores: batches of chunks are encrypted and
/// hashed in parallel while the previous batch is written. Memory is two batches of 16
/// chunks (2 MiB + 512 bytes with 64 KiB chunks) plus, as for `seal_stream`, 32 bytes of
/// leaf hash a chunk until the tree is written. Same output as `seal_stream` for the same
/// random draws.
///
/// The writer must be `Send` because writing overlaps with encryption on another thread.
///
/// ```
/// use ratchetbox::attachment::{self, AttachmentMetadata};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let video = vec![3u8; 5 << 20];
/// let mut sealed = Vec::new();
/// let pointer = attachment::seal_stream_parallel(
///     &mut rng,
///     &mut video.as_slice(),
///     &mut sealed,
///     AttachmentMetadata::new("video/mp4", "long.mp4")?,
/// )?;
/// let mut opened = Vec::new();
/// attachment::open_stream_parallel(&pointer, &mut std::io::Cursor::new(&sealed), &mut opened)?;
/// assert_eq!(opened, video);
/// # Ok::<(), ratchetbox::AttachmentError>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub fn seal_stream_parallel<G, R, W>(
    rng: &mut G,
    input: &mut R,
    output: &mut W,
    metadata: AttachmentMetadata,
) -> Result<AttachmentPointer, AttachmentError>
where
    G: CryptoRng + ?Sized,
    R: io::Read + ?Sized,
    W: io::Write + Send + ?Sized,
{
    let chunk_size = metadata.chunk_size();
    let stride = stride_of(chunk_size.bytes());
    let keys = SealKeys::generate(rng, chunk_size);
    let mut leaves: Vec<Hash> = Vec::new();
    let mut batch_leaves: Vec<Hash> = Vec::with_capacity(STREAM_BATCH_CHUNKS);
    output.write_all(&keys.prefix)?;

    let mut reader = BatchReader {
        input,
        chunk_size,
        next_index: 0,
        plaintext: ChunkReader::default(),
        layout: None,
    };
    let cipher = &keys.cipher;
    let encrypt = |buf: &mut [u8], slots: &[Slot], hashes: &mut Vec<Hash>| {
        buf.par_chunks_mut(stride)
            .zip(slots.par_iter())
            .map(|(room, slot)| {
                let (payload, tag) = room.split_at_mut(slot.payload_len);
                let t = cipher.seal_chunk(slot.index, slot.last, payload);
                tag[..CHUNK_TAG_LEN].copy_from_slice(&t);
                let sealed = room
                    .get(..slot.payload_len + CHUNK_TAG_LEN)
                    .unwrap_or_default();
                tree::leaf_hash(slot.index, slot.last, sealed)
            })
            .collect_into_vec(hashes);
    };
    // Batches start at one chunk and double up to 16, so that a small input does not pay
    // for large buffers (the input length is not known in advance).
    let mut batch_slots = 1;
    // Both batches hold plaintext until encrypted (and after a read error): wiped when
    // dropped, and before a batch grows, so that a reallocation leaves no copy behind.
    let mut current = Zeroizing::new(vec![0u8; stride]);
    let mut next = Zeroizing::new(Vec::new());
    let mut current_slots = Vec::with_capacity(STREAM_BATCH_CHUNKS);
    let mut next_slots = Vec::with_capacity(STREAM_BATCH_CHUNKS);
    reader.fill(&mut current, &mut current_slots)?;
    encrypt(&mut current, &current_slots, &mut batch_leaves);
    leaves.extend_from_slice(&batch_leaves);
    while !current_slots.is_empty() {
        batch_slots = (batch_slots * 2).min(STREAM_BATCH_CHUNKS);
        if next.capacity() < batch_slots * stride {
            next.zeroize();
        }
        next.resize(batch_slots * stride, 0);
        reader.fill(&mut next, &mut next_slots)?;
        let (written, ()) = rayon::join(
            || -> io::Result<()> {
                for (room, slot) in current.chunks(stride).zip(&current_slots) {
                    output.write_all(&room[..slot.payload_len + CHUNK_TAG_LEN])?;
                }
                Ok(())
            },
            || encrypt(&mut next, &next_slots, &mut batch_leaves),
        );
        written?;
        leaves.extend_from_slice(&batch_leaves);
        core::mem::swap(&mut current, &mut next);
        core::mem::swap(&mut current_slots, &mut next_slots);
    }
    let tree_root = tree::write_tree(leaves, |node| output.write_all(node))?;
    output.flush()?;
    let total = reader.plaintext.total;
    let root = tree::pointer_root(&keys.prefix, &tree_root);
    Ok(AttachmentPointer::new(keys.file_key, total, root, metadata))
}

/// [`open_stream`](super::open_stream) on all cores: each batch of 16 chunks is checked
/// against the pointer's root and decrypted in parallel while the next batch is read, then
/// written. Memory is two batches and 32 KiB of hashes. As for `open_stream`, the source
/// must be seekable: the hashes that prove the chunks are stored after them.
///
/// Release is progressive per batch: a batch is written only after all its chunks verified,
/// and, as with `open_stream`, only `Ok` proves the attachment complete. Errors are the
/// same as `open_stream`'s (a failing chunk is reported by its lowest index).
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub fn open_stream_parallel<R, W>(
    pointer: &AttachmentPointer,
    input: &mut R,
    output: &mut W,
) -> Result<u64, AttachmentError>
where
    R: io::Read + io::Seek + Send + ?Sized,
    W: io::Write + ?Sized,
{
    let (mut source, cipher) = SeekSource::new(pointer, input)?;
    let layout = source.layout;
    // The chunk size was validated (at most 1 MiB) before these allocations.
    let stride = stride_of(layout.chunk_size().bytes());
    // Batches of up to 16 chunks, fewer for a small file (the count is known here).
    let batch_chunks = usize::try_from(layout.chunk_count())
        .unwrap_or(STREAM_BATCH_CHUNKS)
        .min(STREAM_BATCH_CHUNKS);
    // Both batches hold plaintext once decrypted: wiped when dropped, on every path.
    let mut current = Batch::new(batch_chunks * stride);
    let mut next = Batch::new(batch_chunks * stride);
    let decrypt = |batch: &mut Batch| -> Result<(), AttachmentError> {
        let first = batch.chunks.start;
        let leaves = &batch.leaves;
        first_error(
            batch
                .buf
                .par_chunks_mut(stride)
                .take((batch.chunks.end - first) as usize)
                .enumerate()
                .map(|(j, room)| {
                    let index = first + j as u64;
                    let len = layout.chunk_sealed_len(index);
                    let sealed_chunk = &mut room[..len];
                    let result =
                        check_chunk(&layout, index, sealed_chunk, leaf_in(leaves, first, index))
                            .and_then(|()| {
                                open_chunk_in_place(&cipher, &layout, index, sealed_chunk)
                            })
                            .map(|_| ());
                    (index, result)
                }),
        )
    };

    // A batch holds the chunks read completely, and the error (truncation, I/O, a tree
    // that does not verify) that ended it early, if any: that error is reported only after
    // those chunks, as a sequential opener would.
    let mut next_index = 0u64;
    current.read(&mut source, &mut next_index, stride);
    let mut written = 0u64;
    while !current.chunks.is_empty() || current.error.is_some() {
        let more = current.error.is_none() && next_index < layout.chunk_count();
        let ((), decrypted) = rayon::join(
            || {
                if more {
                    next.read(&mut source, &mut next_index, stride);
                } else {
                    next.chunks = next_index..next_index;
                    next.error = None;
                }
            },
            || decrypt(&mut current),
        );
        decrypted?;
        for (room, index) in current.buf.chunks(stride).zip(current.chunks.clone()) {
            let plaintext = &room[..layout.chunk_plaintext_len(index)];
            output.write_all(plaintext)?;
            written += plaintext.len() as u64;
        }
        if let Some(error) = current.error.take() {
            return Err(error);
        }
        core::mem::swap(&mut current, &mut next);
    }
    output.flush()?;
    Ok(written)
}

/// One batch of a parallel stream opener: sealed chunks, then their plaintext.
struct Batch {
    /// Wiped when dropped: holds plaintext once decrypted.
    buf: Zeroizing<Vec<u8>>,
    /// The chunks read completely.
    chunks: Range<u64>,
    /// Their verified leaf hashes.
    leaves: Vec<u8>,
    /// The error that ended the batch early, if any.
    error: Option<AttachmentError>,
}

impl Batch {
    fn new(len: usize) -> Self {
        Self {
            buf: Zeroizing::new(vec![0u8; len]),
            chunks: 0..0,
            leaves: Vec::with_capacity(STREAM_BATCH_CHUNKS * HASH_LEN),
            error: None,
        }
    }

    /// Reads the next chunks (from `*next_index`) into the batch, with their verified
    /// leaves.
    fn read<R: io::Read + io::Seek>(
        &mut self,
        source: &mut SeekSource<R>,
        next_index: &mut u64,
        stride: usize,
    ) {
        let layout = source.layout;
        let first = *next_index;
        let slots = (self.buf.len() / stride) as u64;
        // A batch never straddles two windows of verified leaves.
        let window_end = (first / STREAM_WINDOW + 1) * STREAM_WINDOW;
        let end = (first + slots).min(layout.chunk_count()).min(window_end);
        self.leaves.clear();
        self.error = None;
        for (room, index) in self.buf.chunks_mut(stride).zip(first..end) {
            let len = layout.chunk_sealed_len(index);
            let result = source
                .leaf(index)
                .map(|leaf| self.leaves.extend_from_slice(leaf));
            let result = result.and_then(|()| source.read_chunk(index, &mut room[..len]));
            if let Err(e) = result {
                self.chunks = first..index;
                self.error = Some(e);
                *next_index = index;
                return;
            }
        }
        self.chunks = first..end;
        *next_index = end;
    }
}
