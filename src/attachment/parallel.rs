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
use super::open::{open_chunk_in_place, open_prefix, prefix_of};
use super::pointer::{AttachmentMetadata, AttachmentPointer};
use super::random_access::RandomAccess;

/// Chunks per batch when sealing: the digest of one batch is computed while the next is
/// encrypted.
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
    let mut previous: &[u8] = &[];
    let mut first_index = 0u64;
    while !remaining.is_empty() {
        let take = remaining.len().min(SEAL_BATCH_CHUNKS * stride);
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
pub fn open_parallel(
    pointer: &AttachmentPointer,
    sealed: &[u8],
) -> Result<Vec<u8>, AttachmentError> {
    let prefix = prefix_of(sealed)?;
    let (cipher, layout) = open_prefix(pointer, prefix)?;
    let found = sealed.len() as u64;
    if found != layout.sealed_len() {
        return Err(AttachmentError::LengthMismatch {
            expected: layout.sealed_len(),
            found,
        });
    }
    let plaintext_len =
        usize::try_from(layout.plaintext_len()).map_err(|_| AttachmentError::TooLarge {
            len: layout.plaintext_len(),
        })?;
    let mut out = vec![0u8; plaintext_len];
    let chunk = layout.chunk_size().bytes();
    let stride = chunk + CHUNK_TAG_LEN;
    let body = sealed.get(PREFIX_LEN..).unwrap_or_default();
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
            // Chunks holding plaintext decrypt into their place in the output.
            let data = first_error(out.par_chunks_mut(chunk).enumerate().map(|(i, slot)| {
                let index = i as u64;
                let start = i * stride;
                let sealed_chunk = body
                    .get(start..start + layout.chunk_sealed_len(index))
                    .unwrap_or_default();
                (index, open_into(cipher, layout, index, sealed_chunk, slot))
            }));
            // Chunks of padding only are verified and discarded.
            let padding = first_error((data_chunks..layout.chunk_count()).into_par_iter().map(
                |index| {
                    let start = index as usize * stride;
                    let sealed_chunk = body
                        .get(start..start + layout.chunk_sealed_len(index))
                        .unwrap_or_default();
                    (
                        index,
                        open_into(cipher, layout, index, sealed_chunk, &mut []),
                    )
                },
            ));
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
                    let chunk_start = index * chunk;
                    let lo = (range.start.max(chunk_start) - chunk_start) as usize;
                    let plaintext = sealed_chunk
                        .get(lo..n)
                        .and_then(|p| p.get(..piece.len()))
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
