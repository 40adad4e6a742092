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

// Stores the weight matrix of every Linear and Embedding under `m` as `dtype` in place (the
// tensors keep their identity, so tied weights convert once): bf16 halves the bytes inference
// streams per token, and the ops widen it to f32 as they read it (ops::linear, ops::embedding);
// f32 converts back (exactly). Biases, norms and position tables other than Embeddings stay as
// they are. bf16 weights are frozen (requires_grad off): for generation, scoring and
// evaluation, not for training them (and stay frozen when converted back). Returns the number
// of matrices converted.
int64_t store_weights(Module& m, DType dtype);

}  // namespace metalm::nn
