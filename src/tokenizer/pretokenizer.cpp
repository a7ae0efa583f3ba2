#include "tokenizer/pretokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <cstring>

#include "ouro/error.h"
#include "ouro/tokenizer.h"

namespace ouro {

// tiktoken's own strings (tiktoken_ext/openai_public.py), so a ranks file's sidecar can hand
// the same pattern to tiktoken and a tokenizer written by either reads back identically.
const char* const kGpt2Pattern =
    R"('(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s)";
const char* const kGpt4Pattern =
    R"('(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s)";

std::string pattern_by_name(std::string_view name) {
  if (name == "gpt2") return kGpt2Pattern;
  if (name == "gpt4") return kGpt4Pattern;
  fail("unknown split pattern '{}': expected gpt2 or gpt4", name);
}

}  // namespace ouro

namespace ouro::tok {

namespace {

auto* code_of(void* p) { return static_cast<pcre2_code*>(p); }

std::string pcre2_error_text(int err) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(err, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}

bool is_ascii_letter(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

}  // namespace

std::string pcre2_pattern(std::string_view pat) {
  std::string out;
  out.reserve(pat.size() + 32);
  for (size_t i = 0; i < pat.size(); ++i) {
    if (pat[i] != '\\' || i + 1 == pat.size()) {
      out += pat[i];
      continue;
    }
    const char c = pat[++i];  // escapes are consumed in pairs, so "\\s" stays a backslash + s
    if (c == 's') out += "\\p{White_Space}";
    else if (c == 'S') out += "\\P{White_Space}";
    else out += '\\', out += c;
  }
  return out;
}

Pretokenizer::Pretokenizer(const std::string& pattern) : pattern_(pattern) {
  const std::string pat = pcre2_pattern(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(),
                                   PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF |
                                       PCRE2_DOLLAR_ENDONLY,
                                   &err, &off, nullptr);
  if (!code)
    fail("split pattern: {} at offset {} of the PCRE2 form '{}'", pcre2_error_text(err), off, pat);
  code_ = code;
  uint32_t min_len = 0;
  pcre2_pattern_info(code, PCRE2_INFO_MINLENGTH, &min_len);
  if (min_len == 0) {
    pcre2_code_free(code);
    code_ = nullptr;
    fail("split pattern '{}' can match the empty string", pattern);
  }
  jit_ = pcre2_jit_compile(code, PCRE2_JIT_COMPLETE) == 0;  // interpreter if JIT is unavailable
  safe_cuts_ = pattern == kGpt2Pattern || pattern == kGpt4Pattern;
}

Pretokenizer::~Pretokenizer() { pcre2_code_free(code_of(code_)); }

size_t Pretokenizer::safe_cut(std::string_view text, size_t from, size_t limit) const {
  if (!safe_cuts_) return std::string_view::npos;
  limit = std::min(limit, text.size());
  size_t p = std::max<size_t>(from, 1);
  while (p < limit) {
    // A newline at p-1 .. limit-2, so that the candidate cut after it is below limit.
    const void* nl = std::memchr(text.data() + p - 1, '\n', limit - p);
    if (!nl) break;
    const size_t q = static_cast<size_t>(static_cast<const char*>(nl) - text.data()) + 1;
    if (is_ascii_letter(text[q])) return q;
    p = q + 1;
  }
  return std::string_view::npos;
}

std::vector<std::pair<size_t, size_t>> Pretokenizer::chunks(std::string_view text, size_t end,
                                                            size_t target) const {
  std::vector<std::pair<size_t, size_t>> out;
  size_t from = 0;
  while (end - from > 2 * target) {
    const size_t cut = safe_cut(text, from + target, end);
    if (cut == std::string_view::npos) break;
    out.emplace_back(from, cut);
    from = cut;
  }
  out.emplace_back(from, end);
  return out;
}

size_t Pretokenizer::last_safe_cut(std::string_view text, size_t from) const {
  if (!safe_cuts_ || text.size() < 2) return std::string_view::npos;
  // Candidates q = newline + 1 with q < size, scanning newlines backwards from size - 2.
  size_t end = text.size() - 1;  // search newlines in [from, end)
  while (end > from) {
    const void* nl = ::memrchr(text.data() + from, '\n', end - from);
    if (!nl) break;
    const size_t q = static_cast<size_t>(static_cast<const char*>(nl) - text.data()) + 1;
    if (q > from && is_ascii_letter(text[q])) return q;
    end = q - 1;
  }
  return std::string_view::npos;
}

Pretokenizer::Scan::Scan(const Pretokenizer& p, std::string_view text) : p_(p), text_(text) {
  match_data_ = pcre2_match_data_create_from_pattern(code_of(p.code_), nullptr);
  context_ = pcre2_match_context_create(nullptr);
  OURO_CHECK(match_data_ && context_, "split pattern: out of memory for match data");
}

Pretokenizer::Scan::~Scan() {
  pcre2_match_data_free(static_cast<pcre2_match_data*>(match_data_));
  pcre2_match_context_free(static_cast<pcre2_match_context*>(context_));
  pcre2_jit_stack_free(static_cast<pcre2_jit_stack*>(jit_stack_));
}

uint32_t match_limit_at(size_t remaining) {
  const uint64_t want = kMatchLimitBase + kMatchLimitPerByte * static_cast<uint64_t>(remaining);
  return static_cast<uint32_t>(std::min<uint64_t>(want, kMatchLimitMax));
}

bool Pretokenizer::Scan::find(size_t pos, size_t* begin, size_t* end) {
  auto* md = static_cast<pcre2_match_data*>(match_data_);
  auto* ctx = static_cast<pcre2_match_context*>(context_);
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text_.data());
  // The limits scale with what is left of the subject: a legitimate pattern's match costs about
  // one step per byte it looks at (gpt4's \s*[\r\n] walks a whole run of spaces), while
  // catastrophic backtracking (`(?:a|aa)+[bc]` on a run of 'a') grows exponentially and hits
  // the limit within a fraction of a second instead of running for minutes.
  const uint32_t limit = match_limit_at(text_.size() - pos);
  pcre2_set_match_limit(ctx, limit);
  pcre2_set_depth_limit(ctx, limit);  // the interpreter only (JIT ignores it)
  pcre2_set_heap_limit(ctx, kHeapLimitKiB);
  for (;;) {
    const int rc = p_.jit_ ? pcre2_jit_match(code_of(p_.code_), subject, text_.size(), pos, 0, md, ctx)
                           : pcre2_match(code_of(p_.code_), subject, text_.size(), pos, 0, md, ctx);
    if (rc > 0) {
      const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
      *begin = ov[0];
      *end = ov[1];
      return true;
    }
    if (rc == PCRE2_ERROR_NOMATCH) return false;
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT && !jit_stack_) {
      // The default 32 KiB JIT stack can run out on pathological input: retry with 8 MiB.
      jit_stack_ = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
      OURO_CHECK(jit_stack_, "split pattern: out of memory for the JIT stack");
      pcre2_jit_stack_assign(ctx, nullptr, jit_stack_);
      continue;
    }
    throw MatchError(pos, fmt::format("split pattern: matching at byte offset {} failed: {} (limit {} "
                                      "steps; a pattern that backtracks catastrophically?)",
                                      pos, pcre2_error_text(rc), limit));
  }
}

}  // namespace ouro::tok
