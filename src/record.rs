//! The per-peer session record: the current session, a bounded number of previous ones, and
//! the logic that routes each incoming message to the session it belongs to.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::account::Account;
use crate::config::SessionConfig;
use zeroize::{Zeroize, Zeroizing};

use crate::content::{self, Content, Kind, ReceivedMessage, SentMessage};
use crate::error::{
    DecodeError, DecryptError, EncryptError, ExportError, SetupError, StateError, TrustError,
};
use crate::expiry::{self, ExpiryTimer};
use crate::keys::IdentityKey;
use crate::ratchet::skipped::{self, SlotId};
pub(crate) use crate::ratchet::skipped::{SkippedChange, SkippedKeyId};
use crate::ratchet::{Accept, Acceptor, Budget, Work};
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
/// let otk = bob.generate_one_time_prekeys(&mut rng, 1, now)?[0];
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
    /// The sessions whose skipped-key rows were written at the last
    /// [`take_skipped_changes`](Self::take_skipped_changes) or load: those that have left
    /// the record since get a [`SkippedChange::DeleteSession`]. Not persisted.
    persisted_sessions: Vec<SessionId>,
}

/// The acceptor of [`SessionRecord::decrypt_into`]: raw bytes, decrypted into the caller's
/// buffer.
struct IntoBuffer(Option<Vec<u8>>);

impl Acceptor for IntoBuffer {
    fn check(&mut self, plaintext: &[u8]) -> Result<(), DecryptError> {
        content::check_kind(plaintext, Kind::Raw)
    }

    fn buffer(&mut self) -> Vec<u8> {
        self.0.take().unwrap_or_default()
    }

    fn recycle(&mut self, buffer: Vec<u8>) {
        self.0 = Some(buffer);
    }
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
            persisted_sessions: Vec::new(),
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
        // A record never holds two sessions with one id. The id is a fresh random public
        // key, so this removes nothing unless the random number generator repeated itself,
        // and then the older session's keys are the ones to drop.
        let id = session.id();
        self.previous.retain(|s| s.id() != id);
        match self.current.replace(Box::new(session)) {
            Some(old) if old.id() != id => self.archive(old),
            _ => {}
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
    /// The plaintext is returned in a new buffer; [`decrypt_into`](Self::decrypt_into)
    /// reuses one instead, which matters for large messages.
    ///
    /// On error the record and the account are exactly as they were.
    pub fn decrypt(
        &mut self,
        account: &mut Account,
        message: &[u8],
        now: Timestamp,
    ) -> Result<Vec<u8>, DecryptError> {
        let mut out = Vec::new();
        self.decrypt_into(account, message, now, &mut out)?;
        Ok(out)
    }

    /// [`decrypt`](Self::decrypt) into `out`, which the caller keeps and passes again: the
    /// plaintext replaces what `out` held, in its memory when it is large enough. An app
    /// that receives large messages saves an allocation per message this way, and, more
    /// than the allocation, the pages a fresh buffer of that size takes from the operating
    /// system on every message (docs/BENCHMARKS.md, "AES-GCM backends", measures both).
    ///
    /// On error the record and the account are exactly as they were, and `out` is empty,
    /// wiped (it keeps its capacity).
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
    ///
    /// let mut plaintext = Vec::new();
    /// for text in [&b"first"[..], b"second, longer", b"third"] {
    ///     let message = alice_to_bob.encrypt(&mut rng, text)?;
    ///     bob_to_alice.decrypt_into(&mut bob, &message, now, &mut plaintext)?;
    ///     assert_eq!(plaintext, text);
    /// }
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn decrypt_into(
        &mut self,
        account: &mut Account,
        message: &[u8],
        now: Timestamp,
        out: &mut Vec<u8>,
    ) -> Result<(), DecryptError> {
        let mut raw = IntoBuffer(Some(core::mem::take(out)));
        match self.decrypt_with(account, message, now, &mut raw) {
            Ok(plaintext) => {
                *out = content::strip_kind(plaintext);
                Ok(())
            }
            Err(error) => {
                // Every failed attempt gives the buffer back, wiped; an error before any
                // attempt leaves it holding what the caller put there, wiped here.
                if let Some(mut buffer) = raw.0 {
                    buffer.zeroize();
                    *out = buffer;
                }
                Err(error)
            }
        }
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
                let mut plaintext =
                    session.decrypt_message(&message, now, accept, Budget::Current, work)?;
                // The message is authentic, but under which identity? A different key than
                // the conversation's is reported, never installed silently. A record never
                // holds two sessions with one id: an initiator that reused its ephemeral key
                // repeats a key agreement (PROTOCOL.md section 7).
                let refused = match self.check_identity(&setup.identity_key) {
                    Err(change) => Some(DecryptError::IdentityChanged(change)),
                    Ok(()) if self.position(|s| s.id() == session.id()).is_some() => {
                        Some(DecryptError::SetupAlreadyUsed)
                    }
                    Ok(()) => None,
                };
                if let Some(error) = refused {
                    plaintext.zeroize();
                    accept.recycle(plaintext);
                    return Err(error);
                }
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

    /// Applies a setting learned elsewhere (another device of the same peer) by the same
    /// rule as a received one: the record ends at the later of the two in the order of
    /// section 12.
    #[cfg(feature = "std")] // only the device layer has other devices
    pub(crate) fn observe_timer(&mut self, timer: ExpiryTimer) {
        expiry::observe(&mut self.timer, timer);
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
        self.send_with_timer(rng, content, self.timer, now)
    }

    /// [`send`](Self::send) under `timer` instead of the record's own setting, which it
    /// leaves as it is: the copies a device sends its own other devices carry the setting of
    /// the conversation they belong to.
    pub(crate) fn send_with_timer<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        content: &Content,
        timer: ExpiryTimer,
        now: Timestamp,
    ) -> Result<SentMessage, EncryptError> {
        let plaintext = content::encode_padded(content, timer, now).map_err(|_| {
            EncryptError::MessageTooLarge {
                len: content.body().len(),
            }
        })?;
        let wire = self.encrypt_plaintext(rng, &plaintext)?;
        Ok(SentMessage::new(wire, now, timer))
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
        let plaintext = self.decrypt_with(account, message, now, &mut |plaintext: &[u8]| {
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
        self.to_proto_with(true)
    }

    /// The state, with every session's skipped keys or (docs/PROTOCOL.md section 8.3)
    /// without them.
    fn to_proto_with(&self, with_skipped_keys: bool) -> pb::SessionRecordState {
        pb::SessionRecordState {
            current: self
                .current
                .as_deref()
                .map(|s| s.to_proto_with(with_skipped_keys)),
            previous: self
                .previous
                .iter()
                .map(|s| s.to_proto_with(with_skipped_keys))
                .collect(),
            limits: Some(crate::config::limits_to_proto(&self.config)),
            peer: self.peer.map(PeerIdentity::to_proto),
            timer: Some(pb::DisappearingTimer {
                seconds: self.timer.seconds(),
                version: self.timer.version(),
            }),
            skipped_keys_apart: !with_skipped_keys,
        }
    }

    /// Restores the complete form (the one with the skipped keys inside).
    pub(crate) fn from_proto(p: &pb::SessionRecordState) -> Result<Self, DecodeError> {
        if p.skipped_keys_apart {
            return Err(DecodeError::InvalidValue {
                object: "SessionRecordState",
                field: "skipped_keys_apart",
                reason: "the record was stored without its skipped keys, which are stored apart",
            });
        }
        Self::from_proto_any(p)
    }

    fn from_proto_any(p: &pb::SessionRecordState) -> Result<Self, DecodeError> {
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
        let mut record = Self {
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
            persisted_sessions: Vec::new(),
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
        let ids = record.session_ids();
        if ids.iter().enumerate().any(|(i, id)| ids[..i].contains(id)) {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "previous",
                reason: "two sessions have the same id (base key)",
            });
        }
        // As loaded, these sessions' rows (if the app keeps rows) are the ones to replace.
        record.persisted_sessions = ids;
        Ok(record)
    }

    /// The ids of the sessions, current first.
    fn session_ids(&self) -> Vec<SessionId> {
        self.current
            .iter()
            .chain(self.previous.iter())
            .map(|s| s.id())
            .collect()
    }

    // Crate-internal API of the row form (docs/PROTOCOL.md section 8.3), for the device
    // layer's store; the fuzz targets and tests use it meanwhile.
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    /// The record without its skipped message keys, for a store that keeps each of them in
    /// a row of its own (docs/PROTOCOL.md section 8.3): versioned and canonical like
    /// [`to_bytes`](Self::to_bytes), and everything but the keys themselves (the chain
    /// history and eviction marks stay). Its length does not depend on how many keys are
    /// stored. [`from_bytes`](Self::from_bytes) refuses it; load it with
    /// [`from_bytes_and_skipped`](Self::from_bytes_and_skipped).
    pub(crate) fn to_bytes_without_skipped(&self) -> Zeroizing<Vec<u8>> {
        let proto = self.to_proto_with(false);
        let mut out = Zeroizing::new(Vec::with_capacity(1 + prost::Message::encoded_len(&proto)));
        out.push(crate::wire::VERSION);
        prost::Message::encode_raw(&proto, &mut *out);
        out
    }

    // Crate-internal API of the row form (docs/PROTOCOL.md section 8.3), for the device
    // layer's store; the fuzz targets and tests use it meanwhile.
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    /// Every stored skipped key as a row: its [`SkippedKeyId`] and its value
    /// (`0x01 || protobuf SkippedKeyRow`: message key, insertion sequence number, time
    /// stored; docs/PROTOCOL.md section 8.3), session by session (current first), oldest key
    /// first.
    pub(crate) fn skipped_key_rows(&self) -> Vec<(SkippedKeyId, Zeroizing<Vec<u8>>)> {
        self.current
            .iter()
            .chain(self.previous.iter())
            .flat_map(|s| s.ratchet().skipped_store().rows(s.id()))
            .collect()
    }

    // Crate-internal API of the row form (docs/PROTOCOL.md section 8.3), for the device
    // layer's store; the fuzz targets and tests use it meanwhile.
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    /// Restores a record from [`to_bytes_without_skipped`](Self::to_bytes_without_skipped)
    /// and its skipped-key rows, in any order. Checks everything
    /// [`from_bytes`](Self::from_bytes) checks, and that every row names a session of the
    /// record, that no session has more keys than its limit, that no row id repeats and no
    /// two keys of a session share a sequence number, and that every row value is the
    /// canonical encoding of a `SkippedKeyRow`. The journal of
    /// [`take_skipped_changes`](Self::take_skipped_changes) starts empty: the rows are what
    /// is stored.
    pub(crate) fn from_bytes_and_skipped(
        record: &[u8],
        rows: impl IntoIterator<Item = (SkippedKeyId, Zeroizing<Vec<u8>>)>,
    ) -> Result<Self, StateError> {
        const OBJECT: &str = "SessionRecordState";
        let p: pb::SessionRecordState = crate::wire::decode(record, "session record")?;
        if !p.skipped_keys_apart {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "skipped_keys_apart",
                reason: "the record holds its skipped keys: it is the complete form",
            }
            .into());
        }
        let has_keys = p
            .current
            .iter()
            .chain(p.previous.iter())
            .any(|s| s.ratchet.as_ref().is_some_and(|r| !r.skipped.is_empty()));
        if has_keys {
            return Err(DecodeError::InvalidValue {
                object: "RatchetState",
                field: "skipped",
                reason: "skipped keys inside a record stored without them",
            }
            .into());
        }
        let mut record = Self::from_proto_any(&p)?;
        let ids = record.session_ids();
        let mut per_session: Vec<Vec<(SlotId, skipped::Slot)>> =
            ids.iter().map(|_| Vec::new()).collect();
        for (id, value) in rows {
            let index =
                ids.iter()
                    .position(|s| *s == id.session)
                    .ok_or(DecodeError::InvalidValue {
                        object: "SkippedKeyRow",
                        field: "id",
                        reason: "the row names a session the record does not hold",
                    })?;
            let limit = record
                .session_at(index)
                .map_or(0, |s| s.config().max_skipped_keys_usize());
            let bucket = &mut per_session[index];
            // Checked before the row is decoded, so the rows held stay within the limits.
            if bucket.len() >= limit {
                return Err(DecodeError::InvalidValue {
                    object: "SkippedKeyRow",
                    field: "id",
                    reason: "more stored keys than the session's limit",
                }
                .into());
            }
            bucket.push((id.slot, skipped::decode_row(&value)?));
        }
        for (index, rows) in per_session.into_iter().enumerate() {
            if let Some(session) = record.session_mut(index) {
                session.ratchet_mut().skipped_store_mut().load_rows(rows)?;
            }
        }
        Ok(record)
    }

    // Crate-internal API of the row form (docs/PROTOCOL.md section 8.3), for the device
    // layer's store; the fuzz targets and tests use it meanwhile.
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    /// The changes to the skipped-key rows since the record was created, loaded
    /// ([`from_bytes`](Self::from_bytes) or
    /// [`from_bytes_and_skipped`](Self::from_bytes_and_skipped)) or last taken; the journal
    /// is then cleared. Applied in order to the rows as they were at that point, they give
    /// exactly [`skipped_key_rows`](Self::skipped_key_rows):
    /// - a [`SkippedChange::DeleteSession`] for each session that has left the record
    ///   (archive truncation, [`accept_identity_change`](Self::accept_identity_change));
    /// - for a session whose keys are tracked (loaded from rows, or taken before): a `Put`
    ///   with the row value of each key stored since and still stored, a `Delete` for each
    ///   key used, evicted or pruned since, each key once: O(1) changes for a message that
    ///   uses one stored key, k for one that skips k (plus the keys it evicts), whatever the
    ///   number stored;
    /// - for any other session (created, or loaded from the complete form, since), and for
    ///   one whose list of changes outgrew its limit of stored keys (plus 64): a
    ///   `DeleteSession` then a `Put` for every key it stores.
    ///
    /// A failed operation leaves the journal as it was, and `Clone` copies it.
    pub(crate) fn take_skipped_changes(&mut self) -> Vec<SkippedChange> {
        let changes = self.skipped_changes();
        for session in self.current.iter_mut().chain(self.previous.iter_mut()) {
            session.ratchet_mut().skipped_store_mut().clear_changes();
        }
        self.persisted_sessions = self.session_ids();
        changes
    }

    /// The changes [`take_skipped_changes`](Self::take_skipped_changes) would return,
    /// without clearing the journal (for a store that clears it only once they are written).
    #[cfg_attr(not(any(test, feature = "fuzzing")), allow(dead_code))]
    pub(crate) fn skipped_changes(&self) -> Vec<SkippedChange> {
        let ids = self.session_ids();
        let mut changes: Vec<SkippedChange> = self
            .persisted_sessions
            .iter()
            .filter(|id| !ids.contains(id))
            .map(|id| SkippedChange::DeleteSession(*id))
            .collect();
        for session in self.current.iter().chain(self.previous.iter()) {
            session
                .ratchet()
                .skipped_store()
                .changes(session.id(), &mut changes);
        }
        changes
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
    use proptest::prelude::*;
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
        let result = record.decrypt_counting(account, wire, NOW, &mut |_: &[u8]| Ok(()), &mut work);
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
            &mut |p: &[u8]| content::check_kind(p, Kind::Raw),
            &mut work,
        );
        assert_eq!(result, Err(DecryptError::ContentMessage));
        assert_eq!(work.dh, 1);
        assert_eq!(before, record.to_bytes().to_vec());
    }

    /// Alice has started a session with Bob and sent `first` messages, of which Bob
    /// decrypted only the last: he holds `first - 1` skipped keys.
    struct Conversation {
        rng: ChaCha20Rng,
        alice: (Account, SessionRecord),
        bob: (Account, SessionRecord),
    }

    impl Conversation {
        fn new(seed: u64, config: SessionConfig) -> Self {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let alice = Account::new(&mut rng, NOW);
            let bob = Account::new(&mut rng, NOW);
            let bundle = bob.prekey_bundle(None, None).unwrap();
            let mut alice_record = SessionRecord::with_config(config);
            alice_record.initiate(&mut rng, &alice, &bundle).unwrap();
            Self {
                rng,
                alice: (alice, alice_record),
                bob: (bob, SessionRecord::with_config(config)),
            }
        }

        fn alice_sends(&mut self, count: u32) -> Vec<Vec<u8>> {
            (0..count)
                .map(|i| {
                    self.alice
                        .1
                        .encrypt(&mut self.rng, &i.to_be_bytes())
                        .unwrap()
                })
                .collect()
        }

        fn bob_decrypts(&mut self, wire: &[u8]) {
            let (account, record) = &mut self.bob;
            record.decrypt(account, wire, NOW).unwrap();
        }

        fn bob_replies(&mut self) {
            let reply = self.bob.1.encrypt(&mut self.rng, b"reply").unwrap();
            let (account, record) = &mut self.alice;
            record.decrypt(account, &reply, NOW).unwrap();
        }
    }

    /// (puts, deletes, session deletes) in a list of changes.
    fn count(changes: &[SkippedChange]) -> (usize, usize, usize) {
        let mut counts = (0, 0, 0);
        for change in changes {
            match change {
                SkippedChange::Put(..) => counts.0 += 1,
                SkippedChange::Delete(..) => counts.1 += 1,
                SkippedChange::DeleteSession(..) => counts.2 += 1,
            }
        }
        counts
    }

    fn stored(record: &SessionRecord) -> usize {
        record.session().map_or(0, Session::skipped_key_count)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(6))]

        /// Invariants (3) and (4) of the row form (PROTOCOL.md section 8.3): after the
        /// changes are taken, a message that skips k keys writes k rows and one that uses a
        /// stored key deletes exactly one, whether 0 or 2,000 keys are stored; and the record
        /// without its skipped keys does not grow with them.
        #[test]
        fn one_message_changes_rows_in_proportion_to_what_it_does(
            seed in any::<u64>(),
            many in any::<bool>(),
            k in 1u32..40,
        ) {
            let already = if many { 2000 } else { 0 };
            let mut c = Conversation::new(seed, SessionConfig::default());
            let sent = c.alice_sends(already + 1);
            c.bob_decrypts(&sent[already as usize]);
            prop_assert_eq!(stored(&c.bob.1), already as usize);
            let first = c.bob.1.take_skipped_changes();
            // A new session: every key it stores, after a delete of the session's rows.
            prop_assert_eq!(count(&first), (already as usize, 0, 1));

            // Skipping k keys: k puts, nothing else.
            let more = c.alice_sends(k + 1);
            c.bob_decrypts(&more[k as usize]);
            let changes = c.bob.1.take_skipped_changes();
            prop_assert_eq!(count(&changes), (k as usize, 0, 0));
            // Using one stored key: one delete.
            c.bob_decrypts(&more[0]);
            let changes = c.bob.1.take_skipped_changes();
            prop_assert_eq!(count(&changes), (0, 1, 0));
            if let [SkippedChange::Delete(id)] = &changes[..] {
                prop_assert_eq!(id.session, c.bob.1.session_id().unwrap());
                prop_assert_eq!(id.slot.counter, already + 1);
            }
            // Nothing happened since.
            prop_assert!(c.bob.1.take_skipped_changes().is_empty());

            // The same conversation delivered in order stores no key, and its record without
            // skipped keys is the very same bytes.
            let mut in_order = Conversation::new(seed, SessionConfig::default());
            let all = in_order.alice_sends(already + 1);
            for wire in &all {
                in_order.bob_decrypts(wire);
            }
            let with_keys = c.bob.1.clone();
            let mut c = c;
            for wire in &more[1..k as usize] {
                c.bob_decrypts(wire);
            }
            for wire in &more {
                if in_order.bob.1.decrypt(&mut in_order.bob.0, wire, NOW).is_err() {
                    prop_assert!(false, "in-order delivery failed");
                }
            }
            prop_assert_eq!(stored(&in_order.bob.1), 0);
            prop_assert_eq!(stored(&c.bob.1), already as usize);
            prop_assert_eq!(
                c.bob.1.to_bytes_without_skipped(),
                in_order.bob.1.to_bytes_without_skipped()
            );
            prop_assert!(with_keys.to_bytes().len() > in_order.bob.1.to_bytes().len() + 32 * already as usize - 1);
        }
    }

    #[test]
    fn evicted_and_pruned_keys_are_deleted_rows() {
        let config = SessionConfig::default().with_max_skipped_keys(10);
        let mut c = Conversation::new(11, config);
        let sent = c.alice_sends(11);
        c.bob_decrypts(&sent[10]);
        c.bob.1.take_skipped_changes();
        // Five more skipped keys evict the five oldest: five puts and five deletes.
        let more = c.alice_sends(6);
        c.bob_decrypts(&more[5]);
        let changes = c.bob.1.take_skipped_changes();
        assert_eq!(count(&changes), (5, 5, 0));
        let deleted: Vec<u32> = changes
            .iter()
            .filter_map(|change| match change {
                SkippedChange::Delete(id) => Some(id.slot.counter),
                _ => None,
            })
            .collect();
        assert_eq!(deleted, [0, 1, 2, 3, 4]);
        // Pruning deletes what it erases.
        let later = NOW.saturating_add_secs(config.max_skipped_key_age() + 1);
        assert_eq!(c.bob.1.prune(later), 10);
        assert_eq!(count(&c.bob.1.take_skipped_changes()), (0, 10, 0));
    }

    #[test]
    fn a_key_stored_and_used_between_two_takes_is_a_harmless_delete() {
        let mut c = Conversation::new(12, SessionConfig::default());
        let sent = c.alice_sends(3);
        c.bob_decrypts(&sent[2]);
        c.bob.1.take_skipped_changes();
        let more = c.alice_sends(3);
        c.bob_decrypts(&more[2]);
        c.bob_decrypts(&more[0]);
        // Key 3 was stored and used, key 4 stored: one delete of a row never written, one
        // put.
        let changes = c.bob.1.take_skipped_changes();
        assert_eq!(count(&changes), (1, 1, 0));
    }

    #[test]
    fn sessions_that_leave_the_record_delete_their_rows() {
        let config = SessionConfig::default().with_max_previous_sessions(1);
        let mut rng = ChaCha20Rng::seed_from_u64(13);
        let alice = Account::new(&mut rng, NOW);
        let mut bob = Account::new(&mut rng, NOW);
        let mut record = SessionRecord::with_config(config);
        let mut ids = Vec::new();
        for _ in 0..3 {
            let bundle = bob.prekey_bundle(None, None).unwrap();
            let mut alices = SessionRecord::with_config(config);
            alices.initiate(&mut rng, &alice, &bundle).unwrap();
            let lost = alices.encrypt(&mut rng, b"lost").unwrap();
            let _ = lost;
            let wire = alices.encrypt(&mut rng, b"skips one").unwrap();
            record.decrypt(&mut bob, &wire, NOW).unwrap();
            ids.push(record.session_id().unwrap());
            let changes = record.take_skipped_changes();
            // The new session's rows, and (third session) the oldest session's deletion.
            let dropped: Vec<SessionId> = changes
                .iter()
                .filter_map(|change| match change {
                    SkippedChange::DeleteSession(id) if *id != ids[ids.len() - 1] => Some(*id),
                    _ => None,
                })
                .collect();
            let expected: Vec<SessionId> = ids
                .len()
                .checked_sub(3)
                .map(|i| ids[i])
                .into_iter()
                .collect();
            assert_eq!(dropped, expected);
        }
        assert_eq!(record.skipped_key_rows().len(), 2);

        // An accepted identity change deletes the sessions built with the old key.
        let mallory = Account::new(&mut rng, NOW);
        let bundle = bob.prekey_bundle(None, None).unwrap();
        let mut mallorys = SessionRecord::with_config(config);
        mallorys.initiate(&mut rng, &mallory, &bundle).unwrap();
        let wire = mallorys.encrypt(&mut rng, b"new key").unwrap();
        let Err(DecryptError::IdentityChanged(change)) = record.decrypt(&mut bob, &wire, NOW)
        else {
            panic!("an identity change")
        };
        assert!(
            record.take_skipped_changes().is_empty(),
            "a refused message changed the journal"
        );
        record.accept_identity_change(&change).unwrap();
        let changes = record.take_skipped_changes();
        let mut deleted: Vec<SessionId> = changes
            .iter()
            .filter_map(|change| match change {
                SkippedChange::DeleteSession(id) => Some(*id),
                _ => None,
            })
            .collect();
        deleted.sort();
        let mut expected = ids[1..].to_vec();
        expected.sort();
        assert_eq!(deleted, expected);
        assert_eq!(changes.len(), 2);
        assert!(record.skipped_key_rows().is_empty());
    }

    #[test]
    fn a_journal_past_its_bound_rewrites_the_session_instead() {
        // The journal keeps at most max_keys + 64 = 164 keys.
        let config = SessionConfig::default().with_max_skipped_keys(100);
        let changes_after_skipping = |skip: u32| {
            let mut c = Conversation::new(14, config);
            let sent = c.alice_sends(1);
            c.bob_decrypts(&sent[0]);
            c.bob.1.take_skipped_changes();
            let more = c.alice_sends(skip + 1);
            c.bob_decrypts(&more[skip as usize]);
            count(&c.bob.1.take_skipped_changes())
        };
        // 164 keys skipped: 100 stored, 64 of them evicted at once; the list is kept.
        assert_eq!(changes_after_skipping(164), (100, 64, 0));
        // 165: instead of a list of 165 changes, delete the session's rows and write its
        // 100 keys.
        assert_eq!(changes_after_skipping(165), (100, 0, 1));
    }

    #[test]
    fn a_failed_decryption_leaves_the_journal_and_a_clone_copies_it() {
        let mut c = Conversation::new(15, SessionConfig::default());
        let sent = c.alice_sends(3);
        c.bob_decrypts(&sent[2]);
        c.bob.1.take_skipped_changes();
        let more = c.alice_sends(3);
        c.bob_decrypts(&more[2]);
        let pending = count(&c.bob.1.skipped_changes());
        assert_eq!(pending, (2, 0, 0));
        // A duplicate, a forgery and a content-for-raw refusal change nothing.
        let (account, record) = &mut c.bob;
        assert_eq!(
            record.decrypt(account, &more[2], NOW),
            Err(DecryptError::Duplicate { counter: 5 })
        );
        let mut forged = more[0].clone();
        let last = forged.len() - 1;
        forged[last] ^= 1;
        assert_eq!(
            record.decrypt(account, &forged, NOW),
            Err(DecryptError::AuthenticationFailed)
        );
        let content = c
            .alice
            .1
            .send(&mut c.rng, &Content::new("content"), NOW)
            .unwrap();
        let (account, record) = &mut c.bob;
        assert_eq!(
            record.decrypt(account, content.wire(), NOW),
            Err(DecryptError::ContentMessage)
        );
        assert_eq!(count(&record.skipped_changes()), pending);
        let mut copy = record.clone();
        assert_eq!(count(&copy.take_skipped_changes()), pending);
        assert_eq!(count(&record.take_skipped_changes()), pending);
        assert!(copy.take_skipped_changes().is_empty());
        c.bob_replies();
    }

    #[test]
    fn rows_restore_the_record_exactly() {
        let mut c = Conversation::new(16, SessionConfig::default());
        let sent = c.alice_sends(5);
        c.bob_decrypts(&sent[4]);
        c.bob_replies();
        let more = c.alice_sends(3);
        c.bob_decrypts(&more[2]);
        let record = &c.bob.1;
        let rows = record.skipped_key_rows();
        assert_eq!(rows.len(), 6);
        let without = record.to_bytes_without_skipped();
        // In any order.
        let restored =
            SessionRecord::from_bytes_and_skipped(&without, rows.iter().rev().cloned()).unwrap();
        assert_eq!(restored.to_bytes(), record.to_bytes());
        assert_eq!(restored.to_bytes_without_skipped(), without);
        // The journal of a record loaded from rows starts empty.
        let mut restored = restored;
        assert!(restored.take_skipped_changes().is_empty());
        // The two forms are not interchangeable.
        assert_eq!(
            SessionRecord::from_bytes(&without).err(),
            Some(StateError::Decode(DecodeError::InvalidValue {
                object: "SessionRecordState",
                field: "skipped_keys_apart",
                reason: "the record was stored without its skipped keys, which are stored apart",
            }))
        );
        assert_eq!(
            SessionRecord::from_bytes_and_skipped(&record.to_bytes(), Vec::new()).err(),
            Some(StateError::Decode(DecodeError::InvalidValue {
                object: "SessionRecordState",
                field: "skipped_keys_apart",
                reason: "the record holds its skipped keys: it is the complete form",
            }))
        );
        // Skipped keys inside the form without them.
        let mut p = record.to_proto_with(true);
        p.skipped_keys_apart = true;
        let bytes = crate::wire::encode(&p);
        assert_eq!(
            SessionRecord::from_bytes_and_skipped(&bytes, Vec::new()).err(),
            Some(StateError::Decode(DecodeError::InvalidValue {
                object: "RatchetState",
                field: "skipped",
                reason: "skipped keys inside a record stored without them",
            }))
        );
    }

    fn invalid(object: &'static str, field: &'static str, reason: &'static str) -> StateError {
        StateError::Decode(DecodeError::InvalidValue {
            object,
            field,
            reason,
        })
    }

    #[test]
    fn rows_are_checked_as_strictly_as_the_complete_form() {
        let config = SessionConfig::default().with_max_skipped_keys(4);
        let mut c = Conversation::new(17, config);
        let sent = c.alice_sends(4);
        c.bob_decrypts(&sent[3]);
        let record = &c.bob.1;
        let without = record.to_bytes_without_skipped();
        let rows = record.skipped_key_rows();
        assert_eq!(rows.len(), 3);
        let load = |rows: Vec<(SkippedKeyId, Zeroizing<Vec<u8>>)>| {
            SessionRecord::from_bytes_and_skipped(&without, rows).err()
        };
        assert_eq!(load(rows.clone()), None);

        // A row of a session the record does not hold.
        let mut other = rows.clone();
        other[0].0.session = SessionId(rows[0].0.slot.ratchet_key);
        assert_eq!(
            load(other),
            Some(invalid(
                "SkippedKeyRow",
                "id",
                "the row names a session the record does not hold"
            ))
        );
        // The same row twice.
        let mut twice = rows.clone();
        twice.push(rows[0].clone());
        assert_eq!(
            load(twice),
            Some(invalid(
                "SkippedKeyRow",
                "sequence",
                "two keys of one session have the same sequence number"
            ))
        );
        // Another id with the same value (so the same sequence number), and with a fresh
        // sequence number: a key stored twice is caught either way.
        let mut moved = rows.clone();
        moved[0].0.slot.counter = 1;
        let value = crate::ratchet::skipped::decode_row(&moved[0].1).unwrap();
        let mut fresh = value.clone();
        fresh.seq = 99;
        let _ = value;
        assert_eq!(
            load(alloc::vec![
                rows[1].clone(),
                (moved[0].0, row_bytes(&fresh)),
            ]),
            Some(invalid(
                "SkippedKeyRow",
                "id",
                "the same message key is stored twice"
            ))
        );
        // More keys than the session's limit (4): refused at the fifth row.
        let mut many = rows.clone();
        for counter in [10, 11] {
            let mut extra = fresh.clone();
            extra.seq = 100 + u64::from(counter);
            let mut id = rows[0].0;
            id.slot.counter = counter;
            many.push((id, row_bytes(&extra)));
        }
        assert_eq!(
            load(many),
            Some(invalid(
                "SkippedKeyRow",
                "id",
                "more stored keys than the session's limit"
            ))
        );
        // A sequence number that leaves no room for the next key.
        let mut last = fresh.clone();
        last.seq = u64::MAX;
        assert_eq!(
            load(alloc::vec![(rows[0].0, row_bytes(&last))]),
            Some(invalid(
                "SkippedKeyRow",
                "sequence",
                "the sequence number overflows"
            ))
        );
        last.seq = u64::MAX - 1;
        assert_eq!(load(alloc::vec![(rows[0].0, row_bytes(&last))]), None);
        // Row values: the wrong version byte, a non-canonical encoding, a short key.
        let mut value = rows[0].1.to_vec();
        value[0] = 2;
        let mut bad = rows.clone();
        bad[0].1 = Zeroizing::new(value);
        assert_eq!(
            load(bad),
            Some(StateError::Decode(DecodeError::UnsupportedVersion {
                object: "SkippedKeyRow",
                found: 2,
                supported: 1
            }))
        );
        let mut value = rows[0].1.to_vec();
        value.extend_from_slice(&[0x10, 0x00]); // sequence 0, written out
        let mut bad = rows.clone();
        bad[0].1 = Zeroizing::new(value);
        assert_eq!(
            load(bad),
            Some(StateError::Decode(DecodeError::NonCanonical {
                object: "SkippedKeyRow"
            }))
        );
        let mut bad = rows.clone();
        bad[0].1 = Zeroizing::new(alloc::vec![1, 0x0a, 0x01, 0x07]);
        assert_eq!(
            load(bad),
            Some(StateError::Decode(DecodeError::InvalidLength {
                object: "SkippedKeyRow",
                field: "message_key",
                expected: 32,
                found: 1
            }))
        );
    }

    fn row_bytes(slot: &crate::ratchet::skipped::Slot) -> Zeroizing<Vec<u8>> {
        let row = pb::SkippedKeyRow {
            message_key: slot_key(slot),
            sequence: slot.seq,
            stored_at: slot.stored_at.as_unix_secs(),
        };
        Zeroizing::new(crate::wire::encode(&row))
    }

    fn slot_key(slot: &crate::ratchet::skipped::Slot) -> Vec<u8> {
        slot.key.as_bytes().to_vec()
    }

    #[test]
    fn row_ids_and_values_have_the_documented_layout() {
        let mut c = Conversation::new(18, SessionConfig::default());
        let sent = c.alice_sends(2);
        c.bob_decrypts(&sent[1]);
        let rows = c.bob.1.skipped_key_rows();
        let [(id, value)] = &rows[..] else {
            panic!("one row")
        };
        let session = c.bob.1.session_id().unwrap().to_bytes();
        let header = Body::parse(&sent[0]).unwrap().ratchet().header;
        // session id || ratchet key || u32be(counter 0).
        let bytes = id.to_bytes();
        assert_eq!(&bytes[..32], &session);
        assert_eq!(&bytes[32..64], header.ratchet_key.as_bytes());
        assert_eq!(&bytes[64..], &[0, 0, 0, 0]);
        assert_eq!(SkippedKeyId::from_bytes(&bytes), Some(*id));
        // 0x01, field 1 (32-byte key), no field 2 (sequence 0), field 3 = 1764000000.
        assert_eq!(value.len(), 1 + 2 + 32 + 1 + 5);
        assert_eq!(&value[..3], &[0x01, 0x0a, 0x20]);
        assert_eq!(&value[35..], &[0x18, 0x80, 0x82, 0x92, 0xc9, 0x06]);
        // Ids that are not 68 bytes of canonical keys.
        assert_eq!(SkippedKeyId::from_bytes(&bytes[..67]), None);
        assert_eq!(
            SkippedKeyId::from_bytes(&[bytes.as_slice(), &[0]].concat()),
            None
        );
        for at in [31, 63] {
            let mut bad = bytes;
            bad[at] |= 0x80; // bit 255 of a key
            assert_eq!(SkippedKeyId::from_bytes(&bad), None, "byte {at}");
        }
    }

    #[test]
    fn changes_show_their_ids_but_no_key_in_debug_output() {
        use alloc::string::{String, ToString};
        let mut c = Conversation::new(24, SessionConfig::default());
        let sent = c.alice_sends(2);
        c.bob_decrypts(&sent[1]);
        let changes = c.bob.1.take_skipped_changes();
        let [
            SkippedChange::DeleteSession(session),
            put @ SkippedChange::Put(id, value),
        ] = &changes[..]
        else {
            panic!("a new session's rows: {changes:?}")
        };
        let key = &value[3..35];
        let debug = alloc::format!("{put:?} {:?}", changes[0]);
        assert!(
            debug.starts_with("Put(SkippedKeyId { session: SessionId("),
            "{debug}"
        );
        assert!(debug.contains("DeleteSession(SessionId("), "{debug}");
        assert!(
            debug.contains(&alloc::format!("counter: {}", id.slot.counter)),
            "{debug}"
        );
        let compact: String = debug.chars().filter(|c| !c.is_whitespace()).collect();
        let listed: Vec<String> = key.iter().map(u8::to_string).collect();
        assert!(!compact.contains(&listed[..8].join(",")), "{debug}");
        let hex: String = key[..8].iter().map(|b| alloc::format!("{b:02x}")).collect();
        assert!(!compact.contains(&hex), "{debug}");
        assert_eq!(*session, id.session);
    }

    #[test]
    fn a_record_never_holds_two_sessions_with_one_id() {
        let mut rng = ChaCha20Rng::seed_from_u64(19);
        let alice = Account::new(&mut rng, NOW);
        let mut bob = Account::new(&mut rng, NOW);
        bob.generate_one_time_prekeys(&mut rng, 2, NOW).unwrap();
        let ids: Vec<_> = bob.one_time_prekeys().map(|k| k.id()).collect();
        // Alice reuses her ephemeral key: the same random draws for two setups on two
        // one-time prekeys.
        let wires: Vec<Vec<u8>> = ids
            .iter()
            .map(|id| {
                let bundle = bob.prekey_bundle(Some(*id), None).unwrap();
                let mut rng = ChaCha20Rng::seed_from_u64(20);
                let mut alices = SessionRecord::new();
                alices.initiate(&mut rng, &alice, &bundle).unwrap();
                alices.encrypt(&mut rng, b"hi").unwrap()
            })
            .collect();
        let mut record = SessionRecord::new();
        record.decrypt(&mut bob, &wires[0], NOW).unwrap();
        let before = (bob.to_bytes().to_vec(), record.to_bytes().to_vec());
        assert_eq!(
            record.decrypt(&mut bob, &wires[1], NOW),
            Err(DecryptError::SetupAlreadyUsed)
        );
        assert_eq!(
            before,
            (bob.to_bytes().to_vec(), record.to_bytes().to_vec())
        );
        // `initiate` whose random generator repeats itself replaces the session of the same
        // id (here Alice's record, twice with the same draws); others are archived.
        let bundle = bob.prekey_bundle(None, None).unwrap();
        let mut alices = SessionRecord::new();
        alices
            .initiate(&mut ChaCha20Rng::seed_from_u64(21), &alice, &bundle)
            .unwrap();
        alices
            .initiate(&mut ChaCha20Rng::seed_from_u64(22), &alice, &bundle)
            .unwrap();
        alices
            .initiate(&mut ChaCha20Rng::seed_from_u64(22), &alice, &bundle)
            .unwrap();
        assert_eq!(alices.previous_sessions().count(), 1);
        assert_ne!(
            alices.previous_sessions().next().unwrap().id(),
            alices.session_id().unwrap()
        );
        alices
            .initiate(&mut ChaCha20Rng::seed_from_u64(21), &alice, &bundle)
            .unwrap();
        assert_eq!(alices.previous_sessions().count(), 1);
        assert_ne!(
            alices.previous_sessions().next().unwrap().id(),
            alices.session_id().unwrap()
        );
        assert!(SessionRecord::from_bytes(&alices.to_bytes()).is_ok());
        // Decoding refuses a record with two sessions of one id.
        let mut p = record.to_proto();
        p.previous.push(p.current.clone().unwrap());
        assert_eq!(
            SessionRecord::from_bytes(&crate::wire::encode(&p)).err(),
            Some(invalid(
                "SessionRecordState",
                "previous",
                "two sessions have the same id (base key)"
            ))
        );
    }
}
