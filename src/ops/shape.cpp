// concat, split and stack. Hand-written rather than oneDNN concat: each input is one strided
// copy_into a slice of the output (any dtype, any layout); split is slice views; stack is
// unsqueeze + concat.
#include "metalm/ops/shape.h"

#include "metalm/autograd/autograd.h"

namespace metalm::ops {
namespace {

int64_t wrap_dim(int64_t d, int64_t nd, const char* op) {
  const int64_t w = d < 0 ? d + nd : d;
  MLM_CHECK(w >= 0 && w < nd, ShapeError, "[", op, "] dim ", d, " out of range for ", nd, " dims");
  return w;
}

}  // namespace

// xs[k]: [..., n_k, ...] (same dtype, equal sizes except at dim) -> [..., sum_k n_k, ...]
Tensor concat(const std::vector<Tensor>& xs, int64_t dim) {
  MLM_CHECK(!xs.empty(), ValueError, "[concat] needs at least one tensor");
  for (size_t k = 0; k < xs.size(); ++k)
    MLM_CHECK(xs[k].defined(), ValueError, "[concat] tensor ", k, " is undefined");
  const Tensor& x0 = xs[0];
  MLM_CHECK(x0.dim() >= 1, ShapeError, "[concat] cannot concatenate 0-dim tensors");
  const int64_t d = wrap_dim(dim, x0.dim(), "concat");
  Shape out_shape = x0.shape();
  out_shape[d] = 0;
  for (size_t k = 0; k < xs.size(); ++k) {
    const Tensor& x = xs[k];
    MLM_CHECK(x.dtype() == x0.dtype(), DTypeError, "[concat] tensor ", k, " is ", x.str(),
              ", tensor 0 is ", x0.str());
    bool fits = x.dim() == x0.dim();
    for (int64_t i = 0; fits && i < x.dim(); ++i) fits = i == d || x.shape()[i] == x0.shape()[i];
    MLM_CHECK(fits, ShapeError, "[concat] tensor ", k, " ", x.str(), " does not fit tensor 0 ",
              x0.str(), " along dim ", dim);
    out_shape[d] += x.shape()[d];
  }
  Tensor out = Tensor::empty(out_shape, x0.dtype());
  std::vector<int64_t> offsets;  // start of each input along d
  int64_t off = 0;
  for (const Tensor& x : xs) {
    const int64_t n = x.shape()[d];
    offsets.push_back(off);
    copy_into(out.detach().slice(d, off, off + n), x.detach());
    off += n;
  }
  return autograd::record(
      "concat", out, xs, [offsets, d](const Tensor& g, const std::vector<bool>& needs) {
        std::vector<Tensor> grads(needs.size());
        for (size_t k = 0; k < needs.size(); ++k) {
          const int64_t end = k + 1 < offsets.size() ? offsets[k + 1] : g.shape()[d];
          if (needs[k]) grads[k] = g.slice(d, offsets[k], end);
        }
        return grads;
      });
}

// x: [..., n, ...] -> views [..., sizes[k], ...] with sum_k sizes[k] = n
std::vector<Tensor> split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim) {
  MLM_CHECK(x.defined(), ValueError, "[split] undefined input");
  MLM_CHECK(x.dim() >= 1, ShapeError, "[split] cannot split a 0-dim tensor");
  const int64_t d = wrap_dim(dim, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    MLM_CHECK(s >= 0, ValueError, "[split] negative size ", s, " in ", shape_str(sizes));
    total += s;
  }
  MLM_CHECK(total == x.shape()[d], ShapeError, "[split] sizes ", shape_str(sizes), " sum to ",
            total, " but dim ", dim, " of ", x.str(), " is ", x.shape()[d]);
  std::vector<Tensor> out;
  int64_t off = 0;
  for (int64_t s : sizes) {
    out.push_back(x.slice(d, off, off + s));
    off += s;
  }
  return out;
}

// xs[k]: [...] (all one shape and dtype) -> [..., K (at dim), ...]
Tensor stack(const std::vector<Tensor>& xs, int64_t dim) {
  MLM_CHECK(!xs.empty(), ValueError, "[stack] needs at least one tensor");
  for (size_t k = 0; k < xs.size(); ++k) {
    MLM_CHECK(xs[k].defined(), ValueError, "[stack] tensor ", k, " is undefined");
    MLM_CHECK(xs[k].shape() == xs[0].shape(), ShapeError, "[stack] tensor ", k, " is ", xs[k].str(),
              ", tensor 0 is ", xs[0].str());
    MLM_CHECK(xs[k].dtype() == xs[0].dtype(), DTypeError, "[stack] tensor ", k, " is ", xs[k].str(),
              ", tensor 0 is ", xs[0].str());
  }
  const int64_t d = wrap_dim(dim, xs[0].dim() + 1, "stack");
  std::vector<Tensor> parts;
  parts.reserve(xs.size());
  for (const Tensor& x : xs) parts.push_back(x.unsqueeze(d));
  return concat(parts, d);
}

}  // namespace metalm::ops
