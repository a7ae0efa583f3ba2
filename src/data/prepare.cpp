// Corpus preparation: files -> one token stream (<|endoftext|> + each file's tokens) -> fixed
// blocks dealt into a train and a val shard. Byte-level (tokens = bytes) or with a BPE tokenizer.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <system_error>

#include "common/progress_bar.h"
#include "ouro/data.h"
#include "ouro/error.h"
#include "ouro/tokenizer.h"

namespace ouro {

namespace fs = std::filesystem;

namespace {

// Deals the stream into the two splits as it arrives: block i of block_tokens goes to val when
// i % k == k - 1. Blocks rather than documents keep the split ratio exact whatever the
// document sizes, and taking the last of every k keeps val spread over the whole corpus.
struct Splitter {
  size_t block_tokens;
  uint64_t k;
  std::vector<uint32_t> train, val;
  uint64_t pos = 0;  // tokens emitted so far

  template <typename T>
  void emit(const T* toks, size_t n) {
    while (n > 0) {
      const uint64_t block = pos / block_tokens;
      const size_t room = static_cast<size_t>(block_tokens - pos % block_tokens);
      const size_t take = std::min(room, n);
      auto& dst = block % k == k - 1 ? val : train;
      dst.insert(dst.end(), toks, toks + take);
      pos += take;
      toks += take;
      n -= take;
    }
  }
  void emit_one(uint32_t token) { emit(&token, 1); }
};

Splitter make_splitter(const fs::path& out_prefix, double val_frac, size_t block_tokens) {
  OURO_CHECK(val_frac > 0.0 && val_frac <= 0.5,
             "prepare {}: val_frac must be in (0, 0.5], got {}", out_prefix.string(), val_frac);
  OURO_CHECK(block_tokens > 0, "prepare {}: block_tokens must be positive", out_prefix.string());
  return Splitter{block_tokens, std::max<uint64_t>(2, std::llround(1.0 / val_frac)), {}, {}};
}

std::ifstream open_input(const fs::path& in) {
  std::error_code ec;
  OURO_CHECK(fs::is_regular_file(in, ec), "prepare: input {} is not a readable regular file",
             in.string());
  std::ifstream f(in, std::ios::binary);
  if (!f) fail("prepare: cannot open input {}: {}", in.string(), std::strerror(errno));
  return f;
}

// Appends up to `want` bytes of f to buf; returns how many.
size_t read_more(std::ifstream& f, const fs::path& in, std::string& buf, size_t want, uint64_t done) {
  const size_t old = buf.size();
  buf.resize(old + want);
  f.read(buf.data() + old, static_cast<std::streamsize>(want));
  const auto got = static_cast<size_t>(f.gcount());
  buf.resize(old + got);
  if (f.bad()) fail("prepare: error reading input {} after {} bytes", in.string(), done + got);
  return got;
}

PrepareResult write_splits(const fs::path& out_prefix, Splitter& split, size_t vocab) {
  PrepareResult r;
  r.train = out_prefix.string() + "_train.bin";
  r.val = out_prefix.string() + "_val.bin";
  r.train_tokens = split.train.size();
  r.val_tokens = split.val.size();
  r.vocab_size = vocab;
  write_shard(r.train, split.train, static_cast<int>(vocab));
  write_shard(r.val, split.val, static_cast<int>(vocab));
  return r;
}

}  // namespace

PrepareResult prepare_bytes(const std::vector<fs::path>& inputs, const fs::path& out_prefix,
                            double val_frac, size_t block_tokens) {
  OURO_CHECK(!inputs.empty(), "prepare {}: no input files", out_prefix.string());
  Splitter split = make_splitter(out_prefix, val_frac, block_tokens);
  std::string buf;
  for (const auto& in : inputs) {
    std::ifstream f = open_input(in);
    split.emit_one(kByteEot);
    uint64_t bytes = 0;
    while (f) {
      buf.clear();
      const size_t got = read_more(f, in, buf, 1 << 20, bytes);
      split.emit(reinterpret_cast<const uint8_t*>(buf.data()), got);
      bytes += got;
    }
    OURO_CHECK(bytes > 0, "prepare: input {} is empty", in.string());
  }
  return write_splits(out_prefix, split, kByteVocab);
}

PrepareResult prepare_tokens(const std::vector<fs::path>& inputs, const fs::path& out_prefix,
                             const Tokenizer& tok, double val_frac, size_t block_tokens,
                             bool progress, int threads, size_t read_bytes) {
  OURO_CHECK(!inputs.empty(), "prepare {}: no input files", out_prefix.string());
  Splitter split = make_splitter(out_prefix, val_frac, block_tokens);
  const uint32_t eot = tok.eot_id();
  uint64_t total = 0, done = 0;
  for (const auto& in : inputs) {
    std::error_code ec;
    const auto size = fs::file_size(in, ec);
    if (!ec) total += size;
  }
  ProgressBar bar("prepare", total, progress);
  OURO_CHECK(read_bytes > 0, "prepare {}: read_bytes must be positive", out_prefix.string());
  std::string buf;
  std::vector<uint32_t> ids;
  for (const auto& in : inputs) {
    std::ifstream f = open_input(in);
    split.emit_one(eot);
    buf.clear();
    uint64_t bytes = 0;
    for (;;) {
      const size_t got = read_more(f, in, buf, read_bytes, bytes);
      bytes += got;
      done += got;
      ids.clear();
      if (got == 0) {  // end of file: the rest is the document's tail
        ids = tok.encode(buf, threads);
        split.emit(ids.data(), ids.size());
        break;
      }
      // Encode up to the last safe cut; keep the rest for the next block. A buffer with no
      // cut (a pattern without known cuts, or no newline + letter) just grows.
      const size_t cut = tok.encode_prefix(buf, ids, threads);
      split.emit(ids.data(), ids.size());
      buf.erase(0, cut);
      bar.update(done);
    }
    OURO_CHECK(bytes > 0, "prepare: input {} is empty", in.string());
  }
  bar.finish();
  return write_splits(out_prefix, split, tok.vocab_size());
}

}  // namespace ouro
