#include "kernels/attention.h"
// Causal attention for any head dimension up to 256: the path for head dims the tensor-core
// kernels (attention.cu: 32, 64, 128) do not cover, e.g. small test models (the Hugging Face
// fixture has hd = 12). Same layouts and results as attention.cu (lse saved in natural log,
// deterministic backward), fp32 CUDA-core math, no shared memory: one warp per row, lane l
// owning dims l, l+32, ... (at most 8), a warp sum per dot product. O(T^2 hd) work at a few
// percent of tensor-core speed; fine for the models that need it, never chosen when a tensor-core
// kernel fits.
//
// Backward: (1) D_i = dO_i . O_i; (2) a warp per query row i: dQ_i = scale sum_{j<=i} P_ij
// (dP_ij - D_i) K_j; (3) a warp per key row j: dK_j = scale sum_{i>=j} P_ij (dP_ij - D_i) Q_i,
// dV_j = sum_{i>=j} P_ij dO_i, with P_ij = exp(scale q_i.k_j - lse_i) and dP_ij = dO_i . V_j
// recomputed. Every element of dqkv is written once, by one warp: bitwise reproducible.
#include <algorithm>
#include <cmath>

namespace ouro::kernels {
namespace {

constexpr int kMaxPerLane = 8;  // hd <= 256
constexpr int kWarps = 4;       // warps per block

struct Row {
  float v[kMaxPerLane];
};

__device__ __forceinline__ Row load_row(const bf16* p, int hd, int lane) {
  Row r;
#pragma unroll
  for (int e = 0; e < kMaxPerLane; e++) {
    const int d = lane + 32 * e;
    r.v[e] = d < hd ? __bfloat162float(p[d]) : 0.0f;
  }
  return r;
}

__device__ __forceinline__ float dot(const Row& a, const Row& b) {
  float s = 0;
#pragma unroll
  for (int e = 0; e < kMaxPerLane; e++) s += a.v[e] * b.v[e];
  return warp_sum(s);
}

__device__ __forceinline__ void store_row(bf16* p, const Row& r, int hd, int lane, float scale = 1.0f) {
#pragma unroll
  for (int e = 0; e < kMaxPerLane; e++) {
    const int d = lane + 32 * e;
    if (d < hd) p[d] = __float2bfloat16_rn(r.v[e] * scale);
  }
}

// Row (b, t) of part (0 q, 1 k, 2 v) for head h.
__device__ __forceinline__ const bf16* part(const bf16* qkv, int b, int t, int T, int C, int h, int hd, int which) {
  return qkv + (size_t(b) * T + t) * 3 * C + which * C + h * hd;
}

// One warp per (b, h, query t): online softmax over keys 0..t.
__global__ void generic_forward_kernel(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH) {
  const int lane = threadIdx.x % 32;
  const int item = blockIdx.x * kWarps + threadIdx.x / 32;
  if (item >= B * NH * T) return;
  const int hd = C / NH, t = item % T, h = (item / T) % NH, b = item / (T * NH);
  const float scale = 1.0f / sqrtf(float(hd));
  const Row q = load_row(part(qkv, b, t, T, C, h, hd, 0), hd, lane);
  Row o{};
  float m = -INFINITY, l = 0;
  for (int j = 0; j <= t; j++) {
    const float s = dot(q, load_row(part(qkv, b, j, T, C, h, hd, 1), hd, lane)) * scale;
    const float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);
    const Row v = load_row(part(qkv, b, j, T, C, h, hd, 2), hd, lane);
#pragma unroll
    for (int e = 0; e < kMaxPerLane; e++) o.v[e] = o.v[e] * corr + p * v.v[e];
    l = l * corr + p;
    m = mn;
  }
  store_row(out + (size_t(b) * T + t) * C + h * hd, o, hd, lane, 1.0f / l);
  if (lane == 0) lse[(size_t(b) * NH + h) * T + t] = m + logf(l);
}

// D_i = dO_i . O_i, one warp per (b, h, t).
__global__ void generic_d_kernel(float* D, const bf16* dout, const bf16* out, int B, int T, int C, int NH) {
  const int lane = threadIdx.x % 32;
  const int item = blockIdx.x * kWarps + threadIdx.x / 32;
  if (item >= B * NH * T) return;
  const int hd = C / NH, t = item % T, h = (item / T) % NH, b = item / (T * NH);
  const size_t row = (size_t(b) * T + t) * C + h * hd;
  const float d = dot(load_row(dout + row, hd, lane), load_row(out + row, hd, lane));
  if (lane == 0) D[(size_t(b) * NH + h) * T + t] = d;
}

__global__ void generic_dq_kernel(bf16* dqkv, const bf16* dout, const bf16* qkv, const float* lse, const float* D,
                                  int B, int T, int C, int NH) {
  const int lane = threadIdx.x % 32;
  const int item = blockIdx.x * kWarps + threadIdx.x / 32;
  if (item >= B * NH * T) return;
  const int hd = C / NH, i = item % T, h = (item / T) % NH, b = item / (T * NH);
  const float scale = 1.0f / sqrtf(float(hd));
  const size_t stat = (size_t(b) * NH + h) * T + i;
  const Row q = load_row(part(qkv, b, i, T, C, h, hd, 0), hd, lane);
  const Row dO = load_row(dout + (size_t(b) * T + i) * C + h * hd, hd, lane);
  Row dq{};
  for (int j = 0; j <= i; j++) {
    const Row k = load_row(part(qkv, b, j, T, C, h, hd, 1), hd, lane);
    const float p = expf(dot(q, k) * scale - lse[stat]);
    const float ds = p * (dot(dO, load_row(part(qkv, b, j, T, C, h, hd, 2), hd, lane)) - D[stat]);
#pragma unroll
    for (int e = 0; e < kMaxPerLane; e++) dq.v[e] += ds * k.v[e];
  }
  store_row(dqkv + (size_t(b) * T + i) * 3 * C + h * hd, dq, hd, lane, scale);
}

__global__ void generic_dkv_kernel(bf16* dqkv, const bf16* dout, const bf16* qkv, const float* lse, const float* D,
                                   int B, int T, int C, int NH) {
  const int lane = threadIdx.x % 32;
  const int item = blockIdx.x * kWarps + threadIdx.x / 32;
  if (item >= B * NH * T) return;
  const int hd = C / NH, j = item % T, h = (item / T) % NH, b = item / (T * NH);
  const float scale = 1.0f / sqrtf(float(hd));
  const Row k = load_row(part(qkv, b, j, T, C, h, hd, 1), hd, lane);
  const Row v = load_row(part(qkv, b, j, T, C, h, hd, 2), hd, lane);
  Row dk{}, dv{};
  for (int i = j; i < T; i++) {
    const size_t stat = (size_t(b) * NH + h) * T + i;
    const Row q = load_row(part(qkv, b, i, T, C, h, hd, 0), hd, lane);
    const Row dO = load_row(dout + (size_t(b) * T + i) * C + h * hd, hd, lane);
    const float p = expf(dot(q, k) * scale - lse[stat]);
    const float ds = p * (dot(dO, v) - D[stat]);
#pragma unroll
    for (int e = 0; e < kMaxPerLane; e++) {
      dk.v[e] += ds * q.v[e];
      dv.v[e] += p * dO.v[e];
    }
  }
  bf16* row = dqkv + (size_t(b) * T + j) * 3 * C + h * hd;
  store_row(row + C, dk, hd, lane, scale);
  store_row(row + 2 * C, dv, hd, lane);
}

// Decoding: append the new k, v (element by element: C need not be a multiple of 8), then a
// warp per (b, new token, head) over cache positions <= its own.
__global__ void generic_kv_append_kernel(const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn, int pos0,
                                         int Tmax, int C) {
  const size_t n = size_t(B) * Tn * C;
  for (size_t x = size_t(blockIdx.x) * blockDim.x + threadIdx.x; x < n; x += size_t(gridDim.x) * blockDim.x) {
    const int c = int(x % C), t = int((x / C) % Tn), b = int(x / (size_t(C) * Tn));
    const bf16* src = qkv + (size_t(b) * Tn + t) * 3 * C;
    const size_t dst = (size_t(b) * Tmax + pos0 + t) * C + c;
    kcache[dst] = src[C + c];
    vcache[dst] = src[2 * C + c];
  }
}

__global__ void generic_kv_kernel(bf16* out, const bf16* qkv, const bf16* kcache, const bf16* vcache, int B, int Tn,
                                  int pos0, int Tmax, int C, int NH) {
  const int lane = threadIdx.x % 32;
  const int item = blockIdx.x * kWarps + threadIdx.x / 32;
  if (item >= B * Tn * NH) return;
  const int hd = C / NH, h = item % NH, t = (item / NH) % Tn, b = item / (NH * Tn);
  const float scale = 1.0f / sqrtf(float(hd));
  const Row q = load_row(qkv + (size_t(b) * Tn + t) * 3 * C + h * hd, hd, lane);
  Row o{};
  float m = -INFINITY, l = 0;
  for (int j = 0; j <= pos0 + t; j++) {
    const size_t row = (size_t(b) * Tmax + j) * C + h * hd;
    const float s = dot(q, load_row(kcache + row, hd, lane)) * scale;
    const float mn = fmaxf(m, s), corr = expf(m - mn), p = expf(s - mn);
    const Row v = load_row(vcache + row, hd, lane);
#pragma unroll
    for (int e = 0; e < kMaxPerLane; e++) o.v[e] = o.v[e] * corr + p * v.v[e];
    l = l * corr + p;
    m = mn;
  }
  store_row(out + (size_t(b) * Tn + t) * C + h * hd, o, hd, lane, 1.0f / l);
}

unsigned warp_blocks(size_t items) { return unsigned(ceil_div(items, size_t(kWarps))); }

}  // namespace

void generic_attention_forward(bf16* out, float* lse, const bf16* qkv, int B, int T, int C, int NH,
                               cudaStream_t stream) {
  launch(generic_forward_kernel, dim3(warp_blocks(size_t(B) * NH * T)), dim3(32 * kWarps), 0, stream, out, lse, qkv,
         B, T, C, NH);
  OURO_CUDA_CHECK_LAUNCH();
}

void generic_attention_backward(bf16* dqkv, const bf16* dout, const bf16* qkv, const bf16* out, const float* lse,
                                int B, int T, int C, int NH, float* D, cudaStream_t stream) {
  const dim3 grid(warp_blocks(size_t(B) * NH * T)), block(32 * kWarps);
  launch(generic_d_kernel, grid, block, 0, stream, D, dout, out, B, T, C, NH);
  OURO_CUDA_CHECK_LAUNCH();
  launch(generic_dq_kernel, grid, block, 0, stream, dqkv, dout, qkv, lse, static_cast<const float*>(D), B, T, C, NH);
  OURO_CUDA_CHECK_LAUNCH();
  launch(generic_dkv_kernel, grid, block, 0, stream, dqkv, dout, qkv, lse, static_cast<const float*>(D), B, T, C, NH);
  OURO_CUDA_CHECK_LAUNCH();
}

void generic_attention_kv(bf16* out, const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn, int pos0, int Tmax,
                          int C, int NH, cudaStream_t stream) {
  const size_t n = size_t(B) * Tn * C;
  launch(generic_kv_append_kernel, dim3(unsigned(std::min<size_t>(ceil_div(n, size_t(256)), 4096))), dim3(256), 0,
         stream, qkv, kcache, vcache, B, Tn, pos0, Tmax, C);
  OURO_CUDA_CHECK_LAUNCH();
  launch(generic_kv_kernel, dim3(warp_blocks(size_t(B) * Tn * NH)), dim3(32 * kWarps), 0, stream, out, qkv, kcache,
         vcache, B, Tn, pos0, Tmax, C, NH);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace ouro::kernels
