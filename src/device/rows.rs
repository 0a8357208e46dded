//! How a device lays its state out in a [`Store`](crate::store::Store): row keys derived from
//! the storage key (a stolen database names no contact), and every value sealed under it,
//! bound to its table and key (docs/PROTOCOL.md section 15).

use alloc::vec::Vec;

use rand_core::CryptoRng;
use zeroize::Zeroizing;

use crate::address::{Address, DeviceId, check_user_id};
use crate::aead::{Cipher, NONCE_LEN, TAG_LEN, split_tag};
use crate::kdf::hkdf_sha256;
use crate::keys::KEY_LEN;
use crate::state::StorageKey;
use crate::store::Table;

/// The layout version, stored (sealed) under [`META_FORMAT`].
pub(super) const FORMAT: u8 = 1;

/// Meta row keys.
pub(super) const META_FORMAT: &[u8] = b"format";
pub(super) const META_GENERATION: &[u8] = b"generation";
pub(super) const META_ADDRESS: &[u8] = b"address";
/// The index key of a restored store (the one its rows were keyed with before the backup);
/// absent in a store made by `Device::create`, whose index key derives from its storage key.
pub(super) const META_INDEX_KEY: &[u8] = b"index_key";
/// Prefix of the Meta rows naming, per address, the sessions restored from a backup (which
/// never send again): `"restored:" || session row key`.
pub(super) const META_RESTORED_PREFIX: &[u8] = b"restored:";
/// The account's one row.
pub(super) const ACCOUNT_ROW: &[u8] = b"account";

/// Length of a user tag and of a device tag in a session row key.
const TAG_LEN_BYTES: usize = 16;
/// A session row key: user tag || device tag.
pub(super) const SESSION_KEY_LEN: usize = 2 * TAG_LEN_BYTES;
/// A skipped key's id: session id || remote ratchet key || u32 BE counter.
pub(super) const SKIPPED_ID_LEN: usize = 2 * KEY_LEN + 4;

const INDEX_LABEL: &[u8] = b"ratchetbox v1 store index key";
const TAG_LABEL: &[u8] = b"ratchetbox v1 store row key";
const SEAL_LABEL: &[u8] = b"ratchetbox v1 store row";
const SALT_LEN: usize = 16;

/// The keys derived from the storage key for one store.
pub(super) struct RowKeys {
    storage_key: StorageKey,
    index_key: Zeroizing<[u8; KEY_LEN]>,
}

impl RowKeys {
    pub(super) fn new(storage_key: StorageKey) -> Self {
        let index_key = hkdf_sha256::<KEY_LEN>(&[], &[storage_key.secret()], &[INDEX_LABEL]);
        Self {
            storage_key,
            index_key,
        }
    }

    /// Keys for a restored store: its own storage key, and the index key of the store the
    /// backup was made from (so every row keeps its key).
    pub(super) fn with_index_key(storage_key: StorageKey, index_key: [u8; KEY_LEN]) -> Self {
        Self {
            storage_key,
            index_key: Zeroizing::new(index_key),
        }
    }

    /// Gives back the storage key.
    pub(super) fn into_storage_key(self) -> StorageKey {
        self.storage_key
    }

    /// The index key the row keys derive from.
    pub(super) fn index_key(&self) -> &[u8; KEY_LEN] {
        &self.index_key
    }

    /// The Meta row naming the restored sessions of `address`.
    pub(super) fn restored_key(&self, address: &Address) -> Vec<u8> {
        let mut key = META_RESTORED_PREFIX.to_vec();
        key.extend_from_slice(&self.session_key(address));
        key
    }

    /// `HKDF-SHA256(salt = index key, IKM = for each part: u64 BE length || part,
    /// info = TAG_LABEL)`, 16 bytes: a keyed hash of the parts, unambiguous in their
    /// boundaries.
    fn tag(&self, parts: &[&[u8]]) -> [u8; TAG_LEN_BYTES] {
        let lengths: Vec<[u8; 8]> = parts
            .iter()
            .map(|p| (p.len() as u64).to_be_bytes())
            .collect();
        let mut ikm: Vec<&[u8]> = Vec::with_capacity(2 * parts.len());
        for (part, len) in parts.iter().zip(&lengths) {
            ikm.push(len);
            ikm.push(part);
        }
        *hkdf_sha256::<TAG_LEN_BYTES>(&self.index_key[..], &ikm, &[TAG_LABEL])
    }

    /// The prefix shared by the session rows of every device of `user_id`.
    pub(super) fn user_prefix(&self, user_id: &str) -> [u8; TAG_LEN_BYTES] {
        self.tag(&[b"user", user_id.as_bytes()])
    }

    /// The session row key of `address`.
    pub(super) fn session_key(&self, address: &Address) -> [u8; SESSION_KEY_LEN] {
        let mut key = [0u8; SESSION_KEY_LEN];
        key[..TAG_LEN_BYTES].copy_from_slice(&self.user_prefix(address.user_id()));
        key[TAG_LEN_BYTES..].copy_from_slice(&self.tag(&[
            b"device",
            address.user_id().as_bytes(),
            &address.device_id().to_be_bytes(),
        ]));
        key
    }

    /// The prefix of the skipped-key rows of one session of `address`'s record: the session
    /// row key, then `row_tag("session", session id)`.
    pub(super) fn skipped_session_prefix(&self, address: &Address, session: &[u8]) -> Vec<u8> {
        let mut key = Vec::with_capacity(SESSION_KEY_LEN + 2 * TAG_LEN_BYTES);
        key.extend_from_slice(&self.session_key(address));
        key.extend_from_slice(&self.tag(&[b"session", session]));
        key
    }

    /// The row key of one skipped message key: [`skipped_session_prefix`] of its session,
    /// then `row_tag("skipped", ratchet key || counter)` (64 bytes in all), so that the rows
    /// of one address, and of one session, share a prefix.
    ///
    /// [`skipped_session_prefix`]: Self::skipped_session_prefix
    pub(super) fn skipped_key(&self, address: &Address, id: &[u8; SKIPPED_ID_LEN]) -> Vec<u8> {
        let (session, slot) = id.split_at(KEY_LEN);
        let mut key = self.skipped_session_prefix(address, session);
        key.extend_from_slice(&self.tag(&[b"skipped", slot]));
        key
    }

    /// The row key of a group's row (table 5): `row_tag("group", group id)`.
    pub(super) fn group_key(&self, group_id: &[u8; 32]) -> [u8; TAG_LEN_BYTES] {
        self.tag(&[b"group", group_id])
    }

    /// Seals `plain` for row `key` of `table`: `salt (16) || AES-256-GCM(k, 0, plain, ad) ||
    /// tag`, `k = HKDF-SHA256(salt, storage key, label)`, `ad = label || table id || key`.
    pub(super) fn seal<R: CryptoRng + ?Sized>(
        &self,
        rng: &mut R,
        table: Table,
        key: &[u8],
        plain: &[u8],
    ) -> Vec<u8> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        self.seal_with_salt(&salt, table, key, plain)
    }

    fn seal_with_salt(
        &self,
        salt: &[u8; SALT_LEN],
        table: Table,
        key: &[u8],
        plain: &[u8],
    ) -> Vec<u8> {
        let cipher = Cipher::new(&self.row_cipher_key(salt));
        let mut out = Vec::with_capacity(SALT_LEN + plain.len() + TAG_LEN);
        out.extend_from_slice(salt);
        out.extend_from_slice(plain);
        let ad = associated_data(table, key);
        // A row is far below AES-GCM's 64 GiB limit: it was built in memory.
        let tag = cipher
            .seal_in_place(&[0; NONCE_LEN], &ad, &mut out[SALT_LEN..])
            .unwrap_or_default();
        out.extend_from_slice(&tag);
        out
    }

    /// Opens a value sealed by [`seal`](Self::seal) for the same table and key. `None` if it
    /// does not authenticate (a wrong storage key, a modified value, or a value moved from
    /// another row).
    pub(super) fn open(
        &self,
        table: Table,
        key: &[u8],
        sealed: &[u8],
    ) -> Option<Zeroizing<Vec<u8>>> {
        let (salt, rest) = sealed.split_at_checked(SALT_LEN)?;
        let (ciphertext, tag) = split_tag(rest)?;
        let cipher = Cipher::new(&self.row_cipher_key(salt));
        let mut plain = Zeroizing::new(ciphertext.to_vec());
        cipher
            .open_in_place(
                &[0; NONCE_LEN],
                &associated_data(table, key),
                &mut plain,
                tag,
            )
            .ok()?;
        Some(plain)
    }

    fn row_cipher_key(&self, salt: &[u8]) -> Zeroizing<[u8; KEY_LEN]> {
        hkdf_sha256::<KEY_LEN>(salt, &[self.storage_key.secret()], &[SEAL_LABEL])
    }
}

fn associated_data(table: Table, key: &[u8]) -> Vec<u8> {
    let mut ad = Vec::with_capacity(SEAL_LABEL.len() + 1 + key.len());
    ad.extend_from_slice(SEAL_LABEL);
    ad.push(table.id());
    ad.extend_from_slice(key);
    ad
}

/// A session row's plain value: `u16 BE user id length || user id || u32 BE device id ||
/// record bytes`.
pub(super) fn encode_session_row(address: &Address, record: &[u8]) -> Zeroizing<Vec<u8>> {
    let user = address.user_id().as_bytes();
    let mut out = Zeroizing::new(Vec::with_capacity(2 + user.len() + 4 + record.len()));
    // A user id is at most MAX_USER_ID_LEN (256) bytes.
    out.extend_from_slice(&(user.len() as u16).to_be_bytes());
    out.extend_from_slice(user);
    out.extend_from_slice(&address.device_id().to_be_bytes());
    out.extend_from_slice(record);
    out
}

/// Splits a session row's plain value into its address and record bytes.
pub(super) fn decode_session_row(plain: &[u8]) -> Option<(Address, &[u8])> {
    let (len, rest) = plain.split_first_chunk::<2>()?;
    let (user, rest) = rest.split_at_checked(usize::from(u16::from_be_bytes(*len)))?;
    let (device, record) = rest.split_first_chunk::<4>()?;
    let user = core::str::from_utf8(user).ok()?;
    check_user_id(user).ok()?;
    let device: DeviceId = u32::from_be_bytes(*device);
    Some((Address::new(user, device).ok()?, record))
}

#[cfg(test)]
mod tests {
    //! The layout against `tests/data/store_vectors.json`, made by an independent Python
    //! implementation written from docs/PROTOCOL.md section 15 alone
    //! (`python3 tests/data/store_vectors.py | cmp - tests/data/store_vectors.json`).

    use super::*;
    use alloc::string::String;

    fn vectors() -> serde_json::Value {
        serde_json::from_str(include_str!("../../tests/data/store_vectors.json"))
            .expect("valid JSON")
    }

    fn hex(v: &serde_json::Value) -> Vec<u8> {
        hex::decode(v.as_str().expect("a hex string")).expect("hex")
    }

    fn table(id: u64) -> Table {
        *Table::ALL
            .iter()
            .find(|t| u64::from(t.id()) == id)
            .expect("a known table id")
    }

    fn keys(v: &serde_json::Value) -> RowKeys {
        let key: [u8; KEY_LEN] = hex(&v["storage_key"]).try_into().expect("32 bytes");
        RowKeys::new(StorageKey::from_bytes(key))
    }

    #[test]
    fn index_key_and_row_keys_match_the_independent_implementation() {
        let v = vectors();
        let keys = keys(&v);
        assert_eq!(keys.index_key[..], hex(&v["index_key"])[..]);
        let rows = v["session_row_keys"].as_array().expect("a list");
        assert_eq!(rows.len(), 6);
        for row in rows {
            let user = String::from(row["user_id"].as_str().expect("a string"));
            assert_eq!(user.as_bytes(), &hex(&row["user_id_utf8"])[..]);
            let device = u32::try_from(row["device_id"].as_u64().expect("a number")).expect("u32");
            let address = Address::new(user.clone(), device).expect("a valid address");
            assert_eq!(
                keys.user_prefix(&user)[..],
                hex(&row["user_tag"])[..],
                "{address}"
            );
            assert_eq!(
                keys.session_key(&address)[..],
                hex(&row["row_key"])[..],
                "{address}"
            );
        }
    }

    #[test]
    fn sealed_rows_match_the_independent_implementation() {
        let v = vectors();
        let keys = keys(&v);
        let rows = v["sealed_rows"].as_array().expect("a list");
        assert_eq!(rows.len(), 7);
        for row in rows {
            let name = row["name"].as_str().expect("a name");
            let table = table(row["table"].as_u64().expect("a table id"));
            let key = hex(&row["key"]);
            let salt: [u8; SALT_LEN] = hex(&row["salt"]).try_into().expect("16 bytes");
            let plain = hex(&row["plain"]);
            let sealed = hex(&row["sealed"]);
            assert_eq!(
                keys.seal_with_salt(&salt, table, &key, &plain),
                sealed,
                "{name}"
            );
            let opened = keys.open(table, &key, &sealed).expect(name);
            assert_eq!(&opened[..], &plain[..], "{name}");
        }
    }

    #[test]
    fn skipped_rows_match_the_independent_implementation() {
        let v = vectors();
        let keys = keys(&v);
        let bob = Address::new("bob", 7).expect("valid");
        let rows = v["skipped_rows"].as_array().expect("a list");
        assert_eq!(rows.len(), 4);
        for row in rows {
            let sealed = hex(&row["sealed"]);
            let table = table(row["table"].as_u64().expect("a table id"));
            assert_eq!(table, Table::SkippedKey);
            if row["opens"].as_bool().expect("opens") {
                let id: [u8; SKIPPED_ID_LEN] = hex(&row["id"]).try_into().expect("68 bytes");
                let key = keys.skipped_key(&bob, &id);
                assert_eq!(key, hex(&row["key"]));
                assert_eq!(
                    keys.skipped_session_prefix(&bob, &id[..KEY_LEN]),
                    hex(&row["prefix"])
                );
                let salt: [u8; SALT_LEN] = hex(&row["salt"]).try_into().expect("16 bytes");
                let plain = hex(&row["plain"]);
                assert_eq!(keys.seal_with_salt(&salt, table, &key, &plain), sealed);
                assert_eq!(
                    &keys.open(table, &key, &sealed).expect("opens")[..],
                    &plain[..]
                );
            } else {
                assert!(keys.open(table, &hex(&row["key"]), &sealed).is_none());
            }
        }
    }

    #[test]
    fn negative_rows_do_not_open() {
        let v = vectors();
        let keys = keys(&v);
        let rows = v["negative"].as_array().expect("a list");
        assert_eq!(rows.len(), 5);
        for row in rows {
            let name = row["name"].as_str().expect("a name");
            let table = table(row["table"].as_u64().expect("a table id"));
            assert!(
                keys.open(table, &hex(&row["key"]), &hex(&row["sealed"]))
                    .is_none(),
                "{name} opened"
            );
        }
    }

    #[test]
    fn a_session_row_decodes_only_in_its_exact_form() {
        let address = Address::new("bob", 7).expect("valid");
        let encoded = encode_session_row(&address, b"record");
        let (decoded, record) = decode_session_row(&encoded).expect("decodes");
        assert_eq!((decoded, record), (address, &b"record"[..]));
        // A length that runs past the end, an empty or over-long user id, invalid UTF-8.
        assert!(decode_session_row(&[0, 9, b'b']).is_none());
        assert!(decode_session_row(&[0, 0, 0, 0, 0, 1]).is_none());
        assert!(decode_session_row(&[0, 1, 0xff, 0, 0, 0, 1]).is_none());
        let mut long = alloc::vec![1u8, 1];
        long.extend_from_slice(&[b'u'; 257]);
        long.extend_from_slice(&[0, 0, 0, 1]);
        assert!(decode_session_row(&long).is_none());
    }
}
