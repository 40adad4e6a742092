// Internal: linear() for a weight stored as bf16 (ops/bf16_weights.cpp).
#pragma once
#include "metalm/core/tensor.h"

namespace metalm::ops {

// Up to this many rows, the product is the GEMV that reads the weight once for all of them.
inline constexpr int64_t kMaxGemvRows = 8;

// x: f32 [..., in], w: bf16 [out, in] (never requiring grad), b: f32 [out] or undefined, already
// checked by linear(); out_shape = [..., out]. The result equals linear() with w widened to f32,
// up to the order of the f32 sums.
Tensor linear_bf16_weight(const Tensor& x, const Tensor& w, const Tensor& b,
                          const Shape& out_shape);

}  // namespace metalm::ops
