"""Groups and backups through the Python bindings (UniFFI).

Run by bindings/run.sh with the rest of `bindings/uniffi/tests`.
"""

import os
import unittest

from ratchetbox_uniffi import (
    Address,
    Device,
    RatchetboxError,
    generate_recovery_key,
    restore_device,
)

from test_device import Fixture, send_all


def send_group_all(server, device, group, body):
    """Sends to the group, fetching bundles for the members the first try reports."""
    for _ in range(2):
        try:
            return device.send_group(group, body, [])
        except RatchetboxError.RepairSession as e:
            for address in e.addresses:
                device.process_bundle(address.user_id, address.device_id, server.bundle(address))
    raise AssertionError("still missing sessions after processing their bundles")


def deliver(sender, sent, devices):
    """Delivers the sender-key distributions to the devices they are for."""
    me = sender.address()
    for out in sent.distributions:
        devices[(out.to.user_id, out.to.device_id)].receive(me.user_id, me.device_id, out.message)


class Groups(Fixture):
    def test_a_removed_member_cannot_read_what_is_sent_after(self):
        a, b, c = self.install("alice", 1), self.install("bob", 1), self.install("carol", 1)
        devices = {("alice", 1): a, ("bob", 1): b, ("carol", 1): c}
        trio = [Address(user_id=u, device_id=1) for u in ("alice", "bob", "carol")]
        group = a.create_group(trio)
        self.assertEqual(len(group), 32)
        b.set_group_members(group, trio)
        c.set_group_members(group, trio)
        self.assertEqual(
            sorted((m.user_id, m.device_id) for m in a.group_members(group)),
            [("bob", 1), ("carol", 1)],
        )

        sent = send_group_all(self.server, a, group, b"Dinner on Friday?")
        self.assertEqual(
            sorted((m.to.user_id, m.to.device_id) for m in sent.distributions),
            [("bob", 1), ("carol", 1)],
        )
        # The group message before the sender key: RetryLater, and nothing changed.
        with self.assertRaises(RatchetboxError.RetryLater):
            b.receive_group("alice", 1, sent.message)
        deliver(a, sent, devices)
        for device in (b, c):
            self.assertEqual(device.receive_group("alice", 1, sent.message).body, b"Dinner on Friday?")

        # Carol is removed on Alice's and Bob's devices.
        duo = trio[:2]
        a.set_group_members(group, duo)
        b.set_group_members(group, duo)
        after = send_group_all(self.server, a, group, b"Surprise party for Carol!")
        self.assertEqual(
            [(m.to.user_id, m.to.device_id) for m in after.distributions], [("bob", 1)]
        )
        deliver(a, after, devices)
        self.assertEqual(b.receive_group("alice", 1, after.message).body, b"Surprise party for Carol!")
        # Carol gets a copy anyway: she lacks the replaced sender key.
        with self.assertRaises(RatchetboxError.RetryLater):
            c.receive_group("alice", 1, after.message)
        # And her device no longer accepts the message as from a member once she updates.
        c.set_group_members(group, [trio[2]])
        with self.assertRaises(RatchetboxError.DropForged):
            c.receive_group("alice", 1, after.message)

    def test_group_timer_and_wrong_group_id(self):
        a, b = self.install("alice", 1), self.install("bob", 1)
        duo = [Address(user_id="alice", device_id=1), Address(user_id="bob", device_id=1)]
        group = a.create_group(duo)
        b.set_group_members(group, duo)
        warm_up = send_group_all(self.server, a, group, b"warm-up")
        deliver(a, warm_up, {("bob", 1): b})
        self.assertEqual(b.group_timer(group), 0)
        sent = a.set_group_timer(group, 3600)
        self.assertEqual(sent.distributions, [])
        self.assertEqual(a.group_timer(group), 3600)
        received = b.receive_group("alice", 1, sent.message)
        self.assertEqual(received.timer_seconds, 3600)
        self.assertTrue(received.timer_changed)
        self.assertEqual(b.group_timer(group), 3600)
        with self.assertRaises(RatchetboxError.CallerBug) as caught:
            a.group_members(group[:31])
        self.assertEqual(caught.exception.message, "a group id is 32 bytes, got 31")
        with self.assertRaises(RatchetboxError.CallerBug):
            a.group_members(bytes(32))  # a group this device does not know


class Backups(Fixture):
    def test_restored_into_a_new_file_it_fetches_a_bundle_and_keeps_talking(self):
        a, b = self.install("alice", 1), self.install("bob", 1)
        sent = send_all(self.server, a, "bob", b"before the backup")
        self.assertEqual(b.receive("alice", 1, sent.messages[0].message).body, b"before the backup")

        code = generate_recovery_key()
        self.assertEqual(len(code), 77)
        backup = a.backup(code)
        identity = a.identity_key()
        del a  # the phone is lost

        new_key = os.urandom(32)
        typed = code.lower().replace("-", " ")
        restored = restore_device(self.path("alice", 1) + ".new", new_key, backup, typed)
        a = restored.device
        self.assertEqual(a.identity_key(), identity)
        self.assertEqual(a.address(), Address(user_id="alice", device_id=1))
        # The server takes the new prekeys.
        self.server.uploads[("alice", 1)] = restored.prekey_upload
        self.server.handed_out[("alice", 1)] = 0

        # The restored sessions never send: a fresh bundle first.
        with self.assertRaises(RatchetboxError.RepairSession) as caught:
            a.send("bob", [1], [], b"new phone", [])
        self.assertEqual(caught.exception.addresses, [Address(user_id="bob", device_id=1)])
        sent = send_all(self.server, a, "bob", b"New phone, same me")
        self.assertEqual(b.receive("alice", 1, sent.messages[0].message).body, b"New phone, same me")
        reply = b.send("alice", [1], [], b"Welcome back", [])
        self.assertEqual(a.receive("bob", 1, reply.messages[0].message).body, b"Welcome back")

        # The new file opens under the new storage key.
        del a, restored
        reopened = Device.open(self.path("alice", 1) + ".new", new_key)
        self.assertEqual(reopened.identity_key(), identity)

    def test_a_wrong_recovery_key_is_show_to_person_and_restores_nothing(self):
        a = self.install("alice", 1)
        backup = a.backup(generate_recovery_key())
        path = self.path("alice", 1) + ".new"
        key = os.urandom(32)
        other = generate_recovery_key()
        with self.assertRaises(RatchetboxError.ShowToPerson) as caught:
            restore_device(path, key, backup, other)
        self.assertNotIn(other, repr(caught.exception))
        with self.assertRaises(RatchetboxError.ShowToPerson) as caught:
            restore_device(path, key, backup, "not a recovery key")
        self.assertTrue(
            caught.exception.message.startswith("the recovery key is not valid: "),
            caught.exception.message,
        )
        with self.assertRaises(RatchetboxError.ShowToPerson):
            restore_device(path, key, backup[:-1], generate_recovery_key())
        # Nothing was restored: the file holds no device.
        with self.assertRaises(RatchetboxError.CallerBug):
            Device.open(path, key)

    def test_a_weak_passphrase_is_refused(self):
        a = self.install("alice", 1)
        with self.assertRaises(RatchetboxError.ShowToPerson):
            a.backup_with_passphrase("1234")


if __name__ == "__main__":
    unittest.main()
