// patchify and mean_pool, composed of differentiable views, matmul (oneDNN sgemm) and
// elementwise ops, so their backward comes from those ops.
#include "metalm/ops/vision.h"

#include <algorithm>
#include <vector>

#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/reduce.h"

namespace metalm::ops {

// images: [B, C, H, W], weight: [D, C, P, P], bias: [D] -> [B, N = (H/P)*(W/P), D]
// im2col as views: [B, C, H/P, P, W/P, P] -> permute -> [B, H/P, W/P, C, P, P] -> [B*N, C*P*P]
// (one copy), then [B*N, C*P*P] x [D, C*P*P]^T on sgemm, plus bias.
Tensor patchify(const Tensor& images, const Tensor& weight, const Tensor& bias, int64_t patch) {
  MLM_CHECK(images.defined() && weight.defined(), ValueError, "[patchify] undefined input");
  MLM_CHECK(patch > 0, ValueError, "[patchify] patch size must be positive, got ", patch);
  MLM_CHECK(images.dim() == 4, ShapeError, "[patchify] images must be [B, C, H, W], got ",
            images.str());
  const int64_t b = images.size(0), c = images.size(1), h = images.size(2), w = images.size(3);
  const int64_t d = weight.dim() == 4 ? weight.size(0) : -1;
  MLM_CHECK(weight.dim() == 4 && weight.shape() == (Shape{d, c, patch, patch}), ShapeError,
            "[patchify] weight must be [D, ", c, ", ", patch, ", ", patch, "], got ", weight.str());
  MLM_CHECK(h % patch == 0 && w % patch == 0, ShapeError, "[patchify] image size ", h, "x", w,
            " is not divisible by the patch size ", patch);
  MLM_CHECK(!bias.defined() || (bias.dim() == 1 && bias.size(0) == d), ShapeError,
            "[patchify] bias must be [", d, "], got ", bias.str());
  MLM_CHECK(images.dtype() == weight.dtype() && (!bias.defined() || bias.dtype() == weight.dtype()),
            DTypeError, "[patchify] dtypes differ: images ", images.str(), ", weight ",
            weight.str(), ", bias ", bias.str());
  const int64_t hp = h / patch, wp = w / patch, k = c * patch * patch;
  Tensor cols = images.reshape({b, c, hp, patch, wp, patch})
                    .permute({0, 2, 4, 1, 3, 5})
                    .reshape({b * hp * wp, k});
  Tensor out = matmul(cols, weight.reshape({d, k}), false, true);  // [B*N, D]
  if (bias.defined()) out = add(out, bias);
  return out.reshape({b, hp * wp, d});
}

// x: [B, T, C], mask: u8 [B, T] -> [B, C] = sum_t mask x / max(count, 1). A row with no kept
// position (or T == 0) gives zeros rather than NaN.
Tensor mean_pool(const Tensor& x, const Tensor& mask) {
  MLM_CHECK(x.defined(), ValueError, "[mean_pool] undefined input");
  MLM_CHECK(x.dim() == 3, ShapeError, "[mean_pool] x must be [B, T, C], got ", x.str());
  MLM_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, DTypeError,
            "[mean_pool] expected f32 or f64, got ", x.str());
  const int64_t b = x.size(0), t = x.size(1);
  if (!mask.defined()) return mul(sum(x, {1}), 1.0 / static_cast<double>(std::max<int64_t>(t, 1)));
  MLM_CHECK(mask.dtype() == DType::u8, DTypeError, "[mean_pool] mask must be u8, got ", mask.str());
  MLM_CHECK(mask.shape() == (Shape{b, t}), ShapeError, "[mean_pool] mask ", mask.str(),
            " does not match x ", x.str());
  Tensor keep = Tensor::empty({b, t}, x.dtype());  // mask as 0/1 of x's dtype
  Tensor count = Tensor::empty({b, 1}, x.dtype());
  {
    Tensor mc = mask.detach().contiguous();
    const uint8_t* mp = mc.data<uint8_t>();
    std::vector<double> kv(static_cast<size_t>(b * t)), cv(static_cast<size_t>(b));
    for (int64_t i = 0; i < b; ++i) {
      int64_t n = 0;
      for (int64_t j = 0; j < t; ++j) {
        kv[i * t + j] = mp[i * t + j] != 0 ? 1.0 : 0.0;
        n += mp[i * t + j] != 0;
      }
      cv[i] = static_cast<double>(std::max<int64_t>(n, 1));
    }
    copy_into(keep, Tensor::from_vector(Shape{b, t}, kv));
    copy_into(count, Tensor::from_vector(Shape{b, 1}, cv));
  }
  return div(sum(mul(x, keep.unsqueeze(-1)), {1}), count);
}

}  // namespace metalm::ops
