//! Backing up a whole device store under a recovery key, and restoring it into a new store
//! (docs/PROTOCOL.md, section "Backup").
//!
//! A backup holds every row of the store, unsealed from the storage key: the account (with
//! its prekeys and replay memory), every session record with its skipped message keys, the
//! trust decisions they carry, and the rows of every other table (group state) as they are,
//! without reading them. Restoring writes them into an empty store under that store's own
//! storage key; the store keeps the index key of the original, so every row keeps its key.
//!
//! A backup is always older than the device it replaces, so restoring makes the old state
//! safe to use:
//! - **Sessions are kept to read late messages, never to send.** The device may have sent on
//!   any of them after the backup; sending again would reuse message keys. Every session
//!   restored is listed as such, and [`Device::send`] refuses to send on one with
//!   [`Error::MissingSessions`]: the app fetches the peer's bundle and starts a new session,
//!   as for a new contact. The restored sessions still decrypt what the peer sent on them.
//! - **One-time prekeys are all replaced.** Any of them may have been used since the backup.
//!   The restored account deletes them, moves its id counters [`RESTORE_ID_GAP`] ahead,
//!   rotates the signed prekey and the last-resort KEM prekey, and [`Restored`] carries the
//!   upload to send at once: its new batches replace the server's pools (their ids are above
//!   anything the lost device published), so the server deletes the old one-time keys.
//! - **The identity stays the same**, so contacts see no safety-number change.
//!
//! [`RESTORE_ID_GAP`]: crate::RESTORE_ID_GAP

use alloc::boxed::Box;
use alloc::collections::{BTreeMap, BTreeSet};
use alloc::vec::Vec;

use prost::Message as _;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

use super::{Cache, Device, Error, Op, corrupt, put_sealed, read_generation, rows};
use crate::account::Account;
use crate::address::Address;
use crate::backup::{self, BackupError, BackupInfo, KIND_DEVICE, RecoveryKey};
use crate::config::SessionConfig;
use crate::error::StateError;
use crate::keys::KEY_LEN;
use crate::prekeys::ServerPreKeyStatus;
use crate::record::SessionRecord;
use crate::state::StorageKey;
use crate::store::{Store, Table, Transaction};
use crate::time::Timestamp;
use crate::wire::generated as pb;

use rows::RowKeys;

/// A device restored from a backup, and what to do next.
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
#[derive(Debug)]
pub struct Restored {
    /// The restored device, ready to receive. Its first send to each peer needs a new
    /// session ([`Error::MissingSessions`]).
    pub device: Device,
    /// The prekey upload to send to the server now (the bytes of a
    /// [`PreKeyUpload`](crate::PreKeyUpload)): a new signed prekey and last-resort KEM
    /// prekey, and batches of one-time keys that replace the server's pools.
    pub prekey_upload: Vec<u8>,
    /// The backup's authenticated facts: when it was made, and its store generation.
    pub info: BackupInfo,
}

/// Meta rows that belong to one store, never copied into a backup.
fn is_bookkeeping(table: Table, key: &[u8]) -> bool {
    table == Table::Meta
        && [
            rows::META_FORMAT,
            rows::META_GENERATION,
            rows::META_ADDRESS,
            rows::META_INDEX_KEY,
        ]
        .contains(&key)
}

/// The row keys of a restored store, from its sealed [`rows::META_INDEX_KEY`] row.
pub(super) fn restored_row_keys(keys: RowKeys, sealed: &[u8]) -> Result<RowKeys, Error> {
    let unsealed = || Error::StoredState {
        what: "index key",
        source: StateError::UnsealFailed,
    };
    let plain = keys
        .open(Table::Meta, rows::META_INDEX_KEY, sealed)
        .ok_or_else(unsealed)?;
    let index: [u8; KEY_LEN] = plain
        .as_slice()
        .try_into()
        .map_err(|_| corrupt("the index key is not 32 bytes"))?;
    let storage_key = keys.into_storage_key();
    Ok(RowKeys::with_index_key(storage_key, index))
}

impl Device {
    /// Exports this device's whole store as one backup sealed under `key` (docs/PROTOCOL.md,
    /// section "Backup"), stamped with `now` and the store's generation. Reads only: the
    /// store does not change.
    ///
    /// The backup holds every secret of the device: keep it where the person keeps their
    /// files, and the recovery key somewhere else (on paper).
    ///
    /// ```
    /// use ratchetbox::backup::RecoveryKey;
    /// use ratchetbox::{Address, Device, MemoryStore, StorageKey, Timestamp};
    /// let mut rng = ratchetbox::OsRng::new();
    /// let now = Timestamp::from_unix_secs(1_764_000_000);
    /// let alice = Address::new("alice", 1)?;
    /// let mut phone = Device::create(
    ///     Box::new(MemoryStore::new()), StorageKey::generate(&mut rng), alice, &mut rng, now)?;
    /// let recovery_key = RecoveryKey::generate(&mut rng);
    /// println!("Write this down: {}", &*recovery_key.to_code());
    /// let blob = phone.backup(&mut rng, &recovery_key, now)?;
    ///
    /// // The phone is lost. On the new one, the person types the code back.
    /// let typed = RecoveryKey::from_code(&recovery_key.to_code())?;
    /// let restored = Device::restore(
    ///     Box::new(MemoryStore::new()), StorageKey::generate(&mut rng), &blob, &typed, &mut rng, now)?;
    /// assert_eq!(restored.device.identity_key(), phone.identity_key());
    /// // Send `restored.prekey_upload` to the server now.
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn backup<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        key: &RecoveryKey,
        now: Timestamp,
    ) -> Result<Vec<u8>, Error> {
        let (generation, payload) = self.export()?;
        Ok(backup::seal(
            rng,
            key,
            KIND_DEVICE,
            now,
            generation,
            &payload,
        ))
    }

    /// [`backup`](Self::backup) under a passphrase instead of a recovery key: Argon2id with
    /// the default parameters ([`Argon2Params::DEFAULT`](crate::backup::Argon2Params)),
    /// after the strength rule of [`check_passphrase`](crate::backup::check_passphrase).
    /// Prefer a recovery key: whoever gets the backup can guess passphrases offline
    /// (docs/PROTOCOL.md, "Backup", says what a guess costs).
    ///
    /// # Errors
    /// [`Error::Backup`] with [`BackupError::WeakPassphrase`] for a passphrase the rule
    /// refuses.
    pub fn backup_with_passphrase<R: CryptoRng + ?Sized>(
        &mut self,
        rng: &mut R,
        passphrase: &str,
        now: Timestamp,
    ) -> Result<Vec<u8>, Error> {
        backup::check_passphrase(passphrase)?;
        let (generation, payload) = self.export()?;
        Ok(backup::seal_with_passphrase(
            rng,
            passphrase,
            KIND_DEVICE,
            now,
            generation,
            &payload,
        )?)
    }

    /// The store's generation and every row but its bookkeeping, unsealed and encoded.
    fn export(&mut self) -> Result<(u64, Zeroizing<Vec<u8>>), Error> {
        let (generation, payload) = {
            let mut tx = self.store.transaction()?;
            let generation = read_generation(&mut *tx, &self.keys)?;
            if generation < self.seen {
                return Err(Error::RolledBack {
                    found: generation,
                    seen: self.seen,
                });
            }
            let payload = export(&mut *tx, &self.keys, &self.address)?;
            // Read only: dropping the transaction rolls it back.
            (generation, payload)
        };
        Ok((generation, payload))
    }

    /// Restores a backup made by [`backup`](Self::backup) into `store`, which must be empty,
    /// sealing it under `storage_key` (a new one for the new store is best). The restored
    /// device keeps its identity; its sessions only read late messages; its one-time prekeys
    /// are replaced (the module docs of `device::backup` and docs/PROTOCOL.md say exactly
    /// what happens). Send [`Restored::prekey_upload`] to the server at once.
    ///
    /// The new store's generation is the backup's plus one.
    ///
    /// # Errors
    /// [`Error::Backup`] for a wrong key, a damaged, cut-off or foreign blob (each its own
    /// [`BackupError`]); [`Error::DeviceExists`] if `store` already holds a device. Nothing
    /// is written then.
    pub fn restore<R: CryptoRng + ?Sized>(
        store: Box<dyn Store>,
        storage_key: StorageKey,
        blob: &[u8],
        key: &RecoveryKey,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<Restored, Error> {
        let (info, payload) = backup::open(blob, key, KIND_DEVICE)?;
        Self::restore_payload(store, storage_key, info, &payload, rng, now)
    }

    /// [`restore`](Self::restore) for a backup made by
    /// [`backup_with_passphrase`](Self::backup_with_passphrase). Costs one Argon2id run with
    /// the backup's parameters, bounded before it starts (at most 256 MiB and 10 passes).
    ///
    /// # Errors
    /// As [`restore`](Self::restore); a wrong passphrase is [`BackupError::WrongKey`].
    pub fn restore_with_passphrase<R: CryptoRng + ?Sized>(
        store: Box<dyn Store>,
        storage_key: StorageKey,
        blob: &[u8],
        passphrase: &str,
        rng: &mut R,
        now: Timestamp,
    ) -> Result<Restored, Error> {
        let (info, payload) = backup::open_with_passphrase(blob, passphrase, KIND_DEVICE)?;
        Self::restore_payload(store, storage_key, info, &payload, rng, now)
    }

    fn restore_payload<R: CryptoRng + ?Sized>(
        mut store: Box<dyn Store>,
        storage_key: StorageKey,
        info: BackupInfo,
        payload: &[u8],
        rng: &mut R,
        now: Timestamp,
    ) -> Result<Restored, Error> {
        let backup = Backup::decode(payload)?;
        let generation = info
            .generation
            .checked_add(1)
            .ok_or(BackupError::Malformed(
                "the generation cannot grow any further",
            ))?;
        let keys = RowKeys::with_index_key(storage_key, backup.index_key);

        // The account, made safe to use after the backup.
        let mut account = Account::from_bytes(&backup.account)
            .map_err(|_| BackupError::Malformed("the account does not decode"))?;
        account.prepare_restored(rng, now)?;
        let prekey_upload = account
            .prekey_maintenance(rng, now, ServerPreKeyStatus::default())?
            .map(|upload| upload.to_bytes())
            .unwrap_or_default();

        // Every session of every record, listed as restored.
        let mut restored: BTreeMap<Vec<u8>, BTreeSet<[u8; KEY_LEN]>> = backup.restored.clone();
        for (row_key, value) in &backup.sessions {
            let (address, record) = decode_record_bytes(&keys, row_key, value)?;
            let ids = restored.entry(keys.restored_key(&address)).or_default();
            ids.extend(record.session().map(|s| s.id().to_bytes()));
            ids.extend(record.previous_sessions().map(|s| s.id().to_bytes()));
        }

        {
            let mut tx = store.transaction()?;
            if let Some(existing) = tx.get(Table::Meta, rows::META_ADDRESS)? {
                let existing =
                    super::read_address(&keys, &existing).unwrap_or_else(|| backup.address.clone());
                return Err(Error::DeviceExists(existing));
            }
            let mut put = |tx: &mut Box<dyn Transaction + '_>, table, key: &[u8], value: &[u8]| {
                put_sealed(&mut **tx, &keys, rng, table, key, value)
            };
            put(&mut tx, Table::Meta, rows::META_FORMAT, &[rows::FORMAT])?;
            put(
                &mut tx,
                Table::Meta,
                rows::META_ADDRESS,
                &rows::encode_session_row(&backup.address, &[]),
            )?;
            put(
                &mut tx,
                Table::Meta,
                rows::META_GENERATION,
                &generation.to_be_bytes(),
            )?;
            put(
                &mut tx,
                Table::Meta,
                rows::META_INDEX_KEY,
                &backup.index_key,
            )?;
            put(
                &mut tx,
                Table::Account,
                rows::ACCOUNT_ROW,
                &account.to_bytes(),
            )?;
            for (key, ids) in &restored {
                let list: Zeroizing<Vec<u8>> =
                    Zeroizing::new(ids.iter().flatten().copied().collect());
                put(&mut tx, Table::Meta, key, &list)?;
            }
            for (table, key, value) in &backup.other {
                put(&mut tx, *table, key, value)?;
            }
            for (key, value) in &backup.sessions {
                put(&mut tx, Table::Session, key, value)?;
            }
            tx.commit()?;
        }
        let identity = account.identity_key();
        Ok(Restored {
            device: Device {
                store,
                keys,
                address: backup.address.clone(),
                identity,
                config: SessionConfig::default(),
                seen: generation,
                cache: Cache {
                    generation,
                    account: Some(account),
                    ..Cache::default()
                },
            },
            prekey_upload,
            info,
        })
    }
}

impl Op<'_> {
    /// Whether the current session with `address` (loaded) was restored from a backup.
    pub(super) fn is_restored_session(&mut self, address: &Address) -> Result<bool, Error> {
        let Some(id) = self.cache.records.get(address).and_then(|r| r.session_id()) else {
            return Ok(false);
        };
        let key = self.keys.restored_key(address);
        let Some(sealed) = self.tx.get(Table::Meta, &key)? else {
            return Ok(false);
        };
        let plain = self
            .keys
            .open(Table::Meta, &key, &sealed)
            .ok_or(Error::StoredState {
                what: "restored session list",
                source: StateError::UnsealFailed,
            })?;
        let id = id.to_bytes();
        Ok(plain.chunks(KEY_LEN).any(|c| c == id))
    }
}

/// Every row of the store but its bookkeeping, unsealed, as the backup payload.
fn export(
    tx: &mut dyn Transaction,
    keys: &RowKeys,
    address: &Address,
) -> Result<Zeroizing<Vec<u8>>, Error> {
    let mut rows_out = Vec::new();
    for table in Table::ALL {
        for (key, sealed) in tx.scan(table, &[])? {
            if is_bookkeeping(table, &key) {
                continue;
            }
            let plain = keys.open(table, &key, &sealed).ok_or(Error::StoredState {
                what: "row",
                source: StateError::UnsealFailed,
            })?;
            rows_out.push(pb::BackupRow {
                table: u32::from(table.id()),
                key,
                value: plain.to_vec(),
            });
        }
    }
    let message = pb::DeviceBackup {
        index_key: keys.index_key().to_vec(),
        user_id: address.user_id().into(),
        device_id: address.device_id(),
        rows: rows_out,
    };
    Ok(Zeroizing::new(message.encode_to_vec()))
}

/// The address and record (without its skipped keys) of a session row's plain value.
fn decode_record_bytes(
    keys: &RowKeys,
    row_key: &[u8],
    value: &[u8],
) -> Result<(Address, SessionRecord), BackupError> {
    let (address, bytes) = rows::decode_session_row(value)
        .ok_or(BackupError::Malformed("a session row is malformed"))?;
    if keys.session_key(&address)[..] != *row_key {
        return Err(BackupError::Malformed(
            "a session row names another address than its key",
        ));
    }
    let record = SessionRecord::from_bytes_and_skipped(bytes, Vec::new())
        .map_err(|_| BackupError::Malformed("a session record does not decode"))?;
    Ok((address, record))
}

/// A decoded, checked backup payload.
struct Backup {
    index_key: [u8; KEY_LEN],
    address: Address,
    account: Zeroizing<Vec<u8>>,
    /// Session rows: (row key, plain value).
    sessions: Vec<(Vec<u8>, Zeroizing<Vec<u8>>)>,
    /// Restored-session lists already in the backup (a device restored before).
    restored: BTreeMap<Vec<u8>, BTreeSet<[u8; KEY_LEN]>>,
    /// Every other row, copied as it is.
    other: Vec<(Table, Vec<u8>, Zeroizing<Vec<u8>>)>,
}

impl Backup {
    /// Decodes and checks a payload: a 32-byte index key, a valid address, known tables,
    /// no bookkeeping row, no row twice, exactly one account row.
    fn decode(payload: &[u8]) -> Result<Self, BackupError> {
        let message = pb::DeviceBackup::decode(payload)
            .map_err(|_| BackupError::Malformed("the payload does not decode"))?;
        let index_key: [u8; KEY_LEN] = message
            .index_key
            .as_slice()
            .try_into()
            .map_err(|_| BackupError::Malformed("the index key is not 32 bytes"))?;
        let address = Address::new(message.user_id.as_str(), message.device_id)
            .map_err(|_| BackupError::Malformed("the device address is invalid"))?;
        let mut seen = BTreeSet::new();
        let mut account = None;
        let mut sessions = Vec::new();
        let mut restored = BTreeMap::new();
        let mut other = Vec::new();
        for row in &message.rows {
            let table = Table::ALL
                .into_iter()
                .find(|t| u32::from(t.id()) == row.table)
                .ok_or(BackupError::Malformed("a row names an unknown table"))?;
            if is_bookkeeping(table, &row.key) {
                return Err(BackupError::Malformed("a row is the store's bookkeeping"));
            }
            if !seen.insert((table, row.key.clone())) {
                return Err(BackupError::Malformed("a row appears twice"));
            }
            let value = Zeroizing::new(row.value.clone());
            match table {
                Table::Account if row.key == rows::ACCOUNT_ROW => account = Some(value),
                Table::Account => {
                    return Err(BackupError::Malformed("an unknown account row"));
                }
                Table::Session if row.key.len() == rows::SESSION_KEY_LEN => {
                    sessions.push((row.key.clone(), value));
                }
                Table::Meta if row.key.starts_with(rows::META_RESTORED_PREFIX) => {
                    if value.len() % KEY_LEN != 0 {
                        return Err(BackupError::Malformed(
                            "a restored-session list is malformed",
                        ));
                    }
                    let ids = value
                        .chunks(KEY_LEN)
                        .filter_map(|c| <[u8; KEY_LEN]>::try_from(c).ok())
                        .collect();
                    restored.insert(row.key.clone(), ids);
                }
                _ => other.push((table, row.key.clone(), value)),
            }
        }
        Ok(Self {
            index_key,
            address,
            account: account.ok_or(BackupError::Malformed("the account row is missing"))?,
            sessions,
            restored,
            other,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    fn rng() -> rand_chacha::ChaCha20Rng {
        use rand_core::SeedableRng;
        rand_chacha::ChaCha20Rng::seed_from_u64(0xb0)
    }

    /// A group row (a table this module never reads, in a format it does not know) comes
    /// back under its own key, readable with the restored store's keys, its bytes intact.
    #[test]
    fn rows_of_tables_backup_does_not_read_come_back_unchanged() {
        let mut r = rng();
        let now = Timestamp::from_unix_secs(1_764_000_000);
        let mut device = Device::create(
            Box::new(MemoryStore::new()),
            StorageKey::from_bytes([1; 32]),
            Address::new("alice", 1).expect("valid"),
            &mut r,
            now,
        )
        .expect("created");
        let row_key = device
            .keys
            .session_key(&Address::new("a group", 9).expect("valid"));
        {
            let mut tx = device.store.transaction().expect("tx");
            put_sealed(
                &mut *tx,
                &device.keys,
                &mut r,
                Table::Group,
                &row_key,
                b"opaque group state",
            )
            .expect("put");
            tx.commit().expect("commit");
        }
        let key = RecoveryKey::from_bytes([2; 32]);
        let blob = device.backup(&mut r, &key, now).expect("backup");
        let target = MemoryStore::new();
        let mut restored = Device::restore(
            Box::new(target.clone()),
            StorageKey::from_bytes([3; 32]),
            &blob,
            &key,
            &mut r,
            now,
        )
        .expect("restored")
        .device;
        // The restored store keeps the original index key: every row keeps its key.
        assert_eq!(restored.keys.index_key(), device.keys.index_key());
        let mut tx = restored.store.transaction().expect("tx");
        let sealed = tx
            .get(Table::Group, &row_key)
            .expect("get")
            .expect("the row");
        assert_eq!(
            &restored
                .keys
                .open(Table::Group, &row_key, &sealed)
                .expect("opens")[..],
            b"opaque group state"
        );
        // Sealed under the new storage key, not the old one.
        assert!(device.keys.open(Table::Group, &row_key, &sealed).is_none());
        drop(tx);
        // And a reopened restored store finds its index key again.
        drop(restored);
        let reopened =
            Device::open(Box::new(target), StorageKey::from_bytes([3; 32])).expect("opens");
        assert_eq!(reopened.keys.index_key(), device.keys.index_key());
    }

    #[test]
    fn a_payload_that_breaks_a_rule_is_malformed() {
        let index_key = alloc::vec![0u8; 32];
        let account = pb::BackupRow {
            table: 1,
            key: rows::ACCOUNT_ROW.to_vec(),
            value: alloc::vec![1],
        };
        let base = || pb::DeviceBackup {
            index_key: index_key.clone(),
            user_id: "alice".into(),
            device_id: 1,
            rows: alloc::vec![account.clone()],
        };
        let decode = |m: pb::DeviceBackup| Backup::decode(&m.encode_to_vec()).map(|_| ());
        assert_eq!(decode(base()), Ok(()));
        type Change = fn(&mut pb::DeviceBackup);
        let cases: [(&str, Change); 8] = [
            ("the index key is not 32 bytes", |m| m.index_key.push(0)),
            ("the device address is invalid", |m| m.user_id.clear()),
            ("a row names an unknown table", |m| {
                m.rows.push(pb::BackupRow {
                    table: 6,
                    key: alloc::vec![],
                    value: alloc::vec![],
                })
            }),
            ("a row is the store's bookkeeping", |m| {
                m.rows.push(pb::BackupRow {
                    table: 0,
                    key: rows::META_GENERATION.to_vec(),
                    value: alloc::vec![],
                })
            }),
            ("a row appears twice", |m| {
                let again = m.rows[0].clone();
                m.rows.push(again)
            }),
            ("an unknown account row", |m| m.rows[0].key.push(b'!')),
            ("the account row is missing", |m| m.rows.clear()),
            ("a restored-session list is malformed", |m| {
                let mut key = rows::META_RESTORED_PREFIX.to_vec();
                key.extend_from_slice(&[0; 32]);
                m.rows.push(pb::BackupRow {
                    table: 0,
                    key,
                    value: alloc::vec![0; 31],
                })
            }),
        ];
        for (want, change) in cases {
            let mut m = base();
            change(&mut m);
            assert_eq!(decode(m), Err(BackupError::Malformed(want)), "{want}");
        }
        assert_eq!(
            Backup::decode(&[0xff]).map(|_| ()),
            Err(BackupError::Malformed("the payload does not decode"))
        );
    }
}
