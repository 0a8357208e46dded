//! A session: one Double Ratchet between two identities, set up by X3DH.

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::account::Account;
use crate::config::SessionConfig;
use crate::content::{self, KIND_RAW, Kind};
use crate::error::{DecodeError, DecryptError, EncryptError, ExportError, SetupError};
use crate::exporter;
use crate::keys::{IdentityKey, KEY_LEN, SecretBytes, X25519PublicKey, write_hex};
use crate::ratchet::{Accept, Budget, Ratchet, Work};
use crate::time::Timestamp;
use sha2::{Digest, Sha256};

use crate::kem::{KEM_CIPHERTEXT_LEN, KemCiphertext};
use crate::wire::bundle::{KemPreKeyId, OneTimePreKeyId, PreKeyBundle, SignedPreKeyId};
use crate::wire::generated as pb;
use crate::wire::message::{Body, InitialSetup, KemSetup};
use crate::wire::{PQXDH_MESSAGE_VERSION, VERSION};
use crate::x3dh::{self, ASSOCIATED_DATA_LEN};

/// Identifies a session: the initiator's X3DH ephemeral public key (its "base key"). Both
/// peers see the same value.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub(crate) X25519PublicKey);

impl SessionId {
    /// The 32 bytes.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0.to_bytes()
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionId(")?;
        write_hex(f, &self.0.as_bytes()[..8])?;
        f.write_str("..)")
    }
}

/// One end-to-end encrypted session with a peer: a Double Ratchet set up by X3DH.
///
/// Most apps use a [`SessionRecord`](crate::SessionRecord) per peer, which holds the current
/// session and a few previous ones and creates sessions from incoming initial messages. A
/// `Session` can also be used on its own, for example as the initiator:
///
/// ```
/// use ratchetbox::{Account, PreKeyBundle, Session, SessionConfig, SessionRecord, Timestamp};
/// let mut rng = ratchetbox::OsRng::new();
/// let now = Timestamp::from_unix_secs(1_764_000_000);
/// let alice = Account::new(&mut rng, now);
/// let mut bob = Account::new(&mut rng, now);
/// let bundle = bob.prekey_bundle(None, None)?;
///
/// let mut session = Session::initiate(&mut rng, &alice, &bundle, SessionConfig::default())?;
/// let wire = session.encrypt(&mut rng, b"hello Bob")?;
///
/// let mut bobs_record = SessionRecord::new();
/// assert_eq!(bobs_record.decrypt(&mut bob, &wire, now)?, b"hello Bob");
/// let reply = bobs_record.encrypt(&mut rng, b"hi Alice")?;
/// assert_eq!(session.decrypt(&reply, now)?, b"hi Alice");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct Session {
    local_identity: IdentityKey,
    remote_identity: IdentityKey,
    initiator: bool,
    base_key: X25519PublicKey,
    signed_prekey_id: SignedPreKeyId,
    one_time_prekey_id: Option<OneTimePreKeyId>,
    /// Present iff the session was set up with PQXDH.
    kem: Option<SessionKem>,
    /// An initiator repeats the setup in every message until it decrypts a reply.
    awaiting_reply: bool,
    /// `IK_initiator || IK_responder`, derived from the identities and the role.
    associated_data: [u8; ASSOCIATED_DATA_LEN],
    /// Derived with SK at setup and fixed for the session's life: the key exporter's secret
    /// (docs/PROTOCOL.md section 14). Zeroized on drop, never in `Debug`.
    exporter_secret: SecretBytes,
    ratchet: Ratchet,
}

/// The post-quantum part of a session's setup.
#[derive(Clone)]
struct SessionKem {
    prekey_id: KemPreKeyId,
    /// SHA-256 of the ML-KEM ciphertext, to recognize the setup in repeated initial messages.
    ciphertext_hash: [u8; 32],
    /// The ciphertext itself, kept by an initiator while it repeats the setup.
    ciphertext: Option<KemCiphertext>,
}

impl SessionKem {
    fn new(setup: &KemSetup, keep_ciphertext: bool) -> Self {
        Self {
            prekey_id: setup.prekey_id,
            ciphertext_hash: Sha256::digest(&setup.ciphertext[..]).into(),
            ciphertext: keep_ciphertext.then(|| setup.ciphertext.clone()),
        }
    }

    fn matches(&self, setup: Option<&KemSetup>) -> bool {
        setup.is_some_and(|k| {
            k.prekey_id == self.prekey_id
                && <[u8; 32]>::from(Sha256::digest(&k.ciphertext[..])) == self.ciphertext_hash
        })
    }
}

impl Session {
    /// Starts a session as the initiator from the peer's prekey bundle: PQXDH (X3DH plus an
    /// ML-KEM-1024 encapsulation to the bundle's KEM prekey), or classical X3DH for a bundle
    /// without a KEM prekey if `config` allows it. Verifies the prekey signatures and aborts
    /// on failure. Every message this session sends carries the setup until a reply has been
    /// decrypted.
    pub fn initiate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        account: &Account,
        bundle: &PreKeyBundle,
        config: SessionConfig,
    ) -> Result<Self, SetupError> {
        let initiated = x3dh::initiate(
            rng,
            account.identity(),
            bundle,
            config.classical_setup_allowed(),
        )?;
        let local_identity = account.identity_key();
        let remote_identity = bundle.identity_key();
        Ok(Self {
            local_identity,
            remote_identity,
            initiator: true,
            base_key: initiated.setup.base_key,
            signed_prekey_id: initiated.setup.signed_prekey_id,
            one_time_prekey_id: initiated.setup.one_time_prekey_id,
            kem: initiated
                .setup
                .kem
                .as_ref()
                .map(|k| SessionKem::new(k, true)),
            awaiting_reply: true,
            associated_data: x3dh::associated_data(&local_identity, &remote_identity),
            exporter_secret: initiated.secrets.exporter_secret,
            ratchet: Ratchet::new_initiator(
                initiated.secrets.shared_secret,
                bundle.signed_prekey().public_key(),
                config,
            ),
        })
    }

    /// The responder's side of X3DH for an initial message. Nothing is consumed here: the
    /// caller commits the one-time prekey only after the first message decrypted.
    pub(crate) fn respond(
        account: &Account,
        setup: &InitialSetup,
        config: SessionConfig,
    ) -> Result<Self, DecryptError> {
        let local_identity = account.identity_key();
        if setup.identity_key == local_identity {
            return Err(DecryptError::OwnIdentity);
        }
        if setup.kem.is_none() && !config.classical_setup_allowed() {
            return Err(DecryptError::ClassicalSetupRefused);
        }
        let signed_prekey = account.signed_prekey_pair(setup.signed_prekey_id)?;
        let one_time_prekey = setup
            .one_time_prekey_id
            .map(|id| account.one_time_prekey_pair(id))
            .transpose()?;
        let kem = setup
            .kem
            .as_ref()
            .map(|k| Ok::<_, DecryptError>((account.kem_prekey_pair(k.prekey_id)?, &k.ciphertext)))
            .transpose()?;
        let kem_one_time = kem.as_ref().is_some_and(|((_, one_time), _)| *one_time);
        if setup.one_time_prekey_id.is_none() && !kem_one_time {
            account.check_setup_unused(setup.signed_prekey_id, &setup.base_key)?;
        }
        let secrets = x3dh::respond(
            account.identity(),
            signed_prekey,
            one_time_prekey,
            kem.map(|((pair, _), ciphertext)| (pair, ciphertext)),
            setup,
        )
        .map_err(|_| DecryptError::LowOrderKey)?;
        Ok(Self {
            local_identity,
            remote_identity: setup.identity_key,
            initiator: false,
            base_key: setup.base_key,
            signed_prekey_id: setup.signed_prekey_id,
            one_time_prekey_id: setup.one_time_prekey_id,
            kem: setup.kem.as_ref().map(|k| SessionKem::new(k, false)),
            awaiting_reply: false,
            associated_data: x3dh::associated_data(&setup.identity_key, &local_identity),
            exporter_secret: secrets.exporter_secret,
            ratchet: Ratchet::new_responder(secrets.shared_secret, signed_prekey.clone(), config),
        })
    }

    /// Whether `setup` is exactly the X3DH setup this (responder) session was created from.
    pub(crate) fn was_created_by(&self, setup: &InitialSetup) -> bool {
        !self.initiator
            && self.base_key == setup.base_key
            && self.remote_identity == setup.identity_key
            && self.signed_prekey_id == setup.signed_prekey_id
            && self.one_time_prekey_id == setup.one_time_prekey_id
            && match &self.kem {
                Some(kem) => kem.matches(setup.kem.as_ref()),
                None => setup.kem.is_none(),
            }
    }

    fn setup(&self) -> InitialSetup {
        InitialSetup {
            identity_key: self.local_identity,
            base_key: self.base_key,
            signed_prekey_id: self.signed_prekey_id,
            one_time_prekey_id: self.one_time_prekey_id,
            kem: self.kem.as_ref().and_then(|k| {
                Some(KemSetup {
                    prekey_id: k.prekey_id,
                    ciphertext: k.ciphertext.clone()?,
                })
            }),
        }
    }

    /// Encrypts `plaintext` (raw bytes, at most 2^36 - 33 of them) and returns the message
    /// bytes to send. The peer decrypts it with [`decrypt`](Self::decrypt) or
    /// [`SessionRecord::decrypt`](crate::SessionRecord::decrypt); inside the encryption it
    /// is marked as raw bytes (docs/PROTOCOL.md section 11), so content APIs refuse it.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, EncryptError> {
        self.encrypt_parts(rng, &[KIND_RAW], plaintext)
    }

    /// Encrypts `plaintext` as the complete ratchet plaintext: it must start with its kind
    /// byte (content does).
    pub(crate) fn encrypt_plaintext<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, EncryptError> {
        self.encrypt_parts(rng, &[], plaintext)
    }

    fn encrypt_parts<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        prefix: &[u8],
        body: &[u8],
    ) -> Result<Vec<u8>, EncryptError> {
        let setup = self.awaiting_reply.then(|| self.setup());
        self.ratchet.encrypt(
            rng,
            &self.associated_data,
            self.message_version(),
            setup.as_ref(),
            prefix,
            body,
        )
    }

    /// Decrypts message bytes received from the peer, sent with [`encrypt`](Self::encrypt)
    /// (raw bytes). `now` is recorded with any message keys this message makes the session
    /// skip (see [`SessionRecord::prune`](crate::SessionRecord::prune)).
    ///
    /// A message that carries content fails with [`DecryptError::ContentMessage`] (use
    /// [`SessionRecord::receive`](crate::SessionRecord::receive)). On error the session is
    /// exactly as it was.
    pub fn decrypt(&mut self, message: &[u8], now: Timestamp) -> Result<Vec<u8>, DecryptError> {
        let message = Body::parse(message)?;
        let plaintext = self.decrypt_message(
            &message,
            now,
            &mut |plaintext: &[u8]| content::check_kind(plaintext, Kind::Raw),
            Budget::Current,
            &mut Work::default(),
        )?;
        Ok(content::strip_kind(plaintext))
    }

    /// Derives `out.len()` bytes (1 to [`MAX_EXPORTED_KEY_LEN`](crate::MAX_EXPORTED_KEY_LEN))
    /// for another channel, for example the media keys of a call, from this session's
    /// exporter secret, `label` (its purpose, 1 to
    /// [`MAX_EXPORTER_LABEL_LEN`](crate::MAX_EXPORTER_LABEL_LEN) bytes) and `context` (at
    /// most [`MAX_EXPORTER_CONTEXT_LEN`](crate::MAX_EXPORTER_CONTEXT_LEN) bytes, may be
    /// empty), like a TLS exporter (RFC 5705, RFC 8446 section 7.5).
    ///
    /// Both peers of the session derive the same bytes for the same label, context and
    /// length, whatever the state of their ratchets; another label, context, length or
    /// session gives an independent key. The secret is fixed when the session is set up:
    /// exported keys have **no forward secrecy within the session** (whoever obtains the
    /// session state can derive every key it ever exported or will export) and do not heal
    /// after a compromise as message keys do. docs/PROTOCOL.md section 14 has the exact
    /// derivation.
    ///
    /// On error nothing is written to `out`.
    ///
    /// ```
    /// use ratchetbox::{Account, SessionRecord, Timestamp};
    /// let mut rng = ratchetbox::OsRng::new();
    /// let now = Timestamp::from_unix_secs(1_764_000_000);
    /// let alice = Account::new(&mut rng, now);
    /// let mut bob = Account::new(&mut rng, now);
    /// let mut alice_to_bob = SessionRecord::new();
    /// alice_to_bob.initiate(&mut rng, &alice, &bob.prekey_bundle(None, None)?)?;
    /// let mut bob_to_alice = SessionRecord::new();
    /// bob_to_alice.decrypt(&mut bob, &alice_to_bob.encrypt(&mut rng, b"call me")?, now)?;
    ///
    /// let call_id = b"call 42";
    /// let mut alices_key = [0u8; 32];
    /// let mut bobs_key = [0u8; 32];
    /// alice_to_bob.session().expect("a session").export_key(b"media key", call_id, &mut alices_key)?;
    /// bob_to_alice.session().expect("a session").export_key(b"media key", call_id, &mut bobs_key)?;
    /// assert_eq!(alices_key, bobs_key);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn export_key(
        &self,
        label: &[u8],
        context: &[u8],
        out: &mut [u8],
    ) -> Result<(), ExportError> {
        exporter::export(&self.exporter_secret, label, context, out)
    }

    /// Decrypts a decoded message; `accept` checks the plaintext before anything is
    /// committed, `budget` bounds a new chain's skip, and the work done before
    /// authentication is added to `work`. On failure the session has not changed.
    pub(crate) fn decrypt_message(
        &mut self,
        message: &Body<'_>,
        now: Timestamp,
        accept: Accept<'_>,
        budget: Budget,
        work: &mut Work,
    ) -> Result<Vec<u8>, DecryptError> {
        let ratchet_message = match message {
            Body::Ratchet(r) => r,
            Body::Initial(setup, r) => {
                if !self.was_created_by(setup) {
                    return Err(DecryptError::NoSession);
                }
                r
            }
        };
        // The version byte says how the session was set up; the header's AES-GCM
        // associated data starts with it, so a changed byte could not authenticate anyway.
        if ratchet_message.header.version != self.message_version() {
            return Err(DecryptError::AuthenticationFailed);
        }
        let plaintext = self.ratchet.decrypt(
            &self.associated_data,
            ratchet_message,
            now,
            accept,
            budget,
            work,
        )?;
        if self.awaiting_reply {
            self.awaiting_reply = false;
            if let Some(kem) = &mut self.kem {
                kem.ciphertext = None;
            }
        }
        Ok(plaintext)
    }

    /// The session's identifier, the same on both sides.
    pub fn id(&self) -> SessionId {
        SessionId(self.base_key)
    }

    /// Our identity key.
    pub fn local_identity(&self) -> IdentityKey {
        self.local_identity
    }

    /// The peer's identity key.
    pub fn remote_identity(&self) -> IdentityKey {
        self.remote_identity
    }

    /// Whether the session was set up with PQXDH (X3DH plus ML-KEM-1024), protecting its
    /// initial key against an adversary who records traffic now and has a quantum computer
    /// later.
    pub fn is_post_quantum(&self) -> bool {
        self.kem.is_some()
    }

    /// The version byte of this session's messages: [`PQXDH_MESSAGE_VERSION`] after a
    /// PQXDH setup, [`VERSION`] after a classical one.
    fn message_version(&self) -> u8 {
        if self.is_post_quantum() {
            PQXDH_MESSAGE_VERSION
        } else {
            VERSION
        }
    }

    /// Whether this side started the session.
    pub fn is_initiator(&self) -> bool {
        self.initiator
    }

    /// Whether this side started the session and has not yet decrypted a reply; until then
    /// every message it sends repeats the X3DH setup.
    pub fn awaiting_reply(&self) -> bool {
        self.awaiting_reply
    }

    /// The session's limits.
    pub fn config(&self) -> SessionConfig {
        self.ratchet.config()
    }

    /// How many skipped message keys the session currently stores.
    pub fn skipped_key_count(&self) -> usize {
        self.ratchet.skipped_keys()
    }

    pub(crate) fn ratchet(&self) -> &Ratchet {
        &self.ratchet
    }

    pub(crate) fn ratchet_mut(&mut self) -> &mut Ratchet {
        &mut self.ratchet
    }

    pub(crate) fn to_proto(&self) -> pb::SessionState {
        self.to_proto_with(true)
    }

    /// The state; without the skipped message keys themselves unless `with_skipped_keys`
    /// (docs/PROTOCOL.md section 8.3).
    pub(crate) fn to_proto_with(&self, with_skipped_keys: bool) -> pb::SessionState {
        let config = self.ratchet.config();
        pb::SessionState {
            local_identity: self.local_identity.to_bytes().to_vec(),
            remote_identity: self.remote_identity.to_bytes().to_vec(),
            initiator: self.initiator,
            base_key: self.base_key.to_bytes().to_vec(),
            signed_prekey_id: self.signed_prekey_id.0,
            one_time_prekey_id: self.one_time_prekey_id.map(|id| id.0),
            awaiting_reply: self.awaiting_reply,
            ratchet: Some(self.ratchet.to_proto(with_skipped_keys)),
            limits: Some(crate::config::limits_to_proto(&config)),
            exporter_secret: self.exporter_secret.0.to_vec(),
            kem: self.kem.as_ref().map(|k| pb::SessionKemState {
                prekey_id: k.prekey_id.0,
                ciphertext_hash: k.ciphertext_hash.to_vec(),
                ciphertext: k
                    .ciphertext
                    .as_ref()
                    .map(|c| c.to_vec())
                    .unwrap_or_default(),
            }),
        }
    }

    pub(crate) fn from_proto(p: &pb::SessionState) -> Result<Self, DecodeError> {
        use crate::wire::{required, stored_identity_key, x25519_key};
        const OBJECT: &str = "SessionState";
        let local_identity = stored_identity_key(&p.local_identity, OBJECT, "local_identity")?;
        let remote_identity = stored_identity_key(&p.remote_identity, OBJECT, "remote_identity")?;
        if p.awaiting_reply && !p.initiator {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "awaiting_reply",
                reason: "only an initiator awaits a reply",
            });
        }
        let config =
            crate::config::limits_from_proto(required(p.limits.as_ref(), OBJECT, "limits")?)?;
        let ratchet =
            Ratchet::from_proto(required(p.ratchet.as_ref(), OBJECT, "ratchet")?, config)?;
        let associated_data = if p.initiator {
            x3dh::associated_data(&local_identity, &remote_identity)
        } else {
            x3dh::associated_data(&remote_identity, &local_identity)
        };
        let kem = p
            .kem
            .as_ref()
            .map(|k| {
                let ciphertext = if k.ciphertext.is_empty() {
                    None
                } else {
                    let bytes: [u8; KEM_CIPHERTEXT_LEN] =
                        crate::wire::fixed(&k.ciphertext, "SessionKemState", "ciphertext")?;
                    Some(alloc::boxed::Box::new(bytes))
                };
                Ok::<_, DecodeError>(SessionKem {
                    prekey_id: KemPreKeyId(k.prekey_id),
                    ciphertext_hash: crate::wire::fixed(
                        &k.ciphertext_hash,
                        "SessionKemState",
                        "ciphertext_hash",
                    )?,
                    ciphertext,
                })
            })
            .transpose()?;
        if p.awaiting_reply && kem.as_ref().is_some_and(|k| k.ciphertext.is_none()) {
            return Err(DecodeError::MissingField {
                object: "SessionKemState",
                field: "ciphertext",
            });
        }
        let exporter_secret = SecretBytes(crate::wire::fixed(
            &p.exporter_secret,
            OBJECT,
            "exporter_secret",
        )?);
        Ok(Self {
            kem,
            exporter_secret,
            local_identity,
            remote_identity,
            initiator: p.initiator,
            base_key: x25519_key(&p.base_key, OBJECT, "base_key")?,
            signed_prekey_id: SignedPreKeyId(p.signed_prekey_id),
            one_time_prekey_id: p.one_time_prekey_id.map(OneTimePreKeyId),
            awaiting_reply: p.awaiting_reply,
            associated_data,
            ratchet,
        })
    }
}

impl fmt::Debug for Session {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id())
            .field("local_identity", &self.local_identity)
            .field("remote_identity", &self.remote_identity)
            .field("initiator", &self.initiator)
            .field("awaiting_reply", &self.awaiting_reply)
            .field("post_quantum", &self.is_post_quantum())
            .field("skipped_keys", &self.ratchet.skipped_keys())
            .finish_non_exhaustive()
    }
}
