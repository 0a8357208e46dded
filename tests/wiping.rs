//! Decrypted attachment plaintext never reaches the allocator unwiped: every opening path,
//! on every error and on success, wipes its internal buffers before freeing them. What a
//! call returns, or writes to the caller's `Write`, is the caller's and is not counted. The
//! in-place functions wipe the caller's buffer they took on error, leave no plaintext past
//! the end of the one they return, and wipe the allocation they outgrow.
//!
//! A global allocator watches: while a test is scanning, every block freed (on any thread,
//! rayon's included) is searched for a marker that only these tests' plaintexts contain, and
//! each hit is counted. A `realloc` is done as allocate, copy, free, so that the old block
//! is searched too. Every block is allocated zeroed, so that the scan reads only
//! initialized bytes.
//!
//! `GlobalAlloc` is an unsafe trait: implementing it needs `unsafe`, which is allowed here
//! because this is a test crate. The library itself keeps `#![forbid(unsafe_code)]`.

#![cfg(feature = "std")]

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{self, Cursor};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ratchetbox::AttachmentError as E;
use ratchetbox::attachment::{
    self, AttachmentMetadata, AttachmentPointer, ChunkSize, PREFIX_LEN, RandomAccess,
    SeekableOpener, StreamOpener,
};

/// Sixteen bytes that only the plaintexts of these tests contain (none is zero, so a
/// plaintext byte where padding must be is a padding error).
const MARKER: &[u8; 16] = b"#PLAINTEXT-MARK#";

static SCANNING: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicUsize = AtomicUsize::new(0);
/// Scans are global: the tests that scan run one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

struct Scanning;

/// Counts `block` if it holds the marker.
fn scan(block: &[u8]) {
    if block.windows(MARKER.len()).any(|w| w == MARKER) {
        FOUND.fetch_add(1, Ordering::SeqCst);
    }
}

// SAFETY: allocation and deallocation forward to `System` with the same layouts; `realloc`
// is the documented default (allocate, copy the smaller size, free the old block). The
// bookkeeping uses atomics only and does not allocate.
unsafe impl GlobalAlloc for Scanning {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `alloc`'s contract, which `alloc_zeroed` shares.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SCANNING.load(Ordering::SeqCst) && layout.size() > 0 {
            // SAFETY: `ptr` is a live block of `layout.size()` bytes, allocated zeroed (so
            // every byte is initialized), and no one else uses it once it is being freed.
            scan(unsafe { std::slice::from_raw_parts(ptr, layout.size()) });
        }
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as for `alloc`.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and do not overlap; the old
            // block is freed (and scanned) exactly once.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[global_allocator]
static GLOBAL: Scanning = Scanning;

/// Runs `f` while scanning freed blocks; returns its result and the number of freed blocks
/// that held the marker. The result itself is freed after the scan ends.
fn freed_with_plaintext<T>(f: impl FnOnce() -> T) -> (T, usize) {
    FOUND.store(0, Ordering::SeqCst);
    SCANNING.store(true, Ordering::SeqCst);
    let value = f();
    SCANNING.store(false, Ordering::SeqCst);
    (value, FOUND.load(Ordering::SeqCst))
}

/// 40 KiB minus 100 bytes of the marker, sealed in 1 KiB chunks: 40 chunks (the payload
/// pads to 40 KiB), so that parallel streams see ten batches.
const LEN: usize = 40 * 1024 - 100;
const CHUNKS: u64 = 40;

struct File {
    plaintext: Vec<u8>,
    pointer: AttachmentPointer,
    sealed: Vec<u8>,
}

fn file() -> File {
    let plaintext: Vec<u8> = MARKER.iter().copied().cycle().take(LEN).collect();
    let meta = AttachmentMetadata::new("application/octet-stream", "secret.bin")
        .expect("metadata")
        .with_chunk_size(ChunkSize::from_log2(10).expect("1 KiB"));
    let (pointer, sealed) =
        attachment::seal(&mut ChaCha20Rng::seed_from_u64(8), &plaintext, meta).expect("seal");
    assert_eq!(
        pointer
            .sealed_len(ChunkSize::from_log2(10).expect("1 KiB"))
            .ok(),
        Some(sealed.len() as u64)
    );
    File {
        plaintext,
        pointer,
        sealed,
    }
}

/// The pointer encoding with its bytes edited by `edit`, decoded.
fn edited_pointer(
    pointer: &AttachmentPointer,
    edit: impl FnOnce(&mut Vec<u8>),
) -> AttachmentPointer {
    let mut bytes = pointer.to_bytes().to_vec();
    edit(&mut bytes);
    AttachmentPointer::from_bytes(&bytes).expect("edited pointer")
}

/// The same pointer with its root replaced by `edit` of it.
fn with_root(pointer: &AttachmentPointer, edit: impl FnOnce(&mut [u8])) -> AttachmentPointer {
    edited_pointer(pointer, |bytes| {
        let at = bytes
            .windows(32)
            .position(|w| w == pointer.root())
            .expect("root");
        edit(&mut bytes[at..at + 32]);
    })
}

/// The same pointer with one bit of its root flipped.
fn wrong_root(pointer: &AttachmentPointer) -> AttachmentPointer {
    with_root(pointer, |root| root[0] ^= 1)
}

fn blake3_of(parts: &[&[u8]]) -> [u8; 32] {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    *hasher.finalize().as_bytes()
}

/// A faulty sender's file: chunk 35 flipped, then committed to (the stored tree and the
/// pointer's root recomputed over the chunks, as docs/PROTOCOL.md section 13 defines
/// them). Chunk 35 passes its hash check and fails its tag, after chunks 0 to 34 were
/// decrypted.
fn committed_bad_chunk(f: &File) -> (AttachmentPointer, Vec<u8>) {
    let mut sealed = flipped(&f.sealed, 35);
    let tree_offset = chunk_offset(CHUNKS);
    let mut level: Vec<[u8; 32]> = (0..CHUNKS)
        .map(|i| {
            let chunk = &sealed[chunk_offset(i)..chunk_offset(i + 1)];
            let last = [u8::from(i + 1 == CHUNKS)];
            blake3_of(&[&[0], &i.to_be_bytes(), &last, chunk])
        })
        .collect();
    sealed.truncate(tree_offset);
    loop {
        for node in &level {
            sealed.extend_from_slice(node);
        }
        if level.len() == 1 {
            break;
        }
        level = level
            .chunks(2)
            .map(|pair| match pair {
                [l, r] => blake3_of(&[&[1], l, r]),
                [lone] => *lone,
                _ => unreachable!(),
            })
            .collect();
    }
    assert_eq!(sealed.len(), f.sealed.len());
    let root = blake3_of(&[&[2], &sealed[..PREFIX_LEN], &level[0]]);
    (with_root(&f.pointer, |r| r.copy_from_slice(&root)), sealed)
}

/// The same pointer claiming one byte less: the payload pads to the same length, so the
/// last plaintext byte sits where padding must be zero.
fn one_byte_short(pointer: &AttachmentPointer) -> AttachmentPointer {
    // 40860 is the varint 9c bf 02 after the field tag 0x18; 40859 is 9b bf 02.
    assert_eq!(LEN, 40_860);
    edited_pointer(pointer, |bytes| {
        let at = bytes
            .windows(4)
            .position(|w| w == [0x18, 0x9c, 0xbf, 0x02])
            .expect("size field");
        bytes[at + 1] = 0x9b;
    })
}

/// Offset of sealed chunk `index` (1 KiB chunks, all full-size).
fn chunk_offset(index: u64) -> usize {
    PREFIX_LEN + index as usize * (1024 + 16)
}

/// The sealed file with a bit of chunk `index` flipped.
fn flipped(sealed: &[u8], index: u64) -> Vec<u8> {
    let mut bad = sealed.to_vec();
    bad[chunk_offset(index) + 7] ^= 0x80;
    bad
}

/// The faults a sealed file or its pointer can have, with the error a whole-file opener must
/// report for each; `in_memory` is the error when the length is known up front.
struct Fault {
    what: &'static str,
    pointer: AttachmentPointer,
    sealed: Vec<u8>,
    in_memory: fn(&E) -> bool,
    streaming: fn(&E) -> bool,
}

fn faults(f: &File) -> Vec<Fault> {
    let same = |p: &AttachmentPointer| edited_pointer(p, |_| {});
    let mut truncated = f.sealed.clone();
    truncated.truncate(chunk_offset(35) + 500);
    let mut appended = f.sealed.clone();
    appended.push(0);
    let (sender_pointer, sender_sealed) = committed_bad_chunk(f);
    vec![
        Fault {
            what: "chunk 35 modified",
            pointer: same(&f.pointer),
            sealed: flipped(&f.sealed, 35),
            in_memory: |e| matches!(e, E::ChunkNotCommitted { index: 35 }),
            streaming: |e| matches!(e, E::ChunkNotCommitted { index: 35 }),
        },
        Fault {
            what: "a committed chunk 35 that fails its tag",
            pointer: sender_pointer,
            sealed: sender_sealed,
            in_memory: |e| matches!(e, E::ChunkAuthentication { index: 35 }),
            streaming: |e| matches!(e, E::ChunkAuthentication { index: 35 }),
        },
        Fault {
            what: "non-zero padding in the last chunk",
            pointer: one_byte_short(&f.pointer),
            sealed: f.sealed.clone(),
            in_memory: |e| matches!(e, E::BadPadding { index } if *index == CHUNKS - 1),
            streaming: |e| matches!(e, E::BadPadding { index } if *index == CHUNKS - 1),
        },
        Fault {
            what: "root differs",
            pointer: wrong_root(&f.pointer),
            sealed: f.sealed.clone(),
            in_memory: |e| matches!(e, E::RootMismatch),
            streaming: |e| matches!(e, E::RootMismatch),
        },
        Fault {
            what: "cut in chunk 35",
            pointer: same(&f.pointer),
            sealed: truncated,
            in_memory: |e| matches!(e, E::LengthMismatch { .. }),
            streaming: |e| matches!(e, E::LengthMismatch { .. }),
        },
        Fault {
            what: "a byte after the stored tree",
            pointer: same(&f.pointer),
            sealed: appended,
            in_memory: |e| matches!(e, E::LengthMismatch { .. }),
            streaming: |e| matches!(e, E::LengthMismatch { .. }),
        },
    ]
}

/// Runs `open` on every fault, checks the error, and returns the faults whose call freed
/// plaintext unwiped.
fn leaks(
    f: &File,
    streaming: bool,
    open: impl Fn(&AttachmentPointer, &[u8]) -> Result<(), E>,
) -> Vec<(&'static str, usize)> {
    let mut leaked = Vec::new();
    for fault in faults(f) {
        let (result, found) = freed_with_plaintext(|| open(&fault.pointer, &fault.sealed));
        let error = result.expect_err(fault.what);
        let expected = if streaming {
            fault.streaming
        } else {
            fault.in_memory
        };
        assert!(expected(&error), "{}: {error:?}", fault.what);
        if found > 0 {
            leaked.push((fault.what, found));
        }
    }
    leaked
}

#[test]
fn open_wipes_on_every_error() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = file();
    let leaked = leaks(&f, false, |p, s| attachment::open(p, s).map(drop));
    assert_eq!(leaked, [], "attachment::open freed plaintext");
}

#[test]
fn open_in_place_wipes_on_every_error() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = file();
    // The sealed copy is made inside the scan: it is the buffer that gets opened, and it
    // holds the plaintext of chunks 0 to 34 when chunk 35 fails.
    let leaked = leaks(&f, false, |p, s| {
        attachment::open_in_place(p, s.to_vec()).map(drop)
    });
    assert_eq!(leaked, [], "attachment::open_in_place freed plaintext");
}

/// Opens `f` in place with `open` while scanning; returns the plaintext, and the number of
/// freed blocks that held plaintext after the returned vector's own bytes (its length) were
/// zeroed and it was dropped: any plaintext left past its length in its allocation.
fn left_past_the_plaintext(
    f: &File,
    open: impl FnOnce(&AttachmentPointer, Vec<u8>) -> Result<Vec<u8>, E>,
) -> (usize, usize) {
    let sealed = f.sealed.clone();
    let (opened, during) = freed_with_plaintext(|| open(&f.pointer, sealed));
    let mut opened = opened.expect("opens");
    assert_eq!(opened, f.plaintext);
    opened.iter_mut().for_each(|byte| *byte = 0);
    let ((), after) = freed_with_plaintext(|| drop(opened));
    (during, after)
}

#[test]
fn open_in_place_returns_the_only_copy_of_the_plaintext() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = file();
    let (during, after) = left_past_the_plaintext(&f, attachment::open_in_place);
    assert_eq!(during, 0, "attachment::open_in_place freed plaintext");
    assert_eq!(
        after, 0,
        "plaintext left in the returned vector's spare capacity"
    );
}

#[test]
fn sealing_in_place_wipes_the_allocation_it_outgrows() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = file();
    let meta =
        AttachmentMetadata::default().with_chunk_size(ChunkSize::from_log2(10).expect("1 KiB"));
    // No room for the sealed file: the plaintext moves to a new allocation.
    let mut buffer = f.plaintext.clone();
    buffer.shrink_to_fit();
    let (pointer, found) = freed_with_plaintext(|| {
        attachment::seal_in_place(&mut ChaCha20Rng::seed_from_u64(8), &mut buffer, meta)
    });
    assert_eq!(pointer.expect("seals").root(), f.pointer.root());
    assert_eq!(buffer, f.sealed);
    assert_eq!(found, 0, "attachment::seal_in_place freed plaintext");
}

#[test]
fn stream_opener_wipes_on_every_error_and_when_dropped() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = file();
    let leaked = leaks(&f, true, |p, s| {
        let mut opener = StreamOpener::new(p, Cursor::new(s))?;
        loop {
            match opener.next_chunk() {
                Ok(Some(_)) => {}
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            }
        }
    });
    assert_eq!(leaked, [], "StreamOpener freed plaintext");

    // A stream the app stops reading after one chunk: dropping the opener wipes its buffer.
    let (_, found) = freed_with_plaintext(|| {
        let mut opener =
            StreamOpener::new(&f.pointer, Cursor::new(f.sealed.as_slice())).expect("opener");
        assert!(opener.next_chunk().expect("chunk 0").is_some());
    });
    assert_eq!(found, 0, "a dropped StreamOpener freed plaintext");
}

#[test]
fn open_stream_wipes_on_every_error() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = file();
    // What is written to the output is the caller's: here it goes nowhere.
    let leaked = leaks(&f, true, |p, s| {
        attachment::open_stream(p, &mut Cursor::new(s), &mut io::sink()).map(drop)
    });
    assert_eq!(leaked, [], "attachment::open_stream freed plaintext");
}

/// Random access over the whole file through `read`; only faults it can see after it
/// decrypted something (a modified chunk, a committed chunk failing its tag, non-zero
/// padding) fail it.
fn random_access_leaks(
    f: &File,
    read: impl Fn(&RandomAccess, &[u8]) -> Result<Vec<u8>, E>,
) -> Vec<(&'static str, usize)> {
    let mut leaked = Vec::new();
    for fault in faults(f).into_iter().take(3) {
        let access = RandomAccess::new(
            &fault.pointer,
            &fault.sealed[..PREFIX_LEN],
            fault.sealed.len() as u64,
        )
        .expect("prefix and length");
        let (result, found) = freed_with_plaintext(|| read(&access, &fault.sealed));
        let error = result.expect_err(fault.what);
        assert!((fault.in_memory)(&error), "{}: {error:?}", fault.what);
        if found > 0 {
            leaked.push((fault.what, found));
        }
    }
    leaked
}

fn read_at(sealed: &[u8]) -> impl Fn(u64, &mut [u8]) -> io::Result<()> + Sync + '_ {
    |offset, buf| {
        let start = offset as usize;
        buf.copy_from_slice(&sealed[start..start + buf.len()]);
        Ok(())
    }
}

#[test]
fn random_access_wipes_on_every_error() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = file();
    let leaked = random_access_leaks(&f, |access, sealed| {
        access.read_range(0..access.plaintext_len(), read_at(sealed))
    });
    assert_eq!(leaked, [], "RandomAccess::read_range freed plaintext");
    let leaked = random_access_leaks(&f, |access, sealed| {
        let plan = access.plan(0..access.plaintext_len())?;
        let start = plan.sealed_offset() as usize;
        let mut fetched = sealed[start..start + plan.sealed_len() as usize].to_vec();
        let hashes: Vec<u8> = plan
            .hash_ranges()
            .iter()
            .flat_map(|r| sealed[r.start as usize..r.end as usize].iter().copied())
            .collect();
        access
            .decrypt(&plan, &mut fetched, &hashes)
            .map(<[u8]>::to_vec)
    });
    assert_eq!(leaked, [], "RandomAccess::decrypt freed plaintext");
    // Through `Read + Seek`.
    let mut leaked = Vec::new();
    for fault in faults(&f).into_iter().take(3) {
        let mut opener = SeekableOpener::new(&fault.pointer, Cursor::new(fault.sealed.as_slice()))
            .expect("opener");
        let all = 0..opener.access().plaintext_len();
        let (result, found) = freed_with_plaintext(|| opener.read_range(all));
        assert!((fault.in_memory)(&result.expect_err(fault.what)));
        if found > 0 {
            leaked.push((fault.what, found));
        }
    }
    assert_eq!(leaked, [], "SeekableOpener::read_range freed plaintext");
}

#[test]
fn successful_opens_wipe_their_internal_buffers() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = file();
    let access = RandomAccess::new(&f.pointer, &f.sealed[..PREFIX_LEN], f.sealed.len() as u64)
        .expect("access");
    // The returned plaintext is the caller's: it is kept until the scan has ended.
    let (opened, found) = freed_with_plaintext(|| attachment::open(&f.pointer, &f.sealed));
    assert_eq!(opened.expect("opens"), f.plaintext);
    assert_eq!(found, 0, "attachment::open");
    let (opened, found) = freed_with_plaintext(|| {
        attachment::open_stream(&f.pointer, &mut Cursor::new(&f.sealed), &mut io::sink())
    });
    assert_eq!(opened.expect("opens"), LEN as u64);
    assert_eq!(found, 0, "attachment::open_stream");
    let (opened, found) =
        freed_with_plaintext(|| access.read_range(100..LEN as u64 - 5, read_at(&f.sealed)));
    assert_eq!(opened.expect("reads"), &f.plaintext[100..LEN - 5]);
    assert_eq!(found, 0, "RandomAccess::read_range");
}

#[cfg(feature = "parallel")]
mod parallel {
    use super::*;

    #[test]
    fn open_parallel_wipes_on_every_error() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let f = file();
        let leaked = leaks(&f, false, |p, s| attachment::open_parallel(p, s).map(drop));
        assert_eq!(leaked, [], "attachment::open_parallel freed plaintext");
    }

    #[test]
    fn open_in_place_parallel_wipes_on_every_error() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let f = file();
        let leaked = leaks(&f, false, |p, s| {
            attachment::open_in_place_parallel(p, s.to_vec()).map(drop)
        });
        assert_eq!(
            leaked,
            [],
            "attachment::open_in_place_parallel freed plaintext"
        );
    }

    #[test]
    fn open_in_place_parallel_returns_the_only_copy_of_the_plaintext() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let f = file();
        let (during, after) = left_past_the_plaintext(&f, attachment::open_in_place_parallel);
        assert_eq!(
            during, 0,
            "attachment::open_in_place_parallel freed plaintext"
        );
        assert_eq!(
            after, 0,
            "plaintext left in the returned vector's spare capacity"
        );
    }

    #[test]
    fn sealing_in_place_in_parallel_wipes_the_allocation_it_outgrows() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let f = file();
        let meta =
            AttachmentMetadata::default().with_chunk_size(ChunkSize::from_log2(10).expect("1 KiB"));
        let mut buffer = f.plaintext.clone();
        buffer.shrink_to_fit();
        let (pointer, found) = freed_with_plaintext(|| {
            attachment::seal_in_place_parallel(
                &mut ChaCha20Rng::seed_from_u64(8),
                &mut buffer,
                meta,
            )
        });
        assert_eq!(pointer.expect("seals").root(), f.pointer.root());
        assert_eq!(buffer, f.sealed);
        assert_eq!(
            found, 0,
            "attachment::seal_in_place_parallel freed plaintext"
        );
    }

    #[test]
    fn open_stream_parallel_wipes_on_every_error() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let f = file();
        let leaked = leaks(&f, true, |p, s| {
            attachment::open_stream_parallel(p, &mut Cursor::new(s), &mut io::sink()).map(drop)
        });
        assert_eq!(
            leaked,
            [],
            "attachment::open_stream_parallel freed plaintext"
        );
    }

    #[test]
    fn read_range_parallel_wipes_on_every_error() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let f = file();
        let leaked = random_access_leaks(&f, |access, sealed| {
            access.read_range_parallel(0..access.plaintext_len(), read_at(sealed))
        });
        assert_eq!(
            leaked,
            [],
            "RandomAccess::read_range_parallel freed plaintext"
        );
    }

    #[test]
    fn successful_parallel_opens_wipe_their_internal_buffers() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let f = file();
        let access = RandomAccess::new(&f.pointer, &f.sealed[..PREFIX_LEN], f.sealed.len() as u64)
            .expect("access");
        let (opened, found) =
            freed_with_plaintext(|| attachment::open_parallel(&f.pointer, &f.sealed));
        assert_eq!(opened.expect("opens"), f.plaintext);
        assert_eq!(found, 0, "attachment::open_parallel");
        let (opened, found) = freed_with_plaintext(|| {
            attachment::open_stream_parallel(
                &f.pointer,
                &mut Cursor::new(&f.sealed),
                &mut io::sink(),
            )
        });
        assert_eq!(opened.expect("opens"), LEN as u64);
        assert_eq!(found, 0, "attachment::open_stream_parallel");
        let (opened, found) = freed_with_plaintext(|| {
            access.read_range_parallel(100..LEN as u64 - 5, read_at(&f.sealed))
        });
        assert_eq!(opened.expect("reads"), &f.plaintext[100..LEN - 5]);
        assert_eq!(found, 0, "RandomAccess::read_range_parallel");
    }
}

/// Yields `plaintext`, then fails: a read error in the middle of sealing a stream.
struct FailingReader<'a>(&'a [u8]);

impl io::Read for FailingReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::other("the disk went away"));
        }
        let n = buf.len().min(self.0.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

/// `true` for the I/O error of [`FailingReader`].
fn is_disk_error(e: &E) -> bool {
    matches!(e, E::Io(io) if io.to_string() == "the disk went away")
}

#[test]
fn sealing_a_stream_wipes_its_buffers_when_the_input_fails() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = file();
    let meta =
        AttachmentMetadata::default().with_chunk_size(ChunkSize::from_log2(10).expect("1 KiB"));
    // Fails in the middle of chunk 3, with part of it in the chunk buffer.
    let (result, found) = freed_with_plaintext(|| {
        attachment::seal_stream(
            &mut ChaCha20Rng::seed_from_u64(9),
            &mut FailingReader(&f.plaintext[..3 * 1024 + 600]),
            &mut io::sink(),
            meta,
        )
    });
    assert!(is_disk_error(&result.expect_err("input fails")));
    assert_eq!(found, 0, "attachment::seal_stream freed plaintext");
}

#[cfg(feature = "parallel")]
#[test]
fn sealing_and_opening_in_place_in_parallel_wipe_the_plaintext_kept_aside() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // 2 MiB in 1 KiB chunks: ranges of 256 chunks, up to 8 of them; every range but the first
    // keeps `70 + 16 first` bytes of its plaintext aside.
    let plaintext: Vec<u8> = MARKER.iter().copied().cycle().take(2 << 20).collect();
    let meta =
        AttachmentMetadata::default().with_chunk_size(ChunkSize::from_log2(10).expect("1 KiB"));
    let mut buffer = Vec::with_capacity(meta.sealed_len(plaintext.len()).expect("fits"));
    buffer.extend_from_slice(&plaintext);
    let (pointer, found) = freed_with_plaintext(|| {
        attachment::seal_in_place_parallel(&mut ChaCha20Rng::seed_from_u64(8), &mut buffer, meta)
    });
    let pointer = pointer.expect("seals");
    assert_eq!(
        found, 0,
        "attachment::seal_in_place_parallel freed plaintext"
    );
    let (opened, found) =
        freed_with_plaintext(|| attachment::open_in_place_parallel(&pointer, buffer));
    assert!(opened.expect("opens") == plaintext);
    assert_eq!(
        found, 0,
        "attachment::open_in_place_parallel freed plaintext"
    );
}

#[cfg(feature = "parallel")]
#[test]
fn sealing_a_stream_in_parallel_wipes_its_buffers_when_the_input_fails() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let f = file();
    let meta =
        AttachmentMetadata::default().with_chunk_size(ChunkSize::from_log2(10).expect("1 KiB"));
    // Fails while reading the third batch (chunks 8 to 11), in the middle of chunk 9.
    let (result, found) = freed_with_plaintext(|| {
        attachment::seal_stream_parallel(
            &mut ChaCha20Rng::seed_from_u64(9),
            &mut FailingReader(&f.plaintext[..9 * 1024 + 600]),
            &mut io::sink(),
            meta,
        )
    });
    assert!(is_disk_error(&result.expect_err("input fails")));
    assert_eq!(found, 0, "attachment::seal_stream_parallel freed plaintext");
}

/// A message's content wipes its body (the person's words) when it is dropped. The control:
/// the same bytes in a plain vector are found when it is freed, so the scan would see them.
#[test]
fn content_wipes_its_body_when_dropped() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let content = ratchetbox::Content::new(MARKER.repeat(4));
    let ((), found) = freed_with_plaintext(|| drop(content));
    assert_eq!(found, 0, "a dropped Content freed its body unwiped");
    let plain = MARKER.repeat(4);
    let ((), found) = freed_with_plaintext(|| drop(plain));
    assert_eq!(found, 1, "the scan sees a vector freed as it is");
}
