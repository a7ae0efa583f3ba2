// Token + position embedding kernels against CpuOps on the same bf16-rounded tables.
//
// Forward is exact: wte + wpe of two bf16 values is exact in fp32, then one round to nearest
// even, as the host rounds the reference; compared bitwise. Backward: the gradients accumulate
// into nonzero bf16 tables and are rounded to bf16 once (<= 2^-8 = 3.9e-3 relative per element;
// ~1.5e-3 measured over many elements), the fp32 sums differ from the reference's only in association order (~1e-6):
// relative norm 4e-3. Determinism: two runs give the same bits.
#include "kernel_test_support.h"

#include "kernels/embedding.h"

#include "cpu/cpu_ops.h"

namespace {

using namespace kernel_test;
using ouro::kernels::bf16;

class EmbeddingKernel : public KernelTest {};

constexpr double kBf16Tol = 4e-3;

// Tokens in [0, V) with heavy repeats: token 3 % V takes every 5th position.
std::vector<int> make_tokens(int N, int V, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int> t(N);
  for (int i = 0; i < N; i++) t[i] = i % 5 == 0 ? 3 % V : int(rng() % uint64_t(V));
  return t;
}

TEST_F(EmbeddingKernel, ForwardMatchesCpu) {
  const int V = 50, maxT = 40;
  for (auto [B, T, C, pos0] : {std::tuple{3, 13, 768, 0}, std::tuple{1, 1, 40, 17}, std::tuple{2, 37, 100, 3},
                               std::tuple{4, 9, 72, 31}, std::tuple{2, 5, 7, 0}}) {
    SCOPED_TRACE("B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C) +
                 " pos0=" + std::to_string(pos0));
    const auto wte = random_bf16_values(size_t(V) * C, 1 + C);
    const auto wpe = random_bf16_values(size_t(maxT) * C, 2 + C, 0.5f);
    const auto tokens = make_tokens(B * T, V, 3 + C);
    ouro::CpuOps cpu;
    std::vector<float> ref(size_t(B) * T * C);
    cpu.encoder_forward_at(ref.data(), tokens.data(), wte.data(), wpe.data(), B, T, pos0, C);
    ref = round_bf16(ref);

    DeviceBuffer<bf16> dwte(to_bf16(wte)), dwpe(to_bf16(wpe)), out(ref.size());
    DeviceBuffer<int> dtok(tokens);
    ouro::kernels::encoder_forward(out, dtok, dwte, dwpe, B, T, C, pos0, nullptr);
    EXPECT_EQ(to_float(out.download()), ref);
  }
}

// encoder_forward_at (the position read from device memory: decoding's CUDA Graph) is bitwise
// encoder_forward at the same position, with and without wpe, vectorized C and not.
TEST_F(EmbeddingKernel, DevicePositionIsBitwiseTheHostPosition) {
  const int V = 50, maxT = 40;
  for (auto [B, T, C, pos0] : {std::tuple{3, 1, 64, 0}, std::tuple{3, 1, 64, 39}, std::tuple{2, 5, 7, 11}}) {
    SCOPED_TRACE("B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C) +
                 " pos0=" + std::to_string(pos0));
    const auto wte = to_bf16(random_bf16_values(size_t(V) * C, 5 + C));
    const auto wpe = to_bf16(random_bf16_values(size_t(maxT) * C, 6 + C, 0.5f));
    DeviceBuffer<bf16> dwte(wte), dwpe(wpe), a(size_t(B) * T * C), b(size_t(B) * T * C);
    DeviceBuffer<int> dtok(make_tokens(B * T, V, 7 + C)), dpos(std::vector<int>{pos0});
    for (const bf16* pe : {static_cast<const bf16*>(dwpe), static_cast<const bf16*>(nullptr)}) {
      a.poison();
      b.poison();
      ouro::kernels::encoder_forward(a, dtok, dwte, pe, B, T, C, pos0, nullptr);
      ouro::kernels::encoder_forward_at(b, dtok, dwte, pe, B, T, C, dpos, nullptr);
      const auto ha = a.download(), hb = b.download();
      EXPECT_EQ(0, std::memcmp(ha.data(), hb.data(), ha.size() * sizeof(bf16))) << (pe ? "wpe" : "no wpe");
      for (bf16 v : hb) ASSERT_TRUE(std::isfinite(to_float(v)));
    }
  }
}

struct Grads {
  std::vector<bf16> dwte, dwpe;
};

Grads check_backward(int B, int T, int C, int V, uint64_t seed) {
  SCOPED_TRACE("B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C));
  const auto tokens = make_tokens(B * T, V, seed);
  const auto dout = random_bf16_values(size_t(B) * T * C, seed + 1);
  const auto dwte0 = random_bf16_values(size_t(V) * C, seed + 2, 0.5f);
  const auto dwpe0 = random_bf16_values(size_t(T) * C, seed + 3, 0.5f);
  ouro::CpuOps cpu;
  std::vector<float> ref_wte = dwte0, ref_wpe = dwpe0;
  cpu.encoder_backward(ref_wte.data(), ref_wpe.data(), dout.data(), tokens.data(), B, T, C);

  DeviceBuffer<bf16> dwte(to_bf16(dwte0)), dwpe(to_bf16(dwpe0)), ddout(to_bf16(dout));
  DeviceBuffer<unsigned char> scratch(ouro::kernels::encoder_backward_scratch_bytes(B, T, C));
  ouro::kernels::encoder_backward(dwte, dwpe, ddout, tokens.data(), B, T, C, scratch, nullptr);
  Grads g{dwte.download(), dwpe.download()};
  EXPECT_LT(rel_error(to_float(g.dwte), ref_wte), kBf16Tol);
  EXPECT_LT(rel_error(to_float(g.dwpe), ref_wpe), kBf16Tol);
  // Rows of tokens that never occur are untouched (bitwise the initial values).
  std::vector<bool> seen(V, false);
  for (int t : tokens) seen[t] = true;
  const auto init = to_bf16(dwte0);
  for (int v = 0; v < V; v++) {
    if (!seen[v]) {
      EXPECT_EQ(std::memcmp(g.dwte.data() + size_t(v) * C, init.data() + size_t(v) * C, C * sizeof(bf16)), 0)
          << "token " << v;
    }
  }
  return g;
}

bool bitwise_equal(const std::vector<bf16>& a, const std::vector<bf16>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)) == 0;
}

TEST_F(EmbeddingKernel, BackwardMatchesCpu) {
  check_backward(3, 13, 768, 97, 10);  // 128-bit path
  check_backward(2, 37, 100, 53, 11);  // element path (C % 8 != 0)
  check_backward(4, 9, 40, 300, 12);   // most tokens unused
  check_backward(1, 1, 72, 5, 13);     // N = 1
  check_backward(2, 5, 7, 3, 14);      // tiny C, every token repeated
}

TEST_F(EmbeddingKernel, BackwardIsDeterministic) {
  // Many rows per token (token 3 takes 1/5 of 2048 rows) and C > 256 units-per-block slices.
  const auto a = check_backward(8, 256, 2056, 29, 20);
  const auto b = check_backward(8, 256, 2056, 29, 20);
  EXPECT_TRUE(bitwise_equal(a.dwte, b.dwte));
  EXPECT_TRUE(bitwise_equal(a.dwpe, b.dwpe));
}

TEST_F(EmbeddingKernel, RejectsBadArguments) {
  DeviceBuffer<bf16> buf(64);
  DeviceBuffer<int> tok(4);
  DeviceBuffer<unsigned char> scratch(1024);
  EXPECT_THROW(ouro::kernels::encoder_forward(buf, tok, buf, buf, 0, 1, 8, 0, nullptr), std::invalid_argument);
  EXPECT_THROW(ouro::kernels::encoder_forward(buf, tok, buf, buf, 1, 1, 8, -1, nullptr), std::invalid_argument);
  const int bad[2] = {1, -2};
  EXPECT_THROW(ouro::kernels::encoder_backward(buf, buf, buf, bad, 1, 2, 8, scratch, nullptr),
               std::invalid_argument);
}

}  // namespace
