// Identity of the emulated CUDA thread that is running right now.
//
// Every emulated thread is a fiber; the OS thread that runs a block points `detail::tl_thread`
// at the fiber it switched to, so the built-ins (threadIdx, blockIdx, ...) are one TLS load
// and one field read. Outside a kernel the pointer is null and this_thread() must not be used.
#pragma once
#include <vector_types.h>  // uint3, dim3 from the CUDA toolkit: the same types nvcc uses

#include <cstdint>

namespace ouro::simt {

struct Launch;  // one kernel launch (src/simt/launch.cpp)

// What a kernel may ask about the thread executing it. Filled by the scheduler before the
// fiber first runs in a block; read-only for everybody else.
struct ThreadInfo {
  uint3 thread_idx{};   // threadIdx
  uint3 block_idx{};    // blockIdx
  dim3 block_dim{};     // blockDim
  dim3 grid_dim{};      // gridDim
  unsigned tid = 0;     // linear thread index in the block: x + y*X + z*X*Y
  unsigned warp = 0;    // tid / 32
  unsigned lane = 0;    // tid % 32
  const Launch* launch = nullptr;
  // Unique per run of a block (process-wide): state that must die with the block (a cp.async
  // queue left pending at thread exit) is keyed by it, not by the reused fiber.
  uint64_t block_run = 0;
};

namespace detail {
// The running emulated thread on this OS thread; null outside kernels.
extern constinit thread_local ThreadInfo* tl_thread;
}  // namespace detail

// The emulated thread running now (only valid inside a kernel).
inline const ThreadInfo& this_thread() { return *detail::tl_thread; }
// True while the caller runs as an emulated GPU thread.
inline bool in_kernel() { return detail::tl_thread != nullptr; }

// Let the other threads of the block run before the caller goes on (the caller stays ready).
// Called where a thread may be waiting for another one without a barrier (a failed atomicCAS,
// __nanosleep): fibers only switch at barriers otherwise, and a spin loop would never end.
// A no-op outside kernels.
void spin_yield();

// Name of the kernel of the current launch (demangled symbol, or "?" when unknown).
const char* kernel_name(const Launch* launch);

}  // namespace ouro::simt
