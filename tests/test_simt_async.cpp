// OURO_SIMT_ASYNC: queued launches, copies, memsets and collectives; their order (streams,
// events, the legacy default stream, OURO_SIMT_ORDER); pageable vs pinned copies; and the
// planted bugs it must report with the host call's file:line and the queued operation's
// kernel and stream: a loss read without a sync, a gradient bucket freed while the comm stream
// reduces it, a missing cudaStreamWaitEvent between compute and comm streams, a pinned staging
// buffer overwritten before its copy.
#include <ouro/cuda.h>  // first: it defines __shared__ before the CUDA headers

#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

namespace {

namespace simt = ouro::simt;

__global__ void fill_kernel(float* out, int n, float v) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = v;
}

__global__ void scale_kernel(const float* in, float* out, int n, float s) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i < n) out[i] = in[i] * s;
}

// Stands in for the loss kernel: a sum into out[0].
__global__ void sum_kernel(const float* in, int n, float* out) {
  if (threadIdx.x != 0 || blockIdx.x != 0) return;
  float s = 0;
  for (int i = 0; i < n; ++i) s += in[i];
  *out = s;
}

// Asynchronous mode and a run order for one test, with reports thrown instead of exiting.
class SimtAsync : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_order_ = simt::run_order();
    simt::set_async_mode(true);
  }
  void TearDown() override {
    simt::drain_all();
    simt::set_async_mode(false);
    simt::set_run_order(saved_order_);
  }
  simt::RunOrder saved_order_;
  simt::ThrowReports throw_reports_;
};

constexpr int kN = 300;

float* device_floats(int n) {
  float* p = nullptr;
  EXPECT_EQ(cudaMalloc(&p, n * sizeof(float)), cudaSuccess);
  return p;
}

// The report a call raises (fails the test when none).
simt::Report report_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const simt::BugReport& r) {
    return r.report;
  }
  ADD_FAILURE() << "no report";
  return {};
}

TEST_F(SimtAsync, LaunchesAndCopiesRunOnlyWhenSynchronised) {
  float* d = device_floats(kN);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(d, 0, kN * sizeof(float), s), cudaSuccess);
  ouro::launch(fill_kernel, (kN + 127) / 128, 128, 0, s, d, kN, 3.0f);
  EXPECT_EQ(simt::queued_ops(), 2u);
  EXPECT_TRUE(std::isnan(d[0])) << "device memory is still the 0xFF fill: nothing ran yet";
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(simt::queued_ops(), 0u);
  for (int i = 0; i < kN; ++i) ASSERT_EQ(d[i], 3.0f);
  cudaStreamDestroy(s);
  cudaFree(d);
}

TEST_F(SimtAsync, PageableCopiesStageTheSourceAndWaitForDeviceToHost) {
  float* d = device_floats(kN);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  std::vector<float> src(kN, 5.0f), back(kN, 0.0f);
  ASSERT_EQ(cudaMemcpyAsync(d, src.data(), kN * sizeof(float), cudaMemcpyHostToDevice, s), cudaSuccess);
  std::fill(src.begin(), src.end(), -1.0f);  // legal: a pageable source is staged at the call
  ouro::launch(scale_kernel, (kN + 127) / 128, 128, 0, s, static_cast<const float*>(d), d, kN, 2.0f);
  ASSERT_EQ(cudaMemcpyAsync(back.data(), d, kN * sizeof(float), cudaMemcpyDeviceToHost, s), cudaSuccess);
  // To pageable memory the call returned after the copy: no synchronisation needed.
  for (int i = 0; i < kN; ++i) ASSERT_EQ(back[i], 10.0f);
  cudaStreamDestroy(s);
  cudaFree(d);
}

// Events order two streams in every run order; a missing wait is reported (compute stream ->
// comm stream, as the gradient buckets do).
TEST_F(SimtAsync, EventOrderedStreamsAreCorrectInEveryRunOrder) {
  for (const char* order : {"forward", "reverse", "shuffle:1", "shuffle:7"}) {
    simt::set_run_order(simt::parse_run_order(order));
    float* x = device_floats(kN);
    float* y = device_floats(kN);
    cudaStream_t compute, comm;
    cudaEvent_t ready;
    ASSERT_EQ(cudaStreamCreate(&compute), cudaSuccess);
    ASSERT_EQ(cudaStreamCreateWithFlags(&comm, cudaStreamNonBlocking), cudaSuccess);
    ASSERT_EQ(cudaEventCreateWithFlags(&ready, cudaEventDisableTiming), cudaSuccess);
    ouro::launch(fill_kernel, 3, 128, 0, compute, x, kN, 4.0f);
    ASSERT_EQ(cudaEventRecord(ready, compute), cudaSuccess);
    ASSERT_EQ(cudaStreamWaitEvent(comm, ready, 0), cudaSuccess);
    ouro::launch(scale_kernel, 3, 128, 0, comm, static_cast<const float*>(x), y, kN, 0.5f);
    ouro::launch(fill_kernel, 3, 128, 0, compute, y + kN, 0, 0.0f);  // an unrelated later launch
    ASSERT_EQ(cudaStreamSynchronize(comm), cudaSuccess);
    for (int i = 0; i < kN; ++i) ASSERT_EQ(y[i], 2.0f) << order;
    cudaDeviceSynchronize();
    cudaEventDestroy(ready);
    cudaStreamDestroy(compute);
    cudaStreamDestroy(comm);
    cudaFree(x);
    cudaFree(y);
  }
}

TEST_F(SimtAsync, MissingStreamWaitEventBetweenComputeAndCommIsReported) {
  float* grads = device_floats(kN);
  cudaStream_t compute, comm;
  ASSERT_EQ(cudaStreamCreate(&compute), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&comm, cudaStreamNonBlocking), cudaSuccess);
  ouro::launch(fill_kernel, 3, 128, 0, compute, grads, kN, 1.0f);  // backward writes the bucket
  const int line = __LINE__ + 2;  // the all-reduce, queued without cudaStreamWaitEvent
  const simt::Report r = report_of([&] {
    ASSERT_EQ(cudaMemsetAsync(grads, 0, kN * sizeof(float), comm), cudaSuccess);
  });
  EXPECT_EQ(r.kind, simt::BugKind::stream_race);
  EXPECT_NE(r.file.find("test_simt_async.cpp"), std::string::npos) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(line)) << r.text();
  EXPECT_NE(r.message.find("fill_kernel"), std::string::npos) << r.text();
  // The queued kernel's stream (blocking) and the offending call's (non-blocking) are named.
  EXPECT_NE(r.message.find("queued on stream "), std::string::npos) << r.text();
  EXPECT_NE(r.message.find("test_simt_async.cpp:" + std::to_string(line - 3)), std::string::npos) << r.text();
  EXPECT_NE(r.message.find("(non-blocking)"), std::string::npos) << r.text();
  cudaDeviceSynchronize();
  cudaStreamDestroy(compute);
  cudaStreamDestroy(comm);
  cudaFree(grads);
}

TEST_F(SimtAsync, MissingWaitBeforeACollectiveIsReported) {
  // The collective path of NCCL-over-MPI (enqueue_host_op with nccl = true), on one rank.
  float* grads = device_floats(kN);
  cudaStream_t compute, comm;
  ASSERT_EQ(cudaStreamCreate(&compute), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&comm, cudaStreamNonBlocking), cudaSuccess);
  ouro::launch(fill_kernel, 3, 128, 0, compute, grads, kN, 1.0f);
  const simt::Report r = report_of([&] {
    simt::enqueue_host_op(comm, "ncclAllReduce",
                          {{grads, kN * sizeof(float), false}, {grads, kN * sizeof(float), true}}, [] {}, true);
  });
  EXPECT_EQ(r.kind, simt::BugKind::stream_race);
  EXPECT_NE(r.message.find("ncclAllReduce"), std::string::npos) << r.text();
  EXPECT_NE(r.message.find("fill_kernel"), std::string::npos) << r.text();
  cudaDeviceSynchronize();
  cudaStreamDestroy(compute);
  cudaStreamDestroy(comm);
  cudaFree(grads);
}

TEST_F(SimtAsync, BucketFreedWhileTheCommStreamReducesItIsReported) {
  float* bucket = device_floats(kN);
  cudaStream_t compute, comm;
  cudaEvent_t ready;
  ASSERT_EQ(cudaStreamCreate(&compute), cudaSuccess);
  ASSERT_EQ(cudaStreamCreateWithFlags(&comm, cudaStreamNonBlocking), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&ready), cudaSuccess);
  ouro::launch(fill_kernel, 3, 128, 0, compute, bucket, kN, 1.0f);
  ASSERT_EQ(cudaEventRecord(ready, compute), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(comm, ready, 0), cudaSuccess);
  simt::enqueue_host_op(comm, "ncclAllReduce",
                        {{bucket, kN * sizeof(float), false}, {bucket, kN * sizeof(float), true}}, [] {}, true);
  const int line = __LINE__ + 1;
  const simt::Report r = report_of([&] { ASSERT_EQ(cudaFreeAsync(bucket, compute), cudaSuccess); });
  EXPECT_EQ(r.kind, simt::BugKind::stream_race);
  EXPECT_EQ(r.line, static_cast<unsigned>(line)) << r.text();
  EXPECT_NE(r.message.find("memory freed while a queued operation still uses it"), std::string::npos) << r.text();
  EXPECT_NE(r.message.find("ncclAllReduce"), std::string::npos) << r.text();
  // Correct: wait for the reduction (an event on the comm stream) before the free.
  ASSERT_EQ(cudaEventRecord(ready, comm), cudaSuccess);
  ASSERT_EQ(cudaStreamWaitEvent(compute, ready, 0), cudaSuccess);
  ASSERT_EQ(cudaFreeAsync(bucket, compute), cudaSuccess);
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaEventDestroy(ready);
  cudaStreamDestroy(compute);
  cudaStreamDestroy(comm);
}

TEST_F(SimtAsync, LossReadWithoutASyncIsReported) {
  float* acts = device_floats(kN);
  float* loss = device_floats(1);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), cudaSuccess);
  ouro::launch(fill_kernel, 3, 128, 0, s, acts, kN, 0.5f);
  ouro::launch(sum_kernel, 1, 32, 0, s, static_cast<const float*>(acts), kN, loss);
  float host_loss = 0;
  const int line = __LINE__ + 2;
  const simt::Report r = report_of([&] {
    ASSERT_EQ(cudaMemcpy(&host_loss, loss, sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  });
  EXPECT_EQ(r.kind, simt::BugKind::stream_race);
  EXPECT_EQ(r.line, static_cast<unsigned>(line)) << r.text();
  EXPECT_NE(r.message.find("host read of device memory"), std::string::npos) << r.text();
  std::fputs(r.text().c_str(), stdout);  // what a user sees (README quotes it)
  EXPECT_NE(r.message.find("sum_kernel"), std::string::npos) << r.text();
  // With the sync the read is clean and sees the loss.
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  ASSERT_EQ(cudaMemcpy(&host_loss, loss, sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(host_loss, 0.5f * kN);
  cudaStreamDestroy(s);
  cudaFree(acts);
  cudaFree(loss);
}

TEST_F(SimtAsync, PinnedDestinationReadsAsNanUntilTheCopyRuns) {
  float* d = device_floats(4);
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, 4 * sizeof(float)), cudaSuccess);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ouro::launch(fill_kernel, 1, 32, 0, s, d, 4, 9.0f);
  pinned[0] = 1.0f;
  ASSERT_EQ(cudaMemcpyAsync(pinned, d, 4 * sizeof(float), cudaMemcpyDeviceToHost, s), cudaSuccess);
  EXPECT_TRUE(std::isnan(pinned[0])) << "a loss read without a sync must not look valid";
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  EXPECT_EQ(pinned[0], 9.0f);
  cudaStreamDestroy(s);
  cudaFreeHost(pinned);
  cudaFree(d);
}

TEST_F(SimtAsync, LegacyDefaultStreamOrdersWithBlockingStreamsOnly) {
  float* x = device_floats(kN);
  float host = 0;
  cudaStream_t blocking;
  ASSERT_EQ(cudaStreamCreate(&blocking), cudaSuccess);
  ouro::launch(fill_kernel, 3, 128, 0, blocking, x, kN, 6.0f);
  // A blocking stream's work comes before a later legacy-stream call: no report, right value.
  ASSERT_EQ(cudaMemcpy(&host, x + 7, sizeof(float), cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_EQ(host, 6.0f);
  // ... and legacy work before later work of a blocking stream.
  ouro::launch(fill_kernel, 3, 128, 0, nullptr, x, kN, 7.0f);
  ouro::launch(scale_kernel, 3, 128, 0, blocking, static_cast<const float*>(x), x, kN, 2.0f);
  ASSERT_EQ(cudaStreamSynchronize(blocking), cudaSuccess);
  EXPECT_EQ(x[0], 14.0f);
  cudaStreamDestroy(blocking);
  cudaFree(x);
}

TEST_F(SimtAsync, PinnedStagingBufferOverwrittenBeforeItsCopyIsReported) {
  float* d = device_floats(kN);
  float* pinned = nullptr;
  ASSERT_EQ(cudaMallocHost(&pinned, kN * sizeof(float)), cudaSuccess);
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  for (int i = 0; i < kN; ++i) pinned[i] = 1.0f;
  const int line = __LINE__ + 1;
  ASSERT_EQ(cudaMemcpyAsync(d, pinned, kN * sizeof(float), cudaMemcpyHostToDevice, s), cudaSuccess);
  for (int i = 0; i < kN; ++i) pinned[i] = 2.0f;  // the bug: the copy has not run yet
  const simt::Report r = report_of([&] { cudaStreamSynchronize(s); });
  EXPECT_EQ(r.kind, simt::BugKind::host_buffer_changed);
  EXPECT_EQ(r.line, static_cast<unsigned>(line)) << r.text();
  EXPECT_NE(r.message.find("pinned host buffer"), std::string::npos) << r.text();
  // Correct: synchronise before refilling.
  ASSERT_EQ(cudaMemcpyAsync(d, pinned, kN * sizeof(float), cudaMemcpyHostToDevice, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  for (int i = 0; i < kN; ++i) pinned[i] = 3.0f;
  EXPECT_EQ(d[0], 2.0f);
  cudaStreamDestroy(s);
  cudaFreeHost(pinned);
  cudaFree(d);
}

TEST_F(SimtAsync, RunOrderReordersIndependentStreamsOnly) {
  auto run = [](const char* order, bool ordered) {
    simt::set_run_order(simt::parse_run_order(order));
    std::vector<int> log;
    cudaStream_t a, b;
    cudaEvent_t e;
    cudaStreamCreateWithFlags(&a, cudaStreamNonBlocking);
    cudaStreamCreateWithFlags(&b, cudaStreamNonBlocking);
    cudaEventCreate(&e);
    simt::enqueue_host_op(a, "first", {}, [&] { log.push_back(1); });
    cudaEventRecord(e, a);
    if (ordered) cudaStreamWaitEvent(b, e, 0);
    simt::enqueue_host_op(b, "second", {}, [&] { log.push_back(2); });
    cudaDeviceSynchronize();
    cudaEventDestroy(e);
    cudaStreamDestroy(a);
    cudaStreamDestroy(b);
    return log;
  };
  EXPECT_EQ(run("forward", false), (std::vector<int>{1, 2}));
  EXPECT_EQ(run("reverse", false), (std::vector<int>{2, 1}));
  EXPECT_EQ(run("reverse", true), (std::vector<int>{1, 2}));
  EXPECT_EQ(run("forward", true), (std::vector<int>{1, 2}));
}

TEST_F(SimtAsync, EventTimesComeFromWhenTheMarkerRan) {
  cudaStream_t s;
  cudaEvent_t a, b;
  cudaStreamCreate(&s);
  cudaEventCreate(&a);
  cudaEventCreate(&b);
  float* d = device_floats(1 << 13);
  cudaEventRecord(a, s);
  for (int i = 0; i < 5; ++i) ouro::launch(fill_kernel, 64, 128, 0, s, d, 1 << 13, 1.0f);
  cudaEventRecord(b, s);
  ASSERT_EQ(cudaEventSynchronize(b), cudaSuccess);
  float ms = -1;
  ASSERT_EQ(cudaEventElapsedTime(&ms, a, b), cudaSuccess);
  EXPECT_GT(ms, 0.0f);
  cudaEventDestroy(a);
  cudaEventDestroy(b);
  cudaStreamDestroy(s);
  cudaFree(d);
}

}  // namespace
