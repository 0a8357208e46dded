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
- `skipped_rows`: skipped message key rows (table 3, 15.2 with section 8.3) of the address
  ("bob", 7), session id = bytes 0x40..0x5f, remote ratchet key = bytes 0x60..0x7f (both
  canonical X25519 encodings), counters 0, 1 and 4294967295. Each positive entry
  (`"opens": true`) gives
  - `id`: the 68-byte id of section 8.3, session id || remote ratchet key || u32 BE counter;
  - `prefix`: the 48 bytes session row key || tag("session", session id), shared by every
    row of the session (the prefix the device deletes a session's rows by);
  - `key`: the 64-byte row key prefix || tag("skipped", remote ratchet key || u32 BE
    counter). The 36 bytes remote ratchet key || u32 BE counter are ONE tag part (one u64 BE
    length, 36), the notation's `||` read as concatenation and `,` as the part separator,
    as in tag("device", user id, u32 BE device id); the labels "session" and "skipped" are
    parts with their length, like "user" and "device";
  - `plain`: id || the ASCII bytes "row value N" (N the counter in decimal), a stand-in for
    the row value of section 8.3 (the sealing layer treats it as opaque bytes);
  - `salt`, `sealed`: as in `sealed_rows`, under table id 3 and `key`.
  The one negative entry (`"opens": false`, with a `reason`, no `plain`) is the counter-0
  row's sealed value presented under the counter-1 row key: it must not open.

Every positive value is checked to open again to its plain value, and every negative one to
fail, with this script's own `open_value`, before anything is printed. For `skipped_rows`
also: every row key is 64 bytes and starts with the row's 48-byte prefix, all rows share
that prefix, and its first 32 bytes are the session row key of ("bob", 7) in
`session_row_keys`.
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

TABLE_META, TABLE_ACCOUNT, TABLE_SESSION, TABLE_SKIPPED_KEY = 0, 1, 2, 3

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


SKIPPED_ADDRESS = ("bob", 7)
SKIPPED_SESSION_ID = bytes(range(0x40, 0x60))
SKIPPED_REMOTE_RATCHET_KEY = bytes(range(0x60, 0x80))
SKIPPED_COUNTERS = [0, 1, 4294967295]


def skipped_id(session_id, remote_ratchet_key, counter):
    """Section 8.3's row id: session id (32) || remote ratchet key (32) || u32 BE counter."""
    assert len(session_id) == 32 and len(remote_ratchet_key) == 32
    return session_id + remote_ratchet_key + struct.pack(">I", counter)


def skipped_session_prefix(storage_key, user_id, device_id, session_id):
    """session row key || tag("session", session id): 48 bytes."""
    return session_row_key(storage_key, user_id, device_id) + tag(
        storage_key, b"session", session_id)


def skipped_row_key(storage_key, user_id, device_id, session_id, remote_ratchet_key, counter):
    # remote ratchet key || u32 BE counter is one 36-byte part (see the docstring).
    return skipped_session_prefix(storage_key, user_id, device_id, session_id) + tag(
        storage_key, b"skipped", remote_ratchet_key + struct.pack(">I", counter))


def skipped_rows():
    user_id, device_id = SKIPPED_ADDRESS
    prefix = skipped_session_prefix(STORAGE_KEY, user_id, device_id, SKIPPED_SESSION_ID)
    out = []
    for counter in SKIPPED_COUNTERS:
        row_id = skipped_id(SKIPPED_SESSION_ID, SKIPPED_REMOTE_RATCHET_KEY, counter)
        key = skipped_row_key(STORAGE_KEY, user_id, device_id, SKIPPED_SESSION_ID,
                              SKIPPED_REMOTE_RATCHET_KEY, counter)
        plain = row_id + b"row value %d" % counter
        out.append({
            "name": "skipped key %s/%d counter %d" % (user_id, device_id, counter),
            "opens": True,
            "user_id": user_id,
            "device_id": device_id,
            "session_id": SKIPPED_SESSION_ID.hex(),
            "remote_ratchet_key": SKIPPED_REMOTE_RATCHET_KEY.hex(),
            "counter": counter,
            "id": row_id.hex(),
            "prefix": prefix.hex(),
            "table": TABLE_SKIPPED_KEY,
            "key": key.hex(),
            "salt": FIXED_SALT.hex(),
            "plain": plain.hex(),
            "sealed": seal_value(STORAGE_KEY, TABLE_SKIPPED_KEY, key, plain,
                                 FIXED_SALT).hex(),
        })
    by_counter = {r["counter"]: r for r in out}
    out.append({
        "name": "skipped key %s/%d counter 0 value under the counter 1 row key"
                % (user_id, device_id),
        "opens": False,
        "table": TABLE_SKIPPED_KEY,
        "key": by_counter[1]["key"],
        "sealed": by_counter[0]["sealed"],
        "reason": "wrong row key in the associated data (a skipped-key value copied to "
                  "another row of the same session)",
    })
    return out


def check_skipped_rows(skipped, session_keys):
    bob = next(a for a in session_keys
               if (a["user_id"], a["device_id"]) == SKIPPED_ADDRESS)
    bob_row_key = bytes.fromhex(bob["row_key"])
    positives = [r for r in skipped if r["opens"]]
    negatives_ = [r for r in skipped if not r["opens"]]
    assert [r["counter"] for r in positives] == SKIPPED_COUNTERS and len(negatives_) == 1
    prefixes = {r["prefix"] for r in positives}
    assert len(prefixes) == 1, "rows of one session must share the 48-byte prefix"
    prefix = bytes.fromhex(prefixes.pop())
    assert len(prefix) == 48 and prefix[:32] == bob_row_key
    keys = set()
    for r in positives:
        row_id, key = bytes.fromhex(r["id"]), bytes.fromhex(r["key"])
        plain, sealed = bytes.fromhex(r["plain"]), bytes.fromhex(r["sealed"])
        assert len(row_id) == 68 and row_id[:32] == SKIPPED_SESSION_ID
        assert row_id[32:64] == SKIPPED_REMOTE_RATCHET_KEY
        assert row_id[64:] == struct.pack(">I", r["counter"])
        assert len(key) == 64 and key[:48] == prefix and key[:32] == bob_row_key
        assert plain == row_id + ("row value %d" % r["counter"]).encode("ascii")
        assert r["table"] == TABLE_SKIPPED_KEY and r["salt"] == FIXED_SALT.hex()
        assert len(sealed) == SALT_LEN + len(plain) + GCM_TAG_LEN
        assert open_value(STORAGE_KEY, TABLE_SKIPPED_KEY, key, sealed) == plain, r["name"]
        keys.add(key)
    assert len(keys) == len(positives)
    # The two tags written out byte by byte with the stdlib HKDF: "session" and "skipped" are
    # parts with their u64 BE length; remote ratchet key || u32 BE counter is one 36-byte part.
    ik = hkdf_stdlib(b"", STORAGE_KEY, LABEL_INDEX_KEY, 32)
    session_ikm = struct.pack(">Q", 7) + b"session" + struct.pack(">Q", 32) + SKIPPED_SESSION_ID
    assert prefix[32:] == hkdf_stdlib(ik, session_ikm, LABEL_ROW_KEY, 16)
    for r in positives:
        skipped_ikm = (struct.pack(">Q", 7) + b"skipped" + struct.pack(">Q", 36)
                       + SKIPPED_REMOTE_RATCHET_KEY + struct.pack(">I", r["counter"]))
        assert bytes.fromhex(r["key"])[48:] == hkdf_stdlib(ik, skipped_ikm, LABEL_ROW_KEY, 16)
    # 4294967295 is the largest u32 counter: it is encoded ff ff ff ff.
    assert bytes.fromhex(positives[-1]["id"])[64:] == b"\xff" * 4
    # Both 32-byte keys are canonical X25519 encodings (little-endian, below 2^255 - 19).
    for k in (SKIPPED_SESSION_ID, SKIPPED_REMOTE_RATCHET_KEY):
        assert int.from_bytes(k, "little") < 2**255 - 19
    n = negatives_[0]
    try:
        open_value(STORAGE_KEY, n["table"], bytes.fromhex(n["key"]), bytes.fromhex(n["sealed"]))
    except OpenError:
        pass
    else:
        raise AssertionError("negative vector opened: " + n["name"])
    # ...and it fails for the key alone: it opens under the counter-0 row key it was sealed for.
    counter0 = positives[0]
    assert n["sealed"] == counter0["sealed"] and n["key"] != counter0["key"]
    assert open_value(STORAGE_KEY, TABLE_SKIPPED_KEY, bytes.fromhex(counter0["key"]),
                      bytes.fromhex(n["sealed"])) == bytes.fromhex(counter0["plain"])


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

    session_keys = session_row_keys()
    skipped = skipped_rows()
    check_skipped_rows(skipped, session_keys)

    vectors = {
        "description": "ratchetbox device store (docs/PROTOCOL.md section 15): row keys and "
                       "sealed values; generated by tests/data/store_vectors.py (Python "
                       "`cryptography`), independently of the Rust implementation",
        "encoding": "user ids are UTF-8; row keys of meta and account are the ASCII names; "
                    "tag parts are each u64 BE length || bytes; value = salt || "
                    "AES-256-GCM ciphertext || 16-byte GCM tag",
        "storage_key": STORAGE_KEY.hex(),
        "index_key": index_key(STORAGE_KEY).hex(),
        "session_row_keys": session_keys,
        "sealed_rows": rows,
        "negative": negs,
        "skipped_rows": skipped,
    }
    json.dump(vectors, sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
