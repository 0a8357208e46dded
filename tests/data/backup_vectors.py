#!/usr/bin/env python3
"""Independent implementation of docs/PROTOCOL.md section 17 (Backup), 17.1 to 17.4.

Written from the text of docs/PROTOCOL.md alone (sections 1, 2, 15 and 16), without
reading the Rust code or tests/data/backup_vectors.py. Only the *inputs* of each vector
(keys, typed strings, salts, timestamps, generations, payloads, passphrase and Argon2id
parameters, device payload fields) are taken from the fixed lists below; every output
(codes, decoded keys or errors, key ids, keys, secrets, blobs, protobuf encoding) is
computed here.

    python3 tests/data/backup_vectors.py | cmp - tests/data/backup_vectors.json
    python3 tests/data/backup_vectors.py --self-test   # extra checks, no JSON

Dependencies: Python 3 standard library and `cryptography` (HKDF, AES-GCM, Argon2id).
"""

import json
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.argon2 import Argon2id
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# ---------------------------------------------------------------------------
# 17.1 Recovery key
# ---------------------------------------------------------------------------

ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
VALUE = {c: i for i, c in enumerate(ALPHABET)}
CODE_CHARS = 65  # 13 groups of 4 values + 1 check character


def gf_double(x):
    """2x in GF(32) with polynomial x^5 + x^2 + 1 (0x25)."""
    x <<= 1
    if x & 0x20:
        x ^= 0x25
    return x


def gf_step(i, v):
    """x * y = 2x + y (addition is XOR)."""
    return gf_double(i) ^ v


def encode_recovery_key(key):
    assert len(key) == 32
    n = int.from_bytes(key, "big") << 4  # 260 bits, 4 zero bits appended
    values = [(n >> (5 * (51 - j))) & 31 for j in range(52)]  # MSB first
    groups = []
    for g in range(13):
        vs = values[4 * g:4 * g + 4]
        i = g
        for v in vs:
            i = gf_step(i, v)
        check = gf_double(i)
        assert gf_step(i, check) == 0
        groups.append("".join(ALPHABET[v] for v in vs) + ALPHABET[check])
    return "-".join(groups)


class CodeError(Exception):
    def __init__(self, fields):
        super().__init__(fields)
        self.fields = fields


def decode_recovery_key(typed):
    # Remove ASCII spaces and '-', anywhere; keep the typed form for `found`.
    kept = [c for c in typed if c not in (" ", "-")]
    # Read ASCII lowercase as uppercase, nothing else changed.
    upper = [chr(ord(c) - 32) if "a" <= c <= "z" else c for c in kept]
    for idx, c in enumerate(upper[:CODE_CHARS]):
        if c not in VALUE:
            raise CodeError({"name": "InvalidCharacter", "group": idx // 5 + 1,
                             "position": idx % 5 + 1, "found": kept[idx]})
    if len(upper) != CODE_CHARS:
        raise CodeError({"name": "WrongLength", "found": len(upper),
                         "expected": CODE_CHARS})
    vals = [VALUE[c] for c in upper]
    for g in range(13):
        i = g
        for v in vals[5 * g:5 * g + 5]:
            i = gf_step(i, v)
        if i != 0:
            raise CodeError({"name": "Checksum", "group": g + 1})
    data = [vals[5 * g + j] for g in range(13) for j in range(4)]
    n = 0
    for v in data:
        n = (n << 5) | v
    if n & 0xF:
        raise CodeError({"name": "NonCanonical", "group": 13})
    return (n >> 4).to_bytes(32, "big")


# ---------------------------------------------------------------------------
# 17.2 Sealed backup, 17.3 Passphrase mode
# ---------------------------------------------------------------------------

MAGIC = b"RBXBACKUP"
VERSION = 1
KIND_DEVICE = 1
MODE_RECOVERY_KEY = 1
MODE_PASSPHRASE = 2
LABEL_BACKUP_KEY_ID = b"ratchetbox v1 backup key id"
LABEL_BACKUP_KEY = b"ratchetbox v1 backup key"


def hkdf(salt, ikm, info, length):
    # salt = b"" is a zero-length salt; RFC 5869 treats it like no salt (HashLen zeros).
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def key_id_of(s):
    return hkdf(b"", s, LABEL_BACKUP_KEY_ID, 16)


def key_of(s, salt):
    return hkdf(salt, s, LABEL_BACKUP_KEY, 32)


def argon2id(passphrase, salt, m, t, p):
    return Argon2id(salt=salt, length=32, iterations=t, lanes=p, memory_cost=m,
                    ad=None, secret=None).derive(passphrase.encode("utf-8"))


def u32(x):
    return x.to_bytes(4, "big")


def u64(x):
    return x.to_bytes(8, "big")


def seal(kind, mode, created_at, generation, salt, s, payload, params=None):
    assert len(salt) == 32 and len(s) == 32
    header = MAGIC + bytes([VERSION, kind, mode]) + u64(created_at) + u64(generation)
    if mode == MODE_PASSPHRASE:
        m, t, p = params
        header += u32(m) + u32(t) + u32(p)
    kid = key_id_of(s)
    header += salt + kid
    key = key_of(s, salt)
    ct_tag = AESGCM(key).encrypt(b"\x00" * 12, payload, header)
    return header + ct_tag, kid, key


class OpenError(Exception):
    pass


def cost_ok(m, t, p):
    return 1 <= p <= 8 and 1 <= t <= 10 and 8 * p <= m <= 262144


def open_blob(blob, kind, key=None, passphrase=None):
    """Opening checks of 17.2, in order. Returns (payload, created_at, generation)."""
    if len(blob) < 9 or blob[:9] != MAGIC:
        raise OpenError("NotABackup")
    if len(blob) < 12:
        raise OpenError(("Truncated", len(blob), 92))
    if blob[9] != VERSION:
        raise OpenError("UnsupportedVersion")
    if blob[10] != kind:
        raise OpenError("WrongKind")
    want_mode = MODE_RECOVERY_KEY if key is not None else MODE_PASSPHRASE
    if blob[11] != want_mode:
        raise OpenError("WrongKeyMode")
    hlen = 76 if want_mode == MODE_RECOVERY_KEY else 88
    if len(blob) < hlen + 16:
        raise OpenError(("Truncated", len(blob), hlen + 16))
    created_at = int.from_bytes(blob[12:20], "big")
    generation = int.from_bytes(blob[20:28], "big")
    off = 28
    if want_mode == MODE_PASSPHRASE:
        m, t, p = (int.from_bytes(blob[28 + 4 * j:32 + 4 * j], "big") for j in range(3))
        if not cost_ok(m, t, p):
            raise OpenError("CostOutOfBounds")
        off = 40
    salt = blob[off:off + 32]
    kid = blob[off + 32:off + 48]
    if want_mode == MODE_RECOVERY_KEY:
        s = key
    else:
        s = argon2id(passphrase, salt, m, t, p)
    expected = key_id_of(s)
    import hmac
    kid_ok = hmac.compare_digest(kid, expected)
    ad = blob[:off + 32] + expected
    try:
        payload = AESGCM(key_of(s, salt)).decrypt(b"\x00" * 12, blob[hlen:], ad)
        opened = True
    except Exception:
        opened = False
    if kid_ok and opened:
        return payload, created_at, generation
    if kid_ok or opened:
        raise OpenError("Tampered")
    raise OpenError("WrongKey")


# ---------------------------------------------------------------------------
# 17.4 Device backup payload (canonical proto3, section 2)
# ---------------------------------------------------------------------------

def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_uint(field, n):
    return b"" if n == 0 else varint(field << 3 | 0) + varint(n)


def pb_bytes(field, b):
    return b"" if len(b) == 0 else varint(field << 3 | 2) + varint(len(b)) + b


def pb_message(field, b):
    # nested messages are written when present, even if empty
    return varint(field << 3 | 2) + varint(len(b)) + b


def encode_device_backup(index_key, user_id, device_id, rows):
    # rows in table order, then key order (bytewise)
    rows = sorted(rows, key=lambda r: (r[0], r[1]))
    out = pb_bytes(1, index_key) + pb_bytes(2, user_id.encode("utf-8")) + pb_uint(3, device_id)
    for table, key, value in rows:
        out += pb_message(4, pb_uint(1, table) + pb_bytes(2, key) + pb_bytes(3, value))
    return out


# ---------------------------------------------------------------------------
# Inputs (same as the committed vectors)
# ---------------------------------------------------------------------------

CODE_KEYS = [
    "00" * 32,
    "ff" * 32,
    bytes(range(32)).hex(),
    "d64dbd404e515927f6076ea1cc1090e2f427ceadd366554feea2c11b05bae040",
]

_S = "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE"
TYPED = [
    "000G5-40R48-0M30Q-E209P-185GZ-R38E9-1W81J-24GKJ-2GAHP-C5RR1-34D14-P70X2-3RFGE",
    "000g5 40r48 0m30q e209p 185gz r38e9 1w81j 24gkj 2gahp c5rr1 34d14 p70x2 3rfge",
    _S,
    "000G5 40R48 0M30Q E209P 185GZ R38E9 1W81J 24GKJ 2GAHP C5RR1 34D14 P70X2 3RFGE",
    # one wrong character per group
    "100G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G542R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M60QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE20DP185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185G4R38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZY38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91381J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24RKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GATPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RRB34D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR1E4D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14PK0X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RWGE",
    # swaps of neighbouring characters
    "0005G40R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G54R0480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R408M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M03QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30Q2E09P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE20P9185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P158GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GRZ38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR3E891W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E9W181J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W8J124GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J2G4KJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GK2JGAHPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GHAPC5RR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHP5CRR134D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5R1R34D14P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR13D414P70X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D1P470X23RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P7X023RFGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X2R3FGE",
    "000G540R480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFEG",
    # characters outside the alphabet, wrong lengths
    "000G540O480M30QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    "000G540R480Mi0QE209P185GZR38E91W81J24GKJ2GAHPC5RR134D14P70X23RFGE",
    _S[:-1],
    _S + "0",
    "\t" + _S[1:],
    # a set appended bit
    "00000000050000A0000F0000M0000H0000Y0000V0000D0000800007000020001V",
]

BLOB_INPUTS = [
    dict(mode="recovery_key", kind=1, created_at=1764000000, generation=42,
         salt=bytes(range(0x40, 0x60)), secret=bytes(range(32)),
         payload=b"ratchetbox backup vector payload"),
    dict(mode="recovery_key", kind=1, created_at=0, generation=0,
         salt=b"\x11" * 32, secret=b"\xff" * 32, payload=b""),
    dict(mode="passphrase", passphrase="correct horse battery staple",
         memory_kib=64, passes=1, lanes=1, kind=1, created_at=1764000000, generation=7,
         salt=bytes(range(0x60, 0x80)), payload=b"passphrase payload"),
]

DEVICE_PAYLOAD = dict(
    index_key=bytes(range(0x80, 0xA0)),
    user_id="alice",
    device_id=7,
    rows=[(1, b"account", b"plain account"),
          (5, b"\x01group row", b"opaque group state")],
)


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

def build():
    codes = []
    for k in CODE_KEYS:
        code = encode_recovery_key(bytes.fromhex(k))
        assert decode_recovery_key(code) == bytes.fromhex(k)
        codes.append({"key": k, "code": code})

    typed = []
    for t in TYPED:
        try:
            typed.append({"typed": t, "key": decode_recovery_key(t).hex()})
        except CodeError as e:
            typed.append({"typed": t, "error": e.fields})

    blobs = []
    for b in BLOB_INPUTS:
        if b["mode"] == "recovery_key":
            s = b["secret"]
            blob, kid, key = seal(b["kind"], MODE_RECOVERY_KEY, b["created_at"],
                                  b["generation"], b["salt"], s, b["payload"])
            assert open_blob(blob, b["kind"], key=s) == (b["payload"], b["created_at"],
                                                         b["generation"])
            entry = {"mode": "recovery_key"}
        else:
            m, t, p = b["memory_kib"], b["passes"], b["lanes"]
            s = argon2id(b["passphrase"], b["salt"], m, t, p)
            blob, kid, key = seal(b["kind"], MODE_PASSPHRASE, b["created_at"],
                                  b["generation"], b["salt"], s, b["payload"], (m, t, p))
            assert open_blob(blob, b["kind"], passphrase=b["passphrase"]) == (
                b["payload"], b["created_at"], b["generation"])
            entry = {"mode": "passphrase", "passphrase": b["passphrase"],
                     "memory_kib": m, "passes": t, "lanes": p}
        entry.update({
            "kind": b["kind"], "created_at": b["created_at"], "generation": b["generation"],
            "salt": b["salt"].hex(), "secret": s.hex(), "key_id": kid.hex(),
            "key": key.hex(), "payload": b["payload"].hex(), "blob": blob.hex(),
        })
        blobs.append(entry)

    d = DEVICE_PAYLOAD
    device_payload = {
        "index_key": d["index_key"].hex(),
        "user_id": d["user_id"],
        "device_id": d["device_id"],
        "rows": [{"table": t, "key": k.hex(), "value": v.hex()} for t, k, v in d["rows"]],
        "encoded": encode_device_backup(d["index_key"], d["user_id"], d["device_id"],
                                        d["rows"]).hex(),
    }
    return {"codes": codes, "typed": typed, "blobs": blobs, "device_payload": device_payload}


def self_test():
    """Checks of claims in 17.1 to 17.3 that are not part of the JSON."""
    import os
    # RFC 9106 5.3 Argon2id test vector (17.3 says the Rust unit tests use it).
    tag = Argon2id(salt=b"\x02" * 16, length=32, iterations=3, lanes=4, memory_cost=32,
                   ad=b"\x04" * 12, secret=b"\x03" * 8).derive(b"\x01" * 32)
    assert tag.hex() == "0d640df58d78766c08c037a34a8b53c9d01ef0452d75b65eb52520e96b01e659"
    # 17.1: code is 77 characters; round trip on random keys; single errors and
    # neighbour swaps detected in their group.
    for _ in range(200):
        k = os.urandom(32)
        c = encode_recovery_key(k)
        assert len(c) == 77 and decode_recovery_key(c) == k
    k = os.urandom(32)
    c = encode_recovery_key(k).replace("-", "")
    for pos in range(65):
        for ch in ALPHABET:
            if ch == c[pos]:
                continue
            t = c[:pos] + ch + c[pos + 1:]
            try:
                decode_recovery_key(t)
                assert False, "undetected substitution"
            except CodeError as e:
                assert e.fields["name"] in ("Checksum", "NonCanonical")
                if e.fields["name"] == "Checksum":
                    assert e.fields["group"] == pos // 5 + 1
                else:
                    raise AssertionError("substitution read as NonCanonical")
        if pos < 64 and c[pos] != c[pos + 1]:
            t = c[:pos] + c[pos + 1] + c[pos] + c[pos + 2:]
            try:
                decode_recovery_key(t)
                assert False, "undetected swap"
            except CodeError as e:
                assert e.fields == {"name": "Checksum", "group": pos // 5 + 1}, (pos, e.fields)
    # 17.2: every single-bit flip of each vector blob gives the error of its field.
    data = build()
    for entry in data["blobs"]:
        blob = bytes.fromhex(entry["blob"])
        if entry["mode"] == "recovery_key":
            kw = dict(key=bytes.fromhex(entry["secret"]))
            after = 76
        else:
            kw = dict(passphrase=entry["passphrase"])
            after = 88
        for bit in range(len(blob) * 8):
            bad = bytearray(blob)
            bad[bit // 8] ^= 0x80 >> (bit % 8)
            try:
                open_blob(bytes(bad), 1, **kw)
                raise AssertionError("bit flip opened")
            except OpenError as e:
                err = e.args[0]
            i = bit // 8
            if i < 9:
                want = {"NotABackup"}
            elif i == 9:
                want = {"UnsupportedVersion"}
            elif i == 10:
                want = {"WrongKind"}
            elif i == 11:
                want = {"WrongKeyMode"}
            elif entry["mode"] == "passphrase" and 28 <= i < 72:
                want = {"WrongKey", "CostOutOfBounds"}
            else:
                want = {"Tampered"}
            assert err in want, (entry["mode"], i, err)
        # truncations
        for n in range(len(blob)):
            try:
                open_blob(blob[:n], 1, **kw)
                raise AssertionError("truncated blob opened")
            except OpenError as e:
                err = e.args[0]
            if n < 9:
                assert err == "NotABackup"
            elif n < after + 16:
                assert err[0] == "Truncated", (n, err)
            else:
                assert err == "Tampered", (n, err)
        # wrong key / passphrase
        try:
            if "key" in kw:
                open_blob(blob, 1, key=b"\x42" * 32)
            else:
                open_blob(blob, 1, passphrase="wrong")
            raise AssertionError
        except OpenError as e:
            assert e.args[0] == "WrongKey"
    print("self-test ok", file=sys.stderr)


if __name__ == "__main__":
    if "--self-test" in sys.argv[1:]:
        self_test()
    else:
        sys.stdout.write(json.dumps(build(), indent=1) + "\n")
