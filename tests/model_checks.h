// Checks shared by the model suites on every backend (tests/test_model_pos.cpp on cpu,
// tests/test_device_pos.cpp on the device backends against cpu): a relative error with poisoned
// outputs caught, and KV-cache decoding against the full forward.
#pragma once
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "ouro/model.h"

namespace ouro::test {

// ||out - ref|| / ||ref|| over [begin, begin + n); infinite when out holds a NaN or Inf.
inline double rel_err(const std::vector<float>& out, const std::vector<float>& ref, size_t begin = 0,
                      size_t n = SIZE_MAX) {
  n = std::min(n, ref.size() - begin);
  double num = 0, den = 0;
  for (size_t i = begin; i < begin + n; ++i) {
    if (!std::isfinite(out[i])) return INFINITY;
    const double d = double(out[i]) - double(ref[i]);
    num += d * d;
    den += double(ref[i]) * double(ref[i]);
  }
  return std::sqrt(num / std::max(den, 1e-300));
}

// Feeds tokens (B rows of T) through m.kv_step in chunks of the given sizes (summing to T) and
// checks the logits after each chunk against `full` (B x T x padded vocab, a full forward's) at
// the chunk's last position: the cache, the positions (learned, rope's rotation at the cache
// offset) and the masking of every step.
inline void expect_kv_decoding_matches(GPT2& m, const std::vector<float>& full, const std::vector<int>& tokens,
                                       int B, int T, const std::vector<int>& chunks, double tol) {
  const size_t Vp = m.config().padded_vocab();
  m.kv_reset();
  int pos = 0;
  for (int n : chunks) {
    std::vector<int> chunk;
    for (int b = 0; b < B; ++b)
      for (int t = pos; t < pos + n; ++t) chunk.push_back(tokens[size_t(b) * T + t]);
    m.kv_step(chunk.data(), B, n);
    pos += n;
    const auto got = m.kv_logits();
    for (int b = 0; b < B; ++b) {
      const float* row = full.data() + (size_t(b) * T + pos - 1) * Vp;
      const std::vector<float> r(row, row + Vp);
      const std::vector<float> o(got.begin() + ptrdiff_t(b * Vp), got.begin() + ptrdiff_t((b + 1) * Vp));
      EXPECT_LT(rel_err(o, r), tol) << "row " << b << " position " << pos - 1;
    }
  }
  EXPECT_EQ(pos, T) << "the chunks must cover the sequence";
}

}  // namespace ouro::test
