#include "train/run_tokenizer.h"

#include "ouro/data.h"
#include "ouro/error.h"

namespace fs = std::filesystem;

namespace ouro {

namespace {

Tokenizer checked(Tokenizer tk, const std::string& origin, int vocab_size) {
  OURO_CHECK(tk.vocab_size() <= static_cast<size_t>(vocab_size),
             "tokenizer {} has {} ids but the model's vocabulary is {}", origin, tk.vocab_size(),
             vocab_size);
  return tk;
}

}  // namespace

Tokenizer find_model_tokenizer(const std::string& path, const fs::path& model, int vocab_size) {
  if (!path.empty()) return checked(Tokenizer::load(path), path, vocab_size);
  std::error_code ec;
  fs::path dir = fs::is_directory(model, ec) ? model : model.parent_path();
  for (int up = 0; up < 3 && !dir.empty(); ++up, dir = dir.parent_path()) {
    const fs::path f = dir / kRunTokenizerFile;
    if (fs::exists(f, ec)) return checked(Tokenizer::load(f), f.string(), vocab_size);
    if (up == 0 && fs::exists(dir / "vocab.json", ec) && fs::exists(dir / "merges.txt", ec))
      return checked(Tokenizer::load(dir), dir.string(), vocab_size);
  }
  OURO_CHECK(vocab_size == kByteVocab,
             "{}: vocabulary of {} tokens and no {} beside it: pass --tokenizer", model.string(),
             vocab_size, kRunTokenizerFile);
  return Tokenizer::byte_level();
}

std::optional<Tokenizer> load_run_tokenizer(const std::string& path, int vocab_size,
                                            const fs::path& out_dir) {
  if (path.empty()) {
    if (vocab_size == kByteVocab) return Tokenizer::byte_level();
    return std::nullopt;
  }
  Tokenizer tk = checked(Tokenizer::load(path), "data.tokenizer " + path, vocab_size);
  if (!out_dir.empty()) tk.save(out_dir / kRunTokenizerFile);
  return tk;
}

std::string decode_sample(const Tokenizer& tk, const std::vector<int>& ids) {
  const auto eot = tk.special_id(kEndOfText);
  size_t n = ids.size();
  if (n > 0 && eot && ids[n - 1] == static_cast<int>(*eot)) --n;
  std::string out;
  for (size_t i = 0; i < n; ++i)
    if (ids[i] >= 0 && tk.has_token(static_cast<uint32_t>(ids[i])))
      out += tk.token_bytes(static_cast<uint32_t>(ids[i]));
  return out;
}

}  // namespace ouro
