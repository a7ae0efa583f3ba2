// <ouro/cuda.h>: the one header every kernel file (ours or a user's) includes. It means the same
// under nvcc and under g++ with the SIMT emulator (OURO_SIMT, set by the build for everything
// linking ouro_simt; never __CUDA_ARCH__, which would switch the CUDA headers to device code):
//
//   ouro::launch(kernel, grid, block, shared_bytes, stream, args...)   kernel<<<...>>>(args...)
//   ouro::dynamic_shared<T>()        the block's dynamic shared memory (never write your own
//                                    `extern __shared__ T x[]`: the emulator cannot provide it)
//   OURO_CUDA_CHECK(call)            throws ouro::CudaError naming the call, file and line
//   OURO_CUDA_CHECK_LAUNCH()         the same for the last launch (cudaGetLastError)
//   ouro::ptx::...                   inline-PTX wrappers (<ouro/ptx.h>)
//
// Under the emulator, static `__shared__` variables become `constinit thread_local` (one copy
// per OS thread, reused by the blocks that thread runs), so this header must come before any
// CUDA header: it defines __shared__ first and the CUDA headers then leave it alone.
#pragma once

#include <stdexcept>
#include <string>
#include <utility>

#if defined(__CUDACC__)

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

namespace ouro {

template <class... Params, class... Args>
inline void launch(void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
                   cudaStream_t stream, Args&&... args) {
  kernel<<<grid, block, shared_bytes, stream>>>(std::forward<Args>(args)...);
}

template <class T>
__device__ __forceinline__ T* dynamic_shared() {
  extern __shared__ __align__(1024) unsigned char ouro_dynamic_shared_memory[];
  return reinterpret_cast<T*>(ouro_dynamic_shared_memory);
}

}  // namespace ouro

#elif defined(OURO_SIMT)

#if defined(__shared__) && !defined(OURO_SIMT_SHARED)
#error "<ouro/cuda.h> must be included before any CUDA header in SIMT builds (it defines __shared__)"
#endif
#if defined(__CUDA_ARCH__)
#error "SIMT builds must not define __CUDA_ARCH__: the CUDA headers would compile device-only code"
#endif
#define OURO_SIMT_SHARED 1
// Per-OS-thread static shared memory; constinit keeps GCC from adding a TLS init guard. The ABI
// tag marks the variables' symbols so that the emulator finds them and fills them with NaN at
// each block start (src/simt/static_shared.cpp); GNU attribute syntax may stand anywhere among
// the declaration's specifiers (`static __shared__`, `__shared__ __align__(16)`).
#define __shared__ __attribute__((abi_tag("ouro_shared"))) constinit thread_local

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <source_location>
#include <type_traits>

#include "ouro/simt/async.h"
#include "ouro/simt/simt.h"

namespace ouro {

// The grid argument carries the launch's call site into reports (a defaulted source_location
// cannot follow a parameter pack, but an implicit conversion's default argument is evaluated
// at the call).
struct LaunchGrid {
  dim3 dims;
  std::source_location where;
  template <class T>
    requires std::is_convertible_v<T, dim3>
  LaunchGrid(T grid, std::source_location w = std::source_location::current())
      : dims(grid), where(w) {}
};

template <class... Params, class... Args>
inline void launch(void (*kernel)(Params...), LaunchGrid grid, dim3 block, size_t shared_bytes,
                   cudaStream_t stream, Args&&... args) {
  simt::launch(kernel, grid.dims, block, shared_bytes, stream, grid.where, std::forward<Args>(args)...);
}

template <class T>
inline T* dynamic_shared() {
  return simt::dynamic_shared<T>();
}

}  // namespace ouro

// The file:line of each runtime call that OURO_SIMT_ASYNC reports can name (ouro/simt/async.h).
// Function-like macros: the name without arguments (a function pointer) is left alone, and the
// call's text inside OURO_CUDA_CHECK(...) is stringified before it expands.
#define OURO_SIMT_AT(call) (::ouro::simt::detail::set_call_site(__FILE__, __LINE__), ::call)
#define cudaMemcpy(...) OURO_SIMT_AT(cudaMemcpy(__VA_ARGS__))
#define cudaMemcpyAsync(...) OURO_SIMT_AT(cudaMemcpyAsync(__VA_ARGS__))
#define cudaMemset(...) OURO_SIMT_AT(cudaMemset(__VA_ARGS__))
#define cudaMemsetAsync(...) OURO_SIMT_AT(cudaMemsetAsync(__VA_ARGS__))
#define cudaFree(...) OURO_SIMT_AT(cudaFree(__VA_ARGS__))
#define cudaFreeAsync(...) OURO_SIMT_AT(cudaFreeAsync(__VA_ARGS__))
#define cudaEventRecord(...) OURO_SIMT_AT(cudaEventRecord(__VA_ARGS__))
#define cudaStreamWaitEvent(...) OURO_SIMT_AT(cudaStreamWaitEvent(__VA_ARGS__))

#else
#error "<ouro/cuda.h>: compile with nvcc, or with g++ and OURO_SIMT (link ouro_simt)"
#endif

#if __has_include(<ouro/ptx.h>)
#include <ouro/ptx.h>
#endif

namespace ouro {

// A failed CUDA runtime call (message: "CUDA error <name> (<text>) in <call> at file:line").
class CudaError : public std::runtime_error {
 public:
  CudaError(cudaError_t code, const std::string& what) : std::runtime_error(what), code_(code) {}
  cudaError_t code() const { return code_; }

 private:
  cudaError_t code_;
};

inline void cuda_check(cudaError_t err, const char* call, const char* file, int line) {
  if (err == cudaSuccess) return;
  throw CudaError(err, std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                           ") in " + call + " at " + file + ":" + std::to_string(line));
}

}  // namespace ouro

#define OURO_CUDA_CHECK(call) ::ouro::cuda_check((call), #call, __FILE__, __LINE__)
#define OURO_CUDA_CHECK_LAUNCH() ::ouro::cuda_check(cudaGetLastError(), "kernel launch", __FILE__, __LINE__)
