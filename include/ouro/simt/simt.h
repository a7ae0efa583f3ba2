// The SIMT emulator's device-side API, included by <ouro/cuda.h> in OURO_SIMT builds after the
// CUDA headers. Kernels should include <ouro/cuda.h>, not this.
#pragma once
#include "ouro/simt/atomics.h"
#include "ouro/simt/builtins.h"
#include "ouro/simt/intrinsics.h"
#include "ouro/simt/launch.h"
#include "ouro/simt/report.h"
#include "ouro/simt/sync.h"
#include "ouro/simt/thread.h"
#include "ouro/simt/warp.h"
#include "ouro/simt/warp_intrinsics.h"
