// Rotary transform over interleaved pairs (2i, 2i+1): TorchScale's rotate_every_two layout, the
// kernel under xPos (reference-spec 5.1). Hand-written forward and backward, not oneDNN (D1): no
// primitive for it, and one pass over x beats the five plain ops of the composite.
#pragma once
#include "metalm/core/tensor.h"

namespace metalm::ops {

// x: [..., L, D] (D even; any strides), cos, sin: [L, D/2] of x's dtype -> [..., L, D]
//   out[.., n, 2i]   = x[.., n, 2i]   cos[n, i] - x[.., n, 2i+1] sin[n, i]
//   out[.., n, 2i+1] = x[.., n, 2i+1] cos[n, i] + x[.., n, 2i]   sin[n, i]
// Pair i of row n is multiplied by [[c, -s], [s, c]]. The pairs are interleaved, not the two
// halves of GPT-NeoX rotary. xPos folds its scale into the tables, so they need not describe a
// rotation. The op is linear in x: backward applies the transposed matrix [[c, s], [-s, c]] to
// the upstream gradient. The tables are constants: they get no gradient, and a table that
// requires grad (with grad mode on) is rejected rather than silently left without one.
// f32 and f64.
Tensor rotary(const Tensor& x, const Tensor& cos, const Tensor& sin);

// The composite of plain ops (slices, mul, sub/add, stack): the spec and the test oracle. The
// fast path runs it when ops::use_reference() is on. Same argument checks.
Tensor rotary_reference(const Tensor& x, const Tensor& cos, const Tensor& sin);

}  // namespace metalm::ops
