"""Interop, the Python side (UniFFI): with interop.mjs, a conversation and attachments
between Python and Node through files. bindings/run.sh runs the steps in order:

  node interop.mjs setup DIR      Bob (Node) is created; his state and prekey upload go to DIR
  python3 interop.py send DIR     Alice (Python, SQLite) starts a session and sends a message
                                  with a sealed file
  node interop.mjs reply DIR      Bob decrypts both, replies with an attachment he sealed
  python3 interop.py check DIR    Alice reopens her database and decrypts Bob's reply
"""

import os
import sys

from ratchetbox_uniffi import (
    Device,
    bundle_from_upload,
    open_attachment_file,
    seal_attachment_file,
)


def pattern(n, step):
    return bytes((i * step) % 251 for i in range(n))


def main(step, d):
    path = lambda name: os.path.join(d, name)
    if step == "send":
        key = os.urandom(32)
        with open(path("alice.key"), "wb") as f:
            f.write(key)
        alice = Device.create(path("alice.sqlite"), key, "alice", 1)
        with open(path("bob.upload"), "rb") as f:
            bundle = bundle_from_upload(f.read(), 0)
        alice.process_bundle("bob", 1, bundle)
        with open(path("from-python.bin"), "wb") as f:
            f.write(pattern(200_000, 7))
        pointer = seal_attachment_file(
            path("from-python.bin"), path("from-python.sealed"), "application/octet-stream", "py.bin"
        )
        sent = alice.send("bob", [1], [], "Hello from Python".encode(), [pointer])
        with open(path("message-1"), "wb") as f:
            f.write(sent.messages[0].message)
    elif step == "check":
        with open(path("alice.key"), "rb") as f:
            alice = Device.open(path("alice.sqlite"), f.read())
        with open(path("message-2"), "rb") as f:
            received = alice.receive("bob", 1, f.read())
        assert received.body == "Hello from Node".encode(), received.body
        assert len(received.attachments) == 1
        length = open_attachment_file(
            received.attachments[0], path("from-node.sealed"), path("from-node.opened")
        )
        with open(path("from-node.opened"), "rb") as f:
            assert f.read() == pattern(150_000, 11)
        assert length == 150_000
        print("interop: Python decrypted Node's reply and opened its attachment")
    else:
        sys.exit(f"unknown step {step}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
