// GPT-2 (pre-LayerNorm, tanh GELU, tied embeddings), written once against ouro::Ops, with a
// choice of position encoding: GPT-2's learned absolute embeddings (wpe), none at all (NoPE), or
// rotary embeddings on q and k (RoPE). Parameters live in one flat buffer in llm.c's order and
// layout, so llm.c model files load by a straight copy and the optimizer runs over the buffer in
// one call; the none and rope layouts are the same less the wpe tensor.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "ouro/model_shape.h"
#include "ouro/ops.h"

namespace ouro {

// Elements [begin, end) of the flat parameter buffer (and of the gradient buffer, same layout).
struct ParamRange {
  size_t begin = 0, end = 0;
  size_t size() const { return end - begin; }
};

// Told by forward_backward which gradient ranges are final: once after each layer's backward
// (that layer's 12 slices of the stacked tensors, in buffer order) and once at the end (wte,
// which the classifier and the encoder both add into, wpe if present, lnfw, lnfb). "Final" means
// final once the work enqueued so far on the backend's stream completes: device callers order
// their own work after it (an event); the cpu backend has finished it by the call.
using GradReadyHook = std::function<void(const std::vector<ParamRange>&)>;

// How a GPT2 keeps its activations (GPT2::set_activation_options, GPT2::plan_memory).
struct ActivationOptions {
  // The LM head and the loss run over chunks of this many token rows (training and
  // evaluation: the logits of one chunk exist at a time, never N x Vp). 0 picks a chunk the
  // size of the backward's dfch buffer, whose memory it shares.
  int loss_rows = 0;
  // Keep no residual2 (the stream after attention) per layer: the backward recomputes it with
  // the attention projection's GEMM again, ~3% more FLOPs per step for N x C activations per
  // layer (what lets a larger micro-batch fit; train.recompute_residual).
  bool recompute_residual = false;
};

class GPT2 {
 public:
  GPT2(const GPT2Config& cfg, Ops& ops, int max_batch, int max_T);
  ~GPT2();
  GPT2(const GPT2&) = delete;
  GPT2& operator=(const GPT2&) = delete;

  const GPT2Config& config() const { return cfg_; }
  size_t num_params() const { return num_params_; }
  const std::vector<ParamTensor>& layout() const { return layout_; }
  Ops& ops() { return ops_; }

  void set_params(const std::vector<float>& host);  // fp32 host -> backend
  std::vector<float> get_params() const;             // backend -> fp32 host
  std::vector<float> get_grads() const;

  // Forward over tokens (B,T) with targets (B,T) (host ints; a target < 0 is ignored).
  // Returns the mean loss over counted targets. With backward=true the gradient of
  // loss * grad_weight is accumulated into the parameter gradients.
  float forward_backward(const int* tokens, const int* targets, int B, int T, float grad_weight);
  float forward(const int* tokens, const int* targets, int B, int T);  // loss only
  // A training step without waiting for the device (issue 15): forward_backward_deferred is
  // forward_backward whose loss stays in backend memory; step_readback then reads, in ONE copy
  // (one host synchronisation per optimizer step), the mean losses of the micro-steps deferred
  // since the last readback (in order) and the gradient's sum of squares over each range.
  // Bitwise the same losses and sums as forward_backward and grad_sum_squares.
  void forward_backward_deferred(const int* tokens, const int* targets, int B, int T, float grad_weight);
  struct StepReadback {
    std::vector<float> losses;        // one per deferred micro-step
    std::vector<double> sum_squares;  // one per range
  };
  StepReadback step_readback(const std::vector<ParamRange>& grad_ranges);
  // Called during every later forward_backward (an empty hook: none). The trainer sets it on
  // the last micro-step of gradient accumulation to average gradients while the backward runs.
  void set_grad_ready_hook(GradReadyHook hook) { grad_ready_ = std::move(hook); }
  // Per-position losses (B*T) of the last forward with targets (0 where a target was ignored).
  std::vector<float> last_losses(int B, int T) const;
  // Logits of the last forward (B,T,Vp) as fp32 on the host; only valid after forward_logits.
  std::vector<float> forward_logits(const int* tokens, int B, int T);

  // How the activations are kept: set before the first forward (fixed once they exist).
  void set_activation_options(const ActivationOptions& o);

  // Bytes a model of this shape holds for training at micro-batch B x T on `ops` (planning
  // only: nothing is allocated). Activations: the arena (every activation, activation gradient
  // and the loss chunk). Workspace: the model's other buffers during training (the loss
  // readback); the backend's own scratch (GEMM workspace, LayerNorm partials) is not included.
  struct MemoryPlan {
    size_t activations = 0, params = 0, master = 0, grads = 0, optimizer = 0, workspace = 0;
    int loss_rows = 0;
    size_t total() const { return activations + params + master + grads + optimizer + workspace; }
  };
  static MemoryPlan plan_memory(const GPT2Config& cfg, const Ops& ops, int B, int T,
                                const ActivationOptions& options = {});
  MemoryPlan memory_plan() const;  // this model's (its max batch), as plan_memory

  void zero_grad();
  double grad_norm();  // global L2 norm of the parameter gradients
  // Sum of squares of gradient elements [begin, end), accumulated in double.
  double grad_sum_squares(size_t begin, size_t end);

  // The optimizer updates parameter elements [begin, end) and keeps AdamW moments for that
  // range only (ZeRO-1 gives each rank its shard); the default is every parameter. Set it
  // before the first step or before set_adam_state.
  void set_optimizer_range(size_t begin, size_t end);
  void adamw_step(const AdamWArgs& args);
  // The moments of the optimizer range.
  std::vector<float> get_adam_m() const;
  std::vector<float> get_adam_v() const;
  void set_adam_state(const std::vector<float>& m, const std::vector<float>& v);

  // Backend buffers of the parameters and their gradients (act dtype), for collectives.
  void* params_data();
  void* grads_data();
  // The fp32 master weights on the backend (the update's source of truth where the working
  // weights are bf16); null on the fp32 cpu backend, whose weights are their own masters.
  float* master_data();

  // ---- incremental inference with a KV cache (batch B <= max_batch, positions < max_T) ----
  void kv_reset();
  // Feeds Tn tokens per row at the current position. The logits stay in the backend's memory
  // for kv_sample (decoding copies only the drawn tokens to the host) or kv_logits.
  void kv_step(const int* tokens, int B, int Tn);
  // The last kv_step's logits at its last position, (B, Vp) fp32 on the host.
  std::vector<float> kv_logits() const;
  // Draws one token per row of the last kv_step from its last position (Ops::sample_tokens:
  // row b's uniform is a function of (row_seeds[b], step)); logprobs may be null. tokens,
  // logprobs and row_seeds are host arrays of the last kv_step's B.
  void kv_sample(int* tokens, float* logprobs, const SamplingSpec& spec, const uint64_t* row_seeds,
                 uint64_t step);
  // One token of generation: kv_step(tokens, B, 1), then kv_sample into next (and logprobs) as
  // above. With graph on a backend that has CUDA Graphs (Ops::supports_graphs), the step runs in
  // the backend's decode graph (Ops::begin_decode_graph): its first call runs as is (it sizes the
  // buffers), the second is captured, later ones replay the capture; whatever cannot be captured
  // runs uncaptured (logged). Bitwise the same tokens and log-probs either way. tokens and next
  // may be the same array.
  void kv_decode(const int* tokens, int B, int* next, float* logprobs, const SamplingSpec& spec,
                 const uint64_t* row_seeds, uint64_t step, bool graph);
  int kv_pos() const { return kv_pos_; }

  struct Impl;  // the backend buffers (opaque)

 private:
  float backward_pass(const int* tokens, const int* targets, int B, int T, float grad_weight, bool deferred);
  GPT2Config cfg_;
  Ops& ops_;
  std::vector<ParamTensor> layout_;
  size_t num_params_ = 0;
  int kv_pos_ = 0;
  GradReadyHook grad_ready_;
  std::unique_ptr<Impl> impl_;
};

// "activations 1234.5 MiB (arena; ...), parameters ..., total ...": ouro train's start line.
std::string describe_memory_plan(const GPT2::MemoryPlan& m);
// The largest micro-batch B whose plan_memory(cfg, ops, B, T, o).total() fits budget_bytes (0: none).
int largest_batch_that_fits(const GPT2Config& cfg, const Ops& ops, int T, size_t budget_bytes,
                            const ActivationOptions& o = {});

}  // namespace ouro
