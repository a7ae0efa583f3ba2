// Stream capture (cudaStreamBeginCapture .. cudaStreamEndCapture) as the runtime's entry points
// see it: each of them asks here whether its stream is capturing and, if so, records a graph
// node instead of running or queueing the operation (src/simt/graph.cpp says what is emulated).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

#include "ouro/simt/async.h"

namespace ouro::simt::detail {

// One operation as a graph node replays it: what the asynchronous engine needs to queue it
// (name, kernel, call site, accesses) and what it does. Everything it reads from the host call
// (kernel arguments, copy addresses, memset value) was copied when it was captured.
struct NodeSpec {
  const char* what = "";
  const void* kernel = nullptr;
  std::string where;
  std::vector<Access> accesses;
  std::function<void()> run;
  bool nccl = false;
  // A device-to-host copy into pinned memory: at each launch (asynchronous mode) the
  // destination reads as NaN until the copy has run, as for a queued copy outside a graph.
  void* poison = nullptr;
  std::size_t poison_bytes = 0;
};

// cudaStreamLegacy or the null stream.
bool is_legacy(cudaStream_t s);
// The stream belongs to a capture sequence (active or invalidated).
bool capturing(cudaStream_t s);
// Records an operation issued on a capturing stream: cudaSuccess, or
// cudaErrorStreamCaptureInvalidated when an earlier illegal call invalidated the capture.
cudaError_t capture_node(cudaStream_t s, NodeSpec spec);
// Ends the capture `s` belongs to as failed by an illegal call (later calls on its streams get
// cudaErrorStreamCaptureInvalidated, cudaStreamEndCapture returns it and no graph) and returns
// `err`, the illegal call's own error.
cudaError_t capture_invalidate(cudaStream_t s, cudaError_t err);
// Work on the legacy default stream (a launch or copy on it, cudaMemcpy, cudaMemset): while a
// blocking stream captures it would depend on the capture, which CUDA refuses with
// cudaErrorStreamCaptureImplicit and invalidates those captures. cudaSuccess otherwise.
cudaError_t capture_legacy_use();
// cudaStreamSynchronize / cudaStreamQuery of `s`: cudaErrorStreamCaptureUnsupported (and the
// capture invalidated) when it is capturing.
cudaError_t capture_stream_sync(cudaStream_t s);
// cudaDeviceSynchronize: unsupported while any capture is active (every one is invalidated).
cudaError_t capture_device_sync();
// A potentially unsafe call (cudaMalloc, cudaFree, cudaMallocHost, cudaFreeHost), prohibited
// under the calling thread's capture interaction mode (cudaThreadExchangeStreamCaptureMode):
// cudaErrorStreamCaptureUnsupported, invalidating the captures that prohibit it.
cudaError_t capture_unsafe_call();
// cudaEventRecord(e, s): true when `s` captures (the event then stands for the capture's
// current work on s, *err says how the call went); false when it ran as usual, after which the
// event no longer refers to a capture.
bool capture_event_record(cudaEvent_t e, cudaStream_t s, cudaError_t* err);
// cudaStreamWaitEvent(s, e): true when the capture machinery handled it (a capturing stream, or
// an event recorded in a capture, which makes `s` join that capture), with *err.
bool capture_stream_wait(cudaStream_t s, cudaEvent_t e, cudaError_t* err);
// cudaEventSynchronize / cudaEventQuery / cudaEventElapsedTime: cudaErrorCapturedEvent for an
// event last recorded in a capture.
cudaError_t capture_event_use(cudaEvent_t e);
// Handles go away.
void capture_forget_event(cudaEvent_t e);
void capture_forget_stream(cudaStream_t s);

}  // namespace ouro::simt::detail
