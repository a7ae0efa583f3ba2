// metrics.jsonl as --resume reads it back: one JSON object per line. A crash can leave a torn
// last line, and hands or tools can leave other stray lines; none of them may block a resume.
#pragma once
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace ouro {

struct MetricsKept {
  std::string text;                   // the records to keep, one per line
  std::vector<std::string> warnings;  // one per dropped line, naming the file and line number
};

// Keeps the object records whose "step" is <= step (records without "step" too); drops, with a
// warning, lines that are not JSON objects or whose "step" is not an integer.
MetricsKept metrics_records_through(std::string_view text, int64_t step, const std::string& file);

}  // namespace ouro
