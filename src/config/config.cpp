// Config loading: one schema table drives parsing, validation, overrides, printing and diffing,
// so a key added here is automatically checked, overridable and saved in checkpoints.
#include "ouro/config.h"

#include <cmath>
#include <filesystem>
#include <cstdlib>
#include <limits>
#include <optional>
#include <sstream>
#include <string_view>

#include <fmt/ranges.h>

#include "config/config_keys.h"
#include "config/toml.h"

#include "ouro/error.h"

namespace ouro {
namespace {

// Choice: an enum with a fixed set of named values (ouro/choice.h), read and written by name.
enum class Kind { Int, Int64, Float, String, Bool, Choice };

struct KeyDef {
  const char* section;
  const char* key;
  Kind kind;
  void* (*field)(Config&);
  // What the key accepts, in words ("> 0", "[0, 1]"); for a choice, its enum's names separated
  // by '|' ("native|cublas"), in the enum's order: a value's index in this list is the enum value.
  std::string allowed;
  const char* description;  // one line: what the key sets
  // Choice: the field's enum value as its index in `allowed`, and back.
  int (*get_choice)(const Config&) = nullptr;
  void (*set_choice)(Config&, int) = nullptr;
  std::string full() const { return std::string(section) + "." + key; }
  bool is_choice() const { return kind == Kind::Choice; }
  std::vector<std::string> choices() const {
    std::vector<std::string> out;
    std::stringstream ss(allowed);
    for (std::string c; std::getline(ss, c, '|');) out.push_back(c);
    return out;
  }
};

#define OURO_KEY(sec, name, kind, allowed, description) \
  KeyDef { #sec, #name, Kind::kind, [](Config& c) -> void* { return &c.sec.name; }, allowed, description }
// A choice key: its allowed values are its enum's names (choice_names next to the enum).
#define OURO_CHOICE(sec, name, description)                                                       \
  KeyDef {                                                                                        \
    #sec, #name, Kind::Choice, [](Config& c) -> void* { return &c.sec.name; },                   \
        choice_list<decltype(Config{}.sec.name)>(), description,                                 \
        [](const Config& c) { return static_cast<int>(c.sec.name); },                           \
        [](Config& c, int v) { c.sec.name = static_cast<decltype(Config{}.sec.name)>(v); }       \
  }

// Every key, section by section. README.md's key table is generated from it
// (config_keys_markdown; test_config checks that the README says the same).
const std::vector<KeyDef>& schema() {
  static const std::vector<KeyDef> keys = {
      OURO_KEY(model, n_layer, Int, "> 0",
               "transformer blocks"),
      OURO_KEY(model, n_head, Int, "> 0",
               "attention heads per block"),
      OURO_KEY(model, n_embd, Int, "> 0, a multiple of n_head",
               "width of the residual stream"),
      OURO_KEY(model, seq_len, Int, "> 0",
               "positions the model holds (the context length)"),
      OURO_KEY(model, vocab_size, Int, "> 0",
               "real vocabulary (storage pads to a multiple of 128)"),
      OURO_CHOICE(model, matmul,
               "matmul on the device backends: the hand-written kernels or cuBLASLt"),
      OURO_CHOICE(model, attention,
               "attention on the device backends: the hand-written kernels or cuDNN flash attention"),
      OURO_CHOICE(model, pos,
               "position encoding: GPT-2's learned wpe, none (NoPE) or rotary"),
      OURO_KEY(model, rope_theta, Float, "> 1, finite",
               "rope: base of the rotation frequencies"),
      OURO_KEY(train, steps, Int64, ">= 0",
               "optimizer steps of the whole run"),
      OURO_KEY(train, batch_size, Int, "> 0",
               "rows per micro-batch (per rank)"),
      OURO_KEY(train, seq_len, Int, "0..model.seq_len",
               "training sequence length; 0 = model.seq_len"),
      OURO_KEY(train, grad_accum, Int, "> 0",
               "micro-batches per optimizer step"),
      OURO_KEY(train, lr, Float, "> 0, fits fp32",
               "peak learning rate"),
      OURO_KEY(train, min_lr_frac, Float, "[0, 1]",
               "the schedule's floor, as a fraction of lr"),
      OURO_KEY(train, warmup_steps, Int64, ">= 0",
               "linear warmup steps"),
      OURO_CHOICE(train, schedule,
               "learning-rate schedule after warmup"),
      OURO_KEY(train, decay_frac, Float, "(0, 1]",
               "wsd: the final fraction of steps spent decaying"),
      OURO_KEY(train, weight_decay, Float, ">= 0, fits fp32",
               "AdamW weight decay (matrices and embeddings only)"),
      OURO_KEY(train, beta1, Float, "[0, 1)",
               "AdamW first-moment decay"),
      OURO_KEY(train, beta2, Float, "[0, 1)",
               "AdamW second-moment decay"),
      OURO_KEY(train, eps, Float, "> 0, fits fp32",
               "AdamW epsilon"),
      OURO_KEY(train, grad_clip, Float, ">= 0",
               "global gradient-norm clip; 0 = off"),
      OURO_KEY(train, seed, Int64, "any",
               "seed of initialisation, data order and sampling"),
      OURO_KEY(train, max_bad_steps, Int, "> 0",
               "consecutive non-finite steps before the run aborts"),
      OURO_KEY(train, eval_every, Int64, ">= 0",
               "steps between validation passes; 0 = off"),
      OURO_KEY(train, eval_batches, Int, "> 0",
               "batches per validation pass"),
      OURO_KEY(train, log_every, Int64, "> 0",
               "steps between log lines"),
      OURO_KEY(train, recompute_residual, Bool, "true, false",
               "recompute each layer's residual2 in the backward: ~3% more FLOPs, a larger micro-batch fits"),
      OURO_KEY(train, cuda_graph, Bool, "true, false",
               "device backends: capture the training step once as CUDA Graphs and replay it (data-parallel runs too)"),
      OURO_KEY(data, train, String, "path or glob",
               "training shards: a shard, a directory of shards or a glob"),
      OURO_KEY(data, val, String, "path or glob",
               "validation shards"),
      OURO_KEY(data, tokenizer, String, "path",
               "the tokenizer the shards were prepared with; empty = byte-level"),
      OURO_KEY(data, shuffle, Bool, "true, false",
               "read each epoch's windows in a seeded random order (false: file order)"),
      OURO_KEY(run, out_dir, String, "non-empty path",
               "the run directory: checkpoints, logs, metrics"),
      OURO_CHOICE(run, device,
               "the backend (see Devices)"),
      OURO_KEY(run, threads, Int, ">= 0",
               "OpenMP/BLAS threads; 0 = all cores"),
      OURO_KEY(checkpoint, every, Int64, ">= 0",
               "steps between checkpoints; 0 = at the end only"),
      OURO_KEY(checkpoint, keep, Int, ">= 0",
               "newest checkpoints kept; 0 = all"),
      OURO_KEY(sample, every, Int64, ">= 0",
               "steps between samples printed during training; 0 = never"),
      OURO_KEY(sample, max_tokens, Int, "> 0",
               "tokens per sample"),
      OURO_KEY(sample, temperature, Float, ">= 0",
               "sampling temperature; 0 = greedy"),
      OURO_KEY(sample, top_k, Int, ">= 0",
               "top-k filter; 0 = off"),
      OURO_KEY(sample, top_p, Float, "(0, 1]",
               "nucleus filter; 1 = off"),
      OURO_KEY(sample, prompt, String, "text",
               "the sample's prompt"),
      OURO_KEY(dist, zero, Int, "0, 1",
               "1: ZeRO-1 (gradients reduce-scattered, AdamW sharded, weights all-gathered)"),
      OURO_KEY(dist, timeout_s, Float, "> 0",
               "seconds before a stuck collective aborts the job"),
      OURO_CHOICE(dist, init,
               "how the device backends' ranks meet (see Multi-GPU)"),
      OURO_KEY(dist, init_path, String, "path",
               "dist.init = file: the rendezvous file on a shared file system"),
      OURO_KEY(dist, init_addr, String, "host:port",
               "dist.init = tcp: where rank 0 listens"),
      OURO_KEY(dist, bucket_mb, Float, ">= 0",
               "gradient bucket size in MiB, overlapped with the backward; 0 = one exchange"),
      OURO_KEY(loop, rounds, Int, ">= 0",
               "self-improvement rounds; 0 = plain training"),
      OURO_CHOICE(loop, mode,
               "loop; baseline (same FLOPs, real data only); replace (the collapse arm)"),
      OURO_KEY(loop, start_step, Int64, ">= 0",
               "pretraining steps on real data before the first round"),
      OURO_KEY(loop, round_steps, Int64, "> 0",
               "training steps per round on the mix"),
      OURO_KEY(loop, prompts, Int, "> 0",
               "prompts per round, over all ranks"),
      OURO_KEY(loop, k, Int, "> 0",
               "samples per prompt"),
      OURO_KEY(loop, prompt_tokens, Int, "> 0, < model.seq_len (text)",
               "text: length of the real-text prefix used as a prompt"),
      OURO_KEY(loop, max_new_tokens, Int, "1..2^24",
               "tokens generated per sample at most"),
      OURO_KEY(loop, temperature, Float, "any",
               "generation temperature"),
      OURO_KEY(loop, top_k, Int, "any",
               "generation top-k; 0 = off"),
      OURO_KEY(loop, top_p, Float, "any",
               "generation nucleus filter; 1 = off"),
      OURO_KEY(loop, syn_frac, Float, "[0, 1]",
               "fraction of each batch's rows drawn from the buffer"),
      OURO_KEY(loop, task, String, "empty, add, sort, copy, copyd, rev, revpad, file",
               "prompts: real-text prefixes (empty), a built-in task's problems, or task_file's"),
      OURO_KEY(loop, task_min, Int, "1..task_max",
               "easiest difficulty of the task's prompts (round 0)"),
      OURO_KEY(loop, task_max, Int, ">= task_min",
               "hardest difficulty of the task's prompts (round 0)"),
      OURO_KEY(loop, task_grow, Int, ">= 0",
               "added to task_min and task_max per round (a curriculum)"),
      OURO_KEY(loop, task_file, String, "a path; exactly when task = file",
               "task = file: JSONL of {prompt, answer?, difficulty?} per line"),
      OURO_KEY(loop, verifier_cmd, String, "a command; needs a task",
               "checker run once per round: JSONL {prompt, sample} in, one score per line out"),
      OURO_KEY(loop, verifier_shell, Bool, "true, false",
               "run verifier_cmd through /bin/sh -c (default: no shell)"),
      OURO_KEY(loop, verifier_timeout_s, Float, "> 0",
               "seconds per verifier_cmd run; then it is killed and the run stops"),
      OURO_KEY(loop, scorer, String, "comma list",
               "logprob_band, ref_logprob, min_prob, majority, verifier, answer_length, accept_all"),
      OURO_KEY(loop, band_lo, Float, "[0, band_hi)",
               "lower quantile of length-normalized log-prob kept"),
      OURO_KEY(loop, band_hi, Float, "(band_lo, 1]",
               "upper quantile of length-normalized log-prob kept"),
      OURO_KEY(loop, min_token_prob, Float, "any",
               "min_prob scorer: every token at least this likely"),
      OURO_KEY(loop, majority_plausible_only, Bool, "true, false",
               "majority scorer: only answers of a plausible form (answer_length) vote"),
      OURO_KEY(loop, majority_min_votes, Int, "1..k",
               "majority scorer: the winning answer needs at least this many of the k votes"),
      OURO_KEY(loop, dedup_n, Int, "> 0",
               "n-gram size for Jaccard dedup"),
      OURO_CHOICE(loop, ref,
               "ref_logprob: the reference weights (loop start, or ref_lag rounds ago)"),
      OURO_KEY(loop, ref_lag, Int, ">= 1",
               "ref = lagged: rounds back"),
      OURO_KEY(loop, dedup_threshold, Float, "any",
               "reject when Jaccard with the buffer or real data >= this"),
      OURO_KEY(loop, max_repeat, Float, "any",
               "reject when one n-gram takes this fraction of a sample"),
      OURO_KEY(loop, min_new_tokens, Int, "any",
               "reject samples shorter than this"),
      OURO_KEY(loop, per_prompt_cap, Int, "> 0",
               "accepted samples per prompt at most"),
      OURO_KEY(loop, buffer_tokens, Int64, "> 0",
               "replay buffer cap in tokens"),
      OURO_CHOICE(loop, evict,
               "which samples leave a full buffer first"),
      OURO_KEY(loop, reuse_limit, Int, "> 0",
               "rounds of use before a sample leaves the buffer"),
      OURO_KEY(loop, guard_tolerance, Float, ">= 0",
               "relative worsening of val loss (or its tail) that rolls a round back"),
      OURO_KEY(loop, tail_frac, Float, "(0, 1]",
               "the hardest fraction of validation windows (the tail guard)"),
      OURO_KEY(loop, accept_min, Float, "[0, accept_max]",
               "accept rate below this rolls the round back"),
      OURO_KEY(loop, accept_max, Float, "[accept_min, 1]",
               "accept rate above this rolls the round back"),
      OURO_KEY(loop, diversity_guard, Float, "[0, 1]",
               "text rounds: share of the real continuations' diversity kept; 0 = off"),
  };
  return keys;
}
#undef OURO_KEY
#undef OURO_CHOICE

const KeyDef* find_key(std::string_view section, std::string_view key) {
  for (const auto& k : schema())
    if (section == k.section && key == k.key) return &k;
  return nullptr;
}

bool is_section(std::string_view s) {
  for (const auto& k : schema())
    if (s == k.section) return true;
  return false;
}

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::Int: case Kind::Int64: return "an integer";
    case Kind::Float: return "a number";
    case Kind::String: case Kind::Choice: return "a string";
    case Kind::Bool: return "true or false";
  }
  return "?";
}

const char* node_type_name(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string: return "a string";
    case toml::node_type::integer: return "an integer";
    case toml::node_type::floating_point: return "a float";
    case toml::node_type::boolean: return "a boolean";
    case toml::node_type::array: return "an array";
    case toml::node_type::table: return "a table";
    default: return "a date/time";
  }
}

// TOML strings are UTF-8, paths are bytes. A string value that is not valid UTF-8 (a path
// named in another encoding) is written as NUL + the hex of its bytes, which no path or other
// value can begin with, and read back byte for byte: --resume compares data.train as it was.
bool valid_utf8(std::string_view s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    size_t n = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    uint32_t cp = n == 1 ? c : c & (0x7F >> n);
    for (size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 0x2) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    const uint32_t min_cp[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_cp[n] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n;
  }
  return true;
}

std::string toml_safe_string(const std::string& v) {
  if (valid_utf8(v) && v.find('\0') == std::string::npos) return v;
  std::string out(1, '\0');
  for (unsigned char c : v) out += fmt::format("{:02x}", c);
  return out;
}

std::string from_toml_safe_string(const std::string& v, const std::string& where, const std::string& key) {
  if (v.empty() || v[0] != '\0') return v;
  const std::string hex = v.substr(1);
  if (hex.size() % 2 != 0 || hex.find_first_not_of("0123456789abcdef") != std::string::npos)
    fail("{}: key '{}' holds a NUL: not a byte string written by ouro", where, key);
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2) out += static_cast<char>(std::stoi(hex.substr(i, 2), nullptr, 16));
  return out;
}

// Sets a choice key to the value named `name`; a name not in its list is an error naming the key
// and listing the allowed values.
void set_choice(Config& c, const KeyDef& def, const std::string& name, const std::string& where) {
  const std::vector<std::string> names = def.choices();
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i] == name) return def.set_choice(c, static_cast<int>(i));
  fail("{}: key '{}' must be one of {} (got '{}')", where, def.full(), fmt::join(names, ", "), name);
}

// Stores node into the field of `def`; `where` prefixes any error ("file:line").
void assign(Config& c, const KeyDef& def, const toml::node& node, const std::string& where) {
  void* f = def.field(c);
  auto type_error = [&]() {
    fail("{}: key '{}' must be {}, got {}", where, def.full(), kind_name(def.kind),
         node_type_name(node));
  };
  switch (def.kind) {
    case Kind::Int: {
      auto v = node.value_exact<int64_t>();
      if (!v) type_error();
      if (*v < std::numeric_limits<int>::min() || *v > std::numeric_limits<int>::max())
        fail("{}: key '{}' = {} is out of range", where, def.full(), *v);
      *static_cast<int*>(f) = static_cast<int>(*v);
      break;
    }
    case Kind::Int64: {
      auto v = node.value_exact<int64_t>();
      if (!v) type_error();
      *static_cast<int64_t*>(f) = *v;
      break;
    }
    case Kind::Float: {
      if (!node.is_number()) type_error();
      *static_cast<double*>(f) = *node.value<double>();
      break;
    }
    case Kind::String: {
      auto v = node.value_exact<std::string>();
      if (!v) type_error();
      *static_cast<std::string*>(f) = from_toml_safe_string(*v, where, def.full());
      break;
    }
    case Kind::Bool: {
      auto v = node.value_exact<bool>();
      if (!v) type_error();
      *static_cast<bool*>(f) = *v;
      break;
    }
    case Kind::Choice: {
      auto v = node.value_exact<std::string>();
      if (!v) type_error();
      set_choice(c, def, *v, where);
      break;
    }
  }
  c.set_keys.insert(def.full());
}

std::string render(const Config& cc, const KeyDef& def) {
  auto& c = const_cast<Config&>(cc);
  void* f = def.field(c);
  switch (def.kind) {
    case Kind::Int: return std::to_string(*static_cast<int*>(f));
    case Kind::Int64: return std::to_string(*static_cast<int64_t*>(f));
    case Kind::Float: return fmt::format("{}", *static_cast<double*>(f));
    case Kind::String: return *static_cast<std::string*>(f);
    case Kind::Bool: return *static_cast<bool*>(f) ? "true" : "false";
    case Kind::Choice: return def.choices().at(static_cast<size_t>(def.get_choice(cc)));
  }
  return {};
}

// A range that a key's allowed text states on its own: "> a", ">= a", "[a, b]", "(a, b]",
// "[a, b)" or "(a, b)" with numbers a and b. validate() checks every such key from the schema;
// other texts (bounds by other keys, "fits fp32", sets) are checked by hand there.
struct Range {
  double lo, hi;
  bool lo_open, hi_open;
  bool holds(double v) const {  // NaN holds no range
    return (lo_open ? v > lo : v >= lo) && (hi_open ? v < hi : v <= hi);
  }
};

std::optional<Range> plain_range(std::string_view allowed) {
  auto number = [](std::string_view text, double& v) {
    const std::string t(text);
    char* end = nullptr;
    v = std::strtod(t.c_str(), &end);
    return !t.empty() && end == t.c_str() + t.size();
  };
  const double inf = std::numeric_limits<double>::infinity();
  double a = 0, b = 0;
  if (allowed.starts_with(">= ") && number(allowed.substr(3), a)) return Range{a, inf, false, false};
  if (allowed.starts_with("> ") && number(allowed.substr(2), a)) return Range{a, inf, true, false};
  const size_t comma = allowed.find(", ");
  if (allowed.size() >= 6 && (allowed.front() == '[' || allowed.front() == '(') &&
      (allowed.back() == ']' || allowed.back() == ')') && comma != std::string_view::npos &&
      number(allowed.substr(1, comma - 1), a) && number(allowed.substr(comma + 2, allowed.size() - comma - 3), b))
    return Range{a, b, allowed.front() == '(', allowed.back() == ')'};
  return std::nullopt;
}

double numeric_value(const Config& cc, const KeyDef& def) {
  void* f = def.field(const_cast<Config&>(cc));
  switch (def.kind) {
    case Kind::Int: return *static_cast<int*>(f);
    case Kind::Int64: return static_cast<double>(*static_cast<int64_t*>(f));
    case Kind::Float: return *static_cast<double*>(f);
    default: return 0;
  }
}

std::string line_of(const std::string& file, const toml::node& n) {
  return fmt::format("{}:{}", file, n.source().begin.line);
}

void apply_table(Config& c, const toml::table& root, const std::string& file) {
  for (const auto& [sec_key, sec_node] : root) {
    std::string sec(sec_key.str());
    const auto* tbl = sec_node.as_table();
    if (!is_section(sec)) {
      if (tbl) fail("{}: unknown section '[{}]'", line_of(file, sec_node), sec);
      fail("{}: unknown key '{}' (keys belong to a section such as [train])",
           line_of(file, sec_node), sec);
    }
    if (!tbl) fail("{}: '{}' must be a table ([{}])", line_of(file, sec_node), sec, sec);
    for (const auto& [key, node] : *tbl) {
      const KeyDef* def = find_key(sec, key.str());
      if (!def) fail("{}: unknown key '{}.{}'", line_of(file, node), sec, key.str());
      assign(c, *def, node, line_of(file, node));
    }
  }
}

void apply_override(Config& c, const std::string& spec) {
  auto eq = spec.find('=');
  if (eq == std::string::npos) fail("--set {}: expected section.key=value", spec);
  std::string name = spec.substr(0, eq), value = spec.substr(eq + 1);
  auto dot = name.find('.');
  const KeyDef* def = dot == std::string::npos ? nullptr
                                               : find_key(name.substr(0, dot), name.substr(dot + 1));
  if (!def) fail("--set {}: unknown key '{}'", spec, name);
  std::string where = "--set " + name;
  if (def->kind == Kind::String || def->kind == Kind::Choice) {
    // Accept both a bare word (path=runs/x) and a quoted TOML string.
    std::string text = value;
    try {
      auto t = toml::parse("v = " + value);
      if (auto s = t["v"].value_exact<std::string>()) text = *s;
    } catch (const toml::parse_error&) {
    }
    if (def->kind == Kind::Choice)
      set_choice(c, *def, text, where);
    else
      *static_cast<std::string*>(def->field(c)) = text;
    c.set_keys.insert(def->full());
    return;
  }
  toml::table t;
  try {
    t = toml::parse("v = " + value);
  } catch (const toml::parse_error& e) {
    fail("{}: '{}' is not {}", where, value, kind_name(def->kind));
  }
  assign(c, *def, *t.get("v"), where);
}

// The model section from a model file (--init DIR): keys the config does not set are taken from
// it; a key the config sets must agree, or the run would silently train another shape.
void take_model(Config& c, const ModelFrom& from) {
  const GPT2Config& m = from.model;
  const std::string where = c.source.empty() ? "config" : c.source;
  auto take = [&](const char* key, auto& field, const auto& value, const std::string& shown) {
    const std::string full = std::string("model.") + key;
    if (!c.set_keys.count(full)) {
      field = value;
      return;
    }
    if (field != value)
      fail("{}: key '{}' = {} differs from {}'s model, which has {} = {}: that model ({}) differs from the "
           "config's ({}={}); remove the key to take the model's shape from {}, or pick a model of this shape",
           where, full, render(c, *find_key("model", key)), from.origin, key, shown, describe_model(m), key,
           render(c, *find_key("model", key)), from.origin);
  };
  take("n_layer", c.model.n_layer, m.n_layer, std::to_string(m.n_layer));
  take("n_head", c.model.n_head, m.n_head, std::to_string(m.n_head));
  take("n_embd", c.model.n_embd, m.n_embd, std::to_string(m.n_embd));
  take("seq_len", c.model.seq_len, m.seq_len, std::to_string(m.seq_len));
  take("vocab_size", c.model.vocab_size, m.vocab_size, std::to_string(m.vocab_size));
  take("pos", c.model.pos, m.pos, pos_encoding_name(m.pos));
  if (m.pos == PosEncoding::rope)
    take("rope_theta", c.model.rope_theta, m.rope_theta, fmt::format("{}", m.rope_theta));
}

}  // namespace

Config parse_config_text(const std::string& text, const std::string& origin) {
  Config c;
  c.source = origin;
  try {
    apply_table(c, toml::parse(text, origin), origin);
  } catch (const toml::parse_error& e) {
    fail("{}:{}:{}: TOML syntax error: {}", origin, e.source().begin.line,
         e.source().begin.column, e.description());
  }
  return c;
}

Config load_config(const std::string& path, const std::vector<std::string>& overrides,
                   const ModelFrom* model_from) {
  Config c;
  if (!path.empty()) {
    // toml++ reads a directory as an empty document: a run would train the built-in defaults.
    std::error_code ec;
    const auto st = std::filesystem::status(path, ec);
    if (std::filesystem::is_directory(st))
      fail("{}: is a directory, not a TOML config file (e.g. configs/tiny.toml)", path);
    if (std::filesystem::exists(st) && !std::filesystem::is_regular_file(st))
      fail("{}: is not a regular file; a config is a TOML file", path);
    toml::table root;
    try {
      root = toml::parse_file(path);
    } catch (const toml::parse_error& e) {
      if (e.source().begin.line == 0 || !std::filesystem::exists(path))
        fail("{}: cannot read config: {}", path, e.description());
      fail("{}:{}:{}: TOML syntax error: {}", path, e.source().begin.line,
           e.source().begin.column, e.description());
    }
    apply_table(c, root, path);
    c.source = path;
  }
  for (const auto& o : overrides) apply_override(c, o);
  if (model_from) take_model(c, *model_from);
  c.validate();
  return c;
}

std::string Config::to_toml() const {
  toml::table root;
  for (const auto& def : schema()) {
    auto* sec = root[def.section].as_table();
    if (!sec) {
      root.insert(def.section, toml::table{});
      sec = root[def.section].as_table();
    }
    auto& c = const_cast<Config&>(*this);
    void* f = def.field(c);
    switch (def.kind) {
      case Kind::Int: sec->insert(def.key, static_cast<int64_t>(*static_cast<int*>(f))); break;
      case Kind::Int64: sec->insert(def.key, *static_cast<int64_t*>(f)); break;
      case Kind::Float: sec->insert(def.key, *static_cast<double*>(f)); break;
      case Kind::String: sec->insert(def.key, toml_safe_string(*static_cast<std::string*>(f))); break;
      case Kind::Bool: sec->insert(def.key, *static_cast<bool*>(f)); break;
      case Kind::Choice: sec->insert(def.key, render(*this, def)); break;
    }
  }
  std::ostringstream os;
  os << root << "\n";
  return os.str();
}

std::string config_keys_markdown() {
  const Config defaults;
  auto kind_word = [](Kind k) {
    switch (k) {
      case Kind::Int: case Kind::Int64: return "integer";
      case Kind::Float: return "number";
      case Kind::String: case Kind::Choice: return "string";
      case Kind::Bool: return "bool";
    }
    return "?";
  };
  std::string out = "| key | type | allowed | default | what it sets |\n|---|---|---|---|---|\n";
  for (const auto& def : schema()) {
    std::string allowed = def.allowed;
    if (def.is_choice()) {
      std::string list;
      for (const std::string& c : def.choices()) list += (list.empty() ? "" : ", ") + ("`" + c + "`");
      allowed = list;
    }
    const std::string value = render(defaults, def);
    out += fmt::format("| `{}` | {} | {} | {} | {} |\n", def.full(), kind_word(def.kind), allowed,
                       value.empty() ? "(empty)" : "`" + value + "`", def.description);
  }
  return out;
}

std::vector<std::string> config_differences(const Config& a, const Config& b) {
  std::vector<std::string> out;
  for (const auto& def : schema())
    if (render(a, def) != render(b, def))
      out.push_back(fmt::format("{} ({} vs {})", def.full(), render(a, def), render(b, def)));
  return out;
}

// Activations per token: ~17 C per layer plus the padded vocabulary's logits (src/model/gpt2.cpp).
void check_training_memory(const Config& c) {
  const std::string src = c.source.empty() ? "config" : c.source;
  if (c.run.device != Device::cpu) return;
  const uint64_t mem = physical_memory_bytes();
  if (mem == 0) return;
  const GPT2Config m = c.model.gpt2();
  const double params = static_cast<double>(gpt2_num_params(m));
  const double tokens = static_cast<double>(c.train.batch_size) * c.train_seq_len();
  const double acts = tokens * (17.0 * m.n_layer * m.n_embd + 16.0 * m.n_embd + m.padded_vocab());
  const double bytes = 4.0 * (4.0 * params + acts);
  if (bytes > static_cast<double>(mem))
    fail("{}: training this model on the cpu needs about {:.1f} GiB ({} parameters x 16 bytes, plus "
         "activations for train.batch_size x train.seq_len = {} x {}), more than this machine's "
         "{:.1f} GiB of memory; reduce model.* or train.batch_size",
         src, bytes / 1073741824.0, gpt2_num_params(m), c.train.batch_size, c.train_seq_len(),
         static_cast<double>(mem) / 1073741824.0);
}

void Config::validate() const {
  const std::string src = source.empty() ? "config" : source;
  auto need = [&](bool ok, const char* key, const std::string& why) {
    if (!ok) fail("{}: key '{}' {}", src, key, why);
  };
  // Every key whose allowed text is a plain range ("> 0", "[0, 1)"), checked from the schema, so
  // README's key table states exactly what is enforced. The loop's keys matter only when it runs.
  for (const auto& def : schema()) {
    if (std::string_view(def.section) == "loop" && std::string_view(def.key) != "rounds" && loop.rounds == 0)
      continue;
    const std::optional<Range> range = plain_range(def.allowed);
    if (range && !range->holds(numeric_value(*this, def)))
      fail("{}: key '{}' must be {}{} (got {})", src, def.full(), def.allowed[0] == '>' ? "" : "in ", def.allowed,
           render(*this, def));
  }
  // What the schema states in words: bounds by other keys, fp32, sets.
  need(model.n_embd > 0 && model.n_embd % model.n_head == 0, "model.n_embd",
       "must be a positive multiple of model.n_head");
  need(model.rope_theta > 1 && std::isfinite(model.rope_theta), "model.rope_theta",
       "must be a finite number above 1");
  // Every dimension bounded, the parameter count bounded and no larger than memory.
  check_model_shape(model.gpt2(), kConfigModelFields, src);
  need(train.seq_len >= 0 && train.seq_len <= model.seq_len, "train.seq_len",
       "must be between 0 (= model.seq_len) and model.seq_len");
  need(static_cast<int64_t>(train.batch_size) * train_seq_len() <= std::numeric_limits<int>::max(),
       "train.batch_size", fmt::format("x train.seq_len ({} x {}) must not exceed {} tokens per batch",
                                       train.batch_size, train_seq_len(), std::numeric_limits<int>::max()));
  // The optimizer computes in fp32: a value that overflows it (1e300 -> inf) or underflows
  // to 0 is as wrong as inf or nan.
  auto fp32_positive = [](double x) { return std::isfinite(x) && x > 0 && static_cast<float>(x) > 0 && std::isfinite(static_cast<float>(x)); };
  need(fp32_positive(train.lr), "train.lr", "must be a positive number that fits fp32 (at most 3.4e38)");
  need(train.weight_decay >= 0 && (train.weight_decay == 0 || fp32_positive(train.weight_decay)),
       "train.weight_decay", "must be >= 0 and fit fp32 (at most 3.4e38)");
  need(fp32_positive(train.eps), "train.eps", "must be positive and fit fp32 (1.2e-38 to 3.4e38)");
  need(!run.out_dir.empty(), "run.out_dir", "must name a directory (it is empty)");
  dist.validate(src);
  if (loop.rounds == 0) return;  // the loop's keys matter only when it runs
  need(loop.prompt_tokens > 0 && (!loop.task.empty() || loop.prompt_tokens < model.seq_len),
       "loop.prompt_tokens", "must be positive and below model.seq_len");
  need(loop.max_new_tokens > 0 && loop.max_new_tokens <= kMaxModelDim, "loop.max_new_tokens",
       "must be positive and at most 2^24");
  // Task prompts are not bounded by model.seq_len above; prompt + continuation is sized in int.
  need(loop.prompt_tokens <= kMaxModelDim, "loop.prompt_tokens", "must be at most 2^24");
  need(loop.task.empty() || loop.task == "add" || loop.task == "sort" || loop.task == "copy" ||
           loop.task == "copyd" || loop.task == "rev" || loop.task == "revpad" || loop.task == "file",
       "loop.task", "must be empty (text) or one of add, sort, copy, copyd, rev, revpad, file");
  need(loop.task == "file" ? !loop.task_file.empty() : loop.task_file.empty(), "loop.task_file",
       "must be set exactly when loop.task = \"file\"");
  need(loop.verifier_cmd.empty() || !loop.task.empty(), "loop.verifier_cmd", "needs a loop.task");
  need(loop.task_min >= 1 && loop.task_min <= loop.task_max, "loop.task_min",
       "must be >= 1 and <= loop.task_max");
  need(loop.band_lo >= 0 && loop.band_lo < loop.band_hi && loop.band_hi <= 1, "loop.band_lo",
       "and loop.band_hi must satisfy 0 <= band_lo < band_hi <= 1");
  need(loop.accept_min >= 0 && loop.accept_min <= loop.accept_max && loop.accept_max <= 1, "loop.accept_min",
       "need 0 <= loop.accept_min <= loop.accept_max <= 1");
  need(loop.majority_min_votes >= 1 && loop.majority_min_votes <= loop.k, "loop.majority_min_votes",
       "must be in 1..loop.k");
}

}  // namespace ouro
