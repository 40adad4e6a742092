// The trainer: the loop of llm.c's train_gpt2 (data, forward, backward, clip, step, log,
// checkpoint), each a call you can read on one screen, with what a long run needs around it:
// gradient accumulation, an lr schedule, validation, atomic checkpoints with everything an exact
// resume needs (weights, AdamW moments and step count, the data position, every dropout
// generator), keep-last-K, step and wall-time budgets, Ctrl-C that saves and exits, a progress
// line with tokens/s and ETA, and a JSONL log.
//
// Data parallel (a later issue, OpenMPI) slots in at one place: `reduce_gradients` runs after
// the backward passes of a step and before clipping, with the trainable parameters; each
// process then applies the same update.
#pragma once
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "metalm/io/json.h"
#include "metalm/models/model.h"
#include "metalm/train/logger.h"
#include "metalm/train/objectives.h"
#include "metalm/train/optim.h"
#include "metalm/train/schedule.h"

namespace metalm::train {

// Where batches come from. state() / restore() are the position an exact resume needs.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  virtual SequenceBatch next() = 0;
  virtual io::Json state() const = 0;
  virtual void restore(const io::Json& state) = 0;
  virtual int64_t tokens_per_batch() const = 0;  // model positions per batch, for tokens/s
};

// Fixed batches in a fixed order, cycling (tests, and small validation sets).
class FixedBatches : public BatchSource {
 public:
  explicit FixedBatches(std::vector<SequenceBatch> batches);
  SequenceBatch next() override;
  io::Json state() const override { return {{"next", next_}}; }
  void restore(const io::Json& state) override;
  int64_t tokens_per_batch() const override;
  size_t size() const { return batches_.size(); }
  void rewind() { next_ = 0; }

 private:
  std::vector<SequenceBatch> batches_;
  size_t next_ = 0;
};

struct TrainerOptions {
  int64_t steps = 1000;      // the run ends after this optimizer step
  double minutes = 0;        // > 0: also end (with a checkpoint) after this much wall time
  int64_t accumulation = 1;  // batches per optimizer step
  LrSchedule schedule;       // peak lr, warmup, decay; total_steps defaults to `steps`
  AdamWOptions adam{6e-4, 0.9, 0.98, 1e-8};
  double weight_decay = 0.01;
  std::vector<std::string> no_decay = {"embed_positions"};  // name substrings without decay
  double clip = 1.0;          // global gradient norm; 0 = off
  int64_t log_every = 10;     // progress and log lines
  int64_t eval_every = 200;   // 0 = only at the end
  int64_t eval_batches = 8;
  int64_t checkpoint_every = 500;  // 0 = only at the end
  int64_t keep_last = 2;      // checkpoints kept (older ones are removed)
  std::string out_dir;        // checkpoints, log.jsonl; the final model is written here too
  bool plot = true;           // redraw out_dir/log.png (train and validation loss) at each eval
  bool progress = true;       // print progress lines
};

struct StepStats {
  int64_t step = 0;
  double loss = 0, lr = 0, grad_norm = 0, scored = 0, seconds = 0;
};

class Trainer {
 public:
  // validation may be null. The model must outlive the trainer.
  Trainer(models::Model& model, Objective& objective, BatchSource& train,
          FixedBatches* validation, TrainerOptions options);

  StepStats step();       // one optimizer step: accumulation x (batch, forward, backward)
  double evaluate();      // mean validation loss over the scored targets, in eval mode
  void save_checkpoint();  // out_dir/checkpoint-<step>/ then out_dir/latest, atomically
  // Restores weights, optimizer, step, data position and generators from a checkpoint
  // directory (or out_dir/latest when `dir` is out_dir). Throws naming what does not fit.
  void resume(const std::string& dir);
  // The loop until `steps` (or the time budget, or Ctrl-C); evaluates, logs, checkpoints,
  // writes the final model into out_dir. Returns 0, or 130 after an interrupt (saved).
  int run();

  int64_t step_count() const { return step_; }
  AdamW& optimizer() { return *optimizer_; }
  const std::vector<Tensor>& trainable() const { return params_; }

  // Data parallel: called with the trainable parameters once a step's gradients are summed.
  std::function<void(const std::vector<Tensor>&)> reduce_gradients;
  // Extra fields for every validation log line (e.g. a GPT's loss on MetaLM's targets).
  std::function<io::Json()> extra_eval;

 private:
  io::Json state_json(double wall) const;

  models::Model& model_;
  Objective& objective_;
  BatchSource& train_;
  FixedBatches* validation_;
  TrainerOptions options_;
  std::vector<Tensor> params_;
  std::unique_ptr<AdamW> optimizer_;
  std::unique_ptr<JsonlLogger> log_;
  int64_t step_ = 0;
  double tokens_ = 0, wall_before_ = 0;  // over the whole run, resumed parts included
};

// Latest checkpoint directory under out_dir ("" if none).
std::string latest_checkpoint(const std::string& out_dir);

}  // namespace metalm::train
