// Standard base64 (RFC 4648, '+' '/', '=' padding), as tiktoken's ranks files use it.
#pragma once
#include <optional>
#include <string>
#include <string_view>

namespace ouro::tok {

std::string base64_encode(std::string_view bytes);
// Strict: the length must be a multiple of 4, padding only at the end, no other characters.
// Returns nullopt on any violation.
std::optional<std::string> base64_decode(std::string_view text);

}  // namespace ouro::tok
