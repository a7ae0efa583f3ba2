// Where `ouro bench all` finds its shipped config outside a source checkout (the Docker image runs
// it in /workspace, with the binary in /opt/ouro/bin and the configs in /opt/ouro/share/ouro).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "bench/bench_all.h"
#include "ouro/error.h"

namespace fs = std::filesystem;
using namespace ouro;

namespace {

struct TempTree {
  fs::path root = fs::temp_directory_path() / ("ouro_test_bench_" + std::to_string(::getpid()));
  TempTree() { fs::create_directories(root); }
  ~TempTree() { fs::remove_all(root); }
  fs::path dir_with(const std::string& sub, const char* file) {
    fs::create_directories(root / sub);
    if (file) std::ofstream(root / sub / file) << "[model]\n";
    return root / sub;
  }
};

}  // namespace

TEST(BenchConfig, FirstDirectoryHoldingTheFileWins) {
  TempTree t;
  const fs::path empty = t.dir_with("cwd/configs", nullptr);
  const fs::path share = t.dir_with("prefix/share/ouro/configs", "gpt2_124m.toml");
  const fs::path source = t.dir_with("src/configs", "gpt2_124m.toml");
  EXPECT_EQ(find_shipped_config("gpt2_124m.toml", {empty, share, source}), (share / "gpt2_124m.toml").string());
  EXPECT_EQ(find_shipped_config("gpt2_124m.toml", {source, share}), (source / "gpt2_124m.toml").string());
  // A directory of that name is not the config.
  fs::create_directories(empty / "gpt2_124m.toml");
  EXPECT_EQ(find_shipped_config("gpt2_124m.toml", {empty, share}), (share / "gpt2_124m.toml").string());
}

TEST(BenchConfig, NotFoundNamesEveryPathTried) {
  TempTree t;
  const fs::path a = t.dir_with("a", nullptr), b = t.dir_with("b", "other.toml");
  try {
    find_shipped_config("gpt2_124m.toml", {a, b});
    FAIL() << "no error";
  } catch (const Error& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find((a / "gpt2_124m.toml").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find((b / "gpt2_124m.toml").string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("--config"), std::string::npos) << msg;
  }
}

TEST(BenchConfig, SearchOrderIsWorkingDirectoryThenShareThenSource) {
  const auto dirs = shipped_config_dirs();
  ASSERT_EQ(dirs.size(), 3u);
  EXPECT_EQ(dirs[0], fs::path("configs"));  // relative: the working directory at the call
  // This test binary's own share directory: <dir of the executable>/../share/ouro/configs.
  const fs::path exe = fs::read_symlink("/proc/self/exe");
  EXPECT_EQ(dirs[1], exe.parent_path().parent_path() / "share/ouro/configs");
  EXPECT_EQ(dirs[2], fs::path(OURO_SOURCE_DIR) / "configs");
}
