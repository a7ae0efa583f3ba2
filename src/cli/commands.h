// Each subcommand registers itself on the root CLI11 app; its callback does the work and
// throws ouro::Error on bad input (main prints it and exits 1).
#pragma once
#include <CLI/CLI.hpp>

namespace ouro {
struct TrainHooks;  // cli/train.h
}  // namespace ouro

namespace ouro::cli {

// Thrown by a callback that ends the process with a particular status after doing its work
// (train interrupted by a signal: 128 + the signal); main returns `code`.
struct ExitStatus {
  int code = 0;
};

void add_prepare(CLI::App& app);
void add_train(CLI::App& app);
// With the decorators and observers a test binary adds (tests/fault_worker.cpp).
void add_train(CLI::App& app, const TrainHooks& hooks);
void add_eval(CLI::App& app);
void add_sample(CLI::App& app);
void add_bench(CLI::App& app);
void add_tokenizer(CLI::App& app);
void add_tokenize(CLI::App& app);
void add_bench_tokenizer(CLI::App& bench);  // `ouro bench tokenizer`, under bench
void add_bench_simt(CLI::App& bench);       // `ouro bench simt`, under bench

// Parses the command line and runs the chosen subcommand: the process's exit status (errors
// are logged: an ouro::Error's message, a parse error's usage, an ExitStatus's code).
int run_app(CLI::App& app, int argc, char** argv);

}  // namespace ouro::cli
