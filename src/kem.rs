//! ML-KEM-1024 (FIPS 203), the post-quantum KEM of the hybrid session setup, through the
//! RustCrypto `ml-kem` crate.
//!
//! Private keys are stored as their 64-byte seed `d || z` (FIPS 203, ML-KEM.KeyGen_internal),
//! public keys as the 1,568-byte encapsulation key, which is validated (the modulus check of
//! FIPS 203, section 7.2) when decoded. Encapsulation draws its 32-byte message `m` from the
//! injected RNG. Decapsulation never fails: a modified ciphertext yields an unrelated shared
//! secret (implicit rejection), so the first message of such a session fails to decrypt.

use alloc::boxed::Box;
use core::fmt;

use ml_kem::{Decapsulate, DecapsulationKey, Encapsulate, EncapsulationKey, KeyExport, MlKem1024};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::keys::{SecretBytes, write_hex};

/// Length of an ML-KEM-1024 public (encapsulation) key.
pub const KEM_PUBLIC_KEY_LEN: usize = 1568;
/// Length of an ML-KEM-1024 ciphertext.
pub const KEM_CIPHERTEXT_LEN: usize = 1568;
/// Length of an ML-KEM private key seed `d || z`.
pub(crate) const KEM_SEED_LEN: usize = 64;

/// An ML-KEM-1024 ciphertext.
pub(crate) type KemCiphertext = Box<[u8; KEM_CIPHERTEXT_LEN]>;

/// An ML-KEM-1024 public (encapsulation) key, validated.
#[derive(Clone, PartialEq, Eq)]
pub struct KemPublicKey(Box<EncapsulationKey<MlKem1024>>);

impl KemPublicKey {
    /// Parses a 1,568-byte encapsulation key, rejecting encodings that fail the FIPS 203
    /// modulus check.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let array = bytes.try_into().ok()?;
        EncapsulationKey::<MlKem1024>::new(&array)
            .ok()
            .map(|key| Self(Box::new(key)))
    }

    /// The 1,568-byte encoding.
    pub fn to_bytes(&self) -> Box<[u8; KEM_PUBLIC_KEY_LEN]> {
        Box::new(self.0.to_bytes().into())
    }

    /// Encapsulates to this key: a ciphertext and the 32-byte shared secret. The 32-byte
    /// message `m` of ML-KEM.Encaps is drawn from `rng`.
    pub(crate) fn encapsulate<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
    ) -> (KemCiphertext, SecretBytes) {
        let (ciphertext, shared) = self.0.encapsulate_with_rng(rng);
        let shared = Zeroizing::new(<[u8; 32]>::from(shared));
        (Box::new(ciphertext.into()), SecretBytes(*shared))
    }
}

impl fmt::Debug for KemPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("KemPublicKey(")?;
        write_hex(f, &self.to_bytes()[..8])?;
        f.write_str("..)")
    }
}

/// An ML-KEM-1024 key pair, kept as its seed. Zeroizes on drop.
pub(crate) struct KemKeyPair {
    seed: Zeroizing<[u8; KEM_SEED_LEN]>,
    private: DecapsulationKey<MlKem1024>,
    public: KemPublicKey,
}

impl KemKeyPair {
    pub(crate) fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut seed = Zeroizing::new([0u8; KEM_SEED_LEN]);
        rng.fill_bytes(seed.as_mut_slice());
        Self::from_seed(&seed)
    }

    /// ML-KEM.KeyGen_internal(d, z) with `seed = d || z`.
    pub(crate) fn from_seed(seed: &[u8; KEM_SEED_LEN]) -> Self {
        let private = DecapsulationKey::<MlKem1024>::from_seed((*seed).into());
        let public = KemPublicKey(Box::new(private.encapsulation_key().clone()));
        Self {
            seed: Zeroizing::new(*seed),
            private,
            public,
        }
    }

    pub(crate) fn seed(&self) -> &[u8; KEM_SEED_LEN] {
        &self.seed
    }

    pub(crate) fn public_key(&self) -> &KemPublicKey {
        &self.public
    }

    /// Decapsulates (with implicit rejection: never fails).
    pub(crate) fn decapsulate(&self, ciphertext: &[u8; KEM_CIPHERTEXT_LEN]) -> SecretBytes {
        let shared = Zeroizing::new(<[u8; 32]>::from(
            self.private.decapsulate(&(*ciphertext).into()),
        ));
        SecretBytes(*shared)
    }
}

impl Clone for KemKeyPair {
    fn clone(&self) -> Self {
        Self::from_seed(&self.seed)
    }
}

impl fmt::Debug for KemKeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KemKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}
