// Fused softmax cross-entropy over the padded logits: loss per row, and (when dloss != 0) the
// logits replaced in place by their gradient. Columns [V, Vp) are padding: never part of the
// softmax, and their gradient is exactly zero.
#include <algorithm>
#include <cmath>

#include "cpu/cpu_ops.h"
#include "ouro/error.h"

namespace ouro {

void CpuOps::classifier(void* logits_, float* losses, const int* targets, int N, int V, int Vp,
                        float dloss) {
  float* logits = static_cast<float*>(logits_);
  const bool backward = dloss != 0.0f;
  for (int n = 0; n < N; n++)  // checked up front: an exception cannot leave a parallel loop
    OURO_CHECK(targets[n] < V, "classifier: target {} at row {} is outside the vocab of {}",
               targets[n], n, V);
#pragma omp parallel for schedule(static) if(size_t(N) * V >= kParallelMin)
  for (int n = 0; n < N; n++) {
    float* x = logits + size_t(n) * Vp;
    const int target = targets[n];
    if (target < 0) {  // ignored position: no loss, no gradient
      losses[n] = 0.0f;
      if (backward)
        for (int i = 0; i < Vp; i++) x[i] = 0.0f;
      continue;
    }
    float maxv = x[0];
    for (int i = 1; i < V; i++) maxv = std::max(maxv, x[i]);
    // Float exponentials (the bulk of the work), summed in double: V ~ 50k terms.
    const float target_logit = x[target] - maxv;
    double sum = 0.0;
    if (!backward) {
      for (int i = 0; i < V; i++) sum += std::exp(x[i] - maxv);
      losses[n] = float(std::log(sum) - double(target_logit));
      continue;
    }
    // The row is overwritten anyway: keep each exponential in place so it is computed once.
    for (int i = 0; i < V; i++) sum += x[i] = std::exp(x[i] - maxv);
    losses[n] = float(std::log(sum) - double(target_logit));
    const float inv = float(1.0 / sum);
    for (int i = 0; i < V; i++) x[i] = x[i] * inv * dloss;
    x[target] -= dloss;
    for (int i = V; i < Vp; i++) x[i] = 0.0f;
  }
}

}  // namespace ouro
