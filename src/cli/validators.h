// Option checks for the command line that say what is wrong in words. CLI11's own numeric
// validators accept NaN (every comparison with it is false) and print their ranges with the
// full digits of the largest double ("Value 0 not in range 1 to 1.797...e308").
#pragma once
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>

#include <CLI/CLI.hpp>

namespace ouro::cli {

// A finite number in [lo, hi] ((lo, hi] with lo_open); `what` says the range in words.
inline CLI::Validator finite_in(double lo, double hi, const std::string& what, bool lo_open = false) {
  return CLI::Validator(
      [lo, hi, what, lo_open](std::string& s) -> std::string {
        errno = 0;
        char* end = nullptr;
        const double v = std::strtod(s.c_str(), &end);
        if (s.empty() || end == s.c_str() || *end != '\0' || errno == ERANGE || !std::isfinite(v) ||
            v < lo || v > hi || (lo_open && v == lo))
          return "must be " + what + ", got '" + s + "'";
        return {};
      },
      what);
}

// An integer in [lo, hi]; `what` says the range in words ("a positive integer").
inline CLI::Validator integer_in(long long lo, long long hi, const std::string& what) {
  return CLI::Validator(
      [lo, hi, what](std::string& s) -> std::string {
        errno = 0;
        char* end = nullptr;
        const long long v = std::strtoll(s.c_str(), &end, 10);
        if (s.empty() || end == s.c_str() || *end != '\0' || errno == ERANGE || v < lo || v > hi)
          return "must be " + what + ", got '" + s + "'";
        return {};
      },
      what);
}

}  // namespace ouro::cli
