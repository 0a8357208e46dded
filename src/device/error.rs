//! The one error type of the high-level layer, and what an app should do about each error.

use alloc::vec::Vec;
use core::fmt;

use crate::address::{Address, AddressError};
use crate::attachment::AttachmentError;
use crate::backup::BackupError;
use crate::error::{
    ContentError, DecodeError, DecryptError, EncryptError, ExportError, FingerprintError,
    PreKeyError, SetupError, StateError, TrustError,
};
use crate::expiry::ExpiryError;
use crate::group::{GroupError, GroupId};
use crate::store::StoreError;

/// What an app should do when a [`Device`](super::Device) call fails. Every [`Error`] has
/// exactly one; branch on it, and log the error itself (its message says what happened).
///
/// In every case the device's stored state is exactly as it was before the call.
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Action {
    /// Nothing to do and nothing to show: the message was a duplicate (already received),
    /// or arrived after its key was deleted as too old.
    Ignore,
    /// The message is not authentic, or it is a replay or a downgrade: drop it without
    /// showing anything. A stream of these may be worth logging as an attack.
    DropForged,
    /// Show it to the person: a contact's identity key changed (compare safety numbers, then
    /// [`accept_identity_change`](super::Device::accept_identity_change)), or local storage
    /// is unusable (wrong storage key, corrupt or rolled-back database).
    ShowToPerson,
    /// The session with the address(es) concerned cannot carry this message: fetch a fresh
    /// prekey bundle from the server, start a new session with
    /// [`process_bundle`](super::Device::process_bundle), and, for a message that could not
    /// be decrypted, ask the sender to send it again.
    RepairSession,
    /// Try the same call again later: storage was busy or failed (disk full, locked by
    /// another process for too long).
    RetryLater,
    /// The app called the library wrongly (an argument out of range, the wrong function for
    /// a message's kind): fix the app.
    CallerBug,
}

/// Everything that can go wrong in the high-level layer ([`Device`](super::Device)). The
/// inner errors are the core's precise variants; [`action`](Self::action) says what to do.
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A message could not be decrypted.
    #[error("could not decrypt the message from {from}: {source}")]
    Decrypt {
        /// The sender's address, as the app reported it.
        from: Address,
        /// What went wrong.
        source: DecryptError,
    },
    /// A message could not be encrypted for one of its recipients.
    #[error("could not encrypt for {to}: {source}")]
    Encrypt {
        /// The recipient.
        to: Address,
        /// What went wrong.
        source: EncryptError,
    },
    /// A session could not be started from a prekey bundle.
    #[error("could not start a session with {with}: {source}")]
    Setup {
        /// The address the bundle was for.
        with: Address,
        /// What went wrong.
        source: SetupError,
    },
    /// Some recipients' devices have no session, or only one restored from a backup (which
    /// never sends again: docs/PROTOCOL.md, "Backup"): nothing was encrypted or stored.
    /// Fetch a bundle for each, call [`process_bundle`](super::Device::process_bundle), and
    /// retry.
    #[error("no session with {} device(s): {}", addresses.len(), AddressList(addresses))]
    MissingSessions {
        /// The devices without a session.
        addresses: Vec<Address>,
    },
    /// A key could not be exported from a session.
    #[error(transparent)]
    Export(#[from] ExportError),
    /// A disappearing-message timer was refused (out of range, or no more changes left).
    #[error(transparent)]
    Timer(ExpiryError),
    /// There is no session with this address.
    #[error("no session with {0}")]
    NoSession(Address),
    /// Bytes from outside (a bundle, a prekey upload, a scanned code) could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A prekey operation failed.
    #[error(transparent)]
    PreKey(#[from] PreKeyError),
    /// A trust decision did not apply (wrong key, stale change).
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// A safety number could not be computed or compared.
    #[error(transparent)]
    Fingerprint(#[from] FingerprintError),
    /// An attachment could not be sealed or opened.
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    /// A user id was refused.
    #[error(transparent)]
    Address(#[from] AddressError),
    /// The storage backend failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A backup could not be opened or restored (a wrong recovery key, a damaged or foreign
    /// file): nothing was written.
    #[error(transparent)]
    Backup(#[from] BackupError),
    /// A stored value could not be opened or decoded: a wrong storage key, or a damaged
    /// database.
    #[error("stored {what} could not be read: {source}")]
    StoredState {
        /// What was being read.
        what: &'static str,
        /// Why it failed.
        source: StateError,
    },
    /// The store holds no device: create one with [`Device::create`](super::Device::create).
    #[error("the store holds no device; create one first")]
    NoDevice,
    /// The store already holds a device: open it with [`Device::open`](super::Device::open).
    #[error("the store already holds device {0}; open it instead of creating another")]
    DeviceExists(Address),
    /// The store went back to an older state than this handle has seen (or than the app's
    /// anchor): a restored backup or a copied database. Using it could reuse message keys.
    #[error(
        "the store was rolled back: it is at generation {found}, but generation {seen} was already seen"
    )]
    RolledBack {
        /// The generation the store holds now.
        found: u64,
        /// The newest generation seen before.
        seen: u64,
    },
    /// A group operation failed: a group message that could not be read (forged, duplicate,
    /// its sender key not here yet, ...), a sender key refused, or a message too large.
    #[error("group {group}: {source}")]
    Group {
        /// The group.
        group: GroupId,
        /// What went wrong.
        source: GroupError,
    },
    /// This device does not know the group: call
    /// [`set_group_members`](super::Device::set_group_members) first.
    #[error("unknown group {0}: set its members first")]
    UnknownGroup(GroupId),
    /// A group message or sender key came from a device that is not a member of the group
    /// (for example one that was removed).
    #[error("{address} is not a member of group {group}")]
    NotGroupMember {
        /// The group.
        group: GroupId,
        /// The sender.
        address: Address,
    },
    /// A group message decrypted but its content is invalid (a broken or malicious member).
    #[error("the group message from {from} in group {group} has invalid content: {source}")]
    InvalidGroupContent {
        /// The group.
        group: GroupId,
        /// The sender.
        from: Address,
        /// What is wrong.
        source: ContentError,
    },
    /// The operation kept conflicting with other handles on the same store.
    #[error("gave up after {attempts} attempts that conflicted with other handles on the store")]
    TooManyConflicts {
        /// How many times the operation ran.
        attempts: u32,
    },
    /// A message to oneself: the address is this device's own.
    #[error("{0} is this device's own address")]
    OwnAddress(Address),
}

struct AddressList<'a>(&'a [Address]);

impl fmt::Display for AddressList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{a}")?;
        }
        Ok(())
    }
}

impl Error {
    /// What the app should do about this error.
    pub fn action(&self) -> Action {
        match self {
            Error::Decrypt { source, .. } => decrypt_action(source),
            Error::Encrypt { source, .. } => encrypt_action(source),
            Error::Setup { source, .. } => setup_action(source),
            Error::MissingSessions { .. } | Error::NoSession(_) => Action::RepairSession,
            // Bytes from the server (a bundle) that do not decode.
            Error::Decode(_) => Action::DropForged,
            Error::PreKey(e) => match e {
                // The account can make no more prekeys: the device must be set up again.
                PreKeyError::IdsExhausted => Action::ShowToPerson,
                PreKeyError::UnknownOneTimePreKey { .. }
                | PreKeyError::UnknownKemPreKey { .. }
                | PreKeyError::TooManyOneTimePreKeys { .. }
                | PreKeyError::TooManyForUpload { .. } => Action::CallerBug,
            },
            Error::Export(e) => match e {
                ExportError::NoSession => Action::RepairSession,
                ExportError::EmptyLabel
                | ExportError::LabelTooLong { .. }
                | ExportError::ContextTooLong { .. }
                | ExportError::InvalidOutputLength { .. } => Action::CallerBug,
            },
            Error::Trust(_)
            | Error::Address(_)
            | Error::DeviceExists(_)
            | Error::NoDevice
            | Error::OwnAddress(_)
            | Error::Timer(_) => Action::CallerBug,
            Error::Fingerprint(e) => match e {
                // A scanned code that does not decode: someone else's, or damaged.
                FingerprintError::Decode(_) => Action::DropForged,
                FingerprintError::IdentifierTooLong { .. } => Action::CallerBug,
            },
            Error::Attachment(e) => attachment_action(e),
            Error::Store(e) => match e {
                StoreError::Conflict | StoreError::Busy { .. } | StoreError::Io(_) => {
                    Action::RetryLater
                }
                StoreError::Corrupt(_) => Action::ShowToPerson,
            },
            Error::TooManyConflicts { .. } => Action::RetryLater,
            Error::Group { source, .. } => group_action(source),
            Error::UnknownGroup(_) => Action::CallerBug,
            Error::NotGroupMember { .. } | Error::InvalidGroupContent { .. } => Action::DropForged,
            Error::StoredState { .. } | Error::RolledBack { .. } => Action::ShowToPerson,
            // The person typed another key, or picked a damaged or foreign file.
            Error::Backup(_) => Action::ShowToPerson,
        }
    }
}

// The matches below name every variant (no wildcard): a new variant must be classified
// before the crate compiles.

fn group_action(e: &GroupError) -> Action {
    use GroupError as G;
    match e {
        G::Duplicate { .. } | G::KeyEvicted { .. } | G::BeforeDistribution { .. } => Action::Ignore,
        // The sender key may still be on its way (pairwise messages and group messages
        // travel separately).
        G::UnknownSenderKey { .. } => Action::RetryLater,
        G::Decode(_)
        | G::WrongGroup
        | G::ForgedSignature
        | G::AuthenticationFailed
        | G::ConflictingSenderKey { .. } => Action::DropForged,
        // Too many messages lost: the sender's key must be distributed again.
        G::TooFarAhead { .. } => Action::RepairSession,
        G::MessageTooLarge | G::ChainExhausted => Action::CallerBug,
    }
}

fn decrypt_action(e: &DecryptError) -> Action {
    use DecryptError as D;
    match e {
        D::Duplicate { .. } | D::Expired { .. } => Action::Ignore,
        // Authentic, from a newer version: the person should know a message could not be
        // shown (and update the app).
        D::IdentityChanged(_) | D::UnknownPlaintextKind { .. } => Action::ShowToPerson,
        // Our side has no usable session or prekey for this message: the peer must start
        // again from a fresh bundle, and the sender resend.
        D::NoSession
        | D::TooFarAhead { .. }
        | D::UnknownSignedPreKey { .. }
        | D::UnknownOneTimePreKey { .. }
        | D::UnknownKemPreKey { .. }
        | D::OneTimePreKeyUsed { .. }
        | D::KemPreKeyUsed { .. }
        | D::ReplayMemoryFull { .. } => Action::RepairSession,
        // Not authentic, a replay, a downgrade, our own identity, or authentic but malformed
        // inside (a broken or malicious sender).
        D::Decode(_)
        | D::AuthenticationFailed
        | D::ClassicalSetupRefused
        | D::LowOrderKey
        | D::SetupAlreadyUsed
        | D::OwnIdentity
        | D::InvalidContent(_)
        | D::EmptyPlaintext => Action::DropForged,
        // Raw bytes given to the content API or the other way round.
        D::ContentMessage | D::RawMessage => Action::CallerBug,
    }
}

fn encrypt_action(e: &EncryptError) -> Action {
    use EncryptError as E;
    match e {
        E::NoSession | E::ChainExhausted | E::LowOrderKey | E::NotReady => Action::RepairSession,
        E::InvalidTimer(_) | E::MessageTooLarge { .. } => Action::CallerBug,
    }
}

fn setup_action(e: &SetupError) -> Action {
    use SetupError as S;
    match e {
        S::IdentityChanged(_) => Action::ShowToPerson,
        S::OwnBundle => Action::CallerBug,
        // A bundle with a bad signature, a low-order key, or without the post-quantum part
        // when it is required: the server (or someone in its place) sent a bad bundle.
        S::BadSignature | S::LowOrderKey | S::BadKemSignature | S::ClassicalSetupRefused => {
            Action::DropForged
        }
    }
}

fn attachment_action(e: &AttachmentError) -> Action {
    use AttachmentError as A;
    match e {
        A::InvalidFileName { .. }
        | A::InvalidMetadata { .. }
        | A::InvalidRange { .. }
        | A::TooLarge { .. } => Action::CallerBug,
        #[cfg(feature = "std")]
        A::Io(_) => Action::RetryLater,
        // The file does not match its pointer: forged or damaged.
        A::UnsupportedVersion { .. }
        | A::MalformedHeader { .. }
        | A::CommitmentMismatch
        | A::LengthMismatch { .. }
        | A::ChunkAuthentication { .. }
        | A::Truncated { .. }
        | A::BadPadding { .. }
        | A::RootMismatch
        | A::ChunkNotCommitted { .. }
        | A::StreamFailed => Action::DropForged,
    }
}

#[cfg(test)]
mod tests {
    //! The classification, variant by variant, as `Action`'s documentation states it.

    use super::*;
    use crate::error::ContentError;
    use crate::expiry::ExpiryError;
    use alloc::string::{String, ToString};

    fn from() -> Address {
        Address::new("peer", 1).expect("valid")
    }

    fn decrypt(source: DecryptError) -> Action {
        Error::Decrypt {
            from: from(),
            source,
        }
        .action()
    }

    fn encrypt(source: EncryptError) -> Action {
        Error::Encrypt { to: from(), source }.action()
    }

    #[test]
    fn decrypt_errors() {
        use Action::*;
        use DecryptError as D;
        let cases = [
            (D::Duplicate { counter: 1 }, Ignore),
            (D::Expired { counter: 1 }, Ignore),
            (D::AuthenticationFailed, DropForged),
            (
                D::Decode(DecodeError::Malformed { object: "Message" }),
                DropForged,
            ),
            (D::SetupAlreadyUsed, DropForged),
            (D::ClassicalSetupRefused, DropForged),
            (D::LowOrderKey, DropForged),
            (D::OwnIdentity, DropForged),
            (D::InvalidContent(ContentError::BadPadding), DropForged),
            (D::EmptyPlaintext, DropForged),
            (D::UnknownPlaintextKind { kind: 2 }, ShowToPerson),
            (D::NoSession, RepairSession),
            (
                D::TooFarAhead {
                    counter: 5000,
                    skip: 5000,
                    max_skip: 2000,
                },
                RepairSession,
            ),
            (D::UnknownSignedPreKey { id: 1 }, RepairSession),
            (D::UnknownOneTimePreKey { id: 1 }, RepairSession),
            (D::UnknownKemPreKey { id: 1 }, RepairSession),
            (D::OneTimePreKeyUsed { id: 1 }, RepairSession),
            (D::KemPreKeyUsed { id: 1 }, RepairSession),
            (
                D::ReplayMemoryFull {
                    signed_prekey_id: 1,
                    max: 4,
                },
                RepairSession,
            ),
            (D::ContentMessage, CallerBug),
            (D::RawMessage, CallerBug),
        ];
        for (error, expected) in cases {
            assert_eq!(decrypt(error.clone()), expected, "{error:?}");
        }
    }

    #[test]
    fn other_errors() {
        use Action::*;
        assert_eq!(encrypt(EncryptError::NoSession), RepairSession);
        assert_eq!(encrypt(EncryptError::ChainExhausted), RepairSession);
        assert_eq!(encrypt(EncryptError::NotReady), RepairSession);
        assert_eq!(
            encrypt(EncryptError::InvalidTimer(ExpiryError::VersionExhausted)),
            CallerBug
        );
        assert_eq!(encrypt(EncryptError::MessageTooLarge { len: 1 }), CallerBug);
        let setup = |source| {
            Error::Setup {
                with: from(),
                source,
            }
            .action()
        };
        assert_eq!(setup(SetupError::BadSignature), DropForged);
        assert_eq!(setup(SetupError::BadKemSignature), DropForged);
        assert_eq!(setup(SetupError::OwnBundle), CallerBug);
        assert_eq!(
            Error::MissingSessions {
                addresses: alloc::vec![from()]
            }
            .action(),
            RepairSession
        );
        assert_eq!(
            Error::Store(StoreError::Busy { waited_ms: 1 }).action(),
            RetryLater
        );
        assert_eq!(Error::Store(StoreError::Conflict).action(), RetryLater);
        assert_eq!(
            Error::Store(StoreError::Io(String::new())).action(),
            RetryLater
        );
        assert_eq!(
            Error::Store(StoreError::Corrupt(String::new())).action(),
            ShowToPerson
        );
        assert_eq!(Error::TooManyConflicts { attempts: 8 }.action(), RetryLater);
        assert_eq!(
            Error::RolledBack { found: 1, seen: 2 }.action(),
            ShowToPerson
        );
        assert_eq!(
            Error::StoredState {
                what: "account",
                source: StateError::UnsealFailed
            }
            .action(),
            ShowToPerson
        );
        assert_eq!(Error::NoDevice.action(), CallerBug);
        assert_eq!(Error::OwnAddress(from()).action(), CallerBug);
        assert_eq!(
            Error::Timer(ExpiryError::VersionExhausted).action(),
            CallerBug
        );
        assert_eq!(
            Error::Export(ExportError::NoSession).action(),
            RepairSession
        );
        assert_eq!(Error::Export(ExportError::EmptyLabel).action(), CallerBug);
        assert_eq!(
            Error::PreKey(PreKeyError::IdsExhausted).action(),
            ShowToPerson
        );
        assert_eq!(
            Error::PreKey(PreKeyError::TooManyForUpload { max: 100 }).action(),
            CallerBug
        );
        assert_eq!(
            Error::Attachment(AttachmentError::RootMismatch).action(),
            DropForged
        );
        assert_eq!(
            Error::Attachment(AttachmentError::StreamFailed).action(),
            DropForged
        );
    }

    #[test]
    fn messages_name_the_address() {
        let e = Error::MissingSessions {
            addresses: alloc::vec![from(), Address::new("peer", 2).expect("valid")],
        };
        assert_eq!(e.to_string(), "no session with 2 device(s): peer.1, peer.2");
        let e = Error::Decrypt {
            from: from(),
            source: DecryptError::NoSession,
        };
        assert!(
            e.to_string()
                .starts_with("could not decrypt the message from peer.1: ")
        );
    }
}
