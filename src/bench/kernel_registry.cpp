// The kernel benchmark's registration point: the device half of the benchmark (kernel_bench.cu)
// registers itself when a binary links it.
#include "bench/kernel_bench.h"

namespace ouro {
namespace {
KernelBenchFn& slot() {
  static KernelBenchFn fn = nullptr;  // function-local: registration runs during static init
  return fn;
}
}  // namespace

void register_kernel_bench(KernelBenchFn fn) { slot() = fn; }
KernelBenchFn registered_kernel_bench() { return slot(); }

}  // namespace ouro
