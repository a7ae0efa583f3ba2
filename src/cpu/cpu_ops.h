// CpuOps: the reference backend. fp32 throughout, matmuls through OpenBLAS, everything else
// plain loops parallelised with OpenMP. Every op is deterministic: each output element is
// produced by exactly one loop iteration in a fixed order, and the gradient reductions over
// rows (encoder, LayerNorm, bias) run sequentially over rows inside a per-channel task, so the
// result does not even depend on the number of threads.
#pragma once
#include "ouro/ops.h"

namespace ouro {

// Loops with less work than this (elements x inner length) run on the calling thread: waking a
// thread team costs microseconds, and far more when the cores are shared, which dominated
// one-token decoding (measured: 27 vs 1223 new tokens/s for the tiny model on a loaded machine).
// Results do not depend on the choice: every op's summation order is fixed per output element.
inline constexpr size_t kParallelMin = size_t(1) << 15;

class CpuOps : public Ops {
 public:
  std::string name() const override { return "cpu"; }
  DType act_dtype() const override { return DType::F32; }

  void* alloc(size_t bytes) override;
  void dealloc(void* p) override;
  void to_device(void* dst, const void* src, size_t bytes) override;
  void to_host(void* dst, const void* src, size_t bytes) override;
  void fill_zero(void* dst, size_t bytes) override;
  void params_from_host(void* dst, const float* src, size_t n) override;
  void params_to_host(float* dst, const void* src, size_t n) override;

  void encoder_forward(void* out, const int* tokens, const void* wte, const void* wpe, int B,
                       int T, int C) override;
  void encoder_backward(void* dwte, void* dwpe, const void* dout, const int* tokens, int B, int T,
                        int C) override;
  void layernorm_forward(void* out, float* mean, float* rstd, const void* inp, const void* weight,
                         const void* bias, int N, int C) override;
  void layernorm_backward(void* dinp, void* dweight, void* dbias, const void* dout,
                          const void* inp, const void* weight, const float* mean,
                          const float* rstd, int N, int C) override;
  void matmul_forward(void* out, const void* inp, const void* weight, const void* bias, int N,
                      int C, int OC) override;
  void matmul_backward(void* dinp, void* dweight, void* dbias, const void* dout, const void* inp,
                       const void* weight, int N, int C, int OC) override;
  void rope_forward(void* qkv, int B, int T, int C, int NH, int pos0, double theta) override;
  void rope_backward(void* dqkv, int B, int T, int C, int NH, int pos0, double theta) override;
  size_t attention_state_size(int B, int T, int NH) const override;
  void attention_forward(void* out, float* state, const void* qkv, int B, int T, int C,
                         int NH) override;
  void attention_backward(void* dqkv, const void* dout, const void* qkv, const void* out,
                          const float* state, int B, int T, int C, int NH) override;
  void gelu_forward(void* out, const void* inp, size_t n) override;
  void gelu_backward(void* dinp, const void* inp, const void* dout, size_t n) override;
  void residual_forward(void* out, const void* a, const void* b, size_t n) override;
  void add_inplace(void* dst, const void* src, size_t n) override;
  void classifier(void* logits, float* losses, const int* targets, int N, int V, int Vp,
                  float dloss) override;
  double sum_squares(const void* x, size_t n) override;
  void adamw(void* params, float* master, const void* grads, float* m, float* v,
             const std::vector<ParamSegment>& segments, const AdamWArgs& args) override;
  void attention_kv(void* out, const void* qkv, void* kcache, void* vcache, int B, int Tn,
                    int pos0, int Tmax, int C, int NH) override;
  void encoder_forward_at(void* out, const int* tokens, const void* wte, const void* wpe, int B,
                          int Tn, int pos0, int C) override;
  void sample_tokens(int* tokens, float* logprobs, const void* logits, int B, int V,
                     size_t row_stride, const SamplingSpec& spec, const uint64_t* row_seeds,
                     uint64_t step) override;
};

}  // namespace ouro
