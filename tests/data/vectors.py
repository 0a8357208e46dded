#!/usr/bin/env python3
"""Independent reference implementation of the ratchetbox protocol, version 1, producing
the test vectors in tests/data/vectors.json.

Written from docs/PROTOCOL.md, proto/wire.proto and proto/state.proto only, without reference
to the Rust code (src/, tests/*.rs) or the generated protobuf code.

Run (Python 3.11+):

    pip install cryptography && python3 tests/data/vectors.py > tests/data/vectors.json

The output is deterministic: every value the protocol would draw at random is
SHA-256(label) truncated to the size drawn, with the labels listed in LABELS below (and in
the "labels" object of the JSON). The script checks itself as it goes (signature verification,
receiver-side X3DH and decryption of every message, reopening of the sealed state) and fails
with an AssertionError if anything disagrees.
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
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

# ---------------------------------------------------------------------------------------------
# Section 1: conventions and labels
# ---------------------------------------------------------------------------------------------

VERSION = b"\x01"
LABEL_X3DH = b"ratchetbox v1 X3DH"
LABEL_ROOT = b"ratchetbox v1 root chain"
LABEL_SIGNED_PREKEY = b"ratchetbox v1 signed prekey"
LABEL_STATE_SEAL = b"ratchetbox v1 sealed state "  # trailing space is part of the label

assert len(LABEL_SIGNED_PREKEY) == 27

P25519 = 2**255 - 19


def u32be(x: int) -> bytes:
    assert 0 <= x < 2**32
    return x.to_bytes(4, "big")


def u64be(x: int) -> bytes:
    assert 0 <= x < 2**64
    return x.to_bytes(8, "big")


def hkdf(salt: bytes, ikm: bytes, info: bytes, length: int) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


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


def enc_bundle(b: dict) -> bytes:
    return (
        pb_bytes(1, b["identity_key"])
        + pb_message(2, enc_signed_prekey(b["signed_prekey"]))
        + pb_message(3, enc_one_time_prekey(b["one_time_prekey"]) if b["one_time_prekey"] else None)
    )


def enc_ratchet_message(m: dict) -> bytes:
    return (
        pb_bytes(1, m["ratchet_key"])
        + pb_uint(2, m["counter"])
        + pb_uint(3, m["previous_counter"])
        + pb_bytes(4, m["nonce"])
        + pb_bytes(5, m["ciphertext"])
    )


def enc_initial_message(m: dict) -> bytes:
    return (
        pb_bytes(1, m["identity_key"])
        + pb_bytes(2, m["base_key"])
        + pb_uint(3, m["signed_prekey_id"])
        + pb_uint(4, m["one_time_prekey_id"], optional=True)
        + pb_message(5, enc_ratchet_message(m["message"]))
    )


def enc_message(msg: dict) -> bytes:
    if "ratchet" in msg:
        return pb_message(1, enc_ratchet_message(msg["ratchet"]))
    return pb_message(2, enc_initial_message(msg["initial"]))


def dec_ratchet_message(data: bytes) -> dict:
    f = pb_decode(data)
    _known(f, {1, 2, 3, 4, 5})
    m = {
        "ratchet_key": _single(f, 1, 2) or b"",
        "counter": _single(f, 2, 0) or 0,
        "previous_counter": _single(f, 3, 0) or 0,
        "nonce": _single(f, 4, 2) or b"",
        "ciphertext": _single(f, 5, 2) or b"",
    }
    assert m["counter"] < 2**32 and m["previous_counter"] < 2**32
    assert len(m["ratchet_key"]) == 32 and len(m["nonce"]) == 12 and len(m["ciphertext"]) >= 16
    return m


def dec_initial_message(data: bytes) -> dict:
    f = pb_decode(data)
    _known(f, {1, 2, 3, 4, 5})
    inner = _single(f, 5, 2)
    assert inner is not None, "missing RatchetMessage"
    m = {
        "identity_key": _single(f, 1, 2) or b"",
        "base_key": _single(f, 2, 2) or b"",
        "signed_prekey_id": _single(f, 3, 0) or 0,
        "one_time_prekey_id": _single(f, 4, 0),  # None when absent
        "message": dec_ratchet_message(inner),
    }
    assert len(m["identity_key"]) == 32 and len(m["base_key"]) == 32
    return m


def decode_message(wire: bytes) -> dict:
    """Section 2 decoding of a wire Message, with the canonical check (here: re-encoding must
    reproduce the input exactly, which is stricter than the spec's length comparison)."""
    assert len(wire) > 0 and wire[:1] == VERSION, "unsupported version"
    f = pb_decode(wire[1:])
    _known(f, {1, 2})
    assert len(f) == 1, "Message must have exactly one body"
    field, _, body = f[0]
    msg = {"ratchet": dec_ratchet_message(body)} if field == 1 else {"initial": dec_initial_message(body)}
    assert VERSION + enc_message(msg) == wire, "non-canonical encoding"
    return msg


def decode_bundle(wire: bytes) -> dict:
    assert wire[:1] == VERSION
    f = pb_decode(wire[1:])
    _known(f, {1, 2, 3})
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
    b = {"identity_key": _single(f, 1, 2) or b"", "signed_prekey": spk, "one_time_prekey": opk}
    assert VERSION + enc_bundle(b) == wire, "non-canonical encoding"
    return b


# --- state.proto messages ------------------------------------------------------------------

STATE_KIND_ACCOUNT = 1
KIND_NAMES = {1: b"account", 2: b"session", 3: b"session record"}


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
        out += pb_message(3, pb_uint(1, opk["id"]) + pb_bytes(2, opk["secret"]))
    out += pb_uint(4, a["next_signed_prekey_id"])
    out += pb_uint(5, a["next_one_time_prekey_id"])
    for used in a["used_setups"]:
        out += pb_message(6, pb_uint(1, used["signed_prekey_id"]) + pb_bytes(2, used["base_key"]))
    return out


def enc_sealed_state(kind: int, salt: bytes, ciphertext: bytes) -> bytes:
    return pb_uint(1, kind) + pb_bytes(2, salt) + pb_bytes(3, ciphertext)


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
    "a_ek1": "alice ephemeral key, session 1",
    "a_ek2": "alice ephemeral key, session 2",
    "a_r1": "alice ratchet key 1",
    "a_r2": "alice ratchet key 2",
    "a_r3": "alice ratchet key 3",
    "b_r1": "bob ratchet key 1",
    "b_r2": "bob ratchet key 2",
    "n1": "nonce 1",
    "n2": "nonce 2",
    "n3": "nonce 3",
    "n4": "nonce 4",
    "n5": "nonce 5",
    "n6": "nonce 6",
    "sk_store": "storage key",
    "seal_salt": "seal salt",
}
SIZES = {name: (12 if name.startswith("n") else 32) for name in LABELS}
INPUTS = {
    name: hashlib.sha256((LABEL_PREFIX + label).encode()).digest()[: SIZES[name]]
    for name, label in LABELS.items()
}

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


class Account:
    """Section 3.2 / 8.1: identity key and prekey store."""

    def __init__(self, rng: ScriptedRng, now: int):
        self.identity_seed = rng.draw(32, "identity secret key")
        self.signed_prekeys = []
        self.one_time_prekeys = []
        self.next_signed_prekey_id = 1
        self.next_one_time_prekey_id = 1
        self.used_setups = []
        self._new_signed_prekey(rng, now)

    @property
    def identity_key(self) -> bytes:
        return ed25519_public(self.identity_seed)

    def _new_signed_prekey(self, rng: ScriptedRng, now: int):
        secret = rng.draw(32, "signed prekey private key")
        spk_id = self.next_signed_prekey_id
        self.next_signed_prekey_id += 1
        sig = ed25519_sign(self.identity_seed, signed_prekey_message(spk_id, now, x25519_public(secret)))
        self.signed_prekeys.append({"id": spk_id, "created_at": now, "secret": secret, "signature": sig})

    def generate_one_time_prekeys(self, rng: ScriptedRng, n: int):
        for _ in range(n):
            secret = rng.draw(32, "one-time prekey private key")
            self.one_time_prekeys.append({"id": self.next_one_time_prekey_id, "secret": secret})
            self.next_one_time_prekey_id += 1

    def bundle(self, with_one_time_prekey: bool) -> bytes:
        spk = self.signed_prekeys[-1]
        opk = self.one_time_prekeys[0] if with_one_time_prekey and self.one_time_prekeys else None
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
        }
        return VERSION + enc_bundle(b)

    def plain(self) -> bytes:
        return VERSION + enc_account_state(
            {
                "identity_seed": self.identity_seed,
                "signed_prekeys": self.signed_prekeys,
                "one_time_prekeys": self.one_time_prekeys,
                "next_signed_prekey_id": self.next_signed_prekey_id,
                "next_one_time_prekey_id": self.next_one_time_prekey_id,
                "used_setups": self.used_setups,
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


def header_ad(ratchet_key: bytes, n: int, pn: int, nonce: bytes) -> bytes:
    h = b"\x01" + ratchet_key + u32be(n) + u32be(pn) + nonce
    assert len(h) == 53
    return h


class Ratchet:
    def __init__(self, rk: bytes, ad: bytes, our_secret: bytes | None, their_key: bytes | None):
        self.rk = rk
        self.ad = ad
        self.our_secret = our_secret
        self.their_key = their_key
        self.sending = None  # [CKs, Ns]
        self.receiving = None  # [CKr, Nr]
        self.pn = 0
        self.skipped = {}  # (K, n) -> MK

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
        had = header_ad(rkey, n, self.pn, nonce)
        ct = aead_seal(mk, nonce, self.ad + had, plaintext)
        info.update({"chain_key": ck.hex(), "message_key": mk.hex(), "header_ad": had.hex()})
        return (
            {"ratchet_key": rkey, "counter": n, "previous_counter": self.pn, "nonce": nonce, "ciphertext": ct},
            info,
        )

    def decrypt(self, m: dict) -> tuple[bytes, dict]:
        """Section 6.4, on copies: the state changes only if decryption succeeds."""
        new = copy.deepcopy(self)
        pt, info = new._decrypt(m)
        self.__dict__.update(new.__dict__)
        return pt, info

    def _open(self, mk, m):
        had = header_ad(m["ratchet_key"], m["counter"], m["previous_counter"], m["nonce"])
        return aead_open(mk, m["nonce"], self.ad + had, m["ciphertext"])

    def _skip(self, key: bytes, chain: list, until: int):
        ck, nr = chain
        while nr < until:
            mk, ck = kdf_ck(ck)
            self.skipped[(key, nr)] = mk
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
            return self._open(mk, m), {"message_key": mk.hex(), "from_skipped": True}
        assert k != self.their_key or self.receiving is None, "duplicate or expired"
        # New chain (DH ratchet step).
        assert self.our_secret is not None, "no key pair: peer cannot have a new key"
        if self.receiving is not None:
            assert pn <= self.receiving[1] or pn - self.receiving[1] <= MAX_SKIP
            self._skip(self.their_key, self.receiving, pn)
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
        if self.sending is not None:
            self.pn = self.sending[1]
        self.our_secret = None
        self.sending = None
        return pt, {"dh": dh_out.hex(), "root_key": rk.hex(), "chain_key": ckr.hex(), "message_key": mk.hex()}


# ---------------------------------------------------------------------------------------------
# Section 5: X3DH and sessions
# ---------------------------------------------------------------------------------------------


def x3dh_sk(dhs: list[bytes]) -> bytes:
    return hkdf(salt=bytes(32), ikm=b"\xff" * 32 + b"".join(dhs), info=LABEL_X3DH, length=32)


class InitiatorSession:
    def __init__(self, account: Account, rng: ScriptedRng, bundle_wire: bytes):
        b = decode_bundle(bundle_wire)
        ik_b = b["identity_key"]
        assert ik_b != account.identity_key, "own bundle"
        spk = b["signed_prekey"]
        ed25519_verify(
            ik_b, spk["signature"], signed_prekey_message(spk["id"], spk["created_at"], spk["public_key"])
        )
        ek = rng.draw(32, "ephemeral private key")
        dhs = [
            dh(identity_x25519_private(account.identity_seed), spk["public_key"]),
            dh(ek, identity_x25519_public(ik_b)),
            dh(ek, spk["public_key"]),
        ]
        if b["one_time_prekey"] is not None:
            dhs.append(dh(ek, b["one_time_prekey"]["public_key"]))
        self.sk = x3dh_sk(dhs)
        self.dhs = dhs
        self.ad = account.identity_key + ik_b
        self.setup = {
            "identity_key": account.identity_key,
            "base_key": x25519_public(ek),
            "signed_prekey_id": spk["id"],
            "one_time_prekey_id": b["one_time_prekey"]["id"] if b["one_time_prekey"] else None,
        }
        self.awaiting_reply = True
        self.ratchet = Ratchet(self.sk, self.ad, None, spk["public_key"])

    def encrypt(self, rng, plaintext):
        rm, info = self.ratchet.encrypt(rng, plaintext)
        if self.awaiting_reply:
            msg = {"initial": dict(self.setup, message=rm)}
        else:
            msg = {"ratchet": rm}
        return VERSION + enc_message(msg), info

    def decrypt(self, wire):
        msg = decode_message(wire)
        assert "ratchet" in msg
        pt, info = self.ratchet.decrypt(msg["ratchet"])
        self.awaiting_reply = False
        return pt, info


class Responder:
    """Bob's side: account plus sessions keyed by setup (section 5, responder steps 1-4)."""

    def __init__(self, account: Account):
        self.account = account
        self.sessions = {}  # setup tuple -> (Ratchet, info)
        self.current = None

    def decrypt(self, wire):
        msg = decode_message(wire)
        if "ratchet" in msg:
            pt, info = self.current.decrypt(msg["ratchet"])
            return pt, info
        im = msg["initial"]
        setup = (im["base_key"], im["identity_key"], im["signed_prekey_id"], im["one_time_prekey_id"])
        if setup in self.sessions:
            ratchet = self.sessions[setup]
            pt, info = ratchet.decrypt(im["message"])
            self.current = ratchet
            return pt, info
        acct = self.account
        spk = next(s for s in acct.signed_prekeys if s["id"] == im["signed_prekey_id"])
        opk = None
        if im["one_time_prekey_id"] is not None:
            opk = next(o for o in acct.one_time_prekeys if o["id"] == im["one_time_prekey_id"])
        else:
            assert {"signed_prekey_id": spk["id"], "base_key": im["base_key"]} not in acct.used_setups
        ik_a_x = identity_x25519_public(im["identity_key"])
        dhs = [
            dh(spk["secret"], ik_a_x),
            dh(identity_x25519_private(acct.identity_seed), im["base_key"]),
            dh(spk["secret"], im["base_key"]),
        ]
        if opk is not None:
            dhs.append(dh(opk["secret"], im["base_key"]))
        sk = x3dh_sk(dhs)
        ad = im["identity_key"] + acct.identity_key
        ratchet = Ratchet(sk, ad, spk["secret"], None)
        pt, info = ratchet.decrypt(im["message"])  # raises before any commit on failure
        info = dict(info, shared_secret=sk.hex())
        if opk is not None:
            acct.one_time_prekeys.remove(opk)
        else:
            acct.used_setups.append({"signed_prekey_id": spk["id"], "base_key": im["base_key"]})
        self.sessions[setup] = ratchet
        self.current = ratchet
        return pt, info

    def encrypt(self, rng, plaintext):
        rm, info = self.current.encrypt(rng, plaintext)
        return VERSION + enc_message({"ratchet": rm}), info


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
        assert ("one_time_prekey_id" in expect) == (msg["initial"]["one_time_prekey_id"] is not None)
    pt, rinfo = receiver.decrypt(wire)
    assert pt == plaintext, "receiver decrypted something else"
    assert rinfo["message_key"] == sinfo["message_key"], "message keys disagree"
    if "shared_secret" in rinfo:
        assert rinfo["shared_secret"] == sender.sk.hex(), "X3DH shared secrets disagree"
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


def build() -> dict:
    alice_rng = ScriptedRng(
        "alice", ["a_id", "a_spk", "a_ek1", "a_r1", "n1", "n2", "a_r2", "n4", "a_ek2", "a_r3", "n6"]
    )
    bob_rng = ScriptedRng("bob", ["b_id", "b_spk", "b_opk", "b_r1", "n3", "b_r2", "n5"])

    alice = Account(alice_rng, T)
    bob = Account(bob_rng, T)
    bob.generate_one_time_prekeys(bob_rng, 1)

    # Consistency of the two public forms of each identity key (section 3.1).
    for acct in (alice, bob):
        assert x25519_public(identity_x25519_private(acct.identity_seed)) == identity_x25519_public(
            acct.identity_key
        ), "Montgomery map disagrees with the X25519 public key of SHA-512(seed)[:32]"
    # The clamped scalar is the one Ed25519 signs with: check via the Ed25519 public key.
    # (Follows from the above: same u-coordinate.)

    bundle = bob.bundle(with_one_time_prekey=True)
    bundle_no_opk = bob.bundle(with_one_time_prekey=False)
    spk = bob.signed_prekeys[0]
    ed25519_verify(
        bob.identity_key, spk["signature"], signed_prekey_message(1, T, x25519_public(spk["secret"]))
    )

    account_plain = bob.plain()  # after creating the OPK, before any session
    account_sealed = seal(STATE_KIND_ACCOUNT, INPUTS["sk_store"], INPUTS["seal_salt"], account_plain)
    assert unseal(STATE_KIND_ACCOUNT, INPUTS["sk_store"], account_sealed) == account_plain

    bob_side = Responder(bob)

    # Session 1, with the one-time prekey.
    s1 = InitiatorSession(alice, alice_rng, bundle)
    log1 = []
    bob_before_session_1 = copy.deepcopy(bob_side)
    p = [b"Hello Bob", b"Second message", b"Hi Alice", b"Turn two", b""]
    w1 = exchange(s1, bob_side, alice_rng, "alice", "bob", p[0], log1,
                  {"type": "initial", "counter": 0, "previous_counter": 0, "one_time_prekey_id": 1})
    w2 = exchange(s1, bob_side, alice_rng, "alice", "bob", p[1], log1,
                  {"type": "initial", "counter": 1, "previous_counter": 0, "one_time_prekey_id": 1})
    exchange(bob_side, s1, bob_rng, "bob", "alice", p[2], log1,
             {"type": "ratchet", "counter": 0, "previous_counter": 0})
    exchange(s1, bob_side, alice_rng, "alice", "bob", p[3], log1,
             {"type": "ratchet", "counter": 0, "previous_counter": 2})
    exchange(bob_side, s1, bob_rng, "bob", "alice", p[4], log1,
             {"type": "ratchet", "counter": 0, "previous_counter": 1})
    assert not any(o["id"] == 1 for o in bob.one_time_prekeys), "OPK 1 should be consumed"

    # Extra check: P2 then P1 into a Bob that has seen neither (section 5, responder step 1:
    # repeated initial messages in any order land in one session).
    fresh_bob = bob_before_session_1
    assert fresh_bob.decrypt(w2)[0] == p[1]
    assert len(fresh_bob.sessions) == 1
    assert fresh_bob.decrypt(w1)[0] == p[0]

    # Session 2, without a one-time prekey.
    s2 = InitiatorSession(alice, alice_rng, bundle_no_opk)
    log2 = []
    exchange(s2, bob_side, alice_rng, "alice", "bob", b"No one-time prekey", log2,
             {"type": "initial", "counter": 0, "previous_counter": 0})
    assert len(bob.used_setups) == 1

    alice_rng.done()
    bob_rng.done()

    def session_json(s: InitiatorSession, log):
        return {
            "shared_secret": s.sk.hex(),
            "dh": [d.hex() for d in s.dhs],
            "associated_data": s.ad.hex(),
            "base_key": s.setup["base_key"].hex(),
            "messages": log,
        }

    for s in (s1, s2):
        for d in s.dhs:
            assert d != bytes(32)

    return {
        "description": (
            "ratchetbox protocol v1 test vectors: Bob's prekey bundle (with and without a one-time "
            "prekey), session 1 (Alice initiates with a one-time prekey: two initial messages, "
            "Bob's reply, Alice's next message after the turn, Bob's empty reply), session 2 "
            "(initiation without a one-time prekey), and Bob's account state in plain and sealed "
            "form. Every random value is SHA-256(label) truncated to the size drawn; labels are "
            "the full UTF-8 strings below. Hex strings are lowercase."
        ),
        "source": "tests/data/vectors.py, written from docs/PROTOCOL.md",
        "time": T,
        "labels": {name: LABEL_PREFIX + label for name, label in LABELS.items()},
        "draw_order": {
            "alice": ["a_id", "a_spk", "a_ek1", "a_r1", "n1", "n2", "a_r2", "n4", "a_ek2", "a_r3", "n6"],
            "bob": ["b_id", "b_spk", "b_opk", "b_r1", "n3", "b_r2", "n5"],
            "seal": ["seal_salt"],
        },
        "inputs": {name: value.hex() for name, value in INPUTS.items()},
        "public": {
            "alice_identity_key": alice.identity_key.hex(),
            "alice_identity_x25519": identity_x25519_public(alice.identity_key).hex(),
            "alice_signed_prekey_public": x25519_public(INPUTS["a_spk"]).hex(),
            "alice_signed_prekey_signature": alice.signed_prekeys[0]["signature"].hex(),
            "bob_identity_key": bob.identity_key.hex(),
            "bob_identity_x25519": identity_x25519_public(bob.identity_key).hex(),
            "bob_signed_prekey_public": x25519_public(INPUTS["b_spk"]).hex(),
            "bob_signed_prekey_message": signed_prekey_message(1, T, x25519_public(INPUTS["b_spk"])).hex(),
            "bob_signed_prekey_signature": spk["signature"].hex(),
            "bob_one_time_prekey_public": x25519_public(INPUTS["b_opk"]).hex(),
        },
        "bundle": bundle.hex(),
        "bundle_without_one_time_prekey": bundle_no_opk.hex(),
        "session_with_one_time_prekey": session_json(s1, log1),
        "session_without_one_time_prekey": session_json(s2, log2),
        "account_plain": account_plain.hex(),
        "account_sealed": account_sealed.hex(),
        "account_sealing_key": hkdf(
            salt=INPUTS["seal_salt"], ikm=INPUTS["sk_store"], info=LABEL_STATE_SEAL + b"account", length=32
        ).hex(),
    }


def main():
    json.dump(build(), sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
