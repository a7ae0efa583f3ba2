#include "train/lr_schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace ouro {

double LrSchedule::at(int64_t step) const {
  const double floor = lr * min_lr_frac;
  // Warmup reaches the full rate at the end of step warmup-1 (step+1 / warmup).
  if (step < warmup) return lr * static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (kind == LrScheduleKind::constant) return lr;
  const int64_t span = std::max<int64_t>(1, total - warmup);
  if (kind == LrScheduleKind::wsd) {
    // Stable at lr, then a linear decay to the floor over the last decay_frac of the steps.
    const int64_t decay_steps = std::max<int64_t>(1, static_cast<int64_t>(std::llround(decay_frac * total)));
    const int64_t decay_start = total - decay_steps;
    if (step < decay_start) return lr;
    double t = std::min(1.0, static_cast<double>(step - decay_start + 1) / decay_steps);
    return lr + (floor - lr) * t;
  }
  double t = std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(span));
  if (kind == LrScheduleKind::linear) return lr + (floor - lr) * t;
  // cosine
  return floor + 0.5 * (lr - floor) * (1.0 + std::cos(std::numbers::pi * t));
}

float clip_coefficient(double grad_norm, double clip) {
  if (clip <= 0) return 1.0f;
  double c = clip / (grad_norm + 1e-6);
  return c < 1.0 ? static_cast<float>(c) : 1.0f;
}

}  // namespace ouro
