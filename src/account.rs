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
use crate::time::Timestamp;
use crate::wire::bundle::{
    KemPreKey, KemPreKeyId, OneTimePreKey, OneTimePreKeyId, PreKeyBundle, SignedPreKey,
    SignedPreKeyId,
};
use crate::wire::generated as pb;
use crate::wire::message::InitialSetup;

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
}

/// A user's long-term identity and prekey store.
///
/// The account creates prekeys for publication, builds [`PreKeyBundle`]s, and supplies the
/// private halves when an initial message arrives. A one-time prekey is consumed only when
/// the initial message that names it decrypts, so a forged or corrupted message cannot burn
/// prekeys.
///
/// Persist the account after every change (prekey generation, rotation, and every
/// successful [`SessionRecord::decrypt`](crate::SessionRecord::decrypt) of an initial
/// message), with [`Account::to_bytes`] or [`Account::seal`].
///
/// ```
/// use ratchetbox::{Account, Timestamp};
/// let mut rng = ratchetbox::OsRng::new();
/// let now = Timestamp::from_unix_secs(1_764_000_000);
/// let mut account = Account::new(&mut rng, now);
/// let published = account.generate_one_time_prekeys(&mut rng, 100)?;
/// assert_eq!(published.len(), 100);
/// // Upload account.identity_key(), account.signed_prekey() and `published` to the server.
/// # Ok::<(), ratchetbox::PreKeyError>(())
/// ```
pub struct Account {
    identity: IdentityKeyPair,
    current_signed_prekey: SignedPreKeyPair,
    /// Replaced signed prekeys still accepted for initial messages in flight, oldest first.
    previous_signed_prekeys: Vec<SignedPreKeyPair>,
    one_time_prekeys: BTreeMap<u32, Box<X25519KeyPair>>,
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
    /// `grace_secs` seconds before `now` (the current ones are always kept). Returns how many
    /// were deleted.
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
    pub fn remove_replaced_prekeys(&mut self, now: Timestamp, grace_secs: u64) -> usize {
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
        removed + removed_kem
    }

    /// Creates `count` one-time prekeys and returns their public halves, to upload.
    pub fn generate_one_time_prekeys<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        count: usize,
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
            self.one_time_prekeys.insert(id, key);
        }
        self.next_one_time_prekey_id = end;
        Ok(published)
    }

    /// The public halves of all unused one-time prekeys, by ascending id.
    pub fn one_time_prekeys(&self) -> impl Iterator<Item = OneTimePreKey> + '_ {
        self.one_time_prekeys
            .iter()
            .map(|(&id, key)| OneTimePreKey::new(OneTimePreKeyId(id), key.public_key()))
    }

    /// A bundle with the current signed prekey, the unused one-time prekey `one_time` if
    /// given, and the unused one-time KEM prekey `kem_one_time` if given, otherwise the
    /// last-resort KEM prekey. (A server assembles the same from the published parts with
    /// [`PreKeyBundle::new`].)
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
                    .map(|key| OneTimePreKey::new(id, key.public_key()))
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
            Some(key) => Ok(&**key),
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
                .map(|(&id, key)| pb::OneTimePreKeyState {
                    id,
                    secret: key.secret_bytes().to_vec(),
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
            if o.id >= p.next_one_time_prekey_id || one_time_prekeys.insert(o.id, key).is_some() {
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

/// Drops the entries of `previous` (oldest first) that were last known current at least
/// `grace_secs` before `now`. An entry was last known current when its successor (the next
/// one, or `current_created_at` for the last) replaced it, or when it was created itself if
/// that reads later: a clock that went back at a rotation stamps the successor earlier than
/// the entry it replaces, and the entry must not look replaced before it existed. A `now`
/// earlier than that time deletes nothing (no subtraction wraps). `dropped` sees each dropped
/// entry, oldest first. Returns how many were dropped.
fn retain_recent<T>(
    previous: &mut Vec<T>,
    current_created_at: Timestamp,
    created_at: impl Fn(&T) -> Timestamp,
    mut dropped: impl FnMut(&T),
    now: Timestamp,
    grace_secs: u64,
) -> usize {
    let successors_created_at = previous
        .iter()
        .skip(1)
        .map(&created_at)
        .chain(core::iter::once(current_created_at));
    let last_current_at: Vec<Timestamp> = previous
        .iter()
        .map(&created_at)
        .zip(successors_created_at)
        .map(|(own, successor)| own.max(successor))
        .collect();
    let before = previous.len();
    let mut last_current = last_current_at.into_iter();
    previous.retain(|entry| {
        let keep = last_current.next().is_none_or(|at| {
            now.as_unix_secs()
                .checked_sub(at.as_unix_secs())
                .is_none_or(|elapsed| elapsed < grace_secs)
        });
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
    Ok(KemPreKeyPair { public, key })
}
