// The skinny-M forward GEMM for decoding (kernels/matmul_skinny.cu): out (M, Nn) =
// epilogue(A (M, K) @ W (Nn, K)^T) for M <= kSkinnyMaxM rows, with each weight byte read once per
// call in 16-byte loads. kernels/matmul.cu's matmul_forward chooses it by shape (M <= 64) under
// MatmulTile::automatic (the device backend asks for that only for decoding's GEMMs) unless
// OURO_MATMUL_SKINNY=0 is set in the environment (the comparison switch).
#pragma once
#include "kernels/matmul_epilogue.cuh"

namespace ouro::kernels::skinny {

constexpr int kSkinnyMaxM = 64;

// False when OURO_MATMUL_SKINNY=0 is set (an EnvSwitch (ouro/env_switch.h): read once, again after
// ouro::reread_switches(), so a test or a bench can flip it).
bool enabled();

// How many GEMMs this process has run through the skinny-M kernel (all threads): tests check
// which GEMMs take it.
uint64_t calls();

// Any K, Nn >= 1 and 1 <= M <= kSkinnyMaxM; any alignment (16-byte weight loads need K % 8 == 0
// and 16-byte aligned A and W, else 2-byte loads). e.partial must be null (no split-K partials).
void gemm(const bf16* A, const bf16* W, int M, int Nn, int K, const matmul_detail::Epi& e, cudaStream_t stream);

}  // namespace ouro::kernels::skinny
