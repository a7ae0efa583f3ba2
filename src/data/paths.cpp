// Turning a data spec (a file, a directory of *.bin, or a glob with * and ?) into a sorted list
// of shard files. The glob is matched component by component so wildcards may appear in
// directory names too (data/*/train_*.bin); only * and ? are special, so names containing
// [ or \ need no escaping.
#include <algorithm>
#include <string_view>
#include <system_error>

#include "ouro/data.h"
#include "ouro/error.h"

namespace ouro {

namespace fs = std::filesystem;

namespace {

bool has_wildcard(std::string_view s) { return s.find_first_of("*?") != std::string_view::npos; }

// Iterative wildcard match: on a mismatch, let the most recent * absorb one more character.
bool wildcard_match(std::string_view pat, std::string_view name) {
  size_t p = 0, n = 0, star = std::string_view::npos, star_n = 0;
  while (n < name.size()) {
    if (p < pat.size() && (pat[p] == '?' || pat[p] == name[n])) {
      ++p;
      ++n;
    } else if (p < pat.size() && pat[p] == '*') {
      star = p++;
      star_n = n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++star_n;
    } else {
      return false;
    }
  }
  while (p < pat.size() && pat[p] == '*') ++p;
  return p == pat.size();
}

// Entries of dir whose names match pat. Like a shell, a wildcard does not match a leading dot
// unless the pattern starts with one, so editor and temp files (.x.tmp) stay out.
std::vector<fs::path> match_in(const fs::path& dir, const std::string& pat) {
  std::vector<fs::path> out;
  std::error_code ec;
  const fs::path d = dir.empty() ? fs::path(".") : dir;
  if (!fs::is_directory(d, ec)) return out;
  for (const auto& e : fs::directory_iterator(d, ec)) {
    const std::string name = e.path().filename().string();
    if (name[0] == '.' && pat[0] != '.') continue;
    if (wildcard_match(pat, name)) out.push_back(dir / name);
  }
  return out;
}

std::vector<fs::path> expand_glob(const std::string& spec) {
  const fs::path p(spec);
  std::vector<fs::path> current{p.root_path()};
  for (const auto& part : p.relative_path()) {
    const std::string s = part.string();
    if (s.empty()) continue;  // a trailing separator
    std::vector<fs::path> next;
    for (const auto& c : current) {
      if (has_wildcard(s)) {
        auto m = match_in(c, s);
        next.insert(next.end(), m.begin(), m.end());
      } else {
        next.push_back(c / part);
      }
    }
    current = std::move(next);
  }
  std::vector<fs::path> files;
  std::error_code ec;
  for (auto& c : current)
    if (fs::is_regular_file(c, ec)) files.push_back(std::move(c));
  return files;
}

}  // namespace

std::vector<fs::path> expand_data_paths(const std::string& spec) {
  OURO_CHECK(!spec.empty(), "empty data path");
  std::vector<fs::path> files;
  std::error_code ec;
  if (has_wildcard(spec)) {
    files = expand_glob(spec);
    OURO_CHECK(!files.empty(), "data spec '{}' matches no files", spec);
  } else if (fs::is_directory(spec, ec)) {
    for (const auto& e : fs::directory_iterator(spec, ec)) {
      const std::string name = e.path().filename().string();
      if (name[0] != '.' && e.path().extension() == ".bin" && fs::is_regular_file(e.path(), ec))
        files.push_back(e.path());
    }
    OURO_CHECK(!files.empty(), "data spec '{}' is a directory with no *.bin files", spec);
  } else if (fs::exists(spec, ec)) {
    OURO_CHECK(fs::is_regular_file(spec, ec), "data spec '{}' is not a regular file", spec);
    files.push_back(spec);
  } else {
    fail("data spec '{}': no such file or directory", spec);
  }
  // Sorted so that the window order (and so a seeded run) does not depend on directory order.
  std::sort(files.begin(), files.end());
  files.erase(std::unique(files.begin(), files.end()), files.end());
  return files;
}

}  // namespace ouro
