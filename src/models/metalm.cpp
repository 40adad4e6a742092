// MetaLM: encoders -> connectors -> docking into the decoder (reference-spec 3.3).
#include "metalm/models/metalm.h"

#include <algorithm>
#include <vector>

#include "metalm/ops/index.h"
#include "metalm/ops/shape.h"

namespace metalm::models {

MetaLM::MetaLM(const ModelConfig& config, Generator& gen) : config_(config) {
  validate(config_);
  MLM_CHECK(config_.model_type == "metalm", ValueError, "[MetaLM] model_type must be metalm, got ",
            config_.model_type);
  MLM_CHECK(config_.heads.empty(), ValueError,
            "[MetaLM] task heads are not built yet (fine-tuning lands with the task-layer issue)");
  decoder_ = register_module("decoder", std::make_shared<Decoder>(config_.decoder, gen));
  auto encoders = register_module("encoders", std::make_shared<nn::Module>());
  auto connectors = register_module("connectors", std::make_shared<nn::Module>());
  for (const DockedEncoder& e : config_.encoders) {
    encoders_.emplace_back(
        e.name, encoders->register_module(e.name, std::make_shared<Encoder>(e.config, gen)));
    nn::ConnectorOptions o;
    o.activation = e.connector.activation;
    o.latent_query_num = e.connector.latent_query_num;
    o.num_heads = e.connector.num_heads > 0 ? e.connector.num_heads : config_.decoder.attention_heads;
    connectors_.emplace_back(
        e.name, connectors->register_module(
                    e.name, nn::build_connector(e.connector.kind, e.config.embed_dim,
                                                config_.decoder.embed_dim, o, gen)));
  }
}

Encoder& MetaLM::encoder(const std::string& name) {
  for (auto& [n, e] : encoders_)
    if (n == name) return *e;
  throw ValueError("[MetaLM] no docked encoder named \"" + name + "\"");
}

nn::Connector& MetaLM::connector(const std::string& name) {
  for (auto& [n, c] : connectors_)
    if (n == name) return *c;
  throw ValueError("[MetaLM] no connector named \"" + name + "\"");
}

int64_t MetaLM::freeze_encoder(const std::string& name, int64_t train_layers) {
  const int64_t layers = encoder(name).stack_config().layers;  // throws naming a missing one
  freeze("encoders." + name + ".*");
  int64_t trained = 0;
  for (int64_t l = std::max<int64_t>(0, layers - train_layers); l < layers; ++l)
    trained += freeze("encoders." + name + ".layers." + std::to_string(l) + ".*", false);
  return trained;
}

Tensor MetaLM::span_features(const SpanInputs& sp) {
  Encoder& enc = encoder(sp.encoder);
  MLM_CHECK(sp.tokens.defined() && sp.tokens.dim() == 2, ShapeError, "[MetaLM] spans of \"",
            sp.encoder, "\": tokens must be [S, L], got ",
            sp.tokens.defined() ? sp.tokens.str() : std::string("undefined"));
  MLM_CHECK(sp.select.defined() && sp.select.shape() == sp.tokens.shape() &&
                sp.select.dtype() == DType::u8,
            ShapeError, "[MetaLM] spans of \"", sp.encoder, "\": select must be u8 ",
            shape_str(sp.tokens.shape()));
  StackInputs ein;
  ein.tokens = sp.tokens;
  ein.padding = sp.padding;
  ein.features_only = true;
  ein.route = {0, false};  // a multiway encoder reads text spans with its language expert
  const Tensor h = enc.run(ein).features;  // [S, L, d_enc]
  const Tensor rows = ops::gather_rows(h.reshape({-1, h.size(2)}), ops::mask_to_index(sp.select));
  return connector(sp.encoder).forward(rows);  // [n, d_dec]
}

SpanInputs make_span_inputs(const std::string& encoder,
                            const std::vector<std::vector<int64_t>>& segments, Tensor target,
                            int64_t bos_id, int64_t pad_id) {
  MLM_CHECK(!segments.empty(), ValueError, "[MetaLM] no segments to dock");
  const auto S = static_cast<int64_t>(segments.size());
  int64_t L = 0;
  for (const auto& s : segments) L = std::max<int64_t>(L, static_cast<int64_t>(s.size()) + 1);
  std::vector<int64_t> tok(static_cast<size_t>(S * L), pad_id);
  std::vector<uint8_t> pad(tok.size(), 1), select(tok.size(), 0);
  for (int64_t s = 0; s < S; ++s) {
    const auto row = static_cast<size_t>(s * L);
    tok[row] = bos_id;
    pad[row] = 0;
    for (size_t j = 0; j < segments[static_cast<size_t>(s)].size(); ++j) {
      tok[row + 1 + j] = segments[static_cast<size_t>(s)][j];
      pad[row + 1 + j] = 0;
      select[row + 1 + j] = 1;  // the <s> output is not docked
    }
  }
  SpanInputs sp;
  sp.encoder = encoder;
  sp.tokens = Tensor::from_vector<int64_t>({S, L}, tok);
  sp.padding = Tensor::from_vector<uint8_t>({S, L}, pad);
  sp.select = Tensor::from_vector<uint8_t>({S, L}, select);
  sp.target = std::move(target);
  return sp;
}

StackOutput MetaLM::run(const StackInputs& in) {
  if (in.spans.empty()) return decoder_->run(in);
  MLM_CHECK(!in.dock_mask.defined() && in.state == nullptr, ValueError,
            "[MetaLM] spans cannot be combined with dock_mask or an incremental state yet");
  MLM_CHECK(in.tokens.defined() && in.tokens.dim() == 2, ShapeError,
            "[MetaLM] tokens must be [B, T]");
  const int64_t B = in.tokens.size(0), T = in.tokens.size(1);
  // Each encoder's vectors, and which of them goes to each docked position (row-major).
  std::vector<Tensor> features;
  std::vector<int64_t> owner(static_cast<size_t>(B * T), -1);  // offset into the concat
  int64_t offset = 0;
  for (const SpanInputs& sp : in.spans) {
    MLM_CHECK(sp.target.defined() && sp.target.dtype() == DType::u8 && sp.target.dim() == 2 &&
                  sp.target.size(0) == B && sp.target.size(1) == T,
              ShapeError, "[MetaLM] spans of \"", sp.encoder, "\": target must be u8 [", B, ", ", T,
              "]");
    Tensor f = span_features(sp);
    const std::vector<uint8_t> t = sp.target.to_vector<uint8_t>();
    int64_t n = 0;
    for (size_t p = 0; p < t.size(); ++p) {
      if (!t[p]) continue;
      MLM_CHECK(owner[p] < 0, ValueError, "[MetaLM] decoder position ", p,
                " is the target of two docked encoders");
      owner[p] = offset + n++;
    }
    MLM_CHECK(n == f.size(0), ShapeError, "[MetaLM] spans of \"", sp.encoder, "\": ", f.size(0),
              " selected encoder outputs for ", n, " target positions");
    offset += n;
    features.push_back(f);
  }
  std::vector<uint8_t> mask(owner.size());
  std::vector<int64_t> order;
  for (size_t p = 0; p < owner.size(); ++p)
    if ((mask[p] = owner[p] >= 0)) order.push_back(owner[p]);
  StackInputs din = in;
  din.spans.clear();
  din.dock_mask = Tensor::from_vector<uint8_t>({B, T}, mask);
  Tensor all = features.size() == 1 ? features[0] : ops::concat(features, 0);
  const bool in_order = std::is_sorted(order.begin(), order.end());
  din.dock_features =
      in_order ? all
               : ops::gather_rows(all, Tensor::from_vector<int64_t>(
                                           {static_cast<int64_t>(order.size())}, order));
  return decoder_->run(din);
}

}  // namespace metalm::models
