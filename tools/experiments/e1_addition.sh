#!/usr/bin/env bash
# E1 (docs/experiments.md): addition length generalization with self-generated labels, after
# Lee et al. 2025 (arXiv 2502.01612).
#
#   tools/experiments/e1_addition.sh [--smoke] [--out DIR] [--seeds "1 2 3"] [--device cpu|cuda|simt] [--jobs N]
#
# 1. Writes reversed-digit addition problems of 1..N digits (`ouro prepare --task add`).
# 2. Per seed, trains a byte-level model on them (configs/experiments/e1_addition.toml).
# 3. From those weights, each arm runs R rounds; round r prompts with (N+1+r)-digit sums
#    (loop.task_min = loop.task_max = N+1, loop.task_grow = 1) and trains on what it accepts:
#      baseline    no generation: the generation FLOPs become extra steps on the 1..N data
#      verifier    keeps the samples the task's checker passes (an oracle upper bound)
#      majority    majority vote of the K samples + the answer-length filter (Lee et al.'s recipe)
#      accept_all  keeps every sample that stopped
#      replace     majority + length, but trains on the synthetic rows only (no real data)
# 4. Evaluates the base model and every arm: exact-match accuracy per digit count, 1..N+R+2, greedy (`ouro eval --task add`),
#    and tools/plot.py e1 writes the table and the plot.
# Seeds' base models, then every (seed, arm), run --jobs at a time (default: the cores on cpu, 1 on a GPU).
# --smoke: one round with a 2-layer model (CI runs it; figures meaningless).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
experiment_args e1_addition "1 2 3" "$@"
cfg="$root/configs/experiments/e1_addition.toml"

# The CPU-sized defaults: Lee et al. train 10k steps at batch 1024 before their rounds; scale
# E1_BASE_STEPS, E1_DIGITS, E1_BATCH, E1_SEQ and the model (E1_SETS) up on a GPU (the command in
# docs/experiments.md). At these defaults the base does not learn addition (docs/experiments.md,
# "E1 diagnosis"); E1_TASK=copy E1_DIGITS=4 E1_BASE_STEPS=800 E1_ROUND_STEPS=60 is the run there.
# E1_TASK: add; or the letter tasks that fit the CPU budget: copy, copyd (copy, no letter twice),
# rev (reversal; E1_TASK=rev E1_DIGITS=8 E1_SEQ=40 E1_BASE_STEPS=3000 E1_ROUND_STEPS=60: a base
# that learns 1..8 letters, docs/experiments.md "E1 on reversal"), revpad (reversal between random
# filler runs: the run with a foothold, docs/experiments.md "E1 on padded reversal").
# E1_SYN_FRAC: the share of each batch the accepted samples fill (loop.syn_frac; the rest is real
# 1..N data).
task="${E1_TASK:-add}"
N="${E1_DIGITS:-2}" base_steps="${E1_BASE_STEPS:-600}" rounds="${E1_ROUNDS:-3}"
round_steps="${E1_ROUND_STEPS:-30}" prompts="${E1_PROMPTS:-64}" syn_frac="${E1_SYN_FRAC:-0.25}" k=5 count="${E1_COUNT:-200000}" problems=50 round_problems=20
B="${E1_BATCH:-16}" T="${E1_SEQ:-32}"
# E1_SETS: more config overrides for every run, e.g. the model at Lee et al.'s scale:
#   E1_SETS="--set model.n_layer=6 --set model.n_head=6 --set model.n_embd=384 --set model.pos=none"
read -r -a extra_sets <<< "${E1_SETS:-}"
if [ "$smoke" = 1 ]; then
  N=2 base_steps=10 rounds=1 round_steps=4 prompts=4 k=2 count=8000 problems=4 round_problems=4 B=16 T=32
  extra_sets+=(--set model.n_layer=2 --set model.n_embd=32 --set model.n_head=2 --set train.eval_batches=2)
fi
# loop.cpp's equal-FLOP rule for the baseline: generation = prompts*k*(prompt_tokens+max_new)
# forward tokens, a third of a training token each (prompt_tokens is the config's, 32).
max_new=$(( N + rounds + 4 ))
extra=$(( (prompts * k * (32 + max_new) + 3 * B * T / 2) / (3 * B * T) ))

# Rows of T tokens, each starting with a problem (--row-tokens): every training window then starts
# as eval's and the loop's prompts do, and no window cuts a problem from its answer.
# E1_REUSE_BASE=1 keeps data already there: a run may be reading it (the loader refuses a shard
# that is replaced under it).
[ "${E1_REUSE_BASE:-0}" = 1 ] && [ -s "$out/data/${task}_train.bin" ] ||
"$ouro" prepare --task "$task" --count $count --min 1 --max "$N" --seed 7 --row-tokens $T --out "$out/data/$task" >/dev/null

common=(--config "$cfg" --set run.device="$device" --set data.train="$out/data/${task}_train.bin"
        --set data.val="$out/data/${task}_val.bin" --set loop.round_steps=$round_steps --set loop.prompts=$prompts
        --set loop.k=$k --set loop.max_new_tokens=$max_new --set loop.syn_frac=$syn_frac --set train.batch_size=$B --set model.seq_len=$T
        "${extra_sets[@]}")

arms=(baseline verifier majority accept_all replace)
printf '%s\n' base "${arms[@]}" > "$out/arms.txt"
t0=$(date +%s)
eval_args=(--task "$task" --min 1 --max $(( N + rounds + 2 )) --device "$device")

# CPU time (user + sys) of a run into FILE where GNU time is installed: the budget in CPU
# seconds, which other load on the machine does not inflate as it does the wall time.
timed() {
  local file="$1"; shift
  if [ -x /usr/bin/time ]; then /usr/bin/time -f "%e s wall, %U s user, %S s sys" -o "$file" "$@"; else "$@"; fi
}

# The base model of one seed, trained on the 1..N data, and its accuracy by digit count.
base_run() {
  local seed="$1" threads="$2" base="$out/base/seed$1"
  # E1_REUSE_BASE=1: keep a base this output directory already holds (trained and evaluated).
  if [ "${E1_REUSE_BASE:-0}" = 1 ] && [ -s "$base/eval.json" ] && [ -d "$base/checkpoints/step_$(printf %06d "$base_steps")" ]; then
    echo "e1: seed $seed base: reused $(cat "$base/eval.json")"
    return 0
  fi
  rm -rf "$base"
  timed "$out/base_seed$seed.time" "$ouro" train "${common[@]}" --set run.threads="$threads" --set train.seed="$seed" --set run.out_dir="$base" \
    --set train.steps="$base_steps" >"$out/base_seed$seed.log" 2>&1 ||
    { echo "e1_addition.sh: base seed $seed failed; see $out/base_seed$seed.log" >&2; return 1; }
  "$ouro" eval --init "$(newest_checkpoint "$base")" "${eval_args[@]}" --problems $problems --threads "$threads" --json > "$base/eval.json"
  echo "e1: seed $seed base: $(cat "$base/eval.json")  [$(( $(date +%s) - t0 )) s]"
}

# One arm of one seed, from that seed's base weights (--init: fresh AdamW moments and data order,
# the same for every arm; a --resume would refuse the arms' different loop keys).
arm_run() {
  local seed="$1" arm="$2" threads="$3" dir="$out/$2/seed$1" sets steps=$(( rounds * round_steps ))
  rm -rf "$dir" && mkdir -p "$dir"
  case "$arm" in
    baseline) sets=(--set loop.mode=baseline); steps=$(( rounds * (round_steps + extra) )) ;;
    verifier) sets=(--set loop.scorer=verifier) ;;
    majority) sets=(--set loop.scorer=answer_length,majority) ;;
    accept_all) sets=(--set loop.scorer=accept_all) ;;
    replace) sets=(--set loop.mode=replace --set loop.scorer=answer_length,majority) ;;
  esac
  timed "$dir/time.txt" "$ouro" train "${common[@]}" --set run.threads="$threads" --set train.seed="$seed" --set run.out_dir="$dir" \
    --init "$(newest_checkpoint "$out/base/seed$seed")" \
    --set loop.start_step=0 --set loop.rounds="$rounds" --set loop.task="$task" \
    --set loop.task_min=$(( N + 1 )) --set loop.task_max=$(( N + 1 )) --set loop.task_grow=1 \
    --set train.steps=$steps --set checkpoint.every=100000000 --set checkpoint.keep=$(( rounds + 2 )) "${sets[@]}" >"$dir/train.log" 2>&1 ||
    { echo "e1_addition.sh: arm $arm seed $seed failed; see $dir/train.log" >&2; tail -5 "$dir/train.log" >&2; return 1; }
  "$ouro" eval --init "$(newest_checkpoint "$dir")" "${eval_args[@]}" --problems $problems --threads "$threads" --json > "$dir/eval.json"
  # Accuracy by digit count after each round (checkpoint.every > 0 makes the loop save at every
  # round's end; the huge value keeps the trainer from saving in between), for the figure's
  # two arms: rounds_eval.jsonl (fewer problems: greedy decoding one problem at a time is slow).
  if [ "$arm" = majority ] || [ "$arm" = baseline ]; then
    local ck
    for ck in $(ls -d "$dir"/checkpoints/step_* | sort); do
      printf '{"step": %d, "eval": %s}\n' "$((10#${ck##*step_}))" \
        "$("$ouro" eval --init "$ck" "${eval_args[@]}" --problems "$round_problems" --threads "$threads" --json)"
    done > "$dir/rounds_eval.jsonl"
  fi
  echo "e1: seed $seed arm $arm: $(cat "$dir/eval.json")  [$(( $(date +%s) - t0 )) s]"
}

n_seeds=$(wc -w <<< "$seeds")
for seed in $seeds; do spawn "base seed $seed" base_run "$seed" "$(job_threads "$n_seeds")"; done
wait_jobs
for seed in $seeds; do
  for arm in "${arms[@]}"; do
    spawn "$arm seed $seed" arm_run "$seed" "$arm" "$(job_threads $(( n_seeds * ${#arms[@]} )))"
  done
done
wait_jobs
case "$task" in add | sort) unit=digits ;; *) unit=letters ;; esac
"$py" "$root/tools/plot.py" e1 "$out" --png "$out/e1_accuracy.png" --md "$out/e1_table.md" --unit $unit --trained "$N"
cat "$out/e1_table.md"
echo "e1: done in $(( $(date +%s) - t0 )) s"
