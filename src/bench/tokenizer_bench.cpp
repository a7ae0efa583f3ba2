#include "bench/tokenizer_bench.h"

#include "bench/core_scaling.h"

#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "common/log.h"
#include "ouro/error.h"
#include "ouro/tokenizer.h"

namespace fs = std::filesystem;

namespace ouro {

namespace {

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  OURO_CHECK(f.good(), "bench tokenizer: cannot open {}", p.string());
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

template <class F>
double best_seconds(int repeats, F&& fn) {
  double best = 1e300;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  return best;
}

// Runs tools/tiktoken_bench.py with the venv's Python on the tokenizer (saved as ranks + sidecar
// into dir) and the input; it writes its figures as JSON and its ids as uint32 to dir.
nlohmann::json run_tiktoken(const Tokenizer& tk, const std::string& input, int repeats, int threads,
                            const fs::path& dir) {
  const fs::path root = OURO_SOURCE_DIR;
  const fs::path python = root / ".venv/bin/python", script = root / "tools/tiktoken_bench.py";
  if (!fs::exists(python) || !fs::exists(script))
    return {{"skipped", "no tools venv (" + python.string() + "): run tools/setup.sh"}};
  tk.save(dir / "tok.tiktoken");
  const fs::path out = dir / "tiktoken.json";
  const std::string cmd = fmt::format("'{}' '{}' --ranks '{}' --input '{}' --repeats {} --threads {} --ids '{}' > '{}'",
                                      python.string(), script.string(), (dir / "tok.tiktoken").string(),
                                      input, repeats, threads, (dir / "tiktoken_ids.u32").string(), out.string());
  const int rc = std::system(cmd.c_str());
  if (rc != 0) return {{"skipped", fmt::format("tools/tiktoken_bench.py exited with status {}", rc)}};
  try {
    return nlohmann::json::parse(read_file(out));
  } catch (const nlohmann::json::exception& e) {
    return {{"skipped", std::string("unreadable tiktoken figures: ") + e.what()}};
  }
}

}  // namespace

nlohmann::json bench_tokenizer(const TokenizerBenchOptions& opt) {
  const Tokenizer tk = Tokenizer::load(opt.tokenizer);
  const std::string text = read_file(opt.input);
  OURO_CHECK(!text.empty(), "bench tokenizer: {} is empty", opt.input);
#ifdef _OPENMP
  const int threads = opt.threads > 0 ? opt.threads : omp_get_max_threads();
#else
  const int threads = 1;
#endif
  const double mb = static_cast<double>(text.size()) / 1e6;
  // Measured first, on the same cores, so a scaling below the goal can be told apart from cores
  // that other processes keep busy.
  const CoreScaling cores = measure_core_scaling(threads);
  std::vector<uint32_t> ids = tk.encode(text, 1);  // warm-up; also the reference ids
  std::vector<uint32_t> ids_mt = tk.encode(text, threads);  // warm-up: starts the thread pool
  // 1 and N threads alternate, best of each: a clock or a neighbour that drifts during the run
  // then shifts both figures alike instead of favouring whichever ran last.
  double single_s = 1e300, multi_s = 1e300;
  for (int i = 0; i < std::max(1, opt.repeats); ++i) {
    single_s = std::min(single_s, best_seconds(1, [&] { ids = tk.encode(text, 1); }));
    multi_s = std::min(multi_s, best_seconds(1, [&] { ids_mt = tk.encode(text, threads); }));
  }
  OURO_CHECK(ids_mt == ids, "bench tokenizer: {} threads gave other ids than one", threads);
  const std::string decoded = tk.decode(ids);
  OURO_CHECK(decoded == text, "bench tokenizer: decode(encode(text)) differs from the text");
  const double decode_s = best_seconds(opt.repeats, [&] { (void)tk.decode(ids); });

  nlohmann::json r = {{"input", opt.input},
                      {"bytes", text.size()},
                      {"tokens", ids.size()},
                      {"bytes_per_token", static_cast<double>(text.size()) / ids.size()},
                      {"vocab_size", tk.vocab_size()},
                      {"threads", threads},
                      {"ouro_mb_s_1thread", mb / single_s},
                      {"ouro_mb_s_threads", mb / multi_s},
                      {"ouro_scaling", single_s / multi_s},
                      {"ouro_decode_mb_s", mb / decode_s},
                      {"core_scaling", cores.scaling()},
                      {"ouro_parallel_efficiency", (single_s / multi_s) / cores.scaling()}};
  auto log = logger();
  log->info("bench tokenizer: {} ({:.2f} MB) -> {} tokens ({:.2f} bytes/token), vocabulary {}",
            opt.input, mb, ids.size(), r["bytes_per_token"].get<double>(), tk.vocab_size());
  log->info("  cores: an integer loop runs {:.2f}x faster on {} threads than on 1 (idle cores: ~{}x)",
            cores.scaling(), threads, threads);
  log->info("  ouro encode, 1 thread     {:8.1f} MB/s", mb / single_s);
  log->info("  ouro encode, {} threads    {:8.1f} MB/s  (scaling {:.2f}x, {:.0f}% of the cores' {:.2f}x)", threads,
            mb / multi_s, single_s / multi_s, 100 * r["ouro_parallel_efficiency"].get<double>(), cores.scaling());
  log->info("  ouro decode, 1 thread     {:8.1f} MB/s", mb / decode_s);
  if (!opt.tiktoken) return r;

  const fs::path dir = fs::temp_directory_path() / fmt::format("ouro_bench_tok_{}", ::getpid());
  fs::create_directories(dir);
  nlohmann::json t = run_tiktoken(tk, opt.input, opt.repeats, threads, dir);
  if (t.contains("skipped")) {
    log->info("  tiktoken: skipped ({})", t["skipped"].get<std::string>());
  } else {
    const std::string raw = read_file(dir / "tiktoken_ids.u32");
    std::vector<uint32_t> tids(raw.size() / 4);
    std::memcpy(tids.data(), raw.data(), tids.size() * 4);
    const double tk_mb_s = t.value("mb_s_1thread", 0.0);
    t["same_ids"] = tids == ids;
    r["tiktoken_mb_s_1thread"] = tk_mb_s;
    r["ratio_1thread"] = (mb / single_s) / tk_mb_s;
    r["ratio_threads_vs_tiktoken_1thread"] = (mb / multi_s) / tk_mb_s;
    r["tiktoken_same_ids"] = tids == ids;
    log->info("  tiktoken {} encode, 1 thread {:8.1f} MB/s (same ids as ouro: {})",
              t.value("version", "?"), tk_mb_s, tids == ids ? "yes" : "NO");
    const double tk_batch = t.value("mb_s_batch_threads", 0.0);
    r["tiktoken_mb_s_batch_threads"] = tk_batch;
    r["tiktoken_scaling"] = tk_mb_s > 0 ? tk_batch / tk_mb_s : 0.0;
    r["ratio_threads"] = tk_batch > 0 ? (mb / multi_s) / tk_batch : 0.0;
    log->info("  tiktoken encode_ordinary_batch, {} threads {:8.1f} MB/s  (scaling {:.2f}x, same ids: {})", threads,
              tk_batch, r["tiktoken_scaling"].get<double>(), t.value("batch_same_ids", false) ? "yes" : "NO");
    log->info("  ratio ouro / tiktoken, 1 thread: {:.2f}   ({} threads: {:.2f})  (goal >= 1)",
              r["ratio_1thread"].get<double>(), threads, r["ratio_threads"].get<double>());
  }
  r["tiktoken"] = t;
  std::error_code ec;
  fs::remove_all(dir, ec);
  return r;
}

}  // namespace ouro
