//! The per-peer session record: the current session, a bounded number of previous ones, and
//! the logic that routes each incoming message to the session it belongs to.

use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::account::Account;
use crate::config::SessionConfig;
use crate::error::{DecodeError, DecryptError, EncryptError, SetupError};
use crate::keys::IdentityKey;
use crate::session::{Session, SessionId};
use crate::time::Timestamp;
use crate::wire::bundle::PreKeyBundle;
use crate::wire::generated as pb;
use crate::wire::message::Body;

/// Everything kept about one peer: the current session and up to
/// [`SessionConfig::max_previous_sessions`] previous ones.
///
/// The record is the main API: encrypt with [`encrypt`](Self::encrypt), pass every incoming
/// message to [`decrypt`](Self::decrypt) together with the [`Account`]. An initial message
/// that starts a new session is accepted there (X3DH as the responder); the one-time prekey
/// it names is consumed only if the message decrypts. Messages that belong to a previous
/// session still decrypt, and that session becomes current again; when both peers start a
/// session at the same moment, both settle on the same one.
///
/// Persist the record (and the account) after every successful call.
///
/// ```
/// use ratchetbox::{Account, SessionRecord, Timestamp};
/// let mut rng = ratchetbox::OsRng::new();
/// let now = Timestamp::from_unix_secs(1_764_000_000);
/// let mut alice = Account::new(&mut rng, now);
/// let mut bob = Account::new(&mut rng, now);
/// let otk = bob.generate_one_time_prekeys(&mut rng, 1)?[0];
/// let bundle = bob.prekey_bundle(Some(otk.id()))?;
///
/// let mut alice_to_bob = SessionRecord::new();
/// alice_to_bob.initiate(&mut rng, &alice, &bundle)?;
/// let m1 = alice_to_bob.encrypt(&mut rng, b"first")?;
/// let m2 = alice_to_bob.encrypt(&mut rng, b"second")?;
///
/// let mut bob_to_alice = SessionRecord::new();
/// // Out of order: both carry the setup and land in the same session.
/// assert_eq!(bob_to_alice.decrypt(&mut bob, &m2, now)?, b"second");
/// assert_eq!(bob_to_alice.decrypt(&mut bob, &m1, now)?, b"first");
/// // A replay is rejected and creates nothing.
/// assert!(bob_to_alice.decrypt(&mut bob, &m1, now).is_err());
///
/// let reply = bob_to_alice.encrypt(&mut rng, b"got both")?;
/// assert_eq!(alice_to_bob.decrypt(&mut alice, &reply, now)?, b"got both");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct SessionRecord {
    current: Option<Session>,
    /// Most recent first, at most `config.max_previous_sessions()`.
    previous: VecDeque<Session>,
    config: SessionConfig,
}

impl Default for SessionRecord {
    fn default() -> Self {
        Self::new()
    }
}

impl SessionRecord {
    /// An empty record with the default limits.
    pub fn new() -> Self {
        Self::with_config(SessionConfig::default())
    }

    /// An empty record whose sessions use `config`.
    pub fn with_config(config: SessionConfig) -> Self {
        Self {
            current: None,
            previous: VecDeque::new(),
            config,
        }
    }

    /// Starts a new session with the owner of `bundle` (X3DH as the initiator) and makes it
    /// current. The previous current session is kept as a previous session.
    pub fn initiate<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        account: &Account,
        bundle: &PreKeyBundle,
    ) -> Result<(), SetupError> {
        let session = Session::initiate(rng, account, bundle, self.config)?;
        if let Some(old) = self.current.replace(session) {
            self.archive(old);
        }
        Ok(())
    }

    /// Encrypts `plaintext` with the current session.
    pub fn encrypt<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, EncryptError> {
        self.current
            .as_mut()
            .ok_or(EncryptError::NoSession)?
            .encrypt(rng, plaintext)
    }

    /// Decrypts message bytes from this peer.
    ///
    /// An initial message whose setup matches a session of this record decrypts in that
    /// session; otherwise it starts a new session with `account`'s prekeys, which becomes
    /// current if the message decrypts (and only then is the one-time prekey consumed). A
    /// ratchet message is tried on the current session, then on the previous ones, and the
    /// session that decrypts it becomes current.
    ///
    /// On error the record and the account are exactly as they were.
    pub fn decrypt(
        &mut self,
        account: &mut Account,
        message: &[u8],
        now: Timestamp,
    ) -> Result<Vec<u8>, DecryptError> {
        let message = Body::parse(message)?;
        match &message {
            Body::Initial(setup, _) => {
                let setup = *setup;
                if let Some(index) = self.position(|s| s.was_created_by(&setup)) {
                    return self.decrypt_with(index, &message, now);
                }
                let mut session = Session::respond(account, &setup, self.config)?;
                let plaintext = session.decrypt_message(&message, now)?;
                // Commit: the message is authentic.
                match setup.one_time_prekey_id {
                    Some(id) => account.consume_one_time_prekey(id),
                    None => account.record_used_setup(setup.signed_prekey_id, setup.base_key),
                }
                self.install_inbound(session);
                Ok(plaintext)
            }
            Body::Ratchet(_) => {
                let count = usize::from(self.current.is_some()) + self.previous.len();
                if count == 0 {
                    return Err(DecryptError::NoSession);
                }
                let mut first_error = None;
                for index in 0..count {
                    match self.decrypt_with(index, &message, now) {
                        Ok(plaintext) => return Ok(plaintext),
                        // A session that recognized the message's chain says more than one
                        // that could not authenticate it.
                        Err(DecryptError::AuthenticationFailed) => {}
                        Err(e) => {
                            first_error.get_or_insert(e);
                        }
                    }
                }
                Err(first_error.unwrap_or(DecryptError::AuthenticationFailed))
            }
        }
    }

    /// Index 0 is the current session, 1.. the previous ones.
    fn session_mut(&mut self, index: usize) -> Option<&mut Session> {
        match (index, &mut self.current) {
            (0, Some(current)) => Some(current),
            (_, Some(_)) => self.previous.get_mut(index - 1),
            (_, None) => self.previous.get_mut(index),
        }
    }

    fn position(&self, predicate: impl FnMut(&Session) -> bool) -> Option<usize> {
        self.current
            .iter()
            .chain(self.previous.iter())
            .position(predicate)
    }

    /// Decrypts with session `index` and, on success, makes it current.
    fn decrypt_with(
        &mut self,
        index: usize,
        message: &Body<'_>,
        now: Timestamp,
    ) -> Result<Vec<u8>, DecryptError> {
        let session = self.session_mut(index).ok_or(DecryptError::NoSession)?;
        let plaintext = session.decrypt_message(message, now)?;
        self.promote(index);
        Ok(plaintext)
    }

    fn promote(&mut self, index: usize) {
        let previous_index = if self.current.is_some() {
            index.checked_sub(1)
        } else {
            Some(index)
        };
        let Some(previous_index) = previous_index else {
            return; // already current
        };
        if let Some(session) = self.previous.remove(previous_index)
            && let Some(old) = self.current.replace(session)
        {
            self.previous.push_front(old);
        }
    }

    /// Makes a session created from an incoming initial message current, except in a
    /// simultaneous initiation: if our current session is one we started with the same peer
    /// and it has not heard back, both sides keep the session with the smaller id, so they
    /// converge at once.
    fn install_inbound(&mut self, session: Session) {
        match self.current.take() {
            Some(ours)
                if ours.awaiting_reply()
                    && ours.remote_identity() == session.remote_identity()
                    && ours.id() < session.id() =>
            {
                self.current = Some(ours);
                self.archive(session);
            }
            Some(old) => {
                self.current = Some(session);
                self.archive(old);
            }
            None => self.current = Some(session),
        }
    }

    fn archive(&mut self, session: Session) {
        self.previous.push_front(session);
        self.previous
            .truncate(self.config.max_previous_sessions() as usize);
    }

    /// The current session, if any.
    pub fn session(&self) -> Option<&Session> {
        self.current.as_ref()
    }

    /// The previous sessions, most recent first.
    pub fn previous_sessions(&self) -> impl Iterator<Item = &Session> {
        self.previous.iter()
    }

    /// The current session's id, if any.
    pub fn session_id(&self) -> Option<SessionId> {
        self.current.as_ref().map(Session::id)
    }

    /// The peer's identity key in the current session, if any.
    pub fn remote_identity(&self) -> Option<IdentityKey> {
        self.current.as_ref().map(Session::remote_identity)
    }

    /// The limits for sessions of this record.
    pub fn config(&self) -> SessionConfig {
        self.config
    }

    /// Drops skipped message keys stored before `now - max_age_secs` from every session of
    /// the record; returns how many were dropped. Messages whose keys are dropped can no
    /// longer be decrypted and fail with [`DecryptError::Expired`].
    pub fn prune_skipped_keys(&mut self, now: Timestamp, max_age_secs: u64) -> usize {
        let cutoff = now.saturating_sub_secs(max_age_secs);
        self.current
            .iter_mut()
            .chain(self.previous.iter_mut())
            .map(|s| s.ratchet_mut().prune_skipped_keys(cutoff))
            .sum()
    }

    pub(crate) fn to_proto(&self) -> pb::SessionRecordState {
        pb::SessionRecordState {
            current: self.current.as_ref().map(Session::to_proto),
            previous: self.previous.iter().map(Session::to_proto).collect(),
            limits: Some(crate::config::limits_to_proto(&self.config)),
        }
    }

    pub(crate) fn from_proto(p: &pb::SessionRecordState) -> Result<Self, DecodeError> {
        const OBJECT: &str = "SessionRecordState";
        let limits = crate::wire::required(p.limits.as_ref(), OBJECT, "limits")?;
        let config = crate::config::limits_from_proto(limits)?;
        if p.previous.len() > config.max_previous_sessions() as usize {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "previous",
                reason: "more previous sessions than the record's limit",
            });
        }
        Ok(Self {
            current: p.current.as_ref().map(Session::from_proto).transpose()?,
            previous: p
                .previous
                .iter()
                .map(Session::from_proto)
                .collect::<Result<_, _>>()?,
            config,
        })
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("current", &self.current)
            .field("previous", &self.previous.len())
            .finish_non_exhaustive()
    }
}
