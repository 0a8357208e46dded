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
//! - `floor`: the primitives on their own.
//!
//! `cargo bench --bench protocol` runs it all (several minutes); pass a filter to run part
//! of it, e.g. `cargo bench --bench protocol -- steady`. `cargo run --release --example
//! throughput` prints the same comparisons as one table with ratios.
//!
//! Randomness: ratchetbox gets a seeded `ChaCha20Rng`; vodozemac uses `rand`'s thread RNG
//! (ChaCha12), which it does not let callers replace. Both are userspace CSPRNGs.

mod support;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use ratchetbox::{Session, SessionConfig, SessionRecord, StorageKey};
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
    targets = setup, steady, ping_pong, large, growth, state, floor
}
criterion_main!(benches);
