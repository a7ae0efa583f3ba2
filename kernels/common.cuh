// Small device utilities shared by every kernel family: the bf16 type, ceil_div, warp and block
// reductions, 128-bit packed loads and stores, the Philox4x32-10 counter-based RNG and
// stochastic rounding to bf16. Header-only; included by kernels/*.cu after <ouro/cuda.h>.
#pragma once
#include <ouro/cuda.h>

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace ouro::kernels {

using bf16 = __nv_bfloat16;

__host__ __device__ constexpr int ceil_div(int a, int b) { return (a + b - 1) / b; }
__host__ __device__ constexpr size_t ceil_div(size_t a, size_t b) { return (a + b - 1) / b; }

// The current device's multiprocessor count, for host code sizing persistent or split grids; 1 when
// it cannot be read (a grid sized for one SM is correct, only slower).
inline int device_sm_count() {
  int dev = 0, n = 0;
  if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
    (void)cudaGetLastError();
    return 1;
  }
  return n > 0 ? n : 1;
}

// Sum over the 32 lanes of a full warp (every lane gets the result).
__device__ __forceinline__ float warp_sum(float x) {
  for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
  return x;
}
__device__ __forceinline__ float warp_max(float x) {
  for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
  return x;
}

// Sum over a block of whole warps (blockDim.x a multiple of 32, at most 1024); every thread
// gets the result. `scratch` holds 32 floats of shared memory, reusable after the call returns.
__device__ __forceinline__ float block_sum(float x, float* scratch) {
  const int lane = threadIdx.x % 32, warp = threadIdx.x / 32, nwarps = blockDim.x / 32;
  x = warp_sum(x);
  __syncthreads();  // scratch may still be read by a previous call
  if (lane == 0) scratch[warp] = x;
  __syncthreads();
  x = lane < nwarps ? scratch[lane] : 0.0f;
  return warp_sum(x);
}

// Eight bf16 in one 16-byte word: the unit of a 128-bit load or store (LDG.128 / STG.128).
struct alignas(16) Bf16x8 {
  bf16 v[8];
};
__device__ __forceinline__ Bf16x8 load_bf16x8(const bf16* p) { return *reinterpret_cast<const Bf16x8*>(p); }
__device__ __forceinline__ void store_bf16x8(bf16* p, const Bf16x8& x) { *reinterpret_cast<Bf16x8*>(p) = x; }

// V consecutive bf16 <-> fp32 registers (V = 8: one 128-bit access, p 16-byte aligned; V = 1:
// one element), for kernels templated on whether their rows allow 128-bit accesses.
template <int V>
__device__ __forceinline__ void load_vec(float (&f)[V], const bf16* p) {
  if constexpr (V == 8) {
    const Bf16x8 v = load_bf16x8(p);
    for (int i = 0; i < 8; i++) f[i] = __bfloat162float(v.v[i]);  // constant trip count: unrolled
  } else {
    f[0] = __bfloat162float(*p);
  }
}
template <int V>
__device__ __forceinline__ void store_vec(bf16* p, const float (&f)[V]) {
  if constexpr (V == 8) {
    Bf16x8 v;
    for (int i = 0; i < 8; i++) v.v[i] = __float2bfloat16_rn(f[i]);
    store_bf16x8(p, v);
  } else {
    *p = __float2bfloat16_rn(f[0]);
  }
}

// Philox4x32-10 (Salmon et al., SC'11): four 32-bit random words from a 128-bit counter and a
// 64-bit key, with no state, so any thread can draw the numbers of any (seed, offset) directly.
// The same function runs on the host, which is how the tests and the CPU path reproduce it.
struct Philox4 {
  uint32_t x[4];
};
__host__ __device__ inline Philox4 philox4x32_10(uint32_t c0, uint32_t c1, uint32_t c2, uint32_t c3,
                                                 uint32_t k0, uint32_t k1) {
  for (int round = 0; round < 10; round++) {
    const uint64_t p0 = uint64_t(0xD2511F53u) * c0;
    const uint64_t p1 = uint64_t(0xCD9E8D57u) * c2;
    const uint32_t n0 = uint32_t(p1 >> 32) ^ c1 ^ k0;
    const uint32_t n2 = uint32_t(p0 >> 32) ^ c3 ^ k1;
    c0 = n0;
    c1 = uint32_t(p1);
    c2 = n2;
    c3 = uint32_t(p0);
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  return Philox4{{c0, c1, c2, c3}};
}
// A uniform float in [0, 1) from a 32-bit word (24 significant bits).
__host__ __device__ inline float uniform01(uint32_t r) { return float(r >> 8) * (1.0f / 16777216.0f); }

// The random bits that round element i (absolute index) holding `value`: one Philox call keyed
// by seed with counter i / 8 gives 8 x 16 bits, one half-word per element of an aligned group
// of 8 (AdamW's 16-byte vector, one call per 8 elements instead of one per element), XORed with
// a 32-bit mix of the value's bits. Still a pure function of (seed, absolute index, value): the
// bf16 copy is a function of the fp32 master weights (reloading a checkpoint's master
// reproduces it bit for bit), a ZeRO-1 shard rounds as the whole does, and the bits change at
// every update because the value does (the Philox word alone would be the same every step).
struct RoundingGroup {
  Philox4 r;
};
__host__ __device__ inline RoundingGroup rounding_group(size_t i, uint64_t seed) {
  const uint64_t g = uint64_t(i) / 8;
  return {philox4x32_10(uint32_t(g), uint32_t(g >> 32), 0x2545F491u, 0u, uint32_t(seed), uint32_t(seed >> 32))};
}
// murmur3's 32-bit finaliser: every output bit depends on every bit of the value.
__host__ __device__ inline uint32_t rounding_mix(float value) {
  uint32_t h;
  memcpy(&h, &value, sizeof h);
  h ^= h >> 16;
  h *= 0x85EBCA6Bu;
  h ^= h >> 13;
  h *= 0xC2B2AE35u;
  h ^= h >> 16;
  return h;
}
__host__ __device__ inline uint32_t rounding_random(const RoundingGroup& grp, size_t i, float value) {
  const uint32_t half = (grp.r.x[(i % 8) / 2] >> (16 * (i % 2))) & 0xffffu;
  return (half ^ rounding_mix(value)) & 0xffffu;
}
__host__ __device__ inline uint32_t rounding_random(size_t i, float value, uint64_t seed) {
  return rounding_random(rounding_group(i, seed), i, value);
}

// fp32 -> bf16 with stochastic rounding: adds 16 random low bits before truncating, so the
// expected value of the result equals x (round-to-nearest would lose small AdamW updates).
// NaN and infinities pass through unchanged.
__device__ __forceinline__ bf16 float_to_bf16_stochastic(float x, uint32_t random) {
  uint32_t bits = __float_as_uint(x);
  if ((bits & 0x7f800000u) == 0x7f800000u) return __float2bfloat16_rn(x);
  bits = (bits + (random & 0xffffu)) & 0xffff0000u;
  return __float2bfloat16_rn(__uint_as_float(bits));
}

}  // namespace ouro::kernels
