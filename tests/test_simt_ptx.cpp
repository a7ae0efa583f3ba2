// ouro::ptx under the SIMT emulator: mma, ldmatrix and cp.async against a scalar model of the
// PTX ISA, at every lane, with seeded random inputs; and the bugs the wrappers must report.
// The same file, linked with the nvcc-built kernels, is ouro_test_ptx_gpu: on a machine with a
// GPU it checks the model (and so the emulator) against the hardware; without one it skips.
// Tests of emulator-only behaviour (reports, poison, copy-at-wait) are compiled for OURO_SIMT.
//
// The scalar model here is written from the layout formulas (design.md section 4, PTX ISA
// "Matrix Fragments for mma.m16n8k16"), in the opposite direction from the emulation: the test
// scatters whole matrices into per-lane fragments and predicts each lane's registers, the
// emulation gathers fragments back into matrices. Encodings (float -> bf16/f16 bits) are the
// test's own too.
#include <gtest/gtest.h>

#if defined(OURO_SIMT)
#include <ouro/simt/launch.h>
#include <ouro/simt/report.h>
#include <ouro/simt/thread.h>
#endif

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <string>

#include "simt/ptx_kernels.h"

namespace {

// Every test needs a device: the emulator always has one; a CUDA build may run without a GPU.
class DeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ptx_test::device_available()) GTEST_SKIP() << "no CUDA device";
  }
};
using SimtPtxMma = DeviceTest;
using SimtPtxLdmatrix = DeviceTest;
using SimtPtxCpAsync = DeviceTest;

// ---- encodings ----------------------------------------------------------------------------------

// float -> bf16 bits, round to nearest even (inputs here are finite).
uint16_t to_bf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float from_bf16(uint16_t h) { return std::bit_cast<float>(uint32_t{h} << 16); }

// float -> f16 bits for values that f16 represents exactly as a normal number or zero.
uint16_t to_f16_exact(float x) {
  if (x == 0.0f) return std::signbit(x) ? 0x8000 : 0;
  const uint32_t u = std::bit_cast<uint32_t>(x);
  const uint32_t sign = (u >> 16) & 0x8000u;
  const int exp = static_cast<int>((u >> 23) & 0xff) - 127 + 15;
  const uint32_t man = u & 0x7fffffu;
  if (exp <= 0 || exp >= 31 || (man & 0x1fffu)) throw std::logic_error("not an exact f16 normal");
  return static_cast<uint16_t>(sign | static_cast<uint32_t>(exp) << 10 | man >> 13);
}

uint32_t pack(uint16_t lo, uint16_t hi) { return uint32_t{lo} | uint32_t{hi} << 16; }

// ---- mma.m16n8k16 model -------------------------------------------------------------------------

struct MmaCase {
  uint16_t a[16][16];  // A[m][k], bits
  uint16_t b[16][8];   // B[k][n], bits
  float av[16][16], bv[16][8];
  float c[16][8];
};

// Per-lane fragments from whole matrices.
struct Fragments {
  uint32_t a[32][4], b[32][2];
  float c[32][4];
};

Fragments scatter(const MmaCase& mc) {
  Fragments f{};
  for (int lane = 0; lane < 32; ++lane) {
    const int g = lane >> 2, t = lane & 3;
    uint16_t ae[8], be[4];
    for (int i = 0; i < 8; ++i) ae[i] = mc.a[g + 8 * ((i >> 1) & 1)][2 * t + (i & 1) + 8 * (i >= 4)];
    for (int i = 0; i < 4; ++i) be[i] = mc.b[2 * t + (i & 1) + 8 * (i >= 2)][g];
    for (int r = 0; r < 4; ++r) f.a[lane][r] = pack(ae[2 * r], ae[2 * r + 1]);
    for (int r = 0; r < 2; ++r) f.b[lane][r] = pack(be[2 * r], be[2 * r + 1]);
    for (int i = 0; i < 4; ++i) f.c[lane][i] = mc.c[g + 8 * (i >= 2)][2 * t + (i & 1)];
  }
  return f;
}

// D[m][n] = C[m][n] + sum_k A[m][k] B[k][n], in the documented order: k = 0..15, each step one
// fused multiply-add (exact product, one fp32 rounding).
float model_d(const MmaCase& mc, int m, int n) {
  float acc = mc.c[m][n];
  for (int k = 0; k < 16; ++k) acc = std::fmaf(mc.av[m][k], mc.bv[k][n], acc);
  return acc;
}

// The lane and register that hold D[m][n].
void check_d(const MmaCase& mc, const float (&d)[32][4], const char* what) {
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < 4; ++i) {
      const int m = (lane >> 2) + 8 * (i >= 2), n = 2 * (lane & 3) + (i & 1);
      const float want = model_d(mc, m, n);
      ASSERT_EQ(std::bit_cast<uint32_t>(d[lane][i]), std::bit_cast<uint32_t>(want))
          << what << ": lane " << lane << " d" << i << " = D[" << m << "][" << n << "] got "
          << d[lane][i] << " want " << want;
    }
}

enum class Values { random_bf16, small_integers, exact_f16 };

MmaCase make_case(std::mt19937& rng, Values kind) {
  MmaCase mc{};
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_int_distribution<int> small(-8, 8), mant(0, 1023), expo(-6, 2), sign(0, 1);
  const auto value = [&](bool f16) -> std::pair<uint16_t, float> {
    if (kind == Values::random_bf16) {
      const uint16_t h = to_bf16(normal(rng) * 3.0f);
      return {h, from_bf16(h)};
    }
    // f16 case: an 11-bit significand (1024 + m) times 2^(e-10): an exact f16 normal.
    const float x = kind == Values::small_integers
                        ? static_cast<float>(small(rng))
                        : (sign(rng) ? -1.0f : 1.0f) *
                              std::ldexp(static_cast<float>(1024 + mant(rng)), expo(rng) - 10);
    return {f16 ? to_f16_exact(x) : to_bf16(x), x};
  };
  const bool f16 = kind == Values::exact_f16;
  for (int m = 0; m < 16; ++m)
    for (int k = 0; k < 16; ++k) std::tie(mc.a[m][k], mc.av[m][k]) = value(f16);
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 8; ++n) std::tie(mc.b[k][n], mc.bv[k][n]) = value(f16);
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n)
      mc.c[m][n] = kind == Values::small_integers ? static_cast<float>(small(rng)) : normal(rng);
  return mc;
}

void run_case(bool bf16, const MmaCase& mc, float (&d)[32][4]) {
  const Fragments f = scatter(mc);
  ptx_test::run_mma(bf16, f.a, f.b, f.c, d);
}

TEST_F(SimtPtxMma, Bf16SmallIntegersAreExactAtEveryLane) {
  // Every partial sum is a small integer: the result is exact whatever the accumulation order,
  // so this case holds for a GPU's tensor cores as much as for the emulator.
  std::mt19937 rng(1);
  for (int rep = 0; rep < 4; ++rep) {
    const MmaCase mc = make_case(rng, Values::small_integers);
    float d[32][4];
    run_case(true, mc, d);
    check_d(mc, d, "bf16 integers");
  }
}

TEST_F(SimtPtxMma, Bf16RandomFollowsTheDocumentedAccumulationOrder) {
  std::mt19937 rng(2);
  for (int rep = 0; rep < 8; ++rep) {
    const MmaCase mc = make_case(rng, Values::random_bf16);
    float d[32][4];
    run_case(true, mc, d);
#if defined(OURO_SIMT)
    check_d(mc, d, "bf16 random");  // a GPU's tensor cores round their own way
#endif
    // And it is what a matrix product is: close to the fp64 result.
    double err = 0, ref = 0;
    for (int lane = 0; lane < 32; ++lane)
      for (int i = 0; i < 4; ++i) {
        const int m = (lane >> 2) + 8 * (i >= 2), n = 2 * (lane & 3) + (i & 1);
        double exact = mc.c[m][n];
        for (int k = 0; k < 16; ++k) exact += double{mc.av[m][k]} * mc.bv[k][n];
        err += (d[lane][i] - exact) * (d[lane][i] - exact);
        ref += exact * exact;
      }
    EXPECT_LT(std::sqrt(err / ref), 1e-5);
  }
}

TEST_F(SimtPtxMma, F16ExactValuesAtEveryLane) {
  std::mt19937 rng(3);
  for (int rep = 0; rep < 8; ++rep) {
    const MmaCase mc = make_case(rng, Values::exact_f16);
    float d[32][4];
    run_case(false, mc, d);
    check_d(mc, d, "f16");
  }
}

TEST_F(SimtPtxMma, F16DecodesSubnormalsInfinityAndNaN) {
  MmaCase mc{};
  // Row 0 of A: a subnormal (2^-24) and 1.0; B column 0: 1.0 and 2^-24 -> D[0][0] = 2^-23.
  mc.a[0][0] = 0x0001;
  mc.av[0][0] = std::ldexp(1.0f, -24);
  mc.a[0][1] = 0x3c00;
  mc.av[0][1] = 1.0f;
  mc.b[0][0] = 0x3c00;
  mc.bv[0][0] = 1.0f;
  mc.b[1][0] = 0x0001;
  mc.bv[1][0] = std::ldexp(1.0f, -24);
  // Row 1: +inf * 1 -> +inf in column 0; row 2: NaN * 1 -> NaN in column 0.
  mc.a[1][0] = 0x7c00;
  mc.a[2][0] = 0x7e00;
  float d[32][4];
  run_case(false, mc, d);
  EXPECT_EQ(d[0][0], std::ldexp(1.0f, -23));   // lane 0 d0 = D[0][0]
  EXPECT_EQ(d[4][0], INFINITY);                  // lane 4 d0 = D[1][0]
  EXPECT_TRUE(std::isnan(d[8][0]));              // lane 8 d0 = D[2][0]
  EXPECT_EQ(d[12][0], 0.0f);                     // lane 12 d0 = D[3][0]
}

// ---- ldmatrix -----------------------------------------------------------------------------------

void check_ldmatrix(int n, bool trans, uint32_t seed) {
  std::mt19937 rng(seed);
  uint16_t rows[64][8];
  for (auto& row : rows)
    for (auto& e : row) e = static_cast<uint16_t>(rng());
  // Each lane points at a distinct random row, so a lane's address used for the wrong row shows.
  int sel[32];
  std::vector<int> perm(64);
  for (int i = 0; i < 64; ++i) perm[i] = i;
  std::shuffle(perm.begin(), perm.end(), rng);
  for (int lane = 0; lane < 32; ++lane) sel[lane] = perm[lane];
  uint32_t out[32][4];
  ptx_test::run_ldmatrix(n, trans, rows, sel, out);
  // Matrix i row j comes from the row lane 8i + j points at; register i of lane L holds
  // [L/4][2(L%4)], [L/4][2(L%4)+1] (.trans: [2(L%4)][L/4], [2(L%4)+1][L/4]) of matrix i.
  const auto elem = [&](int i, int row, int col) { return rows[sel[8 * i + row]][col]; };
  for (int lane = 0; lane < 32; ++lane)
    for (int i = 0; i < n; ++i) {
      const int q = lane / 4, p = 2 * (lane % 4);
      const uint32_t want = trans ? pack(elem(i, p, q), elem(i, p + 1, q))
                                  : pack(elem(i, q, p), elem(i, q, p + 1));
      ASSERT_EQ(out[lane][i], want) << "ldmatrix.x" << n << (trans ? ".trans" : "") << " lane "
                                    << lane << " register " << i;
    }
}

TEST_F(SimtPtxLdmatrix, X1) { check_ldmatrix(1, false, 11); }
TEST_F(SimtPtxLdmatrix, X2) { check_ldmatrix(2, false, 12); }
TEST_F(SimtPtxLdmatrix, X4) { check_ldmatrix(4, false, 13); }
TEST_F(SimtPtxLdmatrix, X1Trans) { check_ldmatrix(1, true, 14); }
TEST_F(SimtPtxLdmatrix, X2Trans) { check_ldmatrix(2, true, 15); }
TEST_F(SimtPtxLdmatrix, X4Trans) { check_ldmatrix(4, true, 16); }

TEST_F(SimtPtxLdmatrix, FeedsMmaAsOnHardware) {
  // ldmatrix.x4 of row-major A and ldmatrix.x2.trans of B[k][n] produce exactly the mma
  // fragments: D is the plain matrix product (integers, so exact in any order).
  std::mt19937 rng(21);
  std::uniform_int_distribution<int> small(-8, 8);
  uint16_t A[16 * 16], B[16 * 8];
  float av[16 * 16], bv[16 * 8], C[16 * 8], D[16 * 8];
  for (int i = 0; i < 256; ++i) av[i] = static_cast<float>(small(rng)), A[i] = to_bf16(av[i]);
  for (int i = 0; i < 128; ++i) bv[i] = static_cast<float>(small(rng)), B[i] = to_bf16(bv[i]);
  for (float& c : C) c = static_cast<float>(small(rng));
  ptx_test::run_ldmatrix_mma(A, B, C, D);
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      float want = C[8 * m + n];
      for (int k = 0; k < 16; ++k) want += av[16 * m + k] * bv[8 * k + n];
      ASSERT_EQ(D[8 * m + n], want) << "D[" << m << "][" << n << "]";
    }
}

// ---- cp.async -----------------------------------------------------------------------------------

void check_cp_async_size(int size) {
  std::mt19937 rng(30 + size);
  // Every src_bytes from 0 to size with the zero-filling form, then the plain form.
  std::vector<int> src_bytes;
  for (int b = 0; b <= size; ++b) src_bytes.push_back(b);
  src_bytes.push_back(-1);
  const int cases = static_cast<int>(src_bytes.size());
  std::vector<uint8_t> src(16 * cases), out(16 * cases);
  for (auto& b : src) b = static_cast<uint8_t>(1 + rng() % 255);  // never 0: zero-fill shows
  ptx_test::run_cp_async_sizes(size, cases, src_bytes.data(), src.data(), out.data());
  for (int i = 0; i < cases; ++i) {
    const int copied = src_bytes[i] < 0 ? size : src_bytes[i];
    for (int j = 0; j < 16; ++j) {
      const uint8_t want = j < copied ? src[16 * i + j] : j < size ? 0 : 0xAB;
      ASSERT_EQ(out[16 * i + j], want) << "cp.async size " << size << " src_bytes " << src_bytes[i]
                                       << " byte " << j;
    }
  }
}

TEST_F(SimtPtxCpAsync, Size16CopiesAndZeroFills) { check_cp_async_size(16); }
TEST_F(SimtPtxCpAsync, Size8CopiesAndZeroFills) { check_cp_async_size(8); }
TEST_F(SimtPtxCpAsync, Size4CopiesAndZeroFills) { check_cp_async_size(4); }

#if defined(OURO_SIMT)
// What a thread sees of its own pending copies is the emulator's choice (on a GPU: undefined).
TEST_F(SimtPtxCpAsync, WaitGroupLeavesAtMostTheNNewestGroupsPending) {
  uint32_t src[16], snap[5][4][4];
  for (uint32_t i = 0; i < 16; ++i) src[i] = 0x1000 + i;
  ptx_test::run_cp_async_groups(src, snap);
  constexpr uint32_t kPoison = 0xFFFFFFFFu;  // the destination from issue until the copy
  // Slots done after each snapshot: none; g0; g0 g1; g0 g1 g2 (the uncommitted copy stays
  // pending); all four (its group is older than the newest, empty, one).
  const int done[5] = {0, 1, 2, 3, 4};
  for (int s = 0; s < 5; ++s)
    for (int slot = 0; slot < 4; ++slot)
      for (int w = 0; w < 4; ++w)
        ASSERT_EQ(snap[s][slot][w], slot < done[s] ? src[4 * slot + w] : kPoison)
            << "snapshot " << s << " slot " << slot << " word " << w;
}

TEST_F(SimtPtxCpAsync, ReadsTheSourceAtTheWaitNotAtIssue) {
  // The latest moment the ISA allows: a kernel that changes the source before waiting gets the
  // new data here (on a GPU: either, unpredictably), which makes that bug visible.
  const uint32_t first[4] = {1, 2, 3, 4}, later[4] = {5, 6, 7, 8};
  uint32_t out[4];
  ptx_test::run_cp_async_source_changed(first, later, out);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], later[i]);
}

TEST_F(SimtPtxCpAsync, CopiesPendingAtThreadExitDieWithTheBlock) {
  // One OS thread, so that both runs of the block reuse the same queues and shared memory.
  const unsigned threads = ouro::simt::worker_threads();
  ouro::simt::set_worker_threads(1);
  const uint32_t src[4] = {1, 2, 3, 4};
  uint32_t out[4];
  ptx_test::run_cp_async_pending_at_exit(src, out);
  ouro::simt::set_worker_threads(threads);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(out[i], 7u) << "word " << i;
}
#endif  // OURO_SIMT

TEST_F(SimtPtxCpAsync, OtherThreadsSeeTheDataAfterTheBarrier) {
  uint32_t src[32], out[32];
  for (uint32_t i = 0; i < 32; ++i) src[i] = 7 * i + 1;
  ptx_test::run_cp_async_visible_after_barrier(src, out);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], src[i]) << "thread " << i;
}

// ---- reports ------------------------------------------------------------------------------------
#if defined(OURO_SIMT)

using ouro::simt::BugKind;
using ouro::simt::BugReport;

template <class Fn>
ouro::simt::Report expect_report(Fn&& fn) {
  ouro::simt::ThrowReports throwing;
  try {
    fn();
  } catch (const BugReport& e) {
    return e.report;
  }
  ADD_FAILURE() << "no report";
  return {};
}

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

TEST(SimtPtxReports, MisalignedLdmatrixNamesTheLaneAndLine) {
  const auto r = expect_report(ptx_test::launch_misaligned_ldmatrix);
  EXPECT_EQ(r.kind, BugKind::misaligned_address) << r.text();
  EXPECT_TRUE(ends_with(r.file, "ptx_kernels.cu")) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_test::kMisalignedLdmatrixLine)) << r.text();
  EXPECT_EQ(r.thread.x, 5u) << r.text();
  EXPECT_NE(r.kernel.find("misaligned_ldmatrix_kernel"), std::string::npos) << r.text();
}

TEST(SimtPtxReports, MisalignedCpAsyncDestination) {
  const auto r = expect_report(ptx_test::launch_misaligned_cp_async_dst);
  EXPECT_EQ(r.kind, BugKind::misaligned_address) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_test::kMisalignedCpAsyncDstLine)) << r.text();
  EXPECT_EQ(r.thread.x, 3u) << r.text();
  EXPECT_NE(r.message.find("shared"), std::string::npos) << r.text();
}

TEST(SimtPtxReports, MisalignedCpAsyncSource) {
  const auto r = expect_report(ptx_test::launch_misaligned_cp_async_src);
  EXPECT_EQ(r.kind, BugKind::misaligned_address) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_test::kMisalignedCpAsyncSrcLine)) << r.text();
  EXPECT_EQ(r.thread.x, 2u) << r.text();
  EXPECT_NE(r.message.find("global"), std::string::npos) << r.text();
}

TEST(SimtPtxReports, CpAsyncSrcBytesBeyondTheCopySize) {
  const auto r = expect_report(ptx_test::launch_cp_async_src_bytes_too_large);
  EXPECT_EQ(r.kind, BugKind::invalid_argument) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_test::kCpAsyncSrcBytesTooLargeLine)) << r.text();
  EXPECT_EQ(r.thread.x, 0u) << r.text();
}

TEST(SimtPtxReports, MmaInAPartialWarp) {
  const auto r = expect_report(ptx_test::launch_mma_partial_warp);
  EXPECT_EQ(r.kind, BugKind::warp_absent_lane) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_test::kMmaPartialWarpLine)) << r.text();
}

#if defined(__SANITIZE_ADDRESS__)
TEST(SimtPtxReports, CpAsyncPastTheDynamicSharedMemory) {
  const auto r = expect_report(ptx_test::launch_cp_async_past_dynamic_shared);
  EXPECT_EQ(r.kind, BugKind::invalid_argument) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_test::kCpAsyncPastDynamicSharedLine)) << r.text();
  EXPECT_EQ(r.thread.x, 1u) << r.text();
  EXPECT_NE(r.message.find("not addressable"), std::string::npos) << r.text();
}

TEST(SimtPtxReports, CpAsyncPastTheEndOfAGlobalBuffer) {
  const auto r = expect_report(ptx_test::launch_cp_async_past_global);
  EXPECT_EQ(r.kind, BugKind::invalid_argument) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_test::kCpAsyncPastGlobalLine)) << r.text();
  EXPECT_NE(r.message.find("global source"), std::string::npos) << r.text();
}
#endif

#endif  // OURO_SIMT

}  // namespace
