// The ops interface: every computation the model performs, implemented once per backend
// (cpu: plain C++ + OpenBLAS; cuda/simt: the hand-written kernels). The model owns buffers
// obtained from alloc() and never touches their contents directly, so a device backend plugs
// in without any change to the model code.
//
// Conventions (the llm.c layout, so llm.c weights load as is):
//  - tensors are row-major; B batch, T time, C channels, NH heads, hd = C/NH, V real vocab,
//    Vp padded vocab (multiple of 128), N = B*T rows.
//  - "act" buffers (activations, parameters and their gradients) hold act_dtype() elements;
//    buffers typed float* are fp32 on every backend (losses, LayerNorm stats, AdamW state).
//  - matmul weights are stored (out, in): out[n][o] = sum_i inp[n][i] * w[o][i] + b[o].
//  - parameter gradients ACCUMULATE (+=) so gradient accumulation needs no extra pass; the
//    trainer zeroes them with fill_zero. Activation gradients: see each op.
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ouro/backend.h"
#include "ouro/error.h"

namespace ouro {

enum class DType : uint8_t { F32, BF16 };
inline size_t dtype_size(DType d) { return d == DType::F32 ? 4 : 2; }

// One contiguous parameter tensor inside the flat parameter buffer (element offsets).
struct ParamSegment {
  size_t offset = 0;
  size_t size = 0;
  bool decay = false;  // AdamW weight decay applies (matrices only)
};

struct AdamWArgs {
  float lr = 0, beta1 = 0.9f, beta2 = 0.95f, eps = 1e-8f, weight_decay = 0;
  float grad_scale = 1.0f;  // multiplies every gradient first (clipping coefficient)
  int64_t step = 1;         // 1-based, for bias correction
  // Absolute index, in the whole parameter buffer, of the range's first element. Stochastic
  // rounding to bf16 hashes the absolute index, so a ZeRO shard rounds each weight exactly as the
  // unsharded optimizer does.
  size_t index_base = 0;
};

// What a matmul_forward is for, where a backend has kernels for one use only. decode: a GEMM of
// the decode step of generation (one new token per sequence, a few rows: the device backends
// stream the weights through the skinny-M kernel, kernels/matmul_skinny.cu). Training and
// evaluation pass none, so a micro-batch rounds the same way whatever its row count.
enum class MatmulHint : uint8_t { none, decode };

// How sample_tokens picks a token: temperature <= 0 is greedy (argmax, lowest index on ties);
// top_k <= 0 and top_p >= 1 switch those cuts off.
struct SamplingSpec {
  float temperature = 1.0f;
  int top_k = 0;
  float top_p = 1.0f;
};

class Ops {
 public:
  virtual ~Ops() = default;
  virtual std::string name() const = 0;
  // The hardware, for reports: the GPU's name on cuda, else the backend's name.
  virtual std::string device_name() const { return name(); }
  // The memory's theoretical bandwidth in GB/s (memory clock x bus width), the ceiling of
  // weight-streaming phases such as decoding; 0 where unknown (cpu, the emulator).
  virtual double peak_memory_gbs() const { return 0; }
  virtual DType act_dtype() const = 0;
  // Vendor-library alternates of the hand-written kernels (model.matmul = native|cublas,
  // model.attention = native|cudnn). Backends without them accept only native.
  virtual void select_alternates(MatmulImpl matmul, AttentionImpl attention);

  // ---- memory (device memory for device backends) ----
  virtual void* alloc(size_t bytes) = 0;  // zero-filled
  virtual void dealloc(void* p) = 0;
  virtual void to_device(void* dst, const void* src, size_t bytes) = 0;
  virtual void to_host(void* dst, const void* src, size_t bytes) = 0;
  virtual void fill_zero(void* dst, size_t bytes) = 0;
  virtual void synchronize() {}
  // The stream every op is enqueued on (a cudaStream_t) on device backends, so that other
  // streams (the gradient all-reduce's) can order their work after it; null on the cpu backend,
  // whose ops have finished when they return.
  virtual void* stream() { return nullptr; }
  // An operation the caller enqueues itself on stream() as one op of the step (the data-parallel
  // gradient exchange's collectives and bucket waits, src/train/gradient_sync.cpp): in a graph
  // step it is captured and replayed in its place among the backend's own ops. name and key say
  // what it is and every argument that reaches the device (pointers, counts), as the backend's
  // ops' signatures do: a replay runs it only where the capture saw the same. run(stream) must
  // not make the host wait while the stream captures (the device communicator sees the capture
  // and only enqueues). The cpu backend runs it at once with a null stream.
  virtual void stream_op(const char* /*name*/, const std::vector<uint64_t>& /*key*/,
                         const std::function<void(void* stream)>& run) {
    run(stream());
  }
  // How many times the host has waited for the device so far (stream, device and event
  // synchronisations, copies the host waits for), where the backend can count them: simt (the
  // emulator counts them; see include/ouro/simt/device_model.h). nullopt elsewhere.
  virtual std::optional<uint64_t> host_syncs() const { return std::nullopt; }
  // CUDA Graphs of the training step (train.cuda_graph; device backends, src/device/step_graph.h):
  // every op between begin_graph_step and end_graph_step is captured on the first such step and
  // replayed on the next ones, with host inputs (tokens, targets, per-step optimizer scalars)
  // staged through fixed buffers; whatever differs from the capture runs uncaptured and is
  // captured again. end_graph_step(false) after an error drops the step's graphs.
  virtual bool supports_graphs() const { return false; }
  virtual void begin_graph_step() {}
  virtual void end_graph_step(bool /*ok*/) {}
  struct GraphStats {
    int64_t captured = 0, replayed = 0, uncaptured = 0;  // steps between begin and end
  };
  virtual std::optional<GraphStats> graph_stats() const { return std::nullopt; }
  // What the graph machinery has to say since the last call (captures, fall-backs and why), for
  // the caller's log.
  virtual std::vector<std::string> take_graph_notes() { return {}; }
  // The same for the decode step of generation (GPT2::kv_decode): a graph of its own, so the
  // training step's stays captured while the loop generates. Positions, cache lengths, token ids
  // and the sampler's step reach its kernels through device memory written by the graph's copy
  // nodes, so one capture replays for every token.
  virtual void begin_decode_graph() {}
  virtual void end_decode_graph(bool /*ok*/) {}
  virtual std::optional<GraphStats> decode_graph_stats() const { return std::nullopt; }
  virtual std::vector<std::string> take_decode_graph_notes() { return {}; }
  // Bracket the region an attached profiler should capture (Nsight Systems with
  // --capture-range=cudaProfilerApi); no-ops on backends without one.
  virtual void profiler_start() {}
  virtual void profiler_stop() {}
  // Parameters move between host fp32 (checkpoints) and the backend's act dtype.
  virtual void params_from_host(void* dst, const float* src, size_t n) = 0;
  virtual void params_to_host(float* dst, const void* src, size_t n) = 0;

  // ---- forward / backward ops ----
  // out[b,t,:] = wte[tokens[b,t],:] + wpe[t,:]. tokens live on the host (B*T ints).
  // wpe may be null: no position embedding (model.pos = none | rope), out = wte[tokens].
  virtual void encoder_forward(void* out, const int* tokens, const void* wte, const void* wpe,
                               int B, int T, int C) = 0;
  // dwte/dwpe += the gradient (deterministic: fixed summation order). dwpe may be null (no
  // position embedding): only dwte accumulates.
  virtual void encoder_backward(void* dwte, void* dwpe, const void* dout, const int* tokens,
                                int B, int T, int C) = 0;
  // Rotary position embedding (model.pos = rope), IN PLACE on the q and k parts of the packed
  // qkv (B,T,3C) activation; v is untouched. Row t of each batch is at absolute position
  // pos0 + t (0 in training, the cache position when decoding). The rotate-half convention of
  // Hugging Face Llama / GPT-NeoX: within each head of hd = C/NH (even) dims, the pair
  // (x_i, x_{i+hd/2}), i < hd/2, is rotated by angle pos * theta^(-2i/hd):
  //   x_i' = x_i cos - x_{i+hd/2} sin,   x_{i+hd/2}' = x_{i+hd/2} cos + x_i sin.
  // The angles are evaluated in double, so every backend rotates by the same cos/sin up to
  // their fp32 rounding.
  virtual void rope_forward(void* qkv, int B, int T, int C, int NH, int pos0, double theta) = 0;
  // The backward of rope_forward: the dq, dk parts of dqkv (B,T,3C) are rotated IN PLACE by
  // -angle (the rotation's transpose, which is its inverse); dv is untouched.
  virtual void rope_backward(void* dqkv, int B, int T, int C, int NH, int pos0, double theta) = 0;
  // LayerNorm over C, eps 1e-5; mean/rstd (N floats each) saved for the backward.
  virtual void layernorm_forward(void* out, float* mean, float* rstd, const void* inp,
                                 const void* weight, const void* bias, int N, int C) = 0;
  // dinp += d/dinp; dweight, dbias += (the residual stream's gradient flows through dinp).
  virtual void layernorm_backward(void* dinp, void* dweight, void* dbias, const void* dout,
                                  const void* inp, const void* weight, const float* mean,
                                  const float* rstd, int N, int C) = 0;
  // out (N,OC) = inp (N,C) @ weight(OC,C)^T + bias (bias may be null).
  virtual void matmul_forward(void* out, const void* inp, const void* weight, const void* bias,
                              int N, int C, int OC) = 0;
  // The same with a hint of what it is for (MatmulHint); backends with one kernel for every use
  // (cpu) ignore it.
  virtual void matmul_forward(void* out, const void* inp, const void* weight, const void* bias, int N, int C,
                              int OC, MatmulHint /*hint*/) {
    matmul_forward(out, inp, weight, bias, N, C, OC);
  }
  // dinp (N,C) is OVERWRITTEN; dweight (OC,C) and dbias (OC, may be null) accumulate.
  virtual void matmul_backward(void* dinp, void* dweight, void* dbias, const void* dout,
                               const void* inp, const void* weight, int N, int C, int OC) = 0;
  // Causal self-attention. qkv (B,T,3C) holds q|k|v, each (NH, hd) per row; out (B,T,C).
  // state: attention_state_size(B,T,NH) floats the backward needs (probabilities on cpu,
  // logsumexp on device backends).
  virtual size_t attention_state_size(int B, int T, int NH) const = 0;
  virtual void attention_forward(void* out, float* state, const void* qkv, int B, int T, int C,
                                 int NH) = 0;
  // dqkv (B,T,3C) is OVERWRITTEN.
  virtual void attention_backward(void* dqkv, const void* dout, const void* qkv, const void* out,
                                  const float* state, int B, int T, int C, int NH) = 0;
  // Fusions a backend may implement in one pass (defaults: the two ops, the same results).
  // residual = a + b, then out = LayerNorm(residual) as layernorm_forward.
  virtual void residual_layernorm_forward(void* residual, void* out, float* mean, float* rstd,
                                          const void* a, const void* b, const void* weight,
                                          const void* bias, int N, int C) {
    residual_forward(residual, a, b, static_cast<size_t>(N) * C);
    layernorm_forward(out, mean, rstd, residual, weight, bias, N, C);
  }
  // pre_gelu (N,OC) = inp @ weight^T + bias, then out = gelu(pre_gelu).
  virtual void matmul_gelu_forward(void* out, void* pre_gelu, const void* inp, const void* weight,
                                   const void* bias, int N, int C, int OC) {
    matmul_gelu_forward(out, pre_gelu, inp, weight, bias, N, C, OC, MatmulHint::none);
  }
  virtual void matmul_gelu_forward(void* out, void* pre_gelu, const void* inp, const void* weight,
                                   const void* bias, int N, int C, int OC, MatmulHint hint) {
    matmul_forward(pre_gelu, inp, weight, bias, N, C, OC, hint);
    gelu_forward(out, pre_gelu, static_cast<size_t>(N) * OC);
  }
  // GELU, tanh approximation.
  virtual void gelu_forward(void* out, const void* inp, size_t n) = 0;
  // dinp is OVERWRITTEN with gelu'(inp) * dout (dinp may alias dout).
  virtual void gelu_backward(void* dinp, const void* inp, const void* dout, size_t n) = 0;
  virtual void residual_forward(void* out, const void* a, const void* b, size_t n) = 0;
  // dst += src
  virtual void add_inplace(void* dst, const void* src, size_t n) = 0;

  // Fused classifier over logits (N, Vp): losses[n] = -log softmax(logits[n, :V])[targets[n]];
  // when dloss != 0, logits are REPLACED by dlogits = (softmax - onehot) * dloss over :V and 0
  // over the padding. targets on the host; a target < 0 is ignored (loss 0, no gradient).
  virtual void classifier(void* logits, float* losses, const int* targets, int N, int V, int Vp,
                          float dloss) = 0;
  // Sum of squares of n act-dtype elements, accumulated in double.
  virtual double sum_squares(const void* x, size_t n) = 0;
  // The same into backend memory (`out`: one double inside a buffer from alloc) with no round
  // trip to the host: read later together with other results in one copy (GPT2::step_readback).
  virtual void sum_squares_into(double* out, const void* x, size_t n) {
    const double v = sum_squares(x, n);
    to_device(out, &v, sizeof v);
  }
  // AdamW over every segment of the flat parameter buffer in one call. master is the fp32 copy
  // of the weights (null when act dtype is fp32: params are then updated directly).
  virtual void adamw(void* params, float* master, const void* grads, float* m, float* v,
                     const std::vector<ParamSegment>& segments, const AdamWArgs& args) = 0;

  // ---- inference with a KV cache ----
  // qkv (B,Tn,3C) for Tn new tokens at positions pos0..pos0+Tn-1. Their k,v are written into
  // kcache/vcache (B, Tmax, C); out (B,Tn,C) attends causally over cache positions < pos+1.
  virtual void attention_kv(void* out, const void* qkv, void* kcache, void* vcache, int B, int Tn,
                            int pos0, int Tmax, int C, int NH) = 0;
  // Positions variant of encoder_forward for decoding: out[b,t] = wte[tok] + wpe[pos0 + t]
  // (wpe may be null, as for encoder_forward).
  virtual void encoder_forward_at(void* out, const int* tokens, const void* wte, const void* wpe,
                                  int B, int Tn, int pos0, int C) = 0;

  // ---- sampling ----
  // Draws tokens[b] from row b of logits (act dtype, rows row_stride elements apart) over the
  // real vocabulary [0, V), and logprobs[b] = log softmax(row[:V])[tokens[b]] at temperature 1
  // (logprobs may be null). tokens and logprobs are host arrays of B: only they cross to the
  // host. Row b's uniform is a function of (row_seeds[b], step) alone, so a row's draw does not
  // depend on its batch-mates. The random streams are the backend's own (cpu: splitmix64 of the
  // pair; device: Philox): greedy agrees across backends up to the logits' precision, sampled
  // tokens do not. A row holding a NaN, or with no logit above -inf, has nothing to draw from:
  // an Error naming the row. +inf logits share all the probability (greedy: the first of them),
  // -inf logits are never drawn.
  virtual void sample_tokens(int* tokens, float* logprobs, const void* logits, int B, int V,
                             size_t row_stride, const SamplingSpec& spec,
                             const uint64_t* row_seeds, uint64_t step) = 0;
};

inline void Ops::select_alternates(MatmulImpl matmul, AttentionImpl attention) {
  OURO_CHECK(matmul == MatmulImpl::native, "model.matmul = {}: the {} backend has only its native matmul "
             "(cuBLASLt needs --device cuda)", name_of(matmul), name());
  OURO_CHECK(attention == AttentionImpl::native, "model.attention = {}: the {} backend has only its native "
             "attention (cuDNN needs --device cuda)", name_of(attention), name());
}

// Backends by name: "cpu" (always), and the device backend linked into the binary: "cuda" (the
// kernels built by nvcc) or "simt" (the same kernels on the SIMT emulator). One binary holds at
// most one of the two: the emulator serves the CUDA runtime API under the same names.
std::unique_ptr<Ops> make_ops(Device device);  // run.device, parsed by the config
std::unique_ptr<Ops> make_ops(const std::string& device);  // a --device flag: parse_device, then the above
// The device named `name`, or an error listing this binary's devices.
Device parse_device(const std::string& name);
std::vector<std::string> available_devices();
// Called by a device backend's registration object (src/device/device_ops.cu).
void register_device_backend(const std::string& name, std::unique_ptr<Ops> (*factory)());

}  // namespace ouro
