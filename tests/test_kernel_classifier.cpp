// Fused classifier kernel vs CpuOps::classifier on the same bf16-rounded logits.
#include "kernel_test_support.h"

#include "kernels/classifier.h"

#include "cpu/cpu_ops.h"

#include <cstring>

namespace {

using namespace kernel_test;
using ouro::kernels::bf16;

class ClassifierKernel : public KernelTest {};

struct Case {
  int N, V, Vp;
};

// Random logits (N, Vp) rounded to bf16; the padding holds garbage the kernel must ignore.
std::vector<float> make_logits(const Case& c, uint64_t seed) {
  std::vector<float> x = random_bf16_values(size_t(c.N) * c.Vp, seed, 2.5f);
  for (int n = 0; n < c.N; n++)
    for (int i = c.V; i < c.Vp; i++) x[size_t(n) * c.Vp + i] = 1000.0f;  // would dominate a softmax
  return x;
}

std::vector<int> make_targets(const Case& c, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> t(c.N);
  for (int n = 0; n < c.N; n++) t[n] = int(rng() % uint64_t(c.V));
  if (c.N > 1) t[1] = -1;        // an ignored position
  if (c.N > 2) t[2] = c.V - 1;   // the last real column
  if (c.N > 3) t[3] = 0;
  return t;
}

// Runs the kernel and the reference; checks losses, dlogits, the padding and the ignored rows.
void check_case(const Case& c, float dloss, uint64_t seed) {
  SCOPED_TRACE("N=" + std::to_string(c.N) + " V=" + std::to_string(c.V) + " Vp=" + std::to_string(c.Vp) +
               " dloss=" + std::to_string(dloss));
  const std::vector<float> x = make_logits(c, seed);
  const std::vector<int> targets = make_targets(c, seed + 1);

  std::vector<float> ref_logits = x, ref_losses(c.N);
  ouro::CpuOps cpu;
  cpu.classifier(ref_logits.data(), ref_losses.data(), targets.data(), c.N, c.V, c.Vp, dloss);

  DeviceBuffer<bf16> d_logits(to_bf16(x));
  DeviceBuffer<float> d_losses(c.N);
  DeviceBuffer<int> d_targets(targets);
  ouro::kernels::classifier(d_logits, d_losses, d_targets, c.N, c.V, c.Vp, dloss, nullptr);
  const std::vector<float> losses = d_losses.download();
  const std::vector<float> out = to_float(d_logits.download());

  // Losses: the kernel sums exp in fp32 (per-thread partials of <= ~60 terms, then a 10-level
  // tree), CpuOps in double: the sum differs by ~1e-6 relative, i.e. ~1e-6 absolute on a loss of
  // ~log(V) >= 4 (plus 1-2 ulp per expf/logf). 1e-5 relative holds with margin.
  EXPECT_LT(rel_error(losses, ref_losses), 1e-5);
  for (int n = 0; n < c.N; n++)
    if (targets[n] < 0) {
      EXPECT_EQ(losses[n], 0.0f) << "row " << n;
    }

  if (dloss == 0.0f) {
    // Forward only: the logits are left untouched, bit for bit.
    EXPECT_EQ(out, x);
    return;
  }
  // dlogits are bf16: each element carries <= 2^-9 relative rounding (norm ~2e-3); the fp32
  // statistics add ~1e-6. 5e-3 is tight enough to catch a wrong max/sum or a missing -1.
  std::vector<float> out_real, ref_real;
  for (int n = 0; n < c.N; n++) {
    for (int i = 0; i < c.Vp; i++) {
      const size_t k = size_t(n) * c.Vp + i;
      if (i >= c.V || targets[n] < 0) {
        ASSERT_EQ(out[k], 0.0f) << "row " << n << " col " << i << " must be exactly zero";
      } else {
        out_real.push_back(out[k]);
        ref_real.push_back(ref_logits[k]);
      }
    }
  }
  EXPECT_LT(rel_error(out_real, ref_real), 5e-3);
  // The target column alone (p - 1) * dloss: the one element the onehot touches.
  for (int n = 0; n < c.N; n++) {
    if (targets[n] < 0) continue;
    const size_t k = size_t(n) * c.Vp + targets[n];
    EXPECT_NEAR(out[k], ref_logits[k], 4e-3 * std::fabs(ref_logits[k]) + 1e-6f) << "row " << n;
  }
}

TEST_F(ClassifierKernel, RaggedVocabVectorPath) {
  check_case({5, 1000, 1024}, 1.0f / 5, 11);
  check_case({5, 1000, 1024}, 0.0f, 12);
}

TEST_F(ClassifierKernel, ScalarPathOddPadding) {
  // Vp % 8 != 0: the scalar path; V not a multiple of anything.
  check_case({6, 77, 83}, 0.37f, 21);
  check_case({4, 77, 77}, 0.0f, 22);
  check_case({3, 1, 9}, 1.0f, 23);  // a one-token vocabulary: loss 0, gradient 0
}

TEST_F(ClassifierKernel, Gpt2Vocab) {
  // Big enough that every thread of a 1024-thread block streams several 16-byte words.
  check_case({3, 50257, 50304}, 1.0f / 3, 31);
}

TEST_F(ClassifierKernel, AllRowsIgnored) {
  const Case c{3, 100, 104};
  const std::vector<float> x = make_logits(c, 41);
  DeviceBuffer<bf16> d_logits(to_bf16(x));
  DeviceBuffer<float> d_losses(c.N);
  DeviceBuffer<int> d_targets(std::vector<int>{-1, -1, -100});
  ouro::kernels::classifier(d_logits, d_losses, d_targets, c.N, c.V, c.Vp, 0.5f, nullptr);
  for (float l : d_losses.download()) EXPECT_EQ(l, 0.0f);
  for (float g : to_float(d_logits.download())) ASSERT_EQ(g, 0.0f);
}

TEST_F(ClassifierKernel, Deterministic) {
  const Case c{4, 3001, 3008};
  const std::vector<bf16> x = to_bf16(make_logits(c, 51));
  const std::vector<int> t = make_targets(c, 52);
  DeviceBuffer<int> d_targets(t);
  std::vector<bf16> g[2];
  std::vector<float> l[2];
  for (int r = 0; r < 2; r++) {
    DeviceBuffer<bf16> d_logits(x);
    DeviceBuffer<float> d_losses(c.N);
    ouro::kernels::classifier(d_logits, d_losses, d_targets, c.N, c.V, c.Vp, 0.25f, nullptr);
    g[r] = d_logits.download();
    l[r] = d_losses.download();
  }
  EXPECT_EQ(0, std::memcmp(g[0].data(), g[1].data(), g[0].size() * sizeof(bf16)));
  EXPECT_EQ(0, std::memcmp(l[0].data(), l[1].data(), l[0].size() * sizeof(float)));
}

TEST_F(ClassifierKernel, OutOfRangeTargetIsClampedNotReadOutOfBounds) {
  // Documented behaviour: a target >= V (the host op validates before upload) is treated as
  // V - 1 so the kernel never reads past the real vocabulary.
  const Case c{2, 50, 56};
  const std::vector<float> x = make_logits(c, 61);
  DeviceBuffer<int> bad(std::vector<int>{50, 1 << 30});
  DeviceBuffer<int> last(std::vector<int>{49, 49});
  DeviceBuffer<bf16> a(to_bf16(x)), b(to_bf16(x));
  DeviceBuffer<float> la(c.N), lb(c.N);
  ouro::kernels::classifier(a, la, bad, c.N, c.V, c.Vp, 1.0f, nullptr);
  ouro::kernels::classifier(b, lb, last, c.N, c.V, c.Vp, 1.0f, nullptr);
  EXPECT_EQ(la.download(), lb.download());
  EXPECT_EQ(to_float(a.download()), to_float(b.download()));
}

TEST_F(ClassifierKernel, RejectsBadShapes) {
  EXPECT_THROW(ouro::kernels::classifier(nullptr, nullptr, nullptr, 1, 10, 8, 1.0f, nullptr), std::invalid_argument);
  EXPECT_THROW(ouro::kernels::classifier(nullptr, nullptr, nullptr, 1, 0, 8, 1.0f, nullptr), std::invalid_argument);
}

}  // namespace
