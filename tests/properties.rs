//! Property: any delivery schedule within the bounds delivers every message exactly once, to
//! exactly what was sent; duplicates and tampered messages are rejected with the receiver's
//! state unchanged; persisting and restoring at any point changes nothing.

mod common;

use common::{Pair, Side};
use proptest::prelude::*;
use ratchetbox::DecryptError;

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
