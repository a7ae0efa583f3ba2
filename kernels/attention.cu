#include "kernels/attention.h"
#include "kernels/attention_sm90.h"
// Causal flash attention (FlashAttention-2 style) on bf16 tensor cores, plus KV-cache decoding.
//
// Layout: qkv (B, T, 3C) row-major, q | k | v each C = NH * hd wide, head h at columns
// [h*hd, (h+1)*hd) of each part; out (B, T, C); lse (B, NH, T) fp32 = logsumexp of the query
// row's scaled scores (scale 1/sqrt(hd)), natural log. hd in {32, 64, 128} is a template
// parameter so every fragment array has a compile-time size and lives in registers.
//
// Forward: one block of 4 warps per (64 MI-query tile, head, batch). Each warp owns 16 MI query
// rows (MI m16 tiles), their Q fragments (A operands of m16n8k16) stay in registers for the whole
// kernel. MI = 2 (hd 32 and 64: 128-query blocks, 32 rows per warp): every K or V fragment a
// warp loads with ldmatrix feeds two mma's (one per m16 tile) instead of one, halving the
// shared-memory traffic per MMA. hd 128 keeps MI = 1 (64-query blocks): its 32-row version would
// need ~128 more registers per thread (O alone is 2 x 64 fp32) and 104 KB of shared memory (Q 128
// rows + 2 stages of K and V), more than the 99 KB of sm_86 / sm_89. K and V tiles
// of 64 keys stream through shared memory with cp.async, double buffered: tile j+1 is in flight
// while tile j is used. S = Q K^T and O += P V run on mma.sync; the fp32 S accumulators are
// exactly the A fragment of the P V product (C fragment rows g / g+8, cols 2t, 2t+1 of two
// adjacent n-tiles = A fragment of one 16-wide k-step), so P never touches shared memory.
// Softmax is online in fp32 with exp2 of log2e-prescaled scores. Causal: the query tile qt only
// visits key tiles 0..qt, and only the diagonal tile needs the mask (keys past T only occur in
// the last tile, which is the diagonal of the last query tile). With MI = 2 a query tile spans two
// key tiles, so its last two key tiles are diagonal ones, the last of which may lie wholly past
// the causal limit of some warps (its 16-key groups above a warp's rows are skipped) or past T
// (not visited). Blocks start with the heaviest (last) query tiles so the tail of the grid is short.
//
// Backward (deterministic, no atomics): (1) D = rowsum(dO * O) per (row, head), fp32 in the
// scratch (attention_backward_rowdot, also the first step of the Hopper backward); (2) the dK,dV
// kernel: one block per (64 MI-key tile, head, batch), each warp owning 16 MI keys (MI m16 tiles),
// loops over the query rows at or after its keys in steps of BQ rows (Q, dO, lse, D double
// buffered by cp.async) and accumulates dV += P^T dO and dK += dS^T Q in registers (P recomputed
// from lse); (3) the dQ kernel: one block per (64 MI-query tile, head, batch), each warp owning
// 16 MI query rows, loops over key tiles of BK rows (K, V double buffered) and accumulates
// dQ += dS K. The transposed products (P^T, dS^T) are computed directly as K Q^T and V dO^T so
// they too come out as C fragments = A fragments. Operands shared by the four warps are B
// fragments read with ldmatrix (.trans where the product needs the other orientation); with
// MI = 2 every such fragment feeds two mma's (one per m16 tile), halving the ldmatrix traffic
// per MMA as in the forward. Tiles (BwdTiles; smem in bytes; hd 64's K, V in registers spill):
//   hd   dK,dV: keys/block MI BQ  A in regs  smem     dQ: rows/block MI BK  A in regs  smem
//   32          128        2  32  K, V       31232        128        2  32  Q, dO      30720
//   64          128        2  32  re-read    55808        128        2  32  Q, dO      55296
//   128          64        1  32  re-read    70144         64        1  32  re-read    69632
// hd 128 keeps 16 rows per warp: its dK and dV alone would be 2 x 128 fp32 per lane with MI = 2.
// Its dQ kernel streams 32-key tiles (64 before: 102 KB of shared memory), so every backward
// kernel fits the 99 KB per block of sm_86 / sm_89 (and 2 blocks per SM on sm_80's 164 KB).
// Each output element is written once, by one thread, with a fixed accumulation order (16-row
// k-steps in increasing order), so results are bitwise reproducible (dqkv must not alias qkv,
// dout or out: the dK,dV kernel writes the k, v columns other blocks still read). Scratch: D
// only, B*NH*T floats. On tiles that straddle the diagonal, 16-wide sub-tiles entirely above it
// are skipped per m16 tile (and their B fragments not loaded when every m16 tile skips them).
//
// Shared-memory rows are padded to hd + 8 elements (16 bytes), so the 8 row addresses of one
// ldmatrix phase fall in different bank groups (conflict free) and every row stays 16-byte
// aligned for cp.async.
//
// Decoding (attention_kv): a copy kernel appends the new k, v to the caches, then a warp per
// (token, head) walks the cache positions with an fp32 online softmax (lane owns hd/32 dims).
// Two launches because a token attends to the k, v of the new tokens before it.
#include <algorithm>
#include <cmath>
#include <initializer_list>

#include "kernels/shared_memory.h"
#include <stdexcept>
#include <string>

namespace ouro::kernels {

namespace {

constexpr int kThreads = 128;  // 4 warps
constexpr int kTile = 64;      // query rows per forward / dQ block, keys per dK,dV block
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

__device__ __forceinline__ uint32_t pack_bf16x2(float lo, float hi) {
  const uint32_t l = __bfloat16_as_ushort(__float2bfloat16_rn(lo));
  const uint32_t h = __bfloat16_as_ushort(__float2bfloat16_rn(hi));
  return l | (h << 16);
}

// cp.async of a ROWS x HD tile (rows row0.. of a matrix with row stride `stride` elements) into
// shared memory with row stride HD + 8. Rows >= T are zero-filled (src_bytes 0, source clamped
// to row 0 so the address stays valid).
template <int HD, int ROWS>
__device__ __forceinline__ void load_tile(bf16* smem, const bf16* g, size_t stride, int row0, int T) {
  constexpr int kChunks = HD / 8;  // 16-byte chunks per row
  constexpr int LD = HD + 8;
#pragma unroll
  for (int c = threadIdx.x; c < ROWS * kChunks; c += kThreads) {
    const int r = c / kChunks, col = (c % kChunks) * 8;
    const int row = row0 + r;
    const bool ok = row < T;
    ptx::cp_async_16(smem + r * LD + col, g + size_t(ok ? row : 0) * stride + col, ok ? 16 : 0);
  }
}

// A fragment (16 rows x 16 cols at col k0) of a row-major shared tile starting at row `row0`.
template <int LD>
__device__ __forceinline__ void ldsm_a(uint32_t (&a)[4], const bf16* s, int row0, int k0) {
  const int lane = threadIdx.x % 32;
  ptx::ldmatrix_x4(a, s + (row0 + (lane & 15)) * LD + k0 + (lane >> 4) * 8);
}
// B fragments of two n-tiles (rows n0..n0+15 of the tile are the n index, cols k0..k0+15 the k
// index): B = tile^T. Registers {0,1} for n-tile n0, {2,3} for n0 + 8.
template <int LD>
__device__ __forceinline__ void ldsm_bt(uint32_t (&b)[4], const bf16* s, int n0, int k0) {
  const int lane = threadIdx.x % 32;
  ptx::ldmatrix_x4(b, s + (n0 + (lane >> 4) * 8 + (lane & 7)) * LD + k0 + ((lane >> 3) & 1) * 8);
}
// B fragments of two n-tiles where the tile rows are the k index (k0..k0+15) and the columns
// the n index (n0..n0+15): B = tile itself, read with .trans. {0,1} n-tile n0, {2,3} n0 + 8.
template <int LD>
__device__ __forceinline__ void ldsm_b(uint32_t (&b)[4], const bf16* s, int k0, int n0) {
  const int lane = threadIdx.x % 32;
  ptx::ldmatrix_x4_trans(b, s + (k0 + ((lane >> 3) & 1) * 8 + (lane & 7)) * LD + n0 + (lane >> 4) * 8);
}

__device__ __forceinline__ void mma(float (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
  const uint32_t b[2] = {b0, b1};
  ptx::mma_bf16_16816(d, a, b, d);
}

// C fragments of n-tiles 2k, 2k+1 -> A fragment of k-step k (rounded to bf16).
template <int N>
__device__ __forceinline__ void c_to_a(uint32_t (&a)[4], const float (&c)[N][4], int k) {
  a[0] = pack_bf16x2(c[2 * k][0], c[2 * k][1]);
  a[1] = pack_bf16x2(c[2 * k][2], c[2 * k][3]);
  a[2] = pack_bf16x2(c[2 * k + 1][0], c[2 * k + 1][1]);
  a[3] = pack_bf16x2(c[2 * k + 1][2], c[2 * k + 1][3]);
}

// ------------------------------------------------------------------------------------------
// Forward
template <int HD, int MI>
constexpr size_t forward_smem_bytes() {
  return (size_t(kTile) * MI + 4 * kTile) * (HD + 8) * 2;  // Q (64 MI rows) + 2 stages of K and of V
}
// Query rows per warp / 16 of the forward for a head dim (see the header comment).
template <int HD>
constexpr int forward_mi() { return HD <= 64 ? 2 : 1; }

template <int HD, int MI>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(bf16* out, float* lse,
                                                                     const bf16* qkv, int T, int NH) {
  constexpr int LD = HD + 8;
  constexpr int kTileElems = kTile * LD;
  constexpr int kRows = 16 * MI;  // query rows per warp
  constexpr int kQTile = 4 * kRows;
  const int C = NH * HD;
  const size_t C3 = size_t(3) * C;
  const int qt = gridDim.x - 1 - blockIdx.x;  // heaviest tiles first
  const int h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
  const float sl2 = kLog2e / sqrtf(float(HD));

  bf16* sQ = dynamic_shared<bf16>();
  bf16* sK = sQ + MI * kTileElems;  // 2 stages
  bf16* sV = sK + 2 * kTileElems;   // 2 stages
  const bf16* qbase = qkv + size_t(b) * T * C3 + h * HD;
  const int q0 = qt * kQTile;

  load_tile<HD, kQTile>(sQ, qbase, C3, q0, T);
  load_tile<HD, kTile>(sK, qbase + C, C3, 0, T);
  load_tile<HD, kTile>(sV, qbase + 2 * C, C3, 0, T);
  ptx::cp_async_commit();

  uint32_t qf[MI][HD / 16][4];
  float o[MI][HD / 8][4];
#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int i = 0; i < HD / 8; i++) o[mi][i][0] = o[mi][i][1] = o[mi][i][2] = o[mi][i][3] = 0.0f;
  float m[MI][2], l[MI][2];
#pragma unroll
  for (int mi = 0; mi < MI; mi++) m[mi][0] = m[mi][1] = -INFINITY, l[mi][0] = l[mi][1] = 0.0f;
  const int wrow0 = q0 + warp * kRows;  // the warp's first row; m16 tile mi: rows wrow0 + 16 mi + (g, g + 8)

  // Key tiles 0 .. the one holding the block's last row (or T - 1).
  const int nkv = ceil_div(q0 + kQTile < T ? q0 + kQTile : T, kTile);
  for (int j = 0; j < nkv; j++) {
    const int st = j & 1;
    if (j + 1 < nkv) {
      load_tile<HD, kTile>(sK + (st ^ 1) * kTileElems, qbase + C, C3, (j + 1) * kTile, T);
      load_tile<HD, kTile>(sV + (st ^ 1) * kTileElems, qbase + 2 * C, C3, (j + 1) * kTile, T);
      ptx::cp_async_commit();
      ptx::cp_async_wait<1>();
    } else {
      ptx::cp_async_wait<0>();
    }
    __syncthreads();
    if (j == 0) {
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int kk = 0; kk < HD / 16; kk++) ldsm_a<LD>(qf[mi][kk], sQ, warp * kRows + mi * 16, kk * 16);
    }
    const bf16* sKs = sK + st * kTileElems;
    const bf16* sVs = sV + st * kTileElems;
    // A key tile reaching past the block's first row needs the causal mask. In it, the 16 keys
    // of pair np are all above m16 tile mi's rows when their first key exceeds its last row: that
    // S stays 0 (the mask makes P 0) and its mma work is skipped. When the warp's last m16 tile
    // (its highest rows) skips a pair, every tile does: its K / V fragments are not even loaded.
    const bool diag = (j + 1) * kTile - 1 > q0;
    auto above = [&](int mi, int np) { return diag && j * kTile + 16 * np > wrow0 + 16 * mi + 15; };

    // S = Q K^T (16 MI x 64 per warp)
    float s[MI][kTile / 8][4];
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int i = 0; i < kTile / 8; i++) s[mi][i][0] = s[mi][i][1] = s[mi][i][2] = s[mi][i][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
#pragma unroll
      for (int np = 0; np < kTile / 16; np++) {
        if (above(MI - 1, np)) continue;
        uint32_t kf[4];
        ldsm_bt<LD>(kf, sKs, np * 16, kk * 16);
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          if (above(mi, np)) continue;
          mma(s[mi][2 * np], qf[mi][kk], kf[0], kf[1]);
          mma(s[mi][2 * np + 1], qf[mi][kk], kf[2], kf[3]);
        }
      }
    }
    if (diag) {  // key > query is masked (this also covers keys >= T)
#pragma unroll
      for (int mi = 0; mi < MI; mi++)
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++)
#pragma unroll
          for (int i = 0; i < 4; i++) {
            const int key = j * kTile + nt * 8 + 2 * t4 + (i & 1);
            if (key > wrow0 + 16 * mi + g + 8 * (i >> 1)) s[mi][nt][i] = -INFINITY;
          }
    }
    // online softmax, rows r = 0 (g) and 1 (g + 8) of each m16 tile; a row's values live in the
    // 4 lanes of a quad. Key 0 is in every row's causal range, so no row is ever all -inf.
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int r = 0; r < 2; r++) {
        float mx = m[mi][r];
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++) mx = fmaxf(mx, fmaxf(s[mi][nt][2 * r], s[mi][nt][2 * r + 1]));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
        const float mscaled = mx == -INFINITY ? 0.0f : mx * sl2;
        const float alpha = exp2f(m[mi][r] * sl2 - mscaled);  // 0 on the first tile (m = -inf)
        m[mi][r] = mx;
        float sum = 0.0f;
#pragma unroll
        for (int nt = 0; nt < kTile / 8; nt++) {
          s[mi][nt][2 * r] = exp2f(fmaf(s[mi][nt][2 * r], sl2, -mscaled));
          s[mi][nt][2 * r + 1] = exp2f(fmaf(s[mi][nt][2 * r + 1], sl2, -mscaled));
          sum += s[mi][nt][2 * r] + s[mi][nt][2 * r + 1];
        }
        l[mi][r] = l[mi][r] * alpha + sum;  // per-lane partial sum; the quad is reduced at the end
#pragma unroll
        for (int dt = 0; dt < HD / 8; dt++) {
          o[mi][dt][2 * r] *= alpha;
          o[mi][dt][2 * r + 1] *= alpha;
        }
      }
    // O += P V
#pragma unroll
    for (int ks = 0; ks < kTile / 16; ks++) {
      if (above(MI - 1, ks)) continue;
      uint32_t pa[MI][4];
#pragma unroll
      for (int mi = 0; mi < MI; mi++) c_to_a(pa[mi], s[mi], ks);
#pragma unroll
      for (int dp = 0; dp < HD / 16; dp++) {
        uint32_t vf[4];
        ldsm_b<LD>(vf, sVs, ks * 16, dp * 16);
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          if (above(mi, ks)) continue;
          mma(o[mi][2 * dp], pa[mi], vf[0], vf[1]);
          mma(o[mi][2 * dp + 1], pa[mi], vf[2], vf[3]);
        }
      }
    }
    __syncthreads();  // the next iteration's cp.async overwrites the other stage
  }

#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int r = 0; r < 2; r++) {
      float sum = l[mi][r];
      sum += __shfl_xor_sync(0xffffffffu, sum, 1);
      sum += __shfl_xor_sync(0xffffffffu, sum, 2);
      const int row = wrow0 + 16 * mi + g + 8 * r;
      if (row < T) {
        const float inv = 1.0f / sum;
        bf16* orow = out + (size_t(b) * T + row) * C + h * HD + 2 * t4;
#pragma unroll
        for (int dt = 0; dt < HD / 8; dt++)
          *reinterpret_cast<uint32_t*>(orow + dt * 8) =
              pack_bf16x2(o[mi][dt][2 * r] * inv, o[mi][dt][2 * r + 1] * inv);
        if (t4 == 0) lse[(size_t(b) * NH + h) * T + row] = (m[mi][r] * sl2 + log2f(sum)) * kLn2;
      }
    }
}

// ------------------------------------------------------------------------------------------
// Backward
//
// D[b, h, t] = sum_d dO[b, t, h, d] * O[b, t, h, d]: a warp per (row, head).
template <int HD>
__global__ void __launch_bounds__(kThreads) attention_backward_d_kernel(float* D, const bf16* dout, const bf16* out,
                                                                        int B, int T, int NH) {
  const int item = blockIdx.x * (kThreads / 32) + threadIdx.x / 32;  // (b * T + t) * NH + h
  if (item >= B * T * NH) return;  // whole warps leave together
  const int lane = threadIdx.x % 32;
  const int h = item % NH, bt = item / NH, b = bt / T, t = bt % T;
  const size_t off = size_t(bt) * NH * HD + h * HD;
  float acc = 0.0f;
#pragma unroll
  for (int e = 0; e < HD / 32; e++) {
    const int d = lane + 32 * e;
    acc += __bfloat162float(dout[off + d]) * __bfloat162float(out[off + d]);
  }
  acc = warp_sum(acc);
  if (lane == 0) D[(size_t(b) * NH + h) * T + t] = acc;
}

template <int HD>
void launch_backward_rowdot(float* D, const bf16* dout, const bf16* out, int B, int T, int NH, cudaStream_t stream) {
  const int items = B * T * NH;
  launch(attention_backward_d_kernel<HD>, dim3(ceil_div(items, kThreads / 32)), dim3(kThreads), 0, stream, D, dout,
         out, B, T, NH);
  OURO_CUDA_CHECK_LAUNCH();
}

// Tiles of the dK, dV and dQ kernels per head dim (see the header comment). MI: m16 tiles per
// warp, so a block of 4 warps owns 64 MI rows (keys in dK,dV; queries in dQ); BQ / BK: query rows
// / key rows per pipeline step; REGS: the warp's own A operands (K, V in dK,dV; Q, dO in dQ) stay
// in registers instead of being re-read from shared memory at every step.
template <int HD>
struct BwdTiles {
  static constexpr int kDkvMI = HD <= 64 ? 2 : 1;
  static constexpr int kDkvBQ = 32;
  static constexpr bool kDkvRegs = HD <= 32;
  static constexpr int kDqMI = HD <= 64 ? 2 : 1;
  static constexpr int kDqBK = 32;
  static constexpr bool kDqRegs = HD <= 64;
};

template <int HD, int MI, int BQ>
constexpr size_t dkv_smem_bytes() {
  // K, V (64 MI rows) + 2 stages of Q and dO (BQ rows) + 2 stages of lse, D
  return (size_t(2) * kTile * MI + 4 * BQ) * (HD + 8) * 2 + 4 * BQ * sizeof(float);
}

template <int HD, int MI, int BQ, bool REGS>
__global__ void __launch_bounds__(kThreads) attention_backward_dkv_kernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                                                                          const float* lse, const float* Dg, int T, int NH) {
  constexpr int LD = HD + 8;
  constexpr int kRows = 16 * MI;     // keys per warp
  constexpr int kKTile = 4 * kRows;  // keys per block
  const int C = NH * HD;
  const size_t C3 = size_t(3) * C;
  const int kt = gridDim.x - 1 - blockIdx.x;  // the first key tiles see the most queries
  const int h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
  const float scale = 1.0f / sqrtf(float(HD));
  const float sl2 = kLog2e * scale;

  bf16* sK = dynamic_shared<bf16>();
  bf16* sV = sK + kKTile * LD;
  bf16* sQ = sV + kKTile * LD;    // 2 stages of BQ rows
  bf16* sdO = sQ + 2 * BQ * LD;   // 2 stages
  float* sL = reinterpret_cast<float*>(sdO + 2 * BQ * LD);  // 2 stages: lse * log2e
  float* sD = sL + 2 * BQ;                                  // 2 stages

  const bf16* qbase = qkv + size_t(b) * T * C3 + h * HD;
  const bf16* dobase = dout + size_t(b) * T * C + h * HD;
  const float* lrow = lse + (size_t(b) * NH + h) * T;
  const float* drow = Dg + (size_t(b) * NH + h) * T;
  const int k0 = kt * kKTile;
  const int i0 = k0 / BQ, nq = ceil_div(T, BQ);

  auto load_q = [&](int i, int st) {
    load_tile<HD, BQ>(sQ + st * BQ * LD, qbase, C3, i * BQ, T);
    load_tile<HD, BQ>(sdO + st * BQ * LD, dobase, C, i * BQ, T);
    for (int r = threadIdx.x; r < BQ; r += kThreads) {
      const int row = i * BQ + r;
      sL[st * BQ + r] = row < T ? lrow[row] * kLog2e : 0.0f;
      sD[st * BQ + r] = row < T ? drow[row] : 0.0f;
    }
  };
  load_tile<HD, kKTile>(sK, qbase + C, C3, k0, T);
  load_tile<HD, kKTile>(sV, qbase + 2 * C, C3, k0, T);
  load_q(i0, 0);
  ptx::cp_async_commit();

  uint32_t kreg[REGS ? MI : 1][REGS ? HD / 16 : 1][4], vreg[REGS ? MI : 1][REGS ? HD / 16 : 1][4];
  float dk[MI][HD / 8][4], dv[MI][HD / 8][4];
#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int i = 0; i < HD / 8; i++)
#pragma unroll
      for (int e = 0; e < 4; e++) dk[mi][i][e] = dv[mi][i][e] = 0.0f;
  const int wkey0 = k0 + warp * kRows;  // the warp's first key; m16 tile mi: keys wkey0 + 16 mi + (g, g + 8)

  for (int i = i0; i < nq; i++) {
    const int st = (i - i0) & 1;
    if (i + 1 < nq) {
      load_q(i + 1, st ^ 1);
      ptx::cp_async_commit();
      ptx::cp_async_wait<1>();
    } else {
      ptx::cp_async_wait<0>();
    }
    __syncthreads();
    const bf16* sQs = sQ + st * BQ * LD;
    const bf16* sdOs = sdO + st * BQ * LD;
    const float* sLs = sL + st * BQ;
    const float* sDs = sD + st * BQ;
    const int q0 = i * BQ;
    if (REGS && i == i0) {
#pragma unroll
      for (int mi = 0; mi < (REGS ? MI : 0); mi++)
#pragma unroll
        for (int kk = 0; kk < (REGS ? HD / 16 : 0); kk++) {
          ldsm_a<LD>(kreg[mi][kk], sK, warp * kRows + 16 * mi, kk * 16);
          ldsm_a<LD>(vreg[mi][kk], sV, warp * kRows + 16 * mi, kk * 16);
        }
    }
    // Query pair np (queries q0 + 16 np .. + 15) lies wholly before m16 tile mi's keys: P = 0
    // there, its mma's are skipped; when tile 0 (the warp's lowest keys) skips a pair, every tile
    // does, and its Q / dO fragments are not even loaded.
    auto dead = [&](int mi, int np) { return q0 + 16 * np + 15 < wkey0 + 16 * mi; };

    // S^T = K Q^T (16 MI keys x BQ queries per warp), then P^T
    float p[MI][BQ / 8][4];
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int n = 0; n < BQ / 8; n++) p[mi][n][0] = p[mi][n][1] = p[mi][n][2] = p[mi][n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
      uint32_t ka[MI][4];
#pragma unroll
      for (int mi = 0; mi < MI; mi++) {
        if constexpr (REGS) {
#pragma unroll
          for (int e = 0; e < 4; e++) ka[mi][e] = kreg[mi][kk][e];
        } else {
          ldsm_a<LD>(ka[mi], sK, warp * kRows + 16 * mi, kk * 16);
        }
      }
#pragma unroll
      for (int np = 0; np < BQ / 16; np++) {
        if (dead(0, np)) continue;
        uint32_t qf[4];
        ldsm_bt<LD>(qf, sQs, np * 16, kk * 16);
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          if (dead(mi, np)) continue;
          mma(p[mi][2 * np], ka[mi], qf[0], qf[1]);
          mma(p[mi][2 * np + 1], ka[mi], qf[2], qf[3]);
        }
      }
    }
    const bool need_mask = q0 < k0 + kKTile || q0 + BQ > T;
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int nt = 0; nt < BQ / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int qc = nt * 8 + 2 * t4 + (e & 1);
          const int query = q0 + qc, key = wkey0 + 16 * mi + g + 8 * (e >> 1);
          float v = exp2f(fmaf(p[mi][nt][e], sl2, -sLs[qc]));
          if (need_mask && (key > query || query >= T)) v = 0.0f;
          p[mi][nt][e] = v;
        }
    // dV += P^T dO: each dO fragment feeds the MI m16 tiles
#pragma unroll
    for (int ks = 0; ks < BQ / 16; ks++) {
      if (dead(0, ks)) continue;
      uint32_t pa[MI][4];
#pragma unroll
      for (int mi = 0; mi < MI; mi++) c_to_a(pa[mi], p[mi], ks);
#pragma unroll
      for (int dp = 0; dp < HD / 16; dp++) {
        uint32_t of[4];
        ldsm_b<LD>(of, sdOs, ks * 16, dp * 16);
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          if (dead(mi, ks)) continue;
          mma(dv[mi][2 * dp], pa[mi], of[0], of[1]);
          mma(dv[mi][2 * dp + 1], pa[mi], of[2], of[3]);
        }
      }
    }
    // dP^T = V dO^T
    float ds[MI][BQ / 8][4];
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int n = 0; n < BQ / 8; n++) ds[mi][n][0] = ds[mi][n][1] = ds[mi][n][2] = ds[mi][n][3] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
      uint32_t va[MI][4];
#pragma unroll
      for (int mi = 0; mi < MI; mi++) {
        if constexpr (REGS) {
#pragma unroll
          for (int e = 0; e < 4; e++) va[mi][e] = vreg[mi][kk][e];
        } else {
          ldsm_a<LD>(va[mi], sV, warp * kRows + 16 * mi, kk * 16);
        }
      }
#pragma unroll
      for (int np = 0; np < BQ / 16; np++) {
        if (dead(0, np)) continue;
        uint32_t of[4];
        ldsm_bt<LD>(of, sdOs, np * 16, kk * 16);
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          if (dead(mi, np)) continue;
          mma(ds[mi][2 * np], va[mi], of[0], of[1]);
          mma(ds[mi][2 * np + 1], va[mi], of[2], of[3]);
        }
      }
    }
    // dS^T = P^T (dP^T - D)
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int nt = 0; nt < BQ / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++)
          ds[mi][nt][e] = p[mi][nt][e] * (ds[mi][nt][e] - sDs[nt * 8 + 2 * t4 + (e & 1)]);
    // dK += dS^T Q
#pragma unroll
    for (int ks = 0; ks < BQ / 16; ks++) {
      if (dead(0, ks)) continue;
      uint32_t da[MI][4];
#pragma unroll
      for (int mi = 0; mi < MI; mi++) c_to_a(da[mi], ds[mi], ks);
#pragma unroll
      for (int dp = 0; dp < HD / 16; dp++) {
        uint32_t qf[4];
        ldsm_b<LD>(qf, sQs, ks * 16, dp * 16);
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          if (dead(mi, ks)) continue;
          mma(dk[mi][2 * dp], da[mi], qf[0], qf[1]);
          mma(dk[mi][2 * dp + 1], da[mi], qf[2], qf[3]);
        }
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int r = 0; r < 2; r++) {
      const int key = wkey0 + 16 * mi + g + 8 * r;
      if (key < T) {
        bf16* row = dqkv + (size_t(b) * T + key) * C3 + h * HD + 2 * t4;
#pragma unroll
        for (int dt = 0; dt < HD / 8; dt++) {
          *reinterpret_cast<uint32_t*>(row + C + dt * 8) =
              pack_bf16x2(dk[mi][dt][2 * r] * scale, dk[mi][dt][2 * r + 1] * scale);
          *reinterpret_cast<uint32_t*>(row + 2 * C + dt * 8) = pack_bf16x2(dv[mi][dt][2 * r], dv[mi][dt][2 * r + 1]);
        }
      }
    }
}

template <int HD, int MI, int BK>
constexpr size_t dq_smem_bytes() {
  return (size_t(2) * kTile * MI + 4 * BK) * (HD + 8) * 2;  // Q, dO (64 MI rows) + 2 stages of K and V (BK rows)
}

template <int HD, int MI, int BK, bool REGS>
__global__ void __launch_bounds__(kThreads) attention_backward_dq_kernel(bf16* dqkv, const bf16* dout, const bf16* qkv,
                                                                         const float* lse, const float* Dg, int T, int NH) {
  constexpr int LD = HD + 8;
  constexpr int kRows = 16 * MI;     // query rows per warp
  constexpr int kQTile = 4 * kRows;  // query rows per block
  constexpr int kKVElems = BK * LD;  // one stage of K or V
  const int C = NH * HD;
  const size_t C3 = size_t(3) * C;
  const int qt = gridDim.x - 1 - blockIdx.x;  // heaviest tiles first
  const int h = blockIdx.y, b = blockIdx.z;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane >> 2, t4 = lane & 3;
  const float scale = 1.0f / sqrtf(float(HD));
  const float sl2 = kLog2e * scale;

  bf16* sQ = dynamic_shared<bf16>();
  bf16* sdO = sQ + kQTile * LD;
  bf16* sK = sdO + kQTile * LD;  // 2 stages
  bf16* sV = sK + 2 * kKVElems;  // 2 stages
  const bf16* qbase = qkv + size_t(b) * T * C3 + h * HD;
  const int q0 = qt * kQTile;

  load_tile<HD, kQTile>(sQ, qbase, C3, q0, T);
  load_tile<HD, kQTile>(sdO, dout + size_t(b) * T * C + h * HD, C, q0, T);
  load_tile<HD, BK>(sK, qbase + C, C3, 0, T);
  load_tile<HD, BK>(sV, qbase + 2 * C, C3, 0, T);
  ptx::cp_async_commit();

  const int wrow0 = q0 + warp * kRows;  // the warp's first row; m16 tile mi: rows wrow0 + 16 mi + (g, g + 8)
  float L[MI][2], Dr[MI][2];
#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int r = 0; r < 2; r++) {
      const int row = wrow0 + 16 * mi + g + 8 * r;
      const size_t idx = (size_t(b) * NH + h) * T + row;
      L[mi][r] = row < T ? lse[idx] * kLog2e : 0.0f;
      Dr[mi][r] = row < T ? Dg[idx] : 0.0f;
    }
  float dq[MI][HD / 8][4];
#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int i = 0; i < HD / 8; i++) dq[mi][i][0] = dq[mi][i][1] = dq[mi][i][2] = dq[mi][i][3] = 0.0f;
  uint32_t qreg[REGS ? MI : 1][REGS ? HD / 16 : 1][4], oreg[REGS ? MI : 1][REGS ? HD / 16 : 1][4];

  // Key tiles 0 .. the one holding the block's last row (or T - 1).
  const int nkv = ceil_div(q0 + kQTile < T ? q0 + kQTile : T, BK);
  for (int j = 0; j < nkv; j++) {
    const int st = j & 1;
    if (j + 1 < nkv) {
      load_tile<HD, BK>(sK + (st ^ 1) * kKVElems, qbase + C, C3, (j + 1) * BK, T);
      load_tile<HD, BK>(sV + (st ^ 1) * kKVElems, qbase + 2 * C, C3, (j + 1) * BK, T);
      ptx::cp_async_commit();
      ptx::cp_async_wait<1>();
    } else {
      ptx::cp_async_wait<0>();
    }
    __syncthreads();
    const bf16* sKs = sK + st * kKVElems;
    const bf16* sVs = sV + st * kKVElems;
    if (REGS && j == 0) {
#pragma unroll
      for (int mi = 0; mi < (REGS ? MI : 0); mi++)
#pragma unroll
        for (int kk = 0; kk < (REGS ? HD / 16 : 0); kk++) {
          ldsm_a<LD>(qreg[mi][kk], sQ, warp * kRows + 16 * mi, kk * 16);
          ldsm_a<LD>(oreg[mi][kk], sdO, warp * kRows + 16 * mi, kk * 16);
        }
    }
    // A key tile reaching past the block's first row needs the causal mask (it also covers keys
    // >= T: only the last key tile has them, and it reaches past every row). In it, key pair np
    // (keys j BK + 16 np .. + 15) lies wholly above m16 tile mi's rows: P = 0, its mma's are
    // skipped; when the warp's last tile (its highest rows) skips a pair, every tile does.
    const bool diag = (j + 1) * BK - 1 > q0;
    auto above = [&](int mi, int np) { return diag && j * BK + 16 * np > wrow0 + 16 * mi + 15; };

    // S = Q K^T and dP = dO V^T (16 MI x BK per warp): each K / V fragment feeds the MI tiles
    float p[MI][BK / 8][4], ds[MI][BK / 8][4];
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int n = 0; n < BK / 8; n++)
#pragma unroll
        for (int e = 0; e < 4; e++) p[mi][n][e] = ds[mi][n][e] = 0.0f;
#pragma unroll
    for (int kk = 0; kk < HD / 16; kk++) {
      uint32_t qa[MI][4], oa[MI][4];
#pragma unroll
      for (int mi = 0; mi < MI; mi++) {
        if constexpr (REGS) {
#pragma unroll
          for (int e = 0; e < 4; e++) {
            qa[mi][e] = qreg[mi][kk][e];
            oa[mi][e] = oreg[mi][kk][e];
          }
        } else {
          ldsm_a<LD>(qa[mi], sQ, warp * kRows + 16 * mi, kk * 16);
          ldsm_a<LD>(oa[mi], sdO, warp * kRows + 16 * mi, kk * 16);
        }
      }
#pragma unroll
      for (int np = 0; np < BK / 16; np++) {
        if (above(MI - 1, np)) continue;
        uint32_t kf[4], vf[4];
        ldsm_bt<LD>(kf, sKs, np * 16, kk * 16);
        ldsm_bt<LD>(vf, sVs, np * 16, kk * 16);
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          if (above(mi, np)) continue;
          mma(p[mi][2 * np], qa[mi], kf[0], kf[1]);
          mma(p[mi][2 * np + 1], qa[mi], kf[2], kf[3]);
          mma(ds[mi][2 * np], oa[mi], vf[0], vf[1]);
          mma(ds[mi][2 * np + 1], oa[mi], vf[2], vf[3]);
        }
      }
    }
    // P = exp(S * scale - lse) (masked on a diagonal tile), dS = P (dP - D)
#pragma unroll
    for (int mi = 0; mi < MI; mi++)
#pragma unroll
      for (int nt = 0; nt < BK / 8; nt++)
#pragma unroll
        for (int e = 0; e < 4; e++) {
          const int r = e >> 1;
          const int key = j * BK + nt * 8 + 2 * t4 + (e & 1);
          float v = exp2f(fmaf(p[mi][nt][e], sl2, -L[mi][r]));
          if (diag && key > wrow0 + 16 * mi + g + 8 * r) v = 0.0f;
          ds[mi][nt][e] = v * (ds[mi][nt][e] - Dr[mi][r]);
        }
    // dQ += dS K: each K fragment feeds the MI tiles
#pragma unroll
    for (int ks = 0; ks < BK / 16; ks++) {
      if (above(MI - 1, ks)) continue;
      uint32_t da[MI][4];
#pragma unroll
      for (int mi = 0; mi < MI; mi++) c_to_a(da[mi], ds[mi], ks);
#pragma unroll
      for (int dp = 0; dp < HD / 16; dp++) {
        uint32_t kf[4];
        ldsm_b<LD>(kf, sKs, ks * 16, dp * 16);
#pragma unroll
        for (int mi = 0; mi < MI; mi++) {
          if (above(mi, ks)) continue;
          mma(dq[mi][2 * dp], da[mi], kf[0], kf[1]);
          mma(dq[mi][2 * dp + 1], da[mi], kf[2], kf[3]);
        }
      }
    }
    __syncthreads();
  }

#pragma unroll
  for (int mi = 0; mi < MI; mi++)
#pragma unroll
    for (int r = 0; r < 2; r++) {
      const int row = wrow0 + 16 * mi + g + 8 * r;
      if (row < T) {
        bf16* dst = dqkv + (size_t(b) * T + row) * C3 + h * HD + 2 * t4;
#pragma unroll
        for (int dt = 0; dt < HD / 8; dt++)
          *reinterpret_cast<uint32_t*>(dst + dt * 8) =
              pack_bf16x2(dq[mi][dt][2 * r] * scale, dq[mi][dt][2 * r + 1] * scale);
      }
    }
}

// ------------------------------------------------------------------------------------------
// KV-cache decoding
//
// Appends the new tokens' k and v (16-byte chunks) to the caches at positions pos0...
__global__ void attention_kv_append_kernel(const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn, int pos0,
                                           int Tmax, int C) {
  const size_t chunks_per_row = C / 8;
  const size_t idx = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (idx >= size_t(B) * Tn * chunks_per_row) return;
  const size_t bt = idx / chunks_per_row, c = (idx % chunks_per_row) * 8;
  const size_t b = bt / Tn, t = bt % Tn;
  const bf16* src = qkv + bt * 3 * C;
  const size_t dst = (b * Tmax + pos0 + t) * C + c;
  store_bf16x8(kcache + dst, load_bf16x8(src + C + c));
  store_bf16x8(vcache + dst, load_bf16x8(src + 2 * C + c));
}

// A warp per (token, head): lane owns dims [lane * E, lane * E + E), E = hd / 32; the score of
// each cache position is a warp sum, the softmax is online in fp32.
template <int HD>
__global__ void __launch_bounds__(kThreads) attention_kv_kernel(bf16* out, const bf16* qkv, const bf16* kcache,
                                                                const bf16* vcache, int B, int Tn, int pos0, int Tmax,
                                                                int NH) {
  constexpr int E = HD / 32;
  const int item = blockIdx.x * (kThreads / 32) + threadIdx.x / 32;  // (b * Tn + t) * NH + h
  if (item >= B * Tn * NH) return;  // whole warps leave together
  const int lane = threadIdx.x % 32;
  const int C = NH * HD;
  const int h = item % NH, bt = item / NH, b = bt / Tn, t = bt % Tn;
  const float scale = 1.0f / sqrtf(float(HD));
  const bf16* qrow = qkv + size_t(bt) * 3 * C + h * HD + lane * E;
  float q[E], o[E];
#pragma unroll
  for (int e = 0; e < E; e++) {
    q[e] = __bfloat162float(qrow[e]) * scale;
    o[e] = 0.0f;
  }
  float m = -INFINITY, l = 0.0f;
  const size_t cache0 = size_t(b) * Tmax * C + h * HD + lane * E;
  const int n = pos0 + t + 1;
  for (int j = 0; j < n; j++) {
    const bf16* kr = kcache + cache0 + size_t(j) * C;
    float part = 0.0f;
#pragma unroll
    for (int e = 0; e < E; e++) part += q[e] * __bfloat162float(kr[e]);
    const float s = warp_sum(part);
    const float mn = fmaxf(m, s);
    const float corr = expf(m - mn);  // 0 on the first position
    const float pj = expf(s - mn);
    l = l * corr + pj;
    const bf16* vr = vcache + cache0 + size_t(j) * C;
#pragma unroll
    for (int e = 0; e < E; e++) o[e] = o[e] * corr + pj * __bfloat162float(vr[e]);
    m = mn;
  }
  const float inv = 1.0f / l;
  bf16* orow = out + size_t(bt) * C + h * HD + lane * E;
#pragma unroll
  for (int e = 0; e < E; e++) orow[e] = __float2bfloat16_rn(o[e] * inv);
}

// ------------------------------------------------------------------------------------------
// Launch helpers

void check_shape(const char* what, int B, int T, int C, int NH) {
  if (B < 1 || T < 1 || NH < 1 || C < 1 || C % NH != 0)
    throw std::invalid_argument(std::string(what) + ": need B, T, NH >= 1 and C a multiple of NH (B=" +
                                std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C) +
                                " NH=" + std::to_string(NH) + ")");
  if (!attention_supports(C / NH))
    throw std::invalid_argument(std::string(what) + ": head dim " + std::to_string(C / NH) +
                                " is not supported (1..256)");
  if (size_t(B) * T * 3 * C >= (size_t(1) << 31) || T > 65535 * kTile || NH > 65535 || B > 65535)
    throw std::invalid_argument(std::string(what) + ": tensor too large for the kernels' index types");
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// The tensor-core kernels need their head dim and 16-byte rows (cp.async, ldmatrix); any other
// case runs the generic kernels (attention_generic.cu).
bool tensor_core_path(int hd, std::initializer_list<const void*> ptrs) {
  if (!attention_has_tensor_core_path(hd)) return false;
  for (const void* p : ptrs)
    if (!aligned16(p)) return false;
  return true;
}

const char* const kGenericName = "the generic attention kernels";

// False (and nothing launched) when the device cannot give the kernel its shared memory: the
// caller runs the generic kernels (the largest ask is hd 128's forward, 85 KB, within the 99 KB
// of sm_86 / sm_89; the table in the header comment gives the backward's).
template <int HD>
bool forward_hd(bf16* out, float* lse, const bf16* qkv, int B, int T, int NH, cudaStream_t stream) {
  constexpr int MI = forward_mi<HD>();
  constexpr size_t smem = forward_smem_bytes<HD, MI>();
  const std::string name = "attention forward (head dim " + std::to_string(HD) + ")";
  if (!opt_in_shared_memory(attention_forward_kernel<HD, MI>, smem, name.c_str(), kGenericName)) return false;
  launch(attention_forward_kernel<HD, MI>, dim3(ceil_div(T, kTile * MI), NH, B), dim3(kThreads), smem, stream, out,
         lse, qkv, T, NH);
  OURO_CUDA_CHECK_LAUNCH();
  return true;
}

template <int HD>
bool backward_hd(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, int B, int T,
                 int NH, float* D, cudaStream_t stream) {
  using Tl = BwdTiles<HD>;
  constexpr auto dkv = attention_backward_dkv_kernel<HD, Tl::kDkvMI, Tl::kDkvBQ, Tl::kDkvRegs>;
  constexpr auto dq = attention_backward_dq_kernel<HD, Tl::kDqMI, Tl::kDqBK, Tl::kDqRegs>;
  constexpr size_t smem_kv = dkv_smem_bytes<HD, Tl::kDkvMI, Tl::kDkvBQ>();
  constexpr size_t smem_q = dq_smem_bytes<HD, Tl::kDqMI, Tl::kDqBK>();
  const std::string name = "attention backward (head dim " + std::to_string(HD) + ")";
  if (!opt_in_shared_memory(dkv, smem_kv, name.c_str(), kGenericName) ||
      !opt_in_shared_memory(dq, smem_q, name.c_str(), kGenericName))
    return false;
  launch_backward_rowdot<HD>(D, dout, out, B, T, NH, stream);
  launch(dkv, dim3(ceil_div(T, kTile * Tl::kDkvMI), NH, B), dim3(kThreads), smem_kv, stream, dqkv, dout, qkv, lse,
         static_cast<const float*>(D), T, NH);
  OURO_CUDA_CHECK_LAUNCH();
  launch(dq, dim3(ceil_div(T, kTile * Tl::kDqMI), NH, B), dim3(kThreads), smem_q, stream, dqkv, dout, qkv, lse,
         static_cast<const float*>(D), T, NH);
  OURO_CUDA_CHECK_LAUNCH();
  return true;
}

template <int HD>
void kv_hd(bf16* out, const bf16* qkv, const bf16* kcache, const bf16* vcache, int B, int Tn, int pos0, int Tmax,
           int NH, cudaStream_t stream) {
  const int items = B * Tn * NH;
  launch(attention_kv_kernel<HD>, dim3(ceil_div(items, kThreads / 32)), dim3(kThreads), 0, stream, out, qkv, kcache,
         vcache, B, Tn, pos0, Tmax, NH);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace

bool attention_supports(int head_dim) { return head_dim >= 1 && head_dim <= 256; }
bool attention_has_tensor_core_path(int head_dim) { return head_dim == 32 || head_dim == 64 || head_dim == 128; }

void attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH, cudaStream_t stream) {
  check_shape("attention_forward", B, T, C, NH);
  // Hopper: the warp-specialized TMA + wgmma kernel (attention_sm90.cu) for head dims 64, 128.
  if (sm90::attention_selected() && sm90::attention_forward(out, lse, qkv, B, T, C, NH, stream)) return;
  bool done = false;
  if (tensor_core_path(C / NH, {qkv, out})) switch (C / NH) {
      case 32: done = forward_hd<32>(out, lse, qkv, B, T, NH, stream); break;
      case 64: done = forward_hd<64>(out, lse, qkv, B, T, NH, stream); break;
      default: done = forward_hd<128>(out, lse, qkv, B, T, NH, stream); break;
    }
  if (!done) generic_attention_forward(out, lse, qkv, B, T, C, NH, stream);
}

size_t attention_backward_scratch_bytes(int B, int T, int C, int NH) {
  const size_t d = (size_t(B) * NH * T * sizeof(float) + 255) / 256 * 256;  // D = rowsum(dO * O)
  // The Hopper backward also accumulates dQ in fp32 there (attention_sm90_bwd.cu).
  if (sm90::attention_selected() && (C / NH == 64 || C / NH == 128))
    return std::max(d, sm90::attention_backward_scratch_bytes(B, T, C, NH, sm90::attention_backward_deterministic()));
  return d;
}

void attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse, int B,
                        int T, int C, int NH, void* scratch, cudaStream_t stream) {
  check_shape("attention_backward", B, T, C, NH);
  if (scratch == nullptr) throw std::invalid_argument("attention_backward: scratch is null");
  // Hopper: the one-kernel wgmma backward (attention_sm90_bwd.cu), deterministic by default.
  if (sm90::attention_selected() &&
      sm90::attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, scratch,
                               attention_backward_scratch_bytes(B, T, C, NH), sm90::attention_backward_deterministic(),
                               stream))
    return;
  float* D = static_cast<float*>(scratch);
  bool done = false;
  if (tensor_core_path(C / NH, {dqkv, dout, qkv, out})) switch (C / NH) {
      case 32: done = backward_hd<32>(dqkv, dout, qkv, out, lse, B, T, NH, D, stream); break;
      case 64: done = backward_hd<64>(dqkv, dout, qkv, out, lse, B, T, NH, D, stream); break;
      default: done = backward_hd<128>(dqkv, dout, qkv, out, lse, B, T, NH, D, stream); break;
    }
  if (!done) generic_attention_backward(dqkv, dout, qkv, out, lse, B, T, C, NH, D, stream);
}

void attention_backward_rowdot(float* D, const bf16* dout, const bf16* out, int B, int T, int C, int NH,
                               cudaStream_t stream) {
  switch (C / NH) {
    case 32: return launch_backward_rowdot<32>(D, dout, out, B, T, NH, stream);
    case 64: return launch_backward_rowdot<64>(D, dout, out, B, T, NH, stream);
    case 128: return launch_backward_rowdot<128>(D, dout, out, B, T, NH, stream);
    default:
      throw std::invalid_argument("attention_backward_rowdot: head dim " + std::to_string(C / NH) +
                                  " is not 32, 64 or 128");
  }
}

void attention_kv(bf16* out, const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn, int pos0, int Tmax, int C,
                  int NH, cudaStream_t stream) {
  check_shape("attention_kv", B, Tn, C, NH);
  if (pos0 < 0 || Tmax < 1 || pos0 + Tn > Tmax)
    throw std::invalid_argument("attention_kv: positions " + std::to_string(pos0) + ".." +
                                std::to_string(pos0 + Tn - 1) + " do not fit the KV cache of " +
                                std::to_string(Tmax) + " positions");
  if (size_t(B) * Tmax * C >= (size_t(1) << 31))
    throw std::invalid_argument("attention_kv: KV cache too large for the kernels' index types");
  if (!tensor_core_path(C / NH, {qkv, kcache, vcache, out}))
    return generic_attention_kv(out, qkv, kcache, vcache, B, Tn, pos0, Tmax, C, NH, stream);
  const size_t chunks = size_t(B) * Tn * (C / 8);
  launch(attention_kv_append_kernel, dim3(unsigned(ceil_div(chunks, size_t(256)))), dim3(256), 0, stream, qkv,
         kcache, vcache, B, Tn, pos0, Tmax, C);
  OURO_CUDA_CHECK_LAUNCH();
  switch (C / NH) {
    case 32: kv_hd<32>(out, qkv, kcache, vcache, B, Tn, pos0, Tmax, NH, stream); break;
    case 64: kv_hd<64>(out, qkv, kcache, vcache, B, Tn, pos0, Tmax, NH, stream); break;
    default: kv_hd<128>(out, qkv, kcache, vcache, B, Tn, pos0, Tmax, NH, stream); break;
  }
}

}  // namespace ouro::kernels
