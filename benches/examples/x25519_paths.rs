//! X25519 through curve25519-dalek's two variable-base paths, on the same inputs, in one run
//! (issue 17, point 2):
//!
//! - `ladder`: x25519-dalek's Diffie-Hellman, `MontgomeryPoint::mul_clamped` (the Montgomery
//!   ladder on the serial field arithmetic, whatever the CPU);
//! - `edwards`: `u -> MontgomeryPoint::to_edwards(0) -> EdwardsPoint::mul_clamped ->
//!   to_montgomery`, whose multiplication goes through curve25519-dalek's runtime-selected
//!   backend (AVX2 or AVX-512 IFMA if compiled in, else serial);
//!
//! and its three steps alone, plus the key generation paths (fixed-base multiplication with
//! the precomputed table, as x25519-dalek does, against the ladder on the base point), and the
//! ping-pong message (a DH ratchet step on each side: key generation and two DHs per
//! message) of ratchetbox and of vodozemac, the same workloads as the throughput tool's
//! ping-pong row (`benches/support`), so that the ratio can be read from the minima too.
//!
//! ```text
//! cargo run --release -p ratchetbox-bench --example x25519_paths
//! cargo run --release -p ratchetbox-bench --example x25519_paths -- --reps 31 --round-ms 20
//! # curve25519-dalek's AVX-512 IFMA backend compiled in (runtime-detected, stable >= 1.89):
//! RUSTFLAGS='--cfg curve25519_dalek_backend="avx512"' CARGO_TARGET_DIR=target/avx512 \
//!     cargo run --release -p ratchetbox-bench --example x25519_paths
//! # the serial backend only:
//! RUSTFLAGS='--cfg curve25519_dalek_backend="serial"' CARGO_TARGET_DIR=target/serial \
//!     cargo run --release -p ratchetbox-bench --example x25519_paths
//! ```
//!
//! Each operation runs in rounds over the same 64 inputs; the rounds of all operations are
//! interleaved (a burst of load from elsewhere hits all alike) and each reports the median of
//! its rounds and its fastest round (on a machine shared with other work, the minimum is the
//! least disturbed figure). Before timing, the tool checks that both DH paths give the same bytes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use curve25519_dalek::constants::X25519_BASEPOINT;
use curve25519_dalek::{EdwardsPoint, MontgomeryPoint};
use rand_core::{Rng, SeedableRng};
use ratchetbox::SessionConfig;
use support::{RbPair, VzPair, plaintext};

#[path = "../support/mod.rs"]
mod support;

/// The number of (scalar, point) inputs each round cycles through.
const INPUTS: usize = 64;

fn edwards_dh(u: &MontgomeryPoint, k: [u8; 32]) -> MontgomeryPoint {
    u.to_edwards(0)
        .expect("the inputs are curve points")
        .mul_clamped(k)
        .to_montgomery()
}

/// One input: a scalar, a public key, and the same public key on the Edwards curve.
type Input = ([u8; 32], MontgomeryPoint, EdwardsPoint);

/// One timed operation: a pass over the inputs, returning a byte so the work is not optimized
/// away.
type Run = Box<dyn FnMut(&[Input]) -> u8>;

struct Op {
    name: &'static str,
    run: Run,
    rounds: Vec<f64>,
}

fn main() {
    let mut reps = 21usize;
    let mut round = Duration::from_millis(20);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--reps", Some(n)) => reps = n.max(1) as usize,
            ("--round-ms", Some(n)) => round = Duration::from_millis(n.max(1)),
            _ => {
                eprintln!("options: --reps N --round-ms N");
                std::process::exit(2);
            }
        }
    }

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(17);
    let inputs: Vec<Input> = (0..INPUTS)
        .map(|_| {
            let mut k = [0u8; 32];
            let mut peer = [0u8; 32];
            rng.fill_bytes(&mut k);
            rng.fill_bytes(&mut peer);
            let u = EdwardsPoint::mul_base_clamped(peer).to_montgomery();
            let e = u.to_edwards(0).expect("a public key is a curve point");
            (k, u, e)
        })
        .collect();
    for (k, u, _) in &inputs {
        assert_eq!(
            u.mul_clamped(*k),
            edwards_dh(u, *k),
            "the two paths disagree"
        );
        assert_eq!(
            EdwardsPoint::mul_base_clamped(*k).to_montgomery(),
            X25519_BASEPOINT.mul_clamped(*k),
            "the key generation paths disagree"
        );
    }

    let mut ops = vec![
        Op {
            name: "DH, ladder (x25519-dalek)",
            run: Box::new(|inputs| {
                let mut acc = 0;
                for (k, u, _) in inputs {
                    acc ^= black_box(u).mul_clamped(*black_box(k)).0[0];
                }
                acc
            }),
            rounds: Vec::new(),
        },
        Op {
            name: "DH, Edwards (to_edwards, mul_clamped, to_montgomery)",
            run: Box::new(|inputs| {
                let mut acc = 0;
                for (k, u, _) in inputs {
                    acc ^= edwards_dh(black_box(u), *black_box(k)).0[0];
                }
                acc
            }),
            rounds: Vec::new(),
        },
        Op {
            name: "  step: to_edwards(0)",
            run: Box::new(|inputs| {
                let mut acc = 0;
                for (_, u, _) in inputs {
                    black_box(black_box(u).to_edwards(0).expect("curve point"));
                    acc ^= u.0[0];
                }
                acc
            }),
            rounds: Vec::new(),
        },
        Op {
            name: "  step: EdwardsPoint::mul_clamped",
            run: Box::new(|inputs| {
                let mut acc = 0;
                for (k, _, e) in inputs {
                    black_box(black_box(e).mul_clamped(*black_box(k)));
                    acc ^= k[0];
                }
                acc
            }),
            rounds: Vec::new(),
        },
        Op {
            name: "  step: to_montgomery",
            run: Box::new(|inputs| {
                let mut acc = 0;
                for (_, _, e) in inputs {
                    acc ^= black_box(e).to_montgomery().0[0];
                }
                acc
            }),
            rounds: Vec::new(),
        },
        Op {
            name: "keygen, Edwards base table (x25519-dalek)",
            run: Box::new(|inputs| {
                let mut acc = 0;
                for (k, _, _) in inputs {
                    acc ^= EdwardsPoint::mul_base_clamped(*black_box(k))
                        .to_montgomery()
                        .0[0];
                }
                acc
            }),
            rounds: Vec::new(),
        },
        Op {
            name: "keygen, ladder on the base point",
            run: Box::new(|inputs| {
                let mut acc = 0;
                for (k, _, _) in inputs {
                    acc ^= black_box(X25519_BASEPOINT).mul_clamped(*black_box(k)).0[0];
                }
                acc
            }),
            rounds: Vec::new(),
        },
    ];
    // Ping-pong: INPUTS / 2 turns of two messages each, so that every row is per operation
    // (here: per message) over INPUTS operations.
    let mut rb = RbPair::established(9, SessionConfig::default());
    let mut vz = VzPair::established();
    let small = plaintext(support::SMALL);
    let small2 = small.clone();
    ops.push(Op {
        name: "ping-pong message with DH ratchet step, 100 B, ratchetbox",
        run: Box::new(move |_| {
            for _ in 0..INPUTS / 2 {
                rb.ping_pong(&small);
            }
            0
        }),
        rounds: Vec::new(),
    });
    ops.push(Op {
        name: "ping-pong message with DH ratchet step, 100 B, vodozemac",
        run: Box::new(move |_| {
            for _ in 0..INPUTS / 2 {
                vz.ping_pong(&small2);
            }
            0
        }),
        rounds: Vec::new(),
    });

    // Calibrate: passes over the inputs per round, from one timed pass of the slowest op.
    let start = Instant::now();
    black_box((ops[1].run)(&inputs));
    let pass = start.elapsed().max(Duration::from_micros(1));
    let passes = (round.as_secs_f64() / pass.as_secs_f64()).ceil().max(1.0) as usize;

    for _ in 0..reps {
        for op in &mut ops {
            let start = Instant::now();
            for _ in 0..passes {
                black_box((op.run)(black_box(&inputs)));
            }
            let per_op = start.elapsed().as_secs_f64() / (passes * INPUTS) as f64;
            op.rounds.push(per_op * 1e6);
        }
    }

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "x25519_paths: {reps} interleaved rounds x {passes} passes x {INPUTS} inputs; \
         load average {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    #[cfg(target_arch = "x86_64")]
    println!(
        "CPU: avx2 {}, avx512ifma {}, avx512vl {}; compiled with target_feature avx2 {}, \
         avx512ifma {}",
        std::arch::is_x86_feature_detected!("avx2"),
        std::arch::is_x86_feature_detected!("avx512ifma"),
        std::arch::is_x86_feature_detected!("avx512vl"),
        cfg!(target_feature = "avx2"),
        cfg!(target_feature = "avx512ifma"),
    );
    println!(
        "curve25519-dalek backend: chosen by its build script (serial, AVX2, or AVX-512 IFMA \
         with --cfg curve25519_dalek_backend=\"avx512\" or target_feature avx512ifma) and \
         then at run time by CPU detection; compare the step rows across builds"
    );
    let ladder = median(&ops[0].rounds);
    let ladder_min = min(&ops[0].rounds);
    println!();
    println!(
        "| operation | median (us) | min (us) | ladder / this (medians) | ladder / this (minima) |"
    );
    println!("|---|---:|---:|---:|---:|");
    for op in &ops {
        let (m, least) = (median(&op.rounds), min(&op.rounds));
        println!(
            "| {} | {m:.2} | {least:.2} | {:.2}x | {:.2}x |",
            op.name.trim(),
            ladder / m,
            ladder_min / least
        );
    }
    let (rb, vz) = (&ops[ops.len() - 2].rounds, &ops[ops.len() - 1].rounds);
    println!();
    println!(
        "ping-pong, vodozemac / ratchetbox: {:.2}x (medians), {:.2}x (minima)",
        median(vz) / median(rb),
        min(vz) / min(rb)
    );
}

/// The fastest round: under load from other processes, the least disturbed one.
fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}
