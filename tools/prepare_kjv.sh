#!/usr/bin/env bash
# The default corpus: the King James Bible from Debian's bible-kjv, verse references
# stripped (~4.1 MB of text). Trains a BPE tokenizer on it (data/kjv_bpe.tiktoken, vocabulary
# OURO_KJV_VOCAB = 2048; deterministic, under a second) and tokenizes the text into
# data/kjv_bpe_{train,val}_000000.bin with it, and byte-level into data/kjv_{train,val}_000000.bin
# (each with a .manifest.json; configs name them by glob, data/kjv_bpe_train_*.bin).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ouro="${OURO_BIN:-$root/build/ouro}"
mkdir -p "$root/data"
txt="$root/data/kjv.txt"
if [ ! -s "$txt" ]; then
  bible -f 'gen1:1-rev22:21' | sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$txt.tmp"
  mv "$txt.tmp" "$txt"
fi
tok="$root/data/kjv_bpe.tiktoken"
"$ouro" tokenizer train --input "$txt" --vocab "${OURO_KJV_VOCAB:-2048}" --out "$tok"
"$ouro" prepare --input "$txt" --out "$root/data/kjv_bpe" --tokenizer "$tok" --val-frac 0.05
"$ouro" prepare --input "$txt" --out "$root/data/kjv" --val-frac 0.05
