// The cpu backend against straightforward fp64 references written here with naive loops.
// Overwritten outputs are poisoned with NaN first (an element left unwritten fails the
// comparison); accumulated outputs start from random values (checks +=). The fp64 backward
// references are themselves checked by central finite differences of a scalar loss.
#include <gtest/gtest.h>
#include <omp.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <random>
#include <vector>

#include "cpu/cpu_math.h"
#include "cpu/cpu_ops.h"
#include "ouro/error.h"
#include "ouro/host_sampling.h"
#include "ouro/ops.h"

namespace {

using namespace ouro;
using Vec = std::vector<float>;
using DVec = std::vector<double>;

constexpr double kTol = 1e-5;

Vec randn(size_t n, uint32_t seed, float scale = 1.0f) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> dist(0.0f, scale);
  Vec v(n);
  for (float& x : v) x = dist(rng);
  return v;
}

Vec poison(size_t n) { return Vec(n, std::numeric_limits<float>::quiet_NaN()); }

DVec to_d(const Vec& v) { return DVec(v.begin(), v.end()); }

// ||out - ref|| / ||ref||; infinite when out holds a NaN (an unwritten poisoned element).
double rel_err(const Vec& out, const DVec& ref) {
  EXPECT_EQ(out.size(), ref.size());
  double num = 0, den = 0;
  for (size_t i = 0; i < out.size(); i++) {
    if (!std::isfinite(out[i])) return std::numeric_limits<double>::infinity();
    num += (out[i] - ref[i]) * (out[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return std::sqrt(num) / std::max(std::sqrt(den), 1e-300);
}

bool bitwise_equal(const Vec& a, const Vec& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Central differences of loss at `count` random coordinates of x against the analytic grad.
void check_fd(const std::function<double(const DVec&)>& loss, const DVec& x, const DVec& grad,
              uint32_t seed, int count = 8) {
  std::mt19937 rng(seed);
  const double h = 1e-5;
  for (int k = 0; k < count; k++) {
    size_t i = rng() % x.size();
    DVec xp = x, xm = x;
    xp[i] += h;
    xm[i] -= h;
    double fd = (loss(xp) - loss(xm)) / (2 * h);
    EXPECT_NEAR(fd, grad[i], 1e-6 * (1 + std::abs(grad[i]))) << "coordinate " << i;
  }
}

double dot(const DVec& a, const DVec& b) {
  double s = 0;
  for (size_t i = 0; i < a.size(); i++) s += a[i] * b[i];
  return s;
}

// ---------------------------------------------------------------- fp64 references

DVec ref_encoder(const std::vector<int>& tok, const DVec& wte, const DVec& wpe, int B, int T,
                 int pos0, int C) {
  DVec out(size_t(B) * T * C);
  for (int b = 0; b < B; b++)
    for (int t = 0; t < T; t++)
      for (int c = 0; c < C; c++)
        out[(size_t(b) * T + t) * C + c] =
            wte[size_t(tok[b * T + t]) * C + c] + wpe[size_t(pos0 + t) * C + c];
  return out;
}

DVec ref_layernorm(const DVec& x, const DVec& w, const DVec& bias, int N, int C,
                   DVec* mean = nullptr, DVec* rstd = nullptr) {
  DVec out(x.size());
  if (mean) mean->assign(N, 0);
  if (rstd) rstd->assign(N, 0);
  for (int n = 0; n < N; n++) {
    double mu = 0, var = 0;
    for (int c = 0; c < C; c++) mu += x[n * C + c];
    mu /= C;
    for (int c = 0; c < C; c++) var += (x[n * C + c] - mu) * (x[n * C + c] - mu);
    var /= C;
    double r = 1 / std::sqrt(var + 1e-5);
    for (int c = 0; c < C; c++) out[n * C + c] = (x[n * C + c] - mu) * r * w[c] + bias[c];
    if (mean) (*mean)[n] = mu;
    if (rstd) (*rstd)[n] = r;
  }
  return out;
}

struct LnGrads {
  DVec dinp, dw, db;
};
LnGrads ref_layernorm_backward(const DVec& dout, const DVec& x, const DVec& w, int N, int C) {
  LnGrads g{DVec(x.size()), DVec(C), DVec(C)};
  DVec mean, rstd;
  DVec zero(C, 0.0);
  ref_layernorm(x, w, zero, N, C, &mean, &rstd);
  for (int n = 0; n < N; n++) {
    double gm = 0, gxm = 0;
    for (int c = 0; c < C; c++) {
      double xhat = (x[n * C + c] - mean[n]) * rstd[n];
      double gg = dout[n * C + c] * w[c];
      gm += gg / C;
      gxm += gg * xhat / C;
      g.dw[c] += dout[n * C + c] * xhat;
      g.db[c] += dout[n * C + c];
    }
    for (int c = 0; c < C; c++) {
      double xhat = (x[n * C + c] - mean[n]) * rstd[n];
      g.dinp[n * C + c] = rstd[n] * (dout[n * C + c] * w[c] - gm - xhat * gxm);
    }
  }
  return g;
}

DVec ref_matmul(const DVec& x, const DVec& w, const DVec* bias, int N, int C, int OC) {
  DVec out(size_t(N) * OC);
  for (int n = 0; n < N; n++)
    for (int o = 0; o < OC; o++) {
      double s = bias ? (*bias)[o] : 0.0;
      for (int c = 0; c < C; c++) s += x[n * C + c] * w[o * C + c];
      out[n * OC + o] = s;
    }
  return out;
}

// Causal attention; probs (B,NH,T,T) with zeros above the diagonal.
DVec ref_attention(const DVec& qkv, int B, int T, int C, int NH, DVec* probs = nullptr) {
  const int hd = C / NH;
  const double scale = 1 / std::sqrt(double(hd));
  DVec out(size_t(B) * T * C, 0.0);
  if (probs) probs->assign(size_t(B) * NH * T * T, 0.0);
  auto at = [&](int b, int t, int col) { return qkv[(size_t(b) * T + t) * 3 * C + col]; };
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        DVec s(t + 1);
        double mx = -1e300, sum = 0;
        for (int j = 0; j <= t; j++) {
          double d = 0;
          for (int i = 0; i < hd; i++) d += at(b, t, h * hd + i) * at(b, j, C + h * hd + i);
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        for (int j = 0; j <= t; j++) sum += (s[j] = std::exp(s[j] - mx));
        for (int j = 0; j <= t; j++) {
          double p = s[j] / sum;
          if (probs) (*probs)[((size_t(b) * NH + h) * T + t) * T + j] = p;
          for (int i = 0; i < hd; i++)
            out[(size_t(b) * T + t) * C + h * hd + i] += p * at(b, j, 2 * C + h * hd + i);
        }
      }
  return out;
}

DVec ref_attention_backward(const DVec& dout, const DVec& qkv, int B, int T, int C, int NH) {
  const int hd = C / NH;
  const double scale = 1 / std::sqrt(double(hd));
  DVec P;
  ref_attention(qkv, B, T, C, NH, &P);
  DVec dqkv(qkv.size(), 0.0);
  auto idx = [&](int b, int t, int col) { return (size_t(b) * T + t) * 3 * C + col; };
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        const double* p = &P[((size_t(b) * NH + h) * T + t) * T];
        const double* dy = &dout[(size_t(b) * T + t) * C + h * hd];
        DVec dp(t + 1);
        double s = 0;
        for (int j = 0; j <= t; j++) {
          for (int i = 0; i < hd; i++) dp[j] += dy[i] * qkv[idx(b, j, 2 * C + h * hd + i)];
          s += p[j] * dp[j];
        }
        for (int j = 0; j <= t; j++) {
          double ds = p[j] * (dp[j] - s) * scale;
          for (int i = 0; i < hd; i++) {
            dqkv[idx(b, t, h * hd + i)] += ds * qkv[idx(b, j, C + h * hd + i)];
            dqkv[idx(b, j, C + h * hd + i)] += ds * qkv[idx(b, t, h * hd + i)];
            dqkv[idx(b, j, 2 * C + h * hd + i)] += p[j] * dy[i];
          }
        }
      }
  return dqkv;
}

double ref_gelu(double x) {
  const double k = std::sqrt(2 / M_PI);
  return 0.5 * x * (1 + std::tanh(k * (x + 0.044715 * x * x * x)));
}
double ref_gelu_grad(double x) {
  const double k = std::sqrt(2 / M_PI);
  double u = k * (x + 0.044715 * x * x * x), th = std::tanh(u);
  return 0.5 * (1 + th) + 0.5 * x * (1 - th * th) * k * (1 + 3 * 0.044715 * x * x);
}

// Losses per row and d(dloss * sum losses)/dlogits (zero over padding and ignored rows).
void ref_classifier(const DVec& logits, const std::vector<int>& targets, int N, int V, int Vp,
                    double dloss, DVec* losses, DVec* dlogits) {
  losses->assign(N, 0.0);
  dlogits->assign(size_t(N) * Vp, 0.0);
  for (int n = 0; n < N; n++) {
    if (targets[n] < 0) continue;
    const double* x = &logits[size_t(n) * Vp];
    double mx = -1e300, sum = 0;
    for (int i = 0; i < V; i++) mx = std::max(mx, x[i]);
    for (int i = 0; i < V; i++) sum += std::exp(x[i] - mx);
    double lse = mx + std::log(sum);
    (*losses)[n] = lse - x[targets[n]];
    for (int i = 0; i < V; i++)
      (*dlogits)[size_t(n) * Vp + i] = (std::exp(x[i] - lse) - (i == targets[n])) * dloss;
  }
}

// ---------------------------------------------------------------- tests

TEST(CpuOps, MemoryAndFactory) {
  auto ops = make_ops("cpu");
  EXPECT_EQ(ops->name(), "cpu");
  EXPECT_EQ(ops->act_dtype(), DType::F32);
  for (size_t bytes : {size_t(0), size_t(1), size_t(100), size_t(4096 + 12)}) {
    auto* p = static_cast<unsigned char*>(ops->alloc(bytes));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    for (size_t i = 0; i < bytes; i++) ASSERT_EQ(p[i], 0) << bytes;
    ops->dealloc(p);
  }
  Vec src = randn(37, 1), back(37);
  void* d = ops->alloc(37 * 4);
  ops->to_device(d, src.data(), 37 * 4);
  ops->to_host(back.data(), d, 37 * 4);
  EXPECT_TRUE(bitwise_equal(src, back));
  ops->fill_zero(d, 37 * 4);
  ops->to_host(back.data(), d, 37 * 4);
  EXPECT_EQ(back, Vec(37, 0.0f));
  ops->params_from_host(d, src.data(), 37);
  ops->params_to_host(back.data(), d, 37);
  EXPECT_TRUE(bitwise_equal(src, back));
  ops->dealloc(d);

  auto devices = available_devices();
  EXPECT_NE(std::find(devices.begin(), devices.end(), "cpu"), devices.end());
  try {
    make_ops("tpu9");
    FAIL() << "expected ouro::Error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tpu9"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("cpu"), std::string::npos) << e.what();
  }
}

TEST(CpuOps, Encoder) {
  CpuOps ops;
  const int B = 3, T = 13, C = 36, Vs = 10, Tmax = 16;  // small vocab: tokens repeat
  std::mt19937 rng(7);
  std::vector<int> tok(B * T);
  for (int& t : tok) t = rng() % Vs;
  Vec wte = randn(Vs * C, 2), wpe = randn(Tmax * C, 3);

  Vec out = poison(B * T * C);
  ops.encoder_forward(out.data(), tok.data(), wte.data(), wpe.data(), B, T, C);
  EXPECT_LT(rel_err(out, ref_encoder(tok, to_d(wte), to_d(wpe), B, T, 0, C)), kTol);

  const int Tn = 4, pos0 = 9;
  std::vector<int> tok_at(B * Tn);
  for (int& t : tok_at) t = rng() % Vs;
  Vec out_at = poison(B * Tn * C);
  ops.encoder_forward_at(out_at.data(), tok_at.data(), wte.data(), wpe.data(), B, Tn, pos0, C);
  EXPECT_LT(rel_err(out_at, ref_encoder(tok_at, to_d(wte), to_d(wpe), B, Tn, pos0, C)), kTol);

  // Backward accumulates onto existing gradients.
  Vec dout = randn(B * T * C, 4), dwte0 = randn(Vs * C, 5), dwpe0 = randn(T * C, 6);
  DVec rwte = to_d(dwte0), rwpe = to_d(dwpe0);
  for (int n = 0; n < B * T; n++)
    for (int c = 0; c < C; c++) {
      rwte[size_t(tok[n]) * C + c] += dout[n * C + c];
      rwpe[size_t(n % T) * C + c] += dout[n * C + c];
    }
  Vec dwte = dwte0, dwpe = dwpe0;
  ops.encoder_backward(dwte.data(), dwpe.data(), dout.data(), tok.data(), B, T, C);
  EXPECT_LT(rel_err(dwte, rwte), kTol);
  EXPECT_LT(rel_err(dwpe, rwpe), kTol);
}

TEST(CpuOps, LayerNorm) {
  CpuOps ops;
  for (auto [N, C] : {std::pair{21, 24}, std::pair{39, 36}}) {
    Vec x = randn(N * C, 10, 2.0f), w = randn(C, 11), b = randn(C, 12);
    for (int i = 0; i < N * C; i++) x[i] += 3.0f;  // an offset: the mean must come out
    Vec out = poison(N * C), mean = poison(N), rstd = poison(N);
    ops.layernorm_forward(out.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N,
                          C);
    DVec rmean, rrstd;
    DVec ref = ref_layernorm(to_d(x), to_d(w), to_d(b), N, C, &rmean, &rrstd);
    EXPECT_LT(rel_err(out, ref), kTol);
    EXPECT_LT(rel_err(mean, rmean), kTol);
    EXPECT_LT(rel_err(rstd, rrstd), kTol);

    Vec dout = randn(N * C, 13);
    Vec dinp0 = randn(N * C, 14), dw0 = randn(C, 15), db0 = randn(C, 16);
    Vec dinp = dinp0, dw = dw0, db = db0;
    ops.layernorm_backward(dinp.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                           mean.data(), rstd.data(), N, C);
    LnGrads g = ref_layernorm_backward(to_d(dout), to_d(x), to_d(w), N, C);
    DVec rdinp = g.dinp, rdw = g.dw, rdb = g.db;
    for (size_t i = 0; i < rdinp.size(); i++) rdinp[i] += dinp0[i];
    for (int c = 0; c < C; c++) rdw[c] += dw0[c], rdb[c] += db0[c];
    EXPECT_LT(rel_err(dinp, rdinp), kTol);
    EXPECT_LT(rel_err(dw, rdw), kTol);
    EXPECT_LT(rel_err(db, rdb), kTol);

    // The reference gradients against finite differences of sum(dout * out).
    DVec dx = to_d(x), dwd = to_d(w), dbd = to_d(b), dy = to_d(dout);
    check_fd([&](const DVec& v) { return dot(dy, ref_layernorm(v, dwd, dbd, N, C)); }, dx,
             g.dinp, 17);
    check_fd([&](const DVec& v) { return dot(dy, ref_layernorm(dx, v, dbd, N, C)); }, dwd, g.dw,
             18);
    check_fd([&](const DVec& v) { return dot(dy, ref_layernorm(dx, dwd, v, N, C)); }, dbd, g.db,
             19);
  }
}

TEST(CpuOps, Matmul) {
  CpuOps ops;
  const int N = 21, C = 36, OC = 40;
  Vec x = randn(N * C, 20), w = randn(OC * C, 21, 0.3f), b = randn(OC, 22);
  DVec dx = to_d(x), dwd = to_d(w), dbd = to_d(b);
  for (bool with_bias : {true, false}) {
    Vec out = poison(N * OC);
    ops.matmul_forward(out.data(), x.data(), w.data(), with_bias ? b.data() : nullptr, N, C, OC);
    EXPECT_LT(rel_err(out, ref_matmul(dx, dwd, with_bias ? &dbd : nullptr, N, C, OC)), kTol);

    Vec dout = randn(N * OC, 23);
    Vec dw0 = randn(OC * C, 24), db0 = randn(OC, 25);
    Vec dinp = poison(N * C), dw = dw0, db = db0;
    ops.matmul_backward(dinp.data(), dw.data(), with_bias ? db.data() : nullptr, dout.data(),
                        x.data(), w.data(), N, C, OC);
    DVec rdinp(N * C, 0.0), rdw = to_d(dw0), rdb = to_d(db0);
    for (int n = 0; n < N; n++)
      for (int o = 0; o < OC; o++) {
        for (int c = 0; c < C; c++) {
          rdinp[n * C + c] += dout[n * OC + o] * dwd[o * C + c];
          rdw[o * C + c] += dout[n * OC + o] * dx[n * C + c];
        }
        rdb[o] += dout[n * OC + o];
      }
    EXPECT_LT(rel_err(dinp, rdinp), kTol);
    EXPECT_LT(rel_err(dw, rdw), kTol);
    if (with_bias) EXPECT_LT(rel_err(db, rdb), kTol);
    else EXPECT_TRUE(bitwise_equal(db, db0));

    if (with_bias) {  // the reference gradients against finite differences
      DVec dy = to_d(dout), gin(N * C, 0.0), gw = rdw, gb = rdb;
      for (size_t i = 0; i < gw.size(); i++) gw[i] -= dw0[i];
      for (int o = 0; o < OC; o++) gb[o] -= db0[o];
      check_fd([&](const DVec& v) { return dot(dy, ref_matmul(v, dwd, &dbd, N, C, OC)); }, dx,
               rdinp, 26);
      check_fd([&](const DVec& v) { return dot(dy, ref_matmul(dx, v, &dbd, N, C, OC)); }, dwd,
               gw, 27);
      check_fd([&](const DVec& v) { return dot(dy, ref_matmul(dx, dwd, &v, N, C, OC)); }, dbd,
               gb, 28);
    }
  }
}

struct AttnShape {
  int B, T, C, NH;
};
constexpr AttnShape kAttnShapes[] = {{3, 7, 24, 4}, {3, 13, 36, 3}, {2, 13, 24, 3}};

TEST(CpuOps, Attention) {
  CpuOps ops;
  for (auto [B, T, C, NH] : kAttnShapes) {
    SCOPED_TRACE(testing::Message() << "B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
    Vec qkv = randn(size_t(B) * T * 3 * C, 30 + T, 1.0f);
    ASSERT_EQ(ops.attention_state_size(B, T, NH), size_t(B) * NH * T * T);
    Vec out = poison(B * T * C), state = poison(ops.attention_state_size(B, T, NH));
    ops.attention_forward(out.data(), state.data(), qkv.data(), B, T, C, NH);
    DVec rprobs;
    DVec dqkvd = to_d(qkv);
    EXPECT_LT(rel_err(out, ref_attention(dqkvd, B, T, C, NH, &rprobs)), kTol);
    EXPECT_LT(rel_err(state, rprobs), kTol);

    Vec dout = randn(B * T * C, 31);
    Vec dqkv = poison(qkv.size());
    ops.attention_backward(dqkv.data(), dout.data(), qkv.data(), out.data(), state.data(), B, T,
                           C, NH);
    DVec dy = to_d(dout);
    DVec ref = ref_attention_backward(dy, dqkvd, B, T, C, NH);
    EXPECT_LT(rel_err(dqkv, ref), kTol);
    check_fd([&](const DVec& v) { return dot(dy, ref_attention(v, B, T, C, NH)); }, dqkvd, ref,
             32, 12);
  }
}

// Distance of f from the exact value v in units in the last place of float at v.
double float_ulps(float f, long double v) {
  int e = 0;
  std::frexp(double(v), &e);
  const long double ulp = std::ldexp(1.0L, std::max(e - 24, -149));
  return double(std::fabs((long double)f - v) / ulp);
}

// The forward in plain fp32 as the cpu backend computed it before its scores became dot products
// accumulated in double (cpu_attention.cpp dot_rows) and its exponentials cpu_math::exp_f32:
// fp32 dot products, glibc's expf.
Vec float_attention(const Vec& qkv, int B, int T, int C, int NH, Vec* probs) {
  const int hd = C / NH;
  const float scale = 1.0f / std::sqrt(float(hd));
  Vec out(size_t(B) * T * C, 0.0f);
  probs->assign(size_t(B) * NH * T * T, 0.0f);
  auto at = [&](int b, int t, int col) { return qkv[(size_t(b) * T + t) * 3 * C + col]; };
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        Vec s(t + 1);
        float mx = -std::numeric_limits<float>::infinity(), sum = 0;
        for (int j = 0; j <= t; j++) {
          float d = 0;
          for (int i = 0; i < hd; i++) d += at(b, t, h * hd + i) * at(b, j, C + h * hd + i);
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        for (int j = 0; j <= t; j++) sum += (s[j] = std::exp(s[j] - mx));
        for (int j = 0; j <= t; j++) {
          const float p = s[j] / sum;
          (*probs)[((size_t(b) * NH + h) * T + t) * T + j] = p;
          for (int i = 0; i < hd; i++)
            out[(size_t(b) * T + t) * C + h * hd + i] += p * at(b, j, 2 * C + h * hd + i);
        }
      }
  return out;
}

// Bits of the attention changed with its speedup (docs/perf.md "Small models on the CPU"): the
// new forward must be at least as accurate as fp32 dot products and glibc's expf, against fp64.
// Large inputs give sharp softmaxes, where a score's rounding moves the probabilities most.
TEST(CpuOps, AttentionIsAtLeastAsAccurateAsFp32Dots) {
  CpuOps ops;
  for (auto [B, T, C, NH] : {AttnShape{2, 64, 96, 4}, AttnShape{1, 50, 128, 4}}) {
    SCOPED_TRACE(testing::Message() << "B=" << B << " T=" << T << " C=" << C << " NH=" << NH);
    Vec qkv = randn(size_t(B) * T * 3 * C, 35 + T, 2.5f);
    Vec out = poison(size_t(B) * T * C), state = poison(ops.attention_state_size(B, T, NH));
    ops.attention_forward(out.data(), state.data(), qkv.data(), B, T, C, NH);
    DVec rprobs;
    const DVec rout = ref_attention(to_d(qkv), B, T, C, NH, &rprobs);
    Vec fprobs;
    const Vec fout = float_attention(qkv, B, T, C, NH, &fprobs);
    const double e_out = rel_err(out, rout), e_probs = rel_err(state, rprobs);
    const double f_out = rel_err(fout, rout), f_probs = rel_err(fprobs, rprobs);
    EXPECT_LE(e_probs, f_probs);
    EXPECT_LE(e_out, f_out);
    std::printf("attention error vs fp64: probs %.3g (fp32 dots %.3g), out %.3g (fp32 dots %.3g)\n",
                e_probs, f_probs, e_out, f_out);
  }
}

// e^x of the softmax (cpu_math::exp_f32) against long double on every 509th float of [-104, 88]
// (outside it e^x is 0, a denormal near 0, or near FLT_MAX and above): correctly rounded at
// every point sampled, where glibc's expf is not always.
TEST(CpuMath, ExpIsCorrectlyRoundedAtEverySampledFloat) {
  double worst = 0, worst_libm = 0;
  size_t not_nearest = 0, count = 0;
  auto check = [&](float x) {
    const long double exact = std::exp((long double)x);
    const float e = cpu_math::exp_f32(x);
    worst = std::max(worst, float_ulps(e, exact));
    worst_libm = std::max(worst_libm, float_ulps(std::exp(x), exact));
    not_nearest += e != float(exact);
    count++;
  };
  for (uint32_t bits = 0; bits <= std::bit_cast<uint32_t>(88.0f); bits += 509)
    check(std::bit_cast<float>(bits));
  for (uint32_t bits = 0; bits <= std::bit_cast<uint32_t>(104.0f); bits += 509)
    check(-std::bit_cast<float>(bits));
  EXPECT_EQ(not_nearest, 0u) << "of " << count;
  EXPECT_LE(worst, 0.5 + 1e-6);
  EXPECT_LE(worst, std::max(worst_libm, 0.5 + 1e-6));
  std::printf("exp_f32: %zu floats, worst %.4f ulp; glibc expf on the same: %.4f ulp\n", count,
              worst, worst_libm);
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isnan(cpu_math::exp_f32(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(cpu_math::exp_f32(-inf), 0.0f);
  EXPECT_EQ(cpu_math::exp_f32(inf), inf);
  EXPECT_EQ(cpu_math::exp_f32(-200.0f), 0.0f);
  EXPECT_EQ(cpu_math::exp_f32(200.0f), inf);
  EXPECT_EQ(cpu_math::exp_f32(0.0f), 1.0f);
  EXPECT_EQ(cpu_math::exp_f32(-0.0f), 1.0f);
}

// Prefill a prefix into the KV cache, then decode token by token: every step must reproduce
// the training forward's outputs for those positions.
TEST(CpuOps, AttentionKvMatchesForward) {
  CpuOps ops;
  for (auto [B, T, C, NH] : kAttnShapes) {
    const int Tmax = T + 3, prefix = 5, C3 = 3 * C;
    Vec qkv = randn(size_t(B) * T * C3, 40 + T);
    Vec ref_out(B * T * C), state(ops.attention_state_size(B, T, NH));
    ops.attention_forward(ref_out.data(), state.data(), qkv.data(), B, T, C, NH);

    Vec kcache = poison(size_t(B) * Tmax * C), vcache = poison(size_t(B) * Tmax * C);
    for (int pos0 = 0; pos0 < T;) {
      const int Tn = pos0 == 0 ? prefix : 1;
      Vec step_qkv(size_t(B) * Tn * C3), step_out = poison(size_t(B) * Tn * C);
      for (int b = 0; b < B; b++)
        std::memcpy(&step_qkv[size_t(b) * Tn * C3], &qkv[(size_t(b) * T + pos0) * C3],
                    sizeof(float) * Tn * C3);
      ops.attention_kv(step_out.data(), step_qkv.data(), kcache.data(), vcache.data(), B, Tn,
                       pos0, Tmax, C, NH);
      for (int b = 0; b < B; b++)
        for (int t = 0; t < Tn; t++)
          for (int c = 0; c < C; c++) {
            const size_t q = (size_t(b) * T + pos0 + t);
            ASSERT_NEAR(step_out[(size_t(b) * Tn + t) * C + c], ref_out[q * C + c], 1e-6)
                << "b=" << b << " pos=" << pos0 + t << " c=" << c;
            ASSERT_EQ(kcache[(size_t(b) * Tmax + pos0 + t) * C + c], qkv[q * C3 + C + c]);
            ASSERT_EQ(vcache[(size_t(b) * Tmax + pos0 + t) * C + c], qkv[q * C3 + 2 * C + c]);
          }
      pos0 += Tn;
    }
    Vec o(size_t(B) * C), one(size_t(B) * C3);
    EXPECT_THROW(ops.attention_kv(o.data(), one.data(), kcache.data(), vcache.data(), B, 1, Tmax,
                                  Tmax, C, NH),
                 Error);
  }
}

TEST(CpuOps, GeluAndResidual) {
  CpuOps ops;
  const size_t n = 1000 + 7;
  Vec x = randn(n, 50, 2.0f), y = randn(n, 51), dout = randn(n, 52);
  DVec rf(n), rb(n), rs(n);
  for (size_t i = 0; i < n; i++) {
    rf[i] = ref_gelu(x[i]);
    rb[i] = ref_gelu_grad(x[i]) * dout[i];
    rs[i] = double(x[i]) + y[i];
  }
  Vec out = poison(n);
  ops.gelu_forward(out.data(), x.data(), n);
  EXPECT_LT(rel_err(out, rf), kTol);
  Vec dinp = poison(n);
  ops.gelu_backward(dinp.data(), x.data(), dout.data(), n);
  EXPECT_LT(rel_err(dinp, rb), kTol);
  Vec aliased = dout;  // dinp may alias dout
  ops.gelu_backward(aliased.data(), x.data(), aliased.data(), n);
  EXPECT_TRUE(bitwise_equal(aliased, dinp));
  DVec dx = to_d(x), gelu_grad(n);
  for (size_t i = 0; i < n; i++) gelu_grad[i] = ref_gelu_grad(dx[i]);
  check_fd(
      [&](const DVec& v) {
        double s = 0;
        for (double e : v) s += ref_gelu(e);
        return s;
      },
      dx, gelu_grad, 53);

  Vec sum = poison(n);
  ops.residual_forward(sum.data(), x.data(), y.data(), n);
  EXPECT_LT(rel_err(sum, rs), kTol);
  Vec acc = x;
  ops.add_inplace(acc.data(), y.data(), n);
  EXPECT_LT(rel_err(acc, rs), kTol);
}


// GELU's tanh (cpu_math::tanh_f32, vectorizable) against tanh in long double, on every 1021st float
// of [0, 20] and its negative: correctly rounded at every point sampled, so never less accurate
// than glibc's tanhf (fdlibm's, which it replaced; its error is measured on the same points).
TEST(CpuMath, TanhIsCorrectlyRoundedAtEverySampledFloat) {
  double worst = 0, worst_libm = 0;
  size_t not_nearest = 0, count = 0;
  const uint32_t end = std::bit_cast<uint32_t>(20.0f);
  for (uint32_t bits = 0; bits <= end; bits += 1021) {
    for (float x : {std::bit_cast<float>(bits), -std::bit_cast<float>(bits)}) {
      const long double exact = std::tanh((long double)x);
      const float t = cpu_math::tanh_f32(x);
      worst = std::max(worst, float_ulps(t, exact));
      worst_libm = std::max(worst_libm, float_ulps(std::tanh(x), exact));
      not_nearest += t != float(exact);
      count++;
    }
  }
  EXPECT_EQ(not_nearest, 0u) << "of " << count;
  EXPECT_LE(worst, 0.5 + 1e-6);
  EXPECT_LE(worst, worst_libm);
  std::printf("tanh_f32: %zu floats, worst %.4f ulp; glibc tanhf on the same: %.4f ulp\n", count,
              worst, worst_libm);
}

TEST(CpuMath, TanhSpecialValues) {
  const float inf = std::numeric_limits<float>::infinity();
  EXPECT_TRUE(std::isnan(cpu_math::tanh_f32(std::numeric_limits<float>::quiet_NaN())));
  EXPECT_EQ(cpu_math::tanh_f32(inf), 1.0f);
  EXPECT_EQ(cpu_math::tanh_f32(-inf), -1.0f);
  EXPECT_EQ(cpu_math::tanh_f32(1e30f), 1.0f);
  EXPECT_EQ(cpu_math::tanh_f32(-25.0f), -1.0f);
  EXPECT_EQ(std::bit_cast<uint32_t>(cpu_math::tanh_f32(0.0f)), 0u);
  EXPECT_EQ(std::bit_cast<uint32_t>(cpu_math::tanh_f32(-0.0f)), 0x80000000u);
  const float denormal = std::numeric_limits<float>::denorm_min() * 7;
  EXPECT_EQ(cpu_math::tanh_f32(denormal), denormal);
  EXPECT_EQ(cpu_math::tanh_f32(-denormal), -denormal);
}

// The GELU loops vectorize: an element must get the same bits in the vector body as in the
// scalar remainder, so that results do not depend on where a thread's chunk starts. A length
// above kParallelMin runs on a team; the reference is one element per call (always scalar).
TEST(CpuOps, GeluIsTheSameBitsInVectorAndScalarCodeAndOnAnyTeam) {
  CpuOps ops;
  const size_t n = kParallelMin + 1013;
  Vec x = randn(n, 70, 3.0f), dout = randn(n, 71);
  x[5] = std::numeric_limits<float>::quiet_NaN();
  x[6] = std::numeric_limits<float>::infinity();
  x[7] = 1e-3f;  // the small-argument series
  Vec one_fwd(n), one_bwd(n);
  for (size_t i = 0; i < n; i++) {
    ops.gelu_forward(&one_fwd[i], &x[i], 1);
    ops.gelu_backward(&one_bwd[i], &x[i], &dout[i], 1);
  }
  const int threads = omp_get_max_threads();
  for (int team : {1, 2, 3}) {
    omp_set_num_threads(team);
    Vec fwd = poison(n), bwd = poison(n);
    ops.gelu_forward(fwd.data(), x.data(), n);
    ops.gelu_backward(bwd.data(), x.data(), dout.data(), n);
    EXPECT_TRUE(bitwise_equal(fwd, one_fwd)) << "team of " << team;
    EXPECT_TRUE(bitwise_equal(bwd, one_bwd)) << "team of " << team;
  }
  omp_set_num_threads(threads);
}

TEST(CpuOps, Classifier) {
  CpuOps ops;
  const int N = 21, V = 301, Vp = 384;
  Vec logits = randn(size_t(N) * Vp, 60, 3.0f);
  for (int n = 0; n < N; n++)  // huge padding logits: they must stay out of the softmax
    for (int i = V; i < Vp; i++) logits[size_t(n) * Vp + i] = 1e4f;
  std::mt19937 rng(61);
  std::vector<int> targets(N);
  for (int& t : targets) t = rng() % V;
  targets[0] = V - 1;
  targets[3] = -1;
  targets[N - 1] = -100;
  const float dloss = 1.0f / N;
  DVec rloss, rdlogits;
  DVec dl = to_d(logits);
  ref_classifier(dl, targets, N, V, Vp, dloss, &rloss, &rdlogits);

  // dloss == 0: losses only, logits untouched.
  Vec fwd = logits, losses = poison(N);
  ops.classifier(fwd.data(), losses.data(), targets.data(), N, V, Vp, 0.0f);
  EXPECT_TRUE(bitwise_equal(fwd, logits));
  EXPECT_LT(rel_err(losses, rloss), kTol);

  Vec grad = logits, losses2 = poison(N);
  ops.classifier(grad.data(), losses2.data(), targets.data(), N, V, Vp, dloss);
  EXPECT_LT(rel_err(losses2, rloss), kTol);
  EXPECT_LT(rel_err(grad, rdlogits), kTol);
  for (int n = 0; n < N; n++) {
    for (int i = V; i < Vp; i++) ASSERT_EQ(grad[size_t(n) * Vp + i], 0.0f) << n << "," << i;
    if (targets[n] < 0) {
      EXPECT_EQ(losses2[n], 0.0f);
      for (int i = 0; i < Vp; i++) ASSERT_EQ(grad[size_t(n) * Vp + i], 0.0f);
    }
  }
  check_fd(
      [&](const DVec& v) {
        DVec l, d;
        ref_classifier(v, targets, N, V, Vp, dloss, &l, &d);
        double s = 0;
        for (double e : l) s += e * dloss;
        return s;
      },
      dl, rdlogits, 62, 12);

  std::vector<int> bad = targets;
  bad[5] = V;
  Vec tmp = logits;
  EXPECT_THROW(ops.classifier(tmp.data(), losses.data(), bad.data(), N, V, Vp, dloss), Error);
}

TEST(CpuOps, SumSquares) {
  CpuOps ops;
  const size_t n = 200003;  // several reduction chunks and a ragged tail
  Vec x = randn(n, 70);
  double ref = 0;
  for (float e : x) ref += double(e) * e;
  EXPECT_NEAR(ops.sum_squares(x.data(), n), ref, 1e-12 * ref);
  EXPECT_EQ(ops.sum_squares(x.data(), 0), 0.0);
}

// torch.optim.AdamW in fp64: decay first, then the bias-corrected Adam step.
TEST(CpuOps, AdamW) {
  CpuOps ops;
  const size_t n = 1000;
  // [650, 700) belongs to no segment and must not move.
  std::vector<ParamSegment> segs = {{0, 300, true}, {300, 350, false}, {700, 300, true}};
  AdamWArgs args;
  args.lr = 1e-2f;
  args.weight_decay = 0.1f;
  args.grad_scale = 0.5f;
  Vec p = randn(n, 80), m(n, 0.0f), v(n, 0.0f);
  DVec rp = to_d(p), rm(n, 0.0), rv(n, 0.0);
  // The same updates through a master copy (params then mirror it).
  const Vec p0 = p;
  Vec p2 = p, master = p, m2(n, 0.0f), v2(n, 0.0f);
  for (int step = 1; step <= 6; step++) {
    Vec g = randn(n, 81 + step, step == 3 ? 1e-4f : 1.0f);
    args.step = step;
    ops.adamw(p.data(), nullptr, g.data(), m.data(), v.data(), segs, args);
    ops.adamw(p2.data(), master.data(), g.data(), m2.data(), v2.data(), segs, args);
    const double b1 = args.beta1, b2 = args.beta2;
    const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
    for (const ParamSegment& s : segs)
      for (size_t i = s.offset; i < s.offset + s.size; i++) {
        double gi = double(g[i]) * args.grad_scale;
        double wd = s.decay ? double(args.weight_decay) : 0.0;
        rp[i] *= 1 - double(args.lr) * wd;
        rm[i] = b1 * rm[i] + (1 - b1) * gi;
        rv[i] = b2 * rv[i] + (1 - b2) * gi * gi;
        rp[i] -= double(args.lr) / bc1 * rm[i] / (std::sqrt(rv[i]) / std::sqrt(bc2) + args.eps);
      }
    EXPECT_LT(rel_err(p, rp), 1e-6) << "step " << step;
    EXPECT_LT(rel_err(m, rm), 1e-6) << "step " << step;
    EXPECT_LT(rel_err(v, rv), 1e-6) << "step " << step;
    EXPECT_TRUE(bitwise_equal(master, p));
    EXPECT_TRUE(bitwise_equal(p2, p));
    EXPECT_TRUE(bitwise_equal(m2, m));
  }
  for (size_t i = 650; i < 700; i++) ASSERT_EQ(p[i], p0[i]) << i;
  EXPECT_NE(p[0], p0[0]);
}

// Every backward twice from the same inputs, and once more on a different thread count: the
// results must match bit for bit.
TEST(CpuOps, BackwardIsDeterministic) {
  CpuOps ops;
  const int B = 3, T = 13, C = 36, NH = 3, N = B * T, OC = 40, Vs = 5, V = 301, Vp = 384;
  std::mt19937 rng(90);
  std::vector<int> tok(N), targets(N);
  for (int& t : tok) t = rng() % Vs;
  for (int& t : targets) t = rng() % V;
  targets[2] = -1;
  Vec x = randn(N * C, 91), w = randn(C, 92), b = randn(C, 93), dout = randn(N * C, 94);
  Vec W = randn(OC * C, 95), doutm = randn(N * OC, 96), qkv = randn(N * 3 * C, 97);
  Vec logits = randn(size_t(N) * Vp, 98, 3.0f);
  Vec mean(N), rstd(N), lnout(N * C), attout(N * C), state(ops.attention_state_size(B, T, NH));
  ops.layernorm_forward(lnout.data(), mean.data(), rstd.data(), x.data(), w.data(), b.data(), N,
                        C);
  ops.attention_forward(attout.data(), state.data(), qkv.data(), B, T, C, NH);

  auto run_all = [&]() {
    std::vector<Vec> r;
    Vec dwte = randn(Vs * C, 99), dwpe = randn(T * C, 100);
    ops.encoder_backward(dwte.data(), dwpe.data(), dout.data(), tok.data(), B, T, C);
    Vec dinp = randn(N * C, 101), dw = randn(C, 102), db = randn(C, 103);
    ops.layernorm_backward(dinp.data(), dw.data(), db.data(), dout.data(), x.data(), w.data(),
                           mean.data(), rstd.data(), N, C);
    Vec mdinp(N * C), mdw = randn(OC * C, 104), mdb = randn(OC, 105);
    ops.matmul_backward(mdinp.data(), mdw.data(), mdb.data(), doutm.data(), x.data(), W.data(), N,
                        C, OC);
    Vec dqkv(N * 3 * C);
    ops.attention_backward(dqkv.data(), dout.data(), qkv.data(), attout.data(), state.data(), B,
                           T, C, NH);
    Vec lg = logits, losses(N);
    ops.classifier(lg.data(), losses.data(), targets.data(), N, V, Vp, 1.0f / N);
    double ss = ops.sum_squares(dqkv.data(), dqkv.size());
    Vec ssv(2);
    std::memcpy(ssv.data(), &ss, sizeof ss);
    r = {dwte, dwpe, dinp, dw, db, mdinp, mdw, mdb, dqkv, lg, losses, ssv};
    return r;
  };
  auto first = run_all(), second = run_all();
  const int threads = omp_get_max_threads();
  omp_set_num_threads(threads == 3 ? 2 : 3);
  auto other = run_all();
  omp_set_num_threads(threads);
  for (size_t i = 0; i < first.size(); i++) {
    EXPECT_TRUE(bitwise_equal(first[i], second[i])) << "output " << i;
    EXPECT_TRUE(bitwise_equal(first[i], other[i])) << "output " << i << " across thread counts";
  }
}

// The host sampler (ouro/host_sampling.h, src/cpu/cpu_sampling.cpp) that the cpu backend's
// sample_tokens is built on.
TEST(Sampling, TopKTopPAndTemperature) {
  std::vector<float> logits = {0.0f, 3.0f, 1.0f, 2.9f, -5.0f};
  SamplingSpec o;
  o.temperature = 0;
  EXPECT_EQ(sample_token(logits.data(), 5, o, 0.3), 1);
  o.temperature = 1;
  o.top_k = 1;
  for (double u : {0.0, 0.5, 0.999}) EXPECT_EQ(sample_token(logits.data(), 5, o, u), 1);
  o.top_k = 2;
  for (int i = 0; i < 200; ++i) {
    int t = sample_token(logits.data(), 5, o, counter_uniform(9, i));
    EXPECT_TRUE(t == 1 || t == 3);
  }
  o.top_k = 0;
  o.top_p = 0.5f;  // token 1 alone holds < 0.5 of the mass, 1 and 3 together more
  for (int i = 0; i < 200; ++i) {
    int t = sample_token(logits.data(), 5, o, counter_uniform(3, i));
    EXPECT_TRUE(t == 1 || t == 3);
  }
  // Empirical frequencies follow the softmax at temperature 1.
  o.top_p = 1.0f;
  std::vector<int> counts(5);
  const int n = 20000;
  for (int i = 0; i < n; ++i) counts[sample_token(logits.data(), 5, o, counter_uniform(1, i))]++;
  double z = 0;
  for (float l : logits) z += std::exp(l);
  for (int k = 0; k < 5; ++k) EXPECT_NEAR(counts[k] / double(n), std::exp(logits[k]) / z, 0.015) << k;
}

}  // namespace
