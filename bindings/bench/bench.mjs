// The Node side of the bindings benchmark (run.py): the calls of bench_native.rs through
// the WebAssembly binding. `node bench.mjs PKG SIZE ITERATIONS [inside]`, PKG holding
// wasm-bindgen's output (built with the `bench` feature) and guard.mjs; prints the median
// nanoseconds of `send`, `receive` and `generation` as JSON. With `inside`, the same loop runs inside the
// module (benchInsideModule): the difference is what crossing the boundary costs.
import { createRequire } from "node:module";
import { join } from "node:path";

const require = createRequire(import.meta.url);
const [pkg, sizeArg, iterationsArg, mode] = process.argv.slice(2);
const { guardModule } = await import(join(pkg, "guard.mjs"));
const rb = guardModule(require(join(pkg, "ratchetbox_wasm.js")));
const size = Number(sizeArg);
const iterations = Number(iterationsArg);
const median = (v) => v.sort((a, b) => a - b)[Math.floor(v.length / 2)];

if (mode === "inside") {
  const [send, receive] = rb.benchInsideModule(size, iterations);
  console.log(JSON.stringify({ send_ns: Math.round(send), receive_ns: Math.round(receive), call_ns: 0 }));
} else {
  const alice = rb.Device.create(new Uint8Array(32).fill(1), "alice", 1);
  const bob = rb.Device.create(new Uint8Array(32).fill(2), "bob", 1);
  alice.processBundle("bob", 1, rb.bundleFromUpload(bob.prekeyUpload(undefined), 0));
  const hello = alice.send("bob", [1], [], new Uint8Array([104, 105]), []);
  bob.receive("alice", 1, hello.messages[0].message);
  const reply = bob.send("alice", [1], [], new Uint8Array([104, 105]), []);
  alice.receive("bob", 1, reply.messages[0].message);

  const body = Uint8Array.from({ length: size }, (_, i) => i % 251);
  const send = [];
  const receive = [];
  for (let i = 0; i < iterations + Math.floor(iterations / 10); i++) {
    const t0 = performance.now();
    const sent = alice.send("bob", [1], [], body, []);
    const t1 = performance.now();
    const got = bob.receive("alice", 1, sent.messages[0].message);
    const t2 = performance.now();
    if (got.body.length !== size) throw new Error("wrong length");
    if (i >= Math.floor(iterations / 10)) {
      send.push(t1 - t0);
      receive.push(t2 - t1);
    }
  }
  // A call with no argument and a number back: what any call through the glue costs.
  const calls = [];
  for (let i = 0; i < iterations * 10; i++) {
    const t0 = performance.now();
    alice.generation();
    calls.push(performance.now() - t0);
  }
  console.log(JSON.stringify({
    send_ns: Math.round(median(send) * 1e6),
    receive_ns: Math.round(median(receive) * 1e6),
    call_ns: Math.round(median(calls) * 1e6),
  }));
}
