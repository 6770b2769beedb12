#!/usr/bin/env bash
# Builds the libFuzzer targets (clang-14, ASan+UBSan) in build-fuzz/ and runs
# each for a while over a temporary copy of its corpus (fuzz/corpus/NAME), so
# the repository is never modified. Exits non-zero on any crash, leak,
# timeout, out-of-memory or sanitizer report; what triggered it is copied to
# build-fuzz/findings/. See fuzz/README.md.
#
#   scripts/fuzz.sh [--seconds N] [TARGET...]   # TARGET: command, catalog, journal, snapshot (default: all)
#
#   --seconds N   run each target for N seconds (default 60)
# Set SHOP_WERROR=ON to treat warnings as errors (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; }

seconds=60
targets=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds)
      seconds="${2:?--seconds needs a number}"
      shift 2
      ;;
    -h | --help)
      usage
      exit 0
      ;;
    -*)
      echo "fuzz.sh: unknown option '$1' (see --help)" >&2
      exit 2
      ;;
    *)
      targets+=("$1")
      shift
      ;;
  esac
done
if ! [[ "$seconds" =~ ^[1-9][0-9]*$ ]]; then
  echo "fuzz.sh: --seconds wants a positive whole number, not '$seconds'" >&2
  exit 2
fi
[ ${#targets[@]} -gt 0 ] || targets=(command catalog journal snapshot)
for t in "${targets[@]}"; do
  if [ ! -f "fuzz/fuzz_$t.cpp" ] || [ ! -d "fuzz/corpus/$t" ]; then
    echo "fuzz.sh: no target '$t' (have: command, catalog, journal, snapshot)" >&2
    exit 2
  fi
done

start=$(date +%s)
scripts/install-deps.sh
missing=()
for p in clang-14 libclang-rt-14-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "fuzz.sh: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

dir=build-fuzz
CC=clang-14 CXX=clang++-14 cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DSHOP_FUZZ=ON -DSHOP_WERROR="${SHOP_WERROR:-OFF}" >/dev/null
cmake --build "$dir" -j "$(nproc)" --target "${targets[@]/#/fuzz_}"
built=$(date +%s)

export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:symbolize=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
status=0
for t in "${targets[@]}"; do
  rm -rf "$dir/findings/$t"
  mkdir -p "$work/$t/corpus" "$work/$t/artifacts"
  cp -R "fuzz/corpus/$t/." "$work/$t/corpus/"
  dict=()
  [ -f "fuzz/$t.dict" ] && dict=("-dict=fuzz/$t.dict")
  echo "=== fuzz_$t: ${seconds}s over $(ls "$work/$t/corpus" | wc -l) corpus files ==="
  rc=0
  "$dir/fuzz/fuzz_$t" "$work/$t/corpus" "${dict[@]}" \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -detect_leaks=1 \
    -print_final_stats=1 -artifact_prefix="$work/$t/artifacts/" \
    >"$work/$t/log" 2>&1 || rc=$?
  grep -E '^(stat::|Done )' "$work/$t/log" || true
  if [ "$rc" -ne 0 ] || [ -n "$(ls -A "$work/$t/artifacts")" ] ||
    grep -qE 'ERROR: (Address|Leak|UndefinedBehavior)Sanitizer|runtime error:' "$work/$t/log"; then
    status=1
    mkdir -p "$dir/findings/$t"
    cp "$work/$t/log" "$dir/findings/$t/log"
    cp -R "$work/$t/artifacts/." "$dir/findings/$t/"
    echo "fuzz_$t: FAILED (exit $rc); log and inputs in $dir/findings/$t/:" >&2
    ls "$dir/findings/$t" >&2
    grep -vE '^(#[0-9]|INFO:|")' "$work/$t/log" | tail -n 60 >&2
  else
    echo "fuzz_$t: ok"
  fi
done

end=$(date +%s)
echo "fuzz.sh: build $((built - start))s, fuzzing $((end - built))s, total $((end - start))s"
exit "$status"
