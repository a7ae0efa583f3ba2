// Data parallelism on the device path, run on the simt backend: the NCCL API over MPI at the
// level of single collectives (bf16 and fp32 against exact sums, identical bits on every rank),
// the file and tcp rendezvous between processes and their failures, and training under
// `mpirun -np 2` against one rank with twice the batch, ZeRO-1 and gradient buckets against one
// exchange after the backward, each exchange captured into the step's CUDA graphs against the
// uncaptured run, and ZeRO-1 runs resumed on another number of ranks; and jobs
// without MPI (dist.init = file/tcp/env), whose host collectives run over the device
// communicator: the collectives themselves, and training bitwise equal to dist.init = mpi.
//
// The collective checks run in ranks started by mpirun: the outer test launches this very
// binary on the DISABLED_ worker test (gtest runs it only when asked to).
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#if defined(OURO_TEST_NCCL_OVER_MPI)
#include <cuda_runtime_api.h>  // the emulator's runtime (streams, capture, graphs)
#endif

#include "dist/rendezvous.h"
#include "dist/run_comm.h"
#include "ouro/comm.h"
#include "ouro/data.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace ouro::test;

namespace {

// A job that hangs (ranks that disagree on their collectives) fails after 4 minutes with its
// output, instead of waiting for ctest's timeout of the whole binary.
std::string mpirun(int np) {
  return "timeout -k 10 240 mpirun --allow-run-as-root --oversubscribe --bind-to none -np " + std::to_string(np) +
         " ";
}

// How many ranks of an mpirun'd gtest worker ran its one test and passed (a rank that filtered
// it out or skipped it prints no such line).
int ranks_passed(const std::string& out) {
  int passed = 0;
  for (size_t p = out.find("[  PASSED  ] 1 test"); p != std::string::npos; p = out.find("[  PASSED  ] 1 test", p + 1))
    ++passed;
  return passed;
}

// A port nobody listens on right now (the kernel's pick, released again).
int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t l = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &l);
  ::close(fd);
  return ntohs(a.sin_port);
}

// ---- bf16 as the spec says: widen exactly, round once to nearest-even ----
float bf16_to_float(uint16_t b) {
  uint32_t u = static_cast<uint32_t>(b) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
uint16_t float_to_bf16(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

uint64_t fnv(const void* p, size_t n) {
  uint64_t h = 1469598103934665603ull;
  for (size_t i = 0; i < n; ++i) h = (h ^ static_cast<const unsigned char*>(p)[i]) * 1099511628211ull;
  return h;
}

// Rank r's input element i: integers times 1/4 in [-16, 16] (so every sum over a few ranks is
// exact in bf16 and fp32) or, with `rough`, arbitrary floats (rounding then matters).
float input(int r, size_t i, bool rough) {
  if (!rough) return static_cast<float>(static_cast<int>((i * 7 + r * 13) % 129) - 64) * 0.25f;
  std::mt19937 g(static_cast<uint32_t>(i * 131 + r));
  return std::uniform_real_distribution<float>(-3.0f, 3.0f)(g);
}

// Buffer of n elements of dt holding rank r's inputs; element access through get/set.
struct Buf {
  ouro::DType dt;
  std::vector<unsigned char> bytes;
  Buf(ouro::DType d, size_t n) : dt(d), bytes(n * ouro::dtype_size(d)) {}
  size_t size() const { return bytes.size() / ouro::dtype_size(dt); }
  float get(size_t i) const {
    if (dt == ouro::DType::F32) {
      float f;
      std::memcpy(&f, &bytes[4 * i], 4);
      return f;
    }
    uint16_t b;
    std::memcpy(&b, &bytes[2 * i], 2);
    return bf16_to_float(b);
  }
  void set(size_t i, float v) {  // for bf16 the value must already be representable
    if (dt == ouro::DType::F32) {
      std::memcpy(&bytes[4 * i], &v, 4);
    } else {
      uint16_t b = float_to_bf16(v);
      std::memcpy(&bytes[2 * i], &b, 2);
    }
  }
};

Buf rank_input(ouro::DType dt, size_t n, int r, bool rough) {
  Buf b(dt, n);
  for (size_t i = 0; i < n; ++i) b.set(i, input(r, i, rough));
  return b;
}

// The reduction as specified: the ranks' (dtype-rounded) inputs summed in fp32 in rank order,
// divided by W for avg, rounded once to the dtype.
float expected_sum(ouro::DType dt, size_t i, int W, bool rough, bool avg) {
  float acc = 0;
  for (int r = 0; r < W; ++r) {
    Buf one(dt, 1);
    one.set(0, input(r, i, rough));
    acc = r == 0 ? one.get(0) : acc + one.get(0);
  }
  if (avg) acc /= static_cast<float>(W);
  Buf out(dt, 1);
  out.set(0, acc);
  return out.get(0);
}

// Every rank's bytes equal rank 0's.
void expect_same_on_every_rank(ouro::Communicator& c, const Buf& b, const std::string& what) {
  uint64_t mine = fnv(b.bytes.data(), b.bytes.size()), ref = mine;
  c.broadcast(&ref, sizeof ref, 0);
  double differs = mine != ref;
  c.all_reduce(&differs, 1, ouro::ReduceOp::Max);
  EXPECT_EQ(differs, 0.0) << what << ": ranks hold different bits";
}

}  // namespace

TEST(DeviceShard, EqualShardsWithTheRemainderOnTheLastRank) {
  for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(7), size_t(1001), size_t(4096)}) {
    for (int W : {1, 2, 3, 8}) {
      size_t covered = 0;
      for (int r = 0; r < W; ++r) {
        const auto s = ouro::device_shard_of(n, W, r);
        EXPECT_EQ(s.begin, covered) << "n=" << n << " W=" << W << " r=" << r;
        // NCCL's equal count for every rank; the last one also holds the n % W leftovers.
        EXPECT_EQ(s.size(), n / W + (r == W - 1 ? n % W : 0)) << "n=" << n << " W=" << W << " r=" << r;
        covered = s.end;
      }
      EXPECT_EQ(covered, n) << "n=" << n << " W=" << W;
    }
  }
}

// ---- the worker, run by mpirun from NcclOverMpi.CollectivesMatchExactSumsOnEveryRank ----
TEST(NcclOverMpiWorker, DISABLED_Collectives) {
  ouro::RendezvousOptions rv;  // MPI_Bcast of the unique id
  auto comm = ouro::make_device_comm(ouro::make_comm("mpi", 60), rv, 60);
  ASSERT_TRUE(comm->has_device_collectives());
  const int W = comm->world(), me = comm->rank();
  ASSERT_GE(W, 2);
  for (ouro::DType dt : {ouro::DType::F32, ouro::DType::BF16}) {
    const char* dn = dt == ouro::DType::F32 ? "fp32" : "bf16";
    // Even and uneven splits over the ranks, and fewer elements than ranks.
    for (size_t n : {size_t(4096), size_t(1001), size_t(1)}) {
      for (bool rough : {false, true}) {
        const std::string tag = fmt::format("{} n={} {}", dn, n, rough ? "rough" : "exact");
        for (ouro::ReduceOp op : {ouro::ReduceOp::Sum, ouro::ReduceOp::Avg}) {
          Buf b = rank_input(dt, n, me, rough);
          comm->device_all_reduce(b.bytes.data(), n, dt, op, nullptr);
          size_t bad = 0;
          for (size_t i = 0; i < n; ++i)
            bad += b.get(i) != expected_sum(dt, i, W, rough, op == ouro::ReduceOp::Avg);
          EXPECT_EQ(bad, 0u) << "all-reduce " << tag;
          expect_same_on_every_rank(*comm, b, "all-reduce " + tag);
        }
        {
          Buf b = rank_input(dt, n, me, rough);
          comm->device_all_reduce(b.bytes.data(), n, dt, ouro::ReduceOp::Max, nullptr);
          size_t bad = 0;
          for (size_t i = 0; i < n; ++i) {
            float m = -INFINITY;
            for (int r = 0; r < W; ++r) {
              Buf one(dt, 1);
              one.set(0, input(r, i, rough));
              m = std::max(m, one.get(0));
            }
            bad += b.get(i) != m;
          }
          EXPECT_EQ(bad, 0u) << "all-reduce max " << tag;
        }
        {
          Buf b = rank_input(dt, n, me, rough);
          comm->device_reduce_scatter(b.bytes.data(), n, dt, ouro::ReduceOp::Avg, nullptr);
          const ouro::ShardRange s = ouro::device_shard_of(n, W, me);
          size_t bad = 0;
          for (size_t i = s.begin; i < s.end; ++i) bad += b.get(i) != expected_sum(dt, i, W, rough, true);
          EXPECT_EQ(bad, 0u) << "reduce-scatter " << tag;
        }
        {
          // Each rank fills only its own shard; the rest starts as garbage (NaN bits).
          Buf b(dt, n);
          std::fill(b.bytes.begin(), b.bytes.end(), 0xff);
          const ouro::ShardRange s = ouro::device_shard_of(n, W, me);
          for (size_t i = s.begin; i < s.end; ++i) b.set(i, input(me, i, false));
          comm->device_all_gather(b.bytes.data(), n, dt, nullptr);
          size_t bad = 0;
          for (int r = 0; r < W; ++r) {
            const ouro::ShardRange sr = ouro::device_shard_of(n, W, r);
            for (size_t i = sr.begin; i < sr.end; ++i) bad += b.get(i) != input(r, i, false);
          }
          EXPECT_EQ(bad, 0u) << "all-gather " << tag;
          expect_same_on_every_rank(*comm, b, "all-gather " + tag);
        }
        {
          const int root = W - 1;
          Buf b = rank_input(dt, n, me, rough);
          comm->device_broadcast(b.bytes.data(), n, dt, root, nullptr);
          EXPECT_EQ(b.bytes, rank_input(dt, n, root, rough).bytes) << "broadcast " << tag;
        }
      }
    }
  }
}

TEST(NcclOverMpi, CollectivesMatchExactSumsOnEveryRank) {
#if !defined(OURO_TEST_NCCL_OVER_MPI)
  GTEST_SKIP() << "this build has no simt device half (NCCL-over-MPI)";
#endif
  const fs::path log = fs::temp_directory_path() / ("ouro_nccl_over_mpi_" + std::to_string(::getpid()) + ".log");
  char self[4096] = {};
  ASSERT_GT(::readlink("/proc/self/exe", self, sizeof self - 1), 0);
  for (int np : {2, 3}) {
    // No colour: mpirun's pipe may still look like a terminal to gtest, and escape codes would
    // hide the "[  PASSED  ]" lines counted below.
    auto r = run_shell(mpirun(np) + self + " --gtest_color=no --gtest_also_run_disabled_tests "
                       "--gtest_filter=NcclOverMpiWorker.DISABLED_Collectives", log);
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(ranks_passed(r.out), np) << r.out;
  }
  fs::remove(log);
}

// ---- the device collectives captured into a CUDA graph, as train.cuda_graph's data-parallel
// step holds them: the worker, run by mpirun from NcclOverMpi.CapturedCollectivesRunAtEachReplay ----
#if defined(OURO_TEST_NCCL_OVER_MPI)
TEST(NcclOverMpiWorker, DISABLED_CapturedCollectives) {
  ouro::RendezvousOptions rv;
  auto comm = ouro::make_device_comm(ouro::make_comm("mpi", 60), rv, 60);
  const int W = comm->world(), me = comm->rank();
  ASSERT_GE(W, 2);
  const ouro::DType dt = ouro::DType::BF16;
  const size_t n = 1001;  // uneven over 2 and 3 ranks: the reduce-scatter's and all-gather's tail too
  const auto avg = ouro::ReduceOp::Avg;
  cudaStream_t s = nullptr;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  // Fixed buffers (a graph holds their addresses), refilled in place before each launch.
  Buf plain(dt, n), bucketed(dt, n), scattered(dt, n), gathered(dt, n);
  const std::vector<unsigned char> nan_bits(plain.bytes.size(), 0xff);
  for (Buf* b : {&plain, &bucketed, &scattered, &gathered})
    std::copy(nan_bits.begin(), nan_bits.end(), b->bytes.begin());
  ASSERT_EQ(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal), cudaSuccess);
  comm->device_all_reduce(plain.bytes.data(), n, dt, avg, s);
  // Two buckets forked onto the communicator's stream and joined back (else the capture would
  // end with cudaErrorStreamCaptureUnjoined).
  comm->device_all_reduce_spans_start(bucketed.bytes.data(), {{0, 500}, {700, 301}}, dt, avg, s);
  comm->device_all_reduce_spans_start(bucketed.bytes.data(), {{500, 200}}, dt, avg, s);
  comm->device_wait_started(s);
  comm->device_reduce_scatter(scattered.bytes.data(), n, dt, avg, s);
  comm->device_all_gather(gathered.bytes.data(), n, dt, s);
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(s, &graph), cudaSuccess);
  for (Buf* b : {&plain, &bucketed, &scattered, &gathered}) EXPECT_EQ(b->bytes, nan_bits) << "the capture ran";
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  // Each launch reduces what the buffers hold then: exact sums first, rounded ones next.
  for (bool rough : {false, true}) {
    const std::string tag = rough ? "rough" : "exact";
    const Buf in = rank_input(dt, n, me, rough);
    for (Buf* b : {&plain, &bucketed, &scattered}) std::copy(in.bytes.begin(), in.bytes.end(), b->bytes.begin());
    std::copy(nan_bits.begin(), nan_bits.end(), gathered.bytes.begin());
    const ouro::ShardRange mine = ouro::device_shard_of(n, W, me);
    for (size_t i = mine.begin; i < mine.end; ++i) gathered.set(i, in.get(i));
    ASSERT_EQ(cudaGraphLaunch(exec, s), cudaSuccess);
    ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
    size_t bad_plain = 0, bad_bucketed = 0, bad_scattered = 0, bad_gathered = 0;
    for (size_t i = 0; i < n; ++i) {
      const float want = expected_sum(dt, i, W, rough, true);
      bad_plain += plain.get(i) != want;
      bad_bucketed += bucketed.get(i) != want;
      if (i >= mine.begin && i < mine.end) bad_scattered += scattered.get(i) != want;
    }
    for (int r = 0; r < W; ++r) {
      const Buf theirs = rank_input(dt, n, r, rough);
      const ouro::ShardRange sr = ouro::device_shard_of(n, W, r);
      for (size_t i = sr.begin; i < sr.end; ++i) bad_gathered += gathered.get(i) != theirs.get(i);
    }
    EXPECT_EQ(bad_plain, 0u) << "all-reduce " << tag;
    EXPECT_EQ(bad_bucketed, 0u) << "bucketed all-reduce " << tag;
    EXPECT_EQ(bad_scattered, 0u) << "reduce-scatter " << tag;
    EXPECT_EQ(bad_gathered, 0u) << "all-gather " << tag;
    expect_same_on_every_rank(*comm, plain, "all-reduce " + tag);
    expect_same_on_every_rank(*comm, gathered, "all-gather " + tag);
  }
  EXPECT_EQ(cudaGraphExecDestroy(exec), cudaSuccess);
  EXPECT_EQ(cudaGraphDestroy(graph), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
}
#endif

TEST(NcclOverMpi, CapturedCollectivesRunAtEachReplay) {
#if !defined(OURO_TEST_NCCL_OVER_MPI)
  GTEST_SKIP() << "this build has no simt device half (NCCL-over-MPI)";
#endif
  const fs::path log = fs::temp_directory_path() / ("ouro_nccl_captured_" + std::to_string(::getpid()) + ".log");
  char self[4096] = {};
  ASSERT_GT(::readlink("/proc/self/exe", self, sizeof self - 1), 0);
  auto r = run_shell(mpirun(2) + self + " --gtest_color=no --gtest_also_run_disabled_tests "
                     "--gtest_filter=NcclOverMpiWorker.DISABLED_CapturedCollectives", log);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(ranks_passed(r.out), 2) << r.out;
  fs::remove(log);
}

// ---- a worker where rank 1 alone fails before a collective that rank 0 is already in ----
TEST(NcclOverMpiWorker, DISABLED_OneRankFailsAlone) {
  ouro::RendezvousOptions rv;
  auto comm = ouro::make_device_comm(ouro::make_comm("mpi", 60), rv, 60);
  std::vector<float> b(16, 1.0f);
  // Rank 1's root is out of range: it throws before any MPI call, while rank 0 waits in the
  // broadcast for rank 1's data, which never comes.
  const int root = comm->rank() == 1 ? 7 : 1;
  comm->device_broadcast(b.data(), b.size(), ouro::DType::F32, root, nullptr);
}

TEST(NcclOverMpi, ARankThatFailsAloneEndsTheJobAtOnce) {
#if !defined(OURO_TEST_NCCL_OVER_MPI)
  GTEST_SKIP() << "this build has no simt device half (NCCL-over-MPI)";
#endif
  const fs::path log = fs::temp_directory_path() / ("ouro_nccl_alone_" + std::to_string(::getpid()) + ".log");
  char self[4096] = {};
  ASSERT_GT(::readlink("/proc/self/exe", self, sizeof self - 1), 0);
  auto r = run_shell(mpirun(2) + self + " --gtest_color=no --gtest_also_run_disabled_tests "
                     "--gtest_filter=NcclOverMpiWorker.DISABLED_OneRankFailsAlone", log);
  EXPECT_NE(r.code, 0) << r.out;
  // Rank 1's error is printed and the job ends well before rank 0's 60 s timeout: rank 1 must
  // not sit in MPI_Finalize (which waits for rank 0) while rank 0 waits in the broadcast.
  EXPECT_NE(r.out.find("device broadcast: root 7 outside 2 ranks"), std::string::npos) << r.out;
  EXPECT_LT(r.seconds, 30.0) << r.out;
  fs::remove(log);
}

// ---- more ranks on a node than GPUs: refused at start, naming both numbers ----
TEST(NcclOverMpiWorker, DISABLED_MoreRanksThanDevices) {
  ouro::RendezvousOptions rv;
  auto comm = ouro::make_device_comm(ouro::make_comm("mpi", 60), rv, 60);
}

TEST(NcclOverMpi, MoreRanksPerNodeThanDevicesAreRefusedAtStart) {
#if !defined(OURO_TEST_NCCL_OVER_MPI)
  GTEST_SKIP() << "this build has no simt device half (NCCL-over-MPI)";
#endif
  const fs::path log = fs::temp_directory_path() / ("ouro_nccl_devices_" + std::to_string(::getpid()) + ".log");
  char self[4096] = {};
  ASSERT_GT(::readlink("/proc/self/exe", self, sizeof self - 1), 0);
  // The emulator as a node of 2 GPUs (OURO_SIMT_DEVICES): 3 ranks must not share them.
  auto r = run_shell(mpirun(3) + "-x OURO_SIMT_DEVICES=2 " + self +
                     " --gtest_color=no --gtest_also_run_disabled_tests "
                     "--gtest_filter=NcclOverMpiWorker.DISABLED_MoreRanksThanDevices", log);
  EXPECT_NE(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("3 ranks on this node but 2 CUDA device(s)"), std::string::npos) << r.out;
  EXPECT_LT(r.seconds, 30.0) << r.out;  // at start, not after a timeout
  // 2 ranks on 2 GPUs: fine.
  r = run_shell(mpirun(2) + "-x OURO_SIMT_DEVICES=2 " + self +
                " --gtest_color=no --gtest_also_run_disabled_tests "
                "--gtest_filter=NcclOverMpiWorker.DISABLED_MoreRanksThanDevices", log);
  EXPECT_EQ(r.code, 0) << r.out;
  EXPECT_EQ(ranks_passed(r.out), 2) << r.out;
  fs::remove(log);
}

// ---- host collectives over the device communicator (no MPI host communicator) ----
namespace {

// Rank r's double input: beyond float precision, so a reduction that narrowed to fp32 would show.
double input_d(int r, size_t i) { return static_cast<double>(input(r, i, true)) + 1e-9 * static_cast<double>(i + 1); }

template <typename T>
void expect_same_bits_on_every_rank(ouro::Communicator& c, const std::vector<T>& v, const std::string& what) {
  uint64_t mine = fnv(v.data(), v.size() * sizeof(T)), ref = mine;
  c.broadcast(&ref, sizeof ref, 0);
  double differs = mine != ref;
  c.all_reduce(&differs, 1, ouro::ReduceOp::Max);
  EXPECT_EQ(differs, 0.0) << what << ": ranks hold different bits";
}

// What MpiComm specifies for rank r's inputs f(r, i): the sum (here in rank order, as
// NCCL-over-MPI adds), Avg as that sum times 1/W, Max.
template <typename T, class F>
T expected_host(F f, size_t i, int W, ouro::ReduceOp op) {
  T acc = f(0, i);
  for (int r = 1; r < W; ++r) acc = op == ouro::ReduceOp::Max ? std::max(acc, T(f(r, i))) : acc + T(f(r, i));
  if (op == ouro::ReduceOp::Avg) acc *= T(1) / static_cast<T>(W);
  return acc;
}

const char* op_name(ouro::ReduceOp op) {
  return op == ouro::ReduceOp::Sum ? "sum" : op == ouro::ReduceOp::Avg ? "avg" : "max";
}

}  // namespace

TEST(NcclOverMpiWorker, DISABLED_HostCollectivesOverTheDevice) {
  const char* path = std::getenv("OURO_TEST_INIT_PATH");
  ASSERT_TRUE(path && *path) << "run by NcclOverMpi.HostCollectivesWithoutMpi";
  ouro::RendezvousOptions rv;
  rv.method = ouro::RendezvousMethod::file;
  rv.path = path;
  rv.timeout_s = 60;
  auto host = ouro::make_launcher_ranks_comm();
  ASSERT_FALSE(host->has_host_collectives());
  auto comm = ouro::make_device_comm(std::move(host), rv, 60);
  EXPECT_EQ(comm->name(), "nccl-over-mpi (host collectives over nccl-over-mpi)");
  const int W = comm->world(), me = comm->rank();
  ASSERT_GE(W, 2);
  auto f32 = [](int r, size_t i) { return input(r, i, true); };
  // An uneven split, fewer elements than ranks (W = 3: ranks past the end own empty shards).
  for (size_t n : {size_t(1001), size_t(2), size_t(1)}) {
    for (ouro::ReduceOp op : {ouro::ReduceOp::Sum, ouro::ReduceOp::Avg, ouro::ReduceOp::Max}) {
      const std::string tag = fmt::format("n={} {}", n, op_name(op));
      std::vector<float> b(n);
      for (size_t i = 0; i < n; ++i) b[i] = f32(me, i);
      comm->all_reduce(b.data(), n, op);
      size_t bad = 0;
      for (size_t i = 0; i < n; ++i) bad += b[i] != expected_host<float>(f32, i, W, op);
      EXPECT_EQ(bad, 0u) << "fp32 all-reduce " << tag;
      expect_same_bits_on_every_rank(*comm, b, "fp32 all-reduce " + tag);

      std::vector<double> d(n);
      for (size_t i = 0; i < n; ++i) d[i] = input_d(me, i);
      comm->all_reduce(d.data(), n, op);
      bad = 0;
      for (size_t i = 0; i < n; ++i) bad += d[i] != expected_host<double>(input_d, i, W, op);
      EXPECT_EQ(bad, 0u) << "fp64 all-reduce " << tag;

      // Only this rank's shard_of shard is specified afterwards.
      for (size_t i = 0; i < n; ++i) b[i] = f32(me, i);
      comm->reduce_scatter(b.data(), n, op);
      const ouro::ShardRange s = ouro::shard_of(n, W, me);
      bad = 0;
      for (size_t i = s.begin; i < s.end; ++i) bad += b[i] != expected_host<float>(f32, i, W, op);
      EXPECT_EQ(bad, 0u) << "reduce-scatter " << tag << " shard " << s.begin << ".." << s.end;
    }
    // All-gather over shard_of's shards (sizes differing by one); the rest starts as NaN.
    std::vector<float> g(n, std::nanf(""));
    std::vector<double> gd(n, std::nan(""));
    const ouro::ShardRange s = ouro::shard_of(n, W, me);
    for (size_t i = s.begin; i < s.end; ++i) g[i] = f32(me, i), gd[i] = input_d(me, i);
    comm->all_gather(g.data(), n);
    comm->all_gather(gd.data(), n);
    size_t bad = 0, bad_d = 0;
    for (int r = 0; r < W; ++r) {
      const ouro::ShardRange sr = ouro::shard_of(n, W, r);
      for (size_t i = sr.begin; i < sr.end; ++i) bad += g[i] != f32(r, i), bad_d += gd[i] != input_d(r, i);
    }
    EXPECT_EQ(bad, 0u) << "fp32 all-gather n=" << n;
    EXPECT_EQ(bad_d, 0u) << "fp64 all-gather n=" << n;
  }
  // Bytes from a root other than 0, an odd count.
  std::vector<unsigned char> bytes(37);
  for (size_t k = 0; k < bytes.size(); ++k) bytes[k] = static_cast<unsigned char>(me * 50 + k);
  comm->broadcast(bytes.data(), bytes.size(), 1);
  for (size_t k = 0; k < bytes.size(); ++k) EXPECT_EQ(bytes[k], static_cast<unsigned char>(50 + k)) << k;
  // The barrier holds every rank until the last arrives: rank 1 comes 0.3 s late.
  if (me == 1) std::this_thread::sleep_for(std::chrono::milliseconds(300));
  const auto t0 = std::chrono::steady_clock::now();
  comm->barrier();
  const double waited = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (me == 0) {
    EXPECT_GT(waited, 0.2) << "rank 0 left the barrier before rank 1 joined it";
  }
}

TEST(NcclOverMpi, HostCollectivesWithoutMpi) {
#if !defined(OURO_TEST_NCCL_OVER_MPI)
  GTEST_SKIP() << "this build has no simt device half (NCCL-over-MPI)";
#endif
  const fs::path tmp = fs::temp_directory_path() / ("ouro_host_over_device_" + std::to_string(::getpid()));
  fs::create_directories(tmp);
  char self[4096] = {};
  ASSERT_GT(::readlink("/proc/self/exe", self, sizeof self - 1), 0);
  for (int np : {2, 3}) {
    const fs::path id = tmp / ("nccl" + std::to_string(np) + ".id");
    auto r = run_shell(mpirun(np) + "-x OURO_TEST_INIT_PATH=" + id.string() + " " + self +
                       " --gtest_color=no --gtest_also_run_disabled_tests "
                       "--gtest_filter=NcclOverMpiWorker.DISABLED_HostCollectivesOverTheDevice",
                       tmp / "log");
    EXPECT_EQ(r.code, 0) << r.out;
    EXPECT_EQ(ranks_passed(r.out), np) << r.out;
    EXPECT_FALSE(fs::exists(id)) << "rank 0 removes the rendezvous file";
  }
  fs::remove_all(tmp);
}

TEST(LauncherRanksComm, KnowsTheRanksAndRefusesCollectivesNamingThem) {
  ::setenv("RANK", "1", 1), ::setenv("WORLD_SIZE", "2", 1), ::setenv("LOCAL_RANK", "1", 1);
  const bool launched = ouro::detect_dist_env().launcher != "env";  // under a real launcher: its ranks
  auto c = ouro::make_launcher_ranks_comm();
  if (!launched) {
    EXPECT_EQ(c->rank(), 1);
    EXPECT_EQ(c->world(), 2);
    EXPECT_EQ(c->local_rank(), 1);
  }
  EXPECT_FALSE(c->has_host_collectives());
  float x = 1;
  try {
    c->all_reduce(&x, 1, ouro::ReduceOp::Sum);
    ADD_FAILURE() << "the launcher-ranks communicator reduced";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("host all-reduce before the device communicator exists"),
              std::string::npos) << e.what();
  }
  EXPECT_THROW(c->barrier(), std::exception);
  EXPECT_THROW(c->broadcast(&x, sizeof x, 0), std::exception);
#if defined(OURO_TEST_NCCL_OVER_MPI)
  // Without MPI the NCCL id cannot travel by MPI: refused before anything starts.
  ouro::RendezvousOptions rv;  // method mpi
  try {
    ouro::make_device_comm(std::move(c), rv, 5);
    ADD_FAILURE() << "dist.init = mpi accepted without MPI";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("dist.init = mpi needs an MPI host communicator"), std::string::npos)
        << e.what();
  }
#endif
  ::unsetenv("RANK"), ::unsetenv("WORLD_SIZE"), ::unsetenv("LOCAL_RANK");
}

TEST(RunComm, PicksTheHostTransportFromTheDeviceAndTheRendezvous) {
  if (ouro::detect_dist_env().launcher != "none") GTEST_SKIP() << "run under a launcher";
  // The run's DistConfig is read as it is (no copy into other options); an unknown dist.init
  // cannot reach here: the config refuses it (Config.DistRendezvousKeysAreValidated).
  ouro::DistConfig d;
  d.init = ouro::DistInit::file;
  d.init_path = "/nonexistent/nccl.id";  // never used: no device communicator is made below
  EXPECT_EQ(ouro::make_run_host_comm(d, ouro::Device::simt)->name(), "local");  // one process: no rendezvous at all
  ::setenv("RANK", "0", 1), ::setenv("WORLD_SIZE", "2", 1);
  auto h = ouro::make_run_host_comm(d, ouro::Device::simt);
  EXPECT_FALSE(h->has_host_collectives()) << h->name();  // no MPI started for a device run without it
  EXPECT_EQ(h->world(), 2);
  d.init = ouro::DistInit::tcp;
  d.init_addr = "127.0.0.1:1";
  EXPECT_FALSE(ouro::make_run_host_comm(d, ouro::Device::simt)->has_host_collectives());
  ::unsetenv("RANK"), ::unsetenv("WORLD_SIZE");
}

// ---- rendezvous between processes ----
namespace {

class Rendezvous : public ScratchDirTest {
 protected:
  void SetUp() override { make_dir("ouro_test_rendezvous_"); }

  // The id NCCL would hand out: binary, zero bytes included.
  std::string id() const {
    std::string s(128, '\0');
    for (size_t i = 0; i < s.size(); ++i) s[i] = static_cast<char>((i * 37 + 11) % 256);
    return s;
  }

  // Rank `rank` of `world` in a child process; it writes what it received (or its error) to
  // <dir>/rank<rank>.out and exits 0 on success.
  pid_t spawn(const ouro::RendezvousOptions& rv, int rank, int world) {
    const std::string bytes = rank == 0 ? id() : std::string();
    const fs::path out = dir / ("rank" + std::to_string(rank) + ".out");
    pid_t pid = ::fork();
    if (pid != 0) return pid;
    int code = 0;
    std::string result;
    try {
      auto local = ouro::make_comm("local", 0);
      result = ouro::rendezvous_bytes(rv, rank, world, bytes, *local);
    } catch (const std::exception& e) {
      result = std::string("ERROR: ") + e.what();
      code = 1;
    }
    std::ofstream(out, std::ios::binary) << result;
    std::_Exit(code);
  }
  int wait_for(pid_t pid) {
    int st = 0;
    ::waitpid(pid, &st, 0);
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  }
  std::string result(int rank) const { return read_file(dir / ("rank" + std::to_string(rank) + ".out")); }

  ouro::RendezvousOptions tcp(int port, double timeout_s) const {
    ouro::RendezvousOptions rv;
    rv.method = ouro::RendezvousMethod::tcp;
    rv.addr = "127.0.0.1:" + std::to_string(port);
    rv.timeout_s = timeout_s;
    return rv;
  }
};

}  // namespace

TEST_F(Rendezvous, FileDeliversRankZerosBytesAndIsRemovedAfterwards) {
  ouro::RendezvousOptions rv;
  rv.method = ouro::RendezvousMethod::file;
  rv.path = (dir / "nccl.id").string();
  rv.timeout_s = 30;
  pid_t p1 = spawn(rv, 1, 2);  // the reader first: it must wait for the file
  ::usleep(200 * 1000);
  pid_t p0 = spawn(rv, 0, 2);
  EXPECT_EQ(wait_for(p0), 0) << result(0);
  EXPECT_EQ(wait_for(p1), 0) << result(1);
  EXPECT_EQ(result(1), id());
  EXPECT_TRUE(fs::exists(rv.path));
  ouro::rendezvous_finished(rv, 0);
  EXPECT_FALSE(fs::exists(rv.path));
}

TEST_F(Rendezvous, FileFailuresNameThePath) {
  ouro::RendezvousOptions rv;
  rv.method = ouro::RendezvousMethod::file;
  rv.path = (dir / "nccl.id").string();
  rv.timeout_s = 0.5;
  auto local = ouro::make_comm("local", 0);
  try {
    ouro::rendezvous_bytes(rv, 1, 2, "", *local);
    ADD_FAILURE() << "no timeout";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("rank 1: file rendezvous timed out after 0.5 s (dist.timeout_s)"),
              std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find(rv.path), std::string::npos) << e.what();
  }
  std::ofstream(rv.path) << "left over";
  try {
    ouro::rendezvous_bytes(rv, 0, 2, id(), *local);
    ADD_FAILURE() << "a stale file was overwritten";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos) << e.what();
  }
}

TEST_F(Rendezvous, TcpDeliversRankZerosBytesToEveryRank) {
  const auto rv = tcp(free_port(), 30);
  // Peers first: they retry until rank 0 listens.
  pid_t p2 = spawn(rv, 2, 3), p1 = spawn(rv, 1, 3);
  ::usleep(300 * 1000);
  pid_t p0 = spawn(rv, 0, 3);
  EXPECT_EQ(wait_for(p0), 0) << result(0);
  EXPECT_EQ(wait_for(p1), 0) << result(1);
  EXPECT_EQ(wait_for(p2), 0) << result(2);
  EXPECT_EQ(result(1), id());
  EXPECT_EQ(result(2), id());
}

TEST_F(Rendezvous, TcpTimeoutsNameTheRankAndTheAddress) {
  const auto rv = tcp(free_port(), 1);
  pid_t p1 = spawn(rv, 1, 2);  // nobody listens
  EXPECT_EQ(wait_for(p1), 1);
  EXPECT_NE(result(1).find("rank 1: tcp rendezvous timed out after 1 s (dist.timeout_s): cannot reach "
                           "rank 0 at dist.init_addr " + rv.addr),
            std::string::npos) << result(1);
  pid_t p0 = spawn(rv, 0, 2);  // nobody connects
  EXPECT_EQ(wait_for(p0), 1);
  EXPECT_NE(result(0).find("rank 0: tcp rendezvous at " + rv.addr + " timed out after 1 s (dist.timeout_s): "
                           "0 of 1 other ranks connected"),
            std::string::npos) << result(0);
}

TEST_F(Rendezvous, TcpTimeoutNamesTheRanksThatDidNotArrive) {
  const auto rv = tcp(free_port(), 2);
  pid_t p0 = spawn(rv, 0, 4);
  pid_t p2 = spawn(rv, 2, 4);  // ranks 1 and 3 never come
  EXPECT_EQ(wait_for(p0), 1);
  wait_for(p2);
  EXPECT_NE(result(0).find("1 of 3 other ranks connected; ranks 1, 3 did not arrive"), std::string::npos)
      << result(0);
}

TEST_F(Rendezvous, TcpRefusesARankFromAnotherJobSize) {
  const auto rv = tcp(free_port(), 10);
  pid_t p0 = spawn(rv, 0, 2);
  pid_t p1 = spawn(rv, 1, 3);
  EXPECT_EQ(wait_for(p0), 1);
  EXPECT_NE(result(0).find("as one of 3 ranks; this job has 2"), std::string::npos) << result(0);
  EXPECT_NE(wait_for(p1), 0);
}

TEST_F(Rendezvous, BadAddressesAreRefusedClearly) {
  auto local = ouro::make_comm("local", 0);
  auto err = [&](const std::string& addr) {
    ouro::RendezvousOptions rv;
    rv.method = ouro::RendezvousMethod::tcp;
    rv.addr = addr;
    rv.timeout_s = 2;
    try {
      ouro::rendezvous_bytes(rv, 1, 2, "", *local);
    } catch (const std::exception& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(err("no-such-host.invalid:29500").find("cannot resolve host 'no-such-host.invalid'"),
            std::string::npos) << err("no-such-host.invalid:29500");
  EXPECT_NE(err("localhost").find("expected host:port"), std::string::npos) << err("localhost");
  EXPECT_NE(err("localhost:70000").find("port '70000' is not in 1..65535"), std::string::npos);
  EXPECT_NE(err("localhost:http").find("is not in 1..65535"), std::string::npos);
}

TEST(RendezvousResolve, AutoAndEnvPickTheMethod) {
  ::unsetenv("OURO_INIT_ADDR");
  ::setenv("MASTER_ADDR", "10.0.0.1", 1);
  ::setenv("MASTER_PORT", "29500", 1);
  const bool under_mpirun = ouro::detect_dist_env().launcher == "openmpi";
  auto resolve = [](ouro::DistInit init, const std::string& path = "") {
    ouro::DistConfig d;
    d.init = init, d.init_path = path, d.timeout_s = 5;
    return ouro::resolve_rendezvous(d);
  };
  using M = ouro::RendezvousMethod;
  auto rv = resolve(ouro::DistInit::auto_);
  EXPECT_EQ(rv.method, under_mpirun ? M::mpi : M::tcp);
  rv = resolve(ouro::DistInit::env);
  EXPECT_EQ(rv.method, M::tcp);
  EXPECT_EQ(rv.addr, "10.0.0.1:29500");
  ::setenv("OURO_INIT_ADDR", "[::1]:1234", 1);
  EXPECT_EQ(resolve(ouro::DistInit::env).addr, "[::1]:1234");
  EXPECT_EQ(ouro::parse_host_port("[::1]:1234", "x").host, "::1");
  ::unsetenv("OURO_INIT_ADDR"), ::unsetenv("MASTER_ADDR"), ::unsetenv("MASTER_PORT");
  EXPECT_THROW(resolve(ouro::DistInit::env), std::exception);
  // dist.init = file without dist.init_path is refused with the config (DistConfig::validate,
  // Config.DistRendezvousKeysAreValidated), the one place the dist keys are checked.
  EXPECT_EQ(resolve(ouro::DistInit::file, "/x").method, M::file);
}

// ---- training on the simt backend under mpirun ----
namespace {

// configs/tiny.toml's model on a synthetic shard of its 2048-token vocabulary, shrunk to what the
// emulator trains in seconds: 32-token windows, 3 steps.
class DeviceDist : public ScratchDirTest {
 protected:
  void SetUp() override {
    if (std::string(OURO_SIMT_BIN).empty()) GTEST_SKIP() << "no binary with the simt backend";
    make_dir("ouro_test_dist_device_");
    std::mt19937 rng(5);
    std::vector<uint32_t> toks;
    while (toks.size() < 20000) {  // repeated phrases: a learnable signal within 3 steps
      const uint32_t start = rng() % 64;
      for (uint32_t k = 0; k < 8; ++k) toks.push_back((start * 31 + k * 7) % 2048);
    }
    ouro::write_shard(dir / "train.bin", toks, 2048);
  }
  // One rank's command line (without the launcher).
  // bin: the binary the ranks run (the fault test: the tests' fault worker, with the simt backend).
  std::string train_cmd(const std::string& name, const std::string& extra, const std::string& device = "simt",
                        const std::string& bin = OURO_SIMT_BIN) const {
    return bin + " train --config " + std::string(OURO_SOURCE_DIR) +
           "/configs/tiny.toml --device " + device +
           " --set train.steps=3 --set train.seq_len=32 --set train.warmup_steps=1" +
           " --set train.eval_every=0 --set train.log_every=1 --set checkpoint.every=0" +
           " --set data.tokenizer='' --set data.val='' --set run.threads=1" +
           " --set data.train=" + (dir / "train.bin").string() + " --set run.out_dir=" + (dir / name).string() +
           " " + extra;
  }
  CmdResult train(int np, const std::string& name, const std::string& extra, const std::string& device = "simt") {
    return run_shell((np > 0 ? mpirun(np) : std::string()) + train_cmd(name, extra, device), dir / (name + ".log"));
  }
  // The ranks run the tests' fault worker (tests/fault_worker.cpp) with OURO_FAULT_COMM=comm_fault.
  CmdResult train_with_fault(int np, const std::string& name, const std::string& extra, const std::string& comm_fault) {
    return run_shell("OURO_FAULT_COMM=" + comm_fault + " " + mpirun(np) + train_cmd(name, extra, "simt", OURO_FAULT_BIN),
                     dir / (name + ".log"));
  }
  std::vector<double> values(const std::string& name, const char* key) const {
    return metric_values(dir / name, key);
  }
};

}  // namespace

TEST_F(DeviceDist, TwoRanksEqualOneRankWithTwiceTheBatchWithinBf16Noise) {
  // The 2 ranks' 2 x 32-row forwards and the 1 rank's 4 x 32 take the same tiled GEMMs: the
  // skinny-M kernel, which sums each row in another order, serves decoding only (MatmulHint), so
  // step 1's losses differ by fp32 rounding, not bf16's.
  auto one = run_shell(train_cmd("one", "--set train.batch_size=4", "simt"), dir / "one.log");
  ASSERT_EQ(one.code, 0) << one.out;
  // The unique id travels through a file here (dist.init = file), NCCL-over-MPI moves the data,
  // the host collectives included (no MPI host communicator).
  auto two = run_shell(mpirun(2) +
                           train_cmd("two", "--set train.batch_size=2 --set dist.init=file --set dist.init_path=" +
                                                (dir / "nccl.id").string(), "simt"),
                       dir / "two.log");
  ASSERT_EQ(two.code, 0) << two.out;
  EXPECT_NE(two.out.find("data parallel: 2 ranks over nccl-over-mpi (host collectives over nccl-over-mpi)"),
            std::string::npos) << two.out;
  // The final checkpoint proves both ranks' fp32 masters and bf16 weights bitwise identical
  // (the run fails otherwise) and says so.
  EXPECT_NE(two.out.find("step 3: the 2 ranks' weights are bitwise identical"), std::string::npos) << two.out;
  EXPECT_FALSE(fs::exists(dir / "nccl.id"));  // rank 0 removed the rendezvous file
  const auto l1 = values("one", "loss"), l2 = values("two", "loss");
  const auto n1 = values("one", "grad_norm"), n2 = values("two", "grad_norm");
  ASSERT_EQ(l1.size(), 3u);
  ASSERT_EQ(l2.size(), 3u);
  ASSERT_EQ(n2.size(), 3u);
  ASSERT_EQ(n1.size(), 3u);
  // The measured gaps, for whoever revisits the tolerances below.
  for (size_t i = 0; i < 3; ++i)
    std::printf("step %zu: loss 1 rank %.7f, 2 ranks %.7f (rel %.2e); grad norm %.6f vs %.6f (rel %.2e)\n", i + 1,
                l1[i], l2[i], std::abs(l2[i] - l1[i]) / l1[i], n1[i], n2[i], std::abs(n2[i] - n1[i]) / n1[i]);
  // Tolerances from the gaps measured on this test (simt, tiny model, seed 1337, 2026-12-02):
  //   step 1: loss rel 3.1e-8, grad norm rel 4.2e-5; step 2: loss 1.4e-6, norm 7.1e-4;
  //   step 3: loss 4.5e-5, norm 5.9e-4.
  // Each bound is ~10-30x the measurement, and far below what a wrong reduction gives (a sum
  // instead of the average doubles the norm; unreduced gradients fail the weights' fingerprint
  // check above).
  // Step 1 runs the same weights on the same 4 rows: the loss is the mean of the two ranks'
  // half-batch means (fp32), equal to rounding (1e-6 ~ 8 fp32 ulps of a sum of 4 rows). Its
  // gradient differs by the bf16 rounding of the half-batch gradients and of their average
  // (relative 2^-9 per element, of random sign, so the norm moves by far less): 5e-4.
  EXPECT_NEAR(l2[0], l1[0], 1e-6 * l1[0]);
  EXPECT_NEAR(n2[0], n1[0], 5e-4 * n1[0]);
  // Later steps inherit those roundings through AdamW, whose first updates are nearly
  // sign(gradient) * lr: elements with tiny gradients can flip sign, so the loss drifts by bf16
  // noise, 50x below the 2.3% the loss falls over these steps (5e-4), and the norm by 5e-3.
  for (size_t i = 1; i < 3; ++i) {
    EXPECT_NEAR(l2[i], l1[i], 5e-4 * l1[i]) << "step " << i + 1;
    EXPECT_NEAR(n2[i], n1[i], 5e-3 * n1[i]) << "step " << i + 1;
  }
  EXPECT_LT(l2[2], l2[0]);  // and it trains
}

TEST_F(DeviceDist, ZeroOneAndGradientBucketsEqualOneExchangeBitwise) {
  // The same fp32 sum in rank order and one bf16 rounding per gradient element (reduce-scatter
  // vs all-reduce), the same per-shard grad-norm partial sums, and AdamW's bf16 rounding keyed
  // by the absolute parameter index: ZeRO-1 computes ZeRO-0's bits on simt. 2 ranks split the
  // 1,071,872 parameters evenly; 3 ranks leave a tail of 2 on the last rank (device_shard_of),
  // which the reduce-scatter and all-gather carry by a separate Reduce and Broadcast.
  for (int np : {2, 3}) {
    const std::string z0 = "z0_" + std::to_string(np), z1 = "z1_" + std::to_string(np);
    const std::string steps = np == 2 ? "3" : "2";  // 3 ranks on CI's 2 cores: fewer steps
    const std::string common = "--set train.batch_size=2 --set train.steps=" + steps;
    // z0: one all-reduce after the backward (on 2 ranks; 3 keep the default buckets).
    auto r0 = train(np, z0, common + (np == 2 ? " --set dist.bucket_mb=0" : ""));
    ASSERT_EQ(r0.code, 0) << r0.out;
    auto r1 = train(np, z1, common + " --set dist.zero=1");
    ASSERT_EQ(r1.code, 0) << r1.out;
    const std::string ranks = std::to_string(np) + " ranks";
    EXPECT_NE(r1.out.find("data parallel: " + ranks + " over nccl-over-mpi+mpi, ZeRO-1"), std::string::npos)
        << r1.out;
    // The checkpoint's check: masters (gathered) and bf16 weights (all-gathered) agree on every rank.
    EXPECT_NE(r1.out.find("step " + steps + ": the " + ranks + "' weights are bitwise identical"),
              std::string::npos) << r1.out;
    const auto l0 = values(z0, "loss"), l1 = values(z1, "loss");
    ASSERT_EQ(l0.size(), std::stoul(steps)) << ranks;
    EXPECT_EQ(l1, l0) << ranks;
    EXPECT_EQ(values(z1, "grad_norm"), values(z0, "grad_norm")) << ranks;
    EXPECT_LT(l1.back(), l1.front()) << ranks;  // it trains
    // The fp32 masters and the moments, gathered whole from the shards by rank 0.
    const std::string ck = "/checkpoints/step_00000" + steps + "/";
    EXPECT_EQ(read_file(dir / (z1 + ck + "model.safetensors")), read_file(dir / (z0 + ck + "model.safetensors")))
        << ranks;
    EXPECT_EQ(read_file(dir / (z1 + ck + "optimizer.safetensors")),
              read_file(dir / (z0 + ck + "optimizer.safetensors")))
        << ranks;
    if (np != 2) continue;
    // Gradient buckets started during the backward on the communicator's stream: each element
    // is still summed in rank order and rounded once, so the bits equal the one exchange's.
    // 0.5 MiB buckets: a layer's bf16 gradients are 397 KB, so layers 3+2, then 1+0 (their
    // slices merged into one span per tensor), then wte + wpe + lnf (558 KB): 3 buckets.
    auto rb = train(np, "zb", common + " --set dist.bucket_mb=0.5");
    ASSERT_EQ(rb.code, 0) << rb.out;
    EXPECT_NE(rb.out.find("gradients averaged in 3 buckets"), std::string::npos) << rb.out;
    EXPECT_EQ(values("zb", "loss"), l0);
    EXPECT_EQ(values("zb", "grad_norm"), values(z0, "grad_norm"));
    EXPECT_EQ(read_file(dir / ("zb" + ck + "model.safetensors")), read_file(dir / (z0 + ck + "model.safetensors")));
    EXPECT_EQ(read_file(dir / ("zb" + ck + "optimizer.safetensors")),
              read_file(dir / (z0 + ck + "optimizer.safetensors")));
  }
}

TEST_F(DeviceDist, CapturedDataParallelStepsEqualTheUncapturedOnesBitwise) {
  // train.cuda_graph on 2 ranks, for each gradient exchange: one all-reduce after the backward,
  // buckets forked onto the communicator's stream during the backward and joined back by an
  // event, and ZeRO-1's reduce-scatter with the all-gather after AdamW. Each collective is a
  // node of the step's graphs; the run equals the same run uncaptured bitwise. Four steps: the
  // first runs as is (it sizes the buffers), the second is captured, the last two replay (the
  // log's stats say so: a run with graphs silently off would fail here). Two micro-batches a
  // step: the buckets start on the last one only, inside the captured backward.
  const std::string common = "--set train.batch_size=2 --set train.steps=4 --set train.grad_accum=2 ";
  const std::pair<std::string, std::string> forms[] = {
      {"plain", "--set dist.bucket_mb=0"}, {"buckets", "--set dist.bucket_mb=0.5"}, {"zero1", "--set dist.zero=1"}};
  const std::string ck = "/checkpoints/step_000004/";
  for (const auto& [form, set] : forms) {
    const std::string eager = form + "_eager", graph = form + "_graph";
    auto a = train(2, eager, common + set + " --set train.cuda_graph=false");
    ASSERT_EQ(a.code, 0) << a.out;
    EXPECT_EQ(a.out.find("step(s) captured"), std::string::npos) << a.out;
    auto b = train(2, graph, common + set + " --set train.cuda_graph=true");
    ASSERT_EQ(b.code, 0) << b.out;
    EXPECT_NE(b.out.find("train.cuda_graph: 1 step(s) captured, 2 replayed, 1 uncaptured"), std::string::npos)
        << form << "\n" << b.out;
    EXPECT_EQ(b.out.find("could not be captured"), std::string::npos) << form << "\n" << b.out;
    if (form == "buckets") {
      EXPECT_NE(a.out.find("gradients averaged in 3 buckets"), std::string::npos) << a.out;
      EXPECT_NE(b.out.find("gradients averaged in 3 buckets"), std::string::npos) << b.out;
    }
    EXPECT_NE(b.out.find("step 4: the 2 ranks' weights are bitwise identical"), std::string::npos) << b.out;
    for (const char* key : {"loss", "grad_norm"}) {
      const auto x = values(eager, key), y = values(graph, key);
      ASSERT_EQ(x.size(), 4u) << form << " " << key;
      EXPECT_EQ(y, x) << form << " " << key;  // bitwise
    }
    for (const char* file : {"model.safetensors", "optimizer.safetensors"}) {
      const std::string want = read_file(dir / (eager + ck + file));
      EXPECT_FALSE(want.empty()) << form << " " << file;
      EXPECT_EQ(read_file(dir / (graph + ck + file)), want) << form << " " << file;
    }
  }
}

TEST_F(DeviceDist, ZeroOneResumesAcrossWorldSizes) {
  // Four steps, split after two; the moments are saved whole and re-cut for the new world size.
  const std::string four = "--set train.steps=4 ";
  auto ref2 = train(2, "ref2", four + "--set train.batch_size=2 --set dist.zero=1");
  ASSERT_EQ(ref2.code, 0) << ref2.out;
  auto ref1 = train(0, "ref1", four + "--set train.batch_size=4");
  ASSERT_EQ(ref1.code, 0) << ref1.out;
  // 2 ranks (ZeRO-1) -> 1 rank with the same global batch.
  auto a = train(2, "down", four + "--set train.batch_size=2 --set dist.zero=1 --stop-at 2");
  ASSERT_EQ(a.code, 0) << a.out;
  auto b = train(0, "down", four + "--set train.batch_size=4 --set dist.zero=1 --resume");
  ASSERT_EQ(b.code, 0) << b.out;
  EXPECT_NE(b.out.find("resumed from"), std::string::npos) << b.out;
  // 1 rank -> 2 ranks (ZeRO-1).
  auto c = train(0, "up", four + "--set train.batch_size=4 --stop-at 2");
  ASSERT_EQ(c.code, 0) << c.out;
  auto d = train(2, "up", four + "--set train.batch_size=2 --set dist.zero=1 --resume");
  ASSERT_EQ(d.code, 0) << d.out;
  EXPECT_NE(d.out.find("step 4: the 2 ranks' weights are bitwise identical"), std::string::npos) << d.out;
  const auto r2 = values("ref2", "loss"), r1 = values("ref1", "loss");
  const auto down = values("down", "loss"), up = values("up", "loss");
  ASSERT_EQ(r2.size(), 4u);
  ASSERT_EQ(r1.size(), 4u);
  ASSERT_EQ(down.size(), 4u);
  ASSERT_EQ(up.size(), 4u);
  for (size_t i = 0; i < 4; ++i)
    std::printf("step %zu: down %.7f vs 2 ranks %.7f (rel %.2e); up %.7f vs 1 rank %.7f (rel %.2e)\n", i + 1,
                down[i], r2[i], std::abs(down[i] - r2[i]) / r2[i], up[i], r1[i], std::abs(up[i] - r1[i]) / r1[i]);
  // The first two steps are the uninterrupted runs' own (same world size, same code): bitwise.
  for (size_t i = 0; i < 2; ++i) {
    EXPECT_EQ(down[i], r2[i]) << "step " << i + 1;
    EXPECT_EQ(up[i], r1[i]) << "step " << i + 1;
  }
  // After the switch, one rank and two ranks differ by the bf16 rounding of the half-batch
  // gradients and of their average: the bound of TwoRanksEqualOneRankWithTwiceTheBatch's later
  // steps. Resuming from moments or masters that were cut or gathered wrongly moves the loss
  // by orders of magnitude more (the weights' fingerprint check would fail first for a wrong
  // all-gather).
  for (size_t i = 2; i < 4; ++i) {
    EXPECT_NEAR(down[i], r2[i], 5e-4 * r2[i]) << "step " << i + 1;
    EXPECT_NEAR(up[i], r1[i], 5e-4 * r1[i]) << "step " << i + 1;
  }
}

TEST_F(DeviceDist, WithoutMpiTheHostCollectivesRunOverTheDeviceBitwiseAsOverMpi) {
  // ZeRO-1 with an evaluation: the config check, the losses, grad norms and validation loss, and
  // the final checkpoint's gathers of masters and moments are all host collectives. With
  // dist.init = file there is no MPI host communicator and each goes over NCCL(-over-MPI)
  // instead; on 2 ranks every sum is the same a + b, so the runs agree bitwise.
  const std::string common = "--set train.batch_size=2 --set dist.zero=1 --set train.eval_every=3 "
                             "--set train.eval_batches=2 --set data.val=" + (dir / "train.bin").string() + " ";
  auto m = train(2, "host_mpi", common + "--set dist.init=mpi");
  ASSERT_EQ(m.code, 0) << m.out;
  auto f = train(2, "host_nccl", common + "--set dist.init=file --set dist.init_path=" + (dir / "nccl.id").string());
  ASSERT_EQ(f.code, 0) << f.out;
  EXPECT_NE(m.out.find("data parallel: 2 ranks over nccl-over-mpi+mpi, ZeRO-1"), std::string::npos) << m.out;
  EXPECT_NE(f.out.find("data parallel: 2 ranks over nccl-over-mpi (host collectives over nccl-over-mpi), ZeRO-1"),
            std::string::npos) << f.out;
  EXPECT_NE(f.out.find("step 3: the 2 ranks' weights are bitwise identical"), std::string::npos) << f.out;
  const auto loss = values("host_mpi", "loss");
  ASSERT_EQ(loss.size(), 3u);
  EXPECT_EQ(values("host_nccl", "loss"), loss);
  EXPECT_EQ(values("host_nccl", "grad_norm"), values("host_mpi", "grad_norm"));
  const auto val = values("host_mpi", "val_loss");
  ASSERT_FALSE(val.empty());
  EXPECT_EQ(values("host_nccl", "val_loss"), val);
  const std::string ck = "/checkpoints/step_000003/";
  EXPECT_EQ(read_file(dir / ("host_nccl" + ck + "model.safetensors")),
            read_file(dir / ("host_mpi" + ck + "model.safetensors")));
  EXPECT_EQ(read_file(dir / ("host_nccl" + ck + "optimizer.safetensors")),
            read_file(dir / ("host_mpi" + ck + "optimizer.safetensors")));
  EXPECT_FALSE(read_file(dir / ("host_nccl" + ck + "model.safetensors")).empty());
}

TEST_F(DeviceDist, WithoutMpiAConfigMismatchIsStillRefusedNamingTheKey) {
  // The check runs once the device communicator exists, over it.
  const std::string init = "--set dist.init=file --set dist.init_path=" + (dir / "nccl.id").string();
  auto r = run_shell("timeout -k 10 240 mpirun --allow-run-as-root --oversubscribe --bind-to none -np 1 " +
                         train_cmd("mm", init) + " : -np 1 " + train_cmd("mm", init + " --set train.lr=0.01"),
                     dir / "mm.log");
  EXPECT_NE(r.code, 0);
  EXPECT_NE(r.out.find("runs a different config than rank 0"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("train.lr"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("data parallel:"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir / "mm/checkpoints"));
}

TEST_F(DeviceDist, OnTheCpuBackendDistInitIsUnusedAndSaysSo) {
  // The cpu backend's collectives are MPI's: the file rendezvous is never used.
  auto r = train(2, "cpu", "--set train.batch_size=2 --set train.steps=1 --set dist.init=file --set dist.init_path=" +
                               (dir / "nccl.id").string(), "cpu");
  ASSERT_EQ(r.code, 0) << r.out;
  EXPECT_NE(r.out.find("dist.init = file only affects device backends"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("data parallel: 2 ranks over mpi,"), std::string::npos) << r.out;
  EXPECT_FALSE(fs::exists(dir / "nccl.id"));
}

TEST_F(DeviceDist, AHungRankIsDetectedByTheDeviceCollectiveTimeout) {
  // The id goes over tcp; rank 1 stops itself (SIGSTOP) in its second step, on entering its
  // second device all-reduce: the gradients' (one per step without buckets, dist.bucket_mb = 0),
  // after its backward. Rank 0 waits in that device all-reduce until dist.timeout_s.
  const int port = free_port();
  auto r = train_with_fault(2, "hung", "--set train.batch_size=2 --set train.steps=50 --set dist.timeout_s=3 "
                            "--set dist.bucket_mb=0 --set dist.init=tcp --set dist.init_addr=127.0.0.1:" +
                            std::to_string(port), "1:device_all_reduce:2:stop");
  EXPECT_NE(r.code, 0);
  EXPECT_LT(r.seconds, 120.0);
  EXPECT_NE(r.out.find("rank 0: device all-reduce did not complete within 3 s (dist.timeout_s)"),
            std::string::npos) << r.out;
}

TEST_F(DeviceDist, CommBenchMeasuresTheDeviceCommunicator) {
  // `ouro bench comm --device simt`: the gradients' path (bf16 device buffers, the NCCL API over
  // MPI), one row per size, bus bandwidth = algbw x 2(n-1)/n for all-reduce.
  auto r = run_shell(mpirun(2) + OURO_SIMT_BIN + " bench comm --device simt --dtype bf16 --min-bytes 4096 "
                     "--max-bytes 65536 --iters 2 --json", dir / "bench.log");
  ASSERT_EQ(r.code, 0) << r.out;
  const auto brace = r.out.find("{\n");
  ASSERT_NE(brace, std::string::npos) << r.out;
  const auto j = nlohmann::json::parse(r.out.substr(brace, r.out.rfind('}') - brace + 1));
  EXPECT_EQ(j.at("world"), 2);
  EXPECT_NE(j.at("transport").get<std::string>().find("nccl"), std::string::npos) << j.dump();
  EXPECT_NE(j.at("buffers").get<std::string>().find("simt bf16 device"), std::string::npos) << j.dump();
  ASSERT_EQ(j.at("rows").size(), 3u);  // 4096, 16384, 65536 bytes
  for (const auto& row : j.at("rows")) {
    EXPECT_GT(row.at("time_us").get<double>(), 0.0);
    EXPECT_NEAR(row.at("busbw_gbs").get<double>(), row.at("algbw_gbs").get<double>() * 2 * (2 - 1) / 2, 1e-12);
  }
  auto bad = run_shell(std::string(OURO_SIMT_BIN) + " bench comm --dtype bf16", dir / "bad.log");
  EXPECT_NE(bad.code, 0);
  EXPECT_NE(bad.out.find("--dtype bf16"), std::string::npos) << bad.out;
}
