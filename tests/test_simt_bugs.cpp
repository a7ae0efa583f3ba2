// The bug zoo: each class of kernel bug the emulator must catch, planted in a small kernel. The
// test asserts the report names the kernel, the block, the thread and the file:line at fault.
//
// Emulator reports are caught in-process (simt::ThrowReports). Sanitizer reports (out-of-bounds
// global and shared memory, static shared arrays, shared-memory races) come from the ASan+UBSan
// and TSan builds of this same file, as death tests: the process must die, and its output must
// hold the sanitizer's diagnosis, the kernel's file:line and the emulator's thread line.
#include <ouro/cuda.h>

#include <gtest/gtest.h>

#include <cmath>
#include <string>
#include <vector>

#include "simt/static_shared.h"

namespace {

namespace simt = ouro::simt;

// Runs `launch` with reports thrown; returns the report (fails the test when there is none).
template <class F>
simt::Report expect_report(F&& launch) {
  simt::ThrowReports throwing;
  try {
    launch();
  } catch (const simt::BugReport& e) {
    return e.report;
  }
  ADD_FAILURE() << "the emulator reported nothing";
  return {};
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
std::string this_file() { return std::source_location::current().file_name(); }

// Bugs are planted in forward order on one OS thread, so each report is deterministic.
class SimtBugs : public ::testing::Test {
 protected:
  void SetUp() override {
    saved_order_ = simt::run_order();
    saved_threads_ = simt::worker_threads();
    simt::set_run_order({simt::Order::forward, 0});
    simt::set_worker_threads(1);
    OURO_CUDA_CHECK(cudaMalloc(&buf_, 4096 * sizeof(float)));
  }
  void TearDown() override {
    cudaFree(buf_);
    simt::set_run_order(saved_order_);
    simt::set_worker_threads(saved_threads_);
  }
  float* buf_ = nullptr;

 private:
  simt::RunOrder saved_order_;
  unsigned saved_threads_ = 1;
};

// ---- barriers -----------------------------------------------------------------------------------

// Lane 3 of warp 1 skips a __syncwarp its warp-mates wait at, and waits at the barrier instead:
// neither can ever complete.
constexpr unsigned kDeadlockLine = __LINE__ + 5;
__global__ void barrier_deadlock(float* out) {
  if (threadIdx.x / 32 == 1 && threadIdx.x % 32 != 3) __syncwarp();
  out[blockIdx.x * blockDim.x + threadIdx.x] = 1;
  if (threadIdx.x / 32 == 1 && threadIdx.x % 32 != 3) __syncwarp();
  __syncthreads();
}

TEST_F(SimtBugs, BarrierNotReachedByEveryLiveThread) {
  const simt::Report r = expect_report([&] { ouro::launch(barrier_deadlock, 2, 64, 0, nullptr, buf_); });
  EXPECT_EQ(r.kind, simt::BugKind::barrier_deadlock);
  EXPECT_TRUE(contains(r.kernel, "barrier_deadlock")) << r.kernel;
  EXPECT_EQ(r.block.x, 0u);
  EXPECT_EQ(r.file, this_file());
  EXPECT_EQ(r.line, kDeadlockLine);
  EXPECT_TRUE(contains(r.message, "__syncthreads not reached by every live thread")) << r.message;
  EXPECT_TRUE(contains(r.message, "thread (32,0,0)..(34,0,0): waiting at __syncwarp")) << r.message;
  EXPECT_TRUE(contains(r.message, "thread (35,0,0): waiting at __syncthreads")) << r.message;
  // The text a user sees names it all on the first line.
  EXPECT_TRUE(contains(r.text(), "barrier deadlock in kernel")) << r.text();
  EXPECT_TRUE(contains(r.text(), this_file() + ":" + std::to_string(kDeadlockLine))) << r.text();
}

constexpr unsigned kDivergeLineA = __LINE__ + 4;
constexpr unsigned kDivergeLineB = __LINE__ + 5;
__global__ void barrier_divergence(float* out) {
  if (threadIdx.x < 40) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[blockIdx.y * blockDim.x + threadIdx.x] = 1;
}

TEST_F(SimtBugs, ThreadsWaitAtDifferentBarriers) {
  const simt::Report r = expect_report([&] { ouro::launch(barrier_divergence, dim3(1, 2), 64, 0, nullptr, buf_); });
  EXPECT_EQ(r.kind, simt::BugKind::barrier_divergence);
  EXPECT_TRUE(contains(r.kernel, "barrier_divergence"));
  EXPECT_TRUE(r.in_kernel);
  EXPECT_EQ(r.thread.x, 40u);  // the first thread to arrive at the other barrier
  EXPECT_EQ(r.line, kDivergeLineB);
  EXPECT_TRUE(contains(r.message, ":" + std::to_string(kDivergeLineA))) << r.message;
}

// Returning early is fine: "barriers exclusively waiting on threads that have exited are always
// resolved" (PTX ISA, exit), so returned threads leave the barrier's quorum.
__global__ void early_return(float* out) {
  if (threadIdx.x >= 20) return;
  __syncthreads();
  out[blockIdx.x * 20 + threadIdx.x] = 2;
}

TEST_F(SimtBugs, EarlyReturnBeforeBarrierIsNoBug) {
  simt::ThrowReports throwing;
  EXPECT_NO_THROW(ouro::launch(early_return, 3, 64, 0, nullptr, buf_));
}

// ---- warp collectives ---------------------------------------------------------------------------

constexpr unsigned kMaskLine = __LINE__ + 4;
__global__ void mask_mismatch(float* out) {
  const unsigned lane = threadIdx.x % 32;
  const unsigned mask = lane == 0 ? 0xffffffffu : 0xfffffffeu;
  out[threadIdx.x] = __shfl_sync(mask, out[threadIdx.x], 1);
}

TEST_F(SimtBugs, LanesDisagreeOnTheMask) {
  const simt::Report r = expect_report([&] { ouro::launch(mask_mismatch, 1, 32, 0, nullptr, buf_); });
  EXPECT_EQ(r.kind, simt::BugKind::warp_mismatch);
  EXPECT_EQ(r.thread.x, 1u);
  EXPECT_EQ(r.line, kMaskLine);
  EXPECT_TRUE(contains(r.message, "mask 0xfffffffe while lanes 0 wait at __shfl_sync")) << r.message;
}

constexpr unsigned kSiteLineA = __LINE__ + 5;
constexpr unsigned kSiteLineB = __LINE__ + 6;
__global__ void site_mismatch(float* out) {
  float v = out[threadIdx.x];
  if (threadIdx.x % 2)
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  else
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}

TEST_F(SimtBugs, LanesMeetAtDifferentCallSites) {
  const simt::Report r = expect_report([&] { ouro::launch(site_mismatch, 1, 32, 0, nullptr, buf_); });
  EXPECT_EQ(r.kind, simt::BugKind::warp_mismatch);
  EXPECT_EQ(r.thread.x, 1u);
  EXPECT_EQ(r.line, kSiteLineA);
  EXPECT_TRUE(contains(r.message, "wait at __shfl_xor_sync at " + this_file() + ":" + std::to_string(kSiteLineB)))
      << r.message;
}

// 48 threads: warp 1 has lanes 0..15 only, a full mask names 16 lanes that do not exist.
constexpr unsigned kMissingLine = __LINE__ + 2;
__global__ void missing_lanes(float* out) {
  out[threadIdx.x] = __shfl_sync(0xffffffffu, out[threadIdx.x], 0);
}

TEST_F(SimtBugs, FullMaskInAPartialWarp) {
  const simt::Report r = expect_report([&] { ouro::launch(missing_lanes, 1, 48, 0, nullptr, buf_); });
  EXPECT_EQ(r.kind, simt::BugKind::warp_absent_lane);
  EXPECT_EQ(r.thread.x, 32u);
  EXPECT_EQ(r.line, kMissingLine);
  EXPECT_TRUE(contains(r.message, "names lanes 0xffff0000 that have exited or do not exist")) << r.message;
}

constexpr unsigned kExitedLine = __LINE__ + 4;
__global__ void exited_lane(float* out) {
  if (threadIdx.x % 32 == 5) return;
  out[threadIdx.x] = 3;
  __syncwarp();
}

TEST_F(SimtBugs, LaneExitsWhileItsWarpWaitsForIt) {
  const simt::Report r = expect_report([&] { ouro::launch(exited_lane, 1, 32, 0, nullptr, buf_); });
  EXPECT_EQ(r.kind, simt::BugKind::warp_absent_lane);
  EXPECT_EQ(r.thread.x, 5u);
  EXPECT_EQ(r.line, kExitedLine);
  EXPECT_TRUE(contains(r.message, "lane 5 exits while lanes of its warp wait for it at __syncwarp")) << r.message;
}

constexpr unsigned kOwnMaskLine = __LINE__ + 3;
__global__ void not_in_own_mask(float* out) {
  const unsigned lane = threadIdx.x % 32;
  out[threadIdx.x] = static_cast<float>(__ballot_sync(lane == 3 ? 0x1u : 0xffffffffu, 1));
}

TEST_F(SimtBugs, LaneNotInItsOwnMask) {
  const simt::Report r = expect_report([&] { ouro::launch(not_in_own_mask, 1, 32, 0, nullptr, buf_); });
  EXPECT_EQ(r.kind, simt::BugKind::warp_bad_mask);
  EXPECT_EQ(r.thread.x, 3u);
  EXPECT_EQ(r.line, kOwnMaskLine);
}

// A report in one block of a multi-threaded grid stops the launch and names that block.
constexpr unsigned kPoolLine = __LINE__ + 5;
__global__ void late_block_bug(float* out) {
  if (blockIdx.x == 77 && threadIdx.x < 32) {
    __syncthreads();
  } else {
    __syncthreads();
  }
}

TEST_F(SimtBugs, ReportFromAHelperThread) {
  simt::set_worker_threads(2);
  const simt::Report r = expect_report([&] { ouro::launch(late_block_bug, 100, 64, 0, nullptr, buf_); });
  EXPECT_EQ(r.kind, simt::BugKind::barrier_divergence);
  EXPECT_EQ(r.block.x, 77u);
  EXPECT_EQ(r.line, kPoolLine);
  // The emulator recovers: the next launch runs normally.
  simt::ThrowReports throwing;
  EXPECT_NO_THROW(ouro::launch(early_return, 100, 64, 0, nullptr, buf_));
}

// ---- uninitialised shared memory -------------------------------------------------------------------

__global__ void read_before_write(float* out) {
  float* s = ouro::dynamic_shared<float>();
  out[threadIdx.x] = s[threadIdx.x];  // nobody wrote it
}

TEST_F(SimtBugs, UninitialisedSharedMemoryReadsAsNan) {
  ouro::launch(read_before_write, 1, 64, 64 * sizeof(float), nullptr, buf_);
  float h[64];
  OURO_CUDA_CHECK(cudaMemcpy(h, buf_, sizeof h, cudaMemcpyDeviceToHost));
  for (float v : h) EXPECT_TRUE(std::isnan(v));
}

// Static shared arrays too, in plain and templated kernels, and also when the OS thread's previous
// block wrote them (each block must start from NaN, not from its predecessor's data).
__global__ void static_read_before_write(float* out, int write_first) {
  __shared__ float s[64];
  if (write_first) s[threadIdx.x] = 1.0f;
  __syncthreads();
  out[blockIdx.x * 64 + threadIdx.x] = s[threadIdx.x];
}

// (A shared array that no code ever writes is a constant zero to g++, which folds its reads: the
// kernels here write theirs on some path, as every real kernel does.)
template <class T>
__global__ void static_read_before_write_t(float* out, int write_first) {
  static __shared__ __align__(16) T s[32];
  if (write_first) s[threadIdx.x] = T(1);
  __syncthreads();
  out[threadIdx.x] = float(s[threadIdx.x]);
}

TEST_F(SimtBugs, UninitialisedStaticSharedMemoryReadsAsNan) {
  EXPECT_GT(simt::detail::static_shared_bytes(), 0u);
  // Block 0 writes its copy; every later launch's blocks must still read NaN.
  ouro::launch(static_read_before_write, 1, 64, 0, nullptr, buf_, 1);
  ouro::launch(static_read_before_write, 3, 64, 0, nullptr, buf_, 0);
  std::vector<float> h(3 * 64);
  OURO_CUDA_CHECK(cudaMemcpy(h.data(), buf_, h.size() * sizeof(float), cudaMemcpyDeviceToHost));
  for (float v : h) EXPECT_TRUE(std::isnan(v));
  ouro::launch(static_read_before_write_t<float>, 1, 32, 0, nullptr, buf_, 1);
  ouro::launch(static_read_before_write_t<float>, 1, 32, 0, nullptr, buf_, 0);
  OURO_CUDA_CHECK(cudaMemcpy(h.data(), buf_, 32 * sizeof(float), cudaMemcpyDeviceToHost));
  for (int i = 0; i < 32; i++) EXPECT_TRUE(std::isnan(h[i])) << i;
}

// The default handler: the process prints the report and exits with kReportExitStatus.
TEST_F(SimtBugs, DefaultHandlerExitsNonZero) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_EXIT(ouro::launch(barrier_divergence, 1, 64, 0, nullptr, buf_),
              ::testing::ExitedWithCode(simt::kReportExitStatus),
              "barrier divergence in kernel .*barrier_divergence.* block \\(0,0,0\\) thread \\(40,0,0\\) at .*"
              "test_simt_bugs.cpp:" + std::to_string(kDivergeLineB));
}

// ---- sanitizer builds -------------------------------------------------------------------------------

#if defined(__SANITIZE_ADDRESS__)

constexpr unsigned kGlobalOobLine = __LINE__ + 2;
__global__ void global_oob(float* out, unsigned n) {
  if (blockIdx.x * blockDim.x + threadIdx.x <= n) out[blockIdx.x * blockDim.x + threadIdx.x] = 1;  // <= : off by one
}

TEST_F(SimtBugs, OutOfBoundsGlobalAccess) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  float* small = nullptr;
  OURO_CUDA_CHECK(cudaMalloc(&small, 100 * sizeof(float)));
  EXPECT_DEATH(ouro::launch(global_oob, 2, 64, 0, nullptr, small, 100u),
               "AddressSanitizer report in kernel .*global_oob.* block \\(1,0,0\\) thread \\(36,0,0\\)"
               "(.|\n)*heap-buffer-overflow(.|\n)*test_simt_bugs.cpp:" + std::to_string(kGlobalOobLine));
  cudaFree(small);
}

constexpr unsigned kSharedOobLine = __LINE__ + 3;
__global__ void dynamic_shared_oob(float* out, unsigned words) {
  float* s = ouro::dynamic_shared<float>();
  s[threadIdx.x] = 1;  // thread `words` writes one past the launch's shared memory
  out[threadIdx.x] = s[threadIdx.x];
}

TEST_F(SimtBugs, OutOfBoundsDynamicSharedMemory) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(ouro::launch(dynamic_shared_oob, 1, 65, 64 * sizeof(float), nullptr, buf_, 64u),
               "AddressSanitizer report in kernel .*dynamic_shared_oob.* block \\(0,0,0\\) thread \\(64,0,0\\)"
               "(.|\n)*use-after-poison(.|\n)*test_simt_bugs.cpp:" + std::to_string(kSharedOobLine));
}

constexpr unsigned kStaticOobLine = __LINE__ + 4;
__global__ void static_shared_oob(float* out) {
  __shared__ float tile[32];
  tile[threadIdx.x] = 1;
  out[threadIdx.x] = tile[threadIdx.x + 1];  // thread 31 reads tile[32]
}

TEST_F(SimtBugs, OutOfBoundsStaticSharedArray) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(ouro::launch(static_shared_oob, 1, 32, 0, nullptr, buf_),
               "UndefinedBehaviorSanitizer report in kernel .*static_shared_oob.* block \\(0,0,0\\) "
               "thread \\(31,0,0\\)(.|\n)*test_simt_bugs.cpp:" + std::to_string(kStaticOobLine) +
                   ":.*index 32 out of bounds for type 'float \\[32\\]'");
}

#endif  // __SANITIZE_ADDRESS__

#if defined(__SANITIZE_THREAD__)

// A race kills the process at once (TSan's default is exit status 66 at the end), so that the
// death test sees it and any false report elsewhere fails its test.
extern "C" const char* __tsan_default_options() { return "halt_on_error=1"; }

constexpr unsigned kRaceLine = __LINE__ + 4;
__global__ void shared_race(float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = static_cast<float>(threadIdx.x);
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];  // needs a __syncthreads before it
}

TEST_F(SimtBugs, SharedMemoryRace) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(ouro::launch(shared_race, 1, 64, 0, nullptr, buf_),
               // Thread 1 writes s[1] after thread 0 read it, with no barrier between.
               "data race(.|\n)*test_simt_bugs.cpp:" + std::to_string(kRaceLine - 1) +
                   "(.|\n)*test_simt_bugs.cpp:" + std::to_string(kRaceLine) +
                   "(.|\n)*'block \\(0,0,0\\) thread \\(1,0,0\\)'(.|\n)*'block \\(0,0,0\\) thread \\(0,0,0\\)'"
                   "(.|\n)*ThreadSanitizer report in kernel .*shared_race.* block \\(0,0,0\\) thread \\(1,0,0\\)");
}

// The same exchange with the barrier is race-free: barriers order shared memory.
__global__ void shared_no_race(float* out) {
  __shared__ float s[64];
  s[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
  __syncthreads();
  s[threadIdx.x] = 0;  // overwrite after everyone read: ordered by the second barrier
}

TEST_F(SimtBugs, BarrierOrderedSharedMemoryIsNoRace) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Run in a child so that a false report fails this test rather than the whole binary's exit.
  EXPECT_EXIT(
      {
        ouro::launch(shared_no_race, 4, 64, 0, nullptr, buf_);
        std::exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

#endif  // __SANITIZE_THREAD__

}  // namespace
