//! The per-peer session record: the current session, a bounded number of previous ones, and
//! the logic that routes each incoming message to the session it belongs to.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::account::Account;
use crate::config::SessionConfig;
use zeroize::Zeroizing;

use crate::content::{self, Content, Kind, ReceivedMessage, SentMessage};
use crate::error::{
    ContentError, DecodeError, DecryptError, EncryptError, ExportError, SetupError, TrustError,
};
use crate::expiry::{self, ExpiryTimer};
use crate::keys::IdentityKey;
use crate::ratchet::{Accept, Budget, Work};
use crate::session::{Session, SessionId};
use crate::time::Timestamp;
use crate::trust::{IdentityChange, PeerIdentity};
use crate::wire::bundle::PreKeyBundle;
use crate::wire::generated as pb;
use crate::wire::message::{Body, RatchetHeader};

/// Everything kept about one peer: the current session and up to
/// [`SessionConfig::max_previous_sessions`] previous ones.
///
/// The record is the main API: encrypt with [`encrypt`](Self::encrypt), pass every incoming
/// message to [`decrypt`](Self::decrypt) together with the [`Account`]. An initial message
/// that starts a new session is accepted there (X3DH as the responder); the one-time prekey
/// it names is consumed only if the message decrypts. Messages that belong to a previous
/// session still decrypt, and a previous session becomes current again only if it precedes
/// the current one in an order both peers compute (post-quantum first, then the smaller id),
/// so no message makes a classical session current over a post-quantum one; when both
/// peers start a session at the same moment, both settle on the same one (docs/PROTOCOL.md
/// section 6.7).
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
/// let bundle = bob.prekey_bundle(Some(otk.id()), None)?;
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
    /// Sessions are boxed: a session holds its keys inline, and it stays in its box while
    /// it moves between `current` and `previous` (and is zeroized there when dropped), so
    /// no copy of its keys is left behind in freed memory.
    current: Option<Box<Session>>,
    /// Most recent first, at most `config.max_previous_sessions()`.
    previous: VecDeque<Box<Session>>,
    config: SessionConfig,
    /// The peer's identity key, set by the first session (trust on first use).
    peer: Option<PeerIdentity>,
    /// The conversation's disappearing-message setting.
    timer: ExpiryTimer,
}

/// Whether a decryption failed after the message authenticated in a session (so no other
/// session need try it): the plaintext was refused before anything was committed.
fn refused_after_authentication(error: &DecryptError) -> bool {
    matches!(
        error,
        DecryptError::InvalidContent(_)
            | DecryptError::ContentMessage
            | DecryptError::RawMessage
            | DecryptError::UnknownPlaintextKind { .. }
            | DecryptError::EmptyPlaintext
    )
}

/// How long after a disappearing-message timer has run out the keys of messages that never
/// arrived are kept anyway (see [`SessionRecord::prune`]): one day.
pub const EXPIRED_TIMER_GRACE_SECS: u64 = 24 * 60 * 60;

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
            peer: None,
            timer: ExpiryTimer::OFF,
        }
    }

    /// Fails if `identity` is not the peer identity this record knows.
    fn check_identity(&self, identity: &IdentityKey) -> Result<(), Box<IdentityChange>> {
        match self.peer {
            Some(peer) if peer.key() != *identity => {
                Err(Box::new(IdentityChange::new(peer, *identity)))
            }
            _ => Ok(()),
        }
    }

    fn remember_identity(&mut self, identity: IdentityKey) {
        if self.peer.is_none() {
            self.peer = Some(PeerIdentity::first_use(identity));
        }
    }

    /// Starts a new session with the owner of `bundle` (X3DH as the initiator) and makes it
    /// current. The previous current session is kept as a previous session.
    ///
    /// If the record already knows the peer's identity key and the bundle carries another,
    /// nothing happens and [`SetupError::IdentityChanged`] reports the change.
    pub fn initiate<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        account: &Account,
        bundle: &PreKeyBundle,
    ) -> Result<(), SetupError> {
        self.check_identity(&bundle.identity_key())
            .map_err(SetupError::IdentityChanged)?;
        let session = Session::initiate(rng, account, bundle, self.config)?;
        self.remember_identity(bundle.identity_key());
        if let Some(old) = self.current.replace(Box::new(session)) {
            self.archive(old);
        }
        Ok(())
    }

    /// Encrypts `plaintext` (raw bytes, at most 2^36 - 33 of them) with the current session.
    /// The peer decrypts it with [`decrypt`](Self::decrypt); inside the encryption it is
    /// marked as raw bytes (docs/PROTOCOL.md section 11), so
    /// [`receive`](Self::receive) refuses it with [`DecryptError::RawMessage`].
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

    /// Encrypts `plaintext` as the complete ratchet plaintext, which starts with its kind
    /// byte (content, or bytes crafted by tests and fuzz targets).
    pub(crate) fn encrypt_plaintext<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, EncryptError> {
        self.current
            .as_mut()
            .ok_or(EncryptError::NoSession)?
            .encrypt_plaintext(rng, plaintext)
    }

    /// Decrypts message bytes from this peer.
    ///
    /// An initial message whose setup matches a session of this record decrypts in that
    /// session; otherwise it starts a new session with
    /// `account`'s prekeys, stored if the message decrypts (and only then is the one-time
    /// prekey consumed). The new session becomes current unless the current one is
    /// post-quantum and the new one classical, or both peers started a session at once and
    /// the current one wins the tie-break. A ratchet message is tried on the current
    /// session, then on the previous ones (docs/PROTOCOL.md section 6.7 says which ones). A
    /// previous session that decrypts a message becomes current only if it precedes the
    /// current one (post-quantum first, then the smaller id).
    ///
    /// It decrypts what the peer sent with [`encrypt`](Self::encrypt). A message sent with
    /// [`send`](Self::send) or [`set_expiry_timer`](Self::set_expiry_timer) fails with
    /// [`DecryptError::ContentMessage`]: pass it to [`receive`](Self::receive).
    ///
    /// On error the record and the account are exactly as they were.
    pub fn decrypt(
        &mut self,
        account: &mut Account,
        message: &[u8],
        now: Timestamp,
    ) -> Result<Vec<u8>, DecryptError> {
        let plaintext = self.decrypt_with(account, message, now, &mut |plaintext| {
            content::check_kind(plaintext, Kind::Raw)
        })?;
        Ok(content::strip_kind(plaintext))
    }

    /// Decrypts a message into its complete ratchet plaintext (kind byte included), with a
    /// check of the plaintext that must pass before anything is committed.
    pub(crate) fn decrypt_with(
        &mut self,
        account: &mut Account,
        message: &[u8],
        now: Timestamp,
        accept: Accept<'_>,
    ) -> Result<Vec<u8>, DecryptError> {
        self.decrypt_counting(account, message, now, accept, &mut Work::default())
    }

    /// [`decrypt_with`](Self::decrypt_with), adding the work done before authentication
    /// to `work`.
    pub(crate) fn decrypt_counting(
        &mut self,
        account: &mut Account,
        message: &[u8],
        now: Timestamp,
        accept: Accept<'_>,
        work: &mut Work,
    ) -> Result<Vec<u8>, DecryptError> {
        let message = Body::parse(message)?;
        match &message {
            Body::Initial(setup, _) => {
                if let Some(index) = self.position(|s| s.was_created_by(setup)) {
                    let promote = self.may_promote(index);
                    return self.decrypt_in(index, &message, now, accept, promote, work);
                }
                let mut session = Session::respond(account, setup, self.config)?;
                let plaintext =
                    session.decrypt_message(&message, now, accept, Budget::Current, work)?;
                // The message is authentic, but under which identity? A different key than
                // the conversation's is reported, never installed silently.
                self.check_identity(&setup.identity_key)
                    .map_err(DecryptError::IdentityChanged)?;
                // Commit.
                self.remember_identity(setup.identity_key);
                account.commit_setup(setup);
                self.install_inbound(session);
                Ok(plaintext)
            }
            Body::Ratchet(ratchet) => {
                let count = usize::from(self.current.is_some()) + self.previous.len();
                if count == 0 {
                    return Err(DecryptError::NoSession);
                }
                // A message on a chain a session knows can only be for that session: a peer
                // draws a fresh ratchet key for every chain, so only the first session (the
                // current one first) that knows the chain tries it. Otherwise the message
                // starts a new chain in one of the sessions that hold a ratchet key pair.
                let header = &ratchet.header;
                let known = (0..count).find(|&i| self.knows_chain(i, header));
                let mut first_error = None;
                for index in 0..count {
                    let candidate = match known {
                        Some(known) => index == known,
                        None => self.can_start_chain(index),
                    };
                    if !candidate {
                        continue;
                    }
                    let promote = self.may_promote(index);
                    match self.decrypt_in(index, &message, now, accept, promote, work) {
                        Ok(plaintext) => return Ok(plaintext),
                        // The message authenticated in this session but was refused.
                        Err(e) if refused_after_authentication(&e) => return Err(e),
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
            (_, Some(_)) => self.previous.get_mut(index - 1).map(|s| &mut **s),
            (_, None) => self.previous.get_mut(index).map(|s| &mut **s),
        }
    }

    /// Index 0 is the current session, 1.. the previous ones.
    fn session_at(&self, index: usize) -> Option<&Session> {
        match (index, &self.current) {
            (0, Some(current)) => Some(current),
            (_, Some(_)) => self.previous.get(index - 1).map(|s| &**s),
            (_, None) => self.previous.get(index).map(|s| &**s),
        }
    }

    fn knows_chain(&self, index: usize, header: &RatchetHeader) -> bool {
        self.session_at(index)
            .is_some_and(|s| s.ratchet().knows_chain(header))
    }

    fn can_start_chain(&self, index: usize) -> bool {
        self.session_at(index)
            .is_some_and(|s| s.ratchet().can_start_chain())
    }

    fn is_current(&self, index: usize) -> bool {
        index == 0 && self.current.is_some()
    }

    fn position(&self, predicate: impl FnMut(&Session) -> bool) -> Option<usize> {
        self.current
            .iter()
            .chain(self.previous.iter())
            .map(|s| &**s)
            .position(predicate)
    }

    /// Decrypts with session `index` and, on success, makes it current if `promote`.
    fn decrypt_in(
        &mut self,
        index: usize,
        message: &Body<'_>,
        now: Timestamp,
        accept: Accept<'_>,
        promote: bool,
        work: &mut Work,
    ) -> Result<Vec<u8>, DecryptError> {
        let budget = if self.is_current(index) {
            Budget::Current
        } else {
            Budget::Previous
        };
        let session = self.session_mut(index).ok_or(DecryptError::NoSession)?;
        let plaintext = session.decrypt_message(message, now, accept, budget, work)?;
        if promote {
            self.promote(index);
        }
        Ok(plaintext)
    }

    /// Whether a message that decrypts in session `index` makes it current (PROTOCOL.md
    /// section 6.7, rule 3): a previous session becomes current again only if it
    /// [precedes](precedes) the current one.
    fn may_promote(&self, index: usize) -> bool {
        let Some(current) = self.current.as_deref() else {
            return true;
        };
        if index == 0 {
            return false;
        }
        self.session_at(index)
            .is_some_and(|candidate| precedes(candidate, current))
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

    /// Makes a session created from an incoming initial message current, except:
    /// - it never replaces a post-quantum current session by a classical one;
    /// - in a simultaneous initiation (our current session is one we started with the same
    ///   peer and it has not heard back), the session that [precedes](precedes) the other
    ///   stays current, so both sides converge at once.
    fn install_inbound(&mut self, session: Session) {
        let session = Box::new(session);
        match self.current.take() {
            Some(ours)
                if (ours.is_post_quantum() && !session.is_post_quantum())
                    || (ours.awaiting_reply()
                        && ours.remote_identity() == session.remote_identity()
                        && precedes(&ours, &session)) =>
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

    fn archive(&mut self, session: Box<Session>) {
        self.previous.push_front(session);
        self.previous
            .truncate(self.config.max_previous_sessions() as usize);
    }

    /// The current session, if any.
    pub fn session(&self) -> Option<&Session> {
        self.current.as_deref()
    }

    /// The previous sessions, most recent first.
    pub fn previous_sessions(&self) -> impl Iterator<Item = &Session> {
        self.previous.iter().map(|s| &**s)
    }

    /// The current session's id, if any.
    pub fn session_id(&self) -> Option<SessionId> {
        self.current.as_deref().map(Session::id)
    }

    /// The peer's identity key in the current session, if any.
    pub fn remote_identity(&self) -> Option<IdentityKey> {
        self.current.as_deref().map(Session::remote_identity)
    }

    /// The peer's identity key as this record knows it, and how far it is trusted. `None`
    /// before the first session.
    pub fn peer(&self) -> Option<PeerIdentity> {
        self.peer
    }

    /// Marks the peer's identity key verified, after the user compared safety numbers or
    /// scanned the peer's code. `key` must be the key that was compared.
    pub fn mark_verified(&mut self, key: &IdentityKey) -> Result<(), TrustError> {
        let peer = self.peer.as_mut().ok_or(TrustError::NoPeer)?;
        if peer.key() != *key {
            return Err(TrustError::NotCurrentKey);
        }
        peer.verify();
        Ok(())
    }

    /// Accepts an identity change the user has seen: the new key becomes the peer's key at
    /// trust level [`Trust::Changed`](crate::Trust::Changed) (a verified contact drops to
    /// unverified), and sessions built with the old key are deleted. Retry the message or
    /// bundle that reported the change.
    pub fn accept_identity_change(&mut self, change: &IdentityChange) -> Result<(), TrustError> {
        let peer = self.peer.ok_or(TrustError::NoPeer)?;
        if peer.key() != change.previous().key() {
            return Err(TrustError::StaleChange);
        }
        let new = change.new_key();
        self.peer = Some(PeerIdentity::changed_to(new));
        if self
            .current
            .as_ref()
            .is_some_and(|s| s.remote_identity() != new)
        {
            self.current = None;
        }
        self.previous.retain(|s| s.remote_identity() == new);
        Ok(())
    }

    /// The limits for sessions of this record.
    pub fn config(&self) -> SessionConfig {
        self.config
    }

    /// Erases the keys of messages that never arrived once they are too old, in every session
    /// of the record; returns how many were erased. A key is too old when it was stored more
    /// than [`SessionConfig::max_skipped_key_age`] seconds before `now` or, while disappearing
    /// messages are on, more than the timer plus [`EXPIRED_TIMER_GRACE_SECS`] before `now`
    /// (the sender's copy of such a message has expired long ago). A late message whose key
    /// was erased fails with [`DecryptError::Expired`]. Call it regularly, for example when
    /// the app starts and once a day.
    pub fn prune(&mut self, now: Timestamp) -> usize {
        let mut max_age = self.config.max_skipped_key_age();
        if self.timer.is_on() {
            let timer_age =
                u64::from(self.timer.seconds()).saturating_add(EXPIRED_TIMER_GRACE_SECS);
            max_age = max_age.min(timer_age);
        }
        let cutoff = now.saturating_sub_secs(max_age);
        self.current
            .iter_mut()
            .chain(self.previous.iter_mut())
            .map(|s| s.ratchet_mut().prune_skipped_keys(cutoff))
            .sum()
    }

    /// The conversation's disappearing-message setting.
    pub fn expiry_timer(&self) -> ExpiryTimer {
        self.timer
    }

    /// Encodes, pads and encrypts `content`, attaching the conversation's
    /// disappearing-message setting and `now` as the send time. The peer decrypts it with
    /// [`receive`](Self::receive) ([`decrypt`](Self::decrypt) refuses it with
    /// [`DecryptError::ContentMessage`]).
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        content: &Content,
        now: Timestamp,
    ) -> Result<SentMessage, EncryptError> {
        let plaintext = content::encode_padded(content, self.timer, now).map_err(|e| match e {
            ContentError::TooManyAttachments { count, max } => {
                EncryptError::TooManyAttachments { count, max }
            }
            _ => EncryptError::MessageTooLarge {
                len: content.body().len(),
            },
        })?;
        let wire = self.encrypt_plaintext(rng, &plaintext)?;
        Ok(SentMessage::new(wire, now, self.timer))
    }

    /// Changes the disappearing-message timer to `seconds` (0 turns it off) and returns the
    /// timer-update message to send (empty content carrying the new setting, with version =
    /// current version + 1). Nothing changes if it fails.
    pub fn set_expiry_timer<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        seconds: u32,
        now: Timestamp,
    ) -> Result<SentMessage, EncryptError> {
        let updated = self
            .timer
            .changed_to(seconds)
            .map_err(EncryptError::InvalidTimer)?;
        let plaintext = content::encode_padded(&Content::default(), updated, now)
            .map_err(|_| EncryptError::MessageTooLarge { len: 0 })?;
        let wire = self.encrypt_plaintext(rng, &plaintext)?;
        self.timer = updated;
        Ok(SentMessage::new(wire, now, updated))
    }

    /// Decrypts a message sent with [`send`](Self::send) (or
    /// [`set_expiry_timer`](Self::set_expiry_timer)): checks and removes the padding, decodes
    /// and validates the content, and applies the sender's disappearing-message setting to the
    /// conversation. `now` is the local time of receipt.
    ///
    /// Invalid content (bad padding, malformed, invalid timer metadata) is rejected with
    /// [`DecryptError::InvalidContent`], and like every error leaves the record and the
    /// account exactly as they were. A message sent with [`encrypt`](Self::encrypt) (raw
    /// bytes) fails with [`DecryptError::RawMessage`]: pass it to [`decrypt`](Self::decrypt).
    pub fn receive(
        &mut self,
        account: &mut Account,
        message: &[u8],
        now: Timestamp,
    ) -> Result<ReceivedMessage, DecryptError> {
        let mut envelope = None;
        let plaintext = self.decrypt_with(account, message, now, &mut |plaintext| {
            content::check_kind(plaintext, Kind::Content)?;
            envelope =
                Some(content::decode_padded(plaintext).map_err(DecryptError::InvalidContent)?);
            Ok(())
        })?;
        drop(Zeroizing::new(plaintext));
        let envelope = envelope.ok_or(DecryptError::AuthenticationFailed)?;
        let change = expiry::observe(&mut self.timer, envelope.timer);
        Ok(ReceivedMessage::new(envelope, now, change))
    }

    pub(crate) fn to_proto(&self) -> pb::SessionRecordState {
        pb::SessionRecordState {
            current: self.current.as_deref().map(Session::to_proto),
            previous: self.previous.iter().map(|s| s.to_proto()).collect(),
            limits: Some(crate::config::limits_to_proto(&self.config)),
            peer: self.peer.map(PeerIdentity::to_proto),
            timer: Some(pb::DisappearingTimer {
                seconds: self.timer.seconds(),
                version: self.timer.version(),
            }),
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
        let record = Self {
            current: p
                .current
                .as_ref()
                .map(|s| Session::from_proto(s).map(Box::new))
                .transpose()?,
            previous: p
                .previous
                .iter()
                .map(|s| Session::from_proto(s).map(Box::new))
                .collect::<Result<_, _>>()?,
            config,
            peer: p.peer.as_ref().map(PeerIdentity::from_proto).transpose()?,
            timer: match p.timer {
                Some(t) => ExpiryTimer::new(t.seconds, t.version).map_err(|_| {
                    DecodeError::InvalidValue {
                        object: OBJECT,
                        field: "timer",
                        reason: "invalid disappearing-message timer",
                    }
                })?,
                None => ExpiryTimer::OFF,
            },
        };
        let peer_key = record.peer.map(|p| p.key());
        let sessions_match = record
            .current
            .iter()
            .chain(record.previous.iter())
            .all(|s| Some(s.remote_identity()) == peer_key);
        if !sessions_match {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "peer",
                reason: "a session's remote identity is not the record's peer identity",
            });
        }
        Ok(record)
    }

    /// [`Session::export_key`] on the current session: derives `out.len()` bytes for another
    /// channel from the session's exporter secret, `label` and `context` (docs/PROTOCOL.md
    /// section 14). Both peers derive the same bytes from the same session, so an app that
    /// must be sure compares [`session_id`](Self::session_id)s first: for a while after one
    /// side starts a new session, the two current sessions may differ (section 6.7). Fails
    /// with [`ExportError::NoSession`] without a current session; on error nothing is
    /// written to `out`.
    ///
    /// The key has no forward secrecy within the session: the secret lives as long as the
    /// session (see [`Session::export_key`]).
    pub fn export_key(
        &self,
        label: &[u8],
        context: &[u8],
        out: &mut [u8],
    ) -> Result<(), ExportError> {
        self.current
            .as_deref()
            .ok_or(ExportError::NoSession)?
            .export_key(label, context, out)
    }
}

/// The order that settles which of two sessions a record sends on (PROTOCOL.md section
/// 6.7): a post-quantum session precedes a classical one; between two of the same kind, the
/// one with the smaller id (base keys compared as unsigned bytes) precedes. Both peers see
/// the same kinds and ids, so both compute the same order.
fn precedes(a: &Session, b: &Session) -> bool {
    match (a.is_post_quantum(), b.is_post_quantum()) {
        (true, false) => true,
        (false, true) => false,
        _ => a.id() < b.id(),
    }
}

impl fmt::Debug for SessionRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionRecord")
            .field("peer", &self.peer)
            .field("timer", &self.timer)
            .field("current", &self.current)
            .field("previous", &self.previous.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keys::{X25519KeyPair, X25519PublicKey};
    use crate::wire::PQXDH_MESSAGE_VERSION;
    use crate::wire::message::MessageWriter;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const NOW: Timestamp = Timestamp::from_unix_secs(1_764_000_000);

    /// Bob's record with the most sessions it keeps (current and previous), each of which
    /// received one message from Alice and sent one (so each holds a receiving chain and a
    /// ratchet key pair: every one of them could take a message on a new chain). Returns
    /// Bob's account, the record, and the ratchet key of Alice's chain in each session
    /// (current first).
    fn full_record(config: SessionConfig) -> (Account, SessionRecord, Vec<X25519PublicKey>) {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let alice = Account::new(&mut rng, NOW);
        let mut bob = Account::new(&mut rng, NOW);
        let mut record = SessionRecord::with_config(config);
        let mut keys = Vec::new();
        for i in 0..=config.max_previous_sessions() {
            let bundle = bob.prekey_bundle(None, None).unwrap();
            let mut alices = SessionRecord::with_config(config);
            alices.initiate(&mut rng, &alice, &bundle).unwrap();
            let wire = alices.encrypt(&mut rng, &[i as u8]).unwrap();
            assert_eq!(record.decrypt(&mut bob, &wire, NOW).unwrap(), [i as u8]);
            record.encrypt(&mut rng, b"reply").unwrap();
            keys.insert(0, Body::parse(&wire).unwrap().ratchet().header.ratchet_key);
        }
        assert_eq!(
            record.previous_sessions().count(),
            config.max_previous_sessions() as usize
        );
        (bob, record, keys)
    }

    /// A ratchet message with only a tag for ciphertext (75 bytes), which no session can
    /// authenticate.
    fn forged(ratchet_key: X25519PublicKey, counter: u32, previous_counter: u32) -> Vec<u8> {
        let header = RatchetHeader {
            version: PQXDH_MESSAGE_VERSION,
            ratchet_key,
            counter,
            previous_counter,
            nonce: [9; 12],
        };
        let writer = MessageWriter::new(None, &header, 0);
        writer.finish()
    }

    /// Decrypts `wire`, which must fail with `expected` and change nothing; returns the work
    /// done before authentication.
    fn reject(
        account: &mut Account,
        record: &mut SessionRecord,
        wire: &[u8],
        expected: DecryptError,
    ) -> Work {
        let before = (account.to_bytes().to_vec(), record.to_bytes().to_vec());
        let mut work = Work::default();
        let result = record.decrypt_counting(account, wire, NOW, &mut |_| Ok(()), &mut work);
        assert_eq!(result, Err(expected));
        assert_eq!(
            before,
            (account.to_bytes().to_vec(), record.to_bytes().to_vec())
        );
        work
    }

    /// PROTOCOL.md section 6.7: the most work a ratchet message can cost before it is
    /// authenticated, as (X25519 operations, chain steps).
    fn worst_case(config: SessionConfig) -> (u64, u64) {
        let max_skip = u64::from(config.max_skip());
        let sessions = 1 + u64::from(config.max_previous_sessions());
        let previous = u64::from(config.max_skip_previous());
        (sessions, (max_skip + 1).max(sessions * (previous + 1)))
    }

    #[test]
    fn a_forged_message_on_a_new_chain_costs_at_most_the_documented_work() {
        for config in [
            SessionConfig::default(),
            SessionConfig::default()
                .with_max_skip(300)
                .with_max_previous_sessions(3),
        ] {
            let (mut bob, mut record, _) = full_record(config);
            let max_skip = config.max_skip();
            let previous = config.max_skip_previous();
            let sessions = 1 + u64::from(config.max_previous_sessions());
            assert_eq!(previous, max_skip / (2 * config.max_previous_sessions()));
            let mut rng = ChaCha20Rng::seed_from_u64(8);
            let key = X25519KeyPair::generate(&mut rng).public_key();
            // Far ahead: only the current session goes as far as the DH and the chain walk;
            // each previous session refuses on the counter alone.
            let far = forged(key, max_skip, 1 + max_skip);
            let work = reject(
                &mut bob,
                &mut record,
                &far,
                DecryptError::TooFarAhead {
                    counter: max_skip,
                    skip: u64::from(max_skip),
                    max_skip: previous,
                },
            );
            assert_eq!(
                work,
                Work {
                    dh: 1,
                    chain_steps: u64::from(max_skip) + 1
                }
            );
            // Within every session's bound: each one does a DH and walks the new chain, and
            // none derives the skipped keys of its old chain before authentication.
            let near = forged(key, previous, 1 + max_skip);
            let work = reject(
                &mut bob,
                &mut record,
                &near,
                DecryptError::AuthenticationFailed,
            );
            assert_eq!(
                work,
                Work {
                    dh: sessions,
                    chain_steps: sessions * (u64::from(previous) + 1)
                }
            );
            let (dh, steps) = worst_case(config);
            assert_eq!(dh, sessions);
            assert_eq!(steps, (u64::from(max_skip) + 1).max(work.chain_steps));
        }
    }

    #[test]
    fn a_forged_message_on_a_known_chain_is_tried_by_that_session_only() {
        let config = SessionConfig::default();
        let (mut bob, mut record, keys) = full_record(config);
        let max_skip = config.max_skip();
        for key in [keys[0], keys[4], keys[8]] {
            // Message 0 of the chain was read; this one claims to skip MAX_SKIP messages.
            let wire = forged(key, max_skip + 1, 0);
            let work = reject(
                &mut bob,
                &mut record,
                &wire,
                DecryptError::AuthenticationFailed,
            );
            assert_eq!(
                work,
                Work {
                    dh: 0,
                    chain_steps: u64::from(max_skip) + 1
                }
            );
            // A duplicate of the message that was read costs nothing.
            let wire = forged(key, 0, 0);
            let work = reject(
                &mut bob,
                &mut record,
                &wire,
                DecryptError::Duplicate { counter: 0 },
            );
            assert_eq!(work, Work::default());
        }
    }

    #[test]
    fn a_plaintext_refused_after_it_decrypted_stops_the_search() {
        // Bob's record full of sessions that could each take a message on a new chain; Alice
        // keeps her side of the current one.
        let config = SessionConfig::default();
        let mut rng = ChaCha20Rng::seed_from_u64(23);
        let mut alice = Account::new(&mut rng, NOW);
        let mut bob = Account::new(&mut rng, NOW);
        let mut record = SessionRecord::with_config(config);
        let mut alices = SessionRecord::with_config(config);
        for _ in 0..=config.max_previous_sessions() {
            let bundle = bob.prekey_bundle(None, None).unwrap();
            alices = SessionRecord::with_config(config);
            alices.initiate(&mut rng, &alice, &bundle).unwrap();
            let wire = alices.encrypt(&mut rng, b"hi").unwrap();
            record.decrypt(&mut bob, &wire, NOW).unwrap();
            let reply = record.encrypt(&mut rng, b"reply").unwrap();
            alices.decrypt(&mut alice, &reply, NOW).unwrap();
        }
        // Content on a new chain of the current session, to the raw-bytes API: it decrypts in
        // the current session, is refused there, and no other session tries it.
        let content = alices.send(&mut rng, &Content::new("x"), NOW).unwrap();
        let before = record.to_bytes().to_vec();
        let mut work = Work::default();
        let result = record.decrypt_counting(
            &mut bob,
            content.wire(),
            NOW,
            &mut |p| content::check_kind(p, Kind::Raw),
            &mut work,
        );
        assert_eq!(result, Err(DecryptError::ContentMessage));
        assert_eq!(work.dh, 1);
        assert_eq!(before, record.to_bytes().to_vec());
    }
}
