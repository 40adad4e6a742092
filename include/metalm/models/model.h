// A model: what the factory builds from a ModelConfig and what the CLI, the trainer and the
// server hold. Single stacks (models::Encoder, models::Decoder) are models themselves; the
// composites (MetaLM, later KOSMOS and BEiT-3) hold their stacks as children.
#pragma once
#include <memory>
#include <optional>
#include <string>

#include "metalm/models/config.h"
#include "metalm/nn/module.h"
#include "metalm/ops/matmul.h"

namespace metalm::models {

struct StackInputs;
struct StackOutput;

class Model : public nn::Module {
 public:
  // The precision and reference mode this model's forward runs with, on the calling thread
  // (ops::ComputeGuard): two models at different precisions can serve side by side. Unset: the
  // calling thread's mode (whatever guard the caller holds).
  std::optional<ops::ComputeMode> compute;

  // run() under `compute` if set.
  StackOutput forward(const StackInputs& in);
  // The forward itself, under whatever compute mode the caller has set (a composite runs its
  // stacks this way, so they follow the composite's mode).
  virtual StackOutput run(const StackInputs& in) = 0;
  // The config that rebuilds this model (what save_model_dir writes).
  virtual ModelConfig model_config() const = 0;
};

}  // namespace metalm::models
