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

#include "ouro/ops.h"

namespace ouro {

// How the model knows where a token is (config key model.pos).
//  learned: GPT-2's wpe (maxT, C) added to the token embedding; cannot represent a position it
//           was never trained on.
//  none:    no position signal at all (NoPE): the causal mask alone lets the model infer order.
//  rope:    rotary embeddings applied to q and k of every head after the qkv projection
//           (Ops::rope_forward), so attention scores depend on relative positions only.
enum class PosEncoding : uint8_t { learned, none, rope };
// "learned" | "none" | "rope"; anything else is an error naming model.pos.
PosEncoding parse_pos_encoding(const std::string& name);
const char* pos_encoding_name(PosEncoding p);

struct GPT2Config {
  int n_layer = 0;
  int n_head = 0;
  int n_embd = 0;
  int seq_len = 0;     // max sequence length (learned: the number of learned positions)
  int vocab_size = 0;  // real vocabulary
  PosEncoding pos = PosEncoding::learned;
  double rope_theta = 10000.0;  // rope: the base of the rotation frequencies (unused otherwise)
  int padded_vocab() const { return (vocab_size + 127) / 128 * 128; }
  bool has_wpe() const { return pos == PosEncoding::learned; }
  // Equal when the two configs compute the same function on the same parameters: rope_theta
  // counts only for rope (a learned checkpoint loads whatever model.rope_theta says).
  bool operator==(const GPT2Config& o) const {
    return n_layer == o.n_layer && n_head == o.n_head && n_embd == o.n_embd &&
           seq_len == o.seq_len && vocab_size == o.vocab_size && pos == o.pos &&
           (pos != PosEncoding::rope || rope_theta == o.rope_theta);
  }
};
// "L=.. NH=.. C=.. T=.. V=.. pos=.." (rope: theta too), for errors that compare two models.
std::string describe_model(const GPT2Config& cfg);

// Limits on a model's shape. Shapes come from configs, config.json files and llm.c headers, all
// untrusted; each is checked against these before any size is derived from it.
constexpr int kMaxModelDim = 1 << 24;       // n_layer, n_head, n_embd, seq_len, vocab_size each
constexpr uint64_t kMaxModelParams = uint64_t{1} << 40;  // parameters, vocabulary padding included
// What a shape's source calls each dimension, so that errors name the key or field at fault:
// {"model.n_layer", ...} for a config, {"n_layer", ...} for config.json, header fields for llm.c.
struct ModelFieldNames {
  const char* n_layer;
  const char* n_head;
  const char* n_embd;
  const char* seq_len;
  const char* vocab_size;
};
extern const ModelFieldNames kConfigModelFields;  // model.n_layer, ... (the TOML keys)
// Refuses a shape that no run could hold: a dimension <= 0 or above kMaxModelDim, n_embd not a
// multiple of n_head, more than kMaxModelParams parameters, or fp32 weights larger than this
// machine's physical memory. The error starts with `where` and names the fields responsible.
void check_model_shape(const GPT2Config& cfg, const ModelFieldNames& names, const std::string& where);
// Bytes of physical memory on this machine (0 when unknown).
uint64_t physical_memory_bytes();

// The parameter tensors, in buffer order. Per-layer tensors are stacked over layers:
// name        shape
// wte         (Vp, C)
// wpe         (maxT, C)      only with pos = learned: none and rope have no such tensor
// ln1w, ln1b  (L, C)
// qkvw        (L, 3C, C)     qkvb (L, 3C)
// attprojw    (L, C, C)      attprojb (L, C)
// ln2w, ln2b  (L, C)
// fcw         (L, 4C, C)     fcb (L, 4C)
// fcprojw     (L, C, 4C)     fcprojb (L, C)
// lnfw, lnfb  (C)
struct ParamTensor {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0;  // elements from the start of the buffer
  size_t size = 0;    // elements
  bool decay = false; // weight decay applies (2-D per layer: embeddings and matmul weights)
};
// Both fail (never wrap) when a dimension is out of range or the count exceeds kMaxModelParams.
std::vector<ParamTensor> gpt2_param_layout(const GPT2Config& cfg);
size_t gpt2_num_params(const GPT2Config& cfg);  // including vocabulary padding
const ParamTensor& find_param(const std::vector<ParamTensor>& layout, const std::string& name);
// GPT-2's initialisation (normal 0.02, residual projections scaled by 1/sqrt(2L), LayerNorm
// weight 1, biases 0, padded vocabulary rows 0), deterministic from the seed. Host fp32.
std::vector<float> gpt2_init_params(const GPT2Config& cfg, uint64_t seed);
// FLOPs of one training step token (forward + backward), for MFU and benchmarks.
double gpt2_flops_per_token(const GPT2Config& cfg, int T);

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
