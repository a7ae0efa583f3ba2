// Pre-tokenization: the split pattern, compiled once by PCRE2 (UTF + Unicode properties + JIT),
// cuts text into the pieces BPE merges inside. Matches tiktoken's fancy-regex semantics for its
// patterns: Perl-style leftmost-first alternation with backtracking, `$` only at the very end
// (PCRE2_DOLLAR_ENDONLY), and `\s`/`\S` meaning Unicode White_Space (PCRE2's UCP `\s` also takes
// U+180E, which Rust's does not, so they are rewritten to \p{White_Space}). Unicode property
// tables are PCRE2's: a character assigned in a Unicode version newer than its tables would be
// classified differently from tiktoken's regex crate (none found among the Unicode 15 and 16
// letters in tests/fixtures/tokenizer/tricky.json).
//
// Invalid UTF-8 never matches (PCRE2_MATCH_INVALID_UTF); the bytes between matches come out as
// pieces of their own, so every byte of the input lands in exactly one piece.
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "ouro/error.h"

namespace ouro::tok {

// PCRE2's limits for one match starting at byte p of a subject of n bytes: match (backtracking
// steps) and depth limits of kMatchLimitBase + kMatchLimitPerByte * (n - p), at most
// kMatchLimitMax; a heap limit of kHeapLimitKiB.
constexpr uint64_t kMatchLimitBase = 100000;
constexpr uint64_t kMatchLimitPerByte = 4;
constexpr uint64_t kMatchLimitMax = 100000000;
constexpr uint32_t kHeapLimitKiB = 256 * 1024;
uint32_t match_limit_at(size_t remaining);

// A match that PCRE2 gave up on (a limit, or an internal error): the subject's byte offset.
class MatchError : public Error {
 public:
  MatchError(size_t offset, const std::string& what) : Error(what), offset_(offset) {}
  size_t offset() const { return offset_; }

 private:
  size_t offset_;
};

class Pretokenizer {
 public:
  // Errors name the pattern offset PCRE2 complains about, and reject patterns that can match
  // the empty string.
  explicit Pretokenizer(const std::string& pattern);
  ~Pretokenizer();
  Pretokenizer(const Pretokenizer&) = delete;
  Pretokenizer& operator=(const Pretokenizer&) = delete;

  // One pass over one text (per thread): the matcher's scratch memory.
  class Scan {
   public:
    Scan(const Pretokenizer& p, std::string_view text);
    ~Scan();
    Scan(const Scan&) = delete;
    Scan& operator=(const Scan&) = delete;
    // The first match starting at or after pos: true and [*begin, *end), or false.
    bool find(size_t pos, size_t* begin, size_t* end);

   private:
    const Pretokenizer& p_;
    std::string_view text_;
    void* match_data_ = nullptr;
    void* context_ = nullptr;
    void* jit_stack_ = nullptr;
  };

  // Calls emit(offset, length) for every piece of `text` that starts in [from, to), in order.
  // The whole text is the subject (lookaheads see past `to`); `from` must be a piece boundary
  // (0 or a safe cut), and so must `to` for the pieces to end there.
  template <class Emit>
  void split(std::string_view text, size_t from, size_t to, Emit&& emit) const {
    Scan scan(*this, text);
    size_t pos = from, b = 0, e = 0;
    while (pos < to) {
      if (!scan.find(pos, &b, &e) || b >= to) {
        emit(pos, to - pos);  // unmatched tail (invalid UTF-8) up to the cut
        return;
      }
      if (b > pos) emit(pos, b - pos);  // unmatched bytes before the match
      emit(b, e - b);
      pos = e;
    }
  }

  // Whether safe_cut knows this pattern (tiktoken's gpt2 and gpt4 patterns).
  bool has_safe_cuts() const { return safe_cuts_; }
  // The first position p in [from, limit) where every scan must end a piece and start the next
  // one independently of what came before: text[p-1] == '\n' and text[p] an ASCII letter. No
  // alternative of the gpt2/gpt4 patterns matches a newline followed by a letter, and the byte
  // before the letter is valid UTF-8, so no match or unmatched run spans p. npos if none.
  size_t safe_cut(std::string_view text, size_t from, size_t limit) const;

  // Ranges [from, to) tiling text[0, end) at safe cuts, each at least `target` bytes (the last
  // may be shorter; one range when the pattern has no known cuts). Each range can be split on
  // its own thread with text as the subject.
  std::vector<std::pair<size_t, size_t>> chunks(std::string_view text, size_t end, size_t target) const;

  // The last such p in (from, text.size()); npos if none.
  size_t last_safe_cut(std::string_view text, size_t from = 0) const;

  const std::string& pattern() const { return pattern_; }

 private:
  std::string pattern_;
  void* code_ = nullptr;
  bool jit_ = false;
  bool safe_cuts_ = false;
};

// The pattern with \s and \S spelled as Unicode White_Space, for PCRE2.
std::string pcre2_pattern(std::string_view tiktoken_pattern);

}  // namespace ouro::tok
