// Joining and splitting tensors: concat, split, stack.
#pragma once
#include <vector>

#include "metalm/core/tensor.h"

namespace metalm::ops {

Tensor concat(const std::vector<Tensor>& xs, int64_t dim);
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
Tensor stack(const std::vector<Tensor>& xs, int64_t dim);

}  // namespace metalm::ops
