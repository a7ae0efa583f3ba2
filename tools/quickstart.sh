#!/usr/bin/env bash
# From a fresh machine to a trained model: installs, builds, trains a BPE tokenizer on the King
# James Bible and tokenizes it, trains configs/tiny.toml for a few minutes, prints the validation
# loss and a sample (decoded with the tokenizer the run keeps in its out_dir).
# Extra arguments go to `ouro train` (e.g. --set train.steps=100).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
tools/setup.sh
tools/build.sh
ouro=build/ouro
tools/prepare_kjv.sh

# On a machine with an NVIDIA GPU (and a build with the CUDA backend: nvcc was found) the model
# trains on the GPU; elsewhere on the CPU reference backend. OURO_DEVICE overrides the choice.
device=cpu
if nvidia-smi -L >/dev/null 2>&1 && "$ouro" --version | grep -q 'devices:.*cuda'; then
  device=cuda
fi
device="${OURO_DEVICE:-$device}"
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
