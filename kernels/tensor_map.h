// TMA tensor maps for the Hopper kernels (kernels/matmul_sm90.cu, kernels/attention_sm90.cu):
// cuTensorMapEncodeTiled reached through the runtime's driver entry point (nothing links
// libcuda; the SIMT emulator serves the same entry point). Host code only.
#pragma once
#include <cuda.h>

#include "kernels/common.cuh"

namespace ouro::kernels {

using EncodeTiled = CUresult (*)(CUtensorMap*, CUtensorMapDataType, cuuint32_t, void*, const cuuint64_t*,
                                 const cuuint64_t*, const cuuint32_t*, const cuuint32_t*, CUtensorMapInterleave,
                                 CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);

// The driver's cuTensorMapEncodeTiled, or null when the driver does not offer it.
EncodeTiled encode_tiled();

// A 2-D bf16 tensor: `outer` rows of `inner` elements, consecutive rows `row_stride` elements
// apart (>= inner, a multiple of 8), read in boxes of box_inner x box_outer elements with the
// 128B swizzle (box_inner * 2 <= 128), zeros outside the tensor. Throws std::runtime_error naming
// `what` and the shapes when the driver refuses them.
CUtensorMap bf16_tensor_map_128b(const bf16* base, int inner, int outer, size_t row_stride, int box_inner,
                                 int box_outer, const char* what);

}  // namespace ouro::kernels
