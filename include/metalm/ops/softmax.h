// Softmax and log-softmax over the last dim, f32 and f64, computed in f32/f64 with max shift.
#pragma once
#include "metalm/core/tensor.h"

namespace metalm::ops {

Tensor softmax(const Tensor& x, int64_t dim = -1);      // only dim = -1 (last) is supported
Tensor log_softmax(const Tensor& x, int64_t dim = -1);  // only dim = -1 (last) is supported

}  // namespace metalm::ops
