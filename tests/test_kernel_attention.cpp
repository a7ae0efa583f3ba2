// Flash attention forward / backward and KV-cache decoding against the CPU reference (CpuOps on
// the same bf16-rounded inputs) and an fp64 logsumexp loop. Shapes are ragged (T not a multiple
// of the 64-row tiles; T = 160 spans three tiles so the double-buffered pipeline, the diagonal
// mask and the non-diagonal tiles all run), head dims 32, 64 and 128. The forward's 128-query
// tiles (hd 32 and 64, 32 rows per warp): T = 100 is one ragged tile, T = 160 two (the second
// 32 rows), T = 300 three (two diagonal key tiles per query tile, warps whose rows end before the
// second one skip it). B = 2 with NH = 3 or 1: B * NH is no multiple of anything. Every shape is
// CI-sized (the whole suite ~12 s on the emulator, x3 with its hw_math and stale_smem passes).
#include "attention_reference.h"
#include "kernel_test_support.h"

#include "kernels/attention.h"

#include "cpu/cpu_ops.h"

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>
#include <stdexcept>
#include <tuple>

#if defined(__SANITIZE_THREAD__)
#include <omp.h>
#endif

namespace {

#if defined(__SANITIZE_THREAD__)
// libgomp is not TSan-instrumented, so the CPU reference's OpenMP regions are reported as races
// (against the next cudaMalloc on the main thread): run the reference single-threaded there.
const int kSerialReference = (omp_set_num_threads(1), 0);
#endif

using namespace kernel_test;
using ouro::kernels::attention_backward;
using ouro::kernels::attention_backward_scratch_bytes;
using ouro::kernels::attention_forward;
using ouro::kernels::attention_kv;
using ouro::kernels::attention_has_tensor_core_path;
using ouro::kernels::attention_supports;

class AttentionTest : public KernelTest {};

struct Shape {
  int hd, T, NH;
};

class AttentionShapes : public AttentionTest, public ::testing::WithParamInterface<Shape> {};

// Forward out, lse and backward dqkv on one shape.
TEST_P(AttentionShapes, ForwardBackwardMatchCpu) {
  const auto [hd, T, NH] = GetParam();
  const int B = 2, C = hd * NH;
  const size_t nqkv = size_t(B) * T * 3 * C, nout = size_t(B) * T * C;
  const auto qkv = random_bf16_values(nqkv, 1000 + hd * 7 + T, 1.5f);
  const auto dout = random_bf16_values(nout, 2000 + hd * 7 + T);

  ouro::CpuOps cpu;
  std::vector<float> ref_out(nout), state(cpu.attention_state_size(B, T, NH)), ref_dqkv(nqkv);
  cpu.attention_forward(ref_out.data(), state.data(), qkv.data(), B, T, C, NH);

  DeviceBuffer<bf16> d_qkv(to_bf16(qkv)), d_out(nout), d_dout(to_bf16(dout)), d_dqkv(nqkv);
  DeviceBuffer<float> d_lse(size_t(B) * NH * T);
  DeviceBuffer<unsigned char> scratch(attention_backward_scratch_bytes(B, T, C, NH));
  attention_forward(d_out, d_lse, d_qkv, B, T, C, NH, nullptr);
  const auto out = to_float(d_out.download());
  const auto lse = d_lse.download();
  // bf16 output (2^-9 relative rounding) plus P rounded to bf16 for the P V product: measured
  // ~1.8e-3 for every shape.
  EXPECT_LT(rel_error(out, ref_out), 5e-3) << "out hd=" << hd << " T=" << T;
  // lse is fp32 from exact bf16 products accumulated in fp32: a few ulps (measured ~6e-8).
  EXPECT_LT(rel_error(lse, lse_fp64(qkv, B, T, C, NH)), 1e-5) << "lse hd=" << hd << " T=" << T;

  // The CPU backward on the same (rounded) inputs; our kernel sees the bf16 forward output.
  cpu.attention_backward(ref_dqkv.data(), dout.data(), qkv.data(), ref_out.data(), state.data(), B, T, C, NH);
  attention_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, B, T, C, NH, scratch, nullptr);
  const auto dqkv = to_float(d_dqkv.download());  // poisoned before: unwritten elements are NaN
  // bf16 operands of every product (P, dS rounded to bf16), bf16 outputs and D from the bf16
  // output: each a ~2^-9 relative rounding, compounded through dS = P (dP - D): measured
  // 2.2e-3 (dv) .. 3.7e-3 (dq, dk).
  const char* names[3] = {"dq", "dk", "dv"};
  for (int p = 0; p < 3; p++)
    EXPECT_LT(rel_error(qkv_part(dqkv, B, T, C, p), qkv_part(ref_dqkv, B, T, C, p)), 1e-2)
        << names[p] << " hd=" << hd << " T=" << T;
}

INSTANTIATE_TEST_SUITE_P(Ragged, AttentionShapes,
                         ::testing::Values(Shape{32, 1, 3}, Shape{32, 37, 3}, Shape{32, 100, 2}, Shape{32, 160, 3},
                                           Shape{64, 1, 2}, Shape{64, 37, 2}, Shape{64, 100, 3}, Shape{64, 160, 2},
                                           Shape{128, 1, 2}, Shape{128, 37, 2}, Shape{128, 100, 2},
                                           Shape{128, 160, 2}, Shape{32, 300, 1}, Shape{64, 300, 1},
                                           // the generic path (attention_generic.cu): other head dims
                                           Shape{12, 19, 4}, Shape{48, 37, 2}, Shape{200, 9, 1}),
                         [](const auto& info) {
                           return "hd" + std::to_string(info.param.hd) + "_T" + std::to_string(info.param.T) +
                                  "_NH" + std::to_string(info.param.NH);
                         });

// The backward's tiles (kernels/attention.cu, BwdTiles): hd 32 and 64 own 128 keys (dK,dV) or
// 128 queries (dQ) per block, 32 rows per warp; hd 128 64 per block with 32-key dQ steps. Against
// the fp64 reference (attention_reference.h), on poisoned outputs, twice (bitwise equal). Shapes:
// T = 129 puts one row in the second 128-row tile (warps 1..3 have no live rows), T = 200 and
// 300 end in ragged tiles whose last warps' rows lie wholly past T and whose query tiles span
// 4 dQ key steps (the last ones diagonal: per-m16-tile skipping), T = 45 and 40 one ragged tile;
// B * NH = 3, 6, 2: no multiple of anything; hd 80: the generic kernels. All CI-sized (these
// cases and the two Hd128 tests: ~1.5 CPU-s plain, ~9 under ASan, ~25 under TSan);
// AttentionBackwardFull below has the full-size shapes.
struct BwdShape {
  int hd, B, T, NH;
};

class AttentionBackwardTiles : public AttentionTest, public ::testing::WithParamInterface<BwdShape> {};

void expect_backward_matches_fp64_bitwise_twice(const BwdShape& shape) {
  const auto [hd, B, T, NH] = shape;
  const int C = hd * NH;
  const size_t nqkv = size_t(B) * T * 3 * C, nout = size_t(B) * T * C;
  const auto qkv = random_bf16_values(nqkv, 5000 + hd * 7 + T, 1.5f);
  const auto dout = random_bf16_values(nout, 6000 + hd * 7 + T);
  const auto ref = attention_backward_fp64(qkv, dout, B, T, C, NH);
  DeviceBuffer<bf16> d_qkv(to_bf16(qkv)), d_out(nout), d_dout(to_bf16(dout));
  DeviceBuffer<float> d_lse(size_t(B) * NH * T);
  DeviceBuffer<unsigned char> scratch(attention_backward_scratch_bytes(B, T, C, NH));
  attention_forward(d_out, d_lse, d_qkv, B, T, C, NH, nullptr);
  std::vector<bf16> runs[2];
  for (auto& run : runs) {
    DeviceBuffer<bf16> d_dqkv(nqkv);  // poisoned: an unwritten element is NaN and fails below
    attention_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, B, T, C, NH, scratch, nullptr);
    run = d_dqkv.download();
  }
  ASSERT_EQ(0, std::memcmp(runs[0].data(), runs[1].data(), nqkv * sizeof(bf16))) << "not bitwise repeatable";
  const auto dqkv = to_float(runs[0]);
  // Against exact fp64 (O too, where the kernels take D from the bf16 forward output): the same
  // bf16 roundings as against the CPU ops (P, dS and the outputs), measured 1.7e-3 .. 3.3e-3.
  const char* names[3] = {"dq", "dk", "dv"};
  for (int p = 0; p < 3; p++)
    EXPECT_LT(rel_error(qkv_part(dqkv, B, T, C, p), qkv_part(ref, B, T, C, p)), 1e-2)
        << names[p] << " hd=" << hd << " B=" << B << " T=" << T << " NH=" << NH;
}

TEST_P(AttentionBackwardTiles, MatchesFp64BitwiseRepeatable) { expect_backward_matches_fp64_bitwise_twice(GetParam()); }

INSTANTIATE_TEST_SUITE_P(Ragged, AttentionBackwardTiles,
                         ::testing::Values(BwdShape{32, 1, 129, 3}, BwdShape{32, 1, 300, 2}, BwdShape{64, 3, 200, 1},
                                           BwdShape{64, 2, 129, 1}, BwdShape{128, 1, 200, 2},
                                           BwdShape{128, 2, 45, 3}, BwdShape{80, 1, 40, 2}),
                         [](const auto& info) {
                           return "hd" + std::to_string(info.param.hd) + "_B" + std::to_string(info.param.B) + "_T" +
                                  std::to_string(info.param.T) + "_NH" + std::to_string(info.param.NH);
                         });

// Full size (GPT-2 124M's attention: B 4, T 1024, 12 heads of 64; and hd 128 at T 1024): 72
// CPU-s on the emulator in the plain build (passed), so only with OURO_FULL_TESTS=1
// (`OURO_FULL_TESTS=1 build/ouro_test_kernel_attention --gtest_filter='AttentionBackwardFull*'`).
TEST_F(AttentionTest, AttentionBackwardFull) {
  if (std::getenv("OURO_FULL_TESTS") == nullptr) GTEST_SKIP() << "full-size shapes: set OURO_FULL_TESTS=1";
  for (const BwdShape& shape : {BwdShape{64, 4, 1024, 12}, BwdShape{128, 1, 1024, 4}})
    expect_backward_matches_fp64_bitwise_twice(shape);
}

#if defined(OURO_SIMT)
// Swaps the emulated device's opt-in shared memory per block (OURO_SIMT_SMEM_OPTIN) and leaves
// the Hopper path (OURO_SIMT_ARCH) off for one scope; restores both.
class EmulatedSharedMemoryLimit {
 public:
  explicit EmulatedSharedMemoryLimit(const char* bytes) : optin_("OURO_SIMT_SMEM_OPTIN", bytes) {}

 private:
  ScopedEnv optin_;
  ScopedEnv arch_{"OURO_SIMT_ARCH", nullptr};
};

// Forward and backward of hd 128 under an opt-in limit; returns what was printed to stderr.
std::string run_hd128_under_limit(const char* limit_bytes, int B, int T) {
  const int NH = 2, hd = 128, C = hd * NH;
  const size_t nqkv = size_t(B) * T * 3 * C, nout = size_t(B) * T * C;
  const auto qkv = random_bf16_values(nqkv, 4242, 1.5f);
  const auto dout = random_bf16_values(nout, 4343);
  ouro::CpuOps cpu;
  std::vector<float> ref_out(nout), state(cpu.attention_state_size(B, T, NH)), ref_dqkv(nqkv);
  cpu.attention_forward(ref_out.data(), state.data(), qkv.data(), B, T, C, NH);
  cpu.attention_backward(ref_dqkv.data(), dout.data(), qkv.data(), ref_out.data(), state.data(), B, T, C, NH);
  DeviceBuffer<bf16> d_qkv(to_bf16(qkv)), d_out(nout), d_dout(to_bf16(dout)), d_dqkv(nqkv);
  DeviceBuffer<float> d_lse(size_t(B) * NH * T);
  DeviceBuffer<unsigned char> scratch(attention_backward_scratch_bytes(B, T, C, NH));
  std::string err, log;
  {
    EmulatedSharedMemoryLimit limit(limit_bytes);
    ::testing::internal::CaptureStderr();
    try {
      attention_forward(d_out, d_lse, d_qkv, B, T, C, NH, nullptr);
      attention_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, B, T, C, NH, scratch, nullptr);
    } catch (const std::exception& e) {
      err = e.what();
    }
    log = ::testing::internal::GetCapturedStderr();
  }
  EXPECT_EQ(err, "");
  EXPECT_LT(rel_error(to_float(d_out.download()), ref_out), 5e-3);
  const auto dqkv = to_float(d_dqkv.download());
  for (int p = 0; p < 3; p++) EXPECT_LT(rel_error(qkv_part(dqkv, B, T, C, p), qkv_part(ref_dqkv, B, T, C, p)), 1e-2) << p;
  return log;
}

// On a GPU whose opt-in shared memory is 99 KB (sm_86 / sm_89: OURO_SIMT_SMEM_OPTIN fakes it),
// head dim 128's forward (85 KB) and backward (dK,dV 70144 bytes, dQ 69632) all run on the
// tensor-core kernels: nothing falls back, nothing warns.
TEST_F(AttentionTest, Hd128FitsTheSharedMemoryOfSm86) {
  const std::string log = run_hd128_under_limit("101376", 2, 100);
  EXPECT_EQ(log.find("ouro: warning"), std::string::npos) << log;
}

// With less (64 KB), the kernels that do not fit run the generic kernels with a warning instead
// of failing at cudaFuncSetAttribute; results match the CPU as on the tensor-core path. (A
// smaller shape: the generic kernels are slow under TSan.)
TEST_F(AttentionTest, Hd128FallsBackWhenTheDeviceHasLessSharedMemory) {
  const std::string log = run_hd128_under_limit("65536", 1, 40);
  EXPECT_NE(log.find("attention forward (head dim 128) needs 87040 bytes of shared memory per block, this GPU "
                     "allows 65536"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("attention backward (head dim 128) needs 70144 bytes of shared memory per block, this GPU "
                     "allows 65536"),
            std::string::npos)
      << log;
}
#endif

// Two runs of forward and backward give bitwise equal results (no atomics, fixed order).
TEST_F(AttentionTest, Deterministic) {
  const int B = 1, T = 150, NH = 2, hd = 64, C = hd * NH;  // three tiles, ragged
  const size_t nqkv = size_t(B) * T * 3 * C, nout = size_t(B) * T * C;
  DeviceBuffer<bf16> d_qkv(to_bf16(random_bf16_values(nqkv, 7))), d_dout(to_bf16(random_bf16_values(nout, 8)));
  DeviceBuffer<unsigned char> scratch(attention_backward_scratch_bytes(B, T, C, NH));
  std::vector<bf16> outs[2], dqkvs[2];
  std::vector<float> lses[2];
  for (int run = 0; run < 2; run++) {
    DeviceBuffer<bf16> d_out(nout), d_dqkv(nqkv);
    DeviceBuffer<float> d_lse(size_t(B) * NH * T);
    attention_forward(d_out, d_lse, d_qkv, B, T, C, NH, nullptr);
    attention_backward(d_dqkv, d_dout, d_qkv, d_out, d_lse, B, T, C, NH, scratch, nullptr);
    outs[run] = d_out.download();
    lses[run] = d_lse.download();
    dqkvs[run] = d_dqkv.download();
  }
  EXPECT_EQ(0, std::memcmp(outs[0].data(), outs[1].data(), nout * sizeof(bf16)));
  EXPECT_EQ(0, std::memcmp(lses[0].data(), lses[1].data(), lses[0].size() * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(dqkvs[0].data(), dqkvs[1].data(), nqkv * sizeof(bf16)));
  for (bf16 x : dqkvs[0]) ASSERT_TRUE(std::isfinite(to_float(x)));  // every element written
}

// Decoding: a prefill of Tn > 1 tokens then one-token steps reproduce the training forward's
// rows on the same tokens, and the caches hold exactly the tokens' k and v.
TEST_F(AttentionTest, KvCacheMatchesForward) {
  for (int hd : {32, 64, 128, 12}) {  // 12: the generic path
    const int B = 2, NH = 2, C = hd * NH, T = 41, Tmax = 48, prefill = 29;
    const size_t nqkv = size_t(B) * T * 3 * C, nout = size_t(B) * T * C;
    const auto qkv = random_bf16_values(nqkv, 300 + hd, 1.5f);
    DeviceBuffer<bf16> d_qkv(to_bf16(qkv)), d_out(nout);
    DeviceBuffer<float> d_lse(size_t(B) * NH * T);
    attention_forward(d_out, d_lse, d_qkv, B, T, C, NH, nullptr);
    const auto fwd = to_float(d_out.download());
    ouro::CpuOps cpu;
    std::vector<float> ref(nout), state(cpu.attention_state_size(B, T, NH));
    cpu.attention_forward(ref.data(), state.data(), qkv.data(), B, T, C, NH);

    DeviceBuffer<bf16> kcache(size_t(B) * Tmax * C), vcache(size_t(B) * Tmax * C);
    std::vector<float> dec(nout);  // decoded rows, assembled as (B, T, C)
    for (int pos0 = 0; pos0 < T;) {
      const int Tn = pos0 == 0 ? prefill : 1;
      std::vector<float> step(size_t(B) * Tn * 3 * C);
      for (int b = 0; b < B; b++)
        for (int t = 0; t < Tn; t++)
          for (int c = 0; c < 3 * C; c++)
            step[(size_t(b) * Tn + t) * 3 * C + c] = qkv[(size_t(b) * T + pos0 + t) * 3 * C + c];
      DeviceBuffer<bf16> d_step(to_bf16(step)), d_sout(size_t(B) * Tn * C);
      attention_kv(d_sout, d_step, kcache, vcache, B, Tn, pos0, Tmax, C, NH, nullptr);
      const auto sout = to_float(d_sout.download());
      for (int b = 0; b < B; b++)
        for (int t = 0; t < Tn; t++)
          for (int c = 0; c < C; c++)
            dec[(size_t(b) * T + pos0 + t) * C + c] = sout[(size_t(b) * Tn + t) * C + c];
      pos0 += Tn;
    }
    // Decoding is fp32 throughout (only the output rounded: ~2e-3); the training forward also
    // rounds P to bf16; measured ~1.4e-3 against the forward, ~1.6e-3 against the CPU.
    EXPECT_LT(rel_error(dec, fwd), 5e-3) << "hd=" << hd;
    EXPECT_LT(rel_error(dec, ref), 5e-3) << "hd=" << hd;
    const auto kc = to_float(kcache.download()), vc = to_float(vcache.download());
    for (int b = 0; b < B; b++)
      for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
          const size_t src = (size_t(b) * T + t) * 3 * C, dst = (size_t(b) * Tmax + t) * C + c;
          ASSERT_EQ(kc[dst], qkv[src + C + c]);
          ASSERT_EQ(vc[dst], qkv[src + 2 * C + c]);
        }
  }
}

TEST_F(AttentionTest, RejectsUnsupportedShapes) {
  EXPECT_TRUE(attention_supports(48));  // on the generic path
  EXPECT_FALSE(attention_has_tensor_core_path(48));
  EXPECT_TRUE(attention_has_tensor_core_path(64));
  EXPECT_FALSE(attention_supports(257));
  DeviceBuffer<bf16> qkv(3 * 600 * 4), out(600 * 4), cache(96 * 8);
  DeviceBuffer<float> lse(8);
  EXPECT_THROW(attention_forward(out, lse, qkv, 1, 4, 514, 2, nullptr), std::invalid_argument);  // hd 257
  EXPECT_THROW(attention_forward(out, lse, qkv, 1, 0, 64, 2, nullptr), std::invalid_argument);
  EXPECT_THROW(attention_kv(out, qkv, cache, cache, 1, 2, 7, 8, 64, 2, nullptr), std::invalid_argument);
}

}  // namespace
