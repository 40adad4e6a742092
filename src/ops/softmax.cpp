// softmax and log_softmax over the last dim. Hand-written, not oneDNN (D1): the row kernels are
// memory-bound and fuse everything per row (max, sum of exp, normalize; backward in two passes
// over a cached row), so an x row is read from memory once and y written once. Measured on par
// with oneDNN 2.6's jit softmax forward and backward at [2048, 384] and [2048, 8192] (2 threads);
// oneDNN has no f64 and would need a primitive cache per shape. OpenMP over rows; every row is
// computed by one thread in a fixed order, so results do not depend on the thread count (D7).
// The reference path (ops::use_reference()) is the composite of plain ops, differentiated by the
// tape: it is the spec and the test oracle.
#include "metalm/ops/softmax.h"

#include <limits>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"  // use_reference()
#include "metalm/ops/reduce.h"
#include "ops/rowwise.h"
#include "ops/vecmath.h"

namespace metalm::ops {
namespace {

// Rows below this many elements in total run on one thread (the fork costs more than the work).
constexpr int64_t kParallelMin = 1 << 15;

void check_args(const Tensor& x, int64_t dim, const char* op) {
  MLM_CHECK(x.defined(), ValueError, "[", op, "] undefined input");
  MLM_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, DTypeError, "[", op,
            "] expected f32 or f64, got ", x.str());
  MLM_CHECK(x.dim() >= 1, ShapeError, "[", op, "] needs at least one dim, got ", x.str());
  MLM_CHECK(dim == -1 || dim == x.dim() - 1, ShapeError, "[", op,
            "] only the last dim is supported (dim -1 or ", x.dim() - 1, "), got dim ", dim,
            " for ", x.str());
}

using namespace rowwise;  // lane_sum, row_max (src/ops/rowwise.h)

// ---------------------------------------------------------------- row kernels

// x: [R, C] -> y: [R, C], y = exp(x - max) / sum(exp(x - max)) (LOG: x - max - log(sum)).
template <typename T, bool LOG>
void forward_rows(const T* x, T* y, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* xr = x + r * cols;
    T* yr = y + r * cols;
    const T m = row_max<T, false>(xr, cols, nullptr);
    if constexpr (LOG) {
      const T s = lane_sum<T>(cols, [=](int64_t i) { return vm::exp(xr[i] - m); });
      const T log_s = vm::log(s);
#pragma omp simd
      for (int64_t i = 0; i < cols; ++i) yr[i] = (xr[i] - m) - log_s;
    } else {
      const T s = lane_sum<T>(cols, [=](int64_t i) { return yr[i] = vm::exp(xr[i] - m); });
      const T inv = T(1) / s;
#pragma omp simd
      for (int64_t i = 0; i < cols; ++i) yr[i] *= inv;
    }
  }
}

// y, g: [R, C] -> dx: [R, C].
// softmax:     dx = y * (g - sum(g * y))
// log_softmax: dx = g - exp(y) * sum(g)
template <typename T, bool LOG>
void backward_rows(const T* y, const T* g, T* dx, int64_t rows, int64_t cols) {
#pragma omp parallel for schedule(static) if (rows * cols > kParallelMin)
  for (int64_t r = 0; r < rows; ++r) {
    const T* yr = y + r * cols;
    const T* gr = g + r * cols;
    T* dr = dx + r * cols;
    if constexpr (LOG) {
      const T s = lane_sum<T>(cols, [=](int64_t i) { return gr[i]; });
#pragma omp simd
      for (int64_t i = 0; i < cols; ++i) dr[i] = gr[i] - vm::exp(yr[i]) * s;
    } else {
      const T s = lane_sum<T>(cols, [=](int64_t i) { return gr[i] * yr[i]; });
#pragma omp simd
      for (int64_t i = 0; i < cols; ++i) dr[i] = yr[i] * (gr[i] - s);
    }
  }
}

template <bool LOG>
Tensor forward(const Tensor& x) {
  Tensor xc = x.detach().contiguous();
  Tensor y = Tensor::empty(x.shape(), x.dtype());
  const int64_t cols = x.size(-1), rows = cols == 0 ? 0 : x.numel() / cols;
  if (x.dtype() == DType::f32)
    forward_rows<float, LOG>(xc.data<float>(), y.data<float>(), rows, cols);
  else
    forward_rows<double, LOG>(xc.data<double>(), y.data<double>(), rows, cols);
  return y;
}

template <bool LOG>
Tensor backward(const Tensor& y, const Tensor& g) {
  Tensor gc = g.contiguous();
  Tensor dx = Tensor::empty(y.shape(), y.dtype());
  const int64_t cols = y.size(-1), rows = cols == 0 ? 0 : y.numel() / cols;
  if (y.dtype() == DType::f32)
    backward_rows<float, LOG>(y.data<float>(), gc.data<float>(), dx.data<float>(), rows, cols);
  else
    backward_rows<double, LOG>(y.data<double>(), gc.data<double>(), dx.data<double>(), rows, cols);
  return dx;
}

// ---------------------------------------------------------------- reference (composite)

// The max shift is a constant (softmax is shift-invariant), hence detached.
Tensor softmax_reference(const Tensor& x) {
  Tensor z = sub(x, max(x, -1, true).detach());
  Tensor e = exp(z);
  return div(e, sum(e, {-1}, true));
}

Tensor log_softmax_reference(const Tensor& x) {
  Tensor z = sub(x, max(x, -1, true).detach());
  return sub(z, log(sum(exp(z), {-1}, true)));
}

}  // namespace

Tensor softmax(const Tensor& x, int64_t dim) {
  check_args(x, dim, "softmax");
  if (use_reference()) return softmax_reference(x);
  Tensor y = forward<false>(x);
  Tensor yd = y.detach();
  return autograd::record("softmax", y, {x}, [yd](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{backward<false>(yd, g)};
  });
}

Tensor log_softmax(const Tensor& x, int64_t dim) {
  check_args(x, dim, "log_softmax");
  if (use_reference()) return log_softmax_reference(x);
  Tensor y = forward<true>(x);
  Tensor yd = y.detach();
  return autograd::record("log_softmax", y, {x}, [yd](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{backward<true>(yd, g)};
  });
}

}  // namespace metalm::ops
