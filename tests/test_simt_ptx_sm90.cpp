// The Hopper ouro::ptx wrappers under the SIMT emulator: wgmma against a scalar model of the PTX
// ISA at every thread of the warpgroup, for every swizzle mode, both majors of A and B, A from
// registers, several N; mbarrier phases and transaction counts; elect.sync; setmaxnreg; and a
// planted bug for each report.
//
// The model is written from the ISA's pictures, not from the emulator's formulas: a swizzled
// tile is laid out as rows of 16-byte chunks whose chunk index is XORed with the row within its
// 8-row pattern (row % 8 for 128B, (row % 8) / 2 for 64B, (row % 8) / 4 for 32B), where the
// emulator XORs address bits; the accumulator layout is used in the scatter direction (which
// thread and register holds D[m][n]) where the emulator gathers.
//
// The same file, linked with the nvcc-built kernels, is ouro_test_ptx_sm90_gpu: on an sm_90 GPU it
// checks the model (and so the emulator) against the hardware; elsewhere it skips. What only the
// emulator defines (reports, NaN in pending registers, the arrive token) is compiled for OURO_SIMT.
#include <gtest/gtest.h>

#if defined(OURO_SIMT)
#include <ouro/simt/report.h>
#endif

#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "simt/ptx_sm90_kernels.h"

namespace {

uint16_t to_bf16(float x) {
  const uint32_t u = std::bit_cast<uint32_t>(x);
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}
float from_bf16(uint16_t h) { return std::bit_cast<float>(uint32_t{h} << 16); }

// ---- shared-memory tiles as the ISA draws them ----------------------------------------------------

enum class Major { k, mn };

// One operand tile: extent rows of the MN dimension by 16 of K, placed at `base` (pattern
// aligned) in the image. swizzle: 0 none, else the width in bytes. arrangement picks which of
// LBO/SBO is the compact one, so that swapping them would fail.
struct Tile {
  Major major;
  unsigned width;      // 0, 32, 64, 128
  int arrangement;     // 0 or 1
  unsigned extent;     // MN rows: 64 for A, N for B
  uint32_t base = 0;
  uint32_t lbo = 0, sbo = 0;
  unsigned koff = 0;   // K-major swizzled: elements of K skipped at the start of each row

  int field() const { return width == 0 ? 0 : width == 128 ? 1 : width == 64 ? 2 : 3; }
  uint32_t start() const { return base + 2 * koff; }

  void choose_strides() {
    const unsigned groups = (extent + 7) / 8;
    if (width == 0) {
      // Core matrices of 8 rows x 16 bytes (128 B); (mn/8, k/8) at (mn/8) SBO + (k/8) LBO.
      if (major == Major::k) {
        lbo = arrangement ? 128 * groups : 128;
        sbo = arrangement ? 128 : 256;
      } else {
        lbo = arrangement ? 128 : 128 * groups;
        sbo = arrangement ? 256 : 128;
      }
    } else if (major == Major::k) {
      lbo = 16;  // unused
      sbo = (arrangement ? 16 : 8) * width;
    } else {
      const unsigned e = width / 2, blocks = (extent + e - 1) / e;
      lbo = arrangement ? 16 * width : 8 * width;
      sbo = arrangement ? 8 * width : 8 * width * blocks;
    }
  }

  // Which 16-byte chunk of its row a chunk lands in, for row r of an 8-row pattern.
  unsigned swizzled_chunk(unsigned chunk, unsigned r) const {
    switch (width) {
      case 128: return chunk ^ (r % 8);
      case 64: return chunk ^ ((r % 8) / 2);
      case 32: return chunk ^ ((r % 8) / 4);
      default: return chunk;
    }
  }

  // Byte offset in the image of element (mn, k), k < 16.
  uint32_t place(unsigned mn, unsigned k) const {
    if (width == 0) {
      const uint32_t core = (mn / 8) * sbo + (k / 8) * lbo;
      return base + core + (major == Major::k ? (mn % 8) * 16 + 2 * (k % 8) : (k % 8) * 16 + 2 * (mn % 8));
    }
    unsigned row, row_pos, col_bytes;
    if (major == Major::k) {  // a row per mn, K along it
      row = mn;
      row_pos = (mn / 8) * sbo + (mn % 8) * width;
      col_bytes = 2 * (koff + k);
    } else {  // a row per k, MN along it, blocks of width/2 elements side by side at LBO
      const unsigned e = width / 2;
      row = k;
      row_pos = (k / 8) * sbo + (k % 8) * width + (mn / e) * lbo;
      col_bytes = 2 * (mn % e);
    }
    return base + row_pos + swizzled_chunk(col_bytes / 16, row) * 16 + col_bytes % 16;
  }

  uint32_t end() const {
    uint32_t hi = 0;
    for (unsigned mn = 0; mn < extent; ++mn)
      for (unsigned k = 0; k < 16; ++k) hi = std::max(hi, place(mn, k) + 2);
    return hi;
  }
};

uint32_t round_up(uint32_t x, uint32_t to) { return (x + to - 1) / to * to; }

// ---- wgmma model ---------------------------------------------------------------------------------

struct Case {
  int n;
  bool a_in_regs;
  Tile a, b;
  int scale_d;
};

// Where D[m][n] lives: thread 32 w + 4 g + t, register 4 (n / 8) + 2 half + n % 2.
void d_home(unsigned m, unsigned n, unsigned& thread, unsigned& reg) {
  const unsigned w = m / 16, g = m % 8, half = (m % 16) / 8, t = (n % 8) / 2;
  thread = 32 * w + 4 * g + t;
  reg = 4 * (n / 8) + 2 * half + n % 2;
}

void check_case(const Case& cs, std::mt19937& rng, const std::string& what) {
  SCOPED_TRACE(what);
  const unsigned n = static_cast<unsigned>(cs.n), nd = n / 2;
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<uint16_t> A(64 * 16), B(16 * n);  // A[m][k], B[k][n]
  for (auto& x : A) x = to_bf16(normal(rng) * 2.0f);
  for (auto& x : B) x = to_bf16(normal(rng) * 2.0f);
  std::vector<float> C(std::size_t{128} * nd), D(std::size_t{128} * nd, -1.0f);
  for (auto& x : C) x = normal(rng);

  // Shared memory image: poison (0xFF: NaN) everywhere the operands are not.
  const uint32_t bytes = round_up(std::max(cs.a_in_regs ? 0u : cs.a.end(), cs.b.end()), 1024);
  std::vector<uint8_t> image(bytes, 0xFF);
  auto put = [&](uint32_t off, uint16_t v) {
    ASSERT_EQ(image[off], 0xFF) << "model places two elements at offset " << off;
    std::memcpy(&image[off], &v, 2);
  };
  if (!cs.a_in_regs)
    for (unsigned m = 0; m < 64; ++m)
      for (unsigned k = 0; k < 16; ++k) put(cs.a.place(m, k), A[m * 16 + k]);
  for (unsigned nn = 0; nn < n; ++nn)
    for (unsigned k = 0; k < 16; ++k) put(cs.b.place(nn, k), B[k * n + nn]);

  // A in registers: element (m, k) goes to thread 32 w + 4 g + t, element index
  // e = k % 2 + 2 ((m % 16) / 8) + 4 (k / 8), register e / 2, half e % 2.
  uint32_t regs[128][4] = {};
  for (unsigned m = 0; m < 64; ++m)
    for (unsigned k = 0; k < 16; ++k) {
      const unsigned thread = 32 * (m / 16) + 4 * (m % 8) + (k % 8) / 2;
      const unsigned e = k % 2 + 2 * ((m % 16) / 8) + 4 * (k / 8);
      regs[thread][e / 2] |= uint32_t{A[m * 16 + k]} << (16 * (e % 2));
    }

  ptx_sm90_test::WgmmaArgs args;
  args.n = cs.n;
  args.trans_a = cs.a.major == Major::mn;
  args.trans_b = cs.b.major == Major::mn;
  args.scale_d = cs.scale_d;
  args.smem_bytes = bytes;
  args.image = image.data();
  args.a_off = cs.a.start();
  args.a_lbo = cs.a.lbo;
  args.a_sbo = cs.a.sbo;
  args.a_swizzle = cs.a.field();
  args.b_off = cs.b.start();
  args.b_lbo = cs.b.lbo;
  args.b_sbo = cs.b.sbo;
  args.b_swizzle = cs.b.field();
  args.a_regs = cs.a_in_regs ? regs : nullptr;
  args.c = C.data();
  args.d = D.data();
  ptx_sm90_test::run_wgmma(args);

  for (unsigned m = 0; m < 64; ++m)
    for (unsigned nn = 0; nn < n; ++nn) {
      unsigned thread, reg;
      d_home(m, nn, thread, reg);
      float want = cs.scale_d ? C[thread * nd + reg] : 0.0f;
      for (unsigned k = 0; k < 16; ++k) want = std::fmaf(from_bf16(A[m * 16 + k]), from_bf16(B[k * n + nn]), want);
      const float got = D[thread * nd + reg];
      ASSERT_EQ(std::bit_cast<uint32_t>(got), std::bit_cast<uint32_t>(want))
          << "D[" << m << "][" << nn << "] at thread " << thread << " d[" << reg << "]: got " << got << " want "
          << want;
    }
}

class SimtPtxSm90 : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ptx_sm90_test::hopper_available()) GTEST_SKIP() << "no sm_90 device";
  }
};

Tile make_tile(Major major, unsigned width, int arrangement, unsigned extent, std::mt19937& rng) {
  Tile t{major, width, arrangement, extent};
  if (width != 0 && major == Major::k) {
    std::uniform_int_distribution<unsigned> pick(0, width / 32 - 1);  // 16-element steps in a row
    t.koff = 16 * pick(rng);
  }
  t.choose_strides();
  return t;
}

std::string describe(const Tile& t, const char* name) {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s %s swizzle %u arrangement %d koff %u LBO %u SBO %u", name,
                t.major == Major::k ? "K-major" : "MN-major", t.width, t.arrangement, t.koff, t.lbo, t.sbo);
  return buf;
}

// Every N the tests instantiate, every swizzle mode (and both stride arrangements), both majors
// of A and B, A from shared memory and from registers.
TEST_F(SimtPtxSm90, WgmmaMatchesTheIsaModelAtEveryThread) {
  std::mt19937 rng(90);
  for (int n : {8, 16, 24, 64, 128, 256})
    for (unsigned width : {0u, 32u, 64u, 128u})
      for (int arrangement : {0, 1})
        for (int a_kind = 0; a_kind < 3; ++a_kind)  // 0 K-major smem, 1 MN-major smem, 2 registers
          for (Major bmajor : {Major::k, Major::mn}) {
            Case cs;
            cs.n = n;
            cs.a_in_regs = a_kind == 2;
            cs.scale_d = (n / 8 + arrangement) % 2;  // both values across the cases
            cs.a = make_tile(a_kind == 1 ? Major::mn : Major::k, width, arrangement, 64, rng);
            cs.b = make_tile(bmajor, width, 1 - arrangement, static_cast<unsigned>(n), rng);
            if (!cs.a_in_regs) cs.b.base = round_up(cs.a.end(), 1024);
            char head[48];
            std::snprintf(head, sizeof head, "N %d scale-d %d: ", n, cs.scale_d);
            std::string what = head;
            what += cs.a_in_regs ? std::string("A registers") : describe(cs.a, "A");
            what += "; ";
            what += describe(cs.b, "B");
            check_case(cs, rng, what);
            if (HasFatalFailure()) return;
          }
}

// Mixed swizzles: A and B described independently.
TEST_F(SimtPtxSm90, WgmmaOperandsWithDifferentSwizzles) {
  std::mt19937 rng(91);
  const unsigned widths[] = {0, 32, 64, 128};
  for (unsigned wa : widths)
    for (unsigned wb : widths) {
      if (wa == wb) continue;
      Case cs;
      cs.n = 64;
      cs.a_in_regs = false;
      cs.scale_d = 1;
      cs.a = make_tile(wa == 64 ? Major::mn : Major::k, wa, 0, 64, rng);
      cs.b = make_tile(wb == 32 ? Major::mn : Major::k, wb, 1, 64, rng);
      cs.b.base = round_up(cs.a.end(), 1024);
      std::string what = describe(cs.a, "A");
      what += "; ";
      what += describe(cs.b, "B");
      check_case(cs, rng, what);
      if (HasFatalFailure()) return;
    }
}

// Four k-steps through one 128B-swizzled K-major tile (the start advances 32 bytes per step),
// two commit groups, wait_group<1> then <0>; scale-d 0 on the first step.
TEST_F(SimtPtxSm90, WgmmaGroupsChainAndWaitInOrder) {
  std::mt19937 rng(92);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  uint16_t A[64][64], B[64][64];  // A[m][k], B[n][k]
  for (auto& row : A)
    for (auto& x : row) x = to_bf16(normal(rng));
  for (auto& row : B)
    for (auto& x : row) x = to_bf16(normal(rng));
  std::vector<uint8_t> image(16384);
  for (unsigned r = 0; r < 64; ++r)
    for (unsigned k = 0; k < 64; ++k) {
      const unsigned chunk = (2 * k / 16) ^ (r % 8), at = r * 128 + chunk * 16 + (2 * k) % 16;
      std::memcpy(&image[at], &A[r][k], 2);
      std::memcpy(&image[8192 + at], &B[r][k], 2);
    }
  std::vector<float> s0(128 * 32), s1(128 * 32), s2(128 * 32), s3(128 * 32);
  ptx_sm90_test::run_wgmma_pipeline(image.data(), s0.data(), s1.data(), s2.data(), s3.data());
  for (unsigned m = 0; m < 64; ++m)
    for (unsigned n = 0; n < 64; ++n) {
      unsigned thread, reg;
      d_home(m, n, thread, reg);
      float acc0 = 0.0f, acc1 = 0.5f;
      for (unsigned k = 0; k < 32; ++k) acc0 = std::fmaf(from_bf16(A[m][k]), from_bf16(B[n][k]), acc0);
      for (unsigned k = 32; k < 64; ++k) acc1 = std::fmaf(from_bf16(A[m][k]), from_bf16(B[n][k]), acc1);
      const unsigned i = thread * 32 + reg;
      ASSERT_EQ(std::bit_cast<uint32_t>(s0[i]), std::bit_cast<uint32_t>(acc0)) << "acc0 after wait<1>, D[" << m << "][" << n << "]";
#if defined(OURO_SIMT)
      ASSERT_TRUE(std::isnan(s1[i])) << "acc1 is still pending after wait<1>: its registers must read NaN";
#endif
      ASSERT_EQ(std::bit_cast<uint32_t>(s2[i]), std::bit_cast<uint32_t>(acc0));
      ASSERT_EQ(std::bit_cast<uint32_t>(s3[i]), std::bit_cast<uint32_t>(acc1)) << "acc1 after wait<0>, D[" << m << "][" << n << "]";
    }
}

TEST_F(SimtPtxSm90, MbarrierPhasesParityAndTransactionCounts) {
  uint32_t seen[3][128], early[128];
  uint64_t tokens[3][4];
  ptx_sm90_test::run_mbarrier_rounds(&seen[0][0], early, &tokens[0][0]);
  for (unsigned t = 0; t < 128; ++t) {
    EXPECT_EQ(early[t], 1u) << "try_wait.parity(1) on a fresh barrier: the phase before phase 0 counts as done";
    for (unsigned r = 0; r < 3; ++r) ASSERT_EQ(seen[r][t], 100 * r + t % 16) << "round " << r << " thread " << t;
  }
#if defined(OURO_SIMT)
  for (unsigned r = 0; r < 3; ++r)
    for (unsigned i = 0; i < 4; ++i) EXPECT_EQ(tokens[r][i], r) << "the emulator's arrive token is the phase";
#else
  (void)tokens;  // opaque on the GPU
#endif
}

TEST_F(SimtPtxSm90, ElectSyncPicksOneLaneOfTheMask) {
  for (uint32_t mask : {0xffffffffu, 0x0000f0f0u, 0x80000000u, 0x00000006u}) {
    uint32_t out[32];
    ptx_sm90_test::run_elect_sync(mask, out);
    const unsigned leader = static_cast<unsigned>(std::countr_zero(mask));
    for (unsigned l = 0; l < 32; ++l)
      EXPECT_EQ(out[l], (mask >> l & 1u) ? (l == leader ? 1u : 0u) : 7u) << "mask " << mask << " lane " << l;
  }
}

TEST_F(SimtPtxSm90, SetmaxnregPerWarpgroup) {
  uint32_t out[256];
  ptx_sm90_test::run_setmaxnreg(out);
  for (unsigned t = 0; t < 256; ++t) EXPECT_EQ(out[t], t + 1);
}

// The turns alternate 0, 1, 0, 1, ...: each bar.sync waits for the other warpgroup's arrival.
TEST_F(SimtPtxSm90, NamedBarriersPingPongTwoWarpgroups) {
  for (int rounds : {1, 2, 7}) {
    uint32_t log[64];
    ptx_sm90_test::run_named_pingpong(rounds, log);
    for (int i = 0; i < 2 * rounds; ++i) EXPECT_EQ(log[i], uint32_t(i % 2)) << "rounds " << rounds << " turn " << i;
  }
}

// ---- TMA ----------------------------------------------------------------------------------------

// Where box element (bx, by) lies in shared memory, as the ISA draws it: rows of box0 elements,
// each row's 16-byte chunks XORed with the row within the 8-row pattern (rows as wide as the
// swizzle span, which is how the tests use it).
std::size_t tma_box_offset(const ptx_sm90_test::TmaArgs& a, unsigned bx, unsigned by) {
  const unsigned row_bytes = static_cast<unsigned>(a.box0) * 2, col = 2 * bx;
  Tile swz{Major::k, static_cast<unsigned>(a.swizzle), 0, 8};
  return std::size_t{by} * row_bytes + swz.swizzled_chunk(col / 16, by) * 16 + col % 16;
}

std::vector<uint16_t> random_tensor(const ptx_sm90_test::TmaArgs& a, std::mt19937& rng) {
  std::uniform_int_distribution<int> bits(0, 0x7f7f);
  std::vector<uint16_t> t(static_cast<std::size_t>(a.rows) * a.pitch);
  for (auto& x : t) x = static_cast<uint16_t>(bits(rng));
  return t;
}

// Every swizzle, boxes inside, across the edges and before the start of a ragged tensor (out of
// bounds reads zero, or NaN with the NaN fill).
TEST_F(SimtPtxSm90, TmaLoadMatchesTheIsaModel) {
  std::mt19937 rng(93);
  for (int swizzle : {0, 32, 64, 128})
    for (const auto& [x, y] : std::vector<std::pair<int, int>>{{0, 0}, {24, 40}, {56, 60}, {-16, -3}})
      for (bool nan_fill : {false, true}) {
        ptx_sm90_test::TmaArgs a{70, 90, 96, swizzle ? swizzle / 2 : 40, 12, swizzle, x, y, nan_fill};
        SCOPED_TRACE(testing::Message() << "swizzle " << swizzle << " box at (" << x << ", " << y << ") nan fill "
                                        << nan_fill);
        const auto tensor = random_tensor(a, rng);
        std::vector<uint8_t> out(static_cast<std::size_t>(a.box0) * a.box1 * 2);
        ptx_sm90_test::run_tma_load(a, tensor.data(), out.data());
        for (int by = 0; by < a.box1; ++by)
          for (int bx = 0; bx < a.box0; ++bx) {
            const int gx = x + bx, gy = y + by;
            const bool in = gx >= 0 && gy >= 0 && gx < a.cols && gy < a.rows;
            const uint16_t want = in ? tensor[static_cast<std::size_t>(gy) * a.pitch + gx] : nan_fill ? 0x7FFF : 0;
            uint16_t got;
            std::memcpy(&got, &out[tma_box_offset(a, bx, by)], 2);
            ASSERT_EQ(got, want) << "box element (" << bx << ", " << by << ")";
          }
      }
}

TEST_F(SimtPtxSm90, TmaStoreWritesTheInBoundsPartOfTheBox) {
  std::mt19937 rng(94);
  for (int swizzle : {0, 32, 64, 128})
    for (const auto& [x, y] : std::vector<std::pair<int, int>>{{8, 16}, {64, 62}, {-8, -4}}) {
      ptx_sm90_test::TmaArgs a{70, 90, 96, swizzle ? swizzle / 2 : 40, 12, swizzle, x, y};
      SCOPED_TRACE(testing::Message() << "swizzle " << swizzle << " box at (" << x << ", " << y << ")");
      const auto before = random_tensor(a, rng);
      std::vector<uint8_t> image(static_cast<std::size_t>(a.box0) * a.box1 * 2);
      for (auto& b : image) b = static_cast<uint8_t>(rng());
      auto after = before;
      ptx_sm90_test::run_tma_store(a, image.data(), after.data());
      for (int r = 0; r < a.rows; ++r)
        for (int c = 0; c < a.pitch; ++c) {
          const int bx = c - x, by = r - y;
          uint16_t want = before[static_cast<std::size_t>(r) * a.pitch + c];
          if (c < a.cols && bx >= 0 && by >= 0 && bx < a.box0 && by < a.box1)
            std::memcpy(&want, &image[tma_box_offset(a, static_cast<unsigned>(bx), static_cast<unsigned>(by))], 2);
          ASSERT_EQ(after[static_cast<std::size_t>(r) * a.pitch + c], want) << "tensor[" << r << "][" << c << "]";
        }
    }
}

TEST_F(SimtPtxSm90, TensorMapEncodingChecksLikeTheDriver) {
  const ptx_sm90_test::TmaArgs ok{70, 90, 96, 64, 12, 128, 0, 0};
  EXPECT_EQ(ptx_sm90_test::encode_tensor_map(ok, 0, 192), 0);
  EXPECT_NE(ptx_sm90_test::encode_tensor_map(ok, 8, 192), 0) << "global address not 16-byte aligned";
  EXPECT_NE(ptx_sm90_test::encode_tensor_map(ok, 0, 184), 0) << "row stride not a multiple of 16";
  EXPECT_NE(ptx_sm90_test::encode_tensor_map(ok, 0, 176), 0) << "row stride shorter than a row";
  ptx_sm90_test::TmaArgs wide = ok;
  wide.box0 = 72;  // 144 bytes: wider than the 128-byte swizzle span
  EXPECT_NE(ptx_sm90_test::encode_tensor_map(wide, 0, 192), 0);
  ptx_sm90_test::TmaArgs ragged = ok;
  ragged.swizzle = 0;
  ragged.box0 = 36;  // 72 bytes: not whole 16-byte units
  EXPECT_NE(ptx_sm90_test::encode_tensor_map(ragged, 0, 192), 0);
  ptx_sm90_test::TmaArgs tall = ok;
  tall.box1 = 257;
  EXPECT_NE(ptx_sm90_test::encode_tensor_map(tall, 0, 192), 0);
}

// TMA writes the 128B swizzle that wgmma's descriptors read, through a ring of mbarrier-guarded
// stages reused across phases, with a producer and a consumer warpgroup.
TEST_F(SimtPtxSm90, WarpSpecializedTmaWgmmaPipeline) {
  std::mt19937 rng(95);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  const int k_tiles = 5, K = 64 * k_tiles;
  std::vector<uint16_t> a(64 * K), b(64 * K);
  for (auto& x : a) x = to_bf16(normal(rng));
  for (auto& x : b) x = to_bf16(normal(rng));
  std::vector<float> d(64 * 64, -1.0f);
  ptx_sm90_test::run_ws_gemm(k_tiles, a.data(), b.data(), d.data());
  double err = 0, ref_norm = 0;
  for (int m = 0; m < 64; ++m)
    for (int n = 0; n < 64; ++n) {
      float want = 0.0f;  // the emulator's order: fp32 fmaf in k order
      for (int k = 0; k < K; ++k) want = std::fmaf(from_bf16(a[m * K + k]), from_bf16(b[n * K + k]), want);
#if defined(OURO_SIMT)
      ASSERT_EQ(std::bit_cast<uint32_t>(d[m * 64 + n]), std::bit_cast<uint32_t>(want)) << "D[" << m << "][" << n << "]";
#endif
      err += (d[m * 64 + n] - want) * double(d[m * 64 + n] - want);
      ref_norm += double(want) * want;
    }
  EXPECT_LT(std::sqrt(err / ref_norm), 1e-5);
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

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }
std::string line_tag(int line) {
  std::string s = "ptx_sm90_kernels.cu:";
  s += std::to_string(line);
  return s;
}
bool from_kernels(const ouro::simt::Report& r) {
  const std::string tail = "ptx_sm90_kernels.cu";
  return r.file.size() >= tail.size() && r.file.compare(r.file.size() - tail.size(), tail.size(), tail) == 0;
}

TEST(SimtPtxSm90Reports, WgmmaWarpsAtDifferentCallSites) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_split_site);
  EXPECT_EQ(r.kind, BugKind::warpgroup_mismatch) << r.text();
  const unsigned other = static_cast<unsigned>(ptx_sm90_test::kWgmmaSplitSiteLine) + 2;
  EXPECT_TRUE(r.line == static_cast<unsigned>(ptx_sm90_test::kWgmmaSplitSiteLine) || r.line == other) << r.text();
  EXPECT_TRUE(has(r.message, line_tag(ptx_sm90_test::kWgmmaSplitSiteLine))) << r.text();
  EXPECT_TRUE(has(r.message, line_tag(static_cast<int>(other)))) << r.text();
  EXPECT_TRUE(has(r.kernel, "wgmma_split_site_kernel")) << r.text();
}

TEST(SimtPtxSm90Reports, WgmmaOperandsNotUniformAcrossTheWarpgroup) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_operands_differ);
  EXPECT_EQ(r.kind, BugKind::warpgroup_mismatch) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kWgmmaOperandsDifferLine)) << r.text();
  EXPECT_TRUE(has(r.message, "must be uniform")) << r.text();
}

TEST(SimtPtxSm90Reports, WgmmaWithAnExitedWarp) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_warp_exited);
  EXPECT_EQ(r.kind, BugKind::warpgroup_mismatch) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kWgmmaWarpExitedLine)) << r.text();
}

TEST(SimtPtxSm90Reports, WgmmaWithAWarpThatNeverComes) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_warp_at_barrier);
  EXPECT_EQ(r.kind, BugKind::warpgroup_mismatch) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kWgmmaWarpAtBarrierLine)) << r.text();
  EXPECT_TRUE(has(r.message, "96 of 128")) << r.text();
}

TEST(SimtPtxSm90Reports, DescriptorSwizzledStartNotInThePatternsFirstRow) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_bad_swizzle_start);
  EXPECT_EQ(r.kind, BugKind::bad_descriptor) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kWgmmaBadSwizzleStartLine)) << r.text();
  EXPECT_TRUE(from_kernels(r)) << r.text();
  EXPECT_TRUE(has(r.message, "operand A")) << r.text();
}

TEST(SimtPtxSm90Reports, DescriptorReservedBits) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_reserved_bits);
  EXPECT_EQ(r.kind, BugKind::bad_descriptor) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kWgmmaReservedBitsLine)) << r.text();
  EXPECT_TRUE(has(r.message, "reserved")) << r.text();
}

TEST(SimtPtxSm90Reports, DescriptorPastTheSharedMemory) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_past_shared);
  EXPECT_EQ(r.kind, BugKind::bad_descriptor) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kWgmmaPastSharedLine)) << r.text();
  EXPECT_TRUE(has(r.message, "operand B") && has(r.message, "4096 bytes")) << r.text();
}

TEST(SimtPtxSm90Reports, WgmmaWithoutFence) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_no_fence);
  EXPECT_EQ(r.kind, BugKind::async_protocol) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kWgmmaNoFenceLine)) << r.text();
}

TEST(SimtPtxSm90Reports, AccumulatorWrittenBeforeTheWait) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_accumulator_written);
  EXPECT_EQ(r.kind, BugKind::async_protocol) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kWgmmaAccumulatorWrittenLine)) << r.text();
  EXPECT_TRUE(has(r.message, "thread 77") && has(r.message, "d[2]")) << r.text();
}

TEST(SimtPtxSm90Reports, WgmmaInABlockOfPartialWarpgroups) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_96_threads);
  EXPECT_EQ(r.kind, BugKind::warpgroup_mismatch) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kWgmma96ThreadsLine)) << r.text();
  EXPECT_TRUE(has(r.message, "96 threads")) << r.text();
}

TEST(SimtPtxSm90Reports, MbarrierWhoseBytesNeverArrive) {
  const auto r = expect_report(ptx_sm90_test::launch_mbarrier_hang);
  EXPECT_EQ(r.kind, BugKind::mbarrier_hang) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kMbarrierHangLine)) << r.text();
  EXPECT_TRUE(has(r.message, "2048 transaction bytes still expected")) << r.text();
  EXPECT_TRUE(has(r.message, "0 of 1 arrivals")) << r.text();
  EXPECT_TRUE(has(r.message, "32 thread(s) wait")) << r.text();
}

TEST(SimtPtxSm90Reports, SetmaxnregNotUniformAcrossTheWarpgroup) {
  const auto r = expect_report(ptx_sm90_test::launch_setmaxnreg_split);
  EXPECT_EQ(r.kind, BugKind::warpgroup_mismatch) << r.text();
  EXPECT_TRUE(has(r.message, "setmaxnreg.inc")) << r.text();
  EXPECT_TRUE(has(r.message, line_tag(ptx_sm90_test::kSetmaxnregSplitLine))) << r.text();
}

TEST(SimtPtxSm90Reports, NamedBarrierThatNeverCompletes) {
  const auto r = expect_report(ptx_sm90_test::launch_named_barrier_hang);
  EXPECT_EQ(r.kind, BugKind::barrier_deadlock) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kNamedBarrierHangLine)) << r.text();
  EXPECT_TRUE(has(r.message, "named barrier 3")) << r.text();
  EXPECT_TRUE(has(r.message, "only 128 of 256 threads arrived")) << r.text();
}

TEST(SimtPtxSm90Reports, NamedBarrierArrivalsWithDifferentCounts) {
  const auto r = expect_report(ptx_sm90_test::launch_named_barrier_counts_differ);
  EXPECT_EQ(r.kind, BugKind::barrier_divergence) << r.text();
  // Whichever half runs first opens the phase (the emulator may shuffle the thread order).
  const unsigned sync_line = static_cast<unsigned>(ptx_sm90_test::kNamedBarrierCountsDifferLine);
  EXPECT_TRUE(r.line == sync_line || r.line == sync_line - 2) << r.text();
  EXPECT_TRUE(has(r.message, r.line == sync_line ? "opened with count 128" : "opened with count 96")) << r.text();
}

#if defined(__SANITIZE_ADDRESS__)
// Under ASan the tile is poisoned until the load lands: ASan stops the write itself.
TEST(SimtPtxSm90ReportsDeathTest, TmaDestinationWrittenBeforeThePhaseCompleted) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(ptx_sm90_test::launch_tma_destination_written(),
               "use-after-poison(.|\n)*tma_destination_written_kernel");
}
#else
TEST(SimtPtxSm90Reports, TmaDestinationWrittenBeforeThePhaseCompleted) {
  const auto r = expect_report(ptx_sm90_test::launch_tma_destination_written);
  EXPECT_EQ(r.kind, BugKind::async_protocol) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kTmaDestinationWrittenLine)) << r.text();
  EXPECT_TRUE(has(r.message, "shared memory [100]")) << r.text();
}
#endif

TEST(SimtPtxSm90Reports, WgmmaReadsStoresWithoutProxyFence) {
  const auto r = expect_report(ptx_sm90_test::launch_wgmma_without_proxy_fence);
  EXPECT_EQ(r.kind, BugKind::async_protocol) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kWgmmaWithoutProxyFenceLine)) << r.text();
  EXPECT_TRUE(has(r.message, "operand B reads shared offset 2148")) << r.text();
}

TEST(SimtPtxSm90Reports, TmaStoreOfStoresWithoutProxyFence) {
  const ptx_sm90_test::TmaArgs a{16, 64, 64, 64, 8, 128, 0, 0};
  std::vector<uint8_t> image(64 * 8 * 2, 0x11);
  std::vector<uint16_t> tensor(16 * 64, 0);
  const auto r = expect_report([&] { ptx_sm90_test::run_tma_store(a, image.data(), tensor.data(), false); });
  EXPECT_EQ(r.kind, BugKind::async_protocol) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kTmaStoreWithoutFenceLine)) << r.text();
}

TEST(SimtPtxSm90Reports, MbarrierArrivalBeyondItsCount) {
  const auto r = expect_report(ptx_sm90_test::launch_mbarrier_extra_arrival);
  EXPECT_EQ(r.kind, BugKind::async_protocol) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kMbarrierExtraArrivalLine)) << r.text();
  EXPECT_TRUE(has(r.message, "128 transaction bytes")) << r.text();
}

#if defined(__SANITIZE_ADDRESS__)
TEST(SimtPtxSm90ReportsDeathTest, TmaTileReadBeforeThePhaseCompleted) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(ptx_sm90_test::launch_tma_read_early(), "use-after-poison(.|\n)*tma_read_early_kernel");
}
#endif

TEST(SimtPtxSm90Reports, MbarrierNeverInitialized) {
  const auto r = expect_report(ptx_sm90_test::launch_mbarrier_uninitialized);
  EXPECT_EQ(r.kind, BugKind::invalid_argument) << r.text();
  EXPECT_EQ(r.line, static_cast<unsigned>(ptx_sm90_test::kMbarrierUninitializedLine)) << r.text();
}

#endif  // OURO_SIMT

}  // namespace
