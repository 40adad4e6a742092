// Reductions. Every reduction views the input as [outer, reduced] or [reduced, inner] rows:
// reducing trailing dims sums contiguous rows, reducing leading dims sums columns, anything
// else permutes the reduced dims to the end first. f32 sums use 16 independent lanes, in f64
// for rows of 64 Ki elements or more.
#include "metalm/ops/reduce.h"

#include <algorithm>
#include <limits>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/elementwise.h"

namespace metalm::ops {
namespace {

std::vector<int64_t> normalize_dims(const Tensor& x, const std::vector<int64_t>& dims,
                                    const char* op) {
  const int64_t nd = x.dim();
  std::vector<int64_t> out;
  if (dims.empty()) {
    for (int64_t d = 0; d < nd; ++d) out.push_back(d);
    return out;
  }
  for (int64_t d : dims) {
    int64_t w = d < 0 ? d + nd : d;
    MLM_CHECK(w >= 0 && w < nd, ShapeError, "[", op, "] dim ", d, " out of range for ", x.str());
    MLM_CHECK(std::find(out.begin(), out.end(), w) == out.end(), ShapeError, "[", op,
              "] repeated dim ", d);
    out.push_back(w);
  }
  std::sort(out.begin(), out.end());
  return out;
}

template <typename T>
T row_sum(const T* p, int64_t n) {
  T lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += p[i + l];
  T s = 0;
  for (; i < n; ++i) s += p[i];
  for (int l = 0; l < 16; ++l) s += lanes[l];
  return s;
}

// As row_sum, with f64 lanes (for long rows, where f32 lanes lose digits: 2^22 copies of 0.1f
// summed over 16 f32 lanes come out 0.25% low). Memory-bound either way.
template <typename T>
double row_sum_f64(const T* p, int64_t n) {
  double lanes[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int l = 0; l < 16; ++l) lanes[l] += p[i + l];
  double s = 0;
  for (; i < n; ++i) s += p[i];
  for (int l = 0; l < 16; ++l) s += lanes[l];
  return s;
}

// x viewed as [rows, cols] contiguous: out[r] = sum_c x[r, c].
// Long rows (a full reduction is one row) are cut into fixed blocks summed in parallel in f64
// and added in block order: one row per thread would leave the other cores idle. The blocks
// depend on cols only, so the result is the same for every thread count.
template <typename T>
void sum_rows(const T* x, T* out, int64_t rows, int64_t cols) {
  constexpr int64_t kBlock = 1 << 14;
  if (cols >= 4 * kBlock) {
    const int64_t nb = (cols + kBlock - 1) / kBlock;
    std::vector<double> part(static_cast<size_t>(rows * nb));
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < rows * nb; ++t) {
      const int64_t r = t / nb, b = t % nb, c0 = b * kBlock;
      part[static_cast<size_t>(t)] = row_sum_f64(x + r * cols + c0, std::min(kBlock, cols - c0));
    }
    for (int64_t r = 0; r < rows; ++r) {
      double s = 0;
      for (int64_t b = 0; b < nb; ++b) s += part[static_cast<size_t>(r * nb + b)];
      out[r] = static_cast<T>(s);
    }
    return;
  }
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
  for (int64_t r = 0; r < rows; ++r) out[r] = row_sum(x + r * cols, cols);
}

// x viewed as [rows, cols] contiguous: out[c] = sum_r x[r, c].
template <typename T>
void sum_cols(const T* x, T* out, int64_t rows, int64_t cols) {
  const int64_t block = 256;
  const int64_t nblocks = (cols + block - 1) / block;
#pragma omp parallel for schedule(static) if (rows * cols > (1 << 15))
  for (int64_t b = 0; b < nblocks; ++b) {
    const int64_t c0 = b * block, c1 = std::min(cols, c0 + block);
    T acc[256];
    for (int64_t c = c0; c < c1; ++c) acc[c - c0] = 0;
    for (int64_t r = 0; r < rows; ++r) {
      const T* p = x + r * cols;
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += p[c];
    }
    for (int64_t c = c0; c < c1; ++c) out[c] = acc[c - c0];
  }
}

// Sum of x over `dims` (sorted, distinct), result with reduced dims removed. Not recorded.
Tensor sum_impl(const Tensor& x, const std::vector<int64_t>& dims) {
  const int64_t nd = x.dim();
  Shape out_shape;
  std::vector<bool> reduced(nd, false);
  for (int64_t d : dims) reduced[d] = true;
  for (int64_t d = 0; d < nd; ++d)
    if (!reduced[d]) out_shape.push_back(x.shape()[d]);
  Tensor out = Tensor::empty(out_shape, x.dtype());
  const int64_t n_out = out.numel();
  const int64_t n_red = n_out == 0 ? 0 : x.numel() / std::max<int64_t>(n_out, 1);
  // Leading dims reduced (and x contiguous): column sums.
  bool leading = x.is_contiguous();
  for (int64_t d = 0; d < nd && leading; ++d)
    if (reduced[d] != (d < static_cast<int64_t>(dims.size()))) leading = false;
  leading = leading && n_out > 1;  // a full reduction is one long row
  Tensor xd = x.detach();
  Tensor rows;
  if (!leading) {  // permute reduced dims to the end, then sum contiguous rows
    std::vector<int64_t> perm;
    for (int64_t d = 0; d < nd; ++d)
      if (!reduced[d]) perm.push_back(d);
    for (int64_t d : dims) perm.push_back(d);
    rows = xd.permute(perm).contiguous();
  }
  auto run = [&](auto* o, auto tag) {
    using T = decltype(tag);
    if (n_out == 0) return;
    if (n_red == 0) {
      for (int64_t i = 0; i < n_out; ++i) o[i] = 0;
    } else if (leading) {
      sum_cols<T>(xd.data<T>(), o, n_red, n_out);
    } else {
      sum_rows<T>(rows.data<T>(), o, n_out, n_red);
    }
  };
  if (x.dtype() == DType::f32)
    run(out.data<float>(), float{});
  else
    run(out.data<double>(), double{});
  return out;
}

void check_float(const Tensor& x, const char* op) {
  MLM_CHECK(x.defined(), ValueError, "[", op, "] undefined input");
  MLM_CHECK(x.dtype() == DType::f32 || x.dtype() == DType::f64, DTypeError, "[", op,
            "] expected f32 or f64, got ", x.str());
}

Shape keep_shape(const Tensor& x, const std::vector<int64_t>& dims) {
  Shape s = x.shape();
  for (int64_t d : dims) s[d] = 1;
  return s;
}

}  // namespace

Tensor sum(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_float(x, "sum");
  std::vector<int64_t> dims = normalize_dims(x, dims_in, "sum");
  Tensor out = sum_impl(x, dims);
  Shape kshape = keep_shape(x, dims);
  if (keepdim) out = out.reshape(kshape);
  Shape in_shape = x.shape();
  return autograd::record("sum", out, {x},
                          [in_shape, kshape](const Tensor& g, const std::vector<bool>&) {
                            return std::vector<Tensor>{g.reshape(kshape).expand(in_shape)};
                          });
}

Tensor mean(const Tensor& x, const std::vector<int64_t>& dims_in, bool keepdim) {
  check_float(x, "mean");
  std::vector<int64_t> dims = normalize_dims(x, dims_in, "mean");
  int64_t count = 1;
  for (int64_t d : dims) count *= x.shape()[d];
  MLM_CHECK(count > 0, ShapeError, "[mean] mean over an empty dim of ", x.str());
  return mul(sum(x, dims, keepdim), 1.0 / static_cast<double>(count));
}

Tensor max(const Tensor& x, int64_t dim, bool keepdim) {
  check_float(x, "max");
  std::vector<int64_t> dims = normalize_dims(x, {dim}, "max");
  const int64_t d = dims[0];
  const int64_t n = x.shape()[d];
  MLM_CHECK(n > 0, ShapeError, "[max] max over an empty dim of ", x.str());
  std::vector<int64_t> perm;
  for (int64_t i = 0; i < x.dim(); ++i)
    if (i != d) perm.push_back(i);
  perm.push_back(d);
  Tensor rows = x.detach().permute(perm).contiguous();
  Shape out_shape = x.shape();
  out_shape.erase(out_shape.begin() + d);
  Tensor out = Tensor::empty(out_shape, x.dtype());
  const int64_t n_out = out.numel();
  auto idx = std::make_shared<std::vector<int64_t>>(n_out);
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* p = rows.data<T>();
    T* o = out.data<T>();
#pragma omp parallel for schedule(static) if (n_out * n > (1 << 16))
    for (int64_t r = 0; r < n_out; ++r) {
      const T* row = p + r * n;
      int64_t best = 0;
      for (int64_t i = 1; i < n; ++i)
        if (row[i] > row[best] || (row[i] != row[i] && row[best] == row[best])) best = i;
      o[r] = row[best];
      (*idx)[r] = best;
    }
  };
  if (x.dtype() == DType::f32)
    run(float{});
  else
    run(double{});
  Shape kshape = keep_shape(x, dims);
  if (keepdim) out = out.reshape(kshape);
  Shape in_shape = x.shape();
  DType dt = x.dtype();
  return autograd::record(
      "max", out, {x}, [=](const Tensor& g, const std::vector<bool>&) {
        Tensor gr = Tensor::zeros([&] {
          Shape s;
          for (int64_t i : perm) s.push_back(in_shape[i]);
          return s;
        }(), dt);
        Tensor gc = g.contiguous();
        auto scatter = [&](auto tag) {
          using T = decltype(tag);
          T* o = gr.data<T>();
          const T* gp = gc.data<T>();
          for (int64_t r = 0; r < n_out; ++r) o[r * n + (*idx)[r]] = gp[r];
        };
        if (dt == DType::f32)
          scatter(float{});
        else
          scatter(double{});
        std::vector<int64_t> inv(perm.size());
        for (size_t i = 0; i < perm.size(); ++i) inv[perm[i]] = static_cast<int64_t>(i);
        return std::vector<Tensor>{gr.permute(inv)};
      });
}

Tensor argmax(const Tensor& x) {
  check_float(x, "argmax");
  MLM_CHECK(x.dim() >= 1 && x.size(-1) > 0, ShapeError, "[argmax] needs a non-empty last dim, got ",
            x.str());
  Tensor xc = x.detach().contiguous();
  const int64_t n = x.size(-1), rows = x.numel() / n;
  Shape s = x.shape();
  s.pop_back();
  Tensor out = Tensor::empty(s, DType::i64);
  int64_t* o = out.data<int64_t>();
  auto run = [&](auto tag) {
    using T = decltype(tag);
    const T* p = xc.data<T>();
#pragma omp parallel for schedule(static) if (rows * n > (1 << 16))
    for (int64_t r = 0; r < rows; ++r) {
      const T* row = p + r * n;
      int64_t best = 0;
      // As max(): the first NaN wins (NaN > x is false, so test for it explicitly).
      for (int64_t i = 1; i < n; ++i)
        if (row[i] > row[best] || (row[i] != row[i] && row[best] == row[best])) best = i;
      o[r] = best;
    }
  };
  if (x.dtype() == DType::f32)
    run(float{});
  else
    run(double{});
  return out;
}

Tensor sum_to_shape(const Tensor& g, const Shape& shape) {
  MLM_CHECK(g.defined(), ValueError, "[sum_to_shape] undefined input");
  if (g.shape() == shape) return g;
  const int64_t nd = g.dim(), lead = nd - static_cast<int64_t>(shape.size());
  MLM_CHECK(lead >= 0, ShapeError, "[sum_to_shape] cannot reduce ", g.str(), " to ",
            shape_str(shape));
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < nd; ++d) {
    // shape must be a broadcast source of g: each kept dim equal, or 1.
    const bool ok = d < lead || shape[d - lead] == g.shape()[d] || shape[d - lead] == 1;
    MLM_CHECK(ok, ShapeError, "[sum_to_shape] cannot reduce ", g.str(), " to ", shape_str(shape));
    if (d < lead || (shape[d - lead] == 1 && g.shape()[d] != 1)) dims.push_back(d);
  }
  Tensor s = dims.empty() ? g : sum_impl(g, dims);
  return s.reshape(shape);
}

}  // namespace metalm::ops
