//! Two processes use one device at the same time, through one SQLite file (an app and its
//! notification extension): with interleaved receives and sends, every incoming message
//! decrypts exactly once, and every message either process sends decrypts at the peer, so
//! the device's state never forked and nothing was lost.

#![cfg(feature = "sqlite")]

mod common;
#[path = "common/processes.rs"]
mod processes;
#[path = "common/server.rs"]
mod server;

use std::path::Path;
use std::thread;
use std::time::Duration;

use common::{T0, rng};
use processes::{TempDir, child_lines, child_role, spawn_child, wait_for_all};
use ratchetbox::{
    Action, Address, Content, DecryptError, Device, Error, MemoryStore, SqliteStore, StorageKey,
};
use server::Published;

const BOB_KEY: [u8; 32] = [7; 32];
/// Messages Alice sends before the children start.
const MESSAGES: usize = 40;
/// How many messages one process may be ahead of the other.
const LEAD: usize = 3;

fn addr(user: &str, device: u32) -> Address {
    Address::new(user, device).unwrap()
}

fn open_bob(db: &Path) -> Device {
    Device::open(
        Box::new(SqliteStore::open(db).expect("open the database")),
        StorageKey::from_bytes(BOB_KEY),
    )
    .expect("open Bob's device")
}

/// One child: receives every message of `messages.bin` (child 0 from the first, child 1
/// from the last), and sends Alice a reply after each message it was first to decrypt.
/// Prints `got I BODY`, `dup I` and `sent HEX` lines.
fn child(me: &str, db: &Path) {
    let mut rng = rng(if me == "0" { 100 } else { 200 });
    let mut bob = open_bob(db);
    let bytes = std::fs::read(db.with_file_name("messages.bin")).expect("the messages");
    let messages: Vec<Vec<u8>> = serde_json::from_slice(&bytes).expect("a list of messages");
    let order: Vec<usize> = if me == "0" {
        (0..messages.len()).collect()
    } else {
        (0..messages.len()).rev().collect()
    };
    let dir = db.parent().expect("the database's directory");
    let progress = |who: &str| dir.join(format!("progress-{who}"));
    let other = if me == "0" { "1" } else { "0" };
    let read = |who: &str| -> usize {
        std::fs::read_to_string(progress(who))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    };
    for (done, i) in order.into_iter().enumerate() {
        // Stay at most LEAD messages ahead of the other process (until it has finished), so
        // that the two interleave however the machine schedules them: SQLite's lock is not a
        // queue, and one process could otherwise run through all its work first.
        while done >= read(other) + LEAD && read(other) < messages.len() {
            thread::sleep(Duration::from_millis(1));
        }
        match bob.receive(&mut rng, &addr("alice", 1), &messages[i], T0) {
            Ok(got) => {
                println!("got {i} {}", String::from_utf8_lossy(got.content().body()));
                let reply = bob
                    .send(
                        &mut rng,
                        "alice",
                        &[1],
                        &[],
                        &Content::new(format!("reply from {me} to {i}")),
                        T0,
                    )
                    .expect("send a reply");
                println!("sent {}", hex::encode(&reply.messages[0].message));
            }
            Err(
                err @ Error::Decrypt {
                    source: DecryptError::Duplicate { .. },
                    ..
                },
            ) => {
                assert_eq!(err.action(), Action::Ignore);
                println!("dup {i}");
            }
            Err(other) => panic!("child {me}, message {i}: {other}"),
        }
        std::fs::write(progress(me), (done + 1).to_string()).expect("write progress");
    }
}

#[test]
fn two_processes_share_one_device_without_forking_or_losing_a_message() {
    const TEST: &str = "two_processes_share_one_device_without_forking_or_losing_a_message";
    if let Some((role, db)) = child_role() {
        child(&role, &db);
        return;
    }

    let dir = TempDir::new("device-processes");
    let db = dir.path().join("bob.sqlite");
    let mut rng = rng(1);
    let mut bob = Device::create(
        Box::new(SqliteStore::open(&db).expect("create the database")),
        StorageKey::from_bytes(BOB_KEY),
        addr("bob", 1),
        &mut rng,
        T0,
    )
    .expect("create Bob's device");
    let mut alice = Device::create(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([1; 32]),
        addr("alice", 1),
        &mut rng,
        T0,
    )
    .expect("create Alice's device");
    let bundle = Published::publish(&mut bob, &mut rng, T0).bundle();
    drop(bob);
    alice
        .process_bundle(&mut rng, &addr("bob", 1), &bundle)
        .expect("a session");
    let messages: Vec<Vec<u8>> = (0..MESSAGES)
        .map(|i| {
            let sent = alice
                .send(
                    &mut rng,
                    "bob",
                    &[1],
                    &[],
                    &Content::new(format!("m{i}")),
                    T0,
                )
                .expect("send");
            sent.messages[0].message.clone()
        })
        .collect();
    std::fs::write(
        db.with_file_name("messages.bin"),
        serde_json::to_vec(&messages).expect("encode"),
    )
    .expect("write the messages");

    let outputs = wait_for_all(vec![
        spawn_child(TEST, "0", &db),
        spawn_child(TEST, "1", &db),
    ]);

    // Every message decrypted exactly once, in one process or the other, to its body.
    let mut decrypted_by = vec![None; MESSAGES];
    for (me, output) in outputs.iter().enumerate() {
        for line in child_lines(output, "got ") {
            let (i, body) = line.split_once(' ').expect("index and body");
            let i: usize = i.parse().expect("an index");
            assert_eq!(body, format!("m{i}"));
            assert_eq!(decrypted_by[i], None, "message {i} decrypted twice");
            decrypted_by[i] = Some(me);
        }
        let dups = child_lines(output, "dup ").len();
        let got = child_lines(output, "got ").len();
        assert_eq!(got + dups, MESSAGES, "child {me} tried every message");
    }
    assert!(decrypted_by.iter().all(Option::is_some), "{decrypted_by:?}");
    let per_child: Vec<usize> = (0..2)
        .map(|me| decrypted_by.iter().filter(|d| **d == Some(me)).count())
        .collect();
    assert!(
        per_child.iter().all(|&n| n > 0),
        "one process did everything: {per_child:?}"
    );
    eprintln!("messages decrypted per process: {per_child:?}");

    // Every reply either process sent decrypts at Alice, each once: one chain of state,
    // never two copies sending with the same keys.
    let mut replies = 0;
    for output in &outputs {
        for hex_message in child_lines(output, "sent ") {
            let message = hex::decode(hex_message).expect("hex");
            let got = alice
                .receive(&mut rng, &addr("bob", 1), &message, T0)
                .unwrap_or_else(|e| panic!("reply {replies}: {e}"));
            assert!(got.content().body().starts_with(b"reply from "));
            replies += 1;
        }
    }
    assert_eq!(replies, MESSAGES);
}
