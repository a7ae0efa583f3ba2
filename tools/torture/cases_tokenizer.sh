# Torture cases: tokenizer files and split patterns (issue 21 items 1 and 11). Sourced by
# tools/torture.sh (contract: each case_* runs in a fresh empty directory with OURO, FIX, ROOT).

# A copy of the fixture's ranks with a sidecar of our own: _tok_with_sidecar NAME JSON.
_tok_with_sidecar() {
  cp "$FIX/tok.tiktoken" "$1"
  printf '%s\n' "$2" >"$1.json"
}

# Item 1: catastrophic backtracking in a sidecar's split pattern used to abort the process from
# inside the encoder's OpenMP loop (std::terminate) after running for minutes; now a fast error
# naming the tokenizer file and the byte offset, on one thread and on two.
case_tokenizer_catastrophic_pattern() {
  local n
  n=$(grep -c . "$FIX/tok.tiktoken")
  _tok_with_sidecar h.tiktoken "{\"pattern\": \"(?:a|aa)+[bc]|[^a]|a\", \"special_tokens\": {\"<|endoftext|>\": $n}}"
  { printf 'hello '; head -c 80 /dev/zero | tr '\0' a; printf ' then b\n'; } >bad.txt
  expect_fail "h.tiktoken: document 0, byte offset 6" bash -c "'$OURO' tokenize -t h.tiktoken < bad.txt"
  expect_fail "byte offset 6" "$OURO" prepare -q --threads 2 -i bad.txt -t h.tiktoken -o out
  expect_fail "byte offset 6" "$OURO" prepare -q --threads 1 -i bad.txt -t h.tiktoken -o out
  # JSONL documents are encoded inside another OpenMP loop: the same error, not an abort.
  { printf '{"text": "fine"}\n{"text": "'; head -c 80 /dev/zero | tr '\0' a; printf ' b"}\n'; } >bad.jsonl
  expect_fail "byte offset 0" "$OURO" prepare -q --threads 2 bad.jsonl -t h.tiktoken -o out
}

# Item 11: special ids far past the ranks (4e9; 3e8 made `tokenizer info` take 4 GB) or past
# 2^32 (2^32+5 was truncated to 5) are refused naming the sidecar and the key, before any table
# of that size is made.
case_tokenizer_huge_special_ids() {
  local id
  for id in 4000000000 300000000 4294967301; do
    _tok_with_sidecar s.tiktoken "{\"special_tokens\": {\"<|endoftext|>\": $id}}"
    expect_fail "s.tiktoken.json: special_tokens.<|endoftext|> = $id" \
      bash -c "ulimit -v 3000000; exec '$OURO' tokenizer info -t s.tiktoken"
  done
  _tok_with_sidecar s.tiktoken '{"special_tokens": {"<|endoftext|>": 4e9}}'
  expect_fail "special_tokens.<|endoftext|> must be a non-negative integer" "$OURO" tokenizer info -t s.tiktoken
}
