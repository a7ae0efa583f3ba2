// Semantics of the SIMT emulator's primitives, each against its CUDA definition: built-ins,
// barriers, shared memory, shuffles/votes/reductions, atomics under contention, intrinsics and
// the runtime API. Every kernel test runs in every run order and on 1 and 2 OS threads, with
// block sizes that are not multiples of 32 and several grid shapes.
#include <ouro/cuda.h>  // first: it defines __shared__ before the CUDA headers
#include <ouro/simt/bench.h>
#include <ouro/simt/device_model.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace simt = ouro::simt;

// ---- helpers ---------------------------------------------------------------------------------

template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  std::size_t n = 0;
  explicit DeviceBuffer(std::size_t count) : n(count) { OURO_CUDA_CHECK(cudaMalloc(&ptr, count * sizeof(T))); }
  DeviceBuffer(const std::vector<T>& host) : DeviceBuffer(host.size()) { upload(host); }
  ~DeviceBuffer() { cudaFree(ptr); }
  void upload(const std::vector<T>& host) {
    OURO_CUDA_CHECK(cudaMemcpy(ptr, host.data(), n * sizeof(T), cudaMemcpyHostToDevice));
  }
  std::vector<T> download() const {
    std::vector<T> h(n);
    OURO_CUDA_CHECK(cudaMemcpy(h.data(), ptr, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
};

unsigned volume(dim3 d) { return d.x * d.y * d.z; }

struct Mode {
  const char* order;
  unsigned threads;
};

// Every test below runs under each run order and OS-thread count.
class SimtCore : public ::testing::TestWithParam<Mode> {
 protected:
  void SetUp() override {
    saved_order_ = simt::run_order();
    saved_threads_ = simt::worker_threads();
    simt::set_run_order(simt::parse_run_order(GetParam().order));
    simt::set_worker_threads(GetParam().threads);
  }
  void TearDown() override {
    simt::set_run_order(saved_order_);
    simt::set_worker_threads(saved_threads_);
  }

 private:
  simt::RunOrder saved_order_;
  unsigned saved_threads_ = 1;
};

// TSan's cost per emulated thread grows with the number of fibers (each is a TSan thread with
// its own vector clock), so its build leaves the 1024-thread blocks to the plain and ASan builds.
#if defined(__SANITIZE_THREAD__)
constexpr unsigned kMaxBlock = 256;
#else
constexpr unsigned kMaxBlock = 1024;
#endif
const dim3 kBlocks[] = {dim3(37), dim3(8, 4, 2), dim3(33, 3), dim3(64), dim3(kMaxBlock), dim3(1)};
const dim3 kGrids[] = {dim3(3, 2), dim3(1, 1, 2), dim3(5)};

// ---- built-ins -------------------------------------------------------------------------------

struct Ids {
  uint3 t, b;
  dim3 bd, gd;
  int warp_size;
};

__global__ void record_ids(Ids* out) {
  const unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
  const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  out[block * (blockDim.x * blockDim.y * blockDim.z) + tid] = Ids{threadIdx, blockIdx, blockDim, gridDim, warpSize};
}

TEST_P(SimtCore, BuiltinsNameEveryThreadOnce) {
  for (dim3 grid : kGrids) {
    for (dim3 block : kBlocks) {
      const unsigned n = volume(grid) * volume(block);
      DeviceBuffer<Ids> out(n);
      ouro::launch(record_ids, grid, block, 0, nullptr, out.ptr);
      OURO_CUDA_CHECK_LAUNCH();
      const auto h = out.download();
      for (unsigned i = 0; i < n; ++i) {
        const unsigned tid = i % volume(block), b = i / volume(block);
        ASSERT_EQ(h[i].t.x, tid % block.x);
        ASSERT_EQ(h[i].t.y, tid / block.x % block.y);
        ASSERT_EQ(h[i].t.z, tid / (block.x * block.y));
        ASSERT_EQ(h[i].b.x, b % grid.x);
        ASSERT_EQ(h[i].b.y, b / grid.x % grid.y);
        ASSERT_EQ(h[i].b.z, b / (grid.x * grid.y));
        ASSERT_EQ(h[i].bd.x, block.x);
        ASSERT_EQ(h[i].bd.z, block.z);
        ASSERT_EQ(h[i].gd.y, grid.y);
        ASSERT_EQ(h[i].warp_size, 32);
      }
    }
  }
}

// ---- barriers and shared memory -----------------------------------------------------------------

// Hillis-Steele inclusive scan in static shared memory: one barrier pair per step, so any
// thread running ahead of a barrier corrupts the result.
__global__ void block_scan(const int* in, int* out) {
  __shared__ int buf[2][1024];
  const unsigned n = blockDim.x, t = threadIdx.x;
  const unsigned base = blockIdx.x * n;
  int cur = 0;
  buf[cur][t] = in[base + t];
  __syncthreads();
  for (unsigned off = 1; off < n; off *= 2) {
    const int v = buf[cur][t] + (t >= off ? buf[cur][t - off] : 0);
    buf[1 - cur][t] = v;
    cur = 1 - cur;
    __syncthreads();
  }
  out[base + t] = buf[cur][t];
}

TEST_P(SimtCore, SyncthreadsOrdersSharedMemory) {
  std::mt19937 rng(11);
  for (unsigned threads : {1u, 37u, 96u, 255u, kMaxBlock}) {
    const unsigned blocks = 6;
    std::vector<int> in(threads * blocks);
    for (auto& v : in) v = static_cast<int>(rng() % 1000) - 500;
    DeviceBuffer<int> din(in), dout(in.size());
    ouro::launch(block_scan, blocks, threads, 0, nullptr, din.ptr, dout.ptr);
    const auto out = dout.download();
    for (unsigned b = 0; b < blocks; ++b) {
      int acc = 0;
      for (unsigned t = 0; t < threads; ++t) {
        acc += in[b * threads + t];
        ASSERT_EQ(out[b * threads + t], acc) << "threads " << threads << " block " << b << " t " << t;
      }
    }
  }
}

__global__ void barrier_votes(const int* pred, int* out) {
  const unsigned tid = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
  const unsigned n = blockDim.x * blockDim.y * blockDim.z;
  const unsigned block = blockIdx.x + gridDim.x * blockIdx.y;
  const int p = pred[block * n + tid];
  const int c = __syncthreads_count(p);
  const int a = __syncthreads_and(p);
  const int o = __syncthreads_or(p);
  out[(block * n + tid) * 3 + 0] = c;
  out[(block * n + tid) * 3 + 1] = a;
  out[(block * n + tid) * 3 + 2] = o;
}

TEST_P(SimtCore, SyncthreadsCountAndOr) {
  std::mt19937 rng(5);
  for (dim3 block : kBlocks) {
    const dim3 grid(2, 2);
    const unsigned n = volume(block), nb = volume(grid);
    std::vector<int> pred(n * nb);
    // Block 0: all zero, block 1: all set (with values other than 1), others random.
    for (unsigned b = 0; b < nb; ++b)
      for (unsigned t = 0; t < n; ++t)
        pred[b * n + t] = b == 0 ? 0 : b == 1 ? static_cast<int>(1 + rng() % 7) : static_cast<int>(rng() % 3 == 0);
    DeviceBuffer<int> dp(pred), dout(n * nb * 3);
    ouro::launch(barrier_votes, grid, block, 0, nullptr, dp.ptr, dout.ptr);
    const auto out = dout.download();
    for (unsigned b = 0; b < nb; ++b) {
      int count = 0;
      for (unsigned t = 0; t < n; ++t) count += pred[b * n + t] != 0;
      for (unsigned t = 0; t < n; ++t) {
        ASSERT_EQ(out[(b * n + t) * 3 + 0], count);
        ASSERT_EQ(out[(b * n + t) * 3 + 1] != 0, count == static_cast<int>(n));
        ASSERT_EQ(out[(b * n + t) * 3 + 2] != 0, count > 0);
      }
    }
  }
}

// Threads that return early no longer count at later barriers (sm_70+ semantics).
__global__ void early_exit_barrier(int* out, unsigned live) {
  __shared__ int sum;
  if (threadIdx.x == 0) sum = 0;
  __syncthreads();
  if (threadIdx.x >= live) return;
  atomicAdd(&sum, 1);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = sum;
}

TEST_P(SimtCore, ReturnedThreadsLeaveTheBarrier) {
  DeviceBuffer<int> out(4 * 100);
  cudaMemset(out.ptr, 0, 4 * 100 * sizeof(int));
  ouro::launch(early_exit_barrier, 4, 100, 0, nullptr, out.ptr, 45u);
  const auto h = out.download();
  for (unsigned b = 0; b < 4; ++b)
    for (unsigned t = 0; t < 100; ++t) ASSERT_EQ(h[b * 100 + t], t < 45 ? 45 : 0);
}

// Dynamic shared memory: NaN-filled at every block start, exactly the launch's size, private to
// the block even when blocks of one OS thread follow each other.
__global__ void dynamic_shared_kernel(unsigned words, int* nan_seen, double* out) {
  float* s = ouro::dynamic_shared<float>();
  const unsigned t = threadIdx.x;
  int nans = 0;
  for (unsigned i = t; i < words; i += blockDim.x) nans += std::isnan(s[i]) ? 1 : 0;
  atomicAdd(nan_seen, nans);
  __syncthreads();
  for (unsigned i = t; i < words; i += blockDim.x) s[i] = static_cast<float>(blockIdx.x * 100000 + i);
  __syncthreads();
  double acc = 0;
  for (unsigned i = 0; i < words; ++i) acc += s[i] - static_cast<float>(blockIdx.x * 100000);
  out[blockIdx.x * blockDim.x + t] = acc;
}

// RAII: one shared-memory fill mode for a test's lifetime.
struct WithSharedFill {
  simt::SharedFill saved = simt::shared_fill();
  explicit WithSharedFill(simt::SharedFill f) { simt::set_shared_fill(f); }
  ~WithSharedFill() { simt::set_shared_fill(saved); }
};

TEST_P(SimtCore, DynamicSharedIsFreshNanPerBlock) {
  WithSharedFill nan_fill(simt::SharedFill::nan);
  for (unsigned words : {1u, 100u, 12288u}) {
    const unsigned blocks = 7, threads = 50;
    DeviceBuffer<int> nan_seen(1);
    cudaMemset(nan_seen.ptr, 0, sizeof(int));
    DeviceBuffer<double> out(blocks * threads);
    ouro::launch(dynamic_shared_kernel, blocks, threads, words * sizeof(float), nullptr, words, nan_seen.ptr,
                 out.ptr);
    OURO_CUDA_CHECK_LAUNCH();
    EXPECT_EQ(nan_seen.download()[0], static_cast<int>(words * blocks));
    const double want = static_cast<double>(words) * (words - 1) / 2;
    for (double v : out.download()) ASSERT_EQ(v, want);
  }
  // Reading at the alignment the GPU guarantees.
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(simt::detail::tl_dynamic_shared) % 16, 0u);
}

// Static shared memory persists per OS thread; each block sees only what it wrote after a barrier.
__global__ void static_shared_kernel(int* out) {
  __shared__ int tile[64];
  tile[threadIdx.x] = static_cast<int>(blockIdx.x * 1000 + threadIdx.x);
  __syncthreads();
  out[blockIdx.x * blockDim.x + threadIdx.x] = tile[blockDim.x - 1 - threadIdx.x];
}

TEST_P(SimtCore, StaticSharedIsPerBlock) {
  const unsigned blocks = 40, threads = 64;
  DeviceBuffer<int> out(blocks * threads);
  ouro::launch(static_shared_kernel, blocks, threads, 0, nullptr, out.ptr);
  const auto h = out.download();
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < threads; ++t) ASSERT_EQ(h[b * threads + t], static_cast<int>(b * 1000 + threads - 1 - t));
}

// OURO_SIMT_SMEM=stale: a block reading shared memory before writing it sees what the previous
// block of its OS thread left (a NaN only on the thread's first block); nan mode gives NaN.
__global__ void read_before_write_kernel(float* out) {
  __shared__ float tile[32];
  float* dyn = ouro::dynamic_shared<float>();
  out[2 * (blockIdx.x * blockDim.x + threadIdx.x)] = tile[threadIdx.x];
  out[2 * (blockIdx.x * blockDim.x + threadIdx.x) + 1] = dyn[threadIdx.x];
  __syncthreads();
  tile[threadIdx.x] = static_cast<float>(blockIdx.x * 100 + threadIdx.x);
  dyn[threadIdx.x] = static_cast<float>(blockIdx.x * 100 + threadIdx.x + 50);
}

TEST(SimtSharedFill, StaleKeepsThePreviousBlocksValues) {
  const unsigned saved_threads = simt::worker_threads();
  const simt::RunOrder saved_order = simt::run_order();
  simt::set_worker_threads(1);  // one OS thread: block b runs right after block b-1
  simt::set_run_order({simt::Order::forward, 0});
  const unsigned blocks = 5, threads = 32;
  DeviceBuffer<float> out(2 * blocks * threads);
  std::vector<float> nan_run, stale_run;
  {
    WithSharedFill nan_fill(simt::SharedFill::nan);
    ouro::launch(read_before_write_kernel, blocks, threads, threads * sizeof(float), nullptr, out.ptr);
    nan_run = out.download();
  }
  {
    WithSharedFill stale_fill(simt::SharedFill::stale);
    ouro::launch(read_before_write_kernel, blocks, threads, threads * sizeof(float), nullptr, out.ptr);
    stale_run = out.download();
  }
  simt::set_worker_threads(saved_threads);
  simt::set_run_order(saved_order);
  for (float v : nan_run) ASSERT_TRUE(std::isnan(v));
  // Block 0 of the stale run follows the nan run's last block (same OS thread, same kernel).
  for (unsigned b = 0; b < blocks; ++b)
    for (unsigned t = 0; t < threads; ++t) {
      const unsigned prev = b == 0 ? blocks - 1 : b - 1;
      EXPECT_EQ(stale_run[2 * (b * threads + t)], static_cast<float>(prev * 100 + t)) << b << " " << t;
      EXPECT_EQ(stale_run[2 * (b * threads + t) + 1], static_cast<float>(prev * 100 + t + 50)) << b << " " << t;
    }
}

TEST(SimtSharedFill, ParsesTheEnvironmentSpelling) {
  EXPECT_EQ(simt::parse_shared_fill("nan"), simt::SharedFill::nan);
  EXPECT_EQ(simt::parse_shared_fill("stale"), simt::SharedFill::stale);
  EXPECT_THROW(simt::parse_shared_fill("zero"), std::invalid_argument);
}

// ---- warp shuffles --------------------------------------------------------------------------------

// Reference semantics from the CUDA programming guide (not the PTX formulation the emulator uses).
unsigned ref_src(int kind, unsigned lane, int b, int width) {
  const unsigned w = static_cast<unsigned>(width);
  const unsigned seg = lane / w * w;
  switch (kind) {
    case 0: return seg + static_cast<unsigned>(b) % w;  // __shfl_sync: srcLane % width in my segment
    case 1: return lane % w >= static_cast<unsigned>(b) ? lane - b : lane;  // up
    case 2: return lane % w + b < w ? lane + b : lane;  // down
    default: {                                           // xor: later segments give own value
      const unsigned src = lane ^ static_cast<unsigned>(b);
      return src >= seg + w ? lane : src;
    }
  }
}

struct ShflCase {
  int kind, b, width;
};

__global__ void shuffles(const float* in, const ShflCase* cases, int ncases, float* out) {
  const unsigned gid = blockIdx.x * blockDim.x + threadIdx.x;
  const float v = in[gid];
  const unsigned lane = threadIdx.x % 32;
  const unsigned warp_base = threadIdx.x - lane;
  const unsigned live = min(32u, blockDim.x - warp_base);
  const unsigned mask = live == 32 ? 0xffffffffu : (1u << live) - 1;
  for (int c = 0; c < ncases; ++c) {
    const ShflCase k = cases[c];
    float r = 0;
    switch (k.kind) {
      case 0: r = __shfl_sync(mask, v, k.b + static_cast<int>(lane) * 3, k.width); break;  // per-lane source
      case 1: r = __shfl_up_sync(mask, v, k.b, k.width); break;
      case 2: r = __shfl_down_sync(mask, v, k.b, k.width); break;
      case 3: r = __shfl_xor_sync(mask, v, k.b, k.width); break;
    }
    out[static_cast<unsigned>(c) * gridDim.x * blockDim.x + gid] = r;
  }
}

TEST_P(SimtCore, ShufflesFollowTheirDefinition) {
  std::vector<ShflCase> cases;
  for (int width : {1, 2, 4, 8, 16, 32}) {
    for (int b : {0, 1, 3, 5, 16, 31}) {
      cases.push_back({0, b, width});
      cases.push_back({1, b, width});
      cases.push_back({2, b, width});
      cases.push_back({3, b, width});
    }
  }
  std::mt19937 rng(3);
  for (unsigned threads : {32u, 64u, 96u}) {
    const unsigned blocks = 3, n = threads * blocks;
    std::vector<float> in(n);
    for (auto& v : in) v = static_cast<float>(rng() % 100000);
    DeviceBuffer<float> din(in), dout(n * cases.size());
    DeviceBuffer<ShflCase> dcases(cases);
    ouro::launch(shuffles, blocks, threads, 0, nullptr, din.ptr, dcases.ptr, static_cast<int>(cases.size()), dout.ptr);
    OURO_CUDA_CHECK_LAUNCH();
    const auto out = dout.download();
    for (std::size_t c = 0; c < cases.size(); ++c) {
      for (unsigned g = 0; g < n; ++g) {
        const unsigned lane = g % threads % 32;
        const unsigned base = g - lane;
        const int b = cases[c].kind == 0 ? cases[c].b + static_cast<int>(lane) * 3 : cases[c].b;
        const unsigned src = ref_src(cases[c].kind, lane, b, cases[c].width);
        ASSERT_EQ(out[c * n + g], in[base + src])
            << "kind " << cases[c].kind << " b " << b << " width " << cases[c].width << " lane " << lane;
      }
    }
  }
}

// Partial warps (blocks not a multiple of 32) with the live-lane mask; 64-bit and bf16 payloads.
__global__ void shuffle_types(double* d, __nv_bfloat162* h, unsigned* masks) {
  const unsigned lane = threadIdx.x % 32;
  const unsigned mask = __activemask();
  masks[threadIdx.x] = mask;
  const double x = d[threadIdx.x];
  const __nv_bfloat162 y = h[threadIdx.x];
  const unsigned src = (lane + 1) % (32 - __clz(static_cast<int>(mask)));  // next live lane
  const double rx = __shfl_sync(mask, x, static_cast<int>(src));
  const __nv_bfloat162 ry = __shfl_sync(mask, y, static_cast<int>(src));
  __syncwarp(mask);
  d[threadIdx.x] = rx;
  h[threadIdx.x] = ry;
}

TEST_P(SimtCore, ShufflePartialWarpsAndWideTypes) {
  const unsigned threads = 45;  // warp 1 has 13 lanes
  std::vector<double> d(threads);
  std::vector<__nv_bfloat162> h(threads);
  for (unsigned i = 0; i < threads; ++i) {
    d[i] = 1e300 / (i + 1);
    h[i] = __floats2bfloat162_rn(static_cast<float>(i), -static_cast<float>(i));
  }
  DeviceBuffer<double> dd(d);
  DeviceBuffer<__nv_bfloat162> dh(h);
  DeviceBuffer<unsigned> masks(threads);
  ouro::launch(shuffle_types, 1, threads, 0, nullptr, dd.ptr, dh.ptr, masks.ptr);
  const auto od = dd.download();
  const auto oh = dh.download();
  const auto om = masks.download();
  for (unsigned t = 0; t < threads; ++t) {
    const unsigned warp_lanes = t < 32 ? 32 : threads - 32;
    const unsigned src = t - t % 32 + (t % 32 + 1) % warp_lanes;
    EXPECT_EQ(om[t], warp_lanes == 32 ? 0xffffffffu : (1u << warp_lanes) - 1);
    EXPECT_EQ(od[t], d[src]);
    EXPECT_EQ(__low2float(oh[t]), static_cast<float>(src));
    EXPECT_EQ(__high2float(oh[t]), -static_cast<float>(src));
  }
}

// Disjoint groups of one warp may run different collectives at once (legal since Volta).
__global__ void half_warps(int* out) {
  const unsigned lane = threadIdx.x % 32;
  int v = static_cast<int>(threadIdx.x);
  if (lane < 16)
    v += __shfl_xor_sync(0x0000ffffu, v, 1);
  else
    v += __shfl_xor_sync(0xffff0000u, v, 2);
  out[threadIdx.x] = v;
}

TEST_P(SimtCore, DisjointMasksInDifferentBranches) {
  DeviceBuffer<int> out(96);
  ouro::launch(half_warps, 1, 96, 0, nullptr, out.ptr);
  OURO_CUDA_CHECK_LAUNCH();
  const auto h = out.download();
  for (int t = 0; t < 96; ++t) ASSERT_EQ(h[t], t + (t % 32 < 16 ? t ^ 1 : t ^ 2)) << t;
}

// ---- votes and reductions --------------------------------------------------------------------------

struct VoteOut {
  unsigned ballot;
  int any, all, uni;
  unsigned add, min_u, max_u, and_u, or_u, xor_u;
  int add_i, min_i, max_i;
  unsigned match_any, match_all;
  int match_pred;
};

__global__ void votes(const unsigned* masks, const int* values, VoteOut* out) {
  const unsigned lane = threadIdx.x % 32;
  const unsigned mask = masks[threadIdx.x / 32];
  if (!(mask >> lane & 1u)) return;  // only lanes named in the mask take part
  const int v = values[threadIdx.x];
  const unsigned u = static_cast<unsigned>(v);
  VoteOut o{};
  o.ballot = __ballot_sync(mask, v & 1);
  o.any = __any_sync(mask, v > 90);
  o.all = __all_sync(mask, v >= 0);
  o.uni = __uni_sync(mask, v & 1);
  o.add = __reduce_add_sync(mask, u);
  o.min_u = __reduce_min_sync(mask, u);
  o.max_u = __reduce_max_sync(mask, u);
  o.and_u = __reduce_and_sync(mask, u | 0xF0u);
  o.or_u = __reduce_or_sync(mask, u);
  o.xor_u = __reduce_xor_sync(mask, u);
  o.add_i = __reduce_add_sync(mask, v - 50);
  o.min_i = __reduce_min_sync(mask, v - 50);
  o.max_i = __reduce_max_sync(mask, v - 50);
  o.match_any = __match_any_sync(mask, v % 4);
  o.match_all = __match_all_sync(mask, v / 1000, &o.match_pred);
  out[threadIdx.x] = o;
}

TEST_P(SimtCore, VotesAndReductionsOverTheMask) {
  std::mt19937 rng(9);
  const unsigned threads = 128;
  for (int trial = 0; trial < 4; ++trial) {
    std::vector<unsigned> masks(threads / 32);
    for (auto& m : masks) m = trial == 0 ? 0xffffffffu : static_cast<unsigned>(rng()) | 1u;
    std::vector<int> values(threads);
    for (auto& v : values) v = static_cast<int>(rng() % 100);
    DeviceBuffer<unsigned> dm(masks);
    DeviceBuffer<int> dv(values);
    DeviceBuffer<VoteOut> dout(threads);
    ouro::launch(votes, 1, threads, 0, nullptr, dm.ptr, dv.ptr, dout.ptr);
    OURO_CUDA_CHECK_LAUNCH();
    const auto out = dout.download();
    for (unsigned w = 0; w < threads / 32; ++w) {
      const unsigned m = masks[w];
      VoteOut ref{};
      ref.all = 1;
      ref.min_u = ~0u;
      ref.and_u = ~0u;
      ref.min_i = INT32_MAX;
      ref.max_i = INT32_MIN;
      for (unsigned l = 0; l < 32; ++l) {
        if (!(m >> l & 1u)) continue;
        const int v = values[w * 32 + l];
        const unsigned u = static_cast<unsigned>(v);
        ref.ballot |= static_cast<unsigned>(v & 1) << l;
        ref.any |= v > 90;
        ref.add += u;
        ref.min_u = std::min(ref.min_u, u);
        ref.max_u = std::max(ref.max_u, u);
        ref.and_u &= u | 0xF0u;
        ref.or_u |= u;
        ref.xor_u ^= u;
        ref.add_i += v - 50;
        ref.min_i = std::min(ref.min_i, v - 50);
        ref.max_i = std::max(ref.max_i, v - 50);
      }
      for (unsigned l = 0; l < 32; ++l) {
        if (!(m >> l & 1u)) continue;
        const VoteOut& o = out[w * 32 + l];
        unsigned same = 0;
        for (unsigned k = 0; k < 32; ++k)
          if ((m >> k & 1u) && values[w * 32 + k] % 4 == values[w * 32 + l] % 4) same |= 1u << k;
        ASSERT_EQ(o.ballot, ref.ballot);
        ASSERT_EQ(o.any != 0, ref.any != 0);
        ASSERT_EQ(o.all != 0, true);
        ASSERT_EQ(o.uni != 0, ref.ballot == 0 || ref.ballot == m);
        ASSERT_EQ(o.add, ref.add);
        ASSERT_EQ(o.min_u, ref.min_u);
        ASSERT_EQ(o.max_u, ref.max_u);
        ASSERT_EQ(o.and_u, ref.and_u);
        ASSERT_EQ(o.or_u, ref.or_u);
        ASSERT_EQ(o.xor_u, ref.xor_u);
        ASSERT_EQ(o.add_i, ref.add_i);
        ASSERT_EQ(o.min_i, ref.min_i);
        ASSERT_EQ(o.max_i, ref.max_i);
        ASSERT_EQ(o.match_any, same);
        ASSERT_EQ(o.match_all, m);  // values < 100: v / 1000 == 0 everywhere
        ASSERT_EQ(o.match_pred, 1);
      }
    }
  }
}

// __syncwarp orders shared memory between the lanes of a warp.
__global__ void syncwarp_exchange(int* out) {
  __shared__ int s[256];
  s[threadIdx.x] = static_cast<int>(threadIdx.x) * 7;
  __syncwarp();
  const unsigned lane = threadIdx.x % 32;
  out[threadIdx.x] = s[threadIdx.x - lane + (31 - lane)];
}

TEST_P(SimtCore, SyncwarpExchangesSharedMemory) {
  DeviceBuffer<int> out(256);
  ouro::launch(syncwarp_exchange, 1, 256, 0, nullptr, out.ptr);
  const auto h = out.download();
  for (unsigned t = 0; t < 256; ++t) ASSERT_EQ(h[t], static_cast<int>((t - t % 32 + 31 - t % 32) * 7));
}

// ---- atomics -----------------------------------------------------------------------------------

struct Counters {
  int i_add, i_sub, i_min, i_max, i_exch_hits;
  unsigned u_add, u_and, u_or, u_xor, u_inc, u_dec, u_cas;
  unsigned long long ull_add;
  float f_add, f_max;
  double d_add, d_min;
  __nv_bfloat162 bf2;
};

__global__ void contend(Counters* c, int* exch_slot) {
  const unsigned gid = blockIdx.x * blockDim.x + threadIdx.x;
  atomicAdd(&c->i_add, 2);
  atomicSub(&c->i_sub, 1);
  atomicMin(&c->i_min, -static_cast<int>(gid));
  atomicMax(&c->i_max, static_cast<int>(gid));
  if (atomicExch(exch_slot, static_cast<int>(gid)) >= 0) atomicAdd(&c->i_exch_hits, 1);
  atomicAdd(&c->u_add, 3u);
  atomicAnd(&c->u_and, ~(1u << (gid % 32)));
  atomicOr(&c->u_or, 1u << (gid % 32));
  atomicXor(&c->u_xor, 1u << (gid % 8));
  atomicInc(&c->u_inc, 9u);
  atomicDec(&c->u_dec, 6u);
  // Lock-free increment through compare-and-swap.
  unsigned old = atomicOr(&c->u_cas, 0u), seen;  // an atomic read: a plain one races (TSan says so)
  while ((seen = atomicCAS(&c->u_cas, old, old + 1)) != old) old = seen;
  atomicAdd(&c->ull_add, 1ull << 33);
  atomicAdd(&c->f_add, 1.0f);
  atomicMax(&c->f_max, static_cast<float>(gid) * 0.5f);
  atomicAdd(&c->d_add, 0.25);
  atomicMin(&c->d_min, -static_cast<double>(gid));
  atomicAdd(&c->bf2, __floats2bfloat162_rn(1.0f, -1.0f));
}

TEST_P(SimtCore, AtomicsUnderContention) {
  const unsigned blocks = 64, threads = 96, n = blocks * threads;  // n = 6144
  Counters init{};
  init.u_and = ~0u;
  init.i_min = 0;
  init.i_max = -1;
  init.f_max = -1;
  init.d_min = 0;
  init.bf2 = __floats2bfloat162_rn(0.0f, 0.0f);
  DeviceBuffer<Counters> c(std::vector<Counters>{init});
  DeviceBuffer<int> slot(std::vector<int>{-1});
  ouro::launch(contend, blocks, threads, 0, nullptr, c.ptr, slot.ptr);
  const Counters r = c.download()[0];
  EXPECT_EQ(r.i_add, static_cast<int>(2 * n));
  EXPECT_EQ(r.i_sub, -static_cast<int>(n));
  EXPECT_EQ(r.i_min, -static_cast<int>(n - 1));
  EXPECT_EQ(r.i_max, static_cast<int>(n - 1));
  EXPECT_EQ(r.i_exch_hits, static_cast<int>(n - 1));  // everybody but the first sees a previous id
  EXPECT_EQ(r.u_add, 3 * n);
  EXPECT_EQ(r.u_and, 0u);
  EXPECT_EQ(r.u_or, ~0u);
  EXPECT_EQ(r.u_xor, 0u);  // each bit flipped n/8 = 768 times
  EXPECT_EQ(r.u_inc, n % 10);  // wraps after 9
  EXPECT_EQ(r.u_dec, (7 - n % 7) % 7);  // 0 -> 6 -> 5 ... period 7
  EXPECT_EQ(r.u_cas, n);
  EXPECT_EQ(r.ull_add, static_cast<unsigned long long>(n) << 33);
  EXPECT_EQ(r.f_add, static_cast<float>(n));  // exact below 2^24
  EXPECT_EQ(r.f_max, static_cast<float>(n - 1) * 0.5f);
  EXPECT_EQ(r.d_add, n * 0.25);
  EXPECT_EQ(r.d_min, -static_cast<double>(n - 1));
  // bf16 has 8 significant bits: adding 1 stops at 256.
  EXPECT_EQ(__low2float(r.bf2), 256.0f);
  EXPECT_EQ(__high2float(r.bf2), -256.0f);
}

// Thread 0 publishes a value that the others poll for with atomicCAS: a failed CAS lets the
// other fibers run, so this ends in every run order (thread 0 may well run last).
__global__ void flag_wait(int* flag, int* data, int* out) {
  if (threadIdx.x == 0) {
    *data = 42;
    atomicExch(flag, 1);
  } else {
    while (atomicCAS(flag, 1, 1) != 1) {
    }
    out[threadIdx.x] = atomicAdd(data, 0);
  }
}

TEST_P(SimtCore, SpinWaitOnAFlagEnds) {
  DeviceBuffer<int> flag(std::vector<int>{0}), data(std::vector<int>{0}), out(64);
  ouro::launch(flag_wait, 1, 64, 0, nullptr, flag.ptr, data.ptr, out.ptr);
  const auto h = out.download();
  for (int t = 1; t < 64; ++t) ASSERT_EQ(h[t], 42);
}

// ---- intrinsics ---------------------------------------------------------------------------------

__global__ void math_kernel(const float* x, float* out) {
  const unsigned i = threadIdx.x;
  const float v = x[i];
  out[i * 8 + 0] = __expf(v);
  out[i * 8 + 1] = rsqrtf(fabsf(v) + 1.0f);
  out[i * 8 + 2] = __fdividef(v, 3.0f);
  out[i * 8 + 3] = __bfloat162float(__float2bfloat16_rn(v));
  const float2 f2 = __bfloat1622float2(__float22bfloat162_rn(make_float2(v, 2 * v)));
  out[i * 8 + 4] = f2.x + f2.y;
  const __nv_bfloat162 s = __hadd2(__float2bfloat162_rn(v), __float2bfloat162_rn(1.0f));
  out[i * 8 + 5] = __low2float(s);
  out[i * 8 + 6] = __saturatef(v);
  out[i * 8 + 7] = __int_as_float(__float_as_int(v));
}

float round_bf16(float v) {  // round to nearest even on the top 16 bits
  std::uint32_t b;
  std::memcpy(&b, &v, 4);
  b = (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
  float r;
  std::memcpy(&r, &b, 4);
  return r;
}

TEST_P(SimtCore, MathAndConversionIntrinsics) {
  std::mt19937 rng(17);
  std::uniform_real_distribution<float> dist(-4.0f, 4.0f);
  const unsigned n = 64;
  std::vector<float> x(n);
  for (auto& v : x) v = dist(rng);
  DeviceBuffer<float> dx(x), dout(n * 8);
  ouro::launch(math_kernel, 1, n, 0, nullptr, dx.ptr, dout.ptr);
  const auto o = dout.download();
  for (unsigned i = 0; i < n; ++i) {
    const float v = x[i];
    EXPECT_NEAR(o[i * 8 + 0], std::exp(v), 1e-6f * std::exp(v));
    EXPECT_NEAR(o[i * 8 + 1], 1.0f / std::sqrt(std::fabs(v) + 1.0f), 1e-6f);
    EXPECT_NEAR(o[i * 8 + 2], v / 3.0f, 1e-6f);
    EXPECT_EQ(o[i * 8 + 3], round_bf16(v));
    EXPECT_EQ(o[i * 8 + 4], round_bf16(v) + round_bf16(2 * v));
    EXPECT_EQ(o[i * 8 + 5], round_bf16(round_bf16(v) + 1.0f));
    EXPECT_EQ(o[i * 8 + 6], std::clamp(v, 0.0f, 1.0f));
    EXPECT_EQ(o[i * 8 + 7], v);
  }
}

TEST(SimtIntrinsics, BitOperations) {
  EXPECT_EQ(__popc(0xF0F0u), 8);
  EXPECT_EQ(__popcll(~0ull), 64);
  EXPECT_EQ(__clz(1), 31);
  EXPECT_EQ(__clz(0), 32);
  EXPECT_EQ(__ffs(0), 0);
  EXPECT_EQ(__ffs(8), 4);
  EXPECT_EQ(__brev(1u), 0x80000000u);
  EXPECT_EQ(__brev(0x12345678u), 0x1E6A2C48u);
  EXPECT_EQ(__byte_perm(0x33221100u, 0x77665544u, 0x0123u), 0x00112233u);
  EXPECT_EQ(__byte_perm(0x33221100u, 0x77665544u, 0x7654u), 0x77665544u);
  EXPECT_EQ(__funnelshift_l(0x80000000u, 0x1u, 1), 0x3u);
  EXPECT_EQ(__funnelshift_r(0x2u, 0x1u, 1), 0x80000001u);
  EXPECT_EQ(__umulhi(0x80000000u, 4u), 2u);
  EXPECT_EQ(__mul24(0x00FFFFFF, 1), -1);
  EXPECT_TRUE(std::isnan(__saturatef(NAN)) == false);
  EXPECT_EQ(__saturatef(NAN), 0.0f);
}

// sincospi against long double sin/cos of pi x, and exactly 0, +-1 at the half turns (where a
// plain sin(pi * x) is off by pi's rounding: sin(pi) = 1.2e-16).
TEST(SimtIntrinsics, SinCosPi) {
  for (int k = -12; k <= 12; ++k) {
    double s, c;
    sincospi(k * 0.5, &s, &c);
    const int q = ((k % 4) + 4) % 4;
    EXPECT_EQ(s, q == 1 ? 1.0 : q == 3 ? -1.0 : 0.0) << k;
    EXPECT_EQ(c, q == 0 ? 1.0 : q == 2 ? -1.0 : 0.0) << k;
    EXPECT_FALSE(std::signbit(q % 2 ? c : s)) << "the zero is +0, as on the device: " << k;
    float sf, cf;
    sincospif(k * 0.5f, &sf, &cf);
    EXPECT_EQ(sf, static_cast<float>(s)) << k;
    EXPECT_EQ(cf, static_cast<float>(c)) << k;
  }
  std::mt19937_64 rng(17);
  std::uniform_real_distribution<double> u(-3000.0, 3000.0);
  const long double pi = 3.141592653589793238462643383279502884L;
  for (int i = 0; i < 20000; ++i) {
    const double x = i < 10 ? (i - 5) * 1e-9 : u(rng);
    // The exact reduction in long double: x - 2 round(x / 2) is exact for doubles.
    const long double r = static_cast<long double>(x) - 2.0L * std::nearbyint(static_cast<long double>(x) / 2.0L);
    const long double es = std::sin(pi * r), ec = std::cos(pi * r);
    double s, c;
    sincospi(x, &s, &c);
    EXPECT_NEAR(s, static_cast<double>(es), 4e-16) << x;
    EXPECT_NEAR(c, static_cast<double>(ec), 4e-16) << x;
    float sf, cf;
    const float xf = static_cast<float>(x);
    sincospif(xf, &sf, &cf);
    const long double rf = static_cast<long double>(xf) - 2.0L * std::nearbyint(static_cast<long double>(xf) / 2.0L);
    EXPECT_NEAR(sf, static_cast<double>(std::sin(pi * rf)), 3e-7) << xf;
    EXPECT_NEAR(cf, static_cast<double>(std::cos(pi * rf)), 3e-7) << xf;
  }
}

// ---- run orders and OS threads ------------------------------------------------------------------

__global__ void record_order(unsigned* ticket, unsigned* thread_seq, unsigned* block_seq) {
  const unsigned t = atomicAdd(ticket, 1u);
  if (blockIdx.x == 0) thread_seq[threadIdx.x] = t;
  if (threadIdx.x == 0) block_seq[blockIdx.x] = t;
}

TEST(SimtOrder, ForwardReverseShuffle) {
  const unsigned saved_threads = simt::worker_threads();
  const simt::RunOrder saved = simt::run_order();
  simt::set_worker_threads(1);
  auto run = [](const char* order) {
    simt::set_run_order(simt::parse_run_order(order));
    DeviceBuffer<unsigned> ticket(std::vector<unsigned>{0}), ts(64), bs(16);
    ouro::launch(record_order, 16, 64, 0, nullptr, ticket.ptr, ts.ptr, bs.ptr);
    return std::make_pair(ts.download(), bs.download());
  };
  auto ranks = [](std::vector<unsigned> v) {  // order in which the items ran
    std::vector<unsigned> idx(v.size());
    for (unsigned i = 0; i < v.size(); ++i) idx[i] = i;
    std::sort(idx.begin(), idx.end(), [&](unsigned a, unsigned b) { return v[a] < v[b]; });
    return idx;
  };
  const auto fwd = run("forward");
  const auto rev = run("reverse");
  const auto sh1 = run("shuffle:1");
  const auto sh1b = run("shuffle:1");
  const auto sh2 = run("shuffle:2");
  std::vector<unsigned> inc(64), dec(64);
  for (unsigned i = 0; i < 64; ++i) inc[i] = i, dec[i] = 63 - i;
  EXPECT_EQ(ranks(fwd.first), inc);
  EXPECT_EQ(ranks(rev.first), dec);
  std::vector<unsigned> binc(inc.begin(), inc.begin() + 16), bdec(16);
  for (unsigned i = 0; i < 16; ++i) bdec[i] = 15 - i;
  EXPECT_EQ(ranks(fwd.second), binc);
  EXPECT_EQ(ranks(rev.second), bdec);
  EXPECT_EQ(sh1.first, sh1b.first);  // seeded: reproducible
  EXPECT_EQ(sh1.second, sh1b.second);
  EXPECT_NE(ranks(sh1.first), inc);
  EXPECT_NE(ranks(sh1.second), binc);
  EXPECT_NE(sh1.first, sh2.first);
  simt::set_run_order(saved);
  simt::set_worker_threads(saved_threads);
}

TEST(SimtOrder, Parse) {
  EXPECT_EQ(simt::parse_run_order("forward").order, simt::Order::forward);
  EXPECT_EQ(simt::parse_run_order("reverse").order, simt::Order::reverse);
  EXPECT_EQ(simt::parse_run_order("shuffle:42").seed, 42u);
  EXPECT_EQ(simt::parse_run_order("shuffle").order, simt::Order::shuffle);
  EXPECT_THROW(simt::parse_run_order("sideways"), std::invalid_argument);
  EXPECT_THROW(simt::parse_run_order("shuffle:x"), std::invalid_argument);
  EXPECT_EQ(simt::to_string(simt::parse_run_order("shuffle:7")), "shuffle:7");
}

__global__ void which_thread(std::thread::id* ids) {
  if (threadIdx.x == 0) ids[blockIdx.x] = std::this_thread::get_id();
}

TEST(SimtPool, BlocksRunOnSeveralOsThreads) {
  const unsigned saved = simt::worker_threads();
  simt::set_worker_threads(2);
  // Blocks long enough that the helper thread wakes up and takes some.
  std::set<std::thread::id> seen;
  for (int attempt = 0; attempt < 20 && seen.size() < 2; ++attempt) {
    std::vector<std::thread::id> ids(512);
    DeviceBuffer<std::thread::id> d(ids.size());
    ouro::launch(which_thread, 512, 128, 0, nullptr, d.ptr);
    for (auto id : d.download()) seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 2u);
  simt::set_worker_threads(saved);
}

// ---- runtime API -------------------------------------------------------------------------------

TEST(SimtRuntime, MemoryCopiesAndSets) {
  void* d = nullptr;
  ASSERT_EQ(cudaMalloc(&d, 1000), cudaSuccess);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(d) % 256, 0u);
  // Fresh device memory reads as NaN.
  float f;
  ASSERT_EQ(cudaMemcpy(&f, d, sizeof f, cudaMemcpyDeviceToHost), cudaSuccess);
  EXPECT_TRUE(std::isnan(f));
  ASSERT_EQ(cudaMemset(d, 0x2A, 1000), cudaSuccess);
  std::vector<unsigned char> h(1000);
  ASSERT_EQ(cudaMemcpy(h.data(), d, 1000, cudaMemcpyDefault), cudaSuccess);
  EXPECT_TRUE(std::all_of(h.begin(), h.end(), [](unsigned char c) { return c == 0x2A; }));
  cudaStream_t s;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  std::vector<unsigned char> src(1000);
  for (unsigned i = 0; i < 1000; ++i) src[i] = static_cast<unsigned char>(i * 7);
  ASSERT_EQ(cudaMemcpyAsync(d, src.data(), 1000, cudaMemcpyHostToDevice, s), cudaSuccess);
  ASSERT_EQ(cudaMemsetAsync(d, 0, 10, s), cudaSuccess);
  ASSERT_EQ(cudaMemcpyAsync(h.data(), d, 1000, cudaMemcpyDeviceToHost, s), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  for (unsigned i = 0; i < 1000; ++i) ASSERT_EQ(h[i], i < 10 ? 0 : src[i]);
  void* p = nullptr;
  ASSERT_EQ(cudaMallocHost(&p, 64), cudaSuccess);
  EXPECT_EQ(cudaFreeHost(p), cudaSuccess);
  EXPECT_EQ(cudaStreamDestroy(s), cudaSuccess);
  EXPECT_EQ(cudaFree(d), cudaSuccess);
  EXPECT_EQ(cudaFree(nullptr), cudaSuccess);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
}

TEST(SimtRuntime, ErrorsStickUntilRead) {
  cudaGetLastError();
  int x = 0;
  EXPECT_EQ(cudaFree(&x), cudaErrorInvalidValue);  // not a device allocation
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaPeekAtLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaSetDevice(simt::device_count()), cudaErrorInvalidDevice);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidDevice);
  EXPECT_STREQ(cudaGetErrorName(cudaErrorInvalidValue), "cudaErrorInvalidValue");
  EXPECT_STREQ(cudaGetErrorString(cudaErrorInvalidConfiguration), "invalid configuration argument");
  EXPECT_THROW(OURO_CUDA_CHECK(cudaSetDevice(700)), ouro::CudaError);
  cudaGetLastError();
  try {
    OURO_CUDA_CHECK(cudaSetDevice(700));
  } catch (const ouro::CudaError& e) {
    EXPECT_EQ(e.code(), cudaErrorInvalidDevice);
    EXPECT_NE(std::string(e.what()).find("cudaSetDevice(700)"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("test_simt_core.cpp"), std::string::npos);
  }
  cudaGetLastError();
}

__global__ void touch(int* p) { p[threadIdx.x] = 1; }

TEST(SimtRuntime, LaunchConfigurationErrors) {
  DeviceBuffer<int> p(2048);
  cudaGetLastError();
  ouro::launch(touch, 1, 2048, 0, nullptr, p.ptr);  // too many threads
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  ouro::launch(touch, dim3(0), 32, 0, nullptr, p.ptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  ouro::launch(touch, 1, dim3(1, 1, 65), 0, nullptr, p.ptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidConfiguration);
  // More than 48 KiB of dynamic shared memory needs the attribute first.
  ouro::launch(touch, 1, 32, 64 * 1024, nullptr, p.ptr);
  EXPECT_EQ(cudaGetLastError(), cudaErrorInvalidValue);
  ASSERT_EQ(cudaFuncSetAttribute(reinterpret_cast<const void*>(touch), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 100 * 1024),
            cudaSuccess);
  ouro::launch(touch, 1, 32, 64 * 1024, nullptr, p.ptr);
  EXPECT_EQ(cudaGetLastError(), cudaSuccess);
  EXPECT_EQ(cudaFuncSetAttribute(reinterpret_cast<const void*>(touch), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                 300 * 1024),
            cudaErrorInvalidValue);
  cudaGetLastError();
}

TEST(SimtRuntime, EventsMeasureTime) {
  cudaEvent_t a, b, c;
  ASSERT_EQ(cudaEventCreate(&a), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&b), cudaSuccess);
  ASSERT_EQ(cudaEventCreateWithFlags(&c, cudaEventDisableTiming), cudaSuccess);
  float ms = -1;
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, b), cudaErrorInvalidResourceHandle);  // not recorded
  cudaGetLastError();
  ASSERT_EQ(cudaEventRecord(a, nullptr), cudaSuccess);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  ASSERT_EQ(cudaEventRecord(b, nullptr), cudaSuccess);
  ASSERT_EQ(cudaEventSynchronize(b), cudaSuccess);
  ASSERT_EQ(cudaEventElapsedTime(&ms, a, b), cudaSuccess);
  EXPECT_GE(ms, 19.0f);
  EXPECT_LT(ms, 2000.0f);
  ASSERT_EQ(cudaEventRecord(c, nullptr), cudaSuccess);
  EXPECT_EQ(cudaEventElapsedTime(&ms, a, c), cudaErrorInvalidResourceHandle);
  cudaGetLastError();
  EXPECT_EQ(cudaEventQuery(b), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(a), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(b), cudaSuccess);
  EXPECT_EQ(cudaEventDestroy(c), cudaSuccess);
}

TEST(SimtRuntime, DeviceQueries) {
  int n = 0, dev = -1;
  EXPECT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  EXPECT_EQ(n, simt::device_count());
  EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
  EXPECT_EQ(cudaGetDevice(&dev), cudaSuccess);
  EXPECT_EQ(dev, 0);
  cudaDeviceProp p;
  ASSERT_EQ(cudaGetDeviceProperties(&p, 0), cudaSuccess);
  EXPECT_EQ(p.warpSize, 32);
  EXPECT_EQ(p.maxThreadsPerBlock, 1024);
  EXPECT_EQ(p.major, 9);
  EXPECT_GE(p.sharedMemPerBlockOptin, 227u * 1024);
  EXPECT_NE(std::string(p.name).find("SIMT"), std::string::npos);
  int v = 0;
  EXPECT_EQ(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0), cudaSuccess);
  EXPECT_EQ(v, 227 * 1024);
}

// The test hooks of include/ouro/simt/device_model.h: a node of N devices, an sm_86-like opt-in
// limit that cudaFuncSetAttribute enforces, and the host-synchronisation counters.
__global__ void device_model_kernel(int* p) { p[0] = 1; }
TEST(SimtRuntime, DeviceModelHooksAndSyncCounts) {
  int n = 0;
  ::unsetenv("OURO_SIMT_DEVICES");
  EXPECT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  EXPECT_EQ(n, 8);
  ::setenv("OURO_SIMT_DEVICES", "2", 1);
  EXPECT_EQ(cudaGetDeviceCount(&n), cudaSuccess);
  EXPECT_EQ(n, 2);
  EXPECT_EQ(cudaSetDevice(1), cudaSuccess);
  EXPECT_EQ(cudaSetDevice(2), cudaErrorInvalidDevice);
  cudaGetLastError();
  EXPECT_EQ(cudaSetDevice(0), cudaSuccess);
  ::unsetenv("OURO_SIMT_DEVICES");
  const void* k = reinterpret_cast<const void*>(device_model_kernel);
  ::setenv("OURO_SIMT_SMEM_OPTIN", "101376", 1);
  int v = 0;
  EXPECT_EQ(cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, 0), cudaSuccess);
  EXPECT_EQ(v, 101376);
  EXPECT_EQ(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 101376), cudaSuccess);
  EXPECT_EQ(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 104448), cudaErrorInvalidValue);
  cudaGetLastError();
  ::unsetenv("OURO_SIMT_SMEM_OPTIN");
  EXPECT_EQ(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 104448), cudaSuccess);

  // Waits that find work queued on what they wait for are counted: explicit synchronisations,
  // copies the host waits for, cudaFree; not async copies from host memory, nor async copies
  // into pinned memory, nor a second wait with nothing queued in between.
  int *d = nullptr, *pin = nullptr, h = 0;
  ASSERT_EQ(cudaMalloc(&d, 64), cudaSuccess);
  ASSERT_EQ(cudaMallocHost(&pin, 64), cudaSuccess);
  cudaStream_t s;
  cudaEvent_t e;
  ASSERT_EQ(cudaStreamCreate(&s), cudaSuccess);
  ASSERT_EQ(cudaEventCreate(&e), cudaSuccess);
  cudaDeviceSynchronize();
  const simt::HostSyncCounts before = simt::host_syncs();
  EXPECT_EQ(cudaMemcpyAsync(d, &h, 4, cudaMemcpyHostToDevice, s), cudaSuccess);    // staged: no wait
  EXPECT_EQ(cudaMemcpyAsync(pin + 1, d, 4, cudaMemcpyDeviceToHost, s), cudaSuccess);  // pinned: no wait
  EXPECT_EQ(cudaMemsetAsync(d, 0, 64, s), cudaSuccess);
  EXPECT_EQ(cudaEventRecord(e, s), cudaSuccess);
  EXPECT_EQ(simt::host_syncs().total(), before.total());
  EXPECT_EQ(cudaMemcpyAsync(&h, d, 4, cudaMemcpyDeviceToHost, s), cudaSuccess);  // pageable: waits
  EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);  // nothing queued since: returns at once
  EXPECT_EQ(simt::host_syncs().total(), before.total() + 1);
  cudaMemsetAsync(d, 0, 64, s);
  EXPECT_EQ(cudaMemcpy(&h, d, 4, cudaMemcpyDeviceToHost), cudaSuccess);
  cudaMemsetAsync(d, 0, 64, s);
  EXPECT_EQ(cudaStreamSynchronize(s), cudaSuccess);
  cudaMemsetAsync(d, 0, 64, s);
  EXPECT_EQ(cudaStreamSynchronize(nullptr), cudaSuccess);  // another stream: nothing queued there
  EXPECT_EQ(cudaEventRecord(e, s), cudaSuccess);
  EXPECT_EQ(cudaEventSynchronize(e), cudaSuccess);
  ouro::launch(device_model_kernel, dim3(1), dim3(1), 0, s, d);
  EXPECT_EQ(cudaDeviceSynchronize(), cudaSuccess);
  cudaMemsetAsync(d, 0, 64, s);
  EXPECT_EQ(cudaFree(d), cudaSuccess);
  const simt::HostSyncCounts after = simt::host_syncs();
  EXPECT_EQ(after.copy - before.copy, 2u);
  EXPECT_EQ(after.stream - before.stream, 1u);
  EXPECT_EQ(after.event - before.event, 1u);
  EXPECT_EQ(after.device - before.device, 1u);
  EXPECT_EQ(after.free - before.free, 1u);
  EXPECT_EQ(after.total() - before.total(), 6u);
  cudaFreeHost(pin);
  cudaEventDestroy(e);
  cudaStreamDestroy(s);
}

// `ouro bench simt` in miniature: it runs, restores the settings, and prints sane figures.
TEST(SimtBench, SmokeRun) {
  simt::set_worker_threads(2);
  simt::BenchOptions options;
  options.block_sizes = {32, 40};
  options.target_ops = 2e4;
  options.repeats = 1;
  const simt::BenchResult r = simt::run_bench(options);
  EXPECT_EQ(simt::worker_threads(), 2u);
  ASSERT_EQ(r.rows.size(), 2u);
  for (const auto& row : r.rows) {
    EXPECT_GT(row.sync_ns, 0.0);
    EXPECT_GT(row.shfl_ns, 0.0);
    EXPECT_GT(row.switch_ns, 0.0);
  }
  EXPECT_NE(r.json().find("\"block\": 40"), std::string::npos) << r.json();
}

INSTANTIATE_TEST_SUITE_P(Orders, SimtCore,
                         ::testing::Values(Mode{"forward", 1}, Mode{"reverse", 1}, Mode{"shuffle:1", 1},
                                           Mode{"shuffle:2", 2}, Mode{"forward", 2}),
                         [](const auto& info) {
                           std::string s = std::string(info.param.order) + "_" + std::to_string(info.param.threads);
                           for (char& c : s)
                             if (c == ':') c = '_';
                           return s;
                         });

}  // namespace
