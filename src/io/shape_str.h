// "[a,b,c]": a tensor shape as error messages print it.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace ouro::io {

inline std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ',';
    out += std::to_string(s[i]);
  }
  return out + "]";
}

}  // namespace ouro::io
