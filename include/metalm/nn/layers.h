// Basic layers: Linear, LayerNorm, Embedding. Parameter names match torch.nn ("weight", "bias").
#pragma once
#include "metalm/core/random.h"
#include "metalm/nn/module.h"

namespace metalm::nn {

// y = x Wᵀ + b; weight [out, in]. Default init is torch.nn.Linear's (kaiming-uniform weight,
// uniform(±1/sqrt(in)) bias).
class Linear : public Module {
 public:
  Linear(int64_t in_features, int64_t out_features, bool bias, Generator& gen);
  Tensor forward(const Tensor& x) const;  // x: [..., in] -> [..., out]
  Tensor weight, bias;                    // bias undefined when built without one
  int64_t in_features, out_features;
};

// torch.nn.LayerNorm over the last dim (weight 1, bias 0 at init).
class LayerNorm : public Module {
 public:
  LayerNorm(int64_t dim, double eps = 1e-5, bool elementwise_affine = true);
  Tensor forward(const Tensor& x) const;
  Tensor weight, bias;
  double eps;
};

// torch.nn.Embedding (N(0, 1) init; the padding row zeroed when padding_idx >= 0).
class Embedding : public Module {
 public:
  Embedding(int64_t num_embeddings, int64_t dim, int64_t padding_idx, Generator& gen);
  Tensor forward(const Tensor& ids) const;  // ids: i64 [...] -> [..., dim]
  Tensor weight;
  int64_t padding_idx;
};

}  // namespace metalm::nn
