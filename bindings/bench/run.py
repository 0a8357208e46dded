"""The bindings benchmark: what encrypting and decrypting a message costs through Python
(UniFFI) and Node (WebAssembly) next to the same calls from Rust, measured in one run.

    python3 bindings/bench/run.py [ROUNDS]        (from the repository root; default 5)

Builds, in release mode: the UniFFI library and its Python module, the native example
(`bindings/uniffi/examples/bench_native.rs`), and the WebAssembly module (twice: as shipped,
for its size, and with the `bench` feature's in-module loop). Then, for each round and
message size (100 B and 1 MiB), runs one process per column, in the same order every round:

- native, SQLite: bench_native.rs, devices in SQLite files (as the UniFFI binding keeps them);
- Python: bench.py through UniFFI, the same files and calls;
- native, memory: bench_native.rs, devices in memory (as the WebAssembly binding keeps them);
- wasm, inside: the same loop inside the WebAssembly module (benchInsideModule), no crossing;
- Node: bench.mjs through the WebAssembly binding, one crossing per call.

Each process sets up a session, warms up, and prints the median time of `send` (encrypt,
commit the new state, return the message) and of `receive` (decrypt, commit, return the
body). The SQLite files are on tmpfs (/dev/shm) when it exists, so that a disk's flush time
does not hide the bindings' cost (on a disk each commit waits for the flush: see
docs/BENCHMARKS.md, "Persistence through the device layer"). The table gives medians over
the rounds of each column and of the per-round differences and ratios.
"""

import gzip
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
BINDINGS = os.path.dirname(HERE)
ROOT = os.path.dirname(BINDINGS)
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
OUT = os.path.join(TARGET, "bindings-bench")
SIZES = [(100, "100 B", 2000), (1 << 20, "1 MiB", 40)]


def run(cmd, **kw):
    print("+", " ".join(cmd), file=sys.stderr)
    subprocess.run(cmd, check=True, **kw)


def build():
    env = dict(os.environ, CARGO_TARGET_DIR=TARGET)
    cargo = ["cargo", "build", "-q", "--release", "--manifest-path", os.path.join(BINDINGS, "Cargo.toml")]
    run(cargo + ["-p", "ratchetbox-uniffi", "--features", "cli", "--bins", "--lib", "--example", "bench_native"], env=env)
    lib = os.path.join(TARGET, "release", "libratchetbox_uniffi.so" if sys.platform != "darwin" else "libratchetbox_uniffi.dylib")
    shutil.rmtree(OUT, ignore_errors=True)
    python = os.path.join(OUT, "python")
    run([os.path.join(TARGET, "release", "uniffi-bindgen"), "generate", lib, "--language", "python", "--out-dir", python, "--no-format"])
    shutil.copy(lib, python)
    wasm = os.path.join(TARGET, "wasm32-unknown-unknown", "release", "ratchetbox_wasm.wasm")
    sizes = {}
    for feature, directory in [(None, "wasm-shipped"), ("bench", "wasm-bench")]:
        extra = ["--features", feature] if feature else []
        run(cargo + ["-p", "ratchetbox-wasm", "--target", "wasm32-unknown-unknown"] + extra, env=env)
        pkg = os.path.join(OUT, directory)
        # As shipped: without the function-name section the workspace's `debug = 1` adds.
        strip = ["--remove-name-section", "--remove-producers-section"] if feature is None else []
        run(["wasm-bindgen", "--target", "nodejs", "--experimental-reset-state-function", "--out-dir", pkg] + strip + [wasm])
        shutil.copy(os.path.join(BINDINGS, "wasm", "js", "guard.mjs"), pkg)
        module = open(os.path.join(pkg, "ratchetbox_wasm_bg.wasm"), "rb").read()
        sizes[directory] = (len(module), len(gzip.compress(module, 9)))
    return python, os.path.join(OUT, "wasm-bench"), sizes


def measure(cmd, env=None):
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    python, wasm_pkg, sizes = build()
    native = os.path.join(TARGET, "release", "examples", "bench_native")
    tmp_root = "/dev/shm" if os.path.isdir("/dev/shm") else None
    py_env = dict(os.environ, PYTHONPATH=python)
    load_before = os.getloadavg()[0]
    columns = ["native_sqlite", "python", "native_memory", "wasm_inside", "node"]
    results = {label: {c: [] for c in columns} for _, label, _ in SIZES}
    for r in range(rounds):
        for size, label, iterations in SIZES:
            for column in columns:
                with tempfile.TemporaryDirectory(dir=tmp_root) as d:
                    if column == "native_sqlite":
                        m = measure([native, "sqlite", d, str(size), str(iterations)])
                    elif column == "python":
                        m = measure([sys.executable, os.path.join(HERE, "bench.py"), d, str(size), str(iterations)], py_env)
                    elif column == "native_memory":
                        m = measure([native, "memory", "-", str(size), str(iterations)])
                    elif column == "wasm_inside":
                        m = measure(["node", os.path.join(HERE, "bench.mjs"), wasm_pkg, str(size), str(iterations), "inside"])
                    else:
                        m = measure(["node", os.path.join(HERE, "bench.mjs"), wasm_pkg, str(size), str(iterations)])
                results[label][column].append(m)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr)
    load_after = os.getloadavg()[0]

    def us(ns):
        return f"{ns / 1000:.2f}" if abs(ns) < 10_000 else f"{ns / 1000:.1f}"

    print(f"Bindings benchmark, {rounds} rounds, SQLite files on {tmp_root or 'the default temporary directory'}, "
          f"load average {load_before:.2f} before and {load_after:.2f} after.\n")
    print("| message | call | native Rust, SQLite (µs) | Python (µs) | Python adds (µs) | Python / native "
          "| native Rust, memory (µs) | wasm, loop inside the module (µs) | Node (µs) | Node adds to the loop inside (µs) | Node / native |")
    print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for _, label, _ in SIZES:
        res = results[label]
        calls = [("send (encrypt)", "send_ns"), ("receive (decrypt)", "receive_ns")]
        if label == SIZES[0][1]:
            calls.append(("`generation()`: no argument, a number back", "call_ns"))
        for call, key in calls:
            col = {c: [m[key] for m in res[c]] for c in columns}
            med = {c: statistics.median(v) for c, v in col.items()}
            py_add = statistics.median([p - n for p, n in zip(col["python"], col["native_sqlite"])])
            py_ratio = statistics.median([p / n for p, n in zip(col["python"], col["native_sqlite"])])
            if key == "call_ns":
                # Nothing to divide by (the native call takes nanoseconds) and no loop inside
                # the module: what the binding adds is the whole call.
                node_add = statistics.median([j - n for j, n in zip(col["node"], col["native_memory"])])
                print(f"| {label} | {call} | {us(med['native_sqlite'])} | {us(med['python'])} | {us(py_add)} | - "
                      f"| {us(med['native_memory'])} | - | {us(med['node'])} | {us(node_add)} | - |")
                continue
            node_add = statistics.median([j - w for j, w in zip(col["node"], col["wasm_inside"])])
            node_ratio = statistics.median([j / n for j, n in zip(col["node"], col["native_memory"])])
            print(f"| {label} | {call} | {us(med['native_sqlite'])} | {us(med['python'])} | {us(py_add)} | {py_ratio:.2f}x "
                  f"| {us(med['native_memory'])} | {us(med['wasm_inside'])} | {us(med['node'])} | {us(node_add)} | {node_ratio:.2f}x |")
    shipped, shipped_gz = sizes["wasm-shipped"]
    print(f"\nRelease WebAssembly module as shipped (ratchetbox_wasm_bg.wasm from wasm-bindgen with "
          f"--remove-name-section --remove-producers-section, no wasm-opt): "
          f"{shipped:,} bytes, {shipped_gz:,} gzipped (gzip -9).")


main()
