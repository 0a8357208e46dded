//! Workloads shared by `benches/protocol.rs` (criterion) and `benches/examples/throughput.rs`
//! (the table): ratchetbox sessions, vodozemac (Olm) sessions and the primitive floor, each
//! set up the same way, so both tools measure the same operations.
//!
//! Randomness: ratchetbox gets a seeded `ChaCha20Rng` (a userspace CSPRNG), so small messages
//! are not dominated by a system call per message. vodozemac does not take an RNG: it draws
//! from `rand`'s thread RNG (ChaCha12, seeded from the OS), also a userspace CSPRNG.

#![allow(dead_code, reason = "each including target uses a different subset")]

use std::hint::black_box;

use aes_gcm::aead::inout::InOutBuf;
use aes_gcm::{AeadInOut, Aes256Gcm, KeyInit};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use hkdf::{Hkdf, HkdfExtract};
use hmac::{Hmac, Mac};
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};
use ratchetbox::{Account, PreKeyBundle, Session, SessionConfig, SessionRecord, Timestamp};
use sha2::Sha256;
use vodozemac::olm as vz;
use x25519_dalek::{PublicKey, StaticSecret};

/// The clock of every workload.
pub const NOW: Timestamp = Timestamp::from_unix_secs(1_764_000_000);

/// The size of a "small" message.
pub const SMALL: usize = 100;

/// Sizes of the large-message group.
pub const LARGE_SIZES: [usize; 3] = [1024, 64 * 1024, 1024 * 1024];

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// A plaintext of `len` bytes (content does not matter to any of the code measured).
pub fn plaintext(len: usize) -> Vec<u8> {
    (0..len).map(|i| i as u8).collect()
}

// ---------------------------------------------------------------------------------------
// ratchetbox
// ---------------------------------------------------------------------------------------

/// One side of a ratchetbox conversation.
pub struct RbPeer {
    pub account: Account,
    pub record: SessionRecord,
}

impl RbPeer {
    pub fn decrypt(&mut self, wire: &[u8]) -> Vec<u8> {
        self.record
            .decrypt(&mut self.account, wire, NOW)
            .expect("ratchetbox decrypts")
    }

    /// [`decrypt`](Self::decrypt) into `out` (`SessionRecord::decrypt_into`).
    pub fn decrypt_into(&mut self, wire: &[u8], out: &mut Vec<u8>) {
        self.record
            .decrypt_into(&mut self.account, wire, NOW, out)
            .expect("ratchetbox decrypts");
    }

    pub fn session(&self) -> &Session {
        self.record.session().expect("a current session")
    }
}

/// Two ratchetbox peers with an established session.
pub struct RbPair {
    pub rng: ChaCha20Rng,
    pub alice: RbPeer,
    pub bob: RbPeer,
}

impl RbPair {
    /// Alice initiates with a one-time prekey, Bob answers, Alice reads the answer. Then Alice
    /// sends once more (starting her second sending chain) and Bob reads it, so that both
    /// directions are in the steady state: Alice's next message carries no DH ratchet step,
    /// and neither does Bob's decryption of it.
    pub fn established(seed: u64, config: SessionConfig) -> Self {
        let mut rng = rng(seed);
        let alice_account = Account::new(&mut rng, NOW);
        let mut bob_account = Account::new(&mut rng, NOW);
        let otk = bob_account
            .generate_one_time_prekeys(&mut rng, 1, NOW)
            .expect("one-time prekey")[0];
        let bundle = bob_account
            .prekey_bundle(Some(otk.id()), None)
            .expect("bundle");
        let mut alice = RbPeer {
            account: alice_account,
            record: SessionRecord::with_config(config),
        };
        let bob = RbPeer {
            account: bob_account,
            record: SessionRecord::with_config(config),
        };
        alice
            .record
            .initiate(&mut rng, &alice.account, &bundle)
            .expect("initiate");
        let mut pair = Self { rng, alice, bob };
        let m = pair.alice_sends(b"hello");
        pair.bob.decrypt(&m);
        let m = pair.bob_sends(b"hi");
        pair.alice.decrypt(&m);
        let m = pair.alice_sends(b"steady");
        pair.bob.decrypt(&m);
        pair
    }

    pub fn alice_sends(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.alice
            .record
            .encrypt(&mut self.rng, plaintext)
            .expect("ratchetbox encrypts")
    }

    pub fn bob_sends(&mut self, plaintext: &[u8]) -> Vec<u8> {
        self.bob
            .record
            .encrypt(&mut self.rng, plaintext)
            .expect("ratchetbox encrypts")
    }

    /// One ping-pong turn: Alice sends, Bob reads, Bob sends, Alice reads. Every message
    /// starts a new sending chain, so each carries a DH ratchet step.
    pub fn ping_pong(&mut self, plaintext: &[u8]) {
        let m = self.alice_sends(plaintext);
        black_box(self.bob.decrypt(&m));
        let m = self.bob_sends(plaintext);
        black_box(self.alice.decrypt(&m));
    }

    /// Bob sends and Alice reads: Alice's next message starts a new chain (DH ratchet step).
    pub fn turn(&mut self) {
        let m = self.bob_sends(b"turn");
        self.alice.decrypt(&m);
    }

    /// Makes Bob store `n` skipped keys of Alice's current chain (Alice sends `n` messages
    /// that Bob never gets, in runs of at most `max_skip`, and Bob reads the message after
    /// each run).
    pub fn fill_skipped(&mut self, n: usize) {
        let max_skip = self.bob.record.config().max_skip() as usize;
        let mut left = n;
        while left > 0 {
            let run = left.min(max_skip);
            for _ in 0..run {
                self.alice_sends(b"lost");
            }
            let m = self.alice_sends(b"after the gap");
            self.bob.decrypt(&m);
            left -= run;
        }
        assert_eq!(self.bob.session().skipped_key_count(), n);
    }
}

/// The session limits for a store of `stored` skipped keys: the defaults up to the default
/// maximum (4,000), above it the limits raised to `stored` (at most the hard ceiling).
pub fn config_for_stored(stored: usize) -> SessionConfig {
    if stored > SessionConfig::DEFAULT_MAX_SKIPPED_KEYS as usize {
        let n = u32::try_from(stored).unwrap_or(u32::MAX);
        SessionConfig::default()
            .with_max_skipped_keys(n)
            .with_max_skip(n)
    } else {
        SessionConfig::default()
    }
}

/// Which session setup a workload runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Setup {
    /// X3DH only (allowed explicitly), with a one-time prekey.
    Classical,
    /// PQXDH (the default): X3DH with a one-time prekey plus ML-KEM-1024 to a one-time KEM
    /// prekey.
    PostQuantum,
}

impl Setup {
    pub fn config(self) -> SessionConfig {
        SessionConfig::default().with_classical_setup_allowed(self == Setup::Classical)
    }

    /// Bob's bundle for this setup, with one of his one-time prekeys (and one-time KEM
    /// prekey).
    fn bundle(self, rng: &mut ChaCha20Rng, bob: &mut Account) -> PreKeyBundle {
        let otk = bob.generate_one_time_prekeys(rng, 1, NOW).expect("otk")[0];
        match self {
            Setup::Classical => bob.classical_prekey_bundle(Some(otk.id())),
            Setup::PostQuantum => {
                let kem = bob
                    .generate_one_time_kem_prekeys(rng, 1, NOW)
                    .expect("kem otk");
                bob.prekey_bundle(Some(otk.id()), Some(kem[0].id()))
            }
        }
        .expect("bundle")
    }
}

/// Bob's side of the setup, ready to run repeatedly: his account (as bytes, since each run
/// consumes the one-time prekeys) and Alice's initial message.
pub struct RbResponder {
    pub account_bytes: Vec<u8>,
    pub initial_message: Vec<u8>,
    pub setup: Setup,
}

impl RbResponder {
    pub fn new(seed: u64, setup: Setup) -> Self {
        let mut rng = rng(seed);
        let alice = Account::new(&mut rng, NOW);
        let mut bob = Account::new(&mut rng, NOW);
        let bundle = setup.bundle(&mut rng, &mut bob);
        let mut session =
            Session::initiate(&mut rng, &alice, &bundle, setup.config()).expect("initiate");
        let initial_message = session
            .encrypt(&mut rng, &plaintext(SMALL))
            .expect("encrypt");
        Self {
            account_bytes: bob.to_bytes().to_vec(),
            initial_message,
            setup,
        }
    }

    pub fn fresh_account(&self) -> Account {
        Account::from_bytes(&self.account_bytes).expect("account")
    }

    /// The responder's setup: a new session from the initial message, which decrypts.
    pub fn respond(&self, account: &mut Account) -> SessionRecord {
        let mut record = SessionRecord::with_config(self.setup.config());
        let plaintext = record
            .decrypt(account, &self.initial_message, NOW)
            .expect("responder decrypts");
        black_box(plaintext);
        record
    }
}

/// The initiator's inputs: Alice's account and Bob's parsed bundle.
pub struct RbInitiator {
    pub rng: ChaCha20Rng,
    pub alice: Account,
    pub bundle: PreKeyBundle,
    pub setup: Setup,
}

impl RbInitiator {
    pub fn new(seed: u64, setup: Setup) -> Self {
        let mut rng = rng(seed);
        let alice = Account::new(&mut rng, NOW);
        let mut bob = Account::new(&mut rng, NOW);
        let bundle = setup.bundle(&mut rng, &mut bob);
        Self {
            rng,
            alice,
            bundle,
            setup,
        }
    }

    /// The initiator's setup: verify the prekey signature(s), one ephemeral key, four DH,
    /// for PQXDH one ML-KEM encapsulation, HKDF.
    pub fn initiate(&mut self) -> Session {
        Session::initiate(
            &mut self.rng,
            &self.alice,
            &self.bundle,
            self.setup.config(),
        )
        .expect("initiate")
    }
}

// ---------------------------------------------------------------------------------------
// vodozemac (Olm)
// ---------------------------------------------------------------------------------------

/// The Olm session configuration compared against: version 2 has an untruncated MAC, the
/// closest match to AES-GCM's full tag (version 1 differs only in truncating the MAC).
pub fn vz_config() -> vz::SessionConfig {
    vz::SessionConfig::version_2()
}

/// An Olm message on the wire: its type and bytes (what a Matrix client sends).
pub type VzWire = (usize, Vec<u8>);

pub fn vz_encrypt(session: &mut vz::Session, plaintext: &[u8]) -> VzWire {
    session
        .encrypt(plaintext)
        .expect("vodozemac encrypts")
        .to_parts()
}

pub fn vz_decrypt(session: &mut vz::Session, wire: &VzWire) -> Vec<u8> {
    let message = vz::OlmMessage::from_parts(wire.0, &wire.1).expect("olm message decodes");
    session.decrypt(&message).expect("vodozemac decrypts")
}

/// An Olm session's state as JSON (vodozemac's `SessionPickle` through serde).
pub fn vz_pickle_json(session: &vz::Session) -> String {
    serde_json::to_string(&session.pickle()).expect("pickle serializes")
}

pub fn vz_from_json(json: &str) -> vz::Session {
    vz::Session::from_pickle(serde_json::from_str(json).expect("pickle parses"))
}

/// Two Olm sessions in the same steady state as [`RbPair::established`].
pub struct VzPair {
    pub alice: vz::Session,
    pub bob: vz::Session,
}

impl VzPair {
    pub fn established() -> Self {
        let alice_account = vz::Account::new();
        let mut bob_account = vz::Account::new();
        bob_account.generate_one_time_keys(1);
        let otk = *bob_account
            .one_time_keys()
            .values()
            .next()
            .expect("one-time key");
        bob_account.mark_keys_as_published();
        let mut alice = alice_account
            .create_outbound_session(vz_config(), bob_account.curve25519_key(), otk)
            .expect("outbound session");
        let vz::OlmMessage::PreKey(first) = alice.encrypt(b"hello").expect("encrypt") else {
            panic!("the first Olm message is a pre-key message");
        };
        let bob = bob_account
            .create_inbound_session(vz_config(), alice_account.curve25519_key(), &first)
            .expect("inbound session")
            .session;
        let mut pair = Self { alice, bob };
        let m = vz_encrypt(&mut pair.bob, b"hi");
        vz_decrypt(&mut pair.alice, &m);
        let m = vz_encrypt(&mut pair.alice, b"steady");
        vz_decrypt(&mut pair.bob, &m);
        pair
    }

    pub fn ping_pong(&mut self, plaintext: &[u8]) {
        let m = vz_encrypt(&mut self.alice, plaintext);
        black_box(vz_decrypt(&mut self.bob, &m));
        let m = vz_encrypt(&mut self.bob, plaintext);
        black_box(vz_decrypt(&mut self.alice, &m));
    }

    /// Bob sends and Alice reads: Alice's next message starts a new chain.
    pub fn turn(&mut self) {
        let m = vz_encrypt(&mut self.bob, b"turn");
        vz_decrypt(&mut self.alice, &m);
    }

    /// Makes Bob store `n` skipped keys of Alice's chain (Olm keeps at most 40 per chain).
    pub fn fill_skipped(&mut self, n: usize) {
        for _ in 0..n {
            vz_encrypt(&mut self.alice, b"lost");
        }
        let m = vz_encrypt(&mut self.alice, b"after the gap");
        vz_decrypt(&mut self.bob, &m);
    }
}

/// Olm's inbound session setup, ready to run repeatedly.
pub struct VzResponder {
    pub account_pickle: String,
    pub alice_key: vodozemac::Curve25519PublicKey,
    pub message: vz::PreKeyMessage,
}

/// The key that encrypts vodozemac pickles in these benchmarks.
pub const VZ_PICKLE_KEY: [u8; 32] = [7; 32];

impl VzResponder {
    pub fn new() -> Self {
        let alice = vz::Account::new();
        let mut bob = vz::Account::new();
        bob.generate_one_time_keys(1);
        let otk = *bob.one_time_keys().values().next().expect("one-time key");
        bob.mark_keys_as_published();
        let mut session = alice
            .create_outbound_session(vz_config(), bob.curve25519_key(), otk)
            .expect("outbound");
        let vz::OlmMessage::PreKey(message) = session.encrypt(plaintext(SMALL)).expect("encrypt")
        else {
            panic!("the first Olm message is a pre-key message");
        };
        Self {
            account_pickle: bob.pickle().encrypt(&VZ_PICKLE_KEY),
            alice_key: alice.curve25519_key(),
            message,
        }
    }

    pub fn fresh_account(&self) -> vz::Account {
        vz::Account::from_pickle(
            vz::AccountPickle::from_encrypted(&self.account_pickle, &VZ_PICKLE_KEY)
                .expect("account pickle"),
        )
    }

    /// Inbound session from a pre-key message that arrived as bytes.
    pub fn respond(&self, account: &mut vz::Account, wire: &[u8]) -> vz::Session {
        let message = vz::PreKeyMessage::from_bytes(wire).expect("pre-key message");
        let result = account
            .create_inbound_session(vz_config(), self.alice_key, &message)
            .expect("inbound session");
        black_box(result.plaintext);
        result.session
    }
}

impl Default for VzResponder {
    fn default() -> Self {
        Self::new()
    }
}

/// Olm's outbound session setup.
pub struct VzInitiator {
    pub alice: vz::Account,
    pub identity_key: vodozemac::Curve25519PublicKey,
    pub one_time_key: vodozemac::Curve25519PublicKey,
}

impl VzInitiator {
    pub fn new() -> Self {
        let mut bob = vz::Account::new();
        bob.generate_one_time_keys(1);
        let one_time_key = *bob.one_time_keys().values().next().expect("one-time key");
        Self {
            alice: vz::Account::new(),
            identity_key: bob.curve25519_key(),
            one_time_key,
        }
    }

    /// One ephemeral key, three DH, HKDF (Olm's 3DH; Olm does not sign one-time keys).
    pub fn initiate(&self) -> vz::Session {
        self.alice
            .create_outbound_session(vz_config(), self.identity_key, self.one_time_key)
            .expect("outbound")
    }
}

impl Default for VzInitiator {
    fn default() -> Self {
        Self::new()
    }
}

// ---------------------------------------------------------------------------------------
// The floor: the primitives ratchetbox is built from, called directly
// ---------------------------------------------------------------------------------------

type HmacSha256 = Hmac<Sha256>;

/// KDF_CK as ratchetbox computes it: two HMAC-SHA256 under one key schedule.
pub fn chain_step(chain_key: &mut [u8; 32]) -> [u8; 32] {
    let mut block = [0u8; 64];
    block[..32].copy_from_slice(chain_key);
    let keyed = <HmacSha256 as KeyInit>::new(&block.into());
    let mut mac = keyed.clone();
    mac.update(&[2]);
    let next: [u8; 32] = mac.finalize().into_bytes().into();
    let mut mac = keyed;
    mac.update(&[1]);
    let message_key: [u8; 32] = mac.finalize().into_bytes().into();
    *chain_key = next;
    message_key
}

/// KDF_RK: HKDF-SHA256 with a 32-byte salt and IKM, 64 bytes of output.
pub fn root_step(root_key: &mut [u8; 32], dh: &[u8; 32]) -> [u8; 32] {
    let (_, hkdf) = Hkdf::<Sha256>::extract(Some(root_key), dh);
    let mut okm = [0u8; 64];
    hkdf.expand(b"ratchetbox v1 root chain", &mut okm)
        .expect("64 bytes");
    root_key.copy_from_slice(&okm[..32]);
    okm[32..].try_into().expect("32 bytes")
}

/// The X3DH HKDF: 32-byte salt, 32 + n * 32 bytes of IKM, 32 bytes of output.
pub fn x3dh_kdf(dh: &[[u8; 32]]) -> [u8; 32] {
    let mut extract = HkdfExtract::<Sha256>::new(Some(&[0u8; 32]));
    extract.input_ikm(&[0xFF; 32]);
    for d in dh {
        extract.input_ikm(d);
    }
    let (_, hkdf) = extract.finalize();
    let mut okm = [0u8; 32];
    hkdf.expand(b"ratchetbox v1 X3DH", &mut okm)
        .expect("32 bytes");
    okm
}

/// AES-256-GCM with ratchetbox's parameters (12-byte nonce, 117 bytes of associated data).
/// Every call runs the key schedule, as every message has its own key.
pub struct Aead {
    pub key: [u8; 32],
    pub nonce: [u8; 12],
    pub ad: [u8; 117],
}

impl Aead {
    pub fn new() -> Self {
        Self {
            key: [9; 32],
            nonce: [4; 12],
            ad: [5; 117],
        }
    }

    /// Encrypts `buf` in place under `key`.
    pub fn seal_with(&self, key: &[u8; 32], buf: &mut [u8]) -> [u8; 16] {
        Aes256Gcm::new(key.into())
            .encrypt_inout_detached((&self.nonce).into(), &self.ad, InOutBuf::from(buf))
            .expect("seal")
            .into()
    }

    /// Encrypts `buf` in place under the fixed key.
    pub fn seal(&self, buf: &mut [u8]) -> [u8; 16] {
        self.seal_with(&self.key, buf)
    }

    /// Encrypts `plaintext` into `out` (same length) under the fixed key: the floor for an
    /// API that returns a new buffer, which has to read one buffer and write another.
    pub fn seal_into(&self, plaintext: &[u8], out: &mut [u8]) -> [u8; 16] {
        Aes256Gcm::new((&self.key).into())
            .encrypt_inout_detached(
                (&self.nonce).into(),
                &self.ad,
                InOutBuf::new(plaintext, out).expect("equal lengths"),
            )
            .expect("seal")
            .into()
    }

    /// A ciphertext of `len` bytes and its tag under the fixed key.
    pub fn sealed(&self, len: usize) -> (Vec<u8>, [u8; 16]) {
        let mut ciphertext = plaintext(len);
        let tag = self.seal(&mut ciphertext);
        (ciphertext, tag)
    }

    /// Verifies and decrypts `ciphertext` (sealed under the fixed key) into `out`, which
    /// has the same length. Reading from one buffer and writing to another is the same work
    /// as in place, and leaves the ciphertext for the next call.
    pub fn open(&self, ciphertext: &[u8], tag: &[u8; 16], out: &mut [u8]) {
        Aes256Gcm::new((&self.key).into())
            .decrypt_inout_detached(
                (&self.nonce).into(),
                &self.ad,
                InOutBuf::new(ciphertext, out).expect("equal lengths"),
                tag.into(),
            )
            .expect("open");
    }
}

impl Default for Aead {
    fn default() -> Self {
        Self::new()
    }
}

/// The two passes AES-GCM makes over a message, alone: the AES-256 CTR keystream (as
/// aes-gcm runs it, 32-bit big-endian counter) and GHASH.
pub struct GcmParts {
    key: [u8; 32],
    ghash_key: [u8; 16],
}

impl GcmParts {
    pub fn new() -> Self {
        Self {
            key: [9; 32],
            ghash_key: [3; 16],
        }
    }

    pub fn ctr(&self, buf: &mut [u8]) {
        use ctr::cipher::{KeyIvInit, StreamCipher};
        let mut ctr =
            ctr::Ctr32BE::<aes_gcm::aes::Aes256>::new((&self.key).into(), (&[0u8; 16]).into());
        ctr.apply_keystream(buf);
    }

    pub fn ghash(&self, buf: &[u8]) -> [u8; 16] {
        // `KeyInit` is the trait imported above from aes_gcm (one crate, crypto-common).
        use ghash::universal_hash::UniversalHash;
        let mut ghash = ghash::GHash::new((&self.ghash_key).into());
        ghash.update_padded(buf);
        ghash.finalize().into()
    }
}

impl Default for GcmParts {
    fn default() -> Self {
        Self::new()
    }
}

/// The primitives ratchetbox is built from, with fixed inputs. Composite floors perform the
/// same primitive calls, in the same order and number, as the ratchetbox operation they
/// bound, and nothing else.
pub struct Floor {
    pub kem: ml_kem::DecapsulationKey<ml_kem::MlKem1024>,
    pub kem_ciphertext: ml_kem::Ciphertext<ml_kem::MlKem1024>,
    pub kem_signed_message: Vec<u8>,
    pub kem_signature: ed25519_dalek::Signature,
    pub rng: ChaCha20Rng,
    pub x25519_secret: StaticSecret,
    pub x25519_public: PublicKey,
    pub signing: SigningKey,
    pub verifying: VerifyingKey,
    pub signed_message: [u8; 71],
    pub signature: ed25519_dalek::Signature,
    pub chain_key: [u8; 32],
    pub root_key: [u8; 32],
    pub aead: Aead,
}

impl Floor {
    pub fn new(seed: u64) -> Self {
        let mut rng = rng(seed);
        let mut bytes = [0u8; 32];
        rng.fill_bytes(&mut bytes);
        let x25519_secret = StaticSecret::from(bytes);
        rng.fill_bytes(&mut bytes);
        let x25519_public = PublicKey::from(&StaticSecret::from(bytes));
        rng.fill_bytes(&mut bytes);
        let signing = SigningKey::from_bytes(&bytes);
        let verifying = signing.verifying_key();
        let mut signed_message = [0u8; 71];
        rng.fill_bytes(&mut signed_message);
        let signature = signing.sign(&signed_message);
        let mut seed = [0u8; 64];
        rng.fill_bytes(&mut seed);
        let kem = ml_kem::DecapsulationKey::<ml_kem::MlKem1024>::from_seed(seed.into());
        let (kem_ciphertext, _) =
            ml_kem::Encapsulate::encapsulate_with_rng(kem.encapsulation_key(), &mut rng);
        let mut kem_signed_message = vec![0u8; 31 + 12 + 1568];
        rng.fill_bytes(&mut kem_signed_message);
        let kem_signature = signing.sign(&kem_signed_message);
        Self {
            kem,
            kem_ciphertext,
            kem_signed_message,
            kem_signature,
            rng,
            x25519_secret,
            x25519_public,
            signing,
            verifying,
            signed_message,
            signature,
            chain_key: [1; 32],
            root_key: [2; 32],
            aead: Aead::new(),
        }
    }

    /// X25519 key generation: 32 random bytes and the public key (a fixed-base scalar
    /// multiplication).
    pub fn keygen(&mut self) -> (StaticSecret, PublicKey) {
        let mut bytes = [0u8; 32];
        self.rng.fill_bytes(&mut bytes);
        let secret = StaticSecret::from(bytes);
        let public = PublicKey::from(&secret);
        (secret, public)
    }

    /// One X25519 Diffie-Hellman (variable-base scalar multiplication), with the
    /// all-zero-output check.
    pub fn dh(&self) -> [u8; 32] {
        dh(&self.x25519_secret, &self.x25519_public)
    }

    pub fn sign(&self) -> ed25519_dalek::Signature {
        self.signing.sign(black_box(&self.signed_message))
    }

    /// Strict verification, as ratchetbox verifies signed prekeys.
    pub fn verify(&self) -> bool {
        self.verifying
            .verify_strict(black_box(&self.signed_message), &self.signature)
            .is_ok()
    }

    /// ML-KEM-1024 key generation from a fresh 64-byte seed.
    pub fn kem_keygen(&mut self) -> ml_kem::DecapsulationKey<ml_kem::MlKem1024> {
        let mut seed = [0u8; 64];
        self.rng.fill_bytes(&mut seed);
        ml_kem::DecapsulationKey::<ml_kem::MlKem1024>::from_seed(seed.into())
    }

    /// ML-KEM-1024 encapsulation to the fixed key (ciphertext and shared secret).
    pub fn kem_encapsulate(&mut self) -> [u8; 32] {
        let (ciphertext, shared) =
            ml_kem::Encapsulate::encapsulate_with_rng(self.kem.encapsulation_key(), &mut self.rng);
        black_box(ciphertext);
        shared.into()
    }

    /// ML-KEM-1024 decapsulation of a fixed ciphertext.
    pub fn kem_decapsulate(&self) -> [u8; 32] {
        ml_kem::Decapsulate::decapsulate(&self.kem, black_box(&self.kem_ciphertext)).into()
    }

    /// Parsing an ML-KEM-1024 public key from bytes (the modulus check), as a bundle is
    /// decoded.
    pub fn kem_decode_public(&self) -> bool {
        let bytes = ml_kem::KeyExport::to_bytes(self.kem.encapsulation_key());
        ml_kem::EncapsulationKey::<ml_kem::MlKem1024>::new(black_box(&bytes)).is_ok()
    }

    /// Strict verification of a KEM prekey signature (a 1,611-byte signed message).
    pub fn verify_kem_signature(&self) -> bool {
        self.verifying
            .verify_strict(black_box(&self.kem_signed_message), &self.kem_signature)
            .is_ok()
    }

    /// Parsing an Ed25519 identity key as ratchetbox does (decompression, small-order check)
    /// and mapping it to its X25519 form (one field inversion).
    pub fn decode_identity(&self) -> [u8; 32] {
        let key =
            VerifyingKey::from_bytes(black_box(self.verifying.as_bytes())).expect("valid key");
        assert!(!key.is_weak());
        key.to_montgomery().to_bytes()
    }

    pub fn chain_step(&mut self) -> [u8; 32] {
        chain_step(&mut self.chain_key)
    }

    pub fn root_step(&mut self, dh: &[u8; 32]) -> [u8; 32] {
        root_step(&mut self.root_key, dh)
    }

    /// Floor of a steady-state encryption: KDF_CK, then AES-256-GCM of the message under
    /// the message key.
    pub fn steady_encrypt(&mut self, buf: &mut [u8]) -> [u8; 16] {
        let mk = self.chain_step();
        self.aead.seal_with(&mk, buf)
    }

    /// Floor of a steady-state decryption: KDF_CK, then AES-256-GCM open. The open uses the
    /// fixed key (so that the tag verifies); the key schedule still runs on every call.
    pub fn steady_decrypt(&mut self, ciphertext: &[u8], tag: &[u8; 16], out: &mut [u8]) {
        black_box(self.chain_step());
        self.aead.open(ciphertext, tag, out);
    }

    /// Floor of sending a message that starts a new chain: key generation, one DH, KDF_RK,
    /// KDF_CK, AES-256-GCM.
    pub fn ratchet_encrypt(&mut self, buf: &mut [u8]) -> [u8; 16] {
        let (secret, public) = self.keygen();
        black_box(public);
        let shared = dh(&secret, &self.x25519_public);
        self.chain_key = self.root_step(&shared);
        self.steady_encrypt(buf)
    }

    /// Floor of receiving a message that starts a new chain: one DH, KDF_RK, KDF_CK,
    /// AES-256-GCM open.
    pub fn ratchet_decrypt(&mut self, ciphertext: &[u8], tag: &[u8; 16], out: &mut [u8]) {
        let shared = self.dh();
        self.chain_key = self.root_step(&shared);
        self.steady_decrypt(ciphertext, tag, out);
    }

    /// Floor of X3DH as the initiator: verify the signed prekey, one key generation, four DH,
    /// the X3DH HKDF.
    pub fn x3dh_initiator(&mut self) -> [u8; 32] {
        assert!(self.verify());
        let (ephemeral, public) = self.keygen();
        black_box(public);
        let dh1 = self.dh();
        let [dh2, dh3, dh4] = core::array::from_fn(|_| dh(&ephemeral, &self.x25519_public));
        x3dh_kdf(&[dh1, dh2, dh3, dh4])
    }

    /// Floor of PQXDH as the initiator: the X3DH floor plus verifying the KEM prekey's
    /// signature and one ML-KEM-1024 encapsulation.
    pub fn pqxdh_initiator(&mut self) -> [u8; 32] {
        assert!(self.verify_kem_signature());
        let shared = self.kem_encapsulate();
        black_box(shared);
        self.x3dh_initiator()
    }

    /// Floor of PQXDH as the responder: the X3DH responder floor plus one ML-KEM-1024
    /// decapsulation.
    pub fn pqxdh_responder(&mut self, ciphertext: &[u8], tag: &[u8; 16], out: &mut [u8]) {
        black_box(self.kem_decapsulate());
        self.x3dh_responder(ciphertext, tag, out);
    }

    /// Floor of X3DH as the responder, through decrypting the first message: decode the
    /// initiator's identity key, four DH, the X3DH HKDF, then the first message's DH ratchet
    /// step and AES-256-GCM open.
    pub fn x3dh_responder(&mut self, ciphertext: &[u8], tag: &[u8; 16], out: &mut [u8]) {
        black_box(self.decode_identity());
        let dh: [[u8; 32]; 4] = core::array::from_fn(|_| self.dh());
        self.root_key = x3dh_kdf(&dh);
        self.ratchet_decrypt(ciphertext, tag, out);
    }
}

/// X25519 on the path ratchetbox takes (src/x25519.rs): curve25519-dalek's Edwards form where
/// it has a vector backend (x86_64 with AVX2), the Montgomery ladder otherwise and for points
/// on the twist. The floor is the primitives ratchetbox is built from, so it takes the same
/// path; x25519-dalek's `diffie_hellman` is the ladder alone (the `x25519_paths` tool times
/// both).
pub fn dh(secret: &StaticSecret, public: &PublicKey) -> [u8; 32] {
    use curve25519_dalek::montgomery::MontgomeryPoint;
    let scalar = curve25519_dalek::scalar::clamp_integer(secret.to_bytes());
    let u = MontgomeryPoint(*black_box(public).as_bytes());
    #[cfg(target_arch = "x86_64")]
    let vector = std::is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    let vector = false;
    let shared = match u.to_edwards(0) {
        Some(point) if vector => point.mul_clamped(scalar).to_montgomery(),
        _ => u.mul_clamped(scalar),
    };
    assert!(shared.0 != [0; 32]);
    shared.to_bytes()
}
