// CpuOps memory: host memory stands in for device memory, so transfers are plain copies.
#include "cpu/cpu_ops.h"

#include <cstdlib>
#include <cstring>
#include <new>

#include "ouro/error.h"

namespace ouro {

void* CpuOps::alloc(size_t bytes) {
  // 64-byte alignment (a cache line, an AVX-512 vector); aligned_alloc needs a size that is a
  // multiple of the alignment, and a non-null result even for 0 bytes keeps callers simple.
  size_t rounded = (bytes + 63) / 64 * 64;
  if (rounded == 0) rounded = 64;
  void* p = std::aligned_alloc(64, rounded);
  if (!p)
    fail("cpu backend: cannot allocate {} bytes ({:.2f} GiB): out of memory", rounded,
         static_cast<double>(rounded) / 1073741824.0);
  std::memset(p, 0, rounded);
  return p;
}

void CpuOps::dealloc(void* p) { std::free(p); }

void CpuOps::to_device(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

void CpuOps::to_host(void* dst, const void* src, size_t bytes) {
  if (bytes) std::memcpy(dst, src, bytes);
}

void CpuOps::fill_zero(void* dst, size_t bytes) {
  if (bytes) std::memset(dst, 0, bytes);
}

// The act dtype is fp32, the same as the host format: parameters copy as they are.
void CpuOps::params_from_host(void* dst, const float* src, size_t n) {
  if (n) std::memcpy(dst, src, n * sizeof(float));
}

void CpuOps::params_to_host(float* dst, const void* src, size_t n) {
  if (n) std::memcpy(dst, src, n * sizeof(float));
}

}  // namespace ouro
