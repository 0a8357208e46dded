//! Key types: the Ed25519 identity key (and its X25519 form), X25519 key pairs for prekeys,
//! ephemeral and ratchet keys, and the public-key newtypes that travel on the wire.
//!
//! Secret types implement neither `Clone` (outside the crate) nor a `Debug` that shows secret
//! bytes; they zeroize on drop.

use core::fmt;

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of every public and private key in this crate.
pub const KEY_LEN: usize = 32;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// Writes the lowercase hex form of `bytes` (public data only).
pub(crate) fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// A Diffie-Hellman output that was all zero: the public key was a low-order point.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LowOrderPoint;

/// The public half of an identity key: an Ed25519 public key.
///
/// One 32-byte value identifies a contact. It verifies signatures as Ed25519 and, mapped to
/// Montgomery form with the birational map, takes part in X3DH as an X25519 key
/// (docs/PROTOCOL.md, "Identity keys").
///
/// Only canonical encodings of points of large order are accepted, so each identity has
/// exactly one byte representation.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityKey {
    verifying: VerifyingKey,
    dh: x25519_dalek::PublicKey,
}

impl IdentityKey {
    /// Parses an Ed25519 public key, rejecting non-canonical encodings, points not on the
    /// curve and points of small order.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Option<Self> {
        let verifying = VerifyingKey::from_bytes(bytes).ok()?;
        if verifying.is_weak() || verifying.as_bytes() != bytes {
            return None;
        }
        // The birational map sends the Edwards point to its Montgomery u-coordinate.
        let dh = x25519_dalek::PublicKey::from(verifying.to_montgomery().to_bytes());
        Some(Self { verifying, dh })
    }

    /// The 32-byte Ed25519 encoding.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.verifying.to_bytes()
    }

    /// The 32-byte Ed25519 encoding, borrowed.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        self.verifying.as_bytes()
    }

    /// The X25519 form of this key (Montgomery u-coordinate), as used in X3DH.
    pub fn to_x25519(&self) -> X25519PublicKey {
        X25519PublicKey(self.dh.to_bytes())
    }

    /// Verifies an Ed25519 signature with `verify_strict` (no malleable or small-order
    /// signatures are accepted).
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let signature = Signature::from_bytes(signature);
        self.verifying.verify_strict(message, &signature).is_ok()
    }

    pub(crate) fn dh_public(&self) -> &x25519_dalek::PublicKey {
        &self.dh
    }
}

impl fmt::Debug for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("IdentityKey(")?;
        write_hex(f, self.as_bytes())?;
        f.write_str(")")
    }
}

impl fmt::Display for IdentityKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, self.as_bytes())
    }
}

/// The private identity key: an Ed25519 signing key, which also yields the X25519 private
/// key for X3DH (`SigningKey::to_scalar_bytes`, the clamped form of which matches the
/// Montgomery form of the public key).
pub struct IdentityKeyPair {
    signing: SigningKey,
    dh: StaticSecret,
    public: IdentityKey,
}

impl IdentityKeyPair {
    /// Generates a fresh identity key.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(seed.as_mut_slice());
        Self::from_seed(&seed)
    }

    /// Rebuilds an identity key from its 32-byte Ed25519 secret key (seed).
    pub(crate) fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        let signing = SigningKey::from_bytes(seed);
        let dh = StaticSecret::from(*Zeroizing::new(signing.to_scalar_bytes()));
        let verifying = signing.verifying_key();
        let public = IdentityKey {
            verifying,
            dh: x25519_dalek::PublicKey::from(verifying.to_montgomery().to_bytes()),
        };
        Self {
            signing,
            dh,
            public,
        }
    }

    /// The 32-byte Ed25519 secret key (seed), for persistence.
    pub(crate) fn seed(&self) -> &[u8; KEY_LEN] {
        self.signing.as_bytes()
    }

    /// The public identity key.
    pub fn public_key(&self) -> IdentityKey {
        self.public
    }

    /// Signs `message` with Ed25519.
    pub(crate) fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    /// X25519 with the identity key's Montgomery form.
    pub(crate) fn diffie_hellman(
        &self,
        their: &x25519_dalek::PublicKey,
    ) -> Result<SharedSecret, LowOrderPoint> {
        SharedSecret::check(self.dh.diffie_hellman(their))
    }
}

impl fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// An X25519 public key: a prekey, an ephemeral (base) key or a ratchet key.
///
/// Any 32 bytes are accepted here; a low-order point is rejected when it is used, because
/// the Diffie-Hellman output would be all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct X25519PublicKey(pub(crate) [u8; KEY_LEN]);

impl X25519PublicKey {
    /// Wraps 32 bytes.
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The 32 bytes.
    pub const fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.0
    }

    /// The 32 bytes, borrowed.
    pub const fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    pub(crate) fn to_dalek(self) -> x25519_dalek::PublicKey {
        x25519_dalek::PublicKey::from(self.0)
    }
}

impl fmt::Debug for X25519PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("X25519PublicKey(")?;
        write_hex(f, &self.0)?;
        f.write_str(")")
    }
}

/// An X25519 key pair. The private half zeroizes on drop.
pub(crate) struct X25519KeyPair {
    secret: StaticSecret,
    public: X25519PublicKey,
}

impl X25519KeyPair {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(bytes.as_mut_slice());
        Self::from_secret_bytes(&bytes)
    }

    /// Rebuilds a key pair from its 32-byte private key (as stored; clamping happens inside
    /// X25519).
    pub(crate) fn from_secret_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let secret = StaticSecret::from(*bytes);
        let public = X25519PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Self { secret, public }
    }

    pub(crate) fn public_key(&self) -> X25519PublicKey {
        self.public
    }

    pub(crate) fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        self.secret.as_bytes()
    }

    pub(crate) fn diffie_hellman(
        &self,
        their: &x25519_dalek::PublicKey,
    ) -> Result<SharedSecret, LowOrderPoint> {
        SharedSecret::check(self.secret.diffie_hellman(their))
    }
}

impl Clone for X25519KeyPair {
    fn clone(&self) -> Self {
        Self {
            secret: self.secret.clone(),
            public: self.public,
        }
    }
}

impl fmt::Debug for X25519KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("X25519KeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A Diffie-Hellman output known not to be all zero. Zeroizes on drop.
pub(crate) struct SharedSecret(x25519_dalek::SharedSecret);

impl SharedSecret {
    fn check(shared: x25519_dalek::SharedSecret) -> Result<Self, LowOrderPoint> {
        // `was_contributory` is a constant-time check that the output is not all zero
        // (RFC 7748, section 6.1).
        if shared.was_contributory() {
            Ok(Self(shared))
        } else {
            Err(LowOrderPoint)
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8; KEY_LEN] {
        self.0.as_bytes()
    }
}

/// A 32-byte symmetric secret (root key, chain key, message key, storage key).
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SecretBytes(pub(crate) [u8; KEY_LEN]);

impl SecretBytes {
    pub(crate) fn from_slice(bytes: &[u8]) -> Option<Self> {
        Some(Self(bytes.try_into().ok()?))
    }
}

impl ConstantTimeEq for SecretBytes {
    fn ct_eq(&self, other: &Self) -> subtle::Choice {
        self.0.ct_eq(&other.0)
    }
}

impl From<Zeroizing<[u8; KEY_LEN]>> for SecretBytes {
    fn from(bytes: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self(*bytes)
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn identity_dh_form_matches_the_montgomery_public_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let ab = alice
            .diffie_hellman(bob.public_key().dh_public())
            .ok()
            .map(|s| *s.as_bytes());
        let ba = bob
            .diffie_hellman(alice.public_key().dh_public())
            .ok()
            .map(|s| *s.as_bytes());
        assert!(ab.is_some());
        assert_eq!(ab, ba);
        // And against a plain X25519 key pair built from the scalar bytes.
        let pair = X25519KeyPair::from_secret_bytes(&alice.signing.to_scalar_bytes());
        assert_eq!(pair.public_key(), alice.public_key().to_x25519());
    }

    #[test]
    fn identity_key_rejects_small_order_and_non_canonical_encodings() {
        // The identity point (0, 1) encodes as 0x01 followed by zeros: small order.
        let mut identity_point = [0u8; 32];
        identity_point[0] = 1;
        assert!(IdentityKey::from_bytes(&identity_point).is_none());
        // y = p (non-canonical encoding of y = 0): 0xed, 0xff.., 0x7f.
        let mut non_canonical = [0xffu8; 32];
        non_canonical[0] = 0xed;
        non_canonical[31] = 0x7f;
        assert!(IdentityKey::from_bytes(&non_canonical).is_none());
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let good = IdentityKeyPair::generate(&mut rng).public_key();
        assert_eq!(IdentityKey::from_bytes(good.as_bytes()), Some(good));
    }

    #[test]
    fn low_order_x25519_public_key_is_rejected() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let pair = X25519KeyPair::generate(&mut rng);
        assert!(
            pair.diffie_hellman(&x25519_dalek::PublicKey::from([0u8; 32]))
                .is_err()
        );
        let mut one = [0u8; 32];
        one[0] = 1;
        assert!(
            pair.diffie_hellman(&x25519_dalek::PublicKey::from(one))
                .is_err()
        );
    }
}
