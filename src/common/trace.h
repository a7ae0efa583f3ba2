// NVTX ranges, so Nsight Systems shows the training step's structure (forward, backward per
// layer, optimizer, eval, generation, scoring). NVTX v3 is header-only: with no profiler
// attached each range costs a load and a branch, and builds without the CUDA headers compile the
// ranges away. Names are string literals or strings that outlive the range.
#pragma once

#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define OURO_HAVE_NVTX 1
#endif

#include <string>

namespace ouro {

class TraceRange {
 public:
  explicit TraceRange(const char* name) {
#if defined(OURO_HAVE_NVTX)
    nvtxRangePushA(name);
#else
    (void)name;
#endif
  }
  explicit TraceRange(const std::string& name) : TraceRange(name.c_str()) {}
  ~TraceRange() {
#if defined(OURO_HAVE_NVTX)
    nvtxRangePop();
#endif
  }
  TraceRange(const TraceRange&) = delete;
  TraceRange& operator=(const TraceRange&) = delete;
};

}  // namespace ouro
