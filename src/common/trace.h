// NVTX ranges, so Nsight Systems shows the training step's structure (forward, backward with one
// nested range per layer, optimizer, eval, generation, scoring). NVTX v3 is header-only: with no
// profiler attached each range costs a load and a branch. Builds without the CUDA headers compile
// the ranges away; a CUDA build (OURO_CUDA=ON) refuses to configure without them (CMakeLists.txt).
// Names are string literals or strings that outlive the range. A name never contains '/': ncu's
// --nvtx-include reads '/' as nesting, so "layer 3" inside "backward" is "backward/layer 3" there.
#pragma once

#if __has_include(<nvtx3/nvToolsExt.h>)
#include <nvtx3/nvToolsExt.h>
#define OURO_HAVE_NVTX 1
#endif

#include <string>

namespace ouro {

// Tests observe the ranges through this hook: called with the name at each push and with nullptr
// at each pop (one more load and branch per range when unset).
using TraceHook = void (*)(const char* name);
inline TraceHook trace_hook = nullptr;

class TraceRange {
 public:
  explicit TraceRange(const char* name) {
#if defined(OURO_HAVE_NVTX)
    nvtxRangePushA(name);
#endif
    if (trace_hook) trace_hook(name);
  }
  explicit TraceRange(const std::string& name) : TraceRange(name.c_str()) {}
  ~TraceRange() {
#if defined(OURO_HAVE_NVTX)
    nvtxRangePop();
#endif
    if (trace_hook) trace_hook(nullptr);
  }
  TraceRange(const TraceRange&) = delete;
  TraceRange& operator=(const TraceRange&) = delete;
};

}  // namespace ouro
