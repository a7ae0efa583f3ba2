// Rewriting a JSONL record file (metrics.jsonl, rounds.jsonl, samples.jsonl) when a resumed run
// drops the records past its checkpoint: the kept text replaces the file atomically (a temporary
// renamed over it), so a crash during the rewrite leaves the old file or the new one, whole.
#pragma once
#include <filesystem>
#include <functional>
#include <string>

namespace ouro {

// Reads `file` whole, passes its text to `keep` and replaces the file with what keep returns.
// A missing file is left missing (nothing to truncate). Errors name the file.
void rewrite_jsonl(const std::filesystem::path& file,
                   const std::function<std::string(const std::string& text)>& keep);

// The lines of `text` that are JSON with an integer `key` below `limit` (a missing key counts as
// 0), each ending in '\n'; other lines are dropped.
std::string jsonl_lines_below(const std::string& text, const char* key, int limit);

}  // namespace ouro
