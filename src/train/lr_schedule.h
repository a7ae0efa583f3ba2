// Learning-rate schedules: linear warmup, then cosine, linear or warmup-stable-decay down to a
// floor (min_lr_frac * lr), or constant.
#pragma once
#include <cstdint>

#include "ouro/config_train.h"

namespace ouro {

struct LrSchedule {
  double lr = 0, min_lr_frac = 0, decay_frac = 0.2;
  int64_t warmup = 0, total = 0;
  LrScheduleKind kind = LrScheduleKind::cosine;
  double at(int64_t step) const;  // step is 0-based
};

// torch.nn.utils.clip_grad_norm_'s coefficient: min(1, clip / (norm + 1e-6)); 1 when clip <= 0.
float clip_coefficient(double grad_norm, double clip);

}  // namespace ouro
