// TorchScale's Encoder stack (reference-spec 1.3, 1.4, 2.1, 3.3): embeddings with docking,
// positions, padding zeroing, multiway layers, final LayerNorm, output projection, init.
#include <cmath>

#include "metalm/nn/transformer.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/random_ops.h"
#include "stack_util.h"

namespace metalm::nn {

Encoder::Encoder(const EncoderConfig& cfg, Generator& gen, const StackOptions& st)
    : config(cfg), stack(st), dropout_gen_(Generator::hash(gen.seed(), gen.reserve(1))) {
  validate(cfg);
  MLM_CHECK(st.role == StackRole::encoder_only || st.role == StackRole::encdec_encoder,
            ValueError, "[Encoder] role must be encoder_only or encdec_encoder");
  const int64_t d = cfg.encoder_embed_dim;
  const int experts = cfg.multiway ? 2 : 1;
  auto make_ln = [&] { return std::make_shared<LayerNorm>(d, cfg.layernorm_eps); };

  const auto emb = detail::register_stack_embeddings(*this, "Encoder", st.embed_tokens, cfg.vocab_size,
                                                     d, cfg.padding_idx, cfg.positions,
                                                     cfg.max_source_positions, gen);
  embed_tokens = emb.tokens;
  learned_positions = emb.learned;
  sinusoidal_positions = emb.sinusoidal;
  if (cfg.layernorm_embedding)
    layernorm_embedding.build(*this, "layernorm_embedding", experts, make_ln);

  auto layer_list = register_module("layers", std::make_shared<Module>());
  for (int64_t i = 0; i < cfg.encoder_layers; ++i)
    layers.push_back(layer_list->register_module(
        std::to_string(i), std::make_shared<EncoderLayer>(cfg, i, gen, st.role, st.other_layers)));
  if (cfg.has_final_layer_norm()) layer_norm.build(*this, "layer_norm", experts, make_ln);
  if (cfg.has_rel_pos())
    relative_position = register_module(
        "relative_position",
        std::make_shared<RelativePositionBias>(cfg.rel_pos_buckets, cfg.max_rel_pos,
                                               cfg.encoder_attention_heads, gen));
  if (cfg.has_output_layer() && !cfg.share_encoder_input_output_embed)
    output_projection = register_module("output_projection",
                                        detail::make_output_projection(d, cfg.vocab_size, gen));
  MLM_CHECK(!(cfg.has_output_layer() && cfg.share_encoder_input_output_embed && !embed_tokens),
            ValueError, "[Encoder] share_encoder_input_output_embed needs embed_tokens");

  // §1.4: bert_init after the default init, then the DeepNorm / SubLN scaling.
  if (cfg.bert_init) bert_init(*this, gen);
  double factor = 1.0;
  if (cfg.deepnorm)
    factor = 1.0 / deepnorm_init_scale(st.role, cfg.encoder_layers, st.other_layers);
  else if (cfg.subln)
    factor = subln_init_gamma(st.role, cfg.encoder_layers, st.other_layers);
  if (cfg.deepnorm || cfg.subln) scaled_names_ = scale_init_parameters(*this, factor, false);
}

Tensor Encoder::forward_embedding(const EncoderInputs& in) {
  const int64_t d = config.encoder_embed_dim;
  Tensor emb;
  if (in.token_embeddings.defined()) {
    emb = in.token_embeddings;
  } else {
    MLM_CHECK(in.tokens.defined(), ValueError, "[Encoder] give tokens or token_embeddings");
    MLM_CHECK(embed_tokens != nullptr, ValueError,
              "[Encoder] no embed_tokens (vocab_size <= 0): give token_embeddings");
    MLM_CHECK(in.tokens.dim() == 2, ShapeError, "[Encoder] tokens must be [B, T], got ",
              in.tokens.str());
    emb = embed_tokens->forward(in.tokens);
  }
  MLM_CHECK(emb.dim() == 3 && emb.size(2) == d, ShapeError,
            "[Encoder] token embeddings must be [B, T, ", d, "], got ", emb.str());
  const int64_t T = emb.size(1);
  emb = detail::dock("Encoder", emb, in.dock_mask, in.dock_features);
  const double scale = config.embed_scale();
  Tensor x = scale == 1.0 ? emb : emb * scale;
  if (learned_positions) {
    MLM_CHECK(T <= config.max_source_positions, ValueError, "[Encoder] length ", T,
              " > max_source_positions ", config.max_source_positions);
    x = x + learned_positions->forward(T);  // [T, d] broadcast over B
  } else if (sinusoidal_positions) {
    if (in.tokens.defined()) {
      x = x + sinusoidal_positions->forward(in.tokens).to(x.dtype());
    } else {  // no tokens, so no padding: positions padding_idx + 1 .. padding_idx + T
      std::vector<int64_t> pos(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) pos[t] = config.padding_idx + 1 + t;
      x = x + sinusoidal_embedding(Tensor::from_vector<int64_t>({T}, pos), d, config.padding_idx,
                                   x.dtype());
    }
  }
  if (layernorm_embedding.defined())
    x = layernorm_embedding.apply(x, in.route,
                                  [](LayerNorm& l, const Tensor& t) { return l.forward(t); });
  return ops::dropout(x, config.dropout, dropout_gen_, is_training());
}

StackOutput Encoder::forward(const EncoderInputs& in) {
  Tensor x = forward_embedding(in);  // [B, T, d]
  const int64_t B = x.size(0), T = x.size(1);
  if (in.padding_mask.defined()) {
    MLM_CHECK(in.padding_mask.dim() == 2 && in.padding_mask.size(0) == B &&
                  in.padding_mask.size(1) == T,
              ShapeError, "[Encoder] padding_mask must be [", B, ", ", T, "], got ",
              in.padding_mask.str());
    // Padded rows are zeroed before layer 0: x *= 1 - padding_mask.
    Tensor keep = (-in.padding_mask.to(x.dtype()) + 1.0).unsqueeze(2);
    x = x * keep;
  }
  LayerInputs li;
  li.route = in.route;
  li.mask = in.mask;
  li.prefix_len = in.prefix_len;
  li.key_padding = in.padding_mask;
  if (relative_position) li.rel_bias = relative_position->forward(T, T, 0);  // shared by layers
  for (auto& layer : layers) x = layer->forward(x, li);
  if (layer_norm.defined())
    x = layer_norm.apply(x, in.route, [](LayerNorm& l, const Tensor& t) { return l.forward(t); });
  StackOutput out;
  out.features = x;
  if (!in.features_only && config.has_output_layer())
    out.logits = output_projection ? output_projection->forward(x)
                                   : ops::linear(x, embed_tokens->weight);
  return out;
}

}  // namespace metalm::nn
