// Fine-tuning on task examples (`metalm finetune`, issue 9 item 4): examples rendered through
// their task's templates (data/instructions.h: one form drawn per example and epoch, turned
// around forms included), several tasks mixed with a per-task cap per epoch, packed several per
// row without attention between them (segments, positions restarting at 0), the loss on the
// answers only. The same batches train a MetaLM (inputs docked through its encoder) or a GPT.
#pragma once
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "metalm/data/instructions.h"
#include "metalm/data/tasks.h"
#include "metalm/data/tokenizer.h"
#include "metalm/train/objectives.h"
#include "metalm/train/trainer.h"

namespace metalm::train {

struct FinetuneDataOptions {
  int64_t tokens_per_sample = 256;  // ids per row (the model reads one fewer)
  int64_t batch = 8;                // rows per batch
  uint64_t seed = 1;
  int64_t max_per_task = 0;  // > 0: at most this many examples of a task per epoch
  bool pack = true;          // several examples per row; false: one per row
  data::RenderOptions render;  // encoder, docking, input cap (max_tokens is set to the row)
};

class FinetuneBatches : public BatchSource {
 public:
  FinetuneBatches(const data::Tokenizer& tok, std::vector<data::TaskExample> examples,
                  std::map<std::string, data::TaskTemplates> templates,
                  const FinetuneDataOptions& options);
  SequenceBatch next() override;
  io::Json state() const override { return {{"epoch", epoch_}, {"cursor", cursor_}}; }
  void restore(const io::Json& state) override;
  int64_t tokens_per_batch() const override { return o_.batch * (o_.tokens_per_sample - 1); }

  int64_t epoch_size() const { return static_cast<int64_t>(order(0).size()); }
  // The batches of one pass over every example in file order with its first template (the
  // validation set), at most max_batches (0: all).
  std::vector<SequenceBatch> one_pass(int64_t max_batches = 0) const;
  // Example e of an epoch as a training sequence (the template drawn for (epoch, e); epoch -1:
  // the task's first form).
  data::TrainingSequence render(int64_t example, int64_t epoch) const;

 private:
  std::vector<int64_t> order(int64_t epoch) const;  // the epoch's examples, capped, shuffled

  const data::Tokenizer& tok_;
  std::vector<data::TaskExample> examples_;
  std::map<std::string, data::TaskTemplates> templates_;
  FinetuneDataOptions o_;
  int64_t epoch_ = 0, cursor_ = 0;
  std::vector<int64_t> current_;  // order(epoch_); cursor_ is the next one to place
};

// The loss of fine-tuning batches: cross-entropy on the scored targets, the docked input
// tokens (runs of `dock` within one example) through the encoder ([<s>] + run).
class FinetuneObjective : public Objective {
 public:
  FinetuneObjective(std::string encoder, int32_t bos_id, int32_t pad_id)
      : encoder_(std::move(encoder)), bos_id_(bos_id), pad_id_(pad_id) {}
  LossOutput loss(models::Model& model, const SequenceBatch& batch) override;
  std::string name() const override { return "finetune"; }
  void check_model(models::Model& model) const override;
  models::StackInputs inputs(const SequenceBatch& batch) const;  // what the model reads

 private:
  std::string encoder_;
  int32_t bos_id_, pad_id_;
};

// Which parameters fine-tuning trains: "encoder" (MetaLM's encoders and connectors; the LM
// frozen, the paper's single-task mode), "lm" (the decoder only) or "all". Returns how many
// parameters train; a GPT takes lm and all.
int64_t set_trainable(models::Model& model, const std::string& mode);

}  // namespace metalm::train
