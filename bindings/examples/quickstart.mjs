import { createRequire } from "node:module";
const require = createRequire(import.meta.url);
const pkg = process.env.RATCHETBOX_WASM_PKG ?? "./pkg"; // wasm-bindgen's output and guard.mjs
const { guardModule } = await import(`${pkg}/guard.mjs`);
const { Device, bundleFromUpload } = guardModule(require(`${pkg}/ratchetbox_wasm.js`));

const key = () => crypto.getRandomValues(new Uint8Array(32)); // from a key store in a real app
const alice = Device.create(key(), "alice", 1);
const bob = Device.create(key(), "bob", 1);

// Bob uploads prekeys; the server hands Alice a bundle made of them.
const bundle = bundleFromUpload(bob.prekeyUpload(undefined), 0);
try {
  alice.send("bob", [1], [], new TextEncoder().encode("hello Bob"), []);
} catch (e) {
  if (e.kind !== "RepairSession") throw e; // no session yet: process the bundle, retry
  alice.processBundle("bob", 1, bundle);
}
const sent = alice.send("bob", [1], [], new TextEncoder().encode("hello Bob"), []);
const received = bob.receive("alice", 1, sent.messages[0].message);
console.log(new TextDecoder().decode(received.body)); // hello Bob

// The state to keep (IndexedDB in a browser), sealed under the storage key.
const state = bob.exportState();
