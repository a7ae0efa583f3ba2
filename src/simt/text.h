// String building for report messages without operator+ chains (GCC 12 warns falsely,
// -Wrestrict, on "literal" + std::string at -O3).
#pragma once
#include <string>
#include <string_view>
#include <type_traits>

namespace ouro::simt::detail {

template <class T>
void append(std::string& s, const T& v) {
  if constexpr (std::is_arithmetic_v<T>) {
    s += std::to_string(v);
  } else {
    s += std::string_view(v);
  }
}

template <class... T>
std::string cat(const T&... parts) {
  std::string s;
  (append(s, parts), ...);
  return s;
}

}  // namespace ouro::simt::detail
