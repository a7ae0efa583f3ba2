// Test kernels for the Hopper ouro::ptx wrappers (wgmma, mbarrier, elect.sync, setmaxnreg). One
// source for nvcc (sm_90a runs them; other targets compile them to traps) and the SIMT emulator,
// which ouro_test_simt_ptx_sm90 runs.
#include <ouro/cuda.h>
#include <ouro/ptx_sm90.h>

#include <stdexcept>
#include <vector>

#include "ptx_sm90_kernels.h"

namespace ptx_sm90_test {
namespace {

using ouro::ptx::Swizzle;

template <class T>
struct DeviceBuffer {
  T* ptr = nullptr;
  size_t count;
  explicit DeviceBuffer(size_t n) : count(n) { OURO_CUDA_CHECK(cudaMalloc(&ptr, (n ? n : 1) * sizeof(T))); }
  DeviceBuffer(const T* host, size_t n) : DeviceBuffer(n) { put(host); }
  ~DeviceBuffer() { cudaFree(ptr); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  void put(const T* host) { OURO_CUDA_CHECK(cudaMemcpy(ptr, host, count * sizeof(T), cudaMemcpyHostToDevice)); }
  void get(T* host) const { OURO_CUDA_CHECK(cudaMemcpy(host, ptr, count * sizeof(T), cudaMemcpyDeviceToHost)); }
};

void sync() {
  OURO_CUDA_CHECK_LAUNCH();
  OURO_CUDA_CHECK(cudaDeviceSynchronize());
}

// ---- one wgmma ----------------------------------------------------------------------------------

struct WgmmaParams {
  int scale_d;
  uint32_t smem_bytes;
  uint32_t a_off, a_lbo, a_sbo, b_off, b_lbo, b_sbo;
  int a_swizzle, b_swizzle;
};

template <int N, int kTransA, int kTransB, bool kRegsA>
__global__ void wgmma_kernel(WgmmaParams p, const uint8_t* image, const uint32_t* a_regs, const float* c,
                             float* d) {
  uint8_t* smem = ouro::dynamic_shared<uint8_t>();
  const unsigned t = threadIdx.x;
  for (unsigned i = t; i < p.smem_bytes; i += blockDim.x) smem[i] = image[i];
  __syncthreads();
  ouro::ptx::fence_proxy_async();
  float acc[N / 2];
  for (int j = 0; j < N / 2; ++j) acc[j] = c[t * (N / 2) + j];
  const uint32_t base = ouro::ptx::shared_address(smem);
  const uint64_t desc_b =
      ouro::ptx::make_wgmma_desc(base + p.b_off, p.b_lbo, p.b_sbo, static_cast<Swizzle>(p.b_swizzle));
  ouro::ptx::wgmma_fence();
  if constexpr (kRegsA) {
    uint32_t a[4];
    for (int i = 0; i < 4; ++i) a[i] = a_regs[4 * t + i];
    ouro::ptx::wgmma_mma_async_rs<N, kTransB>(acc, a, desc_b, p.scale_d);
  } else {
    const uint64_t desc_a =
        ouro::ptx::make_wgmma_desc(base + p.a_off, p.a_lbo, p.a_sbo, static_cast<Swizzle>(p.a_swizzle));
    ouro::ptx::wgmma_mma_async<N, kTransA, kTransB>(acc, desc_a, desc_b, p.scale_d);
  }
  ouro::ptx::wgmma_commit_group();
  ouro::ptx::wgmma_wait_group<0>();
  for (int j = 0; j < N / 2; ++j) d[t * (N / 2) + j] = acc[j];
}

template <int N, int kTransA, int kTransB, bool kRegsA>
void launch_wgmma(const WgmmaParams& p, const uint8_t* image, const uint32_t* a_regs, const float* c,
                  float* d) {
  OURO_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(wgmma_kernel<N, kTransA, kTransB, kRegsA>),
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024));
  ouro::launch(wgmma_kernel<N, kTransA, kTransB, kRegsA>, dim3(1), dim3(128), p.smem_bytes, nullptr, p, image,
               a_regs, c, d);
}

template <int N>
void dispatch_trans(const WgmmaArgs& a, const WgmmaParams& p, const uint8_t* image, const uint32_t* regs,
                    const float* c, float* d) {
  if (a.a_regs) {
    if (a.trans_b) launch_wgmma<N, 0, 1, true>(p, image, regs, c, d);
    else launch_wgmma<N, 0, 0, true>(p, image, regs, c, d);
  } else if (a.trans_a) {
    if (a.trans_b) launch_wgmma<N, 1, 1, false>(p, image, regs, c, d);
    else launch_wgmma<N, 1, 0, false>(p, image, regs, c, d);
  } else {
    if (a.trans_b) launch_wgmma<N, 0, 1, false>(p, image, regs, c, d);
    else launch_wgmma<N, 0, 0, false>(p, image, regs, c, d);
  }
}

// ---- a pipeline of four wgmmas in two groups ----------------------------------------------------

__global__ void wgmma_pipeline_kernel(const uint8_t* image, float* snaps) {
  uint8_t* smem = ouro::dynamic_shared<uint8_t>();
  const unsigned t = threadIdx.x;
  for (unsigned i = t; i < 16384; i += blockDim.x) smem[i] = image[i];
  __syncthreads();
  ouro::ptx::fence_proxy_async();
  float acc0[32], acc1[32];
  for (int j = 0; j < 32; ++j) acc0[j] = 1234.0f, acc1[j] = 0.5f;
  const uint32_t base = ouro::ptx::shared_address(smem);
  ouro::ptx::wgmma_fence();
  for (int k = 0; k < 4; ++k) {
    const uint64_t da = ouro::ptx::make_wgmma_desc(base + 32 * k, 16, 1024, Swizzle::b128);
    const uint64_t db = ouro::ptx::make_wgmma_desc(base + 8192 + 32 * k, 16, 1024, Swizzle::b128);
    if (k < 2)
      ouro::ptx::wgmma_mma_async<64>(acc0, da, db, k);  // step 0: scale-d 0 drops the 1234s
    else
      ouro::ptx::wgmma_mma_async<64>(acc1, da, db, 1);
    if (k == 1 || k == 3) ouro::ptx::wgmma_commit_group();
  }
  ouro::ptx::wgmma_wait_group<1>();
  for (int j = 0; j < 32; ++j) snaps[(0 * 128 + t) * 32 + j] = acc0[j], snaps[(1 * 128 + t) * 32 + j] = acc1[j];
  ouro::ptx::wgmma_wait_group<0>();
  for (int j = 0; j < 32; ++j) snaps[(2 * 128 + t) * 32 + j] = acc0[j], snaps[(3 * 128 + t) * 32 + j] = acc1[j];
}

// ---- mbarrier, elect.sync, setmaxnreg -----------------------------------------------------------

__global__ void mbarrier_rounds_kernel(uint32_t* seen, uint32_t* early, uint64_t* tokens) {
  __shared__ __align__(8) uint64_t full;
  __shared__ __align__(8) uint64_t counted;
  __shared__ uint32_t data[16];
  const unsigned t = threadIdx.x;
  if (t == 0) {
    ouro::ptx::mbarrier_init(&full, 1);
    ouro::ptx::mbarrier_init(&counted, 4);
  }
  __syncthreads();
  early[t] = ouro::ptx::mbarrier_try_wait_parity(&full, 1);
  __syncthreads();  // nobody completes phase 0 before every thread looked
  for (int r = 0; r < 3; ++r) {
    if (t == 0) {
      for (int i = 0; i < 16; ++i) data[i] = 100u * r + i;
      ouro::ptx::mbarrier_arrive_expect_tx(&full, 64);  // releases the writes above
      ouro::ptx::mbarrier_complete_tx(&full, 32);
      ouro::ptx::mbarrier_complete_tx(&full, 32);
    }
    if (t < 4) tokens[4 * r + t] = ouro::ptx::mbarrier_arrive(&counted);
    ouro::ptx::mbarrier_wait_parity(&full, r & 1);
    seen[128 * r + t] = data[t % 16];
    __syncthreads();  // everybody read before thread 0 writes the next round
  }
}

__global__ void elect_sync_kernel(uint32_t mask, uint32_t* out) {
  const unsigned lane = threadIdx.x;
  out[lane] = (mask >> lane & 1u) ? (ouro::ptx::elect_sync(mask) ? 1u : 0u) : 7u;
}

__global__ void setmaxnreg_kernel(uint32_t* out) {
  if (threadIdx.x < 128)
    ouro::ptx::setmaxnreg_dec<40>();
  else
    ouro::ptx::setmaxnreg_inc<232>();
  out[threadIdx.x] = threadIdx.x + 1;
}

// Ping-pong of two warpgroups through named barriers 1 and 2 (count 256), as the attention
// kernel schedules its consumers: warpgroup c waits at barrier 1 + c for its turn, one thread
// appends c to the log, then the warpgroup arrives at the other's barrier. Warpgroup 1 opens by
// arriving at barrier 1 and does not arrive after its last turn (nobody would wait for it).
__global__ void named_pingpong_kernel(uint32_t* log, int rounds) {
  __shared__ uint32_t pos;
  __shared__ uint32_t seen[64];
  const unsigned c = threadIdx.x / 128;
  if (threadIdx.x == 0) pos = 0;
  __syncthreads();
  if (c == 1) ouro::ptx::named_barrier_arrive(1, 256);
  for (int r = 0; r < rounds; ++r) {
    ouro::ptx::named_barrier_sync(1 + c, 256);
    if (threadIdx.x % 128 == 0) seen[pos++] = c;
    if (!(c == 1 && r == rounds - 1)) ouro::ptx::named_barrier_arrive(2 - c, 256);
  }
  __syncthreads();
  if (threadIdx.x < 2u * rounds) log[threadIdx.x] = seen[threadIdx.x];
}

__global__ void named_barrier_hang_kernel(float* out) {
  if (threadIdx.x < 128) ouro::ptx::named_barrier_sync(3, 256);  // kNamedBarrierHangLine
  out[threadIdx.x] = 0;
}
const int kNamedBarrierHangLineValue = __LINE__ - 3;

__global__ void named_barrier_counts_differ_kernel(float* out) {
  if (threadIdx.x < 64)
    ouro::ptx::named_barrier_arrive(2, 128);
  else
    ouro::ptx::named_barrier_sync(2, 96);  // kNamedBarrierCountsDifferLine
  out[threadIdx.x] = 0;
}
const int kNamedBarrierCountsDifferLineValue = __LINE__ - 3;

// ---- bugs ---------------------------------------------------------------------------------------
// A valid setting for them: N = 8, A and B K-major without swizzle (core matrices 128 B, LBO 128
// in K, SBO 256 between 8-row groups); A at 0 (2 KiB), B at 2048, 4 KiB of shared memory.

struct Operands {
  float acc[4];
  uint64_t da, db;
};

__device__ Operands valid_operands() {
  uint8_t* smem = ouro::dynamic_shared<uint8_t>();
  for (unsigned i = threadIdx.x; i < 4096; i += blockDim.x) smem[i] = 0;
  ouro::ptx::fence_proxy_async();
  __syncthreads();
  Operands o;
  for (float& x : o.acc) x = 0.0f;
  const uint32_t base = ouro::ptx::shared_address(smem);
  o.da = ouro::ptx::make_wgmma_desc(base, 128, 256, Swizzle::none);
  o.db = ouro::ptx::make_wgmma_desc(base + 2048, 128, 256, Swizzle::none);
  return o;
}

__global__ void wgmma_split_site_kernel(float* out) {
  Operands o = valid_operands();
  ouro::ptx::wgmma_fence();
  if (threadIdx.x / 32 == 3)
    ouro::ptx::wgmma_mma_async<8>(o.acc, o.da, o.db, 1);  // kWgmmaSplitSiteLine
  else
    ouro::ptx::wgmma_mma_async<8>(o.acc, o.da, o.db, 1);
  out[threadIdx.x] = 0;
}
const int kWgmmaSplitSiteLineValue = __LINE__ - 5;

__global__ void wgmma_operands_differ_kernel(float* out) {
  Operands o = valid_operands();
  const uint64_t db = threadIdx.x / 32 == 2 ? o.db + 8 : o.db;  // warp 2: B 128 bytes further
  ouro::ptx::wgmma_fence();
  ouro::ptx::wgmma_mma_async<8>(o.acc, o.da, db, 1);  // kWgmmaOperandsDifferLine
  out[threadIdx.x] = 0;
}
const int kWgmmaOperandsDifferLineValue = __LINE__ - 3;

__global__ void wgmma_warp_exited_kernel(float* out) {
  Operands o = valid_operands();
  ouro::ptx::wgmma_fence();
  if (threadIdx.x / 32 == 2) return;
  ouro::ptx::wgmma_mma_async<8>(o.acc, o.da, o.db, 1);  // kWgmmaWarpExitedLine
  out[threadIdx.x] = o.acc[0];
}
const int kWgmmaWarpExitedLineValue = __LINE__ - 3;

__global__ void wgmma_warp_at_barrier_kernel(float* out) {
  Operands o = valid_operands();
  ouro::ptx::wgmma_fence();
  if (threadIdx.x / 32 == 1) {
    __syncthreads();
  } else {
    ouro::ptx::wgmma_mma_async<8>(o.acc, o.da, o.db, 1);  // kWgmmaWarpAtBarrierLine
  }
  out[threadIdx.x] = 0;
}
const int kWgmmaWarpAtBarrierLineValue = __LINE__ - 4;

__global__ void wgmma_bad_swizzle_start_kernel(float* out) {
  Operands o = valid_operands();
  const uint32_t base = ouro::ptx::shared_address(ouro::dynamic_shared<uint8_t>());
  const uint64_t da = ouro::ptx::make_wgmma_desc(base + 512, 16, 1024, Swizzle::b128);  // row 4 of a pattern
  ouro::ptx::wgmma_fence();
  ouro::ptx::wgmma_mma_async<8>(o.acc, da, o.db, 1);  // kWgmmaBadSwizzleStartLine
  out[threadIdx.x] = 0;
}
const int kWgmmaBadSwizzleStartLineValue = __LINE__ - 3;

__global__ void wgmma_reserved_bits_kernel(float* out) {
  Operands o = valid_operands();
  ouro::ptx::wgmma_fence();
  ouro::ptx::wgmma_mma_async<8>(o.acc, o.da | (uint64_t{1} << 14), o.db, 1);  // kWgmmaReservedBitsLine
  out[threadIdx.x] = 0;
}
const int kWgmmaReservedBitsLineValue = __LINE__ - 3;

__global__ void wgmma_past_shared_kernel(float* out) {
  Operands o = valid_operands();
  const uint32_t base = ouro::ptx::shared_address(ouro::dynamic_shared<uint8_t>());
  const uint64_t db = ouro::ptx::make_wgmma_desc(base + 4096 - 128, 128, 256, Swizzle::none);
  ouro::ptx::wgmma_fence();
  ouro::ptx::wgmma_mma_async<8>(o.acc, o.da, db, 1);  // kWgmmaPastSharedLine
  out[threadIdx.x] = 0;
}
const int kWgmmaPastSharedLineValue = __LINE__ - 3;

__global__ void wgmma_no_fence_kernel(float* out) {
  Operands o = valid_operands();
  ouro::ptx::wgmma_mma_async<8>(o.acc, o.da, o.db, 1);  // kWgmmaNoFenceLine
  out[threadIdx.x] = 0;
}
const int kWgmmaNoFenceLineValue = __LINE__ - 3;

__global__ void wgmma_accumulator_written_kernel(float* out) {
  Operands o = valid_operands();
  ouro::ptx::wgmma_fence();
  ouro::ptx::wgmma_mma_async<8>(o.acc, o.da, o.db, 1);  // kWgmmaAccumulatorWrittenLine
  ouro::ptx::wgmma_commit_group();
  if (threadIdx.x == 77) o.acc[2] = 1.0f;  // before the wait: the bug
  ouro::ptx::wgmma_wait_group<0>();
  out[threadIdx.x] = o.acc[0];
}
const int kWgmmaAccumulatorWrittenLineValue = __LINE__ - 6;

__global__ void wgmma_96_threads_kernel(float* out) {
  Operands o = valid_operands();
  ouro::ptx::wgmma_fence();  // kWgmma96ThreadsLine
  ouro::ptx::wgmma_mma_async<8>(o.acc, o.da, o.db, 1);
  out[threadIdx.x] = 0;
}
const int kWgmma96ThreadsLineValue = __LINE__ - 4;

__global__ void mbarrier_hang_kernel(float* out) {
  __shared__ __align__(8) uint64_t bar;
  if (threadIdx.x == 0) ouro::ptx::mbarrier_init(&bar, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    ouro::ptx::mbarrier_arrive_expect_tx(&bar, 4096);
    ouro::ptx::mbarrier_complete_tx(&bar, 2048);  // half the bytes never come
  }
  ouro::ptx::mbarrier_wait_parity(&bar, 0);  // kMbarrierHangLine
  out[threadIdx.x] = 1;
}
const int kMbarrierHangLineValue = __LINE__ - 3;

__global__ void setmaxnreg_split_kernel(float* out) {
  if (threadIdx.x / 32 < 2)
    ouro::ptx::setmaxnreg_inc<232>();
  else
    ouro::ptx::setmaxnreg_inc<232>();  // kSetmaxnregSplitLine
  out[threadIdx.x] = 0;
}
const int kSetmaxnregSplitLineValue = __LINE__ - 3;

__global__ void mbarrier_uninitialized_kernel(float* out) {
  __shared__ __align__(8) uint64_t bar;
  if (threadIdx.x == 0) ouro::ptx::mbarrier_arrive(&bar);  // kMbarrierUninitializedLine
  out[threadIdx.x] = 0;
}
const int kMbarrierUninitializedLineValue = __LINE__ - 3;

// ---- TMA ----------------------------------------------------------------------------------------

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

EncodeTiled encode_tiled() {
  void* fn = nullptr;
  cudaDriverEntryPointQueryResult status{};
  OURO_CUDA_CHECK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &status));
  if (!fn || status != cudaDriverEntryPointSuccess) throw std::runtime_error("no cuTensorMapEncodeTiled");
  return reinterpret_cast<EncodeTiled>(fn);
}

CUtensorMapSwizzle swizzle_of(int bytes) {
  return bytes == 128 ? CU_TENSOR_MAP_SWIZZLE_128B
         : bytes == 64 ? CU_TENSOR_MAP_SWIZZLE_64B
         : bytes == 32 ? CU_TENSOR_MAP_SWIZZLE_32B
                       : CU_TENSOR_MAP_SWIZZLE_NONE;
}

CUresult make_map(CUtensorMap& map, const TmaArgs& a, void* base, uint64_t stride_bytes) {
  const cuuint64_t dims[2] = {static_cast<cuuint64_t>(a.cols), static_cast<cuuint64_t>(a.rows)};
  const cuuint64_t strides[1] = {stride_bytes};
  const cuuint32_t box[2] = {static_cast<cuuint32_t>(a.box0), static_cast<cuuint32_t>(a.box1)};
  const cuuint32_t estrides[2] = {1, 1};
  return encode_tiled()(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, base, dims, strides, box, estrides,
                        CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle_of(a.swizzle), CU_TENSOR_MAP_L2_PROMOTION_NONE,
                        a.oob_nan ? CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA : CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
}

__global__ void tma_load_kernel(const OURO_GRID_CONSTANT CUtensorMap map, int x, int y, uint32_t bytes, uint8_t* out) {
  __shared__ __align__(8) uint64_t bar;
  uint8_t* smem = ouro::dynamic_shared<uint8_t>();
  if (threadIdx.x == 0) ouro::ptx::mbarrier_init(&bar, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    ouro::ptx::mbarrier_arrive_expect_tx(&bar, bytes);
    ouro::ptx::cp_async_bulk_tensor_2d_global_to_shared(smem, &map, x, y, &bar);
  }
  ouro::ptx::mbarrier_wait_parity(&bar, 0);
  for (unsigned i = threadIdx.x; i < bytes; i += blockDim.x) out[i] = smem[i];
}

__global__ void tma_store_kernel(const OURO_GRID_CONSTANT CUtensorMap map, int x, int y, uint32_t bytes,
                                 const uint8_t* image, bool fence) {
  uint8_t* smem = ouro::dynamic_shared<uint8_t>();
  for (unsigned i = threadIdx.x; i < bytes; i += blockDim.x) smem[i] = image[i];
  if (fence) ouro::ptx::fence_proxy_async();  // generic writes -> the async proxy that reads them
  __syncthreads();
  if (threadIdx.x == 0) {
    ouro::ptx::cp_async_bulk_tensor_2d_shared_to_global(&map, x, y, smem);  // kTmaStoreWithoutFenceLine
    ouro::ptx::cp_async_bulk_commit_group();
    ouro::ptx::cp_async_bulk_wait_group_read<0>();
    ouro::ptx::cp_async_bulk_wait_group<0>();
  }
}

const int kTmaStoreWithoutFenceLineValue = __LINE__ - 7;

__global__ void tma_read_early_kernel(const OURO_GRID_CONSTANT CUtensorMap map, uint32_t bytes, uint8_t* out) {
  __shared__ __align__(8) uint64_t bar;
  uint8_t* smem = ouro::dynamic_shared<uint8_t>();
  if (threadIdx.x == 0) ouro::ptx::mbarrier_init(&bar, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    ouro::ptx::mbarrier_arrive_expect_tx(&bar, bytes);
    ouro::ptx::cp_async_bulk_tensor_2d_global_to_shared(smem, &map, 0, 0, &bar);
  }
  __syncthreads();
  out[threadIdx.x] = smem[threadIdx.x];  // the bug: before mbarrier_wait_parity
  ouro::ptx::mbarrier_wait_parity(&bar, 0);
}

__global__ void tma_destination_written_kernel(const OURO_GRID_CONSTANT CUtensorMap map, uint32_t bytes, uint8_t* out) {
  __shared__ __align__(8) uint64_t bar;
  uint8_t* smem = ouro::dynamic_shared<uint8_t>();
  if (threadIdx.x == 0) ouro::ptx::mbarrier_init(&bar, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    ouro::ptx::mbarrier_arrive_expect_tx(&bar, bytes);
    ouro::ptx::cp_async_bulk_tensor_2d_global_to_shared(smem, &map, 0, 0, &bar);  // kTmaDestinationWrittenLine
    smem[100] = 1;  // the bug: the tile is not the kernel's until the phase completes
  }
  ouro::ptx::mbarrier_wait_parity(&bar, 0);
  out[threadIdx.x] = smem[threadIdx.x];
}
const int kTmaDestinationWrittenLineValue = __LINE__ - 6;

__global__ void wgmma_without_proxy_fence_kernel(float* out) {
  Operands o = valid_operands();
  if (threadIdx.x == 0) ouro::dynamic_shared<uint8_t>()[2048 + 100] = 0x3f;  // B, no fence after it
  __syncthreads();
  ouro::ptx::wgmma_fence();
  ouro::ptx::wgmma_mma_async<8>(o.acc, o.da, o.db, 1);  // kWgmmaWithoutProxyFenceLine
  ouro::ptx::wgmma_commit_group();
  ouro::ptx::wgmma_wait_group<0>();
  out[threadIdx.x] = o.acc[0];
}
const int kWgmmaWithoutProxyFenceLineValue = __LINE__ - 5;

__global__ void mbarrier_extra_arrival_kernel(float* out) {
  __shared__ __align__(8) uint64_t bar;
  if (threadIdx.x == 0) ouro::ptx::mbarrier_init(&bar, 1);
  __syncthreads();
  if (threadIdx.x == 0) {
    ouro::ptx::mbarrier_arrive_expect_tx(&bar, 128);
    ouro::ptx::mbarrier_arrive(&bar);  // kMbarrierExtraArrivalLine
  }
  out[threadIdx.x] = 0;
}
const int kMbarrierExtraArrivalLineValue = __LINE__ - 4;

// ---- a warp-specialized pipeline: TMA producer, wgmma consumer --------------------------------
// 256 threads: warpgroup 0 produces (one elected lane of warp 0 issues the TMA loads), warpgroup 1
// consumes. Two stages of A and B tiles (64 x 64 bf16, 128B swizzle, 8 KiB each) guarded by full
// and empty mbarriers; K = 64 * k_tiles. D (64 x 64, fp32) = A (64 x K) * B^T, B given as 64 x K.

__global__ void __launch_bounds__(256) ws_gemm_kernel(const OURO_GRID_CONSTANT CUtensorMap map_a,
                                                      const OURO_GRID_CONSTANT CUtensorMap map_b, int k_tiles,
                                                      float* out) {
  constexpr int kStages = 2;
  constexpr uint32_t kTileBytes = 64 * 64 * 2;
  __shared__ __align__(8) uint64_t full[kStages], empty[kStages];
  uint8_t* smem = ouro::dynamic_shared<uint8_t>();  // stage s: A at 2s * 8 KiB, B at (2s + 1) * 8 KiB
  const unsigned wg = threadIdx.x / 128;
  if (threadIdx.x == 0)
    for (int s = 0; s < kStages; ++s) {
      ouro::ptx::mbarrier_init(&full[s], 1);
      ouro::ptx::mbarrier_init(&empty[s], 1);
    }
  __syncthreads();
  if (wg == 0) {
    ouro::ptx::setmaxnreg_dec<40>();
    if (threadIdx.x / 32 == 0 && ouro::ptx::elect_sync()) {
      for (int kt = 0; kt < k_tiles; ++kt) {
        const int s = kt % kStages;
        ouro::ptx::mbarrier_wait_parity(&empty[s], ((kt / kStages) & 1) ^ 1);  // first round passes
        ouro::ptx::mbarrier_arrive_expect_tx(&full[s], 2 * kTileBytes);
        ouro::ptx::cp_async_bulk_tensor_2d_global_to_shared(smem + (2 * s) * kTileBytes, &map_a, 64 * kt, 0, &full[s]);
        ouro::ptx::cp_async_bulk_tensor_2d_global_to_shared(smem + (2 * s + 1) * kTileBytes, &map_b, 64 * kt, 0,
                                                            &full[s]);
      }
    }
    return;
  }
  ouro::ptx::setmaxnreg_inc<232>();
  float acc[32];
  for (float& x : acc) x = 0.0f;
  const uint32_t base = ouro::ptx::shared_address(smem);
  for (int kt = 0; kt < k_tiles; ++kt) {
    const int s = kt % kStages;
    ouro::ptx::mbarrier_wait_parity(&full[s], (kt / kStages) & 1);
    ouro::ptx::wgmma_fence();
    for (int k = 0; k < 4; ++k) {
      const uint64_t da = ouro::ptx::make_wgmma_desc(base + (2 * s) * kTileBytes + 32 * k, 16, 1024, Swizzle::b128);
      const uint64_t db = ouro::ptx::make_wgmma_desc(base + (2 * s + 1) * kTileBytes + 32 * k, 16, 1024, Swizzle::b128);
      ouro::ptx::wgmma_mma_async<64>(acc, da, db, 1);
    }
    ouro::ptx::wgmma_commit_group();
    ouro::ptx::wgmma_wait_group<0>();
    if (threadIdx.x == 128) ouro::ptx::mbarrier_arrive(&empty[s]);
  }
  const unsigned t = threadIdx.x - 128, w = t / 32, lane = t % 32;
  for (int j = 0; j < 32; ++j) {
    const unsigned row = 16 * w + lane / 4 + 8 * ((j >> 1) & 1), col = 8 * (j >> 2) + 2 * (lane % 4) + (j & 1);
    out[row * 64 + col] = acc[j];
  }
}

void launch_bug(void (*kernel)(float*), unsigned threads, size_t smem = 4096) {
  DeviceBuffer<float> out(256);
  ouro::launch(kernel, dim3(1), dim3(threads), smem, nullptr, out.ptr);
  sync();
}

}  // namespace

bool hopper_available() {
#if defined(OURO_SIMT)
  return true;
#else
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
    cudaGetLastError();
    return false;
  }
  int major = 0;
  return cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, 0) == cudaSuccess && major == 9;
#endif
}

const int kWgmmaSplitSiteLine = kWgmmaSplitSiteLineValue;
const int kWgmmaWarpExitedLine = kWgmmaWarpExitedLineValue;
const int kWgmmaOperandsDifferLine = kWgmmaOperandsDifferLineValue;
void launch_wgmma_operands_differ() { launch_bug(wgmma_operands_differ_kernel, 128); }
const int kWgmmaWarpAtBarrierLine = kWgmmaWarpAtBarrierLineValue;
const int kWgmmaBadSwizzleStartLine = kWgmmaBadSwizzleStartLineValue;
const int kWgmmaReservedBitsLine = kWgmmaReservedBitsLineValue;
const int kWgmmaPastSharedLine = kWgmmaPastSharedLineValue;
const int kWgmmaNoFenceLine = kWgmmaNoFenceLineValue;
const int kWgmmaAccumulatorWrittenLine = kWgmmaAccumulatorWrittenLineValue;
const int kWgmma96ThreadsLine = kWgmma96ThreadsLineValue;
const int kMbarrierHangLine = kMbarrierHangLineValue;
const int kSetmaxnregSplitLine = kSetmaxnregSplitLineValue;
const int kMbarrierUninitializedLine = kMbarrierUninitializedLineValue;
const int kTmaDestinationWrittenLine = kTmaDestinationWrittenLineValue;
const int kMbarrierExtraArrivalLine = kMbarrierExtraArrivalLineValue;
void launch_mbarrier_extra_arrival() { launch_bug(mbarrier_extra_arrival_kernel, 32, 0); }
const int kTmaStoreWithoutFenceLine = kTmaStoreWithoutFenceLineValue;
const int kWgmmaWithoutProxyFenceLine = kWgmmaWithoutProxyFenceLineValue;
void launch_wgmma_without_proxy_fence() { launch_bug(wgmma_without_proxy_fence_kernel, 128); }

void run_tma_load(const TmaArgs& a, const uint16_t* tensor, uint8_t* out) {
  DeviceBuffer<uint16_t> t(tensor, static_cast<size_t>(a.rows) * a.pitch);
  const uint32_t bytes = static_cast<uint32_t>(a.box0 * a.box1 * 2);
  DeviceBuffer<uint8_t> d_out(bytes);
  CUtensorMap map;
  if (make_map(map, a, t.ptr, static_cast<uint64_t>(a.pitch) * 2) != CUDA_SUCCESS)
    throw std::runtime_error("cuTensorMapEncodeTiled refused the test's tensor map");
  ouro::launch(tma_load_kernel, dim3(1), dim3(128), bytes, nullptr, map, a.x, a.y, bytes, d_out.ptr);
  sync();
  d_out.get(out);
}

void run_tma_store(const TmaArgs& a, const uint8_t* image, uint16_t* tensor, bool fence) {
  DeviceBuffer<uint16_t> t(tensor, static_cast<size_t>(a.rows) * a.pitch);
  const uint32_t bytes = static_cast<uint32_t>(a.box0 * a.box1 * 2);
  DeviceBuffer<uint8_t> d_image(image, bytes);
  CUtensorMap map;
  if (make_map(map, a, t.ptr, static_cast<uint64_t>(a.pitch) * 2) != CUDA_SUCCESS)
    throw std::runtime_error("cuTensorMapEncodeTiled refused the test's tensor map");
  ouro::launch(tma_store_kernel, dim3(1), dim3(128), bytes, nullptr, map, a.x, a.y, bytes, d_image.ptr, fence);
  sync();
  t.get(tensor);
}

int encode_tensor_map(const TmaArgs& a, int address_offset, int stride_bytes) {
  DeviceBuffer<uint8_t> t(static_cast<size_t>(a.rows) * stride_bytes + 512);
  CUtensorMap map;
  return static_cast<int>(make_map(map, a, t.ptr + address_offset, static_cast<uint64_t>(stride_bytes)));
}

void launch_tma_read_early() {
  TmaArgs a{16, 64, 64, 64, 16, 128, 0, 0};
  DeviceBuffer<uint16_t> t(16 * 64);
  DeviceBuffer<uint8_t> out(128);
  CUtensorMap map;
  if (make_map(map, a, t.ptr, 128) != CUDA_SUCCESS) throw std::runtime_error("tensor map refused");
  ouro::launch(tma_read_early_kernel, dim3(1), dim3(128), 2048, nullptr, map, 2048u, out.ptr);
  sync();
}

void launch_tma_destination_written() {
  TmaArgs a{16, 64, 64, 64, 16, 128, 0, 0};
  DeviceBuffer<uint16_t> t(16 * 64);
  DeviceBuffer<uint8_t> out(128);
  CUtensorMap map;
  if (make_map(map, a, t.ptr, 128) != CUDA_SUCCESS) throw std::runtime_error("tensor map refused");
  ouro::launch(tma_destination_written_kernel, dim3(1), dim3(128), 2048, nullptr, map, 2048u, out.ptr);
  sync();
}

void run_wgmma(const WgmmaArgs& a) {
  const WgmmaParams p{a.scale_d, a.smem_bytes, a.a_off, a.a_lbo, a.a_sbo, a.b_off, a.b_lbo, a.b_sbo,
                      a.a_swizzle, a.b_swizzle};
  const size_t nd = static_cast<size_t>(a.n) / 2;
  DeviceBuffer<uint8_t> image(a.image, a.smem_bytes);
  std::vector<uint32_t> no_regs(128 * 4, 0);
  DeviceBuffer<uint32_t> regs(a.a_regs ? &a.a_regs[0][0] : no_regs.data(), 128 * 4);
  DeviceBuffer<float> c(a.c, 128 * nd), d(128 * nd);
  switch (a.n) {
    case 8: dispatch_trans<8>(a, p, image.ptr, regs.ptr, c.ptr, d.ptr); break;
    case 16: dispatch_trans<16>(a, p, image.ptr, regs.ptr, c.ptr, d.ptr); break;
    case 24: dispatch_trans<24>(a, p, image.ptr, regs.ptr, c.ptr, d.ptr); break;
    case 64: dispatch_trans<64>(a, p, image.ptr, regs.ptr, c.ptr, d.ptr); break;
    case 128: dispatch_trans<128>(a, p, image.ptr, regs.ptr, c.ptr, d.ptr); break;
    case 256: dispatch_trans<256>(a, p, image.ptr, regs.ptr, c.ptr, d.ptr); break;
    default: throw std::invalid_argument("run_wgmma: n must be 8, 16, 24, 64, 128 or 256");
  }
  sync();
  d.get(a.d);
}

void run_wgmma_pipeline(const uint8_t* image, float* acc0_after1, float* acc1_after1, float* acc0_after0,
                        float* acc1_after0) {
  DeviceBuffer<uint8_t> img(image, 16384);
  DeviceBuffer<float> snaps(4 * 128 * 32);
  ouro::launch(wgmma_pipeline_kernel, dim3(1), dim3(128), 16384, nullptr, img.ptr, snaps.ptr);
  sync();
  std::vector<float> h(4 * 128 * 32);
  snaps.get(h.data());
  float* outs[4] = {acc0_after1, acc1_after1, acc0_after0, acc1_after0};
  for (int s = 0; s < 4; ++s)
    for (int i = 0; i < 128 * 32; ++i) outs[s][i] = h[s * 128 * 32 + i];
}

void run_mbarrier_rounds(uint32_t* seen, uint32_t* early, uint64_t* tokens) {
  DeviceBuffer<uint32_t> d_seen(3 * 128), d_early(128);
  DeviceBuffer<uint64_t> d_tokens(12);
  ouro::launch(mbarrier_rounds_kernel, dim3(1), dim3(128), 0, nullptr, d_seen.ptr, d_early.ptr, d_tokens.ptr);
  sync();
  d_seen.get(seen);
  d_early.get(early);
  d_tokens.get(tokens);
}

void run_elect_sync(uint32_t mask, uint32_t* out) {
  DeviceBuffer<uint32_t> d_out(32);
  ouro::launch(elect_sync_kernel, dim3(1), dim3(32), 0, nullptr, mask, d_out.ptr);
  sync();
  d_out.get(out);
}

void run_setmaxnreg(uint32_t* out) {
  DeviceBuffer<uint32_t> d_out(256);
  ouro::launch(setmaxnreg_kernel, dim3(1), dim3(256), 0, nullptr, d_out.ptr);
  sync();
  d_out.get(out);
}

void run_ws_gemm(int k_tiles, const uint16_t* a, const uint16_t* b, float* d) {
  const size_t k = static_cast<size_t>(k_tiles) * 64;
  DeviceBuffer<uint16_t> d_a(a, 64 * k), d_b(b, 64 * k);
  DeviceBuffer<float> d_d(64 * 64);
  const TmaArgs t{64, static_cast<int>(k), static_cast<int>(k), 64, 64, 128, 0, 0};
  CUtensorMap map_a, map_b;
  if (make_map(map_a, t, d_a.ptr, k * 2) != CUDA_SUCCESS || make_map(map_b, t, d_b.ptr, k * 2) != CUDA_SUCCESS)
    throw std::runtime_error("tensor map refused");
  const size_t smem = 4 * 64 * 64 * 2;
  OURO_CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(ws_gemm_kernel),
                                       cudaFuncAttributeMaxDynamicSharedMemorySize, static_cast<int>(smem)));
  ouro::launch(ws_gemm_kernel, dim3(1), dim3(256), smem, nullptr, map_a, map_b, k_tiles, d_d.ptr);
  sync();
  d_d.get(d);
}

void launch_wgmma_split_site() { launch_bug(wgmma_split_site_kernel, 128); }
void launch_wgmma_warp_exited() { launch_bug(wgmma_warp_exited_kernel, 128); }
void launch_wgmma_warp_at_barrier() { launch_bug(wgmma_warp_at_barrier_kernel, 128); }
void launch_wgmma_bad_swizzle_start() { launch_bug(wgmma_bad_swizzle_start_kernel, 128); }
void launch_wgmma_reserved_bits() { launch_bug(wgmma_reserved_bits_kernel, 128); }
void launch_wgmma_past_shared() { launch_bug(wgmma_past_shared_kernel, 128); }
void launch_wgmma_no_fence() { launch_bug(wgmma_no_fence_kernel, 128); }
void launch_wgmma_accumulator_written() { launch_bug(wgmma_accumulator_written_kernel, 128); }
void launch_wgmma_96_threads() { launch_bug(wgmma_96_threads_kernel, 96); }
void launch_mbarrier_hang() { launch_bug(mbarrier_hang_kernel, 32, 0); }
void launch_setmaxnreg_split() { launch_bug(setmaxnreg_split_kernel, 128, 0); }
void launch_mbarrier_uninitialized() { launch_bug(mbarrier_uninitialized_kernel, 32, 0); }

void run_named_pingpong(int rounds, uint32_t* log) {
  DeviceBuffer<uint32_t> d_log(2 * static_cast<size_t>(rounds));
  ouro::launch(named_pingpong_kernel, dim3(1), dim3(256), 0, nullptr, d_log.ptr, rounds);
  sync();
  d_log.get(log);
}
const int kNamedBarrierHangLine = kNamedBarrierHangLineValue;
const int kNamedBarrierCountsDifferLine = kNamedBarrierCountsDifferLineValue;
void launch_named_barrier_hang() { launch_bug(named_barrier_hang_kernel, 256, 0); }
void launch_named_barrier_counts_differ() { launch_bug(named_barrier_counts_differ_kernel, 128, 0); }

}  // namespace ptx_sm90_test
