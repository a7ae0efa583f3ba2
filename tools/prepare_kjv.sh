#!/usr/bin/env bash
# The default corpus: the King James Bible from Debian's bible-kjv, verse references
# stripped (~4.1 MB of text), tokenized into data/kjv_train.bin and data/kjv_val.bin.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
ouro="${OURO_BIN:-$root/build/ouro}"
mkdir -p "$root/data"
txt="$root/data/kjv.txt"
if [ ! -s "$txt" ]; then
  bible -f 'gen1:1-rev22:21' | sed -E 's/^[0-9]?[A-Za-z]+[0-9]+:[0-9]+ //' > "$txt.tmp"
  mv "$txt.tmp" "$txt"
fi
"$ouro" prepare --input "$txt" --out "$root/data/kjv" --val-frac 0.05
