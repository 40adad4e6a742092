// TorchScale's FeedForwardNetwork: fc2([ffn_layernorm](act_dropout(act(fc1(x))))) then dropout.
// Names: "fc1", "fc2", "ffn_layernorm" (the SubLN / MAGNETO inner LayerNorm, optional).
#pragma once
#include <string>

#include "metalm/core/random.h"
#include "metalm/nn/layers.h"
#include "metalm/ops/activation.h"

namespace metalm::nn {

struct FeedForwardOptions {
  int64_t embed_dim = 0;
  int64_t ffn_dim = 0;
  ops::Activation activation = ops::Activation::gelu;
  double dropout = 0.0;
  double activation_dropout = 0.0;
  bool subln = false;
  double layernorm_eps = 1e-5;
};

class FeedForwardNetwork : public Module {
 public:
  // init_gen draws the weights; the module keeps its own dropout generator seeded from it.
  FeedForwardNetwork(const FeedForwardOptions& options, Generator& init_gen);
  Tensor forward(const Tensor& x);  // [..., embed_dim] -> [..., embed_dim]

  FeedForwardOptions options;
  std::shared_ptr<Linear> fc1, fc2;
  std::shared_ptr<LayerNorm> ffn_layernorm;  // null unless subln

 private:
  Generator& dropout_gen_;
};

}  // namespace metalm::nn
