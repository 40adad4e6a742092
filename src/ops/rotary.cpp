// rotary: interleaved-pair rotation by per-row (cos, sin) tables (see include/metalm/ops/rotary.h).
// Hand-written: one strided read of x, one contiguous write, no temporaries. x may be a permuted
// view (the attention layout [B, H, T, D] seen through [B, T, H, D] storage), so rows are found
// through x's strides instead of forcing a copy. The backward is the same kernel with the
// transposed 2x2 matrix, i.e. the sign of sin flipped.
//
// The reference path (ops::use_reference()) is the composite of plain ops, differentiated by the
// tape: it is the spec and the test oracle.
#include "metalm/ops/rotary.h"

#include <omp.h>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"  // use_reference()
#include "metalm/ops/shape.h"

namespace metalm::ops {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements; smaller problems run on one thread

// Checks the arguments of rotary / rotary_reference.
void check_args(const Tensor& x, const Tensor& cos, const Tensor& sin, const char* op) {
  MLM_CHECK(x.defined() && cos.defined() && sin.defined(), ValueError, "[", op,
            "] undefined input");
  MLM_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, DTypeError, "[", op,
            "] expected f32 or f64, got ", x.str());
  MLM_CHECK(x.dim() >= 2, ShapeError, "[", op, "] expected x of shape [..., L, D], got ", x.str());
  const int64_t L = x.size(-2), D = x.size(-1);
  MLM_CHECK(D > 0 && D % 2 == 0, ShapeError, "[", op,
            "] the last dim must be even and positive (pairs), got ", x.str());
  for (const Tensor* t : {&cos, &sin}) {
    const char* name = t == &cos ? "cos" : "sin";
    MLM_CHECK(t->dtype() == x.dtype(), DTypeError, "[", op, "] ", name, " table ", t->str(),
              " does not match the input dtype ", dtype_name(x.dtype()));
    MLM_CHECK(t->shape() == Shape({L, D / 2}), ShapeError, "[", op, "] ", name,
              " table must be [L, D/2] = ", shape_str({L, D / 2}), " for x ", x.str(), ", got ",
              t->str());
    MLM_CHECK(!(autograd::is_grad_enabled() && t->requires_grad()), ValueError, "[", op, "] ", name,
              " table requires grad; the tables are constants (detach them)");
  }
}

// Element offset of row r of x viewed as [R, D]: r unravelled over x's dims [0, nd-1). A few
// divisions per row, negligible next to the D/2 pairs of the row.
int64_t row_offset(const Shape& shape, const Shape& strides, int64_t r) {
  int64_t off = 0;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 2; d >= 0; --d) {
    off += (r % shape[d]) * strides[d];
    r /= shape[d];
  }
  return off;
}

// x: [..., L, D] with unit stride in D (rows found through strides), c, s: [L, D/2] contiguous
// -> out: [..., L, D] contiguous. SIGN = +1: forward matrix [[c, -s], [s, c]];
// SIGN = -1: its transpose [[c, s], [-s, c]] (backward).
template <typename T, int SIGN>
void rotary_rows(const T* x, const Shape& shape, const Shape& strides, const T* c, const T* s,
                 T* out) {
  const int64_t D = shape.back(), L = shape[shape.size() - 2], half = D / 2;
  const int64_t rows = shape_numel(shape) / D;
#pragma omp parallel for schedule(static) if (rows * D > kParallelMin && !omp_in_parallel())
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + row_offset(shape, strides, r);
    const T* cr = c + (r % L) * half;
    const T* sr = s + (r % L) * half;
    T* o = out + r * D;
    for (int64_t i = 0; i < half; ++i) {
      const T x0 = xr[2 * i], x1 = xr[2 * i + 1];
      const T ci = cr[i], si = SIGN > 0 ? sr[i] : -sr[i];
      o[2 * i] = x0 * ci - x1 * si;
      o[2 * i + 1] = x1 * ci + x0 * si;
    }
  }
}

// Applies the kernel to any float x (made unit-stride in the last dim if it is not) -> a fresh
// contiguous tensor of x's shape. No autograd.
template <int SIGN>
Tensor rotary_apply(const Tensor& x_in, const Tensor& cos, const Tensor& sin) {
  Tensor x = x_in.detach();
  if (x.strides().back() != 1) x = x.contiguous();
  Tensor c = cos.detach().contiguous(), s = sin.detach().contiguous();
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  if (out.numel() == 0) return out;
  if (x.dtype() == DType::f32)
    rotary_rows<float, SIGN>(x.data<float>(), x.shape(), x.strides(), c.data<float>(),
                             s.data<float>(), out.data<float>());
  else
    rotary_rows<double, SIGN>(x.data<double>(), x.shape(), x.strides(), c.data<double>(),
                              s.data<double>(), out.data<double>());
  return out;
}

}  // namespace

Tensor rotary_reference(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  check_args(x, cos, sin, "rotary");
  // [..., L, D] -> [..., L, D/2, 2]: the last dim holds the pair (x[2i], x[2i+1]).
  Shape pairs = x.shape();
  pairs.back() /= 2;
  pairs.push_back(2);
  Tensor xp = x.reshape(pairs);
  Tensor x0 = xp.slice(-1, 0, 1).squeeze(-1), x1 = xp.slice(-1, 1, 2).squeeze(-1);
  Tensor o0 = sub(mul(x0, cos), mul(x1, sin));
  Tensor o1 = add(mul(x1, cos), mul(x0, sin));
  return stack({o0, o1}, -1).reshape(x.shape());
}

Tensor rotary(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  check_args(x, cos, sin, "rotary");
  if (use_reference()) return rotary_reference(x, cos, sin);
  Tensor out = rotary_apply<+1>(x, cos, sin);
  // Private copies ([L, D/2], small next to x): backward must not see later writes to the tables.
  Tensor cd = cos.detach().clone(), sd = sin.detach().clone();
  return autograd::record("rotary", out, {x}, [cd, sd](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{rotary_apply<-1>(g, cd, sd)};
  });
}

}  // namespace metalm::ops
