// The signals that stop a run between steps: SIGINT, SIGTERM, and SIGHUP (a closed terminal or
// ssh session) unless the run was started to ignore hangups (nohup): that choice stands. The
// handler only records the signal; the session checks it after each step and checkpoints.
#pragma once

namespace ouro {

class StopSignals {
 public:
  StopSignals();   // installs the handlers and forgets any signal an earlier session saw
  ~StopSignals();  // restores the handlers it replaced
  StopSignals(const StopSignals&) = delete;
  StopSignals& operator=(const StopSignals&) = delete;

  int received() const;  // the last stop signal received, or 0
  static const char* name(int sig);  // "SIGINT", "SIGTERM", "SIGHUP"

 private:
  void (*old_int_)(int) = nullptr;
  void (*old_term_)(int) = nullptr;
  void (*old_hup_)(int) = nullptr;
};

}  // namespace ouro
