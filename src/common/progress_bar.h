// A progress bar on stderr for long jobs measured in bytes: redrawn in place (at most ten
// times a second) on a terminal, one line per 10% otherwise so that logs stay short.
#pragma once
#include <chrono>
#include <cstdint>
#include <string>

namespace ouro {

class ProgressBar {
 public:
  ProgressBar(std::string label, uint64_t total_bytes, bool enabled = true);
  ~ProgressBar();  // finishes the line
  void update(uint64_t done_bytes);
  void finish();

 private:
  void draw(bool final);
  std::string label_;
  uint64_t total_, done_ = 0;
  bool enabled_, tty_, finished_ = false;
  int last_decile_ = -1;
  std::chrono::steady_clock::time_point start_, last_draw_;
};

}  // namespace ouro
