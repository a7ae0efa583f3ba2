#include "kernels/matmul.h"

#include "kernels/matmul_epilogue.cuh"
#include "kernels/matmul_skinny.h"
#include "kernels/matmul_sm90.h"
#include "kernels/shared_memory.h"

#include <algorithm>

// bf16 GEMM on tensor cores for the three training layouts (fp32 accumulation throughout).
//
// Every layout is one product D (M x Nn) = sum_k A(m,k) B(k,n), with the operands stored either
// "K-major" (the reduction index is the contiguous one) or "MN-major":
//   forward  out   (N,OC)  : M=N,  Nn=OC, K=C   A = inp  [m][k] (K-major)   B = W   [n][k] (K-major)
//   dX       dinp  (N,C)   : M=N,  Nn=C,  K=OC  A = dout [m][k] (K-major)   B = W   [k][n] (MN-major)
//   dW       dW    (OC,C)  : M=OC, Nn=C,  K=N   A = dout [k][m] (MN-major)  B = inp [k][n] (MN-major)
// All matrices are dense row-major, so the leading dimension is the length of the contiguous index.
//
// Fast path (C % 8 == 0 and OC % 8 == 0, all pointers 16-byte aligned: every global row is a whole
// number of 16-byte chunks, so a chunk is either fully inside the matrix or fully outside):
//  - block tile BM x BN x 32, a STAGES-deep cp.async pipeline (16-byte copies; chunks past the
//    edge of M, Nn or K use the zero-fill form with src_bytes 0, so ragged tiles add zeros);
//  - shared tiles keep the global orientation, rows padded by 8 bf16 (16 bytes): a K-major row is
//    80 bytes, an MN-major row 272 (144 for the 64-wide tile), so the 8 row addresses of one
//    ldmatrix 8x8 matrix fall in 8 distinct 16-byte bank groups (conflict-free) and cp.async's
//    16-byte destinations stay aligned. Padding costs 20-25% more shared memory than an XOR
//    swizzle but keeps the address math obvious, and the tiles fit either way;
//  - fragments via ldmatrix.x4: plain for K-major operands (rows are m or n, as mma's row-major A
//    and "col" B want), .trans for MN-major ones (the stored rows are k), then mma.m16n8k16;
//  - the epilogue stages the fp32 accumulator tile through the (then idle) pipeline shared memory
//    so each thread handles 8 consecutive outputs of a row: 16-byte loads of bias / old dweight,
//    16-byte stores of out and pre_gelu (bias, GELU with the pre-GELU value saved, overwrite or
//    accumulate; or raw fp32 split-K partials).
// Tiles: large = 128x128, 8 warps as 2 (M) x 4 (N), warp tile 64x32 (4x4 mma tiles, 64 fp32
// accumulators per thread), 4 stages = 80 KiB shared -> 2 blocks per SM on A100 and H100 (the
// register file allows 2 x 256 threads at <= 128 registers). It loads 2 x 128 x 32 bf16 per
// 128x128x32 of math (16 FLOP per shared byte). small = 64x64, 4 warps as 2 x 2, warp tile 32x32,
// 4 stages = 36 KiB: 4x more blocks for shapes that would not fill the GPU with 128x128 tiles
// (e.g. dW 768x768, where K = B*T is long but there are only 36 large tiles).
//
// Determinism: each output element is produced by one thread with a fixed k order; no atomics.
// dW may split K (few output tiles, long K = B*T): each slice writes raw fp32 sums to the scratch
// memory and one kernel adds the slices in slice order to dweight; the split count depends on the
// shape only. dbias is a separate two-pass reduction over fixed row chunks through the scratch
// memory (fp32 partial sums per chunk, then summed in chunk order).
//
// Hopper: on compute capability 9.0 with sm_90a code (or OURO_SIMT_ARCH=90 in the emulator) the
// fast path runs kernels/matmul_sm90.cu instead (warp-specialized TMA + wgmma, same layouts, same
// epilogue: kernels/matmul_epilogue.cuh; same split-K slice count, slices rounded to its 64-deep
// stages); where it cannot get its shared memory the kernels below run.
//
// Skinny M: a forward with M <= 64 rows (decoding) goes to kernels/matmul_skinny.cu under
// automatic (or when forced), before any of the above: at that M every tile here would read each
// weight once too, but from ceil(Nn / 64) blocks that each walk all of K in turn, too few to keep
// the memory busy.
//
// Fallback (any shape): 16x16 output tiles, 256 threads, one output per thread, fp32 FMA over
// 16-wide k tiles staged through shared memory; the same epilogue.
//
// GELU: the tanh approximation of src/cpu/cpu_elementwise.cpp, applied to the bf16-rounded
// pre-activation (the value saved in pre_gelu), so the fused result equals matmul-then-GELU.

namespace ouro::kernels {

namespace {

constexpr int kBK = 32;   // k depth of a pipeline stage
constexpr int kPad = 8;   // bf16 of padding per shared row (16 bytes)

using matmul_detail::Epi;
using matmul_detail::epi_store;
using matmul_detail::epi_store8;

template <int BM_, int BN_, int WARPS_M_, int WARPS_N_, int STAGES_>
struct Tile {
  static constexpr int BM = BM_, BN = BN_, WARPS_M = WARPS_M_, WARPS_N = WARPS_N_, STAGES = STAGES_;
  static constexpr int THREADS = WARPS_M * WARPS_N * 32;
  static constexpr int WTM = BM / WARPS_M, WTN = BN / WARPS_N;  // warp tile
  static constexpr int MI = WTM / 16, NI = WTN / 8;              // mma tiles per warp
  static_assert(WTM % 16 == 0 && WTN % 16 == 0, "warp tile: whole m16 tiles, pairs of n8 tiles");
  static_assert(STAGES >= 2, "pipeline");
};
using LargeTile = Tile<128, 128, 2, 4, 4>;
using SmallTile = Tile<64, 64, 2, 2, 4>;

// Shared layout of one operand's stage: K-major -> [ROWS=MN][K + pad], MN-major -> [K][MN + pad].
template <int MN, bool KMAJOR>
struct Operand {
  static constexpr int ROWS = KMAJOR ? MN : kBK;
  static constexpr int COLS = KMAJOR ? kBK : MN;  // data columns (multiple of 8)
  static constexpr int LD = COLS + kPad;          // shared row length in bf16
  static constexpr int STAGE = ROWS * LD;         // bf16 per stage
};

template <class T, bool A_K, bool B_K>
constexpr size_t gemm_smem_bytes() {
  return size_t(T::STAGES) * (Operand<T::BM, A_K>::STAGE + Operand<T::BN, B_K>::STAGE) * sizeof(bf16);
}

// Copies one operand's ROWS x COLS tile (rows r0.., columns c0.. of the global matrix with
// leading dimension ld) into shared memory; chunks outside (rmax, cmax) are zero-filled.
template <class Op, int THREADS>
__device__ __forceinline__ void load_tile(bf16* s, const bf16* g, int ld, int r0, int rmax, int c0, int cmax) {
  constexpr int CPR = Op::COLS / 8;  // 16-byte chunks per row
  constexpr int CHUNKS = Op::ROWS * CPR;
  static_assert(CHUNKS % THREADS == 0, "every thread copies the same number of chunks");
#pragma unroll
  for (int i = 0; i < CHUNKS / THREADS; i++) {
    const int chunk = int(threadIdx.x) + i * THREADS;
    const int r = chunk / CPR, c = (chunk % CPR) * 8;
    const int gr = r0 + r, gc = c0 + c;
    const bool inside = gr < rmax && gc < cmax;
    const bf16* src = inside ? g + size_t(gr) * ld + gc : g;  // src_bytes 0 reads nothing
    ptx::cp_async_16(s + r * Op::LD + c, src, inside ? 16 : 0);
  }
}

// D (M x Nn) = A (M x K) B (K x Nn), then the epilogue. A: [m][k] if A_K else [k][m];
// B: [n][k] if B_K else [k][n]. Requires the contiguous dimension of each operand (and Nn) to be a
// multiple of 8 and 16-byte aligned rows.
template <class T, bool A_K, bool B_K>
__global__ void __launch_bounds__(T::THREADS, 2)
    gemm_tc_kernel(const bf16* __restrict__ A, const bf16* __restrict__ B, int M, int Nn, int K, int k_split, Epi e) {
  using OpA = Operand<T::BM, A_K>;
  using OpB = Operand<T::BN, B_K>;
  bf16* sA = dynamic_shared<bf16>();
  bf16* sB = sA + T::STAGES * OpA::STAGE;

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int wm = warp / T::WARPS_N, wn = warp % T::WARPS_N;
  const int m0 = blockIdx.y * T::BM, n0 = blockIdx.x * T::BN;
  const int lda = A_K ? K : M, ldb = B_K ? K : Nn;
  // Split-K (blockIdx.z): this block reduces k in [k_begin, k_end); k_split is a multiple of kBK.
  const int k_begin = blockIdx.z * k_split;
  const int k_end = K - k_begin < k_split ? K : k_begin + k_split;

  auto load_stage = [&](int stage, int k0) {
    bf16* a = sA + stage * OpA::STAGE;
    bf16* b = sB + stage * OpB::STAGE;
    if constexpr (A_K) load_tile<OpA, T::THREADS>(a, A, lda, m0, M, k0, k_end);
    else load_tile<OpA, T::THREADS>(a, A, lda, k0, k_end, m0, M);
    if constexpr (B_K) load_tile<OpB, T::THREADS>(b, B, ldb, n0, Nn, k0, k_end);
    else load_tile<OpB, T::THREADS>(b, B, ldb, k0, k_end, n0, Nn);
  };

  float acc[T::MI][T::NI][4];
#pragma unroll
  for (int i = 0; i < T::MI; i++)
#pragma unroll
    for (int j = 0; j < T::NI; j++)
#pragma unroll
      for (int r = 0; r < 4; r++) acc[i][j][r] = 0.0f;

  const int KT = k_end > k_begin ? ceil_div(k_end - k_begin, kBK) : 0;
  // Prologue: STAGES-1 tiles in flight (one commit group each, empty groups past the end keep
  // the group count uniform so wait<STAGES-2> always means "tile kt has landed").
#pragma unroll
  for (int s = 0; s < T::STAGES - 1; s++) {
    if (s < KT) load_stage(s, k_begin + s * kBK);
    ptx::cp_async_commit();
  }

  // ldmatrix lane roles: lane 8i+j gives row j of 8x8 matrix i.
  const int li = lane / 8, lj = lane % 8;

  for (int kt = 0; kt < KT; kt++) {
    ptx::cp_async_wait<T::STAGES - 2>();
    __syncthreads();  // tile kt visible to all; stage (kt-1) % STAGES no longer read by anyone
    {
      const int next = kt + T::STAGES - 1;
      if (next < KT) load_stage(next % T::STAGES, k_begin + next * kBK);
      ptx::cp_async_commit();
    }
    const bf16* a = sA + (kt % T::STAGES) * OpA::STAGE;
    const bf16* b = sB + (kt % T::STAGES) * OpB::STAGE;
#pragma unroll
    for (int kk = 0; kk < kBK; kk += 16) {
      uint32_t af[T::MI][4];
      uint32_t bfr[T::NI][2];
#pragma unroll
      for (int mi = 0; mi < T::MI; mi++) {
        const int mb = wm * T::WTM + mi * 16;
        if constexpr (A_K) {
          // matrices: (rows 0-7, k 0-7), (rows 8-15, k 0-7), (rows 0-7, k 8-15), (rows 8-15, k 8-15)
          ptx::ldmatrix_x4(af[mi], a + (mb + lane % 16) * OpA::LD + kk + (lane / 16) * 8);
        } else {
          // stored [k][m]; .trans turns each 8x8 (k, m) block into the (m, k) fragment
          ptx::ldmatrix_x4_trans(af[mi], a + (kk + lj + 8 * (li / 2)) * OpA::LD + mb + 8 * (li % 2));
        }
      }
#pragma unroll
      for (int nj = 0; nj < T::NI / 2; nj++) {
        const int nb = wn * T::WTN + nj * 16;
        uint32_t r[4];
        if constexpr (B_K) {
          // matrices: (n 0-7, k 0-7), (n 0-7, k 8-15), (n 8-15, k 0-7), (n 8-15, k 8-15)
          ptx::ldmatrix_x4(r, b + (nb + lj + 8 * (li / 2)) * OpB::LD + kk + 8 * (li % 2));
        } else {
          // stored [k][n]: (k 0-7, n 0-7), (k 8-15, n 0-7), (k 0-7, n 8-15), (k 8-15, n 8-15)
          ptx::ldmatrix_x4_trans(r, b + (kk + lj + 8 * (li % 2)) * OpB::LD + nb + 8 * (li / 2));
        }
        bfr[2 * nj][0] = r[0];
        bfr[2 * nj][1] = r[1];
        bfr[2 * nj + 1][0] = r[2];
        bfr[2 * nj + 1][1] = r[3];
      }
#pragma unroll
      for (int mi = 0; mi < T::MI; mi++)
#pragma unroll
        for (int ni = 0; ni < T::NI; ni++) ptx::mma_bf16_16816(acc[mi][ni], af[mi], bfr[ni], acc[mi][ni]);
    }
  }
  ptx::cp_async_wait<0>();  // only empty groups can remain; leave nothing pending

  // Epilogue, staged through shared memory so that global memory sees whole 16-byte rows of 8
  // outputs (and dW's read-modify-write reads them the same way). Accumulator fragments:
  // c0,c1 at (g, 2t..2t+1), c2,c3 at (g+8, 2t..2t+1). Row stride BN + 8 floats (= 8 mod 32
  // banks): the float2 writes of a half-warp (g 0..3, t 0..3) hit 32 distinct banks.
  constexpr int SLD = T::BN + 8;
  static_assert(size_t(T::BM) * SLD * sizeof(float) <= gemm_smem_bytes<T, A_K, B_K>(), "staging fits");
  float* sC = reinterpret_cast<float*>(sA);
  __syncthreads();  // every warp is done with the pipeline buffers
  const int g = lane / 4, t = lane % 4;
#pragma unroll
  for (int mi = 0; mi < T::MI; mi++)
#pragma unroll
    for (int ni = 0; ni < T::NI; ni++)
#pragma unroll
      for (int h = 0; h < 2; h++) {
        const int r = wm * T::WTM + mi * 16 + g + 8 * h, c = wn * T::WTN + ni * 8 + 2 * t;
        *reinterpret_cast<float2*>(sC + r * SLD + c) = make_float2(acc[mi][ni][2 * h], acc[mi][ni][2 * h + 1]);
      }
  __syncthreads();
  constexpr int CPR = T::BN / 8;
  static_assert((T::BM * CPR) % T::THREADS == 0, "whole rounds of 8-column chunks");
#pragma unroll 4
  for (int i = threadIdx.x; i < T::BM * CPR; i += T::THREADS) {
    const int r = i / CPR, c = (i % CPR) * 8;
    const int m = m0 + r, n = n0 + c;
    if (m >= M || n >= Nn) continue;  // Nn % 8 == 0: the chunk is all inside or all outside
    const float4 lo = *reinterpret_cast<const float4*>(sC + r * SLD + c);
    const float4 hi = *reinterpret_cast<const float4*>(sC + r * SLD + c + 4);
    if (e.partial) {
      float4* p = reinterpret_cast<float4*>(e.partial + (size_t(blockIdx.z) * M + m) * Nn + n);
      p[0] = lo;
      p[1] = hi;
    } else {
      float v[8] = {lo.x, lo.y, lo.z, lo.w, hi.x, hi.y, hi.z, hi.w};
      epi_store8(e, m, n, v);
    }
  }
}

// The fallback: any shape and alignment. 16x16 outputs per block of 256 threads.
template <bool A_K, bool B_K>
__global__ void __launch_bounds__(256)
    gemm_simple_kernel(const bf16* __restrict__ A, const bf16* __restrict__ B, int M, int Nn, int K, Epi e) {
  __shared__ float sA[16][17];  // [m][k]
  __shared__ float sB[16][17];  // [k][n]
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  const int m0 = blockIdx.y * 16, n0 = blockIdx.x * 16;
  float acc = 0.0f;
  for (int k0 = 0; k0 < K; k0 += 16) {
    // Let the contiguous global index follow tx (coalesced reads).
    if constexpr (A_K) {
      const int m = m0 + ty, k = k0 + tx;
      sA[ty][tx] = (m < M && k < K) ? __bfloat162float(A[size_t(m) * K + k]) : 0.0f;
    } else {
      const int m = m0 + tx, k = k0 + ty;
      sA[tx][ty] = (m < M && k < K) ? __bfloat162float(A[size_t(k) * M + m]) : 0.0f;
    }
    if constexpr (B_K) {
      const int n = n0 + ty, k = k0 + tx;
      sB[tx][ty] = (n < Nn && k < K) ? __bfloat162float(B[size_t(n) * K + k]) : 0.0f;
    } else {
      const int n = n0 + tx, k = k0 + ty;
      sB[ty][tx] = (n < Nn && k < K) ? __bfloat162float(B[size_t(k) * Nn + n]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < 16; kk++) acc = fmaf(sA[ty][kk], sB[kk][tx], acc);
    __syncthreads();
  }
  const int m = m0 + ty, n = n0 + tx;
  if (m < M && n < Nn) epi_store(e, m, n, acc);
}

// dbias, pass 1: partial[chunk][o] = sum of dout[n][o] over the rows of the chunk (fixed order).
// Block (64 columns) x (4 row lanes); the 4 lane sums are combined in lane order.
constexpr int kBiasCols = 64, kBiasLanes = 4, kBiasMaxChunks = 64, kBiasMinRows = 128;

__host__ __device__ inline int bias_chunks(int N) {
  const int c = ceil_div(N, kBiasMinRows);
  return c < kBiasMaxChunks ? c : kBiasMaxChunks;
}

__global__ void __launch_bounds__(kBiasCols * kBiasLanes)
    dbias_partial_kernel(float* __restrict__ partial, const bf16* __restrict__ dout, int N, int OC, int rows_per_chunk) {
  __shared__ float s[kBiasLanes][kBiasCols];
  const int tx = threadIdx.x % kBiasCols, ty = threadIdx.x / kBiasCols;
  const int o = blockIdx.x * kBiasCols + tx;
  const int r0 = blockIdx.y * rows_per_chunk;
  const int r1 = r0 + rows_per_chunk < N ? r0 + rows_per_chunk : N;
  float sum = 0.0f;
  if (o < OC)
    for (int r = r0 + ty; r < r1; r += kBiasLanes) sum += __bfloat162float(dout[size_t(r) * OC + o]);
  s[ty][tx] = sum;
  __syncthreads();
  if (ty == 0 && o < OC) {
    float total = s[0][tx];
    for (int l = 1; l < kBiasLanes; l++) total += s[l][tx];
    partial[size_t(blockIdx.y) * OC + o] = total;
  }
}

// dbias, pass 2: dbias[o] += sum over chunks in chunk order (one fp32 add into the old value).
__global__ void __launch_bounds__(256)
    dbias_final_kernel(bf16* __restrict__ dbias, const float* __restrict__ partial, int OC, int chunks) {
  const int o = blockIdx.x * blockDim.x + threadIdx.x;
  if (o >= OC) return;
  float sum = 0.0f;
  for (int c = 0; c < chunks; c++) sum += partial[size_t(c) * OC + o];
  dbias[o] = __float2bfloat16_rn(__bfloat162float(dbias[o]) + sum);
}

// Split-K reduction for dW: out[i] = bf16(out[i] + sum_z partial[z][i]), z in order.
__global__ void __launch_bounds__(256)
    splitk_accumulate_kernel(bf16* __restrict__ out, const float* __restrict__ partial, size_t count, int splits) {
  const size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (i >= count) return;
  float sum = 0.0f;
  for (int z = 0; z < splits; z++) sum += partial[size_t(z) * count + i];
  out[i] = __float2bfloat16_rn(__bfloat162float(out[i]) + sum);
}

// dW (M = OC, Nn = C, K = N) has few output tiles and a long K (B*T): e.g. 768 x 768 is 36 tiles
// of 128x128 against ~264 resident blocks on an H100. Split K into S slices of >= kMinSplitK
// (fp32 partials in the scratch memory, summed in slice order by splitk_accumulate_kernel) until
// about kTargetBlocks blocks run. S depends on the shape only, so results are the same on any GPU.
constexpr int kTargetBlocks = 256, kMinSplitK = 512, kMaxSplits = 8;
struct SplitK {
  int splits, k_split;
};
SplitK dw_split(int M, int Nn, int K) {
  const long tiles = long(ceil_div(M, 128)) * ceil_div(Nn, 128);
  const long by_tiles = (kTargetBlocks + tiles - 1) / tiles;
  const int s = int(std::min({by_tiles, long(K / kMinSplitK), long(kMaxSplits)}));
  if (s <= 1) return {1, ceil_div(K, kBK) * kBK};
  const int k_split = ceil_div(ceil_div(K, int(s)), kBK) * kBK;
  return {ceil_div(K, k_split), k_split};
}

size_t bias_scratch_bytes(int N, int OC) {
  return ceil_div(size_t(bias_chunks(N)) * size_t(OC) * sizeof(float), size_t(256)) * 256;
}

bool aligned(const void* p, size_t a) { return p == nullptr || reinterpret_cast<uintptr_t>(p) % a == 0; }

// Whether the smallest tensor-core tile's shared memory fits this device.
template <bool A_K, bool B_K>
bool tc_fits() {
  return opt_in_shared_memory(gemm_tc_kernel<SmallTile, A_K, B_K>, gemm_smem_bytes<SmallTile, A_K, B_K>(),
                              "matmul 64x64 tile", "the simple matmul kernel");
}

// False (nothing launched) when the device cannot give this tile its shared memory.
template <class T, bool A_K, bool B_K>
bool launch_tc(const bf16* A, const bf16* B, int M, int Nn, int K, const Epi& e, cudaStream_t stream,
               SplitK split) {
  auto kernel = gemm_tc_kernel<T, A_K, B_K>;
  constexpr size_t smem = gemm_smem_bytes<T, A_K, B_K>();
  const std::string name = "matmul " + std::to_string(T::BM) + "x" + std::to_string(T::BN) + " tile";
  if (!opt_in_shared_memory(kernel, smem, name.c_str(), "a smaller tile or the simple kernel")) return false;
  const dim3 grid(ceil_div(Nn, T::BN), ceil_div(M, T::BM), split.splits);
  launch(kernel, grid, dim3(T::THREADS), smem, stream, A, B, M, Nn, K, split.k_split, e);
  OURO_CUDA_CHECK_LAUNCH();
  return true;
}

void accumulate_splits(bf16* out, const float* partial, size_t count, int splits, cudaStream_t stream) {
  launch(splitk_accumulate_kernel, dim3(unsigned(ceil_div(count, size_t(256)))), dim3(256), 0, stream, out, partial,
         count, splits);
  OURO_CUDA_CHECK_LAUNCH();
}

bool is_hopper(MatmulTile t) {
  return t == MatmulTile::hopper || t == MatmulTile::hopper_128x256 || t == MatmulTile::hopper_128x128;
}

// D = A B + epilogue, choosing the kernel. fast: the caller's shape/alignment check passed.
// A tile whose shared memory the device cannot give falls back to the small tile, then to the
// simple kernel (opt_in_shared_memory warns).
template <bool A_K, bool B_K>
void gemm(const bf16* A, const bf16* B, int M, int Nn, int K, const Epi& e, bool fast, MatmulTile tile,
          cudaStream_t stream, float* splitk_scratch = nullptr) {
  if (fast && tile != MatmulTile::simple && !tc_fits<A_K, B_K>()) fast = false;
  if (!fast || tile == MatmulTile::simple) {
    const dim3 grid(ceil_div(Nn, 16), ceil_div(M, 16));
    launch(gemm_simple_kernel<A_K, B_K>, grid, dim3(256), 0, stream, A, B, M, Nn, K, e);
    OURO_CUDA_CHECK_LAUNCH();
    return;
  }
  SplitK split{1, ceil_div(K, kBK) * kBK};
  if (splitk_scratch) split = dw_split(M, Nn, K);
  if (is_hopper(tile) || (tile == MatmulTile::automatic && sm90::gemm_selected())) {
    if (sm90::gemm_available()) {
      // The same slice count as the Ampere kernel (the scratch was sized for it), each slice
      // rounded up to whole 64-deep stages: never more slices than that.
      SplitK s90{1, ceil_div(K, sm90::kBK) * sm90::kBK};
      if (split.splits > 1) {
        s90.k_split = ceil_div(split.k_split, sm90::kBK) * sm90::kBK;
        s90.splits = ceil_div(K, s90.k_split);
      }
      Epi ek = e;
      if (s90.splits > 1) ek.partial = splitk_scratch;
      const sm90::Sm90Tile t = tile == MatmulTile::hopper_128x256   ? sm90::Sm90Tile::wide
                               : tile == MatmulTile::hopper_128x128 ? sm90::Sm90Tile::narrow
                                                                    : sm90::Sm90Tile::automatic;
      if (sm90::gemm(A_K, B_K, A, B, M, Nn, K, ek, t, s90.splits, s90.k_split, stream)) {
        if (s90.splits > 1) accumulate_splits(e.out, splitk_scratch, size_t(M) * Nn, s90.splits, stream);
        return;
      }
    }
    tile = MatmulTile::automatic;  // the Hopper kernel cannot run here: the Ampere one does
  }
  if (tile == MatmulTile::automatic) {
    const long large_tiles = long(ceil_div(M, LargeTile::BM)) * ceil_div(Nn, LargeTile::BN);
    tile = split.splits > 1 || large_tiles >= device_sm_count() ? MatmulTile::large : MatmulTile::small;
  }
  Epi ek = e;
  if (split.splits > 1) ek.partial = splitk_scratch;
  if (!(tile == MatmulTile::large && launch_tc<LargeTile, A_K, B_K>(A, B, M, Nn, K, ek, stream, split)))
    launch_tc<SmallTile, A_K, B_K>(A, B, M, Nn, K, ek, stream, split);  // fits: tc_fits checked
  if (split.splits > 1) accumulate_splits(e.out, splitk_scratch, size_t(M) * Nn, split.splits, stream);
}

void check_dims(const char* fn, int N, int C, int OC) {
  if (N < 1 || C < 1 || OC < 1)
    throw std::invalid_argument(std::string(fn) + ": N, C, OC must be >= 1 (got N=" + std::to_string(N) +
                                ", C=" + std::to_string(C) + ", OC=" + std::to_string(OC) + ")");
}

}  // namespace

bool matmul_hopper_available() { return sm90::gemm_available(); }

void matmul_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C, int OC,
                    cudaStream_t stream, Epilogue epilogue, bf16* pre_gelu, MatmulTile tile) {
  check_dims("matmul_forward", N, C, OC);
  if (!out || !inp || !weight) throw std::invalid_argument("matmul_forward: out, inp and weight must not be null");
  const bool gelu = epilogue == Epilogue::gelu;
  const Epi e{out, OC, bias, gelu ? pre_gelu : nullptr, gelu, false, nullptr};
  if (N <= skinny::kSkinnyMaxM &&
      (tile == MatmulTile::skinny || (tile == MatmulTile::automatic && skinny::enabled()))) {
    skinny::gemm(inp, weight, N, OC, C, e, stream);
    return;
  }
  if (tile == MatmulTile::skinny || tile == MatmulTile::tiled) tile = MatmulTile::automatic;
  const bool fast = C % 8 == 0 && OC % 8 == 0 && aligned(inp, 16) && aligned(weight, 16) && aligned(out, 16) &&
                    aligned(bias, 16) && aligned(e.pre_gelu, 16);
  gemm<true, true>(inp, weight, N, OC, C, e, fast, tile, stream);
}

void matmul_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C, int OC,
                    cudaStream_t stream, Epilogue epilogue, bf16* pre_gelu) {
  matmul_forward(out, inp, weight, bias, N, C, OC, stream, epilogue, pre_gelu, MatmulTile::automatic);
}

// Scratch: [dbias partials, 256-byte aligned][dW split-K partials (splits x OC x C fp32) when split].
size_t matmul_backward_scratch_bytes(int N, int C, int OC) {
  if (N < 1 || C < 1 || OC < 1) return 0;
  const SplitK split = dw_split(OC, C, N);
  const size_t splitk = split.splits > 1 ? size_t(split.splits) * OC * C * sizeof(float) : 0;
  return bias_scratch_bytes(N, OC) + splitk;
}

void matmul_backward(bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout, const bf16* inp, const bf16* weight,
                     int N, int C, int OC, void* scratch, cudaStream_t stream, MatmulTile tile) {
  check_dims("matmul_backward", N, C, OC);
  if (tile == MatmulTile::skinny || tile == MatmulTile::tiled) tile = MatmulTile::automatic;
  if (!dinp || !dweight || !dout || !inp || !weight)
    throw std::invalid_argument("matmul_backward: dinp, dweight, dout, inp and weight must not be null");
  if (!scratch) throw std::invalid_argument("matmul_backward: scratch (matmul_backward_scratch_bytes) must not be null");
  if (!aligned(scratch, 16)) throw std::invalid_argument("matmul_backward: scratch must be 16-byte aligned");

  if (dbias) {
    const int chunks = bias_chunks(N), rows = ceil_div(N, chunks);
    float* partial = static_cast<float*>(scratch);
    launch(dbias_partial_kernel, dim3(ceil_div(OC, kBiasCols), chunks), dim3(kBiasCols * kBiasLanes), 0, stream,
           partial, dout, N, OC, rows);
    OURO_CUDA_CHECK_LAUNCH();
    launch(dbias_final_kernel, dim3(ceil_div(OC, 256)), dim3(256), 0, stream, dbias, static_cast<const float*>(partial),
           OC, chunks);
    OURO_CUDA_CHECK_LAUNCH();
  }
  const bool shape_ok = C % 8 == 0 && OC % 8 == 0 && aligned(dout, 16) && aligned(weight, 16) && aligned(inp, 16);
  // dW first: it reads inp, which a caller might reuse as dinp.
  const Epi ew{dweight, C, nullptr, nullptr, false, true, nullptr};
  float* splitk = reinterpret_cast<float*>(static_cast<unsigned char*>(scratch) + bias_scratch_bytes(N, OC));
  gemm<false, false>(dout, inp, OC, C, N, ew, shape_ok && aligned(dweight, 16), tile, stream, splitk);
  const Epi ex{dinp, C, nullptr, nullptr, false, false, nullptr};
  gemm<true, false>(dout, weight, N, C, OC, ex, shape_ok && aligned(dinp, 16), tile, stream);
}

void matmul_backward(bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout, const bf16* inp, const bf16* weight,
                     int N, int C, int OC, void* scratch, cudaStream_t stream) {
  matmul_backward(dinp, dweight, dbias, dout, inp, weight, N, C, OC, scratch, stream, MatmulTile::automatic);
}

}  // namespace ouro::kernels
