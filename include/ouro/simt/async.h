// Asynchronous emulation of the CUDA runtime (OURO_SIMT_ASYNC=1).
//
// By default every launch, copy and collective completes before its call returns, which hides
// a missing synchronisation. In asynchronous mode, kernel launches, cudaMemcpyAsync,
// cudaMemsetAsync, cudaMemset, cudaFreeAsync and the NCCL-over-MPI collectives are queued on
// their stream and run only when a synchronising call needs them (cudaStreamSynchronize,
// cudaEventSynchronize, cudaDeviceSynchronize, the Query calls, cudaMemcpy, cudaFree, a copy to
// pageable host memory), in an order that keeps each stream's order, cudaStreamWaitEvent, the
// legacy default stream's ordering with blocking streams, and NCCL's per-communicator order;
// among the operations ready at once, OURO_SIMT_ORDER picks (forward: issue order, reverse:
// latest first, shuffle: seeded random).
//
// Happens-before is tracked with vector clocks over streams (and the host, which learns of
// completion only through synchronising calls), and each queued operation lists the memory it
// touches: copies, memsets and collectives their exact byte ranges, a kernel the first element
// of each pointer argument (written unless it points to const). Reported, with the host call's
// file:line (set by the macros in <ouro/cuda.h>) and the queued operation's name and stream:
//   - two operations on different streams touching overlapping memory, one writing, with no
//     event, stream or host synchronisation ordering them (this covers a synchronous cudaMemcpy
//     reading what a queued operation on a non-blocking stream writes, and memory freed with
//     cudaFreeAsync, or handed out again, while another stream still uses it);
//   - a pinned host buffer given to cudaMemcpyAsync and changed by the host before the copy ran.
// A pinned destination of a queued device-to-host copy reads as NaN (0xFF bytes) until the copy
// runs: a host read before the synchronisation is not trapped, but cannot look valid.
// Pageable host memory behaves as CUDA defines it: a host-to-device copy stages the source at
// the call (the host may reuse it at once), a device-to-host copy waits for the copy.
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <vector>

namespace ouro::simt {

// Default: OURO_SIMT_ASYNC=1 (off when unset or 0). Switch only with nothing queued.
bool async_mode();
void set_async_mode(bool on);

// A byte range an operation reads or writes.
struct Access {
  const void* ptr = nullptr;
  std::size_t bytes = 0;
  bool write = false;
};

// Queues `run` on `stream` (asynchronous mode) or runs it now (synchronous mode). `nccl`:
// collectives of one process run in issue order whatever their streams (NCCL's per-communicator
// order; ranks must agree on it).
void enqueue_host_op(cudaStream_t stream, const char* what, std::vector<Access> accesses, std::function<void()> run,
                     bool nccl = false);

// Runs every queued operation (cudaDeviceSynchronize without an error code).
void drain_all();

// Number of operations queued and not run yet (tests).
std::size_t queued_ops();

namespace detail {
// The file:line of the CUDA runtime call being made on this host thread (set by <ouro/cuda.h>'s
// macros just before the call, consumed by it).
void set_call_site(const char* file, int line);
}  // namespace detail

}  // namespace ouro::simt
