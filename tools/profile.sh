#!/usr/bin/env bash
# Profiles a few training steps of `ouro train` with Nsight Systems (nsys: the timeline, with our
# NVTX ranges) or Nsight Compute (ncu: per-kernel counters). The trainer brackets steps [A, B)
# with cudaProfilerStart/Stop (`ouro train --profile-steps A:B`), so the capture skips start-up,
# data loading and the first steps' warm-up. See docs/profiling.md for reading the reports.
#
#   tools/profile.sh nsys|ncu CONFIG [options] [-- ouro train args...]
#
# Options (anything else is passed to `ouro train`, e.g. --device cuda --set train.batch_size=8):
#   --steps A:B            0-based steps to capture, A included, B not (default 10:13)
#   --out DIR              reports go here; the training run's out_dir is DIR/run
#                          (default runs/profile/<config>-<tool>-<UTC time>)
#   --bin PATH             the ouro binary (default $OURO_BIN; else build/ouro of the checkout this
#                          script is in, when built; else `command -v ouro`, as in the Docker image)
#   --ncu-kernels REGEX    ncu: kernels to profile (default gemm_tc|attention_)
#   --ncu-set NAME         ncu: section set (default full)
#   --ncu-launch-count N   ncu: profile at most N kernel launches (default 40)
#   --dry-run              print the command instead of running it (no profiler or GPU needed)
#
# The training run stops after step B (--stop-at B): it checkpoints into DIR/run, never into the
# config's own run directory.
set -euo pipefail

die() { echo "profile.sh: $*" >&2; exit 2; }
usage() { awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-2}"; }

root=$(cd "$(dirname "$0")/.." && pwd)
[[ $# -ge 1 && ( $1 == -h || $1 == --help ) ]] && usage 0
[[ $# -ge 2 ]] || usage
tool=$1 config=$2
shift 2
[[ $tool == nsys || $tool == ncu ]] || die "unknown profiler '$tool' (nsys or ncu)"
[[ -f $config ]] || die "config $config not found"

steps=10:13 out="" bin=${OURO_BIN:-} dry=0
kernels='gemm_tc|attention_' ncu_set=full launch_count=40
train_args=()
while [[ $# -gt 0 ]]; do
  case $1 in
    --steps) [[ $# -ge 2 ]] || die "--steps needs A:B"; steps=$2; shift 2 ;;
    --out) [[ $# -ge 2 ]] || die "--out needs a directory"; out=$2; shift 2 ;;
    --bin) [[ $# -ge 2 ]] || die "--bin needs a path"; bin=$2; shift 2 ;;
    --ncu-kernels) [[ $# -ge 2 ]] || die "--ncu-kernels needs a regex"; kernels=$2; shift 2 ;;
    --ncu-set) [[ $# -ge 2 ]] || die "--ncu-set needs a name"; ncu_set=$2; shift 2 ;;
    --ncu-launch-count) [[ $# -ge 2 ]] || die "--ncu-launch-count needs a number"; launch_count=$2; shift 2 ;;
    --dry-run) dry=1; shift ;;
    --) shift; train_args+=("$@"); break ;;
    *) train_args+=("$1"); shift ;;
  esac
done

[[ $steps =~ ^([0-9]+):([0-9]+)$ ]] || die "--steps '$steps': expected A:B, two step numbers"
first=${BASH_REMATCH[1]} last=${BASH_REMATCH[2]}
(( 10#$last > 10#$first )) || die "--steps '$steps': B must be greater than A"
[[ $launch_count =~ ^[1-9][0-9]*$ ]] || die "--ncu-launch-count '$launch_count': expected a positive number"
# The binary: --bin / $OURO_BIN; a source checkout's build/ouro; else the ouro on PATH (the image
# installs this script as /opt/ouro/bin/ouro-profile, next to /opt/ouro/bin/ouro).
if [[ -z $bin ]]; then
  if [[ -x $root/build/ouro ]]; then
    bin=$root/build/ouro
  else
    bin=$(command -v ouro) || die "no ouro binary: not built ($root/build/ouro) and none on PATH (pass --bin or set OURO_BIN)"
  fi
fi
if [[ -z $out ]]; then
  out=runs/profile/$(basename "${config%.*}")-$tool-$(date -u +%Y%m%dT%H%M%SZ)
fi

train=("$bin" train -c "$config" --profile-steps "$first:$last" --stop-at "$last"
       --set "run.out_dir=$out/run" "${train_args[@]}")
case $tool in
  nsys)
    # cudaProfilerApi: capture only between the trainer's cudaProfilerStart/Stop; osrt shows the
    # host threads' blocking calls (data loading, MPI) next to the GPU timeline.
    cmd=(nsys profile --capture-range=cudaProfilerApi --capture-range-end=stop
         --trace=cuda,nvtx,osrt --sample=none --force-overwrite=true
         --output "$out/profile" "${train[@]}") ;;
  ncu)
    # --clock-control none: the GPU's own clocks, as in training (ncu locks base clocks by
    # default, which understates a boosting GPU). --profile-from-start off: only inside the
    # trainer's profiler range.
    cmd=(ncu --clock-control none --profile-from-start off --kernel-name "regex:$kernels"
         --launch-count "$launch_count" --set "$ncu_set" --force-overwrite
         --export "$out/profile" "${train[@]}") ;;
esac

# One shell word: as is when it has no special characters, else in single quotes.
shell_word() {
  if [[ $1 =~ ^[A-Za-z0-9_./:=,+@%-]+$ ]]; then printf '%s' "$1"
  else printf "'%s'" "${1//\'/\'\\\'\'}"; fi
}
if (( dry )); then
  for word in "${cmd[@]}"; do shell_word "$word"; printf ' '; done
  echo
  exit 0
fi
command -v "$tool" >/dev/null ||
  die "$tool is not on PATH (Nsight $([[ $tool == nsys ]] && echo Systems || echo Compute): install it or add its bin/ to PATH)"
[[ -x $bin ]] || die "$bin is not an executable ouro (build it, or pass --bin / set OURO_BIN)"
mkdir -p "$out"
echo "profile.sh: $tool, steps [$first, $last), reports in $out" >&2
"${cmd[@]}"
echo "profile.sh: done: $out/profile.$([[ $tool == nsys ]] && echo nsys-rep || echo ncu-rep) (docs/profiling.md)" >&2
