#include "kernels/layernorm.h"

#include <algorithm>
#include <string>

// LayerNorm over the last dimension C of an (N, C) row-major bf16 tensor; fp32 math and stats.
//
// Forward: one warp per row (4 warps per block, rows independent, no block barriers). A lane
// owns the 8-channel units u = lane, lane+32, ... of its row: with C % 8 == 0 and 16-byte
// aligned pointers a unit is one 128-bit load/store (Bf16x8, template V = 8), otherwise one
// element (V = 1; any C works, e.g. C = 40 or 100). The row is read three times (sum, squared
// deviations, normalise): the second and third reads hit L1 (a row is a few KiB), so DRAM sees
// one read and one write per element, and the two-pass variance has no cancellation problem.
// The fused residual variant writes residual = bf16(a + b) in the first pass and normalises that
// rounded value (exactly what a separate residual_forward + layernorm_forward would compute).
//
// Backward: G blocks of W warps; warp w of block g takes rows g*W + w + k*G*W in order. Per row:
// pass 1 reduces sum(g) and sum(g*xhat) (g = dout*weight) over the warp, pass 2 does
// dinp += rstd*(g - mean(g) - xhat*mean(g*xhat)) and accumulates dout*xhat and dout for
// dweight/dbias (each channel always touched by the same lane: no races).
//   Register path (C/V <= 32 * kBwdMaxUnitsPerLane, i.e. C <= 2048 vectorised): G = 2 x 132
//   blocks of 8 warps (about two per SM of an H100; a constant, never the device's SM count, so
//   the sums are the same on every GPU), each lane's dweight/dbias channels accumulated in
//   registers over all of the warp's rows (N / 2112 rows per warp), then summed once per block
//   through one 2C-float shared row, warp by warp in order, into its row of the fp32 scratch.
//   Shared-memory path (wider rows): up to 1024 blocks, each warp's copy in shared memory.
// A second kernel sums the G scratch rows in a fixed order and adds them to the bf16
// dweight/dbias. G depends on N and C only, so the result is bitwise reproducible.

namespace ouro::kernels {

namespace {

constexpr float kLnEps = 1e-5f;
constexpr int kFwdWarps = 4;
constexpr int kBwdMaxWarps = 4;
constexpr int kBwdMaxBlocks = 1024;
constexpr size_t kBwdSharedBudget = 48 * 1024;  // default dynamic shared memory limit
constexpr int kBwdRegWarps = 8;
constexpr int kBwdRegBlocks = 2 * 132;  // ~2 blocks per SM on a 132-SM H100
constexpr int kBwdMaxUnitsPerLane = 8;  // register budget: 2 x 8 x V accumulators per lane

// a (and, with kResidual, b: residual = a + b) -> out, mean, rstd. One warp per row.
template <int V, bool kResidual>
__global__ void layernorm_forward_kernel(bf16* out, float* mean, float* rstd, bf16* residual,
                                         const bf16* a, const bf16* b, const bf16* weight,
                                         const bf16* bias, int N, int C) {
  const int lane = threadIdx.x % 32;
  const int row = blockIdx.x * (blockDim.x / 32) + threadIdx.x / 32;
  if (row >= N) return;  // whole warp: no collective or barrier is skipped by part of a warp
  const int units = C / V;
  const size_t base = size_t(row) * C;
  // The row that gets normalised: the input, or the residual written in pass 1.
  const bf16* x = kResidual ? residual + base : a + base;

  float sum = 0.0f;
  for (int u = lane; u < units; u += 32) {
    float v[V];
    load_vec<V>(v, a + base + size_t(u) * V);
    if constexpr (kResidual) {
      float w[V];
      load_vec<V>(w, b + base + size_t(u) * V);
#pragma unroll
      for (int i = 0; i < V; i++) v[i] = __bfloat162float(__float2bfloat16_rn(v[i] + w[i]));
      store_vec<V>(residual + base + size_t(u) * V, v);
    }
#pragma unroll
    for (int i = 0; i < V; i++) sum += v[i];
  }
  const float m = warp_sum(sum) / float(C);

  // Pass 2 reads what this same lane read (or wrote) in pass 1: L1 hits, no cross-thread hazard.
  float var = 0.0f;
  for (int u = lane; u < units; u += 32) {
    float v[V];
    load_vec<V>(v, x + size_t(u) * V);
#pragma unroll
    for (int i = 0; i < V; i++) var += (v[i] - m) * (v[i] - m);
  }
  const float r = rsqrtf(warp_sum(var) / float(C) + kLnEps);

  for (int u = lane; u < units; u += 32) {
    float v[V], w[V], bb[V];
    load_vec<V>(v, x + size_t(u) * V);
    load_vec<V>(w, weight + size_t(u) * V);
    load_vec<V>(bb, bias + size_t(u) * V);
#pragma unroll
    for (int i = 0; i < V; i++) v[i] = (v[i] - m) * r * w[i] + bb[i];
    store_vec<V>(out + base + size_t(u) * V, v);
  }
  if (lane == 0) {
    if (mean) mean[row] = m;
    if (rstd) rstd[row] = r;
  }
}

// dinp += ..., per-block partial dweight/dbias -> partial[blockIdx.x] = (dw[C], db[C]).
// Dynamic shared memory: (blockDim.x / 32) * 2C floats.
template <int V>
__global__ void layernorm_backward_kernel(bf16* dinp, float* partial, const bf16* dout,
                                          const bf16* inp, const bf16* weight, const float* mean,
                                          const float* rstd, int N, int C) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  const int units = C / V;
  float* dw_s = ouro::dynamic_shared<float>() + size_t(warp) * 2 * C;
  float* db_s = dw_s + C;
  // Channel c = u*V + i lives at index i*units + u: consecutive lanes hit consecutive banks.
  // Zeroed with the same lane -> channel mapping as the accumulation below: no barrier needed.
  for (int u = lane; u < units; u += 32) {
#pragma unroll
    for (int i = 0; i < V; i++) dw_s[i * units + u] = db_s[i * units + u] = 0.0f;
  }

  const int stride = gridDim.x * nwarps;
  for (int row = blockIdx.x * nwarps + warp; row < N; row += stride) {
    const size_t base = size_t(row) * C;
    const float m = mean[row], r = rstd[row];
    float gsum = 0.0f, gxsum = 0.0f;
    for (int u = lane; u < units; u += 32) {
      float dy[V], x[V], w[V];
      load_vec<V>(dy, dout + base + size_t(u) * V);
      load_vec<V>(x, inp + base + size_t(u) * V);
      load_vec<V>(w, weight + size_t(u) * V);
#pragma unroll
      for (int i = 0; i < V; i++) {
        const float g = dy[i] * w[i];
        gsum += g;
        gxsum += g * ((x[i] - m) * r);
      }
    }
    const float gmean = warp_sum(gsum) / float(C);
    const float gxmean = warp_sum(gxsum) / float(C);
    for (int u = lane; u < units; u += 32) {
      float dy[V], x[V], w[V], dx[V];
      load_vec<V>(dy, dout + base + size_t(u) * V);
      load_vec<V>(x, inp + base + size_t(u) * V);
      load_vec<V>(w, weight + size_t(u) * V);
      load_vec<V>(dx, dinp + base + size_t(u) * V);
#pragma unroll
      for (int i = 0; i < V; i++) {
        const float xhat = (x[i] - m) * r;
        dx[i] += r * (dy[i] * w[i] - gmean - xhat * gxmean);
        dw_s[i * units + u] += dy[i] * xhat;
        db_s[i * units + u] += dy[i];
      }
      store_vec<V>(dinp + base + size_t(u) * V, dx);
    }
  }

  __syncthreads();
  const float* s = ouro::dynamic_shared<float>();
  float* p = partial + size_t(blockIdx.x) * 2 * C;
  for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) {
    const int half = c / C, cc = c % C;  // dweight or dbias; channel
    const int idx = half * C + (cc % V) * units + cc / V;
    float acc = 0.0f;
    for (int w = 0; w < nwarps; w++) acc += s[size_t(w) * 2 * C + idx];  // fixed warp order
    p[c] = acc;
  }
}

// The register path: lane owns units u = lane + 32k (k < UPL) of every row it visits, so its
// dweight/dbias channels stay in registers for the whole kernel. Dynamic shared memory: 2C floats.
template <int V, int UPL>
__global__ void layernorm_backward_reg_kernel(bf16* dinp, float* partial, const bf16* dout,
                                              const bf16* inp, const bf16* weight, const float* mean,
                                              const float* rstd, int N, int C) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  const int units = C / V;
  float dw[UPL][V], db[UPL][V];
#pragma unroll
  for (int k = 0; k < UPL; k++)
#pragma unroll
    for (int i = 0; i < V; i++) dw[k][i] = db[k][i] = 0.0f;

  const int stride = gridDim.x * nwarps;
  for (int row = blockIdx.x * nwarps + warp; row < N; row += stride) {
    const size_t base = size_t(row) * C;
    const float m = mean[row], r = rstd[row];
    float gsum = 0.0f, gxsum = 0.0f;
#pragma unroll
    for (int k = 0; k < UPL; k++) {
      const int u = lane + 32 * k;
      if (u >= units) break;
      float dy[V], x[V], w[V];
      load_vec<V>(dy, dout + base + size_t(u) * V);
      load_vec<V>(x, inp + base + size_t(u) * V);
      load_vec<V>(w, weight + size_t(u) * V);
#pragma unroll
      for (int i = 0; i < V; i++) {
        const float g = dy[i] * w[i];
        gsum += g;
        gxsum += g * ((x[i] - m) * r);
      }
    }
    const float gmean = warp_sum(gsum) / float(C);
    const float gxmean = warp_sum(gxsum) / float(C);
#pragma unroll
    for (int k = 0; k < UPL; k++) {
      const int u = lane + 32 * k;
      if (u >= units) break;
      float dy[V], x[V], w[V], dx[V];
      load_vec<V>(dy, dout + base + size_t(u) * V);
      load_vec<V>(x, inp + base + size_t(u) * V);
      load_vec<V>(w, weight + size_t(u) * V);
      load_vec<V>(dx, dinp + base + size_t(u) * V);
#pragma unroll
      for (int i = 0; i < V; i++) {
        const float xhat = (x[i] - m) * r;
        dx[i] += r * (dy[i] * w[i] - gmean - xhat * gxmean);
        dw[k][i] += dy[i] * xhat;
        db[k][i] += dy[i];
      }
      store_vec<V>(dinp + base + size_t(u) * V, dx);
    }
  }

  // The block's sum in warp order through one shared row: warp 0 stores, each later warp adds.
  float* s = ouro::dynamic_shared<float>();
  for (int w = 0; w < nwarps; w++) {
    if (warp == w) {
#pragma unroll
      for (int k = 0; k < UPL; k++) {
        const int u = lane + 32 * k;
        if (u >= units) break;
#pragma unroll
        for (int i = 0; i < V; i++) {
          const int c = u * V + i;
          s[c] = w == 0 ? dw[k][i] : s[c] + dw[k][i];
          s[C + c] = w == 0 ? db[k][i] : s[C + c] + db[k][i];
        }
      }
    }
    __syncthreads();
  }
  float* p = partial + size_t(blockIdx.x) * 2 * C;
  for (int c = threadIdx.x; c < 2 * C; c += blockDim.x) p[c] = s[c];
}

// dweight[c] += sum_g partial[g][c], dbias[c] += sum_g partial[g][C + c]. Block: 32 channels x
// 8 row-slices; slice y sums g = y, y+8, ... in order, then slice 0 adds the 8 slices in order.
constexpr int kReduceSlices = 8;
__global__ void layernorm_param_reduce_kernel(bf16* dweight, bf16* dbias, const float* partial,
                                              int G, int C) {
  __shared__ float sw[kReduceSlices][32], sb[kReduceSlices][32];
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;
  const int c = blockIdx.x * 32 + tx;
  float accw = 0.0f, accb = 0.0f;
  if (c < C) {
    for (int g = ty; g < G; g += kReduceSlices) {
      accw += partial[size_t(g) * 2 * C + c];
      accb += partial[size_t(g) * 2 * C + C + c];
    }
  }
  sw[ty][tx] = accw;
  sb[ty][tx] = accb;
  __syncthreads();
  if (ty == 0 && c < C) {
    float w = 0.0f, bsum = 0.0f;
    for (int y = 0; y < kReduceSlices; y++) {
      w += sw[y][tx];
      bsum += sb[y][tx];
    }
    dweight[c] = __float2bfloat16_rn(__bfloat162float(dweight[c]) + w);
    dbias[c] = __float2bfloat16_rn(__bfloat162float(dbias[c]) + bsum);
  }
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

void check_shape(int N, int C, const char* who) {
  if (N <= 0 || C <= 0)
    throw std::invalid_argument(std::string(who) + ": N and C must be positive (N=" + std::to_string(N) +
                                ", C=" + std::to_string(C) + ")");
}

// Backward geometry: warps per block from the shared-memory budget (2C floats per warp), and a
// block count that depends on N and C only (never on the device), so the sums are reproducible.
int bwd_warps(int C) {
  const size_t per_warp = size_t(2) * C * sizeof(float);
  return int(std::min<size_t>(kBwdMaxWarps, kBwdSharedBudget / per_warp));
}
int bwd_blocks(int N, int C) { return std::min(kBwdMaxBlocks, ceil_div(N, std::max(1, bwd_warps(C)))); }

// The register path's units per lane for rows of C channels in V-wide units (0: too wide for it),
// rounded up to an instantiated count.
int reg_units_per_lane(int C, int V) {
  const int need = ceil_div(C / V, 32);
  for (int upl : {1, 2, 3, 4, 6, 8})
    if (need <= upl) return upl;
  return 0;
}
int reg_blocks(int N) { return std::min(kBwdRegBlocks, ceil_div(N, kBwdRegWarps)); }
bool bwd_vec(int C) { return C % 8 == 0; }

template <int V>
void launch_backward_reg(int upl, dim3 grid, cudaStream_t stream, bf16* dinp, float* partial, const bf16* dout,
                         const bf16* inp, const bf16* weight, const float* mean, const float* rstd, int N, int C) {
  const dim3 block(32 * kBwdRegWarps);
  const size_t smem = size_t(2) * C * sizeof(float);
  switch (upl) {
#define OURO_LN_BWD_REG(U)                                                                                  \
  case U:                                                                                                   \
    launch(layernorm_backward_reg_kernel<V, U>, grid, block, smem, stream, dinp, partial, dout, inp, weight, \
           mean, rstd, N, C);                                                                               \
    break;
    OURO_LN_BWD_REG(1)
    OURO_LN_BWD_REG(2)
    OURO_LN_BWD_REG(3)
    OURO_LN_BWD_REG(4)
    OURO_LN_BWD_REG(6)
    OURO_LN_BWD_REG(8)
#undef OURO_LN_BWD_REG
    default:
      throw std::logic_error("layernorm_backward: no register kernel for " + std::to_string(upl) + " units per lane");
  }
}

template <bool kResidual>
void launch_forward(bf16* residual, bf16* out, float* mean, float* rstd, const bf16* a, const bf16* b,
                    const bf16* weight, const bf16* bias, int N, int C, cudaStream_t stream) {
  const bool vec = C % 8 == 0 && aligned16(out) && aligned16(a) && aligned16(weight) && aligned16(bias) &&
                   (!kResidual || (aligned16(b) && aligned16(residual)));
  const dim3 grid(ceil_div(N, kFwdWarps)), block(32 * kFwdWarps);
  if (vec)
    launch(layernorm_forward_kernel<8, kResidual>, grid, block, 0, stream, out, mean, rstd, residual, a, b,
           weight, bias, N, C);
  else
    launch(layernorm_forward_kernel<1, kResidual>, grid, block, 0, stream, out, mean, rstd, residual, a, b,
           weight, bias, N, C);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace

void layernorm_forward(bf16* out, float* mean, float* rstd, const bf16* inp, const bf16* weight,
                       const bf16* bias, int N, int C, cudaStream_t stream) {
  check_shape(N, C, "layernorm_forward");
  launch_forward<false>(nullptr, out, mean, rstd, inp, nullptr, weight, bias, N, C, stream);
}

void residual_layernorm_forward(bf16* residual, bf16* out, float* mean, float* rstd, const bf16* a,
                                const bf16* b, const bf16* weight, const bf16* bias, int N, int C,
                                cudaStream_t stream) {
  check_shape(N, C, "residual_layernorm_forward");
  launch_forward<true>(residual, out, mean, rstd, a, b, weight, bias, N, C, stream);
}

size_t layernorm_backward_scratch_bytes(int N, int C) {
  if (N <= 0 || C <= 0) return 0;
  // Either path's row count; the vectorised one may fall back to V = 1 on unaligned pointers.
  size_t rows = 0;
  if (reg_units_per_lane(C, 1) || (bwd_vec(C) && reg_units_per_lane(C, 8))) rows = size_t(reg_blocks(N));
  if (bwd_warps(C) >= 1) rows = std::max(rows, size_t(bwd_blocks(N, C)));
  return rows * 2 * C * sizeof(float);
}

void layernorm_backward(bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout, const bf16* inp,
                        const bf16* weight, const float* mean, const float* rstd, int N, int C,
                        void* scratch, cudaStream_t stream) {
  check_shape(N, C, "layernorm_backward");
  if (!scratch) throw std::invalid_argument("layernorm_backward: scratch is null");
  const bool vec = bwd_vec(C) && aligned16(dinp) && aligned16(dout) && aligned16(inp) && aligned16(weight);
  float* partial = static_cast<float*>(scratch);
  if (const int upl = reg_units_per_lane(C, vec ? 8 : 1)) {
    const int G = reg_blocks(N);
    if (vec)
      launch_backward_reg<8>(upl, dim3(G), stream, dinp, partial, dout, inp, weight, mean, rstd, N, C);
    else
      launch_backward_reg<1>(upl, dim3(G), stream, dinp, partial, dout, inp, weight, mean, rstd, N, C);
    OURO_CUDA_CHECK_LAUNCH();
    launch(layernorm_param_reduce_kernel, dim3(ceil_div(C, 32)), dim3(32 * kReduceSlices), 0, stream, dweight,
           dbias, static_cast<const float*>(partial), G, C);
    OURO_CUDA_CHECK_LAUNCH();
    return;
  }
  const int W = bwd_warps(C);
  if (W < 1)
    throw std::invalid_argument("layernorm_backward: C=" + std::to_string(C) +
                                " too large (at most " + std::to_string(kBwdSharedBudget / 8) + ")");
  const int G = bwd_blocks(N, C);
  const size_t smem = size_t(W) * 2 * C * sizeof(float);
  if (vec)
    launch(layernorm_backward_kernel<8>, dim3(G), dim3(32 * W), smem, stream, dinp, partial, dout, inp, weight,
           mean, rstd, N, C);
  else
    launch(layernorm_backward_kernel<1>, dim3(G), dim3(32 * W), smem, stream, dinp, partial, dout, inp, weight,
           mean, rstd, N, C);
  OURO_CUDA_CHECK_LAUNCH();
  launch(layernorm_param_reduce_kernel, dim3(ceil_div(C, 32)), dim3(32 * kReduceSlices), 0, stream, dweight,
         dbias, static_cast<const float*>(partial), G, C);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace ouro::kernels
