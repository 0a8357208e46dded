//! What the UniFFI (`bindings/uniffi`) and wasm-bindgen (`bindings/wasm`) bindings share:
//! ratchetbox's high-level layer ([`Device`]) as plain data (strings, integers, byte
//! arrays), and every failure as one [`Failure`] with its classification ([`Kind`]).
//!
//! Each binding holds a [`DeviceHandle`] behind a mutex, runs every call through [`guard`]
//! (a panic becomes [`Kind::Internal`] instead of crossing into the foreign language) and
//! [`lock`] (a poisoned mutex becomes [`Kind::Internal`]), and turns [`Failure`] into its
//! language's exception. A new capability of the high-level layer is added here once, then
//! annotated in each binding; groups (sender keys, docs/PROTOCOL.md 16) and backups under a
//! recovery key or a passphrase (docs/PROTOCOL.md 17) are here too.
#![forbid(unsafe_code)]

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

pub use ratchetbox;
use ratchetbox::attachment::{self, AttachmentMetadata};
use ratchetbox::backup::{RecoveryKey, RecoveryKeyError};
use ratchetbox::group::{GROUP_ID_LEN, GroupId};
use ratchetbox::{
    Action, Address, AttachmentPointer, Content, DecryptError, Device, IdentityChange, IdentityKey,
    KemPreKeyId, OneTimePreKeyId, OsRng, PreKeyBundle, PreKeyUpload, ScanResult,
    ServerPreKeyStatus, SetupError, SignedPreKeyId, StorageKey, Store, Timestamp, Trust,
};
/// Re-exported so that each binding wipes the secrets it receives as strings (a recovery key
/// code, a passphrase) with the same crate.
pub use zeroize::Zeroizing;

/// What the app should do about a failure: ratchetbox's [`Action`], plus [`Kind::Internal`]
/// for a bug inside the library (a panic, caught at the boundary).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A duplicate or too old message: nothing to do, nothing to show.
    Ignore,
    /// Not authentic, a replay or a downgrade (or bytes from outside that do not decode):
    /// drop it silently.
    DropForged,
    /// Show it to the person: a contact's identity key changed, or local storage is
    /// unusable (wrong storage key, corrupt or rolled-back database).
    ShowToPerson,
    /// Fetch fresh bundles for the addresses concerned, process them, and retry (or ask the
    /// sender to resend).
    RepairSession,
    /// Storage was busy or failed: try the same call again later.
    RetryLater,
    /// The app called the library wrongly: fix the app.
    CallerBug,
    /// A bug inside ratchetbox (a panic, caught at the boundary), or a device handle left
    /// unusable by one: nothing stored changed; open the device again.
    Internal,
}

impl Kind {
    /// The stable name the bindings give this kind (`"RepairSession"`...).
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ignore => "Ignore",
            Kind::DropForged => "DropForged",
            Kind::ShowToPerson => "ShowToPerson",
            Kind::RepairSession => "RepairSession",
            Kind::RetryLater => "RetryLater",
            Kind::CallerBug => "CallerBug",
            Kind::Internal => "Internal",
        }
    }
}

impl From<Action> for Kind {
    fn from(action: Action) -> Self {
        match action {
            Action::Ignore => Kind::Ignore,
            Action::DropForged => Kind::DropForged,
            Action::ShowToPerson => Kind::ShowToPerson,
            Action::RepairSession => Kind::RepairSession,
            Action::RetryLater => Kind::RetryLater,
            Action::CallerBug => Kind::CallerBug,
            // A classification added to the library after this binding: the binding needs
            // updating, which is a bug of the library's release, not of the app.
            _ => Kind::Internal,
        }
    }
}

/// A failed call, as every binding reports it. The message is ratchetbox's error message
/// (addresses, counters, lengths; never a key or a plaintext).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What to do about it.
    pub kind: Kind,
    /// What happened, for a log or a person.
    pub message: String,
    /// The devices concerned: those without a session for [`Kind::RepairSession`] after a
    /// send, the sender or recipient otherwise; empty when no device is concerned.
    pub addresses: Vec<Address>,
    /// For a changed identity key ([`Kind::ShowToPerson`]): the new key, which
    /// [`DeviceHandle::accept_identity_change`] takes once the person accepted it.
    pub new_identity_key: Option<[u8; 32]>,
}

impl Failure {
    /// A failure of the app's own making, with `message`.
    pub fn caller_bug(message: impl Into<String>) -> Self {
        Self::of(Kind::CallerBug, message.into())
    }

    /// A bug inside the library, with `message`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::of(Kind::Internal, message.into())
    }

    fn of(kind: Kind, message: String) -> Self {
        Self {
            kind,
            message,
            addresses: Vec::new(),
            new_identity_key: None,
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<ratchetbox::Error> for Failure {
    fn from(e: ratchetbox::Error) -> Self {
        let mut failure = Self::of(e.action().into(), e.to_string());
        failure.addresses = match &e {
            ratchetbox::Error::MissingSessions { addresses } => addresses.clone(),
            ratchetbox::Error::Decrypt { from, .. } => vec![from.clone()],
            ratchetbox::Error::Encrypt { to, .. } => vec![to.clone()],
            ratchetbox::Error::Setup { with, .. } => vec![with.clone()],
            ratchetbox::Error::NoSession(address) => vec![address.clone()],
            _ => Vec::new(),
        };
        failure.new_identity_key = identity_change(&e).map(|c| c.new_key().to_bytes());
        failure
    }
}

macro_rules! through_device_error {
    ($($t:ty),*) => {$(
        impl From<$t> for Failure {
            fn from(e: $t) -> Self {
                ratchetbox::Error::from(e).into()
            }
        }
    )*};
}
through_device_error!(
    ratchetbox::AttachmentError,
    ratchetbox::DecodeError,
    ratchetbox::AddressError,
    ratchetbox::FingerprintError,
    ratchetbox::StoreError
);

/// The identity change an error reports, if any.
fn identity_change(e: &ratchetbox::Error) -> Option<&IdentityChange> {
    match e {
        ratchetbox::Error::Decrypt {
            source: DecryptError::IdentityChanged(change),
            ..
        }
        | ratchetbox::Error::Setup {
            source: SetupError::IdentityChanged(change),
            ..
        } => Some(change),
        _ => None,
    }
}

/// Runs `call`, turning a panic into a [`Kind::Internal`] failure so that it never unwinds
/// into foreign code. (Where panics abort, as on `wasm32-unknown-unknown`, there is nothing to
/// catch: the module traps.)
pub fn guard<T>(call: impl FnOnce() -> Result<T, Failure>) -> Result<T, Failure> {
    catch_unwind(AssertUnwindSafe(call)).unwrap_or_else(|_| {
        Err(Failure::internal(
            "ratchetbox failed internally (a bug, please report it); nothing stored changed: open the device again",
        ))
    })
}

/// Locks `mutex`. A mutex poisoned by a panic in an earlier call is reported as
/// [`Kind::Internal`] (the store holds the state before that call; open the device again).
pub fn lock<T>(mutex: &Mutex<T>) -> Result<MutexGuard<'_, T>, Failure> {
    mutex.lock().map_err(|_| {
        Failure::internal(
            "this device handle is unusable after an internal failure in an earlier call; open the device again",
        )
    })
}

/// What a device reported about the prekeys the server holds for it: plain numbers for
/// [`ServerPreKeyStatus`] (ids are the ones from the device's uploads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
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

impl From<PreKeyStatus> for ServerPreKeyStatus {
    fn from(s: PreKeyStatus) -> Self {
        ServerPreKeyStatus {
            signed_prekey_id: s.signed_prekey_id.map(SignedPreKeyId),
            last_resort_kem_prekey_id: s.last_resort_kem_prekey_id.map(KemPreKeyId),
            one_time_prekeys: s.one_time_prekeys,
            newest_one_time_prekey_id: s.newest_one_time_prekey_id.map(OneTimePreKeyId),
            one_time_kem_prekeys: s.one_time_kem_prekeys,
            newest_one_time_kem_prekey_id: s.newest_one_time_kem_prekey_id.map(KemPreKeyId),
        }
    }
}

/// What a send produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SentMessages {
    /// One `(recipient, message bytes)` per device, the peer's first, then this user's
    /// other devices.
    pub messages: Vec<(Address, Vec<u8>)>,
    /// The send time, Unix seconds.
    pub sent_at: u64,
    /// When this device's copy expires under the conversation's timer, Unix seconds.
    pub expires_at: Option<u64>,
}

impl From<ratchetbox::Sent> for SentMessages {
    fn from(sent: ratchetbox::Sent) -> Self {
        Self {
            messages: sent
                .messages
                .into_iter()
                .map(|out| (out.to, out.message))
                .collect(),
            sent_at: sent.sent_at.as_unix_secs(),
            expires_at: sent.expires_at.map(Timestamp::as_unix_secs),
        }
    }
}

/// A decrypted message. The buffers wipe themselves when dropped (the foreign copy is the
/// foreign runtime's to manage).
#[derive(Debug)]
pub struct Received {
    /// The body.
    pub body: Zeroizing<Vec<u8>>,
    /// The attachment pointers' bytes (each holds its file's key).
    pub attachments: Vec<Zeroizing<Vec<u8>>>,
    /// When the sender sent it, Unix seconds (the sender's clock).
    pub sent_at: u64,
    /// When it was received, Unix seconds.
    pub received_at: u64,
    /// The conversation's disappearing-message timer it carries, seconds (0: off).
    pub timer_seconds: u32,
    /// Whether it changed this device's timer setting for the conversation.
    pub timer_changed: bool,
    /// When it disappears if read now, Unix seconds.
    pub expires_at: Option<u64>,
}

impl Received {
    fn new(received: &ratchetbox::ReceivedMessage, now: Timestamp) -> Self {
        let content = received.content();
        Received {
            body: Zeroizing::new(content.body().to_vec()),
            attachments: content.attachments().iter().map(|p| p.to_bytes()).collect(),
            sent_at: received.sent_at().as_unix_secs(),
            received_at: received.received_at().as_unix_secs(),
            timer_seconds: received.timer().seconds(),
            timer_changed: !matches!(received.timer_change(), ratchetbox::TimerChange::Unchanged),
            expires_at: received.expires_at(now).map(Timestamp::as_unix_secs),
        }
    }
}

/// What a group send produced: one group message for every member device, and the pairwise
/// messages that carry this device's sender key to the members that lack it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupSentMessages {
    /// The group message: deliver the same bytes to every member device.
    pub message: Vec<u8>,
    /// One `(member, pairwise message bytes)` per member that needs this device's sender
    /// key; deliver each before (or with) the group message, to be given to `receive`.
    pub distributions: Vec<(Address, Vec<u8>)>,
    /// The send time, Unix seconds.
    pub sent_at: u64,
    /// When this device's copy expires under the group's timer, Unix seconds.
    pub expires_at: Option<u64>,
}

impl From<ratchetbox::GroupSent> for GroupSentMessages {
    fn from(sent: ratchetbox::GroupSent) -> Self {
        Self {
            message: sent.message,
            distributions: sent
                .distributions
                .into_iter()
                .map(|out| (out.to, out.message))
                .collect(),
            sent_at: sent.sent_at.as_unix_secs(),
            expires_at: sent.expires_at.map(Timestamp::as_unix_secs),
        }
    }
}

/// A device restored from a backup, and what to do next.
#[derive(Debug)]
pub struct RestoredHandle {
    /// The restored device. Its first send to each peer needs a new session (a
    /// [`Kind::RepairSession`] names the devices to fetch a bundle for).
    pub handle: DeviceHandle,
    /// The prekey upload to send to the server now.
    pub prekey_upload: Vec<u8>,
    /// When the backup was made, Unix seconds.
    pub backup_created_at: u64,
    /// The store generation when the backup was made.
    pub backup_generation: u64,
}

/// Generates a fresh recovery key and returns its code (13 groups of 5 characters joined by
/// `-`) for the person to write down. The string is the key: keep it out of logs.
pub fn generate_recovery_key() -> Zeroizing<String> {
    RecoveryKey::generate(&mut OsRng::new()).to_code()
}

fn recovery_key(code: &str) -> Result<RecoveryKey, Failure> {
    RecoveryKey::from_code(code).map_err(|e: RecoveryKeyError| {
        Failure::of(
            Kind::ShowToPerson,
            format!("the recovery key is not valid: {e}"),
        )
    })
}

fn group_id(bytes: &[u8]) -> Result<GroupId, Failure> {
    let id: [u8; GROUP_ID_LEN] = bytes.try_into().map_err(|_| {
        Failure::caller_bug(format!(
            "a group id is {GROUP_ID_LEN} bytes, got {}",
            bytes.len()
        ))
    })?;
    Ok(GroupId::from_bytes(id))
}

fn addresses(members: &[(String, u32)]) -> Result<Vec<Address>, Failure> {
    members
        .iter()
        .map(|(user, device)| Ok(Address::new(user, *device)?))
        .collect()
}

fn content(body: &[u8], attachments: &[Vec<u8>]) -> Result<Content, Failure> {
    let mut content = Content::new(body);
    for pointer in attachments {
        let pointer = AttachmentPointer::from_bytes(pointer)?;
        content
            .add_attachment(pointer)
            .map_err(|e| Failure::caller_bug(format!("the attachment cannot be added: {e}")))?;
    }
    Ok(content)
}

/// A safety number to show and its scannable code.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SafetyNumberData {
    /// 60 digits in 12 groups of 5, separated by spaces.
    pub display: String,
    /// The bytes to show as a QR code.
    pub scannable: Vec<u8>,
}

/// The outcome of comparing a scanned code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scan {
    /// Same keys on both phones: the contact may be marked verified.
    Match,
    /// The code is the contact's but a key differs: do not trust the conversation.
    Mismatch,
    /// The other phone uses another safety-number version.
    DifferentVersion,
}

/// How far the device trusts a peer's identity key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrustLevel {
    /// Accepted the first time it was seen.
    FirstUse,
    /// Marked verified.
    Verified,
    /// Changed and accepted, not verified since.
    Changed,
}

/// A peer's identity key and its trust level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PeerInfo {
    /// The Ed25519 identity key.
    pub identity_key: [u8; 32],
    /// How far it is trusted.
    pub trust: TrustLevel,
}

/// What an attachment pointer says about its file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttachmentInfo {
    /// The MIME type the sender gave.
    pub content_type: String,
    /// The file name the sender gave.
    pub file_name: String,
    /// The file's length in bytes.
    pub plaintext_len: u64,
    /// Where the sealed file is (the app's own bytes, e.g. a blob id).
    pub locator: Vec<u8>,
}

/// One local device with its store and an OS random number generator: the state every
/// binding object wraps.
pub struct DeviceHandle {
    device: Device,
    rng: OsRng,
    /// Identity changes reported by failed calls, until accepted: what
    /// [`accept_identity_change`](Self::accept_identity_change) applies. In memory only:
    /// after a restart, the message or bundle that reported the change reports it again.
    changes: Vec<(Address, IdentityChange)>,
}

impl std::fmt::Debug for DeviceHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceHandle")
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

fn storage_key(bytes: &[u8]) -> Result<StorageKey, Failure> {
    let key: [u8; 32] = bytes.try_into().map_err(|_| {
        Failure::caller_bug(format!(
            "the storage key must be 32 bytes, got {}",
            bytes.len()
        ))
    })?;
    let key = Zeroizing::new(key);
    Ok(StorageKey::from_bytes(*key))
}

fn identity_key(bytes: &[u8]) -> Result<IdentityKey, Failure> {
    let key: [u8; 32] = bytes.try_into().map_err(|_| {
        Failure::caller_bug(format!("an identity key is 32 bytes, got {}", bytes.len()))
    })?;
    IdentityKey::from_bytes(&key)
        .ok_or_else(|| Failure::caller_bug("the bytes are not a valid Ed25519 identity key"))
}

impl DeviceHandle {
    /// Creates a device for `user_id`/`device_id` in an empty `store`, its state sealed
    /// under the 32-byte `storage_key`.
    pub fn create(
        store: Box<dyn Store>,
        key: &[u8],
        user_id: &str,
        device_id: u32,
        now: Timestamp,
    ) -> Result<Self, Failure> {
        let key = storage_key(key)?;
        let address = Address::new(user_id, device_id)?;
        let mut rng = OsRng::new();
        let device = Device::create(store, key, address, &mut rng, now)?;
        Ok(Self {
            device,
            rng,
            changes: Vec::new(),
        })
    }

    /// Opens the device a store holds.
    pub fn open(store: Box<dyn Store>, key: &[u8]) -> Result<Self, Failure> {
        let device = Device::open(store, storage_key(key)?)?;
        Ok(Self {
            device,
            rng: OsRng::new(),
            changes: Vec::new(),
        })
    }

    /// This device's address.
    pub fn address(&self) -> &Address {
        self.device.address()
    }

    /// This device's identity key (public).
    pub fn identity_key(&self) -> [u8; 32] {
        self.device.identity_key().to_bytes()
    }

    /// The store generation this handle has seen (keep it outside the store to detect a
    /// rolled-back store with [`check_generation`](Self::check_generation)).
    pub fn generation(&self) -> u64 {
        self.device.generation()
    }

    /// Fails with [`Kind::ShowToPerson`] if the store is older than `at_least`.
    pub fn check_generation(&mut self, at_least: u64) -> Result<(), Failure> {
        Ok(self.device.check_generation(at_least)?)
    }

    /// The prekey upload the server needs, given what it holds; `None` if it needs nothing.
    pub fn prekey_upload(
        &mut self,
        status: PreKeyStatus,
        now: Timestamp,
    ) -> Result<Option<Vec<u8>>, Failure> {
        Ok(self
            .device
            .prekey_maintenance(&mut self.rng, now, status.into())?)
    }

    /// Starts a session with a device from its prekey bundle (bytes from the server).
    pub fn process_bundle(
        &mut self,
        user_id: &str,
        device_id: u32,
        bundle: &[u8],
    ) -> Result<(), Failure> {
        let address = Address::new(user_id, device_id)?;
        let result = self.device.process_bundle(&mut self.rng, &address, bundle);
        self.note(&address, result)
    }

    /// Encrypts `body` and `attachments` (pointer bytes) for every device of `user_id`
    /// (`device_ids`) and this user's other devices (`own_device_ids`).
    pub fn send(
        &mut self,
        user_id: &str,
        device_ids: &[u32],
        own_device_ids: &[u32],
        body: &[u8],
        attachments: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<SentMessages, Failure> {
        let content = content(body, attachments)?;
        let sent = self.device.send(
            &mut self.rng,
            user_id,
            device_ids,
            own_device_ids,
            &content,
            now,
        )?;
        Ok(sent.into())
    }

    /// Sets the conversation's disappearing-message timer (0 turns it off) and returns the
    /// messages that tell every device.
    pub fn set_expiry_timer(
        &mut self,
        user_id: &str,
        device_ids: &[u32],
        own_device_ids: &[u32],
        seconds: u32,
        now: Timestamp,
    ) -> Result<SentMessages, Failure> {
        let sent = self.device.set_expiry_timer(
            &mut self.rng,
            user_id,
            device_ids,
            own_device_ids,
            seconds,
            now,
        )?;
        Ok(sent.into())
    }

    /// The conversation's timer with `user_id`, in seconds (0: off).
    pub fn expiry_timer(&mut self, user_id: &str) -> Result<u32, Failure> {
        Ok(self.device.expiry_timer(user_id)?.seconds())
    }

    /// Decrypts a message from `user_id`/`device_id`.
    pub fn receive(
        &mut self,
        user_id: &str,
        device_id: u32,
        message: &[u8],
        now: Timestamp,
    ) -> Result<Received, Failure> {
        let from = Address::new(user_id, device_id)?;
        let result = self.device.receive(&mut self.rng, &from, message, now);
        let received = self.note(&from, result)?;
        Ok(Received::new(&received, now))
    }

    /// Creates a group of this device and the member devices `members` (`(user id, device
    /// id)`; this device is ignored if listed) and returns its 32-byte id. Give the id and the
    /// member list to the members through the app; each calls
    /// [`set_group_members`](Self::set_group_members).
    pub fn create_group(&mut self, members: &[(String, u32)]) -> Result<Vec<u8>, Failure> {
        let members = addresses(members)?;
        let group = self.device.create_group(&mut self.rng, &members)?;
        Ok(group.as_bytes().to_vec())
    }

    /// Sets the other member devices of the group `group` (creating it on this device if it
    /// does not know it). A device no longer listed cannot read what this device sends after
    /// this call.
    pub fn set_group_members(
        &mut self,
        group: &[u8],
        members: &[(String, u32)],
    ) -> Result<(), Failure> {
        let group = group_id(group)?;
        let members = addresses(members)?;
        Ok(self
            .device
            .set_group_members(&mut self.rng, &group, &members)?)
    }

    /// The other member devices of the group.
    pub fn group_members(&mut self, group: &[u8]) -> Result<Vec<Address>, Failure> {
        Ok(self.device.group_members(&group_id(group)?)?)
    }

    /// Encrypts `body` and `attachments` (pointer bytes) once for the whole group. Fails with
    /// [`Kind::RepairSession`] naming the members that need this device's sender key but have
    /// no session with it (nothing is encrypted then).
    pub fn send_group(
        &mut self,
        group: &[u8],
        body: &[u8],
        attachments: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<GroupSentMessages, Failure> {
        let group = group_id(group)?;
        let content = content(body, attachments)?;
        let sent = self
            .device
            .send_group(&mut self.rng, &group, &content, now)?;
        Ok(sent.into())
    }

    /// Sets the group's disappearing-message timer (0 turns it off) and returns the group
    /// message announcing it.
    pub fn set_group_timer(
        &mut self,
        group: &[u8],
        seconds: u32,
        now: Timestamp,
    ) -> Result<GroupSentMessages, Failure> {
        let group = group_id(group)?;
        let sent = self
            .device
            .set_group_timer(&mut self.rng, &group, seconds, now)?;
        Ok(sent.into())
    }

    /// The group's disappearing-message timer in seconds (0: off).
    pub fn group_timer(&mut self, group: &[u8]) -> Result<u32, Failure> {
        Ok(self.device.group_timer(&group_id(group)?)?.seconds())
    }

    /// Decrypts a group message from the member device `user_id`/`device_id`. A message
    /// whose sender key has not arrived yet (in a pairwise message, given to
    /// [`receive`](Self::receive)) fails with [`Kind::RetryLater`].
    pub fn receive_group(
        &mut self,
        user_id: &str,
        device_id: u32,
        message: &[u8],
        now: Timestamp,
    ) -> Result<Received, Failure> {
        let from = Address::new(user_id, device_id)?;
        let received = self
            .device
            .receive_group(&mut self.rng, &from, message, now)?;
        Ok(Received::new(&received, now))
    }

    /// Backs up the whole device under the recovery key written as `code` (from
    /// [`generate_recovery_key`]). Reads only.
    pub fn backup(&mut self, code: &str, now: Timestamp) -> Result<Vec<u8>, Failure> {
        let key = recovery_key(code)?;
        Ok(self.device.backup(&mut self.rng, &key, now)?)
    }

    /// Backs up the whole device under a passphrase (Argon2id; a weak passphrase is refused
    /// with [`Kind::ShowToPerson`]). Prefer a recovery key.
    pub fn backup_with_passphrase(
        &mut self,
        passphrase: &str,
        now: Timestamp,
    ) -> Result<Vec<u8>, Failure> {
        Ok(self
            .device
            .backup_with_passphrase(&mut self.rng, passphrase, now)?)
    }

    /// Restores a backup made under the recovery key written as `code` into the empty
    /// `store`, sealed under the 32-byte `key` (a new one). A wrong or mistyped code, or a
    /// damaged backup, is [`Kind::ShowToPerson`]; nothing is written then.
    pub fn restore(
        store: Box<dyn Store>,
        key: &[u8],
        backup: &[u8],
        code: &str,
        now: Timestamp,
    ) -> Result<RestoredHandle, Failure> {
        let storage_key = storage_key(key)?;
        let recovery_key = recovery_key(code)?;
        let mut rng = OsRng::new();
        let restored = Device::restore(store, storage_key, backup, &recovery_key, &mut rng, now)?;
        Ok(RestoredHandle::new(restored, rng))
    }

    /// [`restore`](Self::restore) for a backup made under a passphrase.
    pub fn restore_with_passphrase(
        store: Box<dyn Store>,
        key: &[u8],
        backup: &[u8],
        passphrase: &str,
        now: Timestamp,
    ) -> Result<RestoredHandle, Failure> {
        let storage_key = storage_key(key)?;
        let mut rng = OsRng::new();
        let restored =
            Device::restore_with_passphrase(store, storage_key, backup, passphrase, &mut rng, now)?;
        Ok(RestoredHandle::new(restored, rng))
    }

    /// Keeps the identity change a failed call reports, for `accept_identity_change`.
    fn note<T>(
        &mut self,
        address: &Address,
        result: Result<T, ratchetbox::Error>,
    ) -> Result<T, Failure> {
        result.map_err(|e| {
            if let Some(change) = identity_change(&e) {
                self.changes.retain(|(a, _)| a != address);
                self.changes.push((address.clone(), change.clone()));
            }
            e.into()
        })
    }

    /// The addresses this device has a session with.
    pub fn sessions(&mut self) -> Result<Vec<Address>, Failure> {
        Ok(self.device.sessions()?)
    }

    /// The safety number with a peer device, from the app's stable identifiers of the two
    /// people (e.g. phone numbers or account ids).
    pub fn safety_number(
        &mut self,
        user_id: &str,
        device_id: u32,
        local_id: &[u8],
        remote_id: &[u8],
    ) -> Result<SafetyNumberData, Failure> {
        let number =
            self.device
                .safety_number(&Address::new(user_id, device_id)?, local_id, remote_id)?;
        Ok(SafetyNumberData {
            display: number.display(),
            scannable: number.scannable(),
        })
    }

    /// Compares a code scanned from the peer's screen with this device's safety number.
    pub fn compare_scanned(
        &mut self,
        user_id: &str,
        device_id: u32,
        local_id: &[u8],
        remote_id: &[u8],
        scanned: &[u8],
    ) -> Result<Scan, Failure> {
        let number =
            self.device
                .safety_number(&Address::new(user_id, device_id)?, local_id, remote_id)?;
        Ok(match number.compare_scanned(scanned)? {
            ScanResult::Match => Scan::Match,
            ScanResult::DifferentVersion { .. } => Scan::DifferentVersion,
            _ => Scan::Mismatch,
        })
    }

    /// A peer device's identity key and trust level, if there is a session with it.
    pub fn peer(&mut self, user_id: &str, device_id: u32) -> Result<Option<PeerInfo>, Failure> {
        let peer = self.device.peer(&Address::new(user_id, device_id)?)?;
        Ok(peer.map(|p| PeerInfo {
            identity_key: p.key().to_bytes(),
            trust: match p.trust() {
                Trust::FirstUse => TrustLevel::FirstUse,
                Trust::Verified => TrustLevel::Verified,
                _ => TrustLevel::Changed,
            },
        }))
    }

    /// Marks a peer's identity key verified (after the safety numbers matched).
    pub fn mark_verified(
        &mut self,
        user_id: &str,
        device_id: u32,
        key: &[u8],
    ) -> Result<(), Failure> {
        let address = Address::new(user_id, device_id)?;
        let key = identity_key(key)?;
        Ok(self.device.mark_verified(&mut self.rng, &address, &key)?)
    }

    /// Accepts the identity change a failed call reported for this device (its
    /// `new_identity_key`); the same message or bundle can then be used again.
    pub fn accept_identity_change(
        &mut self,
        user_id: &str,
        device_id: u32,
        new_key: &[u8],
    ) -> Result<(), Failure> {
        let address = Address::new(user_id, device_id)?;
        let new_key = identity_key(new_key)?;
        let index = self
            .changes
            .iter()
            .position(|(a, c)| *a == address && c.new_key() == new_key)
            .ok_or_else(|| {
                Failure::caller_bug(format!(
                    "no identity change of {address} to this key was reported since the device was opened: receive the message or process the bundle that reports it first"
                ))
            })?;
        self.device
            .accept_identity_change(&mut self.rng, &address, &self.changes[index].1)?;
        self.changes.remove(index);
        Ok(())
    }
}

impl RestoredHandle {
    fn new(restored: ratchetbox::Restored, rng: OsRng) -> Self {
        Self {
            handle: DeviceHandle {
                device: restored.device,
                rng,
                changes: Vec::new(),
            },
            prekey_upload: restored.prekey_upload,
            backup_created_at: restored.info.created_at.as_unix_secs(),
            backup_generation: restored.info.generation,
        }
    }
}

/// A sealed attachment: the pointer (put it in a message) and the sealed file (upload it).
#[derive(Debug)]
pub struct Sealed {
    /// The pointer's bytes; they hold the file's key.
    pub pointer: Zeroizing<Vec<u8>>,
    /// The sealed file.
    pub sealed: Vec<u8>,
}

fn metadata(content_type: &str, file_name: &str) -> Result<AttachmentMetadata, Failure> {
    Ok(AttachmentMetadata::new(content_type, file_name)?)
}

/// Seals `data` as an attachment.
pub fn seal_attachment(
    data: &[u8],
    content_type: &str,
    file_name: &str,
) -> Result<Sealed, Failure> {
    let (pointer, sealed) =
        attachment::seal(&mut OsRng::new(), data, metadata(content_type, file_name)?)?;
    Ok(Sealed {
        pointer: pointer.to_bytes(),
        sealed,
    })
}

/// Opens a sealed attachment; fails unless every byte verifies against the pointer.
pub fn open_attachment(pointer: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let pointer = AttachmentPointer::from_bytes(pointer)?;
    Ok(Zeroizing::new(attachment::open(&pointer, sealed)?))
}

fn io_failure(what: &str, path: &Path, e: &std::io::Error) -> Failure {
    let kind = match e.kind() {
        std::io::ErrorKind::NotFound | std::io::ErrorKind::PermissionDenied => Kind::CallerBug,
        _ => Kind::RetryLater,
    };
    Failure::of(kind, format!("cannot {what} {}: {e}", path.display()))
}

/// Seals the file at `input` into a new file at `output` (streaming, constant memory);
/// returns the pointer's bytes.
pub fn seal_attachment_file(
    input: &Path,
    output: &Path,
    content_type: &str,
    file_name: &str,
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let metadata = metadata(content_type, file_name)?;
    let mut reader = BufReader::new(File::open(input).map_err(|e| io_failure("read", input, &e))?);
    let file = File::create(output).map_err(|e| io_failure("create", output, &e))?;
    let mut writer = BufWriter::new(file);
    let result = attachment::seal_stream(&mut OsRng::new(), &mut reader, &mut writer, metadata)
        .map_err(Failure::from)
        .and_then(|pointer| {
            writer
                .flush()
                .map_err(|e| io_failure("write", output, &e))?;
            Ok(pointer)
        });
    match result {
        Ok(pointer) => Ok(pointer.to_bytes()),
        Err(e) => {
            drop(writer);
            let _ = std::fs::remove_file(output);
            Err(e)
        }
    }
}

/// Opens the sealed file at `input` into a new file at `output`; returns the plaintext
/// length. On failure the output file is removed (it may hold verified but incomplete
/// data).
pub fn open_attachment_file(pointer: &[u8], input: &Path, output: &Path) -> Result<u64, Failure> {
    let pointer = AttachmentPointer::from_bytes(pointer)?;
    let mut reader = BufReader::new(File::open(input).map_err(|e| io_failure("read", input, &e))?);
    let file = File::create(output).map_err(|e| io_failure("create", output, &e))?;
    let mut writer = BufWriter::new(file);
    let result = attachment::open_stream(&pointer, &mut reader, &mut writer)
        .map_err(Failure::from)
        .and_then(|len| {
            writer
                .flush()
                .map_err(|e| io_failure("write", output, &e))?;
            Ok(len)
        });
    if result.is_err() {
        drop(writer);
        let _ = std::fs::remove_file(output);
    }
    result
}

/// What a pointer says about its file.
pub fn attachment_info(pointer: &[u8]) -> Result<AttachmentInfo, Failure> {
    let pointer = AttachmentPointer::from_bytes(pointer)?;
    Ok(AttachmentInfo {
        content_type: pointer.content_type().to_owned(),
        file_name: pointer.file_name().to_owned(),
        plaintext_len: pointer.plaintext_len(),
        locator: pointer.locator().to_vec(),
    })
}

/// The pointer with its locator (where the app uploaded the sealed file) set.
pub fn set_attachment_locator(
    pointer: &[u8],
    locator: &[u8],
) -> Result<Zeroizing<Vec<u8>>, Failure> {
    let mut pointer = AttachmentPointer::from_bytes(pointer)?;
    pointer.set_locator(locator.to_vec())?;
    Ok(pointer.to_bytes())
}

/// A server's job, for tests and demos: the bundle a server assembles from a device's first
/// prekey upload, with the `index`-th one-time prekey and one-time KEM prekey of the upload
/// (the last-resort KEM prekey, and no one-time prekey, past the end of either list).
pub fn bundle_from_upload(upload: &[u8], index: u32) -> Result<Vec<u8>, Failure> {
    let upload = PreKeyUpload::from_bytes(upload).map_err(|e| {
        Failure::of(
            Kind::DropForged,
            format!("the prekey upload is not valid: {e}"),
        )
    })?;
    let signed = upload.signed_prekey().ok_or_else(|| {
        Failure::caller_bug("the upload has no signed prekey (not a device's first upload)")
    })?;
    let index = index as usize;
    let kem = upload
        .one_time_kem_prekeys()
        .get(index)
        .or(upload.last_resort_kem_prekey());
    let bundle = PreKeyBundle::assemble(
        upload.identity_key(),
        signed,
        upload.one_time_prekeys().get(index).copied(),
        kem,
    )
    .map_err(|e| Failure::caller_bug(format!("the bundle cannot be assembled: {e}")))?;
    Ok(bundle.to_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratchetbox::MemoryStore;

    const NOW: Timestamp = Timestamp::from_unix_secs(1_764_000_000);

    fn device(user: &str) -> DeviceHandle {
        DeviceHandle::create(Box::new(MemoryStore::new()), &[9; 32], user, 1, NOW).unwrap()
    }

    #[test]
    fn errors_keep_their_action_message_and_addresses() {
        let bob = Address::new("bob", 2).unwrap();
        let f = Failure::from(ratchetbox::Error::MissingSessions {
            addresses: vec![bob.clone()],
        });
        assert_eq!(f.kind, Kind::RepairSession);
        assert_eq!(f.addresses, vec![bob]);
        assert_eq!(f.message, "no session with 1 device(s): bob.2");
        let f = Failure::from(ratchetbox::Error::NoDevice);
        assert_eq!(
            (f.kind, f.message.as_str()),
            (
                Kind::CallerBug,
                "the store holds no device; create one first"
            )
        );
        let f = Failure::from(ratchetbox::StoreError::Busy { waited_ms: 5 });
        assert_eq!(f.kind, Kind::RetryLater);
        assert_eq!(f.new_identity_key, None);
    }

    #[test]
    fn a_panic_and_a_poisoned_lock_are_internal() {
        let f = guard(|| -> Result<(), Failure> { panic!("boom") }).unwrap_err();
        assert_eq!(f.kind, Kind::Internal);
        assert!(!f.message.contains("boom"));
        let mutex = Mutex::new(0u8);
        let _ = catch_unwind(AssertUnwindSafe(|| {
            let _guard = mutex.lock();
            panic!("poison");
        }));
        assert_eq!(lock(&mutex).unwrap_err().kind, Kind::Internal);
    }

    #[test]
    fn storage_keys_of_the_wrong_length_are_refused() {
        for len in [0, 31, 33] {
            let f = DeviceHandle::create(Box::new(MemoryStore::new()), &vec![1; len], "a", 1, NOW)
                .unwrap_err();
            assert_eq!(f.kind, Kind::CallerBug);
            assert_eq!(
                f.message,
                format!("the storage key must be 32 bytes, got {len}")
            );
        }
    }

    #[test]
    fn an_identity_change_is_accepted_only_once_reported() {
        let mut alice = device("alice");
        let bob = device("bob");
        let err = alice
            .accept_identity_change("bob", 1, &bob.identity_key())
            .unwrap_err();
        assert_eq!(err.kind, Kind::CallerBug);
        let err = alice
            .accept_identity_change("bob", 1, &[0; 31])
            .unwrap_err();
        assert_eq!(err.message, "an identity key is 32 bytes, got 31");
    }

    #[test]
    fn group_ids_of_the_wrong_length_are_refused() {
        let mut alice = device("alice");
        for len in [0, 31, 33] {
            let f = alice.group_members(&vec![1; len]).unwrap_err();
            assert_eq!(f.kind, Kind::CallerBug);
            assert_eq!(f.message, format!("a group id is 32 bytes, got {len}"));
        }
        let f = alice.group_timer(&[1; 32]).unwrap_err();
        assert_eq!(f.kind, Kind::CallerBug, "{}", f.message);
    }

    #[test]
    fn a_group_message_reaches_the_members_through_plain_data() {
        let mut alice = device("alice");
        let mut bob = device("bob");
        let upload = bob
            .prekey_upload(PreKeyStatus::default(), NOW)
            .unwrap()
            .unwrap();
        alice
            .process_bundle("bob", 1, &bundle_from_upload(&upload, 0).unwrap())
            .unwrap();
        let members = [("alice".to_owned(), 1), ("bob".to_owned(), 1)];
        let group = alice.create_group(&members).unwrap();
        assert_eq!(group.len(), 32);
        bob.set_group_members(&group, &members).unwrap();
        assert_eq!(
            alice.group_members(&group).unwrap(),
            vec![Address::new("bob", 1).unwrap()]
        );
        let sent = alice.send_group(&group, b"hi all", &[], NOW).unwrap();
        assert_eq!(sent.distributions.len(), 1);
        assert_eq!(sent.distributions[0].0, Address::new("bob", 1).unwrap());
        // The group message before the sender key: RetryLater.
        let f = bob
            .receive_group("alice", 1, &sent.message, NOW)
            .unwrap_err();
        assert_eq!(f.kind, Kind::RetryLater, "{}", f.message);
        bob.receive("alice", 1, &sent.distributions[0].1, NOW)
            .unwrap();
        let got = bob.receive_group("alice", 1, &sent.message, NOW).unwrap();
        assert_eq!(got.body.as_slice(), b"hi all");
    }

    #[test]
    fn a_backup_restores_only_under_its_recovery_key() {
        let mut alice = device("alice");
        let code = generate_recovery_key();
        assert_eq!(code.len(), 77);
        let blob = alice.backup(&code, NOW).unwrap();
        let other = generate_recovery_key();
        let f = DeviceHandle::restore(Box::new(MemoryStore::new()), &[3; 32], &blob, &other, NOW)
            .unwrap_err();
        assert_eq!(f.kind, Kind::ShowToPerson, "{}", f.message);
        assert!(!f.message.contains(other.as_str()));
        let f = DeviceHandle::restore(Box::new(MemoryStore::new()), &[3; 32], &blob, "ABC", NOW)
            .unwrap_err();
        assert_eq!(f.kind, Kind::ShowToPerson);
        assert!(
            f.message.starts_with("the recovery key is not valid: "),
            "{}",
            f.message
        );
        let f = alice.backup("ABC", NOW).unwrap_err();
        assert_eq!(f.kind, Kind::ShowToPerson);
        let typed = code.to_lowercase();
        let restored =
            DeviceHandle::restore(Box::new(MemoryStore::new()), &[3; 32], &blob, &typed, NOW)
                .unwrap();
        assert_eq!(restored.handle.identity_key(), alice.identity_key());
        assert_eq!(restored.backup_created_at, NOW.as_unix_secs());
        assert!(PreKeyUpload::from_bytes(&restored.prekey_upload).is_ok());
        let f = alice.backup_with_passphrase("short", NOW).unwrap_err();
        assert_eq!(f.kind, Kind::ShowToPerson, "{}", f.message);
    }

    #[test]
    fn bundle_from_upload_refuses_garbage() {
        let f = bundle_from_upload(b"\x01garbage", 0).unwrap_err();
        assert_eq!(f.kind, Kind::DropForged);
        assert!(
            f.message.starts_with("the prekey upload is not valid: "),
            "{}",
            f.message
        );
    }
}
