// Model configs: single stacks and composites, each part declared as a field table.
#include "metalm/models/config.h"

#include <algorithm>
#include <set>

#include "metalm/core/error.h"
#include "metalm/core/file.h"
#include "metalm/io/fields.h"

namespace metalm::models {
namespace {

using io::Json;
using io::JsonWhere;

constexpr uint64_t kMaxConfigBytes = 1 << 20;  // config files are a few KiB

const io::EnumNames<SpanKind>& span_names() {
  static const io::EnumNames<SpanKind> names = {
      {SpanKind::text, "text"}, {SpanKind::image, "image"}, {SpanKind::image_text, "image_text"}};
  return names;
}

const io::EnumNames<ops::Activation>& activation_names() {
  static const io::EnumNames<ops::Activation> names(ops::activation_names().begin(),
                                                    ops::activation_names().end());
  return names;
}

const io::FieldTable<ConnectorConfig>& connector_table() {
  using C = ConnectorConfig;
  static const io::FieldTable<C> t("a connector",
                                   {io::field<C>("kind", &C::kind),
                                    io::field<C>("activation", &C::activation, activation_names()),
                                    io::field<C>("latent_query_num", &C::latent_query_num),
                                    io::field<C>("num_heads", &C::num_heads)});
  return t;
}

const io::FieldTable<DockedEncoder>& docked_table() {
  using C = DockedEncoder;
  static const io::FieldTable<C> t(
      "a docked encoder",
      {io::field<C>("name", &C::name), io::field<C>("span", &C::span, span_names()),
       {"config",
        [](C& c, const Json& v, const JsonWhere& w) {
          c.config = nn::encoder_config_from_json(v, w.nested("config"));
        },
        [](const C& c) { return nn::to_json(c.config); }},
       {"connector",
        [](C& c, const Json& v, const JsonWhere& w) {
          connector_table().read(v, c.connector, w.nested("connector"));
        },
        [](const C& c) { return connector_table().write(c.connector); }}});
  return t;
}

const io::FieldTable<HeadConfig>& head_table() {
  using C = HeadConfig;
  static const io::FieldTable<C> t(
      "a head", {io::field<C>("name", &C::name), io::field<C>("kind", &C::kind),
                 io::field<C>("input", &C::input), io::field<C>("num_classes", &C::num_classes),
                 io::field<C>("pooling", &C::pooling)});
  return t;
}

// A list of parts, each read with its table.
template <typename T>
std::vector<T> read_list(const Json& v, const char* name, const io::FieldTable<T>& table,
                         const JsonWhere& w, const std::vector<std::string>& required) {
  if (!v.is_array()) w.fail(name, "expected a JSON list, got " + io::describe(v));
  std::vector<T> out;
  for (size_t i = 0; i < v.size(); ++i) {
    const JsonWhere at = w.nested(detail::cat(name, "[", i, "]"));
    io::require_object(v[i], "", at);
    for (const auto& r : required)
      if (!v[i].contains(r)) at.fail(r, "missing (required)");
    T part;
    table.read(v[i], part, at);
    out.push_back(std::move(part));
  }
  return out;
}

const io::FieldTable<ModelConfig>& composite_table() {
  using C = ModelConfig;
  static const io::FieldTable<C> t(
      "a composite model config",
      {{"decoder",
        [](C& c, const Json& v, const JsonWhere& w) {
          c.decoder = nn::decoder_config_from_json(v, w.nested("decoder"));
        },
        [](const C& c) { return nn::to_json(c.decoder); }},
       {"encoders",
        [](C& c, const Json& v, const JsonWhere& w) {
          c.encoders = read_list(v, "encoders", docked_table(), w, {"name", "config"});
        },
        [](const C& c) {
          Json list = Json::array();
          for (const auto& e : c.encoders) list.push_back(docked_table().write(e));
          return list;
        }},
       {"heads",
        [](C& c, const Json& v, const JsonWhere& w) {
          c.heads = read_list(v, "heads", head_table(), w, {"name", "num_classes"});
        },
        [](const C& c) {
          Json list = Json::array();
          for (const auto& h : c.heads) list.push_back(head_table().write(h));
          return list;
        }}});
  return t;
}

bool good_name(const std::string& s) {
  return !s.empty() && s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_';
  });
}

}  // namespace

const char* span_kind_name(SpanKind kind) {
  for (const auto& [k, n] : span_names())
    if (k == kind) return n;
  return "?";
}

const std::vector<std::string>& model_types() {
  static const std::vector<std::string> types = {"encoder", "decoder", "metalm"};
  return types;
}

ModelConfig ModelConfig::single(const nn::EncoderConfig& cfg) {
  ModelConfig m;
  m.model_type = "encoder";
  m.encoder = cfg;
  return m;
}

ModelConfig ModelConfig::single(const nn::DecoderConfig& cfg) {
  ModelConfig m;
  m.model_type = "decoder";
  m.decoder = cfg;
  return m;
}

ModelConfig model_config_from_json(const Json& j, const JsonWhere& w) {
  io::require_object(j, "", w);
  const auto it = j.find("model_type");
  if (it == j.end()) w.fail("model_type", "missing; expected " + io::one_of(model_types()));
  const std::string type = io::read_string(*it, "model_type", w);
  ModelConfig cfg;
  cfg.model_type = type;
  if (type == "encoder") {
    cfg.encoder = nn::encoder_config_from_json(j, w);
  } else if (type == "decoder") {
    cfg.decoder = nn::decoder_config_from_json(j, w);
  } else if (type == "metalm") {
    if (!j.contains("decoder")) w.fail("decoder", "missing (a composite model needs its decoder)");
    composite_table().read(j, cfg, w, {"model_type"});
  } else {
    w.fail("model_type", "expected " + io::one_of(model_types()) + ", got " + io::quote(type) +
                             (type == "kosmos" || type == "beit3" ? " (not supported yet)" : ""));
  }
  validate(cfg, w);
  return cfg;
}

void validate(const ModelConfig& cfg, const JsonWhere& w) {
  if (cfg.model_type == "encoder") return nn::validate(cfg.encoder, w);
  nn::validate(cfg.decoder, cfg.is_single_stack() ? w : w.nested("decoder"));
  if (cfg.is_single_stack()) return;
  if (cfg.encoders.empty()) w.fail("encoders", "a metalm model docks at least one encoder");
  std::set<std::string> names;
  for (size_t i = 0; i < cfg.encoders.size(); ++i) {
    const DockedEncoder& e = cfg.encoders[i];
    const JsonWhere at = w.nested(detail::cat("encoders[", i, "]"));
    if (!good_name(e.name))
      at.fail("name", "must be 1-64 characters of a-z, 0-9 and _, got " + io::quote(e.name));
    if (!names.insert(e.name).second) at.fail("name", io::quote(e.name) + " is given twice");
    nn::validate(e.config, at.nested("config"));
    const ConnectorConfig& c = e.connector;
    static const std::vector<std::string> kinds = {"none", "simple", "complex", "xconnector"};
    if (std::find(kinds.begin(), kinds.end(), c.kind) == kinds.end())
      at.fail("connector.kind", "expected " + io::one_of(kinds) + ", got " + io::quote(c.kind));
    if (c.kind == "none" && e.config.embed_dim != cfg.decoder.embed_dim)
      at.fail("connector.kind",
              detail::cat("\"none\" docks the encoder's vectors as they are, but its width ",
                          e.config.embed_dim, " differs from the decoder's ", cfg.decoder.embed_dim));
    if (c.latent_query_num <= 0)
      at.fail("connector.latent_query_num", detail::cat("must be > 0, got ", c.latent_query_num));
    if (c.num_heads < 0) at.fail("connector.num_heads", detail::cat("must be >= 0, got ", c.num_heads));
    if (c.kind == "xconnector" && cfg.decoder.embed_dim % (c.num_heads ? c.num_heads
                                                                       : cfg.decoder.attention_heads))
      at.fail("connector.num_heads", "must divide the decoder's embed_dim");
    if (e.span == SpanKind::text) {
      if (c.kind == "xconnector")
        at.fail("connector.kind", "a text span docks one vector per token: not \"xconnector\"");
      if (e.config.vocab_size != cfg.decoder.vocab_size)
        at.fail("config.vocab_size",
                detail::cat("a text-span encoder reads the LM's tokens: vocab_size must equal the ",
                            "decoder's ", cfg.decoder.vocab_size, ", got ", e.config.vocab_size));
    }
  }
  for (size_t i = 0; i < cfg.heads.size(); ++i) {
    const HeadConfig& h = cfg.heads[i];
    const JsonWhere at = w.nested(detail::cat("heads[", i, "]"));
    if (!good_name(h.name))
      at.fail("name", "must be 1-64 characters of a-z, 0-9 and _, got " + io::quote(h.name));
    if (std::count_if(cfg.heads.begin(), cfg.heads.end(),
                      [&](const HeadConfig& o) { return o.name == h.name; }) > 1)
      at.fail("name", io::quote(h.name) + " is given twice");
    if (h.kind != "classification")
      at.fail("kind", "expected \"classification\", got " + io::quote(h.kind));
    if (h.input != "decoder" && !names.count(h.input))
      at.fail("input", "expected \"decoder\" or a docked encoder's name, got " + io::quote(h.input));
    if (h.num_classes <= 0) at.fail("num_classes", detail::cat("must be > 0, got ", h.num_classes));
    if (h.pooling != "cls" && h.pooling != "mean" && h.pooling != "last")
      at.fail("pooling", "expected \"cls\", \"mean\" or \"last\", got " + io::quote(h.pooling));
  }
}

Json to_json(const ModelConfig& cfg) {
  if (cfg.model_type == "encoder") return nn::to_json(cfg.encoder);
  if (cfg.model_type == "decoder") return nn::to_json(cfg.decoder);
  Json j = composite_table().write(cfg);
  j["model_type"] = cfg.model_type;
  return j;
}

ModelConfig parse_model_config(const std::string& text, const std::string& source) {
  const JsonWhere w{"config", source};
  return model_config_from_json(io::parse_json(text, w, "config file", {kMaxConfigBytes}), w);
}

ModelConfig load_model_config_file(const std::string& path) {
  return model_config_from_json(io::load_json_file(path, "config", "config file", {kMaxConfigBytes}),
                                JsonWhere{"config", path});
}

void save_model_config(const std::string& path, const ModelConfig& cfg) {
  validate(cfg, JsonWhere{"config", path});
  write_file_atomic("config", path, to_json(cfg).dump(2) + "\n");
}

}  // namespace metalm::models
