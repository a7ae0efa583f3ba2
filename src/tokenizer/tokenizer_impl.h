// What a Tokenizer holds: built once by the constructor, shared read-only by every copy and
// every encoding thread.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "ouro/tokenizer.h"
#include "tokenizer/byte_table.h"
#include "tokenizer/pretokenizer.h"

namespace ouro {

// Threads to use: the requested count, or every OpenMP thread when 0.
inline int resolve_threads(int threads) {
#ifdef _OPENMP
  return threads > 0 ? threads : omp_get_max_threads();
#else
  (void)threads;
  return 1;
#endif
}

struct Tokenizer::Impl {
  std::vector<std::string> tokens;  // by rank
  std::vector<std::pair<std::string, uint32_t>> specials;
  std::string pattern;
  std::string source;               // the file it was read from ("" if none)
  tok::ByteTable ranks;             // token bytes -> rank
  std::unique_ptr<tok::Pretokenizer> pre;
  size_t vocab_size = 0;
  // decode: the bytes of id i are arena[offset[i], offset[i + 1]); an id with no token (a hole
  // between special ids) has valid[i] == 0.
  std::string arena;
  std::vector<uint32_t> offset;
  std::vector<uint8_t> valid;
};

}  // namespace ouro
