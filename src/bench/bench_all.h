// `ouro bench all`: the benchmarks that apply to one backend, collected into one report with
// the device, date and commit: DIR/bench.json, DIR/bench.md (bench_result.cpp) and, when the
// tools venv is there, DIR/roofline.png (tools/bench_report.py).
//   cpu:  train, generate, comm (under mpirun; a single process has nothing to measure)
//   simt: kernels, train, generate, comm, all at small sizes (the emulator is ~1e6x slower)
//   cuda: kernels, train, generate, comm at full sizes (GPT-2 124M)
#pragma once
#include <filesystem>
#include <string>
#include <vector>

#include "bench/bench_result.h"

namespace ouro {

struct BenchAllOptions {
  bool small = false;             // the smoke sizes (forced on simt)
  std::string device;             // "" = the binary's device backend (cuda or simt), else cpu
  std::string out = "bench";      // the report's directory
  std::string config;             // train/generate model; "" = built in (see bench_all.cpp)
  std::vector<std::string> sets;  // section.key=value overrides on it
  bool report = true;             // run tools/bench_report.py for the roofline
  std::string command;            // the command line, recorded in the report
};

// Where `ouro bench all` looks for a shipped config (configs/NAME) when --config is not given, in
// this order: ./configs (the working directory: a source checkout, or /workspace in the Docker
// image), <the binary's directory>/../share/ouro/configs (an installed ouro: `cmake --install`,
// the image's /opt/ouro), and the source tree the binary was built from.
std::vector<std::filesystem::path> shipped_config_dirs();
// The first dirs[i]/name that is a file; throws ouro::Error naming every path tried.
std::string find_shipped_config(const std::string& name, const std::vector<std::filesystem::path>& dirs);

// Runs the benchmarks and writes the report (rank 0 only under mpirun: the other ranks take part
// in the comm benchmark, then return an empty report). Throws ouro::Error on bad options.
BenchReport bench_all(const BenchAllOptions& opt);

}  // namespace ouro
