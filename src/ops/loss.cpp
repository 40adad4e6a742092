// cross_entropy over logits [N, V] with ignore_index, a per-token loss mask and label smoothing.
// Hand-written, not oneDNN (D1): the chunked cross-entropy of DESIGN D1. oneDNN has no such
// primitive, and a softmax primitive followed by a gather would materialize the [N, V] log-prob
// matrix. Here the forward reads each logits row once (max, sum of exp, target logit, and the row
// sum for smoothing) and keeps only the per-row logsumexp; the backward recomputes the softmax
// per row and writes dlogits in the same pass. OpenMP over rows; the reduction over rows runs
// serially in f64 in row order, so results do not depend on the thread count (D7).
//
// Semantics (PyTorch's F.cross_entropy for class-index targets, plus a weight per token):
//   lse_i  = log sum_c exp(x_ic)
//   loss_i = (1 - eps) * (lse_i - x_{i,t_i}) + eps * (lse_i - mean_c x_ic)
//          = (1 - eps) * nll_i + eps * mean_c(-log p_ic)
//   w_i    = loss_mask_i (1 without a mask), and 0 where t_i == ignore_index
//   none: w_i * loss_i;  sum: sum_i w_i * loss_i;  mean: that sum / sum_i w_i (0 if that is 0,
//   where PyTorch returns NaN for "every token ignored").
//   dlogits_i = w_i * g_i * (softmax(x_i) - (1 - eps) * onehot(t_i) - eps / V)
// The mask is a constant: no gradient flows to it.
//
// The reference path (ops::use_reference()) is the composite of plain ops, differentiated by the
// tape: it is the spec and the test oracle.
#include "metalm/ops/loss.h"

#include <cmath>
#include <limits>
#include <memory>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"  // use_reference()
#include "metalm/ops/reduce.h"
#include "ops/rowwise.h"
#include "ops/vecmath.h"

namespace metalm::ops {
namespace {

constexpr int64_t kParallelMin = 1 << 15;  // elements; smaller problems run on one thread

// ---------------------------------------------------------------- arguments

// Validated arguments: contiguous targets and the per-row weight w_i (0 for ignored rows).
struct Prepared {
  Tensor targets;                               // i64 [N], contiguous
  std::shared_ptr<std::vector<double>> weight;  // [N]
  double weight_sum = 0;                        // sum_i w_i (the mean's denominator)
};

Prepared prepare(const Tensor& logits, const Tensor& targets, const CrossEntropyOptions& opt) {
  const char* op = "[cross_entropy] ";
  MLM_CHECK(logits.defined() && targets.defined(), ValueError, op, "undefined logits or targets");
  MLM_CHECK(logits.dtype() == DType::f32 || logits.dtype() == DType::f64, DTypeError, op,
            "logits must be f32 or f64, got ", logits.str());
  MLM_CHECK(logits.dim() == 2, ShapeError, op, "logits must be [N, V], got ", logits.str());
  const int64_t n = logits.size(0), v = logits.size(1);
  MLM_CHECK(v >= 1, ShapeError, op, "logits need at least one class, got ", logits.str());
  MLM_CHECK(targets.dtype() == DType::i64, DTypeError, op, "targets must be i64, got ",
            targets.str());
  MLM_CHECK(targets.dim() == 1 && targets.size(0) == n, ShapeError, op, "targets ", targets.str(),
            " do not match logits ", logits.str(), ": expected [", n, "]");
  MLM_CHECK(opt.label_smoothing >= 0 && opt.label_smoothing <= 1, ValueError, op,
            "label_smoothing must be in [0, 1], got ", opt.label_smoothing);
  const Tensor& mask = opt.loss_mask;
  if (mask.defined()) {
    MLM_CHECK(mask.dtype() == DType::f32 || mask.dtype() == logits.dtype(), DTypeError, op,
              "loss_mask must be f32 or the logits dtype ", dtype_name(logits.dtype()), ", got ",
              mask.str());
    MLM_CHECK(mask.dim() == 1 && mask.size(0) == n, ShapeError, op, "loss_mask ", mask.str(),
              " does not match logits ", logits.str(), ": expected [", n, "]");
  }
  Prepared p;
  p.targets = targets.detach().contiguous();
  const int64_t* t = p.targets.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    MLM_CHECK(t[i] == opt.ignore_index || (t[i] >= 0 && t[i] < v), ValueError, op, "target ", t[i],
              " at row ", i, " is out of range [0, ", v, ") and is not ignore_index (",
              opt.ignore_index, ")");
  std::vector<double> m = mask.defined() ? mask.to_vector<double>() : std::vector<double>();
  p.weight = std::make_shared<std::vector<double>>(n);
  for (int64_t i = 0; i < n; ++i) {
    const double w = t[i] == opt.ignore_index ? 0.0 : (m.empty() ? 1.0 : m[i]);
    (*p.weight)[i] = w;
    p.weight_sum += w;
  }
  return p;
}

using namespace rowwise;  // lane_sum, row_max (src/ops/rowwise.h)

// ---------------------------------------------------------------- kernels

// x: [N, V], t, w: [N] -> loss: [N] (unweighted loss_i; 0 where w_i = 0), lse: [N]
template <typename T>
void forward_rows(const T* x, const int64_t* t, const double* w, T* loss, T* lse, int64_t n,
                  int64_t v, T eps) {
  const T inv_v = T(1) / static_cast<T>(v);
#pragma omp parallel for schedule(static) if (n * v > kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    if (w[r] == 0) {  // ignored or masked out: the row is never read
      loss[r] = 0;
      lse[r] = 0;
      continue;
    }
    const T* xr = x + r * v;
    T sum_x = 0;
    const T m = eps > 0 ? row_max<T, true>(xr, v, &sum_x) : row_max<T, false>(xr, v, nullptr);
    const T s = lane_sum<T>(v, [=](int64_t i) { return vm::exp(xr[i] - m); });
    const T l = m + vm::log(s);
    const T nll = l - xr[t[r]];
    loss[r] = eps > 0 ? (T(1) - eps) * nll + eps * (l - sum_x * inv_v) : nll;
    lse[r] = l;
  }
}

// x: [N, V], t, lse, coef: [N] -> dx: [N, V],
// dx_i = coef_i * (exp(x_i - lse_i) - eps / V - (1 - eps) * onehot(t_i)), coef_i = w_i * g_i.
template <typename T>
void backward_rows(const T* x, const int64_t* t, const T* lse, const T* coef, T* dx, int64_t n,
                   int64_t v, T eps) {
  const T off = eps / static_cast<T>(v);
#pragma omp parallel for schedule(static) if (n * v > kParallelMin)
  for (int64_t r = 0; r < n; ++r) {
    T* dr = dx + r * v;
    const T c = coef[r];
    if (c == 0) {  // ignored or masked-out rows (their lse was never computed), or g_i = 0
#pragma omp simd
      for (int64_t i = 0; i < v; ++i) dr[i] = 0;
      continue;
    }
    const T* xr = x + r * v;
    const T l = lse[r];
    if (eps > 0) {
#pragma omp simd
      for (int64_t i = 0; i < v; ++i) dr[i] = c * (vm::exp(xr[i] - l) - off);
    } else {
#pragma omp simd
      for (int64_t i = 0; i < v; ++i) dr[i] = c * vm::exp(xr[i] - l);
    }
    dr[t[r]] -= c * (T(1) - eps);
  }
}

Tensor cross_entropy_fast(const Tensor& logits, const Prepared& p, const CrossEntropyOptions& opt) {
  const int64_t n = logits.size(0), v = logits.size(1);
  const DType dt = logits.dtype();
  Tensor xc = logits.detach().contiguous();
  Tensor loss = Tensor::empty({n}, dt);
  Tensor lse = Tensor::empty({n}, dt);
  const int64_t* t = p.targets.data<int64_t>();
  const double eps = opt.label_smoothing;
  const std::vector<double>& w = *p.weight;
  if (dt == DType::f32)
    forward_rows<float>(xc.data<float>(), t, w.data(), loss.data<float>(), lse.data<float>(), n, v,
                        static_cast<float>(eps));
  else
    forward_rows<double>(xc.data<double>(), t, w.data(), loss.data<double>(), lse.data<double>(), n,
                         v, eps);

  // Weighted reduction over rows, serial in f64 and in row order (deterministic).
  const Reduction red = opt.reduction;
  const double scale =
      red == Reduction::mean ? (p.weight_sum != 0 ? 1.0 / p.weight_sum : 0.0) : 1.0;
  Tensor out;
  auto reduce = [&](auto tag) {
    using T = decltype(tag);
    T* l = loss.data<T>();
    if (red == Reduction::none) {
      for (int64_t i = 0; i < n; ++i) l[i] = w[i] == 0 ? T(0) : static_cast<T>(w[i] * l[i]);
      out = loss;
      return;
    }
    double total = 0;
    for (int64_t i = 0; i < n; ++i)
      if (w[i] != 0) total += w[i] * static_cast<double>(l[i]);
    out = Tensor::scalar(total * scale, dt);
  };
  if (dt == DType::f32)
    reduce(float{});
  else
    reduce(double{});

  Tensor targets = p.targets;
  auto weight = p.weight;
  return autograd::record(
      "cross_entropy", out, {logits},
      [xc, targets, lse, weight, scale, red, eps, n, v](const Tensor& g, const std::vector<bool>&) {
        // coef_i = w_i * dL/d(loss_i): g_i (none) or g * scale (sum: 1, mean: 1 / sum w).
        std::vector<double> gv = g.to_vector<double>();
        Tensor dx = Tensor::empty({n, v}, xc.dtype());
        auto run = [&](auto tag) {
          using T = decltype(tag);
          std::vector<T> coef(n);
          for (int64_t i = 0; i < n; ++i)
            coef[i] =
                static_cast<T>((*weight)[i] * (red == Reduction::none ? gv[i] : gv[0] * scale));
          backward_rows<T>(xc.data<T>(), targets.data<int64_t>(), lse.data<T>(), coef.data(),
                           dx.data<T>(), n, v, static_cast<T>(eps));
        };
        if (xc.dtype() == DType::f32)
          run(float{});
        else
          run(double{});
        return std::vector<Tensor>{dx};
      });
}

// ---------------------------------------------------------------- reference (composite)

Tensor cross_entropy_reference(const Tensor& logits, const Prepared& p,
                               const CrossEntropyOptions& opt) {
  const int64_t n = logits.size(0), v = logits.size(1);
  const DType dt = logits.dtype();
  Tensor z = sub(logits, max(logits, -1, true).detach());
  Tensor logp = sub(z, log(sum(exp(z), {-1}, true)));  // [N, V]
  std::vector<double> onehot(static_cast<size_t>(n * v), 0.0);
  const int64_t* t = p.targets.data<int64_t>();
  for (int64_t i = 0; i < n; ++i)
    if (t[i] != opt.ignore_index) onehot[static_cast<size_t>(i * v + t[i])] = 1.0;
  Tensor nll = neg(sum(mul(logp, Tensor::from_vector<double>({n, v}, onehot).to(dt)), {-1}));
  Tensor loss = nll;  // [N]
  const double eps = opt.label_smoothing;
  if (eps > 0) loss = add(mul(nll, 1.0 - eps), mul(neg(mean(logp, {-1})), eps));
  Tensor lw = mul(loss, Tensor::from_vector<double>({n}, *p.weight).to(dt));
  if (opt.reduction == Reduction::none) return lw;
  Tensor total = sum(lw);
  if (opt.reduction == Reduction::sum) return total;
  return mul(total, p.weight_sum != 0 ? 1.0 / p.weight_sum : 0.0);
}

}  // namespace

Tensor cross_entropy(const Tensor& logits, const Tensor& targets,
                     const CrossEntropyOptions& options) {
  Prepared p = prepare(logits, targets, options);
  if (use_reference()) return cross_entropy_reference(logits, p, options);
  return cross_entropy_fast(logits, p, options);
}

}  // namespace metalm::ops
