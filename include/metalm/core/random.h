// Seeded, counter-based random numbers (DESIGN D7): value i of a draw depends only on (seed,
// offset + i), so results do not depend on the thread count.
#pragma once
#include <cstdint>

#include "metalm/core/tensor.h"

namespace metalm {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }

  // Reserves n counters and returns the first; draws are hash(seed, counter).
  uint64_t reserve(uint64_t n) { uint64_t o = offset_; offset_ += n; return o; }
  static uint64_t hash(uint64_t seed, uint64_t counter);   // 64 random bits
  static double uniform_at(uint64_t seed, uint64_t counter);  // in [0, 1)

  // Values in [low, high) also after rounding to dtype. One counter per element.
  Tensor uniform(const Shape& shape, double low = 0.0, double high = 1.0, DType dtype = DType::f32);
  // Box-Muller: two counters per element, so later draws never reuse its random bits.
  Tensor normal(const Shape& shape, double mean = 0.0, double std = 1.0, DType dtype = DType::f32);
  // Normal truncated to [mean - 2 std, mean + 2 std] by redrawing (as timm's trunc_normal_).
  Tensor trunc_normal(const Shape& shape, double std, DType dtype = DType::f32);
  int64_t randint(int64_t low, int64_t high);  // in [low, high)

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
};

}  // namespace metalm
