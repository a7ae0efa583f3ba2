// GEMM launchers for the three training layouts, bf16 operands on tensor cores, fp32 accumulation.
// Weights are stored (OC, C) as in ouro::Ops: out[n][o] = sum_i inp[n][i] * w[o][i] + b[o].
// All pointers are device pointers; every call is asynchronous on `stream`.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

enum class Epilogue { none, gelu };

// out (N, OC) = epilogue(inp (N, C) @ weight (OC, C)^T + bias). bias may be null. With
// Epilogue::gelu, pre_gelu (N, OC), when not null, receives the value before the GELU.
void matmul_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C,
                    int OC, cudaStream_t stream, Epilogue epilogue = Epilogue::none,
                    bf16* pre_gelu = nullptr);

// dinp (N, C) = dout (N, OC) @ weight (OC, C)       (OVERWRITTEN)
// dweight (OC, C) += dout^T @ inp (N, C)            (accumulates)
// dbias (OC) += column sums of dout                 (accumulates; may be null)
// scratch: matmul_backward_scratch_bytes(N, C, OC) bytes of device memory (fp32 partial sums).
// The scratch is required even when dbias is null (dW may split K through it: few output tiles,
// long N); 16-byte aligned (cudaMalloc memory is); it may be reused once the stream passes the call.
size_t matmul_backward_scratch_bytes(int N, int C, int OC);
void matmul_backward(bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int N, int C, int OC, void* scratch, cudaStream_t stream);

// Tile configuration. `automatic` (what the overloads above use) picks by device and shape: on a
// Hopper GPU (compute capability 9.0, binary built for sm_90a) the warp-specialized wgmma/TMA
// kernel (kernels/matmul_sm90.cu; 128x256 or 128x128 tiles by shape); elsewhere the Ampere
// mma.sync kernel: the 128x128 tile when it fills the GPU, else 64x64. In the SIMT emulator
// automatic takes the Hopper kernel only with OURO_SIMT_ARCH=90 in the environment;
// OURO_MATMUL_SM90=0 keeps automatic on the Ampere kernel everywhere. Shapes whose
// C or OC is not a multiple of 8 (or operands not 16-byte aligned) always take the simple
// deterministic fp32 kernel. Forcing a tile is for tests and benchmarks: `large` / `small` /
// `simple` (Ampere), `hopper` (the Hopper kernel, tile by shape), `hopper_128x256`,
// `hopper_128x128`, `skinny` (forward only). A forced tile still falls back to simple when the shape does not allow it,
// and a forced Hopper tile to automatic Ampere where the Hopper kernel cannot run
// (matmul_hopper_available()).
//
// Skinny M (decoding): matmul_forward with N <= 64 rows takes the skinny-M kernel
// (kernels/matmul_skinny.cu: weights streamed once in 16-byte loads, any shape and alignment)
// under automatic on every device, unless OURO_MATMUL_SKINNY=0 is set in the environment (the
// switch for comparisons: automatic then chooses as above). Forcing `skinny` with N > 64, or in
// matmul_backward, means automatic. `tiled` is automatic without the skinny-M kernel: what the
// device backend asks for every GEMM but decoding's (Ops::matmul_forward's MatmulHint), so a
// training micro-batch of <= 64 rows rounds as the same rows of a larger batch.
enum class MatmulTile { automatic, large, small, simple, hopper, hopper_128x256, hopper_128x128, skinny, tiled };

// Whether the Hopper kernel can run on the current device (always in the SIMT emulator).
bool matmul_hopper_available();
void matmul_forward(bf16* out, const bf16* inp, const bf16* weight, const bf16* bias, int N, int C,
                    int OC, cudaStream_t stream, Epilogue epilogue, bf16* pre_gelu, MatmulTile tile);
void matmul_backward(bf16* dinp, bf16* dweight, bf16* dbias, const bf16* dout, const bf16* inp,
                     const bf16* weight, int N, int C, int OC, void* scratch, cudaStream_t stream,
                     MatmulTile tile);

}  // namespace ouro::kernels
