//! Sealing and opening on all cores (feature `parallel`, rayon).
//!
//! Chunks are independent (each has its own nonce), so they are encrypted and decrypted in
//! parallel. The SHA-256 digest of the sealed file is inherently sequential; it runs on one
//! core alongside the chunk work (sealing: pipelined one batch behind the encryption;
//! opening: over the input, concurrently with the decryption), so with SHA-256 slower than
//! AES-GCM it is what bounds the speed-up.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;
use std::io;

use rand_core::CryptoRng;
use rayon::prelude::*;
use sha2::{Digest, Sha256};

use crate::aead::split_tag;
use crate::error::AttachmentError;

use super::format::{
    CHUNK_TAG_LEN, Layout, PREFIX_LEN, PayloadCipher, SealKeys, check_digest, finish_digest,
};
use super::open::{open_chunk_in_place, open_prefix, open_prefix_sized, read_prefix};
use super::pointer::{AttachmentMetadata, AttachmentPointer};
use super::random_access::RandomAccess;
use super::seal::ChunkReader;

/// At most this many chunks per batch when sealing: the digest of one batch is computed
/// while the next is encrypted. Smaller files use smaller batches (an eighth of the file,
/// at least one chunk) so that hashing and encryption still overlap.
const SEAL_BATCH_CHUNKS: usize = 32;

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
    let chunk = layout.chunk_size().bytes();
    let stride = chunk + CHUNK_TAG_LEN;

    let mut out = vec![0u8; sealed_len];
    let (prefix, mut remaining) = out.split_at_mut(PREFIX_LEN);
    prefix.copy_from_slice(&keys.prefix);
    let mut hasher = Sha256::new();
    hasher.update(&*prefix);

    let cipher = &keys.cipher;
    let layout_ref = &layout;
    let batch_chunks = usize::try_from(layout.chunk_count() / 8)
        .unwrap_or(SEAL_BATCH_CHUNKS)
        .clamp(1, SEAL_BATCH_CHUNKS);
    let mut previous: &[u8] = &[];
    let mut first_index = 0u64;
    while !remaining.is_empty() {
        let take = remaining.len().min(batch_chunks * stride);
        let (batch, rest) = remaining.split_at_mut(take);
        let to_hash = previous;
        rayon::join(
            || hasher.update(to_hash),
            || {
                batch
                    .par_chunks_mut(stride)
                    .enumerate()
                    .for_each(|(j, slot)| {
                        let index = first_index + j as u64;
                        seal_slot(cipher, layout_ref, plaintext, index, slot);
                    });
            },
        );
        first_index += take.div_ceil(stride) as u64;
        previous = batch;
        remaining = rest;
    }
    hasher.update(previous);
    let digest = finish_digest(hasher);
    Ok((
        AttachmentPointer::new(keys.file_key, len, digest, metadata),
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
        let mut scratch = sealed_chunk.to_vec();
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
    let mut out = vec![0u8; plaintext_len];
    let chunk = layout.chunk_size().bytes();
    let data_chunks = plaintext_len.div_ceil(chunk) as u64;
    let (digest, chunks) = rayon::join(
        || {
            let mut hasher = Sha256::new();
            hasher.update(sealed);
            finish_digest(hasher)
        },
        || {
            let cipher = &cipher;
            let layout = &layout;
            // Opens chunk `index` of `sealed` (whose length was checked) into `slot`.
            let open_chunk = |index: u64, slot: &mut [u8]| {
                let start = layout.chunk_offset(index) as usize;
                let sealed_chunk = sealed
                    .get(start..start + layout.chunk_sealed_len(index))
                    .unwrap_or_default();
                (index, open_into(cipher, layout, index, sealed_chunk, slot))
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
            data.and(padding)
        },
    );
    chunks?;
    check_digest(&digest, pointer.digest())?;
    Ok(out)
}

impl RandomAccess {
    /// [`read_range`](Self::read_range) on all cores: the chunks of the range are fetched
    /// and verified in parallel. `read_at` is called concurrently, so it must be `Sync`
    /// (`std::os::unix::fs::FileExt::read_exact_at` on a shared `File` is).
    ///
    /// Reading the whole range `0..plaintext_len` opens a seekable file on all cores, but as
    /// with all random access, the SHA-256 digest is not checked.
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
        let mut out = vec![0u8; range_len];
        if out.is_empty() {
            return Ok(out);
        }
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
            || vec![0u8; chunk as usize + CHUNK_TAG_LEN],
            |buf, (index, piece)| {
                let result = (|| {
                    let len = layout.chunk_sealed_len(index);
                    let sealed_chunk = buf
                        .get_mut(..len)
                        .ok_or(AttachmentError::ChunkAuthentication { index })?;
                    read_at(layout.chunk_offset(index), sealed_chunk)?;
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
        Ok(out)
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

/// [`seal_stream`](super::seal_stream) on all cores: batches of chunks are encrypted in
/// parallel while the previous batch is hashed and written. Memory is two batches of 16
/// chunks (2 MiB + 512 bytes with 64 KiB chunks), whatever the length. Same output as
/// `seal_stream` for the same random draws.
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
/// attachment::open_stream_parallel(&pointer, &mut sealed.as_slice(), &mut opened)?;
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
    let mut hasher = Sha256::new();
    hasher.update(keys.prefix);
    output.write_all(&keys.prefix)?;

    let mut reader = BatchReader {
        input,
        chunk_size,
        next_index: 0,
        plaintext: ChunkReader::default(),
        layout: None,
    };
    let cipher = &keys.cipher;
    let encrypt = |buf: &mut [u8], slots: &[Slot]| {
        buf.par_chunks_mut(stride)
            .zip(slots.par_iter())
            .for_each(|(room, slot)| {
                let (payload, tag) = room.split_at_mut(slot.payload_len);
                let t = cipher.seal_chunk(slot.index, slot.last, payload);
                tag[..CHUNK_TAG_LEN].copy_from_slice(&t);
            });
    };
    // Batches start at one chunk and double up to 16, so that a small input does not pay
    // for large buffers (the input length is not known in advance).
    let mut batch_slots = 1;
    let mut current = vec![0u8; stride];
    let mut next = Vec::new();
    let mut current_slots = Vec::with_capacity(STREAM_BATCH_CHUNKS);
    let mut next_slots = Vec::with_capacity(STREAM_BATCH_CHUNKS);
    reader.fill(&mut current, &mut current_slots)?;
    encrypt(&mut current, &current_slots);
    while !current_slots.is_empty() {
        batch_slots = (batch_slots * 2).min(STREAM_BATCH_CHUNKS);
        next.resize(batch_slots * stride, 0);
        reader.fill(&mut next, &mut next_slots)?;
        let (written, ()) = rayon::join(
            || -> io::Result<()> {
                for (room, slot) in current.chunks(stride).zip(&current_slots) {
                    let sealed = &room[..slot.payload_len + CHUNK_TAG_LEN];
                    hasher.update(sealed);
                    output.write_all(sealed)?;
                }
                Ok(())
            },
            || encrypt(&mut next, &next_slots),
        );
        written?;
        core::mem::swap(&mut current, &mut next);
        core::mem::swap(&mut current_slots, &mut next_slots);
    }
    output.flush()?;
    let total = reader.plaintext.total;
    Ok(AttachmentPointer::new(
        keys.file_key,
        total,
        finish_digest(hasher),
        metadata,
    ))
}

/// [`open_stream`](super::open_stream) on all cores: each batch of 16 chunks is hashed
/// while the previous batch is decrypted in parallel, then written. Memory is two batches.
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
    R: io::Read + ?Sized,
    W: io::Write + ?Sized,
{
    let prefix = read_prefix(input)?;
    let (cipher, layout) = open_prefix(pointer, &prefix)?;
    let mut hasher = Sha256::new();
    hasher.update(prefix);
    // The chunk size was validated (at most 1 MiB) before these allocations.
    let stride = stride_of(layout.chunk_size().bytes());
    // Batches of up to 16 chunks, fewer for a small file (the count is known here).
    let batch_len = usize::try_from(layout.chunk_count())
        .unwrap_or(STREAM_BATCH_CHUNKS)
        .min(STREAM_BATCH_CHUNKS)
        * stride;
    let mut current = vec![0u8; batch_len];
    let mut next = vec![0u8; batch_len];
    let mut cursor = StreamCursor {
        consumed: PREFIX_LEN as u64,
        next_index: 0,
    };
    let hash = |hasher: &mut Sha256, buf: &[u8], chunks: Range<u64>| {
        for (room, index) in buf.chunks(stride).zip(chunks) {
            hasher.update(&room[..layout.chunk_sealed_len(index)]);
        }
    };
    let decrypt = |buf: &mut [u8], chunks: Range<u64>| -> Result<(), AttachmentError> {
        first_error(
            buf.par_chunks_mut(stride)
                .take((chunks.end - chunks.start) as usize)
                .enumerate()
                .map(|(j, room)| {
                    let index = chunks.start + j as u64;
                    let len = layout.chunk_sealed_len(index);
                    let result = open_chunk_in_place(&cipher, &layout, index, &mut room[..len]);
                    (index, result.map(|_| ()))
                }),
        )
    };

    // A batch holds the chunks read completely, and the error (truncation, I/O) that ended
    // it early, if any: that error is reported only after those chunks, as a sequential
    // stream would.
    let (mut current_chunks, mut current_error) = cursor.read_batch(input, &layout, &mut current);
    hash(&mut hasher, &current, current_chunks.clone());
    let mut written = 0u64;
    while !current_chunks.is_empty() || current_error.is_some() {
        let (next_chunks, next_error) = if current_error.is_none() {
            cursor.read_batch(input, &layout, &mut next)
        } else {
            (0..0, None)
        };
        let ((), decrypted) = rayon::join(
            || hash(&mut hasher, &next, next_chunks.clone()),
            || decrypt(&mut current, current_chunks.clone()),
        );
        decrypted?;
        for (room, index) in current.chunks(stride).zip(current_chunks.clone()) {
            let plaintext = &room[..layout.chunk_plaintext_len(index)];
            output.write_all(plaintext)?;
            written += plaintext.len() as u64;
        }
        if let Some(error) = current_error {
            return Err(error);
        }
        current_chunks = next_chunks;
        current_error = next_error;
        core::mem::swap(&mut current, &mut next);
    }
    let mut probe = [0u8; 1];
    if super::seal::read_full(input, &mut probe)? != 0 {
        return Err(AttachmentError::TrailingData);
    }
    check_digest(&finish_digest(hasher), pointer.digest())?;
    output.flush()?;
    Ok(written)
}

/// Position of a parallel stream opener in its input.
struct StreamCursor {
    consumed: u64,
    next_index: u64,
}

impl StreamCursor {
    /// Reads the next batch of sealed chunks into `buf`: returns the indexes of the chunks
    /// read completely, and the error that stopped the batch early, if any.
    fn read_batch<R: io::Read + ?Sized>(
        &mut self,
        input: &mut R,
        layout: &Layout,
        buf: &mut [u8],
    ) -> (Range<u64>, Option<AttachmentError>) {
        let stride = stride_of(layout.chunk_size().bytes());
        let first = self.next_index;
        let slots = (buf.len() / stride) as u64;
        let end = (first + slots).min(layout.chunk_count());
        for (room, index) in buf.chunks_mut(stride).zip(first..end) {
            let len = layout.chunk_sealed_len(index);
            let got = match super::seal::read_full(input, &mut room[..len]) {
                Ok(got) => got,
                Err(e) => return (first..index, Some(e.into())),
            };
            self.consumed += got as u64;
            if got < len {
                let missing = layout.sealed_len() - self.consumed;
                return (first..index, Some(AttachmentError::Truncated { missing }));
            }
        }
        self.next_index = end;
        (first..end, None)
    }
}
