// The [model] section: the model's shape and the device backends' kernel choices. Read by the
// model (gpt2()) and the ops (select_alternates). Like every section it lives in the config layer,
// not beside its component: Config aggregates the sections and the schema
// (src/config/config.cpp) addresses their fields, and the config layer is below every component
// (cmake/OuroLayers.cmake), so the components include this header, never the reverse.
#pragma once
#include <array>
#include <string_view>

#include "ouro/backend.h"
#include "ouro/choice.h"
#include "ouro/model_shape.h"

namespace ouro {

struct ModelSection {
  int n_layer = 4, n_head = 4, n_embd = 128, seq_len = 128, vocab_size = 257;
  // Device backends: the hand-written kernels ("native") or the vendor libraries' alternates.
  MatmulImpl matmul = MatmulImpl::native;           // native | cublas (cuBLASLt)
  AttentionImpl attention = AttentionImpl::native;  // native | cudnn
  // Position information: learned absolute embeddings (GPT-2's wpe), none at all (NoPE: the
  // causal mask alone lets a model infer order), or rotary embeddings on q and k. Only none and
  // rope can attempt sequences longer than any seen in training (design.md section 6).
  PosEncoding pos = PosEncoding::learned;  // learned | none | rope
  double rope_theta = 10000.0;             // rope: the base of the rotation frequencies
  GPT2Config gpt2() const { return {n_layer, n_head, n_embd, seq_len, vocab_size, pos, rope_theta}; }
};

}  // namespace ouro
