// The supported way to load ratchetbox's WebAssembly module: `guardModule(glue)` takes the
// module wasm-bindgen generated (`--experimental-reset-state-function` is required) and
// returns its exports with every function and method guarded, so that the only exception
// that ever leaves the library is a `RatchetboxError`:
//
// - A panic inside Rust (a bug) cannot unwind on wasm32: the module's panic hook throws a
//   `RatchetboxError` of kind "Internal" with `reloaded: true` instead. The instance may be
//   left half-way through that call, so the guard replaces it at once with a fresh one
//   (wasm-bindgen's `__wbg_reset_state`): the module goes on working, and everything it held
//   in memory is gone. Open devices again from their last exported state (the failed call
//   did not change it).
// - A trap that is not a panic (out of memory, stack overflow) is a `WebAssembly.RuntimeError`:
//   the same reload, the same "Internal" error.
// - A `Device` object made before a reload throws "Internal" (wasm-bindgen's stale-object
//   check), as does a call on a freed object.
// - Anything else wasm-bindgen's glue throws before calling into Rust (an argument of the
//   wrong type) is the caller's: "CallerBug".
//
// Node:    const rb = guardModule(require("./pkg/ratchetbox_wasm.js"));
// Browser: import * as glue from "./pkg/ratchetbox_wasm.js"; await glue.default();
//          const rb = guardModule(glue);

/** Builds the error every guarded call throws instead of a foreign one. */
function ratchetboxError(kind, message, reloaded) {
  const e = new Error(message);
  e.name = "RatchetboxError";
  e.kind = kind;
  e.addresses = [];
  if (reloaded) e.reloaded = true;
  return e;
}

const STALE =
  "this object belongs to an instance of the module that was reloaded after an internal failure " +
  "(or was freed): open the device again from its last exported state";

/**
 * Returns `glue`'s exports with every function, static method and method guarded (classes
 * are patched in place, so objects the module returns are guarded too).
 * @template T
 * @param {T} glue the module wasm-bindgen generated
 * @returns {T}
 */
export function guardModule(glue) {
  const reset = glue.__wbg_reset_state;
  if (typeof reset !== "function") {
    throw new Error("ratchetbox: generate the module with wasm-bindgen --experimental-reset-state-function");
  }
  const guard = (f) =>
    function guarded(...args) {
      try {
        return f.apply(this, args);
      } catch (e) {
        if (e instanceof Error && e.name === "RatchetboxError") {
          if (e.reloaded) reset();
          throw e;
        }
        if (e instanceof WebAssembly.RuntimeError) {
          reset();
          throw ratchetboxError(
            "Internal",
            "ratchetbox stopped on a WebAssembly trap (out of memory or a bug); the module was reloaded: " +
              "open your devices again from their last exported state",
            true,
          );
        }
        const text = e instanceof Error ? e.message : String(e);
        if (/stale object|null pointer passed to rust|recursive use of an object/i.test(text)) {
          throw ratchetboxError("Internal", STALE, false);
        }
        throw ratchetboxError("CallerBug", `invalid argument: ${text}`, false);
      }
    };
  const guarded = {};
  for (const [name, value] of Object.entries(glue)) {
    if (name.startsWith("__wbg") || name === "default" || name === "initSync") {
      guarded[name] = value;
    } else if (typeof value === "function" && /^class\b/.test(Function.prototype.toString.call(value))) {
      for (const owner of [value, value.prototype]) {
        for (const key of Object.getOwnPropertyNames(owner)) {
          const d = Object.getOwnPropertyDescriptor(owner, key);
          if (key !== "constructor" && typeof d.value === "function" && !d.value.ratchetboxGuarded) {
            const g = guard(d.value);
            g.ratchetboxGuarded = true;
            Object.defineProperty(owner, key, { ...d, value: g });
          }
        }
      }
      guarded[name] = value;
    } else if (typeof value === "function") {
      guarded[name] = guard(value);
    } else {
      guarded[name] = value;
    }
  }
  return guarded;
}
