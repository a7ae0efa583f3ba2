#include "kernels/matmul_sm90.h"

#include <ouro/ptx_sm90.h>

#include "kernels/common.cuh"
#include "kernels/shared_memory.h"
#include "kernels/switches.h"
#include "kernels/tensor_map.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

// bf16 GEMM for Hopper (sm_90a): TMA loads into an mbarrier ring, warpgroup MMA (wgmma) from
// shared memory, warp specialization, a persistent grid. Same products and epilogue as the
// Ampere kernel (kernels/matmul.cu, whose header gives the three layouts):
//   forward  M=N,  Nn=OC, K=C   A = inp  [m][k] (K-major)   B = W   [n][k] (K-major)
//   dX       M=N,  Nn=C,  K=OC  A = dout [m][k] (K-major)   B = W   [k][n] (MN-major)
//   dW       M=OC, Nn=C,  K=N   A = dout [k][m] (MN-major)  B = inp [k][n] (MN-major)
//
// Block: 384 threads = 3 warpgroups.
//  - warpgroup 0, the producer: gives registers back (setmaxnreg.dec 40); one elected lane of its
//    first warp walks the block's work units and, per 64-deep k step, waits for a free stage
//    (its "empty" mbarrier), announces the stage's bytes (arrive.expect_tx on its "full"
//    mbarrier) and issues the TMA copies of the A and B tiles into it. The rest of the
//    warpgroup exits.
//  - warpgroups 1 and 2, the consumers (setmaxnreg.inc 232: 128 + 2 x 256 threads x registers
//    fit the 64K register file as 128 x 40 + 256 x 232 = 64,512): consumer c owns rows
//    64c..64c+63 of the 128-row tile, i.e. one m64nBNk16 wgmma per 16 of k (4 per stage), its
//    fp32 accumulators in registers (BN/2 per thread: 128 for the 128x256 tile). After issuing
//    a stage's four wgmma it waits until only that group is pending (wgmma.wait_group 1), so the
//    previous stage is no longer read and one thread of the warpgroup releases it (arrive on
//    "empty", count 2 = both consumers).
// Shared memory: STAGES x (A tile 128 x 64 + B tile BN x 64) bf16, every 64-element row one
// 128-byte line in the 128B swizzle (16-byte chunk c of line r stored at chunk c ^ (r % 8)), as
// TMA writes it and wgmma reads it: the bank-conflict-free layout without padding.
//   K-major operand (rows = m or n, 64 k each): one TMA box {64 k, rows}; the wgmma descriptor
//     starts at row 0 (+ 64 rows x 128 B per consumer for A) + 32 B per k16 step, stride byte
//     offset 1024 (8 rows of 128 B), transpose bit 0.
//   MN-major operand (stored rows are k): boxes of {64 mn, 64 k} = 8 KiB each, side by side;
//     descriptor start + 2048 B per k16 step (16 k rows), leading byte offset 8192 (the next
//     64-wide mn block), stride byte offset 1024 (8 k rows), transpose bit 1.
// Tiles: wide = 128x256, 4 stages of 48 KiB = 192 KiB (+1 KiB alignment slack); narrow =
// 128x128, 6 stages of 32 KiB = 192 KiB. One block per SM. Shared-memory traffic per stage:
// wide 4.2 MFLOP for 48 KiB written by TMA + 80 KiB read by wgmma (each consumer reads its A
// half and all of B) = 32 FLOP per byte, i.e. 128 B/clock at the SM's 4096 bf16 FLOP/clock,
// the shared-memory bandwidth; narrow 2.1 MFLOP for 32 + 48 KiB = 25.6 FLOP/B (160 B/clock
// needed: at most ~80% of the tensor rate). The Ampere kernel: 16 FLOP/B (~50%). The automatic
// choice weighs that ceiling against wave quantization on the persistent grid (pick_tile).
//
// Persistent grid: min(work units, SMs) blocks; unit u = (split u / tiles, tile u % tiles),
// block b takes units b, b + grid, ... Tiles are rasterized in groups of 8 tile rows walked
// column by column, so the blocks running at one time share A row panels and B column panels
// in L2. The producer runs ahead across unit boundaries, so the next tile's loads overlap this
// tile's epilogue.
//
// Ragged shapes: TMA fills whatever lies outside the tensor (past M, Nn or K) with zeros, so
// tails add nothing; the epilogue stores only rows < M and columns < Nn (Nn % 8 == 0, so the
// two adjacent columns a thread holds are both inside or both outside).
//
// Epilogue: straight from the accumulator registers (row 16w + g (+8), columns 8j + 2t, +1 of
// the warp's slab, g = lane / 4, t = lane % 4), through matmul_detail::epi_store2 (bias, GELU
// with pre_gelu, overwrite or accumulate), or raw fp32 pairs to the split-K partial slice.
//
// Determinism: every output element is accumulated by one thread's wgmma chain in a fixed k
// order (k steps of 16 within stages in order); split-K slices (dW with few output tiles) go
// to separate fp32 slices that matmul.cu adds in slice order; the slice count depends only on
// the shape. No atomics, so results are bitwise identical run to run and for any grid size.

namespace ouro::kernels::sm90 {

namespace {

using matmul_detail::Epi;
using ptx::Swizzle;

constexpr int kBM = 128;
constexpr int kThreads = 384;
constexpr int kProducerRegs = 40, kConsumerRegs = 232;
constexpr int kRasterRows = 8;     // tile rows per raster group
constexpr uint32_t kLine = 128;    // bytes per 64-element bf16 row (the swizzle width)
constexpr uint32_t kBox = 64 * kLine;  // one {64, 64} box: 8 KiB

template <int BN_, int STAGES_>
struct Config {
  static constexpr int BN = BN_, STAGES = STAGES_;
  static constexpr uint32_t A_BYTES = kBM * kBK * 2, B_BYTES = BN * kBK * 2;
  static constexpr uint32_t STAGE_BYTES = A_BYTES + B_BYTES;
  static constexpr size_t SMEM = size_t(STAGES) * STAGE_BYTES + 1024;  // + slack to align to 1 KiB
  static_assert(BN % 64 == 0 && BN <= 256, "BN: whole 64-column boxes, one wgmma");
};
using Wide = Config<256, 4>;
using Narrow = Config<128, 6>;

// The block's work: tiles_m x tiles_n output tiles, each reduced over `splits` k slices.
struct Work {
  int tiles_m, tiles_n, tiles, splits, k_split, units;
};

struct Unit {
  int m0, n0, k_begin, k_end, split;
};

__device__ __forceinline__ Unit unit_at(const Work& w, int u, int K) {
  const int tile = u % w.tiles, split = u / w.tiles;
  const int per_group = kRasterRows * w.tiles_n;
  const int first = (tile / per_group) * kRasterRows;
  const int rows = w.tiles_m - first < kRasterRows ? w.tiles_m - first : kRasterRows;
  const int in = tile % per_group;
  Unit r;
  r.m0 = (first + in % rows) * kBM;
  r.n0 = (in / rows);  // column index; scaled by BN by the caller
  r.split = split;
  r.k_begin = split * w.k_split;
  r.k_end = K - r.k_begin < w.k_split ? K : r.k_begin + w.k_split;
  return r;
}

template <class Cfg, bool A_K, bool B_K>
__global__ void __launch_bounds__(kThreads, 1)
    gemm_ws_kernel(const OURO_GRID_CONSTANT CUtensorMap map_a, const OURO_GRID_CONSTANT CUtensorMap map_b, int M,
                   int Nn, int K, Work w, Epi e) {
  constexpr int STAGES = Cfg::STAGES, BN = Cfg::BN;
  __shared__ __align__(8) uint64_t full[STAGES], empty[STAGES];
  uint8_t* raw = dynamic_shared<uint8_t>();
  uint8_t* smem = raw + ((1024u - (ptx::shared_address(raw) & 1023u)) & 1023u);  // 128B swizzle: 1 KiB aligned
  const int wg = threadIdx.x / 128;

  if (threadIdx.x == 0) {
    for (int s = 0; s < STAGES; ++s) {
      ptx::mbarrier_init(&full[s], 1);   // the producer's arrive.expect_tx (+ the TMA bytes)
      ptx::mbarrier_init(&empty[s], 2);  // one arrival per consumer warpgroup
    }
    ptx::fence_proxy_async();  // the initialized barriers, visible to the TMA unit
  }
  __syncthreads();

  if (wg == 0) {  // producer
    ptx::setmaxnreg_dec<kProducerRegs>();
    if (threadIdx.x / 32 == 0 && ptx::elect_sync()) {
      uint32_t it = 0;  // k steps issued by this block so far: stage it % STAGES, round it / STAGES
      for (int u = blockIdx.x; u < w.units; u += gridDim.x) {
        const Unit t = unit_at(w, u, K);
        const int n0 = t.n0 * BN;
        for (int k0 = t.k_begin; k0 < t.k_end; k0 += kBK, ++it) {
          const int s = int(it % STAGES);
          ptx::mbarrier_wait_parity(&empty[s], ((it / STAGES) & 1) ^ 1);  // round 0 passes at once
          ptx::mbarrier_arrive_expect_tx(&full[s], Cfg::STAGE_BYTES);
          uint8_t* a = smem + size_t(s) * Cfg::STAGE_BYTES;
          uint8_t* b = a + Cfg::A_BYTES;
          if constexpr (A_K) {
            ptx::cp_async_bulk_tensor_2d_global_to_shared(a, &map_a, k0, t.m0, &full[s]);
          } else {
#pragma unroll
            for (int j = 0; j < kBM / 64; ++j)
              ptx::cp_async_bulk_tensor_2d_global_to_shared(a + j * kBox, &map_a, t.m0 + 64 * j, k0, &full[s]);
          }
          if constexpr (B_K) {
            ptx::cp_async_bulk_tensor_2d_global_to_shared(b, &map_b, k0, n0, &full[s]);
          } else {
#pragma unroll
            for (int j = 0; j < BN / 64; ++j)
              ptx::cp_async_bulk_tensor_2d_global_to_shared(b + j * kBox, &map_b, n0 + 64 * j, k0, &full[s]);
          }
        }
      }
    }
    return;
  }

  // consumers
  ptx::setmaxnreg_inc<kConsumerRegs>();
  const int c = wg - 1;  // rows 64c.. of the tile
  const int tid = threadIdx.x % 128, warp = tid / 32, lane = tid % 32;
  const uint32_t base = ptx::shared_address(smem);
  float acc[BN / 2];
  uint32_t it = 0;
  for (int u = blockIdx.x; u < w.units; u += gridDim.x) {
    const Unit t = unit_at(w, u, K);
    const int n0 = t.n0 * BN;
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.0f;
    const int steps = (t.k_end - t.k_begin + kBK - 1) / kBK;
    for (int kt = 0; kt < steps; ++kt, ++it) {
      const int s = int(it % STAGES);
      ptx::mbarrier_wait_parity(&full[s], (it / STAGES) & 1);
      const uint32_t a = base + uint32_t(s) * Cfg::STAGE_BYTES + uint32_t(c) * 64 * kLine;
      const uint32_t b = base + uint32_t(s) * Cfg::STAGE_BYTES + Cfg::A_BYTES;
      ptx::wgmma_fence();
#pragma unroll
      for (int kk = 0; kk < kBK / 16; ++kk) {
        const uint64_t da = A_K ? ptx::make_wgmma_desc(a + 32 * kk, 16, 8 * kLine, Swizzle::b128)
                                : ptx::make_wgmma_desc(a + 16 * kLine * kk, kBox, 8 * kLine, Swizzle::b128);
        const uint64_t db = B_K ? ptx::make_wgmma_desc(b + 32 * kk, 16, 8 * kLine, Swizzle::b128)
                                : ptx::make_wgmma_desc(b + 16 * kLine * kk, kBox, 8 * kLine, Swizzle::b128);
        ptx::wgmma_mma_async<BN, A_K ? 0 : 1, B_K ? 0 : 1>(acc, da, db, 1);
      }
      ptx::wgmma_commit_group();
      ptx::wgmma_wait_group<1>();  // the previous step's wgmma are done: its stage is free
      if (kt > 0 && tid == 0) ptx::mbarrier_arrive(&empty[(it - 1) % STAGES]);
    }
    ptx::wgmma_wait_group<0>();
    if (tid == 0) ptx::mbarrier_arrive(&empty[(it - 1) % STAGES]);

    // Epilogue (the producer is already loading the next unit's stages).
    const int row = t.m0 + 64 * c + 16 * warp + lane / 4;
    const int col = n0 + 2 * (lane % 4);
#pragma unroll
    for (int j = 0; j < BN / 8; ++j) {
      const int n = col + 8 * j;
      if (n >= Nn) continue;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int m = row + 8 * h;
        if (m >= M) continue;
        const float v0 = acc[4 * j + 2 * h], v1 = acc[4 * j + 2 * h + 1];
        if (e.partial) {
          *reinterpret_cast<float2*>(e.partial + (size_t(t.split) * M + m) * Nn + n) = make_float2(v0, v1);
        } else {
          matmul_detail::epi_store2(e, m, n, v0, v1);
        }
      }
    }
  }
}

// ---- host ------------------------------------------------------------------------------------

// A row-major bf16 matrix (outer rows of `inner` elements) read in boxes of box_inner x
// box_outer, 128B swizzle, zeros outside.
CUtensorMap tensor_map(const bf16* base, int inner, int outer, int box_inner, int box_outer) {
  return bf16_tensor_map_128b(base, inner, outer, size_t(inner), box_inner, box_outer, "matmul (sm_90a)");
}

// The static model of docs/perf.md: a tile's expected fraction of the tensor rate is its
// shared-memory ceiling (wide 1.0, narrow 0.8: FLOP per shared byte against 128 B/clock) times
// the wave efficiency of its work units on `sms` persistent blocks (units / (sms x whole waves)).
Sm90Tile pick_tile(int M, int Nn, int splits, int sms) {
  auto expected = [&](int bn, double ceiling) {
    const double units = double(ceil_div(M, kBM)) * ceil_div(Nn, bn) * splits;
    const double waves = units / sms;
    return ceiling * waves / std::ceil(waves);
  };
  return Nn > 128 && expected(Wide::BN, 1.0) >= expected(Narrow::BN, 0.8) ? Sm90Tile::wide : Sm90Tile::narrow;
}

template <class Cfg, bool A_K, bool B_K>
bool launch_cfg(const bf16* A, const bf16* B, int M, int Nn, int K, const Epi& e, int splits, int k_split,
                cudaStream_t stream) {
  auto kernel = gemm_ws_kernel<Cfg, A_K, B_K>;
  const std::string name = "matmul sm_90a 128x" + std::to_string(Cfg::BN) + " tile";
  if (!opt_in_shared_memory(kernel, Cfg::SMEM, name.c_str(), "the Ampere matmul kernel")) return false;
  // A: [m][k] boxes {64 k, 128 m}, or [k][m] boxes {64 m, 64 k}; B likewise with BN.
  const CUtensorMap map_a = A_K ? tensor_map(A, K, M, kBK, kBM) : tensor_map(A, M, K, 64, kBK);
  const CUtensorMap map_b = B_K ? tensor_map(B, K, Nn, kBK, Cfg::BN) : tensor_map(B, Nn, K, 64, kBK);
  Work w;
  w.tiles_m = ceil_div(M, kBM);
  w.tiles_n = ceil_div(Nn, Cfg::BN);
  w.tiles = w.tiles_m * w.tiles_n;
  w.splits = splits;
  w.k_split = k_split;
  w.units = w.tiles * splits;
  const int grid = std::min(w.units, device_sm_count());
  launch(kernel, dim3(grid), dim3(kThreads), Cfg::SMEM, stream, map_a, map_b, M, Nn, K, w, e);
  OURO_CUDA_CHECK_LAUNCH();
  return true;
}

template <class Cfg>
bool launch_layout(bool a_k, bool b_k, const bf16* A, const bf16* B, int M, int Nn, int K, const Epi& e, int splits,
                   int k_split, cudaStream_t stream) {
  if (a_k && b_k) return launch_cfg<Cfg, true, true>(A, B, M, Nn, K, e, splits, k_split, stream);
  if (a_k && !b_k) return launch_cfg<Cfg, true, false>(A, B, M, Nn, K, e, splits, k_split, stream);
  if (!a_k && !b_k) return launch_cfg<Cfg, false, false>(A, B, M, Nn, K, e, splits, k_split, stream);
  throw std::logic_error("matmul (sm_90a): A MN-major with B K-major is no training layout");
}

}  // namespace

bool gemm_available() {
#if defined(OURO_SIMT)
  return true;
#else
  static const bool ok = [] {
    int dev = 0, major = 0, minor = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    if (major != 9 || minor != 0) return false;
    // The kernel must have been compiled for sm_90a (wgmma exists nowhere else): its binary
    // and PTX versions say which code the runtime loaded for this device.
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, reinterpret_cast<const void*>(gemm_ws_kernel<Narrow, true, true>)) != cudaSuccess) {
      (void)cudaGetLastError();
      return false;
    }
    return attr.binaryVersion == 90 && attr.ptxVersion >= 90;
  }();
  return ok && encode_tiled() != nullptr;
#endif
}

// OURO_MATMUL_SM90=0 keeps the Ampere kernel on a Hopper GPU (a comparison, or a way around a
// suspected problem in this kernel until the GPU tests have run on the machine).
namespace {
constinit EnvSwitch matmul_sm90_off{"OURO_MATMUL_SM90", "0"};
}  // namespace

bool gemm_selected() { return sm90_selected(matmul_sm90_off, gemm_available); }

bool gemm(bool a_kmajor, bool b_kmajor, const bf16* A, const bf16* B, int M, int Nn, int K, const Epi& e,
          Sm90Tile tile, int splits, int k_split, cudaStream_t stream) {
  if (splits < 1 || k_split % kBK != 0 || (splits > 1 && !e.partial))
    throw std::invalid_argument("matmul (sm_90a): bad split-K arguments");
  if (tile == Sm90Tile::automatic) tile = pick_tile(M, Nn, splits, device_sm_count());
  if (tile == Sm90Tile::wide && launch_layout<Wide>(a_kmajor, b_kmajor, A, B, M, Nn, K, e, splits, k_split, stream))
    return true;
  return launch_layout<Narrow>(a_kmajor, b_kmajor, A, B, M, Nn, K, e, splits, k_split, stream);
}

}  // namespace ouro::kernels::sm90
