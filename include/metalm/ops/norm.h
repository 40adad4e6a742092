// Normalisations over the last dim: layer_norm (affine optional), rms_norm, l2_normalize.
#pragma once
#include "metalm/core/tensor.h"

namespace metalm::ops {

// x: [..., C], weight/bias: [C] or undefined. Biased variance, as torch.nn.LayerNorm.
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
// y = x / sqrt(mean(x^2) + eps) * weight (weight optional)
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-6);
// y = x / max(||x||_2, eps) over the last dim (torch.nn.functional.normalize); on rows clamped
// to eps the gradient is g / eps.
Tensor l2_normalize(const Tensor& x, double eps = 1e-12);

}  // namespace metalm::ops
