#include "kernels/elementwise.h"

#include <algorithm>
#include <string>

// Memory-bound elementwise maps over n bf16 elements (any n), fp32 math.
//
// Layout: flat arrays. Tiling: a grid-stride loop over 8-element units, one 128-bit load per
// input and one 128-bit store per unit (Bf16x8; for fp32, two float4), 256 threads per block,
// enough blocks to fill the GPU and no more (each thread then loops). The n % 8 tail elements are
// done one by one by the first threads. When a pointer is not 16-byte aligned (a sub-tensor at an
// odd offset) the whole map runs element by element: correct, just slower.
// Every element is read and written by the same thread in the same iteration, so an output may
// alias an input (gelu_backward's dinp == dout, add_inplace); loads are therefore plain (not .nc).

namespace ouro::kernels {

namespace {

constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;
constexpr int kThreads = 256;
constexpr size_t kMaxBlocks = 132 * 16;  // ~ 16 resident blocks per SM on a 132-SM H100

// out = 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), as CpuOps::gelu_forward.
struct GeluForward {
  __device__ __forceinline__ float operator()(float x, float) const {
    const float u = kGeluScale * (x + kGeluCubic * x * x * x);
    return 0.5f * x * (1.0f + tanhf(u));
  }
};
// x = inp, y = dout: gelu'(x) * dout, as CpuOps::gelu_backward.
struct GeluBackward {
  __device__ __forceinline__ float operator()(float x, float dy) const {
    const float u = kGeluScale * (x + kGeluCubic * x * x * x);
    const float th = tanhf(u);
    const float sech2 = 1.0f - th * th;
    const float du = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
    return (0.5f * (1.0f + th) + 0.5f * x * sech2 * du) * dy;
  }
};
struct Add {
  __device__ __forceinline__ float operator()(float x, float y) const { return x + y; }
};

// out[i] = op(x[i], y[i]) (kBinary false: y is not read, op gets 0). kVec: 128-bit units.
template <class Op, bool kBinary, bool kVec>
__global__ void map_kernel(bf16* out, const bf16* x, const bf16* y, size_t n) {
  const Op op;
  const size_t tid = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t done = 0;
  if constexpr (kVec) {
    const size_t units = n / 8;
    for (size_t u = tid; u < units; u += stride) {
      const Bf16x8 xv = load_bf16x8(x + u * 8);
      Bf16x8 yv;
      if constexpr (kBinary) yv = load_bf16x8(y + u * 8);
      Bf16x8 ov;
#pragma unroll
      for (int i = 0; i < 8; i++)
        ov.v[i] = __float2bfloat16_rn(op(__bfloat162float(xv.v[i]), kBinary ? __bfloat162float(yv.v[i]) : 0.0f));
      store_bf16x8(out + u * 8, ov);
    }
    done = units * 8;
  }
  for (size_t i = done + tid; i < n; i += stride)
    out[i] = __float2bfloat16_rn(op(__bfloat162float(x[i]), kBinary ? __bfloat162float(y[i]) : 0.0f));
}

__global__ void f32_to_bf16_kernel(bf16* dst, const float* src, size_t n, bool vec) {
  const size_t tid = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t done = 0;
  if (vec) {
    const size_t units = n / 8;
    for (size_t u = tid; u < units; u += stride) {
      const float4 lo = reinterpret_cast<const float4*>(src)[2 * u];
      const float4 hi = reinterpret_cast<const float4*>(src)[2 * u + 1];
      Bf16x8 o;
      o.v[0] = __float2bfloat16_rn(lo.x);
      o.v[1] = __float2bfloat16_rn(lo.y);
      o.v[2] = __float2bfloat16_rn(lo.z);
      o.v[3] = __float2bfloat16_rn(lo.w);
      o.v[4] = __float2bfloat16_rn(hi.x);
      o.v[5] = __float2bfloat16_rn(hi.y);
      o.v[6] = __float2bfloat16_rn(hi.z);
      o.v[7] = __float2bfloat16_rn(hi.w);
      store_bf16x8(dst + u * 8, o);
    }
    done = units * 8;
  }
  for (size_t i = done + tid; i < n; i += stride) dst[i] = __float2bfloat16_rn(src[i]);
}

__global__ void bf16_to_f32_kernel(float* dst, const bf16* src, size_t n, bool vec) {
  const size_t tid = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
  const size_t stride = size_t(gridDim.x) * blockDim.x;
  size_t done = 0;
  if (vec) {
    const size_t units = n / 8;
    for (size_t u = tid; u < units; u += stride) {
      const Bf16x8 v = load_bf16x8(src + u * 8);
      reinterpret_cast<float4*>(dst)[2 * u] =
          make_float4(__bfloat162float(v.v[0]), __bfloat162float(v.v[1]), __bfloat162float(v.v[2]),
                      __bfloat162float(v.v[3]));
      reinterpret_cast<float4*>(dst)[2 * u + 1] =
          make_float4(__bfloat162float(v.v[4]), __bfloat162float(v.v[5]), __bfloat162float(v.v[6]),
                      __bfloat162float(v.v[7]));
    }
    done = units * 8;
  }
  for (size_t i = done + tid; i < n; i += stride) dst[i] = __bfloat162float(src[i]);
}

bool aligned16(const void* p) { return reinterpret_cast<uintptr_t>(p) % 16 == 0; }

// Blocks for `work` threads' worth of units (vectorised: n/8 units, else n), capped.
dim3 grid_for(size_t n, bool vec) {
  const size_t work = vec ? std::max<size_t>(n / 8, n % 8) : n;
  return dim3(unsigned(std::clamp<size_t>(ceil_div(work, size_t(kThreads)), 1, kMaxBlocks)));
}

void check_ptrs(const void* out, const void* in, const char* who) {
  if (!out || !in) throw std::invalid_argument(std::string(who) + ": null pointer");
}

template <class Op, bool kBinary>
void run_map(bf16* out, const bf16* x, const bf16* y, size_t n, cudaStream_t stream) {
  if (n == 0) return;
  const bool vec = aligned16(out) && aligned16(x) && (!kBinary || aligned16(y));
  if (vec)
    launch(map_kernel<Op, kBinary, true>, grid_for(n, true), dim3(kThreads), 0, stream, out, x, y, n);
  else
    launch(map_kernel<Op, kBinary, false>, grid_for(n, false), dim3(kThreads), 0, stream, out, x, y, n);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace

void gelu_forward(bf16* out, const bf16* inp, size_t n, cudaStream_t stream) {
  check_ptrs(out, inp, "gelu_forward");
  run_map<GeluForward, false>(out, inp, nullptr, n, stream);
}

void gelu_backward(bf16* dinp, const bf16* inp, const bf16* dout, size_t n, cudaStream_t stream) {
  check_ptrs(dinp, inp, "gelu_backward");
  check_ptrs(dinp, dout, "gelu_backward");
  run_map<GeluBackward, true>(dinp, inp, dout, n, stream);
}

void residual_forward(bf16* out, const bf16* a, const bf16* b, size_t n, cudaStream_t stream) {
  check_ptrs(out, a, "residual_forward");
  check_ptrs(out, b, "residual_forward");
  run_map<Add, true>(out, a, b, n, stream);
}

void add_inplace(bf16* dst, const bf16* src, size_t n, cudaStream_t stream) {
  check_ptrs(dst, src, "add_inplace");
  run_map<Add, true>(dst, dst, src, n, stream);
}

void f32_to_bf16(bf16* dst, const float* src, size_t n, cudaStream_t stream) {
  check_ptrs(dst, src, "f32_to_bf16");
  if (n == 0) return;
  const bool vec = aligned16(dst) && aligned16(src);
  launch(f32_to_bf16_kernel, grid_for(n, vec), dim3(kThreads), 0, stream, dst, src, n, vec);
  OURO_CUDA_CHECK_LAUNCH();
}

void bf16_to_f32(float* dst, const bf16* src, size_t n, cudaStream_t stream) {
  check_ptrs(dst, src, "bf16_to_f32");
  if (n == 0) return;
  const bool vec = aligned16(dst) && aligned16(src);
  launch(bf16_to_f32_kernel, grid_for(n, vec), dim3(kThreads), 0, stream, dst, src, n, vec);
  OURO_CUDA_CHECK_LAUNCH();
}

}  // namespace ouro::kernels
