// The one way to build a model: by its config's model_type. The CLI, the trainer and the
// server ask here and never switch on the type themselves.
#pragma once
#include <cstdint>
#include <memory>

#include "metalm/models/model.h"

namespace metalm::models {

struct BuildOptions {
  uint64_t seed = 1;
  // false: no random draws and no initialisation at all (Generator::no_draws): for a model whose
  // weights are loaded next. The dropout generators still derive from `seed` exactly as with
  // init, so a loaded model trains like the one that was saved.
  bool init = true;
};

// Throws ValueError naming an unknown model_type.
std::unique_ptr<Model> build_model(const ModelConfig& config, const BuildOptions& options = {});

}  // namespace metalm::models
