// ouro::Error: the one exception type for bad input and failed operations. Its message names
// the file, key or offset at fault; the CLI prints it and exits non-zero.
#pragma once
#include <stdexcept>
#include <string>
#include <fmt/format.h>

namespace ouro {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

}  // namespace ouro

// OURO_CHECK(cond, fmt, args...): throws ouro::Error with the message when cond is false.
#define OURO_CHECK(cond, ...)                      \
  do {                                             \
    if (!(cond)) ::ouro::fail(__VA_ARGS__);        \
  } while (0)
