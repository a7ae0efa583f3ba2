// Device math, bit and memory intrinsics that cuda_runtime.h / cuda_bf16.h do not give g++.
//
// The fast-math forms (__expf, __fdividef, ...) and the functions nvcc lowers to approximate
// instructions are libm's accurate ones by default; OURO_SIMT_HW_MATH=1 gives kernels the
// hardware's documented error instead (ouro/simt/hw_math.h).
// The bf16/half conversions and arithmetic come from the toolkit's own headers (their host
// implementations compile under g++ and round exactly like the device).
#pragma once
#include <bit>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <source_location>
#include <thread>
#include <type_traits>

#include "ouro/simt/hw_math.h"
#include "ouro/simt/report.h"
#include "ouro/simt/thread.h"

// ---- fast math -------------------------------------------------------------------------------
// Exact (libm) by default; under OURO_SIMT_HW_MATH=1, inside kernels, the hardware's documented
// approximation (ouro/simt/hw_math.h).
namespace ouro::simt::hw {
inline bool on() { return ::ouro::simt::hw_math_active(); }
}  // namespace ouro::simt::hw
inline float __expf(float x) { return ouro::simt::hw::on() ? ouro::simt::hw::fast_expf(x) : std::exp(x); }
inline float __exp10f(float x) { return std::pow(10.0f, x); }
inline float __logf(float x) { return ouro::simt::hw::on() ? ouro::simt::hw::fast_logf(x) : std::log(x); }
inline float __log2f(float x) { return std::log2(x); }
inline float __log10f(float x) { return std::log10(x); }
inline float __sinf(float x) { return ouro::simt::hw::on() ? ouro::simt::hw::fast_sinf(x) : std::sin(x); }
inline float __cosf(float x) { return ouro::simt::hw::on() ? ouro::simt::hw::fast_cosf(x) : std::cos(x); }
inline float __tanf(float x) { return std::tan(x); }
inline void __sincosf(float x, float* s, float* c) { *s = __sinf(x); *c = __cosf(x); }
inline float __powf(float x, float y) { return std::pow(x, y); }
inline float __fdividef(float x, float y) {
  return ouro::simt::hw::on() ? ouro::simt::hw::fdividef(x, y) : x / y;
}
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __fsqrt_rn(float x) { return std::sqrt(x); }
// IEEE round-to-nearest (1.0f / sqrtf(x) would round twice, up to 1.4 ulp away).
inline float __frsqrt_rn(float x) { return static_cast<float>(1.0 / std::sqrt(static_cast<double>(x))); }
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) { return std::fma(a, b, c); }
inline float __saturatef(float x) { return x >= 1.0f ? 1.0f : x > 0.0f ? x : 0.0f; }  // NaN -> 0
#if !defined(OURO_SIMT_HAVE_RSQRT)
inline float rsqrtf(float x) {
  return ouro::simt::hw::on() ? ouro::simt::hw::rsqrt_approx(x) : __frsqrt_rn(x);
}
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
#endif

// The C functions nvcc lowers to approximate instructions: libm's own function outside hardware
// math (so host code and the default mode are unchanged), the hardware's within it. They are
// global libm functions, so device code reaches them through function-like macros defined after
// every standard header this one includes (`expf(x)`, `::expf(x)` and `std::expf(x)` alike).
#define OURO_SIMT_HW_FN(name, hwfn)                                                          \
  inline float ouro_simt_##name(float x) { return ouro::simt::hw::on() ? hwfn(x) : ::name(x); }
OURO_SIMT_HW_FN(expf, ouro::simt::hw::dev_expf)
OURO_SIMT_HW_FN(exp2f, ouro::simt::hw::dev_exp2f)
OURO_SIMT_HW_FN(logf, ouro::simt::hw::dev_logf)
OURO_SIMT_HW_FN(log2f, ouro::simt::hw::dev_log2f)
OURO_SIMT_HW_FN(sinf, ouro::simt::hw::dev_sinf)
OURO_SIMT_HW_FN(cosf, ouro::simt::hw::dev_cosf)
OURO_SIMT_HW_FN(tanhf, ouro::simt::hw::dev_tanhf)
OURO_SIMT_HW_FN(erff, ouro::simt::hw::dev_erff)
#undef OURO_SIMT_HW_FN
namespace std {  // so that std::expf(x), which the macros below turn into std::ouro_simt_expf(x), compiles
using ::ouro_simt_expf, ::ouro_simt_exp2f, ::ouro_simt_logf, ::ouro_simt_log2f, ::ouro_simt_sinf, ::ouro_simt_cosf,
    ::ouro_simt_tanhf, ::ouro_simt_erff;
}  // namespace std
#define expf(x) ouro_simt_expf(x)
#define exp2f(x) ouro_simt_exp2f(x)
#define logf(x) ouro_simt_logf(x)
#define log2f(x) ouro_simt_log2f(x)
#define sinf(x) ouro_simt_sinf(x)
#define cosf(x) ouro_simt_cosf(x)
#define tanhf(x) ouro_simt_tanhf(x)
#define erff(x) ouro_simt_erff(x)
inline float exp10f(float x) { return std::pow(10.0f, x); }

// CUDA's sincospi / sincospif: sin(pi x) and cos(pi x), which libm lacks. x = n/2 + r with
// |r| <= 1/4 (both steps exact), one multiplication by pi, then the quarter turn n picks the
// sign and the function: exact at every multiple of 1/2 (sin(pi) = 0, not 1.2e-16) like the
// device's, and otherwise within a few ulps of it. `0 - v` keeps the device's +0 (not -0).
template <class T>
inline void ouro_simt_sincospi(T x, T* s, T* c) {
  const T n = std::nearbyint(T(2) * x);
  const T r = x - T(0.5) * n;
  const T sr = std::sin(T(3.14159265358979323846) * r), cr = std::cos(T(3.14159265358979323846) * r);
  switch ((static_cast<long long>(std::fmod(n, T(4))) % 4 + 4) % 4) {
    case 0: *s = sr, *c = cr; break;
    case 1: *s = cr, *c = T(0) - sr; break;
    case 2: *s = T(0) - sr, *c = T(0) - cr; break;
    default: *s = T(0) - cr, *c = sr; break;
  }
}
inline void sincospi(double x, double* s, double* c) { ouro_simt_sincospi(x, s, c); }
inline void sincospif(float x, float* s, float* c) { ouro_simt_sincospi(x, s, c); }

// CUDA's global min/max overloads for device code (usual arithmetic conversions, like nvcc's).
template <class A, class B>
  requires(std::is_arithmetic_v<A> && std::is_arithmetic_v<B>)
inline std::common_type_t<A, B> min(A a, B b) {
  using T = std::common_type_t<A, B>;
  return static_cast<T>(b) < static_cast<T>(a) ? static_cast<T>(b) : static_cast<T>(a);
}
template <class A, class B>
  requires(std::is_arithmetic_v<A> && std::is_arithmetic_v<B>)
inline std::common_type_t<A, B> max(A a, B b) {
  using T = std::common_type_t<A, B>;
  return static_cast<T>(a) < static_cast<T>(b) ? static_cast<T>(b) : static_cast<T>(a);
}

// ---- bit casts and bit tricks --------------------------------------------------------------------
inline float __int_as_float(int x) { return std::bit_cast<float>(x); }
inline int __float_as_int(float x) { return std::bit_cast<int>(x); }
inline float __uint_as_float(unsigned x) { return std::bit_cast<float>(x); }
inline unsigned __float_as_uint(float x) { return std::bit_cast<unsigned>(x); }
inline double __longlong_as_double(long long x) { return std::bit_cast<double>(x); }
inline long long __double_as_longlong(double x) { return std::bit_cast<long long>(x); }
inline int __popc(unsigned x) { return std::popcount(x); }
inline int __popcll(unsigned long long x) { return std::popcount(x); }
inline int __clz(int x) { return std::countl_zero(static_cast<unsigned>(x)); }
inline int __clzll(long long x) { return std::countl_zero(static_cast<unsigned long long>(x)); }
inline int __ffs(int x) { return x == 0 ? 0 : std::countr_zero(static_cast<unsigned>(x)) + 1; }
inline int __ffsll(long long x) {
  return x == 0 ? 0 : std::countr_zero(static_cast<unsigned long long>(x)) + 1;
}
inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0F0F0F0Fu) | ((x & 0x0F0F0F0Fu) << 4);
  x = ((x >> 8) & 0x00FF00FFu) | ((x & 0x00FF00FFu) << 8);
  return (x >> 16) | (x << 16);
}
// prmt.b32 default mode: byte i of the result is byte s[i] of the 8-byte value {y, x}.
inline unsigned __byte_perm(unsigned x, unsigned y, unsigned s) {
  const unsigned long long v = (static_cast<unsigned long long>(y) << 32) | x;
  unsigned r = 0;
  for (int i = 0; i < 4; ++i) r |= static_cast<unsigned>((v >> (8 * ((s >> (4 * i)) & 7u))) & 0xFFu) << (8 * i);
  return r;
}
inline unsigned __funnelshift_l(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>((v << (shift & 31u)) >> 32);
}
inline unsigned __funnelshift_r(unsigned lo, unsigned hi, unsigned shift) {
  const unsigned long long v = (static_cast<unsigned long long>(hi) << 32) | lo;
  return static_cast<unsigned>(v >> (shift & 31u));
}
inline int __mul24(int a, int b) { return ((a << 8) >> 8) * ((b << 8) >> 8); }
inline unsigned __umul24(unsigned a, unsigned b) { return (a & 0xFFFFFFu) * (b & 0xFFFFFFu); }
inline int __mulhi(int a, int b) { return static_cast<int>((static_cast<long long>(a) * b) >> 32); }
inline unsigned __umulhi(unsigned a, unsigned b) {
  return static_cast<unsigned>((static_cast<unsigned long long>(a) * b) >> 32);
}
inline long long __mul64hi(long long a, long long b) {
  return static_cast<long long>((static_cast<__int128>(a) * b) >> 64);
}
inline unsigned long long __umul64hi(unsigned long long a, unsigned long long b) {
  return static_cast<unsigned long long>((static_cast<unsigned __int128>(a) * b) >> 64);
}

// ---- cache-hinted loads and stores: plain accesses on the CPU --------------------------------------
template <class T> inline T __ldg(const T* p) { return *p; }
template <class T> inline T __ldcg(const T* p) { return *p; }
template <class T> inline T __ldca(const T* p) { return *p; }
template <class T> inline T __ldcs(const T* p) { return *p; }
template <class T> inline T __ldlu(const T* p) { return *p; }
template <class T> inline T __ldcv(const T* p) { return *p; }
template <class T> inline void __stcg(T* p, T v) { *p = v; }
template <class T> inline void __stcs(T* p, T v) { *p = v; }
template <class T> inline void __stwb(T* p, T v) { *p = v; }
template <class T> inline void __stwt(T* p, T v) { *p = v; }

// ---- clocks, sleeping, traps -------------------------------------------------------------------------
inline long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch()).count();
}
inline void __nanosleep(unsigned) { ::ouro::simt::spin_yield(); }  // a polling loop: let others run
[[noreturn]] inline void __trap(std::source_location where = std::source_location::current()) {
  ::ouro::simt::report(::ouro::simt::BugKind::invalid_argument, "__trap() executed", where);
}
inline void __brkpt() {}
