// Counter-based generator: splitmix64 finaliser over (seed, counter).
#include "metalm/core/random.h"

#include <cmath>

namespace metalm {

uint64_t Generator::hash(uint64_t seed, uint64_t counter) {
  uint64_t z = seed * 0xD1B54A32D192ED03ull + counter * 0x9E3779B97F4A7C15ull + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  z = (z ^ (z >> 29)) * 0xBF58476D1CE4E5B9ull;
  return z ^ (z >> 32);
}

double Generator::uniform_at(uint64_t seed, uint64_t counter) {
  return static_cast<double>(hash(seed, counter) >> 11) * (1.0 / 9007199254740992.0);
}

namespace {
double normal_at(uint64_t seed, uint64_t counter) {
  double u1 = Generator::uniform_at(seed, 2 * counter);
  double u2 = Generator::uniform_at(seed, 2 * counter + 1);
  return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(6.283185307179586 * u2);
}

Tensor fill_with(const Shape& shape, DType dtype, const auto& value_at) {
  Tensor t = Tensor::empty(shape, DType::f64);
  double* p = t.data<double>();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) p[i] = value_at(i);
  return dtype == DType::f64 ? t : t.to(dtype);
}
}  // namespace

Tensor Generator::uniform(const Shape& shape, double low, double high, DType dtype) {
  uint64_t base = reserve(static_cast<uint64_t>(shape_numel(shape)));
  uint64_t s = seed_;
  return fill_with(shape, dtype, [=](int64_t i) { return low + (high - low) * uniform_at(s, base + i); });
}

Tensor Generator::normal(const Shape& shape, double mean, double std, DType dtype) {
  uint64_t base = reserve(static_cast<uint64_t>(shape_numel(shape)));
  uint64_t s = seed_;
  return fill_with(shape, dtype, [=](int64_t i) { return mean + std * normal_at(s, base + i); });
}

Tensor Generator::trunc_normal(const Shape& shape, double std, DType dtype) {
  uint64_t base = reserve(static_cast<uint64_t>(shape_numel(shape)));
  uint64_t s = seed_;
  return fill_with(shape, dtype, [=](int64_t i) {
    for (uint64_t attempt = 0;; ++attempt) {
      double z = normal_at(s ^ (attempt * 0xA24BAED4963EE407ull), base + i);
      if (std::fabs(z) <= 2.0) return std * z;
    }
  });
}

int64_t Generator::randint(int64_t low, int64_t high) {
  MLM_CHECK(high > low, ValueError, "[randint] empty range [", low, ", ", high, ")");
  uint64_t span = static_cast<uint64_t>(high - low);
  return low + static_cast<int64_t>(hash(seed_, reserve(1)) % span);
}

}  // namespace metalm
