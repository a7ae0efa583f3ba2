// AdamW and sum_squares kernels vs CpuOps::adamw (with a master copy) and an fp64 loop.
#include "kernel_test_support.h"

#include "kernels/optimizer.h"

#include "cpu/cpu_ops.h"

#include <cstring>
#include <tuple>

namespace {

using namespace kernel_test;
using ouro::kernels::AdamParams;
using ouro::kernels::AdamSegment;
using ouro::kernels::bf16;

class OptimizerKernel : public KernelTest {};

uint32_t bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return b;
}
float from_bits(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}

// The bf16 neighbours of x: x with the low 16 bits dropped (towards zero) and the next bf16 away
// from zero. Stochastic rounding must land on one of them (on x itself when x is a bf16).
bool is_bf16_neighbour(float param, float x) {
  const uint32_t down = bits(x) & 0xffff0000u;
  if (bits(param) == down) return true;
  return (bits(x) & 0xffffu) != 0 && bits(param) == down + 0x10000u;
}

struct State {
  std::vector<float> master, m, v, grads;  // grads already bf16-rounded
};

State make_state(size_t n, uint64_t seed) {
  State s;
  s.master = random_floats(n, seed, 0.5f);
  s.m = random_floats(n, seed + 1, 0.01f);
  s.v = random_floats(n, seed + 2, 1e-3f);
  for (float& x : s.v) x = x * x;
  s.grads = random_bf16_values(n, seed + 3, 0.05f);
  return s;
}

// Segments with gaps between them (never touched), an empty one, both decay settings, listed
// out of address order.
const std::vector<ouro::ParamSegment> kSegments = {
    {0, 1000, true}, {1003, 37, false}, {1040, 0, true}, {2100, 2049, true}, {1100, 513, false}, {4200, 1, true}};
constexpr size_t kBufferSize = 4301;

std::vector<AdamSegment> device_segments(const std::vector<ouro::ParamSegment>& segs, size_t* total) {
  std::vector<AdamSegment> out;
  *total = 0;
  for (const auto& s : segs) {
    out.push_back({s.offset, s.size, s.decay ? 1 : 0});
    *total += s.size;
  }
  return out;
}

bool in_segment(size_t i, const std::vector<ouro::ParamSegment>& segs) {
  for (const auto& s : segs)
    if (i >= s.offset && i < s.offset + s.size) return true;
  return false;
}

TEST_F(OptimizerKernel, AdamWMatchesCpuOverSteps) {
  const size_t n = kBufferSize;
  State s = make_state(n, 101);
  size_t total = 0;
  const std::vector<AdamSegment> segs = device_segments(kSegments, &total);
  DeviceBuffer<AdamSegment> d_segs(segs);

  // Reference state (CpuOps with a master copy; its params are fp32 copies of master).
  std::vector<float> r_params(n), r_master = s.master, r_m = s.m, r_v = s.v;
  DeviceBuffer<bf16> d_params(n);
  DeviceBuffer<float> d_master(s.master), d_m(s.m), d_v(s.v);
  DeviceBuffer<bf16> d_grads(to_bf16(s.grads));
  const std::vector<bf16> params0 = d_params.download();  // poison: untouched outside segments

  ouro::CpuOps cpu;
  for (int step = 1; step <= 3; step++) {
    SCOPED_TRACE("step " + std::to_string(step));
    ouro::AdamWArgs args;
    args.lr = 3e-3f;
    args.beta1 = 0.9f;
    args.beta2 = 0.95f;
    args.eps = 1e-8f;
    args.weight_decay = 0.1f;
    args.grad_scale = step == 2 ? 0.7f : 1.0f;
    args.step = step;
    cpu.adamw(r_params.data(), r_master.data(), s.grads.data(), r_m.data(), r_v.data(), kSegments, args);

    AdamParams p{args.lr, args.beta1, args.beta2, args.eps, args.weight_decay, args.grad_scale, args.step,
                 0x1234567890abcdefull + uint64_t(step), 0};
    ouro::kernels::adamw(d_params, d_master, d_grads, d_m, d_v, d_segs, int(segs.size()), total, p, nullptr);
    const std::vector<float> master = d_master.download(), m = d_m.download(), v = d_v.download();
    const std::vector<bf16> params = d_params.download();

    // Same operations in the same order; the only difference is that g++ may contract a
    // product and a sum into an FMA in CpuOps (-march=native) where the kernel rounds each
    // operation: <= 1 ulp (6e-8) per element per step, so 1e-6 relative norm has a wide margin.
    EXPECT_LT(rel_error(master, r_master), 1e-6);
    EXPECT_LT(rel_error(m, r_m), 1e-6);
    EXPECT_LT(rel_error(v, r_v), 1e-6);
    for (size_t i = 0; i < n; i++) {
      if (in_segment(i, kSegments)) {
        ASSERT_TRUE(is_bf16_neighbour(to_float(params[i]), master[i]))
            << "i=" << i << " param " << to_float(params[i]) << " master " << master[i];
      } else {  // gaps: nothing written
        ASSERT_EQ(0, std::memcmp(&params[i], &params0[i], sizeof(bf16))) << "i=" << i;
        ASSERT_EQ(bits(master[i]), bits(s.master[i])) << "i=" << i;
        ASSERT_EQ(bits(m[i]), bits(s.m[i])) << "i=" << i;
        ASSERT_EQ(bits(v[i]), bits(s.v[i])) << "i=" << i;
      }
    }
  }
}

// Many elements, several grid-stride iterations (the emulator reports 1 SM per worker thread,
// so the grid is capped at a few blocks), every element checked against CpuOps.
TEST_F(OptimizerKernel, AdamWGridStrideAndUnbiasedRounding) {
  const size_t n = 40000 + 17;
  State s = make_state(n, 202);
  const std::vector<ouro::ParamSegment> segments = {{0, 12345, true}, {12345, 27672, false}};
  size_t total = 0;
  const std::vector<AdamSegment> segs = device_segments(segments, &total);
  ASSERT_EQ(total, n);
  DeviceBuffer<AdamSegment> d_segs(segs);
  std::vector<float> r_params(n), r_master = s.master, r_m = s.m, r_v = s.v;
  DeviceBuffer<bf16> d_params(n), d_grads(to_bf16(s.grads));
  DeviceBuffer<float> d_master(s.master), d_m(s.m), d_v(s.v);

  ouro::AdamWArgs args;
  args.lr = 1e-3f;
  args.weight_decay = 0.05f;
  args.grad_scale = 1.3f;
  args.step = 7;
  ouro::CpuOps().adamw(r_params.data(), r_master.data(), s.grads.data(), r_m.data(), r_v.data(), segments, args);
  AdamParams p{args.lr, args.beta1, args.beta2, args.eps, args.weight_decay, args.grad_scale, args.step, 99, 0};
  ouro::kernels::adamw(d_params, d_master, d_grads, d_m, d_v, d_segs, int(segs.size()), total, p, nullptr);
  const std::vector<float> master = d_master.download();
  const std::vector<bf16> params = d_params.download();
  EXPECT_LT(rel_error(master, r_master), 1e-6);
  EXPECT_LT(rel_error(d_m.download(), r_m), 1e-6);
  EXPECT_LT(rel_error(d_v.download(), r_v), 1e-6);

  // Rounding error in units of the bf16 spacing at x: e = (param - x) / ulp. With the fraction
  // f = (x - down) / ulp, stochastic rounding gives e = 1 - f with probability f and -f otherwise:
  // mean 0, variance f(1 - f) <= 1/4. The mean over n independent elements has a standard
  // deviation <= 0.5 / sqrt(n) = 0.0025; 6 sigma = 0.015. (Round-to-nearest or truncation would
  // show |mean| ~ 0 and ~0.5 respectively; the next test targets the probability directly.)
  double sum_e = 0;
  for (size_t i = 0; i < n; i++) {
    ASSERT_TRUE(is_bf16_neighbour(to_float(params[i]), master[i])) << "i=" << i;
    const float down = from_bits(bits(master[i]) & 0xffff0000u);
    const float up = from_bits((bits(master[i]) & 0xffff0000u) + 0x10000u);
    const double ulp = std::fabs(double(up) - double(down));
    sum_e += (double(to_float(params[i])) - double(master[i])) / ulp * (master[i] < 0 ? -1 : 1);
  }
  EXPECT_LT(std::fabs(sum_e / double(n)), 0.015);
}

TEST_F(OptimizerKernel, StochasticRoundingProbability) {
  // lr = 0 leaves master unchanged (p + (-0 * m) / denom = p), so params = SR(master) exactly.
  // Every master value sits a quarter of the way from a bf16 value to the next (away from
  // zero): each element rounds away with probability 1/4. Over n = 20000 independent Philox
  // draws the fraction rounded away has standard deviation sqrt(0.25 * 0.75 / n) = 0.0031;
  // 6 sigma = 0.019. Round to nearest (never) or truncation (never) would give 0.
  const size_t n = 20000;
  std::vector<float> master = random_bf16_values(n, 303, 1.0f);
  for (float& x : master) {
    if (x == 0.0f) x = 1.0f;
    x = from_bits(bits(x) + 0x4000u);  // + 0.25 ulp of bf16, away from zero
  }
  std::vector<float> zeros(n, 0.0f);
  DeviceBuffer<float> d_master(master), d_m(zeros), d_v(zeros);
  DeviceBuffer<bf16> d_params(n), d_grads(to_bf16(zeros));
  DeviceBuffer<AdamSegment> d_segs(std::vector<AdamSegment>{{0, n, 1}});
  AdamParams p{0.0f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 1, 4242, 0};
  ouro::kernels::adamw(d_params, d_master, d_grads, d_m, d_v, d_segs, 1, n, p, nullptr);
  const std::vector<bf16> params = d_params.download();
  const std::vector<float> after = d_master.download();
  size_t away = 0;
  for (size_t i = 0; i < n; i++) {
    ASSERT_EQ(bits(after[i]), bits(master[i])) << "lr = 0 must leave master unchanged, i=" << i;
    ASSERT_TRUE(is_bf16_neighbour(to_float(params[i]), master[i])) << "i=" << i;
    away += std::fabs(to_float(params[i])) > std::fabs(master[i]);
  }
  EXPECT_NEAR(double(away) / double(n), 0.25, 0.019);
}

TEST_F(OptimizerKernel, AdamWDeterministicAndSeeded) {
  const size_t n = kBufferSize;
  State s = make_state(n, 404);
  size_t total = 0;
  const std::vector<AdamSegment> segs = device_segments(kSegments, &total);
  DeviceBuffer<AdamSegment> d_segs(segs);
  DeviceBuffer<bf16> d_grads(to_bf16(s.grads));
  std::vector<bf16> params[3];
  std::vector<float> master[3];
  for (int r = 0; r < 3; r++) {
    DeviceBuffer<bf16> d_params(n);
    DeviceBuffer<float> d_master(s.master), d_m(s.m), d_v(s.v);
    AdamParams p{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 5, r < 2 ? 7ull : 8ull, 0};
    ouro::kernels::adamw(d_params, d_master, d_grads, d_m, d_v, d_segs, int(segs.size()), total, p, nullptr);
    params[r] = d_params.download();
    master[r] = d_master.download();
  }
  EXPECT_EQ(0, std::memcmp(params[0].data(), params[1].data(), n * sizeof(bf16)));
  EXPECT_EQ(0, std::memcmp(master[0].data(), master[1].data(), n * sizeof(float)));
  // Another seed: same master, different rounding for some elements.
  EXPECT_EQ(0, std::memcmp(master[0].data(), master[2].data(), n * sizeof(float)));
  EXPECT_NE(0, std::memcmp(params[0].data(), params[2].data(), n * sizeof(bf16)));
}

// ZeRO-1: each rank updates its shard with pointers offset to the shard's start. With the
// shard's absolute start as index_base, the shards' bf16 weights are bitwise those of one
// unsharded update (the stochastic rounding hashes the absolute index); without it they are not.
TEST_F(OptimizerKernel, AdamWShardsRoundAsTheWhole) {
  const size_t n = 5000 + 3, split = 2311;  // an uneven cut, not a multiple of anything
  State s = make_state(n, 505);
  DeviceBuffer<bf16> d_grads(to_bf16(s.grads));
  auto run = [&](bool sharded, bool with_base) {
    DeviceBuffer<bf16> d_params(n);
    DeviceBuffer<float> d_master(s.master), d_m(s.m), d_v(s.v);
    AdamParams p{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 3, 77, 0};
    const size_t cuts[3] = {0, sharded ? split : n, n};
    for (int k = 0; k < (sharded ? 2 : 1); k++) {
      const size_t b = cuts[k], len = cuts[k + 1] - b;
      DeviceBuffer<AdamSegment> seg(std::vector<AdamSegment>{{0, len, 1}});
      p.index_base = with_base ? b : 0;
      ouro::kernels::adamw(d_params.get() + b, d_master.get() + b, d_grads.get() + b, d_m.get() + b,
                           d_v.get() + b, seg, 1, len, p, nullptr);
    }
    return std::make_pair(d_params.download(), d_master.download());
  };
  const auto whole = run(false, false), shards = run(true, true), unbased = run(true, false);
  EXPECT_EQ(0, std::memcmp(whole.second.data(), shards.second.data(), n * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(whole.first.data(), shards.first.data(), n * sizeof(bf16)));
  EXPECT_EQ(0, std::memcmp(whole.second.data(), unbased.second.data(), n * sizeof(float)));
  EXPECT_NE(0, std::memcmp(whole.first.data(), unbased.first.data(), n * sizeof(bf16)));
}

// The 16-byte path (aligned groups of 8, one Philox call each) and the element-at-a-time path
// give bitwise the same update: the same absolute indices (index_base) updated once from
// aligned pointers and once from pointers one element off (no aligned group: every element
// scalar). Every bf16 weight is master rounded with rounding_random(absolute index, master,
// seed), the documented function (common.cuh), computed here on the host.
TEST_F(OptimizerKernel, AdamWVectorAndScalarPathsAgreeBitwise) {
  const size_t n = 4099, base = 16;  // ragged length; the absolute indices start at 16
  const State s = make_state(n, 606);
  AdamParams p{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 0.5f, 4, 1234, base};
  auto run = [&](size_t shift) {
    auto pad = [&](const std::vector<float>& x) {
      std::vector<float> out(n + shift, 0.0f);
      std::copy(x.begin(), x.end(), out.begin() + ptrdiff_t(shift));
      return out;
    };
    DeviceBuffer<bf16> d_params(n + shift), d_grads(to_bf16(pad(s.grads)));
    DeviceBuffer<float> d_master(pad(s.master)), d_m(pad(s.m)), d_v(pad(s.v));
    DeviceBuffer<AdamSegment> seg(std::vector<AdamSegment>{{0, n, 1}});
    ouro::kernels::adamw(d_params.get() + shift, d_master.get() + shift, d_grads.get() + shift, d_m.get() + shift,
                         d_v.get() + shift, seg, 1, n, p, nullptr);
    auto params = d_params.download();
    auto master = d_master.download(), m = d_m.download(), v = d_v.download();
    params.erase(params.begin(), params.begin() + ptrdiff_t(shift));
    master.erase(master.begin(), master.begin() + ptrdiff_t(shift));
    m.erase(m.begin(), m.begin() + ptrdiff_t(shift));
    v.erase(v.begin(), v.begin() + ptrdiff_t(shift));
    return std::make_tuple(params, master, m, v);
  };
  const auto [pa, ma, mma, va] = run(0);
  const auto [pb, mb, mmb, vb] = run(1);
  EXPECT_EQ(0, std::memcmp(pa.data(), pb.data(), n * sizeof(bf16)));
  EXPECT_EQ(0, std::memcmp(ma.data(), mb.data(), n * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(mma.data(), mmb.data(), n * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(va.data(), vb.data(), n * sizeof(float)));
  size_t mismatches = 0, changed = 0;
  for (size_t i = 0; i < n; i++) {
    const uint32_t r = ouro::kernels::rounding_random(base + i, ma[i], p.seed);
    const float want = from_bits((bits(ma[i]) + (r & 0xffffu)) & 0xffff0000u);
    mismatches += bits(to_float(pa[i])) != bits(want);
    changed += ma[i] != s.master[i];
  }
  EXPECT_EQ(mismatches, 0u);
  EXPECT_GT(changed, n / 2);  // the update ran
}

TEST_F(OptimizerKernel, AdamWRejectsBadArguments) {
  AdamParams p{1e-3f, 0.9f, 0.95f, 1e-8f, 0.1f, 1.0f, 0, 1, 0};
  EXPECT_THROW(ouro::kernels::adamw(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, 1, 1, p, nullptr),
               std::invalid_argument);
  p.step = 1;
  EXPECT_THROW(ouro::kernels::adamw(nullptr, nullptr, nullptr, nullptr, nullptr, nullptr, -1, 1, p, nullptr),
               std::invalid_argument);
}

// A training step captured as a CUDA Graph replays the optimizer launch of the capture: the step's
// scalars (learning rate, clipping coefficient, bias corrections) must come from device memory
// that the host refills before each replay. Three steps with a changing schedule: the captured
// adamw_scalars_on_device (a pinned slot copied to the device, then the update) equals three
// uncaptured adamw calls bitwise; the by-value adamw captured the same way replays the first
// step's scalars and does not (what this guards against: an lr baked into the graph).
TEST_F(OptimizerKernel, AdamWCapturedInAGraphUsesEachStepsScalars) {
  const size_t n = kBufferSize;
  const State s = make_state(n, 909);
  size_t total = 0;
  const std::vector<AdamSegment> segs = device_segments(kSegments, &total);
  DeviceBuffer<AdamSegment> d_segs(segs);
  DeviceBuffer<bf16> d_grads(to_bf16(s.grads));
  const float lrs[3] = {1e-3f, 6e-4f, 2e-4f}, scales[3] = {1.0f, 0.5f, 0.25f};
  auto step_params = [&](int k) {
    return AdamParams{lrs[k], 0.9f, 0.95f, 1e-8f, 0.1f, scales[k], k + 1, 31, 0};
  };
  struct Run {
    std::vector<bf16> params;
    std::vector<float> master, m, v;
  };
  auto run = [&](int mode) {  // 0: uncaptured, 1: captured with device scalars, 2: captured by value
    DeviceBuffer<bf16> d_params(n);
    DeviceBuffer<float> d_master(s.master), d_m(s.m), d_v(s.v);
    d_params.zero();
    cudaStream_t stream = nullptr;
    OURO_CUDA_CHECK(cudaStreamCreate(&stream));
    ouro::kernels::AdamScalars* slot = nullptr;  // pinned: a graph's host buffers must be
    OURO_CUDA_CHECK(cudaMallocHost(&slot, sizeof *slot));
    DeviceBuffer<ouro::kernels::AdamScalars> d_scalars(1);
    cudaGraphExec_t exec = nullptr;
    if (mode > 0) {
      OURO_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
      if (mode == 1) {
        OURO_CUDA_CHECK(cudaMemcpyAsync(d_scalars.get(), slot, sizeof *slot, cudaMemcpyHostToDevice, stream));
        ouro::kernels::adamw_scalars_on_device(d_params, d_master, d_grads, d_m, d_v, d_segs, int(segs.size()),
                                               total, d_scalars.get(), stream);
      } else {
        ouro::kernels::adamw(d_params, d_master, d_grads, d_m, d_v, d_segs, int(segs.size()), total,
                             step_params(0), stream);
      }
      cudaGraph_t graph = nullptr;
      OURO_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
      OURO_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
      OURO_CUDA_CHECK(cudaGraphDestroy(graph));
    }
    for (int k = 0; k < 3; k++) {
      if (mode == 0) {
        ouro::kernels::adamw(d_params, d_master, d_grads, d_m, d_v, d_segs, int(segs.size()), total,
                             step_params(k), stream);
      } else {
        *slot = ouro::kernels::adam_scalars(step_params(k));
        OURO_CUDA_CHECK(cudaGraphLaunch(exec, stream));
      }
      OURO_CUDA_CHECK(cudaStreamSynchronize(stream));  // the slot is rewritten next step
    }
    if (exec) OURO_CUDA_CHECK(cudaGraphExecDestroy(exec));
    OURO_CUDA_CHECK(cudaFreeHost(slot));
    OURO_CUDA_CHECK(cudaStreamDestroy(stream));
    return Run{d_params.download(), d_master.download(), d_m.download(), d_v.download()};
  };
  const Run plain = run(0), graph = run(1), stale = run(2);
  EXPECT_EQ(0, std::memcmp(plain.params.data(), graph.params.data(), n * sizeof(bf16)));
  EXPECT_EQ(0, std::memcmp(plain.master.data(), graph.master.data(), n * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(plain.m.data(), graph.m.data(), n * sizeof(float)));
  EXPECT_EQ(0, std::memcmp(plain.v.data(), graph.v.data(), n * sizeof(float)));
  EXPECT_NE(0, std::memcmp(plain.master.data(), stale.master.data(), n * sizeof(float)));
}

double sum_squares_fp64(const std::vector<float>& x, size_t begin, size_t n) {
  double s = 0;
  for (size_t i = begin; i < begin + n; i++) s += double(x[i]) * double(x[i]);
  return s;
}

TEST_F(OptimizerKernel, SumSquaresRaggedAndDeterministic) {
  const std::vector<float> x = random_bf16_values((1 << 17) + 64, 505, 0.3f);
  DeviceBuffer<bf16> d_x(to_bf16(x));
  DeviceBuffer<double> d_out(1);
  // n = 1, a few below and above the 8-wide vector, primes, and one with a many-block grid.
  for (size_t n : {size_t(1), size_t(7), size_t(9), size_t(1000), size_t(4099), size_t(65537), size_t(1 << 17) + 13}) {
    for (size_t begin : {size_t(0), size_t(1), size_t(3)}) {  // 16-byte aligned (vector path) and not
      SCOPED_TRACE("n=" + std::to_string(n) + " begin=" + std::to_string(begin));
      DeviceBuffer<unsigned char> scratch(ouro::kernels::sum_squares_scratch_bytes(n));
      ouro::kernels::sum_squares(d_out, d_x.get() + begin, n, scratch, nullptr);
      const double got = d_out.download()[0];
      const double ref = sum_squares_fp64(x, begin, n);
      // fp32 per thread over <= ~32 squares and a 256-wide fp32 tree per block: ~1e-6 relative.
      EXPECT_LT(std::fabs(got - ref) / ref, 1e-5) << got << " vs " << ref;
      d_out.poison();
      ouro::kernels::sum_squares(d_out, d_x.get() + begin, n, scratch, nullptr);
      const double again = d_out.download()[0];
      EXPECT_EQ(0, std::memcmp(&got, &again, sizeof(double))) << "not bitwise deterministic";
    }
  }
  // n = 0 is a sum of nothing.
  ouro::kernels::sum_squares(d_out, d_x, 0, nullptr, nullptr);
  EXPECT_EQ(d_out.download()[0], 0.0);
}

}  // namespace
