// Elementwise kernels (GELU forward/backward, residual add, add_inplace, fp32 <-> bf16) against
// CpuOps / exact host conversions on the same bf16-rounded inputs.
//
// Sizes: n % 8 != 0 (ragged tail after the 128-bit units), n < 8 (tail only), a size that makes
// the grid-stride loop iterate (more units than the capped grid's threads), and pointers offset by
// one element (not 16-byte aligned: the element-by-element path).
// Tolerances: GELU outputs are rounded to bf16 (<= 2^-8 = 3.9e-3 relative per element, so
// even a one-element case passes; ~1.6e-3 measured over many elements) and
// the fp32 math matches the reference to ~1e-6 (tanhf vs std::tanh): relative norm 4e-3. Adds and
// conversions are exact: the fp32 sum of two bf16 values is exact here, then one round to nearest
// even, the same as the host's rounding of the reference; compared bitwise.
#include "kernel_test_support.h"

#include "kernels/elementwise.h"

#include "cpu/cpu_ops.h"

namespace {

using namespace kernel_test;
using ouro::kernels::bf16;

class ElementwiseKernel : public KernelTest {};

constexpr double kBf16Tol = 4e-3;
// 1 and 7: tail only; 1003: 125 units + 3 tail; 600013: more units than 2112 blocks x 256 threads.
const size_t kSizes[] = {1, 7, 1003, 600013};

// Uploads `v` at element offset `off` of a fresh buffer (off = 1: misaligned pointer).
struct Placed {
  DeviceBuffer<bf16> buf;
  size_t off;
  Placed(const std::vector<float>& v, size_t off_) : buf(v.size() + off_), off(off_) {
    std::vector<bf16> host(v.size() + off, to_bf16(0.0f));
    for (size_t i = 0; i < v.size(); i++) host[off + i] = to_bf16(v[i]);
    buf.upload(host);
  }
  explicit Placed(size_t n, size_t off_) : buf(n + off_), off(off_) {}  // poisoned
  bf16* get() const { return buf.get() + off; }
  std::vector<float> values() const {
    auto all = to_float(buf.download());
    return std::vector<float>(all.begin() + off, all.end());
  }
};

TEST_F(ElementwiseKernel, GeluForwardMatchesCpu) {
  ouro::CpuOps cpu;
  for (size_t off : {0, 1}) {
    for (size_t n : kSizes) {
      if (off == 1 && n > 2000) continue;  // the element path needs no big case
      SCOPED_TRACE("n=" + std::to_string(n) + " off=" + std::to_string(off));
      const auto x = random_bf16_values(n, 100 + n, 2.0f);
      std::vector<float> ref(n);
      cpu.gelu_forward(ref.data(), x.data(), n);
      Placed in(x, off), out(n, off);
      ouro::kernels::gelu_forward(out.get(), in.get(), n, nullptr);
      EXPECT_LT(rel_error(out.values(), ref), kBf16Tol);
    }
  }
}

TEST_F(ElementwiseKernel, GeluBackwardMatchesCpuAndMayAlias) {
  ouro::CpuOps cpu;
  for (size_t off : {0, 1}) {
    for (size_t n : kSizes) {
      if (off == 1 && n > 2000) continue;
      SCOPED_TRACE("n=" + std::to_string(n) + " off=" + std::to_string(off));
      const auto x = random_bf16_values(n, 200 + n, 2.0f);
      const auto dy = random_bf16_values(n, 300 + n);
      std::vector<float> ref(n);
      cpu.gelu_backward(ref.data(), x.data(), dy.data(), n);
      Placed in(x, off), dout(dy, off), dinp(n, off);
      ouro::kernels::gelu_backward(dinp.get(), in.get(), dout.get(), n, nullptr);
      const auto separate = dinp.values();
      EXPECT_LT(rel_error(separate, ref), kBf16Tol);
      // In place: dinp == dout gives the same bits.
      ouro::kernels::gelu_backward(dout.get(), in.get(), dout.get(), n, nullptr);
      EXPECT_EQ(dout.values(), separate);
    }
  }
}

TEST_F(ElementwiseKernel, ResidualAndAddInplaceAreExact) {
  ouro::CpuOps cpu;
  for (size_t off : {0, 1}) {
    for (size_t n : kSizes) {
      if (off == 1 && n > 2000) continue;
      SCOPED_TRACE("n=" + std::to_string(n) + " off=" + std::to_string(off));
      const auto a = random_bf16_values(n, 400 + n);
      const auto b = random_bf16_values(n, 500 + n, 0.3f);
      std::vector<float> ref(n);
      cpu.residual_forward(ref.data(), a.data(), b.data(), n);
      ref = round_bf16(ref);
      Placed da(a, off), db(b, off), out(n, off);
      ouro::kernels::residual_forward(out.get(), da.get(), db.get(), n, nullptr);
      EXPECT_EQ(out.values(), ref);
      ouro::kernels::add_inplace(da.get(), db.get(), n, nullptr);
      EXPECT_EQ(da.values(), ref);
    }
  }
}

TEST_F(ElementwiseKernel, ConversionsAreExact) {
  for (size_t n : kSizes) {
    SCOPED_TRACE("n=" + std::to_string(n));
    auto f = random_floats(n, 600 + n, 3.0f);
    if (n > 4) {  // specials: round-to-nearest-even ties, infinity, a tiny value
      f[0] = 1.0f + 1.0f / 256.0f;  // exactly halfway between two bf16: rounds to even (1.0)
      f[1] = INFINITY;
      f[2] = -1e-30f;
      f[3] = 3.0f * (1.0f + 1.0f / 256.0f);
    }
    std::vector<float> ref(n);
    for (size_t i = 0; i < n; i++) ref[i] = to_float(to_bf16(f[i]));
    DeviceBuffer<float> src(f);
    DeviceBuffer<bf16> mid(n);
    ouro::kernels::f32_to_bf16(mid, src, n, nullptr);
    const auto got = to_float(mid.download());
    ASSERT_EQ(got.size(), ref.size());
    EXPECT_EQ(std::memcmp(got.data(), ref.data(), n * sizeof(float)), 0);
    DeviceBuffer<float> back(n);
    ouro::kernels::bf16_to_f32(back, mid, n, nullptr);
    const auto back_host = back.download();
    EXPECT_EQ(std::memcmp(back_host.data(), ref.data(), n * sizeof(float)), 0);
  }
  // Misaligned fp32 source / bf16 destination: the element path.
  const size_t n = 77;
  const auto f = random_floats(n + 1, 700);
  DeviceBuffer<float> src(f);
  DeviceBuffer<bf16> dst(n + 1);
  ouro::kernels::f32_to_bf16(dst.get() + 1, src.get() + 1, n, nullptr);
  const auto got = to_float(dst.download());
  for (size_t i = 0; i < n; i++) EXPECT_EQ(got[i + 1], to_float(to_bf16(f[i + 1]))) << i;
  DeviceBuffer<float> back(n + 1);
  ouro::kernels::bf16_to_f32(back.get() + 1, dst.get() + 1, n, nullptr);
  const auto b = back.download();
  for (size_t i = 0; i < n; i++) EXPECT_EQ(b[i + 1], got[i + 1]) << i;
}

TEST_F(ElementwiseKernel, ZeroLengthIsANoOp) {
  DeviceBuffer<bf16> buf(8);
  ouro::kernels::gelu_forward(buf, buf, 0, nullptr);
  ouro::kernels::add_inplace(buf, buf, 0, nullptr);
  EXPECT_THROW(ouro::kernels::gelu_forward(nullptr, buf, 8, nullptr), std::invalid_argument);
}

}  // namespace
