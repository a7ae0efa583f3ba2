// cuDNN flash attention for model.attention = cudnn (see cudnn_attention.h for the contract).
//
// Q, K and V are never copied out of the packed qkv buffer: each is described to cuDNN as a
// strided 4-d view (B, NH, T, hd) with strides (T*3C, hd, 3C, 1) whose base pointer is qkv,
// qkv + C and qkv + 2C; out, dout (B, NH, T, hd) with strides (T*C, hd, C, 1); dQ, dK, dV are
// the same views of dqkv as Q, K, V of qkv. The causal mask is cuDNN's diagonal band with the
// top-left alignment and right bound 0: query i sees keys j <= i, as the native kernels do.
//
// Building a graph (heuristics query, kernel selection, possibly runtime compilation) costs
// milliseconds to seconds, so one forward and one backward graph are built per shape
// (B, T, C, NH) on first use and kept; the workspace is one buffer that grows to the largest
// plan's need.
#include "device/cudnn_attention.h"

#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <tuple>
#include <unordered_map>

#include "ouro/error.h"

#if !defined(OURO_SIMT) && defined(OURO_HAVE_CUDNN_FRONTEND)
#define OURO_CUDNN_ATTENTION_BUILT 1
// The frontend's JSON (de)serialisation of graphs is not used; skipping it keeps nvcc from
// compiling the bundled nlohmann::json in this file.
#define CUDNN_FRONTEND_SKIP_JSON_LIB 1
#include <cudnn.h>
#include <cudnn_frontend.h>
#endif

namespace ouro {

#if !defined(OURO_CUDNN_ATTENTION_BUILT)

// The simt half (the emulator has no cuDNN), and the cuda half when cmake did not find the
// frontend's headers: the alternate refuses instead of silently running the native kernels.
struct CudnnAttention::Impl {};
CudnnAttention::CudnnAttention(cudaStream_t) {
#if defined(OURO_SIMT)
  fail("model.attention = cudnn needs the cuda backend (cuDNN does not run on the simt emulator)");
#else
  fail("model.attention = cudnn is not built: cmake did not find the cuDNN frontend headers "
       "(cudnn_frontend.h; run tools/setup.sh or set CUDNN_FRONTEND_INCLUDE_DIR, then re-run cmake)");
#endif
}
CudnnAttention::~CudnnAttention() = default;
void CudnnAttention::forward(kernels::bf16*, float*, const kernels::bf16*, int, int, int, int) {}
void CudnnAttention::backward(kernels::bf16*, const kernels::bf16*, const kernels::bf16*,
                              const kernels::bf16*, const float*, int, int, int, int) {}
bool CudnnAttention::backward_deterministic() const { return false; }

#else

namespace {

namespace fe = cudnn_frontend;
using Graph = fe::graph::Graph;
using TensorAttr = fe::graph::Tensor_attributes;

// The tensors' uids in the variant pack: fixed, so one pack layout serves every shape.
enum Uid : int64_t { kQ = 1, kK, kV, kO, kStats, kdO, kdQ, kdK, kdV };

struct Shape {
  int B, T, C, NH;
  int64_t hd() const { return C / NH; }
  // "B=2 T=256 C=768 NH=12 hd=64", for messages.
  std::string str() const {
    return "B=" + std::to_string(B) + " T=" + std::to_string(T) + " C=" + std::to_string(C) +
           " NH=" + std::to_string(NH) + " hd=" + std::to_string(hd());
  }
  std::vector<int64_t> dims() const { return {B, NH, T, hd()}; }
  // A head of q, k or v inside a packed (B, T, 3C) row (qkv and dqkv).
  std::vector<int64_t> packed_strides() const { return {int64_t(T) * 3 * C, hd(), 3 * int64_t(C), 1}; }
  // A head inside a (B, T, C) row (out and dout).
  std::vector<int64_t> row_strides() const { return {int64_t(T) * C, hd(), C, 1}; }
  std::vector<int64_t> stats_dims() const { return {B, NH, T, 1}; }
  std::vector<int64_t> stats_strides() const { return {int64_t(NH) * T, T, 1, 1}; }
  // The native kernels' softmax scale, computed the same way.
  float scale() const { return 1.0f / std::sqrt(float(hd())); }
};

void check_cudnn(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) fail("cuDNN attention: {} failed: {}", what, cudnnGetErrorString(s));
}

// A frontend step's error, naming the shape and cuDNN's message.
void check(fe::error_t e, const Shape& s, const char* graph, const char* step) {
  if (e.is_bad())
    fail("model.attention = cudnn: the {} graph for {} failed at {}: {}", graph, s.str(), step,
         e.get_message());
}

std::shared_ptr<Graph> new_graph() {
  auto g = std::make_shared<Graph>();
  g->set_io_data_type(fe::DataType_t::BFLOAT16)
      .set_intermediate_data_type(fe::DataType_t::FLOAT)
      .set_compute_data_type(fe::DataType_t::FLOAT);
  return g;
}

std::shared_ptr<TensorAttr> bf16_view(Graph& g, const char* name, Uid uid, const Shape& s,
                                      std::vector<int64_t> strides) {
  return g.tensor(TensorAttr().set_name(name).set_uid(uid).set_dim(s.dims()).set_stride(std::move(strides))
                      .set_data_type(fe::DataType_t::BFLOAT16));
}

void set_stats(TensorAttr& t, const Shape& s) {
  t.set_uid(kStats).set_dim(s.stats_dims()).set_stride(s.stats_strides()).set_data_type(fe::DataType_t::FLOAT);
}

// validate .. build_plans: the first failing step's error, or OK.
fe::error_t finish(Graph& g, cudnnHandle_t handle) {
  for (auto step : {+[](Graph& g, cudnnHandle_t) { return g.validate(); },
                    +[](Graph& g, cudnnHandle_t h) { return g.build_operation_graph(h); },
                    +[](Graph& g, cudnnHandle_t) { return g.create_execution_plans({fe::HeurMode_t::A}); },
                    +[](Graph& g, cudnnHandle_t h) { return g.check_support(h); },
                    +[](Graph& g, cudnnHandle_t) { return g.build_plans(fe::BuildPlanPolicy_t::HEURISTICS_CHOICE); }}) {
    if (auto e = step(g, handle); e.is_bad()) return e;
  }
  return {fe::error_code_t::OK, ""};
}

struct Plan {
  std::shared_ptr<Graph> graph;
  int64_t workspace = 0;
};

Plan forward_plan(cudnnHandle_t handle, const Shape& s) {
  Plan p{new_graph()};
  Graph& g = *p.graph;
  auto q = bf16_view(g, "Q", kQ, s, s.packed_strides());
  auto k = bf16_view(g, "K", kK, s, s.packed_strides());
  auto v = bf16_view(g, "V", kV, s, s.packed_strides());
  auto attrs = fe::graph::SDPA_attributes()
                   .set_name("causal_attention")
                   .set_generate_stats(true)  // the logsumexp the backward reads
                   .set_attn_scale(s.scale())
                   .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                   .set_diagonal_band_right_bound(0);
  auto [o, stats] = g.sdpa(q, k, v, attrs);
  o->set_output(true).set_uid(kO).set_dim(s.dims()).set_stride(s.row_strides());
  stats->set_output(true);
  set_stats(*stats, s);
  check(finish(g, handle), s, "forward", "plan building");
  check(g.get_workspace_size(p.workspace), s, "forward", "get_workspace_size");
  return p;
}

// Builds p (fresh) for one backward variant; cuDNN's error when it has none for it.
fe::error_t build_backward(Plan& p, cudnnHandle_t handle, const Shape& s, bool deterministic) {
  p = Plan{new_graph()};
  Graph& g = *p.graph;
  auto q = bf16_view(g, "Q", kQ, s, s.packed_strides());
  auto k = bf16_view(g, "K", kK, s, s.packed_strides());
  auto v = bf16_view(g, "V", kV, s, s.packed_strides());
  auto o = bf16_view(g, "O", kO, s, s.row_strides());
  auto dout = bf16_view(g, "dO", kdO, s, s.row_strides());
  auto stats = g.tensor(TensorAttr().set_name("Stats"));
  set_stats(*stats, s);
  auto attrs = fe::graph::SDPA_backward_attributes()
                   .set_name("causal_attention_backward")
                   .set_attn_scale(s.scale())
                   .set_diagonal_alignment(fe::DiagonalAlignment_t::TOP_LEFT)
                   .set_diagonal_band_right_bound(0)
                   .set_deterministic_algorithm(deterministic);
  auto [dq, dk, dv] = g.sdpa_backward(q, k, v, o, dout, stats, attrs);
  dq->set_output(true).set_uid(kdQ).set_dim(s.dims()).set_stride(s.packed_strides());
  dk->set_output(true).set_uid(kdK).set_dim(s.dims()).set_stride(s.packed_strides());
  dv->set_output(true).set_uid(kdV).set_dim(s.dims()).set_stride(s.packed_strides());
  if (auto e = finish(g, handle); e.is_bad()) return e;
  return g.get_workspace_size(p.workspace);
}

}  // namespace

struct CudnnAttention::Impl {
  cudaStream_t stream = nullptr;
  cudnnHandle_t handle = nullptr;
  void* workspace = nullptr;
  int64_t workspace_bytes = 0;
  bool deterministic = true;

  using Key = std::tuple<int, int, int, int>;  // B, T, C, NH
  std::map<Key, Plan> forward_plans, backward_plans;

  ~Impl() {
    if (handle) cudnnDestroy(handle);
    cudaFree(workspace);
  }

  static Shape shape_of(int B, int T, int C, int NH) {
    const Shape s{B, T, C, NH};
    OURO_CHECK(B > 0 && T > 0 && NH > 0 && C > 0 && C % NH == 0,
               "model.attention = cudnn: bad attention shape {} (n_embd must be a positive multiple "
               "of n_head)", s.str());
    return s;
  }

  const Plan& forward(const Shape& s) {
    const Key key{s.B, s.T, s.C, s.NH};
    if (auto it = forward_plans.find(key); it != forward_plans.end()) return it->second;
    return forward_plans.emplace(key, forward_plan(handle, s)).first->second;
  }

  // The deterministic backward first (bit-identical reruns, as the native kernels); where cuDNN
  // has none for this shape or GPU, its default one (dQ accumulated with atomics).
  const Plan& backward(const Shape& s) {
    const Key key{s.B, s.T, s.C, s.NH};
    if (auto it = backward_plans.find(key); it != backward_plans.end()) return it->second;
    Plan p;
    if (auto e = build_backward(p, handle, s, /*deterministic=*/true); e.is_bad()) {
      if (auto e2 = build_backward(p, handle, s, /*deterministic=*/false); e2.is_bad())
        fail("model.attention = cudnn: the backward graph for {} failed at plan building: {} "
             "(deterministic variant: {})", s.str(), e2.get_message(), e.get_message());
      deterministic = false;
    }
    return backward_plans.emplace(key, std::move(p)).first->second;
  }

  void* workspace_for(const Plan& p) {
    if (p.workspace > workspace_bytes) {
      OURO_CUDA_CHECK(cudaStreamSynchronize(stream));  // a running graph may still use the old one
      OURO_CUDA_CHECK(cudaFree(workspace));
      workspace = nullptr;
      OURO_CUDA_CHECK(cudaMalloc(&workspace, size_t(p.workspace)));
      workspace_bytes = p.workspace;
    }
    return workspace;
  }

  void run(const Plan& p, const Shape& s, const char* graph, std::unordered_map<int64_t, void*>& pack) {
    check(p.graph->execute(handle, pack, workspace_for(p)), s, graph, "execute");
  }
};

CudnnAttention::CudnnAttention(cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
  impl_->stream = stream;
  check_cudnn(cudnnCreate(&impl_->handle), "cudnnCreate");
  check_cudnn(cudnnSetStream(impl_->handle, stream), "cudnnSetStream");
}

CudnnAttention::~CudnnAttention() = default;

void CudnnAttention::forward(kernels::bf16* out, float* state, const kernels::bf16* qkv, int B, int T,
                             int C, int NH) {
  const Shape s = Impl::shape_of(B, T, C, NH);
  const Plan& p = impl_->forward(s);
  auto* in = const_cast<kernels::bf16*>(qkv);  // the variant pack takes void*; cuDNN only reads it
  std::unordered_map<int64_t, void*> pack{
      {kQ, in}, {kK, in + C}, {kV, in + 2 * C}, {kO, out}, {kStats, state}};
  impl_->run(p, s, "forward", pack);
}

void CudnnAttention::backward(kernels::bf16* dqkv, const kernels::bf16* dout, const kernels::bf16* qkv,
                              const kernels::bf16* out, const float* state, int B, int T, int C, int NH) {
  const Shape s = Impl::shape_of(B, T, C, NH);
  const Plan& p = impl_->backward(s);
  // Inputs are only read; the variant pack takes void*.
  auto* in = const_cast<kernels::bf16*>(qkv);
  std::unordered_map<int64_t, void*> pack{
      {kQ, in}, {kK, in + C}, {kV, in + 2 * C},
      {kO, const_cast<kernels::bf16*>(out)}, {kdO, const_cast<kernels::bf16*>(dout)},
      {kStats, const_cast<float*>(state)},
      {kdQ, dqkv}, {kdK, dqkv + C}, {kdV, dqkv + 2 * C}};
  impl_->run(p, s, "backward", pack);
}

bool CudnnAttention::backward_deterministic() const { return impl_->deterministic; }

#endif

}  // namespace ouro
