// Basic layers on top of ops; init follows torch.nn defaults so reference models line up.
#include "metalm/nn/layers.h"

#include <cmath>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/index.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/norm.h"

namespace metalm::nn {

Linear::Linear(int64_t in, int64_t out, bool with_bias, Generator& gen)
    : in_features(in), out_features(out) {
  MLM_CHECK(in > 0 && out > 0, ValueError, "[Linear] sizes must be positive, got ", in, " -> ", out);
  // kaiming_uniform_(a=sqrt(5)) gives bound 1/sqrt(in) for the weight, as for the bias.
  const double bound = 1.0 / std::sqrt(static_cast<double>(in));
  weight = register_parameter("weight", gen.uniform({out, in}, -bound, bound));
  if (with_bias) bias = register_parameter("bias", gen.uniform({out}, -bound, bound));
}

Tensor Linear::forward(const Tensor& x) const { return ops::linear(x, weight, bias); }

LayerNorm::LayerNorm(int64_t dim, double eps_, bool affine) : eps(eps_) {
  MLM_CHECK(dim > 0, ValueError, "[LayerNorm] dim must be positive, got ", dim);
  if (affine) {
    weight = register_parameter("weight", Tensor::ones({dim}));
    bias = register_parameter("bias", Tensor::zeros({dim}));
  }
}

Tensor LayerNorm::forward(const Tensor& x) const { return ops::layer_norm(x, weight, bias, eps); }

Embedding::Embedding(int64_t n, int64_t dim, int64_t padding_idx_, Generator& gen)
    : padding_idx(padding_idx_) {
  MLM_CHECK(n > 0 && dim > 0, ValueError, "[Embedding] sizes must be positive");
  MLM_CHECK(padding_idx < n, ValueError, "[Embedding] padding_idx ", padding_idx, " >= ", n);
  Tensor w = gen.normal({n, dim});
  if (padding_idx >= 0) copy_into(w.slice(0, padding_idx, padding_idx + 1), Tensor::zeros({1, dim}));
  weight = register_parameter("weight", w);
}

Tensor Embedding::forward(const Tensor& ids) const {
  return ops::embedding(weight, ids, padding_idx);
}

int64_t store_weights(Module& m, DType dtype) {
  MLM_CHECK(dtype == DType::f32 || dtype == DType::bf16, DTypeError,
            "[store_weights] bf16 or f32, got ", dtype_name(dtype));
  int64_t converted = 0;
  auto convert = [&](const Tensor& w) {
    if (!w.defined() || w.dtype() == dtype) return;
    MLM_CHECK(w.dtype() == DType::f32 || w.dtype() == DType::bf16, DTypeError,
              "[store_weights] weights must be f32 or bf16, got ", w.str());
    Tensor handle = w;  // shares the TensorImpl
    if (dtype == DType::bf16) handle.set_requires_grad(false);
    convert_in_place(handle, dtype);
    ++converted;
  };
  m.for_each_module([&](const std::string&, Module& sub) {
    if (auto* l = dynamic_cast<Linear*>(&sub)) convert(l->weight);
    if (auto* e = dynamic_cast<Embedding*>(&sub)) convert(e->weight);
  });
  return converted;
}

}  // namespace metalm::nn
