// TorchScale's FeedForwardNetwork (reference-spec 1.3); the dropout generator is the module's
// own, seeded from the init generator (D7).
#include "metalm/nn/feedforward.h"

#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/random_ops.h"

namespace metalm::nn {

FeedForwardNetwork::FeedForwardNetwork(const FeedForwardOptions& o, Generator& init_gen)
    : options(o), dropout_gen_(register_generator("dropout", Generator::hash(init_gen.seed(), init_gen.reserve(1)))) {
  MLM_CHECK(o.embed_dim > 0 && o.ffn_dim > 0, ValueError,
            "[FeedForwardNetwork] embed_dim and ffn_dim must be positive");
  fc1 = register_module("fc1", std::make_shared<Linear>(o.embed_dim, o.ffn_dim, true, init_gen));
  fc2 = register_module("fc2", std::make_shared<Linear>(o.ffn_dim, o.embed_dim, true, init_gen));
  if (o.subln)
    ffn_layernorm = register_module("ffn_layernorm",
                                    std::make_shared<LayerNorm>(o.ffn_dim, o.layernorm_eps));
}

Tensor FeedForwardNetwork::forward(const Tensor& x) {
  const bool train = is_training();
  if (!ffn_layernorm && (!train || options.activation_dropout == 0)) {  // nothing between fc1, fc2
    Tensor y = ops::mlp(x, fc1->weight, fc1->bias, options.activation, fc2->weight, fc2->bias);
    return ops::dropout(y, options.dropout, dropout_gen_, train);
  }
  Tensor h = ops::linear_activation(x, fc1->weight, fc1->bias, options.activation);
  h = ops::dropout(h, options.activation_dropout, dropout_gen_, train);
  if (ffn_layernorm) h = ffn_layernorm->forward(h);
  h = fc2->forward(h);
  return ops::dropout(h, options.dropout, dropout_gen_, train);
}

}  // namespace metalm::nn
