// Row lookups and row scatter (embedding, gather_rows, scatter_rows, masked_scatter_rows): plain
// row copies of any dtype; hand-written since they are memcpy loops plus a deterministic backward.
#include "metalm/ops/index.h"

#include <omp.h>

#include <cstring>
#include <vector>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/matmul.h"

namespace metalm::ops {
namespace {

// Element `flat` of a row-major tensor of `shape`, as a multi-index: "[1, 4]".
std::string position_str(const Shape& shape, int64_t flat) {
  Shape pos(shape.size());
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    pos[d] = shape[d] == 0 ? 0 : flat % shape[d];
    flat = shape[d] == 0 ? 0 : flat / shape[d];
  }
  return shape_str(pos);
}

// An index tensor (i64 or i32) as a contiguous i64 tensor with no autograd history.
Tensor as_index(const Tensor& ids, const char* op, const char* what) {
  MLM_CHECK(ids.defined(), ValueError, "[", op, "] undefined ", what);
  MLM_CHECK(ids.dtype() == DType::i64 || ids.dtype() == DType::i32, DTypeError, "[", op, "] ", what,
            " must be i64 or i32, got ", ids.str());
  // A private copy: the backward must not see later writes to the caller's ids.
  Tensor t = ids.detach();
  return t.dtype() == DType::i64 ? t.clone() : t.to(DType::i64).contiguous();
}

// Throws ValueError naming the first entry of index (contiguous i64 of `shape`) outside [0, n).
void check_in_range(const Tensor& index, const Shape& shape, int64_t n, const char* op,
                    const char* what) {
  const int64_t* p = index.data<int64_t>();
  const int64_t m = index.numel();
  for (int64_t i = 0; i < m; ++i)
    MLM_CHECK(p[i] >= 0 && p[i] < n, ValueError, "[", op, "] ", what, " ", p[i], " at position ",
              position_str(shape, i), " is out of range for ", n, " rows");
}

// dst row i = src row index[i], rows of row_bytes bytes. dst: [M, row], src: [N, row].
void gather_row_bytes(char* dst, const char* src, const int64_t* index, int64_t m,
                      size_t row_bytes) {
  if (row_bytes == 0) return;
  const bool big = static_cast<size_t>(m) * row_bytes > (size_t{1} << 18);
#pragma omp parallel for schedule(static) if (big && !omp_in_parallel())
  for (int64_t i = 0; i < m; ++i)
    std::memcpy(dst + static_cast<size_t>(i) * row_bytes,
                src + static_cast<size_t>(index[i]) * row_bytes, row_bytes);
}

// dst row index[i] = src row i (index distinct). dst: [N, row], src: [M, row].
void scatter_row_bytes(char* dst, const char* src, const int64_t* index, int64_t m,
                       size_t row_bytes) {
  if (row_bytes == 0) return;
  const bool big = static_cast<size_t>(m) * row_bytes > (size_t{1} << 18);
#pragma omp parallel for schedule(static) if (big && !omp_in_parallel())
  for (int64_t i = 0; i < m; ++i)
    std::memcpy(dst + static_cast<size_t>(index[i]) * row_bytes,
                src + static_cast<size_t>(i) * row_bytes, row_bytes);
}

// Reference: dst[index[i], :] += src[i, :] for i = 0 .. M-1 in order, skipping index == skip.
// dst: [N, C] (accumulates), index: [M], src: [M, C].
template <typename T>
void index_add_rows_reference(T* dst, const int64_t* index, int64_t m, const T* src, int64_t c,
                              int64_t skip) {
  for (int64_t i = 0; i < m; ++i) {
    if (index[i] == skip) continue;
    T* d = dst + index[i] * c;
    const T* s = src + i * c;
    for (int64_t j = 0; j < c; ++j) d[j] += s[j];
  }
}

// Same result bit for bit, in parallel without races: a stable counting sort buckets the source
// rows by target row, then each target row (owned by one thread) sums its bucket in increasing i,
// the reference's order. The result does not depend on the thread count.
template <typename T>
void index_add_rows(T* dst, int64_t n, const int64_t* index, int64_t m, const T* src, int64_t c,
                    int64_t skip) {
  if (use_reference() || m * c < (1 << 15) || omp_in_parallel()) {
    index_add_rows_reference(dst, index, m, src, c, skip);
    return;
  }
  std::vector<int64_t> start(static_cast<size_t>(n) + 1, 0);
  for (int64_t i = 0; i < m; ++i)
    if (index[i] != skip) ++start[index[i] + 1];
  std::vector<int64_t> targets;  // rows that receive at least one source row
  for (int64_t v = 0; v < n; ++v) {
    if (start[v + 1] > 0) targets.push_back(v);
    start[v + 1] += start[v];
  }
  std::vector<int64_t> order(static_cast<size_t>(start[n]));
  std::vector<int64_t> fill(start.begin(), start.end() - 1);
  for (int64_t i = 0; i < m; ++i)
    if (index[i] != skip) order[fill[index[i]]++] = i;
  const int64_t nt = static_cast<int64_t>(targets.size());
#pragma omp parallel for schedule(dynamic, 16)
  for (int64_t k = 0; k < nt; ++k) {
    const int64_t v = targets[k];
    T* d = dst + v * c;
    for (int64_t o = start[v]; o < start[v + 1]; ++o) {
      const T* s = src + order[o] * c;
      for (int64_t j = 0; j < c; ++j) d[j] += s[j];
    }
  }
}

// Gradient of a row gather: zeros [n, C] with rows of g [M, C] added at index (skipping `skip`).
Tensor index_add_grad(const Tensor& g, const Tensor& index, int64_t n, int64_t c, int64_t skip) {
  Tensor gc = g.contiguous().reshape({index.numel(), c});
  Tensor out = Tensor::zeros({n, c}, g.dtype());
  const int64_t* ip = index.data<int64_t>();
  const int64_t m = index.numel();
  if (g.dtype() == DType::f32)
    index_add_rows(out.data<float>(), n, ip, m, gc.data<float>(), c, skip);
  else if (g.dtype() == DType::f64)
    index_add_rows(out.data<double>(), n, ip, m, gc.data<double>(), c, skip);
  else
    throw DTypeError(detail::cat("[index_add] no gradient for ", g.str()));
  return out;
}

// out[..., :] = table[index[...], :]. table: [N, C], index: valid i64 [...] -> [..., C].
// Records `op` with the scatter-add backward (rows equal to skip get no gradient).
Tensor gather_impl(const char* op, const Tensor& table, const Tensor& index, int64_t skip) {
  const int64_t n = table.size(0), c = table.size(1);
  Shape out_shape = index.shape();
  out_shape.push_back(c);
  Tensor out = Tensor::empty(out_shape, table.dtype());
  Tensor tc = table.detach().contiguous();
  const size_t row_bytes = static_cast<size_t>(c) * dtype_size(table.dtype());
  gather_row_bytes(static_cast<char*>(out.raw_data()), static_cast<const char*>(tc.raw_data()),
                   index.data<int64_t>(), index.numel(), row_bytes);
  return autograd::record(op, out, {table},
                          [index, n, c, skip](const Tensor& g, const std::vector<bool>&) {
                            return std::vector<Tensor>{index_add_grad(g, index, n, c, skip)};
                          });
}

// out = x with out[index[i]] = src[i]. x: [N, C], index: valid distinct i64 [M], src: [M, C].
Tensor scatter_impl(const char* op, const Tensor& x, const Tensor& index, const Tensor& src) {
  const int64_t n = x.size(0), c = x.size(1);
  const size_t row_bytes = static_cast<size_t>(c) * dtype_size(x.dtype());
  Tensor out = Tensor::empty(x.shape(), x.dtype());
  copy_into(out, x.detach());
  Tensor sc = src.detach().contiguous();
  scatter_row_bytes(static_cast<char*>(out.raw_data()), static_cast<const char*>(sc.raw_data()),
                    index.data<int64_t>(), index.numel(), row_bytes);
  return autograd::record(
      op, out, {x, src}, [index, n, c, row_bytes](const Tensor& g, const std::vector<bool>& needs) {
        Tensor gc = g.contiguous();
        const int64_t* ip = index.data<int64_t>();
        const int64_t m = index.numel();
        Tensor gx, gsrc;
        if (needs[0]) {  // g with the overwritten rows zeroed
          gx = Tensor::empty({n, c}, g.dtype());
          copy_into(gx, gc);
          char* p = static_cast<char*>(gx.raw_data());
          for (int64_t i = 0; i < m; ++i)
            std::memset(p + static_cast<size_t>(ip[i]) * row_bytes, 0, row_bytes);
        }
        if (needs[1]) {  // g[index]
          gsrc = Tensor::empty({m, c}, g.dtype());
          gather_row_bytes(static_cast<char*>(gsrc.raw_data()),
                           static_cast<const char*>(gc.raw_data()), ip, m, row_bytes);
        }
        return std::vector<Tensor>{gx, gsrc};
      });
}

}  // namespace

Tensor embedding(const Tensor& weight, const Tensor& ids, int64_t padding_idx) {
  MLM_CHECK(weight.defined(), ValueError, "[embedding] undefined weight");
  MLM_CHECK(weight.dim() == 2, ShapeError, "[embedding] weight must be [V, C], got ", weight.str());
  const int64_t v = weight.size(0);
  MLM_CHECK(padding_idx < v, ValueError, "[embedding] padding_idx ", padding_idx,
            " is out of range for ", v, " rows");
  Tensor index = as_index(ids, "embedding", "ids");
  check_in_range(index, ids.shape(), v, "embedding", "id");
  Tensor rows = gather_impl("embedding", weight, index, padding_idx < 0 ? -1 : padding_idx);
  // A table stored as bf16 (nn::store_weights) gives f32 rows: only the rows read are widened.
  return weight.dtype() == DType::bf16 ? rows.to(DType::f32) : rows;
}

Tensor gather_rows(const Tensor& x, const Tensor& index_in) {
  MLM_CHECK(x.defined(), ValueError, "[gather_rows] undefined input");
  MLM_CHECK(x.dim() >= 1, ShapeError, "[gather_rows] x must have a row dimension, got ", x.str());
  Tensor index = as_index(index_in, "gather_rows", "index");
  MLM_CHECK(index.dim() == 1, ShapeError, "[gather_rows] index must be [M], got ", index_in.str());
  check_in_range(index, index.shape(), x.size(0), "gather_rows", "index");
  if (x.dim() == 2) return gather_impl("gather_rows", x, index, -1);
  // Any other rank: rows of the flattened trailing dims, then the trailing shape back.
  Shape out_shape = x.shape();
  out_shape[0] = index.size(0);
  const int64_t row = shape_numel(Shape(x.shape().begin() + 1, x.shape().end()));
  return gather_impl("gather_rows", x.reshape({x.size(0), row}), index, -1).reshape(out_shape);
}

Tensor scatter_rows(const Tensor& x, const Tensor& index_in, const Tensor& src) {
  MLM_CHECK(x.defined() && src.defined(), ValueError, "[scatter_rows] undefined input");
  MLM_CHECK(x.dim() == 2, ShapeError, "[scatter_rows] x must be [N, C], got ", x.str());
  Tensor index = as_index(index_in, "scatter_rows", "index");
  MLM_CHECK(index.dim() == 1, ShapeError, "[scatter_rows] index must be [M], got ", index_in.str());
  MLM_CHECK(src.dim() == 2 && src.size(0) == index.size(0) && src.size(1) == x.size(1), ShapeError,
            "[scatter_rows] src must be [", index.size(0), ", ", x.size(1), "], got ", src.str());
  MLM_CHECK(src.dtype() == x.dtype(), DTypeError, "[scatter_rows] dtypes differ: x ", x.str(),
            ", src ", src.str());
  const int64_t n = x.size(0);
  check_in_range(index, index.shape(), n, "scatter_rows", "index");
  std::vector<int64_t> first(static_cast<size_t>(n), -1);
  const int64_t* ip = index.data<int64_t>();
  for (int64_t i = 0; i < index.numel(); ++i) {
    MLM_CHECK(first[ip[i]] < 0, ValueError, "[scatter_rows] index ", ip[i],
              " appears twice (positions ", first[ip[i]], " and ", i, ")");
    first[ip[i]] = i;
  }
  return scatter_impl("scatter_rows", x, index, src);
}

Tensor masked_scatter_rows(const Tensor& x, const Tensor& mask, const Tensor& src) {
  MLM_CHECK(x.defined() && mask.defined() && src.defined(), ValueError,
            "[masked_scatter_rows] undefined input");
  MLM_CHECK(x.dim() == 3, ShapeError, "[masked_scatter_rows] x must be [B, T, C], got ", x.str());
  MLM_CHECK(mask.dtype() == DType::u8, DTypeError, "[masked_scatter_rows] mask must be u8, got ",
            mask.str());
  const int64_t b = x.size(0), t = x.size(1), c = x.size(2);
  MLM_CHECK(mask.shape() == (Shape{b, t}), ShapeError, "[masked_scatter_rows] mask ", mask.str(),
            " does not match x ", x.str());
  Tensor index = mask_to_index(mask);
  MLM_CHECK(src.dim() == 2 && src.size(1) == c, ShapeError,
            "[masked_scatter_rows] src must be [count, ", c, "], got ", src.str());
  MLM_CHECK(src.size(0) == index.numel(), ShapeError, "[masked_scatter_rows] mask has ",
            index.numel(), " nonzero entries but src has ", src.size(0), " rows");
  MLM_CHECK(src.dtype() == x.dtype(), DTypeError, "[masked_scatter_rows] dtypes differ: x ",
            x.str(), ", src ", src.str());
  return scatter_impl("masked_scatter_rows", x.reshape({b * t, c}), index, src).reshape({b, t, c});
}

Tensor mask_to_index(const Tensor& mask) {
  MLM_CHECK(mask.defined(), ValueError, "[mask_to_index] undefined mask");
  MLM_CHECK(mask.dtype() == DType::u8, DTypeError, "[mask_to_index] mask must be u8, got ",
            mask.str());
  Tensor mc = mask.detach().contiguous();
  const uint8_t* p = mc.data<uint8_t>();
  const int64_t n = mc.numel();
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i) count += p[i] != 0;
  Tensor out = Tensor::empty({count}, DType::i64);
  int64_t* o = out.data<int64_t>();
  for (int64_t i = 0, k = 0; i < n; ++i)
    if (p[i] != 0) o[k++] = i;
  return out;
}

}  // namespace metalm::ops
