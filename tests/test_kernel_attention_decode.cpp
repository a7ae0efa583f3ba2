// Split-KV flash decoding (kernels/attention_decode.cu) against the CPU reference's full causal
// forward: the decoded rows equal the forward's last rows within bf16 tolerance at cache lengths
// 1, 7, 63, 64, 65 and 300 (one split, several splits, a last split of one key), head dims 32,
// 64, 128 and a generic 40, B * NH = 6 (not a multiple of the combine kernel's 4 warps). Cache
// positions past the step, the outputs and the scratch start poisoned (NaN), so a read past the
// token's own position or an unwritten element fails. Also: a multi-token step (tokens before the
// last see empty splits), the old one-warp-per-head attention_kv as a second reference, and two
// runs bitwise equal.
#include "kernel_test_support.h"

#include "kernels/attention.h"
#include "kernels/attention_decode.h"

#include "cpu/cpu_ops.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <stdexcept>
#include <string>

namespace {

using namespace kernel_test;
using ouro::kernels::attention_decode;
using ouro::kernels::attention_decode_at;
using ouro::kernels::attention_decode_at_scratch_bytes;
using ouro::kernels::attention_decode_scratch_bytes;
using ouro::kernels::attention_decode_splits;
using ouro::kernels::attention_kv;

class AttentionDecodeTest : public KernelTest {};

struct DecodeCase {
  int B, NH, hd, T, Tn, Tmax;
  int C() const { return hd * NH; }
};

// The (B, Tmax, C) caches holding k (part 1) or v (part 2) of positions 0..pos0-1 of qkv (B, T,
// 3C); every later position NaN.
std::vector<float> cache_of(const std::vector<float>& qkv, const DecodeCase& c, int pos0, int part) {
  const int C = c.C();
  std::vector<float> cache(size_t(c.B) * c.Tmax * C, std::numeric_limits<float>::quiet_NaN());
  for (int b = 0; b < c.B; b++)
    for (int t = 0; t < pos0; t++)
      for (int i = 0; i < C; i++)
        cache[(size_t(b) * c.Tmax + t) * C + i] = qkv[(size_t(b) * c.T + t) * 3 * C + part * C + i];
  return cache;
}

// Rows t0..t0+n-1 of a (B, T, W) tensor as (B, n, W).
std::vector<float> rows_of(const std::vector<float>& x, int B, int T, int W, int t0, int n) {
  std::vector<float> r(size_t(B) * n * W);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < n; t++)
      for (int i = 0; i < W; i++) r[(size_t(b) * n + t) * W + i] = x[(size_t(b) * T + t0 + t) * W + i];
  return r;
}

// Decodes the last c.Tn tokens of a random length-c.T sequence over a cache holding the others;
// returns the decoded (B, Tn, C) rows (bf16 as float) and checks the rest.
std::vector<float> decode_and_check(const DecodeCase& c, uint64_t seed) {
  const int C = c.C(), pos0 = c.T - c.Tn;
  const auto qkv = random_bf16_values(size_t(c.B) * c.T * 3 * C, seed, 1.5f);
  ouro::CpuOps cpu;
  std::vector<float> ref(size_t(c.B) * c.T * C), state(cpu.attention_state_size(c.B, c.T, c.NH));
  cpu.attention_forward(ref.data(), state.data(), qkv.data(), c.B, c.T, C, c.NH);

  const auto step = rows_of(qkv, c.B, c.T, 3 * C, pos0, c.Tn);
  DeviceBuffer<bf16> d_step(to_bf16(step)), d_out(size_t(c.B) * c.Tn * C);
  DeviceBuffer<bf16> kcache(to_bf16(cache_of(qkv, c, pos0, 1))), vcache(to_bf16(cache_of(qkv, c, pos0, 2)));
  DeviceBuffer<unsigned char> scratch(attention_decode_scratch_bytes(c.B, c.Tn, pos0, C, c.NH));
  attention_decode(d_out, d_step, kcache, vcache, c.B, c.Tn, pos0, c.Tmax, C, c.NH, scratch, nullptr);
  const auto out = to_float(d_out.download());
  const std::string what = "B=" + std::to_string(c.B) + " NH=" + std::to_string(c.NH) + " hd=" +
                           std::to_string(c.hd) + " T=" + std::to_string(c.T) + " Tn=" + std::to_string(c.Tn);
  // fp32 throughout, only the output rounded to bf16 (~2e-3 relative).
  EXPECT_LT(rel_error(out, rows_of(ref, c.B, c.T, C, pos0, c.Tn)), 5e-3) << what;

  // The caches now hold positions 0..T-1 exactly; later positions are untouched (still NaN).
  const auto kc = to_float(kcache.download()), vc = to_float(vcache.download());
  const auto kfull = cache_of(qkv, c, c.T, 1), vfull = cache_of(qkv, c, c.T, 2);
  for (size_t i = 0; i < kc.size(); i++) {
    const bool ok = std::isnan(kfull[i]) ? std::isnan(kc[i]) && std::isnan(vc[i])
                                         : kc[i] == kfull[i] && vc[i] == vfull[i];
    if (!ok) {
      ADD_FAILURE() << what << ": cache element " << i << " is " << kc[i] << ", " << vc[i];
      break;
    }
  }
  return out;
}

TEST_F(AttentionDecodeTest, OneTokenMatchesForwardLastRow) {
  for (int hd : {32, 64, 128, 40})  // 40: no tensor-core head dim, any hd runs the same kernel
    for (int T : {1, 7, 63, 64, 65, 300}) decode_and_check({2, 3, hd, T, 1, T + 5}, 1000 + 7 * hd + T);
}

// Several tokens in one step (a prefill through the decode path): each attends to its own prefix,
// so the earlier tokens see empty splits at the end of the cache.
TEST_F(AttentionDecodeTest, MultiTokenStepMatchesForward) {
  ASSERT_GT(attention_decode_splits(1, 4, 3, 300), 2);
  decode_and_check({1, 3, 64, 300, 4, 300}, 77);
  decode_and_check({2, 3, 32, 65, 65, 70}, 78);  // the whole sequence in one step, pos0 = 0
}

// The old one-warp-per-head kernel (attention_kv) on the same step gives the same rows within
// fp32 reordering + one bf16 rounding.
TEST_F(AttentionDecodeTest, AgreesWithOneWarpPerHeadKernel) {
  const DecodeCase c{2, 3, 64, 130, 1, 130};
  const int C = c.C(), pos0 = c.T - 1;
  const auto qkv = random_bf16_values(size_t(c.B) * c.T * 3 * C, 91, 1.5f);
  const auto step = rows_of(qkv, c.B, c.T, 3 * C, pos0, 1);
  const auto kc = to_bf16(cache_of(qkv, c, pos0, 1)), vc = to_bf16(cache_of(qkv, c, pos0, 2));
  DeviceBuffer<bf16> d_step(to_bf16(step)), d_new(size_t(c.B) * C), d_old(size_t(c.B) * C);
  DeviceBuffer<bf16> k1(kc), v1(vc), k2(kc), v2(vc);
  DeviceBuffer<unsigned char> scratch(attention_decode_scratch_bytes(c.B, 1, pos0, C, c.NH));
  attention_decode(d_new, d_step, k1, v1, c.B, 1, pos0, c.Tmax, C, c.NH, scratch, nullptr);
  attention_kv(d_old, d_step, k2, v2, c.B, 1, pos0, c.Tmax, C, c.NH, nullptr);
  EXPECT_LT(rel_error(to_float(d_new.download()), to_float(d_old.download())), 5e-3);
}

// Two runs bitwise equal: the split count is fixed by the shape, every fold has a fixed order.
TEST_F(AttentionDecodeTest, Deterministic) {
  const int B = 1, NH = 3, hd = 64, C = hd * NH, T = 300, pos0 = T - 1;
  ASSERT_GT(attention_decode_splits(B, 1, NH, T), 1);
  const auto step = to_bf16(random_bf16_values(size_t(B) * 3 * C, 5));
  const auto cache = to_bf16(random_bf16_values(size_t(B) * T * C, 6));
  std::vector<bf16> outs[2];
  for (int run = 0; run < 2; run++) {
    DeviceBuffer<bf16> d_step(step), k(cache), v(cache), d_out(size_t(B) * C);
    DeviceBuffer<unsigned char> scratch(attention_decode_scratch_bytes(B, 1, pos0, C, NH));
    attention_decode(d_out, d_step, k, v, B, 1, pos0, T, C, NH, scratch, nullptr);
    outs[run] = d_out.download();
  }
  EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[1].data(), outs[0].size() * sizeof(bf16)));
  for (bf16 x : outs[0]) ASSERT_TRUE(std::isfinite(to_float(x)));
}

TEST_F(AttentionDecodeTest, SplitsDependOnShapeOnly) {
  EXPECT_EQ(attention_decode_splits(1, 1, 12, 1), 1);
  EXPECT_EQ(attention_decode_splits(1, 1, 12, 1024), 16);        // 64 keys per split
  EXPECT_EQ(attention_decode_splits(64, 1, 12, 1024), 1);        // 768 blocks already
  EXPECT_EQ(attention_decode_splits(1, 1, 1, 1 << 20), 64);      // capped
  EXPECT_EQ(attention_decode_splits(2, 300, 3, 300), 1);         // a prefill: one block per row
}

// attention_decode_at (pos0 read on the device; the grid and scratch of a full cache, blocks past
// the actual splits idle) is bitwise attention_decode at every length, caches included: one
// launch captured in decoding's CUDA Graph serves every token. Lengths 1 (one split), 65 and 300
// (several, fewer than the full cache's), a multi-token step, hd 40 and 64, B * NH = 6.
TEST_F(AttentionDecodeTest, DevicePositionIsBitwiseTheHostPosition) {
  for (const DecodeCase& c : {DecodeCase{2, 3, 64, 1, 1, 400}, DecodeCase{2, 3, 40, 65, 1, 400},
                              DecodeCase{2, 3, 64, 300, 1, 400}, DecodeCase{1, 3, 64, 300, 4, 302}}) {
    const int C = c.C(), pos0 = c.T - c.Tn;
    if (c.Tn == 1) {  // the one-token cases leave blocks of the full cache's grid idle
      ASSERT_LT(attention_decode_splits(c.B, 1, c.NH, c.T), attention_decode_splits(c.B, 1, c.NH, c.Tmax)) << c.T;
    }
    const auto qkv = random_bf16_values(size_t(c.B) * c.T * 3 * C, 500 + c.T, 1.5f);
    const auto step = to_bf16(rows_of(qkv, c.B, c.T, 3 * C, pos0, c.Tn));
    const auto kc = to_bf16(cache_of(qkv, c, pos0, 1)), vc = to_bf16(cache_of(qkv, c, pos0, 2));
    DeviceBuffer<bf16> d_step(step), k1(kc), v1(vc), k2(kc), v2(vc);
    DeviceBuffer<bf16> host_out(size_t(c.B) * c.Tn * C), dev_out(size_t(c.B) * c.Tn * C);
    DeviceBuffer<unsigned char> s1(attention_decode_scratch_bytes(c.B, c.Tn, pos0, C, c.NH));
    DeviceBuffer<unsigned char> s2(attention_decode_at_scratch_bytes(c.B, c.Tn, c.Tmax, C, c.NH));
    DeviceBuffer<int> d_pos(std::vector<int>{pos0});
    attention_decode(host_out, d_step, k1, v1, c.B, c.Tn, pos0, c.Tmax, C, c.NH, s1, nullptr);
    attention_decode_at(dev_out, d_step, k2, v2, c.B, c.Tn, d_pos, c.Tmax, C, c.NH, s2, nullptr);
    const std::string what = "hd=" + std::to_string(c.hd) + " T=" + std::to_string(c.T) + " Tn=" + std::to_string(c.Tn);
    const auto a = host_out.download(), b = dev_out.download();
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16))) << what;
    for (bf16 x : b) ASSERT_TRUE(std::isfinite(to_float(x))) << what;
    const auto ka = k1.download(), kb = k2.download(), va = v1.download(), vb = v2.download();
    EXPECT_EQ(0, std::memcmp(ka.data(), kb.data(), ka.size() * sizeof(bf16))) << what;
    EXPECT_EQ(0, std::memcmp(va.data(), vb.data(), va.size() * sizeof(bf16))) << what;
  }
}

TEST_F(AttentionDecodeTest, RejectsBadShapes) {
  DeviceBuffer<bf16> qkv(3 * 600 * 4), out(600 * 4), cache(96 * 8);
  DeviceBuffer<unsigned char> scratch(1 << 16);
  EXPECT_THROW(attention_decode(out, qkv, cache, cache, 1, 2, 7, 8, 64, 2, scratch, nullptr), std::invalid_argument);
  EXPECT_THROW(attention_decode(out, qkv, cache, cache, 1, 1, 0, 8, 514, 2, scratch, nullptr),
               std::invalid_argument);  // hd 257
  EXPECT_THROW(attention_decode(out, qkv, cache, cache, 1, 1, 0, 8, 64, 2, nullptr, nullptr), std::invalid_argument);
}

}  // namespace
