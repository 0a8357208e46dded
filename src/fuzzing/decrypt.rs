//! The session-decrypt target: a fixed conversation, created deterministically, receives
//! the fuzzer's bytes as a message on both sides.

use alloc::vec::Vec;
use std::sync::OnceLock;

use rand_core::CryptoRng;

use super::{T0, rng, snapshot};
use crate::content::encode_padded;
use crate::{Account, Content, EncryptError, ExpiryTimer, OneTimePreKeyId, SessionRecord};

/// Encrypts `plaintext` with `record`'s current session as the complete ratchet plaintext,
/// its kind byte included (docs/PROTOCOL.md section 11), where
/// [`SessionRecord::encrypt`] would put the raw-bytes kind byte in front: for tests and fuzz
/// targets that craft plaintexts the API never sends (invalid content, unknown kind bytes).
pub fn encrypt_plaintext<R: CryptoRng + ?Sized>(
    record: &mut SessionRecord,
    rng: &mut R,
    plaintext: &[u8],
) -> Result<Vec<u8>, EncryptError> {
    record.encrypt_plaintext(rng, plaintext)
}

/// Decrypts `message` into its complete ratchet plaintext, its kind byte included, whatever
/// the kind (for tests that compare what the API encrypts with an independent encoding).
/// Like [`SessionRecord::decrypt`] otherwise.
pub fn decrypt_plaintext(
    record: &mut SessionRecord,
    account: &mut Account,
    message: &[u8],
    now: crate::Timestamp,
) -> Result<Vec<u8>, crate::DecryptError> {
    record.decrypt_with(account, message, now, &mut |_: &[u8]| Ok(()))
}

/// The body of the one content message of the fixture.
pub(crate) const FIXTURE_CONTENT: &[u8] = b"fixture content";

/// Alice and Bob mid-conversation: Bob holds skipped keys for two messages he has not
/// received yet (one initial, one ratchet message) and one content message is in flight
/// to him; one message is in flight to Alice. Disappearing messages are on (1 hour).
pub(crate) struct Fixture {
    pub(crate) alice: (Account, SessionRecord),
    pub(crate) bob: (Account, SessionRecord),
    alice_snapshot: (Vec<u8>, Vec<u8>),
    bob_snapshot: (Vec<u8>, Vec<u8>),
    /// The raw plaintexts of the messages in flight to Bob, and to Alice: what `decrypt` may
    /// return (the content in flight to Bob is for `receive`).
    pub(crate) pending_to_bob: Vec<Vec<u8>>,
    pub(crate) pending_to_alice: Vec<Vec<u8>>,
    /// Every message of the conversation, delivered or not (the seeds).
    pub(crate) messages: Vec<Vec<u8>>,
    /// Everything the fixture encrypted (plaintexts, padded contents), for the `state_*`
    /// targets: a decoded state that continues the conversation may decrypt only these.
    pub(crate) plaintexts: Vec<Vec<u8>>,
}

pub(crate) fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(build)
}

fn build() -> Fixture {
    let mut rng = rng(0x00f1_77e5);
    let (mut alice, mut alice_record) = (Account::new(&mut rng, T0), SessionRecord::new());
    let (mut bob, mut bob_record) = (Account::new(&mut rng, T0), SessionRecord::new());
    bob.generate_one_time_prekeys(&mut rng, 4, T0)
        .expect("one-time prekeys");
    bob.generate_one_time_kem_prekeys(&mut rng, 2, T0)
        .expect("one-time KEM prekeys");
    // PQXDH with both one-time prekeys (the KEM prekey ids start after the last-resort one).
    let kem_id = bob
        .one_time_kem_prekeys()
        .next()
        .expect("a KEM prekey")
        .id();
    let bundle = bob
        .prekey_bundle(Some(OneTimePreKeyId(1)), Some(kem_id))
        .expect("bundle");
    alice_record
        .initiate(&mut rng, &alice, &bundle)
        .expect("initiate");
    let mut messages = Vec::new();
    let mut send = |record: &mut SessionRecord, rng: &mut _, text: &[u8]| {
        let wire = record.encrypt(rng, text).expect("encrypt");
        messages.push(wire.clone());
        wire
    };
    let m0 = send(&mut alice_record, &mut rng, b"fixture 0");
    let _m1 = send(&mut alice_record, &mut rng, b"fixture 1");
    let m2 = send(&mut alice_record, &mut rng, b"fixture 2");
    for m in [&m0, &m2] {
        bob_record.decrypt(&mut bob, m, T0).expect("bob decrypts");
    }
    let r0 = send(&mut bob_record, &mut rng, b"reply 0");
    alice_record
        .decrypt(&mut alice, &r0, T0)
        .expect("alice decrypts");
    let _r1 = send(&mut bob_record, &mut rng, b"reply 1");
    let timer = alice_record
        .set_expiry_timer(&mut rng, 3600, T0)
        .expect("timer");
    bob_record
        .receive(&mut bob, timer.wire(), T0)
        .expect("bob receives the timer");
    let _m3 = send(&mut alice_record, &mut rng, b"fixture 3");
    let m4 = send(&mut alice_record, &mut rng, b"fixture 4");
    bob_record.decrypt(&mut bob, &m4, T0).expect("bob decrypts");
    let content_timer = alice_record.expiry_timer();
    let c5 = alice_record
        .send(&mut rng, &Content::new(FIXTURE_CONTENT), T0)
        .expect("send");
    messages.push(timer.wire().to_vec());
    messages.push(c5.wire().to_vec());
    let padded = encode_padded(&Content::new(FIXTURE_CONTENT), content_timer, T0)
        .expect("content")
        .to_vec();
    assert_eq!(content_timer, ExpiryTimer::new(3600, 1).expect("timer"));
    let mut plaintexts: Vec<Vec<u8>> = [
        "fixture 0",
        "fixture 1",
        "fixture 2",
        "fixture 3",
        "fixture 4",
        "reply 0",
        "reply 1",
    ]
    .iter()
    .map(|t| t.as_bytes().to_vec())
    .collect();
    plaintexts.push(padded);
    plaintexts.push(
        encode_padded(&Content::default(), timer.timer(), T0)
            .expect("timer content")
            .to_vec(),
    );
    Fixture {
        plaintexts,
        alice_snapshot: snapshot(&alice, &alice_record),
        bob_snapshot: snapshot(&bob, &bob_record),
        alice: (alice, alice_record),
        bob: (bob, bob_record),
        pending_to_bob: alloc::vec![b"fixture 1".to_vec(), b"fixture 3".to_vec()],
        pending_to_alice: alloc::vec![b"reply 1".to_vec()],
        messages,
    }
}

/// A fresh copy of one side (an account is not `Clone`: it holds the identity key).
fn restore(snapshot: &(Vec<u8>, Vec<u8>)) -> (Account, SessionRecord) {
    (
        Account::from_bytes(&snapshot.0).expect("account"),
        SessionRecord::from_bytes(&snapshot.1).expect("record"),
    )
}

/// Both sides of the fixture decrypt the input (`SessionRecord::decrypt`) and Bob also
/// receives it as content (`SessionRecord::receive`), each on a fresh copy. A message that
/// decrypts must be one of the raw-bytes messages in flight to that side, with exactly the
/// plaintext sent (the content message is refused by `decrypt`); a message received must be
/// the content in flight to Bob; anything else must be rejected and leave the account and
/// the record byte for byte as they were.
pub fn session_decrypt(data: &[u8]) {
    let f = fixture();

    decrypt_one(data, &f.bob_snapshot, &f.pending_to_bob, "Bob");

    let (mut account, mut record) = restore(&f.bob_snapshot);
    match record.receive(&mut account, data, T0) {
        Ok(message) => {
            assert_eq!(message.content().body(), FIXTURE_CONTENT);
            assert_eq!(message.timer(), ExpiryTimer::new(3600, 1).expect("timer"));
        }
        Err(e) => assert_eq!(
            snapshot(&account, &record),
            f.bob_snapshot,
            "a rejected message ({e}) changed Bob's state"
        ),
    }

    decrypt_one(data, &f.alice_snapshot, &f.pending_to_alice, "Alice");
}

/// `SessionRecord::decrypt` of `data` on a fresh copy of one side (`state`): it decrypts
/// to one of the plaintexts in flight to that side, or it is rejected with nothing changed.
fn decrypt_one(data: &[u8], state: &(Vec<u8>, Vec<u8>), pending: &[Vec<u8>], who: &str) {
    let (mut account, mut record) = restore(state);
    match record.decrypt(&mut account, data, T0) {
        Ok(plaintext) => assert!(
            pending.contains(&plaintext),
            "{who} decrypted a message that was never sent or already delivered"
        ),
        Err(e) => assert_eq!(
            &snapshot(&account, &record),
            state,
            "a rejected message ({e}) changed {who}'s state"
        ),
    }
}
