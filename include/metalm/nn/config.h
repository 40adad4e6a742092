// Architecture configuration: TorchScale's EncoderConfig / DecoderConfig with the same field names
// and defaults (reference-spec §1.1, DESIGN D3), its post-processing rules (§1.2), strict JSON
// validation, config files, and the derived quantities layers need (head dim, §1.4 init scalings).
//
// Why strict: a config is the one place where a typo ("decoder_embd_dim") would otherwise build a
// silently different model, so every key must be known, typed and in range. The JSON written by
// to_json() is also a valid TorchScale kwargs dict: TorchScale pops the fields it knows and
// ignores the rest (our extensions).
//
// Decisions (see each field's comment for the details):
// - DeepNorm decoder [quirk, §1.2]. TorchScale's DecoderConfig post-processing writes
//   encoder_normalize_before, a field a decoder never reads, so DecoderConfig(deepnorm=True) is a
//   Pre-LN decoder with α-scaled residuals: neither the DeepNet paper's Post-LN decoder nor what
//   TorchScale's own tests build (they pass decoder_normalize_before=False by hand). We apply the
//   rules to decoder_normalize_before (paper behaviour, and what the kosmos-2 fork does). Setting
//   torchscale_deepnorm_decoder_quirk = true reproduces TorchScale exactly (needed to load a
//   checkpoint trained with the quirk: its final layer_norm and LN placement differ).
// - Relative position bias: TorchScale silently disables it unless both rel_pos_buckets and
//   max_rel_pos are > 0; setting exactly one is almost surely a mistake, so it is an error here.
// - Not supported yet, rejected rather than ignored: MoE (moe_freq, moe_expert_count, use_xmoe)
//   and LongNet dilated attention (segment_length, dilated_ratio, seq_parallel). Their fields are
//   accepted with their TorchScale defaults so TorchScale configs load.
#pragma once
#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <variant>

namespace metalm::nn {

// Absolute positions added to the token embeddings (metalm extension: TorchScale receives the
// position module from its caller, so its config has no field for it).
enum class PositionKind {
  learned,     // learned table indexed from row 2, as TorchScale's PositionalEmbedding (§5.4)
  sinusoidal,  // fairseq sinusoidal table offset by padding_idx (§5.3), as the KOSMOS-2 LM
  none,        // no absolute positions (e.g. xPos alone, or relative bias alone)
};
const char* position_kind_name(PositionKind kind);  // "learned", "sinusoidal", "none"

// The bidirectional stack: text (BERT-like), vision (ViT, BEiT-3 vision embedding) or multiway.
struct EncoderConfig {
  // ---- TorchScale EncoderConfig fields: exact names and defaults ----
  int64_t encoder_embed_dim = 768;
  int64_t encoder_attention_heads = 12;
  int64_t encoder_ffn_embed_dim = 3072;
  int64_t encoder_layers = 12;
  bool encoder_normalize_before = true;  // Pre-LN; forced by subln / deepnorm (postprocess)
  bool normalize_output = true;          // final LayerNorm after the stack, only when Pre-LN
  std::string activation_fn = "gelu";    // relu, gelu (erf), swish (SiLU), gelu_tanh, quick_gelu
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
  int64_t rel_pos_buckets = 0;  // T5 relative bias (§5.2): both these > 0, or both 0
  int64_t max_rel_pos = 0;
  bool deepnorm = false;  // Post-LN with α residual and β init; wins over subln
  bool subln = true;      // MAGNETO Sub-LayerNorm; forces Pre-LN
  bool bert_init = false;
  bool multiway = false;  // A (vision) / B (language) experts per module (§2.1)
  bool share_encoder_input_output_embed = false;
  int64_t max_source_positions = 1024;
  bool no_output_layer = false;
  double layernorm_eps = 1e-5;
  int64_t vocab_size = -1;  // > 0 for text, or -1 for a vision-only encoder
  int64_t img_size = 224;   // BEiT-3 vision embedding: image side, patch side, channels
  int64_t patch_size = 16;
  int64_t in_chans = 3;
  bool checkpoint_activations = false;  // fairscale wrappers in TorchScale: accepted, no effect
  bool fsdp = false;
  int64_t ddp_rank = 0;
  bool xpos_rel_pos = false;  // xPos in self-attention (§5.1); needs an even head dim
  int64_t xpos_scale_base = 512;
  bool flash_attention = false;  // accepted and ignored: our attention op is always the fused one
  // segment_length, dilated_ratio (null) and seq_parallel (false/null): LongNet, JSON-only,
  // rejected unless at their defaults, so no members.

  // ---- metalm extensions (TorchScale ignores these keys) ----
  PositionKind positions = PositionKind::learned;  // learned keeps TorchScale/BEiT-3 parity
  int64_t padding_idx = 1;  // pad token id (fairseq convention); -1 = no pad token
  // Number of top layers whose FFN is replaced, for vision-language input, by a third VL expert
  // shared by all tokens (VLMo / BEiT-3 paper, §2.2); lower layers split by modality. 0 is the
  // released BEiT-3 design with two experts everywhere. Needs multiway.
  int64_t multiway_vl_layers = 0;
  // true: one set of attention projections (q/k/v/out, inner_attn_ln) and one
  // self_attn_layer_norm shared by all modalities, as in the VLMo and BEiT-3 papers; only the
  // FFN and final_layer_norm are per expert. false: the released "decoupled" design where the
  // attention parameters are per expert too (§2.1). Needs multiway.
  bool multiway_shared_attention = false;
  // Initial value of VLMo/CaiT LayerScale: per-channel gammas multiplying the attention and FFN
  // branches before the residual add. 0 = no gammas (TorchScale).
  double layer_scale_init = 0.0;

  // ---- derived ----
  int64_t head_dim() const { return encoder_embed_dim / encoder_attention_heads; }
  bool has_rel_pos() const { return rel_pos_buckets > 0 && max_rel_pos > 0; }
  bool has_final_layer_norm() const { return encoder_normalize_before && normalize_output; }
  bool has_output_layer() const { return !no_output_layer && vocab_size > 0; }
  double embed_scale() const;   // 1, or sqrt(d) when !no_scale_embedding
  int64_t num_patches() const;  // (img_size / patch_size)^2
  bool is_vl_layer(int64_t layer) const { return layer >= encoder_layers - multiway_vl_layers; }
  double drop_path_prob(int64_t layer) const;  // linspace(0, drop_path_rate, layers)[layer]
  // For an encoder-only model (§1.4; an encoder inside an encoder-decoder uses the free
  // functions below): the residual multiplier α (1 unless deepnorm), and the factor applied to
  // every parameter named fc1, fc2, out_proj or v_proj after init (1/init_scale with deepnorm,
  // γ with subln, else 1).
  double residual_alpha() const;
  double init_weight_gain() const;
};

// The causal stack (GPT-like LM, MetaLM's universal task layer, the KOSMOS LM).
struct DecoderConfig {
  // ---- TorchScale DecoderConfig fields: exact names and defaults ----
  int64_t decoder_embed_dim = 768;
  int64_t decoder_attention_heads = 12;
  int64_t decoder_ffn_embed_dim = 3072;
  int64_t decoder_layers = 12;
  bool decoder_normalize_before = true;  // Pre-LN; see torchscale_deepnorm_decoder_quirk
  std::string activation_fn = "gelu";
  double dropout = 0.0;
  double drop_path_rate = 0.0;
  double attention_dropout = 0.0;
  double activation_dropout = 0.0;
  bool no_scale_embedding = true;
  bool layernorm_embedding = false;
  int64_t moe_freq = 0;
  bool moe_top1_expert = false;
  int64_t moe_expert_count = 0;
  bool moe_gating_use_fp32 = true;
  double moe_eval_capacity_token_fraction = 0.25;
  std::string moe_second_expert_policy = "random";
  bool moe_normalize_gate_prob_before_dropping = false;
  bool use_xmoe = false;
  int64_t rel_pos_buckets = 0;
  int64_t max_rel_pos = 0;
  bool deepnorm = false;
  bool subln = true;
  bool bert_init = false;
  bool multiway = false;  // a TorchScale decoder only gets unused B copies of its projections
  bool share_decoder_input_output_embed = false;
  int64_t max_target_positions = 1024;
  bool no_output_layer = false;
  double layernorm_eps = 1e-5;
  int64_t vocab_size = -1;  // must be set (> 0) unless no_output_layer
  bool checkpoint_activations = false;
  bool fsdp = false;
  int64_t ddp_rank = 0;
  bool xpos_rel_pos = false;
  int64_t xpos_scale_base = 512;
  bool flash_attention = false;

  // ---- metalm extensions (TorchScale ignores these keys) ----
  PositionKind positions = PositionKind::learned;
  int64_t padding_idx = 1;
  // false (default): deepnorm / subln set decoder_normalize_before (the paper's Post-LN DeepNet
  // decoder). true: they leave it alone, exactly like TorchScale's DecoderConfig (header note).
  bool torchscale_deepnorm_decoder_quirk = false;

  // ---- derived ----
  int64_t head_dim() const { return decoder_embed_dim / decoder_attention_heads; }
  bool has_rel_pos() const { return rel_pos_buckets > 0 && max_rel_pos > 0; }
  bool has_final_layer_norm() const { return decoder_normalize_before; }
  bool has_output_layer() const { return !no_output_layer && vocab_size > 0; }
  double embed_scale() const;
  double drop_path_prob(int64_t layer) const;
  double residual_alpha() const;    // decoder-only model (§1.4)
  double init_weight_gain() const;  // decoder-only model (§1.4)
};

// ---- §1.2 post-processing and validation ----

// In order: (1) deepnorm -> normalize_before = false, subln = false; (2) then subln ->
// normalize_before = true, deepnorm = false, so deepnorm wins over the default subln = true;
// (3) use_xmoe -> moe_normalize_gate_prob_before_dropping = true, policy "random" (kept for
// fidelity; validate() rejects use_xmoe). Idempotent. For the decoder, the quirk flag keeps
// decoder_normalize_before untouched by (1) and (2), as TorchScale does.
void postprocess(EncoderConfig& cfg);
void postprocess(DecoderConfig& cfg);

// Throws ValueError "[config] <field>: <problem>" for the first bad value. Checks sizes (> 0,
// at most 2^31-1), embed_dim % heads, probabilities in [0, 1), activation names, the rel-pos
// pair, xPos head dim parity, vocabulary and padding index, multiway extensions, layernorm_eps,
// img_size % patch_size, the unsupported MoE settings, and that postprocess() has run (deepnorm,
// subln and *_normalize_before agree), since layers read those three as reconciled.
void validate(const EncoderConfig& cfg);
void validate(const DecoderConfig& cfg);

// ---- JSON ----

// Parses {"model_type"?: "encoder", fields...}: starts from the defaults, sets the given fields,
// then runs postprocess() and validate(). Throws ValueError for a non-object, unknown fields
// (all listed, each with the closest known name when one is near), wrong JSON types, a
// model_type other than this one, and every validate() error.
EncoderConfig encoder_config_from_json(const nlohmann::json& j);
DecoderConfig decoder_config_from_json(const nlohmann::json& j);
// Every field (TorchScale and extensions) plus "model_type", so the result is self-describing.
nlohmann::json to_json(const EncoderConfig& cfg);
nlohmann::json to_json(const DecoderConfig& cfg);

// ---- files ----

enum class ModelType { encoder, decoder };
const char* model_type_name(ModelType type);  // "encoder", "decoder"

// What a model directory's config.json holds: one of the two configs, told apart by model_type.
struct ArchConfig {
  std::variant<EncoderConfig, DecoderConfig> config;

  ModelType model_type() const;
  // Throw ValueError "[config] model_type: ..." when the config is the other kind.
  const EncoderConfig& encoder() const;
  const DecoderConfig& decoder() const;
  EncoderConfig& encoder();
  DecoderConfig& decoder();
};
ArchConfig arch_config_from_json(const nlohmann::json& j);  // model_type is required
nlohmann::json to_json(const ArchConfig& cfg);

// File loaders: errors name the file ("[config] <path>: <field>: <problem>"). IoError if the file
// cannot be read, FormatError if it is not JSON or is over 1 MiB, ValueError for everything
// else, including a key given twice (which a JSON library would silently resolve to the last).
ArchConfig load_arch_config(const std::string& path);
// The same from the file's text (errors name `source` where they would name the path).
ArchConfig parse_arch_config(const std::string& text, const std::string& source);
EncoderConfig load_encoder_config(const std::string& path);  // model_type optional, if given
DecoderConfig load_decoder_config(const std::string& path);  // it must match
// Writes to_json(cfg), indented, atomically (temporary file in the same directory + rename).
// Validates first, so a bad config never reaches the disk.
void save_arch_config(const std::string& path, const ArchConfig& cfg);
void save_config(const std::string& path, const EncoderConfig& cfg);
void save_config(const std::string& path, const DecoderConfig& cfg);

// ---- §1.4 initialisation scalings ----

// Where a stack sits; the formulas depend on it (and on both depths for encoder-decoder).
enum class StackRole { encoder_only, decoder_only, encdec_encoder, encdec_decoder };

// N = encoder_layers, M = decoder_layers; the ones the role needs must be >= 1 (ValueError).
// DeepNorm residual multiplier α:  encoder-only (2N)^¼, decoder-only (2M)^¼,
//   enc-dec encoder 0.81·(N⁴M)^(1/16), enc-dec decoder (3M)^¼.
double deepnorm_alpha(StackRole role, int64_t encoder_layers, int64_t decoder_layers);
// DeepNorm init_scale (weights are divided by it): (8N)^¼, (8M)^¼, (N⁴M)^(1/16)/1.15 [quirk:
// the paper's β for the enc-dec encoder is 0.87·(N⁴M)^(-1/16); TorchScale's code is followed,
// as its checkpoints were trained with it], (12M)^¼.
double deepnorm_init_scale(StackRole role, int64_t encoder_layers, int64_t decoder_layers);
// SubLN / MAGNETO γ (weights are multiplied by it): sqrt(ln 2N), sqrt(ln 2M),
// sqrt(ln(3M)·ln(2N)/3), sqrt(ln 3M) (the enc-dec decoder skips encoder_attn parameters).
double subln_init_gamma(StackRole role, int64_t encoder_layers, int64_t decoder_layers);

}  // namespace metalm::nn
