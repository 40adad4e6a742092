// Learning-rate schedules: linear warmup from 0, then cosine or linear decay to
// min_lr_ratio * peak, or constant. The trainer asks lr_at(step) once per optimizer step.
#pragma once
#include <cstdint>
#include <string>

namespace metalm::train {

enum class DecayKind { cosine, linear, constant };

struct LrSchedule {
  double peak_lr = 1e-3;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;  // the decay reaches its floor here
  DecayKind decay = DecayKind::cosine;
  double min_lr_ratio = 0.0;  // floor = min_lr_ratio * peak_lr

  // step counts from 1 (the first update). Warmup: peak * step / warmup; then decay over
  // (warmup, total]; steps past total stay at the floor. ValueError for a bad schedule.
  double lr_at(int64_t step) const;
  void validate() const;
};

// "cosine" | "linear" | "constant"; ValueError otherwise.
DecayKind parse_decay_kind(const std::string& name);

}  // namespace metalm::train
