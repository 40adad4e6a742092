// Tensor storage, factories, element access and the strided copy every layout change uses.
#include "metalm/core/tensor.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <sstream>

#include "core/strided.h"
#include "metalm/autograd/autograd.h"
#include "metalm/core/allocator.h"

namespace metalm {

// ---------------------------------------------------------------- dtype

size_t dtype_size(DType dtype) {
  switch (dtype) {
    case DType::f32: return 4;
    case DType::f64: return 8;
    case DType::bf16: return 2;
    case DType::i32: return 4;
    case DType::i64: return 8;
    case DType::u8: return 1;
  }
  return 0;
}

const char* dtype_name(DType dtype) {
  switch (dtype) {
    case DType::f32: return "f32";
    case DType::f64: return "f64";
    case DType::bf16: return "bf16";
    case DType::i32: return "i32";
    case DType::i64: return "i64";
    case DType::u8: return "u8";
  }
  return "?";
}

bool dtype_is_float(DType dtype) {
  return dtype == DType::f32 || dtype == DType::f64 || dtype == DType::bf16;
}

// ---------------------------------------------------------------- shapes

int64_t shape_numel(const Shape& shape) {
  // A wrapped product would make empty() allocate a few bytes for a tensor that claims 2^80
  // elements; throw instead. A zero size makes the product 0 whatever the other sizes are.
  int64_t n = 1;
  bool overflow = false;
  for (int64_t s : shape) {
    if (s == 0) return 0;
    overflow = overflow || __builtin_mul_overflow(n, s, &n);
  }
  MLM_CHECK(!overflow, ShapeError, "[shape] ", shape_str(shape), " has more than 2^63 elements");
  return n;
}

Shape contiguous_strides(const Shape& shape) {
  Shape st(shape.size());
  int64_t s = 1;
  for (int64_t d = static_cast<int64_t>(shape.size()) - 1; d >= 0; --d) {
    st[d] = s;
    s *= shape[d];
  }
  return st;
}

std::string shape_str(const Shape& shape) {
  std::ostringstream os;
  os << '[';
  for (size_t i = 0; i < shape.size(); ++i) os << (i ? ", " : "") << shape[i];
  os << ']';
  return os.str();
}

// ---------------------------------------------------------------- storage

Storage::Storage(size_t nbytes) : data(memory_allocate(nbytes)), bytes(nbytes) {}
Storage::~Storage() { memory_release(data, bytes); }

// ---------------------------------------------------------------- factories

Tensor Tensor::empty(const Shape& shape, DType dtype) {
  for (int64_t s : shape)
    MLM_CHECK(s >= 0, ShapeError, "[empty] negative size in shape ", shape_str(shape));
  const int64_t n = shape_numel(shape);
  const int64_t esize = static_cast<int64_t>(dtype_size(dtype));
  MLM_CHECK(esize > 0, DTypeError, "[empty] unknown dtype ", static_cast<int>(dtype));
  MLM_CHECK(n <= std::numeric_limits<int64_t>::max() / esize, ShapeError, "[empty] ",
            dtype_name(dtype), shape_str(shape), " needs more than 2^63 bytes");
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = std::make_shared<Storage>(static_cast<size_t>(n * esize));
  impl->shape = shape;
  impl->strides = contiguous_strides(shape);
  impl->dtype = dtype;
  return Tensor(std::move(impl));
}

namespace {
template <typename T>
void fill_typed(void* p, int64_t n, T v) {
  T* q = static_cast<T*>(p);
  for (int64_t i = 0; i < n; ++i) q[i] = v;
}

void fill_value(const Tensor& t, double value) {
  void* p = t.raw_data();
  int64_t n = t.numel();
  switch (t.dtype()) {
    case DType::f32: fill_typed<float>(p, n, static_cast<float>(value)); break;
    case DType::f64: fill_typed<double>(p, n, value); break;
    case DType::bf16: fill_typed<bf16>(p, n, f32_to_bf16(static_cast<float>(value))); break;
    case DType::i32: fill_typed<int32_t>(p, n, saturating_cast<int32_t>(value)); break;
    case DType::i64: fill_typed<int64_t>(p, n, saturating_cast<int64_t>(value)); break;
    case DType::u8: fill_typed<uint8_t>(p, n, saturating_cast<uint8_t>(value)); break;
  }
}
}  // namespace

Tensor Tensor::zeros(const Shape& shape, DType dtype) {
  Tensor t = empty(shape, dtype);
  std::memset(t.raw_data(), 0, t.nbytes());
  return t;
}

Tensor Tensor::ones(const Shape& shape, DType dtype) { return full(shape, 1.0, dtype); }

Tensor Tensor::full(const Shape& shape, double value, DType dtype) {
  Tensor t = empty(shape, dtype);
  fill_value(t, value);
  return t;
}

Tensor Tensor::scalar(double value, DType dtype) { return full({}, value, dtype); }

Tensor Tensor::arange(int64_t n, DType dtype) {
  MLM_CHECK(n >= 0, ValueError, "[arange] negative length ", n);
  Tensor t = empty({n}, DType::f64);
  double* p = t.data<double>();
  for (int64_t i = 0; i < n; ++i) p[i] = static_cast<double>(i);
  return dtype == DType::f64 ? t : t.to(dtype);
}

template <typename T>
Tensor Tensor::from_vector(const Shape& shape, const std::vector<T>& values) {
  MLM_CHECK(shape_numel(shape) == static_cast<int64_t>(values.size()), ShapeError,
            "[from_vector] shape ", shape_str(shape), " needs ", shape_numel(shape),
            " values, got ", values.size());
  Tensor t = empty(shape, dtype_of<T>());
  if (!values.empty()) std::memcpy(t.raw_data(), values.data(), values.size() * sizeof(T));
  return t;
}
template Tensor Tensor::from_vector(const Shape&, const std::vector<float>&);
template Tensor Tensor::from_vector(const Shape&, const std::vector<double>&);
template Tensor Tensor::from_vector(const Shape&, const std::vector<bf16>&);
template Tensor Tensor::from_vector(const Shape&, const std::vector<int32_t>&);
template Tensor Tensor::from_vector(const Shape&, const std::vector<int64_t>&);
template Tensor Tensor::from_vector(const Shape&, const std::vector<uint8_t>&);

// ---------------------------------------------------------------- info and access

TensorImpl& Tensor::impl() const {
  MLM_CHECK(impl_ != nullptr, ValueError, "[tensor] use of an undefined tensor");
  return *impl_;
}

int64_t Tensor::size(int64_t d) const {
  int64_t nd = dim();
  int64_t dd = d < 0 ? d + nd : d;
  MLM_CHECK(dd >= 0 && dd < nd, ShapeError, "[size] dim ", d, " out of range for ", str());
  return shape()[dd];
}

bool Tensor::is_contiguous() const {
  const TensorImpl& t = impl();
  int64_t s = 1;
  for (int64_t d = static_cast<int64_t>(t.shape.size()) - 1; d >= 0; --d) {
    if (t.shape[d] != 1 && t.strides[d] != s) return false;
    s *= t.shape[d];
  }
  return true;
}

std::string Tensor::str() const {
  if (!defined()) return "undefined";
  return std::string(dtype_name(dtype())) + shape_str(shape());
}

void* Tensor::raw_data() const {
  const TensorImpl& t = impl();
  return static_cast<char*>(t.storage->data) + t.offset * static_cast<int64_t>(dtype_size(t.dtype));
}

template <typename T>
T* Tensor::data() const {
  MLM_CHECK(dtype() == dtype_of<T>(), DTypeError, "[data] tensor is ", dtype_name(dtype()),
            ", asked for ", dtype_name(dtype_of<T>()));
  return static_cast<T*>(raw_data());
}
template float* Tensor::data<float>() const;
template double* Tensor::data<double>() const;
template bf16* Tensor::data<bf16>() const;
template int32_t* Tensor::data<int32_t>() const;
template int64_t* Tensor::data<int64_t>() const;
template uint8_t* Tensor::data<uint8_t>() const;

namespace {
double load_as_double(const void* base, DType dt, int64_t i) {
  switch (dt) {
    case DType::f32: return static_cast<const float*>(base)[i];
    case DType::f64: return static_cast<const double*>(base)[i];
    case DType::bf16: return bf16_to_f32(static_cast<const bf16*>(base)[i]);
    case DType::i32: return static_cast<const int32_t*>(base)[i];
    case DType::i64: return static_cast<double>(static_cast<const int64_t*>(base)[i]);
    case DType::u8: return static_cast<const uint8_t*>(base)[i];
  }
  return 0;
}
}  // namespace

template <typename T>
T Tensor::item() const {
  MLM_CHECK(numel() == 1, ShapeError, "[item] expected one element, got ", str());
  if (dtype() == DType::i64) return static_cast<T>(*static_cast<const int64_t*>(raw_data()));
  const double v = load_as_double(raw_data(), dtype(), 0);
  if constexpr (std::is_integral_v<T>)
    return dtype_is_float(dtype()) ? saturating_cast<T>(v) : static_cast<T>(v);
  else
    return static_cast<T>(v);
}
template float Tensor::item<float>() const;
template double Tensor::item<double>() const;
template int64_t Tensor::item<int64_t>() const;
template int32_t Tensor::item<int32_t>() const;

template <typename T>
std::vector<T> Tensor::to_vector() const {
  // Detached first: reading values must not record clone or to nodes on a tensor needing grad.
  Tensor c = (dtype() == dtype_of<T>() ? detach() : detach().to(dtype_of<T>())).contiguous();
  std::vector<T> out(static_cast<size_t>(c.numel()));
  if (!out.empty()) std::memcpy(out.data(), c.raw_data(), out.size() * sizeof(T));
  return out;
}
template std::vector<float> Tensor::to_vector<float>() const;
template std::vector<double> Tensor::to_vector<double>() const;
template std::vector<int32_t> Tensor::to_vector<int32_t>() const;
template std::vector<int64_t> Tensor::to_vector<int64_t>() const;
template std::vector<uint8_t> Tensor::to_vector<uint8_t>() const;
template std::vector<bf16> Tensor::to_vector<bf16>() const;

Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset) {
  auto impl = std::make_shared<TensorImpl>();
  impl->storage = base.impl().storage;
  impl->shape = shape;
  impl->strides = strides;
  impl->offset = offset;
  impl->dtype = base.dtype();
  return Tensor(std::move(impl));
}

Tensor Tensor::detach() const {
  return make_view(*this, shape(), strides(), impl().offset);
}

// ---------------------------------------------------------------- strided copy

namespace {
// One element of src's type as D: bf16 rounds to nearest even, float -> integer saturates.
template <typename D, typename S>
inline D convert_element(S x) {
  if constexpr (std::is_same_v<D, bf16> && std::is_same_v<S, bf16>)
    return x;
  else if constexpr (std::is_same_v<D, bf16>)
    return f32_to_bf16(static_cast<float>(x));
  else if constexpr (std::is_same_v<S, bf16> && std::is_integral_v<D>)
    return saturating_cast<D>(bf16_to_f32(x));
  else if constexpr (std::is_same_v<S, bf16>)
    return static_cast<D>(bf16_to_f32(x));
  else if constexpr (std::is_floating_point_v<S> && std::is_integral_v<D>)
    return saturating_cast<D>(x);
  else
    return static_cast<D>(x);
}

template <typename D, typename S>
void copy_rows(const Tensor& dst, const Tensor& src) {
  D* dp = static_cast<D*>(dst.raw_data());
  const S* sp = static_cast<const S*>(src.raw_data());
  detail::for_each_row<2>(dst.shape(), {&dst.strides(), &src.strides()},
                          [&](std::array<int64_t, 2> off, int64_t n, std::array<int64_t, 2> st) {
                            D* d = dp + off[0];
                            const S* s = sp + off[1];
                            if (st[0] == 1 && st[1] == 1) {  // contiguous rows: vectorizes
                              for (int64_t i = 0; i < n; ++i) d[i] = convert_element<D>(s[i]);
                            } else {
                              for (int64_t i = 0; i < n; ++i)
                                d[i * st[0]] = convert_element<D>(s[i * st[1]]);
                            }
                          });
}

template <typename D>
void copy_from(const Tensor& dst, const Tensor& src) {
  switch (src.dtype()) {
    case DType::f32: copy_rows<D, float>(dst, src); break;
    case DType::f64: copy_rows<D, double>(dst, src); break;
    case DType::bf16: copy_rows<D, bf16>(dst, src); break;
    case DType::i32: copy_rows<D, int32_t>(dst, src); break;
    case DType::i64: copy_rows<D, int64_t>(dst, src); break;
    case DType::u8: copy_rows<D, uint8_t>(dst, src); break;
  }
}
}  // namespace

void copy_into(const Tensor& dst, const Tensor& src_in) {
  MLM_CHECK(dst.shape() == src_in.shape(), ShapeError, "[copy] shape mismatch: ", dst.str(),
            " <- ", src_in.str());
  // A broadcast destination would have several threads write one element. (Empty tensors have
  // 0 strides too: contiguous_strides of [3, 0] is [0, 1].)
  for (int64_t d = 0; d < dst.dim() && dst.numel() > 0; ++d)
    MLM_CHECK(dst.shape()[d] <= 1 || dst.strides()[d] != 0, ValueError,
              "[copy] destination ", dst.str(), " is a broadcast (stride-0) view");
  if (dst.dtype() == src_in.dtype() && dst.is_contiguous() && src_in.is_contiguous()) {
    if (dst.nbytes() > 0) std::memmove(dst.raw_data(), src_in.raw_data(), dst.nbytes());
    return;
  }
  // Strided copies run row by row in parallel: if src shares dst's storage (a shifted slice of
  // the same tensor), read from a snapshot so no element is overwritten before it is read.
  const Tensor src = dst.impl().storage == src_in.impl().storage && dst.numel() > 0
                         ? src_in.detach().clone()
                         : src_in;
  switch (dst.dtype()) {
    case DType::f32: copy_from<float>(dst, src); break;
    case DType::f64: copy_from<double>(dst, src); break;
    case DType::bf16: copy_from<bf16>(dst, src); break;
    case DType::i32: copy_from<int32_t>(dst, src); break;
    case DType::i64: copy_from<int64_t>(dst, src); break;
    case DType::u8: copy_from<uint8_t>(dst, src); break;
  }
}

// ---------------------------------------------------------------- autograd state

Tensor& Tensor::set_requires_grad(bool value) {
  MLM_CHECK(is_leaf(), AutogradError,
            "[requires_grad] only leaf tensors can change requires_grad (detach() first)");
  MLM_CHECK(!value || dtype() == DType::f32 || dtype() == DType::f64, DTypeError,
            "[requires_grad] only f32 and f64 tensors can require grad, got ", str());
  impl().requires_grad = value;
  return *this;
}

Tensor Tensor::grad() const {
  const auto& g = impl().grad;
  return g ? Tensor(g) : Tensor();
}

void Tensor::zero_grad() { impl().grad.reset(); }

void Tensor::backward(const Tensor& grad_output) const { autograd::run_backward(*this, grad_output); }

}  // namespace metalm
