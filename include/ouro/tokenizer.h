// Byte-level BPE tokenizer with tiktoken's semantics: text is split into pieces by a regex
// (GPT-2's pattern by default), each piece's bytes are merged by rank (the lowest-ranked
// adjacent pair first, leftmost on ties), and a token's id is its rank. Special tokens take the
// ids after the ranks. Any byte string encodes and decodes back to itself, invalid UTF-8
// included: bytes the pattern cannot match are encoded as pieces of their own.
//
// Files: FILE holds the ranks in tiktoken's format (base64 of the token's bytes, a space, the
// rank; one per line, ranks 0..n-1 in order) and FILE.json the pattern and special tokens.
// GPT-2's encoder.json + vocab.bpe load too (a directory holding both, or encoder.json's path).
#pragma once
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ouro {

// Split patterns known by name: tiktoken's r50k/gpt2 pattern and its cl100k (GPT-4) pattern.
extern const char* const kGpt2Pattern;
extern const char* const kGpt4Pattern;
constexpr const char* kEndOfText = "<|endoftext|>";
// The largest special-token id a tokenizer accepts: ids index tables of vocab_size entries, so
// an id far past the ranks (a sidecar's 4e9) would allocate gigabytes before anything else
// fails. 2^24 is well above every real vocabulary (cl100k's specials end at 100276, o200k's
// near 200k).
constexpr uint32_t kMaxSpecialId = (1u << 24) - 1;
// "gpt2" | "gpt4" -> the pattern; anything else is an error.
std::string pattern_by_name(std::string_view name);

class Tokenizer {
 public:
  // tokens[r] is the byte string of rank r (all 256 single bytes must be among them, no
  // duplicates); special tokens take ids >= tokens.size(), unique (tiktoken's cl100k leaves
  // holes between them), at most kMaxSpecialId. Errors name the offending token. source: the
  // file the tokenizer was read from, named by encoding errors ("" for one built in memory).
  Tokenizer(std::vector<std::string> tokens,
            std::vector<std::pair<std::string, uint32_t>> specials, std::string pattern,
            std::string source = {});
  ~Tokenizer();
  Tokenizer(const Tokenizer&);
  Tokenizer& operator=(const Tokenizer&);

  // A ranks file (+ FILE.json; without one: GPT-2's pattern and <|endoftext|> after the ranks),
  // or GPT-2's encoder.json + vocab.bpe (their directory or encoder.json's path; a Hugging Face
  // directory's vocab.json + merges.txt are the same files under other names).
  static Tokenizer load(const std::filesystem::path& path);
  // Byte-level: token b is byte b, <|endoftext|> is 256 (what `ouro prepare` writes without a
  // tokenizer, kByteVocab = 257 tokens).
  static Tokenizer byte_level();
  // Writes the ranks file and FILE.json atomically.
  void save(const std::filesystem::path& path) const;

  const std::string& source() const;  // the file it was read from, or ""
  size_t n_ranks() const;
  size_t vocab_size() const;  // 1 + the largest id
  const std::string& pattern() const;
  const std::vector<std::pair<std::string, uint32_t>>& specials() const;
  std::optional<uint32_t> special_id(std::string_view text) const;
  uint32_t eot_id() const;  // <|endoftext|>; an error when this tokenizer has none
  bool has_token(uint32_t id) const;  // false past the vocabulary and in holes between specials
  std::string_view token_bytes(uint32_t id) const;

  // Encodes text as ordinary text (special-token strings are plain bytes). threads: 0 = all
  // cores; a long text is cut at points where the pattern is known to split anyway, so every
  // thread count gives the same ids. A match PCRE2 gives up on (its match or depth limit: a
  // pattern that backtracks catastrophically) is an Error naming the tokenizer's file and the
  // byte offset, whatever the thread count.
  std::vector<uint32_t> encode(std::string_view text, int threads = 1) const;
  // Like encode, but occurrences of the special tokens' text become their ids.
  std::vector<uint32_t> encode_with_specials(std::string_view text, int threads = 1) const;
  // Streaming: encodes text[0, cut) into out (appending) and returns cut, the last point of
  // text where the pattern always splits (see Pretokenizer::safe_cut) so that what comes after
  // text cannot change these ids. Returns 0 when text has no such point (or the pattern is not
  // one ouro knows): read more, or finish the stream with encode().
  size_t encode_prefix(std::string_view text, std::vector<uint32_t>& out, int threads = 1) const;
  // One id list per document, documents spread over threads (0 = all cores).
  std::vector<std::vector<uint32_t>> encode_batch(const std::vector<std::string_view>& docs,
                                                  int threads = 0) const;
  // Concatenates the tokens' bytes; an id outside the vocabulary is an error naming its index.
  std::string decode(const uint32_t* ids, size_t n) const;
  std::string decode(const std::vector<uint32_t>& ids) const { return decode(ids.data(), ids.size()); }

  // Internals (src/tokenizer/tokenizer_impl.h), for tests and the fuzz target.
  struct Impl;
  const std::shared_ptr<const Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<const Impl> impl_;
};

struct BpeTrainOptions {
  size_t vocab_size = 8192;           // ranks + specials
  std::string pattern = kGpt2Pattern;
  std::vector<std::string> specials = {kEndOfText};
  int threads = 0;                    // pre-token counting; 0 = all cores
  size_t read_bytes = 64 << 20;       // train_bpe reads files in blocks of this size
};

struct BpeTrainStats {
  size_t input_bytes = 0, unique_pieces = 0, merges = 0;
  double count_s = 0, merge_s = 0;
};

// Learns merges on the text of `inputs` (special-token strings in the text separate pieces and
// are not learned). Deterministic: the most frequent adjacent pair is merged first; ties go to
// the pair whose left token has the lowest id, then the right token's. Errors: no input text,
// vocab_size < 256 + specials. Files are streamed: memory holds a block of text and the counts
// of the unique pre-tokens.
Tokenizer train_bpe(const std::vector<std::filesystem::path>& inputs, const BpeTrainOptions& opt,
                    BpeTrainStats* stats = nullptr);
// The same on in-memory documents.
Tokenizer train_bpe_texts(const std::vector<std::string_view>& docs, const BpeTrainOptions& opt,
                          BpeTrainStats* stats = nullptr);

}  // namespace ouro
