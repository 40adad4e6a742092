// Reductions over dims: sum, mean, max, argmax. f32 (summed over 16 lanes, in f64 for long rows;
// see .cpp) and f64. max and argmax let NaN win, as PyTorch does.
#pragma once
#include <vector>

#include "metalm/core/tensor.h"

namespace metalm::ops {

// dims may be negative; empty dims = all dims.
Tensor sum(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, const std::vector<int64_t>& dims = {}, bool keepdim = false);
// Max over one dim; the gradient goes to the first maximal element.
Tensor max(const Tensor& x, int64_t dim, bool keepdim = false);
// Index of the (first) max over the last dim (i64, not differentiable).
Tensor argmax(const Tensor& x);

// Sums a broadcast gradient back to `shape` (the inverse of expand). Not recorded.
Tensor sum_to_shape(const Tensor& g, const Shape& shape);

}  // namespace metalm::ops
