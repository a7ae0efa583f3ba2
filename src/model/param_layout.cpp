// GPT-2's parameter layout (llm.c order), initialisation and FLOP count, and the position
// encoding's names.
#include <cmath>
#include <random>

#include <fmt/format.h>

#include "ouro/error.h"
#include "ouro/model.h"

namespace ouro {

PosEncoding parse_pos_encoding(const std::string& name) {
  if (name == "learned") return PosEncoding::learned;
  if (name == "none") return PosEncoding::none;
  if (name == "rope") return PosEncoding::rope;
  fail("model.pos: must be learned, none or rope (got '{}')", name);
}

const char* pos_encoding_name(PosEncoding p) {
  switch (p) {
    case PosEncoding::learned: return "learned";
    case PosEncoding::none: return "none";
    case PosEncoding::rope: return "rope";
  }
  return "?";
}

std::string describe_model(const GPT2Config& c) {
  std::string s = fmt::format("L={} NH={} C={} T={} V={} pos={}", c.n_layer, c.n_head, c.n_embd,
                              c.seq_len, c.vocab_size, pos_encoding_name(c.pos));
  if (c.pos == PosEncoding::rope) s += fmt::format(" rope_theta={}", c.rope_theta);
  return s;
}

std::vector<ParamTensor> gpt2_param_layout(const GPT2Config& c) {
  const int64_t L = c.n_layer, C = c.n_embd, Vp = c.padded_vocab(), T = c.seq_len;
  std::vector<ParamTensor> out;
  size_t off = 0;
  auto add = [&](const char* name, std::vector<int64_t> shape, bool decay) {
    size_t n = 1;
    for (auto s : shape) n *= static_cast<size_t>(s);
    out.push_back({name, std::move(shape), off, n, decay});
    off += n;
  };
  add("wte", {Vp, C}, true);
  // none and rope carry no position parameters at all: num_params drops by maxT * C.
  if (c.has_wpe()) add("wpe", {T, C}, true);
  add("ln1w", {L, C}, false);
  add("ln1b", {L, C}, false);
  add("qkvw", {L, 3 * C, C}, true);
  add("qkvb", {L, 3 * C}, false);
  add("attprojw", {L, C, C}, true);
  add("attprojb", {L, C}, false);
  add("ln2w", {L, C}, false);
  add("ln2b", {L, C}, false);
  add("fcw", {L, 4 * C, C}, true);
  add("fcb", {L, 4 * C}, false);
  add("fcprojw", {L, C, 4 * C}, true);
  add("fcprojb", {L, C}, false);
  add("lnfw", {C}, false);
  add("lnfb", {C}, false);
  return out;
}

size_t gpt2_num_params(const GPT2Config& c) {
  auto l = gpt2_param_layout(c);
  return l.back().offset + l.back().size;
}

const ParamTensor& find_param(const std::vector<ParamTensor>& layout, const std::string& name) {
  for (auto& p : layout)
    if (p.name == name) return p;
  fail("no parameter tensor named '{}'", name);
}

std::vector<float> gpt2_init_params(const GPT2Config& c, uint64_t seed) {
  auto layout = gpt2_param_layout(c);
  std::vector<float> p(gpt2_num_params(c), 0.0f);
  std::mt19937_64 rng(seed);
  const float std_base = 0.02f;
  const float std_resid = std_base / std::sqrt(2.0f * static_cast<float>(c.n_layer));
  for (const auto& t : layout) {
    float* x = p.data() + t.offset;
    if (t.name == "ln1w" || t.name == "ln2w" || t.name == "lnfw") {
      std::fill(x, x + t.size, 1.0f);
    } else if (t.decay) {
      float sd = (t.name == "attprojw" || t.name == "fcprojw") ? std_resid : std_base;
      std::normal_distribution<float> nd(0.0f, sd);
      // Only the real vocabulary rows of wte get values: padding stays zero forever.
      size_t n = t.name == "wte" ? static_cast<size_t>(c.vocab_size) * c.n_embd : t.size;
      for (size_t i = 0; i < n; ++i) x[i] = nd(rng);
    }
  }
  return p;
}

double gpt2_flops_per_token(const GPT2Config& c, int T) {
  // 6 FLOPs per matmul weight per token (forward 2, backward 4), plus attention's
  // QK^T and AV: 2 * 2 * T * C forward per layer (causal half counted as full, as PaLM does),
  // tripled for forward + backward. Embedding lookups are free; the classifier is a matmul.
  const double C = c.n_embd, L = c.n_layer, Vp = c.padded_vocab();
  const double matmul_weights = L * (3 * C * C + C * C + 4 * C * C + 4 * C * C) + Vp * C;
  const double attn = L * 2.0 * 2.0 * T * C;
  return 6.0 * matmul_weights + 3.0 * attn;
}

}  // namespace ouro
