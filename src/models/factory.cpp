// The model factory: one table from model_type to builder. A composite registers here.
#include "metalm/models/factory.h"

#include <functional>
#include <utility>
#include <vector>

#include "metalm/core/random.h"
#include "metalm/io/json.h"
#include "metalm/models/metalm.h"
#include "metalm/models/stack.h"

namespace metalm::models {

StackOutput Model::forward(const StackInputs& in) {
  if (!compute) return run(in);
  ops::ComputeGuard guard(*compute);
  return run(in);
}

namespace {

using Builder = std::function<std::unique_ptr<Model>(const ModelConfig&, Generator&)>;

const std::vector<std::pair<std::string, Builder>>& builders() {
  static const std::vector<std::pair<std::string, Builder>> table = {
      {"encoder",
       [](const ModelConfig& c, Generator& g) { return std::make_unique<Encoder>(c.encoder, g); }},
      {"decoder",
       [](const ModelConfig& c, Generator& g) { return std::make_unique<Decoder>(c.decoder, g); }},
      {"metalm", [](const ModelConfig& c, Generator& g) { return std::make_unique<MetaLM>(c, g); }},
  };
  return table;
}

}  // namespace

std::unique_ptr<Model> build_model(const ModelConfig& config, const BuildOptions& options) {
  validate(config);
  Generator gen = options.init ? Generator(options.seed) : Generator::no_draws(options.seed);
  for (const auto& [type, build] : builders())
    if (type == config.model_type) return build(config, gen);
  throw ValueError("[models] model_type " + io::quote(config.model_type) +
                   ": no builder for it in this version");
}

}  // namespace metalm::models
