#!/usr/bin/env bash
# `ouro tokenize` on a text of several MB read from stdin (more than one 1 MB read block): the ids
# are the same on 1 and 2 threads, and --decode gives the text back byte for byte; `ouro bench
# tokenizer` runs on the same text.
#   tests/cli/tokenize_stdin.sh OURO TOKENIZER CORPUS.xz
set -euo pipefail
ouro="$1" tok="$2" corpus="$3"
dir="$(mktemp -d)"
trap 'rm -rf "$dir"' EXIT
xz -dc "$corpus" > "$dir/corpus.txt"
head -c 1500000 "$dir/corpus.txt" > "$dir/part.txt"
cat "$dir/part.txt" "$dir/part.txt" > "$dir/text.txt"   # 3 MB: three read blocks
"$ouro" tokenize -t "$tok" --threads 1 < "$dir/text.txt" > "$dir/ids1.json"
"$ouro" tokenize -t "$tok" --threads 2 < "$dir/text.txt" > "$dir/ids2.json"
cmp "$dir/ids1.json" "$dir/ids2.json"
"$ouro" tokenize -t "$tok" --decode < "$dir/ids1.json" > "$dir/back.txt"
cmp "$dir/text.txt" "$dir/back.txt"
n=$(tr -cd ',' < "$dir/ids1.json" | wc -c)
[ "$n" -gt 500000 ] || { echo "only $n ids for 3 MB of text" >&2; exit 1; }
# The benchmark checks 2-thread ids against 1-thread ids itself and reports the cores' scaling.
"$ouro" bench tokenizer -t "$tok" -i "$dir/text.txt" --threads 2 --repeats 1 --no-tiktoken --json > "$dir/bench.json"
grep -q '"core_scaling"' "$dir/bench.json"
echo "ok: $((n + 1)) ids, identical on 1 and 2 threads, decoded back to the 3 MB text"
