#!/usr/bin/env bash
# Builds and tests the bindings (bindings/README.md): installs what is missing (the wasm32
# target, wasm-bindgen-cli at the exact version of the wasm-bindgen crate in
# bindings/Cargo.lock), checks formatting and clippy, builds the UniFFI library and the
# WebAssembly module, generates the Kotlin, Swift and Python sources (Kotlin and Swift are
# generated only, not compiled), builds the core without std for wasm32, and runs the Rust
# unit tests, the Python suite, the Node suites (the second on a build whose extra export
# panics), the README snippets and the Python <-> Node interop test. Prints its duration.
#
# Needs: Rust stable with rustup, Python 3, Node 20. The bindings are a cargo workspace of
# their own; the build uses the root's target/ (CARGO_TARGET_DIR) so that the host build
# reuses what the root's build already compiled.
set -euo pipefail

start=$(date +%s)
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
out="$CARGO_TARGET_DIR/bindings"
step() { echo "== bindings/run.sh: $1 (at $(($(date +%s) - start)) s)"; }

wbg_version=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' "$here/Cargo.lock")

step "tools"
if ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
    rustup target add wasm32-unknown-unknown
fi
if [ "$(wasm-bindgen --version 2>/dev/null || true)" != "wasm-bindgen $wbg_version" ]; then
    t=$(date +%s)
    # Only the `wasm-bindgen` binary, without the default TLS feature (which only the test
    # runner's webdriver downloads use), unoptimized (`--debug`): it processes one module
    # here, and this builds in about a third of the CPU time of a full release install.
    # Not --locked: wasm-bindgen-cli 0.2.130's lockfile pins a webpki-roots release that the
    # registry no longer serves.
    # In a directory of its own, not $CARGO_TARGET_DIR: .ci/run installs it while other
    # builds hold that directory's lock.
    env -u CARGO_TARGET_DIR cargo install wasm-bindgen-cli --version "$wbg_version" \
        --no-default-features --bin wasm-bindgen --debug
    echo "installed wasm-bindgen-cli $wbg_version in $(($(date +%s) - t)) s"
fi

# BINDINGS_TOOLS_ONLY=1: install what is missing and stop (.ci/run does it in the
# background while its first steps build).
if [ "${BINDINGS_TOOLS_ONLY:-0}" = 1 ]; then
    exit 0
fi

cd "$here"
case "$(uname -s)" in
    Darwin) lib="$CARGO_TARGET_DIR/debug/libratchetbox_uniffi.dylib" ;;
    *) lib="$CARGO_TARGET_DIR/debug/libratchetbox_uniffi.so" ;;
esac

# BINDINGS_CLIPPY=0 skips clippy (CI does, to stay within its time: clippy type-checks every
# dependency of both crates a second time, about 110 s on 2 cores). Run it when you change
# the bindings.
step "fmt, clippy"
cargo fmt --all --check
if [ "${BINDINGS_CLIPPY:-1}" != 0 ]; then
    cargo clippy -p ratchetbox-bindings-common -p ratchetbox-uniffi --all-targets --features ratchetbox-uniffi/cli -- -D warnings
    cargo clippy -p ratchetbox-wasm --target wasm32-unknown-unknown -- -D warnings
fi

step "build: UniFFI library and generator, WebAssembly module"
cargo build -p ratchetbox-uniffi --features cli
cargo build -p ratchetbox-wasm --target wasm32-unknown-unknown

step "generate Python, Kotlin, Swift sources; JavaScript and TypeScript for Node"
rm -rf "$out"
for language in python kotlin swift; do
    "$CARGO_TARGET_DIR/debug/uniffi-bindgen" generate "$lib" --language "$language" \
        --out-dir "$out/$language" --no-format
done
cp "$lib" "$out/python/"
# --experimental-reset-state-function: js/guard.mjs replaces the instance after a panic.
wasm-bindgen --target nodejs --experimental-reset-state-function --out-dir "$out/wasm-node" \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/debug/ratchetbox_wasm.wasm"
cp "$here/wasm/js/guard.mjs" "$out/wasm-node/"
export PYTHONPATH="$out/python"
export RATCHETBOX_WASM_PKG="$out/wasm-node"

step "the core without std for wasm32-unknown-unknown"
# (Without warnings: code only the std layers use is gated, not left dead.)
nostd_log=$(cargo build -q --manifest-path "$root/Cargo.toml" -p ratchetbox --target wasm32-unknown-unknown --no-default-features 2>&1) \
    || { echo "$nostd_log"; exit 1; }
if grep -q '^warning' <<<"$nostd_log"; then
    echo "$nostd_log"
    echo "the no_std build has warnings" >&2
    exit 1
fi

step "Rust unit tests of the bindings"
cargo test -q -p ratchetbox-bindings-common -p ratchetbox-uniffi

step "Python suite"
python3 -m unittest discover -s "$here/uniffi/tests"

step "Node suite"
node --test "$here/wasm/tests/"

step "Node: a panic becomes a typed error (the module built with its panicForTest export)"
cargo build -q -p ratchetbox-wasm --target wasm32-unknown-unknown --features panic-test
wasm-bindgen --target nodejs --experimental-reset-state-function --out-dir "$out/wasm-node-panic" \
    "$CARGO_TARGET_DIR/wasm32-unknown-unknown/debug/ratchetbox_wasm.wasm"
cp "$here/wasm/js/guard.mjs" "$out/wasm-node-panic/"
RATCHETBOX_WASM_PANIC_PKG="$out/wasm-node-panic" node --test "$here/wasm/panic-tests/"

step "README snippets (run, and included verbatim in README.md)"
python3 "$here/examples/check_readme.py" "$root/README.md" "$here/examples"
[ "$(python3 "$here/examples/quickstart.py")" = "hello Bob" ]
[ "$(node "$here/examples/quickstart.mjs")" = "hello Bob" ]

step "interop: Python -> Node -> Python through files"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
node "$here/interop/interop.mjs" setup "$dir"
python3 "$here/interop/interop.py" send "$dir"
node "$here/interop/interop.mjs" reply "$dir"
python3 "$here/interop/interop.py" check "$dir"

echo "bindings/run.sh: all passed in $(($(date +%s) - start)) s"
