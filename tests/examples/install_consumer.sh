#!/usr/bin/env bash
# The installed package as a user meets it:
#   install_consumer.sh BUILD_DIR SOURCE_DIR WORK_DIR
# 1. `cmake --install` into WORK_DIR/prefix, and the files it must hold;
# 2. the installed shopd finds its catalog in the prefix (no build-time
#    path), serves, and a client built against the prefix reaches it;
# 3. examples/cpp-consumer, configured in a fresh build dir with only
#    CMAKE_PREFIX_PATH, builds and its doctest test (shop::testkit) passes.
set -euo pipefail
build=$1
source=$2
work=$3
prefix=$work/prefix
rm -rf "$work"
mkdir -p "$work"

cmake --install "$build" --prefix "$prefix" >"$work/install.log"
for f in bin/shopd bin/shopctl bin/shop-dashboard bin/shop-bench bin/shop-echo \
  include/shop/bus/client.h include/shop/core/domain.h include/shop/schemas/shop.capnp.h \
  include/shop/testkit/embedded_server.h include/shop/testkit/event_probe.h \
  include/shop/relay/relay.h include/shop/relay/config.h bin/shop-relay \
  lib/cmake/shop/shopConfig.cmake lib/cmake/shop/shopTargets.cmake \
  lib/cmake/shop/shopRelayTargets.cmake \
  share/shop/shop.capnp share/shop/catalog/default.json; do
  [ -e "$prefix/$f" ] || { echo "install_consumer: $f is not installed" >&2; exit 1; }
done
if grep -qaF "$source/catalog" "$prefix/bin/shopd"; then
  echo "install_consumer: the installed shopd holds the source tree's catalog path" >&2
  exit 1
fi

cmake -S "$source/examples/cpp-consumer" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_TYPE=Release >"$work/configure.log"
cmake --build "$work/build" -j2 >"$work/build.log" || { cat "$work/build.log"; exit 1; }
(cd "$work/build" && ctest --output-on-failure)

# The installed shopd on ephemeral ports; its log says where it serves and
# which catalog it loaded. Reads block on the log's lines: no sleeps.
exec 3< <(exec "$prefix/bin/shopd" --commands 'tcp://127.0.0.1:*' --events 'tcp://127.0.0.1:*' 2>&1)
shopd_pid=$!
# Whatever fails below, the installed shopd does not outlive the test.
trap 'kill "$shopd_pid" 2>/dev/null || true' EXIT
catalog=""
commands=""
while IFS= read -r line <&3; do
  echo "shopd: $line"
  [[ $line =~ catalog\ ([^ ]+):\ ([0-9]+)\ products ]] && catalog=${BASH_REMATCH[1]}
  if [[ $line =~ serving\ commands\ on\ ([^ ,]+), ]]; then
    commands=${BASH_REMATCH[1]}
    break
  fi
done
if [ "$catalog" != "$prefix/share/shop/catalog/default.json" ]; then
  echo "install_consumer: the installed shopd loaded '$catalog', not the prefix's catalog" >&2
  exit 1
fi
"$work/build/shop_hello" "$commands"
"$prefix/bin/shopctl" --endpoint "$commands" get nobody >/dev/null 2>&1 && exit 1
"$prefix/bin/shopctl" --endpoint "$commands" buy nobody apple >/dev/null 2>&1 || [ $? -eq 1 ]
kill -TERM "$shopd_pid"
while IFS= read -r line <&3; do echo "shopd: $line"; done
status=0
wait "$shopd_pid" || status=$?
if [ "$status" -ne 0 ]; then
  echo "install_consumer: the installed shopd exited $status on SIGTERM" >&2
  exit 1
fi
echo "install_consumer: ok"
