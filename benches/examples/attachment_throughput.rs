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
//! ```text
//! # 64 MiB, 9 rounds; then the same with the *_parallel functions
//! cargo run --release -p ratchetbox-bench --example attachment_throughput -- 64 9
//! cargo run --release -p ratchetbox-bench --example attachment_throughput \
//!     --features parallel -- 64 9
//! ```

use std::hint::black_box;
use std::io;
use std::time::Instant;

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use ratchetbox::attachment::{self, AttachmentMetadata};
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

/// MiB/s of `f` over `bytes`, repeating it for at least 150 ms.
fn rate(bytes: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    let mut runs = 0u32;
    while runs == 0 || start.elapsed().as_secs_f64() < 0.15 {
        f();
        runs += 1;
    }
    (bytes as f64 * f64::from(runs)) / (1 << 20) as f64 / start.elapsed().as_secs_f64()
}

/// A measured function: its name, what it does ("seal", "open" or "" for a baseline), the call.
type Op<'a> = (&'static str, &'static str, Box<dyn FnMut() + 'a>);

/// An attachment call measured as a `kind` operation; its result is dropped at once.
fn op<'a, T>(name: &'static str, kind: &'static str, mut f: impl FnMut() -> T + 'a) -> Op<'a> {
    (
        name,
        kind,
        Box::new(move || {
            black_box(f());
        }),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let mib: usize = args.get(1).map_or(Ok(64), |s| s.parse())?;
    let rounds: usize = args.get(2).map_or(Ok(9), |s| s.parse())?;
    let len = mib << 20;
    let plaintext_owned: Vec<u8> = (0..len).map(|i| (i as u8) ^ ((i >> 9) as u8)).collect();
    let plaintext: &[u8] = &plaintext_owned;
    let out = std::cell::RefCell::new(vec![0u8; len]);
    let mut ciphertext = vec![0u8; len];
    let cipher = Aes256Gcm::new(&[7u8; 32].into());
    let nonce = [9u8; 12];
    let tag = cipher
        .encrypt_inout_detached(
            (&nonce).into(),
            b"",
            InOutBuf::new(plaintext, &mut ciphertext).map_err(|_| "lengths")?,
        )
        .map_err(|_| "seal")?;
    let mut rng = ratchetbox::OsRng::new();
    let (pointer, sealed) = attachment::seal(&mut rng, plaintext, AttachmentMetadata::default())?;

    let mut ops: Vec<Op> = Vec::new();
    // The raw baselines write into `out`, allocated once.
    ops.push((
        "raw_aes_gcm_seal",
        "",
        Box::new(|| {
            let mut o = out.borrow_mut();
            let buf = InOutBuf::new(plaintext, &mut o).expect("lengths");
            black_box(
                cipher
                    .encrypt_inout_detached((&nonce).into(), b"", buf)
                    .expect("seal"),
            );
        }),
    ));
    ops.push((
        "raw_aes_gcm_open",
        "",
        Box::new(|| {
            let mut o = out.borrow_mut();
            let buf = InOutBuf::new(&ciphertext, &mut o).expect("lengths");
            cipher
                .decrypt_inout_detached((&nonce).into(), b"", buf, &tag)
                .expect("open");
        }),
    ));
    ops.push(("raw_sha256", "", Box::new(|| sha256_pieces(&ciphertext))));
    ops.push(("raw_blake3", "", Box::new(|| blake3_pieces(&ciphertext))));
    ops.push((
        "raw_aes_gcm_seal+blake3",
        "",
        Box::new(|| {
            let mut o = out.borrow_mut();
            let buf = InOutBuf::new(plaintext, &mut o).expect("lengths");
            black_box(
                cipher
                    .encrypt_inout_detached((&nonce).into(), b"", buf)
                    .expect("seal"),
            );
            blake3_pieces(&o);
        }),
    ));
    ops.push((
        "raw_blake3+aes_gcm_open",
        "",
        Box::new(|| {
            blake3_pieces(&ciphertext);
            let mut o = out.borrow_mut();
            let buf = InOutBuf::new(&ciphertext, &mut o).expect("lengths");
            cipher
                .decrypt_inout_detached((&nonce).into(), b"", buf, &tag)
                .expect("open");
        }),
    ));
    // The same, but allocating the output on every call, as `seal` and `open` do.
    ops.push((
        "raw_aes_gcm_seal_alloc",
        "",
        Box::new(|| {
            let mut o = vec![0u8; plaintext.len()];
            let buf = InOutBuf::new(plaintext, &mut o).expect("lengths");
            black_box(
                cipher
                    .encrypt_inout_detached((&nonce).into(), b"", buf)
                    .expect("seal"),
            );
            black_box(o);
        }),
    ));
    ops.push((
        "raw_aes_gcm_open_alloc",
        "",
        Box::new(|| {
            let mut o = vec![0u8; ciphertext.len()];
            let buf = InOutBuf::new(&ciphertext, &mut o).expect("lengths");
            cipher
                .decrypt_inout_detached((&nonce).into(), b"", buf, &tag)
                .expect("open");
            black_box(o);
        }),
    ));
    let mut r1 = ratchetbox::OsRng::new();
    ops.push(op("seal", "seal", move || {
        attachment::seal(&mut r1, plaintext, AttachmentMetadata::default()).expect("seal")
    }));
    ops.push(op("open", "open", || {
        attachment::open(&pointer, &sealed).expect("open")
    }));
    let mut r2 = ratchetbox::OsRng::new();
    ops.push(op("seal_stream", "seal", move || {
        attachment::seal_stream(
            &mut r2,
            &mut &plaintext[..],
            &mut io::sink(),
            AttachmentMetadata::default(),
        )
        .expect("seal")
    }));
    ops.push(op("open_stream", "open", || {
        attachment::open_stream(&pointer, &mut io::Cursor::new(&sealed), &mut io::sink())
            .expect("open")
    }));
    #[cfg(feature = "parallel")]
    {
        let mut r3 = ratchetbox::OsRng::new();
        ops.push(op("seal_parallel", "seal", move || {
            attachment::seal_parallel(&mut r3, plaintext, AttachmentMetadata::default())
                .expect("seal")
        }));
        ops.push(op("open_parallel", "open", || {
            attachment::open_parallel(&pointer, &sealed).expect("open")
        }));
        let mut r4 = ratchetbox::OsRng::new();
        ops.push(op("seal_stream_parallel", "seal", move || {
            attachment::seal_stream_parallel(
                &mut r4,
                &mut &plaintext[..],
                &mut io::sink(),
                AttachmentMetadata::default(),
            )
            .expect("seal")
        }));
        ops.push(op("open_stream_parallel", "open", || {
            attachment::open_stream_parallel(
                &pointer,
                &mut io::Cursor::new(&sealed),
                &mut io::sink(),
            )
            .expect("open")
        }));
    }

    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); ops.len()];
    for _ in 0..rounds {
        for (i, (_, _, f)) in ops.iter_mut().enumerate() {
            rates[i].push(rate(len, f));
        }
    }
    let index = |name: &str| ops.iter().position(|(n, _, _)| *n == name).expect("op");
    let (raw_seal, raw_open) = (index("raw_aes_gcm_seal"), index("raw_aes_gcm_open"));
    let (sha_seal, sha_open) = (
        index("raw_aes_gcm_seal+blake3"),
        index("raw_blake3+aes_gcm_open"),
    );
    let (seal, open) = (index("seal"), index("open"));
    println!("{mib} MiB, {rounds} rounds (medians; ratios are medians of per-round ratios)");
    let (alloc_seal, alloc_open) = (
        index("raw_aes_gcm_seal_alloc"),
        index("raw_aes_gcm_open_alloc"),
    );
    println!(
        "{:<24} {:>9} {:>9} {:>10} {:>10} {:>12}",
        "function", "MiB/s", "vs raw", "vs bound", "vs alloc", "vs 1 thread"
    );
    for (i, (name, kind, _)) in ops.iter().enumerate() {
        let ratio = |j: usize| median(rates[i].iter().zip(&rates[j]).map(|(a, b)| a / b).collect());
        let (raw, sha, alloc, single) = match *kind {
            "seal" => (raw_seal, sha_seal, alloc_seal, seal),
            "open" => (raw_open, sha_open, alloc_open, open),
            _ => (i, i, i, i),
        };
        let single_text = if name.ends_with("parallel") {
            let base = if name.contains("stream") {
                index(&name.replace("_parallel", ""))
            } else {
                single
            };
            format!("{:.2}x", ratio(base))
        } else {
            String::new()
        };
        println!(
            "{:<24} {:>9.0} {:>8.0}% {:>9.0}% {:>9.0}% {:>12}",
            name,
            median(rates[i].clone()),
            ratio(raw) * 100.0,
            ratio(sha) * 100.0,
            ratio(alloc) * 100.0,
            single_text
        );
    }
    Ok(())
}
