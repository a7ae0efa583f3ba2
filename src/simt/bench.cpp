// `ouro bench simt`: ns per __syncthreads per thread and per shuffle per lane.
//
// One block on one OS thread, a loop of K operations per thread; the figure is the launch's wall
// time over K x threads, best of a few repeats (after an untimed launch that creates the fibers).
#include "ouro/simt/bench.h"

#include <ouro/cuda.h>

#include <algorithm>
#include <chrono>
#include <cstdio>

#include "simt/text.h"

namespace ouro::simt {

namespace {

__global__ void bench_syncthreads(int iters, float* out) {
  float v = static_cast<float>(threadIdx.x);
  for (int i = 0; i < iters; ++i) {
    __syncthreads();
    v += 1.0f;
  }
  out[threadIdx.x] = v;
}

__global__ void bench_shuffle(int iters, float* out) {
  float v = static_cast<float>(threadIdx.x);
  const unsigned mask = __activemask();  // the existing lanes, for blocks not a multiple of 32
  for (int i = 0; i < iters; ++i) v += __shfl_xor_sync(mask, v, 1);
  out[threadIdx.x] = v;
}

template <class Kernel>
double best_ns(Kernel kernel, unsigned threads, int iters, int repeats, float* out, double* switch_ns) {
  ouro::launch(kernel, 1, threads, 0, nullptr, 1, out);  // fibers and stacks exist from here on
  double best = 1e300;
  for (int r = 0; r < repeats; ++r) {
    const auto switches0 = switch_count();
    const auto t0 = std::chrono::steady_clock::now();
    ouro::launch(kernel, 1, threads, 0, nullptr, iters, out);
    const double ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0).count();
    if (ns < best) {
      best = ns;
      if (switch_ns) *switch_ns = ns / static_cast<double>(std::max<std::uint64_t>(1, switch_count() - switches0));
    }
  }
  return best / (static_cast<double>(iters) * threads);
}

}  // namespace

BenchResult run_bench(const BenchOptions& options) {
  BenchResult result;
#if defined(__SANITIZE_ADDRESS__)
  result.sanitizer = "address";
#elif defined(__SANITIZE_THREAD__)
  result.sanitizer = "thread";
#else
  result.sanitizer = "none";
#endif
  const unsigned saved_threads = worker_threads();
  const RunOrder saved_order = run_order();
  set_worker_threads(1);
  set_run_order({});
  float* out = nullptr;
  OURO_CUDA_CHECK(cudaMalloc(&out, 1024 * sizeof(float)));
  for (unsigned threads : options.block_sizes) {
    const int iters = std::max(1, static_cast<int>(options.target_ops / threads));
    BenchRow row;
    row.block = threads;
    row.sync_ns = best_ns(bench_syncthreads, threads, iters, options.repeats, out, &row.switch_ns);
    row.shfl_ns = best_ns(bench_shuffle, threads, iters, options.repeats, out, nullptr);
    result.rows.push_back(row);
  }
  cudaFree(out);
  set_worker_threads(saved_threads);
  set_run_order(saved_order);
  return result;
}

std::string BenchResult::json() const {
  std::string s = detail::cat("{\"sanitizer\": \"", sanitizer, "\", \"rows\": [");
  for (std::size_t i = 0; i < rows.size(); ++i) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "%s{\"block\": %u, \"sync_ns\": %.2f, \"shfl_ns\": %.2f, \"switch_ns\": %.2f}",
                  i ? ", " : "", rows[i].block, rows[i].sync_ns, rows[i].shfl_ns, rows[i].switch_ns);
    s += buf;
  }
  s += "]}";
  return s;
}

}  // namespace ouro::simt
