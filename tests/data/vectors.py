#!/usr/bin/env python3
"""Independent reference implementation of the ratchetbox protocol, version 1, producing
the test vectors in tests/data/vectors.json.

Written from docs/PROTOCOL.md, proto/wire.proto and proto/state.proto only, without reference
to the Rust code (src/, tests/*.rs) or the generated protobuf code.

Run (Python 3.11+):

    pip install cryptography kyber-py && python3 tests/data/vectors.py > tests/data/vectors.json

ML-KEM-1024 comes from kyber-py (GiacomoPope's pure-Python FIPS 203 implementation), which
shares no code with the Rust crate; the script first checks it against one FIPS 203 known
answer (from Wycheproof's mlkem_1024_test.json / mlkem_1024_encaps_test.json).

The output is deterministic: every value the protocol would draw at random is derived from a
label (LABELS below, and the "labels" object of the JSON): SHA-256("ratchetbox test vector: "
|| label) truncated to the size drawn for draws of up to 32 bytes, and SHA-512 of the same
string (all 64 bytes, d = bytes 0..32, z = bytes 32..64) for the 64-byte ML-KEM seeds. The
script checks itself as it goes (signature verification, receiver-side PQXDH / X3DH including
decapsulation with the receiver's seed-derived key, decryption of every message, implicit
rejection of a modified KEM ciphertext, decoding of the account state, reopening of the sealed
state, the section 8.1 decoding rules on every session record it encodes) and fails with an
AssertionError if anything disagrees. It prints only the JSON.

The session records (session_1_records) are encoded from section 8.1 ("What a session record
holds") and proto/state.proto; the Ratchet class keeps, besides what the messages need, the
state that only the records show (when skipped keys were stored, finished receiving chains).
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import sys

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.asymmetric.x25519 import (
    X25519PrivateKey,
    X25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF, HKDFExpand
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from kyber_py.ml_kem import ML_KEM_1024

# ---------------------------------------------------------------------------------------------
# Section 1: conventions and labels
# ---------------------------------------------------------------------------------------------

VERSION = b"\x01"
# Messages of a PQXDH session carry version 2 (classical X3DH sessions: 1); section 2.
PQ_MESSAGE_VERSION = b"\x02"
LABEL_X3DH = b"ratchetbox v1 X3DH"
LABEL_PQXDH = b"ratchetbox v1 PQXDH ML-KEM-1024"
LABEL_SIGNED_KEM_PREKEY = b"ratchetbox v1 signed kem prekey"
LABEL_ROOT = b"ratchetbox v1 root chain"
LABEL_SIGNED_PREKEY = b"ratchetbox v1 signed prekey"
LABEL_SIGNED_ONE_TIME_PREKEYS = b"ratchetbox v1 signed one-time prekeys"
LABEL_STATE_SEAL = b"ratchetbox v1 sealed state "  # trailing space is part of the label
# Section 14: the key exporter.
LABEL_X3DH_EXPORTER = b"ratchetbox v1 X3DH exporter secret"
LABEL_PQXDH_EXPORTER = b"ratchetbox v1 PQXDH ML-KEM-1024 exporter secret"
LABEL_EXPORTER = b"ratchetbox v1 exporter"

assert len(LABEL_SIGNED_PREKEY) == 27
assert len(LABEL_SIGNED_KEM_PREKEY) == 31

KEM_EK_LEN = 1568  # ML-KEM-1024 encapsulation key
KEM_CT_LEN = 1568  # ML-KEM-1024 ciphertext
KEM_SEED_LEN = 64  # d || z


class Refused(Exception):
    """A protocol-level refusal (as opposed to a self-check failure)."""

P25519 = 2**255 - 19
# The Edwards curve constant d = -121665/121666 (RFC 8032, section 5.1).
ED25519_D = (-121665 * pow(121666, P25519 - 2, P25519)) % P25519


class NonCanonicalKey(Refused):
    """Section 3.1: a key that is not in its one canonical encoding, refused while decoding."""

    def __init__(self, kind: str, obj: str, field: str):
        super().__init__(f"{obj}.{field}: {kind}")
        self.kind, self.obj, self.field = kind, obj, field


def check_x25519_public(key: bytes, obj: str, field: str) -> bytes:
    """Section 3.1: an X25519 public key read from bytes must be the little-endian u with bit
    255 clear and u < p (X25519 itself would mask bit 255 and reduce u mod p)."""
    assert len(key) == 32
    if int.from_bytes(key, "little") >= P25519:  # covers bit 255 too: 2^255 > p
        raise NonCanonicalKey("NonCanonicalKey", obj, field)
    return key


def check_identity_encoding(key: bytes, obj: str, field: str) -> bytes:
    """Section 3.1: an identity key must be the canonical Ed25519 encoding: y < p, and no sign
    bit when x = 0 (x = 0 exactly when y^2 = 1). The point must also be on the curve."""
    assert len(key) == 32
    n = int.from_bytes(key, "little")
    y, sign = n & ((1 << 255) - 1), n >> 255
    if y >= P25519:
        raise NonCanonicalKey("InvalidIdentityKey", obj, field)
    u, v = (y * y - 1) % P25519, (ED25519_D * y * y + 1) % P25519
    x2 = u * pow(v, P25519 - 2, P25519) % P25519
    if x2 == 0 and sign == 1:
        raise NonCanonicalKey("InvalidIdentityKey", obj, field)
    if x2 != 0 and pow(x2, (P25519 - 1) // 2, P25519) != 1:
        raise NonCanonicalKey("InvalidIdentityKey", obj, field)  # not on the curve
    return key


def u32be(x: int) -> bytes:
    assert 0 <= x < 2**32
    return x.to_bytes(4, "big")


def u64be(x: int) -> bytes:
    assert 0 <= x < 2**64
    return x.to_bytes(8, "big")


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hkdf_expand(prk: bytes, info: bytes, length: int) -> bytes:
    """HKDF-Expand alone (RFC 5869, section 2.3)."""
    return HKDFExpand(algorithm=hashes.SHA256(), length=length, info=info).derive(prk)


def hmac_sha256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def x25519_public(priv: bytes) -> bytes:
    assert len(priv) == 32
    return (
        X25519PrivateKey.from_private_bytes(priv)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
    )


def dh(priv: bytes, pub: bytes) -> bytes:
    """X25519; fails if the output is all zero (section 1)."""
    assert len(priv) == 32 and len(pub) == 32
    out = X25519PrivateKey.from_private_bytes(priv).exchange(
        X25519PublicKey.from_public_bytes(pub)
    )
    # cryptography itself raises on an all-zero output; check explicitly anyway.
    assert out != bytes(32), "DH output is all zero"
    return out


def aead_seal(key: bytes, nonce: bytes, ad: bytes, plaintext: bytes) -> bytes:
    assert len(key) == 32 and len(nonce) == 12
    return AESGCM(key).encrypt(nonce, plaintext, ad)


def aead_open(key: bytes, nonce: bytes, ad: bytes, ciphertext: bytes) -> bytes:
    assert len(key) == 32 and len(nonce) == 12 and len(ciphertext) >= 16
    return AESGCM(key).decrypt(nonce, ciphertext, ad)


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def kem_keygen(seed: bytes) -> tuple[bytes, bytes]:
    """Section 1: a KEM private key is its 64-byte seed d || z, expanded with
    ML-KEM.KeyGen_internal(d, z). Returns (ek, dk)."""
    assert len(seed) == KEM_SEED_LEN
    ek, dk = ML_KEM_1024._keygen_internal(seed[:32], seed[32:])
    assert len(ek) == KEM_EK_LEN
    return ek, dk


def kem_encaps(ek: bytes, m: bytes) -> tuple[bytes, bytes]:
    """Section 1: ML-KEM.Encaps_internal(ek, m) with the drawn 32-byte m. Includes the FIPS 203
    type (length) and modulus checks of the received key. Returns (CT, SS)."""
    assert len(ek) == KEM_EK_LEN and len(m) == 32
    try:
        ss, ct = ML_KEM_1024._encaps_internal(ek, m)  # kyber-py returns (K, c)
    except ValueError as e:
        raise Refused(f"encapsulation key fails the FIPS 203 checks: {e}") from None
    assert len(ct) == KEM_CT_LEN and len(ss) == 32
    return ct, ss


def kem_decaps(seed: bytes, ct: bytes) -> bytes:
    """Section 1: Decaps with implicit rejection (a modified ciphertext gives another SS)."""
    assert len(ct) == KEM_CT_LEN
    _, dk = kem_keygen(seed)
    return ML_KEM_1024.decaps(dk, ct)


def kem_known_answer_check() -> None:
    """One FIPS 203 ML-KEM-1024 known answer (Wycheproof mlkem_1024_test.json tcId 2 for
    seed -> ek and c -> K, mlkem_1024_encaps_test.json tcId 18 for (ek, m) -> (c, K); long
    values as SHA-256). The full Wycheproof ML-KEM-1024 files were also run against kyber-py
    when this script was written (all 462 cases as expected)."""
    seed = bytes.fromhex(
        "7c9935a0b07694aa0c6d10e4db6b1add2fd81a25ccb148032dcd739936737f2d"
        "8626ed79d451140800e03b59b956f8210e556067407d13dc90fa9e8b872bfb8f"
    )
    m = bytes.fromhex("147c03f7a5bebba406c8fae1874d7f13c80efe79a3a9a874cc09fe76f6997615")
    ek, _ = kem_keygen(seed)
    assert sha256(ek).hex() == "61b95ec8c32ae85ad7a17ae5b9c2dfb083e05f767da3ba9a0a8092ea6b4cbf7a"
    ct, ss = kem_encaps(ek, m)
    assert sha256(ct).hex() == "508136a13f8a7920e3434498c6975cbbab457d809309eb2f92453e7409738210"
    k = "489dd1e9c2be4af3482bdb35bb26ce760e6e414da6ecbe489985748a825f1cd6"
    assert ss.hex() == k
    assert kem_decaps(seed, ct).hex() == k
    # FIPS 203 modulus check (section 7.2 of FIPS 203): a coefficient of 4095 >= q is refused.
    bad = b"\xff\x0f" + ek[2:]
    try:
        kem_encaps(bad, m)
    except Refused:
        pass
    else:
        raise AssertionError("modulus check missing")


# ---------------------------------------------------------------------------------------------
# Section 2: canonical proto3 encoding (hand-written) and a small decoder for the self-checks
# ---------------------------------------------------------------------------------------------


def varint(n: int) -> bytes:
    assert n >= 0
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _tag(field: int, wire_type: int) -> bytes:
    return varint((field << 3) | wire_type)


def pb_uint(field: int, value: int, optional: bool = False) -> bytes:
    """uint32 / uint64 / enum / bool. Default (0) omitted unless the field is `optional`
    (then `value` None means unset)."""
    if value is None:
        assert optional
        return b""
    if value == 0 and not optional:
        return b""
    return _tag(field, 0) + varint(value)


def pb_bytes(field: int, value: bytes) -> bytes:
    if len(value) == 0:
        return b""
    return _tag(field, 2) + varint(len(value)) + value


def pb_message(field: int, encoded: bytes | None) -> bytes:
    """Nested message: written when present, even if empty."""
    if encoded is None:
        return b""
    return _tag(field, 2) + varint(len(encoded)) + encoded


def pb_decode(data: bytes) -> list[tuple[int, int, object]]:
    """Parse into (field, wire_type, value) triples. Only wire types 0 and 2 occur."""
    fields = []
    i = 0

    def read_varint() -> int:
        nonlocal i
        shift = 0
        result = 0
        while True:
            if i >= len(data):
                raise ValueError("truncated varint")
            b = data[i]
            i += 1
            result |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return result
            if shift >= 70:
                raise ValueError("varint too long")

    while i < len(data):
        key = read_varint()
        field, wt = key >> 3, key & 7
        if field == 0:
            raise ValueError("field 0")
        if wt == 0:
            fields.append((field, wt, read_varint()))
        elif wt == 2:
            n = read_varint()
            if i + n > len(data):
                raise ValueError("truncated length-delimited field")
            fields.append((field, wt, data[i : i + n]))
            i += n
        else:
            raise ValueError(f"unexpected wire type {wt}")
    return fields


def _single(fields, field, wt):
    vals = [v for (f, w, v) in fields if f == field]
    assert all(w == wt for (f, w, v) in fields if f == field)
    assert len(vals) <= 1, f"repeated singular field {field}"
    return vals[0] if vals else None


def _known(fields, allowed):
    for f, _, _ in fields:
        assert f in allowed, f"unknown field {f}"


# --- wire.proto messages ------------------------------------------------------------------


def enc_signed_prekey(spk: dict) -> bytes:
    return (
        pb_uint(1, spk["id"])
        + pb_uint(2, spk["created_at"])
        + pb_bytes(3, spk["public_key"])
        + pb_bytes(4, spk["signature"])
    )


def enc_one_time_prekey(opk: dict) -> bytes:
    return pb_uint(1, opk["id"]) + pb_bytes(2, opk["public_key"])


def enc_kem_prekey(kpk: dict) -> bytes:
    return (
        pb_uint(1, kpk["id"])
        + pb_uint(2, kpk["created_at"])
        + pb_bytes(3, kpk["public_key"])
        + pb_bytes(4, kpk["signature"])
    )


def enc_upload(u: dict) -> bytes:
    """Section 3.4: PreKeyUpload. Field 5 (the one-time prekeys' signature) is present iff
    field 4 is not empty."""
    return (
        pb_bytes(1, u["identity_key"])
        + pb_message(2, enc_signed_prekey(u["signed_prekey"]) if u["signed_prekey"] else None)
        + pb_message(3, enc_kem_prekey(u["last_resort_kem_prekey"]) if u["last_resort_kem_prekey"] else None)
        + b"".join(pb_message(4, enc_one_time_prekey(o)) for o in u["one_time_prekeys"])
        + pb_bytes(5, u["one_time_prekeys_signature"])
        + b"".join(pb_message(6, enc_kem_prekey(k)) for k in u["one_time_kem_prekeys"])
    )


def one_time_prekeys_message(opks: list) -> bytes:
    """Section 3.4: what the identity key signs over an upload's one-time prekeys."""
    out = LABEL_SIGNED_ONE_TIME_PREKEYS + len(opks).to_bytes(4, "big")
    for o in opks:
        assert len(o["public_key"]) == 32
        out += o["id"].to_bytes(4, "big") + o["public_key"]
    return out


def check_upload(data: bytes) -> dict:
    """Section 3.4 decoding of a PreKeyUpload, for the self-check of the upload vector: the
    canonical encoding, the counts, the signature's presence, increasing ids, and every
    signature under field 1."""
    assert data[:1] == VERSION and len(data) <= 171_777
    f = pb_decode(data[1:])
    _known(f, {1, 2, 3, 4, 5, 6})

    def sub(raw, names):
        g = pb_decode(raw)
        _known(g, set(names))
        return {name: (_single(g, num, wt) or (b"" if wt == 2 else 0)) for num, (name, wt) in names.items()}

    spk_names = {1: ("id", 0), 2: ("created_at", 0), 3: ("public_key", 2), 4: ("signature", 2)}
    opk_names = {1: ("id", 0), 2: ("public_key", 2)}
    spk_raw, lr_raw = _single(f, 2, 2), _single(f, 3, 2)
    u = {
        "identity_key": _single(f, 1, 2) or b"",
        "signed_prekey": sub(spk_raw, spk_names) if spk_raw is not None else None,
        "last_resort_kem_prekey": sub(lr_raw, spk_names) if lr_raw is not None else None,
        "one_time_prekeys": [sub(v, opk_names) for (n, _, v) in f if n == 4],
        "one_time_prekeys_signature": _single(f, 5, 2) or b"",
        "one_time_kem_prekeys": [sub(v, spk_names) for (n, _, v) in f if n == 6],
    }
    assert VERSION + enc_upload(u) == data, "non-canonical encoding"
    ik = u["identity_key"]
    assert len(ik) == 32
    assert len(u["one_time_prekeys"]) <= 100 and len(u["one_time_kem_prekeys"]) <= 100
    assert bool(u["one_time_prekeys"]) == bool(u["one_time_prekeys_signature"])
    for key in ("one_time_prekeys", "one_time_kem_prekeys"):
        ids = [k["id"] for k in u[key]]
        assert all(x < y for x, y in zip(ids, ids[1:])), f"{key}: ids not strictly increasing"
    if u["last_resort_kem_prekey"]:
        assert u["last_resort_kem_prekey"]["id"] not in [k["id"] for k in u["one_time_kem_prekeys"]]
    if u["signed_prekey"]:
        p = u["signed_prekey"]
        ed25519_verify(ik, p["signature"], signed_prekey_message(p["id"], p["created_at"], p["public_key"]))
    if u["last_resort_kem_prekey"]:
        p = u["last_resort_kem_prekey"]
        ed25519_verify(ik, p["signature"], kem_prekey_message(p["id"], p["created_at"], p["public_key"]))
    if u["one_time_prekeys"]:
        ed25519_verify(ik, u["one_time_prekeys_signature"], one_time_prekeys_message(u["one_time_prekeys"]))
    for p in u["one_time_kem_prekeys"]:
        ed25519_verify(ik, p["signature"], kem_prekey_message(p["id"], p["created_at"], p["public_key"]))
    return u


def enc_bundle(b: dict) -> bytes:
    return (
        pb_bytes(1, b["identity_key"])
        + pb_message(2, enc_signed_prekey(b["signed_prekey"]))
        + pb_message(3, enc_one_time_prekey(b["one_time_prekey"]) if b["one_time_prekey"] else None)
        + pb_message(4, enc_kem_prekey(b["kem_prekey"]) if b["kem_prekey"] else None)
    )


def enc_ratchet_message(m: dict) -> bytes:
    return (
        pb_bytes(1, m["ratchet_key"])
        + pb_uint(2, m["counter"])
        + pb_uint(3, m["previous_counter"])
        + pb_bytes(4, m["nonce"])
        + pb_bytes(5, m["ciphertext"])
    )


def enc_kem_setup(k: dict) -> bytes:
    return pb_uint(1, k["prekey_id"]) + pb_bytes(2, k["ciphertext"])


def enc_initial_message(m: dict) -> bytes:
    return (
        pb_bytes(1, m["identity_key"])
        + pb_bytes(2, m["base_key"])
        + pb_uint(3, m["signed_prekey_id"])
        + pb_uint(4, m["one_time_prekey_id"], optional=True)
        + pb_message(5, enc_kem_setup(m["kem"]) if m["kem"] else None)
        + pb_message(6, enc_ratchet_message(m["message"]))
    )


def enc_message(msg: dict) -> bytes:
    if "ratchet" in msg:
        return pb_message(1, enc_ratchet_message(msg["ratchet"]))
    return pb_message(2, enc_initial_message(msg["initial"]))


def dec_ratchet_message(data: bytes, version: bytes) -> dict:
    f = pb_decode(data)
    _known(f, {1, 2, 3, 4, 5})
    m = {
        "version": version,
        "ratchet_key": _single(f, 1, 2) or b"",
        "counter": _single(f, 2, 0) or 0,
        "previous_counter": _single(f, 3, 0) or 0,
        "nonce": _single(f, 4, 2) or b"",
        "ciphertext": _single(f, 5, 2) or b"",
    }
    assert m["counter"] < 2**32 and m["previous_counter"] < 2**32
    assert len(m["ratchet_key"]) == 32 and len(m["nonce"]) == 12 and len(m["ciphertext"]) >= 16
    check_x25519_public(m["ratchet_key"], "RatchetMessage", "ratchet_key")
    return m


def dec_kem_setup(data: bytes) -> dict:
    f = pb_decode(data)
    _known(f, {1, 2})
    k = {"prekey_id": _single(f, 1, 0) or 0, "ciphertext": _single(f, 2, 2) or b""}
    assert k["prekey_id"] < 2**32
    assert len(k["ciphertext"]) == KEM_CT_LEN, "KEM ciphertext must be 1568 bytes"
    return k


def dec_initial_message(data: bytes, version: bytes) -> dict:
    f = pb_decode(data)
    _known(f, {1, 2, 3, 4, 5, 6})
    inner = _single(f, 6, 2)
    assert inner is not None, "missing RatchetMessage"
    kem = _single(f, 5, 2)
    m = {
        "identity_key": _single(f, 1, 2) or b"",
        "base_key": _single(f, 2, 2) or b"",
        "signed_prekey_id": _single(f, 3, 0) or 0,
        "one_time_prekey_id": _single(f, 4, 0),  # None when absent
        "kem": dec_kem_setup(kem) if kem is not None else None,  # None: classical X3DH
        "message": dec_ratchet_message(inner, version),
    }
    # The version byte says which setup this is: 2 with the KEM part, 1 without.
    assert (version == PQ_MESSAGE_VERSION) == (m["kem"] is not None), "version and setup disagree"
    assert len(m["identity_key"]) == 32 and len(m["base_key"]) == 32
    check_identity_encoding(m["identity_key"], "InitialMessage", "identity_key")
    check_x25519_public(m["base_key"], "InitialMessage", "base_key")
    return m


def decode_message(wire: bytes) -> dict:
    """Section 2 decoding of a wire Message, with the canonical check (here: re-encoding must
    reproduce the input exactly, which is stricter than the spec's length comparison)."""
    version = wire[:1]
    assert version in (VERSION, PQ_MESSAGE_VERSION), "unsupported version"
    f = pb_decode(wire[1:])
    _known(f, {1, 2})
    assert len(f) == 1, "Message must have exactly one body"
    field, _, body = f[0]
    if field == 1:
        msg = {"ratchet": dec_ratchet_message(body, version)}
    else:
        msg = {"initial": dec_initial_message(body, version)}
    assert version + enc_message(msg) == wire, "non-canonical encoding"
    return msg


def decode_bundle(wire: bytes) -> dict:
    assert wire[:1] == VERSION
    f = pb_decode(wire[1:])
    _known(f, {1, 2, 3, 4})
    spk_f = pb_decode(_single(f, 2, 2))
    _known(spk_f, {1, 2, 3, 4})
    spk = {
        "id": _single(spk_f, 1, 0) or 0,
        "created_at": _single(spk_f, 2, 0) or 0,
        "public_key": _single(spk_f, 3, 2) or b"",
        "signature": _single(spk_f, 4, 2) or b"",
    }
    opk = None
    if _single(f, 3, 2) is not None:
        opk_f = pb_decode(_single(f, 3, 2))
        _known(opk_f, {1, 2})
        opk = {"id": _single(opk_f, 1, 0) or 0, "public_key": _single(opk_f, 2, 2) or b""}
        assert len(opk["public_key"]) == 32
        check_x25519_public(opk["public_key"], "OneTimePreKey", "public_key")
    kpk = None
    if _single(f, 4, 2) is not None:
        kpk_f = pb_decode(_single(f, 4, 2))
        _known(kpk_f, {1, 2, 3, 4})
        kpk = {
            "id": _single(kpk_f, 1, 0) or 0,
            "created_at": _single(kpk_f, 2, 0) or 0,
            "public_key": _single(kpk_f, 3, 2) or b"",
            "signature": _single(kpk_f, 4, 2) or b"",
        }
        assert len(kpk["public_key"]) == KEM_EK_LEN and len(kpk["signature"]) == 64
    b = {
        "identity_key": _single(f, 1, 2) or b"",
        "signed_prekey": spk,
        "one_time_prekey": opk,
        "kem_prekey": kpk,
    }
    assert len(b["identity_key"]) == 32
    assert len(spk["public_key"]) == 32 and len(spk["signature"]) == 64
    check_identity_encoding(b["identity_key"], "PreKeyBundle", "identity_key")
    check_x25519_public(spk["public_key"], "SignedPreKey", "public_key")
    assert VERSION + enc_bundle(b) == wire, "non-canonical encoding"
    return b


# --- state.proto messages ------------------------------------------------------------------

STATE_KIND_ACCOUNT = 1
KIND_NAMES = {1: b"account", 2: b"session", 3: b"session record"}

# Section 3.2 and 5: what an account holds at most.
MAX_SIGNED_PREKEYS = 16  # the current one included
MAX_LAST_RESORT_KEM_PREKEYS = 16  # the current one included
MAX_USED_SETUPS = 2000  # replay memory, per signed prekey
MAX_ONE_TIME_PREKEYS = 10000
MAX_ONE_TIME_KEM_PREKEYS = 100


def enc_account_state(a: dict) -> bytes:
    out = pb_bytes(1, a["identity_seed"])
    for spk in a["signed_prekeys"]:
        out += pb_message(
            2,
            pb_uint(1, spk["id"])
            + pb_uint(2, spk["created_at"])
            + pb_bytes(3, spk["secret"])
            + pb_bytes(4, spk["signature"]),
        )
    for opk in a["one_time_prekeys"]:
        out += pb_message(
            3,
            pb_uint(1, opk["id"])
            + pb_bytes(2, opk["secret"])
            + pb_uint(3, opk["created_at"])
            + pb_uint(4, opk.get("replaced_at"), optional=True),
        )
    out += pb_uint(4, a["next_signed_prekey_id"])
    out += pb_uint(5, a["next_one_time_prekey_id"])
    for used in a["used_setups"]:
        out += pb_message(6, pb_uint(1, used["signed_prekey_id"]) + pb_bytes(2, used["base_key"]))
    for field in (7, 8):
        key = "last_resort_kem_prekeys" if field == 7 else "one_time_kem_prekeys"
        for k in a[key]:
            out += pb_message(
                field,
                pb_uint(1, k["id"])
                + pb_uint(2, k["created_at"])
                + pb_bytes(3, k["seed"])
                + pb_bytes(4, k["signature"])
                + pb_uint(5, k.get("replaced_at"), optional=True),
            )
    out += pb_uint(9, a["next_kem_prekey_id"])
    return out


def dec_account_state(plain: bytes) -> dict:
    """Section 8.1 decoding of an AccountState, with the account-specific checks, for the
    self-check of account_plain."""
    assert plain[:1] == VERSION
    f = pb_decode(plain[1:])
    _known(f, set(range(1, 10)))

    def sub(data, fields):
        g = pb_decode(data)
        _known(g, set(fields))
        return {name: (_single(g, num, wt) or (b"" if wt == 2 else 0)) for num, (name, wt) in fields.items()}

    spk_fields = {1: ("id", 0), 2: ("created_at", 0), 3: ("secret", 2), 4: ("signature", 2)}
    opk_fields = {1: ("id", 0), 2: ("secret", 2), 3: ("created_at", 0)}
    used_fields = {1: ("signed_prekey_id", 0), 2: ("base_key", 2)}
    kem_fields = {1: ("id", 0), 2: ("created_at", 0), 3: ("seed", 2), 4: ("signature", 2)}

    def sub_replaced(data, fields, replaced_field):
        # `replaced_at` is `optional`: present (even if 0) or absent (None).
        d = sub(data, {**fields, replaced_field: ("replaced_at", 0)})
        d["replaced_at"] = _single(pb_decode(data), replaced_field, 0)
        return d

    a = {
        "identity_seed": _single(f, 1, 2) or b"",
        "signed_prekeys": [sub(v, spk_fields) for (n, _, v) in f if n == 2],
        "one_time_prekeys": [sub_replaced(v, opk_fields, 4) for (n, _, v) in f if n == 3],
        "next_signed_prekey_id": _single(f, 4, 0) or 0,
        "next_one_time_prekey_id": _single(f, 5, 0) or 0,
        "used_setups": [sub(v, used_fields) for (n, _, v) in f if n == 6],
        "last_resort_kem_prekeys": [sub_replaced(v, kem_fields, 5) for (n, _, v) in f if n == 7],
        "one_time_kem_prekeys": [sub_replaced(v, kem_fields, 5) for (n, _, v) in f if n == 8],
        "next_kem_prekey_id": _single(f, 9, 0) or 0,
    }
    assert VERSION + enc_account_state(a) == plain, "non-canonical encoding"
    assert len(a["identity_seed"]) == 32
    ik = ed25519_public(a["identity_seed"])
    assert a["signed_prekeys"] and a["last_resort_kem_prekeys"]
    # Caps, checked before any key of a list is derived.
    assert len(a["signed_prekeys"]) <= MAX_SIGNED_PREKEYS
    assert len(a["last_resort_kem_prekeys"]) <= MAX_LAST_RESORT_KEM_PREKEYS
    assert len(a["one_time_prekeys"]) <= MAX_ONE_TIME_PREKEYS
    assert len(a["one_time_kem_prekeys"]) <= MAX_ONE_TIME_KEM_PREKEYS
    assert len(a["used_setups"]) <= MAX_USED_SETUPS * MAX_SIGNED_PREKEYS
    # Signed and last-resort KEM prekeys: oldest first, ids strictly increasing.
    for key in ("signed_prekeys", "last_resort_kem_prekeys"):
        ids = [k["id"] for k in a[key]]
        assert all(x < y for x, y in zip(ids, ids[1:])), f"{key}: repeated or unordered ids"
    for spk in a["signed_prekeys"]:
        assert len(spk["secret"]) == 32 and 0 < spk["id"] < a["next_signed_prekey_id"]
        ed25519_verify(
            ik, spk["signature"], signed_prekey_message(spk["id"], spk["created_at"], x25519_public(spk["secret"]))
        )
    for opk in a["one_time_prekeys"]:
        assert len(opk["secret"]) == 32 and 0 < opk["id"] < a["next_one_time_prekey_id"]
    for k in a["last_resort_kem_prekeys"]:
        assert k["replaced_at"] is None, "a last-resort KEM prekey is never replaced in a batch"
    kem_ids = []
    for k in a["last_resort_kem_prekeys"] + a["one_time_kem_prekeys"]:
        assert len(k["seed"]) == KEM_SEED_LEN and 0 < k["id"] < a["next_kem_prekey_id"]
        ek, _ = kem_keygen(k["seed"])  # public key re-derived from the seed
        ed25519_verify(ik, k["signature"], kem_prekey_message(k["id"], k["created_at"], ek))
        kem_ids.append(k["id"])
    assert len(set(kem_ids)) == len(kem_ids), "KEM prekey ids share one sequence"
    held = [spk["id"] for spk in a["signed_prekeys"]]
    seen = set()
    for u in a["used_setups"]:
        assert len(u["base_key"]) == 32
        assert u["signed_prekey_id"] in held, "replay memory entry for a signed prekey not held"
        assert (u["signed_prekey_id"], u["base_key"]) not in seen, "the same setup twice"
        seen.add((u["signed_prekey_id"], u["base_key"]))
    for spk_id in held:
        assert sum(1 for u in a["used_setups"] if u["signed_prekey_id"] == spk_id) <= MAX_USED_SETUPS
    return a


def enc_sealed_state(kind: int, salt: bytes, ciphertext: bytes) -> bytes:
    return pb_uint(1, kind) + pb_bytes(2, salt) + pb_bytes(3, ciphertext)


# Section 8.1, "What a session record holds": SessionRecordState, SessionState, RatchetState and their parts.

TRUST_LEVEL_FIRST_USE = 1
MAX_SKIPPED_KEYS = 4000  # section 6.6 default
MAX_PREVIOUS_SESSIONS = 8  # section 6.7 default
MAX_SKIPPED_KEY_AGE = 30 * 24 * 3600  # section 12 default: 30 days, in seconds
MAX_HISTORY = 32  # section 6.4 step 3: the last 32 finished receiving chains


def default_limits(allow_classical: bool) -> dict:
    return {
        "max_skip": MAX_SKIP,
        "max_skipped_keys": MAX_SKIPPED_KEYS,
        "max_previous_sessions": MAX_PREVIOUS_SESSIONS,
        "max_skipped_key_age": MAX_SKIPPED_KEY_AGE,
        "allow_classical_setup": allow_classical,
    }


def enc_session_limits(lim: dict) -> bytes:
    return (
        pb_uint(1, lim["max_skip"])
        + pb_uint(2, lim["max_skipped_keys"])
        + pb_uint(3, lim["max_previous_sessions"])
        + pb_uint(4, lim["max_skipped_key_age"])
        + pb_uint(5, 1 if lim["allow_classical_setup"] else 0)
    )


def skipped_runs(skipped: dict, stored_at: dict) -> list[dict]:
    """The skipped-key store in storage order as maximal runs: consecutive counters of one
    chain, stored at the same time, adjacent in storage order (section 8.1)."""
    runs = []
    for (key, n), mk in skipped.items():
        t = stored_at[(key, n)]
        last = runs[-1] if runs else None
        if (
            last is not None
            and last["ratchet_key"] == key
            and last["stored_at"] == t
            and last["first_counter"] + len(last["message_keys"]) // 32 == n
        ):
            last["message_keys"] += mk
        else:
            runs.append({"ratchet_key": key, "first_counter": n, "message_keys": mk, "stored_at": t})
    return runs


def enc_ratchet_state(r) -> bytes:
    """RatchetState of a Ratchet (section 6 state, section 8.1 layout)."""
    out = pb_bytes(1, r.rk) + pb_bytes(2, r.our_secret or b"") + pb_bytes(3, r.their_key or b"")
    if r.sending is not None:
        ck, ns = r.sending
        out += pb_message(4, pb_bytes(1, ck) + pb_uint(2, ns))
    if r.receiving is not None:
        ck, nr = r.receiving
        out += pb_message(5, pb_bytes(1, ck) + pb_uint(2, nr) + pb_uint(3, r.receiving_evicted_below))
    out += pb_uint(6, r.pn)
    for run in skipped_runs(r.skipped, r.stored_at):
        out += pb_message(
            7,
            pb_bytes(1, run["ratchet_key"])
            + pb_uint(2, run["first_counter"])
            + pb_bytes(3, run["message_keys"])
            + pb_uint(4, run["stored_at"]),
        )
    for h in r.history:
        out += pb_message(8, pb_bytes(1, h["ratchet_key"]) + pb_uint(2, h["length"]) + pb_uint(3, h["evicted_below"]))
    # Our ratchet public key, stored next to its private key (empty when there is none).
    out += pb_bytes(9, x25519_public(r.our_secret) if r.our_secret else b"")
    return out


def enc_session_state(s: dict) -> bytes:
    out = (
        pb_bytes(1, s["local_identity"])
        + pb_bytes(2, s["remote_identity"])
        + pb_uint(3, 1 if s["initiator"] else 0)
        + pb_bytes(4, s["base_key"])
        + pb_uint(5, s["signed_prekey_id"])
        + pb_uint(6, s["one_time_prekey_id"], optional=True)
        + pb_uint(7, 1 if s["awaiting_reply"] else 0)
        + pb_message(8, enc_ratchet_state(s["ratchet"]))
        + pb_message(9, enc_session_limits(s["limits"]))
    )
    kem = s["kem"]
    if kem is not None:
        out += pb_message(10, pb_uint(1, kem["prekey_id"]) + pb_bytes(2, kem["ciphertext_hash"]) + pb_bytes(3, kem["ciphertext"]))
    assert len(s["exporter_secret"]) == 32
    out += pb_bytes(11, s["exporter_secret"])
    return out


def enc_session_record_state(rec: dict) -> bytes:
    out = pb_message(1, enc_session_state(rec["current"]) if rec["current"] is not None else None)
    for prev in rec["previous"]:
        out += pb_message(2, enc_session_state(prev))
    out += pb_message(3, enc_session_limits(rec["limits"]))
    peer = rec["peer"]
    if peer is not None:
        out += pb_message(4, pb_bytes(1, peer["identity_key"]) + pb_uint(2, peer["trust"]))
    timer = rec["timer"]
    out += pb_message(5, pb_uint(1, timer["seconds"]) + pb_uint(2, timer["version"]))
    return out


def session_record_plain(
    local_ik: bytes, remote_ik: bytes, initiator: bool, setup: dict, awaiting_reply: bool, ratchet, allow_classical: bool
) -> bytes:
    """The plain form of a record holding one session and nothing else (no previous session,
    trust on first use, timer off), as both sides of session 1 have it. `setup` holds the
    setup values of the initial message: base_key, signed_prekey_id, one_time_prekey_id and
    kem (None for X3DH, or prekey_id, ciphertext_hash = SHA-256(CT) and the ciphertext CT)."""
    limits = default_limits(allow_classical)
    session = {
        "local_identity": local_ik,
        "remote_identity": remote_ik,
        "initiator": initiator,
        "base_key": setup["base_key"],
        "signed_prekey_id": setup["signed_prekey_id"],
        "one_time_prekey_id": setup["one_time_prekey_id"],
        "awaiting_reply": awaiting_reply,
        "ratchet": ratchet,
        "limits": limits,
        "exporter_secret": ratchet.exporter_secret,
        "kem": (
            None
            if setup["kem"] is None
            else dict(
                setup["kem"],
                # The ciphertext is kept only by an initiator that still repeats it.
                ciphertext=setup["kem"]["ciphertext"] if awaiting_reply else b"",
            )
        ),
    }
    record = {
        "current": session,
        "previous": [],
        "limits": limits,
        "peer": {"identity_key": remote_ik, "trust": TRUST_LEVEL_FIRST_USE},
        "timer": {"seconds": 0, "version": 0},
    }
    return VERSION + enc_session_record_state(record)


def check_record_plain(plain: bytes) -> None:
    """Self-check of a SessionRecordState against section 8.1's decoding rules (structure,
    required fields, key lengths, canonical field order)."""
    assert plain[:1] == VERSION

    def fields(data, allowed):
        f = pb_decode(data)
        _known(f, allowed)
        nums = [n for (n, _, _) in f]
        assert nums == sorted(nums), "fields out of order"
        return f

    def check_limits(data):
        f = fields(data, {1, 2, 3, 4, 5})
        assert all(w == 0 for (_, w, _) in f)

    rec = fields(plain[1:], {1, 2, 3, 4, 5, 6})
    assert (_single(rec, 6, 0) or 0) == 0, "the complete form keeps its skipped keys"
    assert _single(rec, 3, 2) is not None, "record limits are required"
    check_limits(_single(rec, 3, 2))
    sessions = [v for (n, _, v) in rec if n in (1, 2)]
    ids = set()
    for data in sessions:
        s = fields(data, set(range(1, 12)))
        for num in (1, 2, 4, 11):
            assert len(_single(s, num, 2)) == 32
        assert _single(s, 4, 2) not in ids, "two sessions with one id (section 7)"
        ids.add(_single(s, 4, 2))
        assert _single(s, 8, 2) is not None and _single(s, 9, 2) is not None, "ratchet and limits are required"
        check_limits(_single(s, 9, 2))
        initiator = (_single(s, 3, 0) or 0) == 1
        awaiting = (_single(s, 7, 0) or 0) == 1
        assert initiator or not awaiting, "only an initiator can await a reply"
        kem = _single(s, 10, 2)
        if kem is not None:
            k = fields(kem, {1, 2, 3})
            assert len(_single(k, 2, 2)) == 32
            ct = _single(k, 3, 2) or b""
            assert len(ct) == (KEM_CT_LEN if awaiting else 0)
            if ct:
                assert sha256(ct) == _single(k, 2, 2)
        r = fields(_single(s, 8, 2), set(range(1, 10)))
        assert len(_single(r, 1, 2)) == 32
        our, their = _single(r, 2, 2) or b"", _single(r, 3, 2) or b""
        assert len(our) in (0, 32) and len(their) in (0, 32)
        our_key = _single(r, 9, 2) or b""
        assert len(our_key) == (32 if our else 0), "our ratchet public key iff its private key"
        if _single(r, 4, 2) is not None:
            assert our, "a sending chain requires our ratchet secret"
            assert len(_single(fields(_single(r, 4, 2), {1, 2}), 1, 2)) == 32
        if _single(r, 5, 2) is not None:
            assert their, "a receiving chain requires the peer's ratchet key"
            assert len(_single(fields(_single(r, 5, 2), {1, 2, 3}), 1, 2)) == 32
        seen = set()
        for run in [v for (n, _, v) in r if n == 7]:
            g = fields(run, {1, 2, 3, 4})
            keys = _single(g, 3, 2) or b""
            assert len(_single(g, 1, 2)) == 32 and keys and len(keys) % 32 == 0
            first = _single(g, 2, 0) or 0
            for i in range(len(keys) // 32):
                assert (_single(g, 1, 2), first + i) not in seen, "key stored twice"
                seen.add((_single(g, 1, 2), first + i))
        assert len(seen) <= MAX_SKIPPED_KEYS
        history = [v for (n, _, v) in r if n == 8]
        assert len(history) <= MAX_HISTORY
        for h in history:
            assert len(_single(fields(h, {1, 2, 3}), 1, 2)) == 32
    peer = _single(rec, 4, 2)
    if peer is not None:
        assert len(_single(fields(peer, {1, 2}), 1, 2)) == 32


# ---------------------------------------------------------------------------------------------
# Deterministic "randomness"
# ---------------------------------------------------------------------------------------------

LABEL_PREFIX = "ratchetbox test vector: "
LABELS = {
    "a_id": "alice identity seed",
    "a_spk": "alice signed prekey 1 private key",
    "b_id": "bob identity seed",
    "b_spk": "bob signed prekey 1 private key",
    "b_opk": "bob one-time prekey 1 private key",
    "a_kem_lr": "alice last-resort KEM prekey 1 seed",
    "b_kem_lr": "bob last-resort KEM prekey 1 seed",
    "b_kem_otk": "bob one-time KEM prekey 2 seed",
    "a_ek1": "alice ephemeral key, session 1",
    "a_ek2": "alice ephemeral key, session 2",
    "a_ek3": "alice ephemeral key, session 3",
    "m1": "alice ML-KEM encapsulation message, session 1",
    "m2": "alice ML-KEM encapsulation message, session 2",
    "a_r1": "alice ratchet key 1",
    "a_r2": "alice ratchet key 2",
    "a_r3": "alice ratchet key 3",
    "a_r4": "alice ratchet key 4",
    "b_r1": "bob ratchet key 1",
    "b_r2": "bob ratchet key 2",
    "n1": "nonce 1",
    "n2": "nonce 2",
    "n3": "nonce 3",
    "n4": "nonce 4",
    "n5": "nonce 5",
    "n6": "nonce 6",
    "n7": "nonce 7",
    "sk_store": "storage key",
    "seal_salt": "seal salt",
}
KEM_SEED_NAMES = {"a_kem_lr", "b_kem_lr", "b_kem_otk"}
NONCE_NAMES = {f"n{i}" for i in range(1, 8)}
SIZES = {
    name: KEM_SEED_LEN if name in KEM_SEED_NAMES else 12 if name in NONCE_NAMES else 32
    for name in LABELS
}


def derive_input(name: str) -> bytes:
    """SHA-256(prefix || label) truncated to the size drawn; SHA-512(prefix || label) (all 64
    bytes) for the 64-byte ML-KEM seeds d || z."""
    data = (LABEL_PREFIX + LABELS[name]).encode()
    if SIZES[name] == 64:
        return hashlib.sha512(data).digest()
    assert SIZES[name] <= 32
    return hashlib.sha256(data).digest()[: SIZES[name]]


INPUTS = {name: derive_input(name) for name in LABELS}

T = 1764000000


class ScriptedRng:
    """Hands out the named inputs in a fixed order and checks that the protocol draws them in
    exactly that order and size (section 9's table of random draws)."""

    def __init__(self, who: str, names: list[str]):
        self.who = who
        self.queue = list(names)

    def draw(self, size: int, what: str) -> bytes:
        assert self.queue, f"{self.who}: unexpected draw of {what}"
        name = self.queue.pop(0)
        assert SIZES[name] == size, f"{self.who}: drew {size} bytes for {what}, expected {name}"
        return INPUTS[name]

    def done(self):
        assert not self.queue, f"{self.who}: draws left over: {self.queue}"


# ---------------------------------------------------------------------------------------------
# Section 3: keys
# ---------------------------------------------------------------------------------------------


def ed25519_public(seed: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )


def ed25519_sign(seed: bytes, msg: bytes) -> bytes:
    return Ed25519PrivateKey.from_private_bytes(seed).sign(msg)


def ed25519_verify(pub: bytes, sig: bytes, msg: bytes) -> None:
    # Note: cryptography's verify is not documented as `verify_strict`; for our own
    # signatures over our own keys the difference does not arise.
    Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)


def identity_x25519_private(seed: bytes) -> bytes:
    """Section 3.1: first 32 bytes of SHA-512(seed), unclamped (X25519 clamps)."""
    return hashlib.sha512(seed).digest()[:32]


def identity_x25519_public(ed_pub: bytes) -> bytes:
    """Section 3.1: u = (1 + y) / (1 - y) mod p of the Edwards point."""
    assert len(ed_pub) == 32
    y = int.from_bytes(ed_pub, "little") & ((1 << 255) - 1)
    assert y < P25519, "non-canonical y"
    denom = (1 - y) % P25519
    assert denom != 0, "identity point"
    u = (1 + y) * pow(denom, P25519 - 2, P25519) % P25519
    return u.to_bytes(32, "little")


def signed_prekey_message(spk_id: int, created_at: int, public_key: bytes) -> bytes:
    m = LABEL_SIGNED_PREKEY + u32be(spk_id) + u64be(created_at) + public_key
    assert len(m) == 71
    return m


def kem_prekey_message(kem_id: int, created_at: int, encapsulation_key: bytes) -> bytes:
    m = LABEL_SIGNED_KEM_PREKEY + u32be(kem_id) + u64be(created_at) + encapsulation_key
    assert len(m) == 1611
    return m


class Account:
    """Section 3.2 / 8.1: identity key and prekey store."""

    def __init__(self, rng: ScriptedRng, now: int):
        self.identity_seed = rng.draw(32, "identity secret key")
        self.signed_prekeys = []
        self.one_time_prekeys = []
        self.next_signed_prekey_id = 1
        self.next_one_time_prekey_id = 1
        self.used_setups = []
        self.last_resort_kem_prekeys = []  # oldest first; the last one is current
        self.one_time_kem_prekeys = []  # ascending id
        self.next_kem_prekey_id = 1  # shared by both kinds
        self._new_signed_prekey(rng, now)
        self.last_resort_kem_prekeys.append(self._new_kem_prekey(rng, now, "last-resort KEM prekey seed"))

    @property
    def identity_key(self) -> bytes:
        return ed25519_public(self.identity_seed)

    def _new_signed_prekey(self, rng: ScriptedRng, now: int):
        secret = rng.draw(32, "signed prekey private key")
        spk_id = self.next_signed_prekey_id
        self.next_signed_prekey_id += 1
        sig = ed25519_sign(self.identity_seed, signed_prekey_message(spk_id, now, x25519_public(secret)))
        self.signed_prekeys.append({"id": spk_id, "created_at": now, "secret": secret, "signature": sig})

    def _new_kem_prekey(self, rng: ScriptedRng, now: int, what: str) -> dict:
        seed = rng.draw(KEM_SEED_LEN, what)
        kem_id = self.next_kem_prekey_id
        self.next_kem_prekey_id += 1
        ek, _ = kem_keygen(seed)
        sig = ed25519_sign(self.identity_seed, kem_prekey_message(kem_id, now, ek))
        return {"id": kem_id, "created_at": now, "seed": seed, "signature": sig, "replaced_at": None}

    def rotate_signed_prekey(self, rng: ScriptedRng, now: int):
        """Section 3.2: a new current signed prekey; beyond MAX_SIGNED_PREKEYS the oldest
        replaced one is deleted with its replay memory (section 5)."""
        self._new_signed_prekey(rng, now)
        if len(self.signed_prekeys) > MAX_SIGNED_PREKEYS:
            oldest = self.signed_prekeys.pop(0)
            self.used_setups = [u for u in self.used_setups if u["signed_prekey_id"] != oldest["id"]]

    def generate_one_time_prekeys(self, rng: ScriptedRng, n: int, now: int):
        for _ in range(n):
            secret = rng.draw(32, "one-time prekey private key")
            self.one_time_prekeys.append(
                {"id": self.next_one_time_prekey_id, "secret": secret, "created_at": now, "replaced_at": None}
            )
            self.next_one_time_prekey_id += 1

    def generate_one_time_kem_prekeys(self, rng: ScriptedRng, n: int, now: int):
        for _ in range(n):
            self.one_time_kem_prekeys.append(self._new_kem_prekey(rng, now, "one-time KEM prekey seed"))

    def find_kem_prekey(self, kem_id: int) -> tuple[dict, bool]:
        """(prekey, is_one_time) by id: a one-time KEM prekey, or a stored last-resort one."""
        for k in self.one_time_kem_prekeys:
            if k["id"] == kem_id:
                return k, True
        for k in self.last_resort_kem_prekeys:
            if k["id"] == kem_id:
                return k, False
        raise Refused("already used KEM prekey" if 0 < kem_id < self.next_kem_prekey_id else "unknown KEM prekey")

    def bundle(self, with_one_time_prekey: bool, kem: str) -> bytes:
        """kem: "one-time" (the lowest-id one-time KEM prekey), "last-resort" (the current
        last-resort one) or "none" (a classical bundle)."""
        spk = self.signed_prekeys[-1]
        opk = self.one_time_prekeys[0] if with_one_time_prekey and self.one_time_prekeys else None
        if kem == "one-time":
            kpk = self.one_time_kem_prekeys[0]
        elif kem == "last-resort":
            kpk = self.last_resort_kem_prekeys[-1]
        else:
            assert kem == "none"
            kpk = None
        b = {
            "identity_key": self.identity_key,
            "signed_prekey": {
                "id": spk["id"],
                "created_at": spk["created_at"],
                "public_key": x25519_public(spk["secret"]),
                "signature": spk["signature"],
            },
            "one_time_prekey": (
                {"id": opk["id"], "public_key": x25519_public(opk["secret"])} if opk else None
            ),
            "kem_prekey": (
                {
                    "id": kpk["id"],
                    "created_at": kpk["created_at"],
                    "public_key": kem_keygen(kpk["seed"])[0],
                    "signature": kpk["signature"],
                }
                if kpk
                else None
            ),
        }
        return VERSION + enc_bundle(b)

    def public_signed_prekey(self) -> dict:
        spk = self.signed_prekeys[-1]
        return {
            "id": spk["id"],
            "created_at": spk["created_at"],
            "public_key": x25519_public(spk["secret"]),
            "signature": spk["signature"],
        }

    @staticmethod
    def public_kem_prekey(k: dict) -> dict:
        return {
            "id": k["id"],
            "created_at": k["created_at"],
            "public_key": kem_keygen(k["seed"])[0],
            "signature": k["signature"],
        }

    def upload(self, signed: bool, last_resort: bool, opk_ids: list, kem_ids: list) -> bytes:
        """Section 3.4: an upload of keys the account holds, the one-time lists in increasing
        id order, field 5 signing field 4."""
        opks = [
            {"id": o["id"], "public_key": x25519_public(o["secret"])}
            for o in sorted(self.one_time_prekeys, key=lambda o: o["id"])
            if o["id"] in opk_ids
        ]
        kems = [
            self.public_kem_prekey(k)
            for k in sorted(self.one_time_kem_prekeys, key=lambda k: k["id"])
            if k["id"] in kem_ids
        ]
        u = {
            "identity_key": self.identity_key,
            "signed_prekey": self.public_signed_prekey() if signed else None,
            "last_resort_kem_prekey": (
                self.public_kem_prekey(self.last_resort_kem_prekeys[-1]) if last_resort else None
            ),
            "one_time_prekeys": opks,
            "one_time_prekeys_signature": (
                ed25519_sign(self.identity_seed, one_time_prekeys_message(opks)) if opks else b""
            ),
            "one_time_kem_prekeys": kems,
        }
        return VERSION + enc_upload(u)

    def plain(self) -> bytes:
        return VERSION + enc_account_state(
            {
                "identity_seed": self.identity_seed,
                "signed_prekeys": self.signed_prekeys,
                "one_time_prekeys": self.one_time_prekeys,
                "next_signed_prekey_id": self.next_signed_prekey_id,
                "next_one_time_prekey_id": self.next_one_time_prekey_id,
                "used_setups": self.used_setups,
                "last_resort_kem_prekeys": self.last_resort_kem_prekeys,
                "one_time_kem_prekeys": self.one_time_kem_prekeys,
                "next_kem_prekey_id": self.next_kem_prekey_id,
            }
        )


# ---------------------------------------------------------------------------------------------
# Section 6: Double Ratchet
# ---------------------------------------------------------------------------------------------

MAX_SKIP = 2000


def kdf_rk(rk: bytes, dh_out: bytes) -> tuple[bytes, bytes]:
    out = hkdf(salt=rk, ikm=dh_out, info=LABEL_ROOT, length=64)
    return out[:32], out[32:]


def kdf_ck(ck: bytes) -> tuple[bytes, bytes]:
    return hmac_sha256(ck, b"\x01"), hmac_sha256(ck, b"\x02")


def header_ad(version: bytes, ratchet_key: bytes, n: int, pn: int, nonce: bytes) -> bytes:
    h = version + ratchet_key + u32be(n) + u32be(pn) + nonce
    assert len(h) == 53
    return h


class Ratchet:
    def __init__(
        self,
        rk: bytes,
        ad: bytes,
        our_secret: bytes | None,
        their_key: bytes | None,
        post_quantum: bool,
        exporter_secret: bytes,
    ):
        # The version byte of this session's messages (section 2).
        self.version = PQ_MESSAGE_VERSION if post_quantum else VERSION
        # Section 14: fixed at setup, stored with the session (section 8.1), not used here.
        self.exporter_secret = exporter_secret
        self.rk = rk
        self.ad = ad
        self.our_secret = our_secret
        self.their_key = their_key
        self.sending = None  # [CKs, Ns]
        self.receiving = None  # [CKr, Nr]
        self.pn = 0
        self.skipped = {}  # (K, n) -> MK, in storage order
        # Section 8.1 state that the messages above do not show: when each skipped key was
        # stored, the evicted-below counter of the receiving chain, finished receiving chains.
        self.stored_at = {}  # (K, n) -> time the key was stored
        self.receiving_evicted_below = 0
        self.history = []  # [{"ratchet_key", "length", "evicted_below"}], oldest first
        self.now = T  # the time passed to the decryption in progress

    def encrypt(self, rng: ScriptedRng, plaintext: bytes) -> tuple[dict, dict]:
        info = {}
        if self.sending is None:
            self.our_secret = rng.draw(32, "ratchet private key")
            dh_out = dh(self.our_secret, self.their_key)
            self.rk, ck = kdf_rk(self.rk, dh_out)
            self.sending = [ck, 0]
            info["new_sending_chain"] = {
                "ratchet_private": self.our_secret.hex(),
                "dh": dh_out.hex(),
                "root_key": self.rk.hex(),
                "chain_key": ck.hex(),
            }
        ck, n = self.sending
        assert n < 2**32 - 1, "sending chain ended (Ns = 2^32 - 1)"
        mk, next_ck = kdf_ck(ck)
        self.sending = [next_ck, n + 1]
        nonce = rng.draw(12, "nonce")
        rkey = x25519_public(self.our_secret)
        had = header_ad(self.version, rkey, n, self.pn, nonce)
        ct = aead_seal(mk, nonce, self.ad + had, plaintext)
        info.update({"chain_key": ck.hex(), "message_key": mk.hex(), "header_ad": had.hex()})
        return (
            {"version": self.version, "ratchet_key": rkey, "counter": n, "previous_counter": self.pn, "nonce": nonce, "ciphertext": ct},
            info,
        )

    def decrypt(self, m: dict, now: int = T) -> tuple[bytes, dict]:
        """Section 6.4, on copies: the state changes only if decryption succeeds."""
        new = copy.deepcopy(self)
        new.now = now
        pt, info = new._decrypt(m)
        self.__dict__.update(new.__dict__)
        return pt, info

    def _open(self, mk, m):
        # The session's own version byte: a message claiming another one fails the tag.
        had = header_ad(self.version, m["ratchet_key"], m["counter"], m["previous_counter"], m["nonce"])
        return aead_open(mk, m["nonce"], self.ad + had, m["ciphertext"])

    def _skip(self, key: bytes, chain: list, until: int):
        ck, nr = chain
        while nr < until:
            mk, ck = kdf_ck(ck)
            self.skipped[(key, nr)] = mk
            self.stored_at[(key, nr)] = self.now  # section 6.6: the time of this decryption
            nr += 1
        chain[0], chain[1] = ck, nr

    def _decrypt(self, m: dict) -> tuple[bytes, dict]:
        k, n, pn = m["ratchet_key"], m["counter"], m["previous_counter"]
        if k == self.their_key and self.receiving is not None:
            ck, nr = self.receiving
            if n >= nr:
                assert n - nr <= MAX_SKIP, "too far ahead"
                self._skip(k, self.receiving, n)
                mk, next_ck = kdf_ck(self.receiving[0])
                pt = self._open(mk, m)
                self.receiving = [next_ck, n + 1]
                return pt, {"message_key": mk.hex()}
        if (k, n) in self.skipped:
            mk = self.skipped.pop((k, n))
            del self.stored_at[(k, n)]
            return self._open(mk, m), {"message_key": mk.hex(), "from_skipped": True}
        assert k != self.their_key or self.receiving is None, "duplicate or expired"
        # New chain (DH ratchet step).
        assert self.our_secret is not None, "no key pair: peer cannot have a new key"
        if self.receiving is not None:
            assert pn <= self.receiving[1] or pn - self.receiving[1] <= MAX_SKIP
            self._skip(self.their_key, self.receiving, pn)
            # The old chain is finished: remember it (section 6.4 step 3), at most 32.
            self.history.append(
                {
                    "ratchet_key": self.their_key,
                    "length": self.receiving[1],  # max(Nr, pn)
                    "evicted_below": self.receiving_evicted_below,
                }
            )
            self.history = self.history[-32:]
        assert n <= MAX_SKIP
        dh_out = dh(self.our_secret, k)
        rk, ckr = kdf_rk(self.rk, dh_out)
        chain = [ckr, 0]
        self._skip(k, chain, n)
        mk, next_ck = kdf_ck(chain[0])
        pt = self._open(mk, m)
        self.rk = rk
        self.their_key = k
        self.receiving = [next_ck, n + 1]
        self.receiving_evicted_below = 0
        if self.sending is not None:
            self.pn = self.sending[1]
        self.our_secret = None
        self.sending = None
        return pt, {"dh": dh_out.hex(), "root_key": rk.hex(), "chain_key": ckr.hex(), "message_key": mk.hex()}


# ---------------------------------------------------------------------------------------------
# Section 5: PQXDH, X3DH and sessions
# ---------------------------------------------------------------------------------------------


def setup_sk(dhs: list[bytes], ss: bytes | None) -> bytes:
    """Section 5 step 7: PQXDH when there is a KEM shared secret, X3DH otherwise."""
    ikm = b"\xff" * 32 + b"".join(dhs)
    if ss is None:
        return hkdf(salt=bytes(32), ikm=ikm, info=LABEL_X3DH, length=32)
    assert len(ss) == 32
    return hkdf(salt=bytes(32), ikm=ikm + ss, info=LABEL_PQXDH, length=32)


def setup_exporter_secret(dhs: list[bytes], ss: bytes | None) -> bytes:
    """Section 14: the same input keying material and salt as SK, its own label."""
    ikm = b"\xff" * 32 + b"".join(dhs)
    if ss is None:
        return hkdf(salt=bytes(32), ikm=ikm, info=LABEL_X3DH_EXPORTER, length=32)
    return hkdf(salt=bytes(32), ikm=ikm + ss, info=LABEL_PQXDH_EXPORTER, length=32)


def export_key(exporter_secret: bytes, label: bytes, context: bytes, length: int) -> bytes:
    """Section 14: HKDF-Expand(exporter secret, LABEL_EXPORTER || u16be(L) || u8(len(label))
    || label || u16be(len(context)) || context, L)."""
    if not 1 <= len(label) <= 255:
        raise Refused("label must be 1 to 255 bytes")
    if len(context) > 65535:
        raise Refused("context too long")
    if not 1 <= length <= 255 * 32:
        raise Refused("output length must be 1 to 8160 bytes")
    info = (
        LABEL_EXPORTER
        + length.to_bytes(2, "big")
        + bytes([len(label)])
        + label
        + len(context).to_bytes(2, "big")
        + context
    )
    return hkdf_expand(exporter_secret, info, length)


# Section 11: the kind byte in front of every ratchet plaintext.
KIND_RAW = b"\x00"
KIND_CONTENT = b"\x01"


def raw_plaintext(data: bytes) -> bytes:
    """What `encrypt` puts in a ratchet message for the bytes `data`."""
    return KIND_RAW + data


def read_raw(plaintext: bytes) -> bytes:
    """`decrypt`'s check (section 11): kind 0x00, returned without it; content and unknown
    kinds are refused."""
    if plaintext[:1] == KIND_CONTENT:
        raise Refused("content message: read it with receive")
    if plaintext[:1] != KIND_RAW:
        raise Refused("unknown plaintext kind" if plaintext else "empty plaintext")
    return plaintext[1:]


class InitiatorSession:
    def __init__(self, account: Account, rng: ScriptedRng, bundle_wire: bytes, allow_classical: bool = False):
        b = decode_bundle(bundle_wire)
        ik_b = b["identity_key"]
        # 1. not our own bundle
        if ik_b == account.identity_key:
            raise Refused("own bundle")
        # 2. signed prekey signature
        spk = b["signed_prekey"]
        ed25519_verify(
            ik_b, spk["signature"], signed_prekey_message(spk["id"], spk["created_at"], spk["public_key"])
        )
        # 3. KEM prekey: verify and always use; none: classical only if explicitly allowed
        kpk = b["kem_prekey"]
        if kpk is not None:
            ed25519_verify(
                ik_b, kpk["signature"], kem_prekey_message(kpk["id"], kpk["created_at"], kpk["public_key"])
            )
        elif not allow_classical:
            raise Refused("classical bundle, classical setups not allowed")
        # 4. ephemeral key (first draw)
        ek = rng.draw(32, "ephemeral private key")
        # 5. DH values
        dhs = [
            dh(identity_x25519_private(account.identity_seed), spk["public_key"]),
            dh(ek, identity_x25519_public(ik_b)),
            dh(ek, spk["public_key"]),
        ]
        if b["one_time_prekey"] is not None:
            dhs.append(dh(ek, b["one_time_prekey"]["public_key"]))
        # 6. encapsulation (second draw: m)
        self.kem = None
        self.kem_ss = None
        if kpk is not None:
            m = rng.draw(32, "ML-KEM message m")
            ct, self.kem_ss = kem_encaps(kpk["public_key"], m)
            self.kem = {"prekey_id": kpk["id"], "ciphertext": ct}
        # 7. SK (and, section 14, the exporter secret)
        self.sk = setup_sk(dhs, self.kem_ss)
        self.exporter_secret = setup_exporter_secret(dhs, self.kem_ss)
        self.dhs = dhs
        # 8. AD
        self.ad = account.identity_key + ik_b
        self.setup = {
            "identity_key": account.identity_key,
            "base_key": x25519_public(ek),
            "signed_prekey_id": spk["id"],
            "one_time_prekey_id": b["one_time_prekey"]["id"] if b["one_time_prekey"] else None,
            "kem": self.kem,
        }
        self.awaiting_reply = True
        self.ratchet = Ratchet(
            self.sk, self.ad, None, spk["public_key"], self.kem is not None, self.exporter_secret
        )

    def encrypt(self, rng, plaintext):
        """`encrypt` of raw bytes: the ratchet plaintext is 0x00 || plaintext (section 11)."""
        rm, info = self.ratchet.encrypt(rng, raw_plaintext(plaintext))
        if self.awaiting_reply:
            msg = {"initial": dict(self.setup, message=rm)}
        else:
            msg = {"ratchet": rm}
        return self.ratchet.version + enc_message(msg), info

    def decrypt(self, wire):
        msg = decode_message(wire)
        assert "ratchet" in msg
        # The kind byte is checked before the ratchet's state is committed (section 11).
        new = copy.deepcopy(self.ratchet)
        pt, info = new.decrypt(msg["ratchet"])
        data = read_raw(pt)
        self.ratchet = new
        self.awaiting_reply = False
        return data, info


def setup_id(im: dict) -> tuple:
    """Responder step 1: what identifies a setup (same base key, initiator identity, signed
    prekey id, one-time prekey id, KEM prekey id and SHA-256 of the KEM ciphertext)."""
    kem = im["kem"]
    return (
        im["base_key"],
        im["identity_key"],
        im["signed_prekey_id"],
        im["one_time_prekey_id"],
        kem["prekey_id"] if kem else None,
        sha256(kem["ciphertext"]) if kem else None,
    )


class Responder:
    """Bob's side: account plus sessions keyed by setup (section 5, responder steps 1-4)."""

    def __init__(self, account: Account, allow_classical: bool = False):
        self.account = account
        self.allow_classical = allow_classical
        self.sessions = {}  # setup tuple -> Ratchet
        self.current = None

    def decrypt(self, wire, now: int = T):
        """`decrypt` (raw bytes): the kind byte is checked on copies, before any commit."""
        msg = decode_message(wire)
        if "ratchet" in msg:
            new = copy.deepcopy(self.current)
            pt, info = new.decrypt(msg["ratchet"], now)
            data = read_raw(pt)
            self.current.__dict__.update(new.__dict__)
            return data, info
        im = msg["initial"]
        setup = setup_id(im)
        # 1. a session from exactly this setup
        if setup in self.sessions:
            ratchet = self.sessions[setup]
            new = copy.deepcopy(ratchet)
            pt, info = new.decrypt(im["message"], now)
            data = read_raw(pt)
            ratchet.__dict__.update(new.__dict__)
            self.current = ratchet
            return data, info
        # 2. mode, prekey lookup, replay
        if im["kem"] is None and not self.allow_classical:
            raise Refused("classical setup refused")
        acct = self.account
        spk = next((s for s in acct.signed_prekeys if s["id"] == im["signed_prekey_id"]), None)
        if spk is None:
            raise Refused("unknown signed prekey")
        opk = None
        if im["one_time_prekey_id"] is not None:
            opk = next((o for o in acct.one_time_prekeys if o["id"] == im["one_time_prekey_id"]), None)
            if opk is None:
                raise Refused(
                    "already used prekey"
                    if 0 < im["one_time_prekey_id"] < acct.next_one_time_prekey_id
                    else "unknown prekey"
                )
        kpk, kem_one_time = (None, False)
        if im["kem"] is not None:
            kpk, kem_one_time = acct.find_kem_prekey(im["kem"]["prekey_id"])
        uses_one_time = opk is not None or kem_one_time
        used = {"signed_prekey_id": spk["id"], "base_key": im["base_key"]}
        if not uses_one_time and used in acct.used_setups:
            raise Refused("replayed setup")
        remembered = sum(1 for u in acct.used_setups if u["signed_prekey_id"] == spk["id"])
        if not uses_one_time and remembered >= MAX_USED_SETUPS:
            raise Refused("replay memory of the signed prekey is full")
        # 3. DH values, decapsulation, SK, AD, session, decryption (on copies)
        ik_a_x = identity_x25519_public(im["identity_key"])
        dhs = [
            dh(spk["secret"], ik_a_x),
            dh(identity_x25519_private(acct.identity_seed), im["base_key"]),
            dh(spk["secret"], im["base_key"]),
        ]
        if opk is not None:
            dhs.append(dh(opk["secret"], im["base_key"]))
        ss = kem_decaps(kpk["seed"], im["kem"]["ciphertext"]) if kpk is not None else None
        sk = setup_sk(dhs, ss)
        ad = im["identity_key"] + acct.identity_key
        exporter_secret = setup_exporter_secret(dhs, ss)
        ratchet = Ratchet(sk, ad, spk["secret"], None, im["kem"] is not None, exporter_secret)
        pt, info = ratchet.decrypt(im["message"], now)  # raises before any commit on failure
        data = read_raw(pt)  # likewise (section 11)
        # Section 7: a record never holds two sessions with one id (base key).
        if any(k[0] == im["base_key"] for k in self.sessions):
            raise Refused("a session with this id exists")
        info = dict(info, shared_secret=sk.hex())
        if ss is not None:
            info["kem_shared_secret"] = ss.hex()
        # 4. commit
        if opk is not None:
            acct.one_time_prekeys.remove(opk)
        if kem_one_time:
            acct.one_time_kem_prekeys.remove(kpk)
        if not uses_one_time:
            acct.used_setups.append(used)
        self.sessions[setup] = ratchet
        self.current = ratchet
        return data, info

    def encrypt(self, rng, plaintext):
        """`encrypt` of raw bytes: the ratchet plaintext is 0x00 || plaintext (section 11)."""
        rm, info = self.current.encrypt(rng, raw_plaintext(plaintext))
        return self.current.version + enc_message({"ratchet": rm}), info


# ---------------------------------------------------------------------------------------------
# Section 8.2: sealing
# ---------------------------------------------------------------------------------------------


def seal(kind: int, storage_key: bytes, salt: bytes, plain: bytes) -> bytes:
    name = KIND_NAMES[kind]
    key = hkdf(salt=salt, ikm=storage_key, info=LABEL_STATE_SEAL + name, length=32)
    ct = aead_seal(key, bytes(12), name, plain)
    return VERSION + enc_sealed_state(kind, salt, ct)


def unseal(kind: int, storage_key: bytes, sealed: bytes) -> bytes:
    assert sealed[:1] == VERSION
    f = pb_decode(sealed[1:])
    _known(f, {1, 2, 3})
    assert (_single(f, 1, 0) or 0) == kind, "wrong kind"
    salt, ct = _single(f, 2, 2), _single(f, 3, 2)
    assert len(salt) == 32
    name = KIND_NAMES[kind]
    key = hkdf(salt=salt, ikm=storage_key, info=LABEL_STATE_SEAL + name, length=32)
    return aead_open(key, bytes(12), name, ct)


# ---------------------------------------------------------------------------------------------
# The scenario
# ---------------------------------------------------------------------------------------------


def exchange(sender, receiver, rng, who_from, who_to, plaintext, log, expect):
    wire, sinfo = sender.encrypt(rng, plaintext)
    msg = decode_message(wire)
    kind = "initial" if "initial" in msg else "ratchet"
    rm = msg["initial"]["message"] if kind == "initial" else msg["ratchet"]
    assert kind == expect["type"], (kind, expect)
    assert rm["counter"] == expect["counter"] and rm["previous_counter"] == expect["previous_counter"]
    if kind == "initial":
        im = msg["initial"]
        assert im["one_time_prekey_id"] == expect.get("one_time_prekey_id")
        assert (im["kem"]["prekey_id"] if im["kem"] else None) == expect.get("kem_prekey_id")
        assert im["kem"] == sender.kem, "initial message must repeat the setup's KEM part"
    pt, rinfo = receiver.decrypt(wire)
    assert pt == plaintext, "receiver decrypted something else"
    assert rinfo["message_key"] == sinfo["message_key"], "message keys disagree"
    if "shared_secret" in rinfo:
        assert rinfo["shared_secret"] == sender.sk.hex(), "shared secrets disagree"
        assert rinfo.get("kem_shared_secret") == (sender.kem_ss.hex() if sender.kem_ss else None)
    if "new_sending_chain" in sinfo:
        # The receiver performed the matching DH ratchet step.
        assert rinfo["dh"] == sinfo["new_sending_chain"]["dh"]
        assert rinfo["root_key"] == sinfo["new_sending_chain"]["root_key"]
        assert rinfo["chain_key"] == sinfo["new_sending_chain"]["chain_key"]
    entry = {
        "from": who_from,
        "to": who_to,
        "type": kind,
        "plaintext": plaintext.hex(),
        "plaintext_utf8": plaintext.decode(),
        "ratchet_plaintext": raw_plaintext(plaintext).hex(),
        "wire": wire.hex(),
        "ratchet_key": rm["ratchet_key"].hex(),
        "counter": rm["counter"],
        "previous_counter": rm["previous_counter"],
        "nonce": rm["nonce"].hex(),
        "header_ad": sinfo["header_ad"],
        "chain_key": sinfo["chain_key"],
        "message_key": sinfo["message_key"],
        "ciphertext": rm["ciphertext"].hex(),
    }
    if "new_sending_chain" in sinfo:
        nsc = sinfo["new_sending_chain"]
        entry["new_sending_chain"] = {
            "dh": nsc["dh"],
            "root_key_after": nsc["root_key"],
            "chain_key": nsc["chain_key"],
        }
    log.append(entry)
    return wire


def expect_refused(fn, reason: str):
    try:
        fn()
    except Refused as e:
        assert reason in str(e), (reason, str(e))
    else:
        raise AssertionError(f"expected a refusal: {reason}")


def flip_bit_in_kem_ciphertext(wire: bytes, ct: bytes, bit: int) -> bytes:
    i = wire.index(ct)
    assert wire.count(ct) == 1
    j = i + bit // 8
    return wire[:j] + bytes([wire[j] ^ (1 << (bit % 8))]) + wire[j + 1 :]


ALICE_DRAWS = [
    "a_id", "a_spk", "a_kem_lr",
    "a_ek1", "m1", "a_r1", "n1", "n2", "a_r2", "n4",
    "a_ek2", "m2", "a_r3", "n6",
    "a_ek3", "a_r4", "n7",
]  # fmt: skip
BOB_DRAWS = ["b_id", "b_spk", "b_kem_lr", "b_opk", "b_kem_otk", "b_r1", "n3", "b_r2", "n5"]


def initiator_record_plain(s: InitiatorSession, account: Account, allow_classical: bool = False) -> bytes:
    """Alice's record for session s (a record of its own, holding only that session)."""
    setup = s.setup
    kem = None
    if s.kem is not None:
        kem = {
            "prekey_id": s.kem["prekey_id"],
            "ciphertext_hash": sha256(s.kem["ciphertext"]),
            "ciphertext": s.kem["ciphertext"],
        }
    return session_record_plain(
        account.identity_key,
        s.ad[32:],  # AD = IK_A || IK_B
        True,
        dict(setup, kem=kem),
        s.awaiting_reply,
        s.ratchet,
        allow_classical,
    )


def responder_record_plain(responder: "Responder", account: Account) -> bytes:
    """Bob's record for the session he is in (in the vectors, a record of its own holding
    only that session)."""
    (setup,) = [k for k, r in responder.sessions.items() if r is responder.current]
    base_key, ik_a, spk_id, opk_id, kem_id, ct_hash = setup
    kem = None if kem_id is None else {"prekey_id": kem_id, "ciphertext_hash": ct_hash, "ciphertext": b""}
    return session_record_plain(
        account.identity_key,
        ik_a,
        False,
        {"base_key": base_key, "signed_prekey_id": spk_id, "one_time_prekey_id": opk_id, "kem": kem},
        False,
        responder.current,
        responder.allow_classical,
    )


def records_after(index: int, point: str, s: InitiatorSession, alice: Account, bob_side: "Responder", bob: Account) -> dict:
    """Both records of session 1 once message `index` has been decrypted."""
    out = {
        "point": point,
        "after_message": index,
        "alice": initiator_record_plain(s, alice),
        "bob": responder_record_plain(bob_side, bob),
    }
    check_record_plain(out["alice"])
    check_record_plain(out["bob"])
    return out


LATE_REPLY_DRAWS = ["b_r1", "n3"]
T_LATE = T + 60


def build() -> dict:
    kem_known_answer_check()

    alice_rng = ScriptedRng("alice", ALICE_DRAWS)
    bob_rng = ScriptedRng("bob", BOB_DRAWS)

    alice = Account(alice_rng, T)
    bob = Account(bob_rng, T)
    bob.generate_one_time_prekeys(bob_rng, 1, T)
    bob.generate_one_time_kem_prekeys(bob_rng, 1, T)
    assert [k["id"] for k in bob.last_resort_kem_prekeys] == [1]
    assert [k["id"] for k in bob.one_time_kem_prekeys] == [2]
    assert bob.next_kem_prekey_id == 3

    # Consistency of the two public forms of each identity key (section 3.1).
    for acct in (alice, bob):
        assert x25519_public(identity_x25519_private(acct.identity_seed)) == identity_x25519_public(
            acct.identity_key
        ), "Montgomery map disagrees with the X25519 public key of SHA-512(seed)[:32]"

    bundle = bob.bundle(with_one_time_prekey=True, kem="one-time")
    bundle_last_resort = bob.bundle(with_one_time_prekey=False, kem="last-resort")
    bundle_classical = bob.bundle(with_one_time_prekey=False, kem="none")
    spk = bob.signed_prekeys[0]
    ed25519_verify(
        bob.identity_key, spk["signature"], signed_prekey_message(1, T, x25519_public(spk["secret"]))
    )
    kem_lr = bob.last_resort_kem_prekeys[0]
    kem_otk = bob.one_time_kem_prekeys[0]
    # Section 3.3: the byte forms of each prekey on its own; section 3.4: Bob's upload of his
    # signed prekey, last-resort KEM prekey, one-time prekey 1 and one-time KEM prekey 2.
    opk1 = {"id": 1, "public_key": x25519_public(INPUTS["b_opk"])}
    prekey_forms = {
        "signed_prekey": (VERSION + enc_signed_prekey(bob.public_signed_prekey())).hex(),
        "one_time_prekey": (VERSION + enc_one_time_prekey(opk1)).hex(),
        "last_resort_kem_prekey": (VERSION + enc_kem_prekey(Account.public_kem_prekey(kem_lr))).hex(),
        "one_time_kem_prekey": (VERSION + enc_kem_prekey(Account.public_kem_prekey(kem_otk))).hex(),
    }
    upload = bob.upload(signed=True, last_resort=True, opk_ids=[1], kem_ids=[2])
    checked = check_upload(upload)
    assert checked["one_time_prekeys"] == [opk1]
    upload_opk_message = one_time_prekeys_message([opk1])
    bob_kem_lr_pub = kem_keygen(kem_lr["seed"])[0]
    bob_kem_otk_pub = kem_keygen(kem_otk["seed"])[0]
    alice_kem_lr_pub = kem_keygen(alice.last_resort_kem_prekeys[0]["seed"])[0]
    for pub, k in ((bob_kem_lr_pub, kem_lr), (bob_kem_otk_pub, kem_otk)):
        ed25519_verify(bob.identity_key, k["signature"], kem_prekey_message(k["id"], T, pub))
    ed25519_verify(
        alice.identity_key,
        alice.last_resort_kem_prekeys[0]["signature"],
        kem_prekey_message(1, T, alice_kem_lr_pub),
    )
    b1, b2, b3 = decode_bundle(bundle), decode_bundle(bundle_last_resort), decode_bundle(bundle_classical)
    assert b1["one_time_prekey"]["id"] == 1 and b1["kem_prekey"]["id"] == 2
    assert b1["kem_prekey"]["public_key"] == bob_kem_otk_pub
    assert b2["one_time_prekey"] is None and b2["kem_prekey"]["id"] == 1
    assert b2["kem_prekey"]["public_key"] == bob_kem_lr_pub
    assert b3["one_time_prekey"] is None and b3["kem_prekey"] is None

    account_plain = bob.plain()  # after creating the OPK and the one-time KEM prekey, before any session
    decoded = dec_account_state(account_plain)
    assert decoded["used_setups"] == [] and decoded["next_kem_prekey_id"] == 3
    # Section 3.2: rotations keep at most 16 signed prekeys (the oldest replaced ones are
    # deleted), and decoding refuses a 17th or repeated ids. (Self-checks only: the rotated
    # accounts are not vectors.)
    rotated = copy.deepcopy(bob)
    for i in range(20):
        rotated.rotate_signed_prekey(ScriptedRng("rotation", [BOB_DRAWS[1]]), T + 1 + i)
    assert [k["id"] for k in rotated.signed_prekeys] == list(range(6, 22))
    dec_account_state(rotated.plain())
    for bad in ([bob.signed_prekeys[0]] + rotated.signed_prekeys, rotated.signed_prekeys[:1] * 2):
        crafted = copy.deepcopy(rotated)
        crafted.signed_prekeys = bad
        try:
            dec_account_state(crafted.plain())
        except AssertionError:
            pass
        else:
            raise AssertionError("too many signed prekeys, or a repeated id, was accepted")
    account_sealed = seal(STATE_KIND_ACCOUNT, INPUTS["sk_store"], INPUTS["seal_salt"], account_plain)
    assert unseal(STATE_KIND_ACCOUNT, INPUTS["sk_store"], account_sealed) == account_plain

    bob_side = Responder(bob, allow_classical=False)

    # Session 1: PQXDH with one-time prekey 1 and one-time KEM prekey 2.
    s1 = InitiatorSession(alice, alice_rng, bundle)
    log1 = []
    bob_before_session_1 = copy.deepcopy(bob_side)
    p = [b"Hello Bob", b"Second message", b"Hi Alice", b"Turn two", b""]
    setup1 = {"one_time_prekey_id": 1, "kem_prekey_id": 2}
    w1 = exchange(s1, bob_side, alice_rng, "alice", "bob", p[0], log1,
                  {"type": "initial", "counter": 0, "previous_counter": 0, **setup1})
    w2 = exchange(s1, bob_side, alice_rng, "alice", "bob", p[1], log1,
                  {"type": "initial", "counter": 1, "previous_counter": 0, **setup1})
    records1 = [records_after(1, "after_initial_messages", s1, alice, bob_side, bob)]
    exchange(bob_side, s1, bob_rng, "bob", "alice", p[2], log1,
             {"type": "ratchet", "counter": 0, "previous_counter": 0})
    records1.append(records_after(2, "after_reply", s1, alice, bob_side, bob))
    exchange(s1, bob_side, alice_rng, "alice", "bob", p[3], log1,
             {"type": "ratchet", "counter": 0, "previous_counter": 2})
    exchange(bob_side, s1, bob_rng, "bob", "alice", p[4], log1,
             {"type": "ratchet", "counter": 0, "previous_counter": 1})
    records1.append(records_after(4, "end", s1, alice, bob_side, bob))
    assert bob.one_time_prekeys == [], "OPK 1 should be consumed"
    assert bob.one_time_kem_prekeys == [], "one-time KEM prekey 2 should be consumed"
    assert [k["id"] for k in bob.last_resort_kem_prekeys] == [1]
    assert bob.used_setups == []

    # Repeated initial messages in any order land in one session (responder step 1).
    fresh_bob = copy.deepcopy(bob_before_session_1)
    assert fresh_bob.decrypt(w2)[0] == p[1]
    assert len(fresh_bob.sessions) == 1
    # Bob's record now holds one skipped key: (Alice's first ratchet key, 0), stored at T.
    assert list(fresh_bob.current.skipped) == [(bytes.fromhex(log1[0]["ratchet_key"]), 0)]
    assert fresh_bob.current.stored_at == {(bytes.fromhex(log1[0]["ratchet_key"]), 0): T}
    bob_out_of_order = responder_record_plain(fresh_bob, bob)
    check_record_plain(bob_out_of_order)

    # A message that arrives after its chain was finished (section 6.4 step 4, then step 2):
    # a fresh Bob decrypts Alice's first message at T, replies (drawing b_r1 and n3 again:
    # the same reply as in session 1), and decrypts Alice's message after the turn at
    # T_LATE. Its previous_counter 2 makes him store the key of her second initial message,
    # (a_r1, 1), at T_LATE, and finish the chain of a_r1 with length max(Nr, pn) = 2.
    late_bob = copy.deepcopy(bob_before_session_1)
    assert late_bob.decrypt(w1, T)[0] == p[0]
    reply, _ = late_bob.encrypt(ScriptedRng("bob copy", LATE_REPLY_DRAWS), p[2])
    assert reply.hex() == log1[2]["wire"], "the reply does not depend on message 1"
    assert late_bob.decrypt(bytes.fromhex(log1[3]["wire"]), T_LATE)[0] == p[3]
    a_r1 = bytes.fromhex(log1[0]["ratchet_key"])
    assert late_bob.current.stored_at == {(a_r1, 1): T_LATE}
    assert late_bob.current.history == [{"ratchet_key": a_r1, "length": 2, "evicted_below": 0}]
    bob_late = responder_record_plain(late_bob, bob)
    check_record_plain(bob_late)
    # The late message still decrypts, with the stored key, from the finished chain.
    assert late_bob.decrypt(w2, T_LATE)[0] == p[1]
    assert late_bob.current.skipped == {}
    assert fresh_bob.decrypt(w1)[0] == p[0]
    assert len(fresh_bob.sessions) == 1

    # Negative check: one flipped bit of the KEM ciphertext gives Bob another SS and SK
    # (implicit rejection), so the message fails authentication and nothing is committed.
    ct1 = s1.kem["ciphertext"]
    for bit in (0, 8 * KEM_CT_LEN - 1):
        bad_wire = flip_bit_in_kem_ciphertext(w1, ct1, bit)
        bad_ct = decode_message(bad_wire)["initial"]["kem"]["ciphertext"]
        assert bad_ct != ct1
        bad_ss = kem_decaps(kem_otk["seed"], bad_ct)
        assert bad_ss != s1.kem_ss
        assert setup_sk(s1.dhs, bad_ss) != s1.sk
        victim = copy.deepcopy(bob_before_session_1)
        before = victim.account.plain()
        try:
            victim.decrypt(bad_wire)
        except InvalidTag:
            pass
        else:
            raise AssertionError("modified KEM ciphertext was accepted")
        assert victim.account.plain() == before and victim.sessions == {}
    # Stripping the KEM part (a classical message with the same DH values) fails too.
    stripped = decode_message(w1)
    stripped["initial"]["kem"] = None
    lenient = copy.deepcopy(bob_before_session_1)
    lenient.allow_classical = True
    try:
        lenient.decrypt(VERSION + enc_message(stripped))  # consistently classical: version 1
    except InvalidTag:
        pass
    else:
        raise AssertionError("stripped KEM part was accepted")
    assert lenient.sessions == {}

    # Session 2: PQXDH with the last-resort KEM prekey 1, no one-time prekey.
    s2 = InitiatorSession(alice, alice_rng, bundle_last_resort)
    log2 = []
    exchange(s2, bob_side, alice_rng, "alice", "bob", b"Last resort", log2,
             {"type": "initial", "counter": 0, "previous_counter": 0, "kem_prekey_id": 1})
    assert [k["id"] for k in bob.last_resort_kem_prekeys] == [1], "last-resort KEM prekey is kept"
    assert bob.used_setups == [{"signed_prekey_id": 1, "base_key": s2.setup["base_key"]}]

    # Session 3: classical X3DH, explicitly allowed on both sides, no one-time prekey.
    expect_refused(lambda: InitiatorSession(alice, ScriptedRng("none", []), bundle_classical),
                   "classical setups not allowed")
    s3 = InitiatorSession(alice, alice_rng, bundle_classical, allow_classical=True)
    assert s3.kem is None
    w7, _ = copy.deepcopy(s3).encrypt(ScriptedRng("copy", ["a_r4", "n7"]), b"Classical")
    refusing_bob = copy.deepcopy(bob_side)
    expect_refused(lambda: refusing_bob.decrypt(w7), "classical setup refused")
    bob_side.allow_classical = True
    # Section 5, replay memory: with 2,000 setups remembered for signed prekey 1, a new setup
    # without one-time keys on it is refused and changes nothing; with 1,999 it is accepted.
    fake_setups = [{"signed_prekey_id": 1, "base_key": u32be(n) + bytes(28)} for n in range(1999)]
    full_bob = copy.deepcopy(bob_side)
    full_bob.account.used_setups += fake_setups
    before = full_bob.account.plain()
    expect_refused(lambda: full_bob.decrypt(w7), "replay memory of the signed prekey is full")
    assert full_bob.account.plain() == before and len(full_bob.sessions) == len(bob_side.sessions)
    dec_account_state(before)
    roomy_bob = copy.deepcopy(bob_side)
    roomy_bob.account.used_setups += fake_setups[:-1]
    assert roomy_bob.decrypt(w7)[0] == b"Classical"
    # Section 8.1: decoding refuses a 2,001st entry for one signed prekey, an entry naming no
    # held signed prekey, and the same entry twice.
    for bad in (
        fake_setups + [{"signed_prekey_id": 1, "base_key": bytes(31) + b"\x01"}] * 1,
        [{"signed_prekey_id": 2, "base_key": bytes(32)}],
        [fake_setups[0], fake_setups[0]],
    ):
        crafted = copy.deepcopy(bob)
        crafted.used_setups = [u for u in crafted.used_setups] + bad
        try:
            dec_account_state(crafted.plain())
        except AssertionError:
            pass
        else:
            raise AssertionError("a bad replay memory was accepted")
    log3 = []
    exchange(s3, bob_side, alice_rng, "alice", "bob", b"Classical", log3,
             {"type": "initial", "counter": 0, "previous_counter": 0})
    assert log3[0]["wire"] == w7.hex()
    assert bob.used_setups[1] == {"signed_prekey_id": 1, "base_key": s3.setup["base_key"]}
    # The same setup again (without its session) is a replay.
    replay_bob = copy.deepcopy(bob_side)
    replay_bob.sessions = {}
    expect_refused(lambda: replay_bob.decrypt(w7), "replayed setup")

    alice_rng.done()
    bob_rng.done()

    # Section 11: `decrypt` refuses content and unknown kinds, and an empty plaintext.
    for bad in (KIND_CONTENT + b"x", b"\x02x", b"\xffx", b""):
        expect_refused(lambda: read_raw(bad), "content" if bad[:1] == KIND_CONTENT else "plaintext")
    assert read_raw(raw_plaintext(b"\x01 looks like content")) == b"\x01 looks like content"

    # Section 14: the key exporter. Both sides hold the same exporter secret.
    def responder_exporter_secret(s: InitiatorSession) -> bytes:
        (ratchet,) = [r for k, r in bob_side.sessions.items() if k[0] == s.setup["base_key"]]
        return ratchet.exporter_secret

    for s in (s1, s2, s3):
        assert s.exporter_secret == responder_exporter_secret(s)
        assert s.exporter_secret != s.sk
    for label, context, length in ((b"", b"", 32), (b"l" * 256, b"", 32), (b"l", bytes(65536), 32),
                                   (b"l", b"", 0), (b"l", b"", 8161)):
        expect_refused(lambda: export_key(s1.exporter_secret, label, context, length), "")
    export_cases = [
        (b"call media key", b"call 7", 32),
        (b"x", b"", 1),
        (b"file", bytes(range(100)), 100),
        (b"l" * 255, b"", 64),
    ]

    def exporter_json(s: InitiatorSession) -> dict:
        return {
            "exporter_secret": s.exporter_secret.hex(),
            "keys": [
                {
                    "label": label.hex(),
                    "context": context.hex(),
                    "length": length,
                    "key": export_key(s.exporter_secret, label, context, length).hex(),
                }
                for (label, context, length) in export_cases
            ],
        }

    def session_json(s: InitiatorSession, log):
        out = {
            "mode": "PQXDH" if s.kem else "X3DH",
            "shared_secret": s.sk.hex(),
        }
        if s.kem:
            out["kem_shared_secret"] = s.kem_ss.hex()
            out["kem_prekey_id"] = s.kem["prekey_id"]
            out["kem_ciphertext_sha256"] = sha256(s.kem["ciphertext"]).hex()
        out.update(
            {
                "dh": [d.hex() for d in s.dhs],
                "associated_data": s.ad.hex(),
                "base_key": s.setup["base_key"].hex(),
                "signed_prekey_id": s.setup["signed_prekey_id"],
                "one_time_prekey_id": s.setup["one_time_prekey_id"],
                "messages": log,
            }
        )
        return out

    for s in (s1, s2, s3):
        for d in s.dhs:
            assert d != bytes(32)
    assert len(s1.dhs) == 4 and len(s2.dhs) == 3 and len(s3.dhs) == 3

    return {
        "description": (
            "ratchetbox protocol v1 test vectors: Bob's prekey bundles (bundle: one-time prekey 1 "
            "and one-time KEM prekey 2; bundle_last_resort: last-resort KEM prekey 1, no one-time "
            "prekey; bundle_classical: neither), session_1 (PQXDH with one-time prekey and "
            "one-time KEM prekey: Alice's two initial messages, Bob's reply, Alice's next message "
            "after the turn, Bob's empty reply; each raw plaintext is encrypted after the kind byte "
            "0x00, see ratchet_plaintext), session_2 (PQXDH with the last-resort KEM prekey, "
            "no one-time prekey: Alice's first message), session_3 (classical X3DH, explicitly "
            "allowed, no one-time prekey: Alice's first message), and Bob's account state "
            "(after creating one one-time prekey and one one-time KEM prekey, before any session) "
            "in plain and sealed form. Every random value is derived from its label (see "
            "label_derivation): SHA-256(label) truncated to the size drawn, or SHA-512(label) for "
            "the 64-byte ML-KEM seeds d || z; labels are the full UTF-8 strings below. All "
            "prekeys are created at `time`. ML-KEM-1024 keys and ciphertexts appear in full only "
            "inside the wire objects; elsewhere as SHA-256. Hex strings are lowercase."
        ),
        "source": "tests/data/vectors.py, written from docs/PROTOCOL.md",
        "time": T,
        "labels": {name: LABEL_PREFIX + label for name, label in LABELS.items()},
        "label_derivation": {
            "rule": (
                "input = SHA-256(label) truncated to size, except for sizes of 64 bytes: "
                "input = SHA-512(label) (d = bytes 0..32, z = bytes 32..64)"
            ),
            "sizes": dict(SIZES),
            "sha512": sorted(KEM_SEED_NAMES),
        },
        "draw_order": {
            "alice": list(ALICE_DRAWS),
            "bob": list(BOB_DRAWS),
            "seal": ["seal_salt"],
        },
        "inputs": {name: value.hex() for name, value in INPUTS.items()},
        "public": {
            "alice_identity_key": alice.identity_key.hex(),
            "alice_identity_x25519": identity_x25519_public(alice.identity_key).hex(),
            "alice_signed_prekey_public": x25519_public(INPUTS["a_spk"]).hex(),
            "alice_signed_prekey_signature": alice.signed_prekeys[0]["signature"].hex(),
            "alice_kem_last_resort_public_sha256": sha256(alice_kem_lr_pub).hex(),
            "alice_kem_last_resort_signature": alice.last_resort_kem_prekeys[0]["signature"].hex(),
            "bob_identity_key": bob.identity_key.hex(),
            "bob_identity_x25519": identity_x25519_public(bob.identity_key).hex(),
            "bob_signed_prekey_public": x25519_public(INPUTS["b_spk"]).hex(),
            "bob_signed_prekey_message": signed_prekey_message(1, T, x25519_public(INPUTS["b_spk"])).hex(),
            "bob_signed_prekey_signature": spk["signature"].hex(),
            "bob_one_time_prekey_public": x25519_public(INPUTS["b_opk"]).hex(),
            "bob_kem_last_resort_id": kem_lr["id"],
            "bob_kem_last_resort_public_sha256": sha256(bob_kem_lr_pub).hex(),
            "bob_kem_last_resort_message_sha256": sha256(kem_prekey_message(1, T, bob_kem_lr_pub)).hex(),
            "bob_kem_last_resort_signature": kem_lr["signature"].hex(),
            "bob_kem_one_time_id": kem_otk["id"],
            "bob_kem_one_time_public_sha256": sha256(bob_kem_otk_pub).hex(),
            "bob_kem_one_time_message_sha256": sha256(kem_prekey_message(2, T, bob_kem_otk_pub)).hex(),
            "bob_kem_one_time_signature": kem_otk["signature"].hex(),
            "session_1_kem_ciphertext_sha256": sha256(s1.kem["ciphertext"]).hex(),
            "session_2_kem_ciphertext_sha256": sha256(s2.kem["ciphertext"]).hex(),
        },
        "bundle": bundle.hex(),
        "prekeys": prekey_forms,
        "upload": {
            "description": (
                "Section 3.4: Bob's PreKeyUpload carrying his signed prekey, his last-resort KEM "
                "prekey, one-time prekey 1 and one-time KEM prekey 2 (Account::prekey_upload), "
                "with the message field 5 signs."
            ),
            "one_time_prekeys_message": upload_opk_message.hex(),
            "bytes": upload.hex(),
        },
        "non_canonical": non_canonical_vectors(
            bytes.fromhex(log2[0]["wire"]), bytes.fromhex(log1[2]["wire"]), bundle
        ),
        "bundle_last_resort": bundle_last_resort.hex(),
        "bundle_classical": bundle_classical.hex(),
        "session_1": session_json(s1, log1),
        "session_2": session_json(s2, log2),
        "session_3": session_json(s3, log3),
        "exporter": {
            "description": (
                "Section 14: each session's exporter secret (the same on both sides) and keys "
                "exported from it, for the label, context (hex) and length given. session_1 "
                "and session_2 are PQXDH sessions, session_3 a classical X3DH one."
            ),
            "session_1": exporter_json(s1),
            "session_2": exporter_json(s2),
            "session_3": exporter_json(s3),
        },
        "account_plain": account_plain.hex(),
        "account_sealed": account_sealed.hex(),
        "account_sealing_key": hkdf(
            salt=INPUTS["seal_salt"], ikm=INPUTS["sk_store"], info=LABEL_STATE_SEAL + b"account", length=32
        ).hex(),
        "session_1_records": {
            "description": (
                "Plain form (section 8.1) of Alice's and Bob's session records in session 1, each "
                "a fresh record (SessionRecord with the default configuration) that holds only "
                "session 1: once message `after_message` (the index into session_1.messages) has "
                "been decrypted by its receiver (after_initial_messages: Bob decrypted Alice's two "
                "initial messages; after_reply: Alice decrypted Bob's reply; end: Alice decrypted "
                "Bob's empty answer). bob_out_of_order: Bob's record (from his account before "
                "session 1) after decrypting only Alice's second initial message (message 1) at "
                "`time`, holding the skipped key of message 0. bob_late_message: see its own "
                "description."
            ),
            "points": [
                {
                    "point": r["point"],
                    "after_message": r["after_message"],
                    "alice": r["alice"].hex(),
                    "bob": r["bob"].hex(),
                }
                for r in records1
            ],
            "bob_out_of_order": {"delivered": [1], "bob": bob_out_of_order.hex()},
            "bob_late_message": {
                "description": (
                    "Bob's record (from his account before session 1) after: message 0 decrypted "
                    "at `time`; his reply encrypted with the draws `reply_draws` (it equals "
                    "message 2); message 3 decrypted at `late_time`. Message 1 has not arrived: "
                    "its key is stored (skipped run of a_r1 from counter 1, stored at "
                    "`late_time`) and the chain of a_r1 is in history with length 2."
                ),
                "reply_draws": list(LATE_REPLY_DRAWS),
                "late_time": T_LATE,
                "bob": bob_late.hex(),
            },
        },
    }


def non_canonical_vectors(initial: bytes, ratchet: bytes, bundle: bytes) -> list[dict]:
    """Section 3.1: other encodings of the keys inside valid objects, each refused while
    decoding. Each variant replaces one 32-byte key (found by its position in the decoded
    object) and is checked against this file's own decoder."""

    def top_bit(key: bytes) -> bytes:
        return key[:31] + bytes([key[31] | 0x80])

    def plus_p(u: int) -> bytes:
        assert u < 19
        return (u + P25519).to_bytes(32, "little")

    # The smallest y whose point is on the curve and is not one of the y = 0, +-1 special
    # cases; its y + p alias (with the sign bit as given) names the same point.
    small_y = next(
        y for y in range(2, 19)
        if pow((y * y - 1) * pow(ED25519_D * y * y + 1, P25519 - 2, P25519) % P25519,
               (P25519 - 1) // 2, P25519) == 1
    )
    y_alias = plus_p(small_y)

    def replace_once(wire: bytes, old: bytes, new: bytes) -> bytes:
        assert wire.count(old) == 1
        return wire.replace(old, new)

    im = decode_message(initial)["initial"]
    rm = decode_message(ratchet)["ratchet"]
    b = decode_bundle(bundle)
    cases = [
        ("initial message: base key with bit 255 set", "message", initial,
         im["base_key"], top_bit(im["base_key"])),
        ("initial message: base key u = p + 9 (another encoding of the base point)", "message",
         initial, im["base_key"], plus_p(9)),
        ("initial message: ratchet key with bit 255 set", "message", initial,
         im["message"]["ratchet_key"], top_bit(im["message"]["ratchet_key"])),
        ("initial message: identity key y + p", "message", initial, im["identity_key"], y_alias),
        ("ratchet message: ratchet key with bit 255 set", "message", ratchet,
         rm["ratchet_key"], top_bit(rm["ratchet_key"])),
        ("ratchet message: ratchet key u = p (another encoding of u = 0)", "message", ratchet,
         rm["ratchet_key"], plus_p(0)),
        ("bundle: signed prekey with bit 255 set", "bundle", bundle,
         b["signed_prekey"]["public_key"], top_bit(b["signed_prekey"]["public_key"])),
        ("bundle: one-time prekey u = p + 18", "bundle", bundle,
         b["one_time_prekey"]["public_key"], plus_p(18)),
        ("bundle: identity key y + p with the sign bit set", "bundle", bundle,
         b["identity_key"], y_alias[:31] + bytes([y_alias[31] | 0x80])),
    ]
    out = []
    for name, kind, wire, old, new in cases:
        variant = replace_once(wire, old, new)
        try:
            (decode_message if kind == "message" else decode_bundle)(variant)
        except NonCanonicalKey as refused:
            out.append({"name": name, "type": kind, "wire": variant.hex(),
                        "error": refused.kind, "object": refused.obj, "field": refused.field})
        else:
            raise AssertionError(f"{name}: accepted")
    return out


def main():
    json.dump(build(), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
