//! A session: one Double Ratchet between two identities, set up by X3DH.

use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::account::Account;
use crate::config::SessionConfig;
use crate::error::{DecodeError, DecryptError, EncryptError, SetupError};
use crate::keys::{IdentityKey, KEY_LEN, X25519PublicKey, write_hex};
use crate::ratchet::Ratchet;
use crate::time::Timestamp;
use crate::wire::bundle::{OneTimePreKeyId, PreKeyBundle, SignedPreKeyId};
use crate::wire::generated as pb;
use crate::wire::message::{Body, InitialSetup};
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
/// let bundle = bob.prekey_bundle(None)?;
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
    /// An initiator repeats the setup in every message until it decrypts a reply.
    awaiting_reply: bool,
    /// `IK_initiator || IK_responder`, derived from the identities and the role.
    associated_data: [u8; ASSOCIATED_DATA_LEN],
    ratchet: Ratchet,
}

impl Session {
    /// Starts a session as the initiator from the peer's prekey bundle (X3DH). Verifies the
    /// signed prekey's signature and aborts on failure. Every message this session sends
    /// carries the setup until a reply has been decrypted.
    pub fn initiate<R: CryptoRng + ?Sized>(
        rng: &mut R,
        account: &Account,
        bundle: &PreKeyBundle,
        config: SessionConfig,
    ) -> Result<Self, SetupError> {
        let initiated = x3dh::initiate(rng, account.identity(), bundle)?;
        let local_identity = account.identity_key();
        let remote_identity = bundle.identity_key();
        Ok(Self {
            local_identity,
            remote_identity,
            initiator: true,
            base_key: initiated.setup.base_key,
            signed_prekey_id: initiated.setup.signed_prekey_id,
            one_time_prekey_id: initiated.setup.one_time_prekey_id,
            awaiting_reply: true,
            associated_data: x3dh::associated_data(&local_identity, &remote_identity),
            ratchet: Ratchet::new_initiator(
                initiated.shared_secret,
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
        let signed_prekey = account.signed_prekey_pair(setup.signed_prekey_id)?;
        let one_time_prekey = setup
            .one_time_prekey_id
            .map(|id| account.one_time_prekey_pair(id))
            .transpose()?;
        if setup.one_time_prekey_id.is_none() {
            account.check_setup_unused(setup.signed_prekey_id, &setup.base_key)?;
        }
        let shared_secret =
            x3dh::respond(account.identity(), signed_prekey, one_time_prekey, setup)
                .map_err(|_| DecryptError::LowOrderKey)?;
        Ok(Self {
            local_identity,
            remote_identity: setup.identity_key,
            initiator: false,
            base_key: setup.base_key,
            signed_prekey_id: setup.signed_prekey_id,
            one_time_prekey_id: setup.one_time_prekey_id,
            awaiting_reply: false,
            associated_data: x3dh::associated_data(&setup.identity_key, &local_identity),
            ratchet: Ratchet::new_responder(shared_secret, signed_prekey.clone(), config),
        })
    }

    /// Whether `setup` is exactly the X3DH setup this (responder) session was created from.
    pub(crate) fn was_created_by(&self, setup: &InitialSetup) -> bool {
        !self.initiator
            && self.base_key == setup.base_key
            && self.remote_identity == setup.identity_key
            && self.signed_prekey_id == setup.signed_prekey_id
            && self.one_time_prekey_id == setup.one_time_prekey_id
    }

    fn setup(&self) -> InitialSetup {
        InitialSetup {
            identity_key: self.local_identity,
            base_key: self.base_key,
            signed_prekey_id: self.signed_prekey_id,
            one_time_prekey_id: self.one_time_prekey_id,
        }
    }

    /// Encrypts `plaintext` and returns the message bytes to send.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, EncryptError> {
        let setup = self.awaiting_reply.then(|| self.setup());
        self.ratchet
            .encrypt(rng, &self.associated_data, setup.as_ref(), plaintext)
    }

    /// Decrypts message bytes received from the peer. `now` is recorded with any message keys
    /// this message makes the session skip (see
    /// [`SessionRecord::prune_skipped_keys`](crate::SessionRecord::prune_skipped_keys)).
    ///
    /// On error the session is exactly as it was.
    pub fn decrypt(&mut self, message: &[u8], now: Timestamp) -> Result<Vec<u8>, DecryptError> {
        let message = Body::parse(message)?;
        self.decrypt_message(&message, now)
    }

    /// Decrypts a decoded message; on failure the session has not changed.
    pub(crate) fn decrypt_message(
        &mut self,
        message: &Body<'_>,
        now: Timestamp,
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
        let plaintext = self
            .ratchet
            .decrypt(&self.associated_data, ratchet_message, now)?;
        self.awaiting_reply = false;
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

    pub(crate) fn ratchet_mut(&mut self) -> &mut Ratchet {
        &mut self.ratchet
    }

    pub(crate) fn to_proto(&self) -> pb::SessionState {
        let config = self.ratchet.config();
        pb::SessionState {
            local_identity: self.local_identity.to_bytes().to_vec(),
            remote_identity: self.remote_identity.to_bytes().to_vec(),
            initiator: self.initiator,
            base_key: self.base_key.to_bytes().to_vec(),
            signed_prekey_id: self.signed_prekey_id.0,
            one_time_prekey_id: self.one_time_prekey_id.map(|id| id.0),
            awaiting_reply: self.awaiting_reply,
            ratchet: Some(self.ratchet.to_proto()),
            limits: Some(crate::config::limits_to_proto(&config)),
        }
    }

    pub(crate) fn from_proto(p: &pb::SessionState) -> Result<Self, DecodeError> {
        use crate::wire::{identity_key, required, x25519_key};
        const OBJECT: &str = "SessionState";
        let local_identity = identity_key(&p.local_identity, OBJECT, "local_identity")?;
        let remote_identity = identity_key(&p.remote_identity, OBJECT, "remote_identity")?;
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
        Ok(Self {
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
            .field("skipped_keys", &self.ratchet.skipped_keys())
            .finish_non_exhaustive()
    }
}
