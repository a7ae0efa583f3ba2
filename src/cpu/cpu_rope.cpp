// Rotary position embedding (rotate-half convention of Hugging Face Llama / GPT-NeoX) on the q
// and k parts of the packed qkv activation, in place; see Ops::rope_forward for the formula.
//
// The cos/sin of each (position, frequency) are evaluated in double and rounded to fp32 once, as
// the device kernels do, so the backends differ only by their activation precision. The
// backward is the same rotation with the sine negated: a rotation's transpose is its inverse.
#include <cmath>
#include <vector>

#include "cpu/cpu_ops.h"
#include "ouro/error.h"

namespace ouro {

namespace {

void check_rope_args(const char* who, const void* qkv, int B, int T, int C, int NH, int pos0,
                     double theta) {
  OURO_CHECK(qkv != nullptr && B > 0 && T > 0 && C > 0 && NH > 0 && C % NH == 0,
             "{}: bad shape B={} T={} C={} NH={}", who, B, T, C, NH);
  OURO_CHECK((C / NH) % 2 == 0, "{}: head dimension {} (C={} / NH={}) must be even", who, C / NH,
             C, NH);
  OURO_CHECK(pos0 >= 0, "{}: pos0 must be >= 0, got {}", who, pos0);
  OURO_CHECK(theta > 1 && std::isfinite(theta), "{}: theta must be finite and > 1, got {}", who,
             theta);
}

// sign = +1 rotates by +angle (forward), -1 by -angle (backward). The cos/sin of the T
// positions x hd/2 frequencies are tabulated first (the same double expressions, so the same
// bits as evaluating them per row): B rows share each position.
void rotate(float* qkv, int B, int T, int C, int NH, int pos0, double theta, float sign) {
  const int hd = C / NH, half = hd / 2;
  const size_t rows = size_t(B) * T;
  std::vector<float> cs(size_t(T) * half), sn(size_t(T) * half);
  for (int i = 0; i < half; i++) {
    // inv_freq_i = theta^(-2i/hd); the angle is the same for q and k of every head.
    const double inv_freq = std::pow(theta, -2.0 * i / hd);
    for (int t = 0; t < T; t++) {
      const double angle = (double(pos0) + double(t)) * inv_freq;
      cs[size_t(t) * half + i] = float(std::cos(angle));
      sn[size_t(t) * half + i] = sign * float(std::sin(angle));
    }
  }
#pragma omp parallel for schedule(static) if(rows * C >= kParallelMin)
  for (size_t n = 0; n < rows; n++) {
    const float* c_row = cs.data() + (n % size_t(T)) * half;
    const float* s_row = sn.data() + (n % size_t(T)) * half;
    float* row = qkv + n * 3 * size_t(C);
    for (int part = 0; part < 2; part++) {  // q, then k
      for (int h = 0; h < NH; h++) {
        float* x = row + size_t(part) * C + size_t(h) * hd;
        for (int i = 0; i < half; i++) {
          const float a = x[i], b = x[i + half];
          x[i] = a * c_row[i] - b * s_row[i];
          x[i + half] = b * c_row[i] + a * s_row[i];
        }
      }
    }
  }
}

}  // namespace

void CpuOps::rope_forward(void* qkv, int B, int T, int C, int NH, int pos0, double theta) {
  check_rope_args("rope_forward", qkv, B, T, C, NH, pos0, theta);
  rotate(static_cast<float*>(qkv), B, T, C, NH, pos0, theta, 1.0f);
}

void CpuOps::rope_backward(void* dqkv, int B, int T, int C, int NH, int pos0, double theta) {
  check_rope_args("rope_backward", dqkv, B, T, C, NH, pos0, theta);
  rotate(static_cast<float*>(dqkv), B, T, C, NH, pos0, theta, -1.0f);
}

}  // namespace ouro
