// AdamW, mirroring torch.optim.AdamW (single-tensor path) operation by operation so that a
// run can be compared against PyTorch: decoupled decay first, then the bias-corrected step
// computed as step_size * m / (sqrt(v) / sqrt(bias_correction2) + eps).
#include <cmath>

#include "cpu/cpu_ops.h"

namespace ouro {

void CpuOps::adamw(void* params_, float* master, const void* grads_, float* m, float* v,
                   const std::vector<ParamSegment>& segments, const AdamWArgs& args) {
  float* params = static_cast<float*>(params_);
  const float* grads = static_cast<const float*>(grads_);
  // torch computes these scalars in Python (double) and the tensor ops cast them to float.
  const double step = double(args.step);
  const double bc1 = 1.0 - std::pow(double(args.beta1), step);
  const double bc2 = 1.0 - std::pow(double(args.beta2), step);
  const float step_size = float(double(args.lr) / bc1);
  const float bc2_sqrt = float(std::sqrt(bc2));
  const float eps = args.eps, gs = args.grad_scale, b2 = args.beta2;
  // torch: exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
  const float w1 = float(1.0 - double(args.beta1));
  const float w2 = float(1.0 - double(args.beta2));
  // With fp32 acts there is no master copy: the parameters themselves are the weights. A
  // master copy, when given, is updated and then copied into params.
  float* w = master ? master : params;

  for (const ParamSegment& seg : segments) {
    const float wd = seg.decay ? args.weight_decay : 0.0f;
    const float decay = float(1.0 - double(args.lr) * double(wd));
    const size_t end = seg.offset + seg.size;
    // The decay is a pass of its own, as torch's p.mul_(): in one vectorized loop the compiler
    // would fuse p * decay + update into an fma and round once where torch rounds twice.
    if (decay != 1.0f) {
#pragma omp parallel for schedule(static) if(seg.size >= kParallelMin)
      for (size_t i = seg.offset; i < end; i++) w[i] *= decay;
    }
#pragma omp parallel for schedule(static) if(seg.size >= kParallelMin)
    for (size_t i = seg.offset; i < end; i++) {
      float g = grads[i] * gs;
      float p = w[i];
      // lerp as ATen evaluates it (its two branches keep the result exact at both ends).
      float mi = w1 < 0.5f ? m[i] + w1 * (g - m[i]) : g - (g - m[i]) * (1.0f - w1);
      float vi = v[i] * b2 + w2 * g * g;
      float denom = std::sqrt(vi) / bc2_sqrt + eps;
      p = p + (-step_size * mi) / denom;  // addcdiv: self + value * t1 / t2
      m[i] = mi;
      v[i] = vi;
      w[i] = p;
      if (master) params[i] = p;
    }
  }
}

}  // namespace ouro
