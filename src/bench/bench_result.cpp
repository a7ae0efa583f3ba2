// Writers of `ouro bench all`'s report. bench.json, schema "ouro-bench/1":
//
//   {
//     "schema":     "ouro-bench/1",
//     "backend":    "cpu" | "simt" | "cuda",
//     "device":     the backend's hardware name ("NVIDIA H100 80GB HBM3", "SIMT emulator", "cpu"),
//     "date_utc":   "YYYY-MM-DDTHH:MM:SSZ",
//     "commit":     git commit of the source tree ("<sha>-dirty" with local changes, "unknown"),
//     "command":    the command line,
//     "small":      true for the smoke sizes,
//     "peak_flops": bf16 dense FLOP/s from the peak table, or null (unknown device / cpu),
//     "copy_gbs":   measured device-to-device copy GB/s (read + write), or null (no kernel bench),
//     "records": [ {                       one per figure, in the order measured
//         "bench":        "kernels" | "train" | "generate" | "comm",
//         "name":         what was measured ("matmul fwd"),
//         "shape":        the problem ("124M 8192x768 -> 2304"; "" when none),
//         "device":       the hardware the figure is of,
//         "value":        the figure, in "unit",
//         "unit":         "TFLOP/s", "GB/s", "GFLOP/s", "tokens/s", "%", ...,
//         "ceiling":      the same unit, measured in the same run or from the peak table, or null,
//         "ceiling_name": where the ceiling comes from ("" when none),
//         "ratio":        value / ceiling, or null without a ceiling,
//         "flops":        FLOPs of one call, or null (not counted),
//         "bytes":        bytes one call moves at least once, or null (not counted),
//         "seconds":      mean seconds of one call, or null (not a timed call)
//     } ],
//     "skipped": [ { "bench": ..., "reason": ... } ]   benchmarks that did not apply
//   }
//
// bench.md holds the same records as one markdown table (tools/bench_report.py turns bench.json
// into the roofline plot and docs/perf.md's measured section).
#include "bench/bench_result.h"

#include <array>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <memory>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "ouro/error.h"

namespace ouro {

namespace {

nlohmann::json or_null(double v) { return v > 0 ? nlohmann::json(v) : nlohmann::json(); }

// stdout of a shell command, trailing newlines dropped; *status is its exit status.
std::string command_output(const std::string& cmd, int* status) {
  std::unique_ptr<FILE, int (*)(FILE*)> p(popen(cmd.c_str(), "r"), pclose);
  if (!p) {
    *status = -1;
    return "";
  }
  std::string out;
  std::array<char, 256> buf{};
  while (size_t n = std::fread(buf.data(), 1, buf.size(), p.get())) out.append(buf.data(), n);
  *status = pclose(p.release());
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// 4 significant digits, without exponent noise for ordinary magnitudes.
std::string number(double v) { return fmt::format("{:.4g}", v); }

// A markdown cell: '|' would split the row.
std::string cell(std::string s) {
  for (size_t i = 0; (i = s.find('|', i)) != std::string::npos; i += 2) s.replace(i, 1, "\\|");
  return s;
}

}  // namespace

std::string utc_now_iso8601() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string source_commit(const std::filesystem::path& source_dir) {
  std::error_code ec;
  if (!std::filesystem::exists(source_dir / ".git", ec)) return "unknown";
  // --no-optional-locks: the index refresh of `git diff` must never take the lock that a
  // concurrent `git commit` in the same checkout needs.
  const std::string git = fmt::format("git --no-optional-locks -C '{}'", source_dir.string());
  int status = 0;
  std::string sha = command_output(git + " rev-parse --short=12 HEAD 2>/dev/null", &status);
  if (status != 0 || sha.empty()) return "unknown";
  command_output(git + " diff --quiet HEAD -- >/dev/null 2>&1", &status);
  return status == 0 ? sha : sha + "-dirty";
}

nlohmann::json bench_record_json(const BenchRecord& r) {
  return {{"name", r.name},
          {"shape", r.shape},
          {"value", r.value},
          {"unit", r.unit},
          {"ceiling", or_null(r.ceiling)},
          {"ceiling_name", r.has_ceiling() ? r.ceiling_name : std::string()},
          {"ratio", r.has_ceiling() ? nlohmann::json(r.ratio()) : nlohmann::json()},
          {"flops", or_null(r.flops)},
          {"bytes", or_null(r.bytes)},
          {"seconds", or_null(r.seconds)}};
}

nlohmann::json bench_report_json(const BenchReport& r) {
  nlohmann::json records = nlohmann::json::array();
  for (const auto& g : r.groups)
    for (const auto& rec : g.records) {
      nlohmann::json j = bench_record_json(rec);
      j["bench"] = g.bench;
      j["device"] = g.device;
      records.push_back(std::move(j));
    }
  nlohmann::json skipped = nlohmann::json::array();
  for (const auto& s : r.skipped) skipped.push_back({{"bench", s.bench}, {"reason", s.reason}});
  return {{"schema", "ouro-bench/1"}, {"backend", r.backend},     {"device", r.device},
          {"date_utc", r.date_utc},   {"commit", r.commit},       {"command", r.command},
          {"small", r.small},         {"peak_flops", or_null(r.peak_flops)},
          {"copy_gbs", or_null(r.copy_gbs)}, {"records", records}, {"skipped", skipped}};
}

std::string bench_report_markdown(const BenchReport& r) {
  std::string md = fmt::format("# ouro bench all: {} ({})\n\n`{}` on {}, commit {}{}.\n\n", r.device,
                               r.backend, r.command, r.date_utc, r.commit,
                               r.small ? " (small sizes: a smoke run, not a performance figure)" : "");
  md += "| figure | value | unit | ceiling | ratio | device | date | commit |\n";
  md += "|---|---|---|---|---|---|---|---|\n";
  const std::string date = r.date_utc.substr(0, 10);
  for (const auto& g : r.groups)
    for (const auto& rec : g.records) {
      const std::string figure = g.bench + ": " + rec.name + (rec.shape.empty() ? "" : " (" + rec.shape + ")");
      const std::string ceiling = rec.has_ceiling() ? number(rec.ceiling) + " (" + rec.ceiling_name + ")" : "-";
      const std::string ratio = rec.has_ceiling() ? number(rec.ratio()) : "-";
      md += fmt::format("| {} | {} | {} | {} | {} | {} | {} | {} |\n", cell(figure), number(rec.value),
                        cell(rec.unit), cell(ceiling), ratio, cell(g.device), date, r.commit);
    }
  if (!r.skipped.empty()) {
    md += "\nNot run:\n\n";
    for (const auto& s : r.skipped) md += fmt::format("- {}: {}\n", s.bench, s.reason);
  }
  return md;
}

void write_bench_report(const BenchReport& r, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  OURO_CHECK(!ec, "bench all: cannot create {}: {}", dir.string(), ec.message());
  auto write = [](const std::filesystem::path& path, const std::string& text) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f << text;
    f.close();
    OURO_CHECK(f.good(), "bench all: cannot write {}", path.string());
  };
  write(dir / "bench.json", bench_report_json(r).dump(2) + "\n");
  write(dir / "bench.md", bench_report_markdown(r));
}

}  // namespace ouro
