#!/usr/bin/env bash
# Installs dependencies, builds, and starts the main job. Arguments go to it.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j "$(nproc)"
exec build/tools/shopd "$@"
