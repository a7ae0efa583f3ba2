// ouro_fault_worker: `ouro train` with a fault injected from the environment, for the tests in
// which a process must really die or hang (a rank under mpirun, kill -9 inside a checkpoint
// write). It is a test binary, built with the tests and never installed: the product carries
// no fault flags; the faults come in through the seams every caller has (TrainHooks: a
// communicator decorator, the checkpoint observer).
//   OURO_FAULT_COMM=RANK:OP:CALL:SIGNAL     rank RANK raises SIGNAL (kill or stop) on entering
//                                           its CALL-th (1-based) OP collective (fault_injection.h)
//   OURO_FAULT_CHECKPOINT_KILL=PHASE:STEP   SIGKILL inside the checkpoint write of STEP at PHASE
//                                           (debris, model, optimizer, state, renamed, rotated)
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/train.h"
#include "fault_injection.h"

namespace {

std::vector<std::string> fields(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string f; std::getline(in, f, ':');) out.push_back(f);
  return out;
}

bool is_number(const std::string& s) {
  return !s.empty() && s.size() <= 9 && s.find_first_not_of("0123456789") == std::string::npos;
}

[[noreturn]] void bad(const char* var, const char* value, const char* expected) {
  std::fprintf(stderr, "ouro_fault_worker: %s='%s': expected %s\n", var, value, expected);
  std::exit(2);
}

ouro::TrainHooks hooks_from_environment() {
  ouro::TrainHooks hooks;
  if (const char* v = std::getenv("OURO_FAULT_COMM")) {
    const auto f = fields(v);
    if (f.size() != 4 || !is_number(f[0]) || f[1].empty() || !is_number(f[2]) || (f[3] != "kill" && f[3] != "stop"))
      bad("OURO_FAULT_COMM", v, "RANK:OP:CALL:SIGNAL, SIGNAL kill or stop");
    ouro::test::CommFault fault;
    fault.rank = std::stoi(f[0]);
    fault.op = f[1];
    fault.call = std::stoi(f[2]);
    fault.signal = f[3] == "stop" ? SIGSTOP : SIGKILL;
    hooks.wrap_comm = ouro::test::with_fault(fault);
  }
  if (const char* v = std::getenv("OURO_FAULT_CHECKPOINT_KILL")) {
    const auto f = fields(v);
    static const std::vector<std::string> phases{"debris", "model", "optimizer", "state", "renamed", "rotated"};
    bool known = false;
    for (const auto& p : phases) known |= f.size() == 2 && f[0] == p;
    if (!known || !is_number(f[1]))
      bad("OURO_FAULT_CHECKPOINT_KILL", v, "PHASE:STEP, PHASE one of debris, model, optimizer, state, renamed, rotated");
    hooks.checkpoint_observer = [phase = f[0], at = std::stoll(f[1])](int64_t step, const char* p) {
      if (step == at && phase == p) std::raise(SIGKILL);
    };
  }
  return hooks;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"ouro_fault_worker: `ouro train` with a fault from the environment (tests only)"};
  app.require_subcommand(1);
  ouro::cli::add_train(app, hooks_from_environment());
  return ouro::cli::run_app(app, argc, argv);
}
