//! ratchetbox, vodozemac (Matrix's Olm, the closest peer on crates.io) and the floor set by
//! the primitives, side by side in each criterion group:
//!
//! - `setup`: starting a session as initiator and as responder, with classical X3DH
//!   (`initiator`, `responder`, beside Olm's outbound and inbound session) and with PQXDH,
//!   X3DH plus ML-KEM-1024 (`pq_initiator`, `pq_responder`; Olm has no counterpart).
//! - `steady`: encrypt and decrypt 100 B with no DH ratchet step.
//! - `ping_pong`: every message carries a DH ratchet step (a turn is two messages), and the
//!   sending and receiving halves on their own.
//! - `large`: 1 KiB, 64 KiB and 1 MiB encrypt and decrypt (throughput).
//! - `growth`: decryption with 0 to 100,000 stored skipped keys, encryption after 10^6
//!   messages in one chain.
//! - `state`: serialize, seal, open and deserialize a session (sizes are printed).
//! - `forged`: what a forged ratchet message (75 bytes, no session can authenticate it)
//!   costs a record holding the most sessions it keeps, at the default limits and at the
//!   hard ceilings, beside the cost of decrypting one genuine message in the same run.
//! - `floor`: the primitives on their own.
//!
//! `cargo bench -p ratchetbox-bench --bench protocol` runs it all (several minutes); pass a
//! filter to run part of it, e.g. `cargo bench -p ratchetbox-bench --bench protocol -- steady`.
//! `cargo run --release -p ratchetbox-bench --example throughput` prints the same comparisons
//! as one table with ratios.
//!
//! Randomness: ratchetbox gets a seeded `ChaCha20Rng`; vodozemac uses `rand`'s thread RNG
//! (ChaCha12), which it does not let callers replace. Both are userspace CSPRNGs.

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use rand_core::Rng;
use ratchetbox::{Account, Session, SessionConfig, SessionRecord, StorageKey};
use support::*;
use vodozemac::olm as vz;

/// Decrypts `iters` fresh messages in order, made by `make` before the clock starts (in
/// chunks, so that memory stays bounded), and returns the time the decryptions took.
fn stream<W>(
    iters: u64,
    mut make: impl FnMut() -> W,
    mut decrypt: impl FnMut(&W) -> Vec<u8>,
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(4096);
        let wires: Vec<W> = (0..n).map(|_| make()).collect();
        let start = Instant::now();
        for w in &wires {
            black_box(decrypt(w));
        }
        total += start.elapsed();
        left -= n;
    }
    total
}

fn setup(c: &mut Criterion) {
    let mut g = c.benchmark_group("setup");

    let mut rb = RbInitiator::new(1, Setup::Classical);
    g.bench_function("initiator/ratchetbox", |b| b.iter(|| rb.initiate()));
    let vz = VzInitiator::new();
    g.bench_function("initiator/vodozemac", |b| b.iter(|| vz.initiate()));
    let mut floor = Floor::new(2);
    g.bench_function("initiator/floor", |b| b.iter(|| floor.x3dh_initiator()));
    let mut rb = RbInitiator::new(11, Setup::PostQuantum);
    g.bench_function("pq_initiator/ratchetbox", |b| b.iter(|| rb.initiate()));
    g.bench_function("pq_initiator/floor", |b| b.iter(|| floor.pqxdh_initiator()));

    for (name, setup) in [
        ("responder", Setup::Classical),
        ("pq_responder", Setup::PostQuantum),
    ] {
        let rb = RbResponder::new(3, setup);
        g.bench_function(format!("{name}/ratchetbox"), |b| {
            b.iter_batched_ref(
                || rb.fresh_account(),
                |account| rb.respond(account),
                BatchSize::SmallInput,
            )
        });
    }
    let vz = VzResponder::new();
    let wire = vz.message.to_bytes();
    g.bench_function("responder/vodozemac", |b| {
        b.iter_batched_ref(
            || vz.fresh_account(),
            |account| vz.respond(account, &wire),
            BatchSize::SmallInput,
        )
    });
    let mut floor = Floor::new(4);
    let (ct, tag) = floor.aead.sealed(SMALL);
    let mut out = vec![0; SMALL];
    g.bench_function("responder/floor", |b| {
        b.iter(|| floor.x3dh_responder(&ct, &tag, &mut out))
    });
    g.bench_function("pq_responder/floor", |b| {
        b.iter(|| floor.pqxdh_responder(&ct, &tag, &mut out))
    });
    g.finish();
}

fn steady(c: &mut Criterion) {
    let mut g = c.benchmark_group("steady");
    let pt = plaintext(SMALL);

    let mut rb = RbPair::established(5, SessionConfig::default());
    g.bench_function("encrypt_100B/ratchetbox", |b| {
        b.iter(|| rb.alice_sends(&pt))
    });
    let mut vz = VzPair::established();
    g.bench_function("encrypt_100B/vodozemac", |b| {
        b.iter(|| vz_encrypt(&mut vz.alice, &pt))
    });
    let mut floor = Floor::new(6);
    let mut buf = pt.clone();
    g.bench_function("encrypt_100B/floor", |b| {
        b.iter(|| floor.steady_encrypt(&mut buf))
    });

    let mut rb = RbPair::established(7, SessionConfig::default());
    g.bench_function("decrypt_100B/ratchetbox", |b| {
        b.iter_custom(|iters| {
            let RbPair { rng, alice, bob } = &mut rb;
            stream(
                iters,
                || alice.record.encrypt(rng, &pt).expect("encrypts"),
                |w| bob.decrypt(w),
            )
        })
    });
    let mut vz = VzPair::established();
    g.bench_function("decrypt_100B/vodozemac", |b| {
        b.iter_custom(|iters| {
            let VzPair { alice, bob } = &mut vz;
            stream(iters, || vz_encrypt(alice, &pt), |w| vz_decrypt(bob, w))
        })
    });
    let mut floor = Floor::new(8);
    let (ct, tag) = floor.aead.sealed(SMALL);
    let mut out = vec![0; SMALL];
    g.bench_function("decrypt_100B/floor", |b| {
        b.iter(|| floor.steady_decrypt(&ct, &tag, &mut out))
    });
    g.finish();
}

fn ping_pong(c: &mut Criterion) {
    let mut g = c.benchmark_group("ping_pong");
    let pt = plaintext(SMALL);

    // One turn: two messages, each with a DH ratchet step.
    let mut rb = RbPair::established(9, SessionConfig::default());
    g.bench_function("turn_2_messages/ratchetbox", |b| {
        b.iter(|| rb.ping_pong(&pt))
    });
    let mut vz = VzPair::established();
    g.bench_function("turn_2_messages/vodozemac", |b| {
        b.iter(|| vz.ping_pong(&pt))
    });
    let mut floor = Floor::new(10);
    let (ct, tag) = floor.aead.sealed(SMALL);
    let mut buf = pt.clone();
    let mut out = vec![0; SMALL];
    g.bench_function("turn_2_messages/floor", |b| {
        b.iter(|| {
            for _ in 0..2 {
                black_box(floor.ratchet_encrypt(&mut buf));
                floor.ratchet_decrypt(&ct, &tag, &mut out);
            }
        })
    });

    // The sending half: encrypt the first message of a new chain (fresh key pair, DH).
    let mut rb = RbPair::established(11, SessionConfig::default());
    rb.turn();
    let alice = rb.alice.record.clone();
    let mut rng = rng(12);
    g.bench_function("send_new_chain/ratchetbox", |b| {
        b.iter_batched_ref(
            || alice.clone(),
            |record: &mut SessionRecord| record.encrypt(&mut rng, &pt).expect("encrypts"),
            BatchSize::SmallInput,
        )
    });
    let mut vz = VzPair::established();
    vz.turn();
    let vz_alice = vz_pickle_json(&vz.alice);
    g.bench_function("send_new_chain/vodozemac", |b| {
        b.iter_batched_ref(
            || vz_from_json(&vz_alice),
            |session| vz_encrypt(session, &pt),
            BatchSize::SmallInput,
        )
    });
    let mut floor = Floor::new(13);
    let mut buf = pt.clone();
    g.bench_function("send_new_chain/floor", |b| {
        b.iter(|| floor.ratchet_encrypt(&mut buf))
    });

    // The receiving half: decrypt the first message of the peer's new chain.
    let mut rb = RbPair::established(14, SessionConfig::default());
    rb.turn();
    let wire = rb.alice_sends(&pt);
    let RbPeer {
        mut account,
        record,
    } = rb.bob;
    g.bench_function("receive_new_chain/ratchetbox", |b| {
        b.iter_batched_ref(
            || record.clone(),
            |record: &mut SessionRecord| record.decrypt(&mut account, &wire, NOW).expect("ok"),
            BatchSize::SmallInput,
        )
    });
    let mut vz = VzPair::established();
    vz.turn();
    let vz_wire = vz_encrypt(&mut vz.alice, &pt);
    let vz_bob = vz_pickle_json(&vz.bob);
    g.bench_function("receive_new_chain/vodozemac", |b| {
        b.iter_batched_ref(
            || vz_from_json(&vz_bob),
            |session| vz_decrypt(session, &vz_wire),
            BatchSize::SmallInput,
        )
    });
    let mut floor = Floor::new(15);
    let (ct, tag) = floor.aead.sealed(SMALL);
    let mut out = vec![0; SMALL];
    g.bench_function("receive_new_chain/floor", |b| {
        b.iter(|| floor.ratchet_decrypt(&ct, &tag, &mut out))
    });
    g.finish();
}

fn large(c: &mut Criterion) {
    let mut g = c.benchmark_group("large");
    for len in LARGE_SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        let pt = plaintext(len);

        let mut rb = RbPair::established(16, SessionConfig::default());
        g.bench_with_input(BenchmarkId::new("encrypt/ratchetbox", len), &pt, |b, pt| {
            b.iter(|| rb.alice_sends(pt))
        });
        let mut vz = VzPair::established();
        g.bench_with_input(BenchmarkId::new("encrypt/vodozemac", len), &pt, |b, pt| {
            b.iter(|| vz_encrypt(&mut vz.alice, pt))
        });
        let aead = Aead::new();
        let mut buf = pt.clone();
        g.bench_function(BenchmarkId::new("encrypt/aes-256-gcm", len), |b| {
            b.iter(|| aead.seal(&mut buf))
        });

        // Each iteration decrypts the same message with a fresh copy of the receiver's state
        // (made before the clock starts). The plaintext is freed at once, as an app handling
        // one message at a time would: kept, every 1 MiB plaintext would need fresh pages
        // from the OS, which the in-place floor does not pay for.
        let mut rb = RbPair::established(17, SessionConfig::default());
        let wire = rb.alice_sends(&pt);
        let RbPeer {
            mut account,
            record,
        } = rb.bob;
        g.bench_function(BenchmarkId::new("decrypt/ratchetbox", len), |b| {
            b.iter_batched_ref(
                || record.clone(),
                |record: &mut SessionRecord| {
                    record
                        .decrypt(&mut account, &wire, NOW)
                        .expect("decrypts")
                        .len()
                },
                BatchSize::SmallInput,
            )
        });
        let mut vz = VzPair::established();
        let vz_wire = vz_encrypt(&mut vz.alice, &pt);
        let vz_bob = vz_pickle_json(&vz.bob);
        g.bench_function(BenchmarkId::new("decrypt/vodozemac", len), |b| {
            b.iter_batched_ref(
                || vz_from_json(&vz_bob),
                |session| vz_decrypt(session, &vz_wire).len(),
                BatchSize::SmallInput,
            )
        });
        let (ct, tag) = aead.sealed(len);
        let mut out = vec![0; len];
        g.bench_function(BenchmarkId::new("decrypt/aes-256-gcm", len), |b| {
            b.iter(|| aead.open(&ct, &tag, &mut out))
        });
    }
    g.finish();
}

/// Stored skipped keys for the cost-growth group: none, Olm's per-chain maximum, a few,
/// MAX_SKIP, the default maximum, and the hard ceiling.
const STORED: [usize; 6] = [0, 40, 100, 2_000, 4_000, 100_000];

fn growth(c: &mut Criterion) {
    let mut g = c.benchmark_group("growth");
    let pt = plaintext(SMALL);
    for stored in STORED {
        let mut rb = RbPair::established(18, config_for_stored(stored));
        rb.fill_skipped(stored);
        g.bench_function(
            BenchmarkId::new("decrypt_in_order/ratchetbox", stored),
            |b| {
                b.iter_custom(|iters| {
                    let RbPair { rng, alice, bob } = &mut rb;
                    stream(
                        iters,
                        || alice.record.encrypt(rng, &pt).expect("encrypts"),
                        |w| bob.decrypt(w),
                    )
                })
            },
        );
        if stored <= 40 {
            let mut vz = VzPair::established();
            vz.fill_skipped(stored);
            g.bench_function(
                BenchmarkId::new("decrypt_in_order/vodozemac", stored),
                |b| {
                    b.iter_custom(|iters| {
                        let VzPair { alice, bob } = &mut vz;
                        stream(iters, || vz_encrypt(alice, &pt), |w| vz_decrypt(bob, w))
                    })
                },
            );
        }
        if stored == 0 {
            continue;
        }
        // Out of order, per message: read j + 1 (storing j's key, evicting the oldest if the
        // store is full), then j from the store. The store stays at `stored` keys.
        let mut rb = RbPair::established(19, config_for_stored(stored));
        rb.fill_skipped(stored);
        g.bench_function(
            BenchmarkId::new("decrypt_out_of_order/ratchetbox", stored),
            |b| {
                b.iter_custom(|iters| {
                    let RbPair { rng, alice, bob } = &mut rb;
                    // `iters` messages: half as many pairs.
                    stream(
                        iters.div_ceil(2),
                        || {
                            let first = alice.record.encrypt(rng, &pt).expect("encrypts");
                            let second = alice.record.encrypt(rng, &pt).expect("encrypts");
                            (first, second)
                        },
                        |(first, second)| {
                            black_box(bob.decrypt(second));
                            bob.decrypt(first)
                        },
                    )
                })
            },
        );
        if stored <= 40 {
            let mut vz = VzPair::established();
            vz.fill_skipped(stored);
            g.bench_function(
                BenchmarkId::new("decrypt_out_of_order/vodozemac", stored),
                |b| {
                    b.iter_custom(|iters| {
                        let VzPair { alice, bob } = &mut vz;
                        stream(
                            iters.div_ceil(2),
                            || (vz_encrypt(alice, &pt), vz_encrypt(alice, &pt)),
                            |(first, second)| {
                                black_box(vz_decrypt(bob, second));
                                vz_decrypt(bob, first)
                            },
                        )
                    })
                },
            );
        }
    }

    let mut rb = RbPair::established(20, SessionConfig::default());
    g.bench_function("encrypt/ratchetbox/chain_start", |b| {
        b.iter(|| rb.alice_sends(&pt))
    });
    let mut rb = RbPair::established(21, SessionConfig::default());
    for _ in 0..1_000_000 {
        rb.alice_sends(&pt);
    }
    g.bench_function("encrypt/ratchetbox/after_1e6_messages", |b| {
        b.iter(|| rb.alice_sends(&pt))
    });
    let mut floor = Floor::new(22);
    let mut buf = pt.clone();
    g.bench_function("encrypt/floor", |b| {
        b.iter(|| floor.steady_encrypt(&mut buf))
    });
    g.finish();
}

fn state(c: &mut Criterion) {
    let mut g = c.benchmark_group("state");
    let max = SessionConfig::DEFAULT_MAX_SKIPPED_KEYS as usize;
    for (label, stored, vz_stored) in [("fresh", 0, 0), ("max_skipped_keys", max, 40)] {
        let mut rb = RbPair::established(23, SessionConfig::default());
        rb.fill_skipped(stored);
        let mut vz = VzPair::established();
        vz.fill_skipped(vz_stored);
        let session = rb.bob.session().clone();
        let storage_key = StorageKey::from_bytes([6; 32]);
        let mut rng = rng(24);
        let plain = session.to_bytes();
        let sealed = session.seal(&storage_key, &mut rng);
        let vz_json = vz_pickle_json(&vz.bob);
        let vz_sealed = vz.bob.pickle().encrypt(&VZ_PICKLE_KEY);
        println!(
            "state/{label}: ratchetbox session {} B plain, {} B sealed; \
             vodozemac session ({vz_stored} skipped keys) {} B pickle JSON, {} B encrypted pickle",
            plain.len(),
            sealed.len(),
            vz_json.len(),
            vz_sealed.len()
        );

        g.bench_function(format!("serialize_{label}/ratchetbox"), |b| {
            b.iter(|| session.to_bytes())
        });
        g.bench_function(format!("serialize_{label}/vodozemac"), |b| {
            b.iter(|| vz_pickle_json(&vz.bob))
        });
        g.bench_function(format!("seal_{label}/ratchetbox"), |b| {
            b.iter(|| session.seal(&storage_key, &mut rng))
        });
        g.bench_function(format!("seal_{label}/vodozemac"), |b| {
            b.iter(|| vz.bob.pickle().encrypt(&VZ_PICKLE_KEY))
        });
        g.bench_function(format!("open_{label}/ratchetbox"), |b| {
            b.iter(|| Session::unseal(&sealed, &storage_key).expect("unseals"))
        });
        g.bench_function(format!("open_{label}/vodozemac"), |b| {
            b.iter(|| {
                vz::Session::from_pickle(
                    vz::SessionPickle::from_encrypted(&vz_sealed, &VZ_PICKLE_KEY).expect("pickle"),
                )
            })
        });
        g.bench_function(format!("deserialize_{label}/ratchetbox"), |b| {
            b.iter(|| Session::from_bytes(&plain).expect("decodes"))
        });
        g.bench_function(format!("deserialize_{label}/vodozemac"), |b| {
            b.iter(|| vz_from_json(&vz_json))
        });
    }
    g.finish();
}

fn floor(c: &mut Criterion) {
    let mut g = c.benchmark_group("floor");
    let mut f = Floor::new(25);
    g.bench_function("x25519_keygen", |b| b.iter(|| f.keygen()));
    g.bench_function("x25519_dh", |b| b.iter(|| f.dh()));
    g.bench_function("ed25519_sign", |b| b.iter(|| f.sign()));
    g.bench_function("ed25519_verify_strict", |b| b.iter(|| f.verify()));
    g.bench_function("ed25519_verify_strict_kem_prekey", |b| {
        b.iter(|| f.verify_kem_signature())
    });
    g.bench_function("ml_kem_1024_keygen", |b| b.iter(|| f.kem_keygen()));
    g.bench_function("ml_kem_1024_encapsulate", |b| {
        b.iter(|| f.kem_encapsulate())
    });
    g.bench_function("ml_kem_1024_decapsulate", |b| {
        b.iter(|| f.kem_decapsulate())
    });
    g.bench_function("ml_kem_1024_decode_public_key", |b| {
        b.iter(|| f.kem_decode_public())
    });
    g.bench_function("ed25519_decode_to_x25519", |b| {
        b.iter(|| f.decode_identity())
    });
    g.bench_function("kdf_ck_hmac_chain_step", |b| b.iter(|| f.chain_step()));
    g.bench_function("kdf_rk_hkdf", |b| b.iter(|| f.root_step(&[7; 32])));
    g.bench_function("x3dh_hkdf", |b| b.iter(|| x3dh_kdf(&[[1; 32]; 4])));
    for len in [SMALL, 1024, 64 * 1024, 1024 * 1024] {
        g.throughput(Throughput::Bytes(len as u64));
        let aead = Aead::new();
        let mut buf = plaintext(len);
        g.bench_function(
            BenchmarkId::new("aes_256_gcm_seal_with_key_schedule", len),
            |b| b.iter(|| aead.seal(&mut buf)),
        );
        let pt = plaintext(len);
        let mut out = vec![0; len];
        g.bench_function(
            BenchmarkId::new("aes_256_gcm_seal_into_new_buffer", len),
            |b| b.iter(|| aead.seal_into(&pt, &mut out)),
        );
        let (ct, tag) = aead.sealed(len);
        g.bench_function(
            BenchmarkId::new("aes_256_gcm_open_with_key_schedule", len),
            |b| b.iter(|| aead.open(&ct, &tag, &mut out)),
        );
    }
    // What bounds large messages: AES-GCM's two passes, each alone.
    for len in [64 * 1024, 1024 * 1024] {
        g.throughput(Throughput::Bytes(len as u64));
        let parts = GcmParts::new();
        let mut buf = plaintext(len);
        g.bench_function(BenchmarkId::new("aes_256_ctr_pass", len), |b| {
            b.iter(|| parts.ctr(&mut buf))
        });
        g.bench_function(BenchmarkId::new("ghash_pass", len), |b| {
            b.iter(|| parts.ghash(&buf))
        });
    }
    g.finish();
}

/// The wire form of a ratchet message, written independently of the crate (`proto/wire.proto`).
#[derive(Clone, PartialEq, prost::Message)]
struct WireRatchet {
    #[prost(bytes = "vec", tag = "1")]
    ratchet_key: Vec<u8>,
    #[prost(uint32, tag = "2")]
    counter: u32,
    #[prost(uint32, tag = "3")]
    previous_counter: u32,
    #[prost(bytes = "vec", tag = "4")]
    nonce: Vec<u8>,
    #[prost(bytes = "vec", tag = "5")]
    ciphertext: Vec<u8>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireInitial {
    #[prost(message, optional, tag = "6")]
    message: Option<WireRatchet>,
}

#[derive(Clone, PartialEq, prost::Message)]
struct WireMessage {
    #[prost(message, optional, tag = "1")]
    ratchet: Option<WireRatchet>,
    #[prost(message, optional, tag = "2")]
    initial: Option<WireInitial>,
}

/// A forged PQXDH-session ratchet message: 75 bytes, only a (wrong) tag for ciphertext.
fn forged(ratchet_key: [u8; 32], counter: u32, previous_counter: u32) -> Vec<u8> {
    let message = WireMessage {
        ratchet: Some(WireRatchet {
            ratchet_key: ratchet_key.to_vec(),
            counter,
            previous_counter,
            nonce: vec![9; 12],
            ciphertext: vec![0; 16],
        }),
        initial: None,
    };
    let mut wire = vec![2u8];
    prost::Message::encode(&message, &mut wire).expect("encodes");
    wire
}

/// Bob's record with `1 + max_previous_sessions` sessions, each of which read one message
/// from Alice and sent one, so each holds a receiving chain and a ratchet key pair (every
/// one could take a message on a new chain: the worst case). Returns Bob's account, the
/// record and the ratchet key of Alice's chain in each session (current first).
fn full_record(seed: u64, config: SessionConfig) -> (Account, SessionRecord, Vec<[u8; 32]>) {
    let mut rng = rng(seed);
    let alice = Account::new(&mut rng, NOW);
    let mut bob = Account::new(&mut rng, NOW);
    let mut record = SessionRecord::with_config(config);
    let mut keys = Vec::new();
    for _ in 0..=config.max_previous_sessions() {
        let bundle = bob.prekey_bundle(None, None).expect("bundle");
        let mut alices = SessionRecord::with_config(config);
        alices
            .initiate(&mut rng, &alice, &bundle)
            .expect("initiate");
        let wire = alices.encrypt(&mut rng, b"hello").expect("encrypts");
        record.decrypt(&mut bob, &wire, NOW).expect("decrypts");
        record.encrypt(&mut rng, b"reply").expect("encrypts");
        let message: WireMessage = prost::Message::decode(&wire[1..]).expect("decodes");
        let inner = message
            .initial
            .and_then(|i| i.message)
            .expect("an initial message");
        keys.insert(0, inner.ratchet_key.try_into().expect("32 bytes"));
    }
    (bob, record, keys)
}

fn forged_messages(c: &mut Criterion) {
    let mut g = c.benchmark_group("forged");
    let pt = plaintext(SMALL);

    // Baselines in the same run: one genuine message in order (no DH ratchet step), and the
    // first message of the peer's new chain (one DH ratchet step).
    let mut rb = RbPair::established(30, SessionConfig::default());
    g.bench_function("baseline_genuine_in_order", |b| {
        b.iter_custom(|iters| {
            let RbPair { rng, alice, bob } = &mut rb;
            stream(
                iters,
                || alice.record.encrypt(rng, &pt).expect("encrypts"),
                |w| bob.decrypt(w),
            )
        })
    });
    let mut rb = RbPair::established(31, SessionConfig::default());
    rb.turn();
    let wire = rb.alice_sends(&pt);
    let RbPeer {
        mut account,
        record,
    } = rb.bob;
    g.bench_function("baseline_genuine_new_chain", |b| {
        b.iter_batched_ref(
            || record.clone(),
            |record: &mut SessionRecord| record.decrypt(&mut account, &wire, NOW).expect("ok"),
            BatchSize::SmallInput,
        )
    });

    let ceilings = SessionConfig::default()
        .with_max_skip(SessionConfig::LIMIT_KEYS)
        .with_max_skipped_keys(SessionConfig::LIMIT_KEYS)
        .with_max_previous_sessions(SessionConfig::LIMIT_PREVIOUS_SESSIONS);
    for (label, config) in [
        ("defaults", SessionConfig::default()),
        ("ceilings", ceilings),
    ] {
        let (mut account, mut record, keys) = full_record(32, config);
        let max_skip = config.max_skip();
        let previous = config.max_skip_previous();
        let mut fresh = rng(33);
        let mut unknown = [0u8; 32];
        fresh.fill_bytes(&mut unknown);
        unknown[31] &= 0x7f;
        let attacks = [
            // A new chain as far ahead as the current session allows.
            (
                "new_chain_max_skip",
                forged(unknown, max_skip, 1 + max_skip),
            ),
            // A new chain every session tries (a DH and a chain walk in each).
            (
                "new_chain_max_skip_previous",
                forged(unknown, previous, 1 + max_skip),
            ),
            // The known chain of the oldest previous session, MAX_SKIP ahead.
            (
                "known_chain_max_skip",
                forged(keys[keys.len() - 1], 1 + max_skip, 0),
            ),
        ];
        for (name, wire) in &attacks {
            println!("forged/{name}/{label}: {} bytes", wire.len());
            let before = record.to_bytes();
            assert!(record.decrypt(&mut account, wire, NOW).is_err());
            assert_eq!(
                before,
                record.to_bytes(),
                "a forged message changed the record"
            );
            g.bench_function(format!("{name}/{label}"), |b| {
                b.iter(|| record.decrypt(&mut account, wire, NOW).expect_err("forged"))
            });
        }
    }
    g.finish();
}

fn config() -> Criterion {
    // Short runs: every group compares three implementations, on a shared 2-core machine.
    Criterion::default()
        .sample_size(20)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

criterion_group! {
    name = benches;
    config = config();
    targets = setup, steady, ping_pong, large, growth, state, floor, forged_messages
}
criterion_main!(benches);
