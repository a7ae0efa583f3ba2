// libFuzzer target for the model config.json reader (gpt2_config_from_hf, the Hugging Face /
// ouro config of a checkpoint or model directory): arbitrary bytes must parse into a bounded
// model shape or be refused with ouro::Error; never a crash, an nlohmann type error or a
// parameter count that wraps. Most inputs are mutations of a valid config (the input's first
// byte picks which key gets which JSON value) so the fuzzer reaches the checks past the parse.
#include <cstdint>
#include <cstring>
#include <string>

#include <nlohmann/json.hpp>

#include "ouro/checkpoint.h"
#include "ouro/error.h"

namespace {

nlohmann::json value_from(const uint8_t* d, size_t n) {
  if (n == 0) return nullptr;
  switch (d[0] % 8) {
    case 0: return nullptr;
    case 1: return d[0] > 128;
    case 2: {
      int64_t v = d[0];
      if (n > 8) std::memcpy(&v, d + 1, sizeof v);
      return v;
    }
    case 3: return static_cast<int>(d[0]) - 64;
    case 4: return static_cast<double>(d[0]) / 3.0;
    case 5: {
      // ASCII: a parsed config.json holds only valid UTF-8 (nlohmann's parser refuses the rest).
      std::string s;
      for (size_t i = 1; i < n; ++i) s += static_cast<char>(d[i] & 0x7f);
      return s;
    }
    case 6: return nlohmann::json::array({d[0], "x"});
    default: return nlohmann::json::object({{"a", d[0]}});
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  nlohmann::json j;
  if (size > 0 && data[0] % 3 == 0) {
    // Raw JSON text.
    j = nlohmann::json::parse(data + 1, data + size, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return 0;
  } else {
    ouro::GPT2Config base{2, 2, 32, 16, 257};
    if (size > 1 && data[1] % 3 == 1) base.pos = ouro::PosEncoding::rope;
    if (size > 1 && data[1] % 3 == 2) base.pos = ouro::PosEncoding::none;
    j = ouro::hf_config_json(base);
    static const char* keys[] = {"n_layer", "n_head", "n_embd", "n_positions", "n_ctx", "vocab_size",
                                 "model_type", "ouro_pos", "rope_theta", "activation_function",
                                 "layer_norm_epsilon", "n_inner", "scale_attn_weights",
                                 "scale_attn_by_inverse_layer_idx", "tie_word_embeddings"};
    constexpr size_t kKeys = sizeof(keys) / sizeof(keys[0]);
    // Chunks of 10 bytes: one key, one value each.
    for (size_t at = 2; at + 10 <= size; at += 10) {
      const char* key = keys[data[at] % kKeys];
      if (data[at + 1] % 5 == 0) j.erase(key);
      else j[key] = value_from(data + at + 1, 9);
    }
  }
  try {
    const ouro::GPT2Config c = ouro::gpt2_config_from_hf(j, "fuzz/config.json");
    // Whatever was accepted is a shape every size computation handles.
    if (ouro::gpt2_num_params(c) == 0 || ouro::gpt2_param_layout(c).empty()) __builtin_trap();
    (void)ouro::hf_config_json(c).dump();
  } catch (const ouro::Error&) {
  }
  return 0;
}
