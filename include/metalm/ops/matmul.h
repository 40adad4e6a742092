// Matrix products on oneDNN sgemm (f32) and bf16 matmul, with a plain-loop reference (and f64).
#pragma once
#include <string>
#include <vector>

#include "metalm/core/tensor.h"
#include "metalm/ops/activation.h"

namespace metalm::ops {

// a: [..., M, K] (or [..., K, M] if trans_a), b: [..., K, N] (or [..., N, K] if trans_b)
// -> [..., M, N]. Batch dims must match exactly, or b may be 2-D (shared across the batch).
Tensor matmul(const Tensor& a, const Tensor& b, bool trans_a = false, bool trans_b = false);

// x: [..., in], w: [out, in], b: [out] or undefined -> [..., out]   (y = x w^T + b, D2)
// x, w and b share a dtype, except that an f32 x and b may take a w stored as bf16 (for
// inference: nn::store_weights): then y is the f32 product with w widened exactly, computed
// for up to 8 rows by a GEMV that streams the bf16 weight once (half the bytes of f32), and
// above by the f32 GEMM on a widened copy (or the bf16 GEMM under MatmulPrecision::bf16).
// Such a w never requires grad; x and b may.
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& b = Tensor());

// linear(x, weights[i], biases[i]) for every i (a bias may be undefined): the q, k, v projections
// of one input. Under MatmulPrecision::bf16 x is rounded to bf16 once for all of them, and that
// one copy is what their backward passes keep. Otherwise exactly the separate linear() calls.
std::vector<Tensor> linears(const Tensor& x, const std::vector<Tensor>& weights,
                            const std::vector<Tensor>& biases);

// activation(linear(x, w, b)). Under
// MatmulPrecision::bf16, for f32 inputs of which none needs a gradient (inference), the
// activation runs inside the GEMM as a oneDNN post-op: one pass over the output instead of two.
// oneDNN's activations are polynomial approximations accurate to about 1e-6 relative, well
// inside the error the bf16 operands already bring; with f32 precision, or when gradients are
// needed, this is exactly the two ops.
Tensor linear_activation(const Tensor& x, const Tensor& w, const Tensor& b,
                         Activation activation);

// linear(activation(linear(x, w1, b1)), w2, b2): a feed-forward block without anything between
// the two layers. Fused like linear_activation() under bf16 inference, and the hidden layer
// (activation output) leaves the first GEMM as bf16 and feeds the second one directly: the
// [rows, hidden] f32 tensor is never written. Otherwise exactly the three ops.
Tensor mlp(const Tensor& x, const Tensor& w1, const Tensor& b1, Activation activation,
           const Tensor& w2, const Tensor& b2);

// Plain C = alpha * op(A) op(B) + beta * C on row-major f32 buffers through oneDNN.
void sgemm(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha,
           const float* a, int64_t lda, const float* b, int64_t ldb, float beta, float* c,
           int64_t ldc);

// Plain C = op(A) op(B) + beta * C (+ bias[n] on every row, if given) with bf16 operands and f32
// accumulation and output, through oneDNN's matmul primitive (AVX512-BF16 brgemm kernels).
// beta is 0 or 1. Row-major buffers; lda/ldb are the row strides of the stored matrices.
// `activation` is applied to each output element as it leaves the GEMM (a oneDNN eltwise
// post-op, after beta and bias).
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a,
               int64_t lda, const bf16* b, int64_t ldb, float beta, float* c, int64_t ldc,
               const float* bias = nullptr, Activation activation = Activation::none);
// Whether oneDNN has a bf16 matmul on this CPU (it needs AVX-512). Without one, gemm_bf16 widens
// its operands to f32 (exact) and runs sgemm, then bias and activation: the same numbers as
// bf16 operands with f32 accumulation, none of the speed, and no fused epilogue.
bool native_bf16_matmul();
// Process-wide: emulate even where oneDNN has a native bf16 matmul (tests of the fallback).
void set_bf16_matmul_emulated(bool emulated);
// The same with C = op(A) op(B) (+ bias, activation) written as bf16 (rounded to nearest even
// from the f32 accumulator): a GEMM whose output only feeds another bf16 GEMM.
void gemm_bf16(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, const bf16* a,
               int64_t lda, const bf16* b, int64_t ldb, bf16* c, int64_t ldc,
               const float* bias = nullptr, Activation activation = Activation::none);

// ---- compute settings ----
//
// Precision of the GEMMs inside linear() for f32 tensors, like PyTorch's
// torch.set_float32_matmul_precision. f32 (the default): exact sgemm. bf16: the operands of the
// forward and of both backward GEMMs are rounded to bf16 (8-bit mantissa, relative error up to
// 2^-9 per operand) and the products accumulate in f32; about 2x faster on CPUs with fast
// AVX512-BF16 (Zen 4/5), slower on some Intel parts where vdpbf16ps runs at half the f32 FMA
// rate. Parameters, activations and gradients stay f32. A linear() records the precision it ran
// with, so its backward uses the same one. Also read by attention() (bf16 products in
// inference, see attention.h), linear_activation() and mlp() (fused inference forms).
enum class MatmulPrecision { f32, bf16 };
const char* matmul_precision_name(MatmulPrecision precision);  // "f32", "bf16"
// Parses "f32" / "bf16"; throws ValueError naming the text otherwise.
MatmulPrecision parse_matmul_precision(const std::string& text);

// The settings the ops read. They belong to the calling thread and change only inside a
// ComputeGuard's scope, so two models at different precisions can run in one process (one per
// thread, or one after the other): nothing is process-wide. Never switched on silently: a model's
// own setting (models::Model::compute), the CLI's --matmul-precision and the guards are the only
// ways in. Read when an op is called, on the calling thread (never inside a parallel region).
struct ComputeMode {
  MatmulPrecision precision = MatmulPrecision::f32;
  // Route every op with a fast path to its plain reference implementation (tests).
  bool reference = false;
};
ComputeMode compute_mode();  // this thread's
inline MatmulPrecision matmul_precision() { return compute_mode().precision; }
inline bool use_reference() { return compute_mode().reference; }

// Sets this thread's compute mode for a scope and restores the previous one.
class ComputeGuard {
 public:
  explicit ComputeGuard(const ComputeMode& mode);
  ~ComputeGuard();
  ComputeGuard(const ComputeGuard&) = delete;
  ComputeGuard& operator=(const ComputeGuard&) = delete;

 private:
  ComputeMode saved_;
};
// The same for one of the two settings.
class MatmulPrecisionGuard : public ComputeGuard {
 public:
  explicit MatmulPrecisionGuard(MatmulPrecision precision)
      : ComputeGuard({precision, use_reference()}) {}
};
class ReferenceGuard : public ComputeGuard {
 public:
  explicit ReferenceGuard(bool on = true) : ComputeGuard({matmul_precision(), on}) {}
};

}  // namespace metalm::ops
