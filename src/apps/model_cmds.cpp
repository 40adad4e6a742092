#include "apps/model_cmds.h"

#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <sstream>
#include <variant>

#include "metalm/autograd/autograd.h"
#include "metalm/io/model_dir.h"
#include "metalm/nn/transformer.h"
#include "metalm/ops/matmul.h"

namespace metalm::apps {
namespace {

// A built model of either kind.
struct AnyModel {
  std::shared_ptr<nn::Encoder> encoder;
  std::shared_ptr<nn::Decoder> decoder;
  nn::Module& module() const {
    return encoder ? static_cast<nn::Module&>(*encoder) : static_cast<nn::Module&>(*decoder);
  }
};

AnyModel build(const nn::ArchConfig& cfg, uint64_t seed) {
  Generator gen(seed);
  AnyModel m;
  if (cfg.model_type() == nn::ModelType::encoder)
    m.encoder = std::make_shared<nn::Encoder>(cfg.encoder(), gen);
  else
    m.decoder = std::make_shared<nn::Decoder>(cfg.decoder(), gen);
  return m;
}

// [[ids...], ...] with equal lengths -> i64 [B, T].
Tensor read_tokens(const std::string& path) {
  std::ifstream f(path);
  MLM_CHECK(f.good(), IoError, "[forward] cannot open token file '", path, "'");
  nlohmann::json j;
  try {
    f >> j;
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(detail::cat("[forward] ", path, ": invalid JSON: ", e.what()));
  }
  MLM_CHECK(j.is_array() && !j.empty(), FormatError, "[forward] ", path,
            ": expected a non-empty JSON list of lists of token ids");
  const size_t T = j[0].is_array() ? j[0].size() : 0;
  MLM_CHECK(T > 0, FormatError, "[forward] ", path, ": row 0 must be a non-empty list of ids");
  std::vector<int64_t> ids;
  for (size_t b = 0; b < j.size(); ++b) {
    MLM_CHECK(j[b].is_array() && j[b].size() == T, FormatError, "[forward] ", path, ": row ", b,
              " must be a list of ", T, " ids (all rows the same length)");
    for (const auto& v : j[b]) {
      MLM_CHECK(v.is_number_integer(), FormatError, "[forward] ", path, ": row ", b,
                " holds a non-integer value ", v.dump());
      ids.push_back(v.get<int64_t>());
    }
  }
  return Tensor::from_vector<int64_t>({static_cast<int64_t>(j.size()), static_cast<int64_t>(T)}, ids);
}

}  // namespace

int run_init(const InitOptions& o) {
  nn::ArchConfig cfg = nn::load_arch_config(o.config);
  AnyModel m = build(cfg, o.seed);
  io::save_model_dir(o.out, cfg, m.module());
  std::printf("wrote %s: %s, %.3fM parameters (seed %llu)\n", o.out.c_str(),
              nn::model_type_name(cfg.model_type()),
              static_cast<double>(m.module().parameter_count()) / 1e6,
              static_cast<unsigned long long>(o.seed));
  return 0;
}

int run_forward(const ForwardOptions& o) {
  nn::ArchConfig cfg = io::load_model_config(o.model);
  AnyModel m = build(cfg, 0);
  io::load_model_weights(o.model, m.module());
  m.module().eval();
  Tensor tokens = read_tokens(o.tokens);
  NoGradGuard ng;
  io::TensorMap out;
  if (m.decoder) {
    nn::DecoderInputs in;
    in.tokens = tokens;
    nn::StackOutput r = m.decoder->forward(in);
    if (r.logits.defined())
      out["logits"] = r.logits;
    else
      out["hidden_states"] = r.features;
  } else {
    nn::EncoderInputs in;
    in.tokens = tokens;
    in.route = nn::Route{o.split, false};
    in.features_only = true;
    out["hidden_states"] = m.encoder->forward(in).features;
  }
  io::save_safetensors(o.out, out,
                       {{"model", o.model},
                        {"matmul_precision", ops::matmul_precision_name(ops::matmul_precision())}});
  const Tensor& t = out.begin()->second;
  std::printf("wrote %s: %s %s\n", o.out.c_str(), out.begin()->first.c_str(), t.str().c_str());
  return 0;
}

int run_info(const std::string& dir) {
  nn::ArchConfig cfg = io::load_model_config(dir);
  AnyModel m = build(cfg, 0);
  io::load_model_weights(dir, m.module());
  std::printf("%s\n", nn::to_json(cfg).dump(2).c_str());
  std::printf("parameters: %lld (%.3fM)\n", static_cast<long long>(m.module().parameter_count()),
              static_cast<double>(m.module().parameter_count()) / 1e6);
  return 0;
}

}  // namespace metalm::apps
