// A run's outputs: spdlog to the console and run.out_dir/train.log, and metrics.jsonl with one
// JSON object per step and per evaluation.
#pragma once
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

namespace ouro {

// The process-wide logger ("ouro"): console only until attach_log_file is called.
std::shared_ptr<spdlog::logger> logger();
void attach_log_file(const std::filesystem::path& file);

class MetricsWriter {
 public:
  // append=false truncates (a fresh run); true continues a resumed run's file.
  MetricsWriter(const std::filesystem::path& file, bool append);
  void write(const nlohmann::json& record);  // one line, flushed

 private:
  std::ofstream out_;
  std::filesystem::path path_;
};

// Rewrites a metrics file keeping only the records whose "step" is <= step.
void truncate_metrics_after(const std::filesystem::path& file, int64_t step);

}  // namespace ouro
