// Fused classifier: softmax, cross-entropy and dlogits in one pass over each row of logits
// (N, Vp), never storing the probabilities; the loss covers the real vocabulary V only.
#pragma once
#include "kernels/common.cuh"

namespace ouro::kernels {

// losses[n] = -log softmax(logits[n, :V])[targets[n]] (0 when targets[n] < 0). When dloss != 0,
// logits are REPLACED by dlogits = (softmax - onehot) * dloss over :V and 0 over the padding
// (a row whose target is < 0 gets all zeros). targets: device ints.
void classifier(bf16* logits, float* losses, const int* targets, int N, int V, int Vp, float dloss,
                cudaStream_t stream);

}  // namespace ouro::kernels
