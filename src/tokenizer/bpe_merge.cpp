#include "tokenizer/bpe_merge.h"

#include <limits>
#include <queue>

namespace ouro::tok {

namespace {

constexpr uint32_t kNone = ByteTable::kMissing;  // "no rank": larger than every real rank
constexpr size_t kLinearMax = 128;                // longer pieces go to the heap version

}  // namespace

void bpe_merge_linear(const uint8_t* piece, size_t n, const ByteTable& ranks,
                      std::vector<uint32_t>& out) {
  // parts[i] = start of part i; rank[i] = rank of parts i and i+1 joined. parts has a sentinel
  // at n so part i always ends at parts[i + 1].
  thread_local std::vector<uint32_t> parts, rank;
  parts.resize(n + 1);
  rank.resize(n + 1);
  for (size_t i = 0; i <= n; ++i) parts[i] = static_cast<uint32_t>(i);
  size_t m = n + 1;  // live entries of parts (parts[m-1] == n is the sentinel)
  auto pair_rank = [&](size_t i) -> uint32_t {
    // Rank of parts i and i+1 joined: bytes [parts[i], parts[i+2]).
    if (i + 2 >= m) return kNone;
    return ranks.find(piece + parts[i], parts[i + 2] - parts[i]);
  };
  for (size_t i = 0; i + 1 < m; ++i) rank[i] = pair_rank(i);
  rank[m - 1] = kNone;
  for (;;) {
    uint32_t best = kNone;
    size_t at = 0;
    for (size_t i = 0; i + 2 < m; ++i)
      if (rank[i] < best) best = rank[i], at = i;
    if (best == kNone) break;
    // Join parts at and at+1: drop entry at+1, then re-rank the two pairs that changed.
    for (size_t j = at + 1; j + 1 < m; ++j) parts[j] = parts[j + 1], rank[j] = rank[j + 1];
    --m;
    rank[at] = pair_rank(at);
    if (at > 0) rank[at - 1] = pair_rank(at - 1);
  }
  for (size_t i = 0; i + 1 < m; ++i) out.push_back(ranks.find(piece + parts[i], parts[i + 1] - parts[i]));
}

void bpe_merge_heap(const uint8_t* piece, size_t n, const ByteTable& ranks,
                    std::vector<uint32_t>& out) {
  // Parts form a linked list over byte offsets: part s spans [s, end[s]), next[s] = end[s].
  // Heap entries (rank, left start, right end) are checked lazily: an entry is stale when its
  // left part was absorbed or either part changed length since it was pushed.
  std::vector<uint32_t> end(n), prev(n);
  std::vector<char> alive(n, 1);
  for (size_t i = 0; i < n; ++i) end[i] = static_cast<uint32_t>(i + 1), prev[i] = static_cast<uint32_t>(i - 1);
  struct Entry {
    uint32_t rank, start, stop;  // merging [start, stop)
    bool operator>(const Entry& o) const { return rank != o.rank ? rank > o.rank : start > o.start; }
  };
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto push = [&](uint32_t s) {
    if (end[s] >= n) return;
    const uint32_t stop = end[end[s]];
    const uint32_t r = ranks.find(piece + s, stop - s);
    if (r != kNone) heap.push({r, s, stop});
  };
  for (uint32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const Entry e = heap.top();
    heap.pop();
    const uint32_t s = e.start;
    if (!alive[s] || end[s] >= n || end[end[s]] != e.stop) continue;
    const uint32_t right = end[s];
    alive[right] = 0;
    end[s] = e.stop;
    if (e.stop < n) prev[e.stop] = s;
    push(s);
    if (s > 0) push(prev[s]);
  }
  for (uint32_t s = 0; s < n; s = end[s]) out.push_back(ranks.find(piece + s, end[s] - s));
}

void bpe_merge(const uint8_t* piece, size_t n, const ByteTable& ranks, std::vector<uint32_t>& out) {
  if (n == 0) return;
  const uint32_t whole = ranks.find(piece, n);
  if (whole != kNone) {
    out.push_back(whole);
    return;
  }
  if (n <= kLinearMax) bpe_merge_linear(piece, n, ranks, out);
  else bpe_merge_heap(piece, n, ranks, out);
}

}  // namespace ouro::tok
