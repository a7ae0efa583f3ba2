#include <cstdio>

#include <nlohmann/json.hpp>

#include "bench/bench_all.h"
#include "bench/bench_result.h"
#include "bench/comm_bench.h"
#include "bench/generate_bench.h"
#include "bench/kernel_bench.h"
#include "bench/train_bench.h"
#include "cli/commands.h"
#include "ouro/comm.h"
#include "ouro/config.h"
#include "ouro/error.h"

namespace ouro::cli {

namespace {

void print_memory_plan(const Config& cfg, double fit_gb, bool json) {
  const TrainMemoryPlan m = plan_train_memory(cfg, fit_gb);
  if (json)
    std::puts(m.json().dump(2).c_str());
  else
    log_train_memory_plan(m);
}

void print_kernel_table(const KernelBenchResult& r) {
  std::printf("device: %s\n%-24s %-30s %12s %-8s %12s %-18s %7s %10s %12s\n", r.device.c_str(), "kernel", "shape",
              "figure", "unit", "ceiling", "ceiling is", "ratio", "ms", "MB moved");
  for (const auto& row : r.rows) {
    std::printf("%-24s %-30s %12.4g %-8s ", row.name.c_str(), row.shape.c_str(), row.value, row.unit.c_str());
    if (row.has_ceiling())
      std::printf("%12.4g %-18s %6.1f%%", row.ceiling, row.ceiling_name.c_str(), 100 * row.ratio());
    else
      std::printf("%12s %-18s %7s", "-", row.ceiling_name.c_str(), "-");
    std::printf(" %10.4g", row.seconds * 1e3);
    if (row.bytes > 0)
      std::printf(" %12.4g\n", row.bytes / 1e6);  // the least a call must read and write
    else
      std::printf(" %12s\n", "-");
  }
  for (const auto& n : r.notes) std::printf("note: %s\n", n.c_str());
}

}  // namespace

void add_bench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "Benchmarks that print figures and ratios");
  cmd->require_subcommand(1);
  auto* tr = cmd->add_subcommand("train", "Training-step throughput against the sgemm ceiling (under mpirun: "
                                          "weak-scaling efficiency too)");
  struct Opts {
    std::string config, device;
    std::vector<std::string> sets;
    TrainBenchOptions b;
    bool json = false;
    bool memory = false;
    double fit_gb = 80;
  };
  auto o = std::make_shared<Opts>();
  tr->add_option("--config,-c", o->config, "TOML config file")->required();
  tr->add_flag("--memory", o->memory,
               "Planning only: print the memory a training run of the config's batch x sequence holds on "
               "the backend (activations, parameters, gradients, optimizer state, workspace) and the largest "
               "micro-batch that fits --fit-gb, without running a step");
  tr->add_option("--fit-gb", o->fit_gb, "Device memory for --memory's largest micro-batch, in GB (1e9 bytes)")
      ->check(CLI::PositiveNumber);
  tr->add_option("--set", o->sets, "Override a key: section.key=value (repeatable)");
  tr->add_option("--device", o->device, "Backend: cpu, cuda or simt");
  tr->add_option("--steps", o->b.steps, "Timed steps")->check(CLI::PositiveNumber);
  tr->add_option("--warmup", o->b.warmup, "Untimed steps first")->check(CLI::NonNegativeNumber);
  tr->add_flag("--json", o->json, "Print the figures as JSON on stdout");
  tr->callback([o] {
    auto sets = o->sets;
    if (!o->device.empty()) sets.push_back("run.device=" + o->device);
    if (o->memory) return print_memory_plan(load_config(o->config, sets), o->fit_gb, o->json);
    const TrainBenchResult r = bench_train(load_config(o->config, sets), o->b);
    if (detect_dist_env().rank != 0) return;  // under mpirun, rank 0 reports for the job
    log_train_bench(r);
    if (o->json) std::puts(r.json().dump(2).c_str());
  });

  auto* kb = cmd->add_subcommand("kernels", "Kernel TFLOP/s and GB/s against cuBLASLt and the copy bandwidth");
  struct KernOpts {
    KernelBenchOptions b;
    bool json = false;
  };
  auto ko = std::make_shared<KernOpts>();
  kb->add_flag("--small", ko->b.small, "Small shapes (a smoke run; always on the simt backend)");
  kb->add_option("--reps", ko->b.reps, "Timed calls per figure")->check(CLI::PositiveNumber);
  kb->add_flag("--json", ko->json, "Print the figures as JSON on stdout");
  kb->callback([ko] {
    auto fn = registered_kernel_bench();
    OURO_CHECK(fn != nullptr, "this binary has no device backend (cuda or simt): no kernels to measure");
    const KernelBenchResult r = fn(ko->b);
    if (ko->json) {
      nlohmann::json rows = nlohmann::json::array();
      for (const auto& row : r.rows) {
        nlohmann::json j = bench_record_json(row);
        // The keys this command printed before the shared record type, kept for scripts.
        j["kernel"] = row.name;
        j["figure"] = row.value;
        j["ms"] = row.seconds * 1e3;
        rows.push_back(std::move(j));
      }
      std::puts(nlohmann::json({{"device", r.device}, {"copy_gbs", r.copy_gbs}, {"rows", rows}, {"notes", r.notes}})
                    .dump(2)
                    .c_str());
      return;
    }
    print_kernel_table(r);
  });

  auto* ge = cmd->add_subcommand("generate", "Generation tokens/s (KV cache) and its share of a loop round");
  struct GenOpts {
    std::string config, device;
    std::vector<std::string> sets;
    int steps = 3;
    bool json = false;
  };
  auto go = std::make_shared<GenOpts>();
  ge->add_option("--config,-c", go->config, "TOML config file (its [loop] settings)")->required();
  ge->add_option("--set", go->sets, "Override a key: section.key=value (repeatable)");
  ge->add_option("--device", go->device, "Backend: cpu, cuda or simt");
  ge->add_option("--steps", go->steps, "Training steps timed for the comparison")->check(CLI::PositiveNumber);
  ge->add_flag("--json", go->json, "Print the figures as JSON on stdout");
  ge->callback([go] {
    auto sets = go->sets;
    if (!go->device.empty()) sets.push_back("run.device=" + go->device);
    const GenerateBenchResult r = bench_generate(load_config(go->config, sets), go->steps);
    log_generate_bench(r);
    if (go->json) std::puts(r.json().dump(2).c_str());
  });

  auto* cm = cmd->add_subcommand("comm", "Collective bandwidth over message sizes (run under mpirun)");
  auto co = std::make_shared<CommBenchOptions>();
  auto cjson = std::make_shared<bool>(false);
  cm->add_option("--op", co->op, "all_reduce, reduce_scatter or all_gather");
  cm->add_option("--min-bytes", co->min_bytes, "Smallest message");
  cm->add_option("--max-bytes", co->max_bytes, "Largest message");
  cm->add_option("--factor", co->factor, "Size multiplier between rows");
  cm->add_option("--iters", co->iters, "Timed iterations per size")->check(CLI::PositiveNumber);
  cm->add_option("--device", co->device, "cuda or simt: the backend's device buffers through its device "
                 "communicator (NCCL; NCCL-over-MPI on simt); default: host buffers over MPI");
  cm->add_option("--dtype", co->dtype, "f32 or bf16 (device buffers)");
  cm->add_flag("--json", *cjson, "Print the figures as JSON on stdout (rank 0)");
  cm->callback([co, cjson] {
    auto r = bench_comm(*co);
    if (*cjson && detect_dist_env().rank == 0) std::puts(r.dump(2).c_str());
  });

  auto* all = cmd->add_subcommand("all", "Every benchmark that applies to the backend, into DIR/bench.json, "
                                        "bench.md and the roofline plot");
  auto ao = std::make_shared<BenchAllOptions>();
  all->add_flag("--small", ao->small, "Smoke sizes (always on simt)");
  all->add_option("--device", ao->device, "Backend: cpu, cuda or simt (default: the binary's device backend)");
  all->add_option("--out", ao->out, "Directory for bench.json, bench.md and roofline.png")->capture_default_str();
  all->add_option("--config,-c", ao->config,
                  "Model of the train and generate benchmarks (default: with --small a built-in model; "
                  "else gpt2_124m.toml, looked for in ./configs (the working directory), then "
                  "<binary>/../share/ouro/configs (the installed share directory), then the source tree "
                  "the binary was built from; the log names the one used)");
  all->add_option("--set", ao->sets, "Override a key of that config: section.key=value (repeatable)");
  all->add_flag("!--no-report", ao->report, "Skip tools/bench_report.py (the roofline plot)");
  all->callback([ao] {
    ao->command = "ouro bench all";
    if (ao->small) ao->command += " --small";
    if (!ao->device.empty()) ao->command += " --device " + ao->device;
    if (!ao->config.empty()) ao->command += " --config " + ao->config;
    for (const auto& s : ao->sets) ao->command += " --set " + s;
    const BenchReport r = bench_all(*ao);
    if (!r.groups.empty()) std::fputs(bench_report_markdown(r).c_str(), stdout);
  });

  add_bench_tokenizer(*cmd);
  add_bench_simt(*cmd);
}

}  // namespace ouro::cli
