//! Simultaneous initiation: both peers start a session at the same moment. The per-peer
//! record keeps both and both sides settle on the same one.

mod common;

use common::{Peer, T0, rng};
use ratchetbox::{OneTimePreKeyId, SessionConfig};

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
        .generate_one_time_prekeys(&mut rng, 2)
        .unwrap();
    bob.account.generate_one_time_prekeys(&mut rng, 2).unwrap();
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
    // Messages of the last four sessions still decrypt, and each promotes its session: it
    // becomes current, and the session that was current becomes the most recent previous.
    for (i, wire) in first_messages.iter().enumerate().skip(2) {
        let was_current = bob.record.session_id();
        assert_eq!(bob.decrypt(wire, T0).unwrap(), [i as u8, i as u8]);
        assert_eq!(bob.record.session_id(), Some(ids[i]), "session {i}");
        if was_current != Some(ids[i]) {
            assert_eq!(
                bob.record.previous_sessions().next().map(|s| s.id()),
                was_current,
                "session {i}"
            );
        }
        assert_eq!(bob.record.previous_sessions().count(), 3);
    }
    // The oldest sessions were dropped: their later initial messages cannot start a second
    // session (a replay of a setup already used).
    assert_eq!(
        bob.reject(&first_messages[0]),
        ratchetbox::DecryptError::SetupAlreadyUsed
    );
}
