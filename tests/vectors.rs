//! The test vectors of docs/PROTOCOL.md, section 9.
//!
//! `tests/data/vectors.json` was produced by `tests/data/vectors.py`, an independent Python
//! implementation of docs/PROTOCOL.md (using the `cryptography` package), written without
//! reference to this crate's code. This test feeds the same "random" inputs to ratchetbox,
//! in the order the specification says they are drawn, and requires every byte of every
//! output to match: a change to any KDF input, label, key encoding or wire layout fails it.

use std::collections::VecDeque;
use std::convert::Infallible;

use rand_core::{TryCryptoRng, TryRng};
use ratchetbox::{
    Account, DecodeError, OneTimePreKeyId, PreKeyBundle, SessionConfig, SessionRecord, StorageKey,
    Timestamp,
};
use serde_json::Value;

/// An RNG that hands out exactly the scripted byte strings, in order, and fails the test if
/// the protocol asks for anything else.
struct Script {
    name: &'static str,
    draws: VecDeque<(String, Vec<u8>)>,
}

impl Script {
    fn new(name: &'static str, vectors: &Value, names: &[impl AsRef<str>]) -> Self {
        let draws = names
            .iter()
            .map(|n| {
                (
                    n.as_ref().to_string(),
                    unhex(&vectors["inputs"][n.as_ref()]),
                )
            })
            .collect();
        Self { name, draws }
    }

    fn finish(&self) {
        assert!(
            self.draws.is_empty(),
            "{}: draws left over: {:?}",
            self.name,
            self.draws
        );
    }
}

impl TryRng for Script {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        panic!("{}: unexpected next_u32", self.name)
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        panic!("{}: unexpected next_u64", self.name)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        let (name, bytes) = self
            .draws
            .pop_front()
            .unwrap_or_else(|| panic!("{}: more random draws than scripted", self.name));
        assert_eq!(
            bytes.len(),
            dst.len(),
            "{}: draw {name} has the wrong size",
            self.name
        );
        dst.copy_from_slice(&bytes);
        Ok(())
    }
}

impl TryCryptoRng for Script {}

fn unhex(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("hex string")).expect("valid hex")
}

fn vectors() -> Value {
    serde_json::from_str(include_str!("data/vectors.json")).expect("vectors.json parses")
}

/// The draw order of a party, as listed in the vectors (checked against the spec's table by
/// the script that produced them).
fn draws(v: &Value, party: &str) -> Vec<String> {
    v["draw_order"][party]
        .as_array()
        .expect("draw order")
        .iter()
        .map(|n| n.as_str().expect("name").to_string())
        .collect()
}

fn run_session(
    v: &Value,
    name: &str,
    alice: &mut Account,
    bob: &mut Account,
    rngs: (&mut Script, &mut Script),
    config: SessionConfig,
) {
    let (alice_rng, bob_rng) = rngs;
    let now = Timestamp::from_unix_secs(v["time"].as_u64().expect("time"));
    let session = &v[name];
    let bundle = PreKeyBundle::from_bytes(&unhex(
        &v[match name {
            "session_1" => "bundle",
            "session_2" => "bundle_last_resort",
            _ => "bundle_classical",
        }],
    ))
    .expect("bundle decodes");
    let mut alice_record = SessionRecord::with_config(config);
    let mut bob_record = SessionRecord::with_config(config);
    alice_record
        .initiate(alice_rng, alice, &bundle)
        .expect("initiate");
    assert_eq!(
        alice_record.session().expect("session").is_post_quantum(),
        session["mode"].as_str() != Some("X3DH"),
        "{name} mode"
    );
    for (i, m) in session["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .enumerate()
    {
        let plaintext = unhex(&m["plaintext"]);
        // Section 11: raw bytes are encrypted after the kind byte 0x00.
        assert_eq!(
            unhex(&m["ratchet_plaintext"]),
            [&[0u8][..], &plaintext].concat()
        );
        let expected = m["wire"].as_str().expect("wire");
        if m["from"].as_str() == Some("alice") {
            let wire = alice_record
                .encrypt(alice_rng, &plaintext)
                .expect("encrypt");
            assert_eq!(hex::encode(&wire), expected, "{name} message {i}");
            assert_eq!(
                bob_record.decrypt(bob, &wire, now).expect("decrypt"),
                plaintext
            );
        } else {
            let wire = bob_record.encrypt(bob_rng, &plaintext).expect("encrypt");
            assert_eq!(hex::encode(&wire), expected, "{name} message {i}");
            assert_eq!(
                alice_record.decrypt(alice, &wire, now).expect("decrypt"),
                plaintext
            );
        }
        if name == "session_1" {
            check_records(v, i, &alice_record, &bob_record);
        }
    }
    check_exported_keys(v, name, &alice_record, &bob_record);
}

/// Section 14: both sides of the session export the keys of the vectors.
fn check_exported_keys(v: &Value, name: &str, alice: &SessionRecord, bob: &SessionRecord) {
    let cases = v["exporter"][name]["keys"]
        .as_array()
        .expect("exporter keys");
    assert_eq!(cases.len(), 4);
    for case in cases {
        let label = unhex(&case["label"]);
        let context = unhex(&case["context"]);
        let length = case["length"].as_u64().expect("length") as usize;
        let expected = unhex(&case["key"]);
        assert_eq!(expected.len(), length);
        for (who, record) in [("alice", alice), ("bob", bob)] {
            let mut out = vec![0u8; length];
            record
                .export_key(&label, &context, &mut out)
                .expect("a key is exported");
            assert_eq!(
                hex::encode(&out),
                hex::encode(&expected),
                "{name}: {who}'s key for label {label:02x?}"
            );
        }
    }
}

/// Compares both session records with the plain forms of `session_1_records` (section 8.1)
/// for the points taken once message `index` was decrypted.
fn check_records(v: &Value, index: usize, alice: &SessionRecord, bob: &SessionRecord) {
    for point in v["session_1_records"]["points"]
        .as_array()
        .expect("points")
        .iter()
        .filter(|p| p["after_message"].as_u64() == Some(index as u64))
    {
        let name = point["point"].as_str().expect("point name");
        for (who, record) in [("alice", alice), ("bob", bob)] {
            let plain = record.to_bytes();
            assert_eq!(
                hex::encode(&*plain),
                point[who].as_str().expect("record"),
                "session 1 record of {who}, {name}"
            );
            let restored = SessionRecord::from_bytes(&plain).expect("record decodes");
            assert_eq!(restored.to_bytes(), plain, "{who}, {name}: round trip");
        }
    }
}

#[test]
fn protocol_test_vectors() {
    let v = vectors();
    let now = Timestamp::from_unix_secs(v["time"].as_u64().expect("time"));
    let mut alice_rng = Script::new("alice", &v, &draws(&v, "alice"));
    let mut bob_rng = Script::new("bob", &v, &draws(&v, "bob"));

    let mut alice = Account::new(&mut alice_rng, now);
    let mut bob = Account::new(&mut bob_rng, now);
    bob.generate_one_time_prekeys(&mut bob_rng, 1, now)
        .expect("prekey");
    let kem = bob
        .generate_one_time_kem_prekeys(&mut bob_rng, 1, now)
        .expect("kem prekey");

    // Bundles.
    let bundle = bob
        .prekey_bundle(Some(OneTimePreKeyId(1)), Some(kem[0].id()))
        .expect("bundle");
    assert_eq!(
        hex::encode(bundle.to_bytes()),
        v["bundle"].as_str().unwrap(),
        "bundle"
    );
    let last_resort = bob.prekey_bundle(None, None).expect("bundle");
    assert_eq!(
        hex::encode(last_resort.to_bytes()),
        v["bundle_last_resort"].as_str().unwrap(),
        "bundle with the last-resort KEM prekey"
    );
    let classical = bob.classical_prekey_bundle(None).expect("bundle");
    assert_eq!(
        hex::encode(classical.to_bytes()),
        v["bundle_classical"].as_str().unwrap(),
        "classical bundle"
    );
    assert_eq!(
        hex::encode(alice.identity_key().as_bytes()),
        v["public"]["alice_identity_key"].as_str().unwrap()
    );

    // Persisted state, plain and sealed.
    assert_eq!(
        hex::encode(&*bob.to_bytes()),
        v["account_plain"].as_str().unwrap(),
        "account"
    );
    let storage_key = StorageKey::from_bytes(unhex(&v["inputs"]["sk_store"]).try_into().unwrap());
    let mut seal_rng = Script::new("seal", &v, &["seal_salt"]);
    let sealed = bob.seal(&storage_key, &mut seal_rng);
    seal_rng.finish();
    assert_eq!(
        hex::encode(&sealed),
        v["account_sealed"].as_str().unwrap(),
        "sealed account"
    );
    let reopened = Account::unseal(&sealed, &storage_key).expect("unseals");
    assert_eq!(reopened.to_bytes(), bob.to_bytes());

    // Bob's account before any session, for the out-of-order delivery below.
    let bob_before_sessions = Account::from_bytes(&bob.to_bytes()).expect("account decodes");

    // Session 1: PQXDH with a one-time prekey and a one-time KEM prekey; session 2: PQXDH
    // with the last-resort KEM prekey; session 3: classical X3DH, allowed explicitly.
    let pq = SessionConfig::default();
    let classical = SessionConfig::default().with_classical_setup_allowed(true);
    for (name, config) in [
        ("session_1", pq),
        ("session_2", pq),
        ("session_3", classical),
    ] {
        run_session(
            &v,
            name,
            &mut alice,
            &mut bob,
            (&mut alice_rng, &mut bob_rng),
            config,
        );
    }
    alice_rng.finish();
    bob_rng.finish();

    // Every point of session_1_records was reached.
    let points = v["session_1_records"]["points"].as_array().expect("points");
    let messages = v["session_1"]["messages"].as_array().expect("messages");
    assert_eq!(points.len(), 3);
    assert!(
        points
            .iter()
            .all(|p| (p["after_message"].as_u64().expect("index") as usize) < messages.len())
    );

    // Bob's record after Alice's second initial message arrived first: it holds the skipped
    // key of her first message, stored at `time`.
    let mut bob = Account::from_bytes(&bob_before_sessions.to_bytes()).expect("account");
    let mut record = SessionRecord::with_config(pq);
    let out_of_order = &v["session_1_records"]["bob_out_of_order"];
    assert_eq!(out_of_order["delivered"], serde_json::json!([1]));
    let second = &messages[1];
    assert_eq!(
        record
            .decrypt(&mut bob, &unhex(&second["wire"]), now)
            .expect("decrypt"),
        unhex(&second["plaintext"])
    );
    assert_eq!(
        hex::encode(&*record.to_bytes()),
        out_of_order["bob"].as_str().expect("record"),
        "Bob's record after an out-of-order delivery"
    );
    let first = &messages[0];
    assert_eq!(
        record
            .decrypt(&mut bob, &unhex(&first["wire"]), now)
            .expect("decrypt with the skipped key"),
        unhex(&first["plaintext"])
    );

    // Bob's record after Alice's first message, his reply, and her message after the turn
    // (decrypted later): her second initial message is stored as skipped, from a finished
    // chain.
    let late = &v["session_1_records"]["bob_late_message"];
    let late_time = Timestamp::from_unix_secs(late["late_time"].as_u64().expect("late time"));
    let reply_draws: Vec<String> = late["reply_draws"]
        .as_array()
        .expect("reply draws")
        .iter()
        .map(|n| n.as_str().expect("name").to_string())
        .collect();
    let mut bob = bob_before_sessions;
    let mut record = SessionRecord::with_config(pq);
    record
        .decrypt(&mut bob, &unhex(&messages[0]["wire"]), now)
        .expect("decrypt message 0");
    let mut reply_rng = Script::new("bob reply", &v, &reply_draws);
    let reply = record
        .encrypt(&mut reply_rng, &unhex(&messages[2]["plaintext"]))
        .expect("encrypt the reply");
    reply_rng.finish();
    assert_eq!(
        hex::encode(&reply),
        messages[2]["wire"].as_str().expect("wire"),
        "the reply"
    );
    assert_eq!(
        record
            .decrypt(&mut bob, &unhex(&messages[3]["wire"]), late_time)
            .expect("decrypt message 3"),
        unhex(&messages[3]["plaintext"])
    );
    assert_eq!(
        hex::encode(&*record.to_bytes()),
        late["bob"].as_str().expect("record"),
        "Bob's record with a skipped key of a finished chain"
    );
    assert_eq!(
        record
            .decrypt(&mut bob, &unhex(&messages[1]["wire"]), late_time)
            .expect("decrypt the late message"),
        unhex(&messages[1]["plaintext"])
    );
}

/// Section 3.1: the other encodings of keys that the independent implementation refuses
/// while decoding (bit 255 set, u + p, y + p), refused here with the same error, object and
/// field.
#[test]
fn non_canonical_key_encodings_are_refused_as_the_vectors_say() {
    let v = vectors();
    let cases = v["non_canonical"].as_array().expect("non_canonical");
    assert_eq!(cases.len(), 9);
    for case in cases {
        let name = case["name"].as_str().expect("name");
        let wire = unhex(&case["wire"]);
        let object = case["object"].as_str().expect("object");
        let field = case["field"].as_str().expect("field");
        let error = match case["type"].as_str() {
            Some("message") => ratchetbox::Message::from_bytes(&wire).map(drop),
            Some("bundle") => PreKeyBundle::from_bytes(&wire).map(drop),
            other => panic!("{name}: unknown type {other:?}"),
        }
        .expect_err(name);
        let (found_object, found_field) = match (case["error"].as_str(), error) {
            (Some("NonCanonicalKey"), DecodeError::NonCanonicalKey { object, field }) => {
                (object, field)
            }
            (Some("InvalidIdentityKey"), DecodeError::InvalidIdentityKey { object, field }) => {
                (object, field)
            }
            (expected, found) => panic!("{name}: expected {expected:?}, got {found:?}"),
        };
        assert_eq!((found_object, found_field), (object, field), "{name}");
    }
}
