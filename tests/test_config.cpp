// Config loading: schema validation with file:line:key errors, overrides, round trips.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "config/config_keys.h"
#include "ouro/config.h"
#include "ouro/error.h"

#include <nlohmann/json.hpp>

namespace fs = std::filesystem;
using ouro::Config;

namespace {

fs::path write_tmp(const std::string& name, const std::string& text) {
  auto dir = fs::temp_directory_path() / ("ouro_test_config_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  auto p = dir / name;
  std::ofstream(p) << text;
  return p;
}

// The error message of f(), or "" if it did not throw ouro::Error.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const ouro::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Config, EveryShippedConfigLoads) {
  for (const char* name : {"tiny", "gpt2_124m", "gpt2_350m", "gpt2_774m", "gpt2_1558m"}) {
    auto path = fs::path(OURO_SOURCE_DIR) / "configs" / (std::string(name) + ".toml");
    Config c = ouro::load_config(path.string());
    EXPECT_EQ(c.model.n_embd % c.model.n_head, 0) << name;
  }
  Config tiny = ouro::load_config(std::string(OURO_SOURCE_DIR) + "/configs/tiny.toml");
  size_t n = ouro::gpt2_num_params(tiny.model.gpt2());
  EXPECT_GT(n, 700'000u);
  EXPECT_LT(n, 1'300'000u);  // "about 1M parameters"
  Config g = ouro::load_config(std::string(OURO_SOURCE_DIR) + "/configs/gpt2_124m.toml");
  auto gc = g.model.gpt2();
  // 124M without the padding rows, as GPT-2 is usually counted.
  size_t real = ouro::gpt2_num_params(gc) - static_cast<size_t>(gc.padded_vocab() - gc.vocab_size) * gc.n_embd;
  EXPECT_EQ(real, 124'439'808u);
}

TEST(Config, RequiredKeyNamesExist) {
  auto p = write_tmp("keys.toml", R"(
[model]
n_layer = 2
n_head = 2
n_embd = 32
seq_len = 16
vocab_size = 300
[train]
steps = 5
batch_size = 3
grad_accum = 2
lr = 0.001
seed = 7
[data]
train = "a.bin"
val = "b.bin"
[run]
out_dir = "out"
[checkpoint]
every = 2
)");
  Config c = ouro::load_config(p.string());
  EXPECT_EQ(c.model.n_layer, 2);
  EXPECT_EQ(c.model.vocab_size, 300);
  EXPECT_EQ(c.train.steps, 5);
  EXPECT_EQ(c.train.grad_accum, 2);
  EXPECT_DOUBLE_EQ(c.train.lr, 0.001);
  EXPECT_EQ(c.train.seed, 7);
  EXPECT_EQ(c.data.val, "b.bin");
  EXPECT_EQ(c.run.out_dir, "out");
  EXPECT_EQ(c.checkpoint.every, 2);
}

TEST(Config, UnknownKeyNamesFileLineAndKey) {
  auto p = write_tmp("unknown.toml", "[model]\nn_layer = 2\n\n[train]\nstepz = 3\n");
  auto msg = error_of([&] { ouro::load_config(p.string()); });
  EXPECT_NE(msg.find(p.string() + ":5"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.stepz"), std::string::npos) << msg;
}

TEST(Config, UnknownSectionIsAnError) {
  auto p = write_tmp("section.toml", "[modle]\nn_layer = 2\n");
  auto msg = error_of([&] { ouro::load_config(p.string()); });
  EXPECT_NE(msg.find("modle"), std::string::npos) << msg;
  EXPECT_NE(msg.find(p.string() + ":"), std::string::npos) << msg;
}

TEST(Config, WrongTypeNamesFileLineAndKey) {
  auto p = write_tmp("type.toml", "[train]\nlr = \"fast\"\n");
  auto msg = error_of([&] { ouro::load_config(p.string()); });
  EXPECT_NE(msg.find(p.string() + ":2"), std::string::npos) << msg;
  EXPECT_NE(msg.find("train.lr"), std::string::npos) << msg;
  EXPECT_NE(msg.find("string"), std::string::npos) << msg;
  auto p2 = write_tmp("type2.toml", "[model]\nn_layer = 2.5\n");
  msg = error_of([&] { ouro::load_config(p2.string()); });
  EXPECT_NE(msg.find("model.n_layer"), std::string::npos) << msg;
  EXPECT_NE(msg.find(":2"), std::string::npos) << msg;
}

TEST(Config, SyntaxErrorAndMissingFile) {
  auto p = write_tmp("syntax.toml", "[train]\nlr = = 3\n");
  auto msg = error_of([&] { ouro::load_config(p.string()); });
  EXPECT_NE(msg.find(p.string() + ":2"), std::string::npos) << msg;
  msg = error_of([&] { ouro::load_config("/nonexistent/dir/x.toml"); });
  EXPECT_NE(msg.find("/nonexistent/dir/x.toml"), std::string::npos) << msg;
}

TEST(Config, InvalidValuesNameTheKey) {
  auto p = write_tmp("bad.toml", "[model]\nn_head = 3\nn_embd = 64\n");
  auto msg = error_of([&] { ouro::load_config(p.string()); });
  EXPECT_NE(msg.find("model.n_embd"), std::string::npos) << msg;
  msg = error_of([&] { ouro::load_config("", {"train.schedule=zigzag"}); });
  EXPECT_NE(msg.find("train.schedule"), std::string::npos) << msg;
}

TEST(Config, DistRendezvousKeysAreValidated) {
  Config c = ouro::load_config("", {"dist.init=tcp", "dist.init_addr=node0:29500"});
  EXPECT_EQ(c.dist.init, ouro::DistInit::tcp);
  EXPECT_EQ(c.dist.init_addr, "node0:29500");
  EXPECT_EQ(ouro::load_config("", {}).dist.init, ouro::DistInit::auto_);
  EXPECT_EQ(ouro::load_config("", {"dist.init=file", "dist.init_path=/shared/id"}).dist.init_path,
            "/shared/id");
  auto msg = error_of([] { ouro::load_config("", {"dist.init=carrier-pigeon"}); });
  EXPECT_NE(msg.find("key 'dist.init' must be one of auto, mpi, file, tcp, env"), std::string::npos) << msg;
  msg = error_of([] { ouro::load_config("", {"dist.init=file"}); });
  EXPECT_NE(msg.find("key 'dist.init_path' must be set when dist.init = file"), std::string::npos) << msg;
  for (const char* addr : {"", "node0", "node0:0", "node0:65536", ":29500", "node0:x"}) {
    msg = error_of([&] { ouro::load_config("", {"dist.init=tcp", std::string("dist.init_addr=") + addr}); });
    EXPECT_NE(msg.find("key 'dist.init_addr' must be host:port"), std::string::npos) << addr << ": " << msg;
  }
}

TEST(Config, SetOverridesAnyKeyWithTypeChecks) {
  Config c = ouro::load_config("", {"train.lr=3e-4", "model.n_layer=6", "data.train=x/y_*.bin",
                                    "run.out_dir=\"quoted dir\"", "train.schedule=wsd"});
  EXPECT_DOUBLE_EQ(c.train.lr, 3e-4);
  EXPECT_EQ(c.model.n_layer, 6);
  EXPECT_EQ(c.data.train, "x/y_*.bin");
  EXPECT_EQ(c.run.out_dir, "quoted dir");
  EXPECT_EQ(c.train.schedule, ouro::LrScheduleKind::wsd);
  auto msg = error_of([] { ouro::load_config("", {"train.lr=abc"}); });
  EXPECT_NE(msg.find("train.lr"), std::string::npos) << msg;
  msg = error_of([] { ouro::load_config("", {"train.nope=1"}); });
  EXPECT_NE(msg.find("train.nope"), std::string::npos) << msg;
  msg = error_of([] { ouro::load_config("", {"model.n_layer"}); });
  EXPECT_NE(msg.find("section.key=value"), std::string::npos) << msg;
}

TEST(Config, ResolvedTomlRoundTripsAndDiffs) {
  Config a = ouro::load_config("", {"train.lr=0.00123", "sample.prompt=he said \"hi\"\n"});
  Config b = ouro::parse_config_text(a.to_toml(), "resolved");
  EXPECT_TRUE(ouro::config_differences(a, b).empty());
  EXPECT_DOUBLE_EQ(b.train.lr, 0.00123);
  EXPECT_EQ(b.sample.prompt, a.sample.prompt);
  b.train.batch_size = 99;
  auto d = ouro::config_differences(a, b);
  ASSERT_EQ(d.size(), 1u);
  EXPECT_NE(d[0].find("train.batch_size"), std::string::npos);
}

// README.md's key table is generated from the schema (ouro::config_keys_markdown): the text between
// its config-keys markers must be exactly that. On a difference the expected table is written to
// config_keys.md in the test's directory, to paste into the README.
TEST(ConfigSchema, ReadmeKeyTableIsTheSchemas) {
  std::ifstream in(fs::path(OURO_SOURCE_DIR) / "README.md");
  ASSERT_TRUE(in.good());
  const std::string readme((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const std::string begin = "<!-- config-keys:begin (generated from src/config/config.cpp's schema) -->\n";
  const std::string end = "<!-- config-keys:end -->";
  const size_t b = readme.find(begin), e = readme.find(end);
  ASSERT_NE(b, std::string::npos) << "README.md has no config-keys markers";
  ASSERT_NE(e, std::string::npos) << "README.md has no config-keys end marker";
  const std::string table = readme.substr(b + begin.size(), e - b - begin.size());
  const std::string expected = ouro::config_keys_markdown();
  if (table != expected) std::ofstream("config_keys.md") << expected;
  EXPECT_EQ(table, expected) << "README.md's key table differs from the schema: the expected table is in "
                             << (fs::current_path() / "config_keys.md").string();
}

// A string with a fixed set of choices is checked against the schema's list, naming the value.
TEST(ConfigSchema, ChoicesComeFromTheSchema) {
  for (const auto& [key, bad] : std::vector<std::pair<std::string, std::string>>{
           {"model.matmul", "cublass"}, {"model.attention", "flash"}, {"model.pos", "alibi"},
           {"train.schedule", "step"}, {"dist.init", "ssh"}}) {
    const size_t dot = key.find('.');
    const std::string toml = fmt::format("[{}]\n{} = \"{}\"\n", key.substr(0, dot), key.substr(dot + 1), bad);
    try {
      ouro::parse_config_text(toml, "choices.toml").validate();
      ADD_FAILURE() << key << "=" << bad << " was accepted";
    } catch (const ouro::Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("key '" + key + "' must be one of "), std::string::npos) << msg;
      EXPECT_NE(msg.find("(got '" + bad + "')"), std::string::npos) << msg;
    }
  }
  const std::string table = ouro::config_keys_markdown();
  EXPECT_NE(table.find("| `train.schedule` | string | `cosine`, `linear`, `wsd`, `constant` | `cosine` |"),
            std::string::npos) << table;
}

// A choice key is parsed once into its enum: every allowed name, from a file or --set, lands as the
// enum value of that name and is written back under the same name (checkpoints' resolved configs).
TEST(ConfigSchema, ChoicesParseIntoTheirEnumsAndPrintBack) {
  auto both = [](const std::string& key, const std::string& name) {
    const Config c = ouro::load_config("", {key + "=" + name, "loop.rounds=1", "loop.task=add"});
    const Config back = ouro::parse_config_text(c.to_toml(), "resolved");
    EXPECT_TRUE(ouro::config_differences(c, back).empty()) << key << "=" << name;
    return c;
  };
  for (auto k : {ouro::LrScheduleKind::cosine, ouro::LrScheduleKind::linear, ouro::LrScheduleKind::wsd,
                 ouro::LrScheduleKind::constant})
    EXPECT_EQ(both("train.schedule", std::string(ouro::name_of(k))).train.schedule, k);
  for (auto m : {ouro::LoopMode::loop, ouro::LoopMode::baseline, ouro::LoopMode::replace})
    EXPECT_EQ(both("loop.mode", std::string(ouro::name_of(m))).loop.mode, m);
  EXPECT_EQ(both("loop.ref", "lagged").loop.ref, ouro::ReferenceKind::lagged);
  EXPECT_EQ(both("loop.evict", "score").loop.evict, ouro::EvictPolicy::score);
  EXPECT_EQ(both("model.matmul", "cublas").model.matmul, ouro::MatmulImpl::cublas);
  EXPECT_EQ(both("model.attention", "cudnn").model.attention, ouro::AttentionImpl::cudnn);
  EXPECT_EQ(both("model.pos", "rope").model.pos, ouro::PosEncoding::rope);
  EXPECT_EQ(both("run.device", "simt").run.device, ouro::Device::simt);
  EXPECT_EQ(both("dist.init", "env").dist.init, ouro::DistInit::env);
  // Quoted on --set as in a file; from a file the error names the line.
  EXPECT_EQ(ouro::load_config("", {"loop.evict=\"score\""}).loop.evict, ouro::EvictPolicy::score);
  auto p = write_tmp("choice.toml", "[loop]\nrounds = 0\nevict = \"oldest\"\n");
  const std::string msg = error_of([&] { ouro::load_config(p.string()); });
  EXPECT_NE(msg.find(p.string() + ":3: key 'loop.evict' must be one of age, score (got 'oldest')"), std::string::npos)
      << msg;
  p = write_tmp("choice2.toml", "[train]\nschedule = 3\n");
  EXPECT_NE(error_of([&] { ouro::load_config(p.string()); }).find("key 'train.schedule' must be a string, got an integer"),
            std::string::npos);
}

// host:port, parsed in one place for dist.init_addr and the environment's addresses.
TEST(ConfigDist, HostPortIsSplitOnce) {
  auto hp = ouro::split_host_port("node0:29500");
  ASSERT_TRUE(hp);
  EXPECT_EQ(hp->host, "node0");
  EXPECT_EQ(hp->port, 29500);
  EXPECT_EQ(ouro::split_host_port("[fe80::1]:1")->host, "fe80::1");
  EXPECT_EQ(ouro::split_host_port("h:65535")->port, 65535);
  std::string why;
  for (const char* bad : {"", "node0", ":29500", "node0:"}) {
    EXPECT_FALSE(ouro::split_host_port(bad, &why)) << bad;
    EXPECT_EQ(why, "expected host:port") << bad;
  }
  for (const char* bad : {"node0:0", "node0:65536", "node0:+80", "node0: 80", "node0:123456", "node0:x"}) {
    EXPECT_FALSE(ouro::split_host_port(bad, &why)) << bad;
    EXPECT_NE(why.find("is not in 1..65535"), std::string::npos) << bad << ": " << why;
  }
  EXPECT_NE(error_of([] { ouro::parse_host_port("localhost:70000", "dist.init_addr"); })
                .find("dist.init_addr 'localhost:70000': port '70000' is not in 1..65535"),
            std::string::npos);
}

// The allowed column is what validate() enforces: every key whose allowed text is a plain range
// ("> 0", ">= 1", "[0, 1)", "(0, 1]") takes a value just inside it and refuses one just outside,
// naming the key. Read from the README's table as generated, so the documentation is the test.
TEST(ConfigSchema, PlainRangesInTheTableAreEnforced) {
  std::istringstream table(ouro::config_keys_markdown());
  int checked = 0;
  for (std::string row; std::getline(table, row);) {
    std::vector<std::string> cells;
    std::istringstream cs(row);
    for (std::string cell; std::getline(cs, cell, '|');) cells.push_back(cell);
    if (cells.size() < 6 || cells[1].find('`') == std::string::npos) continue;
    auto trim = [](std::string x) {
      x.erase(0, x.find_first_not_of(" `"));
      x.erase(x.find_last_not_of(" `") + 1);
      return x;
    };
    const std::string key = trim(cells[1]), type = trim(cells[2]), allowed = trim(cells[3]);
    if (type != "integer" && type != "number") continue;
    const bool integer = type == "integer";
    const double step = integer ? 1 : 0.5;
    double lo = 0, hi = 0;
    char open = 0, close = 0;
    std::vector<double> in, out;
    if (std::sscanf(allowed.c_str(), ">= %lf", &lo) == 1 && allowed.find(',') == std::string::npos &&
        allowed.rfind(">= ", 0) == 0) {
      in = {lo}, out = {lo - step};
    } else if (allowed.rfind("> ", 0) == 0 && allowed.find(',') == std::string::npos &&
               std::sscanf(allowed.c_str(), "> %lf", &lo) == 1) {
      in = {lo + step}, out = {lo};
    } else if (std::sscanf(allowed.c_str(), "%c%lf, %lf%c", &open, &lo, &hi, &close) == 4 &&
               (open == '[' || open == '(')) {
      in = {(lo + hi) / 2};
      out = {open == '[' ? lo - step : lo, close == ']' ? hi + step : hi};
    } else {
      continue;
    }
    auto set = [&](double v) {
      std::vector<std::string> s = {key + "=" + (integer ? std::to_string(static_cast<int64_t>(v)) : fmt::format("{:.3f}", v))};
      if (key.rfind("loop.", 0) == 0 && key != "loop.rounds") s.insert(s.end(), {"loop.rounds=1", "loop.task=add"});
      return error_of([&] { ouro::load_config("", s); });
    };
    for (double v : in) EXPECT_EQ(set(v), "") << key << " = " << v << " is inside " << allowed;
    for (double v : out)
      EXPECT_NE(set(v).find("key '" + key + "' must be"), std::string::npos) << key << " = " << v << ": " << set(v);
    ++checked;
  }
  EXPECT_GE(checked, 40) << "the table's plain ranges were not found";
}

// ---- moved here from test_inputs.cpp and test_runtime.cpp (issue 21): config-level units ----

TEST(InputsSizes, ConfigKeysOutOfRangeAreNamed) {
  auto msg = error_of([] { ouro::load_config("", {"model.seq_len=2147483647"}); });
  EXPECT_NE(msg.find("model.seq_len = 2147483647 is out of range"), std::string::npos) << msg;
  msg = error_of([] {
    ouro::load_config("", {"model.n_embd=1048576", "model.n_layer=1398099", "model.seq_len=11184712", "model.n_head=1"});
  });
  EXPECT_NE(msg.find("model.n_layer = 1398099"), std::string::npos) << msg;
  EXPECT_NE(msg.find("2^40"), std::string::npos) << msg;
  // B x T above what an int holds.
  msg = error_of([] { ouro::load_config("", {"model.seq_len=1048576", "train.batch_size=4096"}); });
  EXPECT_NE(msg.find("train.batch_size"), std::string::npos) << msg;
  // The loop's prompt + continuation length is an int sum.
  msg = error_of([] {
    ouro::load_config("", {"loop.rounds=1", "loop.task=add", "loop.prompt_tokens=2147483000", "loop.max_new_tokens=1000"});
  });
  EXPECT_NE(msg.find("loop.prompt_tokens"), std::string::npos) << msg;
  msg = error_of([] { ouro::load_config("", {"loop.rounds=1", "loop.max_new_tokens=2147483647"}); });
  EXPECT_NE(msg.find("loop.max_new_tokens"), std::string::npos) << msg;
}

TEST(InputsInit, ModelKeysComeFromTheInitModelUnlessSet) {
  ouro::ModelFrom mf{ouro::GPT2Config{3, 2, 48, 24, 300}, "--init m"};
  mf.model.pos = ouro::PosEncoding::rope;
  mf.model.rope_theta = 500;
  Config c = ouro::load_config("", {"train.seq_len=12"}, &mf);
  EXPECT_EQ(c.model.gpt2(), mf.model);
  // A key set to the same value is fine; a different one is refused naming it.
  EXPECT_EQ(ouro::load_config("", {"model.n_layer=3"}, &mf).model.n_layer, 3);
  auto msg = error_of([&] { ouro::load_config("", {"model.n_embd=64"}, &mf); });
  EXPECT_NE(msg.find("key 'model.n_embd' = 64 differs from --init m's model, which has n_embd = 48"), std::string::npos) << msg;
  msg = error_of([&] { ouro::load_config("", {"model.pos=learned"}, &mf); });
  EXPECT_NE(msg.find("model.pos"), std::string::npos) << msg;
}

TEST(ConfigBytes, NonUtf8StringsRoundTripThroughTheSavedConfig) {
  const std::string path = "data\xff\xfe/train\xe9.bin";
  ouro::Config c = ouro::load_config("", {"data.train=" + path});
  ASSERT_EQ(c.data.train, path);
  ouro::Config back = ouro::parse_config_text(c.to_toml(), "saved");
  EXPECT_EQ(back.data.train, path);
  EXPECT_TRUE(ouro::config_differences(c, back).empty());
  const nlohmann::json state = {{"config", c.to_toml()}};
  EXPECT_NO_THROW((void)state.dump());  // valid UTF-8: a state.json can hold it
}
