// GPT-2's parameter layout (llm.c order), initialisation and FLOP count, and the position
// encoding's names.
#include <unistd.h>

#include <cmath>
#include <optional>
#include <random>

#include <fmt/format.h>

#include "ouro/checked.h"
#include "ouro/error.h"
#include "ouro/model_shape.h"

namespace ouro {

PosEncoding parse_pos_encoding(const std::string& name) {
  if (auto p = parse_choice<PosEncoding>(name)) return *p;
  fail("model.pos: must be learned, none or rope (got '{}')", name);
}

const char* pos_encoding_name(PosEncoding p) {
  return name_of(p).data();  // choice_names' literals: NUL-terminated
}

std::string describe_model(const GPT2Config& c) {
  std::string s = fmt::format("L={} NH={} C={} T={} V={} pos={}", c.n_layer, c.n_head, c.n_embd,
                              c.seq_len, c.vocab_size, pos_encoding_name(c.pos));
  if (c.pos == PosEncoding::rope) s += fmt::format(" rope_theta={}", c.rope_theta);
  return s;
}

const ModelFieldNames kConfigModelFields = {"model.n_layer", "model.n_head", "model.n_embd",
                                             "model.seq_len", "model.vocab_size"};

namespace {

constexpr ModelFieldNames kPlainFields = {"n_layer", "n_head", "n_embd", "seq_len", "vocab_size"};

// One parameter tensor's shape and, for errors, the dimensions it is made of.
struct TensorShape {
  const char* name;
  std::vector<int64_t> shape;
  bool decay;
  const char* fields;  // which dimensions multiply into it: "LC" = n_layer x n_embd, ...
};

std::vector<TensorShape> tensor_shapes(const GPT2Config& c) {
  const int64_t L = c.n_layer, C = c.n_embd, Vp = c.padded_vocab(), T = c.seq_len;
  std::vector<TensorShape> out;
  out.push_back({"wte", {Vp, C}, true, "VC"});
  // none and rope carry no position parameters at all: num_params drops by maxT * C.
  if (c.has_wpe()) out.push_back({"wpe", {T, C}, true, "TC"});
  out.push_back({"ln1w", {L, C}, false, "LC"});
  out.push_back({"ln1b", {L, C}, false, "LC"});
  out.push_back({"qkvw", {L, 3 * C, C}, true, "LC"});
  out.push_back({"qkvb", {L, 3 * C}, false, "LC"});
  out.push_back({"attprojw", {L, C, C}, true, "LC"});
  out.push_back({"attprojb", {L, C}, false, "LC"});
  out.push_back({"ln2w", {L, C}, false, "LC"});
  out.push_back({"ln2b", {L, C}, false, "LC"});
  out.push_back({"fcw", {L, 4 * C, C}, true, "LC"});
  out.push_back({"fcb", {L, 4 * C}, false, "LC"});
  out.push_back({"fcprojw", {L, C, 4 * C}, true, "LC"});
  out.push_back({"fcprojb", {L, C}, false, "LC"});
  out.push_back({"lnfw", {C}, false, "C"});
  out.push_back({"lnfb", {C}, false, "C"});
  return out;
}

// "model.n_layer = 3, model.n_embd = 5" for the dimensions in `fields`.
std::string field_values(const GPT2Config& c, const ModelFieldNames& n, const char* fields) {
  std::string s;
  for (const char* f = fields; *f; ++f) {
    if (!s.empty()) s += ", ";
    switch (*f) {
      case 'L': s += fmt::format("{} = {}", n.n_layer, c.n_layer); break;
      case 'C': s += fmt::format("{} = {}", n.n_embd, c.n_embd); break;
      case 'T': s += fmt::format("{} = {}", n.seq_len, c.seq_len); break;
      case 'V': s += fmt::format("{} = {}", n.vocab_size, c.vocab_size); break;
    }
  }
  return s;
}

// Every check of check_model_shape except physical memory: pure arithmetic, so the layout can
// run it on every call. Returns the parameter count.
uint64_t checked_param_count(const GPT2Config& c, const ModelFieldNames& n, const std::string& where) {
  const std::pair<const char*, int> dims[] = {{n.n_layer, c.n_layer}, {n.n_head, c.n_head},
                                              {n.n_embd, c.n_embd}, {n.seq_len, c.seq_len},
                                              {n.vocab_size, c.vocab_size}};
  for (const auto& [name, v] : dims)
    if (v <= 0 || v > kMaxModelDim)
      fail("{}: {} = {} is out of range (1 to {} = 2^24)", where, name, v, kMaxModelDim);
  if (c.n_embd % c.n_head != 0)
    fail("{}: {} = {} is not a multiple of {} = {}", where, n.n_embd, c.n_embd, n.n_head, c.n_head);
  // Each tensor's size (nothing: it overflows 64 bits), and the total.
  const auto tensors = tensor_shapes(c);
  std::optional<uint64_t> total = 0;
  size_t largest = 0;
  std::vector<std::optional<uint64_t>> sizes;
  for (size_t i = 0; i < tensors.size(); ++i) {
    std::optional<uint64_t> size = 1;
    for (int64_t d : tensors[i].shape) size = size ? checked_mul(*size, static_cast<uint64_t>(d)) : size;
    sizes.push_back(size);
    total = total && size ? checked_add(*total, *size) : std::nullopt;
    const auto& big = sizes[largest];
    if (big && (!size || *size > *big)) largest = i;
  }
  if (!total || *total > kMaxModelParams)
    fail("{}: the model has more than {} = 2^40 parameters, the limit (its largest tensor, {}: {})", where,
         kMaxModelParams, tensors[largest].name, field_values(c, n, tensors[largest].fields));
  return *total;
}

}  // namespace

uint64_t physical_memory_bytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGE_SIZE);
  if (pages <= 0 || page <= 0) return 0;
  return checked_mul(static_cast<uint64_t>(pages), static_cast<uint64_t>(page)).value_or(UINT64_MAX);
}

void check_model_shape(const GPT2Config& c, const ModelFieldNames& n, const std::string& where) {
  const uint64_t params = checked_param_count(c, n, where);
  // Every backend keeps a host fp32 copy of the weights (initialisation, loading, checkpoints).
  const uint64_t bytes = params * 4, mem = physical_memory_bytes();
  if (mem > 0 && bytes > mem)
    fail("{}: the model's {} parameters need {:.1f} GiB as fp32, more than this machine's {:.1f} GiB "
         "of memory ({})",
         where, params, bytes / 1073741824.0, mem / 1073741824.0,
         field_values(c, n, c.has_wpe() ? "LCTV" : "LCV"));
}

std::vector<ParamTensor> gpt2_param_layout(const GPT2Config& c) {
  checked_param_count(c, kPlainFields, "model (" + describe_model(c) + ")");
  std::vector<ParamTensor> out;
  size_t off = 0;
  for (auto& t : tensor_shapes(c)) {
    size_t n = 1;
    for (auto s : t.shape) n *= static_cast<size_t>(s);  // bounded by the check above
    out.push_back({t.name, std::move(t.shape), off, n, t.decay});
    off += n;
  }
  return out;
}

size_t gpt2_num_params(const GPT2Config& c) {
  return checked_param_count(c, kPlainFields, "model (" + describe_model(c) + ")");
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
