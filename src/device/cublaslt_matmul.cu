// cuBLASLt for the training GEMMs (model.matmul = cublas). Row-major tensors are read as
// column-major transposes, so with W (OC, C), inp (N, C), dout (N, OC), all row-major:
//   forward  out^T (OC, N)  = W^T-as-stored (op T, C x OC) * inp^T (C x N)       + bias (per row)
//   dX       dinp^T (C, N)  = W (C x OC, op N)  * dout^T (OC x N)
//   dW       dW^T (C, OC)  += inp^T (C x N)  * dout (op T of OC x N)             (beta = 1)
//   dbias    db (OC, 1)    += dout^T (OC x N) * ones (N x 1)                      (beta = 1)
// Which GEMMs each op issues, and the plan key of each (shape and the operands' real alignment,
// which the heuristic is told through CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_*), come from
// device/cublaslt_plan.h, host code tested without a GPU. Layouts, descriptors and the
// heuristic's algorithm are cached per key: cuBLASLt's heuristic query costs tens of
// microseconds, a GEMM of the small models less.
#include "device/cublaslt_matmul.h"

#include "device/cublaslt_plan.h"

#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "ouro/error.h"

#if !defined(OURO_SIMT)
#include <cublasLt.h>
#endif

namespace ouro {

#if defined(OURO_SIMT)

struct CublasLtMatmul::Impl {};
CublasLtMatmul::CublasLtMatmul(cudaStream_t) {
  fail("model.matmul = cublas needs the cuda backend (cuBLASLt does not run on the SIMT emulator)");
}
CublasLtMatmul::~CublasLtMatmul() = default;
void CublasLtMatmul::forward(kernels::bf16*, const kernels::bf16*, const kernels::bf16*,
                             const kernels::bf16*, int, int, int) {}
void CublasLtMatmul::backward(kernels::bf16*, kernels::bf16*, kernels::bf16*, const kernels::bf16*,
                              const kernels::bf16*, const kernels::bf16*, int, int, int) {}

#else

namespace {

void check(cublasStatus_t s, const char* what) {
  if (s != CUBLAS_STATUS_SUCCESS)
    fail("cuBLASLt: {} failed: {} ({})", what, cublasLtGetStatusName(s), cublasLtGetStatusString(s));
}

constexpr size_t kWorkspace = size_t(32) << 20;  // what cuBLAS recommends for Hopper

}  // namespace

struct CublasLtMatmul::Impl {
  cudaStream_t stream = nullptr;
  cublasLtHandle_t handle = nullptr;
  void* workspace = nullptr;
  kernels::bf16* ones = nullptr;  // N ones for the bias-gradient GEMV
  int ones_n = 0;

  using Key = GemmPlanKey;
  struct Plan {
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;
    cublasLtMatmulAlgo_t algo{};
  };
  std::map<Key, Plan> plans;

  ~Impl() {
    for (auto& [k, p] : plans) {
      cublasLtMatmulDescDestroy(p.op);
      cublasLtMatrixLayoutDestroy(p.a);
      cublasLtMatrixLayoutDestroy(p.b);
      cublasLtMatrixLayoutDestroy(p.c);
    }
    if (handle) cublasLtDestroy(handle);
    cudaFree(workspace);
    cudaFree(ones);
  }

  const Plan& plan(const Key& key) {
    if (auto it = plans.find(key); it != plans.end()) return it->second;
    const int m = key.m, n = key.n, k = key.k;
    const bool ta = key.ta, tb = key.tb, bias = key.bias;
    Plan p;
    check(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F), "MatmulDescCreate");
    const cublasOperation_t opa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, opb = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &opa, sizeof opa), "TRANSA");
    check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &opb, sizeof opb), "TRANSB");
    const cublasLtEpilogue_t epi = bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_EPILOGUE, &epi, sizeof epi), "EPILOGUE");
    if (bias) {
      const cudaDataType_t bt = CUDA_R_16BF;
      check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, &bt, sizeof bt), "BIAS_DATA_TYPE");
    }
    // Stored (column-major) shapes: A is m x k (or k x m when transposed), B k x n (or n x k).
    check(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_16BF, ta ? k : m, ta ? m : k, ta ? k : m), "layout A");
    check(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_16BF, tb ? n : k, tb ? k : n, tb ? n : k), "layout B");
    check(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_16BF, m, n, m), "layout C");
    cublasLtMatmulPreference_t pref = nullptr;
    check(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
    check(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &kWorkspace,
                                               sizeof kWorkspace), "MAX_WORKSPACE");
    const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align.a},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align.b},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align.c},
        {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align.d}};
    for (const auto& [attr, bytes] : aligns)
      check(cublasLtMatmulPreferenceSetAttribute(pref, attr, &bytes, sizeof bytes), "MIN_ALIGNMENT");
    cublasLtMatmulHeuristicResult_t result{};
    int found = 0;
    check(cublasLtMatmulAlgoGetHeuristic(handle, p.op, p.a, p.b, p.c, p.c, pref, 1, &result, &found),
          "AlgoGetHeuristic");
    cublasLtMatmulPreferenceDestroy(pref);
    OURO_CHECK(found > 0,
               "cuBLASLt: no algorithm for m={} n={} k={} (transa {}, transb {}, bias {}, alignment A {} B {} C {} D {})",
               m, n, k, ta, tb, bias, key.align.a, key.align.b, key.align.c, key.align.d);
    p.algo = result.algo;
    return plans.emplace(key, p).first->second;
  }

  // C (m x n) = alpha op(A) op(B) + beta C [+ bias per row].
  void run(const GemmCall& g) {
    const Plan& p = plan(g.key);
    const void* bias = g.bias;
    if (bias)
      check(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_BIAS_POINTER, &bias, sizeof bias),
            "BIAS_POINTER");
    const void* a = g.a;
    const void* b = g.b_is_ones ? ones_of(g.key.n * g.key.k) : g.b;
    void* c = g.c;
    const float alpha = 1.0f, beta = g.key.accumulate ? 1.0f : 0.0f;
    check(cublasLtMatmul(handle, p.op, &alpha, a, p.a, b, p.b, &beta, c, p.c, c, p.c, &p.algo, workspace,
                         kWorkspace, stream),
          "Matmul");
  }

  const kernels::bf16* ones_of(int n) {
    if (n > ones_n) {
      OURO_CUDA_CHECK(cudaStreamSynchronize(stream));
      OURO_CUDA_CHECK(cudaFree(ones));
      const std::vector<uint16_t> h(n, 0x3F80);  // bf16 1.0
      OURO_CUDA_CHECK(cudaMalloc(&ones, n * sizeof(kernels::bf16)));
      OURO_CUDA_CHECK(cudaMemcpy(ones, h.data(), n * sizeof(kernels::bf16), cudaMemcpyHostToDevice));
      ones_n = n;
    }
    return ones;
  }
};

CublasLtMatmul::CublasLtMatmul(cudaStream_t stream) : impl_(std::make_unique<Impl>()) {
  impl_->stream = stream;
  check(cublasLtCreate(&impl_->handle), "cublasLtCreate");
  OURO_CUDA_CHECK(cudaMalloc(&impl_->workspace, kWorkspace));
}

CublasLtMatmul::~CublasLtMatmul() = default;

void CublasLtMatmul::forward(kernels::bf16* out, const kernels::bf16* inp, const kernels::bf16* weight,
                             const kernels::bf16* bias, int N, int C, int OC) {
  for (const GemmCall& g : cublas_forward_calls(out, inp, weight, bias, N, C, OC)) impl_->run(g);
}

void CublasLtMatmul::backward(kernels::bf16* dinp, kernels::bf16* dweight, kernels::bf16* dbias,
                              const kernels::bf16* dout, const kernels::bf16* inp, const kernels::bf16* weight,
                              int N, int C, int OC) {
  for (const GemmCall& g : cublas_backward_calls(dinp, dweight, dbias, dout, inp, weight, N, C, OC)) impl_->run(g);
}

#endif

}  // namespace ouro
