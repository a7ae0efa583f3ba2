// Elementwise ops (GELU, residual add) and the gradient-norm reduction. GELU's tanh is
// cpu_math::tanh_f32: the loops vectorize (a libm call per element would not).
#include <cmath>
#include <vector>

#include "cpu/cpu_math.h"
#include "cpu/cpu_ops.h"

namespace ouro {

namespace {
constexpr float kGeluScale = 0.7978845608028654f;  // sqrt(2/pi)
constexpr float kGeluCubic = 0.044715f;
}  // namespace

void CpuOps::gelu_forward(void* out_, const void* inp_, size_t n) {
  float* out = static_cast<float*>(out_);
  const float* inp = static_cast<const float*>(inp_);
#pragma omp parallel for schedule(static) if(n >= kParallelMin)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float u = kGeluScale * (x + kGeluCubic * x * x * x);
    out[i] = 0.5f * x * (1.0f + cpu_math::tanh_f32(u));
  }
}

// d/dx 0.5x(1+tanh(u)) = 0.5(1+tanh(u)) + 0.5x sech^2(u) u'. dinp may alias dout: each element
// is read before it is written, and by the same iteration.
void CpuOps::gelu_backward(void* dinp_, const void* inp_, const void* dout_, size_t n) {
  float* dinp = static_cast<float*>(dinp_);
  const float* inp = static_cast<const float*>(inp_);
  const float* dout = static_cast<const float*>(dout_);
#pragma omp parallel for schedule(static) if(n >= kParallelMin)
  for (size_t i = 0; i < n; i++) {
    float x = inp[i];
    float u = kGeluScale * (x + kGeluCubic * x * x * x);
    float th = cpu_math::tanh_f32(u);
    float sech2 = 1.0f - th * th;
    float du = kGeluScale * (1.0f + 3.0f * kGeluCubic * x * x);
    float grad = 0.5f * (1.0f + th) + 0.5f * x * sech2 * du;
    dinp[i] = grad * dout[i];
  }
}

void CpuOps::residual_forward(void* out_, const void* a_, const void* b_, size_t n) {
  float* out = static_cast<float*>(out_);
  const float* a = static_cast<const float*>(a_);
  const float* b = static_cast<const float*>(b_);
#pragma omp parallel for schedule(static) if(n >= kParallelMin)
  for (size_t i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void CpuOps::add_inplace(void* dst_, const void* src_, size_t n) {
  float* dst = static_cast<float*>(dst_);
  const float* src = static_cast<const float*>(src_);
#pragma omp parallel for schedule(static) if(n >= kParallelMin)
  for (size_t i = 0; i < n; i++) dst[i] += src[i];
}

// Fixed-size chunks summed in chunk order: the result depends on n only, not on the thread
// count (an OpenMP reduction clause would combine partial sums in an unspecified order).
double CpuOps::sum_squares(const void* x_, size_t n) {
  const float* x = static_cast<const float*>(x_);
  constexpr size_t kChunk = 1 << 16;
  size_t nchunks = (n + kChunk - 1) / kChunk;
  std::vector<double> partial(nchunks, 0.0);
#pragma omp parallel for schedule(static) if(n >= kParallelMin)
  for (size_t c = 0; c < nchunks; c++) {
    size_t end = std::min(n, (c + 1) * kChunk);
    double s = 0.0;
    for (size_t i = c * kChunk; i < end; i++) s += double(x[i]) * double(x[i]);
    partial[c] = s;
  }
  double total = 0.0;
  for (double s : partial) total += s;
  return total;
}

}  // namespace ouro
