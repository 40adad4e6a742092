// TorchScale's Transformer layers and stacks (reference-spec 1.3-1.5, 2.1-2.2, 3.3): one layer
// template covering Pre-LN, Post-LN, DeepNorm and SubLN (MAGNETO) with multiway experts and the
// optional vision-language FFN expert, the Encoder and Decoder stacks with embeddings, positions,
// relative bias, docking and the output projection, KV-cache incremental decoding, and the §1.4
// initialisation. Parameter names are TorchScale's state-dict keys (D3).
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
  std::string activation = "gelu";
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

// What varies per call of a layer.
struct LayerInputs {
  Route route{-1, false};  // multiway routing; default all A (TorchScale's initial split -1)
  ops::AttnMaskKind mask = ops::AttnMaskKind::full;  // self-attention mask
  int64_t prefix_len = 0;
  Tensor segment_ids;      // i32 [B, T] for segment masks
  Tensor key_padding;      // u8 [B, T] self-attention key padding (1 = pad)
  Tensor rel_bias;         // [1, H, Tq, Tk] self-attention relative bias
  KVCache* cache = nullptr;
  KVCache* cross_cache = nullptr;  // cross-attention keys/values of encoder_out (static)
  Tensor encoder_out;      // [B, S, d_enc]: cross-attention keys/values
  Tensor encoder_padding;  // u8 [B, S]
  Tensor cross_rel_bias;   // [1, H, Tq, S]
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
  Generator dropout_gen_, drop_path_gen_;
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

// ------------------------------------------------------------------ initialisation (spec 1.4)

// fairseq init_bert_params: every Linear weight N(0, 0.02) with zero bias, every Embedding
// N(0, 0.02) with its padding row zeroed (multiway copies included).
void bert_init(Module& m, Generator& gen);
// Multiplies every parameter whose name contains fc1, fc2, out_proj or v_proj (weights and
// biases, all experts) by `factor`, skipping names containing encoder_attn when
// skip_encoder_attn (the enc-dec decoder under SubLN). Returns the scaled names, in order.
std::vector<std::string> scale_init_parameters(Module& m, double factor, bool skip_encoder_attn);

// ------------------------------------------------------------------ stacks

// Where a stack sits and what it shares with the outside.
struct StackOptions {
  StackRole role = StackRole::encoder_only;  // or decoder_only / encdec_*
  int64_t other_layers = 0;  // the other stack's depth for the encdec_* roles (§1.4 formulas)
  // A token embedding owned elsewhere (TorchScale passes it in); it is still registered as
  // "embed_tokens" here. null: the stack builds its own (TextEmbedding init, spec 1.3).
  std::shared_ptr<Embedding> embed_tokens;
};

// The result of a stack's forward.
struct StackOutput {
  Tensor features;  // [B, T, d] after the final layer_norm (if any)
  Tensor logits;    // [B, T, vocab] unless features_only or no output layer
};

struct EncoderInputs {
  Tensor tokens;            // i64 [B, T]; or undefined with token_embeddings
  Tensor token_embeddings;  // [B, T, d] used instead of embed_tokens(tokens) (vision input)
  Tensor padding_mask;      // u8 [B, T], 1 = pad (TorchScale: none unless given)
  Route route{-1, false};   // multiway_split_position (+ VL flag); default all A
  ops::AttnMaskKind mask = ops::AttnMaskKind::full;
  int64_t prefix_len = 0;
  Tensor dock_mask;      // u8 [B, T]: rows replaced by dock_features (spec 3.3)
  Tensor dock_features;  // [count(dock_mask), d]
  bool features_only = false;
};

// TorchScale's Encoder (bidirectional). Built with default init, then bert_init if configured,
// then the DeepNorm / SubLN scaling (scaled_parameter_names() lists what it touched).
class Encoder : public Module {
 public:
  Encoder(const EncoderConfig& cfg, Generator& init_gen, const StackOptions& stack = {});
  StackOutput forward(const EncoderInputs& in);

  // x = embed_scale * (tokens' embeddings, docked rows overwritten) + positions
  //     -> [layernorm_embedding] -> dropout   ([B, T, d])
  Tensor forward_embedding(const EncoderInputs& in);
  const std::vector<std::string>& scaled_parameter_names() const { return scaled_names_; }

  EncoderConfig config;
  StackOptions stack;
  std::shared_ptr<Embedding> embed_tokens;  // null without vocabulary
  std::shared_ptr<LearnedPositionalEmbedding> learned_positions;  // "embed_positions"
  std::shared_ptr<SinusoidalPositionalEmbedding> sinusoidal_positions;  // "embed_positions"
  Experts<LayerNorm> layernorm_embedding, layer_norm;
  std::vector<std::shared_ptr<EncoderLayer>> layers;
  std::shared_ptr<RelativePositionBias> relative_position;
  std::shared_ptr<Linear> output_projection;  // null when tied, absent or no_output_layer

 private:
  std::vector<std::string> scaled_names_;
  Generator dropout_gen_;
};

class Decoder;

// The per-layer KV caches of one decoding run, preallocated to `capacity` positions.
// An encoder-decoder decoder also keeps, per layer, the cross-attention keys and values of the
// encoder output: projected once, at the first call, and reused by every later step (fairseq's
// static_kv), so the encoder_out given to later calls is not read again. reset() drops them
// (a new sequence brings a new encoder output); truncate() keeps them.
class IncrementalState {
 public:
  IncrementalState(const Decoder& decoder, int64_t batch, int64_t capacity);
  int64_t length() const { return caches_.front().length(); }  // positions already processed
  int64_t capacity() const { return caches_.front().capacity(); }
  KVCache& layer(size_t i) { return caches_.at(i); }
  // Layer i's cross-attention cache, allocated for `source_length` keys at the first call.
  KVCache& cross_layer(size_t i, int64_t source_length);
  void reset();
  void truncate(int64_t length);

 private:
  int64_t batch_ = 0, heads_ = 0, head_dim_ = 0;
  std::vector<KVCache> caches_;
  std::vector<std::unique_ptr<KVCache>> cross_;
};

struct DecoderInputs {
  // i64 [B, T]: the whole sequence, or with a state only the new tokens (one or a chunk).
  Tensor tokens;
  Tensor token_embeddings;  // [B, T, d] used instead of embed_tokens(tokens)
  Tensor dock_mask;         // u8 [B, T] over `tokens`: rows replaced by dock_features (3.3)
  Tensor dock_features;     // [count(dock_mask), d]
  Tensor encoder_out;       // [B, S, d] for a cross-attention decoder
  Tensor encoder_padding;   // u8 [B, S]
  IncrementalState* state = nullptr;
  bool features_only = false;
};

// TorchScale's Decoder (causal). Incremental decoding: pass a state and only the new tokens;
// positions, xPos offsets and the relative bias rows continue from state->length(). With an
// empty state the call is exactly the full forward (prefill). Sinusoidal positions of later
// chunks are padding_idx + length + 1 + i (fairseq's incremental rule: padding not counted).
class Decoder : public Module {
 public:
  Decoder(const DecoderConfig& cfg, Generator& init_gen,
          const StackOptions& stack = {StackRole::decoder_only, 0, nullptr});
  StackOutput forward(const DecoderInputs& in);

  Tensor forward_embedding(const DecoderInputs& in, int64_t start);  // -> [B, T, d]
  // Logits from features: output_projection, or x · embed_tokens.weightᵀ when tied.
  Tensor output_layer(const Tensor& features) const;
  const std::vector<std::string>& scaled_parameter_names() const { return scaled_names_; }

  DecoderConfig config;
  StackOptions stack;
  std::shared_ptr<Embedding> embed_tokens;
  std::shared_ptr<LearnedPositionalEmbedding> learned_positions;       // "embed_positions"
  std::shared_ptr<SinusoidalPositionalEmbedding> sinusoidal_positions;  // "embed_positions"
  std::shared_ptr<LayerNorm> layernorm_embedding, layer_norm;
  std::vector<std::shared_ptr<DecoderLayer>> layers;
  std::shared_ptr<RelativePositionBias> self_attn_relative_position, cross_attn_relative_position;
  std::shared_ptr<Linear> output_projection;  // null when tied or absent

 private:
  std::vector<std::string> scaled_names_;
  Generator dropout_gen_;
};

// TorchScale state dicts of a tied model carry the projection twice ("output_projection.weight"
// next to "embed_tokens.weight"). Returns `state` without that duplicate when `model` is tied
// (after checking the two tensors are equal), else `state` unchanged.
StateDict drop_tied_output_projection(const StateDict& state, bool tied);

}  // namespace metalm::nn
