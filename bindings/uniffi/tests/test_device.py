"""The Python bindings (UniFFI), through the generated module and the built library.

Run by bindings/run.sh: `PYTHONPATH=<dir with ratchetbox_uniffi.py and the library>
python3 -m unittest discover -s bindings/uniffi/tests`.
"""

import os
import shutil
import tempfile
import unittest

from ratchetbox_uniffi import (
    Address,
    Device,
    PreKeyStatus,
    RatchetboxError,
    ScanResult,
    Trust,
    attachment_info,
    bundle_from_upload,
    open_attachment,
    open_attachment_file,
    seal_attachment,
    seal_attachment_file,
    set_attachment_locator,
)


class Server:
    """A toy server: bundles from first uploads, and the device lists."""

    def __init__(self):
        self.uploads = {}
        self.devices = {}
        self.handed_out = {}

    def register(self, device):
        address = device.address()
        upload = device.prekey_upload(PreKeyStatus(
            signed_prekey_id=None,
            last_resort_kem_prekey_id=None,
            one_time_prekeys=0,
            newest_one_time_prekey_id=None,
            one_time_kem_prekeys=0,
            newest_one_time_kem_prekey_id=None,
        ))
        self.uploads[(address.user_id, address.device_id)] = upload
        self.devices.setdefault(address.user_id, set()).add(address.device_id)

    def bundle(self, address):
        key = (address.user_id, address.device_id)
        index = self.handed_out.get(key, 0)
        self.handed_out[key] = index + 1
        return bundle_from_upload(self.uploads[key], index)

    def device_ids(self, user):
        return sorted(self.devices.get(user, ()))


def send_all(server, device, user, body, attachments=()):
    """Sends to every device of `user` and the sender's other devices, fetching bundles
    for the devices the first try reports."""
    me = device.address()
    others = [d for d in server.device_ids(me.user_id) if d != me.device_id]
    for _ in range(2):
        try:
            return device.send(user, server.device_ids(user), others, body, list(attachments))
        except RatchetboxError.RepairSession as e:
            for address in e.addresses:
                device.process_bundle(address.user_id, address.device_id, server.bundle(address))
    raise AssertionError("still missing sessions after processing their bundles")


class Fixture(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ratchetbox-py-")
        self.server = Server()
        self.keys = {}

    def tearDown(self):
        shutil.rmtree(self.dir)

    def path(self, user, device_id):
        return os.path.join(self.dir, f"{user}.{device_id}.sqlite")

    def install(self, user, device_id):
        key = os.urandom(32)
        self.keys[(user, device_id)] = key
        device = Device.create(self.path(user, device_id), key, user, device_id)
        self.server.register(device)
        return device

    def reopen(self, user, device_id):
        return Device.open(self.path(user, device_id), self.keys[(user, device_id)])


class Conversation(Fixture):
    def test_two_users_two_devices_each_across_a_reload(self):
        a1, a2 = self.install("alice", 1), self.install("alice", 2)
        b1, b2 = self.install("bob", 1), self.install("bob", 2)

        sent = send_all(self.server, a1, "bob", b"Hi Bob! Lunch at noon?")
        self.assertEqual(
            [(m.to.user_id, m.to.device_id) for m in sent.messages],
            [("bob", 1), ("bob", 2), ("alice", 2)],
        )
        for device, message in zip([b1, b2, a2], sent.messages):
            received = device.receive("alice", 1, message.message)
            self.assertEqual(received.body, b"Hi Bob! Lunch at noon?")
            self.assertEqual(received.timer_seconds, 0)
            self.assertIsNone(received.expires_at)

        reply = send_all(self.server, b2, "alice", b"Sure.")
        for device, message in zip([a1, a2, b1], reply.messages):
            self.assertEqual(device.receive("bob", 2, message.message).body, b"Sure.")

        # Every device closes its file, and opens it again.
        generation = b1.generation()
        del a1, a2, b1, b2
        a1, a2 = self.reopen("alice", 1), self.reopen("alice", 2)
        b1, b2 = self.reopen("bob", 1), self.reopen("bob", 2)
        b1.check_generation(generation)
        self.assertEqual(b1.address(), Address(user_id="bob", device_id=1))
        self.assertEqual(
            sorted((a.user_id, a.device_id) for a in a1.sessions()),
            [("alice", 2), ("bob", 1), ("bob", 2)],
        )

        # The sessions carry on: no bundle is fetched, the messages decrypt.
        later = a1.send("bob", [1, 2], [2], b"Bring the book?", [])
        for device, message in zip([b1, b2, a2], later.messages):
            self.assertEqual(device.receive("alice", 1, message.message).body, b"Bring the book?")
        answer = b1.send("alice", [1], [2], b"Will do.", [])
        self.assertEqual(a1.receive("bob", 1, answer.messages[0].message).body, b"Will do.")

    def test_an_attachment_from_bytes_and_from_files(self):
        a1, b1 = self.install("alice", 1), self.install("bob", 1)
        photo = bytes((i * 7) % 251 for i in range(300_000))
        sealed = seal_attachment(photo, "image/jpeg", "menu.jpg")
        self.assertNotIn(photo[:64], sealed.sealed)
        pointer = set_attachment_locator(sealed.pointer, b"blob-17")

        sent = send_all(self.server, a1, "bob", b"Today's menu", [pointer])
        received = b1.receive("alice", 1, sent.messages[0].message)
        self.assertEqual(len(received.attachments), 1)
        info = attachment_info(received.attachments[0])
        self.assertEqual(
            (info.content_type, info.file_name, info.plaintext_len, info.locator),
            ("image/jpeg", "menu.jpg", 300_000, b"blob-17"),
        )
        self.assertEqual(open_attachment(received.attachments[0], sealed.sealed), photo)

        # A sealed file changed anywhere is refused.
        damaged = bytearray(sealed.sealed)
        damaged[len(damaged) // 2] ^= 1
        with self.assertRaises(RatchetboxError.DropForged):
            open_attachment(pointer, bytes(damaged))

        # Files: streamed in, streamed out.
        plain = os.path.join(self.dir, "video.bin")
        with open(plain, "wb") as f:
            f.write(photo * 3)
        sealed_path = os.path.join(self.dir, "video.sealed")
        opened_path = os.path.join(self.dir, "video.opened")
        file_pointer = seal_attachment_file(plain, sealed_path, "video/mp4", "clip.mp4")
        self.assertEqual(open_attachment_file(file_pointer, sealed_path, opened_path), 900_000)
        with open(opened_path, "rb") as f:
            self.assertEqual(f.read(), photo * 3)
        # The file pointer does not open the bytes sealed under another key.
        with self.assertRaises(RatchetboxError.DropForged):
            open_attachment(file_pointer, sealed.sealed)

    def test_a_timer_reaches_every_device(self):
        a1, a2 = self.install("alice", 1), self.install("alice", 2)
        b1 = self.install("bob", 1)
        # Sets up the sessions. The first messages are not delivered: b1 and a2 set up
        # theirs from the timer message (an initial message until the peer answers).
        send_all(self.server, a1, "bob", b"hello")
        timer = a1.set_expiry_timer("bob", [1], [2], 86_400)
        self.assertIsNotNone(timer.expires_at)
        for device, message in zip([b1, a2], timer.messages):
            received = device.receive("alice", 1, message.message)
            self.assertEqual(received.body, b"")
            self.assertEqual(received.timer_seconds, 86_400)
            self.assertTrue(received.timer_changed)
        self.assertEqual(b1.expiry_timer("alice"), 86_400)

        reply = b1.send("alice", [1], [], b"Noted.", [])
        received = a1.receive("bob", 1, reply.messages[0].message)
        self.assertEqual(received.timer_seconds, 86_400)
        self.assertFalse(received.timer_changed)
        self.assertEqual(received.expires_at, received.received_at + 86_400)

    def test_safety_numbers_match_and_verify(self):
        a1, b1 = self.install("alice", 1), self.install("bob", 1)
        sent = send_all(self.server, a1, "bob", b"hi")
        b1.receive("alice", 1, sent.messages[0].message)

        alice_side = a1.safety_number("bob", 1, b"alice", b"bob")
        bob_side = b1.safety_number("alice", 1, b"bob", b"alice")
        self.assertEqual(alice_side.display, bob_side.display)
        self.assertEqual(len(alice_side.display.replace(" ", "")), 60)
        self.assertEqual(
            a1.compare_scanned("bob", 1, b"alice", b"bob", bob_side.scannable), ScanResult.MATCH
        )
        # Carol's phone shows a number for the same names but other keys.
        c1 = self.install("carol", 1)
        send_all(self.server, c1, "bob", b"hi")
        carol_side = c1.safety_number("bob", 1, b"bob", b"alice")
        self.assertEqual(
            a1.compare_scanned("bob", 1, b"alice", b"bob", carol_side.scannable),
            ScanResult.MISMATCH,
        )

        self.assertEqual(a1.peer("bob", 1).trust, Trust.FIRST_USE)
        a1.mark_verified("bob", 1, b1.identity_key())
        peer = a1.peer("bob", 1)
        self.assertEqual((peer.identity_key, peer.trust), (b1.identity_key(), Trust.VERIFIED))
        self.assertIsNone(a1.peer("carol", 1))


class Errors(Fixture):
    def setUp(self):
        super().setUp()
        self.a1, self.b1 = self.install("alice", 1), self.install("bob", 1)

    def test_ignore_a_duplicate(self):
        sent = send_all(self.server, self.a1, "bob", b"once")
        self.b1.receive("alice", 1, sent.messages[0].message)
        with self.assertRaises(RatchetboxError.Ignore) as caught:
            self.b1.receive("alice", 1, sent.messages[0].message)
        self.assertIn("alice.1", caught.exception.message)

    def test_drop_forged_and_nothing_changed(self):
        sent = send_all(self.server, self.a1, "bob", b"authentic")
        message = sent.messages[0].message
        tampered = bytearray(message)
        tampered[-1] ^= 0x01
        with self.assertRaises(RatchetboxError.DropForged):
            self.b1.receive("alice", 1, bytes(tampered))
        # The failed call left the state as it was: the real message decrypts.
        self.assertEqual(self.b1.receive("alice", 1, message).body, b"authentic")
        with self.assertRaises(RatchetboxError.DropForged):
            self.a1.process_bundle("carol", 1, b"\x01not a bundle")

    def test_show_to_person_wrong_storage_key_and_identity_change(self):
        with self.assertRaises(RatchetboxError.ShowToPerson) as caught:
            Device.open(self.path("bob", 1), os.urandom(32))
        self.assertIsNone(caught.exception.new_identity_key)

        send_all(self.server, self.a1, "bob", b"hi")
        # Bob reinstalls: same address, new identity key, new prekeys.
        os.remove(self.path("bob", 1))
        b1 = self.install("bob", 1)
        self.server.handed_out[("bob", 1)] = 0
        bundle = self.server.bundle(Address(user_id="bob", device_id=1))
        with self.assertRaises(RatchetboxError.ShowToPerson) as caught:
            self.a1.process_bundle("bob", 1, bundle)
        self.assertEqual(caught.exception.new_identity_key, b1.identity_key())
        self.assertEqual(caught.exception.addresses, [Address(user_id="bob", device_id=1)])
        # Accepting another key is refused; the reported one is taken.
        with self.assertRaises(RatchetboxError.CallerBug):
            self.a1.accept_identity_change("bob", 1, self.a1.identity_key())
        self.a1.accept_identity_change("bob", 1, b1.identity_key())
        self.a1.process_bundle("bob", 1, bundle)
        sent = self.a1.send("bob", [1], [], b"welcome back", [])
        self.assertEqual(b1.receive("alice", 1, sent.messages[0].message).body, b"welcome back")
        self.assertEqual(self.a1.peer("bob", 1).trust, Trust.CHANGED)

    def test_repair_session_lists_the_devices_without_one(self):
        with self.assertRaises(RatchetboxError.RepairSession) as caught:
            self.a1.send("bob", [1, 5], [], b"hi", [])
        self.assertEqual(
            caught.exception.addresses,
            [Address(user_id="bob", device_id=1), Address(user_id="bob", device_id=5)],
        )

    def test_retry_later_when_the_file_cannot_be_opened(self):
        with self.assertRaises(RatchetboxError.RetryLater):
            Device.open(os.path.join(self.dir, "missing-dir", "x.sqlite"), os.urandom(32))

    def test_caller_bug(self):
        with self.assertRaises(RatchetboxError.CallerBug) as caught:
            Device.create(self.path("carol", 1), b"short", "carol", 1)
        self.assertEqual(caught.exception.message, "the storage key must be 32 bytes, got 5")
        with self.assertRaises(RatchetboxError.CallerBug):
            Device.create(self.path("bob", 1), os.urandom(32), "bob", 2)  # the file holds bob.1
        with self.assertRaises(RatchetboxError.CallerBug):
            self.a1.set_expiry_timer("bob", [], [], 2**32 - 1)
        with self.assertRaises(RatchetboxError.CallerBug):
            self.a1.receive("alice", 1, b"to myself")

    def test_internal_is_a_ratchetbox_error(self):
        # A panic cannot be caused from here (the Rust tests cause one); the class exists
        # and is caught with the others.
        self.assertTrue(issubclass(RatchetboxError.Internal, RatchetboxError))

    def test_messages_name_no_secret(self):
        key = os.urandom(32)
        try:
            Device.open(self.path("bob", 1), key)
        except RatchetboxError.ShowToPerson as e:
            self.assertNotIn(key.hex(), repr(e))
            self.assertNotIn(repr(key), repr(e))


if __name__ == "__main__":
    unittest.main()
