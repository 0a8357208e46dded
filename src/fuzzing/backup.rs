//! The backup decoder: recovery-key codes, sealed blobs and device payloads.
//!
//! The first input byte picks the layer, the rest is its input:
//! - `0`: a blob, opened with the fixed recovery key. Invariants: no panic; a blob that
//!   opens is exactly the seal of its payload under its own header and salt (one encoding per
//!   content); its payload restores as in `2`.
//! - `1`: typed text (UTF-8, lossily), read as a recovery key code. Invariant: a code that
//!   reads gives a key whose own code reads back to the same key.
//! - anything else: a device backup payload, sealed under the fixed key and restored into an
//!   empty memory store. Invariants: a refused payload writes nothing; a restored device
//!   backs up again and that backup restores too.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use super::{T0, rng};
use crate::backup::blob::{self, KIND_DEVICE, SALT_LEN};
use crate::backup::{self as core_backup, RecoveryKey};
use crate::store::{MemoryStore, Store, Table};
use crate::{Device, StorageKey};

/// The recovery key every backup of this target is sealed under.
pub(crate) fn recovery_key() -> RecoveryKey {
    RecoveryKey::from_bytes([0x2a; 32])
}

fn rows(store: &mut MemoryStore) -> Vec<(Table, Vec<u8>, Vec<u8>)> {
    let Ok(mut tx) = store.transaction() else {
        panic!("the memory store always opens a transaction");
    };
    let mut out = Vec::new();
    for table in Table::ALL {
        for (k, v) in tx.scan(table, &[]).unwrap_or_default() {
            out.push((table, k, v));
        }
    }
    out
}

/// Restores `payload` (sealed under the fixed key) and checks the invariants.
fn restore(payload: &[u8]) {
    let key = recovery_key();
    let blob = blob::seal_with_salt(&key, KIND_DEVICE, T0, 1, &[7; SALT_LEN], payload);
    let store = MemoryStore::new();
    let mut r = rng(0xbac);
    match Device::restore(
        Box::new(store.clone()),
        StorageKey::from_bytes([1; 32]),
        &blob,
        &key,
        &mut r,
        T0,
    ) {
        Err(_) => assert!(
            rows(&mut store.clone()).is_empty(),
            "a refused restore wrote to the store"
        ),
        Ok(restored) => {
            let mut device = restored.device;
            let again = device
                .backup(&mut r, &key, T0)
                .expect("a restored device backs up");
            let twice = Device::restore(
                Box::new(MemoryStore::new()),
                StorageKey::from_bytes([2; 32]),
                &again,
                &key,
                &mut r,
                T0,
            )
            .expect("a backup of a restored device restores");
            assert_eq!(twice.device.identity_key(), device.identity_key());
            assert_eq!(twice.device.address(), device.address());
        }
    }
}

/// The fuzz target `backup`: see the module docs.
pub fn backup(data: &[u8]) {
    let Some((&layer, input)) = data.split_first() else {
        return;
    };
    match layer {
        0 => {
            let key = recovery_key();
            if let Ok((info, payload)) = core_backup::open(input, &key, KIND_DEVICE) {
                let header = blob::parse(input, KIND_DEVICE, blob::MODE_RECOVERY_KEY)
                    .expect("a blob that opens parses");
                let resealed = blob::seal_with_salt(
                    &key,
                    info.kind,
                    info.created_at,
                    info.generation,
                    header.salt,
                    &payload,
                );
                assert_eq!(resealed, input, "a blob that opens is not its own re-seal");
                restore(&payload);
            }
        }
        1 => {
            let text = String::from_utf8_lossy(input);
            if let Ok(key) = RecoveryKey::from_code(&text) {
                let code = key.to_code();
                assert_eq!(
                    RecoveryKey::from_code(&code).ok(),
                    Some(key),
                    "a code's key does not read back from its own code"
                );
            }
        }
        _ => restore(input),
    }
}

/// Seeds: a device's backup blob, its payload, and a code.
pub(crate) fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    let mut r = rng(0xbac5eed);
    let key = recovery_key();
    let mut device = Device::create(
        Box::new(MemoryStore::new()),
        StorageKey::from_bytes([3; 32]),
        crate::Address::new("alice", 1).expect("a valid address"),
        &mut r,
        T0,
    )
    .expect("a new device");
    let blob_bytes = device.backup(&mut r, &key, T0).expect("backs up");
    let (_, payload) = core_backup::open(&blob_bytes, &key, KIND_DEVICE).expect("opens");
    let mut blob_seed = alloc::vec![0u8];
    blob_seed.extend_from_slice(&blob_bytes);
    let mut payload_seed = alloc::vec![2u8];
    payload_seed.extend_from_slice(&payload);
    let mut code_seed = alloc::vec![1u8];
    code_seed.extend_from_slice(key.to_code().as_bytes());
    alloc::vec![
        ("blob", blob_seed),
        ("payload", payload_seed),
        ("code", code_seed),
    ]
}
