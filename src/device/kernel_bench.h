// `ouro bench kernels`: the hand-written kernels' throughput against ceilings measured in the
// same run (cuBLASLt for GEMM on the cuda backend, a device-to-device copy for the memory-bound
// kernels). Implemented in the device half (src/device/kernel_bench.cu), registered like the
// backend itself; a binary without a device backend has no kernel benchmark.
#pragma once
#include <string>
#include <vector>

namespace ouro {

struct KernelBenchOptions {
  bool small = false;  // small shapes (the simt smoke run; automatic on simt)
  int reps = 10;       // timed repetitions per figure (after one warm-up)
};

struct KernelBenchRow {
  std::string kernel;   // e.g. "matmul fwd"
  std::string shape;    // e.g. "8192x768 -> 2304"
  double figure = 0;    // TFLOP/s or GB/s
  std::string unit;     // "TFLOP/s" | "GB/s"
  double ceiling = 0;   // the same unit, measured in this run (0: none on this backend)
  std::string ceiling_name;
  double ms = 0;        // mean time per call
};

struct KernelBenchResult {
  std::string device;  // the GPU's name, or "simt (emulator)"
  std::vector<KernelBenchRow> rows;
};

using KernelBenchFn = KernelBenchResult (*)(const KernelBenchOptions&);
void register_kernel_bench(KernelBenchFn fn);
KernelBenchFn registered_kernel_bench();  // null without a device backend

}  // namespace ouro
