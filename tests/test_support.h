// Plumbing shared by the end-to-end suites that drive the `ouro` binary: a per-test scratch
// directory, running a shell command with its output captured, reading a file whole or a run's
// metrics.
#pragma once
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace ouro::test {

namespace fs = std::filesystem;

struct CmdResult {
  int code = -1;       // exit status (128 when killed by a signal)
  std::string out;     // stdout and stderr together
  double seconds = 0;  // wall time
};

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs `cmd` through the shell with stdout and stderr captured in `log`.
inline CmdResult run_shell(const std::string& cmd, const fs::path& log) {
  auto t0 = std::chrono::steady_clock::now();
  int st = std::system((cmd + " > " + log.string() + " 2>&1").c_str());
  CmdResult r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
  r.out = read_file(log);
  return r;
}

// The numeric values of `key` in a run's metrics.jsonl, in step order (lines without it skipped).
inline std::vector<double> metric_values(const fs::path& run_dir, const char* key) {
  std::vector<double> v;
  std::ifstream in(run_dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    auto j = nlohmann::json::parse(line);
    if (j.contains(key) && j[key].is_number()) v.push_back(j[key].get<double>());
  }
  return v;
}

// A fixture with a fresh directory per test and process (concurrent suite runs never share
// one), kept when the test fails so its logs can be read, removed otherwise.
class ScratchDirTest : public ::testing::Test {
 protected:
  fs::path dir;
  void make_dir(const std::string& prefix) {
    dir = fs::temp_directory_path() /
          (prefix + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "_" +
           std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
  }
  void TearDown() override {
    if (!HasFailure() && !dir.empty()) fs::remove_all(dir);
  }
};

}  // namespace ouro::test
