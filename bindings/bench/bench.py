"""The Python side of the bindings benchmark (run.py): the calls of bench_native.rs, through
the UniFFI binding. `python3 bench.py DIR SIZE ITERATIONS` with the generated module on
PYTHONPATH; prints the median nanoseconds of `send`, `receive` and `generation` as JSON."""

import json
import os
import sys
import time

import ratchetbox_uniffi as rb


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    directory, size, iterations = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    alice = rb.Device.create(os.path.join(directory, "alice.db"), bytes([1] * 32), "alice", 1)
    bob = rb.Device.create(os.path.join(directory, "bob.db"), bytes([2] * 32), "bob", 1)
    upload = bob.prekey_upload(rb.PreKeyStatus(
        signed_prekey_id=None, last_resort_kem_prekey_id=None, one_time_prekeys=0,
        newest_one_time_prekey_id=None, one_time_kem_prekeys=0, newest_one_time_kem_prekey_id=None))
    alice.process_bundle("bob", 1, rb.bundle_from_upload(upload, 0))
    hello = alice.send("bob", [1], [], b"hi", [])
    bob.receive("alice", 1, hello.messages[0].message)
    reply = bob.send("alice", [1], [], b"hi", [])
    alice.receive("bob", 1, reply.messages[0].message)

    body = bytes(i % 251 for i in range(size))
    send, receive = [], []
    clock = time.perf_counter_ns
    for i in range(iterations + iterations // 10):
        t0 = clock()
        sent = alice.send("bob", [1], [], body, [])
        t1 = clock()
        got = bob.receive("alice", 1, sent.messages[0].message)
        t2 = clock()
        assert len(got.body) == size
        if i >= iterations // 10:  # the first tenth warms up
            send.append(t1 - t0)
            receive.append(t2 - t1)
    # A call with no argument and a number back: what any call through UniFFI costs.
    calls = []
    for _ in range(iterations * 10):
        t0 = clock()
        alice.generation()
        calls.append(clock() - t0)
    print(json.dumps({"send_ns": median(send), "receive_ns": median(receive), "call_ns": median(calls)}))


main()
