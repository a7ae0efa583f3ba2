// Overflow-checked size arithmetic for sizes that come from outside: file headers, configs,
// JSON. A product that wraps passes every later comparison with the wrapped number (a file size,
// a buffer size) and then indexes far past a buffer, so each such size is computed here and an
// overflow becomes an error that names the field, never a small wrong number.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <optional>

namespace ouro {

// a * b, or nothing when the product does not fit 64 bits.
inline std::optional<uint64_t> checked_mul(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// a + b, or nothing when the sum does not fit 64 bits.
inline std::optional<uint64_t> checked_add(uint64_t a, uint64_t b) {
  uint64_t r;
  if (__builtin_add_overflow(a, b, &r)) return std::nullopt;
  return r;
}

// The product of the factors, or nothing when it does not fit 64 bits or exceeds `limit`.
inline std::optional<uint64_t> checked_product(std::initializer_list<uint64_t> factors,
                                               uint64_t limit = UINT64_MAX) {
  uint64_t r = 1;
  for (uint64_t f : factors) {
    auto next = checked_mul(r, f);
    if (!next || *next > limit) return std::nullopt;
    r = *next;
  }
  return r;
}

}  // namespace ouro
