// Linear layers through OpenBLAS. Weights are stored (out, in), so the forward multiplies by
// the transposed weight. OpenBLAS splits gemm over the output dimensions, never over the
// reduction, so results are reproducible run to run.
#include <cblas.h>

#include <algorithm>

#include "cpu/cpu_ops.h"

namespace ouro {

namespace {
constexpr int kChannelBlock = 32;  // see the bias reduction below
}

void CpuOps::matmul_forward(void* out_, const void* inp_, const void* weight_, const void* bias_,
                            int N, int C, int OC) {
  float* out = static_cast<float*>(out_);
  const float* inp = static_cast<const float*>(inp_);
  const float* weight = static_cast<const float*>(weight_);
  const float* bias = static_cast<const float*>(bias_);
  // Seed out with the bias (or zero) and accumulate with beta = 1: one pass fewer than adding
  // the bias afterwards, and the output never depends on what out held before.
#pragma omp parallel for schedule(static) if(size_t(N) * OC >= kParallelMin)
  for (int n = 0; n < N; n++) {
    float* o = out + size_t(n) * OC;
    if (bias) {
      for (int j = 0; j < OC; j++) o[j] = bias[j];
    } else {
      std::fill(o, o + OC, 0.0f);
    }
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, OC, C, 1.0f, inp, C, weight, C, 1.0f,
              out, OC);
}

void CpuOps::matmul_backward(void* dinp_, void* dweight_, void* dbias_, const void* dout_,
                             const void* inp_, const void* weight_, int N, int C, int OC) {
  float* dinp = static_cast<float*>(dinp_);
  float* dweight = static_cast<float*>(dweight_);
  float* dbias = static_cast<float*>(dbias_);
  const float* dout = static_cast<const float*>(dout_);
  const float* inp = static_cast<const float*>(inp_);
  const float* weight = static_cast<const float*>(weight_);

  // dinp (N,C) = dout (N,OC) @ weight (OC,C), overwritten. beta = 0 never reads dinp.
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, C, OC, 1.0f, dout, OC, weight, C,
              0.0f, dinp, C);
  // dweight (OC,C) += dout^T (OC,N) @ inp (N,C).
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OC, C, N, 1.0f, dout, OC, inp, C, 1.0f,
              dweight, C);
  if (!dbias) return;
  // dbias += column sums of dout: a task per block of output channels walks the rows in order,
  // so the sums do not depend on the thread count.
  const int nblocks = (OC + kChannelBlock - 1) / kChannelBlock;
#pragma omp parallel for schedule(static) if(size_t(N) * OC >= kParallelMin)
  for (int blk = 0; blk < nblocks; blk++) {
    const int o0 = blk * kChannelBlock;
    const int o1 = std::min(OC, o0 + kChannelBlock);
    float acc[kChannelBlock] = {};
    for (int n = 0; n < N; n++) {
      const float* dy = dout + size_t(n) * OC;
      for (int o = o0; o < o1; o++) acc[o - o0] += dy[o];
    }
    for (int o = o0; o < o1; o++) dbias[o] += acc[o - o0];
  }
}

}  // namespace ouro
