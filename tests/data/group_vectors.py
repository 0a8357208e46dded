#!/usr/bin/env python3
"""Independent implementation of ratchetbox group messages (sender keys).

Written from docs/PROTOCOL.md section 16 ("Group messages (sender keys)") only, not from the
Rust code, with the `cryptography` package (HKDF-SHA256, AES-256-GCM, Ed25519) and the
standard library (HMAC-SHA256, and HKDF again to cross-check). It prints the vectors that
tests/group_vectors.rs checks the Rust code against:

    pip install cryptography
    python3 tests/data/group_vectors.py > tests/data/group_vectors.json

Contents (byte strings in hex):

- `group_id` (bytes 0x00..0x1f), `key_id` (0x01020304), `chain_key` CK_0 (0x20..0x3f),
  `signing_seed` (0x40..0x5f) and `signing_key`, the Ed25519 public key of that seed.
- `senders`: for a start iteration (0 and 300), the persisted sender state
  `0x01 || GroupSenderState` (16.6) at that iteration, its distribution message (16.4), and
  the messages it sends next, in order, each with its iteration, plaintext, seed, key,
  nonce and wire bytes (16.2, 16.3). The Rust test restores the state, encrypts the same
  plaintexts and must produce exactly the wire bytes (Ed25519 signatures are deterministic),
  and a receiver that processed the distribution must decrypt each message to its plaintext.
- `negative`: a distribution and a message that must be refused after it, with the error.

Every message is checked here before printing: its signature verifies over
LABEL_GROUP_SIGNATURE || the wire bytes without their last 66 bytes, and it decrypts again.
"""

import hashlib
import hmac
import json
import struct
import sys

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

LABEL_GROUP_MESSAGE_KEY = b"ratchetbox v1 group message key"
LABEL_GROUP_SIGNATURE = b"ratchetbox v1 group message"
VERSION = b"\x01"

GROUP_ID = bytes(range(0x00, 0x20))
KEY_ID = 0x01020304
CHAIN_KEY = bytes(range(0x20, 0x40))
SIGNING_SEED = bytes(range(0x40, 0x60))
OTHER_SEED = bytes(range(0x60, 0x80))


# --- primitives -----------------------------------------------------------------------------


def hmac_sha256(key, data):
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf(salt, ikm, info, length):
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(ikm)


def hkdf_stdlib(salt, ikm, info, length):
    prk = hmac_sha256(salt, ikm)
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac_sha256(prk, block + info + bytes([counter]))
        out += block
        counter += 1
    return out[:length]


def ed25519_public(seed):
    return Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw
    )


def ed25519_sign(seed, msg):
    return Ed25519PrivateKey.from_private_bytes(seed).sign(msg)


# --- canonical protobuf (section 2): fields in tag order, default values absent -------------


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_uint(tag, value):
    return varint(tag << 3) + varint(value) if value else b""


def field_bytes(tag, value):
    return varint((tag << 3) | 2) + varint(len(value)) + value if value else b""


# --- section 16.2 ---------------------------------------------------------------------------


def chain_step(ck):
    """(seed_i, CK_{i+1}) from CK_i."""
    return hmac_sha256(ck, b"\x01"), hmac_sha256(ck, b"\x02")


def message_key(seed, group_id, key_id, iteration):
    info = LABEL_GROUP_MESSAGE_KEY + group_id + struct.pack(">II", key_id, iteration)
    okm = hkdf(b"\x00" * 32, seed, info, 44)
    assert okm == hkdf_stdlib(b"\x00" * 32, seed, info, 44)
    return okm[:32], okm[32:]


# --- sections 16.3, 16.4, 16.6 --------------------------------------------------------------


def group_message(seed_signing, group_id, key_id, iteration, ciphertext):
    unsigned = VERSION + (
        field_bytes(1, group_id)
        + field_uint(2, key_id)
        + field_uint(3, iteration)
        + field_bytes(4, ciphertext)
    )
    signature = ed25519_sign(seed_signing, LABEL_GROUP_SIGNATURE + unsigned)
    wire = unsigned + b"\x2a\x40" + signature
    assert wire == unsigned + field_bytes(5, signature)
    return wire


def distribution(group_id, key_id, iteration, chain_key, signing_key):
    return VERSION + (
        field_bytes(1, group_id)
        + field_uint(2, key_id)
        + field_uint(3, iteration)
        + field_bytes(4, chain_key)
        + field_bytes(5, signing_key)
    )


def sender_state(group_id, key_id, iteration, chain_key, signing_seed):
    return VERSION + (
        field_bytes(1, group_id)
        + field_uint(2, key_id)
        + field_uint(3, iteration)
        + field_bytes(4, chain_key)
        + field_bytes(5, signing_seed)
    )


def check_message(wire, signing_key, key, nonce, plaintext):
    Ed25519PublicKey.from_public_bytes(signing_key).verify(
        wire[-64:], LABEL_GROUP_SIGNATURE + wire[:-66]
    )
    # The ciphertext field sits just before the signature field; find it by re-encoding.
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, b"")
    assert field_bytes(4, ciphertext) + b"\x2a\x40" + wire[-64:] == wire[-(66 + len(field_bytes(4, ciphertext))):]
    assert AESGCM(key).decrypt(nonce, ciphertext, b"") == plaintext


def sender_vectors(start, plaintexts):
    ck = CHAIN_KEY
    for _ in range(start):
        _, ck = chain_step(ck)
    signing_key = ed25519_public(SIGNING_SEED)
    out = {
        "start_iteration": start,
        "state": sender_state(GROUP_ID, KEY_ID, start, ck, SIGNING_SEED).hex(),
        "chain_key_at_start": ck.hex(),
        "distribution": distribution(GROUP_ID, KEY_ID, start, ck, signing_key).hex(),
        "messages": [],
    }
    iteration = start
    for plaintext in plaintexts:
        seed, ck = chain_step(ck)
        key, nonce = message_key(seed, GROUP_ID, KEY_ID, iteration)
        ciphertext = AESGCM(key).encrypt(nonce, plaintext, b"")
        wire = group_message(SIGNING_SEED, GROUP_ID, KEY_ID, iteration, ciphertext)
        check_message(wire, signing_key, key, nonce, plaintext)
        out["messages"].append(
            {
                "iteration": iteration,
                "plaintext": plaintext.hex(),
                "seed": seed.hex(),
                "key": key.hex(),
                "nonce": nonce.hex(),
                "wire": wire.hex(),
            }
        )
        iteration += 1
    return out


def main():
    plaintexts = [b"", b"hello group", bytes(i % 251 for i in range(200))]
    senders = [sender_vectors(0, plaintexts), sender_vectors(300, plaintexts[1:2])]

    # Negative: a message under the right key id, encrypted correctly, but signed by another
    # key (a member who knows the chain key forging the sender): ForgedSignature.
    seed0, _ = chain_step(CHAIN_KEY)
    key, nonce = message_key(seed0, GROUP_ID, KEY_ID, 0)
    forged = group_message(
        OTHER_SEED, GROUP_ID, KEY_ID, 0, AESGCM(key).encrypt(nonce, b"forged", b"")
    )
    # Negative: the message at iteration 0 given to a receiver whose distribution starts at
    # 300: BeforeDistribution.
    negative = [
        {
            "distribution": senders[0]["distribution"],
            "message": forged.hex(),
            "error": "ForgedSignature",
        },
        {
            "distribution": senders[1]["distribution"],
            "message": senders[0]["messages"][0]["wire"],
            "error": "BeforeDistribution",
        },
    ]
    vectors = {
        "comment": "docs/PROTOCOL.md section 16; produced by tests/data/group_vectors.py",
        "group_id": GROUP_ID.hex(),
        "key_id": KEY_ID,
        "chain_key": CHAIN_KEY.hex(),
        "signing_seed": SIGNING_SEED.hex(),
        "signing_key": ed25519_public(SIGNING_SEED).hex(),
        "senders": senders,
        "negative": negative,
    }
    json.dump(vectors, sys.stdout, indent=2)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
