#!/usr/bin/env bash
# E2 (docs/experiments.md): likelihood-band self-training on text under a data budget.
#
#   tools/experiments/e2_text.sh [--smoke] [--out DIR] [--seeds "1 2 3"] [--device cpu|cuda|simt] [--jobs N]
#
# 1. Takes the first E2_BYTES bytes of the King James text (data/kjv.txt, made by
#    tools/prepare_kjv.sh) as the whole training budget: the base model sees it several times.
# 2. Per seed, pretrains a byte-level model for `start` steps (configs/experiments/e2_text.toml).
# 3. From those weights, runs each arm for the same rounds:
#      baseline   no generation: the round's generation FLOPs become extra real-data steps
#      band_0.10, band_0.25, band_0.50   likelihood-band filter (quantiles 0.25..0.75), syn_frac 0.1/0.25/0.5
#      replace    trains on the synthetic rows only (the collapse arm)
#    and records rounds.jsonl (held-out loss and its tail, distinct-n, self-BLEU, accept rate, rollbacks)
#    and final.json (held-out loss and tail loss of the final model).
# 4. tools/plot.py e2 writes the table and the plot.
# Arms run --jobs at a time (default: the cores on cpu, 1 on a GPU).
# --smoke: a one-round version with a 2-layer model (CI runs it; figures meaningless).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
experiment_args e2_text "1" "$@"
cfg="$root/configs/experiments/e2_text.toml"

bytes="${E2_BYTES:-400000}"
start=600 rounds=5 round_steps=50 prompts=16 k=4 prompt_tokens=32 max_new=64 B=16 T=128
extra_sets=()
if [ "$smoke" = 1 ]; then
  bytes=200000 start=10 rounds=1 round_steps=4 prompts=2 k=2 max_new=16
  extra_sets=(--set model.n_layer=2 --set model.n_embd=32 --set model.n_head=2 --set train.eval_batches=2)
fi
# The baseline's equal-FLOP extra steps per round, as src/loop/loop.cpp computes them:
# generation = prompts*k*(prompt+new) tokens of forward passes (1/3 of a training token's FLOPs).
extra=$(( (prompts * k * (prompt_tokens + max_new) + 3 * B * T / 2) / (3 * B * T) ))

txt="$root/data/kjv.txt"
[ -s "$txt" ] || OURO_BIN="$ouro" "$root/tools/prepare_kjv.sh" >/dev/null 2>&1
head -c "$bytes" "$txt" > "$out/data/kjv_slice.txt"
"$ouro" prepare --input "$out/data/kjv_slice.txt" --out "$out/data/kjv_slice" --val-frac 0.1 >/dev/null

common=(--config "$cfg" --set run.device="$device" --set data.train="$out/data/kjv_slice_train_*.bin"
        --set data.val="$out/data/kjv_slice_val_*.bin" --set loop.round_steps=$round_steps
        --set loop.prompts=$prompts --set loop.k=$k --set loop.prompt_tokens=$prompt_tokens
        --set loop.max_new_tokens=$max_new --set train.batch_size=$B --set model.seq_len=$T "${extra_sets[@]}")

arms=(baseline band_0.10 band_0.25 band_0.50 replace)
printf '%s\n' "${arms[@]}" > "$out/arms.txt"
t0=$(date +%s)

# The base model of one seed: `start` steps on the slice.
base_run() {
  local seed="$1" threads="$2" base="$out/base/seed$1"
  rm -rf "$base"
  "$ouro" train "${common[@]}" --set run.threads="$threads" --set train.seed="$seed" --set run.out_dir="$base" \
    --set train.steps=$start >"$out/base_seed$seed.log" 2>&1 ||
    { echo "e2_text.sh: base seed $seed failed; see $out/base_seed$seed.log" >&2; return 1; }
  echo "e2: seed $seed base done  [$(( $(date +%s) - t0 )) s]"
}

# One arm of one seed from that seed's base weights (--init: fresh AdamW moments and data order,
# the same for every arm; a --resume would refuse the arms' different loop keys).
arm_run() {
  local seed="$1" arm="$2" threads="$3" dir="$out/$2/seed$1" sets steps=$(( rounds * round_steps ))
  rm -rf "$dir" && mkdir -p "$dir"
  case "$arm" in
    baseline) sets=(--set loop.mode=baseline); steps=$(( rounds * (round_steps + extra) )) ;;
    band_*) sets=(--set loop.mode=loop --set loop.syn_frac="${arm#band_}") ;;
    replace) sets=(--set loop.mode=replace) ;;
  esac
  "$ouro" train "${common[@]}" --set run.threads="$threads" --set train.seed="$seed" --set run.out_dir="$dir" \
    --init "$(newest_checkpoint "$out/base/seed$seed")" \
    --set loop.start_step=0 --set loop.rounds=$rounds --set train.steps=$steps "${sets[@]}" >"$dir/train.log" 2>&1 ||
    { echo "e2_text.sh: arm $arm seed $seed failed; see $dir/train.log" >&2; tail -5 "$dir/train.log" >&2; return 1; }
  "$ouro" eval --init "$(newest_checkpoint "$dir")" --data "$out/data/kjv_slice_val_*.bin" --device "$device" \
    --json > "$dir/final.json"
  echo "e2: seed $seed arm $arm: $(cat "$dir/final.json")  [$(( $(date +%s) - t0 )) s]"
}

n_seeds=$(wc -w <<< "$seeds")
for seed in $seeds; do spawn "base seed $seed" base_run "$seed" "$(job_threads "$n_seeds")"; done
wait_jobs
# Longest first: replace's rounds are all rolled back on this budget, and then it still trains
# every step on real data, so started last it would run alone on one core at the end.
for seed in $seeds; do
  for arm in replace baseline band_0.10 band_0.25 band_0.50; do
    spawn "$arm seed $seed" arm_run "$seed" "$arm" "$(job_threads $(( n_seeds * ${#arms[@]} )))"
  done
done
wait_jobs
"$py" "$root/tools/plot.py" e2 "$out" --png "$out/e2_loss.png" --md "$out/e2_table.md"
cat "$out/e2_table.md"
echo "e2: done in $(( $(date +%s) - t0 )) s"
