// Tokenizer files: tiktoken ranks + JSON sidecar (read and written), GPT-2's encoder.json +
// vocab.bpe (read). Errors name the file and line (ranks, vocab.bpe) or key (JSON).
#include <charconv>
#include <cstring>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "ouro/error.h"
#include "ouro/tokenizer.h"
#include "tokenizer/base64.h"
#include "tokenizer/byte_table.h"
#include "tokenizer/gpt2_bytes.h"
#include "tokenizer/text_parts.h"

namespace fs = std::filesystem;

namespace ouro {

namespace {

std::string read_text(const fs::path& p) { return tok::read_file_text(p, "tokenizer"); }

// Calls fn(line_number, line) for each line (1-based, '\r\n' tolerated).
template <class F>
void for_each_line(std::string_view text, F&& fn) {
  size_t pos = 0, line = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) nl = text.size();
    std::string_view l = text.substr(pos, nl - pos);
    if (!l.empty() && l.back() == '\r') l.remove_suffix(1);
    fn(++line, l);
    pos = nl + 1;
  }
}

fs::path sidecar_of(const fs::path& ranks) { return fs::path(ranks.string() + ".json"); }

// Ranks file: "base64 rank" per line, ranks 0, 1, 2, ... in order (what tiktoken writes).
// Empty lines are skipped, as tiktoken's loader does.
std::vector<std::string> read_ranks(const fs::path& path) {
  const std::string text = read_text(path);
  const std::string name = path.string();
  std::vector<std::string> tokens;
  std::vector<size_t> line_of;  // line of each rank, for duplicate messages
  tok::ByteTable seen;
  for_each_line(text, [&](size_t ln, std::string_view l) {
    if (l.empty()) return;
    const size_t sp = l.find(' ');
    if (sp == std::string_view::npos || l.find(' ', sp + 1) != std::string_view::npos)
      fail("{}:{}: expected 'BASE64 RANK', got '{}'", name, ln, l.substr(0, 80));
    const std::string_view b64 = l.substr(0, sp), num = l.substr(sp + 1);
    auto bytes = tok::base64_decode(b64);
    if (!bytes) fail("{}:{}: invalid base64 '{}'", name, ln, b64.substr(0, 80));
    if (bytes->empty()) fail("{}:{}: empty token", name, ln);
    uint64_t rank = 0;
    auto [end, ec] = std::from_chars(num.data(), num.data() + num.size(), rank);
    if (ec != std::errc() || end != num.data() + num.size() || num.empty())
      fail("{}:{}: rank '{}' is not a non-negative integer", name, ln, num);
    const uint64_t expect = tokens.size();
    if (rank < expect)
      fail("{}:{}: duplicate rank {} (first on line {})", name, ln, rank, line_of[rank]);
    if (rank > expect) {
      if (expect == 0) fail("{}:{}: gap: the first rank is {}, expected 0", name, ln, rank);
      fail("{}:{}: gap: rank {} follows rank {} (ranks {}..{} missing)", name, ln, rank, expect - 1,
           expect, rank - 1);
    }
    const uint32_t prev = seen.find(*bytes);
    if (prev != tok::ByteTable::kMissing)
      fail("{}:{}: token '{}' already has rank {} (line {})", name, ln, b64, prev, line_of[prev]);
    seen.insert(*bytes, static_cast<uint32_t>(rank));
    tokens.push_back(std::move(*bytes));
    line_of.push_back(ln);
  });
  OURO_CHECK(!tokens.empty(), "{}: no ranks", name);
  return tokens;
}

nlohmann::json parse_json(const fs::path& p) {
  try {
    return nlohmann::json::parse(read_text(p));
  } catch (const nlohmann::json::exception& e) {
    fail("{}: invalid JSON: {}", p.string(), e.what());
  }
}

Tokenizer load_ranks(const fs::path& path) {
  std::vector<std::string> tokens = read_ranks(path);
  std::string pattern = kGpt2Pattern;
  std::vector<std::pair<std::string, uint32_t>> specials;
  const fs::path side = sidecar_of(path);
  if (!fs::exists(side)) {
    // A bare tiktoken file (no sidecar): GPT-2's conventions.
    specials.emplace_back(kEndOfText, static_cast<uint32_t>(tokens.size()));
    return Tokenizer(std::move(tokens), std::move(specials), std::move(pattern), path.string());
  }
  const nlohmann::json j = parse_json(side);
  const std::string sn = side.string();
  OURO_CHECK(j.is_object(), "{}: expected a JSON object", sn);
  if (j.contains("pattern")) {
    OURO_CHECK(j["pattern"].is_string(), "{}: key 'pattern' must be a string", sn);
    pattern = j["pattern"].get<std::string>();
  }
  if (j.contains("special_tokens")) {
    const auto& st = j["special_tokens"];
    OURO_CHECK(st.is_object(), "{}: key 'special_tokens' must be an object {{text: id}}", sn);
    for (auto it = st.begin(); it != st.end(); ++it) {
      // Checked as JSON numbers before any conversion: get<uint32_t>() would wrap 2^32+5 to 5.
      const auto& v = it.value();
      OURO_CHECK(v.is_number_unsigned(), "{}: special_tokens.{} must be a non-negative integer id, got {}",
                 sn, it.key(), v.dump());
      OURO_CHECK(v.get<uint64_t>() <= kMaxSpecialId,
                 "{}: special_tokens.{} = {} is above the largest special id this tokenizer accepts ({})",
                 sn, it.key(), v.get<uint64_t>(), kMaxSpecialId);
      specials.emplace_back(it.key(), v.get<uint32_t>());
    }
    std::sort(specials.begin(), specials.end(), [](auto& a, auto& b) { return a.second < b.second; });
  }
  if (j.contains("n_ranks")) {
    OURO_CHECK(j["n_ranks"].is_number_unsigned() && j["n_ranks"].get<size_t>() == tokens.size(),
               "{}: n_ranks is {} but {} holds {} ranks", sn, j["n_ranks"].dump(), path.string(),
               tokens.size());
  }
  try {
    return Tokenizer(std::move(tokens), std::move(specials), std::move(pattern), path.string());
  } catch (const Error& e) {
    fail("{}: {}", sn, e.what());
  }
}

// GPT-2's files: vocab.bpe lists the merges in rank order after the 256 byte tokens;
// encoder.json maps every token (bytes written through GPT-2's byte map) to its id and must
// agree with those ranks; its entries past the ranks are special tokens.
Tokenizer load_gpt2(const fs::path& encoder_json, const fs::path& vocab_bpe) {
  std::vector<std::string> tokens;
  tok::ByteTable index;
  for (uint8_t b : tok::gpt2_bytes_in_rank_order()) {
    tokens.emplace_back(1, static_cast<char>(b));
    index.insert(tokens.back(), static_cast<uint32_t>(tokens.size() - 1));
  }
  const std::string vn = vocab_bpe.string();
  for_each_line(read_text(vocab_bpe), [&](size_t ln, std::string_view l) {
    if (l.empty() || (ln == 1 && l.rfind("#version", 0) == 0)) return;
    const size_t sp = l.find(' ');
    if (sp == std::string_view::npos || l.find(' ', sp + 1) != std::string_view::npos)
      fail("{}:{}: expected two tokens separated by one space, got '{}'", vn, ln, l.substr(0, 80));
    auto a = tok::gpt2_unmap(l.substr(0, sp)), b = tok::gpt2_unmap(l.substr(sp + 1));
    if (!a || !b) fail("{}:{}: a token holds a character outside GPT-2's byte map", vn, ln);
    if (index.find(*a) == tok::ByteTable::kMissing || index.find(*b) == tok::ByteTable::kMissing)
      fail("{}:{}: merge of '{}' needs both parts to be earlier tokens", vn, ln, l);
    std::string merged = *a + *b;
    if (!index.insert(merged, static_cast<uint32_t>(tokens.size())))
      fail("{}:{}: merge '{}' makes a token that already has rank {}", vn, ln, l, index.find(merged));
    tokens.push_back(std::move(merged));
  });
  const nlohmann::json j = parse_json(encoder_json);
  const std::string en = encoder_json.string();
  OURO_CHECK(j.is_object(), "{}: expected a JSON object {{token: id}}", en);
  std::vector<std::pair<std::string, uint32_t>> specials;
  size_t n_rank_entries = 0;
  for (auto it = j.begin(); it != j.end(); ++it) {
    OURO_CHECK(it.value().is_number_unsigned(), "{}: \"{}\" must map to a non-negative integer id", en, it.key());
    const auto id = it.value().get<uint64_t>();
    OURO_CHECK(id < tokens.size() || id <= kMaxSpecialId,
               "{}: \"{}\" has id {}, above the largest special id this tokenizer accepts ({})", en,
               it.key(), id, kMaxSpecialId);
    if (id >= tokens.size()) {
      specials.emplace_back(it.key(), static_cast<uint32_t>(id));
      continue;
    }
    auto bytes = tok::gpt2_unmap(it.key());
    if (!bytes || *bytes != tokens[id])
      fail("{}: \"{}\" has id {}, but {} gives rank {} to another token", en, it.key(), id, vn, id);
    ++n_rank_entries;
  }
  OURO_CHECK(n_rank_entries == tokens.size(), "{}: {} entries for the {} ranks of {}", en,
             n_rank_entries, tokens.size(), vn);
  std::sort(specials.begin(), specials.end(), [](auto& a, auto& b) { return a.second < b.second; });
  return Tokenizer(std::move(tokens), std::move(specials), kGpt2Pattern, encoder_json.string());
}

}  // namespace

Tokenizer Tokenizer::load(const fs::path& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (fs::exists(path / "encoder.json") && fs::exists(path / "vocab.bpe"))
      return load_gpt2(path / "encoder.json", path / "vocab.bpe");
    if (fs::exists(path / "vocab.json") && fs::exists(path / "merges.txt"))
      return load_gpt2(path / "vocab.json", path / "merges.txt");
    fail("tokenizer: directory {} holds neither encoder.json + vocab.bpe nor vocab.json + merges.txt",
         path.string());
  }
  OURO_CHECK(fs::is_regular_file(path, ec), "tokenizer: {} is not a readable file", path.string());
  if (path.filename() == "encoder.json") {
    const fs::path bpe = path.parent_path() / "vocab.bpe";
    OURO_CHECK(fs::exists(bpe), "tokenizer: {} has no vocab.bpe beside it", path.string());
    return load_gpt2(path, bpe);
  }
  return load_ranks(path);
}

Tokenizer Tokenizer::byte_level() {
  std::vector<std::string> tokens;
  for (int b = 0; b < 256; ++b) tokens.emplace_back(1, static_cast<char>(b));
  return Tokenizer(std::move(tokens), {{kEndOfText, 256}}, kGpt2Pattern);
}

void Tokenizer::save(const fs::path& path) const {
  std::string text;
  text.reserve(n_ranks() * 16);
  for (size_t r = 0; r < n_ranks(); ++r) {
    text += tok::base64_encode(token_bytes(static_cast<uint32_t>(r)));
    text += ' ';
    text += std::to_string(r);
    text += '\n';
  }
  nlohmann::json side;
  side["format"] = "ouro-bpe";
  side["version"] = 1;
  side["pattern"] = pattern();
  side["special_tokens"] = nlohmann::json::object();
  for (const auto& [s, id] : specials()) side["special_tokens"][s] = id;
  side["n_ranks"] = n_ranks();
  side["vocab_size"] = vocab_size();
  if (path.has_parent_path()) fs::create_directories(path.parent_path());
  io::write_file_atomic(path, text);
  io::write_file_atomic(sidecar_of(path), side.dump(2) + "\n");
}

}  // namespace ouro
