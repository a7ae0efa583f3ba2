#include "bench/bench_all.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "bench/comm_bench.h"
#include "bench/generate_bench.h"
#include "bench/kernel_bench.h"
#include "bench/peak_flops.h"
#include "bench/train_bench.h"
#include "common/log.h"
#include "ouro/comm.h"
#include "ouro/config.h"
#include "ouro/error.h"
#include "ouro/ops.h"

namespace fs = std::filesystem;

namespace ouro {

namespace {

// The model of the train and generate benchmarks at the smoke sizes: two layers of 64 channels
// over 64 positions, and one prompt of two samples per round, so that the emulator finishes in
// seconds. Built in (no config file), so it runs outside a source checkout too.
const std::vector<std::string> kSmallModel = {
    "model.n_layer=2",    "model.n_head=2",  "model.n_embd=64",      "model.seq_len=64",
    "train.batch_size=2", "train.grad_accum=1", "loop.prompts=1",    "loop.k=2",
    "loop.prompt_tokens=8", "loop.max_new_tokens=8"};

std::string default_device() {
  const auto devices = available_devices();
  for (const char* d : {"cuda", "simt"})
    if (std::find(devices.begin(), devices.end(), d) != devices.end()) return d;
  return "cpu";
}

// The train/generate config: --config when given; the small model; else the shipped GPT-2 124M
// (find_shipped_config; at the batch of docs/perf.md's CPU row on the cpu backend, 4 x 256, whose
// step takes seconds rather than minutes).
Config bench_config(const BenchAllOptions& opt, const std::string& device, bool small) {
  std::vector<std::string> sets;
  std::string path = opt.config;
  if (path.empty() && small) {
    sets = kSmallModel;
  } else if (path.empty()) {
    path = find_shipped_config("gpt2_124m.toml", shipped_config_dirs());
    logger()->info("bench all: model {}", path);
    if (device == "cpu") sets = {"train.batch_size=4", "train.seq_len=256", "train.grad_accum=1"};
  }
  sets.insert(sets.end(), opt.sets.begin(), opt.sets.end());
  sets.push_back("run.device=" + device);  // last: the benchmarked backend wins over the file's
  return load_config(path, sets);
}

// "AMD EPYC (2 threads)": the cpu backend's hardware, for the report.
std::string host_cpu_name() {
  std::ifstream f("/proc/cpuinfo");
  std::string line, model = "cpu";
  while (std::getline(f, line))
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      model = line.substr(line.find(':') + 1);
      model.erase(0, model.find_first_not_of(" \t"));
      break;
    }
  return fmt::format("{} ({} threads)", model, std::max(1u, std::thread::hardware_concurrency()));
}

// Runs tools/bench_report.py on the report (the roofline PNG); prints the command instead when
// the tools venv is not there.
void run_report_script(const fs::path& dir) {
  const fs::path root = OURO_SOURCE_DIR;
  const fs::path python = root / ".venv/bin/python", script = root / "tools/bench_report.py";
  const std::string args = fmt::format("'{}' --png '{}'", (dir / "bench.json").string(), (dir / "roofline.png").string());
  if (!fs::exists(python) || !fs::exists(script)) {
    logger()->info("roofline: no tools venv ({}); run: python3 tools/bench_report.py {}", python.string(), args);
    return;
  }
  const std::string cmd = fmt::format("'{}' '{}' {}", python.string(), script.string(), args);
  const int rc = std::system(cmd.c_str());
  OURO_CHECK(rc == 0, "bench all: `{}` failed (status {}); bench.json and bench.md are written", cmd, rc);
}

}  // namespace

std::vector<fs::path> shipped_config_dirs() {
  std::vector<fs::path> dirs = {fs::path("configs")};
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) dirs.push_back(exe.parent_path().parent_path() / "share/ouro/configs");
  dirs.push_back(fs::path(OURO_SOURCE_DIR) / "configs");
  return dirs;
}

std::string find_shipped_config(const std::string& name, const std::vector<fs::path>& dirs) {
  std::vector<std::string> tried;
  for (const auto& dir : dirs) {
    const fs::path path = dir / name;
    if (fs::is_regular_file(path)) return path.string();
    tried.push_back(path.string());
  }
  throw Error(fmt::format("bench all: {} is in none of {}: pass --config", name, fmt::join(tried, ", ")));
}

BenchReport bench_all(const BenchAllOptions& opt) {
  const std::string device = opt.device.empty() ? default_device() : opt.device;
  const auto devices = available_devices();
  OURO_CHECK(std::find(devices.begin(), devices.end(), device) != devices.end(),
             "bench all: --device {} is not in this binary (it has: {})", device, fmt::join(devices, ", "));
  BenchReport rep;
  rep.backend = device;
  rep.small = opt.small || device == "simt";  // the emulator runs only the smoke sizes
  rep.command = opt.command;
  rep.date_utc = utc_now_iso8601();
  rep.commit = source_commit(OURO_SOURCE_DIR);
  auto log = logger();

  // comm first: under mpirun every rank takes part, then the others are done.
  const DistEnv env = detect_dist_env();
  if (env.world > 1) {
    CommBenchOptions co;
    if (rep.small) co.max_bytes = size_t(1) << 20, co.iters = 5;
    // A device backend measures what its training uses: the device communicator (NCCL) on its
    // buffers, fp32 like nccl-tests' default so the figures compare.
    if (device != "cpu") co.device = device;
    const nlohmann::json figures = bench_comm(co);
    if (env.rank != 0) return rep;
    rep.groups.push_back({"comm", fmt::format("{}, {} ranks ({})", figures.value("buffers", "host buffers"), env.world,
                                              figures.value("transport", "?")),
                          comm_bench_records(figures)});
  } else {
    rep.skipped.push_back({"comm", "a single process (its collectives are the identity): run under mpirun"});
  }

  if (device != "cpu") {
    KernelBenchFn fn = registered_kernel_bench();
    OURO_CHECK(fn != nullptr, "bench all: the {} backend has no kernel benchmark linked", device);
    KernelBenchOptions ko;
    ko.small = rep.small;
    ko.reps = rep.small ? 1 : 20;
    log->info("bench all: kernels ({})", rep.small ? "small shapes" : "full shapes");
    KernelBenchResult k = fn(ko);
    rep.device = k.device;
    rep.copy_gbs = k.copy_gbs;
    rep.groups.push_back({"kernels", k.device, std::move(k.rows)});
    for (const auto& n : k.notes) rep.skipped.push_back({"kernels", n});
  } else {
    rep.skipped.push_back({"kernels", "the cpu backend has no hand-written kernels (--device cuda or simt)"});
  }

  const Config cfg = bench_config(opt, device, rep.small);
  TrainBenchOptions to;
  to.warmup = rep.small ? 1 : (device == "cuda" ? 3 : 1);
  to.steps = rep.small ? 1 : (device == "cuda" ? 10 : 3);
  to.gemm_reps = rep.small ? 1 : 3;
  to.data_parallel = false;  // only rank 0 is still here (the others left after the comm figures)
  const TrainBenchResult t = bench_train(cfg, to);
  log_train_bench(t);
  const std::string hardware = device == "cpu" ? host_cpu_name() : t.hardware;
  rep.groups.push_back({"train", hardware, t.records()});

  const GenerateBenchResult g = bench_generate(cfg, rep.small ? 1 : 3);
  log_generate_bench(g);
  rep.groups.push_back({"generate", hardware, g.records()});

  if (rep.device.empty()) rep.device = hardware;
  if (device != "cpu") rep.peak_flops = peak_bf16_flops(rep.device).value_or(0.0);

  const fs::path dir = opt.out;
  write_bench_report(rep, dir);
  log->info("bench all: wrote {} and {}", (dir / "bench.json").string(), (dir / "bench.md").string());
  if (opt.report) run_report_script(dir);
  return rep;
}

}  // namespace ouro
