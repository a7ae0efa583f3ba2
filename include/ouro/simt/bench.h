// Micro-benchmark of the emulator's synchronisation costs (`ouro bench simt`).
//
// Plain C++ (no CUDA headers), so the CLI can call it without compiling as device code.
#pragma once
#include <string>
#include <vector>

namespace ouro::simt {

struct BenchOptions {
  std::vector<unsigned> block_sizes{32, 256, 1024};
  double target_ops = 4e6;  // thread-operations timed per figure (iterations x threads)
  int repeats = 3;          // best of
};

struct BenchRow {
  unsigned block = 0;
  double sync_ns = 0;    // per __syncthreads per thread
  double shfl_ns = 0;    // per __shfl_xor_sync per lane
  double switch_ns = 0;  // per fiber switch, over the __syncthreads run
};

struct BenchResult {
  std::string sanitizer;  // "none", "address" or "thread": how this emulator was built
  std::vector<BenchRow> rows;
  std::string json() const;  // {"sanitizer": ..., "rows": [{"block": ..., ...}, ...]}
};

// Runs on one OS thread (the per-thread cost is what the figures mean).
BenchResult run_bench(const BenchOptions& options = {});

}  // namespace ouro::simt
