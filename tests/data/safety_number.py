#!/usr/bin/env python3
"""Independent implementation of ratchetbox safety numbers (docs/PROTOCOL.md, "Safety numbers").

Written from the specification only, with nothing but the Python standard library
(hashlib), to produce the fixed test vector in safety_number.txt that tests/fingerprint.rs
checks the crate against. Regenerate with:

    python3 tests/data/safety_number.py > tests/data/safety_number.txt
"""

import hashlib

VERSION = 1
ITERATIONS = 5200
LABEL_SAFETY_NUMBER = b"ratchetbox v1 safety number"
LABEL_SCANNABLE_IDENTIFIER = b"ratchetbox v1 scannable identifier"
WIRE_VERSION = 0x01

# Fixed inputs: the public keys of RFC 8032, section 7.1, TEST 1 and TEST 2 (valid,
# canonical Ed25519 points), and two identifiers.
ALICE_KEY = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
BOB_KEY = bytes.fromhex("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c")
ALICE_ID = b"alice@example.org"
BOB_ID = b"bob@example.org"


def length_prefixed(identifier):
    assert len(identifier) <= 1024
    return len(identifier).to_bytes(2, "big") + identifier


def iterated_hash(key, identifier, iterations=ITERATIONS):
    h = LABEL_SAFETY_NUMBER + VERSION.to_bytes(4, "big") + key + length_prefixed(identifier)
    for _ in range(iterations):
        h = hashlib.sha512(h + key).digest()
    return h


def identifier_digest(identifier):
    return hashlib.sha512(LABEL_SCANNABLE_IDENTIFIER + length_prefixed(identifier)).digest()[:16]


def party_digits(h):
    return "".join(
        "%05d" % (int.from_bytes(h[i : i + 5], "big") % 100000) for i in range(0, 30, 5)
    )


def display(local_hash, remote_hash):
    digits = "".join(sorted([party_digits(local_hash), party_digits(remote_hash)]))
    return " ".join(digits[i : i + 5] for i in range(0, 60, 5))


def pb_varint(n):
    out = b""
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out += bytes([byte | 0x80])
        else:
            return out + bytes([byte])


def pb_bytes(field, value):
    return pb_varint(field << 3 | 2) + pb_varint(len(value)) + value


def scannable(local_id, local_hash, remote_id, remote_hash):
    def party(identifier, h):
        return pb_bytes(1, identifier_digest(identifier)) + pb_bytes(2, h[:32])

    body = (
        pb_varint(1 << 3 | 0)
        + pb_varint(VERSION)
        + pb_bytes(2, party(local_id, local_hash))
        + pb_bytes(3, party(remote_id, remote_hash))
    )
    return bytes([WIRE_VERSION]) + body


alice = iterated_hash(ALICE_KEY, ALICE_ID)
bob = iterated_hash(BOB_KEY, BOB_ID)

print("alice_key=" + ALICE_KEY.hex())
print("alice_id=" + ALICE_ID.decode())
print("bob_key=" + BOB_KEY.hex())
print("bob_id=" + BOB_ID.decode())
print("iterations=%d" % ITERATIONS)
print("alice_hash=" + alice.hex())
print("bob_hash=" + bob.hex())
print("alice_identifier_digest=" + identifier_digest(ALICE_ID).hex())
print("bob_identifier_digest=" + identifier_digest(BOB_ID).hex())
print("display=" + display(alice, bob))
print("alice_scannable=" + scannable(ALICE_ID, alice, BOB_ID, bob).hex())
print("bob_scannable=" + scannable(BOB_ID, bob, ALICE_ID, alice).hex())
