// Image-side ops: patchify (Conv2d with kernel = stride) and masked mean pooling.
#pragma once
#include "metalm/core/tensor.h"

namespace metalm::ops {

// images: [B, C, H, W], weight: [D, C, P, P], bias: [D] or undefined -> [B, (H/P)*(W/P), D]
// (the Conv2d(kernel=stride=P) of ViT followed by flatten(2).transpose(1, 2)).
Tensor patchify(const Tensor& images, const Tensor& weight, const Tensor& bias, int64_t patch);

// x: [B, T, C], mask: u8 [B, T] (1 = keep) or undefined -> [B, C] mean over kept positions;
// a row with no kept position gives zeros.
Tensor mean_pool(const Tensor& x, const Tensor& mask = Tensor());

}  // namespace metalm::ops
