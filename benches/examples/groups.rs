//! Group messages with sender keys (docs/PROTOCOL.md section 16), timed against their floor
//! and against the alternatives, in one run:
//!
//! - the floor: one AES-256-GCM encryption (key schedule included: every group message has
//!   its own key) plus one Ed25519 signature; for receiving, one AES-256-GCM decryption plus
//!   one Ed25519 `verify_strict`;
//! - sending one 100-byte message to a group: ratchetbox sender keys (one encryption and one
//!   signature, whatever the group size), pairwise fan-out over Double Ratchet sessions
//!   (1,000 encryptions), vodozemac's Megolm outbound session;
//! - receiving it (ratchetbox, Megolm); catching up after 1,000 missed messages (the 1,001st
//!   message read first: 1,000 message keys derived and stored); rotating after a removal in
//!   a group of 1,000 devices (a new sender key, and its distribution encrypted for the 999
//!   remaining devices over their pairwise sessions).
//!
//! Pairwise fan-out and the rotation's distribution are timed as 1,000 (999) encryptions on
//! one established Double Ratchet session: per message the same work as one message on each
//! of 1,000 sessions, without the memory of 1,000 sessions (so, if anything, faster).
//!
//! Interleaved: every round times every operation back to back; figures are medians over
//! rounds. `cargo run --release -p ratchetbox-bench --example groups -- [ROUNDS]` (default 7).

use std::hint::black_box;
use std::time::Instant;

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use ed25519_dalek::{Signer, SigningKey};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ratchetbox::SessionConfig;
use ratchetbox::group::{GroupId, GroupLimits, GroupMessage, GroupReceiver, GroupSender};
use vodozemac::megolm as mg;

#[path = "../support/mod.rs"]
mod support;

use support::{RbPair, SMALL, plaintext};

const GROUP_SIZE: usize = 1_000;
const MISSED: u32 = 1_000;

/// Nanoseconds per call of `f`, over `n` calls.
fn per_call(n: usize, mut f: impl FnMut()) -> f64 {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed().as_nanos() as f64 / n as f64
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("ROUNDS is a number"))
        .unwrap_or(7);
    let mut rng = ChaCha20Rng::seed_from_u64(19);
    let message = plaintext(SMALL);
    let limits = GroupLimits::default();
    let group = GroupId::random(&mut rng);

    // The floor's inputs: a signed message about as long as a group message.
    let key = [7u8; 32];
    let nonce = [9u8; 12];
    let signing = SigningKey::from_bytes(&[3u8; 32]);
    let verifying = signing.verifying_key();
    let signed = plaintext(SMALL + 16 + 48);
    let signature = signing.sign(&signed);
    let mut sealed = message.clone();
    let tag = Aes256Gcm::new(&key.into())
        .encrypt_inout_detached(&nonce.into(), &[], InOutBuf::from(sealed.as_mut_slice()))
        .expect("seal");

    let names = [
        "floor: AES-256-GCM seal 100 B (with key schedule)",
        "floor: Ed25519 sign",
        "floor: AES-256-GCM open 100 B (with key schedule)",
        "floor: Ed25519 verify_strict",
        "sender keys: send 100 B (any group size)",
        "sender keys: receive 100 B",
        "Megolm (vodozemac): send 100 B",
        "Megolm (vodozemac): receive 100 B",
        "pairwise fan-out: 1,000 Double Ratchet encryptions of 100 B",
        "sender keys: catch up after 1,000 missed",
        "sender keys: rotate after a removal (1,000 devices)",
    ];
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); names.len()];
    const N: usize = 2_000;

    let mut pair = RbPair::established(5, SessionConfig::default());
    for _ in 0..rounds {
        let mut i = 0;
        let mut push = |v: f64| {
            samples[i].push(v);
            i += 1;
        };
        push(per_call(N, || {
            let mut buf = message.clone();
            let cipher = Aes256Gcm::new(black_box(&key).into());
            black_box(
                cipher
                    .encrypt_inout_detached(&nonce.into(), &[], InOutBuf::from(buf.as_mut_slice()))
                    .expect("seal"),
            );
        }));
        push(per_call(N, || {
            black_box(signing.sign(black_box(&signed)));
        }));
        push(per_call(N, || {
            let mut buf = sealed.clone();
            let cipher = Aes256Gcm::new(black_box(&key).into());
            cipher
                .decrypt_inout_detached(
                    &nonce.into(),
                    &[],
                    InOutBuf::from(buf.as_mut_slice()),
                    &tag,
                )
                .expect("open");
            black_box(buf);
        }));
        push(per_call(N, || {
            verifying
                .verify_strict(black_box(&signed), &signature)
                .expect("verifies");
        }));

        // Sender keys: send, then receive what was sent (in order).
        let mut sender = GroupSender::new(&mut rng, group);
        let mut receiver = GroupReceiver::new(group);
        receiver
            .process_distribution(&sender.distribution(), &limits)
            .expect("distribution");
        let mut wires = Vec::with_capacity(N);
        push(per_call(N, || {
            wires.push(
                sender
                    .encrypt(black_box(&message))
                    .expect("send")
                    .to_bytes(),
            );
        }));
        let mut next = wires.iter();
        push(per_call(N, || {
            let wire = next.next().expect("a message");
            let m = GroupMessage::from_bytes(wire).expect("decodes");
            black_box(receiver.decrypt(&m, &limits).expect("reads"));
        }));

        // Megolm.
        let mut outbound = mg::GroupSession::new(mg::SessionConfig::version_2());
        let mut inbound =
            mg::InboundGroupSession::new(&outbound.session_key(), mg::SessionConfig::version_2());
        let mut megolm = Vec::with_capacity(N);
        push(per_call(N, || {
            megolm.push(outbound.encrypt(black_box(&message)).to_bytes());
        }));
        let mut next = megolm.iter();
        push(per_call(N, || {
            let m =
                mg::MegolmMessage::from_bytes(next.next().expect("a message")).expect("decodes");
            black_box(inbound.decrypt(&m).expect("reads"));
        }));

        // Pairwise fan-out to 1,000 devices.
        push(per_call(3, || {
            for _ in 0..GROUP_SIZE {
                black_box(pair.alice_sends(black_box(&message)));
            }
        }));

        // Catch-up: a receiver that read nothing reads message 1,000 first.
        let mut sender = GroupSender::new(&mut rng, group);
        let mut fresh = GroupReceiver::new(group);
        fresh
            .process_distribution(&sender.distribution(), &limits)
            .expect("distribution");
        for _ in 0..MISSED {
            sender.encrypt(&message).expect("send");
        }
        let late = GroupMessage::from_bytes(&sender.encrypt(&message).expect("send").to_bytes())
            .expect("decodes");
        let mut copies: Vec<GroupReceiver> = (0..20).map(|_| fresh.clone()).collect();
        push(per_call(20, || {
            let mut r = copies.pop().expect("a copy");
            black_box(r.decrypt(&late, &limits).expect("reads"));
        }));

        // Rotation after a removal: a new sender key and its distribution to 999 devices.
        push(per_call(3, || {
            let rotated = sender.rotate(&mut rng);
            let distribution = rotated.distribution().to_bytes();
            for _ in 0..GROUP_SIZE - 1 {
                black_box(pair.alice_sends(&distribution));
            }
            black_box(rotated);
        }));
    }

    let m: Vec<f64> = samples.into_iter().map(median).collect();
    let send_floor = m[0] + m[1];
    let receive_floor = m[2] + m[3];
    println!("{rounds} rounds, medians; ratios to the floor of the same run");
    println!("{:<62} {:>12} {:>8}", "operation", "time", "ratio");
    let show = |name: &str, ns: f64, floor: Option<f64>| {
        let time = if ns >= 1e6 {
            format!("{:.2} ms", ns / 1e6)
        } else {
            format!("{:.2} us", ns / 1e3)
        };
        let ratio = floor.map_or(String::new(), |f| format!("{:.2}x", ns / f));
        println!("{name:<62} {time:>12} {ratio:>8}");
    };
    for (i, name) in names.iter().enumerate().take(4) {
        show(name, m[i], None);
    }
    show("floor: seal + sign", send_floor, None);
    show("floor: open + verify", receive_floor, None);
    show(names[4], m[4], Some(send_floor));
    show(names[5], m[5], Some(receive_floor));
    show(names[6], m[6], Some(send_floor));
    show(names[7], m[7], Some(receive_floor));
    show(names[8], m[8], Some(send_floor));
    show(names[9], m[9], Some(receive_floor));
    show(names[10], m[10], Some(send_floor));
}
