//! Persistence: accounts, sessions and session records as versioned bytes, optionally sealed
//! with a caller-supplied storage key for storage at rest.
//!
//! Plain form: `0x01 || protobuf state message` (schemas in `proto/state.proto`). It holds
//! secret keys, so it is returned as [`Zeroizing`] bytes.
//!
//! Sealed form: `0x01 || protobuf SealedState { kind, salt, ciphertext }`. A fresh random
//! 32-byte salt per seal derives a one-time key
//! `HKDF-SHA256(salt, storage key, "ratchetbox v1 sealed state " || kind name)`; the plain form
//! is encrypted with AES-256-GCM under that key, a zero nonce (the key is never reused), and
//! the kind name as associated data.

use alloc::vec::Vec;
use core::fmt;

use prost::Message as _;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::account::Account;
use crate::aead::{Cipher, NONCE_LEN, split_tag};
use crate::error::{DecodeError, StateError};
use crate::kdf;
use crate::keys::{KEY_LEN, SecretBytes};
use crate::record::SessionRecord;
use crate::session::Session;
use crate::wire::{self, generated as pb};

/// A 32-byte key that seals persisted state. Keep it in the platform's key store.
///
/// ```
/// use ratchetbox::{Account, StorageKey, Timestamp};
/// let mut rng = ratchetbox::OsRng::new();
/// let storage_key = StorageKey::generate(&mut rng);
/// let account = Account::new(&mut rng, Timestamp::from_unix_secs(1_764_000_000));
/// let sealed = account.seal(&storage_key, &mut rng);
/// let restored = Account::unseal(&sealed, &storage_key)?;
/// assert_eq!(restored.identity_key(), account.identity_key());
/// # Ok::<(), ratchetbox::StateError>(())
/// ```
pub struct StorageKey(SecretBytes);

impl StorageKey {
    /// Wraps 32 secret bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(SecretBytes(bytes))
    }

    /// The secret bytes, for deriving the keys that seal stored state.
    #[cfg(feature = "std")] // only the store (device layer) uses it
    pub(crate) fn secret(&self) -> &[u8; KEY_LEN] {
        &self.0.0
    }

    /// A fresh random storage key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = Self(SecretBytes([0; KEY_LEN]));
        rng.fill_bytes(&mut key.0.0);
        key
    }
}

impl fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StorageKey(..)")
    }
}

/// A type that persists as a state object.
pub(crate) trait Persist: Sized {
    const KIND: pb::StateKind;
    const NAME: &'static str;
    type Proto: prost::Message + Default;
    fn to_proto(&self) -> Self::Proto;
    fn from_proto(p: &Self::Proto) -> Result<Self, DecodeError>;
}

impl Persist for Account {
    const KIND: pb::StateKind = pb::StateKind::Account;
    const NAME: &'static str = "account";
    type Proto = pb::AccountState;
    fn to_proto(&self) -> Self::Proto {
        Account::to_proto(self)
    }
    fn from_proto(p: &Self::Proto) -> Result<Self, DecodeError> {
        Account::from_proto(p)
    }
}

impl Persist for Session {
    const KIND: pb::StateKind = pb::StateKind::Session;
    const NAME: &'static str = "session";
    type Proto = pb::SessionState;
    fn to_proto(&self) -> Self::Proto {
        Session::to_proto(self)
    }
    fn from_proto(p: &Self::Proto) -> Result<Self, DecodeError> {
        Session::from_proto(p)
    }
}

impl Persist for SessionRecord {
    const KIND: pb::StateKind = pb::StateKind::SessionRecord;
    const NAME: &'static str = "session record";
    type Proto = pb::SessionRecordState;
    fn to_proto(&self) -> Self::Proto {
        SessionRecord::to_proto(self)
    }
    fn from_proto(p: &Self::Proto) -> Result<Self, DecodeError> {
        SessionRecord::from_proto(p)
    }
}

fn kind_name(kind: i32) -> &'static str {
    match pb::StateKind::try_from(kind) {
        Ok(pb::StateKind::Account) => Account::NAME,
        Ok(pb::StateKind::Session) => Session::NAME,
        Ok(pb::StateKind::SessionRecord) => SessionRecord::NAME,
        _ => "unknown object",
    }
}

pub(crate) fn to_bytes<T: Persist>(value: &T) -> Zeroizing<Vec<u8>> {
    let proto = value.to_proto();
    let mut out = Zeroizing::new(Vec::with_capacity(1 + proto.encoded_len()));
    out.push(wire::VERSION);
    proto.encode_raw(&mut *out);
    out
}

pub(crate) fn from_bytes<T: Persist>(bytes: &[u8]) -> Result<T, StateError> {
    let proto: T::Proto = wire::decode(bytes, T::NAME)?;
    Ok(T::from_proto(&proto)?)
}

pub(crate) fn seal<T: Persist, R: CryptoRng + ?Sized>(
    value: &T,
    storage_key: &StorageKey,
    rng: &mut R,
) -> Vec<u8> {
    let mut salt = [0u8; KEY_LEN];
    rng.fill_bytes(&mut salt);
    let key = kdf::state_seal_key(&storage_key.0.0, &salt, T::NAME);
    let plain = to_bytes(value);
    let mut ciphertext = Vec::with_capacity(plain.len() + crate::aead::TAG_LEN);
    ciphertext.extend_from_slice(&plain);
    // A sealed object is far below AES-GCM's 64 GiB limit: `plain` was built in memory.
    let tag = Cipher::new(&key).seal_in_place(&[0; NONCE_LEN], T::NAME.as_bytes(), &mut ciphertext);
    ciphertext.extend_from_slice(&tag.unwrap_or_default());
    wire::encode(&pb::SealedState {
        kind: T::KIND.into(),
        salt: salt.to_vec(),
        ciphertext,
    })
}

pub(crate) fn unseal<T: Persist>(sealed: &[u8], storage_key: &StorageKey) -> Result<T, StateError> {
    const OBJECT: &str = "SealedState";
    let p: pb::SealedState = wire::decode(sealed, OBJECT)?;
    if p.kind != i32::from(T::KIND) {
        return Err(StateError::WrongKind {
            expected: T::NAME,
            found: kind_name(p.kind),
        });
    }
    let salt: [u8; KEY_LEN] = wire::fixed(&p.salt, OBJECT, "salt")?;
    let (ciphertext, tag) = split_tag(&p.ciphertext).ok_or(StateError::UnsealFailed)?;
    let key = kdf::state_seal_key(&storage_key.0.0, &salt, T::NAME);
    let mut plain = Zeroizing::new(ciphertext.to_vec());
    Cipher::new(&key)
        .open_in_place(&[0; NONCE_LEN], T::NAME.as_bytes(), &mut plain, tag)
        .map_err(|_| StateError::UnsealFailed)?;
    from_bytes(&plain)
}

macro_rules! persistence_api {
    ($ty:ty, $what:literal) => {
        impl $ty {
            #[doc = concat!("Serializes the ", $what, " to versioned bytes (`0x01 || protobuf`).")]
            ///
            /// The bytes contain secret keys: store them encrypted (or use `seal`). They are
            /// zeroized when dropped.
            pub fn to_bytes(&self) -> Zeroizing<Vec<u8>> {
                to_bytes(self)
            }

            #[doc = concat!("Restores the ", $what, " from [`to_bytes`](Self::to_bytes) output.")]
            pub fn from_bytes(bytes: &[u8]) -> Result<Self, StateError> {
                from_bytes(bytes)
            }

            #[doc = concat!("Serializes the ", $what, " and seals it with `storage_key` (AES-256-GCM")]
            /// under a fresh key derived from it and a random salt).
            pub fn seal<R: CryptoRng + ?Sized>(&self, storage_key: &StorageKey, rng: &mut R) -> Vec<u8> {
                seal(self, storage_key, rng)
            }

            #[doc = concat!("Opens a sealed ", $what, ". Fails with [`StateError::UnsealFailed`]")]
            /// for a wrong key or modified bytes, and [`StateError::WrongKind`] for a sealed
            /// object of another type.
            pub fn unseal(sealed: &[u8], storage_key: &StorageKey) -> Result<Self, StateError> {
                unseal(sealed, storage_key)
            }
        }
    };
}

persistence_api!(Account, "account");
persistence_api!(Session, "session");
persistence_api!(SessionRecord, "session record");
