#!/usr/bin/env bash
# The one script the first lent GPU runs (issue 15 D). On one H100/H200 it takes under 10 minutes:
#   build  the cuda build (ouro and the GPU test binaries; no emulator), reused if present
#   tests  every GPU test twin (ctest -L '^cuda$'): the kernel suites compiled by nvcc
#          (ouro_test_kernel_*_gpu), the PTX wrappers (the Hopper ones, ouro_test_ptx_sm90_gpu,
#          on sm_90: the emulator's wgmma/TMA/mbarrier model checked against the chip), and the alternates against the native
#          kernels (ouro_test_cudnn_attention_gpu, ouro_test_cublaslt_matmul_gpu)
#   train  GPT-2 124M's first 20 training losses on cuda against the cpu backend's, on the same
#          generated token shard, within bf16 tolerance
#   bench  `ouro bench all --device cuda`, then `ouro bench kernels` (the Hopper GEMM vs cuBLASLt,
#          the Hopper attention forward vs cuDNN)
#   docker build docker/Dockerfile (runtime and profile targets) and run it on the GPU; skipped
#          without a Docker daemon with the NVIDIA container toolkit
#   report its figures into docs/perf.md: tests and losses between the gpu_check markers, the
#          benchmarks into the bench section (tools/bench_report.py --perf-md)
# Each step is one function (step_<name>); --steps picks some, in the order given.
#
# --dry-run runs nothing on a GPU: it checks that every command the steps would run exists and
# parses (tools on PATH, files, the ouro subcommands and options, the GPU tests in a configured
# build, the loss comparison and the perf.md writer on sample inputs). CI runs it (ctest
# gpu_check_dry_run).
#
# Usage: tools/gpu_check.sh [--dry-run] [--build-dir DIR] [--out DIR] [--bin OURO] [--steps a,b,...]
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${OURO_GPU_BUILD_DIR:-$root/build-gpu}"
out=""
bin=""
dry=0
steps="build,tests,train,bench,docker,report"
perf="$root/docs/perf.md"

# The 124M loss check: steps compared, batch, and the tolerance. The cuda run stores activations,
# weights and gradients in bf16 (8 significant bits, 2^-9 relative per store) and accumulates in
# fp32; the cpu run is fp32 throughout. The device-path test measured ~1e-3 relative on the
# first loss of a small model; over 20 AdamW steps the two trajectories drift apart by a few
# such roundings per step: 2e-2 relative per step is bf16's scale, a broken kernel is far off.
loss_steps=20
loss_tol=0.02
train_sets=(--set train.steps=$loss_steps --set train.batch_size=4 --set train.grad_accum=1
            --set train.seq_len=256 --set train.warmup_steps=5 --set train.eval_every=0
            --set train.log_every=1 --set checkpoint.every=0 --set sample.every=0)

while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --build-dir) build="$2"; shift ;;
    --out) out="$2"; shift ;;
    --bin) bin="$2"; shift ;;
    --steps) steps="$2"; shift ;;
    --perf) perf="$2"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) echo "gpu_check: unknown argument '$1'" >&2; exit 2 ;;
  esac
  shift
done
out="${out:-$build/gpu_check}"
bin="${bin:-$build/ouro}"
failures=0

say() { printf '\n== gpu_check: %s\n' "$*"; }
die() { echo "gpu_check: $*" >&2; exit 1; }

# Runs a command, or in --dry-run checks that its program exists.
run() {
  echo "+ $*"
  if [ "$dry" = 1 ]; then
    command -v "$1" >/dev/null 2>&1 || [ -x "$1" ] || die "dry run: '$1' is not a program on PATH"
    return 0
  fi
  "$@"
}

# The ouro subcommand takes every option the script passes it (dry run: from its --help).
check_ouro_options() {
  local sub="$1"; shift
  local help
  help="$("$bin" $sub --help 2>&1)" || die "dry run: '$bin $sub --help' failed: $help"
  for opt in "$@"; do
    grep -q -- "$opt" <<<"$help" || die "dry run: '$bin $sub' has no option $opt"
  done
  echo "  ok: ouro $sub takes $*"
}

# ---- step: build ----------------------------------------------------------------------------
step_build() {
  say "build ($build)"
  local targets=(ouro)
  if [ "$dry" = 0 ]; then
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    # Only this GPU's architecture (half the nvcc time of the default 80;90a); the kernel twins
    # need OURO_SIMT (their sources are the emulator tests'), built only as dependencies here.
    local arch
    arch="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d .)"
    case "$arch" in 90) arch=90a ;; "") arch="80;90a" ;; esac
    run cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DOURO_CUDA=ON -DOURO_GPU_TESTS=ON \
      -DOURO_CUDA_ARCHITECTURES="$arch"
    mapfile -t gpu_tests < <(ninja -C "$build" -t targets all | grep -o '^ouro_test_[a-z_0-9]*_gpu' | sort -u)
    targets+=("${gpu_tests[@]}")
    run cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
  else
    run cmake --version
    run ninja --version
  fi
}

# ---- step: tests ----------------------------------------------------------------------------
# Every GPU twin and alternate-vs-native test: ctest's label cuda.
step_tests() {
  say "GPU tests (ctest -L '^cuda\$')"
  mkdir -p "$out"
  if [ "$dry" = 1 ]; then
    run ctest --version
    # What the build step's configuration (-DOURO_GPU_TESTS=ON) registers under the label.
    local cm="$root/tests/CMakeLists.txt" t
    for t in 'ouro_test_${area}_gpu' ouro_test_ptx_gpu ouro_test_cudnn_attention_gpu ouro_test_cublaslt_matmul_gpu; do
      grep -qF "gtest_discover_tests($t" "$cm" || die "dry run: $cm registers no GPU test $t"
    done
    [ "$(grep -c 'LABELS cuda' "$cm")" -ge 4 ] || die "dry run: the GPU tests are not all labelled cuda"
    if [ -f "$build/CTestTestfile.cmake" ]; then  # this build's GPU tests (those it built)
      echo "  ok: $(cd "$build" && ctest -N -L '^cuda$' | grep -c 'Test *#' || true) GPU tests in $build"
    fi
    return 0
  fi
  # '^cuda$': not cuda-static (the static kernel report, which CI runs without a GPU).
  (cd "$build" && ctest -L '^cuda$' -j2 --output-on-failure --timeout 300 2>&1 | tee "$out/tests.log") ||
    failures=$((failures + 1))
}

# ---- step: train ----------------------------------------------------------------------------
# One shard of 1M tokens of a fixed bigram process over GPT-2's vocabulary (learnable, so the
# losses fall and the comparison covers a moving trajectory), llm.c's format.
make_shard() {
  python3 - "$1" "$2" <<'EOF'
import struct, sys, random
path, seed = sys.argv[1], int(sys.argv[2])
rng = random.Random(seed)
n, tok, toks = 1 << 20, 0, []
for i in range(n):
    tok = (tok * 31 + 7) % 4099 if rng.random() < 0.9 else rng.randrange(50257)
    toks.append(tok)
header = [20240520, 1, n] + [0] * 253
with open(path, "wb") as f:
    f.write(struct.pack("<256i", *header))
    f.write(struct.pack("<%dH" % n, *toks))
EOF
}

# The first `loss_steps` losses of two metrics.jsonl files: a table, and exit 1 beyond loss_tol.
compare_losses() {
  python3 - "$1" "$2" "$loss_steps" "$loss_tol" <<'EOF'
import json, math, sys
def losses(path):
    out = []
    for line in open(path):
        r = json.loads(line)
        if "loss" in r and "val_loss" not in r:
            out.append(r["loss"])
    return out
cpu, cuda = losses(sys.argv[1]), losses(sys.argv[2])
n, tol = int(sys.argv[3]), float(sys.argv[4])
print("| step | cpu loss | cuda loss | relative difference |")
print("|---|---|---|---|")
bad = len(cpu) < n or len(cuda) < n
worst = 0.0
for i in range(min(n, len(cpu), len(cuda))):
    a, b = cpu[i], cuda[i]
    d = abs(b - a) / max(abs(a), 1e-12) if a is not None and b is not None else math.inf
    worst = max(worst, d)
    bad |= not d <= tol
    print(f"| {i + 1} | {a:.5f} | {b:.5f} | {d:.2e} |")
print(f"\nworst relative difference {worst:.2e} (tolerance {tol}); {'FAIL' if bad else 'pass'}")
sys.exit(1 if bad else 0)
EOF
}

step_train() {
  say "GPT-2 124M: first $loss_steps losses, cuda vs cpu"
  mkdir -p "$out/train"
  if [ "$dry" = 1 ]; then
    run python3 --version
    [ -f "$root/configs/gpt2_124m.toml" ] || die "dry run: no configs/gpt2_124m.toml"
    check_ouro_options train --config --set --device
    # Every key the runs override is one the config schema has (src/config/config.cpp).
    local kv key
    for kv in "${train_sets[@]}" data.train=x data.val=x run.out_dir=x; do
      [ "$kv" = --set ] && continue
      key="${kv%%=*}"
      grep -q "OURO_KEY(${key%%.*}, ${key#*.}," "$root/src/config/config.cpp" ||
        die "dry run: the config has no key $key"
    done
    echo "  ok: config keys"
    # The loss comparison on sample files: equal trajectories pass, one 5% off fails.
    local a="$out/train/sample_cpu.jsonl" b="$out/train/sample_cuda.jsonl" c="$out/train/sample_off.jsonl"
    : >"$a"; : >"$b"; : >"$c"
    for i in $(seq 1 "$loss_steps"); do
      echo "{\"step\": $i, \"loss\": $((11 - i % 7)).25}" >>"$a"
      echo "{\"step\": $i, \"loss\": $((11 - i % 7)).25}" >>"$b"
      echo "{\"step\": $i, \"loss\": $((11 - i % 7)).75}" >>"$c"
    done
    compare_losses "$a" "$b" >/dev/null || die "dry run: the loss comparison fails equal losses"
    if compare_losses "$a" "$c" >/dev/null; then die "dry run: the loss comparison passes 5% off"; fi
    make_shard "$out/train/shard.bin" 1
    python3 -c "import sys,struct; h=struct.unpack('<3i', open(sys.argv[1],'rb').read(12)); assert h==(20240520,1,1<<20), h" \
      "$out/train/shard.bin" || die "dry run: the shard writer"
    echo "  ok: loss comparison and shard writer"
    return 0
  fi
  make_shard "$out/train/train.bin" 1
  make_shard "$out/train/val.bin" 2
  local dev
  for dev in cpu cuda; do
    rm -rf "$out/train/$dev"
    run "$bin" train --config "$root/configs/gpt2_124m.toml" --device "$dev" "${train_sets[@]}" \
      --set data.train="$out/train/train.bin" --set data.val="$out/train/val.bin" \
      --set run.out_dir="$out/train/$dev" 2>&1 | tee "$out/train/$dev.log" | tail -3
  done
  compare_losses "$out/train/cpu/metrics.jsonl" "$out/train/cuda/metrics.jsonl" | tee "$out/train/losses.md" ||
    failures=$((failures + 1))
  train_two_gpus
}

# Data parallelism inside the captured step (issue 18 D4): 2 ranks on 2 GPUs, the step captured
# with its gradient exchange (train.cuda_graph=true) against the same run uncaptured: tokens/s
# (median of steps 6..30, all ranks' tokens) and whether the losses agree bitwise. Skipped on a
# machine with fewer than 2 GPUs or without mpirun.
train_two_gpus() {
  local gpus
  gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"
  if [ "${gpus:-0}" -lt 2 ] || ! command -v mpirun >/dev/null; then
    echo "2-GPU captured step: SKIPPED (${gpus:-0} GPU(s), mpirun: $(command -v mpirun || echo none))" |
      tee "$out/train/two_gpus.md"
    return 0
  fi
  local g
  for g in true false; do
    rm -rf "$out/train/dp_$g"
    run timeout 600 mpirun --allow-run-as-root -np 2 "$bin" train --config "$root/configs/gpt2_124m.toml" \
      --device cuda --set train.steps=30 --set train.batch_size=8 --set train.seq_len=1024 \
      --set train.eval_every=0 --set checkpoint.every=0 --set sample.every=0 --set train.cuda_graph=$g \
      --set data.train="$out/train/train.bin" --set run.out_dir="$out/train/dp_$g" 2>&1 |
      tee "$out/train/dp_$g.log" | grep -E 'cuda_graph|data parallel' || true
  done
  python3 - "$out/train/dp_true/metrics.jsonl" "$out/train/dp_false/metrics.jsonl" <<'EOF' |
import json, statistics, sys
def load(path):
    try:
        return [json.loads(l) for l in open(path) if '"tokens_per_s"' in l]
    except OSError:
        return []
on, off = load(sys.argv[1]), load(sys.argv[2])
if len(on) < 30 or len(off) < 30:
    print("2-GPU captured step: FAILED (a run did not finish 30 steps)")
    sys.exit(1)
tps = lambda rs: statistics.median(r["tokens_per_s"] for r in rs[5:])
same = [r["loss"] for r in on] == [r["loss"] for r in off]
print(f"2 GPUs, GPT-2 124M, batch 8 x 1024 per rank: captured {tps(on):,.0f} tokens/s, "
      f"uncaptured {tps(off):,.0f} tokens/s ({tps(on) / tps(off):.3f}x); losses bitwise equal: {same}")
EOF
    tee "$out/train/two_gpus.md" || failures=$((failures + 1))
}

# ---- step: bench ----------------------------------------------------------------------------
step_bench() {
  say "ouro bench all --device cuda"
  if [ "$dry" = 1 ]; then
    check_ouro_options "bench all" --device --out
    check_ouro_options "bench kernels" --reps --json
    check_ouro_options "bench generate" --config --device --steps --json
    check_ouro_options "bench train" --config --device --set --steps
    return 0
  fi
  run timeout 300 "$bin" bench all --device cuda --out "$out/bench" | tee "$out/bench.log" || failures=$((failures + 1))
  # The GEMM families side by side on the GPT-2 124M..1.5B shapes: what training runs ("matmul
  # fwd/bwd"), and on an sm_90 GPU the Hopper wgmma/TMA kernel ("sm_90a") and the mma.sync one
  # ("sm_80") forced, each against cuBLASLt (issue 16's bar: sm_90a >= 90% of cuBLASLt). Off
  # Hopper it prints a note that the sm_90a kernel was skipped. Attention (issue 17): "attention
  # fwd" (the automatic choice), on sm_90 "attention fwd sm_90a" (kernels/attention_sm90.cu) and
  # "attention bwd", and the one-kernel backward "attention bwd sm_90a" (deterministic) and "attn bwd
  # sm_90a atomic", each next to cuDNN's TFLOP/s on the same shape (bar: >= 80% of cuDNN).
  # Skinny-M decode GEMMs (issue 17 item 4): "matmul fwd skinny-M" next to "matmul fwd M<=64 tiled".
  say "ouro bench kernels (GEMM: sm_90a vs sm_80 vs cuBLASLt; skinny-M decode GEMMs vs the tiled ones; attention vs cuDNN)"
  run timeout 600 "$bin" bench kernels --reps 20 | tee "$out/bench_kernels.log" || failures=$((failures + 1))
  # Generation at GPT-2 124M with its [loop] settings (split-KV decoding, issue 17): decode
  # tokens/s, the bytes each decode step must move and their share of the memory bandwidth, and
  # whole tokens/s (step + sampling) with and without the decode CUDA graph
  # ("sampled_tokens_per_s" vs "sampled_tokens_per_s_graph" in the JSON).
  say "ouro bench generate (GPT-2 124M, KV-cache decoding)"
  run timeout 300 "$bin" bench generate --config "$root/configs/gpt2_124m.toml" --device cuda --steps 1 --json |
    tee "$out/bench_generate.log" || failures=$((failures + 1))
  # The training step's launch overhead (issue 18 D4): GPT-2 124M's step replayed as CUDA Graphs
  # against the same step launched kernel by kernel.
  for g in true false; do
    say "ouro bench train (GPT-2 124M, train.cuda_graph=$g)"
    run timeout 300 "$bin" bench train --config "$root/configs/gpt2_124m.toml" --device cuda --steps 10 \
      --set train.cuda_graph=$g | tee "$out/bench_train_graph_$g.log" || failures=$((failures + 1))
  done
}

# ---- step: docker (issue 22) ----------------------------------------------------------------
# Builds the image and runs it on the GPU.
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

  if [ ! -f data/kjv_bpe_train_000000.bin ] || [ ! -f data/kjv_bpe_val_000000.bin ] || [ ! -f data/kjv_bpe.tiktoken ]; then
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
         --data data/kjv_bpe_val_000000.bin --batch 8 --device cuda --json >"$work/eval.json" &&
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

step_docker() {
  say "Docker image: build the runtime and profile targets, run them on the GPU"
  if [ "$dry" = 1 ]; then
    [ -f "$root/docker/Dockerfile" ] || die "docker/Dockerfile is missing"
    echo "docker image: dry run: would build docker/Dockerfile (runtime, profile) when a daemon and a GPU exist"
    return 0
  fi
  (cd "$root" && check_docker_image) || failures=$((failures + 1))
}

# ---- step: report ---------------------------------------------------------------------------
# Replaces what lies between the markers in docs/perf.md (appends the section when absent).
write_perf_section() {
  python3 - "$1" "$2" <<'EOF'
import sys
perf, body = sys.argv[1], open(sys.argv[2]).read()
begin, end = "<!-- gpu_check:begin -->", "<!-- gpu_check:end -->"
text = open(perf).read()
block = begin + "\n" + body.rstrip("\n") + "\n" + end
if begin in text and end in text:
    text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
else:
    text = text.rstrip("\n") + "\n\n## GPU check (tools/gpu_check.sh, issue 15)\n\n" + block + "\n"
open(perf, "w").write(text)
EOF
}

step_report() {
  say "report -> $perf"
  mkdir -p "$out"
  local body="$out/perf_section.md"
  if [ "$dry" = 1 ]; then
    [ -f "$perf" ] || die "dry run: no $perf"
    local copy="$out/perf_copy.md"
    cp "$perf" "$copy"
    echo "sample figures" >"$body"
    write_perf_section "$copy" "$body"
    echo "other figures" >"$body"
    write_perf_section "$copy" "$body"
    grep -q "other figures" "$copy" && ! grep -q "sample figures" "$copy" ||
      die "dry run: the perf.md writer does not replace its section"
    python3 "$root/tools/bench_report.py" --help | grep -q -- --perf-md || die "dry run: bench_report.py has no --perf-md"
    echo "  ok: perf.md section writer, bench_report.py --perf-md"
    return 0
  fi
  {
    echo "Measured by \`tools/gpu_check.sh\` on $(date -u +%Y-%m-%d) at commit $(git -C "$root" rev-parse --short HEAD)"
    echo "on $(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)."
    echo
    echo "GPU tests: $(grep -E 'tests passed|tests failed' "$out/tests.log" 2>/dev/null | tail -1)"
    echo
    echo "GPT-2 124M, batch 4 x 256, first $loss_steps steps on a generated bigram shard, cuda vs cpu:"
    echo
    cat "$out/train/losses.md" 2>/dev/null || echo "(not run)"
    echo
    cat "$out/train/two_gpus.md" 2>/dev/null || echo "2-GPU captured step: (not run)"
    echo
    echo "\`ouro bench all --device cuda\`: the device's subsection of \"Measured by ouro bench all\" above."
  } >"$body"
  write_perf_section "$perf" "$body"
  if [ -f "$out/bench/bench.json" ]; then
    python3 "$root/tools/bench_report.py" "$out/bench/bench.json" --perf-md "$perf" || failures=$((failures + 1))
  fi
}

main() {
  [ "$dry" = 1 ] && say "dry run: checking commands, running nothing on a GPU"
  IFS=',' read -r -a chosen <<<"$steps"
  for s in "${chosen[@]}"; do
    declare -F "step_$s" >/dev/null || die "unknown step '$s' (have: build tests train bench docker report)"
  done
  for s in "${chosen[@]}"; do "step_$s"; done
  if [ "$failures" -gt 0 ]; then
    say "$failures step(s) failed (see $out)"
    exit 1
  fi
  say "done"
}

main
