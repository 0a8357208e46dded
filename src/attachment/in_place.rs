//! Sealing and opening in the caller's buffer: no allocation the size of the file, no page
//! of fresh memory to fault in, each byte read and written once from memory.
//!
//! A sealed chunk is 16 bytes longer than its payload and the file starts with the 70-byte
//! prefix, so chunk `i` lives `70 + 16 i` bytes further into the sealed file than its
//! payload does into the plaintext. Sealing therefore goes from the last chunk to the first:
//! each chunk's plaintext is moved up to its sealed place (over plaintext already moved) and
//! encrypted and hashed there while it is in cache. Opening goes from the first to the last:
//! each chunk is checked against its verified leaf, decrypted where it lies and moved down to
//! its plaintext place (over chunks already opened).
//!
//! The same pipeline serves one thread and all cores ([`Exec`]): a step processes one group
//! of chunks (encrypts or decrypts them) while the chunks of the neighbouring group are
//! moved, which only ever touches bytes the step does not.

use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use crate::error::AttachmentError;

use super::format::{Layout, PREFIX_LEN, PayloadCipher};
use super::open::{open_slot, whole_file};
use super::pointer::{AttachmentMetadata, AttachmentPointer};
use super::seal::{SealSetup, seal_slot};
use super::tree::{self, HASH_LEN, Hash};

/// How the in-place functions run their per-chunk work: on the calling thread, or (feature
/// `parallel`) on rayon's pool.
pub(crate) trait Exec {
    /// Chunks in one step of the pipeline.
    fn group(layout: &Layout) -> u64;

    /// Runs `f`, the whole pipeline, where its steps are cheapest to start.
    fn run<T: Send>(f: impl FnOnce() -> T + Send) -> T;

    /// Runs `a` and `b`, possibly at the same time.
    fn join(a: impl FnOnce() + Send, b: impl FnOnce() + Send);

    /// Runs `work(j, slot, out)` for every slot of `region` (consecutive `stride`-byte
    /// pieces, the last one possibly shorter) with the `j`-th element of `outs`.
    fn each_slot<S: Send>(
        region: &mut [u8],
        stride: usize,
        outs: &mut [S],
        work: impl Fn(u64, &mut [u8], &mut S) + Sync + Send,
    );
}

/// One chunk at a time, on the calling thread.
pub(crate) struct OneThread;

impl Exec for OneThread {
    fn group(_: &Layout) -> u64 {
        1
    }

    fn run<T: Send>(f: impl FnOnce() -> T + Send) -> T {
        f()
    }

    fn join(a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
        a();
        b();
    }

    fn each_slot<S: Send>(
        region: &mut [u8],
        stride: usize,
        outs: &mut [S],
        work: impl Fn(u64, &mut [u8], &mut S) + Sync + Send,
    ) {
        for (j, (slot, out)) in region.chunks_mut(stride).zip(outs).enumerate() {
            work(j as u64, slot, out);
        }
    }
}

/// The chunks of group `k` (`first..end`) when groups hold `group` chunks each.
fn group_bounds(layout: &Layout, group: u64, k: u64) -> (u64, u64) {
    let first = k * group;
    (first, (first + group).min(layout.chunk_count()))
}

/// Where chunk `index` starts in the sealed file; for `index == chunk_count`, where the last
/// chunk ends (the tree offset).
fn sealed_start(layout: &Layout, index: u64) -> usize {
    // Both are at most the sealed length, which the callers hold in memory.
    if index >= layout.chunk_count() {
        layout.tree_offset() as usize
    } else {
        layout.chunk_offset(index) as usize
    }
}

/// Moves the plaintext of chunks `first..end` (last first) from their plaintext places to
/// their sealed places and zeroes their padding. `buf` starts at the start of the file and
/// reaches at least the end of chunk `end - 1`'s sealed place.
fn move_up(layout: &Layout, buf: &mut [u8], (first, end): (u64, u64)) {
    for index in (first..end).rev() {
        let from = layout.payload_offset(index) as usize;
        let plaintext = layout.chunk_plaintext_len(index);
        let to = sealed_start(layout, index);
        buf.copy_within(from..from + plaintext, to);
        if let Some(padding) = buf.get_mut(to + plaintext..to + layout.chunk_payload_len(index)) {
            padding.fill(0);
        }
    }
}

/// Moves the opened plaintext of chunks `first..end` (first first) from their sealed places
/// down to their plaintext places.
fn move_down(layout: &Layout, buf: &mut [u8], (first, end): (u64, u64)) {
    for index in first..end {
        let from = sealed_start(layout, index);
        let plaintext = layout.chunk_plaintext_len(index);
        buf.copy_within(
            from..from + plaintext,
            layout.payload_offset(index) as usize,
        );
    }
}

/// Seals the plaintext at the start of `body` in place: on return `body` holds every sealed
/// chunk at its place (`body` ends at the tree offset; its first 70 bytes, the prefix, are
/// the caller's to write) and `leaves` their leaf hashes.
fn seal_body<X: Exec>(
    cipher: &PayloadCipher,
    layout: &Layout,
    body: &mut [u8],
    leaves: &mut [Hash],
) {
    let group = X::group(layout);
    let groups = layout.chunk_count().div_ceil(group);
    let stride = layout.chunk_size().bytes() + super::format::CHUNK_TAG_LEN;
    move_up(layout, body, group_bounds(layout, group, groups - 1));
    for k in (0..groups).rev() {
        let (first, end) = group_bounds(layout, group, k);
        // Group k's sealed places, above: encrypted. Below them: group k - 1 is moved up to
        // its sealed places, which end where group k's begin; its plaintext lies below that.
        let (lower, upper) = body.split_at_mut(sealed_start(layout, first));
        let region = upper
            .get_mut(..sealed_start(layout, end) - sealed_start(layout, first))
            .unwrap_or_default();
        let outs = leaves
            .get_mut(first as usize..end as usize)
            .unwrap_or_default();
        X::join(
            || {
                X::each_slot(region, stride, outs, |j, slot, leaf| {
                    let index = first + j;
                    *leaf = seal_slot(cipher, index, layout.is_last(index), slot);
                });
            },
            || {
                if k > 0 {
                    move_up(layout, lower, group_bounds(layout, group, k - 1));
                }
            },
        );
    }
}

/// Opens the sealed chunks of `body` in place (`body` ends at the tree offset), checking each
/// against its leaf in `leaves` (verified against the root) before decrypting it. On success
/// the plaintext is at the start of `body`. On error, `body` may hold plaintext of the chunks
/// before the failing one: the caller wipes it.
fn open_body<X: Exec>(
    cipher: &PayloadCipher,
    layout: &Layout,
    body: &mut [u8],
    leaves: &[u8],
) -> Result<(), AttachmentError> {
    let group = X::group(layout);
    let groups = layout.chunk_count().div_ceil(group);
    let stride = layout.chunk_size().bytes() + super::format::CHUNK_TAG_LEN;
    // One result per chunk of a group; the group is at most the whole file, so this is at
    // most one small entry per chunk of a file that is in memory.
    let mut results: Vec<Result<(), AttachmentError>> = (0..group.min(layout.chunk_count()))
        .map(|_| Ok(()))
        .collect();
    for k in 0..=groups {
        // Group k's sealed chunks, above: checked and decrypted (none after the last
        // group). Below them: group k - 1, opened at the previous step, is moved down to its
        // plaintext places.
        let current = (k < groups).then(|| group_bounds(layout, group, k));
        let split = current.map_or(body.len(), |(first, _)| sealed_start(layout, first));
        let (lower, upper) = body.split_at_mut(split);
        let (first, end) = current.unwrap_or((0, 0));
        let region_len = current.map_or(0, |_| sealed_start(layout, end) - split);
        let region = upper.get_mut(..region_len).unwrap_or_default();
        let outs = results
            .get_mut(..(end - first) as usize)
            .unwrap_or_default();
        X::join(
            || {
                X::each_slot(region, stride, &mut *outs, |j, slot, result| {
                    let index = first + j;
                    let at = index as usize * HASH_LEN;
                    let leaf = leaves.get(at..at + HASH_LEN).unwrap_or_default();
                    *result = open_slot(cipher, layout, index, slot, leaf).map(|_| ());
                });
            },
            || {
                if k > 0 {
                    move_down(layout, lower, group_bounds(layout, group, k - 1));
                }
            },
        );
        // The lowest failing index of the group: the same error as one chunk at a time.
        if let Some(error) = outs
            .iter_mut()
            .find_map(|result| core::mem::replace(result, Ok(())).err())
        {
            return Err(error);
        }
    }
    Ok(())
}

/// [`seal_in_place`] with the chunk work run by `X`.
pub(crate) fn seal_in_place_with<X: Exec, R: CryptoRng + ?Sized>(
    rng: &mut R,
    buffer: &mut Vec<u8>,
    metadata: AttachmentMetadata,
) -> Result<AttachmentPointer, AttachmentError> {
    let SealSetup {
        layout,
        sealed_len,
        keys,
    } = SealSetup::new(rng, buffer.len(), &metadata)?;
    if buffer.capacity() < sealed_len {
        // Growing in place could leave a copy of the plaintext in the freed allocation:
        // move it to one of the right size, and wipe the old one before it is freed.
        let mut room = Vec::with_capacity(sealed_len);
        room.extend_from_slice(buffer);
        buffer.zeroize();
        *buffer = room;
    }
    buffer.resize(sealed_len, 0);
    let (body, stored_tree) = buffer.split_at_mut(layout.tree_offset() as usize);
    // 32 bytes a chunk of a file that is in memory.
    let mut leaves = vec![[0u8; HASH_LEN]; layout.chunk_count() as usize];
    X::run(|| seal_body::<X>(&keys.cipher, &layout, body, &mut leaves));
    // Chunk 0's plaintext has left the prefix's place.
    if let Some(prefix) = body.get_mut(..PREFIX_LEN) {
        prefix.copy_from_slice(&keys.prefix);
    }
    let tree_root = tree::store_tree(leaves, stored_tree);
    Ok(keys.into_pointer(layout.plaintext_len(), &tree_root, metadata))
}

/// [`open_in_place`] with the chunk work run by `X`.
pub(crate) fn open_in_place_with<X: Exec>(
    pointer: &AttachmentPointer,
    sealed: Vec<u8>,
) -> Result<Vec<u8>, AttachmentError> {
    // Holds plaintext once a chunk is opened: wiped when dropped, on every path out of here
    // (on success the plaintext is moved out first, and the bytes after it were zeroed).
    let mut buffer = Zeroizing::new(sealed);
    let (cipher, layout, plaintext_len) = whole_file(pointer, &buffer)?;
    let (body, stored_tree) = buffer.split_at_mut(layout.tree_offset() as usize);
    let prefix = body.get(..PREFIX_LEN).unwrap_or_default();
    let leaves =
        tree::verify_stored_tree(layout.chunk_count(), stored_tree, prefix, pointer.root())?;
    X::run(|| open_body::<X>(&cipher, &layout, body, leaves))?;
    // Everything after the plaintext: copies of opened chunks at their sealed places, tags,
    // the tree. Zeroed, so that the vector returned holds the plaintext and nothing else.
    if let Some(rest) = buffer.get_mut(plaintext_len..) {
        rest.fill(0);
    }
    buffer.truncate(plaintext_len);
    Ok(core::mem::take(&mut *buffer))
}

/// Seals the plaintext in `buffer` in place: on success `buffer` holds the sealed file,
/// byte for byte what [`seal`](super::seal) returns for the same random draws, and the
/// pointer is returned.
///
/// This is the fast way to seal a file that is in memory: no allocation the size of the
/// file (whose fresh pages the kernel must fault in and zero, which costs about as much as
/// the encryption), and each byte goes through memory once. Chunks are processed from the
/// last to the first: each chunk's plaintext is moved up to its sealed place, zero-padded,
/// encrypted there and hashed while it is in cache; the prefix and the hash tree are written
/// last.
///
/// # Capacity
/// The sealed file is longer than the plaintext ([`Layout::sealed_len`]: the prefix, a tag
/// a chunk, the padding and the tree). Reserve it before reading the plaintext in with
/// [`AttachmentMetadata::sealed_len`] to keep the allocation. Otherwise this function moves
/// the plaintext to a new allocation of the sealed length and wipes the old one before it is
/// freed (growing the vector would leave a copy of the plaintext in freed memory).
///
/// # Guarantees
/// - On error, `buffer` is exactly as it was (length, capacity and contents) and nothing was
///   drawn from `rng`.
/// - The random number generator supplies the file key (first 32 bytes drawn) and the header
///   salt (next 32 bytes), as for `seal`.
/// - No copy of the plaintext is left anywhere else by this function; bytes of `buffer`'s
///   allocation past the sealed length are not touched.
///
/// ```
/// use ratchetbox::attachment::{self, AttachmentMetadata};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let meta = AttachmentMetadata::new("image/png", "sunset.png")?;
/// let photo = vec![0x42u8; 250_000];
///
/// // Room for the sealed file first, then the plaintext: no reallocation.
/// let mut buffer = Vec::with_capacity(meta.sealed_len(photo.len())?);
/// buffer.extend_from_slice(&photo);
/// let capacity = buffer.capacity();
/// let pointer = attachment::seal_in_place(&mut rng, &mut buffer, meta)?;
/// assert_eq!(buffer.capacity(), capacity);
///
/// // `buffer` now holds the sealed file: upload it; the receiver opens it in place too.
/// let opened = attachment::open_in_place(&pointer, buffer)?;
/// assert_eq!(opened, photo);
/// # Ok::<(), ratchetbox::AttachmentError>(())
/// ```
///
/// # Errors
/// [`AttachmentError::TooLarge`] if the plaintext exceeds the format's 2^50-byte limit or
/// the sealed file would not fit in memory.
///
/// [`Layout::sealed_len`]: super::Layout::sealed_len
pub fn seal_in_place<R: CryptoRng + ?Sized>(
    rng: &mut R,
    buffer: &mut Vec<u8>,
    metadata: AttachmentMetadata,
) -> Result<AttachmentPointer, AttachmentError> {
    seal_in_place_with::<OneThread, R>(rng, buffer, metadata)
}

/// Opens a whole sealed file in place: takes the sealed bytes and returns the same
/// allocation holding the plaintext, with the checks of [`open`](super::open), in the same
/// order, with the same errors.
///
/// This is the fast way to open a file that is in memory: no allocation the size of the
/// file, each byte through memory once. The header, the key commitment, the length and the
/// whole stored tree are checked first; then, from the first chunk to the last, each chunk
/// is checked against its verified leaf, decrypted where it lies, its padding checked, and
/// its plaintext moved down to its place.
///
/// # Guarantees
/// - On success the returned vector holds exactly the plaintext; the rest of its allocation
///   (its capacity is `sealed`'s) is zero, so no other copy of the plaintext is in it.
/// - On any error nothing is returned: the buffer, which may hold the plaintext of the
///   chunks before the failing one, is wiped (all of its allocation) before it is freed.
///
/// ```
/// use ratchetbox::AttachmentError;
/// use ratchetbox::attachment::{self, AttachmentMetadata};
///
/// let mut rng = ratchetbox::OsRng::new();
/// let (pointer, sealed) = attachment::seal(&mut rng, b"voice note", AttachmentMetadata::default())?;
///
/// let mut tampered = sealed.clone();
/// tampered[attachment::PREFIX_LEN] ^= 1;
/// assert!(matches!(
///     attachment::open_in_place(&pointer, tampered),
///     Err(AttachmentError::ChunkNotCommitted { index: 0 })
/// ));
/// assert_eq!(attachment::open_in_place(&pointer, sealed)?, b"voice note");
/// # Ok::<(), AttachmentError>(())
/// ```
///
/// # Errors
/// Those of [`open`](super::open).
pub fn open_in_place(
    pointer: &AttachmentPointer,
    sealed: Vec<u8>,
) -> Result<Vec<u8>, AttachmentError> {
    open_in_place_with::<OneThread>(pointer, sealed)
}

#[cfg(test)]
mod tests {
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use super::*;
    use crate::attachment::format::{CHUNK_TAG_LEN, ChunkSize};
    use crate::attachment::{open, seal};
    use alloc::format;

    /// `N` chunks a step, one half of a step run before the other.
    struct Groups<const N: u64>;

    impl<const N: u64> Exec for Groups<N> {
        fn group(_: &Layout) -> u64 {
            N
        }

        fn run<T: Send>(f: impl FnOnce() -> T + Send) -> T {
            f()
        }

        fn join(a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
            a();
            b();
        }

        fn each_slot<S: Send>(
            region: &mut [u8],
            stride: usize,
            outs: &mut [S],
            work: impl Fn(u64, &mut [u8], &mut S) + Sync + Send,
        ) {
            OneThread::each_slot(region, stride, outs, work);
        }
    }

    /// `N` chunks a step, the second half of a step run before the first: the two halves
    /// touch different bytes, so the order must not matter.
    struct Reversed<const N: u64>;

    impl<const N: u64> Exec for Reversed<N> {
        fn group(_: &Layout) -> u64 {
            N
        }

        fn run<T: Send>(f: impl FnOnce() -> T + Send) -> T {
            f()
        }

        fn join(a: impl FnOnce() + Send, b: impl FnOnce() + Send) {
            b();
            a();
        }

        fn each_slot<S: Send>(
            region: &mut [u8],
            stride: usize,
            outs: &mut [S],
            work: impl Fn(u64, &mut [u8], &mut S) + Sync + Send,
        ) {
            OneThread::each_slot(region, stride, outs, work);
        }
    }

    fn kib() -> ChunkSize {
        ChunkSize::from_log2(10).expect("1 KiB")
    }

    fn pattern(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i % 251) as u8 ^ (i >> 10) as u8)
            .collect()
    }

    /// Seals and opens `len` bytes in place with `X` and checks against `seal` and `open`,
    /// then flips chunks `bad` and checks the error names the first of them.
    fn check<X: Exec>(len: usize, bad: &[u64]) {
        let meta = AttachmentMetadata::default().with_chunk_size(kib());
        let data = pattern(len);
        let (pointer, sealed) = seal(
            &mut ChaCha20Rng::seed_from_u64(len as u64),
            &data,
            meta.clone(),
        )
        .expect("seal");
        let mut buffer = data.clone();
        let p = seal_in_place_with::<X, _>(
            &mut ChaCha20Rng::seed_from_u64(len as u64),
            &mut buffer,
            meta,
        )
        .expect("seal in place");
        assert!(
            buffer == sealed,
            "{len} bytes, {} a group",
            X::group(&pointer_layout(&pointer))
        );
        assert_eq!(p.root(), pointer.root());
        assert!(open_in_place_with::<X>(&pointer, sealed.clone()).expect("opens") == data);
        let layout = pointer_layout(&pointer);
        let mut tampered = sealed.clone();
        let mut bad = bad.to_vec();
        bad.dedup();
        for &index in &bad {
            let at = layout.chunk_offset(index) as usize + 3;
            tampered[at] ^= 0x20;
        }
        if let Some(&first) = bad.iter().min() {
            let expected = open(&pointer, &tampered).expect_err("tampered");
            assert!(
                matches!(expected, AttachmentError::ChunkNotCommitted { index } if index == first)
            );
            let got = open_in_place_with::<X>(&pointer, tampered).expect_err("tampered");
            assert_eq!(
                format!("{got:?}"),
                format!("{expected:?}"),
                "{len} bytes, bad {bad:?}"
            );
        }
    }

    fn pointer_layout(pointer: &AttachmentPointer) -> Layout {
        Layout::new(pointer.plaintext_len(), kib()).expect("layout")
    }

    fn check_all<X: Exec>() {
        // One chunk; a few; padding in the last chunk; a whole chunk of padding and more
        // (PADME of 16.5 KiB adds 1.5 KiB); 130 chunks, whose shift (70 + 16 i bytes) grows
        // past two whole chunks, so that a chunk's sealed place overlaps the plaintext of
        // the chunks two and three after it.
        for len in [0, 1, 1024, 3000, 5 * 1024, 16 * 1024 + 512, 130 * 1024 + 7] {
            let chunks = Layout::new(len as u64, kib())
                .expect("layout")
                .chunk_count();
            check::<X>(len, &[]);
            check::<X>(len, &[chunks - 1]);
            check::<X>(len, &[chunks / 2, chunks - 1]);
            check::<X>(len, &[chunks - 1, 0]);
        }
    }

    #[test]
    fn every_group_size_seals_and_opens_like_the_whole_file_functions() {
        check_all::<OneThread>();
        check_all::<Groups<2>>();
        check_all::<Groups<3>>();
        check_all::<Groups<7>>();
        check_all::<Groups<1000>>();
        check_all::<Reversed<1>>();
        check_all::<Reversed<3>>();
        check_all::<Reversed<16>>();
    }

    #[test]
    fn the_moves_put_each_chunk_where_the_format_does() {
        let layout = Layout::new(3000, kib()).expect("layout");
        // Plaintext 0..3000, then room up to the sealed length.
        let mut buf = pattern(3000);
        buf.resize(layout.sealed_len() as usize, 0xFF);
        move_up(&layout, &mut buf, (0, 3));
        for index in 0..3 {
            let at = layout.chunk_offset(index) as usize;
            let n = layout.chunk_plaintext_len(index);
            let from = layout.payload_offset(index) as usize;
            assert_eq!(&buf[at..at + n], &pattern(3000)[from..from + n]);
            // The padding is zeroed, the tag's room left for the cipher.
            let payload = layout.chunk_payload_len(index);
            assert!(buf[at + n..at + payload].iter().all(|&b| b == 0));
            assert_eq!(payload + CHUNK_TAG_LEN, layout.chunk_sealed_len(index));
        }
        move_down(&layout, &mut buf, (0, 3));
        assert_eq!(&buf[..3000], &pattern(3000)[..]);
    }
}
