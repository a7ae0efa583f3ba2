#!/usr/bin/env bash
# Checks that need an NVIDIA GPU (and, for some, Docker), which CI does not have. Run on a lent GPU
# machine from the repository root: tools/gpu_check.sh. Each check is one function below, in its
# own section; a check whose prerequisites are missing says SKIPPED and why, and does not fail.
# Exit status: 1 when any check failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"

# ==== Docker image (issue 22): build both targets and run them on the GPU ======================
# Builds docker/Dockerfile's default target (runtime) and its profile target, then checks what CI
# can only check statically (tools/check_dockerfile.py):
#  - the default command prints `ouro --version` alone on stdout: no NVIDIA banner (ENTRYPOINT []);
#  - `ouro bench kernels --small --json > file` on the GPU gives JSON that parses;
#  - mpirun -np 2 as uid 1000 starts and finishes with the image's Open MPI settings;
#  - the profile image's ncu, nsys and ouro-profile start;
#  - with data/kjv_bpe_{train,val}.bin present (tools/prepare_kjv.sh): a short training run, then
#    `ouro eval --json > out.json` (JSON that parses), an nsys report via ouro-profile, and an ncu
#    report as root with CAP_SYS_ADMIN (the permission docs/docker.md documents).
# Needs a Docker daemon with the NVIDIA container toolkit, and network access to the base images.
check_docker_image() {
  if ! command -v docker >/dev/null 2>&1 || ! docker info >/dev/null 2>&1; then
    echo "docker image: SKIPPED: no Docker daemon here (docker info fails)"
    return 0
  fi
  if ! nvidia-smi -L >/dev/null 2>&1; then
    echo "docker image: SKIPPED: no NVIDIA GPU (nvidia-smi -L fails)"
    return 0
  fi
  local work status=0
  work="$(mktemp -d)"
  docker_image_checks "$work" || status=1
  rm -rf "$work"
  return "$status"
}

docker_image_checks() {
  local work="$1" image=ouro-gpu-check out fail=0
  note() { echo "docker image: $*"; }
  bad() { echo "docker image: FAIL: $*"; fail=1; }

  docker build -f docker/Dockerfile -t "$image" . || { bad "docker build (runtime) failed"; return 1; }
  docker build -f docker/Dockerfile --target profile -t "$image:profile" . ||
    { bad "docker build --target profile failed"; return 1; }

  out="$(docker run --rm --gpus all "$image")" || bad "docker run $image (ouro --version) failed"
  if [[ "$out" =~ ^ouro\ [^$'\n']*cuda[^$'\n']*$ ]]; then
    note "default command: '$out' (one line, no banner)"
  else
    bad "default command's stdout is not ouro --version alone (a banner?): $out"
  fi

  if docker run --rm --gpus all "$image" ouro bench kernels --small --json >"$work/kernels.json" &&
     python3 -m json.tool "$work/kernels.json" >/dev/null; then
    note "ouro bench kernels --json: stdout is JSON"
  else
    bad "ouro bench kernels --small --json: stdout is not JSON: $(head -c 400 "$work/kernels.json")"
  fi

  if docker run --rm --gpus all --ipc=host "$image" mpirun -np 2 ouro bench comm --max-bytes 1048576 --iters 2 \
       >"$work/comm.txt" 2>&1; then
    note "mpirun -np 2 as uid 1000 with the image's Open MPI settings: ok"
  else
    bad "mpirun -np 2 in the container failed: $(tail -n 20 "$work/comm.txt")"
  fi

  local tool
  for tool in "ncu --version" "nsys --version" "ouro-profile nsys configs/tiny.toml --dry-run"; do
    # shellcheck disable=SC2086  # the words of the command
    if docker run --rm --gpus all "$image:profile" $tool >"$work/tool.txt" 2>&1; then
      note "profile image: $tool: $(head -n 1 "$work/tool.txt")"
    else
      bad "profile image: $tool failed: $(cat "$work/tool.txt")"
    fi
  done

  if [ ! -f data/kjv_bpe_train.bin ] || [ ! -f data/kjv_bpe_val.bin ] || [ ! -f data/kjv_bpe.tiktoken ]; then
    note "training, eval --json and the profiler reports: SKIPPED: no data/kjv_bpe_* (run tools/prepare_kjv.sh)"
    return "$fail"
  fi
  mkdir -p "$work/runs"
  chmod 0777 "$work/runs"  # the container writes as uid 1000
  local mounts=(-v "$root/data:/workspace/data:ro" -v "$work/runs:/workspace/runs")
  if docker run --rm --gpus all --ipc=host "${mounts[@]}" "$image" ouro train --config configs/tiny.toml \
       --device cuda --set train.steps=20 --set train.eval_every=0 --set run.out_dir=runs/check >"$work/train.txt" 2>&1; then
    local ckpt
    ckpt="$(find "$work/runs/check/checkpoints" -maxdepth 1 -name 'step_*' | sort | tail -n 1)"
    if docker run --rm --gpus all "${mounts[@]}" "$image" ouro eval --init "runs/check/checkpoints/${ckpt##*/}" \
         --data data/kjv_bpe_val.bin --batch 8 --device cuda --json >"$work/eval.json" &&
       python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["loss"] > 0' "$work/eval.json"; then
      note "ouro eval --json > out.json: $(cat "$work/eval.json" | tr -d '\n')"
    else
      bad "ouro eval --json: stdout is not the JSON object: $(head -c 400 "$work/eval.json")"
    fi
  else
    bad "a 20-step training run in the container failed: $(tail -n 20 "$work/train.txt")"
  fi
  if docker run --rm --gpus all --ipc=host "${mounts[@]}" "$image:profile" ouro-profile nsys configs/tiny.toml \
       --device cuda --steps 2:4 --out runs/nsys >"$work/nsys.txt" 2>&1 && [ -s "$work/runs/nsys/profile.nsys-rep" ]; then
    note "ouro-profile nsys as uid 1000: runs/nsys/profile.nsys-rep"
  else
    bad "ouro-profile nsys: no report: $(tail -n 20 "$work/nsys.txt")"
  fi
  if docker run --rm --gpus all --ipc=host --user root --cap-add=SYS_ADMIN "${mounts[@]}" "$image:profile" \
       ouro-profile ncu configs/tiny.toml --device cuda --steps 2:3 --ncu-launch-count 2 --ncu-set basic \
       --ncu-kernels 'gemm|layernorm' --out runs/ncu >"$work/ncu.txt" 2>&1 && [ -s "$work/runs/ncu/profile.ncu-rep" ]; then
    note "ouro-profile ncu as root with CAP_SYS_ADMIN: runs/ncu/profile.ncu-rep"
  else
    bad "ouro-profile ncu (root, SYS_ADMIN): no report: $(tail -n 20 "$work/ncu.txt")"
  fi
  # The container wrote as uid 1000 and root: let this user remove the directory.
  docker run --rm -v "$work/runs:/workspace/runs" --user root "$image" chmod -R a+rwX /workspace/runs || true
  return "$fail"
}

# ==== Hopper ptx wrappers (issue 16): the emulator's model of wgmma/TMA/mbarrier on an sm_90 GPU ====
# Builds ouro_test_ptx_sm90_gpu (tests/test_simt_ptx_sm90.cpp with the nvcc-built kernels) and runs
# it: every wgmma layout/swizzle/N, TMA load/store and the tensor-map checks against the same scalar
# model the emulator passes. A failure means the emulator's reading of the ISA differs from the chip.
check_ptx_sm90() {
  local major
  major="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -n1 | cut -d. -f1)"
  if [ "$major" != 9 ]; then
    echo "ptx sm90: SKIPPED: no compute capability 9.x GPU (nvidia-smi says '${major:-none}')"
    return 0
  fi
  local dir="${OURO_BUILD_DIR:-$root/build}"
  cmake -S "$root" -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null &&
    cmake --build "$dir" --target ouro_test_ptx_sm90_gpu &&
    "$dir/tests/ouro_test_ptx_sm90_gpu"
}

# ==== main ======================================================================================
status=0
check_ptx_sm90 || status=1
check_docker_image || status=1
exit "$status"
