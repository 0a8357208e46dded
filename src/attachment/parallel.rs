//! Sealing and opening on all cores (feature `parallel`, rayon).
//!
//! Chunks are independent (each has its own nonce and its own leaf hash), so they are
//! encrypted or decrypted and hashed in parallel, each chunk hashed right before (opening)
//! or after (sealing) its AES-GCM pass while it is in cache. Only the hash tree above the
//! leaves is sequential: one 65-byte BLAKE3 call per chunk, a few milliseconds for 1 GiB.
//!
//! The streaming functions run a three-stage pipeline over batches of chunks: while the pool
//! encrypts or decrypts one batch, the calling thread writes the batch before it and reads
//! the batch after it, so reading, writing and the cryptography overlap.

use alloc::vec;
use alloc::vec::Vec;
use core::ops::Range;
use std::io;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use rand_core::CryptoRng;
use rayon::prelude::*;
use zeroize::Zeroizing;

use crate::error::AttachmentError;

use super::format::{CHUNK_TAG_LEN, ChunkSize, Layout, PREFIX_LEN, SealKeys};
use super::in_place::{Exec, open_in_place_with, seal_in_place_with};
use super::open::{SeekSource, leaf_in, open_from, open_slot, verified_leaves, whole_file};
use super::pointer::{AttachmentMetadata, AttachmentPointer};
use super::random_access::RandomAccess;
use super::seal::{ChunkReader, SealSetup, seal_from, seal_slot};
use super::tree::{self, HASH_LEN, Hash};

/// Ranges of chunks a thread of the pool gets when sealing or opening in place: a few, so
/// that a thread that finishes early takes work from one that was held up.
const RANGES_PER_THREAD: u64 = 4;

/// Chunk bytes in a range at least (4 chunks at the default size, about 0.2 ms of work on
/// one core): below that, a range's work is too small to be worth a task.
const MIN_RANGE_BYTES: u64 = 256 << 10;

/// Rayon's pool.
pub(crate) struct AllCores;

impl Exec for AllCores {
    fn ranges(layout: &Layout) -> u64 {
        let threads = rayon::current_num_threads() as u64;
        let chunks_per_range = (MIN_RANGE_BYTES / layout.chunk_size().bytes_u64()).max(1);
        (threads * RANGES_PER_THREAD).min(layout.chunk_count() / chunks_per_range)
    }

    fn map<T: Send, U: Send>(items: Vec<T>, work: impl Fn(T) -> U + Sync + Send) -> Vec<U> {
        items.into_par_iter().map(work).collect()
    }
}

/// [`seal`](super::seal) on all cores: same inputs, same output format, same random draws
/// (so a seeded generator gives byte-identical results).
///
/// Like `seal`, it returns a new allocation, whose fresh pages the kernel provides as the
/// cores first write them; [`seal_in_place_parallel`] seals in the caller's buffer.
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
    let SealSetup {
        layout,
        sealed_len,
        keys,
    } = SealSetup::new(rng, plaintext.len(), &metadata)?;
    let mut out = vec![0u8; sealed_len];
    let (body, stored_tree) = out.split_at_mut(layout.tree_offset() as usize);
    let (prefix, chunks) = body.split_at_mut(PREFIX_LEN);
    prefix.copy_from_slice(&keys.prefix);
    let (cipher, layout_ref) = (&keys.cipher, &layout);
    let mut leaves: Vec<Hash> = Vec::new();
    chunks
        .par_chunks_mut(layout.chunk_size().bytes() + CHUNK_TAG_LEN)
        .enumerate()
        .map(|(i, slot)| seal_from(cipher, layout_ref, plaintext, i as u64, slot))
        .collect_into_vec(&mut leaves);
    let tree_root = tree::store_tree(leaves, stored_tree);
    Ok((
        keys.into_pointer(layout.plaintext_len(), &tree_root, metadata),
        out,
    ))
}

/// [`seal_in_place`](super::seal_in_place) on all cores, with the same guarantees and the
/// same output for the same random draws.
///
/// The chunks are split into a few ranges a thread (of at least 256 KiB each), sealed at the
/// same time: each thread moves, encrypts and hashes one chunk after the other as
/// `seal_in_place` does, keeping each chunk in its core's cache. The first `70 + 16 i`
/// bytes of plaintext of a range starting at chunk `i` lie under the ranges before it: they
/// are copied aside first (wiped after use), about 1 MiB in all for a 1 GiB file.
///
/// ```
/// use ratchetbox::attachment::{self, AttachmentMetadata};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let meta = AttachmentMetadata::default();
/// let video = vec![9u8; 5 << 20];
/// let mut buffer = Vec::with_capacity(meta.sealed_len(video.len())?);
/// buffer.extend_from_slice(&video);
/// let pointer = attachment::seal_in_place_parallel(&mut rng, &mut buffer, meta)?;
/// assert_eq!(attachment::open_in_place_parallel(&pointer, buffer)?, video);
/// # Ok::<(), ratchetbox::AttachmentError>(())
/// ```
///
/// # Errors
/// [`AttachmentError::TooLarge`], as for `seal_in_place`.
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub fn seal_in_place_parallel<R: CryptoRng + ?Sized>(
    rng: &mut R,
    buffer: &mut Vec<u8>,
    metadata: AttachmentMetadata,
) -> Result<AttachmentPointer, AttachmentError> {
    seal_in_place_with::<AllCores, R>(rng, buffer, metadata)
}

/// [`open_in_place`](super::open_in_place) on all cores, with the same checks in the same
/// order, the same errors (a failing chunk is reported by its lowest index) and the same
/// guarantees: on any error the buffer is wiped before it is freed.
///
/// The chunks are split into ranges as for [`seal_in_place_parallel`], checked, decrypted
/// and moved down at the same time; the plaintext that belongs under the ranges before a
/// range is kept aside (wiped after use) until every range is done.
///
/// # Errors
/// Those of [`open`](super::open).
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub fn open_in_place_parallel(
    pointer: &AttachmentPointer,
    sealed: Vec<u8>,
) -> Result<Vec<u8>, AttachmentError> {
    open_in_place_with::<AllCores>(pointer, sealed)
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

/// [`open`](super::open) on all cores, with the same checks in the same order and the same
/// errors (a failing chunk is reported by its lowest index).
///
/// Like `open`, it returns a new allocation; [`open_in_place_parallel`] opens in the sealed
/// file's own buffer.
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub fn open_parallel(
    pointer: &AttachmentPointer,
    sealed: &[u8],
) -> Result<Vec<u8>, AttachmentError> {
    let (cipher, layout, plaintext_len) = whole_file(pointer, sealed)?;
    // The length check ensured that `sealed` holds the prefix and the tree.
    let (body, stored_tree) = sealed.split_at(layout.tree_offset() as usize);
    let leaves = verified_leaves(pointer, &layout, body, stored_tree)?;
    // The output and every worker's scratch chunk hold plaintext: wiped when dropped, on
    // every path (the plaintext returned on success is moved out first).
    let mut out = Zeroizing::new(vec![0u8; plaintext_len]);
    let chunk = layout.chunk_size().bytes();
    let data_chunks = plaintext_len.div_ceil(chunk) as u64;
    let (cipher, layout) = (&cipher, &layout);
    let scratch = || Zeroizing::new(Vec::with_capacity(chunk + CHUNK_TAG_LEN));
    // Checks chunk `index` of `sealed` (whose length was checked) against its leaf, then
    // opens it into `slot`.
    let open_chunk = |scratch: &mut Zeroizing<Vec<u8>>, index: u64, slot: &mut [u8]| {
        let start = layout.chunk_offset(index) as usize;
        let sealed_chunk = sealed
            .get(start..start + layout.chunk_sealed_len(index))
            .unwrap_or_default();
        let leaf = leaf_in(leaves, 0, index);
        let result = open_from(cipher, layout, index, sealed_chunk, leaf, slot, scratch);
        (index, result)
    };
    // Chunks holding plaintext decrypt into their place in the output.
    let data = first_error(
        out.par_chunks_mut(chunk)
            .enumerate()
            .map_init(scratch, |scratch, (i, slot)| {
                open_chunk(scratch, i as u64, slot)
            }),
    );
    // Chunks of padding only are verified and discarded.
    let padding = first_error(
        (data_chunks..layout.chunk_count())
            .into_par_iter()
            .map_init(scratch, |scratch, index| {
                open_chunk(scratch, index, &mut [])
            }),
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
                    let n = open_slot(self.cipher(), layout, index, sealed_chunk, leaf)?;
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

/// Chunks a worker reads, seals or opens and writes at a time when streaming in parallel (at
/// most; an opener takes fewer for a small file): 256 KiB at the default chunk size, which
/// stays in one core's cache from read to write.
const STREAM_BATCH_CHUNKS: usize = 4;

/// The state a parallel stream shares between its workers.
struct Stream<I, O> {
    /// The input side and the turn of the next batch read.
    input: Mutex<(I, u64)>,
    /// The output side.
    output: Mutex<Output<O>>,
    /// Signalled when a batch was written or the stream stopped.
    turned: Condvar,
}

/// The output side of a parallel stream: batches are handed to it in the order they were
/// read.
struct Output<O> {
    sink: O,
    /// The turn of the next batch to write.
    turn: u64,
    /// Set by the first error (or a worker's panic): every batch read after it is dropped
    /// unwritten.
    stopped: bool,
    /// The first error, which stopped the stream.
    error: Option<AttachmentError>,
}

/// Locks `mutex`; a worker that panicked while holding it leaves its data usable (the
/// stream then reports nothing more from that worker).
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stops a stream if it is dropped while its worker unwinds from a panic, and wakes the
/// workers waiting for their turn.
struct StopOnPanic<'s, I, O>(&'s Stream<I, O>);

impl<I, O> Drop for StopOnPanic<'_, I, O> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(&self.0.output).stopped = true;
            self.0.turned.notify_all();
        }
    }
}

/// Runs a stream on every thread of the pool. Each worker repeatedly takes the next batch
/// from `read` (under the input lock, so batches are read in order, each with its turn),
/// processes it with `work` on its own thread, and hands it to `write` (under the output
/// lock) when every batch read before it was written, so each batch stays in one core's
/// cache from read to write and the output is in input order. `read` returns `false` when
/// the input holds nothing more. The first error `write` returns (which reports a batch's
/// read or processing error at that batch's turn, after every batch before it) stops the
/// stream and is returned with nothing written after it. Returns the input and output.
fn stream<B, I, O>(
    input: I,
    output: O,
    new_batch: impl Fn() -> B + Sync,
    read: impl Fn(&mut I, &mut B) -> bool + Sync,
    work: impl Fn(&mut B) + Sync,
    write: impl Fn(&mut O, &mut B) -> Result<(), AttachmentError> + Sync,
) -> Result<(I, O), AttachmentError>
where
    I: Send,
    O: Send,
{
    let shared = Stream {
        input: Mutex::new((input, 0)),
        output: Mutex::new(Output {
            sink: output,
            turn: 0,
            stopped: false,
            error: None,
        }),
        turned: Condvar::new(),
    };
    let worker = || {
        // If `read`, `work` or `write` panics (a caller's reader or writer may), the others
        // must not wait for this worker's turn forever: the panic then reaches the caller.
        let _stop = StopOnPanic(&shared);
        let mut batch = new_batch();
        loop {
            let turn = {
                let mut input = lock(&shared.input);
                if lock(&shared.output).stopped || !read(&mut input.0, &mut batch) {
                    return;
                }
                input.1 += 1;
                input.1 - 1
            };
            work(&mut batch);
            let mut output = lock(&shared.output);
            while output.turn != turn && !output.stopped {
                output = shared
                    .turned
                    .wait(output)
                    .unwrap_or_else(PoisonError::into_inner);
            }
            if output.stopped {
                return;
            }
            let result = write(&mut output.sink, &mut batch);
            output.turn += 1;
            let failed = result.is_err();
            if let Err(error) = result {
                output.stopped = true;
                output.error = Some(error);
            }
            drop(output);
            shared.turned.notify_all();
            if failed {
                return;
            }
        }
    };
    rayon::scope(|scope| {
        for _ in 0..rayon::current_num_threads() {
            scope.spawn(|_| worker());
        }
    });
    let Stream { input, output, .. } = shared;
    let output = output.into_inner().unwrap_or_else(PoisonError::into_inner);
    match output.error {
        Some(error) => Err(error),
        None => Ok((
            input.into_inner().unwrap_or_else(PoisonError::into_inner).0,
            output.sink,
        )),
    }
}

/// One chunk of a batch: its index, payload length and last-chunk flag.
#[derive(Clone, Copy)]
struct Slot {
    index: u64,
    payload_len: usize,
    last: bool,
}

/// A batch of a parallel stream sealer: chunk slots (`payload || room for the tag`), read
/// from the input, then sealed in place.
struct SealBatch {
    /// Holds plaintext until sealed (and after a read error): wiped when dropped. It is
    /// allocated once, at its full size, so no reallocation leaves a copy behind.
    buf: Zeroizing<Vec<u8>>,
    slots: Vec<Slot>,
    leaves: Vec<Hash>,
    /// The error that ended the input at this batch, reported at its turn.
    error: Option<AttachmentError>,
}

impl SealBatch {
    fn new() -> Self {
        Self {
            buf: Zeroizing::new(Vec::new()),
            slots: Vec::with_capacity(STREAM_BATCH_CHUNKS),
            leaves: Vec::with_capacity(STREAM_BATCH_CHUNKS),
            error: None,
        }
    }
}

/// Reads plaintext into batches of chunk slots (`payload || room for the tag`), learning the
/// plaintext length at the end of the input and padding from there.
struct BatchReader<'r, R: ?Sized> {
    input: &'r mut R,
    chunk_size: ChunkSize,
    next_index: u64,
    plaintext: ChunkReader,
    /// Known once the input has ended.
    layout: Option<Layout>,
    /// Set by a read error: nothing more is read.
    failed: bool,
}

impl<R: io::Read + ?Sized> BatchReader<'_, R> {
    /// Fills `batch` with the next chunks' payloads and their descriptions, or the error
    /// that ended the input; `false` once every chunk was produced or an error reported.
    fn next(&mut self, batch: &mut SealBatch) -> bool {
        if self.failed {
            return false;
        }
        match self.fill(batch) {
            Ok(()) => !batch.slots.is_empty(),
            Err(error) => {
                self.failed = true;
                batch.slots.clear();
                batch.error = Some(error);
                true
            }
        }
    }

    fn fill(&mut self, batch: &mut SealBatch) -> Result<(), AttachmentError> {
        batch.slots.clear();
        if self
            .layout
            .is_some_and(|layout| self.next_index >= layout.chunk_count())
        {
            return Ok(());
        }
        let stride = self.chunk_size.bytes() + CHUNK_TAG_LEN;
        // Allocated by the worker's first batch (a worker that gets none allocates nothing),
        // at its full size: every batch has this size, so the buffer never grows again and
        // no reallocation leaves plaintext behind.
        batch.buf.resize(STREAM_BATCH_CHUNKS * stride, 0);
        let chunk = self.chunk_size.bytes();
        for slot in batch.buf.chunks_mut(stride) {
            let index = self.next_index;
            let (payload_len, last) = if let Some(layout) = self.layout {
                // After the input: padding chunks, if any remain.
                if index >= layout.chunk_count() {
                    break;
                }
                let payload_len = layout.chunk_payload_len(index);
                slot[..payload_len].fill(0);
                (payload_len, layout.is_last(index))
            } else {
                let (filled, ended) = self.plaintext.read_chunk(self.input, &mut slot[..chunk])?;
                if ended {
                    let layout = Layout::new(self.plaintext.total, self.chunk_size)?;
                    let payload_len = layout.chunk_payload_len(index);
                    slot[filled..payload_len].fill(0);
                    self.layout = Some(layout);
                    (payload_len, layout.is_last(index))
                } else {
                    (chunk, false)
                }
            };
            batch.slots.push(Slot {
                index,
                payload_len,
                last,
            });
            self.next_index += 1;
        }
        Ok(())
    }
}

/// [`seal_stream`](super::seal_stream) on all cores. Every thread of the pool runs the
/// stream in turn: it reads the next batch of up to 4 chunks, encrypts and hashes it, and
/// writes it once the batches read before it were written, so each chunk stays in one
/// core's cache from read to write. Memory is a batch a thread (256 KiB + 64 bytes with
/// 64 KiB chunks) plus, as for `seal_stream`, 32 bytes of leaf hash a chunk until the tree
/// is written. Same output as `seal_stream` for the same random draws.
///
/// `input` and `output` are used from the pool's threads (one at a time, under a lock), so
/// both must be `Send`.
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
///
/// # Errors
/// Those of `seal_stream`: the first error in stream order (a read error is reported after
/// the chunks read before it were written).
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub fn seal_stream_parallel<G, R, W>(
    rng: &mut G,
    input: &mut R,
    output: &mut W,
    metadata: AttachmentMetadata,
) -> Result<AttachmentPointer, AttachmentError>
where
    G: CryptoRng + ?Sized,
    R: io::Read + Send + ?Sized,
    W: io::Write + Send + ?Sized,
{
    let chunk_size = metadata.chunk_size();
    let stride = chunk_size.bytes() + CHUNK_TAG_LEN;
    let keys = SealKeys::generate(rng, chunk_size);
    output.write_all(&keys.prefix)?;
    let reader = BatchReader {
        input,
        chunk_size,
        next_index: 0,
        plaintext: ChunkReader::default(),
        layout: None,
        failed: false,
    };
    let cipher = &keys.cipher;
    let (reader, (output, leaves)) = stream(
        reader,
        (output, Vec::<Hash>::new()),
        SealBatch::new,
        |reader, batch| reader.next(batch),
        |batch| {
            batch.leaves.clear();
            for (room, slot) in batch.buf.chunks_mut(stride).zip(&batch.slots) {
                let sealed = room
                    .get_mut(..slot.payload_len + CHUNK_TAG_LEN)
                    .unwrap_or_default();
                batch
                    .leaves
                    .push(seal_slot(cipher, slot.index, slot.last, sealed));
            }
        },
        |(output, leaves), batch| {
            if let Some(error) = batch.error.take() {
                return Err(error);
            }
            for (room, slot) in batch.buf.chunks(stride).zip(&batch.slots) {
                output.write_all(&room[..slot.payload_len + CHUNK_TAG_LEN])?;
            }
            leaves.extend_from_slice(&batch.leaves);
            Ok(())
        },
    )?;
    let tree_root = tree::write_tree(leaves, |node| output.write_all(node))?;
    output.flush()?;
    Ok(keys.into_pointer(reader.plaintext.total, &tree_root, metadata))
}

/// The input side of a parallel stream opener.
struct OpenInput<'r, R: ?Sized> {
    source: SeekSource<&'r mut R>,
    next_index: u64,
    /// Set by a batch that ended early with an error: nothing more is read.
    failed: bool,
}

/// [`open_stream`](super::open_stream) on all cores. Every thread of the pool runs the
/// stream in turn: it reads the next batch of up to 4 chunks with their leaves (checked
/// against the pointer's root), checks and decrypts each chunk, and writes the batch once
/// the batches read before it were written and all its chunks verified, so each chunk stays
/// in one core's cache from read to write. Memory is a batch a thread (256 KiB + 64 bytes
/// with 64 KiB chunks) and 32 KiB of hashes. As for `open_stream`, the source must be
/// seekable: the hashes that prove the chunks are stored after them.
///
/// Release is progressive per batch and, as with `open_stream`, only `Ok` proves the
/// attachment complete. `input` and `output` are used from the pool's threads (one at a
/// time, under a lock), so both must be `Send`.
///
/// # Errors
/// Those of `open_stream`, the first in stream order (a failing chunk is reported by its
/// lowest index).
#[cfg_attr(docsrs, doc(cfg(feature = "parallel")))]
pub fn open_stream_parallel<R, W>(
    pointer: &AttachmentPointer,
    input: &mut R,
    output: &mut W,
) -> Result<u64, AttachmentError>
where
    R: io::Read + io::Seek + Send + ?Sized,
    W: io::Write + Send + ?Sized,
{
    let (source, cipher) = SeekSource::new(pointer, input)?;
    let layout = source.layout;
    // The chunk size was validated (at most 1 MiB) before these allocations.
    let stride = layout.chunk_size().bytes() + CHUNK_TAG_LEN;
    // Batches of up to 4 chunks, fewer for a small file (the count is known here): at least
    // a few batches a thread, so that the threads finish together.
    let per_thread = rayon::current_num_threads().saturating_mul(RANGES_PER_THREAD as usize);
    let batch_chunks = usize::try_from(layout.chunk_count() / per_thread.max(1) as u64)
        .unwrap_or(STREAM_BATCH_CHUNKS)
        .clamp(1, STREAM_BATCH_CHUNKS);
    let input = OpenInput {
        source,
        next_index: 0,
        failed: false,
    };
    let (_, (output, written)) = stream(
        input,
        (output, 0u64),
        // Every batch holds plaintext once decrypted: wiped when dropped, on every path.
        || OpenBatch::new(batch_chunks * stride),
        |input, batch| {
            if input.failed || input.next_index >= layout.chunk_count() {
                return false;
            }
            batch.read(&mut input.source, &mut input.next_index, stride);
            input.failed = batch.error.is_some();
            true
        },
        |batch| {
            let first = batch.chunks.start;
            batch.decrypted = Ok(());
            for (room, index) in batch.buf.chunks_mut(stride).zip(batch.chunks.clone()) {
                let sealed_chunk = &mut room[..layout.chunk_sealed_len(index)];
                let leaf = leaf_in(&batch.leaves, first, index);
                if let Err(error) = open_slot(&cipher, &layout, index, sealed_chunk, leaf) {
                    batch.decrypted = Err(error);
                    break;
                }
            }
        },
        |(output, written), batch| {
            // The first failing chunk of the batch (its chunks are never written); then the
            // read error that ended the batch, after its chunks.
            core::mem::replace(&mut batch.decrypted, Ok(()))?;
            for (room, index) in batch.buf.chunks(stride).zip(batch.chunks.clone()) {
                let plaintext = &room[..layout.chunk_plaintext_len(index)];
                output.write_all(plaintext)?;
                *written += plaintext.len() as u64;
            }
            batch.error.take().map_or(Ok(()), Err)
        },
    )?;
    output.flush()?;
    Ok(written)
}

/// One batch of a parallel stream opener: sealed chunks, then their plaintext.
struct OpenBatch {
    /// Wiped when dropped: holds plaintext once decrypted.
    buf: Zeroizing<Vec<u8>>,
    /// The chunks read completely.
    chunks: Range<u64>,
    /// Their verified leaf hashes.
    leaves: Vec<u8>,
    /// The error that ended the batch early, if any.
    error: Option<AttachmentError>,
    /// The first failing chunk's error, once decrypted.
    decrypted: Result<(), AttachmentError>,
}

impl OpenBatch {
    fn new(len: usize) -> Self {
        Self {
            buf: Zeroizing::new(vec![0u8; len]),
            chunks: 0..0,
            leaves: Vec::with_capacity(STREAM_BATCH_CHUNKS * HASH_LEN),
            error: None,
            decrypted: Ok(()),
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
        let end = (first + slots).min(layout.chunk_count());
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `AllCores::ranges` for `len` bytes in chunks of 2^`log2` bytes on a pool of `threads`.
    fn ranges(threads: usize, len: u64, log2: u8) -> u64 {
        let chunk = ChunkSize::from_log2(log2).expect("chunk size");
        let layout = Layout::new(len, chunk).expect("layout");
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("pool")
            .install(|| AllCores::ranges(&layout))
    }

    #[test]
    fn in_place_ranges_are_a_few_a_thread_of_at_least_256_kib() {
        // Four a thread when the file is large enough.
        assert_eq!(ranges(2, 1 << 30, 16), 8);
        assert_eq!(ranges(3, 1 << 30, 16), 12);
        // Otherwise as many ranges of 256 KiB as fit: 16 chunks of 64 KiB make 4.
        assert_eq!(ranges(2, 1 << 20, 16), 4);
        assert_eq!(ranges(2, (1 << 20) - 1, 16), 4);
        assert_eq!(ranges(8, 1 << 20, 16), 4);
        // 256 KiB of 1 KiB chunks is one range; 1 MiB chunks make one range each.
        assert_eq!(ranges(2, 256 << 10, 10), 1);
        // Fewer chunks than a range: none (`parts` then makes the one range).
        assert_eq!(ranges(2, 100 << 10, 10), 0);
        assert_eq!(ranges(2, 3 << 20, 20), 3);
    }
}
