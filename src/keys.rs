//! Key types: the Ed25519 identity key (and its X25519 form), X25519 key pairs for prekeys,
//! ephemeral and ratchet keys, and the public-key newtypes that travel on the wire.
//!
//! Secret types implement neither `Clone` (outside the crate) nor a `Debug` that shows secret
//! bytes; they zeroize on drop.

use core::fmt;

use curve25519_dalek::montgomery::MontgomeryPoint;
use curve25519_dalek::traits::IsIdentity;
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
/// exactly one byte representation. A key read from a peer ([`from_bytes`](Self::from_bytes))
/// is checked at once; a key restored from persisted state (a session's identities, a
/// record's peer) only for the canonical encoding of its y-coordinate, and decoded as a
/// point, with every check of `from_bytes`, when it is first used in arithmetic
/// (docs/PROTOCOL.md section 8.1): one that fails verifies no signature and takes part in no
/// Diffie-Hellman. Keys compare, hash and display as their 32 bytes.
#[derive(Clone, Copy)]
pub struct IdentityKey {
    bytes: [u8; KEY_LEN],
    /// The decoded point: present for a key decoded from a peer's bytes or derived from its
    /// secret, absent for a key restored from state (decoded when used).
    verifying: Option<VerifyingKey>,
}

impl PartialEq for IdentityKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes == other.bytes
    }
}

impl Eq for IdentityKey {}

impl core::hash::Hash for IdentityKey {
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.bytes.hash(state);
    }
}

/// Whether the 255 low bits of an Ed25519 encoding, its y-coordinate, are below p (bit 255
/// is the sign of x): the part of the canonical-encoding rule that needs no arithmetic.
fn is_canonical_y(bytes: &[u8; KEY_LEN]) -> bool {
    let mut y = *bytes;
    y[KEY_LEN - 1] &= 0x7f;
    is_canonical_u(&y)
}

/// Decodes an Ed25519 public key as [`IdentityKey::from_bytes`] accepts it: a canonical
/// encoding of a point of large order.
fn decode_identity(bytes: &[u8; KEY_LEN]) -> Option<VerifyingKey> {
    let verifying = VerifyingKey::from_bytes(bytes).ok()?;
    // `VerifyingKey` keeps the input bytes as they were, and decompression reduces y modulo p
    // and accepts the sign bit of x = 0: only re-compressing the decoded point shows whether
    // `bytes` was its one canonical encoding.
    if verifying.is_weak() || verifying.to_edwards().compress().as_bytes() != bytes {
        return None;
    }
    Some(verifying)
}

impl IdentityKey {
    /// Parses an Ed25519 public key, rejecting non-canonical encodings, points not on the
    /// curve and points of small order.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Option<Self> {
        let verifying = decode_identity(bytes)?;
        Some(Self {
            bytes: *bytes,
            verifying: Some(verifying),
        })
    }

    /// A key restored from persisted state: no arithmetic, only the check that the
    /// y-coordinate is reduced (the rest of [`from_bytes`](Self::from_bytes)'s checks run when
    /// the key is first used in arithmetic). `None` for a y-coordinate of p or more.
    pub(crate) fn from_stored(bytes: &[u8; KEY_LEN]) -> Option<Self> {
        is_canonical_y(bytes).then_some(Self {
            bytes: *bytes,
            verifying: None,
        })
    }

    /// The decoded point, decoding (and checking) a restored key now; `None` if it is not a
    /// valid identity key.
    fn point(&self) -> Option<VerifyingKey> {
        self.verifying.or_else(|| decode_identity(&self.bytes))
    }

    /// The 32-byte Ed25519 encoding.
    pub fn to_bytes(&self) -> [u8; KEY_LEN] {
        self.bytes
    }

    /// The 32-byte Ed25519 encoding, borrowed.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.bytes
    }

    /// The X25519 form of this key (Montgomery u-coordinate), as used in X3DH. `None` only
    /// for a key restored from state that is not a valid identity key (see the type's
    /// documentation).
    pub fn to_x25519(&self) -> Option<X25519PublicKey> {
        self.dh_public().map(|dh| X25519PublicKey::from_dalek(&dh))
    }

    /// Verifies an Ed25519 signature with `verify_strict` (no malleable or small-order
    /// signatures are accepted). A restored key that is not a valid identity key verifies
    /// nothing.
    pub(crate) fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        let Some(verifying) = self.point() else {
            return false;
        };
        let signature = Signature::from_bytes(signature);
        verifying.verify_strict(message, &signature).is_ok()
    }

    /// The X25519 form for Diffie-Hellman: the birational map sends the Edwards point to its
    /// Montgomery u-coordinate. `None` for a restored key that is not a valid identity key.
    pub(crate) fn dh_public(&self) -> Option<x25519_dalek::PublicKey> {
        let verifying = self.point()?;
        Some(x25519_dalek::PublicKey::from(
            verifying.to_montgomery().to_bytes(),
        ))
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
            bytes: verifying.to_bytes(),
            verifying: Some(verifying),
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
        SharedSecret::check(crate::x25519::x25519(self.dh.as_bytes(), their.as_bytes()))
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
/// Only the canonical encoding is accepted (RFC 7748 section 5): the little-endian
/// u-coordinate, fully reduced modulo p = 2^255 - 19, with bit 255 clear. X25519 itself
/// masks bit 255 and reduces u modulo p, so without this rule up to four byte strings would
/// name the same key and give the same Diffie-Hellman outputs while comparing unequal as bytes
/// (which is how a replayed setup with bit 255 flipped once passed the replay check).
/// A low-order point is rejected when it is used, because the Diffie-Hellman output would be
/// all zero.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct X25519PublicKey([u8; KEY_LEN]);

/// p = 2^255 - 19, little-endian (RFC 7748 section 4.1).
const FIELD_PRIME: [u8; KEY_LEN] = {
    let mut p = [0xff; KEY_LEN];
    p[0] = 0xed;
    p[KEY_LEN - 1] = 0x7f;
    p
};

/// Whether `bytes` is the canonical encoding of an X25519 u-coordinate: bit 255 clear and
/// the little-endian value below p. (Bit 255 set means a value of at least 2^255 > p.)
fn is_canonical_u(bytes: &[u8; KEY_LEN]) -> bool {
    // Little-endian integers compare as their byte-reversed (big-endian) arrays do.
    bytes.iter().rev().lt(FIELD_PRIME.iter().rev())
}

impl X25519PublicKey {
    /// Parses a 32-byte X25519 public key, or `None` if the encoding is not canonical (bit
    /// 255 set, or the u-coordinate is not reduced modulo 2^255 - 19).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Option<Self> {
        if is_canonical_u(&bytes) {
            Some(Self(bytes))
        } else {
            None
        }
    }

    /// Wraps the output of X25519 base-point multiplication, which is always canonical.
    pub(crate) fn from_dalek(public: &x25519_dalek::PublicKey) -> Self {
        let bytes = public.to_bytes();
        debug_assert!(is_canonical_u(&bytes));
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
        let public = X25519PublicKey::from_dalek(&x25519_dalek::PublicKey::from(&secret));
        Self { secret, public }
    }

    /// Rebuilds a key pair from persisted state: its private key and the public key stored
    /// next to it, without recomputing the public key (no arithmetic). The caller stores
    /// only pairs this type made; docs/PROTOCOL.md section 8.1 says what a pair that does
    /// not match would do.
    pub(crate) fn from_stored(secret: &[u8; KEY_LEN], public: X25519PublicKey) -> Self {
        Self {
            secret: StaticSecret::from(*secret),
            public,
        }
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
        SharedSecret::check(crate::x25519::x25519(
            self.secret.as_bytes(),
            their.as_bytes(),
        ))
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
pub(crate) struct SharedSecret(Zeroizing<MontgomeryPoint>);

impl SharedSecret {
    fn check(shared: Zeroizing<MontgomeryPoint>) -> Result<Self, LowOrderPoint> {
        // A constant-time check that the output is not all zero (RFC 7748, section 6.1), the
        // same one x25519-dalek's `was_contributory` makes.
        if shared.is_identity() {
            Err(LowOrderPoint)
        } else {
            Ok(Self(shared))
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
            .diffie_hellman(&bob.public_key().dh_public().expect("decoded"))
            .ok()
            .map(|s| *s.as_bytes());
        let ba = bob
            .diffie_hellman(&alice.public_key().dh_public().expect("decoded"))
            .ok()
            .map(|s| *s.as_bytes());
        assert!(ab.is_some());
        assert_eq!(ab, ba);
        // And against a plain X25519 key pair built from the scalar bytes.
        let pair = X25519KeyPair::from_secret_bytes(&alice.signing.to_scalar_bytes());
        assert_eq!(Some(pair.public_key()), alice.public_key().to_x25519());
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

    /// p + y for a small y, little-endian, with the sign bit of x set or not.
    fn y_plus_p(y: u8, sign: bool) -> [u8; 32] {
        let mut bytes = FIELD_PRIME;
        // p's lowest byte is 0xed, so adding y < 19 never carries.
        bytes[0] += y;
        bytes[31] |= u8::from(sign) << 7;
        bytes
    }

    #[test]
    fn identity_key_rejects_y_plus_p_encodings_of_valid_points() {
        let mut rejected = 0;
        for y in 0..19u8 {
            for sign in [false, true] {
                let mut canonical = [0u8; 32];
                canonical[0] = y;
                canonical[31] = u8::from(sign) << 7;
                let Some(key) = IdentityKey::from_bytes(&canonical) else {
                    continue;
                };
                assert_eq!(key.as_bytes(), &canonical);
                let alias = y_plus_p(y, sign);
                // ed25519-dalek decodes the alias to the same point...
                let decoded = VerifyingKey::from_bytes(&alias).expect("dalek reduces y mod p");
                assert_eq!(
                    Some(decoded.to_edwards()),
                    key.verifying.map(|v| v.to_edwards())
                );
                // ...and ratchetbox refuses it, so one identity has one encoding.
                assert_eq!(
                    IdentityKey::from_bytes(&alias),
                    None,
                    "y = {y} + p, sign {sign}"
                );
                rejected += 1;
            }
        }
        // Which small y lie on the curve with large order is a fact about the curve; make sure
        // the loop exercised both signs of several of them.
        assert!(rejected >= 4, "only {rejected} valid small-y points");
    }

    #[test]
    fn a_stored_identity_key_is_decoded_and_checked_when_first_used() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let pair = IdentityKeyPair::generate(&mut rng);
        let good = pair.public_key();
        let signature = pair.sign(b"message");
        let stored = IdentityKey::from_stored(good.as_bytes()).expect("a reduced y");
        assert!(stored.verifying.is_none(), "restoring decodes no point");
        assert_eq!(stored, good);
        assert!(stored.verify(b"message", &signature));
        assert!(!stored.verify(b"other message", &signature));
        assert_eq!(stored.to_x25519(), good.to_x25519());
        assert!(good.to_x25519().is_some());

        // Reduced y-coordinates that are not identity keys: the neutral point (small order),
        // and the smallest y that is on no point of the curve.
        let mut neutral = [0u8; 32];
        neutral[0] = 1;
        let off_curve = (2..=255u8)
            .map(|y| {
                let mut bytes = [0u8; 32];
                bytes[0] = y;
                bytes
            })
            .find(|bytes| VerifyingKey::from_bytes(bytes).is_err())
            .expect("some small y is not on the curve");
        for bad in [neutral, off_curve] {
            assert_eq!(IdentityKey::from_bytes(&bad), None);
            let key = IdentityKey::from_stored(&bad).expect("a reduced y");
            assert_eq!(key.as_bytes(), &bad);
            assert!(!key.verify(b"message", &signature));
            assert_eq!(key.to_x25519(), None);
            assert!(key.dh_public().is_none());
        }
    }

    #[test]
    fn a_stored_identity_key_needs_a_reduced_y_with_either_sign() {
        let mut rng = ChaCha20Rng::seed_from_u64(6);
        let real = IdentityKeyPair::generate(&mut rng).public_key().to_bytes();
        let mut cases = alloc::vec![real, [0u8; 32], [0xff; 32]];
        for low in 0..=0xffu8 {
            for sign in [false, true] {
                let mut near_p = FIELD_PRIME;
                near_p[0] = low;
                near_p[31] |= u8::from(sign) << 7;
                cases.push(near_p);
            }
        }
        for bit in 0..256 {
            let mut flipped = real;
            flipped[bit / 8] ^= 1 << (bit % 8);
            cases.push(flipped);
        }
        let mut accepted = 0;
        for bytes in cases {
            let mut y = bytes;
            y[31] &= 0x7f;
            let parsed = IdentityKey::from_stored(&bytes);
            assert_eq!(parsed.is_some(), below_p_by_addition(&y), "{bytes:02x?}");
            assert_eq!(
                parsed.map(|k| k.to_bytes()),
                parsed.is_some().then_some(bytes)
            );
            accepted += usize::from(parsed.is_some());
        }
        // p - 1 with either sign bit is the largest reduced y; y + p never is.
        let mut p_minus_1 = FIELD_PRIME;
        p_minus_1[0] = 0xec;
        assert!(IdentityKey::from_stored(&p_minus_1).is_some());
        p_minus_1[31] |= 0x80;
        assert!(IdentityKey::from_stored(&p_minus_1).is_some());
        for y in 0..19u8 {
            for sign in [false, true] {
                assert!(IdentityKey::from_stored(&y_plus_p(y, sign)).is_none());
            }
        }
        assert!(accepted > 256);
    }

    /// `bytes < p` as little-endian integers, computed another way: `bytes + 19` stays below
    /// 2^255 exactly when `bytes` is below 2^255 - 19.
    fn below_p_by_addition(bytes: &[u8; 32]) -> bool {
        if bytes[31] & 0x80 != 0 {
            return false;
        }
        let mut carry = 19u16;
        let mut sum = *bytes;
        for byte in sum.iter_mut() {
            let s = u16::from(*byte) + carry;
            *byte = s as u8;
            carry = s >> 8;
        }
        carry == 0 && sum[31] & 0x80 == 0
    }

    #[test]
    fn x25519_public_keys_have_one_encoding() {
        // Every value around p and 2^255, and every single-bit change of a real key.
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let real = X25519KeyPair::generate(&mut rng).public_key().to_bytes();
        let mut cases = alloc::vec![real, [0u8; 32], [0xff; 32]];
        for low in 0..=0xffu8 {
            let mut near_p = FIELD_PRIME;
            near_p[0] = low;
            cases.push(near_p);
            near_p[31] |= 0x80;
            cases.push(near_p);
        }
        for bit in 0..256 {
            let mut flipped = real;
            flipped[bit / 8] ^= 1 << (bit % 8);
            cases.push(flipped);
        }
        let mut canonical = 0;
        for bytes in cases {
            let parsed = X25519PublicKey::from_bytes(bytes);
            assert_eq!(
                parsed.is_some(),
                below_p_by_addition(&bytes),
                "{bytes:02x?}"
            );
            canonical += usize::from(parsed.is_some());
        }
        // p - 1 = ...ec is the largest canonical value; p .. p + 18 and bit 255 are not.
        let mut p_minus_1 = FIELD_PRIME;
        p_minus_1[0] = 0xec;
        assert!(X25519PublicKey::from_bytes(p_minus_1).is_some());
        assert!(X25519PublicKey::from_bytes(FIELD_PRIME).is_none());
        let mut top_bit = real;
        top_bit[31] |= 0x80;
        assert!(X25519PublicKey::from_bytes(top_bit).is_none());
        assert!(canonical > 256);
    }

    /// `Debug` shows a key pair's public half and never a secret.
    #[test]
    fn secrets_stay_out_of_debug() {
        // RFC 7748 section 6.1: Alice's private key and its public key.
        let secret =
            hex_literal("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let pair = X25519KeyPair::from_secret_bytes(&secret);
        assert_eq!(
            alloc::format!("{pair:?}"),
            "X25519KeyPair { public: X25519PublicKey(\
             8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a), .. }"
        );
        assert_eq!(
            alloc::format!("{:?}", SecretBytes(secret)),
            "SecretBytes(..)"
        );
    }

    fn hex_literal(hex: &str) -> [u8; KEY_LEN] {
        core::array::from_fn(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex"))
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
