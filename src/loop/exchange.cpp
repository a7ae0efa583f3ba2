#include "loop/exchange.h"

#include <algorithm>
#include <cstring>

#include "common/hash.h"
#include "ouro/error.h"

namespace ouro {
namespace {

template <typename T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <typename T>
void put_vec(std::string& out, const std::vector<T>& v) {
  put<uint64_t>(out, v.size());
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

class Reader {
 public:
  explicit Reader(const std::string& b) : b_(b) {}
  template <typename T>
  T get() {
    T v;
    need(sizeof(T));
    std::memcpy(&v, b_.data() + at_, sizeof(T));
    at_ += sizeof(T);
    return v;
  }
  template <typename T>
  std::vector<T> get_vec() {
    const auto n = get<uint64_t>();
    OURO_CHECK(n <= (b_.size() - at_) / sizeof(T), "candidate exchange: a list of {} at offset {} overruns {} bytes", n,
               at_, b_.size());
    std::vector<T> v(n);
    std::memcpy(v.data(), b_.data() + at_, n * sizeof(T));
    at_ += n * sizeof(T);
    return v;
  }
  bool done() const { return at_ == b_.size(); }

 private:
  void need(size_t n) const {
    OURO_CHECK(at_ + n <= b_.size(), "candidate exchange: {} bytes at offset {} overrun {} bytes", n, at_, b_.size());
  }
  const std::string& b_;
  size_t at_ = 0;
};

}  // namespace

uint64_t buffer_fingerprint(const std::string& s) {
  return fnv1a(s.data(), s.size(), kFnv1aOffset);  // small data, no need for speed
}

std::vector<int> prompts_of_rank(int n_prompts, int rank, int world) {
  std::vector<int> v;
  for (int i = rank; i < n_prompts; i += world) v.push_back(i);
  return v;
}

std::string pack_candidates(const std::vector<Candidate>& cands) {
  std::string out;
  put<uint64_t>(out, cands.size());
  for (const auto& c : cands) {
    put<int32_t>(out, c.prompt);
    put<int32_t>(out, c.sample);
    put<uint8_t>(out, c.stopped ? 1 : 0);
    put_vec(out, std::vector<int32_t>(c.gen.begin(), c.gen.end()));
    put_vec(out, c.logprobs);
    put<double>(out, c.ref_logprob);
  }
  return out;
}

std::vector<Candidate> unpack_candidates(const std::string& bytes) {
  Reader r(bytes);
  const auto n = r.get<uint64_t>();
  std::vector<Candidate> out;
  for (uint64_t i = 0; i < n; ++i) {
    Candidate c;
    c.prompt = r.get<int32_t>();
    c.sample = r.get<int32_t>();
    c.stopped = r.get<uint8_t>() != 0;
    auto gen = r.get_vec<int32_t>();
    c.gen.assign(gen.begin(), gen.end());
    c.logprobs = r.get_vec<float>();
    c.ref_logprob = r.get<double>();
    out.push_back(std::move(c));
  }
  OURO_CHECK(r.done(), "candidate exchange: trailing bytes after {} candidates", n);
  return out;
}

std::vector<Candidate> gather_candidates(Communicator& comm, const std::vector<Candidate>& mine) {
  std::vector<Candidate> all;
  if (comm.world() == 1) {
    all = mine;
  } else {
    const std::string packed = pack_candidates(mine);
    // all_gather: rank r contributes shard_of(world, world, r) = element r.
    std::vector<double> sizes(comm.world(), 0.0);
    sizes[comm.rank()] = static_cast<double>(packed.size());
    comm.all_gather(sizes.data(), sizes.size());
    for (int r = 0; r < comm.world(); ++r) {
      std::string bytes = r == comm.rank() ? packed : std::string(static_cast<size_t>(sizes[r]), '\0');
      comm.broadcast(bytes.data(), bytes.size(), r);
      auto part = unpack_candidates(bytes);
      all.insert(all.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
    }
  }
  std::stable_sort(all.begin(), all.end(), [](const Candidate& a, const Candidate& b) {
    return a.prompt != b.prompt ? a.prompt < b.prompt : a.sample < b.sample;
  });
  return all;
}

uint64_t check_identical_across_ranks(Communicator& comm, const std::string& bytes, const std::string& what) {
  const uint64_t mine = buffer_fingerprint(bytes);
  if (comm.world() == 1) return mine;
  uint64_t lead = mine;
  comm.broadcast(&lead, sizeof(lead), 0);
  double differs = mine != lead ? 1.0 : 0.0;
  comm.all_reduce(&differs, 1, ReduceOp::Max);
  OURO_CHECK(differs == 0.0, "rank {}: the ranks' {} differ (fingerprint {:016x}, rank 0 has {:016x})", comm.rank(),
             what, mine, lead);
  return mine;
}

}  // namespace ouro
