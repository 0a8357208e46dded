#!/usr/bin/env bash
# Builds every fuzz target and runs each for a short, bounded time, failing on any crash.
#
#   fuzz/run.sh                      # every target, 30 s each (CI: FUZZ_SECONDS=2)
#   FUZZ_SECONDS=600 fuzz/run.sh conversation attachment
#
# Needs the nightly toolchain (`cargo +nightly`); installs cargo-fuzz if it is missing.
# Each run starts from the committed corpus (fuzz/corpus/<target>) and crash reproducers
# (fuzz/artifacts/<target>), which it only reads: new inputs go to a temporary directory.
# A crash fails the script; the input is printed in base64 so it can be recovered from a CI
# log (`base64 -d > fuzz/artifacts/<target>/crash-...`).
#
# FUZZ_SECONDS    seconds per target (default 30)
# FUZZ_SANITIZER  none (default: the crate forbids unsafe code, and without ASan the targets
#                 run several times faster) or address, memory, thread, leak
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-30}
flags=(--debug-assertions --sanitizer "${FUZZ_SANITIZER:-none}")

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
# FUZZ_TOOLS_ONLY=1: install what is missing and stop (.ci/run does it in the background).
if [ "${FUZZ_TOOLS_ONLY:-0}" = 1 ]; then
  exit 0
fi

start=$SECONDS
cargo +nightly fuzz build "${flags[@]}"
echo "built every fuzz target in $((SECONDS - start)) s"

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed=()
for target in "${targets[@]}"; do
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  inputs=("$work/$target/corpus" "corpus/$target")
  [ -d "artifacts/$target" ] && inputs+=("artifacts/$target")
  options=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1
           -artifact_prefix="$work/$target/artifacts/")
  case "$target" in
    conversation | attachment | session_decrypt | device) ;;
    *) options+=(-dict=dict/wire.dict) ;;
  esac
  echo "==== fuzz $target for ${seconds} s"
  if cargo +nightly fuzz run "${flags[@]}" "$target" "${inputs[@]}" -- "${options[@]}" \
      > "$work/$target/log" 2>&1; then
    grep -E '^(#[0-9]+[[:space:]]+DONE|stat::number_of_executed_units|stat::peak_rss_mb)' \
      "$work/$target/log" || true
  else
    failed+=("$target")
    tail -n 60 "$work/$target/log"
    for crash in "$work/$target/artifacts"/*; do
      [ -e "$crash" ] || continue
      echo "---- $target reproducer $(basename "$crash") (base64):"
      base64 -w 0 "$crash"
      echo
    done
  fi
done

echo "fuzzed ${#targets[@]} targets in $((SECONDS - start)) s"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "FAILED: ${failed[*]}" >&2
  exit 1
fi
