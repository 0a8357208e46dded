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

fn replay(kind: &str) -> usize {
    let mut count = 0;
    let mut failures = Vec::new();
    for target in fuzzing::TARGETS {
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
    let count = replay("corpus");
    println!("replayed {count} corpus inputs");
}

#[test]
fn crash_reproducers_replay() {
    let count = replay("artifacts");
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
#[test]
#[ignore = "writes the seed corpora; run once after changing the seeds"]
fn write_seed_corpora() {
    for (target, name, bytes) in fuzzing::seeds() {
        let dir = fuzz_dir().join("corpus").join(target);
        fs::create_dir_all(&dir).expect("create the corpus directory");
        fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
    }
}
