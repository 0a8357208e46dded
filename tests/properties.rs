//! Properties. Any delivery schedule within the bounds delivers every message exactly once,
//! to exactly what was sent; duplicates and tampered messages are rejected with the
//! receiver's state unchanged; persisting and restoring at any point changes nothing. And at
//! small bounds, with messages lost forever, every delivery has exactly the outcome that a
//! model of the receiving rules predicts, including too-far-ahead and expired.

mod common;

use std::cell::RefCell;
use std::collections::{HashSet, VecDeque};

use common::{Pair, Side, pb};
use proptest::prelude::*;
use proptest::test_runner::{TestCaseError, TestRunner};
use ratchetbox::{DecryptError, SessionConfig};

#[derive(Clone, Debug)]
enum Op {
    /// A side encrypts a message of this length.
    Send(Side, u8),
    /// Deliver the in-flight message at this index (modulo) to its receiver.
    Deliver(usize),
    /// Deliver again a message that was already delivered.
    Duplicate(usize),
    /// Deliver an in-flight message with one bit flipped (the original stays in flight).
    Tamper(usize, usize, u8),
    /// Persist a side and restore it.
    Persist(Side),
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Alice), Just(Side::Bob)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (side(), any::<u8>()).prop_map(|(s, n)| Op::Send(s, n)),
        4 => any::<usize>().prop_map(Op::Deliver),
        1 => any::<usize>().prop_map(Op::Duplicate),
        1 => (any::<usize>(), any::<usize>(), 0..8u8).prop_map(|(m, b, bit)| Op::Tamper(m, b, bit)),
        1 => side().prop_map(Op::Persist),
    ]
}

struct Sent {
    to: Side,
    wire: Vec<u8>,
    plaintext: Vec<u8>,
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_schedule_delivers_each_message_exactly_once(seed in any::<u64>(), ops in proptest::collection::vec(op(), 1..120)) {
        let mut pair = Pair::new(seed);
        let mut in_flight: Vec<Sent> = Vec::new();
        let mut delivered: Vec<Sent> = Vec::new();
        let mut counter = 0u32;
        for op in ops {
            match op {
                Op::Send(from, len) => {
                    // Bob has no session before Alice's first message arrived.
                    if from == Side::Bob && pair.bob.record.session().is_none() {
                        continue;
                    }
                    counter += 1;
                    let mut plaintext = counter.to_be_bytes().to_vec();
                    plaintext.resize(4 + len as usize, len);
                    let wire = pair.send(from, &plaintext);
                    in_flight.push(Sent { to: from.other(), wire, plaintext });
                }
                Op::Deliver(i) if !in_flight.is_empty() => {
                    let sent = in_flight.remove(i % in_flight.len());
                    let got = pair.receive(sent.to, &sent.wire);
                    prop_assert_eq!(got.as_ref(), Ok(&sent.plaintext));
                    delivered.push(sent);
                }
                Op::Duplicate(i) if !delivered.is_empty() => {
                    let sent = &delivered[i % delivered.len()];
                    let error = pair.peer(sent.to).reject(&sent.wire);
                    prop_assert!(matches!(error, DecryptError::Duplicate { .. }), "{:?}", error);
                }
                Op::Tamper(i, byte, bit) if !in_flight.is_empty() => {
                    let sent = &in_flight[i % in_flight.len()];
                    let mut bad = sent.wire.clone();
                    let at = byte % bad.len();
                    bad[at] ^= 1 << bit;
                    let to = sent.to;
                    // `reject` asserts the receiver's state is unchanged.
                    pair.peer(to).reject(&bad);
                }
                Op::Persist(side) => pair.peer(side).persist_and_restore(),
                _ => {}
            }
        }
        // Whatever is still in flight arrives now, in order of sending.
        for sent in in_flight {
            let got = pair.receive(sent.to, &sent.wire);
            prop_assert_eq!(got.as_ref(), Ok(&sent.plaintext));
        }
    }
}

/// The bounds of the small-bounds property: small enough that ordinary schedules cross them.
const MAX_SKIP: u32 = 8;
const MAX_SKIPPED_KEYS: usize = 16;
/// Finished receiving chains a session remembers (PROTOCOL.md section 6.4, step 3).
const REMEMBERED_CHAINS: usize = 32;

#[derive(Clone, Debug)]
enum BoundedOp {
    /// A side encrypts this many messages in a row.
    Send(Side, u8),
    /// Deliver the pending message at this index (modulo). If it is refused it stays
    /// pending, to be tried again later.
    Deliver(usize),
    /// Lose the pending message at this index (modulo) forever.
    Drop(usize),
    /// Deliver again a message that was already decrypted.
    Duplicate(usize),
    /// Persist a side and restore it.
    Persist(Side),
}

fn bounded_op() -> impl Strategy<Value = BoundedOp> {
    prop_oneof![
        3 => (side(), 1..=12u8).prop_map(|(s, count)| BoundedOp::Send(s, count)),
        4 => any::<usize>().prop_map(BoundedOp::Deliver),
        2 => any::<usize>().prop_map(BoundedOp::Drop),
        1 => any::<usize>().prop_map(BoundedOp::Duplicate),
        1 => side().prop_map(BoundedOp::Persist),
    ]
}

/// A finished or current receiving chain as the model remembers it.
#[derive(Clone, Debug)]
struct ChainModel {
    ratchet_key: Vec<u8>,
    /// Messages of the chain derived (received or skipped); set when the chain is finished.
    length: u32,
    /// Skipped keys of the chain below this counter were evicted.
    evicted_below: u32,
}

/// What the receiving side of one session should do, written from PROTOCOL.md section 6.4
/// (receiving), 6.5 (errors) and 6.6 (the store), in terms of message headers only.
#[derive(Clone, Debug)]
struct ReceiverModel {
    /// Whether the receiver holds a ratchet key pair (it sent since its last DH step, or it
    /// is the responder before the first message).
    has_key_pair: bool,
    /// The current receiving chain and the next counter expected on it.
    current: Option<(ChainModel, u32)>,
    /// Finished chains, oldest first, at most `REMEMBERED_CHAINS`.
    history: VecDeque<ChainModel>,
    /// Skipped keys (ratchet key, counter), oldest first.
    store: VecDeque<(Vec<u8>, u32)>,
    /// Every ratchet key that was ever a receiving chain here.
    seen: HashSet<Vec<u8>>,
}

impl ReceiverModel {
    fn new(has_key_pair: bool) -> Self {
        Self {
            has_key_pair,
            current: None,
            history: VecDeque::new(),
            store: VecDeque::new(),
            seen: HashSet::new(),
        }
    }

    /// The outcome of receiving a message with this header; the model changes only on `Ok`.
    fn receive(&mut self, key: &[u8], n: u32, pn: u32) -> Result<(), DecryptError> {
        let mut next = self.clone();
        let outcome = next.apply(key, n, pn);
        if outcome.is_ok() {
            *self = next;
        }
        outcome
    }

    fn apply(&mut self, key: &[u8], n: u32, pn: u32) -> Result<(), DecryptError> {
        let too_far = |counter: u32, skip: u32| DecryptError::TooFarAhead {
            counter,
            skip: u64::from(skip),
            max_skip: MAX_SKIP,
        };
        // 1. The current chain.
        if let Some((chain, next)) = &mut self.current
            && chain.ratchet_key == key
        {
            if n >= *next {
                let skip = n - *next;
                if skip > MAX_SKIP {
                    return Err(too_far(n, skip));
                }
                let skipped = (*next..n).map(|c| (key.to_vec(), c)).collect();
                *next = n + 1;
                self.insert(skipped);
                return Ok(());
            }
            return self.use_stored(key, n);
        }
        // 2. A stored key.
        if self.stored(key, n).is_some() {
            return self.use_stored(key, n);
        }
        // 3. A remembered finished chain.
        if let Some(chain) = self.history.iter().rev().find(|c| c.ratchet_key == key) {
            if n < chain.length {
                return Err(self.missing(key, n));
            }
            return Err(DecryptError::AuthenticationFailed);
        }
        // 4. A new chain (or one forgotten, which fails like an unknown one).
        if !self.has_key_pair {
            return Err(DecryptError::AuthenticationFailed);
        }
        let mut skipped = Vec::new();
        let mut finished_length = 0;
        if let Some((chain, next)) = &self.current {
            let skip = pn.saturating_sub(*next);
            if skip > MAX_SKIP {
                return Err(too_far(pn, skip));
            }
            skipped.extend((*next..pn).map(|c| (chain.ratchet_key.clone(), c)));
            finished_length = (*next).max(pn);
        }
        if n > MAX_SKIP {
            return Err(too_far(n, n));
        }
        if self.seen.contains(key) {
            return Err(DecryptError::AuthenticationFailed);
        }
        skipped.extend((0..n).map(|c| (key.to_vec(), c)));
        if let Some((mut finished, _)) = self.current.take() {
            finished.length = finished_length;
            if self.history.len() == REMEMBERED_CHAINS {
                self.history.pop_front();
            }
            self.history.push_back(finished);
        }
        let chain = ChainModel {
            ratchet_key: key.to_vec(),
            length: 0,
            evicted_below: 0,
        };
        self.current = Some((chain, n + 1));
        self.seen.insert(key.to_vec());
        self.insert(skipped);
        self.has_key_pair = false;
        Ok(())
    }

    fn stored(&self, key: &[u8], n: u32) -> Option<usize> {
        self.store.iter().position(|(k, c)| k == key && *c == n)
    }

    fn use_stored(&mut self, key: &[u8], n: u32) -> Result<(), DecryptError> {
        match self.stored(key, n) {
            Some(at) => {
                self.store.remove(at);
                Ok(())
            }
            None => Err(self.missing(key, n)),
        }
    }

    fn chain_mut(&mut self, key: &[u8]) -> Option<&mut ChainModel> {
        match &mut self.current {
            Some((chain, _)) if chain.ratchet_key == key => Some(chain),
            _ => self.history.iter_mut().rev().find(|c| c.ratchet_key == key),
        }
    }

    /// Why a remembered chain's key is missing: evicted (below the chain's eviction mark) or
    /// used.
    fn missing(&self, key: &[u8], n: u32) -> DecryptError {
        let evicted_below = match &self.current {
            Some((chain, _)) if chain.ratchet_key == key => chain.evicted_below,
            _ => self
                .history
                .iter()
                .rev()
                .find(|c| c.ratchet_key == key)
                .map_or(0, |c| c.evicted_below),
        };
        if n < evicted_below {
            DecryptError::Expired { counter: n }
        } else {
            DecryptError::Duplicate { counter: n }
        }
    }

    /// Stores skipped keys, then evicts the oldest beyond the bound.
    fn insert(&mut self, keys: Vec<(Vec<u8>, u32)>) {
        self.store.extend(keys);
        while self.store.len() > MAX_SKIPPED_KEYS {
            let (key, counter) = self.store.pop_front().expect("non-empty");
            if let Some(chain) = self.chain_mut(&key) {
                chain.evicted_below = chain.evicted_below.max(counter + 1);
            }
        }
    }
}

/// How often each outcome occurred, to show the property reaches the bounds.
#[derive(Default, Debug)]
struct Outcomes {
    decrypted: usize,
    too_far_ahead: usize,
    expired: usize,
    duplicate: usize,
    authentication_failed: usize,
}

/// The header fields the model needs: (ratchet key, counter, previous counter).
fn header(wire: &[u8]) -> (Vec<u8>, u32, u32) {
    let mut message: pb::Message = pb::decode(wire);
    let r = message.ratchet_mut();
    (r.ratchet_key.clone(), r.counter, r.previous_counter)
}

/// Delivers `sent`, checks the outcome against the model (and, for a refusal, that the
/// receiver's state did not change), and returns whether it decrypted.
fn deliver_checked(
    pair: &mut Pair,
    models: &mut [ReceiverModel; 2],
    sent: &Sent,
    outcomes: &RefCell<Outcomes>,
) -> Result<bool, TestCaseError> {
    let (key, n, pn) = header(&sent.wire);
    let model = &mut models[sent.to as usize];
    let expected = model.receive(&key, n, pn);
    let mut outcomes = outcomes.borrow_mut();
    match expected {
        Ok(()) => {
            let got = pair.receive(sent.to, &sent.wire);
            prop_assert_eq!(got.as_ref(), Ok(&sent.plaintext), "message {} {}", n, pn);
            outcomes.decrypted += 1;
            Ok(true)
        }
        Err(expected) => {
            let error = pair.peer(sent.to).reject(&sent.wire);
            prop_assert_eq!(&error, &expected, "message {} {}", n, pn);
            match error {
                DecryptError::TooFarAhead { .. } => outcomes.too_far_ahead += 1,
                DecryptError::Expired { .. } => outcomes.expired += 1,
                DecryptError::Duplicate { .. } => outcomes.duplicate += 1,
                _ => outcomes.authentication_failed += 1,
            }
            Ok(false)
        }
    }
}

fn run_bounded_schedule(
    seed: u64,
    ops: Vec<BoundedOp>,
    outcomes: &RefCell<Outcomes>,
) -> Result<(), TestCaseError> {
    let config = SessionConfig::default()
        .with_max_skip(MAX_SKIP)
        .with_max_skipped_keys(MAX_SKIPPED_KEYS as u32);
    let mut pair = Pair::with_config(seed, config);
    // Alice starts idle (her first send creates her first chain); Bob answers the initial
    // message with his signed prekey's key pair.
    let mut models = [ReceiverModel::new(false), ReceiverModel::new(true)];
    let mut pending: Vec<Sent> = Vec::new();
    let mut decrypted: Vec<Sent> = Vec::new();
    let mut counter = 0u32;
    for op in ops {
        match op {
            BoundedOp::Send(from, count) => {
                if from == Side::Bob && pair.bob.record.session().is_none() {
                    continue;
                }
                for _ in 0..count {
                    counter += 1;
                    let plaintext = counter.to_be_bytes().to_vec();
                    let wire = pair.send(from, &plaintext);
                    pending.push(Sent {
                        to: from.other(),
                        wire,
                        plaintext,
                    });
                }
                models[from as usize].has_key_pair = true;
            }
            BoundedOp::Deliver(i) if !pending.is_empty() => {
                let at = i % pending.len();
                if deliver_checked(&mut pair, &mut models, &pending[at], outcomes)? {
                    decrypted.push(pending.remove(at));
                }
            }
            BoundedOp::Drop(i) if !pending.is_empty() => {
                pending.remove(i % pending.len());
            }
            BoundedOp::Duplicate(i) if !decrypted.is_empty() => {
                let sent = &decrypted[i % decrypted.len()];
                let again = deliver_checked(&mut pair, &mut models, sent, outcomes)?;
                prop_assert!(!again, "a message decrypted twice");
            }
            BoundedOp::Persist(side) => pair.peer(side).persist_and_restore(),
            _ => {}
        }
    }
    // Whatever is still pending arrives now, in order of sending.
    for sent in pending {
        deliver_checked(&mut pair, &mut models, &sent, outcomes)?;
    }
    Ok(())
}

/// With MAX_SKIP 8 and 16 stored keys, random schedules of sends, deliveries, losses,
/// duplicates and persistence cross the bounds. Every delivery has exactly the outcome a
/// model of the protocol's receiving rules predicts: the plaintext, or `TooFarAhead` /
/// `Expired` / `Duplicate` / `AuthenticationFailed` with the predicted fields and the
/// receiver's state unchanged. No message ever decrypts twice.
#[test]
fn at_small_bounds_every_delivery_has_the_outcome_the_model_predicts() {
    let outcomes = RefCell::new(Outcomes::default());
    // Like the proptest! macro: failures persist in tests/properties.proptest-regressions
    // (the default FileFailurePersistence needs the source file to find it) and are rerun
    // first on every later run.
    let mut runner = TestRunner::new(ProptestConfig {
        cases: 64,
        source_file: Some(file!()),
        ..ProptestConfig::default()
    });
    let strategy = (
        any::<u64>(),
        proptest::collection::vec(bounded_op(), 1..160),
    );
    if let Err(error) = runner.run(&strategy, |(seed, ops)| {
        run_bounded_schedule(seed, ops, &outcomes)
    }) {
        panic!("{error}");
    }
    // The bounds were reached, not just stayed within.
    let outcomes = outcomes.into_inner();
    println!("{outcomes:?}");
    assert!(outcomes.decrypted > 0, "{outcomes:?}");
    assert!(outcomes.too_far_ahead > 0, "{outcomes:?}");
    assert!(outcomes.expired > 0, "{outcomes:?}");
    assert!(outcomes.duplicate > 0, "{outcomes:?}");
}
