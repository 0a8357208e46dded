//! Seal and open throughput next to raw AES-256-GCM over the same bytes, in the same run.
//!
//! ```text
//! cargo bench -p ratchetbox-bench --bench attachment                      # one thread
//! cargo bench -p ratchetbox-bench --bench attachment --features parallel  # adds *_parallel
//! ```
//!
//! Baselines, all over the plaintext length of each size:
//! - `raw_aes_gcm_seal` / `raw_aes_gcm_open`: one AES-256-GCM call over the whole buffer,
//!   from an input buffer to an output buffer (no copy, no chunking, no padding, no digest).
//! - `raw_sha256`, `raw_blake3`: the two candidate hashes alone over the ciphertext, in
//!   64 KiB + 16-byte pieces (a default chunk and its tag), single-threaded.
//! - `raw_aes_gcm_seal+blake3` / `raw_blake3+aes_gcm_open`: raw AES-256-GCM plus one BLAKE3
//!   pass over the ciphertext in those pieces: the format's own work (a leaf hash over every
//!   sealed chunk), so the bound for `seal` and `open` on one core.
//! - `raw_aes_gcm_seal_alloc`: raw sealing into a freshly allocated output, as the in-memory
//!   `seal` returns one.
//!
//! `seal_in_place` and `open_in_place` (and their `_parallel` counterparts) are timed on a
//! buffer prepared, untimed, before each call (`iter_batched`): filled with the plaintext (or
//! the sealed file), its pages touched, and at 64 MiB (where every other function reads its
//! input from memory) the caches flushed by reading 64 MiB elsewhere.

use std::hint::black_box;
use std::io;
use std::time::Duration;

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use criterion::measurement::WallTime;
use criterion::{
    BatchSize, BenchmarkGroup, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ratchetbox::attachment::{self, AttachmentMetadata};
use sha2::{Digest, Sha256};

/// BLAKE3 over `buf` in 64 KiB + 16-byte pieces, single-threaded.
fn blake3_pieces(buf: &[u8]) {
    for piece in buf.chunks(65_536 + 16) {
        black_box(blake3::hash(piece));
    }
}

const SIZES: [(usize, &str); 3] = [(64 << 10, "64KiB"), (1 << 20, "1MiB"), (64 << 20, "64MiB")];

/// Reads `evict` (twice the last-level cache or more), so that what was written before is
/// no longer in any cache.
fn flush_caches(evict: &[u8]) {
    let mut sum = 0u64;
    for line in evict.chunks(64) {
        sum = sum.wrapping_add(u64::from(line[0]));
    }
    black_box(sum);
}

/// `bytes` in a buffer of `capacity`, then the caches flushed.
fn prepared(bytes: &[u8], capacity: usize, evict: &[u8]) -> Vec<u8> {
    let mut buffer = Vec::with_capacity(capacity);
    buffer.extend_from_slice(bytes);
    flush_caches(evict);
    buffer
}

fn data(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u8) ^ ((i >> 8) as u8)).collect()
}

fn bench(c: &mut Criterion) {
    let cipher = Aes256Gcm::new(&[7u8; 32].into());
    let nonce = [9u8; 12];
    let evict = vec![1u8; 64 << 20];
    for (len, name) in SIZES {
        let mut group = c.benchmark_group(format!("attachment/{name}"));
        group.throughput(Throughput::Bytes(len as u64));
        if len >= 64 << 20 {
            group.sample_size(10);
            group.warm_up_time(Duration::from_secs(2));
            group.measurement_time(Duration::from_secs(8));
        } else {
            group.measurement_time(Duration::from_secs(4));
        }
        let plaintext = data(len);
        let mut out = vec![0u8; len];

        group.bench_function(BenchmarkId::from_parameter("raw_aes_gcm_seal"), |b| {
            b.iter(|| {
                let buf = InOutBuf::new(&plaintext, &mut out).expect("equal lengths");
                black_box(
                    cipher
                        .encrypt_inout_detached((&nonce).into(), b"", buf)
                        .expect("seal"),
                )
            })
        });
        let mut ciphertext = vec![0u8; len];
        let tag = cipher
            .encrypt_inout_detached(
                (&nonce).into(),
                b"",
                InOutBuf::new(&plaintext, &mut ciphertext).expect("equal lengths"),
            )
            .expect("seal");
        group.bench_function(BenchmarkId::from_parameter("raw_aes_gcm_open"), |b| {
            b.iter(|| {
                let buf = InOutBuf::new(&ciphertext, &mut out).expect("equal lengths");
                cipher
                    .decrypt_inout_detached((&nonce).into(), b"", buf, &tag)
                    .expect("open");
                black_box(&out);
            })
        });
        group.bench_function(BenchmarkId::from_parameter("raw_sha256"), |b| {
            b.iter(|| {
                for piece in ciphertext.chunks(65_536 + 16) {
                    black_box(Sha256::digest(piece));
                }
            })
        });
        group.bench_function(BenchmarkId::from_parameter("raw_blake3"), |b| {
            b.iter(|| blake3_pieces(&ciphertext))
        });
        group.bench_function(
            BenchmarkId::from_parameter("raw_aes_gcm_seal+blake3"),
            |b| {
                b.iter(|| {
                    let buf = InOutBuf::new(&plaintext, &mut out).expect("equal lengths");
                    let tag = cipher
                        .encrypt_inout_detached((&nonce).into(), b"", buf)
                        .expect("seal");
                    blake3_pieces(&out);
                    black_box(tag)
                })
            },
        );
        group.bench_function(
            BenchmarkId::from_parameter("raw_blake3+aes_gcm_open"),
            |b| {
                b.iter(|| {
                    blake3_pieces(&ciphertext);
                    let buf = InOutBuf::new(&ciphertext, &mut out).expect("equal lengths");
                    cipher
                        .decrypt_inout_detached((&nonce).into(), b"", buf, &tag)
                        .expect("open");
                    black_box(&out);
                })
            },
        );

        // Raw AES-GCM into a freshly allocated output, as the in-memory `seal` and `open`
        // return one (page faults on a fresh buffer cost as much as the encryption here).
        group.bench_function(BenchmarkId::from_parameter("raw_aes_gcm_seal_alloc"), |b| {
            b.iter(|| {
                let mut fresh = vec![0u8; len];
                let buf = InOutBuf::new(&plaintext, &mut fresh).expect("equal lengths");
                let tag = cipher
                    .encrypt_inout_detached((&nonce).into(), b"", buf)
                    .expect("seal");
                black_box((tag, fresh))
            })
        });
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        bench_call(&mut group, "seal", || {
            attachment::seal(&mut rng, &plaintext, AttachmentMetadata::default()).expect("seal")
        });
        let (pointer, sealed) =
            attachment::seal(&mut rng, &plaintext, AttachmentMetadata::default()).expect("seal");
        bench_call(&mut group, "open", || {
            attachment::open(&pointer, &sealed).expect("open")
        });
        let sealed_len = sealed.len();
        // At 1 MiB and below every function finds its input in cache; at 64 MiB none does.
        let evict: &[u8] = if len >= 64 << 20 { &evict } else { &[] };
        group.bench_function(BenchmarkId::from_parameter("seal_in_place"), |b| {
            b.iter_batched(
                || prepared(&plaintext, sealed_len, evict),
                |mut buffer| {
                    let pointer = attachment::seal_in_place(
                        &mut rng,
                        &mut buffer,
                        AttachmentMetadata::default(),
                    )
                    .expect("seal");
                    (pointer, buffer)
                },
                BatchSize::PerIteration,
            )
        });
        group.bench_function(BenchmarkId::from_parameter("open_in_place"), |b| {
            b.iter_batched(
                || prepared(&sealed, sealed_len, evict),
                |buffer| attachment::open_in_place(&pointer, buffer).expect("open"),
                BatchSize::PerIteration,
            )
        });
        bench_call(&mut group, "seal_stream", || {
            attachment::seal_stream(
                &mut rng,
                &mut plaintext.as_slice(),
                &mut io::sink(),
                AttachmentMetadata::default(),
            )
            .expect("seal")
        });
        bench_call(&mut group, "open_stream", || {
            attachment::open_stream(&pointer, &mut io::Cursor::new(&sealed), &mut io::sink())
                .expect("open")
        });
        #[cfg(feature = "parallel")]
        {
            bench_call(&mut group, "seal_parallel", || {
                attachment::seal_parallel(&mut rng, &plaintext, AttachmentMetadata::default())
                    .expect("seal")
            });
            bench_call(&mut group, "open_parallel", || {
                attachment::open_parallel(&pointer, &sealed).expect("open")
            });
            group.bench_function(BenchmarkId::from_parameter("seal_in_place_parallel"), |b| {
                b.iter_batched(
                    || prepared(&plaintext, sealed_len, evict),
                    |mut buffer| {
                        let pointer = attachment::seal_in_place_parallel(
                            &mut rng,
                            &mut buffer,
                            AttachmentMetadata::default(),
                        )
                        .expect("seal");
                        (pointer, buffer)
                    },
                    BatchSize::PerIteration,
                )
            });
            group.bench_function(BenchmarkId::from_parameter("open_in_place_parallel"), |b| {
                b.iter_batched(
                    || prepared(&sealed, sealed_len, evict),
                    |buffer| attachment::open_in_place_parallel(&pointer, buffer).expect("open"),
                    BatchSize::PerIteration,
                )
            });
            bench_call(&mut group, "seal_stream_parallel", || {
                attachment::seal_stream_parallel(
                    &mut rng,
                    &mut plaintext.as_slice(),
                    &mut io::sink(),
                    AttachmentMetadata::default(),
                )
                .expect("seal")
            });
            bench_call(&mut group, "open_stream_parallel", || {
                attachment::open_stream_parallel(
                    &pointer,
                    &mut io::Cursor::new(&sealed),
                    &mut io::sink(),
                )
                .expect("open")
            });
        }
        group.finish();
    }
}

/// Benchmarks `call` as `name` in `group`, its result passed through `black_box`.
fn bench_call<T>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    mut call: impl FnMut() -> T,
) {
    group.bench_function(BenchmarkId::from_parameter(name), |b| {
        b.iter(|| black_box(call()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
