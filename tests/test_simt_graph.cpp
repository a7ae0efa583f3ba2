// CUDA Graphs on the SIMT emulator (src/simt/graph.cpp): stream capture records instead of
// running, replays use the arguments of the capture and the memory of the replay, fork/join
// through events, and the errors CUDA gives for illegal calls during capture (each one also
// invalidating the capture, as the CUDA Programming Guide's "Stream Capture" section says).
#include <ouro/cuda.h>  // first: it defines __shared__ before the CUDA headers

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <vector>

namespace {

namespace simt = ouro::simt;

__global__ void fill_kernel(float* out, int n, float v) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = v;
}

__global__ void axpy_kernel(const float* x, float* y, int n, float a) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) y[i] += a * x[i];
}

constexpr int kN = 200;

float* device_floats(int n = kN) {
  float* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
  return p;
}

std::vector<float> read(const float* d, int n = kN) {
  std::vector<float> h(n);
  EXPECT_EQ(cudaMemcpy(h.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  return h;
}

void fill(float* d, float v, cudaStream_t s) { ouro::launch(fill_kernel, dim3(2), dim3(128), 0, s, d, kN, v); }

cudaStreamCaptureStatus status_of(cudaStream_t s) {
  cudaStreamCaptureStatus st{};
  EXPECT_EQ(cudaStreamIsCapturing(s, &st), cudaSuccess);
  return st;
}

// Each test runs in both emulation modes (launches at the call, and OURO_SIMT_ASYNC's queue).
class SimtGraph : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    simt::set_async_mode(GetParam());
    saved_order_ = simt::run_order();
    ASSERT_EQ(cudaStreamCreate(&s_), cudaSuccess);
    ASSERT_EQ(cudaStreamCreate(&t_), cudaSuccess);
    (void)cudaGetLastError();
  }
  void TearDown() override {
    simt::drain_all();
    cudaStreamDestroy(s_);
    cudaStreamDestroy(t_);
    simt::set_run_order(saved_order_);
    simt::set_async_mode(false);
    (void)cudaGetLastError();
  }
  cudaGraphExec_t instantiate(cudaGraph_t g) {
    cudaGraphExec_t e = nullptr;
    EXPECT_EQ(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
    EXPECT_EQ(cudaGraphDestroy(g), cudaSuccess);  // the executable graph stands alone
    return e;
  }
  cudaStream_t s_ = nullptr, t_ = nullptr;
  simt::RunOrder saved_order_;
};

TEST_P(SimtGraph, CaptureRunsNothingAndReplaysTheArgumentsOfTheCapture) {
  float* y = device_floats();
  float* x = device_floats();
  fill(y, 0.0f, s_);
  fill(x, 1.0f, s_);
  ASSERT_EQ(cudaStreamSynchronize(s_), cudaSuccess);
  float a = 2.0f;
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(status_of(s_), cudaStreamCaptureStatusActive);
  EXPECT_EQ(status_of(t_), cudaStreamCaptureStatusNone);
  ouro::launch(axpy_kernel, dim3(2), dim3(128), 0, s_, x, y, kN, a);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  a = 100.0f;  // the node keeps the value of the launch's argument
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s_, &g), cudaSuccess);
  ASSERT_NE(g, nullptr);
  size_t nodes = 0;
  ASSERT_EQ(cudaGraphGetNodes(g, nullptr, &nodes), cudaSuccess);
  EXPECT_EQ(nodes, 1u);
  EXPECT_EQ(status_of(s_), cudaStreamCaptureStatusNone);
  EXPECT_EQ(read(y)[7], 0.0f) << "capture ran the kernel";
  cudaGraphExec_t e = instantiate(g);
  ASSERT_EQ(cudaGraphLaunch(e, s_), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(e, s_), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s_), cudaSuccess);
  EXPECT_EQ(read(y)[7], 4.0f);  // twice y += 2 * 1
  // Device memory is read at the replay, not at the capture.
  fill(x, 10.0f, s_);
  ASSERT_EQ(cudaGraphLaunch(e, s_), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s_), cudaSuccess);
  EXPECT_EQ(read(y)[kN - 1], 24.0f);
  EXPECT_EQ(cudaGraphExecDestroy(e), cudaSuccess);
  cudaFree(x);
  cudaFree(y);
}

TEST_P(SimtGraph, CopyAndMemsetNodesMoveWhatPinnedMemoryHoldsAtEachReplay) {
  float *in = nullptr, *out = nullptr;
  ASSERT_EQ(cudaMallocHost(&in, kN * sizeof(float)), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(&out, kN * sizeof(float)), cudaSuccess);
  float* d = device_floats();
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(d, 0, kN * sizeof(float), s_), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(d, in, 10 * sizeof(float), cudaMemcpyHostToDevice, s_), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(out, d, kN * sizeof(float), cudaMemcpyDeviceToHost, s_), cudaSuccess);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s_, &g), cudaSuccess);
  cudaGraphExec_t e = instantiate(g);
  for (int rep = 0; rep < 3; ++rep) {
    for (int i = 0; i < kN; ++i) in[i] = float(rep * 1000 + i);
    ASSERT_EQ(cudaGraphLaunch(e, s_), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s_), cudaSuccess);
    for (int i = 0; i < kN; ++i) ASSERT_EQ(out[i], i < 10 ? float(rep * 1000 + i) : 0.0f) << "rep " << rep << " i " << i;
  }
  cudaGraphExecDestroy(e);
  cudaFree(d);
  cudaFreeHost(in);
  cudaFreeHost(out);
}

TEST_P(SimtGraph, CopyFromPageableMemoryIsRefusedAndInvalidatesTheCapture) {
  float* d = device_floats();
  std::vector<float> pageable(kN, 1.0f);
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(cudaMemcpyAsync(d, pageable.data(), kN * sizeof(float), cudaMemcpyHostToDevice, s_),
            cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(status_of(s_), cudaStreamCaptureStatusInvalidated);
  fill(d, 1.0f, s_);
  EXPECT_EQ(cudaGetLastError(), cudaErrorStreamCaptureInvalidated);
  cudaGraph_t g = reinterpret_cast<cudaGraph_t>(1);
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(g, nullptr);
  EXPECT_EQ(status_of(s_), cudaStreamCaptureStatusNone);
  fill(d, 3.0f, s_);  // the stream works again
  ASSERT_EQ(cudaStreamSynchronize(s_), cudaSuccess);
  EXPECT_EQ(read(d)[0], 3.0f);
  cudaFree(d);
}

// Fork to a second stream and join back, replayed in every run order.
TEST_P(SimtGraph, ForkAndJoinThroughEventsOrderTheReplay) {
  float* x = device_floats();
  float* y = device_floats();
  cudaEvent_t forked, joined;
  ASSERT_EQ(cudaEventCreateWithFlags(&forked, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&joined, cudaEventDisableTiming), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  fill(x, 3.0f, s_);
  ASSERT_EQ(cudaEventRecord(forked, s_), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(t_, forked, 0), cudaSuccess);
  EXPECT_EQ(status_of(t_), cudaStreamCaptureStatusActive);  // t_ joined the capture
  fill(y, 1.0f, t_);
  ouro::launch(axpy_kernel, dim3(2), dim3(128), 0, t_, x, y, kN, 2.0f);  // y = 1 + 2 x = 7
  ASSERT_EQ(cudaEventRecord(joined, t_), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(joined), cudaErrorCapturedEvent);
  // The failed query invalidated the capture: start again, correctly this time.
  cudaGraph_t g = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(status_of(t_), cudaStreamCaptureStatusNone);
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  fill(x, 3.0f, s_);
  ASSERT_EQ(cudaEventRecord(forked, s_), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(t_, forked, 0), cudaSuccess);
  fill(y, 1.0f, t_);
  ouro::launch(axpy_kernel, dim3(2), dim3(128), 0, t_, x, y, kN, 2.0f);
  ASSERT_EQ(cudaEventRecord(joined, t_), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(s_, joined, 0), cudaSuccess);
  ouro::launch(axpy_kernel, dim3(2), dim3(128), 0, s_, y, x, kN, 1.0f);  // x = 3 + 7 = 10
  ASSERT_EQ(cudaStreamEndCapture(s_, &g), cudaSuccess);
  size_t nodes = 0;
  ASSERT_EQ(cudaGraphGetNodes(g, nullptr, &nodes), cudaSuccess);
  EXPECT_EQ(nodes, 4u);
  cudaGraphExec_t e = instantiate(g);
  for (const char* order : {"forward", "reverse", "shuffle:3", "shuffle:8"}) {
    simt::set_run_order(simt::parse_run_order(order));
    fill(x, -1.0f, s_);
    fill(y, -1.0f, s_);
    ASSERT_EQ(cudaGraphLaunch(e, s_), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s_), cudaSuccess);
    EXPECT_EQ(read(y)[5], 7.0f) << order;
    EXPECT_EQ(read(x)[5], 10.0f) << order;
  }
  cudaGraphExecDestroy(e);
  cudaEventDestroy(forked);
  cudaEventDestroy(joined);
  cudaFree(x);
  cudaFree(y);
}

TEST_P(SimtGraph, AForkNeverJoinedFailsTheCaptureWithUnjoined) {
  float* y = device_floats();
  cudaEvent_t forked;
  ASSERT_EQ(cudaEventCreate(&forked), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(forked, s_), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(t_, forked, 0), cudaSuccess);
  fill(y, 1.0f, t_);
  cudaGraph_t g = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(t_, &g), cudaErrorStreamCaptureUnmatched);  // not its origin
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureUnjoined);
  EXPECT_EQ(g, nullptr);
  EXPECT_EQ(status_of(t_), cudaStreamCaptureStatusNone);
  cudaEventDestroy(forked);
  cudaFree(y);
}

TEST_P(SimtGraph, SynchronisingACapturingStreamIsUnsupportedAndInvalidates) {
  float* y = device_floats();
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  fill(y, 1.0f, s_);
  EXPECT_EQ(cudaStreamSynchronize(s_), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(status_of(s_), cudaStreamCaptureStatusInvalidated);
  EXPECT_EQ(cudaMemsetAsync(y, 0, 4, s_), cudaErrorStreamCaptureInvalidated);
  cudaGraph_t g = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(g, nullptr);
  // cudaStreamQuery and cudaDeviceSynchronize are synchronisations too.
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(cudaStreamQuery(s_), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureInvalidated);
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureInvalidated);
  (void)cudaGetLastError();
  cudaFree(y);
}

TEST_P(SimtGraph, BeginAndEndCaptureRefuseWhatCudaRefuses) {
  cudaGraph_t g = nullptr;
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorIllegalState);  // not capturing
  EXPECT_EQ(cudaStreamBeginCapture(nullptr, cudaStreamCaptureModeGlobal), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamBeginCapture(cudaStreamLegacy, cudaStreamCaptureModeGlobal), cudaErrorStreamCaptureUnsupported);
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaErrorIllegalState);
  EXPECT_EQ(cudaStreamEndCapture(s_, nullptr), cudaErrorInvalidValue);
  ASSERT_EQ(cudaStreamEndCapture(s_, &g), cudaSuccess);  // an empty graph is a graph
  size_t nodes = 7;
  ASSERT_EQ(cudaGraphGetNodes(g, nullptr, &nodes), cudaSuccess);
  EXPECT_EQ(nodes, 0u);
  cudaGraphDestroy(g);
  (void)cudaGetLastError();
}

TEST_P(SimtGraph, LegacyStreamWorkWhileABlockingStreamCapturesIsAnImplicitDependency) {
  float* y = device_floats();
  cudaStream_t nb = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&nb, cudaStreamNonBlocking), cudaSuccess);
  cudaGraph_t g = nullptr;
  // A non-blocking stream's capture does not involve the legacy stream.
  ASSERT_EQ(cudaStreamBeginCapture(nb, cudaStreamCaptureModeGlobal), cudaSuccess);
  fill(y, 2.0f, nullptr);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(nb, &g), cudaSuccess);
  cudaGraphDestroy(g);
  // A blocking stream's capture does.
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  cudaStreamCaptureStatus st{};
  EXPECT_EQ(cudaStreamIsCapturing(nullptr, &st), cudaErrorStreamCaptureImplicit);
  EXPECT_EQ(status_of(s_), cudaStreamCaptureStatusActive);  // a query does not invalidate
  EXPECT_EQ(cudaMemset(y, 0, 4), cudaErrorStreamCaptureImplicit);
  EXPECT_EQ(status_of(s_), cudaStreamCaptureStatusInvalidated);
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureInvalidated);
  cudaStreamDestroy(nb);
  (void)cudaGetLastError();
  cudaFree(y);
}

TEST_P(SimtGraph, UnsafeCallsFollowTheThreadsCaptureMode) {
  cudaGraph_t g = nullptr;
  void* p = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&p, 64), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureInvalidated);
  // The relaxed mode allows them (the allocation is not part of the graph).
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeRelaxed), cudaSuccess);
  EXPECT_EQ(cudaMalloc(&p, 64), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaSuccess);
  ASSERT_EQ(cudaStreamEndCapture(s_, &g), cudaSuccess);
  cudaGraphDestroy(g);
  // A thread that swaps itself to relaxed may call them during its own global capture.
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  cudaStreamCaptureMode mode = cudaStreamCaptureModeRelaxed;
  ASSERT_EQ(cudaThreadExchangeStreamCaptureMode(&mode), cudaSuccess);
  EXPECT_EQ(mode, cudaStreamCaptureModeGlobal);
  EXPECT_EQ(cudaMalloc(&p, 64), cudaSuccess);
  ASSERT_EQ(cudaThreadExchangeStreamCaptureMode(&mode), cudaSuccess);
  EXPECT_EQ(cudaFree(p), cudaErrorStreamCaptureUnsupported);
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureInvalidated);
  ASSERT_EQ(cudaFree(p), cudaSuccess);
  (void)cudaGetLastError();
}

TEST_P(SimtGraph, WaitingOnWorkOutsideTheCaptureOrOnAnotherCaptureIsRefused) {
  cudaEvent_t outside, inside;
  ASSERT_EQ(cudaEventCreate(&outside), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&inside), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(outside, t_), cudaSuccess);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  EXPECT_EQ(cudaStreamWaitEvent(s_, outside, 0), cudaErrorStreamCaptureIsolation);
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureInvalidated);
  // Two captures, one waiting on the other's event: a merge.
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaStreamBeginCapture(t_, cudaStreamCaptureModeGlobal), cudaSuccess);
  ASSERT_EQ(cudaEventRecord(inside, t_), cudaSuccess);
  EXPECT_EQ(cudaStreamWaitEvent(s_, inside, 0), cudaErrorStreamCaptureMerge);
  EXPECT_EQ(cudaStreamEndCapture(s_, &g), cudaErrorStreamCaptureInvalidated);
  EXPECT_EQ(cudaStreamEndCapture(t_, &g), cudaErrorStreamCaptureInvalidated);
  // Re-recorded outside a capture, the event is an ordinary one again.
  ASSERT_EQ(cudaEventRecord(inside, t_), cudaSuccess);
  EXPECT_EQ(cudaEventSynchronize(inside), cudaSuccess);
  cudaEventDestroy(outside);
  cudaEventDestroy(inside);
  (void)cudaGetLastError();
}

// Host operations queued on a stream (the NCCL-over-MPI collectives) are captured and replayed.
TEST_P(SimtGraph, HostOperationsOnACapturingStreamBecomeNodes) {
  int runs = 0;
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  simt::enqueue_host_op(s_, "test op", {}, [&runs] { ++runs; }, /*nccl=*/true);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s_, &g), cudaSuccess);
  EXPECT_EQ(runs, 0);
  cudaGraphExec_t e = instantiate(g);
  ASSERT_EQ(cudaGraphLaunch(e, s_), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(e, s_), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s_), cudaSuccess);
  EXPECT_EQ(runs, 2);
  cudaGraphExecDestroy(e);
}

// cudaLaunchHostFunc: outside capture it runs after the stream's earlier work; captured, it is a
// host node that runs at each launch in its place, after the kernel before it and before the
// one after it (what a graph's watchdog brackets around a collective rely on).
struct HostProbe {
  const float* y = nullptr;
  std::vector<float> seen;  // y[3] each time the function ran
};
void CUDART_CB probe(void* arg) {
  auto* p = static_cast<HostProbe*>(arg);
  p->seen.push_back(p->y[3]);  // simt: device memory is host memory
}

TEST_P(SimtGraph, HostFunctionsRunInStreamOrderAndAsNodesAtEachReplay) {
  float* y = device_floats();
  HostProbe p{y, {}};
  fill(y, 1.0f, s_);
  ASSERT_EQ(cudaLaunchHostFunc(s_, probe, &p), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s_), cudaSuccess);
  ASSERT_EQ(p.seen, std::vector<float>{1.0f});
  EXPECT_EQ(cudaLaunchHostFunc(s_, nullptr, &p), cudaErrorInvalidValue);
  (void)cudaGetLastError();
  ASSERT_EQ(cudaStreamBeginCapture(s_, cudaStreamCaptureModeGlobal), cudaSuccess);
  fill(y, 2.0f, s_);
  ASSERT_EQ(cudaLaunchHostFunc(s_, probe, &p), cudaSuccess);
  fill(y, 3.0f, s_);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s_, &g), cudaSuccess);
  EXPECT_EQ(p.seen.size(), 1u);  // the capture ran nothing
  size_t nodes = 0;
  ASSERT_EQ(cudaGraphGetNodes(g, nullptr, &nodes), cudaSuccess);
  EXPECT_EQ(nodes, 3u);
  cudaGraphExec_t e = instantiate(g);
  for (int i = 0; i < 2; ++i) {
    ASSERT_EQ(cudaGraphLaunch(e, s_), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s_), cudaSuccess);
  }
  EXPECT_EQ(p.seen, (std::vector<float>{1.0f, 2.0f, 2.0f}));  // between the two fills, each launch
  EXPECT_EQ(read(y)[3], 3.0f);
  cudaGraphExecDestroy(e);
  cudaFree(y);
}

// Under OURO_SIMT_ASYNC a launch queues its nodes: nothing runs before a synchronisation, and a
// replay unordered with another stream's access of the same memory is reported like any race.
TEST(SimtGraphAsync, ReplayIsQueuedAndItsNodesAreCheckedForRaces) {
  simt::set_async_mode(true);
  simt::ThrowReports throw_reports;
  cudaStream_t s, t;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&t, cudaStreamNonBlocking), cudaSuccess);
  float* y = device_floats();
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal), cudaSuccess);
  fill(y, 5.0f, s);
  cudaGraph_t g = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &g), cudaSuccess);
  cudaGraphExec_t e = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&e, g, 0), cudaSuccess);
  const std::size_t before = simt::queued_ops();
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  EXPECT_EQ(simt::queued_ops(), before + 1);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(read(y)[3], 5.0f);
  ASSERT_EQ(cudaGraphLaunch(e, s), cudaSuccess);
  EXPECT_THROW(fill(y, 6.0f, t), simt::BugReport);  // no event orders it after the replay
  simt::drain_all();
  cudaGraphExecDestroy(e);
  cudaGraphDestroy(g);
  cudaStreamDestroy(s);
  cudaStreamDestroy(t);
  cudaFree(y);
  simt::set_async_mode(false);
}

INSTANTIATE_TEST_SUITE_P(Modes, SimtGraph, ::testing::Values(false, true),
                         [](const auto& info) { return info.param ? "queued" : "immediate"; });

}  // namespace
