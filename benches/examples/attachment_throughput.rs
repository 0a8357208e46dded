//! Interleaved throughput measurement of attachment sealing and opening against raw
//! AES-256-GCM over the same bytes, robust to a machine whose load changes: every round
//! measures every function once, back to back, and the reported ratios are the medians of
//! the per-round ratios.
//!
//! The format's own work is AES-256-GCM and one BLAKE3 leaf hash over every sealed byte,
//! so its bound is `raw_aes_gcm_*+blake3`: raw AES-256-GCM over the buffer, then BLAKE3 over
//! the same buffer in 64 KiB pieces, as the format hashes it (on one core, that is
//! 1 / (1/AES-GCM + 1/BLAKE3)). `raw_sha256` and `raw_blake3` time the two candidate hashes
//! alone over the same buffer, single-threaded: the measurement behind the choice of
//! BLAKE3.
//!
//! How each kind of function is measured:
//! - raw baselines write into one output buffer allocated once (its pages exist);
//!   `raw_aes_gcm_*_alloc` into a fresh allocation every call, as `seal` and `open` return.
//! - `seal`, `open` (and `*_parallel`): the call as it is, its fresh output included.
//! - `*_in_place`: on one buffer reused across calls (its pages exist). Before each call,
//!   untimed, the buffer is refilled (plaintext for sealing, the sealed file for opening).
//!   If the input and the buffer do not fit in the last-level cache together (64 MiB on a
//!   32 MiB cache), every other function reads its input from memory (it streams through
//!   more than the cache holds), so the caches are then flushed, also untimed, by reading
//!   twice the cache's size elsewhere: the call starts from memory like the others. Below
//!   that (1 MiB), every function finds its input in cache, and so does this one. Only the
//!   call is timed.
//! - `*_stream`: from a slice into `io::sink()` (nothing is written anywhere);
//!   `*_stream->vec`: into a `Vec` reused across calls (cleared, untimed, before each call),
//!   i.e. the streaming function producing the same bytes in memory as the in-memory ones.
//!
//! Columns: `vs raw` (raw AES-GCM), `vs bound` (`raw_aes_gcm_*+blake3`), `vs alloc`
//! (`raw_aes_gcm_seal_alloc+blake3` / `raw_blake3+aes_gcm_open_alloc`: the same work with
//! the output in a fresh allocation, as `seal` and `open` return one), `vs stream` (`seal_stream` / `open_stream` into
//! `io::sink()`), `vs 1 thread` (a `*_parallel` function over its single-threaded
//! counterpart; for a `*_2threads` baseline, the same work split over two threads, over the
//! one-thread baseline: what two cores give this machine at most).
//!
//! ```text
//! # 64 MiB, 9 rounds; then the same with the *_parallel functions
//! cargo run --release -p ratchetbox-bench --example attachment_throughput -- 64 9
//! cargo run --release -p ratchetbox-bench --example attachment_throughput \
//!     --features parallel -- 64 9
//! # with ratchetbox's `fast-aes` feature: AWS-LC under the format and under the baselines
//! cargo run --release -p ratchetbox-bench --example attachment_throughput \
//!     --features fast-aes -- 64 9
//! # only the functions whose names contain one of these (and what their ratios need)
//! cargo run --release -p ratchetbox-bench --example attachment_throughput \
//!     --features parallel -- 64 9 stream_parallel,in_place
//! ```

use std::cell::RefCell;
use std::hint::black_box;
use std::io;
use std::time::{Duration, Instant};

use ratchetbox::attachment::{self, AttachmentMetadata, AttachmentPointer};
use sha2::{Digest, Sha256};

/// BLAKE3 over `buf` in 64 KiB + 16-byte pieces (a default chunk and its tag), single-threaded.
fn blake3_pieces(buf: &[u8]) {
    for piece in buf.chunks(65_536 + 16) {
        black_box(blake3::hash(piece));
    }
}

/// SHA-256 over `buf` in the same pieces.
fn sha256_pieces(buf: &[u8]) {
    for piece in buf.chunks(65_536 + 16) {
        black_box(Sha256::digest(piece));
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// MiB/s of `f` over `bytes`: `prepare` runs untimed before each call of `f`, and calls are
/// repeated until `f` has taken at least 150 ms.
fn rate(bytes: usize, prepare: &mut dyn FnMut(), f: &mut dyn FnMut()) -> f64 {
    let mut timed = Duration::ZERO;
    let mut runs = 0u32;
    while runs == 0 || timed.as_secs_f64() < 0.15 {
        prepare();
        let start = Instant::now();
        f();
        timed += start.elapsed();
        runs += 1;
    }
    (bytes as f64 * f64::from(runs)) / (1 << 20) as f64 / timed.as_secs_f64()
}

/// What a measured function does: a baseline, or a seal or open function.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Baseline,
    Seal,
    Open,
}

/// A measured function: its name, its kind, the untimed preparation, the timed call.
struct Op<'a> {
    name: &'static str,
    kind: Kind,
    prepare: Box<dyn FnMut() + 'a>,
    call: Box<dyn FnMut() + 'a>,
}

/// A call measured as it is; its result is dropped at once.
fn op<'a, T>(name: &'static str, kind: Kind, mut f: impl FnMut() -> T + 'a) -> Op<'a> {
    Op {
        name,
        kind,
        prepare: Box::new(|| {}),
        call: Box::new(move || {
            black_box(f());
        }),
    }
}

/// The size of the last-level cache (Linux sysfs; 32 MiB if it cannot be read).
fn last_level_cache() -> usize {
    let read = |level: u32| {
        let path = format!("/sys/devices/system/cpu/cpu0/cache/index{level}/size");
        let text = std::fs::read_to_string(path).ok()?;
        let kib: usize = text.trim().strip_suffix('K')?.parse().ok()?;
        Some(kib << 10)
    };
    read(3).or_else(|| read(2)).unwrap_or(32 << 20)
}

/// Reads `evict` (twice the last-level cache), so that what was written before is no longer
/// in any cache. An empty `evict` flushes nothing.
fn flush_caches(evict: &[u8]) {
    let mut sum = 0u64;
    for line in evict.chunks(64) {
        sum = sum.wrapping_add(u64::from(line[0]));
    }
    black_box(sum);
}

/// A sealing function that works in the caller's buffer.
type SealInPlace = fn(
    &mut ratchetbox::OsRng,
    &mut Vec<u8>,
    AttachmentMetadata,
) -> Result<AttachmentPointer, ratchetbox::AttachmentError>;

/// An opening function that works in the caller's buffer.
type OpenInPlace = fn(&AttachmentPointer, Vec<u8>) -> Result<Vec<u8>, ratchetbox::AttachmentError>;

/// `seal` in `buffer`, refilled with `plaintext` and the caches flushed before each call.
fn seal_in_place_op<'a>(
    name: &'static str,
    function: SealInPlace,
    plaintext: &'a [u8],
    buffer: &'a RefCell<Vec<u8>>,
    evict: &'a [u8],
) -> Op<'a> {
    let mut rng = ratchetbox::OsRng::new();
    Op {
        name,
        kind: Kind::Seal,
        prepare: Box::new(move || {
            let mut b = buffer.borrow_mut();
            b.clear();
            b.extend_from_slice(plaintext);
            flush_caches(evict);
        }),
        call: Box::new(move || {
            let mut b = buffer.borrow_mut();
            black_box(function(&mut rng, &mut b, AttachmentMetadata::default()).expect("seal"));
        }),
    }
}

/// `open` of `sealed` in `buffer`, refilled with it and the caches flushed before each call.
fn open_in_place_op<'a>(
    name: &'static str,
    function: OpenInPlace,
    pointer: &'a AttachmentPointer,
    sealed: &'a [u8],
    buffer: &'a RefCell<Vec<u8>>,
    evict: &'a [u8],
) -> Op<'a> {
    Op {
        name,
        kind: Kind::Open,
        prepare: Box::new(move || {
            let mut b = buffer.borrow_mut();
            b.clear();
            b.extend_from_slice(sealed);
            flush_caches(evict);
        }),
        call: Box::new(move || {
            let sealed = std::mem::take(&mut *buffer.borrow_mut());
            // The same allocation comes back, holding the plaintext.
            *buffer.borrow_mut() = function(pointer, sealed).expect("open");
        }),
    }
}

/// Raw AES-256-GCM, the primitive of the baselines: RustCrypto's `aes-gcm`, or with this
/// package's `fast-aes` feature AWS-LC's (`aws-lc-rs`), the backend ratchetbox then uses, so
/// that the bound is the one of the build's own primitives.
struct Raw {
    #[cfg(not(feature = "fast-aes"))]
    key: aes_gcm::Aes256Gcm,
    #[cfg(feature = "fast-aes")]
    key: aws_lc_rs::aead::LessSafeKey,
}

const NONCE: [u8; 12] = [9; 12];

#[cfg(not(feature = "fast-aes"))]
impl Raw {
    fn new(key: &[u8; 32]) -> Self {
        use aes_gcm::KeyInit;
        Self {
            key: aes_gcm::Aes256Gcm::new(key.into()),
        }
    }

    fn seal_in_place(&self, buf: &mut [u8]) -> [u8; 16] {
        use aes_gcm::AeadInOut;
        let buf = aes_gcm::aead::inout::InOutBuf::from(buf);
        let tag = self.key.encrypt_inout_detached((&NONCE).into(), b"", buf);
        tag.expect("seal").into()
    }

    fn seal_into(&self, plaintext: &[u8], out: &mut [u8]) -> [u8; 16] {
        use aes_gcm::AeadInOut;
        let buf = aes_gcm::aead::inout::InOutBuf::new(plaintext, out).expect("lengths");
        let tag = self.key.encrypt_inout_detached((&NONCE).into(), b"", buf);
        tag.expect("seal").into()
    }

    fn open_into(&self, ciphertext: &[u8], out: &mut [u8], tag: &[u8; 16]) {
        use aes_gcm::AeadInOut;
        let buf = aes_gcm::aead::inout::InOutBuf::new(ciphertext, out).expect("lengths");
        self.key
            .decrypt_inout_detached((&NONCE).into(), b"", buf, tag.into())
            .expect("open");
    }
}

#[cfg(feature = "fast-aes")]
impl Raw {
    fn new(key: &[u8; 32]) -> Self {
        use aws_lc_rs::aead::{AES_256_GCM, LessSafeKey, UnboundKey};
        Self {
            key: LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("key")),
        }
    }

    fn seal_in_place(&self, buf: &mut [u8]) -> [u8; 16] {
        use aws_lc_rs::aead::{Aad, Nonce};
        let nonce = Nonce::assume_unique_for_key(NONCE);
        let tag = self
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), buf);
        tag.expect("seal").as_ref().try_into().expect("16 bytes")
    }

    /// AWS-LC seals in place only: the plaintext is copied into `out` first (the same copy
    /// ratchetbox's `fast-aes` backend makes).
    fn seal_into(&self, plaintext: &[u8], out: &mut [u8]) -> [u8; 16] {
        out.copy_from_slice(plaintext);
        self.seal_in_place(out)
    }

    fn open_into(&self, ciphertext: &[u8], out: &mut [u8], tag: &[u8; 16]) {
        use aws_lc_rs::aead::{Aad, Nonce};
        let nonce = Nonce::assume_unique_for_key(NONCE);
        self.key
            .open_separate_gather(nonce, Aad::empty(), ciphertext, tag, out)
            .expect("open");
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).map_or(Ok(64), |s| s.parse())?;
    let rounds: usize = args.get(2).map_or(Ok(9), |s| s.parse())?;
    let only: Vec<&str> = args.get(3).map_or(Vec::new(), |s| s.split(',').collect());
    let len = mib << 20;
    let plaintext_owned: Vec<u8> = (0..len).map(|i| (i as u8) ^ ((i >> 9) as u8)).collect();
    let plaintext: &[u8] = &plaintext_owned;
    let out = RefCell::new(vec![0u8; len]);
    let mut ciphertext = vec![0u8; len];
    let cipher = Raw::new(&[7u8; 32]);
    let tag = cipher.seal_into(plaintext, &mut ciphertext);
    // Each half of the plaintext sealed on its own, for the two-thread open baseline.
    let (halves, half_tags) = {
        let mut halves = plaintext.to_vec();
        let (h1, h2) = halves.split_at_mut(len / 2);
        let tags = (cipher.seal_in_place(h1), cipher.seal_in_place(h2));
        (halves, tags)
    };
    let mut rng = ratchetbox::OsRng::new();
    let (pointer, sealed) = attachment::seal(&mut rng, plaintext, AttachmentMetadata::default())?;
    let sealed: &[u8] = &sealed;
    let pointer = &pointer;
    // The reused buffers: pages touched once here, before any measurement.
    let in_place = RefCell::new(vec![1u8; sealed.len()]);
    let stream_out = RefCell::new(vec![1u8; sealed.len()]);
    let stream_out = &stream_out;
    // Flushing before an in-place call only where the other functions read from memory.
    let llc = last_level_cache();
    let evict = if 2 * len > llc {
        vec![1u8; 2 * llc]
    } else {
        Vec::new()
    };
    let evict: &[u8] = &evict;

    // The format's work split over two threads, each half on its own core.
    let seal_halves = |o: &mut [u8]| {
        let half = plaintext.len() / 2;
        let (o1, o2) = o.split_at_mut(half);
        let (p1, p2) = plaintext.split_at(half);
        let work = |p: &[u8], o: &mut [u8]| {
            let tag = cipher.seal_into(p, o);
            blake3_pieces(o);
            tag
        };
        std::thread::scope(|s| {
            let other = s.spawn(|| work(p2, o2));
            (work(p1, o1), other.join().expect("thread"))
        })
    };
    let open_halves = |o: &mut [u8]| {
        let half = halves.len() / 2;
        let (o1, o2) = o.split_at_mut(half);
        let (c1, c2) = halves.split_at(half);
        let work = |c: &[u8], o: &mut [u8], tag: &[u8; 16]| {
            blake3_pieces(c);
            cipher.open_into(c, o, tag);
        };
        std::thread::scope(|s| {
            let other = s.spawn(|| work(c2, o2, &half_tags.1));
            work(c1, o1, &half_tags.0);
            other.join().expect("thread");
        })
    };
    let (seal_halves, open_halves) = (&seal_halves, &open_halves);
    let mut ops: Vec<Op> = Vec::new();
    // The raw baselines write into `out`, allocated once.
    ops.push(op("raw_aes_gcm_seal", Kind::Baseline, || {
        let mut o = out.borrow_mut();
        cipher.seal_into(plaintext, &mut o)
    }));
    ops.push(op("raw_aes_gcm_open", Kind::Baseline, || {
        let mut o = out.borrow_mut();
        cipher.open_into(&ciphertext, &mut o, &tag);
    }));
    ops.push(op("raw_sha256", Kind::Baseline, || {
        sha256_pieces(&ciphertext)
    }));
    ops.push(op("raw_blake3", Kind::Baseline, || {
        blake3_pieces(&ciphertext)
    }));
    ops.push(op("raw_aes_gcm_seal+blake3", Kind::Baseline, || {
        let mut o = out.borrow_mut();
        let tag = cipher.seal_into(plaintext, &mut o);
        blake3_pieces(&o);
        tag
    }));
    ops.push(op("raw_blake3+aes_gcm_open", Kind::Baseline, || {
        blake3_pieces(&ciphertext);
        let mut o = out.borrow_mut();
        cipher.open_into(&ciphertext, &mut o, &tag);
    }));
    // The same work split over two threads (each half on its own core): the most that two
    // cores give this machine for the format's own work, the ceiling of the `_parallel`
    // functions' speed-up.
    ops.push(op(
        "raw_aes_gcm_seal+blake3_2threads",
        Kind::Baseline,
        || seal_halves(&mut out.borrow_mut()),
    ));
    ops.push(op(
        "raw_blake3+aes_gcm_open_2threads",
        Kind::Baseline,
        || open_halves(&mut out.borrow_mut()),
    ));
    // The same, but allocating the output on every call, as `seal` and `open` do.
    ops.push(op("raw_aes_gcm_seal_alloc", Kind::Baseline, || {
        let mut o = vec![0u8; plaintext.len()];
        let tag = cipher.seal_into(plaintext, &mut o);
        (tag, o)
    }));
    ops.push(op("raw_aes_gcm_open_alloc", Kind::Baseline, || {
        let mut o = vec![0u8; ciphertext.len()];
        cipher.open_into(&ciphertext, &mut o, &tag);
        o
    }));
    // The format's own work when the output is a fresh allocation: the bound of `seal` and
    // `open`, which return one.
    ops.push(op("raw_aes_gcm_seal_alloc+blake3", Kind::Baseline, || {
        let mut o = vec![0u8; plaintext.len()];
        let tag = cipher.seal_into(plaintext, &mut o);
        blake3_pieces(&o);
        (tag, o)
    }));
    ops.push(op("raw_blake3+aes_gcm_open_alloc", Kind::Baseline, || {
        blake3_pieces(&ciphertext);
        let mut o = vec![0u8; ciphertext.len()];
        cipher.open_into(&ciphertext, &mut o, &tag);
        o
    }));
    // The same split over two threads: the ceiling of `seal_parallel` and `open_parallel`,
    // whose output is a fresh allocation whose pages both cores fault in.
    ops.push(op(
        "raw_aes_gcm_seal_alloc+blake3_2threads",
        Kind::Baseline,
        || {
            let mut o = vec![0u8; plaintext.len()];
            (seal_halves(&mut o), o)
        },
    ));
    ops.push(op(
        "raw_blake3+aes_gcm_open_alloc_2threads",
        Kind::Baseline,
        || {
            let mut o = vec![0u8; halves.len()];
            open_halves(&mut o);
            o
        },
    ));
    let mut r1 = ratchetbox::OsRng::new();
    ops.push(op("seal", Kind::Seal, move || {
        attachment::seal(&mut r1, plaintext, AttachmentMetadata::default()).expect("seal")
    }));
    ops.push(op("open", Kind::Open, || {
        attachment::open(pointer, sealed).expect("open")
    }));
    ops.push(seal_in_place_op(
        "seal_in_place",
        attachment::seal_in_place,
        plaintext,
        &in_place,
        evict,
    ));
    ops.push(open_in_place_op(
        "open_in_place",
        attachment::open_in_place,
        pointer,
        sealed,
        &in_place,
        evict,
    ));
    let mut r2 = ratchetbox::OsRng::new();
    ops.push(op("seal_stream", Kind::Seal, move || {
        attachment::seal_stream(
            &mut r2,
            &mut &plaintext[..],
            &mut io::sink(),
            AttachmentMetadata::default(),
        )
        .expect("seal")
    }));
    ops.push(op("open_stream", Kind::Open, || {
        attachment::open_stream(pointer, &mut io::Cursor::new(sealed), &mut io::sink())
            .expect("open")
    }));
    let mut r3 = ratchetbox::OsRng::new();
    ops.push(Op {
        name: "seal_stream->vec",
        kind: Kind::Seal,
        prepare: Box::new(|| stream_out.borrow_mut().clear()),
        call: Box::new(move || {
            let mut o = stream_out.borrow_mut();
            black_box(
                attachment::seal_stream(
                    &mut r3,
                    &mut &plaintext[..],
                    &mut *o,
                    AttachmentMetadata::default(),
                )
                .expect("seal"),
            );
        }),
    });
    ops.push(Op {
        name: "open_stream->vec",
        kind: Kind::Open,
        prepare: Box::new(|| stream_out.borrow_mut().clear()),
        call: Box::new(|| {
            let mut o = stream_out.borrow_mut();
            black_box(
                attachment::open_stream(pointer, &mut io::Cursor::new(sealed), &mut *o)
                    .expect("open"),
            );
        }),
    });
    #[cfg(feature = "parallel")]
    {
        let mut r4 = ratchetbox::OsRng::new();
        ops.push(op("seal_parallel", Kind::Seal, move || {
            attachment::seal_parallel(&mut r4, plaintext, AttachmentMetadata::default())
                .expect("seal")
        }));
        ops.push(op("open_parallel", Kind::Open, || {
            attachment::open_parallel(pointer, sealed).expect("open")
        }));
        ops.push(seal_in_place_op(
            "seal_in_place_parallel",
            attachment::seal_in_place_parallel,
            plaintext,
            &in_place,
            evict,
        ));
        ops.push(open_in_place_op(
            "open_in_place_parallel",
            attachment::open_in_place_parallel,
            pointer,
            sealed,
            &in_place,
            evict,
        ));
        let mut r5 = ratchetbox::OsRng::new();
        ops.push(op("seal_stream_parallel", Kind::Seal, move || {
            attachment::seal_stream_parallel(
                &mut r5,
                &mut &plaintext[..],
                &mut io::sink(),
                AttachmentMetadata::default(),
            )
            .expect("seal")
        }));
        ops.push(op("open_stream_parallel", Kind::Open, || {
            attachment::open_stream_parallel(pointer, &mut io::Cursor::new(sealed), &mut io::sink())
                .expect("open")
        }));
    }

    if !only.is_empty() {
        // Keep the baselines, the streaming functions the `vs stream` column needs, and the
        // functions asked for with their single-threaded counterparts.
        let asked = |name: &str| only.iter().any(|o| name.contains(o));
        let keep: Vec<bool> = ops
            .iter()
            .map(|o| {
                o.kind == Kind::Baseline
                    || matches!(o.name, "seal_stream" | "open_stream")
                    || asked(o.name)
                    || asked(&format!("{}_parallel", o.name))
            })
            .collect();
        let mut keep = keep.into_iter();
        ops.retain(|_| keep.next().unwrap_or(false));
    }
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
    for _ in 0..rounds {
        for (i, o) in ops.iter_mut().enumerate() {
            rates[i].push(rate(len, &mut o.prepare, &mut o.call));
        }
    }
    let index = |name: &str| ops.iter().position(|o| o.name == name).expect("op");
    println!(
        "{mib} MiB, {rounds} rounds (medians; ratios are medians of per-round ratios); \
         caches flushed before in-place calls: {}",
        if evict.is_empty() { "no" } else { "yes" }
    );
    println!(
        "{:<38} {:>9} {:>9} {:>9} {:>9} {:>10} {:>12}",
        "function", "MiB/s", "vs raw", "vs bound", "vs alloc", "vs stream", "vs 1 thread"
    );
    for (i, o) in ops.iter().enumerate() {
        let ratio = |j: usize| median(rates[i].iter().zip(&rates[j]).map(|(a, b)| a / b).collect());
        let percent = |j: usize| format!("{:.0}%", ratio(j) * 100.0);
        let (raw, bound, alloc, stream) = match o.kind {
            Kind::Seal => (
                "raw_aes_gcm_seal",
                "raw_aes_gcm_seal+blake3",
                "raw_aes_gcm_seal_alloc+blake3",
                "seal_stream",
            ),
            Kind::Open => (
                "raw_aes_gcm_open",
                "raw_blake3+aes_gcm_open",
                "raw_blake3+aes_gcm_open_alloc",
                "open_stream",
            ),
            Kind::Baseline => {
                // A two-thread baseline's speed-up over its one-thread counterpart.
                let single = o
                    .name
                    .strip_suffix("_2threads")
                    .map_or(String::new(), |one| format!("{:.2}x", ratio(index(one))));
                println!(
                    "{:<38} {:>9.0} {:>9} {:>9} {:>9} {:>10} {:>12}",
                    o.name,
                    median(rates[i].clone()),
                    "",
                    "",
                    "",
                    "",
                    single
                );
                continue;
            }
        };
        let single = if o.name.ends_with("_parallel") {
            format!("{:.2}x", ratio(index(&o.name.replace("_parallel", ""))))
        } else {
            String::new()
        };
        println!(
            "{:<38} {:>9.0} {:>9} {:>9} {:>9} {:>10} {:>12}",
            o.name,
            median(rates[i].clone()),
            percent(index(raw)),
            percent(index(bound)),
            percent(index(alloc)),
            percent(index(stream)),
            single
        );
    }
    Ok(())
}
