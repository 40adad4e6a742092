// The stack core (construction in TorchScale's order, embeddings, layers, output) and the
// Encoder; the Decoder and its incremental state are in decoder.cpp.
#include "metalm/models/stack.h"

#include <cmath>

#include "metalm/autograd/autograd.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/index.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/random_ops.h"
#include "models/masks.h"

namespace metalm::models {
namespace {

// TextEmbedding: N(0, d^-0.5) with the pad row zeroed (spec 1.3).
std::shared_ptr<nn::Embedding> make_text_embedding(int64_t vocab, int64_t d, int64_t padding_idx,
                                                   Generator& gen) {
  auto e = std::make_shared<nn::Embedding>(vocab, d, padding_idx, gen);
  nn::init_normal(e->weight, gen, 0.0, 1.0 / std::sqrt(static_cast<double>(d)));
  if (padding_idx >= 0) nn::init_zeros(e->weight.slice(0, padding_idx, padding_idx + 1), gen);
  return e;
}

// Linear(d, vocab, bias=False) with weight N(0, d^-0.5) (spec 1.3).
std::shared_ptr<nn::Linear> make_output_projection(int64_t d, int64_t vocab, Generator& gen) {
  auto l = std::make_shared<nn::Linear>(d, vocab, false, gen);
  nn::init_normal(l->weight, gen, 0.0, 1.0 / std::sqrt(static_cast<double>(d)));
  return l;
}

// emb: [B, T, d]; mask: u8 [B, T]; features: [count(mask), d]. Overwrites the masked rows in
// row-major order (before embed_scale and positions, spec 3.3 / 9.4); gradients reach features.
Tensor dock(const Tensor& emb, const Tensor& mask, const Tensor& features) {
  if (!mask.defined() && !features.defined()) return emb;
  MLM_CHECK(mask.defined() && features.defined(), ValueError,
            "[stack] dock_mask and dock_features must be given together");
  MLM_CHECK(mask.dim() == 2 && mask.size(0) == emb.size(0) && mask.size(1) == emb.size(1),
            ShapeError, "[stack] dock_mask must be [", emb.size(0), ", ", emb.size(1), "], got ",
            mask.str());
  MLM_CHECK(features.dim() == 2 && features.size(1) == emb.size(2), ShapeError,
            "[stack] dock_features must be [N, ", emb.size(2), "], got ", features.str());
  return ops::masked_scatter_rows(emb, mask, features.to(emb.dtype()));
}

}  // namespace

Stack::Stack(const nn::StackConfig& cfg, const StackOptions& st, const Parts& parts,
             Generator& gen)
    : stack(st), cfg_(&cfg), dropout_gen_(register_generator("dropout", Generator::hash(gen.seed(), gen.reserve(1)))) {
  const int64_t d = cfg.embed_dim;
  auto make_ln = [&] { return std::make_shared<nn::LayerNorm>(d, cfg.layernorm_eps); };

  if (st.embed_tokens) {
    MLM_CHECK(st.embed_tokens->weight.size(1) == d, ShapeError, "[stack] embed_tokens width ",
              st.embed_tokens->weight.size(1), " != embed_dim ", d);
    embed_tokens = register_module("embed_tokens", st.embed_tokens);
  } else if (cfg.vocab_size > 0) {
    embed_tokens = register_module("embed_tokens",
                                   make_text_embedding(cfg.vocab_size, d, cfg.padding_idx, gen));
  }
  // Learned tables index from 2, so they hold max_positions + 2 rows; sinusoidal ones are fixed.
  if (cfg.positions == nn::PositionKind::learned)
    learned_positions = register_module(
        "embed_positions",
        std::make_shared<nn::LearnedPositionalEmbedding>(cfg.max_positions + 2, d, gen));
  else if (cfg.positions == nn::PositionKind::sinusoidal)
    sinusoidal_positions = register_module(
        "embed_positions", std::make_shared<nn::SinusoidalPositionalEmbedding>(d, cfg.padding_idx));
  if (cfg.layernorm_embedding)
    layernorm_embedding.build(*this, "layernorm_embedding", parts.norm_experts, make_ln);

  auto layer_list = register_module("layers", std::make_shared<nn::Module>());
  for (int64_t i = 0; i < cfg.layers; ++i)
    layers.push_back(layer_list->register_module(
        std::to_string(i), std::make_shared<nn::TransformerLayer>(parts.layer_options(i), gen)));
  if (parts.final_layer_norm) layer_norm.build(*this, "layer_norm", parts.norm_experts, make_ln);
  auto make_bias = [&] {
    return std::make_shared<nn::RelativePositionBias>(cfg.rel_pos_buckets, cfg.max_rel_pos,
                                                      cfg.attention_heads, gen);
  };
  if (cfg.has_rel_pos()) {
    relative_position = register_module(parts.relative_position_name, make_bias());
    if (parts.cross_relative_position)
      cross_attn_relative_position = register_module("cross_attn_relative_position", make_bias());
  }
  if (cfg.has_output_layer() && !cfg.share_input_output_embed)
    output_projection =
        register_module("output_projection", make_output_projection(d, cfg.vocab_size, gen));
  MLM_CHECK(!(cfg.has_output_layer() && cfg.share_input_output_embed && !embed_tokens),
            ValueError, "[stack] a tied output layer needs embed_tokens");

  // 1.4: bert_init after the default init, then the DeepNorm / SubLN scaling.
  if (cfg.bert_init) nn::bert_init(*this, gen);
  const bool is_encoder =
      st.role == nn::StackRole::encoder_only || st.role == nn::StackRole::encdec_encoder;
  const int64_t n_enc = is_encoder ? cfg.layers : st.other_layers;
  const int64_t n_dec = is_encoder ? st.other_layers : cfg.layers;
  if (cfg.deepnorm)
    scaled_names_ = nn::scale_init_parameters(
        *this, gen, 1.0 / nn::deepnorm_init_scale(st.role, n_enc, n_dec), false);
  else if (cfg.subln)
    scaled_names_ = nn::scale_init_parameters(*this, gen, nn::subln_init_gamma(st.role, n_enc, n_dec),
                                              parts.skip_encoder_attn_scaling);
}

Tensor Stack::embed(const StackInputs& in, const Tensor& positions, int64_t start) {
  const nn::StackConfig& cfg = *cfg_;
  const int64_t d = cfg.embed_dim;
  Tensor emb;
  if (in.token_embeddings.defined()) {
    emb = in.token_embeddings;
  } else {
    MLM_CHECK(in.tokens.defined(), ValueError, "[stack] give tokens or token_embeddings");
    MLM_CHECK(embed_tokens != nullptr, ValueError,
              "[stack] no embed_tokens (vocab_size <= 0): give token_embeddings");
    MLM_CHECK(in.tokens.dim() == 2, ShapeError, "[stack] tokens must be [B, T], got ",
              in.tokens.str());
    emb = embed_tokens->forward(in.tokens);
  }
  MLM_CHECK(emb.dim() == 3 && emb.size(2) == d, ShapeError, "[stack] token embeddings must be [B, T, ",
            d, "], got ", emb.str());
  const int64_t B = emb.size(0), T = emb.size(1);
  emb = dock(emb, in.dock_mask, in.dock_features);
  const double scale = cfg.embed_scale();
  Tensor x = scale == 1.0 ? emb : emb * scale;
  if (positions.defined())
    MLM_CHECK(positions.dim() == 2 && positions.size(0) == B && positions.size(1) == T, ShapeError,
              "[stack] positions must be [", B, ", ", T, "], got ", positions.str());
  if (learned_positions) {
    if (!positions.defined()) {
      MLM_CHECK(start + T <= cfg.max_positions, ValueError, "[stack] position ", start + T,
                " > max positions ", cfg.max_positions);
      x = x + (start == 0 ? learned_positions->forward(T)  // rows 2 .. T+1, [T, d]
                          : learned_positions->forward(
                                contiguous_positions(T, start + learned_positions->offset)));
    } else {
      x = x + learned_positions->forward(positions_plus(positions, learned_positions->offset));
    }
  } else if (sinusoidal_positions) {
    if (!positions.defined() && start == 0 && in.tokens.defined()) {
      x = x + sinusoidal_positions->forward(in.tokens).to(x.dtype());  // pad-aware, [B, T, d]
    } else {
      const int64_t first = cfg.padding_idx + 1;  // 0-based position p is row padding_idx + 1 + p
      Tensor rows = positions.defined() ? positions_plus(positions, first)
                                        : contiguous_positions(T, first + start);
      x = x + nn::sinusoidal_embedding(rows, d, cfg.padding_idx, x.dtype());
    }
  }
  if (layernorm_embedding.defined())
    x = layernorm_embedding.apply(x, in.route,
                                  [](nn::LayerNorm& l, const Tensor& t) { return l.forward(t); });
  return ops::dropout(x, cfg.dropout, dropout_gen_, is_training());
}

StackOutput Stack::run_layers(Tensor x, nn::LayerInputs li, const StackInputs& in,
                              const std::function<void(size_t, nn::LayerInputs&)>& per_layer) {
  for (size_t i = 0; i < layers.size(); ++i) {
    if (per_layer) per_layer(i, li);
    x = layers[i]->forward(x, li);
  }
  if (layer_norm.defined())
    x = layer_norm.apply(x, in.route, [](nn::LayerNorm& l, const Tensor& t) { return l.forward(t); });
  StackOutput out;
  out.features = x;
  if (!in.features_only && cfg_->has_output_layer()) out.logits = output_layer(x);
  return out;
}

Tensor Stack::output_layer(const Tensor& features) const {
  MLM_CHECK(cfg_->has_output_layer(), ValueError, "[stack] no output layer");
  return output_projection ? output_projection->forward(features)
                           : ops::linear(features, embed_tokens->weight);
}

// ------------------------------------------------------------------ Encoder

Encoder::Encoder(const nn::EncoderConfig& cfg, Generator& gen, const StackOptions& st)
    : Stack(validated(cfg), st,
            Parts{cfg.multiway ? 2 : 1, cfg.has_final_layer_norm(),
                  [&cfg, st](int64_t i) {
                    return nn::encoder_layer_options(cfg, i, st.role, st.other_layers);
                  },
                  "relative_position", false, false},
            gen),
      config(cfg) {
  bind_config(config);
  MLM_CHECK(st.role == nn::StackRole::encoder_only || st.role == nn::StackRole::encdec_encoder,
            ValueError, "[Encoder] role must be encoder_only or encdec_encoder");
}

StackOutput Encoder::run(const StackInputs& in) {
  MLM_CHECK(in.state == nullptr && !in.encoder_out.defined() && in.spans.empty(), ValueError,
            "[Encoder] an encoder takes no incremental state, encoder_out or spans");
  Tensor x = embed(in, in.positions, 0);  // [B, T, d]
  const int64_t B = x.size(0), T = x.size(1);
  check_layout(in, B, T);
  if (in.padding.defined()) {
    // Padded rows are zeroed before layer 0: x *= 1 - padding.
    Tensor keep = (-in.padding.to(x.dtype()) + 1.0).unsqueeze(2);
    x = x * keep;
  }
  ops::AttentionMask mask = self_attention_mask(in, /*causal=*/false, 0);
  if (relative_position) mask.bias = relative_position->forward(T, T, 0);  // shared by layers
  nn::LayerInputs li;
  li.route = in.route;
  li.self_mask = &mask;
  return run_layers(x, li, in, nullptr);
}

TensorMap drop_tied_output_projection(const TensorMap& state, bool tied) {
  if (!tied) return state;
  TensorMap out = state;
  auto it = out.find("output_projection.weight");
  if (it == out.end()) return out;
  auto emb = out.find("embed_tokens.weight");
  MLM_CHECK(emb != out.end() && emb->second.shape() == it->second.shape() &&
                emb->second.to_vector<double>() == it->second.to_vector<double>(),
            ValueError, "[load_state_dict] tied model: output_projection.weight differs from "
            "embed_tokens.weight");
  out.erase(it);
  return out;
}

}  // namespace metalm::models
