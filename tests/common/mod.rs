//! Shared test helpers: seeded randomness, two peers with accounts and records, and checks
//! that a rejected message leaves everything exactly as it was.

#![allow(dead_code)]

pub mod pb;

use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use ratchetbox::{
    Account, DecryptError, OneTimePreKeyId, PreKeyBundle, SessionConfig, SessionRecord, Timestamp,
};

/// The tests' clock starts here.
pub const T0: Timestamp = Timestamp::from_unix_secs(1_764_000_000);

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Alice,
    Bob,
}

impl Side {
    pub fn other(self) -> Self {
        match self {
            Side::Alice => Side::Bob,
            Side::Bob => Side::Alice,
        }
    }
}

pub struct Peer {
    pub account: Account,
    pub record: SessionRecord,
}

impl Peer {
    pub fn new(rng: &mut ChaCha20Rng, config: SessionConfig) -> Self {
        Self {
            account: Account::new(rng, T0),
            record: SessionRecord::with_config(config),
        }
    }

    /// Serialized account and record: equal bytes mean equal state.
    pub fn snapshot(&self) -> (Vec<u8>, Vec<u8>) {
        (
            self.account.to_bytes().to_vec(),
            self.record.to_bytes().to_vec(),
        )
    }

    pub fn decrypt(&mut self, wire: &[u8], now: Timestamp) -> Result<Vec<u8>, DecryptError> {
        self.record.decrypt(&mut self.account, wire, now)
    }

    /// Decrypts a message that must be rejected and checks nothing changed.
    pub fn reject(&mut self, wire: &[u8]) -> DecryptError {
        let before = self.snapshot();
        let error = self
            .decrypt(wire, T0)
            .expect_err("the message should have been rejected");
        assert_eq!(
            before,
            self.snapshot(),
            "a rejected message ({error}) changed the state"
        );
        error
    }

    /// Replaces account and record by their serialized-and-restored copies.
    pub fn persist_and_restore(&mut self) {
        let (account, record) = self.snapshot();
        self.account = Account::from_bytes(&account).expect("account restores");
        self.record = SessionRecord::from_bytes(&record).expect("record restores");
    }
}

/// Alice and Bob. Bob has published one-time prekeys; Alice has started a session from a
/// bundle with Bob's first one-time prekey (nothing sent yet).
pub struct Pair {
    pub rng: ChaCha20Rng,
    pub alice: Peer,
    pub bob: Peer,
    pub now: Timestamp,
}

impl Pair {
    pub fn new(seed: u64) -> Self {
        Self::with_config(seed, SessionConfig::default())
    }

    pub fn with_config(seed: u64, config: SessionConfig) -> Self {
        let mut rng = rng(seed);
        let alice = Peer::new(&mut rng, config);
        let mut bob = Peer::new(&mut rng, config);
        bob.account
            .generate_one_time_prekeys(&mut rng, 10, T0)
            .expect("prekeys");
        let bundle = bob
            .account
            .prekey_bundle(Some(OneTimePreKeyId(1)), None)
            .expect("bundle");
        let mut pair = Self {
            rng,
            alice,
            bob,
            now: T0,
        };
        pair.alice
            .record
            .initiate(&mut pair.rng, &pair.alice.account, &bundle)
            .expect("initiate");
        pair
    }

    /// A pair that has exchanged one message each way.
    pub fn established(seed: u64) -> Self {
        let mut pair = Self::new(seed);
        pair.exchange(Side::Alice, b"hello");
        pair.exchange(Side::Bob, b"hi");
        pair
    }

    pub fn peer(&mut self, side: Side) -> &mut Peer {
        match side {
            Side::Alice => &mut self.alice,
            Side::Bob => &mut self.bob,
        }
    }

    pub fn bundle(&self, one_time: Option<u32>) -> PreKeyBundle {
        self.bob
            .account
            .prekey_bundle(one_time.map(OneTimePreKeyId), None)
            .expect("bundle")
    }

    pub fn send(&mut self, from: Side, plaintext: &[u8]) -> Vec<u8> {
        let rng = &mut self.rng;
        let peer = match from {
            Side::Alice => &mut self.alice,
            Side::Bob => &mut self.bob,
        };
        peer.record.encrypt(rng, plaintext).expect("encrypt")
    }

    /// Encrypts `plaintext` as the complete ratchet plaintext, its kind byte included (as a
    /// modified client could): content crafted byte by byte, or an unknown kind. Needs the
    /// `fuzzing` feature's hook (the repository's `cargo test` has it; the published crate's
    /// tests leave out the files that use this).
    #[cfg(feature = "fuzzing")]
    pub fn send_crafted(&mut self, from: Side, plaintext: &[u8]) -> Vec<u8> {
        let rng = &mut self.rng;
        let peer = match from {
            Side::Alice => &mut self.alice,
            Side::Bob => &mut self.bob,
        };
        ratchetbox::fuzzing::encrypt_plaintext(&mut peer.record, rng, plaintext).expect("encrypt")
    }

    pub fn receive(&mut self, to: Side, wire: &[u8]) -> Result<Vec<u8>, DecryptError> {
        let now = self.now;
        self.peer(to).decrypt(wire, now)
    }

    /// Sends and delivers at once, checking the plaintext.
    pub fn exchange(&mut self, from: Side, plaintext: &[u8]) {
        let wire = self.send(from, plaintext);
        assert_eq!(
            self.receive(from.other(), &wire).expect("decrypt"),
            plaintext
        );
    }
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Peer {
    /// Decrypts at the tests' start time.
    pub fn receive_now(&mut self, wire: &[u8]) -> Result<Vec<u8>, DecryptError> {
        self.decrypt(wire, T0)
    }
}

/// Names the seed of one iteration of a fixed-seed loop in the output of a failing test:
/// hold one (`let _seed = SeedGuard(seed);`) for the body of every `for seed in ...` loop,
/// and a panic inside prints `failing seed: N` as the stack unwinds (tests/determinism.rs
/// checks every such loop has one; docs/TESTING.md says how to rerun one seed).
pub struct SeedGuard(pub u64);

impl Drop for SeedGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("failing seed: {}", self.0);
        }
    }
}
