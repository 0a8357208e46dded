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
//! The chunks are split into ranges that are processed independently, one after the other on
//! one thread or at the same time on all cores ([`Exec`]). A range owns the bytes of its
//! chunks' sealed places, and each of its chunks stays in one core's cache from move to hash.
//! The first bytes of a range's plaintext lie below its sealed places, in the places of the
//! ranges before it (`70 + 16 first` bytes for a range starting at chunk `first`): sealing
//! copies them aside before any range starts, and opening keeps them aside until every range
//! is done. With one range, that is the 70 bytes under the prefix.

use alloc::vec;
use alloc::vec::Vec;

use rand_core::CryptoRng;
use zeroize::{Zeroize, Zeroizing};

use crate::error::AttachmentError;

use super::format::{CHUNK_TAG_LEN, Layout, PREFIX_LEN, PayloadCipher};
use super::open::{open_slot, whole_file};
use super::pointer::{AttachmentMetadata, AttachmentPointer};
use super::seal::{SealSetup, seal_slot};
use super::tree::{self, HASH_LEN, Hash};

/// How the in-place functions run their ranges of chunks: on the calling thread, or (feature
/// `parallel`) on rayon's pool.
pub(crate) trait Exec {
    /// Ranges to split the chunks of `layout` into (at least one; at most one a chunk is
    /// used).
    fn ranges(layout: &Layout) -> u64;

    /// `work` applied to every item, possibly at the same time; the results in the items'
    /// order.
    fn map<T: Send, U: Send>(items: Vec<T>, work: impl Fn(T) -> U + Sync + Send) -> Vec<U>;
}

/// One range, on the calling thread.
pub(crate) struct OneThread;

impl Exec for OneThread {
    fn ranges(_: &Layout) -> u64 {
        1
    }

    fn map<T: Send, U: Send>(items: Vec<T>, work: impl Fn(T) -> U + Sync + Send) -> Vec<U> {
        items.into_iter().map(work).collect()
    }
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

/// Where the plaintext of chunks `index..` starts in the plaintext (for `index ==
/// chunk_count`, or chunks of padding only: where it ends).
fn plaintext_start(layout: &Layout, index: u64) -> usize {
    // At most the plaintext length, which the callers hold in memory.
    layout.payload_offset(index).min(layout.plaintext_len()) as usize
}

/// One range of chunks, processed by one task.
struct Part<'b, L> {
    /// Its chunks, `first..end`.
    first: u64,
    end: u64,
    /// The file from chunk `first`'s sealed place to the end of chunk `end - 1`'s.
    places: &'b mut [u8],
    /// The bytes of the range's plaintext that lie below `places` (from the start of chunk
    /// `first`'s plaintext): copied there before sealing, kept there while opening. Wiped
    /// when dropped.
    below: Zeroizing<Vec<u8>>,
    /// Its chunks' leaves: written when sealing, read when opening.
    leaves: L,
}

/// Leaves to share out between ranges: written when sealing, read when opening.
trait Leaves: Sized {
    fn len(&self) -> usize;
    fn split_at(self, mid: usize) -> (Self, Self);
}

impl<T> Leaves for &mut [T] {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        self.split_at_mut(mid)
    }
}

impl<T> Leaves for &[T] {
    fn len(&self) -> usize {
        <[T]>::len(self)
    }
    fn split_at(self, mid: usize) -> (Self, Self) {
        <[T]>::split_at(self, mid)
    }
}

/// What a range's `below` buffer starts with.
#[derive(Clone, Copy)]
enum Below {
    /// A copy of the plaintext bytes there (sealing, before any range runs).
    Copied,
    /// Zeros, to receive them (opening).
    Zeroed,
}

/// Splits `body` (the file up to the tree) into the sealed places of `X::ranges` ranges of
/// chunks, each with its share of `leaves` (`per_chunk` elements a chunk) and its `below`
/// buffer.
fn parts<'b, X: Exec, L: Leaves>(
    layout: &Layout,
    body: &'b mut [u8],
    leaves: L,
    per_chunk: usize,
    below: Below,
) -> Vec<Part<'b, L>> {
    let chunks = layout.chunk_count();
    let count = X::ranges(layout).clamp(1, chunks.max(1));
    let bounds: Vec<(u64, u64)> = (0..count)
        .map(|k| (chunks * k / count, chunks * (k + 1) / count))
        .collect();
    // Taken from `body` as it is before any range runs. At most `70 + 16 first` bytes each.
    let belows: Vec<Zeroizing<Vec<u8>>> = bounds
        .iter()
        .map(|&(first, end)| {
            let lo = plaintext_start(layout, first);
            let hi = sealed_start(layout, first).min(plaintext_start(layout, end));
            Zeroizing::new(match below {
                Below::Copied => body.get(lo..hi).unwrap_or_default().to_vec(),
                Below::Zeroed => vec![0; hi.saturating_sub(lo)],
            })
        })
        .collect();
    // Below range 0's places: the prefix's place, written last.
    let (_, mut rest) = body.split_at_mut(sealed_start(layout, 0).min(body.len()));
    let mut offset = sealed_start(layout, 0);
    let mut parts = Vec::with_capacity(bounds.len());
    let mut leaves = Some(leaves);
    for (&(first, end), below) in bounds.iter().zip(belows) {
        let len = (sealed_start(layout, end) - offset).min(rest.len());
        let (places, tail) = core::mem::take(&mut rest).split_at_mut(len);
        rest = tail;
        offset += len;
        let Some(all) = leaves.take() else { break };
        let share = ((end - first) as usize * per_chunk).min(all.len());
        let (own, others) = all.split_at(share);
        leaves = Some(others);
        parts.push(Part {
            first,
            end,
            places,
            below,
            leaves: own,
        });
    }
    parts
}

/// Seals the chunks of `part` from the last to the first: moves each chunk's plaintext up
/// to its sealed place (from `below` for the bytes under the range's places), zeroes its
/// padding, encrypts and hashes it there.
fn seal_part(cipher: &PayloadCipher, layout: &Layout, part: Part<'_, &mut [Hash]>) {
    let Part {
        first,
        end,
        places,
        below,
        leaves,
    } = part;
    let base = sealed_start(layout, first);
    let below_start = plaintext_start(layout, first);
    for index in (first..end).rev() {
        let from = plaintext_start(layout, index);
        let n = layout.chunk_plaintext_len(index);
        let to = sealed_start(layout, index) - base;
        let payload = layout.chunk_payload_len(index);
        // Bytes `from..split` of the plaintext are in `below`, `split..from + n` in `places`.
        let split = base.clamp(from, from + n);
        if split < from + n {
            // Then `split >= base`.
            places.copy_within(split - base..from + n - base, to + (split - from));
        }
        if let (Some(dst), Some(src)) = (
            places.get_mut(to..to + (split - from)),
            below.get(from - below_start..split - below_start),
        ) {
            dst.copy_from_slice(src);
        }
        // The padding after the plaintext (`to + n..to + payload`) is zero already: it lies
        // past the end of the plaintext (`sealed_start(i) + n > payload_offset(i) + n`), where
        // `seal_in_place_with` zero-filled the buffer, and only chunk `i` writes its place.
        if let (Some(slot), Some(leaf)) = (
            places.get_mut(to..to + payload + CHUNK_TAG_LEN),
            leaves.get_mut((index - first) as usize),
        ) {
            *leaf = seal_slot(cipher, index, layout.is_last(index), slot);
        }
    }
}

/// Opens the chunks of `part` from the first to the last: checks each against its leaf in
/// `leaves` (verified against the root), decrypts it where it lies and moves its plaintext
/// down to its place (into `below` for the bytes under the range's places). Stops at the
/// first chunk that fails; the plaintext already moved is the caller's to wipe.
fn open_part<'b, 'l>(
    cipher: &PayloadCipher,
    layout: &Layout,
    mut part: Part<'b, &'l [u8]>,
) -> Result<Part<'b, &'l [u8]>, AttachmentError> {
    let base = sealed_start(layout, part.first);
    let below_start = plaintext_start(layout, part.first);
    for index in part.first..part.end {
        let at = sealed_start(layout, index) - base;
        let slot = part
            .places
            .get_mut(at..at + layout.chunk_sealed_len(index))
            .unwrap_or_default();
        let leaf_at = (index - part.first) as usize * HASH_LEN;
        let leaf = part
            .leaves
            .get(leaf_at..leaf_at + HASH_LEN)
            .unwrap_or_default();
        open_slot(cipher, layout, index, slot, leaf)?;
        let to = plaintext_start(layout, index);
        let n = layout.chunk_plaintext_len(index);
        // Plaintext bytes `to..split` go to `below`, `split..to + n` down in `places`.
        let split = base.clamp(to, to + n);
        if let (Some(dst), Some(src)) = (
            part.below.get_mut(to - below_start..split - below_start),
            part.places.get(at..at + (split - to)),
        ) {
            dst.copy_from_slice(src);
        }
        if split < to + n {
            // Then `split >= base`.
            part.places
                .copy_within(at + (split - to)..at + n, split - base);
        }
    }
    Ok(part)
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
    let parts = parts::<X, _>(&layout, body, &mut leaves[..], 1, Below::Copied);
    X::map(parts, |part| seal_part(&keys.cipher, &layout, part));
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
    let parts = parts::<X, _>(&layout, body, leaves, HASH_LEN, Below::Zeroed);
    // The first failing range holds the lowest failing chunk: the same error as one chunk at
    // a time. The `below` buffers hold plaintext: wiped when dropped, on every path.
    let opened = X::map(parts, |part| {
        open_part(&cipher, &layout, part)
            .map(|part| (plaintext_start(&layout, part.first), part.below))
    })
    .into_iter()
    .collect::<Result<Vec<_>, _>>()?;
    // Every range is done: the plaintext kept below each one goes to its place.
    for (start, below) in opened {
        if let Some(dst) = buffer.get_mut(start..start + below.len()) {
            dst.copy_from_slice(&below);
        }
    }
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
/// - This function leaves no copy of the plaintext on the heap (it makes none, unless the
///   buffer must grow, and then it wipes the old allocation); bytes of `buffer`'s allocation
///   past the sealed length are not touched.
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
    use crate::attachment::format::ChunkSize;
    use crate::attachment::{open, seal};
    use alloc::format;

    /// `N` ranges, one after the other.
    struct Ranges<const N: u64>;

    impl<const N: u64> Exec for Ranges<N> {
        fn ranges(_: &Layout) -> u64 {
            N
        }

        fn map<T: Send, U: Send>(items: Vec<T>, work: impl Fn(T) -> U + Sync + Send) -> Vec<U> {
            OneThread::map(items, work)
        }
    }

    /// `N` ranges, the last first: ranges touch different bytes, so their order must not
    /// matter.
    struct Reversed<const N: u64>;

    impl<const N: u64> Exec for Reversed<N> {
        fn ranges(_: &Layout) -> u64 {
            N
        }

        fn map<T: Send, U: Send>(mut items: Vec<T>, work: impl Fn(T) -> U + Sync + Send) -> Vec<U> {
            items.reverse();
            let mut out = OneThread::map(items, work);
            out.reverse();
            out
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
            "{len} bytes, {} ranges",
            X::ranges(&pointer_layout(&pointer))
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
    fn every_range_count_seals_and_opens_like_the_whole_file_functions() {
        check_all::<OneThread>();
        check_all::<Ranges<2>>();
        check_all::<Ranges<3>>();
        check_all::<Ranges<7>>();
        check_all::<Ranges<1000>>();
        check_all::<Reversed<2>>();
        check_all::<Reversed<5>>();
        check_all::<Reversed<130>>();
    }
}
