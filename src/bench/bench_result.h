// The figures every `ouro bench` subcommand measures, as one record type, and the writers of
// `ouro bench all`'s report (bench.json and bench.md, see bench_result.cpp for the schema). A
// record carries its ceiling measured in the same run (cuBLASLt, a device-to-device copy, the
// BLAS sgemm) or taken from the peak table, so a figure is never read without its yardstick.
// Plain types only: src/bench/kernel_bench.cu (nvcc) fills these records too.
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace ouro {

struct BenchRecord {
  std::string name;          // what was measured, e.g. "matmul fwd", "train step"
  std::string shape;         // the problem, e.g. "124M 8192x768 -> 2304" ("" when none)
  double value = 0;          // the figure, in `unit`
  std::string unit;          // "TFLOP/s", "GB/s", "tokens/s", ...
  double ceiling = 0;        // the same unit; 0 = no ceiling on this backend
  std::string ceiling_name;  // where the ceiling comes from ("cuBLASLt", "copy d2d", ...)
  double flops = 0;          // floating-point operations of one call (0: not counted)
  double bytes = 0;          // bytes one call must move at least once (0: not counted)
  double seconds = 0;        // mean time of one call (0: not a timed call)

  bool has_ceiling() const { return ceiling > 0; }
  double ratio() const { return ceiling > 0 ? value / ceiling : 0; }
};

// A benchmark that did not run, and why (e.g. no device backend, a single-process comm).
struct BenchSkip {
  std::string bench, reason;
};

// One group of records (a benchmark) as `ouro bench all` collects it.
struct BenchGroup {
  std::string bench;   // "kernels" | "train" | "generate" | "comm"
  std::string device;  // the hardware the figures are of
  std::vector<BenchRecord> records;
};

struct BenchReport {
  std::string backend;   // cpu | simt | cuda
  std::string device;    // the backend's hardware name
  std::string date_utc;  // ISO 8601, e.g. 2026-12-01T23:30:00Z
  std::string commit;    // git commit of the source tree, or "unknown"
  std::string command;   // the command line that produced it
  bool small = false;
  double peak_flops = 0;  // bf16 dense peak from the table (src/bench/peak_flops.cpp); 0 = unknown
  double copy_gbs = 0;    // measured device-to-device copy bandwidth; 0 = not measured
  std::vector<BenchGroup> groups;
  std::vector<BenchSkip> skipped;
};

// "2026-12-01T23:30:00Z" for now.
std::string utc_now_iso8601();
// The source tree's commit (git rev-parse at run time, "-dirty" when it has local changes), or
// "unknown" outside a git checkout or without git.
std::string source_commit(const std::filesystem::path& source_dir);

nlohmann::json bench_record_json(const BenchRecord& r);
nlohmann::json bench_report_json(const BenchReport& r);
// The markdown table: one row per record (figure, value, unit, ceiling, ratio, device, date, commit).
std::string bench_report_markdown(const BenchReport& r);
// Writes dir/bench.json and dir/bench.md (creating dir); throws ouro::Error naming the file.
void write_bench_report(const BenchReport& r, const std::filesystem::path& dir);

}  // namespace ouro
