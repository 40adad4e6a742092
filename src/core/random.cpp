// Counter-based generator: splitmix64 finaliser over (seed, counter).
#include "metalm/core/random.h"

#include <cmath>

namespace metalm {

uint64_t Generator::keep_threshold(double p) {
  return static_cast<uint64_t>(std::ceil(p * 9007199254740992.0));
}

namespace {
// Box-Muller from counters c and c + 1: a normal draw owns two counters, and reserves them, so
// it never shares random bits with a later draw from the same generator.
double normal_at(uint64_t seed, uint64_t c) {
  double u1 = Generator::uniform_at(seed, c);
  double u2 = Generator::uniform_at(seed, c + 1);
  return std::sqrt(-2.0 * std::log(1.0 - u1)) * std::cos(6.283185307179586 * u2);
}

// Allocates first, so a bad shape throws before the generator reserves any counter; then
// reserves `per_element` counters per element and fills p[i] = value_at(first_counter, i).
Tensor fill_with(Generator& gen, const Shape& shape, DType dtype, uint64_t per_element,
                 const auto& value_at) {
  if (!gen.draws()) {
    Tensor t = Tensor::empty(shape, dtype);
    gen.reserve(per_element * static_cast<uint64_t>(t.numel()));
    return t;
  }
  Tensor t = Tensor::empty(shape, DType::f64);
  double* p = t.data<double>();
  const int64_t n = t.numel();
  const uint64_t base = gen.reserve(per_element * static_cast<uint64_t>(n));
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) p[i] = value_at(base, i);
  return dtype == DType::f64 ? t : t.to(dtype);
}

// The next value below v in its type (nextafter toward -inf). bf16 bits are the top half of an
// f32, so stepping the 16-bit pattern steps the value.
float next_down(float v) { return std::nextafter(v, -INFINITY); }
bf16 next_down(bf16 v) {
  if ((v.bits & 0x7fffu) == 0) return bf16{0x8001};  // +-0 -> the negative smallest denormal
  return bf16{static_cast<uint16_t>((v.bits & 0x8000u) ? v.bits + 1 : v.bits - 1)};
}
double widen(float v) { return v; }
double widen(bf16 v) { return bf16_to_f32(v); }

// u < 1 in f64 does not keep a narrow dtype's draw below `high`: 1 - 2^-53 rounds to 1.0f, and
// about one bf16 draw in 512 rounds up. Values that reached `high` become the largest value of
// T below it, so uniform() stays in [low, high) as documented.
template <typename T>
void keep_below_high(const Tensor& t, double low, double high, T top) {
  while (widen(top) >= high) top = next_down(top);
  if (widen(top) < low) return;  // no value of T in [low, high): leave the rounding alone
  T* p = t.data<T>();
  const int64_t n = t.numel();
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i)
    if (widen(p[i]) >= high) p[i] = top;
}
}  // namespace

Tensor Generator::uniform(const Shape& shape, double low, double high, DType dtype) {
  const uint64_t s = seed_;
  Tensor t = fill_with(*this, shape, dtype, 1, [=](uint64_t base, int64_t i) {
    return low + (high - low) * uniform_at(s, base + i);
  });
  if (!draws_) return t;
  if (high > low && dtype == DType::f32)
    keep_below_high<float>(t, low, high, static_cast<float>(high));
  if (high > low && dtype == DType::bf16)
    keep_below_high<bf16>(t, low, high, f32_to_bf16(static_cast<float>(high)));
  return t;
}

Tensor Generator::normal(const Shape& shape, double mean, double std, DType dtype) {
  const uint64_t s = seed_;
  return fill_with(*this, shape, dtype, 2, [=](uint64_t base, int64_t i) {
    return mean + std * normal_at(s, base + 2 * i);
  });
}

Tensor Generator::trunc_normal(const Shape& shape, double std, DType dtype) {
  const uint64_t s = seed_;
  return fill_with(*this, shape, dtype, 2, [=](uint64_t base, int64_t i) {
    for (uint64_t attempt = 0;; ++attempt) {
      double z = normal_at(s ^ (attempt * 0xA24BAED4963EE407ull), base + 2 * i);
      if (std::fabs(z) <= 2.0) return std * z;
    }
  });
}

void Generator::fill_normal(const Tensor& t, double mean, double std) {
  if (!draws_) {
    reserve(2 * static_cast<uint64_t>(t.numel()));
    return;
  }
  copy_into(t, normal(t.shape(), mean, std, t.dtype()));
}

void Generator::fill_uniform(const Tensor& t, double low, double high) {
  if (!draws_) {
    reserve(static_cast<uint64_t>(t.numel()));
    return;
  }
  copy_into(t, uniform(t.shape(), low, high, t.dtype()));
}

int64_t Generator::randint(int64_t low, int64_t high) {
  MLM_CHECK(high > low, ValueError, "[randint] empty range [", low, ", ", high, ")");
  // Unsigned arithmetic: high - low overflows int64 for spans above 2^63 - 1.
  const uint64_t span = static_cast<uint64_t>(high) - static_cast<uint64_t>(low);
  return static_cast<int64_t>(static_cast<uint64_t>(low) + hash(seed_, reserve(1)) % span);
}

}  // namespace metalm
