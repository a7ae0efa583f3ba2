#include "kernels/matmul_skinny.h"

#include <atomic>
#include <cstdint>
#include <stdexcept>

#include "kernels/switches.h"

// Skinny-M forward GEMM: out (M, Nn) = epilogue(A (M, K) @ W (Nn, K)^T + bias), M <= 64 (a decode
// step: one new token per batch row). The weights dominate the traffic (Nn x K against M x K), so
// the kernel is built to stream W once at memory bandwidth rather than to reuse tiles:
//
//  - Tensor cores with the roles swapped: W is mma.m16n8k16's A operand (16 weight rows = 16
//    output columns per m16 tile), A's rows (tokens) are the B operand (8 tokens per n8 tile), so
//    M = 1 wastes at most 7 of 8 B columns instead of 15 of 16 A rows, and the accumulator
//    fragment is (output column, token).
//  - No shared memory and no ldmatrix on the operand path: each lane loads its fragments straight
//    from global memory with one 16-byte load per (row, 32-deep k step). That works because the
//    reduction order over k inside one m16n8k16 is free: lane (g = lane/4, t = lane%4) loads
//    k = 8t..8t+7 of weight rows g and g+8 and of token g, and the two mma's of a 32-deep step use
//    the "virtual" columns {2t, 2t+1, 2t+8, 2t+9} of mma j as physical k = 8t + 4j + {0,1,2,3}.
//    A and B use the same permutation, so the product is the same sum over k. A warp's loads of
//    one weight row are 64 contiguous bytes (4 lanes x 16), whole 32-byte sectors.
//  - Block: 4 warps over BR = 16 R output columns (R = 1 for M <= 16, 2 above: halves the token
//    loads per weight byte when they are many). The warps split K: warp w takes the 32 U-deep
//    k chunks w, w + 4, w + 8, ... (U = 4 / R steps of 32, all their weight loads issued before
//    the first mma: 4 KiB in flight per warp). The 4 partial (output, token) tiles meet in shared
//    memory and are added in warp order 0..3, then the shared epilogue (bias, GELU with pre_gelu,
//    kernels/matmul_epilogue.cuh) stores each output once: deterministic, the same result on
//    every run and GPU, no atomics and no scratch memory (matmul_forward has none).
//  - Grid: ceil(Nn / BR) blocks. Token tiles MT = 1, 2, 4 or 8 (M rounded up to 8, 16, 32, 64);
//    tokens past M and weight rows past Nn load zeros (no memory access), K past its end too.
//    K % 8 != 0 or unaligned operands: the same kernel with 2-byte loads, each element checked
//    against K (a row then need not start on a 16-byte boundary).
//
// Traffic per call: W once (Nn K 2 bytes), A once per block from L2 (ceil(Nn/BR) M K 2 bytes,
// small next to W while M <= BR), out once. Register budget: R MT 4 fp32 accumulators (64 at
// M = 64) and U R 2 16-byte weight fragments (32 registers) per thread.

namespace ouro::kernels::skinny {

namespace {

using matmul_detail::Epi;
using matmul_detail::epi_store;

constexpr int kWarps = 4, kThreads = 32 * kWarps, kStepK = 32;

// Eight bf16 (16 bytes) as the four 32-bit registers mma takes: two elements per register, the
// lower k in the low half.
struct alignas(16) Frag8 {
  uint32_t u[4];
};

// Elements k..k+7 of row `row` of a (rows, K) row-major matrix; zeros past its edges. vec: one
// 16-byte load (K % 8 == 0, 16-byte aligned base, so k..k+7 is all inside or all outside).
__device__ __forceinline__ Frag8 load8(const bf16* __restrict__ p, int row, int rows, int k, int K, bool vec) {
  Frag8 f{{0u, 0u, 0u, 0u}};
  if (row >= rows || k >= K) return f;
  const bf16* src = p + size_t(row) * K + k;
  if (vec) return *reinterpret_cast<const Frag8*>(src);
  const unsigned short* s16 = reinterpret_cast<const unsigned short*>(src);
#pragma unroll
  for (int i = 0; i < 8; i++)
    if (k + i < K) f.u[i / 2] |= uint32_t(s16[i]) << (16 * (i % 2));
  return f;
}

template <int MT, int R>
__global__ void __launch_bounds__(kThreads)
    skinny_gemm_kernel(const bf16* __restrict__ A, const bf16* __restrict__ W, int M, int Nn, int K, bool vec, Epi e) {
  constexpr int BR = 16 * R;           // output columns (weight rows) per block
  constexpr int U = 4 / R;             // 32-deep k steps per chunk, loads all issued first
  constexpr int CHUNK = kStepK * U;    // k per warp per chunk
  constexpr int TOK = 8 * MT;          // token slots
  constexpr int LD = BR + 4;           // shared row: (2t * LD + g) hits 32 distinct banks
  __shared__ float red[kWarps][TOK][LD];

  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
  const int g = lane / 4, t = lane % 4;
  const int n0 = blockIdx.x * BR;

  float acc[R][MT][4];
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int i = 0; i < 4; i++) acc[r][mt][i] = 0.0f;

  for (int kc = warp * CHUNK; kc < K; kc += kWarps * CHUNK) {
    // Every weight load of the chunk first: U R 2 independent 16-byte loads in flight per lane.
    Frag8 w[U][R][2];
#pragma unroll
    for (int u = 0; u < U; u++)
#pragma unroll
      for (int r = 0; r < R; r++)
#pragma unroll
        for (int h = 0; h < 2; h++) w[u][r][h] = load8(W, n0 + 16 * r + g + 8 * h, Nn, kc + kStepK * u + 8 * t, K, vec);
#pragma unroll
    for (int u = 0; u < U; u++) {
      const int k = kc + kStepK * u + 8 * t;
#pragma unroll
      for (int mt = 0; mt < MT; mt++) {
        const Frag8 x = load8(A, 8 * mt + g, M, k, K, vec);
#pragma unroll
        for (int j = 0; j < 2; j++) {
          // B: b0,b1 = virtual k 2t, 2t+1 = physical 8t+4j+{0,1}; b2,b3 = 8t+4j+{2,3}.
          const uint32_t b[2] = {x.u[2 * j], x.u[2 * j + 1]};
#pragma unroll
          for (int r = 0; r < R; r++) {
            // A: (row g, k pair 0), (row g+8, pair 0), (row g, pair 1), (row g+8, pair 1).
            const uint32_t a[4] = {w[u][r][0].u[2 * j], w[u][r][1].u[2 * j], w[u][r][0].u[2 * j + 1],
                                   w[u][r][1].u[2 * j + 1]};
            ptx::mma_bf16_16816(acc[r][mt], a, b, acc[r][mt]);
          }
        }
      }
    }
  }

  // c0, c1 at (output g, tokens 2t, 2t+1), c2, c3 at (output g+8, same tokens).
#pragma unroll
  for (int r = 0; r < R; r++)
#pragma unroll
    for (int mt = 0; mt < MT; mt++)
#pragma unroll
      for (int i = 0; i < 4; i++) red[warp][8 * mt + 2 * t + (i & 1)][16 * r + g + 8 * (i >> 1)] = acc[r][mt][i];
  __syncthreads();
  // Consecutive threads take consecutive output columns of one token: contiguous stores.
  for (int i = threadIdx.x; i < TOK * BR; i += kThreads) {
    const int tok = i / BR, c = i % BR, n = n0 + c;
    if (tok >= M || n >= Nn) continue;
    float v = red[0][tok][c];
#pragma unroll
    for (int w = 1; w < kWarps; w++) v += red[w][tok][c];
    epi_store(e, tok, n, v);
  }
}

template <int MT, int R>
void launch_mt(const bf16* A, const bf16* W, int M, int Nn, int K, bool vec, const Epi& e, cudaStream_t stream) {
  launch(skinny_gemm_kernel<MT, R>, dim3(ceil_div(Nn, 16 * R)), dim3(kThreads), 0, stream, A, W, M, Nn, K, vec, e);
  OURO_CUDA_CHECK_LAUNCH();
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

}  // namespace

namespace {
constinit EnvSwitch skinny_off{"OURO_MATMUL_SKINNY", "0"};
std::atomic<uint64_t> gemm_calls{0};
}  // namespace

bool enabled() { return !skinny_off.on(); }

uint64_t calls() { return gemm_calls.load(std::memory_order_relaxed); }

void gemm(const bf16* A, const bf16* W, int M, int Nn, int K, const Epi& e, cudaStream_t stream) {
  if (M < 1 || M > kSkinnyMaxM || Nn < 1 || K < 1 || e.partial)
    throw std::invalid_argument("skinny matmul: needs 1 <= M <= 64, Nn, K >= 1 and no split-K partials (got M=" +
                                std::to_string(M) + ", Nn=" + std::to_string(Nn) + ", K=" + std::to_string(K) + ")");
  const bool vec = K % 8 == 0 && aligned16(A) && aligned16(W);
  gemm_calls.fetch_add(1, std::memory_order_relaxed);
  if (M <= 8) launch_mt<1, 1>(A, W, M, Nn, K, vec, e, stream);
  else if (M <= 16) launch_mt<2, 1>(A, W, M, Nn, K, vec, e, stream);
  else if (M <= 32) launch_mt<4, 2>(A, W, M, Nn, K, vec, e, stream);
  else launch_mt<8, 2>(A, W, M, Nn, K, vec, e, stream);
}

}  // namespace ouro::kernels::skinny
