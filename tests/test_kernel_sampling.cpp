// Sampling and log-prob gather kernels vs a host implementation of the same algorithm (fp64)
// and fp64 log-softmax loops.
#include "kernel_test_support.h"

#include "kernels/sampling.h"

#include "cpu/cpu_ops.h"

#include <algorithm>
#include <cstring>
#include <map>

namespace {

using namespace kernel_test;
using ouro::kernels::bf16;
using ouro::kernels::SamplingParams;

class SamplingKernel : public KernelTest {};

// The kernel's order-preserving key of a bf16 value.
uint32_t key_of(float x) {
  const bf16 b = to_bf16(x);
  uint16_t u;
  std::memcpy(&u, &b, 2);
  uint32_t k = u == 0x8000u ? 0u : u;
  return (k & 0x8000u) ? (~k & 0xffffu) : (k | 0x8000u);
}

struct Draw {
  int token;
  double logprob;
};

// The kernel's algorithm (see kernels/sampling.cu) in double: the same kept set (k-th largest
// key; then the largest key whose mass reaches top_p of the top-k mass), the same Philox uniform
// and the same index-order scan. Only a uniform within ~1e-6 of a cumulative boundary (or a
// top-p mass within ~1e-6 of the goal) could make the fp32 kernel differ: ~1e-5 odds per row.
// `philox_key` and `ctr_row` are the Philox key and the counter's row word: (p.seed, row) for
// sample_tokens, (row_seeds[row], 0) for sample_tokens_row_seeds.
Draw reference_draw_keyed(const float* x, int V, const SamplingParams& p, uint64_t philox_key, uint32_t ctr_row) {
  int amax = 0;
  for (int i = 1; i < V; i++)
    if (x[i] > x[amax]) amax = i;
  const double maxv = x[amax];
  double s1 = 0;
  for (int i = 0; i < V; i++) s1 += std::exp(double(x[i]) - maxv);
  int token = amax;
  if (p.temperature > 0) {
    std::vector<double> w(V);
    std::vector<uint32_t> key(V);
    for (int i = 0; i < V; i++) {
      w[i] = std::exp((double(x[i]) - maxv) / double(p.temperature));
      key[i] = key_of(x[i]);
    }
    uint32_t cut = 0;
    if (p.top_k > 0 && p.top_k < V) {
      std::vector<uint32_t> sorted = key;
      std::sort(sorted.begin(), sorted.end(), std::greater<>());
      cut = sorted[p.top_k - 1];
    }
    if (p.top_p < 1.0f) {
      std::map<uint32_t, double, std::greater<>> group;  // mass per key, largest key first
      double S = 0;
      for (int i = 0; i < V; i++)
        if (key[i] >= cut) {
          group[key[i]] += w[i];
          S += w[i];
        }
      const double goal = double(p.top_p) * S;
      double mass = 0;
      for (const auto& [k, g] : group) {
        mass += g;
        if (mass >= goal) {
          cut = k;
          break;
        }
      }
    }
    double total = 0;
    for (int i = 0; i < V; i++)
      if (key[i] >= cut) total += w[i];
    const auto r = ouro::kernels::philox4x32_10(uint32_t(p.offset), uint32_t(p.offset >> 32), ctr_row, 0u,
                                                uint32_t(philox_key), uint32_t(philox_key >> 32));
    const double target = double(ouro::kernels::uniform01(r.x[0])) * total;
    double c = 0;
    for (int i = 0; i < V; i++) {
      if (key[i] < cut) continue;
      c += w[i];
      token = i;
      if (c > target) break;
    }
  }
  return {token, (double(x[token]) - maxv) - std::log(s1)};
}

Draw reference_draw(const float* x, int V, const SamplingParams& p, int row) {
  return reference_draw_keyed(x, V, p, p.seed, uint32_t(row));
}

std::vector<float> make_logits(int B, int V, int Vp, uint64_t seed, float scale = 2.0f) {
  std::vector<float> x = random_bf16_values(size_t(B) * Vp, seed, scale);
  for (int b = 0; b < B; b++)
    for (int i = V; i < Vp; i++) x[size_t(b) * Vp + i] = 100.0f;  // padding: never sampled
  return x;
}

struct Result {
  std::vector<int> tokens;
  std::vector<float> logprobs;
};

Result run_sample(const std::vector<float>& x, int B, int V, int Vp, const SamplingParams& p) {
  DeviceBuffer<bf16> d_x(to_bf16(x));
  DeviceBuffer<int> d_tokens(B);
  DeviceBuffer<float> d_lp(B);
  ouro::kernels::sample_tokens(d_tokens, d_lp, d_x, B, V, Vp, p, nullptr);
  return {d_tokens.download(), d_lp.download()};
}

// Checks every row against the host reference (tokens exactly, log-probs to fp32 accuracy).
void check_against_reference(const std::vector<float>& x, int B, int V, int Vp, const SamplingParams& p) {
  SCOPED_TRACE("V=" + std::to_string(V) + " T=" + std::to_string(p.temperature) + " k=" + std::to_string(p.top_k) +
               " p=" + std::to_string(p.top_p) + " seed=" + std::to_string(p.seed));
  const Result got = run_sample(x, B, V, Vp, p);
  std::vector<float> ref_lp(B);
  for (int b = 0; b < B; b++) {
    const Draw d = reference_draw(&x[size_t(b) * Vp], V, p, b);
    EXPECT_EQ(got.tokens[b], d.token) << "row " << b;
    ref_lp[b] = float(d.logprob);
  }
  // fp32 max/sum/log of the softmax normaliser vs double: ~1e-6 relative on log-probs of ~-1..-15.
  EXPECT_LT(rel_error(got.logprobs, ref_lp), 1e-5);
}

TEST_F(SamplingKernel, GreedyIsArgmaxLowestIndexOnTies) {
  const int B = 5, V = 1000, Vp = 1024;
  std::vector<float> x = make_logits(B, V, Vp, 1);
  x[size_t(0) * Vp + 500] = 30.0f;  // a tie: the lower index wins
  x[size_t(0) * Vp + 37] = 30.0f;
  x[size_t(1) * Vp + 999] = 30.0f;  // the last real column
  x[size_t(2) * Vp + 0] = 30.0f;
  for (float T : {0.0f, -1.0f}) {
    SamplingParams p{T, 0, 1.0f, 5, 0};
    const Result r = run_sample(x, B, V, Vp, p);
    EXPECT_EQ(r.tokens[0], 37);
    EXPECT_EQ(r.tokens[1], 999);
    EXPECT_EQ(r.tokens[2], 0);
    for (int b = 0; b < B; b++) {
      const float* row = &x[size_t(b) * Vp];
      EXPECT_EQ(r.tokens[b], int(std::max_element(row, row + V) - row)) << "row " << b;
    }
    check_against_reference(x, B, V, Vp, p);
  }
}

TEST_F(SamplingKernel, MatchesReferenceAlgorithm) {
  struct Shape {
    int B, V, Vp;
  };
  for (const Shape s : {Shape{40, 1000, 1024}, Shape{24, 77, 83}}) {
    const std::vector<float> x = make_logits(s.B, s.V, s.Vp, 1000 + s.V);
    const SamplingParams params[] = {
        {1.0f, 0, 1.0f, 11, 0},            // plain softmax
        {0.7f, 50, 1.0f, 12, 3},           // top-k
        {1.3f, 0, 0.9f, 13, 1ull << 40},   // top-p (offset above 32 bits)
        {1.0f, 20, 0.8f, 14, 77},          // both
        {0.9f, 5, 0.5f, 0xdeadbeefcafeull, 9},
        {2.0f, 100000, 0.999f, 15, 0},     // k >= V: no cut
    };
    for (const SamplingParams& p : params) check_against_reference(x, s.B, s.V, s.Vp, p);
  }
}

TEST_F(SamplingKernel, Gpt2VocabMatchesReference) {
  const int B = 2, V = 50257, Vp = 50304;
  const std::vector<float> x = make_logits(B, V, Vp, 2024, 3.0f);
  check_against_reference(x, B, V, Vp, {1.0f, 40, 0.95f, 21, 5});
  check_against_reference(x, B, V, Vp, {0.8f, 0, 0.9f, 22, 6});
}

TEST_F(SamplingKernel, TopK1AndTinyTopPAreGreedy) {
  const int B = 16, V = 300, Vp = 304;
  std::vector<float> x = make_logits(B, V, Vp, 3);
  std::mt19937_64 rng(4);
  for (int b = 0; b < B; b++) {  // a unique maximum per row
    float* row = &x[size_t(b) * Vp];
    row[rng() % V] = *std::max_element(row, row + V) + 1.0f;
  }
  const Result greedy = run_sample(x, B, V, Vp, {0.0f, 0, 1.0f, 1, 0});
  for (uint64_t seed : {1ull, 2ull, 3ull}) {
    EXPECT_EQ(run_sample(x, B, V, Vp, {1.0f, 1, 1.0f, seed, seed}).tokens, greedy.tokens);
    EXPECT_EQ(run_sample(x, B, V, Vp, {1.5f, 0, 1e-6f, seed, seed}).tokens, greedy.tokens);
    EXPECT_EQ(run_sample(x, B, V, Vp, {1.5f, 0, 0.0f, seed, seed}).tokens, greedy.tokens);
  }
}

// Empirical distribution of many draws from one small row against the expected probabilities.
// Each row of a batch of identical rows draws its own Philox uniform (counter = row), so the
// n draws are independent. Pearson's chi-square over the cells with nonzero probability has
// (cells - 1) degrees of freedom: with <= 5 dof, P(chi2 > 30) < 2e-5, so the fixed seeds pass
// unless the distribution is wrong (a swapped cut or an off-by-one in the scan shifts a cell by
// ~1/6 of the 2000 draws: chi2 in the hundreds). Cells with zero probability must get no draws.
void check_distribution(const std::vector<float>& logits, const SamplingParams& p, const std::vector<double>& expect) {
  const int V = int(logits.size()), Vp = (V + 7) / 8 * 8, n = 2000;
  std::vector<float> x(size_t(n) * Vp, 50.0f);
  for (int b = 0; b < n; b++) std::copy(logits.begin(), logits.end(), x.begin() + size_t(b) * Vp);
  const Result r = run_sample(x, n, V, Vp, p);
  std::vector<int> count(V, 0);
  for (int t : r.tokens) {
    ASSERT_GE(t, 0);
    ASSERT_LT(t, V);
    count[t]++;
  }
  double chi2 = 0;
  for (int i = 0; i < V; i++) {
    if (expect[i] == 0) {
      EXPECT_EQ(count[i], 0) << "token " << i << " is outside the kept set";
      continue;
    }
    const double e = expect[i] * n;
    chi2 += (count[i] - e) * (count[i] - e) / e;
  }
  EXPECT_LT(chi2, 30.0);
}

std::vector<double> softmax(const std::vector<float>& x, float T, const std::vector<int>& keep) {
  std::vector<double> p(x.size(), 0.0);
  double s = 0;
  for (int i : keep) s += p[i] = std::exp(double(x[i]) / T);
  for (double& v : p) v /= s;
  return p;
}

TEST_F(SamplingKernel, EmpiricalDistributionMatchesSoftmax) {
  // bf16-exact logits, all distinct.
  const std::vector<float> x = {1.0f, 0.5f, -0.25f, 2.0f, 0.0f, -1.0f};
  check_distribution(x, {1.0f, 0, 1.0f, 31, 0}, softmax(x, 1.0f, {0, 1, 2, 3, 4, 5}));
  // T = 0.5, top-3: tokens 3, 0, 1, renormalised.
  check_distribution(x, {0.5f, 3, 1.0f, 32, 0}, softmax(x, 0.5f, {0, 1, 3}));
  // T = 1, top-p 0.8: probabilities 0.532 (3), 0.196 (0), 0.119 (1), ...: 0.727 < 0.8 <= 0.846,
  // so tokens 3, 0, 1 are kept.
  check_distribution(x, {1.0f, 0, 0.8f, 33, 0}, softmax(x, 1.0f, {0, 1, 3}));
  // top-p 0.7 stops at 0.727: tokens 3, 0.
  check_distribution(x, {1.0f, 0, 0.7f, 34, 0}, softmax(x, 1.0f, {0, 3}));
}

TEST_F(SamplingKernel, DeterministicForSeedAndOffset) {
  const int B = 12, V = 500, Vp = 512;
  const std::vector<float> x = make_logits(B, V, Vp, 5);
  const SamplingParams p{1.0f, 0, 0.95f, 42, 7};
  const Result a = run_sample(x, B, V, Vp, p), b = run_sample(x, B, V, Vp, p);
  EXPECT_EQ(a.tokens, b.tokens);
  EXPECT_EQ(0, std::memcmp(a.logprobs.data(), b.logprobs.data(), B * sizeof(float)));
  // Another offset draws other uniforms: some row changes.
  const Result c = run_sample(x, B, V, Vp, {1.0f, 0, 0.95f, 42, 8});
  EXPECT_NE(a.tokens, c.tokens);
}

TEST_F(SamplingKernel, NullLogprobsAndBadShapes) {
  const int B = 3, V = 40, Vp = 40;
  const std::vector<float> x = make_logits(B, V, Vp, 6);
  DeviceBuffer<bf16> d_x(to_bf16(x));
  DeviceBuffer<int> d_tokens(B);
  ouro::kernels::sample_tokens(d_tokens, nullptr, d_x, B, V, Vp, {1.0f, 0, 1.0f, 1, 0}, nullptr);
  for (int b = 0; b < B; b++) EXPECT_EQ(d_tokens.download()[b], reference_draw(&x[size_t(b) * Vp], V, {1.0f, 0, 1.0f, 1, 0}, b).token);
  EXPECT_THROW(ouro::kernels::sample_tokens(d_tokens, nullptr, d_x, B, 41, 40, {1.0f, 0, 1.0f, 1, 0}, nullptr),
               std::invalid_argument);
  EXPECT_THROW(ouro::kernels::sample_tokens(d_tokens, nullptr, d_x, B, V, Vp, {1.0f, 0, NAN, 1, 0}, nullptr),
               std::invalid_argument);
}

Result run_sample_row_seeds(const std::vector<float>& x, int B, int V, int Vp, const SamplingParams& p,
                            const std::vector<uint64_t>& seeds) {
  DeviceBuffer<bf16> d_x(to_bf16(x));
  DeviceBuffer<uint64_t> d_seeds(seeds);
  DeviceBuffer<int> d_tokens(B);
  DeviceBuffer<float> d_lp(B);
  ouro::kernels::sample_tokens_row_seeds(d_tokens, d_lp, d_x, B, V, Vp, p, d_seeds, nullptr);
  return {d_tokens.download(), d_lp.download()};
}

// Each row draws from (its own seed, offset): the reference with that key and counter row 0,
// and the same token when the row moves to another batch position among other rows.
TEST_F(SamplingKernel, RowSeedsMakeEachRowIndependentOfItsBatchMates) {
  const int B = 6, V = 700, Vp = 768;
  const std::vector<float> x = make_logits(B, V, Vp, 91);
  const std::vector<uint64_t> seeds = {3, 1ull << 40, 77, 3, 0xdeadbeefcafeull, 12};
  for (const SamplingParams& p : {SamplingParams{1.0f, 0, 1.0f, 999, 5}, SamplingParams{0.8f, 50, 0.9f, 0, 11}}) {
    const Result got = run_sample_row_seeds(x, B, V, Vp, p, seeds);
    for (int b = 0; b < B; b++) {
      const Draw d = reference_draw_keyed(&x[size_t(b) * Vp], V, p, seeds[b], 0u);
      EXPECT_EQ(got.tokens[b], d.token) << "row " << b;
      EXPECT_NEAR(got.logprobs[b], d.logprob, 1e-5 * std::max(1.0, std::abs(d.logprob))) << "row " << b;
    }
    // Rows reversed, and row 2 alone: the same draws.
    std::vector<float> rev(x.size());
    std::vector<uint64_t> rev_seeds(seeds.rbegin(), seeds.rend());
    for (int b = 0; b < B; b++)
      std::copy_n(&x[size_t(B - 1 - b) * Vp], Vp, &rev[size_t(b) * Vp]);
    const Result r = run_sample_row_seeds(rev, B, V, Vp, p, rev_seeds);
    for (int b = 0; b < B; b++) EXPECT_EQ(r.tokens[B - 1 - b], got.tokens[b]) << "row " << b;
    const std::vector<float> one(x.begin() + 2 * Vp, x.begin() + 3 * Vp);
    EXPECT_EQ(run_sample_row_seeds(one, 1, V, Vp, p, {seeds[2]}).tokens[0], got.tokens[2]);
  }
  // The seed matters: rows 0 and 3 share seed 3 but not logits; the same logits with another
  // seed draw other tokens somewhere over 16 offsets.
  int differ = 0;
  const std::vector<float> row0(x.begin(), x.begin() + Vp);
  for (uint64_t off = 0; off < 16; off++) {
    const SamplingParams p{1.0f, 0, 1.0f, 0, off};
    differ += run_sample_row_seeds(row0, 1, V, Vp, p, {3}).tokens[0] !=
              run_sample_row_seeds(row0, 1, V, Vp, p, {4}).tokens[0];
  }
  EXPECT_GT(differ, 0);
  DeviceBuffer<bf16> d_x(to_bf16(x));
  DeviceBuffer<int> d_tokens(B);
  EXPECT_THROW(ouro::kernels::sample_tokens_row_seeds(d_tokens, nullptr, d_x, B, V, Vp, {1.0f, 0, 1.0f, 1, 0},
                                                      nullptr, nullptr),
               std::invalid_argument);
}

// The offset read from device memory (offset_device: decoding's CUDA Graph replays one launch
// with each token's step) draws as p.offset does, whatever p.offset holds then.
TEST_F(SamplingKernel, DeviceOffsetIsBitwiseTheHostOffset) {
  const int B = 3, V = 700, Vp = 768;
  const std::vector<float> x = make_logits(B, V, Vp, 93);
  const std::vector<uint64_t> seeds = {3, 1ull << 40, 77};
  DeviceBuffer<bf16> d_x(to_bf16(x));
  DeviceBuffer<uint64_t> d_seeds(seeds);
  int moved = 0;
  for (uint64_t off : {uint64_t{0}, uint64_t{1}, uint64_t{37}, (uint64_t{5} << 32) + 9}) {
    const SamplingParams host{1.0f, 0, 1.0f, 0, off}, stale{1.0f, 0, 1.0f, 0, off + 1000};
    const Result want = run_sample_row_seeds(x, B, V, Vp, host, seeds);
    DeviceBuffer<uint64_t> d_off(std::vector<uint64_t>{off});
    DeviceBuffer<int> d_tokens(B);
    DeviceBuffer<float> d_lp(B);
    ouro::kernels::sample_tokens_row_seeds(d_tokens, d_lp, d_x, B, V, Vp, stale, d_seeds, nullptr, nullptr, d_off);
    const auto lp = d_lp.download();
    EXPECT_EQ(d_tokens.download(), want.tokens) << off;
    EXPECT_EQ(0, std::memcmp(lp.data(), want.logprobs.data(), B * sizeof(float))) << off;
    moved += run_sample_row_seeds(x, B, V, Vp, stale, seeds).tokens != want.tokens;
  }
  EXPECT_GT(moved, 0);  // the stale offset would have drawn other tokens
}

// ---- non-finite logits ------------------------------------------------------------------------

// Rows with a NaN, all NaN, all -inf, one or two +inf, some -inf, among finite rows. Whatever the
// temperature and cuts, every row gets a token in [0, V) (a row the draw cannot serve used to
// leave it unwritten: on a GPU whatever the shared slot held, then an out-of-bounds read of x);
// rows holding a NaN or no logit above -inf are reported in status naming the row; +inf logits
// take all the probability, shared equally; -inf logits are never drawn.
TEST_F(SamplingKernel, NonFiniteRowsWriteATokenAndReportTheRow) {
  const int V = 300, Vp = 304;
  enum Row { kFinite, kOneNaN, kAllNaN, kAllNegInf, kOnePosInf, kTwoPosInf, kSomeNegInf, kFinite2, kRows };
  const int B = kRows;
  std::vector<float> x = make_logits(B, V, Vp, 17);
  auto row = [&](int b) { return &x[size_t(b) * Vp]; };
  row(kOneNaN)[123] = NAN;
  std::fill_n(row(kAllNaN), V, NAN);
  std::fill_n(row(kAllNegInf), V, -INFINITY);
  row(kOnePosInf)[250] = INFINITY;
  row(kTwoPosInf)[7] = INFINITY;
  row(kTwoPosInf)[201] = INFINITY;
  for (int i = 0; i < V; i += 2) row(kSomeNegInf)[i] = -INFINITY;  // masked: even tokens
  row(kSomeNegInf)[0] = -INFINITY;
  const SamplingParams params[] = {
      {0.0f, 0, 1.0f, 1, 0}, {1.0f, 0, 1.0f, 2, 0}, {0.7f, 5, 1.0f, 3, 1}, {1.2f, 0, 0.9f, 4, 2}, {0.9f, 20, 0.5f, 5, 3}};
  int picked7 = 0, picked201 = 0;
  for (const SamplingParams& p : params) {
    for (uint64_t off = 0; off < 8; off++) {
      SamplingParams q = p;
      q.offset = p.offset + off * 1000;
      SCOPED_TRACE("T=" + std::to_string(q.temperature) + " k=" + std::to_string(q.top_k) +
                   " p=" + std::to_string(q.top_p) + " offset=" + std::to_string(q.offset));
      DeviceBuffer<bf16> d_x(to_bf16(x));
      DeviceBuffer<int> d_tokens(B), d_status(B);  // poisoned: -1
      DeviceBuffer<float> d_lp(B);
      ouro::kernels::sample_tokens(d_tokens, d_lp, d_x, B, V, Vp, q, nullptr, d_status);
      const std::vector<int> tok = d_tokens.download(), status = d_status.download();
      const std::vector<float> lp = d_lp.download();
      for (int b = 0; b < B; b++) {
        ASSERT_GE(tok[b], 0) << "row " << b << ": no token written";
        ASSERT_LT(tok[b], V) << "row " << b;
      }
      EXPECT_EQ(status[kFinite], ouro::kernels::kSampleOk);
      EXPECT_EQ(status[kOneNaN], ouro::kernels::kSampleNaN);
      EXPECT_EQ(status[kAllNaN], ouro::kernels::kSampleNaN);
      EXPECT_EQ(status[kAllNegInf], ouro::kernels::kSampleNoFinite);
      EXPECT_EQ(status[kOnePosInf], ouro::kernels::kSampleOk);
      EXPECT_EQ(status[kTwoPosInf], ouro::kernels::kSampleOk);
      EXPECT_EQ(status[kSomeNegInf], ouro::kernels::kSampleOk);
      EXPECT_EQ(status[kFinite2], ouro::kernels::kSampleOk);
      // Reported rows carry a NaN log-prob: nothing downstream can mistake it for a real one.
      EXPECT_TRUE(std::isnan(lp[kOneNaN]) && std::isnan(lp[kAllNaN]) && std::isnan(lp[kAllNegInf]));
      EXPECT_EQ(tok[kOnePosInf], 250);
      EXPECT_EQ(lp[kOnePosInf], 0.0f);
      EXPECT_TRUE(tok[kTwoPosInf] == 7 || tok[kTwoPosInf] == 201) << tok[kTwoPosInf];
      EXPECT_FLOAT_EQ(lp[kTwoPosInf], -std::log(2.0f));
      picked7 += tok[kTwoPosInf] == 7, picked201 += tok[kTwoPosInf] == 201;
      EXPECT_EQ(tok[kSomeNegInf] % 2, 1) << "a -inf logit was drawn";
      if (q.temperature <= 0) EXPECT_EQ(tok[kTwoPosInf], 7);  // greedy: the lowest index
      for (int b : {int(kFinite), int(kSomeNegInf), int(kFinite2)}) {
        const Draw d = reference_draw(row(b), V, q, b);
        EXPECT_EQ(tok[b], d.token) << "row " << b;
        EXPECT_NEAR(lp[b], d.logprob, 1e-5 * std::max(1.0, std::abs(d.logprob))) << "row " << b;
      }
    }
  }
  // Two +inf logits share the probability: over 32 sampled draws both come up.
  EXPECT_GT(picked201, 0);
  EXPECT_GT(picked7, 8);
}

// ---- gather_logprobs ------------------------------------------------------------------------

void check_gather(int N, int V, int Vp, uint64_t seed) {
  SCOPED_TRACE("N=" + std::to_string(N) + " V=" + std::to_string(V) + " Vp=" + std::to_string(Vp));
  const std::vector<float> x = make_logits(N, V, Vp, seed, 3.0f);
  std::mt19937_64 rng(seed + 1);
  std::vector<int> t(N);
  for (int n = 0; n < N; n++) t[n] = int(rng() % uint64_t(V));
  if (N > 1) t[1] = -1;
  if (N > 2) t[2] = V - 1;
  std::vector<float> ref(N);
  for (int n = 0; n < N; n++) {
    if (t[n] < 0) {
      ref[n] = 0;
      continue;
    }
    const float* row = &x[size_t(n) * Vp];
    const double m = *std::max_element(row, row + V);
    double s = 0;
    for (int i = 0; i < V; i++) s += std::exp(double(row[i]) - m);
    ref[n] = float(double(row[t[n]]) - m - std::log(s));
  }
  DeviceBuffer<bf16> d_x(to_bf16(x));
  DeviceBuffer<int> d_t(t);
  DeviceBuffer<float> d_lp(N);
  ouro::kernels::gather_logprobs(d_lp, d_x, d_t, N, V, Vp, nullptr);
  const std::vector<float> got = d_lp.download();
  // fp32 online sums (per-thread partials of <= ~50 terms, a fixed tree) vs fp64: ~1e-6 relative.
  EXPECT_LT(rel_error(got, ref), 1e-5);
  if (N > 1) {
    EXPECT_EQ(got[1], 0.0f);
  }
}

TEST_F(SamplingKernel, GatherLogprobs) {
  check_gather(7, 1000, 1024, 71);   // 128-bit path, ragged V
  check_gather(5, 77, 83, 72);       // scalar path
  check_gather(4, 1, 8, 73);         // one-token vocabulary: log-prob 0
  check_gather(2, 50257, 50304, 74); // GPT-2
}

TEST_F(SamplingKernel, GatherLogprobsClampsOutOfRangeTarget) {
  const int N = 2, V = 30, Vp = 32;
  const std::vector<float> x = make_logits(N, V, Vp, 81);
  DeviceBuffer<bf16> d_x(to_bf16(x));
  DeviceBuffer<int> bad(std::vector<int>{30, 1 << 30}), last(std::vector<int>{29, 29});
  DeviceBuffer<float> a(N), b(N);
  ouro::kernels::gather_logprobs(a, d_x, bad, N, V, Vp, nullptr);
  ouro::kernels::gather_logprobs(b, d_x, last, N, V, Vp, nullptr);
  EXPECT_EQ(a.download(), b.download());
}

}  // namespace
