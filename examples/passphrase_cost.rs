//! What one passphrase guess costs at the default Argon2id parameters (64 MiB, 3 passes,
//! 4 lanes): an attacker holding a passphrase backup pays this for every guess, on every
//! core. One measurement, as docs/PROTOCOL.md ("Backup", passphrase mode) reports it:
//!
//! ```text
//! cargo run --release -p ratchetbox-examples --example passphrase_cost
//! ```

use std::time::Instant;

use ratchetbox::backup::{self, Argon2Params, KIND_DEVICE};
use ratchetbox::{OsRng, Timestamp};

fn main() {
    let mut rng = OsRng::new();
    let p = Argon2Params::DEFAULT;
    let start = Instant::now();
    let blob = backup::seal_with_passphrase(
        &mut rng,
        "correct horse battery staple",
        KIND_DEVICE,
        Timestamp::from_unix_secs(1_764_000_000),
        1,
        b"",
    )
    .expect("a strong passphrase");
    let elapsed = start.elapsed();
    println!(
        "one Argon2id run ({} KiB, {} passes, {} lanes, computed on one thread): {:.0} ms ({} byte blob)",
        p.memory_kib,
        p.passes,
        p.lanes,
        elapsed.as_secs_f64() * 1000.0,
        blob.len()
    );
}
