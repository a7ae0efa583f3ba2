// The queue behind OURO_SIMT_ASYNC (see <ouro/simt/async.h>): streams, events, queued
// operations, vector clocks and the access history used to report unordered accesses.
#pragma once
#include <cuda_runtime_api.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "ouro/simt/async.h"
#include "ouro/simt/launch.h"

// Stream and event handles of the emulated runtime.
struct CUstream_st {
  unsigned flags = 0;
  unsigned id = 0;  // the engine's stream index (0 = the legacy default stream)
};
struct CUevent_st {
  unsigned flags = 0;
  bool recorded = false;
  std::chrono::steady_clock::time_point when;
  std::uint64_t op = 0;            // the marker operation that completes it (0: none queued)
  std::vector<std::uint64_t> vc;   // what its completion implies, per stream
};

namespace ouro::simt::detail {

// Where device and pinned memory live (runtime.cpp's registry).
enum class MemKind { device, pinned, other };
MemKind classify(const void* p, const void** base = nullptr, std::size_t* size = nullptr);

// The call site set by <ouro/cuda.h>'s macros ("" when the call came from elsewhere), consumed.
std::string take_call_site();

unsigned new_stream_id(bool blocking);
unsigned stream_id(cudaStream_t s);  // null, cudaStreamLegacy, cudaStreamPerThread -> 0

// One queued operation: what it is (for reports), what it touches, what it does.
struct OpSpec {
  unsigned stream = 0;
  const char* what = "";           // "kernel", "cudaMemcpyAsync (host to device)", "ncclAllReduce", ...
  const void* kernel = nullptr;    // for kernels: the __global__ function (named in reports)
  std::string where;               // the host call's file:line
  std::vector<Access> accesses;
  std::function<void()> run;
  bool nccl = false;
  std::uint64_t wait_op = 0;       // cudaStreamWaitEvent: the event's marker operation
  const std::vector<std::uint64_t>* wait_vc = nullptr;
};

// Queues an operation (checking its accesses against the unordered ones before it) and returns
// its id; its vector clock is copied to *vc_out when asked.
std::uint64_t enqueue(OpSpec spec, std::vector<std::uint64_t>* vc_out = nullptr);
// Runs the operation and everything it depends on, then tells the host it completed.
void complete(std::uint64_t op);
// Runs everything queued on the stream so far (and its dependencies); the host learns of it.
void complete_stream(unsigned stream);
// The stream's current clock vector (what an event recorded now would carry).
std::vector<std::uint64_t> stream_clock(unsigned stream);
// The host learns of everything the clock vector says.
void host_learns(const std::vector<std::uint64_t>& vc);

// Kernel launches queued in asynchronous mode: the launch's closure is copied (LaunchParams'
// clone) and run later by run_grid.
cudaError_t run_grid(const LaunchParams& p);

}  // namespace ouro::simt::detail
