#include "apps/common.h"

#include <cstdio>

#include "metalm/core/threads.h"
#include "metalm/nn/layers.h"
#include "metalm/ops/precision_auto.h"

namespace metalm::apps {

void add_common(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--threads", o.threads, "worker threads (0 = all cores; env METALM_NUM_THREADS)")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--seed", o.seed, "random seed")->capture_default_str();
}

void add_precision(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--matmul-precision", o.precision,
                  "GEMM precision of linear layers and attention: f32 (full precision), bf16 "
                  "(bf16 operands, f32 accumulation: about 2x faster GEMMs on CPUs with fast "
                  "AVX512-BF16 such as Zen 4/5, slower on some Intel Xeons; outputs move by "
                  "about 0.1-1%), or auto (bf16 only if a short measurement at start-up finds "
                  "it faster on this host; says what it chose)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16", "auto"}));
}

ops::ComputeMode compute_mode(const CommonOptions& o) {
  if (o.precision != "auto") return {ops::parse_matmul_precision(o.precision), false};
  const ops::PrecisionChoice c = ops::choose_matmul_precision(get_num_threads());
  std::printf("matmul precision auto: %s\n", c.reason.c_str());
  return {c.precision, false};
}

void add_weights_dtype(CLI::App* cmd, CommonOptions& o) {
  cmd->add_option("--weights-dtype", o.weights_dtype,
                  "how the weight matrices are held while the model runs: f32, or bf16 (half the "
                  "bytes, widened to f32 as they are read: faster decoding, which is bound by "
                  "memory bandwidth; outputs move by about 0.1-1%)")
      ->capture_default_str()
      ->check(CLI::IsMember({"f32", "bf16"}));
}

void prepare_for_inference(models::Model& model, const CommonOptions& o) {
  model.compute = compute_mode(o);
  if (o.weights_dtype == "bf16") nn::store_weights(model, DType::bf16);
  model.eval();
}

void add_training_options(CLI::App* cmd, TrainingCliOptions& o) {
  cmd->add_option("--accumulation", o.accumulation, "batches per optimizer step")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--steps", o.steps, "optimizer steps")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--minutes", o.minutes, "wall-time budget (0 = none); saves and stops")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--lr", o.lr, "peak learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--warmup", o.warmup, "warmup steps")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--decay", o.decay, "cosine | linear | constant")->capture_default_str()
      ->check(CLI::IsMember({"cosine", "linear", "constant"}));
  cmd->add_option("--min-lr-ratio", o.min_lr_ratio, "the decay's floor, as a share of --lr")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--weight-decay", o.weight_decay, "AdamW decoupled weight decay")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--beta2", o.beta2, "AdamW beta2")->capture_default_str()->check(CLI::Range(0.0, 0.9999999));
  cmd->add_option("--clip", o.clip, "gradient norm clip (0 = off)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--eval-every", o.eval_every, "validation interval in steps (0 = at the end)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--eval-batches", o.eval_batches, "validation batches")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "checkpoint interval (0 = at the end)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--keep-last", o.keep_last, "checkpoints kept")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--log-every", o.log_every, "progress line interval")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--resume", o.resume, "continue from the latest checkpoint in --out, if any");
}

train::TrainerOptions trainer_options(const TrainingCliOptions& o, const std::string& out_dir) {
  train::TrainerOptions to;
  to.steps = o.steps;
  to.minutes = o.minutes;
  to.accumulation = o.accumulation;
  to.adam = {o.lr, o.beta1, o.beta2, 1e-8};
  to.schedule.warmup_steps = o.warmup;
  to.schedule.total_steps = o.steps;
  to.schedule.decay = train::parse_decay_kind(o.decay);
  to.schedule.min_lr_ratio = o.min_lr_ratio;
  to.weight_decay = o.weight_decay;
  to.clip = o.clip;
  to.log_every = o.log_every;
  to.eval_every = o.eval_every;
  to.eval_batches = o.eval_batches;
  to.checkpoint_every = o.checkpoint_every;
  to.keep_last = o.keep_last;
  to.out_dir = out_dir;
  return to;
}

}  // namespace metalm::apps
