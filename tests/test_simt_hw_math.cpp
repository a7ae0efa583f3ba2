// OURO_SIMT_HW_MATH: inside kernels, the approximate functions return values within the bound
// the CUDA Math API / PTX ISA documents (ouro/simt/hw_math.h), displaced toward it (not exact),
// deterministically, with .ftz flushing; outside kernels and with the mode off, libm's values.
#include <ouro/cuda.h>  // first: it defines __shared__ before the CUDA headers

#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <random>
#include <string>
#include <vector>

namespace {

namespace simt = ouro::simt;

enum Fn : int { kExp2f, kExpf, kFastExpf, kTanhf, kRsqrtf, kLogf, kFdividef, kSinf, kFastSinf, kFrsqrtRn, kCount };

__global__ void eval_kernel(int fn, const float* x, const float* y, float* out, int n) {
  const int i = static_cast<int>(blockIdx.x * blockDim.x + threadIdx.x);
  if (i >= n) return;
  const float v = x[i];
  float r = 0;
  switch (fn) {
    case kExp2f: r = exp2f(v); break;
    case kExpf: r = expf(v); break;
    case kFastExpf: r = __expf(v); break;
    case kTanhf: r = tanhf(v); break;
    case kRsqrtf: r = rsqrtf(v); break;
    case kLogf: r = logf(v); break;
    case kFdividef: r = __fdividef(v, y[i]); break;
    case kSinf: r = sinf(v); break;
    case kFastSinf: r = __sinf(v); break;
    case kFrsqrtRn: r = __frsqrt_rn(v); break;
  }
  out[i] = r;
}

std::vector<float> run(int fn, const std::vector<float>& x, const std::vector<float>& y) {
  const int n = static_cast<int>(x.size());
  float *dx, *dy, *dout;
  OURO_CUDA_CHECK(cudaMalloc(&dx, n * sizeof(float)));
  OURO_CUDA_CHECK(cudaMalloc(&dy, n * sizeof(float)));
  OURO_CUDA_CHECK(cudaMalloc(&dout, n * sizeof(float)));
  OURO_CUDA_CHECK(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  OURO_CUDA_CHECK(cudaMemcpy(dy, y.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  ouro::launch(eval_kernel, (n + 127) / 128, 128, 0, nullptr, fn, dx, dy, dout, n);
  OURO_CUDA_CHECK_LAUNCH();
  std::vector<float> out(n);
  OURO_CUDA_CHECK(cudaMemcpy(out.data(), dout, n * sizeof(float), cudaMemcpyDeviceToHost));
  cudaFree(dx), cudaFree(dy), cudaFree(dout);
  return out;
}

double reference(int fn, double x, double y) {
  switch (fn) {
    case kExp2f: return std::exp2(x);
    case kExpf: case kFastExpf: return std::exp(x);
    case kTanhf: return std::tanh(x);
    case kRsqrtf: case kFrsqrtRn: return 1.0 / std::sqrt(x);
    case kLogf: return std::log(x);
    case kFdividef: return x / y;
    default: return std::sin(x);
  }
}

// |got - ref| in units of the float ulp at ref (subnormal spacing below 2^-126).
double ulp_error(float got, double ref) {
  const double a = std::fabs(ref);
  const double ulp = a < 0x1p-126 ? 0x1p-149 : std::ldexp(1.0, std::ilogb(a) - 23);
  return std::fabs(static_cast<double>(got) - ref) / ulp;
}

struct HwMath {
  explicit HwMath(bool on) : saved(simt::hw_math()) { simt::set_hw_math(on); }
  ~HwMath() { simt::set_hw_math(saved); }
  bool saved;
};

struct Case {
  int fn;
  float lo, hi;   // input range (uniform)
  double ulps;    // documented bound in ulps (0: IEEE-rounded, must be exact)
  const char* name;
};

// Inputs well inside each bound's stated domain.
const Case kCases[] = {
    {kExp2f, -120.0f, 120.0f, 2.0, "exp2f (ex2.approx.f32)"},
    {kExpf, -80.0f, 80.0f, 2.0, "expf"},
    {kFastExpf, -1.0f, 1.0f, 3.0, "__expf on [-1,1] (2 + floor(1.173|x|))"},
    {kTanhf, -9.0f, 9.0f, 2.0, "tanhf"},
    {kRsqrtf, 1e-30f, 1e30f, 2.0, "rsqrtf (rsqrt.approx.f32)"},
    {kLogf, 1e-30f, 1e30f, 1.0, "logf"},
    {kFdividef, -1e6f, 1e6f, 2.0, "__fdividef"},
    {kSinf, -100.0f, 100.0f, 2.0, "sinf"},
    {kFrsqrtRn, 1e-30f, 1e30f, 0.5, "__frsqrt_rn (IEEE)"},
};

TEST(SimtHwMath, WithinTheDocumentedBoundAndDisplacedTowardIt) {
  std::mt19937 rng(15);
  const int n = 4000;
  for (const Case& c : kCases) {
    std::uniform_real_distribution<float> dist(c.lo, c.hi);
    std::uniform_real_distribution<float> ydist(0.5f, 1e3f);
    std::vector<float> x(n), y(n);
    for (int i = 0; i < n; ++i) x[i] = dist(rng), y[i] = (i % 2 ? -1.0f : 1.0f) * ydist(rng);
    if (c.fn == kRsqrtf || c.fn == kLogf || c.fn == kFrsqrtRn)  // log-uniform over the range
      for (int i = 0; i < n; ++i) x[i] = std::exp(std::uniform_real_distribution<float>(-69.0f, 69.0f)(rng));
    std::vector<float> hw, hw_again, exact;
    {
      HwMath on(true);
      hw = run(c.fn, x, y);
      hw_again = run(c.fn, x, y);
    }
    {
      HwMath off(false);
      exact = run(c.fn, x, y);
    }
    double worst = 0, worst_exact = 0;
    int displaced = 0;
    for (int i = 0; i < n; ++i) {
      const double ref = reference(c.fn, x[i], y[i]);
      ASSERT_EQ(std::bit_cast<std::uint32_t>(hw[i]), std::bit_cast<std::uint32_t>(hw_again[i])) << c.name;
      const double e = ulp_error(hw[i], ref);
      worst = std::max(worst, e);
      worst_exact = std::max(worst_exact, ulp_error(exact[i], ref));
      if (hw[i] != exact[i]) ++displaced;
    }
    EXPECT_LE(worst, c.ulps) << c.name;
    // Mode off: libm (glibc's tanhf is itself ~2 ulp at worst).
    EXPECT_LE(worst_exact, c.ulps >= 1.0 ? 2.5 : 0.5) << c.name << " (libm, mode off)";
    if (c.ulps >= 1.0) {
      EXPECT_GT(displaced, n / 2) << c.name << ": hardware math must not be the exact result";
    } else {
      EXPECT_EQ(displaced, 0) << c.name << ": an IEEE-rounded intrinsic stays exact";
    }
    // The bound is approached: the worst error is within an ulp of it.
    if (c.ulps >= 1.0) {
      EXPECT_GE(worst, c.ulps - 1.0) << c.name;
    }
  }
}

TEST(SimtHwMath, FlushesToZeroWhereTheInstructionIsFtz) {
  HwMath on(true);
  // __expf is ex2.approx.ftz: e^-100 (3.7e-44, subnormal) flushes to 0; exp2f (ex2.approx.f32,
  // no .ftz) keeps 2^-140 subnormal.
  const std::vector<float> x = {-100.0f, -140.0f}, y = {1.0f, 1.0f};
  EXPECT_EQ(run(kFastExpf, x, y)[0], 0.0f);
  const float sub = run(kExp2f, x, y)[1];
  EXPECT_GT(sub, 0.0f);
  EXPECT_LE(ulp_error(sub, std::exp2(-140.0)), 2.0);
  // __fdividef returns 0 for 2^126 < |y| < 2^128.
  EXPECT_EQ(run(kFdividef, {1.0f}, {0x1.8p127f})[0], 0.0f);
  // tanhf saturates exactly and keeps its sign and NaN.
  const auto t = run(kTanhf, {20.0f, -20.0f, NAN}, {1, 1, 1});
  EXPECT_EQ(t[0], 1.0f);
  EXPECT_EQ(t[1], -1.0f);
  EXPECT_TRUE(std::isnan(t[2]));
}

TEST(SimtHwMath, HostCodeAndTheDefaultModeKeepLibm) {
  HwMath on(true);
  // Outside a kernel (host code of the device ops, test references) nothing is approximated.
  EXPECT_EQ(expf(1.5f), std::exp(1.5f));
  EXPECT_EQ(tanhf(0.7f), std::tanh(0.7f));
  EXPECT_EQ(rsqrtf(3.0f), 1.0f / std::sqrt(3.0f));
}

}  // namespace
