//! ratchetbox for Swift, Kotlin and Python, through UniFFI (proc-macro mode).
//!
//! A [`Device`] is one installation of the app, its state in an SQLite file sealed under a
//! 32-byte storage key (keep the key in the platform's key store). Every call takes and
//! returns plain data: strings, integers, byte arrays and records. Every failure is a
//! [`RatchetboxError`], one exception class per thing the app should do about it, with a
//! message that names no secret; a panic inside the library becomes
//! [`RatchetboxError::Internal`] instead of crossing into the foreign language.
//!
//! The times are the system clock's. Attachments are sealed and opened from byte arrays or
//! files by free functions; their pointers travel inside messages as bytes.
#![forbid(unsafe_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};

use common::{DeviceHandle, Failure, Kind, Zeroizing, guard, lock};
use ratchetbox::{SqliteStore, Timestamp};

uniffi::setup_scaffolding!();

/// Every failure, one variant per thing the app should do (ratchetbox's `Action`), each with
/// a message for a log or a person. Nothing stored changed when a call fails.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum RatchetboxError {
    /// A duplicate or too old message: nothing to do, nothing to show.
    #[error("{message}")]
    Ignore {
        /// What happened.
        message: String,
    },
    /// Not authentic, a replay or a downgrade, or bytes from outside that do not decode:
    /// drop it without showing anything.
    #[error("{message}")]
    DropForged {
        /// What happened.
        message: String,
    },
    /// Show it to the person: a contact's identity key changed (`new_identity_key`, which
    /// `Device.accept_identity_change` takes once accepted), or local storage is unusable
    /// (wrong storage key, corrupt or rolled-back database).
    #[error("{message}")]
    ShowToPerson {
        /// What happened.
        message: String,
        /// The contact's new identity key, for a changed key.
        new_identity_key: Option<Vec<u8>>,
        /// The device concerned, if any.
        addresses: Vec<Address>,
    },
    /// The session with `addresses` cannot carry the message: fetch their bundles,
    /// `process_bundle` each, and retry (or ask the sender to resend).
    #[error("{message}")]
    RepairSession {
        /// What happened.
        message: String,
        /// The devices to fetch a bundle for.
        addresses: Vec<Address>,
    },
    /// Storage was busy or failed: try the same call again later.
    #[error("{message}")]
    RetryLater {
        /// What happened.
        message: String,
    },
    /// The app called the library wrongly (an argument out of range, a second device in
    /// one file): fix the app.
    #[error("{message}")]
    CallerBug {
        /// What happened.
        message: String,
    },
    /// A bug inside ratchetbox (caught at the boundary), or a handle left unusable by one:
    /// nothing stored changed; open the device again.
    #[error("{message}")]
    Internal {
        /// What happened.
        message: String,
    },
}

impl From<Failure> for RatchetboxError {
    fn from(f: Failure) -> Self {
        let message = f.message;
        let addresses = f.addresses.iter().map(Address::from).collect();
        match f.kind {
            Kind::Ignore => Self::Ignore { message },
            Kind::DropForged => Self::DropForged { message },
            Kind::ShowToPerson => Self::ShowToPerson {
                message,
                new_identity_key: f.new_identity_key.map(|k| k.to_vec()),
                addresses,
            },
            Kind::RepairSession => Self::RepairSession { message, addresses },
            Kind::RetryLater => Self::RetryLater { message },
            Kind::CallerBug => Self::CallerBug { message },
            Kind::Internal => Self::Internal { message },
        }
    }
}

type Result<T> = std::result::Result<T, RatchetboxError>;

/// Runs `call` behind the boundary: a panic becomes `Internal`, a failure its exception.
fn boundary<T>(call: impl FnOnce() -> std::result::Result<T, Failure>) -> Result<T> {
    guard(call).map_err(RatchetboxError::from)
}

/// A device of a user: the user id (at most 255 bytes) and the device number.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Address {
    /// The user id.
    pub user_id: String,
    /// The device number.
    pub device_id: u32,
}

impl From<&ratchetbox::Address> for Address {
    fn from(a: &ratchetbox::Address) -> Self {
        Self {
            user_id: a.user_id().to_owned(),
            device_id: a.device_id(),
        }
    }
}

/// One message to deliver: the device it is for and its bytes.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct OutgoingMessage {
    /// The recipient device.
    pub to: Address,
    /// The bytes to deliver.
    pub message: Vec<u8>,
}

/// What a send produced: one message per recipient device.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SentMessages {
    /// The peer's devices first, then this user's other devices, in the order given.
    pub messages: Vec<OutgoingMessage>,
    /// The send time, Unix seconds.
    pub sent_at: u64,
    /// When this device's copy expires under the conversation's timer, Unix seconds.
    pub expires_at: Option<u64>,
}

impl From<common::SentMessages> for SentMessages {
    fn from(s: common::SentMessages) -> Self {
        Self {
            messages: s
                .messages
                .into_iter()
                .map(|(to, message)| OutgoingMessage {
                    to: Address::from(&to),
                    message,
                })
                .collect(),
            sent_at: s.sent_at,
            expires_at: s.expires_at,
        }
    }
}

/// A decrypted message.
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct ReceivedMessage {
    /// The body.
    pub body: Vec<u8>,
    /// The attachment pointers (open them with `open_attachment`/`open_attachment_file`).
    pub attachments: Vec<Vec<u8>>,
    /// When the sender sent it, Unix seconds.
    pub sent_at: u64,
    /// When this device received it, Unix seconds.
    pub received_at: u64,
    /// The conversation's disappearing-message timer it carries, seconds (0: off).
    pub timer_seconds: u32,
    /// Whether it changed this device's timer setting for the conversation.
    pub timer_changed: bool,
    /// When it disappears if read now, Unix seconds.
    pub expires_at: Option<u64>,
}

/// Hand-written so that a log never shows a body or a file key.
impl std::fmt::Debug for ReceivedMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceivedMessage")
            .field("body_len", &self.body.len())
            .field("attachments", &self.attachments.len())
            .field("sent_at", &self.sent_at)
            .field("timer_seconds", &self.timer_seconds)
            .finish_non_exhaustive()
    }
}

/// What a group send produced: the group message for every member device, and the pairwise
/// messages that carry this device's sender key to the members that lack it.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct GroupSent {
    /// The group message: deliver the same bytes to every member device (each calls
    /// `receive_group`).
    pub message: Vec<u8>,
    /// Pairwise messages (each member calls `receive`); deliver them before the group
    /// message.
    pub distributions: Vec<OutgoingMessage>,
    /// The send time, Unix seconds.
    pub sent_at: u64,
    /// When this device's copy expires under the group's timer, Unix seconds.
    pub expires_at: Option<u64>,
}

impl From<common::GroupSentMessages> for GroupSent {
    fn from(s: common::GroupSentMessages) -> Self {
        Self {
            message: s.message,
            distributions: s
                .distributions
                .into_iter()
                .map(|(to, message)| OutgoingMessage {
                    to: Address::from(&to),
                    message,
                })
                .collect(),
            sent_at: s.sent_at,
            expires_at: s.expires_at,
        }
    }
}

/// A device restored from a backup into a new SQLite file.
#[derive(uniffi::Record)]
pub struct RestoredDevice {
    /// The restored device. Its first send to each peer fails with `RepairSession`: fetch
    /// those devices' bundles and `process_bundle` them (its old sessions only read late
    /// messages).
    pub device: Arc<Device>,
    /// The prekey upload to send to the server now.
    pub prekey_upload: Vec<u8>,
    /// When the backup was made, Unix seconds.
    pub backup_created_at: u64,
    /// The store generation when the backup was made.
    pub backup_generation: u64,
}

impl std::fmt::Debug for RestoredDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoredDevice")
            .field("backup_created_at", &self.backup_created_at)
            .field("backup_generation", &self.backup_generation)
            .finish_non_exhaustive()
    }
}

impl From<common::RestoredHandle> for RestoredDevice {
    fn from(r: common::RestoredHandle) -> Self {
        Self {
            device: Arc::new(Device {
                inner: Mutex::new(r.handle),
            }),
            prekey_upload: r.prekey_upload,
            backup_created_at: r.backup_created_at,
            backup_generation: r.backup_generation,
        }
    }
}

fn members(list: &[Address]) -> Vec<(String, u32)> {
    list.iter()
        .map(|a| (a.user_id.clone(), a.device_id))
        .collect()
}

fn received(r: common::Received) -> ReceivedMessage {
    ReceivedMessage {
        body: r.body.to_vec(),
        attachments: r.attachments.iter().map(|p| p.to_vec()).collect(),
        sent_at: r.sent_at,
        received_at: r.received_at,
        timer_seconds: r.timer_seconds,
        timer_changed: r.timer_changed,
        expires_at: r.expires_at,
    }
}

/// What the server holds for this device's prekeys (ids from the device's uploads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, uniffi::Record)]
pub struct PreKeyStatus {
    /// The signed prekey id the server hands out, if any.
    pub signed_prekey_id: Option<u32>,
    /// The last-resort KEM prekey id the server hands out, if any.
    pub last_resort_kem_prekey_id: Option<u32>,
    /// How many one-time prekeys the server has left.
    pub one_time_prekeys: u32,
    /// The newest one-time prekey id of the last batch the server received.
    pub newest_one_time_prekey_id: Option<u32>,
    /// How many one-time KEM prekeys the server has left.
    pub one_time_kem_prekeys: u32,
    /// The newest one-time KEM prekey id of the last batch the server received.
    pub newest_one_time_kem_prekey_id: Option<u32>,
}

impl From<PreKeyStatus> for common::PreKeyStatus {
    fn from(s: PreKeyStatus) -> Self {
        Self {
            signed_prekey_id: s.signed_prekey_id,
            last_resort_kem_prekey_id: s.last_resort_kem_prekey_id,
            one_time_prekeys: s.one_time_prekeys,
            newest_one_time_prekey_id: s.newest_one_time_prekey_id,
            one_time_kem_prekeys: s.one_time_kem_prekeys,
            newest_one_time_kem_prekey_id: s.newest_one_time_kem_prekey_id,
        }
    }
}

/// A safety number to show, and the code to show as a QR code.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SafetyNumber {
    /// 60 digits in 12 groups of 5.
    pub display: String,
    /// The scannable code's bytes.
    pub scannable: Vec<u8>,
}

/// The outcome of comparing a scanned code with this device's safety number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum ScanResult {
    /// Same keys on both phones: the contact may be marked verified.
    Match,
    /// The code is the contact's but a key differs: do not trust the conversation.
    Mismatch,
    /// The other phone uses another safety-number version: update both apps.
    DifferentVersion,
}

/// How far a peer's identity key is trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Trust {
    /// Accepted the first time it was seen.
    FirstUse,
    /// Marked verified after comparing safety numbers.
    Verified,
    /// Changed and accepted, not verified since.
    Changed,
}

/// A peer device's identity key and its trust level.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct Peer {
    /// The Ed25519 identity key.
    pub identity_key: Vec<u8>,
    /// How far it is trusted.
    pub trust: Trust,
}

/// A sealed attachment: the pointer (put it in a message) and the sealed bytes (upload them).
#[derive(Clone, PartialEq, Eq, uniffi::Record)]
pub struct SealedAttachment {
    /// The pointer's bytes; they hold the file's key.
    pub pointer: Vec<u8>,
    /// The sealed file.
    pub sealed: Vec<u8>,
}

/// Hand-written so that a log never shows the file key.
impl std::fmt::Debug for SealedAttachment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedAttachment")
            .field("sealed_len", &self.sealed.len())
            .finish_non_exhaustive()
    }
}

/// What an attachment pointer says about its file.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct AttachmentInfo {
    /// The MIME type the sender gave.
    pub content_type: String,
    /// The file name the sender gave.
    pub file_name: String,
    /// The file's length in bytes.
    pub plaintext_len: u64,
    /// Where the sealed file is (the app's bytes, e.g. a blob id).
    pub locator: Vec<u8>,
}

/// One installation of the app: an account and a session per peer device, in an SQLite
/// file. Every call commits what it changed before it returns; a failed call changes
/// nothing. One handle may be used from several threads (calls run one at a time).
#[derive(uniffi::Object)]
pub struct Device {
    inner: Mutex<DeviceHandle>,
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device").finish_non_exhaustive()
    }
}

fn sqlite(path: &str) -> std::result::Result<Box<SqliteStore>, Failure> {
    Ok(Box::new(SqliteStore::open(Path::new(path))?))
}

impl Device {
    fn with<T>(
        &self,
        call: impl FnOnce(&mut DeviceHandle) -> std::result::Result<T, Failure>,
    ) -> Result<T> {
        boundary(|| call(&mut *lock(&self.inner)?))
    }
}

#[uniffi::export]
impl Device {
    /// Creates a device for `user_id`/`device_id` in a new SQLite file at `path`, sealed
    /// under the 32-byte `storage_key`.
    #[uniffi::constructor]
    pub fn create(
        path: String,
        storage_key: Vec<u8>,
        user_id: String,
        device_id: u32,
    ) -> Result<Arc<Self>> {
        boundary(|| {
            let handle = DeviceHandle::create(
                sqlite(&path)?,
                &storage_key,
                &user_id,
                device_id,
                Timestamp::now(),
            )?;
            Ok(Arc::new(Self {
                inner: Mutex::new(handle),
            }))
        })
    }

    /// Opens the device in the SQLite file at `path` with its storage key.
    #[uniffi::constructor]
    pub fn open(path: String, storage_key: Vec<u8>) -> Result<Arc<Self>> {
        boundary(|| {
            let handle = DeviceHandle::open(sqlite(&path)?, &storage_key)?;
            Ok(Arc::new(Self {
                inner: Mutex::new(handle),
            }))
        })
    }

    /// This device's address.
    pub fn address(&self) -> Result<Address> {
        self.with(|h| Ok(Address::from(h.address())))
    }

    /// This device's identity key (public, 32 bytes).
    pub fn identity_key(&self) -> Result<Vec<u8>> {
        self.with(|h| Ok(h.identity_key().to_vec()))
    }

    /// The store generation this handle has seen; keep it outside the database to detect a
    /// rolled-back database with `check_generation`.
    pub fn generation(&self) -> Result<u64> {
        self.with(|h| Ok(h.generation()))
    }

    /// Fails with `ShowToPerson` if the database is older than generation `at_least`.
    pub fn check_generation(&self, at_least: u64) -> Result<()> {
        self.with(|h| h.check_generation(at_least))
    }

    /// The prekey upload the server needs given what it holds (`None`: nothing needed).
    pub fn prekey_upload(&self, server: PreKeyStatus) -> Result<Option<Vec<u8>>> {
        self.with(|h| h.prekey_upload(server.into(), Timestamp::now()))
    }

    /// Starts a session with a device from its prekey bundle (bytes from the server).
    pub fn process_bundle(&self, user_id: String, device_id: u32, bundle: Vec<u8>) -> Result<()> {
        self.with(|h| h.process_bundle(&user_id, device_id, &bundle))
    }

    /// Encrypts a message (a body and attachment pointers) for every device of `user_id`
    /// (`device_ids`) and this user's other devices (`own_device_ids`). Fails with
    /// `RepairSession` listing the devices that need a bundle first.
    pub fn send(
        &self,
        user_id: String,
        device_ids: Vec<u32>,
        own_device_ids: Vec<u32>,
        body: &[u8],
        attachments: Vec<Vec<u8>>,
    ) -> Result<SentMessages> {
        self.with(|h| {
            h.send(
                &user_id,
                &device_ids,
                &own_device_ids,
                body,
                &attachments,
                Timestamp::now(),
            )
            .map(SentMessages::from)
        })
    }

    /// Sets the conversation's disappearing-message timer (seconds, 0: off); returns the
    /// messages that tell every device.
    pub fn set_expiry_timer(
        &self,
        user_id: String,
        device_ids: Vec<u32>,
        own_device_ids: Vec<u32>,
        seconds: u32,
    ) -> Result<SentMessages> {
        self.with(|h| {
            h.set_expiry_timer(
                &user_id,
                &device_ids,
                &own_device_ids,
                seconds,
                Timestamp::now(),
            )
            .map(SentMessages::from)
        })
    }

    /// The conversation's timer with `user_id`, seconds (0: off).
    pub fn expiry_timer(&self, user_id: String) -> Result<u32> {
        self.with(|h| h.expiry_timer(&user_id))
    }

    /// Decrypts a message from `user_id`/`device_id`.
    pub fn receive(
        &self,
        user_id: String,
        device_id: u32,
        message: &[u8],
    ) -> Result<ReceivedMessage> {
        self.with(|h| {
            Ok(received(h.receive(
                &user_id,
                device_id,
                message,
                Timestamp::now(),
            )?))
        })
    }

    /// Creates a group of this device and the member devices `members` (this device is
    /// ignored if listed); returns its 32-byte id. Give the id and the list to the members
    /// through the app; each calls `set_group_members`.
    pub fn create_group(&self, members: Vec<Address>) -> Result<Vec<u8>> {
        self.with(|h| h.create_group(&self::members(&members)))
    }

    /// Sets the member devices of the group `group_id` (creating it on this device if
    /// needed). A device no longer listed cannot read what this device sends afterwards.
    pub fn set_group_members(&self, group_id: Vec<u8>, members: Vec<Address>) -> Result<()> {
        self.with(|h| h.set_group_members(&group_id, &self::members(&members)))
    }

    /// The other member devices of the group.
    pub fn group_members(&self, group_id: Vec<u8>) -> Result<Vec<Address>> {
        self.with(|h| {
            Ok(h.group_members(&group_id)?
                .iter()
                .map(Address::from)
                .collect())
        })
    }

    /// Encrypts a body and attachment pointers once for the whole group. Fails with
    /// `RepairSession` naming the members that need this device's sender key but have no
    /// session with it.
    pub fn send_group(
        &self,
        group_id: Vec<u8>,
        body: &[u8],
        attachments: Vec<Vec<u8>>,
    ) -> Result<GroupSent> {
        self.with(|h| {
            h.send_group(&group_id, body, &attachments, Timestamp::now())
                .map(GroupSent::from)
        })
    }

    /// Sets the group's disappearing-message timer (seconds, 0: off); returns the group
    /// message announcing it.
    pub fn set_group_timer(&self, group_id: Vec<u8>, seconds: u32) -> Result<GroupSent> {
        self.with(|h| {
            h.set_group_timer(&group_id, seconds, Timestamp::now())
                .map(GroupSent::from)
        })
    }

    /// The group's disappearing-message timer, seconds (0: off).
    pub fn group_timer(&self, group_id: Vec<u8>) -> Result<u32> {
        self.with(|h| h.group_timer(&group_id))
    }

    /// Decrypts a group message from the member device `user_id`/`device_id`. Before the
    /// sender's key arrived (a pairwise message for `receive`) it fails with `RetryLater`.
    pub fn receive_group(
        &self,
        user_id: String,
        device_id: u32,
        message: &[u8],
    ) -> Result<ReceivedMessage> {
        self.with(|h| {
            Ok(received(h.receive_group(
                &user_id,
                device_id,
                message,
                Timestamp::now(),
            )?))
        })
    }

    /// Backs up the whole device under the recovery key written as `recovery_key_code`
    /// (from `generate_recovery_key`). Keep the backup where the person keeps files, and
    /// the code apart (on paper).
    pub fn backup(&self, recovery_key_code: String) -> Result<Vec<u8>> {
        let code = Zeroizing::new(recovery_key_code);
        self.with(|h| h.backup(&code, Timestamp::now()))
    }

    /// Backs up the whole device under a passphrase (a weak one is refused with
    /// `ShowToPerson`). Prefer a recovery key.
    pub fn backup_with_passphrase(&self, passphrase: String) -> Result<Vec<u8>> {
        let passphrase = Zeroizing::new(passphrase);
        self.with(|h| h.backup_with_passphrase(&passphrase, Timestamp::now()))
    }

    /// The devices this device has a session with.
    pub fn sessions(&self) -> Result<Vec<Address>> {
        self.with(|h| Ok(h.sessions()?.iter().map(Address::from).collect()))
    }

    /// The safety number with a peer device, from the app's stable identifiers of the two
    /// people (`local_id` is this user's).
    pub fn safety_number(
        &self,
        user_id: String,
        device_id: u32,
        local_id: Vec<u8>,
        remote_id: Vec<u8>,
    ) -> Result<SafetyNumber> {
        self.with(|h| {
            let n = h.safety_number(&user_id, device_id, &local_id, &remote_id)?;
            Ok(SafetyNumber {
                display: n.display,
                scannable: n.scannable,
            })
        })
    }

    /// Compares a code scanned from the peer's screen with this device's safety number.
    pub fn compare_scanned(
        &self,
        user_id: String,
        device_id: u32,
        local_id: Vec<u8>,
        remote_id: Vec<u8>,
        scanned: Vec<u8>,
    ) -> Result<ScanResult> {
        self.with(|h| {
            Ok(
                match h.compare_scanned(&user_id, device_id, &local_id, &remote_id, &scanned)? {
                    common::Scan::Match => ScanResult::Match,
                    common::Scan::Mismatch => ScanResult::Mismatch,
                    common::Scan::DifferentVersion => ScanResult::DifferentVersion,
                },
            )
        })
    }

    /// A peer device's identity key and trust level (`None`: no session with it).
    pub fn peer(&self, user_id: String, device_id: u32) -> Result<Option<Peer>> {
        self.with(|h| {
            Ok(h.peer(&user_id, device_id)?.map(|p| Peer {
                identity_key: p.identity_key.to_vec(),
                trust: match p.trust {
                    common::TrustLevel::FirstUse => Trust::FirstUse,
                    common::TrustLevel::Verified => Trust::Verified,
                    common::TrustLevel::Changed => Trust::Changed,
                },
            }))
        })
    }

    /// Marks a peer device's identity key verified (after the safety numbers matched).
    pub fn mark_verified(
        &self,
        user_id: String,
        device_id: u32,
        identity_key: Vec<u8>,
    ) -> Result<()> {
        self.with(|h| h.mark_verified(&user_id, device_id, &identity_key))
    }

    /// Accepts the changed identity key a `ShowToPerson` error reported for this device; the
    /// same message or bundle can then be used again.
    pub fn accept_identity_change(
        &self,
        user_id: String,
        device_id: u32,
        new_identity_key: Vec<u8>,
    ) -> Result<()> {
        self.with(|h| h.accept_identity_change(&user_id, device_id, &new_identity_key))
    }
}

/// Restores a backup made by `Device.backup` into a new SQLite file at `path`, sealed under
/// the 32-byte `storage_key` (a new one), with the recovery key `recovery_key_code` as
/// the person typed it (case, spaces and dashes do not matter). A mistyped or wrong code
/// or a damaged backup is `ShowToPerson`; nothing is restored then. Send the result's
/// `prekey_upload` to the server at once.
#[uniffi::export]
pub fn restore_device(
    path: String,
    storage_key: Vec<u8>,
    backup: Vec<u8>,
    recovery_key_code: String,
) -> Result<RestoredDevice> {
    boundary(|| {
        let code = Zeroizing::new(recovery_key_code);
        let r = DeviceHandle::restore(
            sqlite(&path)?,
            &storage_key,
            &backup,
            &code,
            Timestamp::now(),
        )?;
        Ok(r.into())
    })
}

/// `restore_device` for a backup made by `Device.backup_with_passphrase`.
#[uniffi::export]
pub fn restore_device_with_passphrase(
    path: String,
    storage_key: Vec<u8>,
    backup: Vec<u8>,
    passphrase: String,
) -> Result<RestoredDevice> {
    boundary(|| {
        let passphrase = Zeroizing::new(passphrase);
        let r = DeviceHandle::restore_with_passphrase(
            sqlite(&path)?,
            &storage_key,
            &backup,
            &passphrase,
            Timestamp::now(),
        )?;
        Ok(r.into())
    })
}

/// A fresh recovery key, as the code for the person to write down (13 groups of 5
/// characters joined by `-`). The code is the key: keep it out of logs.
#[uniffi::export]
pub fn generate_recovery_key() -> String {
    common::generate_recovery_key().to_string()
}

/// Seals `data` as an attachment (the whole file in memory).
#[uniffi::export]
pub fn seal_attachment(
    data: &[u8],
    content_type: String,
    file_name: String,
) -> Result<SealedAttachment> {
    boundary(|| {
        let s = common::seal_attachment(data, &content_type, &file_name)?;
        Ok(SealedAttachment {
            pointer: s.pointer.to_vec(),
            sealed: s.sealed,
        })
    })
}

/// Opens a sealed attachment; fails unless every byte verifies against the pointer.
#[uniffi::export]
pub fn open_attachment(pointer: Vec<u8>, sealed: &[u8]) -> Result<Vec<u8>> {
    boundary(|| Ok(common::open_attachment(&pointer, sealed)?.to_vec()))
}

/// Seals the file at `input` into a new file at `output`, streaming; returns the pointer.
#[uniffi::export]
pub fn seal_attachment_file(
    input: String,
    output: String,
    content_type: String,
    file_name: String,
) -> Result<Vec<u8>> {
    boundary(|| {
        Ok(common::seal_attachment_file(
            Path::new(&input),
            Path::new(&output),
            &content_type,
            &file_name,
        )?
        .to_vec())
    })
}

/// Opens the sealed file at `input` into a new file at `output`, streaming; returns the
/// length. On failure no output file is left.
#[uniffi::export]
pub fn open_attachment_file(pointer: Vec<u8>, input: String, output: String) -> Result<u64> {
    boundary(|| common::open_attachment_file(&pointer, Path::new(&input), Path::new(&output)))
}

/// What an attachment pointer says about its file.
#[uniffi::export]
pub fn attachment_info(pointer: Vec<u8>) -> Result<AttachmentInfo> {
    boundary(|| {
        let i = common::attachment_info(&pointer)?;
        Ok(AttachmentInfo {
            content_type: i.content_type,
            file_name: i.file_name,
            plaintext_len: i.plaintext_len,
            locator: i.locator,
        })
    })
}

/// The pointer with its locator (where the sealed file was uploaded) set.
#[uniffi::export]
pub fn set_attachment_locator(pointer: Vec<u8>, locator: Vec<u8>) -> Result<Vec<u8>> {
    boundary(|| Ok(common::set_attachment_locator(&pointer, &locator)?.to_vec()))
}

/// A server's job, for tests and demos: the bundle assembled from a device's first prekey
/// upload with its `index`-th one-time prekeys.
#[uniffi::export]
pub fn bundle_from_upload(upload: Vec<u8>, index: u32) -> Result<Vec<u8>> {
    boundary(|| common::bundle_from_upload(&upload, index))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panic_becomes_internal_and_poisons_only_that_handle() {
        let dir = std::env::temp_dir().join(format!("rb-uniffi-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.sqlite").to_string_lossy().into_owned();
        let device = Device::create(path, vec![7; 32], "alice".into(), 1).unwrap();
        let err = device
            .with(|_| -> std::result::Result<(), Failure> { panic!("test panic") })
            .unwrap_err();
        assert!(matches!(err, RatchetboxError::Internal { .. }), "{err:?}");
        // The mutex is poisoned: every later call on this handle is Internal, not a panic.
        let err = device.address().unwrap_err();
        assert!(matches!(err, RatchetboxError::Internal { .. }), "{err:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn failures_map_to_their_variant() {
        let f = Failure::caller_bug("x");
        assert!(
            matches!(RatchetboxError::from(f), RatchetboxError::CallerBug { message } if message == "x")
        );
        let err = seal_attachment(&[1], "text/plain".into(), "a\u{202e}b".into()).unwrap_err();
        assert!(matches!(err, RatchetboxError::CallerBug { .. }), "{err:?}");
    }
}
