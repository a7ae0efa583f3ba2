#include "common/log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include "ouro/error.h"

namespace ouro {

std::shared_ptr<spdlog::logger> logger() {
  static std::shared_ptr<spdlog::logger> log = [] {
    auto l = std::make_shared<spdlog::logger>(
        "ouro", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    l->set_pattern("[%H:%M:%S] %^%l%$ %v");
    l->set_level(spdlog::level::info);
    return l;
  }();
  return log;
}

void attach_log_file(const std::filesystem::path& file) {
  try {
    auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(file.string(), false);
    sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] %l %v");
    logger()->sinks().push_back(sink);
    logger()->flush_on(spdlog::level::info);
  } catch (const spdlog::spdlog_ex& e) {
    fail("{}: cannot open the log file: {}", file.string(), e.what());
  }
}

}  // namespace ouro
