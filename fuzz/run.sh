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
# FUZZ_JOBS       how many targets run at once (default 1; each run uses one core)
# FUZZ_BUILD_ONLY 1: install what is missing, build every target and stop (.ci/run does
#                 it in the background, then runs the targets)
# FUZZ_SANITIZER  none (default: the crate forbids unsafe code, and without ASan the targets
#                 run several times faster) or address, memory, thread, leak
set -euo pipefail
cd "$(dirname "$0")"

seconds=${FUZZ_SECONDS:-30}
flags=(--debug-assertions --sanitizer "${FUZZ_SANITIZER:-none}")

if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  # Unoptimized (`--debug`): cargo-fuzz only starts cargo and the fuzzer, and this builds in
  # a fraction of the CPU time of a release install.
  cargo install cargo-fuzz --locked --debug
fi
start=$SECONDS
cargo +nightly fuzz build "${flags[@]}"
echo "built every fuzz target in $((SECONDS - start)) s"
if [ "${FUZZ_BUILD_ONLY:-0}" = 1 ]; then
  exit 0
fi

if [ "$#" -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo +nightly fuzz list)
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# One target's run, its output in $work/<target>/log and its exit status in
# $work/<target>/status.
run_target() {
  local target=$1
  mkdir -p "$work/$target/corpus" "$work/$target/artifacts"
  local inputs=("$work/$target/corpus" "corpus/$target")
  [ -d "artifacts/$target" ] && inputs+=("artifacts/$target")
  local options=(-max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048
                 -print_final_stats=1 -artifact_prefix="$work/$target/artifacts/")
  case "$target" in
    conversation | attachment | session_decrypt | device) ;;
    *) options+=(-dict=dict/wire.dict) ;;
  esac
  local status=0
  cargo +nightly fuzz run "${flags[@]}" "$target" "${inputs[@]}" -- "${options[@]}" \
    > "$work/$target/log" 2>&1 || status=$?
  echo "$status" > "$work/$target/status"
}

jobs=${FUZZ_JOBS:-1}
running=0
for target in "${targets[@]}"; do
  if [ "$running" -ge "$jobs" ]; then
    wait -n
    running=$((running - 1))
  fi
  run_target "$target" &
  running=$((running + 1))
done
wait

failed=()
for target in "${targets[@]}"; do
  echo "==== fuzz $target for ${seconds} s"
  if [ "$(cat "$work/$target/status" 2>/dev/null)" = 0 ]; then
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
