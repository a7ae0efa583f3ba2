// Rotary position embedding (model.pos = rope) on the packed qkv activation, in place. Device
// pointers; see kernels/rope.cu for the layout and the thread mapping.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

// Rotates the q and k parts of qkv (B, T, 3C) bf16 in place; v is untouched. Row t of each
// batch is at position pos0 + t. Rotate-half convention (Hugging Face Llama / GPT-NeoX): in each
// head of hd = C / NH (even) dims, the pair (i, i + hd/2), i < hd/2, turns by the angle
// (pos0 + t) * theta^(-2i/hd). Throws std::invalid_argument on a bad shape, an odd head
// dimension, pos0 < 0 or theta not finite and > 1.
void rope_forward(bf16* qkv, int B, int T, int C, int NH, int pos0, double theta, cudaStream_t stream);
// The same with pos0 read by the kernel from device memory (one int >= 0 the caller keeps in
// range): decoding's CUDA Graph replays one launch for every token's position.
void rope_forward_at(bf16* qkv, int B, int T, int C, int NH, const int* pos0_device, double theta,
                     cudaStream_t stream);
// The backward: rotates the dq and dk parts of dqkv (B, T, 3C) by -angle in place.
void rope_backward(bf16* dqkv, int B, int T, int C, int NH, int pos0, double theta, cudaStream_t stream);

}  // namespace ouro::kernels
