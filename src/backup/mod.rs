//! Encrypted backups: a [`RecoveryKey`] the person writes down, and a versioned blob sealed
//! under a key derived from it (docs/PROTOCOL.md, section "Backup").
//!
//! This module is the sans-IO core: the recovery key's typeable code and the sealing of a
//! payload. [`Device::backup`](crate::Device::backup) and
//! [`Device::restore`](crate::Device::restore) build on it to export a whole device store
//! and to restore it safely.
//!
//! Why a recovery key and not a PIN: whoever holds a sealed backup can try keys offline,
//! as fast as their hardware allows. A 4-digit PIN is 10,000 guesses, a 6-digit one a
//! million: minutes either way. A recovery key is 256 random bits: no number of guesses
//! finds it.
//!
//! ```
//! use ratchetbox::backup::{self, RecoveryKey, KIND_DEVICE};
//! use ratchetbox::Timestamp;
//! let mut rng = ratchetbox::OsRng::new();
//! let key = RecoveryKey::generate(&mut rng);
//! let now = Timestamp::from_unix_secs(1_764_000_000);
//! let blob = backup::seal(&mut rng, &key, KIND_DEVICE, now, 7, b"state");
//! let (info, payload) = backup::open(&blob, &key, KIND_DEVICE)?;
//! assert_eq!((info.generation, &payload[..]), (7, &b"state"[..]));
//! # Ok::<(), ratchetbox::backup::BackupError>(())
//! ```

pub(crate) mod blob;
mod passphrase;
mod recovery_key;
#[cfg(test)]
mod vectors;

pub use blob::{BACKUP_VERSION, BackupError, BackupInfo, KIND_DEVICE, open, seal};
#[cfg(any(test, feature = "fuzzing"))]
#[doc(hidden)]
pub use passphrase::seal_with_params;
pub use passphrase::{
    Argon2Params, MIN_DISTINCT_CHARS, MIN_NUMERIC_PASSPHRASE_DIGITS, MIN_PASSPHRASE_CHARS,
    check_passphrase, open_with_passphrase, seal_with_passphrase,
};
pub use recovery_key::{
    CODE_LEN, GROUP_LEN, GROUPS, RECOVERY_KEY_LEN, RecoveryKey, RecoveryKeyError,
};
