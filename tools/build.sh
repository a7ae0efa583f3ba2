#!/usr/bin/env bash
# Configures and builds ouro (Release by default) into build/ (OURO_BUILD_DIR). Extra args go to
# cmake. OURO_BUILD_TARGETS (e.g. "ouro") builds only those targets; the default is everything,
# tests included.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${OURO_BUILD_DIR:-$root/build}"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE="${OURO_BUILD_TYPE:-Release}" "$@" >/dev/null
targets=()
for t in ${OURO_BUILD_TARGETS:-}; do targets+=(--target "$t"); done
cmake --build "$build" -j"$(nproc)" "${targets[@]}"
