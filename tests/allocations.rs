//! Heap allocations on the message paths, counted with a counting global allocator: on the
//! steady-state path a message costs exactly one allocation, the buffer that is returned.
//! The same allocator tracks live heap bytes and their peak, to show that streaming
//! attachments run in constant memory.
//!
//! This file is its own test binary, so its global allocator affects no other test. Counts
//! are per thread, so tests running in parallel do not see each other's allocations.
//!
//! `GlobalAlloc` is an unsafe trait: implementing it needs `unsafe impl`, which is allowed
//! here because this is a test crate. The library itself keeps `#![forbid(unsafe_code)]`.
//! The implementation only counts and forwards every call to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Read};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ratchetbox::attachment::{self, AttachmentMetadata, CHUNK_TAG_LEN, ChunkSize};
use ratchetbox::{Account, DecryptError, SessionConfig, SessionRecord, Timestamp};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
    /// Bytes allocated minus bytes freed on this thread (negative if this thread frees
    /// memory another allocated), and the highest value it reached.
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator may be called while a thread is being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|n| n.set(n.get() + size));
}

/// Adds `delta` to the live bytes and raises the peak if needed.
fn live(delta: isize) {
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

fn signed(size: usize) -> isize {
    isize::try_from(size).unwrap_or(isize::MAX)
}

// SAFETY: every method forwards to `System` with the same arguments, so `Counting` upholds
// exactly the guarantees `System` does; the bookkeeping touches only const-initialized
// thread-locals, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        live(signed(layout.size()));
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        live(signed(layout.size()));
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        live(-signed(layout.size()));
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        live(signed(new_size) - signed(layout.size()));
        // SAFETY: as for `dealloc`, and the caller upholds `realloc`'s contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations (and bytes requested) on this thread while `f` runs.
fn count<T>(f: impl FnOnce() -> T) -> (T, usize, usize) {
    let (a0, b0) = (ALLOCATIONS.with(Cell::get), BYTES.with(Cell::get));
    let value = f();
    let (a1, b1) = (ALLOCATIONS.with(Cell::get), BYTES.with(Cell::get));
    (value, a1 - a0, b1 - b0)
}

/// The highest number of live heap bytes on this thread while `f` runs, above the number
/// when it started.
fn peak_live<T>(f: impl FnOnce() -> T) -> (T, usize) {
    let start = LIVE.with(Cell::get);
    PEAK.with(|peak| peak.set(start));
    let value = f();
    let peak = PEAK.with(Cell::get);
    (value, usize::try_from(peak - start).unwrap_or(0))
}

const NOW: Timestamp = Timestamp::from_unix_secs(1_764_000_000);

struct Peers {
    rng: ChaCha20Rng,
    alice: (Account, SessionRecord),
    bob: (Account, SessionRecord),
}

impl Peers {
    /// A session in which Alice's next message, and Bob's decryption of it, carry no DH
    /// ratchet step.
    fn steady() -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let alice = Account::new(&mut rng, NOW);
        let mut bob = Account::new(&mut rng, NOW);
        let otk = bob
            .generate_one_time_prekeys(&mut rng, 1, NOW)
            .expect("otk")[0];
        let bundle = bob.prekey_bundle(Some(otk.id()), None).expect("bundle");
        let mut alice_record = SessionRecord::with_config(SessionConfig::default());
        alice_record
            .initiate(&mut rng, &alice, &bundle)
            .expect("initiate");
        let mut peers = Self {
            rng,
            alice: (alice, alice_record),
            bob: (bob, SessionRecord::new()),
        };
        let m = peers.alice_sends(b"hello");
        peers.bob_reads(&m);
        let m = peers.bob_sends(b"hi");
        peers.alice_reads(&m);
        let m = peers.alice_sends(b"steady");
        peers.bob_reads(&m);
        peers
    }

    fn alice_sends(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.alice
            .1
            .encrypt(&mut self.rng, plaintext)
            .expect("encrypts")
    }

    fn bob_sends(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.bob
            .1
            .encrypt(&mut self.rng, plaintext)
            .expect("encrypts")
    }

    fn alice_reads(&mut self, wire: &[u8]) -> Vec<u8> {
        let (account, record) = &mut self.alice;
        record.decrypt(account, wire, NOW).expect("decrypts")
    }

    fn bob_reads(&mut self, wire: &[u8]) -> Vec<u8> {
        let (account, record) = &mut self.bob;
        record.decrypt(account, wire, NOW).expect("decrypts")
    }
}

const SIZES: [usize; 5] = [1, 100, 1024, 64 * 1024, 1024 * 1024];

#[test]
fn steady_state_encrypt_allocates_only_the_message() {
    let mut peers = Peers::steady();
    for len in SIZES {
        let plaintext = vec![7u8; len];
        for _ in 0..3 {
            let (wire, allocations, bytes) = count(|| peers.alice_sends(&plaintext));
            assert_eq!(allocations, 1, "encrypting {len} bytes");
            assert_eq!(
                bytes,
                wire.len(),
                "the one allocation is the message itself"
            );
            peers.bob_reads(&wire);
        }
    }
}

#[test]
fn steady_state_decrypt_allocates_only_the_plaintext() {
    let mut peers = Peers::steady();
    for len in SIZES {
        let plaintext = vec![7u8; len];
        for _ in 0..3 {
            let wire = peers.alice_sends(&plaintext);
            let (decrypted, allocations, bytes) = count(|| peers.bob_reads(&wire));
            assert_eq!(decrypted, plaintext);
            assert_eq!(allocations, 1, "decrypting {len} bytes");
            // Decrypted with its kind byte, which is then removed in place.
            assert_eq!(bytes, 1 + len, "the one allocation is the plaintext itself");
        }
    }
}

#[test]
fn steady_state_session_api_allocates_only_the_output() {
    let mut peers = Peers::steady();
    let mut alice = peers.alice.1.session().expect("session").clone();
    let mut bob = peers.bob.1.session().expect("session").clone();
    let plaintext = vec![1u8; 100];
    for _ in 0..3 {
        let (wire, allocations, _) = count(|| alice.encrypt(&mut peers.rng, &plaintext));
        let wire = wire.expect("encrypts");
        assert_eq!(allocations, 1);
        let (decrypted, allocations, _) = count(|| bob.decrypt(&wire, NOW));
        assert_eq!(decrypted.expect("decrypts"), plaintext);
        assert_eq!(allocations, 1);
    }
}

#[test]
fn an_empty_plaintext_decrypts_into_one_byte() {
    let mut peers = Peers::steady();
    let wire = peers.alice_sends(b"");
    let (decrypted, allocations, bytes) = count(|| peers.bob_reads(&wire));
    assert!(decrypted.is_empty());
    // The plaintext is the kind byte alone, decrypted into a buffer of its size.
    assert_eq!((allocations, bytes), (1, 1));
}

#[test]
fn a_rejected_message_allocates_nothing_it_keeps() {
    let mut peers = Peers::steady();
    let mut wire = peers.alice_sends(&[5u8; 100]);
    let last = wire.len() - 1;
    wire[last] ^= 1;
    let (result, allocations, _) = count(|| {
        let (account, record) = &mut peers.bob;
        record.decrypt(account, &wire, NOW)
    });
    assert_eq!(result, Err(DecryptError::AuthenticationFailed));
    // The output buffer is allocated before the tag is checked, and freed on failure.
    assert!(allocations <= 1, "{allocations} allocations");
}

/// `decrypt_into` with one buffer for every message: once the buffer has grown to the
/// largest plaintext, decrypting allocates nothing and writes into the same memory, whether
/// the next plaintext is shorter or as long.
#[test]
fn decrypt_into_a_reused_buffer_allocates_nothing() {
    let mut peers = Peers::steady();
    let mut out = Vec::new();
    for len in SIZES.into_iter().chain(SIZES.into_iter().rev()) {
        let plaintext = vec![u8::try_from(len % 251).expect("a byte"); len];
        for round in 0..3 {
            let wire = peers.alice_sends(&plaintext);
            let at = out.as_ptr();
            let (result, allocations, _) = count(|| {
                let (account, record) = &mut peers.bob;
                record.decrypt_into(account, &wire, NOW, &mut out)
            });
            result.expect("decrypts");
            assert_eq!(out, plaintext);
            if round > 0 || out.capacity() > len + 1 {
                assert_eq!(
                    allocations, 0,
                    "decrypting {len} bytes into a reused buffer"
                );
                assert_eq!(out.as_ptr(), at, "decrypted {len} bytes elsewhere");
            }
        }
    }
}

/// A failed `decrypt_into` leaves the record as it was and `out` empty with its memory,
/// whatever the failure: a tampered message (the tag fails), a message for the other API
/// (the check after decryption fails), and an initial message of a new identity key (the
/// record refuses it after it authenticated). The genuine message then decrypts into the
/// same memory.
#[test]
fn a_failed_decrypt_into_keeps_the_buffer_and_the_state() {
    let mut peers = Peers::steady();
    let plaintext = vec![3u8; 4096];
    let wire = peers.alice_sends(&plaintext);
    let mut tampered = wire.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    let content = ratchetbox::Content::new(b"for receive".to_vec());
    let sent = peers
        .alice
        .1
        .send(&mut peers.rng, &content, NOW)
        .expect("sends");
    let mut out = vec![9u8; 8192];
    let at = out.as_ptr();
    for (bad, expected) in [
        (&tampered, DecryptError::AuthenticationFailed),
        (&sent.into_wire(), DecryptError::ContentMessage),
    ] {
        let before = peers.bob.1.to_bytes();
        let (result, allocations, _) = count(|| {
            let (account, record) = &mut peers.bob;
            record.decrypt_into(account, bad, NOW, &mut out)
        });
        assert_eq!(result, Err(expected));
        assert!(
            peers.bob.1.to_bytes() == before,
            "a failed decryption changed the record"
        );
        assert!(out.is_empty() && out.capacity() >= 8192 && out.as_ptr() == at);
        assert_eq!(allocations, 0);
        out.resize(8192, 9);
    }

    // Alice re-creates her account and sets up a new session with Bob.
    let new_alice = Account::new(&mut peers.rng, NOW);
    let bundle = peers.bob.0.prekey_bundle(None, None).expect("bundle");
    let mut new_record = SessionRecord::new();
    new_record
        .initiate(&mut peers.rng, &new_alice, &bundle)
        .expect("initiate");
    let initial = new_record
        .encrypt(&mut peers.rng, b"it's me")
        .expect("encrypts");
    let before = (peers.bob.0.to_bytes(), peers.bob.1.to_bytes());
    let result = {
        let (account, record) = &mut peers.bob;
        record.decrypt_into(account, &initial, NOW, &mut out)
    };
    assert!(
        matches!(result, Err(DecryptError::IdentityChanged(_))),
        "{result:?}"
    );
    assert!((peers.bob.0.to_bytes(), peers.bob.1.to_bytes()) == before);
    assert!(
        out.is_empty() && out.as_ptr() == at,
        "the buffer was not given back"
    );

    let (account, record) = &mut peers.bob;
    record
        .decrypt_into(account, &wire, NOW, &mut out)
        .expect("the genuine message decrypts");
    assert_eq!(out, plaintext);
    assert_eq!(out.as_ptr(), at);
}

/// Messages that start a new sending chain (every message of a ping-pong conversation):
/// the DH ratchet step itself allocates nothing beyond what the chain bookkeeping needs.
#[test]
fn ping_pong_messages_allocate_little() {
    let mut peers = Peers::steady();
    let plaintext = [3u8; 100];
    // Warm up past the growth of the store's fixed-size chain history (32 chains).
    for _ in 0..40 {
        let m = peers.bob_sends(&plaintext);
        peers.alice_reads(&m);
        let m = peers.alice_sends(&plaintext);
        peers.bob_reads(&m);
    }
    for _ in 0..5 {
        let (m, allocations, _) = count(|| peers.bob_sends(&plaintext));
        assert_eq!(allocations, 1, "encrypt with a DH ratchet step");
        let (_, allocations, _) = count(|| peers.alice_reads(&m));
        assert_eq!(allocations, 1, "decrypt with a DH ratchet step");
        let m = peers.alice_sends(&plaintext);
        peers.bob_reads(&m);
    }
}

// ---------------------------------------------------------------------------------------
// Streaming attachments: constant memory

/// Yields `left` bytes without holding them: each read fills the buffer with one byte
/// value, the next read with the next.
struct Generated {
    left: u64,
    next: u8,
}

impl Read for Generated {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = usize::try_from(self.left).map_or(buf.len(), |left| left.min(buf.len()));
        buf[..n].fill(self.next);
        self.next = self.next.wrapping_add(1);
        self.left -= n as u64;
        Ok(n)
    }
}

/// Seals `len` generated bytes with `seal_stream` into a preallocated buffer (so that the
/// output does not allocate), then opens them with `open_stream` into a sink; returns the
/// peak of live heap bytes of each call. With a pool, the parallel functions run on it
/// instead (its threads' allocations are counted only if it has one thread: the one that
/// measures).
fn stream_peaks(len: u64, chunk: ChunkSize, pool: Option<&rayon::ThreadPool>) -> (usize, usize) {
    let layout = attachment::Layout::new(len, chunk).expect("layout");
    let sealed_len = usize::try_from(layout.sealed_len()).expect("fits");
    let mut sealed = Vec::with_capacity(sealed_len);
    let capacity = sealed.capacity();
    let mut rng = ChaCha20Rng::seed_from_u64(len);
    let meta = AttachmentMetadata::default().with_chunk_size(chunk);
    let input = &mut Generated { left: len, next: 1 };
    let (pointer, seal_peak) = match pool {
        None => peak_live(|| attachment::seal_stream(&mut rng, input, &mut sealed, meta)),
        #[cfg(feature = "parallel")]
        Some(pool) => pool.install(|| {
            peak_live(|| attachment::seal_stream_parallel(&mut rng, input, &mut sealed, meta))
        }),
        #[cfg(not(feature = "parallel"))]
        Some(_) => unreachable!("a pool is passed only with the parallel feature"),
    };
    let pointer = pointer.expect("seal");
    assert_eq!(sealed.len(), sealed_len);
    assert_eq!(
        sealed.capacity(),
        capacity,
        "the preallocated output must not grow: its growth would count as the sealer's"
    );
    let source = &mut io::Cursor::new(&sealed);
    let (opened, open_peak) = match pool {
        None => peak_live(|| attachment::open_stream(&pointer, source, &mut io::sink())),
        #[cfg(feature = "parallel")]
        Some(pool) => pool.install(|| {
            peak_live(|| attachment::open_stream_parallel(&pointer, source, &mut io::sink()))
        }),
        #[cfg(not(feature = "parallel"))]
        Some(_) => unreachable!("a pool is passed only with the parallel feature"),
    };
    assert_eq!(opened.expect("open"), len);
    (seal_peak, open_peak)
}

/// `open_stream` holds one chunk buffer (the chunk and its 16-byte tag) and one window of
/// at most 1024 leaf hashes (32 KiB) with the proof nodes beside it (at most two a level,
/// 64 levels: 4 KiB), plus, while it verifies a window, one working copy of it to hash up
/// the tree, whatever the file size: the peak of live heap bytes stays within that plus a
/// small fixed slack.
///
/// `seal_stream` holds one chunk buffer and the 32-byte leaf hash of every chunk, which it
/// can only write after the last chunk (its output is not seekable): the peak stays within
/// the buffer, twice 32 bytes a chunk (a growing vector may briefly hold its old and new
/// storage) and the slack. That is 1/1024 of the file at most with 64 KiB chunks (1 MiB
/// for 1 GiB); docs/PROTOCOL.md section 13 gives the trade-off.
///
/// The slack, 4 KiB, is for small fixed-size allocations the functions may legitimately make
/// (the pointer's content type, file name and locator, an I/O adapter). It is far below
/// what holding the file would take: the smaller files are 64 chunks of 1 KiB and 2 chunks
/// of 64 KiB.
///
/// The sizes are small because the test suite runs in debug builds, where sealing and
/// opening run at only a few MiB/s. What a file-size-dependent buffer would grow with is
/// the number of chunks, and 1 KiB chunks give 1024 of them in 1 MiB.
#[test]
fn streaming_attachments_run_in_constant_memory() {
    const SLACK: usize = 4096;
    for (log2, small, large) in [(10u8, 64u64 << 10, 1 << 20), (16, 128 << 10, 1 << 20)] {
        let chunk = ChunkSize::from_log2(log2).expect("chunk size");
        let buffer = chunk.bytes() + CHUNK_TAG_LEN;
        let (seal_small, open_small) = stream_peaks(small, chunk, None);
        let (seal_large, open_large) = stream_peaks(large, chunk, None);
        for (what, small_peak, large_peak) in [
            ("seal_stream", seal_small, seal_large),
            ("open_stream", open_small, open_large),
        ] {
            let context = format!(
                "{what}, {} B chunks: peak {small_peak} B for {small} B, {large_peak} B for {large} B",
                chunk.bytes()
            );
            // It holds the chunk buffer (so the measurement sees it) and little else.
            assert!(small_peak >= buffer, "{context}");
            let chunks = attachment::Layout::new(large, chunk)
                .expect("layout")
                .chunk_count() as usize;
            let bound = match what {
                "open_stream" => buffer + 2 * (32 * 1024 + 2 * 64 * 32) + SLACK,
                _ => buffer + 2 * 32 * chunks + SLACK,
            };
            assert!(large_peak <= bound, "{context}: bound {bound}");
        }
    }
}

/// A decoder's name and whether it accepts the bytes.
type Decoder<'a> = (&'a str, &'a dyn Fn(&[u8]) -> bool);

/// Length prefixes claiming gigabytes (up to 2^64 - 1) at every level of nesting never size
/// an allocation: decoding such input allocates a few small buffers and fails.
#[test]
fn claimed_lengths_never_size_an_allocation() {
    use ratchetbox::{AttachmentPointer, Message, PreKeyBundle};

    // Varints for 2^32 - 1, 2^31 and 2^64 - 1.
    let huge: [&[u8]; 3] = [
        &[0xff, 0xff, 0xff, 0xff, 0x0f],
        &[0x80, 0x80, 0x80, 0x80, 0x08],
        &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01],
    ];
    // Key bytes of length-delimited fields 1 to 6, at the top level and one level down
    // (for messages: the oneof's initial message, then its fields).
    let mut inputs = Vec::new();
    for version in [1u8, 2] {
        for len in huge {
            for key in [0x0a, 0x12, 0x1a, 0x22, 0x2a, 0x32] {
                let mut top = vec![version, key];
                top.extend_from_slice(len);
                top.extend_from_slice(&[0xab; 40]);
                inputs.push(top);
                // A short, valid outer length, then a huge inner one.
                let mut nested = vec![version, 0x12, 0x30, key];
                nested.extend_from_slice(len);
                nested.extend_from_slice(&[0xcd; 40]);
                inputs.push(nested);
            }
        }
    }
    for input in &inputs {
        let decoders: [Decoder; 5] = [
            ("Message", &|b| Message::from_bytes(b).is_ok()),
            ("PreKeyBundle", &|b| PreKeyBundle::from_bytes(b).is_ok()),
            ("SessionRecord", &|b| SessionRecord::from_bytes(b).is_ok()),
            ("Account", &|b| Account::from_bytes(b).is_ok()),
            ("AttachmentPointer", &|b| {
                AttachmentPointer::from_bytes(b).is_ok()
            }),
        ];
        for (name, decode) in decoders {
            let (ok, _, bytes) = count(|| decode(input));
            assert!(!ok, "{name} decoded {input:02x?}");
            assert!(
                bytes <= 4096,
                "{name} requested {bytes} bytes for a {}-byte input {input:02x?}",
                input.len()
            );
        }
    }
}

/// The default bounds are the documented ones (issue: at least 2,000 stored keys).
#[test]
fn the_default_bounds_are_the_documented_ones() {
    let config = SessionConfig::default();
    assert_eq!(config.max_skip(), 2_000);
    assert_eq!(config.max_skipped_keys(), 4_000);
    assert_eq!(config.max_previous_sessions(), 8);
    assert_eq!(config.max_skipped_key_age(), 30 * 24 * 3600);
}

/// The first message of a new chain that makes the session skip keys in both the chain it
/// finishes and the new one. The skipped keys are listed in one allocation, plus one box per
/// key (each key stays in its box until used, and is zeroized there), so no key is copied
/// into memory that is freed without being zeroized.
#[test]
fn skipping_in_two_chains_lists_the_keys_in_one_allocation() {
    let mut peers = Peers::steady();
    let plaintext = [9u8; 100];
    // Unread on Alice's current chain, then skipped on her next one.
    const FINISHING: usize = 4;
    const NEW: usize = 2;
    let mut counts = Vec::new();
    for _ in 0..40 {
        let late: Vec<_> = (0..FINISHING)
            .map(|_| peers.alice_sends(&plaintext))
            .collect();
        let m = peers.bob_sends(&plaintext);
        peers.alice_reads(&m);
        let early: Vec<_> = (0..=NEW).map(|_| peers.alice_sends(&plaintext)).collect();
        let (_, allocations, _) = count(|| peers.bob_reads(&early[NEW]));
        counts.push(allocations);
        for m in late.iter().chain(&early[..NEW]) {
            peers.bob_reads(m);
        }
    }
    // Once the store's own tables have grown (warm-up): the plaintext, the list, a box per
    // key.
    for allocations in &counts[32..] {
        assert_eq!(*allocations, 1 + 1 + FINISHING + NEW, "{counts:?}");
    }
}

#[path = "common/state.rs"]
mod state;

/// A persisted account whose last-resort KEM prekey list (or signed prekey list) repeats one
/// genuine entry thousands of times, like the review's blob (2.86 MB took 5 s and 168 MiB to
/// decode before the caps). It is refused, and decoding it holds little more than its decoded
/// protobuf copy (a small multiple of its size): no key is expanded for an over-long list.
#[test]
fn an_oversized_account_is_refused_without_expanding_its_keys() {
    let mut rng = ChaCha20Rng::seed_from_u64(20);
    let account = Account::new(&mut rng, Timestamp::from_unix_secs(1_764_000_000));
    let base = state::decode_account(&account.to_bytes());
    let mut kem = base.clone();
    kem.last_resort_kem_prekeys = vec![base.last_resort_kem_prekeys[0].clone(); 1_500];
    let mut signed = base.clone();
    signed.signed_prekeys = vec![base.signed_prekeys[0].clone(); 20_000];
    for (what, crafted) in [("KEM prekeys", kem), ("signed prekeys", signed)] {
        let blob = state::encode_account(&crafted);
        let started = std::time::Instant::now();
        let (ok, peak) = peak_live(|| Account::from_bytes(&blob).is_ok());
        let elapsed = started.elapsed();
        println!(
            "{what}: {} bytes, refused in {elapsed:?}, peak {peak} bytes",
            blob.len()
        );
        assert!(!ok, "an account with thousands of {what} decoded");
        assert!(
            peak <= 4 * blob.len(),
            "decoding a {}-byte account with too many {what} peaked at {peak} bytes",
            blob.len()
        );
    }
}

/// The parallel streams hold one batch a thread, whatever the file size. On a pool of one
/// thread, so that every allocation is counted:
///
/// - `seal_stream_parallel` holds a batch of 4 chunk slots (each a chunk and its tag), the
///   32-byte leaf hash of every chunk (twice, while the vector grows) and the slack;
/// - `open_stream_parallel` holds a batch of chunks, as `open_stream` holds one chunk, and
///   its window of leaves. A batch is up to 4 chunks but fewer for a small file, so that
///   every thread gets a few batches and they finish together: on one thread, a quarter of
///   the chunk count, at least 1.
///
/// Each peak is checked from below too, so that a batch smaller than documented (which
/// would read and write in more, smaller pieces) fails as well. The files are 8 and 32
/// chunks of 64 KiB.
#[cfg(feature = "parallel")]
#[test]
fn parallel_streams_hold_one_batch_a_thread() {
    const SLACK: usize = 4096;
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let chunk = ChunkSize::from_log2(16).expect("chunk size");
    let slot = chunk.bytes() + CHUNK_TAG_LEN;
    for len in [512u64 << 10, 2 << 20] {
        let chunks = attachment::Layout::new(len, chunk)
            .expect("layout")
            .chunk_count() as usize;
        let (seal_peak, open_peak) = stream_peaks(len, chunk, Some(&pool));
        let context = format!("{len} B in {chunks} chunks: peaks {seal_peak} B and {open_peak} B");
        let seal_batch = 4 * slot;
        assert!(seal_peak >= seal_batch, "{context}");
        assert!(
            seal_peak <= seal_batch + 2 * 32 * chunks + SLACK,
            "{context}"
        );
        let open_batch = (chunks / 4).clamp(1, 4) * slot;
        assert!(open_peak >= open_batch, "{context}");
        assert!(
            open_peak <= open_batch + 2 * (32 * 1024 + 2 * 64 * 32) + SLACK,
            "{context}"
        );
    }
}

/// `RandomAccess::read_range` allocates one chunk buffer, the range's leaves with their
/// proof, and the output at the range's length, reserved once: ten bytes near the end of a
/// 1 MiB file, like ten at its start, cost far less than a second chunk would. The
/// slack, 4 KiB, covers the leaves and proof (at most two 32-byte hashes a level, 10 levels
/// for 1024 chunks) and their working copies.
#[test]
fn read_range_allocates_one_chunk_and_the_range() {
    const SLACK: usize = 4096;
    let chunk = ChunkSize::from_log2(10).expect("chunk size");
    let data: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let (pointer, sealed) = attachment::seal(
        &mut rng,
        &data,
        AttachmentMetadata::default().with_chunk_size(chunk),
    )
    .expect("seal");
    let access = attachment::RandomAccess::new(
        &pointer,
        &sealed[..attachment::PREFIX_LEN],
        sealed.len() as u64,
    )
    .expect("access");
    for start in [0usize, 1_000_000] {
        let (got, _, bytes) = count(|| {
            access.read_range(start as u64..start as u64 + 10, |offset, buf| {
                let at = usize::try_from(offset).expect("fits");
                buf.copy_from_slice(&sealed[at..at + buf.len()]);
                Ok(())
            })
        });
        assert_eq!(got.expect("read_range"), data[start..start + 10]);
        let bound = 10 + chunk.bytes() + CHUNK_TAG_LEN + SLACK;
        assert!(
            bytes <= bound,
            "{bytes} B allocated from {start}: bound {bound}"
        );
    }
}
