// Byte-level corpus preparation: files -> one token stream (<|endoftext|> + bytes per file) ->
// fixed blocks dealt into a train and a val shard.
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <system_error>

#include "ouro/data.h"
#include "ouro/error.h"

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

  void emit(const uint8_t* bytes, size_t n) {
    while (n > 0) {
      const uint64_t block = pos / block_tokens;
      const size_t room = static_cast<size_t>(block_tokens - pos % block_tokens);
      const size_t take = std::min(room, n);
      auto& dst = block % k == k - 1 ? val : train;
      dst.insert(dst.end(), bytes, bytes + take);
      pos += take;
      bytes += take;
      n -= take;
    }
  }
  void emit_eot() {
    const uint64_t block = pos / block_tokens;
    (block % k == k - 1 ? val : train).push_back(kByteEot);
    ++pos;
  }
};

}  // namespace

PrepareResult prepare_bytes(const std::vector<fs::path>& inputs, const fs::path& out_prefix,
                            double val_frac, size_t block_tokens) {
  OURO_CHECK(!inputs.empty(), "prepare {}: no input files", out_prefix.string());
  OURO_CHECK(val_frac > 0.0 && val_frac <= 0.5,
             "prepare {}: val_frac must be in (0, 0.5], got {}", out_prefix.string(), val_frac);
  OURO_CHECK(block_tokens > 0, "prepare {}: block_tokens must be positive", out_prefix.string());

  Splitter split{block_tokens, std::max<uint64_t>(2, std::llround(1.0 / val_frac)), {}, {}};
  std::vector<char> buf(1 << 20);
  for (const auto& in : inputs) {
    std::error_code ec;
    OURO_CHECK(fs::is_regular_file(in, ec), "prepare: input {} is not a readable regular file",
               in.string());
    std::ifstream f(in, std::ios::binary);
    if (!f) fail("prepare: cannot open input {}: {}", in.string(), std::strerror(errno));
    split.emit_eot();
    uint64_t bytes = 0;
    while (f) {
      f.read(buf.data(), static_cast<std::streamsize>(buf.size()));
      const auto got = static_cast<size_t>(f.gcount());
      split.emit(reinterpret_cast<const uint8_t*>(buf.data()), got);
      bytes += got;
    }
    if (f.bad()) fail("prepare: error reading input {} after {} bytes", in.string(), bytes);
    OURO_CHECK(bytes > 0, "prepare: input {} is empty", in.string());
  }

  PrepareResult r;
  r.train = out_prefix.string() + "_train.bin";
  r.val = out_prefix.string() + "_val.bin";
  r.train_tokens = split.train.size();
  r.val_tokens = split.val.size();
  write_shard(r.train, split.train, kByteVocab);
  write_shard(r.val, split.val, kByteVocab);
  return r;
}

}  // namespace ouro
