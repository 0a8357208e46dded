//! The native side of the bindings benchmark (bindings/bench/run.py): the same calls the
//! Python and Node benchmarks make, from Rust, through the layer both bindings wrap
//! (`bindings/common`), with no foreign-function boundary.
//!
//! `bench_native sqlite DIR SIZE ITERATIONS` (devices in SQLite files under DIR, as the
//! UniFFI binding keeps them) or `bench_native memory - SIZE ITERATIONS` (in memory, as the
//! WebAssembly binding keeps them). Prints one JSON object: the median nanoseconds of
//! `send` (encrypt, store, return the message) and of `receive` (decrypt, store, return
//! the body) of a SIZE-byte body, Alice to Bob, in an established session.

use std::path::Path;
use std::time::Instant;

use common::ratchetbox::{MemoryStore, SqliteStore, Store, Timestamp};
use common::{DeviceHandle, PreKeyStatus, bundle_from_upload};

fn store(kind: &str, dir: &str, name: &str) -> Box<dyn Store> {
    match kind {
        "sqlite" => Box::new(SqliteStore::open(Path::new(dir).join(name)).expect("open SQLite")),
        "memory" => Box::new(MemoryStore::new()),
        other => panic!("unknown store {other}: sqlite or memory"),
    }
}

fn median(mut v: Vec<u128>) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, kind, dir, size, iterations] = &args[..] else {
        panic!("usage: bench_native sqlite|memory DIR SIZE ITERATIONS");
    };
    let size: usize = size.parse().expect("SIZE");
    let iterations: usize = iterations.parse().expect("ITERATIONS");
    let now = Timestamp::from_unix_secs(1_800_000_000);
    let mut alice = DeviceHandle::create(store(kind, dir, "alice.db"), &[1; 32], "alice", 1, now)
        .expect("create");
    let mut bob =
        DeviceHandle::create(store(kind, dir, "bob.db"), &[2; 32], "bob", 1, now).expect("create");

    // The session, confirmed both ways (Alice's messages are then ordinary messages).
    let upload = bob
        .prekey_upload(PreKeyStatus::default(), now)
        .expect("upload")
        .expect("a first upload");
    alice
        .process_bundle("bob", 1, &bundle_from_upload(&upload, 0).expect("bundle"))
        .expect("bundle");
    let hello = alice.send("bob", &[1], &[], b"hi", &[], now).expect("send");
    bob.receive("alice", 1, &hello.messages[0].1, now)
        .expect("receive");
    let reply = bob.send("alice", &[1], &[], b"hi", &[], now).expect("send");
    alice
        .receive("bob", 1, &reply.messages[0].1, now)
        .expect("receive");

    let body: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
    let (mut send, mut receive) = (Vec::new(), Vec::new());
    for i in 0..iterations + iterations / 10 {
        let t0 = Instant::now();
        let sent = alice.send("bob", &[1], &[], &body, &[], now).expect("send");
        let t1 = Instant::now();
        let got = bob
            .receive("alice", 1, &sent.messages[0].1, now)
            .expect("receive");
        let t2 = Instant::now();
        assert_eq!(got.body.len(), size);
        // The first tenth warms up.
        if i >= iterations / 10 {
            send.push((t1 - t0).as_nanos());
            receive.push((t2 - t1).as_nanos());
        }
    }
    // A call with no argument and a number back (the bindings' per-call floor).
    let mut calls = Vec::new();
    for _ in 0..iterations * 10 {
        let t0 = Instant::now();
        std::hint::black_box(alice.generation());
        calls.push(t0.elapsed().as_nanos());
    }
    println!(
        "{{\"send_ns\": {}, \"receive_ns\": {}, \"call_ns\": {}}}",
        median(send),
        median(receive),
        median(calls)
    );
}
