// The differentiable view and copy methods of Tensor: reshape, permute, slice, expand, ...
// Views share storage; their backward maps the gradient back to the input's geometry.
#include "metalm/autograd/autograd.h"
#include "metalm/ops/reduce.h"

namespace metalm {
namespace {

int64_t wrap_dim(int64_t d, int64_t nd, const char* op) {
  int64_t w = d < 0 ? d + nd : d;
  MLM_CHECK(w >= 0 && w < nd, ShapeError, "[", op, "] dim ", d, " out of range for ", nd, " dims");
  return w;
}

// Strides for viewing t with `shape` without copying, or empty if impossible.
Shape view_strides(const Tensor& t, const Shape& shape) {
  if (t.is_contiguous()) return contiguous_strides(shape);
  // General case: match groups of old dims to groups of new dims (as torch's computeStride).
  const Shape& os = t.shape();
  const Shape& ost = t.strides();
  Shape st(shape.size());
  int64_t view_d = static_cast<int64_t>(shape.size()) - 1;
  int64_t chunk_base_stride = ost.empty() ? 1 : ost.back();
  int64_t tensor_numel = 1, view_numel = 1;
  for (int64_t td = static_cast<int64_t>(os.size()) - 1; td >= 0; --td) {
    tensor_numel *= os[td];
    if (td == 0 || (os[td - 1] != 1 && ost[td - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        st[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        --view_d;
      }
      if (view_numel != tensor_numel) return {};
      if (td > 0) {
        chunk_base_stride = ost[td - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  if (view_d != -1) return {};
  return st;
}

}  // namespace

Tensor Tensor::reshape(const Shape& shape_in) const {
  Shape shape = shape_in;
  int64_t infer = -1, known = 1;
  bool overflow = false, has_zero = false;
  for (size_t i = 0; i < shape.size(); ++i) {
    if (shape[i] == -1) {
      MLM_CHECK(infer < 0, ShapeError, "[reshape] more than one -1 in ", shape_str(shape_in));
      infer = static_cast<int64_t>(i);
    } else {
      MLM_CHECK(shape[i] >= 0, ShapeError, "[reshape] bad size in ", shape_str(shape_in));
      has_zero = has_zero || shape[i] == 0;
      overflow = overflow || __builtin_mul_overflow(known, shape[i], &known);
    }
  }
  if (has_zero) known = 0;
  // A product past 2^63 cannot equal any tensor's numel.
  MLM_CHECK(!overflow || has_zero, ShapeError, "[reshape] cannot reshape ", str(), " to ",
            shape_str(shape_in));
  if (infer >= 0) {
    MLM_CHECK(known > 0 && numel() % known == 0, ShapeError, "[reshape] cannot reshape ", str(),
              " to ", shape_str(shape_in));
    shape[infer] = numel() / known;
  }
  MLM_CHECK(shape_numel(shape) == numel(), ShapeError, "[reshape] cannot reshape ", str(), " to ",
            shape_str(shape_in));
  Shape st = view_strides(*this, shape);
  // The copy is made from a detached view: this node is the one that records the reshape.
  Tensor out = st.empty() && !shape.empty() ? detach().contiguous().reshape(shape)
                                            : make_view(*this, shape, st, impl().offset);
  Shape in_shape = this->shape();
  return autograd::record("reshape", out, {*this},
                          [in_shape](const Tensor& g, const std::vector<bool>&) {
                            return std::vector<Tensor>{g.reshape(in_shape)};
                          });
}

Tensor Tensor::permute(const std::vector<int64_t>& dims) const {
  const int64_t nd = dim();
  MLM_CHECK(static_cast<int64_t>(dims.size()) == nd, ShapeError, "[permute] got ", dims.size(),
            " dims for ", str());
  Shape sh(nd), st(nd);
  std::vector<int64_t> inverse(nd, -1);
  for (int64_t i = 0; i < nd; ++i) {
    int64_t d = wrap_dim(dims[i], nd, "permute");
    MLM_CHECK(inverse[d] < 0, ShapeError, "[permute] repeated dim ", dims[i]);
    inverse[d] = i;
    sh[i] = shape()[d];
    st[i] = strides()[d];
  }
  Tensor out = make_view(*this, sh, st, impl().offset);
  return autograd::record("permute", out, {*this},
                          [inverse](const Tensor& g, const std::vector<bool>&) {
                            return std::vector<Tensor>{g.permute(inverse)};
                          });
}

Tensor Tensor::transpose(int64_t d0, int64_t d1) const {
  const int64_t nd = dim();
  std::vector<int64_t> dims(nd);
  for (int64_t i = 0; i < nd; ++i) dims[i] = i;
  std::swap(dims[wrap_dim(d0, nd, "transpose")], dims[wrap_dim(d1, nd, "transpose")]);
  return permute(dims);
}

Tensor Tensor::slice(int64_t dim_in, int64_t start, int64_t end) const {
  const int64_t d = wrap_dim(dim_in, dim(), "slice");
  const int64_t n = shape()[d];
  if (start < 0) start += n;
  if (end < 0) end += n;
  end = std::min(end, n);
  MLM_CHECK(start >= 0 && start <= end, ShapeError, "[slice] bad range [", start, ", ", end,
            ") for dim ", dim_in, " of ", str());
  Shape sh = shape();
  sh[d] = end - start;
  Tensor out = make_view(*this, sh, strides(), impl().offset + start * strides()[d]);
  Shape in_shape = shape();
  DType dt = dtype();
  return autograd::record("slice", out, {*this},
                          [in_shape, dt, d, start, end](const Tensor& g, const std::vector<bool>&) {
                            Tensor full = Tensor::zeros(in_shape, dt);
                            copy_into(full.slice(d, start, end), g);
                            return std::vector<Tensor>{full};
                          });
}

Tensor Tensor::expand(const Shape& shape_in) const {
  const int64_t nd = static_cast<int64_t>(shape_in.size());
  MLM_CHECK(nd >= dim(), ShapeError, "[expand] cannot expand ", str(), " to ", shape_str(shape_in));
  Shape sh(nd), st(nd);
  const int64_t lead = nd - dim();
  for (int64_t i = 0; i < nd; ++i) {
    int64_t want = shape_in[i];
    if (i < lead) {
      MLM_CHECK(want >= 0, ShapeError, "[expand] bad size in ", shape_str(shape_in));
      sh[i] = want;
      st[i] = 0;
      continue;
    }
    int64_t have = shape()[i - lead];
    if (want == -1) want = have;
    MLM_CHECK(want >= 0 && (have == want || have == 1), ShapeError, "[expand] cannot expand ",
              str(), " to ", shape_str(shape_in));
    sh[i] = want;
    st[i] = (have == want) ? strides()[i - lead] : 0;
  }
  shape_numel(sh);  // throws if the view would have more than 2^63 elements
  Tensor out = make_view(*this, sh, st, impl().offset);
  Shape in_shape = shape();
  return autograd::record("expand", out, {*this},
                          [in_shape](const Tensor& g, const std::vector<bool>&) {
                            return std::vector<Tensor>{ops::sum_to_shape(g, in_shape)};
                          });
}

Tensor Tensor::unsqueeze(int64_t d) const {
  const int64_t nd = dim() + 1;
  int64_t w = d < 0 ? d + nd : d;
  MLM_CHECK(w >= 0 && w < nd, ShapeError, "[unsqueeze] dim ", d, " out of range for ", str());
  Shape sh = shape();
  sh.insert(sh.begin() + w, 1);
  return reshape(sh);
}

Tensor Tensor::squeeze(int64_t d) const {
  int64_t w = wrap_dim(d, dim(), "squeeze");
  MLM_CHECK(shape()[w] == 1, ShapeError, "[squeeze] dim ", d, " of ", str(), " is not 1");
  Shape sh = shape();
  sh.erase(sh.begin() + w);
  return reshape(sh);
}

Tensor Tensor::contiguous() const {
  if (is_contiguous()) return *this;
  return clone();
}

Tensor Tensor::clone() const {
  Tensor out = Tensor::empty(shape(), dtype());
  copy_into(out, *this);
  return autograd::record("clone", out, {*this}, [](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g};
  });
}

Tensor Tensor::to(DType dt) const {
  if (dt == dtype()) return *this;
  Tensor out = Tensor::empty(shape(), dt);
  copy_into(out, *this);
  if (!dtype_is_float(dt)) return out;
  DType in_dt = dtype();
  return autograd::record("to", out, {*this}, [in_dt](const Tensor& g, const std::vector<bool>&) {
    return std::vector<Tensor>{g.to(in_dt)};
  });
}

}  // namespace metalm
