// LayerNorm kernels (forward, fused residual forward, backward) against CpuOps on the same
// bf16-rounded inputs.
//
// Tolerances (relative norm): bf16 outputs 4e-3 — rounding the result to bf16 alone gives a
// relative error of at most 2^-8 = 3.9e-3 per element (~1.6e-3 measured over many elements);
// the fp32 math differs from the reference's by ~1e-6. fp32 statistics (mean, rstd) 1e-5: fp32
// two-pass sums over <= 2056 elements vs the reference's double sums (~5e-8 measured). The fused
// residual is bitwise bf16(a + b) (the fp32 sum of two bf16 values is exact here, one rounding).
#include "kernel_test_support.h"

#include "kernels/layernorm.h"

#include "cpu/cpu_ops.h"

namespace {

using namespace kernel_test;
using ouro::kernels::bf16;

class LayerNormKernel : public KernelTest {};

constexpr double kBf16Tol = 4e-3;
constexpr double kF32Tol = 1e-5;

// Row values with a nonzero mean (tests the variance against cancellation) and varied scale.
std::vector<float> ln_input(int N, int C, uint64_t seed) {
  std::vector<float> x = random_floats(size_t(N) * C, seed);
  for (int n = 0; n < N; n++)
    for (int c = 0; c < C; c++) x[size_t(n) * C + c] = 0.7f + (1.0f + 0.1f * (n % 5)) * x[size_t(n) * C + c];
  return round_bf16(x);
}

std::vector<float> offset_values(size_t n, uint64_t seed, float offset, float scale) {
  std::vector<float> v = random_floats(n, seed, scale);
  for (auto& x : v) x += offset;
  return round_bf16(v);
}

void check_forward(int N, int C, uint64_t seed) {
  SCOPED_TRACE("N=" + std::to_string(N) + " C=" + std::to_string(C));
  const auto x = ln_input(N, C, seed);
  const auto w = offset_values(C, seed + 1, 1.0f, 0.2f);
  const auto b = random_bf16_values(C, seed + 2, 0.2f);
  ouro::CpuOps cpu;
  std::vector<float> ref(x.size()), ref_mean(N), ref_rstd(N);
  cpu.layernorm_forward(ref.data(), ref_mean.data(), ref_rstd.data(), x.data(), w.data(), b.data(), N, C);

  DeviceBuffer<bf16> dx(to_bf16(x)), dw(to_bf16(w)), db(to_bf16(b)), dout(x.size());
  DeviceBuffer<float> dmean(N), drstd(N);
  ouro::kernels::layernorm_forward(dout, dmean, drstd, dx, dw, db, N, C, nullptr);
  EXPECT_LT(rel_error(to_float(dout.download()), ref), kBf16Tol);
  EXPECT_LT(rel_error(dmean.download(), ref_mean), kF32Tol);
  EXPECT_LT(rel_error(drstd.download(), ref_rstd), kF32Tol);
}

TEST_F(LayerNormKernel, ForwardMatchesCpu) {
  // 768: 128-bit path (3 units per lane); 40, 72: 128-bit path with a partial warp of units;
  // 100, 7: element path (C % 8 != 0); N = 1, 37 (not a multiple of the 4 rows per block).
  check_forward(1, 768, 1);
  check_forward(37, 768, 2);
  check_forward(37, 40, 3);
  check_forward(37, 72, 4);
  check_forward(37, 100, 5);
  check_forward(5, 7, 6);
  check_forward(3, 2056, 7);  // more than 8 units per lane
}

TEST_F(LayerNormKernel, ResidualForwardMatchesCpu) {
  for (auto [N, C] : {std::pair{37, 768}, std::pair{37, 100}, std::pair{1, 40}}) {
    SCOPED_TRACE("N=" + std::to_string(N) + " C=" + std::to_string(C));
    const auto a = ln_input(N, C, 10 + C);
    const auto b2 = random_bf16_values(size_t(N) * C, 20 + C, 0.5f);
    const auto w = offset_values(C, 30 + C, 1.0f, 0.2f);
    const auto bias = random_bf16_values(C, 40 + C, 0.2f);
    std::vector<float> res(a.size());
    for (size_t i = 0; i < a.size(); i++) res[i] = a[i] + b2[i];
    res = round_bf16(res);  // what the device holds and normalises
    ouro::CpuOps cpu;
    std::vector<float> ref(a.size()), ref_mean(N), ref_rstd(N);
    cpu.layernorm_forward(ref.data(), ref_mean.data(), ref_rstd.data(), res.data(), w.data(), bias.data(), N, C);

    DeviceBuffer<bf16> da(to_bf16(a)), db(to_bf16(b2)), dw(to_bf16(w)), dbias(to_bf16(bias));
    DeviceBuffer<bf16> dres(a.size()), dout(a.size());
    DeviceBuffer<float> dmean(N), drstd(N);
    ouro::kernels::residual_layernorm_forward(dres, dout, dmean, drstd, da, db, dw, dbias, N, C, nullptr);
    EXPECT_EQ(to_float(dres.download()), res);
    EXPECT_LT(rel_error(to_float(dout.download()), ref), kBf16Tol);
    EXPECT_LT(rel_error(dmean.download(), ref_mean), kF32Tol);
    EXPECT_LT(rel_error(drstd.download(), ref_rstd), kF32Tol);
  }
}

struct BackwardResult {
  std::vector<bf16> dinp, dweight, dbias;
};

// Runs the backward from nonzero initial gradients; checks against CpuOps (fed the same mean and
// rstd) and returns the raw bf16 results for determinism checks.
BackwardResult check_backward(int N, int C, uint64_t seed) {
  SCOPED_TRACE("N=" + std::to_string(N) + " C=" + std::to_string(C));
  const auto x = ln_input(N, C, seed);
  const auto w = offset_values(C, seed + 1, 1.0f, 0.2f);
  const auto b = random_bf16_values(C, seed + 2, 0.2f);
  const auto dy = random_bf16_values(size_t(N) * C, seed + 3);
  const auto dx0 = random_bf16_values(size_t(N) * C, seed + 4, 0.5f);
  const auto dw0 = random_bf16_values(C, seed + 5, 0.5f);
  const auto db0 = random_bf16_values(C, seed + 6, 0.5f);
  ouro::CpuOps cpu;
  std::vector<float> y(x.size()), mean(N), rstd(N);
  cpu.layernorm_forward(y.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N, C);
  std::vector<float> ref_dx = dx0, ref_dw = dw0, ref_db = db0;
  cpu.layernorm_backward(ref_dx.data(), ref_dw.data(), ref_db.data(), dy.data(), x.data(), w.data(), mean.data(),
                         rstd.data(), N, C);

  DeviceBuffer<bf16> ddx(to_bf16(dx0)), ddw(to_bf16(dw0)), ddb(to_bf16(db0)), ddy(to_bf16(dy)), dx(to_bf16(x)),
      dw(to_bf16(w));
  DeviceBuffer<float> dmean(mean), drstd(rstd);
  DeviceBuffer<unsigned char> scratch(ouro::kernels::layernorm_backward_scratch_bytes(N, C));
  ouro::kernels::layernorm_backward(ddx, ddw, ddb, ddy, dx, dw, dmean, drstd, N, C, scratch, nullptr);
  BackwardResult r{ddx.download(), ddw.download(), ddb.download()};
  EXPECT_LT(rel_error(to_float(r.dinp), ref_dx), kBf16Tol);
  EXPECT_LT(rel_error(to_float(r.dweight), ref_dw), kBf16Tol);
  EXPECT_LT(rel_error(to_float(r.dbias), ref_db), kBf16Tol);
  return r;
}

bool bitwise_equal(const std::vector<bf16>& a, const std::vector<bf16>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)) == 0;
}

TEST_F(LayerNormKernel, BackwardMatchesCpu) {
  check_backward(1, 768, 50);
  check_backward(37, 768, 51);
  check_backward(37, 40, 52);
  check_backward(37, 72, 53);
  check_backward(37, 100, 54);
  check_backward(5, 7, 55);
  check_backward(3, 2056, 56);  // 2 warps per block (shared-memory budget)
}

TEST_F(LayerNormKernel, BackwardManyRowsPerWarpIsDeterministic) {
  // 4200 rows > 264 blocks x 8 warps: warps loop over several rows, the reduce sees 264 partials.
  const auto a = check_backward(4200, 40, 60);
  const auto b = check_backward(4200, 40, 60);
  EXPECT_TRUE(bitwise_equal(a.dinp, b.dinp));
  EXPECT_TRUE(bitwise_equal(a.dweight, b.dweight));
  EXPECT_TRUE(bitwise_equal(a.dbias, b.dbias));
}

// The register path (C <= 2048 vectorised, <= 256 otherwise): 264 blocks x 8 warps, so rows
// beyond 2112 give every warp several rows to accumulate in registers; 1, 3, 6 (C = 1288: 161 units,
// the last lanes' guards) and, unvectorised (C = 100), 4 units per lane.
TEST_F(LayerNormKernel, BackwardRegisterPathOverManyRowsPerWarp) {
  check_backward(5000, 40, 70);
  check_backward(2300, 100, 73);
  const auto a = check_backward(2200, 768, 71);
  const auto b = check_backward(2200, 768, 71);
  EXPECT_TRUE(bitwise_equal(a.dinp, b.dinp));
  EXPECT_TRUE(bitwise_equal(a.dweight, b.dweight));
  EXPECT_TRUE(bitwise_equal(a.dbias, b.dbias));
  check_backward(2150, 1288, 72);
}

TEST_F(LayerNormKernel, RejectsBadShapes) {
  DeviceBuffer<bf16> buf(64);
  DeviceBuffer<float> f(64);
  EXPECT_THROW(ouro::kernels::layernorm_forward(buf, f, f, buf, buf, buf, 0, 8, nullptr), std::invalid_argument);
  EXPECT_THROW(ouro::kernels::layernorm_forward(buf, f, f, buf, buf, buf, 1, -1, nullptr), std::invalid_argument);
  // Too wide for the per-warp shared-memory accumulators.
  EXPECT_THROW(ouro::kernels::layernorm_backward(buf, buf, buf, buf, buf, buf, f, f, 1, 8192, f, nullptr),
               std::invalid_argument);
}

}  // namespace
