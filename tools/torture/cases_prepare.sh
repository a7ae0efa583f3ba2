# Torture cases: `ouro prepare` (issue 21 item 12, issue 23's inputs and interruptions). Sourced
# by tools/torture.sh (contract: each case_* runs in a fresh empty directory with OURO, FIX, ROOT).

# Item 12: --count 2e12 grew memory without bound before the shard limit was checked at write
# time; now refused first (under a 3 GB address-space limit a regression dies of bad_alloc).
case_prepare_task_huge_count() {
  expect_fail "--count 2000000000000 would make about" \
    bash -c "ulimit -v 3000000; exec '$OURO' prepare --task add --count 2000000000000 --out x"
  [ -e x_train.bin ] && report lost "prepare --task left x_train.bin after refusing --count" || attempt_ok "no shard written"
}

# Malformed JSONL lines are named by file and line; --skip-bad skips and counts them.
case_prepare_bad_jsonl_lines() {
  printf '{"text": "one"}\n{"text": 5}\n' >a.jsonl
  expect_fail "a.jsonl:2: key 'text' is number, not a string" "$OURO" prepare -q a.jsonl -o o
  printf '{"text": "one"}\n{nope\n' >b.jsonl
  expect_fail "b.jsonl:2: invalid JSON" "$OURO" prepare -q b.jsonl -o o
  printf '{"body": "one"}\n' >c.jsonl
  expect_fail "c.jsonl:1: no key 'text'" "$OURO" prepare -q c.jsonl -o o
  printf '{"text": "one two three"}\n[1]\n{"text": "four"}\n' >d.jsonl
  expect_ok "$OURO" prepare -q --skip-bad d.jsonl -o d
  grep -q '"bad_lines": 1' d.manifest.json && attempt_ok "--skip-bad counts the line" ||
    report silent "--skip-bad: the manifest does not count the bad line"
  # Corrupt or truncated compressed input names the file.
  printf '{"text": "one"}\n' | gzip -c | head -c 20 >t.jsonl.gz
  expect_fail "t.jsonl.gz" "$OURO" prepare -q t.jsonl.gz -o o
  printf 'not zstd at all' >z.jsonl.zst
  expect_fail "z.jsonl.zst" "$OURO" prepare -q z.jsonl.zst -o o
}

# kill -9 while a shard is open leaves complete shards only (the open one is a hidden .tmp);
# the rerun writes what an uninterrupted run writes.
case_prepare_killed_midway() {
  head -c 200000 /dev/urandom | base64 -w 100 >part.txt  # ~270k byte tokens: 2 full train shards + 1 open
  mkfifo in
  "$OURO" prepare -q --shard-tokens 100000 --block 1000 -o k - <in 2>/dev/null &
  local pid=$! i f bad=0
  exec 3>in
  cat part.txt >&3  # standard input stays open: prepare waits with its third shard open
  for i in $(seq 1 200); do [ -e k_train_000001.bin ] && break; sleep 0.05; done
  sleep 0.3
  kill -9 "$pid" 2>/dev/null
  wait "$pid" 2>/dev/null
  exec 3>&-
  for f in k_*.bin; do  # every visible shard is complete: header + 100000 uint16 tokens
    [ "$(stat -c %s "$f")" = 201024 ] || bad=1
  done
  if [ "$bad" = 0 ] && [ -e k_train_000001.bin ] && [ -e .k_train_000002.bin.tmp ]; then
    attempt_ok "only complete shards after kill -9 (the open one is a hidden .tmp)"
  else
    report lost "after kill -9: $(ls -a | tr '\n' ' ')"
  fi
  expect_ok bash -c "'$OURO' prepare -q --shard-tokens 100000 --block 1000 -o k - < part.txt"
  expect_ok "$OURO" prepare -q --shard-tokens 100000 --block 1000 -i part.txt -o ref
  if cmp -s k_train_000002.bin ref_train_000002.bin && [ ! -e .k_train_000002.bin.tmp ]; then
    attempt_ok "the rerun matches an uninterrupted run"
  else
    report lost "the rerun differs from an uninterrupted run (or left debris)"
  fi
}
