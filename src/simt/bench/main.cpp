// ouro_bench_simt: the emulator benchmark as a standalone program, built in every emulator build
// including the sanitizer ones (which have no `ouro`); `ouro bench simt` runs it from those.
//   ouro_bench_simt [--quick]    prints BenchResult::json() on stdout
#include <cstdio>
#include <cstring>

#include "ouro/simt/bench.h"

int main(int argc, char** argv) {
  ouro::simt::BenchOptions options;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--quick") == 0) {
      options.target_ops = 2e5;
      options.repeats = 1;
    } else {
      std::fprintf(stderr, "usage: ouro_bench_simt [--quick]\n");
      return 2;
    }
  }
  std::puts(ouro::simt::run_bench(options).json().c_str());
  return 0;
}
