//! The prekey upload: what a device sends its server in one request, so that the server can
//! hand out bundles while the device is offline (docs/PROTOCOL.md section 3.4).

use alloc::vec::Vec;
use core::fmt;

use super::bundle::{KemPreKey, OneTimePreKey, SignedPreKey};
use super::generated as pb;
use crate::error::{DecodeError, PreKeyKind, UploadError};
use crate::keys::{IdentityKey, IdentityKeyPair, KEY_LEN, SIGNATURE_LEN};

/// The most one-time prekeys, and separately the most one-time KEM prekeys, one
/// [`PreKeyUpload`] carries (Signal's clients upload batches of 100).
pub const MAX_UPLOAD_ONE_TIME_PREKEYS: usize = 100;

/// The label of the message the identity key signs over an upload's one-time prekeys.
pub(crate) const LABEL_SIGNED_ONE_TIME_PREKEYS: &[u8] = b"ratchetbox v1 signed one-time prekeys";

/// The byte length of a length-delimited protobuf field (tag below 16) holding `len` bytes.
const fn delimited(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

/// The byte length of `value` as a protobuf varint.
const fn varint_len(value: u64) -> usize {
    let mut len = 1;
    let mut rest = value >> 7;
    while rest != 0 {
        len += 1;
        rest >>= 7;
    }
    len
}

/// The longest `SignedPreKey` message: id and created_at at their largest.
const MAX_SIGNED_PREKEY_LEN: usize = 1
    + varint_len(u32::MAX as u64)
    + 1
    + varint_len(u64::MAX)
    + delimited(KEY_LEN)
    + delimited(SIGNATURE_LEN);

/// The longest `KemPreKey` message.
const MAX_KEM_PREKEY_LEN: usize = 1
    + varint_len(u32::MAX as u64)
    + 1
    + varint_len(u64::MAX)
    + delimited(crate::kem::KEM_PUBLIC_KEY_LEN)
    + delimited(SIGNATURE_LEN);

/// The longest `OneTimePreKey` message.
const MAX_ONE_TIME_PREKEY_LEN: usize = 1 + varint_len(u32::MAX as u64) + delimited(KEY_LEN);

/// What a device uploads to its server in one request: its identity key and, each only if
/// it changed, a new signed prekey, a new last-resort KEM prekey, a batch of one-time
/// prekeys and a batch of one-time KEM prekeys.
///
/// [`Account::prekey_maintenance`](crate::Account::prekey_maintenance) makes uploads. Its
/// byte form is `0x01 || protobuf PreKeyUpload` (docs/PROTOCOL.md section 3.4). Everything in
/// it is signed by the identity key: the signed prekey and each KEM prekey by their own
/// signatures, the one-time prekeys (which, as in Signal, carry no signature of their own in
/// a bundle) by one signature over the whole batch. [`from_bytes`](Self::from_bytes) checks
/// every signature, so a server that stores only what decodes never stores an unsigned key.
/// (The keys are signed one by one, not the upload as a whole: an upload cut off between two
/// fields is a valid upload carrying fewer keys. The server's authenticated connection to the
/// device is what makes an upload arrive whole.)
///
/// What the server does with it: it checks that the identity key is the one it has for the
/// device (a different one is a new registration, which the server handles by its own
/// rules); a signed prekey or last-resort KEM prekey replaces the stored one; a batch of
/// one-time keys replaces the stored pool of that kind, unless it is a batch the server has
/// seen before (its first id is not above the highest id of that kind the server has
/// accepted), which it ignores, so that a repeated request changes nothing.
///
/// ```
/// use ratchetbox::{Account, PreKeyUpload, ServerPreKeyStatus, Timestamp};
/// let mut rng = ratchetbox::OsRng::new();
/// let now = Timestamp::from_unix_secs(1_764_000_000);
/// let mut account = Account::new(&mut rng, now);
/// // A new device: the server has nothing yet.
/// let upload = account
///     .prekey_maintenance(&mut rng, now, ServerPreKeyStatus::default())?
///     .expect("a first upload");
/// // Persist the account, then send `upload.to_bytes()`. The server:
/// let received = PreKeyUpload::from_bytes(&upload.to_bytes())?;
/// assert_eq!(received.identity_key(), account.identity_key());
/// assert_eq!(received.signed_prekey(), Some(account.signed_prekey()));
/// assert_eq!(received.one_time_prekeys().len(), 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PreKeyUpload {
    identity_key: IdentityKey,
    signed_prekey: Option<SignedPreKey>,
    last_resort_kem_prekey: Option<KemPreKey>,
    one_time_prekeys: Vec<OneTimePreKey>,
    /// Present iff `one_time_prekeys` is not empty.
    one_time_prekeys_signature: Option<[u8; SIGNATURE_LEN]>,
    one_time_kem_prekeys: Vec<KemPreKey>,
}

impl PreKeyUpload {
    const OBJECT: &'static str = "PreKeyUpload";

    /// The length of the longest valid upload: a signed prekey, a last-resort KEM prekey and
    /// [`MAX_UPLOAD_ONE_TIME_PREKEYS`] keys of each one-time kind, every id and time at its
    /// largest. [`from_bytes`](Self::from_bytes) refuses longer input before decoding it.
    pub const MAX_LEN: usize = 1
        + delimited(KEY_LEN)
        + delimited(MAX_SIGNED_PREKEY_LEN)
        + delimited(MAX_KEM_PREKEY_LEN)
        + MAX_UPLOAD_ONE_TIME_PREKEYS * delimited(MAX_ONE_TIME_PREKEY_LEN)
        + delimited(SIGNATURE_LEN)
        + MAX_UPLOAD_ONE_TIME_PREKEYS * delimited(MAX_KEM_PREKEY_LEN);

    /// An upload signed by `identity`. The lists are in increasing id order and hold at most
    /// [`MAX_UPLOAD_ONE_TIME_PREKEYS`] keys each (the caller's invariant), and every key was
    /// signed by `identity`.
    pub(crate) fn signed_by(
        identity: &IdentityKeyPair,
        signed_prekey: Option<SignedPreKey>,
        last_resort_kem_prekey: Option<KemPreKey>,
        one_time_prekeys: Vec<OneTimePreKey>,
        one_time_kem_prekeys: Vec<KemPreKey>,
    ) -> Self {
        let one_time_prekeys_signature = (!one_time_prekeys.is_empty())
            .then(|| identity.sign(&one_time_prekeys_message(&one_time_prekeys)));
        Self {
            identity_key: identity.public_key(),
            signed_prekey,
            last_resort_kem_prekey,
            one_time_prekeys,
            one_time_prekeys_signature,
            one_time_kem_prekeys,
        }
    }

    /// The device's identity key; every key of the upload is signed by it.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity_key
    }

    /// The new current signed prekey, if the upload carries one.
    pub fn signed_prekey(&self) -> Option<&SignedPreKey> {
        self.signed_prekey.as_ref()
    }

    /// The new current last-resort KEM prekey, if the upload carries one.
    pub fn last_resort_kem_prekey(&self) -> Option<&KemPreKey> {
        self.last_resort_kem_prekey.as_ref()
    }

    /// The new batch of one-time prekeys, by increasing id (empty: the server keeps its
    /// pool).
    pub fn one_time_prekeys(&self) -> &[OneTimePreKey] {
        &self.one_time_prekeys
    }

    /// The new batch of one-time KEM prekeys, by increasing id (empty: the server keeps its
    /// pool).
    pub fn one_time_kem_prekeys(&self) -> &[KemPreKey] {
        &self.one_time_kem_prekeys
    }

    /// Whether the upload carries no key besides the identity key.
    pub fn is_empty(&self) -> bool {
        self.signed_prekey.is_none()
            && self.last_resort_kem_prekey.is_none()
            && self.one_time_prekeys.is_empty()
            && self.one_time_kem_prekeys.is_empty()
    }

    /// Encodes the upload: `0x01 || protobuf PreKeyUpload`.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::encode(&pb::PreKeyUpload {
            identity_key: self.identity_key.to_bytes().to_vec(),
            signed_prekey: self.signed_prekey.as_ref().map(SignedPreKey::to_proto),
            last_resort_kem_prekey: self
                .last_resort_kem_prekey
                .as_ref()
                .map(KemPreKey::to_proto),
            one_time_prekeys: self.one_time_prekeys.iter().map(|k| k.to_proto()).collect(),
            one_time_prekeys_signature: self
                .one_time_prekeys_signature
                .map(|s| s.to_vec())
                .unwrap_or_default(),
            one_time_kem_prekeys: self
                .one_time_kem_prekeys
                .iter()
                .map(KemPreKey::to_proto)
                .collect(),
        })
    }

    /// Decodes and verifies an upload, for a server.
    ///
    /// Refuses, with the first failure in this order (docs/PROTOCOL.md section 3.4): input
    /// longer than [`MAX_LEN`](Self::MAX_LEN) ([`UploadError::TooLarge`]); bytes that are not
    /// the canonical encoding of an upload, or an invalid identity key, signed prekey or
    /// last-resort KEM prekey ([`UploadError::Decode`]); more than
    /// [`MAX_UPLOAD_ONE_TIME_PREKEYS`] keys of a one-time kind
    /// ([`UploadError::TooManyPreKeys`], before any of their keys is read); an invalid
    /// one-time key, or a one-time prekey signature that is missing while there are one-time
    /// prekeys, present without them or not 64 bytes ([`UploadError::Decode`]); ids of a
    /// one-time list that do not strictly increase ([`UploadError::IdsNotIncreasing`]); a
    /// last-resort KEM prekey id that is also a one-time KEM prekey id
    /// ([`UploadError::SharedKemPreKeyId`]); and a signature that does not verify under the
    /// upload's identity key, checked in the order signed prekey, last-resort KEM prekey,
    /// one-time prekeys, one-time KEM prekeys ([`UploadError::BadSignature`],
    /// [`UploadError::BadOneTimePreKeysSignature`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, UploadError> {
        if bytes.len() > Self::MAX_LEN {
            return Err(UploadError::TooLarge {
                len: bytes.len(),
                max: Self::MAX_LEN,
            });
        }
        let p: pb::PreKeyUpload = super::decode(bytes, Self::OBJECT)?;
        let identity_key = super::identity_key(&p.identity_key, Self::OBJECT, "identity_key")?;
        let signed_prekey = p
            .signed_prekey
            .as_ref()
            .map(SignedPreKey::from_proto)
            .transpose()?;
        let last_resort_kem_prekey = p
            .last_resort_kem_prekey
            .as_ref()
            .map(KemPreKey::from_proto)
            .transpose()?;
        at_most(PreKeyKind::OneTime, p.one_time_prekeys.len())?;
        at_most(PreKeyKind::OneTimeKem, p.one_time_kem_prekeys.len())?;
        let one_time_prekeys = p
            .one_time_prekeys
            .iter()
            .map(OneTimePreKey::from_proto)
            .collect::<Result<Vec<_>, _>>()?;
        let one_time_prekeys_signature = match (
            one_time_prekeys.is_empty(),
            p.one_time_prekeys_signature.is_empty(),
        ) {
            (true, true) => None,
            (false, false) => Some(super::fixed(
                &p.one_time_prekeys_signature,
                Self::OBJECT,
                "one_time_prekeys_signature",
            )?),
            (false, true) => {
                return Err(DecodeError::MissingField {
                    object: Self::OBJECT,
                    field: "one_time_prekeys_signature",
                }
                .into());
            }
            (true, false) => {
                return Err(DecodeError::InvalidValue {
                    object: Self::OBJECT,
                    field: "one_time_prekeys_signature",
                    reason: "present without one-time prekeys",
                }
                .into());
            }
        };
        let one_time_kem_prekeys = p
            .one_time_kem_prekeys
            .iter()
            .map(KemPreKey::from_proto)
            .collect::<Result<Vec<_>, _>>()?;

        increasing(
            PreKeyKind::OneTime,
            one_time_prekeys.iter().map(|k| k.id().0),
        )?;
        increasing(
            PreKeyKind::OneTimeKem,
            one_time_kem_prekeys.iter().map(|k| k.id().0),
        )?;
        if let Some(last_resort) = &last_resort_kem_prekey
            && one_time_kem_prekeys
                .iter()
                .any(|k| k.id() == last_resort.id())
        {
            return Err(UploadError::SharedKemPreKeyId {
                id: last_resort.id().0,
            });
        }

        if let Some(signed) = &signed_prekey
            && !signed.verify(&identity_key)
        {
            return Err(UploadError::BadSignature {
                kind: PreKeyKind::Signed,
                id: signed.id().0,
            });
        }
        if let Some(last_resort) = &last_resort_kem_prekey
            && !last_resort.verify(&identity_key)
        {
            return Err(UploadError::BadSignature {
                kind: PreKeyKind::LastResortKem,
                id: last_resort.id().0,
            });
        }
        if let Some(signature) = &one_time_prekeys_signature
            && !identity_key.verify(&one_time_prekeys_message(&one_time_prekeys), signature)
        {
            return Err(UploadError::BadOneTimePreKeysSignature);
        }
        if let Some(bad) = one_time_kem_prekeys
            .iter()
            .find(|k| !k.verify(&identity_key))
        {
            return Err(UploadError::BadSignature {
                kind: PreKeyKind::OneTimeKem,
                id: bad.id().0,
            });
        }
        Ok(Self {
            identity_key,
            signed_prekey,
            last_resort_kem_prekey,
            one_time_prekeys,
            one_time_prekeys_signature,
            one_time_kem_prekeys,
        })
    }
}

impl fmt::Debug for PreKeyUpload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreKeyUpload")
            .field("identity_key", &self.identity_key)
            .field(
                "signed_prekey",
                &self.signed_prekey.as_ref().map(|k| k.id().0),
            )
            .field(
                "last_resort_kem_prekey",
                &self.last_resort_kem_prekey.as_ref().map(|k| k.id().0),
            )
            .field("one_time_prekeys", &self.one_time_prekeys.len())
            .field("one_time_kem_prekeys", &self.one_time_kem_prekeys.len())
            .finish()
    }
}

/// What the identity key signs over a batch of one-time prekeys:
/// `LABEL_SIGNED_ONE_TIME_PREKEYS || u32be(count) || (u32be(id) || public key) for each`.
fn one_time_prekeys_message(keys: &[OneTimePreKey]) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(LABEL_SIGNED_ONE_TIME_PREKEYS.len() + 4 + keys.len() * (4 + KEY_LEN));
    out.extend_from_slice(LABEL_SIGNED_ONE_TIME_PREKEYS);
    // At most MAX_UPLOAD_ONE_TIME_PREKEYS keys: the count fits.
    out.extend_from_slice(&(keys.len() as u32).to_be_bytes());
    for key in keys {
        out.extend_from_slice(&key.id().0.to_be_bytes());
        out.extend_from_slice(key.public_key().as_bytes());
    }
    out
}

fn at_most(kind: PreKeyKind, count: usize) -> Result<(), UploadError> {
    if count > MAX_UPLOAD_ONE_TIME_PREKEYS {
        return Err(UploadError::TooManyPreKeys {
            kind,
            count,
            max: MAX_UPLOAD_ONE_TIME_PREKEYS,
        });
    }
    Ok(())
}

fn increasing(kind: PreKeyKind, ids: impl Iterator<Item = u32>) -> Result<(), UploadError> {
    let mut last = None;
    for id in ids {
        if last.is_some_and(|last| id <= last) {
            return Err(UploadError::IdsNotIncreasing { kind, id });
        }
        last = Some(id);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kem::KemKeyPair;
    use crate::keys::X25519KeyPair;
    use crate::time::Timestamp;
    use crate::wire::bundle::{KemPreKeyId, OneTimePreKeyId, SignedPreKeyId};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    /// The largest upload: every list full, every id and time at its largest.
    #[test]
    fn the_largest_upload_is_exactly_max_len_long_and_decodes() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let identity = IdentityKeyPair::generate(&mut rng);
        let t = Timestamp::MAX;
        let signed_key = X25519KeyPair::generate(&mut rng).public_key();
        let signed_id = SignedPreKeyId(u32::MAX);
        let signed = SignedPreKey::new(
            signed_id,
            t,
            signed_key,
            identity.sign(&SignedPreKey::signed_message(signed_id, t, &signed_key)),
        );
        // One KEM key pair is enough: the length does not depend on the key.
        let kem = KemKeyPair::generate(&mut rng);
        let kem_prekey = |id: u32| {
            let id = KemPreKeyId(id);
            KemPreKey::new(
                id,
                t,
                kem.public_key().clone(),
                identity.sign(&KemPreKey::signed_message(id, t, kem.public_key())),
            )
        };
        let n = MAX_UPLOAD_ONE_TIME_PREKEYS as u32;
        let first = u32::MAX - n;
        let one_time = (first..u32::MAX)
            .map(|id| OneTimePreKey::new(OneTimePreKeyId(id), signed_key))
            .collect();
        let one_time_kem = (first..u32::MAX).map(kem_prekey).collect();
        let upload = PreKeyUpload::signed_by(
            &identity,
            Some(signed),
            Some(kem_prekey(u32::MAX)),
            one_time,
            one_time_kem,
        );
        let bytes = upload.to_bytes();
        assert_eq!(bytes.len(), PreKeyUpload::MAX_LEN);
        assert_eq!(PreKeyUpload::from_bytes(&bytes), Ok(upload));

        let mut longer = bytes;
        longer.push(0);
        assert_eq!(
            PreKeyUpload::from_bytes(&longer),
            Err(UploadError::TooLarge {
                len: PreKeyUpload::MAX_LEN + 1,
                max: PreKeyUpload::MAX_LEN
            })
        );
    }
}
