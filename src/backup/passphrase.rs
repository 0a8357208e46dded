//! Passphrase mode: a backup sealed under a key stretched from a memorable passphrase with
//! Argon2id (RFC 9106), for people who will not keep a recovery key.
//!
//! A passphrase is weaker than a [`RecoveryKey`](super::RecoveryKey) however it is
//! stretched: whoever holds the blob guesses offline, and each guess costs one Argon2id run
//! with the blob's parameters. At the default (64 MiB, 3 passes, 4 lanes) one run costs
//! about 0.15 s of one core on the project's build machine (docs/PROTOCOL.md section 17.3):
//! a 4-digit PIN (10,000 guesses) then falls in about 25 minutes on one core, a 6-digit one
//! in about 2 days, and far sooner on an attacker's many cores. So [`check_passphrase`]
//! refuses short and numeric passphrases.
//!
//! The passphrase enters Argon2id as its UTF-8 bytes, exactly as given: no Unicode
//! normalization and no trimming (an app whose keyboards may produce different forms of the
//! same text should normalize it, for example to NFC, before both sealing and opening).

use alloc::vec::Vec;

use argon2::{Algorithm, Argon2, Params, Version};
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::blob::{self, BackupError, BackupInfo, MODE_PASSPHRASE, PARAMS_LEN, SALT_LEN};
use crate::time::Timestamp;

/// The fewest characters a passphrase may have.
pub const MIN_PASSPHRASE_CHARS: usize = 12;
/// The fewest digits a passphrase of digits only may have (about 66 bits if random).
pub const MIN_NUMERIC_PASSPHRASE_DIGITS: usize = 20;
/// The fewest distinct characters a passphrase may have.
pub const MIN_DISTINCT_CHARS: usize = 5;

/// Argon2id's cost parameters, as a backup header stores them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory, in KiB.
    pub memory_kib: u32,
    /// Passes over the memory (Argon2's `t`).
    pub passes: u32,
    /// Lanes (Argon2's `p`).
    pub lanes: u32,
}

impl Argon2Params {
    /// What [`seal_with_passphrase`] uses: 64 MiB, 3 passes, 4 lanes (RFC 9106, section 4,
    /// second recommended option).
    pub const DEFAULT: Self = Self {
        memory_kib: 64 * 1024,
        passes: 3,
        lanes: 4,
    };

    /// The most memory a backup may ask for: 256 MiB.
    pub const MAX_MEMORY_KIB: u32 = 256 * 1024;
    /// The most passes a backup may ask for.
    pub const MAX_PASSES: u32 = 10;
    /// The most lanes a backup may ask for.
    pub const MAX_LANES: u32 = 8;

    /// Tiny parameters for tests only (built only for the crate's own tests and the
    /// `fuzzing` feature): they make a passphrase backup as cheap to attack as the
    /// passphrase itself.
    #[cfg(any(test, feature = "fuzzing"))]
    #[doc(hidden)]
    pub const INSECURE_FOR_TESTS: Self = Self {
        memory_kib: 64,
        passes: 1,
        lanes: 1,
    };

    fn to_bytes(self) -> [u8; PARAMS_LEN] {
        let mut out = [0u8; PARAMS_LEN];
        out[..4].copy_from_slice(&self.memory_kib.to_be_bytes());
        out[4..8].copy_from_slice(&self.passes.to_be_bytes());
        out[8..].copy_from_slice(&self.lanes.to_be_bytes());
        out
    }

    /// Reads parameters from a header, within the bounds: lanes 1 to 8, passes 1 to 10,
    /// memory from 8 KiB per lane to 256 MiB.
    fn from_bytes(bytes: &[u8; PARAMS_LEN]) -> Result<Self, BackupError> {
        let word = |i: usize| {
            let mut w = [0u8; 4];
            w.copy_from_slice(&bytes[i..i + 4]);
            u32::from_be_bytes(w)
        };
        let params = Self {
            memory_kib: word(0),
            passes: word(4),
            lanes: word(8),
        };
        let ok = (1..=Self::MAX_LANES).contains(&params.lanes)
            && (1..=Self::MAX_PASSES).contains(&params.passes)
            && (8 * params.lanes..=Self::MAX_MEMORY_KIB).contains(&params.memory_kib);
        if !ok {
            return Err(BackupError::CostOutOfBounds {
                memory_kib: params.memory_kib,
                passes: params.passes,
                lanes: params.lanes,
            });
        }
        Ok(params)
    }
}

/// Checks a passphrase against the strength rule: at least [`MIN_PASSPHRASE_CHARS`]
/// characters (Unicode scalar values), at least [`MIN_DISTINCT_CHARS`] distinct ones, and,
/// if every character is an ASCII digit, at least [`MIN_NUMERIC_PASSPHRASE_DIGITS`] of them.
///
/// # Errors
/// [`BackupError::WeakPassphrase`] saying which rule failed.
pub fn check_passphrase(passphrase: &str) -> Result<(), BackupError> {
    let chars = passphrase.chars().count();
    if passphrase.chars().all(|c| c.is_ascii_digit()) && chars < MIN_NUMERIC_PASSPHRASE_DIGITS {
        return Err(BackupError::WeakPassphrase(
            "a number needs at least 20 digits; a PIN can be guessed offline within days",
        ));
    }
    if chars < MIN_PASSPHRASE_CHARS {
        return Err(BackupError::WeakPassphrase(
            "a passphrase needs at least 12 characters",
        ));
    }
    let mut distinct: Vec<char> = passphrase.chars().collect();
    distinct.sort_unstable();
    distinct.dedup();
    if distinct.len() < MIN_DISTINCT_CHARS {
        return Err(BackupError::WeakPassphrase(
            "a passphrase needs at least 5 different characters",
        ));
    }
    Ok(())
}

/// Argon2id(passphrase, salt, params), 32 bytes.
fn stretch(
    passphrase: &str,
    salt: &[u8; SALT_LEN],
    params: Argon2Params,
) -> Result<Zeroizing<[u8; 32]>, BackupError> {
    let p =
        Params::new(params.memory_kib, params.passes, params.lanes, Some(32)).map_err(|_| {
            BackupError::CostOutOfBounds {
                memory_kib: params.memory_kib,
                passes: params.passes,
                lanes: params.lanes,
            }
        })?;
    let mut out = Zeroizing::new([0u8; 32]);
    Argon2::new(Algorithm::Argon2id, Version::V0x13, p)
        .hash_password_into(passphrase.as_bytes(), salt, &mut out[..])
        .map_err(|_| BackupError::WeakPassphrase("Argon2id could not run (out of memory?)"))?;
    Ok(out)
}

/// Seals `payload` of `kind` under `passphrase` with the default parameters
/// ([`Argon2Params::DEFAULT`]) and a fresh random salt.
///
/// # Errors
/// [`BackupError::WeakPassphrase`] if [`check_passphrase`] refuses it.
pub fn seal_with_passphrase<R: CryptoRng + ?Sized>(
    rng: &mut R,
    passphrase: &str,
    kind: u8,
    created_at: Timestamp,
    generation: u64,
    payload: &[u8],
) -> Result<Vec<u8>, BackupError> {
    seal_params(
        rng,
        passphrase,
        Argon2Params::DEFAULT,
        kind,
        created_at,
        generation,
        payload,
    )
}

/// [`seal_with_passphrase`] with other parameters, for tests only (built only for the
/// crate's own tests and the `fuzzing` feature): applications always seal with
/// [`Argon2Params::DEFAULT`].
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub fn seal_with_params<R: CryptoRng + ?Sized>(
    rng: &mut R,
    passphrase: &str,
    params: Argon2Params,
    kind: u8,
    created_at: Timestamp,
    generation: u64,
    payload: &[u8],
) -> Result<Vec<u8>, BackupError> {
    seal_params(
        rng, passphrase, params, kind, created_at, generation, payload,
    )
}

fn seal_params<R: CryptoRng + ?Sized>(
    rng: &mut R,
    passphrase: &str,
    params: Argon2Params,
    kind: u8,
    created_at: Timestamp,
    generation: u64,
    payload: &[u8],
) -> Result<Vec<u8>, BackupError> {
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    seal_with_salt(
        passphrase, params, kind, created_at, generation, &salt, payload,
    )
}

pub(crate) fn seal_with_salt(
    passphrase: &str,
    params: Argon2Params,
    kind: u8,
    created_at: Timestamp,
    generation: u64,
    salt: &[u8; SALT_LEN],
    payload: &[u8],
) -> Result<Vec<u8>, BackupError> {
    check_passphrase(passphrase)?;
    let raw = params.to_bytes();
    Argon2Params::from_bytes(&raw)?;
    let secret = stretch(passphrase, salt, params)?;
    let prefix = blob::prefix(kind, MODE_PASSPHRASE, created_at, generation, Some(&raw));
    Ok(blob::seal_with(&prefix, salt, &secret[..], payload))
}

/// Opens a blob of `kind` sealed by [`seal_with_passphrase`]. Costs one Argon2id run with
/// the blob's parameters, which are bounded first ([`Argon2Params::MAX_MEMORY_KIB`] and the
/// other limits).
///
/// # Errors
/// As [`open`](super::open), with [`BackupError::WrongKey`] for a wrong passphrase, and
/// [`BackupError::CostOutOfBounds`] for parameters outside the bounds. A changed salt or
/// cost parameter changes the derived key, so it too reads as
/// [`BackupError::WrongKey`]. No strength rule applies when opening.
pub fn open_with_passphrase(
    blob: &[u8],
    passphrase: &str,
    kind: u8,
) -> Result<(BackupInfo, Zeroizing<Vec<u8>>), BackupError> {
    let header = blob::parse(blob, kind, MODE_PASSPHRASE)?;
    let raw = header
        .params
        .ok_or(BackupError::Malformed("no cost parameters"))?;
    let params = Argon2Params::from_bytes(raw)?;
    let secret = stretch(passphrase, header.salt, params)?;
    blob::open_with(blob, &header, &secret[..])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::KIND_DEVICE;

    const GOOD: &str = "correct horse battery staple";

    fn blob() -> Vec<u8> {
        seal_with_salt(
            GOOD,
            Argon2Params::INSECURE_FOR_TESTS,
            KIND_DEVICE,
            Timestamp::from_unix_secs(1_764_000_000),
            3,
            &[5; SALT_LEN],
            b"payload",
        )
        .expect("seals")
    }

    /// RFC 9106, section 5.3 (Argon2id test vector): password 32 bytes of 0x01, salt 16 bytes
    /// of 0x02, secret 8 bytes of 0x03, associated data 12 bytes of 0x04, m = 32 KiB, t = 3,
    /// p = 4, tag length 32. ratchetbox uses neither secret nor associated data; this checks
    /// that the crate computes Argon2id version 0x13 as the RFC does.
    #[test]
    fn argon2id_matches_rfc_9106_section_5_3() {
        let params = argon2::ParamsBuilder::new()
            .m_cost(32)
            .t_cost(3)
            .p_cost(4)
            .output_len(32)
            .data(argon2::AssociatedData::new(&[4; 12]).expect("ad"))
            .build()
            .expect("params");
        let argon = Argon2::new_with_secret(&[3; 8], Algorithm::Argon2id, Version::V0x13, params)
            .expect("argon2");
        let mut out = [0u8; 32];
        argon
            .hash_password_into(&[1; 32], &[2; 16], &mut out)
            .expect("hash");
        assert_eq!(
            hex::encode(out),
            "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
        );
    }

    #[test]
    fn a_passphrase_blob_opens_with_its_passphrase_only() {
        let b = blob();
        let (info, payload) = open_with_passphrase(&b, GOOD, KIND_DEVICE).expect("opens");
        assert_eq!((&payload[..], info.generation), (&b"payload"[..], 3));
        assert_eq!(
            open_with_passphrase(&b, "correct horse battery stapler", KIND_DEVICE),
            Err(BackupError::WrongKey)
        );
        // The other mode's opener refuses it before deriving anything.
        let key = crate::backup::RecoveryKey::from_bytes([0; 32]);
        assert_eq!(
            crate::backup::open(&b, &key, KIND_DEVICE),
            Err(BackupError::WrongKeyMode { found: 2 })
        );
    }

    #[test]
    fn the_default_parameters_are_the_documented_ones() {
        assert_eq!(
            Argon2Params::DEFAULT,
            Argon2Params {
                memory_kib: 65_536,
                passes: 3,
                lanes: 4
            }
        );
    }

    #[test]
    fn parameters_outside_the_bounds_are_refused_before_any_work() {
        let b = blob();
        let at = blob::FIXED_LEN;
        for (m, t, p) in [
            (256 * 1024 + 1, 1, 1),
            (u32::MAX, 1, 1),
            (64, 11, 1),
            (64, 0, 1),
            (64, 1, 0),
            (64, 1, 9),
            (7, 1, 1),
            (63, 1, 8),
        ] {
            let mut hostile = b.clone();
            hostile[at..at + 4].copy_from_slice(&u32::to_be_bytes(m));
            hostile[at + 4..at + 8].copy_from_slice(&u32::to_be_bytes(t));
            hostile[at + 8..at + 12].copy_from_slice(&u32::to_be_bytes(p));
            assert_eq!(
                open_with_passphrase(&hostile, GOOD, KIND_DEVICE),
                Err(BackupError::CostOutOfBounds {
                    memory_kib: m,
                    passes: t,
                    lanes: p
                }),
                "{m} {t} {p}"
            );
        }
    }

    #[test]
    fn every_single_bit_flip_fails_with_the_expected_error() {
        let b = blob();
        let params = blob::FIXED_LEN..blob::FIXED_LEN + PARAMS_LEN;
        let salt = params.end..params.end + SALT_LEN;
        for byte in 0..b.len() {
            for bit in 0..8 {
                let mut flipped = b.clone();
                flipped[byte] ^= 1 << bit;
                let got = open_with_passphrase(&flipped, GOOD, KIND_DEVICE);
                let ok = match byte {
                    0..=8 => got == Err(BackupError::NotABackup),
                    9 => got == Err(BackupError::UnsupportedVersion { found: flipped[9] }),
                    10 => matches!(got, Err(BackupError::WrongKind { .. })),
                    11 => got == Err(BackupError::WrongKeyMode { found: flipped[11] }),
                    // A cost parameter: out of bounds, or another key.
                    _ if params.contains(&byte) => matches!(
                        got,
                        Err(BackupError::CostOutOfBounds { .. } | BackupError::WrongKey)
                    ),
                    // The salt derives the key.
                    _ if salt.contains(&byte) => got == Err(BackupError::WrongKey),
                    _ => got == Err(BackupError::Tampered),
                };
                assert!(ok, "byte {byte} bit {bit}: {got:?}");
            }
        }
    }

    #[test]
    fn the_strength_rule_refuses_pins_and_short_passphrases() {
        for weak in [
            "1234",
            "000000",
            "123456789012",
            "1234567890123456789",
            "short",
            "elevenchars",
            "aaaaaaaaaaaaaaaa",
            "abababababababab",
            "abcdabcdabcdabcd",
        ] {
            assert!(
                matches!(check_passphrase(weak), Err(BackupError::WeakPassphrase(_))),
                "{weak}"
            );
        }
        for strong in [
            GOOD,
            "12345678901234567890",
            "abcdeabcdeab",
            "çava très bien",
        ] {
            assert_eq!(check_passphrase(strong), Ok(()), "{strong}");
        }
        let mut rng = crate::rng::OsRng::new();
        assert_eq!(
            seal_with_passphrase(
                &mut rng,
                "1234",
                KIND_DEVICE,
                Timestamp::from_unix_secs(0),
                0,
                b""
            ),
            Err(BackupError::WeakPassphrase(
                "a number needs at least 20 digits; a PIN can be guessed offline within days"
            ))
        );
    }
}
