// Token + position embedding, forward and backward.
#include <algorithm>
#include <numeric>
#include <vector>

#include "cpu/cpu_ops.h"

namespace ouro {

// out[b,t] = wte[tokens[b,t]] + wpe[pos0 + t]; shared by training (pos0 = 0) and decoding.
// wpe null (model.pos = none | rope): out[b,t] = wte[tokens[b,t]].
static void encode(float* out, const int* tokens, const float* wte, const float* wpe, int B,
                   int T, int pos0, int C) {
#pragma omp parallel for collapse(2) schedule(static) if(size_t(B) * T * C >= kParallelMin)
  for (int b = 0; b < B; b++) {
    for (int t = 0; t < T; t++) {
      size_t n = size_t(b) * T + t;
      float* o = out + n * C;
      const float* we = wte + size_t(tokens[n]) * C;
      if (!wpe) {
        std::copy(we, we + C, o);
        continue;
      }
      const float* pe = wpe + size_t(pos0 + t) * C;
      for (int c = 0; c < C; c++) o[c] = we[c] + pe[c];
    }
  }
}

void CpuOps::encoder_forward(void* out, const int* tokens, const void* wte, const void* wpe,
                             int B, int T, int C) {
  encode(static_cast<float*>(out), tokens, static_cast<const float*>(wte),
         static_cast<const float*>(wpe), B, T, 0, C);
}

void CpuOps::encoder_forward_at(void* out, const int* tokens, const void* wte, const void* wpe,
                                int B, int Tn, int pos0, int C) {
  encode(static_cast<float*>(out), tokens, static_cast<const float*>(wte),
         static_cast<const float*>(wpe), B, Tn, pos0, C);
}

// Deterministic scatter-add without atomics: rows are grouped by token (a stable sort keeps
// them in row order), each token's group is one task, and within it rows are added in row
// order. dwpe[t] sums over b in order, one task per t. Neither depends on the thread count.
void CpuOps::encoder_backward(void* dwte_, void* dwpe_, const void* dout_, const int* tokens,
                              int B, int T, int C) {
  float* dwte = static_cast<float*>(dwte_);
  float* dwpe = static_cast<float*>(dwpe_);
  const float* dout = static_cast<const float*>(dout_);
  const size_t N = size_t(B) * T;

  std::vector<size_t> order(N);
  std::iota(order.begin(), order.end(), size_t{0});
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return tokens[a] < tokens[b]; });
  std::vector<size_t> group_start;  // indices into order where a new token begins
  for (size_t i = 0; i < N; i++)
    if (i == 0 || tokens[order[i]] != tokens[order[i - 1]]) group_start.push_back(i);
  group_start.push_back(N);

  const size_t ngroups = group_start.size() - 1;
#pragma omp parallel for schedule(dynamic, 16)
  for (size_t g = 0; g < ngroups; g++) {
    float* dst = dwte + size_t(tokens[order[group_start[g]]]) * C;
    for (size_t i = group_start[g]; i < group_start[g + 1]; i++) {
      const float* src = dout + order[i] * C;
      for (int c = 0; c < C; c++) dst[c] += src[c];
    }
  }

  if (!dwpe) return;  // no position embedding
#pragma omp parallel for schedule(static) if(size_t(T) * C >= kParallelMin)
  for (int t = 0; t < T; t++) {
    float* dst = dwpe + size_t(t) * C;
    for (int b = 0; b < B; b++) {
      const float* src = dout + (size_t(b) * T + t) * C;
      for (int c = 0; c < C; c++) dst[c] += src[c];
    }
  }
}

}  // namespace ouro
