// Architecture configuration of one Transformer stack: TorchScale's EncoderConfig and
// DecoderConfig with the same JSON field names and defaults (reference-spec 1.1, DESIGN D3), its
// post-processing rules (1.2) and strict validation. Each config declares its fields once in an
// io::FieldTable (config.cpp); the JSON reader, writer and the unknown-field check come from it.
// Composite models (MetaLM, KOSMOS, BEiT-3 with heads) are described in models/config.h, whose
// stacks are these.
//
// Member names: the fields both stacks have live in StackConfig under one name
// (StackConfig::embed_dim is "encoder_embed_dim" in an encoder's JSON and "decoder_embed_dim" in a
// decoder's), so that layer construction, embeddings and init are written once for both stacks.
// Every other member is named exactly as its TorchScale field.
//
// Why strict: a config is the one place where a typo ("decoder_embd_dim") would otherwise build
// a silently different model, so every key must be known, typed and in range. The JSON written by
// to_json() is also a valid TorchScale kwargs dict: TorchScale pops the fields it knows and
// ignores the rest (our extensions).
//
// Decisions (see each field's comment for the details):
// - DeepNorm decoder [quirk, 1.2]. TorchScale's DecoderConfig post-processing writes
//   encoder_normalize_before, a field a decoder never reads, so DecoderConfig(deepnorm=True) is a
//   Pre-LN decoder with alpha-scaled residuals: neither the DeepNet paper's Post-LN decoder nor
//   what TorchScale's own tests build. We apply the rules to decoder_normalize_before (paper
//   behaviour, and what the kosmos-2 fork does). torchscale_deepnorm_decoder_quirk = true
//   reproduces TorchScale exactly (to load a checkpoint trained with the quirk).
// - Relative position bias: TorchScale silently disables it unless both rel_pos_buckets and
//   max_rel_pos are > 0; setting exactly one is almost surely a mistake, so it is an error here.
// - Not supported yet, rejected rather than ignored: MoE (moe_freq, moe_expert_count, use_xmoe)
//   and LongNet dilated attention (segment_length, dilated_ratio, seq_parallel). Their fields are
//   accepted with their TorchScale defaults so TorchScale configs load.
#pragma once
#include <cstdint>
#include <string>

#include "metalm/io/json.h"
#include "metalm/ops/activation.h"

namespace metalm::nn {

// Absolute positions added to the token embeddings (metalm extension: TorchScale receives the
// position module from its caller, so its config has no field for it).
enum class PositionKind {
  learned,     // learned table indexed from row 2, as TorchScale's PositionalEmbedding (5.4)
  sinusoidal,  // fairseq sinusoidal table offset by padding_idx (5.3), as the KOSMOS-2 LM
  none,        // no absolute positions (e.g. xPos alone, or relative bias alone)
};
const char* position_kind_name(PositionKind kind);  // "learned", "sinusoidal", "none"

// What both stacks have. JSON names in the comments: <s> is "encoder" or "decoder".
struct StackConfig {
  int64_t embed_dim = 768;                // <s>_embed_dim
  int64_t attention_heads = 12;           // <s>_attention_heads
  int64_t ffn_embed_dim = 3072;           // <s>_ffn_embed_dim
  int64_t layers = 12;                    // <s>_layers
  bool normalize_before = true;           // <s>_normalize_before: Pre-LN; see postprocess()
  int64_t max_positions = 1024;           // max_source_positions / max_target_positions
  bool share_input_output_embed = false;  // share_<s>_input_output_embed

  // ---- TorchScale fields spelled the same in both configs ----
  ops::Activation activation_fn = ops::Activation::gelu;  // relu, gelu, swish, ... (ops names)
  double dropout = 0.0;
  double drop_path_rate = 0.0;  // stochastic depth; layer i uses linspace(0, rate, layers)[i]
  double attention_dropout = 0.0;
  double activation_dropout = 0.0;
  bool no_scale_embedding = true;  // false: token embeddings are multiplied by sqrt(d)
  bool layernorm_embedding = false;
  int64_t moe_freq = 0;  // MoE is not supported yet: must stay 0
  bool moe_top1_expert = false;
  int64_t moe_expert_count = 0;  // must stay 0
  bool moe_gating_use_fp32 = true;
  double moe_eval_capacity_token_fraction = 0.25;
  std::string moe_second_expert_policy = "random";  // sampling, random or all
  bool moe_normalize_gate_prob_before_dropping = false;
  bool use_xmoe = false;        // must stay false (TorchScale asserts MoE layers exist when set)
  int64_t rel_pos_buckets = 0;  // T5 relative bias (5.2): both these > 0, or both 0
  int64_t max_rel_pos = 0;
  bool deepnorm = false;  // Post-LN with alpha residual and beta init; wins over subln
  bool subln = true;      // MAGNETO Sub-LayerNorm; forces Pre-LN
  bool bert_init = false;
  bool multiway = false;  // encoder: A (vision) / B (language) experts per module (2.1);
                          // decoder: only unused B copies of its attention projections
  bool no_output_layer = false;
  double layernorm_eps = 1e-5;
  int64_t vocab_size = -1;  // > 0 for text; -1: no token embedding (vision encoder)
  bool checkpoint_activations = false;  // fairscale wrappers in TorchScale: accepted, no effect
  bool fsdp = false;
  int64_t ddp_rank = 0;
  bool xpos_rel_pos = false;  // xPos in self-attention (5.1); needs an even head dim
  int64_t xpos_scale_base = 512;
  bool flash_attention = false;  // accepted and ignored: our attention op is always the fused one
  // segment_length, dilated_ratio (null) and seq_parallel (false/null): LongNet, JSON-only,
  // rejected unless at their defaults, so no members.

  // ---- metalm extensions (TorchScale ignores these keys) ----
  PositionKind positions = PositionKind::learned;  // learned keeps TorchScale/BEiT-3 parity
  int64_t padding_idx = 1;  // pad token id (fairseq convention); -1 = no pad token

  // ---- derived ----
  int64_t head_dim() const { return embed_dim / attention_heads; }
  bool has_rel_pos() const { return rel_pos_buckets > 0 && max_rel_pos > 0; }
  bool has_output_layer() const { return !no_output_layer && vocab_size > 0; }
  double embed_scale() const;  // 1, or sqrt(d) when !no_scale_embedding
  // torch.linspace(0, drop_path_rate, layers)[layer] as TorchScale computes it (f32).
  double drop_path_prob(int64_t layer) const;
};

// The bidirectional stack: text (BERT-like), vision (ViT, BEiT-3 vision embedding) or multiway.
struct EncoderConfig : StackConfig {
  static constexpr const char* kPrefix = "encoder";

  bool normalize_output = true;  // final LayerNorm after the stack, only when Pre-LN
  int64_t img_size = 224;        // BEiT-3 vision embedding: image side, patch side, channels
  int64_t patch_size = 16;
  int64_t in_chans = 3;

  // ---- metalm extensions ----
  // Number of top layers whose FFN is replaced, for vision-language input, by a third VL expert
  // shared by all tokens (VLMo / BEiT-3 paper, 2.2); lower layers split by modality. 0 is the
  // released BEiT-3 design with two experts everywhere. Needs multiway.
  int64_t multiway_vl_layers = 0;
  // true: one set of attention projections (q/k/v/out, inner_attn_ln) and one
  // self_attn_layer_norm shared by all modalities, as in the VLMo and BEiT-3 papers; only the
  // FFN and final_layer_norm are per expert. false: the released "decoupled" design where the
  // attention parameters are per expert too (2.1). Needs multiway.
  bool multiway_shared_attention = false;
  // Initial value of VLMo/CaiT LayerScale: per-channel gammas multiplying the attention and FFN
  // branches before the residual add. 0 = no gammas (TorchScale).
  double layer_scale_init = 0.0;

  bool has_final_layer_norm() const { return normalize_before && normalize_output; }
  int64_t num_patches() const;  // (img_size / patch_size)^2
  // For an encoder-only model (1.4; inside an encoder-decoder see nn/init.h): the residual
  // multiplier alpha (1 unless deepnorm), and the factor applied to every parameter named fc1,
  // fc2, out_proj or v_proj after init (1/init_scale with deepnorm, gamma with subln, else 1).
  double residual_alpha() const;
  double init_weight_gain() const;
  bool is_vl_layer(int64_t layer) const { return layer >= layers - multiway_vl_layers; }
};

// The causal stack (GPT-like LM, MetaLM's universal task layer, the KOSMOS LM).
struct DecoderConfig : StackConfig {
  static constexpr const char* kPrefix = "decoder";

  // false (default): deepnorm / subln set decoder_normalize_before (the paper's Post-LN DeepNet
  // decoder). true: they leave it alone, exactly like TorchScale's DecoderConfig (header note).
  bool torchscale_deepnorm_decoder_quirk = false;

  bool has_final_layer_norm() const { return normalize_before; }
  double residual_alpha() const;    // decoder-only model (1.4)
  double init_weight_gain() const;  // decoder-only model (1.4)
};

// ---- 1.2 post-processing and validation ----

// In order: (1) deepnorm -> normalize_before = false, subln = false; (2) then subln ->
// normalize_before = true, deepnorm = false, so deepnorm wins over the default subln = true;
// (3) use_xmoe -> moe_normalize_gate_prob_before_dropping = true, policy "random" (kept for
// fidelity; validate() rejects use_xmoe). Idempotent. For the decoder, the quirk flag keeps
// decoder_normalize_before untouched by (1) and (2), as TorchScale does.
void postprocess(EncoderConfig& cfg);
void postprocess(DecoderConfig& cfg);

// Throws ValueError "[config] <source>: <field>: <problem>" for the first bad value. Checks sizes
// (> 0, at most 2^31-1), embed_dim % heads, probabilities in [0, 1), the rel-pos pair, xPos head
// dim parity, vocabulary and padding index, multiway extensions, layernorm_eps, img_size %
// patch_size, the unsupported MoE settings, and that postprocess() has run (deepnorm, subln and
// *_normalize_before agree), since layers read those three as reconciled.
void validate(const EncoderConfig& cfg, const io::JsonWhere& where = {"config", ""});
void validate(const DecoderConfig& cfg, const io::JsonWhere& where = {"config", ""});

// ---- JSON ----

// Parses {"model_type"?: "encoder", fields...}: starts from the defaults, sets the given fields,
// then runs postprocess() and validate(). Throws ValueError for a non-object, unknown fields (all
// listed, each with the closest known name when one is near; a field of the other stack says so),
// wrong JSON types, a model_type other than this one, and every validate() error.
EncoderConfig encoder_config_from_json(const io::Json& j,
                                       const io::JsonWhere& where = {"config", ""});
DecoderConfig decoder_config_from_json(const io::Json& j,
                                       const io::JsonWhere& where = {"config", ""});
// Every field (TorchScale and extensions) plus "model_type", so the result is self-describing.
io::Json to_json(const EncoderConfig& cfg);
io::Json to_json(const DecoderConfig& cfg);

}  // namespace metalm::nn
