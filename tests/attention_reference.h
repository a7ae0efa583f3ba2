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
