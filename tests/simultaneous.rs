//! Simultaneous initiation: both peers start a session at the same moment. The per-peer
//! record keeps both and both sides settle on the same one.

mod common;

use common::{Peer, T0, rng};
use rand_core::Rng;
use ratchetbox::{Message, OneTimePreKeyId, SessionConfig, SessionId};

struct Both {
    rng: rand_chacha::ChaCha20Rng,
    alice: Peer,
    bob: Peer,
}

fn both_initiate(seed: u64) -> Both {
    let mut rng = rng(seed);
    let mut alice = Peer::new(&mut rng, SessionConfig::default());
    let mut bob = Peer::new(&mut rng, SessionConfig::default());
    alice
        .account
        .generate_one_time_prekeys(&mut rng, 2, T0)
        .unwrap();
    bob.account
        .generate_one_time_prekeys(&mut rng, 2, T0)
        .unwrap();
    let alice_bundle = alice
        .account
        .prekey_bundle(Some(OneTimePreKeyId(1)), None)
        .unwrap();
    let bob_bundle = bob
        .account
        .prekey_bundle(Some(OneTimePreKeyId(1)), None)
        .unwrap();
    alice
        .record
        .initiate(&mut rng, &alice.account, &bob_bundle)
        .unwrap();
    bob.record
        .initiate(&mut rng, &bob.account, &alice_bundle)
        .unwrap();
    Both { rng, alice, bob }
}

impl Both {
    fn a_to_b(&mut self, text: &[u8]) -> Vec<u8> {
        self.alice.record.encrypt(&mut self.rng, text).unwrap()
    }
    fn b_to_a(&mut self, text: &[u8]) -> Vec<u8> {
        self.bob.record.encrypt(&mut self.rng, text).unwrap()
    }
    fn converged(&self) -> bool {
        self.alice.record.session_id() == self.bob.record.session_id()
    }
}

#[test]
fn crossing_initial_messages_converge_at_once() {
    for seed in 0..16 {
        let _seed = common::SeedGuard(seed);
        let mut s = both_initiate(seed);
        assert!(!s.converged());
        let from_alice = s.a_to_b(b"hi from alice");
        let from_bob = s.b_to_a(b"hi from bob");
        assert_eq!(s.bob.decrypt(&from_alice, T0).unwrap(), b"hi from alice");
        assert_eq!(s.alice.decrypt(&from_bob, T0).unwrap(), b"hi from bob");
        // Both kept the session with the smaller id as current.
        assert!(s.converged(), "seed {seed}");
        // And it works both ways, messages in flight crossing again.
        for i in 0..5u8 {
            let a = s.a_to_b(&[i]);
            let b = s.b_to_a(&[i, i]);
            assert_eq!(s.bob.decrypt(&a, T0).unwrap(), [i]);
            assert_eq!(s.alice.decrypt(&b, T0).unwrap(), [i, i]);
            assert!(s.converged(), "seed {seed}, round {i}");
        }
        assert!(!s.alice.record.session().unwrap().awaiting_reply());
        assert!(!s.bob.record.session().unwrap().awaiting_reply());
    }
}

#[test]
fn messages_already_in_flight_on_the_other_session_still_decrypt() {
    for seed in 20..30 {
        let _seed = common::SeedGuard(seed);
        let mut s = both_initiate(seed);
        // Each sends three messages on its own session before seeing the other's.
        let from_alice: Vec<_> = (0..3u8).map(|i| s.a_to_b(&[b'a', i])).collect();
        let from_bob: Vec<_> = (0..3u8).map(|i| s.b_to_a(&[b'b', i])).collect();
        // Interleaved delivery.
        for i in 0..3 {
            assert_eq!(s.bob.decrypt(&from_alice[i], T0).unwrap(), [b'a', i as u8]);
            assert_eq!(s.alice.decrypt(&from_bob[i], T0).unwrap(), [b'b', i as u8]);
        }
        // Whatever happened in between, one exchange each way settles it.
        let a = s.a_to_b(b"settle");
        assert_eq!(s.bob.decrypt(&a, T0).unwrap(), b"settle");
        let b = s.b_to_a(b"settled");
        assert_eq!(s.alice.decrypt(&b, T0).unwrap(), b"settled");
        assert!(s.converged(), "seed {seed}");
        for round in 0..3u8 {
            let a = s.a_to_b(&[round]);
            let b = s.b_to_a(&[round]);
            assert_eq!(s.bob.decrypt(&a, T0).unwrap(), [round]);
            assert_eq!(s.alice.decrypt(&b, T0).unwrap(), [round]);
            assert!(s.converged());
        }
        // Each record holds both sessions: the current one and the other as previous.
        assert_eq!(s.alice.record.previous_sessions().count(), 1);
        assert_eq!(s.bob.record.previous_sessions().count(), 1);
    }
}

#[test]
fn the_record_keeps_a_bounded_number_of_previous_sessions() {
    let mut rng = rng(40);
    let config = SessionConfig::default().with_max_previous_sessions(3);
    let mut alice = Peer::new(&mut rng, config);
    let mut bob = Peer::new(&mut rng, config);
    let bundle = bob.account.prekey_bundle(None, None).unwrap();
    let mut first_messages = Vec::new();
    let mut ids = Vec::new();
    for i in 0..6u8 {
        alice
            .record
            .initiate(&mut rng, &alice.account, &bundle)
            .unwrap();
        ids.push(alice.record.session_id().unwrap());
        let wire = alice.record.encrypt(&mut rng, &[i]).unwrap();
        assert_eq!(bob.decrypt(&wire, T0).unwrap(), [i]);
        first_messages.push(alice.record.encrypt(&mut rng, &[i, i]).unwrap());
    }
    assert_eq!(alice.record.previous_sessions().count(), 3);
    assert_eq!(bob.record.previous_sessions().count(), 3);
    assert_eq!(bob.record.session_id(), Some(ids[5]));
    // Messages of the last four sessions still decrypt; each makes its session current
    // again only if that session precedes the current one (all are post-quantum: the
    // smaller id), PROTOCOL.md section 6.7.
    let mut expected = ids[5];
    for (i, wire) in first_messages.iter().enumerate().skip(2) {
        assert_eq!(bob.decrypt(wire, T0).unwrap(), [i as u8, i as u8]);
        expected = expected.min(ids[i]);
        assert_eq!(bob.record.session_id(), Some(expected), "session {i}");
        assert_eq!(bob.record.previous_sessions().count(), 3);
    }
    // The oldest sessions were dropped: their later initial messages cannot start a second
    // session (a replay of a setup already used).
    assert_eq!(
        bob.reject(&first_messages[0]),
        ratchetbox::DecryptError::SetupAlreadyUsed
    );
}

/// A message in flight, and who reads it.
struct InFlight {
    to_bob: bool,
    wire: Vec<u8>,
    plaintext: Vec<u8>,
}

/// Both peers start a session at once and each sends 1 to 4 initial messages before reading
/// anything; then every message is delivered, in a random order (within and across the two
/// directions). From the moment each side has read one initial message of the other, and
/// whatever arrives afterwards, both send on the same session: the one that precedes in the
/// order of PROTOCOL.md section 6.7 (here both are post-quantum, so the smaller id).
#[test]
fn crossing_initial_messages_converge_whatever_their_number_and_order() {
    let mut orders = 0;
    for seed in 0..96 {
        let _seed = common::SeedGuard(seed);
        let mut s = both_initiate(1000 + seed);
        let mut shuffle = rng(5000 + seed);
        let alice_id = s.alice.record.session_id().unwrap();
        let bob_id = s.bob.record.session_id().unwrap();
        let winner = alice_id.min(bob_id);
        let alice_count = 1 + (shuffle.next_u32() % 4) as usize;
        let bob_count = 1 + (shuffle.next_u32() % 4) as usize;
        let mut in_flight = Vec::new();
        for i in 0..alice_count {
            let plaintext = format!("alice {i}").into_bytes();
            let wire = s.a_to_b(&plaintext);
            in_flight.push(InFlight {
                to_bob: true,
                wire,
                plaintext,
            });
        }
        for i in 0..bob_count {
            let plaintext = format!("bob {i}").into_bytes();
            let wire = s.b_to_a(&plaintext);
            in_flight.push(InFlight {
                to_bob: false,
                wire,
                plaintext,
            });
        }
        let (mut bob_read, mut alice_read) = (0, 0);
        while !in_flight.is_empty() {
            let next = in_flight.swap_remove(shuffle.next_u32() as usize % in_flight.len());
            let reader = if next.to_bob {
                &mut s.bob
            } else {
                &mut s.alice
            };
            assert_eq!(reader.decrypt(&next.wire, T0).unwrap(), next.plaintext);
            if next.to_bob {
                bob_read += 1;
            } else {
                alice_read += 1;
            }
            if bob_read > 0 && alice_read > 0 {
                assert_eq!(s.alice.record.session_id(), Some(winner), "seed {seed}");
                assert_eq!(s.bob.record.session_id(), Some(winner), "seed {seed}");
            }
        }
        orders += 1;
        // The conversation goes on in the settled session, messages crossing.
        for round in 0..3u8 {
            let a = s.a_to_b(&[b'a', round]);
            let b = s.b_to_a(&[b'b', round]);
            assert_eq!(s.bob.decrypt(&a, T0).unwrap(), [b'a', round]);
            assert_eq!(s.alice.decrypt(&b, T0).unwrap(), [b'b', round]);
            assert!(s.converged(), "seed {seed}, round {round}");
        }
        assert_eq!(s.alice.record.session_id(), Some(winner));
    }
    assert_eq!(orders, 96);
}

/// The one order that does not settle at once: the winner's first message is answered, and
/// the answer overtakes the loser's setup. The winner then cannot tell the loser's setup from
/// a session the peer started later on purpose, and takes it (PROTOCOL.md section 6.7). The
/// loser's next message settles it: the winner's own session precedes and becomes current
/// again, and nothing moves the loser off it.
#[test]
fn an_answer_that_overtakes_the_other_setup_settles_with_the_next_message() {
    for seed in 0..24 {
        let _seed = common::SeedGuard(seed);
        let mut s = both_initiate(3000 + seed);
        let alice_id = s.alice.record.session_id().unwrap();
        let bob_id = s.bob.record.session_id().unwrap();
        let winner = alice_id.min(bob_id);
        let (mut w, mut l) = if alice_id < bob_id {
            (s.alice, s.bob)
        } else {
            (s.bob, s.alice)
        };
        let rng = &mut s.rng;
        let w_setup = w.record.encrypt(rng, b"w setup").unwrap();
        let l_setup = l.record.encrypt(rng, b"l setup").unwrap();
        assert_eq!(l.decrypt(&w_setup, T0).unwrap(), b"w setup");
        assert_eq!(l.record.session_id(), Some(winner));
        let answer = l.record.encrypt(rng, b"answer").unwrap();
        assert_eq!(w.decrypt(&answer, T0).unwrap(), b"answer");
        assert_eq!(w.decrypt(&l_setup, T0).unwrap(), b"l setup");
        assert_ne!(w.record.session_id(), Some(winner), "seed {seed}");
        let x = w.record.encrypt(rng, b"x").unwrap();
        assert_eq!(l.decrypt(&x, T0).unwrap(), b"x");
        assert_eq!(l.record.session_id(), Some(winner), "seed {seed}");
        let y = l.record.encrypt(rng, b"y").unwrap();
        assert_eq!(w.decrypt(&y, T0).unwrap(), b"y");
        assert_eq!(w.record.session_id(), Some(winner), "seed {seed}");
        for round in 0..3u8 {
            let a = w.record.encrypt(rng, &[round]).unwrap();
            let b = l.record.encrypt(rng, &[round, round]).unwrap();
            assert_eq!(l.decrypt(&a, T0).unwrap(), [round]);
            assert_eq!(w.decrypt(&b, T0).unwrap(), [round, round]);
            assert_eq!(w.record.session_id(), Some(winner), "seed {seed}");
            assert_eq!(l.record.session_id(), Some(winner), "seed {seed}");
        }
    }
}

/// `from` starts a classical (X3DH) session with `to`, using `to`'s one-time prekey
/// `one_time`.
fn initiate_classical(
    rng: &mut rand_chacha::ChaCha20Rng,
    from: &mut Peer,
    to: &Peer,
    one_time: u32,
) {
    let classical = to
        .account
        .classical_prekey_bundle(Some(OneTimePreKeyId(one_time)))
        .unwrap();
    from.record
        .initiate(rng, &from.account, &classical)
        .unwrap();
}

/// Alice and Bob with classical setups allowed, an established classical session started by
/// `classical_by_bob ? Bob : Alice`, and a message from Bob on it that is withheld. Then
/// Alice starts a post-quantum session and both use it.
fn classical_then_post_quantum(
    seed: u64,
    classical_by_bob: bool,
) -> (Peer, Peer, Vec<u8>, SessionId) {
    let mut rng = rng(seed);
    let config = SessionConfig::default().with_classical_setup_allowed(true);
    let mut alice = Peer::new(&mut rng, config);
    let mut bob = Peer::new(&mut rng, config);
    bob.account
        .generate_one_time_prekeys(&mut rng, 2, T0)
        .unwrap();
    alice
        .account
        .generate_one_time_prekeys(&mut rng, 2, T0)
        .unwrap();
    let (first, second) = if classical_by_bob {
        (&mut bob, &mut alice)
    } else {
        (&mut alice, &mut bob)
    };
    initiate_classical(&mut rng, first, second, 1);
    let m = first.record.encrypt(&mut rng, b"classical 1").unwrap();
    assert_eq!(second.decrypt(&m, T0).unwrap(), b"classical 1");
    let m = second.record.encrypt(&mut rng, b"classical 2").unwrap();
    assert_eq!(first.decrypt(&m, T0).unwrap(), b"classical 2");
    assert!(!alice.record.session().unwrap().is_post_quantum());
    // Withheld by the network.
    let late = bob.record.encrypt(&mut rng, b"late classical").unwrap();

    let pq = bob
        .account
        .prekey_bundle(Some(OneTimePreKeyId(2)), None)
        .unwrap();
    alice
        .record
        .initiate(&mut rng, &alice.account, &pq)
        .unwrap();
    let m = alice.record.encrypt(&mut rng, b"pq 1").unwrap();
    assert_eq!(bob.decrypt(&m, T0).unwrap(), b"pq 1");
    let m = bob.record.encrypt(&mut rng, b"pq 2").unwrap();
    assert_eq!(alice.decrypt(&m, T0).unwrap(), b"pq 2");
    let pq_id = alice.record.session_id().unwrap();
    assert!(alice.record.session().unwrap().is_post_quantum());
    assert_eq!(bob.record.session_id(), Some(pq_id));
    (alice, bob, late, pq_id)
}

/// A withheld message from an earlier classical (X3DH) session decrypts, but Alice keeps
/// sending post-quantum messages in the PQXDH session: a classical session never becomes
/// current over a post-quantum one, whoever started it.
#[test]
fn a_late_message_from_a_classical_session_does_not_downgrade_the_conversation() {
    for (seed, classical_by_bob) in [(60, false), (61, true), (62, false), (63, true)] {
        let (mut alice, mut bob, late, pq_id) = classical_then_post_quantum(seed, classical_by_bob);
        assert_eq!(alice.decrypt(&late, T0).unwrap(), b"late classical");
        assert_eq!(alice.record.session_id(), Some(pq_id));
        let mut rng = rng(seed + 100);
        let next = alice.record.encrypt(&mut rng, b"still pq").unwrap();
        assert!(
            Message::from_bytes(&next).unwrap().is_post_quantum(),
            "seed {seed}"
        );
        assert_eq!(bob.decrypt(&next, T0).unwrap(), b"still pq");
        assert_eq!(bob.record.session_id(), Some(pq_id));
    }
}

/// If Alice starts a classical session after the post-quantum one (she fetched a classical
/// bundle), the next message Bob sends on the post-quantum session makes it current again:
/// a post-quantum session precedes a classical one whichever id is smaller (PROTOCOL.md
/// section 6.7, rule 3).
#[test]
fn a_post_quantum_session_becomes_current_again_over_a_classical_one() {
    let mut larger_pq_id = 0;
    for seed in 70..78 {
        let _seed = common::SeedGuard(seed);
        let (mut alice, mut bob, _, pq_id) = classical_then_post_quantum(seed, false);
        let mut rng = rng(seed + 100);
        bob.account
            .generate_one_time_prekeys(&mut rng, 1, T0)
            .unwrap();
        initiate_classical(&mut rng, &mut alice, &bob, 3);
        let classical_id = alice.record.session_id().unwrap();
        assert!(!alice.record.session().unwrap().is_post_quantum());
        larger_pq_id += usize::from(pq_id.to_bytes() > classical_id.to_bytes());

        let m = bob.record.encrypt(&mut rng, b"pq 3").unwrap();
        assert_eq!(alice.decrypt(&m, T0).unwrap(), b"pq 3");
        assert_eq!(alice.record.session_id(), Some(pq_id));
    }
    // Both orders of the two ids occurred, so the order did not decide.
    assert!((1..8).contains(&larger_pq_id), "{larger_pq_id} of 8");
}

/// A withheld initial message of an earlier classical session, delivered after a PQXDH
/// session is current, creates its session (and decrypts) but does not make it current.
#[test]
fn a_late_classical_setup_does_not_replace_a_post_quantum_session() {
    for seed in 70..74 {
        let _seed = common::SeedGuard(seed);
        let mut rng = rng(seed);
        let config = SessionConfig::default().with_classical_setup_allowed(true);
        let mut alice = Peer::new(&mut rng, config);
        let mut bob = Peer::new(&mut rng, config);
        bob.account
            .generate_one_time_prekeys(&mut rng, 2, T0)
            .unwrap();
        initiate_classical(&mut rng, &mut alice, &bob, 1);
        // Withheld by the network.
        let late = alice
            .record
            .encrypt(&mut rng, b"late classical setup")
            .unwrap();
        let pq = bob
            .account
            .prekey_bundle(Some(OneTimePreKeyId(2)), None)
            .unwrap();
        alice
            .record
            .initiate(&mut rng, &alice.account, &pq)
            .unwrap();
        let m = alice.record.encrypt(&mut rng, b"pq 1").unwrap();
        assert_eq!(bob.decrypt(&m, T0).unwrap(), b"pq 1");
        let pq_id = bob.record.session_id().unwrap();

        assert_eq!(bob.decrypt(&late, T0).unwrap(), b"late classical setup");
        assert_eq!(bob.record.session_id(), Some(pq_id), "seed {seed}");
        assert_eq!(bob.record.previous_sessions().count(), 1);
        let reply = bob.record.encrypt(&mut rng, b"pq reply").unwrap();
        assert!(Message::from_bytes(&reply).unwrap().is_post_quantum());
        assert_eq!(alice.decrypt(&reply, T0).unwrap(), b"pq reply");
        assert_eq!(alice.record.session_id(), Some(pq_id));
    }
}

/// A withheld message from an older session (both sessions started by Alice here) decrypts,
/// and makes that session current again only if it precedes the newer one (same kind: the
/// smaller id); either way both sides then settle on the same session.
#[test]
fn a_late_message_from_an_older_session_makes_it_current_only_if_it_precedes() {
    let mut outcomes = [0; 2];
    for seed in 80..96 {
        let _seed = common::SeedGuard(seed);
        let mut rng = rng(seed);
        let mut alice = Peer::new(&mut rng, SessionConfig::default());
        let mut bob = Peer::new(&mut rng, SessionConfig::default());
        bob.account
            .generate_one_time_prekeys(&mut rng, 2, T0)
            .unwrap();
        let bundle = |bob: &Peer, otk| {
            bob.account
                .prekey_bundle(Some(OneTimePreKeyId(otk)), None)
                .unwrap()
        };
        let first = bundle(&bob, 1);
        alice
            .record
            .initiate(&mut rng, &alice.account, &first)
            .unwrap();
        let m = alice.record.encrypt(&mut rng, b"hello").unwrap();
        assert_eq!(bob.decrypt(&m, T0).unwrap(), b"hello");
        let m = bob.record.encrypt(&mut rng, b"hi").unwrap();
        assert_eq!(alice.decrypt(&m, T0).unwrap(), b"hi");
        let old_id = alice.record.session_id().unwrap();
        // Withheld by the network.
        let late = bob.record.encrypt(&mut rng, b"late").unwrap();

        let second = bundle(&bob, 2);
        alice
            .record
            .initiate(&mut rng, &alice.account, &second)
            .unwrap();
        let m = alice.record.encrypt(&mut rng, b"new session").unwrap();
        assert_eq!(bob.decrypt(&m, T0).unwrap(), b"new session");
        let m = bob.record.encrypt(&mut rng, b"ok").unwrap();
        assert_eq!(alice.decrypt(&m, T0).unwrap(), b"ok");
        let new_id = alice.record.session_id().unwrap();
        assert_eq!(bob.record.session_id(), Some(new_id));

        assert_eq!(alice.decrypt(&late, T0).unwrap(), b"late");
        let settled = old_id.min(new_id);
        assert_eq!(alice.record.session_id(), Some(settled), "seed {seed}");
        outcomes[usize::from(settled == old_id)] += 1;
        let m = alice.record.encrypt(&mut rng, b"next").unwrap();
        assert_eq!(bob.decrypt(&m, T0).unwrap(), b"next");
        assert_eq!(bob.record.session_id(), Some(settled), "seed {seed}");
        let m = bob.record.encrypt(&mut rng, b"and back").unwrap();
        assert_eq!(alice.decrypt(&m, T0).unwrap(), b"and back");
        assert_eq!(alice.record.session_id(), Some(settled), "seed {seed}");
    }
    // Both outcomes occurred.
    assert!(outcomes[0] > 0 && outcomes[1] > 0, "{outcomes:?}");
}

/// Random schedules of session starts by either side (each from a fresh bundle), sends, and
/// deliveries in any order, with messages held back arbitrarily long: once everything has
/// arrived, one message each way and one more settle both sides on the same session, and
/// every message decrypts exactly once on the way.
#[test]
fn any_schedule_of_session_starts_and_deliveries_settles() {
    for seed in 0..300u64 {
        let _seed = common::SeedGuard(seed);
        let mut r = rng(9000 + seed);
        let mut rng = rng(seed);
        let mut alice = Peer::new(&mut rng, SessionConfig::default());
        let mut bob = Peer::new(&mut rng, SessionConfig::default());
        let mut in_flight: Vec<InFlight> = Vec::new();
        let mut starts = 0;
        let mut counter = 0u32;
        for _ in 0..(20 + r.next_u32() % 40) {
            match r.next_u32() % 8 {
                0 if starts < 6 => {
                    starts += 1;
                    let (from, to) = if r.next_u32().is_multiple_of(2) {
                        (&mut alice, &bob)
                    } else {
                        (&mut bob, &alice)
                    };
                    let bundle = to.account.prekey_bundle(None, None).unwrap();
                    from.record
                        .initiate(&mut rng, &from.account, &bundle)
                        .unwrap();
                }
                1..=3 => {
                    let to_bob = r.next_u32().is_multiple_of(2);
                    let from = if to_bob { &mut alice } else { &mut bob };
                    if from.record.session().is_none() {
                        continue;
                    }
                    for _ in 0..=(r.next_u32() % 3) {
                        counter += 1;
                        let plaintext = counter.to_be_bytes().to_vec();
                        let wire = from.record.encrypt(&mut rng, &plaintext).unwrap();
                        in_flight.push(InFlight {
                            to_bob,
                            wire,
                            plaintext,
                        });
                    }
                }
                _ if !in_flight.is_empty() => {
                    let next = in_flight.swap_remove(r.next_u32() as usize % in_flight.len());
                    let reader = if next.to_bob { &mut bob } else { &mut alice };
                    assert_eq!(
                        reader.decrypt(&next.wire, T0).unwrap(),
                        next.plaintext,
                        "seed {seed}"
                    );
                }
                _ => {}
            }
        }
        while !in_flight.is_empty() {
            let next = in_flight.swap_remove(r.next_u32() as usize % in_flight.len());
            let reader = if next.to_bob { &mut bob } else { &mut alice };
            assert_eq!(
                reader.decrypt(&next.wire, T0).unwrap(),
                next.plaintext,
                "seed {seed}"
            );
        }
        if alice.record.session().is_none() && bob.record.session().is_none() {
            continue;
        }
        // One message each way and one more (the side without a session answers first).
        let first_is_alice = alice.record.session().is_some();
        for turn in 0..3 {
            let alice_sends = (turn % 2 == 0) == first_is_alice;
            let (from, to) = if alice_sends {
                (&mut alice, &mut bob)
            } else {
                (&mut bob, &mut alice)
            };
            let wire = from.record.encrypt(&mut rng, b"settle").unwrap();
            assert_eq!(to.decrypt(&wire, T0).unwrap(), b"settle", "seed {seed}");
        }
        assert_eq!(
            alice.record.session_id(),
            bob.record.session_id(),
            "seed {seed}: the two sides did not settle"
        );
    }
}
