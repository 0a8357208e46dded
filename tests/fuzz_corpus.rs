//! Replays every committed fuzz input through its target's body (`ratchetbox::fuzzing`):
//! the seed corpora and corpora of the campaigns in `fuzz/corpus/<target>/`, and the crash
//! reproducers in `fuzz/artifacts/<target>/`, which stay as regression inputs.
//!
//! The `fuzzing` feature is enabled for tests by the crate's dev-dependency on itself, so
//! plain `cargo test` runs this.

use std::fs;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use ratchetbox::fuzzing;

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Every directory under `fuzz/corpus` and `fuzz/artifacts` is named after a target, so
/// that no committed input is silently skipped.
#[test]
fn every_input_directory_is_a_target() {
    for kind in ["corpus", "artifacts"] {
        let Ok(entries) = fs::read_dir(fuzz_dir().join(kind)) else {
            continue;
        };
        for entry in entries {
            let name = entry.expect("directory entry").file_name();
            let name = name.to_string_lossy();
            assert!(
                fuzzing::TARGETS.contains(&&*name),
                "fuzz/{kind}/{name} is not a fuzz target"
            );
        }
    }
}

/// Replays `fuzz/<kind>/<target>/*` for every target but `skip`.
fn replay(kind: &str, skip: Option<&str>) -> usize {
    let mut count = 0;
    let mut failures = Vec::new();
    for target in fuzzing::TARGETS {
        if Some(*target) == skip {
            continue;
        }
        for file in files(&fuzz_dir().join(kind).join(target)) {
            let data = fs::read(&file).expect("read input");
            count += 1;
            if catch_unwind(AssertUnwindSafe(|| fuzzing::run(target, &data))).is_err() {
                failures.push(file.display().to_string());
            }
        }
    }
    assert!(failures.is_empty(), "inputs that fail: {failures:#?}");
    count
}

#[test]
fn corpora_replay() {
    for target in fuzzing::TARGETS {
        assert!(
            !files(&fuzz_dir().join("corpus").join(target)).is_empty(),
            "fuzz/corpus/{target} has no seed"
        );
    }
    // The conversation corpus, the slowest, runs in parallel in
    // `conversation_corpus_replays_and_goes_deep`.
    let count = replay("corpus", Some("conversation"));
    println!("replayed {count} corpus inputs");
}

#[test]
fn crash_reproducers_replay() {
    let count = replay("artifacts", None);
    // At least the reproducer of the campaigns' one finding
    // (fuzz/artifacts/state_record/crash-record-without-timer, see docs/FUZZING.md).
    assert!(count >= 1, "the committed reproducers are missing");
    println!("replayed {count} crash reproducers");
}

#[test]
fn seeds_pass_their_targets() {
    for (target, name, bytes) in fuzzing::seeds() {
        assert!(
            catch_unwind(AssertUnwindSafe(|| fuzzing::run(target, &bytes))).is_ok(),
            "seed {target}/{name} fails"
        );
    }
}

/// Writes the seeds to `fuzz/corpus/<target>/seed-<name>`:
/// `cargo test --test fuzz_corpus -- --ignored`.
///
/// For the conversation target it also writes the five deepest of 2,000 random inputs
/// (`seed-deep-*`): random bytes mostly make short scenarios; the five of 2,000 tight-mode
/// inputs the receiver model refused most (`seed-tight-*`); the five of 2,000 small-record
/// inputs that refused most messages of evicted sessions (`seed-small-*`). See also
/// `write_reach_seeds`.
#[test]
#[ignore = "writes the seed corpora; run once after changing the seeds"]
fn write_seed_corpora() {
    use rand_core::{Rng, SeedableRng};

    let write = |target: &str, name: &str, bytes: &[u8]| {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).expect("create the corpus directory");
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
    };
    for (target, name, bytes) in fuzzing::seeds() {
        write(target, &name, &bytes);
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0xdee9);
    let mut scored = Vec::new();
    for i in 0..2000 {
        let mut bytes = vec![0u8; 200 + i % 1000];
        rng.fill_bytes(&mut bytes);
        if let Some(s) = fuzzing::conversation_stats(&bytes) {
            let score = s.ops + s.delivered + 10 * s.out_of_order + 5 * s.sessions as usize;
            scored.push((score, bytes));
        }
    }
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (i, (_, bytes)) in scored.iter().take(5).enumerate() {
        write("conversation", &format!("deep-{i}"), bytes);
    }
    // Tight limits (the seed's low three bits clear): the five of 2,000 inputs whose
    // deliveries the receiver model refused most often (`seed-tight-*`).
    let mut scored = Vec::new();
    for i in 0..2000 {
        let mut bytes = vec![0u8; 200 + i % 1000];
        rng.fill_bytes(&mut bytes);
        bytes[0] &= !7;
        if let Some(s) = fuzzing::conversation_stats(&bytes) {
            scored.push((s.modelled_refusals * 10 + s.modelled, bytes));
        }
    }
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (i, (_, bytes)) in scored.iter().take(5).enumerate() {
        write("conversation", &format!("tight-{i}"), bytes);
    }
    // Small records (the seed's low three bits 4): the five of 2,000 inputs that refused
    // the most messages of evicted sessions, started classical sessions, or both
    // (`seed-small-*`).
    let mut scored = Vec::new();
    for i in 0..2000 {
        let mut bytes = vec![0u8; 200 + i % 1000];
        rng.fill_bytes(&mut bytes);
        bytes[0] = (bytes[0] & !7) | 4;
        if let Some(s) = fuzzing::conversation_stats(&bytes) {
            scored.push((
                s.evicted_refused * 10 + s.classical_sessions * 5 + s.delivered,
                bytes,
            ));
        }
    }
    scored.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (i, (_, bytes)) in scored.iter().take(5).enumerate() {
        write("conversation", &format!("small-{i}"), bytes);
    }
}

/// Writes `fuzz/corpus/conversation/seed-reach-<name>` for each entry of `REACHED`: the
/// input that reaches it most of 2,000 random ones, half at the default limits and half with
/// small records (`cargo test --test fuzz_corpus -- --ignored write_reach_seeds`).
#[test]
#[ignore = "writes seed corpora; run once after changing the conversation target"]
fn write_reach_seeds() {
    use rand_core::{Rng, SeedableRng};

    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(0x4eac);
    let mut best: Vec<(usize, Vec<u8>)> = vec![(0, Vec::new()); REACHED.len()];
    for i in 0..2000 {
        let mut bytes = vec![0u8; 200 + i % 1000];
        rng.fill_bytes(&mut bytes);
        bytes[0] = if i % 2 == 0 {
            bytes[0] | 1
        } else {
            (bytes[0] & !7) | 4
        };
        if let Some(s) = fuzzing::conversation_stats(&bytes) {
            for (k, (_, count)) in REACHED.iter().enumerate() {
                if count(&s) > best[k].0 {
                    best[k] = (count(&s), bytes.clone());
                }
            }
        }
    }
    let dir = fuzz_dir().join("corpus").join("conversation");
    for (k, (score, bytes)) in best.iter().enumerate() {
        if *score > 0 {
            let name = format!("seed-reach-{}", REACHED[k].0);
            fs::write(dir.join(name), bytes).expect("write a seed");
        }
    }
}

/// What the conversation corpus must reach beyond deep conversations, each with the count
/// of `ConversationStats` that shows it.
type Count = fn(&fuzzing::ConversationStats) -> usize;
const REACHED: &[(&str, Count)] = &[
    ("attachments", |s| s.attachments_opened),
    ("clock-back", |s| s.clock_back_default),
    ("prune-nothing", |s| s.pruned_nothing),
    ("clamped-sent-at", |s| s.clamped_sent_at),
    ("corrupted", |s| s.corrupted),
    ("corrupted-unseal", |s| s.corrupted_unseal_failed),
    ("restored", |s| s.restored),
    ("redelivered", |s| s.redelivered),
    ("replay-memory-full", |s| s.replay_memory_full),
    ("evicted", |s| s.evicted_refused),
    ("stale", |s| s.stale_refused),
    ("old-account", |s| s.old_account_refused),
    ("classical", |s| s.classical_sessions),
    ("new-account", |s| s.new_accounts),
    ("identity-change", |s| s.identity_changes),
];

/// Replays the conversation corpus, and checks that it reaches deep protocol states: long
/// conversations with out-of-order delivery, several sessions, content, and rejections;
/// bounds the receiver model predicts; and everything in `REACHED` (attachments inside
/// content, the clock going back and prunes at the default limits, corrupted and
/// rolled-back persisted state, a full replay memory, evicted and classical sessions,
/// re-created accounts, messages to them and from their old accounts refused exactly, and
/// accepted identity changes).
#[test]
fn conversation_corpus_replays_and_goes_deep() {
    let mut total = fuzzing::ConversationStats::default();
    let mut deepest = 0;
    let mut most_sessions = 0;
    let mut failures = Vec::new();
    for file in files(&fuzz_dir().join("corpus").join("conversation")) {
        let data = fs::read(&file).expect("read input");
        let stats = catch_unwind(|| fuzzing::conversation_stats(&data));
        let Ok(stats) = stats else {
            failures.push(file.display().to_string());
            continue;
        };
        let Some(stats) = stats else {
            continue;
        };
        deepest = deepest.max(stats.delivered);
        most_sessions = most_sessions.max(stats.sessions);
        total.ops += stats.ops;
        total.sessions += stats.sessions;
        total.sent += stats.sent;
        total.delivered += stats.delivered;
        total.out_of_order += stats.out_of_order;
        total.received_content += stats.received_content;
        total.wrong_api += stats.wrong_api;
        total.rejected += stats.rejected;
        total.persisted += stats.persisted;
        total.modelled += stats.modelled;
        total.modelled_refusals += stats.modelled_refusals;
        total.attachments_opened += stats.attachments_opened;
        total.replay_memory_filled += stats.replay_memory_filled;
        total.replay_memory_full += stats.replay_memory_full;
        total.evicted_refused += stats.evicted_refused;
        total.stale_refused += stats.stale_refused;
        total.old_account_refused += stats.old_account_refused;
        total.classical_sessions += stats.classical_sessions;
        total.clock_back_default += stats.clock_back_default;
        total.pruned_nothing += stats.pruned_nothing;
        total.clamped_sent_at += stats.clamped_sent_at;
        total.corrupted += stats.corrupted;
        total.corrupted_unseal_failed += stats.corrupted_unseal_failed;
        total.restored += stats.restored;
        total.redelivered += stats.redelivered;
        total.new_accounts += stats.new_accounts;
        total.identity_changes += stats.identity_changes;
    }
    println!(
        "conversation corpus: {total:?}; most messages delivered in one input: {deepest}; most sessions: {most_sessions}"
    );
    assert!(failures.is_empty(), "inputs that fail: {failures:#?}");
    assert!(
        deepest >= 5,
        "no conversation corpus input delivers more than a few messages"
    );
    assert!(total.out_of_order > 0 && total.received_content > 0 && total.rejected > 0);
    assert!(
        total.modelled_refusals > 0,
        "no conversation corpus input reaches a bound the receiver model predicts"
    );
    for (name, count) in REACHED {
        assert!(
            count(&total) > 0,
            "no conversation corpus input reaches {name} (ConversationStats)"
        );
    }
}
