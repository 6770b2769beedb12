#!/usr/bin/env bash
# Installs dependencies, builds, and runs every test.
#   scripts/test.sh                    # normal build in build/
#   scripts/test.sh --sanitize address # ASan+UBSan build in build-address/
#   scripts/test.sh --sanitize thread  # TSan build in build-thread/
#   scripts/test.sh --debug ...        # Debug build (no optimizer) in build[-SAN]-debug/
# Set SHOP_WERROR=ON to treat warnings as errors (CI does).
set -euo pipefail
cd "$(dirname "$0")/.."

sanitize=""
build_type="RelWithDebInfo"
while [ $# -gt 0 ]; do
  case "$1" in
    --sanitize) sanitize="${2:?--sanitize needs address or thread}"; shift 2 ;;
    --debug) build_type="Debug"; shift ;;
    -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done

scripts/install-deps.sh
dir="build${sanitize:+-$sanitize}"
[ "$build_type" = Debug ] && dir="$dir-debug"
cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE="$build_type" \
  -DSHOP_SANITIZE="$sanitize" -DSHOP_WERROR="${SHOP_WERROR:-OFF}" >/dev/null
cmake --build "$dir" -j "$(nproc)"

export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1:suppressions=$PWD/tests/tsan.supp"
ctest --test-dir "$dir" --output-on-failure -j "$(nproc)"
