//! Error types, one enum per family of operations.
//!
//! Every variant says what went wrong in words a person can act on. None of them carries
//! secret material.

use thiserror::Error;

/// Bytes could not be turned into a typed wire or state object.
///
/// Decoding validates every field at the boundary: lengths of keys and signatures, presence
/// of required fields, canonical encoding, and the leading version byte.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input was empty, so not even the version byte was present.
    #[error("empty {object}: expected a version byte")]
    Empty {
        /// The object being decoded.
        object: &'static str,
    },
    /// The leading version byte names a format this build does not understand.
    #[error(
        "unsupported {object} version {found} (the newest version this build reads is {supported})"
    )]
    UnsupportedVersion {
        /// The object being decoded.
        object: &'static str,
        /// The version byte found.
        found: u8,
        /// The newest version this build reads (messages: 1 and 2; every other object: 1).
        supported: u8,
    },
    /// The bytes after the version byte are not a valid protobuf encoding.
    #[error("malformed {object}: the bytes are not a valid protobuf encoding")]
    Malformed {
        /// The object being decoded.
        object: &'static str,
    },
    /// The encoding is valid protobuf but not the canonical one: unknown, repeated,
    /// default-valued, padded or reordered fields, or a value spelled another way (a `bool`
    /// other than 1, a 32-bit field with higher bits set). ratchetbox rejects these so that
    /// every object has one encoding.
    #[error(
        "non-canonical {object}: the bytes are not the one canonical protobuf encoding of their value"
    )]
    NonCanonical {
        /// The object being decoded.
        object: &'static str,
    },
    /// A required field is absent.
    #[error("{object} is missing its {field}")]
    MissingField {
        /// The object being decoded.
        object: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A fixed-size field has the wrong length.
    #[error("{object}.{field} must be {expected} bytes, found {found}")]
    InvalidLength {
        /// The object being decoded.
        object: &'static str,
        /// The offending field.
        field: &'static str,
        /// The required length.
        expected: usize,
        /// The length found.
        found: usize,
    },
    /// A 32-byte identity key is not a canonical Ed25519 point of large order.
    #[error(
        "{object}.{field} is not a valid identity key (not a canonical Ed25519 point, or of small order)"
    )]
    InvalidIdentityKey {
        /// The object being decoded.
        object: &'static str,
        /// The offending field.
        field: &'static str,
    },
    /// A 32-byte X25519 public key is not in its one canonical encoding: bit 255 is set, or
    /// the u-coordinate is not reduced modulo 2^255 - 19. X25519 would treat it as another
    /// encoding of a valid key, so ratchetbox refuses it rather than let two byte strings
    /// name one key.
    #[error(
        "{object}.{field} is not a canonical X25519 public key (bit 255 set, or not reduced mod 2^255-19)"
    )]
    NonCanonicalKey {
        /// The object being decoded.
        object: &'static str,
        /// The offending field.
        field: &'static str,
    },
    /// A field holds a value outside its allowed range, or the fields contradict each other.
    #[error("{object}.{field} is invalid: {reason}")]
    InvalidValue {
        /// The object being decoded.
        object: &'static str,
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An attachment pointer's file name breaks one of the rules that make it safe to use
    /// as a file name on every common system (`docs/PROTOCOL.md` section 13.4).
    #[error("attachment pointer.file_name is not allowed: {rule}")]
    InvalidFileName {
        /// The rule the name breaks (the first one, in the order of [`FileNameRule`]).
        rule: FileNameRule,
    },
}

/// Starting a session from a prekey bundle failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SetupError {
    /// The bundle's signed prekey is not signed by the bundle's identity key: the bundle was
    /// forged or corrupted, and no session was created.
    #[error("the signed prekey's signature does not verify under the bundle's identity key")]
    BadSignature,
    /// A Diffie-Hellman output was all zero, which means the peer supplied a low-order key.
    #[error("a prekey in the bundle is a low-order point (Diffie-Hellman result is all zero)")]
    LowOrderKey,
    /// The bundle's KEM prekey is not signed by the bundle's identity key.
    #[error("the KEM prekey's signature does not verify under the bundle's identity key")]
    BadKemSignature,
    /// The bundle has no post-quantum prekey, and classical setups were not allowed
    /// explicitly.
    #[error(
        "the bundle has no post-quantum prekey; a classical X3DH session must be allowed explicitly"
    )]
    ClassicalSetupRefused,
    /// The bundle is our own: a session with oneself is not supported.
    #[error("the bundle belongs to this account's own identity key")]
    OwnBundle,
    /// The bundle carries a different identity key than the one this conversation was built
    /// with. Nothing was created; see [`IdentityChange`](crate::IdentityChange).
    #[error("{0}")]
    IdentityChanged(alloc::boxed::Box<crate::trust::IdentityChange>),
}

/// Encrypting a message failed. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// The record has no session yet: start one from the peer's prekey bundle first.
    #[error("no session: start one from the peer's prekey bundle first")]
    NoSession,
    /// The disappearing-message timer cannot be set to this value.
    #[error(transparent)]
    InvalidTimer(ExpiryError),
    /// The sending chain reached 2^32 - 1 messages, the largest counter the format carries.
    #[error("the sending chain is exhausted (2^32 - 1 messages); the peer must reply first")]
    ChainExhausted,
    /// The peer sent a low-order ratchet key, so no new sending chain can be derived.
    #[error("the peer's ratchet key is a low-order point (Diffie-Hellman result is all zero)")]
    LowOrderKey,
    /// The plaintext is longer than one message can carry: AES-256-GCM encrypts at most
    /// 2^36 - 32 bytes under one nonce, and the kind byte in front of every plaintext takes
    /// one of them, so raw bytes ([`SessionRecord::encrypt`](crate::SessionRecord::encrypt))
    /// may be at most 2^36 - 33 bytes long (docs/PROTOCOL.md section 11).
    #[error(
        "the plaintext is {len} bytes, more than one message can carry (at most 2^36 - 33 bytes of raw plaintext)"
    )]
    MessageTooLarge {
        /// The plaintext length.
        len: usize,
    },
    /// The session has not yet learned the peer's ratchet key, so it cannot send. Sessions
    /// created by ratchetbox never are in this state; restored state can be.
    #[error("the session cannot send yet: it does not know the peer's ratchet key")]
    NotReady,
}

/// Decrypting a message failed. The session, the record and the account are exactly as they
/// were before the call.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The message bytes could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The AES-256-GCM tag did not verify: the message was tampered with, corrupted or
    /// truncated, or was not encrypted for this session.
    #[error(
        "message authentication failed: it was tampered with, corrupted, or not meant for this session"
    )]
    AuthenticationFailed,
    /// This message was already decrypted (a duplicate or a replay).
    ///
    /// A session recognises a duplicate while the message's chain (one per ratchet key of
    /// the peer, so a new one each time the peer starts sending again after hearing from us)
    /// is its current receiving chain or one of the 32 receiving chains before it. A
    /// duplicate from an older chain cannot be told apart from a message on a chain the
    /// session never saw: it fails as [`AuthenticationFailed`](Self::AuthenticationFailed)
    /// instead (or as [`TooFarAhead`](Self::TooFarAhead) if its counters exceed the skip
    /// bound). It is never decrypted twice, and the state is unchanged either way.
    #[error("duplicate message: message {counter} of this chain was already decrypted")]
    Duplicate {
        /// The message number in its chain.
        counter: u32,
    },
    /// The message's key is gone: it was evicted from the bounded store of skipped keys or
    /// pruned for age (or, if it was evicted, the message may also have been read before).
    /// Like [`Duplicate`](Self::Duplicate), reported only for the current receiving chain
    /// and the 32 before it; older chains fail authentication.
    #[error(
        "message {counter} arrived too late: its key was dropped from the bounded store of skipped message keys"
    )]
    Expired {
        /// The message number in its chain.
        counter: u32,
    },
    /// Decrypting would skip more messages of one chain than the session allows: more than
    /// [`SessionConfig::max_skip`](crate::SessionConfig::max_skip), or, for a message that
    /// would start a new chain in a previous session of a record, more than
    /// [`SessionConfig::max_skip_previous`](crate::SessionConfig::max_skip_previous).
    #[error(
        "message {counter} would skip {skip} messages of its chain; at most {max_skip} may be skipped"
    )]
    TooFarAhead {
        /// The message number in its chain.
        counter: u32,
        /// How many message keys would have to be skipped.
        skip: u64,
        /// The bound that applied (`max_skip` or `max_skip_previous`).
        max_skip: u32,
    },
    /// The record has no session that this message belongs to, and it is not an initial
    /// message that could start one.
    #[error("no session for this message: it is not an initial message and matches no session")]
    NoSession,
    /// The initial message names a signed prekey this account does not have (never issued,
    /// or removed after rotation).
    #[error("the initial message names signed prekey {id}, which this account does not have")]
    UnknownSignedPreKey {
        /// The signed prekey id.
        id: u32,
    },
    /// The initial message names a one-time prekey that was already used by another session.
    #[error("the initial message names one-time prekey {id}, which was already used")]
    OneTimePreKeyUsed {
        /// The one-time prekey id.
        id: u32,
    },
    /// The initial message names a one-time KEM prekey that was already used by another
    /// session.
    #[error("the initial message names one-time KEM prekey {id}, which was already used")]
    KemPreKeyUsed {
        /// The KEM prekey id.
        id: u32,
    },
    /// The initial message names a KEM prekey this account does not have (never issued, or
    /// a last-resort key removed after rotation).
    #[error("the initial message names KEM prekey {id}, which this account does not have")]
    UnknownKemPreKey {
        /// The KEM prekey id.
        id: u32,
    },
    /// The initial message is classical (X3DH without ML-KEM) and this side requires a
    /// post-quantum setup.
    #[error(
        "the initial message uses classical X3DH, but this side requires a post-quantum (PQXDH) setup"
    )]
    ClassicalSetupRefused,
    /// The initial message names a one-time prekey this account never issued.
    #[error("the initial message names one-time prekey {id}, which this account never issued")]
    UnknownOneTimePreKey {
        /// The one-time prekey id.
        id: u32,
    },
    /// A Diffie-Hellman output was all zero: the peer sent a low-order public key.
    #[error("the message carries a low-order public key (Diffie-Hellman result is all zero)")]
    LowOrderKey,
    /// The initial message repeats a key agreement (without a one-time prekey) that already
    /// started a session: it is a replay and cannot start a second session.
    ///
    /// Also reported, after it decrypted and before anything is committed, for an initial
    /// message whose base key is the id of a session the record already holds from another
    /// setup (an initiator that reused its ephemeral key): a record never holds two sessions
    /// with one id (docs/PROTOCOL.md section 7).
    #[error(
        "the initial message repeats a key agreement that already started a session (a replay)"
    )]
    SetupAlreadyUsed,
    /// The initial message starts a new session without a one-time key of either kind (no
    /// one-time prekey, and the last-resort KEM prekey) on a signed prekey whose replay
    /// memory is full: the account already remembers the most such setups it keeps per
    /// signed prekey ([`MAX_USED_SETUPS`](crate::MAX_USED_SETUPS)). Rather than forget an
    /// old setup, which would let its replay start a second session, the account refuses new
    /// ones on that signed prekey.
    ///
    /// Setups that use a one-time prekey or a one-time KEM prekey still work, and so do
    /// setups on other signed prekeys. If the full prekey is the current one, rotate the
    /// signed prekey ([`Account::rotate_signed_prekey`](crate::Account::rotate_signed_prekey),
    /// as [`Account::signed_prekey_rotation_due`](crate::Account::signed_prekey_rotation_due)
    /// said already) and publish the new one, and publish one-time prekeys.
    #[error(
        "signed prekey {signed_prekey_id} already remembers {max} setups without one-time prekeys and refuses more, so that no replay can start a second session: rotate the signed prekey and publish one-time prekeys"
    )]
    ReplayMemoryFull {
        /// The signed prekey the initial message names.
        signed_prekey_id: u32,
        /// How many such setups the account remembers per signed prekey.
        max: usize,
    },
    /// The initial message claims to come from our own identity key.
    #[error("the initial message carries this account's own identity key")]
    OwnIdentity,
    /// The message decrypted, but its content is not valid (bad padding, malformed content,
    /// invalid disappearing-message metadata). Nothing was committed.
    #[error("the message decrypted but its content is invalid: {0}")]
    InvalidContent(ContentError),
    /// The initial message decrypts, but under a different identity key than the one this
    /// conversation was built with. Nothing was changed or consumed; see
    /// [`IdentityChange`](crate::IdentityChange).
    #[error("{0}")]
    IdentityChanged(alloc::boxed::Box<crate::trust::IdentityChange>),
    /// The message was sent with [`SessionRecord::send`](crate::SessionRecord::send) (or
    /// [`set_expiry_timer`](crate::SessionRecord::set_expiry_timer)) and carries content:
    /// pass it to [`SessionRecord::receive`](crate::SessionRecord::receive) instead. It
    /// authenticated, but nothing was changed or consumed, so `receive` still decrypts it.
    #[error(
        "this message carries content sent with send(): decrypt it with SessionRecord::receive, not decrypt"
    )]
    ContentMessage,
    /// The message was sent with [`SessionRecord::encrypt`](crate::SessionRecord::encrypt)
    /// and carries raw bytes: pass it to
    /// [`SessionRecord::decrypt`](crate::SessionRecord::decrypt) instead. It authenticated,
    /// but nothing was changed or consumed, so `decrypt` still decrypts it.
    #[error(
        "this message carries raw bytes sent with encrypt(): decrypt it with SessionRecord::decrypt, not receive"
    )]
    RawMessage,
    /// The message authenticated, but its plaintext starts with a kind byte this build does
    /// not know (0x00 is raw bytes, 0x01 is content; docs/PROTOCOL.md section 11): the
    /// sender may run a newer version. Nothing was changed or consumed.
    #[error(
        "the message decrypted, but its plaintext starts with the unknown kind byte {kind:#04x} (0x00 is raw bytes, 0x01 content): the sender may run a newer version"
    )]
    UnknownPlaintextKind {
        /// The first byte of the plaintext.
        kind: u8,
    },
    /// The message authenticated, but its plaintext is empty: it lacks the kind byte every
    /// plaintext starts with (docs/PROTOCOL.md section 11), so the sender is faulty. Nothing
    /// was changed or consumed.
    #[error("the message decrypted to nothing: it lacks the kind byte every plaintext starts with")]
    EmptyPlaintext,
}

/// Deriving a key with the key exporter
/// ([`Session::export_key`](crate::Session::export_key)) failed. Nothing was written to the
/// output.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExportError {
    /// The label is empty: name the purpose of the key, for example `b"call media key"`.
    #[error("the exporter label is empty: name the purpose of the key")]
    EmptyLabel,
    /// The label is longer than [`MAX_EXPORTER_LABEL_LEN`](crate::MAX_EXPORTER_LABEL_LEN)
    /// bytes.
    #[error("the exporter label is {len} bytes long; at most {max} bytes are allowed")]
    LabelTooLong {
        /// The label's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The context is longer than
    /// [`MAX_EXPORTER_CONTEXT_LEN`](crate::MAX_EXPORTER_CONTEXT_LEN) bytes.
    #[error("the exporter context is {len} bytes long; at most {max} bytes are allowed")]
    ContextTooLong {
        /// The context's length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The output buffer is empty or longer than HKDF-SHA256 can fill
    /// ([`MAX_EXPORTED_KEY_LEN`](crate::MAX_EXPORTED_KEY_LEN) = 255 * 32 = 8,160 bytes).
    #[error("an exported key must be 1 to {max} bytes long; {len} bytes were asked for")]
    InvalidOutputLength {
        /// The length asked for.
        len: usize,
        /// The largest length HKDF-SHA256 can produce.
        max: usize,
    },
    /// The record has no current session to export a key from: start one first.
    #[error("no session: the record has no current session to export a key from")]
    NoSession,
}

/// Invalid disappearing-message metadata.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ExpiryError {
    /// The timer is longer than [`MAX_TIMER_SECS`](crate::MAX_TIMER_SECS).
    #[error("a disappearing-message timer of {seconds} s is longer than the maximum of {max} s")]
    TimerOutOfRange {
        /// The timer.
        seconds: u32,
        /// The maximum.
        max: u32,
    },
    /// A timer that is on must have a version of at least 1.
    #[error("a disappearing-message timer of {seconds} s has version 0")]
    TimerWithoutVersion {
        /// The timer.
        seconds: u32,
    },
    /// The version counter reached its maximum; the timer can no longer change.
    #[error("the disappearing-message timer version is exhausted")]
    VersionExhausted,
    /// The version is above [`ExpiryTimer::MAX_VERSION`](crate::ExpiryTimer::MAX_VERSION),
    /// that is, 2^32 - 1. No valid timer carries it, so adding one to a valid version never
    /// overflows.
    #[error(
        "the disappearing-message timer version {version} is too large (the largest allowed is {max})"
    )]
    VersionOverflow {
        /// The version.
        version: u32,
        /// The largest allowed version.
        max: u32,
    },
}

/// The content of a decrypted message is not valid.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum ContentError {
    /// The padding after the content is not `0x80` followed by zero bytes up to the size
    /// bucket of the content's length.
    #[error("the content is not padded as the format requires")]
    BadPadding,
    /// The content bytes are not a valid encoding (including unknown fields: a newer content
    /// version this build cannot read reports `UnsupportedVersion`).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The disappearing-message metadata is invalid.
    #[error(transparent)]
    Expiry(#[from] ExpiryError),
    /// The content lists more attachments than allowed.
    #[error("the content has {count} attachments; at most {max} are allowed")]
    TooManyAttachments {
        /// How many it has.
        count: usize,
        /// The limit.
        max: usize,
    },
}

/// Persisted state could not be restored.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum StateError {
    /// The bytes are not a valid encoding of the expected object.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The sealed object does not open under this storage key: wrong key, or the bytes were
    /// modified.
    #[error("the sealed state does not open: wrong storage key, or the bytes were modified")]
    UnsealFailed,
    /// The sealed object holds a different kind of object than requested.
    #[error("the sealed state holds {found} state, not the {expected} state that was asked for")]
    WrongKind {
        /// The kind requested.
        expected: &'static str,
        /// The kind found.
        found: &'static str,
    },
}

/// A trust decision could not be applied.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TrustError {
    /// The key to mark verified is not the peer's current identity key (for example, the
    /// safety numbers were compared for an old key).
    #[error("the key to verify is not the peer's current identity key")]
    NotCurrentKey,
    /// The identity change to accept is not the one pending for this record: the record's
    /// key is not the change's previous key.
    #[error("this identity change does not apply to the record's current key")]
    StaleChange,
    /// The record has no peer identity yet.
    #[error("the record has no peer identity yet")]
    NoPeer,
}

/// Managing the prekeys of an [`Account`](crate::Account) failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PreKeyError {
    /// No unused one-time prekey has this id.
    #[error("no unused one-time prekey with id {id}")]
    UnknownOneTimePreKey {
        /// The requested id.
        id: u32,
    },
    /// All 2^32 prekey ids of this kind have been used: create a new account.
    #[error("prekey ids are exhausted")]
    IdsExhausted,
    /// No unused one-time KEM prekey has this id.
    #[error("no unused one-time KEM prekey with id {id}")]
    UnknownKemPreKey {
        /// The requested id.
        id: u32,
    },
    /// Creating that many one-time prekeys (or one-time KEM prekeys) would leave the
    /// account holding more unused ones of that kind than its limit
    /// ([`MAX_ONE_TIME_PREKEYS`](crate::MAX_ONE_TIME_PREKEYS),
    /// [`MAX_ONE_TIME_KEM_PREKEYS`](crate::MAX_ONE_TIME_KEM_PREKEYS)). Nothing was created.
    #[error(
        "the account can hold at most {max} unused one-time prekeys of this kind; creating that many more would exceed it"
    )]
    TooManyOneTimePreKeys {
        /// The limit.
        max: usize,
    },
    /// More one-time keys of one kind were asked for in an upload than one upload carries.
    #[error("an upload carries at most {max} one-time keys of each kind")]
    TooManyForUpload {
        /// The limit ([`MAX_UPLOAD_ONE_TIME_PREKEYS`](crate::MAX_UPLOAD_ONE_TIME_PREKEYS)).
        max: usize,
    },
}

/// The kind of a public prekey, as errors name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PreKeyKind {
    /// A signed X25519 prekey.
    Signed,
    /// A one-time X25519 prekey.
    OneTime,
    /// A last-resort ML-KEM-1024 prekey.
    LastResortKem,
    /// A one-time ML-KEM-1024 prekey.
    OneTimeKem,
}

impl core::fmt::Display for PreKeyKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::Signed => "signed prekey",
            Self::OneTime => "one-time prekey",
            Self::LastResortKem => "last-resort KEM prekey",
            Self::OneTimeKem => "one-time KEM prekey",
        })
    }
}

/// A prekey upload was refused by
/// [`PreKeyUpload::from_bytes`](crate::PreKeyUpload::from_bytes): a server must store
/// nothing of it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum UploadError {
    /// The bytes are not a valid encoding of an upload (see [`DecodeError`]).
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The bytes are longer than the largest valid upload
    /// ([`PreKeyUpload::MAX_LEN`](crate::PreKeyUpload::MAX_LEN)); they were not decoded.
    #[error("the upload is {len} bytes long; no valid upload is longer than {max} bytes")]
    TooLarge {
        /// The length of the input.
        len: usize,
        /// The longest valid upload.
        max: usize,
    },
    /// The upload carries more one-time keys of one kind than an upload may
    /// ([`MAX_UPLOAD_ONE_TIME_PREKEYS`](crate::MAX_UPLOAD_ONE_TIME_PREKEYS)).
    #[error("the upload carries {count} of kind {kind}; at most {max} are allowed per upload")]
    TooManyPreKeys {
        /// The kind of the keys.
        kind: PreKeyKind,
        /// How many the upload carries.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The ids of a list of one-time keys are not strictly increasing: `id` repeats the id
    /// before it or is lower.
    #[error(
        "{kind} id {id} repeats or is out of order: the ids of an upload's list must be strictly increasing"
    )]
    IdsNotIncreasing {
        /// The kind of the list.
        kind: PreKeyKind,
        /// The first id that is not above the one before it.
        id: u32,
    },
    /// The last-resort KEM prekey has the id of one of the upload's one-time KEM prekeys
    /// (both kinds share one id sequence, so an id names one key).
    #[error("the last-resort KEM prekey and a one-time KEM prekey share id {id}")]
    SharedKemPreKeyId {
        /// The shared id.
        id: u32,
    },
    /// A signed prekey or a KEM prekey of the upload is not signed by the upload's identity
    /// key.
    #[error("the {kind} with id {id} is not signed by the upload's identity key")]
    BadSignature {
        /// The kind of the key.
        kind: PreKeyKind,
        /// Its id.
        id: u32,
    },
    /// The signature over the upload's one-time prekeys does not verify under the upload's
    /// identity key.
    #[error("the one-time prekeys are not signed by the upload's identity key")]
    BadOneTimePreKeysSignature,
}

/// A bundle could not be assembled from stored prekeys by
/// [`PreKeyBundle::assemble`](crate::PreKeyBundle::assemble).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AssembleError {
    /// The signed prekey is not signed by the identity key the bundle is for: the server's
    /// store is corrupt or mixes up devices. No bundle was made.
    #[error("signed prekey {id} is not signed by the bundle's identity key")]
    BadSignedPreKeySignature {
        /// The signed prekey's id.
        id: u32,
    },
    /// The KEM prekey (one-time or last-resort) is not signed by the identity key the
    /// bundle is for. No bundle was made.
    #[error("KEM prekey {id} is not signed by the bundle's identity key")]
    BadKemPreKeySignature {
        /// The KEM prekey's id.
        id: u32,
    },
}

/// A [`Timestamp`](crate::Timestamp) and a [`std::time::SystemTime`] could not be converted.
#[cfg(feature = "std")]
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// The system time is before the Unix epoch, which a `Timestamp` cannot express.
    #[error(
        "the time is before the Unix epoch (1970-01-01T00:00:00Z), which a Timestamp cannot express"
    )]
    BeforeEpoch,
    /// The timestamp is later than the latest time `SystemTime` holds on this platform.
    #[error(
        "{secs} s after the Unix epoch is later than std::time::SystemTime can hold on this platform"
    )]
    Overflow {
        /// The timestamp, in seconds since the Unix epoch.
        secs: u64,
    },
}

/// Computing a safety number, or comparing one with a scanned code, failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FingerprintError {
    /// A stable identifier is longer than
    /// [`SafetyNumber::MAX_IDENTIFIER_LEN`](crate::SafetyNumber::MAX_IDENTIFIER_LEN) bytes.
    #[error("the {party} identifier is {len} bytes long; at most {max} bytes are allowed")]
    IdentifierTooLong {
        /// Which party's identifier: `"local"` or `"remote"`.
        party: &'static str,
        /// The identifier's length in bytes.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The scanned bytes are not a ratchetbox scannable fingerprint: empty, of another wire
    /// format version, not valid protobuf, non-canonical, or with a missing or wrong-sized
    /// field. Nothing was compared.
    #[error(transparent)]
    Decode(#[from] DecodeError),
}

/// The rule an attachment file name breaks. A name is checked against the rules in the order
/// of this enum and the first one it breaks is reported (`docs/PROTOCOL.md` section 13.4).
///
/// The rules make a name safe to use as a single file name in a folder the app chose, on
/// Windows, macOS, Linux, Android and iOS: it cannot name another folder, a drive, an
/// alternate data stream or a device, cannot be changed by the file system trimming it, and
/// shows the characters it is made of. The empty name is allowed and means "no name".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum FileNameRule {
    /// Longer than 255 bytes of UTF-8.
    TooLong,
    /// Holds a control character (general category Cc: U+0000..U+001F, U+007F..U+009F).
    ControlCharacter,
    /// Holds an invisible format character (general category Cf), such as the right-to-left
    /// override U+202E that makes `evil\u{202E}gpj.exe` display as `evilexe.jpg`.
    FormatCharacter,
    /// Holds a line or paragraph separator (U+2028, U+2029).
    LineSeparator,
    /// Holds a path separator, `/` or `\`.
    PathSeparator,
    /// Holds a colon: on Windows `C:name` is relative to a drive and `name:stream` writes an
    /// alternate data stream.
    Colon,
    /// Holds a character Windows does not allow in file names: `<`, `>`, `"`, `|`, `?`, `*`.
    ReservedCharacter,
    /// Is `.` or `..`.
    DotName,
    /// Starts with whitespace.
    LeadingWhitespace,
    /// Ends with a dot or whitespace (Windows silently strips trailing dots and spaces).
    TrailingDotOrWhitespace,
    /// Is a Windows device name (`CON`, `PRN`, `AUX`, `NUL`, `CONIN$`, `CONOUT$`,
    /// `COM0`..`COM9`, `LPT0`..`LPT9`, and `COM`/`LPT` with a superscript 1, 2 or 3), in
    /// any case, alone or before an extension (`con.txt`, `CON .txt`).
    ReservedDeviceName,
}

impl core::fmt::Display for FileNameRule {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::TooLong => "longer than 255 bytes",
            Self::ControlCharacter => "contains a control character",
            Self::FormatCharacter => {
                "contains an invisible format character (Unicode category Cf, such as a \
                 right-to-left override)"
            }
            Self::LineSeparator => "contains a line or paragraph separator",
            Self::PathSeparator => "contains a path separator (/ or \\)",
            Self::Colon => {
                "contains a colon (a drive-relative path or an alternate data stream on Windows)"
            }
            Self::ReservedCharacter => {
                "contains a character Windows does not allow in file names (< > \" | ? *)"
            }
            Self::DotName => "is . or .., a directory rather than a file",
            Self::LeadingWhitespace => "starts with whitespace",
            Self::TrailingDotOrWhitespace => {
                "ends with a dot or whitespace (Windows strips those, changing the name)"
            }
            Self::ReservedDeviceName => {
                "is a Windows device name (CON, PRN, AUX, NUL, COM1, LPT1 and the like), with \
                 or without an extension"
            }
        })
    }
}

/// Sealing or opening an attachment failed.
///
/// When opening, no plaintext of a chunk that failed is ever returned. Streaming opens
/// release each chunk after it verified; an error later does not retract those bytes, and
/// only a successful end of the stream proves that the attachment was complete.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum AttachmentError {
    /// The sealed file (or the pointer) is of a format version this build does not read.
    #[error("unsupported attachment format version {found} (this build reads version 2)")]
    UnsupportedVersion {
        /// The version found.
        found: u32,
    },
    /// The sealed file does not start with a valid attachment header.
    #[error("malformed attachment header: {reason}")]
    MalformedHeader {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key commitment after the header does not match the file key: the file was sealed
    /// under another key (the wrong file for this pointer), or its header was modified.
    #[error(
        "the attachment's key commitment does not match: wrong file for this pointer, or its header was modified"
    )]
    CommitmentMismatch,
    /// The sealed file's length differs from the one the pointer's plaintext size implies.
    /// Checked before anything is decrypted.
    #[error("the sealed attachment is {found} bytes, but the pointer implies {expected}")]
    LengthMismatch {
        /// The sealed length implied by the pointer and header.
        expected: u64,
        /// The length found.
        found: u64,
    },
    /// A chunk that the pointer's root commits to did not authenticate at its position: the
    /// sender sealed it with another position, last-chunk flag or key (a chunk modified,
    /// moved or taken from another file is caught before, as [`ChunkNotCommitted`]). Its
    /// plaintext is not released.
    ///
    /// [`ChunkNotCommitted`]: AttachmentError::ChunkNotCommitted
    #[error(
        "attachment chunk {index} failed authentication: the sender sealed it for another position or key"
    )]
    ChunkAuthentication {
        /// The position (from 0) at which the failing chunk was read.
        index: u64,
    },
    /// The sealed file is shorter than its 70-byte prefix, or a source delivered fewer bytes
    /// than the length it reported: the attachment is incomplete.
    #[error("the sealed attachment ended early: {missing} more bytes were expected")]
    Truncated {
        /// How many more sealed bytes were expected (at least; 0 when not known).
        missing: u64,
    },
    /// The padding after the plaintext is not all zero (it authenticated, so the sender
    /// produced it), or the pointer states a plaintext size shorter than what was sealed.
    #[error(
        "the padding in attachment chunk {index} is not zero: a faulty sender, or a wrong plaintext size in the pointer"
    )]
    BadPadding {
        /// The chunk holding the non-zero padding byte.
        index: u64,
    },
    /// The hashes of the sealed file (the hash tree stored after its chunks, or the chunks
    /// themselves) do not lead to the root in the pointer: this is not the file the pointer
    /// commits to, or its stored hash tree was modified. Checked before any chunk they
    /// cover is decrypted.
    #[error(
        "the sealed attachment's hash tree does not match the root in the pointer: it is not the file the pointer commits to"
    )]
    RootMismatch,
    /// A chunk's hash differs from the one the pointer's root commits to for its position:
    /// it was modified, moved, or replaced, possibly by someone holding the file key (who can
    /// encrypt chunks that authenticate). Detected before the chunk is decrypted; nothing of
    /// it is released.
    #[error("attachment chunk {index} is not the chunk the pointer commits to at this position")]
    ChunkNotCommitted {
        /// The position (from 0) of the chunk.
        index: u64,
    },
    /// The plaintext is larger than the format allows (2^50 bytes).
    #[error("the attachment is {len} bytes, more than the 2^50 bytes the format allows")]
    TooLarge {
        /// The plaintext length.
        len: u64,
    },
    /// The file name given for the pointer breaks one of the file name rules.
    #[error("attachment file name is not allowed: {rule}")]
    InvalidFileName {
        /// The rule the name breaks (the first one, in the order of [`FileNameRule`]).
        rule: FileNameRule,
    },
    /// Metadata for the pointer (the content type or the locator) is too long or contains
    /// characters that are not allowed.
    #[error("attachment {field} is invalid: {reason}")]
    InvalidMetadata {
        /// The offending field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A random-access read asked for bytes outside the plaintext, or passed a buffer of the
    /// wrong size for its fetch plan.
    #[error("invalid range: {reason}")]
    InvalidRange {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A streaming opener was used again after it returned an error; it releases nothing
    /// more.
    #[error("the attachment stream already failed; nothing more is released")]
    StreamFailed,
    /// Reading or writing failed (std adapters only).
    #[cfg(feature = "std")]
    #[cfg_attr(docsrs, doc(cfg(feature = "std")))]
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}
