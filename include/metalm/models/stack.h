// TorchScale's Encoder and Decoder stacks (reference-spec 1.3-1.5, 2.1, 3.3, 5) on one core:
// token embeddings (or given embeddings) with docking, positions, layers, final LayerNorm,
// output projection and the 1.4 initialisation are written once in Stack; Encoder adds padding
// zeroing and multiway stack norms, Decoder adds incremental decoding and cross-attention.
//
// One mask path: a call's StackInputs carry the batch's per-token layout (positions, segment ids,
// padding), as llama.cpp's llama_batch does. The stack builds one ops::AttentionMask from it per
// call (plus the relative bias) and every layer reads that mask, so packed examples, left-padded
// batches and prefix blocks need no flag threaded through the layers.
//
// Names (D3): "embed_tokens", "embed_positions", "layernorm_embedding", "layers.<i>....",
// "layer_norm", "relative_position" (encoder) / "self_attn_relative_position" and
// "cross_attn_relative_position" (decoder), "output_projection".
#pragma once
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "metalm/models/model.h"
#include "metalm/nn/config.h"
#include "metalm/nn/init.h"
#include "metalm/nn/kv_cache.h"
#include "metalm/nn/positions.h"
#include "metalm/nn/transformer.h"

namespace metalm::models {

class IncrementalState;

// The spans one docked encoder encodes in a call of a composite model (MetaLM): S sequences,
// each [<s>] + a span's tokens, padded to L.
struct SpanInputs {
  std::string encoder;  // the docked encoder's name (ModelConfig::encoders)
  Tensor tokens;        // i64 [S, L]
  Tensor padding;       // u8 [S, L], 1 = pad; or undefined
  Tensor select;        // u8 [S, L]: the encoder outputs that dock, in row-major order (the
                        // span tokens: not <s>, not pads)
  Tensor target;        // u8 [B, T]: the decoder positions they replace, in row-major order;
                        // as many as select has
};

// One call of a stack or a model.
struct StackInputs {
  Tensor tokens;            // i64 [B, T]; or undefined with token_embeddings
  Tensor token_embeddings;  // [B, T, d] used instead of embed_tokens(tokens) (vision input)

  // ---- the batch's layout: one mask is built from it ----
  // Position of each token, 0-based, i64 [B, T]; read by the absolute position tables only
  // (learned: row offset + p; sinusoidal: row padding_idx + 1 + p). Undefined: the index in the
  // sequence (TorchScale), continuing each row's last cached position with a state; for
  // sinusoidal positions without a state, fairseq's pad-aware make_positions from the tokens.
  // The relative encodings (xPos, T5 bias) depend only on distances and use the sequence index.
  Tensor positions;
  // Segment of each token, i32 [B, T]: attention stays inside a segment, so examples packed
  // into one row do not see each other. With a state, new tokens continue the row's segment.
  Tensor segment_ids;
  // 1 = padding, u8 [B, T]: never attended as a key. The encoder also zeroes its rows
  // (TorchScale's x *= 1 - padding_mask).
  Tensor padding;
  // Keys j < prefix_len are visible to every query (a bidirectional prefix; the rest stays
  // causal in a decoder, UniLM / BEiT-3 captioning). 0 = none. Not with segment_ids.
  int64_t prefix_len = 0;

  nn::Route route{-1, false};         // multiway routing (encoders); default all A
  Tensor dock_mask;                   // u8 [B, T]: rows replaced by dock_features (spec 3.3)
  Tensor dock_features;               // [count(dock_mask), d]
  Tensor encoder_out;                 // [B, S, d_enc] for a cross-attention decoder
  Tensor encoder_padding;             // u8 [B, S]
  IncrementalState* state = nullptr;  // decoder: with a state, `tokens` are the new ones only
  bool features_only = false;
  std::vector<SpanInputs> spans;  // composite models only (a stack refuses them)
};

struct StackOutput {
  Tensor features;  // [B, T, d] after the final layer_norm (if any)
  Tensor logits;    // [B, T, vocab] unless features_only or no output layer
};

// Where a stack sits and what it shares with the outside.
struct StackOptions {
  nn::StackRole role = nn::StackRole::encoder_only;  // fixed to decoder_only for Decoder default
  int64_t other_layers = 0;  // the other stack's depth for the encdec_* roles (1.4 formulas)
  // A token embedding owned elsewhere (TorchScale passes it in); it is still registered as
  // "embed_tokens" here. null: the stack builds its own (TextEmbedding init, spec 1.3).
  std::shared_ptr<nn::Embedding> embed_tokens;
};

// The core both stacks share.
class Stack : public Model {
 public:
  const nn::StackConfig& stack_config() const { return *cfg_; }
  // Logits from features: output_projection, or x embed_tokens.weight^T when tied.
  Tensor output_layer(const Tensor& features) const;
  // The parameters the DeepNorm / SubLN init scaled (1.4).
  const std::vector<std::string>& scaled_parameter_names() const { return scaled_names_; }

  StackOptions stack;
  std::shared_ptr<nn::Embedding> embed_tokens;                        // null without vocabulary
  std::shared_ptr<nn::LearnedPositionalEmbedding> learned_positions;  // "embed_positions"
  std::shared_ptr<nn::SinusoidalPositionalEmbedding> sinusoidal_positions;  // "embed_positions"
  nn::Experts<nn::LayerNorm> layernorm_embedding, layer_norm;  // multiway in an encoder
  std::vector<std::shared_ptr<nn::TransformerLayer>> layers;
  std::shared_ptr<nn::RelativePositionBias> relative_position;             // self-attention bias
  std::shared_ptr<nn::RelativePositionBias> cross_attn_relative_position;  // enc-dec decoder
  std::shared_ptr<nn::Linear> output_projection;  // null when tied, absent or no_output_layer

 protected:
  // What differs between the stacks at construction (all in TorchScale's construction order).
  struct Parts {
    int norm_experts = 1;  // layernorm_embedding / layer_norm experts
    bool final_layer_norm = false;
    std::function<nn::TransformerLayerOptions(int64_t layer)> layer_options;
    const char* relative_position_name = "relative_position";
    bool cross_relative_position = false;    // also "cross_attn_relative_position"
    bool skip_encoder_attn_scaling = false;  // the enc-dec decoder under SubLN
  };
  // cfg is read during construction only; the derived class then binds its own copy.
  Stack(const nn::StackConfig& cfg, const StackOptions& options, const Parts& parts,
        Generator& gen);
  void bind_config(const nn::StackConfig& cfg) { cfg_ = &cfg; }

  // embed_scale * (token embeddings, docked rows overwritten) + positions
  //   -> [layernorm_embedding] -> dropout.  positions: i64 [B, T] 0-based, or undefined for
  // the default rule (see StackInputs::positions) with the sequence starting at `start`.
  Tensor embed(const StackInputs& in, const Tensor& positions, int64_t start);
  // Layers (each reading `li`), final LayerNorm, logits.
  StackOutput run_layers(Tensor x, nn::LayerInputs li, const StackInputs& in,
                         const std::function<void(size_t, nn::LayerInputs&)>& per_layer);

 private:
  const nn::StackConfig* cfg_;  // the derived class's config member
  std::vector<std::string> scaled_names_;
  Generator& dropout_gen_;
};

// TorchScale's Encoder (bidirectional). Built with default init, then bert_init if configured,
// then the DeepNorm / SubLN scaling (scaled_parameter_names() lists what it touched).
class Encoder : public Stack {
 public:
  Encoder(const nn::EncoderConfig& cfg, Generator& init_gen, const StackOptions& stack = {});
  StackOutput run(const StackInputs& in) override;
  ModelConfig model_config() const override { return ModelConfig::single(config); }

  nn::EncoderConfig config;
};

class Decoder;

// The state of one decoding run: per-layer KV caches preallocated to `capacity` positions, and
// per cached position its token's position, segment and padding flag (the key side of the
// next calls' masks). An encoder-decoder decoder also keeps, per layer, the cross-attention
// keys and values of the encoder output: projected once, at the first call, and reused by
// every later step (fairseq's static_kv), so the encoder_out given to later calls is not read
// again. reset() drops everything (a new sequence); truncate() keeps the cross-attention part.
class IncrementalState {
 public:
  IncrementalState(const Decoder& decoder, int64_t batch, int64_t capacity);
  int64_t batch() const { return batch_; }
  int64_t length() const { return length_; }  // positions already processed
  int64_t capacity() const { return capacity_; }
  nn::KVCache& layer(size_t i) { return caches_.at(i); }
  // Layer i's cross-attention cache, allocated for `source_length` keys at the first call.
  nn::KVCache& cross_layer(size_t i, int64_t source_length);
  void reset();
  void truncate(int64_t length);  // every layer and the layout
  // Row b continues what row rows[b] held (every layer's cache, cross-attention caches and
  // the layout); the batch becomes rows.size(). Beam search's reorder of surviving hypotheses,
  // and its expansion of a one-row prompt to the beams (rows {0, 0, ...}).
  void select_rows(const std::vector<int64_t>& rows);

  // ---- the layout (Decoder::forward keeps it; read by it to build masks) ----
  // Records T new positions; undefined tensors take the defaults (continuing positions, the
  // row's last segment, no padding). Returns the new tokens' positions, i64 [B, T].
  Tensor append_layout(int64_t T, const Tensor& positions, const Tensor& segment_ids,
                       const Tensor& padding);
  Tensor key_padding() const;  // u8 [B, length], undefined if no padding was ever given
  Tensor segment_ids() const;  // i32 [B, length], undefined if no segments were ever given

 private:
  int64_t batch_ = 0, heads_ = 0, head_dim_ = 0, capacity_ = 0, length_ = 0;
  std::vector<nn::KVCache> caches_;
  std::vector<std::unique_ptr<nn::KVCache>> cross_;
  Tensor positions_, segments_, padding_;  // [B, capacity] i64, i32, u8
  bool has_segments_ = false, has_padding_ = false;
};

// TorchScale's Decoder (causal). Incremental decoding: pass a state and only the new tokens;
// positions, xPos offsets and the relative bias rows continue from state->length(). With an
// empty state the call is exactly the full forward (prefill).
class Decoder : public Stack {
 public:
  Decoder(const nn::DecoderConfig& cfg, Generator& init_gen,
          const StackOptions& stack = {nn::StackRole::decoder_only, 0, nullptr});
  StackOutput run(const StackInputs& in) override;
  ModelConfig model_config() const override { return ModelConfig::single(config); }

  nn::DecoderConfig config;
};

// Positions that skip padding: for padding u8 [B, T], each token's count of non-padding tokens
// before it in its row (i64 [B, T]; padding itself gets 0). What a left-padded batch passes as
// StackInputs::positions so that each row's tokens sit where they would alone.
Tensor positions_after_padding(const Tensor& padding);

// TorchScale state dicts of a tied model carry the projection twice ("output_projection.weight"
// next to "embed_tokens.weight"). Returns `state` without that duplicate when `tied` (after
// checking the two tensors are equal), else `state` unchanged.
TensorMap drop_tied_output_projection(const TensorMap& state, bool tied);

}  // namespace metalm::models
