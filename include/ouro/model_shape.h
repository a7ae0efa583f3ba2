// The model's description, with no backend in sight: GPT-2's shape (GPT2Config and its limits),
// the position encoding's names, the flat parameter buffer's layout (llm.c's order),
// initialisation and FLOP count. The config and io layers read and write shapes and layouts, so
// this sits below them (layer model_shape, src/model_shape/); the model itself is ouro/model.h.
#pragma once
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "ouro/choice.h"

namespace ouro {

// How the model knows where a token is (config key model.pos).
//  learned: GPT-2's wpe (maxT, C) added to the token embedding; cannot represent a position it
//           was never trained on.
//  none:    no position signal at all (NoPE): the causal mask alone lets the model infer order.
//  rope:    rotary embeddings applied to q and k of every head after the qkv projection
//           (Ops::rope_forward), so attention scores depend on relative positions only.
enum class PosEncoding : uint8_t { learned, none, rope };
constexpr std::array<std::string_view, 3> choice_names(PosEncoding) { return {"learned", "none", "rope"}; }
// "learned" | "none" | "rope"; anything else is an error naming model.pos.
PosEncoding parse_pos_encoding(const std::string& name);
const char* pos_encoding_name(PosEncoding p);

struct GPT2Config {
  int n_layer = 0;
  int n_head = 0;
  int n_embd = 0;
  int seq_len = 0;     // max sequence length (learned: the number of learned positions)
  int vocab_size = 0;  // real vocabulary
  PosEncoding pos = PosEncoding::learned;
  double rope_theta = 10000.0;  // rope: the base of the rotation frequencies (unused otherwise)
  int padded_vocab() const { return (vocab_size + 127) / 128 * 128; }
  bool has_wpe() const { return pos == PosEncoding::learned; }
  // Equal when the two configs compute the same function on the same parameters: rope_theta
  // counts only for rope (a learned checkpoint loads whatever model.rope_theta says).
  bool operator==(const GPT2Config& o) const {
    return n_layer == o.n_layer && n_head == o.n_head && n_embd == o.n_embd &&
           seq_len == o.seq_len && vocab_size == o.vocab_size && pos == o.pos &&
           (pos != PosEncoding::rope || rope_theta == o.rope_theta);
  }
};
// "L=.. NH=.. C=.. T=.. V=.. pos=.." (rope: theta too), for errors that compare two models.
std::string describe_model(const GPT2Config& cfg);

// Limits on a model's shape. Shapes come from configs, config.json files and llm.c headers, all
// untrusted; each is checked against these before any size is derived from it.
constexpr int kMaxModelDim = 1 << 24;       // n_layer, n_head, n_embd, seq_len, vocab_size each
constexpr uint64_t kMaxModelParams = uint64_t{1} << 40;  // parameters, vocabulary padding included
// What a shape's source calls each dimension, so that errors name the key or field at fault:
// {"model.n_layer", ...} for a config, {"n_layer", ...} for config.json, header fields for llm.c.
struct ModelFieldNames {
  const char* n_layer;
  const char* n_head;
  const char* n_embd;
  const char* seq_len;
  const char* vocab_size;
};
extern const ModelFieldNames kConfigModelFields;  // model.n_layer, ... (the TOML keys)
// Refuses a shape that no run could hold: a dimension <= 0 or above kMaxModelDim, n_embd not a
// multiple of n_head, more than kMaxModelParams parameters, or fp32 weights larger than this
// machine's physical memory. The error starts with `where` and names the fields responsible.
void check_model_shape(const GPT2Config& cfg, const ModelFieldNames& names, const std::string& where);
// Bytes of physical memory on this machine (0 when unknown).
uint64_t physical_memory_bytes();

// The parameter tensors, in buffer order. Per-layer tensors are stacked over layers:
// name        shape
// wte         (Vp, C)
// wpe         (maxT, C)      only with pos = learned: none and rope have no such tensor
// ln1w, ln1b  (L, C)
// qkvw        (L, 3C, C)     qkvb (L, 3C)
// attprojw    (L, C, C)      attprojb (L, C)
// ln2w, ln2b  (L, C)
// fcw         (L, 4C, C)     fcb (L, 4C)
// fcprojw     (L, C, 4C)     fcprojb (L, C)
// lnfw, lnfb  (C)
struct ParamTensor {
  std::string name;
  std::vector<int64_t> shape;
  size_t offset = 0;  // elements from the start of the buffer
  size_t size = 0;    // elements
  bool decay = false; // weight decay applies (2-D per layer: embeddings and matmul weights)
};
// Both fail (never wrap) when a dimension is out of range or the count exceeds kMaxModelParams.
std::vector<ParamTensor> gpt2_param_layout(const GPT2Config& cfg);
size_t gpt2_num_params(const GPT2Config& cfg);  // including vocabulary padding
const ParamTensor& find_param(const std::vector<ParamTensor>& layout, const std::string& name);
// GPT-2's initialisation (normal 0.02, residual projections scaled by 1/sqrt(2L), LayerNorm
// weight 1, biases 0, padded vocabulary rows 0), deterministic from the seed. Host fp32.
std::vector<float> gpt2_init_params(const GPT2Config& cfg, uint64_t seed);
// FLOPs of one training step token (forward + backward), for MFU and benchmarks.
double gpt2_flops_per_token(const GPT2Config& cfg, int T);

}  // namespace ouro
