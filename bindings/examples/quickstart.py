import os, tempfile
from ratchetbox_uniffi import Device, RatchetboxError, bundle_from_upload, PreKeyStatus

d = tempfile.mkdtemp()
# The storage keys come from the platform's key store; each device has its own SQLite file.
alice = Device.create(os.path.join(d, "alice.sqlite"), os.urandom(32), "alice", 1)
bob = Device.create(os.path.join(d, "bob.sqlite"), os.urandom(32), "bob", 1)

# Bob uploads prekeys; the server hands Alice a bundle made of them.
nothing = PreKeyStatus(signed_prekey_id=None, last_resort_kem_prekey_id=None,
                       one_time_prekeys=0, newest_one_time_prekey_id=None,
                       one_time_kem_prekeys=0, newest_one_time_kem_prekey_id=None)
bundle = bundle_from_upload(bob.prekey_upload(nothing), 0)
try:
    alice.send("bob", [1], [], b"hello Bob", [])
except RatchetboxError.RepairSession as e:  # no session yet: process the bundle, retry
    assert e.addresses[0].user_id == "bob"
    alice.process_bundle("bob", 1, bundle)
sent = alice.send("bob", [1], [], b"hello Bob", [])

received = bob.receive("alice", 1, sent.messages[0].message)
print(received.body.decode())  # hello Bob
