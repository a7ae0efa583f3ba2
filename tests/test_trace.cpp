// The NVTX ranges a training step opens (src/common/trace.h), observed through trace_hook on the
// cpu backend: the names docs/profiling.md documents and ncu filters on, and their nesting. ncu's
// --nvtx-include reads '/' in a name as nesting, so no name may contain one; each layer's backward
// is a range "layer N" nested inside "backward" (ncu: --nvtx-include 'backward/layer 3/').
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/trace.h"
#include "ouro/model.h"
#include "ouro/ops.h"

using namespace ouro;

namespace {

// Each range as its path of names from the outermost ("backward/layer 2"), in push order.
std::vector<std::string> g_paths;
std::vector<std::string> g_stack;
int g_unbalanced = 0;

void record(const char* name) {
  if (name) {
    std::string path;
    for (const auto& s : g_stack) path += s + "\x1f";  // a separator no name contains
    g_stack.emplace_back(name);
    g_paths.push_back(path + name);
  } else if (g_stack.empty()) {
    ++g_unbalanced;
  } else {
    g_stack.pop_back();
  }
}

struct HookScope {
  HookScope() {
    g_paths.clear();
    g_stack.clear();
    g_unbalanced = 0;
    trace_hook = record;
  }
  ~HookScope() { trace_hook = nullptr; }
};

bool has_path(const std::vector<std::string>& names) {
  std::string want;
  for (size_t i = 0; i < names.size(); ++i) want += (i ? "\x1f" : "") + names[i];
  for (const auto& p : g_paths)
    if (p == want) return true;
  return false;
}

}  // namespace

TEST(Trace, StepRangesNestAndHaveNoSlash) {
  GPT2Config cfg;
  cfg.n_layer = 3;
  cfg.n_head = 2;
  cfg.n_embd = 16;
  cfg.seq_len = 8;
  cfg.vocab_size = 50;
  const int B = 2, T = 7;  // ragged: T below seq_len
  auto ops = make_ops("cpu");
  GPT2 model(cfg, *ops, B, T);
  model.set_params(gpt2_init_params(cfg, 7));
  std::vector<int> tokens(B * T), targets(B * T);
  for (int i = 0; i < B * T; ++i) tokens[i] = (i * 13 + 5) % cfg.vocab_size, targets[i] = (i * 7 + 3) % cfg.vocab_size;

  {
    HookScope hook;
    model.zero_grad();
    model.forward_backward(tokens.data(), targets.data(), B, T, 1.0f);
    AdamWArgs a;
    a.lr = 1e-3f;
    model.adamw_step(a);
    EXPECT_TRUE(g_stack.empty()) << "a range was left open: " << g_stack.back();
    EXPECT_EQ(g_unbalanced, 0) << "more pops than pushes";
  }
  ASSERT_FALSE(g_paths.empty()) << "no range was opened: is trace_hook called?";
  for (const auto& p : g_paths) {
    const std::string name = p.substr(p.rfind('\x1f') == std::string::npos ? 0 : p.rfind('\x1f') + 1);
    EXPECT_EQ(name.find('/'), std::string::npos) << "range name '" << name << "' contains '/'";
  }
  EXPECT_TRUE(has_path({"forward"}));
  EXPECT_TRUE(has_path({"backward"}));
  EXPECT_TRUE(has_path({"optimizer"}));
  // One range per layer, directly inside "backward", from the last layer down to the first.
  std::vector<std::string> layers;
  for (const auto& p : g_paths)
    if (p.rfind("backward\x1flayer ", 0) == 0 && p.find('\x1f', 9) == std::string::npos) layers.push_back(p.substr(9));
  EXPECT_EQ(layers, (std::vector<std::string>{"layer 2", "layer 1", "layer 0"}));
  for (const auto& p : g_paths)
    EXPECT_EQ(p.find("layer "), p.rfind("backward\x1flayer ", 0) == 0 ? 9u : std::string::npos)
        << "a layer range outside backward: " << p;
}

TEST(Trace, HookOffRecordsNothing) {
  g_paths.clear();
  { TraceRange r("forward"); }
  EXPECT_TRUE(g_paths.empty());
}
