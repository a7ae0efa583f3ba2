#include "common/progress_bar.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace ouro {

ProgressBar::ProgressBar(std::string label, uint64_t total_bytes, bool enabled)
    : label_(std::move(label)), total_(std::max<uint64_t>(total_bytes, 1)), enabled_(enabled),
      tty_(::isatty(STDERR_FILENO) != 0), start_(std::chrono::steady_clock::now()), last_draw_(start_) {}

ProgressBar::~ProgressBar() { finish(); }

void ProgressBar::update(uint64_t done_bytes) {
  done_ = std::min(done_bytes, total_);
  if (!enabled_ || finished_) return;
  const auto now = std::chrono::steady_clock::now();
  if (tty_) {
    if (now - last_draw_ < std::chrono::milliseconds(100)) return;
    last_draw_ = now;
    draw(false);
  } else {
    const int decile = static_cast<int>(done_ * 10 / total_);
    if (decile == last_decile_ || decile >= 10) return;  // 100% is finish()'s line
    last_decile_ = decile;
    draw(false);
  }
}

void ProgressBar::finish() {
  if (!enabled_ || finished_) return;
  done_ = total_;
  draw(true);
  finished_ = true;
}

void ProgressBar::draw(bool final) {
  constexpr int kWidth = 30;
  const double frac = static_cast<double>(done_) / static_cast<double>(total_);
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double mb_s = secs > 0 ? static_cast<double>(done_) / 1e6 / secs : 0.0;
  const double eta = frac > 0 ? secs * (1 - frac) / frac : 0.0;
  const int fill = static_cast<int>(frac * kWidth);
  std::string bar(static_cast<size_t>(fill), '#');
  bar.resize(kWidth, '.');
  std::fprintf(stderr, "%s%s [%s] %3.0f%% %.1f/%.1f MB %.1f MB/s %s %.0fs%s", tty_ ? "\r" : "",
               label_.c_str(), bar.c_str(), frac * 100, static_cast<double>(done_) / 1e6,
               static_cast<double>(total_) / 1e6, mb_s, final ? "took" : "eta", final ? secs : eta,
               tty_ && !final ? "" : "\n");
  std::fflush(stderr);
}

}  // namespace ouro
