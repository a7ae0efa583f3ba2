#!/usr/bin/env bash
# Sets up, builds and runs every test through ctest; then builds the SIMT emulator, its tests and
# examples under ASan+UBSan (build-asan) and TSan (build-tsan) and runs those too (emulator-only
# builds, to keep CI short). Extra args go to the main ctest run; OURO_TEST_SANITIZERS=0 skips
# the sanitizer builds.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# ctest runs nproc tests at once, each with OpenMP threads on the same cores: threads that spin
# while waiting for the next parallel region take the cores the other tests need (a small model's
# 60 steps: 185 s with spinning, 4 s with sleeping, on 2 loaded cores; docs/experiments.md).
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
"$root/tools/setup.sh"
"$root/tools/build.sh"
(cd "${OURO_BUILD_DIR:-$root/build}" && ctest --output-on-failure -j"$(nproc)" "$@")

if [ "${OURO_TEST_SANITIZERS:-1}" != 0 ]; then
  for san in asan tsan; do
    dir="$root/build-$san"
    mode=$([ "$san" = asan ] && echo address || echo thread)
    cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOURO_SANITIZE="$mode" \
      -DOURO_SIMT_ONLY=ON -DOURO_CUDA=OFF >/dev/null
    cmake --build "$dir" -j"$(nproc)"
    (cd "$dir" && ctest --output-on-failure -j"$(nproc)")
  done
fi
