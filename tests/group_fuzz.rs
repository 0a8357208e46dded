//! The group fuzz targets (src/fuzzing/group.rs) on their seeds and on deterministic random
//! scenarios, so that `cargo test` exercises the stateful model beyond the committed corpus.

use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use ratchetbox::fuzzing;

const GROUP_TARGETS: &[&str] = &[
    "group_message",
    "group_distribution",
    "group_state",
    "group",
];

#[test]
fn group_targets_are_registered_and_accept_their_seeds() {
    let mut seen = 0;
    for (target, name, bytes) in fuzzing::seeds() {
        if GROUP_TARGETS.contains(&target) {
            assert!(
                fuzzing::run(target, &bytes),
                "{target} is not registered ({name})"
            );
            seen += 1;
        }
    }
    assert_eq!(seen, 5);
}

#[test]
fn stateful_group_target_survives_random_scenarios() {
    let mut rng = ChaCha20Rng::seed_from_u64(0x6_0009);
    for len in [2usize, 16, 64, 256, 1024, 2000] {
        for _ in 0..4 {
            let mut data = vec![0u8; len];
            rng.fill_bytes(&mut data);
            fuzzing::group(&data);
        }
    }
}

/// Writes the group targets' seeds to `fuzz/corpus/<target>/seed-<name>`:
/// `cargo test --test group_fuzz -- --ignored`.
#[test]
#[ignore = "writes the group seed corpora; run once after changing the seeds"]
fn write_group_seed_corpora() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (target, name, bytes) in fuzzing::seeds() {
        if GROUP_TARGETS.contains(&target) {
            let dir = root.join(target);
            std::fs::create_dir_all(&dir).expect("corpus dir");
            std::fs::write(dir.join(format!("seed-{name}")), bytes).expect("write a seed");
        }
    }
}
