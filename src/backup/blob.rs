//! The sealed backup blob: a fixed header, then the payload sealed with AES-256-GCM.
//!
//! Layout (docs/PROTOCOL.md, section "Backup"; all integers big-endian):
//!
//! ```text
//! magic "RBXBACKUP" (9) || version (1) = 1 || kind (1) || key mode (1)
//!   || created_at (8, Unix seconds) || generation (8)
//!   || [passphrase mode only: memory KiB (4) || passes (4) || lanes (4)]
//!   || salt (32) || key id (16) || ciphertext || tag (16)
//! ```
//!
//! The secret `s` is the recovery key (mode 1) or Argon2id(passphrase, salt, parameters)
//! (mode 2, feature `passphrase`). Then `key id = HKDF-SHA256(salt = "", IKM = s, info =
//! "ratchetbox v1 backup key id")` (16 bytes) and `key = HKDF-SHA256(salt, s, "ratchetbox v1
//! backup key")`; the payload is sealed under `key` with a zero nonce (the random salt makes
//! the key new for every backup) and the whole header, key id included, as associated data.
//!
//! Opening tells the failures apart: a header this library does not know (magic, version,
//! kind, mode) is refused before any key is derived; then a key id that does not match the
//! key given is [`BackupError::WrongKey`], unless the payload still authenticates under the
//! header with the *expected* key id (then only the key id field was altered:
//! [`BackupError::Tampered`]); a key id that matches but a payload or header that does not
//! authenticate is [`BackupError::Tampered`].

use alloc::vec::Vec;

use rand_core::CryptoRng;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::recovery_key::RecoveryKey;
use crate::aead::{Cipher, NONCE_LEN, TAG_LEN, split_tag};
use crate::kdf::hkdf_sha256;
use crate::keys::KEY_LEN;
use crate::time::Timestamp;

/// The blob's first bytes.
pub(crate) const MAGIC: &[u8; 9] = b"RBXBACKUP";
/// The only blob version this library writes and reads.
pub const BACKUP_VERSION: u8 = 1;
/// The only kind of blob so far: a whole device store ([`crate::Device::backup`]).
pub const KIND_DEVICE: u8 = 1;
/// Key mode: sealed under a [`RecoveryKey`].
pub(crate) const MODE_RECOVERY_KEY: u8 = 1;
/// Key mode: sealed under a key stretched from a passphrase with Argon2id.
pub(crate) const MODE_PASSPHRASE: u8 = 2;

pub(crate) const SALT_LEN: usize = 32;
pub(crate) const KEY_ID_LEN: usize = 16;
/// magic, version, kind, mode, created_at, generation.
pub(crate) const FIXED_LEN: usize = MAGIC.len() + 3 + 8 + 8;
pub(crate) const PARAMS_LEN: usize = 12;

const KEY_ID_LABEL: &[u8] = b"ratchetbox v1 backup key id";
const KEY_LABEL: &[u8] = b"ratchetbox v1 backup key";

/// A backup could not be opened. Nothing was restored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// The bytes do not start like a ratchetbox backup (another file, another kind of
    /// ratchetbox data).
    #[error("this is not a ratchetbox backup")]
    NotABackup,
    /// A backup of a version this library does not read.
    #[error("backup version {found} is not supported (this library reads version 1)")]
    UnsupportedVersion {
        /// The version byte found.
        found: u8,
    },
    /// A backup of another kind than the one asked for.
    #[error("this backup holds kind {found}, not kind {expected}")]
    WrongKind {
        /// The kind byte found.
        found: u8,
        /// The kind asked for.
        expected: u8,
    },
    /// Sealed in a key mode this library does not know, or in the other mode than the key
    /// given (a passphrase backup opened with a recovery key, or the reverse).
    #[error("this backup is sealed with key mode {found}, not with the kind of key given")]
    WrongKeyMode {
        /// The key mode found (1: recovery key, 2: passphrase).
        found: u8,
    },
    /// Shorter than its header and tag: cut off.
    #[error("the backup is cut off: {len} bytes, at least {needed} needed")]
    Truncated {
        /// The length given.
        len: usize,
        /// The least a backup of this mode has.
        needed: usize,
    },
    /// The key (or passphrase) is not the one this backup was sealed with.
    #[error("this is not the key the backup was sealed with")]
    WrongKey,
    /// The key is right, but the backup was changed after it was sealed.
    #[error("the backup was modified after it was sealed")]
    Tampered,
    /// Authentic, but its content is not what this library writes.
    #[error("the backup's content is malformed: {0}")]
    Malformed(&'static str),
    /// Passphrase mode: cost parameters outside the bounds this library accepts.
    #[error(
        "the backup asks for Argon2id with {memory_kib} KiB, {passes} passes and {lanes} lanes, outside the accepted bounds"
    )]
    CostOutOfBounds {
        /// Memory, in KiB.
        memory_kib: u32,
        /// Passes.
        passes: u32,
        /// Lanes.
        lanes: u32,
    },
    /// Passphrase mode: the passphrase is refused by the strength rule, or the key could
    /// not be derived.
    #[error("the passphrase is too weak: {0}")]
    WeakPassphrase(&'static str),
}

/// The header's authenticated public facts, available once a backup opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackupInfo {
    /// What the backup holds ([`KIND_DEVICE`]).
    pub kind: u8,
    /// When the backup was made (the `now` given to the sealer).
    pub created_at: Timestamp,
    /// The store generation when the backup was made: a later backup of the same device has
    /// a higher one.
    pub generation: u64,
}

/// The header fields that are not the key material.
pub(crate) struct Header<'a> {
    pub(crate) kind: u8,
    pub(crate) created_at: u64,
    pub(crate) generation: u64,
    /// Passphrase mode only: the raw cost parameter bytes.
    pub(crate) params: Option<&'a [u8; PARAMS_LEN]>,
    pub(crate) salt: &'a [u8; SALT_LEN],
    pub(crate) key_id: &'a [u8; KEY_ID_LEN],
    /// Everything after the key id.
    pub(crate) sealed: &'a [u8],
}

fn header_len(mode: u8) -> usize {
    FIXED_LEN
        + if mode == MODE_PASSPHRASE {
            PARAMS_LEN
        } else {
            0
        }
        + SALT_LEN
        + KEY_ID_LEN
}

/// Splits a blob into its header fields, checking magic, version, kind, key mode and length.
pub(crate) fn parse(
    blob: &[u8],
    expected_kind: u8,
    expected_mode: u8,
) -> Result<Header<'_>, BackupError> {
    let (magic, rest) = blob
        .split_first_chunk::<9>()
        .ok_or(BackupError::NotABackup)?;
    if magic != MAGIC {
        return Err(BackupError::NotABackup);
    }
    let (&[version, kind, mode], rest) =
        rest.split_first_chunk::<3>()
            .ok_or(BackupError::Truncated {
                len: blob.len(),
                needed: header_len(MODE_RECOVERY_KEY) + TAG_LEN,
            })?;
    if version != BACKUP_VERSION {
        return Err(BackupError::UnsupportedVersion { found: version });
    }
    if kind != expected_kind {
        return Err(BackupError::WrongKind {
            found: kind,
            expected: expected_kind,
        });
    }
    if mode != expected_mode {
        return Err(BackupError::WrongKeyMode { found: mode });
    }
    let needed = header_len(mode) + TAG_LEN;
    if blob.len() < needed {
        return Err(BackupError::Truncated {
            len: blob.len(),
            needed,
        });
    }
    let truncated = BackupError::Truncated {
        len: blob.len(),
        needed,
    };
    let (created_at, rest) = rest.split_first_chunk::<8>().ok_or(truncated)?;
    let (generation, rest) = rest.split_first_chunk::<8>().ok_or(truncated)?;
    let (params, rest) = if mode == MODE_PASSPHRASE {
        let (p, rest) = rest.split_first_chunk::<PARAMS_LEN>().ok_or(truncated)?;
        (Some(p), rest)
    } else {
        (None, rest)
    };
    let (salt, rest) = rest.split_first_chunk::<SALT_LEN>().ok_or(truncated)?;
    let (key_id, sealed) = rest.split_first_chunk::<KEY_ID_LEN>().ok_or(truncated)?;
    Ok(Header {
        kind,
        created_at: u64::from_be_bytes(*created_at),
        generation: u64::from_be_bytes(*generation),
        params,
        salt,
        key_id,
        sealed,
    })
}

/// The key id of secret `s`.
pub(crate) fn key_id(secret: &[u8]) -> Zeroizing<[u8; KEY_ID_LEN]> {
    hkdf_sha256::<KEY_ID_LEN>(&[], &[secret], &[KEY_ID_LABEL])
}

fn cipher(salt: &[u8; SALT_LEN], secret: &[u8]) -> Cipher {
    Cipher::new(&hkdf_sha256::<KEY_LEN>(salt, &[secret], &[KEY_LABEL]))
}

/// Seals `payload`: the header is `prefix` (magic through the cost parameters), then `salt`
/// and the key id of `secret`.
pub(crate) fn seal_with(
    prefix: &[u8],
    salt: &[u8; SALT_LEN],
    secret: &[u8],
    payload: &[u8],
) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(prefix.len() + SALT_LEN + KEY_ID_LEN + payload.len() + TAG_LEN);
    out.extend_from_slice(prefix);
    out.extend_from_slice(salt);
    out.extend_from_slice(&key_id(secret)[..]);
    let header_len = out.len();
    out.extend_from_slice(payload);
    let (header, body) = out.split_at_mut(header_len);
    // A backup is built in memory, far below AES-GCM's 64 GiB limit.
    let tag = cipher(salt, secret)
        .seal_in_place(&[0; NONCE_LEN], header, body)
        .unwrap_or_default();
    out.extend_from_slice(&tag);
    out
}

/// The header prefix (magic through the cost parameters).
pub(crate) fn prefix(
    kind: u8,
    mode: u8,
    created_at: Timestamp,
    generation: u64,
    params: Option<&[u8; PARAMS_LEN]>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(FIXED_LEN + PARAMS_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[BACKUP_VERSION, kind, mode]);
    out.extend_from_slice(&created_at.as_unix_secs().to_be_bytes());
    out.extend_from_slice(&generation.to_be_bytes());
    if let Some(params) = params {
        out.extend_from_slice(params);
    }
    out
}

/// Opens a parsed blob with secret `s` (see the module docs for the order of checks).
pub(crate) fn open_with(
    blob: &[u8],
    header: &Header<'_>,
    secret: &[u8],
) -> Result<(BackupInfo, Zeroizing<Vec<u8>>), BackupError> {
    let expected = key_id(secret);
    let (ciphertext, tag) = split_tag(header.sealed).ok_or(BackupError::Truncated {
        len: blob.len(),
        needed: blob.len() - header.sealed.len() + TAG_LEN,
    })?;
    let header_len = blob.len() - header.sealed.len();
    let mut ad = Zeroizing::new(blob[..header_len].to_vec());
    let id_at = header_len - KEY_ID_LEN;
    let id_matches: bool = header.key_id.ct_eq(&expected[..]).into();
    ad[id_at..].copy_from_slice(&expected[..]);
    let mut plain = Zeroizing::new(ciphertext.to_vec());
    let opened = cipher(header.salt, secret).open_in_place(&[0; NONCE_LEN], &ad, &mut plain, tag);
    match (opened, id_matches) {
        (Ok(()), true) => Ok((
            BackupInfo {
                kind: header.kind,
                created_at: Timestamp::from_unix_secs(header.created_at),
                generation: header.generation,
            },
            plain,
        )),
        (Ok(()), false) | (Err(_), true) => Err(BackupError::Tampered),
        (Err(_), false) => Err(BackupError::WrongKey),
    }
}

/// Seals `payload` of `kind` under a recovery key, with a fresh random salt.
pub fn seal<R: CryptoRng + ?Sized>(
    rng: &mut R,
    key: &RecoveryKey,
    kind: u8,
    created_at: Timestamp,
    generation: u64,
    payload: &[u8],
) -> Vec<u8> {
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    seal_with_salt(key, kind, created_at, generation, &salt, payload)
}

pub(crate) fn seal_with_salt(
    key: &RecoveryKey,
    kind: u8,
    created_at: Timestamp,
    generation: u64,
    salt: &[u8; SALT_LEN],
    payload: &[u8],
) -> Vec<u8> {
    let prefix = prefix(kind, MODE_RECOVERY_KEY, created_at, generation, None);
    seal_with(&prefix, salt, key.secret(), payload)
}

/// Opens a blob of `kind` sealed by [`seal`] under `key`: the header's facts and the
/// payload.
///
/// # Errors
/// Each [`BackupError`] as the module docs order them.
pub fn open(
    blob: &[u8],
    key: &RecoveryKey,
    kind: u8,
) -> Result<(BackupInfo, Zeroizing<Vec<u8>>), BackupError> {
    let header = parse(blob, kind, MODE_RECOVERY_KEY)?;
    open_with(blob, &header, key.secret())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(b: u8) -> RecoveryKey {
        RecoveryKey::from_bytes([b; 32])
    }

    fn blob() -> Vec<u8> {
        seal_with_salt(
            &key(1),
            KIND_DEVICE,
            Timestamp::from_unix_secs(1_764_000_000),
            42,
            &[9; SALT_LEN],
            b"the payload",
        )
    }

    #[test]
    fn a_blob_opens_with_its_key_and_reports_its_header() {
        let (info, payload) = open(&blob(), &key(1), KIND_DEVICE).expect("opens");
        assert_eq!(&payload[..], b"the payload");
        assert_eq!(
            info,
            BackupInfo {
                kind: KIND_DEVICE,
                created_at: Timestamp::from_unix_secs(1_764_000_000),
                generation: 42
            }
        );
        assert_eq!(
            blob().len(),
            FIXED_LEN + SALT_LEN + KEY_ID_LEN + 11 + TAG_LEN
        );
    }

    #[test]
    fn each_failure_has_its_own_error() {
        let b = blob();
        assert_eq!(open(&b, &key(2), KIND_DEVICE), Err(BackupError::WrongKey));
        assert_eq!(
            open(&b, &key(1), 2),
            Err(BackupError::WrongKind {
                found: 1,
                expected: 2
            })
        );
        for len in [FIXED_LEN, b.len() - 12, b.len() - 1] {
            let cut = &b[..len];
            let got = open(cut, &key(1), KIND_DEVICE);
            if len >= FIXED_LEN + SALT_LEN + KEY_ID_LEN + TAG_LEN {
                // Long enough to hold a header and a tag: the tag does not verify.
                assert_eq!(got, Err(BackupError::Tampered), "{len}");
            } else {
                assert_eq!(
                    got,
                    Err(BackupError::Truncated {
                        len,
                        needed: FIXED_LEN + SALT_LEN + KEY_ID_LEN + TAG_LEN
                    }),
                    "{len}"
                );
            }
        }
        assert_eq!(
            open(&b[..10], &key(1), KIND_DEVICE),
            Err(BackupError::Truncated {
                len: 10,
                needed: FIXED_LEN + SALT_LEN + KEY_ID_LEN + TAG_LEN
            })
        );
        assert_eq!(
            open(b"hello", &key(1), KIND_DEVICE),
            Err(BackupError::NotABackup)
        );
        // A sealed state object (0x01 || protobuf) is not a backup.
        assert_eq!(
            open(&[1, 10, 2, 8, 1], &key(1), KIND_DEVICE),
            Err(BackupError::NotABackup)
        );
        let mut v2 = b.clone();
        v2[9] = 2;
        assert_eq!(
            open(&v2, &key(1), KIND_DEVICE),
            Err(BackupError::UnsupportedVersion { found: 2 })
        );
        let mut m = b.clone();
        m[11] = 7;
        assert_eq!(
            open(&m, &key(1), KIND_DEVICE),
            Err(BackupError::WrongKeyMode { found: 7 })
        );
        let mut m = b.clone();
        m[11] = MODE_PASSPHRASE;
        assert_eq!(
            open(&m, &key(1), KIND_DEVICE),
            Err(BackupError::WrongKeyMode { found: 2 })
        );
    }

    /// Every single-bit flip of a blob fails, with the error its field gives.
    #[test]
    fn every_single_bit_flip_fails_with_the_expected_error() {
        let b = blob();
        for byte in 0..b.len() {
            for bit in 0..8 {
                let mut flipped = b.clone();
                flipped[byte] ^= 1 << bit;
                let got = open(&flipped, &key(1), KIND_DEVICE);
                let want = match byte {
                    0..=8 => BackupError::NotABackup,
                    9 => BackupError::UnsupportedVersion { found: flipped[9] },
                    10 => BackupError::WrongKind {
                        found: flipped[10],
                        expected: KIND_DEVICE,
                    },
                    11 => BackupError::WrongKeyMode { found: flipped[11] },
                    // Time, generation, salt, key id, ciphertext, tag: the key id still
                    // names the key given, or the payload still authenticates under the
                    // expected key id.
                    _ => BackupError::Tampered,
                };
                assert_eq!(got, Err(want), "byte {byte} bit {bit}");
            }
        }
    }

    /// A passphrase-mode blob written out by hand: magic, version 1, kind 1, mode 2,
    /// created_at 0x0102030405060708, generation 0x1112131415161718, the cost parameters
    /// `21..=2c`, salt `[0x33; 32]`, key id `[0x44; 16]`, then `sealed_len` bytes of 0x55.
    fn hand_passphrase_blob(sealed_len: usize) -> Vec<u8> {
        let mut out = b"RBXBACKUP".to_vec();
        out.extend_from_slice(&[1, 1, 2]);
        out.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7, 8]);
        out.extend_from_slice(&[0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18]);
        out.extend(0x21..=0x2c);
        out.extend_from_slice(&[0x33; 32]);
        out.extend_from_slice(&[0x44; 16]);
        out.extend(core::iter::repeat_n(0x55, sealed_len));
        out
    }

    #[test]
    fn a_passphrase_header_is_split_field_by_field_and_needs_104_bytes() {
        // 9 + 3 + 8 + 8 + 12 (parameters) + 32 + 16 = 88 header bytes, then the 16-byte tag.
        let whole = hand_passphrase_blob(16);
        assert_eq!(whole.len(), 104);
        let h = parse(&whole, KIND_DEVICE, MODE_PASSPHRASE).unwrap();
        assert_eq!(h.kind, 1);
        assert_eq!(h.created_at, 0x0102_0304_0506_0708);
        assert_eq!(h.generation, 0x1112_1314_1516_1718);
        let params: Vec<u8> = (0x21..=0x2c).collect();
        assert_eq!(h.params.map(|p| p.to_vec()), Some(params));
        assert_eq!(h.salt, &[0x33; 32]);
        assert_eq!(h.key_id, &[0x44; 16]);
        assert_eq!(h.sealed, &[0x55; 16]);
        for len in [103, 92, 88, 12] {
            assert_eq!(
                parse(&whole[..len], KIND_DEVICE, MODE_PASSPHRASE).err(),
                Some(BackupError::Truncated { len, needed: 104 }),
                "{len}"
            );
        }
    }

    #[test]
    fn a_recovery_key_blob_needs_92_bytes() {
        // 9 + 3 + 8 + 8 + 32 + 16 = 76 header bytes, then the 16-byte tag.
        let b = blob();
        for len in [91, 76, 28, 12, 11, 9] {
            assert_eq!(
                open(&b[..len], &key(1), KIND_DEVICE),
                Err(BackupError::Truncated { len, needed: 92 }),
                "{len}"
            );
        }
        // 92 bytes: a header and 16 payload bytes read as the tag, which does not verify.
        assert_eq!(
            open(&b[..92], &key(1), KIND_DEVICE),
            Err(BackupError::Tampered)
        );
        let h = parse(&b[..92], KIND_DEVICE, MODE_RECOVERY_KEY).unwrap();
        assert_eq!(h.params.map(|p| p.to_vec()), None);
        assert_eq!(h.salt, &[9; 32]);
        assert_eq!(h.sealed, &b[76..92]);
    }

    /// `parse` never lets a sealed part shorter than the tag through; `open_with` still
    /// refuses one on its own, naming the length a header and a tag need.
    #[test]
    fn open_with_refuses_a_sealed_part_shorter_than_the_tag() {
        let b = blob();
        let cut = &b[..91];
        let header = Header {
            kind: KIND_DEVICE,
            created_at: 1_764_000_000,
            generation: 42,
            params: None,
            salt: &[9; SALT_LEN],
            key_id: cut[60..76].try_into().unwrap(),
            sealed: &cut[76..],
        };
        assert_eq!(
            open_with(cut, &header, key(1).secret()).err(),
            Some(BackupError::Truncated {
                len: 91,
                needed: 92
            })
        );
    }
}
