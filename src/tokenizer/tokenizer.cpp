// Tokenizer construction, encoding (split, then merge each piece; chunks of long texts and whole
// documents spread over OpenMP threads) and decoding.
#include "ouro/tokenizer.h"

#include <algorithm>
#include <cstring>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/omp_errors.h"
#include "ouro/error.h"
#include "tokenizer/base64.h"
#include "tokenizer/bpe_merge.h"
#include "tokenizer/text_parts.h"
#include "tokenizer/tokenizer_impl.h"

namespace ouro {

namespace {


// A contiguous part of one document, encoded by one thread.
struct Task {
  size_t doc, from, to;
};

// Texts shorter than this are never cut: a thread's start-up costs more than it saves.
constexpr size_t kMinChunk = 1 << 16;

}  // namespace

Tokenizer::Tokenizer(std::vector<std::string> tokens,
                     std::vector<std::pair<std::string, uint32_t>> specials, std::string pattern,
                     std::string source) {
  auto impl = std::make_shared<Impl>();
  impl->source = std::move(source);
  impl->pre = std::make_unique<tok::Pretokenizer>(pattern);
  impl->pattern = std::move(pattern);
  for (size_t r = 0; r < tokens.size(); ++r) {
    OURO_CHECK(!tokens[r].empty(), "tokenizer: rank {} is an empty token", r);
    if (!impl->ranks.insert(tokens[r], static_cast<uint32_t>(r)))
      fail("tokenizer: token {} (base64) has two ranks, {} and {}", tok::base64_encode(tokens[r]),
           impl->ranks.find(tokens[r]), r);
  }
  for (int b = 0; b < 256; ++b) {
    const char c = static_cast<char>(b);
    OURO_CHECK(impl->ranks.find(&c, 1) != tok::ByteTable::kMissing,
               "tokenizer: byte 0x{:02x} has no rank; a byte-level BPE needs all 256 bytes", b);
  }
  size_t vocab = tokens.size();
  for (size_t i = 0; i < specials.size(); ++i) {
    const auto& [text, id] = specials[i];
    OURO_CHECK(!text.empty(), "tokenizer: special token {} is empty", i);
    OURO_CHECK(id >= tokens.size(), "tokenizer: special token {} has id {}, inside the ranks (0..{})",
               text, id, tokens.size() - 1);
    OURO_CHECK(id <= kMaxSpecialId, "tokenizer: special token {} has id {}, above the limit of {}",
               text, id, kMaxSpecialId);
    for (size_t j = 0; j < i; ++j) {
      OURO_CHECK(specials[j].first != text, "tokenizer: special token {} given twice", text);
      OURO_CHECK(specials[j].second != id, "tokenizer: special tokens {} and {} share id {}",
                 specials[j].first, text, id);
    }
    vocab = std::max<size_t>(vocab, size_t{id} + 1);
  }
  impl->vocab_size = vocab;
  std::vector<const std::string*> by_id(vocab, nullptr);
  for (size_t r = 0; r < tokens.size(); ++r) by_id[r] = &tokens[r];
  for (const auto& s : specials) by_id[s.second] = &s.first;
  impl->offset.reserve(vocab + 1);
  impl->valid.reserve(vocab);
  for (const std::string* t : by_id) {
    impl->offset.push_back(static_cast<uint32_t>(impl->arena.size()));
    impl->valid.push_back(t != nullptr);
    if (t) impl->arena += *t;
  }
  impl->offset.push_back(static_cast<uint32_t>(impl->arena.size()));
  impl->tokens = std::move(tokens);
  impl->specials = std::move(specials);
  impl_ = std::move(impl);
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(const Tokenizer&) = default;
Tokenizer& Tokenizer::operator=(const Tokenizer&) = default;

const std::string& Tokenizer::source() const { return impl_->source; }
size_t Tokenizer::n_ranks() const { return impl_->tokens.size(); }
size_t Tokenizer::vocab_size() const { return impl_->vocab_size; }
const std::string& Tokenizer::pattern() const { return impl_->pattern; }
const std::vector<std::pair<std::string, uint32_t>>& Tokenizer::specials() const {
  return impl_->specials;
}

std::optional<uint32_t> Tokenizer::special_id(std::string_view text) const {
  for (const auto& [s, id] : impl_->specials)
    if (s == text) return id;
  return std::nullopt;
}

uint32_t Tokenizer::eot_id() const {
  auto id = special_id(kEndOfText);
  OURO_CHECK(id.has_value(), "tokenizer: no {} special token", kEndOfText);
  return *id;
}

bool Tokenizer::has_token(uint32_t id) const {
  return id < impl_->vocab_size && impl_->valid[id];
}

std::string_view Tokenizer::token_bytes(uint32_t id) const {
  OURO_CHECK(id < impl_->vocab_size && impl_->valid[id], "tokenizer: id {} is not a token", id);
  return std::string_view(impl_->arena).substr(impl_->offset[id], impl_->offset[id + 1] - impl_->offset[id]);
}

namespace {

void encode_task(const Tokenizer::Impl& im, std::string_view text, size_t from, size_t to,
                 std::vector<uint32_t>& out) {
  const auto* bytes = reinterpret_cast<const uint8_t*>(text.data());
  out.reserve(out.size() + (to - from) / 3);
  im.pre->split(text, from, to, [&](size_t off, size_t len) {
    tok::bpe_merge(bytes + off, len, im.ranks, out);
  });
}

// Cuts each document's [0, ends[d]) into tasks of about `chunk` bytes at safe cuts (whole when
// the pattern has none), encodes the tasks on `threads` threads and concatenates per document.
// The document itself stays the regex subject, so lookaheads see past ends[d].
std::vector<std::vector<uint32_t>> encode_docs(const Tokenizer::Impl& im,
                                               const std::vector<std::string_view>& docs,
                                               const std::vector<size_t>& ends, int threads) {
  size_t total = 0;
  for (size_t e : ends) total += e;
  // ~32 tasks per thread: the last task runs while the other threads may have nothing left, so a
  // task must be a small part of a thread's share (8 per thread left 15 tasks on 2 threads on a
  // 99 MB text: one ran alone, ~6% of the time).
  const size_t chunk = std::max(kMinChunk, total / (static_cast<size_t>(threads) * 32) + 1);
  std::vector<Task> tasks;
  for (size_t d = 0; d < docs.size(); ++d) {
    if (threads == 1) {
      tasks.push_back({d, 0, ends[d]});
      continue;
    }
    for (auto [from, to] : im.pre->chunks(docs[d], ends[d], chunk)) tasks.push_back({d, from, to});
  }
  std::vector<std::vector<uint32_t>> parts(tasks.size());
  const auto n = static_cast<long>(tasks.size());
  OmpErrors errors;
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads) if (threads > 1 && n > 1)
  for (long i = 0; i < n; ++i) {
    const auto ti = static_cast<size_t>(i);
    errors.run(ti, [&] {
      const Task& t = tasks[ti];
      try {
        // Into a vector of this thread's own: every id pushed updates the vector's end pointer,
        // and parts[ti] and parts[ti + 1] share a cache line that the other thread writes too.
        std::vector<uint32_t> ids;
        encode_task(im, docs[t.doc], t.from, t.to, ids);
        parts[ti] = std::move(ids);
      } catch (const tok::MatchError& e) {
        // Tasks are in document order, so the lowest failing task is the first failing offset.
        fail("tokenizer {}: document {}, byte offset {}: {}",
             im.source.empty() ? std::string("(in memory)") : im.source, t.doc, e.offset(), e.what());
      }
    });
  }
  errors.rethrow();
  // One allocation per document, sized from its parts, so joining them copies each id once.
  std::vector<size_t> doc_ids(docs.size(), 0), doc_parts(docs.size(), 0);
  for (size_t i = 0; i < tasks.size(); ++i) doc_ids[tasks[i].doc] += parts[i].size(), ++doc_parts[tasks[i].doc];
  std::vector<std::vector<uint32_t>> out(docs.size());
  for (size_t i = 0; i < tasks.size(); ++i) {
    auto& dst = out[tasks[i].doc];
    if (doc_parts[tasks[i].doc] == 1) {
      dst = std::move(parts[i]);
      continue;
    }
    if (dst.empty()) dst.reserve(doc_ids[tasks[i].doc]);
    dst.insert(dst.end(), parts[i].begin(), parts[i].end());
    std::vector<uint32_t>().swap(parts[i]);  // give the part back before the next is copied
  }
  return out;
}

std::vector<std::vector<uint32_t>> encode_docs(const Tokenizer::Impl& im,
                                               const std::vector<std::string_view>& docs, int threads) {
  std::vector<size_t> ends;
  for (auto d : docs) ends.push_back(d.size());
  return encode_docs(im, docs, ends, threads);
}

}  // namespace

std::vector<uint32_t> Tokenizer::encode(std::string_view text, int threads) const {
  return std::move(encode_docs(*impl_, {text}, resolve_threads(threads))[0]);
}

size_t Tokenizer::encode_prefix(std::string_view text, std::vector<uint32_t>& out, int threads) const {
  const size_t cut = impl_->pre->last_safe_cut(text);
  if (cut == std::string_view::npos) return 0;
  auto ids = encode_docs(*impl_, {text}, {cut}, resolve_threads(threads));
  out.insert(out.end(), ids[0].begin(), ids[0].end());
  return cut;
}

std::vector<std::vector<uint32_t>> Tokenizer::encode_batch(const std::vector<std::string_view>& docs,
                                                           int threads) const {
  return encode_docs(*impl_, docs, resolve_threads(threads));
}

std::vector<uint32_t> Tokenizer::encode_with_specials(std::string_view text, int threads) const {
  // Split at the special tokens' text, encode the parts between them together, interleave.
  std::vector<std::string_view> names;
  for (const auto& sp : impl_->specials) names.push_back(sp.first);
  const auto parts = tok::split_at_specials(text, names);
  std::vector<std::string_view> segments;
  for (const auto& p : parts) segments.push_back(p.before);
  auto enc = encode_docs(*impl_, segments, resolve_threads(threads));
  std::vector<uint32_t> out;
  for (size_t i = 0; i < enc.size(); ++i) {
    out.insert(out.end(), enc[i].begin(), enc[i].end());
    if (parts[i].special >= 0) out.push_back(impl_->specials[static_cast<size_t>(parts[i].special)].second);
  }
  return out;
}

std::string Tokenizer::decode(const uint32_t* ids, size_t n) const {
  const Impl& im = *impl_;
  size_t bytes = 0;
  for (size_t i = 0; i < n; ++i) {
    const uint32_t id = ids[i];
    OURO_CHECK(id < im.vocab_size && im.valid[id], "decode: id {} at index {} is not a token "
               "(vocabulary of {})", id, i, im.vocab_size);
    bytes += im.offset[id + 1] - im.offset[id];
  }
  std::string out;
  out.resize(bytes);
  char* p = out.data();
  for (size_t i = 0; i < n; ++i) {
    const uint32_t a = im.offset[ids[i]], b = im.offset[ids[i] + 1];
    std::memcpy(p, im.arena.data() + a, b - a);
    p += b - a;
  }
  return out;
}

}  // namespace ouro
