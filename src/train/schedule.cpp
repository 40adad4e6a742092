// Learning-rate schedules.
#include "metalm/train/schedule.h"

#include <algorithm>
#include <cmath>

#include "metalm/core/error.h"

namespace metalm::train {

void LrSchedule::validate() const {
  MLM_CHECK(std::isfinite(peak_lr) && peak_lr > 0, ValueError, "[schedule] peak lr must be > 0, got ",
            peak_lr);
  MLM_CHECK(warmup_steps >= 0 && total_steps >= 1, ValueError,
            "[schedule] needs warmup >= 0 and total steps >= 1, got ", warmup_steps, " and ",
            total_steps);
  MLM_CHECK(min_lr_ratio >= 0 && min_lr_ratio <= 1, ValueError,
            "[schedule] min_lr_ratio must be in [0, 1], got ", min_lr_ratio);
}

double LrSchedule::lr_at(int64_t step) const {
  validate();
  MLM_CHECK(step >= 1, ValueError, "[schedule] steps count from 1, got ", step);
  if (step <= warmup_steps)
    return peak_lr * static_cast<double>(step) / static_cast<double>(warmup_steps);
  const double floor = min_lr_ratio * peak_lr;
  if (decay == DecayKind::constant) return peak_lr;
  const int64_t span = std::max<int64_t>(1, total_steps - warmup_steps);
  const double t = std::min(1.0, static_cast<double>(step - warmup_steps) / static_cast<double>(span));
  const double shape = decay == DecayKind::cosine ? 0.5 * (1 + std::cos(M_PI * t)) : 1 - t;
  return floor + (peak_lr - floor) * shape;
}

DecayKind parse_decay_kind(const std::string& name) {
  if (name == "cosine") return DecayKind::cosine;
  if (name == "linear") return DecayKind::linear;
  if (name == "constant") return DecayKind::constant;
  throw ValueError("[schedule] decay must be cosine, linear or constant, got '" + name + "'");
}

}  // namespace metalm::train
