// GPT-2's reversible byte <-> Unicode mapping, used only to read encoder.json and vocab.bpe:
// there every byte is written as one printable code point. Printable Latin-1 bytes ('!'..'~',
// U+00A1..U+00AC, U+00AE..U+00FF) stand for themselves; the other 68 bytes map, in ascending
// order, to U+0100, U+0101, ... GPT-2's first 256 token ids follow the same order.
#pragma once
#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ouro::tok {

// byte -> code point
const std::array<uint32_t, 256>& gpt2_byte_to_codepoint();
// The bytes in GPT-2's rank order (printable ones first).
const std::array<uint8_t, 256>& gpt2_bytes_in_rank_order();
// Decodes a UTF-8 string of mapped code points back to bytes; nullopt if some code point is not
// one of the 256 (or the UTF-8 is malformed).
std::optional<std::string> gpt2_unmap(std::string_view utf8);

}  // namespace ouro::tok
