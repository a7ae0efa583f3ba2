#include "train/run_log.h"

#include "common/jsonl.h"
#include "ouro/error.h"
#include "train/metrics_records.h"

namespace ouro {

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
  rewrite_jsonl(file, [&](const std::string& text) {
    MetricsKept k = metrics_records_through(text, step, file.string());
    for (const auto& w : k.warnings) logger()->warn("{}", w);
    return std::move(k.text);
  });
}

}  // namespace ouro
