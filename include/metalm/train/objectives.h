// Pretraining objectives: what a batch of packed sequences becomes for a model, and its loss.
// causal (GPT), mlm (the bidirectional text encoder), semi-causal (MetaLM: spans re-encoded by a
// docked encoder, loss masks of DESIGN D4). Each draws its randomness from the batch's seed and
// the row, so a batch gives the same loss whenever it is replayed (exact resume, D7).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>

#include "metalm/core/tensor.h"
#include "metalm/data/mlm.h"
#include "metalm/data/spans.h"
#include "metalm/models/model.h"
#include "metalm/models/stack.h"

namespace metalm::train {

// Packed sequences: ids i64 [B, T + 1], each row starting with <s> and pad-filled at the end.
// The model reads ids[:, :-1] and predicts ids[:, 1:].
struct SequenceBatch {
  SequenceBatch() = default;
  SequenceBatch(Tensor ids_, uint64_t seed_) : ids(std::move(ids_)), seed(seed_) {}
  Tensor ids;
  uint64_t seed = 0;  // for the objective's draws (spans, masking), one stream per row
  // Fine-tuning batches (train/finetune.h) also say, per model position [B, T]: which targets
  // count (f32 score), which packed example each position belongs to (i32 segments, attention
  // stays inside one), its position in that example (i64), and which input tokens pass through
  // the docked encoder (u8 dock). Undefined for pretraining batches.
  Tensor score, segments, positions, dock;
};

struct LossOutput {
  Tensor loss;        // scalar: the mean over the scored targets (differentiable)
  double scored = 0;  // how many targets it averages
};

class Objective {
 public:
  virtual ~Objective() = default;
  virtual LossOutput loss(models::Model& model, const SequenceBatch& batch) = 0;
  virtual std::string name() const = 0;
  // ValueError when `model` cannot take this objective (an MLM on a decoder, a semi-causal LM
  // without the docked encoder): the trainer asks before its first step.
  virtual void check_model(models::Model& model) const = 0;
};

// Next-token cross-entropy on every target that is not padding.
class CausalObjective : public Objective {
 public:
  explicit CausalObjective(int32_t pad_id = 1) : pad_id_(pad_id) {}
  LossOutput loss(models::Model& model, const SequenceBatch& batch) override;
  // The same loss on a given subset of targets (score: f32 [B, T], 0 = not scored), for
  // comparing a GPT with MetaLM on exactly the targets MetaLM scores.
  LossOutput loss_on(models::Model& model, const SequenceBatch& batch, const Tensor& score);
  std::string name() const override { return "causal"; }
  void check_model(models::Model& model) const override;

 private:
  int32_t pad_id_;
};

// Masked-LM cross-entropy on the corrupted tokens of the whole sequence (ids[:, :] read
// bidirectionally; the model must be an encoder with an output layer).
class MlmObjective : public Objective {
 public:
  explicit MlmObjective(const data::MlmOptions& options) : options_(options) {}
  LossOutput loss(models::Model& model, const SequenceBatch& batch) override;
  std::string name() const override { return "mlm"; }
  void check_model(models::Model& model) const override;

 private:
  data::MlmOptions options_;
};

// MetaLM's semi-causal LM: per row, spans sampled from the sequence (data::sample_spans) are
// encoded by the docked encoder `encoder` ([<s>] + span) and docked at their positions; the loss
// skips the targets the encoder has seen (data::SpanLoss).
struct SemiCausalOptions {
  std::string encoder = "text";
  data::SpanOptions spans;
  data::SpanLoss span_loss = data::SpanLoss::exact;
  int32_t bos_id = 0, pad_id = 1;
};

class SemiCausalObjective : public Objective {
 public:
  explicit SemiCausalObjective(const SemiCausalOptions& options) : options_(options) {}
  LossOutput loss(models::Model& model, const SequenceBatch& batch) override;
  std::string name() const override { return "semi-causal"; }
  void check_model(models::Model& model) const override;

  // What the objective feeds the model for a batch, and which targets it scores (f32 [B, T]).
  struct Prepared {
    models::StackInputs inputs;
    Tensor targets;  // i64 [B, T]
    Tensor score;    // f32 [B, T]
    int64_t span_tokens = 0;
  };
  Prepared prepare(const SequenceBatch& batch) const;

 private:
  SemiCausalOptions options_;
};

// "causal" | "mlm" | "semi-causal" -> the objective, from the options shared by all.
struct ObjectiveOptions {
  std::string kind = "causal";
  int32_t pad_id = 1;
  data::MlmOptions mlm;
  SemiCausalOptions semi_causal;
};
std::unique_ptr<Objective> make_objective(const ObjectiveOptions& options);

}  // namespace metalm::train
