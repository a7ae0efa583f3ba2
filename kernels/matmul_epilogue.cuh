// The GEMM epilogue shared by the Ampere (matmul.cu) and Hopper (matmul_sm90.cu) kernels: what
// happens to an fp32 accumulator before it is stored (bias, GELU with the pre-activation saved,
// overwrite or accumulate into the bf16 output, or raw fp32 split-K partials). Both kernel
// families call these so their numerics are identical element for element.
//
// GELU: the tanh approximation of src/cpu/cpu_elementwise.cpp, applied to the bf16-rounded
// pre-activation (the value saved in pre_gelu), so the fused result equals matmul-then-GELU.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels::matmul_detail {

__device__ __forceinline__ float gelu_tanh(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}

// What happens to an accumulated value before it is stored.
struct Epi {
  bf16* out;              // (M, ld) row-major
  int ld;                 // = Nn
  const bf16* bias;       // per column, or null
  bf16* pre_gelu;         // (M, ld) or null; only with gelu
  bool gelu;
  bool accumulate;        // out += value (rounded once from fp32)
  float* partial;         // split-K: raw fp32 sums to partial[slice][m][n] instead of the above
};

__device__ __forceinline__ void epi_store(const Epi& e, int m, int n, float v) {
  const size_t idx = size_t(m) * e.ld + n;
  if (e.accumulate) v += __bfloat162float(e.out[idx]);
  if (e.bias) v += __bfloat162float(e.bias[n]);
  if (e.gelu) {
    const bf16 p = __float2bfloat16_rn(v);
    if (e.pre_gelu) e.pre_gelu[idx] = p;
    v = gelu_tanh(__bfloat162float(p));
  }
  e.out[idx] = __float2bfloat16_rn(v);
}

// Eight adjacent columns (n % 8 == 0, all inside, 16-byte aligned rows): 16-byte loads and
// stores, the same numerics as epi_store.
__device__ __forceinline__ void epi_store8(const Epi& e, int m, int n, float (&v)[8]) {
  const size_t idx = size_t(m) * e.ld + n;
  if (e.accumulate) {
    const Bf16x8 old = load_bf16x8(e.out + idx);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] += __bfloat162float(old.v[j]);
  }
  if (e.bias) {
    const Bf16x8 b = load_bf16x8(e.bias + n);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] += __bfloat162float(b.v[j]);
  }
  if (e.gelu) {
    Bf16x8 p;
#pragma unroll
    for (int j = 0; j < 8; j++) p.v[j] = __float2bfloat16_rn(v[j]);
    if (e.pre_gelu) store_bf16x8(e.pre_gelu + idx, p);
#pragma unroll
    for (int j = 0; j < 8; j++) v[j] = gelu_tanh(__bfloat162float(p.v[j]));
  }
  Bf16x8 o;
#pragma unroll
  for (int j = 0; j < 8; j++) o.v[j] = __float2bfloat16_rn(v[j]);
  store_bf16x8(e.out + idx, o);
}

// Two adjacent columns (n even, both inside, 4-byte aligned: ld % 2 == 0): 4-byte loads and
// stores, the same numerics as epi_store.
__device__ __forceinline__ void epi_store2(const Epi& e, int m, int n, float v0, float v1) {
  const size_t idx = size_t(m) * e.ld + n;
  if (e.accumulate) {
    const __nv_bfloat162 old = *reinterpret_cast<const __nv_bfloat162*>(e.out + idx);
    v0 += __bfloat162float(old.x);
    v1 += __bfloat162float(old.y);
  }
  if (e.bias) {
    const __nv_bfloat162 b = *reinterpret_cast<const __nv_bfloat162*>(e.bias + n);
    v0 += __bfloat162float(b.x);
    v1 += __bfloat162float(b.y);
  }
  if (e.gelu) {
    __nv_bfloat162 p;
    p.x = __float2bfloat16_rn(v0);
    p.y = __float2bfloat16_rn(v1);
    if (e.pre_gelu) *reinterpret_cast<__nv_bfloat162*>(e.pre_gelu + idx) = p;
    v0 = gelu_tanh(__bfloat162float(p.x));
    v1 = gelu_tanh(__bfloat162float(p.y));
  }
  __nv_bfloat162 o;
  o.x = __float2bfloat16_rn(v0);
  o.y = __float2bfloat16_rn(v1);
  *reinterpret_cast<__nv_bfloat162*>(e.out + idx) = o;
}

}  // namespace ouro::kernels::matmul_detail
