#include "common/jsonl.h"

#include <fstream>
#include <iterator>
#include <sstream>

#include <nlohmann/json.hpp>

#include "ouro/error.h"

namespace ouro {

void rewrite_jsonl(const std::filesystem::path& file,
                   const std::function<std::string(const std::string& text)>& keep) {
  std::ifstream in(file, std::ios::binary);
  if (!in) return;
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  in.close();
  const std::string kept = keep(text);
  auto tmp = file;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc | std::ios::binary);
    out << kept;
    OURO_CHECK(out.good(), "{}: write failed", tmp.string());
  }
  std::filesystem::rename(tmp, file);
}

std::string jsonl_lines_below(const std::string& text, const char* key, int limit) {
  std::istringstream in(text);
  std::string kept, line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    if (!j.is_discarded() && j.value(key, 0) < limit) kept += line + "\n";
  }
  return kept;
}

}  // namespace ouro
