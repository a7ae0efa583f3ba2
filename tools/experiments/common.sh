# Sourced by the experiment scripts: paths, the shared command line and its checks.
#   experiment_args NAME DEFAULT_SEEDS "$@"   sets out, seeds, device, smoke (exits 2 on a bad argument)
# Environment: OURO_BIN (default build/ouro), OURO_PYTHON (default .venv/bin/python).
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
ouro="${OURO_BIN:-$root/build/ouro}"
py="${OURO_PYTHON:-$root/.venv/bin/python}"

experiment_args() {
  local name="$1"
  out="$root/runs/$name"
  seeds="$2"
  device="cpu"
  smoke=0
  shift 2
  while [ $# -gt 0 ]; do
    case "$1" in
      --smoke) smoke=1 ;;
      --out) out="$2"; shift ;;
      --seeds) seeds="$2"; shift ;;
      --device) device="$2"; shift ;;
      *) echo "$name: unknown argument '$1' (see the header of tools/experiments/$name.sh)" >&2; exit 2 ;;
    esac
    shift
  done
  [ -x "$ouro" ] || { echo "$name: $ouro not found: build first (tools/build.sh) or set OURO_BIN" >&2; exit 1; }
  mkdir -p "$out/data"
}

# The newest checkpoint directory of a run.
newest_checkpoint() { ls -d "$1"/checkpoints/step_* | sort | tail -1; }
