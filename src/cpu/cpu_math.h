// Elementary functions for the cpu backend's elementwise loops, written so that the compiler
// vectorizes the loops that call them (glibc's tanhf is a scalar call of ~15 ns: it was half of
// a training step of the small E1 model, docs/perf.md "Small models on the CPU").
//
// tanh is evaluated in double and rounded to float once, so it is at least as accurate as
// glibc's tanhf (fdlibm's, up to ~1 ulp): the double result is within ~2^-45 relative of tanh, and
// the rounding to float is the correctly rounded one except within that distance of a halfway
// point (tests/test_cpu_ops.cpp CpuMath.TanhIsCorrectlyRoundedAlmostEverywhere measures both).
// Every multiply-add is an explicit std::fma and the rest are single IEEE operations, so the
// vectorized loop body and its scalar remainder compute the same bits: results do not depend on
// where a thread's chunk of a loop starts, hence not on the thread count.
#pragma once
#include <bit>
#include <cmath>
#include <cstdint>

namespace ouro::cpu_math {

// e^y for |y| <= 700 (no overflow or underflow handling: the caller clamps). y = k ln2 + r
// with |r| <= ln2/2; e^r by its Taylor series to r^12 (truncation < 2e-16 relative), 2^k
// assembled in the exponent bits. The rounding constant 1.5 * 2^52 leaves k in the low bits of
// y log2(e) + 1.5 * 2^52, and the shift by 52 drops everything above the exponent field.
inline double exp_small_range(double y) {
  constexpr double kLog2e = 1.4426950408889634;
  constexpr double kLn2Hi = 0x1.62e42fefa3800p-1;  // ln 2 with 13 trailing zero bits
  constexpr double kLn2Lo = 0x1.ef35793c76730p-45;
  constexpr double kRound = 0x1.8p52;
  const double kr = std::fma(y, kLog2e, kRound);
  const double k = kr - kRound;
  double r = std::fma(-k, kLn2Hi, y);
  r = std::fma(-k, kLn2Lo, r);
  double p = 1.0 / 479001600.0;  // 1/12!
  p = std::fma(p, r, 1.0 / 39916800.0);
  p = std::fma(p, r, 1.0 / 3628800.0);
  p = std::fma(p, r, 1.0 / 362880.0);
  p = std::fma(p, r, 1.0 / 40320.0);
  p = std::fma(p, r, 1.0 / 5040.0);
  p = std::fma(p, r, 1.0 / 720.0);
  p = std::fma(p, r, 1.0 / 120.0);
  p = std::fma(p, r, 1.0 / 24.0);
  p = std::fma(p, r, 1.0 / 6.0);
  p = std::fma(p, r, 0.5);
  p = std::fma(p, r, 1.0);
  p = std::fma(p, r, 1.0);
  const uint64_t scale_bits = (std::bit_cast<uint64_t>(kr) + 1023) << 52;
  return p * std::bit_cast<double>(scale_bits);
}

// tanh(x) rounded to float; NaN gives NaN, +-inf gives +-1, the sign of zero is kept.
inline float tanh_f32(float x) {
  // The branches are integer comparisons of |x|'s bits and bit-mask selections: a floating-point
  // comparison may trap (on a NaN), and a loop holding one in a branch does not vectorize; a
  // `?:` would let the compiler move the division below into such a branch.
  const uint32_t abs_bits = std::bit_cast<uint32_t>(x) & 0x7fffffffu;
  constexpr uint32_t k20 = 0x41a00000u, kInf = 0x7f800000u, kSmall = 0x3d000000u;  // 20, inf, 2^-5
  // |x| >= 20: 1 - tanh(|x|) < 1e-17, far below half a float ulp of 1. A NaN stays a NaN.
  const uint32_t clamp = uint32_t(0) - uint32_t(abs_bits > k20 && abs_bits <= kInf);
  const double a = double(std::bit_cast<float>((k20 & clamp) | (abs_bits & ~clamp)));
  // Small |x|: the odd series to x^7 (next term 62/2835 x^9: < 2^-45 relative for |x| < 2^-5),
  // where 1 - 2/(e^2x + 1) would lose bits to cancellation.
  const double a2 = a * a;
  double s = -17.0 / 315.0;
  s = std::fma(s, a2, 2.0 / 15.0);
  s = std::fma(s, a2, -1.0 / 3.0);
  s = std::fma(s, a2, 1.0);
  const double small = a * s;
  // Elsewhere the cancellation costs at most 5 of double's 53 bits.
  const double large = 1.0 - 2.0 / (exp_small_range(2.0 * a) + 1.0);
  const uint64_t use_small = uint64_t(0) - uint64_t(abs_bits < kSmall);
  const uint64_t bits =
      (std::bit_cast<uint64_t>(small) & use_small) | (std::bit_cast<uint64_t>(large) & ~use_small);
  return std::copysign(float(std::bit_cast<double>(bits)), x);
}

// e^x rounded to float (the softmax's exponential): evaluated in double like tanh_f32, so it is
// correctly rounded except within ~2^-45 of a halfway point. NaN gives NaN, -inf 0, +inf inf.
inline float exp_f32(float x) {
  // |x| > 150: e^x is 0 or inf in float; clamped (sign kept) so the double stays in range.
  const uint32_t bits = std::bit_cast<uint32_t>(x);
  const uint32_t abs_bits = bits & 0x7fffffffu;
  constexpr uint32_t k150 = 0x43160000u, kInf = 0x7f800000u;
  const uint32_t clamp = uint32_t(0) - uint32_t(abs_bits > k150 && abs_bits <= kInf);
  const uint32_t clamped = ((k150 | (bits & 0x80000000u)) & clamp) | (bits & ~clamp);
  return float(exp_small_range(double(std::bit_cast<float>(clamped))));
}

}  // namespace ouro::cpu_math
