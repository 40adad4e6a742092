// The stack configs: their field tables (the one declaration of every JSON field),
// post-processing and validation.
#include "metalm/nn/config.h"

#include <cmath>
#include <limits>
#include <type_traits>

#include "metalm/core/error.h"
#include "metalm/io/fields.h"
#include "metalm/nn/init.h"

namespace metalm::nn {
namespace {

using io::Json;
using io::JsonWhere;

// Sizes above this are certainly mistakes, and the bound keeps any product of two sizes
// (vocab x width, ...) inside int64.
constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();

const io::EnumNames<PositionKind>& position_names() {
  static const io::EnumNames<PositionKind> names = {{PositionKind::learned, "learned"},
                                                    {PositionKind::sinusoidal, "sinusoidal"},
                                                    {PositionKind::none, "none"}};
  return names;
}

const io::EnumNames<ops::Activation>& activation_field_names() {
  static const io::EnumNames<ops::Activation> names(ops::activation_names().begin(),
                                                    ops::activation_names().end());
  return names;
}

// ---------------------------------------------------------------- field tables

// LongNet fields have no member: only their TorchScale defaults are accepted (see config.h).
template <typename C>
io::Field<C> longnet_null(const char* name) {  // segment_length, dilated_ratio: null or ""
  return {name,
          [name](C&, const Json& v, const JsonWhere& w) {
            if (!v.is_null() && !(v.is_string() && v.get_ref<const std::string&>().empty()))
              w.fail(name, "LongNet dilated attention is not supported yet (must be null), got " +
                               io::describe(v));
          },
          [](const C&) { return Json(nullptr); }};
}
template <typename C>
io::Field<C> longnet_false(const char* name) {  // seq_parallel: false or null
  return {name,
          [name](C&, const Json& v, const JsonWhere& w) {
            if (!v.is_null() && v != Json(false))
              w.fail(name, "LongNet sequence parallelism is not supported yet (must be false or "
                           "null), got " + io::describe(v));
          },
          [](const C&) { return Json(false); }};
}

// The StackConfig fields, with the stack's JSON names.
template <typename C>
std::vector<io::Field<C>> stack_fields() {
  using io::field;
  const std::string s = C::kPrefix;
  const bool enc = std::is_same_v<C, EncoderConfig>;
  // The names must outlive the table: keep them in a static list per stack kind.
  static const std::vector<std::string> names = {
      s + "_embed_dim", s + "_attention_heads", s + "_ffn_embed_dim", s + "_layers",
      s + "_normalize_before", enc ? "max_source_positions" : "max_target_positions",
      "share_" + s + "_input_output_embed"};
  // clang-format off
  return {
      field<C>(names[0].c_str(), &C::embed_dim),
      field<C>(names[1].c_str(), &C::attention_heads),
      field<C>(names[2].c_str(), &C::ffn_embed_dim),
      field<C>(names[3].c_str(), &C::layers),
      field<C>(names[4].c_str(), &C::normalize_before),
      field<C>(names[5].c_str(), &C::max_positions),
      field<C>(names[6].c_str(), &C::share_input_output_embed),
      field<C>("activation_fn", &C::activation_fn, activation_field_names()),
      field<C>("dropout", &C::dropout),
      field<C>("drop_path_rate", &C::drop_path_rate),
      field<C>("attention_dropout", &C::attention_dropout),
      field<C>("activation_dropout", &C::activation_dropout),
      field<C>("no_scale_embedding", &C::no_scale_embedding),
      field<C>("layernorm_embedding", &C::layernorm_embedding),
      field<C>("moe_freq", &C::moe_freq),
      field<C>("moe_top1_expert", &C::moe_top1_expert),
      field<C>("moe_expert_count", &C::moe_expert_count),
      field<C>("moe_gating_use_fp32", &C::moe_gating_use_fp32),
      field<C>("moe_eval_capacity_token_fraction", &C::moe_eval_capacity_token_fraction),
      field<C>("moe_second_expert_policy", &C::moe_second_expert_policy),
      field<C>("moe_normalize_gate_prob_before_dropping", &C::moe_normalize_gate_prob_before_dropping),
      field<C>("use_xmoe", &C::use_xmoe),
      field<C>("rel_pos_buckets", &C::rel_pos_buckets),
      field<C>("max_rel_pos", &C::max_rel_pos),
      field<C>("deepnorm", &C::deepnorm),
      field<C>("subln", &C::subln),
      field<C>("bert_init", &C::bert_init),
      field<C>("multiway", &C::multiway),
      field<C>("no_output_layer", &C::no_output_layer),
      field<C>("layernorm_eps", &C::layernorm_eps),
      field<C>("vocab_size", &C::vocab_size),
      field<C>("checkpoint_activations", &C::checkpoint_activations),
      field<C>("fsdp", &C::fsdp),
      field<C>("ddp_rank", &C::ddp_rank),
      field<C>("xpos_rel_pos", &C::xpos_rel_pos),
      field<C>("xpos_scale_base", &C::xpos_scale_base),
      field<C>("flash_attention", &C::flash_attention),
      longnet_null<C>("segment_length"),
      longnet_null<C>("dilated_ratio"),
      longnet_false<C>("seq_parallel"),
      field<C>("positions", &C::positions, position_names()),
      field<C>("padding_idx", &C::padding_idx),
  };
  // clang-format on
}

const io::FieldTable<EncoderConfig>& encoder_table() {
  static const io::FieldTable<EncoderConfig> table = [] {
    using C = EncoderConfig;
    using io::field;
    std::vector<io::Field<C>> f = stack_fields<C>();
    for (auto& extra : std::vector<io::Field<C>>{
             field<C>("normalize_output", &C::normalize_output),
             field<C>("img_size", &C::img_size),
             field<C>("patch_size", &C::patch_size),
             field<C>("in_chans", &C::in_chans),
             field<C>("multiway_vl_layers", &C::multiway_vl_layers),
             field<C>("multiway_shared_attention", &C::multiway_shared_attention),
             field<C>("layer_scale_init", &C::layer_scale_init),
         })
      f.push_back(std::move(extra));
    return io::FieldTable<C>("an encoder config", std::move(f));
  }();
  return table;
}

const io::FieldTable<DecoderConfig>& decoder_table() {
  static const io::FieldTable<DecoderConfig> table = [] {
    using C = DecoderConfig;
    std::vector<io::Field<C>> f = stack_fields<C>();
    f.push_back(
        io::field<C>("torchscale_deepnorm_decoder_quirk", &C::torchscale_deepnorm_decoder_quirk));
    return io::FieldTable<C>("a decoder config", std::move(f));
  }();
  return table;
}

template <typename C>
const io::FieldTable<C>& table_of() {
  if constexpr (std::is_same_v<C, EncoderConfig>)
    return encoder_table();
  else
    return decoder_table();
}

// ---------------------------------------------------------------- validation

void check_size(const JsonWhere& w, std::string_view name, int64_t v) {
  if (v <= 0) w.fail(name, detail::cat("must be > 0, got ", v));
  if (v > kMaxSize) w.fail(name, detail::cat("must be at most ", kMaxSize, ", got ", v));
}

void check_probability(const JsonWhere& w, std::string_view name, double p) {
  // Written so that NaN fails too. 1 is excluded: dropout divides by 1 - p.
  if (!(p >= 0.0 && p < 1.0)) w.fail(name, detail::cat("must be in [0, 1), got ", p));
}

// The JSON name of a StackConfig member in stack C (for messages).
template <typename C>
std::string name_of(const char* suffix) {
  return std::string(C::kPrefix) + "_" + suffix;
}

// Layers read deepnorm, subln and normalize_before as already reconciled by postprocess(); a
// config built in code and not post-processed would build a different model than its JSON.
template <typename C>
void check_postprocessed(const C& cfg, const JsonWhere& w) {
  C fixed = cfg;
  postprocess(fixed);
  if (fixed.deepnorm != cfg.deepnorm || fixed.subln != cfg.subln)
    w.fail("deepnorm",
           "deepnorm and subln are both true; call postprocess() first (deepnorm wins, "
           "reference-spec 1.2)");
  if (fixed.normalize_before != cfg.normalize_before)
    w.fail(name_of<C>("normalize_before"),
           detail::cat("is ", cfg.normalize_before ? "true" : "false", " but ",
                       cfg.deepnorm ? "deepnorm" : "subln", " makes it ",
                       fixed.normalize_before ? "true" : "false",
                       "; call postprocess() first (reference-spec 1.2)"));
}

template <typename C>
void validate_stack(const C& c, const JsonWhere& w) {
  const std::string dim = name_of<C>("embed_dim"), heads = name_of<C>("attention_heads");
  check_size(w, dim, c.embed_dim);
  check_size(w, heads, c.attention_heads);
  if (c.embed_dim % c.attention_heads != 0)
    w.fail(dim, detail::cat(c.embed_dim, " is not divisible by ", heads, " (", c.attention_heads,
                            ")"));
  check_size(w, name_of<C>("ffn_embed_dim"), c.ffn_embed_dim);
  check_size(w, name_of<C>("layers"), c.layers);
  check_size(w, std::is_same_v<C, EncoderConfig> ? "max_source_positions" : "max_target_positions",
             c.max_positions);
  check_probability(w, "dropout", c.dropout);
  check_probability(w, "attention_dropout", c.attention_dropout);
  check_probability(w, "activation_dropout", c.activation_dropout);
  check_probability(w, "drop_path_rate", c.drop_path_rate);
  if (!(c.layernorm_eps > 0.0 && std::isfinite(c.layernorm_eps)))
    w.fail("layernorm_eps", detail::cat("must be > 0, got ", c.layernorm_eps));

  // T5 relative bias (5.2). TorchScale turns it on only when both are > 0; one alone is
  // rejected as a likely mistake. The bucket formula needs max_exact = buckets/2/2 >= 1 and
  // max_rel_pos > max_exact (it takes ln(max_rel_pos / max_exact) as a divisor).
  if (c.rel_pos_buckets < 0)
    w.fail("rel_pos_buckets", detail::cat("must be >= 0, got ", c.rel_pos_buckets));
  if (c.max_rel_pos < 0) w.fail("max_rel_pos", detail::cat("must be >= 0, got ", c.max_rel_pos));
  if ((c.rel_pos_buckets > 0) != (c.max_rel_pos > 0))
    w.fail(c.rel_pos_buckets > 0 ? "max_rel_pos" : "rel_pos_buckets",
           detail::cat("relative position bias needs both rel_pos_buckets and max_rel_pos > 0 ",
                       "(TorchScale would silently disable it), got rel_pos_buckets = ",
                       c.rel_pos_buckets, ", max_rel_pos = ", c.max_rel_pos));
  if (c.rel_pos_buckets > 0) {
    if (c.rel_pos_buckets < 4 || c.rel_pos_buckets > kMaxSize)
      w.fail("rel_pos_buckets",
             detail::cat("must be in [4, ", kMaxSize,
                         "] (half the buckets per direction, half of those exact), got ",
                         c.rel_pos_buckets));
    const int64_t max_exact = c.rel_pos_buckets / 2 / 2;
    if (c.max_rel_pos <= max_exact || c.max_rel_pos > kMaxSize)
      w.fail("max_rel_pos", detail::cat("must exceed the exact range rel_pos_buckets / 4 = ",
                                        max_exact, " (and be at most ", kMaxSize, "), got ",
                                        c.max_rel_pos));
  }
  if (c.xpos_rel_pos && c.head_dim() % 2 != 0)
    w.fail("xpos_rel_pos",
           detail::cat("xPos rotates pairs of channels and needs an even head dim, got ", dim,
                       " / ", heads, " = ", c.head_dim()));
  check_size(w, "xpos_scale_base", c.xpos_scale_base);
  if (c.positions == PositionKind::sinusoidal && c.embed_dim < 4)
    w.fail("positions", detail::cat("sinusoidal positions need ", dim,
                                    " >= 4 (the frequencies divide by d/2 - 1), got ",
                                    c.embed_dim));

  if (c.padding_idx < -1)
    w.fail("padding_idx", detail::cat("must be >= 0, or -1 for none, got ", c.padding_idx));
  if (c.vocab_size > 0 && c.padding_idx >= c.vocab_size)
    w.fail("padding_idx",
           detail::cat("must be < vocab_size (", c.vocab_size, "), got ", c.padding_idx));
  if (c.vocab_size > kMaxSize)
    w.fail("vocab_size", detail::cat("must be at most ", kMaxSize, ", got ", c.vocab_size));
  if (c.share_input_output_embed && c.vocab_size <= 0)
    w.fail("share_" + std::string(C::kPrefix) + "_input_output_embed",
           "needs vocab_size > 0 (there is no token embedding to tie)");

  // Not supported yet: rejected, since silently building a dense model would mislead.
  if (c.moe_freq < 0) w.fail("moe_freq", detail::cat("must be >= 0, got ", c.moe_freq));
  if (c.moe_freq > 0)
    w.fail("moe_freq", detail::cat("mixture-of-experts layers are not supported yet (must be 0), ",
                                   "got ", c.moe_freq));
  if (c.moe_expert_count < 0)
    w.fail("moe_expert_count", detail::cat("must be >= 0, got ", c.moe_expert_count));
  if (c.moe_expert_count > 0)
    w.fail("moe_expert_count",
           detail::cat("mixture-of-experts layers are not supported yet (must be 0), got ",
                       c.moe_expert_count));
  if (c.use_xmoe) w.fail("use_xmoe", "X-MoE routing is not supported yet (must be false)");
  const std::string& policy = c.moe_second_expert_policy;
  if (policy != "sampling" && policy != "random" && policy != "all")
    w.fail("moe_second_expert_policy",
           "expected \"sampling\", \"random\" or \"all\", got " + io::quote(policy));
  check_postprocessed(c, w);
}

// ---------------------------------------------------------------- parsing

template <typename C>
C config_from_json(const Json& j, const JsonWhere& w) {
  using Other = std::conditional_t<std::is_same_v<C, EncoderConfig>, DecoderConfig, EncoderConfig>;
  io::require_object(j, "", w);
  if (const auto it = j.find("model_type"); it != j.end()) {
    const std::string type = io::read_string(*it, "model_type", w);
    if (type != C::kPrefix)
      w.fail("model_type", detail::cat("expected \"", C::kPrefix, "\", got ", io::quote(type)));
  }
  C cfg;
  table_of<C>().read(j, cfg, w, {"model_type"}, [](const std::string& key) {
    const char* other = std::is_same_v<Other, EncoderConfig> ? "an encoder" : "a decoder";
    return table_of<Other>().find(key)
               ? detail::cat(other, " field, not valid in ", table_of<C>().kind())
               : std::string();
  });
  postprocess(cfg);
  validate(cfg, w);
  return cfg;
}

template <typename C>
Json config_to_json(const C& cfg) {
  Json j = Json::object();
  j["model_type"] = C::kPrefix;
  j.update(table_of<C>().write(cfg));
  return j;
}

// Rules (1) and (2) of postprocess(); set_norm = false leaves normalize_before alone.
void reconcile(StackConfig& cfg, bool set_norm) {
  if (cfg.deepnorm) {
    if (set_norm) cfg.normalize_before = false;
    cfg.subln = false;
  }
  if (cfg.subln) {
    if (set_norm) cfg.normalize_before = true;
    cfg.deepnorm = false;
  }
  if (cfg.use_xmoe) {  // TorchScale rule 3; validate() then rejects use_xmoe anyway
    cfg.moe_normalize_gate_prob_before_dropping = true;
    cfg.moe_second_expert_policy = "random";
  }
}

}  // namespace

// ---------------------------------------------------------------- public API

const char* position_kind_name(PositionKind kind) {
  for (const auto& [k, name] : position_names())
    if (k == kind) return name;
  return "?";
}

double StackConfig::embed_scale() const {
  return no_scale_embedding ? 1.0 : std::sqrt(static_cast<double>(embed_dim));
}
double StackConfig::drop_path_prob(int64_t layer) const {
  return linspace_f32(drop_path_rate, layers, layer);
}
int64_t EncoderConfig::num_patches() const {
  const int64_t side = img_size / patch_size;
  return side * side;
}

double EncoderConfig::residual_alpha() const {
  return deepnorm ? deepnorm_alpha(StackRole::encoder_only, layers, 0) : 1.0;
}
double EncoderConfig::init_weight_gain() const {
  if (deepnorm) return 1.0 / deepnorm_init_scale(StackRole::encoder_only, layers, 0);
  return subln ? subln_init_gamma(StackRole::encoder_only, layers, 0) : 1.0;
}
double DecoderConfig::residual_alpha() const {
  return deepnorm ? deepnorm_alpha(StackRole::decoder_only, 0, layers) : 1.0;
}
double DecoderConfig::init_weight_gain() const {
  if (deepnorm) return 1.0 / deepnorm_init_scale(StackRole::decoder_only, 0, layers);
  return subln ? subln_init_gamma(StackRole::decoder_only, 0, layers) : 1.0;
}

void postprocess(EncoderConfig& cfg) { reconcile(cfg, true); }
// With the quirk, TorchScale's rules write a field the decoder does not have: no LN change.
void postprocess(DecoderConfig& cfg) { reconcile(cfg, !cfg.torchscale_deepnorm_decoder_quirk); }

void validate(const EncoderConfig& c, const JsonWhere& w) {
  validate_stack(c, w);
  if (c.vocab_size != -1 && c.vocab_size <= 0)
    w.fail("vocab_size",
           detail::cat("must be > 0, or -1 for an encoder without text, got ", c.vocab_size));
  check_size(w, "img_size", c.img_size);
  check_size(w, "patch_size", c.patch_size);
  check_size(w, "in_chans", c.in_chans);
  if (c.img_size % c.patch_size != 0)
    w.fail("img_size",
           detail::cat(c.img_size, " is not divisible by patch_size (", c.patch_size, ")"));
  if (c.multiway_vl_layers < 0 || c.multiway_vl_layers > c.layers)
    w.fail("multiway_vl_layers", detail::cat("must be in [0, encoder_layers = ", c.layers,
                                             "], got ", c.multiway_vl_layers));
  if (c.multiway_vl_layers > 0 && !c.multiway)
    w.fail("multiway_vl_layers", "needs multiway = true (the VL expert is a third expert)");
  if (c.multiway_shared_attention && !c.multiway)
    w.fail("multiway_shared_attention", "needs multiway = true");
  if (!(c.layer_scale_init >= 0.0 && std::isfinite(c.layer_scale_init)))
    w.fail("layer_scale_init", detail::cat("must be >= 0 (0 = off), got ", c.layer_scale_init));
}

void validate(const DecoderConfig& c, const JsonWhere& w) {
  validate_stack(c, w);
  if (c.no_output_layer) {
    if (c.vocab_size != -1 && c.vocab_size <= 0)
      w.fail("vocab_size", detail::cat("must be > 0, or -1 for none, got ", c.vocab_size));
  } else if (c.vocab_size <= 0) {
    w.fail("vocab_size",
           detail::cat("must be > 0 for the output layer (set no_output_layer for a decoder ",
                       "without one), got ", c.vocab_size));
  }
}

EncoderConfig encoder_config_from_json(const Json& j, const JsonWhere& where) {
  return config_from_json<EncoderConfig>(j, where);
}
DecoderConfig decoder_config_from_json(const Json& j, const JsonWhere& where) {
  return config_from_json<DecoderConfig>(j, where);
}
Json to_json(const EncoderConfig& cfg) { return config_to_json(cfg); }
Json to_json(const DecoderConfig& cfg) { return config_to_json(cfg); }

}  // namespace metalm::nn
