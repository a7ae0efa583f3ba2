// State of the emulated CUDA runtime shared with the launcher (last error, function attributes).
#pragma once
#include <cuda_runtime_api.h>

#include <cstddef>

namespace ouro::simt::detail {

// Per host thread, as in the CUDA runtime.
void set_last_error(cudaError_t err);
// Dynamic shared memory a kernel may use: 48 KiB unless cudaFuncSetAttribute raised it.
std::size_t max_dynamic_shared(const void* kernel);

}  // namespace ouro::simt::detail
