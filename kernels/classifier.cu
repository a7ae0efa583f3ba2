#include "kernels/classifier.h"
// Fused classifier: softmax + cross-entropy + dlogits, never storing the probabilities.
//
// Layout: logits (N, Vp) bf16 row-major; columns [V, Vp) are padding (not in the softmax, zero
// gradient). targets (N) device ints, losses (N) fp32.
//
// Tiling: one block per row. Pass 1 streams the row once and keeps an ONLINE (max, sum of
// exp(x - max)) pair per thread in fp32 (a new max rescales the sum), combined across the block
// in a fixed tree (warp butterfly, then the warps' pairs in warp order): deterministic. Pass 2
// (only when dloss != 0) re-reads the row (it was just streamed: mostly L2 hits) and overwrites
// it in place with (exp(x - max) / sum - [i == target]) * dloss, and zeros over the padding.
// A row of GPT-2's 50304 bf16 is ~100 KB, so the kernel is bound by DRAM bandwidth: the row is
// read with 128-bit loads (8 bf16) and written with 128-bit stores whenever Vp % 8 == 0 and the
// base pointer is 16-byte aligned (always in the model: Vp is a multiple of 128); otherwise a
// scalar path handles any V, Vp.
//
// The loss is fp32: log(sum) - (x[target] - max), the same expression as CpuOps (which sums the
// exponentials in double; per-thread fp32 partial sums of ~50 terms and a log2(blockDim)-deep
// tree lose ~1e-6 relative of the sum, i.e. ~1e-6 absolute on the loss).
//
// Targets: a target < 0 is an ignored position (loss 0, an all-zero gradient row). The launcher
// cannot inspect device targets without a synchronising copy, so a target >= V (a caller bug: the
// host op validates targets before upload, as CpuOps does) is CLAMPED to V - 1 here: the kernel
// never reads out of bounds, and the loss/gradient are those of target V - 1.
#include <cmath>
#include <stdexcept>
#include <string>

namespace ouro::kernels {

namespace {

// Combine two online-softmax partials (max, sum of exp(x - max)). An empty partial is
// (-inf, 0); the guards keep exp(-inf - -inf) = NaN out of the result.
__device__ __forceinline__ void online_combine(float& m, float& s, float m2, float s2) {
  const float M = fmaxf(m, m2);
  const float a = m == -INFINITY ? 0.0f : s * expf(m - M);
  const float b = m2 == -INFINITY ? 0.0f : s2 * expf(m2 - M);
  m = M;
  s = a + b;
}

// Adds one value to a thread's online partial.
__device__ __forceinline__ void online_add(float& m, float& s, float x) {
  if (x > m) {
    s = (m == -INFINITY ? 0.0f : s * expf(m - x)) + 1.0f;
    m = x;
  } else {
    s += expf(x - m);
  }
}

template <bool kVec>
__global__ void classifier_kernel(bf16* logits, float* losses, const int* targets, int V, int Vp,
                                  float dloss) {
  __shared__ float sh_max[32];
  __shared__ float sh_sum[32];
  const int row = blockIdx.x;
  const int tid = threadIdx.x, lane = tid % 32, warp = tid / 32, nwarps = blockDim.x / 32;
  bf16* x = logits + size_t(row) * size_t(Vp);
  int target = targets[row];
  const bool backward = dloss != 0.0f;

  if (target < 0) {  // ignored position (uniform over the block: no barrier is skipped unevenly)
    if (tid == 0) losses[row] = 0.0f;
    if (!backward) return;
    if constexpr (kVec) {
      Bf16x8 z;
      for (int k = 0; k < 8; k++) z.v[k] = __float2bfloat16_rn(0.0f);
      for (int i = tid * 8; i < Vp; i += blockDim.x * 8) store_bf16x8(x + i, z);
    } else {
      for (int i = tid; i < Vp; i += blockDim.x) x[i] = __float2bfloat16_rn(0.0f);
    }
    return;
  }
  if (target >= V) target = V - 1;  // see the header comment: clamp, the host validates

  // Pass 1: online max / sum over the real vocabulary.
  float m = -INFINITY, s = 0.0f;
  if constexpr (kVec) {
    for (int i = tid * 8; i < V; i += blockDim.x * 8) {
      const Bf16x8 p = load_bf16x8(x + i);
      float f[8];
      float vmax = -INFINITY;
      for (int k = 0; k < 8; k++) {
        f[k] = i + k < V ? __bfloat162float(p.v[k]) : -INFINITY;
        vmax = fmaxf(vmax, f[k]);
      }
      // One rescale per 8 values instead of one per value.
      const float M = fmaxf(m, vmax);
      float acc = m == -INFINITY ? 0.0f : s * expf(m - M);
      for (int k = 0; k < 8; k++)
        if (i + k < V) acc += expf(f[k] - M);
      m = M;
      s = acc;
    }
  } else {
    for (int i = tid; i < V; i += blockDim.x) online_add(m, s, __bfloat162float(x[i]));
  }
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_combine(m, s, m2, s2);
  }
  if (lane == 0) {
    sh_max[warp] = m;
    sh_sum[warp] = s;
  }
  // The target logit is read before the barrier: pass 2 overwrites the row after it.
  const float target_logit = __bfloat162float(x[target]);
  __syncthreads();
  m = lane < nwarps ? sh_max[lane] : -INFINITY;
  s = lane < nwarps ? sh_sum[lane] : 0.0f;
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o);
    const float s2 = __shfl_xor_sync(0xffffffffu, s, o);
    online_combine(m, s, m2, s2);
  }
  if (tid == 0) losses[row] = logf(s) - (target_logit - m);
  if (!backward) return;
  // Every thread must have read the row (and x[target]) before any thread overwrites it.
  __syncthreads();

  // Pass 2: dlogits in place.
  const float scale = dloss / s;  // exp(x - max) * (dloss / sum) = softmax * dloss
  if constexpr (kVec) {
    for (int i = tid * 8; i < Vp; i += blockDim.x * 8) {
      Bf16x8 p = load_bf16x8(x + i);
      for (int k = 0; k < 8; k++) {
        const int j = i + k;
        float g = 0.0f;
        if (j < V) {
          g = expf(__bfloat162float(p.v[k]) - m) * scale;
          if (j == target) g -= dloss;
        }
        p.v[k] = __float2bfloat16_rn(g);
      }
      store_bf16x8(x + i, p);
    }
  } else {
    for (int i = tid; i < Vp; i += blockDim.x) {
      float g = 0.0f;
      if (i < V) {
        g = expf(__bfloat162float(x[i]) - m) * scale;
        if (i == target) g -= dloss;
      }
      x[i] = __float2bfloat16_rn(g);
    }
  }
}

}  // namespace

void classifier(bf16* logits, float* losses, const int* targets, int N, int V, int Vp, float dloss,
                cudaStream_t stream) {
  if (N < 0 || V <= 0 || Vp < V)
    throw std::invalid_argument("classifier: need N >= 0 and 0 < V <= Vp (got N=" + std::to_string(N) +
                                ", V=" + std::to_string(V) + ", Vp=" + std::to_string(Vp) + ")");
  if (N == 0) return;
  if (!logits || !losses || !targets) throw std::invalid_argument("classifier: null pointer");
  const bool vec = Vp % 8 == 0 && reinterpret_cast<uintptr_t>(logits) % 16 == 0;
  // Enough threads that each streams a few 16-byte words of the row, at most 1024.
  const int work = vec ? ceil_div(Vp, 8) : Vp;
  int threads = ceil_div(ceil_div(work, 4), 32) * 32;
  threads = threads < 64 ? 64 : threads > 1024 ? 1024 : threads;
  if (vec)
    launch(classifier_kernel<true>, dim3(N), dim3(threads), 0, stream, logits, losses, targets, V, Vp, dloss);
  else
    launch(classifier_kernel<false>, dim3(N), dim3(threads), 0, stream, logits, losses, targets, V, Vp, dloss);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace ouro::kernels
