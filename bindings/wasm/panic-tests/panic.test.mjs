// A panic inside Rust becomes a RatchetboxError of kind "Internal", and the module works
// again afterwards (js/guard.mjs). Needs the module built with the `panic-test` feature
// (its extra export `panicForTest()` panics); bindings/run.sh builds it apart and points
// RATCHETBOX_WASM_PANIC_PKG at it.

import { test } from "node:test";
import assert from "node:assert/strict";
import { createRequire } from "node:module";

const require = createRequire(import.meta.url);
const pkg = process.env.RATCHETBOX_WASM_PANIC_PKG;
const { guardModule } = await import(`${pkg}/guard.mjs`);
const rb = guardModule(require(`${pkg}/ratchetbox_wasm.js`));

const key = () => crypto.getRandomValues(new Uint8Array(32));
const text = (s) => new TextEncoder().encode(s);

/** Asserts that `call` throws a RatchetboxError of `kind`; returns it. */
function throwsKind(kind, call) {
  let caught;
  assert.throws(call, (e) => {
    caught = e;
    return e instanceof Error && e.name === "RatchetboxError" && e.kind === kind;
  });
  return caught;
}

test("a panic is a RatchetboxError of kind Internal, and the module carries on from exported state", () => {
  const aliceKey = key();
  const bobKey = key();
  let alice = rb.Device.create(aliceKey, "alice", 1);
  let bob = rb.Device.create(bobKey, "bob", 1);
  alice.processBundle("bob", 1, rb.bundleFromUpload(bob.prekeyUpload(undefined), 0));
  const first = alice.send("bob", [1], [], text("before"), []);
  assert.equal(new TextDecoder().decode(bob.receive("alice", 1, first.messages[0].message).body), "before");
  const aliceState = alice.exportState();
  const bobState = bob.exportState();

  for (let round = 0; round < 3; round++) {
    const e = throwsKind("Internal", () => rb.panicForTest());
    assert.equal(e.reloaded, true);
    assert.match(e.message, /failed internally/);
    assert.ok(!/a panic for the test/.test(e.message), "the panic's own text does not reach the app");

    // Objects from before the reload are refused with a typed error, never read from the
    // new instance's memory.
    const stale = throwsKind("Internal", () => alice.send("bob", [1], [], text("lost"), []));
    assert.equal(stale.reloaded, undefined);
    assert.match(stale.message, /open the device again/);
    throwsKind("Internal", () => bob.address());

    // The exported state carries on: the session continues in both directions.
    alice = rb.Device.open(aliceState, aliceKey);
    bob = rb.Device.open(bobState, bobKey);
    const sent = alice.send("bob", [1], [], text(`after ${round}`), []);
    assert.equal(new TextDecoder().decode(bob.receive("alice", 1, sent.messages[0].message).body), `after ${round}`);
    const reply = bob.send("alice", [1], [], text(`reply ${round}`), []);
    assert.equal(new TextDecoder().decode(alice.receive("bob", 1, reply.messages[0].message).body), `reply ${round}`);
  }
});

test("an argument of the wrong type is a RatchetboxError too, never a foreign exception", () => {
  // wasm-bindgen's glue converts arguments before Rust sees them: what it cannot convert
  // throws in JavaScript (CallerBug); what it converts into a request Rust's allocator
  // refuses panics inside Rust (Internal, and the module is reloaded).
  const k = key();
  assert.equal(throwsKind("CallerBug", () => rb.Device.create(k, null, 1)).reloaded, undefined);
  assert.equal(throwsKind("CallerBug", () => rb.openAttachment(undefined, undefined)).reloaded, undefined);
  assert.equal(throwsKind("Internal", () => rb.Device.create(k, 42n, 1)).reloaded, true);
  assert.equal(throwsKind("Internal", () => rb.Device.create(k, Symbol("s"), 1)).reloaded, true);
  // An object where bytes are expected arrives as no bytes: an empty pointer.
  throwsKind("DropForged", () => rb.openAttachment({}, new Uint8Array(0)));
  // The module works afterwards.
  assert.equal(rb.Device.create(k, "carol", 1).address().userId, "carol");
});
