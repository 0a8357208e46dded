//! The high-level object most apps use: one local device, its account and its sessions with
//! other devices, all kept in a [`Store`] and committed in one transaction per call.

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::account::Account;
use crate::address::{Address, DeviceId};
use crate::config::SessionConfig;
use crate::content::{Content, ReceivedMessage};
use crate::error::{ExportError, StateError, TrustError};
use crate::expiry::ExpiryTimer;
use crate::fingerprint::SafetyNumber;
use crate::keys::IdentityKey;
use crate::prekeys::{PreKeyMaintenance, ServerPreKeyStatus};
use crate::record::{SessionRecord, SkippedChange, SkippedKeyId};
use crate::session::SessionId;
use crate::state::StorageKey;
use crate::store::{Store, StoreError, Table, Transaction};
use crate::time::Timestamp;
use crate::trust::{IdentityChange, PeerIdentity};
use crate::wire::bundle::PreKeyBundle;
use crate::wire::message::Body;

mod backup;
mod error;
mod group;
mod rows;

pub use backup::Restored;
pub use error::{Action, Error};
pub use group::GroupSent;
use rows::RowKeys;

/// What a fan-out sends.
#[derive(Clone, Copy)]
enum Payload<'a> {
    Content(&'a Content),
    /// A timer change to this many seconds (empty content under the new setting).
    Timer(u32),
}

/// How many times a call runs when other handles keep committing in between
/// ([`StoreError::Conflict`]) before it gives up with [`Error::TooManyConflicts`].
pub const MAX_ATTEMPTS: u32 = 8;

/// One message to deliver: the device it is for and its bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// The recipient device.
    pub to: Address,
    /// The message bytes to deliver to it.
    pub message: Vec<u8>,
}

/// What [`Device::send`] produced: one message per recipient device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// One message per recipient device (the peer's, then this user's other devices), in
    /// the order of the device lists given.
    pub messages: Vec<Outgoing>,
    /// The send time (the `now` given).
    pub sent_at: Timestamp,
    /// When this device's copy expires under the conversation's timer, if it is on.
    pub expires_at: Option<Timestamp>,
}

/// One local device of a user: an [`Account`] and a session per peer [`Address`], kept in a
/// [`Store`] sealed under a [`StorageKey`].
///
/// Every call that changes state runs in one store transaction and commits everything it
/// changed before it returns a ciphertext or a plaintext: after a crash the store holds
/// either the state before the call or the state after it, and never a sent message whose
/// state was not saved. A failed call leaves the store exactly as it was. Several handles
/// may share one store (threads, processes, an app and its notification extension): their
/// calls serialize in the store, and each handle reloads what another changed.
///
/// ```
/// use ratchetbox::{
///     Address, Content, Device, MemoryStore, PreKeyBundle, PreKeyUpload, ServerPreKeyStatus,
///     StorageKey, Timestamp,
/// };
/// let mut rng = ratchetbox::OsRng::new();
/// let now = Timestamp::from_unix_secs(1_764_000_000);
/// let alice_addr = Address::new("alice", 1)?;
/// let bob_addr = Address::new("bob", 1)?;
/// let mut alice = Device::create(
///     Box::new(MemoryStore::new()), StorageKey::generate(&mut rng), alice_addr.clone(), &mut rng, now)?;
/// let mut bob = Device::create(
///     Box::new(MemoryStore::new()), StorageKey::generate(&mut rng), bob_addr.clone(), &mut rng, now)?;
///
/// // Bob uploads his prekeys; the server (which holds no secret) makes a bundle of them.
/// let upload = bob.prekey_maintenance(&mut rng, now, ServerPreKeyStatus::default())?.unwrap();
/// let upload = PreKeyUpload::from_bytes(&upload)?;
/// let bundle = PreKeyBundle::assemble(
///     upload.identity_key(),
///     upload.signed_prekey().unwrap(),
///     upload.one_time_prekeys().first().copied(),
///     upload.one_time_kem_prekeys().first(),
/// )?;
/// // Alice fetches it from the server and starts a session.
/// alice.process_bundle(&mut rng, &bob_addr, &bundle.to_bytes())?;
/// let sent = alice.send(&mut rng, "bob", &[1], &[], &Content::new("hi Bob"), now)?;
/// let received = bob.receive(&mut rng, &alice_addr, &sent.messages[0].message, now)?;
/// assert_eq!(received.content().body(), b"hi Bob");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub struct Device {
    store: Box<dyn Store>,
    keys: RowKeys,
    address: Address,
    identity: IdentityKey,
    config: SessionConfig,
    /// The newest store generation this handle has seen.
    seen: u64,
    cache: Cache,
}

impl fmt::Debug for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Device")
            .field("address", &self.address)
            .field("identity", &self.identity)
            .field("generation", &self.seen)
            .finish_non_exhaustive()
    }
}

/// Decoded state of one store generation, so that a call does not reload and decode what
/// it already has. Valid only while the store is at `generation`.
#[derive(Default)]
struct Cache {
    generation: u64,
    account: Option<Account>,
    /// Records loaded so far (each has a row in the store, or was created by this call).
    records: BTreeMap<Address, SessionRecord>,
    /// For users whose session rows were scanned: every device that has one.
    users: BTreeMap<String, BTreeSet<DeviceId>>,
}

impl Cache {
    fn clear(&mut self) {
        *self = Cache::default();
    }
}

/// One run of a call: the open transaction, and what the call changed.
struct Op<'a> {
    tx: Box<dyn Transaction + 'a>,
    keys: &'a RowKeys,
    cache: &'a mut Cache,
    config: SessionConfig,
    account_changed: bool,
    changed: BTreeSet<Address>,
    deleted: BTreeSet<Address>,
    /// Group rows (table 5) this call changed: row key -> plain value (src/device/group.rs).
    group_rows: BTreeMap<Vec<u8>, Zeroizing<Vec<u8>>>,
}

impl Device {
    /// Creates a device in an empty store: a new account (identity key and first prekeys)
    /// for `address`, sealed under `storage_key`. Fails with [`Error::DeviceExists`] if the
    /// store already holds one.
    pub fn create<R: CryptoRng + ?Sized>(
        mut store: Box<dyn Store>,
        storage_key: StorageKey,
        address: Address,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<Self, Error> {
        let keys = RowKeys::new(storage_key);
        let account = Account::new(rng, now);
        let identity = account.identity_key();
        {
            let mut tx = store.transaction()?;
            if let Some(existing) = tx.get(Table::Meta, rows::META_ADDRESS)? {
                let existing = read_address(&keys, &existing).unwrap_or_else(|| address.clone());
                return Err(Error::DeviceExists(existing));
            }
            put_sealed(
                &mut *tx,
                &keys,
                rng,
                Table::Meta,
                rows::META_FORMAT,
                &[rows::FORMAT],
            )?;
            let encoded = rows::encode_session_row(&address, &[]);
            put_sealed(
                &mut *tx,
                &keys,
                rng,
                Table::Meta,
                rows::META_ADDRESS,
                &encoded,
            )?;
            put_sealed(
                &mut *tx,
                &keys,
                rng,
                Table::Meta,
                rows::META_GENERATION,
                &1u64.to_be_bytes(),
            )?;
            put_sealed(
                &mut *tx,
                &keys,
                rng,
                Table::Account,
                rows::ACCOUNT_ROW,
                &account.to_bytes(),
            )?;
            tx.commit()?;
        }
        Ok(Self {
            store,
            keys,
            address,
            identity,
            config: SessionConfig::default(),
            seen: 1,
            cache: Cache {
                generation: 1,
                account: Some(account),
                ..Cache::default()
            },
        })
    }

    /// Opens the device kept in `store`. Fails with [`Error::NoDevice`] for an empty store
    /// and [`Error::StoredState`] for a wrong storage key or a damaged store.
    pub fn open(mut store: Box<dyn Store>, storage_key: StorageKey) -> Result<Self, Error> {
        let mut keys = RowKeys::new(storage_key);
        let (address, generation, account) = {
            let mut tx = store.transaction()?;
            // A restored store keeps the index key of the store its backup was made from.
            if let Some(sealed) = tx.get(Table::Meta, rows::META_INDEX_KEY)? {
                keys = backup::restored_row_keys(keys, &sealed)?;
            }
            let sealed = tx
                .get(Table::Meta, rows::META_ADDRESS)?
                .ok_or(Error::NoDevice)?;
            let address = read_address(&keys, &sealed).ok_or(Error::StoredState {
                what: "device address",
                source: StateError::UnsealFailed,
            })?;
            let format = get_sealed(
                &mut *tx,
                &keys,
                Table::Meta,
                rows::META_FORMAT,
                "store format",
            )?;
            if format.as_slice() != [rows::FORMAT] {
                return Err(StoreError::Corrupt(alloc::format!(
                    "store layout version {:?}, this build reads version {}",
                    format.first(),
                    rows::FORMAT
                ))
                .into());
            }
            let generation = read_generation(&mut *tx, &keys)?;
            let account = load_account(&mut *tx, &keys)?;
            (address, generation, account)
        };
        Ok(Self {
            store,
            keys,
            address,
            identity: account.identity_key(),
            config: SessionConfig::default(),
            seen: generation,
            cache: Cache {
                generation,
                account: Some(account),
                ..Cache::default()
            },
        })
    }

    /// This device's address.
    pub fn address(&self) -> &Address {
        &self.address
    }

    /// This device's identity key.
    pub fn identity_key(&self) -> IdentityKey {
        self.identity
    }

    /// The newest store generation this handle has seen. Every committed call adds one. An
    /// app that keeps this number somewhere the database's backups do not reach (the
    /// platform's key store) can detect a restored older database with
    /// [`check_generation`](Self::check_generation).
    pub fn generation(&self) -> u64 {
        self.seen
    }

    /// Fails with [`Error::RolledBack`] if the store is older than `at_least` (a generation
    /// the app saw earlier), and from then on refuses any older store.
    pub fn check_generation(&mut self, at_least: u64) -> Result<(), Error> {
        self.seen = self.seen.max(at_least);
        let mut tx = self.store.transaction()?;
        let found = read_generation(&mut *tx, &self.keys)?;
        if found < self.seen {
            return Err(Error::RolledBack {
                found,
                seen: self.seen,
            });
        }
        Ok(())
    }

    /// Keeps this device's prekeys on its server plentiful and fresh: given what the server
    /// reports, creates and rotates prekeys as [`Account::prekey_maintenance`] does (the
    /// policy is in docs/PROTOCOL.md section 3.5), stores the account, and only then returns
    /// the upload to send (the bytes of a [`PreKeyUpload`](crate::PreKeyUpload)), or `None`
    /// if the server has all it needs. Call it when the app starts, after the server reports
    /// a low count, and about once a day. If the upload is lost, the next call with the
    /// server's status sends what is missing again.
    pub fn prekey_maintenance<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
        server: ServerPreKeyStatus,
    ) -> Result<Option<Vec<u8>>, Error> {
        self.run(rng, |op, rng| {
            let plan = op.account()?.prekey_maintenance_plan(now, server);
            if !plan.needs_upload() && plan.replaced_prekeys_to_delete == 0 {
                // Nothing changes: no write, no new generation.
                return Ok(None);
            }
            let upload = op.account_mut()?.prekey_maintenance(rng, now, server)?;
            Ok(upload.map(|u| u.to_bytes()))
        })
    }

    /// What [`prekey_maintenance`](Self::prekey_maintenance) would do now, without doing it.
    pub fn prekey_maintenance_plan(
        &mut self,
        now: Timestamp,
        server: ServerPreKeyStatus,
    ) -> Result<PreKeyMaintenance, Error> {
        self.read(|op| Ok(op.account()?.prekey_maintenance_plan(now, server)))
    }

    /// Starts a session with `address` from its prekey bundle (bytes from the server), and
    /// makes it the one messages to `address` use.
    pub fn process_bundle<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        address: &Address,
        bundle: &[u8],
    ) -> Result<(), Error> {
        self.refuse_own(address)?;
        let bundle = PreKeyBundle::from_bytes(bundle)?;
        self.run(rng, |op, rng| {
            op.record_or_new(address)?;
            let (account, record) = op.account_and_record(address)?;
            record
                .initiate(rng, account, &bundle)
                .map_err(|source| Error::Setup {
                    with: address.clone(),
                    source,
                })
        })
    }

    /// Encrypts `content` for every device of user `user_id` (`device_ids`, as the server
    /// lists them now) and for this user's other devices (`own_device_ids`; this device is
    /// skipped if listed).
    ///
    /// The device lists are the truth: sessions with devices of these users that are not
    /// listed are deleted (a removed device), and if a listed device has no session nothing
    /// is encrypted and [`Error::MissingSessions`] names every such device: fetch their
    /// bundles, [`process_bundle`](Self::process_bundle) each, and call again.
    pub fn send<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        user_id: &str,
        device_ids: &[DeviceId],
        own_device_ids: &[DeviceId],
        content: &Content,
        now: Timestamp,
    ) -> Result<Sent, Error> {
        self.fan_out(
            rng,
            user_id,
            device_ids,
            own_device_ids,
            Payload::Content(content),
            now,
        )
    }

    /// Changes the disappearing-message timer of the conversation with `user_id` to
    /// `seconds` (0 turns it off) and returns the timer-update messages for every device, as
    /// [`send`](Self::send) does for content (same device-list rules).
    pub fn set_expiry_timer<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        user_id: &str,
        device_ids: &[DeviceId],
        own_device_ids: &[DeviceId],
        seconds: u32,
        now: Timestamp,
    ) -> Result<Sent, Error> {
        self.fan_out(
            rng,
            user_id,
            device_ids,
            own_device_ids,
            Payload::Timer(seconds),
            now,
        )
    }

    /// The disappearing-message setting of the conversation with `user_id`: the latest
    /// (in the order of docs/PROTOCOL.md section 12) among the sessions with its devices.
    pub fn expiry_timer(&mut self, user_id: &str) -> Result<ExpiryTimer, Error> {
        self.read(|op| {
            let mut timer = ExpiryTimer::OFF;
            for device in op.devices_of(user_id)? {
                if let Some(record) = op.record(&Address::new(user_id, device)?)? {
                    timer = timer.merge(record.expiry_timer());
                }
            }
            Ok(timer)
        })
    }

    fn fan_out<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        user_id: &str,
        device_ids: &[DeviceId],
        own_device_ids: &[DeviceId],
        payload: Payload<'_>,
        now: Timestamp,
    ) -> Result<Sent, Error> {
        let recipients = self.recipients(user_id, device_ids, own_device_ids)?;
        let own_user = String::from(self.address.user_id());
        self.run(rng, |op, rng| {
            op.sync_devices(user_id, device_ids)?;
            if own_user != user_id {
                let own: Vec<DeviceId> = recipients
                    .iter()
                    .filter(|a| a.user_id() == own_user)
                    .map(Address::device_id)
                    .collect();
                op.sync_devices(&own_user, &own)?;
            }
            // A device without a session, or whose current session was restored from a
            // backup (it may already have sent on it: docs/PROTOCOL.md, "Backup").
            let mut missing: Vec<Address> = Vec::new();
            for to in &recipients {
                if !op.has_session(to) || op.is_restored_session(to)? {
                    missing.push(to.clone());
                }
            }
            if !missing.is_empty() {
                return Err(Error::MissingSessions { addresses: missing });
            }
            // The conversation's setting: the latest among the sessions with the peer's
            // devices, applied to all of them, so that every device of the peer gets the
            // same one; a timer change starts from it.
            let is_peer = |a: &Address| a.user_id() == user_id;
            let mut timer = ExpiryTimer::OFF;
            for to in recipients.iter().filter(|a| is_peer(a)) {
                if let Some(record) = op.record(to)? {
                    timer = timer.merge(record.expiry_timer());
                }
            }
            if let Payload::Timer(seconds) = payload {
                timer = timer.changed_to(seconds).map_err(Error::Timer)?;
            }
            let empty = Content::default();
            let mut messages = Vec::with_capacity(recipients.len());
            for to in &recipients {
                let record = op
                    .record_mut(to)?
                    .ok_or_else(|| Error::NoSession(to.clone()))?;
                let encrypt_error = |source| Error::Encrypt {
                    to: to.clone(),
                    source,
                };
                let sent = match payload {
                    // The peer's sessions adopt the conversation's setting (or the new one)
                    // and send under it.
                    Payload::Content(content) if is_peer(to) => {
                        record.observe_timer(timer);
                        record.send(rng, content, now)
                    }
                    Payload::Timer(_) if is_peer(to) => {
                        record.observe_timer(timer);
                        record.send(rng, &empty, now)
                    }
                    // Copies for this user's other devices carry the conversation's setting,
                    // which is not theirs.
                    Payload::Content(content) => record.send_with_timer(rng, content, timer, now),
                    Payload::Timer(_) => record.send_with_timer(rng, &empty, timer, now),
                }
                .map_err(encrypt_error)?;
                messages.push(Outgoing {
                    to: to.clone(),
                    message: sent.into_wire(),
                });
            }
            Ok(Sent {
                messages,
                sent_at: now,
                expires_at: timer.deadline(now),
            })
        })
    }

    /// Decrypts a message from `from` (the sender's address, as the server reported it),
    /// checks and decodes its content, and applies its disappearing-message setting.
    ///
    /// An initial message starts a session (consuming the one-time prekey it names, in the
    /// same transaction). On error nothing is stored; [`Error::action`] says what to do.
    pub fn receive<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        from: &Address,
        message: &[u8],
        now: Timestamp,
    ) -> Result<ReceivedMessage, Error> {
        self.refuse_own(from)?;
        let initial = matches!(Body::parse(message), Ok(Body::Initial(..)));
        // Decryption draws no randomness; sealing the changed rows does.
        self.run(rng, |op, _| {
            op.record_or_new(from)?;
            let (account, record) = op.account_and_record(from)?;
            let received =
                record
                    .receive(account, message, now)
                    .map_err(|source| Error::Decrypt {
                        from: from.clone(),
                        source,
                    })?;
            if initial {
                op.account_changed = true;
            }
            if let Some(distribution) = received.content().group_distribution() {
                group::accept_distribution(op, from, distribution)?;
            }
            Ok(received)
        })
    }

    /// The identity of the peer at `address` as the session knows it, and how far it is
    /// trusted; `None` without a session.
    pub fn peer(&mut self, address: &Address) -> Result<Option<PeerIdentity>, Error> {
        self.read(|op| Ok(op.record(address)?.and_then(SessionRecord::peer)))
    }

    /// The safety number between this device and the peer at `address`, to compare in
    /// person or by scanning. `local_id` and `remote_id` are the stable identifiers the app
    /// uses for the two users (for example their phone numbers).
    pub fn safety_number(
        &mut self,
        address: &Address,
        local_id: &[u8],
        remote_id: &[u8],
    ) -> Result<SafetyNumber, Error> {
        let peer = self
            .peer(address)?
            .ok_or_else(|| Error::NoSession(address.clone()))?;
        Ok(SafetyNumber::new(
            local_id,
            &self.identity,
            remote_id,
            &peer.key(),
        )?)
    }

    /// Marks the identity key of `address` verified (after the person compared safety
    /// numbers). `key` is the key that was compared.
    pub fn mark_verified<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        address: &Address,
        key: &IdentityKey,
    ) -> Result<(), Error> {
        self.run(rng, |op, _| {
            let record = op
                .record_mut(address)?
                .ok_or(Error::Trust(TrustError::NoPeer))?;
            Ok(record.mark_verified(key)?)
        })
    }

    /// Accepts an identity change the person has seen (from an
    /// [`Action::ShowToPerson`] error): sessions built with the old key are deleted; then
    /// retry the message or start a session from a fresh bundle.
    pub fn accept_identity_change<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        address: &Address,
        change: &IdentityChange,
    ) -> Result<(), Error> {
        self.run(rng, |op, _| {
            let record = op
                .record_mut(address)?
                .ok_or(Error::Trust(TrustError::NoPeer))?;
            Ok(record.accept_identity_change(change)?)
        })
    }

    /// Derives `len` bytes for another channel (a call's media keys, say) from the current
    /// session with `address`, a `label` naming the purpose and a `context`, like a TLS
    /// exporter ([`SessionRecord::export_key`], docs/PROTOCOL.md section 14). The peer's
    /// device derives the same bytes from the same session: compare
    /// [`session_id`](Self::session_id)s if you must be sure both use the same one. The key
    /// lives as long as the session (no forward secrecy within it).
    pub fn export_key(
        &mut self,
        address: &Address,
        label: &[u8],
        context: &[u8],
        len: usize,
    ) -> Result<Zeroizing<Vec<u8>>, Error> {
        // Checked before the buffer is allocated.
        if len == 0 || len > crate::MAX_EXPORTED_KEY_LEN {
            return Err(ExportError::InvalidOutputLength {
                len,
                max: crate::MAX_EXPORTED_KEY_LEN,
            }
            .into());
        }
        self.read(|op| {
            let record = op
                .record(address)?
                .ok_or_else(|| Error::NoSession(address.clone()))?;
            let mut out = Zeroizing::new(alloc::vec![0u8; len]);
            record.export_key(label, context, &mut out)?;
            Ok(out)
        })
    }

    /// The id of the current session with `address` (the same on both sides once the peer
    /// has answered), or `None` without one.
    pub fn session_id(&mut self, address: &Address) -> Result<Option<SessionId>, Error> {
        self.read(|op| Ok(op.record(address)?.and_then(SessionRecord::session_id)))
    }

    /// Erases, in every session, the keys of messages that never arrived once they are too
    /// old ([`SessionRecord::prune`]); returns how many were erased. Call it when the app
    /// starts and about once a day.
    pub fn prune<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<usize, Error> {
        self.run(rng, |op, _| {
            let addresses = op.all_addresses()?;
            let mut erased = 0;
            for address in addresses {
                if let Some(record) = op.record_mut(&address)? {
                    erased += record.prune(now);
                }
            }
            Ok(erased)
        })
    }

    /// The addresses of every device this device has a session record with.
    pub fn sessions(&mut self) -> Result<Vec<Address>, Error> {
        self.read(|op| op.all_addresses())
    }

    fn refuse_own(&self, address: &Address) -> Result<(), Error> {
        if *address == self.address {
            return Err(Error::OwnAddress(address.clone()));
        }
        Ok(())
    }

    /// The recipient addresses of a send, checked: the peer's devices, then this user's
    /// other devices.
    fn recipients(
        &self,
        user_id: &str,
        device_ids: &[DeviceId],
        own_device_ids: &[DeviceId],
    ) -> Result<Vec<Address>, Error> {
        let mut out: Vec<Address> = Vec::with_capacity(device_ids.len() + own_device_ids.len());
        let mut push = |address: Address| {
            if address != self.address && !out.contains(&address) {
                out.push(address);
            }
        };
        for &d in device_ids {
            push(Address::new(user_id, d)?);
        }
        for &d in own_device_ids {
            push(Address::new(self.address.user_id(), d)?);
        }
        Ok(out)
    }

    /// Runs a read-only `body` in a store transaction (nothing is written).
    fn read<T>(
        &mut self,
        mut body: impl FnMut(&mut Op<'_>) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut no_rng = NoWrites;
        self.run(&mut no_rng, |op, _| {
            let value = body(op)?;
            if op.account_changed || !op.changed.is_empty() || !op.deleted.is_empty() {
                op.forget_changes();
                op.account_changed = false;
                op.changed.clear();
                op.deleted.clear();
            }
            op.group_rows.clear();
            Ok(value)
        })
    }

    /// Runs `body` in a store transaction and commits what it changed, again on a conflict.
    fn run<T, R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        mut body: impl FnMut(&mut Op<'_>, &mut R) -> Result<T, Error>,
    ) -> Result<T, Error> {
        for _ in 0..MAX_ATTEMPTS {
            match self.attempt(rng, &mut body) {
                Err(Error::Store(StoreError::Conflict)) => self.cache.clear(),
                other => return other,
            }
        }
        Err(Error::TooManyConflicts {
            attempts: MAX_ATTEMPTS,
        })
    }

    fn attempt<T, R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        body: &mut impl FnMut(&mut Op<'_>, &mut R) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let mut tx = self.store.transaction()?;
        let generation = read_generation(&mut *tx, &self.keys)?;
        if generation < self.seen {
            return Err(Error::RolledBack {
                found: generation,
                seen: self.seen,
            });
        }
        if self.cache.generation != generation {
            self.cache.clear();
            self.cache.generation = generation;
        }
        let mut op = Op {
            tx,
            keys: &self.keys,
            cache: &mut self.cache,
            config: self.config,
            account_changed: false,
            changed: BTreeSet::new(),
            deleted: BTreeSet::new(),
            group_rows: BTreeMap::new(),
        };
        let outcome = body(&mut op, rng).and_then(|value| {
            if op.account_changed
                || !op.changed.is_empty()
                || !op.deleted.is_empty()
                || !op.group_rows.is_empty()
            {
                let next = generation
                    .checked_add(1)
                    .ok_or_else(|| corrupt("the store generation cannot grow any further"))?;
                op.write(rng, next)?;
                Ok((value, true))
            } else {
                Ok((value, false))
            }
        });
        match outcome {
            Ok((value, wrote)) => {
                if wrote {
                    let Op { tx, cache, .. } = op;
                    tx.commit().inspect_err(|_| cache.clear())?;
                    cache.generation = generation + 1;
                    self.seen = generation + 1;
                } else {
                    self.seen = generation;
                }
                Ok(value)
            }
            Err(e) => {
                // Whatever the body changed in memory was not stored: forget it.
                op.forget_changes();
                Err(e)
            }
        }
    }
}

/// The generator given to [`Device::run`] by read-only calls, which seal nothing. Were it
/// ever asked for bytes it returns zeros, so a bug would show as repeated salts in tests, not
/// as a panic.
struct NoWrites;

impl rand_core::TryRng for NoWrites {
    type Error = core::convert::Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
        Ok(0)
    }
    fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
        Ok(0)
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
        dst.fill(0);
        Ok(())
    }
}

impl rand_core::TryCryptoRng for NoWrites {}

impl Op<'_> {
    fn account(&mut self) -> Result<&mut Account, Error> {
        if self.cache.account.is_none() {
            self.cache.account = Some(load_account(&mut *self.tx, self.keys)?);
        }
        self.cache.account.as_mut().ok_or(Error::NoDevice)
    }

    fn account_mut(&mut self) -> Result<&mut Account, Error> {
        self.account_changed = true;
        self.account()
    }

    /// Loads the record of `address` into the cache if it has a row.
    fn load(&mut self, address: &Address) -> Result<bool, Error> {
        if self.cache.records.contains_key(address) {
            return Ok(true);
        }
        if self.deleted.contains(address) {
            return Ok(false);
        }
        let key = self.keys.session_key(address);
        let Some(sealed) = self.tx.get(Table::Session, &key)? else {
            return Ok(false);
        };
        let (found, record) = decode_record(&mut *self.tx, self.keys, &key, &sealed)?;
        if found != *address {
            return Err(corrupt("a session row names another address"));
        }
        self.cache.records.insert(found, record);
        Ok(true)
    }

    fn record(&mut self, address: &Address) -> Result<Option<&SessionRecord>, Error> {
        self.load(address)?;
        Ok(self.cache.records.get(address))
    }

    fn record_mut(&mut self, address: &Address) -> Result<Option<&mut SessionRecord>, Error> {
        if !self.load(address)? {
            return Ok(None);
        }
        self.changed.insert(address.clone());
        Ok(self.cache.records.get_mut(address))
    }

    /// Makes sure a record exists for `address` (a new, empty one if there is no row).
    fn record_or_new(&mut self, address: &Address) -> Result<(), Error> {
        if !self.load(address)? {
            self.deleted.remove(address);
            self.cache
                .records
                .insert(address.clone(), SessionRecord::with_config(self.config));
            if let Some(devices) = self.cache.users.get_mut(address.user_id()) {
                devices.insert(address.device_id());
            }
        }
        self.changed.insert(address.clone());
        Ok(())
    }

    /// The account and the (loaded) record of `address`, both mutable, marked changed.
    fn account_and_record(
        &mut self,
        address: &Address,
    ) -> Result<(&mut Account, &mut SessionRecord), Error> {
        self.account()?;
        self.changed.insert(address.clone());
        let Cache {
            account, records, ..
        } = &mut *self.cache;
        let account = account.as_mut().ok_or(Error::NoDevice)?;
        let record = records
            .get_mut(address)
            .ok_or_else(|| Error::NoSession(address.clone()))?;
        Ok((account, record))
    }

    fn has_session(&self, address: &Address) -> bool {
        self.cache
            .records
            .get(address)
            .is_some_and(|r| r.session().is_some())
    }

    /// Loads every record of `user_id`'s devices and deletes those not in `listed`.
    fn sync_devices(&mut self, user_id: &str, listed: &[DeviceId]) -> Result<(), Error> {
        let devices = self.devices_of(user_id)?;
        for device in devices {
            let address = Address::new(user_id, device)?;
            if listed.contains(&device) {
                self.load(&address)?;
            } else {
                self.delete(&address);
            }
        }
        Ok(())
    }

    /// Every device of `user_id` with a session row.
    fn devices_of(&mut self, user_id: &str) -> Result<BTreeSet<DeviceId>, Error> {
        if let Some(devices) = self.cache.users.get(user_id) {
            return Ok(devices.clone());
        }
        let prefix = self.keys.user_prefix(user_id);
        let mut devices = BTreeSet::new();
        for (key, sealed) in self.tx.scan(Table::Session, &prefix)? {
            if key.len() != rows::SESSION_KEY_LEN {
                continue; // not a session row
            }
            let (address, record) = decode_record(&mut *self.tx, self.keys, &key, &sealed)?;
            if address.user_id() != user_id || self.deleted.contains(&address) {
                continue;
            }
            devices.insert(address.device_id());
            self.cache.records.entry(address).or_insert(record);
        }
        // Records created in this call, not yet stored.
        for address in self.cache.records.keys() {
            if address.user_id() == user_id && !self.deleted.contains(address) {
                devices.insert(address.device_id());
            }
        }
        self.cache
            .users
            .insert(String::from(user_id), devices.clone());
        Ok(devices)
    }

    fn all_addresses(&mut self) -> Result<Vec<Address>, Error> {
        let mut out = BTreeSet::new();
        for (key, sealed) in self.tx.scan(Table::Session, &[])? {
            if key.len() != rows::SESSION_KEY_LEN {
                continue;
            }
            let (address, record) = decode_record(&mut *self.tx, self.keys, &key, &sealed)?;
            if self.deleted.contains(&address) {
                continue;
            }
            self.cache.records.entry(address.clone()).or_insert(record);
            out.insert(address);
        }
        out.extend(self.changed.iter().cloned());
        Ok(out.into_iter().collect())
    }

    fn delete(&mut self, address: &Address) {
        self.cache.records.remove(address);
        self.changed.remove(address);
        if let Some(devices) = self.cache.users.get_mut(address.user_id()) {
            devices.remove(&address.device_id());
        }
        self.deleted.insert(address.clone());
    }

    /// Writes every change and the next generation (not yet committed).
    fn write<R: CryptoRng + ?Sized>(&mut self, rng: &mut R, generation: u64) -> Result<(), Error> {
        let keys = self.keys;
        let tx = &mut *self.tx;
        if self.account_changed {
            let account = self.cache.account.as_ref().ok_or(Error::NoDevice)?;
            put_sealed(
                tx,
                keys,
                rng,
                Table::Account,
                rows::ACCOUNT_ROW,
                &account.to_bytes(),
            )?;
        }
        for address in &self.deleted {
            let key = keys.session_key(address);
            tx.delete(Table::Session, &key)?;
            tx.delete_prefix(Table::SkippedKey, &key)?;
        }
        for address in &self.changed {
            let Some(record) = self.cache.records.get_mut(address) else {
                continue;
            };
            // The record without its skipped message keys, whose number does not change
            // the size of this row; then only the skipped-key rows this call changed.
            let key = keys.session_key(address);
            let plain = rows::encode_session_row(address, &record.to_bytes_without_skipped());
            put_sealed(tx, keys, rng, Table::Session, &key, &plain)?;
            for change in record.take_skipped_changes() {
                match change {
                    SkippedChange::Put(id, value) => {
                        let id = id.to_bytes();
                        let row = keys.skipped_key(address, &id);
                        let mut plain = Zeroizing::new(Vec::with_capacity(id.len() + value.len()));
                        plain.extend_from_slice(&id);
                        plain.extend_from_slice(&value);
                        put_sealed(tx, keys, rng, Table::SkippedKey, &row, &plain)?;
                    }
                    SkippedChange::Delete(id) => {
                        tx.delete(
                            Table::SkippedKey,
                            &keys.skipped_key(address, &id.to_bytes()),
                        )?;
                    }
                    SkippedChange::DeleteSession(session) => {
                        let prefix = keys.skipped_session_prefix(address, &session.to_bytes());
                        tx.delete_prefix(Table::SkippedKey, &prefix)?;
                    }
                }
            }
        }
        for (key, plain) in &self.group_rows {
            put_sealed(tx, keys, rng, Table::Group, key, plain)?;
        }
        put_sealed(
            tx,
            keys,
            rng,
            Table::Meta,
            rows::META_GENERATION,
            &generation.to_be_bytes(),
        )?;
        Ok(())
    }

    /// Drops from the cache everything this run changed in memory, so the next call reloads
    /// it from the store.
    fn forget_changes(&mut self) {
        if self.account_changed {
            self.cache.account = None;
        }
        for address in self.changed.iter().chain(self.deleted.iter()) {
            self.cache.records.remove(address);
        }
        if !self.changed.is_empty() || !self.deleted.is_empty() {
            self.cache.users.clear();
        }
    }
}

fn corrupt(what: &str) -> Error {
    Error::Store(StoreError::Corrupt(String::from(what)))
}

fn put_sealed<R: CryptoRng + ?Sized>(
    tx: &mut dyn Transaction,
    keys: &RowKeys,
    rng: &mut R,
    table: Table,
    key: &[u8],
    plain: &[u8],
) -> Result<(), Error> {
    let sealed = keys.seal(rng, table, key, plain);
    Ok(tx.put(table, key, &sealed)?)
}

fn get_sealed(
    tx: &mut dyn Transaction,
    keys: &RowKeys,
    table: Table,
    key: &[u8],
    what: &'static str,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let sealed = tx.get(table, key)?.ok_or_else(|| corrupt(what))?;
    keys.open(table, key, &sealed).ok_or(Error::StoredState {
        what,
        source: StateError::UnsealFailed,
    })
}

fn read_address(keys: &RowKeys, sealed: &[u8]) -> Option<Address> {
    let plain = keys.open(Table::Meta, rows::META_ADDRESS, sealed)?;
    let (address, rest) = rows::decode_session_row(&plain)?;
    rest.is_empty().then_some(address)
}

fn read_generation(tx: &mut dyn Transaction, keys: &RowKeys) -> Result<u64, Error> {
    if tx.get(Table::Meta, rows::META_ADDRESS)?.is_none() {
        return Err(Error::NoDevice);
    }
    let plain = get_sealed(
        tx,
        keys,
        Table::Meta,
        rows::META_GENERATION,
        "store generation",
    )?;
    let bytes: [u8; 8] = plain
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("the store generation is not 8 bytes"))?;
    Ok(u64::from_be_bytes(bytes))
}

fn load_account(tx: &mut dyn Transaction, keys: &RowKeys) -> Result<Account, Error> {
    let plain = get_sealed(tx, keys, Table::Account, rows::ACCOUNT_ROW, "account")?;
    Account::from_bytes(&plain).map_err(|source| Error::StoredState {
        what: "account",
        source,
    })
}

fn decode_record(
    tx: &mut dyn Transaction,
    keys: &RowKeys,
    key: &[u8],
    sealed: &[u8],
) -> Result<(Address, SessionRecord), Error> {
    let plain = keys
        .open(Table::Session, key, sealed)
        .ok_or(Error::StoredState {
            what: "session record",
            source: StateError::UnsealFailed,
        })?;
    let (address, bytes) =
        rows::decode_session_row(&plain).ok_or_else(|| corrupt("a session row is malformed"))?;
    if keys.session_key(&address)[..] != *key {
        return Err(corrupt("a session row names another address than its key"));
    }
    let mut skipped = Vec::new();
    for (row, sealed) in tx.scan(Table::SkippedKey, key)? {
        let plain = keys
            .open(Table::SkippedKey, &row, &sealed)
            .ok_or(Error::StoredState {
                what: "skipped message key",
                source: StateError::UnsealFailed,
            })?;
        let (id, value) = plain
            .split_first_chunk::<{ rows::SKIPPED_ID_LEN }>()
            .ok_or_else(|| corrupt("a skipped-key row is too short"))?;
        if keys.skipped_key(&address, id) != row {
            return Err(corrupt(
                "a skipped-key row names another key than its row key",
            ));
        }
        let id = SkippedKeyId::from_bytes(id)
            .ok_or_else(|| corrupt("a skipped-key row has a malformed id"))?;
        skipped.push((id, Zeroizing::new(value.to_vec())));
    }
    let record = SessionRecord::from_bytes_and_skipped(bytes, skipped).map_err(|source| {
        Error::StoredState {
            what: "session record",
            source,
        }
    })?;
    Ok((address, record))
}
