// Dynamic shared memory above 48 KB: a kernel opts in (cudaFuncAttributeMaxDynamicSharedMemorySize)
// up to the device's cudaDevAttrMaxSharedMemoryPerBlockOptin, which depends on the GPU: 227 KB
// on sm_90 (H100), 163 KB on sm_80 (A100), 99 KB on sm_86 / sm_89 (A10, L4, L40S, RTX 30/40).
// A kernel family whose fast kernel needs more than the device allows runs its generic kernel
// instead: opt_in_shared_memory says whether the fast one can run and warns, once per kernel and
// process, when it cannot. Host code only (kernels/*.cu launch helpers).
#pragma once
#include <ouro/cuda.h>

#include <cstddef>
#include <cstdio>
#include <mutex>
#include <set>
#include <string>

namespace ouro::kernels {

inline constexpr size_t kDefaultSharedLimit = 48 * 1024;  // every GPU, without opting in

// The current device's opt-in limit per block (bytes); 48 KB if the query fails.
inline size_t max_optin_shared_bytes() {
  int dev = 0, v = 0;
  if (cudaGetDevice(&dev) != cudaSuccess ||
      cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev) != cudaSuccess || v <= 0) {
    (void)cudaGetLastError();
    return kDefaultSharedLimit;
  }
  return size_t(v);
}

// Whether `bytes` of dynamic shared memory fit the current device (opting the kernel in when
// above 48 KB). If not: false, and a warning naming the kernel, both sizes and the fallback.
template <class Kernel>
bool opt_in_shared_memory(Kernel kernel, size_t bytes, const char* name, const char* fallback) {
  if (bytes <= kDefaultSharedLimit) return true;
  const size_t limit = max_optin_shared_bytes();
  if (bytes > limit) {
    static std::mutex mu;
    static std::set<std::string> warned;
    std::lock_guard lock(mu);
    if (warned.insert(name).second)
      std::fprintf(stderr,
                   "ouro: warning: %s needs %zu bytes of shared memory per block, this GPU allows %zu "
                   "(cudaDevAttrMaxSharedMemoryPerBlockOptin): running %s instead (slower)\n",
                   name, bytes, limit, fallback);
    return false;
  }
  OURO_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel),
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  return true;
}

}  // namespace ouro::kernels
