// ouro: pretrain GPT-style models and feed them their own output.
#include <cstdio>

#include "cli/commands.h"
#include "ouro/ops.h"

int main(int argc, char** argv) {
  CLI::App app{"ouro: a C++/CUDA engine that pretrains GPT-style language models"};
  std::string devices;
  for (const auto& d : ouro::available_devices()) devices += (devices.empty() ? "" : ", ") + d;
  app.set_version_flag("--version", std::string("ouro ") + OURO_VERSION + " (devices: " + devices + ")");
  app.require_subcommand(1);
  ouro::cli::add_prepare(app);
  ouro::cli::add_train(app);
  ouro::cli::add_eval(app);
  ouro::cli::add_sample(app);
  ouro::cli::add_bench(app);
  ouro::cli::add_tokenizer(app);
  ouro::cli::add_tokenize(app);
  return ouro::cli::run_app(app, argc, argv);
}
