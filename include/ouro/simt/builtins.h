// The CUDA built-in variables, read from the running emulated thread.
//
// Macros rather than variables: each is one TLS load plus a field read, and kernels use them as
// plain expressions (threadIdx.x, blockDim.x * gridDim.x). Included after the CUDA headers,
// which use some of these names for their own locals.
#pragma once
#include "ouro/simt/thread.h"

#define threadIdx (::ouro::simt::this_thread().thread_idx)
#define blockIdx (::ouro::simt::this_thread().block_idx)
#define blockDim (::ouro::simt::this_thread().block_dim)
#define gridDim (::ouro::simt::this_thread().grid_dim)
inline constexpr int warpSize = 32;

// Attributes nvcc understands and g++ must ignore.
#ifndef __launch_bounds__
#define __launch_bounds__(...)
#endif
