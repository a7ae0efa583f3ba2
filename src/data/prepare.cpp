// Corpus preparation, streamed: inputs -> documents -> tokens (batches encoded on all threads,
// emitted in input order) -> blocks dealt into train and val -> rolling shards + manifest.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <system_error>

#include <nlohmann/json.hpp>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/hash.h"
#include "common/omp_errors.h"
#include "common/progress_bar.h"
#include "data/byte_source.h"
#include "data/shard_writer.h"
#include "io/atomic_file.h"
#include "ouro/data.h"
#include "ouro/error.h"
#include "ouro/tokenizer.h"

namespace ouro {

namespace fs = std::filesystem;
using data::ShardInfo;
using data::ShardWriter;

namespace {

// A field of /proc/self/status in MB (VmHWM: peak resident memory, VmRSS: now); 0 where /proc
// is missing.
double status_mb(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const size_t n = std::strlen(field);
  while (std::getline(f, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':') return std::stod(line.substr(n + 1)) / 1024.0;
  return 0;
}
double peak_rss_mb() { return status_mb("VmHWM"); }

// FNV-1a 64 of a file's bytes (with its sidecar, for a ranks file): identifies the tokenizer
// in the manifest.
std::string file_hash(const std::string& path) {
  uint64_t h = kFnv1aShortOffset;
  for (const std::string& p : {path, path + ".json"}) {
    std::ifstream f(p, std::ios::binary);
    char buf[1 << 16];
    while (f.read(buf, sizeof buf) || f.gcount() > 0) {
      h = fnv1a(buf, static_cast<size_t>(f.gcount()), h);
      if (!f) break;
    }
  }
  char out[17];
  std::snprintf(out, sizeof out, "%016llx", static_cast<unsigned long long>(h));
  return out;
}

bool is_jsonl_name(const std::string& p) {
  for (const char* ext : {".jsonl", ".jsonl.gz", ".jsonl.zst"})
    if (p.size() >= std::strlen(ext) && p.compare(p.size() - std::strlen(ext), std::string::npos, ext) == 0)
      return true;
  return false;
}

// Everything one run writes: the two splits' shards, the dealing of blocks, the manifest.
class Output {
 public:
  Output(const PrepareOptions& o, size_t vocab, uint32_t eot)
      : o_(o), vocab_(vocab), eot_(eot), k_(std::max<uint64_t>(2, std::llround(1.0 / o.val_frac))),
        train_(o.out_prefix, "train", o.shard_tokens, vocab, eot),
        val_(o.out_prefix, "val", o.shard_tokens, vocab, eot) {
    manifest_path_ = fs::path(o.out_prefix.string() + ".manifest.json");
    start_rss_mb_ = status_mb("VmRSS");  // the binary and its libraries, before any input
  }

  // Block i of block_tokens goes to val when i % k == k - 1: blocks rather than documents keep
  // the ratio exact whatever the document sizes, and val spreads over the whole corpus.
  void emit(const uint32_t* t, size_t n) {
    while (n > 0) {
      const uint64_t block = pos_ / o_.block_tokens;
      const size_t take = static_cast<size_t>(std::min<uint64_t>(n, o_.block_tokens - pos_ % o_.block_tokens));
      ShardWriter& w = block % k_ == k_ - 1 ? val_ : train_;
      w.append(t, take, [&](const ShardInfo&) { write_manifest(false); });
      pos_ += take;
      t += take;
      n -= take;
    }
  }
  void emit_one(uint32_t t) { emit(&t, 1); }

  PrepareSummary finish(uint64_t documents, uint64_t bad, uint64_t bytes) {
    documents_ = documents, bad_ = bad, bytes_ = bytes;
    ShardInfo info;
    train_.finish(&info);
    val_.finish(&info);
    remove_stale();
    PrepareSummary s;
    for (const auto& i : train_.shards()) s.train.push_back(i.path), s.train_tokens += i.tokens;
    for (const auto& i : val_.shards()) s.val.push_back(i.path), s.val_tokens += i.tokens;
    s.documents = documents;
    s.bad_lines = bad;
    s.input_bytes = bytes;
    s.vocab_size = vocab_;
    s.peak_rss_mb = peak_rss_mb();
    s.manifest = manifest_path_;
    write_manifest(true, s.peak_rss_mb);
    return s;
  }

  // Debris of an interrupted run (hidden temporaries) is removed at the start.
  void remove_debris() const { for_each_own_file([](const fs::path& p, bool temp, size_t) { if (temp) fs::remove(p); }); }

 private:
  // Calls fn(path, is_temporary, shard index) for files named like this prefix's shards.
  template <class F>
  void for_each_own_file(F&& fn) const {
    const fs::path dir = o_.out_prefix.has_parent_path() ? o_.out_prefix.parent_path() : fs::path(".");
    const std::string base = o_.out_prefix.filename().string();
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) return;
    for (const auto& e : fs::directory_iterator(dir, ec)) {
      const std::string name = e.path().filename().string();
      for (const char* split : {"train", "val"}) {
        const std::string stem = base + "_" + split + "_";
        const bool temp = name.rfind("." + stem, 0) == 0 && name.size() > 4 &&
                          name.compare(name.size() - 4, 4, ".tmp") == 0;
        const bool shard = name.rfind(stem, 0) == 0 && name.size() == stem.size() + 10 &&
                           name.compare(name.size() - 4, 4, ".bin") == 0;
        if (!temp && !shard) continue;
        const std::string digits = name.substr((temp ? 1 : 0) + stem.size(), 6);
        if (digits.find_first_not_of("0123456789") != std::string::npos) continue;
        fn(e.path(), temp, static_cast<size_t>(std::stoul(digits)) + (split[0] == 'v' ? 1u << 30 : 0));
      }
    }
  }

  // Shards of an earlier run past this run's last one (a rerun on a smaller corpus).
  void remove_stale() const {
    const size_t nt = train_.shards().size(), nv = val_.shards().size();
    for_each_own_file([&](const fs::path& p, bool temp, size_t idx) {
      const bool is_val = idx >= (1u << 30);
      const size_t i = is_val ? idx - (1u << 30) : idx;
      if (temp || i >= (is_val ? nv : nt)) fs::remove(p);
    });
  }

  void write_manifest(bool complete, double peak = 0) const {
    auto list = [](const std::vector<ShardInfo>& v) {
      nlohmann::json a = nlohmann::json::array();
      for (const auto& i : v)
        a.push_back({{"file", i.path.filename().string()}, {"tokens", i.tokens}, {"documents", i.documents}});
      return a;
    };
    uint64_t tt = 0, vt = 0;
    for (const auto& i : train_.shards()) tt += i.tokens;
    for (const auto& i : val_.shards()) vt += i.tokens;
    nlohmann::json j = {{"format", "ouro-prepare-manifest"},
                        {"version", 1},
                        {"complete", complete},
                        {"command", o_.command},
                        {"inputs", o_.inputs},
                        {"tokenizer",
                         {{"file", o_.tokenizer_file.empty() ? nlohmann::json(nullptr) : nlohmann::json(o_.tokenizer_file)},
                          {"fnv1a64", o_.tokenizer_file.empty() ? nlohmann::json(nullptr) : nlohmann::json(file_hash(o_.tokenizer_file))},
                          {"vocab_size", vocab_},
                          {"eot", eot_}}},
                        {"shard_tokens", o_.shard_tokens},
                        {"block_tokens", o_.block_tokens},
                        {"val_frac", o_.val_frac},
                        {"train", list(train_.shards())},
                        {"val", list(val_.shards())},
                        {"totals", {{"train_tokens", tt}, {"val_tokens", vt}, {"tokens", tt + vt}}}};
    if (complete) {
      j["totals"]["documents"] = documents_;
      j["totals"]["bad_lines"] = bad_;
      j["totals"]["input_bytes"] = bytes_;
      j["peak_rss_mb"] = peak;
      j["start_rss_mb"] = start_rss_mb_;
    }
    io::write_file_atomic(manifest_path_, j.dump(2) + "\n");
  }

  const PrepareOptions& o_;
  size_t vocab_;
  uint32_t eot_;
  uint64_t k_;
  ShardWriter train_, val_;
  uint64_t pos_ = 0, documents_ = 0, bad_ = 0, bytes_ = 0;
  double start_rss_mb_ = 0;
  fs::path manifest_path_;
};

// Tokens of one text: the tokenizer's ids, or its bytes.
void encode_text(const Tokenizer* tok, std::string_view text, std::vector<uint32_t>& out) {
  if (tok) {
    out = tok->encode(text, 1);
    return;
  }
  out.assign(reinterpret_cast<const uint8_t*>(text.data()), reinterpret_cast<const uint8_t*>(text.data()) + text.size());
}

struct Counts {
  uint64_t documents = 0, bad = 0, bytes = 0;
};

// A text input: one document, read in blocks encoded up to the last point where the split
// pattern always splits (Tokenizer::encode_prefix); the rest waits for the next block.
void prepare_text(const PrepareOptions& o, data::ByteSource& src, Output& out, uint32_t eot, Counts& c,
                  ProgressBar& bar) {
  const size_t read_bytes = std::max<size_t>(o.batch_bytes, 1);
  std::string buf;
  std::vector<uint32_t> ids;
  uint64_t bytes = 0;
  out.emit_one(eot);
  for (;;) {
    const size_t old = buf.size();
    buf.resize(old + read_bytes);
    const size_t got = src.read(buf.data() + old, read_bytes);
    buf.resize(old + got);
    bytes += got;
    c.bytes += got;
    bar.update(c.bytes);
    ids.clear();
    if (got == 0) {
      if (o.tokenizer) ids = o.tokenizer->encode(buf, o.threads);
      else encode_text(nullptr, buf, ids);
      out.emit(ids.data(), ids.size());
      break;
    }
    if (!o.tokenizer) {
      encode_text(nullptr, buf, ids);
      out.emit(ids.data(), ids.size());
      buf.clear();
      continue;
    }
    // A buffer with no cut (a pattern without known cuts, or no newline + letter) just grows.
    const size_t cut = o.tokenizer->encode_prefix(buf, ids, o.threads);
    out.emit(ids.data(), ids.size());
    buf.erase(0, cut);
  }
  OURO_CHECK(bytes > 0, "prepare: input {} is empty", src.name());
  ++c.documents;
}

// A JSONL input: a batch of lines is parsed and encoded on all threads (one line per task, in
// any order), then emitted in line order. The first bad line (the lowest number, whatever the
// thread count) is the error.
void prepare_jsonl(const PrepareOptions& o, data::ByteSource& src, Output& out, uint32_t eot, Counts& c,
                   ProgressBar& bar, int threads) {
  data::LineReader lines(src);
  std::vector<std::string> batch;
  std::vector<size_t> numbers;
  std::vector<std::vector<uint32_t>> ids;
  std::vector<std::string> bad;  // per line: why it is bad ("" if good)
  uint64_t warned = 0;
  auto run_batch = [&] {
    const auto n = static_cast<long>(batch.size());
    ids.assign(batch.size(), {});
    bad.assign(batch.size(), {});
    OmpErrors errors;
#pragma omp parallel for schedule(dynamic, 16) num_threads(threads) if (threads > 1 && n > 1)
    for (long i = 0; i < n; ++i) {
      const auto li = static_cast<size_t>(i);
      errors.run(li, [&] {
        nlohmann::json j;
        try {
          j = nlohmann::json::parse(batch[li]);
        } catch (const nlohmann::json::exception& e) {
          bad[li] = std::string("invalid JSON: ") + e.what();
          return;
        }
        if (!j.is_object()) {
          bad[li] = "expected a JSON object, got " + std::string(j.type_name());
          return;
        }
        const auto it = j.find(o.text_key);
        if (it == j.end() || !it->is_string()) {
          bad[li] = it == j.end() ? "no key '" + o.text_key + "'"
                                  : "key '" + o.text_key + "' is " + std::string(it->type_name()) + ", not a string";
          return;
        }
        encode_text(o.tokenizer, it->get_ref<const std::string&>(), ids[li]);
      });
    }
    errors.rethrow();
    for (size_t i = 0; i < batch.size(); ++i) {
      if (!bad[i].empty()) {
        if (!o.skip_bad) fail("prepare: {}:{}: {} (--skip-bad skips such lines)", src.name(), numbers[i], bad[i]);
        // stderr, not the run logger: data sits below train and must not include it.
        if (warned++ < 10) std::fprintf(stderr, "%s\n", fmt::format("warning: prepare: skipping {}:{}: {}", src.name(), numbers[i], bad[i]).c_str());
        ++c.bad;
        continue;
      }
      out.emit_one(eot);
      out.emit(ids[i].data(), ids[i].size());
      ++c.documents;
    }
    batch.clear();
    numbers.clear();
    bar.update(c.bytes);
  };
  std::string line;
  size_t held = 0;
  while (lines.next(line)) {
    c.bytes += line.size() + 1;
    if (line.find_first_not_of(" \t") == std::string::npos) continue;  // blank lines
    held += line.size();
    numbers.push_back(lines.line_number());
    batch.push_back(std::move(line));
    line.clear();
    if (held >= o.batch_bytes) run_batch(), held = 0;
  }
  if (!batch.empty()) run_batch();
}

}  // namespace

PrepareSummary prepare_corpus(const PrepareOptions& o) {
  OURO_CHECK(!o.inputs.empty(), "prepare {}: no inputs", o.out_prefix.string());
  OURO_CHECK(o.val_frac > 0.0 && o.val_frac <= 0.5, "prepare {}: val_frac must be in (0, 0.5], got {}",
             o.out_prefix.string(), o.val_frac);
  OURO_CHECK(o.block_tokens > 0, "prepare {}: block_tokens must be positive", o.out_prefix.string());
  OURO_CHECK(o.batch_bytes > 0, "prepare {}: batch_bytes must be positive", o.out_prefix.string());
  size_t stdin_uses = 0;
  uint64_t total = 0;
  for (const auto& in : o.inputs) {
    if (in == "-") {
      ++stdin_uses;
      continue;
    }
    std::error_code ec;
    OURO_CHECK(fs::is_regular_file(in, ec), "prepare: input {} is not a readable regular file", in);
    total += fs::file_size(in, ec);
  }
  OURO_CHECK(stdin_uses <= 1, "prepare: standard input (-) given {} times", stdin_uses);
  const size_t vocab = o.tokenizer ? o.tokenizer->vocab_size() : kByteVocab;
  const uint32_t eot = o.tokenizer ? o.tokenizer->eot_id() : static_cast<uint32_t>(kByteEot);
#ifdef _OPENMP
  const int threads = o.threads > 0 ? o.threads : omp_get_max_threads();
#else
  const int threads = 1;
#endif
  Output out(o, vocab, eot);
  out.remove_debris();
  // The bar counts input bytes: with stdin or compressed inputs the total is unknown.
  bool sized = true;
  for (const auto& in : o.inputs)
    sized = sized && in != "-" && !(in.size() > 3 && in.compare(in.size() - 3, 3, ".gz") == 0) &&
            !(in.size() > 4 && in.compare(in.size() - 4, 4, ".zst") == 0);
  ProgressBar bar("prepare", total, o.progress && sized && total > 0);
  Counts c;
  for (const auto& in : o.inputs) {
    auto src = data::open_source(in);
    if (o.jsonl || is_jsonl_name(in)) prepare_jsonl(o, *src, out, eot, c, bar, threads);
    else prepare_text(o, *src, out, eot, c, bar);
  }
  bar.finish();
  OURO_CHECK(c.documents > 0, "prepare: no documents in the inputs ({} bad lines skipped)", c.bad);
  return out.finish(c.documents, c.bad, c.bytes);
}

}  // namespace ouro
