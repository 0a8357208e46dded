//! Disappearing messages: timer updates, version rules, convergence between honest peers,
//! deadlines from local events only, extreme values, and pruning of old skipped keys.

mod common;

use common::{Pair, Side, T0, pb};
use proptest::prelude::*;
use ratchetbox::{
    Content, ContentError, DecryptError, EXPIRED_TIMER_GRACE_SECS, EncryptError, ExpiryError,
    ExpiryTimer, MAX_TIMER_SECS, SessionConfig, TimerChange, Timestamp,
};

fn t(secs: u64) -> Timestamp {
    T0.saturating_add_secs(secs)
}

fn send(pair: &mut Pair, from: Side, text: &str, now: Timestamp) -> Vec<u8> {
    let rng = &mut pair.rng;
    let peer = match from {
        Side::Alice => &mut pair.alice,
        Side::Bob => &mut pair.bob,
    };
    peer.record
        .send(rng, &Content::new(text), now)
        .unwrap()
        .into_wire()
}

fn set(pair: &mut Pair, side: Side, seconds: u32, now: Timestamp) -> Vec<u8> {
    let rng = &mut pair.rng;
    let peer = match side {
        Side::Alice => &mut pair.alice,
        Side::Bob => &mut pair.bob,
    };
    peer.record
        .set_expiry_timer(rng, seconds, now)
        .unwrap()
        .into_wire()
}

fn receive(pair: &mut Pair, to: Side, wire: &[u8], now: Timestamp) -> ratchetbox::ReceivedMessage {
    let peer = pair.peer(to);
    peer.record.receive(&mut peer.account, wire, now).unwrap()
}

#[test]
fn a_timer_update_is_adopted_and_deadlines_come_from_local_events() {
    let mut pair = Pair::established(1);
    let update = pair
        .alice
        .record
        .set_expiry_timer(&mut pair.rng, 3600, t(10))
        .unwrap();
    assert_eq!(update.timer(), ExpiryTimer::new(3600, 1).unwrap());
    assert_eq!(pair.alice.record.expiry_timer(), update.timer());

    let received = receive(&mut pair, Side::Bob, update.wire(), t(20));
    assert_eq!(
        received.timer_change(),
        TimerChange::Changed {
            from: ExpiryTimer::OFF,
            to: ExpiryTimer::new(3600, 1).unwrap()
        }
    );
    assert!(received.content().body().is_empty());
    assert_eq!(
        pair.bob.record.expiry_timer(),
        ExpiryTimer::new(3600, 1).unwrap()
    );

    // A sent message expires at local send time + timer.
    let sent = pair
        .alice
        .record
        .send(&mut pair.rng, &Content::new("poof"), t(100))
        .unwrap();
    assert_eq!(sent.expires_at(), Some(t(3700)));
    // A received one at the local time it is read + timer, never from the sender's clock.
    let received = receive(&mut pair, Side::Bob, sent.wire(), t(500));
    assert_eq!(received.expires_at(t(900)), Some(t(4500)));
    // "Read" before it was received (clock jumped back): counted from receipt.
    assert_eq!(received.expires_at(t(0)), Some(t(500 + 3600)));

    // Bob's replies carry the same setting, and Alice sees no change.
    let reply = send(&mut pair, Side::Bob, "ok", t(600));
    assert_eq!(
        receive(&mut pair, Side::Alice, &reply, t(601)).timer_change(),
        TimerChange::Unchanged
    );
}

#[test]
fn a_lower_version_does_not_change_the_setting_but_the_message_keeps_its_timer() {
    let mut pair = Pair::established(2);
    let first = set(&mut pair, Side::Alice, 60, t(1)); // version 1
    let second = set(&mut pair, Side::Alice, 30, t(2)); // version 2
    assert!(matches!(
        receive(&mut pair, Side::Bob, &second, t(3)).timer_change(),
        TimerChange::Changed { .. }
    ));
    let late = receive(&mut pair, Side::Bob, &first, t(4));
    assert_eq!(late.timer_change(), TimerChange::Unchanged);
    assert_eq!(
        pair.bob.record.expiry_timer(),
        ExpiryTimer::new(30, 2).unwrap()
    );
    // The late message itself still expires by the 60 s it was sent with.
    assert_eq!(late.timer(), ExpiryTimer::new(60, 1).unwrap());
    assert_eq!(late.expires_at(t(10)), Some(t(70)));
}

#[test]
fn concurrent_changes_with_equal_versions_converge_on_the_shorter_timer() {
    for (a, b, expected) in [
        (60, 30, 30),
        (30, 60, 30),
        (0, 45, 45),
        (45, 0, 45),
        (10, 10, 10),
    ] {
        let mut pair = Pair::established(3);
        let from_alice = set(&mut pair, Side::Alice, a, t(1));
        let from_bob = set(&mut pair, Side::Bob, b, t(1));
        receive(&mut pair, Side::Bob, &from_alice, t(2));
        receive(&mut pair, Side::Alice, &from_bob, t(2));
        let expected = ExpiryTimer::new(expected, 1).unwrap();
        assert_eq!(pair.alice.record.expiry_timer(), expected, "{a} vs {b}");
        assert_eq!(pair.bob.record.expiry_timer(), expected, "{a} vs {b}");
    }
}

#[test]
fn the_next_change_takes_the_highest_version_seen_plus_one() {
    let mut pair = Pair::established(4);
    for _ in 0..3 {
        let update = set(&mut pair, Side::Alice, 60, t(1));
        receive(&mut pair, Side::Bob, &update, t(1));
    }
    assert_eq!(pair.bob.record.expiry_timer().version(), 3);
    let from_bob = pair
        .bob
        .record
        .set_expiry_timer(&mut pair.rng, 5, t(2))
        .unwrap();
    assert_eq!(from_bob.timer(), ExpiryTimer::new(5, 4).unwrap());
}

#[test]
fn duplicate_updates_are_rejected_and_change_nothing() {
    let mut pair = Pair::established(5);
    let update = set(&mut pair, Side::Alice, 60, t(1));
    receive(&mut pair, Side::Bob, &update, t(1));
    let before = pair.bob.snapshot();
    assert!(matches!(
        pair.bob
            .record
            .receive(&mut pair.bob.account, &update, t(2)),
        Err(DecryptError::Duplicate { .. })
    ));
    assert_eq!(before, pair.bob.snapshot());
}

#[test]
fn invalid_timer_changes_are_refused_without_changing_anything() {
    let mut pair = Pair::established(6);
    let before = pair.alice.snapshot();
    assert_eq!(
        pair.alice
            .record
            .set_expiry_timer(&mut pair.rng, MAX_TIMER_SECS + 1, t(1))
            .err(),
        Some(EncryptError::InvalidTimer(ExpiryError::TimerOutOfRange {
            seconds: MAX_TIMER_SECS + 1,
            max: MAX_TIMER_SECS
        }))
    );
    assert_eq!(before, pair.alice.snapshot());
}

/// Alice's client encrypts content carrying any timer it likes, as a modified client could.
fn crafted_timer(pair: &mut Pair, seconds: u32, version: u32) -> Vec<u8> {
    let content = pb::Content {
        body: vec![],
        attachments: vec![],
        timer: Some(pb::DisappearingTimer { seconds, version }),
        sent_at: 0,
    };
    pair.send_crafted(Side::Alice, &pb::padded_content(&content))
}

#[test]
fn a_version_of_2_pow_32_minus_1_is_invalid_metadata_and_changes_nothing() {
    let mut pair = Pair::established(6);
    let update = set(&mut pair, Side::Bob, 300, t(0)); // Bob's setting: (300, 1)
    receive(&mut pair, Side::Alice, &update, t(0));
    for seconds in [60, 0] {
        let wire = crafted_timer(&mut pair, seconds, u32::MAX);
        let before = pair.bob.snapshot();
        let error = pair
            .bob
            .record
            .receive(&mut pair.bob.account, &wire, t(1))
            .unwrap_err();
        assert_eq!(
            error,
            DecryptError::InvalidContent(ContentError::Expiry(ExpiryError::VersionOverflow {
                version: u32::MAX,
                max: u32::MAX - 1,
            })),
            "{seconds} s"
        );
        assert_eq!(
            error.to_string(),
            "the message decrypted but its content is invalid: the disappearing-message \
             timer version 4294967295 is too large (the largest allowed is 4294967294)"
        );
        assert_eq!(before, pair.bob.snapshot(), "{seconds} s");
    }
    // Bob's setting is untouched and he can still change it.
    assert_eq!(
        pair.bob.record.expiry_timer(),
        ExpiryTimer::new(300, 1).unwrap()
    );
    let update = pair
        .bob
        .record
        .set_expiry_timer(&mut pair.rng, 30, t(2))
        .unwrap();
    assert_eq!(update.timer(), ExpiryTimer::new(30, 2).unwrap());
    receive(&mut pair, Side::Alice, update.wire(), t(2));
    assert_eq!(pair.alice.record.expiry_timer(), update.timer());
}

#[test]
fn the_last_version_is_adopted_but_never_exceeded() {
    let last = ExpiryTimer::MAX_VERSION;
    assert_eq!(last, u32::MAX - 1);
    let mut pair = Pair::established(16);
    // A peer one below the last version: adopted, and the next change reaches the last one.
    let wire = crafted_timer(&mut pair, 60, last - 1);
    receive(&mut pair, Side::Bob, &wire, t(1));
    let update = pair
        .bob
        .record
        .set_expiry_timer(&mut pair.rng, 30, t(2))
        .unwrap();
    assert_eq!(update.timer(), ExpiryTimer::new(30, last).unwrap());
    receive(&mut pair, Side::Alice, update.wire(), t(2));
    assert_eq!(pair.alice.record.expiry_timer(), update.timer());

    // At the last version the timer can no longer change, on either side, and nothing of the
    // failed change is kept: no version 2^32 - 1 is ever produced.
    for side in [Side::Alice, Side::Bob] {
        let rng = &mut pair.rng;
        let peer = match side {
            Side::Alice => &mut pair.alice,
            Side::Bob => &mut pair.bob,
        };
        let before = peer.snapshot();
        assert_eq!(
            peer.record.set_expiry_timer(rng, 10, t(3)).err(),
            Some(EncryptError::InvalidTimer(ExpiryError::VersionExhausted)),
            "{side:?}"
        );
        assert_eq!(before, peer.snapshot(), "{side:?}");
    }
    // Messages keep flowing with the last setting.
    let wire = send(&mut pair, Side::Bob, "still here", t(4));
    let received = receive(&mut pair, Side::Alice, &wire, t(4));
    assert_eq!(received.timer(), ExpiryTimer::new(30, last).unwrap());
    assert_eq!(received.timer_change(), TimerChange::Unchanged);
}

#[test]
fn extreme_times_saturate_instead_of_overflowing() {
    let mut pair = Pair::established(7);
    let update = pair
        .alice
        .record
        .set_expiry_timer(&mut pair.rng, MAX_TIMER_SECS, Timestamp::MAX)
        .unwrap();
    assert_eq!(update.expires_at(), Some(Timestamp::MAX));
    let received = receive(&mut pair, Side::Bob, update.wire(), Timestamp::MAX);
    assert_eq!(received.expires_at(Timestamp::MAX), Some(Timestamp::MAX));
    assert_eq!(received.sent_at(), Timestamp::MAX);
    // And at the epoch.
    let sent = pair
        .alice
        .record
        .send(&mut pair.rng, &Content::new("x"), Timestamp::EPOCH)
        .unwrap();
    assert_eq!(
        sent.expires_at(),
        Some(Timestamp::from_unix_secs(u64::from(MAX_TIMER_SECS)))
    );
    let received = receive(&mut pair, Side::Bob, sent.wire(), Timestamp::EPOCH);
    assert_eq!(
        received.expires_at(Timestamp::EPOCH),
        Some(Timestamp::from_unix_secs(u64::from(MAX_TIMER_SECS)))
    );
}

#[test]
fn clock_jumps_give_exact_deadlines_from_each_sides_own_clock() {
    const MAX: Timestamp = Timestamp::MAX;
    const EPOCH: Timestamp = Timestamp::EPOCH;
    let mut pair = Pair::established(8);
    set_and_deliver(&mut pair, 120);
    let skipped = |pair: &Pair| pair.bob.record.session().unwrap().skipped_key_count();
    // Alice's clock when she sends, Bob's when he receives and when he reads; then what Bob
    // sees: the send time (clamped to receipt) and the deadline (from max(read, receipt)).
    #[rustfmt::skip]
    let steps = [
        // Alice 5 s behind Bob.
        (t(1_000), t(1_005), t(1_010), t(1_000), t(1_130)),
        // Alice's clock went back; Bob reads at a time before receipt (his clock went back).
        (t(10), t(2_000), t(1_990), t(10), t(2_120)),
        // Alice 30 years ahead: her send time is clamped to Bob's time of receipt.
        (t(1_000_000_000), t(3_000), t(3_000), t(3_000), t(3_120)),
        // Bob's clock went back below everything so far.
        (t(5), t(1), t(50), t(1), t(170)),
        // Extremes: deadlines saturate.
        (MAX, t(4_000), MAX, t(4_000), MAX),
        (EPOCH, MAX, t(0), EPOCH, MAX),
        (t(6), EPOCH, EPOCH, EPOCH, Timestamp::from_unix_secs(120)),
    ];
    let mut lost = Vec::new();
    for (i, (alice_now, bob_now, read_at, sent_at, expires_at)) in steps.into_iter().enumerate() {
        // One message per step is lost: Bob stores its key at his own clock.
        lost.push(send(&mut pair, Side::Alice, "lost", alice_now));
        let sent = pair
            .alice
            .record
            .send(&mut pair.rng, &Content::new("tick"), alice_now)
            .unwrap();
        assert_eq!(sent.sent_at(), alice_now, "step {i}");
        assert_eq!(
            sent.expires_at(),
            Some(alice_now.saturating_add_secs(120)),
            "step {i}"
        );
        let received = receive(&mut pair, Side::Bob, sent.wire(), bob_now);
        assert_eq!(received.received_at(), bob_now, "step {i}");
        assert_eq!(received.sent_at(), sent_at, "step {i}");
        assert_eq!(received.expires_at(read_at), Some(expires_at), "step {i}");
        assert_eq!(skipped(&pair), i + 1, "step {i}");
    }

    // Each skipped key carries Bob's clock when he stored it (t(1 005), t(2 000), t(3 000),
    // t(1), t(4 000), MAX, EPOCH), so pruning goes by those times, not by the largest time
    // seen so far. A key is pruned once it is more than `limit` older than `now`.
    let limit = 120 + EXPIRED_TIMER_GRACE_SECS;
    assert_eq!(pair.bob.record.prune(t(1 + limit)), 1); // stored at EPOCH
    assert_eq!(pair.bob.record.prune(t(2 + limit)), 1); // stored at t(1)
    assert_eq!(pair.bob.record.prune(t(3_001 + limit)), 3); // t(1 005), t(2 000), t(3 000)
    assert_eq!(skipped(&pair), 2);
    // The key stored at 4 000 still decrypts until it is too old.
    let mut copy = ratchetbox::SessionRecord::from_bytes(&pair.bob.record.to_bytes()).unwrap();
    assert!(
        copy.receive(&mut pair.bob.account, &lost[4], t(5_000))
            .is_ok()
    );
    assert_eq!(pair.bob.record.prune(t(4_000 + limit + 1)), 1);
    assert!(matches!(
        pair.bob
            .record
            .receive(&mut pair.bob.account, &lost[4], t(5_000)),
        Err(DecryptError::Expired { .. })
    ));
    // A key stored while Bob's clock read Timestamp::MAX carries that time: it is the one
    // left, and it still decrypts.
    assert_eq!(pair.bob.record.prune(MAX), 0);
    assert_eq!(skipped(&pair), 1);
    assert!(
        pair.bob
            .record
            .receive(&mut pair.bob.account, &lost[5], t(5_000))
            .is_ok()
    );
}

#[test]
fn a_far_future_reading_does_not_keep_later_skipped_keys_alive() {
    let day = 86_400;
    let max_age = 30 * day;
    let config = SessionConfig::default().with_max_skipped_key_age(max_age);
    for (seed, far_future) in [(20, Timestamp::MAX), (21, t(100 * 365 * day))] {
        let mut pair = Pair::with_config(seed, config);
        pair.exchange(Side::Alice, b"hello");
        pair.exchange(Side::Bob, b"hi");
        let skipped = |pair: &Pair| pair.bob.record.session().unwrap().skipped_key_count();
        // Bob's clock reads far in the future once, while he stores a key (message 0's).
        let lost_then = send(&mut pair, Side::Alice, "lost", t(0));
        let wire = send(&mut pair, Side::Alice, "from the future", t(0));
        receive(&mut pair, Side::Bob, &wire, far_future);
        // Back to normal: message 2 is lost, its key is stored at t(10).
        let lost = send(&mut pair, Side::Alice, "lost", t(10));
        let delivered = send(&mut pair, Side::Alice, "delivered", t(10));
        receive(&mut pair, Side::Bob, &delivered, t(10));
        assert_eq!(skipped(&pair), 2);

        assert_eq!(pair.bob.record.prune(t(10 + max_age)), 0);
        assert_eq!(pair.bob.record.prune(t(10 + max_age + 1)), 1);
        assert_eq!(skipped(&pair), 1);
        let before = pair.bob.snapshot();
        assert!(matches!(
            pair.bob
                .record
                .receive(&mut pair.bob.account, &lost, t(10 + max_age + 1)),
            Err(DecryptError::Expired { counter: 2 })
        ));
        assert_eq!(before, pair.bob.snapshot());
        // The key stored during the far-future reading carries that time: it is not pruned
        // before the clock gets there again.
        assert_eq!(pair.bob.record.prune(t(10 + 2 * max_age)), 0);
        assert!(
            pair.bob
                .record
                .receive(&mut pair.bob.account, &lost_then, t(10 + 2 * max_age))
                .is_ok()
        );
    }
}

#[test]
fn a_clock_that_went_back_does_not_keep_skipped_keys_alive() {
    let max_age = 1_000;
    let config = SessionConfig::default().with_max_skipped_key_age(max_age);
    let mut pair = Pair::with_config(22, config);
    pair.exchange(Side::Alice, b"hello");
    pair.exchange(Side::Bob, b"hi");
    // Key of message 0 stored at t(5 000), then Bob's clock goes back: message 2's key is
    // stored at t(0).
    let lost_late = send(&mut pair, Side::Alice, "lost", t(0));
    let first = send(&mut pair, Side::Alice, "one", t(0));
    let lost_early = send(&mut pair, Side::Alice, "lost", t(0));
    let second = send(&mut pair, Side::Alice, "two", t(0));
    receive(&mut pair, Side::Bob, &first, t(5_000));
    receive(&mut pair, Side::Bob, &second, t(0));
    assert_eq!(pair.bob.record.prune(t(max_age)), 0);
    assert_eq!(pair.bob.record.prune(t(max_age + 1)), 1);
    assert!(matches!(
        pair.bob
            .record
            .receive(&mut pair.bob.account, &lost_early, t(max_age + 1)),
        Err(DecryptError::Expired { counter: 2 })
    ));
    // The key stored at t(5 000) lives until t(5 000) + max_age.
    let mut copy = ratchetbox::SessionRecord::from_bytes(&pair.bob.record.to_bytes()).unwrap();
    assert!(
        copy.receive(&mut pair.bob.account, &lost_late, t(5_000 + max_age))
            .is_ok()
    );
    assert_eq!(pair.bob.record.prune(t(5_000 + max_age)), 0);
    assert_eq!(pair.bob.record.prune(t(5_000 + max_age + 1)), 1);
    // Pruned keys stay pruned across persistence, and so do the stored times of the rest.
    pair.bob.persist_and_restore();
    assert!(matches!(
        pair.bob
            .record
            .receive(&mut pair.bob.account, &lost_late, t(5_000 + max_age + 1)),
        Err(DecryptError::Expired { counter: 0 })
    ));
}

fn set_and_deliver(pair: &mut Pair, seconds: u32) {
    let update = set(pair, Side::Alice, seconds, t(0));
    receive(pair, Side::Bob, &update, t(0));
}

#[test]
fn prune_erases_keys_of_messages_that_never_arrived() {
    let day = 86_400;
    let config = SessionConfig::default().with_max_skipped_key_age(30 * day);
    let mut pair = Pair::with_config(9, config);
    pair.exchange(Side::Alice, b"hello");
    pair.exchange(Side::Bob, b"hi");
    let lost = send(&mut pair, Side::Alice, "lost", t(0));
    let delivered = send(&mut pair, Side::Alice, "delivered", t(0));
    receive(&mut pair, Side::Bob, &delivered, t(0));
    assert_eq!(pair.bob.record.session().unwrap().skipped_key_count(), 1);

    // Timer off: kept until max_skipped_key_age.
    assert_eq!(pair.bob.record.prune(t(29 * day)), 0);
    // Before pruning it still decrypts (checked on a copy).
    let mut copy = ratchetbox::SessionRecord::from_bytes(&pair.bob.record.to_bytes()).unwrap();
    assert!(
        copy.receive(&mut pair.bob.account, &lost, t(29 * day))
            .is_ok()
    );
    assert_eq!(pair.bob.record.prune(t(31 * day)), 1);
    assert!(matches!(
        pair.bob
            .record
            .receive(&mut pair.bob.account, &lost, t(31 * day)),
        Err(DecryptError::Expired { .. })
    ));
}

#[test]
fn prune_with_disappearing_messages_uses_the_timer() {
    let mut pair = Pair::established(10);
    set_and_deliver(&mut pair, 600);
    let _lost = send(&mut pair, Side::Alice, "lost", t(0));
    let delivered = send(&mut pair, Side::Alice, "delivered", t(0));
    receive(&mut pair, Side::Bob, &delivered, t(100));
    let limit = 600 + EXPIRED_TIMER_GRACE_SECS;
    assert_eq!(pair.bob.record.prune(t(100 + limit)), 0);
    assert_eq!(pair.bob.record.prune(t(100 + limit + 1)), 1);
}

#[derive(Clone, Debug)]
enum Op {
    Set(Side, u32),
    Send(Side),
    Deliver(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let side = prop_oneof![Just(Side::Alice), Just(Side::Bob)];
    let timer = prop_oneof![
        Just(0u32),
        Just(5),
        Just(60),
        Just(3600),
        1..=MAX_TIMER_SECS
    ];
    prop_oneof![
        (side.clone(), timer).prop_map(|(s, t)| Op::Set(s, t)),
        side.prop_map(Op::Send),
        any::<usize>().prop_map(Op::Deliver),
    ]
}

/// The longest timer is 365 days, as docs/PROTOCOL.md section 12 says: 31,536,000 s, written
/// out here rather than taken from the constant under test.
#[test]
fn the_longest_timer_is_365_days() {
    assert_eq!(MAX_TIMER_SECS, 31_536_000);
    assert_eq!(
        ExpiryTimer::new(31_536_000, 1).map(|t| t.seconds()),
        Ok(31_536_000)
    );
    assert_eq!(
        ExpiryTimer::new(31_536_001, 1),
        Err(ExpiryError::TimerOutOfRange {
            seconds: 31_536_001,
            max: 31_536_000
        })
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Two honest peers apply the same updates in any interleaving and end with the same
    /// setting.
    #[test]
    fn honest_peers_converge(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..60)) {
        let mut pair = Pair::established(seed);
        let mut in_flight: Vec<(Side, Vec<u8>)> = Vec::new();
        let mut now = 0;
        for op in ops {
            now += 1;
            match op {
                Op::Set(side, seconds) => {
                    let wire = set(&mut pair, side, seconds, t(now));
                    in_flight.push((side.other(), wire));
                }
                Op::Send(side) => {
                    let wire = send(&mut pair, side, "m", t(now));
                    in_flight.push((side.other(), wire));
                }
                Op::Deliver(i) if !in_flight.is_empty() => {
                    let (to, wire) = in_flight.remove(i % in_flight.len());
                    receive(&mut pair, to, &wire, t(now));
                }
                Op::Deliver(_) => {}
            }
        }
        for (to, wire) in in_flight {
            receive(&mut pair, to, &wire, t(now));
        }
        prop_assert_eq!(pair.alice.record.expiry_timer(), pair.bob.record.expiry_timer());
    }
}
