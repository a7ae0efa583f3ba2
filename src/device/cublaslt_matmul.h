// model.matmul = cublas: the three training GEMMs through cuBLASLt (bf16 operands, fp32
// compute), the vendor alternate the native kernels are measured against. Only the cuda half
// of the device backend has it; the simt half's constructor throws.
#pragma once
#include <ouro/cuda.h>

#include <map>
#include <memory>
#include <tuple>

#include "kernels/common.cuh"

namespace ouro {

class CublasLtMatmul {
 public:
  explicit CublasLtMatmul(cudaStream_t stream);
  ~CublasLtMatmul();
  CublasLtMatmul(const CublasLtMatmul&) = delete;
  CublasLtMatmul& operator=(const CublasLtMatmul&) = delete;

  // Same contracts as kernels::matmul_forward / matmul_backward (Ops semantics).
  void forward(kernels::bf16* out, const kernels::bf16* inp, const kernels::bf16* weight,
               const kernels::bf16* bias, int N, int C, int OC);
  void backward(kernels::bf16* dinp, kernels::bf16* dweight, kernels::bf16* dbias,
                const kernels::bf16* dout, const kernels::bf16* inp, const kernels::bf16* weight,
                int N, int C, int OC);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace ouro
