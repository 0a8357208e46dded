//! Heap allocations on the message paths, counted with a counting global allocator: on the
//! steady-state path a message costs exactly one allocation, the buffer that is returned.
//!
//! This file is its own test binary, so its global allocator affects no other test. Counts
//! are per thread, so tests running in parallel do not see each other's allocations.
//!
//! `GlobalAlloc` is an unsafe trait: implementing it needs `unsafe impl`, which is allowed
//! here because this is a test crate. The library itself keeps `#![forbid(unsafe_code)]`.
//! The implementation only counts and forwards every call to the system allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ratchetbox::{Account, SessionConfig, SessionRecord, Timestamp};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
    static BYTES: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: the allocator may be called while a thread is being torn down.
    let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
    let _ = BYTES.try_with(|n| n.set(n.get() + size));
}

// SAFETY: every method forwards to `System` with the same arguments, so `Counting` upholds
// exactly the guarantees `System` does; the bookkeeping touches only const-initialized
// thread-locals, which do not allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract, which we pass on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` (through this allocator) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
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
        let otk = bob.generate_one_time_prekeys(&mut rng, 1).expect("otk")[0];
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
            assert_eq!(bytes, len, "the one allocation is the plaintext itself");
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
fn an_empty_plaintext_decrypts_without_allocating() {
    let mut peers = Peers::steady();
    let wire = peers.alice_sends(b"");
    let (decrypted, allocations, _) = count(|| peers.bob_reads(&wire));
    assert!(decrypted.is_empty());
    assert_eq!(allocations, 0);
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
    assert!(result.is_err());
    // The output buffer is allocated before the tag is checked, and freed on failure.
    assert!(allocations <= 1, "{allocations} allocations");
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
