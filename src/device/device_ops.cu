// DeviceOps: ouro::Ops on the hand-written kernels (kernels/*.cu). bf16 activations, parameters
// and gradients; fp32 LayerNorm statistics, losses, master weights and AdamW moments.
//
// This one source is compiled twice (cmake/OuroDevice.cmake): by nvcc into the "cuda" backend
// and by g++ against the SIMT emulator into the "simt" backend, so CI runs every line of the
// device path. The host-side integer inputs of the Ops interface (tokens, targets) are copied
// into device buffers that grow on demand; kernel scratch memory is one buffer that grows to
// the largest request. Every op runs on the backend's stream; the copies back to the host
// synchronise it. Each op that launches kernels opens an NVTX range named after its family
// (matmul_forward, attention_backward, adamw, ...) inside the model's forward/backward/layer
// ranges, so an Nsight timeline groups the kernels by the op that launched them.
#include <ouro/cuda.h>
#if !defined(OURO_SIMT)
#include <cuda_profiler_api.h>
#else
#include <ouro/simt/device_model.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "common/trace.h"
#include "device/cublaslt_matmul.h"
#include "device/cudnn_attention.h"
#include "device/device_ops.h"
#include "device/step_graph.h"
#include "kernels/attention.h"
#include "kernels/attention_decode.h"
#include "kernels/classifier.h"
#include "kernels/elementwise.h"
#include "kernels/embedding.h"
#include "kernels/layernorm.h"
#include "kernels/matmul.h"
#include "kernels/optimizer.h"
#include "kernels/rope.h"
#include "kernels/sampling.h"
#include "ouro/error.h"
#include "ouro/ops.h"

namespace ouro {
namespace {

using kernels::bf16;

#if defined(OURO_SIMT)
constexpr const char* kBackend = "simt";
#else
constexpr const char* kBackend = "cuda";
#endif

// A device buffer that only grows (contents are not kept across growth).
class GrowBuffer {
 public:
  ~GrowBuffer() { cudaFree(p_); }
  bool would_grow(size_t bytes) const { return bytes > cap_; }
  StepGraph* graphs[2] = {nullptr, nullptr};  // told when the buffer moves (training's, decoding's)
  void* get(size_t bytes) {
    if (bytes > cap_) {
      for (StepGraph* g : graphs)
        if (g) g->note_realloc();
      OURO_CUDA_CHECK(cudaDeviceSynchronize());  // in-flight kernels may still use the old one
      OURO_CUDA_CHECK(cudaFree(p_));
      p_ = nullptr;
      cap_ = std::max(bytes, cap_ * 2);
      OURO_CUDA_CHECK(cudaMalloc(&p_, cap_));
    }
    return p_;
  }

 private:
  void* p_ = nullptr;
  size_t cap_ = 0;
};

bool same_segments(const std::vector<kernels::AdamSegment>& a,
                   const std::vector<kernels::AdamSegment>& b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); i++)
    if (a[i].offset != b[i].offset || a[i].size != b[i].size || a[i].decay != b[i].decay) return false;
  return true;
}

// The key of the weights' stochastic rounding (kernels::rounding_random).
constexpr uint64_t kRoundingSeed = 0x0b5e55ed0b5e55edULL;

const bf16* as_bf16(const void* p) { return static_cast<const bf16*>(p); }
bf16* as_bf16(void* p) { return static_cast<bf16*>(p); }

class DeviceOps final : public Ops {
 public:
  DeviceOps() {
    int n = 0;
    if (cudaGetDeviceCount(&n) != cudaSuccess || n == 0)
      fail("device '{}': no CUDA device is available (cudaGetDeviceCount: {})", kBackend, n);
    OURO_CUDA_CHECK(cudaStreamCreate(&stream_));
    train_graph_ = std::make_unique<StepGraph>(stream_);
    decode_graph_ = std::make_unique<StepGraph>(stream_);
    decode_graph_->set_name("the decode step");
    graph_ = train_graph_.get();
    for (GrowBuffer* b : {&scratch_, &staging_, &tokens_, &targets_, &result_, &segments_, &seeds_, &plan_, &scalars_,
                          &decode_in_, &positions_})
      b->graphs[0] = train_graph_.get(), b->graphs[1] = decode_graph_.get();
  }
  ~DeviceOps() override {
    graph_ = nullptr;
    decode_graph_.reset();
    train_graph_.reset();
    cudaStreamDestroy(stream_);
  }

  std::string name() const override { return kBackend; }
  std::string device_name() const override { return device_hardware_name(); }
  double peak_memory_gbs() const override {
#if defined(OURO_SIMT)
    return 0;
#else
    int dev = 0, khz = 0, bits = 0;  // double data rate: 2 transfers per clock
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&khz, cudaDevAttrMemoryClockRate, dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&bits, cudaDevAttrGlobalMemoryBusWidth, dev) != cudaSuccess) {
      (void)cudaGetLastError();
      return 0;
    }
    return 2.0 * khz * 1e3 * (bits / 8.0) / 1e9;
#endif
  }
  DType act_dtype() const override { return DType::BF16; }
  void select_alternates(MatmulImpl matmul, AttentionImpl attention) override {
    cublas_.reset();
    cudnn_.reset();
    if (matmul == MatmulImpl::cublas) cublas_ = std::make_unique<CublasLtMatmul>(stream_);
    // simt, or a cuda build without the cuDNN frontend: the constructor throws saying why.
    if (attention == AttentionImpl::cudnn) cudnn_ = std::make_unique<CudnnAttention>(stream_);
  }

  // ---- memory ----
  void* alloc(size_t bytes) override {
    graph_->leave("an allocation during the step");
    train_graph_->note_realloc();
    decode_graph_->note_realloc();
    void* p = nullptr;
    OURO_CUDA_CHECK(cudaMalloc(&p, bytes ? bytes : 1));
    OURO_CUDA_CHECK(cudaMemset(p, 0, bytes));
    return p;
  }
  void dealloc(void* p) override {
    graph_->leave("a free during the step");
    train_graph_->note_realloc();
    decode_graph_->note_realloc();
    cudaStreamSynchronize(stream_);
    cudaFree(p);
  }
  void to_device(void* dst, const void* src, size_t bytes) override {
    if (graph_->active()) return graph_->input(dst, src, bytes);  // the step's input: no wait
    OURO_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream_));
    OURO_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  // In a graph step: the end of a captured segment (StepGraph::output).
  void to_host(void* dst, const void* src, size_t bytes) override { graph_->output(dst, src, bytes); }
  void fill_zero(void* dst, size_t bytes) override {
    graph_->op(StepGraph::sig("fill_zero", dst, bytes),
               [=, this] { OURO_CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, stream_)); });
  }
  void synchronize() override {
    graph_->leave("a synchronisation during the step");
    OURO_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }
  bool supports_graphs() const override { return true; }
  void begin_graph_step() override { train_graph_->begin_step(); }
  void end_graph_step(bool ok) override { train_graph_->end_step(ok); }
  std::optional<GraphStats> graph_stats() const override {
    const auto& s = train_graph_->stats();
    return GraphStats{s.captured, s.replayed, s.uncaptured};
  }
  std::vector<std::string> take_graph_notes() override { return train_graph_->take_notes(); }
  // The decode step's graph: the ops between begin and end go to decode_graph_ (StepGraph, as the
  // training step's), which captures the second step and replays it for every later token.
  void begin_decode_graph() override {
    graph_ = decode_graph_.get();
    decode_graph_->begin_step();
  }
  void end_decode_graph(bool ok) override {
    graph_ = train_graph_.get();
    decode_graph_->end_step(ok);
  }
  std::optional<GraphStats> decode_graph_stats() const override {
    const auto& s = decode_graph_->stats();
    return GraphStats{s.captured, s.replayed, s.uncaptured};
  }
  std::vector<std::string> take_decode_graph_notes() override { return decode_graph_->take_notes(); }
  void* stream() override { return stream_; }
  void stream_op(const char* name, const std::vector<uint64_t>& key, const std::function<void(void*)>& run) override {
    StepGraph::Sig sig = StepGraph::sig(name);
    sig.insert(sig.end(), key.begin(), key.end());
    graph_->op(std::move(sig), [this, run] { run(stream_); });
  }
  std::optional<uint64_t> host_syncs() const override {
#if defined(OURO_SIMT)
    return simt::host_syncs().total();
#else
    return std::nullopt;  // the CUDA runtime does not count them
#endif
  }
  // The emulator has no profiler to signal: the hooks are no-ops on simt.
  void profiler_start() override {
#if !defined(OURO_SIMT)
    synchronize();  // work queued before the range stays out of it
    OURO_CUDA_CHECK(cudaProfilerStart());
#endif
  }
  void profiler_stop() override {
#if !defined(OURO_SIMT)
    synchronize();  // the range holds every kernel launched inside it
    OURO_CUDA_CHECK(cudaProfilerStop());
#endif
  }
  // Parameters are rounded as the optimizer rounds its updates (stochastically, a function of
  // the value): loading the fp32 master weights of a checkpoint gives back the run's bf16
  // weights bit for bit.
  void params_from_host(void* dst, const float* src, size_t n) override {
    graph_->leave("parameters loaded during the step");
    TraceRange range("params_from_host");
    float* tmp = static_cast<float*>(staging_.get(n * sizeof(float)));
    to_device(tmp, src, n * sizeof(float));
    kernels::f32_to_bf16_stochastic(as_bf16(dst), tmp, n, kRoundingSeed, stream_);
    synchronize();
  }
  void params_to_host(float* dst, const void* src, size_t n) override {
    graph_->leave("parameters read during the step");
    TraceRange range("params_to_host");
    float* tmp = static_cast<float*>(staging_.get(n * sizeof(float)));
    kernels::bf16_to_f32(tmp, as_bf16(src), n, stream_);
    to_host(dst, tmp, n * sizeof(float));
  }

  // ---- forward / backward ----
  // Each op goes through graph_->op with its signature: launched now, captured, or (replaying a
  // captured step) only checked against the capture (device/step_graph.h).
  void encoder_forward(void* out, const int* tokens, const void* wte, const void* wpe, int B,
                       int T, int C) override {
    decode_pos_ = -1;  // a forward over whole sequences: no decode step in progress
    const int* d = upload_ints(tokens_, tokens, size_t(B) * T);
    graph_->op(StepGraph::sig("encoder_forward", out, d, wte, wpe, B, T, C), [=, this] {
      TraceRange range("encoder_forward");
      kernels::encoder_forward(as_bf16(out), d, as_bf16(wte), as_bf16(wpe), B, T, C, 0, stream_);
    });
  }
  // The rows are grouped by token on the host (kernels::encoder_backward_plan); the plan goes up
  // as a step input, and in a graph the grid covers every possible group (B*T), the kernel
  // reading the plan's count: the same sums, whatever the batch.
  void encoder_backward(void* dwte, void* dwpe, const void* dout, const int* tokens, int B, int T,
                        int C) override {
    std::vector<int> plan(kernels::encoder_backward_plan_ints(B, T));
    const int groups = kernels::encoder_backward_plan(tokens, B, T, plan.data());
    const int* d = upload_ints(plan_, plan.data(), plan.size());
    const int grid = graph_->active() ? B * T : groups;
    graph_->op(StepGraph::sig("encoder_backward", dwte, dwpe, dout, d, B, T, C), [=, this] {
      TraceRange range("encoder_backward");
      kernels::encoder_backward_planned(as_bf16(dwte), as_bf16(dwpe), as_bf16(dout), d, grid, B, T, C, stream_);
    });
  }
  void layernorm_forward(void* out, float* mean, float* rstd, const void* inp, const void* weight,
                         const void* bias, int N, int C) override {
    graph_->op(StepGraph::sig("layernorm_forward", out, mean, rstd, inp, weight, bias, N, C), [=, this] {
      TraceRange range("layernorm_forward");
      kernels::layernorm_forward(as_bf16(out), mean, rstd, as_bf16(inp), as_bf16(weight), as_bf16(bias), N, C, stream_);
    });
  }
  void layernorm_backward(void* dinp, void* dweight, void* dbias, const void* dout,
                          const void* inp, const void* weight, const float* mean,
                          const float* rstd, int N, int C) override {
    graph_->op(StepGraph::sig("layernorm_backward", dinp, dweight, dbias, dout, inp, weight, mean, rstd, N, C),
               [=, this] {
                 TraceRange range("layernorm_backward");
                 kernels::layernorm_backward(as_bf16(dinp), as_bf16(dweight), as_bf16(dbias), as_bf16(dout),
                                             as_bf16(inp), as_bf16(weight), mean, rstd, N, C,
                                             scratch_.get(kernels::layernorm_backward_scratch_bytes(N, C)), stream_);
               });
  }
  // MatmulHint::decode lets the kernels take the skinny-M GEMM (kernels/matmul_skinny.cu, at most
  // 64 rows); every other forward takes the tiled kernels whatever its row count, so a training
  // micro-batch of <= 64 rows rounds as the same rows of a larger batch do.
  static kernels::MatmulTile tile_for(MatmulHint hint) {
    return hint == MatmulHint::decode ? kernels::MatmulTile::automatic : kernels::MatmulTile::tiled;
  }
  void matmul_forward(void* out, const void* inp, const void* weight, const void* bias, int N,
                      int C, int OC) override {
    matmul_forward(out, inp, weight, bias, N, C, OC, MatmulHint::none);
  }
  void matmul_forward(void* out, const void* inp, const void* weight, const void* bias, int N, int C, int OC,
                      MatmulHint hint) override {
    const kernels::MatmulTile tile = tile_for(hint);
    graph_->op(StepGraph::sig("matmul_forward", out, inp, weight, bias, N, C, OC, int(tile)), [=, this] {
      TraceRange range("matmul_forward");
      if (cublas_) return cublas_->forward(as_bf16(out), as_bf16(inp), as_bf16(weight), as_bf16(bias), N, C, OC);
      kernels::matmul_forward(as_bf16(out), as_bf16(inp), as_bf16(weight), as_bf16(bias), N, C, OC, stream_,
                              kernels::Epilogue::none, nullptr, tile);
    });
  }
  void matmul_backward(void* dinp, void* dweight, void* dbias, const void* dout, const void* inp,
                       const void* weight, int N, int C, int OC) override {
    graph_->op(StepGraph::sig("matmul_backward", dinp, dweight, dbias, dout, inp, weight, N, C, OC), [=, this] {
      TraceRange range("matmul_backward");
      if (cublas_) return cublas_->backward(as_bf16(dinp), as_bf16(dweight), as_bf16(dbias), as_bf16(dout), as_bf16(inp), as_bf16(weight), N, C, OC);
      kernels::matmul_backward(as_bf16(dinp), as_bf16(dweight), as_bf16(dbias), as_bf16(dout), as_bf16(inp), as_bf16(weight), N, C, OC,
                               scratch_.get(kernels::matmul_backward_scratch_bytes(N, C, OC)),
                               stream_);
    });
  }
  void residual_layernorm_forward(void* residual, void* out, float* mean, float* rstd, const void* a,
                                  const void* b, const void* weight, const void* bias, int N,
                                  int C) override {
    graph_->op(StepGraph::sig("residual_layernorm_forward", residual, out, mean, rstd, a, b, weight, bias, N, C),
               [=, this] {
                 TraceRange range("residual_layernorm_forward");
                 kernels::residual_layernorm_forward(as_bf16(residual), as_bf16(out), mean, rstd, as_bf16(a), as_bf16(b),
                                                     as_bf16(weight), as_bf16(bias), N, C, stream_);
               });
  }
  void matmul_gelu_forward(void* out, void* pre_gelu, const void* inp, const void* weight,
                           const void* bias, int N, int C, int OC) override {
    matmul_gelu_forward(out, pre_gelu, inp, weight, bias, N, C, OC, MatmulHint::none);
  }
  void matmul_gelu_forward(void* out, void* pre_gelu, const void* inp, const void* weight, const void* bias, int N,
                           int C, int OC, MatmulHint hint) override {
    if (cublas_) return Ops::matmul_gelu_forward(out, pre_gelu, inp, weight, bias, N, C, OC, hint);
    const kernels::MatmulTile tile = tile_for(hint);
    graph_->op(StepGraph::sig("matmul_gelu_forward", out, pre_gelu, inp, weight, bias, N, C, OC, int(tile)), [=, this] {
      TraceRange range("matmul_gelu_forward");
      kernels::matmul_forward(as_bf16(out), as_bf16(inp), as_bf16(weight), as_bf16(bias), N, C, OC, stream_, kernels::Epilogue::gelu,
                              as_bf16(pre_gelu), tile);
    });
  }
  void rope_forward(void* qkv, int B, int T, int C, int NH, int pos0, double theta) override {
    if (pos0 == decode_pos_) {  // inside a decode step: the position its kernels read on the device
      const int* d = decode_position();
      graph_->op(StepGraph::sig("rope_forward_at", qkv, B, T, C, NH, d, theta), [=, this] {
        TraceRange range("rope_forward");
        kernels::rope_forward_at(as_bf16(qkv), B, T, C, NH, d, theta, stream_);
      });
      return;
    }
    graph_->op(StepGraph::sig("rope_forward", qkv, B, T, C, NH, pos0, theta), [=, this] {
      TraceRange range("rope_forward");
      kernels::rope_forward(as_bf16(qkv), B, T, C, NH, pos0, theta, stream_);
    });
  }
  void rope_backward(void* dqkv, int B, int T, int C, int NH, int pos0, double theta) override {
    graph_->op(StepGraph::sig("rope_backward", dqkv, B, T, C, NH, pos0, theta), [=, this] {
      TraceRange range("rope_backward");
      kernels::rope_backward(as_bf16(dqkv), B, T, C, NH, pos0, theta, stream_);
    });
  }
  size_t attention_state_size(int B, int T, int NH) const override {
    if (cudnn_) return CudnnAttention::state_size(B, T, NH);
    return size_t(B) * NH * T;  // the logsumexp of each query row
  }
  void attention_forward(void* out, float* state, const void* qkv, int B, int T, int C,
                         int NH) override {
    if (!cudnn_) check_head_dim(C, NH);
    graph_->op(StepGraph::sig("attention_forward", out, state, qkv, B, T, C, NH), [=, this] {
      TraceRange range("attention_forward");
      if (cudnn_) return cudnn_->forward(as_bf16(out), state, as_bf16(qkv), B, T, C, NH);
      kernels::attention_forward(as_bf16(out), state, as_bf16(qkv), B, T, C, NH, stream_);
    });
  }
  void attention_backward(void* dqkv, const void* dout, const void* qkv, const void* out,
                          const float* state, int B, int T, int C, int NH) override {
    graph_->op(StepGraph::sig("attention_backward", dqkv, dout, qkv, out, state, B, T, C, NH), [=, this] {
      TraceRange range("attention_backward");
      if (cudnn_) return cudnn_->backward(as_bf16(dqkv), as_bf16(dout), as_bf16(qkv), as_bf16(out), state, B, T, C, NH);
      kernels::attention_backward(
          as_bf16(dqkv), as_bf16(dout), as_bf16(qkv), as_bf16(out), state, B, T, C, NH,
          scratch_.get(kernels::attention_backward_scratch_bytes(B, T, C, NH)), stream_);
    });
  }
  void gelu_forward(void* out, const void* inp, size_t n) override {
    graph_->op(StepGraph::sig("gelu_forward", out, inp, n), [=, this] {
      TraceRange range("gelu_forward");
      kernels::gelu_forward(as_bf16(out), as_bf16(inp), n, stream_);
    });
  }
  void gelu_backward(void* dinp, const void* inp, const void* dout, size_t n) override {
    graph_->op(StepGraph::sig("gelu_backward", dinp, inp, dout, n), [=, this] {
      TraceRange range("gelu_backward");
      kernels::gelu_backward(as_bf16(dinp), as_bf16(inp), as_bf16(dout), n, stream_);
    });
  }
  void residual_forward(void* out, const void* a, const void* b, size_t n) override {
    graph_->op(StepGraph::sig("residual_forward", out, a, b, n), [=, this] {
      TraceRange range("residual_forward");
      kernels::residual_forward(as_bf16(out), as_bf16(a), as_bf16(b), n, stream_);
    });
  }
  void add_inplace(void* dst, const void* src, size_t n) override {
    graph_->op(StepGraph::sig("add_inplace", dst, src, n), [=, this] {
      TraceRange range("add_inplace");
      kernels::add_inplace(as_bf16(dst), as_bf16(src), n, stream_);
    });
  }
  void classifier(void* logits, float* losses, const int* targets, int N, int V, int Vp,
                  float dloss) override {
    for (int n = 0; n < N; n++)  // the kernel clamps; the error belongs here, naming the row
      OURO_CHECK(targets[n] < V, "classifier: target {} at row {} is outside the vocab of {}",
                 targets[n], n, V);
    const int* d = upload_ints(targets_, targets, size_t(N));
    graph_->op(StepGraph::sig("classifier", logits, losses, d, N, V, Vp, dloss), [=, this] {
      TraceRange range("classifier");
      kernels::classifier(as_bf16(logits), losses, d, N, V, Vp, dloss, stream_);
    });
  }
  double sum_squares(const void* x, size_t n) override {
    TraceRange range("sum_squares");
    double* out = static_cast<double*>(result_.get(sizeof(double)));
    graph_->op(StepGraph::sig("sum_squares", out, x, n), [=, this] {
      kernels::sum_squares(out, as_bf16(x), n, scratch_.get(kernels::sum_squares_scratch_bytes(n)), stream_);
    });
    double h = 0;
    to_host(&h, out, sizeof h);
    return h;
  }
  void sum_squares_into(double* out, const void* x, size_t n) override {
    graph_->op(StepGraph::sig("sum_squares_into", out, x, n), [=, this] {
      TraceRange range("sum_squares");
      if (n == 0) {
        OURO_CUDA_CHECK(cudaMemsetAsync(out, 0, sizeof(double), stream_));
        return;
      }
      kernels::sum_squares(out, as_bf16(x), n, scratch_.get(kernels::sum_squares_scratch_bytes(n)), stream_);
    });
  }
  // In a graph step the per-step scalars (learning rate, clipping coefficient, bias
  // corrections) are a step input read by the kernel from device memory
  // (kernels::adamw_scalars_on_device): a replay never reuses the capture's. Bitwise the same
  // update as the by-value launch.
  void adamw(void* params, float* master, const void* grads, float* m, float* v,
             const std::vector<ParamSegment>& segments, const AdamWArgs& args) override {
    OURO_CHECK(master != nullptr, "device adamw needs the fp32 master weights");
    std::vector<kernels::AdamSegment> segs;
    size_t total = 0;
    for (const auto& s : segments) {
      segs.push_back({s.offset, s.size, s.decay ? 1 : 0});
      total += s.size;
    }
    if (segs.empty()) return;
    if (segments_.would_grow(segs.size() * sizeof(segs[0]))) graph_->leave("the optimizer's segment table grows");
    auto* dsegs = static_cast<kernels::AdamSegment*>(segments_.get(segs.size() * sizeof(segs[0])));
    if (!same_segments(segs, uploaded_segments_)) {  // changes only with the optimizer range
      graph_->leave("the optimizer's segments changed");
      // From pageable memory: staged before the call returns, so `segs` may go (no wait).
      OURO_CUDA_CHECK(cudaMemcpyAsync(dsegs, segs.data(), segs.size() * sizeof(segs[0]),
                                      cudaMemcpyHostToDevice, stream_));
      uploaded_segments_ = segs;
    }
    kernels::AdamParams p{};
    p.lr = args.lr, p.beta1 = args.beta1, p.beta2 = args.beta2, p.eps = args.eps;
    p.weight_decay = args.weight_decay, p.grad_scale = args.grad_scale, p.step = args.step;
    p.seed = kRoundingSeed;  // the random bits hash the value itself (rounding_random)
    p.index_base = args.index_base;
    const int nseg = int(segs.size());
    // Sized on every step, so that a step captured after an uncaptured one finds it in place.
    if (scalars_.would_grow(sizeof(kernels::AdamScalars))) graph_->leave("the optimizer's scalars buffer is new");
    auto* d = static_cast<kernels::AdamScalars*>(scalars_.get(sizeof(kernels::AdamScalars)));
    if (!graph_->active()) {
      TraceRange range("adamw");
      kernels::adamw(as_bf16(params), master, as_bf16(grads), m, v, dsegs, nseg, total, p, stream_);
      return;
    }
    const kernels::AdamScalars scalars = kernels::adam_scalars(p);
    graph_->input(d, &scalars, sizeof scalars);
    graph_->op(StepGraph::sig("adamw", params, master, grads, m, v, dsegs, nseg, total, d), [=, this] {
      TraceRange range("adamw");
      kernels::adamw_scalars_on_device(as_bf16(params), master, as_bf16(grads), m, v, dsegs, nseg, total, d, stream_);
    });
  }

  // ---- inference with a KV cache ----
  // Decoding (GPT2::kv_step): encoder_forward_at opens the step, uploading its position and its
  // tokens in ONE copy (decode_in_ = pos0 | tokens); the step's rope_forward and attention_kv at
  // that position read it from there. The kernels take the position from device memory, not as
  // an argument, so a decode graph captured at one token replays at every other (and the
  // uncaptured step runs the same kernels: bitwise the same results either way).
  void attention_kv(void* out, const void* qkv, void* kcache, void* vcache, int B, int Tn,
                    int pos0, int Tmax, int C, int NH) override {
    OURO_CHECK(pos0 >= 0 && Tn >= 1 && pos0 + Tn <= Tmax, "attention_kv: positions {}..{} do not fit the KV cache of {}",
               pos0, pos0 + Tn - 1, Tmax);
    const int* d = pos0 == decode_pos_ ? decode_position() : upload_position(pos0);
    // Split-KV flash decoding (kernels/attention_decode.cu); kernels::attention_kv, one warp
    // per head over the whole cache, stays as the tests' and benchmarks' reference. The scratch
    // is sized for a full cache, and for the one-token steps that follow a prefill: it does not
    // grow (a device synchronisation) as the context grows, nor inside a captured step.
    const size_t scratch_bytes = std::max(kernels::attention_decode_at_scratch_bytes(B, Tn, Tmax, C, NH),
                                          kernels::attention_decode_at_scratch_bytes(B, 1, Tmax, C, NH));
    if (scratch_.would_grow(scratch_bytes)) graph_->leave("the decode scratch grows");
    void* scratch = scratch_.get(scratch_bytes);
    graph_->op(StepGraph::sig("attention_kv", out, qkv, kcache, vcache, B, Tn, d, Tmax, C, NH, scratch), [=, this] {
      TraceRange range("attention_kv");
      kernels::attention_decode_at(as_bf16(out), as_bf16(qkv), as_bf16(kcache), as_bf16(vcache), B, Tn, d, Tmax, C,
                                   NH, scratch, stream_);
    });
  }
  void encoder_forward_at(void* out, const int* tokens, const void* wte, const void* wpe, int B,
                          int Tn, int pos0, int C) override {
    OURO_CHECK(pos0 >= 0, "encoder_forward_at: position {} < 0", pos0);
    std::vector<int> in(size_t(B) * Tn + 1);
    in[0] = pos0;
    std::copy(tokens, tokens + size_t(B) * Tn, in.begin() + 1);
    const int* d = upload_ints(decode_in_, in.data(), in.size());
    decode_pos_ = pos0;
    graph_->op(StepGraph::sig("encoder_forward_at", out, d, wte, wpe, B, Tn, C), [=, this] {
      TraceRange range("encoder_forward_at");
      kernels::encoder_forward_at(as_bf16(out), d + 1, as_bf16(wte), as_bf16(wpe), B, Tn, C, d, stream_);
    });
  }

  // ---- sampling ----
  // The kernel reads the logits where the model left them; the row seeds go up and only the B
  // tokens, B row statuses and B log-probs come back, in one copy (ints, ints, then floats, in
  // one buffer). A row the kernel reports (a NaN logit, or none above -inf) is an error naming it.
  void sample_tokens(int* tokens, float* logprobs, const void* logits, int B, int V,
                     size_t row_stride, const SamplingSpec& spec, const uint64_t* row_seeds,
                     uint64_t step) override {
    TraceRange range("sample_tokens");
    OURO_CHECK(B >= 0 && V > 0 && row_stride >= size_t(V) && row_stride <= size_t(INT32_MAX),
               "sample_tokens: {} rows of {} tokens, {} apart", B, V, row_stride);
    if (B == 0) return;
    // One copy up: the step (the Philox counter, read by the kernel from device memory, so a
    // decode graph replays with each token's) then the B row seeds.
    std::vector<uint64_t> in(size_t(B) + 1);
    in[0] = step;
    std::copy(row_seeds, row_seeds + B, in.begin() + 1);
    const size_t in_bytes = in.size() * sizeof(uint64_t);
    const size_t ints = size_t(B) * sizeof(int), out_bytes = 2 * ints + size_t(B) * sizeof(float);
    if (seeds_.would_grow(in_bytes) || result_.would_grow(out_bytes)) graph_->leave("a staging buffer grows");
    auto* seeds = static_cast<uint64_t*>(seeds_.get(in_bytes));
    graph_->input(seeds, in.data(), in_bytes);
    char* out = static_cast<char*>(result_.get(out_bytes));
    int* d_tokens = reinterpret_cast<int*>(out);
    int* d_status = reinterpret_cast<int*>(out + ints);
    float* d_logprobs = reinterpret_cast<float*>(out + 2 * ints);
    kernels::SamplingParams p{};
    p.temperature = spec.temperature, p.top_k = spec.top_k, p.top_p = spec.top_p;
    p.offset = step;  // the row seeds are the keys; the step is the counter
    const bool want_logprobs = logprobs != nullptr;
    graph_->op(StepGraph::sig("sample_tokens", d_tokens, want_logprobs, logits, B, V, row_stride, p.temperature, p.top_k,
                              p.top_p, seeds), [=, this] {
      kernels::sample_tokens_row_seeds(d_tokens, want_logprobs ? d_logprobs : nullptr, as_bf16(logits), B, V,
                                       int(row_stride), p, seeds + 1, stream_, d_status, seeds);
    });
    std::vector<char> host(2 * ints + (logprobs ? size_t(B) * sizeof(float) : 0));
    to_host(host.data(), out, host.size());  // synchronises (in a decode graph: the end of the step's graph)
    std::vector<int> status(B);
    std::memcpy(status.data(), host.data() + ints, ints);
    for (int b = 0; b < B; b++)
      OURO_CHECK(status[b] == kernels::kSampleOk,
                 "sample_tokens: row {} of the logits {}: the model diverged or its input is corrupt", b,
                 status[b] == kernels::kSampleNaN ? "holds a NaN" : "has no value above -inf");
    std::memcpy(tokens, host.data(), ints);
    if (logprobs) std::memcpy(logprobs, host.data() + 2 * ints, size_t(B) * sizeof(float));
  }

 private:
  // The position decode_in_ holds for the decode step in progress (encoder_forward_at's).
  const int* decode_position() { return static_cast<const int*>(decode_in_.get(sizeof(int))); }
  // A position for an attention_kv outside a decode step (a caller of the op alone).
  const int* upload_position(int pos0) { return upload_ints(positions_, &pos0, 1); }
  // Copies host ints into a device buffer on the stream, without waiting: the callers' arrays
  // are pageable host memory (std::vector), which cudaMemcpyAsync stages before returning
  // (CUDA's "API synchronization behavior"), so they may change as soon as this returns. The
  // device buffer is reused by the next upload: stream order puts that copy after every kernel
  // queued before it, the readers of this one included. (A pinned source would need an event.)
  // In a graph step: a step input (StepGraph::input), copied into a fixed pinned buffer that the
  // graph's copy reads when it replays.
  const int* upload_ints(GrowBuffer& buf, const int* host, size_t n) {
    if (buf.would_grow(n * sizeof(int))) graph_->leave("a staging buffer grows");
    int* d = static_cast<int*>(buf.get(n * sizeof(int)));
    graph_->input(d, host, n * sizeof(int));
    return d;
  }
  void check_head_dim(int C, int NH) const {
    OURO_CHECK(C % NH == 0 && kernels::attention_supports(C / NH),
               "device '{}': attention head dimension {} (n_embd {} / n_head {}) is not supported "
               "by the attention kernels", kBackend, NH ? C / NH : 0, C, NH);
  }

  cudaStream_t stream_ = nullptr;
  std::unique_ptr<CublasLtMatmul> cublas_;  // model.matmul = cublas
  std::unique_ptr<CudnnAttention> cudnn_;   // model.attention = cudnn (decoding stays native)
  GrowBuffer scratch_, staging_, tokens_, targets_, result_, segments_, seeds_, plan_, scalars_;
  GrowBuffer decode_in_, positions_;  // a decode step's position | tokens; attention_kv's position alone
  int decode_pos_ = -1;  // the position decode_in_ holds while a decode step runs, else -1
  // The training step's graphs and the decode step's (declared after the buffers: destroyed
  // before them); graph_ is the one the ops go through now (decode_graph_ between
  // begin_decode_graph and end_decode_graph).
  std::unique_ptr<StepGraph> train_graph_, decode_graph_;
  StepGraph* graph_ = nullptr;
  std::vector<kernels::AdamSegment> uploaded_segments_;
};

}  // namespace

std::unique_ptr<Ops> make_device_ops() { return std::make_unique<DeviceOps>(); }

std::string device_hardware_name() {
#if defined(OURO_SIMT)
  return "SIMT emulator";
#else
  cudaDeviceProp prop{};
  int dev = 0;
  OURO_CUDA_CHECK(cudaGetDevice(&dev));
  OURO_CUDA_CHECK(cudaGetDeviceProperties(&prop, dev));
  return prop.name;
#endif
}

// Registered with make_ops (src/runtime/make_ops.cpp) when this object is linked in.
static const bool registered = (register_device_backend(kBackend, &make_device_ops), true);

}  // namespace ouro
