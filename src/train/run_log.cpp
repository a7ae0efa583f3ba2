#include "train/run_log.h"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <iterator>

#include "ouro/error.h"
#include "train/metrics_records.h"

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

MetricsWriter::MetricsWriter(const std::filesystem::path& file, bool append) : path_(file) {
  out_.open(file, append ? std::ios::app : std::ios::trunc);
  OURO_CHECK(out_.good(), "{}: cannot open for writing", file.string());
}

void MetricsWriter::write(const nlohmann::json& record) {
  out_ << record.dump() << '\n';
  out_.flush();
  OURO_CHECK(out_.good(), "{}: write failed", path_.string());
}

void truncate_metrics_after(const std::filesystem::path& file, int64_t step) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  MetricsKept k = metrics_records_through(text, step, file.string());
  for (const auto& w : k.warnings) logger()->warn("{}", w);
  const std::string& kept = k.text;
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << kept;
    OURO_CHECK(out.good(), "{}: write failed", tmp.string());
  }
  std::filesystem::rename(tmp, file);
}

}  // namespace ouro
