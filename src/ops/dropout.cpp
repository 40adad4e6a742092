// Inverted dropout with a counter-based mask (D7): element i (row-major) is kept iff
// Generator::uniform_at(seed, base + i) >= p, so the mask does not depend on the thread count.
#include <cmath>
#include <cstdint>
#include <memory>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/random_ops.h"

namespace metalm::ops {
namespace {

// out[i] = keep[i] ? x[i] * scale : 0. x, keep, out: [n] contiguous.
template <typename T>
void apply_mask(const T* x, const uint8_t* keep, T scale, T* out, int64_t n) {
#pragma omp parallel for schedule(static) if (n > (1 << 16))
  for (int64_t i = 0; i < n; ++i) out[i] = keep[i] ? x[i] * scale : T(0);
}

// Scales by a T-rounded 1/(1-p), as PyTorch does, and keeps the u8 mask for the backward.
template <typename T>
Tensor dropout_typed(const Tensor& x, double p, uint64_t seed, uint64_t base) {
  const int64_t n = x.numel();
  auto keep = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(n));
  uint8_t* kp = keep->data();
#pragma omp parallel for schedule(static) if (n > (1 << 14))
  for (int64_t i = 0; i < n; ++i)
    kp[i] = Generator::uniform_at(seed, base + static_cast<uint64_t>(i)) >= p ? 1 : 0;
  const T scale = static_cast<T>(1.0 / (1.0 - p));
  Tensor xc = x.detach().contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  apply_mask<T>(xc.data<T>(), kp, scale, out.data<T>(), n);
  return autograd::record(
      "dropout", out, {x}, [keep, scale](const Tensor& g, const std::vector<bool>&) {
        Tensor gc = g.contiguous();
        Tensor gx = Tensor::empty(g.shape(), g.dtype());
        apply_mask<T>(gc.data<T>(), keep->data(), scale, gx.data<T>(), g.numel());
        return std::vector<Tensor>{gx};
      });
}

}  // namespace

// x: [...] -> [...]. Draws numel(x) counters from gen only when it actually drops. p must be in
// [0, 1), also in eval mode: p = 1 (scale 1/0) is a ValueError rather than silent zeros.
Tensor dropout(const Tensor& x, double p, Generator& gen, bool training) {
  MLM_CHECK(x.defined(), ValueError, "[dropout] undefined input");
  MLM_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, DTypeError,
            "[dropout] expected f32 or f64, got ", x.str());
  MLM_CHECK(p >= 0.0 && p < 1.0, ValueError, "[dropout] p must be in [0, 1), got ", p);
  if (!training || p == 0.0) return x;
  const uint64_t base = gen.reserve(static_cast<uint64_t>(x.numel()));
  if (x.dtype() == DType::f32) return dropout_typed<float>(x, p, gen.seed(), base);
  return dropout_typed<double>(x, p, gen.seed(), base);
}

}  // namespace metalm::ops
