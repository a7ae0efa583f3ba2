#include "kernels/optimizer.h"
// AdamW over every parameter in one launch, and the deterministic sum of squares (grad norm).
//
// adamw. Layout: one flat parameter buffer; params (bf16), master/m/v (fp32) and grads (bf16) are
// all indexed by the same absolute element index i. The segments (a device table) say which
// ranges [offset, offset + size) are updated and whether weight decay applies to them. The launch
// walks the segments' CONCATENATION, j in [0, total_elements) with total_elements = the sum of the
// sizes, in a grid-stride loop (a grid sized to fill the GPU, not to the tensor: one launch for
// ~150 tensors of any sizes; indices j past the sum of the sizes are ignored). Each block first turns the table into inclusive prefix ends in
// shared memory (warp 0 scans it 32 at a time); a thread finds the segment of j by binary search
// over those ends and keeps it while j stays inside (with a grid stride of ~10^5 elements and
// tensors of ~10^6, that is one search per tensor per thread). The update is elementwise, so the
// result does not depend on the grid: bitwise deterministic.
//
// Math: torch.optim.AdamW's single-tensor path, operation for operation as CpuOps::adamw:
// the scalars (step size, sqrt of bias correction 2, lerp weight, decay factor) are computed on
// the host in double and cast to float; on the device every product / sum / quotient is an
// explicitly rounded __f*_rn so nvcc cannot fuse them into FMAs that CpuOps does not do.
// params[i] = master[i] stochastically rounded to bf16 with rounding_random(i, master[i], seed)
// (common.cuh: a pure function of the new value, so f32_to_bf16_stochastic below, run on a
// checkpoint's master weights, reproduces the same bf16 weights).
// Memory bound (28 bytes per element); the loads are coalesced 32-bit/16-bit words.
//
// sum_squares: pass 1, a fixed grid of G blocks (G depends on n only, never on the device) sums
// squares in fp32 per thread (128-bit loads when x is 16-byte aligned), reduces the block in a
// fixed tree and writes one fp32 partial per block to scratch; pass 2, one block adds the G
// partials in double (thread t takes partials t, t + 256, ... in order, then a fixed tree) and
// writes *out. No atomics: bitwise deterministic run to run.
#include <cmath>
#include <stdexcept>
#include <string>

namespace ouro::kernels {

namespace {

constexpr int kAdamThreads = 256;
// Prefix ends live in dynamic shared memory: 8 bytes per segment, 48 KiB without an opt-in.
constexpr int kMaxSegments = 6144;

struct AdamScalars {
  float step_size;   // lr / (1 - beta1^step)
  float bc2_sqrt;    // sqrt(1 - beta2^step)
  float eps, grad_scale, beta2;
  float w1, w2;      // 1 - beta1, 1 - beta2
  float decay_on;    // 1 - lr * weight_decay
  float decay_off;   // 1 - lr * 0 = 1
  uint64_t seed;
  size_t index_base;  // rounding hashes the absolute index: shards round as the whole does
};

__global__ void adamw_kernel(bf16* params, float* master, const bf16* grads, float* m, float* v,
                             const AdamSegment* segments, int n_segments, size_t total,
                             AdamScalars a) {
  size_t* ends = dynamic_shared<size_t>();  // ends[s] = size[0] + ... + size[s]
  if (threadIdx.x < 32) {
    size_t carry = 0;
    for (int base = 0; base < n_segments; base += 32) {
      const int s = base + int(threadIdx.x);
      size_t x = s < n_segments ? segments[s].size : 0;
      for (int o = 1; o < 32; o <<= 1) {  // inclusive warp scan
        const size_t y = __shfl_up_sync(0xffffffffu, x, o);
        if (int(threadIdx.x) >= o) x += y;
      }
      if (s < n_segments) ends[s] = carry + x;
      carry += __shfl_sync(0xffffffffu, x, 31);
    }
  }
  __syncthreads();

  const size_t stride = size_t(gridDim.x) * blockDim.x;
  int seg = -1;
  size_t seg_begin = 0, seg_end = 0;  // [begin, end) of the current segment in j
  size_t seg_offset = 0;
  float decay = 1.0f;
  for (size_t j = size_t(blockIdx.x) * blockDim.x + threadIdx.x; j < total; j += stride) {
    if (seg < 0 || j >= seg_end) {
      // First segment whose end exceeds j (empty segments have end == previous end: skipped).
      int lo = 0, hi = n_segments - 1;
      while (lo < hi) {
        const int mid = (lo + hi) / 2;
        if (ends[mid] > j) hi = mid;
        else lo = mid + 1;
      }
      seg = lo;
      seg_end = ends[seg];
      if (j >= seg_end) break;  // total_elements beyond the sum of the sizes: nothing to update
      seg_begin = seg_end - segments[seg].size;
      seg_offset = segments[seg].offset;
      decay = segments[seg].decay ? a.decay_on : a.decay_off;
    }
    const size_t i = seg_offset + (j - seg_begin);

    const float g = __fmul_rn(__bfloat162float(grads[i]), a.grad_scale);
    float p = __fmul_rn(master[i], decay);
    const float m0 = m[i];
    // lerp as ATen evaluates it (the branch keeps the result exact at both ends).
    const float mi = a.w1 < 0.5f ? __fadd_rn(m0, __fmul_rn(a.w1, __fsub_rn(g, m0)))
                                 : __fsub_rn(g, __fmul_rn(__fsub_rn(g, m0), __fsub_rn(1.0f, a.w1)));
    const float vi = __fadd_rn(__fmul_rn(v[i], a.beta2), __fmul_rn(__fmul_rn(a.w2, g), g));
    const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), a.bc2_sqrt), a.eps);
    p = __fadd_rn(p, __fdiv_rn(__fmul_rn(-a.step_size, mi), denom));
    m[i] = mi;
    v[i] = vi;
    master[i] = p;
    params[i] = float_to_bf16_stochastic(p, rounding_random(a.index_base + i, p, a.seed));
  }
}

constexpr int kSumThreads = 256;
constexpr int kSumMaxBlocks = 1024;

// The bf16 weights from fp32 master weights, rounded exactly as adamw_kernel rounds them.
__global__ void round_weights_kernel(bf16* params, const float* master, size_t n, uint64_t seed) {
  for (size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
    params[i] = float_to_bf16_stochastic(master[i], rounding_random(i, master[i], seed));
}

// The pass-1 grid: enough blocks that each thread has ~16 elements, at most kSumMaxBlocks.
int sum_squares_blocks(size_t n) {
  const size_t per_block = size_t(kSumThreads) * 16;
  const size_t b = ceil_div(n, per_block);
  return int(b < 1 ? 1 : b > size_t(kSumMaxBlocks) ? kSumMaxBlocks : b);
}

template <bool kVec>
__global__ void sum_squares_partial_kernel(float* partials, const bf16* x, size_t n) {
  __shared__ float scratch[32];
  const size_t tid = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  float acc = 0.0f;
  if constexpr (kVec) {
    const size_t nvec = n / 8;
    for (size_t k = tid; k < nvec; k += stride) {
      const Bf16x8 p = load_bf16x8(x + k * 8);
      for (int e = 0; e < 8; e++) {
        const float f = __bfloat162float(p.v[e]);
        acc += f * f;
      }
    }
    // The last n % 8 elements: one each for the first threads of the grid.
    if (tid < n % 8) {
      const float f = __bfloat162float(x[nvec * 8 + tid]);
      acc += f * f;
    }
  } else {
    for (size_t k = tid; k < n; k += stride) {
      const float f = __bfloat162float(x[k]);
      acc += f * f;
    }
  }
  acc = block_sum(acc, scratch);
  if (threadIdx.x == 0) partials[blockIdx.x] = acc;
}

__global__ void sum_squares_final_kernel(double* out, const float* partials, int n_partials) {
  __shared__ double sh[kSumThreads];
  double acc = 0.0;
  for (int k = threadIdx.x; k < n_partials; k += blockDim.x) acc += double(partials[k]);
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int half = blockDim.x / 2; half > 0; half /= 2) {  // fixed tree (blockDim a power of 2)
    if (int(threadIdx.x) < half) sh[threadIdx.x] += sh[threadIdx.x + half];
    __syncthreads();
  }
  if (threadIdx.x == 0) *out = sh[0];
}

}  // namespace

void adamw(bf16* params, float* master, const bf16* grads, float* m, float* v,
           const AdamSegment* segments, int n_segments, size_t total_elements, const AdamParams& p,
           cudaStream_t stream) {
  if (n_segments < 0 || n_segments > kMaxSegments)
    throw std::invalid_argument("adamw: n_segments " + std::to_string(n_segments) + " outside [0, " +
                                std::to_string(kMaxSegments) + "]");
  if (p.step < 1) throw std::invalid_argument("adamw: step must be >= 1 (1-based), got " + std::to_string(p.step));
  if (total_elements == 0 || n_segments == 0) return;
  if (!params || !master || !grads || !m || !v || !segments) throw std::invalid_argument("adamw: null pointer");

  // torch computes these scalars in Python (double) and the tensor ops cast them to float.
  AdamScalars a;
  const double step = double(p.step);
  const double bc1 = 1.0 - std::pow(double(p.beta1), step);
  const double bc2 = 1.0 - std::pow(double(p.beta2), step);
  a.step_size = float(double(p.lr) / bc1);
  a.bc2_sqrt = float(std::sqrt(bc2));
  a.eps = p.eps;
  a.grad_scale = p.grad_scale;
  a.beta2 = p.beta2;
  a.w1 = float(1.0 - double(p.beta1));
  a.w2 = float(1.0 - double(p.beta2));
  a.decay_on = float(1.0 - double(p.lr) * double(p.weight_decay));
  a.decay_off = float(1.0 - double(p.lr) * 0.0);
  a.seed = p.seed;
  a.index_base = p.index_base;

  // Fill the GPU (a few blocks per SM) rather than cover the tensor: the loop is grid-stride.
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || sms <= 0) sms = 132;
  const size_t want = ceil_div(total_elements, size_t(kAdamThreads));
  const size_t cap = size_t(sms) * 8;
  const int blocks = int(want < cap ? want : cap);
  const size_t smem = size_t(n_segments) * sizeof(size_t);
  launch(adamw_kernel, dim3(blocks), dim3(kAdamThreads), smem, stream, params, master, grads, m, v,
         segments, n_segments, total_elements, a);
  OURO_CUDA_CHECK_LAUNCH();
}

void f32_to_bf16_stochastic(bf16* params, const float* master, size_t n, uint64_t seed, cudaStream_t stream) {
  if (n == 0) return;
  if (!params || !master) throw std::invalid_argument("f32_to_bf16_stochastic: null pointer");
  const size_t want = ceil_div(n, size_t(kAdamThreads));
  const int blocks = int(want < 4096 ? want : 4096);
  launch(round_weights_kernel, dim3(blocks), dim3(kAdamThreads), 0, stream, params, master, n, seed);
  OURO_CUDA_CHECK_LAUNCH();
}

size_t sum_squares_scratch_bytes(size_t n) { return size_t(sum_squares_blocks(n)) * sizeof(float); }

void sum_squares(double* out, const bf16* x, size_t n, void* scratch, cudaStream_t stream) {
  if (!out) throw std::invalid_argument("sum_squares: null output");
  if (n > 0 && (!x || !scratch)) throw std::invalid_argument("sum_squares: null input or scratch");
  if (n == 0) {
    OURO_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), stream));
    return;
  }
  const int blocks = sum_squares_blocks(n);
  float* partials = static_cast<float*>(scratch);
  if (reinterpret_cast<uintptr_t>(x) % 16 == 0)
    launch(sum_squares_partial_kernel<true>, dim3(blocks), dim3(kSumThreads), 0, stream, partials, x, n);
  else
    launch(sum_squares_partial_kernel<false>, dim3(blocks), dim3(kSumThreads), 0, stream, partials, x, n);
  OURO_CUDA_CHECK_LAUNCH();
  launch(sum_squares_final_kernel, dim3(1), dim3(kSumThreads), 0, stream, out, static_cast<const float*>(partials),
         blocks);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace ouro::kernels
