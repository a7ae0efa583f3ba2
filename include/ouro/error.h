// ouro::Error: the one exception type for bad input and failed operations. Its message names
// the file, key or offset at fault; the CLI prints it and exits non-zero.
#pragma once
#include <stdexcept>
#include <string>

#if !defined(__CUDACC__)
#include <fmt/format.h>
#else
#include <cstring>
#include <sstream>
#endif

namespace ouro {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

#if !defined(__CUDACC__)
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}
#else
// Host code compiled by nvcc (src/device/*.cu): fmt 9 does not build under nvcc, so the
// messages substitute each "{}" with the argument as an ostream prints it (no format specs).
template <typename... Args>
[[noreturn]] void fail(const char* f, Args&&... args) {
  std::ostringstream out;
  auto put = [&](const auto& arg) {
    const char* hole = std::strstr(f, "{}");
    if (!hole) return;
    out.write(f, hole - f);
    out << std::boolalpha << arg;
    f = hole + 2;
  };
  (put(args), ...);
  out << f;
  throw Error(out.str());
}
#endif

}  // namespace ouro

// OURO_CHECK(cond, fmt, args...): throws ouro::Error with the message when cond is false.
#define OURO_CHECK(cond, ...)                      \
  do {                                             \
    if (!(cond)) ::ouro::fail(__VA_ARGS__);        \
  } while (0)
