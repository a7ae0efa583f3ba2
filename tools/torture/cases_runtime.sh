# Torture cases of the run's life (issue 21 items 3-7, 9, 10): faults during training and
# checkpoint writes, signals, two processes on one run directory, a full disk, damaged
# checkpoint state, divergence. Sourced by tools/torture.sh (see its header for the helpers).

# A fresh run of the fixture model in ./run; extra arguments go to `ouro train`.
_rt_train() { "$OURO" train --config "$FIX/tiny.toml" "$@"; }

# The reference: 8 uninterrupted steps (checkpoints every 2) into ./ref, made once per case.
_rt_reference() {
  [ -d ref/checkpoints/step_000008 ] && return 0
  expect_ok "$OURO" train --config "$FIX/tiny.toml" --set run.out_dir=ref
}

# Does run/checkpoints/step_000008 hold the reference's bits (weights and AdamW moments)?
_rt_same_as_reference() {  # WHAT
  local f ok=1
  for f in model.safetensors optimizer.safetensors; do
    if ! cmp -s "ref/checkpoints/step_000008/$f" "run/checkpoints/step_000008/$f"; then
      ok=0
      report lost "$1: $f of the resumed run differs from the uninterrupted run's"
    fi
  done
  [ "$ok" = 1 ] && attempt_ok "$1: resumed bitwise equal to the uninterrupted run"
}

# Every step_* directory of run/ is complete (weights, optimizer, state).
_rt_checkpoints_complete() {  # WHAT
  local d ok=1
  for d in run/checkpoints/step_*; do
    [ -d "$d" ] || continue
    for f in model.safetensors config.json optimizer.safetensors state.json; do
      [ -s "$d/$f" ] || { ok=0; report lost "$1: $d lacks $f"; }
    done
  done
  [ "$ok" = 1 ] && attempt_ok "$1: every step_* checkpoint is complete"
}

# kill -9 inside each phase of a checkpoint write (the tests' fault worker makes the moment exact),
# then --resume: the newest complete checkpoint resumes to the same bits as an unbroken run.
case_kill9_inside_checkpoint_writes() {
  _rt_reference
  local phase
  for phase in debris model optimizer state renamed rotated; do
    rm -rf run
    OURO_FAULT_CHECKPOINT_KILL="$phase:6" T_ALLOW_SIGNALS=9 expect_status 137 "$OURO_FAULT" train \
      --config "$FIX/tiny.toml"
    _rt_checkpoints_complete "killed in phase $phase"
    expect_ok "$OURO" train --config "$FIX/tiny.toml" --resume
    _rt_same_as_reference "killed in phase $phase"
  done
}

# kill -9 from outside at a few moments of a 24-step run that checkpoints every step (so most
# kills land in or near a checkpoint write), then resume: the same bits as an unbroken run.
case_kill9_at_moments() {
  expect_ok "$OURO" train --config "$FIX/tiny.toml" --set run.out_dir=ref24 --set train.steps=24
  local delay f
  for delay in 0.3 0.7 1.1 1.5; do
    rm -rf run
    "$OURO" train --config "$FIX/tiny.toml" --set train.steps=24 --set checkpoint.every=1 >log 2>&1 &
    local pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    _rt_checkpoints_complete "kill -9 after ${delay}s ($(ls run/checkpoints 2>/dev/null | tail -n 1))"
    expect_ok "$OURO" train --config "$FIX/tiny.toml" --set train.steps=24 --set checkpoint.every=1 --resume
    local same=1
    for f in model.safetensors optimizer.safetensors; do
      cmp -s "ref24/checkpoints/step_000024/$f" "run/checkpoints/step_000024/$f" || same=0
    done
    if [ "$same" = 1 ]; then attempt_ok "kill -9 after ${delay}s: resumed bitwise equal to the unbroken run"
    else report lost "kill -9 after ${delay}s: the resumed run's step 24 differs from the unbroken run's"; fi
  done
}

# A signal to a running training: it checkpoints the step it reached and exits 128 + signal.
_rt_signal_run() {  # SIGNAL: runs, signals once the first step is logged, returns its status
  "$OURO" train --config "$FIX/tiny.toml" --set train.steps=1000000 --set checkpoint.every=0 \
    --set train.eval_every=0 >log 2>&1 &
  local pid=$! i
  for i in $(seq 600); do
    grep -q '"step"' run/metrics.jsonl 2>/dev/null && break
    sleep 0.05
  done
  kill -"$1" "$pid"
  wait "$pid"
}
export -f _rt_signal_run

_rt_stopped_run_checkpointed() {  # WHAT: the newest checkpoint is the last logged step
  local last ck
  last=$(grep -o '"step":[0-9]*' run/metrics.jsonl | tail -n 1 | cut -d: -f2)
  ck=$(ls -d run/checkpoints/step_* 2>/dev/null | tail -n 1)
  if [ -n "$last" ] && [ "$ck" = "run/checkpoints/$(printf 'step_%06d' "$last")" ]; then
    attempt_ok "$1: checkpoint of the last step ($last) written"
  else
    report lost "$1: last logged step '${last}', newest checkpoint '${ck}'"
  fi
}

case_sigterm_checkpoints_and_exits_143() {
  expect_status 143 bash -c '_rt_signal_run TERM'
  _rt_stopped_run_checkpointed SIGTERM
  if grep -q "interrupted by SIGTERM" log; then attempt_ok "SIGTERM: the log says why it stopped"
  else report unclear "SIGTERM: the log does not say 'interrupted by SIGTERM'"; fi
  expect_ok "$OURO" train --config "$FIX/tiny.toml" --resume --set train.steps=1000000 \
    --stop-at "$(($(ls run/checkpoints | tail -n 1 | sed 's/step_0*//') + 1))"
}

case_sighup_like_sigterm() {
  expect_status 129 bash -c '_rt_signal_run HUP'
  _rt_stopped_run_checkpointed SIGHUP
}

case_sigint_exits_130() {
  expect_status 130 bash -c '_rt_signal_run INT'
  _rt_stopped_run_checkpointed SIGINT
}

# Two processes on one run directory: the second is refused naming the directory and the pid.
case_two_processes_one_out_dir() {
  "$OURO" train --config "$FIX/tiny.toml" --set train.steps=1000000 --set checkpoint.every=0 \
    --set train.eval_every=0 >log 2>&1 &
  local pid=$! i
  for i in $(seq 600); do
    grep -q '"step"' run/metrics.jsonl 2>/dev/null && break
    sleep 0.05
  done
  expect_fail "pid $pid" "$OURO" train --config "$FIX/tiny.toml" --resume
  expect_fail "is in use" "$OURO" train --config "$FIX/tiny.toml"
  expect_fail "run" "$OURO" train --config "$FIX/tiny.toml" --set run.out_dir=./run/
  kill -9 "$pid"
  wait "$pid" 2>/dev/null
  # The lock dies with its holder, even by SIGKILL.
  expect_ok "$OURO" train --config "$FIX/tiny.toml" --set checkpoint.every=1 --resume --stop-at 3
}

# A full disk (a file-size limit: writes fail with EFBIG) during a checkpoint write: the run fails
# naming the file, the previous checkpoint survives and resumes.
case_full_disk_keeps_previous_checkpoint() {
  _rt_reference
  expect_ok "$OURO" train --config "$FIX/tiny.toml" --stop-at 2
  expect_fail "model.safetensors" bash -c \
    'trap "" XFSZ; ulimit -f 100; exec "$OURO" train --config "$FIX/tiny.toml" --resume --stop-at 4'
  _rt_checkpoints_complete "full disk"
  if [ -d run/checkpoints/step_000002 ] && ! ls -d run/checkpoints/.tmp-* >/dev/null 2>&1; then
    attempt_ok "full disk: step 2 kept, no debris"
  else
    report lost "full disk: step 2 missing or temporary debris left"
  fi
  expect_ok "$OURO" train --config "$FIX/tiny.toml" --resume
  _rt_same_as_reference "full disk"
}

# Waits up to T_TIMEOUT for a background PID; sets RT_RC (or "hang", after killing it).
_rt_wait() {
  local i
  for i in $(seq $((T_TIMEOUT * 10))); do
    kill -0 "$1" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$1" 2>/dev/null; then
    kill -9 "$1"
    wait "$1" 2>/dev/null
    RT_RC=hang
  else
    wait "$1"
    RT_RC=$?
  fi
}

# Item 3: a shard overwritten in place while training reads it: no SIGBUS, an error naming the
# file, after a checkpoint of the last whole step.
case_shard_overwritten_while_training() {
  cp "$FIX/data_train.bin" train.bin
  "$OURO" train --config "$FIX/tiny.toml" --set data.train=train.bin --set train.steps=1000000 \
    --set checkpoint.every=0 --set train.eval_every=0 >log 2>&1 &
  local pid=$! i
  for i in $(seq 600); do
    grep -q '"step"' run/metrics.jsonl 2>/dev/null && break
    sleep 0.05
  done
  : >train.bin  # truncated in place, as `cp other train.bin` or a rewriting tool would
  _rt_wait "$pid"
  if [ "$RT_RC" = hang ]; then report hang "shard truncated in place: the run went on"
  elif [ "$RT_RC" -gt 128 ]; then report crash "shard truncated in place: died by signal $((RT_RC - 128))"
  elif [ "$RT_RC" = 0 ]; then report silent "shard truncated in place: exit 0"
  elif ! grep -q "train.bin" log; then report unclear "shard truncated in place: the error does not name train.bin"
  else attempt_ok "shard truncated in place: exit $RT_RC naming train.bin"; fi
  if ls -d run/checkpoints/step_* >/dev/null 2>&1; then
    attempt_ok "shard truncated in place: checkpoint written before failing"
  else
    report lost "shard truncated in place: no checkpoint"
  fi
}

# Item 5: a checkpoint is complete or refused naming what is missing or wrong.
_rt_damaged() {  # installs $FIX/ckpt as run/checkpoints/step_000004
  rm -rf run
  mkdir -p run/checkpoints
  cp -r "$FIX/ckpt" run/checkpoints/step_000004
  chmod -R u+w run
}
_rt_set_state() {  # JQ-LIKE PYTHON EXPRESSION on `s`
  python3 -c 'import json,sys; p="run/checkpoints/step_000004/state.json"; s=json.load(open(p)); exec(sys.argv[1]); open(p,"w").write(json.dumps(s))' "$1"
}
case_checkpoint_incomplete_or_inconsistent() {
  _rt_damaged; rm run/checkpoints/step_000004/state.json
  expect_fail "state.json" _rt_train --resume
  _rt_damaged; rm run/checkpoints/step_000004/optimizer.safetensors
  expect_fail "optimizer.safetensors" _rt_train --resume
  _rt_damaged; _rt_set_state 's["step"]=5.5'
  expect_fail "'step'" _rt_train --resume
  _rt_damaged; _rt_set_state 's["step"]=-100'
  expect_fail "'step'" _rt_train --resume
  _rt_damaged; _rt_set_state 's["step"]=10**15'
  expect_fail "step_000004" _rt_train --resume
  _rt_damaged; _rt_set_state 's["step"]="4"'
  expect_fail "'step'" _rt_train --resume
  _rt_damaged; _rt_set_state 'del s["step"]'
  expect_fail "'step'" _rt_train --resume
  _rt_damaged; _rt_set_state 's["opt_steps"]=[1]'
  expect_fail "'opt_steps'" _rt_train --resume
  _rt_damaged; _rt_set_state 's["elapsed_s"]="x"'
  expect_fail "'elapsed_s'" _rt_train --resume
  _rt_damaged; _rt_set_state 's["config"]=5'
  expect_fail "'config'" _rt_train --resume
  _rt_damaged; _rt_set_state 's["loader"]={"epoch":"a","cursor":1}'
  expect_fail "state.json" _rt_train --resume
  _rt_damaged; _rt_set_state 's=[s]'
  expect_fail "state.json" _rt_train --resume
  _rt_damaged; printf '{"step": 4,' >run/checkpoints/step_000004/state.json
  expect_fail "state.json" _rt_train --resume
}
export -f _rt_train

# Item 5: stray lines in metrics.jsonl do not block --resume; they are dropped with a warning.
case_metrics_stray_lines_tolerated() {
  _rt_damaged
  printf '{"step":1,"loss":6.2}\n[1,2]\n3\n"x"\nnull\n{"step":"two"}\n{"step":2,"loss":6.1}\n{broken\n' \
    >run/metrics.jsonl
  expect_ok _rt_train --resume --stop-at 5
  if grep -q "metrics.jsonl" "$T_OUT" && grep -q '"step":5' run/metrics.jsonl; then
    attempt_ok "stray metrics lines: warned and resumed"
  else
    report unclear "stray metrics lines: no warning naming metrics.jsonl, or no step 5 record"
  fi
}

# Item 4: divergence never leaves bad weights as the checkpoint to resume from.
case_divergence_keeps_finite_checkpoint() {
  # Resumed from the good step 4 with lr 1e20 (finite, so valid): the weights blow up at once.
  _rt_damaged
  expect_fail "non-finite" _rt_train --resume --set train.lr=1e20 --set train.max_bad_steps=2 \
    --set checkpoint.every=1 --set checkpoint.keep=1 --set train.eval_every=0
  local named
  named=$(grep -o 'checkpoint of step [0-9]*' "$T_OUT" | tail -n 1 | grep -o '[0-9]*$')
  local ck newest
  newest=$(ls -d run/checkpoints/step_* 2>/dev/null | tail -n 1)
  if [ -n "$named" ] && [ "$newest" = "run/checkpoints/$(printf 'step_%06d' "$named")" ]; then
    attempt_ok "divergence: the message names the newest checkpoint ($named)"
  elif [ -z "$named" ] && [ -z "$newest" ]; then
    attempt_ok "divergence: no finite checkpoint, none named"
  else
    report lost "divergence: message names step '$named', newest checkpoint is '$newest'"
  fi
  # The named checkpoint evaluates to a finite loss.
  if [ -n "$newest" ]; then
    expect_ok "$OURO" eval --init "$newest" --data "$FIX/data_val.bin" --batch 2 --batches 2 --json
  fi
  # A resume from it never starts from non-finite weights.
  for ck in run/checkpoints/*; do
    case "$(basename "$ck")" in step_*) ;; *) continue ;; esac
    python3 - "$ck/model.safetensors" <<'EOF' || report lost "divergence: $ck holds non-finite or exploded weights"
import json, math, struct, sys
b = open(sys.argv[1], "rb").read()
n = struct.unpack("<Q", b[:8])[0]
data = b[8 + n:]
vals = struct.unpack("<%df" % (len(data) // 4), data)
sys.exit(0 if all(math.isfinite(v) and abs(v) < 1e6 for v in vals) else 1)
EOF
  done
}

# Item 4: eval of a non-finite model fails; non-finite or fp32-overflowing optimizer keys are refused.
case_nonfinite_model_and_keys() {
  cp -r "$FIX/ckpt" bad
  chmod -R u+w bad
  python3 - bad/model.safetensors <<'EOF'
import struct, sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
n = struct.unpack("<Q", b[:8])[0]
b[8 + n:8 + n + 4] = struct.pack("<f", float("nan"))
open(p, "wb").write(b)
EOF
  expect_fail "non-finite" "$OURO" eval --init bad --data "$FIX/data_val.bin" --batch 2 --batches 2
  local key value
  for key in lr weight_decay eps; do
    for value in inf nan 1e300 -inf; do
      expect_fail "train.$key" _rt_train --set "train.$key=$value"
    done
  done
}

# Item 7: every input is opened and checked before the first step.
case_inputs_checked_at_start() {
  expect_fail "missing.bin" _rt_train --set data.val=missing.bin
  head -c 1100 "$FIX/data_val.bin" >short.bin  # a valid header, too few tokens for a batch
  printf '\x26\x00\x00\x00' | dd of=short.bin bs=1 seek=8 conv=notrunc 2>/dev/null
  expect_fail "short.bin" _rt_train --set data.val=short.bin
  if [ ! -d run/checkpoints ] || [ -z "$(ls run/checkpoints)" ]; then
    attempt_ok "bad data.val refused before any step"
  else
    report unclear "bad data.val: training ran before the refusal"
  fi
}

# Item 9: a non-UTF-8 path round-trips through the checkpoint; --resume accepts its own run.
case_non_utf8_paths_resume() {
  local d=$'dat\xff\xfe'
  mkdir "$d"
  cp "$FIX/data_train.bin" "$d/train.bin"
  expect_ok _rt_train --set "data.train=$d/train.bin" --stop-at 2
  expect_ok _rt_train --set "data.train=$d/train.bin" --resume --stop-at 4
  local out=$'run\xe9'
  expect_ok _rt_train --set "run.out_dir=$out" --stop-at 2
  expect_ok _rt_train --set "run.out_dir=$out" --resume --stop-at 4
}
