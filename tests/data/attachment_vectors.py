#!/usr/bin/env python3
"""Independent implementation of the ratchetbox sealed-attachment format (version 2).

Written from docs/PROTOCOL.md (section 13), not from the Rust code, with the `cryptography`
package (HKDF-SHA256, AES-256-GCM), hashlib, and BLAKE3 written out below from its
specification (Python's standard library has no BLAKE3; its own test value is checked
before anything is printed). It prints the test vectors that tests/attachments.rs checks
the Rust implementation against:

    pip install cryptography
    python3 tests/data/attachment_vectors.py > tests/data/attachment_vectors.json

Positive vectors: fixed file key, salt, chunk size and plaintext -> the sealed file (hex, or
its SHA-256 for the large one), its stored hash tree, the root and the encoded pointer. The Rust test seals the same inputs
(its random number generator yields the file key, then the salt) and must produce exactly
these bytes, and opens them.

Negative vectors: files a misbehaving *sender* (who holds the file key) could produce, files
an attacker holding the file key (any recipient) could substitute under the sender's pointer,
or pointers that do not match their file. Each names the error the receiver must report.

File name vectors: names and the file name rule (docs/PROTOCOL.md section 13.4, "File
names") each one breaks, with a pointer carrying the name; and every code point of general
category Cf in this Python's Unicode database, for the Rust tests to cross-check theirs.
"""

import hashlib
import json
import struct
import sys
import unicodedata

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"RBXA"
VERSION = 2
TAG_LEN = 16
MIN_PADDED = 256
LABEL_PAYLOAD = b"ratchetbox v1 attachment payload key"
LABEL_COMMITMENT = b"ratchetbox v1 attachment key commitment"


# BLAKE3 (J. O'Connor, J.-P. Aumasson, S. Neves, Z. Wilcox-O'Hearn, "BLAKE3: one function,
# fast everywhere", 2020, sections 2.1 to 2.6): the default hash mode, 32-byte output.
B3_IV = [0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A,
         0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19]
B3_PERMUTATION = [2, 6, 3, 10, 7, 0, 4, 13, 1, 11, 12, 5, 9, 14, 15, 8]
B3_CHUNK_START, B3_CHUNK_END, B3_PARENT, B3_ROOT = 1, 2, 4, 8
MASK32 = 0xFFFFFFFF


def _rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & MASK32


def _g(v, a, b, c, d, x, y):
    v[a] = (v[a] + v[b] + x) & MASK32
    v[d] = _rotr(v[d] ^ v[a], 16)
    v[c] = (v[c] + v[d]) & MASK32
    v[b] = _rotr(v[b] ^ v[c], 12)
    v[a] = (v[a] + v[b] + y) & MASK32
    v[d] = _rotr(v[d] ^ v[a], 8)
    v[c] = (v[c] + v[d]) & MASK32
    v[b] = _rotr(v[b] ^ v[c], 7)


def _compress(cv, block, counter, block_len, flags):
    m = list(struct.unpack("<16I", block.ljust(64, b"\0")))
    v = cv[:8] + B3_IV[:4] + [counter & MASK32, counter >> 32, block_len, flags]
    for r in range(7):
        _g(v, 0, 4, 8, 12, m[0], m[1])
        _g(v, 1, 5, 9, 13, m[2], m[3])
        _g(v, 2, 6, 10, 14, m[4], m[5])
        _g(v, 3, 7, 11, 15, m[6], m[7])
        _g(v, 0, 5, 10, 15, m[8], m[9])
        _g(v, 1, 6, 11, 12, m[10], m[11])
        _g(v, 2, 7, 8, 13, m[12], m[13])
        _g(v, 3, 4, 9, 14, m[14], m[15])
        m = [m[i] for i in B3_PERMUTATION]
    return [v[i] ^ v[i + 8] for i in range(8)]


def _b3_chunk(chunk, counter, root_flag):
    blocks = [chunk[i:i + 64] for i in range(0, len(chunk), 64)] or [b""]
    cv = B3_IV
    for i, block in enumerate(blocks):
        flags = (B3_CHUNK_START if i == 0 else 0)
        if i == len(blocks) - 1:
            flags |= B3_CHUNK_END | root_flag
        cv = _compress(cv, block, counter, len(block), flags)
    return cv


def _b3_tree(cvs, root_flag):
    if len(cvs) == 1:
        return cvs[0]
    split = 1 << ((len(cvs) - 1).bit_length() - 1)  # largest power of two below len(cvs)
    left, right = _b3_tree(cvs[:split], 0), _b3_tree(cvs[split:], 0)
    block = struct.pack("<8I", *left) + struct.pack("<8I", *right)
    return _compress(B3_IV, block, 0, 64, B3_PARENT | root_flag)


def blake3(data):
    chunks = [data[i:i + 1024] for i in range(0, len(data), 1024)] or [b""]
    if len(chunks) == 1:
        out = _b3_chunk(chunks[0], 0, B3_ROOT)
    else:
        out = _b3_tree([_b3_chunk(c, i, 0) for i, c in enumerate(chunks)], B3_ROOT)
    return struct.pack("<8I", *out)


def leaf_hash(index, last, sealed_chunk):
    return blake3(b"\x00" + index.to_bytes(8, "big") + bytes([1 if last else 0]) + sealed_chunk)


def node_hash(left, right):
    return blake3(b"\x01" + left + right)


def tree_levels(leaves):
    """Every level, leaves first: pairs hashed left to right, a lone last node moved up."""
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        level = levels[-1]
        levels.append([node_hash(level[i], level[i + 1]) if i + 1 < len(level) else level[i]
                       for i in range(0, len(level), 2)])
    return levels


def pointer_root(prefix, tree_root):
    return blake3(b"\x02" + prefix + tree_root)


def padme(length):
    """PADME, Nikitin et al., PETS 2019 (section 4.3), with exact integer logs."""
    if length < 2:
        return length
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 E) + 1
    z = e - s
    mask = (1 << z) - 1
    return (length + mask) & ~mask


def hkdf(salt, ikm, info):
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


def header(salt, chunk_log2, version=VERSION):
    return MAGIC + bytes([version, chunk_log2]) + salt


def nonce(index, last):
    # 11-byte big-endian counter || last-chunk flag (the age / C2SP STREAM layout).
    return index.to_bytes(11, "big") + bytes([1 if last else 0])


def seal(file_key, salt, chunk_log2, plaintext, padded_payload=None, flags=None,
         version=VERSION, extra_chunks=(), replace=None):
    """Seals `plaintext`; returns the sealed file and the pointer's root. The keyword
    arguments let a misbehaving sender deviate: `padded_payload` replaces plaintext || zeros,
    `flags` overrides the last-chunk flags, `extra_chunks` appends (index, last, payload)
    chunks after the regular ones, `replace` maps a chunk index to the payload to encrypt
    there instead. The tree and the root are those of the chunks written."""
    hdr = header(salt, chunk_log2, version)
    payload_key = hkdf(salt, file_key, LABEL_PAYLOAD + hdr)
    commitment = hkdf(salt, file_key, LABEL_COMMITMENT + hdr)
    if padded_payload is None:
        padded_len = padme(max(len(plaintext), MIN_PADDED))
        padded_payload = plaintext + bytes(padded_len - len(plaintext))
    chunk = 1 << chunk_log2
    pieces = [padded_payload[i:i + chunk] for i in range(0, len(padded_payload), chunk)]
    aead = AESGCM(payload_key)
    prefix = hdr + commitment
    out = bytearray(prefix)
    chunks = []
    for i, piece in enumerate(pieces):
        last = (i == len(pieces) - 1) if flags is None else flags[i]
        if replace and i in replace:
            piece = replace[i]
        chunks.append((i, last, aead.encrypt(nonce(i, last), piece, None)))  # ct || tag
    for index, last, piece in extra_chunks:
        chunks.append((index, last, aead.encrypt(nonce(index, last), piece, None)))
    for _, _, sealed_chunk in chunks:
        out += sealed_chunk
    # A leaf's flag is its position's (the final chunk of the file), whatever flag the
    # sender put in the nonce.
    levels = tree_levels([leaf_hash(i, i == len(chunks) - 1, c) for i, _, c in chunks])
    for level in levels:
        for node in level:
            out += node
    return bytes(out), pointer_root(prefix, levels[-1][0])


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


def field_varint(number, value):
    return b"" if value == 0 else varint(number << 3) + varint(value)


def field_bytes(number, value):
    return b"" if len(value) == 0 else varint(number << 3 | 2) + varint(len(value)) + value


def pointer(file_key, size, root, content_type="", file_name="", locator=b"", version=VERSION):
    """0x01 || canonical proto3 encoding of AttachmentPointer (fields in number order,
    default values omitted)."""
    return b"\x01" + (
        field_varint(1, version)
        + field_bytes(2, file_key)
        + field_varint(3, size)
        + field_bytes(4, root)
        + field_bytes(5, content_type.encode())
        + field_bytes(6, file_name.encode())
        + field_bytes(7, locator)
    )


def pattern(n):
    """The plaintext of the vectors: byte i is i mod 251."""
    return bytes(i % 251 for i in range(n))


def keys_for(name):
    return (hashlib.sha256(b"file key " + name.encode()).digest(),
            hashlib.sha256(b"salt " + name.encode()).digest())


def positive(name, size, chunk_log2, content_type="", file_name="", locator=b""):
    file_key, salt = keys_for(name)
    plaintext = pattern(size)
    sealed, root = seal(file_key, salt, chunk_log2, plaintext)
    digest = hashlib.sha256(sealed).digest()
    hdr = header(salt, chunk_log2)
    chunk = 1 << chunk_log2
    padded = padme(max(size, MIN_PADDED))
    count = (padded + chunk - 1) // chunk
    tree_offset = len(hdr) + 32 + padded + count * TAG_LEN
    vec = {
        "name": name,
        "file_key": file_key.hex(),
        "salt": salt.hex(),
        # Intermediate values, for readers of the specification.
        "header": hdr.hex(),
        "payload_key": hkdf(salt, file_key, LABEL_PAYLOAD + hdr).hex(),
        "commitment": hkdf(salt, file_key, LABEL_COMMITMENT + hdr).hex(),
        "chunk_log2": chunk_log2,
        "plaintext_len": size,
        "content_type": content_type,
        "file_name": file_name,
        "locator": locator.hex(),
        "sealed_len": len(sealed),
        "sealed_sha256": digest.hex(),
        "tree_offset": tree_offset,
        "tree": sealed[tree_offset:].hex(),
        "root": root.hex(),
        "pointer": pointer(file_key, size, root, content_type, file_name, locator).hex(),
    }
    if len(sealed) <= 6000:
        vec["sealed"] = sealed.hex()
    return vec


def negative(name, sealed_and_root, pointer_size, error, index=None, file_key=None, root=None,
             streaming_error=None):
    sealed, sealed_root = sealed_and_root
    vec = {
        "name": name,
        "sealed": sealed.hex(),
        "pointer": pointer(file_key, pointer_size, sealed_root if root is None else root).hex(),
        "error": error,
        "streaming_error": streaming_error or error,
    }
    if index is not None:
        vec["index"] = index
    return vec


def negatives():
    out = []
    chunk_log2 = 10

    file_key, salt = keys_for("nonzero padding")
    pt = pattern(1000)  # padded to 1024: 24 padding bytes in chunk 0
    payload = bytearray(pt + bytes(24))
    payload[1010] = 0x01
    out.append(negative("nonzero padding", seal(file_key, salt, chunk_log2, pt, bytes(payload)),
                        1000, "BadPadding", 0, file_key))

    file_key, salt = keys_for("size understated")
    pt = pattern(1000)  # the pointer says 993: same padded length 1024, bytes 993.. not zero
    out.append(negative("size understated", seal(file_key, salt, chunk_log2, pt),
                        993, "BadPadding", 0, file_key))

    file_key, salt = keys_for("final chunk without last flag")
    pt = pattern(3000)  # three 1 KiB chunks
    out.append(negative("final chunk without last flag",
                        seal(file_key, salt, chunk_log2, pt, flags=[False, False, False]),
                        3000, "ChunkAuthentication", 2, file_key))

    file_key, salt = keys_for("last flag too early")
    out.append(negative("last flag too early",
                        seal(file_key, salt, chunk_log2, pt, flags=[False, True, True]),
                        3000, "ChunkAuthentication", 1, file_key))

    file_key, salt = keys_for("chunk after the final one")
    out.append(negative("chunk after the final one",
                        seal(file_key, salt, chunk_log2, pt,
                             extra_chunks=[(3, True, bytes(1024))]),
                        3000, "LengthMismatch", None, file_key))

    file_key, salt = keys_for("version 1 header")
    out.append(negative("version 1 header",
                        seal(file_key, salt, chunk_log2, pattern(100), version=1),
                        100, "UnsupportedVersion", None, file_key))

    file_key, salt = keys_for("2 MiB chunks")
    out.append(negative("2 MiB chunks", seal(file_key, salt, 21, pattern(100)),
                        100, "MalformedHeader", None, file_key))

    file_key, salt = keys_for("512-byte chunks")
    out.append(negative("512-byte chunks", seal(file_key, salt, 9, pattern(1000)),
                        1000, "MalformedHeader", None, file_key))

    file_key, salt = keys_for("wrong root")
    out.append(negative("wrong root", seal(file_key, salt, chunk_log2, pattern(2000)),
                        2000, "RootMismatch", None, file_key, root=bytes(32)))

    # An attacker holding the file key (any recipient) re-encrypts chunk 1 under the payload
    # key and serves the file under the sender's pointer: with the stored tree left as it
    # was, chunk 1's hash is not its verified leaf; with the tree recomputed over the forged
    # chunks, the tree does not lead to the pointer's root.
    file_key, salt = keys_for("forged chunk")
    pt = pattern(3000)
    genuine, genuine_root = seal(file_key, salt, chunk_log2, pt)
    forged, _ = seal(file_key, salt, chunk_log2, pt, replace={1: bytes([0xEE]) * 1024})
    tree_offset = 70 + 3 * 1040
    kept = forged[:tree_offset] + genuine[tree_offset:]
    out.append(negative("forged chunk, tree kept", (kept, genuine_root), 3000,
                        "ChunkNotCommitted", 1, file_key))
    out.append(negative("forged chunk, tree recomputed", (forged, genuine_root), 3000,
                        "RootMismatch", None, file_key))

    # The sender's own chunks, moved: chunks 0 and 1 swapped with the stored tree kept; and
    # a stored leaf changed.
    file_key, salt = keys_for("swapped chunks")
    genuine, genuine_root = seal(file_key, salt, chunk_log2, pattern(3000))
    swapped = genuine[:70] + genuine[70 + 1040:70 + 2080] + genuine[70:70 + 1040] + genuine[70 + 2080:]
    out.append(negative("swapped chunks", (swapped, genuine_root), 3000,
                        "ChunkNotCommitted", 0, file_key))
    node = bytearray(genuine)
    node[tree_offset + 32] ^= 1  # level 0, leaf 1
    out.append(negative("stored leaf changed", (bytes(node), genuine_root), 3000,
                        "RootMismatch", None, file_key))

    file_key, salt = keys_for("other file key")
    other_key, _ = keys_for("not the pointer's key")
    sealed = seal(other_key, salt, chunk_log2, pattern(500))
    out.append(negative("other file key", sealed, 500, "CommitmentMismatch", None, file_key))

    # A sender who commits to its file but states a header the root does not cover: the
    # same chunks and tree behind another salt (a new key commitment, which the file key
    # holder can compute) no longer lead to the root, which binds the header.
    file_key, salt = keys_for("other header")
    sealed, root = seal(file_key, salt, chunk_log2, pattern(500))
    _, other_salt = keys_for("another salt")
    hdr = header(other_salt, chunk_log2)
    rebound = hdr + hkdf(other_salt, file_key, LABEL_COMMITMENT + hdr) + sealed[70:]
    out.append(negative("other header", (rebound, root), 500, "RootMismatch", None, file_key))
    return out


MAX_FILE_NAME = 255
WHITE_SPACE = {chr(c) for c in [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680,
                                *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000]}
DEVICE_NAMES = ({"CON", "PRN", "AUX", "NUL", "CONIN$", "CONOUT$"}
                | {prefix + digit for prefix in ("COM", "LPT")
                   for digit in "0123456789\u00b9\u00b2\u00b3"})


def file_name_rule(name):
    """The first file name rule `name` breaks (PROTOCOL.md 13.4, "File names"), or None."""
    if name == "":
        return None
    if len(name.encode()) > MAX_FILE_NAME:
        return "TooLong"
    for rule, test in [
        ("ControlCharacter", lambda c: unicodedata.category(c) == "Cc"),
        ("FormatCharacter", lambda c: unicodedata.category(c) == "Cf"),
        ("LineSeparator", lambda c: c in "\u2028\u2029"),
        ("PathSeparator", lambda c: c in "/\\"),
        ("Colon", lambda c: c == ":"),
        ("ReservedCharacter", lambda c: c in '<>"|?*'),
    ]:
        if any(test(c) for c in name):
            return rule
    if name in (".", ".."):
        return "DotName"
    if name[0] in WHITE_SPACE:
        return "LeadingWhitespace"
    if name[-1] == "." or name[-1] in WHITE_SPACE:
        return "TrailingDotOrWhitespace"
    if name.split(".")[0].rstrip(" ").upper() in DEVICE_NAMES:
        return "ReservedDeviceName"
    return None


FILE_NAMES = [
    # Accepted.
    "", "cat.jpg", "résumé – final.pdf", "Grüße aus Köln.txt", "写真 2024.png", "фото.jpeg",
    "صورة.png", "🐱 + 🐶.gif", "my  file.tar.gz", ".profile", "..hidden", "a.b.c",
    "CONSOLE.txt", "COM10", "LPT", "xCON", "con_", "nul-1.txt", "com1x.txt", "aux_data.csv",
    "CON$", "e\u0301t\u00e9.txt", "\U0001f3f3\ufe0f flag.png", "-rf", "~user", "inner\u00a0space\u3000name", "n" * 255,
    "é" * 127 + "x",
    # Refused.
    "n" * 256, "é" * 128, "a\x00b", "x\ny", "tab\there", "del\x7f", "c1\x85control",
    "evil\u202egpj.exe", "zero\u200bwidth", "\ufeffbom.txt", "soft\u00adhyphen",
    "lrm\u200e.txt", "isolate\u2066x\u2069", "word\u2060joiner", "tag\U000e0041",
    "mongolian\u180evs", "arabic\u061cmark", "\U0001f468\u200d\U0001f469\u200d\U0001f467.png",
    "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645.txt", "line\u2028sep", "para\u2029sep",
    "a/b", "a\\b", "../../etc/passwd", "..\\..\\boot.ini", "C:evil.exe", "a.txt:stream",
    "c:", "file<1>", "what?", "star*", 'quote"d', "pipe|d", ".", "..", " leading",
    "\u3000ideographic", "\u00a0nbsp", "trailing ", "evil.exe.", "dots...", "nbsp\u00a0",
    "CON", "con", "Con.txt", "CON .txt", "con  .tar.gz", "PRN", "aux.c", "NUL", "nul.txt",
    "COM0", "com1", "COM9.log", "COM\u00b9", "lpt\u00b2.txt", "LPT\u00b3", "LPT0", "lpt9",
    "CONIN$", "conout$.txt", "con\u0131n$",
]


def file_name_vectors():
    file_key, _ = keys_for("file names")
    root = hashlib.sha256(b"file names").digest()
    return [{"name": name, "rule": file_name_rule(name),
             "pointer": pointer(file_key, 1, root, "text/plain", name).hex()}
            for name in FILE_NAMES]


def format_characters():
    """Every code point of general category Cf, as [first, last] ranges."""
    ranges = []
    for cp in range(0x110000):
        if unicodedata.category(chr(cp)) == "Cf":
            if ranges and ranges[-1][1] == cp - 1:
                ranges[-1][1] = cp
            else:
                ranges.append([cp, cp])
    return ranges


def main():
    # BLAKE3's published test value (the empty input), and one input of several chunks
    # (the official test vectors: byte i of the input is i mod 251).
    assert blake3(b"").hex() == (
        "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262")
    assert blake3(pattern(3073)).hex().startswith("7124b49501012f81cc7f11ca069ec9226cecb8a2c850")
    vectors = {
        "description": "ratchetbox sealed attachments v2; generated by "
                       "tests/data/attachment_vectors.py (Python `cryptography`, BLAKE3 "
                       "written out in Python), independently of the Rust implementation",
        "plaintext": "byte i of a plaintext is i mod 251",
        "keys": "file_key = SHA-256(\"file key \" || name), salt = SHA-256(\"salt \" || name)",
        "padme_samples": [[n, padme(max(n, MIN_PADDED))] for n in
                          [0, 1, 255, 256, 257, 1000, 1023, 1024, 1025, 5000, 65535, 65536,
                           65537, 100000, 1 << 20, (1 << 20) + 1, 10**9, (1 << 50) - 1]],
        "positive": [
            positive("empty", 0, 10),
            positive("one byte", 1, 10),
            positive("chunk - 1", 1023, 10),
            positive("chunk", 1024, 10),
            positive("chunk + 1", 1025, 10),
            positive("many chunks", 5000, 10, "application/octet-stream", "data.bin",
                     b"blob/42"),
            positive("default chunk size", 200_000, 16, "video/mp4", "clip.mp4",
                     b"https://cdn.example/v/1"),
        ],
        "negative": negatives(),
        "file_names": file_name_vectors(),
        "format_characters": {
            "unicode_version": unicodedata.unidata_version,
            "ranges": format_characters(),
        },
    }
    json.dump(vectors, sys.stdout, indent=1)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
