// Matrix products on oneDNN sgemm (f32) with a plain-loop reference (and the f64 path).
#pragma once
#include "metalm/core/tensor.h"

namespace metalm::ops {

// a: [..., M, K] (or [..., K, M] if trans_a), b: [..., K, N] (or [..., N, K] if trans_b)
// -> [..., M, N]. Batch dims must match exactly, or b may be 2-D (shared across the batch).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// x: [..., in], w: [out, in], b: [out] or undefined -> [..., out]   (y = x w^T + b, D2)
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// Plain C = alpha * op(A) op(B) + beta * C on row-major f32 buffers through oneDNN.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// Route every op with a fast path to its plain reference implementation (tests, --use-ref).
void set_use_reference(bool on);
bool use_reference();

}  // namespace metalm::ops
