// Hugging Face GPT-2 directories (config.json + model.safetensors) <-> ouro's internal buffer.
//
// transformers' GPT-2 uses Conv1D layers whose weights are stored (in, out): the transpose of
// our (out, in) matmul weights. Per-layer tensors are separate ("transformer.h.{l}.…") where we
// stack them, and wte holds only the real vocabulary rows where we pad to a multiple of 128.
//
// Only learned positions are GPT-2. A model with model.pos = none or rope is saved in the same
// layout without wpe, but its config.json says "model_type": "ouro_gpt2" (transformers then
// refuses it as a GPT-2) and records "ouro_pos" (and "rope_theta" for rope); reading one back
// requires those keys, and a "gpt2" config.json must not claim any other position encoding.
#include <cmath>
#include <fstream>
#include <sstream>

#include "io/atomic_file.h"
#include "ouro/checkpoint.h"
#include "io/shape_str.h"
#include "ouro/error.h"

namespace fs = std::filesystem;

namespace ouro {
namespace {

constexpr const char* kPrefix = "transformer.";
constexpr const char* kOuroModelType = "ouro_gpt2";  // GPT-2 with model.pos = none | rope

struct NameMap {
  const char* hf;    // name under transformer. (per layer: under transformer.h.{l}.)
  const char* ours;  // internal tensor
  bool transpose;    // Conv1D weight: HF (in, out) vs our (out, in)
};
constexpr NameMap kGlobalNames[] = {
    {"wte.weight", "wte", false}, {"wpe.weight", "wpe", false},
    {"ln_f.weight", "lnfw", false}, {"ln_f.bias", "lnfb", false}};
constexpr NameMap kLayerNames[] = {
    {"ln_1.weight", "ln1w", false},        {"ln_1.bias", "ln1b", false},
    {"attn.c_attn.weight", "qkvw", true},  {"attn.c_attn.bias", "qkvb", false},
    {"attn.c_proj.weight", "attprojw", true}, {"attn.c_proj.bias", "attprojb", false},
    {"ln_2.weight", "ln2w", false},        {"ln_2.bias", "ln2b", false},
    {"mlp.c_fc.weight", "fcw", true},      {"mlp.c_fc.bias", "fcb", false},
    {"mlp.c_proj.weight", "fcprojw", true}, {"mlp.c_proj.bias", "fcprojb", false}};

// One HF tensor and the block of the internal buffer it maps to.
struct Slot {
  std::string name;               // without the "transformer." prefix
  std::vector<int64_t> hf_shape;  // as stored in the file
  size_t offset = 0;              // internal block start (elements)
  size_t numel = 0;
  bool transpose = false;         // internal block is (rows, cols) = hf_shape reversed
};

std::vector<Slot> hf_slots(const GPT2Config& cfg) {
  const auto layout = gpt2_param_layout(cfg);
  std::vector<Slot> slots;
  for (const auto& m : kGlobalNames) {
    if (std::string(m.ours) == "wpe" && !cfg.has_wpe()) continue;
    const auto& p = find_param(layout, m.ours);
    Slot s{m.hf, p.shape, p.offset, p.size, false};
    // Only the real vocabulary rows leave ouro; the padding is ours.
    if (std::string(m.ours) == "wte") {
      s.hf_shape[0] = cfg.vocab_size;
      s.numel = static_cast<size_t>(cfg.vocab_size) * cfg.n_embd;
    }
    slots.push_back(std::move(s));
  }
  for (int l = 0; l < cfg.n_layer; ++l) {
    for (const auto& m : kLayerNames) {
      const auto& p = find_param(layout, m.ours);
      std::vector<int64_t> shape(p.shape.begin() + 1, p.shape.end());  // drop the layer axis
      if (m.transpose) std::swap(shape[0], shape[1]);
      const size_t per_layer = p.size / cfg.n_layer;
      slots.push_back({"h." + std::to_string(l) + "." + m.hf, std::move(shape),
                       p.offset + l * per_layer, per_layer, m.transpose});
    }
  }
  return slots;
}

using io::shape_str;

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// out (cols, rows) = in (rows, cols) transposed.
void transpose(const float* in, float* out, int64_t rows, int64_t cols) {
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) out[c * rows + r] = in[r * cols + c];
}

int positive_int(const nlohmann::json& j, const char* key, const fs::path& where) {
  OURO_CHECK(j.contains(key), "{}: missing key '{}'", where.string(), key);
  const auto& v = j[key];
  OURO_CHECK(v.is_number_integer() && v.get<int64_t>() > 0 && v.get<int64_t>() <= (1 << 30),
             "{}: key '{}' must be a positive integer, got {}", where.string(), key, v.dump());
  return v.get<int>();
}

}  // namespace

nlohmann::json hf_config_json(const GPT2Config& cfg) {
  // GPT2Config's defaults, with our shapes. The model is tied and uses the tanh GELU.
  nlohmann::json j = {
      {"activation_function", "gelu_new"},
      {"architectures", {"GPT2LMHeadModel"}},
      {"attn_pdrop", 0.1},
      {"bos_token_id", cfg.vocab_size - 1},
      {"embd_pdrop", 0.1},
      {"eos_token_id", cfg.vocab_size - 1},
      {"initializer_range", 0.02},
      {"layer_norm_epsilon", 1e-5},
      {"model_type", "gpt2"},
      {"n_ctx", cfg.seq_len},
      {"n_embd", cfg.n_embd},
      {"n_head", cfg.n_head},
      {"n_inner", nullptr},
      {"n_layer", cfg.n_layer},
      {"n_positions", cfg.seq_len},
      {"reorder_and_upcast_attn", false},
      {"resid_pdrop", 0.1},
      {"scale_attn_by_inverse_layer_idx", false},
      {"scale_attn_weights", true},
      {"summary_activation", nullptr},
      {"summary_first_dropout", 0.1},
      {"summary_proj_to_labels", true},
      {"summary_type", "cls_index"},
      {"summary_use_proj", true},
      {"tie_word_embeddings", true},
      {"torch_dtype", "float32"},
      {"use_cache", true},
      {"vocab_size", cfg.vocab_size},
  };
  if (cfg.pos != PosEncoding::learned) {
    j["model_type"] = kOuroModelType;
    j["architectures"] = {"OuroGPT2LMHeadModel"};
    j["ouro_pos"] = pos_encoding_name(cfg.pos);
    if (cfg.pos == PosEncoding::rope) j["rope_theta"] = cfg.rope_theta;
  }
  return j;
}

GPT2Config gpt2_config_from_hf(const nlohmann::json& j, const fs::path& where) {
  const std::string w = where.string();
  OURO_CHECK(j.is_object(), "{}: not a JSON object", w);
  const bool ouro_type = j.contains("model_type") && j["model_type"] == kOuroModelType;
  if (j.contains("model_type") && !ouro_type)
    OURO_CHECK(j["model_type"] == "gpt2",
               "{}: key 'model_type' is {}, only \"gpt2\" (and ouro's own \"{}\") is supported", w,
               j["model_type"].dump(), kOuroModelType);
  GPT2Config cfg;
  // Position encoding: GPT-2 proper has learned positions; only ouro_gpt2 has none or rope.
  if (ouro_type) {
    OURO_CHECK(j.contains("ouro_pos") && j["ouro_pos"].is_string(),
               "{}: model_type \"{}\" needs key 'ouro_pos' (the model.pos it was trained with)", w,
               kOuroModelType);
    const std::string pos = j["ouro_pos"].get<std::string>();
    OURO_CHECK(pos == "none" || pos == "rope",
               "{}: key 'ouro_pos' is \"{}\"; model_type \"{}\" has model.pos none or rope", w, pos,
               kOuroModelType);
    cfg.pos = parse_pos_encoding(pos);
    if (cfg.pos == PosEncoding::rope) {
      OURO_CHECK(j.contains("rope_theta") && j["rope_theta"].is_number() &&
                     j["rope_theta"].get<double>() > 1 && std::isfinite(j["rope_theta"].get<double>()),
                 "{}: model.pos = rope needs key 'rope_theta' (a number > 1), got {}", w,
                 j.contains("rope_theta") ? j["rope_theta"].dump() : "nothing");
      cfg.rope_theta = j["rope_theta"].get<double>();
    }
  } else if (j.contains("ouro_pos")) {
    OURO_CHECK(j["ouro_pos"] == "learned",
               "{}: key 'ouro_pos' is {} but model_type is GPT-2's: Hugging Face GPT-2 has learned "
               "positions only (model.pos = learned)", w, j["ouro_pos"].dump());
  }
  cfg.n_layer = positive_int(j, "n_layer", where);
  cfg.n_head = positive_int(j, "n_head", where);
  cfg.n_embd = positive_int(j, "n_embd", where);
  cfg.seq_len = positive_int(j, j.contains("n_positions") ? "n_positions" : "n_ctx", where);
  cfg.vocab_size = positive_int(j, "vocab_size", where);
  OURO_CHECK(cfg.n_embd % cfg.n_head == 0, "{}: key 'n_embd' ({}) is not divisible by 'n_head' ({})",
             w, cfg.n_embd, cfg.n_head);
  // Bounded dimensions and parameter count, before any buffer is sized from them.
  static constexpr ModelFieldNames kJsonFields = {"key 'n_layer'", "key 'n_head'", "key 'n_embd'",
                                                  "key 'n_positions'", "key 'vocab_size'"};
  check_model_shape(cfg, kJsonFields, w);

  // Settings that would change the function computed: ouro implements exactly one GPT-2.
  if (j.contains("activation_function")) {
    const auto& a = j["activation_function"];
    OURO_CHECK(a == "gelu_new" || a == "gelu_pytorch_tanh",
               "{}: key 'activation_function' is {}; ouro implements the tanh GELU (gelu_new)", w,
               a.dump());
  }
  if (j.contains("layer_norm_epsilon")) {
    const auto& e = j["layer_norm_epsilon"];
    OURO_CHECK(e.is_number() && std::abs(e.get<double>() - 1e-5) <= 1e-8,
               "{}: key 'layer_norm_epsilon' is {}; ouro uses 1e-5", w, e.dump());
  }
  if (j.contains("n_inner") && !j["n_inner"].is_null())
    OURO_CHECK(j["n_inner"] == 4 * cfg.n_embd, "{}: key 'n_inner' is {}; ouro uses 4 * n_embd ({})", w,
               j["n_inner"].dump(), 4 * cfg.n_embd);
  if (j.contains("scale_attn_weights"))
    OURO_CHECK(j["scale_attn_weights"] == true, "{}: key 'scale_attn_weights' must be true", w);
  if (j.contains("scale_attn_by_inverse_layer_idx"))
    OURO_CHECK(j["scale_attn_by_inverse_layer_idx"] == false,
               "{}: key 'scale_attn_by_inverse_layer_idx' must be false", w);
  if (j.contains("tie_word_embeddings"))
    OURO_CHECK(j["tie_word_embeddings"] == true,
               "{}: key 'tie_word_embeddings' is false; untied heads are not supported", w);
  return cfg;
}

void save_hf_model(const fs::path& dir, const GPT2Config& cfg, const std::vector<float>& params) {
  OURO_CHECK(params.size() == gpt2_num_params(cfg),
             "saving '{}': {} parameters given, the config needs {}", dir.string(), params.size(),
             gpt2_num_params(cfg));
  const auto slots = hf_slots(cfg);
  std::vector<std::vector<float>> transposed;  // owns the Conv1D copies; the rest point into params
  transposed.reserve(slots.size());
  std::vector<StTensorIn> tensors;
  for (const auto& s : slots) {
    const float* src = params.data() + s.offset;
    if (s.transpose) {
      auto& buf = transposed.emplace_back(s.numel);
      transpose(src, buf.data(), s.hf_shape[1], s.hf_shape[0]);
      src = buf.data();
    }
    tensors.push_back({kPrefix + s.name, "F32", s.hf_shape, src});
  }
  // transformers refuses safetensors files without format metadata.
  write_safetensors(dir / "model.safetensors", tensors, {{"format", "pt"}});
  io::write_file_atomic(dir / "config.json", hf_config_json(cfg).dump(2) + "\n");
}

// Used by load_model (checkpoint.cpp): a directory with config.json and model.safetensors.
LoadedModel load_hf_model(const fs::path& dir) {
  const fs::path cfg_path = dir / "config.json";
  const fs::path st_path = dir / "model.safetensors";
  const std::string f = st_path.string();
  nlohmann::json j;
  {
    std::ifstream in(cfg_path);
    OURO_CHECK(in, "cannot open '{}'", cfg_path.string());
    try {
      j = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      fail("{}: not valid JSON: {}", cfg_path.string(), e.what());
    }
  }
  LoadedModel out;
  out.config = gpt2_config_from_hf(j, cfg_path);
  const GPT2Config& cfg = out.config;
  out.params.assign(gpt2_num_params(cfg), 0.0f);
  SafeTensors st(st_path);

  // Canonical (unprefixed) name -> name in the file.
  std::map<std::string, std::string> present;
  std::string lm_head;
  for (const auto& name : st.names()) {
    std::string canon = name.rfind(kPrefix, 0) == 0 ? name.substr(std::string(kPrefix).size()) : name;
    if (canon == "lm_head.weight") {
      lm_head = name;
      continue;
    }
    // Causal-mask buffers some transformers versions save; they carry no parameters.
    if (ends_with(canon, ".attn.bias") || ends_with(canon, ".attn.masked_bias")) continue;
    OURO_CHECK(!present.count(canon), "{}: tensor '{}' appears both with and without the '{}' prefix",
               f, canon, kPrefix);
    present[canon] = name;
  }

  for (const auto& s : hf_slots(cfg)) {
    auto it = present.find(s.name);
    OURO_CHECK(it != present.end(), "{}: missing tensor '{}{}'", f, kPrefix, s.name);
    const std::string& name = it->second;
    OURO_CHECK(st.shape(name) == s.hf_shape, "{}: tensor '{}' has shape {}, expected {} (from config.json)",
               f, name, shape_str(st.shape(name)), shape_str(s.hf_shape));
    const std::vector<float> v = st.get_f32(name);
    float* dst = out.params.data() + s.offset;
    if (s.transpose)
      transpose(v.data(), dst, s.hf_shape[0], s.hf_shape[1]);
    else
      std::copy(v.begin(), v.end(), dst);
    present.erase(it);
  }
  OURO_CHECK(present.empty(), "{}: unexpected tensor '{}' (not part of GPT-2)", f,
             present.empty() ? "" : present.begin()->second);

  // A tied head is the same matrix as wte and is redundant; a different one we cannot represent.
  if (!lm_head.empty()) {
    const std::vector<int64_t> want{cfg.vocab_size, cfg.n_embd};
    OURO_CHECK(st.shape(lm_head) == want, "{}: tensor '{}' has shape {}, expected {}", f, lm_head,
               shape_str(st.shape(lm_head)), shape_str(want));
    const std::vector<float> head = st.get_f32(lm_head);
    OURO_CHECK(std::equal(head.begin(), head.end(), out.params.begin()),
               "{}: '{}' differs from the token embedding: untied heads are not supported", f, lm_head);
  }
  return out;
}

}  // namespace ouro
