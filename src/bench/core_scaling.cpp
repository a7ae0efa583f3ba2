#include "bench/core_scaling.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdint>

namespace ouro {

namespace {

// A multiply-xorshift chain per index: pure integer work in registers, split statically so every
// thread gets the same share and none waits on another until the end.
uint64_t spin(long n, int threads) {
  uint64_t total = 0;
#pragma omp parallel for schedule(static) num_threads(threads) reduction(+ : total)
  for (long i = 0; i < n; ++i) {
    uint64_t x = static_cast<uint64_t>(i) * 0x9E3779B97F4A7C15ull;
    x ^= x >> 29;
    x *= 0xBF58476D1CE4E5B9ull;
    total += x ^ (x >> 32);
  }
  return total;
}

double best_seconds_of(int repeats, long n, int threads, volatile uint64_t& sink) {
  double best = 1e30;
  for (int r = 0; r < std::max(1, repeats); ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    sink = sink + spin(n, threads);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

}  // namespace

CoreScaling measure_core_scaling(int threads, int repeats) {
  constexpr long kIterations = 300'000'000;  // ~0.3 s on one core of the 2-core CI machine
  volatile uint64_t sink = 0;
  CoreScaling s;
  s.threads = std::max(1, threads);
  s.one_thread_s = s.n_threads_s = 1e30;
  for (int r = 0; r < std::max(1, repeats); ++r) {  // alternated, as the benchmarks that use it
    s.one_thread_s = std::min(s.one_thread_s, best_seconds_of(1, kIterations, 1, sink));
    if (s.threads > 1) s.n_threads_s = std::min(s.n_threads_s, best_seconds_of(1, kIterations, s.threads, sink));
  }
  if (s.threads == 1) s.n_threads_s = s.one_thread_s;
  return s;
}

}  // namespace ouro
