//! # ratchetbox
//!
//! Sans-IO end-to-end encryption for messaging apps: X3DH session setup and the Double
//! Ratchet, with a protobuf wire format and durable, sealable state.
//!
//! Most apps use the high-level layer (feature `std`): a [`Device`] is one installation of
//! the app, keeping its account and a session per peer [`Address`] in a [`Store`]
//! ([`MemoryStore`], or `SqliteStore` with the `sqlite` feature), committed in one
//! transaction per call, with one [`Error`] type whose [`Action`] tells the app what to do.
//! Below it is the sans-IO core this page shows.
//!
//! The app moves bytes; ratchetbox provides the state machines. Nothing here does I/O or
//! reads a clock: randomness is injected (`&mut impl CryptoRng`) and time is passed in as a
//! [`Timestamp`].
//!
//! ```
//! use ratchetbox::{Account, PreKeyBundle, SessionRecord, Timestamp};
//!
//! let mut rng = ratchetbox::OsRng::new();
//! let now = Timestamp::from_unix_secs(1_764_000_000);
//!
//! // Bob publishes a prekey bundle (through a server, as bytes).
//! let mut bob = Account::new(&mut rng, now);
//! let otk = bob.generate_one_time_prekeys(&mut rng, 1, now)?[0];
//! let bundle_bytes = bob.prekey_bundle(Some(otk.id()), None)?.to_bytes();
//!
//! // Alice starts a session from it and sends a message.
//! let mut alice = Account::new(&mut rng, now);
//! let mut alice_to_bob = SessionRecord::new();
//! alice_to_bob.initiate(&mut rng, &alice, &PreKeyBundle::from_bytes(&bundle_bytes)?)?;
//! let wire = alice_to_bob.encrypt(&mut rng, b"hello Bob")?;
//!
//! // Bob decrypts it; that creates his side of the session.
//! let mut bob_to_alice = SessionRecord::new();
//! assert_eq!(bob_to_alice.decrypt(&mut bob, &wire, now)?, b"hello Bob");
//!
//! // And answers.
//! let reply = bob_to_alice.encrypt(&mut rng, b"hello Alice")?;
//! assert_eq!(alice_to_bob.decrypt(&mut alice, &reply, now)?, b"hello Alice");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Conventions
//! - A function takes `now` exactly when it records or compares a time (a send time, a
//!   prekey's creation time, the time a skipped key was stored); `encrypt`, `initiate` and
//!   the exporter read no time and take none.
//! - A function takes `&mut Account` exactly when it may change the account (`decrypt` and
//!   `receive` consume one-time prekeys and remember setups); `initiate` only reads it.
//! - Every function that draws randomness takes `&mut impl CryptoRng` (the
//!   [`rand_core`] re-export names the trait); [`OsRng`] is the operating system's.
//!
//! Files (photos, voice notes, videos) are sealed separately by [`attachment`]: streaming,
//! chunked, padded and key-committed, with random access; the small [`AttachmentPointer`]
//! that opens one travels inside the conversation.
//!
//! ## Features
//! - `std` (default): [`OsRng`], [`Timestamp::now`] and `std::error::Error` impls. Without
//!   it the crate is `no_std` + `alloc`.
//! - `parallel`: seal and open large attachments on all cores (rayon); implies `std`.
//! - `sqlite`: [`SqliteStore`], a [`Device`]'s state in one SQLite file (rusqlite, with
//!   SQLite compiled in); implies `std`.
//! - `fast-aes`: every AES-256-GCM operation (message bodies, sealed state, store rows,
//!   backups, attachment chunks) runs on AWS-LC's assembly (`aws-lc-rs`) instead of
//!   RustCrypto's pure-Rust `aes-gcm`. The bytes are the same, the API too (no item is gated
//!   on it); only the speed changes, and a failed decryption zeroes the caller's output
//!   buffer rather than leaving the ciphertext there. Implies `std`; needs a C compiler to
//!   build and does not build for WebAssembly.
//!
//! On docs.rs, every item that needs a feature is marked with it.
//!
//! The protocol, byte for byte, is specified in `docs/PROTOCOL.md`.

#![no_std]
#![forbid(unsafe_code)]
// docs.rs (`--cfg docsrs`, nightly) marks each feature-gated item with the feature it needs.
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs)]

extern crate alloc;
#[cfg(feature = "std")]
extern crate std;

mod account;
#[cfg(feature = "std")]
mod address;
mod aead;
mod config;
mod content;
#[cfg(feature = "std")]
mod device;
mod error;
mod expiry;
mod exporter;
mod fingerprint;
mod kdf;
mod kem;
mod keys;
#[cfg(test)]
mod primitive_vectors;
mod ratchet;
mod record;
#[cfg(feature = "std")]
mod rng;
mod session;
mod state;
mod time;
mod trust;
mod wire;
mod x25519;
mod x3dh;

pub mod attachment;
pub mod backup;
pub mod group;
#[cfg(feature = "std")]
pub mod store;
// The fuzz targets' bodies, for `fuzz/` and the corpus replay test, not for applications:
// hidden from the docs and not covered by semver.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod padding;
mod prekeys;

pub use account::{
    Account, MAX_LAST_RESORT_KEM_PREKEYS, MAX_ONE_TIME_KEM_PREKEYS, MAX_ONE_TIME_PREKEYS,
    MAX_SIGNED_PREKEYS, MAX_USED_SETUPS, RESTORE_ID_GAP,
};
#[cfg(feature = "std")]
pub use address::{Address, AddressError, DeviceId, MAX_USER_ID_LEN};
pub use config::SessionConfig;
pub use content::{Content, MAX_ATTACHMENTS, ReceivedMessage, SentMessage};
#[cfg(feature = "std")]
pub use device::{Action, Device, Error, GroupSent, MAX_ATTEMPTS, Outgoing, Restored, Sent};
pub use error::FileNameRule;
pub use error::FingerprintError;
#[cfg(feature = "std")]
pub use error::TimestampError;
pub use error::{
    AssembleError, ContentError, DecodeError, DecryptError, EncryptError, ExportError, PreKeyError,
    PreKeyKind, SetupError, StateError, TrustError, UploadError,
};
pub use expiry::{ExpiryError, ExpiryTimer, MAX_TIMER_SECS, TimerChange};
pub use exporter::{MAX_EXPORTED_KEY_LEN, MAX_EXPORTER_CONTEXT_LEN, MAX_EXPORTER_LABEL_LEN};
pub use fingerprint::{SafetyNumber, ScanResult};
pub use kem::{KEM_CIPHERTEXT_LEN, KEM_PUBLIC_KEY_LEN, KemPublicKey};
pub use keys::{IdentityKey, IdentityKeyPair, KEY_LEN, SIGNATURE_LEN, X25519PublicKey};
pub use prekeys::{
    ONE_TIME_PREKEY_LOW_WATER, ONE_TIME_PREKEY_TARGET, PREKEY_ROTATION_PERIOD_SECS,
    PreKeyMaintenance, REPLACED_PREKEY_GRACE_SECS, ServerPreKeyStatus,
};
/// The `rand_core` crate ratchetbox's functions take randomness from: name its `CryptoRng`
/// through this re-export to be sure to use the same version.
pub use rand_core;
pub use record::{EXPIRED_TIMER_GRACE_SECS, SessionRecord};
#[cfg(feature = "std")]
pub use rng::OsRng;
pub use session::{Session, SessionId};
pub use state::StorageKey;
#[cfg(feature = "std")]
pub use store::{MemoryStore, Store, StoreError, Table, Transaction};
#[cfg(feature = "sqlite")]
pub use store::{SqliteOptions, SqliteStore};
pub use time::Timestamp;
pub use trust::{IdentityChange, PeerIdentity, Trust};
pub use wire::bundle::{
    KemPreKey, KemPreKeyId, OneTimePreKey, OneTimePreKeyId, PreKeyBundle, SignedPreKey,
    SignedPreKeyId,
};
pub use wire::message::Message;
pub use wire::upload::{MAX_UPLOAD_ONE_TIME_PREKEYS, PreKeyUpload};
pub use wire::{PQXDH_MESSAGE_VERSION, VERSION};

pub use attachment::{AttachmentError, AttachmentPointer};

/// The README's code example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
