#include "tokenizer/text_parts.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "ouro/error.h"

namespace ouro::tok {

std::vector<SpecialSplit> split_at_specials(std::string_view text,
                                            const std::vector<std::string_view>& specials) {
  std::vector<SpecialSplit> parts;
  // next[k]: the next occurrence of specials[k] at or after pos, found again only once passed,
  // so that a text with many occurrences of one special and none of another stays linear.
  std::vector<size_t> next(specials.size());
  for (size_t k = 0; k < specials.size(); ++k)
    next[k] = specials[k].empty() ? std::string_view::npos : text.find(specials[k]);
  size_t pos = 0;
  for (;;) {
    size_t best = specials.size();
    for (size_t k = 0; k < specials.size(); ++k) {
      if (next[k] != std::string_view::npos && next[k] < pos) next[k] = text.find(specials[k], pos);
      if (next[k] == std::string_view::npos) continue;
      if (best == specials.size() || next[k] < next[best] ||
          (next[k] == next[best] && specials[k].size() > specials[best].size()))
        best = k;
    }
    if (best == specials.size()) break;
    parts.push_back({text.substr(pos, next[best] - pos), static_cast<int>(best)});
    pos = next[best] + specials[best].size();
  }
  parts.push_back({text.substr(pos), -1});
  return parts;
}

std::ifstream open_file(const std::filesystem::path& path, std::string_view who) {
  std::error_code ec;
  OURO_CHECK(std::filesystem::is_regular_file(path, ec), "{}: {} is not a readable regular file",
             who, path.string());
  std::ifstream f(path, std::ios::binary);
  if (!f) fail("{}: cannot open {}: {}", who, path.string(), std::strerror(errno));
  return f;
}

std::string read_file_text(const std::filesystem::path& path, std::string_view who) {
  std::ifstream f = open_file(path, who);
  std::ostringstream ss;
  ss << f.rdbuf();
  if (f.bad()) fail("{}: error reading {}", who, path.string());
  return ss.str();
}

}  // namespace ouro::tok
