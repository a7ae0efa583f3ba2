// What CublasLtMatmul asks cuBLASLt for, as host code with no CUDA dependency (tested without a
// GPU, tests/test_device.cpp): the GEMMs each training op issues and, for each, the plan key
// under which its layouts and algorithm are cached.
//
// cuBLASLt's heuristic assumes 256-byte aligned A, B, C and D unless the preference says less
// (CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_{A,B,C,D}_BYTES), and an algorithm chosen for aligned
// pointers may use vector accesses the actual pointers do not allow. The packed parameter and
// gradient buffers hand out slices at element offsets: with n_embd 1600 (gpt2_1558m) every other
// layer's biases and weights sit 128 bytes off a 256-byte boundary. So each GEMM's preference is
// the alignment of its real pointers, and that alignment is part of the plan key: the same shape
// with other alignments gets its own heuristic query.
//
// The bias epilogue (CUBLASLT_EPILOGUE_BIAS) reads the bias vector with 16-byte accesses; a bias
// less aligned than that is added by a rank-1 GEMM instead (out += bias * ones^T).
#pragma once
#include <compare>
#include <cstdint>
#include <vector>

namespace ouro {

// cuBLASLt's default alignment assumption, the most a preference can say.
inline constexpr uint32_t kCublasMaxAlignment = 256;
// What CUBLASLT_EPILOGUE_BIAS needs of the bias pointer.
inline constexpr uint32_t kCublasBiasAlignment = 16;

// The largest power of two (<= 256) that divides the address; 256 for null (no operand).
inline uint32_t pointer_alignment(const void* p) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a == 0) return kCublasMaxAlignment;
  uint32_t align = 1;
  while (align < kCublasMaxAlignment && a % (align * 2) == 0) align *= 2;
  return align;
}

// CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_{A,B,C,D}_BYTES of one GEMM.
struct GemmAlignment {
  uint32_t a = kCublasMaxAlignment, b = kCublasMaxAlignment, c = kCublasMaxAlignment, d = kCublasMaxAlignment;
  auto operator<=>(const GemmAlignment&) const = default;
};

// One cached plan: the shape (column-major m x n x k, op(A), op(B)), the epilogue, beta != 0
// and the operands' alignment.
struct GemmPlanKey {
  int m = 0, n = 0, k = 0;
  bool ta = false, tb = false, bias = false, accumulate = false;
  GemmAlignment align;
  auto operator<=>(const GemmPlanKey&) const = default;
};

// One GEMM as issued: D = C = alpha op(A) op(B) + beta C [+ bias per row]. `ones` marks a B
// operand that is the all-ones vector CublasLtMatmul keeps (its pointer is filled in at run time;
// it comes from cudaMalloc: 256-byte aligned).
struct GemmCall {
  GemmPlanKey key;
  void* c = nullptr;
  const void* a = nullptr;
  const void* b = nullptr;
  const void* bias = nullptr;
  bool b_is_ones = false;
};

inline GemmCall make_gemm_call(void* c, const void* a, const void* b, int m, int n, int k, bool ta, bool tb,
                               const void* bias, bool accumulate, bool b_is_ones = false) {
  GemmCall g;
  g.key = {m, n, k, ta, tb, bias != nullptr, accumulate, {}};
  g.key.align = {pointer_alignment(a), b_is_ones ? kCublasMaxAlignment : pointer_alignment(b), pointer_alignment(c),
                 pointer_alignment(c)};
  g.c = c, g.a = a, g.b = b, g.bias = bias, g.b_is_ones = b_is_ones;
  return g;
}

// Row-major tensors read as column-major transposes, W (OC, C), inp (N, C), out (N, OC):
//   out^T (OC, N) = W^T-as-stored (op T) * inp^T [+ bias per row]
inline std::vector<GemmCall> cublas_forward_calls(void* out, const void* inp, const void* weight, const void* bias,
                                                  int N, int C, int OC) {
  std::vector<GemmCall> calls;
  const bool epilogue = bias && pointer_alignment(bias) >= kCublasBiasAlignment;
  calls.push_back(make_gemm_call(out, weight, inp, OC, N, C, true, false, epilogue ? bias : nullptr, false));
  // A bias the epilogue cannot read: out^T (OC, N) += bias (OC x 1) * ones^T (1 x N).
  if (bias && !epilogue) calls.push_back(make_gemm_call(out, bias, nullptr, OC, N, 1, false, true, nullptr, true, true));
  return calls;
}

//   dinp^T (C, N) = W (C x OC, op N) * dout^T;  dW^T (C, OC) += inp^T * dout (op T);
//   dbias (OC, 1) += dout^T (OC x N) * ones (N x 1)
inline std::vector<GemmCall> cublas_backward_calls(void* dinp, void* dweight, void* dbias, const void* dout,
                                                   const void* inp, const void* weight, int N, int C, int OC) {
  std::vector<GemmCall> calls;
  calls.push_back(make_gemm_call(dinp, weight, dout, C, N, OC, false, false, nullptr, false));
  calls.push_back(make_gemm_call(dweight, inp, dout, C, OC, N, false, true, nullptr, true));
  if (dbias) calls.push_back(make_gemm_call(dbias, dout, nullptr, OC, 1, N, false, false, nullptr, true, true));
  return calls;
}

}  // namespace ouro
