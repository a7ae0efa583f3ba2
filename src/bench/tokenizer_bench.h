// `ouro bench tokenizer`: encoding throughput of ouro's tokenizer, single-threaded and on N
// threads (the scaling), and of tiktoken on the same text in the same run when the tools venv has
// it (tools/tiktoken_bench.py): encode_ordinary on one thread and encode_ordinary_batch on the
// same N threads, with the ratios and whether the ids agree.
#pragma once
#include <string>

#include <nlohmann/json.hpp>

namespace ouro {

struct TokenizerBenchOptions {
  std::string tokenizer, input;
  int threads = 0;   // the multi-threaded run's threads; 0 = all cores
  int repeats = 3;   // each figure is the best of this many runs
  bool tiktoken = true;
};

// Returns the figures as JSON (also logged).
nlohmann::json bench_tokenizer(const TokenizerBenchOptions& opt);

}  // namespace ouro
