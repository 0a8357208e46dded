//! The key exporter (docs/PROTOCOL.md section 14): both peers of a session derive the same
//! keys whatever their ratchets did, every input changes the key, every misuse is a typed
//! error, and the exporter secret never shows in `Debug` output.

mod common;
#[path = "common/session_state.rs"]
mod session_state;

use common::{Pair, Side, T0, hex, rng};
use ratchetbox::{
    Account, ExportError, MAX_EXPORTED_KEY_LEN, MAX_EXPORTER_CONTEXT_LEN, MAX_EXPORTER_LABEL_LEN,
    SessionRecord,
};

/// The key `record` exports for `label` and `context`, 32 bytes.
fn key(record: &SessionRecord, label: &[u8], context: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    record
        .export_key(label, context, &mut out)
        .expect("a key is exported");
    out
}

/// Both sides of the pair export the same key, and it is `expected` if given.
fn both_export(pair: &Pair, expected: Option<[u8; 32]>) -> [u8; 32] {
    assert_eq!(pair.alice.record.session_id(), pair.bob.record.session_id());
    let alice = key(&pair.alice.record, b"call media key", b"call 7");
    let bob = key(&pair.bob.record, b"call media key", b"call 7");
    assert_eq!(alice, bob, "the peers derive different keys");
    if let Some(expected) = expected {
        assert_eq!(alice, expected, "the key changed within the session");
    }
    alice
}

/// The exporter secret in a record's state (`SessionState.exporter_secret`, read with the
/// tests' own mirror of the schema).
fn exporter_secret(record: &SessionRecord) -> Vec<u8> {
    let state = session_state::decode_record(&record.to_bytes());
    state.current.expect("a current session").exporter_secret
}

#[test]
fn both_peers_derive_the_same_key_whatever_their_ratchets_did() {
    let mut pair = Pair::new(1);
    // Alice can export before her first message; Bob once he has her setup.
    let before = key(&pair.alice.record, b"call media key", b"call 7");
    pair.exchange(Side::Alice, b"hello");
    let first = both_export(&pair, Some(before));

    let mut r = rng(2);
    let mut in_flight: Vec<(Side, Vec<u8>)> = Vec::new();
    for step in 0..300u32 {
        match rand_core::Rng::next_u32(&mut r) % 4 {
            0 | 1 => {
                let from = if step % 3 == 0 {
                    Side::Bob
                } else {
                    Side::Alice
                };
                in_flight.push((from.other(), pair.send(from, &step.to_be_bytes())));
            }
            // Out of order: any message in flight.
            _ if !in_flight.is_empty() => {
                let at = rand_core::Rng::next_u32(&mut r) as usize % in_flight.len();
                let (to, wire) = in_flight.remove(at);
                pair.receive(to, &wire).expect("decrypts");
            }
            _ => {}
        }
        if step % 50 == 0 {
            pair.bob.persist_and_restore();
        }
        // Whatever is in flight and whichever chains the two sides are on.
        both_export(&pair, Some(first));
    }
    let session = pair.alice.record.session().expect("a session");
    let mut out = [0u8; 32];
    session
        .export_key(b"call media key", b"call 7", &mut out)
        .unwrap();
    assert_eq!(out, first, "the record exports its current session's key");
    // The secret is stored with each side's session, the same on both, 32 bytes.
    assert_eq!(exporter_secret(&pair.alice.record).len(), 32);
    assert_eq!(
        exporter_secret(&pair.alice.record),
        exporter_secret(&pair.bob.record)
    );
}

#[test]
fn label_context_length_and_session_each_change_the_key() {
    let mut pair = Pair::established(3);
    let base = key(&pair.alice.record, b"label", b"context");
    assert_ne!(base, key(&pair.alice.record, b"label2", b"context"));
    assert_ne!(base, key(&pair.alice.record, b"label", b"context2"));
    assert_ne!(base, key(&pair.alice.record, b"label", b""));
    // Moving bytes between label and context changes the key (length-prefixed).
    assert_ne!(base, key(&pair.alice.record, b"labelc", b"ontext"));
    // A shorter output is not a prefix of a longer one.
    let mut short = [0u8; 16];
    pair.alice
        .record
        .export_key(b"label", b"context", &mut short)
        .unwrap();
    assert_ne!(short, base[..16]);
    // Another session between the same two accounts.
    let bundle = pair.bundle(Some(2));
    pair.alice
        .record
        .initiate(&mut pair.rng, &pair.alice.account, &bundle)
        .unwrap();
    pair.exchange(Side::Alice, b"new session");
    let again = key(&pair.alice.record, b"label", b"context");
    assert_ne!(base, again);
    assert_eq!(again, key(&pair.bob.record, b"label", b"context"));
    // The previous session still exports its own key.
    let previous = pair.alice.record.previous_sessions().next().unwrap();
    let mut old = [0u8; 32];
    previous.export_key(b"label", b"context", &mut old).unwrap();
    assert_eq!(old, base);
}

#[test]
fn every_misuse_is_a_typed_error_and_writes_nothing() {
    let pair = Pair::established(4);
    let record = &pair.alice.record;
    let mut out = [0xEEu8; 32];
    let long_label = vec![b'l'; MAX_EXPORTER_LABEL_LEN + 1];
    let long_context = vec![b'c'; MAX_EXPORTER_CONTEXT_LEN + 1];
    assert_eq!(
        record.export_key(b"", b"context", &mut out),
        Err(ExportError::EmptyLabel)
    );
    assert_eq!(
        record.export_key(&long_label, b"", &mut out),
        Err(ExportError::LabelTooLong { len: 256, max: 255 })
    );
    assert_eq!(
        record.export_key(b"label", &long_context, &mut out),
        Err(ExportError::ContextTooLong {
            len: 65_536,
            max: 65_535
        })
    );
    assert_eq!(out, [0xEE; 32], "a refused export wrote to the output");
    assert_eq!(
        record.export_key(b"label", b"", &mut []),
        Err(ExportError::InvalidOutputLength { len: 0, max: 8_160 })
    );
    let mut too_long = vec![0xEEu8; MAX_EXPORTED_KEY_LEN + 1];
    assert_eq!(
        record.export_key(b"label", b"", &mut too_long),
        Err(ExportError::InvalidOutputLength {
            len: 8_161,
            max: 8_160
        })
    );
    assert!(too_long.iter().all(|&b| b == 0xEE));
    assert_eq!(
        SessionRecord::new().export_key(b"label", b"", &mut out),
        Err(ExportError::NoSession)
    );
    // The limits themselves are accepted.
    let mut longest = vec![0u8; MAX_EXPORTED_KEY_LEN];
    record
        .export_key(
            &long_label[..MAX_EXPORTER_LABEL_LEN],
            &long_context[..MAX_EXPORTER_CONTEXT_LEN],
            &mut longest,
        )
        .unwrap();
    let mut one = [0u8; 1];
    record.export_key(b"l", b"", &mut one).unwrap();
    // The messages say what to do.
    assert_eq!(
        ExportError::LabelTooLong { len: 256, max: 255 }.to_string(),
        "the exporter label is 256 bytes long; at most 255 bytes are allowed"
    );
}

#[test]
fn the_exporter_secret_appears_in_no_debug_output() {
    let mut pair = Pair::established(5);
    let _in_flight = pair.send(Side::Alice, b"keeps a skipped key");
    pair.exchange(Side::Alice, b"after it");
    for record in [&pair.alice.record, &pair.bob.record] {
        let secret = exporter_secret(record);
        let session = record.session().unwrap();
        let outputs = [
            format!("{record:?}"),
            format!("{record:#?}"),
            format!("{session:?}"),
            format!("{session:#?}"),
            format!(
                "{:?}",
                SessionRecord::from_bytes(&record.to_bytes()).unwrap()
            ),
        ];
        for debug in &outputs {
            assert_no_secret(debug, &secret);
        }
    }
    // Neither does an account's (it holds none), nor an error's.
    let account = Account::new(&mut rng(6), T0);
    let secret = exporter_secret(&pair.alice.record);
    assert_no_secret(&format!("{account:?}"), &secret);
    let mut out = [0u8; 0];
    let error = pair
        .alice
        .record
        .export_key(b"x", b"", &mut out)
        .unwrap_err();
    assert_no_secret(&format!("{error:?} {error}"), &secret);
}

/// Fails if `debug` shows any 8 consecutive bytes of `secret`, in hex or as a list of
/// numbers (how `Debug` prints a byte array, one per line or not).
fn assert_no_secret(debug: &str, secret: &[u8]) {
    let compact: String = debug
        .to_lowercase()
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    for window in secret.windows(8) {
        let list = window
            .iter()
            .map(u8::to_string)
            .collect::<Vec<_>>()
            .join(",");
        assert!(
            !compact.contains(&hex(window)) && !compact.contains(&list),
            "Debug output shows exporter secret bytes: {debug}"
        );
    }
}
