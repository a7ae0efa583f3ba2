#!/usr/bin/env bash
# The torture harness (issue 21): reruns hostile-input and fault attempts against the cpu binary
# and prints a tally. Contract (the cases' side): /work/wt/notes/TORTURE_CONTRACT.md, summarised:
#
#   tools/torture.sh [--ouro BIN] [--fault-worker BIN] [--only REGEX] [--keep]
#
# sources every tools/torture/cases_*.sh and runs each shell function named case_* (matching
# --only) in a fresh empty temp directory (its cwd), under a per-case time limit. A case sees
#   OURO       a binary with the cpu backend (default build/ouro)
#   OURO_FAULT the tests' `ouro train` with a fault from the environment (tests/fault_worker.cpp;
#              default build/tests/ouro_fault_worker): the product has no fault flags
#   ROOT       the repository root
#   FIX        read-only fixtures made once per harness run:
#                $FIX/tok.tiktoken (+ .json)  a small BPE tokenizer (vocabulary 512)
#                $FIX/data_train.bin, $FIX/data_val.bin   shards prepared with it
#                $FIX/tiny.toml   a tiny model that trains on them in seconds (run.out_dir = "run",
#                                 relative, so a case's run lands in its own directory)
#                $FIX/ckpt        a checkpoint directory of tiny.toml after 4 steps
#   T_TIMEOUT  seconds per command (default 60)
# and calls these helpers, each one attempt:
#   expect_fail "SUBSTRING" CMD ARGS...  non-zero exit within T_TIMEOUT, not killed by a signal
#                                        (unless listed in T_ALLOW_SIGNALS, e.g. "9 15"), output
#                                        (stdout+stderr) containing SUBSTRING
#   expect_ok CMD ARGS...                exit 0 within T_TIMEOUT
#   expect_status CODE CMD ARGS...       exit exactly CODE within T_TIMEOUT
#   attempt_ok "what"                    a case's own check that held (counts one attempt)
#   report CLASS "what"                  a case's own check that failed (one attempt, failed);
#                                        CLASS: crash | hang | silent | unclear | lost
# After a helper, $T_OUT is the file holding the command's output and $T_STATUS its exit status.
# Classification: killed by a signal, abort or a sanitizer report -> crash; past T_TIMEOUT ->
# hang; exit 0 where failure was expected (or the wrong status) -> silent; non-zero exit without
# SUBSTRING -> unclear.
#
# Prints one line per attempt and a final tally
#   attempts N, crashes 0, hangs 0, silent-wrong 0, unclear 0, data-lost 0
# and exits non-zero if any count but attempts is non-zero (or no attempt ran).
set -uo pipefail

# ---------------------------------------------------------------------------------------------
# Helpers (also used in the per-case child, which re-enters this script with --run-case).

_t_record() {  # CLASS WHAT: one line in the tally file, one on the console
  local class="$1" what="$2"
  printf '%s\t%s\t%s\n' "$class" "${T_CASE:-?}" "$what" >>"$T_TALLY"
  if [ "$class" = ok ]; then
    printf '  ok      %s: %s\n' "${T_CASE:-?}" "$what"
  else
    printf '  FAIL    %s: [%s] %s\n' "${T_CASE:-?}" "$class" "$what"
  fi
}

_t_describe() {  # the command line, shortened for the report
  local s="$*"
  s="${s//$FIX/\$FIX}"
  s="${s//$OURO/ouro}"
  [ "${#s}" -gt 160 ] && s="${s:0:157}..."
  printf '%s' "$s"
}

_t_tail() {  # the end of a failed command's output, indented
  [ -s "$T_OUT" ] && tail -n 8 "$T_OUT" | cut -c1-240 | sed 's/^/          | /'
}

# Runs CMD under the time limit; sets T_STATUS and T_OUT, and T_CLASS to "", crash or hang.
_t_run() {
  T_OUT="$(mktemp "${T_TMP}/out.XXXXXX")"
  if declare -F "$1" >/dev/null; then
    # A shell function of the case: run it in a child bash that knows every function.
    # shellcheck disable=SC2046
    export -f $(declare -F | awk '{print $3}')
    { timeout -k 5 "$T_TIMEOUT" bash -c '"$@"' _ "$@" >"$T_OUT" 2>&1 </dev/null; } 2>/dev/null
  else
    # (the braces keep bash's "Killed" job report for an expected SIGKILL off the console)
    { timeout -k 5 "$T_TIMEOUT" "$@" >"$T_OUT" 2>&1 </dev/null; } 2>/dev/null
  fi
  T_STATUS=$?
  T_CLASS=""
  if [ "$T_STATUS" = 124 ] || [ "$T_STATUS" = 137 ] && _t_timed_out; then
    T_CLASS=hang
  elif grep -qE 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|terminate called|Segmentation fault|core dumped' "$T_OUT"; then
    T_CLASS=crash
  elif [ "$T_STATUS" -gt 128 ]; then
    local sig=$((T_STATUS - 128)) allowed=" ${T_ALLOW_SIGNALS:-} "
    [[ "$allowed" == *" $sig "* ]] || T_CLASS=crash
  fi
}

# timeout(1) exits 124 when it stopped the command (137 when it had to SIGKILL it); a command
# that itself exits 124 or dies by SIGKILL is told apart by the elapsed time.
_t_timed_out() { [ $(( $(date +%s) - T_START )) -ge "$T_TIMEOUT" ]; }

_t_attempt() {  # MODE EXTRA CMD...: one attempt, classified and recorded
  local mode="$1" extra="$2"
  shift 2
  local what
  what="$(_t_describe "$@")"
  T_START=$(date +%s)
  _t_run "$@"
  local class="$T_CLASS" why=""
  # An exact status asked for is no crash even when it reads like a signal's (143 = 128 + 15).
  if [ "$mode" = status ] && [ "$class" = crash ] && [ "$T_STATUS" = "$extra" ] &&
     ! grep -qE 'ERROR: (Address|Leak|Thread|Memory)Sanitizer|runtime error:|terminate called' "$T_OUT"; then
    class=""
  fi
  if [ -z "$class" ]; then
    case "$mode" in
      fail)
        if [ "$T_STATUS" = 0 ]; then
          class=silent why=" (exit 0, a failure was expected)"
        elif ! grep -qF -- "$extra" "$T_OUT"; then
          class=unclear why=" (exit $T_STATUS without \"$extra\")"
        fi ;;
      ok)
        [ "$T_STATUS" = 0 ] || class=silent why=" (exit $T_STATUS, success was expected)" ;;
      status)
        [ "$T_STATUS" = "$extra" ] || class=silent why=" (exit $T_STATUS, $extra was expected)" ;;
    esac
  else
    why=" (exit $T_STATUS)"
  fi
  if [ -z "$class" ]; then
    _t_record ok "$what"
  else
    _t_record "$class" "$what$why"
    _t_tail
  fi
  [ -z "$class" ]
}

expect_fail() { local sub="$1"; shift; _t_attempt fail "$sub" "$@"; }
expect_ok() { _t_attempt ok "" "$@"; }
expect_status() { local code="$1"; shift; _t_attempt status "$code" "$@"; }
attempt_ok() { _t_record ok "$1"; }
report() {
  case "$1" in
    crash|hang|silent|unclear|lost) _t_record "$1" "$2" ;;
    *) _t_record unclear "report with unknown class '$1': $2" ;;
  esac
  return 0
}

# ---------------------------------------------------------------------------------------------
# Child mode: run one case function in the current directory.
if [ "${1:-}" = --run-case ]; then
  file="$2" T_CASE="$3"
  export T_CASE
  # shellcheck disable=SC1090
  source "$file"
  "$T_CASE"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OURO="${OURO:-$ROOT/build/ouro}"
OURO_FAULT="${OURO_FAULT:-$ROOT/build/tests/ouro_fault_worker}"
only=""
keep=0
while [ $# -gt 0 ]; do
  case "$1" in
    --ouro) OURO="$2"; shift 2 ;;
    --fault-worker) OURO_FAULT="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    --keep) keep=1; shift ;;
    -h|--help) sed -n '2,35p' "$0"; exit 0 ;;
    *) echo "torture.sh: unknown argument '$1'" >&2; exit 2 ;;
  esac
done
case "$OURO" in /*) ;; *) OURO="$(cd "$(dirname "$OURO")" && pwd)/$(basename "$OURO")" ;; esac
[ -x "$OURO" ] || { echo "torture.sh: no ouro binary at $OURO (build it or pass --ouro)" >&2; exit 2; }
case "$OURO_FAULT" in /*) ;; *) OURO_FAULT="$(cd "$(dirname "$OURO_FAULT")" && pwd)/$(basename "$OURO_FAULT")" ;; esac
[ -x "$OURO_FAULT" ] || { echo "torture.sh: no fault worker at $OURO_FAULT (build ouro_fault_worker or pass --fault-worker)" >&2; exit 2; }
T_TIMEOUT="${T_TIMEOUT:-60}"
T_CASE_TIMEOUT="${T_CASE_TIMEOUT:-300}"  # a whole case, all its attempts

work="$(mktemp -d "${TMPDIR:-/tmp}/ouro-torture.XXXXXX")"
cleanup() { if [ "$keep" = 1 ]; then echo "kept $work"; else chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"; fi; }
trap cleanup EXIT
FIX="$work/fix"
T_TALLY="$work/tally.tsv"
T_TMP="$work/tmp"
mkdir -p "$FIX" "$T_TMP"
: >"$T_TALLY"
export OURO OURO_FAULT ROOT FIX T_TIMEOUT T_TALLY T_TMP

# Fixtures: a 512-token BPE tokenizer and shards of ~150 KB of the tokenizer tests' corpus, a
# 2-layer 32-wide model, and a checkpoint of it after 4 steps.
make_fixtures() (
  set -e
  { xz -dc "$ROOT/tests/fixtures/tokenizer/corpus.txt.xz" || true; } | head -c 150000 >"$work/text.txt"
  "$OURO" tokenizer train --input "$work/text.txt" --vocab 512 --out "$FIX/tok.tiktoken"
  "$OURO" prepare --input "$work/text.txt" --out "$FIX/data" --tokenizer "$FIX/tok.tiktoken" \
    --val-frac 0.1 --quiet
  # prepare writes rolling shards (PREFIX_train_000000.bin, ...); this corpus fits one of each.
  mv "$FIX/data_train_000000.bin" "$FIX/data_train.bin"
  mv "$FIX/data_val_000000.bin" "$FIX/data_val.bin"
  cat >"$FIX/tiny.toml" <<EOF
# torture fixture: trains in about a second on one core
[model]
n_layer = 2
n_head = 2
n_embd = 32
seq_len = 32
vocab_size = 512

[train]
steps = 8
batch_size = 4
lr = 1e-3
warmup_steps = 2
seed = 7
eval_every = 4
eval_batches = 2
log_every = 1

[data]
train = "$FIX/data_train.bin"
val = "$FIX/data_val.bin"
tokenizer = "$FIX/tok.tiktoken"

[run]
out_dir = "run"
device = "cpu"
threads = 1

[checkpoint]
every = 2
keep = 2
EOF
  (cd "$work" && "$OURO" train --config "$FIX/tiny.toml" --set run.out_dir="$work/fixrun" \
     --set train.steps=4)
  cp -r "$work/fixrun/checkpoints/step_000004" "$FIX/ckpt"
)
echo "torture: making fixtures in $FIX"
if ! make_fixtures >"$work/fixtures.log" 2>&1; then
  tail -n 30 "$work/fixtures.log" >&2
  echo "torture: could not make the fixtures" >&2
  exit 2
fi
chmod -R a-w "$FIX"

# Every case_* function of every case file, in file order then definition order.
n_cases=0
for file in "$ROOT"/tools/torture/cases_*.sh; do
  [ -e "$file" ] || continue
  cases=$(bash -c 'source "$1" >/dev/null 2>&1; declare -F' _ "$file" | awk '{print $3}' | grep '^case_' || true)
  # declare -F sorts by name; keep the file's order instead.
  ordered=$(grep -oE '^[[:space:]]*(function[[:space:]]+)?case_[A-Za-z0-9_]+' "$file" |
            sed -E 's/^[[:space:]]*(function[[:space:]]+)?//' | awk '!seen[$0]++')
  for c in $ordered; do
    grep -qx "$c" <<<"$cases" || continue
    if [ -n "$only" ] && ! [[ "$c" =~ $only ]]; then continue; fi
    n_cases=$((n_cases + 1))
    dir="$work/cases/$c"
    mkdir -p "$dir"
    echo "$(basename "$file") $c"
    before=$(wc -l <"$T_TALLY")
    t0=$(date +%s)
    (cd "$dir" && T_CASE="$c" timeout -k 10 "$T_CASE_TIMEOUT" bash "$ROOT/tools/torture.sh" --run-case "$file" "$c")
    rc=$?
    if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
      T_CASE="$c" _t_record hang "the whole case ran past T_CASE_TIMEOUT=${T_CASE_TIMEOUT}s"
    elif [ "$rc" != 0 ]; then
      T_CASE="$c" _t_record crash "the case script itself failed (exit $rc)"
    elif [ "$(wc -l <"$T_TALLY")" = "$before" ]; then
      T_CASE="$c" _t_record unclear "the case made no attempt"
    fi
    echo "  ($(( $(date +%s) - t0 ))s)"
    [ "$keep" = 1 ] || { chmod -R u+w "$dir" 2>/dev/null; rm -rf "$dir"; }
  done
done

count() { awk -F'\t' -v c="$1" '$1 == c' "$T_TALLY" | wc -l; }
attempts=$(wc -l <"$T_TALLY")
crashes=$(count crash) hangs=$(count hang) silent=$(count silent) unclear=$(count unclear) lost=$(count lost)
echo
echo "cases $n_cases"
echo "attempts $attempts, crashes $crashes, hangs $hangs, silent-wrong $silent, unclear $unclear, data-lost $lost"
if [ "$attempts" = 0 ] || [ $((crashes + hangs + silent + unclear + lost)) != 0 ]; then
  awk -F'\t' '$1 != "ok" {printf "  %s %s: %s\n", $1, $2, $3}' "$T_TALLY"
  exit 1
fi
exit 0
