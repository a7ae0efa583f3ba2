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

# The GPU backend arrives with the CUDA kernels; until then (and on machines without a GPU)
# the tiny model trains on the CPU reference backend.
device="${OURO_DEVICE:-cpu}"
out=runs/quickstart
rm -rf "$out"
"$ouro" train --config configs/tiny.toml --device "$device" --set run.out_dir="$out" "$@"

ckpt=$(ls -d "$out"/checkpoints/step_* | sort | tail -n 1)
echo
echo "== validation loss of $ckpt (nats per token, 2048-token BPE) =="
"$ouro" eval --init "$ckpt" --data data/kjv_bpe_val.bin --batch 8 --json
echo
echo "== sample =="
"$ouro" sample --init "$ckpt" --prompt "And God said" --max-tokens 300 --temperature 0.8 --seed 1
