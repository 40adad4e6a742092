// Tensor: a strided, row-major view of a reference-counted storage block, plus autograd state.
// Views (reshape, permute, slice, expand) share storage; every view op is differentiable.
#pragma once
#include <cstdint>
#include <initializer_list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "metalm/core/dtype.h"
#include "metalm/core/error.h"

namespace metalm {

using Shape = std::vector<int64_t>;

int64_t shape_numel(const Shape& shape);
Shape contiguous_strides(const Shape& shape);
std::string shape_str(const Shape& shape);  // "[4, 384]"

// One aligned allocation from the caching allocator.
struct Storage {
  void* data = nullptr;
  size_t bytes = 0;
  explicit Storage(size_t nbytes);
  ~Storage();
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
};

namespace autograd {
struct Node;
}

struct TensorImpl {
  std::shared_ptr<Storage> storage;
  int64_t offset = 0;  // in elements
  Shape shape;
  Shape strides;  // in elements; 0 for broadcast dims
  DType dtype = DType::f32;
  bool requires_grad = false;               // leaf flag (or "some input required grad")
  std::shared_ptr<TensorImpl> grad;          // accumulated gradient of a leaf
  std::shared_ptr<autograd::Node> grad_fn;   // producer node of a non-leaf
};

class Tensor {
 public:
  Tensor() = default;
  explicit Tensor(std::shared_ptr<TensorImpl> impl) : impl_(std::move(impl)) {}

  // ---- factories (new contiguous storage) ----
  static Tensor empty(const Shape& shape, DType dtype = DType::f32);
  static Tensor zeros(const Shape& shape, DType dtype = DType::f32);
  static Tensor ones(const Shape& shape, DType dtype = DType::f32);
  static Tensor full(const Shape& shape, double value, DType dtype = DType::f32);
  static Tensor scalar(double value, DType dtype = DType::f32);  // shape []
  static Tensor arange(int64_t n, DType dtype = DType::i64);     // 0 .. n-1
  template <typename T>
  static Tensor from_vector(const Shape& shape, const std::vector<T>& values);

  // ---- info ----
  bool defined() const { return impl_ != nullptr; }
  int64_t dim() const { return static_cast<int64_t>(impl().shape.size()); }
  const Shape& shape() const { return impl().shape; }
  const Shape& strides() const { return impl().strides; }
  int64_t size(int64_t d) const;  // negative d counts from the end
  int64_t numel() const { return shape_numel(impl().shape); }
  DType dtype() const { return impl().dtype; }
  bool is_contiguous() const;
  size_t nbytes() const { return static_cast<size_t>(numel()) * dtype_size(dtype()); }
  std::string str() const;  // "f32[4, 384]"

  // Pointer to the first element; checks the dtype. Strides apply to indexing.
  template <typename T>
  T* data() const;
  void* raw_data() const;
  template <typename T>
  T item() const;  // the single element of a 1-element tensor, converted to T
  template <typename T>
  std::vector<T> to_vector() const;  // all elements in row-major order, converted to T

  // ---- views and copies (differentiable) ----
  Tensor reshape(const Shape& shape) const;  // one dim may be -1; copies only if needed
  Tensor permute(const std::vector<int64_t>& dims) const;
  Tensor transpose(int64_t d0, int64_t d1) const;
  Tensor slice(int64_t dim, int64_t start, int64_t end) const;  // [start, end) along dim
  Tensor expand(const Shape& shape) const;                       // broadcast size-1 dims
  Tensor unsqueeze(int64_t dim) const;
  Tensor squeeze(int64_t dim) const;
  Tensor contiguous() const;  // this tensor if already contiguous, else a copy
  Tensor clone() const;       // always a fresh contiguous copy
  Tensor to(DType dtype) const;
  Tensor detach() const;  // shares storage, no autograd history

  // ---- autograd ----
  bool requires_grad() const { return impl().requires_grad; }
  Tensor& set_requires_grad(bool value = true);  // leaves only
  bool is_leaf() const { return impl().grad_fn == nullptr; }
  Tensor grad() const;  // undefined Tensor if none accumulated yet
  void zero_grad();     // drops the accumulated gradient
  // Backpropagates from this tensor. A non-scalar root needs an explicit gradient.
  // The graph is freed afterwards; a second call on the same graph throws AutogradError.
  void backward(const Tensor& grad_output = Tensor()) const;

  TensorImpl& impl() const;
  const std::shared_ptr<TensorImpl>& impl_ptr() const { return impl_; }

 private:
  std::shared_ptr<TensorImpl> impl_;
};

// Tensors by name: state dicts, safetensors files, named parameter sets (one type for all).
using TensorMap = std::map<std::string, Tensor>;

// A view of `base`'s storage with new geometry and no autograd history.
Tensor make_view(const Tensor& base, const Shape& shape, const Shape& strides, int64_t offset);

// Copies src into dst elementwise (shapes must match, dtypes may differ; float -> integer
// saturates, NaN -> 0). src may overlap dst; dst may not be a broadcast view. Not differentiable.
void copy_into(const Tensor& dst, const Tensor& src);

}  // namespace metalm
