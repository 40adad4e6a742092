// Matrix products on oneDNN sgemm (f32) and bf16 matmul, with a plain-loop reference (and f64).
#pragma once
#include <string>
#include <vector>

#include "metalm/core/tensor.h"

namespace metalm::ops {

// a: [..., M, K] (or [..., K, M] if trans_a), b: [..., K, N] (or [..., N, K] if trans_b)
// -> [..., M, N]. Batch dims must match exactly, or b may be 2-D (shared across the batch).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// x: [..., in], w: [out, in], b: [out] or undefined -> [..., out]   (y = x w^T + b, D2)
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// linear(x, weights[i], biases[i]) for every i (a bias may be undefined): the q, k, v projections
// of one input. Under MatmulPrecision::bf16 x is rounded to bf16 once for all of them, and that
// one copy is what their backward passes keep. Otherwise exactly the separate linear() calls.
std::vector<Tensor> linears(const Tensor& x, const std::vector<Tensor>& weights,
                            const std::vector<Tensor>& biases);

// activation(linear(x, w, b)) for an activation name of ops::activation(). Under
// MatmulPrecision::bf16, for f32 inputs of which none needs a gradient (inference), the
// activation runs inside the GEMM as a oneDNN post-op: one pass over the output instead of two.
// oneDNN's activations are polynomial approximations accurate to about 1e-6 relative, well
// inside the error the bf16 operands already bring; with f32 precision, or when gradients are
// needed, this is exactly the two ops.
Tensor linear_activation(const Tensor& x, const Tensor& w, const Tensor& b,
                         const std::string& activation);

// linear(activation(linear(x, w1, b1)), w2, b2): a feed-forward block without anything between
// the two layers. Fused like linear_activation() under bf16 inference, and the hidden layer
// (activation output) leaves the first GEMM as bf16 and feeds the second one directly: the
// [rows, hidden] f32 tensor is never written. Otherwise exactly the three ops.
Tensor mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, const std::string& activation,
           const Tensor& w2, const Tensor& b2);

// Plain C = alpha * op(A) op(B) + beta * C on row-major f32 buffers through oneDNN.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// Plain C = op(A) op(B) + beta * C (+ bias[n] on every row, if given) with bf16 operands and f32
// accumulation and output, through oneDNN's matmul primitive (AVX512-BF16 brgemm kernels).
// beta is 0 or 1. Row-major buffers; lda/ldb are the row strides of the stored matrices.
// An elementwise function applied to each output element as it leaves the GEMM (a oneDNN
// eltwise post-op, after beta and bias): relu, gelu (erf form), gelu_tanh, silu, quick_gelu.
enum class GemmActivation { none, relu, gelu, gelu_tanh, silu, quick_gelu };
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a,
               int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc,
               const float* bias = nullptr, GemmActivation activation = GemmActivation::none);
// The same with C = op(A) op(B) (+ bias, activation) written as bf16 (rounded to nearest even
// from the f32 accumulator): a GEMM whose output only feeds another bf16 GEMM.
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a,
               int64_t lda, const bf16* b, int64_t ldb, bf16* c, int64_t ldc,
               const float* bias = nullptr, GemmActivation activation = GemmActivation::none);

// Precision of the GEMMs inside linear() for f32 tensors, process-wide, like PyTorch's
// torch.set_float32_matmul_precision. f32 (the default): exact sgemm. bf16: the operands of the
// forward and of both backward GEMMs are rounded to bf16 (8-bit mantissa, relative error up to
// 2^-9 per operand) and the products accumulate in f32; about 2x faster on AVX512-BF16 CPUs.
// Parameters, activations and gradients stay f32. Never switched on silently: the CLI's
// --matmul-precision and this call are the only ways in. A linear() records the precision it
// ran with, so its backward uses the same one. Also read by attention() (bf16 products in
// inference, see attention.h), linear_activation() and mlp() (fused inference forms).
enum class MatmulPrecision { f32, bf16 };
void set_matmul_precision(MatmulPrecision precision);
MatmulPrecision matmul_precision();
const char* matmul_precision_name(MatmulPrecision precision);  // "f32", "bf16"
// Parses "f32" / "bf16"; throws ValueError naming the text otherwise.
MatmulPrecision parse_matmul_precision(const std::string& text);

// Sets the precision for a scope and restores the previous one.
class MatmulPrecisionGuard {
 public:
  explicit MatmulPrecisionGuard(MatmulPrecision precision)
      : saved_(matmul_precision()) { set_matmul_precision(precision); }
  ~MatmulPrecisionGuard() { set_matmul_precision(saved_); }
  MatmulPrecisionGuard(const MatmulPrecisionGuard&) = delete;
  MatmulPrecisionGuard& operator=(const MatmulPrecisionGuard&) = delete;

 private:
  MatmulPrecision saved_;
};

// Route every op with a fast path to its plain reference implementation (tests, --use-ref).
void set_use_reference(bool on);
bool use_reference();

}  // namespace metalm::ops
