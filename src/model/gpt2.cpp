// GPT-2 forward, backward, optimizer step and KV-cache inference over ouro::Ops.
// Position encodings (GPT2Config::pos): learned adds wpe in the encoder; none adds nothing; rope
// rotates q and k in place inside each layer's qkv activation right after the qkv projection
// (Ops::rope_forward), at absolute positions 0..T-1 in training and kv_pos.. when decoding.
// Buffers are allocated lazily (the activation arena on the first forward, gradients on the
// first backward, AdamW state on the first step, the KV caches on the first decode), so
// `ouro sample` never pays for parameter gradients or optimizer state.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "common/log.h"
#include "common/trace.h"
#include "model/arena.h"
#include "ouro/error.h"
#include "ouro/model.h"

namespace ouro {

namespace {
// Pointer to element `i` of an untyped backend buffer.
inline void* element_at(void* base, size_t i, size_t esz) { return static_cast<char*>(base) + i * esz; }
inline const void* element_at(const void* base, size_t i, size_t esz) {
  return static_cast<const char*>(base) + i * esz;
}
}  // namespace

// Activations of one layer saved by the forward for the backward. The projections' outputs
// (attproj, fcproj) are not saved: only the residual add that follows reads them. Nor is
// gelu(fch): the backward recomputes it from fch (one elementwise pass instead of 4 N C
// elements per layer kept from the forward to the backward).
// Nor are the LayerNorms' outputs: the backward recomputes ln1, ln2 from the saved residual
// stream with the same kernel (layernorm_forward on the bf16 residual that the fused
// residual_layernorm_forward normalised: bitwise the same values, mean and rstd included).
struct LayerActs {
  Tensor ln1_mean, ln1_rstd, qkv, atty, att_state, residual2;
  Tensor ln2_mean, ln2_rstd, fch, residual3;
};

struct GPT2::Impl {
  size_t esz = 4;
  int max_B = 0, max_T = 0;
  Buffer params, master, grads, adam_m, adam_v;  // one block each
  // Every activation and activation gradient, carved from one arena planned for (max_B, max_T)
  // on the first forward (ensure_activations).
  Buffer activations;
  // forward activations
  Tensor encoded, lnf, lnf_mean, lnf_rstd, losses;
  std::vector<LayerActs> layers;
  std::vector<std::string> layer_names;  // NVTX range names, "layer N" (nested inside "backward")
  // Forward scratch shared by all layers: `ln` holds a LayerNorm's output until its GEMM reads
  // it, `proj` a projection's output until the residual add reads it, `gelu` the MLP's gelu(fch)
  // until fcproj reads it (and again in the backward, recomputed, as are ln2_re and ln1_re). `logits` is ONE chunk of loss_rows x Vp logits: the loss, dlogits and the
  // LM head's two backward GEMMs run chunk by chunk (run_loss_chunks), so no N x Vp tensor exists.
  Tensor ln, proj, gelu, logits, ln1_re, ln2_re;
  // backward scratch, shared by all layers; dln shares ln's slot, datty proj's, dqkv gelu's,
  // dfch the logits chunk's (never live at the same time, see plan_activations).
  Tensor dresidual, dln, dqkv, datty, dfch;
  int loss_rows = 0;     // rows per loss chunk; 0 = default_loss_rows(), fixed once planned
  // ActivationOptions::recompute_residual: residual2 is not saved; the forward keeps each layer's
  // in dresidual's slot (unused until the backward), the backward recomputes it.
  bool recompute_residual = false;
  // The full (max_B x max_T, Vp) logits, only for forward_logits and decoding (kv_step):
  // allocated on first use, never by training or evaluation.
  Buffer full_logits;
  // inference: every layer's K and V caches in one block
  Buffer kv_block;
  std::vector<Tensor> kcache, vcache;
  int kv_last_B = 0, kv_last_Tn = 0;  // the shape of the last kv_step, whose logits are kept
  size_t opt_begin = 0, opt_end = 0;  // the optimizer's parameter range
  // forward_backward_deferred / step_readback: one block read in one copy, `rb_header` doubles
  // (the sums of squares) then `rb_slots` slots of `rb_slot` floats (a micro-step's losses).
  Buffer readback;
  size_t rb_header = 0, rb_slot = 0, rb_slots = 0;
  std::vector<std::vector<int>> pending_targets;  // each deferred micro-step's targets (host)
  std::vector<float> early_losses;                // means read before a growth of `readback`
};

GPT2::GPT2(const GPT2Config& cfg, Ops& ops, int max_batch, int max_T)
    : cfg_(cfg), ops_(ops), layout_(gpt2_param_layout(cfg)), impl_(std::make_unique<Impl>()) {
  OURO_CHECK(cfg.n_layer > 0 && cfg.n_head > 0 && cfg.n_embd % cfg.n_head == 0 &&
                 cfg.vocab_size > 0 && cfg.seq_len > 0,
             "invalid GPT-2 config (L={} NH={} C={} T={} V={})", cfg.n_layer, cfg.n_head,
             cfg.n_embd, cfg.seq_len, cfg.vocab_size);
  OURO_CHECK(cfg.pos != PosEncoding::rope ||
                 ((cfg.n_embd / cfg.n_head) % 2 == 0 && cfg.rope_theta > 1 && std::isfinite(cfg.rope_theta)),
             "model.pos = rope needs an even head dimension (n_embd {} / n_head {} = {}) and a finite "
             "model.rope_theta > 1 (got {})",
             cfg.n_embd, cfg.n_head, cfg.n_embd / cfg.n_head, cfg.rope_theta);
  OURO_CHECK(max_batch > 0 && max_T > 0 && max_T <= cfg.seq_len,
             "batch {} x sequence {} does not fit a model with {} positions", max_batch, max_T,
             cfg.seq_len);
  num_params_ = gpt2_num_params(cfg);
  impl_->esz = dtype_size(ops.act_dtype());
  impl_->max_B = max_batch;
  impl_->max_T = max_T;
  impl_->params = Buffer(ops, num_params_ * impl_->esz);
  impl_->opt_end = num_params_;
  for (int l = 0; l < cfg.n_layer; ++l) impl_->layer_names.push_back("layer " + std::to_string(l));
  if (ops.act_dtype() != DType::F32) impl_->master = Buffer(ops, num_params_ * sizeof(float));
}

GPT2::~GPT2() = default;

void GPT2::set_params(const std::vector<float>& host) {
  OURO_CHECK(host.size() == num_params_, "parameter count {} does not match the model's {}",
             host.size(), num_params_);
  ops_.params_from_host(impl_->params.ptr, host.data(), num_params_);
  if (impl_->master.ptr) ops_.to_device(impl_->master.ptr, host.data(), num_params_ * 4);
}

std::vector<float> GPT2::get_params() const {
  std::vector<float> h(num_params_);
  if (impl_->master.ptr)
    ops_.to_host(h.data(), impl_->master.ptr, num_params_ * 4);
  else
    ops_.params_to_host(h.data(), impl_->params.ptr, num_params_);
  return h;
}

std::vector<float> GPT2::get_grads() const {
  std::vector<float> h(num_params_, 0.0f);
  if (impl_->grads.ptr) ops_.params_to_host(h.data(), impl_->grads.ptr, num_params_);
  return h;
}

namespace {
// Parameter pointers for layer l (or the globals), resolved from the layout once per call.
struct ParamPtrs {
  const void *wte, *wpe, *lnfw, *lnfb;
  const void *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b, *fcw, *fcb,
      *fcprojw, *fcprojb;
};

ParamPtrs param_ptrs(const std::vector<ParamTensor>& layout, const void* base, size_t esz,
                     int l) {
  auto get = [&](const char* name, bool per_layer) {
    const auto& t = find_param(layout, name);
    size_t per = per_layer ? t.size / static_cast<size_t>(t.shape[0]) : 0;
    return element_at(base, t.offset + per * static_cast<size_t>(l), esz);
  };
  ParamPtrs p{};
  p.wte = get("wte", false);
  // No wpe tensor without learned positions: the encoder then adds no position embedding.
  const bool has_wpe = std::any_of(layout.begin(), layout.end(), [](const ParamTensor& t) { return t.name == "wpe"; });
  p.wpe = has_wpe ? get("wpe", false) : nullptr;
  p.lnfw = get("lnfw", false), p.lnfb = get("lnfb", false);
  p.ln1w = get("ln1w", true), p.ln1b = get("ln1b", true);
  p.qkvw = get("qkvw", true), p.qkvb = get("qkvb", true);
  p.attprojw = get("attprojw", true), p.attprojb = get("attprojb", true);
  p.ln2w = get("ln2w", true), p.ln2b = get("ln2b", true);
  p.fcw = get("fcw", true), p.fcb = get("fcb", true);
  p.fcprojw = get("fcprojw", true), p.fcprojb = get("fcprojb", true);
  return p;
}

// Mutable twin for the gradient buffer.
struct GradPtrs {
  void *wte, *wpe, *lnfw, *lnfb;
  void *ln1w, *ln1b, *qkvw, *qkvb, *attprojw, *attprojb, *ln2w, *ln2b, *fcw, *fcb, *fcprojw,
      *fcprojb;
};
GradPtrs grad_ptrs(const std::vector<ParamTensor>& layout, void* base, size_t esz, int l) {
  ParamPtrs p = param_ptrs(layout, base, esz, l);
  auto m = [](const void* x) { return const_cast<void*>(x); };
  return {m(p.wte),  m(p.wpe),      m(p.lnfw),     m(p.lnfb), m(p.ln1w), m(p.ln1b),
          m(p.qkvw), m(p.qkvb),     m(p.attprojw), m(p.attprojb), m(p.ln2w), m(p.ln2b),
          m(p.fcw),  m(p.fcb),      m(p.fcprojw),  m(p.fcprojb)};
}
}  // namespace

// The gradient ranges GradReadyHook reports: layer l's slice of every stacked per-layer
// tensor (l >= 0), or the tensors outside the layers (l < 0: wte, wpe, lnfw, lnfb).
static std::vector<ParamRange> grad_ranges(const std::vector<ParamTensor>& layout, int l) {
  std::vector<ParamRange> out;
  for (const auto& t : layout) {
    const bool global = t.name == "wte" || t.name == "wpe" || t.name == "lnfw" || t.name == "lnfb";
    if (global != (l < 0)) continue;
    if (global) {
      out.push_back({t.offset, t.offset + t.size});
    } else {
      const size_t per = t.size / static_cast<size_t>(t.shape[0]), at = t.offset + per * static_cast<size_t>(l);
      out.push_back({at, at + per});
    }
  }
  return out;
}

// The LM head and the loss over impl.lnf (N rows), a chunk of impl.loss_rows rows at a time: the
// chunk's logits (GEMM), its losses and, when training (dwte != null), dlogits in place
// (classifier) and the chunk's two backward GEMMs: dln rows (overwritten) and dwte
// (accumulated). Only one chunk of logits ever exists; the results are those of the whole
// N x Vp tensor up to the order in which dwte sums over the chunks.
static void run_loss_chunks(GPT2::Impl& impl, Ops& ops, const GPT2Config& cfg, const void* wte,
                            void* dwte, const int* targets, int N, float dloss, float* losses) {
  const int C = cfg.n_embd, Vp = cfg.padded_vocab();
  const bool backward = dwte != nullptr && dloss != 0.0f;
  TraceRange trace("lm_head_loss");
  for (int r0 = 0; r0 < N; r0 += impl.loss_rows) {
    const int n = std::min(impl.loss_rows, N - r0);
    const void* x = element_at(impl.lnf.ptr, static_cast<size_t>(r0) * C, impl.esz);
    ops.matmul_forward(impl.logits.ptr, x, wte, nullptr, n, C, Vp);
    ops.classifier(impl.logits.ptr, losses + r0, targets + r0, n, cfg.vocab_size, Vp, backward ? dloss : 0.0f);
    if (backward)
      ops.matmul_backward(element_at(impl.dln.ptr, static_cast<size_t>(r0) * C, impl.esz), dwte, nullptr, impl.logits.ptr,
                          x, wte, n, C, Vp);
  }
  // A zero loss weight (or no counted target) has a zero gradient: dln = 0, dwte unchanged.
  if (dwte && !backward) ops.fill_zero(impl.dln.ptr, static_cast<size_t>(N) * C * impl.esz);
}

// Forward through the blocks and the final LayerNorm, then the LM head: with targets, the
// chunked loss (and, with dwte, the LM head's backward: dln and dwte), without them the full
// logits into impl.full_logits (forward_logits).
static void run_forward(GPT2::Impl& impl, Ops& ops, const GPT2Config& cfg,
                        const std::vector<ParamTensor>& layout, const int* tokens,
                        const int* targets, int B, int T, float dloss, float* losses = nullptr,
                        void* dwte = nullptr) {
  const int C = cfg.n_embd, NH = cfg.n_head, L = cfg.n_layer, Vp = cfg.padded_vocab();
  const int N = B * T;
  const size_t esz = impl.esz;
  TraceRange trace("forward");
  impl.kv_last_B = impl.kv_last_Tn = 0;  // the logits a kv_step kept are overwritten
  auto g = param_ptrs(layout, impl.params.ptr, esz, 0);
  ops.encoder_forward(impl.encoded.ptr, tokens, g.wte, g.wpe, B, T, C);
  {
    auto p0 = param_ptrs(layout, impl.params.ptr, esz, 0);
    auto& a0 = impl.layers[0];
    ops.layernorm_forward(impl.ln.ptr, a0.ln1_mean.f32(), a0.ln1_rstd.f32(), impl.encoded.ptr, p0.ln1w,
                          p0.ln1b, N, C);
  }
  // Each residual add is fused with the LayerNorm that reads it (the next block's ln1, or ln_f
  // after the last block), and the fc GEMM with its GELU: one pass over memory fewer each.
  for (int l = 0; l < L; ++l) {
    auto p = param_ptrs(layout, impl.params.ptr, esz, l);
    auto& a = impl.layers[l];
    const void* residual = l == 0 ? impl.encoded.ptr : impl.layers[l - 1].residual3.ptr;
    ops.matmul_forward(a.qkv.ptr, impl.ln.ptr, p.qkvw, p.qkvb, N, C, 3 * C);
    // In place: the saved qkv then holds the ROTATED q, k, which is what attention_backward
    // needs (its gradients are with respect to the q, k attention saw); the unrotated ones are
    // never needed again, since rope_backward only rotates the gradient back.
    if (cfg.pos == PosEncoding::rope) ops.rope_forward(a.qkv.ptr, B, T, C, NH, 0, cfg.rope_theta);
    ops.attention_forward(a.atty.ptr, a.att_state.f32(), a.qkv.ptr, B, T, C, NH);
    ops.matmul_forward(impl.proj.ptr, a.atty.ptr, p.attprojw, p.attprojb, N, C, C);
    ops.residual_layernorm_forward(a.residual2.ptr, impl.ln.ptr, a.ln2_mean.f32(), a.ln2_rstd.f32(),
                                   residual, impl.proj.ptr, p.ln2w, p.ln2b, N, C);
    ops.matmul_gelu_forward(impl.gelu.ptr, a.fch.ptr, impl.ln.ptr, p.fcw, p.fcb, N, C, 4 * C);
    ops.matmul_forward(impl.proj.ptr, impl.gelu.ptr, p.fcprojw, p.fcprojb, N, 4 * C, C);
    if (l + 1 < L) {
      auto pn = param_ptrs(layout, impl.params.ptr, esz, l + 1);
      auto& an = impl.layers[l + 1];
      ops.residual_layernorm_forward(a.residual3.ptr, impl.ln.ptr, an.ln1_mean.f32(),
                                     an.ln1_rstd.f32(), a.residual2.ptr, impl.proj.ptr, pn.ln1w,
                                     pn.ln1b, N, C);
    } else {
      ops.residual_layernorm_forward(a.residual3.ptr, impl.lnf.ptr, impl.lnf_mean.f32(), impl.lnf_rstd.f32(),
                                     a.residual2.ptr, impl.proj.ptr, g.lnfw, g.lnfb, N, C);
    }
  }
  if (targets) {
    run_loss_chunks(impl, ops, cfg, g.wte, dwte, targets, N, dloss, losses ? losses : impl.losses.f32());
    return;
  }
  if (!impl.full_logits.ptr)
    impl.full_logits = Buffer(ops, static_cast<size_t>(impl.max_B) * impl.max_T * Vp * esz);
  ops.matmul_forward(impl.full_logits.ptr, impl.lnf.ptr, g.wte, nullptr, N, C, Vp);
}

// Rows per loss chunk when the caller sets none: a chunk of logits the size of dfch (4 N C
// elements), whose arena slot it shares, so chunking costs no memory of its own; at least 256
// rows (a GEMM of useful size) and a multiple of 64.
static int default_loss_rows(const GPT2Config& cfg, size_t N) {
  const size_t fit = 4 * N * static_cast<size_t>(cfg.n_embd) / static_cast<size_t>(cfg.padded_vocab());
  return static_cast<int>(std::min(N, std::max<size_t>(256, fit / 64 * 64)));
}

// Plans every activation (forward) and activation gradient (backward scratch) tensor for
// (max_B, max_T). The backward scratch is included even for a model that only decodes: ~10 N C
// elements next to the forward's ~12 L N C, which buys a step with no allocation at all.
// Slots are shared by buffers never live at once:
//   ln   (forward: a LayerNorm's output until its GEMM)          | dln (the LM head's backward
//                                                                  at the forward's end, backward)
//   proj (forward: attproj/fcproj until the residual add)        | datty, then ln1_re (backward)
//   gelu (forward: gelu(fch) until fcproj; backward: recomputed) | ln2_re, then dqkv (backward)
//   logits (one loss chunk, end of the forward)                  | dfch (backward)
// In one layer's backward: gelu -> fcproj bwd -> dfch; ln2_re -> fc bwd -> dln; attproj bwd ->
// datty; attention bwd -> dqkv (datty, ln2_re dead); ln1_re -> qkv bwd (reads dqkv, ln1_re).
static void plan_activations(GPT2::Impl& impl, const Ops& ops, const GPT2Config& cfg, ArenaPlan& plan) {
  const size_t N = static_cast<size_t>(impl.max_B) * impl.max_T, C = cfg.n_embd, e = impl.esz;
  const size_t NC = N * C * e, stats = N * sizeof(float);
  if (impl.loss_rows <= 0) impl.loss_rows = default_loss_rows(cfg, N);
  impl.loss_rows = static_cast<int>(std::min<size_t>(static_cast<size_t>(impl.loss_rows), N));
  plan.add(impl.encoded, NC);
  plan.add(impl.lnf, NC);
  plan.add(impl.lnf_mean, stats);
  plan.add(impl.lnf_rstd, stats);
  plan.add(impl.losses, stats);
  impl.layers.resize(cfg.n_layer);
  for (auto& a : impl.layers) {
    plan.add(a.ln1_mean, stats);
    plan.add(a.ln1_rstd, stats);
    plan.add(a.qkv, 3 * NC);
    plan.add(a.atty, NC);
    plan.add(a.att_state, ops.attention_state_size(impl.max_B, impl.max_T, cfg.n_head) * sizeof(float));
    if (!impl.recompute_residual) plan.add(a.residual2, NC);
    plan.add(a.ln2_mean, stats);
    plan.add(a.ln2_rstd, stats);
    plan.add(a.fch, 4 * NC);
    plan.add(a.residual3, NC);
  }
  plan.add_shared({&impl.ln, &impl.dln}, NC);
  plan.add_shared({&impl.proj, &impl.datty, &impl.ln1_re}, NC);
  plan.add_shared({&impl.gelu, &impl.ln2_re, &impl.dqkv}, 4 * NC);
  plan.add_shared({&impl.logits, &impl.dfch},
                  std::max(4 * NC, static_cast<size_t>(impl.loss_rows) * cfg.padded_vocab() * e));
  plan.add(impl.dresidual, NC);
}

// Makes the one allocation on the first forward.
static void ensure_activations(GPT2::Impl& impl, Ops& ops, const GPT2Config& cfg) {
  if (impl.activations.ptr) return;
  ArenaPlan plan;
  plan_activations(impl, ops, cfg, plan);
  impl.activations = plan.allocate(ops);
  if (impl.recompute_residual)
    for (auto& a : impl.layers) a.residual2.ptr = impl.dresidual.ptr;
  logger()->debug("activations: {:.1f} MiB in one arena (batch {} x {}, {} tensors in {} slots, loss chunks of {} rows)",
                  plan.bytes() / 1048576.0, impl.max_B, impl.max_T, plan.size(), plan.slots(), impl.loss_rows);
}

void GPT2::set_activation_options(const ActivationOptions& o) {
  OURO_CHECK(o.loss_rows >= 0, "loss chunk rows must be >= 0 (0: the default), got {}", o.loss_rows);
  OURO_CHECK(!impl_->activations.ptr, "activation options are fixed once the activations exist");
  impl_->loss_rows = o.loss_rows;
  impl_->recompute_residual = o.recompute_residual;
}

GPT2::MemoryPlan GPT2::plan_memory(const GPT2Config& cfg, const Ops& ops, int B, int T,
                                   const ActivationOptions& o) {
  OURO_CHECK(B > 0 && T > 0 && T <= cfg.seq_len, "memory plan for batch {} x {} of a model with {} positions",
             B, T, cfg.seq_len);
  Impl impl;
  impl.esz = dtype_size(ops.act_dtype());
  impl.max_B = B, impl.max_T = T, impl.loss_rows = o.loss_rows, impl.recompute_residual = o.recompute_residual;
  ArenaPlan plan;
  plan_activations(impl, ops, cfg, plan);
  const size_t n = gpt2_num_params(cfg), N = static_cast<size_t>(B) * T;
  MemoryPlan m;
  m.activations = plan.bytes();
  m.params = n * impl.esz;
  m.master = ops.act_dtype() != DType::F32 ? n * sizeof(float) : 0;
  m.grads = n * impl.esz;
  m.optimizer = 2 * n * sizeof(float);
  // reserve_readback: a header of >= 4 doubles and >= 4 slots of N losses (the first growth).
  m.workspace = 4 * sizeof(double) + 4 * N * sizeof(float);
  m.loss_rows = impl.loss_rows;
  return m;
}

GPT2::MemoryPlan GPT2::memory_plan() const {
  auto m = plan_memory(cfg_, ops_, impl_->max_B, impl_->max_T, {impl_->loss_rows, impl_->recompute_residual});
  // ZeRO-1: the moments cover the optimizer range only.
  m.optimizer = 2 * std::max<size_t>(1, impl_->opt_end - impl_->opt_begin) * sizeof(float);
  return m;
}

static void check_batch(const GPT2::Impl& impl, const GPT2Config& cfg, const int* tokens, int B,
                        int T) {
  OURO_CHECK(B > 0 && T > 0 && B <= impl.max_B && T <= impl.max_T,
             "batch {} x {} exceeds the model's buffers ({} x {})", B, T, impl.max_B, impl.max_T);
  for (int i = 0; i < B * T; ++i)
    OURO_CHECK(tokens[i] >= 0 && tokens[i] < cfg.vocab_size,
               "token {} at position {} is outside the vocabulary [0, {})", tokens[i], i,
               cfg.vocab_size);
}

static float mean_of(const float* losses, const int* targets, int N) {
  double sum = 0;
  int count = 0;
  for (int i = 0; i < N; ++i)
    if (targets[i] >= 0) sum += losses[i], ++count;
  return count ? static_cast<float>(sum / count) : 0.0f;
}

static float mean_loss(GPT2::Impl& impl, Ops& ops, const int* targets, int N) {
  std::vector<float> losses(N);
  ops.to_host(losses.data(), impl.losses.ptr, N * sizeof(float));
  return mean_of(losses.data(), targets, N);
}

// Reads the deferred micro-steps' losses (and `header` sums of squares into `sums`) in one copy.
static void read_pending(GPT2::Impl& impl, Ops& ops, size_t header, std::vector<double>* sums) {
  const size_t k = impl.pending_targets.size();
  if (k == 0 && header == 0) return;
  const size_t hb = impl.rb_header * sizeof(double), bytes = hb + k * impl.rb_slot * sizeof(float);
  std::vector<char> host(bytes);
  ops.to_host(host.data(), impl.readback.ptr, bytes);
  if (sums) {
    sums->resize(header);
    std::memcpy(sums->data(), host.data(), header * sizeof(double));
  }
  for (size_t j = 0; j < k; ++j) {
    const auto& t = impl.pending_targets[j];
    impl.early_losses.push_back(
        mean_of(reinterpret_cast<const float*>(host.data() + hb) + j * impl.rb_slot, t.data(), static_cast<int>(t.size())));
  }
  impl.pending_targets.clear();
}

// Room for `header` sums and, with N > 0, one more deferred micro-step of N losses. Growing
// reads what is pending first (a host synchronisation on the first steps only: capacity doubles).
static void reserve_readback(GPT2::Impl& impl, Ops& ops, size_t N, size_t header) {
  const size_t k = impl.pending_targets.size();
  if (header <= impl.rb_header && (N == 0 || (N <= impl.rb_slot && k < impl.rb_slots)) && impl.readback.ptr) return;
  read_pending(impl, ops, 0, nullptr);
  impl.rb_slot = std::max(impl.rb_slot, N);
  impl.rb_slots = std::max<size_t>({impl.rb_slots * 2, k + 1, 4});
  impl.rb_header = std::max<size_t>({impl.rb_header, header, 4});
  impl.readback = Buffer();
  impl.readback = Buffer(ops, impl.rb_header * sizeof(double) + impl.rb_slots * impl.rb_slot * sizeof(float));
}

static int count_targets(const int* targets, int N) {
  int c = 0;
  for (int i = 0; i < N; ++i) c += targets[i] >= 0;
  return c;
}

float GPT2::forward(const int* tokens, const int* targets, int B, int T) {
  check_batch(*impl_, cfg_, tokens, B, T);
  ensure_activations(*impl_, ops_, cfg_);
  run_forward(*impl_, ops_, cfg_, layout_, tokens, targets, B, T, 0.0f);
  return mean_loss(*impl_, ops_, targets, B * T);
}

std::vector<float> GPT2::last_losses(int B, int T) const {
  OURO_CHECK(impl_->losses.ptr && B * T <= impl_->max_B * impl_->max_T, "last_losses before a forward");
  std::vector<float> out(static_cast<size_t>(B) * T);
  ops_.to_host(out.data(), impl_->losses.ptr, out.size() * sizeof(float));
  return out;
}

std::vector<float> GPT2::forward_logits(const int* tokens, int B, int T) {
  check_batch(*impl_, cfg_, tokens, B, T);
  ensure_activations(*impl_, ops_, cfg_);
  run_forward(*impl_, ops_, cfg_, layout_, tokens, nullptr, B, T, 0.0f);
  const size_t n = static_cast<size_t>(B) * T * cfg_.padded_vocab();
  std::vector<float> out(n);
  ops_.params_to_host(out.data(), impl_->full_logits.ptr, n);
  return out;
}

float GPT2::forward_backward(const int* tokens, const int* targets, int B, int T,
                             float grad_weight) {
  return backward_pass(tokens, targets, B, T, grad_weight, false);
}

void GPT2::forward_backward_deferred(const int* tokens, const int* targets, int B, int T, float grad_weight) {
  backward_pass(tokens, targets, B, T, grad_weight, true);
}

GPT2::StepReadback GPT2::step_readback(const std::vector<ParamRange>& grad_ranges) {
  auto& impl = *impl_;
  for (const ParamRange& r : grad_ranges)
    OURO_CHECK(r.begin <= r.end && r.end <= num_params_, "gradient range [{}, {}) outside {} parameters",
               r.begin, r.end, num_params_);
  reserve_readback(impl, ops_, 0, grad_ranges.size());
  auto* sums = static_cast<double*>(impl.readback.ptr);
  for (size_t i = 0; i < grad_ranges.size(); ++i) {
    const ParamRange& r = grad_ranges[i];
    if (impl.grads.ptr && r.size() > 0) ops_.sum_squares_into(sums + i, element_at(impl.grads.ptr, r.begin, impl.esz), r.size());
    else ops_.fill_zero(sums + i, sizeof(double));
  }
  StepReadback out;
  read_pending(impl, ops_, grad_ranges.size(), &out.sum_squares);
  out.losses = std::move(impl.early_losses);
  impl.early_losses.clear();
  return out;
}

float GPT2::backward_pass(const int* tokens, const int* targets, int B, int T, float grad_weight, bool deferred) {
  check_batch(*impl_, cfg_, tokens, B, T);
  for (int i = 0; i < B * T; ++i)
    OURO_CHECK(targets[i] < cfg_.vocab_size, "target {} at position {} is outside the vocabulary",
               targets[i], i);
  ensure_activations(*impl_, ops_, cfg_);
  auto& impl = *impl_;
  const int C = cfg_.n_embd, NH = cfg_.n_head, L = cfg_.n_layer;
  const int N = B * T;
  const size_t e = impl.esz, NC = static_cast<size_t>(N) * C;
  const int count = count_targets(targets, N);
  const float dloss = count ? grad_weight / static_cast<float>(count) : 0.0f;

  // The forward's loss chunks already run the LM head's backward (dln, and dwte accumulated).
  if (!impl.grads.ptr) impl.grads = Buffer(ops_, num_params_ * e);
  auto gp = param_ptrs(layout_, impl.params.ptr, e, 0);
  auto gg = grad_ptrs(layout_, impl.grads.ptr, e, 0);
  float loss = 0.0f;
  if (deferred) {  // the losses go to the next readback slot; nothing comes back now
    reserve_readback(impl, ops_, static_cast<size_t>(N), 0);
    float* slot = reinterpret_cast<float*>(static_cast<char*>(impl.readback.ptr) + impl.rb_header * sizeof(double)) +
                  impl.pending_targets.size() * impl.rb_slot;
    run_forward(impl, ops_, cfg_, layout_, tokens, targets, B, T, dloss, slot, gg.wte);
    impl.pending_targets.emplace_back(targets, targets + N);
  } else {
    run_forward(impl, ops_, cfg_, layout_, tokens, targets, B, T, dloss, nullptr, gg.wte);
    loss = mean_loss(impl, ops_, targets, N);
  }

  // The residual stream's gradient lives in dresidual throughout: each residual add passes it
  // through unchanged, each LayerNorm backward adds into it.
  TraceRange trace("backward");
  ops_.fill_zero(impl.dresidual.ptr, NC * e);
  ops_.layernorm_backward(impl.dresidual.ptr, gg.lnfw, gg.lnfb, impl.dln.ptr,
                          impl.layers[L - 1].residual3.ptr, gp.lnfw, impl.lnf_mean.f32(),
                          impl.lnf_rstd.f32(), N, C);
  for (int l = L - 1; l >= 0; --l) {
    TraceRange layer_trace(impl.layer_names[l]);
    auto p = param_ptrs(layout_, impl.params.ptr, e, l);
    auto g = grad_ptrs(layout_, impl.grads.ptr, e, l);
    auto& a = impl.layers[l];
    const void* residual = l == 0 ? impl.encoded.ptr : impl.layers[l - 1].residual3.ptr;
    // MLP: residual3 = residual2 + fcproj(gelu(fc(ln2(residual2)))); gelu(fch) recomputed
    // (the forward's fused epilogue applies the same GELU to the same bf16 fch: equal values).
    ops_.gelu_forward(impl.gelu.ptr, a.fch.ptr, static_cast<size_t>(N) * 4 * C);
    ops_.matmul_backward(impl.dfch.ptr, g.fcprojw, g.fcprojb, impl.dresidual.ptr, impl.gelu.ptr,
                         p.fcprojw, N, 4 * C, C);
    ops_.gelu_backward(impl.dfch.ptr, a.fch.ptr, impl.dfch.ptr, static_cast<size_t>(N) * 4 * C);
    void* residual2 = a.residual2.ptr;
    if (impl.recompute_residual) {
      // residual2 = residual + attproj(atty), the forward's GEMM and add again on the same inputs:
      // bitwise the forward's value (the fused residual+LayerNorm kernel stores the same rounded
      // sum as residual_forward). Into gelu's slot past ln2_re (gelu is dead after fcproj's
      // backward; dqkv overwrites both after ln2's backward).
      ops_.matmul_forward(impl.proj.ptr, a.atty.ptr, p.attprojw, p.attprojb, N, C, C);
      residual2 = element_at(impl.gelu.ptr, NC, e);
      ops_.residual_forward(residual2, residual, impl.proj.ptr, NC);
    }
    ops_.layernorm_forward(impl.ln2_re.ptr, a.ln2_mean.f32(), a.ln2_rstd.f32(), residual2, p.ln2w,
                           p.ln2b, N, C);
    ops_.matmul_backward(impl.dln.ptr, g.fcw, g.fcb, impl.dfch.ptr, impl.ln2_re.ptr, p.fcw, N, C, 4 * C);
    ops_.layernorm_backward(impl.dresidual.ptr, g.ln2w, g.ln2b, impl.dln.ptr, residual2, p.ln2w,
                            a.ln2_mean.f32(), a.ln2_rstd.f32(), N, C);
    // attention: residual2 = residual + attproj(attention(qkv(ln1(residual))))
    ops_.matmul_backward(impl.datty.ptr, g.attprojw, g.attprojb, impl.dresidual.ptr, a.atty.ptr,
                         p.attprojw, N, C, C);
    ops_.attention_backward(impl.dqkv.ptr, impl.datty.ptr, a.qkv.ptr, a.atty.ptr, a.att_state.f32(), B,
                            T, C, NH);
    // d(pre-rotation q, k) = R^T d(rotated q, k): the inverse rotation, in place.
    if (cfg_.pos == PosEncoding::rope) ops_.rope_backward(impl.dqkv.ptr, B, T, C, NH, 0, cfg_.rope_theta);
    ops_.layernorm_forward(impl.ln1_re.ptr, a.ln1_mean.f32(), a.ln1_rstd.f32(), residual, p.ln1w, p.ln1b,
                           N, C);
    ops_.matmul_backward(impl.dln.ptr, g.qkvw, g.qkvb, impl.dqkv.ptr, impl.ln1_re.ptr, p.qkvw, N, C, 3 * C);
    ops_.layernorm_backward(impl.dresidual.ptr, g.ln1w, g.ln1b, impl.dln.ptr, residual, p.ln1w,
                            a.ln1_mean.f32(), a.ln1_rstd.f32(), N, C);
    if (grad_ready_) grad_ready_(grad_ranges(layout_, l));  // no later kernel writes layer l's
  }
  ops_.encoder_backward(gg.wte, gg.wpe, impl.dresidual.ptr, tokens, B, T, C);
  if (grad_ready_) grad_ready_(grad_ranges(layout_, -1));
  return loss;
}

void GPT2::zero_grad() {
  if (!impl_->grads.ptr) impl_->grads = Buffer(ops_, num_params_ * impl_->esz);
  ops_.fill_zero(impl_->grads.ptr, num_params_ * impl_->esz);
}

double GPT2::grad_norm() { return std::sqrt(grad_sum_squares(0, num_params_)); }

double GPT2::grad_sum_squares(size_t begin, size_t end) {
  OURO_CHECK(begin <= end && end <= num_params_, "gradient range [{}, {}) outside {} parameters",
             begin, end, num_params_);
  if (!impl_->grads.ptr || begin == end) return 0.0;
  return ops_.sum_squares(element_at(impl_->grads.ptr, begin, impl_->esz), end - begin);
}

void GPT2::set_optimizer_range(size_t begin, size_t end) {
  OURO_CHECK(begin <= end && end <= num_params_, "optimizer range [{}, {}) outside {} parameters",
             begin, end, num_params_);
  OURO_CHECK(!impl_->adam_m.ptr || (begin == impl_->opt_begin && end == impl_->opt_end),
             "the optimizer range cannot change once AdamW state exists");
  impl_->opt_begin = begin;
  impl_->opt_end = end;
}

static void ensure_adam(GPT2::Impl& impl, Ops& ops) {
  if (impl.adam_m.ptr) return;
  const size_t n = std::max<size_t>(1, impl.opt_end - impl.opt_begin);
  impl.adam_m = Buffer(ops, n * 4);
  impl.adam_v = Buffer(ops, n * 4);
}

void GPT2::adamw_step(const AdamWArgs& args) {
  OURO_CHECK(impl_->grads.ptr, "adamw_step before any backward");
  auto& impl = *impl_;
  TraceRange trace("optimizer");
  ensure_adam(impl, ops_);
  // The parameter tensors clipped to the optimizer range, with offsets relative to its start.
  std::vector<ParamSegment> segs;
  segs.reserve(layout_.size());
  for (const auto& t : layout_) {
    const size_t b = std::max(t.offset, impl.opt_begin), e = std::min(t.offset + t.size, impl.opt_end);
    if (b < e) segs.push_back({b - impl.opt_begin, e - b, t.decay});
  }
  AdamWArgs a = args;
  a.index_base = impl.opt_begin;
  ops_.adamw(element_at(impl.params.ptr, impl.opt_begin, impl.esz), impl.master.ptr ? impl.master.f32() + impl.opt_begin : nullptr,
             element_at(impl.grads.ptr, impl.opt_begin, impl.esz), impl.adam_m.f32(), impl.adam_v.f32(), segs, a);
}

std::vector<float> GPT2::get_adam_m() const {
  std::vector<float> h(impl_->opt_end - impl_->opt_begin, 0.0f);
  if (impl_->adam_m.ptr && !h.empty()) ops_.to_host(h.data(), impl_->adam_m.ptr, h.size() * 4);
  return h;
}

std::vector<float> GPT2::get_adam_v() const {
  std::vector<float> h(impl_->opt_end - impl_->opt_begin, 0.0f);
  if (impl_->adam_v.ptr && !h.empty()) ops_.to_host(h.data(), impl_->adam_v.ptr, h.size() * 4);
  return h;
}

void GPT2::set_adam_state(const std::vector<float>& m, const std::vector<float>& v) {
  const size_t n = impl_->opt_end - impl_->opt_begin;
  OURO_CHECK(m.size() == n && v.size() == n,
             "optimizer state has {}/{} values, the optimizer range holds {} parameters", m.size(),
             v.size(), n);
  ensure_adam(*impl_, ops_);
  if (n == 0) return;
  ops_.to_device(impl_->adam_m.ptr, m.data(), n * 4);
  ops_.to_device(impl_->adam_v.ptr, v.data(), n * 4);
}

void* GPT2::params_data() { return impl_->params.ptr; }

float* GPT2::master_data() { return impl_->master.ptr ? impl_->master.f32() : nullptr; }

void* GPT2::grads_data() {
  if (!impl_->grads.ptr) impl_->grads = Buffer(ops_, num_params_ * impl_->esz);
  return impl_->grads.ptr;
}

void GPT2::kv_reset() {
  kv_pos_ = 0;
  impl_->kv_last_B = impl_->kv_last_Tn = 0;
}

void GPT2::kv_step(const int* tokens, int B, int Tn) {
  auto& impl = *impl_;
  check_batch(impl, cfg_, tokens, B, Tn);
  OURO_CHECK(kv_pos_ + Tn <= impl.max_T, "KV cache full: position {} + {} tokens > {}", kv_pos_, Tn,
             impl.max_T);
  ensure_activations(impl, ops_, cfg_);
  const int C = cfg_.n_embd, NH = cfg_.n_head, L = cfg_.n_layer, Vp = cfg_.padded_vocab();
  const size_t e = impl.esz;
  if (!impl.kv_block.ptr) {
    impl.kcache.resize(L), impl.vcache.resize(L);
    ArenaPlan plan;
    const size_t cache = static_cast<size_t>(impl.max_B) * impl.max_T * C * e;
    for (int l = 0; l < L; ++l) plan.add(impl.kcache[l], cache), plan.add(impl.vcache[l], cache);
    impl.kv_block = plan.allocate(ops_);
  }
  const int N = B * Tn;
  // Scratch: the first layer's activation buffers, which are large enough for B x Tn.
  auto& s = impl.layers[0];
  auto g = param_ptrs(layout_, impl.params.ptr, e, 0);
  void* x = impl.encoded.ptr;  // the residual stream
  ops_.encoder_forward_at(x, tokens, g.wte, g.wpe, B, Tn, kv_pos_, C);
  // The same fusions as run_forward, so decoding computes exactly what training does.
  ops_.layernorm_forward(impl.ln.ptr, s.ln1_mean.f32(), s.ln1_rstd.f32(), x, g.ln1w, g.ln1b, N, C);
  // Every GEMM here is decoding's (MatmulHint::decode: the device backends may stream the weights
  // through their skinny-M kernel); training's never are.
  constexpr MatmulHint kDecode = MatmulHint::decode;
  for (int l = 0; l < L; ++l) {
    auto p = param_ptrs(layout_, impl.params.ptr, e, l);
    ops_.matmul_forward(s.qkv.ptr, impl.ln.ptr, p.qkvw, p.qkvb, N, C, 3 * C, kDecode);
    // The cache keeps rotated keys: a key's rotation depends only on its own position.
    if (cfg_.pos == PosEncoding::rope)
      ops_.rope_forward(s.qkv.ptr, B, Tn, C, NH, kv_pos_, cfg_.rope_theta);
    ops_.attention_kv(s.atty.ptr, s.qkv.ptr, impl.kcache[l].ptr, impl.vcache[l].ptr, B, Tn, kv_pos_,
                      impl.max_T, C, NH);
    ops_.matmul_forward(impl.proj.ptr, s.atty.ptr, p.attprojw, p.attprojb, N, C, C, kDecode);
    ops_.residual_layernorm_forward(s.residual2.ptr, impl.ln.ptr, s.ln2_mean.f32(), s.ln2_rstd.f32(),
                                    x, impl.proj.ptr, p.ln2w, p.ln2b, N, C);
    ops_.matmul_gelu_forward(impl.gelu.ptr, s.fch.ptr, impl.ln.ptr, p.fcw, p.fcb, N, C, 4 * C, kDecode);
    ops_.matmul_forward(impl.proj.ptr, impl.gelu.ptr, p.fcprojw, p.fcprojb, N, 4 * C, C, kDecode);
    if (l + 1 < L) {
      auto pn = param_ptrs(layout_, impl.params.ptr, e, l + 1);
      ops_.residual_layernorm_forward(x, impl.ln.ptr, s.ln1_mean.f32(), s.ln1_rstd.f32(),
                                      s.residual2.ptr, impl.proj.ptr, pn.ln1w, pn.ln1b, N, C);
    } else {
      ops_.residual_layernorm_forward(x, impl.lnf.ptr, impl.lnf_mean.f32(), impl.lnf_rstd.f32(),
                                      s.residual2.ptr, impl.proj.ptr, g.lnfw, g.lnfb, N, C);
    }
  }
  if (!impl.full_logits.ptr)
    impl.full_logits = Buffer(ops_, static_cast<size_t>(impl.max_B) * impl.max_T * Vp * e);
  ops_.matmul_forward(impl.full_logits.ptr, impl.lnf.ptr, g.wte, nullptr, N, C, Vp, kDecode);
  kv_pos_ += Tn;
  impl.kv_last_B = B;
  impl.kv_last_Tn = Tn;
}

void GPT2::kv_decode(const int* tokens, int B, int* next, float* logprobs, const SamplingSpec& spec,
                     const uint64_t* row_seeds, uint64_t step, bool graph) {
  if (!graph || !ops_.supports_graphs()) {
    kv_step(tokens, B, 1);
    kv_sample(next, logprobs, spec, row_seeds, step);
    return;
  }
  ops_.begin_decode_graph();
  try {
    kv_step(tokens, B, 1);
    kv_sample(next, logprobs, spec, row_seeds, step);
  } catch (...) {
    ops_.end_decode_graph(false);  // nothing of a failed step is kept
    throw;
  }
  ops_.end_decode_graph(true);
  for (const std::string& note : ops_.take_decode_graph_notes()) logger()->info("generation cuda graph: {}", note);
}

// Row b's last position is row b * Tn + Tn - 1 of the (B, Tn, Vp) logits: the rows of interest
// start at position Tn - 1 and lie Tn * Vp elements apart.
std::vector<float> GPT2::kv_logits() const {
  const auto& impl = *impl_;
  OURO_CHECK(impl.kv_last_B > 0, "kv_logits before a kv_step");
  const size_t Vp = cfg_.padded_vocab(), Tn = impl.kv_last_Tn;
  std::vector<float> out(impl.kv_last_B * Vp);
  for (int b = 0; b < impl.kv_last_B; ++b)
    ops_.params_to_host(out.data() + b * Vp, element_at(impl.full_logits.ptr, (b * Tn + Tn - 1) * Vp, impl.esz), Vp);
  return out;
}

void GPT2::kv_sample(int* tokens, float* logprobs, const SamplingSpec& spec,
                     const uint64_t* row_seeds, uint64_t step) {
  const auto& impl = *impl_;
  OURO_CHECK(impl.kv_last_B > 0, "kv_sample before a kv_step");
  const size_t Vp = cfg_.padded_vocab(), Tn = impl.kv_last_Tn;
  ops_.sample_tokens(tokens, logprobs, element_at(impl.full_logits.ptr, (Tn - 1) * Vp, impl.esz), impl.kv_last_B,
                     cfg_.vocab_size, Tn * Vp, spec, row_seeds, step);
}

}  // namespace ouro
