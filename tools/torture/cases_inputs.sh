# Torture cases (tools/torture.sh): untrusted sizes, configs and command-line values (issue 21,
# items 2, 8, 11-14). Each case runs in a fresh empty directory; see tools/torture.sh for the
# helpers and $FIX. Files are crafted with python3 (struct) where bytes matter.
# shellcheck shell=bash

# A copy of the fixture checkpoint that a case may edit.
_inputs_ckpt_copy() {
  cp -r "$FIX/ckpt" ck && chmod -R u+w ck
}

# The fixture config without its [model] section (for --init to fill in).
_inputs_config_without_model() {
  awk '/^\[/{skip = ($0 == "[model]")} !skip' "$FIX/tiny.toml" >nomodel.toml
}

# ---- item 2: sizes from headers and configs, overflow-checked and bounded

case_inputs_llmc_header_that_wraps() {
  # 1024 + 4 * params wraps to exactly 2098176 bytes for this header (L=1398096, C=2^19).
  python3 - <<'EOF'
import struct
h = [0] * 256
h[0:8] = [20240326, 3, 15379055, 128, 1398096, 1, 1 << 19, 128]
with open("evil.bin", "wb") as f:
    f.write(struct.pack("<256i", *h))
    f.truncate(2098176)
EOF
  expect_fail "header[4] (num_layers) = 1398096" "$OURO" eval --init evil.bin --data "$FIX/data_val.bin"
  expect_fail "header[4] (num_layers) = 1398096" "$OURO" sample --init evil.bin -n 4
}

case_inputs_config_keys_that_overflow() {
  expect_fail "model.n_layer = 1398099" "$OURO" train --config "$FIX/tiny.toml" --set model.n_embd=1048576 \
    --set model.n_layer=1398099 --set model.seq_len=11184712 --set model.n_head=1
  expect_fail "model.seq_len = 2147483647 is out of range" "$OURO" train --config "$FIX/tiny.toml" \
    --set model.seq_len=2147483647
}

case_inputs_config_json_that_overflows() {
  _inputs_ckpt_copy
  python3 - <<'EOF'
import json
j = json.load(open("ck/config.json"))
j["n_layer"], j["n_embd"], j["n_head"] = 1 << 20, 1 << 24, 1
json.dump(j, open("ck/config.json", "w"))
EOF
  expect_fail "key 'n_layer' = 1048576" "$OURO" sample --init ck -n 4
}

case_inputs_safetensors_shape_that_overflows() {
  _inputs_ckpt_copy
  python3 - <<'EOF'
import json, struct
path = "ck/model.safetensors"
data = open(path, "rb").read()
n = struct.unpack("<Q", data[:8])[0]
header = json.loads(data[8:8 + n])
name = next(k for k in header if k != "__metadata__")
header[name]["shape"] = [1 << 62, 8]
text = json.dumps(header).encode()
open(path, "wb").write(struct.pack("<Q", len(text)) + text + data[8 + n:])
EOF
  expect_fail "shape overflows" "$OURO" eval --init ck --data "$FIX/data_val.bin"
}

# ---- item 8: a config that is a directory

case_inputs_config_is_a_directory() {
  mkdir cfgdir
  expect_fail "is a directory, not a TOML config file" "$OURO" train --config cfgdir
  [ -e runs ] && report silent "train --config DIR created runs/ (it trained the defaults)"
}

# ---- item 11: messages that name the key, file or offset

case_inputs_huge_vocab_in_config() {
  expect_fail "model.vocab_size = 16777216" "$OURO" train --config "$FIX/tiny.toml" \
    --set model.vocab_size=16777216 --set model.n_embd=16384 --set model.n_head=1
}

case_inputs_huge_vocab_in_config_json() {
  _inputs_ckpt_copy
  python3 - <<'EOF'
import json
j = json.load(open("ck/config.json"))
j["vocab_size"], j["n_embd"], j["n_head"] = 16777216, 16384, 1
json.dump(j, open("ck/config.json", "w"))
EOF
  expect_fail "key 'vocab_size' = 16777216" "$OURO" eval --init ck --data "$FIX/data_val.bin"
}

case_inputs_eval_out_of_vocabulary_token() {
  # A shard of a 600-token vocabulary, one token (index 50) beyond the fixture model's 512.
  python3 - <<'EOF'
import struct
toks = [5] * 400
toks[50] = 599
with open("oov.bin", "wb") as f:
    f.write(struct.pack("<256i", 20240520, 1, len(toks), *([0] * 253)))
    f.write(struct.pack("<%dH" % len(toks), *toks))
EOF
  expect_fail "token 599 at byte offset 1124" "$OURO" eval --init "$FIX/ckpt" --data oov.bin
}

case_inputs_run_out_dir_empty_or_under_a_file() {
  expect_fail "run.out_dir" "$OURO" train --config "$FIX/tiny.toml" --set run.out_dir=
  echo x >afile
  expect_fail "exists and is not a directory" "$OURO" train --config "$FIX/tiny.toml" --set run.out_dir=afile/run
}

case_inputs_sample_n_zero() {
  expect_fail "must be a positive integer" "$OURO" sample --init "$FIX/ckpt" -n 0
  if [ "$(wc -c <"$T_OUT")" -gt 600 ]; then report unclear "sample -n 0: a message of $(wc -c <"$T_OUT") bytes"; fi
}

case_inputs_more_shards_than_max_map_count_train() {
  local limit
  limit="$(cat /proc/sys/vm/max_map_count 2>/dev/null || echo 0)"
  if [ "$limit" -le 0 ] || [ "$limit" -gt 200000 ]; then
    attempt_ok "skipped: vm.max_map_count is $limit (too high to exhaust cheaply)"
    return
  fi
  # limit + 100 names for one small shard: each is mapped separately, as 70,000 shards would be.
  mkdir shards
  cp "$FIX/data_val.bin" shards/s_0.bin
  python3 - "$limit" <<'EOF' || { report unclear "could not make $limit shard names"; return; }
import os, shutil, sys
# ext4 allows 65000 links to one inode: a fresh copy every 60000 names.
for i in range(1, int(sys.argv[1]) + 100):
    src = "shards/s_%d.bin" % (i // 60000 * 60000)
    if i % 60000 == 0:
        shutil.copy("shards/s_0.bin", src)
    else:
        os.link(src, "shards/s_%d.bin" % i)
EOF
  # Shards are read with pread, not mapped: the run must start and train (it once failed here).
  expect_ok "$OURO" train --config "$FIX/tiny.toml" --set data.train=shards --set train.steps=2 \
    --set train.eval_every=0 --set checkpoint.every=0 --set run.out_dir=run
  rm -rf shards
}

# ---- item 12: values that were accepted silently

case_inputs_sample_many_tokens_says_capped() {
  expect_ok "$OURO" sample --init "$FIX/ckpt" --tokenizer "$FIX/tok.tiktoken" -n 1000000 --prompt "the"
  grep -q "capped to" "$T_OUT" || report silent "sample -n 1000000 returned one context without saying so"
}

case_inputs_sample_nan_values() {
  expect_fail "must be a finite number >= 0" "$OURO" sample --init "$FIX/ckpt" -n 4 -t nan
  expect_fail "must be a number in (0, 1]" "$OURO" sample --init "$FIX/ckpt" -n 4 --top-p nan
}

case_inputs_eval_negative_seq_and_batches() {
  expect_fail "must be a positive integer" "$OURO" eval --init "$FIX/ckpt" --data "$FIX/data_val.bin" --seq -5
  expect_fail "must be an integer >= 0" "$OURO" eval --init "$FIX/ckpt" --data "$FIX/data_val.bin" --batches -3
}

# ---- item 13: train --init takes the model section from the checkpoint

case_inputs_init_takes_the_model_shape() {
  _inputs_config_without_model
  expect_ok "$OURO" train --config nomodel.toml --init "$FIX/ckpt" --set train.steps=1 --set run.out_dir=a
  expect_fail "key 'model.n_layer' = 3 differs" "$OURO" train --config nomodel.toml --init "$FIX/ckpt" \
    --set train.steps=1 --set run.out_dir=b --set model.n_layer=3
}

# ---- item 14: eval takes train's keys and scores every window

case_inputs_eval_scores_every_window() {
  expect_ok "$OURO" eval --init "$FIX/ckpt" --data "$FIX/data_val.bin" --set train.batch_size=3 \
    --set run.threads=1 --json
  local got want
  got="$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().splitlines()[-1])["tokens"])' "$T_OUT" 2>/dev/null)"
  want="$(python3 -c 'import struct,sys; n = struct.unpack("<3i", open(sys.argv[1], "rb").read(12))[2]; print((n - 1) // 32 * 32)' "$FIX/data_val.bin")"
  [ "$got" = "$want" ] || report silent "eval scored $got tokens of the $want in whole windows"
}

case_inputs_data_shuffle_key() {
  expect_ok "$OURO" train --config "$FIX/tiny.toml" --set data.shuffle=false --set train.steps=1 --set run.out_dir=r
  expect_fail "data.shuffle" "$OURO" train --config "$FIX/tiny.toml" --set data.shuffle=maybe --set run.out_dir=s
}
