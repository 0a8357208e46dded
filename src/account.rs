//! The account: a long-term identity key and the prekey store (signed prekeys and one-time
//! prekeys with their private halves). The app persists it.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::error::{DecodeError, DecryptError, PreKeyError};
use crate::kem::{KEM_SEED_LEN, KemKeyPair};
use crate::keys::{IdentityKey, IdentityKeyPair, X25519KeyPair, X25519PublicKey};
use crate::prekeys::{self, PreKeyMaintenance, REPLACED_PREKEY_GRACE_SECS, ServerPreKeyStatus};
use crate::time::Timestamp;
use crate::wire::bundle::{
    KemPreKey, KemPreKeyId, OneTimePreKey, OneTimePreKeyId, PreKeyBundle, SignedPreKey,
    SignedPreKeyId,
};
use crate::wire::generated as pb;
use crate::wire::message::InitialSetup;
use crate::wire::upload::PreKeyUpload;

/// The most unused one-time prekeys an account holds at once.
pub const MAX_ONE_TIME_PREKEYS: usize = 10_000;

/// The most unused one-time KEM prekeys an account holds at once (Signal's clients upload
/// 100). Each is stored as its 64-byte seed and re-expanded (an ML-KEM key generation and a
/// signature check, about 0.15 ms) when the account is restored.
pub const MAX_ONE_TIME_KEM_PREKEYS: usize = 100;

/// The most setups without a one-time key an account remembers per signed prekey, to reject
/// their replays.
///
/// A setup that uses neither a one-time prekey nor a one-time KEM prekey (the server had run
/// out of both) can only be told apart from its replay by remembering its (signed prekey id,
/// base key). Such a replay can only succeed while that signed prekey exists, so the account
/// keeps one memory per signed prekey it holds, and forgets a memory only with its prekey.
/// Once the memory of a signed prekey holds this many setups, further setups without a
/// one-time key on that prekey are refused with [`DecryptError::ReplayMemoryFull`] (an entry
/// is never forgotten while its prekey exists, since its replay would then start a second
/// session); setups on other signed prekeys are not affected.
///
/// When the memory of the current signed prekey is half full,
/// [`Account::signed_prekey_rotation_due`] turns true: the app rotates the signed prekey and
/// publishes the new one, whose memory is empty, so new contacts keep working even while
/// someone floods the account with setups. In all, an account remembers at most
/// `MAX_USED_SETUPS * MAX_SIGNED_PREKEYS` (32,000) setups.
pub const MAX_USED_SETUPS: usize = 2_000;

/// How far a restored account's prekey id counters move ahead
/// ([`Device::restore`](crate::Device::restore)): 2^20 ids of each kind, far more than a
/// device publishes between a backup and its loss (10,000 refills of 100 one-time keys), so
/// no id the lost device published is used again for another key, and the server accepts
/// the restored device's first batch as newer than anything it stored.
pub const RESTORE_ID_GAP: u32 = 1 << 20;

/// How many setups the memory of the current signed prekey holds when
/// [`Account::signed_prekey_rotation_due`] turns true: half of [`MAX_USED_SETUPS`], so that
/// the other half still serves contacts who fetched the bundle before the app rotated.
const ROTATION_DUE_AT: usize = MAX_USED_SETUPS / 2;

/// The most signed prekeys an account holds: the current one and up to 15 replaced ones.
/// [`Account::rotate_signed_prekey`] deletes the oldest replaced one (and its replay memory)
/// when the account already holds this many; a persisted account with more is refused.
pub const MAX_SIGNED_PREKEYS: usize = 16;

/// The most last-resort KEM prekeys an account holds: the current one and up to 15 replaced
/// ones. [`Account::rotate_last_resort_kem_prekey`] deletes the oldest replaced one when the
/// account already holds this many; a persisted account with more is refused.
pub const MAX_LAST_RESORT_KEM_PREKEYS: usize = 16;

/// How many ids of deleted last-resort KEM prekeys the account remembers, so that an initial
/// message naming one is reported as [`DecryptError::UnknownKemPreKey`] rather than
/// [`DecryptError::KemPreKeyUsed`]. Only the error kind depends on it: both refuse the
/// message. Beyond this many deletions the oldest ids are forgotten.
const MAX_REMOVED_KEM_IDS: usize = 2_000;

/// A signed prekey with its private half.
///
/// Private halves are boxed throughout the account (here and in the map of one-time
/// prekeys): a key stays where it was put, and is zeroized there when dropped, while the
/// vectors and maps that hold it grow, shift and shrink. Held inline, their bytes would be
/// moved and left behind in memory that is freed without being zeroized.
#[derive(Clone)]
struct SignedPreKeyPair {
    public: SignedPreKey,
    key: Box<X25519KeyPair>,
}

/// A signed KEM prekey with its private half (boxed, as in [`SignedPreKeyPair`]).
#[derive(Clone)]
struct KemPreKeyPair {
    public: KemPreKey,
    key: Box<KemKeyPair>,
    /// One-time KEM prekeys only: when prekey maintenance replaced this key's batch on the
    /// server. Always `None` for last-resort KEM prekeys.
    replaced_at: Option<Timestamp>,
}

/// An unused one-time prekey with its private half (boxed, as in [`SignedPreKeyPair`]).
#[derive(Clone)]
struct OneTimePreKeyEntry {
    key: Box<X25519KeyPair>,
    created_at: Timestamp,
    /// When prekey maintenance replaced this key's batch on the server.
    replaced_at: Option<Timestamp>,
}

/// Whether a one-time key created at `created_at` and replaced on the server at
/// `replaced_at` has outlived `grace_secs` at `now`. The grace counts from the replacement,
/// or from the creation if that reads later (the clock went back in between).
fn replaced_one_time_key_expired(
    created_at: Timestamp,
    replaced_at: Option<Timestamp>,
    now: Timestamp,
    grace_secs: u64,
) -> bool {
    replaced_at.is_some_and(|replaced| grace_over(created_at.max(replaced), now, grace_secs))
}

/// Whether `now` is at least `grace_secs` after `at`. A `now` before `at` never is.
fn grace_over(at: Timestamp, now: Timestamp, grace_secs: u64) -> bool {
    now.as_unix_secs()
        .checked_sub(at.as_unix_secs())
        .is_some_and(|elapsed| elapsed >= grace_secs)
}

/// A user's long-term identity and prekey store.
///
/// The account creates prekeys for publication, builds [`PreKeyBundle`]s, and supplies the
/// private halves when an initial message arrives. A one-time prekey is consumed only when
/// the initial message that names it decrypts, so a forged or corrupted message cannot burn
/// prekeys.
///
/// Persist the account after every change (prekey generation, rotation, maintenance, and
/// every successful [`SessionRecord::decrypt`](crate::SessionRecord::decrypt) of an initial
/// message), with [`Account::to_bytes`] or [`Account::seal`].
///
/// ```
/// use ratchetbox::{Account, Timestamp};
/// let mut rng = ratchetbox::OsRng::new();
/// let now = Timestamp::from_unix_secs(1_764_000_000);
/// let mut account = Account::new(&mut rng, now);
/// let published = account.generate_one_time_prekeys(&mut rng, 100, now)?;
/// assert_eq!(published.len(), 100);
/// // Or let the account decide what the server needs, and upload that:
/// // `account.prekey_maintenance(&mut rng, now, server_status)`.
/// # Ok::<(), ratchetbox::PreKeyError>(())
/// ```
pub struct Account {
    identity: IdentityKeyPair,
    current_signed_prekey: SignedPreKeyPair,
    /// Replaced signed prekeys still accepted for initial messages in flight, oldest first.
    previous_signed_prekeys: Vec<SignedPreKeyPair>,
    one_time_prekeys: BTreeMap<u32, OneTimePreKeyEntry>,
    next_signed_prekey_id: u32,
    next_one_time_prekey_id: u32,
    /// Setups accepted without a one-time key of either kind, oldest first, at most
    /// `MAX_USED_SETUPS` per signed prekey, each naming a signed prekey the account holds: an
    /// initial message that repeats one of them is a replay and must not start a second
    /// session. Entries leave only with their signed prekey.
    used_setups: VecDeque<(SignedPreKeyId, X25519PublicKey)>,
    last_resort_kem_prekey: KemPreKeyPair,
    /// Replaced last-resort KEM prekeys, oldest first.
    previous_last_resort_kem_prekeys: Vec<KemPreKeyPair>,
    one_time_kem_prekeys: BTreeMap<u32, KemPreKeyPair>,
    next_kem_prekey_id: u32,
    /// Ids of deleted last-resort KEM prekeys, oldest first, at most `MAX_REMOVED_KEM_IDS`.
    removed_last_resort_kem_ids: VecDeque<u32>,
}

impl Account {
    /// Creates an account with a fresh identity key, a first signed prekey and a first
    /// last-resort KEM prekey, both created at `now`.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R, now: Timestamp) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let first = Self::make_signed_prekey(&identity, rng, SignedPreKeyId(1), now);
        let last_resort = Self::make_kem_prekey(&identity, rng, KemPreKeyId(1), now);
        Self {
            last_resort_kem_prekey: last_resort,
            previous_last_resort_kem_prekeys: Vec::new(),
            one_time_kem_prekeys: BTreeMap::new(),
            next_kem_prekey_id: 2,
            removed_last_resort_kem_ids: VecDeque::new(),
            identity,
            current_signed_prekey: first,
            previous_signed_prekeys: Vec::new(),
            one_time_prekeys: BTreeMap::new(),
            next_signed_prekey_id: 2,
            next_one_time_prekey_id: 1,
            used_setups: VecDeque::new(),
        }
    }

    fn make_signed_prekey<R: CryptoRng + ?Sized>(
        identity: &IdentityKeyPair,
        rng: &mut R,
        id: SignedPreKeyId,
        now: Timestamp,
    ) -> SignedPreKeyPair {
        let key = Box::new(X25519KeyPair::generate(rng));
        let message = SignedPreKey::signed_message(id, now, &key.public_key());
        let signature = identity.sign(&message);
        SignedPreKeyPair {
            public: SignedPreKey::new(id, now, key.public_key(), signature),
            key,
        }
    }

    fn make_kem_prekey<R: CryptoRng + ?Sized>(
        identity: &IdentityKeyPair,
        rng: &mut R,
        id: KemPreKeyId,
        now: Timestamp,
    ) -> KemPreKeyPair {
        let key = Box::new(KemKeyPair::generate(rng));
        let message = KemPreKey::signed_message(id, now, key.public_key());
        let signature = identity.sign(&message);
        KemPreKeyPair {
            public: KemPreKey::new(id, now, key.public_key().clone(), signature),
            key,
            replaced_at: None,
        }
    }

    /// The account's public identity key.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity.public_key()
    }

    pub(crate) fn identity(&self) -> &IdentityKeyPair {
        &self.identity
    }

    /// The current signed prekey, to publish.
    pub fn signed_prekey(&self) -> &SignedPreKey {
        &self.current_signed_prekey.public
    }

    /// Replaces the current signed prekey with a new one created at `now`. The previous ones
    /// stay usable for initial messages already in flight until
    /// [`remove_replaced_prekeys`](Self::remove_replaced_prekeys) drops them, or until
    /// [`MAX_SIGNED_PREKEYS`] are held: then this deletes the oldest replaced one, with its
    /// replay memory, as `remove_replaced_prekeys` would (initial messages naming it then
    /// fail with [`DecryptError::UnknownSignedPreKey`]).
    ///
    /// Rotate when [`signed_prekey_rotation_due`](Self::signed_prekey_rotation_due) says so,
    /// besides the app's regular schedule.
    pub fn rotate_signed_prekey<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<&SignedPreKey, PreKeyError> {
        let id = self.next_signed_prekey_id;
        let next = id.checked_add(1).ok_or(PreKeyError::IdsExhausted)?;
        let pair = Self::make_signed_prekey(&self.identity, rng, SignedPreKeyId(id), now);
        self.next_signed_prekey_id = next;
        let previous = core::mem::replace(&mut self.current_signed_prekey, pair);
        self.previous_signed_prekeys.push(previous);
        if self.previous_signed_prekeys.len() >= MAX_SIGNED_PREKEYS {
            self.previous_signed_prekeys.remove(0);
            self.forget_setups_of_deleted_prekeys();
        }
        Ok(self.signed_prekey())
    }

    /// Whether the app should rotate the signed prekey now
    /// ([`rotate_signed_prekey`](Self::rotate_signed_prekey)) and publish the new one: true
    /// once the replay memory of the current signed prekey holds half of
    /// [`MAX_USED_SETUPS`] setups without a one-time key.
    ///
    /// Check it after every initial message that decrypted, and whenever a decryption fails
    /// with [`DecryptError::ReplayMemoryFull`]. Until the app rotates, new setups without a
    /// one-time key on the current prekey are accepted until its memory is full, then
    /// refused; after the rotation, contacts who fetch the new bundle are accepted again.
    /// Setups with a one-time prekey or one-time KEM prekey are never limited.
    pub fn signed_prekey_rotation_due(&self) -> bool {
        self.setups_remembered_for(self.current_signed_prekey.public.id()) >= ROTATION_DUE_AT
    }

    /// How many setups the replay memory of signed prekey `id` holds.
    fn setups_remembered_for(&self, id: SignedPreKeyId) -> usize {
        self.used_setups.iter().filter(|(i, _)| *i == id).count()
    }

    /// Forgets the remembered setups of signed prekeys the account no longer holds: their
    /// replays now fail as an unknown signed prekey.
    fn forget_setups_of_deleted_prekeys(&mut self) {
        let current = self.current_signed_prekey.public.id();
        let held: Vec<SignedPreKeyId> = self
            .previous_signed_prekeys
            .iter()
            .map(|p| p.public.id())
            .collect();
        self.used_setups
            .retain(|(id, _)| *id == current || held.contains(id));
    }

    /// The current last-resort KEM prekey, to publish. Servers put it in bundles when they
    /// have run out of one-time KEM prekeys.
    pub fn last_resort_kem_prekey(&self) -> &KemPreKey {
        &self.last_resort_kem_prekey.public
    }

    /// Replaces the last-resort KEM prekey with a new one created at `now`; the previous ones
    /// stay usable until [`remove_replaced_prekeys`](Self::remove_replaced_prekeys) drops
    /// them, or until [`MAX_LAST_RESORT_KEM_PREKEYS`] are held: then this deletes the oldest
    /// replaced one, as `remove_replaced_prekeys` would (initial messages naming it then fail
    /// with [`DecryptError::UnknownKemPreKey`]).
    pub fn rotate_last_resort_kem_prekey<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<&KemPreKey, PreKeyError> {
        let id = self.next_kem_prekey_id;
        let next = id.checked_add(1).ok_or(PreKeyError::IdsExhausted)?;
        let pair = Self::make_kem_prekey(&self.identity, rng, KemPreKeyId(id), now);
        self.next_kem_prekey_id = next;
        let previous = core::mem::replace(&mut self.last_resort_kem_prekey, pair);
        self.previous_last_resort_kem_prekeys.push(previous);
        if self.previous_last_resort_kem_prekeys.len() >= MAX_LAST_RESORT_KEM_PREKEYS {
            let oldest = self.previous_last_resort_kem_prekeys.remove(0);
            note_removed_kem_id(&mut self.removed_last_resort_kem_ids, oldest.public.id());
        }
        Ok(self.last_resort_kem_prekey())
    }

    /// Creates `count` signed one-time KEM prekeys at `now` and returns their public halves,
    /// to upload.
    pub fn generate_one_time_kem_prekeys<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        count: usize,
        now: Timestamp,
    ) -> Result<Vec<KemPreKey>, PreKeyError> {
        let ids = reserve_ids(
            self.one_time_kem_prekeys.len(),
            count,
            MAX_ONE_TIME_KEM_PREKEYS,
            self.next_kem_prekey_id,
        )?;
        let end = ids.end;
        let mut published = Vec::with_capacity(count);
        for id in ids {
            let pair = Self::make_kem_prekey(&self.identity, rng, KemPreKeyId(id), now);
            published.push(pair.public.clone());
            self.one_time_kem_prekeys.insert(id, pair);
        }
        self.next_kem_prekey_id = end;
        Ok(published)
    }

    /// The public halves of all unused one-time KEM prekeys, by ascending id.
    pub fn one_time_kem_prekeys(&self) -> impl Iterator<Item = &KemPreKey> + '_ {
        self.one_time_kem_prekeys.values().map(|p| &p.public)
    }

    /// Deletes every signed prekey and last-resort KEM prekey that was replaced at least
    /// `grace_secs` seconds before `now` (the current ones are always kept), and every
    /// one-time prekey and one-time KEM prekey whose batch
    /// [`prekey_maintenance`](Self::prekey_maintenance) replaced on the server at least
    /// `grace_secs` before `now`. Returns how many were deleted.
    /// [`prekey_maintenance`](Self::prekey_maintenance) calls it with
    /// [`REPLACED_PREKEY_GRACE_SECS`](crate::REPLACED_PREKEY_GRACE_SECS).
    ///
    /// A prekey counts as replaced when its successor was created, or when it was created
    /// itself if its successor was stamped earlier (the clock went back at the rotation), so a
    /// clock jump never makes a prekey look replaced before it existed. A `now` earlier than
    /// that deletes nothing. See docs/PROTOCOL.md section 3.2. Initial messages naming a deleted prekey then fail with
    /// [`DecryptError::UnknownSignedPreKey`] or [`DecryptError::UnknownKemPreKey`] (the ids
    /// of the last 2,000 deleted last-resort KEM prekeys are remembered for that; an older
    /// one is reported as [`DecryptError::KemPreKeyUsed`], which refuses the message just
    /// the same).
    ///
    /// Deleting a signed prekey also forgets its replay memory, the setups without one-time
    /// keys that named it (see [`MAX_USED_SETUPS`]): their replays now fail as unknown signed
    /// prekey.
    ///
    /// A one-time key counts as replaced from the time maintenance replaced its batch, or
    /// from its own creation if that reads later. An initial message naming a deleted
    /// one-time key fails as [`DecryptError::OneTimePreKeyUsed`] or
    /// [`DecryptError::KemPreKeyUsed`]: the account does not remember which of its spent
    /// one-time keys were used and which expired.
    pub fn remove_replaced_prekeys(&mut self, now: Timestamp, grace_secs: u64) -> usize {
        let one_time_before = self.one_time_prekeys.len() + self.one_time_kem_prekeys.len();
        self.one_time_prekeys.retain(|_, e| {
            !replaced_one_time_key_expired(e.created_at, e.replaced_at, now, grace_secs)
        });
        self.one_time_kem_prekeys.retain(|_, p| {
            !replaced_one_time_key_expired(p.public.created_at(), p.replaced_at, now, grace_secs)
        });
        let removed_one_time =
            one_time_before - self.one_time_prekeys.len() - self.one_time_kem_prekeys.len();
        let removed_ids = &mut self.removed_last_resort_kem_ids;
        let removed_kem = retain_recent(
            &mut self.previous_last_resort_kem_prekeys,
            self.last_resort_kem_prekey.public.created_at(),
            |p| p.public.created_at(),
            |p| note_removed_kem_id(removed_ids, p.public.id()),
            now,
            grace_secs,
        );
        let removed = retain_recent(
            &mut self.previous_signed_prekeys,
            self.current_signed_prekey.public.created_at(),
            |p| p.public.created_at(),
            |_| {},
            now,
            grace_secs,
        );
        if removed > 0 {
            self.forget_setups_of_deleted_prekeys();
        }
        removed + removed_kem + removed_one_time
    }

    /// Prepares an account restored from a backup, which may be older than the device it
    /// replaces: deletes every one-time prekey and one-time KEM prekey (any of them may have
    /// been used since the backup), moves every id counter [`RESTORE_ID_GAP`] ahead (past
    /// any id the lost device may have published since), and rotates the signed prekey and
    /// the last-resort KEM prekey. The replaced ones stay usable for initial messages in
    /// flight, as after any rotation. Fails with [`PreKeyError::IdsExhausted`], changing
    /// nothing, if a counter cannot move that far.
    #[cfg(feature = "std")] // only the device layer restores
    pub(crate) fn prepare_restored<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<(), PreKeyError> {
        let gap = RESTORE_ID_GAP;
        // The rotations below take one more id each.
        let signed = self
            .next_signed_prekey_id
            .checked_add(gap)
            .filter(|n| n.checked_add(1).is_some())
            .ok_or(PreKeyError::IdsExhausted)?;
        let kem = self
            .next_kem_prekey_id
            .checked_add(gap)
            .filter(|n| n.checked_add(1).is_some())
            .ok_or(PreKeyError::IdsExhausted)?;
        let one_time = self
            .next_one_time_prekey_id
            .checked_add(gap)
            .ok_or(PreKeyError::IdsExhausted)?;
        self.one_time_prekeys.clear();
        self.one_time_kem_prekeys.clear();
        self.next_signed_prekey_id = signed;
        self.next_kem_prekey_id = kem;
        self.next_one_time_prekey_id = one_time;
        self.rotate_signed_prekey(rng, now)?;
        self.rotate_last_resort_kem_prekey(rng, now)?;
        Ok(())
    }

    /// Creates `count` one-time prekeys at `now` and returns their public halves, to upload.
    ///
    /// The account records each key's creation time (it is not published: one-time prekeys
    /// carry no time on the wire). [`remove_replaced_prekeys`](Self::remove_replaced_prekeys)
    /// uses it for keys replaced on the server by
    /// [`prekey_maintenance`](Self::prekey_maintenance): their grace period never starts
    /// before their creation. Fails with [`PreKeyError::TooManyOneTimePreKeys`] if the
    /// account would then hold more than [`MAX_ONE_TIME_PREKEYS`], creating nothing.
    pub fn generate_one_time_prekeys<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        count: usize,
        now: Timestamp,
    ) -> Result<Vec<OneTimePreKey>, PreKeyError> {
        let ids = reserve_ids(
            self.one_time_prekeys.len(),
            count,
            MAX_ONE_TIME_PREKEYS,
            self.next_one_time_prekey_id,
        )?;
        let end = ids.end;
        let mut published = Vec::with_capacity(count);
        for id in ids {
            let key = Box::new(X25519KeyPair::generate(rng));
            published.push(OneTimePreKey::new(OneTimePreKeyId(id), key.public_key()));
            self.one_time_prekeys.insert(
                id,
                OneTimePreKeyEntry {
                    key,
                    created_at: now,
                    replaced_at: None,
                },
            );
        }
        self.next_one_time_prekey_id = end;
        Ok(published)
    }

    /// The public halves of all unused one-time prekeys, by ascending id.
    pub fn one_time_prekeys(&self) -> impl Iterator<Item = OneTimePreKey> + '_ {
        self.one_time_prekeys
            .iter()
            .map(|(&id, e)| OneTimePreKey::new(OneTimePreKeyId(id), e.key.public_key()))
    }

    /// A bundle with the current signed prekey, the unused one-time prekey `one_time` if
    /// given, and the unused one-time KEM prekey `kem_one_time` if given, otherwise the
    /// last-resort KEM prekey. (A server assembles the same from the published parts with
    /// [`PreKeyBundle::assemble`].)
    pub fn prekey_bundle(
        &self,
        one_time: Option<OneTimePreKeyId>,
        kem_one_time: Option<KemPreKeyId>,
    ) -> Result<PreKeyBundle, PreKeyError> {
        let kem = match kem_one_time {
            Some(id) => self
                .one_time_kem_prekeys
                .get(&id.0)
                .map(|p| p.public.clone())
                .ok_or(PreKeyError::UnknownKemPreKey { id: id.0 })?,
            None => self.last_resort_kem_prekey.public.clone(),
        };
        self.bundle(one_time, Some(kem))
    }

    /// An upload of keys the account already holds, signed by its identity key, for apps
    /// that decide themselves what to publish (with
    /// [`prekey_maintenance_plan`](Self::prekey_maintenance_plan) or their own policy); most
    /// apps use [`prekey_maintenance`](Self::prekey_maintenance) instead. It carries the
    /// current signed prekey if `signed_prekey`, the current last-resort KEM prekey if
    /// `last_resort_kem_prekey`, and the unused one-time prekeys and one-time KEM prekeys
    /// with the given ids (in increasing id order, each once, whatever the order given).
    ///
    /// A server puts a non-empty list of one-time keys in place of its pool of that kind.
    /// This does not mark the account's other keys of that kind as replaced (only
    /// maintenance does), so they are kept until used.
    ///
    /// Fails with [`PreKeyError::UnknownOneTimePreKey`] or [`PreKeyError::UnknownKemPreKey`]
    /// for an id the account holds no unused one-time key of that kind with, and with
    /// [`PreKeyError::TooManyForUpload`] for more than
    /// [`MAX_UPLOAD_ONE_TIME_PREKEYS`](crate::MAX_UPLOAD_ONE_TIME_PREKEYS) ids of a kind.
    pub fn prekey_upload(
        &self,
        signed_prekey: bool,
        last_resort_kem_prekey: bool,
        one_time_prekeys: &[OneTimePreKeyId],
        one_time_kem_prekeys: &[KemPreKeyId],
    ) -> Result<PreKeyUpload, PreKeyError> {
        let one_time_ids = sorted_ids(one_time_prekeys.iter().map(|id| id.0))?;
        let kem_ids = sorted_ids(one_time_kem_prekeys.iter().map(|id| id.0))?;
        let one_time = one_time_ids
            .into_iter()
            .map(|id| {
                self.one_time_prekeys
                    .get(&id)
                    .map(|e| OneTimePreKey::new(OneTimePreKeyId(id), e.key.public_key()))
                    .ok_or(PreKeyError::UnknownOneTimePreKey { id })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let one_time_kem = kem_ids
            .into_iter()
            .map(|id| {
                self.one_time_kem_prekeys
                    .get(&id)
                    .map(|p| p.public.clone())
                    .ok_or(PreKeyError::UnknownKemPreKey { id })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(PreKeyUpload::signed_by(
            &self.identity,
            signed_prekey.then(|| self.current_signed_prekey.public.clone()),
            last_resort_kem_prekey.then(|| self.last_resort_kem_prekey.public.clone()),
            one_time,
            one_time_kem,
        ))
    }

    /// What [`prekey_maintenance`](Self::prekey_maintenance) would do at `now`, given what
    /// the server reports, without changing anything: for apps that want to decide
    /// themselves, or to show it.
    pub fn prekey_maintenance_plan(
        &self,
        now: Timestamp,
        server: ServerPreKeyStatus,
    ) -> PreKeyMaintenance {
        let grace = REPLACED_PREKEY_GRACE_SECS;
        let expired_one_time = self
            .one_time_prekeys
            .values()
            .filter(|e| replaced_one_time_key_expired(e.created_at, e.replaced_at, now, grace))
            .count();
        let expired_one_time_kem = self
            .one_time_kem_prekeys
            .values()
            .filter(|p| {
                replaced_one_time_key_expired(p.public.created_at(), p.replaced_at, now, grace)
            })
            .count();
        let expired_signed = count_expired(
            &self.previous_signed_prekeys,
            self.current_signed_prekey.public.created_at(),
            |p| p.public.created_at(),
            now,
            grace,
        );
        let expired_last_resort = count_expired(
            &self.previous_last_resort_kem_prekeys,
            self.last_resort_kem_prekey.public.created_at(),
            |p| p.public.created_at(),
            now,
            grace,
        );

        let signed = &self.current_signed_prekey.public;
        let rotate_signed_prekey =
            prekeys::rotation_due(signed.created_at(), now) || self.signed_prekey_rotation_due();
        let last_resort = &self.last_resort_kem_prekey.public;
        let rotate_last_resort_kem_prekey = prekeys::rotation_due(last_resort.created_at(), now);

        let one_time = prekeys::one_time_step(
            server.one_time_prekeys,
            server.newest_one_time_prekey_id.map(|id| id.0),
            prekeys::OneTimeKind {
                current_batch_first_id: self
                    .one_time_prekeys
                    .iter()
                    .find(|(_, e)| e.replaced_at.is_none())
                    .map(|(&id, _)| id),
                next_id: self.next_one_time_prekey_id,
                held: self.one_time_prekeys.len() - expired_one_time,
                max: MAX_ONE_TIME_PREKEYS,
            },
        );
        let one_time_kem = prekeys::one_time_step(
            server.one_time_kem_prekeys,
            server.newest_one_time_kem_prekey_id.map(|id| id.0),
            prekeys::OneTimeKind {
                current_batch_first_id: self
                    .one_time_kem_prekeys
                    .iter()
                    .find(|(_, p)| p.replaced_at.is_none())
                    .map(|(&id, _)| id),
                next_id: self.next_kem_prekey_id,
                held: self.one_time_kem_prekeys.len() - expired_one_time_kem,
                max: MAX_ONE_TIME_KEM_PREKEYS,
            },
        );
        let (resend_one_time_prekeys, new_one_time_prekeys, one_time_prekeys_capped) =
            step_counts(one_time, || {
                self.one_time_prekeys
                    .values()
                    .filter(|e| e.replaced_at.is_none())
                    .count()
            });
        let (resend_one_time_kem_prekeys, new_one_time_kem_prekeys, one_time_kem_prekeys_capped) =
            step_counts(one_time_kem, || {
                self.one_time_kem_prekeys
                    .values()
                    .filter(|p| p.replaced_at.is_none())
                    .count()
            });
        let deleted =
            expired_one_time + expired_one_time_kem + expired_signed + expired_last_resort;
        PreKeyMaintenance {
            // At most 10,000 + 100 + 15 + 15 prekeys: the count fits.
            replaced_prekeys_to_delete: u32::try_from(deleted).unwrap_or(u32::MAX),
            rotate_signed_prekey,
            upload_signed_prekey: rotate_signed_prekey
                || server.signed_prekey_id != Some(signed.id()),
            rotate_last_resort_kem_prekey,
            upload_last_resort_kem_prekey: rotate_last_resort_kem_prekey
                || server.last_resort_kem_prekey_id != Some(last_resort.id()),
            resend_one_time_prekeys,
            new_one_time_prekeys,
            one_time_prekeys_capped,
            resend_one_time_kem_prekeys,
            new_one_time_kem_prekeys,
            one_time_kem_prekeys_capped,
        }
    }

    /// Keeps the account's prekeys on its server plentiful and fresh, following the policy of
    /// docs/PROTOCOL.md section 3.5, and returns the upload to send, or `None` if the server
    /// needs nothing. Call it after processing the messages waiting on the server (so that
    /// no replaced key is deleted while a message that uses it waits there), then at least
    /// daily while the app runs, with what the server reports about this device.
    ///
    /// In this order:
    /// 1. deletes the replaced prekeys of every kind that have outlived
    ///    [`REPLACED_PREKEY_GRACE_SECS`] (30 days), as
    ///    [`remove_replaced_prekeys`](Self::remove_replaced_prekeys) does;
    /// 2. rotates the signed prekey when its creation time is at least
    ///    [`PREKEY_ROTATION_PERIOD_SECS`](crate::PREKEY_ROTATION_PERIOD_SECS) (2 days) from
    ///    `now` in either direction, or when
    ///    [`signed_prekey_rotation_due`](Self::signed_prekey_rotation_due) says so; uploads it
    ///    when it was rotated or the server does not hand out the current one;
    /// 3. rotates the last-resort KEM prekey on the same period; uploads it likewise;
    /// 4. for one-time prekeys, then one-time KEM prekeys: if the server never stored the
    ///    account's current batch (the keys not marked replaced), uploads that batch again;
    ///    otherwise, when the server holds fewer than
    ///    [`ONE_TIME_PREKEY_LOW_WATER`](crate::ONE_TIME_PREKEY_LOW_WATER) (10) keys of the
    ///    current batch, marks the keys the account holds of that kind as replaced at `now`
    ///    and creates a new batch of
    ///    [`ONE_TIME_PREKEY_TARGET`](crate::ONE_TIME_PREKEY_TARGET) (100) keys, which the
    ///    server puts in place of its pool. If that would exceed the account's limit
    ///    ([`MAX_ONE_TIME_PREKEYS`], [`MAX_ONE_TIME_KEM_PREKEYS`]), the batch is cut to the
    ///    room left, and not made at all unless it gives the server more usable keys than it
    ///    has (see [`PreKeyMaintenance::one_time_kem_prekeys_capped`]): the server then runs
    ///    out and hands out bundles without a one-time prekey, or with the last-resort KEM
    ///    prekey, until replaced keys expire and make room.
    ///
    /// New ids follow each kind's sequence; the last-resort KEM prekey, when rotated, takes
    /// its id before the new one-time KEM prekeys. Persist the account after every call,
    /// whatever it returns (step 1 may have deleted keys), and before sending the upload: a
    /// server must never hand out a key the stored account does not have. If the upload fails,
    /// call again later: the server's report then shows that it lacks the new keys, and they
    /// are uploaded again.
    ///
    /// Fails with [`PreKeyError::IdsExhausted`] if a kind has run out of ids, changing
    /// nothing.
    ///
    /// ```
    /// use ratchetbox::{Account, ServerPreKeyStatus, Timestamp};
    /// let mut rng = ratchetbox::OsRng::new();
    /// let now = Timestamp::from_unix_secs(1_764_000_000);
    /// let mut account = Account::new(&mut rng, now);
    /// let first = account.prekey_maintenance(&mut rng, now, ServerPreKeyStatus::default())?;
    /// let first = first.expect("the server has nothing yet");
    /// assert_eq!(first.one_time_prekeys().len(), 100);
    /// assert_eq!(first.one_time_kem_prekeys().len(), 100);
    ///
    /// // The server stored it and still has 60 keys of each one-time kind.
    /// let status = ServerPreKeyStatus {
    ///     signed_prekey_id: Some(account.signed_prekey().id()),
    ///     last_resort_kem_prekey_id: Some(account.last_resort_kem_prekey().id()),
    ///     one_time_prekeys: 60,
    ///     newest_one_time_prekey_id: first.one_time_prekeys().last().map(|k| k.id()),
    ///     one_time_kem_prekeys: 60,
    ///     newest_one_time_kem_prekey_id: first.one_time_kem_prekeys().last().map(|k| k.id()),
    /// };
    /// let an_hour_later = now.saturating_add_secs(3_600);
    /// assert!(account.prekey_maintenance(&mut rng, an_hour_later, status)?.is_none());
    /// # Ok::<(), ratchetbox::PreKeyError>(())
    /// ```
    pub fn prekey_maintenance<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        server: ServerPreKeyStatus,
    ) -> Result<Option<PreKeyUpload>, PreKeyError> {
        let plan = self.prekey_maintenance_plan(now, server);
        // Every id the plan takes is checked before anything changes, so that the steps
        // below cannot fail halfway.
        if plan.rotate_signed_prekey {
            self.next_signed_prekey_id
                .checked_add(1)
                .ok_or(PreKeyError::IdsExhausted)?;
        }
        self.next_kem_prekey_id
            .checked_add(u32::from(plan.rotate_last_resort_kem_prekey))
            .and_then(|next| next.checked_add(plan.new_one_time_kem_prekeys))
            .ok_or(PreKeyError::IdsExhausted)?;
        self.next_one_time_prekey_id
            .checked_add(plan.new_one_time_prekeys)
            .ok_or(PreKeyError::IdsExhausted)?;

        self.remove_replaced_prekeys(now, REPLACED_PREKEY_GRACE_SECS);
        if plan.rotate_signed_prekey {
            self.rotate_signed_prekey(rng, now)?;
        }
        if plan.rotate_last_resort_kem_prekey {
            self.rotate_last_resort_kem_prekey(rng, now)?;
        }
        let one_time_prekeys = if plan.new_one_time_prekeys > 0 {
            for entry in self.one_time_prekeys.values_mut() {
                entry.replaced_at.get_or_insert(now);
            }
            self.generate_one_time_prekeys(rng, plan.new_one_time_prekeys as usize, now)?
        } else {
            self.one_time_prekeys
                .iter()
                .filter(|(_, e)| e.replaced_at.is_none())
                .take(plan.resend_one_time_prekeys as usize)
                .map(|(&id, e)| OneTimePreKey::new(OneTimePreKeyId(id), e.key.public_key()))
                .collect()
        };
        let one_time_kem_prekeys = if plan.new_one_time_kem_prekeys > 0 {
            for pair in self.one_time_kem_prekeys.values_mut() {
                pair.replaced_at.get_or_insert(now);
            }
            self.generate_one_time_kem_prekeys(rng, plan.new_one_time_kem_prekeys as usize, now)?
        } else {
            self.one_time_kem_prekeys
                .values()
                .filter(|p| p.replaced_at.is_none())
                .take(plan.resend_one_time_kem_prekeys as usize)
                .map(|p| p.public.clone())
                .collect()
        };
        let upload = PreKeyUpload::signed_by(
            &self.identity,
            plan.upload_signed_prekey
                .then(|| self.current_signed_prekey.public.clone()),
            plan.upload_last_resort_kem_prekey
                .then(|| self.last_resort_kem_prekey.public.clone()),
            one_time_prekeys,
            one_time_kem_prekeys,
        );
        Ok((!upload.is_empty()).then_some(upload))
    }

    /// A classical bundle, without a post-quantum prekey, for peers that cannot do PQXDH.
    /// Initiators refuse it unless classical setups are explicitly allowed.
    pub fn classical_prekey_bundle(
        &self,
        one_time: Option<OneTimePreKeyId>,
    ) -> Result<PreKeyBundle, PreKeyError> {
        self.bundle(one_time, None)
    }

    /// A bundle with the current signed prekey, the unused one-time prekey `one_time` if
    /// given, and `kem`.
    fn bundle(
        &self,
        one_time: Option<OneTimePreKeyId>,
        kem: Option<KemPreKey>,
    ) -> Result<PreKeyBundle, PreKeyError> {
        let one_time_prekey = one_time
            .map(|id| {
                self.one_time_prekeys
                    .get(&id.0)
                    .map(|e| OneTimePreKey::new(id, e.key.public_key()))
                    .ok_or(PreKeyError::UnknownOneTimePreKey { id: id.0 })
            })
            .transpose()?;
        Ok(PreKeyBundle::new(
            self.identity_key(),
            self.signed_prekey().clone(),
            one_time_prekey,
            kem,
        ))
    }

    /// The private half of signed prekey `id`.
    pub(crate) fn signed_prekey_pair(
        &self,
        id: SignedPreKeyId,
    ) -> Result<&X25519KeyPair, DecryptError> {
        core::iter::once(&self.current_signed_prekey)
            .chain(self.previous_signed_prekeys.iter().rev())
            .find(|p| p.public.id() == id)
            .map(|p| &*p.key)
            .ok_or(DecryptError::UnknownSignedPreKey { id: id.0 })
    }

    /// The private half of the unused one-time prekey `id`, or why there is none.
    pub(crate) fn one_time_prekey_pair(
        &self,
        id: OneTimePreKeyId,
    ) -> Result<&X25519KeyPair, DecryptError> {
        match self.one_time_prekeys.get(&id.0) {
            Some(e) => Ok(&*e.key),
            // Ids are handed out in increasing order from 1, so a lower id that is gone was
            // used.
            None if id.0 != 0 && id.0 < self.next_one_time_prekey_id => {
                Err(DecryptError::OneTimePreKeyUsed { id: id.0 })
            }
            None => Err(DecryptError::UnknownOneTimePreKey { id: id.0 }),
        }
    }

    /// The private half of KEM prekey `id` (one-time or last-resort), and whether it is a
    /// one-time key, or why there is none.
    pub(crate) fn kem_prekey_pair(
        &self,
        id: KemPreKeyId,
    ) -> Result<(&KemKeyPair, bool), DecryptError> {
        if let Some(pair) = self.one_time_kem_prekeys.get(&id.0) {
            return Ok((&pair.key, true));
        }
        if let Some(pair) = core::iter::once(&self.last_resort_kem_prekey)
            .chain(self.previous_last_resort_kem_prekeys.iter().rev())
            .find(|p| p.public.id() == id)
        {
            return Ok((&pair.key, false));
        }
        if id.0 != 0
            && id.0 < self.next_kem_prekey_id
            && !self.removed_last_resort_kem_ids.contains(&id.0)
        {
            Err(DecryptError::KemPreKeyUsed { id: id.0 })
        } else {
            Err(DecryptError::UnknownKemPreKey { id: id.0 })
        }
    }

    /// For a setup without a one-time key of either kind, on signed prekey
    /// `signed_prekey_id` (which the account holds): fails if it was already accepted (a
    /// replay), or if the memory of that signed prekey cannot take one more setup.
    pub(crate) fn check_setup_unused(
        &self,
        signed_prekey_id: SignedPreKeyId,
        base_key: &X25519PublicKey,
    ) -> Result<(), DecryptError> {
        if self
            .used_setups
            .iter()
            .any(|(id, key)| *id == signed_prekey_id && key == base_key)
        {
            return Err(DecryptError::SetupAlreadyUsed);
        }
        if self.setups_remembered_for(signed_prekey_id) >= MAX_USED_SETUPS {
            return Err(DecryptError::ReplayMemoryFull {
                signed_prekey_id: signed_prekey_id.0,
                max: MAX_USED_SETUPS,
            });
        }
        Ok(())
    }

    /// Commits a setup after its initial message decrypted: deletes the one-time keys it
    /// used or, if it used none of either kind, remembers it against replays. The caller
    /// checked such a setup with [`check_setup_unused`](Self::check_setup_unused) on this
    /// unchanged account, so there is room: nothing is ever forgotten here.
    pub(crate) fn commit_setup(&mut self, setup: &InitialSetup) {
        if let Some(id) = setup.one_time_prekey_id {
            self.one_time_prekeys.remove(&id.0);
        }
        let kem_one_time = setup
            .kem
            .as_ref()
            .is_some_and(|k| self.one_time_kem_prekeys.remove(&k.prekey_id.0).is_some());
        if setup.one_time_prekey_id.is_none() && !kem_one_time {
            self.used_setups
                .push_back((setup.signed_prekey_id, setup.base_key));
        }
    }

    pub(crate) fn to_proto(&self) -> pb::AccountState {
        pb::AccountState {
            identity_seed: self.identity.seed().to_vec(),
            signed_prekeys: self
                .previous_signed_prekeys
                .iter()
                .chain(core::iter::once(&self.current_signed_prekey))
                .map(|p| pb::SignedPreKeyState {
                    id: p.public.id().0,
                    created_at: p.public.created_at().as_unix_secs(),
                    secret: p.key.secret_bytes().to_vec(),
                    signature: p.public.signature().to_vec(),
                })
                .collect(),
            one_time_prekeys: self
                .one_time_prekeys
                .iter()
                .map(|(&id, e)| pb::OneTimePreKeyState {
                    id,
                    secret: e.key.secret_bytes().to_vec(),
                    created_at: e.created_at.as_unix_secs(),
                    replaced_at: e.replaced_at.map(Timestamp::as_unix_secs),
                })
                .collect(),
            next_signed_prekey_id: self.next_signed_prekey_id,
            next_one_time_prekey_id: self.next_one_time_prekey_id,
            used_setups: self
                .used_setups
                .iter()
                .map(|(id, key)| pb::UsedSetup {
                    signed_prekey_id: id.0,
                    base_key: key.to_bytes().to_vec(),
                })
                .collect(),
            last_resort_kem_prekeys: self
                .previous_last_resort_kem_prekeys
                .iter()
                .chain(core::iter::once(&self.last_resort_kem_prekey))
                .map(kem_prekey_to_proto)
                .collect(),
            one_time_kem_prekeys: self
                .one_time_kem_prekeys
                .values()
                .map(kem_prekey_to_proto)
                .collect(),
            next_kem_prekey_id: self.next_kem_prekey_id,
            removed_last_resort_kem_ids: self.removed_last_resort_kem_ids.iter().copied().collect(),
        }
    }

    pub(crate) fn from_proto(p: &pb::AccountState) -> Result<Self, DecodeError> {
        use crate::wire::fixed;
        const OBJECT: &str = "AccountState";
        let identity = IdentityKeyPair::from_seed(&zeroize::Zeroizing::new(fixed(
            &p.identity_seed,
            OBJECT,
            "identity_seed",
        )?));
        // Every list is checked against its cap before any of its keys is derived or any
        // signature verified.
        at_most(p.signed_prekeys.len(), MAX_SIGNED_PREKEYS, "signed_prekeys")?;
        let mut previous_signed_prekeys = Vec::with_capacity(p.signed_prekeys.len());
        let mut last_id = 0;
        for s in &p.signed_prekeys {
            increasing_id(&mut last_id, s.id, "SignedPreKeyState")?;
            let key = Box::new(X25519KeyPair::from_secret_bytes(&zeroize::Zeroizing::new(
                fixed(&s.secret, "SignedPreKeyState", "secret")?,
            )));
            let public = SignedPreKey::new(
                SignedPreKeyId(s.id),
                Timestamp::from_unix_secs(s.created_at),
                key.public_key(),
                fixed(&s.signature, "SignedPreKeyState", "signature")?,
            );
            if s.id >= p.next_signed_prekey_id || !public.verify(&identity.public_key()) {
                return Err(DecodeError::InvalidValue {
                    object: "SignedPreKeyState",
                    field: "signature",
                    reason: "not a signed prekey issued by this account's identity key",
                });
            }
            previous_signed_prekeys.push(SignedPreKeyPair { public, key });
        }
        let Some(current_signed_prekey) = previous_signed_prekeys.pop() else {
            return Err(DecodeError::MissingField {
                object: OBJECT,
                field: "signed_prekeys",
            });
        };
        at_most(
            p.one_time_prekeys.len(),
            MAX_ONE_TIME_PREKEYS,
            "one_time_prekeys",
        )?;
        let mut one_time_prekeys = BTreeMap::new();
        for o in &p.one_time_prekeys {
            let key = Box::new(X25519KeyPair::from_secret_bytes(&zeroize::Zeroizing::new(
                fixed(&o.secret, "OneTimePreKeyState", "secret")?,
            )));
            let entry = OneTimePreKeyEntry {
                key,
                created_at: Timestamp::from_unix_secs(o.created_at),
                replaced_at: o.replaced_at.map(Timestamp::from_unix_secs),
            };
            if o.id >= p.next_one_time_prekey_id || one_time_prekeys.insert(o.id, entry).is_some() {
                return Err(DecodeError::InvalidValue {
                    object: "OneTimePreKeyState",
                    field: "id",
                    reason: "duplicate id, or an id the account has not issued yet",
                });
            }
        }
        let used_setups = used_setups_from_proto(
            &p.used_setups,
            current_signed_prekey.public.id(),
            &previous_signed_prekeys,
        )?;
        let identity_key = identity.public_key();
        let kem_from_proto =
            |k: &pb::KemPreKeyState| kem_prekey_from_proto(k, &identity_key, p.next_kem_prekey_id);
        at_most(
            p.last_resort_kem_prekeys.len(),
            MAX_LAST_RESORT_KEM_PREKEYS,
            "last_resort_kem_prekeys",
        )?;
        let mut last_id = 0;
        let mut previous_last_resort_kem_prekeys = p
            .last_resort_kem_prekeys
            .iter()
            .map(|k| {
                increasing_id(&mut last_id, k.id, "KemPreKeyState")?;
                if k.replaced_at.is_some() {
                    return Err(DecodeError::InvalidValue {
                        object: "KemPreKeyState",
                        field: "replaced_at",
                        reason: "set on a last-resort KEM prekey (only one-time ones are replaced in batches)",
                    });
                }
                kem_from_proto(k)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let Some(last_resort_kem_prekey) = previous_last_resort_kem_prekeys.pop() else {
            return Err(DecodeError::MissingField {
                object: OBJECT,
                field: "last_resort_kem_prekeys",
            });
        };
        at_most(
            p.removed_last_resort_kem_ids.len(),
            MAX_REMOVED_KEM_IDS,
            "removed_last_resort_kem_ids",
        )?;
        at_most(
            p.one_time_kem_prekeys.len(),
            MAX_ONE_TIME_KEM_PREKEYS,
            "one_time_kem_prekeys",
        )?;
        let mut one_time_kem_prekeys = BTreeMap::new();
        let last_resort_ids: Vec<u32> = p.last_resort_kem_prekeys.iter().map(|k| k.id).collect();
        for k in &p.one_time_kem_prekeys {
            if last_resort_ids.contains(&k.id) {
                return Err(DecodeError::InvalidValue {
                    object: "KemPreKeyState",
                    field: "id",
                    reason: "the id of a one-time KEM prekey and of a last-resort one",
                });
            }
            let pair = kem_from_proto(k)?;
            if one_time_kem_prekeys.insert(k.id, pair).is_some() {
                return Err(DecodeError::InvalidValue {
                    object: "KemPreKeyState",
                    field: "id",
                    reason: "duplicate id",
                });
            }
        }
        Ok(Self {
            identity,
            current_signed_prekey,
            previous_signed_prekeys,
            one_time_prekeys,
            next_signed_prekey_id: p.next_signed_prekey_id,
            next_one_time_prekey_id: p.next_one_time_prekey_id,
            used_setups,
            last_resort_kem_prekey,
            previous_last_resort_kem_prekeys,
            one_time_kem_prekeys,
            next_kem_prekey_id: p.next_kem_prekey_id,
            removed_last_resort_kem_ids: p.removed_last_resort_kem_ids.iter().copied().collect(),
        })
    }
}

/// A copy of the account, secrets included (each private key is copied into its own
/// allocation, zeroized when dropped), for example to try an operation on a copy and keep the
/// original if the app cannot persist the result.
impl Clone for Account {
    fn clone(&self) -> Self {
        Self {
            identity: IdentityKeyPair::from_seed(self.identity.seed()),
            current_signed_prekey: self.current_signed_prekey.clone(),
            previous_signed_prekeys: self.previous_signed_prekeys.clone(),
            one_time_prekeys: self.one_time_prekeys.clone(),
            next_signed_prekey_id: self.next_signed_prekey_id,
            next_one_time_prekey_id: self.next_one_time_prekey_id,
            used_setups: self.used_setups.clone(),
            last_resort_kem_prekey: self.last_resort_kem_prekey.clone(),
            previous_last_resort_kem_prekeys: self.previous_last_resort_kem_prekeys.clone(),
            one_time_kem_prekeys: self.one_time_kem_prekeys.clone(),
            next_kem_prekey_id: self.next_kem_prekey_id,
            removed_last_resort_kem_ids: self.removed_last_resort_kem_ids.clone(),
        }
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("identity_key", &self.identity_key())
            .field("signed_prekey", &self.current_signed_prekey.public.id().0)
            .field(
                "previous_signed_prekeys",
                &self.previous_signed_prekeys.len(),
            )
            .field("one_time_prekeys", &self.one_time_prekeys.len())
            .field(
                "last_resort_kem_prekey",
                &self.last_resort_kem_prekey.public.id().0,
            )
            .field("one_time_kem_prekeys", &self.one_time_kem_prekeys.len())
            .finish_non_exhaustive()
    }
}

/// The ids for `count` new one-time keys starting at `next`, if `held + count` stays within
/// `max` and the ids within `u32`.
fn reserve_ids(
    held: usize,
    count: usize,
    max: usize,
    next: u32,
) -> Result<core::ops::Range<u32>, PreKeyError> {
    if held.saturating_add(count) > max {
        return Err(PreKeyError::TooManyOneTimePreKeys { max });
    }
    let end = u32::try_from(count)
        .ok()
        .and_then(|c| next.checked_add(c))
        .ok_or(PreKeyError::IdsExhausted)?;
    Ok(next..end)
}

/// The report's numbers for one one-time kind: how many keys are sent again, how many are
/// created, and whether the limit cut a refill short. `current` counts the keys of the
/// current batch (at most [`MAX_UPLOAD_ONE_TIME_PREKEYS`](crate::MAX_UPLOAD_ONE_TIME_PREKEYS)
/// of them are sent again).
fn step_counts(step: prekeys::OneTimeStep, current: impl Fn() -> usize) -> (u32, u32, bool) {
    match step {
        prekeys::OneTimeStep::Nothing { capped } => (0, 0, capped),
        prekeys::OneTimeStep::Refill { batch, capped } => (0, batch, capped),
        prekeys::OneTimeStep::Resend => {
            let count = current().min(crate::wire::upload::MAX_UPLOAD_ONE_TIME_PREKEYS);
            // At most 100: it fits.
            (u32::try_from(count).unwrap_or(u32::MAX), 0, false)
        }
    }
}

/// `ids` in increasing order, each once, if there are at most
/// [`MAX_UPLOAD_ONE_TIME_PREKEYS`](crate::MAX_UPLOAD_ONE_TIME_PREKEYS) of them.
fn sorted_ids(ids: impl Iterator<Item = u32>) -> Result<Vec<u32>, PreKeyError> {
    let max = crate::wire::upload::MAX_UPLOAD_ONE_TIME_PREKEYS;
    let ids: BTreeSet<u32> = ids.collect();
    if ids.len() > max {
        return Err(PreKeyError::TooManyForUpload { max });
    }
    Ok(ids.into_iter().collect())
}

/// Fails if a decoded list is longer than the account ever keeps.
fn at_most(len: usize, max: usize, field: &'static str) -> Result<(), DecodeError> {
    if len > max {
        return Err(DecodeError::InvalidValue {
            object: "AccountState",
            field,
            reason: "more entries than an account keeps",
        });
    }
    Ok(())
}

/// Fails unless `id` is above `last` (prekey lists are stored oldest first, and ids are issued
/// in increasing order from 1), and makes it the new `last`.
fn increasing_id(last: &mut u32, id: u32, object: &'static str) -> Result<(), DecodeError> {
    if id == 0 {
        return Err(DecodeError::InvalidValue {
            object,
            field: "id",
            reason: "0, which is never issued",
        });
    }
    if id <= *last {
        return Err(DecodeError::InvalidValue {
            object,
            field: "id",
            reason: "repeated, or not in increasing order (oldest first)",
        });
    }
    *last = id;
    Ok(())
}

/// The replay memory: at most [`MAX_USED_SETUPS`] setups per signed prekey, each naming a
/// signed prekey the account holds, none twice.
fn used_setups_from_proto(
    entries: &[pb::UsedSetup],
    current: SignedPreKeyId,
    previous: &[SignedPreKeyPair],
) -> Result<VecDeque<(SignedPreKeyId, X25519PublicKey)>, DecodeError> {
    const OBJECT: &str = "UsedSetup";
    at_most(
        entries.len(),
        MAX_USED_SETUPS * MAX_SIGNED_PREKEYS,
        "used_setups",
    )?;
    // Per held signed prekey (current last): its id and how many setups it remembers.
    let mut counts: Vec<(SignedPreKeyId, usize)> = previous
        .iter()
        .map(|p| (p.public.id(), 0))
        .chain(core::iter::once((current, 0)))
        .collect();
    let mut seen = BTreeSet::new();
    let mut used_setups = VecDeque::with_capacity(entries.len());
    for u in entries {
        let id = SignedPreKeyId(u.signed_prekey_id);
        let Some((_, count)) = counts.iter_mut().find(|(held, _)| *held == id) else {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "signed_prekey_id",
                reason: "names a signed prekey the account does not hold",
            });
        };
        *count += 1;
        if *count > MAX_USED_SETUPS {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "signed_prekey_id",
                reason: "more setups for one signed prekey than an account remembers",
            });
        }
        let base_key = crate::wire::x25519_key(&u.base_key, OBJECT, "base_key")?;
        if !seen.insert((id.0, base_key)) {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "base_key",
                reason: "the same setup twice",
            });
        }
        used_setups.push_back((id, base_key));
    }
    Ok(used_setups)
}

/// Remembers the id of a deleted last-resort KEM prekey, forgetting the oldest beyond
/// `MAX_REMOVED_KEM_IDS`.
fn note_removed_kem_id(removed: &mut VecDeque<u32>, id: KemPreKeyId) {
    if removed.len() == MAX_REMOVED_KEM_IDS {
        removed.pop_front();
    }
    removed.push_back(id.0);
}

/// The moment each entry of `previous` (oldest first) was last known current: when its
/// successor (the next one, or `current_created_at` for the last) replaced it, or when it was
/// created itself if that reads later: a clock that went back at a rotation stamps the
/// successor earlier than the entry it replaces, and the entry must not look replaced before
/// it existed.
fn last_current_times<T>(
    previous: &[T],
    current_created_at: Timestamp,
    created_at: impl Fn(&T) -> Timestamp,
) -> Vec<Timestamp> {
    let successors_created_at = previous
        .iter()
        .skip(1)
        .map(&created_at)
        .chain(core::iter::once(current_created_at));
    previous
        .iter()
        .map(&created_at)
        .zip(successors_created_at)
        .map(|(own, successor)| own.max(successor))
        .collect()
}

/// How many entries of `previous` [`retain_recent`] would drop.
fn count_expired<T>(
    previous: &[T],
    current_created_at: Timestamp,
    created_at: impl Fn(&T) -> Timestamp,
    now: Timestamp,
    grace_secs: u64,
) -> usize {
    last_current_times(previous, current_created_at, created_at)
        .into_iter()
        .filter(|&at| grace_over(at, now, grace_secs))
        .count()
}

/// Drops the entries of `previous` (oldest first) that were last known current (see
/// [`last_current_times`]) at least `grace_secs` before `now`. A `now` earlier than that time
/// deletes nothing (no subtraction wraps). `dropped` sees each dropped entry, oldest first.
/// Returns how many were dropped.
fn retain_recent<T>(
    previous: &mut Vec<T>,
    current_created_at: Timestamp,
    created_at: impl Fn(&T) -> Timestamp,
    mut dropped: impl FnMut(&T),
    now: Timestamp,
    grace_secs: u64,
) -> usize {
    let last_current_at = last_current_times(previous, current_created_at, created_at);
    let before = previous.len();
    let mut last_current = last_current_at.into_iter();
    previous.retain(|entry| {
        let keep = last_current
            .next()
            .is_none_or(|at| !grace_over(at, now, grace_secs));
        if !keep {
            dropped(entry);
        }
        keep
    });
    before - previous.len()
}

fn kem_prekey_to_proto(pair: &KemPreKeyPair) -> pb::KemPreKeyState {
    pb::KemPreKeyState {
        id: pair.public.id().0,
        created_at: pair.public.created_at().as_unix_secs(),
        seed: pair.key.seed().to_vec(),
        signature: pair.public.signature().to_vec(),
        replaced_at: pair.replaced_at.map(Timestamp::as_unix_secs),
    }
}

fn kem_prekey_from_proto(
    k: &pb::KemPreKeyState,
    identity: &IdentityKey,
    next_id: u32,
) -> Result<KemPreKeyPair, DecodeError> {
    const OBJECT: &str = "KemPreKeyState";
    let seed =
        zeroize::Zeroizing::new(crate::wire::fixed::<KEM_SEED_LEN>(&k.seed, OBJECT, "seed")?);
    let key = Box::new(KemKeyPair::from_seed(&seed));
    let public = KemPreKey::new(
        KemPreKeyId(k.id),
        Timestamp::from_unix_secs(k.created_at),
        key.public_key().clone(),
        crate::wire::fixed(&k.signature, OBJECT, "signature")?,
    );
    if k.id == 0 || k.id >= next_id || !public.verify(identity) {
        return Err(DecodeError::InvalidValue {
            object: OBJECT,
            field: "signature",
            reason: "not a KEM prekey issued by this account's identity key",
        });
    }
    Ok(KemPreKeyPair {
        public,
        key,
        replaced_at: k.replaced_at.map(Timestamp::from_unix_secs),
    })
}
