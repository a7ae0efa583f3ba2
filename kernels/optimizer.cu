#include "kernels/optimizer.h"
// AdamW over every parameter in one launch, and the deterministic sum of squares (grad norm).
//
// adamw. Layout: one flat parameter buffer; params (bf16), master/m/v (fp32) and grads (bf16) are
// all indexed by the same absolute element index i. The segments (a device table) say which
// ranges [offset, offset + size) are updated and whether weight decay applies to them. The launch
// walks the segments' CONCATENATION, j in [0, total_elements) with total_elements = the sum of the
// sizes, in a grid-stride loop (a grid sized to fill the GPU, not to the tensor: one launch for
// ~150 tensors of any sizes; indices j past the sum of the sizes are ignored). Each block first
// turns the table into inclusive prefix ends in shared memory (warp 0 scans it 32 at a time),
// finds the segment where its contiguous range of j starts once (binary search) and walks the
// few segments the range touches. Inside a segment the elements go 8 at a time where the
// absolute index is a multiple of 8 and every pointer is 16-byte aligned: two float4 loads and
// stores each of master, m, v, one 16-byte load of the bf16 gradients and one 16-byte store of
// the bf16 weights, and ONE Philox call for the 8 elements' rounding bits; the at most 14
// elements around those groups one at a time, with the same arithmetic and the same bits. The
// update is elementwise, so the result does not depend on the grid: bitwise deterministic.
//
// Math: torch.optim.AdamW's single-tensor path, operation for operation as CpuOps::adamw:
// the scalars (step size, sqrt of bias correction 2, lerp weight, decay factor) are computed on
// the host in double and cast to float; on the device every product / sum / quotient is an
// explicitly rounded __f*_rn so nvcc cannot fuse them into FMAs that CpuOps does not do.
// params[i] = master[i] stochastically rounded to bf16 with rounding_random(i, master[i], seed)
// (common.cuh: a pure function of the absolute index and the new value, so
// f32_to_bf16_stochastic below, run on a checkpoint's master weights, reproduces the same bf16
// weights). Memory bound (28 bytes per element).
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

// One element's update (both paths: the vector path is bitwise the scalar one).
__device__ __forceinline__ void adam_update(float gb, float& master, float& m, float& v, float decay,
                                            const AdamScalars& a) {
  const float g = __fmul_rn(gb, a.grad_scale);
  float p = __fmul_rn(master, decay);
  const float m0 = m;
  // lerp as ATen evaluates it (the branch keeps the result exact at both ends).
  const float mi = a.w1 < 0.5f ? __fadd_rn(m0, __fmul_rn(a.w1, __fsub_rn(g, m0)))
                               : __fsub_rn(g, __fmul_rn(__fsub_rn(g, m0), __fsub_rn(1.0f, a.w1)));
  const float vi = __fadd_rn(__fmul_rn(v, a.beta2), __fmul_rn(__fmul_rn(a.w2, g), g));
  const float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), a.bc2_sqrt), a.eps);
  p = __fadd_rn(p, __fdiv_rn(__fmul_rn(-a.step_size, mi), denom));
  m = mi;
  v = vi;
  master = p;
}

__device__ __forceinline__ bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Elements [i0, i1) (relative to the pointers; absolute index index_base + i) of one segment,
// by the whole block: the aligned groups of 8 (absolute index a multiple of 8, every pointer
// 16-byte aligned there) with 16-byte loads and stores and one Philox call each; the at most
// 7 + 7 elements around them one at a time.
__device__ void adam_range(bf16* params, float* master, const bf16* grads, float* m, float* v, size_t i0,
                           size_t i1, float decay, const AdamScalars& a) {
  const size_t abs0 = a.index_base + i0;
  size_t v0 = i0 + (8 - abs0 % 8) % 8;
  if (v0 > i1) v0 = i1;
  size_t v1 = v0 + (i1 - v0) / 8 * 8;
  if (!(aligned16(params + v0) && aligned16(master + v0) && aligned16(grads + v0) && aligned16(m + v0) &&
        aligned16(v + v0)))
    v0 = v1 = i1;  // no vector group: every element on the scalar path
  const size_t head = v0 - i0, tail = i1 - v1;
  for (size_t t = threadIdx.x; t < head + tail; t += blockDim.x) {
    const size_t i = t < head ? i0 + t : v1 + (t - head);
    float mi = m[i], vi = v[i], p = master[i];
    adam_update(__bfloat162float(grads[i]), p, mi, vi, decay, a);
    m[i] = mi;
    v[i] = vi;
    master[i] = p;
    params[i] = float_to_bf16_stochastic(p, rounding_random(a.index_base + i, p, a.seed));
  }
  const size_t groups = (v1 - v0) / 8;
  for (size_t k = threadIdx.x; k < groups; k += blockDim.x) {
    const size_t i = v0 + 8 * k;
    float4 pm[2], mm[2], vv[2];
    pm[0] = reinterpret_cast<const float4*>(master + i)[0], pm[1] = reinterpret_cast<const float4*>(master + i)[1];
    mm[0] = reinterpret_cast<const float4*>(m + i)[0], mm[1] = reinterpret_cast<const float4*>(m + i)[1];
    vv[0] = reinterpret_cast<const float4*>(v + i)[0], vv[1] = reinterpret_cast<const float4*>(v + i)[1];
    const Bf16x8 g = load_bf16x8(grads + i);
    float* P = reinterpret_cast<float*>(pm);
    float* M = reinterpret_cast<float*>(mm);
    float* Vv = reinterpret_cast<float*>(vv);
    const RoundingGroup grp = rounding_group(a.index_base + i, a.seed);
    Bf16x8 out;
#pragma unroll
    for (int e = 0; e < 8; e++) {
      adam_update(__bfloat162float(g.v[e]), P[e], M[e], Vv[e], decay, a);
      out.v[e] = float_to_bf16_stochastic(P[e], rounding_random(grp, a.index_base + i + e, P[e]));
    }
    reinterpret_cast<float4*>(master + i)[0] = pm[0], reinterpret_cast<float4*>(master + i)[1] = pm[1];
    reinterpret_cast<float4*>(m + i)[0] = mm[0], reinterpret_cast<float4*>(m + i)[1] = mm[1];
    reinterpret_cast<float4*>(v + i)[0] = vv[0], reinterpret_cast<float4*>(v + i)[1] = vv[1];
    store_bf16x8(params + i, out);
  }
}

// Block b updates positions [b * per_block, (b + 1) * per_block) of the segments'
// concatenation: it finds its first segment once (a binary search over the prefix ends) and
// walks forward through the few segments its range touches.
__global__ void adamw_kernel(bf16* params, float* master, const bf16* grads, float* m, float* v,
                             const AdamSegment* segments, int n_segments, size_t total,
                             size_t per_block, AdamScalars by_value, const AdamScalars* on_device) {
  const AdamScalars a = on_device ? *on_device : by_value;  // adamw_scalars_on_device: the step's own
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

  const size_t sum = ends[n_segments - 1], limit = total < sum ? total : sum;
  const size_t jb = size_t(blockIdx.x) * per_block;
  const size_t je = jb + per_block < limit ? jb + per_block : limit;
  if (jb >= je) return;
  // First segment whose end exceeds jb (empty segments have end == previous end: skipped).
  int lo = 0, hi = n_segments - 1;
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    if (ends[mid] > jb) hi = mid;
    else lo = mid + 1;
  }
  for (int seg = lo; seg < n_segments; seg++) {
    const size_t s_end = ends[seg], s_begin = s_end - segments[seg].size;
    if (s_begin >= je) break;
    const size_t j0 = jb > s_begin ? jb : s_begin, j1 = je < s_end ? je : s_end;
    if (j0 >= j1) continue;
    const size_t i0 = segments[seg].offset + (j0 - s_begin);
    adam_range(params, master, grads, m, v, i0, i0 + (j1 - j0), segments[seg].decay ? a.decay_on : a.decay_off, a);
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

AdamScalars adam_scalars(const AdamParams& p) {
  if (p.step < 1) throw std::invalid_argument("adamw: step must be >= 1 (1-based), got " + std::to_string(p.step));
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
  return a;
}

namespace {

void launch_adamw(bf16* params, float* master, const bf16* grads, float* m, float* v,
                  const AdamSegment* segments, int n_segments, size_t total_elements, const AdamScalars& a,
                  const AdamScalars* on_device, cudaStream_t stream) {
  if (n_segments < 0 || n_segments > kMaxSegments)
    throw std::invalid_argument("adamw: n_segments " + std::to_string(n_segments) + " outside [0, " +
                                std::to_string(kMaxSegments) + "]");
  if (total_elements == 0 || n_segments == 0) return;
  if (!params || !master || !grads || !m || !v || !segments) throw std::invalid_argument("adamw: null pointer");

  // Fill the GPU (a few blocks per SM), each block a contiguous range of whole vector groups
  // (>= 8 elements per thread); the update is elementwise, so the grid never changes the result.
  int sms = 0;
  if (cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, 0) != cudaSuccess || sms <= 0) sms = 132;
  const size_t want = ceil_div(total_elements, size_t(kAdamThreads) * 8);
  const size_t cap = size_t(sms) * 8;
  const int blocks = int(want < cap ? want : cap);
  const size_t per_block = ceil_div(ceil_div(total_elements, size_t(blocks)), size_t(8)) * 8;
  const size_t smem = size_t(n_segments) * sizeof(size_t);
  launch(adamw_kernel, dim3(blocks), dim3(kAdamThreads), smem, stream, params, master, grads, m, v,
         segments, n_segments, total_elements, per_block, a, on_device);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace

void adamw(bf16* params, float* master, const bf16* grads, float* m, float* v,
           const AdamSegment* segments, int n_segments, size_t total_elements, const AdamParams& p,
           cudaStream_t stream) {
  const AdamScalars a = adam_scalars(p);  // checks the step first, as it always did
  launch_adamw(params, master, grads, m, v, segments, n_segments, total_elements, a, nullptr, stream);
}

void adamw_scalars_on_device(bf16* params, float* master, const bf16* grads, float* m, float* v,
                             const AdamSegment* segments, int n_segments, size_t total_elements,
                             const AdamScalars* scalars, cudaStream_t stream) {
  if (!scalars) throw std::invalid_argument("adamw_scalars_on_device: null scalars");
  launch_adamw(params, master, grads, m, v, segments, n_segments, total_elements, AdamScalars{}, scalars, stream);
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
