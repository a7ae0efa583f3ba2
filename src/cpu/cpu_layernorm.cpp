// LayerNorm over the channel dimension (eps 1e-5, biased variance), forward and backward.
#include <algorithm>
#include <cmath>

#include "cpu/cpu_ops.h"

namespace ouro {

namespace {
constexpr float kEps = 1e-5f;
// Channel block for the parameter-gradient reduction: a task owns a fixed block of channels
// and walks all rows in order, so dweight/dbias sums do not depend on the thread count, while
// each row access stays a contiguous run of floats.
constexpr int kChannelBlock = 32;
}  // namespace

void CpuOps::layernorm_forward(void* out_, float* mean, float* rstd, const void* inp_,
                               const void* weight_, const void* bias_, int N, int C) {
  float* out = static_cast<float*>(out_);
  const float* inp = static_cast<const float*>(inp_);
  const float* weight = static_cast<const float*>(weight_);
  const float* bias = static_cast<const float*>(bias_);
#pragma omp parallel for schedule(static) if(size_t(N) * C >= kParallelMin)
  for (int n = 0; n < N; n++) {
    const float* x = inp + size_t(n) * C;
    // Row statistics in double: cheap next to the rest, and no cancellation in the variance.
    double s = 0.0;
    for (int c = 0; c < C; c++) s += x[c];
    double mu = s / C;
    double ss = 0.0;
    for (int c = 0; c < C; c++) {
      double d = x[c] - mu;
      ss += d * d;
    }
    float m = float(mu);
    float r = float(1.0 / std::sqrt(ss / C + double(kEps)));
    float* o = out + size_t(n) * C;
    for (int c = 0; c < C; c++) o[c] = (x[c] - m) * r * weight[c] + bias[c];
    mean[n] = m;
    rstd[n] = r;
  }
}

// With xhat = (x - mean) * rstd and g = dout * weight:
//   dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)),
//   dweight += sum_n dout * xhat, dbias += sum_n dout.
void CpuOps::layernorm_backward(void* dinp_, void* dweight_, void* dbias_, const void* dout_,
                                const void* inp_, const void* weight_, const float* mean,
                                const float* rstd, int N, int C) {
  float* dinp = static_cast<float*>(dinp_);
  float* dweight = static_cast<float*>(dweight_);
  float* dbias = static_cast<float*>(dbias_);
  const float* dout = static_cast<const float*>(dout_);
  const float* inp = static_cast<const float*>(inp_);
  const float* weight = static_cast<const float*>(weight_);

#pragma omp parallel for schedule(static) if(size_t(N) * C >= kParallelMin)
  for (int n = 0; n < N; n++) {
    const float* x = inp + size_t(n) * C;
    const float* dy = dout + size_t(n) * C;
    float* dx = dinp + size_t(n) * C;
    const float m = mean[n], r = rstd[n];
    float gsum = 0.0f, gxsum = 0.0f;
    for (int c = 0; c < C; c++) {
      float xhat = (x[c] - m) * r;
      float g = dy[c] * weight[c];
      gsum += g;
      gxsum += g * xhat;
    }
    const float gmean = gsum / C, gxmean = gxsum / C;
    for (int c = 0; c < C; c++) {
      float xhat = (x[c] - m) * r;
      float g = dy[c] * weight[c];
      dx[c] += r * (g - gmean - xhat * gxmean);
    }
  }

  const int nblocks = (C + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static) if(size_t(N) * C >= kParallelMin)
  for (int blk = 0; blk < nblocks; blk++) {
    const int c0 = blk * kChannelBlock;
    const int c1 = std::min(C, c0 + kChannelBlock);
    float dw[kChannelBlock] = {}, db[kChannelBlock] = {};
    for (int n = 0; n < N; n++) {
      const float* x = inp + size_t(n) * C;
      const float* dy = dout + size_t(n) * C;
      const float m = mean[n], r = rstd[n];
      for (int c = c0; c < c1; c++) {
        dw[c - c0] += dy[c] * ((x[c] - m) * r);
        db[c - c0] += dy[c];
      }
    }
    for (int c = c0; c < c1; c++) {
      dweight[c] += dw[c - c0];
      dbias[c] += db[c - c0];
    }
  }
}

}  // namespace ouro
