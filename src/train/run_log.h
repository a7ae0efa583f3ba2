// A run's metrics.jsonl: one JSON object per step and per evaluation. (The logger, spdlog to the
// console and run.out_dir/train.log, is common/log.h's; included here for the files that use both.)
#pragma once
#include <filesystem>
#include <fstream>
#include <memory>

#include <nlohmann/json.hpp>

#include "common/log.h"

namespace ouro {

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
