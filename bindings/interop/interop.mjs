// Interop, the Node side (wasm-bindgen): see interop.py for the steps.
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { randomBytes } from "node:crypto";
import { join } from "node:path";
import assert from "node:assert/strict";

const require = createRequire(import.meta.url);
const pkg = process.env.RATCHETBOX_WASM_PKG;
const { guardModule } = await import(join(pkg, "guard.mjs"));
const rb = guardModule(require(join(pkg, "ratchetbox_wasm.js")));
const [step, dir] = process.argv.slice(2);
const path = (name) => join(dir, name);
const pattern = (n, step) => Uint8Array.from({ length: n }, (_, i) => (i * step) % 251);

if (step === "setup") {
  const key = randomBytes(32);
  const bob = rb.Device.create(key, "bob", 1);
  writeFileSync(path("bob.upload"), bob.prekeyUpload(undefined));
  writeFileSync(path("bob.key"), key);
  writeFileSync(path("bob.state"), bob.exportState());
} else if (step === "reply") {
  const bob = rb.Device.open(readFileSync(path("bob.state")), readFileSync(path("bob.key")));
  const received = bob.receive("alice", 1, readFileSync(path("message-1")));
  assert.equal(new TextDecoder().decode(received.body), "Hello from Python");
  const opened = rb.openAttachment(received.attachments[0], readFileSync(path("from-python.sealed")));
  assert.deepEqual(opened, pattern(200_000, 7));
  assert.equal(rb.attachmentInfo(received.attachments[0]).fileName, "py.bin");
  const sealed = rb.sealAttachment(pattern(150_000, 11), "application/octet-stream", "node.bin");
  writeFileSync(path("from-node.sealed"), sealed.sealed);
  const reply = bob.send("alice", [1], [], new TextEncoder().encode("Hello from Node"), [sealed.pointer]);
  writeFileSync(path("message-2"), reply.messages[0].message);
  writeFileSync(path("bob.state"), bob.exportState());
  console.log("interop: Node decrypted Python's message and opened its attachment");
} else {
  throw new Error(`unknown step ${step}`);
}
