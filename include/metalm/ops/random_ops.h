// Ops that draw random numbers: dropout.
#pragma once
#include "metalm/core/random.h"
#include "metalm/core/tensor.h"

namespace metalm::ops {

// Inverted dropout: keeps each element with prob 1-p and scales by 1/(1-p). Identity when
// !training or p == 0. The mask depends only on the generator state (D7).
Tensor dropout(const Tensor& x, double p, Generator& gen, bool training = true);

}  // namespace metalm::ops
