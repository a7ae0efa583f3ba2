#include "bench/comm_bench.h"

#include <chrono>
#include <vector>

#include <fmt/format.h>

#include "ouro/comm.h"
#include "ouro/error.h"
#include "train/run_log.h"

namespace ouro {

nlohmann::json bench_comm(const CommBenchOptions& opt) {
  OURO_CHECK(opt.op == "all_reduce" || opt.op == "reduce_scatter" || opt.op == "all_gather",
             "bench comm: unknown --op '{}' (all_reduce, reduce_scatter, all_gather)", opt.op);
  OURO_CHECK(opt.min_bytes >= 4 && opt.min_bytes <= opt.max_bytes && opt.factor >= 2,
             "bench comm: need 4 <= --min-bytes <= --max-bytes and --factor >= 2");
  auto comm = make_comm(default_transport(), 600);
  const int n = comm->world();
  const double ring = opt.op == "all_reduce" ? 2.0 * (n - 1) / n : double(n - 1) / n;
  std::vector<float> buf(opt.max_bytes / sizeof(float), 1.0f);
  auto run = [&](size_t count) {
    if (opt.op == "all_reduce") comm->all_reduce(buf.data(), count, ReduceOp::Sum);
    else if (opt.op == "reduce_scatter") comm->reduce_scatter(buf.data(), count, ReduceOp::Sum);
    else comm->all_gather(buf.data(), count);
  };
  auto log = logger();
  if (comm->rank() == 0) {
    log->info("bench comm: {} over {} ranks ({}), {} iterations per size", opt.op, n, comm->name(), opt.iters);
    log->info("{:>12} {:>12} {:>12} {:>12} {:>12}", "bytes", "floats", "time (us)", "algbw GB/s", "busbw GB/s");
  }
  nlohmann::json rows = nlohmann::json::array();
  for (size_t bytes = opt.min_bytes; bytes <= opt.max_bytes; bytes *= static_cast<size_t>(opt.factor)) {
    const size_t count = bytes / sizeof(float);
    for (int i = 0; i < opt.warmup; ++i) run(count);
    comm->barrier();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < opt.iters; ++i) run(count);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / opt.iters;
    // The slowest rank defines the collective's time.
    comm->all_reduce(&s, 1, ReduceOp::Max);
    const double algbw = static_cast<double>(count * sizeof(float)) / s / 1e9;
    rows.push_back({{"bytes", count * sizeof(float)}, {"time_us", s * 1e6}, {"algbw_gbs", algbw},
                    {"busbw_gbs", algbw * ring}});
    if (comm->rank() == 0)
      log->info("{:>12} {:>12} {:>12.1f} {:>12.3f} {:>12.3f}", count * sizeof(float), count, s * 1e6,
                algbw, algbw * ring);
  }
  return {{"op", opt.op}, {"world", n}, {"transport", comm->name()}, {"rows", rows}};
}

std::vector<BenchRecord> comm_bench_records(const nlohmann::json& figures) {
  std::vector<BenchRecord> out;
  try {
    const auto op = figures.at("op").get<std::string>();
    const int world = figures.at("world").get<int>();
    const auto transport = figures.at("transport").get<std::string>();
    for (const auto& row : figures.at("rows")) {
      const auto bytes = row.at("bytes").get<double>();
      out.push_back({op + " bus bandwidth", fmt::format("{:.0f} bytes, {} ranks ({})", bytes, world, transport),
                     row.at("busbw_gbs").get<double>(), "GB/s", 0, "", 0, bytes, row.at("time_us").get<double>() * 1e-6});
    }
  } catch (const nlohmann::json::exception& e) {
    fail("bench comm figures: {}", e.what());
  }
  return out;
}

}  // namespace ouro
