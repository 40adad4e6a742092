// TorchScale's Decoder stack (reference-spec 1.3, 1.4, 3.3, 5): embeddings with docking,
// positions, causal layers (optionally with cross-attention), final LayerNorm, output
// projection, init, and incremental decoding over preallocated per-layer KV caches.
#include <cmath>

#include "metalm/nn/transformer.h"
#include "metalm/ops/elementwise.h"
#include "metalm/ops/matmul.h"
#include "metalm/ops/random_ops.h"
#include "stack_util.h"

namespace metalm::nn {

// ------------------------------------------------------------------ IncrementalState

IncrementalState::IncrementalState(const Decoder& decoder, int64_t batch, int64_t capacity)
    : batch_(batch), heads_(decoder.config.decoder_attention_heads),
      head_dim_(decoder.config.head_dim()) {
  const DecoderConfig& c = decoder.config;
  caches_.reserve(static_cast<size_t>(c.decoder_layers));
  for (int64_t i = 0; i < c.decoder_layers; ++i)
    caches_.emplace_back(batch, heads_, capacity, head_dim_);
  cross_.resize(caches_.size());
}

KVCache& IncrementalState::cross_layer(size_t i, int64_t source_length) {
  std::unique_ptr<KVCache>& c = cross_.at(i);
  // A filled cache is returned as it is: a source of another length then fails in the attention
  // (the sequence's keys belong to the first source) instead of being mixed in silently.
  if (!c || (c->length() == 0 && c->capacity() < source_length))
    c = std::make_unique<KVCache>(batch_, heads_, std::max<int64_t>(source_length, 1), head_dim_);
  return *c;
}

void IncrementalState::reset() {
  for (auto& c : caches_) c.reset();
  for (auto& c : cross_)
    if (c) c->reset();
}

void IncrementalState::truncate(int64_t length) {
  for (auto& c : caches_) c.truncate(length);
}

// ------------------------------------------------------------------ Decoder

Decoder::Decoder(const DecoderConfig& cfg, Generator& gen, const StackOptions& st)
    : config(cfg), stack(st), dropout_gen_(Generator::hash(gen.seed(), gen.reserve(1))) {
  validate(cfg);
  MLM_CHECK(st.role == StackRole::decoder_only || st.role == StackRole::encdec_decoder,
            ValueError, "[Decoder] role must be decoder_only or encdec_decoder");
  const int64_t d = cfg.decoder_embed_dim;
  auto make_ln = [&] { return std::make_shared<LayerNorm>(d, cfg.layernorm_eps); };

  const auto emb = detail::register_stack_embeddings(*this, "Decoder", st.embed_tokens, cfg.vocab_size,
                                                     d, cfg.padding_idx, cfg.positions,
                                                     cfg.max_target_positions, gen);
  embed_tokens = emb.tokens;
  learned_positions = emb.learned;
  sinusoidal_positions = emb.sinusoidal;
  // The decoder's stack-level LNs are never multiway (spec 2.1).
  if (cfg.layernorm_embedding)
    layernorm_embedding = register_module("layernorm_embedding", make_ln());

  auto layer_list = register_module("layers", std::make_shared<Module>());
  for (int64_t i = 0; i < cfg.decoder_layers; ++i)
    layers.push_back(layer_list->register_module(
        std::to_string(i), std::make_shared<DecoderLayer>(cfg, i, gen, st.role, st.other_layers)));
  if (cfg.has_final_layer_norm()) layer_norm = register_module("layer_norm", make_ln());
  if (cfg.has_rel_pos()) {
    self_attn_relative_position = register_module(
        "self_attn_relative_position",
        std::make_shared<RelativePositionBias>(cfg.rel_pos_buckets, cfg.max_rel_pos,
                                               cfg.decoder_attention_heads, gen));
    if (st.role == StackRole::encdec_decoder)
      cross_attn_relative_position = register_module(
          "cross_attn_relative_position",
          std::make_shared<RelativePositionBias>(cfg.rel_pos_buckets, cfg.max_rel_pos,
                                                 cfg.decoder_attention_heads, gen));
  }
  if (cfg.has_output_layer() && !cfg.share_decoder_input_output_embed)
    output_projection = register_module("output_projection",
                                        detail::make_output_projection(d, cfg.vocab_size, gen));
  MLM_CHECK(!(cfg.has_output_layer() && cfg.share_decoder_input_output_embed && !embed_tokens),
            ValueError, "[Decoder] share_decoder_input_output_embed needs embed_tokens");

  // §1.4: bert_init after the default init, then the DeepNorm / SubLN scaling. The enc-dec
  // decoder leaves its encoder_attn parameters alone under SubLN (TorchScale does the same).
  if (cfg.bert_init) bert_init(*this, gen);
  if (cfg.deepnorm)
    scaled_names_ = scale_init_parameters(
        *this, 1.0 / deepnorm_init_scale(st.role, st.other_layers, cfg.decoder_layers), false);
  else if (cfg.subln)
    scaled_names_ = scale_init_parameters(
        *this, subln_init_gamma(st.role, st.other_layers, cfg.decoder_layers),
        st.role == StackRole::encdec_decoder);
}

Tensor Decoder::forward_embedding(const DecoderInputs& in, int64_t start) {
  const int64_t d = config.decoder_embed_dim;
  Tensor emb;
  if (in.token_embeddings.defined()) {
    emb = in.token_embeddings;
  } else {
    MLM_CHECK(in.tokens.defined(), ValueError, "[Decoder] give tokens or token_embeddings");
    MLM_CHECK(embed_tokens != nullptr, ValueError,
              "[Decoder] no embed_tokens (vocab_size <= 0): give token_embeddings");
    MLM_CHECK(in.tokens.dim() == 2, ShapeError, "[Decoder] tokens must be [B, T], got ",
              in.tokens.str());
    emb = embed_tokens->forward(in.tokens);
  }
  MLM_CHECK(emb.dim() == 3 && emb.size(2) == d, ShapeError,
            "[Decoder] token embeddings must be [B, T, ", d, "], got ", emb.str());
  const int64_t T = emb.size(1);
  emb = detail::dock("Decoder", emb, in.dock_mask, in.dock_features);
  const double scale = config.embed_scale();
  Tensor x = scale == 1.0 ? emb : emb * scale;
  if (learned_positions) {
    MLM_CHECK(start + T <= config.max_target_positions, ValueError, "[Decoder] position ",
              start + T, " > max_target_positions ", config.max_target_positions);
    if (start == 0) {
      x = x + learned_positions->forward(T);  // rows 2 .. T+1, [T, d]
    } else {
      std::vector<int64_t> pos(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) pos[t] = learned_positions->offset + start + t;
      x = x + learned_positions->forward(Tensor::from_vector<int64_t>({T}, pos));
    }
  } else if (sinusoidal_positions) {
    if (start == 0 && in.tokens.defined()) {
      x = x + sinusoidal_positions->forward(in.tokens).to(x.dtype());  // pad-aware, [B, T, d]
    } else {
      // Incremental rule (fairseq): position padding_idx + current length, padding ignored.
      std::vector<int64_t> pos(static_cast<size_t>(T));
      for (int64_t t = 0; t < T; ++t) pos[t] = config.padding_idx + start + 1 + t;
      x = x + sinusoidal_embedding(Tensor::from_vector<int64_t>({T}, pos), d, config.padding_idx,
                                   x.dtype());
    }
  }
  if (layernorm_embedding) x = layernorm_embedding->forward(x);
  return ops::dropout(x, config.dropout, dropout_gen_, is_training());
}

Tensor Decoder::output_layer(const Tensor& features) const {
  MLM_CHECK(config.has_output_layer(), ValueError, "[Decoder] no output layer");
  return output_projection ? output_projection->forward(features)
                           : ops::linear(features, embed_tokens->weight);
}

StackOutput Decoder::forward(const DecoderInputs& in) {
  const bool cross = stack.role == StackRole::encdec_decoder;
  MLM_CHECK(in.encoder_out.defined() == cross, ValueError,
            "[Decoder] encoder_out must be given exactly for an encoder-decoder decoder");
  const int64_t start = in.state ? in.state->length() : 0;
  Tensor x = forward_embedding(in, start);  // [B, T, d]
  const int64_t T = x.size(1), Tk = start + T;
  if (in.state)
    MLM_CHECK(Tk <= in.state->capacity(), ValueError, "[Decoder] incremental state capacity ",
              in.state->capacity(), " exceeded: ", start, " cached + ", T, " new");

  // One causal mask and one relative bias for all layers. With a cache the query rows are
  // positions start .. start+T-1 against keys 0 .. start+T-1 (the last rows of the full bias;
  // spec 1.3 quirk: TorchScale slices the wrong axis there).
  LayerInputs li;
  li.mask = ops::AttnMaskKind::causal;
  if (self_attn_relative_position) li.rel_bias = self_attn_relative_position->forward(T, Tk, start);
  if (cross) {
    li.encoder_out = in.encoder_out;
    li.encoder_padding = in.encoder_padding;
    if (cross_attn_relative_position)
      li.cross_rel_bias = cross_attn_relative_position->forward(T, in.encoder_out.size(1), start);
  }
  for (size_t i = 0; i < layers.size(); ++i) {
    li.cache = in.state ? &in.state->layer(i) : nullptr;
    li.cross_cache =
        in.state && cross ? &in.state->cross_layer(i, in.encoder_out.size(1)) : nullptr;
    x = layers[i]->forward(x, li);
  }
  if (layer_norm) x = layer_norm->forward(x);
  StackOutput out;
  out.features = x;
  if (!in.features_only && config.has_output_layer()) out.logits = output_layer(x);
  return out;
}

}  // namespace metalm::nn
