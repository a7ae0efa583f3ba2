// Hardware numerics for the emulator (OURO_SIMT_HW_MATH=1).
//
// nvcc does not compile expf, exp2f, tanhf, rsqrtf, __expf, __fdividef, ... to correctly rounded
// results: they become approximate instructions (ex2.approx, rcp.approx, rsqrt.approx, some .ftz)
// whose error bounds the PTX ISA and the CUDA Math API document. By default the emulator returns
// libm's (nearly) correctly rounded values, which can hide a kernel whose test tolerance only
// holds for exact math. In hardware-math mode, inside kernels, each of these functions returns a
// value displaced from the exact result by the documented bound less half an ulp, then rounded,
// so its error lies in [bound - 1, bound] ulps: the sign of the displacement is a hash of the
// operand bits (deterministic, not biased one way), and .ftz instructions flush subnormal inputs
// and outputs to sign-preserving zero. Host code (tl_thread null) always gets libm.
//
// Bounds used (CUDA C++ Programming Guide, "Mathematical Functions" appendix; PTX ISA 8.x):
//   ex2.approx.f32          2 ulp, full range (exp2f is this instruction; .ftz in tanhf)
//   rcp.approx.f32          1 ulp, full range (.ftz in tanhf; __fdividef = x * rcp.approx(y))
//   rsqrtf                  2 ulp (rsqrt.approx.f32); __frsqrt_rn is IEEE-rounded: exact
//   expf, sinf, cosf, erff  2 ulp;  logf, log2f 1 ulp;  tanhf 2 ulp (polynomial for |x| < 0.6)
//   __expf                  ex2.approx.ftz(x * log2(e)): 2 + floor(|1.173 x|) ulp, from the
//                           rounding of the product, which is emulated as such
//   __logf                  lg2.approx.ftz * ln 2: abs error 2^-21.41 in [0.5, 2], else 3 ulp
//   __sinf, __cosf          abs error 2^-21.41 in [-pi, pi] (sin/cos.approx.ftz)
//   __fdividef              2 ulp for 2^-126 <= |y| <= 2^126; 0 for 2^126 < |y| < 2^128
// Results the float format holds exactly (exp(0), 2^n, log(1)) are returned exactly.
// FMA contraction: nvcc contracts a*b+c into one rounding by default and g++ here does not; the
// difference is at most half an ulp of the product per contracted operation (docs/perf.md).
#pragma once
#include <atomic>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include "ouro/simt/thread.h"

namespace ouro::simt {

// Default: OURO_SIMT_HW_MATH=1 (off when unset or 0).
bool hw_math();
void set_hw_math(bool on);

namespace detail {
extern std::atomic<int> g_hw_math;  // -1: not read from the environment yet
bool hw_math_from_env();
}  // namespace detail

// True in a kernel while hardware math is on: the dev_* functions below then approximate.
inline bool hw_math_active() {
  if (!in_kernel()) return false;
  const int v = detail::g_hw_math.load(std::memory_order_relaxed);
  return v < 0 ? detail::hw_math_from_env() : v != 0;
}

namespace hw {

inline float flush_subnormal(float x) {
  return std::fpclassify(x) == FP_SUBNORMAL ? std::copysign(0.0f, x) : x;
}

// One ulp of a float of magnitude |v| (the spacing above the largest power of two <= |v|).
inline double ulp_of(double v) {
  const double a = std::fabs(v);
  if (a < 0x1p-126) return 0x1p-149;  // subnormal spacing
  int e = 0;
  std::frexp(a, &e);  // a = m 2^e, m in [0.5, 1)
  return std::ldexp(1.0, e - 24);
}

// A deterministic sign from the operand bits (splitmix64 finaliser).
inline double hash_sign(std::uint64_t bits) {
  bits += 0x9E3779B97F4A7C15ull;
  bits = (bits ^ (bits >> 30)) * 0xBF58476D1CE4E5B9ull;
  bits = (bits ^ (bits >> 27)) * 0x94D049BB133111EBull;
  bits ^= bits >> 31;
  return (bits & 1) ? 1.0 : -1.0;
}

// `exact` (a double close to the true value) displaced by (ulps - 0.5) ulp, rounded to float:
// the result is within `ulps` ulp of the true value and at least ulps - 1 away from it.
// A result the float format holds exactly (2^n from ex2 at an integer, exp(0) = 1, log(1) = 0,
// 1/2^n) is returned as is: the hardware's range reduction leaves nothing to approximate there
// (CUDA's expf(0) is 1), and kernels rely on it (a one-entry softmax is exactly 1).
inline float perturb_ulps(double exact, double ulps, std::uint64_t key) {
  if (!std::isfinite(exact) || static_cast<double>(static_cast<float>(exact)) == exact) return static_cast<float>(exact);
  const float r = static_cast<float>(exact + hash_sign(key) * (ulps - 0.5) * ulp_of(exact));
  // Never cross into overflow or a sign change the hardware could not produce.
  if (!std::isfinite(r) || std::signbit(r) != std::signbit(exact)) return static_cast<float>(exact);
  return r;
}

// `exact` displaced by 0.9 of an absolute bound, rounded to float.
inline float perturb_abs(double exact, double bound, std::uint64_t key) {
  if (!std::isfinite(exact)) return static_cast<float>(exact);
  return static_cast<float>(exact + hash_sign(key) * 0.9 * bound);
}

inline std::uint64_t key1(float x, std::uint64_t op) { return (std::uint64_t(std::bit_cast<std::uint32_t>(x)) << 8) ^ op; }

// 2^-21.41: the absolute bound of __logf on [0.5, 2] and of __sinf/__cosf on [-pi, pi].
inline const double kAbs2m21_41 = std::exp2(-21.41);

// ---- PTX instructions --------------------------------------------------------------------------
inline float ex2_approx(float x, bool ftz) {
  if (ftz) x = flush_subnormal(x);
  const float r = perturb_ulps(std::exp2(static_cast<double>(x)), 2.0, key1(x, 1));
  return ftz ? flush_subnormal(r) : r;
}
inline float rcp_approx(float x, bool ftz) {
  if (ftz) x = flush_subnormal(x);
  const float r = perturb_ulps(1.0 / static_cast<double>(x), 1.0, key1(x, 2));
  return ftz ? flush_subnormal(r) : r;
}
inline float rsqrt_approx(float x) {
  return perturb_ulps(1.0 / std::sqrt(static_cast<double>(x)), 2.0, key1(x, 3));
}

// ---- the functions nvcc lowers to them -------------------------------------------------------------
inline float dev_expf(float x) { return perturb_ulps(std::exp(static_cast<double>(x)), 2.0, key1(x, 4)); }
inline float dev_logf(float x) { return perturb_ulps(std::log(static_cast<double>(x)), 1.0, key1(x, 5)); }
inline float dev_log2f(float x) { return perturb_ulps(std::log2(static_cast<double>(x)), 1.0, key1(x, 6)); }
inline float dev_sinf(float x) { return perturb_ulps(std::sin(static_cast<double>(x)), 2.0, key1(x, 7)); }
inline float dev_cosf(float x) { return perturb_ulps(std::cos(static_cast<double>(x)), 2.0, key1(x, 8)); }
inline float dev_erff(float x) { return perturb_ulps(std::erf(static_cast<double>(x)), 2.0, key1(x, 9)); }
// tanhf: nvcc's tanhf computes 1 - 2 / (2^(2|x| log2 e) + 1) through ex2.approx.ftz and
// rcp.approx.ftz for larger |x| (a polynomial near 0) and documents 2 ulp overall. The .ftz
// cannot show at the output (a flushed subnormal 2^-y only occurs where the result is +-1 to
// the last bit), so the function is modelled at its documented bound.
inline float dev_tanhf(float x) {
  if (std::isnan(x)) return x;
  // Saturated like the device's formula: 2 / (e + 1) < 2^-25 rounds 1 - it to exactly 1.
  if (std::fabs(x) >= 9.1f) return std::copysign(1.0f, x);
  return perturb_ulps(std::tanh(static_cast<double>(x)), 2.0, key1(x, 10));
}
inline float dev_exp2f(float x) { return ex2_approx(x, false); }
inline float fast_expf(float x) { return ex2_approx(x * 1.4426950408889634f, true); }
inline float fast_logf(float x) {
  x = flush_subnormal(x);
  const double exact = std::log(static_cast<double>(x));
  const float r = (x >= 0.5f && x <= 2.0f) ? perturb_abs(exact, kAbs2m21_41, key1(x, 11))
                                           : perturb_ulps(exact, 3.0, key1(x, 11));
  return flush_subnormal(r);
}
inline float fast_sinf(float x) {
  x = flush_subnormal(x);
  const double exact = std::sin(static_cast<double>(x));
  return flush_subnormal(std::fabs(x) <= 3.14159265f ? perturb_abs(exact, kAbs2m21_41, key1(x, 12))
                                                     : perturb_ulps(exact, 2.0, key1(x, 12)));
}
inline float fast_cosf(float x) {
  x = flush_subnormal(x);
  const double exact = std::cos(static_cast<double>(x));
  return flush_subnormal(std::fabs(x) <= 3.14159265f ? perturb_abs(exact, kAbs2m21_41, key1(x, 13))
                                                     : perturb_ulps(exact, 2.0, key1(x, 13)));
}
inline float fdividef(float x, float y) {
  const float ay = std::fabs(y);
  if (ay > 0x1p126f && std::isfinite(ay)) return std::isinf(x) ? std::numeric_limits<float>::quiet_NaN() : 0.0f;
  // x * rcp.approx(y) on the device; modelled at its documented 2 ulp (an exactly representable
  // quotient, y a power of two or x = y, stays exact as elsewhere).
  return perturb_ulps(static_cast<double>(x) / static_cast<double>(y), 2.0, key1(x, 14) ^ (key1(y, 15) << 1));
}

}  // namespace hw
}  // namespace ouro::simt
