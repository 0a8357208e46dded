#!/usr/bin/env python3
"""Independent implementation of docs/PROTOCOL.md section 16 (group messages, sender keys).

Written from the text of docs/PROTOCOL.md (sections 1, 2, 3.1, 6.2 and 16) and
proto/group.proto only, without reading the Rust code or tests/data/group_vectors.py.
Uses only the standard library and the `cryptography` package.

Prints JSON in the layout of tests/data/group_vectors.json:

    python3 tests/data/group_vectors.py | cmp - tests/data/group_vectors.json

Inputs (fixed, taken from the layout of the committed vectors):
  group id        00 01 .. 1f
  key id          0x01020304
  chain key CK_0  20 21 .. 3f
  signing seed    40 41 .. 5f
  sender states at iteration 0 (messages 0, 1, 2) and at iteration 300 (message 300)
  negative 1: a message at iteration 0 with plaintext "forged", encrypted under the real
              key but signed by another Ed25519 seed (60 61 .. 7f)  -> ForgedSignature
  negative 2: the iteration-0 message presented to a receiver whose distribution is at
              iteration 300                                         -> BeforeDistribution
"""

import hashlib
import hmac
import json
import sys

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

# ---------------------------------------------------------------------------------------
# Section 1 / 16.1: conventions and labels

LABEL_GROUP_MESSAGE_KEY = b"ratchetbox v1 group message key"
LABEL_GROUP_SIGNATURE = b"ratchetbox v1 group message"
VERSION = b"\x01"
MAX_ITERATION = 2**32 - 2  # 2^32 - 1 is exhausted / never on the wire


def u32be(x):
    return x.to_bytes(4, "big")


def hmac_sha256(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf(salt, ikm, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def aead_encrypt(key, nonce, ad, plaintext):
    return AESGCM(key).encrypt(nonce, plaintext, ad)


def aead_decrypt(key, nonce, ad, ciphertext):
    return AESGCM(key).decrypt(nonce, ciphertext, ad)


# ---------------------------------------------------------------------------------------
# Section 2: canonical proto3 encoding (only what section 16 needs)


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


def field_varint(tag, value):
    """uint32 / bool field, omitted when 0 (proto3 default)."""
    if value == 0:
        return b""
    return varint((tag << 3) | 0) + varint(value)


def field_bytes(tag, value):
    """bytes / string / nested field, omitted when empty (scalar default)."""
    if len(value) == 0:
        return b""
    return varint((tag << 3) | 2) + varint(len(value)) + value


def field_message(tag, value):
    """nested message: written when present even if empty."""
    return varint((tag << 3) | 2) + varint(len(value)) + value


def read_varint(buf, pos):
    result = 0
    shift = 0
    start = pos
    while True:
        if pos >= len(buf):
            raise DecodeError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            break
        if shift > 63:
            raise DecodeError("varint too long")
    return result, pos


def parse_fields(buf):
    """Parse into a list of (tag, wiretype, value); only wire types 0 and 2 are accepted."""
    pos = 0
    fields = []
    while pos < len(buf):
        key, pos = read_varint(buf, pos)
        tag, wt = key >> 3, key & 7
        if wt == 0:
            value, pos = read_varint(buf, pos)
        elif wt == 2:
            n, pos = read_varint(buf, pos)
            if pos + n > len(buf):
                raise DecodeError("truncated bytes")
            value = bytes(buf[pos:pos + n])
            pos += n
        else:
            raise DecodeError("unsupported wire type")
        fields.append((tag, wt, value))
    return fields


class DecodeError(Exception):
    pass


class GroupError(Exception):
    pass



# ---------------------------------------------------------------------------------------
# Section 3.1 / 16.3: canonical Ed25519 points of large order (verify_strict)

_P = 2**255 - 19
_D = (-121665 * pow(121666, _P - 2, _P)) % _P
_SQRT_M1 = pow(2, (_P - 1) // 4, _P)


def _decode_point(b):
    """RFC 8032 5.1.3 decoding (reduces y mod p, accepts a sign bit on x = 0)."""
    y = int.from_bytes(b, "little") & ((1 << 255) - 1)
    sign = b[31] >> 7
    y %= _P
    u = (y * y - 1) % _P
    v = (_D * y * y + 1) % _P
    x = (u * pow(v, 3, _P) * pow(u * pow(v, 7, _P), (_P - 5) // 8, _P)) % _P
    if (v * x * x - u) % _P != 0:
        x = (x * _SQRT_M1) % _P
        if (v * x * x - u) % _P != 0:
            return None
    if x & 1 != sign:
        x = (_P - x) % _P
    return (x, y)


def _encode_point(pt):
    x, y = pt
    return (y | ((x & 1) << 255)).to_bytes(32, "little")


def _add(a, b):
    x1, y1 = a
    x2, y2 = b
    t = _D * x1 * x2 * y1 * y2 % _P
    x3 = (x1 * y2 + x2 * y1) * pow(1 + t, _P - 2, _P) % _P
    y3 = (y1 * y2 + x1 * x2) * pow(1 - t, _P - 2, _P) % _P
    return (x3, y3)


def is_canonical_large_order(b):
    if len(b) != 32:
        return False
    pt = _decode_point(b)
    if pt is None or _encode_point(pt) != b:
        return False
    q = pt
    for _ in range(3):
        q = _add(q, q)
    return q != (0, 1)  # [8]P = identity iff P has small order


def is_small_order(b):
    pt = _decode_point(b)
    if pt is None:
        return False
    q = pt
    for _ in range(3):
        q = _add(q, q)
    return q == (0, 1)

# ---------------------------------------------------------------------------------------
# Section 16.2: chain and message keys


def chain_step(ck):
    """KDF_CK of section 6.2: seed_i = HMAC(CK_i, 0x01), CK_{i+1} = HMAC(CK_i, 0x02)."""
    return hmac_sha256(ck, b"\x01"), hmac_sha256(ck, b"\x02")


def message_key(seed, group_id, key_id, iteration):
    info = LABEL_GROUP_MESSAGE_KEY + group_id + u32be(key_id) + u32be(iteration)
    okm = hkdf(b"\x00" * 32, seed, info, 44)
    return okm[0:32], okm[32:44]


# ---------------------------------------------------------------------------------------
# Section 16.3 / 16.4 / 16.6: encodings


def encode_group_message_unsigned(group_id, key_id, iteration, ciphertext):
    return VERSION + (
        field_bytes(1, group_id)
        + field_varint(2, key_id)
        + field_varint(3, iteration)
        + field_bytes(4, ciphertext)
    )


def encode_distribution(group_id, key_id, iteration, chain_key, signing_key):
    return VERSION + (
        field_bytes(1, group_id)
        + field_varint(2, key_id)
        + field_varint(3, iteration)
        + field_bytes(4, chain_key)
        + field_bytes(5, signing_key)
    )


def encode_sender_state(group_id, key_id, iteration, chain_key, signing_seed):
    return VERSION + (
        field_bytes(1, group_id)
        + field_varint(2, key_id)
        + field_varint(3, iteration)
        + field_bytes(4, chain_key)
        + field_bytes(5, signing_seed)
    )


def decode_simple(data, spec):
    """Decode a flat message whose fields are given as {tag: 'u32'|'bytes'}; check canonical."""
    if len(data) == 0 or data[0:1] != VERSION:
        raise DecodeError("unsupported version")
    body = data[1:]
    values = {}
    for tag, wt, value in parse_fields(body):
        if tag not in spec:
            raise DecodeError("unknown field")
        kind = spec[tag]
        if (kind == "u32" and wt != 0) or (kind == "bytes" and wt != 2):
            raise DecodeError("wrong wire type")
        if tag in values:
            raise DecodeError("repeated field")
        if kind == "u32" and value >= 2**32:
            raise DecodeError("uint32 out of range")
        values[tag] = value
    out = {t: values.get(t, 0 if k == "u32" else b"") for t, k in spec.items()}
    reenc = b""
    for t in sorted(spec):
        reenc += field_varint(t, out[t]) if spec[t] == "u32" else field_bytes(t, out[t])
    if reenc != body:
        raise DecodeError("non-canonical encoding")
    return out


def decode_group_message(data):
    f = decode_simple(data, {1: "bytes", 2: "u32", 3: "u32", 4: "bytes", 5: "bytes"})
    if len(f[1]) != 32 or len(f[5]) != 64 or len(f[4]) < 16 or f[3] == 2**32 - 1:
        raise DecodeError("bad field")
    return {"group_id": f[1], "key_id": f[2], "iteration": f[3], "ciphertext": f[4],
            "signature": f[5]}


def decode_distribution(data):
    f = decode_simple(data, {1: "bytes", 2: "u32", 3: "u32", 4: "bytes", 5: "bytes"})
    if len(f[1]) != 32 or len(f[4]) != 32 or len(f[5]) != 32 or f[3] == 2**32 - 1:
        raise DecodeError("bad field")
    # section 3.1: canonical encoding of a point of large order.
    if not is_canonical_large_order(f[5]):
        raise DecodeError("InvalidIdentityKey")
    return {"group_id": f[1], "key_id": f[2], "iteration": f[3], "chain_key": f[4],
            "signing_key": f[5]}


# ---------------------------------------------------------------------------------------
# Sender (section 16 intro, 16.2, 16.3)


class SenderKey:
    def __init__(self, group_id, key_id, iteration, chain_key, signing_seed):
        self.group_id = group_id
        self.key_id = key_id
        self.iteration = iteration
        self.chain_key = chain_key
        self.signing_seed = signing_seed
        self.sk = Ed25519PrivateKey.from_private_bytes(signing_seed)

    def signing_key(self):
        return self.sk.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def state(self):
        return encode_sender_state(self.group_id, self.key_id, self.iteration,
                                   self.chain_key, self.signing_seed)

    def distribution(self):
        return encode_distribution(self.group_id, self.key_id, self.iteration,
                                   self.chain_key, self.signing_key())

    def encrypt(self, plaintext):
        i = self.iteration
        if i >= 2**32 - 1:
            raise GroupError("ChainExhausted")
        seed, next_ck = chain_step(self.chain_key)
        key, nonce = message_key(seed, self.group_id, self.key_id, i)
        ct = aead_encrypt(key, nonce, b"", plaintext)
        unsigned = encode_group_message_unsigned(self.group_id, self.key_id, i, ct)
        sig = self.sk.sign(LABEL_GROUP_SIGNATURE + unsigned)
        wire = unsigned + b"\x2a\x40" + sig
        self.chain_key = next_ck
        self.iteration = i + 1
        return wire, seed, key, nonce


def sign_with(signing_seed, unsigned):
    sk = Ed25519PrivateKey.from_private_bytes(signing_seed)
    return unsigned + b"\x2a\x40" + sk.sign(LABEL_GROUP_SIGNATURE + unsigned)


# ---------------------------------------------------------------------------------------
# Receiver (section 16.5)


class Generation:
    def __init__(self, key_id, signing_key, chain_key, iteration):
        self.key_id = key_id
        self.signing_key = signing_key
        self.chain_key = chain_key
        self.next = iteration
        self.first = iteration
        self.evicted_below = iteration
        self.skipped = []  # list of (iteration, seed), increasing


class Receiver:
    def __init__(self, group_id, max_generations=5, max_message_keys=2000,
                 max_forward_jumps=25000):
        self.group_id = group_id
        self.max_generations = max(1, max_generations)
        self.max_message_keys = max_message_keys
        self.max_forward_jumps = max_forward_jumps
        self.generations = []  # newest first

    def process_distribution(self, data):
        d = decode_distribution(data)
        if d["group_id"] != self.group_id:
            raise GroupError("WrongGroup")
        for g in self.generations:
            if g.key_id == d["key_id"]:
                if g.signing_key == d["signing_key"]:
                    return
                raise GroupError("ConflictingSenderKey")
        self.generations.insert(0, Generation(d["key_id"], d["signing_key"],
                                              d["chain_key"], d["iteration"]))
        del self.generations[self.max_generations:]

    def decrypt(self, data):
        m = decode_group_message(data)
        if m["group_id"] != self.group_id:
            raise GroupError("WrongGroup")
        gen = next((g for g in self.generations if g.key_id == m["key_id"]), None)
        if gen is None:
            raise GroupError("UnknownSenderKey")
        # The signature covers LABEL || every byte but the last 66 (section 16.3).
        unsigned = data[:-66]
        # verify_strict: no small-order R (OpenSSL already rejects S >= L and a
        # non-canonical R, since it compares R's encoding); the signing key was checked
        # to be of large order when the distribution was decoded.
        if is_small_order(m["signature"][:32]):
            raise GroupError("ForgedSignature")
        try:
            Ed25519PublicKey.from_public_bytes(gen.signing_key).verify(
                m["signature"], LABEL_GROUP_SIGNATURE + unsigned)
        except InvalidSignature:
            raise GroupError("ForgedSignature")
        i = m["iteration"]
        if i < gen.next:
            idx = next((k for k, (j, _) in enumerate(gen.skipped) if j == i), None)
            if idx is None:
                if i < gen.first:
                    raise GroupError("BeforeDistribution")
                if i < gen.evicted_below:
                    raise GroupError("KeyEvicted")
                raise GroupError("Duplicate")
            key, nonce = message_key(gen.skipped[idx][1], self.group_id, gen.key_id, i)
            try:
                pt = aead_decrypt(key, nonce, b"", m["ciphertext"])
            except InvalidTag:
                raise GroupError("AuthenticationFailed")
            del gen.skipped[idx]
            return pt
        if i - gen.next > self.max_forward_jumps:
            raise GroupError("TooFarAhead")
        ck = gen.chain_key
        kept = []
        lowest_kept = max(0, i - self.max_message_keys)
        for j in range(gen.next, i):
            if j >= lowest_kept:
                seed, ck = chain_step(ck)
                kept.append((j, seed))
            else:
                ck = hmac_sha256(ck, b"\x02")
        seed, ck = chain_step(ck)
        key, nonce = message_key(seed, self.group_id, gen.key_id, i)
        try:
            pt = aead_decrypt(key, nonce, b"", m["ciphertext"])
        except InvalidTag:
            raise GroupError("AuthenticationFailed")
        not_derived = lowest_kept > gen.next
        gen.next = i + 1
        gen.chain_key = ck
        gen.skipped.extend(kept)
        if not_derived:
            gen.evicted_below = max(gen.evicted_below, i - self.max_message_keys)
        while len(gen.skipped) > self.max_message_keys:
            j, _ = gen.skipped.pop(0)
            gen.evicted_below = max(gen.evicted_below, j + 1)
        return pt


# ---------------------------------------------------------------------------------------
# Vectors


def main():
    group_id = bytes(range(0x00, 0x20))
    key_id = 0x01020304
    chain_key = bytes(range(0x20, 0x40))
    signing_seed = bytes(range(0x40, 0x60))
    forger_seed = bytes(range(0x60, 0x80))

    plaintexts = {
        0: [b"", b"hello group", bytes(range(200))],
        300: [b"hello group"],
    }

    signing_key = SenderKey(group_id, key_id, 0, chain_key, signing_seed).signing_key()

    senders = []
    distributions = {}
    wires = {}
    for start in (0, 300):
        ck = chain_key
        for _ in range(start):
            ck = hmac_sha256(ck, b"\x02")
        sender = SenderKey(group_id, key_id, start, ck, signing_seed)
        state = sender.state()
        dist = sender.distribution()
        distributions[start] = dist
        receiver = Receiver(group_id)
        receiver.process_distribution(dist)
        messages = []
        for pt in plaintexts[start]:
            i = sender.iteration
            wire, seed, key, nonce = sender.encrypt(pt)
            wires[i] = wire
            assert receiver.decrypt(wire) == pt
            messages.append({
                "iteration": i,
                "plaintext": pt.hex(),
                "seed": seed.hex(),
                "key": key.hex(),
                "nonce": nonce.hex(),
                "wire": wire.hex(),
            })
        # Out-of-order check: a fresh receiver reading the last message first, then the rest.
        r2 = Receiver(group_id)
        r2.process_distribution(dist)
        order = [m["iteration"] for m in messages]
        for i in order[::-1]:
            r2.decrypt(wires[i])
        for i in order:
            try:
                r2.decrypt(wires[i])
                raise AssertionError("replay accepted")
            except GroupError as e:
                assert str(e) == "Duplicate", e
        senders.append({
            "start_iteration": start,
            "state": state.hex(),
            "chain_key_at_start": ck.hex(),
            "distribution": dist.hex(),
            "messages": messages,
        })

    negative = []

    # 1. Iteration 0, plaintext "forged" under the real message key, signed by another key.
    seed0, _ = chain_step(chain_key)
    k0, n0 = message_key(seed0, group_id, key_id, 0)
    ct = aead_encrypt(k0, n0, b"", b"forged")
    forged = sign_with(forger_seed, encode_group_message_unsigned(group_id, key_id, 0, ct))
    negative.append((distributions[0], forged))

    # 2. The iteration-0 message, to a receiver that got the sender key at iteration 300.
    negative.append((distributions[300], wires[0]))

    neg_out = []
    for dist, msg in negative:
        r = Receiver(group_id)
        r.process_distribution(dist)
        try:
            r.decrypt(msg)
            raise AssertionError("negative vector accepted")
        except GroupError as e:
            err = str(e)
        neg_out.append({"distribution": dist.hex(), "message": msg.hex(), "error": err})

    out = {
        "comment": "docs/PROTOCOL.md section 16; produced by tests/data/group_vectors.py",
        "group_id": group_id.hex(),
        "key_id": key_id,
        "chain_key": chain_key.hex(),
        "signing_seed": signing_seed.hex(),
        "signing_key": signing_key.hex(),
        "senders": senders,
        "negative": neg_out,
    }
    sys.stdout.write(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
