// `ouro bench kernels`: the hand-written kernels' throughput against ceilings measured in the
// same run (cuBLASLt for GEMM on the cuda backend, a device-to-device copy for the memory-bound
// kernels). Implemented in kernel_bench.cu, which is compiled twice like the device backend (one
// object per half, linked with it) and registers itself like the backend; a binary without a
// device backend has no kernel benchmark.
#pragma once
#include <string>
#include <vector>

#include "bench/bench_result.h"

namespace ouro {

struct KernelBenchOptions {
  bool small = false;  // small shapes (the simt smoke run; automatic on simt)
  int reps = 10;       // timed repetitions per figure (after one warm-up)
};

// Each row: name = the kernel ("matmul fwd": what training runs, chosen by device and shape; on a
// device that runs the Hopper kernel also "matmul fwd sm_90a" and "matmul fwd sm_80", each family
// forced), shape, value in TFLOP/s or GB/s, its ceiling
// measured in the same run (cuBLASLt on the cuda backend, the copy for memory-bound kernels) or
// the peak table's bf16 rate where no library alternate is built, and the FLOPs and bytes of one
// call (the roofline's arithmetic intensity).
struct KernelBenchResult {
  std::string device;  // the GPU's name, or "SIMT emulator"
  double copy_gbs = 0; // the measured device-to-device copy bandwidth (the memory ceiling)
  std::vector<BenchRecord> rows;
  std::vector<std::string> notes;  // what was skipped here and why (e.g. the sm_90a GEMM off Hopper)
};

using KernelBenchFn = KernelBenchResult (*)(const KernelBenchOptions&);
void register_kernel_bench(KernelBenchFn fn);
KernelBenchFn registered_kernel_bench();  // null without a device backend

}  // namespace ouro
