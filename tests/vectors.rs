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
use ratchetbox::{Account, OneTimePreKeyId, PreKeyBundle, SessionRecord, StorageKey, Timestamp};
use serde_json::Value;

/// An RNG that hands out exactly the scripted byte strings, in order, and fails the test if
/// the protocol asks for anything else.
struct Script {
    name: &'static str,
    draws: VecDeque<(String, Vec<u8>)>,
}

impl Script {
    fn new(name: &'static str, vectors: &Value, names: &[&str]) -> Self {
        let draws = names
            .iter()
            .map(|n| (n.to_string(), unhex(&vectors["inputs"][n])))
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

#[test]
fn protocol_test_vectors() {
    let v = vectors();
    let now = Timestamp::from_unix_secs(v["time"].as_u64().expect("time"));
    assert_eq!(v["draw_order"]["alice"].as_array().map(Vec::len), Some(11));
    let mut alice_rng = Script::new(
        "alice",
        &v,
        &[
            "a_id", "a_spk", "a_ek1", "a_r1", "n1", "n2", "a_r2", "n4", "a_ek2", "a_r3", "n6",
        ],
    );
    let mut bob_rng = Script::new(
        "bob",
        &v,
        &["b_id", "b_spk", "b_opk", "b_r1", "n3", "b_r2", "n5"],
    );

    let mut alice = Account::new(&mut alice_rng, now);
    let mut bob = Account::new(&mut bob_rng, now);
    bob.generate_one_time_prekeys(&mut bob_rng, 1)
        .expect("prekey");

    // Bundles.
    let bundle = bob
        .prekey_bundle(Some(OneTimePreKeyId(1)), None)
        .expect("bundle");
    assert_eq!(
        hex::encode(bundle.to_bytes()),
        v["bundle"].as_str().unwrap(),
        "bundle"
    );
    let bundle_without = bob.prekey_bundle(None, None).expect("bundle");
    assert_eq!(
        hex::encode(bundle_without.to_bytes()),
        v["bundle_without_one_time_prekey"].as_str().unwrap(),
        "bundle without one-time prekey"
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

    // Session 1, with a one-time prekey.
    let mut alice_record = SessionRecord::new();
    let mut bob_record = SessionRecord::new();
    let parsed = PreKeyBundle::from_bytes(&unhex(&v["bundle"])).expect("bundle decodes");
    alice_record
        .initiate(&mut alice_rng, &alice, &parsed)
        .expect("initiate");
    let session = &v["session_with_one_time_prekey"];
    for (i, m) in session["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .enumerate()
    {
        let plaintext = unhex(&m["plaintext"]);
        let expected = m["wire"].as_str().unwrap();
        let wire = match m["from"].as_str().unwrap() {
            "alice" => {
                let wire = alice_record
                    .encrypt(&mut alice_rng, &plaintext)
                    .expect("encrypt");
                assert_eq!(hex::encode(&wire), expected, "session 1 message {i}");
                assert_eq!(
                    bob_record.decrypt(&mut bob, &wire, now).expect("decrypt"),
                    plaintext
                );
                wire
            }
            _ => {
                let wire = bob_record
                    .encrypt(&mut bob_rng, &plaintext)
                    .expect("encrypt");
                assert_eq!(hex::encode(&wire), expected, "session 1 message {i}");
                assert_eq!(
                    alice_record
                        .decrypt(&mut alice, &wire, now)
                        .expect("decrypt"),
                    plaintext
                );
                wire
            }
        };
        assert!(!wire.is_empty());
    }
    assert_eq!(session["messages"].as_array().unwrap().len(), 5);

    // Session 2, without a one-time prekey.
    let mut alice_record = SessionRecord::new();
    let mut bob_record = SessionRecord::new();
    alice_record
        .initiate(&mut alice_rng, &alice, &bundle_without)
        .expect("initiate");
    let messages = v["session_without_one_time_prekey"]["messages"]
        .as_array()
        .unwrap();
    assert_eq!(messages.len(), 1);
    let plaintext = unhex(&messages[0]["plaintext"]);
    let wire = alice_record
        .encrypt(&mut alice_rng, &plaintext)
        .expect("encrypt");
    assert_eq!(
        hex::encode(&wire),
        messages[0]["wire"].as_str().unwrap(),
        "session 2"
    );
    assert_eq!(
        bob_record.decrypt(&mut bob, &wire, now).expect("decrypt"),
        plaintext
    );

    alice_rng.finish();
    bob_rng.finish();
}
