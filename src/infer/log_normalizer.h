// Internal to infer/: log(sum_v exp(x_v)) of one row of f32 logits, in f64 (the log-softmax
// denominator beam search and candidate scoring share: log p(v) = x_v - log_normalizer).
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>

namespace metalm::infer {

inline double log_normalizer(const float* x, int64_t V) {
  double mx = -INFINITY;
  for (int64_t i = 0; i < V; ++i) mx = std::max<double>(mx, x[i]);
  double z = 0;
  for (int64_t i = 0; i < V; ++i) z += std::exp(static_cast<double>(x[i]) - mx);
  return mx + std::log(z);
}

}  // namespace metalm::infer
