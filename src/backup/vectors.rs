//! The recovery key's code and sealed blobs against `tests/data/backup_vectors.json`, made
//! by an independent Python implementation written from docs/PROTOCOL.md section 17 alone
//! (`python3 tests/data/backup_vectors.py | cmp - tests/data/backup_vectors.json`).

use alloc::string::String;
use alloc::vec::Vec;

use prost::Message as _;

use super::blob::{self, BackupInfo, SALT_LEN};
use super::passphrase::{self, Argon2Params};
use super::{BackupError, RecoveryKey, RecoveryKeyError, open, open_with_passphrase};
use crate::time::Timestamp;
use crate::wire::generated as pb;

fn vectors() -> serde_json::Value {
    serde_json::from_str(include_str!("../../tests/data/backup_vectors.json")).expect("valid JSON")
}

fn hex(v: &serde_json::Value) -> Vec<u8> {
    hex::decode(v.as_str().expect("a hex string")).expect("hex")
}

fn num(v: &serde_json::Value) -> usize {
    usize::try_from(v.as_u64().expect("a number")).expect("usize")
}

fn key32(v: &serde_json::Value) -> [u8; 32] {
    hex(v).try_into().expect("32 bytes")
}

#[test]
fn codes_match_the_independent_implementation() {
    let v = vectors();
    let codes = v["codes"].as_array().expect("a list");
    assert_eq!(codes.len(), 4);
    for c in codes {
        let key = RecoveryKey::from_bytes(key32(&c["key"]));
        let code = c["code"].as_str().expect("a code");
        assert_eq!(&*key.to_code(), code);
        assert_eq!(RecoveryKey::from_code(code), Ok(key));
    }
}

#[test]
fn typed_codes_read_or_fail_as_the_independent_implementation_says() {
    let v = vectors();
    let typed = v["typed"].as_array().expect("a list");
    assert_eq!(typed.len(), 44);
    for t in typed {
        let text = t["typed"].as_str().expect("text");
        let got = RecoveryKey::from_code(text);
        if t.get("key").is_some() {
            assert_eq!(
                got,
                Ok(RecoveryKey::from_bytes(key32(&t["key"]))),
                "{text:?}"
            );
            continue;
        }
        let e = &t["error"];
        let want = match e["name"].as_str().expect("a name") {
            "Checksum" => RecoveryKeyError::Checksum {
                group: num(&e["group"]),
            },
            "InvalidCharacter" => RecoveryKeyError::InvalidCharacter {
                group: num(&e["group"]),
                position: num(&e["position"]),
                found: e["found"]
                    .as_str()
                    .and_then(|s| s.chars().next())
                    .expect("a char"),
            },
            "WrongLength" => RecoveryKeyError::WrongLength {
                found: num(&e["found"]),
                expected: num(&e["expected"]),
            },
            "NonCanonical" => RecoveryKeyError::NonCanonical {
                group: num(&e["group"]),
            },
            other => panic!("unknown error {other}"),
        };
        assert_eq!(got, Err(want), "{text:?}");
    }
}

#[test]
fn blobs_match_the_independent_implementation() {
    let v = vectors();
    let blobs = v["blobs"].as_array().expect("a list");
    assert_eq!(blobs.len(), 3);
    for b in blobs {
        let salt: [u8; SALT_LEN] = hex(&b["salt"]).try_into().expect("32 bytes");
        let payload = hex(&b["payload"]);
        let expected = hex(&b["blob"]);
        let kind = u8::try_from(num(&b["kind"])).expect("u8");
        let created_at = Timestamp::from_unix_secs(b["created_at"].as_u64().expect("time"));
        let generation = b["generation"].as_u64().expect("generation");
        let secret = hex(&b["secret"]);
        assert_eq!(blob::key_id(&secret)[..], hex(&b["key_id"])[..]);
        let info = BackupInfo {
            kind,
            created_at,
            generation,
        };
        match b["mode"].as_str().expect("a mode") {
            "recovery_key" => {
                let key = RecoveryKey::from_bytes(key32(&b["secret"]));
                let sealed =
                    blob::seal_with_salt(&key, kind, created_at, generation, &salt, &payload);
                assert_eq!(sealed, expected);
                let (got, opened) = open(&expected, &key, kind).expect("opens");
                assert_eq!((got, &opened[..]), (info, &payload[..]));
            }
            "passphrase" => {
                let phrase = b["passphrase"].as_str().expect("a passphrase");
                let params = Argon2Params {
                    memory_kib: u32::try_from(num(&b["memory_kib"])).expect("u32"),
                    passes: u32::try_from(num(&b["passes"])).expect("u32"),
                    lanes: u32::try_from(num(&b["lanes"])).expect("u32"),
                };
                let sealed = passphrase::seal_with_salt(
                    phrase, params, kind, created_at, generation, &salt, &payload,
                )
                .expect("seals");
                assert_eq!(sealed, expected);
                let (got, opened) = open_with_passphrase(&expected, phrase, kind).expect("opens");
                assert_eq!((got, &opened[..]), (info, &payload[..]));
                assert_eq!(
                    open_with_passphrase(&expected, "another passphrase", kind),
                    Err(BackupError::WrongKey)
                );
            }
            other => panic!("unknown mode {other}"),
        }
    }
}

#[test]
fn the_device_payload_matches_the_independent_encoding() {
    let v = vectors();
    let d = &v["device_payload"];
    let encoded = hex(&d["encoded"]);
    let message = pb::DeviceBackup::decode(&encoded[..]).expect("decodes");
    assert_eq!(message.index_key, hex(&d["index_key"]));
    assert_eq!(
        message.user_id,
        String::from(d["user_id"].as_str().expect("a user"))
    );
    assert_eq!(
        u64::from(message.device_id),
        d["device_id"].as_u64().expect("a device")
    );
    let rows = d["rows"].as_array().expect("rows");
    assert_eq!(message.rows.len(), rows.len());
    for (row, want) in message.rows.iter().zip(rows) {
        assert_eq!(
            u64::from(row.table),
            want["table"].as_u64().expect("a table")
        );
        assert_eq!(row.key, hex(&want["key"]));
        assert_eq!(row.value, hex(&want["value"]));
    }
    assert_eq!(message.encode_to_vec(), encoded);
}
