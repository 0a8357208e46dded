#!/usr/bin/env python3
"""Independent implementation of the ratchetbox device store's row keys and sealed values.

Written from docs/PROTOCOL.md (section 15, "Device store") only, not from the Rust code, with
the `cryptography` package (HKDF-SHA256, AES-256-GCM); HKDF is also written out with the
standard library's hmac and the two are checked against each other before anything is
printed. It prints the test vectors for the Rust store to be checked against:

    pip install cryptography
    python3 tests/data/store_vectors.py > tests/data/store_vectors.json

Contents (all byte strings in hex):

- `storage_key` S (bytes 0x00..0x1f) and the `index_key` derived from it (15.1).
- `session_row_keys`: for each address, the 16-byte user tag tag("user", user id) and the
  32-byte session row key tag("user", user id) || tag("device", user id, u32 BE device id)
  (15.2). User ids are encoded as UTF-8, as given (no normalization is applied; the one
  non-ASCII id below is written in NFC, precomposed).
- `sealed_rows`: one value per row kind of 15.2, sealed with the fixed salt 0xa0..0xaf
  (a stand-in for the 16 fresh random bytes of 15.3). The Rust test seals the same plain
  value under the same table id, row key and salt and must produce exactly `sealed`, and
  opens `sealed` to `plain`. The account and session record plain forms (section 8.1) are
  stand-in ASCII strings: the sealing layer treats them as opaque bytes.
- `negative`: values that must not open under the given storage key, table id and row key,
  each with the reason.

Every positive value is checked to open again to its plain value, and every negative one to
fail, with this script's own `open_value`, before anything is printed.
"""

import hashlib
import hmac
import json
import struct
import sys
import unicodedata

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

LABEL_INDEX_KEY = b"ratchetbox v1 store index key"
LABEL_ROW_KEY = b"ratchetbox v1 store row key"
LABEL_ROW = b"ratchetbox v1 store row"  # the value key's info and the AD's prefix alike
SALT_LEN = 16
GCM_TAG_LEN = 16
NONCE = bytes(12)

TABLE_META, TABLE_ACCOUNT, TABLE_SESSION = 0, 1, 2

STORAGE_KEY = bytes(range(0x20))
OTHER_STORAGE_KEY = b"\xff" * 32
FIXED_SALT = bytes(range(0xA0, 0xB0))


def hkdf(salt, ikm, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hkdf_stdlib(salt, ikm, info, length):
    """RFC 5869 with hmac/hashlib, to cross-check the `cryptography` one."""
    prk = hmac.new(salt, ikm, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def index_key(storage_key):
    # salt = "" (zero-length); HMAC pads it to the block size with zeros, so this equals
    # RFC 5869's "not provided" salt of 32 zero bytes as well.
    return hkdf(b"", storage_key, LABEL_INDEX_KEY, 32)


def tag(storage_key, *parts):
    ikm = b"".join(struct.pack(">Q", len(p)) + p for p in parts)
    return hkdf(index_key(storage_key), ikm, LABEL_ROW_KEY, 16)


def user_id_bytes(user_id):
    return user_id.encode("utf-8")


def encode_address(user_id, device_id):
    uid = user_id_bytes(user_id)
    assert len(uid) <= 0xFFFF
    return struct.pack(">H", len(uid)) + uid + struct.pack(">I", device_id)


def user_tag(storage_key, user_id):
    return tag(storage_key, b"user", user_id_bytes(user_id))


def session_row_key(storage_key, user_id, device_id):
    return user_tag(storage_key, user_id) + tag(
        storage_key, b"device", user_id_bytes(user_id), struct.pack(">I", device_id))


def row_value_key(storage_key, salt):
    return hkdf(salt, storage_key, LABEL_ROW, 32)


def associated_data(table, row_key):
    return LABEL_ROW + bytes([table]) + row_key


def seal_value(storage_key, table, row_key, plain, salt):
    assert len(salt) == SALT_LEN
    k = row_value_key(storage_key, salt)
    # AESGCM.encrypt returns ciphertext || 16-byte tag: value = salt || ciphertext || tag.
    return salt + AESGCM(k).encrypt(NONCE, plain, associated_data(table, row_key))


class OpenError(Exception):
    pass


def open_value(storage_key, table, row_key, value):
    if len(value) < SALT_LEN + GCM_TAG_LEN:
        raise OpenError("shorter than salt || tag")
    salt, body = value[:SALT_LEN], value[SALT_LEN:]
    try:
        return AESGCM(row_value_key(storage_key, salt)).decrypt(
            NONCE, body, associated_data(table, row_key))
    except InvalidTag as e:
        raise OpenError("authentication failed") from e


ADDRESSES = [
    ("alice", 1),
    ("alice", 2),
    ("bob", 7),
    ("a", 0),
    ("\u00fcn\u00efc\u00f8d\u00e9", 4294967295),  # "ünïcødé", NFC
    ("u" * 256, 3),
]


def session_row_keys():
    out = []
    for user_id, device_id in ADDRESSES:
        out.append({
            "user_id": user_id,
            "user_id_utf8": user_id_bytes(user_id).hex(),
            "device_id": device_id,
            "user_tag": user_tag(STORAGE_KEY, user_id).hex(),
            "row_key": session_row_key(STORAGE_KEY, user_id, device_id).hex(),
        })
    return out


def sealed_row(name, table, row_key, plain, comment=None):
    sealed = seal_value(STORAGE_KEY, table, row_key, plain, FIXED_SALT)
    row = {
        "name": name,
        "table": table,
        "key": row_key.hex(),
        "salt": FIXED_SALT.hex(),
        "plain": plain.hex(),
        "sealed": sealed.hex(),
    }
    if comment:
        row["comment"] = comment
    return row


def sealed_rows():
    bob_key = session_row_key(STORAGE_KEY, "bob", 7)
    return [
        sealed_row("meta format", TABLE_META, b"format", b"\x01"),
        sealed_row("meta address alice/1", TABLE_META, b"address", encode_address("alice", 1)),
        sealed_row("meta generation 1", TABLE_META, b"generation", struct.pack(">Q", 1)),
        sealed_row("meta generation 2^64-1", TABLE_META, b"generation",
                   struct.pack(">Q", 2**64 - 1)),
        sealed_row("account", TABLE_ACCOUNT, b"account", b"account plain form"),
        sealed_row("session bob/7", TABLE_SESSION, bob_key,
                   encode_address("bob", 7) + b"record plain form"),
        # Section 15.3 sets no minimum plaintext length and AES-GCM seals an empty one, so
        # a value of exactly 32 bytes (salt || tag) opens, to an empty plain value: it is a
        # positive vector of the sealing layer. (No row of 15.2 has an empty plain value,
        # so the row decoder above the sealing layer would reject it as a "format" value;
        # that is not what this vector tests.)
        sealed_row("empty plain value (32-byte value)", TABLE_META, b"format", b"",
                   comment="salt || tag only: section 15.3 allows it; opens to an empty "
                           "plain value (a row decoder would then reject it as a format "
                           "value, which is another layer)"),
    ]


def negatives(rows):
    fmt = next(r for r in rows if r["name"] == "meta format")
    fmt_sealed = bytes.fromhex(fmt["sealed"])
    flipped = bytearray(fmt_sealed)
    flipped[-1] ^= 0x01
    other_key = seal_value(OTHER_STORAGE_KEY, TABLE_META, b"format", b"\x01", FIXED_SALT)

    def neg(name, table, row_key, sealed, reason):
        return {"name": name, "table": table, "key": row_key.hex(), "sealed": sealed.hex(),
                "reason": reason}

    return [
        neg("format value under key generation", TABLE_META, b"generation", fmt_sealed,
            "wrong row key in the associated data (a value copied to another row)"),
        neg("format value under table 1", TABLE_ACCOUNT, b"format", fmt_sealed,
            "wrong table id in the associated data (a value copied to another table)"),
        neg("format value, last byte flipped", TABLE_META, b"format", bytes(flipped),
            "modified value (GCM tag does not verify)"),
        neg("format value sealed under another storage key", TABLE_META, b"format", other_key,
            "sealed under storage key ff*32, opened under the vectors' storage_key"),
        neg("format value truncated to 15 bytes", TABLE_META, b"format", fmt_sealed[:15],
            "shorter than the 16-byte salt (and the 16-byte tag)"),
    ]


def self_checks():
    for salt, ikm, info, n in [(b"", STORAGE_KEY, LABEL_INDEX_KEY, 32),
                               (FIXED_SALT, STORAGE_KEY, LABEL_ROW, 32),
                               (bytes(32), b"x" * 70, LABEL_ROW_KEY, 16)]:
        assert hkdf(salt, ikm, info, n) == hkdf_stdlib(salt, ikm, info, n)
    # An absent salt is the same as a zero-length one (RFC 5869: HashLen zero bytes).
    assert index_key(STORAGE_KEY) == HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                                          info=LABEL_INDEX_KEY).derive(STORAGE_KEY)
    assert unicodedata.is_normalized("NFC", ADDRESSES[4][0])
    assert len(user_id_bytes(ADDRESSES[5][0])) == 256
    # All rows of one user's devices share the 16-byte prefix tag("user", user id).
    a1 = session_row_key(STORAGE_KEY, "alice", 1)
    a2 = session_row_key(STORAGE_KEY, "alice", 2)
    assert a1[:16] == a2[:16] and a1 != a2 and len(a1) == 32
    assert session_row_key(STORAGE_KEY, "bob", 7)[:16] != a1[:16]


def main():
    self_checks()
    rows = sealed_rows()
    negs = negatives(rows)
    for r in rows:
        sealed = bytes.fromhex(r["sealed"])
        assert len(sealed) == SALT_LEN + len(bytes.fromhex(r["plain"])) + GCM_TAG_LEN
        assert open_value(STORAGE_KEY, r["table"], bytes.fromhex(r["key"]), sealed) \
            == bytes.fromhex(r["plain"]), r["name"]
    for n in negs:
        try:
            open_value(STORAGE_KEY, n["table"], bytes.fromhex(n["key"]), bytes.fromhex(n["sealed"]))
        except OpenError:
            continue
        raise AssertionError("negative vector opened: " + n["name"])
    # The other-storage-key value does open under its own key (so it fails for the key alone).
    assert open_value(OTHER_STORAGE_KEY, TABLE_META, b"format",
                      bytes.fromhex(negs[3]["sealed"])) == b"\x01"

    vectors = {
        "description": "ratchetbox device store (docs/PROTOCOL.md section 15): row keys and "
                       "sealed values; generated by tests/data/store_vectors.py (Python "
                       "`cryptography`), independently of the Rust implementation",
        "encoding": "user ids are UTF-8; row keys of meta and account are the ASCII names; "
                    "tag parts are each u64 BE length || bytes; value = salt || "
                    "AES-256-GCM ciphertext || 16-byte GCM tag",
        "storage_key": STORAGE_KEY.hex(),
        "index_key": index_key(STORAGE_KEY).hex(),
        "session_row_keys": session_row_keys(),
        "sealed_rows": rows,
        "negative": negs,
    }
    json.dump(vectors, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
