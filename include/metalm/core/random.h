// Seeded, counter-based random numbers (DESIGN D7): value i of a draw depends only on (seed,
// offset + i), so results do not depend on the thread count.
#pragma once
#include <cstdint>

#include "metalm/core/tensor.h"

namespace metalm {

class Generator {
 public:
  explicit Generator(uint64_t seed = 0) : seed_(seed) {}
  // A generator for building a model whose weights are loaded next: uniform(), normal() and
  // trunc_normal() return uninitialised tensors (no draws, no temporaries) but reserve exactly
  // the counters a drawing generator would, so every seed derived from it (the dropout
  // generators modules keep) equals that of a model built with Generator(seed).
  static Generator no_draws(uint64_t seed) {
    Generator g(seed);
    g.draws_ = false;
    return g;
  }
  bool draws() const { return draws_; }
  uint64_t seed() const { return seed_; }
  uint64_t offset() const { return offset_; }
  void set_state(uint64_t seed, uint64_t offset) { seed_ = seed; offset_ = offset; }

  // Reserves n counters and returns the first; draws are hash(seed, counter).
  uint64_t reserve(uint64_t n) { uint64_t o = offset_; offset_ += n; return o; }
  // 64 random bits: the splitmix64 finaliser over (seed, counter). Inline so that kernels
  // drawing one number per element (attention dropout) vectorize it.
  static uint64_t hash(uint64_t seed, uint64_t counter) {
    uint64_t z = seed * 0xD1B54A32D192ED03ull + counter * 0x9E3779B97F4A7C15ull +
                 0x632BE59BD9B4E019ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    z = (z ^ (z >> 29)) * 0xBF58476D1CE4E5B9ull;
    return z ^ (z >> 32);
  }
  // (hash >> 11) * 2^-53: a double in [0, 1) with 53 random bits.
  static double uniform_at(uint64_t seed, uint64_t counter) {
    return static_cast<double>(hash(seed, counter) >> 11) * (1.0 / 9007199254740992.0);
  }
  // uniform_at(seed, c) >= p  <=>  (hash(seed, c) >> 11) >= keep_threshold(p), exactly (p in
  // [0, 1); p * 2^53 is exact): the integer form of a dropout keep test, for vector loops.
  static uint64_t keep_threshold(double p);

  // Values in [low, high) also after rounding to dtype. One counter per element.
  Tensor uniform(const Shape& shape, double low = 0.0, double high = 1.0, DType dtype = DType::f32);
  // Box-Muller: two counters per element, so later draws never reuse its random bits.
  Tensor normal(const Shape& shape, double mean = 0.0, double std = 1.0, DType dtype = DType::f32);
  // Normal truncated to [mean - 2 std, mean + 2 std] by redrawing (as timm's trunc_normal_).
  Tensor trunc_normal(const Shape& shape, double std, DType dtype = DType::f32);
  int64_t randint(int64_t low, int64_t high);  // in [low, high)
  // normal() / uniform() written into t (any float dtype, contiguous) with the same values and
  // counters; a no_draws generator only reserves the counters (nothing is allocated).
  void fill_normal(const Tensor& t, double mean = 0.0, double std = 1.0);
  void fill_uniform(const Tensor& t, double low = 0.0, double high = 1.0);

 private:
  uint64_t seed_ = 0;
  uint64_t offset_ = 0;
  bool draws_ = true;
};

}  // namespace metalm
