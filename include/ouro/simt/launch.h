// Kernel launches, dynamic shared memory and run-order control of the emulator.
//
// simt::launch runs the whole grid before it returns (a stream is only an ordering promise, and
// running at once keeps every order the host relies on), unless OURO_SIMT_ASYNC queues it
// (<ouro/simt/async.h>). Blocks are spread over a pool of OS
// threads; the threads of one block are fibers on one OS thread, switched only at barriers,
// warp collectives and kernel exit, so a block's schedule is deterministic for a given run order.
#pragma once
#include <cuda_runtime_api.h>  // dim3, cudaStream_t, cudaError_t (declarations only; we define them)

#include <cstddef>
#include <cstdint>
#include <source_location>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

namespace ouro::simt {

// ---- run order: which block runs first, and which thread of a block runs first --------------
enum class Order { forward, reverse, shuffle };
struct RunOrder {
  Order order = Order::forward;
  std::uint64_t seed = 0;  // for shuffle
};
// Default: OURO_SIMT_ORDER=forward|reverse|shuffle[:SEED] (shuffle without seed = 1).
RunOrder run_order();
void set_run_order(RunOrder order);
// Parses "forward", "reverse", "shuffle" or "shuffle:SEED"; throws std::invalid_argument.
RunOrder parse_run_order(const std::string& text);
std::string to_string(RunOrder order);

// ---- OS threads that run blocks ---------------------------------------------------------------
// Default: OURO_SIMT_THREADS, else the hardware's thread count. 1 = the launching thread only.
unsigned worker_threads();
void set_worker_threads(unsigned n);

// ---- what shared memory holds at block start ---------------------------------------------------
// nan: every block's static and dynamic shared memory starts as 0xFF bytes (NaN in fp32, bf16 and
// fp16), so reading a value nobody wrote shows in results. stale: each block starts with what the
// previous block on its OS thread left (NaN only for an OS thread's first block), as on a GPU
// where a new block gets the SM's shared memory uncleared: a kernel that relies on reading its
// own writes only then gives the same results both ways, one that reads before writing may not.
enum class SharedFill { nan, stale };
// Default: OURO_SIMT_SMEM=nan|stale (nan when unset).
SharedFill shared_fill();
void set_shared_fill(SharedFill fill);
// Parses "nan" or "stale"; throws std::invalid_argument.
SharedFill parse_shared_fill(const std::string& text);

// ---- dynamic shared memory -----------------------------------------------------------------------
inline constexpr std::size_t kStaticSharedLimit = 48 * 1024;    // without cudaFuncSetAttribute
inline constexpr std::size_t kMaxDynamicShared = 227 * 1024;    // sm_90 opt-in maximum
namespace detail {
// The block's dynamic shared memory on this OS thread (1 KiB aligned, 0xFF-filled at block
// start, poisoned for ASan beyond the launch's size).
extern constinit thread_local unsigned char* tl_dynamic_shared;
}  // namespace detail
template <class T>
inline T* dynamic_shared() {
  return reinterpret_cast<T*>(detail::tl_dynamic_shared);
}

// ---- launches -------------------------------------------------------------------------------------
struct LaunchParams {
  const void* kernel = nullptr;  // the __global__ function's address (names it in reports)
  dim3 grid, block;
  std::size_t shared_bytes = 0;
  cudaStream_t stream = nullptr;
  std::source_location where;     // the launch's call site
  void (*body)(const void* closure) = nullptr;  // runs the kernel as the current thread
  const void* closure = nullptr;
  // For launches queued by OURO_SIMT_ASYNC: a heap copy of the closure, its deletion, and the
  // pointer arguments (each with whether the kernel may write through it).
  void* (*clone)(const void* closure) = nullptr;
  void (*destroy)(void* closure) = nullptr;
  void (*pointers)(const void* closure, void (*sink)(void* ctx, const void* p, bool write), void* ctx) = nullptr;
};
// Validates like the CUDA runtime (errors go to cudaGetLastError), then runs the grid. An
// emulator report raised while ThrowReports is active propagates out of here as BugReport.
cudaError_t launch_kernel(const LaunchParams& p);

// Argument bundle per launch: the kernel's parameters by value, as the CUDA ABI copies them.
template <class... Params>
struct KernelCall {
  void (*kernel)(Params...);
  std::tuple<std::decay_t<Params>...> args;
  static void run(const void* self) {
    auto& c = *static_cast<const KernelCall*>(self);
    std::apply(c.kernel, c.args);  // each thread gets its own copy of the parameters
  }
  static void* clone(const void* self) { return new KernelCall(*static_cast<const KernelCall*>(self)); }
  static void destroy(void* self) { delete static_cast<KernelCall*>(self); }
  static void pointers(const void* self, void (*sink)(void*, const void*, bool), void* ctx) {
    auto& c = *static_cast<const KernelCall*>(self);
    std::apply([&](const auto&... a) { (emit(a, sink, ctx), ...); }, c.args);
  }
  template <class T>
  static void emit(const T& v, void (*sink)(void*, const void*, bool), void* ctx) {
    if constexpr (std::is_pointer_v<T>)
      sink(ctx, static_cast<const void*>(v), !std::is_const_v<std::remove_pointer_t<T>>);
  }
};

template <class... Params, class... Args>
cudaError_t launch(void (*kernel)(Params...), dim3 grid, dim3 block, std::size_t shared_bytes,
                   cudaStream_t stream, std::source_location where, Args&&... args) {
  static_assert(sizeof...(Params) == sizeof...(Args), "kernel launched with the wrong argument count");
  KernelCall<Params...> call{kernel, std::tuple<std::decay_t<Params>...>(
                                         static_cast<std::decay_t<Params>>(std::forward<Args>(args))...)};
  LaunchParams p{reinterpret_cast<const void*>(kernel), grid, block, shared_bytes, stream, where,
                 &KernelCall<Params...>::run, &call, &KernelCall<Params...>::clone,
                 &KernelCall<Params...>::destroy, &KernelCall<Params...>::pointers};
  return launch_kernel(p);
}

// Number of fiber switches done so far by this OS thread (benchmarks and tests).
std::uint64_t switch_count();

}  // namespace ouro::simt
