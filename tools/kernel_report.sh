#!/usr/bin/env bash
# Static kernel report (no GPU): per kernel and architecture, registers, shared memory, stack and
# spill bytes (ptxas -v), and tensor-core / 128-bit memory instruction counts from the SASS.
#   tools/kernel_report.sh [--check] [--arch sm_80,sm_90a] [--out FILE] [kernels/x.cu ...]
# --check fails when a GEMM or attention kernel has no HMMA, or any kernel spills (ctest runs it).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$root/.venv/bin/python"
[ -x "$py" ] || py=python3
exec "$py" "$root/tools/kernel_report.py" "$@"
