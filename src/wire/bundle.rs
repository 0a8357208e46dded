//! Prekeys and the prekey bundle: what an account publishes so that others can start a
//! session with it while it is offline.

use alloc::vec::Vec;
use core::fmt;

use super::generated as pb;
use crate::error::{AssembleError, DecodeError};
use crate::kdf::{LABEL_SIGNED_KEM_PREKEY, LABEL_SIGNED_PREKEY};
use crate::kem::KemPublicKey;
use crate::keys::{IdentityKey, KEY_LEN, SIGNATURE_LEN, X25519PublicKey};
use crate::time::Timestamp;

/// The id of a signed prekey, chosen by its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SignedPreKeyId(pub u32);

/// The id of a one-time prekey, chosen by its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OneTimePreKeyId(pub u32);

/// The id of a post-quantum (ML-KEM) prekey, one-time or last-resort, chosen by its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KemPreKeyId(pub u32);

/// Length of the byte string an identity key signs for a signed prekey.
const SIGNED_PREKEY_MESSAGE_LEN: usize = LABEL_SIGNED_PREKEY.len() + 4 + 8 + KEY_LEN;

/// A signed prekey as published: id, creation time, X25519 public key, and the identity
/// key's Ed25519 signature over
/// `"ratchetbox v1 signed prekey" || id (u32 BE) || created_at (u64 BE) || public key`.
#[derive(Clone, PartialEq, Eq)]
pub struct SignedPreKey {
    id: SignedPreKeyId,
    created_at: Timestamp,
    public_key: X25519PublicKey,
    signature: [u8; SIGNATURE_LEN],
}

impl SignedPreKey {
    /// Assembles a signed prekey from its published parts (for example, as a server stored
    /// them). The signature is checked when a session is started from a bundle holding it.
    pub fn new(
        id: SignedPreKeyId,
        created_at: Timestamp,
        public_key: X25519PublicKey,
        signature: [u8; SIGNATURE_LEN],
    ) -> Self {
        Self {
            id,
            created_at,
            public_key,
            signature,
        }
    }

    /// The exact bytes the identity key signs (domain-separated, fixed length).
    pub(crate) fn signed_message(
        id: SignedPreKeyId,
        created_at: Timestamp,
        public_key: &X25519PublicKey,
    ) -> [u8; SIGNED_PREKEY_MESSAGE_LEN] {
        let mut out = [0u8; SIGNED_PREKEY_MESSAGE_LEN];
        let (label, rest) = out.split_at_mut(LABEL_SIGNED_PREKEY.len());
        label.copy_from_slice(LABEL_SIGNED_PREKEY);
        let (id_bytes, rest) = rest.split_at_mut(4);
        id_bytes.copy_from_slice(&id.0.to_be_bytes());
        let (time_bytes, key_bytes) = rest.split_at_mut(8);
        time_bytes.copy_from_slice(&created_at.as_unix_secs().to_be_bytes());
        key_bytes.copy_from_slice(public_key.as_bytes());
        out
    }

    /// The prekey's id.
    pub fn id(&self) -> SignedPreKeyId {
        self.id
    }

    /// When the prekey was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The X25519 public key.
    pub fn public_key(&self) -> X25519PublicKey {
        self.public_key
    }

    /// The Ed25519 signature.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// Whether `identity` signed this prekey (Ed25519 `verify_strict`).
    pub fn verify(&self, identity: &IdentityKey) -> bool {
        let message = Self::signed_message(self.id, self.created_at, &self.public_key);
        identity.verify(&message, &self.signature)
    }

    /// Encodes the prekey on its own: `0x01 || protobuf SignedPreKey`, for example to
    /// store it on a server.
    ///
    /// ```
    /// # use ratchetbox::{Account, SignedPreKey, Timestamp};
    /// # let mut rng = ratchetbox::OsRng::new();
    /// let account = Account::new(&mut rng, Timestamp::from_unix_secs(1_764_000_000));
    /// let bytes = account.signed_prekey().to_bytes();
    /// let stored = SignedPreKey::from_bytes(&bytes)?;
    /// assert_eq!(&stored, account.signed_prekey());
    /// assert!(stored.verify(&account.identity_key()));
    /// # Ok::<(), ratchetbox::DecodeError>(())
    /// ```
    pub fn to_bytes(&self) -> Vec<u8> {
        super::encode(&self.to_proto())
    }

    /// Decodes `0x01 || protobuf SignedPreKey`, every field validated (the public key must
    /// be canonical, the signature 64 bytes). The signature is not checked here, since the
    /// bytes do not name the identity key: check it with [`verify`](Self::verify).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_proto(&super::decode(bytes, "SignedPreKey")?)
    }

    pub(crate) fn to_proto(&self) -> pb::SignedPreKey {
        pb::SignedPreKey {
            id: self.id.0,
            created_at: self.created_at.as_unix_secs(),
            public_key: self.public_key.to_bytes().to_vec(),
            signature: self.signature.to_vec(),
        }
    }

    pub(crate) fn from_proto(p: &pb::SignedPreKey) -> Result<Self, DecodeError> {
        const OBJECT: &str = "SignedPreKey";
        Ok(Self {
            id: SignedPreKeyId(p.id),
            created_at: Timestamp::from_unix_secs(p.created_at),
            public_key: super::x25519_key(&p.public_key, OBJECT, "public_key")?,
            signature: super::fixed(&p.signature, OBJECT, "signature")?,
        })
    }
}

impl fmt::Debug for SignedPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SignedPreKey")
            .field("id", &self.id.0)
            .field("created_at", &self.created_at)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// A post-quantum prekey as published: id, creation time, ML-KEM-1024 public key, and the
/// identity key's Ed25519 signature over
/// `"ratchetbox v1 signed kem prekey" || id (u32 BE) || created_at (u64 BE) || public key`.
///
/// An account publishes one-time KEM prekeys and a last-resort one (used when the server has
/// run out of one-time ones); both kinds share one id sequence.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPreKey {
    id: KemPreKeyId,
    created_at: Timestamp,
    public_key: KemPublicKey,
    signature: [u8; SIGNATURE_LEN],
}

impl KemPreKey {
    /// Assembles a KEM prekey from its published parts. The signature is checked when a
    /// session is started from a bundle holding it.
    pub fn new(
        id: KemPreKeyId,
        created_at: Timestamp,
        public_key: KemPublicKey,
        signature: [u8; SIGNATURE_LEN],
    ) -> Self {
        Self {
            id,
            created_at,
            public_key,
            signature,
        }
    }

    /// The exact bytes the identity key signs (domain-separated, fixed length).
    pub(crate) fn signed_message(
        id: KemPreKeyId,
        created_at: Timestamp,
        public_key: &KemPublicKey,
    ) -> Vec<u8> {
        let key = public_key.to_bytes();
        let mut out = Vec::with_capacity(LABEL_SIGNED_KEM_PREKEY.len() + 12 + key.len());
        out.extend_from_slice(LABEL_SIGNED_KEM_PREKEY);
        out.extend_from_slice(&id.0.to_be_bytes());
        out.extend_from_slice(&created_at.as_unix_secs().to_be_bytes());
        out.extend_from_slice(&*key);
        out
    }

    /// The prekey's id.
    pub fn id(&self) -> KemPreKeyId {
        self.id
    }

    /// When the prekey was created.
    pub fn created_at(&self) -> Timestamp {
        self.created_at
    }

    /// The ML-KEM-1024 public key.
    pub fn public_key(&self) -> &KemPublicKey {
        &self.public_key
    }

    /// The Ed25519 signature.
    pub fn signature(&self) -> &[u8; SIGNATURE_LEN] {
        &self.signature
    }

    /// Whether `identity` signed this prekey (Ed25519 `verify_strict`).
    pub fn verify(&self, identity: &IdentityKey) -> bool {
        let message = Self::signed_message(self.id, self.created_at, &self.public_key);
        identity.verify(&message, &self.signature)
    }

    /// Encodes the prekey on its own: `0x01 || protobuf KemPreKey`, for example to store it
    /// on a server.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::encode(&self.to_proto())
    }

    /// Decodes `0x01 || protobuf KemPreKey`, every field validated (the public key must be
    /// 1,568 bytes and pass the FIPS 203 modulus check, the signature 64 bytes). The
    /// signature is not checked here, since the bytes do not name the identity key: check it
    /// with [`verify`](Self::verify).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_proto(&super::decode(bytes, "KemPreKey")?)
    }

    pub(crate) fn to_proto(&self) -> pb::KemPreKey {
        pb::KemPreKey {
            id: self.id.0,
            created_at: self.created_at.as_unix_secs(),
            public_key: self.public_key.to_bytes().to_vec(),
            signature: self.signature.to_vec(),
        }
    }

    pub(crate) fn from_proto(p: &pb::KemPreKey) -> Result<Self, DecodeError> {
        const OBJECT: &str = "KemPreKey";
        let public_key = super::kem_public_key(&p.public_key, OBJECT, "public_key")?;
        Ok(Self {
            id: KemPreKeyId(p.id),
            created_at: Timestamp::from_unix_secs(p.created_at),
            public_key,
            signature: super::fixed(&p.signature, OBJECT, "signature")?,
        })
    }
}

impl fmt::Debug for KemPreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemPreKey")
            .field("id", &self.id.0)
            .field("created_at", &self.created_at)
            .field("public_key", &self.public_key)
            .finish_non_exhaustive()
    }
}

/// A one-time prekey as published: id and X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct OneTimePreKey {
    id: OneTimePreKeyId,
    public_key: X25519PublicKey,
}

impl OneTimePreKey {
    /// Assembles a one-time prekey from its published parts.
    pub fn new(id: OneTimePreKeyId, public_key: X25519PublicKey) -> Self {
        Self { id, public_key }
    }

    /// The prekey's id.
    pub fn id(&self) -> OneTimePreKeyId {
        self.id
    }

    /// The X25519 public key.
    pub fn public_key(&self) -> X25519PublicKey {
        self.public_key
    }

    /// Encodes the prekey on its own: `0x01 || protobuf OneTimePreKey`, for example to store
    /// it on a server.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::encode(&self.to_proto())
    }

    /// Decodes `0x01 || protobuf OneTimePreKey`, every field validated (the public key must
    /// be canonical). One-time prekeys carry no signature of their own; in an upload, one
    /// signature covers all of them (see [`PreKeyUpload`](crate::PreKeyUpload)).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        Self::from_proto(&super::decode(bytes, "OneTimePreKey")?)
    }

    pub(crate) fn to_proto(self) -> pb::OneTimePreKey {
        pb::OneTimePreKey {
            id: self.id.0,
            public_key: self.public_key.to_bytes().to_vec(),
        }
    }

    pub(crate) fn from_proto(p: &pb::OneTimePreKey) -> Result<Self, DecodeError> {
        Ok(Self {
            id: OneTimePreKeyId(p.id),
            public_key: super::x25519_key(&p.public_key, "OneTimePreKey", "public_key")?,
        })
    }
}

impl fmt::Debug for OneTimePreKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OneTimePreKey")
            .field("id", &self.id.0)
            .field("public_key", &self.public_key)
            .finish()
    }
}

/// Everything an initiator needs to start a session with the bundle's owner: the owner's
/// identity key, a signed prekey, a signed post-quantum (ML-KEM-1024) prekey and, while the
/// server has any, one one-time prekey.
///
/// A server stores an account's identity key, current signed prekey, current last-resort KEM
/// prekey and pools of one-time prekeys and one-time KEM prekeys (from
/// [`PreKeyUpload`](crate::PreKeyUpload)s), and hands out a bundle with different one-time
/// keys to each requester ([`assemble`](Self::assemble)).
///
/// ```
/// # use ratchetbox::{Account, PreKeyBundle, Timestamp};
/// # let mut rng = ratchetbox::OsRng::new();
/// let mut bob = Account::new(&mut rng, Timestamp::from_unix_secs(1_764_000_000));
/// let otk = bob.generate_one_time_prekeys(&mut rng, 1, Timestamp::from_unix_secs(1_764_000_000))?[0];
/// let bytes = bob.prekey_bundle(Some(otk.id()), None)?.to_bytes();
///
/// let bundle = PreKeyBundle::from_bytes(&bytes)?;
/// assert_eq!(bundle.identity_key(), bob.identity_key());
/// assert!(bundle.signed_prekey().verify(&bundle.identity_key()));
/// assert!(bundle.kem_prekey().is_some_and(|k| k.verify(&bundle.identity_key())));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct PreKeyBundle {
    identity_key: IdentityKey,
    signed_prekey: SignedPreKey,
    one_time_prekey: Option<OneTimePreKey>,
    kem_prekey: Option<KemPreKey>,
}

impl PreKeyBundle {
    const OBJECT: &'static str = "PreKeyBundle";

    /// Assembles a bundle from published parts, checking nothing (a server uses
    /// [`assemble`](Self::assemble), which checks the signatures). Without a KEM prekey the
    /// bundle is classical, and initiators refuse it unless classical setups are allowed
    /// explicitly ([`SessionConfig::with_classical_setup_allowed`](crate::SessionConfig::with_classical_setup_allowed)).
    pub fn new(
        identity_key: IdentityKey,
        signed_prekey: SignedPreKey,
        one_time_prekey: Option<OneTimePreKey>,
        kem_prekey: Option<KemPreKey>,
    ) -> Self {
        Self {
            identity_key,
            signed_prekey,
            one_time_prekey,
            kem_prekey,
        }
    }

    /// Assembles a bundle from stored prekeys, for a server, which holds no secret: checks
    /// that `identity_key` signed `signed_prekey` and, if given, `kem_prekey`, so that a
    /// server bug cannot hand out a key its owner never signed. (An initiator checks both
    /// signatures again before it uses the bundle.) The result is the bundle
    /// [`Account::prekey_bundle`](crate::Account::prekey_bundle) makes from the same keys,
    /// byte for byte.
    ///
    /// Per device the server stores the identity key, the current signed prekey, the current
    /// last-resort KEM prekey and two pools of one-time keys, as uploaded with
    /// [`PreKeyUpload`](crate::PreKeyUpload). For each bundle it hands out it takes one
    /// one-time prekey and one one-time KEM prekey out of their pools (each is handed out at
    /// most once, then deleted); when the pool of one-time KEM prekeys is empty it passes
    /// the last-resort KEM prekey instead (which stays), and when the pool of one-time
    /// prekeys is empty it passes `None`. See docs/PROTOCOL.md section 3.4.
    ///
    /// ```
    /// # use ratchetbox::{Account, PreKeyBundle, Timestamp};
    /// # let mut rng = ratchetbox::OsRng::new();
    /// let mut bob = Account::new(&mut rng, Timestamp::from_unix_secs(1_764_000_000));
    /// let otk = bob.generate_one_time_prekeys(&mut rng, 1, Timestamp::from_unix_secs(1_764_000_000))?[0];
    /// // The server's stored copies:
    /// let (identity, signed, last_resort) =
    ///     (bob.identity_key(), bob.signed_prekey().clone(), bob.last_resort_kem_prekey().clone());
    /// let bundle = PreKeyBundle::assemble(identity, &signed, Some(otk), Some(&last_resort))?;
    /// assert_eq!(bundle, bob.prekey_bundle(Some(otk.id()), None)?);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn assemble(
        identity_key: IdentityKey,
        signed_prekey: &SignedPreKey,
        one_time_prekey: Option<OneTimePreKey>,
        kem_prekey: Option<&KemPreKey>,
    ) -> Result<Self, AssembleError> {
        if !signed_prekey.verify(&identity_key) {
            return Err(AssembleError::BadSignedPreKeySignature {
                id: signed_prekey.id().0,
            });
        }
        if let Some(kem) = kem_prekey
            && !kem.verify(&identity_key)
        {
            return Err(AssembleError::BadKemPreKeySignature { id: kem.id().0 });
        }
        Ok(Self::new(
            identity_key,
            signed_prekey.clone(),
            one_time_prekey,
            kem_prekey.cloned(),
        ))
    }

    /// The post-quantum prekey, absent in a classical bundle.
    pub fn kem_prekey(&self) -> Option<&KemPreKey> {
        self.kem_prekey.as_ref()
    }

    /// The owner's identity key.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity_key
    }

    /// The signed prekey.
    pub fn signed_prekey(&self) -> &SignedPreKey {
        &self.signed_prekey
    }

    /// The one-time prekey, if the bundle has one.
    pub fn one_time_prekey(&self) -> Option<&OneTimePreKey> {
        self.one_time_prekey.as_ref()
    }

    /// Decodes a bundle: `0x01 || protobuf PreKeyBundle`, every field validated. The
    /// signature is checked when a session is started from the bundle.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let p: pb::PreKeyBundle = super::decode(bytes, Self::OBJECT)?;
        let signed = super::required(p.signed_prekey.as_ref(), Self::OBJECT, "signed_prekey")?;
        let one_time_prekey = p
            .one_time_prekey
            .as_ref()
            .map(OneTimePreKey::from_proto)
            .transpose()?;
        Ok(Self {
            identity_key: super::identity_key(&p.identity_key, Self::OBJECT, "identity_key")?,
            signed_prekey: SignedPreKey::from_proto(signed)?,
            one_time_prekey,
            kem_prekey: p
                .kem_prekey
                .as_ref()
                .map(KemPreKey::from_proto)
                .transpose()?,
        })
    }

    /// Encodes the bundle: `0x01 || protobuf PreKeyBundle`.
    pub fn to_bytes(&self) -> Vec<u8> {
        super::encode(&pb::PreKeyBundle {
            identity_key: self.identity_key.to_bytes().to_vec(),
            signed_prekey: Some(self.signed_prekey.to_proto()),
            one_time_prekey: self.one_time_prekey.map(OneTimePreKey::to_proto),
            kem_prekey: self.kem_prekey.as_ref().map(KemPreKey::to_proto),
        })
    }
}

impl fmt::Debug for PreKeyBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PreKeyBundle")
            .field("identity_key", &self.identity_key)
            .field("signed_prekey", &self.signed_prekey)
            .field("one_time_prekey", &self.one_time_prekey)
            .field("kem_prekey", &self.kem_prekey)
            .finish()
    }
}
