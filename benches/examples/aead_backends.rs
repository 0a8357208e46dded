//! AES-256-GCM backends side by side: RustCrypto's `aes-gcm` (ratchetbox's default), `ring`
//! and `aws-lc-rs` (the two candidates for the `fast-aes` feature; AWS-LC was chosen), next
//! to `openssl speed -evp aes-256-gcm -bytes 16384` when an `openssl` binary exists.
//!
//! ```sh
//! cargo run --release -p ratchetbox-bench --example aead_backends
//! ```
//!
//! It also times ratchetbox itself: encrypting and decrypting a 1 MiB message through a
//! session (`SessionRecord::encrypt`/`decrypt`/`decrypt_into`), with whichever backend the build has: add
//! `--features fast-aes` for AWS-LC.
//!
//! Decryption is timed twice, because the allocator decides much of its cost. Each call
//! returns its plaintext in a fresh 1 MiB allocation, and where that memory comes from
//! depends on what the program freed before:
//! - `decrypt, fresh pages`: each message is made just before it is decrypted and both are
//!   freed right after. That frees 2 MiB at the top of glibc's heap, more than its trim
//!   threshold (twice the largest block it handed out by `mmap`, here about 2 MiB), so glibc
//!   returns the memory to the OS and the next plaintext lands on pages the kernel must fault
//!   in and zero one by one (about 256 page faults per MiB, seen with `perf stat -e
//!   page-faults`).
//! - `decrypt, memory reused`: the previous message is freed only once the next one is made,
//!   so the heap never has 2 MiB free at its top and each plaintext reuses memory the
//!   process already has, as in a program whose heap holds anything else.
//! - `decrypt_into`: as with fresh pages (each message made just before it is decrypted and
//!   freed right after), but through `SessionRecord::decrypt_into` with one output buffer
//!   kept for every message: what an app that reuses its buffer gets, whatever its heap.
//!
//! ```sh
//! cargo run --release -p ratchetbox-bench --features fast-aes --example aead_backends
//! ```
//!
//! Rounds interleave every column (and one `openssl speed` run per round, `--openssl-secs`
//! seconds), so each round's ratios are taken on the same machine load; the tool prints the
//! median of each column's per-round throughput and the median of the per-round ratios to
//! `openssl speed`. Options: `--rounds N` (default 9), `--round-ms M` (default 60) per
//! operation and column, `--openssl-secs S` (default 1).

#[path = "../support/mod.rs"]
mod support;

use std::hint::black_box;
use std::process::Command;
use std::time::{Duration, Instant};

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use ratchetbox::SessionConfig;
use support::{RbPair, RbPeer, plaintext};

const KEY: [u8; 32] = [7; 32];
const NONCE: [u8; 12] = [9; 12];
const SIZES: [usize; 2] = [16 * 1024, 1024 * 1024];
/// The message size of the ratchetbox rows.
const MESSAGE: usize = 1024 * 1024;
/// The backend ratchetbox was built with.
const LIBRARY_BACKEND: &str = if cfg!(feature = "fast-aes") {
    "AWS-LC, fast-aes"
} else {
    "RustCrypto, default"
};

/// One AES-256-GCM implementation: seal in place returning the tag, open in place.
trait Backend {
    fn name(&self) -> &'static str;
    fn seal(&self, buf: &mut [u8]) -> [u8; 16];
    fn open(&self, buf: &mut [u8], tag: &[u8; 16]);
}

struct RustCrypto(Aes256Gcm);
impl Backend for RustCrypto {
    fn name(&self) -> &'static str {
        "RustCrypto aes-gcm"
    }
    fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        let tag = self
            .0
            .encrypt_inout_detached((&NONCE).into(), &[], InOutBuf::from(buf))
            .expect("seal");
        tag.into()
    }
    fn open(&self, buf: &mut [u8], tag: &[u8; 16]) {
        self.0
            .decrypt_inout_detached((&NONCE).into(), &[], InOutBuf::from(buf), tag.into())
            .expect("open");
    }
}

struct Ring(ring::aead::LessSafeKey);
impl Backend for Ring {
    fn name(&self) -> &'static str {
        "ring"
    }
    fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        let nonce = ring::aead::Nonce::assume_unique_for_key(NONCE);
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce, ring::aead::Aad::empty(), buf)
            .expect("seal");
        tag.as_ref().try_into().expect("16 bytes")
    }
    fn open(&self, buf: &mut [u8], tag: &[u8; 16]) {
        let nonce = ring::aead::Nonce::assume_unique_for_key(NONCE);
        self.0
            .open_in_place_separate_tag(
                nonce,
                ring::aead::Aad::empty(),
                ring::aead::Tag::from(*tag),
                buf,
                0..,
            )
            .expect("open");
    }
}

struct AwsLc(aws_lc_rs::aead::LessSafeKey);
impl Backend for AwsLc {
    fn name(&self) -> &'static str {
        "aws-lc-rs"
    }
    fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(NONCE);
        let tag = self
            .0
            .seal_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::empty(), buf)
            .expect("seal");
        tag.as_ref().try_into().expect("16 bytes")
    }
    fn open(&self, buf: &mut [u8], tag: &[u8; 16]) {
        let nonce = aws_lc_rs::aead::Nonce::assume_unique_for_key(NONCE);
        self.0
            .open_in_place_separate_tag(nonce, aws_lc_rs::aead::Aad::empty(), tag, buf)
            .expect("open");
    }
}

fn backends() -> Vec<Box<dyn Backend>> {
    vec![
        Box::new(RustCrypto(Aes256Gcm::new((&KEY).into()))),
        Box::new(Ring(ring::aead::LessSafeKey::new(
            ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &KEY).expect("key"),
        ))),
        Box::new(AwsLc(aws_lc_rs::aead::LessSafeKey::new(
            aws_lc_rs::aead::UnboundKey::new(&aws_lc_rs::aead::AES_256_GCM, &KEY).expect("key"),
        ))),
    ]
}

/// Bytes per second of `op` over `len`-byte buffers for about `budget`.
/// Bytes per second of `decrypt` over 1 MiB messages, each made just before it is
/// decrypted and freed after (untimed). With `held`, a message is freed only once the next
/// one is made (see the module docs). The clock runs around `decrypt` alone, for at least
/// `budget` and two messages.
fn rate_of_decryptions(
    pair: &mut RbPair,
    message: &[u8],
    budget: Duration,
    mut held: Option<&mut Vec<u8>>,
    mut decrypt: impl FnMut(&mut RbPeer, &[u8]),
) -> f64 {
    let (mut spent, mut n) = (Duration::ZERO, 0u32);
    while spent < budget || n < 2 {
        let fresh = pair.alice_sends(message);
        let wire: &[u8] = match held.as_deref_mut() {
            // The previous message is freed here, once the next one is made.
            Some(held) => {
                *held = fresh;
                held
            }
            None => &fresh,
        };
        let start = Instant::now();
        decrypt(&mut pair.bob, wire);
        spent += start.elapsed();
        n += 1;
    }
    f64::from(n) * MESSAGE as f64 / spent.as_secs_f64()
}

fn rate(len: usize, budget: Duration, mut op: impl FnMut()) -> f64 {
    op();
    let start = Instant::now();
    let mut n = 0u64;
    while start.elapsed() < budget {
        op();
        n += 1;
    }
    (n as f64 * len as f64) / start.elapsed().as_secs_f64()
}

/// `openssl speed -evp aes-256-gcm -bytes 16384 -seconds S` in bytes per second, or `None`
/// without an `openssl` binary.
fn openssl_speed(secs: u32) -> Option<f64> {
    let out = Command::new("openssl")
        .args([
            "speed",
            "-evp",
            "aes-256-gcm",
            "-bytes",
            "16384",
            "-seconds",
        ])
        .arg(secs.to_string())
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .rev()
        .find(|l| l.to_ascii_lowercase().starts_with("aes-256-gcm"))?;
    let k: f64 = line
        .split_whitespace()
        .last()?
        .trim_end_matches('k')
        .parse()
        .ok()?;
    Some(k * 1000.0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn arg(args: &[String], name: &str, default: u64) -> u64 {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(|v| v.parse().expect("a number"))
        .unwrap_or(default)
}

fn ratio(v: &mut [f64]) -> String {
    if v.is_empty() {
        "-".to_string()
    } else {
        format!("{:.2}x", median(v))
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(|_| "?".into(), |s| s.trim().into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rounds = arg(&args, "--rounds", 9) as usize;
    let budget = Duration::from_millis(arg(&args, "--round-ms", 60));
    let secs = arg(&args, "--openssl-secs", 1) as u32;
    let backends = backends();
    println!("load average at start: {}", load());
    // rates[backend][size][seal/open] per round; openssl per round.
    let mut rates = vec![vec![[Vec::new(), Vec::new()]; SIZES.len()]; backends.len()];
    let mut ratios = vec![vec![[Vec::new(), Vec::new()]; SIZES.len()]; backends.len()];
    let mut ossl = Vec::new();
    // ratchetbox's 1 MiB message: [encrypt, decrypt] rates and ratios per round.
    // Two sessions: one whose sender only encrypts, one whose receiver reads every message
    // in order (so that no skipped keys pile up).
    let mut sender = RbPair::established(17, SessionConfig::default());
    let mut pair = RbPair::established(18, SessionConfig::default());
    let message = plaintext(MESSAGE);
    let mut msg_rates = [Vec::new(), Vec::new()];
    let mut msg_ratios = [Vec::new(), Vec::new()];
    // Decryption with the memory reused (see the module docs): the message held while the
    // next one is made.
    let mut held = pair.alice_sends(&message);
    let (mut reused_rates, mut reused_ratios) = (Vec::new(), Vec::new());
    // `decrypt_into` with one buffer for every message.
    let mut out = Vec::new();
    let (mut into_rates, mut into_ratios) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        let reference = openssl_speed(secs);
        for (b, backend) in backends.iter().enumerate() {
            for (s, &len) in SIZES.iter().enumerate() {
                let mut buf = vec![0x5au8; len];
                let seal = rate(len, budget, || {
                    black_box(backend.seal(black_box(&mut buf)));
                });
                let mut sealed = vec![0x5au8; len];
                let tag = backend.seal(&mut sealed);
                let mut work = sealed.clone();
                let open = rate(len, budget, || {
                    // Each open decrypts the same ciphertext, copied back first (a memcpy,
                    // small beside AES-GCM, and the same in every column).
                    work.copy_from_slice(&sealed);
                    backend.open(black_box(&mut work), &tag);
                });
                for (k, r) in [seal, open].into_iter().enumerate() {
                    rates[b][s][k].push(r);
                    if let Some(o) = reference {
                        ratios[b][s][k].push(r / o);
                    }
                }
            }
        }
        let encrypt = rate(MESSAGE, budget, || {
            black_box(sender.alice_sends(black_box(&message)));
        });
        // Decrypting: messages made before each timed decryption, the clock around it alone.
        let decrypt = rate_of_decryptions(&mut pair, &message, budget, None, |bob, wire| {
            black_box(bob.decrypt(black_box(wire)));
        });
        let reused =
            rate_of_decryptions(&mut pair, &message, budget, Some(&mut held), |bob, wire| {
                black_box(bob.decrypt(black_box(wire)));
            });
        reused_rates.push(reused);
        if let Some(o) = reference {
            reused_ratios.push(reused / o);
        }
        let into = rate_of_decryptions(&mut pair, &message, budget, None, |bob, wire| {
            bob.decrypt_into(black_box(wire), &mut out);
            black_box(&out);
        });
        into_rates.push(into);
        if let Some(o) = reference {
            into_ratios.push(into / o);
        }
        for (k, r) in [encrypt, decrypt].into_iter().enumerate() {
            msg_rates[k].push(r);
            if let Some(o) = reference {
                msg_ratios[k].push(r / o);
            }
        }
        if let Some(o) = reference {
            ossl.push(o);
        }
    }
    println!("load average at end: {}", load());
    println!("{rounds} interleaved rounds; medians of per-round figures");
    if ossl.is_empty() {
        println!("openssl: not found, no ratios");
    } else {
        println!(
            "openssl speed -evp aes-256-gcm -bytes 16384: {:.0} MiB/s",
            median(&mut ossl) / (1024.0 * 1024.0)
        );
    }
    println!("| backend | size | seal MiB/s | open MiB/s | seal / openssl | open / openssl |");
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (b, backend) in backends.iter().enumerate() {
        for (s, &len) in SIZES.iter().enumerate() {
            let [seal, open] = &mut rates[b][s];
            let [rs, ro] = &mut ratios[b][s];
            println!(
                "| {} | {} KiB | {:.0} | {:.0} | {} | {} |",
                backend.name(),
                len / 1024,
                median(seal) / (1024.0 * 1024.0),
                median(open) / (1024.0 * 1024.0),
                ratio(rs),
                ratio(ro),
            );
        }
    }
    let [enc, dec] = &mut msg_rates;
    let [renc, rdec] = &mut msg_ratios;
    println!(
        "| ratchetbox message ({LIBRARY_BACKEND}; decrypt, fresh pages) | {} KiB | {:.0} | {:.0} | {} | {} |",
        MESSAGE / 1024,
        median(enc) / (1024.0 * 1024.0),
        median(dec) / (1024.0 * 1024.0),
        ratio(renc),
        ratio(rdec),
    );
    println!(
        "| ratchetbox message ({LIBRARY_BACKEND}; decrypt, memory reused) | {} KiB | | {:.0} | | {} |",
        MESSAGE / 1024,
        median(&mut reused_rates) / (1024.0 * 1024.0),
        ratio(&mut reused_ratios),
    );
    println!(
        "| ratchetbox message ({LIBRARY_BACKEND}; decrypt_into, one buffer) | {} KiB | | {:.0} | | {} |",
        MESSAGE / 1024,
        median(&mut into_rates) / (1024.0 * 1024.0),
        ratio(&mut into_ratios),
    );
}
