# Sourced by the experiment scripts: paths, the shared command line and its checks, and a small
# job pool that runs independent runs (seeds, arms) side by side.
#   experiment_args NAME DEFAULT_SEEDS "$@"   sets out, seeds, device, smoke, jobs (exits 2 on a bad argument)
#   spawn NAME CMD...   runs CMD in the background once fewer than $jobs run; NAME labels its failure
#   wait_jobs           waits for every spawned job; exits 1 naming the jobs that failed
#   job_threads N       the run.threads each of N concurrent jobs gets (cores / min(N, jobs), >= 1)
# Environment: OURO_BIN (default build/ouro), OURO_PYTHON (default .venv/bin/python).
#
# Why a pool: the CPU-sized models are small enough that one process cannot keep two cores busy
# (thread hand-offs on (32 x 64) x 128 matrices cost as much as the work), so two single-threaded
# runs side by side finish in about the time of one two-threaded run. On a GPU, jobs = 1.
# OpenMP threads that wait for work sleep instead of spinning (unless the caller chose): at these
# widths an op lasts microseconds, and on a loaded machine a spinning thread burns the time slice
# its partner needs. Measured 2026-12-03 under load average ~10-15 on 2 cores (docs/experiments.md,
# "CPU threads"): 60 training steps of the E1 model at 2 threads, 184.8 s wall / 47.6 CPU-s
# spinning against 3.8 s / 3.0 CPU-s passive, the same loss to the last bit. libgomp reads the
# variable when it loads, so it must be in the environment before `ouro` starts.
export OMP_WAIT_POLICY="${OMP_WAIT_POLICY:-passive}"
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ouro="${OURO_BIN:-$root/build/ouro}"
py="${OURO_PYTHON:-$root/.venv/bin/python}"

experiment_args() {
  local name="$1"
  out="$root/runs/$name"
  seeds="$2"
  device="cpu"
  smoke=0
  jobs=""
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --smoke) smoke=1 ;;
      --out) out="$2"; shift ;;
      --seeds) seeds="$2"; shift ;;
      --device) device="$2"; shift ;;
      --jobs) jobs="$2"; shift ;;
      *) echo "$name: unknown argument '$1' (see the header of tools/experiments/$name.sh)" >&2; exit 2 ;;
    esac
    shift
  done
  cores=$(nproc)
  if [ -z "$jobs" ]; then
    if [ "$device" = cpu ]; then jobs=$cores; else jobs=1; fi
  fi
  case "$jobs" in ''|*[!0-9]*|0) echo "$name: --jobs must be a positive integer (got '$jobs')" >&2; exit 2 ;; esac
  [ -x "$ouro" ] || { echo "$name: $ouro not found: build first (tools/build.sh) or set OURO_BIN" >&2; exit 1; }
  mkdir -p "$out/data"
  job_failures="$out/.failed_jobs"
  : > "$job_failures"
}

job_threads() {
  local n=$(( $1 < jobs ? $1 : jobs ))
  [ "$n" -lt 1 ] && n=1
  local t=$(( cores / n ))
  echo $(( t < 1 ? 1 : t ))
}

spawn() {
  local name="$1"
  shift
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  ( "$@" || echo "$name" >> "$job_failures" ) &
}

wait_jobs() {
  wait
  if [ -s "$job_failures" ]; then
    echo "failed: $(tr '\n' ' ' < "$job_failures")" >&2
    exit 1
  fi
}

# The newest checkpoint directory of a run.
newest_checkpoint() { ls -d "$1"/checkpoints/step_* | sort | tail -1; }
