//! What persisting costs per message: a `Device` receiving and sending through its store
//! (SQLite in a file, and the memory store), next to the core's decryption alone, with 0 and
//! 2,000 skipped message keys stored in the session. Interleaved: every round times every
//! configuration back to back, so load from elsewhere hits them alike; the figures are
//! medians over rounds, and the ratios medians of per-round ratios.
//!
//! `cargo run --release -p ratchetbox-bench --example persist -- [MESSAGES_PER_ROUND] [ROUNDS]`
//! (defaults 200 and 7). The SQLite file is in the system's temporary directory (or in
//! `PERSIST_DIR`), opened with `synchronous=FULL`: every commit waits for the disk.

use std::time::{Duration, Instant};

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ratchetbox::{
    Address, Content, Device, MemoryStore, PreKeyBundle, PreKeyUpload, ServerPreKeyStatus,
    SessionRecord, SqliteStore, StorageKey, Store, Timestamp,
};

const NOW: Timestamp = Timestamp::from_unix_secs(1_764_000_000);

fn addr(user: &str) -> Address {
    Address::new(user, 1).expect("valid")
}

fn bundle_of(device: &mut Device, rng: &mut ChaCha20Rng) -> Vec<u8> {
    let upload = device
        .prekey_maintenance(rng, NOW, ServerPreKeyStatus::default())
        .expect("maintenance")
        .expect("an upload");
    let upload = PreKeyUpload::from_bytes(&upload).expect("valid");
    PreKeyBundle::assemble(
        upload.identity_key(),
        upload.signed_prekey().expect("signed"),
        upload.one_time_prekeys().first().copied(),
        upload.one_time_kem_prekeys().first(),
    )
    .expect("signed")
    .to_bytes()
}

/// Alice (in memory) and Bob (on `bob_store`) with a running session in which Bob holds
/// `skipped` skipped message keys; then `count` more messages from Alice, in order, for Bob.
struct Setup {
    bob: Device,
    messages: Vec<Vec<u8>>,
    rng: ChaCha20Rng,
}

fn setup(bob_store: Box<dyn Store>, skipped: usize, count: usize) -> Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let mut bob = Device::create(
        bob_store,
        StorageKey::from_bytes([2; 32]),
        addr("bob"),
        &mut rng,
        NOW,
    )
    .expect("bob");
    let mut alice = Device::create(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([1; 32]),
        addr("alice"),
        &mut rng,
        NOW,
    )
    .expect("alice");
    let bundle = bundle_of(&mut bob, &mut rng);
    alice
        .process_bundle(&mut rng, &addr("bob"), &bundle)
        .expect("session");
    let send = |alice: &mut Device, rng: &mut ChaCha20Rng, body: &str| {
        alice
            .send(rng, "bob", &[1], &[], &Content::new(body), NOW)
            .expect("send")
            .messages
            .remove(0)
            .message
    };
    // A round trip, so that later messages are plain ratchet messages.
    let first = send(&mut alice, &mut rng, "hello");
    bob.receive(&mut rng, &addr("alice"), &first, NOW)
        .expect("first");
    let reply = bob
        .send(&mut rng, "alice", &[1], &[], &Content::new("hi"), NOW)
        .expect("reply")
        .messages
        .remove(0)
        .message;
    alice
        .receive(&mut rng, &addr("bob"), &reply, NOW)
        .expect("reply");
    // `skipped` messages that never arrive, then one that does: Bob stores their keys.
    for i in 0..skipped {
        send(&mut alice, &mut rng, &format!("lost {i}"));
    }
    let after = send(&mut alice, &mut rng, "after the gap");
    bob.receive(&mut rng, &addr("alice"), &after, NOW)
        .expect("after the gap");
    let messages = (0..count)
        .map(|i| send(&mut alice, &mut rng, &format!("message {i}")))
        .collect();
    Setup { bob, messages, rng }
}

/// The same conversation with the core API: Bob's account and record holding `skipped`
/// skipped keys, and `count` in-order messages for him.
fn core_setup(skipped: usize, count: usize) -> (ratchetbox::Account, SessionRecord, Vec<Vec<u8>>) {
    let mut rng = ChaCha20Rng::seed_from_u64(8);
    let mut bob = ratchetbox::Account::new(&mut rng, NOW);
    let alice = ratchetbox::Account::new(&mut rng, NOW);
    let otk = bob
        .generate_one_time_prekeys(&mut rng, 1, NOW)
        .expect("otk")[0];
    let bundle = bob.prekey_bundle(Some(otk.id()), None).expect("bundle");
    let mut alice_rec = SessionRecord::new();
    alice_rec
        .initiate(&mut rng, &alice, &bundle)
        .expect("initiate");
    let mut bob_rec = SessionRecord::new();
    let mut alice_acc = alice;
    let m = alice_rec
        .send(&mut rng, &Content::new("hello"), NOW)
        .expect("send");
    bob_rec.receive(&mut bob, m.wire(), NOW).expect("receive");
    let r = bob_rec
        .send(&mut rng, &Content::new("hi"), NOW)
        .expect("send");
    alice_rec
        .receive(&mut alice_acc, r.wire(), NOW)
        .expect("receive");
    for _ in 0..skipped {
        alice_rec
            .send(&mut rng, &Content::new("lost"), NOW)
            .expect("send");
    }
    let m = alice_rec
        .send(&mut rng, &Content::new("after"), NOW)
        .expect("send");
    bob_rec.receive(&mut bob, m.wire(), NOW).expect("receive");
    let messages = (0..count)
        .map(|i| {
            alice_rec
                .send(&mut rng, &Content::new(format!("message {i}")), NOW)
                .expect("send")
                .into_wire()
        })
        .collect();
    (bob, bob_rec, messages)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let count: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let rounds: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(7);
    // PERSIST_DIR=/dev/shm puts the file in memory (tmpfs): what SQLite costs without
    // waiting for a disk.
    let base = std::env::var_os("PERSIST_DIR").map_or_else(std::env::temp_dir, Into::into);
    let dir = base.join(format!("ratchetbox-persist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");

    // Per configuration and round: microseconds per message.
    let names = [
        "decrypt alone (core, in memory)",
        "receive + persist (MemoryStore)",
        "receive + persist (SQLite file)",
        "send + persist (SQLite file)",
    ];
    for skipped in [0usize, 2000] {
        let mut times: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
        for round in 0..rounds {
            let sqlite = |tag: &str| -> Box<dyn Store> {
                let path = dir.join(format!("{tag}-{skipped}-{round}.sqlite"));
                Box::new(SqliteStore::open(path).expect("sqlite"))
            };
            let mut mem = setup(Box::new(MemoryStore::new()), skipped, count);
            let mut file = setup(sqlite("recv"), skipped, count);
            let mut sender = setup(sqlite("send"), skipped, 0);

            // 0: the core alone: the same number of in-order messages, on a record with
            // the same number of stored skipped keys.
            let (mut account, mut record, msgs) = core_setup(skipped, count);
            let t = Instant::now();
            for m in &msgs {
                record.receive(&mut account, m, NOW).expect("core receive");
            }
            times[0].push(per_message(t.elapsed(), count));
            assert_eq!(
                record.session().map(|s| s.skipped_key_count()),
                Some(skipped)
            );

            for (i, s) in [(1, &mut mem), (2, &mut file)] {
                let t = Instant::now();
                for m in &s.messages {
                    s.bob
                        .receive(&mut s.rng, &addr("alice"), m, NOW)
                        .expect("receive");
                }
                times[i].push(per_message(t.elapsed(), count));
            }

            let t = Instant::now();
            for i in 0..count {
                sender
                    .bob
                    .send(
                        &mut sender.rng,
                        "alice",
                        &[1],
                        &[],
                        &Content::new(format!("{i}")),
                        NOW,
                    )
                    .expect("send");
            }
            times[3].push(per_message(t.elapsed(), count));
        }
        println!("{skipped} stored skipped keys, {count} messages x {rounds} rounds (medians)");
        println!(
            "{:<36} {:>12} {:>16}",
            "operation", "us/message", "vs decrypt alone"
        );
        for (i, name) in names.iter().enumerate() {
            let ratios: Vec<f64> = times[i].iter().zip(&times[0]).map(|(a, b)| a / b).collect();
            println!(
                "{name:<36} {:>12.1} {:>15.1}x",
                median(times[i].clone()),
                median(ratios)
            );
        }
        println!();
    }
    let _ = std::fs::remove_dir_all(&dir);
}

fn per_message(elapsed: Duration, count: usize) -> f64 {
    elapsed.as_secs_f64() * 1e6 / count as f64
}
