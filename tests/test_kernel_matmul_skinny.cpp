// The skinny-M forward GEMM (kernels/matmul_skinny.cu, chosen by matmul_forward for N <= 64)
// against the fp32 CPU reference (CpuOps) on the same bf16-rounded inputs: M = 1, 3, 17, 64 (each
// token-tile width, ragged), ragged output width and K (not multiples of 8, 16 or 64; K % 8 != 0
// takes its 2-byte load path), bias and GELU with pre_gelu, misaligned operands, outputs poisoned
// with NaN (and a poisoned row past the end that must stay untouched), bitwise determinism run to
// run, and the dispatch: automatic = skinny for N <= 64, = the tiled kernel with
// OURO_MATMUL_SKINNY=0 or N > 64. Every shape here is CI-sized (< 0.1 MFLOP per call, well under a
// second each on the emulator).
//
// Tolerance as in test_kernel_matmul.cpp: fp32 accumulation, one bf16 rounding per output (and
// one more after GELU): ||out - ref|| / ||ref|| < 4e-3; a wrong fragment or an unwritten output
// gives O(1) or NaN.
#include "kernel_test_support.h"

#include <cstdlib>
#include <string>

#include "kernels/matmul.h"
#include "ouro/env_switch.h"

#include "cpu/cpu_ops.h"

namespace {

using namespace kernel_test;
using ouro::kernels::Epilogue;
using ouro::kernels::MatmulTile;

constexpr double kTol = 4e-3;

class SkinnyMatmulTest : public KernelTest {};

struct Case {
  int M, K, N;  // out (M, N) = inp (M, K) @ w (N, K)^T
};

struct Result {
  std::vector<bf16> out, pre;
};

// One forward call on `tile`; checks out (and pre_gelu) against the CPU and that the poisoned row
// after the output is still NaN. inp_offset shifts the input by that many elements (misaligned).
Result run(const Case& c, MatmulTile tile, bool bias, Epilogue epi, uint64_t seed, int inp_offset = 0) {
  SCOPED_TRACE("M=" + std::to_string(c.M) + " K=" + std::to_string(c.K) + " N=" + std::to_string(c.N) +
               " gelu=" + std::to_string(epi == Epilogue::gelu) + " bias=" + std::to_string(bias) +
               " offset=" + std::to_string(inp_offset));
  const auto inp = random_bf16_values(size_t(c.M) * c.K + inp_offset, seed);
  const auto w = random_bf16_values(size_t(c.N) * c.K, seed + 1, 0.2f);
  const auto b = random_bf16_values(c.N, seed + 2, 0.5f);
  const std::vector<float> x(inp.begin() + inp_offset, inp.end());

  ouro::CpuOps cpu;
  std::vector<float> ref(size_t(c.M) * c.N);
  cpu.matmul_forward(ref.data(), x.data(), w.data(), bias ? b.data() : nullptr, c.M, c.K, c.N);
  std::vector<float> ref_pre = ref;
  const bool gelu = epi == Epilogue::gelu;
  if (gelu) cpu.gelu_forward(ref.data(), ref_pre.data(), ref.size());

  DeviceBuffer<bf16> d_inp(to_bf16(inp)), d_w(to_bf16(w)), d_b(to_bf16(b));
  DeviceBuffer<bf16> d_out(ref.size() + c.N), d_pre(ref.size() + c.N);  // + one poisoned row
  ouro::kernels::matmul_forward(d_out, d_inp.get() + inp_offset, d_w, bias ? d_b.get() : nullptr, c.M, c.K, c.N,
                                nullptr, epi, gelu ? d_pre.get() : nullptr, tile);
  Result r{d_out.download(), d_pre.download()};
  const std::vector<bf16> out(r.out.begin(), r.out.begin() + long(ref.size()));
  EXPECT_LT(rel_error(to_float(out), ref), kTol);
  if (gelu) {
    const std::vector<bf16> pre(r.pre.begin(), r.pre.begin() + long(ref.size()));
    EXPECT_LT(rel_error(to_float(pre), ref_pre), kTol) << "pre_gelu";
  }
  for (size_t i = ref.size(); i < r.out.size(); i++) {
    EXPECT_TRUE(std::isnan(to_float(r.out[i]))) << "written past the output at " << i;
    EXPECT_TRUE(std::isnan(to_float(r.pre[i]))) << "written past pre_gelu at " << i;
    if (!std::isnan(to_float(r.out[i])) || !std::isnan(to_float(r.pre[i]))) break;
  }
  return r;
}

bool bitwise_equal(const std::vector<bf16>& a, const std::vector<bf16>& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(bf16)) == 0;
}

}  // namespace

// Every token-tile width (M <= 8, 16, 32, 64) with a ragged M; N not a multiple of 8 (ragged
// last block of 16 or 32 columns) and K = 200 (a multiple of 8 but not of 16, 32 or 64: the warps'
// 128- and 64-deep chunks end inside a 32-deep step).
TEST_F(SkinnyMatmulTest, RaggedShapesWithBiasAndGelu) {
  for (int M : {1, 3, 17, 64}) {
    run({M, 200, 75}, MatmulTile::skinny, true, Epilogue::none, 11);
    run({M, 200, 75}, MatmulTile::skinny, true, Epilogue::gelu, 12);
    run({M, 200, 75}, MatmulTile::skinny, false, Epilogue::none, 13);
  }
  // K long enough for every warp to take two chunks, and more than one block of columns.
  run({5, 1032, 40}, MatmulTile::skinny, true, Epilogue::gelu, 14);
  run({40, 520, 72}, MatmulTile::skinny, true, Epilogue::gelu, 15);
}

// K % 8 != 0 and a misaligned input row: the 2-byte load path, element by element.
TEST_F(SkinnyMatmulTest, UnalignedKAndOperands) {
  for (int M : {1, 17, 64}) run({M, 77, 50}, MatmulTile::skinny, true, Epilogue::gelu, 21);
  run({3, 64, 24}, MatmulTile::skinny, true, Epilogue::none, 22, /*inp_offset=*/1);
  run({1, 1, 1}, MatmulTile::skinny, true, Epilogue::none, 23);  // one element: one rounding
}

TEST_F(SkinnyMatmulTest, BitwiseDeterministicRunToRun) {
  for (int M : {3, 64}) {
    const auto a = run({M, 200, 75}, MatmulTile::skinny, true, Epilogue::gelu, 31);
    const auto b = run({M, 200, 75}, MatmulTile::skinny, true, Epilogue::gelu, 31);
    EXPECT_TRUE(bitwise_equal(a.out, b.out)) << M;
    EXPECT_TRUE(bitwise_equal(a.pre, b.pre)) << M;
  }
}

// automatic takes the skinny kernel for N <= 64 (bitwise its result), the tiled one with
// OURO_MATMUL_SKINNY=0 (bitwise the 64x64 or the 128x128 tile's, by the emulated SM count) and for N > 64
// whatever the switch says (forcing skinny there means automatic).
TEST_F(SkinnyMatmulTest, DispatchBySizeAndTheSwitch) {
  const Case c{17, 200, 80};
  const auto skinny = run(c, MatmulTile::skinny, true, Epilogue::gelu, 41);
  const auto small = run(c, MatmulTile::small, true, Epilogue::gelu, 41);
  const auto large = run(c, MatmulTile::large, true, Epilogue::gelu, 41);
  {
    ScopedEnv on("OURO_MATMUL_SKINNY", "1");
    EXPECT_TRUE(bitwise_equal(run(c, MatmulTile::automatic, true, Epilogue::gelu, 41).out, skinny.out));
  }
  {
    ScopedEnv off("OURO_MATMUL_SKINNY", "0");
    const auto tiled = run(c, MatmulTile::automatic, true, Epilogue::gelu, 41).out;
    EXPECT_TRUE(bitwise_equal(tiled, small.out) || bitwise_equal(tiled, large.out));
    // Forcing the kernel ignores the switch (benchmarks compare both).
    EXPECT_TRUE(bitwise_equal(run(c, MatmulTile::skinny, true, Epilogue::gelu, 41).out, skinny.out));
  }
  const Case tall{65, 200, 80};
  EXPECT_TRUE(bitwise_equal(run(tall, MatmulTile::skinny, true, Epilogue::gelu, 42).out,
                            run(tall, MatmulTile::automatic, true, Epilogue::gelu, 42).out));
}
