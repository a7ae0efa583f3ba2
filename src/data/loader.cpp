// The training data loader: fixed windows over shards read with pread, an optional per-epoch
// permutation, and a disjoint share per rank.
//
// Window w (over all shards in file order) is found arithmetically from per-shard window counts
// and their prefix sums, so the only per-window memory is the epoch's permutation (4 bytes a
// window, and none without shuffle).
#include <algorithm>
#include <climits>
#include <mutex>
#include <optional>

#include <nlohmann/json.hpp>

#include "common/hash.h"
#include "ouro/data.h"
#include "ouro/error.h"

namespace ouro {

namespace {

// splitmix64 (Steele, Lea & Flood; common/hash.h): fixed arithmetic, so a seed gives the same
// order on every platform and standard library, unlike std::shuffle with uniform_int_distribution.
struct SplitMix64 {
  uint64_t state;
  uint64_t next() { return splitmix64_mix(state += kGoldenGamma); }
  // Uniform in [0, bound) by rejection: drop the top 2^64 mod bound values that would bias r%bound.
  uint64_t below(uint64_t bound) {
    const uint64_t threshold = (0 - bound) % bound;
    for (;;) {
      uint64_t r = next();
      if (r >= threshold) return r % bound;
    }
  }
};

// Fisher-Yates keyed by (seed, epoch): each epoch's order is independent of the others and can
// be rebuilt from the pair alone, which is what makes resume exact.
void epoch_permutation(uint64_t seed, uint64_t epoch, std::vector<uint32_t>& perm) {
  for (size_t i = 0; i < perm.size(); ++i) perm[i] = static_cast<uint32_t>(i);
  SplitMix64 rng{splitmix64_mix(seed) ^ splitmix64_mix(epoch + 0x632BE59BD9B4E019ull)};
  for (size_t i = perm.size(); i > 1; --i) std::swap(perm[i - 1], perm[rng.below(i)]);
}

}  // namespace

struct DataLoader::Impl {
  std::string spec;
  int B = 0, T = 0, rank = 0, world = 1;
  uint64_t seed = 0;
  bool shuffle = false;
  std::vector<std::unique_ptr<Shard>> shards;
  std::vector<uint64_t> first_window;  // per shard, then the total: window w is in shard i
                                       // when first_window[i] <= w < first_window[i+1]
  uint64_t n_windows = 0;
  LoaderPosition pos;
  std::vector<uint32_t> perm;
  std::optional<uint64_t> perm_epoch;
  mutable std::vector<uint32_t> window;  // read_window's copy of the shard's tokens
  mutable size_t open_shard = SIZE_MAX;  // the one shard whose descriptor is open
  mutable std::once_flag max_once;
  mutable int max_tok = -1;

  uint64_t step() const { return static_cast<uint64_t>(world) * static_cast<uint64_t>(B); }

  void ensure_perm() {
    if (!shuffle || perm_epoch == pos.epoch) return;
    perm.resize(n_windows);
    epoch_permutation(seed, pos.epoch, perm);
    perm_epoch = pos.epoch;
  }

  // Copies window w's T+1 tokens as inputs (first T) and targets (last T).
  void read_window(uint64_t w, int* in, int* tg) const {
    auto it = std::upper_bound(first_window.begin(), first_window.end(), w);
    const size_t s = static_cast<size_t>(it - first_window.begin()) - 1;
    const Shard& sh = *shards[s];
    const size_t start = static_cast<size_t>(w - first_window[s]) * static_cast<size_t>(T);
    window.resize(static_cast<size_t>(T) + 1);
    if (open_shard != s && open_shard < shards.size()) shards[open_shard]->release();
    open_shard = s;
    sh.read(start, window.size(), window.data());
    for (int t = 0; t <= T; ++t) {
      uint32_t tok = window[t];
      if (tok > static_cast<uint32_t>(INT_MAX))
        fail("shard {}: token {} at index {} does not fit an int", sh.path().string(), tok,
             start + t);
      if (t < T) in[t] = static_cast<int>(tok);
      if (t > 0) tg[t - 1] = static_cast<int>(tok);
    }
  }
};

DataLoader::DataLoader(const std::string& spec, int B, int T, int rank, int world, uint64_t seed,
                       bool shuffle)
    : impl_(std::make_unique<Impl>()) {
  OURO_CHECK(B > 0, "data '{}': batch size B must be positive, got {}", spec, B);
  OURO_CHECK(T > 0, "data '{}': sequence length T must be positive, got {}", spec, T);
  OURO_CHECK(world > 0, "data '{}': world size must be positive, got {}", spec, world);
  OURO_CHECK(rank >= 0 && rank < world, "data '{}': rank {} is outside [0, {})", spec, rank,
             world);
  Impl& m = *impl_;
  m.spec = spec;
  m.B = B;
  m.T = T;
  m.rank = rank;
  m.world = world;
  m.seed = seed;
  m.shuffle = shuffle;

  // Open every shard up front: it validates them all before training starts. Each keeps no
  // descriptor open afterwards (thousands of shards would exhaust the process's limit); a read
  // reopens the one it needs and closes the one read before.
  uint64_t total_tokens = 0;
  m.first_window.push_back(0);
  for (const auto& p : expand_data_paths(spec)) {
    auto sh = std::make_unique<Shard>(p);
    sh->release();
    const uint64_t n = sh->size();
    total_tokens += n;
    // Starts 0, T, 2T, ... with start + T + 1 <= n.
    const uint64_t windows = n == 0 ? 0 : (n - 1) / static_cast<uint64_t>(T);
    m.n_windows += windows;
    m.first_window.push_back(m.n_windows);
    m.shards.push_back(std::move(sh));
  }
  OURO_CHECK(m.n_windows >= m.step(),
             "data '{}': {} tokens in {} shard(s) give {} window(s) of T+1 = {} tokens (a window "
             "never crosses a shard), but one batch needs {} (B = {} x {} rank(s))",
             spec, total_tokens, m.shards.size(), m.n_windows, T + 1, m.step(), B, world);
  OURO_CHECK(!shuffle || m.n_windows <= UINT32_MAX,
             "data '{}': {} windows are too many to shuffle (at most {}); use a larger T",
             spec, m.n_windows, UINT32_MAX);
}

DataLoader::~DataLoader() = default;

void DataLoader::next_batch(int* inputs, int* targets) {
  Impl& m = *impl_;
  // A batch never straddles epochs: the tail that cannot fill one is skipped this epoch (and,
  // with shuffle, lands elsewhere in the next).
  if (m.pos.cursor + m.step() > m.n_windows) {
    ++m.pos.epoch;
    m.pos.cursor = 0;
  }
  m.ensure_perm();
  const uint64_t base = m.pos.cursor + static_cast<uint64_t>(m.rank) * m.B;
  for (int b = 0; b < m.B; ++b) {
    const uint64_t g = base + b;
    const uint64_t w = m.shuffle ? m.perm[g] : g;
    const size_t off = static_cast<size_t>(b) * m.T;
    m.read_window(w, inputs + off, targets + off);
  }
  m.pos.cursor += m.step();
}

LoaderPosition DataLoader::position() const { return impl_->pos; }

void DataLoader::set_position(const LoaderPosition& p) {
  OURO_CHECK(p.cursor <= impl_->n_windows,
             "data '{}': loader position cursor {} is past the {} windows of an epoch; was the "
             "checkpoint made with other data or another T?",
             impl_->spec, p.cursor, impl_->n_windows);
  impl_->pos = p;
}

size_t DataLoader::num_windows() const { return impl_->n_windows; }

size_t DataLoader::batches_per_epoch() const { return impl_->n_windows / impl_->step(); }

void DataLoader::read_window(uint64_t w, int* inputs, int* targets) const {
  OURO_CHECK(w < impl_->n_windows, "data '{}': window {} is past the {} windows", impl_->spec, w,
             impl_->n_windows);
  impl_->read_window(w, inputs, targets);
}

void DataLoader::check_vocabulary(int vocab_size, const std::string& what) const {
  if (max_token() < vocab_size) return;
  // Rare (bad data): find the first offending token for the message.
  for (const auto& sh : impl_->shards) {
    const Shard& s = *sh;
    for (size_t i = 0; i < s.size(); ++i)
      if (s[i] >= static_cast<uint32_t>(vocab_size))
        fail("{}: shard {}: token {} at byte offset {} (token index {}) is outside the model's "
             "vocabulary of {} (model.vocab_size)",
             what, s.path().string(), s[i], 1024 + i * (s.version() == kShardVersionU16 ? 2 : 4), i,
             vocab_size);
  }
}

int DataLoader::max_token() const {
  const Impl& m = *impl_;
  std::call_once(m.max_once, [&m] {
    uint32_t best = 0;
    // One pass over possibly many GB, in blocks that bound the memory it takes.
    std::vector<uint32_t> block(size_t{1} << 20);
    for (const auto& sh : m.shards) {
      for (size_t first = 0; first < sh->size(); first += block.size()) {
        const size_t n = std::min(block.size(), sh->size() - first);
        sh->read(first, n, block.data());
        for (size_t i = 0; i < n; ++i) best = std::max(best, block[i]);
      }
      sh->release();
    }
    OURO_CHECK(best <= static_cast<uint32_t>(INT_MAX), "data '{}': token {} does not fit an int",
               m.spec, best);
    m.max_tok = static_cast<int>(best);
  });
  return m.max_tok;
}

}  // namespace ouro
