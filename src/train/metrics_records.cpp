#include "train/metrics_records.h"

#include <fmt/format.h>

#include <algorithm>

#include <nlohmann/json.hpp>

namespace ouro {

MetricsKept metrics_records_through(std::string_view text, int64_t step, const std::string& file) {
  MetricsKept out;
  size_t line_no = 0;
  while (!text.empty()) {
    const size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    auto j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    const char* why = nullptr;
    if (j.is_discarded())
      why = "not valid JSON (a torn write?)";
    else if (!j.is_object())
      why = "not a JSON object";
    else if (j.contains("step") && !j["step"].is_number_integer())
      why = "its \"step\" is not an integer";
    if (why) {
      out.warnings.push_back(fmt::format("{}: line {} is {}; dropped", file, line_no, why));
      continue;
    }
    if (j.contains("step")) {
      const auto& s = j["step"];
      if (s.is_number_unsigned() ? s.get<uint64_t>() > static_cast<uint64_t>(std::max<int64_t>(step, 0))
                                 : s.get<int64_t>() > step)
        continue;
    }
    out.text.append(line);
    out.text.push_back('\n');
  }
  return out;
}

}  // namespace ouro
