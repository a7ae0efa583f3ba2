#include "loop/reference.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <set>

#include "common/hash.h"
#include "common/log.h"
#include "io/atomic_file.h"
#include "ouro/error.h"

namespace fs = std::filesystem;

namespace ouro {
namespace {

constexpr char kMagic[8] = {'O', 'U', 'R', 'O', 'R', 'E', 'F', '1'};
constexpr size_t kHeader = 16;  // magic + uint64 count

std::string file_name(int64_t step) { return fmt::format("ref_step_{:06d}.f32", step); }

bool is_reference_file(const fs::path& p) {
  const std::string n = p.filename().string();
  return n.rfind("ref_step_", 0) == 0 && n.size() > 4 && n.substr(n.size() - 4) == ".f32";
}

}  // namespace

std::string content_hash(const std::vector<float>& w) {
  uint64_t h = splitmix64_pair(0x5EEDull, w.size());
  const size_t bytes = w.size() * sizeof(float);
  const auto* p = reinterpret_cast<const unsigned char*>(w.data());
  for (size_t i = 0; i < bytes; i += 8) {
    uint64_t word = 0;
    std::memcpy(&word, p + i, std::min<size_t>(8, bytes - i));
    h = splitmix64_pair(h, word);
  }
  return fmt::format("{:016x}", h);
}

void write_reference_file(const fs::path& path, const std::vector<float>& w) {
  const uint64_t count = w.size();
  io::write_file_atomic(path, {{kMagic, sizeof(kMagic)}, {&count, sizeof(count)},
                               {w.data(), w.size() * sizeof(float)}});
}

std::vector<float> read_reference_file(const fs::path& path, size_t expect_count, const std::string& expect_hash) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    fail("{}: the loop's reference weights are missing (the checkpoint's loop state names this file; "
         "it must stay in run.out_dir next to checkpoints/ for --resume)",
         path.string());
  char magic[8];
  uint64_t count = 0;
  in.read(magic, sizeof(magic));
  in.read(reinterpret_cast<char*>(&count), sizeof(count));
  OURO_CHECK(in && std::memcmp(magic, kMagic, sizeof(kMagic)) == 0,
             "{}: not a reference-weights file (bad header at offset 0)", path.string());
  OURO_CHECK(count == expect_count, "{}: holds {} weights, the model has {}", path.string(), count, expect_count);
  const auto size = fs::file_size(path);
  OURO_CHECK(size == kHeader + count * sizeof(float), "{}: {} bytes, expected {} (truncated or padded)",
             path.string(), size, kHeader + count * sizeof(float));
  std::vector<float> w(count);
  in.read(reinterpret_cast<char*>(w.data()), static_cast<std::streamsize>(count * sizeof(float)));
  OURO_CHECK(in.good(), "{}: read failed at offset {}", path.string(), kHeader);
  const std::string got = content_hash(w);
  OURO_CHECK(got == expect_hash, "{}: content hash {} does not match the {} recorded in the checkpoint (corrupt file)",
             path.string(), got, expect_hash);
  return w;
}

int ReferenceStore::source_round(int r) const { return kind_ == ReferenceKind::frozen ? 0 : std::max(0, r - lag_); }

void ReferenceStore::round_starts(int r, int64_t step, const std::vector<float>& weights) {
  if (!entries_.count(r)) {
    ReferenceEntry e;
    e.round = r;
    e.step = step;
    e.file = file_name(step);
    e.hash = content_hash(weights);
    e.weights = weights;
    // Two rounds can start at one step (a rollback in between) with the same weights: the
    // file is then rewritten with the same bytes.
    if (comm_.rank() == 0) write_reference_file(out_ / e.file, e.weights);
    entries_.emplace(r, std::move(e));
  }
  // Rounds >= r need sources >= source_round(r): nothing older is ever read again.
  const int keep_from = source_round(r);
  for (auto it = entries_.begin(); it != entries_.end();)
    it = it->first < keep_from ? entries_.erase(it) : std::next(it);
  if (kind_ == ReferenceKind::frozen)  // only round 0's start matters
    for (auto it = entries_.begin(); it != entries_.end();) it = it->first != 0 ? entries_.erase(it) : std::next(it);
}

const ReferenceEntry& ReferenceStore::for_round(int r) const {
  auto it = entries_.find(source_round(r));
  OURO_CHECK(it != entries_.end(),
             "loop round {}: the reference weights of round {} ({} reference) are not in the loop state; was the "
             "loop started without the ref_logprob scorer and resumed with it?",
             r, source_round(r), name_of(kind_));
  return it->second;
}

nlohmann::json ReferenceStore::to_json() const {
  auto list = nlohmann::json::array();
  for (const auto& [r, e] : entries_)
    list.push_back({{"round", e.round}, {"step", e.step}, {"file", e.file}, {"hash", e.hash}});
  return {{"kind", std::string(name_of(kind_))}, {"lag", lag_}, {"weights", list}};
}

void ReferenceStore::from_json(const nlohmann::json& j, size_t num_params) {
  entries_.clear();
  for (const auto& x : j.at("weights")) {
    ReferenceEntry e;
    e.round = x.at("round").get<int>();
    e.step = x.at("step").get<int64_t>();
    e.file = x.at("file").get<std::string>();
    e.hash = x.at("hash").get<std::string>();
    // Rank 0 reads (run.out_dir need not be shared); the others learn first whether it could.
    std::string error;
    if (comm_.rank() == 0) {
      try {
        e.weights = read_reference_file(out_ / e.file, num_params, e.hash);
      } catch (const Error& err) {
        error = err.what();
      }
    }
    if (comm_.world() > 1) {
      uint64_t len = error.size();
      comm_.broadcast(&len, sizeof(len), 0);
      error.resize(len);
      if (len) comm_.broadcast(error.data(), len, 0);
      if (error.empty()) {
        e.weights.resize(num_params);
        comm_.broadcast(e.weights.data(), num_params * sizeof(float), 0);
      }
    }
    if (!error.empty()) {
      if (comm_.rank() == 0) fail("{}", error);
      fail("rank {}: rank 0 could not load the loop's reference weights: {}", comm_.rank(), error);
    }
    entries_.emplace(e.round, std::move(e));
  }
}

void ReferenceStore::collect_garbage() const {
  if (comm_.rank() != 0) return;
  std::set<std::string> used;
  for (const auto& [r, e] : entries_) used.insert(e.file);
  std::error_code ec;
  const fs::path ckdir = out_ / "checkpoints";
  if (fs::is_directory(ckdir, ec)) {
    for (const auto& d : fs::directory_iterator(ckdir, ec)) {
      std::ifstream in(d.path() / "state.json");
      if (!in) continue;
      auto s = nlohmann::json::parse(in, nullptr, false);
      if (s.is_discarded() || !s.contains("loop") || !s["loop"].contains("ref")) continue;
      for (const auto& x : s["loop"]["ref"].value("weights", nlohmann::json::array()))
        used.insert(x.value("file", ""));
    }
  }
  for (const auto& f : fs::directory_iterator(out_, ec)) {
    if (!f.is_regular_file() || !is_reference_file(f.path()) || used.count(f.path().filename().string())) continue;
    fs::remove(f.path(), ec);
    if (ec) logger()->warn("{}: could not delete an unused reference-weights file: {}", f.path().string(), ec.message());
  }
}

double score_with_reference(GPT2& ref, std::vector<Candidate>& cands, int k, int max_new_tokens,
                            double fwd_flops_per_token) {
  const int seq_len = ref.config().seq_len;
  double flops = 0;
  for (size_t first = 0; first < cands.size();) {
    size_t last = first;
    while (last < cands.size() && cands[last].prompt == cands[first].prompt) ++last;
    const int rows = static_cast<int>(last - first);
    OURO_CHECK(rows <= k, "ref_logprob: prompt {} has {} samples, more than loop.k = {}", cands[first].prompt, rows, k);
    const int plen = static_cast<int>(cands[first].prompt_tokens.size());
    const int T = std::min(seq_len, plen + max_new_tokens);
    // Inputs: prompt + generated tokens (padded with 0); targets: the generated tokens only, at
    // the positions that predict them; every other target is ignored (-1).
    std::vector<int> x(static_cast<size_t>(rows) * T, 0), y(x.size(), -1);
    for (int r = 0; r < rows; ++r) {
      const Candidate& c = cands[first + r];
      OURO_CHECK(static_cast<int>(c.prompt_tokens.size()) == plen, "ref_logprob: prompt {} rows differ in length",
                 c.prompt);
      Tokens seq = c.prompt_tokens;
      seq.insert(seq.end(), c.gen.begin(), c.gen.end());
      OURO_CHECK(static_cast<int>(seq.size()) <= T + 1, "ref_logprob: prompt {} sample of {} tokens exceeds {}",
                 c.prompt, seq.size(), T + 1);
      for (int t = 0; t + 1 < static_cast<int>(seq.size()); ++t) {
        x[static_cast<size_t>(r) * T + t] = seq[t];
        if (t + 1 >= plen) y[static_cast<size_t>(r) * T + t] = seq[t + 1];
      }
    }
    ref.forward(x.data(), y.data(), rows, T);
    const auto losses = ref.last_losses(rows, T);
    for (int r = 0; r < rows; ++r) {
      Candidate& c = cands[first + r];
      double sum = 0;
      for (size_t i = 0; i < c.gen.size(); ++i) sum -= losses[static_cast<size_t>(r) * T + plen - 1 + i];
      c.ref_logprob = c.gen.empty() ? -INFINITY : sum / static_cast<double>(c.gen.size());
    }
    flops += static_cast<double>(rows) * T * fwd_flops_per_token;
    first = last;
  }
  return flops;
}

}  // namespace ouro
