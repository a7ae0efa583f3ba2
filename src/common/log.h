// The process-wide logger: spdlog to the console and, once a run attaches it, to a file
// (run.out_dir/train.log). Every layer logs through it, so it lives at the bottom.
#pragma once
#include <filesystem>
#include <memory>

#include <spdlog/spdlog.h>

namespace ouro {

// The logger ("ouro"): console (stderr) only until attach_log_file is called.
std::shared_ptr<spdlog::logger> logger();
// Adds a file sink (flushed at every info line). Errors name the file.
void attach_log_file(const std::filesystem::path& file);

}  // namespace ouro
