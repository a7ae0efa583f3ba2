#include "tokenizer/gpt2_bytes.h"

#include <unordered_map>

namespace ouro::tok {

namespace {

bool printable_latin1(int b) {
  return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
}

struct Maps {
  std::array<uint32_t, 256> to_cp{};
  std::array<uint8_t, 256> order{};
  std::unordered_map<uint32_t, uint8_t> from_cp;
  Maps() {
    int k = 0, extra = 0;
    for (int b = 0; b < 256; ++b)
      if (printable_latin1(b)) to_cp[b] = static_cast<uint32_t>(b), order[k++] = static_cast<uint8_t>(b);
    for (int b = 0; b < 256; ++b)
      if (!printable_latin1(b)) to_cp[b] = static_cast<uint32_t>(256 + extra++), order[k++] = static_cast<uint8_t>(b);
    for (int b = 0; b < 256; ++b) from_cp[to_cp[b]] = static_cast<uint8_t>(b);
  }
};

const Maps& maps() {
  static const Maps m;
  return m;
}

}  // namespace

const std::array<uint32_t, 256>& gpt2_byte_to_codepoint() { return maps().to_cp; }
const std::array<uint8_t, 256>& gpt2_bytes_in_rank_order() { return maps().order; }

std::optional<std::string> gpt2_unmap(std::string_view s) {
  const auto& from = maps().from_cp;
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<uint8_t>(s[i]);
    uint32_t cp;
    size_t len;
    // Mapped code points are all below U+0144: one or two UTF-8 bytes.
    if (c < 0x80) cp = c, len = 1;
    else if ((c & 0xE0) == 0xC0 && i + 1 < s.size() && (static_cast<uint8_t>(s[i + 1]) & 0xC0) == 0x80)
      cp = (c & 0x1Fu) << 6 | (static_cast<uint8_t>(s[i + 1]) & 0x3Fu), len = 2;
    else return std::nullopt;
    auto it = from.find(cp);
    if (it == from.end()) return std::nullopt;
    out += static_cast<char>(it->second);
    i += len;
  }
  return out;
}

}  // namespace ouro::tok
