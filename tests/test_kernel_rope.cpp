// Rotary position embedding kernels (kernels/rope.cu) against CpuOps and against the exact
// formula evaluated in double.
//
// Tolerances: the kernel reads bf16, rotates in fp32 and rounds to bf16 once, so each output is
// within half a bf16 ulp (2^-9 relative) of the fp32 rotation, which is within ~1e-7 (relative
// to the pair's magnitude) of the exact one: per element |out - exact| <= 2^-8 |exact| +
// 1e-5 (|a| + |b|) cannot be met by a wrong angle, a wrong pair or a wrong sign. Against CpuOps
// (fp32 on the same bf16 inputs, rounded to bf16 afterwards) the two differ only where an FMA
// contraction moves the fp32 value across a bf16 rounding boundary: at most one bf16 ulp.
#include "kernel_test_support.h"

#include "kernels/rope.h"

#include "cpu/cpu_ops.h"

namespace {

using namespace kernel_test;
using ouro::kernels::bf16;

class RopeKernel : public KernelTest {};

struct Shape {
  int B, T, C, NH, pos0;
  double theta;
};
std::string name(const Shape& s) {
  return "B=" + std::to_string(s.B) + " T=" + std::to_string(s.T) + " C=" + std::to_string(s.C) +
         " NH=" + std::to_string(s.NH) + " pos0=" + std::to_string(s.pos0) + " theta=" + std::to_string(s.theta);
}

// Ragged: head dims 2, 8, 48 (half not a multiple of a warp), 64, 128; odd offsets; positions up
// to 2^17 where an fp32 angle would already be off by ~8e-3 rad.
const Shape kShapes[] = {
    {1, 1, 4, 2, 0, 10000.0},    {2, 7, 24, 3, 5, 10000.0},     {3, 13, 96, 2, 1001, 10000.0},
    {2, 5, 768, 12, 0, 10000.0}, {1, 9, 256, 2, 131071, 500000.0}, {2, 3, 12, 6, 2047, 10.0},
};

constexpr size_t kPad = 37;  // poisoned elements after the tensor: nothing may write there

// The exact rotation of the q and k parts in double (v copied), from the same bf16 inputs.
std::vector<double> exact_rope(const std::vector<float>& x, const Shape& s, double sign) {
  const int hd = s.C / s.NH, half = hd / 2;
  std::vector<double> out(x.begin(), x.end());
  for (size_t n = 0; n < size_t(s.B) * s.T; n++) {
    const double pos = double(s.pos0) + double(n % size_t(s.T));
    for (int part = 0; part < 2; part++)
      for (int h = 0; h < s.NH; h++)
        for (int i = 0; i < half; i++) {
          const double ang = sign * pos * std::pow(s.theta, -2.0 * i / hd);
          const size_t j = n * 3 * s.C + size_t(part) * s.C + size_t(h) * hd + i;
          const double a = x[j], b = x[j + half];
          out[j] = a * std::cos(ang) - b * std::sin(ang);
          out[j + half] = b * std::cos(ang) + a * std::sin(ang);
        }
  }
  return out;
}

// Runs the kernel on x in a buffer with kPad poisoned elements after it; checks the padding and
// the v part are untouched bit for bit and returns the rotated tensor.
std::vector<float> run_kernel(const std::vector<float>& x, const Shape& s, bool backward) {
  DeviceBuffer<bf16> buf(x.size() + kPad);  // all NaN
  OURO_CUDA_CHECK(cudaMemcpy(buf.get(), to_bf16(x).data(), x.size() * sizeof(bf16), cudaMemcpyHostToDevice));
  if (backward)
    ouro::kernels::rope_backward(buf, s.B, s.T, s.C, s.NH, s.pos0, s.theta, nullptr);
  else
    ouro::kernels::rope_forward(buf, s.B, s.T, s.C, s.NH, s.pos0, s.theta, nullptr);
  const auto all = buf.download();
  for (size_t i = x.size(); i < all.size(); i++) {
    uint16_t bits;
    std::memcpy(&bits, &all[i], 2);
    EXPECT_EQ(bits, 0xFFFF) << "wrote past the tensor at element " << i;
  }
  std::vector<float> out = to_float(std::vector<bf16>(all.begin(), all.begin() + ptrdiff_t(x.size())));
  EXPECT_EQ(qkv_part(out, s.B, s.T, s.C, 2), qkv_part(x, s.B, s.T, s.C, 2)) << "v changed";
  return out;
}

// Largest difference in bf16 ulps (of the larger magnitude) between two bf16-valued vectors.
double max_ulps(const std::vector<float>& a, const std::vector<float>& b) {
  double worst = 0;
  for (size_t i = 0; i < a.size(); i++) {
    if (!std::isfinite(a[i]) || !std::isfinite(b[i])) return INFINITY;
    const double m = std::max(std::abs(a[i]), std::abs(b[i]));
    if (m == 0) continue;
    const double ulp = std::ldexp(1.0, std::ilogb(m) - 7);
    worst = std::max(worst, std::abs(double(a[i]) - double(b[i])) / ulp);
  }
  return worst;
}

void expect_near_exact(const std::vector<float>& out, const std::vector<float>& x,
                       const std::vector<double>& exact, const Shape& s) {
  const int hd = s.C / s.NH, half = hd / 2;
  int bad = 0;
  for (size_t j = 0; j < out.size() && bad < 5; j++) {
    const size_t col = j % (3 * size_t(s.C));
    if (col >= 2 * size_t(s.C)) continue;  // v: checked bitwise
    const size_t i = col % hd, partner = i < size_t(half) ? j + half : j - half;
    const double tol = std::ldexp(std::abs(exact[j]), -8) + 1e-5 * (std::abs(x[j]) + std::abs(x[partner]));
    if (!(std::abs(out[j] - exact[j]) <= tol)) {
      ADD_FAILURE() << "element " << j << ": " << out[j] << " vs exact " << exact[j];
      bad++;
    }
  }
}

TEST_F(RopeKernel, ForwardMatchesExactFormulaAndCpu) {
  for (const auto& s : kShapes) {
    SCOPED_TRACE(name(s));
    const auto x = random_bf16_values(size_t(s.B) * s.T * 3 * s.C, 1 + s.C + s.pos0);
    const auto out = run_kernel(x, s, false);
    expect_near_exact(out, x, exact_rope(x, s, 1.0), s);
    std::vector<float> ref = x;
    ouro::CpuOps cpu;
    cpu.rope_forward(ref.data(), s.B, s.T, s.C, s.NH, s.pos0, s.theta);
    EXPECT_LE(max_ulps(out, round_bf16(ref)), 1.0);
    EXPECT_LT(rel_error(out, round_bf16(ref)), 1e-3);
  }
}

TEST_F(RopeKernel, BackwardIsTheInverseRotation) {
  for (const auto& s : kShapes) {
    SCOPED_TRACE(name(s));
    const auto g = random_bf16_values(size_t(s.B) * s.T * 3 * s.C, 7 + s.C + s.pos0);
    const auto out = run_kernel(g, s, true);
    expect_near_exact(out, g, exact_rope(g, s, -1.0), s);
    std::vector<float> ref = g;
    ouro::CpuOps cpu;
    cpu.rope_backward(ref.data(), s.B, s.T, s.C, s.NH, s.pos0, s.theta);
    EXPECT_LE(max_ulps(out, round_bf16(ref)), 1.0);
    // Forward then backward gives the input back up to the two bf16 roundings.
    const auto there = run_kernel(g, s, false);
    const auto back = run_kernel(there, s, true);
    EXPECT_LT(rel_error(back, g), 6e-3);
  }
}

// Position 0 is the identity: every angle is zero, so the bits come back unchanged.
TEST_F(RopeKernel, PositionZeroIsIdentity) {
  const Shape s{3, 1, 64, 4, 0, 10000.0};
  const auto x = random_bf16_values(size_t(s.B) * s.T * 3 * s.C, 99);
  EXPECT_EQ(run_kernel(x, s, false), x);
  EXPECT_EQ(run_kernel(x, s, true), x);
}

// The rotation of row t with pos0 = p equals that of row t + p with pos0 = 0: decoding at the
// cache position rotates exactly as the training forward does.
TEST_F(RopeKernel, OffsetMatchesLaterRows) {
  const int B = 1, T = 11, C = 32, NH = 2, p = 6;
  const auto x = random_bf16_values(size_t(B) * T * 3 * C, 5);
  const auto full = run_kernel(x, {B, T, C, NH, 0, 10000.0}, false);
  const std::vector<float> tail(x.begin() + size_t(p) * 3 * C, x.end());
  const auto tail_out = run_kernel(tail, {B, T - p, C, NH, p, 10000.0}, false);
  EXPECT_EQ(tail_out, std::vector<float>(full.begin() + size_t(p) * 3 * C, full.end()));
}

// rope_forward_at (the position read from device memory: decoding's CUDA Graph) is bitwise
// rope_forward at the same position: one row (a decode step) and a ragged multi-row step.
TEST_F(RopeKernel, DevicePositionIsBitwiseTheHostPosition) {
  for (const Shape& s : {Shape{3, 1, 64, 2, 0, 1e4}, Shape{3, 1, 64, 2, 300, 1e4}, Shape{2, 5, 80, 4, 17, 5e5}}) {
    SCOPED_TRACE(name(s));
    const auto x = to_bf16(random_bf16_values(size_t(s.B) * s.T * 3 * s.C, 31 + s.pos0));
    DeviceBuffer<bf16> a(x), b(x);
    DeviceBuffer<int> pos(std::vector<int>{s.pos0});
    ouro::kernels::rope_forward(a, s.B, s.T, s.C, s.NH, s.pos0, s.theta, nullptr);
    ouro::kernels::rope_forward_at(b, s.B, s.T, s.C, s.NH, pos, s.theta, nullptr);
    const auto ha = a.download(), hb = b.download();
    EXPECT_EQ(0, std::memcmp(ha.data(), hb.data(), ha.size() * sizeof(bf16)));
    if (s.pos0 > 0) {
      EXPECT_NE(0, std::memcmp(ha.data(), x.data(), x.size() * sizeof(bf16)));  // it did rotate
    }
  }
}

TEST_F(RopeKernel, RejectsBadArguments) {
  using ouro::kernels::rope_backward;
  using ouro::kernels::rope_forward;
  DeviceBuffer<bf16> buf(3 * 64);
  EXPECT_THROW(rope_forward(nullptr, 1, 1, 64, 2, 0, 1e4, nullptr), std::invalid_argument);
  EXPECT_THROW(rope_forward(buf, 0, 1, 64, 2, 0, 1e4, nullptr), std::invalid_argument);
  EXPECT_THROW(rope_forward(buf, 1, 0, 64, 2, 0, 1e4, nullptr), std::invalid_argument);
  EXPECT_THROW(rope_forward(buf, 1, 1, 64, 3, 0, 1e4, nullptr), std::invalid_argument);   // C % NH
  EXPECT_THROW(rope_forward(buf, 1, 1, 6, 2, 0, 1e4, nullptr), std::invalid_argument);    // hd 3
  EXPECT_THROW(rope_forward(buf, 1, 1, 64, 2, -1, 1e4, nullptr), std::invalid_argument);  // pos0
  EXPECT_THROW(rope_backward(buf, 1, 1, 64, 2, 0, 1.0, nullptr), std::invalid_argument);  // theta
  EXPECT_THROW(rope_backward(buf, 1, 1, 64, 2, 0, NAN, nullptr), std::invalid_argument);
  EXPECT_THROW(rope_backward(buf, 1, 1, 64, 2, 0, INFINITY, nullptr), std::invalid_argument);
  // The CPU reference refuses the same (ouro::Error).
  ouro::CpuOps cpu;
  std::vector<float> h(3 * 6);
  EXPECT_THROW(cpu.rope_forward(h.data(), 1, 1, 6, 2, 0, 1e4), ouro::Error);
  EXPECT_THROW(cpu.rope_backward(h.data(), 1, 1, 6, 1, -3, 1e4), ouro::Error);
}

}  // namespace
