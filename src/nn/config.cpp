// Architecture configuration: field tables drive JSON parsing, writing and the unknown-field check,
// so a field is declared once; post-processing, validation and files follow.
#include "metalm/nn/config.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <limits>
#include <set>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "metalm/core/error.h"
#include "metalm/core/file.h"

namespace metalm::nn {
namespace {

using json = nlohmann::json;

// Sizes above this are certainly mistakes, and the bound keeps any product of two sizes
// (vocab x width, ...) inside int64.
constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();
// Config files are a few KiB; the cap keeps a wrong path (a checkpoint, /dev/zero) from being
// read whole.
constexpr int64_t kMaxFileBytes = 1 << 20;
constexpr size_t kMaxQuoted = 60;  // longest key or value quoted in a message
constexpr size_t kMaxUnknownListed = 10;

// "[config] <source>: <field>: <problem>"; source is the file path, or empty for in-memory JSON.
std::string prefix(const std::string& source) {
  return source.empty() ? "[config] " : "[config] " + source + ": ";
}
[[noreturn]] void fail(const std::string& source, std::string_view field,
                       const std::string& problem) {
  throw ValueError(detail::cat(prefix(source), field, ": ", problem));
}

std::string clip(std::string s) {
  if (s.size() > kMaxQuoted) s = s.substr(0, kMaxQuoted - 3) + "...";
  return s;
}

// A JSON value for an error message: its type and a clipped rendering. Arrays and objects are
// rendered only when flat and short; otherwise just counted, since dumping a hostile,
// deeply nested value recurses once per level.
std::string describe(const json& v) {
  if (v.is_null()) return "null";
  if (v.is_structured()) {
    const bool flat = v.size() <= 8 && std::none_of(v.begin(), v.end(), [](const json& e) {
                        return e.is_structured();
                      });
    if (!flat)
      return detail::cat(v.type_name(), " (", v.size(), v.is_array() ? " element" : " key",
                         v.size() == 1 ? "" : "s", ")");
  }
  // replace: a json built in C++ may hold invalid UTF-8, and the message must not throw.
  return detail::cat(v.type_name(), " ",
                     clip(v.dump(-1, ' ', false, json::error_handler_t::replace)));
}

// ---------------------------------------------------------------- JSON scalar readers

int64_t read_int(const json& v, std::string_view name, const std::string& src) {
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      fail(src, name, detail::cat("integer out of range, got ", u));
    return static_cast<int64_t>(u);
  }
  if (v.is_number_integer()) return v.get<int64_t>();
  fail(src, name, "expected an integer, got " + describe(v));
}

double read_double(const json& v, std::string_view name, const std::string& src) {
  if (!v.is_number()) fail(src, name, "expected a number, got " + describe(v));
  return v.get<double>();
}

bool read_bool(const json& v, std::string_view name, const std::string& src) {
  if (!v.is_boolean()) fail(src, name, "expected true or false, got " + describe(v));
  return v.get<bool>();
}

std::string read_string(const json& v, std::string_view name, const std::string& src) {
  if (!v.is_string()) fail(src, name, "expected a string, got " + describe(v));
  return v.get<std::string>();
}

constexpr std::array<std::pair<PositionKind, const char*>, 3> kPositionNames = {{
    {PositionKind::learned, "learned"},
    {PositionKind::sinusoidal, "sinusoidal"},
    {PositionKind::none, "none"},
}};

PositionKind read_positions(const json& v, std::string_view name, const std::string& src) {
  const std::string s = read_string(v, name, src);
  for (const auto& [kind, kind_name] : kPositionNames)
    if (s == kind_name) return kind;
  fail(src, name,
       detail::cat("expected \"learned\", \"sinusoidal\" or \"none\", got \"", clip(s), "\""));
}

// ---------------------------------------------------------------- field tables

// LongNet fields have no member: only their TorchScale defaults are accepted (see config.h).
struct NullOnly {};     // segment_length, dilated_ratio: null (or "", which TorchScale skips)
struct FalseOrNull {};  // seq_parallel

template <typename C>
using Member = std::variant<int64_t C::*, bool C::*, double C::*, std::string C::*,
                            PositionKind C::*, NullOnly, FalseOrNull>;

template <typename C>
struct Field {
  const char* name;
  Member<C> member;
};

// Fields both configs spell the same way.
template <typename C>
void add_shared_fields(std::vector<Field<C>>& f) {
  // clang-format off
  const std::vector<Field<C>> shared = {
      {"activation_fn", &C::activation_fn},
      {"dropout", &C::dropout},
      {"drop_path_rate", &C::drop_path_rate},
      {"attention_dropout", &C::attention_dropout},
      {"activation_dropout", &C::activation_dropout},
      {"no_scale_embedding", &C::no_scale_embedding},
      {"layernorm_embedding", &C::layernorm_embedding},
      {"moe_freq", &C::moe_freq},
      {"moe_top1_expert", &C::moe_top1_expert},
      {"moe_expert_count", &C::moe_expert_count},
      {"moe_gating_use_fp32", &C::moe_gating_use_fp32},
      {"moe_eval_capacity_token_fraction", &C::moe_eval_capacity_token_fraction},
      {"moe_second_expert_policy", &C::moe_second_expert_policy},
      {"moe_normalize_gate_prob_before_dropping", &C::moe_normalize_gate_prob_before_dropping},
      {"use_xmoe", &C::use_xmoe},
      {"rel_pos_buckets", &C::rel_pos_buckets},
      {"max_rel_pos", &C::max_rel_pos},
      {"deepnorm", &C::deepnorm},
      {"subln", &C::subln},
      {"bert_init", &C::bert_init},
      {"multiway", &C::multiway},
      {"no_output_layer", &C::no_output_layer},
      {"layernorm_eps", &C::layernorm_eps},
      {"vocab_size", &C::vocab_size},
      {"checkpoint_activations", &C::checkpoint_activations},
      {"fsdp", &C::fsdp},
      {"ddp_rank", &C::ddp_rank},
      {"xpos_rel_pos", &C::xpos_rel_pos},
      {"xpos_scale_base", &C::xpos_scale_base},
      {"flash_attention", &C::flash_attention},
      {"segment_length", NullOnly{}},
      {"dilated_ratio", NullOnly{}},
      {"seq_parallel", FalseOrNull{}},
      {"positions", &C::positions},
      {"padding_idx", &C::padding_idx},
  };
  // clang-format on
  f.insert(f.end(), shared.begin(), shared.end());
}

const std::vector<Field<EncoderConfig>>& encoder_fields() {
  static const std::vector<Field<EncoderConfig>> fields = [] {
    using C = EncoderConfig;
    std::vector<Field<C>> f = {
        {"encoder_embed_dim", &C::encoder_embed_dim},
        {"encoder_attention_heads", &C::encoder_attention_heads},
        {"encoder_ffn_embed_dim", &C::encoder_ffn_embed_dim},
        {"encoder_layers", &C::encoder_layers},
        {"encoder_normalize_before", &C::encoder_normalize_before},
        {"normalize_output", &C::normalize_output},
        {"share_encoder_input_output_embed", &C::share_encoder_input_output_embed},
        {"max_source_positions", &C::max_source_positions},
        {"img_size", &C::img_size},
        {"patch_size", &C::patch_size},
        {"in_chans", &C::in_chans},
        {"multiway_vl_layers", &C::multiway_vl_layers},
        {"multiway_shared_attention", &C::multiway_shared_attention},
        {"layer_scale_init", &C::layer_scale_init},
    };
    add_shared_fields(f);
    return f;
  }();
  return fields;
}

const std::vector<Field<DecoderConfig>>& decoder_fields() {
  static const std::vector<Field<DecoderConfig>> fields = [] {
    using C = DecoderConfig;
    std::vector<Field<C>> f = {
        {"decoder_embed_dim", &C::decoder_embed_dim},
        {"decoder_attention_heads", &C::decoder_attention_heads},
        {"decoder_ffn_embed_dim", &C::decoder_ffn_embed_dim},
        {"decoder_layers", &C::decoder_layers},
        {"decoder_normalize_before", &C::decoder_normalize_before},
        {"share_decoder_input_output_embed", &C::share_decoder_input_output_embed},
        {"max_target_positions", &C::max_target_positions},
        {"torchscale_deepnorm_decoder_quirk", &C::torchscale_deepnorm_decoder_quirk},
    };
    add_shared_fields(f);
    return f;
  }();
  return fields;
}

template <typename C>
const std::vector<Field<C>>& fields_of() {
  if constexpr (std::is_same_v<C, EncoderConfig>)
    return encoder_fields();
  else
    return decoder_fields();
}

template <typename C>
constexpr const char* kind_of() {
  return std::is_same_v<C, EncoderConfig> ? "encoder" : "decoder";
}

template <typename C>
constexpr const char* a_kind() {
  return std::is_same_v<C, EncoderConfig> ? "an encoder" : "a decoder";
}

template <typename C>
const Field<C>* find_field(std::string_view name) {
  for (const auto& f : fields_of<C>())
    if (name == f.name) return &f;
  return nullptr;
}

template <class... Ts>
struct Overloaded : Ts... {
  using Ts::operator()...;
};
template <class... Ts>
Overloaded(Ts...) -> Overloaded<Ts...>;

template <typename C>
void set_field(C& cfg, const Field<C>& f, const json& v, const std::string& src) {
  using Str = std::string C::*;
  std::visit(
      Overloaded{
          [&](int64_t C::*m) { cfg.*m = read_int(v, f.name, src); },
          [&](bool C::*m) { cfg.*m = read_bool(v, f.name, src); },
          [&](double C::*m) { cfg.*m = read_double(v, f.name, src); },
          [&](Str m) { cfg.*m = read_string(v, f.name, src); },
          [&](PositionKind C::*m) { cfg.*m = read_positions(v, f.name, src); },
          [&](NullOnly) {
            if (!v.is_null() && !(v.is_string() && v.get_ref<const std::string&>().empty()))
              fail(src, f.name,
                   "LongNet dilated attention is not supported yet (must be null), got " +
                       describe(v));
          },
          [&](FalseOrNull) {
            if (!v.is_null() && v != json(false))
              fail(src, f.name,
                   detail::cat("LongNet sequence parallelism is not supported yet (must be false ",
                               "or null), got ", describe(v)));
          },
      },
      f.member);
}

template <typename C>
json fields_to_json(const C& cfg) {
  json j = json::object();
  j["model_type"] = kind_of<C>();
  using Str = std::string C::*;
  for (const auto& f : fields_of<C>()) {
    std::visit(Overloaded{
                   [&](int64_t C::*m) { j[f.name] = cfg.*m; },
                   [&](bool C::*m) { j[f.name] = cfg.*m; },
                   [&](double C::*m) { j[f.name] = cfg.*m; },
                   [&](Str m) { j[f.name] = cfg.*m; },
                   [&](PositionKind C::*m) { j[f.name] = position_kind_name(cfg.*m); },
                   [&](NullOnly) { j[f.name] = nullptr; },
                   [&](FalseOrNull) { j[f.name] = false; },
               },
               f.member);
  }
  return j;
}

// ---------------------------------------------------------------- unknown fields

// Optimal string alignment distance: Levenshtein plus adjacent transpositions ("dropuot").
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t k = 0; k <= b.size(); ++k) d[0][k] = k;
  for (size_t i = 1; i <= a.size(); ++i) {
    for (size_t k = 1; k <= b.size(); ++k) {
      const size_t cost = a[i - 1] == b[k - 1] ? 0 : 1;
      d[i][k] = std::min({d[i - 1][k] + 1, d[i][k - 1] + 1, d[i - 1][k - 1] + cost});
      if (i > 1 && k > 1 && a[i - 1] == b[k - 2] && a[i - 2] == b[k - 1])
        d[i][k] = std::min(d[i][k], d[i - 2][k - 2] + 1);
    }
  }
  return d[a.size()][b.size()];
}

// The closest field name of C, if it is near enough to be a plausible typo: up to 3 edits for
// long names, fewer for short ones, where 3 edits turn anything into anything.
template <typename C>
std::string closest_field(const std::string& key) {
  if (key.size() > 2 * kMaxQuoted) return "";  // hostile keys: skip the quadratic work
  const size_t limit = key.size() >= 10 ? 3 : key.size() >= 5 ? 2 : 1;
  std::string best;
  size_t best_d = limit + 1;
  auto consider = [&](const char* name) {
    const size_t dist = edit_distance(key, name);
    if (dist < best_d) best_d = dist, best = name;
  };
  consider("model_type");
  for (const auto& f : fields_of<C>()) consider(f.name);
  return best;
}

template <typename C>
void check_unknown_fields(const json& j, const std::string& src) {
  using Other = std::conditional_t<std::is_same_v<C, EncoderConfig>, DecoderConfig, EncoderConfig>;
  std::vector<std::string> parts;
  size_t unknown = 0;
  for (const auto& [key, value] : j.items()) {
    if (key == "model_type" || find_field<C>(key) != nullptr) continue;
    if (++unknown > kMaxUnknownListed) continue;
    std::string problem = "unknown field";
    if (find_field<Other>(key) != nullptr)
      problem = detail::cat(a_kind<Other>(), " field, not valid in ", a_kind<C>(), " config");
    const std::string suggestion = closest_field<C>(key);
    if (!suggestion.empty()) problem += detail::cat(" (did you mean ", suggestion, "?)");
    parts.push_back(detail::cat(clip(key), ": ", problem));
  }
  if (unknown == 0) return;
  std::string msg;
  for (size_t i = 0; i < parts.size(); ++i) msg += (i ? "; " : "") + parts[i];
  if (unknown > kMaxUnknownListed)
    msg += detail::cat("; and ", unknown - kMaxUnknownListed, " more unknown fields");
  throw ValueError(prefix(src) + msg);
}

// ---------------------------------------------------------------- validation

void check_size(const std::string& src, std::string_view name, int64_t v) {
  if (v <= 0) fail(src, name, detail::cat("must be > 0, got ", v));
  if (v > kMaxSize) fail(src, name, detail::cat("must be at most ", kMaxSize, ", got ", v));
}

void check_probability(const std::string& src, std::string_view name, double p) {
  // Written so that NaN fails too. 1 is excluded: dropout divides by 1 - p.
  if (!(p >= 0.0 && p < 1.0)) fail(src, name, detail::cat("must be in [0, 1), got ", p));
}

// Layers read deepnorm, subln and *_normalize_before as already reconciled by postprocess(); a
// config built in code and not post-processed would build a different model than its JSON.
template <typename C>
void check_postprocessed(const C& cfg, bool C::*normalize_before, const char* name,
                         const std::string& src) {
  C fixed = cfg;
  postprocess(fixed);
  if (fixed.deepnorm != cfg.deepnorm || fixed.subln != cfg.subln)
    fail(src, "deepnorm",
         "deepnorm and subln are both true; call postprocess() first (deepnorm wins, "
         "reference-spec 1.2)");
  if (fixed.*normalize_before != cfg.*normalize_before)
    fail(src, name,
         detail::cat("is ", cfg.*normalize_before ? "true" : "false", " but ",
                     cfg.deepnorm ? "deepnorm" : "subln", " makes it ",
                     fixed.*normalize_before ? "true" : "false",
                     "; call postprocess() first (reference-spec 1.2)"));
}

// The names that differ between the encoder and the decoder, for shared checks and messages.
struct StackNames {
  const char* embed_dim;
  const char* heads;
  const char* ffn_dim;
  const char* layers;
  const char* max_positions;
  const char* share_embed;
};

template <typename C>
void validate_shared(const C& cfg, const StackNames& n, int64_t embed_dim, int64_t heads,
                     int64_t ffn_dim, int64_t layers, int64_t max_positions, bool share_embed,
                     const std::string& src) {
  check_size(src, n.embed_dim, embed_dim);
  check_size(src, n.heads, heads);
  if (embed_dim % heads != 0)
    fail(src, n.embed_dim,
         detail::cat(embed_dim, " is not divisible by ", n.heads, " (", heads, ")"));
  check_size(src, n.ffn_dim, ffn_dim);
  check_size(src, n.layers, layers);
  check_size(src, n.max_positions, max_positions);

  static constexpr std::array<const char*, 5> kActivations = {"relu", "gelu", "swish", "gelu_tanh",
                                                              "quick_gelu"};
  if (std::find(kActivations.begin(), kActivations.end(), cfg.activation_fn) ==
      kActivations.end()) {
    std::string hint = cfg.activation_fn == "silu" ? " (TorchScale calls SiLU \"swish\")" : "";
    fail(src, "activation_fn",
         detail::cat("unknown activation \"", clip(cfg.activation_fn),
                     "\"; expected one of relu, gelu, swish, gelu_tanh, quick_gelu", hint));
  }
  check_probability(src, "dropout", cfg.dropout);
  check_probability(src, "attention_dropout", cfg.attention_dropout);
  check_probability(src, "activation_dropout", cfg.activation_dropout);
  check_probability(src, "drop_path_rate", cfg.drop_path_rate);
  if (!(cfg.layernorm_eps > 0.0 && std::isfinite(cfg.layernorm_eps)))
    fail(src, "layernorm_eps", detail::cat("must be > 0, got ", cfg.layernorm_eps));

  // T5 relative bias (§5.2). TorchScale turns it on only when both are > 0; one alone is
  // rejected as a likely mistake. The bucket formula needs max_exact = buckets/2/2 >= 1 and
  // max_rel_pos > max_exact (it takes ln(max_rel_pos / max_exact) as a divisor).
  if (cfg.rel_pos_buckets < 0)
    fail(src, "rel_pos_buckets", detail::cat("must be >= 0, got ", cfg.rel_pos_buckets));
  if (cfg.max_rel_pos < 0)
    fail(src, "max_rel_pos", detail::cat("must be >= 0, got ", cfg.max_rel_pos));
  if ((cfg.rel_pos_buckets > 0) != (cfg.max_rel_pos > 0)) {
    const bool buckets_set = cfg.rel_pos_buckets > 0;
    fail(src, buckets_set ? "max_rel_pos" : "rel_pos_buckets",
         detail::cat("relative position bias needs both rel_pos_buckets and max_rel_pos > 0 ",
                     "(TorchScale would silently disable it), got rel_pos_buckets = ",
                     cfg.rel_pos_buckets, ", max_rel_pos = ", cfg.max_rel_pos));
  }
  if (cfg.rel_pos_buckets > 0) {
    if (cfg.rel_pos_buckets < 4 || cfg.rel_pos_buckets > kMaxSize)
      fail(src, "rel_pos_buckets",
           detail::cat("must be in [4, ", kMaxSize,
                       "] (half the buckets per direction, half of those exact), got ",
                       cfg.rel_pos_buckets));
    const int64_t max_exact = cfg.rel_pos_buckets / 2 / 2;
    if (cfg.max_rel_pos <= max_exact || cfg.max_rel_pos > kMaxSize)
      fail(src, "max_rel_pos",
           detail::cat("must exceed the exact range rel_pos_buckets / 4 = ", max_exact,
                       " (and be at most ", kMaxSize, "), got ", cfg.max_rel_pos));
  }

  if (cfg.xpos_rel_pos && (embed_dim / heads) % 2 != 0)
    fail(src, "xpos_rel_pos",
         detail::cat("xPos rotates pairs of channels and needs an even head dim, got ", n.embed_dim,
                     " / ", n.heads, " = ", embed_dim / heads));
  check_size(src, "xpos_scale_base", cfg.xpos_scale_base);

  if (cfg.positions == PositionKind::sinusoidal && embed_dim < 4)
    fail(src, "positions",
         detail::cat("sinusoidal positions need ", n.embed_dim,
                     " >= 4 (the frequencies divide by d/2 - 1), got ", embed_dim));

  if (cfg.padding_idx < -1)
    fail(src, "padding_idx", detail::cat("must be >= 0, or -1 for none, got ", cfg.padding_idx));
  if (cfg.vocab_size > 0 && cfg.padding_idx >= cfg.vocab_size)
    fail(src, "padding_idx",
         detail::cat("must be < vocab_size (", cfg.vocab_size, "), got ", cfg.padding_idx));
  if (cfg.vocab_size > kMaxSize)
    fail(src, "vocab_size", detail::cat("must be at most ", kMaxSize, ", got ", cfg.vocab_size));
  if (share_embed && cfg.vocab_size <= 0)
    fail(src, n.share_embed, "needs vocab_size > 0 (there is no token embedding to tie)");

  // Not supported yet: rejected, since silently building a dense model would mislead.
  if (cfg.moe_freq < 0) fail(src, "moe_freq", detail::cat("must be >= 0, got ", cfg.moe_freq));
  if (cfg.moe_freq > 0)
    fail(src, "moe_freq",
         detail::cat("mixture-of-experts layers are not supported yet (must be 0), got ",
                     cfg.moe_freq));
  if (cfg.moe_expert_count < 0)
    fail(src, "moe_expert_count", detail::cat("must be >= 0, got ", cfg.moe_expert_count));
  if (cfg.moe_expert_count > 0)
    fail(src, "moe_expert_count",
         detail::cat("mixture-of-experts layers are not supported yet (must be 0), got ",
                     cfg.moe_expert_count));
  if (cfg.use_xmoe) fail(src, "use_xmoe", "X-MoE routing is not supported yet (must be false)");
  const std::string& policy = cfg.moe_second_expert_policy;
  if (policy != "sampling" && policy != "random" && policy != "all")
    fail(src, "moe_second_expert_policy",
         detail::cat("expected \"sampling\", \"random\" or \"all\", got \"", clip(policy), "\""));
}

void validate_encoder(const EncoderConfig& c, const std::string& src) {
  static constexpr StackNames kNames = {
      "encoder_embed_dim", "encoder_attention_heads", "encoder_ffn_embed_dim",
      "encoder_layers",    "max_source_positions",    "share_encoder_input_output_embed"};
  validate_shared(c, kNames, c.encoder_embed_dim, c.encoder_attention_heads,
                  c.encoder_ffn_embed_dim, c.encoder_layers, c.max_source_positions,
                  c.share_encoder_input_output_embed, src);
  check_postprocessed(c, &EncoderConfig::encoder_normalize_before, "encoder_normalize_before", src);
  if (c.vocab_size != -1 && c.vocab_size <= 0)
    fail(src, "vocab_size",
         detail::cat("must be > 0, or -1 for an encoder without text, got ", c.vocab_size));
  check_size(src, "img_size", c.img_size);
  check_size(src, "patch_size", c.patch_size);
  check_size(src, "in_chans", c.in_chans);
  if (c.img_size % c.patch_size != 0)
    fail(src, "img_size",
         detail::cat(c.img_size, " is not divisible by patch_size (", c.patch_size, ")"));
  if (c.multiway_vl_layers < 0 || c.multiway_vl_layers > c.encoder_layers)
    fail(src, "multiway_vl_layers",
         detail::cat("must be in [0, encoder_layers = ", c.encoder_layers, "], got ",
                     c.multiway_vl_layers));
  if (c.multiway_vl_layers > 0 && !c.multiway)
    fail(src, "multiway_vl_layers", "needs multiway = true (the VL expert is a third expert)");
  if (c.multiway_shared_attention && !c.multiway)
    fail(src, "multiway_shared_attention", "needs multiway = true");
  if (!(c.layer_scale_init >= 0.0 && std::isfinite(c.layer_scale_init)))
    fail(src, "layer_scale_init", detail::cat("must be >= 0 (0 = off), got ", c.layer_scale_init));
}

void validate_decoder(const DecoderConfig& c, const std::string& src) {
  static constexpr StackNames kNames = {
      "decoder_embed_dim", "decoder_attention_heads", "decoder_ffn_embed_dim",
      "decoder_layers",    "max_target_positions",    "share_decoder_input_output_embed"};
  validate_shared(c, kNames, c.decoder_embed_dim, c.decoder_attention_heads,
                  c.decoder_ffn_embed_dim, c.decoder_layers, c.max_target_positions,
                  c.share_decoder_input_output_embed, src);
  check_postprocessed(c, &DecoderConfig::decoder_normalize_before, "decoder_normalize_before", src);
  if (c.no_output_layer) {
    if (c.vocab_size != -1 && c.vocab_size <= 0)
      fail(src, "vocab_size", detail::cat("must be > 0, or -1 for none, got ", c.vocab_size));
  } else if (c.vocab_size <= 0) {
    fail(src, "vocab_size",
         detail::cat("must be > 0 for the output layer (set no_output_layer for a decoder ",
                     "without one), got ", c.vocab_size));
  }
}

// ---------------------------------------------------------------- parsing

void check_object(const json& j, const std::string& src) {
  if (!j.is_object()) throw ValueError(prefix(src) + "expected a JSON object, got " + describe(j));
}

// model_type, when present (or required), must name this kind.
template <typename C>
void check_model_type(const json& j, const std::string& src) {
  const auto it = j.find("model_type");
  if (it == j.end()) return;
  const std::string type = read_string(*it, "model_type", src);
  if (type != kind_of<C>())
    fail(src, "model_type",
         detail::cat("expected \"", kind_of<C>(), "\", got \"", clip(type), "\""));
}

template <typename C>
C config_from_json(const json& j, const std::string& src) {
  check_object(j, src);
  check_model_type<C>(j, src);
  check_unknown_fields<C>(j, src);
  C cfg;
  for (const auto& [key, value] : j.items())
    if (const Field<C>* f = find_field<C>(key)) set_field(cfg, *f, value, src);
  postprocess(cfg);
  if constexpr (std::is_same_v<C, EncoderConfig>)
    validate_encoder(cfg, src);
  else
    validate_decoder(cfg, src);
  return cfg;
}

ArchConfig arch_from_json(const json& j, const std::string& src) {
  check_object(j, src);
  const auto it = j.find("model_type");
  if (it == j.end()) fail(src, "model_type", "missing; expected \"encoder\" or \"decoder\"");
  const std::string type = read_string(*it, "model_type", src);
  if (type == "encoder") return ArchConfig{config_from_json<EncoderConfig>(j, src)};
  if (type == "decoder") return ArchConfig{config_from_json<DecoderConfig>(j, src)};
  fail(src, "model_type",
       detail::cat("expected \"encoder\" or \"decoder\", got \"", clip(type), "\""));
}

// ---------------------------------------------------------------- files



template <typename... Args>
[[noreturn]] void io_error(const std::string& path, const Args&... args) {
  throw IoError(detail::cat("[config] ", path, ": ", args...));
}

std::string read_file(const std::string& path) {
  FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) io_error(path, "cannot open: ", errno_text(errno));
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) io_error(path, "cannot stat: ", errno_text(errno));
  if (!S_ISREG(st.st_mode)) io_error(path, "not a regular file");
  if (st.st_size > kMaxFileBytes)
    throw FormatError(detail::cat("[config] ", path, ": ", st.st_size,
                                  " bytes is too large for a config file (limit ", kMaxFileBytes,
                                  ")"));
  std::string text;
  char buf[16384];
  for (;;) {
    const ssize_t r = ::read(fd.get(), buf, sizeof buf);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) io_error(path, "read failed: ", errno_text(errno));
    if (r == 0) break;
    text.append(buf, static_cast<size_t>(r));
    if (static_cast<int64_t>(text.size()) > kMaxFileBytes)  // grew while we read
      throw FormatError(detail::cat("[config] ", path, ": too large for a config file (limit ",
                                    kMaxFileBytes, " bytes)"));
  }
  return text;
}

// Parses and rejects keys given twice in one object: json::parse keeps the last silently, and a
// config that says "decoder_layers" twice is ambiguous to its reader.
json parse_text(const std::string& text, const std::string& path) {
  if (static_cast<int64_t>(text.size()) > static_cast<int64_t>(kMaxFileBytes))
    throw FormatError(detail::cat("[config] ", path, ": ", text.size(),
                                  " bytes is too large for a config file (limit ", kMaxFileBytes,
                                  ")"));
  std::vector<std::set<std::string>> seen;  // keys of each open object
  std::string duplicate;
  const json::parser_callback_t on_event = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      seen.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!seen.empty()) seen.pop_back();
    } else if (event == json::parse_event_t::key && !seen.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.back().insert(key).second && duplicate.empty()) duplicate = key;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, on_event);
  } catch (const json::exception& e) {
    throw FormatError(detail::cat("[config] ", path, ": invalid JSON: ", e.what()));
  }
  if (!duplicate.empty()) fail(path, clip(duplicate), "given more than once");
  return j;
}

json parse_file(const std::string& path) { return parse_text(read_file(path), path); }

void save_json(const std::string& path, const json& j) {
  write_file_atomic("config", path, j.dump(2) + "\n");
}

// torch.linspace(0, rate, layers)[layer] as its float32 CPU kernel computes it (TorchScale takes
// .item() of a float32 tensor), so drop-path probabilities match to the last bit.
double linspace_f32(double rate, int64_t layers, int64_t layer) {
  if (layers <= 1) return 0.0;
  const float end = static_cast<float>(rate);
  const float step = end / static_cast<float>(layers - 1);
  const float v = layer < layers / 2 ? step * static_cast<float>(layer)
                                     : end - step * static_cast<float>(layers - 1 - layer);
  return static_cast<double>(v);
}

void check_depth(const char* op, const char* name, int64_t layers) {
  if (layers < 1) throw ValueError(detail::cat("[", op, "] ", name, " must be >= 1, got ", layers));
}

// Checks the depths the role's formula uses (N for the encoder roles, M for every role but
// encoder-only); returns {N, M} as doubles.
std::pair<double, double> depths(const char* op, StackRole role, int64_t n, int64_t m) {
  if (role == StackRole::encoder_only || role == StackRole::encdec_encoder)
    check_depth(op, "encoder_layers", n);
  if (role != StackRole::encoder_only) check_depth(op, "decoder_layers", m);
  return {static_cast<double>(n), static_cast<double>(m)};
}

}  // namespace

// ---------------------------------------------------------------- public API

const char* position_kind_name(PositionKind kind) {
  for (const auto& [k, name] : kPositionNames)
    if (k == kind) return name;
  return "?";
}

const char* model_type_name(ModelType type) {
  return type == ModelType::encoder ? "encoder" : "decoder";
}

double EncoderConfig::embed_scale() const {
  return no_scale_embedding ? 1.0 : std::sqrt(static_cast<double>(encoder_embed_dim));
}
int64_t EncoderConfig::num_patches() const {
  const int64_t side = img_size / patch_size;
  return side * side;
}
double EncoderConfig::drop_path_prob(int64_t layer) const {
  return linspace_f32(drop_path_rate, encoder_layers, layer);
}
double EncoderConfig::residual_alpha() const {
  return deepnorm ? deepnorm_alpha(StackRole::encoder_only, encoder_layers, 0) : 1.0;
}
double EncoderConfig::init_weight_gain() const {
  if (deepnorm) return 1.0 / deepnorm_init_scale(StackRole::encoder_only, encoder_layers, 0);
  if (subln) return subln_init_gamma(StackRole::encoder_only, encoder_layers, 0);
  return 1.0;
}

double DecoderConfig::embed_scale() const {
  return no_scale_embedding ? 1.0 : std::sqrt(static_cast<double>(decoder_embed_dim));
}
double DecoderConfig::drop_path_prob(int64_t layer) const {
  return linspace_f32(drop_path_rate, decoder_layers, layer);
}
double DecoderConfig::residual_alpha() const {
  return deepnorm ? deepnorm_alpha(StackRole::decoder_only, 0, decoder_layers) : 1.0;
}
double DecoderConfig::init_weight_gain() const {
  if (deepnorm) return 1.0 / deepnorm_init_scale(StackRole::decoder_only, 0, decoder_layers);
  if (subln) return subln_init_gamma(StackRole::decoder_only, 0, decoder_layers);
  return 1.0;
}

void postprocess(EncoderConfig& cfg) {
  if (cfg.deepnorm) {
    cfg.encoder_normalize_before = false;
    cfg.subln = false;
  }
  if (cfg.subln) {
    cfg.encoder_normalize_before = true;
    cfg.deepnorm = false;
  }
  if (cfg.use_xmoe) {  // TorchScale rule 3; validate() then rejects use_xmoe anyway
    cfg.moe_normalize_gate_prob_before_dropping = true;
    cfg.moe_second_expert_policy = "random";
  }
}

void postprocess(DecoderConfig& cfg) {
  // With the quirk, TorchScale's rules write a field the decoder does not have: no LN change.
  const bool set_norm = !cfg.torchscale_deepnorm_decoder_quirk;
  if (cfg.deepnorm) {
    if (set_norm) cfg.decoder_normalize_before = false;
    cfg.subln = false;
  }
  if (cfg.subln) {
    if (set_norm) cfg.decoder_normalize_before = true;
    cfg.deepnorm = false;
  }
  if (cfg.use_xmoe) {
    cfg.moe_normalize_gate_prob_before_dropping = true;
    cfg.moe_second_expert_policy = "random";
  }
}

void validate(const EncoderConfig& cfg) {
  validate_encoder(cfg, "");
}
void validate(const DecoderConfig& cfg) {
  validate_decoder(cfg, "");
}

EncoderConfig encoder_config_from_json(const nlohmann::json& j) {
  return config_from_json<EncoderConfig>(j, "");
}
DecoderConfig decoder_config_from_json(const nlohmann::json& j) {
  return config_from_json<DecoderConfig>(j, "");
}
nlohmann::json to_json(const EncoderConfig& cfg) {
  return fields_to_json(cfg);
}
nlohmann::json to_json(const DecoderConfig& cfg) {
  return fields_to_json(cfg);
}

ModelType ArchConfig::model_type() const {
  return std::holds_alternative<EncoderConfig>(config) ? ModelType::encoder : ModelType::decoder;
}
const EncoderConfig& ArchConfig::encoder() const {
  if (const auto* c = std::get_if<EncoderConfig>(&config)) return *c;
  throw ValueError("[config] model_type: expected \"encoder\", this is a decoder config");
}
const DecoderConfig& ArchConfig::decoder() const {
  if (const auto* c = std::get_if<DecoderConfig>(&config)) return *c;
  throw ValueError("[config] model_type: expected \"decoder\", this is an encoder config");
}
EncoderConfig& ArchConfig::encoder() {
  return const_cast<EncoderConfig&>(std::as_const(*this).encoder());
}
DecoderConfig& ArchConfig::decoder() {
  return const_cast<DecoderConfig&>(std::as_const(*this).decoder());
}

ArchConfig arch_config_from_json(const nlohmann::json& j) {
  return arch_from_json(j, "");
}
nlohmann::json to_json(const ArchConfig& cfg) {
  return std::visit([](const auto& c) { return to_json(c); }, cfg.config);
}

ArchConfig load_arch_config(const std::string& path) {
  return arch_from_json(parse_file(path), path);
}
ArchConfig parse_arch_config(const std::string& text, const std::string& source) {
  return arch_from_json(parse_text(text, source), source);
}
EncoderConfig load_encoder_config(const std::string& path) {
  return config_from_json<EncoderConfig>(parse_file(path), path);
}
DecoderConfig load_decoder_config(const std::string& path) {
  return config_from_json<DecoderConfig>(parse_file(path), path);
}

void save_config(const std::string& path, const EncoderConfig& cfg) {
  validate_encoder(cfg, path);
  save_json(path, to_json(cfg));
}
void save_config(const std::string& path, const DecoderConfig& cfg) {
  validate_decoder(cfg, path);
  save_json(path, to_json(cfg));
}
void save_arch_config(const std::string& path, const ArchConfig& cfg) {
  std::visit([&](const auto& c) { save_config(path, c); }, cfg.config);
}

double deepnorm_alpha(StackRole role, int64_t encoder_layers, int64_t decoder_layers) {
  const auto [n, m] = depths("deepnorm_alpha", role, encoder_layers, decoder_layers);
  switch (role) {
    case StackRole::encoder_only:
      return std::pow(2.0 * n, 0.25);
    case StackRole::decoder_only:
      return std::pow(2.0 * m, 0.25);
    case StackRole::encdec_encoder:
      return 0.81 * std::pow(std::pow(n, 4.0) * m, 1.0 / 16.0);
    case StackRole::encdec_decoder:
      return std::pow(3.0 * m, 0.25);
  }
  return 1.0;
}

double deepnorm_init_scale(StackRole role, int64_t encoder_layers, int64_t decoder_layers) {
  const auto [n, m] = depths("deepnorm_init_scale", role, encoder_layers, decoder_layers);
  switch (role) {
    case StackRole::encoder_only:
      return std::pow(8.0 * n, 0.25);
    case StackRole::decoder_only:
      return std::pow(8.0 * m, 0.25);
    case StackRole::encdec_encoder:
      return std::pow(std::pow(n, 4.0) * m, 1.0 / 16.0) / 1.15;
    case StackRole::encdec_decoder:
      return std::pow(12.0 * m, 0.25);
  }
  return 1.0;
}

double subln_init_gamma(StackRole role, int64_t encoder_layers, int64_t decoder_layers) {
  const auto [n, m] = depths("subln_init_gamma", role, encoder_layers, decoder_layers);
  switch (role) {
    case StackRole::encoder_only:
      return std::sqrt(std::log(2.0 * n));
    case StackRole::decoder_only:
      return std::sqrt(std::log(2.0 * m));
    case StackRole::encdec_encoder:
      return std::sqrt(std::log(3.0 * m) * std::log(2.0 * n) / 3.0);
    case StackRole::encdec_decoder:
      return std::sqrt(std::log(3.0 * m));
  }
  return 1.0;
}

}  // namespace metalm::nn
