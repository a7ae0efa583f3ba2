// libFuzzer target (built with clang when available; ctest runs it for OURO_FUZZ_SECONDS): the
// reader of metrics.jsonl that --resume runs (src/train/metrics_records.cpp). For arbitrary
// bytes it never throws, keeps only JSON objects whose "step" is an integer <= the resume step,
// and reading its own output again keeps everything and warns about nothing.
// The first byte is the resume step, the rest is the file.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "train/metrics_records.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const int64_t step = data[0];
  const std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  const ouro::MetricsKept k = ouro::metrics_records_through(text, step, "metrics.jsonl");
  std::string_view rest = k.text;
  while (!rest.empty()) {
    const size_t nl = rest.find('\n');
    if (nl == std::string_view::npos) std::abort();  // every kept record ends its line
    const auto j = nlohmann::json::parse(rest.substr(0, nl), nullptr, false);
    if (j.is_discarded() || !j.is_object()) std::abort();
    if (j.contains("step") && (!j["step"].is_number_integer() ||
                               (j["step"].is_number_unsigned() ? j["step"].get<uint64_t>() > uint64_t(step)
                                                               : j["step"].get<int64_t>() > step)))
      std::abort();
    rest.remove_prefix(nl + 1);
  }
  const ouro::MetricsKept again = ouro::metrics_records_through(k.text, step, "metrics.jsonl");
  if (again.text != k.text || !again.warnings.empty()) std::abort();
  return 0;
}
