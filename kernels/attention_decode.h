// Split-KV flash decoding: attention of a few new tokens over a KV cache, the cache split across
// blocks (attention_decode.cu). Same contract as attention_kv (attention.h), which stays as the
// one-warp-per-head reference for tests and benchmarks. Device pointers; async on `stream`.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

// Number of KV splits for a decode call: a function of the shape only (never of the device), so
// results are bitwise reproducible run to run and across GPUs. n_keys = pos0 + Tn (the longest
// row's cache length).
int attention_decode_splits(int B, int Tn, int NH, int n_keys);

// Scratch for the partial results: splits * B * Tn * NH * (hd + 2) floats, rounded to 256 bytes.
size_t attention_decode_scratch_bytes(int B, int Tn, int pos0, int C, int NH);

// qkv (B, Tn, 3C) for the Tn new tokens at positions pos0..; their k and v are written into
// kcache / vcache (B, Tmax, C); out (B, Tn, C) attends causally over cache positions <= its own.
// Any head dim 1..256 (C % NH == 0); no alignment requirement. scratch: see above.
void attention_decode(bf16* out, const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn, int pos0, int Tmax,
                      int C, int NH, void* scratch, cudaStream_t stream);

// The same with pos0 read by the kernels from device memory (an int the caller keeps in
// 0..Tmax-Tn), for decoding inside a CUDA Graph: one captured launch serves every position, with
// bitwise attention_decode's result. The grid and the scratch are those of a full cache:
// attention_decode_at_scratch_bytes (= attention_decode_scratch_bytes at pos0 = Tmax - Tn, the
// most any position needs), a size that does not change from token to token.
size_t attention_decode_at_scratch_bytes(int B, int Tn, int Tmax, int C, int NH);
void attention_decode_at(bf16* out, const bf16* qkv, bf16* kcache, bf16* vcache, int B, int Tn,
                         const int* pos0_device, int Tmax, int C, int NH, void* scratch, cudaStream_t stream);

}  // namespace ouro::kernels
