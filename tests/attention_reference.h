// The attention tests' fp64 reference for the log-sum-exp the forward saves for its backward:
// causal softmax over packed (B, T, 3C) q|k|v rows, head h's q and k at columns h*hd and C + h*hd;
// returned as (B, NH, T), the kernels' layout.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

inline std::vector<float> lse_fp64(const std::vector<float>& qkv, int B, int T, int C, int NH) {
  const int hd = C / NH;
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<float> lse(size_t(B) * NH * T);
  std::vector<double> s(T);
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++)
      for (int t = 0; t < T; t++) {
        const float* q = &qkv[(size_t(b) * T + t) * 3 * C + h * hd];
        double mx = -INFINITY;
        for (int j = 0; j <= t; j++) {
          const float* k = &qkv[(size_t(b) * T + j) * 3 * C + C + h * hd];
          double d = 0;
          for (int i = 0; i < hd; i++) d += double(q[i]) * double(k[i]);
          s[j] = d * scale;
          mx = std::max(mx, s[j]);
        }
        double sum = 0;
        for (int j = 0; j <= t; j++) sum += std::exp(s[j] - mx);
        lse[(size_t(b) * NH + h) * T + t] = float(mx + std::log(sum));
      }
  return lse;
}

// The fp64 reference of the causal attention backward: dqkv (B, T, 3C) from qkv and dout (B, T, C),
// with P = softmax(q k^T / sqrt(hd)) over keys <= the query, O = P V, D = rowsum(dO * O),
// dS = P (dO V^T - D): dq = dS K scale, dk = dS^T Q scale, dv = P^T dO. Everything in double from
// the given (bf16-representable) inputs, so it shares no rounding with the kernels.
inline std::vector<float> attention_backward_fp64(const std::vector<float>& qkv, const std::vector<float>& dout,
                                                  int B, int T, int C, int NH) {
  const int hd = C / NH;
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<double> dqkv(size_t(B) * T * 3 * C, 0.0);
  std::vector<double> P(size_t(T) * T), dS(size_t(T) * T);
  auto q = [&](int b, int t, int i) { return double(qkv[(size_t(b) * T + t) * 3 * C + i]); };
  for (int b = 0; b < B; b++)
    for (int h = 0; h < NH; h++) {
      const int cq = h * hd, ck = C + h * hd, cv = 2 * C + h * hd;
      for (int t = 0; t < T; t++) {
        double mx = -INFINITY;
        for (int j = 0; j <= t; j++) {
          double s = 0;
          for (int i = 0; i < hd; i++) s += q(b, t, cq + i) * q(b, j, ck + i);
          P[size_t(t) * T + j] = s * scale;
          mx = std::max(mx, s * scale);
        }
        double sum = 0;
        for (int j = 0; j <= t; j++) sum += (P[size_t(t) * T + j] = std::exp(P[size_t(t) * T + j] - mx));
        for (int j = 0; j <= t; j++) P[size_t(t) * T + j] /= sum;
        // D = rowsum(dO * O) with O = P V; dS = P (dO . v_j - D)
        double D = 0;
        for (int i = 0; i < hd; i++) {
          double o = 0;
          for (int j = 0; j <= t; j++) o += P[size_t(t) * T + j] * q(b, j, cv + i);
          D += double(dout[(size_t(b) * T + t) * C + h * hd + i]) * o;
        }
        for (int j = 0; j <= t; j++) {
          double dp = 0;
          for (int i = 0; i < hd; i++) dp += double(dout[(size_t(b) * T + t) * C + h * hd + i]) * q(b, j, cv + i);
          dS[size_t(t) * T + j] = P[size_t(t) * T + j] * (dp - D);
        }
      }
      for (int t = 0; t < T; t++)
        for (int j = 0; j <= t; j++) {
          const double p = P[size_t(t) * T + j], ds = dS[size_t(t) * T + j];
          double* dq = &dqkv[(size_t(b) * T + t) * 3 * C + cq];
          double* dk = &dqkv[(size_t(b) * T + j) * 3 * C + ck];
          double* dv = &dqkv[(size_t(b) * T + j) * 3 * C + cv];
          for (int i = 0; i < hd; i++) {
            dq[i] += ds * q(b, j, ck + i) * scale;
            dk[i] += ds * q(b, t, cq + i) * scale;
            dv[i] += p * double(dout[(size_t(b) * T + t) * C + h * hd + i]);
          }
        }
    }
  return std::vector<float>(dqkv.begin(), dqkv.end());
}
