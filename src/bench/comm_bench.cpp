#include "bench/comm_bench.h"

#include <chrono>
#include <memory>
#include <vector>

#include <fmt/format.h>

#include "common/log.h"
#include "dist/run_comm.h"
#include "ouro/comm.h"
#include "ouro/error.h"
#include "ouro/ops.h"

namespace ouro {

nlohmann::json bench_comm(const CommBenchOptions& opt) {
  OURO_CHECK(opt.op == "all_reduce" || opt.op == "reduce_scatter" || opt.op == "all_gather",
             "bench comm: unknown --op '{}' (all_reduce, reduce_scatter, all_gather)", opt.op);
  OURO_CHECK(opt.min_bytes >= 4 && opt.min_bytes <= opt.max_bytes && opt.factor >= 2,
             "bench comm: need 4 <= --min-bytes <= --max-bytes and --factor >= 2");
  const bool on_device = !opt.device.empty() && opt.device != "cpu";
  OURO_CHECK(opt.dtype == "f32" || (on_device && opt.dtype == "bf16"),
             "bench comm: --dtype {} (f32, or bf16 with --device cuda|simt)", opt.dtype);
  const DType dtype = opt.dtype == "bf16" ? DType::BF16 : DType::F32;
  const size_t esz = dtype == DType::BF16 ? 2 : 4;
  // The device communicator (several ranks, --device cuda|simt) first: it binds this rank's GPU
  // (local rank), which the backend's stream and buffers must then live on (the trainer's order
  // too). The NCCL id travels by dist.init = auto: MPI under mpirun, else $OURO_INIT_ADDR or
  // $MASTER_ADDR (then no MPI at all: the host collectives below run over NCCL as well).
  DistConfig dist;  // dist.init = auto
  dist.timeout_s = 600;
  auto comm = make_run_comm(dist, on_device ? parse_device(opt.device) : Device::cpu);
  std::unique_ptr<Ops> ops;  // owns the device buffer; declared before it
  std::shared_ptr<void> dev_buf;
  std::vector<float> buf;
  if (on_device) {
    ops = make_ops(opt.device);
    Ops* o = ops.get();
    dev_buf = std::shared_ptr<void>(o->alloc(opt.max_bytes), [o](void* p) { o->dealloc(p); });
  } else {
    buf.assign(opt.max_bytes / sizeof(float), 1.0f);
  }
  const int n = comm->world();
  const double ring = opt.op == "all_reduce" ? 2.0 * (n - 1) / n : double(n - 1) / n;
  auto run = [&](size_t count) {
    if (on_device && n > 1) {  // one rank: the identity, like the host path (no device comm)
      if (opt.op == "all_reduce") comm->device_all_reduce(dev_buf.get(), count, dtype, ReduceOp::Sum, nullptr);
      else if (opt.op == "reduce_scatter") comm->device_reduce_scatter(dev_buf.get(), count, dtype, ReduceOp::Sum, nullptr);
      else comm->device_all_gather(dev_buf.get(), count, dtype, nullptr);
    } else if (!on_device) {
      if (opt.op == "all_reduce") comm->all_reduce(buf.data(), count, ReduceOp::Sum);
      else if (opt.op == "reduce_scatter") comm->reduce_scatter(buf.data(), count, ReduceOp::Sum);
      else comm->all_gather(buf.data(), count);
    }
  };
  const std::string where = on_device ? fmt::format("{} {} device buffers", opt.device, opt.dtype) : "host fp32 buffers";
  auto log = logger();
  if (comm->rank() == 0) {
    log->info("bench comm: {} over {} ranks ({}, {}), {} iterations per size", opt.op, n, comm->name(), where,
              opt.iters);
    log->info("{:>12} {:>12} {:>12} {:>12} {:>12}", "bytes", "elements", "time (us)", "algbw GB/s", "busbw GB/s");
  }
  nlohmann::json rows = nlohmann::json::array();
  for (size_t bytes = opt.min_bytes; bytes <= opt.max_bytes; bytes *= static_cast<size_t>(opt.factor)) {
    const size_t count = bytes / esz;
    for (int i = 0; i < opt.warmup; ++i) run(count);
    comm->barrier();
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < opt.iters; ++i) run(count);
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / opt.iters;
    // The slowest rank defines the collective's time.
    comm->all_reduce(&s, 1, ReduceOp::Max);
    const double algbw = static_cast<double>(count * esz) / s / 1e9;
    rows.push_back({{"bytes", count * esz}, {"time_us", s * 1e6}, {"algbw_gbs", algbw},
                    {"busbw_gbs", algbw * ring}});
    if (comm->rank() == 0)
      log->info("{:>12} {:>12} {:>12.1f} {:>12.3f} {:>12.3f}", count * esz, count, s * 1e6, algbw, algbw * ring);
  }
  return {{"op", opt.op}, {"world", n}, {"transport", comm->name()}, {"buffers", where}, {"rows", rows}};
}

std::vector<BenchRecord> comm_bench_records(const nlohmann::json& figures) {
  std::vector<BenchRecord> out;
  try {
    const auto op = figures.at("op").get<std::string>();
    const int world = figures.at("world").get<int>();
    const auto transport = figures.at("transport").get<std::string>() +
                           (figures.contains("buffers") ? ", " + figures["buffers"].get<std::string>() : "");
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
