#!/usr/bin/env bash
# Installs what shop needs to build and test on Debian 12. Idempotent: packages
# already present are left alone, so a second run costs one dpkg query.
set -euo pipefail

packages=(
  build-essential cmake pkg-config
  libzmq3-dev cppzmq-dev
  capnproto libcapnp-dev
  doctest-dev libconcurrentqueue-dev
  libcpp-httplib-dev nlohmann-json3-dev libcli11-dev
  libisal-dev
  chromium
  python3 python3-zmq
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

# Node and npm drive the browser test; the machine usually has them already.
command -v npm >/dev/null 2>&1 || missing+=(nodejs npm)

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all ${#packages[@]} packages present"
else
  echo "install-deps: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The browser test's driver, pinned by its package-lock.json.
browser="$(dirname "$0")/../tests/tools/browser"
if [ ! -d "$browser/node_modules/playwright-core" ]; then
  echo "install-deps: npm ci in tests/tools/browser"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
fi

# The Node example's zeromq package, pinned by its package-lock.json. It
# ships prebuilt binaries; where it cannot install, its test is skipped
# and everything else still runs.
node_example="$(dirname "$0")/../examples/node"
if [ ! -d "$node_example/node_modules/zeromq" ]; then
  echo "install-deps: npm ci in examples/node"
  (cd "$node_example" && npm ci --no-audit --no-fund --loglevel=error) ||
    echo "install-deps: the zeromq npm package did not install; the Node example's test will be skipped"
fi
