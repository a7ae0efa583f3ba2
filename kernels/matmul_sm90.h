// The Hopper (sm_90a) GEMM behind kernels/matmul.h: TMA + mbarrier pipeline, warp-specialized
// wgmma (kernels/matmul_sm90.cu). kernels/matmul.cu chooses it; nothing else calls it directly.
#pragma once
#include "kernels/matmul_epilogue.cuh"

namespace ouro::kernels::sm90 {

constexpr int kBK = 64;  // k depth of a pipeline stage: one 128-byte swizzle row of bf16

// Which output tile: automatic (by shape), 128x256 or 128x128.
enum class Sm90Tile { automatic, wide, narrow };

// Whether this process can run the kernel on the current device: on a GPU, compute capability
// 9.0 and a binary that holds sm_90a code for it; in the SIMT emulator, always.
bool gemm_available();
// Whether matmul's automatic choice takes it: gemm_available() on a GPU; in the emulator only
// when OURO_SIMT_ARCH=90 (the emulated device otherwise runs the Ampere kernels, as before).
// OURO_MATMUL_SM90=0 turns it off everywhere (the Ampere kernel then runs on Hopper too).
bool gemm_selected();

// D (M x Nn) = A B, then the epilogue e (kernels/matmul_epilogue.cuh). A is [m][k] when a_kmajor
// else [k][m]; B is [n][k] when b_kmajor else [k][n]; rows dense, their length a multiple of 8,
// pointers 16-byte aligned (the caller checks). Split-K: `splits` slices of k_split (a multiple of
// kBK) write raw fp32 sums to e.partial[slice][m][n] (e.partial must be set when splits > 1).
// False (nothing launched) when the device cannot give the tile its shared memory.
bool gemm(bool a_kmajor, bool b_kmajor, const bf16* A, const bf16* B, int M, int Nn, int K,
          const matmul_detail::Epi& e, Sm90Tile tile, int splits, int k_split, cudaStream_t stream);

}  // namespace ouro::kernels::sm90
