#!/usr/bin/env bash
# From a fresh machine to a trained model: installs, builds, trains a BPE tokenizer on the King
# James Bible and tokenizes it, trains configs/tiny.toml for a few minutes, prints the validation
# loss and a sample (decoded with the tokenizer the run keeps in its out_dir).
# Extra arguments go to `ouro train` (e.g. --set train.steps=100).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tools/setup.sh
# Only what the quickstart runs: the `ouro` binary (no tests, benchmarks or emulator tools). On a
# machine with an NVIDIA GPU it has the CUDA backend (build/, as tools/build.sh makes it);
# without one, the CPU backend alone (build-cpu/: no nvcc and no emulator to compile), which is
# what trains there. OURO_DEVICE overrides the choice of device.
device=cpu
if nvidia-smi -L >/dev/null 2>&1; then
  device=cuda
fi
device="${OURO_DEVICE:-$device}"
if [ "$device" = cpu ]; then
  export OURO_BUILD_DIR="${OURO_BUILD_DIR:-$root/build-cpu}"
  OURO_BUILD_TARGETS=ouro tools/build.sh -DOURO_CUDA=OFF -DOURO_SIMT=OFF
else
  export OURO_BUILD_DIR="${OURO_BUILD_DIR:-$root/build}"
  OURO_BUILD_TARGETS=ouro tools/build.sh
fi
ouro="$OURO_BUILD_DIR/ouro"
if [ "$device" = cuda ] && [ -z "${OURO_DEVICE:-}" ] && ! "$ouro" --version | grep -q 'devices:.*cuda'; then
  device=cpu  # a GPU, but no nvcc to build for it
fi
OURO_BIN="$ouro" tools/prepare_kjv.sh
echo "quickstart: training on device $device"
out=runs/quickstart
rm -rf "$out"
"$ouro" train --config configs/tiny.toml --device "$device" --set run.out_dir="$out" "$@"

ckpt=$(ls -d "$out"/checkpoints/step_* | sort | tail -n 1)
echo
echo "== validation loss of $ckpt (nats per token, 2048-token BPE) =="
"$ouro" eval --init "$ckpt" --data "data/kjv_bpe_val_*.bin" --batch 8 --device "$device" --json
echo
echo "== sample =="
"$ouro" sample --init "$ckpt" --prompt "And God said" --max-tokens 300 --temperature 0.8 --seed 1 \
  --device "$device"
