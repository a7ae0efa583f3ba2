// `ouro bench simt`: the SIMT emulator's cost per __syncthreads per thread and per shuffle per
// lane, measured by the ouro_bench_simt executables of this build (plain) and of the sanitizer
// builds (build-asan, build-tsan: tools/test.sh makes them). They run as their own processes:
// a binary with the CUDA backend cannot hold the emulator, and sanitizers cannot share one.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/commands.h"
#include "ouro/error.h"

namespace ouro::cli {

namespace {

// Runs a build's ouro_bench_simt; null when that build has none.
nlohmann::json run_other_build(const std::string& dir, bool quick) {
  const std::filesystem::path exe = std::filesystem::path(dir) / "ouro_bench_simt";
  if (!std::filesystem::exists(exe)) return nullptr;
  const std::string cmd = "'" + exe.string() + "'" + (quick ? " --quick" : "");
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  OURO_CHECK(p != nullptr, "cannot run {}", exe.string());
  std::string out;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p.get())) out.append(buf, n);
  const int status = pclose(p.release());
  OURO_CHECK(status == 0, "{} failed (status {})", exe.string(), status);
  return nlohmann::json::parse(out);
}

}  // namespace

void add_bench_simt(CLI::App& bench) {
  auto* cmd = bench.add_subcommand(
      "simt", "SIMT emulator: ns per __syncthreads per thread and per shuffle per lane, plain and sanitized");
  struct Opts {
    std::string asan_dir = std::string(OURO_SOURCE_DIR) + "/build-asan";
    std::string tsan_dir = std::string(OURO_SOURCE_DIR) + "/build-tsan";
    bool json = false, quick = false, plain_only = false;
  };
  auto o = std::make_shared<Opts>();
  cmd->add_option("--asan-build", o->asan_dir, "ASan+UBSan emulator build holding ouro_bench_simt");
  cmd->add_option("--tsan-build", o->tsan_dir, "TSan emulator build holding ouro_bench_simt");
  cmd->add_flag("--plain-only", o->plain_only, "Skip the sanitizer builds");
  cmd->add_flag("--quick", o->quick, "Fewer iterations (a smoke run)");
  cmd->add_flag("--json", o->json, "Print the figures as JSON on stdout");
  cmd->callback([o] {
    nlohmann::json all;
    all["none"] = run_other_build(OURO_BINARY_DIR, o->quick);
    OURO_CHECK(!all["none"].is_null(), "this build ({}) has no ouro_bench_simt: configure with OURO_SIMT=ON",
               OURO_BINARY_DIR);
    if (!o->plain_only) {
      all["address"] = run_other_build(o->asan_dir, o->quick);
      all["thread"] = run_other_build(o->tsan_dir, o->quick);
    }
    if (o->json) {
      std::puts(all.dump(2).c_str());
      return;
    }
    std::printf("%-8s %6s %16s %14s %11s\n", "build", "block", "sync ns/thread", "shfl ns/lane", "switch ns");
    for (const char* build : {"none", "address", "thread"}) {
      if (!all.contains(build)) continue;
      const char* label = std::string_view(build) == "none" ? "plain" : std::string_view(build) == "address" ? "asan" : "tsan";
      if (all[build].is_null()) {
        std::printf("%-8s (no ouro_bench_simt in %s; tools/test.sh builds it)\n", label,
                    std::string_view(build) == "address" ? o->asan_dir.c_str() : o->tsan_dir.c_str());
        continue;
      }
      for (const auto& row : all[build]["rows"])
        std::printf("%-8s %6u %16.1f %14.1f %11.1f\n", label, row["block"].get<unsigned>(), row["sync_ns"].get<double>(),
                    row["shfl_ns"].get<double>(), row["switch_ns"].get<double>());
    }
    double worst = 0;
    for (const auto& row : all["none"]["rows"])
      worst = std::max({worst, row["sync_ns"].get<double>(), row["shfl_ns"].get<double>()});
    std::printf("goal: <= 100 ns per thread/lane plain: %s (worst %.1f ns)\n", worst <= 100 ? "met" : "MISSED", worst);
  });
}

}  // namespace ouro::cli
