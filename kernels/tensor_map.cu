#include "kernels/tensor_map.h"

#include <stdexcept>
#include <string>

namespace ouro::kernels {

EncodeTiled encode_tiled() {
  static const EncodeTiled fn = [] {
    void* p = nullptr;
    cudaDriverEntryPointQueryResult status{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &status) !=
            cudaSuccess ||
        !p || status != cudaDriverEntryPointSuccess) {
      (void)cudaGetLastError();
      return EncodeTiled{nullptr};
    }
    return reinterpret_cast<EncodeTiled>(p);
  }();
  return fn;
}

CUtensorMap bf16_tensor_map_128b(const bf16* base, int inner, int outer, size_t row_stride, int box_inner,
                                 int box_outer, const char* what) {
  CUtensorMap map;
  const cuuint64_t dims[2] = {cuuint64_t(inner), cuuint64_t(outer)};
  const cuuint64_t strides[1] = {cuuint64_t(row_stride) * sizeof(bf16)};
  const cuuint32_t box[2] = {cuuint32_t(box_inner), cuuint32_t(box_outer)};
  const cuuint32_t estrides[2] = {1, 1};
  const EncodeTiled encode = encode_tiled();
  const CUresult r = encode ? encode(&map, CU_TENSOR_MAP_DATA_TYPE_BFLOAT16, 2, const_cast<bf16*>(base), dims,
                                     strides, box, estrides, CU_TENSOR_MAP_INTERLEAVE_NONE,
                                     CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                                     CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
                            : CUDA_ERROR_NOT_SUPPORTED;
  if (r != CUDA_SUCCESS)
    throw std::runtime_error(std::string(what) + ": cuTensorMapEncodeTiled refused a " + std::to_string(outer) +
                             " x " + std::to_string(inner) + " bf16 matrix (row stride " +
                             std::to_string(row_stride) + ") with box " + std::to_string(box_outer) + " x " +
                             std::to_string(box_inner) + " (CUresult " + std::to_string(int(r)) + ")");
  return map;
}

}  // namespace ouro::kernels
