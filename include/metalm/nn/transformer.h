// TorchScale's Transformer layer (reference-spec 1.3, 2.1-2.2): one layer covering Pre-LN,
// Post-LN, DeepNorm and SubLN (MAGNETO) with multiway experts and the optional vision-language FFN
// expert, for both stacks (the stacks are in models/stack.h). Parameter names are TorchScale's
// state-dict keys (D3).
//
// Naming (D3): "layers.<i>.self_attn.{q,k,v,out}_proj", "layers.<i>.self_attn.inner_attn_ln",
// "layers.<i>.self_attn_layer_norm", "layers.<i>.encoder_attn",
// "layers.<i>.encoder_attn_layer_norm", "layers.<i>.ffn.{fc1,fc2,ffn_layernorm}", "layers.<i>.final_layer_norm", "embed_tokens",
// "embed_positions", "layernorm_embedding", "layer_norm", "relative_position" (encoder) /
// "self_attn_relative_position" and "cross_attn_relative_position" (decoder),
// "output_projection". Multiway experts insert ".A." (vision) and ".B." (language) after the
// wrapped module's name ("self_attn.q_proj.A.weight", "ffn.B.fc1.weight"); the VL expert of the
// top multiway_vl_layers layers is ".C." ("ffn.C.fc1.weight", "final_layer_norm.C.weight").
// LayerScale gammas (EncoderConfig::layer_scale_init > 0, VLMo) are "gamma_1" (attention) and
// "gamma_2" (FFN), shared by all experts as in VLMo.
#pragma once
#include <memory>
#include <string>
#include <vector>

#include "metalm/core/random.h"
#include "metalm/nn/attention.h"
#include "metalm/nn/config.h"
#include "metalm/nn/feedforward.h"
#include "metalm/nn/init.h"
#include "metalm/nn/layers.h"
#include "metalm/nn/multiway.h"
#include "metalm/nn/positions.h"

namespace metalm::nn {

// Stochastic depth (timm DropPath, as TorchScale): each sample of the batch (dim 0) keeps its
// residual branch with probability 1 - p, scaled by 1 / (1 - p), or drops it whole. Identity
// when !training or p == 0. The mask depends only on the generator state (D7).
Tensor drop_path(const Tensor& x, double p, Generator& gen, bool training = true);

// ------------------------------------------------------------------ layers

// Every switch of one layer. Built from a config by encoder_layer_options/decoder_layer_options;
// tests may set fields by hand.
struct TransformerLayerOptions {
  int64_t embed_dim = 0, num_heads = 0, ffn_dim = 0;
  ops::Activation activation = ops::Activation::gelu;
  double dropout = 0.0, attention_dropout = 0.0, activation_dropout = 0.0;
  double drop_path = 0.0;       // this layer's stochastic-depth probability
  bool normalize_before = true;  // Pre-LN (true) or Post-LN (false)
  bool subln = false;            // inner_attn_ln (self-attention) + ffn_layernorm
  double alpha = 1.0;            // residual multiplier (DeepNorm)
  double layernorm_eps = 1e-5;
  bool xpos = false;
  int64_t xpos_scale_base = 512;
  bool cross_attention = false;  // decoder of an encoder-decoder: encoder_attn sublayer
  int64_t encoder_embed_dim = 0;  // key/value width of encoder_attn (0 = embed_dim)
  // Multiway experts (1 = none): attention projections + inner_attn_ln (also encoder_attn),
  // self_attn_layer_norm, and the FFN with its final_layer_norm (3 = with the VL expert C).
  int attn_experts = 1, attn_ln_experts = 1, ffn_experts = 1;
  double layer_scale_init = 0.0;  // > 0: LayerScale gammas gamma_1 / gamma_2
};

// Encoder layer i of an encoder (role encoder_only, or encdec_encoder with decoder_layers).
// Multiway: everything A/B (decoupled), or with multiway_shared_attention only the FFN and
// final_layer_norm; VL layers (is_vl_layer) get the C expert on those two.
TransformerLayerOptions encoder_layer_options(const EncoderConfig& cfg, int64_t layer,
                                              StackRole role = StackRole::encoder_only,
                                              int64_t decoder_layers = 0);
// Decoder layer i (role decoder_only, or encdec_decoder: cross-attention, alpha (3M)^¼).
// Multiway only gives the attention projections (unused) B copies, as TorchScale does.
TransformerLayerOptions decoder_layer_options(const DecoderConfig& cfg, int64_t layer,
                                              StackRole role = StackRole::decoder_only,
                                              int64_t encoder_layers = 0);

// What varies per call of a layer. The masks are built once per call by the stack (from the
// batch's positions, segments and padding) and read by every layer: nothing is copied field by
// field on the way down to the attention op.
struct LayerInputs {
  Route route{-1, false};  // multiway routing; default all A (TorchScale's initial split -1)
  const ops::AttentionMask* self_mask = nullptr;  // null: every key; bias = relative bias
  KVCache* cache = nullptr;                       // incremental decoding
  Tensor encoder_out;  // [B, S, d_enc]: cross-attention keys/values (encoder-decoder only)
  const ops::AttentionMask* cross_mask = nullptr;  // with encoder_out: its padding, bias
  KVCache* cross_cache = nullptr;  // cross-attention keys/values of encoder_out (static)
};

// One block (spec 1.3). Per sublayer: residual = x; [LN_pre]; sublayer; dropout; drop_path;
// x = residual * alpha + x; [LN_post]. Order: self-attention, (cross-attention), FFN.
class TransformerLayer : public Module {
 public:
  TransformerLayer(const TransformerLayerOptions& options, Generator& init_gen);
  Tensor forward(const Tensor& x, const LayerInputs& in);  // [B, T, d] -> [B, T, d]

  TransformerLayerOptions options;
  std::shared_ptr<MultiheadAttention> self_attn, encoder_attn;  // encoder_attn may be null
  Experts<LayerNorm> self_attn_layer_norm, final_layer_norm;
  std::shared_ptr<LayerNorm> encoder_attn_layer_norm;  // null without cross-attention
  Experts<FeedForwardNetwork> ffn;
  Tensor gamma_1, gamma_2;  // LayerScale, undefined unless layer_scale_init > 0

 private:
  Tensor residual_add(const Tensor& residual, Tensor branch, const Tensor& gamma);
  Generator &dropout_gen_, &drop_path_gen_;
};

class EncoderLayer : public TransformerLayer {
 public:
  EncoderLayer(const EncoderConfig& cfg, int64_t layer, Generator& init_gen,
               StackRole role = StackRole::encoder_only, int64_t decoder_layers = 0)
      : TransformerLayer(encoder_layer_options(cfg, layer, role, decoder_layers), init_gen) {}
};

class DecoderLayer : public TransformerLayer {
 public:
  DecoderLayer(const DecoderConfig& cfg, int64_t layer, Generator& init_gen,
               StackRole role = StackRole::decoder_only, int64_t encoder_layers = 0)
      : TransformerLayer(decoder_layer_options(cfg, layer, role, encoder_layers), init_gen) {}
};

}  // namespace metalm::nn
