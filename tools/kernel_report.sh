#!/usr/bin/env bash
# Static kernel report (no GPU): per kernel and architecture, registers, shared memory, stack and
# spill bytes (ptxas -v), block size and theoretical occupancy (the CUDA occupancy calculator's
# rules), and tensor-core (HMMA, HGMMA), TMA (UTMALDG/UTMASTG), mbarrier (SYNCS) and 128-bit memory
# instruction counts from the SASS.
#   tools/kernel_report.sh [--arch sm_80,sm_86,sm_90a] [--out FILE] [--check [REPORT]] [-j N] [kernels/x.cu ...]
#   tools/kernel_report.sh --out docs/kernels.md          regenerate the committed report
#   tools/kernel_report.sh --check docs/kernels.md        what ctest kernel_report runs: fails when a
#       GEMM/attention kernel has no HMMA, the Hopper GEMM (sm_90a) has no HGMMA, UTMALDG (TMA load) or
#       SYNCS (mbarrier), any kernel spills or lacks a launch configuration, or on a
#       regression against the committed report (see --help)
#   tools/kernel_report.sh --self-test                    the checker on synthetic regressions
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="$root/.venv/bin/python"
[ -x "$py" ] || py=python3
exec "$py" "$root/tools/kernel_report.py" "$@"
