// BPE training. Pre-tokens are counted once (threads over chunks cut at safe points), then
// merges run over the unique pre-tokens ("words") with incremental pair counts: each merge only
// revisits the words that hold the merged pair, and a max-heap with lazy invalidation yields the
// next most frequent pair.
#include <algorithm>
#include <chrono>
#include <fstream>
#include <queue>
#include <unordered_map>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/omp_errors.h"
#include "ouro/error.h"
#include "ouro/tokenizer.h"
#include "tokenizer/byte_table.h"
#include "tokenizer/pretokenizer.h"
#include "tokenizer/text_parts.h"
#include "tokenizer/tokenizer_impl.h"

namespace fs = std::filesystem;

namespace ouro {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

struct ViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return tok::hash_bytes(s.data(), s.size()); }
};
// Pieces as views into the text being counted; OwnedCounts keeps them across blocks of a stream.
using PieceCounts = std::unordered_map<std::string_view, uint64_t, ViewHash>;
using OwnedCounts = std::unordered_map<std::string, uint64_t, ViewHash, std::equal_to<>>;
using CountList = std::vector<std::pair<std::string_view, uint64_t>>;

// The text between special-token occurrences: specials are never learned from.
std::vector<std::string_view> strip_specials(const std::vector<std::string_view>& docs,
                                             const std::vector<std::string>& specials) {
  const std::vector<std::string_view> names(specials.begin(), specials.end());
  std::vector<std::string_view> out;
  for (std::string_view d : docs)
    for (const auto& part : tok::split_at_specials(d, names))
      if (!part.before.empty()) out.push_back(part.before);
  return out;
}

PieceCounts count_pieces(const std::vector<std::string_view>& segs, const tok::Pretokenizer& pre,
                         int threads) {
  struct Task {
    size_t seg, from, to;
  };
  constexpr size_t kChunk = 1 << 20;
  std::vector<Task> tasks;
  for (size_t s = 0; s < segs.size(); ++s)
    for (auto [from, to] : pre.chunks(segs[s], segs[s].size(), kChunk)) tasks.push_back({s, from, to});
  PieceCounts total;
  const auto n = static_cast<long>(tasks.size());
  OmpErrors errors;  // a failed match or bad_alloc must not leave the region (std::terminate)
#pragma omp parallel num_threads(threads) if (threads > 1 && n > 1)
  {
    PieceCounts local;
#pragma omp for schedule(dynamic, 1) nowait
    for (long i = 0; i < n; ++i) {
      const auto ti = static_cast<size_t>(i);
      errors.run(ti, [&] {
        const Task& t = tasks[ti];
        const std::string_view text = segs[t.seg];
        try {
          pre.split(text, t.from, t.to, [&](size_t off, size_t len) { ++local[text.substr(off, len)]; });
        } catch (const tok::MatchError& e) {
          fail("tokenizer train: text segment {}, byte offset {}: {}", t.seg, e.offset(), e.what());
        }
      });
    }
#pragma omp critical(ouro_bpe_count_merge)
    errors.run(tasks.size(), [&] {
      if (total.empty()) total = std::move(local);
      else
        for (const auto& [k, v] : local) total[k] += v;
    });
  }
  errors.rethrow();
  return total;
}

struct HeapEntry {
  int64_t count;
  uint32_t a, b;
};
// Max-heap order: higher count first; on equal counts the lower left id, then the lower right.
struct HeapLess {
  bool operator()(const HeapEntry& x, const HeapEntry& y) const {
    if (x.count != y.count) return x.count < y.count;
    if (x.a != y.a) return x.a > y.a;
    return x.b > y.b;
  }
};

uint64_t pair_key(uint32_t a, uint32_t b) { return uint64_t{a} << 32 | b; }

class Merger {
 public:
  Merger(CountList sorted, size_t target_ranks) : target_(target_ranks) {
    for (int b = 0; b < 256; ++b) {
      tokens_.emplace_back(1, static_cast<char>(b));
      index_.insert(tokens_.back(), static_cast<uint32_t>(b));
    }
    // Words in a fixed order (by bytes) so that nothing depends on the hash map's iteration.
    std::sort(sorted.begin(), sorted.end());
    for (const auto& [piece, c] : sorted) {
      if (piece.size() < 2) continue;  // no pairs inside
      Word w;
      w.count = static_cast<int64_t>(c);
      for (unsigned char ch : piece) w.syms.push_back(ch);
      words_.push_back(std::move(w));
    }
    last_seen_.assign(words_.size(), 0);
    for (uint32_t wi = 0; wi < words_.size(); ++wi) {
      const Word& w = words_[wi];
      for (size_t i = 0; i + 1 < w.syms.size(); ++i) {
        const uint64_t k = pair_key(w.syms[i], w.syms[i + 1]);
        pair_count_[k] += w.count;
        auto& wl = where_[k];
        if (wl.empty() || wl.back() != wi) wl.push_back(wi);
      }
    }
    for (const auto& [k, c] : pair_count_)
      heap_.push({c, static_cast<uint32_t>(k >> 32), static_cast<uint32_t>(k)});
  }

  // Runs merges until the target is reached or no pair is left; returns the merges done.
  size_t run() {
    size_t merges = 0;
    while (tokens_.size() < target_ && !heap_.empty()) {
      const HeapEntry e = heap_.top();
      heap_.pop();
      const uint64_t k = pair_key(e.a, e.b);
      auto it = pair_count_.find(k);
      const int64_t now = it == pair_count_.end() ? 0 : it->second;
      if (now != e.count) {  // stale: counts only fall outside pushes, so re-queue the true count
        if (now > 0) heap_.push({now, e.a, e.b});
        continue;
      }
      if (now <= 0) continue;
      merge(e.a, e.b);
      ++merges;
    }
    return merges;
  }

  std::vector<std::string> take_tokens() { return std::move(tokens_); }

 private:
  struct Word {
    std::vector<uint32_t> syms;
    int64_t count = 0;
  };

  void merge(uint32_t a, uint32_t b) {
    // The merged bytes may already be a token (reached through another split): reuse its id so
    // that every byte string has one rank, as the ranks file requires.
    std::string bytes = tokens_[a] + tokens_[b];
    uint32_t t = index_.find(bytes);
    if (t == tok::ByteTable::kMissing) {
      t = static_cast<uint32_t>(tokens_.size());
      index_.insert(bytes, t);
      tokens_.push_back(std::move(bytes));
    }
    ++epoch_;
    const std::vector<uint32_t> affected = std::move(where_[pair_key(a, b)]);
    where_.erase(pair_key(a, b));
    std::vector<uint64_t> grown;  // pairs holding t whose counts rose
    std::vector<uint32_t> next;
    for (uint32_t wi : affected) {
      if (last_seen_[wi] == epoch_) continue;
      last_seen_[wi] = epoch_;
      Word& w = words_[wi];
      next.clear();
      bool changed = false;
      for (size_t i = 0; i < w.syms.size(); ++i) {
        if (i + 1 < w.syms.size() && w.syms[i] == a && w.syms[i + 1] == b) {
          next.push_back(t);
          ++i;
          changed = true;
        } else {
          next.push_back(w.syms[i]);
        }
      }
      if (!changed) continue;  // a stale entry: the pair left this word in an earlier merge
      for (size_t i = 0; i + 1 < w.syms.size(); ++i) pair_count_[pair_key(w.syms[i], w.syms[i + 1])] -= w.count;
      for (size_t i = 0; i + 1 < next.size(); ++i) {
        const uint64_t k = pair_key(next[i], next[i + 1]);
        pair_count_[k] += w.count;
        if (next[i] == t || next[i + 1] == t) {
          auto& wl = where_[k];
          if (wl.empty() || wl.back() != wi) wl.push_back(wi);
          grown.push_back(k);
        }
      }
      w.syms.swap(next);
    }
    pair_count_.erase(pair_key(a, b));
    std::sort(grown.begin(), grown.end());
    grown.erase(std::unique(grown.begin(), grown.end()), grown.end());
    for (uint64_t k : grown) {
      const int64_t c = pair_count_[k];
      if (c > 0) heap_.push({c, static_cast<uint32_t>(k >> 32), static_cast<uint32_t>(k)});
    }
  }

  size_t target_;
  std::vector<std::string> tokens_;
  tok::ByteTable index_;
  std::vector<Word> words_;
  std::vector<uint32_t> last_seen_;
  uint32_t epoch_ = 0;
  std::unordered_map<uint64_t, int64_t> pair_count_;
  std::unordered_map<uint64_t, std::vector<uint32_t>> where_;
  std::priority_queue<HeapEntry, std::vector<HeapEntry>, HeapLess> heap_;
};

}  // namespace

namespace {

void check_options(const BpeTrainOptions& opt) {
  const size_t n_special = opt.specials.size();
  OURO_CHECK(opt.vocab_size >= 256 + n_special,
             "tokenizer train: vocabulary of {} is smaller than the 256 byte tokens + {} special "
             "token(s)", opt.vocab_size, n_special);
  for (size_t i = 0; i < n_special; ++i) {
    OURO_CHECK(!opt.specials[i].empty(), "tokenizer train: special token {} is empty", i);
    for (size_t j = 0; j < i; ++j)
      OURO_CHECK(opt.specials[i] != opt.specials[j], "tokenizer train: special token {} given twice",
                 opt.specials[i]);
  }
  OURO_CHECK(opt.read_bytes > 0, "tokenizer train: read_bytes must be positive");
}


// Merges, then the tokenizer: ranks 0..255 are the bytes, then the merges, then the specials.
Tokenizer finish(CountList counts, const BpeTrainOptions& opt, BpeTrainStats& st,
                 Clock::time_point t0, BpeTrainStats* stats) {
  OURO_CHECK(st.input_bytes > 0, "tokenizer train: the input holds no text (empty corpus)");
  OURO_CHECK(!counts.empty(), "tokenizer train: the input holds only special tokens (empty corpus)");
  st.unique_pieces = counts.size();
  st.count_s = seconds_since(t0);
  t0 = Clock::now();
  Merger m(std::move(counts), opt.vocab_size - opt.specials.size());
  st.merges = m.run();
  st.merge_s = seconds_since(t0);
  std::vector<std::string> tokens = m.take_tokens();
  std::vector<std::pair<std::string, uint32_t>> specials;
  for (const auto& s : opt.specials)
    specials.emplace_back(s, static_cast<uint32_t>(tokens.size() + specials.size()));
  if (stats) *stats = st;
  return Tokenizer(std::move(tokens), std::move(specials), opt.pattern);
}

}  // namespace

Tokenizer train_bpe_texts(const std::vector<std::string_view>& docs, const BpeTrainOptions& opt,
                          BpeTrainStats* stats) {
  check_options(opt);
  BpeTrainStats st;
  for (auto d : docs) st.input_bytes += d.size();
  const tok::Pretokenizer pre(opt.pattern);
  const auto t0 = Clock::now();
  const PieceCounts counts = count_pieces(strip_specials(docs, opt.specials), pre, resolve_threads(opt.threads));
  return finish(CountList(counts.begin(), counts.end()), opt, st, t0, stats);
}

Tokenizer train_bpe(const std::vector<fs::path>& inputs, const BpeTrainOptions& opt,
                    BpeTrainStats* stats) {
  OURO_CHECK(!inputs.empty(), "tokenizer train: no input files");
  check_options(opt);
  const tok::Pretokenizer pre(opt.pattern);
  const int threads = resolve_threads(opt.threads);
  // Files are read in blocks cut where the pattern always splits, so only one block of text is
  // in memory besides the counts. A special token containing a newline could straddle such a
  // cut: then each file is read whole.
  bool stream = pre.has_safe_cuts();
  for (const auto& s : opt.specials) stream = stream && s.find('\n') == std::string::npos;
  BpeTrainStats st;
  const auto t0 = Clock::now();
  OwnedCounts total;
  std::string buf;
  for (const auto& path : inputs) {
    std::ifstream f = tok::open_file(path, "tokenizer train");
    buf.clear();
    for (;;) {
      const size_t old = buf.size();
      buf.resize(old + opt.read_bytes);
      f.read(buf.data() + old, static_cast<std::streamsize>(opt.read_bytes));
      const auto got = static_cast<size_t>(f.gcount());
      buf.resize(old + got);
      OURO_CHECK(!f.bad(), "tokenizer train: error reading {}", path.string());
      st.input_bytes += got;
      size_t take = buf.size();
      if (got > 0) {  // not at the end: count up to the last cut, keep the rest
        take = stream ? pre.last_safe_cut(buf) : std::string::npos;
        if (take == std::string::npos) continue;
      }
      const std::string_view block = std::string_view(buf).substr(0, take);
      for (const auto& [piece, n] : count_pieces(strip_specials({block}, opt.specials), pre, threads)) {
        auto it = total.find(piece);
        if (it == total.end()) total.emplace(std::string(piece), n);
        else it->second += n;
      }
      buf.erase(0, take);
      if (got == 0) break;
    }
  }
  return finish(CountList(total.begin(), total.end()), opt, st, t0, stats);
}

}  // namespace ouro
