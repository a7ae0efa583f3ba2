// The driver entry points the emulator serves through cudaGetDriverEntryPoint (as a CUDA program
// reaches them without linking libcuda): cuTensorMapEncodeTiled, which fills a CUtensorMap with
// the emulator's own description of the tensor (sm90_state.h, TensorMap) after the checks the
// driver documents (CUDA Driver API, "Tensor Map Object Management"). The emulator supports
// rank 1 and 2 tensors (what cp.async.bulk.tensor.2d needs), no interleave, element strides 1;
// anything else is CUDA_ERROR_INVALID_VALUE, as the driver answers for what it cannot encode.
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstring>

#include "simt/sm90_state.h"

namespace {

using ouro::simt::sm90::TensorMap;

uint32_t element_size(CUtensorMapDataType t, bool& is_float) {
  is_float = false;
  switch (t) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8: return 1;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16: return 2;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32:
    case CU_TENSOR_MAP_DATA_TYPE_INT32: return 4;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64:
    case CU_TENSOR_MAP_DATA_TYPE_INT64: return 8;
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT16:
    case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16: is_float = true; return 2;
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32_FTZ:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32_FTZ: is_float = true; return 4;
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT64: is_float = true; return 8;
    default: return 0;
  }
}

CUresult encode_tiled(CUtensorMap* tensor_map, CUtensorMapDataType data_type, cuuint32_t rank, void* global_address,
                      const cuuint64_t* global_dim, const cuuint64_t* global_strides, const cuuint32_t* box_dim,
                      const cuuint32_t* element_strides, CUtensorMapInterleave interleave,
                      CUtensorMapSwizzle swizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill oob_fill) {
  bool is_float = false;
  const uint32_t esize = element_size(data_type, is_float);
  if (!tensor_map || !global_address || !global_dim || !box_dim || esize == 0) return CUDA_ERROR_INVALID_VALUE;
  if (rank < 1 || rank > 2 || (rank > 1 && !global_strides)) return CUDA_ERROR_INVALID_VALUE;
  if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE) return CUDA_ERROR_INVALID_VALUE;
  if (reinterpret_cast<uintptr_t>(global_address) % 16 != 0) return CUDA_ERROR_INVALID_VALUE;
  uint32_t width = 0;
  switch (swizzle) {
    case CU_TENSOR_MAP_SWIZZLE_NONE: width = 0; break;
    case CU_TENSOR_MAP_SWIZZLE_32B: width = 32; break;
    case CU_TENSOR_MAP_SWIZZLE_64B: width = 64; break;
    case CU_TENSOR_MAP_SWIZZLE_128B: width = 128; break;
    default: return CUDA_ERROR_INVALID_VALUE;
  }
  for (cuuint32_t i = 0; i < rank; ++i) {
    if (global_dim[i] == 0 || global_dim[i] > (uint64_t{1} << 32)) return CUDA_ERROR_INVALID_VALUE;
    if (box_dim[i] == 0 || box_dim[i] > 256) return CUDA_ERROR_INVALID_VALUE;
    if (element_strides && element_strides[i] != 1) return CUDA_ERROR_INVALID_VALUE;
  }
  // The inner box is whole 16-byte units, and no wider than the swizzle span.
  if ((box_dim[0] * esize) % 16 != 0) return CUDA_ERROR_INVALID_VALUE;
  if (width != 0 && box_dim[0] * esize > width) return CUDA_ERROR_INVALID_VALUE;
  if (rank > 1) {
    const uint64_t stride = global_strides[0];
    if (stride % 16 != 0 || stride >= (uint64_t{1} << 40) || stride < global_dim[0] * esize)
      return CUDA_ERROR_INVALID_VALUE;
  }
  if (oob_fill == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA && !is_float) return CUDA_ERROR_INVALID_VALUE;

  TensorMap m{};
  m.magic = TensorMap::kMagic;
  m.addr = static_cast<const unsigned char*>(global_address);
  m.dim[0] = global_dim[0];
  m.dim[1] = rank > 1 ? global_dim[1] : 1;
  m.stride1 = rank > 1 ? global_strides[0] : global_dim[0] * esize;
  m.box[0] = box_dim[0];
  m.box[1] = rank > 1 ? box_dim[1] : 1;
  m.esize = esize;
  m.swizzle = width;
  m.rank = rank;
  m.oob_nan = oob_fill == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA;
  m.is_float = is_float;
  std::memset(tensor_map, 0, sizeof *tensor_map);
  std::memcpy(tensor_map, &m, sizeof m);
  return CUDA_SUCCESS;
}

cudaError_t entry_point(const char* symbol, void** func, cudaDriverEntryPointQueryResult* status) {
  if (!symbol || !func) return cudaErrorInvalidValue;
  if (std::strcmp(symbol, "cuTensorMapEncodeTiled") == 0) {
    *func = reinterpret_cast<void*>(&encode_tiled);
    if (status) *status = cudaDriverEntryPointSuccess;
    return cudaSuccess;
  }
  *func = nullptr;
  if (status) *status = cudaDriverEntryPointSymbolNotFound;
  return cudaSuccess;  // as the runtime: the status says the symbol is missing
}

}  // namespace

extern "C" {

cudaError_t cudaGetDriverEntryPoint(const char* symbol, void** func, unsigned long long,
                                    cudaDriverEntryPointQueryResult* status) {
  return entry_point(symbol, func, status);
}

cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** func, unsigned int, unsigned long long,
                                             cudaDriverEntryPointQueryResult* status) {
  return entry_point(symbol, func, status);
}

}  // extern "C"
