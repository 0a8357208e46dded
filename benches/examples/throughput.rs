//! ratchetbox next to vodozemac (Matrix's Olm) and the floor set by the primitives, measured
//! in one run: one table with both libraries, the floor, and the ratios.
//!
//! ```text
//! cargo run --release -p ratchetbox-bench --example throughput
//! cargo run --release -p ratchetbox-bench --example throughput -- \
//!     --sizes 1024,1048576 --reps 21 --round-ms 100
//! # smoke test:
//! cargo run --release -p ratchetbox-bench --example throughput -- \
//!     --iters 1 --reps 1 --chain-length 1000
//! ```
//!
//! Each operation runs in rounds; the rounds of ratchetbox, vodozemac and the floor are
//! interleaved (so a burst of load from elsewhere hits all three alike), and each reports the
//! median of its rounds. Ratios are of those medians, from the same run.
//!
//! Options:
//! - `--sizes A,B,..`       large-message sizes in bytes (default 1024,65536,1048576)
//! - `--small N`            small-message size in bytes (default 100)
//! - `--stored A,B,..`      skipped keys stored for the cost-growth rows (default
//!   0,40,100,2000,4000,100000; above 4,000 the session's limit is raised to the count)
//! - `--chain-length N`     messages sent in one chain before the "long chain" row (default 10^6)
//! - `--iters N`            iterations per round for every operation (default: calibrated)
//! - `--round-ms N`         target duration of a calibrated round (default 40)
//! - `--reps N`             rounds per operation (default 15; many short rounds make the
//!   median robust to bursts of load from other processes)
//! - `--no-vodozemac`       skip the vodozemac column
//! - `--markdown`           print the table as Markdown (as in docs/BENCHMARKS.md)
//! - `--only A,B,..`        run only these groups: setup, steady, ping-pong, large, growth,
//!   state, persist, floor
//! - `--save FILE`          also write the measurements as JSON (with the build's features,
//!   the date and the load average), for the chart step
//! - `--charts DIR FILE..`  measure nothing: read runs saved with `--save` (the first is the
//!   base) and write the SVG charts into DIR and the results table to stdout
//!   (`benches/report/`); with `--doc FILE`, also replace the table in FILE between its
//!   markers (docs/BENCHMARKS.md)

#[path = "../support/mod.rs"]
mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use ratchetbox::{SessionConfig, SessionRecord, StorageKey};
use ratchetbox_bench::report;
use support::*;
use vodozemac::olm as vz;

// -----------------------------------------------------------------------------------------
// Options
// -----------------------------------------------------------------------------------------

struct Options {
    sizes: Vec<usize>,
    small: usize,
    stored: Vec<usize>,
    chain_length: u64,
    iters: Option<u64>,
    round: Duration,
    reps: usize,
    vodozemac: bool,
    markdown: bool,
    only: Option<Vec<String>>,
    save: Option<std::path::PathBuf>,
    charts: Option<std::path::PathBuf>,
    doc: Option<std::path::PathBuf>,
    inputs: Vec<String>,
}

fn usage(problem: &str) -> ! {
    eprintln!("throughput: {problem}");
    eprintln!(
        "options: --sizes A,B,.. --small N --stored A,B,.. --chain-length N --iters N \
         --round-ms N --reps N --no-vodozemac --markdown --only GROUP,.. --save FILE; \
         --charts DIR [--doc FILE] SAVED.."
    );
    std::process::exit(2);
}

fn parse_list(value: &str) -> Vec<usize> {
    value
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|_| usage("bad number in list"))
        })
        .collect()
}

impl Options {
    fn parse() -> Self {
        let mut options = Options {
            sizes: LARGE_SIZES.to_vec(),
            small: SMALL,
            stored: vec![0, 40, 100, 2_000, 4_000, 100_000],
            chain_length: 1_000_000,
            iters: None,
            round: Duration::from_millis(40),
            reps: 15,
            vodozemac: true,
            markdown: false,
            only: None,
            save: None,
            charts: None,
            doc: None,
            inputs: Vec::new(),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = || args.next().unwrap_or_else(|| usage("missing value"));
            let number = |v: String| -> u64 { v.parse().unwrap_or_else(|_| usage("bad number")) };
            match arg.as_str() {
                "--sizes" => options.sizes = parse_list(&value()),
                "--small" => options.small = number(value()) as usize,
                "--stored" => options.stored = parse_list(&value()),
                "--chain-length" => options.chain_length = number(value()),
                "--iters" => options.iters = Some(number(value()).max(1)),
                "--round-ms" => options.round = Duration::from_millis(number(value()).max(1)),
                "--reps" => options.reps = number(value()).max(1) as usize,
                "--no-vodozemac" => options.vodozemac = false,
                "--markdown" => options.markdown = true,
                "--only" => {
                    options.only = Some(value().split(',').map(str::to_string).collect());
                }
                "--save" => options.save = Some(value().into()),
                "--charts" => options.charts = Some(value().into()),
                "--doc" => options.doc = Some(value().into()),
                "-h" | "--help" => usage("usage"),
                other if !other.starts_with('-') => options.inputs.push(other.to_string()),
                other => usage(&format!("unknown option {other}")),
            }
        }
        options
    }
}

// -----------------------------------------------------------------------------------------
// Measurement
// -----------------------------------------------------------------------------------------

/// Runs an operation `n` times and returns the time the operation itself took.
type Candidate = Box<dyn FnMut(u64) -> Duration>;

/// A candidate that repeats `op` (its whole cost is timed).
fn simple(mut op: impl FnMut() + 'static) -> Candidate {
    Box::new(move |n| {
        let start = Instant::now();
        for _ in 0..n {
            op();
        }
        start.elapsed()
    })
}

/// A candidate whose inputs are prepared before the clock starts (like criterion's
/// `iter_batched`): `setup` builds one input per iteration (a copy of a session's state, so
/// that the same message can be decrypted again), only `op` is timed. The output (the
/// plaintext, say) is dropped at once, as an app would; the inputs after the clock stops.
fn batched<S: 'static, O: 'static>(
    mut setup: impl FnMut() -> S + 'static,
    mut op: impl FnMut(&mut S) -> O + 'static,
) -> Candidate {
    Box::new(move |n| {
        let mut inputs: Vec<S> = (0..n).map(|_| setup()).collect();
        let start = Instant::now();
        for input in &mut inputs {
            black_box(op(input));
        }
        let elapsed = start.elapsed();
        drop(inputs);
        elapsed
    })
}

#[derive(Clone, Copy)]
enum Unit {
    /// Report time per operation; `per` operations happen in one call.
    Latency { per: u64 },
    /// Report MiB/s for this many bytes per call.
    Throughput(usize),
}

struct Target {
    /// ratchetbox's time at most this multiple of the floor's.
    floor: Option<f64>,
    /// vodozemac's time at least this multiple of ratchetbox's.
    vodozemac: Option<f64>,
}

const NO_TARGET: Target = Target {
    floor: None,
    vodozemac: None,
};

struct Row {
    group: &'static str,
    op: String,
    unit: Unit,
    target: Target,
    /// ratchetbox, vodozemac, floor.
    candidates: [Option<Candidate>; 3],
    /// Median time of one call, per candidate.
    results: [Option<Duration>; 3],
}

fn row(
    group: &'static str,
    op: impl Into<String>,
    unit: Unit,
    target: Target,
    rb: Option<Candidate>,
    vz: Option<Candidate>,
    floor: Option<Candidate>,
) -> Row {
    Row {
        group,
        op: op.into(),
        unit,
        target,
        candidates: [rb, vz, floor],
        results: [None; 3],
    }
}

/// A row that measures only the floor (the primitive an operation is bounded by).
fn floor_row(op: impl Into<String>, unit: Unit, floor: Candidate) -> Row {
    row("floor", op, unit, NO_TARGET, None, None, Some(floor))
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn measure(row: &mut Row, options: &Options) {
    // Calibrate each candidate: iterations for one round of about `round`.
    let mut iters = [0u64; 3];
    for (i, candidate) in row.candidates.iter_mut().enumerate() {
        let Some(run) = candidate else { continue };
        iters[i] = match options.iters {
            Some(n) => n,
            None => {
                let mut n = 1;
                loop {
                    let t = run(n);
                    if t >= options.round / 4 || n >= 1 << 24 {
                        let per = t.as_secs_f64() / n as f64;
                        break ((options.round.as_secs_f64() / per.max(1e-9)) as u64).max(1);
                    }
                    n *= 4;
                }
            }
        };
    }
    let mut samples: [Vec<Duration>; 3] = Default::default();
    for _ in 0..options.reps {
        for (i, candidate) in row.candidates.iter_mut().enumerate() {
            if let Some(run) = candidate {
                samples[i].push(run(iters[i]) / iters[i] as u32);
            }
        }
    }
    for (result, samples) in row.results.iter_mut().zip(samples) {
        if !samples.is_empty() {
            *result = Some(median(samples));
        }
    }
    // Free the candidates' state (sessions with many stored keys) before the next row.
    row.candidates = [None, None, None];
}

// -----------------------------------------------------------------------------------------
// Formatting
// -----------------------------------------------------------------------------------------

fn format_value(unit: Unit, t: Option<Duration>) -> String {
    let Some(t) = t else { return "-".into() };
    match unit {
        Unit::Latency { per } => {
            let ns = t.as_secs_f64() * 1e9 / per as f64;
            if ns >= 100_000.0 {
                format!("{:.0} µs", ns / 1e3)
            } else if ns >= 1_000.0 {
                format!("{:.2} µs", ns / 1e3)
            } else {
                format!("{ns:.0} ns")
            }
        }
        Unit::Throughput(bytes) => {
            format!(
                "{:.0} MiB/s",
                bytes as f64 / t.as_secs_f64() / (1 << 20) as f64
            )
        }
    }
}

fn ratio(a: Option<Duration>, b: Option<Duration>) -> Option<f64> {
    Some(a?.as_secs_f64() / b?.as_secs_f64())
}

fn format_ratio(r: Option<f64>) -> String {
    r.map_or("-".into(), |r| format!("{r:.2}x"))
}

fn target_text(target: &Target, unit: Unit) -> String {
    let mut parts = Vec::new();
    if let Some(f) = target.floor {
        match unit {
            Unit::Throughput(_) => parts.push(format!(">= {:.0}% of floor", 100.0 / f)),
            Unit::Latency { .. } => parts.push(format!("<= {f}x floor")),
        }
    }
    if let Some(v) = target.vodozemac {
        parts.push(format!(">= {v}x vz"));
    }
    parts.join(", ")
}

fn met(row: &Row) -> &'static str {
    let [rb, vz, floor] = row.results;
    let mut verdict = None;
    if let (Some(limit), Some(r)) = (row.target.floor, ratio(rb, floor)) {
        verdict = Some(r <= limit);
    }
    if let (Some(limit), Some(r)) = (row.target.vodozemac, ratio(vz, rb)) {
        verdict = Some(verdict.unwrap_or(true) && r >= limit);
    }
    match verdict {
        Some(true) => "yes",
        Some(false) => "NO",
        None => "",
    }
}

fn print_table(rows: &[Row], markdown: bool) {
    let header = [
        "group",
        "operation",
        "ratchetbox",
        "vodozemac",
        "floor",
        "rb/floor",
        "vz/rb",
        "target",
        "met",
    ];
    let lines: Vec<[String; 9]> = rows
        .iter()
        .map(|r| {
            let [rb, vz, floor] = r.results;
            [
                r.group.to_string(),
                r.op.clone(),
                format_value(r.unit, rb),
                format_value(r.unit, vz),
                format_value(r.unit, floor),
                format_ratio(ratio(rb, floor)),
                format_ratio(ratio(vz, rb)),
                target_text(&r.target, r.unit),
                met(r).to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(|h| h.chars().count());
    for line in &lines {
        for (w, cell) in widths.iter_mut().zip(line) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let print = |cells: &[String]| {
        let padded: Vec<String> = cells
            .iter()
            .zip(widths)
            .enumerate()
            .map(|(i, (c, w))| {
                let pad = w - c.chars().count();
                if (2..7).contains(&i) {
                    format!("{}{c}", " ".repeat(pad))
                } else {
                    format!("{c}{}", " ".repeat(pad))
                }
            })
            .collect();
        if markdown {
            println!("| {} |", padded.join(" | "));
        } else {
            println!("{}", padded.join("  ").trim_end());
        }
    };
    print(&header.map(String::from));
    if markdown {
        let rule: Vec<String> = widths
            .iter()
            .enumerate()
            .map(|(i, w)| {
                if (2..7).contains(&i) {
                    format!("{}:", "-".repeat(w - 1))
                } else {
                    "-".repeat(*w)
                }
            })
            .collect();
        println!(
            "|{}|",
            rule.iter()
                .map(|r| format!(" {r} "))
                .collect::<Vec<_>>()
                .join("|")
        );
    } else {
        println!(
            "{}",
            "-".repeat(widths.iter().sum::<usize>() + 2 * (widths.len() - 1))
        );
    }
    for line in &lines {
        print(line);
    }
}

// -----------------------------------------------------------------------------------------
// The machine
// -----------------------------------------------------------------------------------------

/// The CPU's model name, family and model number (Linux's /proc/cpuinfo).
fn cpu_model() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        info.lines()
            .find(|l| l.split(':').next().is_some_and(|k| k.trim() == name))
            .and_then(|l| l.split(':').nth(1))
            .map(|v| v.trim().to_string())
    };
    match (field("model name"), field("cpu family"), field("model")) {
        (Some(name), Some(family), Some(model)) => {
            format!("{name}, family {family} model {model}")
        }
        (Some(name), _, _) => name,
        _ => "unknown".into(),
    }
}

#[allow(
    unexpected_cfgs,
    reason = "the aes and polyval crates' own backend switches"
)]
fn print_machine() {
    println!("CPU: {} ({} logical CPUs)", cpu_model(), num_cpus());
    #[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
    {
        let has = |yes: bool| if yes { "yes" } else { "no" };
        let aes = std::arch::is_x86_feature_detected!("aes");
        let pclmul = std::arch::is_x86_feature_detected!("pclmulqdq")
            && std::arch::is_x86_feature_detected!("avx");
        let vaes = std::arch::is_x86_feature_detected!("vaes");
        let vpclmul = std::arch::is_x86_feature_detected!("vpclmulqdq");
        let sha = std::arch::is_x86_feature_detected!("sha");
        let soft_aes = cfg!(aes_backend = "soft");
        let soft_polyval = cfg!(polyval_backend = "soft");
        println!(
            "AES-NI: {} (the aes crate dispatches to it at run time{})",
            has(aes && !soft_aes),
            if soft_aes {
                "; forced off by --cfg aes_backend=\"soft\""
            } else {
                ""
            }
        );
        let avx512 = std::arch::is_x86_feature_detected!("avx512f");
        println!(
            "VAES: {} (aes 0.9.4 uses it at run time{})",
            has(vaes && !soft_aes),
            if avx512 {
                "; 512-bit, as AVX-512F is present"
            } else {
                "; 256-bit"
            }
        );
        println!(
            "PCLMULQDQ: {} (polyval/ghash, GCM's authenticator{})",
            has(pclmul && !soft_polyval),
            if soft_polyval {
                "; forced off by --cfg polyval_backend=\"soft\""
            } else {
                ""
            }
        );
        println!(
            "VPCLMULQDQ: {} on the CPU; not used by polyval 0.7",
            has(vpclmul)
        );
        println!("SHA-NI: {} (sha2, for HMAC and HKDF)", has(sha));
    }
    #[cfg(not(any(target_arch = "x86_64", target_arch = "x86")))]
    println!("(not x86: AES/PMULL use is decided by the aes and polyval crates at run time)");
}

fn num_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

// -----------------------------------------------------------------------------------------
// The rows
// -----------------------------------------------------------------------------------------

fn setup_rows(o: &Options) -> Vec<Row> {
    let lat = Unit::Latency { per: 1 };
    let vzo = |c: Candidate| o.vodozemac.then_some(c);
    let small = o.small;
    let mut rows = Vec::new();

    let mut rb = RbInitiator::new(1, Setup::Classical);
    let vz = VzInitiator::new();
    let mut floor = Floor::new(2);
    rows.push(row(
        "setup",
        "X3DH initiator, classical (vz: outbound session)",
        lat,
        Target {
            floor: Some(1.3),
            vodozemac: None,
        },
        Some(simple(move || {
            black_box(rb.initiate());
        })),
        vzo(simple(move || {
            black_box(vz.initiate());
        })),
        Some(simple(move || {
            black_box(floor.x3dh_initiator());
        })),
    ));

    let mut rb = RbInitiator::new(11, Setup::PostQuantum);
    let mut floor = Floor::new(12);
    rows.push(row(
        "setup",
        "PQXDH initiator (ML-KEM-1024; vz has no equivalent)",
        lat,
        Target {
            floor: Some(1.3),
            vodozemac: None,
        },
        Some(simple(move || {
            black_box(rb.initiate());
        })),
        None,
        Some(simple(move || {
            black_box(floor.pqxdh_initiator());
        })),
    ));

    let rb = std::rc::Rc::new(RbResponder::new(13, Setup::PostQuantum));
    let rb2 = rb.clone();
    let mut floor = Floor::new(14);
    let (ct, tag) = floor.aead.sealed(small);
    let mut out = vec![0; small];
    rows.push(row(
        "setup",
        format!("PQXDH responder + first {small} B message"),
        lat,
        Target {
            floor: Some(1.3),
            vodozemac: None,
        },
        Some(batched(
            move || rb.fresh_account(),
            move |account| rb2.respond(account),
        )),
        None,
        Some(simple(move || floor.pqxdh_responder(&ct, &tag, &mut out))),
    ));

    let rb = std::rc::Rc::new(RbResponder::new(3, Setup::Classical));
    let rb2 = rb.clone();
    let vz = std::rc::Rc::new(VzResponder::new());
    let vz2 = vz.clone();
    let vz_wire = vz.message.to_bytes();
    let mut floor = Floor::new(4);
    let (ct, tag) = floor.aead.sealed(small);
    let mut out = vec![0; small];
    rows.push(row(
        "setup",
        format!("X3DH responder, classical, + first {small} B message (vz: inbound session)"),
        lat,
        Target {
            floor: Some(1.3),
            vodozemac: None,
        },
        Some(batched(
            move || rb.fresh_account(),
            move |account| rb2.respond(account),
        )),
        vzo(batched(
            move || vz.fresh_account(),
            move |account| vz2.respond(account, &vz_wire),
        )),
        Some(simple(move || floor.x3dh_responder(&ct, &tag, &mut out))),
    ));
    rows
}

fn steady_rows(o: &Options) -> Vec<Row> {
    let lat = Unit::Latency { per: 1 };
    let vzo = |c: Candidate| o.vodozemac.then_some(c);
    let small = o.small;
    let mut rows = Vec::new();

    let mut rb = RbPair::established(5, SessionConfig::default());
    let mut vz = VzPair::established();
    let mut floor = Floor::new(6);
    let pt = plaintext(small);
    let pt2 = pt.clone();
    let mut buf = pt.clone();
    rows.push(row(
        "steady",
        format!("encrypt {small} B"),
        lat,
        Target {
            floor: Some(2.0),
            vodozemac: Some(8.0),
        },
        Some(simple(move || {
            black_box(rb.alice_sends(&pt));
        })),
        vzo(simple(move || {
            black_box(vz_encrypt(&mut vz.alice, &pt2));
        })),
        Some(simple(move || {
            black_box(floor.steady_encrypt(&mut buf));
        })),
    ));

    let mut floor = Floor::new(8);
    let (ct, tag) = floor.aead.sealed(small);
    let mut out = vec![0; small];
    rows.push(row(
        "steady",
        format!("decrypt {small} B"),
        lat,
        Target {
            floor: Some(2.0),
            vodozemac: None,
        },
        Some(rb_stream(
            RbPair::established(7, SessionConfig::default()),
            plaintext(small),
        )),
        vzo(vz_stream(VzPair::established(), plaintext(small))),
        Some(simple(move || floor.steady_decrypt(&ct, &tag, &mut out))),
    ));
    rows
}

/// Targets of the 1 MiB rows: at least 90% of raw AES-256-GCM throughput, 5x vodozemac.
fn large_target(len: usize) -> Target {
    if len == 1 << 20 {
        Target {
            floor: Some(1.0 / 0.9),
            vodozemac: Some(5.0),
        }
    } else {
        NO_TARGET
    }
}

/// Decrypting one large message: each iteration decrypts the same message with a fresh copy
/// of the receiver's state (copied before the clock starts). The floor is raw AES-256-GCM
/// over the same number of bytes.
fn large_decrypt_row(o: &Options, len: usize) -> Row {
    let vzo = |c: Candidate| o.vodozemac.then_some(c);
    let pt = plaintext(len);
    let mut rb = RbPair::established(7, SessionConfig::default());
    let wire = rb.alice_sends(&pt);
    let mut vz = VzPair::established();
    let vz_wire = vz_encrypt(&mut vz.alice, &pt);
    let vz_bob = vz_pickle_json(&vz.bob);
    let aead = Aead::new();
    let (ct, tag) = aead.sealed(len);
    let mut out = vec![0; len];
    let RbPeer {
        mut account,
        record,
    } = rb.bob;
    row(
        "large",
        format!("decrypt {}", size_name(len)),
        Unit::Throughput(len),
        large_target(len),
        Some(batched(
            move || record.clone(),
            move |record: &mut SessionRecord| {
                record.decrypt(&mut account, &wire, NOW).expect("decrypts")
            },
        )),
        vzo(batched(
            move || vz_from_json(&vz_bob),
            move |session| vz_decrypt(session, &vz_wire),
        )),
        Some(simple(move || aead.open(&ct, &tag, &mut out))),
    )
}

/// Decrypting a stream of fresh messages in order (made before the clock starts).
fn rb_stream(mut pair: RbPair, plaintext: Vec<u8>) -> Candidate {
    Box::new(move |n| {
        let wires: Vec<Vec<u8>> = (0..n).map(|_| pair.alice_sends(&plaintext)).collect();
        let start = Instant::now();
        for w in &wires {
            black_box(pair.bob.decrypt(w));
        }
        start.elapsed()
    })
}

fn vz_stream(mut pair: VzPair, plaintext: Vec<u8>) -> Candidate {
    Box::new(move |n| {
        let wires: Vec<VzWire> = (0..n)
            .map(|_| vz_encrypt(&mut pair.alice, &plaintext))
            .collect();
        let start = Instant::now();
        for w in &wires {
            black_box(vz_decrypt(&mut pair.bob, w));
        }
        start.elapsed()
    })
}

fn size_name(len: usize) -> String {
    if len >= 1 << 20 && len.is_multiple_of(1 << 20) {
        format!("{} MiB", len >> 20)
    } else if len >= 1024 && len.is_multiple_of(1024) {
        format!("{} KiB", len >> 10)
    } else {
        format!("{len} B")
    }
}

fn ping_pong_rows(o: &Options) -> Vec<Row> {
    let vzo = |c: Candidate| o.vodozemac.then_some(c);
    let small = o.small;
    let mut rows = Vec::new();
    // Per message: one turn is two messages.
    let unit = Unit::Latency { per: 2 };
    let mut rb = RbPair::established(9, SessionConfig::default());
    let mut vz = VzPair::established();
    let mut floor = Floor::new(10);
    let pt = plaintext(small);
    let pt2 = pt.clone();
    let (ct, tag) = floor.aead.sealed(small);
    let mut buf = pt.clone();
    let mut out = vec![0; small];
    rows.push(row(
        "ping-pong",
        format!("message with DH ratchet step, {small} B (encrypt + decrypt)"),
        unit,
        Target {
            floor: Some(1.3),
            vodozemac: Some(1.0),
        },
        Some(simple(move || rb.ping_pong(&pt))),
        vzo(simple(move || vz.ping_pong(&pt2))),
        Some(simple(move || {
            // Two messages, each: sender keygen + DH + KDFs + seal; receiver DH + KDFs + open.
            for _ in 0..2 {
                black_box(floor.ratchet_encrypt(&mut buf));
                floor.ratchet_decrypt(&ct, &tag, &mut out);
            }
        })),
    ));

    // The sending half alone: Alice's first message after reading Bob's.
    let mut rb = RbPair::established(11, SessionConfig::default());
    let m = rb.bob_sends(b"turn");
    rb.alice.decrypt(&m);
    let RbPair { mut rng, alice, .. } = rb;
    let mut vz = VzPair::established();
    let m = vz_encrypt(&mut vz.bob, b"turn");
    vz_decrypt(&mut vz.alice, &m);
    let vz_alice = vz_pickle_json(&vz.alice);
    let mut floor = Floor::new(12);
    let pt = plaintext(small);
    let pt2 = pt.clone();
    let mut buf = pt.clone();
    rows.push(row(
        "ping-pong",
        format!("  sending half: encrypt {small} B with new ratchet key"),
        Unit::Latency { per: 1 },
        Target {
            floor: Some(1.3),
            vodozemac: None,
        },
        Some(batched(
            move || alice.record.clone(),
            move |record: &mut SessionRecord| record.encrypt(&mut rng, &pt).expect("encrypts"),
        )),
        vzo(batched(
            move || vz_from_json(&vz_alice),
            move |session| vz_encrypt(session, &pt2),
        )),
        Some(simple(move || {
            black_box(floor.ratchet_encrypt(&mut buf));
        })),
    ));

    // The receiving half alone: Bob reads a message on Alice's new chain.
    let mut rb = RbPair::established(13, SessionConfig::default());
    let m = rb.bob_sends(b"turn");
    rb.alice.decrypt(&m);
    let wire = rb.alice_sends(&plaintext(small));
    let RbPeer {
        mut account,
        record,
    } = rb.bob;
    let mut vz = VzPair::established();
    let m = vz_encrypt(&mut vz.bob, b"turn");
    vz_decrypt(&mut vz.alice, &m);
    let vz_wire = vz_encrypt(&mut vz.alice, &plaintext(small));
    let vz_bob = vz_pickle_json(&vz.bob);
    let mut floor = Floor::new(14);
    let (ct, tag) = floor.aead.sealed(small);
    let mut out = vec![0; small];
    rows.push(row(
        "ping-pong",
        format!("  receiving half: decrypt {small} B on a new chain"),
        Unit::Latency { per: 1 },
        Target {
            floor: Some(1.3),
            vodozemac: None,
        },
        Some(batched(
            move || record.clone(),
            move |record: &mut SessionRecord| {
                record.decrypt(&mut account, &wire, NOW).expect("decrypts")
            },
        )),
        vzo(batched(
            move || vz_from_json(&vz_bob),
            move |session| vz_decrypt(session, &vz_wire),
        )),
        Some(simple(move || floor.ratchet_decrypt(&ct, &tag, &mut out))),
    ));
    rows
}

fn large_rows(o: &Options) -> Vec<Row> {
    let vzo = |c: Candidate| o.vodozemac.then_some(c);
    let mut rows = Vec::new();
    for &len in &o.sizes {
        let mut rb = RbPair::established(15, SessionConfig::default());
        let mut vz = VzPair::established();
        let aead = Aead::new();
        let pt = plaintext(len);
        let pt2 = pt.clone();
        let mut buf = pt.clone();
        rows.push(row(
            "large",
            format!("encrypt {}", size_name(len)),
            Unit::Throughput(len),
            large_target(len),
            Some(simple(move || {
                black_box(rb.alice_sends(&pt));
            })),
            vzo(simple(move || {
                black_box(vz_encrypt(&mut vz.alice, &pt2));
            })),
            Some(simple(move || {
                black_box(aead.seal(&mut buf));
            })),
        ));
        rows.push(large_decrypt_row(o, len));
    }
    // The floor of the large rows is AES-256-GCM alone (a per-message key schedule and KDF_CK
    // are included, but are negligible at these sizes).
    rows
}

fn growth_rows(o: &Options) -> Vec<Row> {
    let vzo = |c: Candidate| o.vodozemac.then_some(c);
    let small = o.small;
    let mut rows = Vec::new();
    for &stored in &o.stored {
        let config = config_for_stored(stored);
        // In order, the store untouched.
        let mut rb = RbPair::established(16, config);
        rb.fill_skipped(stored);
        let vz_ok = stored <= 40;
        let mut vz = VzPair::established();
        if vz_ok {
            vz.fill_skipped(stored);
        }
        let mut floor = Floor::new(17);
        let (ct, tag) = floor.aead.sealed(small);
        let mut out = vec![0; small];
        rows.push(row(
            "growth",
            format!("decrypt {small} B in order, {stored} keys stored"),
            Unit::Latency { per: 1 },
            Target {
                floor: Some(2.0),
                vodozemac: None,
            },
            Some(rb_stream(rb, plaintext(small))),
            if vz_ok {
                vzo(vz_stream(vz, plaintext(small)))
            } else {
                None
            },
            Some(simple(move || floor.steady_decrypt(&ct, &tag, &mut out))),
        ));

        if stored == 0 {
            continue;
        }
        // Out of order: the receiver reads message j + 1 (storing the key of j, evicting the
        // oldest key if the store is full) and then j (from the store). The store stays at
        // `stored` keys; the time is per message.
        let mut rb = RbPair::established(18, config);
        rb.fill_skipped(stored);
        let mut vz = VzPair::established();
        if vz_ok {
            vz.fill_skipped(stored);
        }
        let mut floor = Floor::new(19);
        let (ct, tag) = floor.aead.sealed(small);
        let mut out = vec![0; small];
        let pt = plaintext(small);
        let pt2 = pt.clone();
        rows.push(row(
            "growth",
            format!("  out of order (skip 1, then from the store), {stored} stored"),
            Unit::Latency { per: 2 },
            Target {
                floor: Some(2.0),
                vodozemac: None,
            },
            Some(Box::new(move |n| {
                let wires: Vec<(Vec<u8>, Vec<u8>)> = (0..n)
                    .map(|_| (rb.alice_sends(&pt), rb.alice_sends(&pt)))
                    .collect();
                let start = Instant::now();
                for (first, second) in &wires {
                    black_box(rb.bob.decrypt(second));
                    black_box(rb.bob.decrypt(first));
                }
                start.elapsed()
            })),
            if vz_ok {
                vzo(Box::new(move |n| {
                    let wires: Vec<(VzWire, VzWire)> = (0..n)
                        .map(|_| {
                            (
                                vz_encrypt(&mut vz.alice, &pt2),
                                vz_encrypt(&mut vz.alice, &pt2),
                            )
                        })
                        .collect();
                    let start = Instant::now();
                    for (first, second) in &wires {
                        black_box(vz_decrypt(&mut vz.bob, second));
                        black_box(vz_decrypt(&mut vz.bob, first));
                    }
                    start.elapsed()
                }))
            } else {
                None
            },
            // Two messages' worth of decryption, plus the one extra chain step of the skip.
            Some(simple(move || {
                black_box(floor.chain_step());
                floor.steady_decrypt(&ct, &tag, &mut out);
                floor.steady_decrypt(&ct, &tag, &mut out);
            })),
        ));
    }

    // Encrypting after a long chain.
    let mut rb = RbPair::established(20, SessionConfig::default());
    let pt = plaintext(small);
    for _ in 0..o.chain_length {
        rb.alice.record.encrypt(&mut rb.rng, &pt).expect("encrypts");
    }
    let mut floor = Floor::new(21);
    let mut buf = pt.clone();
    rows.push(row(
        "growth",
        format!(
            "encrypt {small} B after {} messages in the chain",
            o.chain_length
        ),
        Unit::Latency { per: 1 },
        Target {
            floor: Some(2.0),
            vodozemac: None,
        },
        Some(simple(move || {
            black_box(rb.alice_sends(&pt));
        })),
        None,
        Some(simple(move || {
            black_box(floor.steady_encrypt(&mut buf));
        })),
    ));
    rows
}

fn state_rows(o: &Options, sizes: &mut Vec<(String, usize, usize)>) -> Vec<Row> {
    let vzo = |c: Candidate| o.vodozemac.then_some(c);
    let lat = Unit::Latency { per: 1 };
    let mut rows = Vec::new();
    let max = SessionConfig::DEFAULT_MAX_SKIPPED_KEYS as usize;
    // The middle row gives the cost per stored key (see `print_per_key`); vodozemac stores at
    // most 40 skipped keys per chain.
    for (label, stored, vz_stored) in [
        ("fresh", 0, 0),
        (MIDDLE_LABEL, MIDDLE_KEYS, 40),
        ("max skipped keys", max, 40),
    ] {
        let mut rb = RbPair::established(22, SessionConfig::default());
        rb.fill_skipped(stored);
        let mut vz = VzPair::established();
        if vz_stored > 0 {
            vz.fill_skipped(vz_stored);
        }
        let session = rb.bob.session().clone();
        let plain = session.to_bytes();
        let mut rng = rng(23);
        let storage_key = StorageKey::from_bytes([6; 32]);
        let sealed = session.seal(&storage_key, &mut rng);
        let vz_json = vz_pickle_json(&vz.bob);
        let vz_sealed = vz.bob.pickle().encrypt(&VZ_PICKLE_KEY);
        sizes.push((
            format!("session, {label} (plain)"),
            plain.len(),
            vz_json.len(),
        ));
        sizes.push((
            format!("session, {label} (sealed)"),
            sealed.len(),
            vz_sealed.len(),
        ));

        let s1 = session.clone();
        let vz1 = vz_from_json(&vz_json);
        rows.push(row(
            "state",
            format!("serialize session, {label}"),
            lat,
            NO_TARGET,
            Some(simple(move || {
                black_box(s1.to_bytes());
            })),
            vzo(simple(move || {
                black_box(vz_pickle_json(&vz1));
            })),
            None,
        ));
        let s2 = session.clone();
        let vz2 = vz_from_json(&vz_json);
        let key2 = StorageKey::from_bytes([6; 32]);
        let mut aead_buf = plaintext(plain.len());
        let aead = Aead::new();
        rows.push(row(
            "state",
            format!("seal session, {label}"),
            lat,
            NO_TARGET,
            Some(simple(move || {
                black_box(s2.seal(&key2, &mut rng));
            })),
            vzo(simple(move || {
                black_box(vz2.pickle().encrypt(&VZ_PICKLE_KEY));
            })),
            // AES-256-GCM over the plain form, as the floor of sealing it.
            Some(simple(move || {
                black_box(aead.seal(&mut aead_buf));
            })),
        ));
        let sealed2 = sealed.clone();
        let key3 = StorageKey::from_bytes([6; 32]);
        let vz_sealed2 = vz_sealed.clone();
        let aead = Aead::new();
        let (ct, tag) = aead.sealed(plain.len());
        let mut out = vec![0; plain.len()];
        rows.push(row(
            "state",
            format!("open (unseal) session, {label}"),
            lat,
            NO_TARGET,
            Some(simple(move || {
                black_box(ratchetbox::Session::unseal(&sealed2, &key3).expect("unseals"));
            })),
            vzo(simple(move || {
                black_box(vz::Session::from_pickle(
                    vz::SessionPickle::from_encrypted(&vz_sealed2, &VZ_PICKLE_KEY).expect("pickle"),
                ));
            })),
            Some(simple(move || aead.open(&ct, &tag, &mut out))),
        ));
        let plain2 = plain.clone();
        let vz_json2 = vz_json.clone();
        rows.push(row(
            "state",
            format!("deserialize session, {label}"),
            lat,
            NO_TARGET,
            Some(simple(move || {
                black_box(ratchetbox::Session::from_bytes(&plain2).expect("decodes"));
            })),
            vzo(simple(move || {
                black_box(vz_from_json(&vz_json2));
            })),
            None,
        ));
    }
    rows
}

/// The session of the middle state rows: 2,000 stored skipped keys.
const MIDDLE_KEYS: usize = 2000;
const MIDDLE_LABEL: &str = "2,000 skipped keys";

/// Receiving one 100 B message as an app that persists its state does it: open the sealed
/// record, decrypt, seal the record again; next to decrypting alone (the state already in
/// memory). For a fresh session and one with 2,000 stored skipped keys (vodozemac: 40, its
/// maximum per chain). The message is the next one of the sender's current chain (no DH
/// ratchet step); each iteration starts from the same sealed state, so it decrypts the same
/// message. The floor of receive and persist is AES-256-GCM over what it must touch: open the
/// sealed state, open the message, seal the state.
fn persist_rows(o: &Options) -> Vec<Row> {
    let vzo = |c: Candidate| o.vodozemac.then_some(c);
    let lat = Unit::Latency { per: 1 };
    let small = o.small;
    let mut rows = Vec::new();
    for (label, stored, vz_stored) in [("fresh", 0, 0), (MIDDLE_LABEL, MIDDLE_KEYS, 40)] {
        let mut rb = RbPair::established(24, SessionConfig::default());
        rb.fill_skipped(stored);
        let mut vz = VzPair::established();
        if vz_stored > 0 {
            vz.fill_skipped(vz_stored);
        }
        let pt = plaintext(small);
        let wire = rb.alice_sends(&pt);
        let vz_wire = vz_encrypt(&mut vz.alice, &pt);
        let storage_key = StorageKey::from_bytes([6; 32]);
        let mut rng = rng(25);
        let RbPeer {
            mut account,
            record: bob_record,
        } = rb.bob;
        let sealed = bob_record.seal(&storage_key, &mut rng);
        let plain_len = bob_record.to_bytes().len();
        let vz_sealed = vz.bob.pickle().encrypt(&VZ_PICKLE_KEY);

        // Decrypt alone: the same state, kept in memory, decrypting the sender's next
        // messages in order (made untimed), as `steady` does. (A copy of a record with 2,000
        // keys per iteration, as the large rows use, would take gigabytes.)
        let mut rb_again = RbPair::established(24, SessionConfig::default());
        rb_again.fill_skipped(stored);
        let mut vz_again = VzPair::established();
        if vz_stored > 0 {
            vz_again.fill_skipped(vz_stored);
        }
        let mut floor = Floor::new(26);
        let (ct, tag) = floor.aead.sealed(small);
        let mut out = vec![0; small];
        rows.push(row(
            "persist",
            format!("decrypt {small} B, {label} (state in memory)"),
            lat,
            NO_TARGET,
            Some(rb_stream(rb_again, plaintext(small))),
            vzo(vz_stream(vz_again, plaintext(small))),
            Some(simple(move || floor.steady_decrypt(&ct, &tag, &mut out))),
        ));

        // Receive and persist: open the sealed record, decrypt, seal.
        let vz_sealed2 = vz_sealed;
        let aead = Aead::new();
        let (state_ct, state_tag) = aead.sealed(plain_len);
        let mut state_buf = vec![0; plain_len];
        let mut floor = Floor::new(27);
        let (ct, tag) = floor.aead.sealed(small);
        let mut out = vec![0; small];
        rows.push(row(
            "persist",
            format!("receive and persist {small} B, {label}: open record, decrypt, seal record"),
            lat,
            NO_TARGET,
            Some(simple(move || {
                let mut record = SessionRecord::unseal(&sealed, &storage_key).expect("unseals");
                black_box(record.decrypt(&mut account, &wire, NOW).expect("decrypts"));
                black_box(record.seal(&storage_key, &mut rng));
            })),
            vzo(simple(move || {
                let mut session = vz::Session::from_pickle(
                    vz::SessionPickle::from_encrypted(&vz_sealed2, &VZ_PICKLE_KEY).expect("pickle"),
                );
                black_box(vz_decrypt(&mut session, &vz_wire));
                black_box(session.pickle().encrypt(&VZ_PICKLE_KEY));
            })),
            Some(simple(move || {
                aead.open(&state_ct, &state_tag, &mut state_buf);
                floor.steady_decrypt(&ct, &tag, &mut out);
                black_box(aead.seal(&mut state_buf));
            })),
        ));
    }
    rows
}

/// The cost of loading per stored skipped key: the slope of the state rows' times from the
/// fresh session to the ones with 2,000 and 4,000 stored keys (ratchetbox only: vodozemac's
/// rows store at most 40 keys).
fn print_per_key(rows: &[Row]) {
    let time = |op: &str| {
        rows.iter()
            .find(|r| r.op == op)
            .and_then(|r| r.results[0])
            .map(|t| t.as_secs_f64() * 1e9)
    };
    let max = SessionConfig::DEFAULT_MAX_SKIPPED_KEYS as f64;
    let mut lines = Vec::new();
    for what in [
        "deserialize session",
        "open (unseal) session",
        "serialize session",
        "seal session",
    ] {
        let fresh = time(&format!("{what}, fresh"));
        let middle = time(&format!("{what}, {MIDDLE_LABEL}"));
        let full = time(&format!("{what}, max skipped keys"));
        if let (Some(fresh), Some(middle), Some(full)) = (fresh, middle, full) {
            lines.push(format!(
                "{what:<24}{:>10.1}{:>14.1}",
                (middle - fresh) / MIDDLE_KEYS as f64,
                (full - fresh) / max,
            ));
        }
    }
    if !lines.is_empty() {
        println!();
        println!("ratchetbox per stored skipped key (ns): slope 0 -> 2,000 keys   0 -> 4,000 keys");
        for line in lines {
            println!("{line}");
        }
    }
}

fn floor_rows(o: &Options) -> Vec<Row> {
    let lat = Unit::Latency { per: 1 };
    let small = o.small;
    let mut rows = Vec::new();
    // The primitives measured on a `Floor` of their own: label, seed, operation.
    type FloorOp = fn(&mut Floor);
    let primitives: [(&str, u64, FloorOp); 12] = [
        ("X25519 key generation", 24, |f| {
            black_box(f.keygen());
        }),
        ("X25519 DH", 25, |f| {
            black_box(f.dh());
        }),
        ("Ed25519 sign (71 B)", 26, |f| {
            black_box(f.sign());
        }),
        ("Ed25519 verify_strict (71 B)", 27, |f| {
            black_box(f.verify());
        }),
        ("Ed25519 verify_strict (KEM prekey, 1611 B)", 31, |f| {
            black_box(f.verify_kem_signature());
        }),
        ("ML-KEM-1024 key generation", 32, |f| {
            black_box(f.kem_keygen());
        }),
        ("ML-KEM-1024 encapsulation", 33, |f| {
            black_box(f.kem_encapsulate());
        }),
        ("ML-KEM-1024 decapsulation", 34, |f| {
            black_box(f.kem_decapsulate());
        }),
        ("ML-KEM-1024 public key decode (modulus check)", 35, |f| {
            black_box(f.kem_decode_public());
        }),
        ("Ed25519 key decode + X25519 form", 28, |f| {
            black_box(f.decode_identity());
        }),
        ("KDF_CK (HMAC chain step)", 29, |f| {
            black_box(f.chain_step());
        }),
        ("KDF_RK (HKDF, 64 B out)", 30, |f| {
            black_box(f.root_step(&[7; 32]));
        }),
    ];
    for (label, seed, op) in primitives {
        let mut f = Floor::new(seed);
        rows.push(floor_row(label, lat, simple(move || op(&mut f))));
    }
    rows.push(floor_row(
        "X3DH HKDF (5 x 32 B in)",
        lat,
        simple(move || {
            black_box(x3dh_kdf(&[[1; 32]; 4]));
        }),
    ));
    let aead = Aead::new();
    let mut buf = plaintext(small);
    rows.push(floor_row(
        format!("AES-256-GCM seal {small} B (with key schedule)"),
        lat,
        simple(move || {
            black_box(aead.seal(&mut buf));
        }),
    ));
    let aead = Aead::new();
    let (ct, tag) = aead.sealed(small);
    let mut out = vec![0; small];
    rows.push(floor_row(
        format!("AES-256-GCM open {small} B (with key schedule)"),
        lat,
        simple(move || aead.open(&ct, &tag, &mut out)),
    ));
    for &len in &o.sizes {
        let aead = Aead::new();
        let mut buf = plaintext(len);
        rows.push(floor_row(
            format!("AES-256-GCM seal {}", size_name(len)),
            Unit::Throughput(len),
            simple(move || {
                black_box(aead.seal(&mut buf));
            }),
        ));
        let aead = Aead::new();
        let pt = plaintext(len);
        let mut out = vec![0; len];
        rows.push(floor_row(
            format!(
                "  the same into a separate output buffer {}",
                size_name(len)
            ),
            Unit::Throughput(len),
            simple(move || {
                black_box(aead.seal_into(&pt, &mut out));
            }),
        ));
        let parts = GcmParts::new();
        let mut buf = plaintext(len);
        rows.push(floor_row(
            format!(
                "  its CTR pass alone (AES-256 keystream) {}",
                size_name(len)
            ),
            Unit::Throughput(len),
            simple(move || parts.ctr(&mut buf)),
        ));
        let parts = GcmParts::new();
        let buf = plaintext(len);
        rows.push(floor_row(
            format!("  its GHASH pass alone {}", size_name(len)),
            Unit::Throughput(len),
            simple(move || {
                black_box(parts.ghash(&buf));
            }),
        ));
    }
    let mut r = rng(31);
    rows.push(floor_row(
        "12-byte nonce from ChaCha20Rng",
        lat,
        simple(move || {
            let mut nonce = [0u8; 12];
            rand_core::Rng::fill_bytes(&mut r, &mut nonce);
            black_box(nonce);
        }),
    ));
    rows
}

/// The rows as `--save` writes them (`benches/report/`).
fn saved_rows(rows: &[Row]) -> Vec<report::Row> {
    rows.iter()
        .map(|r| {
            let [rb, vz, floor] = r.results.map(|t| t.map(|d| d.as_secs_f64() * 1e9));
            report::Row {
                group: r.group.to_string(),
                op: r.op.clone(),
                unit: match r.unit {
                    Unit::Latency { per } => report::Unit::Latency { per },
                    Unit::Throughput(bytes) => report::Unit::Throughput {
                        bytes: bytes as u64,
                    },
                },
                ratchetbox_ns: rb,
                vodozemac_ns: vz,
                floor_ns: floor,
                target: target_text(&r.target, r.unit),
                met: met(r).to_string(),
            }
        })
        .collect()
}

fn main() {
    let options = Options::parse();
    if let Some(dir) = &options.charts {
        if let Err(e) = report::chart_step(dir, options.doc.as_deref(), &options.inputs) {
            usage(&e);
        }
        return;
    }
    if !options.inputs.is_empty() {
        usage("file names are only read with --charts");
    }
    let start = report::Moment::now();
    print_machine();
    println!(
        "ratchetbox {} vs vodozemac 0.11 (Olm, session config v2), {} rounds per operation, \
         median; ratios of medians from this run",
        env!("CARGO_PKG_VERSION"),
        options.reps
    );
    println!(
        "rb/floor: ratchetbox time / floor time (1.00x = at the floor); vz/rb: vodozemac \
         time / ratchetbox time (above 1 = ratchetbox faster)"
    );
    println!();

    let mut sizes = Vec::new();
    type Group = Box<dyn Fn(&Options, &mut Vec<(String, usize, usize)>) -> Vec<Row>>;
    let groups: Vec<(&str, Group)> = vec![
        ("setup", Box::new(|o, _| setup_rows(o))),
        ("steady", Box::new(|o, _| steady_rows(o))),
        ("ping-pong", Box::new(|o, _| ping_pong_rows(o))),
        ("large", Box::new(|o, _| large_rows(o))),
        ("growth", Box::new(|o, _| growth_rows(o))),
        ("state", Box::new(state_rows)),
        ("persist", Box::new(|o, _| persist_rows(o))),
        ("floor", Box::new(|o, _| floor_rows(o))),
    ];
    let mut done = Vec::new();
    for (name, group) in groups {
        if options
            .only
            .as_ref()
            .is_some_and(|only| !only.iter().any(|o| o == name))
        {
            continue;
        }
        for mut r in group(&options, &mut sizes) {
            measure(&mut r, &options);
            eprint!(".");
            done.push(r);
        }
    }
    eprintln!();
    print_table(&done, options.markdown);
    print_per_key(&done);
    println!();
    println!(
        "serialized size (bytes)            ratchetbox   vodozemac (pickle JSON / encrypted pickle)"
    );
    for (label, rb, vz) in &sizes {
        println!("{label:<35}{rb:>10}   {vz:>10}");
    }
    if let Some(path) = &options.save {
        let run = report::Run {
            format: report::FORMAT,
            commit: report::git_commit(),
            features: report::build_features(),
            cpu: cpu_model(),
            rounds: options.reps,
            start,
            end: report::Moment::now(),
            rows: saved_rows(&done),
            sizes: sizes
                .into_iter()
                .map(|(label, ratchetbox, vodozemac)| report::Size {
                    label,
                    ratchetbox,
                    vodozemac,
                })
                .collect(),
        };
        if let Err(e) = run.save(path) {
            usage(&e);
        }
        eprintln!("saved {}", path.display());
    }
}
