//! The account: a long-term identity key and the prekey store (signed prekeys and one-time
//! prekeys with their private halves). The app persists it.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;

use crate::error::{DecodeError, DecryptError, PreKeyError};
use crate::keys::{IdentityKey, IdentityKeyPair, X25519KeyPair, X25519PublicKey};
use crate::time::Timestamp;
use crate::wire::bundle::{
    OneTimePreKey, OneTimePreKeyId, PreKeyBundle, SignedPreKey, SignedPreKeyId,
};
use crate::wire::generated as pb;

/// The most unused one-time prekeys an account holds at once.
pub const MAX_ONE_TIME_PREKEYS: usize = 10_000;

/// How many setups without a one-time prekey the account remembers to reject replays.
pub(crate) const MAX_USED_SETUPS: usize = 2_000;

/// A signed prekey with its private half.
#[derive(Clone)]
struct SignedPreKeyPair {
    public: SignedPreKey,
    key: X25519KeyPair,
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
    one_time_prekeys: BTreeMap<u32, X25519KeyPair>,
    next_signed_prekey_id: u32,
    next_one_time_prekey_id: u32,
    /// Setups accepted without a one-time prekey, oldest first: an initial message that
    /// repeats one of them is a replay and must not start a second session.
    used_setups: VecDeque<(SignedPreKeyId, X25519PublicKey)>,
}

impl Account {
    /// Creates an account with a fresh identity key and a first signed prekey created at `now`.
    pub fn new<R: CryptoRng + ?Sized>(rng: &mut R, now: Timestamp) -> Self {
        let identity = IdentityKeyPair::generate(rng);
        let first = Self::make_signed_prekey(&identity, rng, SignedPreKeyId(1), now);
        Self {
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
        let key = X25519KeyPair::generate(rng);
        let message = SignedPreKey::signed_message(id, now, &key.public_key());
        let signature = identity.sign(&message);
        SignedPreKeyPair {
            public: SignedPreKey::new(id, now, key.public_key(), signature),
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
    /// [`remove_old_signed_prekeys`](Self::remove_old_signed_prekeys) drops them.
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
        Ok(self.signed_prekey())
    }

    /// Deletes every signed prekey that was replaced more than `grace_secs` seconds before
    /// `now` (the current one is always kept). Returns how many were deleted. Initial messages
    /// naming a deleted prekey then fail with
    /// [`DecryptError::UnknownSignedPreKey`].
    pub fn remove_old_signed_prekeys(&mut self, now: Timestamp, grace_secs: u64) -> usize {
        // A prekey is replaced when its successor is created.
        let replaced_at: Vec<Timestamp> = self
            .previous_signed_prekeys
            .iter()
            .skip(1)
            .chain(core::iter::once(&self.current_signed_prekey))
            .map(|p| p.public.created_at())
            .collect();
        let before = self.previous_signed_prekeys.len();
        let mut replaced = replaced_at.into_iter();
        self.previous_signed_prekeys.retain(|_| {
            replaced
                .next()
                .is_some_and(|at| at.saturating_add_secs(grace_secs) > now)
        });
        let removed = before - self.previous_signed_prekeys.len();
        if removed > 0 {
            let current = self.current_signed_prekey.public.id();
            let kept: Vec<SignedPreKeyId> = self
                .previous_signed_prekeys
                .iter()
                .map(|p| p.public.id())
                .collect();
            self.used_setups
                .retain(|(id, _)| *id == current || kept.contains(id));
        }
        removed
    }

    /// Creates `count` one-time prekeys and returns their public halves, to upload.
    pub fn generate_one_time_prekeys<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        count: usize,
    ) -> Result<Vec<OneTimePreKey>, PreKeyError> {
        if self.one_time_prekeys.len().saturating_add(count) > MAX_ONE_TIME_PREKEYS {
            return Err(PreKeyError::TooManyOneTimePreKeys {
                max: MAX_ONE_TIME_PREKEYS,
            });
        }
        let first = self.next_one_time_prekey_id;
        let end = u32::try_from(count)
            .ok()
            .and_then(|c| first.checked_add(c))
            .ok_or(PreKeyError::IdsExhausted)?;
        let mut published = Vec::with_capacity(count);
        for id in first..end {
            let key = X25519KeyPair::generate(rng);
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

    /// A bundle with the current signed prekey and, if given, the unused one-time prekey
    /// `one_time`.
    pub fn prekey_bundle(
        &self,
        one_time: Option<OneTimePreKeyId>,
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
            .map(|p| &p.key)
            .ok_or(DecryptError::UnknownSignedPreKey { id: id.0 })
    }

    /// The private half of the unused one-time prekey `id`, or why there is none.
    pub(crate) fn one_time_prekey_pair(
        &self,
        id: OneTimePreKeyId,
    ) -> Result<&X25519KeyPair, DecryptError> {
        match self.one_time_prekeys.get(&id.0) {
            Some(key) => Ok(key),
            // Ids are handed out in increasing order from 1, so a lower id that is gone was
            // used.
            None if id.0 != 0 && id.0 < self.next_one_time_prekey_id => {
                Err(DecryptError::OneTimePreKeyUsed { id: id.0 })
            }
            None => Err(DecryptError::UnknownOneTimePreKey { id: id.0 }),
        }
    }

    /// Deletes a one-time prekey after the initial message that used it decrypted.
    pub(crate) fn consume_one_time_prekey(&mut self, id: OneTimePreKeyId) {
        self.one_time_prekeys.remove(&id.0);
    }

    /// Fails if a setup without a one-time prekey was already accepted.
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
        Ok(())
    }

    /// Remembers a setup without a one-time prekey after its initial message decrypted.
    pub(crate) fn record_used_setup(
        &mut self,
        signed_prekey_id: SignedPreKeyId,
        base_key: X25519PublicKey,
    ) {
        if self.used_setups.len() == MAX_USED_SETUPS {
            self.used_setups.pop_front();
        }
        self.used_setups.push_back((signed_prekey_id, base_key));
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
        let mut previous_signed_prekeys = Vec::with_capacity(p.signed_prekeys.len());
        for s in &p.signed_prekeys {
            let key = X25519KeyPair::from_secret_bytes(&zeroize::Zeroizing::new(fixed(
                &s.secret,
                "SignedPreKeyState",
                "secret",
            )?));
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
        if p.one_time_prekeys.len() > MAX_ONE_TIME_PREKEYS {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "one_time_prekeys",
                reason: "more unused one-time prekeys than an account may hold",
            });
        }
        let mut one_time_prekeys = BTreeMap::new();
        for o in &p.one_time_prekeys {
            let key = X25519KeyPair::from_secret_bytes(&zeroize::Zeroizing::new(fixed(
                &o.secret,
                "OneTimePreKeyState",
                "secret",
            )?));
            if o.id >= p.next_one_time_prekey_id || one_time_prekeys.insert(o.id, key).is_some() {
                return Err(DecodeError::InvalidValue {
                    object: "OneTimePreKeyState",
                    field: "id",
                    reason: "duplicate id, or an id the account has not issued yet",
                });
            }
        }
        if p.used_setups.len() > MAX_USED_SETUPS {
            return Err(DecodeError::InvalidValue {
                object: OBJECT,
                field: "used_setups",
                reason: "more entries than an account keeps",
            });
        }
        let used_setups = p
            .used_setups
            .iter()
            .map(|u| {
                Ok((
                    SignedPreKeyId(u.signed_prekey_id),
                    crate::wire::x25519_key(&u.base_key, "UsedSetup", "base_key")?,
                ))
            })
            .collect::<Result<_, DecodeError>>()?;
        Ok(Self {
            identity,
            current_signed_prekey,
            previous_signed_prekeys,
            one_time_prekeys,
            next_signed_prekey_id: p.next_signed_prekey_id,
            next_one_time_prekey_id: p.next_one_time_prekey_id,
            used_setups,
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
            .finish_non_exhaustive()
    }
}
