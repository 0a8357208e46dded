#!/usr/bin/env python3
"""Independent implementation of ratchetbox backups: the recovery key's code and sealed blobs.

Written from docs/PROTOCOL.md (section 16, "Backup") only, not from the Rust code, with the
`cryptography` package (HKDF-SHA256, AES-256-GCM, Argon2id). Argon2id is first checked
against RFC 9106's test vector (section 5.3), and HKDF against the standard library's hmac.
It prints the test vectors that tests/backup_vectors.rs checks:

    pip install cryptography
    python3 tests/data/backup_vectors.py > tests/data/backup_vectors.json

Contents (byte strings in hex):

- `codes`: recovery keys and their 77-character codes (16.1).
- `typed`: what a person typed for the code of key 0x00..0x1f, and either the key it reads
  as (`"key"`) or the error it gives (`"error"` with its fields; groups and positions count
  from 1).
- `blobs`: sealed blobs with fixed salts (16.2, 16.3), with the secret `s`, the key id, the
  sealing key, and the payload.
- `device_payload`: a DeviceBackup (16.4) encoded by hand as protobuf.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS = 13


def gf_double(x: int) -> int:
    x <<= 1
    if x & 0x20:
        x ^= 0x25
    return x


def damm(start: int, values: list[int]) -> int:
    i = start
    for v in values:
        i = gf_double(i) ^ v
    return i


def encode_code(key: bytes) -> str:
    assert len(key) == 32
    bits = int.from_bytes(key, "big") << 4  # 260 bits
    values = [(bits >> (5 * (51 - n))) & 31 for n in range(52)]
    groups = []
    for g in range(GROUPS):
        data = values[4 * g : 4 * g + 4]
        check = gf_double(damm(g, data))
        groups.append("".join(ALPHABET[v] for v in data) + ALPHABET[check])
    return "-".join(groups)


def decode_code(typed: str):
    """The key, or (error name, fields)."""
    chars = [c for c in typed if c not in " -"]
    # Characters beyond the 65th are counted, not checked.
    for n, c in enumerate(chars[:65]):
        u = c.upper() if c.isascii() else c
        if u not in ALPHABET:
            return ("InvalidCharacter", {"group": n // 5 + 1, "position": n % 5 + 1, "found": c})
    if len(chars) != 65:
        return ("WrongLength", {"found": len(chars), "expected": 65})
    values = [ALPHABET.index(c.upper()) for c in chars]
    for g in range(GROUPS):
        if damm(g, values[5 * g : 5 * g + 5]) != 0:
            return ("Checksum", {"group": g + 1})
    data = [v for g in range(GROUPS) for v in values[5 * g : 5 * g + 4]]
    bits = 0
    for v in data:
        bits = (bits << 5) | v
    if bits & 0xF:
        return ("NonCanonical", {"group": 13})
    return (bits >> 4).to_bytes(32, "big")


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    out = HKDF(algorithm=hashes.SHA256(), length=length, salt=salt or None, info=info).derive(ikm)
    # The same by hand (RFC 5869), so both agree.
    prk = hmac.new(salt or b"\0" * 32, ikm, hashlib.sha256).digest()
    t, okm, n = b"", b"", 1
    while len(okm) < length:
        t = hmac.new(prk, t + info + bytes([n]), hashlib.sha256).digest()
        okm += t
        n += 1
    assert okm[:length] == out
    return out


def argon2id(password: bytes, salt: bytes, m: int, t: int, p: int) -> bytes:
    return Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m).derive(password)


def check_argon2_rfc9106() -> None:
    # RFC 9106, section 5.3.
    out = Argon2id(
        salt=b"\x02" * 16, length=32, iterations=3, lanes=4, memory_cost=32,
        ad=b"\x04" * 12, secret=b"\x03" * 8,
    ).derive(b"\x01" * 32)
    assert out.hex() == "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"


def seal(kind: int, mode: int, created_at: int, generation: int, params, salt: bytes,
         secret: bytes, payload: bytes) -> dict:
    header = b"RBXBACKUP" + bytes([1, kind, mode]) + struct.pack(">QQ", created_at, generation)
    if mode == 2:
        header += struct.pack(">III", *params)
    key_id = hkdf(b"", secret, b"ratchetbox v1 backup key id", 16)
    key = hkdf(salt, secret, b"ratchetbox v1 backup key", 32)
    header += salt + key_id
    sealed = AESGCM(key).encrypt(b"\0" * 12, payload, header)
    return {
        "kind": kind,
        "created_at": created_at,
        "generation": generation,
        "salt": salt.hex(),
        "secret": secret.hex(),
        "key_id": key_id.hex(),
        "key": key.hex(),
        "payload": payload.hex(),
        "blob": (header + sealed).hex(),
    }


def varint(n: int) -> bytes:
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field_bytes(number: int, value: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(value)) + value


def field_varint(number: int, value: int) -> bytes:
    return varint(number << 3) + varint(value) if value else b""


def device_payload() -> dict:
    index_key = bytes(range(0x80, 0xA0))
    rows = [(1, b"account", b"plain account"), (5, b"\x01group row", b"opaque group state")]
    encoded = field_bytes(1, index_key) + field_bytes(2, b"alice") + field_varint(3, 7)
    for table, key, value in rows:
        row = field_varint(1, table) + field_bytes(2, key) + field_bytes(3, value)
        encoded += field_bytes(4, row)
    return {
        "index_key": index_key.hex(),
        "user_id": "alice",
        "device_id": 7,
        "rows": [{"table": t, "key": k.hex(), "value": v.hex()} for t, k, v in rows],
        "encoded": encoded.hex(),
    }


def main() -> None:
    check_argon2_rfc9106()
    keys = [bytes(32), b"\xff" * 32, bytes(range(32)), hashlib.sha256(b"ratchetbox").digest()]
    codes = []
    for k in keys:
        code = encode_code(k)
        assert decode_code(code) == k
        codes.append({"key": k.hex(), "code": code})

    base = encode_code(bytes(range(32)))
    plain = base.replace("-", "")
    typed = []

    def add(text: str) -> None:
        got = decode_code(text)
        if isinstance(got, bytes):
            typed.append({"typed": text, "key": got.hex()})
        else:
            typed.append({"typed": text, "error": {"name": got[0], **got[1]}})

    add(base)
    add(base.lower().replace("-", " "))
    add(plain)
    add(" ".join(plain[i : i + 5] for i in range(0, 65, 5)))
    # One substitution in each group; one swap of neighbours in each group and across
    # every boundary where the two characters differ.
    for g in range(GROUPS):
        pos = 5 * g + (g % 5)
        c = plain[pos]
        sub = ALPHABET[(ALPHABET.index(c) + 1 + g) % 32]
        add(plain[:pos] + sub + plain[pos + 1 :])
    for pos in range(0, 64, 3):
        if plain[pos] != plain[pos + 1]:
            add(plain[:pos] + plain[pos + 1] + plain[pos] + plain[pos + 2 :])
    add(plain[:7] + "O" + plain[8:])
    add(plain[:12] + "i" + plain[13:])
    add(plain[:64])
    add(plain + "0")
    add(plain.replace("0", "\t", 1) if "0" in plain else plain)
    # The last group with a padding bit set and a correct check.
    data = [0, 0, 0, 1]
    last = "".join(ALPHABET[v] for v in data) + ALPHABET[gf_double(damm(12, data))]
    add(encode_code(bytes(32)).replace("-", "")[:60] + last)

    created_at, generation = 1_764_000_000, 42
    blobs = [
        dict(mode="recovery_key", **seal(1, 1, created_at, generation, None,
             bytes(range(0x40, 0x60)), bytes(range(32)), b"ratchetbox backup vector payload")),
        dict(mode="recovery_key", **seal(1, 1, 0, 0, None, b"\x11" * 32, b"\xff" * 32, b"")),
    ]
    passphrase = "correct horse battery staple"
    salt = bytes(range(0x60, 0x80))
    secret = argon2id(passphrase.encode(), salt, 64, 1, 1)
    blobs.append(dict(mode="passphrase", passphrase=passphrase,
                      memory_kib=64, passes=1, lanes=1,
                      **seal(1, 2, created_at, 7, (64, 1, 1), salt, secret, b"passphrase payload")))

    json.dump({"codes": codes, "typed": typed, "blobs": blobs, "device_payload": device_payload()},
              sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
