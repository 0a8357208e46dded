//! Randomized tests must be reproducible from CI's output (docs/TESTING.md): every
//! property test keeps proptest's failure persistence (failing cases are saved to
//! `*.proptest-regressions` files, committed, and rerun first), and every fixed-seed loop
//! names its failing seed. These checks read the test sources themselves.

use std::fs;
use std::path::{Path, PathBuf};

/// Every `.rs` file under `dir`, recursively.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).expect("a readable directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn sources() -> Vec<(PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "tests"] {
        rust_files(&root.join(dir), &mut files);
    }
    // The examples and benchmarks packages of the repository's workspace; the published
    // crate does not hold them, and its own `cargo test` checks only its own sources.
    for dir in ["benches", "examples"] {
        let dir = root.join(dir);
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
    }
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = fs::read_to_string(&path).expect("a UTF-8 source file");
            (path, text)
        })
        .collect()
}

/// No property test turns failure persistence off, and every test runner built by hand
/// tells proptest its source file (without it the default persistence saves nothing).
#[test]
fn property_tests_keep_failure_persistence() {
    let this_file = Path::new(file!()).file_name().unwrap();
    let mut problems = Vec::new();
    for (path, text) in sources() {
        if path.file_name() == Some(this_file) {
            continue;
        }
        for needle in [
            "failure_persistence: None",
            "FileFailurePersistence::Off",
            "PROPTEST_DISABLE_FAILURE_PERSISTENCE",
        ] {
            if text.contains(needle) {
                problems.push(format!("{}: {needle}", path.display()));
            }
        }
        for (at, _) in text.match_indices("TestRunner::new(") {
            let window = &text[at..text.len().min(at + 400)];
            if !window.contains("source_file: Some(file!())") {
                problems.push(format!(
                    "{}: TestRunner::new without source_file: Some(file!())",
                    path.display()
                ));
            }
        }
    }
    // CI's script is in the repository, not in the published crate.
    let ci_path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".ci/run");
    if ci_path.is_file() {
        let ci = fs::read_to_string(&ci_path).expect(".ci/run");
        if ci.contains("PROPTEST_DISABLE_FAILURE_PERSISTENCE") {
            problems.push(".ci/run: PROPTEST_DISABLE_FAILURE_PERSISTENCE".into());
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// Every `for seed in ...` loop of the tests holds a `SeedGuard` for its body, so a
/// failing iteration prints its seed.
#[test]
fn fixed_seed_loops_name_the_failing_seed() {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut problems = Vec::new();
    for (path, text) in sources() {
        if !path.starts_with(&tests) {
            continue;
        }
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let code = line.trim_start();
            if code.starts_with("for seed in ")
                && !lines
                    .get(i + 1)
                    .is_some_and(|next| next.contains("SeedGuard(seed)"))
            {
                problems.push(format!("{}:{}: {code}", path.display(), i + 1));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "loops without a SeedGuard: {problems:#?}"
    );
}
